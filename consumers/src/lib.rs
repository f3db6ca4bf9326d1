//! The stages that do work on the stream: forecasting, the sink, and the store they share.
//!
//! Layout:
//! - [`forecast`] — the `Forecaster` trait, models, and the forecast stage.
//! - [`sink`] — topics → store, batch and offsets in one transaction.
//! - [`store`] — the `Store` trait with Postgres and SQLite implementations.

pub mod forecast;
pub mod sink;
pub mod store;
