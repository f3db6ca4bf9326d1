//! Online interval calibration for any model: wraps a [`Forecaster`] and rebuilds each
//! prediction's 80% and 95% intervals from adaptive conformal inference ([`super::conformal`])
//! per series, horizon and level. The model's own 95% half-width (in log terms) gives the scale;
//! the interval is `point · exp(±m · scale)` where `m` is the calibrator's current quantile of
//! past scaled errors. Outcomes arrive `horizon` bars after each prediction. The wrapper keeps
//! the model's name: every model's intervals are calibrated.

use std::collections::{HashMap, VecDeque};

use rust_decimal::prelude::ToPrimitive as _;
use tickcast_pipeline::domain::Candle;

use super::conformal::Aci;
use anyhow::Result;

use super::state::{Dec, Enc};
use super::{Forecaster, Prediction, SeriesKey, Z80, Z95};

/// Calibrator settings.
#[derive(Debug, Clone, Copy)]
pub struct CalibrationSettings {
    /// ACI step size.
    pub gamma: f64,
    /// Scaled errors kept per series, horizon and level.
    pub window: usize,
}

impl Default for CalibrationSettings {
    fn default() -> Self {
        Self {
            gamma: 0.005,
            window: 1_000,
        }
    }
}

#[derive(Debug)]
struct Published {
    due: u64,
    horizon: u32,
    point: f64,
    scale: f64,
    bounds: [(f64, f64); 2],
}

#[derive(Debug, Default)]
struct SeriesState {
    bar: u64,
    pending: VecDeque<Published>,
    /// (horizon, level index) → calibrator; level 0 = 80%, 1 = 95%.
    cal: HashMap<(u32, usize), Aci>,
}

const LEVELS: [(f64, f64); 2] = [(0.2, Z80), (0.05, Z95)];

/// A model whose intervals are calibrated online.
pub struct Calibrated {
    inner: Box<dyn Forecaster>,
    settings: CalibrationSettings,
    series: HashMap<SeriesKey, SeriesState>,
}

impl std::fmt::Debug for Calibrated {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Calibrated")
            .field("model", &self.inner.name())
            .field("series", &self.series.len())
            .finish()
    }
}

impl Calibrated {
    pub fn new(inner: Box<dyn Forecaster>, settings: CalibrationSettings) -> Self {
        Self {
            inner,
            settings,
            series: HashMap::new(),
        }
    }
}

impl Forecaster for Calibrated {
    fn name(&self) -> &'static str {
        self.inner.name()
    }

    fn update(&mut self, candles: &[&Candle], horizons: &[u32]) -> Vec<Vec<Prediction>> {
        let preds = self.inner.update(candles, horizons);
        let settings = self.settings;
        candles
            .iter()
            .zip(preds)
            .map(|(c, ps)| {
                let key = super::series_key(c);
                let st = self.series.entry(key).or_default();
                st.bar += 1;
                let close = c.close.to_f64().unwrap_or(f64::NAN);
                resolve(st, close, settings);
                ps.into_iter().map(|p| publish(st, p, settings)).collect()
            })
            .collect()
    }
    fn save_series(&self, key: &SeriesKey) -> Option<Vec<u8>> {
        let inner = self.inner.save_series(key);
        let st = self.series.get(key);
        if inner.is_none() && st.is_none() {
            return None;
        }
        let mut e = Enc::new(1);
        match &inner {
            Some(b) => e.bool(true).bytes(b),
            None => e.bool(false),
        };
        let Some(st) = st else {
            e.bool(false);
            return Some(e.finish());
        };
        e.bool(true).u64(st.bar).u32(st.pending.len() as u32);
        for p in &st.pending {
            e.u64(p.due).u32(p.horizon).f64(p.point).f64(p.scale);
            for (lo, hi) in p.bounds {
                e.f64(lo).f64(hi);
            }
        }
        let mut cal: Vec<_> = st.cal.iter().collect();
        cal.sort_by_key(|(k, _)| **k);
        e.u32(cal.len() as u32);
        for ((h, level), aci) in cal {
            e.u32(*h).u8(*level as u8);
            aci.save(&mut e);
        }
        Some(e.finish())
    }

    fn load_series(&mut self, key: &SeriesKey, bytes: &[u8]) -> Result<()> {
        let mut d = Dec::new(bytes, 1)?;
        if d.bool()? {
            self.inner.load_series(key, d.bytes()?)?;
        }
        if !d.bool()? {
            d.end()?;
            self.series.remove(key);
            return Ok(());
        }
        let mut st = SeriesState {
            bar: d.u64()?,
            ..SeriesState::default()
        };
        for _ in 0..d.u32()? {
            let (due, horizon, point, scale) = (d.u64()?, d.u32()?, d.f64()?, d.f64()?);
            let bounds = [(d.f64()?, d.f64()?), (d.f64()?, d.f64()?)];
            st.pending.push_back(Published {
                due,
                horizon,
                point,
                scale,
                bounds,
            });
        }
        for _ in 0..d.u32()? {
            let (h, level) = (d.u32()?, usize::from(d.u8()?));
            if level >= LEVELS.len() {
                anyhow::bail!("checkpoint: interval level {level}");
            }
            st.cal.insert((h, level), Aci::load(&mut d)?);
        }
        d.end()?;
        self.series.insert(key.clone(), st);
        Ok(())
    }

    fn save_model(&self) -> Option<Vec<u8>> {
        self.inner.save_model()
    }

    fn load_model(&mut self, bytes: &[u8]) -> Result<()> {
        self.inner.load_model(bytes)
    }
}

