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
use rust_decimal::prelude::ToPrimitive as _;
use tickcast_pipeline::domain::{Candle, Forecast};
use tickcast_pipeline::telemetry;

use super::score::{Point, Score, Summary};
use super::state::{Dec, Enc};
use super::{SeriesKey, SeriesMap, SeriesRef};

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
    /// (target_ms, forecast) in target order.
    pending: VecDeque<(i64, Point)>,
    score: Score,
    /// Open time of the bar scored last.
    last_ms: i64,
}

#[derive(Debug, Default, Clone)]
struct SeriesScores {
    /// ((model, horizon), track); a few dozen at most, scanned without allocating.
    tracks: Vec<((String, u32), Track)>,
    last_close: Option<f64>,
    /// Rolling one-step naive MAE (MASE's scale).
    step: Score,
}

/// One rolling score that changed.
#[derive(Debug, Clone, PartialEq)]
pub struct Accuracy {
    pub model: String,
    pub horizon: u32,
    /// Open time of the bar that was scored last.
    pub ts_ms: i64,
    pub summary: Summary,
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
}

/// Scores every series' forecasts.
#[derive(Debug, Default)]
pub struct Scorer {
    settings: ScorerSettings,
    series: SeriesMap<SeriesScores>,
    unexported: Vec<((String, u32), Sums)>,
}

impl Scorer {
    pub fn new(settings: ScorerSettings) -> Self {
        Self {
            settings,
            series: SeriesMap::default(),
            unexported: Vec::new(),
        }
    }

    fn decay(&self) -> f64 {
        1.0 - 1.0 / self.settings.window.max(1.0)
    }

    /// Scores the forecasts whose target bar this candle is. Returns how many were scored.
    pub fn observe(&mut self, key: &dyn SeriesRef, c: &Candle) -> usize {
        let decay = self.decay();
        let close = c.close.to_f64().unwrap_or(f64::NAN);
        let s = match self.series.get_mut(key) {
            Some(s) => s,
            None => self.series.entry(key.to_key()).or_default(),
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
        let scale = s.step.summary(1.0).map_or(f64::NAN, |x| x.mae);
        let mut scored = 0;
        let mut hint = 0;
        for ((model, horizon), t) in &mut s.tracks {
            while let Some(&(target, mut p)) = t.pending.front() {
                if target > c.open_ms {
                    break;
                }
                t.pending.pop_front();
                if target < c.open_ms || !close.is_finite() {
                    continue;
                }
                p.actual = close;
                t.score.add_decayed(&p, decay);
                t.last_ms = c.open_ms;
                scored += 1;
                add_sums(&mut self.unexported, &mut hint, model, *horizon, &p, scale);
            }
        }
        scored
    }

    /// The rolling scores of one series, per model and horizon with any scored point.
    pub fn accuracy(&self, key: &SeriesKey) -> Vec<Accuracy> {
        let Some(s) = self.series.get(key) else {
            return Vec::new();
        };
        let scale = s.step.summary(1.0).map_or(f64::NAN, |x| x.mae);
        let mut out: Vec<Accuracy> = s
            .tracks
            .iter()
            .filter_map(|((model, horizon), t)| {
                Some(Accuracy {
                    model: model.clone(),
                    horizon: *horizon,
                    ts_ms: t.last_ms,
                    summary: t.score.summary(scale)?,
                })
            })
            .collect();
        out.sort_by(|a, b| (&a.model, a.horizon).cmp(&(&b.model, b.horizon)));
        out
    }

    /// Remembers a published forecast until its target bar closes.
    pub fn record(&mut self, key: &dyn SeriesRef, f: &Forecast) {
        self.record_all(key, std::slice::from_ref(f));
    }

    /// Remembers published forecasts of one series until their target bars close.
    pub fn record_all(&mut self, key: &dyn SeriesRef, fs: &[Forecast]) {
        let s = match self.series.get_mut(key) {
            Some(s) => s,
            None => self.series.entry(key.to_key()).or_default(),
        };
        let mut hint = 0;
        for f in fs {
            hint = s.record(hint, f) + 1;
        }
    }
}

impl SeriesScores {
    /// Records one forecast and returns its track's index. The track is most likely at
    /// `hint`, just after the previous forecast's: a series' forecasts come in the same model
    /// and horizon order at every bar, mostly the order its tracks were made in.
    fn record(&mut self, hint: usize, f: &Forecast) -> usize {
        let same = |((m, h), _): &((String, u32), Track)| *h == f.horizon && *m == f.model;
        let at = match self.tracks.get(hint) {
            Some(t) if same(t) => Some(hint),
            _ => self.tracks.iter().position(same),
        };
        let at = at.unwrap_or_else(|| {
            self.tracks
                .push(((f.model.clone(), f.horizon), Track::default()));
            self.tracks.len() - 1
        });
        let t = &mut self.tracks[at].1;
        let p = Point::from_forecast(f);
        // Targets of one model and horizon only grow; a redelivery out of order is placed.
        if t.pending.back().is_none_or(|(x, _)| *x <= f.target_ms) {
            t.pending.push_back((f.target_ms, p));
        } else {
            let pos = t.pending.partition_point(|(x, _)| *x <= f.target_ms);
            t.pending.insert(pos, (f.target_ms, p));
        }
        at
    }
}

impl Scorer {
    /// The rolling score of one series, model and horizon.
    pub fn score(&self, key: &dyn SeriesRef, model: &str, horizon: u32) -> Option<&Score> {
        self.series
            .get(key)?
            .tracks
            .iter()
            .find(|((m, h), _)| *h == horizon && m == model)
            .map(|(_, t)| &t.score)
    }

