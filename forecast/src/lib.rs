//! Forecasting: one [`Forecaster`] trait, called once per batch of closed candles so that a
//! model can work on all symbols of a partition at once; the models; their scoring and online
//! calibration; the forecast stage that turns candles into [`Forecast`] messages for every
//! model and horizon; and the backtest that runs the same code over a file.
//!
//! Layout:
//! - [`models`] — the model list (names, defaults, the stage built from them) and the models:
//!   [`models::naive`] (random walk, EWMA-volatility bands), [`models::garch`] (GARCH(1,1)
//!   bands refitted on a window), [`models::ets`] (AutoETS on log prices), [`models::trend`]
//!   (Prophet-style trend: piecewise-linear with L1 changepoints and Fourier seasonality),
//!   [`models::lstm`] (burn; CPU, or GPU with the `wgpu` feature) and [`models::ensemble`]
//!   (the models combined by their recent scores).
//! - [`scoring`] — measuring and calibrating forecasts: [`scoring::accuracy`] (the measures),
//!   [`scoring::scorer`] (each forecast scored when its target bar closes; rolling scores),
//!   [`scoring::calibrated`] and [`scoring::conformal`] (online interval calibration),
//!   [`scoring::distribution`], [`scoring::quantiles`] and [`scoring::touch`] (the published
//!   quantiles and touch probabilities).
//! - [`stage`] — the forecast stage's handler, with its checkpoints.
//! - [`checkpoint`] — the binary encoding of model checkpoints.
//! - [`series`] — maps per series, looked up from a candle without building a key.
//! - [`backtest`] — a candle or trade file through the stage, scored against naive.
//! - `testing` — helpers for tests (`test-support` feature).

pub mod backtest;
pub mod checkpoint;
pub mod models;
pub mod scoring;
pub mod series;
pub mod stage;
#[cfg(any(test, feature = "test-support"))]
pub mod testing;

pub use series::{SeriesMap, SeriesSet};

use anyhow::Result;
use tickcast_core::domain::{Candle, Forecast};

/// One series: (exchange, symbol, interval).
pub type SeriesKey = (String, String, String);

/// The series a candle belongs to.
pub fn series_key(c: &Candle) -> SeriesKey {
    (c.exchange.clone(), c.symbol.clone(), c.interval.clone())
}

/// The series a forecast belongs to.
pub fn forecast_series_key(f: &Forecast) -> SeriesKey {
    (
        f.exchange.to_string(),
        f.symbol.to_string(),
        f.interval.to_string(),
    )
}

/// A candle's bar length in ms: its interval label's, or its own span when the label does
/// not parse.
pub fn bar_ms(c: &Candle) -> i64 {
    tickcast_core::interval::Interval::parse(&c.interval)
        .map(tickcast_core::interval::Interval::ms)
        .unwrap_or(c.close_ms - c.open_ms)
}

/// A series key, owned ([`SeriesKey`]) or borrowed from a candle. It hashes and compares
/// exactly like [`SeriesKey`], so a [`SeriesMap`] is looked up from a candle without building
/// (allocating) a key: `map.get(of(candle))`. The forecast stage does several such lookups per
/// candle and model, so this matters at thousands of symbols.
pub trait SeriesRef {
    /// (exchange, symbol, interval).
    fn parts(&self) -> (&str, &str, &str);
    /// The owned key.
    fn to_key(&self) -> SeriesKey {
        let (e, s, i) = self.parts();
        (e.to_string(), s.to_string(), i.to_string())
    }
}

impl SeriesRef for SeriesKey {
    fn parts(&self) -> (&str, &str, &str) {
        (&self.0, &self.1, &self.2)
    }
}

impl SeriesRef for Candle {
    fn parts(&self) -> (&str, &str, &str) {
        (&self.exchange, &self.symbol, &self.interval)
    }
}

/// The borrowed key of a candle's series.
pub fn series_of(c: &Candle) -> &dyn SeriesRef {
    c
}

impl std::hash::Hash for dyn SeriesRef + '_ {
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        // As a tuple of Strings hashes: each part in order, as `str`.
        let (e, s, i) = self.parts();
        e.hash(h);
        s.hash(h);
        i.hash(h);
    }
}

impl PartialEq for dyn SeriesRef + '_ {
    fn eq(&self, other: &Self) -> bool {
        self.parts() == other.parts()
    }
}

impl Eq for dyn SeriesRef + '_ {}

impl<'a> std::borrow::Borrow<dyn SeriesRef + 'a> for SeriesKey {
    fn borrow(&self) -> &(dyn SeriesRef + 'a) {
        self
    }
}

/// The value of `key` in a short list of (key, value) pairs (a few horizons or levels,
/// scanned in order), made by `make` and appended on first use.
pub(crate) fn entry<K: PartialEq, V>(
    list: &mut Vec<(K, V)>,
    key: K,
    make: impl FnOnce() -> V,
) -> &mut V {
    let at = match list.iter().position(|(k, _)| *k == key) {
        Some(i) => i,
        None => {
            list.push((key, make()));
            list.len() - 1
        }
    };
    &mut list[at].1
}

