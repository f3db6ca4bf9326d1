//! Ingest: exchange websocket feeds → `tickcast.ticks.v1`, nothing lost and nothing twice.
//!
//! A feed is one exchange and a set of symbols (more symbols than one connection may carry
//! become several feeds, see [`run_ingest`]). Its core ([`run_feed`]) owns:
//! - the connection(s) — [`connection`]: connect, subscribe, confirm acks, keepalive,
//!   stale-feed watchdog; reconnection with exponential backoff and full jitter that resets
//!   after a healthy period; make-before-break rotation before a known connection cut (Binance:
//!   24 h), the old connection kept until the new one is subscribed, plus an overlap;
//! - de-duplication by trade id and gap detection — [`tracker`];
//! - gap filling from the exchange's REST trades endpoint — [`backfill`]: gaps are filled after
//!   a short grace period (the other connection may still deliver them); after a reconnect,
//!   symbols that have been quiet since are caught up from their last id; a symbol's live
//!   trades after a gap are held until it is filled or given up, so each symbol's trades reach
//!   the topic in id order;
//! - publishing: ticks keyed `EXCHANGE:BASE-QUOTE`, acknowledged by Kafka before more frames
//!   are taken; undecodable frames go to the dead-letter topic with the reason.

pub mod backfill;
pub mod connection;
mod gaps;
pub mod resume;
pub mod tracker;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::connectors::Connector;
use backfill::RestClient;
use connection::{BadFrame, ConnSettings, Event};
use tickcast_core::bus::{OutRecord, Publisher};
use tickcast_core::codec::{self, Message as _, Topics};
use tickcast_core::deadletter::DeadLetter;
use tickcast_core::domain::Tick;
use tickcast_core::rng::Rng;
use tickcast_core::shutdown::{self, Shutdown, ShutdownTrigger};
use tickcast_core::telemetry::{self, LogLimiter};
use tracker::{Admit, Tracker};

/// Backfill attempts per gap before its remaining trades are counted as unfilled.
const GAP_ATTEMPTS: u32 = 3;

/// Waiting batches merged into one publish: at most this many times `max_batch` ticks.
const MERGE_BATCHES: usize = 16;

/// One feed: an exchange connection for a set of symbols.
#[derive(Debug, Clone)]
pub struct FeedOptions {
    /// Websocket URL.
    pub url: String,
    /// REST base URL for backfill; `None`: the connector's own for its default websocket URL,
    /// else `http(s)://` + the websocket URL's host (the replay exchange serves both).
    pub rest_url: Option<String>,
    pub symbols: Vec<String>,
    /// Frames decoded per batch at most.
    pub max_batch: usize,
    pub connect_timeout: Duration,
    pub ack_timeout: Duration,
    /// No frame for this long → reconnect.
    pub stale_after: Duration,
    pub backoff_base: Duration,
    pub backoff_cap: Duration,
    /// A connection that lasted this long resets the backoff.
    pub healthy_after: Duration,
    /// Rotate connections after this long; `None`: the exchange's known limit, if any.
    pub max_connection_age: Option<Duration>,
    /// Open the successor this long before the age limit (at most half the age).
    pub rotate_margin: Duration,
    /// Keep the old connection this long after its successor is subscribed.
    pub overlap: Duration,
    /// Wait this long before filling a gap (a lagging connection may still deliver it).
    pub gap_grace: Duration,
    /// Fill gaps from REST where the exchange allows it.
    pub backfill: bool,
    /// Gaps larger than this many trades are clipped to their most recent part.
    pub max_gap: u64,
    /// Recent trade ids remembered per symbol for de-duplication (non-sequential exchanges).
    pub dedupe_window: usize,
    /// Symbols per connection at most; `None`: the exchange's limit.
    pub max_symbols_per_connection: Option<usize>,
    /// Ticks decoded but not yet taken for publishing, at most (about 300 bytes each): when Kafka
    /// is away, the connections stop reading the feed once this many wait.
    pub max_buffered_ticks: usize,
    /// How far a trade's time may lie from its receive time; the others are dead-lettered.
    pub event_window: tickcast_core::domain::EventWindow,
    /// The last trade per symbol published before this process started ([`resume`]): the feed
    /// goes on from there, backfilling what happened while it was down.
    pub resume_from: HashMap<String, resume::LastTrade>,
}

