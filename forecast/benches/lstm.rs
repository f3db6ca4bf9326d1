//! LSTM costs on `flex`, with the shapes of `scripts/bench_lstm.py` (PyTorch):
//! - `train_step/h64`: one gradient step (forward, pinball loss, backward, Adam) on 256
//!   sequences × 64 steps, 4 inputs, hidden 64, 20 outputs — and `h32` — as the model runs it
//!   on the CPU (the gradient from [`tickcast_forecast::models::lstm::host_train`]);
//! - `burn_train_step/h64` and `h32`: the same step with burn's autodiff on `flex`;
//! - `inference/h64` and `h32`: the forward of the same batch without gradients, on burn;
//! - `host_inference/h64` and `h32`: the same forward on the host code;
//! - `stream_step/h64` and `h32`: one streaming step for 1,000 series with carried state,
//!   uploads and the read-back included;
//! - `host_step/h64` and `h32`: the same step on [`tickcast_forecast::models::lstm::host::step`], what the model
//!   runs on the CPU;
//! - `model_bar/1000`: `LstmModel::update` for one closed bar of 1,000 series (features, the
//!   batched step, predictions for horizons 1, 5, 15, 60), the model's cost per bar.
//!
//! `cargo bench -p tickcast-lstm --bench lstm` (or `scripts/bench-lstm.sh` for the comparison).

use std::hint::black_box;
use std::time::Duration;

use burn::tensor::{Device, Tensor, TensorData};
use criterion::{Criterion, criterion_group, criterion_main};
use tickcast_core::domain::Candle;
use tickcast_forecast::Forecaster;
use tickcast_forecast::models::lstm::features::N_FEATURES;
use tickcast_forecast::models::lstm::host::{self, Scratch};
use tickcast_forecast::models::lstm::host_train;
use tickcast_forecast::models::lstm::net::{LstmNet, Rng, read};
use tickcast_forecast::models::lstm::train::{Adam, AdamSettings, burn_gradient, train_step};
use tickcast_forecast::models::lstm::{LstmModel, LstmSettings, Training};
use tickcast_forecast::testing::synthetic_candles;

mod common;

use common::{BATCH, STEPS, batch, random, tau, weights};

const SERIES: usize = 1_000;

fn bench(c: &mut Criterion) {
    let device = Device::flex();
    let mut rng = Rng(5);
    let tau = tau();
    let batch = batch(&mut rng);
    let mut g = c.benchmark_group("lstm");
    g.sample_size(10)
        .warm_up_time(Duration::from_secs(2))
        .measurement_time(Duration::from_secs(8));
    for hidden in [64, 32] {
        let ad = device.clone().autodiff();
        let s = AdamSettings::default();
        // What the model runs on the CPU: the host gradient (`tickcast_forecast::models::lstm::host_train`).
        let mut w = weights(hidden);
        let mut adam = Adam::new(w.dims.parameters());
        g.bench_function(format!("train_step/h{hidden}"), |b| {
            b.iter(|| train_step(&mut w, &mut adam, &s, &batch, &tau, &ad).expect("step"))
        });
        // The same step through burn's autodiff on `flex`.
        let mut w = weights(hidden);
        let mut adam = Adam::new(w.dims.parameters());
        g.bench_function(format!("burn_train_step/h{hidden}"), |b| {
            b.iter(|| {
                let (_, grad) = burn_gradient(&w, &batch, &tau, &ad).expect("gradient");
                let mut theta = w.flat();
                adam.update(&s, &mut theta, &grad).expect("adam");
                w.set_flat(&theta).expect("weights");
            })
        });
    }
    for hidden in [64, 32] {
        let net = LstmNet::new(&weights(hidden), &device);
        g.bench_function(format!("inference/h{hidden}"), |b| {
            b.iter(|| {
                let x = Tensor::<3>::from_data(
                    TensorData::new(batch.x.clone(), [STEPS, BATCH, N_FEATURES]),
                    &device,
                );
                read(net.sequence(x, 0)).expect("forward")
            })
        });
        let w = weights(hidden);
        g.bench_function(format!("host_inference/h{hidden}"), |b| {
            b.iter(|| host_train::outputs(&w, black_box(&batch)).expect("forward"))
        });
    }
    for hidden in [64, 32] {
        let net = LstmNet::new(&weights(hidden), &device);
        let xh = random(SERIES * (N_FEATURES + hidden), &mut rng);
        let cs = random(SERIES * hidden, &mut rng);
        g.bench_function(format!("stream_step/h{hidden}"), |b| {
            b.iter(|| {
                net.step_host(black_box(xh.clone()), black_box(cs.clone()), SERIES)
                    .expect("step")
            })
        });
        let w = weights(hidden);
        let mut scratch = Scratch::default();
        g.bench_function(format!("host_step/h{hidden}"), |b| {
            b.iter(|| {
                host::step(&w, black_box(&xh), black_box(&cs), SERIES, &mut scratch).expect("step")
            })
        });
    }
    {
        let symbols: Vec<String> = (0..SERIES).map(|i| format!("S{i}-USDT")).collect();
        let names: Vec<&str> = symbols.iter().map(String::as_str).collect();
        let candles = synthetic_candles(&names, 60, 3);
        let refs: Vec<&Candle> = candles.iter().collect();
        let mut model = LstmModel::on_device(
            LstmSettings {
                training: Training::Off,
                ..LstmSettings::default()
            },
            device.clone(),
        )
        .expect("model");
        // Warm every series up, then time one bar (the last) again and again: the features
        // keep moving on, which costs the same as fresh bars.
        model.update(&refs[..SERIES * 59], &[1, 5, 15, 60]);
        let bar = &refs[SERIES * 59..];
        g.bench_function("model_bar/1000", |b| {
            b.iter(|| model.update(black_box(bar), &[1, 5, 15, 60]))
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
