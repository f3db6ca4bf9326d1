//! The one stage runner every stream stage uses:
//! consume a batch → [`Handler::handle`] → produce outputs (and dead letters) → await every
//! acknowledgement → store the input offsets. Stored offsets are committed in the background
//! and synchronously at shutdown, so a crash re-delivers at most the batches whose effects were
//! not acknowledged; deterministic outputs keyed by natural keys make that harmless.
//!
//! Stateful handlers (the candles stage) may attach a state snapshot to each committed offset as
//! Kafka commit metadata ([`Resume::metadata`]); the runner hands it back through
//! [`Handler::assigned`] before the first batch of a partition it was (re)assigned, and reports
//! partitions taken away through [`Handler::revoked`]. Messages of a partition revoked while a
//! batch was being collected are dropped from it (counted in
//! [`telemetry::REVOKED_DROPPED`]): the partition's new owner reads them from the committed
//! offset, and handling them here too would compute on state this consumer no longer owns.
//! For such handlers every batch's plan is
//! also committed explicitly, because librdkafka's automatic commit skips a stored offset equal
//! to the committed one, even when its metadata changed.
//!
//! Every few seconds the runner reports its consumer lag per input partition
//! ([`telemetry::CONSUMER_LAG`], see [`LagReporter`]).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, Result};
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::{Message as _, Offset, TopicPartitionList};

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
    /// Where to resume per (topic, partition). `None`: everything in the batch is done.
    /// A stage that keeps inputs in open state (e.g. open candle windows) returns the offset of
    /// the oldest input it still needs, so a restart re-reads it, and may attach its state.
    pub commit: Option<BTreeMap<(String, i32), Resume>>,
}

/// Where a partition resumes after a restart, and the state that goes with that position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resume {
    /// Next offset to read.
    pub offset: i64,
    /// Committed with the offset as Kafka commit metadata (a string the broker bounds by
    /// `offset.metadata.max.bytes`, 4096 by default); `None` commits none.
    pub metadata: Option<String>,
}

impl Resume {
    pub fn at(offset: i64) -> Self {
        Self {
            offset,
            metadata: None,
        }
    }
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

    /// Whether the handler keeps per-partition state in commit metadata. When true the runner
    /// reads the committed metadata of every partition it starts reading and calls
    /// [`Handler::assigned`], and commits every batch's plan explicitly.
    fn restores_state(&self) -> bool {
        false
    }

    /// A partition starts (again) at its committed offset; `metadata` is what was committed
    /// with it (empty when nothing was). Called before the first batch that holds it.
    fn assigned(&mut self, _topic: &str, _partition: i32, _metadata: &str) {}

    /// A partition left this consumer (rebalance): forget its state.
    fn revoked(&mut self, _topic: &str, _partition: i32) {}
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
    let consumer = Arc::new(settings.consumer(&opts.group, &opts.inputs)?);
    let publisher = Publisher::new(settings)?;
    let mut lag_report = LagReporter::new(&opts.name);
    tracing::info!(stage = %opts.name, group = %opts.group, inputs = ?opts.inputs, "stage started");
    let stateful = handler.restores_state();
    // Next offset expected per partition this consumer reads; a partition missing here (new,
    // or revoked since) or a message below it (re-read after a rebalance) restores state first.
    let mut expected: HashMap<(String, i32), i64> = HashMap::new();
    let mut last_plan: BTreeMap<(String, i32), Resume> = BTreeMap::new();
    loop {
        lag_report.poll(&consumer).await;
        let (batch, revoked) = tokio::select! {
            _ = shutdown.wait() => break,
            b = next_batch(&consumer, &opts) => b,
        };
        for tp in revoked {
            expected.remove(&tp);
            last_plan.remove(&tp);
            handler.revoked(&tp.0, tp.1);
        }
        if batch.is_empty() {
            if let Some(checkpointed) = handler.acknowledged(false).await? {
                store_offsets(&consumer, &resume_at(checkpointed))?;
            }
            continue;
        }
        for segment in split_at_rewinds(batch) {
            if stateful {
                restore(&consumer, &mut handler, &segment, &expected)?;
            }
            for m in &segment {
                expected.insert((m.topic.clone(), m.partition), m.offset + 1);
            }
            let plan = step(&mut handler, &publisher, &opts, segment).await?;
            store_offsets(&consumer, &plan)?;
            if stateful {
                commit_async(&consumer, &plan);
                last_plan.extend(plan);
            }
        }
    }
    lag_report.stop().await;
    publisher.flush(Duration::from_secs(10));
    match handler.acknowledged(true).await {
        Ok(Some(checkpointed)) => store_offsets(&consumer, &resume_at(checkpointed))?,
        Ok(None) => {}
        Err(e) => tracing::error!(stage = %opts.name, error = %e, "final checkpoint failed"),
    }
    if stateful && !last_plan.is_empty() {
        // The last plan with its metadata: an offset-only commit would skip unchanged offsets.
        if let Err(e) = consumer.commit(&plan_list(&last_plan)?, CommitMode::Sync) {
            tracing::warn!(stage = %opts.name, error = %e, "final commit with state");
        }
    } else if let Err(e) = consumer.commit_consumer_state(CommitMode::Sync) {
        // Nothing stored since the last commit is the usual reason.
        tracing::debug!(stage = %opts.name, error = %e, "final commit");
    }
    tracing::info!(stage = %opts.name, "stage stopped");
    Ok(())
}

