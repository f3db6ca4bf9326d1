//! Helpers shared by the alert tests: fresh stores (a Postgres database of its own from
//! `DATABASE_URL`, and a SQLite file), forecast/candle builders and the handler driver.
#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::Arc;

use rust_decimal::Decimal;
use sqlx::Connection as _;
use tickcast_alerts::{AlertEvent, AlertSettings, AlertStage, AlertState, Rule};
use tickcast_core::codec::{self, Message, Topics};
use tickcast_core::domain::{Candle, Forecast, SCHEMA_VERSION};
use tickcast_core::stage::{Handler as _, Inbound};
use tickcast_store::{self as store, AlertRuleRow, Store};

pub const BAR: i64 = 60_000;
pub const T0: i64 = 1_723_075_200_000;

/// A directory removed on drop.
#[derive(Debug)]
pub struct TempDir(pub PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub fn unique(name: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .subsec_nanos();
    format!("{name}_{}_{nanos}", std::process::id())
}

fn required() -> bool {
    std::env::var_os("TICKCAST_REQUIRE_SERVICES").is_some()
}

/// A fresh Postgres database (or `None`: skipped when `DATABASE_URL` is unset and services
/// are not required).
pub async fn postgres(name: &str) -> Option<Arc<dyn Store>> {
    let Ok(url) = std::env::var("DATABASE_URL") else {
        assert!(!required(), "{name}: DATABASE_URL must be set");
        eprintln!("SKIPPED {name} on Postgres: DATABASE_URL not set");
        return None;
    };
    let db = unique(name).to_lowercase();
    let mut conn = sqlx::PgConnection::connect(&url)
        .await
        .expect("connect to DATABASE_URL");
    sqlx::query(&format!("create database \"{db}\""))
        .execute(&mut conn)
        .await
        .expect("create database");
    let base = url.rsplit_once('/').map(|(b, _)| b).unwrap_or(&url);
    Some(
        store::open(&format!("{base}/{db}"))
            .await
            .expect("postgres store"),
    )
}

/// A fresh SQLite file store.
pub async fn sqlite(name: &str) -> (Arc<dyn Store>, TempDir) {
    let dir = std::env::temp_dir().join(unique(name));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let url = format!("sqlite:{}", dir.join("tickcast.db").display());
    (store::open(&url).await.expect("sqlite store"), TempDir(dir))
}

/// Every store to run a test on: Postgres (when available) and SQLite.
pub async fn stores(name: &str) -> Vec<(Arc<dyn Store>, Option<TempDir>)> {
    let mut out = Vec::new();
    if let Some(pg) = postgres(name).await {
        out.push((pg, None));
    }
    let (s, dir) = sqlite(name).await;
    out.push((s, Some(dir)));
    out
}

/// A forecast of `BTC-USDT` on binance 1m, model `m`, horizon `h`, made at bar `bar`.
pub fn fc(model: &str, h: u32, bar: i64, last: f64, point: f64, band95: (f64, f64)) -> Forecast {
    let (lo95, hi95) = band95;
    Forecast {
        v: SCHEMA_VERSION,
        exchange: "binance".into(),
        symbol: "BTC-USDT".into(),
        interval: "1m".into(),
        model: model.into(),
        horizon: h,
        base_ms: T0 + bar * BAR,
        target_ms: T0 + (bar + i64::from(h)) * BAR,
        last,
        point,
        lo80: lo95 + (point - lo95) / 2.0,
        hi80: hi95 - (hi95 - point) / 2.0,
        lo95,
        hi95,
        ..Default::default()
    }
}

/// A flat candle of `BTC-USDT` closing at `close`, bar `bar`.
pub fn candle(symbol: &str, bar: i64, close: &str) -> Candle {
    let c: Decimal = close.parse().expect("decimal");
    Candle {
        v: SCHEMA_VERSION,
        exchange: "binance".into(),
        symbol: symbol.into(),
        interval: "1m".into(),
        open_ms: T0 + bar * BAR,
        close_ms: T0 + (bar + 1) * BAR,
        open: c,
        high: c,
        low: c,
        close: c,
        volume: Decimal::ONE,
        trades: 1,
    }
}

pub fn rule(json: &str) -> Rule {
    Rule::from_json(json.as_bytes()).expect("valid rule")
}

pub async fn put_rules(store: &dyn Store, rules: &[Rule]) {
    for r in rules {
        store
            .put_alert_rule(&AlertRuleRow {
                rule: r.clone(),
                source: store::SOURCE_API.into(),
                updated_ms: 1,
            })
            .await
            .expect("put rule");
    }
}

/// One input message.
#[derive(Debug, Clone)]
pub enum In {
    F(Forecast),
    C(Candle),
}

/// Turns inputs into messages on the two input topics (partition 0), offsets counting from
/// `first` per topic in the order given.
pub struct Feed {
    pub topics: Topics,
    /// Next offsets on the forecasts and candles topics.
    pub next_f: i64,
    pub next_c: i64,
}

impl Feed {
    pub fn new() -> Self {
        Self {
            topics: Topics::default(),
            next_f: 0,
            next_c: 0,
        }
    }

    pub fn messages(&mut self, inputs: &[In]) -> Vec<Inbound> {
        inputs
            .iter()
            .map(|i| {
                let (topic, offset, payload) = match i {
                    In::F(f) => {
                        self.next_f += 1;
                        (self.topics.forecasts(), self.next_f - 1, codec::encode(f))
                    }
                    In::C(c) => {
                        self.next_c += 1;
                        (self.topics.candles(), self.next_c - 1, codec::encode(c))
                    }
                };
                let key = match i {
                    In::F(f) => f.key(),
                    In::C(c) => c.key(),
                };
                Inbound {
                    topic,
                    partition: 0,
                    offset,
                    key: Some(key.as_bytes().to_vec()),
                    payload,
                }
            })
            .collect()
    }
}

/// A stage on `store` that checkpoints at every acknowledgement.
pub fn stage(store: &Arc<dyn Store>) -> AlertStage {
    let mut s = AlertSettings::new(&Topics::default(), "alert-test");
    s.checkpoint_every = std::time::Duration::ZERO;
    AlertStage::new(s, store.clone())
}

/// Runs each batch through the handler (acknowledging after each) and returns the events
/// decoded from the records it produced.
pub async fn drive(
    stage: &mut AlertStage,
    feed: &mut Feed,
    batches: &[Vec<In>],
) -> Vec<AlertEvent> {
    let mut out = Vec::new();
    for b in batches {
        let effects = stage.handle(&feed.messages(b)).await.expect("handle");
        assert!(effects.dead.is_empty(), "dead letters: {:?}", effects.dead);
        for r in effects.records {
            assert_eq!(&*r.topic, "tickcast.alerts.v1");
            let e: AlertEvent = codec::decode(&r.payload).expect("alert decodes");
            assert_eq!(&*r.key, format!("binance:{}", e.symbol));
            out.push(e);
        }
        stage.acknowledged(false).await.expect("checkpoint");
    }
    out
}

/// (rule, state, bar) of each event: the shape the tests compare.
pub fn shape(events: &[AlertEvent]) -> Vec<(String, AlertState, i64)> {
    events
        .iter()
        .map(|e| (e.rule.clone(), e.state, (e.ts_ms - T0) / BAR))
        .collect()
}

/// `(rule, state, bar)` literals.
pub fn want(rows: &[(&str, AlertState, i64)]) -> Vec<(String, AlertState, i64)> {
    rows.iter()
        .map(|(r, s, b)| (r.to_string(), *s, *b))
        .collect()
}
