//! Kraken spot WebSocket v2 `trade`: the `kraken` connector, its replay server, and its
//! fixtures (`fixtures/kraken*.jsonl`).

pub mod connector;
pub mod replay;
