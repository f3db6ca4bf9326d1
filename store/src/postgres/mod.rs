//! The Postgres store: [`PgStore`]. The sink's forecasts go in by binary `COPY` into a
//! staging table (`copy.rs`), candles by `unnest` (one statement per table per batch), each
//! into time partitions made ahead (`partitions.rs`); forecast rows carry small ids in place
//! of their text keys (`forecast_ids.rs`).

mod copy;
mod forecast_ids;
mod partitions;

use anyhow::{Context as _, Result};
use async_trait::async_trait;
use sqlx::postgres::PgPoolOptions;
use sqlx::{Postgres, Transaction};
use tickcast_core::domain::{Candle, Forecast};

use super::dialect::{ACQUIRE_TIMEOUT, Dialect, SqlStore};
use super::retention::{Retention, RetentionReport};

/// The Postgres store.
pub type PgStore = SqlStore<Postgres>;

/// What the Postgres sink keeps between batches: the partitions it made, and the ids of the
/// names it has written.
#[derive(Debug, Default, Clone)]
pub struct PgSinkState {
    partitions: partitions::Partitions,
    ids: forecast_ids::ForecastIds,
}

impl SqlStore<Postgres> {
    /// Connects and applies `migrations/postgres`.
    pub async fn connect(url: &str) -> Result<Self> {
        let pool = PgPoolOptions::new()
            .max_connections(8)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect(url)
            .await
            .with_context(|| format!("connecting to Postgres at {}", redact(url)))?;
        sqlx::migrate!("../migrations/postgres")
            .run(&pool)
            .await
            .context("applying Postgres migrations")?;
        let store = Self::new(pool);
        partitions::adopt_unpartitioned(&store.pool, &store.sink.partitions)
            .await
            .context("moving existing rows into time partitions")?;
        Ok(store)
    }
}

#[async_trait]
impl Dialect for Postgres {
    const BACKEND: &'static str = "postgres";
    const BEGIN_WRITE: &'static str = "BEGIN";
    const STORED_OFFSETS: &'static str = "select topic, partition, next_offset \
        from consumer_offsets where consumer = $1 for update";
    const ADVANCE_OFFSET: &'static str = "insert into consumer_offsets \
        (consumer, topic, partition, next_offset) values ($1, $2, $3, $4) \
        on conflict (consumer, topic, partition) do update set \
        next_offset = greatest(consumer_offsets.next_offset, excluded.next_offset), \
        updated_at = now()";
    const CANDLES: &'static str = "select * from (
           select exchange, symbol, interval, open_ms, close_ms, open::text, high::text, low::text,
                  close::text, volume::text, trades
           from candles
           where ($1::text is null or exchange = $1) and ($2::text is null or symbol = $2)
             and ($3::text is null or interval = $3) and ($4::bigint is null or open_ms >= $4)
             and ($5::bigint is null or open_ms < $5)
           order by open_ms desc, exchange, symbol, interval limit $6) page
         order by open_ms, exchange, symbol, interval";
    const FORECASTS: &'static str = "select * from (
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
         order by target_ms, exchange, symbol, interval, model, horizon";
    /// The view's `quantiles` array is read element by element, so both dialects give
    /// `rows::forecast_from` the same columns; the nulls are typed.
    const LATEST_FORECASTS: &'static str = "select exchange, symbol, interval, model, horizon, \
        base_ms, target_ms, last, point, lo80, hi80, lo95, hi95, quantiles[1], quantiles[2], \
        quantiles[3], quantiles[4], quantiles[5], quantiles[6], quantiles[7], quantiles[8], \
        quantiles[9], touch_alpha, touch_beta, model_version, degraded from forecasts_latest \
        where ($1::text is null or exchange = $1) and ($2::text is null or symbol = $2) \
        and ($3::text is null or interval = $3) and ($4::text is null or model = $4) \
        and ($5::int is null or horizon = $5) and ($6::bigint is null or target_ms >= $6) \
        and ($7::bigint is null or target_ms < $7) \
        order by exchange, symbol, interval, model, horizon limit $8";
    /// Rows another claimer holds are skipped, not waited for.
    const CLAIM_DELIVERIES: &'static str = "update alert_deliveries \
        set next_ms = $3, updated_ms = $2 \
        where (endpoint, event_id) in (select endpoint, event_id from alert_deliveries \
        where endpoint = $1 and status = 'pending' and next_ms <= $2 \
        order by ts_ms, event_id limit $4 for update skip locked) \
        returning event_id, body, attempts, ts_ms";

    type SinkState = PgSinkState;

    async fn prepare_batch(
        store: &PgStore,
        candles: &[&Candle],
        forecasts: &[&Forecast],
    ) -> Result<()> {
        store
            .sink
            .partitions
            .ensure(&store.pool, candles, forecasts)
            .await
    }

    async fn write_rows(
        store: &PgStore,
        tx: &mut Transaction<'static, Postgres>,
        candles: &[&Candle],
        forecasts: &[&Forecast],
    ) -> Result<()> {
        let sink = &store.sink;
        // Names not seen before get their ids on another connection, committed at once: an id
        // is harmless if this batch then fails.
        let ids = sink.ids.resolve(&store.pool, forecasts).await?;
        copy::upsert_candles(tx, candles).await?;
        copy::write_forecasts(tx, forecasts, &ids).await
    }

    async fn apply_retention(
        store: &PgStore,
        policy: &Retention,
        clock_ms: i64,
    ) -> Result<RetentionReport> {
        let dropped = store
            .sink
            .partitions
            .drop_expired(&store.pool, policy, clock_ms)
            .await?;
        Ok(RetentionReport {
            dropped,
            deleted: 0,
        })
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
