//! Each forecast's predictive distribution, as the live stage publishes it: nine quantiles
//! ([`crate::scoring::quantiles`]) and the calibration of its touch probabilities ([`crate::scoring::touch`]),
//! both learnt online per series, model and horizon from the forecasts scored so far.
//!
//! The scorer ([`crate::scoring::scorer::Scorer`]) owns the calibrators, beside the rolling scores: when
//! a forecast is recorded it gets its quantiles and touch calibration from them
//! ([`Calibrators::publish`]); when its target bar closes, the calibrators learn from the
//! outcome and the distribution scores take it in ([`Calibrators::learn`]). What was published
//! is kept, rounded to `f32`, with the waiting forecast ([`Published`]); the forecast carries
//! exactly the values those rounded numbers give, so it is scored on what was sent.
//!
//! The touch calibrator learns, from each outcome, at two levels, ±1 or ±2 × the forecast's own
//! spread from its last close (the distance alternating from one outcome to the next): whether
//! the bars up to the target reached them (their highs and lows).
//!
//! The calibrators are read for every forecast published and the scores only when one is
//! scored, so the scorer keeps them apart ([`Calibrators`] beside each series' track ids,
//! [`DistScores`] in its tracks): recording a bar's forecasts then reads a few cache lines per
//! series.

use tickcast_core::domain::{Forecast, TouchCalibration};

use crate::checkpoint::{Dec, Enc};
use crate::scoring::calibrated::spread;
use crate::scoring::quantiles::{QuantileCalibrator, QuantileScore, crps};
use crate::scoring::touch::{TouchCalibrator, TouchScore, touch_pair};

/// Touch levels the calibrators learn and are scored at, in units of the forecast's spread.
pub const TOUCH_UNITS: [f64; 2] = [1.0, 2.0];

/// The calibrators of one series, model and horizon.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Calibrators {
    pub quantiles: QuantileCalibrator,
    pub touch: TouchCalibrator,
}

/// The rolling scores of what one series', model's and horizon's calibrators published.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DistScores {
    pub quantile_score: QuantileScore,
    pub touch_score: TouchScore,
    /// Exponentially weighted count of outcomes that touched, per level (−2, −1, +1, +2
    /// spreads), and of outcomes, per distance (1, 2 spreads): their ratio is the reference of
    /// the touch Brier score (0.5 before any).
    base_rate: [f64; 4],
    base_weight: [f64; 2],
}

/// A published forecast's distribution, kept until its target bar: each quantile over the
/// point (`exp(m_τ · s)`) and the touch calibration, rounded to `f32` (a quantile is then exact
/// to about 6·10⁻⁸ of the price, below any exchange's tick). The forecast carries exactly the
/// quantiles these give, so scoring them needs no exponential.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Published {
    pub ratios: [f32; 9],
    pub touch: [f32; 2],
}

impl Default for Published {
    /// Every quantile at the point, the touch probabilities uncalibrated.
    fn default() -> Self {
        Self {
            ratios: [1.0; 9],
            touch: [0.0, 1.0],
        }
    }
}

/// What happened to one forecast: its target bar's close and the highs and lows of the bars up
/// to it (`None` when the scorer has not seen every bar since the forecast was made).
#[derive(Debug, Clone, Copy)]
pub struct Reached {
    pub close: f64,
    pub high: Option<f64>,
    pub low: Option<f64>,
    /// The logs of close, high and low over a base close (its bits): the forecasts due at a
    /// bar for one horizon share their base bar, so they are worked out once for all of them.
    logs: Option<(u64, [f64; 3])>,
}

impl Reached {
    pub fn new(close: f64, high: Option<f64>, low: Option<f64>) -> Self {
        Self {
            close,
            high,
            low,
            logs: None,
        }
    }

    /// `ln(x / last)` of the close, the high and the low (NaN for one not known).
    fn logs(&mut self, last: f64) -> [f64; 3] {
        match self.logs {
            Some((bits, logs)) if bits == last.to_bits() => logs,
            _ => {
                let rel = |x: Option<f64>| x.map_or(f64::NAN, |x| (x / last).ln());
                let logs = [rel(Some(self.close)), rel(self.high), rel(self.low)];
                self.logs = Some((last.to_bits(), logs));
                logs
            }
        }
    }
}

