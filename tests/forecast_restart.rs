//! Kill -9 the forecast stage mid-stream and start it again: it resumes every series from its
//! checkpoint (no warm-up: the GARCH model, which needs 200 returns before its first forecast,
//! forecasts at once) and the forecasts topic ends with exactly one forecast per closed candle,
//! model and horizon — each identical to what an uninterrupted run produces. Candles re-read
//! after the kill (those since the last checkpoint) are recomputed into identical forecasts;
//! any copy on the topic is byte-for-byte the same record, so the store's upsert keeps one.
//! Runs on Apache Kafka + Postgres and on the embedded broker + SQLite.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

mod common;

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{Env, ForecastKey as Key, Mode, forecast_key as key, reference_forecasts};
use rdkafka::ClientConfig;
use rdkafka::Message as _;
use rdkafka::consumer::{Consumer as _, StreamConsumer};
use tickcast_core::bus::{OutRecord, Publisher};
use tickcast_core::codec::{self, Message as _};
use tickcast_core::domain::Forecast;
use tickcast_forecast::testing::synthetic_candles;

const SYMBOLS: [&str; 3] = ["BTC-USDT", "ETH-USDT", "SOL-USDT"];
const BARS: usize = 700;
const HORIZONS: &str = "1,5";
const MODELS: &str = "naive,garch";

