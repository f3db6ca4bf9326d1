//! Persistence behind one [`Store`] trait, chosen at start-up from the database URL:
//! [`postgres::PgStore`] (`postgres://…`) or [`sqlite::SqliteStore`] (`sqlite:…`).
//! Migrations in `migrations/<dialect>/` are applied by [`open`].

pub(crate) mod alerts;
mod forecast_ids;
mod partitions;
pub mod postgres;
pub mod retention;
mod rows;
pub mod sqlite;

pub use alerts::{
    AlertCheckpoint, AlertEventQuery, AlertRuleRow, AlertSeriesState, DeliveryJob, DeliveryOutcome,
    DeliveryQuery, DeliveryRow, DeliveryStatus, SOURCE_API, SOURCE_FILE,
};

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use anyhow::{Result, bail};
use async_trait::async_trait;
use tickcast_pipeline::domain::{Candle, Forecast};

use crate::alerts::rule::Rule;
use tickcast_pipeline::domain::Alert as AlertEvent;

/// How long a query waits for a pooled connection before it fails: short, so that an
/// unreachable database is reported (a 503 from the API, a wait in the stages) within
/// about 2 s rather than after a request timeout.
pub const ACQUIRE_TIMEOUT: std::time::Duration = std::time::Duration::from_millis(1_500);

/// Why `e` means the database cannot serve now (as opposed to a query it refused), or
/// `None`: no connection within [`ACQUIRE_TIMEOUT`], a closed pool, a broken socket, a Postgres error of class 08 (connection exception), 57P0x (shutting down,
/// cannot connect now) or 53 (disk full, out of memory, too many connections), or SQLite's
/// BUSY, LOCKED, IOERR or FULL.
pub fn unavailable(e: &anyhow::Error) -> Option<String> {
    e.chain().find_map(|cause| {
        let err = cause.downcast_ref::<sqlx::Error>()?;
        match err {
            sqlx::Error::PoolTimedOut => Some(format!(
                "no database connection within {} ms",
                ACQUIRE_TIMEOUT.as_millis()
            )),
            sqlx::Error::PoolClosed | sqlx::Error::WorkerCrashed => Some(err.to_string()),
            sqlx::Error::Io(io) => Some(format!("database connection: {io}")),
            // A TLS failure (an unknown CA, a name mismatch, a server without TLS) is a
            // setting to mend, not an outage to wait out.
            sqlx::Error::Database(db) => {
                if let Some(lite) = db.try_downcast_ref::<sqlx::sqlite::SqliteError>() {
                    // The primary result code: BUSY, LOCKED, IOERR, FULL.
                    let code: i32 = sqlx::error::DatabaseError::code(lite)?.parse().ok()?;
                    return matches!(code & 0xff, 5 | 6 | 10 | 13)
                        .then(|| format!("database: {} (SQLite code {code})", db.message()));
                }
                let code = db.code()?;
                // 08: connection; 57P0x: shutting down; 53: out of disk, memory or
                // connections.
                (code.starts_with("08") || code.starts_with("57P0") || code.starts_with("53"))
                    .then(|| format!("database: {} ({code})", db.message()))
            }
            _ => None,
        }
    })
}

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

/// What a retention pass removed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RetentionReport {
    /// Postgres partitions dropped.
    pub dropped: Vec<String>,
    /// SQLite rows deleted.
    pub deleted: u64,
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

/// One series' forecast-stage checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeriesCheckpoint {
    pub exchange: String,
    pub symbol: String,
    pub interval: String,
    /// Open time of the newest candle folded into `state`.
    pub last_open_ms: i64,
    pub state: Vec<u8>,
}

/// The latest rolling score of one series, model and horizon.
#[derive(Debug, Clone, PartialEq, serde::Serialize, utoipa::ToSchema)]
pub struct AccuracyRow {
    pub exchange: String,
    pub symbol: String,
    pub interval: String,
    pub model: String,
    pub horizon: i32,
    /// Open time of the bar scored last.
    pub ts_ms: i64,
    pub n: i64,
    pub mae: f64,
    pub rmse: f64,
    pub mase: Option<f64>,
    pub rel_mae: Option<f64>,
    pub coverage80: f64,
    pub coverage95: f64,
    pub winkler95: f64,
    pub directional_accuracy: Option<f64>,
    /// Mean CRPS of the nine quantiles, and over naive's on the same points.
    pub crps: Option<f64>,
    pub crps_rel: Option<f64>,
    /// The largest |share of outcomes at or below q_τ − τ| over the nine quantiles.
    pub pit_max_err: Option<f64>,
    /// Brier score of the touch probabilities at ±1 and ±2 spreads, over the trailing base
    /// rate's, and their expected calibration error (10 bins).
    pub touch_brier: Option<f64>,
    pub touch_brier_rel: Option<f64>,
    pub touch_ece: Option<f64>,
}

