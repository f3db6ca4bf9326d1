//! The streaming scorer: every published forecast waits for the candle of its target bar; when
//! that candle closes the forecast is scored (error, inside or outside each interval, the naive
//! forecast's error on the same point) into exponentially weighted rolling sums per series,
//! model and horizon ([`Score::add_decayed`]; effective window `window` points). The rolling
//! scores feed the ensemble's weights, the `accuracy` table and the Prometheus counters:
//!
//! - `tickcast_forecast_scored_total{model,horizon}` — forecasts scored;
//! - `tickcast_forecast_covered_total{model,horizon,level}` — of those, inside the interval;
//! - `tickcast_forecast_abs_error_total{model,horizon,kind}` — sums of `kind="relative"`
//!   |actual − point| / last, `kind="naive_relative"` |actual − last| / last, and `kind="scaled"`
//!   |actual − point| / the series' one-step naive MAE.
//!
//! So, over any range: coverage = covered / scored, relative MAE = relative / naive_relative,
//! MASE = scaled / scored, aggregated over every series of the model and horizon.
//!
//! A forecast whose target bar never arrives (the series had a gap) is dropped unscored.

use std::collections::VecDeque;

use anyhow::Result;
use tickcast_core::domain::{Candle, Forecast};
use tickcast_core::telemetry;

use crate::checkpoint::{Dec, Enc};
use crate::scoring::accuracy::{Point, Score, Summary};
use crate::scoring::distribution::{Calibrators, DistScores, Learnt, Made, Published, Reached};
use crate::{Outcome, SeriesKey, SeriesMap, SeriesRef};

/// Scorer settings.
#[derive(Debug, Clone, Copy)]
pub struct ScorerSettings {
    /// Effective number of recent points in the rolling scores.
    pub window: f64,
}

impl Default for ScorerSettings {
    fn default() -> Self {
        Self { window: 500.0 }
    }
}

#[derive(Debug, Default, Clone)]
struct Track {
    /// Index into [`Scorer`]'s model names.
    model: u16,
    horizon: u32,
    score: Score,
    /// The scores of what the track's quantile and touch calibrators published.
    dist: DistScores,
    /// Open time of the bar scored last.
    last_ms: i64,
}

/// A forecast waiting for its target bar: two cache lines, the first holding what every
/// forecast is scored on, so that reaching the front of a queue (cold at every bar, at
/// thousands of series) costs one miss per forecast for the bands' scores.
#[derive(Debug, Clone, Copy)]
#[repr(C, align(64))]
struct Pending {
    target_ms: i64,
    /// The base bar's close, the point forecast and the bands ([`Point`] less the actual).
    base: f64,
    point: f64,
    lo80: f64,
    hi80: f64,
    lo95: f64,
    hi95: f64,
    /// Index into the series' tracks.
    track: u16,
    /// What its quantiles and touch calibration came from.
    published: Published,
}

impl Pending {
    fn new(target_ms: i64, track: u16, p: &Point, published: Published) -> Self {
        Self {
            target_ms,
            base: p.base,
            point: p.point,
            lo80: p.lo80,
            hi80: p.hi80,
            lo95: p.lo95,
            hi95: p.hi95,
            track,
            published,
        }
    }

    fn made(&self) -> Made {
        Made {
            last: self.base,
            point: self.point,
            hi95: self.hi95,
            published: self.published,
        }
    }

    fn scored(&self, actual: f64) -> Point {
        Point {
            actual,
            base: self.base,
            point: self.point,
            lo80: self.lo80,
            hi80: self.hi80,
            lo95: self.lo95,
            hi95: self.hi95,
        }
    }
}

#[derive(Debug, Default, Clone)]
struct SeriesScores {
    /// One per (model, horizon); a few dozen at most, scanned without allocating.
    tracks: Vec<Track>,
    /// Each track's (model, horizon), in the same order: what recording a forecast looks
    /// up, a few cache lines instead of every track's.
    ids: Vec<(u16, u32)>,
    /// Each track's quantile and touch calibrators, in the same order: what a forecast is
    /// published from (apart from the scores, so that recording reads only these).
    cals: Vec<Calibrators>,
    /// Per horizon, every model's forecasts waiting for their target bar, in target order.
    /// One queue per horizon rather than per model and horizon: the forecasts due at a bar
    /// then lie side by side in memory (at thousands of series, reaching scattered queue
    /// fronts was most of the scorer's cost).
    pending: Vec<(u32, VecDeque<Pending>)>,
    last_close: Option<f64>,
    /// Rolling one-step naive MAE (MASE's scale).
    step: Score,
    /// The highs and lows of the latest bars, newest last, as many as the longest horizon:
    /// what a forecast's touch levels are checked against.
    recent: VecDeque<[f64; 2]>,
}

