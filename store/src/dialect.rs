//! What differs between the two databases, and the store type written once over both.
//!
//! [`SqlStore<D>`] holds a pool of dialect `D`. The client traits ([`super::SinkStore`],
//! [`super::CheckpointStore`], [`super::AlertStore`], [`super::QueryStore`]) are implemented
//! once for every `SqlStore<D>`; their SQL is one text for both databases except the few
//! statements [`Dialect`] names, and the sink's row writes, which are different programs
//! (binary `COPY` into time partitions on Postgres, one upsert per row on SQLite).

use anyhow::Result;
use async_trait::async_trait;
use sqlx::encode::IsNull;
use sqlx::error::BoxDynError;
use sqlx::{Database, Decode, Encode, Executor, FromRow, IntoArguments, Pool, Transaction, Type};
use tickcast_core::domain::{Candle, Forecast};

use super::retention::{Retention, RetentionReport};

/// How long a query waits for a pooled connection before it fails: short, so that an
/// unreachable database is reported (a 503 from the API, a wait in the stages) within
/// about 2 s rather than after a request timeout.
pub const ACQUIRE_TIMEOUT: std::time::Duration = std::time::Duration::from_millis(1_500);

/// What every client of the store may ask: which database, and whether it answers.
#[async_trait]
pub trait Backend: Send + Sync + std::fmt::Debug {
    /// `postgres` or `sqlite`.
    fn backend(&self) -> &'static str;
    /// Cheap reachability check.
    async fn ping(&self) -> Result<()>;
}

/// One of the two databases: the statements whose text differs, and the sink's writes.
#[async_trait]
pub trait Dialect: Database {
    /// `postgres` or `sqlite`.
    const BACKEND: &'static str;
    /// Starts a write transaction. SQLite's is `BEGIN IMMEDIATE`, which takes the write lock
    /// at once: a deferred transaction that reads first and writes later fails with `database
    /// is locked` (no busy wait) when another connection wrote in between, which the demo's
    /// concurrent writers (sink, forecast and alert checkpoints) hit.
    const BEGIN_WRITE: &'static str;
    /// A consumer's stored next offsets (`$1` the consumer), read inside the sink's
    /// transaction (Postgres locks the rows against a second sink of the same group).
    const STORED_OFFSETS: &'static str;
    /// Moves a consumer's next offset of one partition forward, never back (`$1`–`$4`:
    /// consumer, topic, partition, next offset).
    const ADVANCE_OFFSET: &'static str;
    /// [`super::QueryStore::candles`]; `$1`–`$6`: exchange, symbol, interval, from, to, limit.
    const CANDLES: &'static str;
    /// [`super::QueryStore::forecasts`]; `$1`–`$8`: exchange, symbol, interval, model,
    /// horizon, from, to, limit. Columns in `rows::forecast_from`'s order.
    const FORECASTS: &'static str;
    /// [`super::QueryStore::latest_forecasts`], with the same parameters and columns.
    const LATEST_FORECASTS: &'static str;
    /// Claims up to `$4` due deliveries of endpoint `$1` at `$2` by moving their next try to
    /// `$3` (a lease: a claim never finished is tried again after it).
    const CLAIM_DELIVERIES: &'static str;

    /// What the sink keeps between batches.
    type SinkState: std::fmt::Debug + Default + Clone + Send + Sync;

    /// Readies the database for a batch's rows before the sink's transaction begins
    /// (Postgres makes the time partitions they need, on connections of their own, so the
    /// transaction never waits on that DDL). Nothing by default.
    async fn prepare_batch(
        _store: &SqlStore<Self>,
        _candles: &[&Candle],
        _forecasts: &[&Forecast],
    ) -> Result<()> {
        Ok(())
    }

    /// Writes a batch's fresh rows (one row per key) in the sink's transaction.
    async fn write_rows(
        store: &SqlStore<Self>,
        tx: &mut Transaction<'static, Self>,
        candles: &[&Candle],
        forecasts: &[&Forecast],
    ) -> Result<()>;

    /// [`super::SinkStore::apply_retention`].
    async fn apply_retention(
        store: &SqlStore<Self>,
        policy: &Retention,
        clock_ms: i64,
    ) -> Result<RetentionReport>;
}

