//! `/api/v1` read resources: series, candles, forecasts (range and latest), accuracy.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use tickcast_core::codec::{check_exchange, check_symbol};
use tickcast_core::domain::{Candle, Forecast};
use tickcast_core::interval::Interval;
use tickcast_store::{AccuracyQuery, AccuracyRow, CandleQuery, ForecastQuery, SeriesInfo};

use crate::AppState;
use crate::error::{ApiError, ErrorBody};

/// Default and maximum page size.
pub const DEFAULT_LIMIT: i64 = 500;
pub const MAX_LIMIT: i64 = 10_000;

/// A page of results.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Page<T> {
    pub data: Vec<T>,
    pub count: usize,
}

impl<T> Page<T> {
    pub fn new(data: Vec<T>) -> Self {
        Self {
            count: data.len(),
            data,
        }
    }
}

/// Checks a canonical `BASE-QUOTE` symbol parameter.
pub(crate) fn symbol_param(field: &str, s: &str) -> Result<(), ApiError> {
    check_symbol(s).map_err(|_| {
        ApiError::param(
            field,
            format!("`{s}` is not canonical BASE-QUOTE, e.g. BTC-USDT"),
        )
    })
}

/// Checks a lower-case exchange id parameter.
pub(crate) fn exchange_param(field: &str, e: &str) -> Result<(), ApiError> {
    check_exchange(e)
        .map_err(|_| ApiError::param(field, "expected a lower-case exchange id, e.g. binance"))
}

/// The page size: `DEFAULT_LIMIT` when absent, else within 1..=`MAX_LIMIT`.
pub(crate) fn limit_param(limit: Option<i64>) -> Result<i64, ApiError> {
    let limit = limit.unwrap_or(DEFAULT_LIMIT);
    if (1..=MAX_LIMIT).contains(&limit) {
        Ok(limit)
    } else {
        Err(ApiError::param(
            "limit",
            format!("must be between 1 and {MAX_LIMIT}"),
        ))
    }
}

/// Query parameters shared by the resources.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct SeriesParams {
    /// Lower-case exchange id, e.g. `binance`.
    #[param(pattern = r"^[a-z0-9_]{1,32}$")]
    pub exchange: Option<String>,
    /// Canonical `BASE-QUOTE`, e.g. `BTC-USDT`.
    #[param(pattern = r"^[A-Z0-9]{1,16}(-[A-Z0-9]{1,16}){1,4}$")]
    pub symbol: Option<String>,
    /// Candle interval, e.g. `1m`.
    #[param(pattern = r"^[1-9][0-9]{0,5}(ms|s|m|h|d)$")]
    pub interval: Option<String>,
    /// Model name (forecasts and accuracy only), e.g. `ensemble`.
    #[param(min_length = 1, max_length = 64)]
    pub model: Option<String>,
    /// Horizon in bars, ≥ 1 (forecasts and accuracy only).
    #[param(minimum = 1)]
    pub horizon: Option<i32>,
    /// Inclusive lower time bound, epoch ms (`open_ms` of candles, `target_ms` of forecasts).
    pub from: Option<i64>,
    /// Exclusive upper time bound, epoch ms.
    pub to: Option<i64>,
    /// Page size, 1–10000 (default 500).
    #[param(minimum = 1, maximum = 10000)]
    pub limit: Option<i64>,
}

/// Query parameters of `/api/v1/candles` (no model or horizon: those are forecasts').
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct CandleParams {
    #[param(pattern = r"^[a-z0-9_]{1,32}$")]
    pub exchange: Option<String>,
    #[param(pattern = r"^[A-Z0-9]{1,16}(-[A-Z0-9]{1,16}){1,4}$")]
    pub symbol: Option<String>,
    #[param(pattern = r"^[1-9][0-9]{0,5}(ms|s|m|h|d)$")]
    pub interval: Option<String>,
    /// Inclusive lower bound on `open_ms`, epoch ms (an empty range gives an empty page).
    pub from: Option<i64>,
    /// Exclusive upper bound on `open_ms`, epoch ms.
    pub to: Option<i64>,
    #[param(minimum = 1, maximum = 10000)]
    pub limit: Option<i64>,
}

