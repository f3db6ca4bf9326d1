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

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use futures_util::FutureExt as _;
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
    /// Handles one batch. When it returns an error, the handler's state must be as it was
    /// before the call (read from the store first, change state after), because the runner
    /// hands the same batch in again once the store answers. A panic is caught; the runner then
    /// forgets the batch's partitions ([`Handler::revoked`]) and reads them again from the
    /// committed offsets, so state a panic left half-changed is never used.
    fn handle(&mut self, batch: &[Inbound]) -> impl Future<Output = Result<Effects>> + Send;

    /// Whether what the handler depends on (its store) answers. Asked after a failed batch or
    /// checkpoint: an error means an outage, which the runner waits out and then retries;
    /// `Ok` means the failure came from the batch itself, which is then isolated.
    fn ready(&mut self) -> impl Future<Output = Result<()>> + Send {
        std::future::ready(Ok(()))
    }

    /// Whether an error is an outage of the store although it answers (a full disk, too many
    /// connections): the runner then waits and retries the same batch or checkpoint, as for
    /// an unreachable store, instead of isolating the input. `Some` names the cause.
    fn outage(&self, _error: &anyhow::Error) -> Option<String> {
        None
    }

    /// Called once the batch's records are acknowledged (and with `last` at shutdown, after
    /// the final batch): a stage that checkpoints its state elsewhere writes it here and
    /// returns the offsets that checkpoint covers, which are stored instead of the batch's.
    /// `None` keeps the batch's offsets. An error is retried (with backoff, until the store
    /// answers); nothing is stored meanwhile.
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

    /// A partition left this consumer (rebalance), or is read again from its committed offset
    /// after a failed batch: forget its state.
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

/// Waits between tries while a store (or a checkpoint write) fails: doubling from
/// [`RETRY_FIRST`] up to [`RETRY_CAP`].
pub const RETRY_FIRST: Duration = Duration::from_millis(250);
/// The longest wait between tries.
pub const RETRY_CAP: Duration = Duration::from_secs(10);
/// How long [`Handler::ready`] may take before the store counts as down.
const READY_TIMEOUT: Duration = Duration::from_secs(5);
/// Tries of one record alone (with the store answering) before it is dead-lettered.
const POISON_TRIES: u32 = 2;

