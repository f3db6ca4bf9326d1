//! The OpenAPI 3 document, generated from the handlers' annotations and the record types
//! (served at `/openapi.json`).

use utoipa::OpenApi;

use tickcast_alerts::RuleSpec;
use tickcast_core::alert_rule::{Bound, Kind as RuleKind, Odds};
use tickcast_core::domain::{Alert, AlertState};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};

use crate::alerts::RuleOut;
use crate::error::ErrorBody;
use crate::health::{Check, Readiness};
use crate::routes::Page;
use tickcast_core::domain::{Candle, Forecast, Side, Tick};
use tickcast_store::{AccuracyRow, SeriesInfo};

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
        crate::routes::probability,
        crate::stream::stream,
        crate::alerts::list_rules,
        crate::alerts::get_rule,
        crate::alerts::put_rule,
        crate::alerts::delete_rule,
        crate::alerts::events,
    ),
    components(schemas(
        ErrorBody, Check, Readiness, Candle, Forecast, Tick, Side, SeriesInfo, AccuracyRow,
        crate::routes::Probability,
        Page<Candle>, Page<Forecast>, Page<SeriesInfo>, Page<AccuracyRow>,
        Alert, AlertState, RuleSpec, RuleKind, Bound, Odds, RuleOut, Page<RuleOut>, Page<Alert>,
    )),
    modifiers(&BearerAuth),
    tags(
        (name = "data", description = "Series, candles, forecasts and accuracy"),
        (name = "stream", description = "Live records over a websocket"),
        (name = "alerts", description = "Alert rules (mutations need the bearer token) and events"),
        (name = "ops", description = "Health, readiness, metrics"),
    )
)]
pub struct ApiDoc;

/// The `bearer` security scheme the mutations name.
#[derive(Debug)]
struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// `GET /openapi.json`.
pub async fn openapi_json() -> axum::Json<utoipa::openapi::OpenApi> {
    axum::Json(ApiDoc::openapi())
}