/// What the forecast stage writes at a checkpoint, in one transaction.
#[derive(Debug, Default, Clone)]
pub struct Checkpoint {
    pub series: Vec<SeriesCheckpoint>,
    /// (model, shared parameters).
    pub models: Vec<(String, Vec<u8>)>,
    pub accuracy: Vec<AccuracyRow>,
}

/// Filters for accuracy reads.
#[derive(Debug, Default, Clone)]
pub struct AccuracyQuery {
    pub exchange: Option<String>,
    pub symbol: Option<String>,
    pub interval: Option<String>,
    pub model: Option<String>,
    pub horizon: Option<i32>,
    pub limit: i64,
}

/// One series with stored candles.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct SeriesInfo {
    pub exchange: String,
    pub symbol: String,
    pub interval: String,
    /// Stored candles.
    pub candles: i64,
    /// Open time of the oldest and newest stored candle, epoch ms.
    pub first_open_ms: i64,
    pub last_open_ms: i64,
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
    /// Removes what is past `policy`'s retention at data clock `clock_ms`
    /// ([`retention::data_clock`]): Postgres drops whole time partitions, SQLite deletes in
    /// batches. `forecasts_latest`, the accuracy scores and the other tables are not touched.
    async fn apply_retention(
        &self,
        policy: &retention::Retention,
        clock_ms: i64,
    ) -> Result<RetentionReport>;
    /// Stored next offsets of a consumer.
    async fn offsets(&self, consumer: &str) -> Result<BTreeMap<(String, i32), i64>>;
    /// Drops a consumer's stored offset of one partition (its topic was recreated), so the sink
    /// writes that partition from the broker's offsets again.
    async fn forget_offset(&self, consumer: &str, topic: &str, partition: i32) -> Result<()>;
    async fn candles(&self, q: &CandleQuery) -> Result<Vec<Candle>>;
    async fn forecasts(&self, q: &ForecastQuery) -> Result<Vec<Forecast>>;
    /// Number of (candle, forecast) rows stored.
    async fn row_counts(&self) -> Result<(i64, i64)>;
    /// Writes a forecast-stage checkpoint of consumer group `consumer` in one transaction.
    async fn save_checkpoint(&self, consumer: &str, cp: &Checkpoint) -> Result<()>;
    /// The checkpoints of the given series (exchange, symbol, interval) that exist.
    async fn load_series_states(
        &self,
        consumer: &str,
        keys: &[(String, String, String)],
    ) -> Result<Vec<SeriesCheckpoint>>;
    /// Every model's shared parameters stored for `consumer`.
    async fn load_model_states(&self, consumer: &str) -> Result<Vec<(String, Vec<u8>)>>;
    /// Latest rolling scores, ordered by exchange, symbol, interval, model, horizon.
    async fn accuracy(&self, q: &AccuracyQuery) -> Result<Vec<AccuracyRow>>;
    /// The newest forecast per series, model and horizon (the query's time range and limit
    /// apply to `target_ms` and the row count), ordered by exchange, symbol, interval, model,
    /// horizon.
    async fn latest_forecasts(&self, q: &ForecastQuery) -> Result<Vec<Forecast>>;
    /// Every series with stored candles, ordered by exchange, symbol, interval.
    async fn series(&self) -> Result<Vec<SeriesInfo>>;

    // Alerts (`alert_rules`, `alert_events`, `alert_state`, `alert_deliveries`).

    /// Every alert rule, ordered by id. A row whose spec does not parse is skipped (logged).
    async fn alert_rules(&self) -> Result<Vec<AlertRuleRow>>;
    /// One alert rule.
    async fn alert_rule(&self, id: &str) -> Result<Option<AlertRuleRow>>;
    /// Creates or replaces a rule (by id); true when it was created.
    async fn put_alert_rule(&self, row: &AlertRuleRow) -> Result<bool>;
    /// Deletes a rule; true when it existed.
    async fn delete_alert_rule(&self, id: &str) -> Result<bool>;
    /// Makes the rules of source `file` exactly `rules` (a rule file read at start-up):
    /// upserts them, deletes file rules no longer in it. Rules of source `api` with other ids
    /// are left alone; one with the same id as a file rule is replaced by it.
    async fn replace_file_rules(&self, rules: &[Rule], now_ms: i64) -> Result<()>;
    /// Alert events, newest first.
    async fn alert_events(&self, q: &AlertEventQuery) -> Result<Vec<AlertEvent>>;
    /// Writes an alert-stage checkpoint of consumer group `consumer` in one transaction.
    async fn save_alert_checkpoint(&self, consumer: &str, cp: &AlertCheckpoint) -> Result<()>;
    /// The alert-stage states of the given series (exchange, symbol, interval) that exist.
    async fn load_alert_states(
        &self,
        consumer: &str,
        keys: &[(String, String, String)],
    ) -> Result<Vec<AlertSeriesState>>;
    /// Claims up to `limit` deliveries of `endpoint` due at `now_ms`, oldest event first; each
    /// is not due again for `lease_ms` unless finished.
    async fn claim_deliveries(
        &self,
        endpoint: &str,
        now_ms: i64,
        lease_ms: i64,
        limit: i64,
    ) -> Result<Vec<DeliveryJob>>;
    /// Records the result of one try.
    async fn finish_delivery(
        &self,
        endpoint: &str,
        event_id: &str,
        outcome: &DeliveryOutcome,
        now_ms: i64,
    ) -> Result<()>;
    /// When the next pending delivery of `endpoint` is due.
    async fn next_delivery_ms(&self, endpoint: &str) -> Result<Option<i64>>;
    /// Outbox rows, oldest event first.
    async fn alert_deliveries(&self, q: &DeliveryQuery) -> Result<Vec<DeliveryRow>>;
}

