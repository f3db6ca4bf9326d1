//! Property tests of the forecast and sink stages' handlers with schema-valid but extreme
//! messages (prices from 10^-18 to 10^15, volumes and trade counts to their maxima, doubles up
//! to 10^300 and down to the smallest normal) mixed with poison (wrong version, broken JSON,
//! values the schema refuses), in batches of any size: no panic, every poison message is
//! dead-lettered, and the output equals that of the valid messages alone. The candles stage's
//! twin is in `candles/src/tests.rs`, the alert stage's in `consumers/tests/alerts.rs`.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

mod common;

use proptest::prelude::*;
use rust_decimal::Decimal;
use tickcast_core::codec::{self, Topics};
use tickcast_core::domain::{Candle, Forecast, SCHEMA_VERSION};
use tickcast_core::stage::{Handler, Inbound};
use tickcast_sink::Sink;
use tickcast_store::ForecastQuery;

const BAR: i64 = 60_000;

fn price() -> impl Strategy<Value = Decimal> {
    (1i64..=1_000_000_000_000_000, 0u32..=18).prop_map(|(m, s)| Decimal::new(m, s))
}

/// A candle at bar `i`: its four prices drawn, ordered so that low ≤ open, close ≤ high.
fn candle() -> impl Strategy<Value = Candle> {
    (
        0usize..2,
        price(),
        price(),
        price(),
        price(),
        price(),
        0u64..=u64::MAX / 2,
    )
        .prop_map(|(s, a, b, c, e, volume, trades)| {
            let mut p = [a, b, c, e];
            p.sort();
            Candle {
                v: SCHEMA_VERSION,
                exchange: "binance".into(),
                symbol: ["BTC-USDT", "ETH-USDT"][s].into(),
                interval: "1m".into(),
                open_ms: 0,
                close_ms: BAR,
                open: p[1],
                high: p[3],
                low: p[0],
                close: p[2],
                volume,
                trades,
            }
        })
}

#[derive(Debug, Clone)]
enum Input<T> {
    Valid(T),
    Poison(Vec<u8>),
}

/// Payloads a decoder must refuse, made from a valid message's JSON.
fn poison_of(json: String, k: usize) -> Vec<u8> {
    match k {
        0 => json.replacen("\"v\":1", "\"v\":99", 1),
        1 => json[..json.len() / 2].to_string(),
        2 => json.replacen("\"exchange\":\"binance\"", "\"exchange\":\"\"", 1),
        3 => json.replacen("{", "{\"extra\":1,", 1),
        _ => "null".to_string(),
    }
    .into_bytes()
}

/// Bars are numbered in input order per symbol, so every valid candle is the next bar.
fn candle_inputs() -> impl Strategy<Value = Vec<Input<Candle>>> {
    proptest::collection::vec(
        prop_oneof![
            12 => candle().prop_map(Input::Valid),
            1 => (0usize..5).prop_map(|k| Input::Poison(vec![k as u8])),
        ],
        // Past the warm-up of every model (ETS forecasts from a series' 240th bar).
        1..700,
    )
    .prop_map(|inputs| {
        let mut next = [0i64; 2];
        // Most bars move a little from the last close (so the models warm up and forecast);
        // every 16th keeps its drawn, extreme prices (a jump anywhere in the range).
        let mut level: [Option<Decimal>; 2] = [None, None];
        inputs
            .into_iter()
            .map(|x| match x {
                Input::Valid(mut c) => {
                    let s = usize::from(c.symbol == "ETH-USDT");
                    c.open_ms = next[s] * BAR;
                    c.close_ms = c.open_ms + BAR;
                    next[s] += 1;
                    if let Some(l) = level[s].filter(|_| c.trades % 16 != 0) {
                        let step = |d: Decimal| {
                            let bp = i64::try_from(d.mantissa() % 201).unwrap_or(0) - 100;
                            (l * (Decimal::ONE + Decimal::new(bp, 4))).round_dp(18)
                        };
                        let mut p = [step(c.open), step(c.high), step(c.low), step(c.close)];
                        p.sort();
                        (c.low, c.open, c.close, c.high) = (p[0], p[1], p[2], p[3]);
                    }
                    level[s] = Some(c.close);
                    Input::Valid(c)
                }
                Input::Poison(k) => {
                    let json = String::from_utf8(codec::encode(&probe())).unwrap();
                    Input::Poison(poison_of(json, usize::from(k[0])))
                }
            })
            .collect()
    })
}

