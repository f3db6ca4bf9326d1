//! The replay exchange's HTTP side: one listener, websocket upgrades on any path, and plain
//! `GET`s answered by the exchange's REST trades endpoint.

use axum::Router;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::{OriginalUri, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse as _, Response};

use super::conn::{self, Shared};
use tickcast_core::shutdown::Shutdown;

#[derive(Debug, Clone)]
pub struct AppState {
    pub shared: Shared,
    pub shutdown: Shutdown,
}

pub fn router(state: AppState) -> Router {
    Router::new().fallback(handle).with_state(state)
}

async fn handle(
    State(state): State<AppState>,
    OriginalUri(uri): OriginalUri,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let path = uri
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| uri.path().to_string());
    match ws {
        Ok(ws) => {
            ws.on_upgrade(move |socket| conn::serve(socket, path, state.shared, state.shutdown))
        }
        Err(_) => {
            let reply = state.shared.market.rest(state.shared.sim.as_ref(), &path);
            let (status, body) = match reply {
                Some(r) => (
                    StatusCode::from_u16(r.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
                    r.body,
                ),
                None => (
                    StatusCode::NOT_FOUND,
                    serde_json::json!({"error": "not found", "path": path}).to_string(),
                ),
            };
            (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
        }
    }
}
