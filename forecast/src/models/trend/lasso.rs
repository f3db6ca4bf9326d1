//! The fixed-σ step of the `trend` fit ([`super::fit`]): a lasso with a ridge part on the Gram
//! form, solved exactly by feature-sign search (from the previous support, else from the one a
//! few coordinate-descent sweeps find), with coordinate descent to tolerance as the fallback.

use super::design::{Design, FitSettings, dot};

/// Coordinate-descent sweeps that find a first support.
const WARM_SWEEPS: usize = 30;
/// Sweeps of the descent fallback when the active-set search stalls.
const MAX_SWEEPS: usize = 20_000;
/// Descent stops when no coordinate moves the fit by more than this (L2, scaled units).
const SWEEP_TOL: f64 = 1e-13;

/// The fixed-σ problem `½·RSS + λ·Σ|δ| + ½·Σ μ_i θ_i²` on the Gram form.
pub(super) struct Lasso<'a> {
    gram: &'a [f64],
    c: &'a [f64],
    p: usize,
    /// Which coefficients carry the L1 penalty (the δ).
    pub(super) l1: Vec<bool>,
    /// Ridge prior precision per unit σ²: 1/25 on k, m; 1/s² on the Fourier terms.
    ridge_unit: Vec<f64>,
    tau: f64,
    pub(super) lambda: f64,
    pub(super) mu: Vec<f64>,
}

impl<'a> Lasso<'a> {
    pub(super) fn new(design: &'a Design, c: &'a [f64], s: &FitSettings) -> Self {
        let p = design.layout.p();
        let at = design.layout.fourier_at();
        let scale2 = s.seasonality_prior_scale * s.seasonality_prior_scale;
        let ridge_unit = (0..p)
            .map(|i| match i {
                0 | 1 => 1.0 / 25.0,
                i if i >= at => 1.0 / scale2,
                _ => 0.0,
            })
            .collect();
        Self {
            gram: design.gram(),
            c,
            p,
            l1: (0..p).map(|i| (2..at).contains(&i)).collect(),
            ridge_unit,
            tau: s.changepoint_prior_scale,
            lambda: 0.0,
            mu: vec![0.0; p],
        }
    }

    pub(super) fn set_sigma2(&mut self, sigma2: f64) {
        self.lambda = sigma2 / self.tau;
        for (m, r) in self.mu.iter_mut().zip(&self.ridge_unit) {
            *m = sigma2 * r;
        }
    }

    fn g(&self, a: usize, b: usize) -> f64 {
        self.gram[a * self.p + b]
    }

    /// `Gθ`.
    pub(super) fn g_theta(&self, theta: &[f64]) -> Vec<f64> {
        (0..self.p)
            .map(|i| dot(&self.gram[i * self.p..(i + 1) * self.p], theta))
            .collect()
    }

    fn penalty(&self, i: usize) -> f64 {
        if self.l1[i] { self.lambda } else { 0.0 }
    }

    /// The objective `½θᵀ(G + diag μ)θ − cᵀθ + λ·Σ|δ|` (RSS up to a constant, halved).
    fn objective(&self, theta: &[f64]) -> f64 {
        let gt = self.g_theta(theta);
        (0..self.p)
            .map(|i| {
                let t = theta[i];
                0.5 * t * (gt[i] + self.mu[i] * t) - self.c[i] * t + self.penalty(i) * t.abs()
            })
            .sum()
    }

    /// Minimises over θ (σ fixed), in place: the active-set search from θ's support (warm
    /// after the first σ step), else from the support a few descent sweeps find; descent to
    /// tolerance if that search stalls too.
    pub(super) fn solve(&self, theta: &mut [f64]) {
        if self.feature_sign(theta) || self.descend(theta, WARM_SWEEPS) || self.feature_sign(theta)
        {
            return;
        }
        self.descend(theta, MAX_SWEEPS);
    }

    /// Cyclic coordinate descent, `θ_i ← soft(c_i − Σ_{l≠i} G_il θ_l, λ_i)/(G_ii + μ_i)`; true
    /// when converged within `sweeps`.
    fn descend(&self, theta: &mut [f64], sweeps: usize) -> bool {
        let mut q = self.g_theta(theta);
        for _ in 0..sweeps {
            let mut moved = 0.0f64;
            for i in 0..self.p {
                let gii = self.g(i, i);
                let denom = gii + self.mu[i];
                if denom <= 0.0 {
                    continue;
                }
                let rho = self.c[i] - q[i] + gii * theta[i];
                let next = soft(rho, self.penalty(i)) / denom;
                let step = next - theta[i];
                if step != 0.0 {
                    for (qj, gji) in q.iter_mut().zip(&self.gram[i * self.p..]) {
                        *qj += step * gji;
                    }
                    theta[i] = next;
                    moved = moved.max(step.abs() * gii.sqrt());
                }
            }
            if moved <= SWEEP_TOL {
                return true;
            }
        }
        false
    }