/// The store over a pool of dialect `D`: [`super::PgStore`] or [`super::SqliteStore`].
#[derive(Debug)]
pub struct SqlStore<D: Dialect> {
    pub(crate) pool: Pool<D>,
    pub(crate) sink: D::SinkState,
}

/// A second handle on the same pool and sink state.
impl<D: Dialect> Clone for SqlStore<D> {
    fn clone(&self) -> Self {
        Self {
            pool: self.pool.clone(),
            sink: self.sink.clone(),
        }
    }
}

impl<D: Dialect> SqlStore<D> {
    pub(crate) fn new(pool: Pool<D>) -> Self {
        Self {
            pool,
            sink: D::SinkState::default(),
        }
    }

    /// The connection pool, for what the store's traits do not cover.
    pub fn pool(&self) -> &Pool<D> {
        &self.pool
    }

    /// Starts a write transaction ([`Dialect::BEGIN_WRITE`]).
    pub(crate) async fn begin_write(&self) -> Result<Transaction<'static, D>> {
        Ok(self.pool.begin_with(D::BEGIN_WRITE).await?)
    }
}

impl<D> SqlStore<D>
where
    D: Dialect,
    for<'c> &'c mut D::Connection: Executor<'c, Database = D>,
    for<'q> D::Arguments<'q>: IntoArguments<'q, D>,
    for<'q> &'q str: Encode<'q, D> + Type<D>,
    String: Value<D>,
{
    /// The row `sql` finds for each series of `keys` that has one (`$1` the consumer, `$2`–`$4`
    /// the series' exchange, symbol and interval), in the order of `keys`.
    pub(crate) async fn row_per_series<T>(
        &self,
        sql: &'static str,
        consumer: &str,
        keys: &[(String, String, String)],
    ) -> Result<Vec<T>>
    where
        T: for<'r> FromRow<'r, D::Row> + Send + Unpin,
    {
        let mut out = Vec::new();
        for (exchange, symbol, interval) in keys {
            let row: Option<T> = sqlx::query_as(sql)
                .bind(consumer)
                .bind(exchange)
                .bind(symbol)
                .bind(interval)
                .fetch_optional(&self.pool)
                .await?;
            out.extend(row);
        }
        Ok(out)
    }
}

#[async_trait]
impl<D: Dialect> Backend for SqlStore<D> {
    fn backend(&self) -> &'static str {
        D::BACKEND
    }

    async fn ping(&self) -> Result<()> {
        let mut conn = self.pool.acquire().await?;
        sqlx::Connection::ping(&mut *conn).await?;
        Ok(())
    }
}

/// A Rust type both dialects bind and read alike (and read as `Option<Self>`: sqlx decodes
/// an `Option` of any type it decodes).
pub trait Value<D: Database>:
    for<'q> Encode<'q, D> + for<'r> Decode<'r, D> + Type<D> + Send + Sync
{
}

impl<D: Database, T> Value<D> for T where
    T: for<'q> Encode<'q, D> + for<'r> Decode<'r, D> + Type<D> + Send + Sync
{
}

/// An `Option` to bind, null when `None`, for any dialect that binds `T` (sqlx encodes
/// `Option<T>` once per database, so shared code would need a bound for every `T`).
#[derive(Debug, Clone, Copy)]
pub struct Nullable<T>(pub Option<T>);

impl<'q, D: Database, T: Encode<'q, D> + Type<D>> Encode<'q, D> for Nullable<T> {
    fn encode_by_ref(
        &self,
        buf: &mut <D as Database>::ArgumentBuffer<'q>,
    ) -> Result<IsNull, BoxDynError> {
        match &self.0 {
            Some(v) => v.encode_by_ref(buf),
            None => Ok(IsNull::Yes),
        }
    }

    fn produces(&self) -> Option<D::TypeInfo> {
        match &self.0 {
            Some(v) => v.produces(),
            None => Some(T::type_info()),
        }
    }
}

impl<D: Database, T: Type<D>> Type<D> for Nullable<T> {
    fn type_info() -> D::TypeInfo {
        T::type_info()
    }

    fn compatible(ty: &D::TypeInfo) -> bool {
        T::compatible(ty)
    }
}
