//! The forecast stage: closed candles → one forecast per model and horizon, plus the
//! `ensemble`, with every forecast scored when its target bar closes.
//!
//! Per candle, in order: a candle at or before the series' newest one is a redelivery and is
//! skipped (its forecasts went out before); a candle after a gap restarts the series in every
//! model (gaps are never bridged); the scorer scores the forecasts due at this bar; the models'
//! predictions (computed for the whole batch at once) become forecasts; the ensemble combines
//! them; the scorer remembers every forecast.
//!
//! Checkpoints (when the stage has a store): every `every`, after the batch's forecasts are
//! acknowledged, the state of each series touched since the last checkpoint (every model's,
//! the scorer's, the ensemble's, and the newest candle's open time), the models' shared
//! parameters and the latest rolling accuracy are written in one transaction; only then are
//! the input offsets up to that point stored. A crash therefore re-reads at most the candles
//! since the last checkpoint, and recomputes exactly the forecasts it had sent (the models are
//! deterministic given their state). A series is restored from the store the first time this
//! process sees it, so a restart or a partition moving to another process resumes every
//! series where its checkpoint left it.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use tickcast_core::bus::OutRecord;
use tickcast_core::codec::{self, Message as _};
use tickcast_core::deadletter::DeadLetter;
use tickcast_core::domain::{Candle, FORECAST_VERSION, Forecast, Name};
use tickcast_core::stage::{Effects, Handler, Inbound, batch_offsets};
use tickcast_core::telemetry;

use crate::checkpoint::{Dec, Enc};
use crate::models::ensemble::{Ensemble, EnsembleSettings};
use crate::scoring::scorer::{Accuracy, Scorer, ScorerSettings, Slot};
use crate::{
    Forecaster, Outcome, Prediction, Scored, SeriesKey, SeriesMap, SeriesRef, SeriesSet, bar_ms,
    clear_batch, series_key, series_of,
};
use tickcast_store::{AccuracyRow, Checkpoint, CheckpointStore, SeriesCheckpoint};

/// The ensemble's model name.
pub const ENSEMBLE: &str = "ensemble";

/// A series' recent window, in bars: its forecasts are `degraded` while an empty
/// (synthesized) candle, or its restart after an unfilled gap, lies within it. The longest
/// default horizon.
pub const RECENT_BARS: u32 = 60;

/// Where and how often the stage checkpoints.
#[derive(Debug, Clone)]
pub struct CheckpointSettings {
    pub store: Arc<dyn CheckpointStore>,
    /// Consumer group the state belongs to.
    pub consumer: String,
    /// Time between checkpoints.
    pub every: Duration,
}

/// Stage handler holding every model.
pub struct ForecastStage {
    models: Vec<Box<dyn Forecaster>>,
    horizons: Vec<u32>,
    output_topic: String,
    ensemble: Option<Ensemble>,
    scorer: Scorer,
    /// Per series: the newest candle folded in, and the names its forecasts share.
    newest: SeriesMap<Seen>,
    /// The current chunk (see [`ForecastStage::process`]).
    chunk: u64,
    /// The models' names as forecasts carry them (shared, not copied per forecast), and the
    /// ensemble's; the scorer's ids of the same.
    names: Vec<Name>,
    ids: Vec<u16>,
    ensemble_name: Name,
    ensemble_id: u16,
    /// Each model's version id, then the ensemble's, as forecasts carry them: made again
    /// only when a model's version changes (the LSTM's, as it trains).
    versions: Vec<Name>,
    /// The input partition each series arrives on.
    partition_of: SeriesMap<(String, i32)>,
    checkpoint: Option<Checkpointer>,
    /// Outcomes scored in the current chunk, and where each candle's start (reused buffers).
    outcomes: Vec<Outcome>,
    starts: Vec<usize>,
    /// Forecasts published per model (in `names` order, then the ensemble) since the counts
    /// were last exported.
    published: Vec<u64>,
    /// Per model, its predictions for each candle of the chunk; kept, with their capacity,
    /// from chunk to chunk ([`Forecaster::update_into`]).
    preds: Vec<Vec<Vec<Prediction>>>,
    /// Each candle's slot in the scorer, looked up once per chunk (a reused buffer).
    slots: Vec<Slot>,
}

