//! The `ets` model: AutoETS from `augurs-ets` (Hyndman et al.'s state-space exponential
//! smoothing, chosen by AICc) on the log closes of a rolling window, refitted every
//! `refit_every` bars.
//!
//! The search spec is `AZN`: additive errors (on log prices, i.e. multiplicative on prices),
//! no, additive or damped-additive trend, no seasonality (augurs' AutoETS has none without
//! MSTL). Refits are staggered across series: due at the bars where
//! `(bars + phase) mod refit_every = 0`, `phase` a hash of the series key.
//!
//! Between refits. augurs 0.10 exposes neither the fitted smoothing parameters nor a way to
//! feed a fitted model new observations, so the fitted state cannot be advanced. At a fit on
//! data ending with `y_n` the model's forecast path `P(1 … L)` is kept (`L` = refit interval
//! plus the longest horizon) with `P(0) = y_n`, and `k` bars later, at log close `y_t`,
//!
//! ```text
//! point(h) = exp(y_t + P(k + h) − P(k)),   band_q(h) = exp(y_t + P(k + h) − P(k) ± w_q(h))
//! ```
//!
//! where `w_q(h)` is the half-width of augurs' `q` = 80% or 95% prediction interval `h` steps
//! after the fit, scaled by `σ_t / σ₁`: `σ_t²` an EWMA (λ = 0.94, as `naive`) of the squared
//! log returns, `σ₁ = w₉₅(1) / z₉₅` augurs' one-step sd. augurs' widths come from the window's
//! residual variance at the fit, once a day, and so miss every change in volatility between
//! fits: unscaled, after the same online calibration, their 95% interval score was 1.05–1.48
//! times naive's at the same point error. Scaled, the bands keep augurs' shape over the
//! horizons and follow the market's volatility from bar to bar. The path's increments (trend, damping) carry on from the fitted state while
//! the level follows the data, as if the level's smoothing weight were 1; at `k = 0` this is
//! exactly augurs' forecast. A model with no trend gives the last close. When the kept path no
//! longer covers `k + h` (a failed refit, a longer horizon) the series refits at once; a bar
//! that does not follow the previous one (a gap) restarts the series.

use std::collections::VecDeque;
use std::panic::{AssertUnwindSafe, catch_unwind};

use anyhow::{Result, bail};
use augurs::Predict as _;
use augurs::ets::model::{
    ErrorComponent, Model, ModelType, OptimizationCriteria, SeasonalComponent, TrendComponent,
    Unfit,
};
use tickcast_core::domain::Candle;

use crate::checkpoint::{Dec, Enc};
use crate::{Forecaster, ModelVersion, Prediction, SeriesKey, SeriesMap, Z95, series_of};

/// Model settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EtsSettings {
    /// Bars fitted.
    pub window: usize,
    /// Bars needed before the first fit.
    pub min_obs: usize,
    /// Bars between scheduled refits of a series (at least 1).
    pub refit_every: u32,
}

impl Default for EtsSettings {
    /// Four hours of minutes, refitted once a day. Cost, measured with
    /// `examples/forecast_cost.rs` on 1,000 symbols of real BTC closes (2 cores shared, load
    /// average ≈ 7.5): 4.9–5.8 ms per bar refitting every 1,440 bars against 7.5–9.7 ms every
    /// 720, i.e. about 4.6 ms per fit of 240 points plus about 2 ms per bar for the 1,000
    /// updates and forecasts.
    fn default() -> Self {
        Self {
            window: 240,
            min_obs: 240,
            refit_every: 1_440,
        }
    }
}

/// What a fit leaves: the forecast path and the interval half-widths.
#[derive(Debug, Clone, PartialEq)]
pub struct EtsPath {
    /// `P(0) = y_n`, then augurs' point forecasts `P(1 … L)`, in log price.
    pub path: Vec<f64>,
    /// Half-widths of the 80% and 95% intervals for steps `1 … H`.
    pub w80: Vec<f64>,
    pub w95: Vec<f64>,
}

impl EtsPath {
    /// A path from its parts (a fit's, or a checkpoint's).
    pub fn new(path: Vec<f64>, w80: Vec<f64>, w95: Vec<f64>) -> Self {
        Self { path, w80, w95 }
    }

