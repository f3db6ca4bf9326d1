//! The `trend` model's fit on one window: Prophet's linear-growth model and its maximum a
//! posteriori estimate, solved exactly by an active-set lasso method and a scalar σ step.
//!
//! On the window's `n` values `y_0 … y_{n−1}` (log closes, one per bar), scaled as Prophet's
//! `scaling='minmax'` does, `ỹ_i = (y_i − min y) / (max y − min y)`, and on the scaled time
//! axis `t_i = i / (n − 1)`:
//!
//! ```text
//! ỹ_i = m + k·t_i + Σ_j δ_j·(t_i − s_j)₊ + Σ_o [a_o·sin(2π·o·i/P) + b_o·cos(2π·o·i/P)] + ε_i
//! ε_i ~ N(0, σ²),  δ_j ~ Laplace(0, τ),  k, m ~ N(0, 5²),  a_o, b_o ~ N(0, s²),  σ ~ N⁺(0, ½²)
//! ```
//!
//! with `S` changepoints `s_j` at the bars `round(j·(⌊0.8·n⌋ − 1)/S)`, `j = 1 … S` (Prophet's
//! placement over the first 80% of the window), seasonal period `P` bars, `τ` the changepoint
//! prior scale and `s` the seasonality prior scale. A Fourier order `o` is kept only if its
//! cycle `P/o` fits in the window (`P/o ≤ n`; a longer cycle cannot be told from the trend) and
//! lies below the Nyquist limit (`2o < P`). The seasonal terms are written in window-relative
//! time; a shift of the window rotates `(a_o, b_o)` and the ridge prior is rotation invariant,
//! so the fitted function is Prophet's, while the Gram matrix depends on `n` alone and is built
//! once per window length ([`Design`]).
//!
//! The MAP estimate minimises the negative log posterior
//!
//! ```text
//! F(θ, σ) = n·ln σ + RSS(θ)/(2σ²) + Σ|δ_j|/τ + (k² + m²)/50 + Σ(a² + b²)/(2s²) + 2σ²
//! ```
//!
//! by blocks ([`super::lasso`] for the θ step). For fixed σ it is a lasso with a ridge part,
//! `½·RSS + λ·Σ|δ_j| + ½·Σ μ_i·θ_i²` with `λ = σ²/τ`, `μ = σ²/25` on `k, m` and `σ²/s²` on the
//! Fourier terms, on the Gram form (`G = XᵀX`, `c = Xᵀỹ`): feature-sign search solves it
//! exactly — on a support `A` with the signs `z` of its `δ` fixed, the minimiser solves
//! `(G_AA + diag μ_A)·θ_A = c_A − λ·z_A` (Cholesky), and it is optimal once the signs hold and
//! every coefficient outside `A` meets `|c_j − (Gθ)_j| ≤ λ` — starting from the previous
//! support, else from the one a few sweeps of coordinate descent
//! (`θ_i ← soft(c_i − Σ_{l≠i} G_il·θ_l, λ_i) / (G_ii + μ_i)`) find. For fixed θ,
//! `∂F/∂σ = 0` gives `4σ⁴ + nσ² − RSS = 0`, so
//! `σ² = (√(n² + 16·RSS) − n)/8 = 2·RSS/(n + √(n² + 16·RSS))`. The two steps alternate, with
//! Steffensen's extrapolation of σ² every second step, until a plain step leaves σ² unchanged
//! (relative 1e-12): a stationary point of `F`, as Prophet's L-BFGS finds (the benchmark in
//! `scripts/bench-trend.sh` compares the two optima on Prophet's own objective).

use std::f64::consts::TAU;

use super::design::{Design, FitSettings, Layout, dot};
use super::lasso::Lasso;

/// A fitted window: coefficients on the scaled axes and the scaling back to log prices.
#[derive(Debug, Clone, PartialEq)]
pub struct TrendFit {
    pub layout: Layout,
    /// `[m, k, δ_1 … δ_S, a_1, b_1, …]`.
    pub coef: Vec<f64>,
    pub y_min: f64,
    pub y_scale: f64,
    /// MAP residual sd on the scaled axis.
    pub sigma: f64,
}

