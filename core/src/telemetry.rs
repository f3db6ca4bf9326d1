//! Metrics (one Prometheus registry for the process; the API crate serves them over HTTP)
//! and logging set-up. Label values are few: stage, exchange, table, topic and partition.

use std::sync::LazyLock;

use prometheus::{
    CounterVec, Encoder as _, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

/// The process-wide registry that `/metrics` exposes.
pub static REGISTRY: LazyLock<Registry> = LazyLock::new(Registry::new);

fn counter(name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric definition");
    REGISTRY
        .register(Box::new(c.clone()))
        .expect("metric registered once");
    c
}

fn sum_counter(name: &str, help: &str, labels: &[&str]) -> CounterVec {
    let c = CounterVec::new(Opts::new(name, help), labels).expect("valid metric definition");
    REGISTRY
        .register(Box::new(c.clone()))
        .expect("metric registered once");
    c
}

fn gauge(name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    let g = IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric definition");
    REGISTRY
        .register(Box::new(g.clone()))
        .expect("metric registered once");
    g
}

fn histogram(name: &str, help: &str, labels: &[&str], buckets: Vec<f64>) -> HistogramVec {
    let h = HistogramVec::new(HistogramOpts::new(name, help).buckets(buckets), labels)
        .expect("valid metric definition");
    REGISTRY
        .register(Box::new(h.clone()))
        .expect("metric registered once");
    h
}

/// Messages handled by a stage.
pub static STAGE_MESSAGES: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter(
        "tickcast_stage_messages_total",
        "Messages handled by a stage",
        &["stage"],
    )
});
/// Messages sent to the dead-letter topic.
pub static DEAD_LETTERS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter(
        "tickcast_dead_letters_total",
        "Messages sent to the dead-letter topic",
        &["stage"],
    )
});
/// Messages collected into a batch whose partition was revoked before the batch ran: left to
/// the partition's new owner.
pub static REVOKED_DROPPED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter(
        "tickcast_stage_revoked_dropped_total",
        "Messages of revoked partitions dropped from a collected batch (the new owner reads them)",
        &["stage"],
    )
});
/// Websocket frames received per exchange.
pub static FEED_FRAMES: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter(
        "tickcast_feed_frames_total",
        "Websocket frames received",
        &["exchange"],
    )
});
/// Trades published per exchange.
pub static FEED_TRADES: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter(
        "tickcast_feed_trades_total",
        "Trades published to Kafka",
        &["exchange"],
    )
});
/// Frames that could not be decoded.
pub static FEED_ERRORS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter(
        "tickcast_feed_parse_errors_total",
        "Frames that could not be decoded",
        &["exchange"],
    )
});
/// Feed reconnects.
pub static FEED_RECONNECTS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter(
        "tickcast_feed_reconnects_total",
        "Feed reconnects",
        &["exchange"],
    )
});
/// Gaps in consecutive trade ids found per feed.
pub static FEED_GAPS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter(
        "tickcast_feed_gaps_total",
        "Gaps in consecutive trade ids found",
        &["exchange"],
    )
});
/// Trades missing from the stream: found missing, filled from REST, or given up on.
pub static FEED_GAP_TRADES: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter(
        "tickcast_feed_gap_trades_total",
        "Trades missing from the websocket stream, by outcome (missing, filled, unfilled)",
        &["exchange", "outcome"],
    )
});
/// Trades dropped because they were seen already (overlapping connections, replays).
pub static FEED_DUPLICATES: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter(
        "tickcast_feed_duplicates_total",
        "Trades dropped as duplicates by trade id",
        &["exchange"],
    )
});
/// Open websocket connections per feed.
pub static FEED_CONNECTIONS: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    gauge(
        "tickcast_feed_connections",
        "Open websocket connections",
        &["exchange"],
    )
});
/// Receive time minus exchange time of each trade, seconds.
pub static FEED_LAG: LazyLock<HistogramVec> = LazyLock::new(|| {
    histogram(
        "tickcast_feed_lag_seconds",
        "Receive time minus exchange trade time",
        &["exchange"],
        vec![
            0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 30.0,
        ],
    )
});