fn spawn_stage(env: &Env) -> Child {
    Command::new(env!("CARGO_BIN_EXE_tickcast"))
        .args(["run", "--stages", "forecast"])
        .args(["--bootstrap", &env.settings().bootstrap])
        .args(["--topic-prefix", &env.topics.prefix])
        .args(["--group-prefix", &env.group_prefix])
        .args(["--database-url", &env.database_url])
        .args(["--models", MODELS, "--horizons", HORIZONS])
        .args(["--checkpoint-secs", "0.5"])
        .env(
            "RUST_LOG",
            std::env::var("TICKCAST_CHILD_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start tickcast run --stages forecast")
}

/// Reads the forecasts topic from the start until `want` distinct keys arrived (or `wait`
/// passes), then 2 s more to catch stragglers. Returns every record, in arrival order.
async fn read_forecasts(env: &Env, want: usize, wait: Duration) -> Vec<Forecast> {
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", &env.settings().bootstrap)
        .set("group.id", format!("{}reader-{}", env.group_prefix, want))
        .set("auto.offset.reset", "earliest")
        .create()
        .unwrap();
    consumer.subscribe(&[&env.topics.forecasts()]).unwrap();
    let mut out = Vec::new();
    let mut keys = std::collections::BTreeSet::new();
    let deadline = tokio::time::Instant::now() + wait;
    let mut quiet: Option<tokio::time::Instant> = None;
    loop {
        match tokio::time::timeout_at(quiet.unwrap_or(deadline), consumer.recv()).await {
            Err(_) => break,
            Ok(m) => {
                let m = m.unwrap();
                let f: Forecast = codec::decode(m.payload().unwrap()).unwrap();
                keys.insert(key(&f));
                out.push(f);
                if keys.len() >= want && quiet.is_none() {
                    quiet = Some(tokio::time::Instant::now() + Duration::from_secs(2));
                }
            }
        }
    }
    out
}

async fn kill_and_resume(mode: Mode) {
    let Some(env) = Env::new(mode, "fcrestart", 3).await else {
        return;
    };
    let candles = synthetic_candles(&SYMBOLS, BARS, 11);
    let want = reference_forecasts(&candles, MODELS, &[1, 5]);
    let records: Vec<OutRecord> = candles
        .iter()
        .map(|c| OutRecord {
            topic: env.topics.candles().into(),
            key: c.key(),
            payload: codec::encode(c),
        })
        .collect();
    let publisher = Publisher::new(env.settings()).unwrap();
    let mut child = spawn_stage(&env);

    // The first 60% while the stage runs; kill it once it has checkpointed past the GARCH
    // warm-up (so the restarted process must restore fitted models, not refit from scratch).
    let cut = records.len() * 6 / 10;
    for chunk in records[..cut].chunks(150) {
        publisher.publish_all(chunk).await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let consumer = format!("{}forecast", env.group_prefix);
    let store = env.store.clone();
    let keys: Vec<(String, String, String)> = SYMBOLS
        .iter()
        .map(|s| ("sim".to_string(), s.to_string(), "1m".to_string()))
        .collect();
    let warm_ms = 300 * 60_000;
    let checkpointed = common::eventually(Duration::from_secs(90), || {
        let (store, consumer, keys) = (store.clone(), consumer.clone(), keys.clone());
        async move {
            let rows = store.load_series_states(&consumer, &keys).await.unwrap();
            rows.len() == SYMBOLS.len() && rows.iter().all(|r| r.last_open_ms >= warm_ms)
        }
    })
    .await;
    assert!(checkpointed, "{mode:?}: no checkpoint past the warm-up");
    child.kill().unwrap(); // SIGKILL: no final checkpoint, no final commit
    child.wait().unwrap();
    let before = store.load_series_states(&consumer, &keys).await.unwrap();
    assert!(
        before
            .iter()
            .all(|r| (r.last_open_ms as usize) < (BARS - 1) * 60_000),
        "{mode:?}: the kill happened after the end"
    );

    publisher.publish_all(&records[cut..]).await.unwrap();
    let mut child = spawn_stage(&env);
    let got = read_forecasts(&env, want.len(), Duration::from_secs(120)).await;
    child.kill().unwrap();
    child.wait().unwrap();

    // Exactly the reference's keys, each with the reference's values; copies are identical.
    let mut by_key: BTreeMap<Key, (Forecast, usize)> = BTreeMap::new();
    for f in got {
        match by_key.get_mut(&key(&f)) {
            Some((first, n)) => {
                assert_eq!(*first, f, "{mode:?}: a redelivered forecast differs");
                *n += 1;
            }
            None => {
                by_key.insert(key(&f), (f, 1));
            }
        }
    }
    let missing: Vec<&Key> = want.keys().filter(|k| !by_key.contains_key(*k)).collect();
    assert!(
        missing.is_empty(),
        "{mode:?}: {} missing, first {:?}",
        missing.len(),
        missing.first()
    );
    let extra: Vec<&Key> = by_key.keys().filter(|k| !want.contains_key(*k)).collect();
    assert!(
        extra.is_empty(),
        "{mode:?}: {} unexpected, first {:?}",
        extra.len(),
        extra.first()
    );
    for (k, (f, _)) in &by_key {
        assert_eq!(f, &want[k], "{mode:?}: forecast {k:?}");
    }
    // Recomputed copies are at most the forecasts of candles after the last checkpoint.
    let copies: usize = by_key.values().map(|(_, n)| n - 1).sum();
    let per_candle = want.len() / candles.len() + 1;
    let since_checkpoint: usize = before
        .iter()
        .map(|r| BARS - 1 - (r.last_open_ms / 60_000) as usize)
        .sum();
    assert!(
        copies <= since_checkpoint * per_candle,
        "{mode:?}: {copies} copies for {since_checkpoint} candles after the checkpoint"
    );
    eprintln!(
        "{mode:?}: {} forecasts, {copies} identical copies",
        want.len()
    );
    // GARCH forecast right after the restart: it was restored, not refitted from nothing
    // (a fresh series needs 200 returns before its first GARCH forecast).
    let first_after = before.iter().map(|r| r.last_open_ms).min().unwrap() + 60_000;
    assert!(
        want.keys()
            .any(|(_, m, _, base)| m == "garch" && *base == first_after),
        "{mode:?}: garch forecasts right after the restart point"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn forecast_stage_killed_mid_stream_on_kafka_and_postgres() {
    kill_and_resume(Mode::Real).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn forecast_stage_killed_mid_stream_on_embedded_broker_and_sqlite() {
    kill_and_resume(Mode::Embedded).await;
}