impl TrendFit {
    /// Trend plus seasonality at bar `i`, in log price.
    pub fn value(&self, i: f64) -> f64 {
        let mut row = vec![0.0; self.coef.len()];
        self.layout.row(i, &mut row);
        self.y_min + self.y_scale * dot(&row, &self.coef)
    }

    /// The trend alone at bar `i`, in log price.
    pub fn trend(&self, i: f64) -> f64 {
        let mut row = vec![0.0; self.coef.len()];
        self.layout.row(i, &mut row);
        let at = self.layout.fourier_at();
        self.y_min + self.y_scale * dot(&row[..at], &self.coef[..at])
    }

    /// The forecast for the `len` bars after the window, in one pass: for `s = 1 … len`,
    /// `(value(n − 1 + s), variance(s))` up to rounding. The hinges are summed as in
    /// [`TrendFit::value`]; each Fourier order's `(sin, cos)` starts at the first step and is
    /// then rotated by one bar's angle per step (no `sin`/`cos` per step; the drift after a
    /// few hundred steps is a few ulps).
    pub fn path(&self, len: usize) -> Vec<(f64, f64)> {
        let layout = &self.layout;
        let last = (layout.n - 1) as f64;
        let at = layout.fourier_at();
        let (hinges, fourier) = self.coef.split_at(at);
        let period = f64::from(layout.period);
        let first = layout.n as f64;
        let mut waves: Vec<[f64; 4]> = layout
            .orders
            .iter()
            .map(|&o| {
                let (sin, cos) = (TAU * f64::from(o) * first / period).sin_cos();
                let (ds, dc) = (TAU * f64::from(o) / period).sin_cos();
                [sin, cos, ds, dc]
            })
            .collect();
        (1..=len)
            .map(|s| {
                let i = last + s as f64;
                let t = i / last;
                let mut v = hinges[0] + t * hinges[1];
                for (&cp, &d) in layout.changepoints.iter().zip(&hinges[2..]) {
                    v += (t - cp).max(0.0) * d;
                }
                for (w, ab) in waves.iter_mut().zip(fourier.chunks_exact(2)) {
                    let [sin, cos, ds, dc] = *w;
                    v += sin * ab[0] + cos * ab[1];
                    *w = [sin * dc + cos * ds, cos * dc - sin * ds, ds, dc];
                }
                (self.y_min + self.y_scale * v, self.variance(s as f64))
            })
            .collect()
    }

    /// Slope changes `δ`.
    pub fn deltas(&self) -> &[f64] {
        &self.coef[2..self.layout.fourier_at()]
    }

    /// Trend slope in log price per bar at bar `i`.
    pub fn slope(&self, i: f64) -> f64 {
        let t = i / (self.layout.n - 1) as f64;
        let k: f64 = self.coef[1]
            + self
                .layout
                .changepoints
                .iter()
                .zip(self.deltas())
                .filter(|(s, _)| t > **s)
                .map(|(_, d)| d)
                .sum::<f64>();
        self.y_scale * k / (self.layout.n - 1) as f64
    }

    /// Forecast variance in log price `steps` bars past the window's last bar: observation
    /// noise plus Prophet's trend uncertainty. Prophet simulates future slope changes arriving
    /// at `S` per unit of scaled time with Laplace(0, λ̄) sizes, `λ̄ = mean |δ_j|`; a change at
    /// `v` moves the trend at `u` by `δ·(u − v)`, so the trend's variance at `u = steps/(n − 1)`
    /// is `S·E[δ²]·∫₀ᵘ (u − v)² dv = S·2λ̄²·u³/3`, and
    /// `Var = y_scale²·(σ² + 2·S·λ̄²·u³/3)`.
    pub fn variance(&self, steps: f64) -> f64 {
        let d = self.deltas();
        let s = d.len() as f64;
        let mean_abs = if d.is_empty() {
            0.0
        } else {
            d.iter().map(|x| x.abs()).sum::<f64>() / s
        };
        let u = steps.max(0.0) / (self.layout.n - 1) as f64;
        let trend = 2.0 * s * mean_abs * mean_abs * u.powi(3) / 3.0;
        self.y_scale * self.y_scale * (self.sigma * self.sigma + trend)
    }
}

