//! The network: one LSTM layer with fused gates and a linear quantile head, written with few,
//! large tensor operations (on `flex` the per-operation overhead dominates at these sizes).
//!
//! With input `xₜ ∈ ℝᶠ`, state `hₜ₋₁, cₜ₋₁ ∈ ℝᴴ`, one weight matrix `W ∈ ℝ⁽ᶠ⁺ᴴ⁾ˣ⁴ᴴ` (the
//! input and recurrent weights stacked, so a step is one matmul of `[xₜ | hₜ₋₁]`) and bias
//! `b ∈ ℝ⁴ᴴ`, with the gate columns ordered `[i | f | o | g]`:
//!
//! ```text
//! z  = [xₜ | hₜ₋₁]·W + b
//! [i | f | o] = σ(z[0..3H])          one sigmoid over three gates
//! g  = tanh(z[3H..4H])
//! cₜ = f ⊙ cₜ₋₁ + i ⊙ g
//! hₜ = o ⊙ tanh(cₜ)
//! ŷₜ = hₜ·A + a                      A ∈ ℝᴴˣᴼ, O = horizons × quantiles
//! ```
//!
//! Output `k·Q + j` is quantile `j` of horizon `k` (in the scaled units of
//! [`crate::models::lstm::features`]). Training uses the pinball loss averaged over outputs and steps,
//! `L = mean(max(τ·e, (τ − 1)·e))` with `e = y − ŷ`, computed as `τ·e − min(e, 0)`.
//!
//! The host copy of the parameters, [`Weights`], is the source of truth (checkpoints, hot
//! swaps, the optimizer); [`LstmNet`] is its burn module on a device.

use anyhow::{Result, anyhow, ensure};
use burn::module::{Module, Param, ParamId};
use burn::tensor::activation::sigmoid;
use burn::tensor::{Device, Tensor, TensorData};

/// Layer sizes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dims {
    /// Features per step `F`.
    pub inputs: usize,
    /// Hidden size `H`.
    pub hidden: usize,
    /// Head outputs `O`.
    pub outputs: usize,
}

impl Dims {
    pub fn gates(&self) -> usize {
        4 * self.hidden
    }
    /// Parameter count: `(F + H)·4H + 4H + H·O + O`.
    pub fn parameters(&self) -> usize {
        (self.inputs + self.hidden) * self.gates()
            + self.gates()
            + self.hidden * self.outputs
            + self.outputs
    }
}

/// The parameters on the host, row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct Weights {
    pub dims: Dims,
    /// `W`, `(F + H) × 4H`.
    pub w: Vec<f32>,
    /// `b`, `4H`.
    pub b: Vec<f32>,
    /// `A`, `H × O`.
    pub head_w: Vec<f32>,
    /// `a`, `O`.
    pub head_b: Vec<f32>,
}

impl Weights {
    /// PyTorch-style initialisation from a seed: `W ~ U(±1/√H)`, forget-gate bias 1, the head
    /// scaled down by 10 and its bias set to `head_bias` — so an untrained network outputs
    /// about `head_bias` whatever its input (the caller passes the standard normal quantiles).
    pub fn init(dims: Dims, head_bias: &[f32], seed: u64) -> Result<Self> {
        ensure!(
            head_bias.len() == dims.outputs,
            "head bias has {} values for {} outputs",
            head_bias.len(),
            dims.outputs
        );
        let mut rng = Rng(seed);
        let k = 1.0 / (dims.hidden as f64).sqrt();
        let mut uniform = |n: usize, scale: f64| -> Vec<f32> {
            (0..n)
                .map(|_| (scale * k * (2.0 * rng.unit() - 1.0)) as f32)
                .collect()
        };
        let w = uniform((dims.inputs + dims.hidden) * dims.gates(), 1.0);
        let mut b = uniform(dims.gates(), 1.0);
        for v in &mut b[dims.hidden..2 * dims.hidden] {
            *v += 1.0;
        }
        let head_w = uniform(dims.hidden * dims.outputs, 0.1);
        Ok(Self {
            dims,
            w,
            b,
            head_w,
            head_b: head_bias.to_vec(),
        })
    }

    /// All parameters in one vector (`W`, `b`, `A`, `a`), for the optimizer.
    pub fn flat(&self) -> Vec<f32> {
        [&self.w[..], &self.b, &self.head_w, &self.head_b].concat()
    }

