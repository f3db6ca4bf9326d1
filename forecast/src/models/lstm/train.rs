//! Training: batches of windows drawn from the series' histories, one pinball-loss gradient
//! step (on the CPU by [`crate::models::lstm::host_train`], on other devices by burn's autodiff), and Adam
//! with global-norm gradient clipping on the host.
//!
//! Adam (Kingma & Ba) for parameter vector `θ` and gradient `g` at step `t`:
//!
//! ```text
//! g  ← g · min(1, κ / ‖g‖₂)            (clip the global norm to κ)
//! m  ← β₁·m + (1 − β₁)·g
//! v  ← β₂·v + (1 − β₂)·g²
//! θ  ← θ − η · (m / (1 − β₁ᵗ)) / (√(v / (1 − β₂ᵗ)) + ε)
//! ```
//!
//! The optimizer lives on the host in `f32` vectors (arithmetic in `f64`) so that its state is exact in
//! checkpoints and identical whatever device computed the gradients.

use anyhow::{Result, ensure};
use burn::tensor::{Device, Tensor, TensorData};

use crate::models::lstm::batch::Batch;
use crate::models::lstm::net::{LstmNet, Weights, pinball, read};

/// Optimizer settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamSettings {
    /// Learning rate `η`.
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    /// Global gradient-norm clip `κ`.
    pub clip_norm: f64,
}

impl Default for AdamSettings {
    fn default() -> Self {
        Self {
            lr: 2e-3,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            clip_norm: 1.0,
        }
    }
}

/// Adam's state.
#[derive(Debug, Clone, PartialEq)]
pub struct Adam {
    pub steps: u64,
    pub m: Vec<f32>,
    pub v: Vec<f32>,
}

impl Adam {
    pub fn new(parameters: usize) -> Self {
        Self {
            steps: 0,
            m: vec![0.0; parameters],
            v: vec![0.0; parameters],
        }
    }

    /// One update of `theta` with gradient `grad` (see the module docs).
    pub fn update(&mut self, s: &AdamSettings, theta: &mut [f32], grad: &[f32]) -> Result<()> {
        ensure!(
            theta.len() == grad.len() && grad.len() == self.m.len(),
            "optimizer sizes differ"
        );
        let norm = grad
            .iter()
            .map(|&g| f64::from(g) * f64::from(g))
            .sum::<f64>()
            .sqrt();
        if !norm.is_finite() {
            // A non-finite gradient would poison the weights: skip the step.
            return Ok(());
        }
        let scale = if norm > s.clip_norm {
            s.clip_norm / norm
        } else {
            1.0
        };
        self.steps += 1;
        let t = self.steps as i32;
        let (b1, b2) = (s.beta1, s.beta2);
        let (c1, c2) = (1.0 - b1.powi(t), 1.0 - b2.powi(t));
        for (((p, &g), m), v) in theta.iter_mut().zip(grad).zip(&mut self.m).zip(&mut self.v) {
            let g = f64::from(g) * scale;
            let mm = b1 * f64::from(*m) + (1.0 - b1) * g;
            let vv = b2 * f64::from(*v) + (1.0 - b2) * g * g;
            *m = mm as f32;
            *v = vv as f32;
            let step = s.lr * (mm / c1) / ((vv / c2).sqrt() + s.eps);
            *p = (f64::from(*p) - step) as f32;
        }
        Ok(())
    }
}

/// One gradient step on `device` (an autodiff device): forward, pinball loss, backward, then
/// Adam on the host. Returns the batch loss before the update. On the CPU (`flex`) the
/// gradient comes from [`crate::models::lstm::host_train`]; elsewhere from burn's autodiff.
pub fn train_step(
    weights: &mut Weights,
    adam: &mut Adam,
    settings: &AdamSettings,
    batch: &Batch,
    tau: &[f32],
    device: &Device,
) -> Result<f32> {
    let (value, g) = if on_host(device) {
        crate::models::lstm::host_train::gradient(weights, batch, tau)?
    } else {
        burn_gradient(weights, batch, tau, device)?
    };
    let mut theta = weights.flat();
    adam.update(settings, &mut theta, &g)?;
    weights.set_flat(&theta)?;
    Ok(value)
}

/// Whether `device` is the CPU (`flex`, with or without autodiff): the host code runs there.
fn on_host(device: &Device) -> bool {
    device.clone().without_autodiff() == Device::flex()
}

