//! [`LstmModel`]: the `lstm` forecaster — per-series features and LSTM state, one batched step
//! per candle, multi-horizon quantiles mapped to prices, and training on a schedule.
//!
//! **Forecast.** After bar `t` of a series the head gives, for each trained horizon `hₖ`, the
//! quantiles `q̂ₖ,ⱼ` (levels `τⱼ`, sorted, clamped to `±c`) of the scaled cumulative return
//! `y = ln(Cₜ₊ₕ / Cₜ) / (σₜ·√h)`. A requested horizon `h` takes the quantiles of the trained
//! horizon it equals; between two trained horizons they are interpolated linearly in `ln h`;
//! outside the trained range the nearest trained horizon's are used (the `√h` scaling carries
//! them). Prices: `Cₜ·exp(σₜ·√h·q̂)`, so every bound is positive; the 80% band is the
//! (0.1, 0.9) pair, the 95% band the (0.025, 0.975) pair; the point is the median once the
//! network has taken a training step and the last close before. Bands are widened to contain
//! the point, so `lo95 ≤ lo80 ≤ point ≤ hi80 ≤ hi95`.
//!
//! **Streaming.** Each series keeps `(h, c)`; every candle advances it one step. A batch is
//! processed in rounds (the `r`-th candle of each series in round `r`), each round one forward
//! of all its series together.
//!
//! **Training** (see [`Training`]) fires when a candle's close time reaches the scheduled time,
//! `train_every` bars (of that candle's length) after the previous firing; it runs before that
//! candle is processed, on windows drawn from the series' histories in key order. So the
//! result depends only on the candles, not on how they were split into batches — which is what
//! [`crate::testing::check_resume`] checks.

use std::collections::HashMap;
use std::path::PathBuf;

use crate::series::AHEAD;
use crate::{
    Forecaster, ModelVersion, Prediction, Scored, SeriesKey, SeriesMap, SeriesRef, series_of,
};
use anyhow::{Context as _, Result, ensure};
use burn::tensor::Device;
use tickcast_core::domain::Candle;

use crate::models::lstm::background::Background;
use crate::models::lstm::batch::{BatchShape, sample_batch};
use crate::models::lstm::checkpoint::{self, ModelState};
use crate::models::lstm::device::{DeviceChoice, select};
use crate::models::lstm::features::{Bar, FeatureSettings, FeatureState, History, N_FEATURES};
use crate::models::lstm::net::{Dims, LstmNet, Rng, Weights};
use crate::models::lstm::series::Series;
use crate::models::lstm::train::{Adam, AdamSettings, train_step};

/// When and how the model trains.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Training {
    /// Never (e.g. a pre-trained checkpoint used as is).
    Off,
    /// Synchronously inside `update`, so results are reproducible (backtests, tests).
    #[default]
    Inline,
    /// On a background thread; the new weights are swapped in at the first `update` after the
    /// thread finishes. A firing while a job is running is skipped.
    Background,
}

/// Settings of the `lstm` model.
#[derive(Debug, Clone, PartialEq)]
pub struct LstmSettings {
    /// Hidden size `H`.
    pub hidden: usize,
    /// Horizons the head is trained for, in bars, ascending.
    pub horizons: Vec<u32>,
    /// Quantile levels, ascending; must include 0.025, 0.1, 0.5, 0.9 and 0.975.
    pub quantiles: Vec<f64>,
    pub features: FeatureSettings,
    /// Returns a series needs before it is forecast.
    pub min_returns: u32,
    /// Bars of history kept per series for training.
    pub history: usize,
    pub batch: BatchShape,
    pub adam: AdamSettings,
    pub training: Training,
    /// Bars between training firings.
    pub train_every: u32,
    /// Gradient steps per firing.
    pub steps_per_train: u32,
    pub device: DeviceChoice,
    /// Checkpoint (from `tickcast train` or `save_model`) to start from.
    pub init: Option<PathBuf>,
    /// Seed of the initial weights and of batch sampling.
    pub seed: u64,
}

