//! The SQLite store for the embedded mode (`tickcast demo`): one file, WAL journal.

use std::collections::{BTreeMap, HashMap};
use std::str::FromStr as _;
use std::time::Duration;

use anyhow::{Context as _, Result};
use async_trait::async_trait;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteSynchronous, SqliteTransactionManager,
};
use sqlx::{Connection as _, Sqlite, Transaction, TransactionManager as _};
use tickcast_pipeline::domain::{Candle, Forecast};

use super::rows::{candle_from, forecast_from};
use super::{
    AccuracyQuery, AccuracyRow, CandleQuery, Checkpoint, ForecastQuery, SeriesCheckpoint,
    SeriesInfo, SinkBatch, Store, WriteSummary, candle_key, forecast_key, fresh,
};
use crate::alerts::rule::Rule;
use crate::store::{
    AlertCheckpoint, AlertEventQuery, AlertRuleRow, AlertSeriesState, DeliveryJob, DeliveryOutcome,
    DeliveryQuery, DeliveryRow,
};
use tickcast_pipeline::domain::Alert as AlertEvent;

/// SQLite-backed [`Store`].
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
}

impl SqliteStore {
    /// Opens (creating if missing) and applies `migrations/sqlite`. An in-memory URL gets a
    /// single connection so that every query sees the same database.
    pub async fn connect(url: &str) -> Result<Self> {
        let opts = SqliteConnectOptions::from_str(url)
            .with_context(|| format!("parsing SQLite URL {url}"))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(10));
        let max = if url.contains(":memory:") || url.contains("mode=memory") {
            1
        } else {
            4
        };
        let pool = SqlitePoolOptions::new()
            .max_connections(max)
            .before_acquire(|conn, _| Box::pin(async move { heal(conn).await.map(|()| true) }))
            .connect_with(opts)
            .await
            .with_context(|| format!("opening SQLite database {url}"))?;
        sqlx::migrate!("../migrations/sqlite")
            .run(&pool)
            .await
            .context("applying SQLite migrations")?;
        Ok(Self { pool })
    }

    /// The connection pool, for what the [`Store`] methods do not cover.
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }
}

/// Puts a connection whose last transaction SQLite ended by itself back in step with sqlx.
/// On a full disk (SQLITE_FULL) or an I/O error SQLite rolls the transaction back itself; the
/// rollback sqlx then sends fails ("no transaction is active") and its transaction count stays
/// at one, so every later `BEGIN` on that connection would fail ("attempted to call begin_with
/// at non-zero transaction depth") long after the disk has room again.
async fn heal(conn: &mut SqliteConnection) -> Result<(), sqlx::Error> {
    if !conn.is_in_transaction() {
        return Ok(());
    }
    // The rollback of a dropped transaction is queued: let it run first.
    conn.ping().await?;
    for _ in 0..4 {
        if !conn.is_in_transaction() {
            return Ok(());
        }
        if SqliteTransactionManager::rollback(conn).await.is_err() {
            // Open a transaction for sqlx's ROLLBACK to end.
            sqlx::Executor::execute(&mut *conn, "BEGIN").await?;
            SqliteTransactionManager::rollback(conn).await?;
        }
    }
    Err(sqlx::Error::Protocol(
        "the connection stays inside a transaction".into(),
    ))
}

/// Rows deleted per statement by retention: short write locks, so the sink and the API go on.
const DELETE_BATCH: i64 = 5_000;

/// Runs a `delete … limit $2` (cutoff `$1`, `$3` the interval if any) until nothing is left.
async fn delete_in_batches(
    pool: &SqlitePool,
    sql: &str,
    cut: i64,
    interval: Option<&str>,
) -> Result<u64> {
    let mut total = 0;
    loop {
        let mut q = sqlx::query(sql).bind(cut).bind(DELETE_BATCH);
        if let Some(iv) = interval {
            q = q.bind(iv);
        }
        let n = q.execute(pool).await?.rows_affected();
        total += n;
        if n < DELETE_BATCH as u64 {
            return Ok(total);
        }
    }
}

async fn stored_offsets(
    tx: &mut Transaction<'_, Sqlite>,
    consumer: &str,
) -> Result<HashMap<(String, i32), i64>> {
    let rows = sqlx::query_as(super::OFFSETS_SQL)
        .bind(consumer)
        .fetch_all(&mut **tx)
        .await?;
    Ok(super::offset_map(rows))
}

