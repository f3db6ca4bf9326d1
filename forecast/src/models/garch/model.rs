//! The `garch` model: random-walk point (last close), intervals from a GARCH(1,1) on log
//! returns ([`super::fit`]), refitted by maximum likelihood on a rolling window every
//! `refit_every` bars, with the conditional variance advanced one step per candle.

use std::collections::VecDeque;

use tickcast_core::domain::Candle;

use super::fit::Garch11;
use anyhow::Result;

use crate::checkpoint::{Dec, Enc};
use crate::{Forecaster, ModelVersion, Prediction, SeriesKey, SeriesMap, Z80, Z95, series_of};

/// Model settings.
#[derive(Debug, Clone, Copy)]
pub struct GarchSettings {
    /// Returns kept for fitting.
    pub window: usize,
    /// Returns needed before the first fit (and so the first forecast).
    pub min_returns: usize,
    /// Bars between refits; 0 = never refit after the first fit.
    pub refit_every: u32,
}

impl Default for GarchSettings {
    fn default() -> Self {
        Self {
            window: 1_000,
            min_returns: 200,
            refit_every: 1_440,
        }
    }
}

#[derive(Debug)]
struct Series {
    last_close: f64,
    returns: VecDeque<f64>,
    params: Option<Garch11>,
    /// Variance of the next return.
    next_var: f64,
    since_fit: u32,
}

/// A fixed pseudo-random offset per series (FNV-1a of exchange and symbol): the same in
/// every process and every run.
fn stagger(c: &Candle) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in c.exchange.bytes().chain([0]).chain(c.symbol.bytes()) {
        h = (h ^ u32::from(b)).wrapping_mul(0x0100_0193);
    }
    h
}

/// GARCH(1,1) volatility bands around the last close.
#[derive(Debug, Default)]
pub struct GarchModel {
    settings: GarchSettings,
    series: SeriesMap<Series>,
}

impl GarchModel {
    pub fn new(settings: GarchSettings) -> Self {
        Self {
            settings,
            series: SeriesMap::default(),
        }
    }

    fn refit(s: &mut Series) {
        let returns: Vec<f64> = s.returns.iter().copied().collect();
        if let Some(p) = Garch11::fit_from(&returns, s.params.as_ref()) {
            let n = returns.len() as f64;
            let var0 = returns.iter().map(|r| r * r).sum::<f64>() / n;
            s.next_var = p.variances(&returns, var0).last().copied().unwrap_or(var0);
            s.params = Some(p);
        }
        s.since_fit = 0;
    }
}

fn predict(
    last: f64,
    p: &Garch11,
    next_var: f64,
    horizons: &[u32],
) -> impl Iterator<Item = Prediction> {
    horizons.iter().map(move |&h| {
        let sd = p.horizon_variance(next_var, h).max(0.0).sqrt();
        let band = |z: f64| {
            let e = (z * sd).exp();
            (last / e, last * e)
        };
        let ((lo80, hi80), (lo95, hi95)) = (band(Z80), band(Z95));
        Prediction {
            horizon: h,
            point: last,
            lo80,
            hi80,
            lo95,
            hi95,
        }
    })
}

