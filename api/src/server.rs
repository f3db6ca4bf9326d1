//! The accept loop: what `axum::serve` does, plus what it cannot be told to do.
//!
//! - **Header-read timeout** ([`Limits::header_timeout`]): a client that sends its headers
//!   slowly, or nothing, is disconnected. hyper starts the same timer again when a kept-alive
//!   connection goes idle, so idle connections end after it too.
//! - **Connection limit** ([`Limits::max_connections`]): each served connection holds a slot;
//!   an upgraded websocket keeps its connection's slot until it closes. Without a free slot a
//!   connection is still accepted and answered `503` with a JSON body naming the limit, by one
//!   of [`SPARE_SLOTS`] short-lived handlers (a client that sends no request is closed after
//!   2 s). When those are busy too, nothing more is accepted: new connections wait in the
//!   kernel's backlog for a slot or a spare. So open sockets never exceed the limit plus
//!   [`SPARE_SLOTS`], every accepted client is served or told why not, and service resumes by
//!   itself as connections end.
//! - **Shutdown**: stop accepting, tell every connection to finish (hyper closes idle ones and
//!   answers in-flight requests with `Connection: close`), then drop every connection that has
//!   no request in flight and no answer left to write, slow-header clients among them, and
//!   give the rest at most [`SHUTDOWN_GRACE`]. `axum::serve` waited for every connection to
//!   close by itself.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::{self, HeaderValue, header};
use axum::response::{IntoResponse as _, Response};
use hyper::body::Incoming;
use hyper::server::conn::http1::Builder;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tickcast_core::shutdown::Shutdown;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;

use crate::error::ApiError;
use crate::{AppState, Limits, app, headers, health};

/// Over-limit connections being answered 503 at once; more wait in the kernel's backlog.
pub const SPARE_SLOTS: usize = 64;

/// The longest shutdown waits for in-flight requests (and their answers) to finish.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// The whole life of an over-limit connection: reading its request and writing the 503.
const REFUSAL_TIME: Duration = Duration::from_secs(2);

