//! Fault tests, one per connector: the replay exchange speaks the connector's protocol and
//! drops the connection every few hundred frames (with trades happening while the client is
//! away), stalls longer than the stale-feed watchdog, duplicates frames, sends garbage and
//! skips trades; `ingest` publishes to a real Apache Kafka. The set of trade ids on the ticks
//! topic must equal, exactly and without duplicates:
//! - every trade that happened, for exchanges with consecutive ids (gaps are detected and filled
//!   from the replay exchange's REST endpoint);
//! - every trade the replay exchange sent, for the others (a trade never sent cannot be known).
//!
//! Also: make-before-break rotation (Binance and OKX) loses nothing and duplicates nothing, and
//! garbage frames land on the dead-letter topic.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use common::{Env, Mode};
use rdkafka::consumer::{Consumer as _, StreamConsumer};
use rdkafka::{ClientConfig, Message as _};
use tickcast_pipeline::bus::Publisher;
use tickcast_pipeline::connectors;
use tickcast_pipeline::domain::Tick;
use tickcast_pipeline::ingest::{FeedOptions, run_feed};
use tickcast_pipeline::replay::sims;
use tickcast_pipeline::replay::{Faults, ReplayOptions, ReplayServer};
use tickcast_pipeline::shutdown;
use tickcast_pipeline::simulator::SimConfig;

const TRADES: u64 = 3_000;

type Ids = BTreeSet<(String, String)>;

/// Reads `topic` from the start until `want` distinct ids have arrived (or 60 s pass), then
/// 1.5 s more to catch duplicates. Returns the count of each id.
async fn read_ticks(env: &Env, want: usize) -> BTreeMap<(String, String), usize> {
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", &env.settings().bootstrap)
        .set("group.id", format!("{}ticks-reader", env.group_prefix))
        .set("auto.offset.reset", "earliest")
        .create()
        .unwrap();
    consumer.subscribe(&[&env.topics.ticks()]).unwrap();
    let mut seen: BTreeMap<(String, String), usize> = BTreeMap::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let mut quiet_until: Option<tokio::time::Instant> = None;
    loop {
        let until = quiet_until.unwrap_or(deadline);
        match tokio::time::timeout_at(until, consumer.recv()).await {
            Err(_) => break,
            Ok(m) => {
                let m = m.unwrap();
                let t: Tick = serde_json::from_slice(m.payload().unwrap()).unwrap();
                *seen.entry((t.symbol, t.trade_id)).or_default() += 1;
                if seen.len() >= want && quiet_until.is_none() {
                    quiet_until = Some(tokio::time::Instant::now() + Duration::from_millis(1500));
                }
            }
        }
    }
    seen
}

async fn count_dead_letters(env: &Env) -> usize {
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", &env.settings().bootstrap)
        .set("group.id", format!("{}dl-reader", env.group_prefix))
        .set("auto.offset.reset", "earliest")
        .create()
        .unwrap();
    consumer.subscribe(&[&env.topics.deadletter()]).unwrap();
    let mut n = 0;
    while let Ok(m) = tokio::time::timeout(Duration::from_secs(3), consumer.recv()).await {
        m.unwrap();
        n += 1;
    }
    n
}

struct Scenario {
    faults: Faults,
    rate: f64,
    max_age: Option<Duration>,
}

fn fault_storm() -> Scenario {
    Scenario {
        faults: Faults {
            drop_every: Some(400),
            gap_on_drop: 25,
            stall_every: Some(1_100),
            stall_for: Duration::from_millis(2_500),
            duplicate_every: Some(50),
            garbage_every: Some(170),
            skip_every: Some(130),
        },
        rate: 0.0,
        max_age: None,
    }
}

struct Outcome {
    kafka: BTreeMap<(String, String), usize>,
    happened: Ids,
    /// Every trade that happened from the first one any connection sent on.
    since_first_sent: Ids,
    sent: Ids,
    connections: u64,
    drops: u64,
    garbage: u64,
    dead_letters: usize,
}

async fn run_scenario(name: &str, s: Scenario) -> Option<Outcome> {
    // RUST_LOG=info shows what the feed did.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let env = Env::new(Mode::Real, &format!("faults-{name}"), 1).await?;
    let connector: Arc<dyn connectors::Connector> = Arc::from(connectors::lookup(name).unwrap());
    let sim = sims::by_name(name).unwrap();
    let cfg = SimConfig::default_symbols(7, 1_700_000_000_000);
    let symbols: Vec<String> = cfg.symbols.iter().map(|(s, _)| s.clone()).collect();
    let mut opts = ReplayOptions::new(cfg);
    opts.exchange = name.to_string();
    opts.total = Some(TRADES);
    opts.rate = s.rate;
    opts.heartbeat_every = Duration::from_millis(500);
    opts.faults = s.faults;
    let server = ReplayServer::bind("127.0.0.1:0", opts).await.unwrap();
    let (url, rest) = (server.url().unwrap(), server.rest_url().unwrap());
    let (sent, market) = (server.sent(), server.market());
    let (trigger, signal) = shutdown::channel();
    let replay = tokio::spawn(server.run(signal.clone()));

    let mut feed = FeedOptions::new(url, symbols);
    feed.rest_url = Some(rest);
    feed.stale_after = Duration::from_secs(1);
    feed.connect_timeout = Duration::from_secs(3);
    feed.ack_timeout = Duration::from_secs(3);
    feed.backoff_base = Duration::from_millis(10);
    feed.backoff_cap = Duration::from_millis(200);
    feed.gap_grace = Duration::from_millis(300);
    feed.overlap = Duration::from_millis(300);
    if let Some(age) = s.max_age {
        feed.max_connection_age = Some(age);
        feed.rotate_margin = age / 3;
    }
    let publisher = Publisher::new(env.settings()).unwrap();
    let ingest = tokio::spawn(run_feed(
        connector,
        feed,
        publisher,
        env.topics.clone(),
        signal,
    ));

    // Wait for the market to finish, then for the topic to settle.
    let finished = common::eventually(Duration::from_secs(90), || {
        let m = market.clone();
        async move { m.exhausted() }
    })
    .await;
    assert!(
        finished,
        "{name}: the market did not finish ({} trades)",
        market.len()
    );
    let in_order: Vec<(String, String)> = market
        .happened()
        .iter()
        .map(|t| (t.symbol.clone(), sim.trade_id(t)))
        .collect();
    let happened: Ids = in_order.iter().cloned().collect();
    let sent_ids = sent.ids();
    let first = in_order
        .iter()
        .position(|id| sent_ids.contains(id))
        .unwrap_or(0);
    let since_first_sent: Ids = in_order[first..].iter().cloned().collect();
    assert_eq!(happened.len() as u64, TRADES, "{name}");
    let sequential = connectors::lookup(name).unwrap().info().sequential_ids;
    let want = if sequential {
        happened.len()
    } else {
        sent.ids().len()
    };
    let kafka = read_ticks(&env, want).await;
    let dead_letters = count_dead_letters(&env).await;
    trigger.fire();
    ingest.await.unwrap().unwrap();
    replay.await.unwrap().unwrap();
    Some(Outcome {
        kafka,
        happened,
        since_first_sent,
        sent: sent_ids,
        connections: sent.connections(),
        drops: sent.drops(),
        garbage: sent.garbage_sent(),
        dead_letters,
    })
}