impl SeriesScores {
    /// The highest high and lowest low of the last `h` bars, if all of them were seen.
    fn extremes(&self, h: u32) -> (Option<f64>, Option<f64>) {
        let h = h as usize;
        if h == 0 || self.recent.len() < h {
            return (None, None);
        }
        let (mut high, mut low) = (f64::NEG_INFINITY, f64::INFINITY);
        for [hi, lo] in self.recent.iter().skip(self.recent.len() - h) {
            high = high.max(*hi);
            low = low.min(*lo);
        }
        (
            high.is_finite().then_some(high),
            low.is_finite().then_some(low),
        )
    }
}

/// One rolling score that changed.
#[derive(Debug, Clone, PartialEq)]
pub struct Accuracy {
    pub model: String,
    pub horizon: u32,
    /// Open time of the bar that was scored last.
    pub ts_ms: i64,
    pub summary: Summary,
    /// The rolling scores of the quantiles and touch probabilities.
    pub quantiles: crate::scoring::quantiles::QuantileScore,
    pub touch: crate::scoring::touch::TouchScore,
}

/// Sums for the Prometheus counters, added up per batch and exported once.
#[derive(Debug, Default, Clone, Copy)]
struct Sums {
    scored: u64,
    covered80: u64,
    covered95: u64,
    relative: f64,
    naive_relative: f64,
    scaled: f64,
    /// The distribution's ([`Learnt`]): quantiles scored, outcomes at or below each, CRPS
    /// over the last close (all, and paired with naive's), touch outcomes (count, touched,
    /// Brier, the base rate's Brier) and per tenth of p (count, Σp, touched).
    quantile_scored: u64,
    below: [u64; 9],
    crps: f64,
    crps_paired: f64,
    naive_crps_paired: f64,
    touch: [f64; 4],
    touch_bins: [[f64; 3]; 10],
}

impl Sums {
    fn add_learnt(&mut self, l: &Learnt) {
        self.quantile_scored += 1;
        for (b, below) in self.below.iter_mut().zip(l.below) {
            *b += u64::from(below);
        }
        self.crps += l.crps_rel;
        if let Some(n) = l.naive_crps_rel {
            self.crps_paired += l.crps_rel;
            self.naive_crps_paired += n;
        }
        for (p, reference, touched) in l.touches.iter().flatten() {
            let o = f64::from(u8::from(*touched));
            self.touch[0] += 1.0;
            self.touch[1] += o;
            self.touch[2] += (p - o) * (p - o);
            self.touch[3] += (reference - o) * (reference - o);
            let bin = &mut self.touch_bins[((p * 10.0) as usize).min(9)];
            bin[0] += 1.0;
            bin[1] += p;
            bin[2] += o;
        }
    }
}

/// Where the scorer keeps one series ([`Scorer::slot`]): the key looked up once, for the
/// calls of a batch that follow. A slot stays the series' until the series is reset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slot(u32);

/// Scores every series' forecasts.
#[derive(Debug, Default)]
pub struct Scorer {
    settings: ScorerSettings,
    /// Model names; tracks refer to them by index.
    models: Vec<String>,
    /// Each series' index in `states`.
    index: SeriesMap<u32>,
    /// Series states, where a [`Slot`] points; their addresses are known without a lookup, so
    /// the stage can start loading a series' state several series ahead.
    states: Vec<SeriesScores>,
    /// Indices of `states` that reset series left, reused first.
    free: Vec<u32>,
    unexported: Vec<((u16, u32), Sums)>,
    /// Naive's model id, once it has one: its CRPS is what the others' are compared with.
    naive: Option<u16>,
}

/// The index of `name` in `models`, added when new.
fn intern(models: &mut Vec<String>, name: &str) -> u16 {
    match models.iter().position(|m| m == name) {
        Some(i) => i as u16,
        None => {
            models.push(name.to_string());
            (models.len() - 1) as u16
        }
    }
}

impl Scorer {
    pub fn new(settings: ScorerSettings) -> Self {
        Self {
            settings,
            ..Self::default()
        }
    }

    fn decay(&self) -> f64 {
        1.0 - 1.0 / self.settings.window.max(1.0)
    }

    /// The id [`Outcome`]s carry for a model name.
    pub fn model_id(&mut self, name: &str) -> u16 {
        self.intern(name)
    }

    fn intern(&mut self, name: &str) -> u16 {
        let id = intern(&mut self.models, name);
        if name == crate::NAIVE {
            self.naive = Some(id);
        }
        id
    }

    /// The slot of a series, made (empty) when new.
    pub fn slot(&mut self, key: &dyn SeriesRef) -> Slot {
        let (states, free) = (&mut self.states, &mut self.free);
        Slot(*self.index.get_or_insert_with(key, || {
            free.pop().unwrap_or_else(|| {
                states.push(SeriesScores::default());
                (states.len() - 1) as u32
            })
        }))
    }

    /// The state of a series, if it has one.
    fn get(&self, key: &dyn SeriesRef) -> Option<&SeriesScores> {
        self.index
            .get(key)
            .and_then(|&i| self.states.get(i as usize))
    }