impl FeedOptions {
    pub fn new(url: impl Into<String>, symbols: Vec<String>) -> Self {
        Self {
            url: url.into(),
            rest_url: None,
            symbols,
            max_batch: 2_000,
            connect_timeout: Duration::from_secs(10),
            ack_timeout: Duration::from_secs(10),
            stale_after: Duration::from_secs(30),
            backoff_base: Duration::from_millis(250),
            backoff_cap: Duration::from_secs(30),
            healthy_after: Duration::from_secs(60),
            max_connection_age: None,
            rotate_margin: Duration::from_secs(600),
            overlap: Duration::from_secs(2),
            gap_grace: Duration::from_secs(1),
            backfill: true,
            max_gap: 100_000,
            dedupe_window: 100_000,
            max_symbols_per_connection: None,
            max_buffered_ticks: 100_000,
            event_window: tickcast_core::domain::EventWindow::default(),
            resume_from: HashMap::new(),
        }
    }

    /// The REST base URL backfills use.
    pub fn rest_base(&self, connector: &dyn Connector) -> String {
        if let Some(r) = &self.rest_url {
            return r.clone();
        }
        let info = connector.info();
        if self.url == info.ws_url {
            return info.rest_url.to_string();
        }
        let (scheme, rest) = match self.url.split_once("://") {
            Some(("ws", rest)) => ("http", rest),
            Some((_, rest)) => ("https", rest),
            None => ("https", self.url.as_str()),
        };
        let host = rest.split(['/', '?']).next().unwrap_or(rest);
        format!("{scheme}://{host}")
    }
}

/// Runs every symbol of `opts` for one exchange: one feed per `max_symbols_per_connection`
/// symbols, all until shutdown. Fails when any feed fails (Kafka unreachable).
pub async fn run_ingest(
    connector: Arc<dyn Connector>,
    opts: FeedOptions,
    publisher: Publisher,
    topics: Topics,
    shutdown: Shutdown,
) -> Result<()> {
    let per = opts
        .max_symbols_per_connection
        .unwrap_or(connector.info().max_symbols_per_connection)
        .max(1);
    let mut feeds = tokio::task::JoinSet::new();
    for chunk in opts.symbols.chunks(per) {
        let o = FeedOptions {
            symbols: chunk.to_vec(),
            ..opts.clone()
        };
        feeds.spawn(run_feed(
            connector.clone(),
            o,
            publisher.clone(),
            topics.clone(),
            shutdown.clone(),
        ));
    }
    while let Some(r) = feeds.join_next().await {
        r??;
    }
    Ok(())
}

/// Runs one feed until shutdown.
pub async fn run_feed(
    connector: Arc<dyn Connector>,
    opts: FeedOptions,
    publisher: Publisher,
    topics: Topics,
    shutdown: Shutdown,
) -> Result<()> {
    let mut core = Core::new(connector, opts, publisher, topics)?;
    let result = core.run(shutdown).await;
    core.stop_all();
    core.publisher.flush(Duration::from_secs(10));
    result
}

/// Exponential backoff with full jitter: uniform in [0, min(cap, base × 2^attempt)].
pub fn full_jitter(rng: &mut Rng, base: Duration, cap: Duration, attempt: u32) -> Duration {
    let ceiling = base.saturating_mul(1u32 << attempt.min(20)).min(cap);
    ceiling.mul_f64(rng.unit())
}

#[derive(Debug)]
struct Conn {
    started: Instant,
    stop: ShutdownTrigger,
    retire_at: Option<Instant>,
}

