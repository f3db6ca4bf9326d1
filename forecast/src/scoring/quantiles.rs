//! The predictive distribution as nine quantiles, calibrated online, and its scores.
//!
//! A forecast's quantile at level τ is `point · exp(m_τ · s)`, where `s = ln(hi95 / point) / z₉₅`
//! is its spread (from its calibrated 95% band) and `m_τ` a multiplier per series, model,
//! horizon and level. Each multiplier starts at the normal quantile `z_τ` and is moved by
//! quantile tracking, as the bands are ([`crate::scoring::conformal`]): after each outcome, with
//! `z = ln(actual / point) / s`, `m_τ ← m_τ + η · (τ − 1{z ≤ m_τ})`, so that in the long run a
//! share τ of outcomes falls at or below it, whatever the shape of the returns. The multipliers
//! are kept in order, so the quantiles never cross.
//!
//! Scores: the PIT error, the largest `|share of outcomes at or below q_τ − τ|` over the nine
//! levels; and the CRPS, from the quantiles' pinball losses: `CRPS = 2 ∫₀¹ pinball_τ dτ`,
//! integrated by the trapezoid rule between the nine levels, and each end level's loss held
//! out to 0 and to 1.

use crate::checkpoint::{Dec, Enc};
use crate::scoring::accuracy::pinball;

/// The quantile levels (a forecast's [`tickcast_core::domain::QUANTILE_LEVELS`]).
pub const LEVELS: [f64; 9] = tickcast_core::domain::QUANTILE_LEVELS;

/// The standard normal quantiles of [`LEVELS`].
pub const NORMAL: [f64; 9] = [
    -1.959_963_984_540,
    -1.644_853_626_951,
    -1.281_551_565_545,
    -0.674_489_750_196,
    0.0,
    0.674_489_750_196,
    1.281_551_565_545,
    1.644_853_626_951,
    1.959_963_984_540,
];

/// Quantile-tracking step, in units of the forecast's spread (the bands' step).
pub const STEP: f64 = 0.01;

/// Each level's weight in the integral over `[0, 1]`: half the distance between its
/// neighbours (the trapezoid rule), and for the two end levels also the stretch out to 0 or 1.
/// They sum to 1.
fn weights() -> [f64; 9] {
    std::array::from_fn(|i| {
        let below = if i == 0 {
            0.0
        } else {
            (LEVELS[i] - LEVELS[i - 1]) / 2.0
        };
        let above = if i == 8 {
            0.0
        } else {
            (LEVELS[i + 1] - LEVELS[i]) / 2.0
        };
        let ends = if i == 0 {
            LEVELS[0]
        } else if i == 8 {
            1.0 - LEVELS[8]
        } else {
            0.0
        };
        below + above + ends
    })
}

/// The CRPS of a forecast given by its nine quantiles ([`LEVELS`]), for the outcome `actual`.
pub fn crps(quantiles: &[f64; 9], actual: f64) -> f64 {
    let w = weights();
    2.0 * (0..9)
        .map(|i| w[i] * pinball(quantiles[i], LEVELS[i], actual))
        .sum::<f64>()
}

/// The calibrated multipliers of one series, model and horizon.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct QuantileCalibrator {
    pub multipliers: [f64; 9],
}

impl Default for QuantileCalibrator {
    fn default() -> Self {
        Self {
            multipliers: NORMAL,
        }
    }
}

impl QuantileCalibrator {
    /// The nine quantiles of a forecast with `point` and spread `s` (log terms).
    pub fn quantiles(&self, point: f64, s: f64) -> [f64; 9] {
        self.multipliers.map(|m| point * (m * s).exp())
    }

    /// Folds in one outcome: the standardised log residual `z = ln(actual / point) / s`.
    pub fn learn(&mut self, z: f64) {
        if !z.is_finite() {
            return;
        }
        for (m, tau) in self.multipliers.iter_mut().zip(LEVELS) {
            let below = if z <= *m { 1.0 } else { 0.0 };
            *m += STEP * (tau - below);
        }
        // In order: a step never lets a lower level pass a higher one.
        for i in 1..9 {
            if self.multipliers[i] < self.multipliers[i - 1] {
                self.multipliers[i] = self.multipliers[i - 1];
            }
        }
    }
}

/// Scores of quantile forecasts for one model and horizon: plain sums ([`QuantileScore::add`],
/// the backtest's) or exponentially weighted ones ([`QuantileScore::add_decayed`], the live
/// scorer's rolling window).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct QuantileScore {
    /// Points scored (not decayed).
    pub n: u64,
    /// Their weight (decayed).
    weight: f64,
    /// Weight of the outcomes at or below each quantile.
    below: [f64; 9],
    crps: f64,
    /// CRPS on the points where naive had a forecast too, and naive's on the same points.
    paired: f64,
    naive_paired: f64,
}

impl QuantileScore {
    /// One outcome of `quantiles`; `naive_crps` is naive's CRPS for the same bar and horizon,
    /// when it had one.
    pub fn add(&mut self, quantiles: &[f64; 9], actual: f64, naive_crps: Option<f64>) {
        self.add_decayed(quantiles, actual, naive_crps, 1.0);
    }

