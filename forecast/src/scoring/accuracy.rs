//! Forecast scoring, the same maths for the streaming scorer and the backtest: absolute and
//! squared error, MASE (Hyndman: scaled by the series' in-sample one-step naive MAE), error
//! relative to the naive forecast on the same points, interval coverage, the Winkler interval
//! score, pinball loss over the interval quantiles, and directional accuracy.

/// One forecast and what happened.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Point {
    /// The realised value at the target time.
    pub actual: f64,
    /// The value when the forecast was made (for direction and the naive forecast).
    pub base: f64,
    pub point: f64,
    pub lo80: f64,
    pub hi80: f64,
    pub lo95: f64,
    pub hi95: f64,
}

impl Point {
    /// A published forecast, its actual not known yet (NaN).
    pub fn from_forecast(f: &tickcast_core::domain::Forecast) -> Self {
        Self {
            actual: f64::NAN,
            base: f.last,
            point: f.point,
            lo80: f.lo80,
            hi80: f.hi80,
            lo95: f.lo95,
            hi95: f.hi95,
        }
    }
}

/// Winkler (interval) score of a central `1 - alpha` interval: its width, plus `2/alpha` times
/// the distance by which the actual falls outside.
pub fn winkler(lo: f64, hi: f64, actual: f64, alpha: f64) -> f64 {
    let width = hi - lo;
    if actual < lo {
        width + 2.0 / alpha * (lo - actual)
    } else if actual > hi {
        width + 2.0 / alpha * (actual - hi)
    } else {
        width
    }
}

/// Pinball (quantile) loss of quantile forecast `q` at level `tau`.
pub fn pinball(q: f64, tau: f64, actual: f64) -> f64 {
    let d = actual - q;
    (tau * d).max((tau - 1.0) * d)
}

/// Running sums over scored points of one model, symbol and horizon. [`Score::add`] keeps plain
/// sums (the backtest); [`Score::add_decayed`] keeps exponentially weighted ones (the streaming
/// scorer's rolling window: effective length `1 / (1 − decay)`), with O(1) state.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Score {
    /// Points scored (not decayed).
    pub n: u64,
    /// Total weight of the sums (= n without decay).
    weight: f64,
    abs_err: f64,
    sq_err: f64,
    naive_abs_err: f64,
    naive_sq_err: f64,
    in80: f64,
    in95: f64,
    winkler95: f64,
    pinball: f64,
    direction_hits: f64,
    direction_n: f64,
}

/// Averages of a [`Score`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Summary {
    pub n: u64,
    pub mae: f64,
    pub rmse: f64,
    /// MAE ÷ the in-sample one-step naive MAE of the series.
    pub mase: f64,
    /// MAE ÷ the naive forecast's MAE on the same points (< 1: better than naive).
    pub rel_mae: f64,
    pub coverage80: f64,
    pub coverage95: f64,
    pub winkler95: f64,
    /// Mean pinball loss over the quantiles 0.025, 0.1, 0.5, 0.9, 0.975.
    pub pinball: f64,
    /// Share of points whose forecast moved the same way as the actual (points where either
    /// did not move are left out).
    pub directional_accuracy: f64,
}

impl Score {
    /// Number of f64 fields in a checkpoint of a score.
    const FIELDS: usize = 11;

    pub fn add(&mut self, p: &Point) {
        self.add_decayed(p, 1.0);
    }

    /// Multiplies every sum by `decay`, then adds the point with weight 1.
    pub fn add_decayed(&mut self, p: &Point, decay: f64) {
        let err = p.actual - p.point;
        let naive_err = p.actual - p.base;
        self.n += 1;
        for f in self.sums_mut() {
            *f *= decay;
        }
        self.weight += 1.0;
        self.abs_err += err.abs();
        self.sq_err += err * err;
        self.naive_abs_err += naive_err.abs();
        self.naive_sq_err += naive_err * naive_err;
        self.in80 += f64::from(u8::from(p.lo80 <= p.actual && p.actual <= p.hi80));
        self.in95 += f64::from(u8::from(p.lo95 <= p.actual && p.actual <= p.hi95));
        self.winkler95 += winkler(p.lo95, p.hi95, p.actual, 0.05);
        self.pinball += [
            (p.lo95, 0.025),
            (p.lo80, 0.1),
            (p.point, 0.5),
            (p.hi80, 0.9),
            (p.hi95, 0.975),
        ]
        .iter()
        .map(|(q, tau)| pinball(*q, *tau, p.actual))
        .sum::<f64>()
            / 5.0;
        let (said, went) = (p.point - p.base, p.actual - p.base);
        if said != 0.0 && went != 0.0 {
            self.direction_n += 1.0;
            self.direction_hits += f64::from(u8::from(said.signum() == went.signum()));
        }
    }