/// A forecast as the scorer keeps it until its target bar.
#[derive(Debug, Clone, Copy)]
pub struct Made {
    pub last: f64,
    pub point: f64,
    pub hi95: f64,
    pub published: Published,
}

/// What one scored forecast added to the distribution scores, for the Prometheus sums.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct Learnt {
    /// Whether the outcome fell at or below each quantile.
    pub below: [bool; 9],
    /// CRPS over the last close, and naive's on the same bar when paired.
    pub crps_rel: f64,
    pub naive_crps_rel: Option<f64>,
    /// Per touch level of the outcome (below, above): the published probability, the base
    /// rate's and whether it touched; `None` without the bars' highs and lows.
    pub touches: Option<[(f64, f64, bool); 2]>,
}

impl Published {
    /// The quantiles of a forecast with `point`.
    fn quantiles(&self, point: f64) -> [f64; 9] {
        self.ratios.map(|r| point * f64::from(r))
    }

    fn touch(&self) -> TouchCalibrator {
        TouchCalibrator {
            alpha: f64::from(self.touch[0]),
            beta: f64::from(self.touch[1]),
        }
    }
}

/// The quantiles of a forecast without a usable spread: its bands and point read as the
/// quantiles they stand for, in order.
fn from_bands(f: &Forecast) -> [f64; 9] {
    let mut q = [
        f.lo95, f.lo95, f.lo80, f.lo80, f.point, f.hi80, f.hi80, f.hi95, f.hi95,
    ];
    q.sort_by(f64::total_cmp);
    q
}

impl Calibrators {
    /// Sets `f`'s quantiles and touch calibration from the calibrators as they stand, and
    /// returns what the scorer keeps to score them.
    pub fn publish(&self, f: &mut Forecast) -> Published {
        let s = spread(f.point, f.hi95);
        let published = Published {
            ratios: match s {
                // In `f32`, the precision kept (its exponential is the faster).
                Some(s) => self.quantiles.multipliers.map(|m| ((m * s) as f32).exp()),
                None => [1.0; 9],
            },
            touch: [self.touch.alpha as f32, self.touch.beta as f32],
        };
        f.quantiles = Some(match s {
            Some(_) => published.quantiles(f.point),
            None => from_bands(f),
        });
        let t = published.touch();
        f.touch = Some(TouchCalibration {
            alpha: t.alpha,
            beta: t.beta,
        });
        published
    }

    /// Learns from, and scores into `scores`, one forecast whose target bar closed.
    /// `naive_crps` is naive's CRPS on the same bar and horizon, when known; `decay` the
    /// rolling scores' weight on the past. Returns what was added to the scores; `None` when
    /// the forecast had no usable spread.
    pub fn learn(
        &mut self,
        scores: &mut DistScores,
        made: &Made,
        reached: &mut Reached,
        naive_crps: Option<f64>,
        decay: f64,
    ) -> Option<Learnt> {
        let s = spread(made.point, made.hi95)?;
        let actual = reached.close;
        if !(actual > 0.0 && actual.is_finite() && made.last > 0.0) {
            return None;
        }
        let quantiles = made.published.quantiles(made.point);
        if quantiles.iter().any(|q| !q.is_finite()) {
            return None;
        }
        // The touch distance of this outcome: 1 and 2 spreads in turn.
        let distance = (scores.quantile_score.n % 2) as usize;
        scores
            .quantile_score
            .add_decayed(&quantiles, actual, naive_crps, decay);
        let [close, up, down] = reached.logs(made.last);
        let mu = (made.point / made.last).ln();
        self.quantiles.learn((close - mu) / s);
        let mut learnt = Learnt {
            below: quantiles.map(|q| actual <= q),
            crps_rel: crps(&quantiles, actual) / made.last,
            naive_crps_rel: naive_crps.map(|c| c / made.last),
            touches: None,
        };
        if reached.high.is_none() || reached.low.is_none() {
            return Some(learnt);
        }
        let published = made.published.touch();
        let a = TOUCH_UNITS[distance] * s;
        let (p_up, p_down) = touch_pair(a, mu, s);
        // Base rates per level: −2, −1, +1, +2 spreads.
        let (below, above) = if distance == 0 { (1, 2) } else { (0, 3) };
        let weight = &mut scores.base_weight[distance];
        *weight = *weight * decay + 1.0;
        let before = *weight - 1.0;
        let mut touches = [(0.0, 0.0, false); 2];
        for (k, (side, raw, touched)) in [(below, p_down, down <= -a), (above, p_up, up >= a)]
            .into_iter()
            .enumerate()
        {
            let t = published.calibrate(raw);
            let rate = &mut scores.base_rate[side];
            *rate *= decay;
            let reference = if before > 0.0 { *rate / before } else { 0.5 };
            // One outcome: the sums decay once for both of its levels.
            let d = if k == 0 { decay } else { 1.0 };
            scores.touch_score.add_decayed(t.p, reference, touched, d);
            self.touch.learn(t, touched);
            *rate += f64::from(u8::from(touched));
            touches[k] = (t.p, reference, touched);
        }
        learnt.touches = Some(touches);
        Some(learnt)
    }

