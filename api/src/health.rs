//! Liveness, readiness and metrics.
//!
//! `/readyz` answers from the latest result of one background probe ([`spawn_probe`]) that
//! checks the store and the broker every [`PROBE_EVERY`]. It used to check them itself on
//! every call, building a Kafka client on a blocking thread each time: 1,500 concurrent calls
//! made 1,808 threads, so a busy health checker could exhaust the process. Now a call touches
//! neither the store nor the broker and costs the same however many arrive.

use std::sync::{LazyLock, RwLock};
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use prometheus::{IntCounterVec, Opts};
use serde::Serialize;
use tickcast_core::bus::KafkaSettings;
use tickcast_core::shutdown::Shutdown;
use tickcast_store::Store;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::AppState;

/// `GET /healthz` — the process is up.
#[utoipa::path(get, path = "/healthz", tag = "ops",
    responses((status = 200, description = "`ok`", body = String, content_type = "text/plain")))]
pub async fn healthz() -> &'static str {
    "ok"
}

/// One dependency's state.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Check {
    /// `store`, `broker`, or `probe` (no result yet, or a stale one).
    pub name: &'static str,
    pub ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The answer of `/readyz`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Readiness {
    pub ready: bool,
    /// Milliseconds since the probe these checks come from finished; absent before the first.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub age_ms: Option<u64>,
    pub checks: Vec<Check>,
}

/// How long each dependency may take to answer.
const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// How often the background probe checks the dependencies (the pause between two probes).
pub const PROBE_EVERY: Duration = Duration::from_secs(2);

/// The latest probe result, shared by the probe task and `/readyz`.
#[derive(Debug)]
pub struct Probe {
    every: Duration,
    latest: RwLock<Option<Probed>>,
}

#[derive(Debug, Clone)]
struct Probed {
    at: Instant,
    checks: Vec<Check>,
}

impl Probe {
    pub fn new(every: Duration) -> Self {
        Self {
            every,
            latest: RwLock::new(None),
        }
    }

    /// A result older than this is not trusted: the probe is stuck or stopped.
    fn stale_after(&self) -> Duration {
        self.every * 3 + CHECK_TIMEOUT * 2
    }

    fn record(&self, checks: Vec<Check>) {
        let probed = Probed {
            at: Instant::now(),
            checks,
        };
        match self.latest.write() {
            Ok(mut l) => *l = Some(probed),
            Err(poisoned) => *poisoned.into_inner() = Some(probed),
        }
    }

    /// The answer of `/readyz` from the latest result.
    pub fn readiness(&self) -> Readiness {
        let latest = match self.latest.read() {
            Ok(l) => l.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        };
        let Some(Probed { at, mut checks }) = latest else {
            return Readiness {
                ready: false,
                age_ms: None,
                checks: vec![failed("probe", "not probed yet".into())],
            };
        };
        let age = at.elapsed();
        if age > self.stale_after() {
            checks.push(failed(
                "probe",
                format!(
                    "the last probe finished {} ms ago; results older than {} ms are not trusted",
                    age.as_millis(),
                    self.stale_after().as_millis()
                ),
            ));
        }
        Readiness {
            ready: checks.iter().all(|c| c.ok),
            age_ms: Some(u64::try_from(age.as_millis()).unwrap_or(u64::MAX)),
            checks,
        }
    }
}

fn failed(name: &'static str, error: String) -> Check {
    Check {
        name,
        ok: false,
        error: Some(error),
    }
}

fn outcome(name: &'static str, r: anyhow::Result<()>) -> Check {
    match r {
        Ok(()) => Check {
            name,
            ok: true,
            error: None,
        },
        Err(e) => failed(name, format!("{e:#}")),
    }
}

/// Probes the store and (when the state has one) the broker now and then until `shutdown`,
/// keeping the latest result in `state.probe`. [`crate::serve`] starts it.
pub fn spawn_probe(state: &AppState, mut shutdown: Shutdown) -> JoinHandle<()> {
    let (probe, store, broker) = (
        state.probe.clone(),
        state.store.clone(),
        state.broker.clone(),
    );
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = shutdown.wait() => return,
                checks = check_all(store.as_ref(), broker.as_ref()) => probe.record(checks),
            }
            tokio::select! {
                _ = shutdown.wait() => return,
                _ = tokio::time::sleep(probe.every) => {}
            }
        }
    })
}

async fn check_all(store: &dyn Store, broker: Option<&KafkaSettings>) -> Vec<Check> {
    match broker {
        None => vec![check_store(store).await],
        Some(kafka) => {
            let (s, b) = tokio::join!(check_store(store), check_broker(kafka.clone()));
            vec![s, b]
        }
    }
}

