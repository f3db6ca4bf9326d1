//! The alert stage on real Kafka and Postgres through `alerts::run` (the rule file synced into
//! the store, the stage runner, a webhook deliverer): forecasts and candles in, alert events
//! on `tickcast.alerts.v1`, in the store and at the webhook; stopped in the middle of a `for`
//! duration and started again, it resumes from its checkpoint.
//! Needs `KAFKA_BOOTSTRAP` and `DATABASE_URL`.

mod alerts_common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use alerts_common::*;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use rdkafka::Message as _;
use tickcast_alerts::webhook::{SIGNATURE_HEADER, verify};
use tickcast_alerts::{
    self, AlertConfig, AlertEvent, AlertSettings, AlertState, Secret, WebhookSettings,
};
use tickcast_core::bus::{Cluster, KafkaSettings, OutRecord, Publisher};
use tickcast_core::codec::{self, Message as _, Topics};
use tickcast_core::shutdown;
use tickcast_core::stage::StageOptions;
use tickcast_store::{AlertEventQuery, Store};

use AlertState::{Firing, Pending, Resolved};

const SECRET: &str = "kafka-test-secret";

fn kafka() -> Option<String> {
    match std::env::var("KAFKA_BOOTSTRAP") {
        Ok(k) => Some(k),
        Err(_) => {
            assert!(
                std::env::var_os("TICKCAST_REQUIRE_SERVICES").is_none(),
                "KAFKA_BOOTSTRAP must be set"
            );
            eprintln!("SKIPPED alerts_kafka: KAFKA_BOOTSTRAP not set");
            None
        }
    }
}

