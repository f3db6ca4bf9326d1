//! One websocket connection of the replay exchange: greeting, client requests (subscribe,
//! ping, …) handled by the exchange's [`ExchangeSim`], heartbeats, and the trades that happen
//! after the client subscribed, for its symbols, with faults applied.
//!
//! Like a real exchange, it keeps reading the client while it streams: a client that
//! subscribes one channel per frame (Bitstamp) gets each channel as soon as it asked, not once
//! the market ran dry. A frame counts as sent (in the [`SentLog`]) only once it was flushed to
//! the socket, and a dropped connection first reads what the client already sent: closing a
//! socket with unread input resets it, and the client would lose frames it had not read yet.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{Message, WebSocket};
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{FutureExt as _, SinkExt as _, StreamExt as _};

use super::faults::{FaultState, GARBAGE};
use super::market::{Entry, Market};
use super::sent::SentLog;
use super::sims::{ClientRequest, ExchangeSim};
use tickcast_core::shutdown::Shutdown;

/// Entries read from the market per batch (one flush per batch).
const BATCH: usize = 256;

/// Everything a connection shares with the server.
#[derive(Debug, Clone)]
pub struct Shared {
    pub sim: Arc<dyn ExchangeSim>,
    pub market: Arc<Market>,
    pub sent: SentLog,
    pub faults: super::faults::Faults,
    /// The market advances on demand (rate 0, not live).
    pub on_demand: bool,
    pub heartbeat_every: Duration,
    /// Whether the history is still to be handed to the first subscriber.
    pub history: Arc<std::sync::atomic::AtomicBool>,
}

impl Shared {
    /// Where a new subscriber starts reading: at 0 for the first one when the history is to be
    /// handed out, else at the market's end.
    fn start_cursor(&self) -> u64 {
        if self
            .history
            .swap(false, std::sync::atomic::Ordering::SeqCst)
        {
            0
        } else {
            self.market.len()
        }
    }
}

type Tx = SplitSink<WebSocket, Message>;
type Rx = SplitStream<WebSocket>;

/// Why the connection ended.
enum End {
    Closed,
    Dropped,
}

/// A frame fed to the socket, recorded in the [`SentLog`] once flushed.
enum Fed {
    Trade { symbol: String, id: String },
    Raw,
    Garbage,
    Poison(String),
}

pub async fn serve(socket: WebSocket, path: String, shared: Shared, shutdown: Shutdown) {
    shared.sent.connection();
    let (tx, rx) = socket.split();
    let mut conn = Conn {
        symbols: shared.sim.symbols_in_path(&path).into_iter().collect(),
        subscribed: false,
        cursor: 0,
        faults: FaultState::new(&shared.faults),
        stalled: false,
        fed: Vec::new(),
        path,
        shared,
        tx,
    };
    if !conn.symbols.is_empty() {
        conn.subscribed = true;
        conn.cursor = conn.shared.start_cursor();
    }
    let end = conn.run(rx, shutdown).await;
    tracing::debug!(
        cursor = conn.cursor,
        symbols = ?conn.symbols,
        market = conn.shared.market.len(),
        ended = match &end { Ok(End::Dropped) => "dropped", Ok(End::Closed) => "closed", Err(_) => "error" },
        "replay connection ended"
    );
    match end {
        Ok(End::Dropped) => {
            conn.shared.sent.dropped();
            conn.shared.market.advance_gap(conn.faults.gap_on_drop());
        }
        Ok(End::Closed) => {}
        Err(e) => tracing::debug!(error = %e, "replay connection ended"),
    }
}

struct Conn {
    shared: Shared,
    path: String,
    symbols: HashSet<String>,
    subscribed: bool,
    /// Next market position to send.
    cursor: u64,
    faults: FaultState,
    /// A stall just ended: the client is checked before more is sent.
    stalled: bool,
    /// Fed but not yet flushed.
    fed: Vec<Fed>,
    tx: Tx,
}

impl Conn {
    async fn run(&mut self, mut rx: Rx, mut shutdown: Shutdown) -> Result<End, axum::Error> {
        for g in self.shared.sim.greeting() {
            self.tx.feed(Message::text(g)).await?;
        }
        self.flush().await?;
        let heartbeat = self.shared.sim.heartbeat();
        let mut beat =
            tokio::time::interval(self.shared.heartbeat_every.max(Duration::from_millis(1)));
        beat.tick().await;
        let market = self.shared.market.clone();
        loop {
            let cursor = self.cursor;
            let subscribed = self.subscribed;
            let on_demand = self.shared.on_demand;
            let more = async {
                if on_demand && market.len() <= cursor {
                    market.advance(1);
                }
                market.wait_beyond(cursor).await;
            };
            // Biased: the client's frames (a close, above all) come before more trades.
            tokio::select! {
                biased;
                _ = shutdown.wait() => return Ok(End::Closed),
                msg = rx.next() => match msg {
                    Some(Ok(Message::Text(text))) => self.on_client_text(text.as_str()).await?,
                    Some(Ok(Message::Close(_))) | None => return Ok(End::Closed),
                    Some(Err(e)) => return Err(e),
                    // Pings are answered by the websocket layer.
                    Some(Ok(_)) => {}
                },
                _ = beat.tick(), if heartbeat.is_some() => {
                    if let Some(h) = &heartbeat {
                        self.tx.send(Message::text(h.clone())).await?;
                    }
                }
                _ = more, if subscribed => {
                    if let Some(end) = self.send_batch(&mut shutdown).await? {
                        if matches!(end, End::Dropped) {
                            read_what_arrived(&mut rx).await;
                        }
                        return Ok(end);
                    }
                }
            }
        }
    }

