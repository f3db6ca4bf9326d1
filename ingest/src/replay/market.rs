//! The replay exchange's one shared market: what has happened so far, in order. Connections
//! read it from the position where they subscribed; the REST endpoint answers from it.
//!
//! Pacing: on demand (a connection that has sent everything asks for more, so the fastest
//! client sets the pace), at a fixed rate on the wall clock, or live (a trade happens when
//! the event clock reaches its time; history before the clock's start happens at once).

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use anyhow::Result;
use tokio::sync::watch;

use super::sims::{ExchangeSim, RestReply};
use super::source::{self, Feed, Item, Source};
use crate::simulator::SimTrade;
use tickcast_core::shutdown::Shutdown;

/// One entry of the market log, as a connection reads it.
#[derive(Debug, Clone)]
pub enum Entry {
    Trade { trade: SimTrade, event_ms: i64 },
    Frame(Arc<str>),
}

#[derive(Debug)]
enum Logged {
    /// Index into `trades`.
    Trade {
        at: usize,
        event_ms: i64,
    },
    Frame(Arc<str>),
}

struct State {
    feed: Feed,
    peeked: Option<Item>,
    /// How many items may happen at most (`total`, or the source's length).
    cap: Option<u64>,
    exhausted: bool,
    log: Vec<Logged>,
    trades: Vec<SimTrade>,
}

impl std::fmt::Debug for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("State")
            .field("happened", &self.log.len())
            .field("cap", &self.cap)
            .field("exhausted", &self.exhausted)
            .finish()
    }
}

impl State {
    fn peek(&mut self) -> Option<&Item> {
        if self.cap.is_some_and(|c| self.log.len() as u64 >= c) {
            self.exhausted = true;
            return None;
        }
        if self.peeked.is_none() {
            self.peeked = self.feed.next();
            if self.peeked.is_none() {
                self.exhausted = true;
            }
        }
        self.peeked.as_ref()
    }

    fn happen_one(&mut self) -> bool {
        if self.peek().is_none() {
            return false;
        }
        match self.peeked.take() {
            Some(Item::Trade { trade, event_ms }) => {
                self.log.push(Logged::Trade {
                    at: self.trades.len(),
                    event_ms,
                });
                self.trades.push(trade);
            }
            Some(Item::Frame(f)) => self.log.push(Logged::Frame(f.into())),
            None => return false,
        }
        true
    }
}

/// The shared market.
#[derive(Debug)]
pub struct Market {
    state: Mutex<State>,
    len: watch::Sender<u64>,
}

