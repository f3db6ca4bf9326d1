//! The alert engine: rules × series → state machines → [`AlertEvent`]s. Pure and
//! synchronous; the stage feeds it and persists what it holds.
//!
//! - `above`, `below`, `change` rules are evaluated on each matching forecast, at event time
//!   `base_ms` (the open time of the bar the forecast was made from).
//! - `anomaly` rules compare the close of a forecast's target bar with the forecast's
//!   interval, at event time `target_ms`. The engine remembers the bands of forecasts that an
//!   anomaly rule watches until their target bar's candle arrives (bounded per series, and
//!   dropped once a newer candle has passed their target), and the recent closes of each
//!   series, so a forecast that arrives after its target candle is still evaluated.
//! - A rule that is removed, disabled or changed ends its active instances with a `resolved`
//!   event at their last evaluation time.

use std::collections::{BTreeMap, HashMap, HashSet};

use rust_decimal::prelude::ToPrimitive as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use tickcast_core::domain::{AlertState, Candle, Forecast, SCHEMA_VERSION};

use super::AlertEvent;
use super::machine::{Machine, Reading, Timing};
use tickcast_core::alert_rule::{Band, Condition, Odds, Rule};

pub use tickcast_forecast::SeriesKey;

/// Most forecast bands remembered per series for anomaly rules.
pub const MAX_AWAITING: usize = 4_096;
/// Closes remembered per series, for forecasts that arrive after their target bar.
pub const RECENT_CLOSES: usize = 64;

/// The bands of one forecast awaiting the close of its target bar.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
struct Bands {
    lo80: f64,
    hi80: f64,
    lo95: f64,
    hi95: f64,
    /// The forecast was degraded ([`Forecast::degraded`]; absent in older checkpoints).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    degraded: bool,
}

impl Bands {
    fn get(&self, band: Band) -> (f64, f64) {
        match band {
            Band::P80 => (self.lo80, self.hi80),
            Band::P95 => (self.lo95, self.hi95),
        }
    }
}

/// One rule's instance on a series.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct Instance {
    /// The rule's fingerprint when the instance started.
    fingerprint: String,
    model: String,
    horizon: u32,
    machine: Machine,
}

/// Everything the engine holds for one series; saved as JSON in checkpoints.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct Series {
    /// Per rule id (a rule names one model and horizon, so this is the instance of
    /// (rule, series, model, horizon)).
    machines: BTreeMap<String, Instance>,
    /// (target_ms, model, horizon) → bands (a list in JSON, whose map keys are strings).
    #[serde(with = "entries")]
    awaiting: BTreeMap<(i64, String, u32), Bands>,
    /// open_ms → close, newest [`RECENT_CLOSES`].
    closes: BTreeMap<i64, f64>,
}

/// A rule with its fingerprint (a hash of its spec: a changed rule starts its instances anew).
#[derive(Debug, Clone)]
struct Active {
    rule: Rule,
    fingerprint: String,
}

/// Rules and per-series state.
#[derive(Debug, Default)]
pub struct Engine {
    rules: Vec<Active>,
    series: HashMap<SeriesKey, Series>,
    dirty: HashSet<SeriesKey>,
}

impl Engine {
    pub fn new(rules: Vec<Rule>) -> Self {
        Self {
            rules: rules.into_iter().map(active).collect(),
            ..Self::default()
        }
    }

    pub fn rules(&self) -> impl Iterator<Item = &Rule> {
        self.rules.iter().map(|a| &a.rule)
    }

    /// Replaces the rules. Active instances of rules that are gone, disabled or changed
    /// resolve (events returned).
    pub fn set_rules(&mut self, rules: Vec<Rule>) -> Vec<AlertEvent> {
        self.rules = rules.into_iter().map(active).collect();
        let keys: Vec<SeriesKey> = self.series.keys().cloned().collect();
        let mut out = Vec::new();
        for key in keys {
            out.extend(self.reconcile(&key));
        }
        out
    }

