//! Trades in: exchange websocket feeds to `tickcast.ticks.v1`, and the local exchange that
//! serves a seeded market in every exchange's protocol for tests and the demo.
//!
//! Layout:
//! - [`exchanges`] — one folder per exchange (connector, replay server, fixtures) and the one
//!   table that names them.
//! - [`connectors`] — the `Connector` trait every exchange implements, and its parsing helpers.
//! - [`feed`] — the feed session loop: connections, de-duplication, gap filling, publishing.
//! - [`simulator`], [`replay`] — the seeded market and the local exchange that serves it.

pub mod connectors;
pub mod exchanges;
pub mod feed;
pub mod replay;
pub mod simulator;
