//! `/api/v1` resources: candles and forecasts.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use tickcast_consumers::store::{CandleQuery, ForecastQuery};
use tickcast_pipeline::codec::{check_exchange, check_symbol};
use tickcast_pipeline::domain::{Candle, Forecast};
use tickcast_pipeline::interval::Interval;

use crate::AppState;
use crate::error::ApiError;

/// Default and maximum page size.
pub const DEFAULT_LIMIT: i64 = 500;
pub const MAX_LIMIT: i64 = 10_000;

/// A page of results.
#[derive(Debug, Serialize, Deserialize)]
pub struct Page<T> {
    pub data: Vec<T>,
    pub count: usize,
}

/// Query parameters shared by both resources.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeriesParams {
    pub exchange: Option<String>,
    pub symbol: Option<String>,
    pub interval: Option<String>,
    pub model: Option<String>,
    pub horizon: Option<i32>,
    /// Inclusive lower time bound, epoch ms.
    pub from: Option<i64>,
    /// Exclusive upper time bound, epoch ms.
    pub to: Option<i64>,
    pub limit: Option<i64>,
}

/// Checked common filters.
struct Filters {
    exchange: Option<String>,
    symbol: Option<String>,
    interval: Option<String>,
    from: Option<i64>,
    to: Option<i64>,
    limit: i64,
}

fn parse(q: Result<Query<SeriesParams>, QueryRejection>) -> Result<SeriesParams, ApiError> {
    q.map(|Query(p)| p)
        .map_err(|e| ApiError::BadRequest(e.body_text()))
}

fn filters(p: &SeriesParams) -> Result<Filters, ApiError> {
    if let Some(s) = &p.symbol {
        check_symbol(s).map_err(|_| {
            ApiError::param(
                "symbol",
                format!("`{s}` is not canonical BASE-QUOTE, e.g. BTC-USDT"),
            )
        })?;
    }
    if let Some(i) = &p.interval {
        Interval::parse(i).map_err(|e| ApiError::param("interval", e))?;
    }
    if let Some(e) = &p.exchange {
        check_exchange(e).map_err(|_| {
            ApiError::param(
                "exchange",
                "expected a lower-case exchange id, e.g. binance",
            )
        })?;
    }
    let limit = p.limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(ApiError::param(
            "limit",
            format!("must be between 1 and {MAX_LIMIT}"),
        ));
    }
    if let (Some(f), Some(t)) = (p.from, p.to)
        && f >= t
    {
        return Err(ApiError::param("from", "must be before `to`"));
    }
    Ok(Filters {
        exchange: p.exchange.clone(),
        symbol: p.symbol.clone(),
        interval: p.interval.clone(),
        from: p.from,
        to: p.to,
        limit,
    })
}

/// `GET /api/v1/candles?exchange=&symbol=&interval=&from=&to=&limit=` — newest `limit` candles
/// with `from ≤ open_ms < to`, oldest first.
async fn candles(
    State(state): State<AppState>,
    q: Result<Query<SeriesParams>, QueryRejection>,
) -> Result<Json<Page<Candle>>, ApiError> {
    let p = parse(q)?;
    if p.model.is_some() || p.horizon.is_some() {
        return Err(ApiError::BadRequest(
            "`model` and `horizon` apply to forecasts only".into(),
        ));
    }
    let f = filters(&p)?;
    let data = state
        .store
        .candles(&CandleQuery {
            exchange: f.exchange,
            symbol: f.symbol,
            interval: f.interval,
            from_ms: f.from,
            to_ms: f.to,
            limit: f.limit,
        })
        .await?;
    Ok(Json(Page {
        count: data.len(),
        data,
    }))
}

/// `GET /api/v1/forecasts?exchange=&symbol=&interval=&model=&horizon=&from=&to=&limit=` —
/// newest `limit` forecasts with `from ≤ target_ms < to`, oldest first.
async fn forecasts(
    State(state): State<AppState>,
    q: Result<Query<SeriesParams>, QueryRejection>,
) -> Result<Json<Page<Forecast>>, ApiError> {
    let p = parse(q)?;
    let f = filters(&p)?;
    if p.horizon.is_some_and(|h| h < 1) {
        return Err(ApiError::param("horizon", "must be at least 1"));
    }
    let data = state
        .store
        .forecasts(&ForecastQuery {
            exchange: f.exchange,
            symbol: f.symbol,
            interval: f.interval,
            model: p.model.clone(),
            horizon: p.horizon,
            from_ms: f.from,
            to_ms: f.to,
            limit: f.limit,
        })
        .await?;
    Ok(Json(Page {
        count: data.len(),
        data,
    }))
}

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/candles", get(candles))
        .route("/api/v1/forecasts", get(forecasts))
}
