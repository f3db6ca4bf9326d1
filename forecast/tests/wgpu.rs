//! `flex` and `wgpu` agree: the same weights and inputs give the same streaming step, sequence
//! and model forecasts within an absolute tolerance of `TOL = 1e-4` (both compute in `f32`;
//! they differ in summation order and in the WGSL `exp`/`tanh`: ≤ 2.4e-7 on Mesa lavapipe, so 1e-4
//! leaves room for other adapters while still catching a wrong kernel) — and a training step
//! runs on `wgpu`. Needs the `wgpu` feature and an adapter; in CI that is Mesa's lavapipe
//! (`mesa-vulkan-drivers`), whose first run compiles kernels for minutes.

use burn::tensor::{Device, Tensor, TensorData};
use tickcast_core::domain::Candle;
use tickcast_forecast::Forecaster;
use tickcast_forecast::models::lstm::batch::{Batch, BatchShape};
use tickcast_forecast::models::lstm::device::probe_wgpu;
use tickcast_forecast::models::lstm::features::N_FEATURES;
use tickcast_forecast::models::lstm::net::{Dims, LstmNet, Rng, Weights, read};
use tickcast_forecast::models::lstm::train::{Adam, AdamSettings, train_step};
use tickcast_forecast::models::lstm::{LstmModel, LstmSettings, Training};
use tickcast_forecast::testing::synthetic_candles;

const TOL: f32 = 1e-4;

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

#[test]
fn wgpu_agrees_with_flex_and_trains() {
    let gpu = probe_wgpu().expect("a wgpu adapter (Mesa lavapipe in CI)");
    let cpu = Device::flex();
    let dims = Dims {
        inputs: N_FEATURES,
        hidden: 32,
        outputs: 20,
    };
    let w = Weights::init(dims, &[0.1; 20], 3).expect("weights");
    let mut rng = Rng(8);
    let mut rand =
        |n: usize| -> Vec<f32> { (0..n).map(|_| (rng.unit() * 2.0 - 1.0) as f32).collect() };

    // One streaming step for 50 rows.
    let n = 50;
    let (xh, c) = (rand(n * (N_FEATURES + 32)), rand(n * 32));
    let a = LstmNet::new(&w, &cpu)
        .step_host(xh.clone(), c.clone(), n)
        .expect("flex step");
    let b = LstmNet::new(&w, &gpu)
        .step_host(xh, c, n)
        .expect("wgpu step");
    let step_diff = max_diff(&a.h, &b.h)
        .max(max_diff(&a.c, &b.c))
        .max(max_diff(&a.out, &b.out));
    eprintln!("step: max |flex − wgpu| = {step_diff:e}");
    assert!(step_diff < TOL, "{step_diff}");

    // A 16-step sequence for 8 rows.
    let x = rand(16 * 8 * N_FEATURES);
    let seq = |d: &Device| {
        read(LstmNet::new(&w, d).sequence(
            Tensor::<3>::from_data(TensorData::new(x.clone(), [16, 8, N_FEATURES]), d),
            4,
        ))
        .expect("sequence")
    };
    let seq_diff = max_diff(&seq(&cpu), &seq(&gpu));
    eprintln!("sequence: max |flex − wgpu| = {seq_diff:e}");
    assert!(seq_diff < TOL, "{seq_diff}");

    // A training step on wgpu: the same loss as on flex, and the weights move.
    let shape = BatchShape {
        batch: 8,
        steps: 16,
        burn_in: 4,
    };
    let batch = Batch {
        shape,
        x: x.clone(),
        y: rand(12 * 8 * 20),
    };
    let tau = [0.025f32, 0.1, 0.5, 0.9, 0.975].repeat(4);
    let mut losses = Vec::new();
    for d in [&cpu, &gpu] {
        let mut wt = w.clone();
        let mut adam = Adam::new(dims.parameters());
        let loss = train_step(
            &mut wt,
            &mut adam,
            &AdamSettings::default(),
            &batch,
            &tau,
            &d.clone().autodiff(),
        )
        .expect("train step");
        assert!(loss.is_finite());
        assert_ne!(wt, w, "weights moved");
        assert!(wt.flat().iter().all(|v| v.is_finite()));
        losses.push(loss);
    }
    eprintln!("loss flex {} wgpu {}", losses[0], losses[1]);
    assert!((losses[0] - losses[1]).abs() < TOL);

    // The whole model: same forecasts (relative tolerance on prices).
    let candles = synthetic_candles(&["BTC-USDT", "ETH-USDT"], 40, 2);
    let refs: Vec<&Candle> = candles.iter().collect();
    let settings = LstmSettings {
        training: Training::Off,
        min_returns: 5,
        ..LstmSettings::default()
    };
    let mut on_cpu = LstmModel::on_device(settings.clone(), cpu).expect("flex model");
    let mut on_gpu = LstmModel::on_device(settings, gpu).expect("wgpu model");
    let pa = on_cpu.update(&refs, &[1, 60]);
    let pb = on_gpu.update(&refs, &[1, 60]);
    let mut worst = 0f64;
    for (x, y) in pa.iter().flatten().zip(pb.iter().flatten()) {
        for (u, v) in [
            (x.lo95, y.lo95),
            (x.lo80, y.lo80),
            (x.hi80, y.hi80),
            (x.hi95, y.hi95),
        ] {
            worst = worst.max((u / v - 1.0).abs());
        }
    }
    eprintln!("forecasts: max relative difference {worst:e}");
    assert_eq!(
        pa.iter().map(Vec::len).sum::<usize>(),
        pb.iter().map(Vec::len).sum::<usize>()
    );
    assert!(worst < f64::from(TOL));
}
