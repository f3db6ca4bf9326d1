//! GARCH(1,1) volatility of log returns: σ²ₜ₊₁ = ω + α·rₜ² + β·σ²ₜ, fitted by Gaussian maximum
//! likelihood with variance targeting (ω = V·(1 − α − β), V the sample variance), and its
//! multi-step forecast: σ²ₜ₊ₖ = V + (α + β)^(k−1)·(σ²ₜ₊₁ − V), summed over k = 1..h for the
//! variance of the h-step log return.

/// GARCH(1,1) parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Garch11 {
    pub omega: f64,
    pub alpha: f64,
    pub beta: f64,
}

impl Garch11 {
    /// The long-run variance ω / (1 − α − β) (`None` when not stationary).
    pub fn long_run_variance(&self) -> Option<f64> {
        let persistence = self.alpha + self.beta;
        (persistence < 1.0 && self.omega > 0.0).then(|| self.omega / (1.0 - persistence))
    }

    /// One step of the recursion: the next variance after return `r` at variance `var`.
    pub fn next_variance(&self, var: f64, r: f64) -> f64 {
        self.omega + self.alpha * r * r + self.beta * var
    }

    /// The conditional variances σ²₁..σ²ₙ₊₁ of `returns`, starting from `var0`.
    pub fn variances(&self, returns: &[f64], var0: f64) -> Vec<f64> {
        let mut out = Vec::with_capacity(returns.len() + 1);
        let mut v = var0;
        out.push(v);
        for r in returns {
            v = self.next_variance(v, *r);
            out.push(v);
        }
        out
    }

    /// Variance of the sum of the next `h` returns, given the next one's variance `next_var`.
    pub fn horizon_variance(&self, next_var: f64, h: u32) -> f64 {
        let Some(lr) = self.long_run_variance() else {
            return next_var * f64::from(h);
        };
        // Σₖ₌₀^{h−1} (lr + pᵏ (v − lr)), the powers as a running product.
        let p = self.alpha + self.beta;
        let (mut pk, mut sum) = (1.0, 0.0);
        for _ in 0..h {
            sum += lr + pk * (next_var - lr);
            pk *= p;
        }
        sum
    }

    /// Gaussian negative log-likelihood (without constants) of `returns`, starting at `var0`:
    /// `Σ ln vₜ + rₜ² / vₜ`. The logarithms are taken of running products (`Σ ln vₜ = ln Π vₜ`),
    /// flushed once they leave `[10⁻²⁰⁰, 10²⁰⁰]`: one `ln` per several returns instead of one
    /// each (the grid search evaluates this thousands of times per fit); the sum differs from
    /// the term-by-term one by rounding only.
    pub fn neg_log_likelihood(&self, returns: &[f64], var0: f64) -> f64 {
        let mut v = var0;
        let mut nll = 0.0;
        let mut product = 1.0f64;
        for r in returns {
            if v <= 0.0 || !v.is_finite() {
                return f64::INFINITY;
            }
            if (1e-100..=1e100).contains(&v) {
                // Stays a normal number: |log₁₀| ≤ 200 before, ≤ 300 after.
                product *= v;
                if !(1e-200..=1e200).contains(&product) {
                    nll += product.ln();
                    product = 1.0;
                }
            } else {
                nll += v.ln();
            }
            nll += r * r / v;
            v = self.next_variance(v, *r);
        }
        nll + product.ln()
    }

    /// Fits α and β by maximum likelihood with variance targeting: a coarse grid, then two
    /// finer grids around the best point. Deterministic. `None` with fewer than 30 returns or
    /// no variance.
    pub fn fit(returns: &[f64]) -> Option<Self> {
        Self::fit_from(returns, None)
    }

