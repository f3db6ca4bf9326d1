//! Kill -9 the sink process mid-stream and start it again: the store ends with exactly the rows
//! that were produced — none lost, none duplicated — and the stored offsets equal the topics'
//! end offsets. Runs on Apache Kafka + Postgres and on the embedded broker + SQLite (the child
//! process reaches the in-process mock cluster over TCP).

#![allow(clippy::unwrap_used)] // tests fail loudly by design

mod common;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{Env, Mode};
use rust_decimal::Decimal;
use tickcast_core::bus::{OutRecord, Publisher};
use tickcast_core::codec::{self, Message as _};
use tickcast_core::domain::{Candle, Forecast, SCHEMA_VERSION};
use tickcast_store::ForecastQuery;

const SYMBOLS: [&str; 4] = ["BTC-USDT", "ETH-USDT", "SOL-USDT", "XRP-USDT"];
const BARS: i64 = 1_000;

fn candle(symbol: &str, i: i64) -> Candle {
    let p = Decimal::new(10_000 + (i * 37 % 500), 2);
    Candle {
        v: SCHEMA_VERSION,
        exchange: "binance".into(),
        symbol: symbol.into(),
        interval: "1m".into(),
        open_ms: 1_700_000_000_000 + i * 60_000,
        close_ms: 1_700_000_060_000 + i * 60_000,
        open: p,
        high: p + Decimal::ONE,
        low: p - Decimal::ONE,
        close: p,
        volume: Decimal::new(i + 1, 3),
        trades: (i % 50 + 1) as u64,
    }
}

fn forecast(c: &Candle, horizon: u32) -> Forecast {
    let last = c.open_ms as f64 / 1e10;
    Forecast {
        v: SCHEMA_VERSION,
        exchange: c.exchange.as_str().into(),
        symbol: c.symbol.as_str().into(),
        interval: c.interval.as_str().into(),
        model: "naive".into(),
        horizon,
        base_ms: c.open_ms,
        target_ms: c.open_ms + i64::from(horizon) * 60_000,
        last,
        point: last,
        lo80: last - 1.0,
        hi80: last + 1.0,
        lo95: last - 2.0,
        hi95: last + 2.0,
        ..Default::default()
    }
}

/// All records, interleaved by bar so that every partition advances together.
fn records(env: &Env) -> (Vec<OutRecord>, Vec<Candle>, Vec<Forecast>) {
    let (mut out, mut candles, mut forecasts) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..BARS {
        for s in SYMBOLS {
            let c = candle(s, i);
            out.push(OutRecord {
                topic: env.topics.candles().into(),
                key: c.key(),
                payload: codec::encode(&c),
            });
            for h in [1, 5] {
                let f = forecast(&c, h);
                out.push(OutRecord {
                    topic: env.topics.forecasts().into(),
                    key: f.key(),
                    payload: codec::encode(&f),
                });
                forecasts.push(f);
            }
            candles.push(c);
        }
    }
    (out, candles, forecasts)
}

fn spawn_sink(env: &Env) -> Child {
    Command::new(env!("CARGO_BIN_EXE_tickcast"))
        .args(["run", "--stages", "sink"])
        .args(["--bootstrap", &env.settings().bootstrap])
        .args(["--topic-prefix", &env.topics.prefix])
        .args(["--group-prefix", &env.group_prefix])
        .args(["--database-url", &env.database_url])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start tickcast run --stages sink")
}

fn sort_forecasts(mut f: Vec<Forecast>) -> Vec<Forecast> {
    f.sort_by(|a, b| (&a.symbol, a.base_ms, a.horizon).cmp(&(&b.symbol, b.base_ms, b.horizon)));
    f
}

