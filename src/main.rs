//! `tickcast` — one binary for every process: wiring only (see the library crates).

mod backtest_cmd;
mod cli;
mod decode;
mod demo;
mod ingest_cmd;
mod reference;
mod replay_cmd;
mod train_cmd;

use anyhow::Result;
use clap::Parser as _;

#[tokio::main]
async fn main() -> Result<()> {
    tickcast_pipeline::telemetry::init_logging();
    let cli = cli::Cli::parse();
    cli::run(cli).await
}