    /// Scores the forecasts whose target bar this candle is. Returns how many were scored.
    pub fn observe(&mut self, key: &dyn SeriesRef, c: &Candle) -> usize {
        self.observe_into(key, c, &mut Vec::new())
    }

    /// [`Scorer::observe`], adding the outcomes the calibrators learn from to `outcomes`.
    pub fn observe_into(
        &mut self,
        key: &dyn SeriesRef,
        c: &Candle,
        outcomes: &mut Vec<Outcome>,
    ) -> usize {
        let slot = self.slot(key);
        self.observe_at(slot, c, outcomes)
    }

    /// [`Scorer::observe_into`] for the series in `slot` (the candle's).
    pub fn observe_at(&mut self, slot: Slot, c: &Candle, outcomes: &mut Vec<Outcome>) -> usize {
        let decay = self.decay();
        let close = c.close_f64();
        let Some(s) = self.states.get_mut(slot.0 as usize) else {
            return 0;
        };
        if let Some(last) = s.last_close
            && close.is_finite()
        {
            let step = Point {
                actual: close,
                base: last,
                point: last,
                lo80: last,
                hi80: last,
                lo95: last,
                hi95: last,
            };
            s.step.add_decayed(&step, decay);
        }
        if close.is_finite() {
            s.last_close = Some(close);
        }
        let longest = s
            .pending
            .iter()
            .map(|(h, _)| *h as usize)
            .max()
            .unwrap_or(0);
        s.recent.push_back([c.high_f64(), c.low_f64()]);
        while s.recent.len() > longest.max(1) {
            s.recent.pop_front();
        }
        let scale = s.step.summary(1.0).map_or(f64::NAN, |x| x.mae);
        let mut scored = 0;
        let mut hint = 0;
        let naive = self.naive;
        for i in 0..s.pending.len() {
            let h = s.pending[i].0;
            let (high, low) = s.extremes(h);
            let mut reached = Reached::new(close, high, low);
            let queue = &mut s.pending[i].1;
            // Naive's CRPS at this bar and horizon, which the others' are compared with.
            let naive_crps = naive.and_then(|id| {
                let w = queue
                    .iter()
                    .take_while(|w| w.target_ms <= c.open_ms)
                    .find(|w| {
                        w.target_ms == c.open_ms
                            && s.tracks.get(usize::from(w.track)).map(|t| t.model) == Some(id)
                    })?;
                Calibrators::crps_of(&w.made(), close)
            });
            while let Some(w) = queue.front() {
                if w.target_ms > c.open_ms {
                    break;
                }
                let (target_ms, track, p, made) = (w.target_ms, w.track, w.scored(close), w.made());
                queue.pop_front();
                if target_ms < c.open_ms || !close.is_finite() {
                    continue;
                }
                let Some(t) = s.tracks.get_mut(usize::from(track)) else {
                    continue;
                };
                t.score.add_decayed(&p, decay);
                let learnt = s
                    .cals
                    .get_mut(usize::from(track))
                    .and_then(|cal| cal.learn(&mut t.dist, &made, &mut reached, naive_crps, decay));
                t.last_ms = c.open_ms;
                scored += 1;
                add_sums(
                    &mut self.unexported,
                    &mut hint,
                    (t.model, t.horizon),
                    &p,
                    scale,
                    learnt.as_ref(),
                );
                if close > 0.0 && crate::scoring::calibrated::has_spread(p.point, p.hi95) {
                    outcomes.push(Outcome {
                        model: t.model,
                        horizon: t.horizon,
                        covered: [
                            p.lo80 <= close && close <= p.hi80,
                            p.lo95 <= close && close <= p.hi95,
                        ],
                    });
                }
            }
        }
        scored
    }

    /// Starts loading, for the series of `slots[i + 1 ..= i + 3]`, what
    /// [`Scorer::observe_at`] (`score`) or [`Scorer::record_at`] (`!score`) will touch once
    /// the batch reaches them: three series ahead, the series' state; two ahead, the first
    /// line of each list it points to; one ahead, the fronts of its queues and its tracks, or
    /// its track ids and where its queues grow. Each step reads only what the step before
    /// loaded, so none waits for memory. (All of the tracks two ahead measured slower, in 4 of
    /// 4 pairs.) Only a hint to the CPU; changes nothing.
    pub fn prefetch(&self, slots: &[Slot], i: usize, score: bool) {
        use crate::series::{prefetch, prefetch_all};
        let state = |d: usize| slots.get(i + d).and_then(|s| self.states.get(s.0 as usize));
        if let Some(far) = state(3) {
            prefetch_all(std::slice::from_ref(far), 4);
        }
        if let Some(s) = state(2) {
            prefetch_all(&s.pending, 4);
            prefetch_all(&s.cals, 1);
            if score {
                prefetch_all(&s.tracks, 1);
            }
            prefetch_all(&s.ids, 1);
        }
        let Some(s) = state(1) else {
            return;
        };
        for (_, q) in &s.pending {
            let (a, b) = q.as_slices();
            if score {
                prefetch_all(a, 8);
            } else if let Some(last) = b.last().or(a.last()) {
                prefetch_all(std::slice::from_ref(last), 1);
                prefetch(std::ptr::from_ref(last).wrapping_add(1));
            }
        }
        if score {
            prefetch_all(&s.tracks, 256);
            prefetch_all(&s.cals, 64);
        } else {
            prefetch_all(&s.ids, 8);
            prefetch_all(&s.cals, 64);
        }
    }

