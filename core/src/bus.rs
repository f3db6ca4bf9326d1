//! The Kafka bus: settings, the idempotent [`Publisher`], group consumers that store offsets only
//! when told to, and topic creation (admin API on a real cluster, the mock API on the embedded
//! broker).

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};

use crate::embedded::EmbeddedBroker;

/// How to reach Kafka and how to lay out topics.
#[derive(Clone)]
pub struct KafkaSettings {
    /// `host:port[,host:port]`.
    pub bootstrap: String,
    /// Partitions for topics this process creates.
    pub partitions: i32,
    /// Replication factor for topics this process creates.
    pub replication: i32,
    /// Consumer-group session timeout; short on the embedded broker, where rebalances wait for it.
    pub session_timeout_ms: u32,
    /// librdkafka properties set on every client of this process (`security.protocol`,
    /// `sasl.*`, `ssl.*`, …), after tickcast's defaults and before the settings its delivery
    /// guarantees rest on (idempotence, offset storage), which are set last and win.
    pub properties: Vec<(String, String)>,
}

/// Environment variables that set a librdkafka property: `TICKCAST_KAFKA_PROPERTY_SASL_USERNAME`
/// sets `sasl.username` (`_` → `.`, lower case); with `_FILE` at the end the value is read from
/// the file it names (a Docker or Kubernetes secret).
pub const PROPERTY_ENV: &str = "TICKCAST_KAFKA_PROPERTY_";

/// The librdkafka properties the environment sets ([`PROPERTY_ENV`]), sorted by variable.
pub fn properties_from_env(
    vars: impl IntoIterator<Item = (String, String)>,
) -> Result<Vec<(String, String)>> {
    let mut vars: Vec<(String, String)> = vars
        .into_iter()
        .filter(|(k, _)| k.starts_with(PROPERTY_ENV))
        .collect();
    vars.sort();
    let mut out = Vec::with_capacity(vars.len());
    for (var, value) in vars {
        let rest = &var[PROPERTY_ENV.len()..];
        let (name, from_file) = match rest.strip_suffix("_FILE") {
            Some(n) => (n, true),
            None => (rest, false),
        };
        if name.is_empty() {
            bail!("{var}: no property name after {PROPERTY_ENV}");
        }
        let value = if from_file {
            read_secret(std::path::Path::new(&value), &var)?
        } else {
            value
        };
        out.push((name.to_ascii_lowercase().replace('_', "."), value));
    }
    Ok(out)
}

/// A secret from a file (a Docker or Kubernetes secret): its text without surrounding
/// whitespace; `what` names the setting in errors.
pub fn read_secret(path: &std::path::Path, what: &str) -> Result<String> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("{what}: reading {}", path.display()))?;
    let text = text.trim();
    if text.is_empty() {
        bail!("{what}: {} is empty", path.display());
    }
    Ok(text.to_string())
}

/// Whether a librdkafka property holds a secret: its value is never logged or printed.
pub fn is_secret_property(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    [
        "password",
        "secret",
        "jaas",
        ".key.pem",
        "ssl.key",
        "token",
        "oauthbearer.config",
    ]
    .iter()
    .any(|s| n.contains(s))
        && !n.ends_with(".location")
}

impl std::fmt::Debug for KafkaSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let props: Vec<(&str, &str)> = self
            .properties
            .iter()
            .map(|(k, v)| {
                let v = if is_secret_property(k) { "***" } else { v };
                (k.as_str(), v)
            })
            .collect();
        f.debug_struct("KafkaSettings")
            .field("bootstrap", &self.bootstrap)
            .field("partitions", &self.partitions)
            .field("replication", &self.replication)
            .field("session_timeout_ms", &self.session_timeout_ms)
            .field("properties", &props)
            .finish()
    }
}

impl KafkaSettings {
    pub fn new(bootstrap: impl Into<String>) -> Self {
        Self {
            bootstrap: bootstrap.into(),
            partitions: 3,
            replication: 1,
            session_timeout_ms: 10_000,
            properties: Vec::new(),
        }
    }

    /// Sets a librdkafka property on every client (a later value for the same name wins).
    pub fn set_property(&mut self, name: impl Into<String>, value: impl Into<String>) {
        let name = name.into();
        self.properties.retain(|(k, _)| *k != name);
        self.properties.push((name, value.into()));
    }