    /// Naive's CRPS for a forecast it made, to pair the other models' with.
    pub fn crps_of(made: &Made, actual: f64) -> Option<f64> {
        spread(made.point, made.hi95)?;
        let c = crps(&made.published.quantiles(made.point), actual);
        c.is_finite().then_some(c)
    }

    pub(crate) fn save(&self, e: &mut Enc) {
        e.f64s(self.quantiles.multipliers.iter());
        e.f64(self.touch.alpha).f64(self.touch.beta);
    }

    pub(crate) fn load(d: &mut Dec<'_>) -> anyhow::Result<Self> {
        let multipliers: [f64; 9] = d
            .f64s()?
            .try_into()
            .map_err(|_| anyhow::anyhow!("checkpoint: quantile calibrator of the wrong size"))?;
        Ok(Self {
            quantiles: QuantileCalibrator { multipliers },
            touch: TouchCalibrator {
                alpha: d.f64()?,
                beta: d.f64()?,
            },
        })
    }
}

impl DistScores {
    pub(crate) fn save(&self, e: &mut Enc) {
        self.quantile_score.save(e);
        self.touch_score.save(e);
        let [r0, r1, r2, r3] = self.base_rate;
        let [w0, w1] = self.base_weight;
        e.f64s([r0, r1, r2, r3, w0, w1].iter());
    }

    pub(crate) fn load(d: &mut Dec<'_>) -> anyhow::Result<Self> {
        let quantile_score = QuantileScore::load(d)?;
        let touch_score = TouchScore::load(d)?;
        let rates = d.f64s()?;
        let [r0, r1, r2, r3, w0, w1] = rates[..] else {
            anyhow::bail!("checkpoint: touch base rates of the wrong size");
        };
        Ok(Self {
            quantile_score,
            touch_score,
            base_rate: [r0, r1, r2, r3],
            base_weight: [w0, w1],
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn published_quantiles_are_what_the_scorer_scores() {
        let mut c = Calibrators::default();
        c.quantiles.multipliers[0] = -2.123_456_789_012_3;
        let mut f = Forecast {
            point: 100.0,
            lo80: 98.0,
            hi80: 102.0,
            lo95: 97.0,
            hi95: 103.0,
            ..Forecast::default()
        };
        let p = c.publish(&mut f);
        assert_eq!(f.quantiles, Some(p.quantiles(100.0)));
        let s = spread(100.0, 103.0).expect("spread");
        let exact = 100.0 * (-2.123_456_789_012_3 * s).exp();
        let q0 = f.quantiles.expect("set")[0];
        assert!((q0 - exact).abs() < 1e-7 * exact, "{q0} vs {exact}");
        let q = f.quantiles.expect("set");
        assert!(q.windows(2).all(|w| w[0] <= w[1]));
        assert_eq!(
            f.touch,
            Some(TouchCalibration {
                alpha: 0.0,
                beta: 1.0
            })
        );
        // Without a spread: the bands as quantiles.
        f.hi95 = 100.0;
        f.hi80 = 100.0;
        c.publish(&mut f);
        assert_eq!(
            f.quantiles,
            Some([97.0, 97.0, 98.0, 98.0, 100.0, 100.0, 100.0, 100.0, 100.0])
        );
    }
}