/// Readies `batch` for [`Forecaster::update_into`] on `n` candles: its first `n` vectors,
/// emptied, their capacity kept (and vectors beyond `n` kept for a later, larger batch).
pub fn clear_batch(batch: &mut Vec<Vec<Prediction>>, n: usize) -> &mut [Vec<Prediction>] {
    if batch.len() < n {
        batch.resize_with(n, Vec::new);
    }
    let out = &mut batch[..n];
    for v in out.iter_mut() {
        v.clear();
    }
    out
}

/// Weight of the previous value in the EWMA of squared log returns (RiskMetrics): the
/// volatility `naive`'s bands use, and that `trend` and `ets` scale theirs by.
pub const RETURN_LAMBDA: f64 = 0.94;

/// The EWMA of squared log returns after return `r`, `first` when it is the series' first.
pub fn ewma_variance(variance: f64, r: f64, first: bool) -> f64 {
    if first {
        r * r
    } else {
        RETURN_LAMBDA * variance + (1.0 - RETURN_LAMBDA) * r * r
    }
}

/// The EWMA of squared log returns over log closes, oldest first (0 for fewer than two).
pub fn window_variance<'a>(logs: impl IntoIterator<Item = &'a f64>) -> f64 {
    let mut variance = 0.0;
    let mut prev: Option<f64> = None;
    let mut first = true;
    for &y in logs {
        if let Some(p) = prev {
            variance = ewma_variance(variance, y - p, first);
            first = false;
        }
        prev = Some(y);
    }
    variance
}

/// z-scores of the central 80% and 95% normal intervals.
pub const Z80: f64 = 1.281_551_565_545;
pub const Z95: f64 = 1.959_963_984_540;

/// The naive (random-walk) model's name: the reference every score and the ensemble compare
/// with.
pub const NAIVE: &str = "naive";

/// A forecast scored at this bar whose published interval has a positive width
/// ([`scoring::calibrated::spread`]): what the model's online calibrator learns from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    /// The model's id ([`scoring::scorer::Scorer::model_id`]).
    pub model: u16,
    pub horizon: u32,
    /// Whether the actual fell inside the published 80% and 95% intervals.
    pub covered: [bool; 2],
}

/// One model's forecast for one horizon.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Prediction {
    pub horizon: u32,
    pub point: f64,
    pub lo80: f64,
    pub hi80: f64,
    pub lo95: f64,
    pub hi95: f64,
}

/// The outcomes scored at each candle of a batch ([`scoring::scorer::Scorer::observe_into`]), as one
/// model sees them: its own only.
#[derive(Debug, Clone, Copy)]
pub struct Scored<'a> {
    outcomes: &'a [Outcome],
    /// Candle `i`'s outcomes are `outcomes[starts[i]..starts[i + 1]]`.
    starts: &'a [usize],
    model: u16,
}

impl<'a> Scored<'a> {
    /// No outcomes.
    pub const NONE: Scored<'static> = Scored {
        outcomes: &[],
        starts: &[],
        model: 0,
    };

    pub fn new(outcomes: &'a [Outcome], starts: &'a [usize], model: u16) -> Self {
        Self {
            outcomes,
            starts,
            model,
        }
    }

    /// The model's outcomes scored at candle `i`.
    pub fn at(&self, i: usize) -> impl Iterator<Item = &'a Outcome> + 'a {
        let all = match (self.starts.get(i), self.starts.get(i + 1)) {
            (Some(&a), Some(&b)) => self.outcomes.get(a..b).unwrap_or_default(),
            _ => &[],
        };
        let model = self.model;
        all.iter().filter(move |o| o.model == model)
    }
}

/// What a forecast's `model_version` is made of: the model code's revision (raised whenever a
/// change alters what the model forecasts), its settings, and for a model that learns shared
/// parameters as it runs, how far it has trained.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelVersion {
    pub revision: u32,
    /// The settings, as text (their `Debug` form).
    pub settings: String,
    /// Training steps taken, for a model that trains as it runs.
    pub generation: Option<u64>,
}

impl ModelVersion {
    pub fn new(revision: u32, settings: &impl std::fmt::Debug) -> Self {
        Self {
            revision,
            settings: format!("{settings:?}"),
            generation: None,
        }
    }