async fn kill_and_restart(mode: Mode) {
    let Some(env) = Env::new(mode, "sinkkill", 3).await else {
        return;
    };
    let (recs, candles, forecasts) = records(&env);
    let total = recs.len();
    let publisher = Publisher::new(env.settings()).unwrap();
    let mut child = spawn_sink(&env);

    // Produce the first 60% in chunks while the sink runs; kill it once it has written some.
    let cut = total * 6 / 10;
    for chunk in recs[..cut].chunks(400) {
        publisher.publish_all(chunk).await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let store = env.store.clone();
    let started = common::eventually(Duration::from_secs(60), || {
        let store = store.clone();
        async move { common::candle_count(&*store).await >= 200 }
    })
    .await;
    assert!(started, "{mode:?}: sink wrote nothing");
    child.kill().unwrap(); // SIGKILL: no shutdown path runs
    child.wait().unwrap();
    let written_before = common::candle_count(&*env.store).await;

    publisher.publish_all(&recs[cut..]).await.unwrap();
    let mut child = spawn_sink(&env);
    let done = common::eventually(Duration::from_secs(90), || {
        let store = store.clone();
        let n = candles.len();
        async move {
            common::candle_count(&*store).await >= n
                && common::forecast_count(&*store).await >= 2 * n
        }
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(done, "{mode:?}: restarted sink did not catch up");
    assert!(
        written_before < candles.len(),
        "{mode:?}: the kill happened after the end ({written_before})"
    );

    let mut want_candles = candles.clone();
    want_candles.sort_by(|a, b| (a.open_ms, &a.symbol).cmp(&(b.open_ms, &b.symbol)));
    assert_eq!(
        common::all_candles(&*env.store).await,
        want_candles,
        "{mode:?}: candles"
    );
    let stored = env
        .store
        .forecasts(&ForecastQuery {
            limit: 10_000,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        sort_forecasts(stored),
        sort_forecasts(forecasts),
        "{mode:?}: forecasts"
    );

    // Stored offsets cover every message: per topic they sum to the number produced.
    let offsets = env
        .store
        .offsets(&format!("{}sink", env.group_prefix))
        .await
        .unwrap();
    let sum = |topic: String| {
        offsets
            .iter()
            .filter(|((t, _), _)| *t == topic)
            .map(|(_, o)| *o)
            .sum::<i64>()
    };
    assert_eq!(sum(env.topics.candles()), candles.len() as i64);
    assert_eq!(sum(env.topics.forecasts()), 2 * candles.len() as i64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sink_killed_mid_stream_on_kafka_and_postgres() {
    kill_and_restart(Mode::Real).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sink_killed_mid_stream_on_embedded_broker_and_sqlite() {
    kill_and_restart(Mode::Embedded).await;
}

/// The candles topic is deleted and made again (a broker whose volume was dropped) after the
/// sink wrote 300 of its records: the sink refuses to start, naming the partition and both
/// offsets, and with `--sink-forget-offsets-ahead` it writes the new topic's records.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_recreated_topic_stops_the_sink_until_told() {
    let Some(env) = Env::new(Mode::Real, "sinkrecreate", 1).await else {
        return;
    };
    let candles_topic = env.topics.candles();
    let publish = |range: std::ops::Range<i64>| {
        let recs: Vec<OutRecord> = range
            .map(|i| {
                let c = candle("BTC-USDT", i);
                OutRecord {
                    topic: candles_topic.as_str().into(),
                    key: c.key(),
                    payload: codec::encode(&c),
                }
            })
            .collect();
        let settings = env.settings().clone();
        async move {
            Publisher::new(&settings)
                .unwrap()
                .publish_all(&recs)
                .await
                .unwrap()
        }
    };
    publish(0..300).await;
    let mut child = spawn_sink(&env);
    let store = env.store.clone();
    let wrote = common::eventually(Duration::from_secs(60), || {
        let store = store.clone();
        async move { common::candle_count(&*store).await == 300 }
    })
    .await;
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(wrote, "sink wrote the first 300");

    // The topic goes and comes back empty; 20 new bars arrive.
    let admin: rdkafka::admin::AdminClient<rdkafka::client::DefaultClientContext> =
        rdkafka::ClientConfig::new()
            .set("bootstrap.servers", &env.settings().bootstrap)
            .create()
            .unwrap();
    let opts = rdkafka::admin::AdminOptions::new();
    for r in admin.delete_topics(&[&candles_topic], &opts).await.unwrap() {
        r.unwrap();
    }
    let mut recreated = false;
    for _ in 0..50 {
        if env
            .cluster
            .ensure_topics(std::slice::from_ref(&candles_topic))
            .await
            .is_ok()
        {
            recreated = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(recreated, "candles topic made again");
    let mut published = false;
    for _ in 0..50 {
        let settings = env.settings().clone();
        let c = candle("BTC-USDT", 300);
        let one = [OutRecord {
            topic: candles_topic.as_str().into(),
            key: c.key(),
            payload: codec::encode(&c),
        }];
        if Publisher::new(&settings)
            .unwrap()
            .publish_all(&one)
            .await
            .is_ok()
        {
            published = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(published, "first record on the new topic");
    publish(301..320).await;

    // Refused, naming the partition and both offsets.
    let out = Command::new(env!("CARGO_BIN_EXE_tickcast"))
        .args(["run", "--stages", "sink"])
        .args(["--bootstrap", &env.settings().bootstrap])
        .args(["--topic-prefix", &env.topics.prefix])
        .args(["--group-prefix", &env.group_prefix])
        .args(["--database-url", &env.database_url])
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "the sink started: {stderr}");
    let want = format!(
        "{candles_topic}/0: the broker ends at offset 20, the database has written up to 300"
    );
    assert!(stderr.contains(&want), "{want}\nnot in: {stderr}");
    assert!(stderr.contains("--sink-forget-offsets-ahead"), "{stderr}");
    assert_eq!(common::candle_count(&*env.store).await, 300);

    // Told: the new records are written.
    let mut child = Command::new(env!("CARGO_BIN_EXE_tickcast"))
        .args(["run", "--stages", "sink", "--sink-forget-offsets-ahead"])
        .args(["--bootstrap", &env.settings().bootstrap])
        .args(["--topic-prefix", &env.topics.prefix])
        .args(["--group-prefix", &env.group_prefix])
        .args(["--database-url", &env.database_url])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let caught_up = common::eventually(Duration::from_secs(60), || {
        let store = store.clone();
        async move { common::candle_count(&*store).await == 320 }
    })
    .await;
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(caught_up, "the new topic's 20 records written");
    let want: Vec<Candle> = (0..320).map(|i| candle("BTC-USDT", i)).collect();
    assert_eq!(common::all_candles(&*env.store).await, want);
}