#[derive(Debug)]
struct Core {
    connector: Arc<dyn Connector>,
    name: &'static str,
    opts: FeedOptions,
    publisher: Publisher,
    ticks_topic: Arc<str>,
    dead_topic: String,
    tracker: Tracker,
    rest: Option<RestClient>,
    tx: mpsc::Sender<Event>,
    rx: mpsc::Receiver<Event>,
    conns: HashMap<u64, Conn>,
    next_conn: u64,
    primary: Option<u64>,
    successor: Option<u64>,
    subscribed_once: bool,
    reconnect_at: Option<Instant>,
    rotate_after: Option<Instant>,
    catchup_at: Option<Instant>,
    max_age: Option<Duration>,
    attempt: u32,
    rng: Rng,
    bad_log: LogLimiter,
    /// Live trades held back per symbol while ids before them are missing, so that a backfill
    /// is published ahead of what came after it ([`Core::pass_in_order`]).
    held: HashMap<String, Vec<Tick>>,
    /// Ticks in `held`, over all symbols.
    held_count: usize,
    /// Fires at shutdown (set by [`Core::run`]), so a send waiting for Kafka gives up.
    stop: Shutdown,
}

impl Core {
    fn new(
        connector: Arc<dyn Connector>,
        opts: FeedOptions,
        publisher: Publisher,
        topics: Topics,
    ) -> Result<Self> {
        let info = connector.info();
        let rest = if opts.backfill && info.sequential_ids {
            Some(RestClient::new(&opts.rest_base(&*connector))?)
        } else {
            None
        };
        // Batches waiting for the core: with `max_batch` ticks each, at most
        // `max_buffered_ticks` are held while Kafka is slow or away.
        let (tx, rx) = mpsc::channel((opts.max_buffered_ticks / opts.max_batch.max(1)).max(2));
        let mut tracker = Tracker::new(info.sequential_ids, opts.dedupe_window, opts.max_gap);
        for symbol in &opts.symbols {
            if let Some(last) = opts.resume_from.get(symbol) {
                tracing::info!(feed = info.name, %symbol, last_id = last.id, last_ms = last.ts_ms, "resuming after the last trade on the ticks topic");
                tracker.seed(symbol, last.id, last.ts_ms);
            }
        }
        Ok(Self {
            name: info.name,
            tracker,
            max_age: opts.max_connection_age.or(info.max_connection_age),
            connector,
            opts,
            publisher,
            ticks_topic: topics.ticks().into(),
            dead_topic: topics.deadletter(),
            rest,
            tx,
            rx,
            conns: HashMap::new(),
            next_conn: 0,
            primary: None,
            successor: None,
            subscribed_once: false,
            reconnect_at: Some(Instant::now()),
            rotate_after: None,
            catchup_at: None,
            attempt: 0,
            rng: Rng::new(tickcast_core::now_ms() as u64),
            bad_log: LogLimiter::new(Duration::from_secs(10)),
            held: HashMap::new(),
            held_count: 0,
            stop: Shutdown::never(),
        })
    }

    async fn run(&mut self, mut shutdown: Shutdown) -> Result<()> {
        self.stop = shutdown.clone();
        loop {
            let deadline = self.next_deadline();
            tokio::select! {
                _ = shutdown.wait() => return Ok(()),
                ev = self.rx.recv() => match ev {
                    Some(ev) => self.on_event(ev).await?,
                    None => return Ok(()),
                },
                _ = sleep_until_opt(deadline) => self.on_timer().await?,
            }
        }
    }

    fn spawn_conn(&mut self) -> u64 {
        let id = self.next_conn;
        self.next_conn += 1;
        let (trigger, stop) = shutdown::channel();
        let cfg = ConnSettings {
            url: self.opts.url.clone(),
            symbols: self.opts.symbols.clone(),
            connect_timeout: self.opts.connect_timeout,
            ack_timeout: self.opts.ack_timeout,
            stale_after: self.opts.stale_after,
            max_batch: self.opts.max_batch,
        };
        tokio::spawn(connection::run(
            id,
            self.connector.clone(),
            cfg,
            self.tx.clone(),
            stop,
        ));
        self.conns.insert(
            id,
            Conn {
                started: Instant::now(),
                stop: trigger,
                retire_at: None,
            },
        );
        id
    }

