//! `tickcast replay`: a local exchange simulator. One listener speaks any connector's protocol
//! through its [`sims::ExchangeSim`]: websocket upgrades on any path (the path and query may
//! subscribe, as Binance's `/stream?streams=` does), and plain `GET`s answered by the
//! exchange's REST trades endpoint for backfill.
//!
//! Layout:
//! - [`source`] — where trades come from: the seeded simulator, a trades CSV, raw frames.
//! - `market` — the one shared market: what has happened so far, and its pacing.
//! - [`faults`] — drops, gaps, stalls, duplicates, garbage and skipped trades.
//! - `conn`, `server` — one websocket connection; the HTTP router.
//! - [`sent`] — what was sent, the oracle for fault tests.
//! - [`sims`] — the `ExchangeSim` trait each exchange's server side implements (in its folder
//!   of [`crate::exchanges`]), and its helpers.
//!
//! A connection receives the trades that happen after it subscribed, for its symbols (like a
//! real exchange). Pacing: `rate` trades per second on the wall clock; with `live`, trades
//! happen when the event clock reaches their time (history before now at once); with neither,
//! on demand: the fastest subscribed connection sets the pace.

mod conn;
pub mod faults;
mod market;
pub mod sent;
mod server;
pub mod sims;
pub mod source;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, Result, anyhow};
use tokio::net::TcpListener;

pub use faults::Faults;
use market::Market;
pub use sent::SentLog;
pub use source::Source;

use crate::simulator::{SimConfig, SimTrade};
use tickcast_core::shutdown::Shutdown;

/// What the replay exchange serves and how.
#[derive(Debug, Clone)]
pub struct ReplayOptions {
    /// Connector name whose protocol is spoken (`binance`, `kraken`, …).
    pub exchange: String,
    pub source: Source,
    /// Stop after this many trades have happened (all symbols); `None` = the whole source.
    pub total: Option<u64>,
    /// Trades per second on the wall clock; 0 = as fast as clients read.
    pub rate: f64,
    /// Pace by event time against the wall clock.
    pub live: bool,
    /// With `live`: event-clock speed (2.0 = twice real time).
    pub speed: f64,
    /// With `live`: the event time the clock reads at start; `None` = now (so history before
    /// now happens at once). Set it to a recording's first trade time to replay it paced.
    pub live_from_ms: Option<i64>,
    /// How often the protocol's heartbeat (if it has one) is sent.
    pub heartbeat_every: Duration,
    pub faults: Faults,
    /// The first connection to subscribe is sent everything that happened before it (with
    /// `live`: the history before now); later ones start at the market's end, as usual. The
    /// demo uses it so a fresh start shows its history at once.
    pub history_to_first: bool,
}

impl ReplayOptions {
    /// Binance protocol, seeded simulator, on demand, endless, no faults.
    pub fn new(sim: SimConfig) -> Self {
        Self {
            exchange: "binance".into(),
            source: Source::Simulator(sim),
            total: None,
            rate: 0.0,
            live: false,
            speed: 1.0,
            live_from_ms: None,
            heartbeat_every: Duration::from_secs(5),
            faults: Faults::default(),
            history_to_first: false,
        }
    }
}

/// A bound replay server; `run` serves until shutdown.
#[derive(Debug)]
pub struct ReplayServer {
    listener: TcpListener,
    opts: ReplayOptions,
    sim: Arc<dyn sims::ExchangeSim>,
    market: Arc<Market>,
    sent: SentLog,
}

impl ReplayServer {
    /// Binds `addr` and opens the source (a CSV or frames file is read whole here).
    pub async fn bind(addr: &str, opts: ReplayOptions) -> Result<Self> {
        let sim: Arc<dyn sims::ExchangeSim> = crate::exchanges::sim(&opts.exchange)
            .map(Arc::from)
            .ok_or_else(|| anyhow!(crate::exchanges::unknown(&opts.exchange)))?;
        Self::bind_with(addr, opts, sim).await
    }

