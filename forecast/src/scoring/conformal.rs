//! Online interval calibration by quantile tracking. Every model publishes an interval
//! `point · exp(±m · spread)`, where `spread` is the model's own standard deviation in log terms
//! and `m` is the calibrator's multiplier for that series, horizon and level.

use anyhow::Result;

use crate::checkpoint::{Dec, Enc};

/// The smallest multiplier. Not zero: a zero multiplier publishes an interval of zero width,
/// and the calibrator learns only from intervals of positive width
/// ([`crate::scoring::calibrated`]), so it could never grow again.
pub const MIN_MULTIPLIER: f64 = 1e-6;

/// Online quantile tracking (Angelopoulos, Candès & Tibshirani, "Conformal PID control", 2023):
/// the interval's multiplier `q` moves after every outcome by `η·(errₜ − α)`, errₜ = 1 when the
/// published interval missed. With a fixed step η and bounded scores, the miscoverage averaged
/// over any T outcomes is within `(q_max − q_min) / (η·T)` of α, whatever the model — a
/// scale-aware step (η proportional to recent scores) loses that guarantee: it steps up in
/// volatile spells and down in calm ones, and over-covered the long horizons on real BTC bars.
/// State is three numbers, so checkpoints stay small however long the history.
#[derive(Debug, Clone, PartialEq)]
pub struct QuantileTracker {
    /// Target miscoverage (0.2 for an 80% interval).
    pub target: f64,
    /// Step η, in units of the model's spread.
    pub lr: f64,
    /// Current multiplier; starts at the model's nominal one.
    pub q: f64,
}

impl QuantileTracker {
    pub fn new(target: f64, lr: f64, nominal: f64) -> Self {
        Self {
            target,
            lr,
            q: nominal,
        }
    }

    pub fn multiplier(&self) -> f64 {
        self.q
    }

    /// Folds in one outcome: whether the interval that was published covered the actual.
    pub fn update(&mut self, covered: bool) {
        self.q = updated(self.q, self.target, self.lr, covered);
    }

    pub fn save(&self, e: &mut Enc) {
        e.f64(self.target).f64(self.lr).f64(self.q);
    }

    pub fn load(d: &mut Dec<'_>) -> Result<Self> {
        Ok(Self {
            target: d.f64()?,
            lr: d.f64()?,
            q: d.f64()?,
        })
    }
}

/// A multiplier `q` after one outcome of a tracker with target miscoverage `target` and step
/// `lr` ([`QuantileTracker::update`]): whether the published interval covered the actual.
pub fn updated(q: f64, target: f64, lr: f64, covered: bool) -> f64 {
    let err = if covered { 0.0 } else { 1.0 };
    (q + lr * (err - target)).max(MIN_MULTIPLIER)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tickcast_core::rng::Rng;

    #[test]
    fn the_multiplier_moves_by_the_step_times_the_miss() {
        let mut q = QuantileTracker::new(0.2, 0.01, 1.0);
        q.update(false); // miss: 1 + 0.01·(1 − 0.2)
        assert!((q.multiplier() - 1.008).abs() < 1e-12);
        q.update(true); // hit: 1.008 − 0.01·0.2
        assert!((q.multiplier() - 1.006).abs() < 1e-12);
        let mut low = QuantileTracker::new(0.2, 1.0, 0.1);
        low.update(true);
        assert_eq!(low.multiplier(), MIN_MULTIPLIER, "never below the floor");
    }

    #[test]
    fn coverage_tracks_the_target_when_the_model_is_wrong_and_regimes_shift() {
        // The model claims spread 1 but errors are normal with sd 3, then 0.7.
        let mut rng = Rng::new(5);
        for (target, z) in [(0.2, 1.281_551_565_545), (0.05, 1.959_963_984_540)] {
            let mut q = QuantileTracker::new(target, 0.01, z);
            let (mut covered, mut n) = (0u32, 0u32);
            for t in 0..40_000 {
                let sd = if t < 20_000 { 3.0 } else { 0.7 };
                let e: f64 = sd * rng.normal();
                let hit = e.abs() <= q.multiplier();
                if t >= 2_000 {
                    n += 1;
                    covered += u32::from(hit);
                }
                q.update(hit);
            }
            let coverage = f64::from(covered) / f64::from(n);
            assert!(
                (coverage - (1.0 - target)).abs() < 0.01,
                "target {}: coverage {coverage}",
                1.0 - target
            );
            let mut e = Enc::new(1);
            q.save(&mut e);
            let buf = e.finish();
            let mut d = Dec::new(&buf, 1).expect("version");
            assert_eq!(QuantileTracker::load(&mut d).expect("loads"), q);
        }
    }
}
