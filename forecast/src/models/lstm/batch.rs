//! Training batches: windows drawn from the series' histories, time-major, with each
//! horizon's target repeated for its quantiles. What the gradient (on the host,
//! [`crate::models::lstm::host_train`], or through burn, [`crate::models::lstm::train`]) is computed on.

use crate::models::lstm::features::{BAR_VALUES, FeatureSettings, History, N_FEATURES, target};
use crate::models::lstm::net::Rng;

/// Shapes of a training batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchShape {
    /// Sequences per batch `B`.
    pub batch: usize,
    /// Steps per sequence `T`.
    pub steps: usize,
    /// Leading steps that only warm the state up (no loss).
    pub burn_in: usize,
}

/// One batch, time-major, on the host.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    pub shape: BatchShape,
    /// `T × B × F` inputs.
    pub x: Vec<f32>,
    /// `(T − burn_in) × B × O` targets (each horizon's target repeated for its quantiles).
    pub y: Vec<f32>,
}

/// Draws a batch of windows: each sequence picks a history uniformly among those long enough
/// (`T + max horizon` bars) and a start uniformly inside it. `None` when no history is long
/// enough. The draw only depends on `rng` and the histories, in the order given.
pub fn sample_batch(
    histories: &[&History],
    shape: BatchShape,
    horizons: &[u32],
    quantiles: usize,
    fs: &FeatureSettings,
    rng: &mut Rng,
) -> Option<Batch> {
    let max_h = horizons.iter().copied().max().unwrap_or(1) as usize;
    let need = shape.steps + max_h;
    let eligible: Vec<&History> = histories
        .iter()
        .copied()
        .filter(|h| h.len() >= need)
        .collect();
    if eligible.is_empty() || shape.batch == 0 || shape.steps <= shape.burn_in {
        return None;
    }
    let starts: Vec<(&History, usize)> = (0..shape.batch)
        .map(|_| {
            let h = eligible[rng.below(eligible.len())];
            (h, rng.below(h.len() - need + 1))
        })
        .collect();
    let outputs = horizons.len() * quantiles;
    let kept = shape.steps - shape.burn_in;
    let mut x = Vec::with_capacity(shape.steps * shape.batch * N_FEATURES);
    let mut y = Vec::with_capacity(kept * shape.batch * outputs);
    for t in 0..shape.steps {
        for &(h, start) in &starts {
            let bar: &[f32; BAR_VALUES] = &h.bars[start + t];
            x.extend_from_slice(&bar[..N_FEATURES]);
            if t >= shape.burn_in {
                for &hz in horizons {
                    let v = target(&h.bars, start + t, hz as usize, fs).unwrap_or(0.0);
                    y.extend(std::iter::repeat_n(v, quantiles));
                }
            }
        }
    }
    Some(Batch { shape, x, y })
}