/// Opens the store a URL names and applies its migrations.
pub async fn open(url: &str) -> Result<Arc<dyn Store>> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Arc::new(postgres::PgStore::connect(url).await?))
    } else if url.starts_with("sqlite:") {
        Ok(Arc::new(sqlite::SqliteStore::connect(url).await?))
    } else {
        bail!(
            "unsupported database URL `{}`: expected postgres://… or sqlite:…",
            postgres::redact(url)
        )
    }
}

/// [`open`], waiting out a database that cannot be reached yet (it starts after us, or is
/// restarting): retries with backoff up to 10 s apart, logging each try, until it answers or
/// `shutdown` fires. Other errors (a bad URL, a wrong password, a failed migration) are
/// returned at once.
pub async fn open_waiting(
    url: &str,
    shutdown: &mut tickcast_pipeline::shutdown::Shutdown,
) -> Result<Arc<dyn Store>> {
    let mut backoff = tickcast_pipeline::stage::Backoff::new();
    loop {
        match open(url).await {
            Ok(store) => return Ok(store),
            Err(e) => {
                let Some(why) = unavailable(&e) else {
                    return Err(e);
                };
                tracing::warn!(url = %postgres::redact(url), error = %why, retry_in_ms = backoff.next().as_millis() as u64, "database unreachable; waiting for it");
            }
        }
        if !backoff.sleep(shutdown).await {
            bail!(
                "stopped while waiting for the database at {}",
                postgres::redact(url)
            );
        }
    }
}

