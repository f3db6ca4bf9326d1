//! The candles stage: ticks → event-time OHLCV windows per exchange and symbol.
//!
//! A window `[start, start + interval)` closes when the symbol's watermark (the largest event
//! time seen minus the allowed lateness) reaches its end. A tick for a window that has already
//! closed is late: it is counted and sent to the dead-letter topic, never dropped silently.
//! Trade ids are de-duplicated within a window (a duplicate carries the same event time, so it
//! always lands in the same window).
//!
//! Offsets: the stage stores, per partition, the offset of the oldest tick still held in an open
//! window, so a restart re-reads exactly what open windows contain.

use std::collections::{BTreeMap, HashMap, HashSet};

use anyhow::Result;
use rust_decimal::Decimal;

use crate::bus::OutRecord;
use crate::codec::{self, Message as _};
use crate::deadletter::DeadLetter;
use crate::domain::{Candle, SCHEMA_VERSION, Tick};
use crate::interval::Interval;
use crate::stage::{Effects, Handler, Inbound, batch_offsets};
use crate::telemetry;

/// Windowing settings.
#[derive(Debug, Clone, Copy)]
pub struct CandleOptions {
    pub interval: Interval,
    /// How far behind the newest event time a tick may arrive and still count.
    pub allowed_lateness_ms: i64,
}

#[derive(Debug)]
struct Window {
    candle: Candle,
    ids: HashSet<String>,
    /// (topic, partition) → offset of the first tick of this window.
    first_offset: (String, i32, i64),
}

#[derive(Debug, Default)]
struct SymbolState {
    open: BTreeMap<i64, Window>,
    max_ts: i64,
    /// End of the newest window that has closed; earlier ticks are late.
    closed_until: i64,
}

/// Aggregates ticks into candles. [`Handler`] for the stage runner; tests call
/// [`CandleBuilder::push`] directly.
#[derive(Debug)]
pub struct CandleBuilder {
    opts: CandleOptions,
    label: String,
    symbols: HashMap<(String, String), SymbolState>,
    output_topic: String,
}

/// What one tick did.
#[derive(Debug, PartialEq, Eq)]
pub enum Pushed {
    Accepted,
    Duplicate,
    Late,
}

impl CandleBuilder {
    pub fn new(opts: CandleOptions, output_topic: impl Into<String>) -> Self {
        Self {
            opts,
            label: opts.interval.to_string(),
            symbols: HashMap::new(),
            output_topic: output_topic.into(),
        }
    }

    /// Adds one tick; closed candles are appended to `closed` in window order.
    pub fn push(&mut self, tick: &Tick, at: (&str, i32, i64), closed: &mut Vec<Candle>) -> Pushed {
        let interval = self.opts.interval;
        let start = interval.window_start(tick.ts_ms);
        let state = self
            .symbols
            .entry((tick.exchange.clone(), tick.symbol.clone()))
            .or_default();
        if start < state.closed_until {
            return Pushed::Late;
        }
        let window = state.open.entry(start).or_insert_with(|| Window {
            candle: Candle {
                v: SCHEMA_VERSION,
                exchange: tick.exchange.clone(),
                symbol: tick.symbol.clone(),
                interval: self.label.clone(),
                open_ms: start,
                close_ms: start + interval.ms(),
                open: tick.price,
                high: tick.price,
                low: tick.price,
                close: tick.price,
                volume: Decimal::ZERO,
                trades: 0,
            },
            ids: HashSet::new(),
            first_offset: (at.0.to_string(), at.1, at.2),
        });
        if !window.ids.insert(tick.trade_id.clone()) {
            return Pushed::Duplicate;
        }
        apply(&mut window.candle, tick);
        state.max_ts = state.max_ts.max(tick.ts_ms);
        let watermark = state.max_ts - self.opts.allowed_lateness_ms;
        while let Some(entry) = state.open.first_entry() {
            if entry.get().candle.close_ms > watermark {
                break;
            }
            let w = entry.remove();
            state.closed_until = w.candle.close_ms;
            closed.push(w.candle);
        }
        Pushed::Accepted
    }

