//! `tickcast` — one binary for every process: wiring only (see the library crates).
//!
//! Parses the command line ([`cmd::Cli`]) and runs the subcommand ([`cmd::dispatch`]). Exit
//! status: 0 on success, 1 on an error (printed by `main`'s `Result`), 2 on a usage error
//! (clap's); `tickcast decode` documents its own.

mod args;
mod cmd;
mod config;
mod signals;

use anyhow::Result;
use clap::{CommandFactory as _, FromArgMatches as _};

#[tokio::main]
async fn main() -> Result<()> {
    tickcast_core::telemetry::init_logging();
    // `X_FILE` variables (Docker and Kubernetes secrets) stand in for `X`.
    let matches = config::secret_files::with_secret_files(cmd::Cli::command())?.get_matches();
    let cli = cmd::Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    cmd::dispatch(cli).await
}
