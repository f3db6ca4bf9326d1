//! Backtest: replays a candle file through exactly the streaming forecast code
//! ([`ForecastStage::forecasts`], one closed candle at a time) and scores every forecast when the
//! candle at its target time closes, per model and horizon, against the naive forecast on the
//! same points ([`crate::scoring::accuracy`]). Gaps are never bridged: after a missing bar the
//! models restart and forecasts that pointed across the gap are dropped.
//!
//! Input: CSV (plain or gzip) with a header, told apart by its columns ([`read_data`]):
//! - candles: at least `ts_ms,open,high,low,close,volume` (`ts_ms` = bar open time, epoch ms;
//!   other columns ignored), as in `../shared/data/candles_1m/`;
//! - trades: at least `trade_time_ms,trade_id,price,qty,is_buyer_maker`, as in
//!   `../shared/data/trades/`. Trades become ticks and go through the candles stage's own
//!   [`CandleBuilder`] (event-time windows, de-duplication, late ticks, explicit empty windows)
//!   at the series' interval, so the backtest sees exactly the candles the stream would publish.
//!   The window open when the file ends is never closed by a watermark, so it is not emitted.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Lines, Read};
use std::path::Path;

use anyhow::{Context as _, Result, anyhow, bail};
use tickcast_candles::{CandleBuilder, CandleOptions, CandleStats, Pushed};
use tickcast_core::codec::Message as _;
use tickcast_core::domain::{Candle, Name, SCHEMA_VERSION, Side, Tick, decimal_text};
use tickcast_core::interval::Interval;

use crate::scoring::accuracy::{Point, Score, Summary};
use crate::scoring::quantiles::{QuantileScore, crps};
use crate::scoring::touch::{BaseRate, TouchCalibrator, TouchScore, drift_and_spread};
use crate::stage::ForecastStage;

/// Which series a candle file holds.
#[derive(Debug, Clone)]
pub struct SeriesId {
    pub exchange: String,
    pub symbol: String,
    pub interval: Interval,
}

/// Opens a file, gunzipping `.gz`.
pub fn open(path: &Path) -> Result<Box<dyn Read>> {
    let f = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    Ok(if path.extension().is_some_and(|e| e == "gz") {
        Box::new(flate2::read::MultiGzDecoder::new(f))
    } else {
        Box::new(f)
    })
}

/// What a CSV file holds, told by its header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataKind {
    Candles,
    Trades,
}

const CANDLE_COLUMNS: [&str; 6] = ["ts_ms", "open", "high", "low", "close", "volume"];
const TRADE_COLUMNS: [&str; 5] = [
    "trade_time_ms",
    "trade_id",
    "price",
    "qty",
    "is_buyer_maker",
];

/// Candles from a data file, and, for a trade file, what the candles stage did with the trades.
#[derive(Debug, Clone)]
pub struct Data {
    pub kind: DataKind,
    pub candles: Vec<Candle>,
    /// Trade rows read (0 for a candle file).
    pub trades: u64,
    /// The candle builder's counts (trade files only).
    pub stats: Option<CandleStats>,
}

type CsvLines = Lines<BufReader<Box<dyn Read>>>;

/// The header's columns, and the index of each of `names` in it.
fn columns(header: &str, names: &[&str]) -> Result<Vec<usize>> {
    let cols: Vec<&str> = header.trim().split(',').map(str::trim).collect();
    names
        .iter()
        .map(|name| {
            cols.iter()
                .position(|c| c == name)
                .ok_or_else(|| anyhow!("no `{name}` column in header `{}`", header.trim()))
        })
        .collect()
}

/// Which kind of file a header starts: trades when it names every trade column, else candles.
pub fn detect(header: &str) -> DataKind {
    if columns(header, &TRADE_COLUMNS).is_ok() {
        DataKind::Trades
    } else {
        DataKind::Candles
    }
}

