//! Bitstamp `live_trades`: the `bitstamp` connector, its replay server, and its fixtures
//! (`fixtures/bitstamp*.jsonl`).

pub mod connector;
pub mod replay;
