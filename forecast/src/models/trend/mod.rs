//! The `trend` model: Prophet's piecewise-linear trend with L1-penalised changepoints and a
//! Fourier seasonality ([`fit`]), fitted on the log closes of a rolling window, refitted every
//! `refit_every` bars and extrapolated in between.
//!
//! Per series: the last `window` log closes (while the window fills, fits use its last
//! `⌊len/60⌋·60` bars, so that few designs are built). The first fit comes once `min_obs` are
//! held, and later fits every `refit_every` bars, at the bars where
//! `(bars + phase) mod refit_every = 0` with `phase` a hash of the series key, so that refits of
//! many series are spread evenly over the bars. `k` bars after a fit on `n` bars, at log close `y_t`, the forecast for horizon `h` starts
//! from the last close and carries the fitted curve's change forward, as ETS re-anchors its
//! path:
//!
//! ```text
//! point(h) = exp(y_t + f(n − 1 + k + h) − f(n − 1 + k))
//! band(h)  = exp(ln point(h) ± z·sd),   sd² = σ²_t·h + T(k + h) − T(k)
//! ```
//!
//! where `f` is the fitted trend plus seasonality, `σ²_t` an EWMA (λ = 0.94, as `naive`) of the
//! squared log returns, and `T(s) = y_scale²·2·S·λ̄²·u³/3`, `u = s/(n − 1)`, Prophet's trend
//! uncertainty `s` bars past the window (see [`fit::TrendFit::variance`]): the uncertainty of
//! the slope carried over the next `h` bars. Forecasting the fitted curve itself, as Prophet
//! does, put the point where the curve is rather than where the price is: on 1-minute crypto
//! bars that was 2.7–9.8 times naive's error. A bar that does not follow the previous one (a
//! gap) restarts the series: the window's time axis must have no holes.

pub mod design;
pub mod fit;
mod lasso;

use std::collections::hash_map::Entry;
use std::collections::{HashMap, VecDeque};

use anyhow::{Result, bail};
use tickcast_core::domain::Candle;

use crate::checkpoint::{Dec, Enc};
use crate::{
    Forecaster, ModelVersion, Prediction, SeriesKey, SeriesMap, SeriesRef, Z80, Z95, series_of,
};
use design::{Design, FitSettings, Layout};
use fit::TrendFit;

/// While a window fills, fits use its last `⌊len/60⌋·60` bars, so that only a few window
/// lengths (and so designs, built once each and shared) occur.
const WARMUP_STEP: usize = 60;

/// Model settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TrendSettings {
    /// Bars fitted (Prophet-sized: one day of minutes).
    pub window: usize,
    /// Bars needed before the first fit.
    pub min_obs: usize,
    /// Bars between refits of a series; 0 = never refit after the first fit.
    pub refit_every: u32,
    pub fit: FitSettings,
}