impl Default for LstmSettings {
    fn default() -> Self {
        Self {
            hidden: 32,
            horizons: vec![1, 5, 15, 60],
            quantiles: vec![0.025, 0.1, 0.5, 0.9, 0.975],
            features: FeatureSettings::default(),
            min_returns: 20,
            history: 1024,
            batch: BatchShape {
                batch: 32,
                steps: 64,
                burn_in: 16,
            },
            adam: AdamSettings::default(),
            training: Training::Inline,
            train_every: 720,
            steps_per_train: 8,
            device: DeviceChoice::Flex,
            init: None,
            seed: 42,
        }
    }
}

/// Positions of the band and median levels among the quantiles.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Levels {
    lo95: usize,
    lo80: usize,
    median: usize,
    hi80: usize,
    hi95: usize,
}

impl Levels {
    fn find(quantiles: &[f64]) -> Result<Self> {
        ensure!(
            quantiles.windows(2).all(|w| w[0] < w[1])
                && quantiles.iter().all(|&q| q > 0.0 && q < 1.0),
            "quantiles must be ascending inside (0, 1): {quantiles:?}"
        );
        let at = |level: f64| {
            quantiles
                .iter()
                .position(|&q| (q - level).abs() < 1e-9)
                .with_context(|| format!("quantiles {quantiles:?} lack {level}"))
        };
        Ok(Self {
            lo95: at(0.025)?,
            lo80: at(0.1)?,
            median: at(0.5)?,
            hi80: at(0.9)?,
            hi95: at(0.975)?,
        })
    }
}

/// The `lstm` forecaster (see the module docs).
#[derive(Debug)]
pub struct LstmModel {
    pub(crate) settings: LstmSettings,
    levels: Levels,
    /// Inference device.
    pub(crate) device: Device,
    pub(crate) weights: Weights,
    net: LstmNet,
    /// The device is the CPU (`flex`): streaming steps run on [`crate::models::lstm::host::step`] from
    /// [`LstmModel::weights`] instead of through burn (same maths, a fraction of the cost).
    host: bool,
    scratch: crate::models::lstm::host::Scratch,
    /// The head's quantiles of one series, sorted ([`sort_quantiles`]).
    sorted: Vec<f64>,
    pub(crate) adam: Adam,
    pub(crate) series: SeriesMap<Series>,
    /// Close time at or after which the next training fires.
    pub(crate) next_train_ms: Option<i64>,
    pub(crate) rng: Rng,
    /// Loss of the latest training step.
    pub(crate) last_loss: Option<f32>,
    background: Option<Background>,
}

