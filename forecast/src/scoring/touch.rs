//! Touch probabilities: how likely the price is to reach a level at any time before a
//! forecast's target bar, not only to close beyond it there.
//!
//! A forecast for horizon `h` made at last close `L` gives, in log price, a drift
//! `μ = ln(point / L)` and a spread `s = ln(hi95 / point) / z₉₅` over the `h` bars (its calibrated
//! 95% band). Modelling the log price over those bars as Brownian motion with that drift and
//! spread, the probability that its running maximum reaches `a = ln(level / L) > 0` is the
//! reflection principle's
//!
//! ```text
//! P(max ≥ a) = Φ((μ − a) / s) + exp(2aμ / s²) · Φ((−a − μ) / s)
//! ```
//!
//! and for a level below (`a < 0`) the mirror image. Real prices are not Brownian: volatility
//! clusters (so far levels are reached more often than near ones, relative to the normal) and
//! the bars are watched through their highs and lows. So each series, model and horizon keeps
//! a [`TouchCalibrator`]: logistic recalibration (Platt scaling) of the reflection
//! probability, `p = σ(α + β · logit p₀)`, fitted online by one gradient step on the log loss
//! per outcome. Two numbers learn the rate near levels and far levels are touched at; a single
//! factor on the spread, tried first, left a calibration error of 0.022 at 5 bars on a GARCH
//! walk.

use std::f64::consts::SQRT_2;

use tickcast_core::domain::Forecast;

use crate::Z95;

/// The standard normal distribution function.
pub fn norm_cdf(x: f64) -> f64 {
    0.5 * erfc(-x / SQRT_2)
}

/// The complementary error function (Numerical Recipes' Chebyshev fit, |error| < 1.2·10⁻⁷).
fn erfc(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let r = t
        * (-z * z - 1.265_512_23
            + t * (1.000_023_68
                + t * (0.374_091_96
                    + t * (0.096_784_18
                        + t * (-0.186_288_06
                            + t * (0.278_868_07
                                + t * (-1.135_203_98
                                    + t * (1.488_515_87
                                        + t * (-0.822_152_23 + t * 0.170_872_77)))))))))
            .exp();
    if x >= 0.0 { r } else { 2.0 - r }
}

/// The probability that Brownian motion with drift `mu` and spread `s` over the horizon
/// reaches `a` (in log price from the last close) at some time within it. `a` on the far side
/// of 0 is reached at once (1); no spread reaches only what the drift carries it to.
pub fn touch_probability(a: f64, mu: f64, s: f64) -> f64 {
    if !(a.is_finite() && mu.is_finite() && s.is_finite()) {
        return f64::NAN;
    }
    if a == 0.0 {
        return 1.0;
    }
    if s <= 0.0 {
        // Mirrored onto a level above: only the drift moves the price.
        let (a, mu) = if a < 0.0 { (-a, -mu) } else { (a, mu) };
        return if mu >= a { 1.0 } else { 0.0 };
    }
    let (up, down) = touch_pair(a.abs(), mu, s);
    if a > 0.0 { up } else { down }
}

/// The reflection probabilities of reaching `+a` and `−a` (`a > 0`, `s > 0`, all finite) under
/// drift `mu` and spread `s`, sharing their terms: a level below is the mirror image of one
/// above with the drift reversed. Where the exponential would overflow, the drift alone
/// carries the price far past the level: 1.
pub(crate) fn touch_pair(a: f64, mu: f64, s: f64) -> (f64, f64) {
    let first = norm_cdf((mu - a) / s);
    let second = norm_cdf((-a - mu) / s);
    let exponent = 2.0 * a * mu / (s * s);
    let up = if exponent > 700.0 {
        1.0
    } else {
        first + exponent.exp() * second
    };
    let down = if -exponent > 700.0 {
        1.0
    } else {
        second + (-exponent).exp() * first
    };
    (up.clamp(0.0, 1.0), down.clamp(0.0, 1.0))
}

