//! The streaming core every tickcast stage shares: the messages, the Kafka bus and the one
//! stage runner, the embedded broker, exchange connectors and the ingest loop, candle windowing,
//! and the replay exchange.
//!
//! Layout:
//! - [`domain`] — `Tick`, `Candle`, `Forecast`, `Alert`.
//! - [`alert_rule`] — an alert rule's format (JSON and YAML) and its validation.
//! - [`codec`] — topic names, keys, strict JSON decoding.
//! - [`interval`] — candle intervals and window arithmetic.
//! - [`bus`] — Kafka settings, producer ([`bus::Publisher`]), consumers, topic creation.
//! - [`embedded`] — the in-process broker (librdkafka mock cluster).
//! - [`stage`] — the stage runner: batch → handler → produce → store offsets.
//! - [`deadletter`] — poison messages with their reason.
//! - [`candles`] — the candles stage (event-time OHLCV windows).
//! - [`connectors`] — the `Connector` trait every exchange implements, and its parsing helpers.
//! - [`exchanges`] — one folder per exchange (connector, replay server, fixtures) and the one
//!   table that names them.
//! - [`ingest`] — the feed session loop.
//! - [`simulator`], [`replay`] — the seeded market and the local exchange that serves it.
//! - [`shutdown`], [`telemetry`] — shutdown signal, metrics and logs.

pub mod alert_rule;
pub mod bus;
pub mod candles;
pub mod codec;
pub mod connectors;
pub mod deadletter;
pub mod domain;
pub mod embedded;
pub mod exchanges;
pub mod ingest;
pub mod interval;
pub mod replay;
pub mod shutdown;
pub mod simulator;
pub mod stage;
pub mod telemetry;

/// Wall-clock time, epoch milliseconds.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
