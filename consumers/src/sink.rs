//! The sink stage: candles and forecasts topics → the store. Each batch and the input offsets
//! it completes are written in one database transaction; the store skips records below its
//! stored offsets, so a crash between the database commit and the Kafka offset commit
//! re-delivers records that change nothing.

use std::sync::Arc;

use anyhow::Result;
use tickcast_pipeline::codec::{self, Topics};
use tickcast_pipeline::deadletter::DeadLetter;
use tickcast_pipeline::domain::{Candle, Forecast};
use tickcast_pipeline::stage::{Effects, Handler, Inbound, batch_offsets};
use tickcast_pipeline::telemetry;

use crate::store::{Pos, SinkBatch, Store, WriteSummary};

/// Stage handler writing to a [`Store`].
#[derive(Debug)]
pub struct Sink {
    store: Arc<dyn Store>,
    /// Consumer name under which offsets are stored (the group id).
    consumer: String,
    topics: Topics,
}

impl Sink {
    pub fn new(store: Arc<dyn Store>, consumer: impl Into<String>, topics: Topics) -> Self {
        Self {
            store,
            consumer: consumer.into(),
            topics,
        }
    }

    /// The topics the sink reads.
    pub fn inputs(topics: &Topics) -> Vec<String> {
        vec![topics.candles(), topics.forecasts()]
    }

    /// Decodes a batch into rows and dead letters.
    pub fn decode(&self, batch: &[Inbound]) -> (SinkBatch, Vec<DeadLetter>) {
        let mut out = SinkBatch {
            offsets: batch_offsets(batch),
            ..SinkBatch::default()
        };
        let mut dead = Vec::new();
        let (candles, forecasts) = (self.topics.candles(), self.topics.forecasts());
        for m in batch {
            let pos = Pos {
                topic: m.topic.clone(),
                partition: m.partition,
                offset: m.offset,
            };
            let result = if m.topic == candles {
                codec::decode::<Candle>(&m.payload).map(|c| out.candles.push((pos, c)))
            } else if m.topic == forecasts {
                codec::decode::<Forecast>(&m.payload).map(|f| out.forecasts.push((pos, f)))
            } else {
                tracing::warn!(topic = %m.topic, "sink got a message from a topic it does not read");
                Ok(())
            };
            if let Err(e) = result {
                dead.push(DeadLetter::new(
                    "sink",
                    &m.topic,
                    m.partition,
                    m.offset,
                    e.to_string(),
                    &m.payload,
                ));
            }
        }
        (out, dead)
    }
}

impl Handler for Sink {
    async fn handle(&mut self, batch: &[Inbound]) -> Result<Effects> {
        let (rows, dead) = self.decode(batch);
        let WriteSummary {
            candles,
            forecasts,
            skipped,
        } = self.store.write_batch(&self.consumer, &rows).await?;
        let now = tickcast_pipeline::now_ms();
        let candle_times = rows.candles.iter().map(|(_, c)| c.close_ms);
        telemetry::observe_end_to_end("sink", "candle", now, candle_times);
        let forecast_times = rows
            .forecasts
            .iter()
            .map(|(_, f)| telemetry::forecast_event_ms(f));
        telemetry::observe_end_to_end("sink", "forecast", now, forecast_times);
        telemetry::SINK_ROWS
            .with_label_values(&["candles"])
            .inc_by(candles as u64);
        telemetry::SINK_ROWS
            .with_label_values(&["forecasts"])
            .inc_by(forecasts as u64);
        if skipped > 0 {
            tracing::info!(skipped, "sink skipped records already written");
        }
        Ok(Effects {
            records: Vec::new(),
            dead,
            commit: None,
        })
    }

    async fn ready(&mut self) -> Result<()> {
        self.store.ping().await
    }
}