    /// The settings every client of this process starts from (bootstrap, client id, no topic
    /// auto-creation), for clients the bus does not make itself.
    pub fn client_config(&self) -> ClientConfig {
        self.base_config()
    }

    fn base_config(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.bootstrap)
            .set("client.id", "tickcast")
            .set("allow.auto.create.topics", "false")
            .set_log_level(RDKafkaLogLevel::Warning);
        for (k, v) in &self.properties {
            c.set(k, v);
        }
        c
    }

    /// Connects once and reads the cluster's metadata, failing fast, with the cause, when the
    /// broker refuses this client: a wrong SASL password, a certificate no CA vouches for,
    /// plaintext to a TLS listener or TLS to a plaintext one. A broker that does not answer
    /// at all is an error after `timeout`. Blocking.
    pub fn check_access(&self, timeout: Duration) -> Result<()> {
        use rdkafka::producer::Producer as _;
        let probe: rdkafka::producer::BaseProducer<ProbeContext> = self
            .base_config()
            // One attempt's worth of backoff: the cause is known after the first try.
            .set("reconnect.backoff.ms", "200")
            .set("reconnect.backoff.max.ms", "1000")
            // Its log lines reach only the probe's context, which looks for the cause.
            .set_log_level(RDKafkaLogLevel::Info)
            .create_with_context(ProbeContext::default())
            .context("creating a Kafka client (check the [kafka] properties)")?;
        let started = std::time::Instant::now();
        loop {
            let step = Duration::from_millis(250).min(timeout.saturating_sub(started.elapsed()));
            let answered = probe.client().fetch_metadata(None, step);
            // Serves librdkafka's error callbacks, where a refusal is reported.
            probe.poll(Duration::ZERO);
            match answered {
                Ok(_) => return Ok(()),
                Err(e) => {
                    if let Some(cause) = probe.context().refused() {
                        bail!("Kafka at {} refused this client: {cause}", self.bootstrap);
                    }
                    if started.elapsed() >= timeout {
                        let seen = probe.context().last();
                        bail!(
                            "Kafka at {} did not answer within {} s: {e}{}",
                            self.bootstrap,
                            timeout.as_secs(),
                            seen.map(|s| format!(" ({s})")).unwrap_or_default()
                        );
                    }
                }
            }
        }
    }

    /// An idempotent producer: acks=all, lz4, batching with a short linger, and deliveries that
    /// wait for the broker however long it is away.
    pub fn producer(&self) -> Result<FutureProducer> {
        self.base_config()
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("compression.type", "lz4")
            .set("linger.ms", "5")
            .set("batch.num.messages", "10000")
            .set("queue.buffering.max.messages", "200000")
            // No delivery timeout: a broker outage is waited out (records stay queued, and
            // callers await each batch, which bounds the queue) instead of failing the send.
            .set("message.timeout.ms", "0")
            .create()
            .context("creating Kafka producer")
    }

    /// A group consumer with `enable.auto.offset.store=false`: offsets are stored by the stage
    /// runner after the effect is acknowledged, and the stored ones are committed periodically
    /// and on shutdown. Cooperative-sticky assignment avoids failed commits during rebalances.
    pub fn consumer(
        &self,
        group: &str,
        topics: &[String],
    ) -> Result<StreamConsumer<LoggingContext>> {
        let consumer: StreamConsumer<LoggingContext> = self
            .base_config()
            .set("group.id", group)
            .set("enable.auto.commit", "true")
            .set("auto.commit.interval.ms", "500")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("partition.assignment.strategy", "cooperative-sticky")
            .set("session.timeout.ms", self.session_timeout_ms.to_string())
            .set(
                "heartbeat.interval.ms",
                (self.session_timeout_ms / 4).max(100).to_string(),
            )
            .set("enable.partition.eof", "false")
            .create_with_context(LoggingContext {
                group: group.to_string(),
                revoked: Arc::default(),
            })
            .with_context(|| format!("creating consumer for group {group}"))?;
        let names: Vec<&str> = topics.iter().map(String::as_str).collect();
        rdkafka::consumer::Consumer::subscribe(&consumer, &names)
            .with_context(|| format!("subscribing group {group} to {topics:?}"))?;
        Ok(consumer)
    }

    /// A consumer that follows `topics` from their current end, in a group of its own
    /// (`group`, which should be unique per process) that never commits: for live views such
    /// as the API's websocket stream, which want what happens next, not history.
    pub fn tail_consumer(&self, group: &str, topics: &[String]) -> Result<StreamConsumer> {
        let consumer: StreamConsumer = self
            .base_config()
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "latest")
            .set("session.timeout.ms", self.session_timeout_ms.to_string())
            .set(
                "heartbeat.interval.ms",
                (self.session_timeout_ms / 4).max(100).to_string(),
            )
            .set("enable.partition.eof", "false")
            .create()
            .with_context(|| format!("creating tail consumer {group}"))?;
        let names: Vec<&str> = topics.iter().map(String::as_str).collect();
        rdkafka::consumer::Consumer::subscribe(&consumer, &names)
            .with_context(|| format!("subscribing {group} to {topics:?}"))?;
        Ok(consumer)
    }

    /// The high watermark (the next offset to be written) of each partition, 0 for a partition
    /// the topic does not have (blocking; call it off the async runtime).
    pub fn high_watermarks(
        &self,
        partitions: &[(String, i32)],
        timeout: Duration,
    ) -> Result<Vec<i64>> {
        let client: rdkafka::consumer::BaseConsumer = self
            .base_config()
            .create()
            .context("creating Kafka client")?;
        let mut out = Vec::with_capacity(partitions.len());
        for (topic, partition) in partitions {
            let md = rdkafka::consumer::Consumer::fetch_metadata(&client, Some(topic), timeout)
                .with_context(|| format!("reading metadata of {topic} from {}", self.bootstrap))?;
            let exists = md
                .topics()
                .iter()
                .any(|t| t.name() == topic && t.partitions().iter().any(|p| p.id() == *partition));
            if !exists {
                out.push(0);
                continue;
            }
            let (_, high) = watermarks(&client, topic, *partition, timeout)
                .with_context(|| format!("reading the offsets of {topic}/{partition}"))?;
            out.push(high);
        }
        Ok(out)
    }

    /// Whether the cluster answers a metadata request within `timeout` (blocking; call it
    /// off the async runtime).
    pub fn reachable(&self, timeout: Duration) -> Result<()> {
        let client: rdkafka::consumer::BaseConsumer = self
            .base_config()
            .create()
            .context("creating Kafka client")?;
        rdkafka::consumer::Consumer::fetch_metadata(&client, None, timeout)
            .map(|_| ())
            .with_context(|| format!("Kafka at {} did not answer", self.bootstrap))
    }
}

