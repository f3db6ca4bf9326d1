//! The `garch` model: the last close with GARCH(1,1) bands.
//!
//! - [`fit`] — GARCH(1,1) on log returns: the variance recursion and its maximum-likelihood fit.
//! - [`model`] — the [`crate::Forecaster`]: refitted on a rolling window, bands from the
//!   forecast variance over the horizon.

pub mod fit;
pub mod model;
