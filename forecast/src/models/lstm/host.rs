//! The streaming step on the CPU without a tensor library: the gates' affine map, the cell
//! update and the head in plain loops the compiler vectorises, one pass per block of rows.
//!
//! A streaming step is small (1,000 rows × 36 × 128 for `H = 32`): on burn's `flex` device
//! every tensor operation pays dispatch and allocation overhead, and the cell update alone is
//! a dozen of them. Here each row's pre-activations are accumulated into a reused buffer
//! (`z = b`, then `z += xhₖ · Wₖ` for `k` ascending — six rows share each loaded row of `W`),
//! then the row's `σ`/`tanh` and the state update run in one pass, then the head the same way.
//!
//! **Every row's result is independent of the batch it came in**, bit for bit: each output
//! element is summed in the same order with the same operations whatever the number of rows
//! (no multiply-add contraction, no blocking over `k`). The model relies on this: a restart
//! or a differently cut batch must give the identical forecast (`batching_does_not_change_results`,
//! the checkpoint tests). A packed GEMM kernel does not give that (its path depends on the
//! matrix sizes). On x86-64 with AVX2 the same code is compiled a second time with 256-bit
//! vectors and chosen at run time; the results are identical (the same IEEE operations).
//!
//! The exponential is a branch-free `f32` approximation (range reduction by `ln 2`, a degree-7
//! Taylor polynomial on `|r| ≤ ln 2 / 2`, the power of two written into the exponent bits), so
//! the gate loops vectorise; its relative error is below 5·10⁻⁷, and the step agrees with
//! burn's within 2·10⁻⁶ (tests below). Same maths as [`crate::models::lstm::net::LstmNet::step`]:
//! gate columns `[i | f | o | g]`, `c' = f⊙c + i⊙g`, `h' = o⊙tanh(c')`, `ŷ = h'·A + a`.
#![allow(unsafe_code)] // calls the AVX2 copy after checking that the CPU has AVX2

use anyhow::{Result, ensure};

use crate::models::lstm::net::{StepOut, Weights};

/// Rows that share each loaded row of a weight matrix.
const BLOCK: usize = 6;

/// Buffers reused across steps.
#[derive(Debug, Default, Clone)]
pub struct Scratch {
    /// Pre-activations of one block of rows (`BLOCK × 4H`).
    z: Vec<f32>,
    /// One block of rows' inputs, column by column (see [`affine`]).
    packed: Vec<f32>,
}

/// One step for `n` rows: `xh` is `[xₜ | hₜ₋₁]` (`n × (F + H)`), `c` is `cₜ₋₁` (`n × H`),
/// row-major; returns `(hₜ, cₜ, ŷₜ)` like [`crate::models::lstm::net::LstmNet::step_host`].
pub fn step(
    w: &Weights,
    xh: &[f32],
    c: &[f32],
    n: usize,
    scratch: &mut Scratch,
) -> Result<StepOut> {
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
    let mut out = StepOut {
        h: vec![0.0; n * hidden],
        c: vec![0.0; n * hidden],
        out: vec![0.0; n * outputs],
    };
    scratch.z.clear();
    scratch.z.resize(BLOCK * gates, 0.0);
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2 (checked on the line above), the one requirement of
        // `step_avx2`; everything else is safe Rust with checked slice accesses.
        unsafe { step_avx2(w, xh, c, n, scratch, &mut out) };
        return Ok(out);
    }
    step_rows(w, xh, c, n, scratch, &mut out);
    Ok(out)
}

/// [`step_rows`] compiled for AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn step_avx2(w: &Weights, xh: &[f32], c: &[f32], n: usize, s: &mut Scratch, out: &mut StepOut) {
    step_rows(w, xh, c, n, s, out);
}

/// The step, block of rows by block of rows; `s.z` holds `BLOCK × 4H` values.
#[inline(always)]
fn step_rows(w: &Weights, xh: &[f32], c: &[f32], n: usize, s: &mut Scratch, out: &mut StepOut) {
    let d = w.dims;
    let (hidden, outputs) = (d.hidden, d.outputs);
    let (width, gates) = (d.inputs + hidden, d.gates());
    let mut r0 = 0;
    while r0 < n {
        let rows = BLOCK.min(n - r0);
        let z = &mut s.z[..rows * gates];
        affine(
            &xh[r0 * width..(r0 + rows) * width],
            width,
            &w.w,
            &w.b,
            z,
            &mut s.packed,
        );
        for r in 0..rows {
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
            let row = r0 + r;
            let c_prev = &c[row * hidden..(row + 1) * hidden];
            let c_new = &mut out.c[row * hidden..(row + 1) * hidden];
            for j in 0..hidden {
                c_new[j] = f[j] * c_prev[j] + i[j] * g[j];
            }
            let h_new = &mut out.h[row * hidden..(row + 1) * hidden];
            for j in 0..hidden {
                h_new[j] = o[j] * tanh(c_new[j]);
            }
        }
        affine(
            &out.h[r0 * hidden..(r0 + rows) * hidden],
            hidden,
            &w.head_w,
            &w.head_b,
            &mut out.out[r0 * outputs..(r0 + rows) * outputs],
            &mut s.packed,
        );
        r0 += rows;
    }
}