/// What the stage keeps per series.
#[derive(Debug)]
struct Seen {
    /// Open time of the newest candle folded in.
    open_ms: i64,
    /// The chunk the series was last in.
    chunk: u64,
    /// Exchange, symbol and interval, shared by every forecast of the series.
    names: [Name; 3],
    /// Bars since the last empty candle or restart after a gap; `None` while there was none.
    since_flaw: Option<u32>,
    /// The series restarted after a gap and its next bar is the first since.
    restarted: bool,
}

impl Seen {
    fn new(key: &dyn SeriesRef, open_ms: i64) -> Self {
        let (e, s, i) = key.parts();
        Self {
            open_ms,
            chunk: 0,
            names: [e.into(), s.into(), i.into()],
            since_flaw: None,
            restarted: false,
        }
    }

    /// Folds in the series' next bar; returns whether its forecasts are degraded.
    fn degraded_after(&mut self, c: &Candle) -> bool {
        if c.trades == 0 || std::mem::take(&mut self.restarted) {
            self.since_flaw = Some(0);
        } else if let Some(n) = &mut self.since_flaw {
            *n = n.saturating_add(1);
        }
        self.since_flaw.is_some_and(|n| n < RECENT_BARS)
    }
}

#[derive(Debug)]
struct Checkpointer {
    settings: CheckpointSettings,
    last: Instant,
    /// Series changed since the last checkpoint.
    dirty: SeriesSet,
    /// Series looked up in the store already.
    looked_up: SeriesSet,
    models_loaded: bool,
    /// Next offsets of everything handled, and of what the last checkpoint covers.
    handled: BTreeMap<(String, i32), i64>,
    covered: BTreeMap<(String, i32), i64>,
}

impl std::fmt::Debug for ForecastStage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.models.iter().map(|m| m.name()).collect();
        f.debug_struct("ForecastStage")
            .field("models", &names)
            .field("horizons", &self.horizons)
            .field("ensemble", &self.ensemble.is_some())
            .field("series", &self.newest.len())
            .finish()
    }
}

/// What one batch produced.
#[derive(Debug, Default)]
pub struct Output {
    pub forecasts: Vec<Forecast>,
    /// Candles skipped as redeliveries.
    pub skipped: usize,
}

impl ForecastStage {
    pub fn new(
        models: Vec<Box<dyn Forecaster>>,
        horizons: Vec<u32>,
        output_topic: impl Into<String>,
    ) -> Self {
        let names: Vec<Name> = models.iter().map(|m| Name::from(m.name())).collect();
        let published = vec![0; names.len() + 1];
        Self {
            models,
            horizons,
            output_topic: output_topic.into(),
            ensemble: None,
            scorer: Scorer::default(),
            newest: SeriesMap::default(),
            chunk: 0,
            names,
            ids: Vec::new(),
            ensemble_name: Name::from(ENSEMBLE),
            ensemble_id: 0,
            versions: Vec::new(),
            partition_of: SeriesMap::default(),
            checkpoint: None,
            outcomes: Vec::new(),
            starts: Vec::new(),
            published,
            preds: Vec::new(),
            slots: Vec::new(),
        }
        .with_scorer(ScorerSettings::default())
    }

    /// Adds the `ensemble` forecast (needs the `naive` model among the models).
    pub fn with_ensemble(mut self, settings: EnsembleSettings) -> Self {
        self.ensemble = Some(Ensemble::new(settings));
        self
    }

    /// Scores with these settings (the default: [`ScorerSettings::default`]).
    pub fn with_scorer(mut self, settings: ScorerSettings) -> Self {
        self.scorer = Scorer::new(settings);
        self.ids = self.names.iter().map(|n| self.scorer.model_id(n)).collect();
        self.ensemble_id = self.scorer.model_id(ENSEMBLE);
        self
    }

    /// Checkpoints to a store, and restores series from it.
    pub fn with_checkpoints(mut self, settings: CheckpointSettings) -> Self {
        self.checkpoint = Some(Checkpointer {
            settings,
            last: Instant::now(),
            dirty: SeriesSet::default(),
            looked_up: SeriesSet::default(),
            models_loaded: false,
            handled: BTreeMap::new(),
            covered: BTreeMap::new(),
        });
        self
    }