/// Query parameters of `/api/v1/accuracy` (the latest rolling score: no time range).
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AccuracyParams {
    #[param(pattern = r"^[a-z0-9_]{1,32}$")]
    pub exchange: Option<String>,
    #[param(pattern = r"^[A-Z0-9]{1,16}(-[A-Z0-9]{1,16}){1,4}$")]
    pub symbol: Option<String>,
    #[param(pattern = r"^[1-9][0-9]{0,5}(ms|s|m|h|d)$")]
    pub interval: Option<String>,
    #[param(min_length = 1, max_length = 64)]
    pub model: Option<String>,
    #[param(minimum = 1)]
    pub horizon: Option<i32>,
    #[param(minimum = 1, maximum = 10000)]
    pub limit: Option<i64>,
}

impl From<CandleParams> for SeriesParams {
    fn from(p: CandleParams) -> Self {
        Self {
            exchange: p.exchange,
            symbol: p.symbol,
            interval: p.interval,
            from: p.from,
            to: p.to,
            limit: p.limit,
            ..Self::default()
        }
    }
}

impl From<AccuracyParams> for SeriesParams {
    fn from(p: AccuracyParams) -> Self {
        Self {
            exchange: p.exchange,
            symbol: p.symbol,
            interval: p.interval,
            model: p.model,
            horizon: p.horizon,
            limit: p.limit,
            ..Self::default()
        }
    }
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

fn parse<P: Into<SeriesParams>>(
    q: Result<Query<P>, QueryRejection>,
) -> Result<SeriesParams, ApiError> {
    q.map(|Query(p)| p.into())
        .map_err(|e| crate::error::query_error(&e))
}

fn filters(p: &SeriesParams) -> Result<Filters, ApiError> {
    if let Some(s) = &p.symbol {
        symbol_param("symbol", s)?;
    }
    if let Some(i) = &p.interval {
        Interval::parse(i).map_err(|e| ApiError::param("interval", e))?;
    }
    if let Some(e) = &p.exchange {
        exchange_param("exchange", e)?;
    }
    let limit = limit_param(p.limit)?;
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
#[utoipa::path(get, path = "/api/v1/candles", tag = "data", params(CandleParams),
    responses((status = 200, body = Page<Candle>), (status = 400, body = ErrorBody)))]
pub async fn candles(
    State(state): State<AppState>,
    q: Result<Query<CandleParams>, QueryRejection>,
) -> Result<Json<Page<Candle>>, ApiError> {
    let p = parse(q)?;
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
    Ok(Json(Page::new(data)))
}

/// `GET /api/v1/forecasts?exchange=&symbol=&interval=&model=&horizon=&from=&to=&limit=` —
/// newest `limit` forecasts with `from ≤ target_ms < to`, oldest first.
#[utoipa::path(get, path = "/api/v1/forecasts", tag = "data", params(SeriesParams),
    responses((status = 200, body = Page<Forecast>), (status = 400, body = ErrorBody)))]
pub async fn forecasts(
    State(state): State<AppState>,
    q: Result<Query<SeriesParams>, QueryRejection>,
) -> Result<Json<Page<Forecast>>, ApiError> {
    let p = parse(q)?;
    let data = state.store.forecasts(&forecast_query(&p)?).await?;
    Ok(Json(Page::new(data)))
}

fn check_model_horizon(p: &SeriesParams) -> Result<(), ApiError> {
    if let Some(h) = p.horizon {
        check_horizon(h)?;
    }
    if let Some(m) = &p.model {
        check_model(m)?;
    }
    Ok(())
}

fn check_horizon(h: i32) -> Result<(), ApiError> {
    if h < 1 {
        return Err(ApiError::param("horizon", "must be at least 1"));
    }
    Ok(())
}

