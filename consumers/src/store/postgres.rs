//! The Postgres store. The sink's forecasts go in by binary `COPY` into a staging table;
//! candles by `unnest` (one statement per table per batch).

use std::collections::{BTreeMap, HashMap};

use anyhow::{Context as _, Result};
use async_trait::async_trait;
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::{Postgres, Transaction};
use tickcast_pipeline::domain::{Candle, Forecast};

use super::forecast_ids::RowIds;
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

/// Postgres-backed [`Store`].
#[derive(Debug, Clone)]
pub struct PgStore {
    pool: PgPool,
    partitions: super::partitions::Partitions,
    ids: super::forecast_ids::ForecastIds,
}

impl PgStore {
    /// Connects and applies `migrations/postgres`.
    pub async fn connect(url: &str) -> Result<Self> {
        let pool = PgPoolOptions::new()
            .max_connections(8)
            .acquire_timeout(super::ACQUIRE_TIMEOUT)
            .connect(url)
            .await
            .with_context(|| format!("connecting to Postgres at {}", redact(url)))?;
        sqlx::migrate!("../migrations/postgres")
            .run(&pool)
            .await
            .context("applying Postgres migrations")?;
        let partitions = super::partitions::Partitions::default();
        super::partitions::adopt_unpartitioned(&pool, &partitions)
            .await
            .context("moving existing rows into time partitions")?;
        Ok(Self {
            pool,
            partitions,
            ids: super::forecast_ids::ForecastIds::default(),
        })
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }
}

/// Creates an empty database named `name` on the server `url` points at and returns its URL
/// (`url` with the database replaced, its query kept): for tests and benchmarks.
pub async fn create_database_beside(url: &str, name: &str) -> Result<String> {
    use sqlx::Connection as _;
    let mut conn = sqlx::PgConnection::connect(url)
        .await
        .with_context(|| format!("connecting to Postgres at {}", redact(url)))?;
    sqlx::query(&format!("create database \"{name}\""))
        .execute(&mut conn)
        .await
        .with_context(|| format!("creating database {name}"))?;
    // Keep the query (`?sslmode=…&sslrootcert=/path`): only the path names the database.
    let (path, query) = url.split_once('?').map_or((url, ""), |(p, q)| (p, q));
    let base = path.rsplit_once('/').map_or(path, |(b, _)| b);
    Ok(if query.is_empty() {
        format!("{base}/{name}")
    } else {
        format!("{base}/{name}?{query}")
    })
}

/// The URL without its secrets, for messages: the password of the user part
/// (`postgres://u:***@h/db`) and the value of every query parameter that names a secret
/// (`password`, `sslpassword`, anything with `pass`, `secret` or `token` in its name).
pub fn redact(url: &str) -> String {
    let (head, query) = match url.split_once('?') {
        Some((h, q)) => (h, Some(q)),
        None => (url, None),
    };
    let mut out = match (head.find("://"), head.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &head[s + 3..at];
            match creds.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &head[..s + 3], &head[at..]),
                None => head.to_string(),
            }
        }
        _ => head.to_string(),
    };
    if let Some(q) = query {
        let params: Vec<String> = q
            .split('&')
            .map(|p| match p.split_once('=') {
                Some((k, _)) if is_secret_name(k) => format!("{k}=***"),
                _ => p.to_string(),
            })
            .collect();
        out.push('?');
        out.push_str(&params.join("&"));
    }
    out
}

fn is_secret_name(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    ["pass", "secret", "token"].iter().any(|w| k.contains(w))
}

async fn stored_offsets(
    tx: &mut Transaction<'_, Postgres>,
    consumer: &str,
) -> Result<HashMap<(String, i32), i64>> {
    let sql = format!("{} for update", super::OFFSETS_SQL);
    let rows = sqlx::query_as(&sql)
        .bind(consumer)
        .fetch_all(&mut **tx)
        .await?;
    Ok(super::offset_map(rows))
}

