//! Helpers for the tests and benchmarks of every model, in this crate and others (the
//! `test-support` feature): the checkpoint contract ([`check_resume`]) and seeded candles.

use anyhow::Result;
use tickcast_core::domain::Candle;

use super::{Forecaster, SeriesKey, series_key};

/// Checks the checkpoint contract of a model: run `candles` through one instance without a
/// break, and through a second that is checkpointed after `split` candles and restored into a
/// fresh instance (shared parameters too); every later prediction must be identical.
/// For tests of every model, including those in other crates.
pub fn check_resume(
    make: &dyn Fn() -> Box<dyn Forecaster>,
    candles: &[Candle],
    split: usize,
    horizons: &[u32],
) -> Result<()> {
    let refs: Vec<&Candle> = candles.iter().collect();
    let mut whole = make();
    let expected = whole.update(&refs, horizons);

    let mut first = make();
    first.update(&refs[..split], horizons);
    let mut resumed = make();
    if let Some(bytes) = first.save_model() {
        resumed.load_model(&bytes)?;
    }
    let mut keys: Vec<SeriesKey> = refs[..split].iter().map(|c| series_key(c)).collect();
    keys.sort();
    keys.dedup();
    for k in &keys {
        if let Some(bytes) = first.save_series(k) {
            resumed.load_series(k, &bytes)?;
        }
    }
    let got = resumed.update(&refs[split..], horizons);
    for (i, (g, e)) in got.iter().zip(&expected[split..]).enumerate() {
        if g != e {
            anyhow::bail!(
                "{}: candle {} after the restore differs:\n  resumed {g:?}\n  whole   {e:?}",
                whole.name(),
                split + i
            );
        }
    }
    if got.iter().all(Vec::is_empty) {
        anyhow::bail!(
            "{}: no predictions after the split to compare",
            whole.name()
        );
    }
    Ok(())
}

/// A 1-minute BTC-USDT candle of exchange `x` for bar `i` (open time `i` minutes) whose open,
/// high, low and close are all `price`, for tests and benchmarks.
pub fn flat_candle(i: usize, price: rust_decimal::Decimal) -> Candle {
    Candle {
        v: tickcast_core::domain::SCHEMA_VERSION,
        exchange: "x".into(),
        symbol: "BTC-USDT".into(),
        interval: "1m".into(),
        open_ms: i as i64 * 60_000,
        close_ms: (i as i64 + 1) * 60_000,
        open: price,
        high: price,
        low: price,
        close: price,
        volume: rust_decimal::Decimal::ONE,
        trades: 1,
    }
}

/// A seeded fat-tailed random walk of 1-minute candles for each symbol, interleaved in time
/// order (all symbols' bar `i`, then bar `i + 1`), for tests and benchmarks: 90% of log returns
/// have sd 0.1%, 10% have sd 0.6%, so volatility bands have something to learn.
pub fn synthetic_candles(symbols: &[&str], bars: usize, seed: u64) -> Vec<Candle> {
    use rust_decimal::Decimal;
    use tickcast_core::domain::SCHEMA_VERSION;
    let mut rng = tickcast_core::rng::Rng::new(seed);
    let mut prices: Vec<f64> = (0..symbols.len()).map(|i| 100.0 * (i + 1) as f64).collect();
    let mut out = Vec::with_capacity(symbols.len() * bars);
    for i in 0..bars {
        for (sym, price) in symbols.iter().zip(prices.iter_mut()) {
            let open = *price;
            let sd = if rng.unit() < 0.1 { 0.006 } else { 0.001 };
            *price *= (sd * rng.normal()).exp();
            let d = |x: f64| Decimal::new((x * 10_000.0).round() as i64, 4);
            let wiggle = sd * rng.unit();
            out.push(Candle {
                v: SCHEMA_VERSION,
                exchange: "sim".into(),
                symbol: (*sym).into(),
                interval: "1m".into(),
                open_ms: i as i64 * 60_000,
                close_ms: (i as i64 + 1) * 60_000,
                open: d(open),
                high: d(open.max(*price) * (1.0 + wiggle)),
                low: d(open.min(*price) * (1.0 - wiggle)),
                close: d(*price),
                volume: Decimal::new(1 + (rng.unit() * 1000.0) as i64, 3),
                trades: 1 + (rng.unit() * 50.0) as u64,
            });
        }
    }
    out
}
