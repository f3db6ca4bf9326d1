//! The command line: [`Cli`] and its subcommands, one module each (named as the user types it,
//! `-` as `_`) with the subcommand's own flags and the function that runs it. Flag groups
//! several subcommands share are in [`crate::args`]; the subcommands do not use each other.

mod api;
mod backtest;
mod config_reference;
mod decode;
mod demo;
mod healthcheck;
mod ingest;
mod migrate;
mod replay;
mod run;
mod topics;
mod train;

use anyhow::Result;
use clap::{CommandFactory as _, Parser, Subcommand};

use crate::args::{DbArgs, KafkaArgs};

/// Live crypto trades → candles → calibrated forecasts.
#[derive(Debug, Parser)]
#[command(name = "tickcast", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Everything in one process: embedded broker, SQLite, simulated market, API.
    Demo(demo::DemoArgs),
    /// Run stream stages (candles, forecast, sink) against Kafka.
    Run(run::RunArgs),
    /// Stream an exchange's public trades into Kafka.
    Ingest(ingest::IngestArgs),
    /// Serve a local exchange simulator (any connector's protocol, REST backfill, faults).
    Replay(replay::ReplayArgs),
    /// Score the forecast models on a candle file, against the naive forecast.
    Backtest(backtest::BacktestArgs),
    /// Pre-train the LSTM forecaster on candle files and write its checkpoint.
    Train(train::TrainArgs),
    /// Serve the HTTP API.
    Api(api::ApiArgs),
    /// Apply database migrations and exit.
    Migrate(DbArgs),
    /// Decode raw exchange frames (one per line) into ticks as JSON lines.
    Decode(decode::DecodeArgs),
    /// Create the topics (if missing) and exit.
    Topics(KafkaArgs),
    /// GET a URL and exit 0 on a 2xx answer, 1 otherwise (for container health checks).
    Healthcheck(healthcheck::HealthcheckArgs),
    /// Print every subcommand's settings: flag, environment variable, default.
    ConfigReference(config_reference::ConfigReferenceArgs),
}

/// Runs the subcommand. An error ends the process with status 1 (`main`); `decode` exits with
/// its own status.
pub async fn dispatch(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Demo(args) => demo::run(args).await,
        Command::Run(args) => run::run(args).await,
        Command::Ingest(args) => ingest::run(args).await,
        Command::Replay(args) => replay::run(args).await,
        Command::Backtest(args) => backtest::run(args),
        Command::Train(args) => train::run(args),
        Command::Api(args) => api::run(args).await,
        Command::Decode(args) => decode::run(args),
        Command::Topics(kafka) => topics::run(kafka).await,
        Command::Healthcheck(args) => healthcheck::run(args).await,
        // The definition itself, not the one `main` filled with the `_FILE` secrets.
        Command::ConfigReference(args) => config_reference::run(args, &Cli::command()),
        Command::Migrate(db) => migrate::run(db).await,
    }
}