/// Runs a handler over a consumer group until `shutdown` fires.
///
/// Nothing a record or an outage does ends it: a batch that fails while the store is down is
/// retried when the store is back (`tickcast_store_up` is 0 meanwhile); a batch that fails or
/// panics while the store answers is read again record by record from the committed offsets,
/// and the record that fails alone is dead-lettered with the reason ([`Isolation`]). Only
/// set-up errors (no consumer, no producer) end it.
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
    telemetry::STORE_UP.with_label_values(&[&opts.name]).set(1);
    let stateful = handler.restores_state();
    // Next offset expected per partition this consumer reads; a partition missing here (new,
    // or revoked since) or a message below it (re-read after a rebalance) restores state first.
    let mut expected: HashMap<(String, i32), i64> = HashMap::new();
    let mut last_plan: BTreeMap<(String, i32), Resume> = BTreeMap::new();
    let mut isolation = Isolation::default();
    // Set when shutdown cut a batch short: its effects are not all acknowledged, so no final
    // checkpoint may cover it.
    let mut cut_short = false;
    'batches: loop {
        lag_report.poll(&consumer).await;
        let (batch, revoked) = tokio::select! {
            _ = shutdown.wait() => break,
            b = next_batch(&consumer, &opts) => b,
        };
        for tp in revoked {
            expected.remove(&tp);
            last_plan.remove(&tp);
            isolation.forget(&tp);
            handler.revoked(&tp.0, tp.1);
        }
        if batch.is_empty() {
            match acknowledge(&mut handler, &opts, &mut shutdown, false).await {
                Some(Some(checkpointed)) => store_offsets(&consumer, &resume_at(checkpointed))?,
                Some(None) => {}
                None => break,
            }
            continue;
        }
        let mut steps: VecDeque<Vec<Inbound>> = split_at_rewinds(batch)
            .into_iter()
            .flat_map(|segment| isolation.steps(segment, &opts.name))
            .collect();
        while let Some(piece) = steps.pop_front() {
            if stateful {
                restore(&consumer, &mut handler, &piece, &expected, &mut shutdown).await?;
            }
            for m in &piece {
                expected.insert((m.topic.clone(), m.partition), m.offset + 1);
            }
            match step(&mut handler, &publisher, &opts, &piece, &mut shutdown).await? {
                Outcome::Done(plan) => {
                    store_offsets(&consumer, &plan)?;
                    if stateful {
                        commit_async(&consumer, &plan);
                        last_plan.extend(plan);
                    }
                }
                Outcome::Stopped => {
                    cut_short = true;
                    break 'batches;
                }
                Outcome::Failed(reason) => {
                    telemetry::STAGE_RECOVERIES
                        .with_label_values(&[&opts.name, "isolate"])
                        .inc();
                    let later: Vec<Inbound> = steps.drain(..).flatten().collect();
                    if let Some(dead) = isolation.failed(&piece, &later, &reason, &opts) {
                        let record = dead.into_record(&opts.deadletter_topic);
                        if !publish_until_sent(&publisher, &[record], &opts, &mut shutdown).await {
                            cut_short = true;
                            break 'batches;
                        }
                        telemetry::DEAD_LETTERS
                            .with_label_values(&[&opts.name])
                            .inc();
                    }
                    // What succeeded is committed now, so the rewind goes back no further
                    // than the failed piece.
                    commit_now(&consumer, stateful, &last_plan, &opts);
                    // Every partition of the failed piece and of the batch's rest is read
                    // again from its committed offset, with its state as committed.
                    let mut again: Vec<(String, i32)> = Vec::new();
                    for m in piece.iter().chain(&later) {
                        let tp = (m.topic.clone(), m.partition);
                        if !again.contains(&tp) {
                            again.push(tp);
                        }
                    }
                    for tp in &again {
                        expected.remove(tp);
                        last_plan.remove(tp);
                        handler.revoked(&tp.0, tp.1);
                    }
                    rewind(&consumer, &again, &opts, &mut shutdown).await;
                    continue 'batches;
                }
            }
        }
    }
    lag_report.stop().await;
    publisher.flush(Duration::from_secs(10));
    if cut_short {
        tracing::info!(stage = %opts.name, "stopped during a batch; its input is read again at the next start");
    } else {
        match acknowledge(&mut handler, &opts, &mut shutdown, true).await {
            Some(Some(checkpointed)) => store_offsets(&consumer, &resume_at(checkpointed))?,
            Some(None) => {}
            None => tracing::error!(stage = %opts.name, "final checkpoint failed"),
        }
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

/// How one step ended.
enum Outcome {
    /// Handled and acknowledged; where each partition resumes.
    Done(BTreeMap<(String, i32), Resume>),
    /// The handler failed or panicked while its store answered, or its output could not be
    /// sent: the reason.
    Failed(String),
    /// Shutdown fired before the step's effects were acknowledged.
    Stopped,
}

/// One batch through the handler; outputs and dead letters published and acknowledged. A
/// failure while the store is down is waited out and the batch handled again.
async fn step<H: Handler>(
    handler: &mut H,
    publisher: &Publisher,
    opts: &StageOptions,
    batch: &[Inbound],
    shutdown: &mut Shutdown,
) -> Result<Outcome> {
    let done = batch_offsets(batch);
    let n = batch.len();
    let mut stalled = Stalled::new();
    let effects = loop {
        let handled = AssertUnwindSafe(handler.handle(batch)).catch_unwind().await;
        match handled {
            Ok(Ok(effects)) => {
                stalled.over(opts);
                break effects;
            }
            Ok(Err(e)) => {
                let failure = format!("{e:#}");
                if !store_down(handler, opts, shutdown, &failure).await {
                    let Some(why) = handler.outage(&e) else {
                        return Ok(Outcome::Failed(failure));
                    };
                    if !stalled.pause(opts, shutdown, &why).await {
                        return Ok(Outcome::Stopped);
                    }
                    continue;
                }
                if shutdown.is_fired() {
                    return Ok(Outcome::Stopped);
                }
            }
            Err(panic) => {
                let failure = format!("the {} stage panicked: {}", opts.name, panic_text(&*panic));
                tracing::error!(stage = %opts.name, error = %failure, records = n, "batch panicked");
                return Ok(Outcome::Failed(failure));
            }
        }
    };
    let mut records = effects.records;
    let dead = effects.dead.len();
    records.extend(
        effects
            .dead
            .into_iter()
            .map(|d| d.into_record(&opts.deadletter_topic)),
    );
    let Some(sent) = publish_or_stop(publisher, &records, shutdown).await else {
        return Ok(Outcome::Stopped);
    };
    if let Err(e) = sent {
        // Delivery has no timeout (the producer waits out broker outages), so this is the
        // output itself (too large, say): isolate the input that made it.
        return Ok(Outcome::Failed(format!("sending its output: {e:#}")));
    }
    telemetry::STAGE_MESSAGES
        .with_label_values(&[&opts.name])
        .inc_by(n as u64);
    telemetry::DEAD_LETTERS
        .with_label_values(&[&opts.name])
        .inc_by(dead as u64);
    match acknowledge(handler, opts, shutdown, false).await {
        None => Ok(Outcome::Stopped),
        Some(Some(checkpointed)) => Ok(Outcome::Done(resume_at(checkpointed))),
        Some(None) => Ok(Outcome::Done(effects.commit.unwrap_or_else(|| {
            done.into_iter()
                .map(|(tp, next)| (tp, Resume::at(next)))
                .collect()
        }))),
    }
}

/// [`Handler::acknowledged`], tried until it succeeds (waiting out store outages with
/// backoff). `None`: shutdown fired first.
async fn acknowledge<H: Handler>(
    handler: &mut H,
    opts: &StageOptions,
    shutdown: &mut Shutdown,
    last: bool,
) -> Option<Option<BTreeMap<(String, i32), i64>>> {
    let mut backoff = Backoff::new();
    let mut stalled = Stalled::new();
    loop {
        let (failure, full) = match handler.acknowledged(last).await {
            Ok(done) => {
                stalled.over(opts);
                return Some(done);
            }
            Err(e) => (format!("{e:#}"), handler.outage(&e)),
        };
        if last {
            // The final checkpoint, at shutdown: one more try, no waiting out an outage (the
            // input is read again at the next start).
            tracing::warn!(stage = %opts.name, error = %failure, "final checkpoint failed; trying once more");
            return handler.acknowledged(true).await.ok();
        }
        if store_down(handler, opts, shutdown, &failure).await {
            if shutdown.is_fired() {
                return None;
            }
            continue;
        }
        if let Some(why) = full {
            if !stalled.pause(opts, shutdown, &why).await {
                return None;
            }
            continue;
        }
        // The store answers but the checkpoint failed: retry it later, storing nothing.
        telemetry::STAGE_RECOVERIES
            .with_label_values(&[&opts.name, "checkpoint"])
            .inc();
        tracing::error!(stage = %opts.name, error = %failure, retry_in_ms = backoff.next().as_millis() as u64, "checkpoint failed with the store up; retrying");
        if !backoff.sleep(shutdown).await {
            return None;
        }
    }
}

/// Whether a failure was an outage of the handler's store: if [`Handler::ready`] fails, waits
/// (with backoff, `tickcast_store_up` at 0) until it answers or shutdown fires, and returns
/// true. False: the store answers, the failure is the input's.
async fn store_down<H: Handler>(
    handler: &mut H,
    opts: &StageOptions,
    shutdown: &mut Shutdown,
    failure: &str,
) -> bool {
    let down = match tokio::time::timeout(READY_TIMEOUT, handler.ready()).await {
        Ok(Ok(())) => return false,
        Ok(Err(e)) => format!("{e:#}"),
        Err(_) => format!("no answer within {} s", READY_TIMEOUT.as_secs()),
    };
    store_went_down(opts);
    tracing::warn!(stage = %opts.name, error = %failure, store = %down, "store unreachable; waiting for it, nothing is skipped");
    let started = tokio::time::Instant::now();
    let mut backoff = Backoff::new();
    loop {
        if !backoff.sleep(shutdown).await {
            return true;
        }
        match tokio::time::timeout(READY_TIMEOUT, handler.ready()).await {
            Ok(Ok(())) => break,
            Ok(Err(e)) => {
                tracing::debug!(stage = %opts.name, error = %format!("{e:#}"), "store still unreachable")
            }
            Err(_) => tracing::debug!(stage = %opts.name, "store still not answering"),
        }
    }
    telemetry::STORE_UP.with_label_values(&[&opts.name]).set(1);
    tracing::info!(stage = %opts.name, down_s = started.elapsed().as_secs_f64(), "store answers again; resuming");
    true
}

/// Capped exponential backoff between retries: [`RETRY_FIRST`], doubling up to [`RETRY_CAP`].
#[derive(Debug)]
pub struct Backoff(Duration);

impl Default for Backoff {
    fn default() -> Self {
        Self::new()
    }
}

impl Backoff {
    pub fn new() -> Self {
        Self(RETRY_FIRST)
    }

    /// The wait before the next try.
    pub fn next(&self) -> Duration {
        self.0
    }

    /// Sleeps the current wait, then doubles it. False: shutdown fired first.
    pub async fn sleep(&mut self, shutdown: &mut Shutdown) -> bool {
        tokio::select! {
            _ = tokio::time::sleep(self.0) => {}
            _ = shutdown.wait() => return false,
        }
        self.0 = (self.0 * 2).min(RETRY_CAP);
        true
    }
}

/// An outage of the stage's store begins: `tickcast_store_up` 0, a recovery counted.
fn store_went_down(opts: &StageOptions) {
    telemetry::STORE_UP.with_label_values(&[&opts.name]).set(0);
    telemetry::STAGE_RECOVERIES
        .with_label_values(&[&opts.name, "store"])
        .inc();
}

/// A store that answers but refuses writes ([`Handler::outage`]: a full disk, say): the same
/// work is retried with capped backoff while `tickcast_store_up` reads 0; nothing is skipped
/// and no input is blamed.
struct Stalled {
    backoff: Backoff,
    since: Option<tokio::time::Instant>,
}

impl Stalled {
    fn new() -> Self {
        Self {
            backoff: Backoff::new(),
            since: None,
        }
    }

    /// Waits before the next try. False: shutdown fired first.
    async fn pause(&mut self, opts: &StageOptions, shutdown: &mut Shutdown, why: &str) -> bool {
        if self.since.is_none() {
            self.since = Some(tokio::time::Instant::now());
            store_went_down(opts);
            tracing::warn!(stage = %opts.name, cause = why, "the store refuses writes; retrying until it takes them, nothing is skipped");
        } else {
            tracing::debug!(stage = %opts.name, cause = why, "the store still refuses writes");
        }
        self.backoff.sleep(shutdown).await
    }

    /// The store took the work.
    fn over(&mut self, opts: &StageOptions) {
        if let Some(since) = self.since.take() {
            telemetry::STORE_UP.with_label_values(&[&opts.name]).set(1);
            tracing::info!(stage = %opts.name, stalled_s = since.elapsed().as_secs_f64(), "the store takes writes again; resuming");
        }
    }
}

/// How long a send may still take once shutdown fired (the broker may be away for good).
const STOP_GRACE: Duration = Duration::from_secs(10);

/// [`Publisher::publish_all`], given up [`STOP_GRACE`] after shutdown fires (`None`).
async fn publish_or_stop(
    publisher: &Publisher,
    records: &[OutRecord],
    shutdown: &mut Shutdown,
) -> Option<Result<()>> {
    let send = publisher.publish_all(records);
    tokio::pin!(send);
    tokio::select! {
        r = &mut send => return Some(r),
        _ = shutdown.wait() => {}
    }
    tokio::time::timeout(STOP_GRACE, send).await.ok()
}

/// Sends `records`, retrying failures with backoff until they are acknowledged. False:
/// shutdown fired first.
async fn publish_until_sent(
    publisher: &Publisher,
    records: &[OutRecord],
    opts: &StageOptions,
    shutdown: &mut Shutdown,
) -> bool {
    let mut backoff = Backoff::new();
    loop {
        let Some(sent) = publish_or_stop(publisher, records, shutdown).await else {
            return false;
        };
        match sent {
            Ok(()) => return true,
            Err(e) => {
                telemetry::STAGE_RECOVERIES
                    .with_label_values(&[&opts.name, "publish"])
                    .inc();
                tracing::warn!(stage = %opts.name, error = %format!("{e:#}"), "sending a dead letter failed; retrying");
            }
        }
        if !backoff.sleep(shutdown).await {
            return false;
        }
    }
}

/// The text of a caught panic.
fn panic_text(panic: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic without a message".to_string()
    }
}

