//! The state machine of one alert instance (a rule on one series, model and horizon), as
//! Prometheus alerting rules behave:
//!
//! ```text
//!             breach                 held `for`              clear
//! inactive ───────────► pending ───────────────► firing ───────────► resolved
//!    ▲   (for = 0: straight to firing)  │ clear                        │
//!    └──────────────────────────────────┴─── (resolved) ◄──────────────┘ after cooldown
//! ```
//!
//! - **breach / clear with hysteresis**: an instance becomes active when the value breaches
//!   the threshold, and stays active until the value is back beyond threshold ∓ hysteresis
//!   (a Schmitt trigger), so a value wobbling around the threshold does not flap.
//! - **for**: an active instance is `pending` until it has been active for `for` (measured in
//!   event time from the evaluation that made it active; with `for_bars = N` that is the
//!   N-th bar after it); then `firing`. `for = 0` fires at the first breach.
//! - **resolved**: a firing instance that clears resolves; so does a pending one (its
//!   `pending` event is closed by a `resolved` one, so every reader can tell what is active
//!   from the latest event alone).
//! - **cooldown**: after a firing instance resolved, evaluations within `cooldown` are
//!   ignored; the next breach after it starts a new `pending`.
//! - **redelivery**: an evaluation at or before the newest one seen changes nothing.

use serde::{Deserialize, Serialize};
use tickcast_core::domain::AlertState;

/// Where an instance is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    #[default]
    Inactive,
    Pending,
    Firing,
    Resolved,
}

/// What one evaluation read.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Reading {
    /// The value compared (a price, a percentage, a close).
    pub value: f64,
    /// What it was compared with.
    pub threshold: f64,
    /// The condition holds: an inactive instance becomes active.
    pub breach: bool,
    /// The value is back beyond the hysteresis band: an active instance clears.
    pub clear: bool,
}

/// A rule's timing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    pub for_ms: i64,
    pub cooldown_ms: i64,
}

/// One instance's state; small, and saved as JSON in checkpoints.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Machine {
    pub phase: Phase,
    /// Event time of the evaluation that made the instance active.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_since: Option<i64>,
    /// When a firing instance last resolved (the cooldown counts from here).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolved_at: Option<i64>,
    /// Event time of the newest evaluation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_ts: Option<i64>,
    /// The newest evaluation's value and threshold.
    #[serde(default)]
    pub last_value: f64,
    #[serde(default)]
    pub last_threshold: f64,
}

impl Machine {
    /// Whether the instance is pending or firing.
    pub fn is_active(&self) -> bool {
        matches!(self.phase, Phase::Pending | Phase::Firing)
    }

    /// Advances with one evaluation at event time `ts`; returns the state entered, if any.
    pub fn step(&mut self, ts: i64, r: &Reading, t: Timing) -> Option<AlertState> {
        if self.last_ts.is_some_and(|last| ts <= last) {
            return None;
        }
        self.last_ts = Some(ts);
        self.last_value = r.value;
        self.last_threshold = r.threshold;
        match self.phase {
            Phase::Inactive | Phase::Resolved => {
                let cooling = self
                    .resolved_at
                    .is_some_and(|at| ts < at.saturating_add(t.cooldown_ms));
                if cooling || !r.breach {
                    return None;
                }
                self.active_since = Some(ts);
                if t.for_ms <= 0 {
                    self.phase = Phase::Firing;
                    Some(AlertState::Firing)
                } else {
                    self.phase = Phase::Pending;
                    Some(AlertState::Pending)
                }
            }
            Phase::Pending => {
                if r.clear {
                    self.phase = Phase::Resolved;
                    self.active_since = None;
                    Some(AlertState::Resolved)
                } else if ts - self.active_since.unwrap_or(ts) >= t.for_ms {
                    self.phase = Phase::Firing;
                    Some(AlertState::Firing)
                } else {
                    None
                }
            }
            Phase::Firing => {
                if r.clear {
                    self.phase = Phase::Resolved;
                    self.active_since = None;
                    self.resolved_at = Some(ts);
                    Some(AlertState::Resolved)
                } else {
                    None
                }
            }
        }
    }