    /// Series whose state changed since the last call.
    pub fn take_dirty(&mut self) -> HashSet<SeriesKey> {
        std::mem::take(&mut self.dirty)
    }

    /// Whether the engine holds state for a series.
    pub fn knows(&self, key: &SeriesKey) -> bool {
        self.series.contains_key(key)
    }

    /// One forecast: evaluates the price and change rules that watch it, remembers its bands
    /// for the anomaly rules that do.
    pub fn on_forecast(&mut self, f: &Forecast) -> Vec<AlertEvent> {
        let key = tickcast_forecast::forecast_series_key(f);
        let mut out = Vec::new();
        let mut wants_bands = false;
        for a in &self.rules {
            let r = &a.rule;
            if !r.matches(f) {
                continue;
            }
            let reading = match r.condition {
                Condition::Anomaly { .. } => {
                    wants_bands = true;
                    continue;
                }
                c => price_reading(c, r.hysteresis, f),
            };
            let Some(reading) = reading else { continue };
            let series = self.series.entry(key.clone()).or_default();
            let shown = Shown::of_price(f.last);
            if let Some(e) = step(series, a, &key, f.base_ms, &reading, shown) {
                out.push(e);
            }
            self.dirty.insert(key.clone());
        }
        if wants_bands {
            out.extend(self.remember(&key, f));
        }
        out
    }

    /// One candle: evaluates the anomaly rules whose forecasts target it.
    pub fn on_candle(&mut self, c: &Candle) -> Vec<AlertEvent> {
        let key = tickcast_forecast::series_key(c);
        let watched = self.rules.iter().any(|a| {
            matches!(a.rule.condition, Condition::Anomaly { .. })
                && a.rule.watches(&c.exchange, &c.symbol, &c.interval)
        });
        if !watched {
            return Vec::new();
        }
        let Some(close) = c.close.to_f64().filter(|x| x.is_finite()) else {
            return Vec::new();
        };
        // The candle's own decimals: the precision the exchange quotes the symbol at.
        let shown = Shown::of_decimal(&c.close);
        let series = self.series.entry(key.clone()).or_default();
        series.closes.insert(c.open_ms, close);
        while series.closes.len() > RECENT_CLOSES {
            series.closes.pop_first();
        }
        let mut out = Vec::new();
        for a in &self.rules {
            let r = &a.rule;
            let Condition::Anomaly { band } = r.condition else {
                continue;
            };
            if !r.watches(&c.exchange, &c.symbol, &c.interval) {
                continue;
            }
            let Some(bands) = series
                .awaiting
                .get(&(c.open_ms, r.model.clone(), r.horizon))
                .filter(|b| r.include_degraded || !b.degraded)
            else {
                continue;
            };
            let reading = anomaly_reading(bands.get(band), r.hysteresis, close);
            if let Some(e) = step(series, a, &key, c.open_ms, &reading, shown) {
                out.push(e);
            }
        }
        // Targets at or before this bar are done (evaluated, or their candle never came).
        series.awaiting.retain(|(t, _, _), _| *t > c.open_ms);
        self.dirty.insert(key);
        out
    }

    /// Remembers a forecast's bands until its target bar, or evaluates at once when the
    /// target bar's close is already known.
    fn remember(&mut self, key: &SeriesKey, f: &Forecast) -> Vec<AlertEvent> {
        let series = self.series.entry(key.clone()).or_default();
        let bands = Bands {
            lo80: f.lo80,
            hi80: f.hi80,
            lo95: f.lo95,
            hi95: f.hi95,
            degraded: f.is_degraded(),
        };
        self.dirty.insert(key.clone());
        let Some(&close) = series.closes.get(&f.target_ms) else {
            let newest = series.closes.last_key_value().map(|(t, _)| *t);
            if newest.is_none_or(|n| f.target_ms > n) {
                series
                    .awaiting
                    .entry((f.target_ms, f.model.to_string(), f.horizon))
                    .or_insert(bands);
                while series.awaiting.len() > MAX_AWAITING {
                    series.awaiting.pop_first();
                }
            }
            return Vec::new();
        };
        let mut out = Vec::new();
        for a in &self.rules {
            let r = &a.rule;
            if let Condition::Anomaly { band } = r.condition
                && r.matches(f)
            {
                let reading = anomaly_reading(bands.get(band), r.hysteresis, close);
                let shown = Shown::of_price(f.last);
                if let Some(e) = step(series, a, key, f.target_ms, &reading, shown) {
                    out.push(e);
                }
            }
        }
        out
    }