    /// The rolling scores of one series, per model and horizon with any scored point.
    pub fn accuracy(&self, key: &SeriesKey) -> Vec<Accuracy> {
        let Some(s) = self.get(key) else {
            return Vec::new();
        };
        let scale = s.step.summary(1.0).map_or(f64::NAN, |x| x.mae);
        let mut out: Vec<Accuracy> = s
            .tracks
            .iter()
            .filter_map(|t| {
                Some(Accuracy {
                    model: self.models.get(usize::from(t.model))?.clone(),
                    horizon: t.horizon,
                    ts_ms: t.last_ms,
                    summary: t.score.summary(scale)?,
                    quantiles: t.dist.quantile_score.clone(),
                    touch: t.dist.touch_score.clone(),
                })
            })
            .collect();
        out.sort_by(|a, b| (&a.model, a.horizon).cmp(&(&b.model, b.horizon)));
        out
    }

    /// Remembers a forecast until its target bar closes, setting its quantiles and touch
    /// calibration first.
    pub fn record(&mut self, key: &dyn SeriesRef, f: &mut Forecast) {
        let id = self.intern(&f.model);
        self.record_ids(key, std::slice::from_mut(f), &[id]);
    }

    /// Remembers forecasts of one series until their target bars close, setting each one's
    /// quantiles and touch calibration first; `ids[i]` is the model id ([`Scorer::model_id`])
    /// of `fs[i]`.
    pub fn record_ids(&mut self, key: &dyn SeriesRef, fs: &mut [Forecast], ids: &[u16]) {
        let slot = self.slot(key);
        self.record_at(slot, fs, ids);
    }

    /// [`Scorer::record_ids`] for the series in `slot`.
    pub fn record_at(&mut self, slot: Slot, fs: &mut [Forecast], ids: &[u16]) {
        let Some(s) = self.states.get_mut(slot.0 as usize) else {
            return;
        };
        let mut hint = 0;
        for (f, &model) in fs.iter_mut().zip(ids) {
            hint = s.record(hint, model, f) + 1;
        }
    }
}

impl SeriesScores {
    /// Records one forecast and returns its track's index. The track is most likely at
    /// `hint`, just after the previous forecast's: a series' forecasts come in the same model
    /// and horizon order at every bar, mostly the order its tracks were made in.
    fn record(&mut self, hint: usize, model: u16, f: &mut Forecast) -> usize {
        let id = (model, f.horizon);
        let at = match self.ids.get(hint) {
            Some(&x) if x == id => Some(hint),
            _ => self.ids.iter().position(|&x| x == id),
        };
        let at = at.unwrap_or_else(|| self.add_track(model, f.horizon, 0));
        let published = self.cals[at].publish(f);
        self.wait(
            f.horizon,
            Pending::new(f.target_ms, at as u16, &Point::from_forecast(f), published),
        );
        at
    }

    /// Adds a track; returns its index.
    fn add_track(&mut self, model: u16, horizon: u32, last_ms: i64) -> usize {
        self.tracks.push(Track {
            model,
            horizon,
            last_ms,
            ..Track::default()
        });
        self.ids.push((model, horizon));
        self.cals.push(Calibrators::default());
        self.tracks.len() - 1
    }

    /// Queues a forecast in its horizon's queue, in target order.
    fn wait(&mut self, horizon: u32, p: Pending) {
        let q = crate::entry(&mut self.pending, horizon, VecDeque::new);
        if q.len() == q.capacity() {
            // Grow by what one more bar holds, exactly: once the queue is as long as it gets
            // (a horizon's worth of bars), the forecasts a bar pushes then land in the slots
            // the same bar's scoring just freed (already in cache), instead of the ring's far
            // end after a doubling.
            let per_bar = self.ids.iter().filter(|(_, h)| *h == horizon).count();
            q.reserve_exact(per_bar.max(1));
        }
        // Targets of one horizon only grow; a redelivery out of order is placed.
        if q.back().is_none_or(|x| x.target_ms <= p.target_ms) {
            q.push_back(p);
        } else {
            let pos = q.partition_point(|x| x.target_ms <= p.target_ms);
            q.insert(pos, p);
        }
    }
}

impl Scorer {
    /// The rolling score of one series, model and horizon.
    pub fn score(&self, key: &dyn SeriesRef, model: &str, horizon: u32) -> Option<&Score> {
        let id = self.models.iter().position(|m| m == model)?;
        self.get(key)?
            .tracks
            .iter()
            .find(|t| t.horizon == horizon && usize::from(t.model) == id)
            .map(|t| &t.score)
    }