    /// Fits AutoETS (`AZN`) to `y` and keeps `len` steps of path and `steps` of widths;
    /// `None` when augurs finds no model or returns non-finite numbers.
    pub fn fit(y: &[f64], len: usize, steps: usize) -> Option<Self> {
        let last = *y.last()?;
        let run = || -> Option<Self> {
            let fitted = auto_azn(y)?;
            let point = fitted.predict(len.max(steps), None).ok()?.point;
            let half = |level: f64| -> Option<Vec<f64>> {
                let f = fitted.predict(steps, level).ok()?;
                let iv = f.intervals?;
                Some(
                    iv.upper
                        .iter()
                        .zip(&iv.lower)
                        .map(|(u, l)| (u - l) / 2.0)
                        .collect(),
                )
            };
            let path: Vec<f64> = std::iter::once(last).chain(point).collect();
            Some(Self::new(path, half(0.8)?, half(0.95)?))
        };
        // augurs is third-party code with panicking paths; a panic is a failed fit here.
        let out = catch_unwind(AssertUnwindSafe(run)).ok().flatten()?;
        let finite = |v: &[f64]| v.iter().all(|x| x.is_finite());
        let sane = finite(&out.path) && finite(&out.w80) && finite(&out.w95);
        let widths_ok = out.w80.len() == steps && out.w95.len() == steps;
        (sane && widths_ok).then_some(out)
    }

    /// Whether the path covers `k + h` for every horizon up to `h_max`.
    fn covers(&self, k: u32, h_max: u32) -> bool {
        let need = k as usize + h_max as usize;
        need < self.path.len() && (h_max as usize) <= self.w80.len()
    }

    /// Forecasts `k` bars after the fit at log close `y`, with the returns' EWMA `variance`
    /// (the fit's own widths when it is 0).
    fn predict(
        &self,
        y: f64,
        k: u32,
        variance: f64,
        horizons: &[u32],
    ) -> impl Iterator<Item = Prediction> {
        let k = k as usize;
        let sd1 = self.w95.first().map_or(0.0, |w| w / Z95);
        let scale = if variance > 0.0 && sd1 > 0.0 {
            variance.sqrt() / sd1
        } else {
            1.0
        };
        horizons.iter().map(move |&h| {
            let h = h as usize;
            let mean = y + self.path[k + h] - self.path[k];
            let point = mean.exp();
            let (e80, e95) = (
                (self.w80[h - 1] * scale).exp(),
                (self.w95[h - 1] * scale).exp(),
            );
            Prediction {
                horizon: h as u32,
                point,
                lo80: point / e80,
                hi80: point * e80,
                lo95: point / e95,
                hi95: point * e95,
            }
        })
    }
}

/// augurs' `AutoETS::new(1, "AZN")` search, model for model: additive errors, no season; no
/// trend, damped additive trend and additive trend, in augurs' order, each fitted by augurs'
/// [`Unfit::fit`] (maximum likelihood, Nelder–Mead from augurs' initial values, at most 2,000
/// iterations, as AutoETS sets them); the lowest AICc wins, the first of equals. `None` when
/// no candidate fits (or `y` is too short for AutoETS).
///
/// The one setting that differs is `nmse`, the number of steps ahead over which augurs also
/// tracks a mean squared error while it fits: AutoETS asks for 3 and forecasts three steps at
/// every point of every likelihood evaluation, though the likelihood never reads them. Here it
/// is 1. The fitted parameters, states and σ, and so every forecast and interval, are the same
/// bits (`the_search_equals_augurs_auto_ets` checks it); a fit costs less.
pub fn auto_azn(y: &[f64]) -> Option<Model> {
    // AutoETS: two parameters (α and the level) for an automatic trend spec, and it declines
    // unless there are more than four points beyond them.
    if y.len() <= 2 + 4 {
        return None;
    }
    [
        (TrendComponent::None, false),
        (TrendComponent::Additive, true),
        (TrendComponent::Additive, false),
    ]
    .into_iter()
    .filter_map(|(trend, damped)| {
        let model = Unfit::new(ModelType {
            error: ErrorComponent::Additive,
            trend,
            season: SeasonalComponent::None,
        })
        .damped(damped)
        .nmse(1)
        .opt_crit(OptimizationCriteria::Likelihood)
        .max_iterations(2_000)
        .fit(y)
        .ok()?;
        (!model.aicc().is_nan()).then_some(model)
    })
    .min_by(|a, b| {
        a.aicc()
            .partial_cmp(&b.aicc())
            .unwrap_or(std::cmp::Ordering::Equal)
    })
}

#[derive(Debug, Clone, PartialEq)]
struct Series {
    window: VecDeque<f64>,
    /// EWMA of squared log returns (0 before the first return).
    variance: f64,
    last_open_ms: i64,
    bars: u64,
    since_fit: u32,
    fit: Option<EtsPath>,
}

