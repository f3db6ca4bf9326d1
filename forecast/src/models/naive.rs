//! The naive (random-walk) forecast: the next closes equal the last close. The interval comes
//! from an EWMA (RiskMetrics, λ = 0.94) of squared log returns, scaled by √h for horizon h, and
//! applied in log space so bounds stay positive.

use tickcast_core::domain::Candle;

use anyhow::Result;

use crate::checkpoint::{Dec, Enc};
use crate::{Forecaster, ModelVersion, Prediction, SeriesKey, SeriesMap, Z80, Z95, series_of};

/// Per-series state.
#[derive(Debug, Clone, Copy)]
struct Series {
    last_close: f64,
    variance: f64,
    returns: u32,
}

/// Random walk with EWMA volatility bands.
#[derive(Debug)]
pub struct Naive {
    lambda: f64,
    /// Returns needed before forecasting.
    min_returns: u32,
    series: SeriesMap<Series>,
}

impl Default for Naive {
    fn default() -> Self {
        Self {
            lambda: crate::RETURN_LAMBDA,
            min_returns: 1,
            series: SeriesMap::default(),
        }
    }
}

impl Naive {
    /// Forecasts for one series state.
    fn predict(s: &Series, horizons: &[u32]) -> impl Iterator<Item = Prediction> {
        horizons.iter().map(|&h| {
            let sd = (s.variance * f64::from(h)).sqrt();
            let band = |z: f64| {
                (
                    s.last_close * (-z * sd).exp(),
                    s.last_close * (z * sd).exp(),
                )
            };
            let ((lo80, hi80), (lo95, hi95)) = (band(Z80), band(Z95));
            Prediction {
                horizon: h,
                point: s.last_close,
                lo80,
                hi80,
                lo95,
                hi95,
            }
        })
    }
}

impl Forecaster for Naive {
    fn name(&self) -> &'static str {
        "naive"
    }

    fn version(&self) -> ModelVersion {
        ModelVersion::new(1, &(self.lambda, self.min_returns))
    }

    fn fold(&mut self, c: &Candle, horizons: &[u32], out: &mut Vec<Prediction>) {
        let close = c.close_f64();
        if !(close.is_finite() && close > 0.0) {
            return;
        }
        let s = match self.series.get_mut(series_of(c)) {
            None => {
                self.series.insert(
                    series_of(c),
                    Series {
                        last_close: close,
                        variance: 0.0,
                        returns: 0,
                    },
                );
                return;
            }
            Some(s) => s,
        };
        let r = (close / s.last_close).ln();
        s.variance = if s.returns == 0 {
            r * r
        } else {
            self.lambda * s.variance + (1.0 - self.lambda) * r * r
        };
        s.returns += 1;
        s.last_close = close;
        if s.returns >= self.min_returns {
            out.extend(Self::predict(s, horizons));
        }
    }

    fn prefetch(&self, candles: &[&Candle], i: usize) {
        self.series.prefetch_ahead(candles, i);
    }

    fn save_series(&self, key: &SeriesKey) -> Option<Vec<u8>> {
        let s = self.series.get(key)?;
        let mut e = Enc::new(1);
        e.f64(s.last_close).f64(s.variance).u32(s.returns);
        Some(e.finish())
    }

    fn reset_series(&mut self, key: &SeriesKey) {
        self.series.remove(key);
    }

    fn load_series(&mut self, key: &SeriesKey, bytes: &[u8]) -> Result<()> {
        let mut d = Dec::new(bytes, 1)?;
        let s = Series {
            last_close: d.f64()?,
            variance: d.f64()?,
            returns: d.u32()?,
        };
        d.end()?;
        self.series.insert(key, s);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal::Decimal;
    use tickcast_core::domain::SCHEMA_VERSION;

    fn candle(open_ms: i64, close: i64) -> Candle {
        let p = Decimal::new(close, 0);
        Candle {
            v: SCHEMA_VERSION,
            exchange: "binance".into(),
            symbol: "BTC-USDT".into(),
            interval: "1m".into(),
            open_ms,
            close_ms: open_ms + 60_000,
            open: p,
            high: p,
            low: p,
            close: p,
            volume: Decimal::ONE,
            trades: 1,
        }
    }

    #[test]
    fn warms_up_then_forecasts_last_close_with_sqrt_h_bands() {
        let mut m = Naive::default();
        let (a, b, c) = (candle(0, 100), candle(60_000, 110), candle(120_000, 99));
        let out = m.update(&[&a, &b, &c], &[1, 4]);
        assert!(out[0].is_empty(), "first candle only sets the level");
        let r1 = (110f64 / 100.0).ln();
        let p = out[1][0];
        assert_eq!(p.point, 110.0);
        assert!((p.hi95 - 110.0 * (Z95 * r1.abs()).exp()).abs() < 1e-9);
        assert!((p.lo80 - 110.0 * (-Z80 * r1.abs()).exp()).abs() < 1e-9);
        let r2 = (99f64 / 110.0).ln();
        let var = 0.94 * r1 * r1 + 0.06 * r2 * r2;
        let h4 = out[2][1];
        assert_eq!((h4.horizon, h4.point), (4, 99.0));
        assert!((h4.hi80 - 99.0 * (Z80 * (4.0 * var).sqrt()).exp()).abs() < 1e-9);
        assert!(h4.lo95 < h4.lo80 && h4.lo80 < h4.point && h4.point < h4.hi80 && h4.hi80 < h4.hi95);
    }
}