/// Logs rebalances and remembers revoked partitions for the stage runner; one per consumer.
#[derive(Debug, Clone)]
pub struct LoggingContext {
    group: String,
    revoked: Arc<std::sync::Mutex<Vec<(String, i32)>>>,
}

impl LoggingContext {
    /// Partitions revoked since the last call.
    pub fn take_revoked(&self) -> Vec<(String, i32)> {
        self.revoked
            .lock()
            .map(|mut v| std::mem::take(&mut *v))
            .unwrap_or_default()
    }
}

impl rdkafka::ClientContext for LoggingContext {}

impl ConsumerContext for LoggingContext {
    fn post_rebalance(&self, _c: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(tpl) => {
                tracing::info!(group = %self.group, partitions = tpl.count(), "partitions assigned")
            }
            Rebalance::Revoke(tpl) => {
                tracing::info!(group = %self.group, partitions = tpl.count(), "partitions revoked");
                if let Ok(mut v) = self.revoked.lock() {
                    v.extend(
                        tpl.elements()
                            .iter()
                            .map(|e| (e.topic().to_string(), e.partition())),
                    );
                }
            }
            Rebalance::Error(e) => {
                tracing::warn!(group = %self.group, error = %e, "rebalance error")
            }
        }
    }
}

/// Where topics are created: a real cluster's admin API or the embedded broker.
#[derive(Debug, Clone)]
pub enum Cluster {
    Kafka(KafkaSettings),
    Embedded(Arc<EmbeddedBroker>, KafkaSettings),
}

impl Cluster {
    pub fn settings(&self) -> &KafkaSettings {
        match self {
            Cluster::Kafka(s) | Cluster::Embedded(_, s) => s,
        }
    }