    /// Writes [`Weights::flat`]'s layout back.
    pub fn set_flat(&mut self, flat: &[f32]) -> Result<()> {
        ensure!(
            flat.len() == self.dims.parameters(),
            "{} values for {} parameters",
            flat.len(),
            self.dims.parameters()
        );
        let (w, rest) = flat.split_at(self.w.len());
        let (b, rest) = rest.split_at(self.b.len());
        let (hw, hb) = rest.split_at(self.head_w.len());
        self.w.copy_from_slice(w);
        self.b.copy_from_slice(b);
        self.head_w.copy_from_slice(hw);
        self.head_b.copy_from_slice(hb);
        Ok(())
    }
}

/// The network as a burn module on one device.
#[derive(Module, Debug)]
pub struct LstmNet {
    /// `W`, `(F + H) × 4H`.
    pub w: Param<Tensor<2>>,
    /// `b`, `4H`.
    pub b: Param<Tensor<1>>,
    /// `A`, `H × O`.
    pub head_w: Param<Tensor<2>>,
    /// `a`, `O`.
    pub head_b: Param<Tensor<1>>,
}

/// One streaming step's results on the host, row-major `n × H`, `n × H`, `n × O`.
#[derive(Debug, Clone, PartialEq)]
pub struct StepOut {
    pub h: Vec<f32>,
    pub c: Vec<f32>,
    pub out: Vec<f32>,
}

impl LstmNet {
    /// The module for `weights` on `device` (parameters track gradients on an autodiff
    /// device).
    pub fn new(weights: &Weights, device: &Device) -> Self {
        let d = weights.dims;
        // Fixed parameter ids, so that the record bytes of equal weights are equal.
        let param = |id: u64, t: Tensor<2>| Param::initialized(ParamId::from(id), t);
        let p2 = |id, v: &[f32], rows: usize, cols: usize| {
            param(
                id,
                tracked(Tensor::from_data(
                    TensorData::new(v.to_vec(), [rows, cols]),
                    device,
                )),
            )
        };
        let p1 = |id, v: &[f32]| {
            Param::initialized(
                ParamId::from(id),
                tracked(Tensor::<1>::from_data(
                    TensorData::new(v.to_vec(), [v.len()]),
                    device,
                )),
            )
        };
        Self {
            w: p2(1, &weights.w, d.inputs + d.hidden, d.gates()),
            b: p1(2, &weights.b),
            head_w: p2(3, &weights.head_w, d.hidden, d.outputs),
            head_b: p1(4, &weights.head_b),
        }
    }

    /// Reads the parameters back to the host.
    pub fn weights(&self) -> Result<Weights> {
        let [rows, gates] = self.w.val().dims();
        let [hidden, outputs] = self.head_w.val().dims();
        ensure!(
            gates == 4 * hidden && rows > hidden,
            "inconsistent LSTM shapes"
        );
        Ok(Weights {
            dims: Dims {
                inputs: rows - hidden,
                hidden,
                outputs,
            },
            w: read(self.w.val())?,
            b: read(self.b.val())?,
            head_w: read(self.head_w.val())?,
            head_b: read(self.head_b.val())?,
        })
    }

    fn hidden(&self) -> usize {
        self.head_w.val().dims()[0]
    }

    /// The cell update from pre-activations `z` (`n × 4H`) and the previous cell state.
    fn cell(z: Tensor<2>, c: Tensor<2>, hidden: usize) -> (Tensor<2>, Tensor<2>) {
        let s = sigmoid(z.clone().narrow(1, 0, 3 * hidden));
        let g = z.narrow(1, 3 * hidden, hidden).tanh();
        let i = s.clone().narrow(1, 0, hidden);
        let f = s.clone().narrow(1, hidden, hidden);
        let o = s.narrow(1, 2 * hidden, hidden);
        let c = f * c + i * g;
        let h = o * c.clone().tanh();
        (h, c)
    }

    /// One step for `n` rows: `xh` is `[xₜ | hₜ₋₁]` (`n × (F + H)`), `c` is `cₜ₋₁` (`n × H`);
    /// returns `(hₜ, cₜ, ŷₜ)`.
    pub fn step(&self, xh: Tensor<2>, c: Tensor<2>) -> (Tensor<2>, Tensor<2>, Tensor<2>) {
        let z = xh.matmul(self.w.val()) + self.b.val().unsqueeze::<2>();
        let (h, c) = Self::cell(z, c, self.hidden());
        let out = h.clone().matmul(self.head_w.val()) + self.head_b.val().unsqueeze::<2>();
        (h, c, out)
    }

