//! The OpenAPI 3 document, generated from the handlers' annotations and the record types
//! (served at `/openapi.json`).

use utoipa::OpenApi;

use crate::error::ErrorBody;
use crate::health::{Check, Readiness};
use crate::routes::Page;
use tickcast_consumers::store::{AccuracyRow, SeriesInfo};
use tickcast_pipeline::domain::{Candle, Forecast, Side, Tick};

#[derive(Debug, OpenApi)]
#[openapi(
    info(
        title = "tickcast API",
        description = "Live crypto candles, calibrated forecasts with 80/95% intervals, their rolling accuracy against the naive forecast, and forecast-threshold alerts.",
        license(name = "Apache-2.0")
    ),
    paths(
        crate::health::healthz,
        crate::health::readyz,
        crate::health::metrics,
        crate::routes::symbols,
        crate::routes::candles,
        crate::routes::forecasts,
        crate::routes::latest_forecasts,
        crate::routes::accuracy,
        crate::live::stream,
    ),
    components(schemas(
        ErrorBody, Check, Readiness, Candle, Forecast, Tick, Side, SeriesInfo, AccuracyRow,
        Page<Candle>, Page<Forecast>, Page<SeriesInfo>, Page<AccuracyRow>,
    )),
    tags(
        (name = "data", description = "Series, candles, forecasts and accuracy"),
        (name = "stream", description = "Live records over a websocket"),
        (name = "ops", description = "Health, readiness, metrics"),
    )
)]
pub struct ApiDoc;

/// `GET /openapi.json`.
pub async fn openapi_json() -> axum::Json<utoipa::openapi::OpenApi> {
    axum::Json(ApiDoc::openapi())
}
