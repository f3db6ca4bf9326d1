//! Pre-training on a candle file (`tickcast train`): the candles become per-segment histories
//! (a gap — a bar that does not follow its predecessor — starts a new segment, as in the
//! backtest), the last part of each series is held out for a validation loss, and each epoch
//! takes about one pass of gradient steps over the training bars.

use std::collections::BTreeMap;
use std::time::Instant;

use crate::{SeriesKey, series_key};
use anyhow::{Result, bail};
use tickcast_core::domain::Candle;

use crate::models::lstm::batch::{Batch, sample_batch};
use crate::models::lstm::features::{Bar, FeatureSettings, FeatureState, History};
use crate::models::lstm::model::LstmModel;
use crate::models::lstm::net::Rng;
use crate::models::lstm::train::{batch_loss, train_step};
use rust_decimal::prelude::ToPrimitive as _;

/// Pre-training settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PretrainSettings {
    pub epochs: usize,
    /// Fraction of each series (its latest bars) held out for validation.
    pub holdout: f64,
    /// Validation batches (drawn once, with a fixed seed).
    pub valid_batches: usize,
}

impl Default for PretrainSettings {
    fn default() -> Self {
        Self {
            epochs: 5,
            holdout: 0.1,
            valid_batches: 8,
        }
    }
}

/// One epoch's figures.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EpochReport {
    pub epoch: usize,
    pub steps: usize,
    /// Mean training loss over the epoch's steps.
    pub train_loss: f64,
    /// Validation loss after the epoch (`None` without held-out windows).
    pub valid_loss: Option<f64>,
    pub seconds: f64,
}

/// Histories of contiguous segments of each series (unbounded length), in series order.
pub fn segment_histories(candles: &[&Candle], fs: &FeatureSettings) -> Vec<History> {
    let mut by_series: BTreeMap<SeriesKey, Vec<&Candle>> = BTreeMap::new();
    for c in candles {
        by_series.entry(series_key(c)).or_default().push(c);
    }
    let mut out = Vec::new();
    for series in by_series.values() {
        let mut state: Option<FeatureState> = None;
        let mut hist = History::default();
        let mut prev: Option<&Candle> = None;
        for c in series {
            let close = c.close.to_f64().unwrap_or(f64::NAN);
            let bar_ms = c.close_ms - c.open_ms;
            let gap = prev.is_some_and(|p| c.open_ms != p.open_ms + bar_ms);
            if gap || !(close.is_finite() && close > 0.0) {
                if !hist.is_empty() {
                    out.push(std::mem::take(&mut hist));
                }
                state = None;
            }
            prev = Some(c);
            if !(close.is_finite() && close > 0.0) {
                continue;
            }
            let bar = Bar {
                high: c.high.to_f64().unwrap_or(f64::NAN),
                low: c.low.to_f64().unwrap_or(f64::NAN),
                close,
                volume: c.volume.to_f64().unwrap_or(0.0),
            };
            match state.as_mut() {
                None => state = Some(FeatureState::start(&bar)),
                Some(s) => hist.push(s.step(&bar, fs).record(), usize::MAX),
            }
        }
        if !hist.is_empty() {
            out.push(hist);
        }
    }
    out
}

/// Trains `model` on `candles` (see the module docs), reporting each epoch to `progress`.
pub fn pretrain(
    model: &mut LstmModel,
    candles: &[Candle],
    ps: &PretrainSettings,
    progress: &mut dyn FnMut(&EpochReport),
) -> Result<Vec<EpochReport>> {
    let s = model.settings.clone();
    let refs: Vec<&Candle> = candles.iter().collect();
    // Split each series by time: the last `holdout` of its candles are validation.
    let mut by_series: BTreeMap<SeriesKey, Vec<&Candle>> = BTreeMap::new();
    for c in &refs {
        by_series.entry(series_key(c)).or_default().push(c);
    }
    let (mut train_c, mut valid_c) = (Vec::new(), Vec::new());
    for v in by_series.values() {
        let cut = ((v.len() as f64) * (1.0 - ps.holdout.clamp(0.0, 0.9))).round() as usize;
        train_c.extend_from_slice(&v[..cut]);
        valid_c.extend_from_slice(&v[cut..]);
    }
    let train = segment_histories(&train_c, &s.features);
    let valid = segment_histories(&valid_c, &s.features);
    let train_refs: Vec<&History> = train.iter().collect();
    let valid_refs: Vec<&History> = valid.iter().collect();
    let tau = model.tau();
    let nq = s.quantiles.len();
    let mut vrng = Rng(0x7A11D);
    let valid_batches: Vec<Batch> = (0..ps.valid_batches)
        .map_while(|_| {
            sample_batch(
                &valid_refs,
                s.batch,
                &s.horizons,
                nq,
                &s.features,
                &mut vrng,
            )
        })
        .collect();
    let bars: usize = train.iter().map(History::len).sum();
    let per_step = s.batch.batch * (s.batch.steps - s.batch.burn_in).max(1);
    let steps = (bars / per_step.max(1)).max(1);
    let device = model.device.clone().autodiff();
    let mut weights = model.weights.clone();
    let mut adam = model.adam.clone();
    let mut rng = model.rng;
    let mut reports = Vec::with_capacity(ps.epochs);
    for epoch in 1..=ps.epochs {
        let started = Instant::now();
        let mut sum = 0.0;
        let mut n = 0usize;
        for _ in 0..steps {
            let Some(batch) =
                sample_batch(&train_refs, s.batch, &s.horizons, nq, &s.features, &mut rng)
            else {
                bail!(
                    "no training window: every segment is shorter than {} steps + {} bars",
                    s.batch.steps,
                    s.horizons.last().copied().unwrap_or(0)
                );
            };
            let loss = train_step(&mut weights, &mut adam, &s.adam, &batch, &tau, &device)?;
            if loss.is_finite() {
                sum += f64::from(loss);
                n += 1;
            }
        }
        let valid_loss = if valid_batches.is_empty() {
            None
        } else {
            let mut v = 0.0;
            for b in &valid_batches {
                v += f64::from(batch_loss(&weights, b, &tau, &device)?);
            }
            Some(v / valid_batches.len() as f64)
        };
        let report = EpochReport {
            epoch,
            steps,
            train_loss: if n == 0 { f64::NAN } else { sum / n as f64 },
            valid_loss,
            seconds: started.elapsed().as_secs_f64(),
        };
        progress(&report);
        reports.push(report);
    }
    model.rng = rng;
    let loss = reports.last().map(|r| r.train_loss as f32);
    model.install(weights, adam)?;
    model.last_loss = loss;
    Ok(reports)
}
