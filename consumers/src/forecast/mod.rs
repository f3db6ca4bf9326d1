//! Forecasting: one [`Forecaster`] trait, called once per batch of closed candles so that a
//! model can work on all symbols of a partition at once; and the forecast stage that turns
//! candles into [`Forecast`] messages for every model and horizon.
//!
//! Layout:
//! - [`naive`] — random walk with an EWMA-volatility interval.
//! - [`garch`] — GARCH(1,1) volatility: recursion, maximum-likelihood fit, multi-step variance.
//! - [`garch_model`] — the `garch` model: last close with GARCH(1,1) bands, refitted on a window.
//! - [`conformal`] — adaptive conformal inference for interval calibration.
//! - [`calibrated`] — wraps any model and calibrates its intervals online.
//! - [`score`] — scoring: MAE, RMSE, MASE, relative MAE, coverage, Winkler, pinball, direction.
//! - [`stage`] — the stage handler.

pub mod calibrated;
pub mod conformal;
pub mod garch;
pub mod garch_model;
pub mod naive;
pub mod score;
pub mod stage;

use tickcast_pipeline::domain::Candle;

/// z-scores of the central 80% and 95% normal intervals.
pub const Z80: f64 = 1.281_551_565_545;
pub const Z95: f64 = 1.959_963_984_540;

/// One model's forecast for one horizon.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Prediction {
    pub horizon: u32,
    pub point: f64,
    pub lo80: f64,
    pub hi80: f64,
    pub lo95: f64,
    pub hi95: f64,
}

/// A forecasting model over many series.
pub trait Forecaster: Send {
    /// Name written into each forecast's `model`.
    fn name(&self) -> &'static str;
    /// Folds each closed candle (in order; a series may appear more than once) into the model
    /// and returns, per candle, one prediction per horizon — or none while the series warms up.
    fn update(&mut self, candles: &[&Candle], horizons: &[u32]) -> Vec<Vec<Prediction>>;
}