    /// Forgets a series (after a gap).
    pub fn reset_series(&mut self, key: &SeriesKey) {
        if let Some(i) = self.index.remove(key) {
            if let Some(s) = self.states.get_mut(i as usize) {
                *s = SeriesScores::default();
            }
            self.free.push(i);
        }
    }

    /// The series' state: per track (sorted by model name and horizon) its score and its
    /// waiting forecasts in target order.
    pub fn save_series(&self, key: &SeriesKey) -> Option<Vec<u8>> {
        let s = self.get(key)?;
        let mut e = Enc::new(2);
        match s.last_close {
            Some(c) => e.bool(true).f64(c),
            None => e.bool(false),
        };
        s.step.save(&mut e);
        e.u32(s.recent.len() as u32);
        for [hi, lo] in &s.recent {
            e.f64(*hi).f64(*lo);
        }
        let name = |t: &Track| {
            self.models
                .get(usize::from(t.model))
                .map_or("", String::as_str)
        };
        let mut order: Vec<usize> = (0..s.tracks.len()).collect();
        order.sort_by(|&a, &b| {
            let (ta, tb) = (&s.tracks[a], &s.tracks[b]);
            (name(ta), ta.horizon).cmp(&(name(tb), tb.horizon))
        });
        e.u32(order.len() as u32);
        for i in order {
            let t = &s.tracks[i];
            e.bytes(name(t).as_bytes()).u32(t.horizon).i64(t.last_ms);
            t.score.save(&mut e);
            s.cals[i].save(&mut e);
            t.dist.save(&mut e);
            let waiting: Vec<&Pending> = s
                .pending
                .iter()
                .filter(|(h, _)| *h == t.horizon)
                .flat_map(|(_, q)| q.iter())
                .filter(|p| usize::from(p.track) == i)
                .collect();
            e.u32(waiting.len() as u32);
            for w in waiting {
                e.i64(w.target_ms).f64(w.base).f64(w.point);
                e.f64(w.lo80).f64(w.hi80).f64(w.lo95).f64(w.hi95);
                let p = &w.published;
                for x in p.ratios.iter().chain(&p.touch) {
                    e.f64(f64::from(*x));
                }
            }
        }
        Some(e.finish())
    }

    /// Reads [`Scorer::save_series`]'s bytes; format 1, from before the quantile and touch
    /// calibrators, restores them fresh.
    pub fn load_series(&mut self, key: &SeriesKey, bytes: &[u8]) -> Result<()> {
        let (mut d, format) = Dec::versioned(bytes, 1..=2)?;
        let mut s = SeriesScores {
            last_close: if d.bool()? { Some(d.f64()?) } else { None },
            step: Score::load(&mut d)?,
            ..SeriesScores::default()
        };
        if format >= 2 {
            for _ in 0..d.u32()? {
                s.recent.push_back([d.f64()?, d.f64()?]);
            }
        }
        for _ in 0..d.u32()? {
            let model = std::str::from_utf8(d.bytes()?)?;
            let model = self.intern(model);
            let horizon = d.u32()?;
            let last_ms = d.i64()?;
            let track = s.add_track(model, horizon, last_ms);
            s.tracks[track].score = Score::load(&mut d)?;
            if format >= 2 {
                s.cals[track] = Calibrators::load(&mut d)?;
                s.tracks[track].dist = DistScores::load(&mut d)?;
            }
            let track = track as u16;
            for _ in 0..d.u32()? {
                let target_ms = d.i64()?;
                let (base, point) = (d.f64()?, d.f64()?);
                let (lo80, hi80, lo95, hi95) = (d.f64()?, d.f64()?, d.f64()?, d.f64()?);
                let mut published = Published::default();
                if format >= 2 {
                    for x in published.ratios.iter_mut().chain(&mut published.touch) {
                        *x = d.f64()? as f32;
                    }
                } else {
                    // Published before the calibrators: scored as fresh ones would have it.
                    let mut f = Forecast {
                        point,
                        hi95,
                        ..Forecast::default()
                    };
                    published = Calibrators::default().publish(&mut f);
                }
                let p = Point {
                    actual: f64::NAN,
                    base,
                    point,
                    lo80,
                    hi80,
                    lo95,
                    hi95,
                };
                s.wait(horizon, Pending::new(target_ms, track, &p, published));
            }
        }
        d.end()?;
        let Slot(i) = self.slot(key);
        self.states[i as usize] = s;
        Ok(())
    }
}

/// The `level` labels of the quantile counters.
const QUANTILE_LABELS: [&str; 9] = [
    "0.025", "0.05", "0.1", "0.25", "0.5", "0.75", "0.9", "0.95", "0.975",
];

/// The `bin` labels of the touch counters: each bin's lower edge.
const BIN_LABELS: [&str; 10] = [
    "0.0", "0.1", "0.2", "0.3", "0.4", "0.5", "0.6", "0.7", "0.8", "0.9",
];

