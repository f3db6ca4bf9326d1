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
use tickcast_core::bus::Publisher;
use tickcast_core::domain::Tick;
use tickcast_core::shutdown;
use tickcast_ingest::connectors;
use tickcast_ingest::exchanges;
use tickcast_ingest::feed::{FeedOptions, run_ingest};
use tickcast_ingest::replay::{Faults, ReplayOptions, ReplayServer};
use tickcast_ingest::simulator::SimConfig;

const TRADES: u64 = 3_000;

type Ids = BTreeSet<(String, String)>;

/// What the ticks topic holds.
struct Read {
    /// How often each `(symbol, trade id)` arrived.
    counts: BTreeMap<(String, String), usize>,
    /// Ticks whose numeric id is below an id of the same symbol read before it: a backfill
    /// published after the trades that followed it (the candles stage would find it late).
    out_of_order: Vec<(String, u64, u64)>,
}

/// Reads `topic` from the start until `want` distinct ids have arrived (or 60 s pass), then
/// 1.5 s more to catch duplicates.
async fn read_ticks(env: &Env, want: usize) -> Read {
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", &env.settings().bootstrap)
        .set("group.id", format!("{}ticks-reader", env.group_prefix))
        .set("auto.offset.reset", "earliest")
        .create()
        .unwrap();
    consumer.subscribe(&[&env.topics.ticks()]).unwrap();
    let mut seen: BTreeMap<(String, String), usize> = BTreeMap::new();
    let mut newest: BTreeMap<String, u64> = BTreeMap::new();
    let mut out_of_order = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let mut quiet_until: Option<tokio::time::Instant> = None;
    loop {
        let until = quiet_until.unwrap_or(deadline);
        match tokio::time::timeout_at(until, consumer.recv()).await {
            Err(_) => break,
            Ok(m) => {
                let m = m.unwrap();
                let t: Tick = serde_json::from_slice(m.payload().unwrap()).unwrap();
                if let Ok(id) = t.trade_id.parse::<u64>() {
                    let top = newest.entry(t.symbol.clone()).or_default();
                    if id < *top {
                        out_of_order.push((t.symbol.clone(), id, *top));
                    }
                    *top = id.max(*top);
                }
                *seen.entry((t.symbol, t.trade_id)).or_default() += 1;
                if seen.len() >= want && quiet_until.is_none() {
                    quiet_until = Some(tokio::time::Instant::now() + Duration::from_millis(1500));
                }
            }
        }
    }
    Read {
        counts: seen,
        out_of_order,
    }
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
    /// Symbols beyond BTC-USDT and ETH-USDT.
    extra_symbols: &'static [&'static str],
    /// Symbols per connection at most (default: the exchange's limit).
    per_connection: Option<usize>,
    /// The feed's stale-feed watchdog (after the market ends, it reconnects every this long).
    stale_after: Duration,
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
            poison_every: None,
        },
        rate: 0.0,
        max_age: None,
        extra_symbols: &[],
        per_connection: None,
        stale_after: Duration::from_secs(1),
    }
}

