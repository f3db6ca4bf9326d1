//! The candles stage stopped mid-stream and started again, on Apache Kafka (`KAFKA_BOOTSTRAP`,
//! as `scripts/test.sh` exports it): the candles topic ends with exactly the expected candles,
//! each once and whole. Without the state committed beside the offsets, the restart would
//! re-read a closed window from its middle and publish a partial candle under the same key.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

use std::time::Duration;

use rdkafka::consumer::{Consumer as _, StreamConsumer};
use rdkafka::{ClientConfig, Message as _, TopicPartitionList};
use rust_decimal::Decimal;
use tickcast_candles::{CandleBuilder, CandleOptions};
use tickcast_core::bus::{Cluster, KafkaSettings, OutRecord, Publisher};
use tickcast_core::codec::{self, Message as _, Topics};
use tickcast_core::deadletter::DeadLetter;
use tickcast_core::domain::{Candle, SCHEMA_VERSION, Side, Tick};
use tickcast_core::interval::Interval;
use tickcast_core::shutdown;
use tickcast_core::stage::{self, StageOptions};
use tickcast_ingest::simulator::{SimConfig, Simulator};
use tokio::task::JoinHandle;

/// A minute boundary.
const T0: i64 = 1_700_000_040_000;

fn bootstrap(test: &str) -> Option<String> {
    match std::env::var("KAFKA_BOOTSTRAP") {
        Ok(b) => Some(b),
        Err(_) if std::env::var_os("TICKCAST_REQUIRE_SERVICES").is_some() => {
            panic!("{test}: KAFKA_BOOTSTRAP must be set (scripts/test.sh sets it)")
        }
        Err(_) => {
            eprintln!("SKIPPED {test}: set KAFKA_BOOTSTRAP (or run scripts/test.sh)");
            None
        }
    }
}

struct Env {
    settings: KafkaSettings,
    topics: Topics,
    group: String,
    publisher: Publisher,
}

impl Env {
    async fn new(test: &str) -> Option<Env> {
        let bootstrap = bootstrap(test)?;
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let name = format!("{test}_{}_{nanos}", std::process::id());
        let mut settings = KafkaSettings::new(bootstrap);
        settings.partitions = 1; // both symbols interleaved in one partition
        settings.session_timeout_ms = 6_000;
        let topics = Topics::new(format!("{name}."));
        Cluster::Kafka(settings.clone())
            .ensure_topics(&[topics.ticks(), topics.candles(), topics.deadletter()])
            .await
            .unwrap();
        let publisher = Publisher::new(&settings).unwrap();
        Some(Env {
            settings,
            topics,
            group: format!("{name}-candles"),
            publisher,
        })
    }

    async fn produce(&self, ticks: &[Tick]) {
        let recs: Vec<OutRecord> = ticks
            .iter()
            .map(|t| OutRecord {
                topic: self.topics.ticks().into(),
                key: t.key(),
                payload: codec::encode(t),
            })
            .collect();
        self.publisher.publish_all(&recs).await.unwrap();
    }

    fn start(&self, opts: CandleOptions) -> (shutdown::ShutdownTrigger, JoinHandle<()>) {
        let (trigger, signal) = shutdown::channel();
        let stage_opts = StageOptions {
            name: "candles".into(),
            group: self.group.clone(),
            inputs: vec![self.topics.ticks()],
            deadletter_topic: self.topics.deadletter(),
            max_batch: 500,
            linger: Duration::from_millis(20),
        };
        let handler = CandleBuilder::new(opts, self.topics.candles());
        let settings = self.settings.clone();
        let task = tokio::spawn(async move {
            stage::run(&settings, stage_opts, handler, signal)
                .await
                .unwrap();
        });
        (trigger, task)
    }

    fn reader(&self, topic: &str) -> StreamConsumer {
        let c: StreamConsumer = ClientConfig::new()
            .set("bootstrap.servers", &self.settings.bootstrap)
            .set("group.id", format!("{}-reader-{topic}", self.group))
            .set("auto.offset.reset", "earliest")
            .set("enable.auto.commit", "false")
            .create()
            .unwrap();
        c.subscribe(&[topic]).unwrap();
        c
    }

    /// The committed offset and metadata of partition 0 of the ticks topic for the stage.
    fn committed(&self) -> (i64, String) {
        let c: StreamConsumer = ClientConfig::new()
            .set("bootstrap.servers", &self.settings.bootstrap)
            .set("group.id", &self.group)
            .create()
            .unwrap();
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition(&self.topics.ticks(), 0);
        let got = c.committed_offsets(tpl, Duration::from_secs(10)).unwrap();
        let e = got.find_partition(&self.topics.ticks(), 0).unwrap();
        (e.offset().to_raw().unwrap(), e.metadata().to_string())
    }
}