    /// Maximum-likelihood fit by a shrinking grid search over (α, β), ω set by variance
    /// targeting. From scratch the first grid spans α ∈ [0, 0.4], β ∈ [0, 0.999) (3 rounds of
    /// 25×25); warm-started from `prev` (a refit on a window that moved a little) it spans
    /// ±0.05 around the previous (α, β) (3 rounds of 9×9, about 8× cheaper).
    pub fn fit_from(returns: &[f64], prev: Option<&Self>) -> Option<Self> {
        if returns.len() < 30 {
            return None;
        }
        let n = returns.len() as f64;
        let mean = returns.iter().sum::<f64>() / n;
        let var = returns.iter().map(|r| (r - mean).powi(2)).sum::<f64>() / n;
        if var <= 0.0 || !var.is_finite() {
            return None;
        }
        let model = |alpha: f64, beta: f64| Self {
            omega: var * (1.0 - alpha - beta),
            alpha,
            beta,
        };
        let (mut best, mut best_nll) = (model(0.05, 0.9), f64::INFINITY);
        let (steps, (mut a_lo, mut a_hi, mut b_lo, mut b_hi)) = match prev {
            Some(p) => (
                8,
                (
                    (p.alpha - 0.05).max(0.0),
                    p.alpha + 0.05,
                    (p.beta - 0.05).max(0.0),
                    (p.beta + 0.05).min(0.999),
                ),
            ),
            None => (24, (0.0, 0.4, 0.0, 0.999)),
        };
        for _ in 0..3 {
            for i in 0..=steps {
                for j in 0..=steps {
                    let a = a_lo + (a_hi - a_lo) * f64::from(i) / f64::from(steps);
                    let b = b_lo + (b_hi - b_lo) * f64::from(j) / f64::from(steps);
                    if a < 0.0 || b < 0.0 || a + b >= 0.999 {
                        continue;
                    }
                    let m = model(a, b);
                    let nll = m.neg_log_likelihood(returns, var);
                    if nll < best_nll {
                        (best, best_nll) = (m, nll);
                    }
                }
            }
            let (da, db) = ((a_hi - a_lo) / 8.0, (b_hi - b_lo) / 8.0);
            (a_lo, a_hi) = ((best.alpha - da).max(0.0), best.alpha + da);
            (b_lo, b_hi) = ((best.beta - db).max(0.0), (best.beta + db).min(0.999));
        }
        Some(best)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tickcast_core::rng::Rng;

    #[test]
    fn recursion_matches_hand_computation() {
        let g = Garch11 {
            omega: 0.1,
            alpha: 0.2,
            beta: 0.7,
        };
        // σ²₁ = 1; σ²₂ = 0.1 + 0.2·4 + 0.7·1 = 1.6; σ²₃ = 0.1 + 0.2·1 + 0.7·1.6 = 1.42.
        let v = g.variances(&[2.0, -1.0], 1.0);
        assert_eq!(v.len(), 3);
        assert!(
            (v[1] - 1.6).abs() < 1e-12 && (v[2] - 1.42).abs() < 1e-12,
            "{v:?}"
        );
        // Long run 0.1 / 0.1 = 1; from next variance 3: 3, 1 + 0.9·2, 1 + 0.81·2 → sum 8.42.
        assert!((g.long_run_variance().expect("stationary") - 1.0).abs() < 1e-12);
        assert!((g.horizon_variance(3.0, 3) - 8.42).abs() < 1e-12);
        assert!((g.horizon_variance(3.0, 1) - 3.0).abs() < 1e-12);
    }

    #[test]
    fn fit_recovers_the_parameters_of_a_simulated_series() {
        let truth = Garch11 {
            omega: 1e-6 * (1.0 - 0.1 - 0.85),
            alpha: 0.1,
            beta: 0.85,
        };
        let mut rng = Rng::new(11);
        let mut v: f64 = 1e-6;
        let returns: Vec<f64> = (0..20_000)
            .map(|_| {
                let r = v.sqrt() * rng.normal();
                v = truth.next_variance(v, r);
                r
            })
            .collect();
        let fit = Garch11::fit(&returns).expect("fits");
        assert!((fit.alpha - 0.1).abs() < 0.03, "{fit:?}");
        assert!((fit.beta - 0.85).abs() < 0.04, "{fit:?}");
        assert!(
            fit.neg_log_likelihood(&returns, 1e-6)
                <= truth.neg_log_likelihood(&returns, 1e-6) + 5.0
        );
        assert_eq!(Garch11::fit(&returns[..10]), None);
        assert_eq!(Garch11::fit(&[0.0; 100]), None);
    }

    /// The likelihood from running products equals the term-by-term sum, for minute-sized
    /// variances (products flushed many times), tiny and huge ones (taken one by one).
    #[test]
    fn likelihood_by_products_equals_the_sum_of_logs() {
        let mut rng = Rng::new(4);
        for (scale, var0) in [(1e-3, 1e-6), (1e-60, 1e-120), (1e60, 1e120), (1.0, 1.0)] {
            let g = Garch11 {
                omega: scale * scale * 0.05,
                alpha: 0.1,
                beta: 0.85,
            };
            let returns: Vec<f64> = (0..5_000).map(|_| scale * rng.normal()).collect();
            let vs = g.variances(&returns, var0);
            let by_terms: f64 = returns
                .iter()
                .zip(&vs)
                .map(|(r, v)| v.ln() + r * r / v)
                .sum();
            let got = g.neg_log_likelihood(&returns, var0);
            assert!(
                ((got - by_terms) / by_terms).abs() < 1e-12,
                "scale {scale}: {got} vs {by_terms}"
            );
        }
        let g = Garch11 {
            omega: 0.1,
            alpha: 0.2,
            beta: 0.7,
        };
        assert_eq!(g.neg_log_likelihood(&[1.0], 0.0), f64::INFINITY);
    }
}
