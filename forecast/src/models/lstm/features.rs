//! Per-series input features, computed incrementally from closed candles, and the per-bar
//! history the trainer draws its windows from.
//!
//! For bar `t` with close `Cₜ`, high `Hₜ`, low `Lₜ`, volume `Vₜ` and log return
//! `rₜ = ln(Cₜ / Cₜ₋₁)`, with `σₜ₋₁ = √max(vₜ₋₁, σ_floor²)` the fast EWMA volatility *before*
//! the bar, and `clip(x) = min(max(x, −c), c)`:
//!
//! | feature | definition |
//! |---|---|
//! | `x₀` scaled return | `clip(rₜ / σₜ₋₁)` |
//! | `x₁` scaled range  | `clip(ln(Hₜ / Lₜ) / σₜ₋₁)` (0 on a flat or inconsistent candle) |
//! | `x₂` volume change | `clip(ln((Vₜ + δ) / (V̄ₜ₋₁ + δ)))`, `δ = 10⁻³·V̄ₜ₋₁ + 10⁻¹²` |
//! | `x₃` vol regime    | `clip(½·ln(max(vₜ₋₁, σ_floor²) / max(sₜ₋₁, σ_floor²)))` |
//!
//! then the state moves on: `vₜ = λ_f·vₜ₋₁ + (1 − λ_f)·rₜ²` (fast variance), `sₜ = λ_s·sₜ₋₁ +
//! (1 − λ_s)·rₜ²` (slow variance), `V̄ₜ = λ_f·V̄ₜ₋₁ + (1 − λ_f)·Vₜ`; the first return seeds both
//! variances with `r₁²` and the first candle seeds `V̄` with its volume.
//!
//! Every quantity is finite for any finite positive prices, zero volume and flat candles
//! included: divisions are by floored volatilities or `δ > 0`, and all features are clipped.
//!
//! The training targets are scaled cumulative log returns: for bar `t` and horizon `h`,
//! `yₜ,ₕ = clip((rₜ₊₁ + … + rₜ₊ₕ) / (σₜ·√h))` with `σₜ` the volatility *after* bar `t` — known
//! at `t`, so a forecast made at `t` is `Cₜ·exp(σₜ·√h·ŷ)`.

use std::collections::VecDeque;

/// Number of input features per bar.
pub const N_FEATURES: usize = 4;

/// Values kept per bar of history: the features, the log return `rₜ` and the volatility `σₜ`.
pub const BAR_VALUES: usize = N_FEATURES + 2;

/// Constants of the feature maths.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FeatureSettings {
    /// Fast EWMA decay `λ_f` (variance and volume).
    pub lambda_fast: f64,
    /// Slow EWMA decay `λ_s` (variance).
    pub lambda_slow: f64,
    /// Clip `c` of every feature and target.
    pub clip: f64,
    /// Volatility floor `σ_floor` (per bar, in log-return units).
    pub sigma_floor: f64,
}

impl Default for FeatureSettings {
    fn default() -> Self {
        Self {
            lambda_fast: 0.94,
            lambda_slow: 0.995,
            clip: 8.0,
            sigma_floor: 1e-6,
        }
    }
}

impl FeatureSettings {
    fn clip(&self, x: f64) -> f64 {
        if x.is_nan() {
            0.0
        } else {
            x.clamp(-self.clip, self.clip)
        }
    }

    /// `σ` from a variance, floored.
    pub fn sigma(&self, var: f64) -> f64 {
        var.max(self.sigma_floor * self.sigma_floor).sqrt()
    }
}

/// One closed candle's numbers, already parsed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bar {
    pub high: f64,
    pub low: f64,
    pub close: f64,
    pub volume: f64,
}

/// What one bar contributes: inputs for the network and the values the trainer needs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Step {
    /// `[x₀, x₁, x₂, x₃]`.
    pub x: [f32; N_FEATURES],
    /// Log return `rₜ`.
    pub r: f64,
    /// Volatility after the bar, `σₜ`.
    pub sigma: f64,
}