/// Reads a candle or a trade file (see the module doc); trades are windowed at `id.interval`
/// with `allowed_lateness_ms`.
pub fn read_data(input: Box<dyn Read>, id: &SeriesId, allowed_lateness_ms: i64) -> Result<Data> {
    let mut lines = BufReader::new(input).lines();
    let header = lines.next().context("empty file: no header")??;
    match detect(&header) {
        DataKind::Candles => Ok(Data {
            kind: DataKind::Candles,
            candles: candles_from_lines(&header, lines, id)?,
            trades: 0,
            stats: None,
        }),
        DataKind::Trades => trades_from_lines(&header, lines, id, allowed_lateness_ms),
    }
}

/// Reads candles from CSV; a bad row is an error naming its line.
pub fn read_candles_csv(input: impl Read + 'static, id: &SeriesId) -> Result<Vec<Candle>> {
    let mut lines = BufReader::new(Box::new(input) as Box<dyn Read>).lines();
    let header = lines.next().context("empty file: no header")??;
    candles_from_lines(&header, lines, id)
}

fn candles_from_lines(header: &str, lines: CsvLines, id: &SeriesId) -> Result<Vec<Candle>> {
    let idx = columns(header, &CANDLE_COLUMNS).with_context(|| {
        format!(
            "expected candles ({}) or trades ({})",
            CANDLE_COLUMNS.join(","),
            TRADE_COLUMNS.join(",")
        )
    })?;
    let bar = id.interval.ms();
    let mut out = Vec::new();
    for (n, line) in lines.enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let f: Vec<&str> = line.split(',').map(str::trim).collect();
        let row = || -> Result<Candle> {
            let get = |i: usize| {
                f.get(idx[i])
                    .copied()
                    .ok_or_else(|| anyhow!("missing column"))
            };
            let dec =
                |i: usize| get(i).and_then(|s| decimal_text::parse(s).map_err(|e| anyhow!("{e}")));
            let open_ms: i64 = get(0)?.parse().context("ts_ms")?;
            Ok(Candle {
                v: SCHEMA_VERSION,
                exchange: id.exchange.clone(),
                symbol: id.symbol.clone(),
                interval: id.interval.to_string(),
                open_ms,
                close_ms: open_ms + bar,
                open: dec(1)?,
                high: dec(2)?,
                low: dec(3)?,
                close: dec(4)?,
                volume: dec(5)?,
                trades: 0,
            })
        };
        out.push(row().with_context(|| format!("line {}: `{line}`", n + 2))?);
    }
    Ok(out)
}

/// One trade row as a tick; `is_buyer_maker = true` means the aggressor sold.
fn trade_tick(f: &[&str], idx: &[usize], id: &SeriesId) -> Result<Tick> {
    let get = |i: usize| {
        f.get(idx[i])
            .copied()
            .ok_or_else(|| anyhow!("missing column `{}`", TRADE_COLUMNS[i]))
    };
    let dec = |i: usize| {
        get(i).and_then(|s| {
            decimal_text::parse(s).map_err(|e| anyhow!("`{}`: {e}", TRADE_COLUMNS[i]))
        })
    };
    let ts_ms: i64 = get(0)?.parse().context("trade_time_ms")?;
    let side = match get(4)?.to_ascii_lowercase().as_str() {
        "true" | "1" => Side::Sell,
        "false" | "0" => Side::Buy,
        other => bail!("is_buyer_maker: `{other}` is not true or false"),
    };
    let tick = Tick {
        v: SCHEMA_VERSION,
        exchange: id.exchange.clone(),
        symbol: id.symbol.clone(),
        trade_id: get(1)?.to_string(),
        price: dec(2)?,
        size: dec(3)?,
        side,
        ts_ms,
        ingested_ms: ts_ms,
    };
    Ok(tick)
}

/// Skipped rows of a trade file reported one by one on stderr; the rest are counted only.
const REJECTED_SHOWN: u64 = 10;