    /// Forgets a series (after a gap).
    pub fn reset_series(&mut self, key: &SeriesKey) {
        self.series.remove(key);
    }

    pub fn save_series(&self, key: &SeriesKey) -> Option<Vec<u8>> {
        let s = self.series.get(key)?;
        let mut e = Enc::new(1);
        match s.last_close {
            Some(c) => e.bool(true).f64(c),
            None => e.bool(false),
        };
        s.step.save(&mut e);
        let mut tracks: Vec<_> = s.tracks.iter().map(|(k, t)| (k, t)).collect();
        tracks.sort_by(|a, b| a.0.cmp(b.0));
        e.u32(tracks.len() as u32);
        for ((model, horizon), t) in tracks {
            e.bytes(model.as_bytes()).u32(*horizon).i64(t.last_ms);
            t.score.save(&mut e);
            e.u32(t.pending.len() as u32);
            for (target, p) in &t.pending {
                e.i64(*target).f64(p.base).f64(p.point);
                e.f64(p.lo80).f64(p.hi80).f64(p.lo95).f64(p.hi95);
            }
        }
        Some(e.finish())
    }

    pub fn load_series(&mut self, key: &SeriesKey, bytes: &[u8]) -> Result<()> {
        let mut d = Dec::new(bytes, 1)?;
        let mut s = SeriesScores {
            last_close: if d.bool()? { Some(d.f64()?) } else { None },
            step: Score::load(&mut d)?,
            ..SeriesScores::default()
        };
        for _ in 0..d.u32()? {
            let model = String::from_utf8(d.bytes()?.to_vec())?;
            let horizon = d.u32()?;
            let last_ms = d.i64()?;
            let mut t = Track {
                last_ms,
                score: Score::load(&mut d)?,
                ..Track::default()
            };
            for _ in 0..d.u32()? {
                let target = d.i64()?;
                let (base, point) = (d.f64()?, d.f64()?);
                let (lo80, hi80, lo95, hi95) = (d.f64()?, d.f64()?, d.f64()?, d.f64()?);
                t.pending.push_back((
                    target,
                    Point {
                        actual: f64::NAN,
                        base,
                        point,
                        lo80,
                        hi80,
                        lo95,
                        hi95,
                    },
                ));
            }
            s.tracks.push(((model, horizon), t));
        }
        d.end()?;
        self.series.insert(key.clone(), s);
        Ok(())
    }
}

/// Adds one scored point to the sums not yet exported.
/// `hint` is where the previous call found its entry: the next call's usually follows it.
fn add_sums(
    sums: &mut Vec<((String, u32), Sums)>,
    hint: &mut usize,
    model: &str,
    horizon: u32,
    p: &Point,
    scale: f64,
) {
    let same = |((m, h), _): &((String, u32), Sums)| *h == horizon && m == model;
    let at = match sums.get(*hint) {
        Some(x) if same(x) => *hint,
        _ => match sums.iter().position(same) {
            Some(i) => i,
            None => {
                sums.push(((model.to_string(), horizon), Sums::default()));
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
}

impl Scorer {
    /// Adds everything scored since the last call to the Prometheus counters.
    pub fn export_metrics(&mut self) {
        for ((model, horizon), s) in self.unexported.drain(..) {
            let h = horizon.to_string();
            telemetry::FORECAST_SCORED
                .with_label_values(&[&model, &h])
                .inc_by(s.scored);
            for (level, n) in [("80", s.covered80), ("95", s.covered95)] {
                telemetry::FORECAST_COVERED
                    .with_label_values(&[&model, &h, level])
                    .inc_by(n);
            }
            for (kind, v) in [
                ("relative", s.relative),
                ("naive_relative", s.naive_relative),
                ("scaled", s.scaled),
            ] {
                telemetry::FORECAST_ERROR_SUM
                    .with_label_values(&[&model, &h, kind])
                    .inc_by(v);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::forecast::{series_key, synthetic_candles};
    use tickcast_pipeline::domain::SCHEMA_VERSION;

    fn forecast(c: &Candle, model: &str, h: u32, point: f64, half: f64) -> Forecast {
        let last = c.close.to_f64().unwrap_or(f64::NAN);
        Forecast {
            v: SCHEMA_VERSION,
            exchange: c.exchange.clone(),
            symbol: c.symbol.clone(),
            interval: c.interval.clone(),
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
        s.record(&key, &forecast(&cs[0], "m", 1, close(1), 0.0));
        s.record(&key, &forecast(&cs[0], "m", 2, close(0) + 1.0, 0.5));
        assert_eq!(s.observe(&key, &cs[1]), 1);
        let a1 = s.accuracy(&key);
        assert_eq!(a1.len(), 1, "the h=2 track has nothing scored yet");
        assert_eq!((a1[0].horizon, a1[0].ts_ms), (1, 60_000));
        assert_eq!(a1[0].summary.mae, 0.0);
        assert_eq!(
            a1[0].summary.coverage80, 1.0,
            "degenerate interval at the actual"
        );
        assert_eq!(s.observe(&key, &cs[2]), 1);
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
        s.record(&key, &forecast(&cs[0], "m", 1, 1.0, 1.0));
        s.record(&key, &forecast(&cs[0], "m", 3, 1.0, 1.0));
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
}
