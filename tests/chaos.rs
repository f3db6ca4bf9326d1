//! Chaos on Apache Kafka and Postgres of the test's own, every stage its own process:
//! `tickcast ingest` (from the replay exchange, Binance protocol, consecutive ids, a poison
//! frame after every 150 trade frames) and `tickcast run --stages candles|forecast|sink|alert`.
//! While trades keep happening:
//! - each of the candles, forecast, sink and alert processes is killed with SIGKILL and
//!   restarted;
//! - ingest is killed with SIGKILL and restarted 30 s later;
//! - Postgres is stopped for 60 s;
//! - the broker is killed with SIGKILL, kept down for 150 s, and restarted on its log directory.
//!
//! Then: no process exited by itself; the ticks topic holds every trade that happened (each at
//! least once, exactly once by id), each symbol's in id order; Postgres holds exactly the
//! candles, forecasts and alert events of an uninterrupted run, with the candles stage's default
//! lateness of 0 (ingest publishes the trades it backfills before those that followed them);
//! every poison frame ingest read is on the dead-letter topic with its reason. About 7 minutes;
//! `TICKCAST_CHAOS_SCALE=0.2` shortens every wait for a quick look.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{OwnPostgres, TempDir, unique};
use rdkafka::consumer::{Consumer as _, StreamConsumer};
use rdkafka::{ClientConfig, Message as _};
use rust_decimal::Decimal;
use tickcast_alerts::engine::Engine;
use tickcast_alerts::{AlertEvent, Rule};
use tickcast_core::bus::{Cluster, KafkaSettings};
use tickcast_core::codec::Topics;
use tickcast_core::deadletter::DeadLetter;
use tickcast_core::domain::{Forecast, Tick};
use tickcast_core::shutdown;
use tickcast_ingest::exchanges;
use tickcast_ingest::replay::{Faults, ReplayOptions, ReplayServer};
use tickcast_ingest::simulator::{SimConfig, Simulator};
use tickcast_store::{self as store, AlertEventQuery, ForecastQuery, Store};

/// Trades per second on the wall clock (the simulated clock runs ~10× faster).
const RATE: f64 = 50.0;
const POISON_EVERY: u64 = 150;
/// The stages, each its own process.
const STAGES: [&str; 4] = ["candles", "forecast", "sink", "alert"];
/// The alert rule the alert stage evaluates: BTC's naive 1-bar forecast above `threshold`.
fn rule_json(threshold: Decimal) -> String {
    format!(
        r#"{{"id":"btc-above","symbol":"BTC-USDT","interval":"1m","model":"naive","horizon":1,"kind":"above","threshold":{threshold}}}"#
    )
}

/// The median BTC price of the market's first `total` trades: the price crosses it both ways
/// many times, so the rule fires and resolves again and again.
fn median_btc(cfg: &SimConfig, total: u64) -> Decimal {
    let mut prices: Vec<Decimal> = Simulator::new(cfg)
        .take(total as usize)
        .filter(|t| t.symbol == "BTC-USDT")
        .map(|t| t.price)
        .collect();
    prices.sort();
    prices[prices.len() / 2].round_dp(2)
}

/// A Kafka broker of the test's own (`scripts/kafka.sh` on free ports and a scratch dir).
struct OwnKafka {
    dir: TempDir,
    port: u16,
    controller: u16,
}

impl OwnKafka {
    fn script(&self, verb: &str) {
        let out = Command::new("scripts/kafka.sh")
            .arg(verb)
            .env("KAFKA_DIR", &self.dir.0)
            .env("KAFKA_PORT", self.port.to_string())
            .env("KAFKA_CONTROLLER_PORT", self.controller.to_string())
            .env_remove("KAFKA_SASL_SSL_PORT")
            .env_remove("KAFKA_TLS_DIR")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "kafka.sh {verb}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn start() -> Self {
        let k = OwnKafka {
            dir: TempDir(std::env::temp_dir().join(unique("own-kafka"))),
            port: common::free_port(),
            controller: common::free_port(),
        };
        k.script("start");
        k.script("wait");
        k
    }

    fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for OwnKafka {
    fn drop(&mut self) {
        let _ = Command::new("scripts/kafka.sh")
            .arg("stop")
            .env("KAFKA_DIR", &self.dir.0)
            .env("KAFKA_PORT", self.port.to_string())
            .env("KAFKA_CONTROLLER_PORT", self.controller.to_string())
            .env_remove("KAFKA_SASL_SSL_PORT")
            .env_remove("KAFKA_TLS_DIR")
            .output();
    }
}

/// The tickcast processes, each with its log file; killed when dropped.
struct Procs {
    logs: PathBuf,
    common: Vec<String>,
    running: BTreeMap<&'static str, (Vec<String>, Child)>,
    starts: BTreeMap<&'static str, usize>,
}

impl Procs {
    fn start(&mut self, name: &'static str, args: &[&str]) {
        let n = self.starts.entry(name).or_insert(0);
        *n += 1;
        let log = std::fs::File::create(self.logs.join(format!("{name}-{n}.log"))).unwrap();
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let child = Command::new(env!("CARGO_BIN_EXE_tickcast"))
            .args(&args)
            .args(&self.common)
            .env("RUST_LOG", "info,tickcast_core::deadletter=error")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.running.insert(name, (args, child));
    }

    /// Fails naming any process that exited by itself.
    fn all_alive(&mut self, when: &str) {
        for (name, (_, child)) in &mut self.running {
            if let Some(status) = child.try_wait().unwrap() {
                panic!(
                    "{name} exited by itself ({status}) {when}; logs in {}",
                    self.logs.display()
                );
            }
        }
    }