fn check_model(m: &str) -> Result<(), ApiError> {
    if !(1..=64).contains(&m.len()) {
        return Err(ApiError::param("model", "must be 1 to 64 characters"));
    }
    Ok(())
}

fn forecast_query(p: &SeriesParams) -> Result<ForecastQuery, ApiError> {
    let f = filters(p)?;
    check_model_horizon(p)?;
    Ok(ForecastQuery {
        exchange: f.exchange,
        symbol: f.symbol,
        interval: f.interval,
        model: p.model.clone(),
        horizon: p.horizon,
        from_ms: f.from,
        to_ms: f.to,
        limit: f.limit,
    })
}

/// `GET /api/v1/forecasts/latest` — the newest forecast per series, model and horizon,
/// ordered by exchange, symbol, interval, model, horizon. Answers are cached for a short time
/// (`--latest-cache-ms`), so this is cheap to poll.
#[utoipa::path(get, path = "/api/v1/forecasts/latest", tag = "data", params(SeriesParams),
    responses((status = 200, body = Page<Forecast>), (status = 400, body = ErrorBody)))]
pub async fn latest_forecasts(
    State(state): State<AppState>,
    q: Result<Query<SeriesParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    let p = parse(q)?;
    let query = forecast_query(&p)?;
    let key = format!("{query:?}");
    let store = state.store.clone();
    let body = state
        .latest
        .get_or_fetch(key, || async move {
            let data = store.latest_forecasts(&query).await?;
            Ok(serde_json::to_vec(&Page::new(data))?)
        })
        .await?;
    Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
}

/// `GET /api/v1/symbols` — every series with stored candles.
#[utoipa::path(get, path = "/api/v1/symbols", tag = "data",
    responses((status = 200, body = Page<SeriesInfo>)))]
pub async fn symbols(State(state): State<AppState>) -> Result<Json<Page<SeriesInfo>>, ApiError> {
    let data = state.store.series().await?;
    Ok(Json(Page::new(data)))
}

/// `GET /api/v1/accuracy` — the rolling scores per series, model and horizon (exponentially
/// weighted over about the last 500 scored forecasts): MAE, RMSE, MASE, MAE relative to the
/// naive forecast's on the same points, coverage of the 80/95% intervals, Winkler score,
/// directional accuracy.
#[utoipa::path(get, path = "/api/v1/accuracy", tag = "data", params(AccuracyParams),
    responses((status = 200, body = Page<AccuracyRow>), (status = 400, body = ErrorBody)))]
pub async fn accuracy(
    State(state): State<AppState>,
    q: Result<Query<AccuracyParams>, QueryRejection>,
) -> Result<Json<Page<AccuracyRow>>, ApiError> {
    let p = parse(q)?;
    let f = filters(&p)?;
    check_model_horizon(&p)?;
    let data = state
        .store
        .accuracy(&AccuracyQuery {
            exchange: f.exchange,
            symbol: f.symbol,
            interval: f.interval,
            model: p.model.clone(),
            horizon: p.horizon,
            limit: f.limit,
        })
        .await?;
    Ok(Json(Page::new(data)))
}

/// Query parameters of `/api/v1/probability`.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ProbabilityParams {
    /// Lower-case exchange id, e.g. `binance`.
    #[param(required = true, pattern = r"^[a-z0-9_]{1,32}$")]
    pub exchange: Option<String>,
    /// Canonical `BASE-QUOTE`, e.g. `BTC-USDT`.
    #[param(required = true, pattern = r"^[A-Z0-9]{1,16}(-[A-Z0-9]{1,16}){1,4}$")]
    pub symbol: Option<String>,
    /// Candle interval, e.g. `1m`.
    #[param(required = true, pattern = r"^[1-9][0-9]{0,5}(ms|s|m|h|d)$")]
    pub interval: Option<String>,
    /// Model name (default `ensemble`).
    #[param(min_length = 1, max_length = 64)]
    pub model: Option<String>,
    /// Horizon in bars, ≥ 1.
    #[param(required = true, minimum = 1)]
    pub horizon: Option<i32>,
    /// The price level, > 0.
    #[param(required = true, exclusive_minimum = 0.0)]
    pub level: Option<f64>,
}