/// Lets one log line through per period and counts what it held back, so a flood of bad
/// frames cannot flood the log.
#[derive(Debug)]
pub struct LogLimiter {
    period: std::time::Duration,
    last: Option<std::time::Instant>,
    suppressed: u64,
}

impl LogLimiter {
    pub fn new(period: std::time::Duration) -> Self {
        Self {
            period,
            last: None,
            suppressed: 0,
        }
    }

    /// `Some(n)` when a line may be logged now, `n` being the lines held back since the last
    /// one; `None` when this one should be held back.
    pub fn allow(&mut self, now: std::time::Instant) -> Option<u64> {
        match self.last {
            Some(t) if now.duration_since(t) < self.period => {
                self.suppressed += 1;
                None
            }
            _ => {
                self.last = Some(now);
                Some(std::mem::take(&mut self.suppressed))
            }
        }
    }
}

/// Ticks that arrived after their window closed.
pub static LATE_TICKS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter(
        "tickcast_late_ticks_total",
        "Ticks that arrived after their window closed",
        &["exchange"],
    )
});
/// Ticks the candles stage refused because they cannot count without an overflow (a window's
/// volume or end): dead-lettered with the reason.
pub static REJECTED_TICKS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter(
        "tickcast_candle_rejected_ticks_total",
        "Ticks refused by the candles stage because they would overflow a window (dead-lettered)",
        &["exchange"],
    )
});
/// (late tick, interval) pairs: a tick late for two of the stage's intervals counts twice here
/// and once in [`LATE_TICKS`].
pub static LATE_TICK_WINDOWS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter(
        "tickcast_late_tick_windows_total",
        "Late ticks per interval whose window had already closed",
        &["exchange", "interval"],
    )
});
/// Ticks re-read after a restart whose windows had all been emitted before it: skipped.
pub static REPLAYED_TICKS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter(
        "tickcast_candle_replayed_ticks_total",
        "Ticks re-read after a restart whose windows were already emitted (skipped)",
        &["exchange"],
    )
});
/// Explicit candles for windows without trades (trades = 0, OHLC = previous close).
pub static EMPTY_CANDLES: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter(
        "tickcast_empty_candles_total",
        "Empty windows emitted as explicit candles",
        &["exchange", "interval"],
    )
});
/// Gaps longer than the empty-window bound: the rest of the gap is left without candles.
pub static CANDLE_GAPS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter(
        "tickcast_candle_gaps_total",
        "Gaps longer than the empty-window bound, left unfilled",
        &["exchange", "interval"],
    )
});
/// Windows closed by the idle rule (the exchange's watermark moved on) rather than by the
/// symbol's own watermark.
pub static IDLE_CLOSED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter(
        "tickcast_candle_idle_closed_total",
        "Windows of idle symbols closed by the exchange watermark",
        &["exchange", "interval"],
    )
});
/// Candle-state entries left out of a commit because the state exceeded its byte budget.
pub static CANDLE_STATE_TRUNCATED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter(
        "tickcast_candle_state_truncated_total",
        "Candle state entries dropped from commit metadata to fit its byte budget",
        &["stage"],
    )
});
/// Candles closed.
pub static CANDLES: LazyLock<IntCounterVec> =
    LazyLock::new(|| counter("tickcast_candles_total", "Candles closed", &["exchange"]));
/// Forecasts issued per model.
pub static FORECASTS: LazyLock<IntCounterVec> =
    LazyLock::new(|| counter("tickcast_forecasts_total", "Forecasts issued", &["model"]));
