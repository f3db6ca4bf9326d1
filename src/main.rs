//! `tickcast` — one binary for every process: wiring only (see the library crates).

mod backtest_cmd;
mod cli;
mod config_file;
mod decode;
mod demo;
mod ingest_cmd;
mod reference;
mod replay_cmd;
mod secrets;
mod train_cmd;

use anyhow::Result;
use clap::{CommandFactory as _, FromArgMatches as _};

#[tokio::main]
async fn main() -> Result<()> {
    tickcast_pipeline::telemetry::init_logging();
    // `X_FILE` variables (Docker and Kubernetes secrets) stand in for `X`.
    let matches = secrets::with_secret_files(cli::Cli::command())?.get_matches();
    let cli = cli::Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    cli::run(cli).await
}