    /// Ends the instances of a series whose rule is gone, disabled or changed.
    fn reconcile(&mut self, key: &SeriesKey) -> Vec<AlertEvent> {
        let Some(series) = self.series.get_mut(key) else {
            return Vec::new();
        };
        let current: HashMap<&str, &Active> = self
            .rules
            .iter()
            .filter(|a| a.rule.watches(&key.0, &key.1, &key.2))
            .map(|a| (a.rule.id.as_str(), a))
            .collect();
        let mut out = Vec::new();
        let mut changed = false;
        for (id, inst) in series.machines.iter_mut() {
            let now = current.get(id.as_str());
            if now.is_some_and(|a| a.fingerprint == inst.fingerprint) {
                continue;
            }
            let m = &mut inst.machine;
            let (value, threshold) = (m.last_value, m.last_threshold);
            if let Some((state, ts)) = m.close() {
                let why = match now {
                    Some(_) => "rule changed",
                    None => "rule removed or disabled",
                };
                out.push(event(
                    id,
                    key,
                    &inst.model,
                    inst.horizon,
                    state,
                    ts,
                    value,
                    threshold,
                    why.to_string(),
                ));
            }
            match now {
                Some(a) => {
                    inst.fingerprint = a.fingerprint.clone();
                    inst.model = a.rule.model.clone();
                    inst.horizon = a.rule.horizon;
                }
                None => inst.fingerprint.clear(),
            }
            changed = true;
        }
        // Instances of rules that no longer exist are forgotten once closed.
        let before = series.machines.len();
        series
            .machines
            .retain(|id, inst| current.contains_key(id.as_str()) || inst.machine.is_active());
        if changed || series.machines.len() != before {
            self.dirty.insert(key.clone());
        }
        out
    }

    /// The state of one series, as JSON (`None` when nothing is held).
    pub fn save_series(&self, key: &SeriesKey) -> Result<Option<String>, serde_json::Error> {
        self.series.get(key).map(serde_json::to_string).transpose()
    }

    /// Restores one series from [`Engine::save_series`]'s JSON, then reconciles it with the
    /// current rules (events for instances whose rule changed meanwhile).
    pub fn load_series(
        &mut self,
        key: &SeriesKey,
        json: &str,
    ) -> Result<Vec<AlertEvent>, serde_json::Error> {
        let s: Series = serde_json::from_str(json)?;
        self.series.insert(key.clone(), s);
        Ok(self.reconcile(key))
    }

    /// Forgets a series (its partition moved to another process).
    pub fn forget(&mut self, key: &SeriesKey) {
        self.series.remove(key);
        self.dirty.remove(key);
    }
}

/// A map as a list of (key, value) pairs, for keys JSON cannot hold as object keys.
mod entries {
    use std::collections::BTreeMap;

    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<K: Serialize, V: Serialize, S: Serializer>(
        m: &BTreeMap<K, V>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.collect_seq(m.iter())
    }

    pub fn deserialize<'de, K, V, D>(d: D) -> Result<BTreeMap<K, V>, D::Error>
    where
        K: Deserialize<'de> + Ord,
        V: Deserialize<'de>,
        D: Deserializer<'de>,
    {
        Ok(Vec::<(K, V)>::deserialize(d)?.into_iter().collect())
    }
}

