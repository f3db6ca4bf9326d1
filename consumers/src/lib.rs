//! The stages that do work on the stream: forecasting, the sink, and the store they share.
//!
//! Layout:
//! - [`alerts`] — alert rules, state machines, the alert stage and webhook delivery.
//! - [`backtest`] — candle files through the streaming forecast code, scored against naive.
//! - [`forecast`] — the `Forecaster` trait, models, scoring, calibration, and the forecast stage.
//! - [`sink`] — topics → store, batch and offsets in one transaction.
//! - [`store`] — the `Store` trait with Postgres and SQLite implementations.

pub mod alerts;
pub mod backtest;
pub mod forecast;
pub mod sink;
pub mod store;