async fn upsert_candle(tx: &mut Transaction<'_, Sqlite>, c: &Candle) -> Result<()> {
    sqlx::query(
        "insert into candles (exchange, symbol, interval, open_ms, close_ms, open, high, low, close, volume, trades)
         values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
         on conflict (exchange, symbol, interval, open_ms) do update set
           close_ms = excluded.close_ms, open = excluded.open, high = excluded.high, low = excluded.low,
           close = excluded.close, volume = excluded.volume, trades = excluded.trades",
    )
    .bind(&c.exchange)
    .bind(&c.symbol)
    .bind(&c.interval)
    .bind(c.open_ms)
    .bind(c.close_ms)
    .bind(c.open.to_string())
    .bind(c.high.to_string())
    .bind(c.low.to_string())
    .bind(c.close.to_string())
    .bind(c.volume.to_string())
    .bind(c.trades as i64)
    .execute(&mut **tx)
    .await
    .context("upserting candle")?;
    Ok(())
}

/// Every forecast, keyed by its base bar: a newer delivery takes every other column, version
/// 2's included (null from a version 1 forecast).
const UPSERT_FORECASTS: &str = "on conflict (exchange, symbol, interval, model, horizon, base_ms)
    do update set target_ms = excluded.target_ms, last = excluded.last, point = excluded.point,
    lo80 = excluded.lo80, hi80 = excluded.hi80, lo95 = excluded.lo95, hi95 = excluded.hi95,
    q025 = excluded.q025, q05 = excluded.q05, q10 = excluded.q10, q25 = excluded.q25,
    q50 = excluded.q50, q75 = excluded.q75, q90 = excluded.q90, q95 = excluded.q95,
    q975 = excluded.q975, touch_alpha = excluded.touch_alpha, touch_beta = excluded.touch_beta,
    model_version = excluded.model_version, degraded = excluded.degraded";

async fn upsert_forecast(
    tx: &mut Transaction<'_, Sqlite>,
    table: &str,
    conflict: &str,
    f: &Forecast,
) -> Result<()> {
    let sql = format!(
        "insert into {table} (exchange, symbol, interval, model, horizon, base_ms, target_ms,
                              last, point, lo80, hi80, lo95, hi95, q025, q05, q10, q25, q50,
                              q75, q90, q95, q975, touch_alpha, touch_beta, model_version,
                              degraded)
         values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17,
                 $18, $19, $20, $21, $22, $23, $24, $25, $26) {conflict}"
    );
    let mut q = sqlx::query(&sql)
        .bind(&*f.exchange)
        .bind(&*f.symbol)
        .bind(&*f.interval)
        .bind(&*f.model)
        .bind(f.horizon as i32)
        .bind(f.base_ms)
        .bind(f.target_ms)
        .bind(f.last)
        .bind(f.point)
        .bind(f.lo80)
        .bind(f.hi80)
        .bind(f.lo95)
        .bind(f.hi95);
    for i in 0..9 {
        q = q.bind(f.quantiles.map(|qs| qs[i]));
    }
    q.bind(f.touch.map(|t| t.alpha))
        .bind(f.touch.map(|t| t.beta))
        .bind(f.model_version.as_deref())
        .bind(f.degraded)
        .execute(&mut **tx)
        .await
        .with_context(|| format!("upserting {table}"))?;
    Ok(())
}

// The alert methods' bodies (shared with the other dialect).
impl SqliteStore {
    super::alerts::alert_methods!(super::alerts::CLAIM_SQL_SQLITE);
}

