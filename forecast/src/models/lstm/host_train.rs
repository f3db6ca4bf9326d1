//! The training step's gradient on the CPU without burn's autodiff: the forward over the
//! batch with every step's activations kept, the pinball loss, and backpropagation through
//! time written out by hand — a handful of large matrix products instead of burn's dozen
//! small operations per step forward and again backward, each of which pays dispatch and
//! allocation on `flex`.
//!
//! Same network and loss as [`crate::models::lstm::net::LstmNet::sequence`] and [`crate::models::lstm::net::pinball`].
//! With `Zₜ = [xₜ | hₜ₋₁]·W + b`, gates `[i | f | o | g]`, `R = (T − burn_in)·B` scored rows
//! and `N = R·O` loss terms:
//!
//! ```text
//! ∂L/∂ŷ   = −(τ − 1[e < 0]) / N                     e = y − ŷ
//! ∂L/∂A   = Hᵀ·∂L/∂Ŷ,  ∂L/∂a = Σ_rows ∂L/∂Ŷ,  ∂L/∂H = ∂L/∂Ŷ·Aᵀ    (all steps at once)
//! per step, t = T−1 … 0, with dh = ∂L/∂hₜ (head + next step), dc carried from step t+1:
//!   dc  += dh ⊙ o ⊙ (1 − tanh²cₜ)
//!   dzᵢ = dc ⊙ g ⊙ i(1−i)     dz_f = dc ⊙ cₜ₋₁ ⊙ f(1−f)
//!   dzₒ = dh ⊙ tanh cₜ ⊙ o(1−o)   dz_g = dc ⊙ i ⊙ (1−g²)
//!   dc  ← dc ⊙ f,   dhₜ₋₁ = dZₜ·W_hᵀ
//! ∂L/∂W = Σₜ [xₜ | hₜ₋₁]ᵀ·dZₜ (one product over all steps), ∂L/∂b = Σ dZ
//! ```
//!
//! The matrix products use the `gemm` crate on one thread. Results depend on the shapes (the
//! kernel's blocking), which is harmless here: a training step's shapes are fixed by its
//! settings, so a given batch always gives the same gradient. The streaming step, whose
//! results must not depend on the batch, stays on [`crate::models::lstm::host::step`]. Tests check the
//! gradient against burn's autodiff on the same weights and batch.
#![allow(unsafe_code)] // `gemm` takes raw pointers: `mm` checks every extent before the call

use std::cell::RefCell;

use anyhow::{Result, ensure};

use crate::models::lstm::batch::Batch;
use crate::models::lstm::host::{sigmoid, tanh};
use crate::models::lstm::net::Weights;

/// A matrix operand: `rows × cols` values of `v` at `r·rs + c·cs`.
#[derive(Debug, Clone, Copy)]
struct Mat<'a> {
    v: &'a [f32],
    rows: usize,
    cols: usize,
    rs: usize,
    cs: usize,
}

impl<'a> Mat<'a> {
    /// Row-major and contiguous.
    fn new(v: &'a [f32], rows: usize, cols: usize) -> Self {
        Self {
            v,
            rows,
            cols,
            rs: cols,
            cs: 1,
        }
    }

    /// The transpose (no copy).
    fn t(self) -> Self {
        Self {
            rows: self.cols,
            cols: self.rows,
            rs: self.cs,
            cs: self.rs,
            ..self
        }
    }

    /// Every element the strides reach lies inside `v`.
    fn fits(&self) -> bool {
        self.rows == 0
            || self.cols == 0
            || (self.rows - 1) * self.rs + (self.cols - 1) * self.cs < self.v.len()
    }
}

/// `dst = a·b`, or `dst += a·b` when `accumulate`; `dst` is row-major `a.rows × b.cols`.
fn mm(dst: &mut [f32], a: Mat<'_>, b: Mat<'_>, accumulate: bool) -> Result<()> {
    let (m, k, n) = (a.rows, a.cols, b.cols);
    ensure!(
        b.rows == k && dst.len() == m * n && a.fits() && b.fits(),
        "matrix product of {}×{} by {}×{} into {} values",
        a.rows,
        a.cols,
        b.rows,
        b.cols,
        dst.len()
    );
    if m == 0 || n == 0 {
        return Ok(());
    }
    if k == 0 {
        if !accumulate {
            dst.fill(0.0);
        }
        return Ok(());
    }
    let s = |x: usize| x as isize;
    // SAFETY: every index the kernel forms is `r·rs + c·cs` with `r < rows`, `c < cols` of an
    // operand, which `fits` checked to be inside its slice; `dst` holds exactly `m·n` values at
    // `r·n + c`. The slices are borrowed for the whole call and `dst` is exclusive, so nothing
    // aliases. `f32` is one of the kernel's types.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            s(n),
            accumulate,
            a.v.as_ptr(),
            s(a.cs),
            s(a.rs),
            b.v.as_ptr(),
            s(b.cs),
            s(b.rs),
            1.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
    Ok(())
}