    /// Forecasts for a batch of candles, in candle order then model order (the ensemble last).
    pub fn forecasts(&mut self, candles: &[&Candle]) -> Vec<Forecast> {
        self.process(candles).forecasts
    }

    /// Runs a batch: skips redeliveries, restarts series after gaps, scores, forecasts.
    pub fn process(&mut self, candles: &[&Candle]) -> Output {
        let mut out = Output::default();
        // Split the batch where a series restarts, so a reset never wipes a bar of the same
        // batch that came before it.
        let mut chunk: Vec<&Candle> = Vec::with_capacity(candles.len());
        self.chunk += 1;
        for (i, &c) in candles.iter().enumerate() {
            self.newest.prefetch_ahead(candles, i);
            let key = series_of(c);
            let bar = bar_ms(c);
            let current = self.chunk;
            let (gap, repeat) = match self.newest.get_mut(key) {
                Some(s) if c.open_ms <= s.open_ms => {
                    out.skipped += 1;
                    continue;
                }
                Some(s) => {
                    let (gap, repeat) = (c.open_ms != s.open_ms + bar, s.chunk == current);
                    if !gap && !repeat {
                        // The usual case, the series' next bar: one lookup.
                        s.open_ms = c.open_ms;
                        s.chunk = current;
                        chunk.push(c);
                        continue;
                    }
                    (gap, repeat)
                }
                None => (false, false),
            };
            if repeat {
                self.run_chunk(&chunk, &mut out);
                chunk.clear();
                self.chunk += 1;
            }
            if gap {
                self.reset_series(&key.to_key());
            }
            let s = self
                .newest
                .get_or_insert_with(key, || Seen::new(key, c.open_ms));
            s.open_ms = c.open_ms;
            s.chunk = self.chunk;
            s.restarted |= gap;
            chunk.push(c);
        }
        self.run_chunk(&chunk, &mut out);
        telemetry::FORECASTS_SKIPPED.inc_by(out.skipped as u64);
        self.scorer.export_metrics();
        // Counted as run_chunk pushed them (reading every forecast back here cost a pass over
        // megabytes at a thousand symbols).
        let names = self.names.iter().chain([&self.ensemble_name]);
        for (name, n) in names.zip(&mut self.published) {
            if *n > 0 {
                telemetry::FORECASTS
                    .with_label_values(&[name])
                    .inc_by(std::mem::take(n));
            }
        }
        out
    }

    fn reset_series(&mut self, key: &SeriesKey) {
        for m in &mut self.models {
            m.reset_series(key);
        }
        self.scorer.reset_series(key);
        if let Some(e) = &mut self.ensemble {
            e.reset_series(key);
        }
    }

