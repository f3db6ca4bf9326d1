//! The alert stage handler: forecasts and candles in, [`AlertEvent`]s out on
//! `tickcast.alerts.v1`, into the store and the webhook outbox.
//!
//! Per batch: reload the rules when due (every `reload_every`, or at once on a
//! [`ReloadWatch`] signal); decode the inputs (undecodable ones are dead letters); restore the
//! series seen for the first time from the store; feed the engine in input order; publish the
//! events.
//!
//! Checkpoints follow the forecast stage's pattern: after the batch's events are
//! acknowledged, every `checkpoint_every` (and at shutdown), the events, their webhook outbox
//! rows and the state of every series that changed are written in one transaction; only then
//! are the input offsets up to that point stored. A restart re-reads at most the inputs since
//! the last checkpoint and, the engine being deterministic, re-emits the same events with the
//! same ids; the state saved includes each instance's pending timer, so a restart in the
//! middle of a `for` duration fires exactly when an uninterrupted run would have.
//!
//! The forecasts and candles topics must have the same partition count, so that one consumer
//! holds both partitions of a series (Kafka's default range assignor co-partitions them).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use tickcast_core::bus::OutRecord;
use tickcast_core::codec::{self, Message as _, Topics};
use tickcast_core::deadletter::DeadLetter;
use tickcast_core::domain::{Candle, Forecast};
use tickcast_core::stage::{Effects, Handler, Inbound, batch_offsets};
use tokio::sync::watch;

use super::engine::{Engine, SeriesKey};
use super::webhook::WebhookHandle;
use super::{AlertEvent, Rule};
use tickcast_store::{AlertCheckpoint, AlertSeriesState, AlertStore};

/// Topics, consumer group and timings of the stage.
#[derive(Debug, Clone)]
pub struct AlertSettings {
    pub forecasts_topic: String,
    pub candles_topic: String,
    pub output_topic: String,
    /// The consumer group; state is checkpointed per group.
    pub consumer: String,
    pub checkpoint_every: Duration,
    /// How often the rules are read from the store.
    pub reload_every: Duration,
}

impl AlertSettings {
    /// Defaults: checkpoints every second, rules re-read every 5 s.
    pub fn new(topics: &Topics, consumer: impl Into<String>) -> Self {
        Self {
            forecasts_topic: topics.forecasts(),
            candles_topic: topics.candles(),
            output_topic: topics.alerts(),
            consumer: consumer.into(),
            checkpoint_every: Duration::from_secs(1),
            reload_every: Duration::from_secs(5),
        }
    }

    /// The topics the stage reads.
    pub fn inputs(&self) -> Vec<String> {
        vec![self.forecasts_topic.clone(), self.candles_topic.clone()]
    }
}

/// Tells a running alert stage that the rules changed (e.g. the API, in the same process).
#[derive(Debug, Clone)]
pub struct ReloadTrigger(Arc<watch::Sender<u64>>);

/// The stage's side of a [`ReloadTrigger`].
#[derive(Debug, Clone)]
pub struct ReloadWatch(watch::Receiver<u64>);

/// A new reload signal.
pub fn reload_channel() -> (ReloadTrigger, ReloadWatch) {
    let (tx, rx) = watch::channel(0);
    (ReloadTrigger(Arc::new(tx)), ReloadWatch(rx))
}

impl ReloadTrigger {
    pub fn notify(&self) {
        self.0.send_modify(|n| *n = n.wrapping_add(1));
    }
}

impl ReloadWatch {
    /// Whether a reload was asked for since the last call.
    fn take(&mut self) -> bool {
        let changed = self.0.has_changed().unwrap_or(false);
        if changed {
            self.0.borrow_and_update();
        }
        changed
    }
}

/// The stage handler.
#[derive(Debug)]
pub struct AlertStage {
    settings: AlertSettings,
    store: Arc<dyn AlertStore>,
    engine: Engine,
    webhooks: Vec<WebhookHandle>,
    reload: Option<ReloadWatch>,
    last_reload: Option<Instant>,
    /// Events published but not yet in the store.
    unsaved: Vec<AlertEvent>,
    /// Events made by a `handle` call that then failed, sent with the next batch.
    pending: Vec<AlertEvent>,
    dirty: HashSet<SeriesKey>,
    looked_up: HashSet<SeriesKey>,
    partitions_of: HashMap<SeriesKey, BTreeSet<(String, i32)>>,
    /// Next offsets of everything handled, and of what the last checkpoint covers.
    handled: BTreeMap<(String, i32), i64>,
    covered: BTreeMap<(String, i32), i64>,
    last_checkpoint: Instant,
}

enum Input {
    Forecast(Forecast),
    Candle(Candle),
}

impl Input {
    fn key(&self) -> SeriesKey {
        match self {
            Input::Forecast(f) => tickcast_forecast::forecast_series_key(f),
            Input::Candle(c) => tickcast_forecast::series_key(c),
        }
    }
}