/// The batch loss and its gradient in [`Weights::flat`]'s layout, from burn's autodiff on
/// `device` (an autodiff device).
pub fn burn_gradient(
    weights: &Weights,
    batch: &Batch,
    tau: &[f32],
    device: &Device,
) -> Result<(f32, Vec<f32>)> {
    crate::models::lstm::host_train::check(weights, batch, tau)?;
    let d = weights.dims;
    let s = batch.shape;
    let net = LstmNet::new(weights, device);
    let x = Tensor::<3>::from_data(
        TensorData::new(batch.x.clone(), [s.steps, s.batch, d.inputs]),
        device,
    );
    let rows = (s.steps - s.burn_in) * s.batch;
    let y = Tensor::<2>::from_data(TensorData::new(batch.y.clone(), [rows, d.outputs]), device);
    let tau = Tensor::<2>::from_data(TensorData::new(tau.to_vec(), [1, d.outputs]), device);
    let loss = pinball(net.sequence(x, s.burn_in), y, tau);
    let grads = loss.backward();
    let value = read(loss)?.first().copied().unwrap_or(f32::NAN);
    let grad = |t: Tensor<2>| -> Result<Vec<f32>> {
        t.grad(&grads)
            .map_or_else(|| Ok(vec![0.0; t.dims().iter().product()]), read)
    };
    let grad1 = |t: Tensor<1>| -> Result<Vec<f32>> {
        t.grad(&grads)
            .map_or_else(|| Ok(vec![0.0; t.dims()[0]]), read)
    };
    let g = [
        grad(net.w.val())?,
        grad1(net.b.val())?,
        grad(net.head_w.val())?,
        grad1(net.head_b.val())?,
    ]
    .concat();
    Ok((value, g))
}

/// The pinball loss of `weights` on `batch`, without a gradient (validation).
pub fn batch_loss(weights: &Weights, batch: &Batch, tau: &[f32], device: &Device) -> Result<f32> {
    if on_host(device) {
        return crate::models::lstm::host_train::loss(weights, batch, tau);
    }
    let d = weights.dims;
    let s = batch.shape;
    let device = device.clone().without_autodiff();
    let net = LstmNet::new(weights, &device);
    let x = Tensor::<3>::from_data(
        TensorData::new(batch.x.clone(), [s.steps, s.batch, d.inputs]),
        &device,
    );
    let rows = (s.steps - s.burn_in) * s.batch;
    let y = Tensor::<2>::from_data(TensorData::new(batch.y.clone(), [rows, d.outputs]), &device);
    let tau = Tensor::<2>::from_data(TensorData::new(tau.to_vec(), [1, d.outputs]), &device);
    let loss = pinball(net.sequence(x, s.burn_in), y, tau);
    Ok(read(loss)?.first().copied().unwrap_or(f32::NAN))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::lstm::batch::{BatchShape, sample_batch};
    use crate::models::lstm::features::{FeatureSettings, History};
    use crate::models::lstm::net::Rng;

    #[test]
    fn adam_first_step_moves_each_parameter_by_the_learning_rate() {
        // Bias correction makes the first step η·sign(g) (up to ε).
        let s = AdamSettings {
            clip_norm: 1e9,
            ..AdamSettings::default()
        };
        let mut a = Adam::new(3);
        let mut theta = vec![1.0f32, 1.0, 1.0];
        a.update(&s, &mut theta, &[0.5, -2.0, 0.0]).expect("sizes");
        assert!((f64::from(theta[0]) - (1.0 - 2e-3)).abs() < 1e-6);
        assert!((f64::from(theta[1]) - (1.0 + 2e-3)).abs() < 1e-6);
        assert_eq!(theta[2], 1.0);
        // Second step with the same gradient: m̂ = g, v̂ = g², again η·sign(g).
        a.update(&s, &mut theta, &[0.5, -2.0, 0.0]).expect("sizes");
        assert!((f64::from(theta[0]) - (1.0 - 4e-3)).abs() < 1e-6);
        // Clipping scales the gradient, not the step sign; a NaN gradient is skipped.
        a.update(&s, &mut theta, &[f32::NAN, 0.0, 0.0])
            .expect("sizes");
        assert_eq!(a.steps, 2);
    }

    #[test]
    fn batches_hold_windows_and_their_targets() {
        let fs = FeatureSettings::default();
        let mut h = History::default();
        for i in 0..10 {
            let v = i as f32;
            h.push([v, v, v, v, 0.001 * v, 0.01], 100);
        }
        let short = History::default();
        let shape = BatchShape {
            batch: 3,
            steps: 4,
            burn_in: 1,
        };
        let mut rng = Rng(5);
        let b = sample_batch(&[&short, &h], shape, &[1, 2], 2, &fs, &mut rng).expect("batch");
        assert_eq!(b.x.len(), 4 * 3 * 4);
        assert_eq!(b.y.len(), 3 * 3 * 2 * 2);
        // Sequence 0: consecutive bars; its target at step 1 is (r[s+2]) / (σ·1).
        let s0 = b.x[0];
        assert_eq!(b.x[3 * 4], s0 + 1.0, "next step of the same sequence");
        let y_h1 = b.y[0];
        let expect = 0.001 * (s0 + 2.0) / 0.01;
        assert!((y_h1 - expect).abs() < 1e-5, "{y_h1} vs {expect}");
        assert_eq!(b.y[1], y_h1, "repeated per quantile");
        assert!(
            sample_batch(&[&short], shape, &[1], 2, &fs, &mut rng).is_none(),
            "nothing long enough"
        );
    }
}
