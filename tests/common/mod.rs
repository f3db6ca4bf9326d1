//! Test and benchmark harness: the real services (Apache Kafka + Postgres, from `KAFKA_BOOTSTRAP`
//! and `DATABASE_URL` as `scripts/test.sh` exports them) or the embedded mode (mock cluster +
//! SQLite), each with unique topics, groups and a fresh database per test.
#![allow(dead_code, clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rust_decimal::Decimal;
use tickcast::{PipelineConfig, StageKind, run_stage};
use tickcast_core::bus::{Cluster, KafkaSettings, OutRecord, Publisher};
use tickcast_core::codec::{self, Message as _, Topics};
use tickcast_core::domain::{Candle, Forecast, SCHEMA_VERSION};
use tickcast_core::embedded::EmbeddedBroker;
use tickcast_core::interval::Interval;
use tickcast_core::shutdown::{self, ShutdownTrigger};
use tickcast_ingest::exchanges::binance::connector::Binance;
use tickcast_ingest::feed::{FeedOptions, run_feed};
use tickcast_ingest::replay::{ReplayOptions, ReplayServer};
use tickcast_ingest::simulator::{SimConfig, SimTrade, Simulator};
use tickcast_store::{self as store, CandleQuery, Store};
use tokio::task::JoinSet;

/// Which services a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Apache Kafka + Postgres.
    Real,
    /// The embedded broker + SQLite.
    Embedded,
}

/// One isolated environment: cluster, topics, groups and a database of its own.
#[derive(Debug)]
pub struct Env {
    pub mode: Mode,
    pub cluster: Cluster,
    pub topics: Topics,
    pub group_prefix: String,
    pub database_url: String,
    pub store: Arc<dyn Store>,
    broker: Option<Arc<EmbeddedBroker>>,
    _dir: Option<TempDir>,
}