    /// [`QuantileScore::add`], the sums so far weighted by `decay` first.
    pub fn add_decayed(
        &mut self,
        quantiles: &[f64; 9],
        actual: f64,
        naive_crps: Option<f64>,
        decay: f64,
    ) {
        if !actual.is_finite() || quantiles.iter().any(|q| !q.is_finite()) {
            return;
        }
        self.n += 1;
        self.weight = self.weight * decay + 1.0;
        for (b, q) in self.below.iter_mut().zip(quantiles) {
            *b = *b * decay + f64::from(u8::from(actual <= *q));
        }
        let c = crps(quantiles, actual);
        self.crps = self.crps * decay + c;
        self.paired *= decay;
        self.naive_paired *= decay;
        if let Some(nc) = naive_crps.filter(|x| x.is_finite()) {
            self.paired += c;
            self.naive_paired += nc;
        }
    }

    /// Mean CRPS; `None` before any outcome.
    pub fn crps(&self) -> Option<f64> {
        (self.weight > 0.0).then(|| self.crps / self.weight)
    }

    /// CRPS over naive's on the same points (< 1: better than naive).
    pub fn crps_rel(&self) -> Option<f64> {
        (self.naive_paired > 0.0).then(|| self.paired / self.naive_paired)
    }

    /// The largest |share of outcomes at or below q_τ − τ| over the nine levels.
    pub fn pit_max_err(&self) -> Option<f64> {
        (self.weight > 0.0).then(|| {
            self.below
                .iter()
                .zip(LEVELS)
                .map(|(&b, tau)| (b / self.weight - tau).abs())
                .fold(0.0, f64::max)
        })
    }

    pub(crate) fn save(&self, e: &mut Enc) {
        e.u64(self.n).f64(self.weight).f64s(self.below.iter());
        e.f64(self.crps).f64(self.paired).f64(self.naive_paired);
    }

    pub(crate) fn load(d: &mut Dec<'_>) -> anyhow::Result<Self> {
        let (n, weight) = (d.u64()?, d.f64()?);
        let below: [f64; 9] = d
            .f64s()?
            .try_into()
            .map_err(|_| anyhow::anyhow!("checkpoint: quantile score of the wrong size"))?;
        Ok(Self {
            n,
            weight,
            below,
            crps: d.f64()?,
            paired: d.f64()?,
            naive_paired: d.f64()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_cover_the_unit_interval() {
        let w = weights();
        assert!((w.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        assert!((w[0] - 0.0375).abs() < 1e-12 && (w[4] - 0.25).abs() < 1e-12);
    }

    #[test]
    fn crps_of_known_forecasts() {
        // Every quantile at 100, outcome 100: no loss. Outcome 110: each level loses τ·10, so
        // CRPS = 2·10·Σ wᵢτᵢ = 20 · 0.5 (the weights and levels are symmetric about 0.5).
        let flat = [100.0; 9];
        assert_eq!(crps(&flat, 100.0), 0.0);
        assert!((crps(&flat, 110.0) - 10.0).abs() < 1e-9);
        // A point forecast's CRPS is its absolute error.
        assert!((crps(&flat, 93.0) - 7.0).abs() < 1e-9);
        assert!((pinball(10.0, 0.9, 12.0) - 1.8).abs() < 1e-12);
        assert!((pinball(10.0, 0.9, 8.0) - 0.2).abs() < 1e-12);
    }

    #[test]
    fn scores_of_known_points() {
        let mut s = QuantileScore::default();
        let qs = [90.0, 92.0, 94.0, 97.0, 100.0, 103.0, 106.0, 108.0, 110.0];
        s.add(&qs, 100.0, Some(2.0 * crps(&qs, 100.0)));
        s.add(&qs, 95.0, None);
        // 100 is at or below the median and above; 95 at or below the 4 levels from 97 up.
        // Shares at or below: [0,0,0,.5,1,1,1,1,1] → the largest error |1 − 0.5| at the median.
        assert_eq!(s.pit_max_err(), Some(0.5));
        assert_eq!(s.crps_rel(), Some(0.5));
        let mean = (crps(&qs, 100.0) + crps(&qs, 95.0)) / 2.0;
        assert!((s.crps().unwrap() - mean).abs() < 1e-12);
    }

    #[test]
    fn multipliers_track_their_levels_and_stay_in_order() {
        let mut c = QuantileCalibrator::default();
        // Outcomes uniform on [-1, 1]: the τ quantile is 2τ − 1. (Each step moves the
        // multipliers by a little noise: their mean over the second half is what settles.)
        let mut rng = tickcast_core::rng::Rng::new(9);
        let mut mean = [0.0; 9];
        for i in 0..200_000 {
            c.learn(2.0 * rng.unit() - 1.0);
            if i >= 100_000 {
                for (a, m) in mean.iter_mut().zip(c.multipliers) {
                    *a += m / 100_000.0;
                }
            }
        }
        for (m, tau) in mean.iter().zip(LEVELS) {
            assert!((m - (2.0 * tau - 1.0)).abs() < 0.01, "τ {tau}: {m}");
        }
        assert!(c.multipliers.windows(2).all(|w| w[0] <= w[1]));
        let q = c.quantiles(100.0, 0.01);
        assert!(q.windows(2).all(|w| w[0] <= w[1]));
    }
}