    /// Creates the topics that do not exist yet.
    pub async fn ensure_topics(&self, names: &[String]) -> Result<()> {
        let s = self.settings();
        match self {
            Cluster::Embedded(broker, _) => {
                for n in names {
                    broker.create_topic(n, s.partitions)?;
                }
                Ok(())
            }
            Cluster::Kafka(_) => create_topics_admin(s, names).await,
        }
    }
}

/// How long the start-up check waits for a broker that does not answer.
const ACCESS_TIMEOUT: Duration = Duration::from_secs(30);

/// Records what librdkafka reports while [`KafkaSettings::check_access`] connects.
#[derive(Default)]
struct ProbeContext {
    refused: std::sync::Mutex<Option<String>>,
    /// Connections closed during the first request.
    closed_early: std::sync::atomic::AtomicU32,
    last: std::sync::Mutex<Option<String>>,
}

impl ProbeContext {
    fn refused(&self) -> Option<String> {
        self.refused.lock().ok()?.clone()
    }
    fn last(&self) -> Option<String> {
        self.last.lock().ok()?.clone()
    }
}

impl rdkafka::ClientContext for ProbeContext {
    fn log(&self, _level: rdkafka::config::RDKafkaLogLevel, _fac: &str, log_message: &str) {
        // A plaintext client at a TLS listener sees only disconnects during its first request
        // (the broker answers with a TLS alert and closes); librdkafka logs them, at info level.
        let hint = log_message.contains("security.protocol")
            || (log_message.contains("Disconnected") && log_message.contains("APIVERSION_QUERY"));
        if hint
            && self
                .closed_early
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
                >= 1
        {
            let text = format!(
                "{}: the broker closes the connection at the first request, as a TLS listener \
                 does to a plaintext client; check security.protocol (SSL or SASL_SSL)",
                log_message.rsplit("]: ").next().unwrap_or(log_message)
            );
            if let Ok(mut r) = self.refused.lock() {
                r.get_or_insert(text);
            }
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        let code = error.rdkafka_error_code();
        // Errors that another try cannot mend: credentials, certificates, the protocol.
        let refused = matches!(
            code,
            Some(RDKafkaErrorCode::Authentication | RDKafkaErrorCode::SSL)
        ) || reason.contains("security.protocol")
            || reason.contains("SASL")
            || reason.contains("SSL handshake");
        let text = reason.to_string();
        if refused && let Ok(mut r) = self.refused.lock() {
            r.get_or_insert(text.clone());
        }
        if let Ok(mut l) = self.last.lock() {
            *l = Some(text);
        }
    }
}

impl rdkafka::producer::ProducerContext for ProbeContext {
    type DeliveryOpaque = ();
    fn delivery(&self, _: &rdkafka::message::DeliveryResult<'_>, _: Self::DeliveryOpaque) {}
}

/// Creates the missing topics through the admin API. Topics that already exist are left alone,
/// so a process started against a prepared cluster (or the embedded broker, which has no admin
/// API) needs no admin call.
async fn create_topics_admin(s: &KafkaSettings, names: &[String]) -> Result<()> {
    let probe = s.clone();
    tokio::task::spawn_blocking(move || probe.check_access(ACCESS_TIMEOUT))
        .await
        .context("checking Kafka access")??;
    let admin: AdminClient<DefaultClientContext> = s
        .base_config()
        .create()
        .context("creating Kafka admin client")?;
    // Ask per topic: the mock cluster answers an all-topics request with none.
    let mut missing = Vec::new();
    for name in names {
        let md = admin
            .inner()
            .fetch_metadata(Some(name), Duration::from_secs(30))
            .with_context(|| format!("reading metadata of {name} from {}", s.bootstrap))?;
        let exists = md
            .topics()
            .iter()
            .any(|t| t.name() == name && t.error().is_none() && !t.partitions().is_empty());
        if !exists {
            missing.push(NewTopic::new(
                name,
                s.partitions,
                TopicReplication::Fixed(s.replication),
            ));
        }
    }
    if missing.is_empty() {
        return Ok(());
    }
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let results = admin
        .create_topics(&missing, &opts)
        .await
        .context("creating topics")?;
    for r in results {
        match r {
            Ok(name) => tracing::info!(topic = %name, partitions = s.partitions, "topic created"),
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((name, code)) => bail!("creating topic {name}: {code}"),
        }
    }
    Ok(())
}

/// One record to produce. Topic and key are shared text: a stage's records of one topic, or of
/// one series, point to the same text instead of each owning a copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutRecord {
    pub topic: Arc<str>,
    pub key: Arc<str>,
    pub payload: Vec<u8>,
}

/// Produces records and waits until every one is acknowledged by the brokers.
#[derive(Clone)]
pub struct Publisher {
    producer: FutureProducer,
}

impl std::fmt::Debug for Publisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Publisher")
    }
}