    fn sums_mut(&mut self) -> [&mut f64; Self::FIELDS] {
        [
            &mut self.weight,
            &mut self.abs_err,
            &mut self.sq_err,
            &mut self.naive_abs_err,
            &mut self.naive_sq_err,
            &mut self.in80,
            &mut self.in95,
            &mut self.winkler95,
            &mut self.pinball,
            &mut self.direction_hits,
            &mut self.direction_n,
        ]
    }

    /// Effective number of points in the sums (the count without decay; about the window
    /// length with it).
    pub fn effective_points(&self) -> f64 {
        self.weight
    }

    /// Mean squared error relative to the naive forecast's on the same points (< 1: better
    /// than naive); `None` before any point or when naive was exact on all of them.
    pub fn rel_mse(&self) -> Option<f64> {
        (self.n > 0 && self.naive_sq_err > 0.0).then(|| self.sq_err / self.naive_sq_err)
    }

    /// The mean 95% interval (Winkler) score; `None` before any point.
    pub fn winkler95(&self) -> Option<f64> {
        (self.n > 0 && self.weight > 0.0).then(|| self.winkler95 / self.weight)
    }

    /// Appends the score to a checkpoint.
    pub fn save(&self, e: &mut crate::checkpoint::Enc) {
        e.u64(self.n);
        let mut copy = *self;
        for f in copy.sums_mut() {
            e.f64(*f);
        }
    }

    /// Reads a score written by [`Score::save`].
    pub fn load(d: &mut crate::checkpoint::Dec<'_>) -> anyhow::Result<Self> {
        let mut s = Score {
            n: d.u64()?,
            ..Score::default()
        };
        for f in s.sums_mut() {
            *f = d.f64()?;
        }
        Ok(s)
    }

    /// Averages; `scale` is the series' in-sample one-step naive MAE (for MASE). `None` when
    /// nothing was scored.
    pub fn summary(&self, scale: f64) -> Option<Summary> {
        if self.n == 0 {
            return None;
        }
        let n = self.weight;
        let mae = self.abs_err / n;
        let ratio = |a: f64, b: f64| if b > 0.0 { a / b } else { f64::NAN };
        Some(Summary {
            n: self.n,
            mae,
            rmse: (self.sq_err / n).sqrt(),
            mase: ratio(mae, scale),
            rel_mae: ratio(self.abs_err, self.naive_abs_err),
            coverage80: self.in80 / n,
            coverage95: self.in95 / n,
            winkler95: self.winkler95 / n,
            pinball: self.pinball / n,
            directional_accuracy: ratio(self.direction_hits, self.direction_n),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    #[test]
    fn winkler_and_pinball_match_hand_computation() {
        assert!(close(winkler(10.0, 20.0, 15.0, 0.05), 10.0));
        assert!(close(winkler(10.0, 20.0, 8.0, 0.05), 10.0 + 40.0 * 2.0));
        assert!(close(winkler(10.0, 20.0, 21.0, 0.2), 10.0 + 10.0));
        assert!(close(pinball(10.0, 0.9, 12.0), 1.8));
        assert!(close(pinball(10.0, 0.9, 8.0), 0.2));
        assert!(close(pinball(10.0, 0.5, 7.0), 1.5));
    }

    #[test]
    fn summary_of_known_points() {
        let mut s = Score::default();
        // base 100 → actual 102: forecast 101 (right way), intervals both cover.
        s.add(&Point {
            actual: 102.0,
            base: 100.0,
            point: 101.0,
            lo80: 99.0,
            hi80: 103.0,
            lo95: 98.0,
            hi95: 104.0,
        });
        // base 100 → actual 96: forecast 101 (wrong way), 80% misses, 95% misses by 1.
        s.add(&Point {
            actual: 96.0,
            base: 100.0,
            point: 101.0,
            lo80: 99.0,
            hi80: 103.0,
            lo95: 97.0,
            hi95: 105.0,
        });
        let m = s.summary(2.0).expect("scored");
        assert_eq!(m.n, 2);
        assert!(close(m.mae, 3.0)); // (1 + 5) / 2
        assert!(close(m.rmse, (13.0f64).sqrt())); // sqrt((1 + 25) / 2)
        assert!(close(m.mase, 1.5)); // 3 / 2
        assert!(close(m.rel_mae, 1.0)); // naive errors 2 and 4: (1 + 5) / (2 + 4)
        assert!(close(m.coverage80, 0.5));
        assert!(close(m.coverage95, 0.5));
        assert!(close(m.winkler95, (6.0 + (8.0 + 40.0)) / 2.0));
        assert!(close(m.directional_accuracy, 0.5));
        assert_eq!(Score::default().summary(1.0), None);
    }
}