async fn upsert_candles(tx: &mut Transaction<'_, Postgres>, rows: &[&Candle]) -> Result<()> {
    if rows.is_empty() {
        return Ok(());
    }
    let col = |f: fn(&Candle) -> String| rows.iter().map(|c| f(c)).collect::<Vec<String>>();
    sqlx::query(
        "insert into candles (exchange, symbol, interval, open_ms, close_ms, open, high, low, close, volume, trades)
         select * from unnest($1::text[], $2::text[], $3::text[], $4::bigint[], $5::bigint[],
                              $6::text[]::numeric[], $7::text[]::numeric[], $8::text[]::numeric[],
                              $9::text[]::numeric[], $10::text[]::numeric[], $11::bigint[])
         on conflict (exchange, symbol, interval, open_ms) do update set
           close_ms = excluded.close_ms, open = excluded.open, high = excluded.high, low = excluded.low,
           close = excluded.close, volume = excluded.volume, trades = excluded.trades",
    )
    .bind(col(|c| c.exchange.clone()))
    .bind(col(|c| c.symbol.clone()))
    .bind(col(|c| c.interval.clone()))
    .bind(rows.iter().map(|c| c.open_ms).collect::<Vec<_>>())
    .bind(rows.iter().map(|c| c.close_ms).collect::<Vec<_>>())
    .bind(col(|c| c.open.to_string()))
    .bind(col(|c| c.high.to_string()))
    .bind(col(|c| c.low.to_string()))
    .bind(col(|c| c.close.to_string()))
    .bind(col(|c| c.volume.to_string()))
    .bind(rows.iter().map(|c| c.trades as i64).collect::<Vec<_>>())
    .execute(&mut **tx)
    .await
    .context("upserting candles")?;
    Ok(())
}

/// The values a stored forecast row takes from a newer delivery of its key (in
/// `forecast_rows`) or a newer forecast of its series (in `forecast_latest_rows`): every column
/// but the key, version 2's included (null from a version 1 forecast).
const NEWER_VALUES: &str = "target_ms = excluded.target_ms, last = excluded.last, \
    point = excluded.point, lo80 = excluded.lo80, hi80 = excluded.hi80, lo95 = excluded.lo95, \
    hi95 = excluded.hi95, q025 = excluded.q025, q05 = excluded.q05, q10 = excluded.q10, \
    q25 = excluded.q25, q50 = excluded.q50, q75 = excluded.q75, q90 = excluded.q90, \
    q95 = excluded.q95, q975 = excluded.q975, touch_alpha = excluded.touch_alpha, \
    touch_beta = excluded.touch_beta, model_version = excluded.model_version, \
    degraded = excluded.degraded";

/// The columns of a staged row, in [`copy_row`]'s order (named, so that a column a later
/// migration adds to `forecast_rows` stays null rather than breaking the `COPY`).
const COPY_COLUMNS: &str = "series, model, horizon, base_ms, target_ms, last, point, lo80, \
    hi80, lo95, hi95, q025, q05, q10, q25, q50, q75, q90, q95, q975, touch_alpha, touch_beta, \
    model_version, degraded";

/// Fields of a staged row.
const COPY_FIELDS: i16 = 24;

/// Bytes of a version 2 row in `COPY`'s binary format (a version 1 row takes fewer).
const COPY_ROW_BYTES: usize = 2 + 8 + 6 + 8 + 2 * 12 + 17 * 12 + 8 + 5;

