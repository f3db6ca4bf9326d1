//! One symbol's candles of one interval: the open windows, how far windows are closed, and what
//! an empty window repeats (the previous close).

use std::collections::BTreeMap;

use rust_decimal::Decimal;

use super::CandleStats;
use tickcast_core::domain::{Candle, SCHEMA_VERSION, Tick};
use tickcast_core::interval::Interval;
use tickcast_core::telemetry;

/// An interval and its label, computed once.
#[derive(Debug, Clone)]
pub(super) struct Spec {
    pub interval: Interval,
    pub label: String,
}

impl Spec {
    pub fn new(interval: Interval) -> Self {
        Self {
            interval,
            label: interval.to_string(),
        }
    }
}

/// Where closed candles go, and the symbol they belong to.
#[derive(Debug)]
pub(super) struct Emit<'a> {
    pub exchange: &'a str,
    pub symbol: &'a str,
    pub max_empty: u32,
    pub out: &'a mut Vec<Candle>,
    pub stats: &'a mut CandleStats,
}

/// An open window.
#[derive(Debug)]
pub(super) struct Window {
    pub candle: Candle,
    /// Offset of its first tick in the partition.
    pub first_offset: i64,
    /// Event times of the ticks that set `open` and `close`.
    open_ts: i64,
    close_ts: i64,
}

/// The last candle with trades, while empty windows may follow it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Tail {
    pub close: Decimal,
    /// End of that candle: where the current run of empty windows began.
    pub gap_start: i64,
}

#[derive(Debug)]
pub(super) struct Series {
    pub open: BTreeMap<i64, Window>,
    /// Every window starting before this was emitted (or skipped); aligned to the interval.
    pub closed_until: i64,
    pub tail: Option<Tail>,
}

impl Series {
    pub fn new(closed_until: i64) -> Self {
        Self {
            open: BTreeMap::new(),
            closed_until,
            tail: None,
        }
    }

    pub fn open_count(&self) -> usize {
        self.open.len()
    }

    pub fn first_offset(&self) -> Option<i64> {
        self.open.values().map(|w| w.first_offset).min()
    }

    /// Why the trade cannot be added to the window starting at `start` without an overflow: the
    /// window's end, its volume or its trade count. `None`: [`Series::apply`] is safe.
    pub fn overflow(&self, start: i64, spec: &Spec, t: &Tick) -> Option<String> {
        if start.checked_add(spec.interval.ms()).is_none() {
            return Some(format!(
                "event time {} leaves no room for a {} window",
                t.ts_ms, spec.label
            ));
        }
        let w = self.open.get(&start)?;
        if w.candle.volume.checked_add(t.size).is_none() {
            return Some(format!(
                "volume of the {} window at {start} would overflow ({} + {})",
                spec.label, w.candle.volume, t.size
            ));
        }
        if w.candle.trades.checked_add(1).is_none() {
            return Some(format!(
                "trade count of the {} window at {start} would overflow",
                spec.label
            ));
        }
        None
    }

    /// Adds a trade to the window starting at `start` (not closed; [`Series::overflow`] said it
    /// fits). The open is the earliest trade by event time and the close the latest (ties: the
    /// one read first, resp. last), so a tick that arrives out of order within the allowed
    /// lateness does not become the close.
    pub fn apply(&mut self, start: i64, spec: &Spec, t: &Tick, offset: i64) {
        let w = self.open.entry(start).or_insert_with(|| Window {
            candle: Candle {
                v: SCHEMA_VERSION,
                exchange: t.exchange.clone(),
                symbol: t.symbol.clone(),
                interval: spec.label.clone(),
                open_ms: start,
                close_ms: start + spec.interval.ms(),
                open: t.price,
                high: t.price,
                low: t.price,
                close: t.price,
                volume: Decimal::ZERO,
                trades: 0,
            },
            first_offset: offset,
            open_ts: t.ts_ms,
            close_ts: t.ts_ms,
        });
        w.first_offset = w.first_offset.min(offset);
        let c = &mut w.candle;
        if t.ts_ms < w.open_ts {
            w.open_ts = t.ts_ms;
            c.open = t.price;
        }
        if t.ts_ms >= w.close_ts {
            w.close_ts = t.ts_ms;
            c.close = t.price;
        }
        c.high = c.high.max(t.price);
        c.low = c.low.min(t.price);
        c.volume += t.size;
        c.trades += 1;
    }

    /// Emits every window starting before `target` (aligned): open windows as they are, and
    /// the empty ones between them as explicit empty candles, bounded per gap. `own_wm` tells
    /// windows closed by the symbol's own watermark from those closed by the idle rule.
    pub fn close_until(&mut self, target: i64, spec: &Spec, own_wm: i64, emit: &mut Emit<'_>) {
        let ms = spec.interval.ms();
        while self.closed_until < target {
            let next = self
                .open
                .first_key_value()
                .map(|(&s, _)| s)
                .filter(|&s| s < target);
            let gap_end = next.unwrap_or(target);
            if gap_end > self.closed_until {
                self.fill_empty(gap_end, spec, emit);
                self.closed_until = gap_end;
            }
            let Some(start) = next else { continue };
            let Some(w) = self.open.remove(&start) else {
                continue;
            };
            if w.candle.close_ms > own_wm {
                emit.stats.idle_closed += 1;
                telemetry::IDLE_CLOSED
                    .with_label_values(&[emit.exchange, &spec.label])
                    .inc();
            }
            self.tail = Some(Tail {
                close: w.candle.close,
                gap_start: start + ms,
            });
            self.closed_until = start + ms;
            emit.stats.candles += 1;
            emit.out.push(w.candle);
        }
    }

    /// Empty candles for the windows in `[closed_until, until)`, repeating the previous close;
    /// at most `max_empty` per gap, after which the gap is counted and left open.
    fn fill_empty(&mut self, until: i64, spec: &Spec, emit: &mut Emit<'_>) {
        let ms = spec.interval.ms();
        let Some(tail) = &self.tail else { return };
        let (close, gap_start) = (tail.close, tail.gap_start);
        let mut start = self.closed_until.max(gap_start);
        while start < until {
            let nth = (start - gap_start) / ms + 1;
            if nth > i64::from(emit.max_empty) {
                emit.stats.unfilled_gaps += 1;
                telemetry::CANDLE_GAPS
                    .with_label_values(&[emit.exchange, &spec.label])
                    .inc();
                self.tail = None;
                return;
            }
            emit.stats.candles += 1;
            emit.stats.empty_candles += 1;
            telemetry::EMPTY_CANDLES
                .with_label_values(&[emit.exchange, &spec.label])
                .inc();
            emit.out.push(Candle {
                v: SCHEMA_VERSION,
                exchange: emit.exchange.to_string(),
                symbol: emit.symbol.to_string(),
                interval: spec.label.clone(),
                open_ms: start,
                close_ms: start + ms,
                open: close,
                high: close,
                low: close,
                close,
                volume: Decimal::ZERO,
                trades: 0,
            });
            start += ms;
        }
    }
}
