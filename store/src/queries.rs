//! What the API reads: candles, forecasts (all, or the newest per series), scores and the
//! series list.

use anyhow::Result;
use async_trait::async_trait;
use sqlx::query::Query;
use sqlx::{ColumnIndex, Database, Encode, Executor, IntoArguments, Type};
use tickcast_core::domain::{Candle, Forecast};

use super::checkpoints::AccuracyRow;
use super::dialect::Backend;
use super::dialect::{Dialect, Nullable, SqlStore, Value};
use super::rows::{accuracy_from, candle_from, forecast_from};

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

/// The API's reads.
#[async_trait]
pub trait QueryStore: Backend {
    async fn candles(&self, q: &CandleQuery) -> Result<Vec<Candle>>;
    async fn forecasts(&self, q: &ForecastQuery) -> Result<Vec<Forecast>>;
    /// The newest forecast per series, model and horizon (the query's time range and limit
    /// apply to `target_ms` and the row count), ordered by exchange, symbol, interval, model,
    /// horizon.
    async fn latest_forecasts(&self, q: &ForecastQuery) -> Result<Vec<Forecast>>;
    /// Latest rolling scores, ordered by exchange, symbol, interval, model, horizon.
    async fn accuracy(&self, q: &AccuracyQuery) -> Result<Vec<AccuracyRow>>;
    /// Every series with stored candles, ordered by exchange, symbol, interval.
    async fn series(&self) -> Result<Vec<SeriesInfo>>;
    /// Number of (candle, forecast) rows stored.
    async fn row_counts(&self) -> Result<(i64, i64)>;
}

/// Accuracy rows, in [`accuracy_from`]'s column order; filters are optional (`$6` the limit).
const ACCURACY: &str = "select exchange, symbol, interval, model, horizon, ts_ms, \
    n, mae, rmse, mase, rel_mae, coverage80, coverage95, winkler95, directional_accuracy, \
    crps, crps_rel, pit_max_err, touch_brier, touch_brier_rel, touch_ece \
    from accuracy where ($1 is null or exchange = $1) and ($2 is null or symbol = $2) \
    and ($3 is null or interval = $3) and ($4 is null or model = $4) \
    and ($5 is null or horizon = $5) \
    order by exchange, symbol, interval, model, horizon limit $6";

const SERIES: &str = "select exchange, symbol, interval, count(*), min(open_ms), \
    max(open_ms) from candles group by exchange, symbol, interval \
    order by exchange, symbol, interval";

const ROW_COUNTS: &str = "select (select count(*) from candles), (select count(*) from forecasts)";

#[async_trait]
impl<D> QueryStore for SqlStore<D>
where
    D: Dialect,
    for<'c> &'c mut D::Connection: Executor<'c, Database = D>,
    for<'q> D::Arguments<'q>: IntoArguments<'q, D>,
    usize: ColumnIndex<D::Row>,
    for<'q> &'q str: Encode<'q, D> + Type<D>,
    String: Value<D>,
    i32: Value<D>,
    i64: Value<D>,
    f64: Value<D>,
    bool: Value<D>,
{
    async fn candles(&self, q: &CandleQuery) -> Result<Vec<Candle>> {
        let rows = sqlx::query(D::CANDLES)
            .bind(Nullable(q.exchange.as_ref()))
            .bind(Nullable(q.symbol.as_ref()))
            .bind(Nullable(q.interval.as_ref()))
            .bind(Nullable(q.from_ms))
            .bind(Nullable(q.to_ms))
            .bind(clamp_limit(q.limit))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(candle_from).collect()
    }

    async fn forecasts(&self, q: &ForecastQuery) -> Result<Vec<Forecast>> {
        let rows = forecast_query(D::FORECASTS, q)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(forecast_from).collect()
    }

    async fn latest_forecasts(&self, q: &ForecastQuery) -> Result<Vec<Forecast>> {
        let rows = forecast_query(D::LATEST_FORECASTS, q)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(forecast_from).collect()
    }

    async fn accuracy(&self, q: &AccuracyQuery) -> Result<Vec<AccuracyRow>> {
        // More columns than sqlx decodes into a tuple: read by index.
        let rows = sqlx::query(ACCURACY)
            .bind(Nullable(q.exchange.as_ref()))
            .bind(Nullable(q.symbol.as_ref()))
            .bind(Nullable(q.interval.as_ref()))
            .bind(Nullable(q.model.as_ref()))
            .bind(Nullable(q.horizon))
            .bind(clamp_limit(q.limit))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(accuracy_from).collect()
    }

    async fn series(&self) -> Result<Vec<SeriesInfo>> {
        let rows: Vec<(String, String, String, i64, i64, i64)> =
            sqlx::query_as(SERIES).fetch_all(&self.pool).await?;
        Ok(rows
            .into_iter()
            .map(
                |(exchange, symbol, interval, candles, first_open_ms, last_open_ms)| SeriesInfo {
                    exchange,
                    symbol,
                    interval,
                    candles,
                    first_open_ms,
                    last_open_ms,
                },
            )
            .collect())
    }

    async fn row_counts(&self) -> Result<(i64, i64)> {
        Ok(sqlx::query_as(ROW_COUNTS).fetch_one(&self.pool).await?)
    }
}

/// One of the dialect's forecast reads (`sql`) with `q`'s filters bound.
fn forecast_query<'q, D>(sql: &'q str, q: &'q ForecastQuery) -> Query<'q, D, D::Arguments<'q>>
where
    D: Database,
    String: Value<D>,
    i32: Value<D>,
    i64: Value<D>,
{
    sqlx::query(sql)
        .bind(Nullable(q.exchange.as_ref()))
        .bind(Nullable(q.symbol.as_ref()))
        .bind(Nullable(q.interval.as_ref()))
        .bind(Nullable(q.model.as_ref()))
        .bind(Nullable(q.horizon))
        .bind(Nullable(q.from_ms))
        .bind(Nullable(q.to_ms))
        .bind(clamp_limit(q.limit))
}

/// Clamps a requested page size.
pub fn clamp_limit(limit: i64) -> i64 {
    limit.clamp(1, 10_000)
}
