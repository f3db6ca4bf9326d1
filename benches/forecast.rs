//! The forecast stage's cost per closed bar: one bar of 1,000 symbols (one candle each) through
//! every model, the online calibration, the ensemble and the scorer — exactly the stage's code
//! — on one core. Before timing, each series is warmed past every model's warm-up.
//!
//! Reported: mean and worst time per bar over `BARS` consecutive bars (the mean includes the
//! periodic model refits), and, as the baseline in the same run, the same bars through the
//! naive model alone. Target (issue 4): ≤ 20 ms per bar with all models. Apart, not in those
//! figures: what turning each bar's forecasts into the records the stage sends to Kafka costs
//! (`forecast::stage::records`: the checks, the key and the JSON message of each).
//!
//! `scripts/bench-forecast.sh` runs this in release; or
//! `cargo bench --bench forecast -- [SYMBOLS] [MODELS]`.

#![allow(clippy::unwrap_used)]

use std::time::Instant;

use tickcast_core::domain::Candle;
use tickcast_forecast::stage::records;
use tickcast_forecast::testing::synthetic_candles;

const WARM_BARS: usize = 760;
const BARS: usize = 360;
const HORIZONS: [u32; 4] = [1, 5, 15, 60];

struct Run {
    mean_ms: f64,
    p50_ms: f64,
    max_ms: f64,
    forecasts_per_bar: f64,
    /// Mean ms per bar to turn the bar's forecasts into the records the stage sends
    /// ([`records`]: checks, key and JSON message each, latency histogram); not in `mean_ms`.
    send_ms: f64,
}

fn run(models: &str, candles: &[Candle], symbols: usize, ensemble: bool) -> Run {
    let names: Vec<String> = models.split(',').map(String::from).collect();
    let mut stage = tickcast_forecast::models::stage(
        &names,
        &HORIZONS,
        ensemble,
        true,
        Default::default(),
        "bench",
    )
    .unwrap();
    let bars: Vec<Vec<&Candle>> = candles
        .chunks(symbols)
        .map(|bar| bar.iter().collect())
        .collect();
    let warm = Instant::now();
    for bar in &bars[..WARM_BARS] {
        stage.forecasts(bar);
    }
    eprintln!(
        "  {models}{}: warm-up {WARM_BARS} bars in {:.1}s",
        if ensemble { "+ensemble" } else { "" },
        warm.elapsed().as_secs_f64()
    );
    let mut times = Vec::with_capacity(BARS);
    let mut forecasts = 0usize;
    let mut send_ms = 0.0;
    for bar in &bars[WARM_BARS..WARM_BARS + BARS] {
        let t = Instant::now();
        let out = stage.forecasts(bar);
        times.push(t.elapsed().as_secs_f64() * 1e3);
        let n = out.len();
        forecasts += n;
        // What the handler then does with them: checks, keys, encodes, latency histogram.
        let t = Instant::now();
        let records = records("forecasts", out, tickcast_core::now_ms());
        send_ms += t.elapsed().as_secs_f64() * 1e3;
        assert_eq!(records.len(), n);
        std::hint::black_box(records);
    }
    let mean_ms = times.iter().sum::<f64>() / times.len() as f64;
    let max_ms = times.iter().copied().fold(0.0, f64::max);
    times.sort_by(f64::total_cmp);
    Run {
        mean_ms,
        p50_ms: times[times.len() / 2],
        max_ms,
        forecasts_per_bar: forecasts as f64 / BARS as f64,
        send_ms: send_ms / BARS as f64,
    }
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let symbols: usize = args.first().and_then(|s| s.parse().ok()).unwrap_or(1_000);
    let models = args
        .get(1)
        .cloned()
        .unwrap_or_else(|| tickcast_forecast::models::KNOWN.join(","));
    let names: Vec<String> = (0..symbols).map(|i| format!("S{i}-USDT")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    eprintln!(
        "forecast stage bench: {symbols} symbols, horizons {HORIZONS:?}, {WARM_BARS} warm-up bars, {BARS} timed bars"
    );
    let candles = synthetic_candles(&refs, WARM_BARS + BARS, 3);
    let base = run("naive", &candles, symbols, false);
    let all = run(&models, &candles, symbols, true);
    println!("| models | ms/bar mean | p50 | worst | forecasts/bar | sending them, ms/bar |");
    println!("|---|---:|---:|---:|---:|---:|");
    for (name, r) in [
        ("naive (baseline)", &base),
        (&*format!("{models} + ensemble"), &all),
    ] {
        println!(
            "| {name} | {:.2} | {:.2} | {:.2} | {:.0} | {:.2} |",
            r.mean_ms, r.p50_ms, r.max_ms, r.forecasts_per_bar, r.send_ms
        );
    }
    println!(
        "\nall models cost {:.1}× naive alone; {:.1} µs per symbol per bar (target ≤ 20 ms per bar of 1,000 symbols: {})",
        all.mean_ms / base.mean_ms,
        all.mean_ms * 1e3 / symbols as f64,
        if all.mean_ms <= 20.0 * symbols as f64 / 1_000.0 {
            "met"
        } else {
            "NOT met"
        }
    );
}