/// A directory removed on drop.
#[derive(Debug)]
pub struct TempDir(pub PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A name unique to this process and moment, usable as a topic prefix or database name.
pub fn unique(name: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("{name}_{}_{nanos}", std::process::id())
}

/// Environment variables, or `None` (skip) when the services are absent and not required.
fn real_services(test: &str) -> Option<(String, String)> {
    match (
        std::env::var("KAFKA_BOOTSTRAP"),
        std::env::var("DATABASE_URL"),
    ) {
        (Ok(k), Ok(d)) => Some((k, d)),
        _ if std::env::var_os("TICKCAST_REQUIRE_SERVICES").is_some() => {
            panic!(
                "{test}: KAFKA_BOOTSTRAP and DATABASE_URL must be set (scripts/test.sh sets them)"
            )
        }
        _ => {
            eprintln!(
                "SKIPPED {test}: set KAFKA_BOOTSTRAP and DATABASE_URL (or run scripts/test.sh)"
            );
            None
        }
    }
}

/// Creates a fresh database next to the one `url` names and returns its URL.
pub async fn fresh_postgres(url: &str, name: &str) -> String {
    let db = unique(name).to_lowercase();
    store::postgres::create_database_beside(url, &db)
        .await
        .expect("create a database beside DATABASE_URL's")
}

/// Just a store (fresh Postgres database or SQLite file), for tests that need no broker.
pub async fn open_store(mode: Mode, name: &str) -> Option<(Arc<dyn Store>, Option<TempDir>)> {
    match mode {
        Mode::Real => {
            let Ok(url) = std::env::var("DATABASE_URL") else {
                assert!(
                    std::env::var_os("TICKCAST_REQUIRE_SERVICES").is_none(),
                    "{name}: DATABASE_URL must be set"
                );
                eprintln!("SKIPPED {name}: DATABASE_URL not set");
                return None;
            };
            let url = fresh_postgres(&url, name).await;
            Some((store::open(&url).await.expect("postgres store"), None))
        }
        Mode::Embedded => {
            let dir = std::env::temp_dir().join(unique(name));
            std::fs::create_dir_all(&dir).expect("temp dir");
            let url = format!("sqlite:{}", dir.join("t.db").display());
            Some((
                store::open(&url).await.expect("sqlite store"),
                Some(TempDir(dir)),
            ))
        }
    }
}

impl Env {
    /// An environment in `mode`, or `None` when a real one is unavailable and not required.
    pub async fn new(mode: Mode, name: &str, partitions: i32) -> Option<Env> {
        let topics = Topics::new(format!("{}.", unique(name)));
        let group_prefix = format!("{}-", unique(name));
        match mode {
            Mode::Real => {
                let (bootstrap, url) = real_services(name)?;
                let mut settings = KafkaSettings::new(bootstrap);
                // A secured broker (scripts/test.sh's TLS run): its properties from the
                // environment, as the binary reads them.
                settings.properties =
                    tickcast_core::bus::properties_from_env(std::env::vars()).unwrap();
                settings.partitions = partitions;
                settings.session_timeout_ms = 6_000;
                let database_url = fresh_postgres(&url, name).await;
                let store = store::open(&database_url)
                    .await
                    .expect("open Postgres store");
                let cluster = Cluster::Kafka(settings);
                cluster
                    .ensure_topics(&topics.all())
                    .await
                    .expect("create topics");
                Some(Env {
                    mode,
                    cluster,
                    topics,
                    group_prefix,
                    database_url,
                    store,
                    broker: None,
                    _dir: None,
                })
            }
            Mode::Embedded => {
                let broker = Arc::new(EmbeddedBroker::start(1).expect("embedded broker"));
                let mut settings = KafkaSettings::new(broker.bootstrap());
                settings.partitions = partitions;
                settings.session_timeout_ms = 6_000;
                let dir = std::env::temp_dir().join(unique(name));
                std::fs::create_dir_all(&dir).unwrap();
                let database_url = format!("sqlite:{}", dir.join("tickcast.db").display());
                let store = store::open(&database_url).await.expect("open SQLite store");
                let cluster = Cluster::Embedded(broker.clone(), settings);
                cluster
                    .ensure_topics(&topics.all())
                    .await
                    .expect("create topics");
                let dir = Some(TempDir(dir));
                Some(Env {
                    mode,
                    cluster,
                    topics,
                    group_prefix,
                    database_url,
                    store,
                    broker: Some(broker),
                    _dir: dir,
                })
            }
        }
    }

    pub fn settings(&self) -> &KafkaSettings {
        self.cluster.settings()
    }

    pub fn config(&self, horizons: &[u32]) -> PipelineConfig {
        let mut cfg = PipelineConfig::new(self.cluster.clone(), self.topics.clone());
        cfg.group_prefix = self.group_prefix.clone();
        cfg.candles.intervals = vec![Interval::from_ms(60_000)];
        cfg.horizons = horizons.to_vec();
        // naive and the ensemble of it: both forecast from a series' second candle on.
        cfg.models = vec!["naive".into()];
        cfg.ensemble = true;
        cfg
    }
}

/// The seeded market every end-to-end test replays.
pub fn sim_config(seed: u64) -> SimConfig {
    SimConfig::default_symbols(seed, 1_700_000_000_000)
}

/// Expected closed 1-minute candles for the first `n` simulated trades, computed independently
/// of the candles stage: a window is closed once a later trade of its symbol reaches its end.
pub fn expected_candles(seed: u64, n: usize) -> Vec<Candle> {
    closed_candles(Simulator::new(&sim_config(seed)).take(n))
}

/// Closed 1-minute `binance` candles of `trades` (each trade counted once), sorted by open
/// time then symbol: a window is closed once a later trade of its symbol reaches its end.
pub fn closed_candles(trades: impl IntoIterator<Item = SimTrade>) -> Vec<Candle> {
    closed_candles_late(trades, 0)
}

/// [`closed_candles`] for a candles stage with `--allowed-lateness-ms lateness`: a window is
/// closed once a later trade of its symbol is `lateness` past its end.
pub fn closed_candles_late(
    trades: impl IntoIterator<Item = SimTrade>,
    lateness: i64,
) -> Vec<Candle> {
    let mut windows: BTreeMap<(String, i64), Candle> = BTreeMap::new();
    let mut max_ts: BTreeMap<String, i64> = BTreeMap::new();
    for t in trades {
        let start = t.ts_ms - t.ts_ms.rem_euclid(60_000);
        let c = windows
            .entry((t.symbol.clone(), start))
            .or_insert_with(|| Candle {
                v: SCHEMA_VERSION,
                exchange: "binance".into(),
                symbol: t.symbol.clone(),
                interval: "1m".into(),
                open_ms: start,
                close_ms: start + 60_000,
                open: t.price,
                high: t.price,
                low: t.price,
                close: t.price,
                volume: Decimal::ZERO,
                trades: 0,
            });
        c.high = c.high.max(t.price);
        c.low = c.low.min(t.price);
        c.close = t.price;
        c.volume += t.size;
        c.trades += 1;
        let m = max_ts.entry(t.symbol.clone()).or_insert(i64::MIN);
        *m = (*m).max(t.ts_ms);
    }
    let mut out: Vec<Candle> = windows
        .into_values()
        .filter(|c| c.close_ms + lateness <= max_ts[&c.symbol])
        .collect();
    out.sort_by(|a, b| (a.open_ms, &a.symbol).cmp(&(b.open_ms, &b.symbol)));
    out
}

/// Forecast rows the naive model and the ensemble (see [`Env::config`]) must produce for
/// `candles`: every closed candle but the first of each series, times the horizons, twice.
pub fn expected_forecast_count(candles: &[Candle], horizons: &[u32]) -> usize {
    let series: std::collections::BTreeSet<&str> =
        candles.iter().map(|c| c.symbol.as_str()).collect();
    2 * (candles.len() - series.len()) * horizons.len()
}

/// Every row of the store, sorted as [`expected_candles`] sorts.
pub async fn all_candles(store: &dyn Store) -> Vec<Candle> {
    try_all_candles(store).await.unwrap()
}

/// [`all_candles`], or the store's error (while it is down).
pub async fn try_all_candles(store: &dyn Store) -> anyhow::Result<Vec<Candle>> {
    let mut c = store
        .candles(&CandleQuery {
            limit: 10_000,
            ..Default::default()
        })
        .await?;
    c.sort_by(|a, b| (a.open_ms, &a.symbol).cmp(&(b.open_ms, &b.symbol)));
    Ok(c)
}

/// Bar `i` of a made-up 1-minute Binance BTC-USDT series from 2023-11-14 (prices vary with
/// `i`): candles a test publishes straight to the candles topic.
pub fn test_candle(i: i64) -> Candle {
    let p = Decimal::new(20_000 + (i * 53 % 700), 1);
    Candle {
        v: SCHEMA_VERSION,
        exchange: "binance".into(),
        symbol: "BTC-USDT".into(),
        interval: "1m".into(),
        open_ms: 1_700_000_000_000 + i * 60_000,
        close_ms: 1_700_000_060_000 + i * 60_000,
        open: p,
        high: p + Decimal::ONE,
        low: p - Decimal::ONE,
        close: p,
        volume: Decimal::new(i + 1, 2),
        trades: 3,
    }
}

/// Publishes [`test_candle`]`(i)` for every `i` in `range` to the candles topic.
pub async fn publish_test_candles(
    settings: &KafkaSettings,
    topics: &Topics,
    range: std::ops::Range<i64>,
) {
    let records: Vec<OutRecord> = range
        .map(|i| {
            let c = test_candle(i);
            OutRecord {
                topic: topics.candles().into(),
                key: c.key(),
                payload: codec::encode(&c),
            }
        })
        .collect();
    Publisher::new(settings)
        .unwrap()
        .publish_all(&records)
        .await
        .unwrap();
}

/// [`eventually`], failing the test with `what` when `check` does not hold in time.
pub async fn wait_for<F, Fut>(what: &str, timeout: Duration, check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    assert!(
        eventually(timeout, check).await,
        "timed out waiting for {what}"
    );
}

/// Number of forecast rows stored.
pub async fn forecast_count(store: &dyn Store) -> usize {
    store.row_counts().await.unwrap().1 as usize
}

/// Number of candle rows stored.
pub async fn candle_count(store: &dyn Store) -> usize {
    store.row_counts().await.unwrap().0 as usize
}

/// Polls `check` until it returns true or `timeout` passes; returns whether it did.
pub async fn eventually<F, Fut>(timeout: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while start.elapsed() < timeout {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    false
}

/// A running pipeline: replay exchange → ingest → candles → forecast → sink (+ API).
#[derive(Debug)]
pub struct Pipeline {
    pub trigger: ShutdownTrigger,
    pub tasks: JoinSet<anyhow::Result<()>>,
    pub api_addr: std::net::SocketAddr,
}

/// Which parts to start.
#[derive(Debug, Clone, Copy)]
pub struct Parts {
    pub ingest: bool,
    pub stages: &'static [StageKind],
    pub api: bool,
}

pub const ALL: Parts = Parts {
    ingest: true,
    stages: &[StageKind::Candles, StageKind::Forecast, StageKind::Sink],
    api: true,
};

impl Pipeline {
    pub async fn start(
        env: &Env,
        seed: u64,
        trades: u64,
        horizons: &[u32],
        parts: Parts,
    ) -> Pipeline {
        let (trigger, signal) = shutdown::channel();
        let mut tasks = JoinSet::new();
        if parts.ingest {
            let opts = ReplayOptions {
                total: Some(trades),
                ..ReplayOptions::new(sim_config(seed))
            };
            let replay = ReplayServer::bind("127.0.0.1:0", opts).await.unwrap();
            let url = replay.url().unwrap();
            tasks.spawn(replay.run(signal.clone()));
            let publisher = Publisher::new(env.settings()).unwrap();
            let symbols = vec!["BTC-USDT".to_string(), "ETH-USDT".to_string()];
            let mut feed = FeedOptions::new(url, symbols);
            // The simulated market keeps its own clock (from 2023, faster than the wall).
            feed.event_window = tickcast_core::domain::EventWindow::OFF;
            tasks.spawn(run_feed(
                Arc::new(Binance::trades()),
                feed,
                publisher,
                env.topics.clone(),
                signal.clone(),
            ));
        }
        let cfg = env.config(horizons);
        for &kind in parts.stages {
            let (cfg, store, signal) = (cfg.clone(), env.store.clone(), signal.clone());
            tasks.spawn(async move { run_stage(kind, &cfg, Some(store), signal).await });
        }
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let api_addr = listener.local_addr().unwrap();
        if parts.api {
            let state = tickcast_api::AppState::new(env.store.clone());
            tasks.spawn(tickcast_api::serve(listener, state, signal.clone()));
        }
        Pipeline {
            trigger,
            tasks,
            api_addr,
        }
    }

    /// Fires shutdown and waits for every task; any task error fails the test.
    pub async fn stop(mut self) {
        self.trigger.fire();
        while let Some(r) = self.tasks.join_next().await {
            r.expect("task panicked").expect("task failed");
        }
    }
}

/// A forecast's identity: (symbol, model, horizon, base bar).
pub type ForecastKey = (String, String, u32, i64);

pub fn forecast_key(f: &Forecast) -> ForecastKey {
    (
        f.symbol.to_string(),
        f.model.to_string(),
        f.horizon,
        f.base_ms,
    )
}

/// What one uninterrupted forecast stage (these models, calibrated, with the ensemble)
/// publishes for these candles, fed in batches of 97.
pub fn reference_forecasts(
    candles: &[Candle],
    models: &str,
    horizons: &[u32],
) -> BTreeMap<ForecastKey, Forecast> {
    let models: Vec<String> = models.split(',').map(String::from).collect();
    let mut stage =
        tickcast_forecast::models::stage(&models, horizons, true, true, Default::default(), "x")
            .unwrap();
    let refs: Vec<&Candle> = candles.iter().collect();
    let mut out = BTreeMap::new();
    for chunk in refs.chunks(97) {
        for f in stage.forecasts(chunk) {
            assert!(
                out.insert(forecast_key(&f), f).is_none(),
                "reference duplicates"
            );
        }
    }
    out
}

/// A TCP port nothing listens on now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A Postgres server of a test's own (`scripts/postgres.sh` on a free port and a scratch
/// dir), so stopping it disturbs no other test; stopped and deleted when dropped.
pub struct OwnPostgres {
    dir: TempDir,
    port: u16,
    pub url: String,
}

impl OwnPostgres {
    /// `scripts/postgres.sh <verb>` for this server: `pause`, `resume`.
    pub fn script(&self, verb: &str) {
        let out = std::process::Command::new("scripts/postgres.sh")
            .arg(verb)
            .env("PG_DIR", &self.dir.0)
            .env("PG_PORT", self.port.to_string())
            .env_remove("PG_TLS_DIR")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "postgres.sh {verb}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    pub fn start() -> Self {
        let port = free_port();
        let dir = TempDir(std::env::temp_dir().join(unique("own-pg")));
        let pg = OwnPostgres {
            url: format!("postgres://postgres@127.0.0.1:{port}/tickcast"),
            dir,
            port,
        };
        pg.script("start");
        pg
    }
}

impl Drop for OwnPostgres {
    fn drop(&mut self) {
        let _ = std::process::Command::new("scripts/postgres.sh")
            .arg("stop")
            .env("PG_DIR", &self.dir.0)
            .env("PG_PORT", self.port.to_string())
            .output();
    }
}