/// Standard normal quantile (Acklam's rational approximation, |error| < 1.2·10⁻⁹ before
/// rounding to `f32`), for the untrained head's bias.
pub fn normal_quantile(p: f64) -> f64 {
    const A: [f64; 6] = [
        -3.969_683_028_665_376e1,
        2.209_460_984_245_205e2,
        -2.759_285_104_469_687e2,
        1.383_577_518_672_69e2,
        -3.066_479_806_614_716e1,
        2.506_628_277_459_239,
    ];
    const B: [f64; 5] = [
        -5.447_609_879_822_406e1,
        1.615_858_368_580_409e2,
        -1.556_989_798_598_866e2,
        6.680_131_188_771_972e1,
        -1.328_068_155_288_572e1,
    ];
    const C: [f64; 6] = [
        -7.784_894_002_430_293e-3,
        -3.223_964_580_411_365e-1,
        -2.400_758_277_161_838,
        -2.549_732_539_343_734,
        4.374_664_141_464_968,
        2.938_163_982_698_783,
    ];
    const D: [f64; 4] = [
        7.784_695_709_041_462e-3,
        3.224_671_290_700_398e-1,
        2.445_134_137_142_996,
        3.754_408_661_907_416,
    ];
    let tail = |q: f64| {
        (((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    };
    if p < 0.02425 {
        tail((-2.0 * p.ln()).sqrt())
    } else if p > 1.0 - 0.02425 {
        -tail((-2.0 * (1.0 - p).ln()).sqrt())
    } else {
        let q = p - 0.5;
        let r = q * q;
        (((((A[0] * r + A[1]) * r + A[2]) * r + A[3]) * r + A[4]) * r + A[5]) * q
            / (((((B[0] * r + B[1]) * r + B[2]) * r + B[3]) * r + B[4]) * r + 1.0)
    }
}

impl LstmModel {
    /// A model with fresh weights (or those of `settings.init`) on `settings.device`.
    pub fn new(settings: LstmSettings) -> Result<Self> {
        let (device, _) = select(settings.device)?;
        Self::on_device(settings, device)
    }

    /// A model on an explicit device.
    pub fn on_device(settings: LstmSettings, device: Device) -> Result<Self> {
        let levels = Levels::find(&settings.quantiles)?;
        ensure!(
            !settings.horizons.is_empty()
                && settings.horizons.windows(2).all(|w| w[0] < w[1])
                && settings.horizons[0] >= 1,
            "trained horizons must be ascending bar counts ≥ 1: {:?}",
            settings.horizons
        );
        ensure!(settings.hidden >= 1, "hidden size must be ≥ 1");
        let dims = Dims {
            inputs: N_FEATURES,
            hidden: settings.hidden,
            outputs: settings.horizons.len() * settings.quantiles.len(),
        };
        let bias: Vec<f32> = settings
            .horizons
            .iter()
            .flat_map(|_| {
                settings
                    .quantiles
                    .iter()
                    .map(|&q| normal_quantile(q) as f32)
            })
            .collect();
        let weights = Weights::init(dims, &bias, settings.seed)?;
        let net = LstmNet::new(&weights, &device);
        let init = settings.init.clone();
        let mut model = Self {
            levels,
            host: device == Device::flex(),
            scratch: crate::models::lstm::host::Scratch::default(),
            sorted: Vec::new(),
            device,
            adam: Adam::new(dims.parameters()),
            weights,
            net,
            series: SeriesMap::default(),
            next_train_ms: None,
            rng: Rng(settings.seed ^ 0x5EED_F00D_BA7C_4E55),
            last_loss: None,
            background: None,
            settings,
        };
        if let Some(path) = init {
            let bytes = std::fs::read(&path)
                .with_context(|| format!("reading LSTM checkpoint {}", path.display()))?;
            model
                .load_model(&bytes)
                .with_context(|| format!("loading LSTM checkpoint {}", path.display()))?;
        }
        Ok(model)
    }

    pub fn settings(&self) -> &LstmSettings {
        &self.settings
    }

    /// Gradient steps taken so far (pre-training included).
    pub fn training_steps(&self) -> u64 {
        self.adam.steps
    }

    /// Loss of the latest training step.
    pub fn last_loss(&self) -> Option<f32> {
        self.last_loss
    }

    /// The current parameters.
    pub fn weights(&self) -> &Weights {
        &self.weights
    }

    /// Installs new parameters (and optimizer state) — the hot swap.
    pub(crate) fn install(&mut self, weights: Weights, adam: Adam) -> Result<()> {
        ensure!(
            weights.dims == self.weights.dims && adam.m.len() == weights.dims.parameters(),
            "new weights have other shapes"
        );
        self.net = LstmNet::new(&weights, &self.device);
        self.weights = weights;
        self.adam = adam;
        Ok(())
    }

    /// Replaces the architecture (after loading a checkpoint with other shapes): resets every
    /// series' recurrent state to zero.
    pub(crate) fn reshape(&mut self, weights: Weights, adam: Adam) {
        let hidden = weights.dims.hidden;
        self.net = LstmNet::new(&weights, &self.device);
        self.weights = weights;
        self.adam = adam;
        for s in self.series.values_mut() {
            s.h = vec![0.0; hidden];
            s.c = vec![0.0; hidden];
        }
    }

    pub(crate) fn set_levels(&mut self) -> Result<()> {
        self.levels = Levels::find(&self.settings.quantiles)?;
        Ok(())
    }

    /// Output levels `τ` per head output.
    pub(crate) fn tau(&self) -> Vec<f32> {
        self.settings
            .horizons
            .iter()
            .flat_map(|_| self.settings.quantiles.iter().map(|&q| q as f32))
            .collect()
    }

    /// Histories in key order (training draws from them in this order).
    fn histories(&self) -> Vec<&History> {
        let mut all: Vec<(SeriesKey, &Series)> = self.series.iter().collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all.into_iter().map(|(_, s)| &s.history).collect()
    }

    /// Whether training fires before `c` (and the schedule's next time).
    fn training_due(&mut self, c: &Candle) -> bool {
        if self.settings.training == Training::Off || self.settings.train_every == 0 {
            return false;
        }
        let bar = (c.close_ms - c.open_ms).max(1);
        let every = i64::from(self.settings.train_every).saturating_mul(bar);
        match self.next_train_ms {
            Some(t) if c.close_ms < t => false,
            Some(_) => {
                self.next_train_ms = Some(c.close_ms.saturating_add(every));
                true
            }
            None => {
                self.next_train_ms = Some(c.close_ms.saturating_add(every));
                false
            }
        }
    }

    /// One training firing: `steps_per_train` batches drawn now, trained here or on the
    /// background thread.
    fn fire_training(&mut self) {
        let tau = self.tau();
        let shape = self.settings.batch;
        let mut rng = self.rng;
        let batches: Vec<_> = {
            let histories = self.histories();
            (0..self.settings.steps_per_train)
                .map_while(|_| {
                    sample_batch(
                        &histories,
                        shape,
                        &self.settings.horizons,
                        self.settings.quantiles.len(),
                        &self.settings.features,
                        &mut rng,
                    )
                })
                .collect()
        };
        self.rng = rng;
        if batches.is_empty() {
            return;
        }
        match self.settings.training {
            Training::Off => {}
            Training::Inline => {
                let device = self.device.clone().autodiff();
                let mut weights = self.weights.clone();
                let mut adam = self.adam.clone();
                let mut loss = None;
                for b in &batches {
                    match train_step(
                        &mut weights,
                        &mut adam,
                        &self.settings.adam,
                        b,
                        &tau,
                        &device,
                    ) {
                        Ok(l) => loss = Some(l),
                        Err(e) => {
                            tracing::warn!("lstm: training step failed: {e:#}");
                            return;
                        }
                    }
                }
                if let Err(e) = self.install(weights, adam) {
                    tracing::warn!("lstm: new weights rejected: {e:#}");
                    return;
                }
                self.last_loss = loss;
                tracing::debug!(steps = self.adam.steps, loss = ?loss, "lstm: trained inline");
            }
            Training::Background => {
                let bg = self.background.get_or_insert_with(Background::default);
                bg.submit(
                    self.weights.clone(),
                    self.adam.clone(),
                    self.settings.adam,
                    batches,
                    tau,
                    self.device.clone().autodiff(),
                );
            }
        }
    }

    /// Swaps in the background trainer's result, if one is ready.
    fn collect_background(&mut self) {
        let Some(done) = self.background.as_mut().and_then(Background::poll) else {
            return;
        };
        match done {
            Ok((weights, adam, loss)) => {
                if let Err(e) = self.install(weights, adam) {
                    tracing::warn!("lstm: background weights rejected: {e:#}");
                } else {
                    self.last_loss = Some(loss);
                    tracing::debug!(
                        steps = self.adam.steps,
                        loss,
                        "lstm: swapped in new weights"
                    );
                }
            }
            Err(e) => tracing::warn!("lstm: background training failed: {e:#}"),
        }
    }

    /// Waits for the background job in hand, if any, and swaps its weights in; false when
    /// none was running.
    pub fn wait_for_training(&mut self) -> bool {
        let Some(done) = self.background.as_mut().and_then(Background::wait) else {
            return false;
        };
        match done {
            Ok((weights, adam, loss)) => {
                let ok = self.install(weights, adam).is_ok();
                if ok {
                    self.last_loss = Some(loss);
                }
                ok
            }
            Err(e) => {
                tracing::warn!("lstm: background training failed: {e:#}");
                false
            }
        }
    }

    /// Runs `candles` (a stretch with constant weights) in rounds; fills `out`.
    fn process(&mut self, candles: &[&Candle], horizons: &[u32], out: &mut [Vec<Prediction>]) {
        // Round r holds each series' r-th candle of the batch.
        let mut seen: HashMap<&dyn SeriesRef, usize, rustc_hash::FxBuildHasher> =
            HashMap::default();
        let mut rounds: Vec<Vec<usize>> = Vec::new();
        for (i, &c) in candles.iter().enumerate() {
            let r = seen.entry(series_of(c)).or_insert(0);
            if rounds.len() <= *r {
                rounds.push(Vec::with_capacity(candles.len()));
            }
            rounds[*r].push(i);
            *r += 1;
        }
        for round in rounds {
            if let Err(e) = self.round(candles, &round, horizons, out) {
                tracing::warn!("lstm: forward failed: {e:#}");
            }
        }
    }

    /// One round: features, one batched step, predictions.
    fn round(
        &mut self,
        candles: &[&Candle],
        round: &[usize],
        horizons: &[u32],
        out: &mut [Vec<Prediction>],
    ) -> Result<()> {
        let hidden = self.weights.dims.hidden;
        let fs = self.settings.features;
        let capacity = self.settings.history;
        let mut rows: Vec<(usize, f64)> = Vec::with_capacity(round.len());
        let mut xh = Vec::with_capacity(round.len() * (N_FEATURES + hidden));
        let mut cs = Vec::with_capacity(round.len() * hidden);
        for (j, &i) in round.iter().enumerate() {
            if let Some(&ahead) = round.get(j + AHEAD) {
                self.series.prefetch(candles[ahead]);
            }
            let c = candles[i];
            let Some(bar) = parse(c) else { continue };
            let Some(s) = self.series.get_mut(series_of(c)) else {
                self.series.insert(
                    series_of(c),
                    Series {
                        feat: FeatureState::start(&bar),
                        h: vec![0.0; hidden],
                        c: vec![0.0; hidden],
                        history: History::default(),
                    },
                );
                continue;
            };
            let step = s.feat.step(&bar, &fs);
            s.history.push(step.record(), capacity);
            xh.extend_from_slice(&step.x);
            xh.extend_from_slice(&s.h);
            cs.extend_from_slice(&s.c);
            rows.push((i, step.sigma));
        }
        if rows.is_empty() {
            return Ok(());
        }
        let res = if self.host {
            crate::models::lstm::host::step(&self.weights, &xh, &cs, rows.len(), &mut self.scratch)?
        } else {
            self.net.step_host(xh, cs, rows.len())?
        };
        let outputs = self.weights.dims.outputs;
        let trained = self.adam.steps > 0;
        // Where each horizon's quantiles come from is the same for every series.
        let mixes = Mix::all(&self.settings.horizons, horizons);
        for (r, &(i, sigma)) in rows.iter().enumerate() {
            if let Some(&(ahead, _)) = rows.get(r + AHEAD) {
                self.series.prefetch(candles[ahead]);
            }
            let Some(s) = self.series.get_mut(series_of(candles[i])) else {
                continue;
            };
            s.h.copy_from_slice(&res.h[r * hidden..(r + 1) * hidden]);
            s.c.copy_from_slice(&res.c[r * hidden..(r + 1) * hidden]);
            if s.feat.returns < self.settings.min_returns {
                continue;
            }
            let q = &res.out[r * outputs..(r + 1) * outputs];
            sort_quantiles(q, &self.settings, &mut self.sorted);
            out[i].extend(predictions(
                &self.sorted,
                self.settings.quantiles.len(),
                self.levels,
                s.feat.last_close,
                sigma,
                trained,
                &mixes,
            ));
        }
        Ok(())
    }
}

/// A candle's numbers, or `None` unless its close is finite and positive.
fn parse(c: &Candle) -> Option<Bar> {
    let f = tickcast_core::domain::decimal_f64;
    let close = f(&c.close);
    (close.is_finite() && close > 0.0).then(|| Bar {
        high: f(&c.high),
        low: f(&c.low),
        close,
        volume: f(&c.volume),
    })
}

/// Sorts one head output row's quantiles per trained horizon, NaN read as 0 and each clipped
/// to ±`clip`, into `sorted` (row after row, `quantiles` values each; reused from series to
/// series, so a bar allocates nothing here).
fn sort_quantiles(q: &[f32], settings: &LstmSettings, sorted: &mut Vec<f64>) {
    let nq = settings.quantiles.len();
    let clip = settings.features.clip;
    sorted.clear();
    sorted.extend(q.iter().map(|&x| {
        let x = f64::from(x);
        if x.is_nan() {
            0.0
        } else {
            x.clamp(-clip, clip)
        }
    }));
    for row in sorted.chunks_exact_mut(nq) {
        row.sort_by(f64::total_cmp);
    }
    sorted.truncate(q.len() / nq * nq);
}

/// Maps one head output row, sorted by [`sort_quantiles`], to predictions (see the module
/// docs): `nq` quantiles per trained horizon, and per forecast horizon where its quantiles
/// come from ([`Mix::all`]).
fn predictions<'a>(
    sorted: &'a [f64],
    nq: usize,
    levels: Levels,
    close: f64,
    sigma: f64,
    trained: bool,
    mixes: &'a [(u32, Mix)],
) -> impl Iterator<Item = Prediction> + 'a {
    mixes.iter().map(move |&(h, mix)| {
        let s = sigma * f64::from(h).sqrt();
        let price = |j: usize| close * (s * mix.quantile(sorted, nq, j)).exp();
        let point = if trained { price(levels.median) } else { close };
        let lo80 = price(levels.lo80).min(point);
        let hi80 = price(levels.hi80).max(point);
        Prediction {
            horizon: h,
            point,
            lo80,
            hi80,
            lo95: price(levels.lo95).min(lo80),
            hi95: price(levels.hi95).max(hi80),
        }
    })
}

/// Where horizon `h`'s scaled quantiles come from (module docs): one trained horizon's row,
/// or between two neighbouring rows at weight `w` in log horizon.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Mix {
    Row(usize),
    Between(usize, f64),
}

