//! Persistence behind one [`Store`] trait, chosen at start-up from the database URL:
//! [`postgres::PgStore`] (`postgres://…`) or [`sqlite::SqliteStore`] (`sqlite:…`).
//! Migrations in `migrations/<dialect>/` are applied by [`open`].

pub mod postgres;
mod rows;
pub mod sqlite;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use anyhow::{Result, bail};
use async_trait::async_trait;
use tickcast_pipeline::domain::{Candle, Forecast};

/// Where a record came from: (topic, partition, offset).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Pos {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
}

/// A sink batch: rows with their source positions, and the next offsets they complete.
#[derive(Debug, Default, Clone)]
pub struct SinkBatch {
    pub candles: Vec<(Pos, Candle)>,
    pub forecasts: Vec<(Pos, Forecast)>,
    /// Next offset per (topic, partition) once this batch is written.
    pub offsets: BTreeMap<(String, i32), i64>,
}

/// What a write did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct WriteSummary {
    pub candles: usize,
    pub forecasts: usize,
    /// Records skipped because the stored offsets show they were written before.
    pub skipped: usize,
}

/// Filters for candle reads. Returns the newest `limit` rows in range, oldest first.
#[derive(Debug, Default, Clone)]
pub struct CandleQuery {
    pub exchange: Option<String>,
    pub symbol: Option<String>,
    pub interval: Option<String>,
    /// Inclusive lower bound on `open_ms`.
    pub from_ms: Option<i64>,
    /// Exclusive upper bound on `open_ms`.
    pub to_ms: Option<i64>,
    pub limit: i64,
}

/// Filters for forecast reads (range on `target_ms`). Newest `limit` rows, oldest first.
#[derive(Debug, Default, Clone)]
pub struct ForecastQuery {
    pub exchange: Option<String>,
    pub symbol: Option<String>,
    pub interval: Option<String>,
    pub model: Option<String>,
    pub horizon: Option<i32>,
    pub from_ms: Option<i64>,
    pub to_ms: Option<i64>,
    pub limit: i64,
}

/// The one persistence boundary.
#[async_trait]
pub trait Store: Send + Sync + std::fmt::Debug {
    /// `postgres` or `sqlite`.
    fn backend(&self) -> &'static str;
    /// Cheap reachability check.
    async fn ping(&self) -> Result<()>;
    /// Upserts the rows and advances `consumer`'s offsets in one transaction. Rows whose offset
    /// is below the stored next offset were written before and are skipped.
    async fn write_batch(&self, consumer: &str, batch: &SinkBatch) -> Result<WriteSummary>;
    /// Stored next offsets of a consumer.
    async fn offsets(&self, consumer: &str) -> Result<BTreeMap<(String, i32), i64>>;
    async fn candles(&self, q: &CandleQuery) -> Result<Vec<Candle>>;
    async fn forecasts(&self, q: &ForecastQuery) -> Result<Vec<Forecast>>;
    /// Number of (candle, forecast) rows stored.
    async fn row_counts(&self) -> Result<(i64, i64)>;
}

/// Opens the store a URL names and applies its migrations.
pub async fn open(url: &str) -> Result<Arc<dyn Store>> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Arc::new(postgres::PgStore::connect(url).await?))
    } else if url.starts_with("sqlite:") {
        Ok(Arc::new(sqlite::SqliteStore::connect(url).await?))
    } else {
        bail!("unsupported database URL `{url}`: expected postgres://… or sqlite:…")
    }
}

/// Keeps the rows not yet written (offset ≥ stored next offset), de-duplicated by natural key
/// with the latest offset winning, in offset order.
pub(crate) fn fresh<'a, T, K: std::hash::Hash + Eq>(
    rows: &'a [(Pos, T)],
    stored: &HashMap<(String, i32), i64>,
    key: impl Fn(&T) -> K,
) -> (Vec<&'a T>, usize) {
    let mut latest: HashMap<K, (&'a Pos, &'a T)> = HashMap::new();
    let mut skipped = 0;
    for (pos, row) in rows {
        let done = stored
            .get(&(pos.topic.clone(), pos.partition))
            .is_some_and(|next| pos.offset < *next);
        if done {
            skipped += 1;
            continue;
        }
        match latest.entry(key(row)) {
            std::collections::hash_map::Entry::Occupied(mut e) => {
                if e.get().0 <= pos {
                    e.insert((pos, row));
                }
            }
            std::collections::hash_map::Entry::Vacant(e) => {
                e.insert((pos, row));
            }
        }
    }
    let mut out: Vec<(&Pos, &T)> = latest.into_values().collect();
    out.sort_by(|a, b| a.0.cmp(b.0));
    (out.into_iter().map(|(_, r)| r).collect(), skipped)
}

/// The natural key of a candle row.
pub(crate) fn candle_key(c: &Candle) -> (String, String, String, i64) {
    (
        c.exchange.clone(),
        c.symbol.clone(),
        c.interval.clone(),
        c.open_ms,
    )
}

/// The natural key of a forecast row.
pub(crate) fn forecast_key(f: &Forecast) -> (String, String, String, String, u32, i64) {
    (
        f.exchange.clone(),
        f.symbol.clone(),
        f.interval.clone(),
        f.model.clone(),
        f.horizon,
        f.base_ms,
    )
}

/// Clamps a requested page size.
pub fn clamp_limit(limit: i64) -> i64 {
    limit.clamp(1, 10_000)
}

/// The statement both dialects answer [`Store::row_counts`] with.
pub(crate) const ROW_COUNTS: &str =
    "select (select count(*) from candles), (select count(*) from forecasts)";

/// Reads a consumer's stored next offsets (both dialects).
pub(crate) const OFFSETS_SQL: &str =
    "select topic, partition, next_offset from consumer_offsets where consumer = $1";

/// `(topic, partition, next_offset)` rows → a map keyed by (topic, partition).
pub(crate) fn offset_map<M: FromIterator<((String, i32), i64)>>(
    rows: Vec<(String, i32, i64)>,
) -> M {
    rows.into_iter().map(|(t, p, o)| ((t, p), o)).collect()
}
