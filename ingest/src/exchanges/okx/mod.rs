//! OKX v5 `trades`: the `okx` connector, its replay server, and its fixtures
//! (`fixtures/okx*.jsonl`).

pub mod connector;
pub mod replay;