/// Buffers of one step, reused (a training step at the bench's shapes keeps ≈ 45 MB).
#[derive(Debug, Default)]
struct Trace {
    /// `T × B × (F + H)`: each step's `[xₜ | hₜ₋₁]`.
    xh: Vec<f32>,
    /// `T × B × 4H`: the gates after their activations; the backward overwrites each step's
    /// with its `dZ`.
    act: Vec<f32>,
    /// `(T + 1) × B × H`: `c₋₁ = 0`, then every `cₜ`.
    c: Vec<f32>,
    /// `T × B × H`: `tanh cₜ`.
    tc: Vec<f32>,
    /// `R × H`: the hidden states of the scored steps.
    hs: Vec<f32>,
    /// `R × O`: the head's outputs, then `∂L/∂Ŷ`.
    yhat: Vec<f32>,
    /// `R × H`: `∂L/∂H` from the head.
    dhs: Vec<f32>,
    /// `B × H`: `∂L/∂hₜ` and `∂L/∂cₜ` carried backwards.
    dh: Vec<f32>,
    dc: Vec<f32>,
}

thread_local! {
    static TRACE: RefCell<Trace> = RefCell::new(Trace::default());
}

fn sized(v: &mut Vec<f32>, n: usize) -> &mut [f32] {
    v.clear();
    v.resize(n, 0.0);
    v
}

/// Checks that the batch, `tau` and the weights fit the network's dimensions.
pub(crate) fn check(w: &Weights, batch: &Batch, tau: &[f32]) -> Result<()> {
    let d = w.dims;
    let s = batch.shape;
    ensure!(
        s.steps > s.burn_in && s.batch > 0,
        "a batch needs steps after its burn-in"
    );
    ensure!(
        tau.len() == d.outputs,
        "{} levels for {} outputs",
        tau.len(),
        d.outputs
    );
    ensure!(
        batch.x.len() == s.steps * s.batch * d.inputs
            && batch.y.len() == (s.steps - s.burn_in) * s.batch * d.outputs,
        "batch sizes do not match the network"
    );
    ensure!(
        w.w.len() == (d.inputs + d.hidden) * d.gates()
            && w.b.len() == d.gates()
            && w.head_w.len() == d.hidden * d.outputs
            && w.head_b.len() == d.outputs,
        "weights do not match their dimensions"
    );
    Ok(())
}

