//! The LSTM on the CPU against the `wgpu` device, with the shapes of `benches/lstm.rs` (and of
//! `scripts/bench_lstm.py`, PyTorch): for hidden sizes 64 and 32,
//! - a training step (forward, pinball loss, backward, Adam) on 256 sequences × 64 steps;
//! - inference: the forward of the same batch, outputs read back;
//! - a streaming step for `SERIES` series with carried state, uploads and read-back included;
//! - the model's whole update for one closed bar of `SERIES` series (features, the step, the
//!   quantiles for horizons 1, 5, 15, 60).
//!
//! "CPU" is what the model runs on the `flex` device (the host code of `host.rs` and
//! `host_train.rs`), "wgpu" what it runs on the `wgpu` device (burn's kernels; training through
//! burn's autodiff). Each figure is the median of `REPS` timed calls after warm-up calls; the
//! first `wgpu` call of each kind compiles and autotunes its kernels, and its time is printed
//! apart.
//!
//! `scripts/bench-lstm-gpu.sh [REPS] [SERIES]` builds and runs this in release with the `wgpu`
//! feature. On a machine without a GPU the adapter is Mesa's lavapipe (Vulkan on the CPU): the
//! figures then say how the wgpu path runs, not what a GPU does.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::time::Instant;

use burn::tensor::{Device, Tensor, TensorData};
use tickcast_core::domain::Candle;
use tickcast_forecast::Forecaster;
use tickcast_forecast::models::lstm::device::probe_wgpu;
use tickcast_forecast::models::lstm::features::N_FEATURES;
use tickcast_forecast::models::lstm::host::{self, Scratch};
use tickcast_forecast::models::lstm::host_train;
use tickcast_forecast::models::lstm::net::{LstmNet, Rng, read};
use tickcast_forecast::models::lstm::train::{Adam, AdamSettings, train_step};
use tickcast_forecast::models::lstm::{LstmModel, LstmSettings, Training};
use tickcast_forecast::testing::synthetic_candles;

mod common;

use common::{BATCH, STEPS, batch, random, tau, weights};

const WARM: usize = 2;
const HORIZONS: [u32; 4] = [1, 5, 15, 60];

/// Times `f`: the first call apart, then `WARM` more untimed, then the median of `reps`, in ms.
fn time(what: &str, reps: usize, mut f: impl FnMut()) -> (f64, f64) {
    let t = Instant::now();
    f();
    let first = t.elapsed().as_secs_f64() * 1e3;
    for _ in 0..WARM {
        f();
    }
    let mut ms: Vec<f64> = (0..reps)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    ms.sort_by(f64::total_cmp);
    let median = ms[ms.len() / 2];
    eprintln!("  {what}: first call {first:.1} ms, median of {reps} {median:.3} ms");
    (first, median)
}