impl Step {
    /// The history record of this bar.
    pub fn record(&self) -> [f32; BAR_VALUES] {
        let [a, b, c, d] = self.x;
        [a, b, c, d, self.r as f32, self.sigma as f32]
    }
}

/// The running feature state of one series.
#[derive(Debug, Clone, PartialEq)]
pub struct FeatureState {
    pub last_close: f64,
    /// Fast variance `v`.
    pub var_fast: f64,
    /// Slow variance `s`.
    pub var_slow: f64,
    /// Volume EWMA `V̄`.
    pub volume: f64,
    /// Returns seen so far.
    pub returns: u32,
}

impl FeatureState {
    /// Starts a series at its first candle (no return yet).
    pub fn start(bar: &Bar) -> Self {
        Self {
            last_close: bar.close,
            var_fast: 0.0,
            var_slow: 0.0,
            volume: finite_or_zero(bar.volume).max(0.0),
            returns: 0,
        }
    }

    /// Folds in the next bar (see the module docs) and returns its features.
    /// `bar.close` and `self.last_close` must be finite and positive.
    pub fn step(&mut self, bar: &Bar, fs: &FeatureSettings) -> Step {
        let r = (bar.close / self.last_close).ln();
        let sigma_prev = fs.sigma(self.var_fast);
        let range = if bar.high > 0.0 && bar.low > 0.0 && bar.high >= bar.low {
            (bar.high / bar.low).ln()
        } else {
            0.0
        };
        let v = finite_or_zero(bar.volume).max(0.0);
        let delta = 1e-3 * self.volume + 1e-12;
        let floor2 = fs.sigma_floor * fs.sigma_floor;
        let regime = if self.returns == 0 {
            0.0
        } else {
            0.5 * (self.var_fast.max(floor2) / self.var_slow.max(floor2)).ln()
        };
        let x = [
            fs.clip(r / sigma_prev) as f32,
            fs.clip(range / sigma_prev).max(0.0) as f32,
            fs.clip(((v + delta) / (self.volume + delta)).ln()) as f32,
            fs.clip(regime) as f32,
        ];
        if self.returns == 0 {
            self.var_fast = r * r;
            self.var_slow = r * r;
        } else {
            self.var_fast = fs.lambda_fast * self.var_fast + (1.0 - fs.lambda_fast) * r * r;
            self.var_slow = fs.lambda_slow * self.var_slow + (1.0 - fs.lambda_slow) * r * r;
        }
        self.volume = fs.lambda_fast * self.volume + (1.0 - fs.lambda_fast) * v;
        self.returns = self.returns.saturating_add(1);
        self.last_close = bar.close;
        Step {
            x,
            r,
            sigma: fs.sigma(self.var_fast),
        }
    }
}

fn finite_or_zero(x: f64) -> f64 {
    if x.is_finite() { x } else { 0.0 }
}

/// The last `capacity` bars of one series, oldest first.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct History {
    pub bars: VecDeque<[f32; BAR_VALUES]>,
}

impl History {
    pub fn push(&mut self, record: [f32; BAR_VALUES], capacity: usize) {
        if capacity == 0 {
            return;
        }
        while self.bars.len() >= capacity {
            self.bars.pop_front();
        }
        self.bars.push_back(record);
    }

    pub fn len(&self) -> usize {
        self.bars.len()
    }

    pub fn is_empty(&self) -> bool {
        self.bars.is_empty()
    }
}