    fn stop_all(&mut self) {
        for c in self.conns.values() {
            c.stop.fire();
        }
    }

    fn rotate_at(&self) -> Option<Instant> {
        let age = self.max_age?;
        let started = self.conns.get(&self.primary?)?.started;
        if self.successor.is_some() {
            return None;
        }
        let margin = self.opts.rotate_margin.min(age / 2);
        let at = started + (age - margin);
        Some(self.rotate_after.map_or(at, |r| at.max(r)))
    }

    fn gap_due_at(&self) -> Option<Instant> {
        let noticed = self.tracker.oldest_gap()?;
        Some(Instant::from_std(noticed) + self.opts.gap_grace)
    }

    fn next_deadline(&self) -> Option<Instant> {
        let retire = self.conns.values().filter_map(|c| c.retire_at).min();
        [
            self.reconnect_at,
            self.rotate_at(),
            retire,
            self.gap_due_at(),
            self.catchup_at,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    async fn on_timer(&mut self) -> Result<()> {
        let now = Instant::now();
        if self.reconnect_at.is_some_and(|t| t <= now) {
            self.reconnect_at = None;
            self.primary = Some(self.spawn_conn());
        }
        if self.rotate_at().is_some_and(|t| t <= now) {
            tracing::info!(
                feed = self.name,
                "rotating the connection before the exchange cuts it"
            );
            self.successor = Some(self.spawn_conn());
        }
        for c in self.conns.values_mut() {
            if c.retire_at.is_some_and(|t| t <= now) {
                c.retire_at = None;
                c.stop.fire();
            }
        }
        if self.gap_due_at().is_some_and(|t| t <= now) {
            self.fill_gaps(now).await?;
        }
        if self.catchup_at.is_some_and(|t| t <= now) {
            self.catchup_at = None;
            self.catch_up().await?;
        }
        Ok(())
    }

    async fn on_event(&mut self, ev: Event) -> Result<()> {
        match ev {
            Event::Batch {
                mut ticks, mut bad, ..
            } => {
                // Batches already waiting join this one, so one wait for Kafka's acks covers
                // them all (the connections keep decoding meanwhile). Order is kept: a control
                // event behind them is handled after they are published.
                let mut next = None;
                while ticks.len() < self.opts.max_batch.saturating_mul(MERGE_BATCHES) {
                    match self.rx.try_recv() {
                        Ok(Event::Batch {
                            ticks: t, bad: b, ..
                        }) => {
                            ticks.extend(t);
                            bad.extend(b);
                        }
                        Ok(other) => {
                            next = Some(other);
                            break;
                        }
                        Err(_) => break,
                    }
                }
                // Every tick meets the codec's checks before it is published (a connector
                // decodes what the exchange sent; a size past the maximum or a time in
                // microseconds is the exchange's, not a reason to stop): the others go to the
                // dead-letter topic with the reason.
                let mut valid = Vec::with_capacity(ticks.len());
                for t in ticks {
                    let problem = match t.check() {
                        Ok(()) => self
                            .opts
                            .event_window
                            .problem(t.ts_ms, t.ingested_ms)
                            .map(|why| format!("invalid field `ts_ms`: {why}")),
                        Err(e) => Some(e.to_string()),
                    };
                    match problem {
                        None => valid.push(t),
                        Some(why) => bad.push(BadFrame {
                            frame_no: -1,
                            reason: format!("invalid tick: {why}"),
                            text: String::from_utf8_lossy(&codec::encode(&t)).into_owned(),
                        }),
                    }
                }
                let ticks = valid;
                let received = tickcast_core::now_ms();
                let lag = telemetry::FEED_LAG.with_label_values(&[self.name]);
                for t in &ticks {
                    lag.observe((received - t.ts_ms).max(0) as f64 / 1000.0);
                }
                let now = std::time::Instant::now();
                let mut admitted = Vec::with_capacity(ticks.len());
                for t in ticks {
                    let a = self.admit(&t, now);
                    self.pass_in_order(t, a, &mut admitted);
                }
                admitted.extend(self.release_held());
                self.publish(admitted, bad).await?;
                if let Some(ev) = next {
                    self.on_control(ev);
                }
            }
            other => self.on_control(other),
        }
        Ok(())
    }

    fn on_control(&mut self, ev: Event) {
        match ev {
            Event::Subscribed { conn } => self.on_subscribed(conn),
            Event::Ended { conn, result } => self.on_ended(conn, result),
            Event::Batch { .. } => {}
        }
    }

    fn admit(&mut self, t: &Tick, now: std::time::Instant) -> Admit {
        let a = self.tracker.admit(&t.symbol, &t.trade_id, t.ts_ms, now);
        if a == Admit::Duplicate {
            telemetry::FEED_DUPLICATES
                .with_label_values(&[self.name])
                .inc();
        }
        a
    }

    fn on_subscribed(&mut self, conn: u64) {
        let now = Instant::now();
        if self.successor == Some(conn) {
            // Make-before-break: the new connection is live; retire the old after an overlap.
            if let Some(old) = self.primary.and_then(|p| self.conns.get_mut(&p)) {
                old.retire_at = Some(now + self.opts.overlap);
            }
            self.primary = self.successor.take();
            tracing::info!(feed = self.name, conn, "rotated to a new connection");
        } else if self.subscribed_once && self.rest.is_some() {
            // A reconnect: trades may have happened while we were away.
            self.tracker.reconnected();
            self.catchup_at = Some(now + self.opts.gap_grace);
        } else if !self.subscribed_once && self.rest.is_some() && !self.opts.resume_from.is_empty()
        {
            // A restart: symbols quiet since are caught up from their last trade.
            self.catchup_at = Some(now + self.opts.gap_grace);
        }
        self.subscribed_once = true;
    }

    fn on_ended(&mut self, conn: u64, result: Result<String>) {
        let Some(c) = self.conns.remove(&conn) else {
            return;
        };
        let name = self.name;
        match &result {
            Ok(why) => tracing::info!(feed = name, conn, why, "connection ended"),
            Err(e) => {
                tracing::warn!(feed = name, conn, error = %format!("{e:#}"), "connection failed")
            }
        }
        if self.successor == Some(conn) {
            // Rotation failed: keep the old connection, try again after a backoff.
            self.successor = None;
            let delay = self.backoff(c.started);
            self.rotate_after = Some(Instant::now() + delay);
            return;
        }
        if self.primary != Some(conn) {
            return; // a retired connection
        }
        self.primary = self.successor.take();
        if self.primary.is_none() {
            let delay = self.backoff(c.started);
            telemetry::FEED_RECONNECTS.with_label_values(&[name]).inc();
            tracing::info!(feed = name, ?delay, "reconnecting");
            self.reconnect_at = Some(Instant::now() + delay);
        }
    }

    fn backoff(&mut self, started: Instant) -> Duration {
        if started.elapsed() >= self.opts.healthy_after {
            self.attempt = 0;
        }
        let d = full_jitter(
            &mut self.rng,
            self.opts.backoff_base,
            self.opts.backoff_cap,
            self.attempt,
        );
        self.attempt = self.attempt.saturating_add(1);
        d
    }

    async fn publish(&mut self, ticks: Vec<Tick>, bad: Vec<BadFrame>) -> Result<()> {
        if ticks.is_empty() && bad.is_empty() {
            return Ok(());
        }
        let n = ticks.len() as u64;
        let mut records: Vec<OutRecord> = ticks
            .iter()
            .map(|t| OutRecord {
                topic: self.ticks_topic.clone(),
                key: t.key(),
                payload: codec::encode(t),
            })
            .collect();
        for b in bad {
            telemetry::FEED_ERRORS.with_label_values(&[self.name]).inc();
            if let Some(held) = self.bad_log.allow(std::time::Instant::now()) {
                tracing::warn!(feed = self.name, frame = b.frame_no, reason = %b.reason, held_back = held, "undecodable frame sent to the dead-letter topic");
            }
            let dl = DeadLetter::quiet(
                "ingest",
                self.name,
                -1,
                b.frame_no,
                b.reason,
                b.text.as_bytes(),
            );
            records.push(dl.into_record(&self.dead_topic));
        }
        if !self.send(&records).await? {
            tracing::warn!(
                feed = self.name,
                ticks = n,
                "stopped before Kafka acknowledged these ticks; the next start resumes from the ticks topic"
            );
            return Ok(());
        }
        telemetry::FEED_TRADES
            .with_label_values(&[self.name])
            .inc_by(n);
        Ok(())
    }
}

/// How long a send may still take once shutdown fired.
const STOP_GRACE: Duration = Duration::from_secs(5);
/// How often a send that waits for Kafka says so.
const WAITING_NOTE: Duration = Duration::from_secs(30);

impl Core {
    /// Sends records and waits for Kafka's acknowledgement, however long the broker is away
    /// (deliveries have no timeout): meanwhile no frame is taken, so the connections' bounded
    /// queues fill and they stop reading the feed; the trades missed are backfilled after the
    /// reconnect that follows. False: shutdown fired and the send did not finish within
    /// [`STOP_GRACE`].
    async fn send(&mut self, records: &[OutRecord]) -> Result<bool> {
        let mut stop = self.stop.clone();
        let send = self.publisher.publish_all(records);
        tokio::pin!(send);
        let started = Instant::now();
        let mut note = tokio::time::interval_at(started + WAITING_NOTE, WAITING_NOTE);
        loop {
            tokio::select! {
                r = &mut send => {
                    r?;
                    if started.elapsed() >= WAITING_NOTE {
                        tracing::info!(feed = self.name, waited_s = started.elapsed().as_secs(), "Kafka acknowledges again; the feed resumes");
                    }
                    return Ok(true);
                }
                _ = note.tick() => {
                    tracing::warn!(feed = self.name, waited_s = started.elapsed().as_secs(), records = records.len(), "Kafka has not acknowledged; the feed is paused until it does");
                }
                _ = stop.wait() => {
                    return Ok(tokio::time::timeout(STOP_GRACE, send).await.is_ok_and(|r| r.is_ok()));
                }
            }
        }
    }
}

async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_is_bounded_and_grows() {
        let mut rng = Rng::new(1);
        let (base, cap) = (Duration::from_millis(100), Duration::from_secs(5));
        for attempt in 0..40 {
            let d = full_jitter(&mut rng, base, cap, attempt);
            let ceiling = base.saturating_mul(1u32 << attempt.min(20)).min(cap);
            assert!(d <= ceiling, "attempt {attempt}: {d:?} > {ceiling:?}");
        }
        let late: Duration = (0..200).map(|_| full_jitter(&mut rng, base, cap, 10)).sum();
        assert!(
            late > Duration::from_secs(200),
            "mean of late attempts should approach cap/2"
        );
    }

    #[test]
    fn rest_base_follows_the_websocket_url() {
        let c = crate::exchanges::lookup("binance").expect("binance");
        let o = |url: &str| FeedOptions::new(url, vec![]).rest_base(&*c);
        assert_eq!(
            o("wss://stream.binance.com:9443/ws"),
            "https://api.binance.com"
        );
        assert_eq!(o("ws://127.0.0.1:9443/ws"), "http://127.0.0.1:9443");
        assert_eq!(o("wss://example.com/x?y"), "https://example.com");
        let mut explicit = FeedOptions::new("ws://a/ws", vec![]);
        explicit.rest_url = Some("http://b".into());
        assert_eq!(explicit.rest_base(&*c), "http://b");
    }
}
