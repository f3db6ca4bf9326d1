//! `GET /api/v1/stream`: the websocket that pushes the [`crate::live::Hub`]'s records to a
//! client, and the limits that keep clients from hurting the server.
//!
//! - At most `max_streams` open streams (503 naming the limit beyond); each also holds its
//!   connection's slot of the server's connection limit until it closes.
//! - Only pages of the server's own origin or an allowed one ([`crate::origin`], 403 otherwise).
//! - Client messages of at most [`MAX_INBOUND_BYTES`]: the stream only pushes, clients send
//!   pings, closes and the odd small text. A bigger one ends the stream with close code 1009
//!   as soon as its header is read, so it never takes memory.
//! - A ping every `ping_every`; a client silent (no pong, nothing at all) for [`IDLE_PINGS`]
//!   intervals, or that does not take a message within that time, is closed (1001).
//! - Shutdown closes every stream (1001).

use std::sync::Arc;
use std::time::Duration;

use axum::Extension;
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade, close_code};
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use tickcast_core::shutdown::Shutdown;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, broadcast};
use tokio::time::Instant;

use crate::AppState;
use crate::error::ApiError;
use crate::live::{Event, Filter, StreamParams};
use crate::origin::AllowList;
use crate::server::ConnSlot;

/// Largest message, and frame, a client may send. Bigger ones end the stream with close code
/// 1009 as soon as their header is read, so they never take memory.
pub const MAX_INBOUND_BYTES: usize = 4 * 1024;

/// The reason sent with close code 1009 (a close reason is at most 123 bytes).
const TOO_BIG: &str = "messages to the stream are limited to 4096 bytes";

/// Close reasons (code 1001).
const SHUTTING_DOWN: &str = "server shutting down";
const SILENT: &str = "nothing heard for three ping intervals";
const HUB_ENDED: &str = "the live stream ended";

/// The longest the server waits for a client's answer to its close frame.
const CLOSE_WAIT: Duration = Duration::from_secs(2);

/// Ping intervals a client may stay silent (no pong, no frame at all) before it is closed.
pub const IDLE_PINGS: u32 = 3;

/// How the stream treats its clients.
#[derive(Debug, Clone)]
pub struct StreamLimits {
    /// Most streams open at once; more are refused with 503.
    pub max_streams: usize,
    /// How often the server pings each client.
    pub ping_every: Duration,
    /// Origins allowed besides the server's own.
    pub origins: AllowList,
}

impl Default for StreamLimits {
    fn default() -> Self {
        Self {
            max_streams: 256,
            ping_every: Duration::from_secs(20),
            origins: AllowList::default(),
        }
    }
}

/// The limits and the open streams' slots.
#[derive(Debug, Clone)]
pub struct Streams {
    limits: StreamLimits,
    slots: Arc<Semaphore>,
}

impl Streams {
    pub fn new(limits: StreamLimits) -> Self {
        Self {
            slots: Arc::new(Semaphore::new(limits.max_streams)),
            limits,
        }
    }

    /// A slot for one more stream, or a 503 naming the limit.
    fn admit(&self) -> Result<OwnedSemaphorePermit, ApiError> {
        self.slots.clone().try_acquire_owned().map_err(|_| {
            crate::health::refused("streams");
            ApiError::Unavailable(format!(
                "the live stream is at its limit of {} open streams (--api-max-streams); \
                 try again shortly",
                self.limits.max_streams
            ))
        })
    }
}

/// `GET /api/v1/stream` — upgrades to a websocket of live records.
#[utoipa::path(
    get,
    path = "/api/v1/stream",
    tag = "stream",
    params(StreamParams),
    responses(
        (status = 101, description = "Switching to the websocket protocol; each text frame is `{\"kind\": \"tick\"|\"candle\"|\"forecast\"|\"alert\"|\"lagged\", \"data\": …}`. The server pings; a client silent for three ping intervals is closed (1001), a client message over 4 KiB closes the stream (1009)"),
        (status = 400, description = "Bad filter", body = crate::error::ErrorBody),
        (status = 403, description = "The page's `Origin` is neither the server's own nor an allowed one", body = crate::error::ErrorBody),
        (status = 503, description = "No live stream configured, or the open-stream limit reached", body = crate::error::ErrorBody),
    )
)]
pub async fn stream(
    State(state): State<AppState>,
    headers: HeaderMap,
    conn: Option<Extension<ConnSlot>>,
    q: Result<Query<StreamParams>, axum::extract::rejection::QueryRejection>,
    ws: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    let p = q
        .map(|Query(p)| p)
        .map_err(|e| crate::error::query_error(&e))?;
    let filter = Filter::parse(&p)?;
    state
        .streams
        .limits
        .origins
        .check(&headers)
        .inspect_err(|_| {
            crate::health::refused("origin");
        })?;
    let Some(hub) = state.live.clone() else {
        return Err(ApiError::Unavailable(
            "this API process has no live stream (it was started without a broker)".into(),
        ));
    };
    let ws = ws.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let pump = Pump {
        rx: hub.subscribe(),
        filter,
        ping_every: state.streams.limits.ping_every,
        shutdown: state.shutdown.clone(),
        _slots: (state.streams.admit()?, conn.map(|Extension(c)| c)),
    };
    Ok(ws
        .max_message_size(MAX_INBOUND_BYTES)
        .max_frame_size(MAX_INBOUND_BYTES)
        .on_upgrade(move |socket| pump.run(socket)))
}