impl AlertStage {
    /// Rules come from the store (`alert_rules`), read at the first batch and then every
    /// `reload_every`.
    pub fn new(settings: AlertSettings, store: Arc<dyn AlertStore>) -> Self {
        Self {
            settings,
            store,
            engine: Engine::default(),
            webhooks: Vec::new(),
            reload: None,
            last_reload: None,
            unsaved: Vec::new(),
            pending: Vec::new(),
            dirty: HashSet::new(),
            looked_up: HashSet::new(),
            partitions_of: HashMap::new(),
            handled: BTreeMap::new(),
            covered: BTreeMap::new(),
            last_checkpoint: Instant::now(),
        }
    }

    /// Queues every event for this webhook endpoint and wakes its deliverer at checkpoints.
    pub fn with_webhook(mut self, handle: WebhookHandle) -> Self {
        self.webhooks.push(handle);
        self
    }

    /// Reloads the rules at once when signalled.
    pub fn with_reload_signal(mut self, watch: ReloadWatch) -> Self {
        self.reload = Some(watch);
        self
    }

    /// The rules in force.
    pub fn rules(&self) -> Vec<Rule> {
        self.engine.rules().cloned().collect()
    }

    /// Reads the rules from the store when due; events for instances of rules that went.
    async fn maybe_reload(&mut self) -> Result<Vec<AlertEvent>> {
        let signalled = self.reload.as_mut().is_some_and(ReloadWatch::take);
        let due = self
            .last_reload
            .is_none_or(|t| t.elapsed() >= self.settings.reload_every);
        if !(signalled || due) {
            return Ok(Vec::new());
        }
        let first = self.last_reload.is_none();
        let rows = match self.store.alert_rules().await {
            Ok(rows) => rows,
            Err(e) if !first => {
                tracing::warn!(error = %e, "reading alert rules; keeping the current ones");
                self.last_reload = Some(Instant::now());
                return Ok(Vec::new());
            }
            // No rules yet: the batch fails and is handled again once the store answers.
            Err(e) => return Err(e.context("reading alert rules")),
        };
        self.last_reload = Some(Instant::now());
        let rules: Vec<Rule> = rows.into_iter().map(|r| r.rule).collect();
        if !first && self.engine.rules().eq(rules.iter()) {
            return Ok(Vec::new());
        }
        let enabled = rules.iter().filter(|r| r.enabled).count();
        tracing::info!(rules = rules.len(), enabled, "alert rules loaded");
        let events = self.engine.set_rules(rules);
        self.dirty.extend(self.engine.take_dirty());
        Ok(events)
    }

    /// Restores, from the store, the series of this batch not seen before.
    async fn restore(&mut self, inputs: &[Input]) -> Result<Vec<AlertEvent>> {
        let mut keys: Vec<SeriesKey> = Vec::new();
        for i in inputs {
            let k = i.key();
            if !self.engine.knows(&k) && !self.looked_up.contains(&k) && !keys.contains(&k) {
                keys.push(k);
            }
        }
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let rows = self
            .store
            .load_alert_states(&self.settings.consumer, &keys)
            .await
            .context("restoring alert state")?;
        self.looked_up.extend(keys.iter().cloned());
        let mut events = Vec::new();
        for row in &rows {
            let key = (
                row.exchange.clone(),
                row.symbol.clone(),
                row.interval.clone(),
            );
            match self.engine.load_series(&key, &row.state) {
                Ok(ev) => events.extend(ev),
                Err(e) => {
                    // A state we cannot read is a bug to see, not a reason to stop: the series
                    // starts fresh.
                    tracing::error!(exchange = %key.0, symbol = %key.1, error = %e, "alert state unreadable; starting the series fresh");
                    self.engine.forget(&key);
                }
            }
        }
        if !rows.is_empty() {
            tracing::info!(series = rows.len(), "alert state restored");
        }
        self.dirty.extend(self.engine.take_dirty());
        Ok(events)
    }

    fn decode(&mut self, batch: &[Inbound]) -> (Vec<Input>, Vec<DeadLetter>) {
        let mut inputs = Vec::with_capacity(batch.len());
        let mut dead = Vec::new();
        for m in batch {
            let decoded = if m.topic == self.settings.forecasts_topic {
                codec::decode::<Forecast>(&m.payload)
                    .map(Input::Forecast)
                    .map_err(|e| e.to_string())
            } else if m.topic == self.settings.candles_topic {
                codec::decode::<Candle>(&m.payload)
                    .map(Input::Candle)
                    .map_err(|e| e.to_string())
            } else {
                Err(format!("`{}` is not an input of the alert stage", m.topic))
            };
            match decoded {
                Ok(i) => {
                    let tp = (m.topic.clone(), m.partition);
                    let tps = self.partitions_of.entry(i.key()).or_default();
                    if !tps.contains(&tp) {
                        tps.insert(tp);
                    }
                    inputs.push(i);
                }
                Err(reason) => dead.push(DeadLetter::new(
                    "alert",
                    &m.topic,
                    m.partition,
                    m.offset,
                    reason,
                    &m.payload,
                )),
            }
        }
        (inputs, dead)
    }

