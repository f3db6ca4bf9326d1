//! Online interval calibration for any model: wraps a [`Forecaster`] and rebuilds each
//! prediction's 80% and 95% intervals by quantile tracking ([`crate::scoring::conformal`]) per series,
//! horizon and level. The model's own 95% half-width (in log terms, ÷ z₉₅) gives its spread;
//! the interval is `point · exp(±m · spread)` where `m` starts at the normal z and is nudged
//! after each outcome, which arrives `horizon` bars after the prediction. The wrapper keeps the
//! model's name: every model's intervals are calibrated.
//!
//! The outcomes come from the stage's [`crate::scoring::scorer::Scorer`], which keeps every published
//! forecast until its target bar closes anyway ([`Forecaster::update_into`]): the calibrator
//! learns from each of its model's forecasts scored at a bar whose published interval has a
//! positive width, before it publishes that bar's predictions. So its own state is two
//! trackers per horizon, and nothing is kept twice. Without outcomes ([`Scored::NONE`]) the
//! multipliers stay where they are.

use anyhow::Result;
use tickcast_core::domain::Candle;

use crate::checkpoint::{Dec, Enc};
use crate::scoring::conformal::{self, QuantileTracker};
use crate::{
    Forecaster, ModelVersion, Outcome, Prediction, Scored, SeriesKey, SeriesMap, Z80, Z95,
    series_of,
};

/// Calibrator settings.
#[derive(Debug, Clone, Copy)]
pub struct CalibrationSettings {
    /// Quantile-tracking step η, in units of the model's spread. On 320k real BTC 1-minute
    /// bars, 0.01 holds 80/95% coverage to ±0.1 point at horizons 1–60.
    pub step: f64,
}

impl Default for CalibrationSettings {
    fn default() -> Self {
        Self { step: 0.01 }
    }
}

/// One series' calibrators; also used by the ensemble to calibrate its own intervals.
///
/// Per horizon, the 80% and 95% trackers' multipliers side by side: the trackers' target and
/// step are the same for every series (the level's and the settings'), so only the
/// multipliers are kept — a few dozen bytes per series, scanned once per prediction, where a
/// [`QuantileTracker`] per horizon and level was several cache lines.
#[derive(Debug, Default)]
pub(crate) struct SeriesState {
    /// (horizon, [80% multiplier, 95% multiplier]).
    cal: Vec<(u32, [f64; 2])>,
}

impl SeriesState {
    /// The multipliers of one horizon (the levels' nominal z at first use).
    fn multipliers(&mut self, horizon: u32) -> &mut [f64; 2] {
        crate::entry(&mut self.cal, horizon, || LEVELS.map(|(_, z)| z))
    }

    /// Folds in the outcomes of earlier predictions scored at this bar.
    pub(crate) fn learn<'a>(
        &mut self,
        outcomes: impl IntoIterator<Item = &'a Outcome>,
        settings: CalibrationSettings,
    ) {
        for o in outcomes {
            let qs = self.multipliers(o.horizon);
            for ((q, covered), (target, _)) in qs.iter_mut().zip(o.covered).zip(LEVELS) {
                *q = conformal::updated(*q, target, settings.step, covered);
            }
        }
    }

    /// The calibrated version of a prediction made at the current bar.
    pub(crate) fn publish(&mut self, p: Prediction) -> Prediction {
        publish(self, p)
    }

    /// Format 1, whose bar counter and waiting predictions are no longer kept: written as
    /// zero and none, skipped when read. Each (horizon, level) is written as a whole
    /// [`QuantileTracker`] (target, step, multiplier), the step being `settings`'.
    pub(crate) fn save(&self, e: &mut Enc, settings: CalibrationSettings) {
        e.u64(0).u32(0);
        let mut cal: Vec<_> = self.cal.iter().collect();
        cal.sort_by_key(|(h, _)| *h);
        e.u32(2 * cal.len() as u32);
        for (h, qs) in cal {
            for (level, (q, (target, _))) in qs.iter().zip(LEVELS).enumerate() {
                e.u32(*h).u8(level as u8);
                QuantileTracker {
                    target,
                    lr: settings.step,
                    q: *q,
                }
                .save(e);
            }
        }
    }

    /// Reads [`SeriesState::save`]'s bytes. Of each tracker only the multiplier is kept: its
    /// target is its level's, and its step the settings' in force now.
    pub(crate) fn load(d: &mut Dec<'_>) -> Result<Self> {
        let _bar = d.u64()?;
        for _ in 0..d.u32()? {
            // due, horizon, then the two intervals' bounds.
            let _ = (d.u64()?, d.u32()?);
            for _ in 0..4 {
                d.f64()?;
            }
        }
        let mut st = SeriesState::default();
        for _ in 0..d.u32()? {
            let (h, level) = (d.u32()?, usize::from(d.u8()?));
            if level >= LEVELS.len() {
                anyhow::bail!("checkpoint: interval level {level}");
            }
            st.multipliers(h)[level] = QuantileTracker::load(d)?.multiplier();
        }
        Ok(st)
    }
}