/// One batch through the handler; outputs and dead letters published and acknowledged.
/// Returns where each partition resumes.
async fn step<H: Handler>(
    handler: &mut H,
    publisher: &Publisher,
    opts: &StageOptions,
    batch: Vec<Inbound>,
) -> Result<BTreeMap<(String, i32), Resume>> {
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
    telemetry::STAGE_MESSAGES
        .with_label_values(&[&opts.name])
        .inc_by(n as u64);
    telemetry::DEAD_LETTERS
        .with_label_values(&[&opts.name])
        .inc_by(dead as u64);
    if let Some(checkpointed) = handler.acknowledged(false).await? {
        return Ok(resume_at(checkpointed));
    }
    Ok(effects.commit.unwrap_or_else(|| {
        done.into_iter()
            .map(|(tp, next)| (tp, Resume::at(next)))
            .collect()
    }))
}

/// Plain next offsets as resume points without state.
fn resume_at(offsets: BTreeMap<(String, i32), i64>) -> BTreeMap<(String, i32), Resume> {
    offsets
        .into_iter()
        .map(|(tp, next)| (tp, Resume::at(next)))
        .collect()
}

/// Splits a batch where a partition's offsets go back (it was revoked and assigned again while
/// the batch was collected), so every piece reads each partition forwards.
pub fn split_at_rewinds(batch: Vec<Inbound>) -> Vec<Vec<Inbound>> {
    let mut out = Vec::new();
    let mut cur: Vec<Inbound> = Vec::new();
    let mut last: HashMap<(String, i32), i64> = HashMap::new();
    for m in batch {
        let tp = (m.topic.clone(), m.partition);
        if last.get(&tp).is_some_and(|&prev| m.offset <= prev) {
            out.push(std::mem::take(&mut cur));
            last.clear();
        }
        last.insert(tp, m.offset);
        cur.push(m);
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// Hands the committed metadata of every partition that starts in `batch` (new to this
/// consumer, or read again from an earlier offset) to the handler.
fn restore<H: Handler>(
    consumer: &StreamConsumer<LoggingContext>,
    handler: &mut H,
    batch: &[Inbound],
    expected: &HashMap<(String, i32), i64>,
) -> Result<()> {
    let mut starting: BTreeMap<(String, i32), i64> = BTreeMap::new();
    for m in batch {
        let tp = (m.topic.clone(), m.partition);
        if starting.contains_key(&tp) {
            continue;
        }
        if expected.get(&tp).is_none_or(|&next| m.offset < next) {
            starting.insert(tp, m.offset);
        }
    }
    if starting.is_empty() {
        return Ok(());
    }
    let mut tpl = TopicPartitionList::new();
    for (topic, partition) in starting.keys() {
        tpl.add_partition(topic, *partition);
    }
    let committed = consumer
        .committed_offsets(tpl, Duration::from_secs(30))
        .context("reading committed offsets and their state")?;
    for ((topic, partition), first) in &starting {
        let metadata = committed
            .find_partition(topic, *partition)
            .map(|e| e.metadata().to_string())
            .unwrap_or_default();
        tracing::info!(topic = %topic, partition, first_offset = first, state_bytes = metadata.len(), "restoring partition state");
        handler.assigned(topic, *partition, &metadata);
    }
    Ok(())
}

/// How often the runner measures its consumer lag.
pub const LAG_EVERY: Duration = Duration::from_secs(5);

/// How long one partition's high-watermark query may take.
const WATERMARK_TIMEOUT: Duration = Duration::from_secs(2);

/// Sets [`telemetry::CONSUMER_LAG`] for every partition assigned to the runner's consumer, every
/// [`LAG_EVERY`]. Asking the broker for high watermarks blocks, so each measurement runs on the
/// blocking pool, one at a time, and the runner picks the result up on a later turn of its loop.
/// Partitions that left the assignment leave the gauge.
#[derive(Debug)]
pub struct LagReporter {
    stage: String,
    next_at: tokio::time::Instant,
    running: Option<tokio::task::JoinHandle<Vec<PartitionLag>>>,
    reported: HashSet<(String, i32)>,
}

/// One partition's lag as measured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionLag {
    pub topic: String,
    pub partition: i32,
    pub lag: i64,
}

impl LagReporter {
    pub fn new(stage: &str) -> Self {
        Self {
            stage: stage.to_string(),
            next_at: tokio::time::Instant::now(),
            running: None,
            reported: HashSet::new(),
        }
    }

    /// Publishes a finished measurement and starts the next one when it is due. Never waits for
    /// the broker.
    pub async fn poll(&mut self, consumer: &Arc<StreamConsumer<LoggingContext>>) {
        if self.running.as_ref().is_some_and(|j| j.is_finished())
            && let Some(job) = self.running.take()
        {
            match job.await {
                Ok(lags) => self.publish(&lags),
                Err(e) => tracing::warn!(stage = %self.stage, error = %e, "lag measurement"),
            }
        }
        let now = tokio::time::Instant::now();
        if self.running.is_none() && now >= self.next_at {
            self.next_at = now + LAG_EVERY;
            let consumer = Arc::clone(consumer);
            self.running = Some(tokio::task::spawn_blocking(move || measure_lag(&consumer)));
        }
    }

    /// Waits for a measurement in flight, then removes this stage's partitions from the gauge.
    pub async fn stop(&mut self) {
        if let Some(job) = self.running.take() {
            let _ = job.await;
        }
        self.publish(&[]);
    }

    fn publish(&mut self, lags: &[PartitionLag]) {
        let now: HashSet<(String, i32)> = lags
            .iter()
            .map(|l| (l.topic.clone(), l.partition))
            .collect();
        for (topic, partition) in self.reported.difference(&now) {
            let _ = telemetry::CONSUMER_LAG.remove_label_values(&[
                &self.stage,
                topic,
                &partition.to_string(),
            ]);
        }
        for l in lags {
            telemetry::CONSUMER_LAG
                .with_label_values(&[&self.stage, &l.topic, &l.partition.to_string()])
                .set(l.lag);
        }
        self.reported = now;
    }
}

/// Lag of every assigned partition: high watermark minus the position, where the position is
/// the next offset handed to the stage, else the committed offset, else (nothing read or
/// committed yet: the consumer starts at the earliest offset) the low watermark. Blocking.
fn measure_lag(consumer: &StreamConsumer<LoggingContext>) -> Vec<PartitionLag> {
    let positions = match consumer.position() {
        Ok(p) => p,
        Err(e) => {
            tracing::debug!(error = %e, "reading positions for lag");
            return Vec::new();
        }
    };
    let unread: Vec<(String, i32)> = positions
        .elements()
        .iter()
        .filter(|e| !matches!(e.offset(), Offset::Offset(_)))
        .map(|e| (e.topic().to_string(), e.partition()))
        .collect();
    let committed = committed_of(consumer, &unread);
    let mut out = Vec::new();
    for e in positions.elements() {
        let (topic, partition) = (e.topic(), e.partition());
        let (low, high) = match consumer.fetch_watermarks(topic, partition, WATERMARK_TIMEOUT) {
            Ok(w) => w,
            Err(err) => {
                tracing::debug!(topic, partition, error = %err, "fetching watermarks for lag");
                continue;
            }
        };
        let position = match e.offset() {
            Offset::Offset(p) => p,
            _ => committed
                .get(&(topic.to_string(), partition))
                .copied()
                .unwrap_or(low),
        };
        out.push(PartitionLag {
            topic: topic.to_string(),
            partition,
            lag: lag(high, position),
        });
    }
    out
}

/// Committed offsets of the given partitions (those with one). Blocking.
fn committed_of(
    consumer: &StreamConsumer<LoggingContext>,
    partitions: &[(String, i32)],
) -> HashMap<(String, i32), i64> {
    if partitions.is_empty() {
        return HashMap::new();
    }
    let mut tpl = TopicPartitionList::new();
    for (topic, partition) in partitions {
        tpl.add_partition(topic, *partition);
    }
    match consumer.committed_offsets(tpl, WATERMARK_TIMEOUT) {
        Ok(got) => got
            .elements()
            .iter()
            .filter_map(|e| match e.offset() {
                Offset::Offset(o) => Some(((e.topic().to_string(), e.partition()), o)),
                _ => None,
            })
            .collect(),
        Err(e) => {
            tracing::debug!(error = %e, "reading committed offsets for lag");
            HashMap::new()
        }
    }
}

/// Messages behind: `high − position`, never negative (a position read just after the
/// watermark may run ahead of it).
pub fn lag(high: i64, position: i64) -> i64 {
    high.saturating_sub(position).max(0)
}

/// How long the runner waits for a message before it calls [`Handler::acknowledged`] anyway,
/// so a stage that checkpoints on a timer also does so when its input goes quiet.
const IDLE_TICK: Duration = Duration::from_secs(1);

/// Waits for one message (an empty batch after [`IDLE_TICK`]), then collects more until
/// `max_batch` or `linger` passes. Returns the batch and the partitions revoked meanwhile;
/// messages collected before their partition was revoked are not in the batch (a message
/// received after the revocation belongs to a new assignment and is kept).
async fn next_batch(
    consumer: &StreamConsumer<LoggingContext>,
    opts: &StageOptions,
) -> (Vec<Inbound>, Vec<(String, i32)>) {
    let mut batch = Vec::new();
    let mut revoked = Vec::new();
    let mut note_revoked = |batch: &mut Vec<Inbound>| {
        let now = consumer.context().take_revoked();
        if now.is_empty() {
            return;
        }
        let dropped = drop_revoked(batch, &now);
        if dropped > 0 {
            tracing::info!(stage = %opts.name, dropped, "batch messages of revoked partitions dropped");
            telemetry::REVOKED_DROPPED
                .with_label_values(&[&opts.name])
                .inc_by(dropped as u64);
        }
        revoked.extend(now);
    };
    match tokio::time::timeout(IDLE_TICK, consumer.recv()).await {
        Err(_) => {}
        Ok(Ok(m)) => {
            note_revoked(&mut batch);
            batch.push(to_inbound(&m));
            let deadline = tokio::time::Instant::now() + opts.linger;
            while batch.len() < opts.max_batch {
                match tokio::time::timeout_at(deadline, consumer.recv()).await {
                    Ok(Ok(m)) => {
                        note_revoked(&mut batch);
                        batch.push(to_inbound(&m));
                    }
                    Ok(Err(e)) => {
                        tracing::warn!(stage = %opts.name, error = %e, "consume error");
                        break;
                    }
                    Err(_) => break,
                }
            }
        }
        Ok(Err(e)) => {
            tracing::warn!(stage = %opts.name, error = %e, "consume error");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    note_revoked(&mut batch);
    (batch, revoked)
}

/// Removes the messages of `revoked` partitions from `batch`; returns how many.
pub fn drop_revoked(batch: &mut Vec<Inbound>, revoked: &[(String, i32)]) -> usize {
    let before = batch.len();
    batch.retain(|m| {
        !revoked
            .iter()
            .any(|(t, p)| *p == m.partition && *t == m.topic)
    });
    before - batch.len()
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

fn plan_list(plan: &BTreeMap<(String, i32), Resume>) -> Result<TopicPartitionList> {
    let mut tpl = TopicPartitionList::new();
    for ((topic, partition), resume) in plan {
        let mut e = tpl.add_partition(topic, *partition);
        e.set_offset(rdkafka::Offset::Offset(resume.offset))?;
        if let Some(m) = &resume.metadata {
            e.set_metadata(m);
        }
    }
    Ok(tpl)
}

fn store_offsets(
    consumer: &StreamConsumer<LoggingContext>,
    plan: &BTreeMap<(String, i32), Resume>,
) -> Result<()> {
    if let Err(e) = consumer.store_offsets(&plan_list(plan)?) {
        // A partition revoked during the batch cannot be stored; its new owner re-reads it.
        tracing::warn!(error = %e, "storing offsets");
    }
    Ok(())
}

fn commit_async(consumer: &StreamConsumer<LoggingContext>, plan: &BTreeMap<(String, i32), Resume>) {
    match plan_list(plan) {
        Ok(tpl) => {
            if let Err(e) = consumer.commit(&tpl, CommitMode::Async) {
                tracing::warn!(error = %e, "committing offsets with state");
            }
        }
        Err(e) => tracing::warn!(error = %e, "commit plan"),
    }
}

#[cfg(test)]
mod tests {
    use super::{Inbound, drop_revoked, lag, split_at_rewinds};

    fn msg(topic: &str, partition: i32, offset: i64) -> Inbound {
        Inbound {
            topic: topic.into(),
            partition,
            offset,
            key: None,
            payload: Vec::new(),
        }
    }

    fn ids(batch: &[Inbound]) -> Vec<(String, i32, i64)> {
        batch
            .iter()
            .map(|m| (m.topic.clone(), m.partition, m.offset))
            .collect()
    }

    #[test]
    fn messages_of_revoked_partitions_are_dropped_and_counted() {
        let mut batch = vec![
            msg("candles", 0, 5),
            msg("candles", 1, 7),
            msg("ticks", 1, 3),
            msg("candles", 1, 8),
            msg("candles", 2, 1),
        ];
        let dropped = drop_revoked(&mut batch, &[("candles".into(), 1), ("candles".into(), 9)]);
        assert_eq!(dropped, 2);
        assert_eq!(
            ids(&batch),
            vec![
                ("candles".into(), 0, 5),
                ("ticks".into(), 1, 3),
                ("candles".into(), 2, 1)
            ]
        );
        assert_eq!(drop_revoked(&mut batch, &[]), 0);
        assert_eq!(batch.len(), 3);
    }

    #[test]
    fn a_batch_splits_where_a_partition_rewinds() {
        let batch = vec![
            msg("t", 0, 5),
            msg("t", 1, 2),
            msg("t", 0, 6),
            msg("t", 0, 3), // re-read after a reassignment
            msg("t", 1, 3),
        ];
        let parts: Vec<_> = split_at_rewinds(batch)
            .iter()
            .map(|b| ids(b.as_slice()))
            .collect();
        assert_eq!(
            parts,
            vec![
                vec![("t".into(), 0, 5), ("t".into(), 1, 2), ("t".into(), 0, 6)],
                vec![("t".into(), 0, 3), ("t".into(), 1, 3)],
            ]
        );
    }

    #[test]
    fn lag_is_high_watermark_minus_position_never_negative() {
        // (high watermark, position, lag)
        let cases = [(0, 0, 0), (10, 0, 10), (10, 7, 3), (10, 10, 0), (10, 12, 0)];
        for (high, position, want) in cases {
            assert_eq!(
                lag(high, position),
                want,
                "high {high}, position {position}"
            );
        }
    }
}