impl Forecaster for GarchModel {
    fn name(&self) -> &'static str {
        "garch"
    }

    fn version(&self) -> ModelVersion {
        ModelVersion::new(1, &self.settings)
    }

    fn fold(&mut self, c: &Candle, horizons: &[u32], out: &mut Vec<Prediction>) {
        let settings = self.settings;
        let close = c.close_f64();
        if close.is_nan() || close <= 0.0 {
            return;
        }
        let Some(s) = self.series.get_mut(series_of(c)) else {
            self.series.insert(
                series_of(c),
                Series {
                    last_close: close,
                    returns: VecDeque::new(),
                    params: None,
                    next_var: 0.0,
                    since_fit: 0,
                },
            );
            return;
        };
        let r = (close / s.last_close).ln();
        s.last_close = close;
        if s.returns.len() == settings.window.max(1) {
            s.returns.pop_front();
        }
        s.returns.push_back(r);
        s.since_fit += 1;
        if let Some(p) = &s.params {
            s.next_var = p.next_variance(s.next_var, r);
        }
        let due = match s.params {
            None => s.returns.len() >= settings.min_returns,
            Some(_) => settings.refit_every > 0 && s.since_fit >= settings.refit_every,
        };
        if due {
            let first = s.params.is_none();
            Self::refit(s);
            if first && settings.refit_every > 0 {
                // Spread the series' refits over the refit period, so that series which
                // started together do not all refit on the same bar.
                s.since_fit = stagger(c) % settings.refit_every;
            }
        }
        if let Some(p) = &s.params {
            out.extend(predict(close, p, s.next_var, horizons));
        }
    }

    fn prefetch(&self, candles: &[&Candle], i: usize) {
        self.series.prefetch_ahead(candles, i);
    }
    fn save_series(&self, key: &SeriesKey) -> Option<Vec<u8>> {
        let s = self.series.get(key)?;
        let mut e = Enc::new(1);
        e.f64(s.last_close).f64s(s.returns.iter());
        match &s.params {
            Some(p) => e.bool(true).f64(p.omega).f64(p.alpha).f64(p.beta),
            None => e.bool(false),
        };
        e.f64(s.next_var).u32(s.since_fit);
        Some(e.finish())
    }

    fn reset_series(&mut self, key: &SeriesKey) {
        self.series.remove(key);
    }

    fn load_series(&mut self, key: &SeriesKey, bytes: &[u8]) -> Result<()> {
        let mut d = Dec::new(bytes, 1)?;
        let last_close = d.f64()?;
        let returns = d.f64s()?.into();
        let params = if d.bool()? {
            Some(Garch11 {
                omega: d.f64()?,
                alpha: d.f64()?,
                beta: d.f64()?,
            })
        } else {
            None
        };
        let s = Series {
            last_close,
            returns,
            params,
            next_var: d.f64()?,
            since_fit: d.u32()?,
        };
        d.end()?;
        self.series.insert(key, s);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal::Decimal;
    use rust_decimal::prelude::ToPrimitive as _;
    use tickcast_core::rng::Rng;

    fn candles(n: usize, seed: u64) -> Vec<Candle> {
        let mut rng = Rng::new(seed);
        let mut price = 100.0f64;
        (0..n)
            .map(|i| {
                price *= (0.002 * rng.normal()).exp();
                let p = Decimal::new((price * 10_000.0).round() as i64, 4);
                crate::testing::flat_candle(i, p)
            })
            .collect()
    }

    #[test]
    fn forecasts_start_after_the_first_fit_and_follow_the_recursion() {
        let cs = candles(400, 9);
        let mut m = GarchModel::new(GarchSettings {
            window: 1_000,
            min_returns: 200,
            refit_every: 0,
        });
        let mut first = None;
        for (i, c) in cs.iter().enumerate() {
            let out = m.update(&[c], &[1, 4]);
            if !out[0].is_empty() && first.is_none() {
                first = Some(i);
            }
        }
        // 200 returns need 201 candles.
        assert_eq!(first, Some(200));
        let s = m.series.values().next().expect("one series");
        let p = s.params.expect("fitted");
        // One more candle: the variance advances by exactly one step of the recursion, and the
        // 95% band is last · exp(±1.96 · sqrt(Σ σ²)).
        let before = s.next_var;
        let last = s.last_close;
        let next = candles(401, 9).pop().expect("one more");
        let close = next.close.to_f64().expect("f64");
        let out = m.update(&[&next], &[1, 4]);
        let r = (close / last).ln();
        let var = p.next_variance(before, r);
        let sd4 = p.horizon_variance(var, 4).sqrt();
        let pred = out[0][1];
        assert_eq!(pred.horizon, 4);
        assert!((pred.point - close).abs() < 1e-12);
        assert!((pred.hi95 - close * (Z95 * sd4).exp()).abs() < 1e-9);
        assert!((pred.lo80 - close * (-Z80 * sd4).exp()).abs() < 1e-9);
        // The fitted long-run volatility is near the simulated 0.2% per bar.
        let lr = p.long_run_variance().expect("stationary").sqrt();
        assert!((lr - 0.002).abs() < 0.0003, "{lr}");
    }
}