    /// Runs a chunk, in which each series has at most one candle: scores the bar (the
    /// calibrators learn from its outcomes before they publish), then every model at once,
    /// then per candle the forecasts, the ensemble, and the scorer's record of them.
    fn run_chunk(&mut self, candles: &[&Candle], out: &mut Output) {
        if candles.is_empty() {
            return;
        }
        self.outcomes.clear();
        self.starts.clear();
        self.starts.push(0);
        self.slots.clear();
        self.slots
            .extend(candles.iter().map(|c| self.scorer.slot(series_of(c))));
        for (i, (&c, &slot)) in candles.iter().zip(&self.slots).enumerate() {
            self.scorer.prefetch(&self.slots, i, true);
            self.scorer.observe_at(slot, c, &mut self.outcomes);
            self.starts.push(self.outcomes.len());
        }
        self.preds.resize_with(self.models.len(), Vec::new);
        for ((m, &id), batch) in self.models.iter_mut().zip(&self.ids).zip(&mut self.preds) {
            let scored = Scored::new(&self.outcomes, &self.starts, id);
            m.update_into(
                candles,
                &self.horizons,
                &scored,
                clear_batch(batch, candles.len()),
            );
        }
        self.refresh_versions();
        let preds = &self.preds;
        out.forecasts
            .reserve(candles.len() * (self.names.len() + 1) * self.horizons.len());
        let mut ids: Vec<u16> = Vec::new();
        let mut members: Vec<(&str, &[Prediction])> = Vec::with_capacity(self.models.len());
        for (i, (&c, &slot)) in candles.iter().zip(&self.slots).enumerate() {
            self.scorer.prefetch(&self.slots, i, false);
            self.newest.prefetch_ahead(candles, i);
            if let Some(ens) = &self.ensemble {
                ens.prefetch_ahead(candles, i);
            }
            let key = series_of(c);
            let Some(seen) = self.newest.get_mut(key) else {
                continue; // process() records every candle of a chunk first
            };
            let degraded = seen.degraded_after(c);
            let series = Series {
                names: &seen.names,
                base_ms: c.open_ms,
                bar: bar_ms(c),
                last: c.close_f64(),
                degraded,
            };
            let before = out.forecasts.len();
            ids.clear();
            for (m, (name, &id)) in self.names.iter().zip(&self.ids).enumerate() {
                for p in &preds[m][i] {
                    out.forecasts
                        .push(series.forecast(name, &self.versions[m], p));
                    ids.push(id);
                }
                self.published[m] += preds[m][i].len() as u64;
            }
            if let Some(ens) = &mut self.ensemble {
                members.clear();
                members.extend(
                    self.models
                        .iter()
                        .zip(preds)
                        .map(|(m, p)| (m.name(), p[i].as_slice())),
                );
                let version = &self.versions[self.names.len()];
                for p in ens.combine(key, &members, &self.scorer) {
                    out.forecasts
                        .push(series.forecast(&self.ensemble_name, version, &p));
                    ids.push(self.ensemble_id);
                    self.published[self.names.len()] += 1;
                }
            }
            self.scorer
                .record_at(slot, &mut out.forecasts[before..], &ids);
            if let Some(cp) = &mut self.checkpoint {
                cp.dirty.insert(key);
            }
        }
    }

    /// Each model's version id, then the ensemble's ([`ForecastStage::versions`]).
    fn refresh_versions(&mut self) {
        let ids = self
            .models
            .iter()
            .map(|m| m.version().id(m.name()))
            .chain(std::iter::once(
                self.ensemble
                    .as_ref()
                    .map_or_else(String::new, |e| e.version().id(ENSEMBLE)),
            ));
        self.versions
            .resize_with(self.models.len() + 1, || Name::from(""));
        for (kept, id) in self.versions.iter_mut().zip(ids) {
            if **kept != *id {
                *kept = Name::from(id);
            }
        }
    }

    /// Everything held for one series, as one checkpoint blob (format 2: with the bars
    /// since its last flaw, [`Seen::since_flaw`]).
    fn save_series(&self, key: &SeriesKey) -> Option<SeriesCheckpoint> {
        let seen = self.newest.get(key)?;
        let newest = seen.open_ms;
        let mut e = Enc::new(2);
        match seen.since_flaw {
            Some(n) => e.bool(true).u32(n),
            None => e.bool(false),
        };
        e.u32(self.models.len() as u32);
        for m in &self.models {
            e.bytes(m.name().as_bytes());
            match m.save_series(key) {
                Some(b) => e.bool(true).bytes(&b),
                None => e.bool(false),
            };
        }
        for part in [
            self.scorer.save_series(key),
            self.ensemble.as_ref().and_then(|x| x.save_series(key)),
        ] {
            match part {
                Some(b) => e.bool(true).bytes(&b),
                None => e.bool(false),
            };
        }
        Some(SeriesCheckpoint {
            exchange: key.0.clone(),
            symbol: key.1.clone(),
            interval: key.2.clone(),
            last_open_ms: newest,
            state: e.finish(),
        })
    }

    /// Restores one series from its checkpoint blob. A model the blob does not name starts
    /// the series fresh; a blob naming a model this stage does not run is ignored for it.
    fn load_series(&mut self, cp: &SeriesCheckpoint) -> Result<()> {
        let key: SeriesKey = (cp.exchange.clone(), cp.symbol.clone(), cp.interval.clone());
        let (mut d, format) = Dec::versioned(&cp.state, 1..=2)?;
        let since_flaw = if format >= 2 && d.bool()? {
            Some(d.u32()?)
        } else {
            None
        };
        for _ in 0..d.u32()? {
            let name = String::from_utf8(d.bytes()?.to_vec())?;
            let state = if d.bool()? { Some(d.bytes()?) } else { None };
            if let (Some(m), Some(state)) =
                (self.models.iter_mut().find(|m| m.name() == name), state)
            {
                m.load_series(&key, state)
                    .with_context(|| format!("model {name}"))?;
            }
        }
        if d.bool()? {
            self.scorer.load_series(&key, d.bytes()?)?;
        }
        if d.bool()? {
            let b = d.bytes()?;
            if let Some(e) = &mut self.ensemble {
                e.load_series(&key, b)?;
            }
        }
        d.end()?;
        let mut seen = Seen::new(&key, cp.last_open_ms);
        seen.since_flaw = since_flaw;
        self.newest.insert(&key, seen);
        Ok(())
    }