/// The forward over the batch from a zero state, keeping what the backward needs; leaves the
/// head's outputs for the scored steps in `tr.yhat`.
fn forward(w: &Weights, batch: &Batch, tr: &mut Trace) -> Result<()> {
    let d = w.dims;
    let (f, h, g) = (d.inputs, d.hidden, d.gates());
    let s = batch.shape;
    let (steps, b, burn) = (s.steps, s.batch, s.burn_in);
    let width = f + h;
    let rows = (steps - burn) * b;
    sized(&mut tr.xh, steps * b * width);
    sized(&mut tr.act, steps * b * g);
    sized(&mut tr.c, (steps + 1) * b * h);
    sized(&mut tr.tc, steps * b * h);
    sized(&mut tr.hs, rows * h);
    for t in 0..steps {
        let xh_t = &mut tr.xh[t * b * width..(t + 1) * b * width];
        for (row, x) in xh_t
            .chunks_exact_mut(width)
            .zip(batch.x[t * b * f..(t + 1) * b * f].chunks_exact(f))
        {
            row[..f].copy_from_slice(x);
        }
        let act = &mut tr.act[t * b * g..(t + 1) * b * g];
        mm(
            act,
            Mat::new(&tr.xh[t * b * width..(t + 1) * b * width], b, width),
            Mat::new(&w.w, width, g),
            false,
        )?;
        let (c_before, c_after) = tr.c.split_at_mut((t + 1) * b * h);
        let c_prev = &c_before[t * b * h..];
        let c_new = &mut c_after[..b * h];
        let tc = &mut tr.tc[t * b * h..(t + 1) * b * h];
        for r in 0..b {
            let z = &mut act[r * g..(r + 1) * g];
            for (v, &bias) in z.iter_mut().zip(&w.b) {
                *v += bias;
            }
            let (sig, gg) = z.split_at_mut(3 * h);
            for v in sig.iter_mut() {
                *v = sigmoid(*v);
            }
            for v in gg.iter_mut() {
                *v = tanh(*v);
            }
            let (i, rest) = sig.split_at(h);
            let (fg, o) = rest.split_at(h);
            let cp = &c_prev[r * h..(r + 1) * h];
            let cn = &mut c_new[r * h..(r + 1) * h];
            let tcr = &mut tc[r * h..(r + 1) * h];
            for j in 0..h {
                cn[j] = fg[j] * cp[j] + i[j] * gg[j];
                tcr[j] = tanh(cn[j]);
            }
            let ht = o.iter().zip(tcr.iter()).map(|(o, t)| o * t);
            if t + 1 < steps {
                let next = &mut tr.xh[((t + 1) * b + r) * width + f..((t + 1) * b + r + 1) * width];
                for (dst, v) in next.iter_mut().zip(ht.clone()) {
                    *dst = v;
                }
            }
            if t >= burn {
                let row = (t - burn) * b + r;
                for (dst, v) in tr.hs[row * h..(row + 1) * h].iter_mut().zip(ht) {
                    *dst = v;
                }
            }
        }
    }
    let yhat = sized(&mut tr.yhat, rows * d.outputs);
    mm(
        yhat,
        Mat::new(&tr.hs, rows, h),
        Mat::new(&w.head_w, h, d.outputs),
        false,
    )?;
    for row in yhat.chunks_exact_mut(d.outputs) {
        for (v, &a) in row.iter_mut().zip(&w.head_b) {
            *v += a;
        }
    }
    Ok(())
}

/// Mean pinball loss of `tr.yhat` against `y`; with `grad`, `tr.yhat` becomes `∂L/∂Ŷ`.
fn pinball(tr: &mut Trace, y: &[f32], tau: &[f32], grad: bool) -> f32 {
    let n = y.len().max(1) as f64;
    let scale = (1.0 / n) as f32;
    let mut loss = 0.0f64;
    for (pred, target) in tr
        .yhat
        .chunks_exact_mut(tau.len())
        .zip(y.chunks_exact(tau.len()))
    {
        for ((p, &yv), &q) in pred.iter_mut().zip(target).zip(tau) {
            let e = yv - *p;
            loss += f64::from(q * e - e.min(0.0));
            if grad {
                *p = -(q - if e < 0.0 { 1.0 } else { 0.0 }) * scale;
            }
        }
    }
    (loss / n) as f32
}

/// The batch's mean pinball loss (no gradient): validation on the CPU.
pub fn loss(w: &Weights, batch: &Batch, tau: &[f32]) -> Result<f32> {
    check(w, batch, tau)?;
    with_trace(|tr| {
        forward(w, batch, tr)?;
        Ok(pinball(tr, &batch.y, tau, false))
    })
}

/// The head's outputs for the scored steps, time-major `((T − burn_in)·B) × O`, like
/// [`crate::models::lstm::net::LstmNet::sequence`] (the targets in `batch.y` are not used).
pub fn outputs(w: &Weights, batch: &Batch) -> Result<Vec<f32>> {
    let s = batch.shape;
    ensure!(
        s.steps > s.burn_in && batch.x.len() == s.steps * s.batch * w.dims.inputs,
        "batch sizes do not match the network"
    );
    with_trace(|tr| {
        forward(w, batch, tr)?;
        Ok(tr.yhat.clone())
    })
}

/// The batch's mean pinball loss and its gradient in [`Weights::flat`]'s layout.
pub fn gradient(w: &Weights, batch: &Batch, tau: &[f32]) -> Result<(f32, Vec<f32>)> {
    check(w, batch, tau)?;
    with_trace(|tr| {
        forward(w, batch, tr)?;
        let loss = pinball(tr, &batch.y, tau, true);
        Ok((loss, backward(w, batch, tr)?))
    })
}

/// Runs `f` on this thread's buffers (fresh ones if they are in use).
fn with_trace<T>(f: impl FnOnce(&mut Trace) -> Result<T>) -> Result<T> {
    TRACE.with(|cell| match cell.try_borrow_mut() {
        Ok(mut tr) => f(&mut tr),
        Err(_) => f(&mut Trace::default()),
    })
}