    /// Like [`bind`](Self::bind), speaking `sim`'s protocol instead of the one named by
    /// `opts.exchange` (which still picks the websocket path of [`url`](Self::url)).
    pub async fn bind_with(
        addr: &str,
        opts: ReplayOptions,
        sim: Arc<dyn sims::ExchangeSim>,
    ) -> Result<Self> {
        let market = Market::open(&opts.source, opts.total)?;
        let listener = TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding {addr}"))?;
        Ok(Self {
            listener,
            opts,
            sim,
            market,
            sent: SentLog::default(),
        })
    }

    pub fn local_addr(&self) -> Result<SocketAddr> {
        Ok(self.listener.local_addr()?)
    }

    /// The websocket URL clients connect to: the exchange's own path (`/ws` for Binance).
    pub fn url(&self) -> Result<String> {
        let path = crate::exchanges::connector(&self.opts.exchange)
            .map(|c| ws_path(c.info().ws_url).to_string())
            .unwrap_or_else(|| "/".into());
        Ok(format!("ws://{}{path}", self.local_addr()?))
    }

    /// The REST base URL (no trailing slash).
    pub fn rest_url(&self) -> Result<String> {
        Ok(format!("http://{}", self.local_addr()?))
    }

    /// What was sent on every connection (shared handle; stays valid after `run`).
    pub fn sent(&self) -> SentLog {
        self.sent.clone()
    }

    /// A handle on the market, to read what has happened while `run` owns the server.
    pub fn market(&self) -> MarketHandle {
        MarketHandle(self.market.clone())
    }

    /// Every trade that has happened so far, in order.
    pub fn happened(&self) -> Vec<SimTrade> {
        self.market.happened()
    }

    pub async fn run(self, shutdown: Shutdown) -> Result<()> {
        let o = &self.opts;
        if o.live {
            let from = o.live_from_ms.unwrap_or_else(tickcast_core::now_ms);
            tokio::spawn(
                self.market
                    .clone()
                    .run_live(from, o.speed, shutdown.clone()),
            );
        } else if o.rate > 0.0 {
            tokio::spawn(self.market.clone().run_at_rate(o.rate, shutdown.clone()));
        }
        let state = server::AppState {
            shared: conn::Shared {
                sim: self.sim.clone(),
                market: self.market.clone(),
                sent: self.sent.clone(),
                faults: o.faults.clone(),
                on_demand: !o.live && o.rate <= 0.0,
                heartbeat_every: o.heartbeat_every,
                history: std::sync::Arc::new(std::sync::atomic::AtomicBool::new(
                    o.history_to_first,
                )),
            },
            shutdown: shutdown.clone(),
        };
        let mut sd = shutdown;
        axum::serve(self.listener, server::router(state))
            .with_graceful_shutdown(async move { sd.wait().await })
            .await
            .context("replay server")
    }
}

/// A cloneable view of the market for tests and tools.
#[derive(Debug, Clone)]
pub struct MarketHandle(Arc<Market>);

impl MarketHandle {
    /// Every trade that has happened so far, in order.
    pub fn happened(&self) -> Vec<SimTrade> {
        self.0.happened()
    }
    /// How many items (trades or raw frames) have happened.
    pub fn len(&self) -> u64 {
        self.0.len()
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    /// No more trades will happen.
    pub fn exhausted(&self) -> bool {
        self.0.exhausted()
    }
}

/// `wss://host:9443/ws` → `/ws`; no path → `/`.
fn ws_path(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    rest.find('/').map_or("/", |i| &rest[i..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ws_paths_come_from_the_connectors_urls() {
        for (url, path) in [
            ("wss://stream.binance.com:9443/ws", "/ws"),
            ("wss://ws.okx.com:8443/ws/v5/public", "/ws/v5/public"),
            ("wss://ws.bitstamp.net", "/"),
        ] {
            assert_eq!(ws_path(url), path);
        }
    }
}
