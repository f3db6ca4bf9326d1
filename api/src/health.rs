//! Liveness, readiness and metrics.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use serde::Serialize;

use crate::AppState;

/// `GET /healthz` — the process is up.
#[utoipa::path(get, path = "/healthz", tag = "ops",
    responses((status = 200, description = "`ok`", body = String, content_type = "text/plain")))]
pub async fn healthz() -> &'static str {
    "ok"
}

/// One dependency's state.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Check {
    pub name: &'static str,
    pub ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The answer of `/readyz`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Readiness {
    pub ready: bool,
    pub checks: Vec<Check>,
}

/// How long each dependency may take to answer.
const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// `GET /readyz` — the store answers and, when this process has one, the broker does too;
/// 503 with the failing check otherwise.
#[utoipa::path(get, path = "/readyz", tag = "ops", responses(
    (status = 200, body = Readiness), (status = 503, body = Readiness)))]
pub async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    let mut checks = Vec::new();
    let store = tokio::time::timeout(CHECK_TIMEOUT, state.store.ping()).await;
    checks.push(match store {
        Ok(Ok(())) => Check {
            name: "store",
            ok: true,
            error: None,
        },
        Ok(Err(e)) => Check {
            name: "store",
            ok: false,
            error: Some(format!("{e:#}")),
        },
        Err(_) => Check {
            name: "store",
            ok: false,
            error: Some("timed out".into()),
        },
    });
    if let Some(kafka) = state.broker.clone() {
        let r = tokio::task::spawn_blocking(move || kafka.reachable(CHECK_TIMEOUT)).await;
        checks.push(match r {
            Ok(Ok(())) => Check {
                name: "broker",
                ok: true,
                error: None,
            },
            Ok(Err(e)) => Check {
                name: "broker",
                ok: false,
                error: Some(format!("{e:#}")),
            },
            Err(e) => Check {
                name: "broker",
                ok: false,
                error: Some(e.to_string()),
            },
        });
    }
    let ready = checks.iter().all(|c| c.ok);
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(Readiness { ready, checks }))
}

/// `GET /metrics` — Prometheus text format.
#[utoipa::path(get, path = "/metrics", tag = "ops",
    responses((status = 200, description = "Prometheus text exposition", body = String, content_type = "text/plain")))]
pub async fn metrics() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        tickcast_pipeline::telemetry::render(),
    )
}
