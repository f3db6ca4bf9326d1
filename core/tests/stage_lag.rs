//! The stage runner's consumer-lag gauge (`tickcast_consumer_lag{stage,topic,partition}`) on
//! Apache Kafka (`KAFKA_BOOTSTRAP`, as `scripts/test.sh` exports it): a slow stage behind a
//! backlog reports a positive lag no larger than the backlog, zero once it has caught up, and
//! its series leave the registry when it stops.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tickcast_core::bus::{Cluster, KafkaSettings, OutRecord, Publisher};
use tickcast_core::shutdown;
use tickcast_core::stage::{self, Effects, Handler, Inbound, StageOptions};
use tickcast_core::telemetry;

const BACKLOG: usize = 100;

/// Handles one message per batch, slowly, and counts them.
struct Slow {
    handled: Arc<AtomicUsize>,
}

impl Handler for Slow {
    async fn handle(&mut self, batch: &[Inbound]) -> anyhow::Result<Effects> {
        tokio::time::sleep(Duration::from_millis(100)).await;
        self.handled.fetch_add(batch.len(), Ordering::SeqCst);
        Ok(Effects::default())
    }
}

/// The gauge's value for (stage, topic, partition 0), without creating the series.
fn lag_of(stage: &str, topic: &str) -> Option<i64> {
    telemetry::REGISTRY
        .gather()
        .iter()
        .filter(|f| f.name() == "tickcast_consumer_lag")
        .flat_map(|f| f.get_metric())
        .find(|m| {
            let labels: Vec<(&str, &str)> = m
                .get_label()
                .iter()
                .map(|l| (l.name(), l.value()))
                .collect();
            labels.contains(&("stage", stage))
                && labels.contains(&("topic", topic))
                && labels.contains(&("partition", "0"))
        })
        .map(|m| m.get_gauge().get_value() as i64)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lag_is_reported_while_behind_and_zero_once_caught_up() {
    let bootstrap = match std::env::var("KAFKA_BOOTSTRAP") {
        Ok(b) => b,
        Err(_) if std::env::var_os("TICKCAST_REQUIRE_SERVICES").is_some() => {
            panic!("KAFKA_BOOTSTRAP must be set (scripts/test.sh sets it)")
        }
        Err(_) => {
            eprintln!("SKIPPED stage_lag: set KAFKA_BOOTSTRAP (or run scripts/test.sh)");
            return;
        }
    };
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    let name = format!("stage_lag_{}_{nanos}", std::process::id());
    let mut settings = KafkaSettings::new(bootstrap);
    settings.partitions = 1;
    settings.session_timeout_ms = 6_000;
    let input = format!("{name}.in");
    let dead = format!("{name}.dead");
    Cluster::Kafka(settings.clone())
        .ensure_topics(&[input.clone(), dead.clone()])
        .await
        .unwrap();
    let records: Vec<OutRecord> = (0..BACKLOG)
        .map(|i| OutRecord {
            topic: input.as_str().into(),
            key: "k".into(),
            payload: format!("{i}").into_bytes(),
        })
        .collect();
    Publisher::new(&settings)
        .unwrap()
        .publish_all(&records)
        .await
        .unwrap();

    let handled = Arc::new(AtomicUsize::new(0));
    let (trigger, signal) = shutdown::channel();
    let opts = StageOptions {
        name: name.clone(),
        group: format!("{name}-group"),
        inputs: vec![input.clone()],
        deadletter_topic: dead,
        max_batch: 1,
        linger: Duration::from_millis(1),
    };
    let handler = Slow {
        handled: handled.clone(),
    };
    let task = tokio::spawn(async move { stage::run(&settings, opts, handler, signal).await });

    // Behind: a positive lag, never more than the backlog. Then caught up: zero.
    let start = Instant::now();
    let mut max_seen = 0;
    loop {
        assert!(
            start.elapsed() < Duration::from_secs(90),
            "no zero lag after catching up; max seen {max_seen}, handled {}",
            handled.load(Ordering::SeqCst)
        );
        if let Some(lag) = lag_of(&name, &input) {
            assert!((0..=BACKLOG as i64).contains(&lag), "lag {lag}");
            max_seen = max_seen.max(lag);
            if lag == 0 && handled.load(Ordering::SeqCst) == BACKLOG {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(max_seen > 0, "never saw the stage behind");

    trigger.fire();
    task.await.unwrap().unwrap();
    assert_eq!(
        lag_of(&name, &input),
        None,
        "series left after the stage stopped"
    );
}