/// Keeps the rows not yet written (offset ≥ stored next offset), de-duplicated by natural key
/// with the latest offset winning, in offset order.
pub(crate) fn fresh<'a, T, K: std::hash::Hash + Eq>(
    rows: &'a [(Pos, T)],
    stored: &HashMap<(String, i32), i64>,
    key: impl Fn(&'a T) -> K,
) -> (Vec<&'a T>, usize) {
    // Fx: the keys are a few short strings and numbers, hashed once per row of every batch.
    let mut latest: rustc_hash::FxHashMap<K, (&'a Pos, &'a T)> =
        rustc_hash::FxHashMap::with_capacity_and_hasher(rows.len(), Default::default());
    let mut skipped = 0;
    for (pos, row) in rows {
        let done = stored
            .iter()
            .any(|((t, p), next)| *p == pos.partition && *t == pos.topic && pos.offset < *next);
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
pub(crate) fn candle_key(c: &Candle) -> (&str, &str, &str, i64) {
    (&c.exchange, &c.symbol, &c.interval, c.open_ms)
}

/// The natural key of a forecast row.
pub(crate) fn forecast_key(f: &Forecast) -> (&str, &str, &str, &str, u32, i64) {
    (
        &f.exchange,
        &f.symbol,
        &f.interval,
        &f.model,
        f.horizon,
        f.base_ms,
    )
}

/// Upserts one series checkpoint (both dialects).
pub(crate) const SAVE_SERIES_SQL: &str = "insert into series_state \
    (consumer, exchange, symbol, interval, last_open_ms, state) values ($1, $2, $3, $4, $5, $6) \
    on conflict (consumer, exchange, symbol, interval) do update set \
    last_open_ms = excluded.last_open_ms, state = excluded.state, updated_at = excluded.updated_at";

/// Reads one series checkpoint (both dialects).
pub(crate) const LOAD_SERIES_SQL: &str = "select exchange, symbol, interval, last_open_ms, state \
    from series_state where consumer = $1 and exchange = $2 and symbol = $3 and interval = $4";

/// Upserts one model's shared parameters (both dialects).
pub(crate) const SAVE_MODEL_SQL: &str = "insert into model_state (consumer, model, state) \
    values ($1, $2, $3) on conflict (consumer, model) do update set \
    state = excluded.state, updated_at = excluded.updated_at";

/// Reads every model's shared parameters (both dialects).
pub(crate) const LOAD_MODELS_SQL: &str =
    "select model, state from model_state where consumer = $1 order by model";

/// Upserts one accuracy row (both dialects).
pub(crate) const SAVE_ACCURACY_SQL: &str = "insert into accuracy (exchange, symbol, interval, \
    model, horizon, ts_ms, n, mae, rmse, mase, rel_mae, coverage80, coverage95, winkler95, \
    directional_accuracy, crps, crps_rel, pit_max_err, touch_brier, touch_brier_rel, touch_ece) \
    values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, \
    $20, $21) \
    on conflict (exchange, symbol, interval, model, horizon) do update set ts_ms = excluded.ts_ms, \
    n = excluded.n, mae = excluded.mae, rmse = excluded.rmse, mase = excluded.mase, \
    rel_mae = excluded.rel_mae, coverage80 = excluded.coverage80, \
    coverage95 = excluded.coverage95, winkler95 = excluded.winkler95, \
    directional_accuracy = excluded.directional_accuracy, crps = excluded.crps, \
    crps_rel = excluded.crps_rel, pit_max_err = excluded.pit_max_err, \
    touch_brier = excluded.touch_brier, touch_brier_rel = excluded.touch_brier_rel, \
    touch_ece = excluded.touch_ece";

/// Reads accuracy rows, in [`rows::accuracy_from`]'s column order; filters are optional (both
/// dialects; `$6` is the limit).
pub(crate) const ACCURACY_SQL: &str = "select exchange, symbol, interval, model, horizon, ts_ms, \
    n, mae, rmse, mase, rel_mae, coverage80, coverage95, winkler95, directional_accuracy, \
    crps, crps_rel, pit_max_err, touch_brier, touch_brier_rel, touch_ece \
    from accuracy where ($1 is null or exchange = $1) and ($2 is null or symbol = $2) \
    and ($3 is null or interval = $3) and ($4 is null or model = $4) \
    and ($5 is null or horizon = $5) \
    order by exchange, symbol, interval, model, horizon limit $6";

/// Binds and runs the checkpoint statements in a transaction; one body for both dialects.
macro_rules! save_checkpoint_in {
    ($tx:expr, $consumer:expr, $cp:expr) => {{
        for s in &$cp.series {
            sqlx::query($crate::store::SAVE_SERIES_SQL)
                .bind($consumer)
                .bind(&s.exchange)
                .bind(&s.symbol)
                .bind(&s.interval)
                .bind(s.last_open_ms)
                .bind(&s.state)
                .execute(&mut *$tx)
                .await?;
        }
        for (model, state) in &$cp.models {
            sqlx::query($crate::store::SAVE_MODEL_SQL)
                .bind($consumer)
                .bind(model)
                .bind(state)
                .execute(&mut *$tx)
                .await?;
        }
        for a in &$cp.accuracy {
            sqlx::query($crate::store::SAVE_ACCURACY_SQL)
                .bind(&a.exchange)
                .bind(&a.symbol)
                .bind(&a.interval)
                .bind(&a.model)
                .bind(a.horizon)
                .bind(a.ts_ms)
                .bind(a.n)
                .bind(a.mae)
                .bind(a.rmse)
                .bind(a.mase)
                .bind(a.rel_mae)
                .bind(a.coverage80)
                .bind(a.coverage95)
                .bind(a.winkler95)
                .bind(a.directional_accuracy)
                .bind(a.crps)
                .bind(a.crps_rel)
                .bind(a.pit_max_err)
                .bind(a.touch_brier)
                .bind(a.touch_brier_rel)
                .bind(a.touch_ece)
                .execute(&mut *$tx)
                .await?;
        }
    }};
}
pub(crate) use save_checkpoint_in;

/// Bodies of the checkpoint and accuracy methods; one text for both dialects (the trait's
/// `async_trait` signatures are written out in each store).
macro_rules! load_series_body {
    ($pool:expr, $consumer:expr, $keys:expr) => {{
        let mut out = Vec::new();
        for (exchange, symbol, interval) in $keys {
            let row: Option<(String, String, String, i64, Vec<u8>)> =
                sqlx::query_as($crate::store::LOAD_SERIES_SQL)
                    .bind($consumer)
                    .bind(exchange)
                    .bind(symbol)
                    .bind(interval)
                    .fetch_optional($pool)
                    .await?;
            if let Some((exchange, symbol, interval, last_open_ms, state)) = row {
                out.push($crate::store::SeriesCheckpoint {
                    exchange,
                    symbol,
                    interval,
                    last_open_ms,
                    state,
                });
            }
        }
        Ok(out)
    }};
}
pub(crate) use load_series_body;

macro_rules! load_models_body {
    ($pool:expr, $consumer:expr) => {{
        Ok(sqlx::query_as($crate::store::LOAD_MODELS_SQL)
            .bind($consumer)
            .fetch_all($pool)
            .await?)
    }};
}
pub(crate) use load_models_body;

macro_rules! accuracy_body {
    ($pool:expr, $q:expr) => {{
        let q = $q;
        // More columns than sqlx decodes into a tuple: read by index.
        let rows = sqlx::query($crate::store::ACCURACY_SQL)
            .bind(&q.exchange)
            .bind(&q.symbol)
            .bind(&q.interval)
            .bind(&q.model)
            .bind(q.horizon)
            .bind($crate::store::clamp_limit(q.limit))
            .fetch_all($pool)
            .await?;
        rows.iter().map(super::rows::accuracy_from).collect()
    }};
}
pub(crate) use accuracy_body;

macro_rules! save_checkpoint_body {
    ($pool:expr, $consumer:expr, $cp:expr) => {{
        let mut tx = $crate::store::WriteTx::begin_write(&$pool).await?;
        $crate::store::save_checkpoint_in!(tx, $consumer, $cp);
        tx.commit().await?;
        Ok(())
    }};
}
pub(crate) use save_checkpoint_body;

/// Of several forecasts for one series, model and horizon, the one with the newest base bar:
/// what the SQLite sink writes to `forecasts_latest` (one row per key, so a batch never updates
/// a row twice in one statement).
pub(crate) fn newest_per_series<'a>(rows: &[&'a Forecast]) -> Vec<&'a Forecast> {
    let mut newest: BTreeMap<(&str, &str, &str, &str, u32), &'a Forecast> = BTreeMap::new();
    for f in rows {
        let key = (
            f.exchange.as_ref(),
            f.symbol.as_ref(),
            f.interval.as_ref(),
            f.model.as_ref(),
            f.horizon,
        );
        match newest.get(&key) {
            Some(old) if old.base_ms > f.base_ms => {}
            _ => {
                newest.insert(key, f);
            }
        }
    }
    newest.into_values().collect()
}

