//! The SQLite store for the embedded mode (`tickcast demo`): [`SqliteStore`], one file, WAL
//! journal. The sink writes one upsert per row; retention deletes in batches.

use std::collections::BTreeMap;
use std::str::FromStr as _;
use std::time::Duration;

use anyhow::{Context as _, Result};
use async_trait::async_trait;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteSynchronous, SqliteTransactionManager,
};
use sqlx::{Connection as _, Sqlite, Transaction, TransactionManager as _};
use tickcast_core::domain::{Candle, Forecast};

use super::dialect::{Dialect, SqlStore};
use super::retention::{self, Retention, RetentionReport};

/// The SQLite store.
pub type SqliteStore = SqlStore<Sqlite>;

impl SqlStore<Sqlite> {
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
        Ok(Self::new(pool))
    }
}

#[async_trait]
impl Dialect for Sqlite {
    const BACKEND: &'static str = "sqlite";
    const BEGIN_WRITE: &'static str = "BEGIN IMMEDIATE";
    /// The write transaction already holds the database's one write lock.
    const STORED_OFFSETS: &'static str =
        "select topic, partition, next_offset from consumer_offsets where consumer = $1";
    const ADVANCE_OFFSET: &'static str = "insert into consumer_offsets \
        (consumer, topic, partition, next_offset) values ($1, $2, $3, $4) \
        on conflict (consumer, topic, partition) do update set \
        next_offset = max(consumer_offsets.next_offset, excluded.next_offset), \
        updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now')";
    const CANDLES: &'static str = "select * from (
           select exchange, symbol, interval, open_ms, close_ms, open, high, low, close, volume,
                  trades
           from candles
           where ($1 is null or exchange = $1) and ($2 is null or symbol = $2)
             and ($3 is null or interval = $3) and ($4 is null or open_ms >= $4)
             and ($5 is null or open_ms < $5)
           order by open_ms desc, exchange, symbol, interval limit $6)
         order by open_ms, exchange, symbol, interval";
    const FORECASTS: &'static str = "select * from (
           select exchange, symbol, interval, model, horizon, base_ms, target_ms, last, point,
                  lo80, hi80, lo95, hi95, q025, q05, q10, q25, q50, q75, q90, q95, q975,
                  touch_alpha, touch_beta, model_version, degraded
           from forecasts
           where ($1 is null or exchange = $1) and ($2 is null or symbol = $2)
             and ($3 is null or interval = $3) and ($4 is null or model = $4)
             and ($5 is null or horizon = $5) and ($6 is null or target_ms >= $6)
             and ($7 is null or target_ms < $7)
           order by target_ms desc, exchange, symbol, interval, model, horizon limit $8)
         order by target_ms, exchange, symbol, interval, model, horizon";
    const LATEST_FORECASTS: &'static str = "select exchange, symbol, interval, model, horizon, \
        base_ms, target_ms, last, point, lo80, hi80, lo95, hi95, q025, q05, q10, q25, q50, q75, \
        q90, q95, q975, touch_alpha, touch_beta, model_version, degraded from forecasts_latest \
        where ($1 is null or exchange = $1) and ($2 is null or symbol = $2) \
        and ($3 is null or interval = $3) and ($4 is null or model = $4) \
        and ($5 is null or horizon = $5) and ($6 is null or target_ms >= $6) \
        and ($7 is null or target_ms < $7) \
        order by exchange, symbol, interval, model, horizon limit $8";
    /// One writer at a time: no row locks to skip.
    const CLAIM_DELIVERIES: &'static str = "update alert_deliveries \
        set next_ms = $3, updated_ms = $2 \
        where (endpoint, event_id) in (select endpoint, event_id from alert_deliveries \
        where endpoint = $1 and status = 'pending' and next_ms <= $2 \
        order by ts_ms, event_id limit $4) \
        returning event_id, body, attempts, ts_ms";

    type SinkState = ();

    async fn write_rows(
        _store: &SqliteStore,
        tx: &mut Transaction<'static, Sqlite>,
        candles: &[&Candle],
        forecasts: &[&Forecast],
    ) -> Result<()> {
        for c in candles {
            upsert_candle(tx, c).await?;
        }
        for f in forecasts {
            upsert_forecast(tx, "forecasts", UPSERT_FORECASTS, f).await?;
        }
        for f in newest_per_series(forecasts) {
            upsert_forecast(tx, "forecasts_latest", UPSERT_LATEST, f).await?;
        }
        Ok(())
    }

    async fn apply_retention(
        store: &SqliteStore,
        policy: &Retention,
        clock_ms: i64,
    ) -> Result<RetentionReport> {
        let mut deleted = 0;
        if let Some(cut) = retention::cutoff(clock_ms, policy.forecasts_days) {
            deleted += delete_in_batches(
                &store.pool,
                "delete from forecasts where (exchange, symbol, interval, model, horizon, base_ms) \
                 in (select exchange, symbol, interval, model, horizon, base_ms from forecasts \
                 where base_ms < $1 limit $2)",
                cut,
                None,
            )
            .await?;
        }
        let intervals: Vec<(String,)> = sqlx::query_as("select distinct interval from candles")
            .fetch_all(&store.pool)
            .await?;
        for (interval,) in intervals {
            if let Some(cut) = retention::cutoff(clock_ms, policy.candle_days(&interval)) {
                deleted += delete_in_batches(
                    &store.pool,
                    "delete from candles where (exchange, symbol, interval, open_ms) in \
                     (select exchange, symbol, interval, open_ms from candles \
                     where interval = $3 and open_ms < $1 limit $2)",
                    cut,
                    Some(&interval),
                )
                .await?;
            }
        }
        Ok(RetentionReport {
            dropped: Vec::new(),
            deleted,
        })
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

/// Of several forecasts for one series, model and horizon, the one with the newest base bar:
/// what the SQLite sink writes to `forecasts_latest` (one row per key, so a batch never updates
/// a row twice in one statement).
fn newest_per_series<'a>(rows: &[&'a Forecast]) -> Vec<&'a Forecast> {
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
const UPSERT_LATEST: &str = "on conflict (exchange, symbol, interval, model, horizon)
    do update set base_ms = excluded.base_ms, target_ms = excluded.target_ms,
    last = excluded.last, point = excluded.point, lo80 = excluded.lo80, hi80 = excluded.hi80,
    lo95 = excluded.lo95, hi95 = excluded.hi95, q025 = excluded.q025, q05 = excluded.q05,
    q10 = excluded.q10, q25 = excluded.q25, q50 = excluded.q50, q75 = excluded.q75,
    q90 = excluded.q90, q95 = excluded.q95, q975 = excluded.q975,
    touch_alpha = excluded.touch_alpha, touch_beta = excluded.touch_beta,
    model_version = excluded.model_version, degraded = excluded.degraded
    where excluded.base_ms >= forecasts_latest.base_ms";