/// A sum as a counter may take it: a counter only grows, by finite amounts.
fn finite_sum(v: f64) -> f64 {
    if v.is_finite() && v > 0.0 { v } else { 0.0 }
}

/// Adds one scored point to the sums not yet exported.
/// `hint` is where the previous call found its entry: the next call's usually follows it.
fn add_sums(
    sums: &mut Vec<((u16, u32), Sums)>,
    hint: &mut usize,
    key: (u16, u32),
    p: &Point,
    scale: f64,
    learnt: Option<&Learnt>,
) {
    let at = match sums.get(*hint) {
        Some((k, _)) if *k == key => *hint,
        _ => match sums.iter().position(|(k, _)| *k == key) {
            Some(i) => i,
            None => {
                sums.push((key, Sums::default()));
                sums.len() - 1
            }
        },
    };
    *hint = at + 1;
    let s = &mut sums[at].1;
    s.scored += 1;
    s.covered80 += u64::from(p.lo80 <= p.actual && p.actual <= p.hi80);
    s.covered95 += u64::from(p.lo95 <= p.actual && p.actual <= p.hi95);
    let err = (p.actual - p.point).abs();
    let finite = |v: f64| if v.is_finite() { v } else { 0.0 };
    s.relative += finite(err / p.base);
    s.naive_relative += finite((p.actual - p.base).abs() / p.base);
    s.scaled += finite(err / scale);
    if let Some(l) = learnt {
        s.add_learnt(l);
    }
}