    /// Restores, from the store, shared parameters (once) and the series of this batch not
    /// seen before.
    async fn restore(&mut self, candles: &[Candle]) -> Result<()> {
        let Some(cp) = &mut self.checkpoint else {
            return Ok(());
        };
        let store = cp.settings.store.clone();
        let consumer = cp.settings.consumer.clone();
        let load_models = !cp.models_loaded;
        // Series never seen, and series whose next candle is not the next bar: after a gap, or
        // after their partition moved to another process and back, the store may hold newer
        // state than this process.
        // Only each series' first candle in the batch tells.
        let mut keys: Vec<SeriesKey> = Vec::new();
        let mut first: HashSet<SeriesKey> = HashSet::new();
        for c in candles {
            let k = series_key(c);
            if !first.insert(k.clone()) {
                continue;
            }
            let ask = match self.newest.get(&k) {
                None => !cp.looked_up.contains(&k),
                Some(s) => c.open_ms > s.open_ms + bar_ms(c),
            };
            if ask {
                keys.push(k);
            }
        }
        // Nothing changes before every read has succeeded: a failed restore is retried whole
        // once the store answers (see `Handler::handle`).
        let models = if load_models {
            store.load_model_states(&consumer).await?
        } else {
            Vec::new()
        };
        let rows = if keys.is_empty() {
            Vec::new()
        } else {
            store.load_series_states(&consumer, &keys).await?
        };
        if let Some(cp) = &mut self.checkpoint {
            cp.models_loaded = true;
            for k in &keys {
                cp.looked_up.insert(k);
            }
        }
        if load_models {
            for (name, bytes) in models {
                if let Some(m) = self.models.iter_mut().find(|m| m.name() == name) {
                    match m.load_model(&bytes) {
                        Ok(()) => {
                            tracing::info!(model = %name, bytes = bytes.len(), "model parameters restored")
                        }
                        // Like an unreadable series checkpoint: a bug to see, not a reason to
                        // stop (or to blame the candles); the model starts fresh.
                        Err(e) => {
                            tracing::error!(model = %name, error = %format!("{e:#}"), "model checkpoint unreadable; starting it fresh")
                        }
                    }
                }
            }
        }
        let mut n = 0;
        for row in &rows {
            let key = (
                row.exchange.clone(),
                row.symbol.clone(),
                row.interval.clone(),
            );
            if self
                .newest
                .get(&key)
                .is_some_and(|s| s.open_ms >= row.last_open_ms)
            {
                continue;
            }
            n += 1;
            if let Err(e) = self.load_series(row) {
                // A checkpoint we cannot read is a bug to see, not a reason to stop: the series
                // starts fresh.
                tracing::error!(exchange = %row.exchange, symbol = %row.symbol, error = %e, "series checkpoint unreadable; starting it fresh");
                self.reset_series(&key);
                self.newest.remove(&key);
            }
        }
        if n > 0 {
            tracing::info!(series = n, "series restored from checkpoint");
        }
        Ok(())
    }