    /// Ends an active instance without an evaluation (its rule was removed, disabled or
    /// changed): `resolved` at the newest evaluation's time. Keeps `last_ts`, so inputs
    /// already evaluated stay redeliveries.
    pub fn close(&mut self) -> Option<(AlertState, i64)> {
        let ts = self.last_ts?;
        let was_active = self.is_active();
        *self = Machine {
            last_ts: self.last_ts,
            last_value: self.last_value,
            last_threshold: self.last_threshold,
            ..Machine::default()
        };
        was_active.then_some((AlertState::Resolved, ts))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use AlertState::{Firing, Pending, Resolved};

    /// An `above 100` reading with hysteresis 5.
    fn above(value: f64) -> Reading {
        Reading {
            value,
            threshold: 100.0,
            breach: value > 100.0,
            clear: value <= 95.0,
        }
    }

    fn run(values: &[f64], t: Timing) -> Vec<(i64, AlertState)> {
        let mut m = Machine::default();
        let mut out = Vec::new();
        for (i, v) in values.iter().enumerate() {
            let ts = i as i64 * 60_000;
            if let Some(s) = m.step(ts, &above(*v), t) {
                out.push((ts / 60_000, s));
            }
        }
        out
    }

    #[test]
    fn transitions_table() {
        let t = |for_ms, cooldown_ms| Timing {
            for_ms,
            cooldown_ms,
        };
        type Case = (&'static str, Vec<f64>, Timing, Vec<(i64, AlertState)>);
        let cases: [Case; 7] = [
            (
                "for 0 fires at once, resolves below threshold − hysteresis",
                vec![90.0, 101.0, 99.0, 96.0, 95.0, 90.0],
                t(0, 0),
                vec![(1, Firing), (4, Resolved)],
            ),
            (
                "for 2 bars: pending, then firing two bars later",
                vec![101.0, 102.0, 103.0, 104.0, 90.0],
                t(120_000, 0),
                vec![(0, Pending), (2, Firing), (4, Resolved)],
            ),
            (
                "a dip into the hysteresis band keeps pending counting",
                vec![101.0, 97.0, 101.0],
                t(120_000, 0),
                vec![(0, Pending), (2, Firing)],
            ),
            (
                "pending that clears resolves and starts over",
                vec![101.0, 94.0, 101.0, 101.0, 101.0],
                t(120_000, 0),
                vec![(0, Pending), (1, Resolved), (2, Pending), (4, Firing)],
            ),
            (
                "flapping around the threshold: one alert",
                vec![101.0, 99.0, 101.0, 99.0, 101.0, 99.0, 101.0, 94.0],
                t(60_000, 0),
                vec![(0, Pending), (1, Firing), (7, Resolved)],
            ),
            (
                "cooldown: no new alert within 3 bars of resolving",
                vec![101.0, 90.0, 101.0, 101.0, 101.0, 101.0],
                t(0, 180_000),
                vec![(0, Firing), (1, Resolved), (4, Firing)],
            ),
            (
                "cooldown does not follow a pending that never fired",
                vec![101.0, 90.0, 101.0],
                t(60_000, 600_000),
                vec![(0, Pending), (1, Resolved), (2, Pending)],
            ),
        ];
        for (name, values, timing, want) in cases {
            assert_eq!(run(&values, timing), want, "{name}");
        }
    }

    #[test]
    fn redeliveries_change_nothing() {
        let t = Timing {
            for_ms: 0,
            cooldown_ms: 0,
        };
        let mut m = Machine::default();
        assert_eq!(m.step(60_000, &above(101.0), t), Some(Firing));
        assert_eq!(m.step(60_000, &above(90.0), t), None);
        assert_eq!(m.step(0, &above(90.0), t), None);
        assert_eq!(m.phase, Phase::Firing);
        assert_eq!(m.close(), Some((Resolved, 60_000)));
        assert_eq!(m.step(60_000, &above(101.0), t), None);
    }
}