/// Alternations of the θ and σ steps at most.
const MAX_OUTER: usize = 50;
/// The MAP fit of the window `y` (length `design.layout.n`). `warm` (coefficients of a
/// previous fit with the same layout) starts the descent; the optimum does not depend on it
/// beyond the solver's tolerance. `None` on a length mismatch or non-finite data.
pub fn fit(design: &Design, y: &[f64], s: &FitSettings, warm: Option<&[f64]>) -> Option<TrendFit> {
    let layout = &design.layout;
    let (n, p) = (layout.n, layout.p());
    if y.len() != n || y.iter().any(|v| !v.is_finite()) {
        return None;
    }
    let y_min = y.iter().copied().fold(f64::INFINITY, f64::min);
    let y_max = y.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let y_scale = if y_max > y_min { y_max - y_min } else { 1.0 };
    let ys: Vec<f64> = y.iter().map(|v| (v - y_min) / y_scale).collect();
    let c: Vec<f64> = (0..p).map(|j| dot(design.column(j), &ys)).collect();

    let mut theta = match warm {
        Some(w) if w.len() == p && w.iter().all(|v| v.is_finite()) => w.to_vec(),
        _ => {
            // Prophet's start: the line through the first and last points.
            let mut t = vec![0.0; p];
            t[0] = ys[0];
            t[1] = ys[n - 1] - ys[0];
            t
        }
    };
    let mut problem = Lasso::new(design, &c, s);
    let mut sigma2 = (design.rss(&ys, &theta) / n as f64).max(1e-300);
    // The σ² before the last plain step, for Steffensen's extrapolation of the fixed point.
    let mut before: Option<f64> = None;
    for _ in 0..MAX_OUTER {
        problem.set_sigma2(sigma2);
        problem.solve(&mut theta);
        let rss = design.rss(&ys, &theta);
        let nf = n as f64;
        // (√(n² + 16·RSS) − n)/8 without the cancellation.
        let next = (2.0 * rss / (nf + (nf * nf + 16.0 * rss).sqrt())).max(1e-300);
        if (next - sigma2).abs() <= 1e-12 * sigma2 {
            sigma2 = next;
            break;
        }
        // Two plain steps x0 → x1 → x2, then x0 − (x1 − x0)²/(x2 − 2·x1 + x0), kept only
        // when it lands near them; the loop ends on a plain step, so the answer is a fixed
        // point either way.
        sigma2 = match before.take() {
            Some(x0) => {
                let (x1, x2) = (sigma2, next);
                let jump = x0 - (x1 - x0).powi(2) / (x2 - 2.0 * x1 + x0);
                let (lo, hi) = (x1.min(x2), x1.max(x2));
                if jump.is_finite() && jump > lo / 4.0 && jump < hi * 4.0 {
                    jump
                } else {
                    x2
                }
            }
            None => {
                before = Some(sigma2);
                next
            }
        };
    }
    if theta.iter().any(|v| !v.is_finite()) {
        return None;
    }
    Some(TrendFit {
        layout: layout.clone(),
        coef: theta,
        y_min,
        y_scale,
        sigma: sigma2.sqrt(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tickcast_core::rng::Rng;

    fn solve(y: &[f64], s: &FitSettings) -> TrendFit {
        let layout = Layout::new(y.len(), s).expect("layout");
        fit(&Design::new(layout), y, s, None).expect("fit")
    }

    fn no_season() -> FitSettings {
        FitSettings {
            fourier_order: 0,
            ..FitSettings::default()
        }
    }

    /// The blocked residual sum equals one column per pass, bit for bit, with zero
    /// coefficients skipped and column counts that leave 0 to 3 columns after the blocks.
    #[test]
    fn rss_equals_one_column_per_pass() {
        let mut rng = Rng::new(17);
        let design = Design::new(Layout::new(300, &FitSettings::default()).expect("layout"));
        let p = design.layout.p();
        let ys: Vec<f64> = (0..300).map(|_| rng.normal()).collect();
        for zeros in 0..6 {
            let theta: Vec<f64> = (0..p)
                .map(|j| if j % 6 < zeros { 0.0 } else { rng.normal() })
                .collect();
            let mut r = ys.clone();
            for (j, t) in theta.iter().enumerate().filter(|(_, t)| **t != 0.0) {
                for (ri, x) in r.iter_mut().zip(design.column(j)) {
                    *ri -= t * x;
                }
            }
            assert_eq!(design.rss(&ys, &theta).to_bits(), dot(&r, &r).to_bits());
        }
    }

    #[test]
    fn places_changepoints_as_prophet_does() {
        let l = Layout::new(1_440, &FitSettings::default()).expect("layout");
        // ⌊0.8·1440⌋ = 1152 rows; linspace(0, 1151, 26)[1..] rounded.
        let bars: Vec<f64> = l.changepoints.iter().map(|t| t * 1_439.0).collect();
        assert_eq!(bars.len(), 25);
        assert!((bars[0] - 46.0).abs() < 1e-9, "{bars:?}");
        assert!((bars[5] - 276.0).abs() < 1e-9, "{bars:?}");
        assert!((bars[24] - 1_151.0).abs() < 1e-9, "{bars:?}");
        assert_eq!(l.orders, vec![1, 2, 3, 4]);
        // A half-day window cannot identify the daily cycle (order 1) but keeps the others.
        let half = Layout::new(720, &FitSettings::default()).expect("layout");
        assert_eq!(half.orders, vec![2, 3, 4]);
        assert!(Layout::new(2, &FitSettings::default()).is_none());
    }

    /// A piecewise-linear log price with slope changes at bars 276 and 875 (changepoints 6 and
    /// 19 of Prophet's grid on 1,440 bars) and N(0, 0.005%) noise.
    fn two_changes() -> (Vec<f64>, [f64; 3]) {
        let mut rng = Rng::new(3);
        let slopes = [2e-5, -3e-5, 4e-5];
        let mut level = 4.6;
        let y = (0..1_440)
            .map(|i| {
                let seg = usize::from(i >= 276) + usize::from(i >= 875);
                if i > 0 {
                    level += slopes[seg];
                }
                level + 5e-5 * rng.normal()
            })
            .collect();
        (y, slopes)
    }

    #[test]
    fn recovers_known_changepoints() {
        let (y, slopes) = two_changes();
        for tau in [0.05, 0.005] {
            let s = FitSettings {
                changepoint_prior_scale: tau,
                ..no_season()
            };
            let f = solve(&y, &s);
            // Slopes mid-segment within 0.5% of the truth.
            for (bar, want) in [(138.0, slopes[0]), (575.0, slopes[1]), (1_150.0, slopes[2])] {
                let got = f.slope(bar);
                assert!(
                    (got - want).abs() < 0.005 * want.abs(),
                    "τ {tau}: {got} vs {want}"
                );
            }
            // Slope changes in log price per bar; the largest sit exactly on the true bars and,
            // with their grid neighbours, add up to the true change within 3%.
            let per_bar: Vec<f64> = f.deltas().iter().map(|d| d * f.y_scale / 1_439.0).collect();
            for (j, change) in [(5, slopes[1] - slopes[0]), (18, slopes[2] - slopes[1])] {
                let near: f64 = per_bar[j - 1..=j + 1].iter().sum();
                assert!(
                    (near - change).abs() < 0.03 * change.abs(),
                    "τ {tau}: {near} vs {change}"
                );
                assert!(
                    per_bar[j].abs() > 0.9 * change.abs(),
                    "τ {tau}: {per_bar:?}"
                );
            }
            // Elsewhere: below 2% of the smaller change at Prophet's τ, exactly zero at τ/10.
            for (j, d) in per_bar.iter().enumerate() {
                if (4..=6).contains(&j) || (17..=19).contains(&j) {
                    continue;
                }
                if tau < 0.01 {
                    assert_eq!(*d, 0.0, "τ {tau}: changepoint {j}");
                } else {
                    assert!(d.abs() < 0.02 * 5e-5, "τ {tau}: changepoint {j}: {d}");
                }
            }
            // The noise sd is recovered.
            let sd = f.sigma * f.y_scale;
            assert!((sd - 5e-5).abs() < 3e-6, "{sd}");
        }
    }

    #[test]
    fn recovers_a_pure_sinusoid() {
        let mut rng = Rng::new(9);
        let (amp, phase, order) = (0.01, 0.7, 2.0);
        let truth = |i: usize| 3.0 + amp * (TAU * order * i as f64 / 1_440.0 + phase).sin();
        let y: Vec<f64> = (0..1_440).map(|i| truth(i) + 1e-4 * rng.normal()).collect();
        let f = solve(&y, &FitSettings::default());
        // Coefficients (a_o, b_o) of orders 1…4 after the hinges: a·sin + b·cos = A·sin(w + φ).
        let at = f.layout.fourier_at();
        let pairs: Vec<(f64, f64)> = f.coef[at..]
            .chunks_exact(2)
            .map(|p| (p[0] * f.y_scale, p[1] * f.y_scale))
            .collect();
        let (a, b) = pairs[1];
        let got_amp = a.hypot(b);
        assert!((got_amp - amp).abs() < 0.005 * amp, "{got_amp}");
        assert!((b.atan2(a) - phase).abs() < 0.01, "{}", b.atan2(a));
        for (o, (a, b)) in pairs.iter().enumerate().filter(|(o, _)| *o != 1) {
            assert!(a.hypot(*b) < 0.02 * amp, "order {}: {a} {b}", o + 1);
        }
        // The fitted curve follows the truth to within a tenth of the noise sd.
        let worst = (0..1_440)
            .map(|i| (f.value(i as f64) - truth(i)).abs())
            .fold(0.0, f64::max);
        assert!(worst < 1e-4, "{worst}");
    }

    #[test]
    fn the_forecast_path_equals_value_and_variance_step_by_step() {
        // Two slope changes and a daily cycle of orders 1 and 3, so every column counts.
        let (y0, _) = two_changes();
        let y: Vec<f64> = y0
            .iter()
            .enumerate()
            .map(|(i, v)| {
                let w = TAU * i as f64 / 1_440.0;
                v + 0.004 * (w + 0.3).sin() + 0.002 * (3.0 * w).cos()
            })
            .collect();
        let f = solve(&y, &FitSettings::default());
        assert!(
            f.coef[f.layout.fourier_at()..]
                .iter()
                .any(|c| c.abs() > 1e-3)
        );
        let last = (f.layout.n - 1) as f64;
        let path = f.path(600);
        assert_eq!(path.len(), 600);
        for (s, &(mean, var)) in (1..).zip(&path) {
            let want = f.value(last + f64::from(s));
            assert!((mean - want).abs() < 1e-12, "step {s}: {mean} vs {want}");
            assert_eq!(var, f.variance(f64::from(s)), "step {s}");
        }
        assert!(f.path(0).is_empty());
    }

    #[test]
    fn l1_prior_zeroes_spurious_changepoints_on_a_straight_line() {
        let mut rng = Rng::new(5);
        let y: Vec<f64> = (0..1_440)
            .map(|i| 2.0 + 1e-5 * i as f64 + 1e-4 * rng.normal())
            .collect();
        // Least-squares slope of the line.
        let n = y.len() as f64;
        let mean_i = (n - 1.0) / 2.0;
        let mean_y = y.iter().sum::<f64>() / n;
        let (sxy, sxx) = y.iter().enumerate().fold((0.0, 0.0), |(a, b), (i, v)| {
            let d = i as f64 - mean_i;
            (a + d * (v - mean_y), b + d * d)
        });
        let ols = sxy / sxx;
        let mut last = (usize::MAX, f64::INFINITY);
        for tau in [0.5, 0.05, 0.005, 0.0005] {
            let s = FitSettings {
                changepoint_prior_scale: tau,
                ..no_season()
            };
            let f = solve(&y, &s);
            let nonzero = f.deltas().iter().filter(|d| **d != 0.0).count();
            let l1: f64 = f.deltas().iter().map(|d| d.abs()).sum();
            // A tighter prior keeps fewer and smaller slope changes …
            assert!(nonzero <= last.0 && l1 <= last.1, "τ {tau}: {nonzero} {l1}");
            last = (nonzero, l1);
            if tau <= 0.0005 {
                // … and at last none: the fit is the straight line.
                assert_eq!(nonzero, 0, "τ {tau}");
                assert!(
                    (f.slope(700.0) - ols).abs() < 1e-3 * ols,
                    "{}",
                    f.slope(700.0)
                );
            }
        }
        assert!(last.0 == 0 && last.1 == 0.0);
    }

    /// The optimality conditions of the fixed-σ problem at the returned coefficients.
    fn kkt_gap(design: &Design, y: &[f64], s: &FitSettings, f: &TrendFit) -> f64 {
        let ys: Vec<f64> = y.iter().map(|v| (v - f.y_min) / f.y_scale).collect();
        let p = design.layout.p();
        let c: Vec<f64> = (0..p).map(|j| dot(design.column(j), &ys)).collect();
        let mut l = Lasso::new(design, &c, s);
        l.set_sigma2(f.sigma * f.sigma);
        let q = l.g_theta(&f.coef);
        (0..p)
            .map(|i| {
                let grad = c[i] - q[i] - l.mu[i] * f.coef[i];
                if !l.l1[i] {
                    grad.abs()
                } else if f.coef[i] == 0.0 {
                    (grad.abs() - l.lambda).max(0.0)
                } else {
                    (grad - l.lambda * f.coef[i].signum()).abs()
                }
            })
            .fold(0.0, f64::max)
    }

    #[test]
    fn solution_is_optimal_and_independent_of_the_warm_start() {
        let (y, _) = two_changes();
        let s = FitSettings::default();
        let design = Design::new(Layout::new(y.len(), &s).expect("layout"));
        let cold = fit(&design, &y, &s, None).expect("fit");
        let gap = kkt_gap(&design, &y, &s, &cold);
        assert!(gap < 1e-9, "cold {gap}");
        // σ is the stationary point 4σ⁴ + nσ² = RSS.
        let rss: f64 = y
            .iter()
            .enumerate()
            .map(|(i, v)| ((v - cold.value(i as f64)) / cold.y_scale).powi(2))
            .sum();
        let s2 = cold.sigma * cold.sigma;
        let lhs = 4.0 * s2 * s2 + 1_440.0 * s2;
        assert!((lhs - rss).abs() < 1e-9 * rss, "σ: {lhs} vs {rss}");
        let odd: Vec<f64> = (0..cold.coef.len()).map(|i| (i as f64).sin()).collect();
        let warm = fit(&design, &y, &s, Some(&odd)).expect("fit");
        for (a, b) in cold.coef.iter().zip(&warm.coef) {
            assert!((a - b).abs() < 1e-8, "{a} vs {b}");
        }
        assert!(fit(&design, &y[1..], &s, None).is_none(), "length mismatch");
        let mut bad = y.clone();
        bad[3] = f64::NAN;
        assert!(fit(&design, &bad, &s, None).is_none(), "NaN");
    }

    #[test]
    fn trend_variance_grows_as_the_cube_of_the_horizon() {
        let (y, _) = two_changes();
        let f = solve(&y, &FitSettings::default());
        let noise = f.variance(0.0);
        assert!((noise - (f.sigma * f.y_scale).powi(2)).abs() < 1e-18);
        let grow = |h: f64| f.variance(h) - noise;
        assert!(grow(10.0) > 0.0);
        assert!((grow(20.0) / grow(10.0) - 8.0).abs() < 1e-9);
    }
}