    /// The id a forecast carries: `{name}.r{revision}.{hash of the settings}`, and
    /// `.t{steps}` for a model that trains, e.g. `ets.r2.5c1f09ab` or `lstm.r1.0a9b3c2d.t1200`.
    /// The hash is FNV-1a's, stable across builds and platforms.
    pub fn id(&self, name: &str) -> String {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in self.settings.bytes() {
            h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
        let short = (h ^ (h >> 32)) as u32;
        let mut id = format!("{name}.r{}.{short:08x}", self.revision);
        if let Some(g) = self.generation {
            id.push_str(&format!(".t{g}"));
        }
        id
    }
}

/// A forecasting model over many series.
pub trait Forecaster: Send {
    /// Name written into each forecast's `model`.
    fn name(&self) -> &'static str;
    /// The model's version ([`ModelVersion`]); forecasts carry its id.
    fn version(&self) -> ModelVersion;
    /// Folds each closed candle (in order; a series may appear more than once) into the model
    /// and appends to `out[i]` the predictions for `candles[i]`, one per horizon — or none
    /// while the series warms up. `scored.at(i)` are the outcomes of the model's earlier
    /// forecasts scored at `candles[i]`, which online calibration learns from; other models
    /// ignore them.
    ///
    /// On entry `out` has one empty vector per candle ([`clear_batch`]). The stage keeps the
    /// vectors from batch to batch, so a model that only appends allocates nothing once their
    /// capacity has grown to the horizons'.
    ///
    /// The default takes the candles one at a time: [`Forecaster::prefetch`] a few ahead, then
    /// [`Forecaster::fold`]. A model implements those two, or this.
    fn update_into(
        &mut self,
        candles: &[&Candle],
        horizons: &[u32],
        _scored: &Scored<'_>,
        out: &mut [Vec<Prediction>],
    ) {
        for (i, (c, out)) in candles.iter().zip(out).enumerate() {
            self.prefetch(candles, i);
            self.fold(c, horizons, out);
        }
    }
    /// Folds one closed candle into its series and appends its predictions, one per horizon
    /// (none while the series warms up): the step of the default
    /// [`Forecaster::update_into`]. A model that implements `update_into` itself does not need
    /// it; this default folds nothing.
    fn fold(&mut self, _candle: &Candle, _horizons: &[u32], _out: &mut Vec<Prediction>) {}
    /// Starts loading the state of the series of the candle a few places after `candles[i]`
    /// ([`SeriesMap::prefetch_ahead`]), so that it is in cache when [`Forecaster::fold`] gets
    /// there.
    fn prefetch(&self, _candles: &[&Candle], _i: usize) {}
    /// [`Forecaster::update_into`] without outcomes, into new vectors: per candle, its
    /// predictions.
    fn update(&mut self, candles: &[&Candle], horizons: &[u32]) -> Vec<Vec<Prediction>> {
        self.update_scored(candles, horizons, &Scored::NONE)
    }
    /// [`Forecaster::update_into`] into new vectors.
    fn update_scored(
        &mut self,
        candles: &[&Candle],
        horizons: &[u32],
        scored: &Scored<'_>,
    ) -> Vec<Vec<Prediction>> {
        let mut out = vec![Vec::new(); candles.len()];
        self.update_into(candles, horizons, scored, &mut out);
        out
    }
    /// Everything the model keeps for one series, as checkpoint bytes; `None` when it has
    /// seen nothing of it. Restoring these bytes with [`Forecaster::load_series`] must make
    /// the model's later forecasts for the series identical to those of an uninterrupted run.
    fn save_series(&self, key: &SeriesKey) -> Option<Vec<u8>>;
    /// Restores one series from [`Forecaster::save_series`]'s bytes, replacing what is held.
    fn load_series(&mut self, key: &SeriesKey, bytes: &[u8]) -> Result<()>;
    /// Forgets one series: after a gap in its candles the stage restarts it from scratch, as
    /// the backtest does (gaps are never bridged).
    fn reset_series(&mut self, key: &SeriesKey);
    /// Parameters shared by all series (e.g. network weights), for checkpoints; `None` for
    /// models whose state is entirely per series.
    fn save_model(&self) -> Option<Vec<u8>> {
        None
    }
    /// Restores [`Forecaster::save_model`]'s bytes.
    fn load_model(&mut self, _bytes: &[u8]) -> Result<()> {
        anyhow::bail!("model `{}` has no shared parameters to load", self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{check_resume, synthetic_candles};

    #[test]
    fn every_model_resumes_from_its_checkpoint_exactly() {
        use crate::models::garch::model::{GarchModel, GarchSettings};
        use crate::scoring::calibrated::{Calibrated, CalibrationSettings};
        let candles = synthetic_candles(&["BTC-USDT", "ETH-USDT"], 900, 7);
        let garch = || {
            GarchModel::new(GarchSettings {
                window: 400,
                min_returns: 100,
                refit_every: 50,
            })
        };
        let makers: Vec<Box<dyn Fn() -> Box<dyn Forecaster>>> = vec![
            Box::new(|| Box::new(crate::models::naive::Naive::default())),
            Box::new(move || Box::new(garch())),
            Box::new(move || {
                Box::new(Calibrated::new(
                    Box::new(garch()),
                    CalibrationSettings::default(),
                ))
            }),
        ];
        for make in &makers {
            // Split mid-way between refits, with calibration outcomes pending.
            check_resume(make.as_ref(), &candles, 2 * 623 + 1, &[1, 5, 15]).expect("resumes");
        }
    }
}