/// Serves the API on `listener` until `shutdown` fires, and the `/readyz` probe beside it.
pub async fn serve(
    listener: TcpListener,
    mut state: AppState,
    mut shutdown: Shutdown,
) -> anyhow::Result<()> {
    state.shutdown = Some(shutdown.clone());
    let limits = state.limits;
    let probe = health::spawn_probe(&state, shutdown.clone());
    let server = Server {
        router: app(state),
        http: Arc::new(http_builder(limits.header_timeout)),
        refusal: Arc::new(refusal_builder()),
        limits,
        shutdown: shutdown.clone(),
    };
    let room = Room::new(limits.max_connections);
    let mut conns = JoinSet::new();
    loop {
        // Room first, then the connection: without room, connections wait in the kernel's
        // backlog until a slot or a spare slot frees.
        let admission = tokio::select! {
            _ = shutdown.wait() => break,
            a = room.wait() => a,
        };
        let tcp = tokio::select! {
            _ = shutdown.wait() => break,
            accepted = listener.accept() => match accepted {
                Ok((tcp, _)) => tcp,
                Err(e) => {
                    accept_failed(&e).await;
                    continue;
                }
            },
        };
        while conns.try_join_next().is_some() {}
        match room.settle(admission) {
            Admission::Slot(slot) => conns.spawn(server.clone().connection(tcp, slot)),
            Admission::Spare(spare) => {
                health::refused("connections");
                conns.spawn(server.clone().refuse(tcp, spare))
            }
        };
    }
    drop(listener);
    // Every connection bounds its own wait by SHUTDOWN_GRACE; this is the backstop.
    let drained = tokio::time::timeout(SHUTDOWN_GRACE + Duration::from_secs(1), async {
        while conns.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!("connections still open after the shutdown grace: dropped");
    }
    if let Err(e) = probe.await {
        tracing::warn!("the readiness probe task failed: {e}");
    }
    Ok(())
}

/// The connection limit: [`Limits::max_connections`] slots to serve connections, and
/// [`SPARE_SLOTS`] to tell more that there is no room.
#[derive(Debug)]
struct Room {
    slots: Arc<Semaphore>,
    spare: Arc<Semaphore>,
}

/// Room for one more connection.
#[derive(Debug)]
enum Admission {
    Slot(OwnedSemaphorePermit),
    Spare(OwnedSemaphorePermit),
}

impl Room {
    fn new(max_connections: usize) -> Self {
        Self {
            slots: Arc::new(Semaphore::new(max_connections)),
            spare: Arc::new(Semaphore::new(SPARE_SLOTS)),
        }
    }

    /// A free slot, or else whichever of a slot and a spare slot frees first.
    async fn wait(&self) -> Admission {
        if let Ok(slot) = self.slots.clone().try_acquire_owned() {
            return Admission::Slot(slot);
        }
        // The semaphores are never closed, so one branch always stays enabled.
        tokio::select! {
            biased;
            Ok(slot) = self.slots.clone().acquire_owned() => Admission::Slot(slot),
            Ok(spare) = self.spare.clone().acquire_owned() => Admission::Spare(spare),
            else => std::future::pending().await,
        }
    }

    /// A spare slot taken while waiting for a connection gives way to a slot freed since.
    fn settle(&self, admission: Admission) -> Admission {
        match admission {
            Admission::Spare(spare) => match self.slots.clone().try_acquire_owned() {
                Ok(slot) => Admission::Slot(slot),
                Err(_) => Admission::Spare(spare),
            },
            slot => slot,
        }
    }
}

/// An accept error: one connection's (aborted before we took it) is skipped; any other
/// (out of file descriptors, say) would repeat at once, so wait a little first.
async fn accept_failed(e: &io::Error) {
    use io::ErrorKind::{ConnectionAborted, ConnectionReset, Interrupted};
    if matches!(e.kind(), ConnectionAborted | ConnectionReset | Interrupted) {
        tracing::debug!("accept: {e}");
        return;
    }
    tracing::warn!("accepting a connection failed: {e}");
    tokio::time::sleep(Duration::from_millis(50)).await;
}

/// hyper's HTTP/1 connections, as axum served (its `http2` feature is off). Not hyper-util's
/// `auto::Builder`: with upgrades it always first reads the opening bytes to tell HTTP/1 from
/// HTTP/2, and that read has no timeout, so a client that sends nothing was never cut off.
fn http_builder(header_timeout: Duration) -> Builder {
    let mut b = Builder::new();
    b.timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .keep_alive(true);
    b
}

fn refusal_builder() -> Builder {
    let mut b = Builder::new();
    b.timer(TokioTimer::new())
        .header_read_timeout(REFUSAL_TIME)
        .keep_alive(false);
    b
}

/// What every connection task needs.
#[derive(Debug, Clone)]
struct Server {
    router: Router,
    http: Arc<Builder>,
    refusal: Arc<Builder>,
    limits: Limits,
    shutdown: Shutdown,
}

impl Server {
    /// Serves one connection until it ends, or until shutdown lets it go.
    async fn connection(self, tcp: TcpStream, slot: OwnedSemaphorePermit) {
        let activity = Arc::new(Activity::default());
        let io = Watched {
            io: TokioIo::new(tcp),
            activity: activity.clone(),
        };
        let service = TowerToHyperService::new(Tracked {
            router: self.router,
            slot: ConnSlot {
                _permit: Arc::new(slot),
            },
            activity: activity.clone(),
        });
        let mut conn = std::pin::pin!(self.http.serve_connection(io, service).with_upgrades());
        let mut shutdown = self.shutdown;
        tokio::select! {
            ended = conn.as_mut() => {
                if let Err(e) = ended {
                    tracing::debug!("connection ended: {e}");
                }
                return;
            }
            _ = shutdown.wait() => {}
        }
        conn.as_mut().graceful_shutdown();
        // Poll the connection first, so that a request whose headers just arrived counts as
        // in flight, then let it go unless it is busy.
        let finished = std::future::poll_fn(|cx| {
            if conn.as_mut().poll(cx).is_ready() || !activity.busy() {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        });
        if tokio::time::timeout(SHUTDOWN_GRACE, finished)
            .await
            .is_err()
        {
            tracing::debug!("a request was still in flight after the shutdown grace: dropped");
        }
    }

    /// Answers an over-limit connection's request with 503, then closes it.
    async fn refuse(self, tcp: TcpStream, _spare: OwnedSemaphorePermit) {
        let limits = self.limits;
        let service = hyper::service::service_fn(move |_req: http::Request<Incoming>| async move {
            Ok::<_, Infallible>(over_limit(limits))
        });
        let conn = self.refusal.serve_connection(TokioIo::new(tcp), service);
        let mut shutdown = self.shutdown;
        tokio::select! {
            _ = tokio::time::timeout(REFUSAL_TIME, conn) => {}
            _ = shutdown.wait() => {}
        }
    }
}

/// The 503 an over-limit connection gets: JSON naming the limit, the usual headers, and
/// `Retry-After`.
fn over_limit(limits: Limits) -> Response {
    let mut resp = ApiError::Unavailable(format!(
        "the server is at its limit of {} open connections (--api-max-connections); \
         try again shortly",
        limits.max_connections
    ))
    .into_response();
    resp.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    headers::harden(resp, limits.body_bytes)
}

/// A connection's slot of [`Limits::max_connections`], in every request's extensions: a
/// websocket stream keeps a clone, so the slot is free only when both the HTTP connection and
/// the stream have ended.
#[derive(Debug, Clone)]
pub struct ConnSlot {
    _permit: Arc<OwnedSemaphorePermit>,
}

/// Whether a connection has work that shutdown should wait for.
#[derive(Debug, Default)]
struct Activity {
    /// Requests handed to the router whose answer's body has not been sent out yet.
    requests: AtomicUsize,
    /// The client did not take the last bytes written: an answer is still going out.
    write_blocked: AtomicBool,
}

impl Activity {
    fn begin(self: &Arc<Self>) -> InFlight {
        self.requests.fetch_add(1, Ordering::Relaxed);
        InFlight(self.clone())
    }

    fn busy(&self) -> bool {
        self.requests.load(Ordering::Relaxed) > 0 || self.write_blocked.load(Ordering::Relaxed)
    }
}

/// One request in flight, until its answer's body has been sent (or dropped).
#[derive(Debug)]
struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.requests.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The router, counting requests in flight and handing each the connection's slot.
#[derive(Debug, Clone)]
struct Tracked {
    router: Router,
    slot: ConnSlot,
    activity: Arc<Activity>,
}

impl tower_service::Service<http::Request<Incoming>> for Tracked {
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut req: http::Request<Incoming>) -> Self::Future {
        let in_flight = self.activity.begin();
        req.extensions_mut().insert(self.slot.clone());
        let mut router = self.router.clone();
        Box::pin(async move {
            let resp = tower_service::Service::call(&mut router, req).await?;
            Ok(resp.map(|body| {
                Body::new(Counted {
                    body,
                    _in_flight: in_flight,
                })
            }))
        })
    }
}

/// An answer's body that keeps its request in flight until it is sent.
#[derive(Debug)]
struct Counted {
    body: Body,
    _in_flight: InFlight,
}

impl http_body::Body for Counted {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

/// The socket, noting whether the client is slow to take what is written to it.
#[derive(Debug)]
struct Watched {
    io: TokioIo<TcpStream>,
    activity: Arc<Activity>,
}

impl Watched {
    fn note<T>(&self, p: Poll<T>) -> Poll<T> {
        self.activity
            .write_blocked
            .store(p.is_pending(), Ordering::Relaxed);
        p
    }
}

impl hyper::rt::Read for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl hyper::rt::Write for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let p = Pin::new(&mut self.io).poll_write(cx, buf);
        self.note(p)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let p = Pin::new(&mut self.io).poll_flush(cx);
        self.note(p)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let p = Pin::new(&mut self.io).poll_shutdown(cx);
        self.note(p)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let p = Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        self.note(p)
    }
}
