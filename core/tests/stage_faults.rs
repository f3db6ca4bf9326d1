//! The stage runner under faults, on Apache Kafka (`KAFKA_BOOTSTRAP`, as `scripts/test.sh`
//! exports it):
//! - records that make the handler panic or fail (with its store up) are found inside their
//!   batches, dead-lettered with the reason, and passed; every other record's effect is applied
//!   exactly once (the handler's state is reset to the committed one before a re-read);
//! - a store outage is waited out: nothing is dead-lettered or skipped, `tickcast_store_up` is 0
//!   meanwhile, and the stage resumes by itself.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use rdkafka::Message as _;
use rdkafka::consumer::{Consumer as _, StreamConsumer};
use tickcast_core::bus::{Cluster, KafkaSettings, OutRecord, Publisher};
use tickcast_core::deadletter::DeadLetter;
use tickcast_core::shutdown;
use tickcast_core::stage::{self, Effects, Handler, Inbound, StageOptions};
use tickcast_core::telemetry;

/// What the handler has durably applied: per id, how many times. Shared with the test, which
/// plays the part of the store.
type Applied = Arc<Mutex<BTreeMap<u32, u32>>>;

/// A stateful handler whose state is a running sum kept in memory until acknowledged (like the
/// forecast stage's checkpoint): `pending` holds effects handled but not yet acknowledged, which
/// a revoke drops. `p<N>` payloads panic, `f<N>` fail, plain numbers are applied and echoed.
struct Summer {
    pending: Vec<u32>,
    applied: Applied,
    out_topic: String,
    /// The store is down: every call fails, `ready` too.
    down: Arc<AtomicBool>,
}

impl Handler for Summer {
    async fn handle(&mut self, batch: &[Inbound]) -> Result<Effects> {
        if self.down.load(Ordering::SeqCst) {
            bail!("store: connection refused");
        }
        let mut records = Vec::new();
        for m in batch {
            let text = String::from_utf8_lossy(&m.payload).into_owned();
            if let Some(id) = text.strip_prefix('p') {
                panic!("poison {id}");
            }
            if let Some(id) = text.strip_prefix('f') {
                // State changed before the error: the runner must not rely on it.
                self.pending.push(9_999);
                bail!("cannot handle {id}");
            }
            let id: u32 = text.parse()?;
            self.pending.push(id);
            records.push(OutRecord {
                topic: self.out_topic.as_str().into(),
                key: text.as_str().into(),
                payload: m.payload.clone(),
            });
        }
        Ok(Effects {
            records,
            dead: Vec::new(),
            commit: None,
        })
    }

    async fn ready(&mut self) -> Result<()> {
        if self.down.load(Ordering::SeqCst) {
            bail!("store: connection refused");
        }
        Ok(())
    }

    async fn acknowledged(&mut self, _last: bool) -> Result<Option<BTreeMap<(String, i32), i64>>> {
        if self.down.load(Ordering::SeqCst) {
            bail!("store: connection refused");
        }
        let mut applied = self.applied.lock().unwrap();
        for id in self.pending.drain(..) {
            *applied.entry(id).or_insert(0) += 1;
        }
        Ok(None)
    }

    fn revoked(&mut self, _topic: &str, _partition: i32) {
        self.pending.clear();
    }
}

struct Setup {
    settings: KafkaSettings,
    input: String,
    output: String,
    dead: String,
    name: String,
}

async fn setup(test: &str) -> Option<Setup> {
    let Ok(bootstrap) = std::env::var("KAFKA_BOOTSTRAP") else {
        if std::env::var_os("TICKCAST_REQUIRE_SERVICES").is_some() {
            panic!("KAFKA_BOOTSTRAP unset but TICKCAST_REQUIRE_SERVICES is set");
        }
        eprintln!("SKIPPED {test}: set KAFKA_BOOTSTRAP (or run scripts/test.sh)");
        return None;
    };
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    let name = format!("{test}_{}_{nanos}", std::process::id());
    let mut settings = KafkaSettings::new(bootstrap);
    settings.partitions = 2;
    settings.session_timeout_ms = 6_000;
    let s = Setup {
        input: format!("{name}.in"),
        output: format!("{name}.out"),
        dead: format!("{name}.dead"),
        settings,
        name,
    };
    Cluster::Kafka(s.settings.clone())
        .ensure_topics(&[s.input.clone(), s.output.clone(), s.dead.clone()])
        .await
        .unwrap();
    Some(s)
}

/// Publishes `payloads` round-robin over two keys (so both partitions get some).
async fn feed(s: &Setup, payloads: &[String]) {
    let records: Vec<OutRecord> = payloads
        .iter()
        .enumerate()
        .map(|(i, p)| OutRecord {
            topic: s.input.as_str().into(),
            key: if i % 2 == 0 { "a" } else { "b" }.into(),
            payload: p.clone().into_bytes(),
        })
        .collect();
    Publisher::new(&s.settings)
        .unwrap()
        .publish_all(&records)
        .await
        .unwrap();
}

/// Every record on `topic` (key, payload), read from the start until `want` are there.
async fn read_all(settings: &KafkaSettings, topic: &str, want: usize) -> Vec<(String, Vec<u8>)> {
    let group = format!("{topic}-reader");
    let consumer: StreamConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &settings.bootstrap)
        .set("group.id", &group)
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    consumer.subscribe(&[topic]).unwrap();
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while out.len() < want && Instant::now() < deadline {
        if let Ok(Ok(m)) = tokio::time::timeout(Duration::from_secs(1), consumer.recv()).await {
            out.push((
                String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned(),
                m.payload().unwrap_or_default().to_vec(),
            ));
        }
    }
    // Anything beyond `want` would be a duplicate: give it a moment to show up.
    while let Ok(Ok(m)) = tokio::time::timeout(Duration::from_secs(2), consumer.recv()).await {
        out.push((
            String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned(),
            m.payload().unwrap_or_default().to_vec(),
        ));
    }
    out
}