/// Writes forecasts through Postgres's bulk path: binary `COPY` of their id rows (`ids`, one
/// per row: see [`super::forecast_ids`]) into a temporary staging table (one per connection,
/// emptied at commit), then from it one insert into `forecast_rows` and one upsert into
/// `forecast_latest_rows` (the newest per series, model and horizon). `rows` hold one row per
/// key.
///
/// The insert is plain, which costs about half an upsert: a row is stored twice only when a
/// forecast is delivered again under a new offset (a forecast stage that restarted from its
/// checkpoint). Then the insert fails on the key, is rolled back to its savepoint, and the batch
/// is upserted instead, the newer delivery winning as before.
async fn write_forecasts(
    tx: &mut Transaction<'_, Postgres>,
    rows: &[&Forecast],
    ids: &[RowIds],
) -> Result<()> {
    if rows.is_empty() {
        return Ok(());
    }
    // `if not exists` notes every batch after the first; not worth a log line. One round trip.
    sqlx::Executor::execute(
        &mut **tx,
        "set local client_min_messages = warning;
         create temp table if not exists sink_forecast_rows (like forecast_rows)
           on commit delete rows",
    )
    .await
    .context("making the forecast staging table")?;
    let mut data = Vec::with_capacity(COPY_HEADER.len() + rows.len() * COPY_ROW_BYTES + 2);
    data.extend_from_slice(COPY_HEADER);
    for (f, id) in rows.iter().zip(ids) {
        copy_row(&mut data, f, id)?;
    }
    data.extend_from_slice(&(-1i16).to_be_bytes());
    let mut copy = tx
        .copy_in_raw(&format!(
            "copy sink_forecast_rows ({COPY_COLUMNS}) from stdin (format binary)"
        ))
        .await
        .context("staging forecasts")?;
    copy.send(data).await.context("staging forecasts")?;
    copy.finish().await.context("staging forecasts")?;
    sqlx::query("savepoint sink_plain")
        .execute(&mut **tx)
        .await?;
    let plain = sqlx::query("insert into forecast_rows select * from sink_forecast_rows")
        .execute(&mut **tx)
        .await;
    match plain {
        Ok(_) => {
            sqlx::query("release savepoint sink_plain")
                .execute(&mut **tx)
                .await?;
        }
        Err(e) if is_unique_violation(&e) => {
            sqlx::query("rollback to savepoint sink_plain")
                .execute(&mut **tx)
                .await?;
            sqlx::query(&format!(
                "insert into forecast_rows select * from sink_forecast_rows \
                 on conflict (series, model, horizon, base_ms) do update set {NEWER_VALUES}"
            ))
            .execute(&mut **tx)
            .await
            .context("upserting forecasts")?;
        }
        Err(e) => return Err(anyhow::Error::from(e).context("inserting forecasts")),
    }
    // Usually each series, model and horizon appears once in a batch: then no sort is needed
    // to keep its newest row.
    let once = {
        let mut seen =
            rustc_hash::FxHashSet::with_capacity_and_hasher(rows.len(), Default::default());
        rows.iter()
            .zip(ids)
            .all(|(f, id)| seen.insert((id.series, id.model, f.horizon)))
    };
    let (distinct, order) = if once {
        ("", "")
    } else {
        (
            "distinct on (series, model, horizon)",
            "order by series, model, horizon, base_ms desc",
        )
    };
    sqlx::query(&format!(
        "insert into forecast_latest_rows select {distinct} * from sink_forecast_rows {order} \
         on conflict (series, model, horizon) do update set base_ms = excluded.base_ms, \
           {NEWER_VALUES} where excluded.base_ms >= forecast_latest_rows.base_ms"
    ))
    .execute(&mut **tx)
    .await
    .context("upserting the latest forecasts")?;
    Ok(())
}

fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.code().as_deref() == Some("23505"))
}

/// `COPY … (format binary)`'s file header: signature, flags, header extension length.
const COPY_HEADER: &[u8] = b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0";

/// One forecast as a tuple of `COPY`'s binary format, in [`COPY_COLUMNS`]' order: each field
/// its length, then its value in network byte order (floats bit for bit, so exactly); a field
/// a version 1 forecast lacks is null (length −1, no value).
fn copy_row(out: &mut Vec<u8>, f: &Forecast, ids: &RowIds) -> Result<()> {
    let horizon = i32::try_from(f.horizon)
        .with_context(|| format!("horizon {} does not fit a Postgres integer", f.horizon))?;
    out.extend_from_slice(&COPY_FIELDS.to_be_bytes());
    out.extend_from_slice(&4i32.to_be_bytes());
    out.extend_from_slice(&ids.series.to_be_bytes());
    out.extend_from_slice(&2i32.to_be_bytes());
    out.extend_from_slice(&ids.model.to_be_bytes());
    out.extend_from_slice(&4i32.to_be_bytes());
    out.extend_from_slice(&horizon.to_be_bytes());
    for x in [f.base_ms, f.target_ms] {
        out.extend_from_slice(&8i32.to_be_bytes());
        out.extend_from_slice(&x.to_be_bytes());
    }
    let float = |out: &mut Vec<u8>, x: Option<f64>| match x {
        Some(x) => {
            out.extend_from_slice(&8i32.to_be_bytes());
            out.extend_from_slice(&x.to_bits().to_be_bytes());
        }
        None => out.extend_from_slice(&(-1i32).to_be_bytes()),
    };
    for x in [f.last, f.point, f.lo80, f.hi80, f.lo95, f.hi95] {
        float(out, Some(x));
    }
    for i in 0..9 {
        float(out, f.quantiles.map(|q| q[i]));
    }
    float(out, f.touch.map(|t| t.alpha));
    float(out, f.touch.map(|t| t.beta));
    match ids.version {
        Some(id) => {
            out.extend_from_slice(&4i32.to_be_bytes());
            out.extend_from_slice(&id.to_be_bytes());
        }
        None => out.extend_from_slice(&(-1i32).to_be_bytes()),
    }
    match f.degraded {
        Some(d) => {
            out.extend_from_slice(&1i32.to_be_bytes());
            out.push(u8::from(d));
        }
        None => out.extend_from_slice(&(-1i32).to_be_bytes()),
    }
    Ok(())
}