impl Market {
    pub fn open(source: &Source, total: Option<u64>) -> Result<Arc<Self>> {
        let (feed, len) = source::open(source)?;
        let cap = match (total, len) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        Ok(Arc::new(Self {
            state: Mutex::new(State {
                feed,
                peeked: None,
                cap,
                exhausted: cap == Some(0),
                log: Vec::new(),
                trades: Vec::new(),
            }),
            len: watch::Sender::new(0),
        }))
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the log inconsistent (pushes only).
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn publish(&self, len: usize) {
        self.len.send_if_modified(|n| {
            let changed = *n != len as u64;
            *n = len as u64;
            changed
        });
    }

    /// Makes up to `n` more items happen now; returns how many did.
    pub fn advance(&self, n: u64) -> u64 {
        let mut st = self.lock();
        let mut done = 0;
        while done < n && st.happen_one() {
            done += 1;
        }
        let len = st.log.len();
        drop(st);
        self.publish(len);
        done
    }

    /// Advances by `n`, but never past the second-to-last item of a finite market (so a
    /// later item reveals the gap).
    pub fn advance_gap(&self, n: u64) -> u64 {
        let room = {
            let st = self.lock();
            st.cap
                .map(|c| c.saturating_sub(st.log.len() as u64 + 1))
                .unwrap_or(u64::MAX)
        };
        self.advance(n.min(room))
    }

    /// Makes every trade whose event time is at most `clock_ms` happen (frames have no time
    /// and happen at once). Returns the event time of the next trade, `None` when exhausted.
    pub fn advance_to(&self, clock_ms: i64) -> Option<i64> {
        let mut st = self.lock();
        let next = loop {
            match st.peek().map(Item::ts_ms) {
                None => break None,
                Some(Some(ts)) if ts > clock_ms => break Some(ts),
                Some(_) => {
                    st.happen_one();
                }
            }
        };
        let len = st.log.len();
        drop(st);
        self.publish(len);
        next
    }

    /// How many items have happened.
    pub fn len(&self) -> u64 {
        *self.len.borrow()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// No more items will happen.
    pub fn exhausted(&self) -> bool {
        let mut st = self.lock();
        st.peek().is_none()
    }

    /// Entry `i` is the last item of a finite market.
    pub fn is_last(&self, i: u64) -> bool {
        let mut st = self.lock();
        st.peek().is_none() && i + 1 == st.log.len() as u64
    }

    /// Up to `max` entries from position `from`.
    pub fn read(&self, from: u64, max: usize) -> Vec<Entry> {
        let st = self.lock();
        let from = (from as usize).min(st.log.len());
        st.log[from..]
            .iter()
            .take(max)
            .map(|l| match l {
                Logged::Trade { at, event_ms } => Entry::Trade {
                    trade: st.trades[*at].clone(),
                    event_ms: *event_ms,
                },
                Logged::Frame(f) => Entry::Frame(f.clone()),
            })
            .collect()
    }

    /// Waits until more than `seen` items have happened.
    pub async fn wait_beyond(&self, seen: u64) {
        let mut rx = self.len.subscribe();
        let _ = rx.wait_for(|n| *n > seen).await;
    }

    /// Every trade that has happened, in order.
    pub fn happened(&self) -> Vec<SimTrade> {
        self.lock().trades.clone()
    }

    /// Answers a REST request from what has happened.
    pub fn rest(&self, sim: &dyn ExchangeSim, path_and_query: &str) -> Option<RestReply> {
        let st = self.lock();
        sim.rest(path_and_query, &st.trades)
    }

    /// Drives the market at `rate` items per second on the wall clock until exhausted.
    pub async fn run_at_rate(self: Arc<Self>, rate: f64, mut shutdown: Shutdown) {
        let start = tokio::time::Instant::now();
        let mut happened = 0u64;
        loop {
            let due = (start.elapsed().as_secs_f64() * rate) as u64;
            if due > happened {
                happened += self.advance(due - happened);
            }
            if self.exhausted() {
                return;
            }
            let next = start + Duration::from_secs_f64((happened + 1) as f64 / rate);
            tokio::select! {
                _ = shutdown.wait() => return,
                _ = tokio::time::sleep_until(next) => {}
            }
        }
    }

    /// Drives the market by event time: the event clock reads `from_ms` now and runs `speed`
    /// times as fast as the wall clock.
    pub async fn run_live(self: Arc<Self>, from_ms: i64, speed: f64, mut shutdown: Shutdown) {
        let start = tokio::time::Instant::now();
        let speed = if speed > 0.0 { speed } else { 1.0 };
        loop {
            let clock = from_ms + (start.elapsed().as_secs_f64() * 1000.0 * speed) as i64;
            let Some(next) = self.advance_to(clock) else {
                return;
            };
            let wait = Duration::from_secs_f64((next - clock).max(1) as f64 / 1000.0 / speed);
            tokio::select! {
                _ = shutdown.wait() => return,
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::simulator::{SimConfig, Simulator};

    fn sim(total: Option<u64>) -> Arc<Market> {
        let cfg = SimConfig::default_symbols(1, 1_000);
        Market::open(&Source::Simulator(cfg), total).expect("opens")
    }

    #[test]
    fn total_caps_the_market_and_the_last_item_is_known() {
        let m = sim(Some(5));
        assert_eq!(m.advance(3), 3);
        assert!(!m.exhausted() && !m.is_last(2));
        assert_eq!(m.advance_gap(10), 1, "a gap never takes the last trade");
        assert_eq!(m.advance(10), 1);
        assert!(m.exhausted() && m.is_last(4));
        let want: Vec<SimTrade> = Simulator::new(&SimConfig::default_symbols(1, 1_000))
            .take(5)
            .collect();
        assert_eq!(m.happened(), want);
        assert_eq!(m.read(3, 10).len(), 2);
    }

    #[test]
    fn advance_to_follows_event_time() {
        let m = sim(None);
        let all: Vec<SimTrade> = Simulator::new(&SimConfig::default_symbols(1, 1_000))
            .take(50)
            .collect();
        let cut = all[20].ts_ms;
        let next = m.advance_to(cut).expect("endless");
        let n = all.iter().filter(|t| t.ts_ms <= cut).count();
        assert_eq!(m.len(), n as u64);
        assert_eq!(next, all[n].ts_ms);
    }
}