impl Scorer {
    /// Adds everything scored since the last call to the Prometheus counters.
    pub fn export_metrics(&mut self) {
        for ((model, horizon), s) in self.unexported.drain(..) {
            let model = self
                .models
                .get(usize::from(model))
                .map_or("", String::as_str);
            let h = horizon.to_string();
            telemetry::FORECAST_SCORED
                .with_label_values(&[model, &h])
                .inc_by(s.scored);
            for (level, n) in [("80", s.covered80), ("95", s.covered95)] {
                telemetry::FORECAST_COVERED
                    .with_label_values(&[model, &h, level])
                    .inc_by(n);
            }
            for (kind, v) in [
                ("relative", s.relative),
                ("naive_relative", s.naive_relative),
                ("scaled", s.scaled),
            ] {
                telemetry::FORECAST_ERROR_SUM
                    .with_label_values(&[model, &h, kind])
                    .inc_by(v);
            }
            if s.quantile_scored == 0 {
                continue;
            }
            telemetry::FORECAST_QUANTILE_SCORED
                .with_label_values(&[model, &h])
                .inc_by(s.quantile_scored);
            for (level, n) in QUANTILE_LABELS.iter().zip(s.below) {
                telemetry::FORECAST_QUANTILE_BELOW
                    .with_label_values(&[model, &h, level])
                    .inc_by(n);
            }
            for (kind, v) in [
                ("relative", s.crps),
                ("paired", s.crps_paired),
                ("naive_paired", s.naive_crps_paired),
            ] {
                telemetry::FORECAST_CRPS_SUM
                    .with_label_values(&[model, &h, kind])
                    .inc_by(finite_sum(v));
            }
            if s.touch[0] == 0.0 {
                continue;
            }
            for (kind, v) in ["outcomes", "touched", "brier", "base_brier"]
                .iter()
                .zip(s.touch)
            {
                telemetry::FORECAST_TOUCH_SUM
                    .with_label_values(&[model, &h, kind])
                    .inc_by(finite_sum(v));
            }
            for (bin, sums) in BIN_LABELS.iter().zip(&s.touch_bins) {
                if sums[0] == 0.0 {
                    continue;
                }
                for (kind, v) in ["outcomes", "p", "touched"].iter().zip(sums) {
                    telemetry::FORECAST_TOUCH_BIN
                        .with_label_values(&[model, &h, bin, kind])
                        .inc_by(finite_sum(*v));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::series_key;
    use crate::testing::synthetic_candles;
    use rust_decimal::prelude::ToPrimitive as _;
    use tickcast_core::domain::SCHEMA_VERSION;

    fn forecast(c: &Candle, model: &str, h: u32, point: f64, half: f64) -> Forecast {
        let last = c.close.to_f64().unwrap_or(f64::NAN);
        Forecast {
            v: SCHEMA_VERSION,
            exchange: c.exchange.as_str().into(),
            symbol: c.symbol.as_str().into(),
            interval: c.interval.as_str().into(),
            model: model.into(),
            horizon: h,
            base_ms: c.open_ms,
            target_ms: c.open_ms + i64::from(h) * 60_000,
            last,
            point,
            lo80: point - half,
            hi80: point + half,
            lo95: point - 2.0 * half,
            hi95: point + 2.0 * half,
            ..Default::default()
        }
    }

    #[test]
    fn scores_each_forecast_when_its_target_bar_closes() {
        let cs = synthetic_candles(&["BTC-USDT"], 4, 1);
        let key = series_key(&cs[0]);
        let close = |i: usize| cs[i].close.to_f64().unwrap_or(f64::NAN);
        // Window 1: no decay, plain sums.
        let mut s = Scorer::new(ScorerSettings { window: 1.0 });
        assert_eq!(s.observe(&key, &cs[0]), 0);
        // h=1 from bar 0 hits bar 1 exactly; h=2 from bar 0 lands on bar 2.
        s.record(&key, &mut forecast(&cs[0], "m", 1, close(1), 0.0));
        s.record(&key, &mut forecast(&cs[0], "m", 2, close(0) + 1.0, 0.5));
        let mut outcomes = Vec::new();
        assert_eq!(s.observe_into(&key, &cs[1], &mut outcomes), 1);
        assert!(outcomes.is_empty(), "a zero-width interval teaches nothing");
        let a1 = s.accuracy(&key);
        assert_eq!(a1.len(), 1, "the h=2 track has nothing scored yet");
        assert_eq!((a1[0].horizon, a1[0].ts_ms), (1, 60_000));
        assert_eq!(a1[0].summary.mae, 0.0);
        assert_eq!(
            a1[0].summary.coverage80, 1.0,
            "degenerate interval at the actual"
        );
        let mut outcomes = Vec::new();
        assert_eq!(s.observe_into(&key, &cs[2], &mut outcomes), 1);
        // The h=2 interval has a positive width: an outcome for the calibrator, with the
        // coverage of both published intervals. (The h=1 one had none: no outcome.)
        let err0 = (close(2) - (close(0) + 1.0)).abs();
        assert_eq!(
            outcomes,
            vec![Outcome {
                model: s.model_id("m"),
                horizon: 2,
                covered: [err0 <= 0.5, err0 <= 1.0],
            }]
        );
        let a2: Vec<Accuracy> = s
            .accuracy(&key)
            .into_iter()
            .filter(|a| a.horizon == 2)
            .collect();
        assert_eq!((a2.len(), a2[0].ts_ms), (1, 120_000));
        let err = (close(2) - (close(0) + 1.0)).abs();
        assert!((a2[0].summary.mae - err).abs() < 1e-9);
        assert!((a2[0].summary.rel_mae - err / (close(2) - close(0)).abs()).abs() < 1e-9);
        assert_eq!(a2[0].summary.coverage95, f64::from(u8::from(err <= 1.0)));
        assert_eq!(s.observe(&key, &cs[3]), 0, "nothing pending");
    }

    #[test]
    fn forecasts_for_a_missing_bar_are_dropped_and_state_round_trips() {
        let cs = synthetic_candles(&["BTC-USDT"], 5, 2);
        let key = series_key(&cs[0]);
        let mut s = Scorer::new(ScorerSettings::default());
        s.observe(&key, &cs[0]);
        s.record(&key, &mut forecast(&cs[0], "m", 1, 1.0, 1.0));
        s.record(&key, &mut forecast(&cs[0], "m", 3, 1.0, 1.0));
        // Bar 1 never arrives: the h=1 forecast is dropped when bar 2 closes.
        assert_eq!(s.observe(&key, &cs[2]), 0);
        assert!(s.accuracy(&key).is_empty());
        let saved = s.save_series(&key).expect("state");
        let mut r = Scorer::new(ScorerSettings::default());
        r.load_series(&key, &saved).expect("loads");
        assert_eq!(r.save_series(&key), Some(saved));
        assert_eq!(
            r.observe(&key, &cs[3]),
            1,
            "the h=3 forecast survived the restore"
        );
        let a = r.accuracy(&key);
        assert_eq!(a[0].summary.n, 1);
        assert!(r.load_series(&key, &[1, 0]).is_err(), "truncated");
    }

    #[test]
    fn a_reset_series_frees_its_slot_for_a_new_series_that_starts_empty() {
        let a = synthetic_candles(&["AAA-USDT"], 3, 4);
        let b = synthetic_candles(&["BBB-USDT"], 3, 5);
        let c = synthetic_candles(&["CCC-USDT"], 3, 6);
        let (ka, kb, kc) = (series_key(&a[0]), series_key(&b[0]), series_key(&c[0]));
        let mut s = Scorer::new(ScorerSettings { window: 1.0 });
        for (k, cs) in [(&ka, &a), (&kb, &b)] {
            s.observe(k, &cs[0]);
            s.record(k, &mut forecast(&cs[0], "m", 1, 1.0, 1.0));
            assert_eq!(s.observe(k, &cs[1]), 1);
            s.record(k, &mut forecast(&cs[1], "m", 1, 1.0, 1.0));
        }
        let b_before = s.save_series(&kb).expect("b");
        let slot_a = s.slot(&ka);
        s.reset_series(&ka);
        assert_eq!(s.save_series(&ka), None, "a reset series has no state");
        assert_eq!(s.slot(&kc), slot_a, "the new series takes the freed slot");
        assert!(s.accuracy(&kc).is_empty());
        assert_eq!(
            s.observe(&kc, &c[1]),
            0,
            "nothing of a's is left in the slot"
        );
        assert_eq!(s.save_series(&kb), Some(b_before), "b untouched");
        assert_ne!(s.slot(&ka), slot_a, "a comes back in a slot of its own");
        assert_eq!(
            s.observe(&kb, &b[2]),
            1,
            "b's forecast still waits for its bar"
        );
    }

    /// A recorded forecast gets its quantiles and touch calibration from its track's
    /// calibrators; when its bar closes, the scores of exactly those quantiles (CRPS, against
    /// naive's on the same bar; the PIT counts) and of the touch probabilities at ±1 and ±2
    /// spreads are kept, the calibrators learn, and all of it survives a checkpoint.
    #[test]
    fn distributions_are_published_scored_and_learnt() {
        use crate::scoring::quantiles::crps;
        let cs = synthetic_candles(&["BTC-USDT"], 3, 3);
        let key = series_key(&cs[0]);
        let mut s = Scorer::new(ScorerSettings { window: 1.0 });
        s.observe(&key, &cs[0]);
        let last = cs[0].close.to_f64().unwrap_or(f64::NAN);
        let mut naive = forecast(&cs[0], "naive", 1, last, last * 0.002);
        let mut m = forecast(&cs[0], "m", 1, last * 1.001, last * 0.003);
        s.record(&key, &mut naive);
        s.record(&key, &mut m);
        let (qn, qm) = (naive.quantiles.expect("set"), m.quantiles.expect("set"));
        assert!(qm.windows(2).all(|w| w[0] < w[1]), "{qm:?}");
        assert_eq!(m.touch.map(|t| (t.alpha, t.beta)), Some((0.0, 1.0)));
        assert_eq!(s.observe(&key, &cs[1]), 2);
        let actual = cs[1].close.to_f64().unwrap_or(f64::NAN);
        let acc = s.accuracy(&key);
        let of = |model: &str| acc.iter().find(|a| a.model == model).expect("scored");
        let (a_m, a_n) = (of("m"), of("naive"));
        assert_eq!(a_m.quantiles.n, 1);
        assert_eq!(a_m.quantiles.crps(), Some(crps(&qm, actual)));
        assert_eq!(
            a_m.quantiles.crps_rel(),
            Some(crps(&qm, actual) / crps(&qn, actual))
        );
        assert_eq!(a_n.quantiles.crps_rel(), Some(1.0));
        // One outcome: each level's share below is 0 or 1.
        let below = qm.iter().filter(|q| actual <= **q).count();
        let want_pit = crate::scoring::quantiles::LEVELS
            .iter()
            .enumerate()
            .map(|(i, tau)| (f64::from(u8::from(i >= 9 - below)) - tau).abs())
            .fold(0.0, f64::max);
        assert_eq!(a_m.quantiles.pit_max_err(), Some(want_pit));
        assert_eq!(a_m.touch.n, 2, "two touch levels per outcome");
        // The sums for the metrics: both models' quantiles, naive's CRPS paired with m's.
        let sums = |model: &str| {
            let id = s.models.iter().position(|x| x == model).expect("id") as u16;
            s.unexported
                .iter()
                .find(|(k, _)| *k == (id, 1))
                .map(|(_, v)| *v)
                .expect("sums")
        };
        let sm = sums("m");
        assert_eq!(sm.quantile_scored, 1);
        assert_eq!(sm.below.iter().sum::<u64>(), below as u64);
        assert!((sm.crps - crps(&qm, actual) / last).abs() < 1e-15);
        assert!((sm.naive_crps_paired - crps(&qn, actual) / last).abs() < 1e-15);
        assert_eq!(sm.touch[0], 2.0);
        // The calibrators learnt: the next forecast of m is published from them.
        let mut m2 = forecast(&cs[1], "m", 1, actual, actual * 0.003);
        s.record(&key, &mut m2);
        let moved = m2.quantiles.expect("set");
        let fresh = {
            let mut f = forecast(&cs[1], "m", 1, actual, actual * 0.003);
            Calibrators::default().publish(&mut f);
            f.quantiles.expect("set")
        };
        assert_ne!(moved, fresh, "the multipliers moved");
        // All of it round-trips through a checkpoint.
        let saved = s.save_series(&key).expect("state");
        let mut r = Scorer::new(ScorerSettings { window: 1.0 });
        r.load_series(&key, &saved).expect("loads");
        assert_eq!(r.save_series(&key), Some(saved));
        // (Debug text: a NaN score compares unequal to itself.)
        let text = |x: &Scorer| format!("{:?}", x.accuracy(&key));
        assert_eq!(text(&r), text(&s));
        assert_eq!(r.observe(&key, &cs[2]), s.observe(&key, &cs[2]));
        assert_eq!(text(&r), text(&s));
    }
}