/// Trades through the candles stage's [`CandleBuilder`], one tick at a time, in file order (the
/// line number stands in for the Kafka offset). A row that parses but cannot be a tick (a size
/// above the maximum, an event time after 2200) or that would overflow a window is skipped and
/// counted in the stats' `rejected`, with a line on stderr for the first few: the candles are
/// those of the file without it. A row that does not parse at all stops the run.
fn trades_from_lines(
    header: &str,
    lines: CsvLines,
    id: &SeriesId,
    allowed_lateness_ms: i64,
) -> Result<Data> {
    let idx = columns(header, &TRADE_COLUMNS)?;
    let mut opts = CandleOptions::new([id.interval]);
    opts.allowed_lateness_ms = allowed_lateness_ms.max(0);
    opts.idle_grace_ms = None; // one symbol: nothing else moves its exchange's watermark
    let mut builder = CandleBuilder::new(opts, "backtest");
    let (mut candles, mut trades) = (Vec::new(), 0u64);
    for (n, line) in lines.enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let f: Vec<&str> = line.split(',').map(str::trim).collect();
        let tick = trade_tick(&f, &idx, id).with_context(|| format!("line {}: `{line}`", n + 2))?;
        let why = match tick.check() {
            Err(e) => {
                builder.count_rejected();
                Some(e.to_string())
            }
            Ok(()) => match builder.push(&tick, ("file", 0, n as i64), &mut candles) {
                Pushed::Rejected(why) => Some(why),
                _ => None,
            },
        };
        match why {
            Some(why) if builder.stats().rejected <= REJECTED_SHOWN => {
                eprintln!("backtest: line {} skipped: {why}", n + 2);
            }
            Some(_) => {}
            None => trades += 1,
        }
    }
    if builder.stats().rejected > REJECTED_SHOWN {
        eprintln!(
            "backtest: {} rows skipped in all ({REJECTED_SHOWN} shown)",
            builder.stats().rejected
        );
    }
    Ok(Data {
        kind: DataKind::Trades,
        candles,
        trades,
        stats: Some(builder.stats().clone()),
    })
}

/// One line of the backtest's result.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub model: String,
    pub horizon: u32,
    pub summary: Summary,
    /// Touch probabilities for levels at ±1 and ±2 × naive's spread over the horizon from the
    /// last close (none when the run has no naive model).
    pub touch: TouchScore,
    /// The nine calibrated quantiles ([`crate::scoring::quantiles`]).
    pub quantiles: QuantileScore,
}

/// A forecast's quantiles waiting for their target bar.
struct PendingQuantiles {
    model: Name,
    horizon: u32,
    quantiles: [f64; 9],
}

/// Touch levels, in units of naive's spread over the horizon (its `σ√h`) from the last close.
pub const TOUCH_LEVELS: [f64; 4] = [-2.0, -1.0, 1.0, 2.0];

/// Outcomes the trailing base rate of touches counts (per horizon and level).
const BASE_WINDOW: usize = 1_000;

/// A forecast's touch probabilities waiting for their target bar.
struct PendingTouch {
    model: Name,
    horizon: u32,
    /// Index of the bar the forecast was made at.
    base: usize,
    last: f64,
    /// Per level of [`TOUCH_LEVELS`]: the level in log price from `last`, the published
    /// probability and the base rate's.
    levels: [(f64, f64, f64); 4],
}

/// Running maximum of highs and minimum of lows of the bars after `base` up to `to`.
fn window_extremes(highs: &[f64], lows: &[f64], base: usize, to: usize) -> (f64, f64) {
    let range = base + 1..=to;
    let hi = highs[range.clone()]
        .iter()
        .copied()
        .fold(f64::NEG_INFINITY, f64::max);
    let lo = lows[range].iter().copied().fold(f64::INFINITY, f64::min);
    (hi, lo)
}

