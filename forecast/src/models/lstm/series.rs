//! One series' state in the `lstm` model: its features, the LSTM's `(h, c)` and its history of
//! `(features, rₜ, σₜ)` records for training, and its checkpoint (format 1: the feature
//! state, `h`, `c`, then the history; `f32` vectors as their little-endian bits, so every
//! round trip is exact).

use crate::checkpoint::{Dec, Enc};
use anyhow::{Result, ensure};

use crate::models::lstm::checkpoint::{f32_bytes, f32s};
use crate::models::lstm::features::{BAR_VALUES, FeatureState, History};

const SERIES_FORMAT: u8 = 1;

/// One series' state.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Series {
    pub(crate) feat: FeatureState,
    pub(crate) h: Vec<f32>,
    pub(crate) c: Vec<f32>,
    pub(crate) history: History,
}

impl Series {
    /// The series' checkpoint bytes.
    pub(crate) fn save(&self) -> Vec<u8> {
        let mut e = Enc::new(SERIES_FORMAT);
        let f = &self.feat;
        e.f64(f.last_close)
            .f64(f.var_fast)
            .f64(f.var_slow)
            .f64(f.volume)
            .u32(f.returns)
            .bytes(&f32_bytes(&self.h))
            .bytes(&f32_bytes(&self.c));
        let flat: Vec<f32> = self.history.bars.iter().flatten().copied().collect();
        e.bytes(&f32_bytes(&flat));
        e.finish()
    }

    /// Reads [`Series::save`]'s bytes for a network of `hidden` units, keeping at most
    /// `capacity` bars of history.
    pub(crate) fn load(bytes: &[u8], hidden: usize, capacity: usize) -> Result<Self> {
        let mut d = Dec::new(bytes, SERIES_FORMAT)?;
        let feat = FeatureState {
            last_close: d.f64()?,
            var_fast: d.f64()?,
            var_slow: d.f64()?,
            volume: d.f64()?,
            returns: d.u32()?,
        };
        ensure!(
            feat.last_close.is_finite() && feat.last_close > 0.0,
            "series checkpoint: bad last close {}",
            feat.last_close
        );
        let h = f32s(d.bytes()?)?;
        let c = f32s(d.bytes()?)?;
        ensure!(
            h.len() == hidden && c.len() == hidden,
            "series checkpoint has state of size {}, the network {hidden}",
            h.len()
        );
        let flat = f32s(d.bytes()?)?;
        d.end()?;
        ensure!(
            flat.len().is_multiple_of(BAR_VALUES),
            "series checkpoint: ragged history"
        );
        let mut history = History::default();
        for r in flat.chunks_exact(BAR_VALUES) {
            let mut a = [0f32; BAR_VALUES];
            a.copy_from_slice(r);
            history.push(a, capacity);
        }
        Ok(Self {
            feat,
            h,
            c,
            history,
        })
    }
}