/// What the runner knows about records that failed: which to read one at a time, which were
/// dead-lettered.
///
/// When a batch of several records fails while the store answers, the records up to its end
/// become *suspect*: after the rewind to the committed offsets they are handled one per step.
/// A suspect that fails alone [`POISON_TRIES`] times is dead-lettered and skipped from then on
/// (its offset passes with the next record's). Valid records are handled exactly once more
/// after each rewind, from state as committed, so none is lost or counted twice.
#[derive(Debug, Default)]
pub struct Isolation {
    /// Per partition: records below this offset are handled alone.
    suspect: HashMap<(String, i32), i64>,
    /// Dead-lettered records, skipped when read again.
    poison: HashSet<(String, i32, i64)>,
    /// Failures of single records so far.
    tries: HashMap<(String, i32, i64), u32>,
}

impl Isolation {
    /// Splits a segment into steps: runs of ordinary records, and each suspect record alone.
    /// Known poison is left out (it was dead-lettered when found); when a step would then be
    /// empty for a partition, its offset still passes with the next record.
    pub fn steps(&mut self, segment: Vec<Inbound>, stage: &str) -> Vec<Vec<Inbound>> {
        let mut out: Vec<Vec<Inbound>> = Vec::new();
        let mut run: Vec<Inbound> = Vec::new();
        for m in segment {
            let tp = (m.topic.clone(), m.partition);
            if self.poison.contains(&(tp.0.clone(), tp.1, m.offset)) {
                tracing::debug!(stage, topic = %m.topic, partition = m.partition, offset = m.offset, "skipping a dead-lettered record");
                continue;
            }
            match self.suspect.get(&tp) {
                Some(&end) if m.offset < end => {
                    if !run.is_empty() {
                        out.push(std::mem::take(&mut run));
                    }
                    out.push(vec![m]);
                }
                Some(_) => {
                    self.suspect.remove(&tp);
                    run.push(m);
                }
                None => run.push(m),
            }
        }
        if !run.is_empty() {
            out.push(run);
        }
        out
    }