#[async_trait]
impl Store for SqliteStore {
    fn backend(&self) -> &'static str {
        "sqlite"
    }

    async fn alert_rules(&self) -> Result<Vec<AlertRuleRow>> {
        self.alert_rules_in().await
    }

    async fn alert_rule(&self, id: &str) -> Result<Option<AlertRuleRow>> {
        self.alert_rule_in(id).await
    }

    async fn put_alert_rule(&self, row: &AlertRuleRow) -> Result<bool> {
        self.put_alert_rule_in(row).await
    }

    async fn delete_alert_rule(&self, id: &str) -> Result<bool> {
        self.delete_alert_rule_in(id).await
    }

    async fn replace_file_rules(&self, rules: &[Rule], now_ms: i64) -> Result<()> {
        self.replace_file_rules_in(rules, now_ms).await
    }

    async fn alert_events(&self, q: &AlertEventQuery) -> Result<Vec<AlertEvent>> {
        self.alert_events_in(q).await
    }

    async fn save_alert_checkpoint(&self, consumer: &str, cp: &AlertCheckpoint) -> Result<()> {
        self.save_alert_checkpoint_in(consumer, cp).await
    }

    async fn load_alert_states(
        &self,
        consumer: &str,
        keys: &[(String, String, String)],
    ) -> Result<Vec<AlertSeriesState>> {
        self.load_alert_states_in(consumer, keys).await
    }

    async fn claim_deliveries(
        &self,
        endpoint: &str,
        now_ms: i64,
        lease_ms: i64,
        limit: i64,
    ) -> Result<Vec<DeliveryJob>> {
        self.claim_deliveries_in(endpoint, now_ms, lease_ms, limit)
            .await
    }

    async fn finish_delivery(
        &self,
        endpoint: &str,
        event_id: &str,
        outcome: &DeliveryOutcome,
        now_ms: i64,
    ) -> Result<()> {
        self.finish_delivery_in(endpoint, event_id, outcome, now_ms)
            .await
    }

    async fn next_delivery_ms(&self, endpoint: &str) -> Result<Option<i64>> {
        self.next_delivery_ms_in(endpoint).await
    }

    async fn alert_deliveries(&self, q: &DeliveryQuery) -> Result<Vec<DeliveryRow>> {
        self.alert_deliveries_in(q).await
    }

    async fn save_checkpoint(&self, consumer: &str, cp: &Checkpoint) -> Result<()> {
        super::save_checkpoint_body!(self.pool, consumer, cp)
    }

    async fn load_series_states(
        &self,
        consumer: &str,
        keys: &[(String, String, String)],
    ) -> Result<Vec<SeriesCheckpoint>> {
        super::load_series_body!(&self.pool, consumer, keys)
    }

    async fn load_model_states(&self, consumer: &str) -> Result<Vec<(String, Vec<u8>)>> {
        super::load_models_body!(&self.pool, consumer)
    }

    async fn accuracy(&self, q: &AccuracyQuery) -> Result<Vec<AccuracyRow>> {
        super::accuracy_body!(&self.pool, q)
    }

    async fn row_counts(&self) -> Result<(i64, i64)> {
        Ok(sqlx::query_as(super::ROW_COUNTS)
            .fetch_one(&self.pool)
            .await?)
    }

    async fn ping(&self) -> Result<()> {
        sqlx::query("select 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn write_batch(&self, consumer: &str, batch: &SinkBatch) -> Result<WriteSummary> {
        let mut tx = super::WriteTx::begin_write(&self.pool).await?;
        let stored = stored_offsets(&mut tx, consumer).await?;
        let (candles, skipped_c) = fresh(&batch.candles, &stored, candle_key);
        let (forecasts, skipped_f) = fresh(&batch.forecasts, &stored, forecast_key);
        for c in &candles {
            upsert_candle(&mut tx, c).await?;
        }
        for f in &forecasts {
            upsert_forecast(&mut tx, "forecasts", UPSERT_FORECASTS, f).await?;
        }
        for f in super::newest_per_series(&forecasts) {
            upsert_forecast(&mut tx, "forecasts_latest", super::UPSERT_LATEST, f).await?;
        }
        for ((topic, partition), next) in &batch.offsets {
            sqlx::query(
                "insert into consumer_offsets (consumer, topic, partition, next_offset) values ($1, $2, $3, $4)
                 on conflict (consumer, topic, partition) do update set
                   next_offset = max(consumer_offsets.next_offset, excluded.next_offset),
                   updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now')",
            )
            .bind(consumer)
            .bind(topic)
            .bind(partition)
            .bind(next)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await.context("committing sink batch")?;
        Ok(WriteSummary {
            candles: candles.len(),
            forecasts: forecasts.len(),
            skipped: skipped_c + skipped_f,
        })
    }

    async fn apply_retention(
        &self,
        policy: &super::retention::Retention,
        clock_ms: i64,
    ) -> Result<super::RetentionReport> {
        let mut deleted = 0;
        if let Some(cut) = super::retention::cutoff(clock_ms, policy.forecasts_days) {
            deleted += delete_in_batches(
                &self.pool,
                "delete from forecasts where (exchange, symbol, interval, model, horizon, base_ms) \
                 in (select exchange, symbol, interval, model, horizon, base_ms from forecasts \
                 where base_ms < $1 limit $2)",
                cut,
                None,
            )
            .await?;
        }
        let intervals: Vec<(String,)> = sqlx::query_as("select distinct interval from candles")
            .fetch_all(&self.pool)
            .await?;
        for (interval,) in intervals {
            if let Some(cut) = super::retention::cutoff(clock_ms, policy.candle_days(&interval)) {
                deleted += delete_in_batches(
                    &self.pool,
                    "delete from candles where (exchange, symbol, interval, open_ms) in \
                     (select exchange, symbol, interval, open_ms from candles \
                     where interval = $3 and open_ms < $1 limit $2)",
                    cut,
                    Some(&interval),
                )
                .await?;
            }
        }
        Ok(super::RetentionReport {
            dropped: Vec::new(),
            deleted,
        })
    }

    async fn offsets(&self, consumer: &str) -> Result<BTreeMap<(String, i32), i64>> {
        let rows = sqlx::query_as(super::OFFSETS_SQL)
            .bind(consumer)
            .fetch_all(&self.pool)
            .await?;
        Ok(super::offset_map(rows))
    }

    async fn forget_offset(&self, consumer: &str, topic: &str, partition: i32) -> Result<()> {
        sqlx::query(
            "delete from consumer_offsets where consumer = $1 and topic = $2 and partition = $3",
        )
        .bind(consumer)
        .bind(topic)
        .bind(partition)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn candles(&self, q: &CandleQuery) -> Result<Vec<Candle>> {
        let rows = sqlx::query(
            "select * from (
               select exchange, symbol, interval, open_ms, close_ms, open, high, low, close, volume, trades
               from candles
               where ($1 is null or exchange = $1) and ($2 is null or symbol = $2)
                 and ($3 is null or interval = $3) and ($4 is null or open_ms >= $4)
                 and ($5 is null or open_ms < $5)
               order by open_ms desc, exchange, symbol, interval limit $6)
             order by open_ms, exchange, symbol, interval",
        )
        .bind(&q.exchange)
        .bind(&q.symbol)
        .bind(&q.interval)
        .bind(q.from_ms)
        .bind(q.to_ms)
        .bind(super::clamp_limit(q.limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(candle_from).collect()
    }

    async fn latest_forecasts(&self, q: &ForecastQuery) -> Result<Vec<Forecast>> {
        super::latest_body!(&self.pool, q, super::LATEST_SQL_SQLITE)
    }

    async fn series(&self) -> Result<Vec<SeriesInfo>> {
        super::series_body!(&self.pool)
    }

    async fn forecasts(&self, q: &ForecastQuery) -> Result<Vec<Forecast>> {
        let rows = sqlx::query(
            "select * from (
               select exchange, symbol, interval, model, horizon, base_ms, target_ms, last, point,
                      lo80, hi80, lo95, hi95, q025, q05, q10, q25, q50, q75, q90, q95, q975,
                      touch_alpha, touch_beta, model_version, degraded
               from forecasts
               where ($1 is null or exchange = $1) and ($2 is null or symbol = $2)
                 and ($3 is null or interval = $3) and ($4 is null or model = $4)
                 and ($5 is null or horizon = $5) and ($6 is null or target_ms >= $6)
                 and ($7 is null or target_ms < $7)
               order by target_ms desc, exchange, symbol, interval, model, horizon limit $8)
             order by target_ms, exchange, symbol, interval, model, horizon",
        )
        .bind(&q.exchange)
        .bind(&q.symbol)
        .bind(&q.interval)
        .bind(&q.model)
        .bind(q.horizon)
        .bind(q.from_ms)
        .bind(q.to_ms)
        .bind(super::clamp_limit(q.limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(forecast_from).collect()
    }
}