impl Mix {
    /// Each forecast horizon with its [`Mix`].
    fn all(trained: &[u32], horizons: &[u32]) -> Vec<(u32, Self)> {
        horizons
            .iter()
            .map(|&h| (h, Self::for_horizon(trained, h)))
            .collect()
    }

    fn for_horizon(trained: &[u32], h: u32) -> Self {
        let last = trained.len() - 1;
        if h <= trained[0] {
            return Self::Row(0);
        }
        if h >= trained[last] {
            return Self::Row(last);
        }
        let k = trained.iter().position(|&t| t >= h).unwrap_or(last);
        if trained[k] == h {
            return Self::Row(k);
        }
        let (a, b) = (f64::from(trained[k - 1]).ln(), f64::from(trained[k]).ln());
        Self::Between(k, (f64::from(h).ln() - a) / (b - a))
    }

    /// Scaled quantile `j` from the sorted rows of `nq` values each.
    fn quantile(self, sorted: &[f64], nq: usize, j: usize) -> f64 {
        match self {
            Self::Row(k) => sorted[k * nq + j],
            Self::Between(k, w) => {
                let (x, y) = (sorted[(k - 1) * nq + j], sorted[k * nq + j]);
                x + w * (y - x)
            }
        }
    }
}

impl Forecaster for LstmModel {
    fn name(&self) -> &'static str {
        "lstm"
    }

    /// Its settings less where it runs and starts from, and the training steps taken.
    fn version(&self) -> ModelVersion {
        let s = &self.settings;
        let mut v = ModelVersion::new(
            1,
            &(
                s.hidden,
                &s.horizons,
                &s.quantiles,
                &s.features,
                s.min_returns,
                s.history,
                &s.batch,
                &s.adam,
                s.train_every,
                s.steps_per_train,
                s.seed,
            ),
        );
        v.generation = Some(self.training_steps());
        v
    }

    fn update_into(
        &mut self,
        candles: &[&Candle],
        horizons: &[u32],
        _: &Scored<'_>,
        out: &mut [Vec<Prediction>],
    ) {
        self.collect_background();
        let mut start = 0;
        for (i, c) in candles.iter().enumerate() {
            if self.training_due(c) {
                self.process(&candles[start..i], horizons, &mut out[start..i]);
                start = i;
                self.fire_training();
            }
        }
        self.process(&candles[start..], horizons, &mut out[start..]);
    }

    fn save_series(&self, key: &SeriesKey) -> Option<Vec<u8>> {
        self.series.get(key).map(Series::save)
    }

    fn load_series(&mut self, key: &SeriesKey, bytes: &[u8]) -> Result<()> {
        let s = Series::load(bytes, self.weights.dims.hidden, self.settings.history)?;
        self.series.insert(key, s);
        Ok(())
    }

    fn reset_series(&mut self, key: &SeriesKey) {
        self.series.remove(key);
    }

    fn save_model(&self) -> Option<Vec<u8>> {
        let s = &self.settings;
        let state = ModelState {
            horizons: s.horizons.clone(),
            quantiles: s.quantiles.clone(),
            features: s.features,
            adam: self.adam.clone(),
            next_train_ms: self.next_train_ms,
            rng: Rng(self.rng.0),
            last_loss: self.last_loss,
            weights: &self.weights,
        };
        match checkpoint::save_model(&state) {
            Ok(b) => Some(b),
            Err(e) => {
                tracing::warn!("lstm: cannot checkpoint the weights: {e:#}");
                None
            }
        }
    }

    /// Restores [`Forecaster::save_model`]'s bytes. The checkpoint's shapes, horizons,
    /// quantiles and feature constants replace the model's settings; when the hidden size
    /// changes, every series' `(h, c)` restarts from zero.
    fn load_model(&mut self, bytes: &[u8]) -> Result<()> {
        let m = checkpoint::load_model(bytes)?;
        let old = self.settings.clone();
        self.settings.horizons = m.horizons;
        self.settings.quantiles = m.quantiles;
        self.settings.features = m.features;
        self.settings.hidden = m.weights.dims.hidden;
        if let Err(e) = self.set_levels() {
            self.settings = old;
            return Err(e);
        }
        if m.weights.dims == self.weights.dims {
            self.install(m.weights, m.adam)?;
        } else {
            self.reshape(m.weights, m.adam);
        }
        self.next_train_ms = m.next_train_ms;
        self.rng = m.rng;
        self.last_loss = m.last_loss;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normal_quantiles_match_tables() {
        for (p, z) in [
            (0.5, 0.0),
            (0.975, 1.959_963_984_540),
            (0.9, 1.281_551_565_545),
            (0.025, -1.959_963_984_540),
            (0.001, -3.090_232_306_168),
        ] {
            assert!((normal_quantile(p) - z).abs() < 1e-8, "{p}");
        }
    }

    #[test]
    fn horizons_between_trained_ones_interpolate_in_log_time() {
        let sorted = [-1.0, 0.0, 1.0, -3.0, 0.0, 3.0];
        let trained = [1, 100];
        let row = |mix: Mix| -> Vec<f64> { (0..3).map(|j| mix.quantile(&sorted, 3, j)).collect() };
        assert_eq!(Mix::for_horizon(&trained, 1), Mix::Row(0));
        assert_eq!(row(Mix::for_horizon(&trained, 1)), sorted[..3]);
        assert_eq!(row(Mix::for_horizon(&trained, 500)), sorted[3..]);
        assert_eq!(Mix::for_horizon(&[1, 5, 15], 5), Mix::Row(1));
        // ln 10 is half-way between ln 1 and ln 100.
        let mid = row(Mix::for_horizon(&trained, 10));
        assert!((mid[0] + 2.0).abs() < 1e-12 && mid[1] == 0.0 && (mid[2] - 2.0).abs() < 1e-12);
    }

    #[test]
    fn predictions_are_ordered_positive_and_scaled_by_sqrt_h() {
        let settings = LstmSettings {
            horizons: vec![1, 4],
            ..LstmSettings::default()
        };
        let levels = Levels::find(&settings.quantiles).expect("levels");
        // Unsorted, with a NaN and an out-of-range value.
        let q = [
            1.96f32,
            -1.28,
            0.1,
            1.28,
            -1.96, //
            -2.0,
            -1.0,
            0.0,
            f32::NAN,
            100.0,
        ];
        let mut sorted = Vec::new();
        sort_quantiles(&q, &settings, &mut sorted);
        let p: Vec<_> = predictions(
            &sorted,
            settings.quantiles.len(),
            levels,
            100.0,
            0.01,
            true,
            &Mix::all(&settings.horizons, &[1, 4]),
        )
        .collect();
        let h1 = p[0];
        assert!((h1.point - 100.0 * (0.01f64 * 0.1).exp()).abs() < 1e-4);
        assert!((h1.hi95 - 100.0 * (0.01f64 * 1.96).exp()).abs() < 1e-4);
        assert!((h1.lo80 - 100.0 * (-0.01f64 * 1.28).exp()).abs() < 1e-4);
        let h4 = p[1];
        // Sorted [−2, −1, 0, 0 (NaN), 8 (clipped)]; σ√4 = 0.02.
        assert!((h4.hi95 - 100.0 * (0.02f64 * 8.0).exp()).abs() < 1e-6);
        assert!(
            (h4.hi80 - 100.0).abs() < 1e-9 && (h4.lo95 - 100.0 * (-0.04f64).exp()).abs() < 1e-9
        );
        for x in &p {
            assert!(0.0 < x.lo95 && x.lo95 <= x.lo80 && x.lo80 <= x.point);
            assert!(x.point <= x.hi80 && x.hi80 <= x.hi95);
        }
        // Untrained: the point is the last close, and the bands are widened to hold it.
        let q = [0.5f32, 0.6, 0.7, 0.8, 0.9, 0.5, 0.6, 0.7, 0.8, 0.9];
        sort_quantiles(&q, &settings, &mut sorted);
        let p: Vec<_> = predictions(
            &sorted,
            settings.quantiles.len(),
            levels,
            100.0,
            0.01,
            false,
            &Mix::all(&settings.horizons, &[1]),
        )
        .collect();
        assert_eq!((p[0].point, p[0].lo80, p[0].lo95), (100.0, 100.0, 100.0));
    }

    #[test]
    fn settings_are_checked() {
        let bad = LstmSettings {
            quantiles: vec![0.1, 0.5, 0.9],
            ..LstmSettings::default()
        };
        assert!(LstmModel::on_device(bad, Device::flex()).is_err());
        let bad = LstmSettings {
            horizons: vec![5, 1],
            ..LstmSettings::default()
        };
        assert!(LstmModel::on_device(bad, Device::flex()).is_err());
    }
}