/// Scores every prediction whose target bar is this one.
fn resolve(st: &mut SeriesState, close: f64, settings: CalibrationSettings) {
    while st.pending.front().is_some_and(|p| p.due <= st.bar) {
        let Some(p) = st.pending.pop_front() else {
            break;
        };
        if p.due != st.bar || close.is_nan() || close <= 0.0 {
            continue;
        }
        let score = (close / p.point).ln().abs() / p.scale;
        for (i, (target, _)) in LEVELS.iter().enumerate() {
            let (lo, hi) = p.bounds[i];
            st.cal
                .entry((p.horizon, i))
                .or_insert_with(|| Aci::new(*target, settings.gamma, settings.window))
                .update(score, lo <= close && close <= hi);
        }
    }
}

/// The calibrated version of one prediction, remembered until its target bar closes.
fn publish(st: &mut SeriesState, p: Prediction, settings: CalibrationSettings) -> Prediction {
    let scale = (p.hi95 / p.point).ln() / Z95;
    if p.point.is_nan() || p.point <= 0.0 || !scale.is_finite() || scale <= 0.0 {
        return p;
    }
    let mut bounds = [(p.lo80, p.hi80), (p.lo95, p.hi95)];
    for (i, (target, z)) in LEVELS.iter().enumerate() {
        let aci = st
            .cal
            .entry((p.horizon, i))
            .or_insert_with(|| Aci::new(*target, settings.gamma, settings.window));
        let m = aci.multiplier().unwrap_or(*z);
        bounds[i] = (p.point * (-m * scale).exp(), p.point * (m * scale).exp());
    }
    // The 95% interval never sits inside the 80% one.
    bounds[1] = (bounds[1].0.min(bounds[0].0), bounds[1].1.max(bounds[0].1));
    let due = st.bar + u64::from(p.horizon);
    let at = st.pending.partition_point(|q| q.due <= due);
    st.pending.insert(
        at,
        Published {
            due,
            horizon: p.horizon,
            point: p.point,
            scale,
            bounds,
        },
    );
    Prediction {
        lo80: bounds[0].0,
        hi80: bounds[0].1,
        lo95: bounds[1].0,
        hi95: bounds[1].1,
        ..p
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backtest;
    use crate::forecast::naive::Naive;
    use rust_decimal::Decimal;
    use tickcast_pipeline::domain::SCHEMA_VERSION;
    use tickcast_pipeline::simulator::Rng;

    /// A fat-tailed random walk: 90% of returns sd 0.1%, 10% sd 0.6%, so normal bands from a
    /// variance estimate are too narrow at 95% and too wide at 80%.
    fn series(n: usize) -> Vec<Candle> {
        let mut rng = Rng::new(3);
        let mut price = 10_000.0f64;
        (0..n)
            .map(|i| {
                let sd = if rng.unit() < 0.1 { 0.006 } else { 0.001 };
                price *= (sd * rng.normal()).exp();
                let p = Decimal::new((price * 100.0).round() as i64, 2);
                Candle {
                    v: SCHEMA_VERSION,
                    exchange: "x".into(),
                    symbol: "BTC-USDT".into(),
                    interval: "1m".into(),
                    open_ms: i as i64 * 60_000,
                    close_ms: (i as i64 + 1) * 60_000,
                    open: p,
                    high: p,
                    low: p,
                    close: p,
                    volume: Decimal::ONE,
                    trades: 1,
                }
            })
            .collect()
    }

    #[test]
    fn calibrated_coverage_tracks_the_nominal_levels() {
        let candles = series(20_000);
        let raw = backtest::run(&candles, &[1, 5], &|| {
            vec![Box::new(Naive::default()) as Box<dyn Forecaster>]
        })
        .expect("runs");
        let cal = backtest::run(&candles, &[1, 5], &|| {
            vec![Box::new(Calibrated::new(
                Box::new(Naive::default()),
                CalibrationSettings::default(),
            )) as Box<dyn Forecaster>]
        })
        .expect("runs");
        for (r, c) in raw.iter().zip(&cal) {
            let (r, c) = (&r.summary, &c.summary);
            // The raw bands miss the nominal levels by more than 3 points somewhere...
            assert!(
                (r.coverage95 - 0.95).abs() > 0.005 || (r.coverage80 - 0.8).abs() > 0.005,
                "raw already calibrated: {r:?}"
            );
            // ...the calibrated ones are within 1.5 points of both, with the same points.
            assert!((c.coverage80 - 0.8).abs() < 0.015, "80%: {c:?}");
            assert!((c.coverage95 - 0.95).abs() < 0.015, "95%: {c:?}");
            assert_eq!(
                (c.n, c.mae),
                (r.n, r.mae),
                "calibration leaves the point alone"
            );
        }
    }
}