fn probe() -> Candle {
    Candle {
        v: SCHEMA_VERSION,
        exchange: "binance".into(),
        symbol: "BTC-USDT".into(),
        interval: "1m".into(),
        open_ms: 0,
        close_ms: BAR,
        open: Decimal::ONE,
        high: Decimal::ONE,
        low: Decimal::ONE,
        close: Decimal::ONE,
        volume: Decimal::ONE,
        trades: 1,
    }
}

fn inbound<T: codec::Message>(topic: &str, inputs: &[Input<T>], valid_only: bool) -> Vec<Inbound> {
    inputs
        .iter()
        .filter_map(|x| match x {
            Input::Valid(m) => Some(codec::encode(m)),
            Input::Poison(p) if !valid_only => Some(p.clone()),
            Input::Poison(_) => None,
        })
        .enumerate()
        .map(|(o, payload)| Inbound {
            topic: topic.into(),
            partition: 0,
            offset: o as i64,
            key: None,
            payload,
        })
        .collect()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// The forecast records and the dead-letter count of `batch`, handled in pieces of `split`
/// by a fresh stage of naive, GARCH, ETS and trend with the ensemble.
fn forecast(batch: &[Inbound], split: usize) -> (Vec<Vec<u8>>, usize) {
    let models: Vec<String> = ["naive", "garch", "ets", "trend"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let mut stage =
        tickcast_forecast::models::stage(&models, &[1, 5], true, true, Default::default(), "f")
            .unwrap();
    let rt = runtime();
    let (mut out, mut dead) = (Vec::new(), 0);
    for piece in batch.chunks(split.max(1)) {
        let fx = rt.block_on(stage.handle(piece)).unwrap();
        out.extend(fx.records.into_iter().map(|r| r.payload));
        dead += fx.dead.len();
    }
    (out, dead)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(12))]

    #[test]
    fn the_forecast_stage_on_extreme_candles(inputs in candle_inputs(), split in 1usize..20) {
        let all = inbound("candles", &inputs, false);
        let valid = inbound("candles", &inputs, true);
        let (got, dead) = forecast(&all, split);
        let (want, dead_valid) = forecast(&valid, valid.len().max(1));
        prop_assert_eq!(dead_valid, 0);
        prop_assert_eq!(dead, all.len() - valid.len());
        prop_assert_eq!(got, want);
    }
}

/// A forecast of bar `i` with extreme but finite doubles, its band around the point.
fn extreme_forecast() -> impl Strategy<Value = Forecast> {
    let double = prop_oneof![
        Just(f64::MIN_POSITIVE),
        Just(1e300),
        Just(-1e300),
        Just(0.0),
        -1e6f64..1e6,
        (1e-300f64..1e300),
    ];
    (
        0usize..2,
        1u32..=10_000,
        double.clone(),
        double,
        0.0f64..1e300,
    )
        .prop_map(|(s, horizon, last, point, spread)| {
            let half = spread / 2.0;
            Forecast {
                v: SCHEMA_VERSION,
                exchange: "binance".into(),
                symbol: ["BTC-USDT", "ETH-USDT"][s].into(),
                interval: "1m".into(),
                model: "m".into(),
                horizon,
                base_ms: 0,
                target_ms: i64::from(horizon) * BAR,
                last,
                point,
                lo80: point - half / 2.0,
                hi80: point + half / 2.0,
                lo95: point - half,
                hi95: point + half,
                ..Default::default()
            }
        })
}