    /// SIGKILL, then start again after `down`.
    async fn kill(&mut self, name: &'static str, down: Duration) {
        self.all_alive(&format!("before {name} was killed"));
        let (args, mut child) = self.running.remove(name).unwrap();
        child.kill().unwrap();
        child.wait().unwrap();
        tokio::time::sleep(down).await;
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.start(name, &args);
    }
}

impl Drop for Procs {
    fn drop(&mut self) {
        for (_, child) in self.running.values_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn scale() -> f64 {
    std::env::var("TICKCAST_CHAOS_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .filter(|s: &f64| *s > 0.0)
        .unwrap_or(1.0)
}

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s * scale())
}

/// Every message on `topic`, read from the start until nothing new arrives for `quiet`.
async fn read_all(bootstrap: &str, topic: &str, quiet: Duration) -> Vec<Vec<u8>> {
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", unique("chaos-reader"))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    consumer.subscribe(&[topic]).unwrap();
    let mut out = Vec::new();
    let mut wait = Duration::from_secs(20);
    while let Ok(m) = tokio::time::timeout(wait, consumer.recv()).await {
        out.push(m.unwrap().payload().unwrap_or_default().to_vec());
        wait = quiet;
    }
    out
}

async fn stored_forecasts(store: &dyn Store) -> BTreeMap<common::ForecastKey, Forecast> {
    store
        .forecasts(&ForecastQuery {
            limit: 100_000,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_iter()
        .map(|f| (common::forecast_key(&f), f))
        .collect()
}

/// The alert events, by id.
async fn stored_events(store: &dyn Store) -> Vec<AlertEvent> {
    let mut e = store
        .alert_events(&AlertEventQuery {
            limit: 100_000,
            ..Default::default()
        })
        .await
        .unwrap_or_default();
    e.sort_by(|a, b| a.id.cmp(&b.id));
    e
}

/// What the alert engine makes of the forecasts, series by series in bar order, by id.
fn reference_events(
    forecasts: &BTreeMap<common::ForecastKey, Forecast>,
    rule: &str,
) -> Vec<AlertEvent> {
    let mut engine = Engine::new(vec![Rule::from_json(rule.as_bytes()).unwrap()]);
    let mut ordered: Vec<&Forecast> = forecasts.values().collect();
    ordered.sort_by_key(|f| {
        (
            f.exchange.clone(),
            f.symbol.clone(),
            f.interval.clone(),
            f.model.clone(),
            f.horizon,
            f.base_ms,
        )
    });
    let mut e: Vec<AlertEvent> = ordered
        .into_iter()
        .flat_map(|f| engine.on_forecast(f))
        .collect();
    e.sort_by(|a, b| a.id.cmp(&b.id));
    e
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_fault_at_once_changes_no_result() {
    if std::env::var_os("KAFKA_BOOTSTRAP").is_none()
        && std::env::var_os("TICKCAST_REQUIRE_SERVICES").is_none()
    {
        eprintln!(
            "SKIPPED chaos: run it with scripts/test.sh (it starts its own Kafka and Postgres)"
        );
        return;
    }
    let t0 = Instant::now();
    let note = |what: &str| eprintln!("chaos {:>6.1} s: {what}", t0.elapsed().as_secs_f64());
    let kafka = OwnKafka::start();
    let pg = OwnPostgres::start();
    let store = store::open(&pg.url).await.unwrap();
    let topics = Topics::new(format!("{}.", unique("chaos")));
    let mut settings = KafkaSettings::new(kafka.bootstrap());
    settings.partitions = 2;
    Cluster::Kafka(settings.clone())
        .ensure_topics(&topics.all())
        .await
        .unwrap();
    note("kafka and postgres up");

    // The exchange: trades at RATE a second for the whole drill, poison now and then.
    let duration_s = 330.0 * scale();
    let total = (RATE * duration_s) as u64;
    let sim_cfg = SimConfig::default_symbols(23, 1_700_000_000_000);
    let rule = rule_json(median_btc(&sim_cfg, total));
    let mut opts = ReplayOptions::new(sim_cfg);
    opts.total = Some(total);
    opts.rate = RATE;
    opts.faults = Faults {
        poison_every: Some(POISON_EVERY),
        ..Faults::default()
    };
    let server = ReplayServer::bind("127.0.0.1:0", opts).await.unwrap();
    let (url, rest) = (server.url().unwrap(), server.rest_url().unwrap());
    let (sent, market) = (server.sent(), server.market());
    let (trigger, signal) = shutdown::channel();
    let replay = tokio::spawn(server.run(signal));

    let logs = std::env::temp_dir().join(unique("chaos-logs"));
    std::fs::create_dir_all(&logs).unwrap();
    let group_prefix = format!("{}-", unique("chaos"));
    let mut procs = Procs {
        logs: logs.clone(),
        common: vec![
            "--bootstrap".into(),
            kafka.bootstrap(),
            "--topic-prefix".into(),
            topics.prefix.clone(),
            "--partitions".into(),
            "2".into(),
        ],
        running: BTreeMap::new(),
        starts: BTreeMap::new(),
    };
    let stage = |s: &'static str| -> Vec<String> {
        vec![
            "run".into(),
            "--stages".into(),
            s.into(),
            "--group-prefix".into(),
            group_prefix.clone(),
            "--database-url".into(),
            pg.url.clone(),
            "--models".into(),
            "naive".into(),
            "--horizons".into(),
            "1,5".into(),
            "--checkpoint-secs".into(),
            "2".into(),
            // An uninterrupted run closes windows by event time only.
            "--idle-grace-ms".into(),
            "off".into(),
        ]
    };
    let rules = logs.join("rules.yaml");
    std::fs::write(&rules, format!("rules:\n  - {rule}\n")).unwrap();
    for s in STAGES {
        let mut args = stage(s);
        if s == "alert" {
            args.extend(["--alert-rules".into(), rules.display().to_string()]);
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        procs.start(s, &args);
    }
    let ingest_args = [
        "ingest",
        "--exchange",
        "binance",
        "--symbols",
        "BTC-USDT,ETH-USDT",
        "--url",
        &url,
        "--rest-url",
        &rest,
        // The simulated clock starts in 2023 and runs ahead of the wall.
        "--max-clock-skew-ms",
        "off",
        "--max-tick-age-ms",
        "off",
    ];
    procs.start("ingest", &ingest_args);
    note("processes started");

    // The drill.
    tokio::time::sleep(secs(20.0)).await;
    for s in STAGES {
        note(&format!("SIGKILL {s}"));
        procs.kill(s, secs(5.0)).await;
        tokio::time::sleep(secs(5.0)).await;
    }
    note("SIGKILL ingest, 30 s down");
    let poison_before_ingest_kill = sent.poison_sent().len();
    procs.kill("ingest", secs(30.0)).await;
    let poison_after_ingest_restart = sent.poison_sent().len();
    tokio::time::sleep(secs(15.0)).await;
    note("postgres stopped for 60 s");
    pg.script("pause");
    tokio::time::sleep(secs(60.0)).await;
    procs.all_alive("while postgres was down");
    pg.script("resume");
    note("postgres back");
    tokio::time::sleep(secs(15.0)).await;
    note("SIGKILL the broker, 150 s down");
    kafka.script("kill");
    tokio::time::sleep(secs(150.0)).await;
    procs.all_alive("while the broker was down");
    kafka.script("restart");
    kafka.script("wait");
    note("broker back");

    // The market runs out; the pipeline settles.
    let ended = common::eventually(Duration::from_secs(120), || {
        let m = market.clone();
        async move { m.exhausted() }
    })
    .await;
    assert!(ended, "the market did not finish");
    note("market finished");
    let sim = exchanges::sim("binance").unwrap();
    let happened = market.happened();
    let sent_ids = sent.ids();
    // Per symbol, everything from the first trade a connection sent on.
    let mut begun: BTreeSet<String> = BTreeSet::new();
    let trades: Vec<_> = happened
        .iter()
        .filter(|t| {
            if sent_ids.contains(&(t.symbol.clone(), sim.trade_id(t))) {
                begun.insert(t.symbol.clone());
            }
            begun.contains(&t.symbol)
        })
        .cloned()
        .collect();
    let want_candles = common::closed_candles(trades.iter().cloned());
    let want_forecasts = common::reference_forecasts(&want_candles, "naive", &[1, 5]);
    let want_events = reference_events(&want_forecasts, &rule);
    let settled = common::eventually(Duration::from_secs(180), || {
        let store = store.clone();
        let (nc, nf, ne) = (want_candles.len(), want_forecasts.len(), want_events.len());
        async move {
            store
                .row_counts()
                .await
                .is_ok_and(|(c, f)| c as usize >= nc && f as usize >= nf)
                && stored_events(&*store).await.len() >= ne
        }
    })
    .await;
    let counts = store.row_counts().await.unwrap();
    procs.all_alive("at the end");
    note(&format!(
        "settled: {settled}; stored (candles, forecasts) {counts:?}, want ({}, {})",
        want_candles.len(),
        want_forecasts.len()
    ));

    // Trades: every one that happened, exactly once by id.
    let ticks = read_all(&kafka.bootstrap(), &topics.ticks(), Duration::from_secs(3)).await;
    let mut by_id: BTreeMap<(String, String), usize> = BTreeMap::new();
    let mut newest: BTreeMap<String, u64> = BTreeMap::new();
    let mut out_of_order = 0;
    for p in &ticks {
        let t: Tick = serde_json::from_slice(p).unwrap();
        let id: u64 = t.trade_id.parse().unwrap();
        let top = newest.entry(t.symbol.clone()).or_default();
        // A first copy below an id already read: published after a later trade. (A second
        // copy is a duplicate, counted below.)
        if id < *top && !by_id.contains_key(&(t.symbol.clone(), t.trade_id.clone())) {
            out_of_order += 1;
        }
        *top = id.max(*top);
        *by_id.entry((t.symbol, t.trade_id)).or_default() += 1;
    }
    let want_ids: BTreeSet<(String, String)> = trades
        .iter()
        .map(|t| (t.symbol.clone(), sim.trade_id(t)))
        .collect();
    let got_ids: BTreeSet<(String, String)> = by_id.keys().cloned().collect();
    let lost: Vec<_> = want_ids.difference(&got_ids).take(5).collect();
    let extra: Vec<_> = got_ids.difference(&want_ids).take(5).collect();
    assert!(
        lost.is_empty() && extra.is_empty(),
        "{} trades lost (e.g. {lost:?}), {} unexpected (e.g. {extra:?}); logs in {}",
        want_ids.difference(&got_ids).count(),
        got_ids.difference(&want_ids).count(),
        logs.display()
    );
    let twice = by_id.values().filter(|n| **n > 1).count();
    assert_eq!(
        out_of_order,
        0,
        "ticks published after a later trade of their symbol; logs in {}",
        logs.display()
    );

    // Candles and forecasts: an uninterrupted run's, exactly.
    assert!(
        settled,
        "the store never caught up; logs in {}",
        logs.display()
    );
    assert_eq!(common::all_candles(&*store).await, want_candles);
    let got_forecasts = stored_forecasts(&*store).await;
    let missing: Vec<_> = want_forecasts
        .keys()
        .filter(|k| !got_forecasts.contains_key(*k))
        .take(5)
        .collect();
    assert!(missing.is_empty(), "forecasts missing, e.g. {missing:?}");
    assert_eq!(got_forecasts.len(), want_forecasts.len());
    for (k, f) in &want_forecasts {
        let g = &got_forecasts[k];
        assert_eq!(
            (g.point, g.lo80, g.hi80, g.lo95, g.hi95, g.last),
            (f.point, f.lo80, f.hi80, f.lo95, f.hi95, f.last),
            "forecast {k:?}"
        );
    }

    // Alerts: an uninterrupted run's events, exactly.
    assert!(
        want_events.len() >= 4,
        "the rule fired and resolved too seldom: {want_events:?}"
    );
    assert_eq!(stored_events(&*store).await, want_events);

    // Poison: every frame ingest read is a dead letter with its reason.
    let poison = sent.poison_sent();
    let dead = read_all(
        &kafka.bootstrap(),
        &topics.deadletter(),
        Duration::from_secs(3),
    )
    .await;
    let mut reasons: BTreeMap<u64, Vec<String>> = BTreeMap::new();
    for p in &dead {
        let d: DeadLetter = serde_json::from_slice(p).unwrap();
        let id = (0..poison.len() as u64)
            .map(|n| 900_000_000_000 + n)
            .find(|id| d.payload.contains(&id.to_string()));
        let Some(id) = id else {
            panic!("a dead letter that is no poison frame: {d:?}");
        };
        assert_eq!(d.stage, "ingest", "{d:?}");
        reasons
            .entry(id - 900_000_000_000)
            .or_default()
            .push(d.reason);
    }
    let want_reason = |n: u64| match n % 5 {
        0 => "is above the maximum 1000000000000000",
        1 | 2 => "is after 2200-01-01",
        _ => "is not > 0",
    };
    for (n, rs) in &reasons {
        assert_eq!(
            rs.len(),
            1,
            "poison {n} dead-lettered {} times: {rs:?}",
            rs.len()
        );
        assert!(rs[0].contains(want_reason(*n)), "poison {n}: {}", rs[0]);
    }
    // A frame can be lost only in the socket of the ingest process that was killed.
    let unread: Vec<u64> = (0..poison.len() as u64)
        .filter(|n| !reasons.contains_key(n))
        .collect();
    assert!(
        unread
            .iter()
            .all(|n| (poison_before_ingest_kill.saturating_sub(3) as u64
                ..poison_after_ingest_restart as u64)
                .contains(n)),
        "poison frames never dead-lettered: {unread:?} ({} sent; {poison_before_ingest_kill} before the ingest kill)",
        poison.len()
    );
    note(&format!(
        "trades {}, {twice} published twice; candles {}, forecasts {}, alert events {}; poison {} sent, {} dead-lettered",
        want_ids.len(),
        want_candles.len(),
        want_forecasts.len(),
        want_events.len(),
        poison.len(),
        reasons.len()
    ));
    assert!(
        poison.len() as f64 >= 20.0 * scale(),
        "only {} poison frames",
        poison.len()
    );

    trigger.fire();
    replay.await.unwrap().unwrap();
}