struct Outcome {
    /// See [`Read::out_of_order`].
    out_of_order: Vec<(String, u64, u64)>,
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
    let connector: Arc<dyn connectors::Connector> = Arc::from(exchanges::lookup(name).unwrap());
    let sim = exchanges::sim(name).unwrap();
    let mut cfg = SimConfig::default_symbols(7, 1_700_000_000_000);
    for sym in s.extra_symbols {
        cfg.symbols
            .push((sym.to_string(), rust_decimal::Decimal::new(12_345, 2)));
    }
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
    feed.stale_after = s.stale_after;
    feed.connect_timeout = Duration::from_secs(3);
    feed.ack_timeout = Duration::from_secs(3);
    feed.backoff_base = Duration::from_millis(10);
    feed.backoff_cap = Duration::from_millis(200);
    feed.gap_grace = Duration::from_millis(300);
    feed.overlap = Duration::from_millis(300);
    feed.max_symbols_per_connection = s.per_connection;
    // The simulated market keeps its own clock (from 2023, faster than the wall).
    feed.event_window = tickcast_core::domain::EventWindow::OFF;
    if let Some(age) = s.max_age {
        feed.max_connection_age = Some(age);
        feed.rotate_margin = age / 3;
    }
    let publisher = Publisher::new(env.settings()).unwrap();
    let ingest = tokio::spawn(run_ingest(
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
    // Per symbol: the trades from the first one any connection sent on (what happened before
    // a symbol's subscription cannot be known to a live feed).
    let mut started: BTreeSet<String> = BTreeSet::new();
    let since_first_sent: Ids = in_order
        .iter()
        .filter(|id| {
            if sent_ids.contains(*id) {
                started.insert(id.0.clone());
            }
            started.contains(&id.0)
        })
        .cloned()
        .collect();
    assert_eq!(happened.len() as u64, TRADES, "{name}");
    let sequential = exchanges::lookup(name).unwrap().info().sequential_ids;
    let want = if sequential {
        since_first_sent.len()
    } else {
        sent.ids().len()
    };
    let Read {
        counts: kafka,
        out_of_order,
    } = read_ticks(&env, want).await;
    let dead_letters = count_dead_letters(&env).await;
    trigger.fire();
    ingest.await.unwrap().unwrap();
    replay.await.unwrap().unwrap();
    Some(Outcome {
        out_of_order,
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
    let sequential = exchanges::lookup(name).unwrap().info().sequential_ids;
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
    // Gaps are filled before the trades after them are published.
    assert!(
        o.out_of_order.is_empty(),
        "{name}: {} ticks published after a later trade of their symbol, e.g. {:?}",
        o.out_of_order.len(),
        &o.out_of_order[..o.out_of_order.len().min(5)]
    );
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
        extra_symbols: &[],
        per_connection: None,
        stale_after: Duration::from_secs(1),
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

/// More symbols than one connection may carry: one connection per chunk, and together they
/// deliver every trade of every symbol from its subscription on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn symbols_beyond_the_connection_limit_open_more_connections() {
    let s = Scenario {
        faults: Faults::default(),
        rate: 0.0,
        max_age: None,
        extra_symbols: &["SOL-USDT", "XRP-USDT", "DOGE-USDT"],
        per_connection: Some(2),
        stale_after: Duration::from_secs(60),
    };
    let Some(o) = run_scenario("binance", s).await else {
        return;
    };
    assert_eq!(o.connections, 3, "5 symbols, 2 per connection");
    let got: Ids = o.kafka.keys().cloned().collect();
    assert!(o.kafka.values().all(|n| *n == 1), "duplicates in Kafka");
    let symbols: BTreeSet<&str> = got.iter().map(|(s, _)| s.as_str()).collect();
    assert_eq!(symbols.len(), 5, "{symbols:?}");
    assert_eq!(got, o.since_first_sent);
}

fn spawn_ingest(env: &Env, url: &str, rest: &str) -> std::process::Child {
    std::process::Command::new(env!("CARGO_BIN_EXE_tickcast"))
        .args([
            "ingest",
            "--exchange",
            "binance",
            "--symbols",
            "BTC-USDT,ETH-USDT",
        ])
        .args(["--url", url, "--rest-url", rest])
        .args(["--bootstrap", &env.settings().bootstrap])
        .args(["--topic-prefix", &env.topics.prefix])
        // The simulated market keeps its own clock (from 2023).
        .args(["--max-clock-skew-ms", "off", "--max-tick-age-ms", "off"])
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::inherit())
        .spawn()
        .expect("start tickcast ingest")
}

/// `tickcast ingest` is killed with SIGKILL while trades keep happening (300 a second) and
/// started again 3 s later: it resumes from each symbol's last trade on the ticks topic and
/// backfills the ~900 trades it missed, so the topic holds every trade since the first one sent,
/// each at least once (exactly once after de-duplication).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_ingest_resumes_from_the_topic_and_backfills_the_downtime() {
    let Some(env) = Env::new(Mode::Real, "faults-restart", 1).await else {
        return;
    };
    let sim = exchanges::sim("binance").unwrap();
    let mut opts = ReplayOptions::new(SimConfig::default_symbols(11, 1_700_000_000_000));
    opts.total = Some(4_500);
    opts.rate = 300.0;
    let server = ReplayServer::bind("127.0.0.1:0", opts).await.unwrap();
    let (url, rest) = (server.url().unwrap(), server.rest_url().unwrap());
    let (sent, market) = (server.sent(), server.market());
    let (trigger, signal) = shutdown::channel();
    let replay = tokio::spawn(server.run(signal));

    let mut ingest = spawn_ingest(&env, &url, &rest);
    let started = common::eventually(Duration::from_secs(30), || {
        let n = sent.ids().len();
        async move { n >= 600 }
    })
    .await;
    assert!(started, "the first ingest sent nothing");
    ingest.kill().unwrap();
    ingest.wait().unwrap();
    let down_at = market.len();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let missed = market.len() - down_at;
    assert!(missed >= 600, "only {missed} trades while ingest was down");
    let mut ingest = spawn_ingest(&env, &url, &rest);

    let finished = common::eventually(Duration::from_secs(60), || {
        let m = market.clone();
        async move { m.exhausted() }
    })
    .await;
    assert!(finished, "the market did not finish");
    let in_order: Vec<(String, String)> = market
        .happened()
        .iter()
        .map(|t| (t.symbol.clone(), sim.trade_id(t)))
        .collect();
    let sent_ids = sent.ids();
    let mut begun: BTreeSet<String> = BTreeSet::new();
    let want: Ids = in_order
        .iter()
        .filter(|id| {
            if sent_ids.contains(*id) {
                begun.insert(id.0.clone());
            }
            begun.contains(&id.0)
        })
        .cloned()
        .collect();
    let Read {
        counts: kafka,
        out_of_order,
    } = read_ticks(&env, want.len()).await;
    ingest.kill().unwrap();
    ingest.wait().unwrap();
    trigger.fire();
    replay.await.unwrap().unwrap();

    let got: Ids = kafka.keys().cloned().collect();
    let lost: Vec<_> = want.difference(&got).take(10).collect();
    assert!(
        lost.is_empty(),
        "{} of {} trades lost (e.g. {lost:?}); {missed} happened while ingest was down",
        want.difference(&got).count(),
        want.len()
    );
    assert_eq!(got, want);
    assert!(
        out_of_order.is_empty(),
        "the backfill was published after later trades: {} ticks, e.g. {:?}",
        out_of_order.len(),
        &out_of_order[..out_of_order.len().min(5)]
    );
    let twice = kafka.values().filter(|n| **n > 1).count();
    eprintln!(
        "ingest restart: {} trades, {missed} while down, {twice} published twice",
        want.len()
    );
}