/// How likely a price level is, by the newest forecast of a series, model and horizon.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Probability {
    /// The level asked about.
    pub level: f64,
    /// The probability that the close of the target bar is at or above `level`, from the
    /// forecast's nine calibrated quantiles (interpolated in normal score between them; for a
    /// version 1 forecast, from its bands and point).
    pub above: f64,
    /// The probability that the price reaches `level` at any time before the target bar
    /// closes: the reflection principle on the forecast's drift and 95% spread, through the
    /// forecast's online touch calibration (a version 1 forecast has none).
    pub touch: f64,
    /// The forecast both come from.
    pub forecast: Forecast,
}

/// `GET /api/v1/probability?exchange=&symbol=&interval=&model=&horizon=&level=` — the
/// probability that the close at the target bar is at or above `level`, and that the price
/// touches `level` before then, by the newest forecast of that series, model (default
/// `ensemble`) and horizon.
#[utoipa::path(get, path = "/api/v1/probability", tag = "data", params(ProbabilityParams),
    responses((status = 200, body = Probability), (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
pub async fn probability(
    State(state): State<AppState>,
    q: Result<Query<ProbabilityParams>, QueryRejection>,
) -> Result<Json<Probability>, ApiError> {
    let Query(p) = q.map_err(|e| crate::error::query_error(&e))?;
    let required =
        |v: Option<String>, field: &str| v.ok_or_else(|| ApiError::param(field, "required"));
    let exchange = required(p.exchange, "exchange")?;
    exchange_param("exchange", &exchange)?;
    let symbol = required(p.symbol, "symbol")?;
    symbol_param("symbol", &symbol)?;
    let interval = required(p.interval, "interval")?;
    Interval::parse(&interval).map_err(|e| ApiError::param("interval", e))?;
    let model = p.model.unwrap_or_else(|| "ensemble".to_string());
    if !(1..=64).contains(&model.len()) {
        return Err(ApiError::param("model", "must be 1 to 64 characters"));
    }
    let horizon = p
        .horizon
        .ok_or_else(|| ApiError::param("horizon", "required"))?;
    if horizon < 1 {
        return Err(ApiError::param("horizon", "must be at least 1"));
    }
    let level = p
        .level
        .ok_or_else(|| ApiError::param("level", "required"))?;
    if !(level.is_finite() && level > 0.0) {
        return Err(ApiError::param("level", "must be a positive price"));
    }
    let found = state
        .store
        .latest_forecasts(&ForecastQuery {
            exchange: Some(exchange.clone()),
            symbol: Some(symbol.clone()),
            interval: Some(interval.clone()),
            model: Some(model.clone()),
            horizon: Some(horizon),
            from_ms: None,
            to_ms: None,
            limit: 1,
        })
        .await?;
    let Some(f) = found.into_iter().next() else {
        return Err(ApiError::NotFound(format!(
            "no forecast for {exchange} {symbol} {interval}, model {model}, horizon {horizon}"
        )));
    };
    use tickcast_forecast::scoring::touch::{above_of, touch_of};
    let (above, touch) = (above_of(&f, level), touch_of(&f, level));
    let (Some(above), Some(touch)) = (above, touch) else {
        return Err(ApiError::NotFound(format!(
            "the newest forecast for {exchange} {symbol} {interval}, model {model}, horizon \
             {horizon} has no usable bands"
        )));
    };
    Ok(Json(Probability {
        level,
        above,
        touch,
        forecast: f,
    }))
}

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/probability", get(probability))
        .route("/api/v1/symbols", get(symbols))
        .route("/api/v1/candles", get(candles))
        .route("/api/v1/forecasts", get(forecasts))
        .route("/api/v1/forecasts/latest", get(latest_forecasts))
        .route("/api/v1/accuracy", get(accuracy))
}