    /// Feature-sign search (Lee, Battle, Raina & Ng, 2007): with the signs `z` of the active
    /// slope changes fixed, the objective is a quadratic whose minimum solves
    /// `(G_AA + diag μ_A)·θ_A = c_A − λ·z_A` (Cholesky); step towards it, stopping at the
    /// best point where an active coefficient crosses zero; once the signs hold, add the
    /// inactive coefficient that most violates `|c_j − (Gθ)_j| ≤ λ`, or stop: optimal. Each step
    /// lowers the objective; false (θ left at its best point) if it stalls.
    fn feature_sign(&self, theta: &mut [f64]) -> bool {
        let mut sign: Vec<f64> = theta
            .iter()
            .map(|t| if *t == 0.0 { 0.0 } else { t.signum() })
            .collect();
        let mut current = self.objective(theta);
        for _ in 0..4 * self.p + 20 {
            let active: Vec<usize> = (0..self.p)
                .filter(|&i| !self.l1[i] || sign[i] != 0.0)
                .collect();
            let Some(target) = self.solve_on(&active, &sign) else {
                return false;
            };
            // Line search: the target, or a point where an active coefficient reaches zero.
            let mut best = target.clone();
            let mut best_f = self.objective(&target);
            for &i in &active {
                let (from, to) = (theta[i], target[i]);
                if self.l1[i] && from != 0.0 && to.signum() != from.signum() {
                    let t = from / (from - to);
                    let mut point: Vec<f64> = theta
                        .iter()
                        .zip(&target)
                        .map(|(a, b)| a + t * (b - a))
                        .collect();
                    point[i] = 0.0;
                    let f = self.objective(&point);
                    if f < best_f {
                        (best, best_f) = (point, f);
                    }
                }
            }
            let consistent = active
                .iter()
                .all(|&i| !self.l1[i] || (best[i] != 0.0 && best[i].signum() == sign[i]));
            // A sign-consistent target is the exact minimiser on its signs: take it even if
            // rounding puts it a hair above the current point; otherwise insist on progress.
            if !consistent && best_f > current + 1e-12 * current.abs().max(1.0) {
                return false;
            }
            theta.copy_from_slice(&best);
            current = best_f;
            for i in (0..self.p).filter(|&i| self.l1[i]) {
                sign[i] = if theta[i] == 0.0 {
                    0.0
                } else {
                    theta[i].signum()
                };
            }
            if !consistent {
                continue;
            }
            let q = self.g_theta(theta);
            let worst = (0..self.p)
                .filter(|&j| self.l1[j] && theta[j] == 0.0)
                .map(|j| (j, self.c[j] - q[j]))
                .max_by(|a, b| a.1.abs().total_cmp(&b.1.abs()));
            match worst {
                Some((j, g)) if g.abs() > self.lambda * (1.0 + 1e-10) + 1e-15 => {
                    sign[j] = g.signum()
                }
                _ => return true,
            }
        }
        false
    }

    /// The minimiser over the `active` coefficients (others zero) with the L1 signs fixed.
    fn solve_on(&self, active: &[usize], sign: &[f64]) -> Option<Vec<f64>> {
        let m = active.len();
        let mut a = vec![0.0; m * m];
        let mut b = vec![0.0; m];
        for (r, &i) in active.iter().enumerate() {
            for (col, &j) in active.iter().enumerate() {
                a[r * m + col] = self.g(i, j);
            }
            a[r * m + r] += self.mu[i];
            b[r] = self.c[i] - self.penalty(i) * sign[i];
        }
        if !cholesky_solve(&mut a, m, &mut b) {
            return None;
        }
        let mut out = vec![0.0; self.p];
        for (r, &i) in active.iter().enumerate() {
            out[i] = b[r];
        }
        Some(out)
    }
}

/// Soft thresholding `sign(x)·max(|x| − t, 0)`.
fn soft(x: f64, t: f64) -> f64 {
    if x > t {
        x - t
    } else if x < -t {
        x + t
    } else {
        0.0
    }
}

/// Solves `A·x = b` for a symmetric positive definite `m × m` row-major `A`, in place (`b`
/// becomes `x`, `A` its Cholesky factor); false when `A` is not positive definite.
fn cholesky_solve(a: &mut [f64], m: usize, b: &mut [f64]) -> bool {
    for j in 0..m {
        let mut d = a[j * m + j];
        for k in 0..j {
            d -= a[j * m + k] * a[j * m + k];
        }
        if d <= 0.0 || !d.is_finite() {
            return false;
        }
        let d = d.sqrt();
        a[j * m + j] = d;
        for i in j + 1..m {
            let mut v = a[i * m + j];
            for k in 0..j {
                v -= a[i * m + k] * a[j * m + k];
            }
            a[i * m + j] = v / d;
        }
    }
    for i in 0..m {
        let mut v = b[i];
        for k in 0..i {
            v -= a[i * m + k] * b[k];
        }
        b[i] = v / a[i * m + i];
    }
    for i in (0..m).rev() {
        let mut v = b[i];
        for k in i + 1..m {
            v -= a[k * m + i] * b[k];
        }
        b[i] = v / a[i * m + i];
    }
    true
}