    async fn on_client_text(&mut self, text: &str) -> Result<(), axum::Error> {
        let replies = match self.shared.sim.on_client_text(text) {
            ClientRequest::Subscribe { symbols, replies } => {
                if !self.subscribed {
                    self.subscribed = true;
                    self.cursor = self.shared.start_cursor();
                }
                self.symbols.extend(symbols);
                replies
            }
            ClientRequest::Reply(r) | ClientRequest::Reject(r) => r,
            ClientRequest::Ignore => Vec::new(),
        };
        for r in replies {
            self.tx.feed(Message::text(r)).await?;
        }
        self.flush().await
    }

    /// Flushes the socket, then records what was fed as sent.
    async fn flush(&mut self) -> Result<(), axum::Error> {
        self.tx.flush().await?;
        for f in self.fed.drain(..) {
            match f {
                Fed::Trade { symbol, id } => self.shared.sent.trade(&symbol, id),
                Fed::Raw => self.shared.sent.raw_frame(),
                Fed::Garbage => self.shared.sent.garbage(),
                Fed::Poison(frame) => self.shared.sent.poison(frame),
            }
        }
        Ok(())
    }

    /// Sends what happened since `cursor`, with faults; `Some` when the connection ends.
    async fn send_batch(&mut self, shutdown: &mut Shutdown) -> Result<Option<End>, axum::Error> {
        let market = self.shared.market.clone();
        let mut budget = BATCH;
        while budget > 0 {
            let mut entries = market.read(self.cursor, budget);
            // On demand, the next trade happens as soon as this connection has sent the last
            // one; the batch is flushed once, at its end.
            if entries.is_empty() && self.shared.on_demand && market.advance(1) == 1 {
                entries = market.read(self.cursor, budget);
            }
            if entries.is_empty() {
                break;
            }
            budget = budget.saturating_sub(entries.len());
            if let Some(end) = self.send_entries(entries, shutdown).await? {
                return Ok(Some(end));
            }
            if std::mem::take(&mut self.stalled) {
                break;
            }
        }
        self.flush().await?;
        // On demand the market never makes this connection wait, so its task would never
        // give the runtime a turn: the client's frames would go unnoticed (tokio learns of
        // them from its I/O driver, run between tasks) until the market ran dry. Yield, so
        // the next turn of the loop sees what the client sent.
        tokio::task::yield_now().await;
        Ok(None)
    }

    async fn send_entries(
        &mut self,
        entries: Vec<Entry>,
        shutdown: &mut Shutdown,
    ) -> Result<Option<End>, axum::Error> {
        let market = self.shared.market.clone();
        for entry in entries {
            let at = self.cursor;
            self.cursor += 1;
            let (frame, trade) = match &entry {
                Entry::Trade { trade, event_ms } => {
                    if !self.symbols.contains(&trade.symbol) {
                        continue;
                    }
                    let f = self.shared.sim.trade_frame(trade, *event_ms, &self.path);
                    (f, Some(trade))
                }
                Entry::Frame(f) => (f.to_string(), None),
            };
            let last = market.is_last(at);
            if self.faults.skip(last) {
                continue;
            }
            let after = self.faults.after_sent(last);
            for _ in 0..1 + u8::from(after.duplicate) {
                self.tx.feed(Message::text(frame.clone())).await?;
                self.fed.push(match trade {
                    Some(t) => Fed::Trade {
                        symbol: t.symbol.clone(),
                        id: self.shared.sim.trade_id(t),
                    },
                    None => Fed::Raw,
                });
            }
            if after.garbage {
                self.tx.feed(Message::text(GARBAGE)).await?;
                self.fed.push(Fed::Garbage);
            }
            if after.poison
                && let Some(t) = trade
            {
                let n = self.shared.sent.next_poison();
                let bad = super::faults::poison(t, n);
                let frame = match &entry {
                    Entry::Trade { event_ms, .. } => {
                        self.shared.sim.trade_frame(&bad, *event_ms, &self.path)
                    }
                    Entry::Frame(_) => unreachable!("a trade entry"),
                };
                self.tx.feed(Message::text(frame.clone())).await?;
                self.fed.push(Fed::Poison(frame));
            }
            if let Some(stall) = after.stall {
                self.flush().await?;
                tokio::select! {
                    _ = shutdown.wait() => return Ok(Some(End::Closed)),
                    _ = tokio::time::sleep(stall) => {}
                }
                if !after.drop {
                    // Look at the client before sending more: it may have given up on us
                    // during the stall, and a real exchange would not send to a closed socket.
                    self.stalled = true;
                    return Ok(None);
                }
            }
            if after.drop {
                self.flush().await?;
                return Ok(Some(End::Dropped));
            }
        }
        Ok(None)
    }
}

/// Reads (and ignores) every client frame that already arrived, so that the socket closes
/// cleanly: closing it with unread input would reset it, and the client would lose the frames
/// it had not read yet.
async fn read_what_arrived(rx: &mut Rx) {
    // A turn of the runtime first, so that what arrived is known (see `send_batch`).
    tokio::task::yield_now().await;
    while let Some(Some(Ok(_))) = rx.next().now_or_never() {}
}
