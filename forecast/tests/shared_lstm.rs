//! Trains on a short slice of a real series from `$TICKCAST_SHARED/data/candles_1m/` (default
//! `/work/shared`) and checks that the held-out pinball loss falls. A separate test target
//! (`test = false`): `cargo test -p tickcast-lstm --test shared_lstm`.

use std::path::PathBuf;

use burn::tensor::Device;
use tickcast_core::domain::Candle;
use tickcast_core::interval::Interval;
use tickcast_forecast::backtest::engine::{self as backtest, SeriesId};
use tickcast_forecast::models::lstm::batch::{BatchShape, sample_batch};
use tickcast_forecast::models::lstm::features::{FeatureSettings, History};
use tickcast_forecast::models::lstm::net::{Rng, Weights};
use tickcast_forecast::models::lstm::pretrain::segment_histories;
use tickcast_forecast::models::lstm::train::{Adam, batch_loss, train_step};
use tickcast_forecast::models::lstm::{LstmModel, LstmSettings, Training};

const FILE: &str = "binance_spot_BTCUSDT_1m_2021-2024_windows.csv.gz";
/// The slice: the first bars of the file (a few days of one-minute BTC).
const BARS: usize = 8_000;

fn shared() -> PathBuf {
    std::env::var_os("TICKCAST_SHARED").map_or_else(|| PathBuf::from("/work/shared"), PathBuf::from)
}

fn load() -> Vec<Candle> {
    let path = shared().join("data/candles_1m").join(FILE);
    let id = SeriesId {
        exchange: "binance".into(),
        symbol: "BTC-USDT".into(),
        interval: Interval::from_ms(60_000),
    };
    let mut c = backtest::read_candles_csv(backtest::open(&path).expect("open"), &id)
        .unwrap_or_else(|e| panic!("reading {}: {e:#}", path.display()));
    c.truncate(BARS);
    c
}

#[test]
fn loss_falls_on_a_short_real_series() {
    let candles = load();
    assert_eq!(candles.len(), BARS);
    let refs: Vec<&Candle> = candles.iter().collect();
    let cut = BARS * 4 / 5;
    let fs = FeatureSettings::default();
    let train = segment_histories(&refs[..cut], &fs);
    let valid = segment_histories(&refs[cut..], &fs);
    let train: Vec<&History> = train.iter().collect();
    let valid: Vec<&History> = valid.iter().collect();
    let s = LstmSettings {
        batch: BatchShape {
            batch: 32,
            steps: 64,
            burn_in: 16,
        },
        training: Training::Off,
        ..LstmSettings::default()
    };
    let m = LstmModel::on_device(s.clone(), Device::flex()).expect("model");
    let tau: Vec<f32> = s
        .horizons
        .iter()
        .flat_map(|_| s.quantiles.iter().map(|&q| q as f32))
        .collect();
    let nq = s.quantiles.len();
    let mut vr = Rng(1);
    let eval: Vec<_> = (0..8)
        .map(|_| sample_batch(&valid, s.batch, &s.horizons, nq, &fs, &mut vr).expect("window"))
        .collect();
    let device = Device::flex().autodiff();
    let loss = |w: &Weights| -> f64 {
        eval.iter()
            .map(|b| f64::from(batch_loss(w, b, &tau, &device).expect("loss")))
            .sum::<f64>()
            / eval.len() as f64
    };
    let train_from = |mut weights: Weights| -> (f64, f64) {
        let mut adam = Adam::new(weights.dims.parameters());
        let before = loss(&weights);
        let mut rng = Rng(2);
        for _ in 0..120 {
            let b = sample_batch(&train, s.batch, &s.horizons, nq, &fs, &mut rng).expect("window");
            train_step(&mut weights, &mut adam, &s.adam, &b, &tau, &device).expect("step");
        }
        (before, loss(&weights))
    };
    // From a blank head (every quantile 0) the network must learn the spread of the returns.
    let mut blank = m.weights().clone();
    blank.head_b.iter_mut().for_each(|b| *b = 0.0);
    let (before, after) = train_from(blank);
    eprintln!("held-out pinball loss on {BARS} BTC bars, blank start: {before:.4} → {after:.4}");
    assert!(
        after < 0.8 * before,
        "held-out loss {before:.4} → {after:.4}"
    );
    // From the default start (normal quantiles) it must not get worse.
    let (before, after) = train_from(m.weights().clone());
    eprintln!("held-out pinball loss on {BARS} BTC bars, default start: {before:.4} → {after:.4}");
    assert!(after < before, "held-out loss {before:.4} → {after:.4}");
}