const LEVELS: [(f64, f64); 2] = [(0.2, Z80), (0.05, Z95)];

/// A model whose intervals are calibrated online.
pub struct Calibrated {
    inner: Box<dyn Forecaster>,
    settings: CalibrationSettings,
    series: SeriesMap<SeriesState>,
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
            series: SeriesMap::default(),
        }
    }
}

impl Forecaster for Calibrated {
    fn name(&self) -> &'static str {
        self.inner.name()
    }

    /// The model's, with the calibration's step among its settings.
    fn version(&self) -> ModelVersion {
        let mut v = self.inner.version();
        v.settings
            .push_str(&format!("; calibration step {}", self.settings.step));
        v
    }

    fn update_into(
        &mut self,
        candles: &[&Candle],
        horizons: &[u32],
        scored: &Scored<'_>,
        out: &mut [Vec<Prediction>],
    ) {
        self.inner.update_into(candles, horizons, scored, out);
        let settings = self.settings;
        for (i, (c, ps)) in candles.iter().zip(out.iter_mut()).enumerate() {
            self.series.prefetch_ahead(candles, i);
            let st = self.series.get_or_default(series_of(c));
            st.learn(scored.at(i), settings);
            for p in ps.iter_mut() {
                *p = st.publish(*p);
            }
        }
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
        match st {
            Some(st) => {
                e.bool(true);
                st.save(&mut e, self.settings);
            }
            None => {
                e.bool(false);
            }
        }
        Some(e.finish())
    }

    fn reset_series(&mut self, key: &SeriesKey) {
        self.inner.reset_series(key);
        self.series.remove(key);
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
        let st = SeriesState::load(&mut d)?;
        d.end()?;
        self.series.insert(key, st);
        Ok(())
    }

    fn save_model(&self) -> Option<Vec<u8>> {
        self.inner.save_model()
    }

    fn load_model(&mut self, bytes: &[u8]) -> Result<()> {
        self.inner.load_model(bytes)
    }
}

/// The spread a prediction's intervals are rebuilt from, in log terms: ln(hi95 / point) / z₉₅.
/// `None` when the prediction has no usable interval; it is then published as it is. So a
/// calibrated prediction depends on its point and `hi95` alone.
pub(crate) fn spread(point: f64, hi95: f64) -> Option<f64> {
    let scale = (hi95 / point).ln() / Z95;
    (!point.is_nan() && point > 0.0 && scale.is_finite() && scale > 0.0).then_some(scale)
}

/// Whether [`spread`] is `Some`, without its logarithm (the scorer asks for every forecast
/// it scores): `ln(x) / z₉₅` is finite and positive exactly when `x = hi95 / point` is finite
/// and above 1.
pub(crate) fn has_spread(point: f64, hi95: f64) -> bool {
    let x = hi95 / point;
    !point.is_nan() && point > 0.0 && x.is_finite() && x > 1.0
}

/// The calibrated version of one prediction.
fn publish(st: &mut SeriesState, p: Prediction) -> Prediction {
    let Some(scale) = spread(p.point, p.hi95) else {
        return p;
    };
    let qs = *st.multipliers(p.horizon);
    let [b80, b95] = qs.map(|m| {
        let e = (m * scale).exp();
        (p.point / e, p.point * e)
    });
    // The 95% interval never sits inside the 80% one.
    let b95 = (b95.0.min(b80.0), b95.1.max(b80.1));
    Prediction {
        lo80: b80.0,
        hi80: b80.1,
        lo95: b95.0,
        hi95: b95.1,
        ..p
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backtest::engine as backtest;
    use crate::models::naive::Naive;
    use crate::stage::ForecastStage;
    use rust_decimal::Decimal;
    use tickcast_core::rng::Rng;

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
                crate::testing::flat_candle(i, p)
            })
            .collect()
    }

    #[test]
    fn has_spread_agrees_with_spread() {
        let up = |x: f64| f64::from_bits(x.to_bits() + 1);
        let values = [
            f64::NAN,
            f64::NEG_INFINITY,
            -1.0,
            -0.0,
            0.0,
            f64::MIN_POSITIVE,
            1e-300,
            0.5,
            1.0,
            up(1.0),
            1.0001,
            100.0,
            up(100.0),
            1e300,
            f64::MAX,
            f64::INFINITY,
        ];
        for &point in &values {
            for &hi95 in &values {
                assert_eq!(
                    has_spread(point, hi95),
                    spread(point, hi95).is_some(),
                    "point {point:e}, hi95 {hi95:e}"
                );
            }
        }
    }

    #[test]
    fn calibrated_coverage_tracks_the_nominal_levels() {
        let candles = series(20_000);
        let raw = backtest::run(&candles, &|| {
            ForecastStage::new(vec![Box::new(Naive::default())], vec![1, 5], "t")
        })
        .expect("runs");
        let cal = backtest::run(&candles, &|| {
            let m = Calibrated::new(Box::new(Naive::default()), CalibrationSettings::default());
            ForecastStage::new(vec![Box::new(m)], vec![1, 5], "t")
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