/// Upsert clause of SQLite's `forecasts_latest`: a row moves only forward in time, so a
/// redelivered old forecast never replaces a newer one (Postgres's `forecast_latest_rows` has
/// the same rule, on its ids). The newer row brings every column, version 2's included.
pub(crate) const UPSERT_LATEST: &str = "on conflict (exchange, symbol, interval, model, horizon)
    do update set base_ms = excluded.base_ms, target_ms = excluded.target_ms,
    last = excluded.last, point = excluded.point, lo80 = excluded.lo80, hi80 = excluded.hi80,
    lo95 = excluded.lo95, hi95 = excluded.hi95, q025 = excluded.q025, q05 = excluded.q05,
    q10 = excluded.q10, q25 = excluded.q25, q50 = excluded.q50, q75 = excluded.q75,
    q90 = excluded.q90, q95 = excluded.q95, q975 = excluded.q975,
    touch_alpha = excluded.touch_alpha, touch_beta = excluded.touch_beta,
    model_version = excluded.model_version, degraded = excluded.degraded
    where excluded.base_ms >= forecasts_latest.base_ms";

/// [`Store::latest_forecasts`], Postgres (typed nulls). The view's `quantiles` array is read
/// element by element, so both dialects give [`rows::forecast_from`] the same columns.
pub(crate) const LATEST_SQL_PG: &str = "select exchange, symbol, interval, model, horizon, \
    base_ms, target_ms, last, point, lo80, hi80, lo95, hi95, quantiles[1], quantiles[2], \
    quantiles[3], quantiles[4], quantiles[5], quantiles[6], quantiles[7], quantiles[8], \
    quantiles[9], touch_alpha, touch_beta, model_version, degraded from forecasts_latest \
    where ($1::text is null or exchange = $1) and ($2::text is null or symbol = $2) \
    and ($3::text is null or interval = $3) and ($4::text is null or model = $4) \
    and ($5::int is null or horizon = $5) and ($6::bigint is null or target_ms >= $6) \
    and ($7::bigint is null or target_ms < $7) \
    order by exchange, symbol, interval, model, horizon limit $8";