struct Row {
    figure: String,
    hidden: usize,
    cpu: f64,
    gpu: f64,
    gpu_first: f64,
}

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .map(|a| a.parse().expect("arguments: [REPS] [SERIES], both numbers"))
        .collect();
    let reps = args.first().copied().unwrap_or(20).max(1);
    let series = args.get(1).copied().unwrap_or(1_000).max(1);
    let gpu = match probe_wgpu() {
        Ok(d) => d,
        Err(e) => {
            eprintln!("bench devices: no usable wgpu adapter: {e:#}");
            std::process::exit(2);
        }
    };
    let cpu = Device::flex();
    eprintln!(
        "LSTM, CPU (flex) against wgpu: {reps} timed calls each after {WARM} warm-up calls, \
         training and inference on {BATCH} sequences × {STEPS} steps, streaming on {series} series"
    );
    let mut rng = Rng(5);
    let tau = tau();
    let batch = batch(&mut rng);
    let s = AdamSettings::default();
    let mut rows = Vec::new();
    for hidden in [64, 32] {
        // Training step: the host gradient on flex, burn's autodiff on wgpu.
        let step = |d: &Device, what: &str| {
            let ad = d.clone().autodiff();
            let mut w = weights(hidden);
            let mut adam = Adam::new(w.dims.parameters());
            time(what, reps, || {
                black_box(train_step(&mut w, &mut adam, &s, &batch, &tau, &ad).expect("step"));
            })
        };
        let (_, c) = step(&cpu, &format!("train_step/h{hidden} cpu"));
        let (first, g) = step(&gpu, &format!("train_step/h{hidden} wgpu"));
        rows.push(Row {
            figure: format!("training step, {BATCH} × {STEPS}"),
            hidden,
            cpu: c,
            gpu: g,
            gpu_first: first,
        });

        // Inference: the host forward on flex, burn's sequence on wgpu.
        let w = weights(hidden);
        let (_, c) = time(&format!("inference/h{hidden} cpu"), reps, || {
            black_box(host_train::outputs(&w, &batch).expect("forward"));
        });
        let net = LstmNet::new(&w, &gpu);
        let (first, g) = time(&format!("inference/h{hidden} wgpu"), reps, || {
            let x = Tensor::<3>::from_data(
                TensorData::new(batch.x.clone(), [STEPS, BATCH, N_FEATURES]),
                &gpu,
            );
            black_box(read(net.sequence(x, 0)).expect("forward"));
        });
        rows.push(Row {
            figure: format!("inference, {BATCH} × {STEPS}"),
            hidden,
            cpu: c,
            gpu: g,
            gpu_first: first,
        });

        // Streaming step with carried state: host::step on flex, burn's step on wgpu.
        let xh = random(series * (N_FEATURES + hidden), &mut rng);
        let cs = random(series * hidden, &mut rng);
        let mut scratch = Scratch::default();
        let (_, c) = time(&format!("stream_step/h{hidden} cpu"), reps, || {
            black_box(host::step(&w, &xh, &cs, series, &mut scratch).expect("step"));
        });
        let (first, g) = time(&format!("stream_step/h{hidden} wgpu"), reps, || {
            black_box(net.step_host(xh.clone(), cs.clone(), series).expect("step"));
        });
        rows.push(Row {
            figure: format!("streaming step, {series} series"),
            hidden,
            cpu: c,
            gpu: g,
            gpu_first: first,
        });
    }

    // The model's update for one bar (hidden size of the default settings).
    let symbols: Vec<String> = (0..series).map(|i| format!("S{i}-USDT")).collect();
    let names: Vec<&str> = symbols.iter().map(String::as_str).collect();
    let candles = synthetic_candles(&names, 60, 3);
    let refs: Vec<&Candle> = candles.iter().collect();
    let settings = LstmSettings {
        training: Training::Off,
        ..LstmSettings::default()
    };
    let hidden = settings.hidden;
    let bar = |d: &Device, what: &str| {
        let mut model = LstmModel::on_device(settings.clone(), d.clone()).expect("model");
        // Every series warmed up; then the last bar again and again (the features move on,
        // which costs the same as fresh bars).
        model.update(&refs[..series * 59], &HORIZONS);
        let last = &refs[series * 59..];
        time(what, reps, || {
            black_box(model.update(last, &HORIZONS));
        })
    };
    let (_, c) = bar(&cpu, "model_bar cpu");
    let (first, g) = bar(&gpu, "model_bar wgpu");
    rows.push(Row {
        figure: format!("model update, one bar of {series} series"),
        hidden,
        cpu: c,
        gpu: g,
        gpu_first: first,
    });

    println!("| figure | H | CPU ms | wgpu ms | wgpu / CPU | wgpu first call ms |");
    println!("| --- | ---: | ---: | ---: | ---: | ---: |");
    for r in &rows {
        println!(
            "| {} | {} | {:.3} | {:.3} | {:.2} | {:.1} |",
            r.figure,
            r.hidden,
            r.cpu,
            r.gpu,
            r.gpu / r.cpu,
            r.gpu_first
        );
    }
}
