//! Ingest throughput on the real broker: the replay exchange at full speed (Binance protocol,
//! seeded simulator, BTC-USDT + ETH-USDT) → `run_ingest` → Apache Kafka, in trades per second,
//! from the first to the last trade landing in the ticks topic (its high watermarks, polled).
//!
//! It also measures what the broker is then compared with: the average encoded tick (payload and
//! key bytes) read back from the topic, and a sample of real encoded ticks, one per line, for
//! `kafka-producer-perf-test --payload-file`. `scripts/bench-ingest.sh` runs this and the perf
//! test and prints the comparison; or `KAFKA_BOOTSTRAP=host:port cargo bench --bench ingest --
//! [TRADES]`.
//!
//! Environment: `KAFKA_BOOTSTRAP` (required), `INGEST_BENCH_OUT` (a `key=value` results file,
//! default `target/ingest-bench.env`), `INGEST_BENCH_PAYLOADS` (the sample file, default
//! `target/ingest-bench-payloads.txt`).

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::Message as _;
use rdkafka::TopicPartitionList;
use rdkafka::consumer::{BaseConsumer, Consumer as _};
use tickcast_core::bus::{Cluster, KafkaSettings, Publisher};
use tickcast_core::codec::Topics;
use tickcast_core::shutdown;
use tickcast_ingest::exchanges;
use tickcast_ingest::feed::{FeedOptions, run_ingest};
use tickcast_ingest::replay::{ReplayOptions, ReplayServer};
use tickcast_ingest::simulator::SimConfig;

const SEED: u64 = 7;
const PARTITIONS: i32 = 3;
/// Real encoded ticks written for the perf test's `--payload-file`.
const SAMPLE: usize = 20_000;

fn consumer(bootstrap: &str) -> BaseConsumer {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "tickcast-ingest-bench")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        .create()
        .unwrap()
}

/// Records in `topic`: the sum of its partitions' high watermarks (an idempotent producer
/// without transactions writes no control records, so offsets count records). `None` while a
/// fresh topic's metadata has not reached the client yet.
fn records(c: &BaseConsumer, topic: &str) -> Option<i64> {
    (0..PARTITIONS)
        .map(|p| {
            c.fetch_watermarks(topic, p, Duration::from_secs(10))
                .ok()
                .map(|w| w.1)
        })
        .sum()
}