impl Default for TrendSettings {
    fn default() -> Self {
        Self {
            window: 1_440,
            min_obs: 720,
            refit_every: 60,
            fit: FitSettings::default(),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
struct Series {
    /// Log closes, oldest first.
    window: VecDeque<f64>,
    /// EWMA of squared log returns (0 before the first return).
    variance: f64,
    last_open_ms: i64,
    /// Bars folded in since the series was first seen (drives the refit schedule).
    bars: u64,
    fit: Option<TrendFit>,
    /// Bars since the last fit.
    since_fit: u32,
    /// The fit `s = 0, 1, …` bars past its window's last bar: `(f, T)`, the fitted curve and
    /// the trend uncertainty, so that a bar's predictions are lookups, not a design row and
    /// four sines each. Derived from `fit` (not checkpointed); built when first needed after a
    /// fit, longer when a horizon reaches past it.
    path: Vec<(f64, f64)>,
}

impl Series {
    fn new(open_ms: i64) -> Self {
        Self {
            window: VecDeque::new(),
            variance: 0.0,
            last_open_ms: open_ms,
            bars: 0,
            fit: None,
            since_fit: 0,
            path: Vec::new(),
        }
    }
}

/// Prophet-style trend and seasonality on a rolling window of log closes.
#[derive(Debug, Default)]
pub struct TrendModel {
    settings: TrendSettings,
    series: SeriesMap<Series>,
    /// Designs by window length, shared by every series (a design depends on `n` alone).
    designs: HashMap<usize, Design>,
}

impl TrendModel {
    pub fn new(settings: TrendSettings) -> Self {
        Self {
            settings,
            series: SeriesMap::default(),
            designs: HashMap::new(),
        }
    }

    /// Fits the series' window; keeps the old fit when the new one fails.
    fn refit(settings: &TrendSettings, designs: &mut HashMap<usize, Design>, s: &mut Series) {
        let len = s.window.len();
        let n = if len >= settings.window || len < WARMUP_STEP {
            len
        } else {
            len / WARMUP_STEP * WARMUP_STEP
        };
        let design = match designs.entry(n) {
            Entry::Occupied(e) => e.into_mut(),
            Entry::Vacant(v) => {
                let Some(layout) = Layout::new(n, &settings.fit) else {
                    return;
                };
                v.insert(Design::new(layout))
            }
        };
        let y: Vec<f64> = s.window.iter().skip(len - n).copied().collect();
        let warm = s
            .fit
            .as_ref()
            .filter(|f| f.layout == design.layout)
            .map(|f| f.coef.as_slice());
        if let Some(f) = fit::fit(design, &y, &settings.fit, warm) {
            s.fit = Some(f);
            s.since_fit = 0;
            s.path.clear();
        }
    }
}

/// Where in the refit cycle a series sits: FNV-1a of its key, modulo the cycle.
pub(super) fn schedule_phase(key: &dyn SeriesRef, every: u32) -> u64 {
    if every == 0 {
        return 0;
    }
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let (e, s, i) = key.parts();
    for part in [e, s, i] {
        for b in part.bytes().chain([0xff]) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    h % u64::from(every)
}

/// Forecasts `k` bars after the fit, from the last log close `y` and the fit's path (which
/// covers `k + h` for every horizon): the curve's change from `k` to `k + h` added to `y`, the
/// bands `± z·sd` around it with `sd² = variance·h + T(k + h) − T(k)`.
fn predict(
    path: &[(f64, f64)],
    k: u32,
    y: f64,
    variance: f64,
    horizons: &[u32],
) -> impl Iterator<Item = Prediction> {
    let now = path.get(k as usize).copied();
    horizons.iter().filter_map(move |&h| {
        let (f_now, t_now) = now?;
        let (f_then, t_then) = *path.get(k as usize + h as usize)?;
        let mean = y + f_then - f_now;
        let sd = (variance * f64::from(h) + (t_then - t_now).max(0.0)).sqrt();
        let point = mean.exp();
        let (e80, e95) = ((Z80 * sd).exp(), (Z95 * sd).exp());
        Some(Prediction {
            horizon: h,
            point,
            lo80: point / e80,
            hi80: point * e80,
            lo95: point / e95,
            hi95: point * e95,
        })
    })
}

impl Forecaster for TrendModel {
    fn name(&self) -> &'static str {
        "trend"
    }

    /// Revision 2: forecasts re-anchored at the last close.
    fn version(&self) -> ModelVersion {
        ModelVersion::new(2, &self.settings)
    }

    fn fold(&mut self, c: &Candle, horizons: &[u32], out: &mut Vec<Prediction>) {
        let close = c.close_f64();
        if !close.is_finite() || close <= 0.0 {
            return;
        }
        let bar = crate::bar_ms(c);
        let settings = self.settings;
        let phase = schedule_phase(series_of(c), settings.refit_every);
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
        let y = close.ln();
        if let Some(&prev) = s.window.back() {
            s.variance = crate::ewma_variance(s.variance, y - prev, s.window.len() == 1);
        }
        if s.window.len() == settings.window.max(3) {
            s.window.pop_front();
        }
        s.window.push_back(y);
        s.bars += 1;
        s.since_fit = s.since_fit.saturating_add(1);
        let due = match s.fit {
            None => s.window.len() >= settings.min_obs.max(3),
            Some(_) => {
                settings.refit_every > 0
                    && (s.bars + phase).is_multiple_of(u64::from(settings.refit_every))
            }
        };
        if due {
            Self::refit(&settings, &mut self.designs, s);
        }
        let Some(f) = &s.fit else {
            return;
        };
        let h_max = horizons.iter().max().map_or(0, |&h| h as usize);
        let need = s.since_fit as usize + h_max + 1;
        if s.path.len() < need {
            // A scheduled refit comes within `refit_every` bars: cover those at once.
            let len = need
                .max(2 * s.path.len())
                .max(settings.refit_every as usize + h_max + 1);
            let end = (f.layout.n - 1) as f64;
            let trend_var = |steps: f64| f.variance(steps) - f.variance(0.0);
            s.path = std::iter::once((f.value(end), 0.0))
                .chain(
                    f.path(len - 1)
                        .into_iter()
                        .enumerate()
                        .map(|(i, (mean, _))| (mean, trend_var((i + 1) as f64))),
                )
                .collect();
        }
        out.extend(predict(&s.path, s.since_fit, y, s.variance, horizons));
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
                .u32(f.layout.n as u32)
                .f64s(f.coef.iter())
                .f64(f.y_min)
                .f64(f.y_scale)
                .f64(f.sigma),
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
            let n = d.u32()? as usize;
            let Some(layout) = Layout::new(n, &self.settings.fit) else {
                bail!("trend checkpoint: a fit on {n} bars is impossible");
            };
            let coef = d.f64s()?;
            if coef.len() != layout.p() {
                bail!(
                    "trend checkpoint: {} coefficients, the settings give {}",
                    coef.len(),
                    layout.p()
                );
            }
            Some(TrendFit {
                layout,
                coef,
                y_min: d.f64()?,
                y_scale: d.f64()?,
                sigma: d.f64()?,
            })
        } else {
            None
        };
        d.end()?;
        if window.len() > self.settings.window.max(3) {
            bail!(
                "trend checkpoint holds {} bars, the window is {}",
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
                fit,
                since_fit,
                path: Vec::new(),
            },
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{check_resume, synthetic_candles};

    fn small() -> TrendSettings {
        TrendSettings {
            window: 300,
            min_obs: 200,
            refit_every: 50,
            fit: FitSettings {
                period: 100,
                fourier_order: 2,
                ..FitSettings::default()
            },
        }
    }

    #[test]
    fn resumes_from_its_checkpoint_exactly() {
        let candles = synthetic_candles(&["BTC-USDT", "ETH-USDT"], 700, 11);
        let make = || Box::new(TrendModel::new(small())) as Box<dyn Forecaster>;
        // Mid-way between refits, after the window is full.
        check_resume(&make, &candles, 2 * 523 + 1, &[1, 5, 15]).expect("resumes");
        // During warm-up fits.
        check_resume(&make, &candles, 2 * 230, &[1, 5, 15]).expect("resumes");
    }

    #[test]
    fn forecasts_extrapolate_the_fit_and_refit_on_schedule() {
        let candles = synthetic_candles(&["BTC-USDT"], 500, 4);
        let mut m = TrendModel::new(small());
        let key = crate::series_key(&candles[0]);
        let phase = schedule_phase(&key, 50);
        let mut first = None;
        let mut fits = Vec::new();
        let mut last_fit: Option<TrendFit> = None;
        for (i, c) in candles.iter().enumerate() {
            let out = m.update(&[c], &[1, 7]);
            let s = &m.series.get(&key).expect("series");
            if out[0].is_empty() {
                assert!(s.fit.is_none());
                continue;
            }
            first.get_or_insert(i);
            if s.fit != last_fit {
                fits.push(i);
                last_fit = s.fit.clone();
            }
            // The point is the last close plus the fitted curve's change from k to k + h bars
            // past the fit's last bar; the spread the returns' EWMA variance over h bars plus
            // the trend's uncertainty over them.
            let f = s.fit.as_ref().expect("fit");
            let end = (f.layout.n - 1) as f64;
            let k = f64::from(s.since_fit);
            let y = c.close_f64().ln();
            for p in &out[0] {
                let h = f64::from(p.horizon);
                let mean = y + f.value(end + k + h) - f.value(end + k);
                assert!((p.point.ln() - mean).abs() < 1e-12);
                let sd = (s.variance * h + f.variance(k + h) - f.variance(k)).sqrt();
                assert!((p.hi95.ln() - mean - Z95 * sd).abs() < 1e-12);
                assert!((mean - p.lo80.ln() - Z80 * sd).abs() < 1e-12);
                assert!(p.lo95 < p.lo80 && p.lo80 < p.point && p.point < p.hi80);
                assert!(p.hi80 < p.hi95 && p.lo95 > 0.0);
            }
        }
        // 200 bars → the first fit at bar 199; then at the bars where (bars + phase) % 50 = 0.
        assert_eq!(first, Some(199));
        assert_eq!(fits[0], 199);
        for w in fits[1..].iter() {
            assert!((*w as u64 + 1 + phase).is_multiple_of(50), "{fits:?}");
        }
        assert_eq!(
            fits.len(),
            1 + (200..500)
                .filter(|b| (b + 1 + phase).is_multiple_of(50))
                .count()
        );
    }

    #[test]
    fn refits_of_many_series_are_spread_over_the_bars() {
        let names: Vec<String> = (0..200).map(|i| format!("S{i}-USDT")).collect();
        let key = |n: &str| ("x".to_string(), n.to_string(), "1m".to_string());
        let mut per_phase = vec![0u32; 50];
        for n in &names {
            per_phase[schedule_phase(&key(n), 50) as usize] += 1;
        }
        // 200 series over 50 slots: 4 each on average; none empty-handed by far, none piled up.
        assert!(per_phase.iter().all(|&c| c <= 12), "{per_phase:?}");
        assert!(
            per_phase.iter().filter(|&&c| c == 0).count() < 10,
            "{per_phase:?}"
        );
    }

    #[test]
    fn a_gap_restarts_the_series_and_bad_closes_are_skipped() {
        let mut candles = synthetic_candles(&["BTC-USDT"], 500, 5);
        for c in &mut candles[250..] {
            c.open_ms += 3_600_000;
            c.close_ms += 3_600_000;
        }
        let mut m = TrendModel::new(small());
        let out: Vec<bool> = candles
            .iter()
            .map(|c| !m.update(&[c], &[1])[0].is_empty())
            .collect();
        assert!(out[249], "forecasting before the gap");
        assert!(!out[250] && !out[448], "warming up again after the gap");
        assert!(out[449], "200 bars after the gap");
        let mut zero = candles[499].clone();
        zero.open_ms += 60_000;
        zero.close = rust_decimal::Decimal::ZERO;
        assert!(m.update(&[&zero], &[1])[0].is_empty());
        // An old bar again is ignored.
        assert!(m.update(&[&candles[10]], &[1])[0].is_empty());
        let key = crate::series_key(&candles[0]);
        assert_eq!(m.series.get(&key).expect("series").window.len(), 250);
        assert!(m.load_series(&key, &[1, 2, 3]).is_err());
    }

    #[test]
    fn the_returns_variance_is_the_ewma_of_the_window_and_format_1_rebuilds_it() {
        // Fewer bars than the first fit needs, so that the checkpoint ends with the variance
        // and the no-fit flag.
        let candles = synthetic_candles(&["BTC-USDT"], 150, 8);
        let mut m = TrendModel::new(small());
        for c in &candles {
            m.update(&[c], &[1]);
        }
        let key = crate::series_key(&candles[0]);
        let s = m.series.get(&key).expect("series").clone();
        // The window holds every close so far: the EWMA over it is the one carried.
        assert_eq!(s.window.len(), 150);
        assert!(s.fit.is_none());
        assert_eq!(
            crate::window_variance(&s.window).to_bits(),
            s.variance.to_bits()
        );
        let naive_like: f64 = {
            let mut v = 0.0;
            for (i, w) in candles.windows(2).enumerate() {
                let r = (w[1].close_f64() / w[0].close_f64()).ln();
                v = if i == 0 {
                    r * r
                } else {
                    0.94 * v + 0.06 * r * r
                };
            }
            v
        };
        assert!((s.variance / naive_like - 1.0).abs() < 1e-9);
        // A format-1 checkpoint (no variance) loads with the variance rebuilt.
        let v2 = m.save_series(&key).expect("saved");
        let mut v1 = v2.clone();
        v1[0] = 1;
        v1.drain(v1.len() - 9..v1.len() - 1); // the variance's 8 bytes, before the flag
        let mut back = TrendModel::new(small());
        back.load_series(&key, &v1).expect("format 1");
        let loaded = back.series.get(&key).expect("series");
        assert_eq!(loaded.variance.to_bits(), s.variance.to_bits());
        assert_eq!(loaded.window, s.window);
    }
}
