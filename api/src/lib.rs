//! The HTTP API (axum): versioned JSON under `/api/v1`, `/healthz` and Prometheus `/metrics`.
//! It reads the store and holds no state of its own, so any number can run.
//!
//! Layout:
//! - [`routes`] — `/api/v1` resources (candles, forecasts).
//! - [`error`] — the one error type and its JSON bodies.

pub mod error;
pub mod routes;

use std::sync::Arc;

use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use tickcast_consumers::store::Store;
use tickcast_pipeline::shutdown::Shutdown;
use tokio::net::TcpListener;

/// What every handler can reach.
#[derive(Debug, Clone)]
pub struct AppState {
    pub store: Arc<dyn Store>,
}

async fn healthz() -> &'static str {
    "ok"
}

async fn metrics() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        tickcast_pipeline::telemetry::render(),
    )
}

async fn not_found() -> impl IntoResponse {
    (
        StatusCode::NOT_FOUND,
        axum::Json(serde_json::json!({"error": "no such route"})),
    )
}

/// The whole application router.
pub fn app(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .merge(routes::router())
        .fallback(not_found)
        .with_state(state)
}

/// Serves the API on `listener` until `shutdown` fires.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    mut shutdown: Shutdown,
) -> anyhow::Result<()> {
    axum::serve(listener, app(state))
        .with_graceful_shutdown(async move { shutdown.wait().await })
        .await?;
    Ok(())
}
