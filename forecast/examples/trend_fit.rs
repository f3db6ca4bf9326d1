//! Fits the `trend` model's MAP on the first `n` closes of a CSV (header with `ts_ms` and
//! `close`) and prints one JSON object: the fit time (from scratch, design included, and with
//! the design shared as the streaming model shares it), the fitted trend in log price over
//! the window, and the forecast of the next `horizon` closes. Used by `scripts/bench-trend.sh`
//! against Python Prophet.
//!
//! `cargo run --release -p tickcast-consumers --example trend_fit -- FILE [n] [horizon] [reps]`

use std::hint::black_box;
use std::time::Instant;

use anyhow::{Context as _, Result, bail};
use tickcast_forecast::models::trend::design::{Design, FitSettings, Layout};
use tickcast_forecast::models::trend::fit::fit;

fn read_closes(path: &str) -> Result<Vec<f64>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {path}"))?;
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().context("empty file")?.split(',').collect();
    let col = header
        .iter()
        .position(|h| h.trim() == "close")
        .context("no `close` column")?;
    lines
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let field = l.split(',').nth(col).context("short row")?;
            Ok(field.trim().parse::<f64>()?)
        })
        .collect()
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let Some(path) = args.get(1) else {
        bail!("usage: trend_fit FILE [n=1440] [horizon=60] [reps=200]");
    };
    let arg = |i: usize, default: usize| -> Result<usize> {
        args.get(i).map_or(Ok(default), |a| Ok(a.parse()?))
    };
    let (n, horizon, reps) = (arg(2, 1_440)?, arg(3, 60)?, arg(4, 200)?.max(1));
    let closes = read_closes(path)?;
    if closes.len() < n || closes.iter().any(|c| *c <= 0.0) {
        bail!("need {n} positive closes, got {}", closes.len());
    }
    let y: Vec<f64> = closes[..n].iter().map(|c| c.ln()).collect();
    let settings = FitSettings::default();

    // From scratch: layout, design and Gram matrix, then the MAP fit.
    let started = Instant::now();
    let mut result = None;
    for _ in 0..reps {
        let layout = Layout::new(n, &settings).context("window too short")?;
        let design = Design::new(black_box(layout));
        result = black_box(fit(&design, black_box(&y), &settings, None));
    }
    let cold_ms = started.elapsed().as_secs_f64() * 1e3 / reps as f64;
    let f = result.context("fit failed")?;

    // With the design shared (the streaming model keeps one per window length).
    let design = Design::new(Layout::new(n, &settings).context("window too short")?);
    let started = Instant::now();
    for _ in 0..reps {
        black_box(fit(&design, black_box(&y), &settings, None));
    }
    let shared_ms = started.elapsed().as_secs_f64() * 1e3 / reps as f64;
    // Warm-started from the fit itself (a refit whose window did not move), the floor.
    let started = Instant::now();
    for _ in 0..reps {
        black_box(fit(&design, black_box(&y), &settings, Some(&f.coef)));
    }
    let warm_ms = started.elapsed().as_secs_f64() * 1e3 / reps as f64;

    let end = (n - 1) as f64;
    let trend: Vec<f64> = (0..n).map(|i| f.trend(i as f64)).collect();
    let fitted: Vec<f64> = (0..n).map(|i| f.value(i as f64)).collect();
    let forecast: Vec<f64> = (1..=horizon)
        .map(|h| f.value(end + h as f64).exp())
        .collect();
    let nonzero = f.deltas().iter().filter(|d| **d != 0.0).count();
    let out = serde_json::json!({
        "n": n,
        "reps": reps,
        "fit_ms_cold": cold_ms,
        "fit_ms_shared_design": shared_ms,
        "fit_ms_warm": warm_ms,
        "sigma_log": f.sigma * f.y_scale,
        "changepoints": f.deltas().len(),
        "nonzero_deltas": nonzero,
        "coef_scaled": f.coef,
        "sigma_scaled": f.sigma,
        "y_min": f.y_min,
        "y_scale": f.y_scale,
        "fourier_orders": f.layout.orders,
        "trend_log": trend,
        "fitted_log": fitted,
        "forecast": forecast,
    });
    println!("{out}");
    Ok(())
}