/// Candles the forecast stage skipped as redeliveries (already folded into its state).
pub static FORECASTS_SKIPPED: LazyLock<prometheus::IntCounter> = LazyLock::new(|| {
    let c = prometheus::IntCounter::new(
        "tickcast_forecast_redelivered_candles_total",
        "Candles the forecast stage skipped because its state already held them",
    )
    .expect("valid metric definition");
    REGISTRY
        .register(Box::new(c.clone()))
        .expect("metric registered once");
    c
});
/// Forecasts scored against their target bar.
pub static FORECAST_SCORED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter(
        "tickcast_forecast_scored_total",
        "Forecasts scored when their target bar closed",
        &["model", "horizon"],
    )
});
/// Scored forecasts whose interval covered the actual.
pub static FORECAST_COVERED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter(
        "tickcast_forecast_covered_total",
        "Scored forecasts whose interval at `level` covered the actual",
        &["model", "horizon", "level"],
    )
});
/// Sums of scored errors (see the forecast scorer's docs for the kinds).
pub static FORECAST_ERROR_SUM: LazyLock<CounterVec> = LazyLock::new(|| {
    let c = CounterVec::new(
        Opts::new(
            "tickcast_forecast_abs_error_total",
            "Sums of scored forecast errors: kind=relative (|err|/last), naive_relative, scaled (|err|/one-step naive MAE)",
        ),
        &["model", "horizon", "kind"],
    )
    .expect("valid metric definition");
    REGISTRY
        .register(Box::new(c.clone()))
        .expect("metric registered once");
    c
});
/// Forecasts whose nine quantiles were scored (those with a usable spread).
pub static FORECAST_QUANTILE_SCORED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter(
        "tickcast_forecast_quantile_scored_total",
        "Forecasts whose quantiles were scored when their target bar closed",
        &["model", "horizon"],
    )
});
/// Of those, the outcomes at or below each quantile (PIT: share ÷ scored ≈ level).
pub static FORECAST_QUANTILE_BELOW: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter(
        "tickcast_forecast_quantile_below_total",
        "Scored outcomes at or below the forecast's quantile at `level`",
        &["model", "horizon", "level"],
    )
});
/// Sums of CRPS relative to the last close (see the forecast scorer's docs for the kinds).
pub static FORECAST_CRPS_SUM: LazyLock<CounterVec> = LazyLock::new(|| {
    sum_counter(
        "tickcast_forecast_crps_total",
        "Sums of CRPS / last: kind=relative (every scored forecast), paired and naive_paired (where naive had a forecast for the same bar and horizon)",
        &["model", "horizon", "kind"],
    )
});
/// Touch outcomes at ±1 and ±2 spreads, and sums of their Brier scores.
pub static FORECAST_TOUCH_SUM: LazyLock<CounterVec> = LazyLock::new(|| {
    sum_counter(
        "tickcast_forecast_touch_total",
        "Touch probabilities scored: kind=outcomes, touched, brier (sum of squared errors), base_brier (the trailing base rate's)",
        &["model", "horizon", "kind"],
    )
});
/// Touch outcomes per tenth of the published probability (for the calibration error).
pub static FORECAST_TOUCH_BIN: LazyLock<CounterVec> = LazyLock::new(|| {
    sum_counter(
        "tickcast_forecast_touch_bin_total",
        "Touch probabilities by bin (tenths of p): kind=outcomes, p (sum of probabilities), touched",
        &["model", "horizon", "bin", "kind"],
    )
});
/// Rows written by the sink per table.
pub static SINK_ROWS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter(
        "tickcast_sink_rows_total",
        "Rows upserted by the sink",
        &["table"],
    )
});
/// Whether a stage's store answers: 1 up, 0 while the stage waits out an outage. Set by the
/// stage runner when a batch or checkpoint fails (and the store does not answer) and when the
/// store is back.
pub static STORE_UP: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    gauge(
        "tickcast_store_up",
        "1 while a stage's store answers, 0 while the stage waits for it",
        &["stage"],
    )
});
/// Failures a stage runner recovered from, by cause: `store` (an outage waited out),
/// `checkpoint` (a checkpoint write retried), `publish` (a send retried), `isolate` (a batch that
/// failed or panicked with the store up, re-read record by record to find the cause).
pub static STAGE_RECOVERIES: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter(
        "tickcast_stage_recoveries_total",
        "Failures a stage recovered from without exiting, by cause",
        &["stage", "cause"],
    )
});
/// Open candle windows.
pub static OPEN_WINDOWS: LazyLock<IntGaugeVec> =
    LazyLock::new(|| gauge("tickcast_open_windows", "Open candle windows", &["stage"]));