    /// Writes a checkpoint of everything changed since the last one.
    async fn write_checkpoint(&mut self) -> Result<()> {
        let Some(cp) = &self.checkpoint else {
            return Ok(());
        };
        let started = Instant::now();
        let mut dirty: Vec<SeriesKey> = cp.dirty.keys().collect();
        dirty.sort();
        let series: Vec<SeriesCheckpoint> =
            dirty.iter().filter_map(|k| self.save_series(k)).collect();
        let models: Vec<(String, Vec<u8>)> = self
            .models
            .iter()
            .filter_map(|m| Some((m.name().to_string(), m.save_model()?)))
            .collect();
        let accuracy: Vec<AccuracyRow> = dirty
            .iter()
            .flat_map(|k| {
                self.scorer
                    .accuracy(k)
                    .into_iter()
                    .map(move |a| accuracy_row(k, &a))
            })
            .collect();
        let checkpoint = Checkpoint {
            series,
            models,
            accuracy,
        };
        cp.settings
            .store
            .save_checkpoint(&cp.settings.consumer, &checkpoint)
            .await
            .context("writing the forecast checkpoint")?;
        tracing::debug!(
            series = checkpoint.series.len(),
            ms = started.elapsed().as_millis() as u64,
            "checkpoint written"
        );
        if let Some(cp) = &mut self.checkpoint {
            cp.dirty.clear();
            cp.covered = cp.handled.clone();
            cp.last = Instant::now();
        }
        Ok(())
    }
}

/// What the forecasts of one series at one bar share.
struct Series<'a> {
    names: &'a [Name; 3],
    base_ms: i64,
    /// The bar length in ms ([`bar_ms`]).
    bar: i64,
    /// The base bar's close.
    last: f64,
    degraded: bool,
}

impl Series<'_> {
    /// One forecast row (its quantiles and touch calibration are the scorer's to set).
    fn forecast(&self, model: &Name, version: &Name, p: &Prediction) -> Forecast {
        let [exchange, symbol, interval] = self.names;
        Forecast {
            v: FORECAST_VERSION,
            exchange: exchange.clone(),
            symbol: symbol.clone(),
            interval: interval.clone(),
            model: model.clone(),
            horizon: p.horizon,
            base_ms: self.base_ms,
            target_ms: self.base_ms + i64::from(p.horizon) * self.bar,
            last: self.last,
            point: p.point,
            lo80: p.lo80,
            hi80: p.hi80,
            lo95: p.lo95,
            hi95: p.hi95,
            quantiles: None,
            touch: None,
            model_version: Some(version.clone()),
            degraded: Some(self.degraded),
        }
    }
}

/// What the stage sends for a bar's forecasts: one record per forecast on `topic`, keyed by its
/// series, its payload the JSON message; each forecast's age at `now_ms` goes to the end-to-end
/// latency histogram. A forecast that fails its checks (a model produced a non-finite value: a
/// bug worth seeing, not a message to send) is logged and dropped.
pub fn records(topic: &str, forecasts: Vec<Forecast>, now_ms: i64) -> Vec<OutRecord> {
    telemetry::observe_end_to_end(
        "forecast",
        "forecast",
        now_ms,
        forecasts.iter().map(telemetry::forecast_event_ms),
    );
    let topic: Arc<str> = topic.into();
    let mut records = Vec::with_capacity(forecasts.len());
    // A series' forecasts come together and share its names: they are checked once, and their
    // records share one key.
    let mut series: Option<([Name; 3], Arc<str>)> = None;
    let mut json = codec::ForecastWriter::default();
    for f in forecasts {
        let known = series
            .as_ref()
            .is_some_and(|(names, _)| codec::same_series_names(names, &f));
        let ok = if known {
            codec::check_forecast_values(&f)
        } else {
            codec::check_series(&f.exchange, &f.symbol, &f.interval).and_then(|()| {
                let names = [&f.exchange, &f.symbol, &f.interval].map(Arc::clone);
                series = Some((names, f.key()));
                codec::check_forecast_values(&f)
            })
        };
        match ok {
            Ok(()) => records.push(OutRecord {
                topic: Arc::clone(&topic),
                // The checks above passed, so `series` holds this forecast's names and key.
                key: series
                    .as_ref()
                    .map_or_else(|| f.key(), |(_, key)| Arc::clone(key)),
                payload: json.json(&f),
            }),
            Err(e) => {
                tracing::error!(model = %f.model, symbol = %f.symbol, error = %e, "invalid forecast dropped")
            }
        }
    }
    records
}

fn finite(x: f64) -> Option<f64> {
    x.is_finite().then_some(x)
}

