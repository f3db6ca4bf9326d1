//! The `trend` model's design: Prophet's settings, the columns of an `n`-bar window
//! ([`Layout`]) and its design and Gram matrices ([`Design`]), which depend on the window's
//! length alone and are shared by every series. The fit ([`super::fit`]) and its lasso solver
//! ([`super::lasso`]) both build on them.

use std::f64::consts::TAU;

/// Prophet's model settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FitSettings {
    /// Potential changepoints `S` (Prophet: 25).
    pub changepoints: usize,
    /// Share of the window, from its start, that holds the changepoints (Prophet: 0.8).
    pub changepoint_range: f64,
    /// Scale `τ` of the Laplace prior on the slope changes (Prophet: 0.05).
    pub changepoint_prior_scale: f64,
    /// Seasonal period `P` in bars (1,440 = daily on 1-minute bars).
    pub period: u32,
    /// Highest Fourier order (Prophet's daily seasonality: 4); 0 = no seasonality.
    pub fourier_order: u32,
    /// Scale `s` of the normal prior on the Fourier coefficients (Prophet: 10).
    pub seasonality_prior_scale: f64,
}

impl Default for FitSettings {
    fn default() -> Self {
        Self {
            changepoints: 25,
            changepoint_range: 0.8,
            changepoint_prior_scale: 0.05,
            period: 1_440,
            fourier_order: 4,
            seasonality_prior_scale: 10.0,
        }
    }
}

/// The columns of an `n`-bar window: intercept, slope, one hinge per changepoint, then a sine
/// and a cosine per kept Fourier order.
#[derive(Debug, Clone, PartialEq)]
pub struct Layout {
    pub n: usize,
    pub period: u32,
    /// Changepoints on the scaled axis `t = i/(n − 1)`, ascending.
    pub changepoints: Vec<f64>,
    /// Fourier orders kept.
    pub orders: Vec<u32>,
}

impl Layout {
    /// The layout of an `n`-bar window; `None` below 3 bars.
    pub fn new(n: usize, s: &FitSettings) -> Option<Self> {
        if n < 3 {
            return None;
        }
        let last = (n - 1) as f64;
        // Prophet: hist_size = ⌊n·range⌋ rows, at most hist_size − 1 changepoints, at the
        // rounded (half to even, as numpy) points of linspace(0, hist_size − 1, S + 1) but the
        // first.
        let hist = ((n as f64) * s.changepoint_range.clamp(0.0, 1.0)).floor() as usize;
        let count = s.changepoints.min(hist.saturating_sub(1));
        let changepoints = (1..=count)
            .map(|j| {
                let at = (j as f64 * (hist - 1) as f64 / count as f64).round_ties_even();
                at / last
            })
            .collect();
        let period = s.period.max(1);
        let orders = (1..=s.fourier_order)
            .filter(|&o| 2 * o < period && f64::from(period) / f64::from(o) <= n as f64)
            .collect();
        Some(Self {
            n,
            period,
            changepoints,
            orders,
        })
    }

    /// Number of coefficients.
    pub fn p(&self) -> usize {
        2 + self.changepoints.len() + 2 * self.orders.len()
    }

    /// Index of the first Fourier coefficient.
    pub(super) fn fourier_at(&self) -> usize {
        2 + self.changepoints.len()
    }

    /// The design row of bar `i` (window-relative; past the window for forecasts).
    pub fn row(&self, i: f64, row: &mut [f64]) {
        let t = i / (self.n - 1) as f64;
        row[0] = 1.0;
        row[1] = t;
        for (r, &s) in row[2..].iter_mut().zip(&self.changepoints) {
            *r = (t - s).max(0.0);
        }
        let at = self.fourier_at();
        for (pair, &o) in row[at..].chunks_exact_mut(2).zip(&self.orders) {
            let w = TAU * f64::from(o) * i / f64::from(self.period);
            pair[0] = w.sin();
            pair[1] = w.cos();
        }
    }
}

/// A window length's design matrix `X` (column-major) and Gram matrix `G = XᵀX`.
#[derive(Debug, Clone)]
pub struct Design {
    pub layout: Layout,
    x: Vec<f64>,
    gram: Vec<f64>,
}

impl Design {
    pub fn new(layout: Layout) -> Self {
        let (n, p) = (layout.n, layout.p());
        let mut x = vec![0.0; n * p];
        let mut row = vec![0.0; p];
        for i in 0..n {
            layout.row(i as f64, &mut row);
            for (j, v) in row.iter().enumerate() {
                x[j * n + i] = *v;
            }
        }
        // A hinge column is zero up to its changepoint: each product starts at the later one.
        let start: Vec<usize> = (0..p)
            .map(|j| {
                x[j * n..(j + 1) * n]
                    .iter()
                    .position(|v| *v != 0.0)
                    .unwrap_or(n)
            })
            .collect();
        let mut gram = vec![0.0; p * p];
        for a in 0..p {
            for b in a..p {
                let from = start[a].max(start[b]);
                let g = dot(&x[a * n + from..(a + 1) * n], &x[b * n + from..(b + 1) * n]);
                gram[a * p + b] = g;
                gram[b * p + a] = g;
            }
        }
        Self { layout, x, gram }
    }

    /// `‖ỹ − Xθ‖²`, from the residuals (the Gram form `ỹᵀỹ − 2θᵀc + θᵀGθ` cancels badly).
    ///
    /// Four columns per pass over the residuals, so each residual is loaded and stored once
    /// per four columns; each still has the columns subtracted one by one in column order, so
    /// the result is the same as one column per pass.
    pub(super) fn rss(&self, ys: &[f64], theta: &[f64]) -> f64 {
        let mut r = ys.to_vec();
        let used: Vec<(f64, &[f64])> = theta
            .iter()
            .enumerate()
            .filter(|(_, t)| **t != 0.0)
            .map(|(j, t)| (*t, self.column(j)))
            .collect();
        for group in used.chunks(4) {
            if let [(t0, x0), (t1, x1), (t2, x2), (t3, x3)] = group {
                let columns = x0.iter().zip(*x1).zip(*x2).zip(*x3);
                for (ri, (((a, b), c), d)) in r.iter_mut().zip(columns) {
                    let mut v = *ri;
                    v -= t0 * a;
                    v -= t1 * b;
                    v -= t2 * c;
                    v -= t3 * d;
                    *ri = v;
                }
            } else {
                for (t, x) in group {
                    for (ri, x) in r.iter_mut().zip(*x) {
                        *ri -= t * x;
                    }
                }
            }
        }
        dot(&r, &r)
    }

    pub(super) fn gram(&self) -> &[f64] {
        &self.gram
    }

    pub(super) fn column(&self, j: usize) -> &[f64] {
        let n = self.layout.n;
        &self.x[j * n..(j + 1) * n]
    }
}

pub(crate) fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}
