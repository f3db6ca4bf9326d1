//! `tickcast train --data FILE --out model.ckpt`: pre-trains the `lstm` model on candle files
//! and writes its checkpoint (burn record bytes + metadata), for `LstmSettings::init` or
//! `tickcast backtest --models lstm=model.ckpt`. Progress goes to stderr, one line per epoch.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context as _, Result, anyhow, bail};
use clap::Args;
use tickcast_core::interval::Interval;
use tickcast_forecast::Forecaster as _;
use tickcast_forecast::backtest::engine::{self as backtest, SeriesId};
use tickcast_forecast::models::lstm::pretrain::{PretrainSettings, pretrain};
use tickcast_forecast::models::lstm::{DeviceChoice, LstmModel, LstmSettings, Training};

#[derive(Debug, Args)]
pub struct TrainArgs {
    /// Candle CSV files (plain or .gz) with a header naming ts_ms,open,high,low,close,volume.
    #[arg(long, value_delimiter = ',', required = true)]
    pub data: Vec<PathBuf>,
    /// Where to write the checkpoint.
    #[arg(long)]
    pub out: PathBuf,
    /// Passes over the training bars.
    #[arg(long, default_value_t = 5)]
    pub epochs: usize,
    /// flex (CPU) or wgpu (GPU: needs a build with the `wgpu` feature; falls back to flex with
    /// a warning without it or without a working adapter).
    #[arg(long, default_value = "flex")]
    pub device: DeviceChoice,
    /// Hidden size of the LSTM.
    #[arg(long, default_value_t = 32)]
    pub hidden: usize,
    /// Sequences per gradient step.
    #[arg(long, default_value_t = 64)]
    pub batch: usize,
    /// Fraction of each file (its latest bars) held out for the validation loss.
    #[arg(long, default_value_t = 0.1)]
    pub holdout: f64,
    /// Start from this checkpoint instead of fresh weights.
    #[arg(long)]
    pub init: Option<PathBuf>,
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Bar interval of the files.
    #[arg(long, default_value = "1m")]
    pub interval: String,
    #[arg(long, default_value = "binance")]
    pub exchange: String,
}

pub fn run(args: TrainArgs) -> Result<()> {
    if args.epochs == 0 {
        bail!("--epochs must be ≥ 1");
    }
    let interval = Interval::parse(&args.interval).map_err(|e| anyhow!("--interval: {e}"))?;
    let started = Instant::now();
    let mut candles = Vec::new();
    for path in &args.data {
        let symbol = backtest::symbol_from_file_name(path)
            .ok_or_else(|| anyhow!("cannot tell the symbol from {}", path.display()))?;
        let id = SeriesId {
            exchange: args.exchange.clone(),
            symbol,
            interval,
        };
        let mut c = backtest::read_candles_csv(backtest::open(path)?, &id)
            .with_context(|| format!("reading {}", path.display()))?;
        eprintln!(
            "train: {} candles of {} from {}",
            c.len(),
            id.symbol,
            path.display()
        );
        candles.append(&mut c);
    }
    let mut settings = LstmSettings {
        hidden: args.hidden,
        training: Training::Off,
        device: args.device,
        init: args.init.clone(),
        seed: args.seed,
        ..LstmSettings::default()
    };
    settings.batch.batch = args.batch;
    let mut model = LstmModel::new(settings)?;
    let ps = PretrainSettings {
        epochs: args.epochs,
        holdout: args.holdout,
        ..PretrainSettings::default()
    };
    let epochs = args.epochs;
    pretrain(&mut model, &candles, &ps, &mut |r| {
        let valid = r
            .valid_loss
            .map_or_else(|| "-".to_string(), |v| format!("{v:.5}"));
        eprintln!(
            "train: epoch {}/{epochs}: {} steps, train loss {:.5}, valid loss {valid}, {:.1}s",
            r.epoch, r.steps, r.train_loss, r.seconds
        );
    })?;
    let bytes = model
        .save_model()
        .ok_or_else(|| anyhow!("the model produced no checkpoint"))?;
    std::fs::write(&args.out, &bytes).with_context(|| format!("writing {}", args.out.display()))?;
    eprintln!(
        "train: {} gradient steps; wrote {} ({} bytes) in {:.1}s",
        model.training_steps(),
        args.out.display(),
        bytes.len(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
