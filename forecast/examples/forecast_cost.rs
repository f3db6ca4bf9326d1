//! The per-bar cost of one model over many symbols: every symbol gets one closed candle per
//! bar (one `update` call per bar with all symbols, as the forecast stage batches them), and
//! the time of the `update` calls is averaged over the measured bars after a warm-up.
//!
//! Symbol `i`'s closes are a real 1-minute file's closes from offset `i·7919` (wrapping), so
//! fits see real data. Prints one JSON line.
//!
//! `cargo run --release -p tickcast-consumers --example forecast_cost -- MODEL FILE
//!  [symbols=1000] [warm_bars] [measured_bars=240] [window] [refit_every]` with MODEL `trend`
//! or `ets`; window and refit default to the model's defaults, warm-up to the window.

use std::time::Instant;

use anyhow::{Context as _, Result, bail};
use rust_decimal::Decimal;
use rust_decimal::prelude::ToPrimitive as _;
use tickcast_core::domain::Candle;
use tickcast_core::interval::Interval;
use tickcast_forecast::Forecaster;
use tickcast_forecast::backtest::engine::{self as backtest, SeriesId};
use tickcast_forecast::models::ets::{EtsModel, EtsSettings};
use tickcast_forecast::models::trend::{TrendModel, TrendSettings};

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let (Some(name), Some(file)) = (args.get(1), args.get(2)) else {
        bail!("usage: forecast_cost trend|ets FILE [symbols] [warm] [measured] [window] [refit]");
    };
    let num = |i: usize| -> Result<Option<usize>> {
        args.get(i)
            .map(|a| a.parse::<usize>())
            .transpose()
            .map_err(Into::into)
    };
    let symbols = num(3)?.unwrap_or(1_000);
    let measured = num(5)?.unwrap_or(240);
    let (mut model, window): (Box<dyn Forecaster>, usize) = match name.as_str() {
        "trend" => {
            let mut s = TrendSettings::default();
            s.window = num(6)?.unwrap_or(s.window);
            s.refit_every = num(7)?.map_or(Ok(s.refit_every), u32::try_from)?;
            s.min_obs = s.min_obs.min(s.window);
            (Box::new(TrendModel::new(s)), s.window)
        }
        "ets" => {
            let mut s = EtsSettings::default();
            s.window = num(6)?.unwrap_or(s.window);
            s.refit_every = num(7)?.map_or(Ok(s.refit_every), u32::try_from)?;
            s.min_obs = s.min_obs.min(s.window);
            (Box::new(EtsModel::new(s)), s.window)
        }
        other => bail!("unknown model {other}"),
    };
    let warm = num(4)?.unwrap_or(window);

    let id = SeriesId {
        exchange: "binance".into(),
        symbol: "BTC-USDT".into(),
        interval: Interval::parse("1m").map_err(anyhow::Error::msg)?,
    };
    let closes: Vec<Decimal> = backtest::read_candles_csv(backtest::open(file.as_ref())?, &id)
        .with_context(|| format!("reading {file}"))?
        .into_iter()
        .map(|c| c.close)
        .collect();
    if closes.is_empty() {
        bail!("no candles in {file}");
    }
    let mut templates: Vec<Candle> = (0..symbols)
        .map(|i| Candle {
            v: tickcast_core::domain::SCHEMA_VERSION,
            exchange: "bench".into(),
            symbol: format!("S{i}-USDT"),
            interval: "1m".into(),
            open_ms: 0,
            close_ms: 60_000,
            open: Decimal::ONE,
            high: Decimal::ONE,
            low: Decimal::ONE,
            close: Decimal::ONE,
            volume: Decimal::ONE,
            trades: 1,
        })
        .collect();
    let horizons = [1, 5, 15, 60];
    let mut per_bar = Vec::with_capacity(measured);
    let mut forecasts = 0usize;
    for bar in 0..warm + measured {
        for (i, c) in templates.iter_mut().enumerate() {
            let close = closes[(i * 7_919 + bar) % closes.len()];
            c.open_ms = bar as i64 * 60_000;
            c.close_ms = c.open_ms + 60_000;
            (c.open, c.high, c.low, c.close) = (close, close, close, close);
        }
        let refs: Vec<&Candle> = templates.iter().collect();
        let started = Instant::now();
        let out = model.update(&refs, &horizons);
        let took = started.elapsed().as_secs_f64() * 1e3;
        if bar >= warm {
            per_bar.push(took);
            forecasts += out.iter().filter(|p| !p.is_empty()).count();
        }
    }
    let mean = per_bar.iter().sum::<f64>() / per_bar.len().max(1) as f64;
    let max = per_bar.iter().copied().fold(0.0, f64::max);
    let first = closes[0].to_f64().unwrap_or(f64::NAN);
    println!(
        "{}",
        serde_json::json!({
            "model": name,
            "symbols": symbols,
            "window": window,
            "warm_bars": warm,
            "measured_bars": measured,
            "mean_ms_per_bar": mean,
            "max_ms_per_bar": max,
            "symbols_with_forecasts_per_bar": forecasts as f64 / measured.max(1) as f64,
            "first_close": first,
        })
    );
    Ok(())
}