/// Reads `n` messages, then checks that nothing more arrives for `quiet`.
async fn read_exactly<T: serde::de::DeserializeOwned>(
    c: &StreamConsumer,
    n: usize,
    quiet: Duration,
) -> Vec<T> {
    let mut out = Vec::new();
    while out.len() < n {
        let m = tokio::time::timeout(Duration::from_secs(60), c.recv())
            .await
            .unwrap_or_else(|_| panic!("only {} of {n} messages arrived", out.len()))
            .unwrap();
        out.push(serde_json::from_slice(m.payload().unwrap()).unwrap());
    }
    if let Ok(extra) = tokio::time::timeout(quiet, c.recv()).await {
        let payload = extra.unwrap().payload().map(<[u8]>::to_vec).unwrap();
        panic!(
            "unexpected extra message: {}",
            String::from_utf8_lossy(&payload)
        );
    }
    out
}

fn tick(symbol: &str, id: u64, cents: i64, qty: i64, s: i64) -> Tick {
    Tick {
        v: SCHEMA_VERSION,
        exchange: "binance".into(),
        symbol: symbol.into(),
        trade_id: id.to_string(),
        price: Decimal::new(cents, 2),
        size: Decimal::new(qty, 0),
        side: Side::Buy,
        ts_ms: T0 + s * 1_000,
        ingested_ms: T0 + s * 1_000,
    }
}

fn candle(symbol: &str, open_s: i64, ohlc: [i64; 4], volume: i64, trades: u64) -> Candle {
    let p = |c: i64| Decimal::new(c, 2);
    Candle {
        v: SCHEMA_VERSION,
        exchange: "binance".into(),
        symbol: symbol.into(),
        interval: "1m".into(),
        open_ms: T0 + open_s * 1_000,
        close_ms: T0 + open_s * 1_000 + 60_000,
        open: p(ohlc[0]),
        high: p(ohlc[1]),
        low: p(ohlc[2]),
        close: p(ohlc[3]),
        volume: Decimal::new(volume, 0),
        trades,
    }
}

fn options() -> CandleOptions {
    let mut o = CandleOptions::new([Interval::from_ms(60_000)]);
    o.idle_grace_ms = Some(600_000);
    o
}