fn accuracy_row(k: &SeriesKey, a: &Accuracy) -> AccuracyRow {
    let s = &a.summary;
    AccuracyRow {
        exchange: k.0.clone(),
        symbol: k.1.clone(),
        interval: k.2.clone(),
        model: a.model.clone(),
        horizon: a.horizon as i32,
        ts_ms: a.ts_ms,
        n: s.n as i64,
        mae: s.mae,
        rmse: s.rmse,
        mase: finite(s.mase),
        rel_mae: finite(s.rel_mae),
        coverage80: s.coverage80,
        coverage95: s.coverage95,
        winkler95: s.winkler95,
        directional_accuracy: finite(s.directional_accuracy),
        crps: a.quantiles.crps().and_then(finite),
        crps_rel: a.quantiles.crps_rel().and_then(finite),
        pit_max_err: a.quantiles.pit_max_err().and_then(finite),
        touch_brier: a.touch.brier().and_then(finite),
        touch_brier_rel: a.touch.brier_rel().and_then(finite),
        touch_ece: a.touch.ece().and_then(finite),
    }
}

impl Handler for ForecastStage {
    async fn handle(&mut self, batch: &[Inbound]) -> Result<Effects> {
        let mut candles = Vec::with_capacity(batch.len());
        let mut dead = Vec::new();
        for m in batch {
            match codec::decode::<Candle>(&m.payload) {
                Ok(c) => {
                    let k = series_key(&c);
                    if self
                        .partition_of
                        .get(&k)
                        .is_none_or(|p| p.1 != m.partition || p.0 != m.topic)
                    {
                        self.partition_of.insert(&k, (m.topic.clone(), m.partition));
                    }
                    candles.push(c)
                }
                Err(e) => dead.push(DeadLetter::new(
                    "forecast",
                    &m.topic,
                    m.partition,
                    m.offset,
                    e.to_string(),
                    &m.payload,
                )),
            }
        }
        self.restore(&candles).await?;
        let refs: Vec<&Candle> = candles.iter().collect();
        let out = self.process(&refs);
        if let Some(cp) = &mut self.checkpoint {
            for (tp, next) in batch_offsets(batch) {
                let e = cp.handled.entry(tp).or_insert(next);
                *e = (*e).max(next);
            }
        }
        let records = records(&self.output_topic, out.forecasts, tickcast_core::now_ms());
        Ok(Effects {
            records,
            dead,
            commit: None,
        })
    }

    /// A partition moved to another process: forget its series. What was not checkpointed
    /// yet is re-read by the new owner from the last checkpoint's offsets; if the partition
    /// comes back, its series are restored from the store again.
    fn revoked(&mut self, topic: &str, partition: i32) {
        let gone: Vec<SeriesKey> = self
            .partition_of
            .iter()
            .filter(|(_, p)| p.0 == topic && p.1 == partition)
            .map(|(k, _)| k)
            .collect();
        for k in &gone {
            self.reset_series(k);
            self.newest.remove(k);
            self.partition_of.remove(k);
            if let Some(cp) = &mut self.checkpoint {
                cp.dirty.remove(k);
                cp.looked_up.remove(k);
            }
        }
        if let Some(cp) = &mut self.checkpoint {
            cp.handled.remove(&(topic.to_string(), partition));
            cp.covered.remove(&(topic.to_string(), partition));
        }
        if !gone.is_empty() {
            tracing::info!(
                topic,
                partition,
                series = gone.len(),
                "partition revoked; its series dropped from memory"
            );
        }
    }

    async fn acknowledged(&mut self, last: bool) -> Result<Option<BTreeMap<(String, i32), i64>>> {
        let Some(cp) = &self.checkpoint else {
            return Ok(None);
        };
        if last || cp.last.elapsed() >= cp.settings.every {
            self.write_checkpoint().await?;
        }
        Ok(self.checkpoint.as_ref().map(|cp| cp.covered.clone()))
    }

    async fn ready(&mut self) -> Result<()> {
        match &self.checkpoint {
            Some(cp) => cp.settings.store.ping().await,
            None => Ok(()),
        }
    }

