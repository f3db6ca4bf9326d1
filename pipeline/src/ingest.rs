//! The ingest session loop: connect → subscribe → stream frames → publish ticks (keyed
//! `EXCHANGE:BASE-QUOTE`, acknowledged before more frames are read) → on error, reconnect with
//! exponential backoff and full jitter that resets after a healthy period. Undecodable frames go
//! to the dead-letter topic with the reason.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use futures_util::{SinkExt as _, StreamExt as _};
use tokio_tungstenite::tungstenite::Message;

use crate::bus::{OutRecord, Publisher};
use crate::codec::{self, Message as _, Topics};
use crate::connectors::{Connector, Decoded};
use crate::deadletter::DeadLetter;
use crate::shutdown::Shutdown;
use crate::simulator::Rng;
use crate::telemetry;

/// One feed: an exchange connection for a set of symbols.
#[derive(Debug, Clone)]
pub struct FeedOptions {
    pub url: String,
    pub symbols: Vec<String>,
    /// Ticks published per batch at most.
    pub max_batch: usize,
    /// No frame for this long → reconnect.
    pub stale_after: Duration,
    pub backoff_base: Duration,
    pub backoff_cap: Duration,
    /// A session that lasted this long resets the backoff.
    pub healthy_after: Duration,
}

impl FeedOptions {
    pub fn new(url: impl Into<String>, symbols: Vec<String>) -> Self {
        Self {
            url: url.into(),
            symbols,
            max_batch: 2_000,
            stale_after: Duration::from_secs(30),
            backoff_base: Duration::from_millis(250),
            backoff_cap: Duration::from_secs(30),
            healthy_after: Duration::from_secs(60),
        }
    }
}

/// Runs a feed until shutdown, reconnecting on errors.
pub async fn run_feed(
    connector: Arc<dyn Connector>,
    opts: FeedOptions,
    publisher: Publisher,
    topics: Topics,
    mut shutdown: Shutdown,
) -> Result<()> {
    let exchange = connector.id();
    let mut rng = Rng::new(crate::now_ms() as u64);
    let mut attempt = 0u32;
    while !shutdown.is_fired() {
        let started = tokio::time::Instant::now();
        let result = session(&*connector, &opts, &publisher, &topics, shutdown.clone()).await;
        if shutdown.is_fired() {
            break;
        }
        if started.elapsed() >= opts.healthy_after {
            attempt = 0;
        }
        let delay = full_jitter(&mut rng, opts.backoff_base, opts.backoff_cap, attempt);
        attempt = attempt.saturating_add(1);
        telemetry::FEED_RECONNECTS
            .with_label_values(&[exchange])
            .inc();
        match result {
            Ok(()) => tracing::warn!(exchange, ?delay, "feed closed by peer; reconnecting"),
            Err(e) => {
                tracing::warn!(exchange, ?delay, error = %format!("{e:#}"), "feed failed; reconnecting")
            }
        }
        tokio::select! {
            _ = shutdown.wait() => break,
            _ = tokio::time::sleep(delay) => {}
        }
    }
    publisher.flush(Duration::from_secs(10));
    Ok(())
}

/// Exponential backoff with full jitter: uniform in [0, min(cap, base × 2^attempt)].
pub fn full_jitter(rng: &mut Rng, base: Duration, cap: Duration, attempt: u32) -> Duration {
    let ceiling = base.saturating_mul(1u32 << attempt.min(20)).min(cap);
    ceiling.mul_f64(rng.unit())
}

async fn session(
    connector: &dyn Connector,
    opts: &FeedOptions,
    publisher: &Publisher,
    topics: &Topics,
    mut shutdown: Shutdown,
) -> Result<()> {
    let exchange = connector.id();
    let (ws, _) = tokio::time::timeout(
        Duration::from_secs(10),
        tokio_tungstenite::connect_async(&opts.url),
    )
    .await
    .with_context(|| format!("connecting to {} timed out", opts.url))?
    .with_context(|| format!("connecting to {}", opts.url))?;
    let (mut tx, mut rx) = ws.split();
    for msg in connector.subscribe(&opts.symbols) {
        tx.send(Message::text(msg))
            .await
            .context("sending subscription")?;
    }
    tracing::info!(exchange, url = %opts.url, symbols = ?opts.symbols, "feed connected");
    let (ticks_topic, dead_topic) = (topics.ticks(), topics.deadletter());
    let mut frame_no = 0i64;
    let mut ticks = Vec::new();
    let mut records = Vec::new();
    loop {
        let msg = tokio::select! {
            _ = shutdown.wait() => return Ok(()),
            m = tokio::time::timeout(opts.stale_after, rx.next()) => match m {
                Err(_) => bail!("no frame for {:?}", opts.stale_after),
                Ok(None) => return Ok(()),
                Ok(Some(m)) => m.context("reading frame")?,
            },
        };
        // Drain whatever else is already buffered, up to the batch size, before publishing.
        let mut pending = vec![msg];
        while pending.len() < opts.max_batch {
            match futures_util::FutureExt::now_or_never(rx.next()) {
                Some(Some(Ok(m))) => pending.push(m),
                _ => break,
            }
        }
        let received = crate::now_ms();
        for msg in pending {
            let text = match msg {
                Message::Text(t) => t,
                Message::Ping(p) => {
                    tx.send(Message::Pong(p)).await?;
                    continue;
                }
                Message::Close(_) => return Ok(()),
                _ => continue,
            };
            frame_no += 1;
            telemetry::FEED_FRAMES.with_label_values(&[exchange]).inc();
            ticks.clear();
            match connector.decode(&text, received, &mut ticks) {
                Ok(Decoded::Trades(_)) => records.extend(ticks.drain(..).map(|t| OutRecord {
                    topic: ticks_topic.clone(),
                    key: t.key(),
                    payload: codec::encode(&t),
                })),
                Ok(Decoded::Ack | Decoded::Skipped(_)) => {}
                Ok(Decoded::Reconnect) => return Ok(()),
                Err(e) => {
                    telemetry::FEED_ERRORS.with_label_values(&[exchange]).inc();
                    let dl = DeadLetter::new(
                        "ingest",
                        exchange,
                        -1,
                        frame_no,
                        e.to_string(),
                        text.as_bytes(),
                    );
                    records.push(dl.into_record(&dead_topic));
                }
            }
        }
        if !records.is_empty() {
            let n = records.iter().filter(|r| r.topic == ticks_topic).count();
            publisher.publish_all(&records).await?;
            telemetry::FEED_TRADES
                .with_label_values(&[exchange])
                .inc_by(n as u64);
            records.clear();
        }
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
}
