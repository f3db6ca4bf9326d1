//! The streaming step on the CPU without a tensor library: one packed matrix product for the
//! gates, one for the head, and the cell update in plain loops the compiler vectorises.
//!
//! A streaming step is small (1,000 rows × 68 × 256 for `H = 64`): on burn's `flex` device
//! every tensor operation pays dispatch and allocation overhead, and the cell update alone is
//! a dozen of them. Here the gates' pre-activations are written straight into a reused buffer
//! pre-filled with the bias (`z = b; z += [x | h]·W`, the `gemm` crate's packed kernel, one
//! thread), then each row's `σ`/`tanh` and the state update run in one pass.
//!
//! The exponential is a branch-free `f32` approximation (range reduction by `ln 2`, a degree-7
//! Taylor polynomial on `|r| ≤ ln 2 / 2`, the power of two written into the exponent bits), so
//! the gate loops vectorise; its relative error is below 5·10⁻⁷, and the step agrees with
//! burn's within 2·10⁻⁶ (tests below). Same maths as [`crate::net::LstmNet::step`]:
//! gate columns `[i | f | o | g]`, `c' = f⊙c + i⊙g`, `h' = o⊙tanh(c')`, `ŷ = h'·A + a`.
#![allow(unsafe_code)] // one call into `gemm::gemm`, whose bounds are checked right before it

use anyhow::{Result, ensure};

use crate::net::{StepOut, Weights};

/// Buffers reused across steps.
#[derive(Debug, Default, Clone)]
pub struct Scratch {
    z: Vec<f32>,
}

/// One step for `n` rows: `xh` is `[xₜ | hₜ₋₁]` (`n × (F + H)`), `c` is `cₜ₋₁` (`n × H`),
/// row-major; returns `(hₜ, cₜ, ŷₜ)` like [`crate::net::LstmNet::step_host`].
pub fn step(w: &Weights, xh: &[f32], c: &[f32], n: usize, scratch: &mut Scratch) -> Result<StepOut> {
    let d = w.dims;
    let (hidden, outputs) = (d.hidden, d.outputs);
    let (width, gates) = (d.inputs + hidden, d.gates());
    ensure!(
        xh.len() == n * width && c.len() == n * hidden,
        "step input sizes do not match {n} rows of {width} inputs and {hidden} states"
    );
    ensure!(
        w.w.len() == width * gates
            && w.b.len() == gates
            && w.head_w.len() == hidden * outputs
            && w.head_b.len() == outputs,
        "weights do not match their dimensions"
    );
    let z = &mut scratch.z;
    z.clear();
    for _ in 0..n {
        z.extend_from_slice(&w.b);
    }
    matmul_add(n, gates, width, xh, &w.w, z);
    let mut h_out = vec![0.0f32; n * hidden];
    let mut c_out = vec![0.0f32; n * hidden];
    for r in 0..n {
        let zr = &mut z[r * gates..(r + 1) * gates];
        let (sig, g) = zr.split_at_mut(3 * hidden);
        for v in sig.iter_mut() {
            *v = sigmoid(*v);
        }
        for v in g.iter_mut() {
            *v = tanh(*v);
        }
        let (i, rest) = sig.split_at(hidden);
        let (f, o) = rest.split_at(hidden);
        let c_prev = &c[r * hidden..(r + 1) * hidden];
        let c_new = &mut c_out[r * hidden..(r + 1) * hidden];
        let h_new = &mut h_out[r * hidden..(r + 1) * hidden];
        for j in 0..hidden {
            c_new[j] = f[j] * c_prev[j] + i[j] * g[j];
        }
        for j in 0..hidden {
            h_new[j] = o[j] * tanh(c_new[j]);
        }
    }
    let mut out = Vec::with_capacity(n * outputs);
    for _ in 0..n {
        out.extend_from_slice(&w.head_b);
    }
    matmul_add(n, outputs, hidden, &h_out, &w.head_w, &mut out);
    Ok(StepOut {
        h: h_out,
        c: c_out,
        out,
    })
}

/// `dst += lhs·rhs` for row-major `lhs` (`m × k`), `rhs` (`k × n`) and `dst` (`m × n`).
fn matmul_add(m: usize, n: usize, k: usize, lhs: &[f32], rhs: &[f32], dst: &mut [f32]) {
    assert!(
        lhs.len() == m * k && rhs.len() == k * n && dst.len() == m * n,
        "matmul_add: {m}×{k} · {k}×{n} into {} values",
        dst.len()
    );
    if m == 0 || n == 0 {
        return;
    }
    // SAFETY: the three slices hold exactly m×k, k×n and m×n values (asserted above) and the
    // strides describe dense row-major layouts of those shapes, so every address gemm reads or
    // writes lies inside its slice; `dst` is borrowed mutably, so it aliases neither input.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            n as isize,
            true,
            lhs.as_ptr(),
            1,
            k as isize,
            rhs.as_ptr(),
            1,
            n as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}