/// Messages a stage has not read yet, per input partition: the partition's high watermark minus
/// the stage's position in it. Reported by the stage runner every few seconds; a partition
/// leaves the gauge when it is revoked.
pub static CONSUMER_LAG: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    gauge(
        "tickcast_consumer_lag",
        "Messages not yet read by a stage: partition high watermark minus the stage's position",
        &["stage", "topic", "partition"],
    )
});
/// End-to-end latency: wall-clock time when a stage produced or stored a record minus the event
/// time of the newest trades it reflects (the close of its bar: a candle's `close_ms`, a
/// forecast's base bar close). `record` is `candle` or `forecast`.
pub static END_TO_END: LazyLock<HistogramVec> = LazyLock::new(|| {
    histogram(
        "tickcast_end_to_end_latency_seconds",
        "Time from the close of a record's bar (event time) to the stage producing or storing it",
        &["stage", "record"],
        vec![
            0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
        ],
    )
});

/// Observes [`END_TO_END`] once per event time (epoch ms) at wall-clock `now_ms`; an event
/// time in the future (clock skew) counts as zero.
pub fn observe_end_to_end(
    stage: &str,
    record: &str,
    now_ms: i64,
    events_ms: impl IntoIterator<Item = i64>,
) {
    // Observed locally and added to the shared histogram once (the forecast stage observes
    // some 24 forecasts per series and bar).
    let h = END_TO_END.with_label_values(&[stage, record]).local();
    for event in events_ms {
        h.observe(now_ms.saturating_sub(event).max(0) as f64 / 1000.0);
    }
    h.flush();
}

/// The event time a forecast reflects: the close of its base bar (`base_ms` plus one bar, the
/// bar length being `(target_ms − base_ms) / horizon`).
pub fn forecast_event_ms(f: &crate::domain::Forecast) -> i64 {
    let bar = (f.target_ms - f.base_ms) / i64::from(f.horizon.max(1));
    f.base_ms + bar
}

/// Prometheus text exposition of every metric.
pub fn render() -> String {
    let mut buf = Vec::new();
    let _ = TextEncoder::new().encode(&REGISTRY.gather(), &mut buf);
    String::from_utf8(buf).unwrap_or_default()
}

/// Installs the log subscriber: `RUST_LOG` (default `info`), to stderr.
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,rdkafka=warn,sqlx=warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Forecast, SCHEMA_VERSION};

    fn forecast(horizon: u32, base_ms: i64, target_ms: i64) -> Forecast {
        Forecast {
            v: SCHEMA_VERSION,
            exchange: "binance".into(),
            symbol: "BTC-USDT".into(),
            interval: "1m".into(),
            model: "naive".into(),
            horizon,
            base_ms,
            target_ms,
            last: 1.0,
            point: 1.0,
            lo80: 1.0,
            hi80: 1.0,
            lo95: 1.0,
            hi95: 1.0,
            ..Default::default()
        }
    }

    #[test]
    fn forecast_event_time_is_the_close_of_its_base_bar() {
        // (horizon, base_ms, target_ms, event_ms)
        let cases = [
            (1, 60_000, 120_000, 120_000),
            (5, 60_000, 360_000, 120_000),
            (15, 0, 4_500_000, 300_000),
        ];
        for (h, base, target, want) in cases {
            assert_eq!(forecast_event_ms(&forecast(h, base, target)), want, "h={h}");
        }
    }

    #[test]
    fn end_to_end_latency_is_seconds_since_the_event_clamped_at_zero() {
        observe_end_to_end("e2e_test", "candle", 10_000, [7_500, 9_000, 12_000]);
        let h = END_TO_END.with_label_values(&["e2e_test", "candle"]);
        assert_eq!(h.get_sample_count(), 3);
        assert_eq!(h.get_sample_sum(), 3.5);
    }
}
