//! `tickcast backtest --data FILE`: a candle or trade file through the streaming code (trades
//! through the candles stage's builder, candles through the forecast stage), scored per model and
//! horizon against the naive forecast. The backtest itself is the library's
//! ([`tickcast_forecast::backtest`]); this reads the flags and prints.

use std::path::PathBuf;

use anyhow::{Result, anyhow};
use clap::Args;
use tickcast_core::interval::Interval;
use tickcast_forecast::backtest::{
    Backtest, Row, SeriesId, Settings, json_line, symbol_from_file_name,
};

#[derive(Debug, Args)]
pub struct BacktestArgs {
    /// CSV (plain or .gz) of candles (header naming ts_ms,open,high,low,close,volume) or of
    /// trades (trade_time_ms,trade_id,price,qty,is_buyer_maker), told apart by the header.
    #[arg(long)]
    pub data: PathBuf,
    /// Forecast horizons in bars.
    #[arg(long, value_delimiter = ',', default_value = "1,5,15,60")]
    pub horizons: Vec<u32>,
    /// Bar interval of a candle file, or the candles to build from a trade file.
    #[arg(long, default_value = "1m")]
    pub interval: String,
    /// Trade files: how late (event time, ms) a trade may come and still count in its window.
    #[arg(long, default_value_t = 0)]
    pub allowed_lateness_ms: i64,
    /// Canonical symbol (default: guessed from the file name).
    #[arg(long)]
    pub symbol: Option<String>,
    #[arg(long, default_value = "binance")]
    pub exchange: String,
    /// One JSON object per model and horizon, one per line.
    #[arg(long)]
    pub json: bool,
    /// Models to run (naive, garch, ets, trend, lstm, lstm=CHECKPOINT; the ensemble is added unless
    /// --no-ensemble).
    #[arg(long, value_delimiter = ',', default_value = tickcast_forecast::models::DEFAULT)]
    pub models: Vec<String>,
    /// Leave out the `ensemble` forecast.
    #[arg(long)]
    pub no_ensemble: bool,
    /// Score the models' own intervals, without online calibration.
    #[arg(long)]
    pub no_calibration: bool,
}

pub fn run(args: BacktestArgs) -> Result<()> {
    let interval = Interval::parse(&args.interval).map_err(|e| anyhow!("--interval: {e}"))?;
    let symbol = match &args.symbol {
        Some(s) => {
            tickcast_ingest::connectors::parse_canonical(s).map_err(|e| anyhow!("--symbol: {e}"))?
        }
        None => symbol_from_file_name(&args.data).ok_or_else(|| {
            anyhow!(
                "cannot tell the symbol from {}: pass --symbol",
                args.data.display()
            )
        })?,
    };
    let backtest = Backtest::new(Settings {
        series: SeriesId {
            exchange: args.exchange,
            symbol,
            interval,
        },
        allowed_lateness_ms: args.allowed_lateness_ms,
        horizons: args.horizons,
        models: args.models,
        ensemble: !args.no_ensemble,
        calibrate: !args.no_calibration,
    })?;
    let id = &backtest.settings().series;
    let started = std::time::Instant::now();
    let data = backtest.read(&args.data)?;
    let candles = data.candles;
    if let Some(s) = &data.stats {
        eprintln!(
            "backtest: {} trades → {} candles of {} ({} empty, {} duplicates, {} late, {} gaps \
             left unfilled, {} rows skipped as invalid)",
            data.trades,
            candles.len(),
            id.interval,
            s.empty_candles,
            s.duplicates,
            s.late_ticks,
            s.unfilled_gaps,
            s.rejected
        );
    }
    eprintln!(
        "backtest: {} candles of {} {} from {} ({:.1}s to read)",
        candles.len(),
        id.exchange,
        id.symbol,
        args.data.display(),
        started.elapsed().as_secs_f64()
    );
    let rows = backtest.score(&candles)?;
    if args.json {
        for r in &rows {
            println!("{}", json_line(r));
        }
    } else {
        print_table(&rows);
    }
    eprintln!("backtest: done in {:.1}s", started.elapsed().as_secs_f64());
    Ok(())
}

/// One line per model and horizon under a header, for a terminal.
fn print_table(rows: &[Row]) {
    println!(
        "{:<10} {:>4} {:>8} {:>10} {:>10} {:>7} {:>7} {:>6} {:>6} {:>10} {:>6} {:>9} {:>9}",
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
        "dir",
        "touch_rel",
        "touch_ece"
    );
    for r in rows {
        let s = &r.summary;
        let opt = |x: Option<f64>| x.map_or("—".to_string(), |x| format!("{x:.4}"));
        println!(
            "{:<10} {:>4} {:>8} {:>10.4} {:>10.4} {:>7.3} {:>7.3} {:>6.3} {:>6.3} {:>10.3} {:>6.3} {:>9} {:>9}",
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
            s.directional_accuracy,
            opt(r.touch.brier_rel()),
            opt(r.touch.ece())
        );
    }
}