/// The probability that the close at a forecast's target bar is at or above `level`, from its
/// calibrated bands and point read as the 2.5, 10, 50, 90 and 97.5% quantiles of the close
/// ([`above_from_quantiles`]). `None` when the bounds are not positive, finite and in order,
/// or `level` is not positive.
pub fn above_probability(
    point: f64,
    lo80: f64,
    hi80: f64,
    lo95: f64,
    hi95: f64,
    level: f64,
) -> Option<f64> {
    const Z: [f64; 5] = [-Z95, -crate::Z80, 0.0, crate::Z80, Z95];
    above_from_quantiles(&[lo95, lo80, point, hi80, hi95], &Z, level)
}

/// The probability that the close is at or above `level`, given quantiles `bounds` of the
/// close at the standard normal scores `z` (both ascending): the normal score is interpolated
/// linearly in log price between the quantiles, and beyond the outer ones extended along the
/// outer segment with width. `None` when the quantiles are not positive, finite and in order,
/// or `level` is not positive.
pub fn above_from_quantiles<const N: usize>(
    bounds: &[f64; N],
    z: &[f64; N],
    level: f64,
) -> Option<f64> {
    if N < 2
        || !(level > 0.0 && level.is_finite())
        || bounds.iter().any(|b| !(b.is_finite() && *b > 0.0))
        || bounds.windows(2).any(|w| w[0] > w[1])
    {
        return None;
    }
    let x = bounds.map(f64::ln);
    let y = level.ln();
    let (first, last) = (x[0], x[N - 1]);
    if first == last {
        // Every quantile equal: all the mass at one price.
        return Some(if y <= first { 1.0 } else { 0.0 });
    }
    // The normal score of y along the segment i → i + 1 (a segment of zero width has none).
    let along = |i: usize| {
        let width = x[i + 1] - x[i];
        (width > 0.0).then(|| z[i] + (y - x[i]) / width * (z[i + 1] - z[i]))
    };
    let score = if y < first {
        (0..N - 1).find_map(along)
    } else if y > last {
        (0..N - 1).rev().find_map(along)
    } else {
        (0..N - 1)
            .filter(|&i| x[i] <= y && y <= x[i + 1])
            .find_map(along)
            .or_else(|| {
                // y sits on quantiles of zero width, a step of the distribution: what lies at
                // or above it starts at the lowest of them.
                let at = x.iter().position(|&b| b == y)?;
                Some(z[at])
            })
    };
    // Some segment has width (the quantiles are not all equal), so a score was found.
    score.map(|s| 1.0 - norm_cdf(s))
}

/// The drift and spread of a forecast over its horizon, in log price from its last close;
/// `None` without a usable 95% band ([`crate::scoring::calibrated::spread`]'s rule).
pub fn drift_and_spread(last: f64, point: f64, hi95: f64) -> Option<(f64, f64)> {
    let mu = (point / last).ln();
    let s = crate::scoring::calibrated::spread(point, hi95)?;
    mu.is_finite().then_some((mu, s))
}

/// By forecast `f`: the probability that its target bar closes at or above `level`, from its
/// nine calibrated quantiles ([`above_from_quantiles`]), or from its bands and point for a
/// version 1 forecast ([`above_probability`]).
pub fn above_of(f: &Forecast, level: f64) -> Option<f64> {
    match &f.quantiles {
        Some(q) => above_from_quantiles(q, &crate::scoring::quantiles::NORMAL, level),
        None => above_probability(f.point, f.lo80, f.hi80, f.lo95, f.hi95, level),
    }
}

