//! Adaptive conformal inference (Gibbs & Candès, 2021): an interval's miscoverage level αₜ is
//! nudged after every outcome, αₜ₊₁ = αₜ + γ·(α − errₜ), errₜ = 1 when the actual fell outside
//! the interval built at level αₜ, so that long-run coverage tracks 1 − α whatever the model.
//! Intervals are the point ± the (1 − αₜ) quantile of recent absolute scaled errors.

use std::collections::VecDeque;

use anyhow::Result;

use super::state::{Dec, Enc};

/// One interval's calibrator.
#[derive(Debug, Clone)]
pub struct Aci {
    /// Target miscoverage (0.2 for an 80% interval).
    pub target: f64,
    pub gamma: f64,
    /// Current working miscoverage level.
    pub alpha_t: f64,
    /// Recent absolute errors, scaled by the model's own spread, in arrival order...
    scores: VecDeque<f64>,
    /// ...and sorted, for the quantile.
    sorted: Vec<f64>,
    window: usize,
}

impl Aci {
    /// Appends this calibrator's state to a checkpoint.
    pub fn save(&self, e: &mut Enc) {
        e.f64(self.target).f64(self.gamma).f64(self.alpha_t);
        e.u32(self.window as u32).f64s(self.scores.iter());
    }

    /// Reads a calibrator written by [`Aci::save`].
    pub fn load(d: &mut Dec<'_>) -> Result<Self> {
        let (target, gamma, alpha_t) = (d.f64()?, d.f64()?, d.f64()?);
        let window = (d.u32()? as usize).max(1);
        let scores: VecDeque<f64> = d.f64s()?.into();
        if scores.len() > window {
            anyhow::bail!(
                "checkpoint: {} scores for a window of {window}",
                scores.len()
            );
        }
        let mut sorted: Vec<f64> = scores.iter().copied().collect();
        sorted.sort_by(f64::total_cmp);
        Ok(Self {
            target,
            gamma,
            alpha_t,
            scores,
            sorted,
            window,
        })
    }

    pub fn new(target: f64, gamma: f64, window: usize) -> Self {
        Self {
            target,
            gamma,
            alpha_t: target,
            scores: VecDeque::with_capacity(window),
            sorted: Vec::with_capacity(window),
            window: window.max(1),
        }
    }

    /// The multiplier of the model's spread that makes the interval now: the (1 − αₜ) empirical
    /// quantile of recent scaled errors; `None` until there are any. αₜ ≤ 0 gives the largest
    /// score seen (an interval as wide as anything recent), αₜ ≥ 1 gives 0.
    pub fn multiplier(&self) -> Option<f64> {
        let s = &self.sorted;
        if s.is_empty() {
            return None;
        }
        let level = (1.0 - self.alpha_t).clamp(0.0, 1.0);
        let rank = (level * s.len() as f64).ceil() as usize;
        Some(if rank == 0 {
            0.0
        } else {
            s[rank.min(s.len()) - 1]
        })
    }

    /// Folds in one outcome: the absolute error scaled by the model's spread, and whether the
    /// interval that was published covered the actual.
    pub fn update(&mut self, scaled_abs_error: f64, covered: bool) {
        let err = if covered { 0.0 } else { 1.0 };
        self.alpha_t += self.gamma * (self.target - err);
        if !scaled_abs_error.is_finite() {
            return;
        }
        if self.scores.len() == self.window
            && let Some(old) = self.scores.pop_front()
        {
            let at = self.sorted.partition_point(|x| x.total_cmp(&old).is_lt());
            self.sorted.remove(at);
        }
        let new = scaled_abs_error.abs();
        self.scores.push_back(new);
        let at = self.sorted.partition_point(|x| x.total_cmp(&new).is_lt());
        self.sorted.insert(at, new);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tickcast_pipeline::simulator::Rng;

    #[test]
    fn the_level_moves_by_gamma_times_the_miss() {
        let mut a = Aci::new(0.2, 0.01, 10);
        a.update(1.0, false); // miss: α ← 0.2 + 0.01·(0.2 − 1) = 0.192
        assert!((a.alpha_t - 0.192).abs() < 1e-12);
        a.update(1.0, true); // hit: α ← 0.192 + 0.01·0.2 = 0.194
        assert!((a.alpha_t - 0.194).abs() < 1e-12);
    }

    #[test]
    fn the_multiplier_is_the_empirical_quantile() {
        let mut a = Aci::new(0.2, 0.0, 10);
        assert_eq!(a.multiplier(), None);
        for s in [5.0, 1.0, 4.0, 2.0, 3.0, 10.0, 9.0, 8.0, 7.0, 6.0] {
            a.update(s, true);
        }
        // ceil(0.8 · 10) = 8th smallest of 1..=10.
        assert_eq!(a.multiplier(), Some(8.0));
        a.alpha_t = -0.5;
        assert_eq!(a.multiplier(), Some(10.0));
        a.alpha_t = 1.5;
        assert_eq!(a.multiplier(), Some(0.0));
    }

    #[test]
    fn coverage_tracks_the_target_when_the_model_is_overconfident() {
        // The model claims spread 1 but errors are normal with sd 3 and shift regime halfway.
        let mut rng = Rng::new(5);
        for target in [0.2, 0.05] {
            let mut a = Aci::new(target, 0.005, 500);
            let (mut covered, mut n) = (0u32, 0u32);
            for t in 0..20_000 {
                let sd = if t < 10_000 { 3.0 } else { 0.7 };
                let e: f64 = sd * rng.normal();
                if let Some(m) = a.multiplier() {
                    let hit = e.abs() <= m;
                    if t >= 1_000 {
                        n += 1;
                        covered += u32::from(hit);
                    }
                    a.update(e.abs(), hit);
                } else {
                    a.update(e.abs(), false);
                }
            }
            let coverage = f64::from(covered) / f64::from(n);
            assert!(
                (coverage - (1.0 - target)).abs() < 0.01,
                "target {}: coverage {coverage}",
                1.0 - target
            );
        }
    }
}
