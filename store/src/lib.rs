//! Persistence: rows, not stages. The store is chosen at start-up from the database URL:
//! Postgres (`postgres://…`) or SQLite (`sqlite:…`, the embedded mode). [`open`] applies the
//! migrations in `migrations/<dialect>/`.
//!
//! Each client sees one trait:
//! - [`SinkStore`]: the sink stage's batches, offsets and retention (`sink.rs`);
//! - [`CheckpointStore`]: the forecast stage's checkpoints (`checkpoints.rs`);
//! - [`AlertStore`]: rules, events, the alert stage's state and the webhook outbox
//!   (`alerts.rs`);
//! - [`QueryStore`]: the API's reads (`queries.rs`).
//!
//! [`Store`] is all four, for code that hands the store around. Every method is written once,
//! over [`dialect::SqlStore`]; [`dialect::Dialect`] holds the few statements whose text differs,
//! and the sink's row writes, which [`postgres`] and [`sqlite`] do in their own ways.

mod alerts;
mod checkpoints;
pub mod dialect;
mod open;
pub mod postgres;
mod queries;
pub mod retention;
mod rows;
mod sink;
pub mod sqlite;

pub use alerts::{
    AlertCheckpoint, AlertEventQuery, AlertRuleRow, AlertSeriesState, AlertStore, DeliveryJob,
    DeliveryOutcome, DeliveryQuery, DeliveryRow, DeliveryStatus, SOURCE_API, SOURCE_FILE,
};
pub use checkpoints::{AccuracyRow, Checkpoint, CheckpointStore, SeriesCheckpoint};
pub use dialect::{ACQUIRE_TIMEOUT, Backend};
pub use open::{Store, open, open_waiting, unavailable};
pub use postgres::PgStore;
pub use queries::{AccuracyQuery, CandleQuery, ForecastQuery, QueryStore, SeriesInfo, clamp_limit};
pub use retention::RetentionReport;
pub use sink::{Pos, SinkBatch, SinkStore, WriteSummary};
pub use sqlite::SqliteStore;