/// Exact values, normalised for comparison (the wire keeps each value's own scale).
fn norm(mut c: Candle) -> Candle {
    for d in [
        &mut c.open,
        &mut c.high,
        &mut c.low,
        &mut c.close,
        &mut c.volume,
    ] {
        *d = d.normalize();
    }
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_mid_stream_publishes_each_candle_once_and_whole() {
    let Some(env) = Env::new("candles_restart").await else {
        return;
    };
    // Offsets 0–6. BTC's windows [0, 60 s) and [60 s, 120 s) close; ETH's [0, 60 s) stays open
    // from offset 2, so the stage resumes at offset 2, in the middle of BTC's first window.
    env.produce(&[
        tick("BTC-USDT", 1, 10_000, 1, 0),
        tick("BTC-USDT", 2, 10_100, 1, 10),
        tick("ETH-USDT", 1, 5_000, 2, 30),
        tick("BTC-USDT", 3, 10_200, 1, 40),
        tick("BTC-USDT", 4, 10_300, 1, 61),
        tick("BTC-USDT", 5, 9_900, 1, 70),
        tick("BTC-USDT", 6, 10_400, 1, 121),
    ])
    .await;
    let candles = env.reader(&env.topics.candles());
    let (trigger, task) = env.start(options());
    let first: Vec<Candle> = read_exactly(&candles, 2, Duration::from_millis(500)).await;
    trigger.fire();
    task.await.unwrap();
    let (offset, state) = env.committed();
    assert_eq!(offset, 2, "resumes at ETH's open window");
    assert!(state.starts_with("c1 n7 ebinance="), "{state}");

    // Offsets 7–13, read by a new stage process in the same group.
    env.produce(&[
        tick("ETH-USDT", 2, 5_100, 2, 45),
        tick("BTC-USDT", 7, 10_500, 1, 130),
        tick("ETH-USDT", 3, 5_200, 2, 65),
        tick("BTC-USDT", 8, 10_300, 1, 150),
        tick("BTC-USDT", 9, 10_600, 1, 185),
        tick("BTC-USDT", 10, 9_000, 1, 100), // late: [60 s, 120 s) was emitted
        tick("ETH-USDT", 4, 5_300, 2, 250),
    ])
    .await;
    let (trigger, task) = env.start(options());
    let rest: Vec<Candle> = read_exactly(&candles, 5, Duration::from_secs(3)).await;
    let dead: Vec<DeadLetter> = read_exactly(
        &env.reader(&env.topics.deadletter()),
        1,
        Duration::from_secs(1),
    )
    .await;
    trigger.fire();
    task.await.unwrap();

    let got: Vec<Candle> = first.into_iter().chain(rest).map(norm).collect();
    let expected: Vec<Candle> = vec![
        candle("BTC-USDT", 0, [10_000, 10_200, 10_000, 10_200], 3, 3),
        candle("BTC-USDT", 60, [10_300, 10_300, 9_900, 9_900], 2, 2),
        candle("ETH-USDT", 0, [5_000, 5_100, 5_000, 5_100], 4, 2),
        candle("BTC-USDT", 120, [10_400, 10_500, 10_300, 10_300], 3, 3),
        candle("ETH-USDT", 60, [5_200, 5_200, 5_200, 5_200], 2, 1),
        // Two windows without ETH trades: explicit, at the previous close.
        candle("ETH-USDT", 120, [5_200, 5_200, 5_200, 5_200], 0, 0),
        candle("ETH-USDT", 180, [5_200, 5_200, 5_200, 5_200], 0, 0),
    ]
    .into_iter()
    .map(norm)
    .collect();
    assert_eq!(got, expected);
    assert_eq!((dead[0].offset, dead.len()), (12, 1));
    assert!(
        dead[0].reason.starts_with("late tick"),
        "{}",
        dead[0].reason
    );
}

/// The seeded market's trades as ticks.
fn simulated(n: usize) -> Vec<Tick> {
    Simulator::new(&SimConfig::default_symbols(99, T0))
        .take(n)
        .map(|t| Tick {
            v: SCHEMA_VERSION,
            exchange: "binance".into(),
            symbol: t.symbol,
            trade_id: t.trade_id.to_string(),
            price: t.price,
            size: t.size,
            side: t.side,
            ts_ms: t.ts_ms,
            ingested_ms: t.ts_ms,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stage_stopped_while_ticks_flow_resumes_without_repeats() {
    let Some(env) = Env::new("candles_restart_flow").await else {
        return;
    };
    let opts = {
        let mut o = CandleOptions::new(["10s", "1m"].map(|i| Interval::parse(i).unwrap()));
        o.allowed_lateness_ms = 1_000;
        o
    };
    let ticks = simulated(6_000);
    // The uninterrupted result, from the same builder fed directly.
    let mut reference = CandleBuilder::new(opts.clone(), "x");
    let mut expected = Vec::new();
    for (i, t) in ticks.iter().enumerate() {
        reference.push(t, ("ticks", 0, i as i64), &mut expected);
    }
    assert!(expected.len() > 100, "{} candles", expected.len());

    let candles = env.reader(&env.topics.candles());
    let (trigger, task) = env.start(opts.clone());
    let (head, tail) = ticks.split_at(2_500);
    for chunk in head.chunks(100) {
        env.produce(chunk).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Stop while the second part is being produced.
    let producing = {
        let rest: Vec<Tick> = tail.to_vec();
        let env_publisher = env.publisher.clone();
        let topic = env.topics.ticks();
        tokio::spawn(async move {
            for chunk in rest.chunks(100) {
                let recs: Vec<OutRecord> = chunk
                    .iter()
                    .map(|t| OutRecord {
                        topic: topic.as_str().into(),
                        key: t.key(),
                        payload: codec::encode(t),
                    })
                    .collect();
                env_publisher.publish_all(&recs).await.unwrap();
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    trigger.fire();
    task.await.unwrap();
    producing.await.unwrap();
    let (offset, state) = env.committed();
    assert!(offset > 0 && state.starts_with("c1 n"), "{offset} {state}");
    let (trigger, task) = env.start(opts);
    let got: Vec<Candle> = read_exactly(&candles, expected.len(), Duration::from_secs(3)).await;
    trigger.fire();
    task.await.unwrap();
    let norm_all = |v: Vec<Candle>| v.into_iter().map(norm).collect::<Vec<_>>();
    assert_eq!(norm_all(got), norm_all(expected));
}
