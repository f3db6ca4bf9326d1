//! Model-level tests: training lowers the loss, resume from checkpoints, exact round trips,
//! shapes, degenerate candles, the background swap.

use crate::testing::{check_resume, synthetic_candles};
use crate::{Forecaster, series_key};
use burn::tensor::Device;
use rust_decimal::Decimal;
use tickcast_core::domain::{Candle, SCHEMA_VERSION};

use crate::models::lstm::batch::{BatchShape, sample_batch};
use crate::models::lstm::features::{FeatureSettings, History};
use crate::models::lstm::model::{LstmModel, LstmSettings, Training};
use crate::models::lstm::net::Rng;
use crate::models::lstm::pretrain::segment_histories;
use crate::models::lstm::train::{batch_loss, train_step};

/// Small and quick: hidden 8, short windows, frequent training.
fn small(training: Training) -> LstmSettings {
    LstmSettings {
        hidden: 8,
        horizons: vec![1, 5],
        min_returns: 5,
        history: 200,
        batch: BatchShape {
            batch: 8,
            steps: 24,
            burn_in: 4,
        },
        training,
        train_every: 60,
        steps_per_train: 2,
        ..LstmSettings::default()
    }
}

fn model(training: Training) -> LstmModel {
    LstmModel::on_device(small(training), Device::flex()).expect("model")
}

#[test]
fn training_lowers_the_pinball_loss_on_a_synthetic_series() {
    let candles = synthetic_candles(&["BTC-USDT"], 3000, 11);
    let refs: Vec<&Candle> = candles.iter().collect();
    let s = LstmSettings {
        hidden: 16,
        batch: BatchShape {
            batch: 32,
            steps: 32,
            burn_in: 8,
        },
        ..small(Training::Off)
    };
    let m = LstmModel::on_device(s.clone(), Device::flex()).expect("model");
    let fs = FeatureSettings::default();
    let hist = segment_histories(&refs, &fs);
    let (train, valid) = split_history(&hist[0], 2400);
    let tau = m.tau();
    let nq = s.quantiles.len();
    let mut vr = Rng(1);
    let eval: Vec<_> = (0..4)
        .map(|_| sample_batch(&[&valid], s.batch, &s.horizons, nq, &fs, &mut vr).expect("batch"))
        .collect();
    let device = Device::flex().autodiff();
    let loss = |w: &crate::models::lstm::net::Weights| -> f64 {
        eval.iter()
            .map(|b| f64::from(batch_loss(w, b, &tau, &device).expect("loss")))
            .sum::<f64>()
            / eval.len() as f64
    };
    // From a blank head (every quantile 0): the network must learn the spread. (From the
    // default start, the normal quantiles, there is little left to learn on i.i.d. returns.)
    let mut weights = m.weights().clone();
    weights.head_b.iter_mut().for_each(|b| *b = 0.0);
    let mut adam = crate::models::lstm::train::Adam::new(weights.dims.parameters());
    let before = loss(&weights);
    let mut rng = Rng(2);
    for _ in 0..150 {
        let b = sample_batch(&[&train], s.batch, &s.horizons, nq, &fs, &mut rng).expect("batch");
        train_step(&mut weights, &mut adam, &s.adam, &b, &tau, &device).expect("step");
    }
    let after = loss(&weights);
    eprintln!("held-out pinball loss {before:.4} → {after:.4}");
    assert!(
        after < 0.8 * before,
        "held-out pinball loss {before:.4} → {after:.4}"
    );
}

fn split_history(h: &History, at: usize) -> (History, History) {
    let mut a = History::default();
    let mut b = History::default();
    for (i, r) in h.bars.iter().enumerate() {
        if i < at {
            a.push(*r, usize::MAX);
        } else {
            b.push(*r, usize::MAX);
        }
    }
    (a, b)
}

#[test]
fn resumes_exactly_from_checkpoints_after_inline_training() {
    let candles = synthetic_candles(&["BTC-USDT", "ETH-USDT"], 420, 7);
    let make = || Box::new(model(Training::Inline)) as Box<dyn Forecaster>;
    // Bar 300 is after four trainings (every 60 bars from bar 60) and before the next.
    check_resume(&make, &candles, 2 * 300 + 1, &[1, 5, 15]).expect("resumes");
    // The split run really trained before the split.
    let mut m = model(Training::Inline);
    let refs: Vec<&Candle> = candles.iter().collect();
    m.update(&refs[..601], &[1]);
    assert!(m.training_steps() >= 6, "{} steps", m.training_steps());
}

#[test]
fn batching_does_not_change_results() {
    let candles = synthetic_candles(&["A-USDT", "B-USDT", "C-USDT"], 200, 3);
    let refs: Vec<&Candle> = candles.iter().collect();
    let mut whole = model(Training::Inline);
    let all = whole.update(&refs, &[1, 5]);
    let mut pieces = model(Training::Inline);
    let mut got = Vec::new();
    for chunk in refs.chunks(7) {
        got.extend(pieces.update(chunk, &[1, 5]));
    }
    assert_eq!(got, all);
    // A batch holding one series several times is processed in order (rounds).
    let mut single = model(Training::Inline);
    let a: Vec<&Candle> = refs
        .iter()
        .copied()
        .filter(|c| c.symbol == "A-USDT")
        .collect();
    let alone = single.update(&a, &[1, 5]);
    let in_mix: Vec<_> = refs
        .iter()
        .zip(&all)
        .filter(|(c, _)| c.symbol == "A-USDT")
        .map(|(_, p)| p.clone())
        .collect();
    assert_eq!(alone.len(), in_mix.len());
    // Same series, same schedule (the schedule runs on event time): identical until the first
    // training, which draws from other series' histories too.
    assert_eq!(alone[..60], in_mix[..60]);
}