impl Publisher {
    pub fn new(settings: &KafkaSettings) -> Result<Self> {
        Ok(Self {
            producer: settings.producer()?,
        })
    }

    /// Enqueues all records, then awaits every delivery. Returns the first failure; on success
    /// every record is durably written (acks=all).
    pub async fn publish_all(&self, records: &[OutRecord]) -> Result<()> {
        let mut pending: VecDeque<DeliveryFuture> = VecDeque::with_capacity(records.len());
        for r in records {
            loop {
                let rec = FutureRecord::to(&r.topic)
                    .key(r.key.as_bytes())
                    .payload(&r.payload);
                match self.producer.send_result(rec) {
                    Ok(fut) => {
                        pending.push_back(fut);
                        break;
                    }
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                        // Local queue full: wait for the oldest delivery to make room.
                        match pending.pop_front() {
                            Some(fut) => await_delivery(fut).await?,
                            None => tokio::time::sleep(Duration::from_millis(5)).await,
                        }
                    }
                    Err((e, _)) => bail!("enqueueing record for {}: {e}", r.topic),
                }
            }
        }
        for fut in pending {
            await_delivery(fut).await?;
        }
        Ok(())
    }

    /// Waits for outstanding deliveries (used at shutdown).
    pub fn flush(&self, timeout: Duration) {
        let _ = rdkafka::producer::Producer::flush(&self.producer, timeout);
    }
}

async fn await_delivery(fut: DeliveryFuture) -> Result<()> {
    match fut.await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err((e, m))) => bail!("delivery to {} failed: {e}", rdkafka::Message::topic(&m)),
        Err(_) => bail!("producer dropped before delivery"),
    }
}

/// A partition's low and high offsets. A partition without a leader yet (a topic made a moment
/// ago, a broker restarting) answers "not leader" or "leader not available" for a while: that
/// is retried every 100 ms until `timeout`, then returned.
pub fn watermarks(
    consumer: &rdkafka::consumer::BaseConsumer,
    topic: &str,
    partition: i32,
    timeout: Duration,
) -> rdkafka::error::KafkaResult<(i64, i64)> {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match rdkafka::consumer::Consumer::fetch_watermarks(consumer, topic, partition, left) {
            Err(e) if leaderless(&e) && left > LEADER_RETRY => std::thread::sleep(LEADER_RETRY),
            other => return other,
        }
    }
}

/// Pause between tries of a leaderless partition.
const LEADER_RETRY: Duration = Duration::from_millis(100);

/// Whether `e` says the partition has no leader to answer yet.
fn leaderless(e: &rdkafka::error::KafkaError) -> bool {
    matches!(
        e.rdkafka_error_code(),
        Some(
            rdkafka::error::RDKafkaErrorCode::NotLeaderForPartition
                | rdkafka::error::RDKafkaErrorCode::LeaderNotAvailable
                | rdkafka::error::RDKafkaErrorCode::UnknownTopicOrPartition
        )
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_missing_leader_is_waited_for() {
        for code in [
            rdkafka::error::RDKafkaErrorCode::NotLeaderForPartition,
            rdkafka::error::RDKafkaErrorCode::LeaderNotAvailable,
            rdkafka::error::RDKafkaErrorCode::UnknownTopicOrPartition,
        ] {
            assert!(
                leaderless(&rdkafka::error::KafkaError::MetadataFetch(code)),
                "{code:?}"
            );
        }
        for code in [
            rdkafka::error::RDKafkaErrorCode::TopicAuthorizationFailed,
            rdkafka::error::RDKafkaErrorCode::SaslAuthenticationFailed,
            rdkafka::error::RDKafkaErrorCode::BrokerTransportFailure,
        ] {
            assert!(
                !leaderless(&rdkafka::error::KafkaError::MetadataFetch(code)),
                "{code:?}"
            );
        }
    }
}