/// By forecast `f`: the probability that the price reaches `level` before its target bar
/// closes ([`touch_probability`] on its drift and spread), calibrated by the forecast's touch
/// calibration; a version 1 forecast has none, and gets the reflection probability as it is.
pub fn touch_of(f: &Forecast, level: f64) -> Option<f64> {
    let (mu, s) = drift_and_spread(f.last, f.point, f.hi95)?;
    let p = touch_probability((level / f.last).ln(), mu, s);
    let p = match &f.touch {
        // A level at the last close (1), or beyond reach without spread (0): certain.
        _ if p == 0.0 || p == 1.0 => p,
        Some(t) => {
            TouchCalibrator {
                alpha: t.alpha,
                beta: t.beta,
            }
            .calibrate(p)
            .p
        }
        None => p,
    };
    p.is_finite().then_some(p)
}

/// Online calibration of touch probabilities for one series, model and horizon: Platt scaling
/// of the reflection probability.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TouchCalibrator {
    /// Intercept α and slope β on the logit of the reflection probability.
    pub alpha: f64,
    pub beta: f64,
}

impl Default for TouchCalibrator {
    fn default() -> Self {
        Self {
            alpha: 0.0,
            beta: 1.0,
        }
    }
}

/// Gradient step of the calibrator on the log loss.
pub const TOUCH_STEP: f64 = 0.002;
/// Probabilities are kept this far from 0 and 1 before their logit is taken.
const EDGE: f64 = 1e-4;

fn logit(p: f64) -> f64 {
    let p = p.clamp(EDGE, 1.0 - EDGE);
    (p / (1.0 - p)).ln()
}

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// A calibrated touch probability and what the calibrator learns from: the logit of the
/// reflection probability it came from.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Touch {
    pub p: f64,
    pub raw_logit: f64,
}

impl TouchCalibrator {
    /// The calibrated probability of touching `a` (log price from the last close) under a
    /// forecast with drift `mu` and spread `s`.
    pub fn probability(&self, a: f64, mu: f64, s: f64) -> Touch {
        self.calibrate(touch_probability(a, mu, s))
    }

    /// The calibrated probability for a reflection probability `raw`.
    pub fn calibrate(&self, raw: f64) -> Touch {
        let raw_logit = logit(raw);
        Touch {
            p: sigmoid(self.alpha + self.beta * raw_logit),
            raw_logit,
        }
    }

    /// Folds in one outcome of a published probability: the level was (or was not) touched.
    pub fn learn(&mut self, t: Touch, touched: bool) {
        if !(t.p.is_finite() && t.raw_logit.is_finite()) {
            return;
        }
        let surprise = if touched { 1.0 } else { 0.0 } - t.p;
        self.alpha += TOUCH_STEP * surprise;
        self.beta += TOUCH_STEP * surprise * t.raw_logit;
    }
}

/// Scores of touch probabilities: Brier score, against a reference (the trailing base rate of
/// touches) on the same points, and the expected calibration error over 10 bins of `p`. Plain
/// sums ([`TouchScore::add`], the backtest's) or exponentially weighted ones
/// ([`TouchScore::add_decayed`], the live scorer's).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TouchScore {
    /// Outcomes scored (not decayed).
    pub n: u64,
    weight: f64,
    brier: f64,
    reference_brier: f64,
    /// Per bin of `p` (tenths): weight, Σp, Σ outcome.
    bins: [[f64; 3]; 10],
}

impl TouchScore {
    /// One outcome: the probability published, the reference's, and whether it touched.
    pub fn add(&mut self, p: f64, reference: f64, touched: bool) {
        self.add_decayed(p, reference, touched, 1.0);
    }

    /// [`TouchScore::add`], the sums so far weighted by `decay` first.
    pub fn add_decayed(&mut self, p: f64, reference: f64, touched: bool, decay: f64) {
        if !(p.is_finite() && reference.is_finite()) {
            return;
        }
        let o = if touched { 1.0 } else { 0.0 };
        self.n += 1;
        self.weight = self.weight * decay + 1.0;
        self.brier = self.brier * decay + (p - o) * (p - o);
        self.reference_brier = self.reference_brier * decay + (reference - o) * (reference - o);
        if decay != 1.0 {
            for b in self.bins.iter_mut().flatten() {
                *b *= decay;
            }
        }
        let bin = ((p * 10.0) as usize).min(9);
        let b = &mut self.bins[bin];
        b[0] += 1.0;
        b[1] += p;
        b[2] += o;
    }