fn sink_inputs() -> impl Strategy<Value = Vec<(Input<Candle>, Input<Forecast>)>> {
    proptest::collection::vec(
        (
            prop_oneof![5 => candle().prop_map(Input::Valid), 1 => (0usize..5).prop_map(|k| Input::Poison(vec![k as u8]))],
            prop_oneof![5 => extreme_forecast().prop_map(Input::Valid), 1 => (0usize..5).prop_map(|k| Input::Poison(vec![k as u8]))],
        ),
        1..40,
    )
    .prop_map(|v| {
        v.into_iter()
            .enumerate()
            .map(|(i, (c, f))| {
                let c = match c {
                    Input::Valid(mut c) => {
                        c.open_ms = i as i64 * BAR;
                        c.close_ms = c.open_ms + BAR;
                        Input::Valid(c)
                    }
                    Input::Poison(k) => Input::Poison(poison_of(
                        String::from_utf8(codec::encode(&probe())).unwrap(),
                        usize::from(k[0]),
                    )),
                };
                let f = match f {
                    Input::Valid(mut f) => {
                        f.base_ms = i as i64 * BAR;
                        f.target_ms = f.base_ms + i64::from(f.horizon) * BAR;
                        Input::Valid(f)
                    }
                    Input::Poison(k) => {
                        let mut p = probe_forecast();
                        p.base_ms = i as i64 * BAR;
                        Input::Poison(poison_of(
                            String::from_utf8(codec::encode(&p)).unwrap(),
                            usize::from(k[0]),
                        ))
                    }
                };
                (c, f)
            })
            .collect()
    })
}

fn probe_forecast() -> Forecast {
    Forecast {
        v: SCHEMA_VERSION,
        exchange: "binance".into(),
        symbol: "BTC-USDT".into(),
        interval: "1m".into(),
        model: "m".into(),
        horizon: 1,
        base_ms: 0,
        target_ms: BAR,
        last: 1.0,
        point: 1.0,
        lo80: 1.0,
        hi80: 1.0,
        lo95: 1.0,
        hi95: 1.0,
        ..Default::default()
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// The sink writes exactly the valid candles and forecasts, values unchanged, to SQLite.
    #[test]
    fn the_sink_on_extreme_rows(inputs in sink_inputs(), split in 1usize..20) {
        let topics = Topics::default();
        let (candles, forecasts): (Vec<_>, Vec<_>) = inputs.into_iter().unzip();
        let mut all = inbound(&topics.candles(), &candles, false);
        all.extend(inbound(&topics.forecasts(), &forecasts, false));
        let poison = candles.iter().filter(|x| matches!(x, Input::Poison(_))).count()
            + forecasts.iter().filter(|x| matches!(x, Input::Poison(_))).count();
        let rt = runtime();
        let (store, _dir) = rt.block_on(common::open_store(common::Mode::Embedded, "sinkprop")).unwrap();
        let mut sink = Sink::new(store.clone(), "prop", topics.clone());
        let mut dead = 0;
        for piece in all.chunks(split) {
            dead += rt.block_on(sink.handle(piece)).unwrap().dead.len();
        }
        prop_assert_eq!(dead, poison);
        let want_c: Vec<Candle> = candles.iter().filter_map(|x| match x { Input::Valid(c) => Some(c.clone()), _ => None }).collect();
        let mut want_c = want_c;
        want_c.sort_by(|a, b| (a.open_ms, &a.symbol).cmp(&(b.open_ms, &b.symbol)));
        prop_assert_eq!(rt.block_on(common::all_candles(&*store)), want_c);
        let mut want_f: Vec<Forecast> = forecasts.iter().filter_map(|x| match x { Input::Valid(f) => Some(f.clone()), _ => None }).collect();
        let mut got_f = rt.block_on(store.forecasts(&ForecastQuery { limit: 10_000, ..Default::default() })).unwrap();
        let key = |f: &Forecast| (f.base_ms, f.symbol.to_string(), f.horizon);
        want_f.sort_by_key(key);
        got_f.sort_by_key(key);
        prop_assert_eq!(got_f.len(), want_f.len());
        for (g, w) in got_f.iter().zip(&want_f) {
            prop_assert_eq!(
                (g.last.to_bits(), g.point.to_bits(), g.lo80.to_bits(), g.hi80.to_bits(), g.lo95.to_bits(), g.hi95.to_bits()),
                (w.last.to_bits(), w.point.to_bits(), w.lo80.to_bits(), w.hi80.to_bits(), w.lo95.to_bits(), w.hi95.to_bits()),
                "{:?}", w
            );
        }
    }
}