async fn nothing_lost_nothing_twice(name: &str) {
    let Some(o) = run_scenario(name, fault_storm()).await else {
        return;
    };
    let sequential = connectors::lookup(name).unwrap().info().sequential_ids;
    let twice: Vec<_> = o.kafka.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "{name}: duplicated in Kafka: {twice:?}");
    let got: Ids = o.kafka.keys().cloned().collect();
    // The faults really happened.
    assert!(o.drops >= 3, "{name}: only {} drops", o.drops);
    assert!(
        o.connections >= 4,
        "{name}: only {} connections",
        o.connections
    );
    assert!(o.garbage >= 5, "{name}: only {} garbage frames", o.garbage);
    assert!(
        o.sent.len() < o.happened.len(),
        "{name}: skips and gaps hid nothing"
    );
    let expected = if sequential { &o.happened } else { &o.sent };
    let missing: Vec<_> = expected.difference(&got).take(10).collect();
    let extra: Vec<_> = got.difference(expected).take(10).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "{name}: {} missing (e.g. {missing:?}), {} unexpected (e.g. {extra:?})",
        expected.difference(&got).count(),
        got.difference(expected).count()
    );
    assert_eq!(&got, expected, "{name}");
    // Every garbage frame the client read went to the dead-letter topic; the client may
    // have abandoned a stalled connection before reading the garbage queued on it.
    assert!(
        o.dead_letters >= 1 && o.dead_letters as u64 <= o.garbage,
        "{name}: {} dead letters for {} garbage frames",
        o.dead_letters,
        o.garbage
    );
}

async fn rotation_loses_nothing(name: &str) {
    let s = Scenario {
        faults: Faults::default(),
        rate: 2_000.0,
        max_age: Some(Duration::from_millis(600)),
    };
    let Some(o) = run_scenario(name, s).await else {
        return;
    };
    let twice: Vec<_> = o.kafka.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "{name}: duplicated in Kafka: {twice:?}");
    let got: Ids = o.kafka.keys().cloned().collect();
    assert!(
        o.connections >= 3,
        "{name}: {} connections: no rotation",
        o.connections
    );
    assert_eq!(o.drops, 0);
    // No faults, no backfill needed: every trade that happened since the first connection
    // subscribed arrived over the websockets, across every rotation.
    assert!(o.since_first_sent.len() as u64 > TRADES / 2);
    assert_eq!(got, o.since_first_sent, "{name}");
}

macro_rules! fault_tests {
    ($($test:ident => $name:literal),* $(,)?) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $test() {
            nothing_lost_nothing_twice($name).await;
        }
    )*};
}

fault_tests! {
    faults_binance => "binance",
    faults_binance_agg => "binance-agg",
    faults_coinbase => "coinbase",
    faults_coinbase_exchange => "coinbase-exchange",
    faults_kraken => "kraken",
    faults_bybit => "bybit",
    faults_okx => "okx",
    faults_bitstamp => "bitstamp",
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_binance() {
    rotation_loses_nothing("binance").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_okx_without_backfill() {
    rotation_loses_nothing("okx").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tmp_bitstamp_bisect() {
    let which = std::env::var("BISECT").unwrap_or_default();
    let mut f = Faults::default();
    match which.as_str() {
        "stall" => {
            f.stall_every = Some(1_100);
            f.stall_for = Duration::from_millis(2_500);
        }
        "drop" => {
            f.drop_every = Some(400);
            f.gap_on_drop = 25;
        }
        "dup" => f.duplicate_every = Some(50),
        "skip" => f.skip_every = Some(130),
        _ => return,
    }
    let o = run_scenario(
        "bitstamp",
        Scenario {
            faults: f,
            rate: 0.0,
            max_age: None,
        },
    )
    .await
    .unwrap();
    let got: Ids = o.kafka.keys().cloned().collect();
    let missing: Vec<_> = o.sent.difference(&got).collect();
    println!(
        "BISECT {which}: missing {} first {:?} last {:?} connections {}",
        missing.len(),
        missing.first(),
        missing.last(),
        o.connections
    );
}
