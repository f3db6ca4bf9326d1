//! Backtests: a candle or trade file through the streaming code (trades through the candles
//! stage's builder, candles through the forecast stage that [`crate::models`] builds for
//! `tickcast run` too), scored per model and horizon against the naive forecast (see
//! [`engine`]). `tickcast backtest` turns its flags into [`Settings`], then calls
//! [`Backtest::new`], [`Backtest::read`] and [`Backtest::score`] and prints the rows.

pub mod engine;

use std::path::Path;

use anyhow::{Context as _, Result, bail};
use tickcast_core::domain::Candle;

pub use self::engine::{Data, Row, SeriesId, json_line, symbol_from_file_name};
use crate::models;

/// What a backtest scores: one series, forecast by these models at these horizons.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The series a file holds; its interval is the bars of a candle file, or the candles to
    /// build from a trade file.
    pub series: SeriesId,
    /// Trade files: how late (event time, ms) a trade may come and still count in its window.
    pub allowed_lateness_ms: i64,
    /// Forecast horizons in bars, each ≥ 1.
    pub horizons: Vec<u32>,
    /// Model names, as [`models::stage`] takes them.
    pub models: Vec<String>,
    /// Score the `ensemble` of the models too.
    pub ensemble: bool,
    /// Calibrate the models' intervals online, as the live stage does; without it the models'
    /// own intervals are scored.
    pub calibrate: bool,
}

/// A backtest whose settings were checked.
#[derive(Debug, Clone)]
pub struct Backtest {
    settings: Settings,
}

impl Backtest {
    /// Checks the horizons and the model names, so that a mistake shows before a file is read.
    pub fn new(settings: Settings) -> Result<Self> {
        if settings.horizons.is_empty() || settings.horizons.contains(&0) {
            bail!("--horizons must be bar counts ≥ 1");
        }
        models::check(&settings.models, settings.ensemble)?;
        Ok(Self { settings })
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// The candles of a CSV file (plain or .gz) of candles or of trades, told apart by its
    /// header (see [`engine::read_data`]).
    pub fn read(&self, path: &Path) -> Result<Data> {
        let s = &self.settings;
        engine::read_data(engine::open(path)?, &s.series, s.allowed_lateness_ms)
            .with_context(|| format!("reading {}", path.display()))
    }

    /// Runs `candles` (the series, in time order) through the forecast stage and scores every
    /// model at every horizon.
    pub fn score(&self, candles: &[Candle]) -> Result<Vec<Row>> {
        let s = &self.settings;
        let stage = || {
            models::stage(
                &s.models,
                &s.horizons,
                s.ensemble,
                s.calibrate,
                models::Options::default(),
                "backtest",
            )
            .expect("checked in Backtest::new")
        };
        engine::run(candles, &stage)
    }
}
