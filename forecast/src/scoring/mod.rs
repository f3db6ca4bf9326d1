//! Measuring and calibrating forecasts: the accuracy measures, the scorer that scores each
//! forecast when its target bar closes, online calibration of the intervals, and the published
//! quantiles and touch probabilities.

pub mod accuracy;
pub mod calibrated;
pub mod conformal;
pub mod distribution;
pub mod quantiles;
pub mod scorer;
pub mod touch;
