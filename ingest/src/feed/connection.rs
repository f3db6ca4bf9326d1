//! One websocket connection of a feed: connect (with a timeout) → subscribe → confirm the acks
//! (with a timeout) → stream frames, decoded in batches, to the feed core over a bounded
//! channel; keep the connection alive per the exchange's rule; give up when the feed goes
//! quiet for too long. The feed core owns de-duplication, gaps and publishing.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, Result, anyhow, bail};
use futures_util::{SinkExt as _, StreamExt as _};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

use crate::connectors::{Connector, Decoded, FrameError, Keepalive};
use tickcast_core::domain::Tick;
use tickcast_core::shutdown::Shutdown;
use tickcast_core::telemetry;

/// Settings of one connection.
#[derive(Debug, Clone)]
pub struct ConnSettings {
    pub url: String,
    pub symbols: Vec<String>,
    pub connect_timeout: Duration,
    pub ack_timeout: Duration,
    pub stale_after: Duration,
    /// Frames decoded per batch at most.
    pub max_batch: usize,
}

/// A frame that could not be decoded.
#[derive(Debug, Clone)]
pub struct BadFrame {
    pub frame_no: i64,
    pub reason: String,
    pub text: String,
}

/// What a connection tells the feed core.
#[derive(Debug)]
pub enum Event {
    /// Every expected ack arrived: the connection is live.
    Subscribed { conn: u64 },
    /// Decoded trades and undecodable frames, in arrival order per kind.
    Batch {
        conn: u64,
        ticks: Vec<Tick>,
        bad: Vec<BadFrame>,
    },
    /// The connection ended (`Ok` when asked to stop, closed by the peer, or told to
    /// reconnect by the exchange).
    Ended { conn: u64, result: Result<String> },
}

/// Runs one connection until it fails, the peer closes it, or `stop` fires; always ends with
/// an [`Event::Ended`].
pub async fn run(
    conn: u64,
    connector: Arc<dyn Connector>,
    cfg: ConnSettings,
    events: mpsc::Sender<Event>,
    stop: Shutdown,
) {
    let name = connector.info().name;
    telemetry::FEED_CONNECTIONS.with_label_values(&[name]).inc();
    let result = stream(conn, &*connector, &cfg, &events, stop).await;
    telemetry::FEED_CONNECTIONS.with_label_values(&[name]).dec();
    let _ = events.send(Event::Ended { conn, result }).await;
}

async fn stream(
    conn: u64,
    connector: &dyn Connector,
    cfg: &ConnSettings,
    events: &mpsc::Sender<Event>,
    mut stop: Shutdown,
) -> Result<String> {
    let name = connector.info().name;
    let (ws, _) = tokio::time::timeout(
        cfg.connect_timeout,
        tokio_tungstenite::connect_async(cfg.url.as_str()),
    )
    .await
    .map_err(|_| {
        anyhow!(
            "connecting to {} timed out after {:?}",
            cfg.url,
            cfg.connect_timeout
        )
    })?
    .with_context(|| format!("connecting to {}", cfg.url))?;
    let (mut tx, mut rx) = ws.split();
    for msg in connector.subscribe(&cfg.symbols) {
        tx.send(Message::text(msg))
            .await
            .context("sending subscription")?;
    }
    let expected = connector.expected_acks(&cfg.symbols);
    let mut acks = 0usize;
    if expected == 0 {
        send(events, Event::Subscribed { conn }).await?;
    }
    tracing::info!(feed = name, conn, url = %cfg.url, symbols = cfg.symbols.len(), "connected");
    let ack_deadline = tokio::time::Instant::now() + cfg.ack_timeout;
    let (ping_every, ping) = match connector.info().keepalive {
        Keepalive::ServerPings => (Duration::from_secs(3600), None),
        Keepalive::ClientText { text, every } => (every, Some(Message::text(text))),
        Keepalive::ClientPing { every } => (every, Some(Message::Ping(Vec::new().into()))),
    };
    let mut keepalive =
        tokio::time::interval_at(tokio::time::Instant::now() + ping_every, ping_every);
    let mut frame_no = 0i64;
    loop {
        let first = tokio::select! {
            _ = stop.wait() => {
                let _ = tx.send(Message::Close(None)).await;
                return Ok("stopped".into());
            }
            _ = keepalive.tick() => {
                if let Some(p) = &ping {
                    tx.send(p.clone()).await.context("sending keepalive")?;
                }
                continue;
            }
            _ = tokio::time::sleep_until(ack_deadline), if acks < expected => {
                bail!("subscription not acknowledged within {:?} ({acks} of {expected} acks)", cfg.ack_timeout);
            }
            m = tokio::time::timeout(cfg.stale_after, rx.next()) => match m {
                Err(_) => bail!("no frame for {:?}", cfg.stale_after),
                Ok(None) => return Ok("closed by the exchange".into()),
                Ok(Some(m)) => m.context("reading frame")?,
            },
        };
        // Drain whatever else is already buffered, up to the batch size.
        let mut pending = vec![first];
        while pending.len() < cfg.max_batch {
            match futures_util::FutureExt::now_or_never(rx.next()) {
                Some(Some(Ok(m))) => pending.push(m),
                _ => break,
            }
        }
        let received = tickcast_core::now_ms();
        let mut ticks = Vec::new();
        let mut bad = Vec::new();
        let mut reconnect = false;
        let mut rejected = None;
        let acks_before = acks;
        for msg in pending {
            let text = match msg {
                Message::Text(t) => t,
                Message::Ping(p) => {
                    tx.send(Message::Pong(p)).await.context("sending pong")?;
                    continue;
                }
                Message::Close(_) => {
                    reconnect = true;
                    break;
                }
                _ => continue,
            };
            frame_no += 1;
            telemetry::FEED_FRAMES.with_label_values(&[name]).inc();
            match connector.decode(&text, received, &mut ticks) {
                Ok(Decoded::Trades(_) | Decoded::Skipped(_)) => {}
                Ok(Decoded::Ack) => acks += 1,
                Ok(Decoded::Reconnect) => reconnect = true,
                Err(e) => {
                    if acks < expected && matches!(e, FrameError::Exchange(_)) {
                        rejected = Some(e.to_string());
                    }
                    bad.push(BadFrame {
                        frame_no,
                        reason: e.to_string(),
                        text: text.to_string(),
                    });
                }
            }
        }
        if acks_before < expected && acks >= expected {
            send(events, Event::Subscribed { conn }).await?;
        }
        if !ticks.is_empty() || !bad.is_empty() {
            send(events, Event::Batch { conn, ticks, bad }).await?;
        }
        if let Some(why) = rejected {
            bail!("subscription to {:?} rejected: {why}", cfg.symbols);
        }
        if reconnect {
            return Ok("the exchange closed the connection or asked for a reconnect".into());
        }
    }
}

async fn send(events: &mpsc::Sender<Event>, e: Event) -> Result<()> {
    events
        .send(e)
        .await
        .map_err(|_| anyhow!("feed core is gone"))
}