/// Pings the store; the result is also `tickcast_store_up{stage="api"}`.
async fn check_store(store: &dyn Store) -> Check {
    let check = match tokio::time::timeout(CHECK_TIMEOUT, store.ping()).await {
        Ok(r) => outcome("store", r),
        Err(_) => failed("store", format!("no answer within {CHECK_TIMEOUT:?}")),
    };
    tickcast_core::telemetry::STORE_UP
        .with_label_values(&["api"])
        .set(i64::from(check.ok));
    check
}

/// Builds a Kafka client and asks for metadata on a thread of its own (librdkafka blocks).
/// Not the runtime's blocking pool: the runtime waits for that at exit, and a check may take
/// its whole timeout. The probe does not wait much past the timeout should the thread hang.
async fn check_broker(kafka: KafkaSettings) -> Check {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let spawned = std::thread::Builder::new()
        .name("readyz-broker".into())
        .spawn(move || {
            let _ = tx.send(kafka.reachable(CHECK_TIMEOUT));
        });
    if let Err(e) = spawned {
        return failed("broker", format!("could not start the check's thread: {e}"));
    }
    match tokio::time::timeout(CHECK_TIMEOUT + Duration::from_secs(1), rx).await {
        Ok(Ok(r)) => outcome("broker", r),
        Ok(Err(_)) => failed("broker", "the check's thread died".into()),
        Err(_) => failed("broker", format!("no answer within {CHECK_TIMEOUT:?}")),
    }
}

/// `GET /readyz` — the latest background probe found the store and, when this process has
/// one, the broker answering; 503 with the failing check otherwise, and before the first
/// probe has finished.
#[utoipa::path(get, path = "/readyz", tag = "ops", responses(
    (status = 200, body = Readiness), (status = 503, body = Readiness)))]
pub async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    let r = state.probe.readiness();
    let status = if r.ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(r))
}

/// Connections, streams and origins refused at a limit, by `limit`
/// (`connections`, `streams`, `origin`).
static REFUSED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    let c = IntCounterVec::new(
        Opts::new(
            "tickcast_api_refused_total",
            "Connections or streams the API refused at a limit (connections, streams, origin)",
        ),
        &["limit"],
    )
    .expect("valid metric definition");
    if let Err(e) = tickcast_core::telemetry::REGISTRY.register(Box::new(c.clone())) {
        tracing::warn!("tickcast_api_refused_total is not exported: {e}");
    }
    c
});

/// Counts one refusal at `limit`.
pub(crate) fn refused(limit: &str) {
    REFUSED.with_label_values(&[limit]).inc();
}

/// `GET /metrics` — Prometheus text format.
#[utoipa::path(get, path = "/metrics", tag = "ops",
    responses((status = 200, description = "Prometheus text exposition", body = String, content_type = "text/plain")))]
pub async fn metrics() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        tickcast_core::telemetry::render(),
    )
}

/// Serves `GET /metrics` alone on `listener` until `shutdown` fires, for processes that run
/// no API (`tickcast run`, `tickcast ingest`). Every other path is 404.
pub async fn serve_metrics(
    listener: tokio::net::TcpListener,
    mut shutdown: Shutdown,
) -> anyhow::Result<()> {
    let app = axum::Router::new().route("/metrics", axum::routing::get(metrics));
    axum::serve(listener, app)
        .with_graceful_shutdown(async move { shutdown.wait().await })
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn serve_metrics_answers_get_metrics_and_stops_on_shutdown() {
        tickcast_core::telemetry::FEED_TRADES
            .with_label_values(&["serve_metrics_test"])
            .inc_by(3);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let (trigger, signal) = tickcast_core::shutdown::channel();
        let server = tokio::spawn(serve_metrics(listener, signal));

        let resp = reqwest::get(format!("http://{addr}/metrics"))
            .await
            .expect("GET /metrics");
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers()["content-type"], "text/plain; version=0.0.4");
        let body = resp.text().await.expect("body");
        assert!(
            body.contains("tickcast_feed_trades_total{exchange=\"serve_metrics_test\"} 3"),
            "{body}"
        );
        let other = reqwest::get(format!("http://{addr}/"))
            .await
            .expect("GET /");
        assert_eq!(other.status(), 404);

        trigger.fire();
        let stopped = tokio::time::timeout(std::time::Duration::from_secs(5), server)
            .await
            .expect("server stops on shutdown")
            .expect("server task");
        assert!(stopped.is_ok(), "{stopped:?}");
    }
}