async fn receive(
    State(ids): State<Arc<Mutex<Vec<String>>>>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let sig = headers
        .get(SIGNATURE_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !verify(&Secret::new(SECRET), &body, sig) {
        return StatusCode::UNAUTHORIZED;
    }
    match codec::decode::<AlertEvent>(&body) {
        Ok(e) => {
            ids.lock().expect("ids").push(e.id);
            StatusCode::OK
        }
        Err(_) => StatusCode::BAD_REQUEST,
    }
}

fn record(i: &In, topics: &Topics) -> OutRecord {
    match i {
        In::F(f) => OutRecord {
            topic: topics.forecasts().into(),
            key: f.key(),
            payload: codec::encode(f),
        },
        In::C(c) => OutRecord {
            topic: topics.candles().into(),
            key: c.key(),
            payload: codec::encode(c),
        },
    }
}

fn f(bar: i64, point: f64) -> In {
    In::F(fc("m", 1, bar, 100.0, point, (point - 10.0, point + 10.0)))
}

/// The services and names one test run uses.
struct Env {
    kafka: KafkaSettings,
    topics: Topics,
    group: String,
    store: Arc<dyn Store>,
    alerts_in: rdkafka::consumer::StreamConsumer<tickcast_core::bus::LoggingContext>,
}

/// Runs the stage until `n` more events are on the alerts topic; returns them.
async fn phase(env: &Env, cfg: AlertConfig, inputs: &[In], n: usize) -> Vec<AlertEvent> {
    let Env {
        kafka,
        topics,
        group,
        store,
        alerts_in,
    } = env;
    let (trigger, signal) = shutdown::channel();
    let opts = StageOptions {
        name: "alert".into(),
        group: group.clone(),
        inputs: cfg.settings.inputs(),
        deadletter_topic: topics.deadletter(),
        max_batch: 1_000,
        linger: Duration::from_millis(20),
    };
    let task = {
        let (kafka, store) = (kafka.clone(), store.clone());
        tokio::spawn(async move { tickcast_alerts::run(&kafka, opts, cfg, store, signal).await })
    };
    let publisher = Publisher::new(kafka).expect("publisher");
    let records: Vec<OutRecord> = inputs.iter().map(|i| record(i, topics)).collect();
    publisher.publish_all(&records).await.expect("publish");
    let mut out = Vec::new();
    while out.len() < n {
        let m = match tokio::time::timeout(Duration::from_secs(60), alerts_in.recv()).await {
            Ok(m) => m.expect("consume"),
            Err(_) => {
                let state = if task.is_finished() {
                    format!("{:?}", task.await)
                } else {
                    "still running".to_string()
                };
                panic!("only {out:?} in time; the stage: {state}");
            }
        };
        let e: AlertEvent = codec::decode(m.payload().unwrap_or_default()).expect("alert");
        assert_eq!(m.key(), Some(e.key().as_bytes()));
        out.push(e);
    }
    trigger.fire();
    tokio::time::timeout(Duration::from_secs(30), task)
        .await
        .expect("stage stops")
        .expect("stage task")
        .expect("stage ran");
    out
}

fn per_rule(events: &[AlertEvent]) -> BTreeMap<String, Vec<(AlertState, i64)>> {
    let mut m: BTreeMap<String, Vec<(AlertState, i64)>> = BTreeMap::new();
    for (rule, state, bar) in shape(events) {
        m.entry(rule).or_default().push((state, bar));
    }
    m
}

#[tokio::test]
async fn alert_stage_on_kafka_resumes_mid_for_after_a_restart() {
    let Some(bootstrap) = kafka() else { return };
    let Some(store) = postgres("alerts_kafka").await else {
        return;
    };
    let prefix = format!("{}.", unique("alertsk"));
    let topics = Topics::new(&prefix);
    let kafka = KafkaSettings::new(bootstrap);
    Cluster::Kafka(kafka.clone())
        .ensure_topics(&topics.all())
        .await
        .expect("topics");
    let group = format!("{prefix}alert");
    let alerts_in = kafka
        .consumer(&format!("{prefix}reader"), &[topics.alerts()])
        .expect("alerts consumer");

    let dir = std::env::temp_dir().join(unique("alerts_kafka"));
    std::fs::create_dir_all(&dir).expect("dir");
    let _cleanup = TempDir(dir.clone());
    let rules = dir.join("alerts.yaml");
    std::fs::write(
        &rules,
        "rules:\n\
         - {id: kafka-above, interval: 1m, model: m, horizon: 1, kind: above, threshold: 100, for_bars: 2}\n\
         - {id: kafka-anomaly, interval: 1m, model: m, horizon: 1, kind: anomaly, band: 95}\n",
    )
    .expect("rule file");

    let ids = Arc::new(Mutex::new(Vec::new()));
    let app = axum::Router::new()
        .route("/hook", axum::routing::post(receive))
        .with_state(ids.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, app).await });

    let env = Env {
        kafka: kafka.clone(),
        topics: topics.clone(),
        group: group.clone(),
        store: store.clone(),
        alerts_in,
    };
    let config = || {
        let mut settings = AlertSettings::new(&topics, group.clone());
        settings.checkpoint_every = Duration::from_millis(100);
        let mut hook = WebhookSettings::new("test-hook", &url, Secret::new(SECRET));
        hook.backoff_base = Duration::from_millis(10);
        hook.poll = Duration::from_millis(50);
        AlertConfig {
            settings,
            rules_file: Some(rules.clone()),
            webhooks: vec![hook],
            reload: None,
        }
    };

    // Phase 1: pending at bar 0 (for 2 bars), the close of bar 1 outside the 95% band.
    let first = vec![
        f(0, 101.0),
        In::C(candle("BTC-USDT", 1, "150")),
        f(1, 101.0),
    ];
    let mut events = phase(&env, config(), &first, 2).await;
    // Phase 2, a new process: firing at bar 2 only if the pending timer survived.
    let second = vec![f(2, 101.0), In::C(candle("BTC-USDT", 2, "100")), f(3, 50.0)];
    events.extend(phase(&env, config(), &second, 3).await);

    assert_eq!(
        per_rule(&events),
        BTreeMap::from([
            (
                "kafka-above".to_string(),
                vec![(Pending, 0), (Firing, 2), (Resolved, 3)]
            ),
            (
                "kafka-anomaly".to_string(),
                vec![(Firing, 1), (Resolved, 2)]
            ),
        ])
    );
    // No duplicates on the topic, every event in the store and at the webhook once.
    let mut want: Vec<String> = events.iter().map(|e| e.id.clone()).collect();
    want.sort();
    let mut unique_ids = want.clone();
    unique_ids.dedup();
    assert_eq!(unique_ids, want);
    let mut stored: Vec<String> = store
        .alert_events(&AlertEventQuery {
            limit: 100,
            ..Default::default()
        })
        .await
        .expect("events")
        .into_iter()
        .map(|e| e.id)
        .collect();
    stored.sort();
    assert_eq!(stored, want);
    // Deliveries still queued when the stage stopped go out with the next process's
    // deliverer; here, one pass of a new one.
    let mut hook = WebhookSettings::new("test-hook", &url, Secret::new(SECRET));
    hook.backoff_base = Duration::from_millis(10);
    let later = tickcast_alerts::Deliverer::new(store.clone(), hook).expect("client");
    for _ in 0..100 {
        let pending = store
            .alert_deliveries(&tickcast_store::DeliveryQuery {
                endpoint: Some("test-hook".into()),
                status: Some(tickcast_store::DeliveryStatus::Pending),
                limit: 100,
            })
            .await
            .expect("outbox");
        if pending.is_empty() {
            break;
        }
        later.pass().await.expect("pass");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut hooked = ids.lock().expect("ids").clone();
    hooked.sort();
    assert_eq!(hooked, want, "each event delivered once");
}