/// [`Store::latest_forecasts`], SQLite.
pub(crate) const LATEST_SQL_SQLITE: &str = "select exchange, symbol, interval, model, horizon, \
    base_ms, target_ms, last, point, lo80, hi80, lo95, hi95, q025, q05, q10, q25, q50, q75, \
    q90, q95, q975, touch_alpha, touch_beta, model_version, degraded from forecasts_latest \
    where ($1 is null or exchange = $1) and ($2 is null or symbol = $2) \
    and ($3 is null or interval = $3) and ($4 is null or model = $4) \
    and ($5 is null or horizon = $5) and ($6 is null or target_ms >= $6) \
    and ($7 is null or target_ms < $7) \
    order by exchange, symbol, interval, model, horizon limit $8";

macro_rules! latest_body {
    ($pool:expr, $q:expr, $sql:expr) => {{
        let q = $q;
        let rows = sqlx::query($sql)
            .bind(&q.exchange)
            .bind(&q.symbol)
            .bind(&q.interval)
            .bind(&q.model)
            .bind(q.horizon)
            .bind(q.from_ms)
            .bind(q.to_ms)
            .bind($crate::store::clamp_limit(q.limit))
            .fetch_all($pool)
            .await?;
        rows.iter().map(super::rows::forecast_from).collect()
    }};
}
pub(crate) use latest_body;

/// [`Store::series`] (both dialects).
pub(crate) const SERIES_SQL: &str = "select exchange, symbol, interval, count(*), min(open_ms), \
    max(open_ms) from candles group by exchange, symbol, interval \
    order by exchange, symbol, interval";

macro_rules! series_body {
    ($pool:expr) => {{
        let rows: Vec<(String, String, String, i64, i64, i64)> =
            sqlx::query_as($crate::store::SERIES_SQL)
                .fetch_all($pool)
                .await?;
        Ok(rows
            .into_iter()
            .map(
                |(exchange, symbol, interval, candles, first_open_ms, last_open_ms)| {
                    $crate::store::SeriesInfo {
                        exchange,
                        symbol,
                        interval,
                        candles,
                        first_open_ms,
                        last_open_ms,
                    }
                },
            )
            .collect())
    }};
}
pub(crate) use series_body;

/// Opens a write transaction. On SQLite it is `BEGIN IMMEDIATE`, which takes the write lock at
/// once: a deferred transaction that reads first and writes later fails with `database is
/// locked` (no busy wait) when another connection wrote in between, which the demo's concurrent
/// writers (sink, forecast and alert checkpoints) hit.
#[async_trait]
pub(crate) trait WriteTx {
    type Db: sqlx::Database;
    async fn begin_write(&self) -> Result<sqlx::Transaction<'static, Self::Db>>;
}

#[async_trait]
impl WriteTx for sqlx::PgPool {
    type Db = sqlx::Postgres;
    async fn begin_write(&self) -> Result<sqlx::Transaction<'static, sqlx::Postgres>> {
        Ok(self.begin().await?)
    }
}

#[async_trait]
impl WriteTx for sqlx::SqlitePool {
    type Db = sqlx::Sqlite;
    async fn begin_write(&self) -> Result<sqlx::Transaction<'static, sqlx::Sqlite>> {
        Ok(self.begin_with("BEGIN IMMEDIATE").await?)
    }
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
