//! The store's disk fills up mid-stream, on Apache Kafka and a real SQLite database whose size
//! is capped (`PRAGMA max_page_count`, so writes fail with SQLITE_FULL exactly as on a full
//! disk) while it still answers pings:
//! - the sink waits (`tickcast_store_up{stage="sink"}` 0), dead-letters nothing, skips nothing
//!   and never exits;
//! - once there is room again it resumes by itself, and the store holds exactly every row.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{publish_test_candles, test_candle, try_all_candles, unique, wait_for};
use rdkafka::ClientConfig;
use rdkafka::consumer::{Consumer, StreamConsumer};
use tickcast::{PipelineConfig, StageKind, run_stage};
use tickcast_core::bus::{Cluster, KafkaSettings};
use tickcast_core::codec::Topics;
use tickcast_core::shutdown;
use tickcast_core::telemetry;
use tickcast_store::sqlite::SqliteStore;
use tickcast_store::{self as store, Store};

async fn stored(store: &dyn Store) -> usize {
    try_all_candles(store).await.map_or(0, |c| c.len())
}

/// Messages on the dead-letter topic (read until 3 s pass with none).
async fn dead_letters(settings: &KafkaSettings, topics: &Topics) -> usize {
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", &settings.bootstrap)
        .set("group.id", unique("full-dl"))
        .set("auto.offset.reset", "earliest")
        .create()
        .unwrap();
    consumer.subscribe(&[&topics.deadletter()]).unwrap();
    let mut n = 0;
    while let Ok(m) = tokio::time::timeout(Duration::from_secs(3), consumer.recv()).await {
        m.unwrap();
        n += 1;
    }
    n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_is_waited_out_and_nothing_is_dead_lettered() {
    let Ok(bootstrap) = std::env::var("KAFKA_BOOTSTRAP") else {
        assert!(
            std::env::var_os("TICKCAST_REQUIRE_SERVICES").is_none(),
            "KAFKA_BOOTSTRAP unset but TICKCAST_REQUIRE_SERVICES is set"
        );
        eprintln!("SKIPPED store_full: set KAFKA_BOOTSTRAP (or run scripts/test.sh)");
        return;
    };
    // RUST_LOG=info shows what the sink did.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    // In memory: one connection, so the size cap holds for every query.
    let lite = SqliteStore::connect("sqlite::memory:").await.unwrap();
    let store: Arc<dyn Store> = Arc::new(lite.clone());

    let mut settings = KafkaSettings::new(bootstrap);
    settings.partitions = 1;
    let topics = Topics::new(format!("{}.", unique("full")));
    let cluster = Cluster::Kafka(settings.clone());
    cluster.ensure_topics(&topics.all()).await.unwrap();
    let mut cfg = PipelineConfig::new(cluster, topics.clone());
    cfg.group_prefix = format!("{}-", unique("full"));
    cfg.linger = Duration::from_millis(20);

    let (trigger, signal) = shutdown::channel();
    let sink = {
        let (cfg, store) = (cfg.clone(), store.clone());
        tokio::spawn(async move { run_stage(StageKind::Sink, &cfg, Some(store), signal).await })
    };

    publish_test_candles(&settings, &topics, 0..100).await;
    wait_for("100 candles stored", Duration::from_secs(60), || async {
        stored(&*store).await == 100
    })
    .await;

    // The disk is full: the database may not grow by one page.
    let (pages,): (i64,) = sqlx::query_as("PRAGMA page_count")
        .fetch_one(lite.pool())
        .await
        .unwrap();
    sqlx::query(&format!("PRAGMA max_page_count = {pages}"))
        .execute(lite.pool())
        .await
        .unwrap();
    let recoveries = telemetry::STAGE_RECOVERIES.with_label_values(&["sink", "store"]);
    let before = recoveries.get();
    publish_test_candles(&settings, &topics, 100..1_100).await;
    wait_for(
        "tickcast_store_up = 0 for the sink",
        Duration::from_secs(30),
        || async { telemetry::STORE_UP.with_label_values(&["sink"]).get() == 0 },
    )
    .await;
    assert_eq!(recoveries.get(), before + 1);
    // Full for 5 s: the sink is still running and the rows wait.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(!sink.is_finished(), "the sink exited on a full disk");
    let while_full = stored(&*store).await;
    // The error itself is SQLite's FULL, which the stages and the API count as an outage.
    let refused = sqlx::query("CREATE TABLE filler (x BLOB)")
        .execute(lite.pool())
        .await
        .unwrap_err();
    let why = store::unavailable(&refused.into()).expect("a full database is an outage");
    assert!(why.contains("SQLite code 13"), "{why}");
    assert!(while_full < 1_100, "{while_full} rows fit on a full disk");

    // Room again: the sink resumes by itself.
    sqlx::query("PRAGMA max_page_count = 1073741823")
        .execute(lite.pool())
        .await
        .unwrap();
    let freed = Instant::now();
    wait_for("1,100 candles stored", Duration::from_secs(60), || async {
        stored(&*store).await == 1_100
    })
    .await;
    eprintln!(
        "store_full: {while_full} rows while full; all 1,100 stored {:.1} s after room was made",
        freed.elapsed().as_secs_f64()
    );
    assert_eq!(telemetry::STORE_UP.with_label_values(&["sink"]).get(), 1);
    assert_eq!(
        common::all_candles(&*store).await,
        (0..1_100).map(test_candle).collect::<Vec<_>>()
    );
    assert_eq!(dead_letters(&settings, &topics).await, 0, "dead letters");
    trigger.fire();
    sink.await.unwrap().unwrap();
}