    /// Records a failed step. A lone record that failed [`POISON_TRIES`] times comes back as
    /// its dead letter; a longer step (and the `later` records of its batch) becomes suspect.
    pub fn failed(
        &mut self,
        step: &[Inbound],
        later: &[Inbound],
        reason: &str,
        opts: &StageOptions,
    ) -> Option<DeadLetter> {
        if let [m] = step {
            let id = (m.topic.clone(), m.partition, m.offset);
            let tries = self.tries.entry(id.clone()).or_insert(0);
            *tries += 1;
            if *tries < POISON_TRIES {
                return None;
            }
            self.tries.remove(&id);
            self.poison.insert(id);
            return Some(DeadLetter::new(
                &opts.name,
                &m.topic,
                m.partition,
                m.offset,
                reason,
                &m.payload,
            ));
        }
        tracing::warn!(stage = %opts.name, records = step.len(), error = %reason, "batch failed with the store up; re-reading it record by record");
        for m in step.iter().chain(later) {
            let end = self
                .suspect
                .entry((m.topic.clone(), m.partition))
                .or_insert(0);
            *end = (*end).max(m.offset + 1);
        }
        None
    }

    /// A partition left this consumer: what was known about it goes with it.
    pub fn forget(&mut self, tp: &(String, i32)) {
        self.suspect.remove(tp);
        self.poison.retain(|(t, p, _)| !(*p == tp.1 && *t == tp.0));
        self.tries
            .retain(|(t, p, _), _| !(*p == tp.1 && *t == tp.0));
    }
}

