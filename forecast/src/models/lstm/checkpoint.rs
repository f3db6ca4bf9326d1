//! Checkpoints of the `lstm` model through the shared [`Enc`]/[`Dec`] codec.
//!
//! Model (`save_model`, format 1): shapes `F, H, O`; trained horizons; quantile levels; the
//! feature constants; the optimizer (steps, `m`, `v`); the training schedule (next firing time,
//! sampler state, last loss); then the weights as burn record bytes (burnpack). A job still on
//! the background thread is not part of it.
//!
//! `f32` vectors are stored as their little-endian bits, so every round trip is exact. A
//! series' own checkpoint is [`crate::models::lstm::series::Series::save`]'s.

use crate::checkpoint::{Dec, Enc};
use anyhow::{Result, anyhow, ensure};
use burn::module::Module as _;
use burn::store::ModuleRecord;
use burn::tensor::{Bytes, Device};

use crate::models::lstm::features::FeatureSettings;
use crate::models::lstm::net::{Dims, LstmNet, Rng, Weights};
use crate::models::lstm::train::Adam;

const MODEL_FORMAT: u8 = 1;

/// What a model checkpoint holds: the trained horizons, quantile levels and feature constants
/// (which replace the model's settings when restored), the optimizer, the training schedule
/// and the weights.
#[derive(Debug)]
pub struct ModelState<W> {
    pub horizons: Vec<u32>,
    pub quantiles: Vec<f64>,
    pub features: FeatureSettings,
    pub adam: Adam,
    pub next_train_ms: Option<i64>,
    pub rng: Rng,
    pub last_loss: Option<f32>,
    /// The weights: borrowed when saved, owned when restored.
    pub weights: W,
}

pub(crate) fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

pub(crate) fn f32s(b: &[u8]) -> Result<Vec<f32>> {
    ensure!(b.len().is_multiple_of(4), "f32 run of {} bytes", b.len());
    Ok(b.chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect())
}

/// The weights as burn record bytes (burnpack).
pub fn weights_to_record(weights: &Weights) -> Result<Vec<u8>> {
    let bytes = LstmNet::new(weights, &Device::flex())
        .into_record()
        .into_bytes()
        .map_err(|e| anyhow!("encoding the burn record: {e:?}"))?;
    Ok(bytes.to_vec())
}

/// Weights from [`weights_to_record`]'s bytes, checked against `dims`.
pub fn weights_from_record(bytes: &[u8], dims: Dims) -> Result<Weights> {
    let record = ModuleRecord::from_bytes(Bytes::from_bytes_vec(bytes.to_vec()))
        .map_err(|e| anyhow!("decoding the burn record: {e:?}"))?;
    let zeros = Weights {
        dims,
        w: vec![0.0; (dims.inputs + dims.hidden) * dims.gates()],
        b: vec![0.0; dims.gates()],
        head_w: vec![0.0; dims.hidden * dims.outputs],
        head_b: vec![0.0; dims.outputs],
    };
    let net = LstmNet::new(&zeros, &Device::flex())
        .try_load_record(record)
        .map_err(|e| anyhow!("the burn record does not fit the network: {e:?}"))?;
    let w = net.weights()?;
    ensure!(
        w.dims == dims,
        "record shapes {:?}, expected {dims:?}",
        w.dims
    );
    Ok(w)
}

pub fn save_model(m: &ModelState<&Weights>) -> Result<Vec<u8>> {
    let d = m.weights.dims;
    let s = m;
    let mut e = Enc::new(MODEL_FORMAT);
    e.u32(d.inputs as u32)
        .u32(d.hidden as u32)
        .u32(d.outputs as u32)
        .u32(s.horizons.len() as u32);
    for &h in &s.horizons {
        e.u32(h);
    }
    let fs = &s.features;
    e.f64s(s.quantiles.iter())
        .f64(fs.lambda_fast)
        .f64(fs.lambda_slow)
        .f64(fs.clip)
        .f64(fs.sigma_floor)
        .u64(m.adam.steps)
        .bytes(&f32_bytes(&m.adam.m))
        .bytes(&f32_bytes(&m.adam.v))
        .bool(m.next_train_ms.is_some())
        .i64(m.next_train_ms.unwrap_or(0))
        .u64(m.rng.0)
        .f64(m.last_loss.map_or(f64::NAN, f64::from))
        .bytes(&weights_to_record(m.weights)?);
    Ok(e.finish())
}

/// Reads [`save_model`]'s bytes, checking their shapes against this build's features.
pub fn load_model(bytes: &[u8]) -> Result<ModelState<Weights>> {
    let mut d = Dec::new(bytes, MODEL_FORMAT)?;
    let dims = Dims {
        inputs: d.u32()? as usize,
        hidden: d.u32()? as usize,
        outputs: d.u32()? as usize,
    };
    ensure!(
        dims.inputs == crate::models::lstm::features::N_FEATURES,
        "checkpoint has {} features per step, this build {}",
        dims.inputs,
        crate::models::lstm::features::N_FEATURES
    );
    let nh = d.u32()? as usize;
    ensure!(nh <= 1024, "checkpoint lists {nh} horizons");
    let horizons = (0..nh).map(|_| d.u32()).collect::<Result<Vec<_>>>()?;
    let quantiles = d.f64s()?;
    ensure!(
        horizons.len() * quantiles.len() == dims.outputs,
        "checkpoint: {} horizons × {} quantiles ≠ {} outputs",
        horizons.len(),
        quantiles.len(),
        dims.outputs
    );
    let features = FeatureSettings {
        lambda_fast: d.f64()?,
        lambda_slow: d.f64()?,
        clip: d.f64()?,
        sigma_floor: d.f64()?,
    };
    let adam = Adam {
        steps: d.u64()?,
        m: f32s(d.bytes()?)?,
        v: f32s(d.bytes()?)?,
    };
    ensure!(
        adam.m.len() == dims.parameters() && adam.v.len() == dims.parameters(),
        "checkpoint optimizer state has the wrong size"
    );
    let scheduled = d.bool()?;
    let next = d.i64()?;
    let rng = Rng(d.u64()?);
    let loss = d.f64()?;
    let weights = weights_from_record(d.bytes()?, dims)?;
    d.end()?;

    Ok(ModelState {
        horizons,
        quantiles,
        features,
        adam,
        next_train_ms: scheduled.then_some(next),
        rng,
        last_loss: (!loss.is_nan()).then_some(loss as f32),
        weights,
    })
}
