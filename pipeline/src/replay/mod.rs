//! `tickcast replay`: a local websocket server that speaks Binance's trade-stream protocol
//! (`/ws` + `SUBSCRIBE`, or `/stream?streams=a@trade/b@trade`), fed by the seeded
//! [`Simulator`]. Every connection replays the same deterministic sequence from the start.
//!
//! Pacing: with `live`, trades are held until their event time is reached on the wall clock
//! (history before now streams at full speed); otherwise `rate` trades per second, 0 = no limit.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context as _, Result};
use futures_util::{SinkExt as _, StreamExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};

use crate::connectors::binance::stream_symbol;

pub mod sims;
use crate::shutdown::Shutdown;
use crate::simulator::{SimConfig, SimTrade, Simulator};

/// What the replay exchange serves.
#[derive(Debug, Clone)]
pub struct ReplayOptions {
    pub sim: SimConfig,
    /// Stop after this many trades (all symbols); `None` = endless.
    pub total: Option<u64>,
    /// Trades per second when not `live`; 0 = as fast as the client reads.
    pub rate: f64,
    /// Pace by event time against the wall clock.
    pub live: bool,
}

/// A bound replay server; `run` serves until shutdown.
#[derive(Debug)]
pub struct ReplayServer {
    listener: TcpListener,
    opts: ReplayOptions,
}

impl ReplayServer {
    pub async fn bind(addr: &str, opts: ReplayOptions) -> Result<Self> {
        let listener = TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding {addr}"))?;
        Ok(Self { listener, opts })
    }

    pub fn local_addr(&self) -> Result<SocketAddr> {
        Ok(self.listener.local_addr()?)
    }

    /// The websocket URL clients connect to.
    pub fn url(&self) -> Result<String> {
        Ok(format!("ws://{}/ws", self.local_addr()?))
    }

    pub async fn run(self, mut shutdown: Shutdown) -> Result<()> {
        loop {
            let (stream, peer) = tokio::select! {
                _ = shutdown.wait() => return Ok(()),
                r = self.listener.accept() => r?,
            };
            let opts = self.opts.clone();
            let sd = shutdown.clone();
            tokio::spawn(async move {
                if let Err(e) = serve(stream, opts, sd).await {
                    tracing::debug!(%peer, error = %e, "replay connection ended");
                }
            });
        }
    }
}

/// The `trade` event Binance sends for one simulated trade.
pub fn binance_frame(t: &SimTrade, event_ms: i64) -> String {
    sims::binance::trade_event(t, event_ms, false)
}

async fn serve(stream: TcpStream, opts: ReplayOptions, mut shutdown: Shutdown) -> Result<()> {
    let mut path = String::new();
    // The callback's error type is fixed by tungstenite; it never fails here.
    #[allow(clippy::result_large_err)]
    let callback = |req: &Request, resp: Response| {
        path = req.uri().to_string();
        Ok(resp)
    };
    let ws = tokio_tungstenite::accept_hdr_async(stream, callback).await?;
    let (mut tx, mut rx) = ws.split();
    let mut subscribed: HashSet<String> = streams_in_path(&path);
    let combined = path.starts_with("/stream");
    // Wait for a subscription unless the path named streams.
    while subscribed.is_empty() {
        let Some(msg) = rx.next().await else {
            return Ok(());
        };
        if let Message::Text(text) = msg?
            && let Some((id, streams)) = parse_subscribe(&text)
        {
            subscribed.extend(streams);
            tx.send(Message::text(format!(r#"{{"result":null,"id":{id}}}"#)))
                .await?;
        }
    }
    let mut sim = Simulator::new(&opts.sim);
    let mut sent = 0u64;
    let started = tokio::time::Instant::now();
    loop {
        if opts.total.is_some_and(|n| sent >= n) {
            break;
        }
        let Some(trade) = sim.next() else { break };
        sent += 1;
        let name = format!("{}@trade", stream_symbol(&trade.symbol));
        if !subscribed.contains(&name) {
            continue;
        }
        pace(&opts, &trade, sent, started).await;
        let body = binance_frame(&trade, trade.ts_ms + 1);
        let frame = if combined {
            format!(r#"{{"stream":"{name}","data":{body}}}"#)
        } else {
            body
        };
        tokio::select! {
            _ = shutdown.wait() => return Ok(()),
            r = tx.send(Message::text(frame)) => r?,
        }
    }
    // Everything sent: keep the connection open, answering pings, until the client leaves.
    loop {
        tokio::select! {
            _ = shutdown.wait() => return Ok(()),
            msg = rx.next() => match msg {
                Some(Ok(Message::Ping(p))) => tx.send(Message::Pong(p)).await?,
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return Ok(()),
                Some(Ok(_)) => {}
            },
        }
    }
}

async fn pace(opts: &ReplayOptions, trade: &SimTrade, sent: u64, started: tokio::time::Instant) {
    if opts.live {
        let now = crate::now_ms();
        if trade.ts_ms > now {
            tokio::time::sleep(Duration::from_millis((trade.ts_ms - now) as u64)).await;
        }
    } else if opts.rate > 0.0 {
        let due = started + Duration::from_secs_f64(sent as f64 / opts.rate);
        tokio::time::sleep_until(due).await;
    }
}

/// `/stream?streams=btcusdt@trade/ethusdt@trade` → the stream names.
fn streams_in_path(path: &str) -> HashSet<String> {
    path.split_once("streams=")
        .map(|(_, s)| {
            s.split('&')
                .next()
                .unwrap_or("")
                .split('/')
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// `{"method":"SUBSCRIBE","params":[…],"id":N}` → (N, params).
fn parse_subscribe(text: &str) -> Option<(i64, Vec<String>)> {
    let v: serde_json::Value = serde_json::from_str(text).ok()?;
    if v.get("method")?.as_str()? != "SUBSCRIBE" {
        return None;
    }
    let id = v.get("id")?.as_i64()?;
    let params = v
        .get("params")?
        .as_array()?
        .iter()
        .filter_map(|p| p.as_str().map(str::to_string))
        .collect();
    Some((id, params))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subscriptions_parse() {
        assert_eq!(
            parse_subscribe(r#"{"method":"SUBSCRIBE","params":["btcusdt@trade"],"id":3}"#),
            Some((3, vec!["btcusdt@trade".to_string()]))
        );
        assert_eq!(
            parse_subscribe(r#"{"method":"LIST_SUBSCRIPTIONS","id":3}"#),
            None
        );
        let s = streams_in_path("/stream?streams=btcusdt@trade/ethusdt@trade");
        assert!(s.contains("btcusdt@trade") && s.contains("ethusdt@trade") && s.len() == 2);
    }
}
