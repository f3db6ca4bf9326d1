//! The forecast stage: closed candles → one forecast per model and horizon.
//!
//! Model state lives in memory per process; after a restart each series warms up again (the
//! naive model needs one candle). Restoring state from checkpoints is future work.

use anyhow::Result;
use tickcast_pipeline::bus::OutRecord;
use tickcast_pipeline::codec::{self, Message as _};
use tickcast_pipeline::deadletter::DeadLetter;
use tickcast_pipeline::domain::{Candle, Forecast, SCHEMA_VERSION};
use tickcast_pipeline::interval::Interval;
use tickcast_pipeline::stage::{Effects, Handler, Inbound};
use tickcast_pipeline::telemetry;

use super::Forecaster;

/// Stage handler holding every model.
pub struct ForecastStage {
    models: Vec<Box<dyn Forecaster>>,
    horizons: Vec<u32>,
    output_topic: String,
}

impl std::fmt::Debug for ForecastStage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.models.iter().map(|m| m.name()).collect();
        f.debug_struct("ForecastStage")
            .field("models", &names)
            .field("horizons", &self.horizons)
            .finish()
    }
}

impl ForecastStage {
    pub fn new(
        models: Vec<Box<dyn Forecaster>>,
        horizons: Vec<u32>,
        output_topic: impl Into<String>,
    ) -> Self {
        Self {
            models,
            horizons,
            output_topic: output_topic.into(),
        }
    }

    /// Forecasts for a batch of candles, in candle order then model order.
    pub fn forecasts(&mut self, candles: &[&Candle]) -> Vec<Forecast> {
        let mut out = Vec::new();
        for model in &mut self.models {
            let name = model.name();
            let before = out.len();
            let preds = model.update(candles, &self.horizons);
            for (c, ps) in candles.iter().zip(preds) {
                let bar = Interval::parse(&c.interval)
                    .map(Interval::ms)
                    .unwrap_or(c.close_ms - c.open_ms);
                for p in ps {
                    out.push(Forecast {
                        v: SCHEMA_VERSION,
                        exchange: c.exchange.clone(),
                        symbol: c.symbol.clone(),
                        interval: c.interval.clone(),
                        model: name.to_string(),
                        horizon: p.horizon,
                        base_ms: c.open_ms,
                        target_ms: c.open_ms + i64::from(p.horizon) * bar,
                        last: rust_decimal::prelude::ToPrimitive::to_f64(&c.close)
                            .unwrap_or(f64::NAN),
                        point: p.point,
                        lo80: p.lo80,
                        hi80: p.hi80,
                        lo95: p.lo95,
                        hi95: p.hi95,
                    });
                }
            }
            telemetry::FORECASTS
                .with_label_values(&[name])
                .inc_by((out.len() - before) as u64);
        }
        out
    }
}

impl Handler for ForecastStage {
    async fn handle(&mut self, batch: Vec<Inbound>) -> Result<Effects> {
        let mut candles = Vec::with_capacity(batch.len());
        let mut dead = Vec::new();
        for m in &batch {
            match codec::decode::<Candle>(&m.payload) {
                Ok(c) => candles.push(c),
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
        let refs: Vec<&Candle> = candles.iter().collect();
        let mut records = Vec::new();
        for f in self.forecasts(&refs) {
            // A model that produced a non-finite value is a bug worth seeing, not a message to send.
            match f.check() {
                Ok(()) => records.push(OutRecord {
                    topic: self.output_topic.clone(),
                    key: f.key(),
                    payload: codec::encode(&f),
                }),
                Err(e) => {
                    tracing::error!(model = %f.model, symbol = %f.symbol, error = %e, "invalid forecast dropped")
                }
            }
        }
        Ok(Effects {
            records,
            dead,
            commit: None,
        })
    }
}
