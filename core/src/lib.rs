//! The streaming core every tickcast stage shares: the messages and their codec, the alert rule
//! format, the Kafka bus and the one stage runner, the embedded broker, telemetry.
//!
//! Layout:
//! - [`domain`] — `Tick`, `Candle`, `Forecast`, `Alert`.
//! - [`alert_rule`] — an alert rule's format (JSON and YAML) and its validation.
//! - [`codec`] — topic names, keys, symbols, strict JSON decoding.
//! - [`interval`] — candle intervals and window arithmetic.
//! - [`bus`] — Kafka settings, producer ([`bus::Publisher`]), consumers, topic creation.
//! - [`embedded`] — the in-process broker (librdkafka mock cluster).
//! - [`stage`] — the stage runner: batch → handler → produce → store offsets.
//! - [`deadletter`] — poison messages with their reason.
//! - [`rng`] — a seeded generator with the same stream everywhere.
//! - [`shutdown`], [`telemetry`] — shutdown signal, metrics and logs.

pub mod alert_rule;
pub mod bus;
pub mod codec;
pub mod deadletter;
pub mod domain;
pub mod embedded;
pub mod interval;
pub mod rng;
pub mod shutdown;
pub mod stage;
pub mod telemetry;

/// Wall-clock time, epoch milliseconds.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