fn active(rule: Rule) -> Active {
    let spec = serde_json::to_string(&rule).unwrap_or_default();
    let fingerprint = hex::encode(&Sha256::digest(spec.as_bytes())[..8]);
    Active { rule, fingerprint }
}

/// Runs one machine step; an event when the state changed.
fn step(
    series: &mut Series,
    a: &Active,
    key: &SeriesKey,
    ts: i64,
    reading: &Reading,
    shown: Shown,
) -> Option<AlertEvent> {
    let r = &a.rule;
    let inst = series
        .machines
        .entry(r.id.clone())
        .or_insert_with(|| Instance {
            fingerprint: a.fingerprint.clone(),
            model: r.model.clone(),
            horizon: r.horizon,
            machine: Machine::default(),
        });
    let timing = Timing {
        for_ms: r.for_ms(),
        cooldown_ms: r.cooldown_ms,
    };
    let state = inst.machine.step(ts, reading, timing)?;
    Some(event(
        &r.id,
        key,
        &r.model,
        r.horizon,
        state,
        ts,
        reading.value,
        reading.threshold,
        describe(r, reading, state, shown),
    ))
}

/// The reading of a price or change rule on a forecast; `None` when it cannot be computed
/// (a change rule on a non-positive `last`).
fn price_reading(c: Condition, hysteresis: f64, f: &Forecast) -> Option<Reading> {
    Some(match c {
        Condition::Above { on, price } => {
            let v = on.value_in(f);
            Reading {
                value: v,
                threshold: price,
                breach: v > price,
                clear: v <= price - hysteresis,
            }
        }
        Condition::Below { on, price } => {
            let v = on.value_in(f);
            Reading {
                value: v,
                threshold: price,
                breach: v < price,
                clear: v >= price + hysteresis,
            }
        }
        Condition::Change { percent } => {
            if f.last.is_nan() || f.last <= 0.0 {
                return None;
            }
            let v = (f.point / f.last - 1.0) * 100.0;
            Reading {
                value: v,
                threshold: percent,
                breach: v.abs() > percent,
                clear: v.abs() <= percent - hysteresis,
            }
        }
        Condition::Anomaly { .. } => return None,
        Condition::Probability {
            of,
            level,
            at_least,
        } => {
            use tickcast_forecast::scoring::touch::{above_of, touch_of};
            let p = match of {
                Odds::Above => above_of(f, level)?,
                Odds::Below => 1.0 - above_of(f, level)?,
                Odds::Touch => touch_of(f, level)?,
            };
            if !p.is_finite() {
                return None;
            }
            Reading {
                value: p,
                threshold: at_least,
                breach: p >= at_least,
                clear: p < at_least - hysteresis,
            }
        }
    })
}

/// The reading of an anomaly rule: the close against the band; the threshold reported is the
/// bound the close is beyond (or nearest to, when inside).
fn anomaly_reading((lo, hi): (f64, f64), hysteresis: f64, close: f64) -> Reading {
    let threshold = if close < lo || (close - lo).abs() <= (hi - close).abs() {
        lo
    } else {
        hi
    };
    Reading {
        value: close,
        threshold,
        breach: close < lo || close > hi,
        clear: close >= lo + hysteresis && close <= hi - hysteresis,
    }
}

/// How many decimals a message prints prices at: the symbol's precision, as its prices are
/// quoted (at least 2, at most 10).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shown {
    pub decimals: usize,
}

impl Shown {
    const MIN: usize = 2;
    const MAX: usize = 10;

    /// From a price as the exchange quoted it (a candle's close).
    pub fn of_decimal(price: &rust_decimal::Decimal) -> Self {
        Self::clamped(price.normalize().scale() as usize)
    }

    /// From a price that was a quoted decimal before it became an `f64` (a forecast's `last`):
    /// the digits of its shortest round-trip form.
    pub fn of_price(price: f64) -> Self {
        let text = format!("{price}");
        Self::clamped(text.split_once('.').map_or(0, |(_, frac)| frac.len()))
    }