/// Scaled cumulative-return target `yₜ,ₕ` for the bar at index `t` of `bars` (see the module
/// docs); `None` when `t + h` is past the end.
pub fn target(
    bars: &VecDeque<[f32; BAR_VALUES]>,
    t: usize,
    h: usize,
    fs: &FeatureSettings,
) -> Option<f32> {
    if t + h >= bars.len() || h == 0 {
        return None;
    }
    let sum: f64 = (1..=h).map(|j| f64::from(bars[t + j][N_FEATURES])).sum();
    let sigma = f64::from(bars[t][N_FEATURES + 1]).max(fs.sigma_floor);
    Some(fs.clip(sum / (sigma * (h as f64).sqrt())) as f32)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bar(high: f64, low: f64, close: f64, volume: f64) -> Bar {
        Bar {
            high,
            low,
            close,
            volume,
        }
    }

    #[test]
    fn features_follow_the_stated_recursions() {
        let fs = FeatureSettings::default();
        let mut s = FeatureState::start(&bar(100.0, 100.0, 100.0, 2.0));
        // First return: σ₋ is the floor, so x₀ clips; the variances are seeded with r².
        let a = s.step(&bar(102.0, 99.0, 101.0, 4.0), &fs);
        let r1 = (101f64 / 100.0).ln();
        assert_eq!(a.x[0], 8.0);
        assert_eq!(a.x[1], 8.0);
        let d: f64 = 1e-3 * 2.0 + 1e-12;
        assert!((f64::from(a.x[2]) - ((4.0 + d) / (2.0 + d)).ln()).abs() < 1e-6);
        assert_eq!(a.x[3], 0.0);
        assert_eq!((s.var_fast, s.var_slow), (r1 * r1, r1 * r1));
        assert!((a.sigma - r1.abs()).abs() < 1e-15);
        assert!((s.volume - (0.94 * 2.0 + 0.06 * 4.0)).abs() < 1e-12);

        let b = s.step(&bar(101.5, 100.0, 100.5, 0.0), &fs);
        let r2 = (100.5f64 / 101.0).ln();
        assert!((f64::from(b.x[0]) - r2 / r1.abs()).abs() < 1e-6);
        assert!((f64::from(b.x[1]) - (101.5f64 / 100.0).ln() / r1.abs()).abs() < 1e-6);
        assert_eq!(b.x[3], 0.0, "equal variances: regime 0");
        let vf = 0.94 * r1 * r1 + 0.06 * r2 * r2;
        let vs = 0.995 * r1 * r1 + 0.005 * r2 * r2;
        assert!((s.var_fast - vf).abs() < 1e-18 && (s.var_slow - vs).abs() < 1e-18);
        let c = s.step(&bar(100.5, 100.5, 100.5, 0.0), &fs);
        assert!((f64::from(c.x[3]) - 0.5 * (vf / vs).ln()).abs() < 1e-6);
        assert_eq!((c.x[0], c.x[1]), (0.0, 0.0), "flat candle");
    }

    #[test]
    fn flat_zero_volume_series_stay_finite() {
        let fs = FeatureSettings::default();
        let flat = bar(50.0, 50.0, 50.0, 0.0);
        let mut s = FeatureState::start(&flat);
        for _ in 0..100 {
            let st = s.step(&flat, &fs);
            assert!(st.x.iter().all(|v| v.is_finite()) && st.sigma.is_finite());
            assert_eq!(st.x, [0.0; 4]);
            assert!((st.sigma - fs.sigma_floor).abs() < 1e-18);
        }
        // A jump after a long flat spell clips instead of exploding.
        let st = s.step(&bar(60.0, 40.0, 55.0, f64::NAN), &fs);
        assert_eq!(st.x[0], 8.0);
        assert!(st.x.iter().all(|v| v.is_finite()));
    }

    #[test]
    fn targets_are_scaled_cumulative_returns() {
        let fs = FeatureSettings::default();
        let mut h = History::default();
        for (r, sigma) in [(0.0, 0.01), (0.01, 0.01), (-0.02, 0.02), (0.005, 0.02)] {
            h.push([0.0, 0.0, 0.0, 0.0, r, sigma], 3);
        }
        assert_eq!(h.len(), 3, "capacity keeps the newest bars");
        // bars: (0.01, σ .01), (−0.02, σ .02), (0.005, σ .02)
        let y = target(&h.bars, 0, 2, &fs).expect("in range");
        assert!((f64::from(y) - (-0.015 / (0.01 * 2f64.sqrt()))).abs() < 1e-5);
        let y1 = target(&h.bars, 1, 1, &fs).expect("in range");
        assert!((f64::from(y1) - 0.25).abs() < 1e-6);
        assert_eq!(target(&h.bars, 1, 2, &fs), None);
    }
}
