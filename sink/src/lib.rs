//! The sink stage: candles and forecasts topics → the store. Each batch and the input offsets
//! it completes are written in one database transaction; the store skips records below its
//! stored offsets, so a crash between the database commit and the Kafka offset commit
//! re-delivers records that change nothing.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use tickcast_core::bus::KafkaSettings;
use tickcast_core::codec::{self, Topics};
use tickcast_core::deadletter::DeadLetter;
use tickcast_core::domain::{Candle, Forecast};
use tickcast_core::stage::{Effects, Handler, Inbound, batch_offsets};
use tickcast_core::telemetry;

use tickcast_store::retention::{Retention, data_clock};
use tickcast_store::{Pos, SinkBatch, SinkStore, WriteSummary};

/// A partition whose end on the broker lies below the offset the store says it has written up
/// to: the topic was recreated (its volume dropped, say), and every new record would be skipped
/// as already written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Behind {
    pub topic: String,
    pub partition: i32,
    /// The broker's next offset (its high watermark).
    pub broker: i64,
    /// The next offset stored in the database.
    pub stored: i64,
}

impl std::fmt::Display for Behind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}/{}: the broker ends at offset {}, the database has written up to {}",
            self.topic, self.partition, self.broker, self.stored
        )
    }
}

/// Compares the offsets the store holds for `consumer` with the broker's, before the sink
/// starts. Partitions the broker is behind on stop the sink with an error naming each, unless
/// `forget` is set (`--sink-forget-offsets-ahead`): then their stored offsets are dropped and
/// the sink writes them from the broker's offsets. Returns the partitions found behind.
pub async fn check_offsets(
    settings: &KafkaSettings,
    store: &dyn SinkStore,
    consumer: &str,
    forget: bool,
) -> Result<Vec<Behind>> {
    let stored = store
        .offsets(consumer)
        .await
        .context("reading the sink's stored offsets")?;
    if stored.is_empty() {
        return Ok(Vec::new());
    }
    let partitions: Vec<(String, i32)> = stored.keys().cloned().collect();
    let kafka = settings.clone();
    let ask = partitions.clone();
    let highs =
        tokio::task::spawn_blocking(move || kafka.high_watermarks(&ask, Duration::from_secs(30)))
            .await
            .context("reading the broker's offsets")??;
    let behind: Vec<Behind> = partitions
        .into_iter()
        .zip(highs)
        .filter_map(|((topic, partition), broker)| {
            let stored = stored[&(topic.clone(), partition)];
            (broker < stored).then_some(Behind {
                topic,
                partition,
                broker,
                stored,
            })
        })
        .collect();
    if behind.is_empty() {
        return Ok(behind);
    }
    let list: Vec<String> = behind.iter().map(ToString::to_string).collect();
    if !forget {
        bail!(
            "the broker is behind the offsets the sink stored ({}): the topic was probably \
             recreated, and every new record would be skipped as already written. Start the sink \
             with --sink-forget-offsets-ahead (TICKCAST_SINK_FORGET_OFFSETS_AHEAD=true) to drop \
             those stored offsets and write from the broker's",
            list.join("; ")
        );
    }
    for b in &behind {
        tracing::warn!(topic = %b.topic, partition = b.partition, broker = b.broker, stored = b.stored, "broker behind the stored offset; forgetting the stored offset");
        store
            .forget_offset(consumer, &b.topic, b.partition)
            .await
            .with_context(|| {
                format!(
                    "forgetting the stored offset of {}/{}",
                    b.topic, b.partition
                )
            })?;
    }
    Ok(behind)
}

/// How often the sink applies retention by default.
pub const RETENTION_EVERY: Duration = Duration::from_secs(15 * 60);

/// Stage handler writing to a [`Store`].
#[derive(Debug)]
pub struct Sink {
    store: Arc<dyn SinkStore>,
    /// Consumer name under which offsets are stored (the group id).
    consumer: String,
    topics: Topics,
    retention: Option<Retention>,
    retention_every: Duration,
    last_retention: Option<std::time::Instant>,
    /// The newest bar time written (open of a candle, base of a forecast): the data clock
    /// retention counts back from.
    newest_ms: Option<i64>,
}

impl Sink {
    /// A sink that keeps everything; see [`Sink::with_retention`].
    pub fn new(store: Arc<dyn SinkStore>, consumer: impl Into<String>, topics: Topics) -> Self {
        Self {
            store,
            consumer: consumer.into(),
            topics,
            retention: None,
            retention_every: RETENTION_EVERY,
            last_retention: None,
            newest_ms: None,
        }
    }

    /// Applies `policy` after the first batch written and then every `every`.
    pub fn with_retention(mut self, policy: Retention, every: Duration) -> Self {
        self.retention = Some(policy);
        self.retention_every = every;
        self
    }

    /// Applies retention when due. A failure is logged and tried again at the next pass: the
    /// batch is written already.
    async fn retain(&mut self) {
        let (Some(policy), Some(newest)) = (&self.retention, self.newest_ms) else {
            return;
        };
        if self
            .last_retention
            .is_some_and(|t| t.elapsed() < self.retention_every)
        {
            return;
        }
        self.last_retention = Some(std::time::Instant::now());
        let clock = data_clock(newest, tickcast_core::now_ms());
        match self.store.apply_retention(policy, clock).await {
            Ok(r) if r.dropped.is_empty() && r.deleted == 0 => {}
            Ok(r) => {
                tracing::info!(
                    partitions = r.dropped.len(),
                    rows = r.deleted,
                    clock_ms = clock,
                    "retention applied"
                );
                telemetry::SINK_ROWS
                    .with_label_values(&["retention_deleted"])
                    .inc_by(r.deleted);
            }
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), "retention failed; trying again at the next pass")
            }
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
        let newest = rows
            .candles
            .iter()
            .map(|(_, c)| c.open_ms)
            .chain(rows.forecasts.iter().map(|(_, f)| f.base_ms))
            .max();
        if let Some(n) = newest {
            self.newest_ms = Some(self.newest_ms.map_or(n, |m| m.max(n)));
        }
        self.retain().await;
        let now = tickcast_core::now_ms();
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

    fn outage(&self, error: &anyhow::Error) -> Option<String> {
        tickcast_store::unavailable(error)
    }
}