    fn clamped(decimals: usize) -> Self {
        Self {
            decimals: decimals.clamp(Self::MIN, Self::MAX),
        }
    }

    /// A price at this precision.
    pub fn price(self, x: f64) -> String {
        format!("{x:.*}", self.decimals)
    }
}

fn describe(r: &Rule, reading: &Reading, state: AlertState, shown: Shown) -> String {
    let (v, t) = (shown.price(reading.value), shown.price(reading.threshold));
    let what = match r.condition {
        Condition::Above { on, .. } => format!("{} {v} (rule: above {t})", on.name()),
        Condition::Below { on, .. } => format!("{} {v} (rule: below {t})", on.name()),
        Condition::Change { .. } => format!(
            "predicted change {:.2}% (rule: beyond ±{}%)",
            reading.value, reading.threshold
        ),
        Condition::Anomaly { band } => format!(
            "close {v} (rule: outside the {}% band; nearest bound {t})",
            band.percent()
        ),
        Condition::Probability { of, level, .. } => format!(
            "P({} {}) {:.3} (rule: at least {})",
            of.name(),
            shown.price(level),
            reading.value,
            reading.threshold
        ),
    };
    let verb = match state {
        AlertState::Pending => "pending",
        AlertState::Firing => "firing",
        AlertState::Resolved => "resolved",
    };
    format!("{}: {verb}: {what}", r.id)
}

/// The deterministic id of a transition: the first 128 bits of SHA-256 over the rule,
/// series, model, horizon, new state and event time.
pub fn event_id(
    rule: &str,
    key: &SeriesKey,
    model: &str,
    horizon: u32,
    state: AlertState,
    ts_ms: i64,
) -> String {
    let text = format!(
        "{rule}\u{1f}{}\u{1f}{}\u{1f}{}\u{1f}{model}\u{1f}{horizon}\u{1f}{}\u{1f}{ts_ms}",
        key.0,
        key.1,
        key.2,
        state.as_str()
    );
    hex::encode(&Sha256::digest(text.as_bytes())[..16])
}

#[allow(clippy::too_many_arguments)]
fn event(
    rule: &str,
    key: &SeriesKey,
    model: &str,
    horizon: u32,
    state: AlertState,
    ts_ms: i64,
    value: f64,
    threshold: f64,
    message: String,
) -> AlertEvent {
    AlertEvent {
        v: SCHEMA_VERSION,
        id: event_id(rule, key, model, horizon, state, ts_ms),
        rule: rule.to_string(),
        exchange: key.0.clone(),
        symbol: key.1.clone(),
        interval: key.2.clone(),
        model: model.to_string(),
        horizon,
        state,
        ts_ms,
        value: if value.is_finite() { value } else { 0.0 },
        threshold: if threshold.is_finite() {
            threshold
        } else {
            0.0
        },
        message,
    }
}

#[cfg(test)]
mod shown_tests {
    use super::Shown;

    #[test]
    fn prices_print_at_the_symbols_precision() {
        // A bound computed from a forecast prints at the decimals of the quoted price.
        assert_eq!(
            Shown::of_price(54_598.27).price(54_598.277_625_409_31),
            "54598.28"
        );
        assert_eq!(
            Shown::of_price(0.000_012_34).price(0.000_012_345_678),
            "0.00001235"
        );
        // At least two decimals, at most ten.
        assert_eq!(Shown::of_price(70_000.0).price(70_000.0), "70000.00");
        assert_eq!(Shown::of_price(1e-12).decimals, 10);
        let quoted: rust_decimal::Decimal = "0.1000".parse().expect("decimal");
        assert_eq!(Shown::of_decimal(&quoted).decimals, 2);
        let quoted: rust_decimal::Decimal = "1.23456".parse().expect("decimal");
        assert_eq!(Shown::of_decimal(&quoted).price(1.2), "1.20000");
    }
}
