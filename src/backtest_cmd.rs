//! `tickcast backtest --data FILE`: a candle file through the streaming forecast code, scored
//! per model and horizon against the naive forecast (see `tickcast_consumers::backtest`).

use std::path::PathBuf;

use anyhow::{Context as _, Result, anyhow};
use clap::Args;
use tickcast_consumers::backtest::{self, SeriesId};
use tickcast_consumers::forecast::Forecaster;
use tickcast_consumers::forecast::calibrated::{Calibrated, CalibrationSettings};
use tickcast_consumers::forecast::garch_model::{GarchModel, GarchSettings};
use tickcast_consumers::forecast::naive::Naive;
use tickcast_lstm::{LstmModel, LstmSettings};
use tickcast_pipeline::interval::Interval;

#[derive(Debug, Args)]
pub struct BacktestArgs {
    /// Candle CSV (plain or .gz) with a header naming ts_ms,open,high,low,close,volume.
    #[arg(long)]
    pub data: PathBuf,
    /// Forecast horizons in bars.
    #[arg(long, value_delimiter = ',', default_value = "1,5,15,60")]
    pub horizons: Vec<u32>,
    /// Bar interval of the file.
    #[arg(long, default_value = "1m")]
    pub interval: String,
    /// Canonical symbol (default: guessed from the file name).
    #[arg(long)]
    pub symbol: Option<String>,
    #[arg(long, default_value = "binance")]
    pub exchange: String,
    /// One JSON object per model and horizon, one per line.
    #[arg(long)]
    pub json: bool,
    /// Models to run (naive, garch, lstm, lstm=CHECKPOINT).
    #[arg(long, value_delimiter = ',', default_value = "naive,garch")]
    pub models: Vec<String>,
    /// Score the models' own intervals, without online calibration.
    #[arg(long)]
    pub no_calibration: bool,
}

/// A model by name.
fn model(name: &str) -> Result<Box<dyn Forecaster>> {
    match name.trim() {
        "naive" => Ok(Box::new(Naive::default())),
        "garch" => Ok(Box::new(GarchModel::new(GarchSettings::default()))),
        // Trains inline (reproducible); `lstm=FILE` starts from a `tickcast train` checkpoint.
        "lstm" => Ok(Box::new(LstmModel::new(LstmSettings::default())?)),
        other => match other.strip_prefix("lstm=") {
            Some(path) => Ok(Box::new(LstmModel::new(LstmSettings {
                init: Some(PathBuf::from(path)),
                ..LstmSettings::default()
            })?)),
            None => Err(anyhow!(
                "unknown model `{other}`; known: naive, garch, lstm[=CHECKPOINT]"
            )),
        },
    }
}

pub fn run(args: BacktestArgs) -> Result<()> {
    let interval = Interval::parse(&args.interval).map_err(|e| anyhow!("--interval: {e}"))?;
    let symbol = match &args.symbol {
        Some(s) => tickcast_pipeline::connectors::parse_canonical(s)
            .map_err(|e| anyhow!("--symbol: {e}"))?,
        None => backtest::symbol_from_file_name(&args.data).ok_or_else(|| {
            anyhow!(
                "cannot tell the symbol from {}: pass --symbol",
                args.data.display()
            )
        })?,
    };
    if args.horizons.is_empty() || args.horizons.contains(&0) {
        return Err(anyhow!("--horizons must be bar counts ≥ 1"));
    }
    for m in &args.models {
        model(m)?;
    }
    let id = SeriesId {
        exchange: args.exchange.clone(),
        symbol,
        interval,
    };
    let started = std::time::Instant::now();
    let candles = backtest::read_candles_csv(backtest::open(&args.data)?, &id)
        .with_context(|| format!("reading {}", args.data.display()))?;
    eprintln!(
        "backtest: {} candles of {} {} from {} ({:.1}s to read)",
        candles.len(),
        id.exchange,
        id.symbol,
        args.data.display(),
        started.elapsed().as_secs_f64()
    );
    let calibrate = !args.no_calibration;
    let names = args.models.clone();
    let models = || {
        names
            .iter()
            .filter_map(|n| model(n).ok())
            .map(|m| {
                if calibrate {
                    Box::new(Calibrated::new(m, CalibrationSettings::default()))
                        as Box<dyn Forecaster>
                } else {
                    m
                }
            })
            .collect::<Vec<_>>()
    };
    let rows = backtest::run(&candles, &args.horizons, &models)?;
    if args.json {
        for r in &rows {
            println!("{}", backtest::json_line(r));
        }
    } else {
        println!(
            "{:<10} {:>4} {:>8} {:>10} {:>10} {:>7} {:>7} {:>6} {:>6} {:>10} {:>6}",
            "model",
            "h",
            "n",
            "mae",
            "rmse",
            "mase",
            "rel_mae",
            "cov80",
            "cov95",
            "winkler95",
            "dir"
        );
        for r in &rows {
            let s = &r.summary;
            println!(
                "{:<10} {:>4} {:>8} {:>10.4} {:>10.4} {:>7.3} {:>7.3} {:>6.3} {:>6.3} {:>10.3} {:>6.3}",
                r.model,
                r.horizon,
                s.n,
                s.mae,
                s.rmse,
                s.mase,
                s.rel_mae,
                s.coverage80,
                s.coverage95,
                s.winkler95,
                s.directional_accuracy
            );
        }
    }
    eprintln!("backtest: done in {:.1}s", started.elapsed().as_secs_f64());
    Ok(())
}