    /// Mean Brier score; `None` before any outcome.
    pub fn brier(&self) -> Option<f64> {
        (self.weight > 0.0).then(|| self.brier / self.weight)
    }

    /// Brier score over the reference's (< 1: better than the trailing base rate).
    pub fn brier_rel(&self) -> Option<f64> {
        (self.weight > 0.0 && self.reference_brier > 0.0).then(|| self.brier / self.reference_brier)
    }

    /// Expected calibration error: Σ over the bins of (share of points) × |mean p − rate|.
    pub fn ece(&self) -> Option<f64> {
        (self.weight > 0.0).then(|| {
            self.bins
                .iter()
                .filter(|b| b[0] > 0.0)
                .map(|&[k, sp, so]| (k / self.weight) * ((sp - so) / k).abs())
                .sum()
        })
    }

    pub(crate) fn save(&self, e: &mut crate::checkpoint::Enc) {
        e.u64(self.n)
            .f64(self.weight)
            .f64(self.brier)
            .f64(self.reference_brier);
        e.f64s(self.bins.as_flattened().iter());
    }

    pub(crate) fn load(d: &mut crate::checkpoint::Dec<'_>) -> anyhow::Result<Self> {
        let (n, weight, brier, reference_brier) = (d.u64()?, d.f64()?, d.f64()?, d.f64()?);
        let flat = d.f64s()?;
        if flat.len() != 30 {
            anyhow::bail!("checkpoint: touch score of the wrong size");
        }
        Ok(Self {
            n,
            weight,
            brier,
            reference_brier,
            bins: std::array::from_fn(|i| [flat[3 * i], flat[3 * i + 1], flat[3 * i + 2]]),
        })
    }
}

/// The trailing base rate of touches: the share of the last `window` outcomes that touched
/// (0.5 before any), the reference the Brier score is compared with.
#[derive(Debug, Clone)]
pub struct BaseRate {
    window: usize,
    recent: std::collections::VecDeque<bool>,
    touched: usize,
}

impl BaseRate {
    pub fn new(window: usize) -> Self {
        Self {
            window: window.max(1),
            recent: std::collections::VecDeque::new(),
            touched: 0,
        }
    }

    pub fn rate(&self) -> f64 {
        if self.recent.is_empty() {
            0.5
        } else {
            self.touched as f64 / self.recent.len() as f64
        }
    }