    /// Writes the events, outbox rows and changed series since the last checkpoint.
    async fn write_checkpoint(&mut self) -> Result<()> {
        let mut dirty: Vec<&SeriesKey> = self.dirty.iter().collect();
        dirty.sort();
        let mut series: Vec<AlertSeriesState> = Vec::with_capacity(dirty.len());
        for k in dirty {
            if let Some(state) = self.engine.save_series(k)? {
                series.push(AlertSeriesState {
                    exchange: k.0.clone(),
                    symbol: k.1.clone(),
                    interval: k.2.clone(),
                    state,
                });
            }
        }
        let cp = AlertCheckpoint {
            events: std::mem::take(&mut self.unsaved),
            endpoints: self.webhooks.iter().map(|w| w.name.clone()).collect(),
            series,
            now_ms: tickcast_core::now_ms(),
        };
        if let Err(e) = self
            .store
            .save_alert_checkpoint(&self.settings.consumer, &cp)
            .await
        {
            self.unsaved = cp.events;
            return Err(e.context("writing the alert checkpoint"));
        }
        tracing::debug!(
            events = cp.events.len(),
            series = cp.series.len(),
            "alert checkpoint written"
        );
        self.dirty.clear();
        self.covered = self.handled.clone();
        self.last_checkpoint = Instant::now();
        if !cp.events.is_empty() {
            for w in &self.webhooks {
                w.wake.notify_one();
            }
        }
        Ok(())
    }
}

impl Handler for AlertStage {
    async fn handle(&mut self, batch: &[Inbound]) -> Result<Effects> {
        // Events of a call that failed after the rules changed: the rules are in force now, so
        // the events would not come again.
        let mut events = std::mem::take(&mut self.pending);
        let (inputs, dead) = self.decode(batch);
        let read = match self.maybe_reload().await {
            Ok(reloaded) => {
                events.extend(reloaded);
                self.restore(&inputs).await
            }
            Err(e) => Err(e),
        };
        match read {
            Ok(restored) => events.extend(restored),
            Err(e) => {
                self.pending = events;
                return Err(e);
            }
        }
        for i in &inputs {
            events.extend(match i {
                Input::Forecast(f) => self.engine.on_forecast(f),
                Input::Candle(c) => self.engine.on_candle(c),
            });
        }
        self.dirty.extend(self.engine.take_dirty());
        for (tp, next) in batch_offsets(batch) {
            let e = self.handled.entry(tp).or_insert(next);
            *e = (*e).max(next);
        }
        let mut records = Vec::with_capacity(events.len());
        for e in &events {
            super::metrics::EVENTS
                .with_label_values(&[e.state.as_str()])
                .inc();
            records.push(OutRecord {
                topic: self.settings.output_topic.as_str().into(),
                key: e.key(),
                payload: codec::encode(e),
            });
        }
        self.unsaved.extend(events);
        Ok(Effects {
            records,
            dead,
            commit: None,
        })
    }

    async fn acknowledged(&mut self, last: bool) -> Result<Option<BTreeMap<(String, i32), i64>>> {
        if self.dirty.is_empty() && self.unsaved.is_empty() {
            // Nothing changed since the last checkpoint: it covers everything handled.
            self.covered = self.handled.clone();
        } else if last || self.last_checkpoint.elapsed() >= self.settings.checkpoint_every {
            self.write_checkpoint().await?;
        }
        Ok(Some(self.covered.clone()))
    }

    async fn ready(&mut self) -> Result<()> {
        self.store.ping().await
    }

    fn outage(&self, error: &anyhow::Error) -> Option<String> {
        tickcast_store::unavailable(error)
    }

    /// A partition moved to another process: forget its series. What was not checkpointed is
    /// re-read by the new owner from the last checkpoint's offsets.
    fn revoked(&mut self, topic: &str, partition: i32) {
        let tp = (topic.to_string(), partition);
        let gone: Vec<SeriesKey> = self
            .partitions_of
            .iter()
            .filter(|(_, tps)| tps.contains(&tp))
            .map(|(k, _)| k.clone())
            .collect();
        for k in &gone {
            self.engine.forget(k);
            self.partitions_of.remove(k);
            self.dirty.remove(k);
            self.looked_up.remove(k);
        }
        self.handled.remove(&tp);
        self.covered.remove(&tp);
        if !gone.is_empty() {
            tracing::info!(
                topic,
                partition,
                series = gone.len(),
                "partition revoked; its alert series dropped from memory"
            );
        }
    }
}