// The alert methods' bodies (shared with the other dialect).
impl PgStore {
    super::alerts::alert_methods!(super::alerts::CLAIM_SQL_PG);
}

#[async_trait]
impl Store for PgStore {
    fn backend(&self) -> &'static str {
        "postgres"
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
        // The partitions first, outside the batch's transaction (a few rows at most).
        let all_candles: Vec<&Candle> = batch.candles.iter().map(|(_, c)| c).collect();
        let all_forecasts: Vec<&Forecast> = batch.forecasts.iter().map(|(_, f)| f).collect();
        self.partitions
            .ensure(&self.pool, &all_candles, &all_forecasts)
            .await?;
        let mut tx = super::WriteTx::begin_write(&self.pool).await?;
        let stored = stored_offsets(&mut tx, consumer).await?;
        let (candles, skipped_c) = fresh(&batch.candles, &stored, candle_key);
        let (forecasts, skipped_f) = fresh(&batch.forecasts, &stored, forecast_key);
        // Names not seen before get their ids on another connection, committed at once: an id
        // is harmless if this batch then fails.
        let ids = self.ids.of(&self.pool, &forecasts).await?;
        upsert_candles(&mut tx, &candles).await?;
        write_forecasts(&mut tx, &forecasts, &ids).await?;
        for ((topic, partition), next) in &batch.offsets {
            sqlx::query(
                "insert into consumer_offsets (consumer, topic, partition, next_offset) values ($1, $2, $3, $4)
                 on conflict (consumer, topic, partition) do update set
                   next_offset = greatest(consumer_offsets.next_offset, excluded.next_offset), updated_at = now()",
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
        let dropped = self
            .partitions
            .drop_expired(&self.pool, policy, clock_ms)
            .await?;
        Ok(super::RetentionReport {
            dropped,
            deleted: 0,
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
               select exchange, symbol, interval, open_ms, close_ms, open::text, high::text, low::text,
                      close::text, volume::text, trades
               from candles
               where ($1::text is null or exchange = $1) and ($2::text is null or symbol = $2)
                 and ($3::text is null or interval = $3) and ($4::bigint is null or open_ms >= $4)
                 and ($5::bigint is null or open_ms < $5)
               order by open_ms desc, exchange, symbol, interval limit $6) page
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
        super::latest_body!(&self.pool, q, super::LATEST_SQL_PG)
    }

    async fn series(&self) -> Result<Vec<SeriesInfo>> {
        super::series_body!(&self.pool)
    }

    async fn forecasts(&self, q: &ForecastQuery) -> Result<Vec<Forecast>> {
        let rows = sqlx::query(
            "select * from (
               select exchange, symbol, interval, model, horizon, base_ms, target_ms, last, point,
                      lo80, hi80, lo95, hi95, quantiles[1], quantiles[2], quantiles[3],
                      quantiles[4], quantiles[5], quantiles[6], quantiles[7], quantiles[8],
                      quantiles[9], touch_alpha, touch_beta, model_version, degraded
               from forecasts
               where ($1::text is null or exchange = $1) and ($2::text is null or symbol = $2)
                 and ($3::text is null or interval = $3) and ($4::text is null or model = $4)
                 and ($5::int is null or horizon = $5) and ($6::bigint is null or target_ms >= $6)
                 and ($7::bigint is null or target_ms < $7)
               order by target_ms desc, exchange, symbol, interval, model, horizon limit $8) page
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

#[cfg(test)]
mod tests {
    #[test]
    fn redacts_passwords() {
        assert_eq!(
            super::redact("postgres://u:secret@h:5432/db"),
            "postgres://u:***@h:5432/db"
        );
        assert_eq!(super::redact("postgres://h/db"), "postgres://h/db");
        for (url, want) in [
            (
                "postgres://h/db?user=u&password=secret",
                "postgres://h/db?user=u&password=***",
            ),
            (
                "postgres://u:p%40ss@h/db?sslmode=require&sslpassword=k&PassWord=x",
                "postgres://u:***@h/db?sslmode=require&sslpassword=***&PassWord=***",
            ),
            ("postgres://u@h/db", "postgres://u@h/db"),
            (
                "postgres://u:@h/db?token=t",
                "postgres://u:***@h/db?token=***",
            ),
            ("not a url ?password=x", "not a url ?password=***"),
        ] {
            assert_eq!(super::redact(url), want, "{url}");
        }
    }
}