    fn outage(&self, error: &anyhow::Error) -> Option<String> {
        tickcast_store::unavailable(error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn forecast(names: &[Name; 3], model: &str, point: f64) -> Forecast {
        let [exchange, symbol, interval] = names.clone();
        Forecast {
            v: 1,
            exchange,
            symbol,
            interval,
            model: model.into(),
            horizon: 5,
            base_ms: 1_723_075_200_000,
            target_ms: 1_723_075_500_000,
            last: 100.0,
            point,
            lo80: 95.0,
            hi80: 105.0,
            lo95: 90.0,
            hi95: 110.0,
            ..Default::default()
        }
    }

    #[test]
    fn records_checks_each_series_names_and_every_forecasts_values() {
        let names = |e: &str, s: &str| -> [Name; 3] { [e.into(), s.into(), "1m".into()] };
        let a = names("binance", "BTC-USDT");
        let bad = names("binance", "btc-usdt");
        // The same names as `a` in other allocations: checked again, and good.
        let a2 = names("binance", "BTC-USDT");
        let eth = names("kraken", "ETH-USD");
        let fs = vec![
            forecast(&a, "naive", 101.0),
            forecast(&a, "ets", f64::NAN), // dropped: not finite
            Forecast {
                hi80: 94.0, // dropped: the 80% interval is empty
                ..forecast(&a, "trend", 101.0)
            },
            forecast(&a, "lstm", 102.0),
            forecast(&bad, "naive", 101.0), // dropped: symbol not canonical
            forecast(&bad, "ets", 101.0),   // dropped: the same names, still bad
            forecast(&a2, "naive", 99.0),
            forecast(&eth, "", 99.0), // dropped: no model name
            forecast(&eth, "naive", 98.0),
        ];
        let want: Vec<OutRecord> = [0, 3, 6, 8]
            .iter()
            .map(|&i| {
                let f = &fs[i];
                OutRecord {
                    topic: "forecasts".into(),
                    key: format!("{}:{}", f.exchange, f.symbol).into(),
                    payload: serde_json::to_vec(f).unwrap_or_default(),
                }
            })
            .collect();
        assert_eq!(records("forecasts", fs, 1_723_075_260_000), want);
    }

    /// Every forecast the stage sends is version 2: its quantiles in order and consistent
    /// with its bands, a touch calibration, its model's version, and `degraded` exactly while
    /// an empty candle or a restart after a gap lies within the last [`RECENT_BARS`] bars.
    #[test]
    fn forecasts_are_version_2_and_degraded_after_flaws() {
        use crate::models::naive::Naive;
        use crate::scoring::calibrated::{Calibrated, CalibrationSettings};
        use crate::testing::synthetic_candles;
        let mut candles = synthetic_candles(&["BTC-USDT"], 400, 11);
        // An empty candle at bar 100; bar 250 missing (a gap the stage restarts after).
        candles[100].trades = 0;
        candles.remove(250);
        let naive = Calibrated::new(Box::new(Naive::default()), CalibrationSettings::default());
        let mut stage = ForecastStage::new(vec![Box::new(naive)], vec![1, 5], "t")
            .with_ensemble(EnsembleSettings::default());
        let mut degraded_bars = std::collections::BTreeSet::new();
        let mut seen_bars = std::collections::BTreeSet::new();
        for c in &candles {
            for f in stage.forecasts(&[c]) {
                assert_eq!(f.v, FORECAST_VERSION);
                let bytes = codec::encode(&f);
                assert_eq!(codec::decode::<Forecast>(&bytes).as_ref(), Ok(&f));
                let q = f.quantiles.expect("quantiles");
                assert!(q.windows(2).all(|w| w[0] <= w[1]), "{q:?}");
                assert!(f.touch.is_some());
                let version = f.model_version.as_deref().expect("model version");
                let prefix = format!("{}.r", f.model);
                assert!(version.starts_with(&prefix), "{version}");
                let bar = f.base_ms / 60_000;
                seen_bars.insert(bar);
                if f.degraded == Some(true) {
                    degraded_bars.insert(bar);
                }
            }
        }
        let flawed = |from: i64| (from..from + i64::from(RECENT_BARS)).collect::<Vec<_>>();
        let want: std::collections::BTreeSet<i64> = flawed(100)
            .into_iter()
            .chain(flawed(251))
            .filter(|b| seen_bars.contains(b))
            .collect();
        assert!(want.contains(&100) && want.contains(&300) && want.contains(&310));
        assert_eq!(degraded_bars, want);
        assert!(seen_bars.contains(&99) && seen_bars.contains(&160) && seen_bars.contains(&311));
    }
}