fn options(s: &Setup, max_batch: usize) -> StageOptions {
    StageOptions {
        name: s.name.clone(),
        group: format!("{}-group", s.name),
        inputs: vec![s.input.clone()],
        deadletter_topic: s.dead.clone(),
        max_batch,
        linger: Duration::from_millis(200),
    }
}

async fn wait_for(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_records_are_isolated_and_every_valid_record_applies_once() {
    let Some(s) = setup("stage_poison").await else {
        return;
    };
    // 200 records; three that panic, two that fail with the store up.
    let poison: HashMap<usize, &str> =
        HashMap::from([(17, "p"), (42, "f"), (63, "p"), (64, "p"), (150, "f")]);
    let payloads: Vec<String> = (0..200)
        .map(|i| match poison.get(&i) {
            Some(prefix) => format!("{prefix}{i}"),
            None => i.to_string(),
        })
        .collect();
    feed(&s, &payloads).await;

    let applied: Applied = Arc::default();
    let handler = Summer {
        pending: Vec::new(),
        applied: applied.clone(),
        out_topic: s.output.clone(),
        down: Arc::default(),
    };
    let (trigger, signal) = shutdown::channel();
    let settings = s.settings.clone();
    let opts = options(&s, 64);
    let task = tokio::spawn(async move { stage::run(&settings, opts, handler, signal).await });
    let valid = 200 - poison.len();
    wait_for(
        "every valid record applied",
        Duration::from_secs(120),
        || applied.lock().unwrap().len() >= valid,
    )
    .await;
    let dead = read_all(&s.settings, &s.dead, poison.len()).await;
    trigger.fire();
    task.await.unwrap().unwrap();

    // Every valid record applied exactly once, nothing else.
    let applied = applied.lock().unwrap().clone();
    let want: BTreeMap<u32, u32> = (0..200u32)
        .filter(|i| !poison.contains_key(&(*i as usize)))
        .map(|i| (i, 1))
        .collect();
    assert_eq!(applied, want);

    // Every poison record dead-lettered once, with its reason.
    let mut letters: Vec<(String, String)> = dead
        .iter()
        .map(|(_, payload)| {
            let d: DeadLetter = serde_json::from_slice(payload).unwrap();
            assert_eq!(d.stage, s.name);
            assert_eq!(d.source, s.input);
            (d.payload, d.reason)
        })
        .collect();
    letters.sort();
    let stage = &s.name;
    assert_eq!(
        letters,
        vec![
            ("f150".into(), "cannot handle 150".into()),
            ("f42".into(), "cannot handle 42".into()),
            (
                "p17".into(),
                format!("the {stage} stage panicked: poison 17")
            ),
            (
                "p63".into(),
                format!("the {stage} stage panicked: poison 63")
            ),
            (
                "p64".into(),
                format!("the {stage} stage panicked: poison 64")
            ),
        ]
    );

    // The outputs hold every valid record; re-reads after a rewind may send one again (as a
    // crash would), never a poison one.
    let out = read_all(&s.settings, &s.output, valid).await;
    let mut keys: Vec<u32> = out.iter().map(|(k, _)| k.parse().unwrap()).collect();
    keys.sort_unstable();
    keys.dedup();
    assert_eq!(keys, want.keys().copied().collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_outage_is_waited_out_and_nothing_is_skipped() {
    let Some(s) = setup("stage_outage").await else {
        return;
    };
    let applied: Applied = Arc::default();
    let down = Arc::new(AtomicBool::new(false));
    let handler = Summer {
        pending: Vec::new(),
        applied: applied.clone(),
        out_topic: s.output.clone(),
        down: down.clone(),
    };
    let (trigger, signal) = shutdown::channel();
    let settings = s.settings.clone();
    let opts = options(&s, 16);
    let task = tokio::spawn(async move { stage::run(&settings, opts, handler, signal).await });

    let first: Vec<String> = (0..50).map(|i| i.to_string()).collect();
    feed(&s, &first).await;
    wait_for("the first 50 applied", Duration::from_secs(60), || {
        applied.lock().unwrap().len() == 50
    })
    .await;

    // The store goes away; records keep coming.
    down.store(true, Ordering::SeqCst);
    let second: Vec<String> = (50..100).map(|i| i.to_string()).collect();
    feed(&s, &second).await;
    let gauge = || {
        telemetry::STORE_UP
            .with_label_values(&[s.name.as_str()])
            .get()
    };
    wait_for("tickcast_store_up = 0", Duration::from_secs(30), || {
        gauge() == 0
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(!task.is_finished(), "the stage exited during the outage");
    assert_eq!(
        applied.lock().unwrap().len(),
        50,
        "applied during the outage"
    );

    // Back: the stage resumes by itself and applies the rest once.
    down.store(false, Ordering::SeqCst);
    wait_for("all 100 applied", Duration::from_secs(60), || {
        applied.lock().unwrap().len() == 100
    })
    .await;
    assert_eq!(gauge(), 1);
    trigger.fire();
    task.await.unwrap().unwrap();
    let applied = applied.lock().unwrap().clone();
    assert_eq!(applied, (0..100u32).map(|i| (i, 1)).collect());
    let recovered = telemetry::STAGE_RECOVERIES
        .with_label_values(&[s.name.as_str(), "store"])
        .get();
    assert!(recovered >= 1, "no store recovery counted");
    let dead = read_all(&s.settings, &s.dead, 0).await;
    assert_eq!(dead.len(), 0, "dead letters during an outage: {dead:?}");
}