/// One open stream: what it sends, and the slots it holds until it ends.
#[derive(Debug)]
struct Pump {
    rx: broadcast::Receiver<Arc<Event>>,
    filter: Filter,
    ping_every: Duration,
    shutdown: Option<Shutdown>,
    _slots: (OwnedSemaphorePermit, Option<ConnSlot>),
}

impl Pump {
    async fn run(mut self, mut socket: WebSocket) {
        let patience = self.ping_every * IDLE_PINGS;
        let Some(close) = self.pump(&mut socket, patience).await else {
            return;
        };
        // The closing handshake: send the reason, then read (and drop) what the client still
        // sends until its own close, for a little while. Closing the socket with its bytes
        // unread would reset the connection, and the client could lose the reason.
        if send(&mut socket, Message::Close(Some(close)), CLOSE_WAIT).await {
            let _ = tokio::time::timeout(CLOSE_WAIT, async {
                while let Some(Ok(m)) = socket.recv().await {
                    if matches!(m, Message::Close(_)) {
                        break;
                    }
                }
            })
            .await;
        }
    }

    /// Streams until the client leaves (`None`) or the server ends the stream (the close frame
    /// to send).
    async fn pump(&mut self, socket: &mut WebSocket, patience: Duration) -> Option<CloseFrame> {
        let hello = self.filter.hello().to_string();
        if !send(socket, Message::Text(hello.into()), patience).await {
            return None;
        }
        let mut ping = tokio::time::interval_at(Instant::now() + self.ping_every, self.ping_every);
        ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let silence = tokio::time::sleep(patience);
        tokio::pin!(silence);
        let mut shutdown = self.shutdown.clone();
        loop {
            // Shutdown first: it also ends the hub, and its reason is the one to give.
            let out = tokio::select! {
                biased;
                _ = fired(&mut shutdown) => return Some(close(close_code::AWAY, SHUTTING_DOWN)),
                _ = &mut silence => return Some(close(close_code::AWAY, SILENT)),
                _ = ping.tick() => Message::Ping(axum::body::Bytes::new()),
                incoming = socket.recv() => match incoming {
                    // Pongs, pings (answered by the protocol layer) and small texts all show
                    // the client is alive; a close or a broken connection ends the stream.
                    Some(Ok(Message::Close(_))) | None => return None,
                    Some(Ok(_)) => {
                        silence.as_mut().reset(Instant::now() + patience);
                        continue;
                    }
                    Some(Err(e)) => return read_failed(e),
                },
                ev = self.rx.recv() => match ev {
                    Ok(ev) if self.filter.accepts(&ev) => Message::Text(ev.text.clone()),
                    Ok(_) => continue,
                    Err(broadcast::error::RecvError::Lagged(n)) => Message::Text(
                        format!(r#"{{"kind":"lagged","data":{{"skipped":{n}}}}}"#).into(),
                    ),
                    Err(broadcast::error::RecvError::Closed) => {
                        return Some(close(close_code::AWAY, HUB_ENDED));
                    }
                },
            };
            if !send(socket, out, patience).await {
                return None;
            }
        }
    }
}

/// Sends one message; false when the client is gone or has not taken it within `patience`.
async fn send(socket: &mut WebSocket, msg: Message, patience: Duration) -> bool {
    matches!(
        tokio::time::timeout(patience, socket.send(msg)).await,
        Ok(Ok(()))
    )
}

/// Resolves when the server shuts down; never without a signal.
async fn fired(shutdown: &mut Option<Shutdown>) {
    match shutdown {
        Some(s) => s.wait().await,
        None => std::future::pending().await,
    }
}

fn close(code: u16, reason: &'static str) -> CloseFrame {
    CloseFrame {
        code,
        reason: Utf8Bytes::from_static(reason),
    }
}

/// A message over [`MAX_INBOUND_BYTES`] is answered with 1009; any other read error means the
/// connection is broken and nothing more can be sent.
fn read_failed(e: axum::Error) -> Option<CloseFrame> {
    let e = e.into_inner();
    match e.downcast_ref::<tungstenite::Error>() {
        Some(tungstenite::Error::Capacity(_)) => Some(close(close_code::SIZE, TOO_BIG)),
        _ => {
            tracing::debug!("live stream: reading from the client failed: {e}");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_1009_reason_states_the_limit() {
        assert!(TOO_BIG.ends_with(&format!(" {MAX_INBOUND_BYTES} bytes")));
    }
}