/// `dst[r] = bias + Σₖ lhs[r][k] · rhs[k]` for the rows of `lhs` (`k` values each, at most
/// [`BLOCK`] rows), `k` ascending: every element is `bias` plus the products added one by one
/// in the same order whatever the number of rows or the path taken, so results are identical.
/// Full blocks copy their rows into `packed` column by column (`k × BLOCK`: the `BLOCK` values
/// multiplied by one row of `rhs` side by side, read without bounds checks) and keep a
/// `BLOCK × 16` tile of sums in registers over the whole `k` loop (then `BLOCK × 4` for what
/// is left of the columns, e.g. the head's last 4 of 20).
#[inline(always)]
fn affine(
    lhs: &[f32],
    k: usize,
    rhs: &[f32],
    bias: &[f32],
    dst: &mut [f32],
    packed: &mut Vec<f32>,
) {
    let m = bias.len();
    let rows = dst.len() / m.max(1);
    let mut from = 0;
    if rows == BLOCK && m >= 4 {
        packed.clear();
        packed.resize(k * BLOCK, 0.0);
        for (r, row) in lhs.chunks_exact(k).take(BLOCK).enumerate() {
            for (kk, &x) in row.iter().enumerate() {
                packed[kk * BLOCK + r] = x;
            }
        }
        while from + 16 <= m {
            tile::<16>(packed, rhs, bias, dst, from);
            from += 16;
        }
        while from + 4 <= m {
            tile::<4>(packed, rhs, bias, dst, from);
            from += 4;
        }
    }
    if from == m {
        return;
    }
    for row in dst.chunks_exact_mut(m) {
        row[from..].copy_from_slice(&bias[from..]);
    }
    for (kk, wk) in rhs.chunks_exact(m).enumerate().take(k) {
        for (row, x) in dst.chunks_exact_mut(m).zip(lhs.chunks_exact(k)) {
            let a = x[kk];
            for (d, &wv) in row[from..].iter_mut().zip(&wk[from..]) {
                *d += a * wv;
            }
        }
    }
}

/// Columns `j0 .. j0 + COLS` of a full block in [`affine`], the sums in registers.
#[inline(always)]
fn tile<const COLS: usize>(packed: &[f32], rhs: &[f32], bias: &[f32], dst: &mut [f32], j0: usize) {
    let m = bias.len();
    let b: &[f32; COLS] = bias[j0..j0 + COLS].try_into().expect("COLS values");
    let mut acc = [*b; BLOCK];
    for (wk, a) in rhs.chunks_exact(m).zip(packed.chunks_exact(BLOCK)) {
        let w: &[f32; COLS] = wk[j0..j0 + COLS].try_into().expect("COLS values");
        let a: &[f32; BLOCK] = a.try_into().expect("BLOCK values");
        for (row, &ar) in acc.iter_mut().zip(a) {
            for c in 0..COLS {
                row[c] += ar * w[c];
            }
        }
    }
    for (r, row) in acc.iter().enumerate() {
        dst[r * m + j0..r * m + j0 + COLS].copy_from_slice(row);
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
    use crate::models::lstm::net::{Dims, LstmNet, Rng};
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
        // Bit for bit the same whatever the batch: one call for 300 rows, or rows one by one
        // and in chunks of 7; and the AVX2 copy equals the plain one.
        let n = 300;
        let width = dims.inputs + dims.hidden;
        let xh: Vec<f32> = (0..n * width)
            .map(|_| (2.0 * rng.unit() - 1.0) as f32)
            .collect();
        let c: Vec<f32> = (0..n * dims.hidden).map(|_| rng.unit() as f32).collect();
        let whole = step(&weights, &xh, &c, n, &mut scratch).expect("whole");
        for rows in [1usize, 7] {
            let mut pieces = StepOut {
                h: Vec::new(),
                c: Vec::new(),
                out: Vec::new(),
            };
            for (x, cc) in xh.chunks(rows * width).zip(c.chunks(rows * dims.hidden)) {
                let part = step(&weights, x, cc, x.len() / width, &mut scratch).expect("part");
                pieces.h.extend(part.h);
                pieces.c.extend(part.c);
                pieces.out.extend(part.out);
            }
            assert_eq!(pieces, whole, "chunks of {rows}");
        }
        let mut plain = StepOut {
            h: vec![0.0; n * dims.hidden],
            c: vec![0.0; n * dims.hidden],
            out: vec![0.0; n * dims.outputs],
        };
        let mut s = Scratch {
            z: vec![0.0; BLOCK * dims.gates()],
            packed: Vec::new(),
        };
        step_rows(&weights, &xh, &c, n, &mut s, &mut plain);
        assert_eq!(plain, whole, "plain and dispatched paths");

        let err = step(&weights, &[0.0; 5], &[0.0; 16], 1, &mut scratch).expect_err("bad xh");
        assert!(err.to_string().contains("do not match 1 rows"), "{err}");
        assert!(step(&weights, &[0.0; 20], &[0.0; 15], 1, &mut scratch).is_err());
        let empty = step(&weights, &[], &[], 0, &mut scratch).expect("no rows");
        assert!(empty.h.is_empty() && empty.out.is_empty());
    }
}