    /// Offset of the oldest tick still held, per partition that holds any.
    fn held_offsets(&self) -> BTreeMap<(String, i32), i64> {
        let mut out: BTreeMap<(String, i32), i64> = BTreeMap::new();
        for w in self.symbols.values().flat_map(|s| s.open.values()) {
            let (topic, partition, offset) = &w.first_offset;
            let e = out.entry((topic.clone(), *partition)).or_insert(*offset);
            *e = (*e).min(*offset);
        }
        out
    }

    pub fn open_windows(&self) -> usize {
        self.symbols.values().map(|s| s.open.len()).sum()
    }
}

/// Updates a candle with a trade that belongs to it. Ticks of one symbol arrive in offset
/// order, which is the exchange's order, so the last tick applied is the close.
fn apply(c: &mut Candle, t: &Tick) {
    if c.trades == 0 {
        c.open = t.price;
    }
    c.high = c.high.max(t.price);
    c.low = c.low.min(t.price);
    c.close = t.price;
    c.volume += t.size;
    c.trades += 1;
}

impl Handler for CandleBuilder {
    async fn handle(&mut self, batch: Vec<Inbound>) -> Result<Effects> {
        let mut closed = Vec::new();
        let mut dead = Vec::new();
        for m in &batch {
            let tick: Tick = match codec::decode(&m.payload) {
                Ok(t) => t,
                Err(e) => {
                    dead.push(DeadLetter::new(
                        "candles",
                        &m.topic,
                        m.partition,
                        m.offset,
                        e.to_string(),
                        &m.payload,
                    ));
                    continue;
                }
            };
            match self.push(&tick, (&m.topic, m.partition, m.offset), &mut closed) {
                Pushed::Accepted | Pushed::Duplicate => {}
                Pushed::Late => {
                    telemetry::LATE_TICKS
                        .with_label_values(&[&tick.exchange])
                        .inc();
                    let reason = format!("late tick: window of {} already closed", tick.ts_ms);
                    dead.push(DeadLetter::new(
                        "candles",
                        &m.topic,
                        m.partition,
                        m.offset,
                        reason,
                        &m.payload,
                    ));
                }
            }
        }
        let mut commit = batch_offsets(&batch);
        for (tp, held) in self.held_offsets() {
            if let Some(next) = commit.get_mut(&tp) {
                *next = (*next).min(held);
            }
        }
        telemetry::OPEN_WINDOWS
            .with_label_values(&["candles"])
            .set(self.open_windows() as i64);
        let records = closed
            .iter()
            .map(|c| {
                telemetry::CANDLES.with_label_values(&[&c.exchange]).inc();
                OutRecord {
                    topic: self.output_topic.clone(),
                    key: c.key(),
                    payload: codec::encode(c),
                }
            })
            .collect();
        Ok(Effects {
            records,
            dead,
            commit: Some(commit),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Side;

    fn tick(symbol: &str, id: u64, price: i64, size: i64, ts_ms: i64) -> Tick {
        Tick {
            v: SCHEMA_VERSION,
            exchange: "binance".into(),
            symbol: symbol.into(),
            trade_id: id.to_string(),
            price: Decimal::new(price, 2),
            size: Decimal::new(size, 3),
            side: Side::Buy,
            ts_ms,
            ingested_ms: ts_ms,
        }
    }

    fn builder(lateness: i64) -> CandleBuilder {
        let opts = CandleOptions {
            interval: Interval::from_ms(60_000),
            allowed_lateness_ms: lateness,
        };
        CandleBuilder::new(opts, "candles")
    }

    #[test]
    fn ohlcv_of_a_window_closes_when_the_watermark_passes() {
        let mut b = builder(0);
        let mut closed = Vec::new();
        let ticks = [
            tick("BTC-USDT", 1, 10_000, 1_000, 60_000),
            tick("BTC-USDT", 2, 10_500, 2_000, 70_000),
            tick("BTC-USDT", 3, 9_900, 500, 80_000),
            tick("BTC-USDT", 4, 10_100, 1_500, 119_999),
        ];
        for (i, t) in ticks.iter().enumerate() {
            assert_eq!(
                b.push(t, ("ticks", 0, i as i64), &mut closed),
                Pushed::Accepted
            );
        }
        assert!(closed.is_empty(), "window still open at 119999");
        b.push(
            &tick("BTC-USDT", 5, 10_200, 1_000, 120_000),
            ("ticks", 0, 4),
            &mut closed,
        );
        assert_eq!(closed.len(), 1);
        let c = &closed[0];
        assert_eq!(
            (c.open_ms, c.close_ms, c.interval.as_str()),
            (60_000, 120_000, "1m")
        );
        let d = |m, s| Decimal::new(m, s);
        assert_eq!(
            (c.open, c.high, c.low, c.close),
            (d(10_000, 2), d(10_500, 2), d(9_900, 2), d(10_100, 2))
        );
        assert_eq!((c.volume, c.trades), (d(5_000, 3), 4));
    }

    #[test]
    fn duplicates_are_dropped_and_late_ticks_reported() {
        let mut b = builder(5_000);
        let mut closed = Vec::new();
        let t1 = tick("ETH-USDT", 1, 100, 1_000, 1_000);
        assert_eq!(b.push(&t1, ("ticks", 1, 0), &mut closed), Pushed::Accepted);
        assert_eq!(b.push(&t1, ("ticks", 1, 1), &mut closed), Pushed::Duplicate);
        // Within lateness: 62s minus 5s is below the window end 60s? No: 57s < 60s, still open.
        b.push(
            &tick("ETH-USDT", 2, 101, 1_000, 62_000),
            ("ticks", 1, 2),
            &mut closed,
        );
        assert!(closed.is_empty());
        // A tick 3 s behind is still on time.
        assert_eq!(
            b.push(
                &tick("ETH-USDT", 3, 99, 1_000, 59_000),
                ("ticks", 1, 3),
                &mut closed
            ),
            Pushed::Accepted
        );
        b.push(
            &tick("ETH-USDT", 4, 102, 1_000, 65_000),
            ("ticks", 1, 4),
            &mut closed,
        );
        assert_eq!(closed.len(), 1);
        assert_eq!(
            (closed[0].trades, closed[0].close),
            (2, Decimal::new(99, 2))
        );
        assert_eq!(
            b.push(
                &tick("ETH-USDT", 5, 98, 1_000, 30_000),
                ("ticks", 1, 5),
                &mut closed
            ),
            Pushed::Late
        );
    }

    #[tokio::test]
    async fn commits_only_up_to_the_oldest_open_window() {
        let mut b = builder(0);
        let enc = |t: &Tick| codec::encode(t);
        let inbound = |offset: i64, t: &Tick| Inbound {
            topic: "ticks".into(),
            partition: 0,
            offset,
            key: None,
            payload: enc(t),
        };
        let batch = vec![
            inbound(10, &tick("BTC-USDT", 1, 100, 1, 1_000)),
            inbound(11, &tick("ETH-USDT", 1, 100, 1, 2_000)),
            inbound(12, &tick("BTC-USDT", 2, 100, 1, 61_000)),
            Inbound {
                topic: "ticks".into(),
                partition: 0,
                offset: 13,
                key: None,
                payload: b"garbage".to_vec(),
            },
        ];
        let fx = b.handle(batch).await.expect("handled");
        assert_eq!(fx.records.len(), 1, "BTC's first window closed");
        assert_eq!(fx.dead.len(), 1);
        assert!(
            fx.dead[0].reason.contains("not valid JSON"),
            "{}",
            fx.dead[0].reason
        );
        // ETH's window (offset 11) is still open, so offset 11 is the next to read after a restart.
        assert_eq!(
            fx.commit
                .expect("commit plan")
                .get(&("ticks".to_string(), 0)),
            Some(&11)
        );
    }
}
