//! Binance spot public trades: the `binance` (`@trade`) and `binance-agg` (`@aggTrade`)
//! connectors, their replay server, and their fixtures (`fixtures/binance*.jsonl`).

pub mod connector;
pub mod replay;