#[test]
fn model_and_series_checkpoints_round_trip_bit_exactly() {
    let candles = synthetic_candles(&["BTC-USDT"], 300, 5);
    let refs: Vec<&Candle> = candles.iter().collect();
    let mut m = model(Training::Inline);
    m.update(&refs, &[1]);
    assert!(m.training_steps() > 0);
    let bytes = m.save_model().expect("model bytes");
    let mut n = model(Training::Inline);
    n.load_model(&bytes).expect("load");
    assert_eq!(n.weights(), m.weights());
    assert!(
        n.save_model().expect("again") == bytes,
        "model bytes differ"
    );
    let key = series_key(&candles[0]);
    let sb = m.save_series(&key).expect("series bytes");
    n.load_series(&key, &sb).expect("load series");
    assert!(
        n.save_series(&key).expect("again") == sb,
        "series bytes differ"
    );
    // Damaged bytes are errors, not panics.
    assert!(n.load_model(&bytes[..bytes.len() / 2]).is_err());
    assert!(n.load_series(&key, &sb[..10]).is_err());
    assert!(n.load_model(b"\x09junk").is_err());
}

#[test]
fn a_checkpoint_file_seeds_a_new_model() {
    let candles = synthetic_candles(&["BTC-USDT"], 300, 5);
    let refs: Vec<&Candle> = candles.iter().collect();
    let mut m = model(Training::Inline);
    m.update(&refs, &[1]);
    let dir = std::env::temp_dir().join(format!("tickcast-lstm-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let path = dir.join("m.ckpt");
    std::fs::write(&path, m.save_model().expect("bytes")).expect("write");
    let n = LstmModel::on_device(
        LstmSettings {
            init: Some(path.clone()),
            hidden: 4, // replaced by the checkpoint's
            ..small(Training::Off)
        },
        Device::flex(),
    )
    .expect("from checkpoint");
    assert_eq!(n.weights(), m.weights());
    assert_eq!(n.settings().hidden, 8);
    assert_eq!(n.training_steps(), m.training_steps());
    std::fs::remove_dir_all(&dir).expect("clean up");
}

#[test]
fn outputs_one_prediction_per_horizon_after_warm_up() {
    let candles = synthetic_candles(&["BTC-USDT", "ETH-USDT"], 30, 1);
    let refs: Vec<&Candle> = candles.iter().collect();
    let mut m = model(Training::Off);
    let out = m.update(&refs, &[1, 3, 5, 60]);
    assert_eq!(out.len(), refs.len());
    for (i, p) in out.iter().enumerate() {
        let bar = i / 2;
        // Bar 0 starts the series; 5 returns are needed.
        if bar < 5 {
            assert!(p.is_empty(), "bar {bar}");
        } else {
            assert_eq!(
                p.iter().map(|x| x.horizon).collect::<Vec<_>>(),
                [1, 3, 5, 60]
            );
            let close: f64 =
                rust_decimal::prelude::ToPrimitive::to_f64(&refs[i].close).expect("close");
            for x in p {
                assert_eq!(x.point, close, "untrained: the last close");
                assert!(0.0 < x.lo95 && x.lo95 <= x.lo80 && x.lo80 <= x.point);
                assert!(x.point <= x.hi80 && x.hi80 <= x.hi95);
            }
            assert!(
                p[3].hi95 - p[3].lo95 > p[0].hi95 - p[0].lo95,
                "wider further out"
            );
        }
    }
}

fn flat(i: i64, volume: i64, close: i64) -> Candle {
    let p = Decimal::new(close, 0);
    Candle {
        v: SCHEMA_VERSION,
        exchange: "sim".into(),
        symbol: "FLAT-USDT".into(),
        interval: "1m".into(),
        open_ms: i * 60_000,
        close_ms: (i + 1) * 60_000,
        open: p,
        high: p,
        low: p,
        close: p,
        volume: Decimal::new(volume, 0),
        trades: 0,
    }
}

#[test]
fn flat_and_zero_volume_candles_give_finite_forecasts_and_training() {
    let mut candles: Vec<Candle> = (0..200).map(|i| flat(i, 0, 100)).collect();
    candles.extend((200..260).map(|i| flat(i, i % 3, 100 + (i % 2))));
    candles.push(flat(260, 0, 0)); // a zero close is skipped
    let refs: Vec<&Candle> = candles.iter().collect();
    let mut m = model(Training::Inline);
    let out = m.update(&refs, &[1, 5]);
    assert!(m.training_steps() > 0, "trained on the flat stretch");
    assert!(out[260].is_empty());
    let mut n = 0;
    for p in out.iter().flatten() {
        n += 1;
        for v in [p.point, p.lo80, p.hi80, p.lo95, p.hi95] {
            assert!(v.is_finite() && v > 0.0, "{p:?}");
        }
    }
    assert!(n > 400);
    assert!(m.weights().flat().iter().all(|w| w.is_finite()));
}

#[test]
fn background_training_swaps_weights_in_at_a_later_update() {
    let candles = synthetic_candles(&["BTC-USDT"], 200, 9);
    let refs: Vec<&Candle> = candles.iter().collect();
    let mut m = model(Training::Background);
    let before = m.weights().clone();
    m.update(&refs[..150], &[1]);
    assert_eq!(
        m.weights(),
        &before,
        "nothing swapped inside the update that fired"
    );
    assert!(m.wait_for_training(), "a job was submitted");
    assert_ne!(m.weights(), &before);
    assert!(m.training_steps() > 0);
    let out = m.update(&refs[150..], &[1]);
    assert!(out.iter().all(|p| p.len() == 1));
}