/// Commits what was stored (with its state, for stateful handlers) and waits for the broker.
fn commit_now(
    consumer: &StreamConsumer<LoggingContext>,
    stateful: bool,
    last_plan: &BTreeMap<(String, i32), Resume>,
    opts: &StageOptions,
) {
    let done = if stateful {
        if last_plan.is_empty() {
            return;
        }
        plan_list(last_plan).and_then(|tpl| Ok(consumer.commit(&tpl, CommitMode::Sync)?))
    } else {
        consumer
            .commit_consumer_state(CommitMode::Sync)
            .map_err(anyhow::Error::from)
    };
    if let Err(e) = done {
        // Nothing stored since the last commit is the usual reason.
        tracing::debug!(stage = %opts.name, error = %format!("{e:#}"), "commit before a rewind");
    }
}

/// Moves `partitions` back to their committed offsets (the earliest offset where nothing was
/// committed), so they are read again with their state as committed. Retries while the broker
/// does not answer.
async fn rewind(
    consumer: &StreamConsumer<LoggingContext>,
    partitions: &[(String, i32)],
    opts: &StageOptions,
    shutdown: &mut Shutdown,
) {
    let mut backoff = Backoff::new();
    loop {
        match seek_committed(consumer, partitions) {
            Ok(()) => return,
            Err(e) => {
                tracing::warn!(stage = %opts.name, error = %format!("{e:#}"), "rewinding to the committed offsets; retrying")
            }
        }
        if !backoff.sleep(shutdown).await {
            return;
        }
    }
}