    pub fn push(&mut self, touched: bool) {
        self.recent.push_back(touched);
        self.touched += usize::from(touched);
        if self.recent.len() > self.window
            && let Some(old) = self.recent.pop_front()
        {
            self.touched -= usize::from(old);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tickcast_core::rng::Rng;

    #[test]
    fn the_normal_distribution_function_is_accurate() {
        for (x, want) in [
            (0.0, 0.5),
            (1.0, 0.841_344_746_068_543),
            (-1.959_963_984_540, 0.025),
            (3.0, 0.998_650_101_968_370),
        ] {
            assert!(
                (norm_cdf(x) - want).abs() < 2e-7,
                "Φ({x}) = {}",
                norm_cdf(x)
            );
        }
    }

    #[test]
    fn above_probability_reads_the_bands_as_quantiles() {
        let (point, lo80, hi80, lo95, hi95) = (100.0, 98.0, 102.5, 96.5, 104.0);
        let above = |level: f64| above_probability(point, lo80, hi80, lo95, hi95, level).unwrap();
        // At each bound exactly its level.
        assert!((above(point) - 0.5).abs() < 1e-7);
        assert!((above(hi80) - 0.10).abs() < 1e-7);
        assert!((above(hi95) - 0.025).abs() < 1e-7);
        assert!((above(lo80) - 0.90).abs() < 1e-7);
        assert!((above(lo95) - 0.975).abs() < 1e-7);
        // Between and beyond: in order, and within (0, 1).
        let levels = [90.0, 96.5, 97.0, 99.0, 100.0, 101.0, 103.0, 104.0, 110.0];
        let ps: Vec<f64> = levels.iter().map(|&l| above(l)).collect();
        assert!(ps.windows(2).all(|w| w[0] >= w[1]), "{ps:?}");
        assert!(ps[0] < 1.0 && ps[8] > 0.0 && ps[8] < 0.025);
        // Every bound equal: a step at the point.
        assert_eq!(above_probability(5.0, 5.0, 5.0, 5.0, 5.0, 5.0), Some(1.0));
        assert_eq!(above_probability(5.0, 5.0, 5.0, 5.0, 5.0, 5.1), Some(0.0));
        // Unusable input.
        assert_eq!(
            above_probability(100.0, 98.0, 102.5, 99.0, 104.0, 100.0),
            None
        );
        assert_eq!(
            above_probability(100.0, 98.0, 102.5, 96.5, 104.0, 0.0),
            None
        );
        assert_eq!(
            above_probability(100.0, 98.0, 102.5, -1.0, 104.0, 100.0),
            None
        );
    }

    #[test]
    fn the_nine_quantiles_give_the_probability_above_a_level() {
        use crate::scoring::quantiles::{LEVELS, NORMAL};
        let q = [95.0, 96.0, 97.0, 99.0, 100.0, 101.0, 103.0, 104.0, 105.0];
        for (x, tau) in q.iter().zip(LEVELS) {
            let p = above_from_quantiles(&q, &NORMAL, *x).expect("usable");
            assert!((p - (1.0 - tau)).abs() < 1e-7, "at {x}: {p}");
        }
        let f = Forecast {
            v: 2,
            last: 100.0,
            point: 100.0,
            lo80: 97.0,
            hi80: 103.0,
            lo95: 95.0,
            hi95: 105.0,
            quantiles: Some(q),
            touch: Some(tickcast_core::domain::TouchCalibration {
                alpha: 0.5,
                beta: 1.0,
            }),
            ..Forecast::default()
        };
        // From the quantiles: 101 is the 75% quantile, which the bands alone do not know.
        assert!((above_of(&f, 101.0).expect("usable") - 0.25).abs() < 1e-7);
        let v1 = Forecast {
            quantiles: None,
            touch: None,
            ..f.clone()
        };
        assert!((above_of(&v1, 101.0).expect("usable") - 0.25).abs() > 0.01);
        // The touch calibration moves the reflection probability by its logit...
        let raw = touch_of(&v1, 103.0).expect("usable");
        let calibrated = touch_of(&f, 103.0).expect("usable");
        let logit = |p: f64| (p / (1.0 - p)).ln();
        assert!((logit(calibrated) - logit(raw) - 0.5).abs() < 1e-9);
        // ...but not a level at the last close, which is touched already.
        assert_eq!(touch_of(&f, 100.0), Some(1.0));
    }

    #[test]
    fn touch_probability_limits_and_symmetry() {
        // No drift: twice the chance of closing beyond the level (the reflection principle).
        let p = touch_probability(1.0, 0.0, 1.0);
        assert!((p - 2.0 * (1.0 - norm_cdf(1.0))).abs() < 1e-12);
        // Mirror image for a level below with the drift reversed.
        assert_eq!(
            touch_probability(-0.7, 0.2, 0.5),
            touch_probability(0.7, -0.2, 0.5)
        );
        // A level at or behind the price is touched; without spread only the drift moves it.
        assert_eq!(touch_probability(0.0, 0.1, 1.0), 1.0);
        assert_eq!(touch_probability(0.5, 0.6, 0.0), 1.0);
        assert_eq!(touch_probability(0.5, 0.4, 0.0), 0.0);
        // A drift far past the level: the exponential would overflow, the answer is 1.
        assert_eq!(touch_probability(1.0, 1e6, 1.0), 1.0);
        assert!(touch_probability(f64::NAN, 0.0, 1.0).is_nan());
    }

    /// Known answer: simulated Brownian paths with drift, watched at `STEPS` points, touch
    /// the level as often as the closed form says, within 3 standard errors. Watching at
    /// discrete points misses touches between them; Broadie and Glasserman's correction
    /// (the level moved out by 0.5826·s·√(1/STEPS)) accounts for that.
    #[test]
    fn touch_probability_matches_simulated_brownian_paths() {
        const PATHS: usize = 20_000;
        const STEPS: usize = 400;
        let mut rng = Rng::new(17);
        for (a, mu, s) in [(0.8, 0.0, 1.0), (1.5, 0.3, 1.0), (-0.5, 0.2, 0.7)] {
            let dt = 1.0 / STEPS as f64;
            let mut touched = 0usize;
            for _ in 0..PATHS {
                let mut x = 0.0;
                let mut hit = false;
                for _ in 0..STEPS {
                    x += mu * dt + s * dt.sqrt() * rng.normal();
                    if (a > 0.0 && x >= a) || (a < 0.0 && x <= a) {
                        hit = true;
                        break;
                    }
                }
                touched += usize::from(hit);
            }
            let freq = touched as f64 / PATHS as f64;
            let shift = 0.5826 * s * dt.sqrt() * a.signum();
            let want = touch_probability(a + shift, mu, s);
            let se = (want * (1.0 - want) / PATHS as f64).sqrt();
            assert!(
                (freq - want).abs() < 3.0 * se,
                "a {a} mu {mu} s {s}: simulated {freq:.4}, closed form {want:.4} (se {se:.4})"
            );
        }
    }

    #[test]
    fn the_calibrator_raises_after_touches_and_lowers_after_misses() {
        let mut c = TouchCalibrator::default();
        let t = c.probability(1.0, 0.0, 0.5);
        // At first the reflection probability as it is.
        assert!((t.p - touch_probability(1.0, 0.0, 0.5)).abs() < 1e-12);
        c.learn(t, true);
        assert!(c.probability(1.0, 0.0, 0.5).p > t.p);
        let mut c = TouchCalibrator::default();
        c.learn(t, false);
        assert!(c.probability(1.0, 0.0, 0.5).p < t.p);
        // Learns a rate: levels touched 30% of the time whatever the formula says. (Each
        // step moves it by a little noise: the mean over the second half is what settles.)
        let mut c = TouchCalibrator::default();
        let mut rng = Rng::new(3);
        let mut later = 0.0;
        for i in 0..200_000 {
            let t = c.probability(1.0, 0.0, 0.5);
            if i >= 100_000 {
                later += t.p / 100_000.0;
            }
            c.learn(t, rng.unit() < 0.3);
        }
        assert!((later - 0.3).abs() < 0.01, "{later}");
    }

    #[test]
    fn scores_of_known_points() {
        let mut s = TouchScore::default();
        s.add(0.9, 0.5, true); // brier 0.01, reference 0.25
        s.add(0.2, 0.5, false); // 0.04, 0.25
        s.add(0.25, 0.5, true); // 0.5625, 0.25
        assert!((s.brier().unwrap() - 0.6125 / 3.0).abs() < 1e-12);
        assert!((s.brier_rel().unwrap() - 0.6125 / 0.75).abs() < 1e-12);
        // Bins: 0.9 → [1 of 1 touched], 0.2 → [0 of 1], 0.25 → same bin as 0.2: mean p 0.225,
        // rate 0.5. ECE = 1/3·|0.9 − 1| + 2/3·|0.225 − 0.5|.
        let want = (0.1 + 2.0 * 0.275) / 3.0;
        assert!((s.ece().unwrap() - want).abs() < 1e-12);
        let mut b = BaseRate::new(2);
        assert_eq!(b.rate(), 0.5);
        b.push(true);
        b.push(false);
        b.push(false);
        assert_eq!(b.rate(), 0.0);
    }
}
