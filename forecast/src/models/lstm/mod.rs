//! The `lstm` forecaster of tickcast: an LSTM on scaled log returns and candle features that
//! outputs multi-horizon quantiles, written with burn 0.22 (no backend type parameter; the
//! device is chosen at run time: `flex` on the CPU, `wgpu` with the `wgpu` cargo feature).
//!
//! Layout:
//! - [`features`] — per-series inputs (returns scaled by an EWMA volatility, range, volume,
//!   volatility regime) and the training targets.
//! - [`net`] — the fused-gate LSTM cell, the quantile head, the pinball loss.
//! - [`host`] — the streaming step on the CPU without burn (one packed matmul per layer).
//! - [`host_train`] — the training gradient on the CPU: backpropagation through time by hand.
//! - [`batch`] — training batches: windows from the series' histories and their targets.
//! - [`train`] — one gradient step, Adam.
//! - [`background`] — the trainer thread whose weights are hot-swapped in.
//! - [`model`] — [`LstmModel`], the [`crate::Forecaster`].
//! - [`series`] — one series' state and its checkpoint.
//! - [`checkpoint`] — the model's checkpoint (burn record bytes + metadata).
//! - [`pretrain`] — training on a candle file (`tickcast train`).
//! - [`device`] — `flex`/`wgpu` selection with a probe and a fallback.

pub mod background;
pub mod batch;
pub mod checkpoint;
pub mod device;
pub mod features;
pub mod host;
pub mod host_train;
pub mod model;
pub mod net;
pub mod pretrain;
mod series;
pub mod train;

#[cfg(test)]
mod tests;

pub use device::DeviceChoice;
pub use model::{LstmModel, LstmSettings, Training};