/// Replays `candles` (one series, in time order) through a forecast stage built by `models`
/// and scores every forecast whose target candle is in the file.
pub fn run(candles: &[Candle], stage: &dyn Fn() -> ForecastStage) -> Result<Vec<Row>> {
    let Some(first) = candles.first() else {
        bail!("no candles");
    };
    let bar = first.close_ms - first.open_ms;
    let fresh = stage;
    let mut stage = fresh();
    // target_ms → (model, horizon, point) waiting for their candle.
    let mut pending: BTreeMap<i64, Vec<(Name, u32, Point)>> = BTreeMap::new();
    let mut scores: BTreeMap<(Name, u32), Score> = BTreeMap::new();
    let mut touch_pending: BTreeMap<i64, Vec<PendingTouch>> = BTreeMap::new();
    let mut touch_scores: BTreeMap<(Name, u32), TouchScore> = BTreeMap::new();
    let mut base_rates: BTreeMap<(u32, usize), BaseRate> = BTreeMap::new();
    let mut q_pending: BTreeMap<i64, Vec<PendingQuantiles>> = BTreeMap::new();
    let mut q_scores: BTreeMap<(Name, u32), QuantileScore> = BTreeMap::new();
    let (mut highs, mut lows) = (
        Vec::with_capacity(candles.len()),
        Vec::with_capacity(candles.len()),
    );
    let mut last_close: Option<f64> = None;
    // In-sample one-step naive MAE over every step inside a window (MASE's scale).
    let (mut step_sum, mut step_n) = (0.0f64, 0u64);
    let mut prev: Option<&Candle> = None;
    for c in candles {
        let close = c.close_f64();
        match prev {
            Some(p) if c.open_ms <= p.open_ms => {
                bail!(
                    "candles out of order at {} (after {})",
                    c.open_ms,
                    p.open_ms
                )
            }
            Some(p) if c.open_ms != p.open_ms + bar => {
                // A gap: never bridged.
                stage = fresh();
                pending.clear();
                touch_pending.clear();
                q_pending.clear();
                last_close = None;
            }
            _ => {}
        }
        if let Some(last) = last_close {
            step_sum += (close - last).abs();
            step_n += 1;
        }
        last_close = Some(close);
        for (model, horizon, mut p) in pending.remove(&c.open_ms).unwrap_or_default() {
            p.actual = close;
            scores.entry((model, horizon)).or_default().add(&p);
        }
        let due = q_pending.remove(&c.open_ms).unwrap_or_default();
        // Naive's CRPS per horizon at this target: the reference of every model's.
        let naive_crps: Vec<(u32, f64)> = due
            .iter()
            .filter(|q| &*q.model == crate::NAIVE)
            .map(|q| (q.horizon, crps(&q.quantiles, close)))
            .collect();
        for q in due {
            let reference = naive_crps
                .iter()
                .find(|(h, _)| *h == q.horizon)
                .map(|(_, c)| *c);
            q_scores
                .entry((q.model, q.horizon))
                .or_default()
                .add(&q.quantiles, close, reference);
        }
        let at = highs.len();
        highs.push(c.high_f64());
        lows.push(c.low_f64());
        for t in touch_pending.remove(&c.open_ms).unwrap_or_default() {
            let (hi, lo) = window_extremes(&highs, &lows, t.base, at);
            let (up, down) = ((hi / t.last).ln(), (lo / t.last).ln());
            let score = touch_scores.entry((t.model, t.horizon)).or_default();
            for (k, &(a, p, reference)) in t.levels.iter().enumerate() {
                let touched = if a > 0.0 { up >= a } else { down <= a };
                score.add(p, reference, touched);
                base_rates
                    .entry((t.horizon, k))
                    .or_insert_with(|| BaseRate::new(BASE_WINDOW))
                    .push(touched);
            }
        }
        let made = stage.forecasts(&[c]);
        // Naive's spread per horizon at this bar: the touch levels' unit.
        let unit: Vec<(u32, f64)> = made
            .iter()
            .filter(|f| &*f.model == crate::NAIVE)
            .filter_map(|f| Some((f.horizon, drift_and_spread(f.last, f.point, f.hi95)?.1)))
            .collect();
        for f in made {
            // Scored on what the stage published: its quantiles, and its touch calibration
            // applied at the levels.
            if let (Some((mu, s)), Some(quantiles), Some(touch)) = (
                drift_and_spread(f.last, f.point, f.hi95),
                f.quantiles,
                f.touch,
            ) {
                q_pending
                    .entry(f.target_ms)
                    .or_default()
                    .push(PendingQuantiles {
                        model: f.model.clone(),
                        horizon: f.horizon,
                        quantiles,
                    });
                if let Some(&(_, sn)) = unit.iter().find(|(h, _)| *h == f.horizon) {
                    let cal = TouchCalibrator {
                        alpha: touch.alpha,
                        beta: touch.beta,
                    };
                    let levels = std::array::from_fn(|k| {
                        let a = TOUCH_LEVELS[k] * sn;
                        let reference = base_rates.get(&(f.horizon, k)).map_or(0.5, BaseRate::rate);
                        (a, cal.probability(a, mu, s).p, reference)
                    });
                    touch_pending
                        .entry(f.target_ms)
                        .or_default()
                        .push(PendingTouch {
                            model: f.model.clone(),
                            horizon: f.horizon,
                            base: at,
                            last: f.last,
                            levels,
                        });
                }
            }
            let p = Point::from_forecast(&f);
            pending
                .entry(f.target_ms)
                .or_default()
                .push((f.model, f.horizon, p));
        }
        prev = Some(c);
    }
    let scale = if step_n == 0 {
        f64::NAN
    } else {
        step_sum / step_n as f64
    };
    Ok(scores
        .into_iter()
        .filter_map(|((model, horizon), s)| {
            let touch = touch_scores
                .remove(&(model.clone(), horizon))
                .unwrap_or_default();
            let quantiles = q_scores
                .remove(&(model.clone(), horizon))
                .unwrap_or_default();
            s.summary(scale).map(|summary| Row {
                model: model.to_string(),
                horizon,
                summary,
                touch,
                quantiles,
            })
        })
        .collect())
}

