//! Fault injection, counted per connection: drops (with a gap in the market while the client
//! is away), stalls, duplicates, garbage frames and skipped trades.
//!
//! Counting rules (exact, so tests can assert counts):
//! - `skip_every = k`: of the trades a connection would send (its symbols, after it
//!   subscribed), the k-th, 2k-th, … are not sent. They still happened (market, REST).
//! - The other counters count *trade frames sent* `n` (skipped trades, duplicates and garbage
//!   do not count). After frame `n` is sent: `duplicate_every` sends it again when `n` is a
//!   multiple; then `garbage_every` sends one garbage text frame; then `stall_every` stops the
//!   connection (no reads, no writes, socket open) for `stall_for`; then `drop_every` closes
//!   the socket (abruptly, no close frame).
//! - Skips and drops are never applied to the very last trade of a finite market, so a later
//!   trade or a reconnect reveals every gap.

use rust_decimal::Decimal;

use crate::simulator::SimTrade;
use std::time::Duration;

/// Which faults the replay exchange injects; all off by default.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Faults {
    /// Close the connection after every N trade frames it sent.
    pub drop_every: Option<u64>,
    /// Trades that happen while a dropped client is away: the market advances by this many
    /// right after a drop (never past the second-to-last trade of a finite market).
    pub gap_on_drop: u64,
    /// Stop sending (socket kept open) for `stall_for` after every N trade frames.
    pub stall_every: Option<u64>,
    pub stall_for: Duration,
    /// Send every Nth trade frame twice.
    pub duplicate_every: Option<u64>,
    /// Send a garbage text frame (not JSON) after every N trade frames.
    pub garbage_every: Option<u64>,
    /// Every Nth trade of the connection happens but is not sent on it.
    pub skip_every: Option<u64>,
    /// Send a poison trade frame after every N trade frames: well-formed for the protocol,
    /// but with a size that overflows a window's volume, a time in microseconds or `i64::MAX`,
    /// a zero or a negative price, in turn ([`poison`]). Its trade id never happens.
    pub poison_every: Option<u64>,
}

/// The kinds of poison trade, in the order [`Faults::poison_every`] sends them.
pub const POISON_KINDS: usize = 5;

/// Poison trade number `n` (from 0), made from a real trade `t`: kind `n % POISON_KINDS`, and
/// a trade id (`900000000000 + n`) that no simulated trade has.
pub fn poison(t: &SimTrade, n: u64) -> SimTrade {
    let mut p = t.clone();
    p.trade_id = 900_000_000_000 + n;
    match n % POISON_KINDS as u64 {
        0 => p.size = Decimal::MAX,
        1 => p.ts_ms = t.ts_ms.saturating_mul(1_000),
        2 => p.ts_ms = i64::MAX,
        3 => p.price = Decimal::ZERO,
        _ => p.price = -Decimal::ONE,
    }
    p
}

/// The garbage frame: not JSON, not any protocol's message.
pub const GARBAGE: &str = "\u{1}garbage{not json";

/// What to do after sending one trade frame.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct After {
    pub duplicate: bool,
    pub garbage: bool,
    pub poison: bool,
    pub stall: Option<Duration>,
    pub drop: bool,
}

/// One connection's fault counters.
#[derive(Debug, Clone)]
pub struct FaultState {
    faults: Faults,
    /// Trades this connection would have sent.
    offered: u64,
    /// Trade frames sent (without duplicates).
    sent: u64,
}

fn hits(every: Option<u64>, n: u64) -> bool {
    every.is_some_and(|k| k > 0 && n > 0 && n.is_multiple_of(k))
}

impl FaultState {
    pub fn new(faults: &Faults) -> Self {
        Self {
            faults: faults.clone(),
            offered: 0,
            sent: 0,
        }
    }

    /// Called for each trade the connection would send; true = skip it.
    pub fn skip(&mut self, last: bool) -> bool {
        self.offered += 1;
        !last && hits(self.faults.skip_every, self.offered)
    }

    /// Called after a trade frame was sent.
    pub fn after_sent(&mut self, last: bool) -> After {
        self.sent += 1;
        let n = self.sent;
        After {
            duplicate: hits(self.faults.duplicate_every, n),
            garbage: hits(self.faults.garbage_every, n),
            poison: hits(self.faults.poison_every, n),
            stall: hits(self.faults.stall_every, n).then_some(self.faults.stall_for),
            drop: !last && hits(self.faults.drop_every, n),
        }
    }

    pub fn gap_on_drop(&self) -> u64 {
        self.faults.gap_on_drop
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Positions (1-based) where something happened after a sent frame.
    type Afters = Vec<(u64, After)>;

    /// Runs `trades` trades through the counters; returns (skipped positions, afters).
    fn run(f: &Faults, trades: u64) -> (Vec<u64>, Afters) {
        let mut s = FaultState::new(f);
        let (mut skipped, mut afters) = (Vec::new(), Vec::new());
        for i in 1..=trades {
            let last = i == trades;
            if s.skip(last) {
                skipped.push(i);
                continue;
            }
            let a = s.after_sent(last);
            if a != After::default() {
                afters.push((i, a));
            }
        }
        (skipped, afters)
    }

    #[test]
    fn faults_fire_exactly_every_nth() {
        let dup = After {
            duplicate: true,
            ..After::default()
        };
        let garbage = After {
            garbage: true,
            ..After::default()
        };
        let drop = After {
            drop: true,
            ..After::default()
        };
        let stall = After {
            stall: Some(Duration::from_millis(5)),
            ..After::default()
        };
        let cases: Vec<(Faults, u64, Vec<u64>, Afters)> = vec![
            (Faults::default(), 10, vec![], vec![]),
            (
                Faults {
                    skip_every: Some(3),
                    ..Faults::default()
                },
                9,
                vec![3, 6],
                vec![],
            ),
            (
                Faults {
                    duplicate_every: Some(4),
                    ..Faults::default()
                },
                9,
                vec![],
                vec![(4, dup), (8, dup)],
            ),
            (
                Faults {
                    garbage_every: Some(5),
                    ..Faults::default()
                },
                10,
                vec![],
                vec![(5, garbage), (10, garbage)],
            ),
            (
                Faults {
                    drop_every: Some(5),
                    ..Faults::default()
                },
                10,
                vec![],
                vec![(5, drop)],
            ),
            (
                Faults {
                    stall_every: Some(2),
                    stall_for: Duration::from_millis(5),
                    ..Faults::default()
                },
                5,
                vec![],
                vec![(2, stall), (4, stall)],
            ),
            (
                // Skipped trades do not count as sent frames.
                Faults {
                    skip_every: Some(2),
                    drop_every: Some(2),
                    ..Faults::default()
                },
                9,
                vec![2, 4, 6, 8],
                vec![(3, drop), (7, drop)],
            ),
            (
                Faults {
                    drop_every: Some(0),
                    ..Faults::default()
                },
                3,
                vec![],
                vec![],
            ),
        ];
        for (f, n, want_skipped, want_afters) in cases {
            let (skipped, afters) = run(&f, n);
            assert_eq!(skipped, want_skipped, "{f:?}");
            assert_eq!(afters, want_afters, "{f:?}");
        }
    }
}
