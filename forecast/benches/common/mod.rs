//! What the LSTM benches share: the shapes of `scripts/bench_lstm.py` (PyTorch), weights, random
//! inputs and the training batch.

use tickcast_forecast::models::lstm::batch::{Batch, BatchShape};
use tickcast_forecast::models::lstm::features::N_FEATURES;
use tickcast_forecast::models::lstm::net::{Dims, Rng, Weights};

/// Sequences in a training or inference batch.
pub const BATCH: usize = 256;
/// Steps per sequence.
pub const STEPS: usize = 64;
/// Outputs: 5 quantiles at 4 horizons.
pub const OUTPUTS: usize = 20;

/// Weights for LSTM(N_FEATURES → `hidden`) + Linear(`hidden` → OUTPUTS), seed 1.
pub fn weights(hidden: usize) -> Weights {
    let dims = Dims {
        inputs: N_FEATURES,
        hidden,
        outputs: OUTPUTS,
    };
    Weights::init(dims, &[0.0; OUTPUTS], 1).expect("weights")
}

/// `n` values uniform in [-1, 1).
pub fn random(n: usize, rng: &mut Rng) -> Vec<f32> {
    (0..n).map(|_| (rng.unit() * 2.0 - 1.0) as f32).collect()
}

/// The outputs' quantile levels.
pub fn tau() -> Vec<f32> {
    [0.025f32, 0.1, 0.5, 0.9, 0.975].repeat(OUTPUTS / 5)
}

/// A random batch of BATCH sequences × STEPS steps, inputs then targets drawn from `rng`.
pub fn batch(rng: &mut Rng) -> Batch {
    Batch {
        shape: BatchShape {
            batch: BATCH,
            steps: STEPS,
            burn_in: 0,
        },
        x: random(STEPS * BATCH * N_FEATURES, rng),
        y: random(STEPS * BATCH * OUTPUTS, rng),
    }
}