/// Backpropagation through time from `∂L/∂Ŷ` in `tr.yhat`.
fn backward(w: &Weights, batch: &Batch, tr: &mut Trace) -> Result<Vec<f32>> {
    let d = w.dims;
    let (f, h, g, o) = (d.inputs, d.hidden, d.gates(), d.outputs);
    let s = batch.shape;
    let (steps, b, burn) = (s.steps, s.batch, s.burn_in);
    let width = f + h;
    let rows = (steps - burn) * b;
    let mut grad = vec![0.0f32; d.parameters()];
    let (gw, rest) = grad.split_at_mut(width * g);
    let (gb, rest) = rest.split_at_mut(g);
    let (ga, gab) = rest.split_at_mut(h * o);
    // The head, over every scored step at once.
    mm(
        ga,
        Mat::new(&tr.hs, rows, h).t(),
        Mat::new(&tr.yhat, rows, o),
        false,
    )?;
    for row in tr.yhat.chunks_exact(o) {
        for (acc, &v) in gab.iter_mut().zip(row) {
            *acc += v;
        }
    }
    let dhs = sized(&mut tr.dhs, rows * h);
    mm(
        dhs,
        Mat::new(&tr.yhat, rows, o),
        Mat::new(&w.head_w, h, o).t(),
        false,
    )?;
    sized(&mut tr.dh, b * h);
    sized(&mut tr.dc, b * h);
    // W_h: rows F.. of W.
    let w_h = Mat::new(&w.w[f * g..], h, g);
    for t in (0..steps).rev() {
        if t >= burn {
            let head = &tr.dhs[(t - burn) * b * h..(t - burn + 1) * b * h];
            for (acc, &v) in tr.dh.iter_mut().zip(head) {
                *acc += v;
            }
        }
        let act = &mut tr.act[t * b * g..(t + 1) * b * g];
        let c_prev = &tr.c[t * b * h..(t + 1) * b * h];
        let tc = &tr.tc[t * b * h..(t + 1) * b * h];
        for r in 0..b {
            let z = &mut act[r * g..(r + 1) * g];
            let (zi, rest) = z.split_at_mut(h);
            let (zf, rest) = rest.split_at_mut(h);
            let (zo, zg) = rest.split_at_mut(h);
            let dh = &tr.dh[r * h..(r + 1) * h];
            let dc = &mut tr.dc[r * h..(r + 1) * h];
            let cp = &c_prev[r * h..(r + 1) * h];
            let tcr = &tc[r * h..(r + 1) * h];
            for j in 0..h {
                let (i, fg, og, gg) = (zi[j], zf[j], zo[j], zg[j]);
                let (tcv, dhv) = (tcr[j], dh[j]);
                let dcv = dc[j] + dhv * og * (1.0 - tcv * tcv);
                zi[j] = dcv * gg * i * (1.0 - i);
                zf[j] = dcv * cp[j] * fg * (1.0 - fg);
                zo[j] = dhv * tcv * og * (1.0 - og);
                zg[j] = dcv * i * (1.0 - gg * gg);
                dc[j] = dcv * fg;
            }
        }
        if t > 0 {
            mm(&mut tr.dh, Mat::new(act, b, g), w_h.t(), false)?;
        }
    }
    // ∂L/∂W over all steps at once; ∂L/∂b the column sums of dZ.
    mm(
        gw,
        Mat::new(&tr.xh, steps * b, width).t(),
        Mat::new(&tr.act, steps * b, g),
        false,
    )?;
    for row in tr.act.chunks_exact(g) {
        for (acc, &v) in gb.iter_mut().zip(row) {
            *acc += v;
        }
    }
    Ok(grad)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::lstm::batch::BatchShape;
    use crate::models::lstm::net::{Dims, Rng};
    use crate::models::lstm::train::burn_gradient;
    use burn::tensor::Device;

    fn case(seed: u64) -> (Weights, Batch, Vec<f32>) {
        let dims = Dims {
            inputs: 3,
            hidden: 5,
            outputs: 4,
        };
        let mut rng = Rng(seed);
        let mut w = Weights::init(dims, &[0.1, -0.2, 0.3, 0.0], seed).expect("init");
        // A head large enough that the recurrence's gradients are not tiny.
        for v in &mut w.head_w {
            *v *= 10.0;
        }
        let shape = BatchShape {
            batch: 3,
            steps: 7,
            burn_in: 2,
        };
        let mut rand =
            |n: usize| -> Vec<f32> { (0..n).map(|_| (rng.unit() * 4.0 - 2.0) as f32).collect() };
        let batch = Batch {
            shape,
            x: rand(7 * 3 * 3),
            y: rand(5 * 3 * 4),
        };
        (w, batch, vec![0.1, 0.5, 0.9, 0.975])
    }

    #[test]
    fn the_gradient_equals_burns_autodiff() {
        let device = Device::flex().autodiff();
        for seed in [1, 2, 3] {
            let (w, batch, tau) = case(seed);
            let (loss, g) = gradient(&w, &batch, &tau).expect("host");
            let (burn_loss, burn_g) = burn_gradient(&w, &batch, &tau, &device).expect("burn");
            assert!(
                (loss - burn_loss).abs() < 1e-6,
                "loss {loss} vs {burn_loss}"
            );
            assert_eq!(g.len(), burn_g.len());
            let top = burn_g.iter().fold(0f32, |m, v| m.max(v.abs()));
            assert!(top > 1e-3, "a gradient worth checking");
            for (k, (a, e)) in g.iter().zip(&burn_g).enumerate() {
                assert!(
                    (a - e).abs() <= 1e-5 * top.max(1.0),
                    "seed {seed}, parameter {k}: {a} vs burn's {e}"
                );
            }
            assert_eq!(
                loss,
                super::loss(&w, &batch, &tau).expect("loss"),
                "the same forward"
            );
        }
    }

    #[test]
    fn outputs_equal_burns_sequence() {
        use burn::tensor::{Tensor, TensorData};
        let (w, batch, _) = case(4);
        let device = Device::flex();
        let s = batch.shape;
        let net = crate::models::lstm::net::LstmNet::new(&w, &device);
        let expect = crate::models::lstm::net::read(net.sequence(
            Tensor::<3>::from_data(
                TensorData::new(batch.x.clone(), [s.steps, s.batch, w.dims.inputs]),
                &device,
            ),
            s.burn_in,
        ))
        .expect("burn");
        let got = outputs(&w, &batch).expect("host");
        assert_eq!(got.len(), expect.len());
        for (a, e) in got.iter().zip(&expect) {
            assert!((a - e).abs() < 1e-5, "{a} vs {e}");
        }
    }

    #[test]
    fn mismatched_inputs_are_errors() {
        let (w, mut batch, tau) = case(5);
        assert!(gradient(&w, &batch, &tau[..2]).is_err(), "levels");
        batch.y.pop();
        assert!(gradient(&w, &batch, &tau).is_err(), "targets");
        let shape = BatchShape {
            burn_in: 7,
            ..batch.shape
        };
        assert!(
            loss(&w, &Batch { shape, ..batch }, &tau).is_err(),
            "nothing scored"
        );
        let a = [1.0f32, 2.0];
        let mut dst = [0.0f32; 4];
        assert!(mm(&mut dst, Mat::new(&a, 2, 2), Mat::new(&a, 2, 2), false).is_err());
    }

    #[test]
    fn products_with_transposes() {
        // a = [[1, 2], [3, 4], [5, 6]], b = [[1, 0, 2], [0, 1, 3]].
        let a = [1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0];
        let b = [1.0f32, 0.0, 2.0, 0.0, 1.0, 3.0];
        let mut ab = [0.0f32; 9];
        mm(&mut ab, Mat::new(&a, 3, 2), Mat::new(&b, 2, 3), false).expect("a·b");
        assert_eq!(ab, [1.0, 2.0, 8.0, 3.0, 4.0, 18.0, 5.0, 6.0, 28.0]);
        // aᵀ·a = [[35, 44], [44, 56]], accumulated onto ones.
        let mut ata = [1.0f32; 4];
        mm(&mut ata, Mat::new(&a, 3, 2).t(), Mat::new(&a, 3, 2), true).expect("aᵀ·a");
        assert_eq!(ata, [36.0, 45.0, 45.0, 57.0]);
        // b·bᵀ = [[5, 6], [6, 10]].
        let mut bbt = [0.0f32; 4];
        mm(&mut bbt, Mat::new(&b, 2, 3), Mat::new(&b, 2, 3).t(), false).expect("b·bᵀ");
        assert_eq!(bbt, [5.0, 6.0, 6.0, 10.0]);
    }
}
