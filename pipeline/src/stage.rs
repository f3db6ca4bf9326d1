//! The one stage runner every stream stage uses:
//! consume a batch → [`Handler::handle`] → produce outputs (and dead letters) → await every
//! acknowledgement → store the input offsets. Stored offsets are committed in the background
//! and synchronously at shutdown, so a crash re-delivers at most the batches whose effects were
//! not acknowledged; deterministic outputs keyed by natural keys make that harmless.

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

use anyhow::{Context as _, Result};
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::{Message as _, TopicPartitionList};

use crate::bus::{KafkaSettings, LoggingContext, OutRecord, Publisher};
use crate::deadletter::DeadLetter;
use crate::shutdown::Shutdown;
use crate::telemetry;

/// One consumed message, owned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inbound {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub payload: Vec<u8>,
}

/// What a handler wants done for one batch.
#[derive(Debug, Default)]
pub struct Effects {
    /// Records to produce; the batch's offsets are stored only after all are acknowledged.
    pub records: Vec<OutRecord>,
    /// Inputs that could not be processed; produced to the dead-letter topic.
    pub dead: Vec<DeadLetter>,
    /// Next offsets to store per (topic, partition). `None`: everything in the batch is done.
    /// A stage that keeps inputs in open state (e.g. open candle windows) returns the offset of
    /// the oldest input it still needs, so a restart re-reads it.
    pub commit: Option<BTreeMap<(String, i32), i64>>,
}

/// The stage-specific step. Tests call it directly.
pub trait Handler: Send {
    fn handle(&mut self, batch: Vec<Inbound>) -> impl Future<Output = Result<Effects>> + Send;

    /// Called once the batch's records are acknowledged (and with `last` at shutdown, after
    /// the final batch): a stage that checkpoints its state elsewhere writes it here and
    /// returns the offsets that checkpoint covers, which are stored instead of the batch's.
    /// `None` keeps the batch's offsets.
    fn acknowledged(
        &mut self,
        _last: bool,
    ) -> impl Future<Output = Result<Option<BTreeMap<(String, i32), i64>>>> + Send {
        std::future::ready(Ok(None))
    }
}

/// Batch shape and names for a runner.
#[derive(Debug, Clone)]
pub struct StageOptions {
    /// Stage name for logs and metrics.
    pub name: String,
    pub group: String,
    pub inputs: Vec<String>,
    pub deadletter_topic: String,
    pub max_batch: usize,
    pub linger: Duration,
}

/// Runs a handler over a consumer group until `shutdown` fires.
pub async fn run<H: Handler>(
    settings: &KafkaSettings,
    opts: StageOptions,
    mut handler: H,
    mut shutdown: Shutdown,
) -> Result<()> {
    let consumer = settings.consumer(&opts.group, &opts.inputs)?;
    let publisher = Publisher::new(settings)?;
    tracing::info!(stage = %opts.name, group = %opts.group, inputs = ?opts.inputs, "stage started");
    loop {
        let batch = tokio::select! {
            _ = shutdown.wait() => break,
            b = next_batch(&consumer, &opts) => b,
        };
        if batch.is_empty() {
            continue;
        }
        let done = batch_offsets(&batch);
        let n = batch.len();
        let effects = handler
            .handle(batch)
            .await
            .with_context(|| format!("stage {}", opts.name))?;
        let mut records = effects.records;
        let dead = effects.dead.len();
        records.extend(
            effects
                .dead
                .into_iter()
                .map(|d| d.into_record(&opts.deadletter_topic)),
        );
        publisher.publish_all(&records).await?;
        let commit = match handler.acknowledged(false).await? {
            Some(checkpointed) => checkpointed,
            None => effects.commit.unwrap_or(done),
        };
        store_offsets(&consumer, &commit)?;
        telemetry::STAGE_MESSAGES
            .with_label_values(&[&opts.name])
            .inc_by(n as u64);
        telemetry::DEAD_LETTERS
            .with_label_values(&[&opts.name])
            .inc_by(dead as u64);
    }
    publisher.flush(Duration::from_secs(10));
    match handler.acknowledged(true).await {
        Ok(Some(checkpointed)) => store_offsets(&consumer, &checkpointed)?,
        Ok(None) => {}
        Err(e) => tracing::error!(stage = %opts.name, error = %e, "final checkpoint failed"),
    }
    if let Err(e) = consumer.commit_consumer_state(CommitMode::Sync) {
        // Nothing stored since the last commit is the usual reason.
        tracing::debug!(stage = %opts.name, error = %e, "final commit");
    }
    tracing::info!(stage = %opts.name, "stage stopped");
    Ok(())
}

/// Waits for one message, then collects more until `max_batch` or `linger` passes.
async fn next_batch(
    consumer: &StreamConsumer<LoggingContext>,
    opts: &StageOptions,
) -> Vec<Inbound> {
    let mut batch = Vec::new();
    match consumer.recv().await {
        Ok(m) => batch.push(to_inbound(&m)),
        Err(e) => {
            tracing::warn!(stage = %opts.name, error = %e, "consume error");
            tokio::time::sleep(Duration::from_millis(100)).await;
            return batch;
        }
    }
    let deadline = tokio::time::Instant::now() + opts.linger;
    while batch.len() < opts.max_batch {
        match tokio::time::timeout_at(deadline, consumer.recv()).await {
            Ok(Ok(m)) => batch.push(to_inbound(&m)),
            Ok(Err(e)) => {
                tracing::warn!(stage = %opts.name, error = %e, "consume error");
                break;
            }
            Err(_) => break,
        }
    }
    batch
}

fn to_inbound(m: &rdkafka::message::BorrowedMessage<'_>) -> Inbound {
    Inbound {
        topic: m.topic().to_string(),
        partition: m.partition(),
        offset: m.offset(),
        key: m.key().map(<[u8]>::to_vec),
        payload: m.payload().map(<[u8]>::to_vec).unwrap_or_default(),
    }
}

/// Next offset (last + 1) for every partition in the batch.
pub fn batch_offsets(batch: &[Inbound]) -> BTreeMap<(String, i32), i64> {
    let mut out = BTreeMap::new();
    for m in batch {
        let e = out.entry((m.topic.clone(), m.partition)).or_insert(0);
        *e = (*e).max(m.offset + 1);
    }
    out
}

fn store_offsets(
    consumer: &StreamConsumer<LoggingContext>,
    offsets: &BTreeMap<(String, i32), i64>,
) -> Result<()> {
    let mut tpl = TopicPartitionList::new();
    for ((topic, partition), offset) in offsets {
        tpl.add_partition_offset(topic, *partition, rdkafka::Offset::Offset(*offset))?;
    }
    if let Err(e) = consumer.store_offsets(&tpl) {
        // A partition revoked during the batch cannot be stored; its new owner re-reads it.
        tracing::warn!(error = %e, "storing offsets");
    }
    Ok(())
}
