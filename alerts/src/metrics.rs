//! Alert metrics, in the process-wide registry (`/metrics`). Labels: state, outcome.

use std::sync::LazyLock;

use prometheus::{IntCounterVec, Opts};
use tickcast_core::telemetry::REGISTRY;

fn counter(name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    // Constant names and labels: the definition is valid (the pattern of `telemetry`).
    let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric definition");
    if let Err(e) = REGISTRY.register(Box::new(c.clone())) {
        tracing::error!(metric = name, error = %e, "metric not registered");
    }
    c
}

/// Alert state transitions emitted, by new state.
pub static EVENTS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter(
        "tickcast_alert_events_total",
        "Alert state transitions emitted",
        &["state"],
    )
});

/// Webhook tries, by outcome (`delivered`, `retry`, `dead`).
pub static WEBHOOK_TRIES: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter(
        "tickcast_alert_webhook_tries_total",
        "Webhook delivery tries by outcome",
        &["outcome"],
    )
});
