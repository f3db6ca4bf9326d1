//! Coinbase public trades: the `coinbase` (Advanced Trade `market_trades`) and
//! `coinbase-exchange` (Exchange feed `matches`) connectors, their replay servers, and their
//! fixtures (`fixtures/coinbase*.jsonl`).

pub mod connector;
pub mod replay;