/// Guesses the symbol from a file name like `binance_spot_BTCUSDT_1m_….csv.gz`.
pub fn symbol_from_file_name(path: &Path) -> Option<String> {
    let name = path.file_name()?.to_str()?;
    name.split(['_', '.'])
        .filter(|t| {
            t.len() >= 5
                && t.bytes()
                    .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
        })
        .find_map(tickcast_core::codec::split_concatenated)
}

/// The result as one JSON object per model and horizon.
pub fn json_line(r: &Row) -> String {
    let s = &r.summary;
    let num = |x: f64| {
        if x.is_finite() {
            serde_json::json!(x)
        } else {
            serde_json::Value::Null
        }
    };
    serde_json::json!({
        "model": r.model, "horizon": r.horizon, "n": s.n,
        "mae": num(s.mae), "rmse": num(s.rmse), "mase": num(s.mase), "rel_mae": num(s.rel_mae),
        "coverage80": num(s.coverage80), "coverage95": num(s.coverage95),
        "winkler95": num(s.winkler95), "pinball": num(s.pinball),
        "directional_accuracy": num(s.directional_accuracy),
        "crps": r.quantiles.crps().map_or(serde_json::Value::Null, num),
        "crps_rel": r.quantiles.crps_rel().map_or(serde_json::Value::Null, num),
        "pit_max_err": r.quantiles.pit_max_err().map_or(serde_json::Value::Null, num),
        "touch_brier": r.touch.brier().map_or(serde_json::Value::Null, num),
        "touch_brier_rel": r.touch.brier_rel().map_or(serde_json::Value::Null, num),
        "touch_ece": r.touch.ece().map_or(serde_json::Value::Null, num),
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::naive::Naive;
    use std::collections::HashMap;

    fn models_seen(rows: &[Row]) -> HashMap<&str, usize> {
        let mut m = HashMap::new();
        for r in rows {
            *m.entry(r.model.as_str()).or_default() += 1;
        }
        m
    }

    fn id() -> SeriesId {
        SeriesId {
            exchange: "binance".into(),
            symbol: "BTC-USDT".into(),
            interval: Interval::from_ms(60_000),
        }
    }

    const CSV: &str = "ts_ms,timestamp,open,high,low,close,volume
0,x,100,101,99,100,1
60000,x,100,103,99,102,1
120000,x,102,102,98,99,1
180000,x,99,104,99,103,1
240000,x,103,103,100,101,1
360000,x,101,101,90,95,1
420000,x,95,96,94,96,1
";

    /// Touch probabilities calibrate on a walk whose volatility clusters: GARCH(1,1) returns,
    /// each bar's high and low from 20 steps inside it. The calibrated naive model's touch
    /// probabilities for the ±1 and ±2 σ√h levels reach an ECE ≤ 0.02. (Their Brier score is
    /// the trailing base rate's, by construction: the levels are in units of naive's own
    /// spread, so naive gives each level nearly the same probability at every bar.)
    #[test]
    fn touch_probabilities_calibrate_on_clustered_volatility() {
        use crate::scoring::calibrated::{Calibrated, CalibrationSettings};
        use rust_decimal::Decimal;
        let mut rng = tickcast_core::rng::Rng::new(5);
        let (omega, alpha, beta) = (5e-9, 0.08, 0.9);
        let mut var: f64 = omega / (1.0 - alpha - beta);
        let mut price = 100.0f64;
        let dec = |x: f64| Decimal::from_f64_retain(x).expect("finite").round_dp(8);
        let mut candles = Vec::new();
        for i in 0..40_000usize {
            let step_sd = (var / 20.0).sqrt();
            let open = price;
            let (mut hi, mut lo, mut r_bar) = (price, price, 0.0);
            for _ in 0..20 {
                let r = step_sd * rng.normal();
                price *= r.exp();
                r_bar += r;
                hi = hi.max(price);
                lo = lo.min(price);
            }
            var = omega + alpha * r_bar * r_bar + beta * var;
            let mut c = crate::testing::flat_candle(i, dec(price));
            c.open = dec(open);
            c.high = dec(hi);
            c.low = dec(lo);
            candles.push(c);
        }
        let rows = run(&candles, &|| {
            let naive = Calibrated::new(Box::new(Naive::default()), CalibrationSettings::default());
            ForecastStage::new(vec![Box::new(naive)], vec![1, 5], "t")
        })
        .expect("runs");
        assert_eq!(rows.len(), 2);
        for r in &rows {
            let (ece, rel) = (
                r.touch.ece().expect("scored"),
                r.touch.brier_rel().expect("scored"),
            );
            assert!(
                r.touch.n > 150_000,
                "h {}: {} outcomes",
                r.horizon,
                r.touch.n
            );
            eprintln!(
                "h {}: touch ECE {ece:.4}, Brier {rel:.4} × the base rate's",
                r.horizon
            );
            assert!(ece <= 0.02, "h {}: touch ECE {ece:.4}", r.horizon);
            assert!(
                (rel - 1.0).abs() < 0.02,
                "h {}: Brier {rel:.4} × the base rate's",
                r.horizon
            );
        }
    }

    /// The nine quantiles calibrate on a fat-tailed random walk (90% of returns with sd 0.1%,
    /// 10% with sd 0.6%, which a normal band misplaces at every level): PIT error ≤ 0.015.
    #[test]
    fn quantiles_calibrate_on_a_fat_tailed_walk() {
        use crate::scoring::calibrated::{Calibrated, CalibrationSettings};
        let candles = crate::testing::synthetic_candles(&["BTC-USDT"], 40_000, 8);
        let rows = run(&candles, &|| {
            let naive = Calibrated::new(Box::new(Naive::default()), CalibrationSettings::default());
            ForecastStage::new(vec![Box::new(naive)], vec![1, 5], "t")
        })
        .expect("runs");
        assert_eq!(rows.len(), 2);
        for r in &rows {
            let pit = r.quantiles.pit_max_err().expect("scored");
            eprintln!(
                "h {}: PIT error {pit:.4}, CRPS {:?}",
                r.horizon,
                r.quantiles.crps()
            );
            assert!(r.quantiles.n > 39_000, "h {}: {}", r.horizon, r.quantiles.n);
            assert!(pit <= 0.015, "h {}: PIT error {pit:.4}", r.horizon);
            // Naive against itself.
            assert_eq!(r.quantiles.crps_rel(), Some(1.0));
        }
    }

    #[test]
    fn csv_reads_exact_candles_and_names_bad_lines() {
        let c = read_candles_csv(CSV.as_bytes(), &id()).expect("valid");
        assert_eq!(c.len(), 7);
        assert_eq!(
            (c[1].open_ms, c[1].close_ms, c[1].close.to_string()),
            (60_000, 120_000, "102".into())
        );
        let bad = read_candles_csv(
            "ts_ms,open,high,low,close,volume\n1,2,3,4,x,6\n".as_bytes(),
            &id(),
        );
        assert!(format!("{:#}", bad.expect_err("bad")).contains("line 2"));
        let no_col = read_candles_csv("ts_ms,open\n".as_bytes(), &id());
        assert!(format!("{:#}", no_col.expect_err("bad")).contains("no `high` column"));
    }

    #[test]
    fn naive_scores_exactly_and_gaps_are_not_bridged() {
        let c = read_candles_csv(CSV.as_bytes(), &id()).expect("valid");
        let rows = run(&c, &|| {
            ForecastStage::new(vec![Box::new(Naive::default())], vec![1, 2], "t")
        })
        .expect("runs");
        // Naive needs one return: first forecasts at the candle 60000 (close 102).
        // h=1 points inside the first window: 102→99, 99→103, 103→101 (gap before 360000, so
        // the forecast made at 240000 is dropped); second window: made at 420000 → no target.
        let h1 = &rows.iter().find(|r| r.horizon == 1).expect("h1").summary;
        assert_eq!(h1.n, 3);
        assert!((h1.mae - (3.0 + 4.0 + 2.0) / 3.0).abs() < 1e-12);
        assert!((h1.rel_mae - 1.0).abs() < 1e-12, "naive against itself");
        // Scale: steps inside windows |102-100|,|99-102|,|103-99|,|101-103|,|96-95| = 12 / 5.
        assert!((h1.mase - (9.0 / 3.0) / (12.0 / 5.0)).abs() < 1e-12);
        // h=2: 102→103 and 99→101.
        let h2 = &rows.iter().find(|r| r.horizon == 2).expect("h2").summary;
        assert_eq!(h2.n, 2);
        assert!((h2.mae - (1.0 + 2.0) / 2.0).abs() < 1e-12);
        assert_eq!(models_seen(&rows).get("naive"), Some(&2));
    }

    /// Hand-checked: a duplicate, an out-of-order trade within its window, a late trade, an
    /// empty window, and the last window left open.
    const TRADES: &str = "trade_time_ms,trade_id,price,qty,is_buyer_maker,extra
1000,1,100.5,0.5,true,x
20000,2,101,0.25,false,x
59999,3,99.5,1,true,x
59999,3,99.5,1,true,x
61000,4,102,2,false,x
130000,5,103,1,true,x
125000,6,100,1,false,x
50000,7,98,1,true,x
250000,8,104,1,false,x
";

    fn ohlcv(c: &Candle) -> (i64, String, String, String, String, String, u64) {
        (
            c.open_ms,
            c.open.to_string(),
            c.high.to_string(),
            c.low.to_string(),
            c.close.to_string(),
            c.volume.normalize().to_string(),
            c.trades,
        )
    }

    #[test]
    fn trades_become_the_candles_the_stream_would_publish() {
        let input: Box<dyn Read> = Box::new(TRADES.as_bytes());
        let data = read_data(input, &id(), 0).expect("valid");
        assert_eq!((data.kind, data.trades), (DataKind::Trades, 9));
        let s = |x: &str| x.to_string();
        let got: Vec<_> = data.candles.iter().map(ohlcv).collect();
        assert_eq!(
            got,
            vec![
                (0, s("100.5"), s("101"), s("99.5"), s("99.5"), s("1.75"), 3),
                (60_000, s("102"), s("102"), s("102"), s("102"), s("2"), 1),
                // Opened by the earliest trade (125 s), closed by the latest (130 s).
                (120_000, s("100"), s("103"), s("100"), s("103"), s("2"), 2),
                (180_000, s("103"), s("103"), s("103"), s("103"), s("0"), 0),
            ]
        );
        assert!(
            data.candles
                .iter()
                .all(|c| c.interval == "1m" && c.symbol == "BTC-USDT")
        );
        let stats = data.stats.expect("stats");
        assert_eq!(
            (stats.duplicates, stats.late_ticks, stats.empty_candles),
            (1, 1, 1)
        );
    }

    #[test]
    fn gzip_trades_are_read_and_bad_rows_named() {
        use std::io::Write as _;
        let dir = std::env::temp_dir().join(format!("tickcast-trades-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("binance_spot_BTCUSDT_trades.csv.gz");
        let mut gz = flate2::write::GzEncoder::new(
            std::fs::File::create(&path).expect("create"),
            flate2::Compression::default(),
        );
        gz.write_all(TRADES.as_bytes()).expect("write");
        gz.finish().expect("finish");
        let data = read_data(open(&path).expect("open"), &id(), 0).expect("valid");
        assert_eq!((data.kind, data.candles.len()), (DataKind::Trades, 4));
        std::fs::remove_dir_all(&dir).expect("cleanup");
        // A row that parses but cannot be a trade (a zero price) is skipped and counted; one that
        // does not parse stops the read, naming its line.
        let zero: Box<dyn Read> = Box::new(
            "trade_time_ms,trade_id,price,qty,is_buyer_maker\n1,1,0,1,true\n2,2,5,1,true\n"
                .as_bytes(),
        );
        let data = read_data(zero, &id(), 0).expect("read");
        let stats = data.stats.expect("stats");
        assert_eq!((data.trades, stats.rejected, stats.accepted), (1, 1, 1));
        let bad: Box<dyn Read> =
            Box::new("trade_time_ms,trade_id,price,qty,is_buyer_maker\n1,1,x,1,true\n".as_bytes());
        let err = format!("{:#}", read_data(bad, &id(), 0).expect_err("not a price"));
        assert!(err.contains("line 2") && err.contains("price"), "{err}");
        let neither: Box<dyn Read> = Box::new("a,b\n1,2\n".as_bytes());
        let err = format!("{:#}", read_data(neither, &id(), 0).expect_err("unknown"));
        assert!(
            err.contains("expected candles") && err.contains("trades ("),
            "{err}"
        );
    }

    #[test]
    fn symbols_come_from_file_names() {
        let p = Path::new("x/binance_spot_BTCUSDT_1m_2021-2024_windows.csv.gz");
        assert_eq!(symbol_from_file_name(p).as_deref(), Some("BTC-USDT"));
        assert_eq!(symbol_from_file_name(Path::new("data.csv")), None);
    }
}
