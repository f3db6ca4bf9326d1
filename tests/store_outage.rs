//! Postgres goes away mid-stream and comes back, on Apache Kafka and a Postgres server of the
//! test's own (`scripts/postgres.sh pause|resume`):
//! - the sink and forecast stages wait (`tickcast_store_up` 0), skip nothing and never exit;
//! - the API answers 503 naming the store within 2 s;
//! - once the server is back the stages resume by themselves, and the store holds exactly the
//!   rows of an uninterrupted run.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

mod common;

use std::time::{Duration, Instant};

use common::{OwnPostgres, publish_test_candles, test_candle, try_all_candles, unique, wait_for};
use tickcast::{PipelineConfig, StageKind, run_stage};
use tickcast_core::bus::{Cluster, KafkaSettings};
use tickcast_core::codec::Topics;
use tickcast_core::domain::Candle;
use tickcast_core::interval::Interval;
use tickcast_core::shutdown;
use tickcast_core::telemetry;
use tickcast_store as store;

fn store_up(stage: &str) -> i64 {
    telemetry::STORE_UP.with_label_values(&[stage]).get()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stages_wait_out_a_postgres_outage_and_the_api_answers_503() {
    let Ok(bootstrap) = std::env::var("KAFKA_BOOTSTRAP") else {
        assert!(
            std::env::var_os("TICKCAST_REQUIRE_SERVICES").is_none(),
            "KAFKA_BOOTSTRAP unset but TICKCAST_REQUIRE_SERVICES is set"
        );
        eprintln!("SKIPPED store_outage: set KAFKA_BOOTSTRAP (or run scripts/test.sh)");
        return;
    };
    let pg = OwnPostgres::start();
    let store = store::open(&pg.url).await.unwrap();

    let mut settings = KafkaSettings::new(bootstrap);
    settings.partitions = 1;
    settings.session_timeout_ms = 6_000;
    let topics = Topics::new(format!("{}.", unique("outage")));
    let cluster = Cluster::Kafka(settings.clone());
    cluster.ensure_topics(&topics.all()).await.unwrap();
    let mut cfg = PipelineConfig::new(cluster, topics.clone());
    cfg.group_prefix = format!("{}-", unique("outage"));
    cfg.candles.intervals = vec![Interval::from_ms(60_000)];
    cfg.horizons = vec![1];
    cfg.models = vec!["naive".into()];
    cfg.ensemble = false;
    cfg.checkpoint_every = Duration::from_millis(200);
    cfg.linger = Duration::from_millis(20);

    let (trigger, signal) = shutdown::channel();
    let mut stages = Vec::new();
    for kind in [StageKind::Sink, StageKind::Forecast] {
        let (cfg, store, signal) = (cfg.clone(), store.clone(), signal.clone());
        stages.push(tokio::spawn(async move {
            run_stage(kind, &cfg, Some(store), signal).await
        }));
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let api = format!("http://{}", listener.local_addr().unwrap());
    let state = tickcast_api::AppState::new(store.clone());
    let server = tokio::spawn(tickcast_api::serve(listener, state, signal.clone()));
    let client = reqwest::Client::new();
    let candles_url = format!("{api}/api/v1/candles?exchange=binance&symbol=BTC-USDT&interval=1m");

    // Before: 100 bars stored, and their forecasts.
    publish_test_candles(&settings, &topics, 0..100).await;
    wait_for("100 candles stored", Duration::from_secs(60), || async {
        try_all_candles(&*store).await.is_ok_and(|c| c.len() == 100)
    })
    .await;
    assert_eq!(client.get(&candles_url).send().await.unwrap().status(), 200);

    // Down: 100 more bars arrive while Postgres is away.
    pg.script("pause");
    let down_at = Instant::now();
    publish_test_candles(&settings, &topics, 100..200).await;
    let started = Instant::now();
    let resp = client.get(&candles_url).send().await.unwrap();
    let took = started.elapsed();
    let status = resp.status();
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(status, 503, "{body}");
    assert!(took < Duration::from_secs(2), "503 after {took:?}");
    let error = body["error"].as_str().unwrap();
    assert!(
        error.starts_with("the store is unavailable: "),
        "error names the store: {error}"
    );
    wait_for(
        "tickcast_store_up = 0 for the sink",
        Duration::from_secs(20),
        || async { store_up("sink") == 0 },
    )
    .await;
    wait_for(
        "tickcast_store_up = 0 for the forecast stage",
        Duration::from_secs(20),
        || async { store_up("forecast") == 0 },
    )
    .await;
    // Kept down 10 s in all; every stage still running.
    tokio::time::sleep(Duration::from_secs(10).saturating_sub(down_at.elapsed())).await;
    for s in &stages {
        assert!(!s.is_finished(), "a stage exited during the outage");
    }

    // Back: the stages resume by themselves.
    pg.script("resume");
    let back_at = Instant::now();
    wait_for("200 candles stored", Duration::from_secs(60), || async {
        try_all_candles(&*store).await.is_ok_and(|c| c.len() == 200)
    })
    .await;
    let recovered = back_at.elapsed();
    wait_for("every forecast stored", Duration::from_secs(60), || async {
        store.row_counts().await.is_ok_and(|(_, f)| f == 199)
    })
    .await;
    assert_eq!(store_up("sink"), 1);
    assert_eq!(store_up("forecast"), 1);
    assert_eq!(client.get(&candles_url).send().await.unwrap().status(), 200);
    eprintln!(
        "store_outage: rows complete {:.1} s after Postgres came back",
        recovered.as_secs_f64()
    );

    let want: Vec<Candle> = (0..200).map(test_candle).collect();
    assert_eq!(try_all_candles(&*store).await.unwrap(), want);
    trigger.fire();
    for s in stages {
        s.await.unwrap().unwrap();
    }
    server.await.unwrap().unwrap();
}