/// `eˣ` in `f32`, branch-free: `x = n·ln 2 + r`, `eʳ` by its Taylor polynomial, `2ⁿ` through
/// the exponent bits. Inputs are clamped to `[−87, 88]` (results stay normal and finite).
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // 1.5·2²³: adding it rounds to an integer held in the low mantissa bits.
    const MAGIC: f32 = 12_582_912.0;
    let x = x.clamp(-87.0, 88.0);
    let t = x * LOG2E + MAGIC;
    let k = t - MAGIC;
    let r = x - k * LN2_HI - k * LN2_LO;
    let p = 1.0
        + r * (1.0
            + r * (0.5
                + r * (1.0 / 6.0
                    + r * (1.0 / 24.0
                        + r * (1.0 / 120.0 + r * (1.0 / 720.0 + r * (1.0 / 5040.0)))))));
    // The low bits of `t` are k (two's complement, offset by MAGIC's bits); k + 127 is the
    // biased exponent of 2ᵏ.
    let bits = t.to_bits().wrapping_sub(MAGIC.to_bits()).wrapping_add(127) << 23;
    p * f32::from_bits(bits)
}

/// `1 / (1 + e⁻ˣ)` with [`exp`].
#[inline(always)]
pub fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + exp(-x))
}

/// `tanh x = 2σ(2x) − 1` with [`sigmoid`] (absolute error below 10⁻⁶).
#[inline(always)]
pub fn tanh(x: f32) -> f32 {
    2.0 * sigmoid(2.0 * x) - 1.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::{Dims, LstmNet, Rng};
    use burn::tensor::Device;

    #[test]
    fn exp_sigmoid_and_tanh_are_close_to_std() {
        let mut worst = [0.0f64; 3];
        let mut x = -30.0f32;
        while x <= 30.0 {
            let e = f64::from(x).exp();
            worst[0] = worst[0].max(((f64::from(exp(x)) - e) / e).abs());
            let s = 1.0 / (1.0 + (-f64::from(x)).exp());
            worst[1] = worst[1].max((f64::from(sigmoid(x)) - s).abs());
            worst[2] = worst[2].max((f64::from(tanh(x)) - f64::from(x).tanh()).abs());
            x += 0.001;
        }
        assert!(worst[0] < 5e-7, "exp relative error {}", worst[0]);
        assert!(worst[1] < 3e-7, "sigmoid error {}", worst[1]);
        assert!(worst[2] < 6e-7, "tanh error {}", worst[2]);
        // Far out: saturated, finite, never NaN.
        assert_eq!(sigmoid(-1_000.0), sigmoid(-88.0));
        assert_eq!(sigmoid(1_000.0), 1.0);
        assert_eq!(tanh(1_000.0), 1.0);
        assert_eq!(tanh(-1_000.0), -1.0);
        assert!(exp(100.0).is_finite() && exp(-100.0) > 0.0);
    }

    #[test]
    fn host_step_matches_burns() {
        let dims = Dims {
            inputs: 4,
            hidden: 16,
            outputs: 12,
        };
        let bias: Vec<f32> = (0..dims.outputs).map(|i| i as f32 * 0.1 - 0.5).collect();
        let mut weights = Weights::init(dims, &bias, 7).expect("weights");
        // Larger head weights than the init's, so the head's output differs across rows.
        for v in &mut weights.head_w {
            *v *= 10.0;
        }
        let net = LstmNet::new(&weights, &Device::flex());
        let mut scratch = Scratch::default();
        let mut rng = Rng(11);
        for n in [1usize, 7, 300] {
            let width = dims.inputs + dims.hidden;
            let xh: Vec<f32> = (0..n * width)
                .map(|_| (3.0 * (2.0 * rng.unit() - 1.0)) as f32)
                .collect();
            let c: Vec<f32> = (0..n * dims.hidden)
                .map(|_| (2.0 * (2.0 * rng.unit() - 1.0)) as f32)
                .collect();
            let ours = step(&weights, &xh, &c, n, &mut scratch).expect("host step");
            let burns = net.step_host(xh, c, n).expect("burn step");
            for (name, a, b) in [
                ("h", &ours.h, &burns.h),
                ("c", &ours.c, &burns.c),
                ("out", &ours.out, &burns.out),
            ] {
                assert_eq!(a.len(), b.len(), "{name}, n = {n}");
                let worst = a
                    .iter()
                    .zip(b.iter())
                    .map(|(x, y)| (x - y).abs())
                    .fold(0.0f32, f32::max);
                assert!(worst < 2e-6, "{name}, n = {n}: differs by {worst}");
            }
        }
        let err = step(&weights, &[0.0; 5], &[0.0; 16], 1, &mut scratch).expect_err("bad xh");
        assert!(err.to_string().contains("do not match 1 rows"), "{err}");
        assert!(step(&weights, &[0.0; 20], &[0.0; 15], 1, &mut scratch).is_err());
        let empty = step(&weights, &[], &[], 0, &mut scratch).expect("no rows");
        assert!(empty.h.is_empty() && empty.out.is_empty());
    }
}
