//! The HTTP API (axum): versioned JSON under `/api/v1`, a websocket stream of live records, the
//! OpenAPI document, `/healthz`, `/readyz` and Prometheus `/metrics`. It reads the store (and
//! follows the topics for the live stream) and holds no state of its own beyond short caches,
//! so any number can run.
//!
//! Layout:
//! - [`dashboard`] — `GET /`, the built-in live page (assets embedded).
//! - [`routes`] — `/api/v1` read resources (symbols, candles, forecasts, accuracy).
//! - [`alerts`] — `/api/v1/alerts`: rules (mutations need the token) and events.
//! - [`live`] — the fan-out of live records (fed from the topics) and the stream's filters.
//! - [`stream`] — `/api/v1/stream`, the websocket, with its limits.
//! - [`auth`] — bearer-token check for mutations.
//! - [`origin`] — which browser pages may open the stream (same origin, or listed).
//! - [`health`] — `/healthz`, `/readyz` (answered from a background probe), `/metrics`.
//! - [`openapi`] — `/openapi.json`.
//! - [`error`] — the one error type and its JSON bodies.
//! - [`server`] — [`serve`]: the accept loop (header-read timeout, connection limit, a
//!   shutdown that does not wait on idle or slow clients).

pub mod alerts;
pub mod auth;
pub mod cache;
pub mod dashboard;
pub mod error;
pub mod headers;
pub mod health;
pub mod live;
pub mod openapi;
pub mod origin;
pub mod routes;
pub mod server;
pub mod stream;

pub use server::serve;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::get;
use tickcast_core::bus::KafkaSettings;
use tickcast_core::shutdown::Shutdown;
use tickcast_store::Store;
use tower_http::timeout::TimeoutLayer;

use crate::error::ApiError;

/// Request and connection limits.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest request body accepted (413 beyond).
    pub body_bytes: usize,
    /// Longest a request may take (408 beyond). Websocket connections are not limited once
    /// upgraded.
    pub timeout: Duration,
    /// Longest a client may take to send a request's headers, counted from the connection's
    /// start or, on a kept-alive connection, from the end of the previous answer; the
    /// connection is closed beyond it. Without it a client that sends nothing holds a
    /// connection (and a file descriptor) for ever.
    pub header_timeout: Duration,
    /// Most connections served at once (websocket streams among them); more are answered 503
    /// and closed ([`server`]).
    pub max_connections: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            body_bytes: 64 * 1024,
            timeout: Duration::from_secs(10),
            header_timeout: Duration::from_secs(10),
            max_connections: 512,
        }
    }
}

/// What every handler can reach.
#[derive(Debug, Clone)]
pub struct AppState {
    pub store: Arc<dyn Store>,
    /// The live stream, when this process follows the topics.
    pub live: Option<live::Hub>,
    /// The broker `/readyz` checks, when this process uses one.
    pub broker: Option<KafkaSettings>,
    pub auth: auth::Auth,
    pub latest: Arc<cache::TtlCache>,
    pub limits: Limits,
    /// Tells an alert stage in the same process that the rules changed.
    pub rules_changed: Option<tickcast_alerts::ReloadTrigger>,
    /// The stream's limits and its open-stream slots.
    pub streams: stream::Streams,
    /// The latest readiness of the store and broker, kept by [`health::spawn_probe`].
    pub probe: Arc<health::Probe>,
    /// Fires when the server shuts down, so that open streams close; set by [`serve`].
    pub(crate) shutdown: Option<Shutdown>,
}

impl AppState {
    /// Read-only state over a store: no live stream, no broker check, mutations disabled,
    /// `latest` answers cached for 500 ms, default [`Limits`] and [`stream::StreamLimits`],
    /// readiness probed every [`health::PROBE_EVERY`].
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self {
            store,
            live: None,
            broker: None,
            auth: auth::Auth::default(),
            latest: Arc::new(cache::TtlCache::new(Duration::from_millis(500))),
            limits: Limits::default(),
            rules_changed: None,
            streams: stream::Streams::new(stream::StreamLimits::default()),
            probe: Arc::new(health::Probe::new(health::PROBE_EVERY)),
            shutdown: None,
        }
    }

    pub fn with_rules_trigger(mut self, t: tickcast_alerts::ReloadTrigger) -> Self {
        self.rules_changed = Some(t);
        self
    }

    pub(crate) fn notify_rules_changed(&self) {
        if let Some(t) = &self.rules_changed {
            t.notify();
        }
    }

    pub fn with_live(mut self, hub: live::Hub) -> Self {
        self.live = Some(hub);
        self
    }

    pub fn with_broker(mut self, settings: KafkaSettings) -> Self {
        self.broker = Some(settings);
        self
    }

    /// Mutations need `Authorization: Bearer <token>`; `None` disables them.
    pub fn with_token(mut self, token: Option<&str>) -> Self {
        self.auth = auth::Auth::new(token);
        self
    }

    pub fn with_latest_ttl(mut self, ttl: Duration) -> Self {
        self.latest = Arc::new(cache::TtlCache::new(ttl));
        self
    }

    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    pub fn with_stream_limits(mut self, limits: stream::StreamLimits) -> Self {
        self.streams = stream::Streams::new(limits);
        self
    }

    /// How often the background probe behind `/readyz` checks the store and the broker.
    pub fn with_probe_every(mut self, every: Duration) -> Self {
        self.probe = Arc::new(health::Probe::new(every));
        self
    }
}

async fn not_found() -> ApiError {
    ApiError::NotFound("no such route".into())
}

/// The whole application router.
pub fn app(state: AppState) -> Router {
    let limits = state.limits;
    Router::new()
        .route("/", get(dashboard::index))
        .route("/assets/{*path}", get(dashboard::asset))
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(health::metrics))
        .route("/openapi.json", get(openapi::openapi_json))
        .merge(routes::router())
        .route("/api/v1/stream", get(stream::stream))
        .route("/api/v1/alerts/rules", get(alerts::list_rules))
        .route(
            "/api/v1/alerts/rules/{id}",
            get(alerts::get_rule)
                .put(alerts::put_rule)
                .delete(alerts::delete_rule),
        )
        .route("/api/v1/alerts/events", get(alerts::events))
        .fallback(not_found)
        .method_not_allowed_fallback(|| async {
            ApiError::MethodNotAllowed("method not allowed on this route".into())
        })
        .layer(DefaultBodyLimit::max(limits.body_bytes))
        .layer(axum::middleware::map_response(
            move |resp: axum::response::Response| async move {
                headers::harden(resp, limits.body_bytes)
            },
        ))
        .layer(TimeoutLayer::with_status_code(
            axum::http::StatusCode::REQUEST_TIMEOUT,
            limits.timeout,
        ))
        .with_state(state)
}