    /// [`LstmNet::step`] from and to the host, with one upload per input and one checked
    /// read-back: `xh` is `n × (F + H)`, `c` is `n × H`, row-major.
    pub fn step_host(&self, xh: Vec<f32>, c: Vec<f32>, n: usize) -> Result<StepOut> {
        let device = self.w.val().device();
        let hidden = self.hidden();
        let width = xh.len() / n.max(1);
        ensure!(
            xh.len() == n * width && c.len() == n * hidden,
            "step input sizes do not match {n} rows"
        );
        let xh = Tensor::<2>::from_data(TensorData::new(xh, [n, width]), &device);
        let c = Tensor::<2>::from_data(TensorData::new(c, [n, hidden]), &device);
        let (h, c, out) = self.step(xh, c);
        let outputs = out.dims()[1];
        let all = read(Tensor::cat(vec![h, c, out], 1))?;
        let row = 2 * hidden + outputs;
        let mut res = StepOut {
            h: Vec::with_capacity(n * hidden),
            c: Vec::with_capacity(n * hidden),
            out: Vec::with_capacity(n * outputs),
        };
        for r in all.chunks_exact(row) {
            res.h.extend_from_slice(&r[..hidden]);
            res.c.extend_from_slice(&r[hidden..2 * hidden]);
            res.out.extend_from_slice(&r[2 * hidden..]);
        }
        Ok(res)
    }

    /// Runs `x` (time-major `T × B × F`) from a zero state and returns the head's outputs for
    /// steps `burn_in..T`, time-major `((T − burn_in)·B) × O`. Each step is the streaming step's
    /// one matmul of `[xₜ | hₜ₋₁]`; `xₜ` is cut from the input, which carries no gradient, so
    /// the backward pass stays linear in `T` (cutting steps out of a projection of all steps
    /// would give every step a gradient the size of the whole projection: quadratic in `T`).
    pub fn sequence(&self, x: Tensor<3>, burn_in: usize) -> Tensor<2> {
        let [steps, batch, inputs] = x.dims();
        let hidden = self.hidden();
        let x = x.detach();
        let w = self.w.val();
        let b = self.b.val().unsqueeze::<2>();
        let device = w.device();
        let mut h = Tensor::<2>::zeros([batch, hidden], &device);
        let mut c = Tensor::<2>::zeros([batch, hidden], &device);
        let mut kept = Vec::with_capacity(steps.saturating_sub(burn_in));
        for t in 0..steps {
            let xt = x.clone().narrow(0, t, 1).reshape([batch, inputs]);
            let z = Tensor::cat(vec![xt, h], 1).matmul(w.clone()) + b.clone();
            (h, c) = Self::cell(z, c, hidden);
            if t >= burn_in {
                kept.push(h.clone());
            }
        }
        Tensor::cat(kept, 0).matmul(self.head_w.val()) + self.head_b.val().unsqueeze::<2>()
    }
}

/// A parameter tensor: tracks its gradient on an autodiff device, plain elsewhere.
fn tracked<const D: usize>(t: Tensor<D>) -> Tensor<D> {
    if t.is_autodiff() { t.require_grad() } else { t }
}

/// Mean pinball loss of `pred` against `target` (both `N × O`) at levels `tau` (`1 × O`).
pub fn pinball(pred: Tensor<2>, target: Tensor<2>, tau: Tensor<2>) -> Tensor<1> {
    let e = target - pred;
    (e.clone() * tau - e.clamp_max(0.0)).mean()
}

/// A tensor's values on the host, with a checked read-back.
pub fn read<const D: usize>(t: Tensor<D>) -> Result<Vec<f32>> {
    t.try_into_data()
        .map_err(|e| anyhow!("reading a tensor back from the device: {e:?}"))?
        .try_into_vec::<f32>()
        .map_err(|e| anyhow!("tensor data: {e:?}"))
}

/// SplitMix64: a small seeded generator for initialisation and sampling, so runs are
/// reproducible and the state fits in a checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rng(pub u64);

impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform on `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    /// Uniform on `0..n` (`n > 0`).
    pub fn below(&mut self, n: usize) -> usize {
        ((self.next_u64() as u128 * n as u128) >> 64) as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny() -> Weights {
        let dims = Dims {
            inputs: 2,
            hidden: 1,
            outputs: 1,
        };
        // Gates [i f o g]: rows x₀, x₁, h.
        Weights {
            dims,
            w: vec![
                0.5, 0.0, 1.0, 2.0, //
                0.0, 1.0, 0.0, -1.0, //
                1.0, 1.0, 1.0, 1.0,
            ],
            b: vec![0.0, 0.5, 0.0, 0.0],
            head_w: vec![3.0],
            head_b: vec![-1.0],
        }
    }

    fn sig(x: f64) -> f64 {
        1.0 / (1.0 + (-x).exp())
    }

    /// The step against the equations in the module docs, by hand.
    #[test]
    fn step_matches_the_lstm_equations() {
        let net = LstmNet::new(&tiny(), &Device::flex());
        let (x0, x1, h0, c0) = (0.3f64, -0.2f64, 0.1f64, 0.4f64);
        let out = net
            .step_host(vec![x0 as f32, x1 as f32, h0 as f32], vec![c0 as f32], 1)
            .expect("step");
        let z = [0.5 * x0 + h0, x1 + h0 + 0.5, x0 + h0, 2.0 * x0 - x1 + h0];
        let c = sig(z[1]) * c0 + sig(z[0]) * z[3].tanh();
        let h = sig(z[2]) * c.tanh();
        assert!((f64::from(out.c[0]) - c).abs() < 1e-6);
        assert!((f64::from(out.h[0]) - h).abs() < 1e-6);
        assert!((f64::from(out.out[0]) - (3.0 * h - 1.0)).abs() < 1e-6);
    }

    /// A sequence from a zero state equals the same steps one at a time.
    #[test]
    fn sequence_equals_repeated_steps() {
        let w = Weights::init(
            Dims {
                inputs: 3,
                hidden: 4,
                outputs: 2,
            },
            &[0.5, -0.5],
            9,
        )
        .expect("init");
        let device = Device::flex();
        let net = LstmNet::new(&w, &device);
        let (steps, batch) = (5, 2);
        let mut rng = Rng(3);
        let x: Vec<f32> = (0..steps * batch * 3)
            .map(|_| (rng.unit() * 2.0 - 1.0) as f32)
            .collect();
        let seq = read(net.sequence(
            Tensor::<3>::from_data(TensorData::new(x.clone(), [steps, batch, 3]), &device),
            2,
        ))
        .expect("sequence");
        assert_eq!(seq.len(), (steps - 2) * batch * 2);
        let (mut h, mut c) = (vec![0f32; batch * 4], vec![0f32; batch * 4]);
        for t in 0..steps {
            let mut xh = Vec::new();
            for b in 0..batch {
                xh.extend_from_slice(&x[(t * batch + b) * 3..][..3]);
                xh.extend_from_slice(&h[b * 4..][..4]);
            }
            let o = net.step_host(xh, c, batch).expect("step");
            (h, c) = (o.h, o.c);
            if t >= 2 {
                for (a, b) in o.out.iter().zip(&seq[(t - 2) * batch * 2..][..batch * 2]) {
                    assert!((a - b).abs() < 1e-5, "{a} vs {b}");
                }
            }
        }
    }

    #[test]
    fn pinball_loss_by_hand() {
        let device = Device::flex();
        let t = |v: Vec<f32>, cols: usize| {
            let rows = v.len() / cols;
            Tensor::<2>::from_data(TensorData::new(v, [rows, cols]), &device)
        };
        // e = y − ŷ = [1, −2]; τ = [0.9, 0.1]: 0.9·1 and (0.1 − 1)·(−2) = 1.8; mean 1.35.
        let loss = read(pinball(
            t(vec![0.0, 2.0], 2),
            t(vec![1.0, 0.0], 2),
            t(vec![0.9, 0.1], 2),
        ))
        .expect("loss");
        assert!((loss[0] - 1.35).abs() < 1e-6);
    }

    #[test]
    fn weights_round_trip_through_the_module_and_the_flat_vector() {
        let w = Weights::init(
            Dims {
                inputs: 4,
                hidden: 8,
                outputs: 10,
            },
            &[0.0; 10],
            1,
        )
        .expect("init");
        assert_eq!(w.flat().len(), w.dims.parameters());
        let back = LstmNet::new(&w, &Device::flex()).weights().expect("read");
        assert_eq!(back, w);
        let mut z = w.clone();
        z.set_flat(&vec![0.0; w.dims.parameters()]).expect("size");
        z.set_flat(&w.flat()).expect("size");
        assert_eq!(z, w);
        assert!(z.set_flat(&[1.0]).is_err());
    }
}
