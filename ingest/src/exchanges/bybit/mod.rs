//! Bybit v5 spot `publicTrade`: the `bybit` connector, its replay server, and its fixtures
//! (`fixtures/bybit*.jsonl`).

pub mod connector;
pub mod replay;