/// Polls the topic until it holds `n` records; returns (first record seen, last one seen),
/// both measured from `start`.
fn watch(
    bootstrap: String,
    topic: String,
    n: i64,
    start: Instant,
    give_up: Arc<AtomicBool>,
) -> Option<(Duration, Duration)> {
    let c = consumer(&bootstrap);
    let mut first = None;
    loop {
        let have = records(&c, &topic).unwrap_or(0);
        let at = start.elapsed();
        if have > 0 && first.is_none() {
            first = Some(at);
        }
        if have >= n {
            return first.map(|f| (f, at));
        }
        if give_up.load(Ordering::Relaxed) {
            return None;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Reads up to `SAMPLE` records back: (average payload bytes, average key bytes, payloads).
fn sample(bootstrap: &str, topic: &str) -> (f64, f64, Vec<Vec<u8>>) {
    let c = consumer(bootstrap);
    let mut tpl = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        tpl.add_partition_offset(topic, p, rdkafka::Offset::Beginning)
            .unwrap();
    }
    c.assign(&tpl).unwrap();
    let (mut payload_bytes, mut key_bytes, mut out) = (0usize, 0usize, Vec::new());
    let deadline = Instant::now() + Duration::from_secs(60);
    while out.len() < SAMPLE && Instant::now() < deadline {
        let Some(m) = c.poll(Duration::from_millis(500)) else {
            continue;
        };
        let m = m.unwrap();
        let payload = m.payload().unwrap_or_default();
        payload_bytes += payload.len();
        key_bytes += m.key().map_or(0, <[u8]>::len);
        out.push(payload.to_vec());
    }
    assert!(!out.is_empty(), "no record read back from {topic}");
    let n = out.len() as f64;
    (payload_bytes as f64 / n, key_bytes as f64 / n, out)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 4)]
async fn main() {
    let trades: u64 = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let Ok(bootstrap) = std::env::var("KAFKA_BOOTSTRAP") else {
        println!("SKIPPED ingest bench: set KAFKA_BOOTSTRAP (scripts/bench-ingest.sh does)");
        return;
    };
    let out_file = std::env::var("INGEST_BENCH_OUT").unwrap_or("target/ingest-bench.env".into());
    let payload_file =
        std::env::var("INGEST_BENCH_PAYLOADS").unwrap_or("target/ingest-bench-payloads.txt".into());

    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let prefix = format!("bench_ingest_{}_{nanos}.", std::process::id());
    let topics = Topics::new(prefix.clone());
    let mut settings = KafkaSettings::new(bootstrap.clone());
    settings.partitions = PARTITIONS;
    let cluster = Cluster::Kafka(settings.clone());
    // The perf test's topics too, laid out like the ticks topic.
    let perf_random = format!("{prefix}perf-random");
    let perf_ticks = format!("{prefix}perf-ticks");
    let mut all = topics.all();
    all.extend([perf_random.clone(), perf_ticks.clone()]);
    cluster.ensure_topics(&all).await.unwrap();

    let opts = ReplayOptions {
        total: Some(trades),
        ..ReplayOptions::new(SimConfig::default_symbols(SEED, 1_700_000_000_000))
    };
    let replay = ReplayServer::bind("127.0.0.1:0", opts).await.unwrap();
    let url = replay.url().unwrap();
    let (trigger, signal) = shutdown::channel();
    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(replay.run(signal.clone()));
    let publisher = Publisher::new(&settings).unwrap();
    let mut feed = FeedOptions::new(url, vec!["BTC-USDT".into(), "ETH-USDT".into()]);
    // The simulated market keeps its own clock (from 2023, faster than the wall).
    feed.event_window = tickcast_core::domain::EventWindow::OFF;
    let connector = Arc::from(exchanges::lookup("binance").unwrap());

    println!(
        "tickcast ingest throughput: {trades} trades, replay (binance) → ingest → {bootstrap}"
    );
    let give_up = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let watcher = {
        let (b, t, g) = (bootstrap.clone(), topics.ticks(), give_up.clone());
        std::thread::spawn(move || watch(b, t, trades as i64, start, g))
    };
    tasks.spawn(run_ingest(
        connector,
        feed,
        publisher,
        topics.clone(),
        signal.clone(),
    ));
    let timer = std::thread::spawn({
        let g = give_up.clone();
        move || {
            std::thread::sleep(Duration::from_secs(900));
            g.store(true, Ordering::Relaxed);
        }
    });
    let landed = tokio::task::spawn_blocking(move || watcher.join().unwrap())
        .await
        .unwrap();
    drop(timer);
    trigger.fire();
    while let Some(r) = tasks.join_next().await {
        r.unwrap().unwrap();
    }
    let (first, last) = landed.expect("ingest did not finish within 900 s");

    let total = records(&consumer(&bootstrap), &topics.ticks()).unwrap();
    assert_eq!(total, trades as i64, "exactly one record per trade");
    let (payload, key, ticks) = sample(&bootstrap, &topics.ticks());
    let mut lines = Vec::new();
    for t in &ticks {
        assert!(!t.contains(&b'\n'), "an encoded tick holds a newline");
        lines.extend_from_slice(t);
        lines.push(b'\n');
    }
    std::fs::write(&payload_file, lines).unwrap();

    let span = (last - first).as_secs_f64();
    let rate = (trades - 1) as f64 / span.max(1e-9);
    let overall = trades as f64 / last.as_secs_f64();
    println!(
        "first trade in Kafka after {:.3} s, last after {:.3} s",
        first.as_secs_f64(),
        last.as_secs_f64()
    );
    println!(
        "ingest: {rate:.0} trades/s first→last landed ({overall:.0} trades/s including connect)"
    );
    println!(
        "records: {total} in {}, {payload:.1} payload bytes + {key:.1} key bytes on average",
        topics.ticks()
    );
    let results = format!(
        "trades={trades}\nseconds={span:.4}\ningest_tps={rate:.0}\ningest_tps_with_connect={overall:.0}\n\
         avg_payload_bytes={payload:.1}\navg_key_bytes={key:.1}\npayload_file={payload_file}\n\
         ticks_topic={}\nperf_random_topic={perf_random}\nperf_ticks_topic={perf_ticks}\n\
         partitions={PARTITIONS}\n",
        topics.ticks()
    );
    std::fs::write(&out_file, results).unwrap();
    println!("results in {out_file}, tick payload sample in {payload_file}");
}