fn seek_committed(
    consumer: &StreamConsumer<LoggingContext>,
    partitions: &[(String, i32)],
) -> Result<()> {
    let mut tpl = TopicPartitionList::new();
    for (topic, partition) in partitions {
        tpl.add_partition(topic, *partition);
    }
    let committed = consumer
        .committed_offsets(tpl, Duration::from_secs(10))
        .context("reading committed offsets")?;
    for (topic, partition) in partitions {
        let at = committed
            .find_partition(topic, *partition)
            .map(|e| e.offset())
            .filter(|o| matches!(o, Offset::Offset(_)))
            .unwrap_or(Offset::Beginning);
        consumer
            .seek(topic, *partition, at, Duration::from_secs(10))
            .with_context(|| format!("seeking {topic}/{partition} to {at:?}"))?;
    }
    Ok(())
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
async fn restore<H: Handler>(
    consumer: &StreamConsumer<LoggingContext>,
    handler: &mut H,
    batch: &[Inbound],
    expected: &HashMap<(String, i32), i64>,
    shutdown: &mut Shutdown,
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
    // The broker may be down: wait for it rather than guess the state.
    let mut backoff = Backoff::new();
    let committed = loop {
        match consumer.committed_offsets(tpl.clone(), Duration::from_secs(30)) {
            Ok(c) => break c,
            Err(e) => {
                tracing::warn!(error = %e, "reading committed offsets and their state; retrying");
                if !backoff.sleep(shutdown).await {
                    bail!("stopped while restoring partition state");
                }
            }
        }
    };
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