impl Series {
    fn new(open_ms: i64) -> Self {
        Self {
            window: VecDeque::new(),
            variance: 0.0,
            last_open_ms: open_ms,
            bars: 0,
            since_fit: 0,
            fit: None,
        }
    }
}

/// AutoETS on a rolling window of log closes.
#[derive(Debug, Default)]
pub struct EtsModel {
    settings: EtsSettings,
    series: SeriesMap<Series>,
}

impl EtsModel {
    pub fn new(settings: EtsSettings) -> Self {
        Self {
            settings,
            series: SeriesMap::default(),
        }
    }
}

impl Forecaster for EtsModel {
    fn name(&self) -> &'static str {
        "ets"
    }

    /// Revision 2: bands scaled by the EWMA volatility.
    fn version(&self) -> ModelVersion {
        ModelVersion::new(2, &self.settings)
    }

    fn fold(&mut self, c: &Candle, horizons: &[u32], out: &mut Vec<Prediction>) {
        let close = c.close_f64();
        if !close.is_finite() || close <= 0.0 || horizons.contains(&0) {
            return;
        }
        let bar = crate::bar_ms(c);
        let st = self.settings;
        let every = st.refit_every.max(1);
        let phase = crate::models::trend::schedule_phase(series_of(c), every);
        let s = self
            .series
            .get_or_insert_with(series_of(c), || Series::new(c.open_ms));
        if !s.window.is_empty() {
            if c.open_ms <= s.last_open_ms {
                return;
            }
            if c.open_ms != s.last_open_ms + bar {
                *s = Series {
                    bars: s.bars,
                    ..Series::new(c.open_ms)
                };
            }
        }
        s.last_open_ms = c.open_ms;
        if s.window.len() == st.window.max(8) {
            s.window.pop_front();
        }
        let y = close.ln();
        if let Some(&prev) = s.window.back() {
            s.variance = crate::ewma_variance(s.variance, y - prev, s.window.len() == 1);
        }
        s.window.push_back(y);
        s.bars += 1;
        s.since_fit = s.since_fit.saturating_add(1);
        let h_max = horizons.iter().copied().max().unwrap_or(0);
        let due = match &s.fit {
            None => s.window.len() >= st.min_obs.max(8),
            Some(f) => {
                (s.bars + phase).is_multiple_of(u64::from(every)) || !f.covers(s.since_fit, h_max)
            }
        };
        if due {
            let data: Vec<f64> = s.window.iter().copied().collect();
            let len = every as usize + h_max as usize;
            if let Some(f) = EtsPath::fit(&data, len, h_max as usize) {
                s.fit = Some(f);
                s.since_fit = 0;
            }
        }
        if let Some(f) = &s.fit
            && f.covers(s.since_fit, h_max)
        {
            out.extend(f.predict(y, s.since_fit, s.variance, horizons));
        }
    }

    fn prefetch(&self, candles: &[&Candle], i: usize) {
        self.series.prefetch_ahead(candles, i);
    }

    fn save_series(&self, key: &SeriesKey) -> Option<Vec<u8>> {
        let s = self.series.get(key)?;
        let mut e = Enc::new(2);
        e.f64s(s.window.iter())
            .i64(s.last_open_ms)
            .u64(s.bars)
            .u32(s.since_fit)
            .f64(s.variance);
        match &s.fit {
            Some(f) => e
                .bool(true)
                .f64s(f.path.iter())
                .f64s(f.w80.iter())
                .f64s(f.w95.iter()),
            None => e.bool(false),
        };
        Some(e.finish())
    }

    fn reset_series(&mut self, key: &SeriesKey) {
        self.series.remove(key);
    }

    fn load_series(&mut self, key: &SeriesKey, bytes: &[u8]) -> Result<()> {
        // Format 1 had no variance: it is rebuilt from the window's closes.
        let (mut d, version) = Dec::versioned(bytes, 1..=2)?;
        let window: VecDeque<f64> = d.f64s()?.into();
        let last_open_ms = d.i64()?;
        let bars = d.u64()?;
        let since_fit = d.u32()?;
        let variance = if version >= 2 {
            d.f64()?
        } else {
            crate::window_variance(&window)
        };
        let fit = if d.bool()? {
            let f = EtsPath::new(d.f64s()?, d.f64s()?, d.f64s()?);
            if f.path.is_empty() || f.w80.len() != f.w95.len() {
                bail!("ets checkpoint: inconsistent forecast path");
            }
            Some(f)
        } else {
            None
        };
        d.end()?;
        if window.len() > self.settings.window.max(8) {
            bail!(
                "ets checkpoint holds {} bars, the window is {}",
                window.len(),
                self.settings.window
            );
        }
        self.series.insert(
            key,
            Series {
                window,
                variance,
                last_open_ms,
                bars,
                since_fit,
                fit,
            },
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{check_resume, synthetic_candles};
    use crate::{Z80, series_key};
    use augurs::Fit as _;
    use augurs::ets::AutoETS;
    use rust_decimal::Decimal;
    use rust_decimal::prelude::ToPrimitive as _;
    use tickcast_core::rng::Rng;

    fn small() -> EtsSettings {
        EtsSettings {
            window: 120,
            min_obs: 100,
            refit_every: 40,
        }
    }

    /// One series of closes `exp(y_i)`.
    fn candles(y: &[f64]) -> Vec<Candle> {
        y.iter()
            .enumerate()
            .map(|(i, v)| {
                let p = Decimal::from_f64_retain(v.exp())
                    .expect("finite")
                    .round_dp(10);
                crate::testing::flat_candle(i, p)
            })
            .collect()
    }

    fn log_close(c: &Candle) -> f64 {
        c.close.to_f64().expect("f64").ln()
    }

    #[test]
    fn resumes_from_its_checkpoint_exactly() {
        let cs = synthetic_candles(&["BTC-USDT", "ETH-USDT"], 400, 13);
        let make = || Box::new(EtsModel::new(small())) as Box<dyn Forecaster>;
        check_resume(&make, &cs, 2 * 251 + 1, &[1, 5, 15]).expect("resumes");
    }

    #[test]
    fn forecasts_are_augurs_at_a_fit_and_carry_its_path_between_fits() {
        let cs = synthetic_candles(&["BTC-USDT"], 300, 21);
        let mut m = EtsModel::new(small());
        let key = series_key(&cs[0]);
        let horizons = [1, 5, 15];
        let mut checked_fit = false;
        for (i, c) in cs.iter().enumerate() {
            let out = m.update(&[c], &horizons);
            let s = &m.series.get(&key).expect("series");
            let Some(f) = &s.fit else {
                assert!(out[0].is_empty());
                continue;
            };
            let y = log_close(c);
            let k = s.since_fit as usize;
            if k == 0 && !checked_fit {
                // The bar of a fit: augurs' own forecast on the same window.
                let window: Vec<f64> = cs[i + 1 - s.window.len()..=i]
                    .iter()
                    .map(log_close)
                    .collect();
                let fitted = AutoETS::new(1, "AZN")
                    .expect("spec")
                    .fit(&window)
                    .expect("fit");
                let f95 = fitted.predict(15, 0.95).expect("predict");
                let iv = f95.intervals.expect("intervals");
                // The bands: augurs' widths, scaled from its one-step sd to the returns'.
                let scale = s.variance.sqrt() / ((iv.upper[0] - f95.point[0]) / Z95);
                for p in &out[0] {
                    let h = p.horizon as usize;
                    assert!((p.point.ln() - f95.point[h - 1]).abs() < 1e-12);
                    let w = (iv.upper[h - 1] - f95.point[h - 1]) * scale;
                    assert!((p.hi95.ln() - p.point.ln() - w).abs() < 1e-9);
                    let w = (f95.point[h - 1] - iv.lower[h - 1]) * scale;
                    assert!((p.point.ln() - p.lo95.ln() - w).abs() < 1e-9);
                }
                checked_fit = true;
            }
            let scale = s.variance.sqrt() / (f.w95[0] / Z95);
            // The returns' variance is the EWMA over the window (which holds every close).
            assert!(s.variance > 0.0);
            assert_eq!(
                crate::window_variance(&cs[..=i].iter().map(log_close).collect::<Vec<_>>())
                    .to_bits(),
                s.variance.to_bits()
            );
            for p in &out[0] {
                let h = p.horizon as usize;
                let mean = y + f.path[k + h] - f.path[k];
                assert!((p.point.ln() - mean).abs() < 1e-12);
                assert!((p.hi80.ln() - mean - f.w80[h - 1] * scale).abs() < 1e-12);
                assert!((mean - p.lo95.ln() - f.w95[h - 1] * scale).abs() < 1e-12);
                // Normal intervals: the 95% half-width is z95/z80 times the 80% one.
                assert!((f.w95[h - 1] / f.w80[h - 1] - Z95 / Z80).abs() < 1e-6);
            }
        }
        assert!(checked_fit);
    }

    /// [`auto_azn`] is AutoETS("AZN") to the bit: the same model, forecasts and intervals, on
    /// random walks, a trending series, a flat one and a short one.
    #[test]
    fn the_search_equals_augurs_auto_ets() {
        let mut rng = Rng::new(31);
        let mut series: Vec<Vec<f64>> = Vec::new();
        for sd in [1e-3, 5e-3, 2e-2] {
            let mut y = 4.6;
            series.push(
                (0..240)
                    .map(|_| {
                        y += sd * rng.normal();
                        y
                    })
                    .collect(),
            );
        }
        series.push(
            (0..240)
                .map(|i| 10.0 + 2e-3 * i as f64 + 1e-4 * rng.normal())
                .collect(),
        );
        series.push(vec![3.0; 60]);
        series.push(vec![1.0, 1.1, 1.05, 1.2, 1.15, 1.3, 1.25]);
        let mut chose_trend = 0;
        for y in &series {
            let ours = auto_azn(y).expect("a model");
            let theirs = AutoETS::new(1, "AZN").expect("spec").fit(y).expect("fit");
            let model = theirs.model();
            assert_eq!(
                ours.model_type().to_string(),
                model.model_type().to_string()
            );
            assert_eq!(ours.damped(), model.damped());
            assert_eq!(ours.aicc().to_bits(), model.aicc().to_bits());
            chose_trend += usize::from(ours.model_type().trend != TrendComponent::None);
            for level in [None, Some(0.8), Some(0.95)] {
                let a = ours.predict(60, level).expect("ours");
                let b = theirs.predict(60, level).expect("theirs");
                let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&a.point), bits(&b.point));
                let (ia, ib) = (a.intervals, b.intervals);
                assert_eq!(ia.is_some(), ib.is_some());
                if let (Some(ia), Some(ib)) = (ia, ib) {
                    assert_eq!(bits(&ia.lower), bits(&ib.lower));
                    assert_eq!(bits(&ia.upper), bits(&ib.upper));
                }
            }
        }
        // Both kinds of model were chosen somewhere.
        assert!(
            chose_trend > 0 && chose_trend < series.len(),
            "{chose_trend}"
        );
        assert!(auto_azn(&[1.0, 1.1, 1.2, 1.3, 1.4, 1.5]).is_none());
        assert!(
            AutoETS::new(1, "AZN")
                .expect("spec")
                .fit(&[1.0, 1.1, 1.2, 1.3, 1.4, 1.5])
                .is_err()
        );
    }

    #[test]
    fn follows_a_clear_log_linear_trend() {
        let mut rng = Rng::new(8);
        let y: Vec<f64> = (0..200)
            .map(|i| 4.0 + 1e-3 * i as f64 + 1e-4 * rng.normal())
            .collect();
        let cs = candles(&y);
        let mut m = EtsModel::new(small());
        let mut last = Vec::new();
        for c in &cs {
            last = m.update(&[c], &[1, 60]).remove(0);
        }
        let y_t = y[199];
        let drift = last[1].point.ln() - y_t;
        assert!((drift - 0.06).abs() < 0.003, "{drift}");
        assert!(last[1].hi95 > last[1].hi80 && last[1].lo95 < last[1].lo80);
        // Wider bands further out.
        assert!(last[1].hi95 / last[1].lo95 > last[0].hi95 / last[0].lo95);
    }

    #[test]
    fn a_longer_horizon_than_the_kept_path_refits_at_once() {
        let cs = synthetic_candles(&["BTC-USDT"], 150, 2);
        let mut m = EtsModel::new(small());
        for c in &cs[..140] {
            m.update(&[c], &[1]);
        }
        let key = series_key(&cs[0]);
        assert!(
            m.series
                .get(&key)
                .expect("series")
                .fit
                .as_ref()
                .expect("fit")
                .w80
                .len()
                == 1
        );
        let out = m.update(&[&cs[140]], &[1, 300]);
        let s = &m.series.get(&key).expect("series");
        assert_eq!(s.since_fit, 0);
        assert_eq!(out[0].len(), 2);
        assert_eq!(s.fit.as_ref().expect("fit").w80.len(), 300);
        // A constant series and a too-short one fit or decline without panicking.
        assert!(EtsPath::fit(&[2.0; 50], 10, 5).is_none_or(|f| f.path.len() == 11));
        assert!(EtsPath::fit(&[2.0, 2.1], 10, 5).is_none());
        assert!(m.load_series(&key, &[1, 0]).is_err());
    }
}
