//! The API server's limits against real sockets: the header-read timeout, a shutdown that does
//! not wait on slow clients, the connection limit (503, then service resumes by itself), the
//! websocket stream's origin check, stream limit, inbound size limit and pings, and `/readyz`
//! answered from the background probe (no thread per call; the failing check named).
//!
//! Every server here runs on SQLite and needs no services. The thread-count test holds
//! [`SERIAL`] exclusively so that no other test of this binary starts threads meanwhile.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use async_trait::async_trait;
use common::Mode;
use futures_util::{SinkExt as _, StreamExt as _};
use serde_json::{Value, json};
use tickcast_alerts::{AlertEvent, Rule};
use tickcast_api::AppState;
use tickcast_api::live::Hub;
use tickcast_api::origin::AllowList;
use tickcast_api::stream::StreamLimits;
use tickcast_core::bus::KafkaSettings;
use tickcast_core::domain::{Candle, Forecast};
use tickcast_core::shutdown::{self, ShutdownTrigger};
use tickcast_store::{
    AccuracyQuery, AccuracyRow, AlertCheckpoint, AlertEventQuery, AlertRuleRow, AlertSeriesState,
    AlertStore, Backend, CandleQuery, Checkpoint, CheckpointStore, DeliveryJob, DeliveryOutcome,
    DeliveryQuery, DeliveryRow, ForecastQuery, QueryStore, SeriesCheckpoint, SeriesInfo, SinkBatch,
    SinkStore, Store, WriteSummary,
};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio::sync::RwLock;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{self, Message};

/// Shared by every test, exclusive for the one that counts the process's threads.
static SERIAL: RwLock<()> = RwLock::const_new(());

/// A server on a free port, stopped by [`Server::stop`].
struct Server {
    addr: std::net::SocketAddr,
    trigger: ShutdownTrigger,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
    _dir: Option<common::TempDir>,
}

impl Server {
    async fn start(state: AppState, dir: Option<common::TempDir>) -> Server {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (trigger, signal) = shutdown::channel();
        let task = tokio::spawn(tickcast_api::serve(listener, state, signal));
        Server {
            addr,
            trigger,
            task,
            _dir: dir,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Fires shutdown and returns how long the server took to return.
    async fn stop(self) -> Duration {
        let t = Instant::now();
        self.trigger.fire();
        self.task.await.unwrap().unwrap();
        t.elapsed()
    }
}

async fn sqlite_state(name: &str) -> (AppState, Option<common::TempDir>) {
    let (store, dir) = common::open_store(Mode::Embedded, name).await.unwrap();
    (AppState::new(store), dir)
}

fn limits(header_timeout: Duration, max_connections: usize) -> tickcast_api::Limits {
    tickcast_api::Limits {
        header_timeout,
        max_connections,
        ..tickcast_api::Limits::default()
    }
}

/// One HTTP/1.1 GET on an open connection: (status, body).
async fn get_on(tcp: &mut TcpStream, path: &str) -> (u16, String) {
    let req = format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n");
    tcp.write_all(req.as_bytes()).await.unwrap();
    let (status, _, body) = read_answer(tcp).await;
    (status, body)
}

/// Reads one answer: (status, head in lower case, body). Answers here carry Content-Length,
/// except interim ones (1xx), which have no body.
async fn read_answer(tcp: &mut TcpStream) -> (u16, String, String) {
    let mut buf = Vec::new();
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let mut byte = [0u8; 1];
        let n = tcp.read(&mut byte).await.unwrap();
        assert!(n > 0, "connection closed before the answer's head");
        buf.push(byte[0]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_lowercase();
    let status: u16 = head[9..12].parse().unwrap();
    if status < 200 {
        return (status, head, String::new());
    }
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length: "))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let mut body = vec![0u8; len];
    tcp.read_exact(&mut body).await.unwrap();
    (status, head, String::from_utf8(body).unwrap())
}

/// Waits up to `within` for the server to close `tcp`; true when it did (EOF or reset).
async fn closed_within(tcp: &mut TcpStream, within: Duration) -> bool {
    let mut byte = [0u8; 1];
    match tokio::time::timeout(within, tcp.read(&mut byte)).await {
        Ok(Ok(0)) | Ok(Err(_)) => true,
        Ok(Ok(_)) | Err(_) => false,
    }
}

/// Connects and sends the start of a request, never its end.
async fn slow_client(addr: std::net::SocketAddr) -> TcpStream {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(b"GET /healthz HTTP/1.1\r\nHost: te")
        .await
        .unwrap();
    tcp
}

#[tokio::test]
async fn slow_headers_and_idle_connections_are_cut_off_at_the_header_timeout() {
    let _serial = SERIAL.read().await;
    let timeout = Duration::from_millis(400);
    let (state, dir) = sqlite_state("header_timeout").await;
    let server = Server::start(state.with_limits(limits(timeout, 64)), dir).await;

    let started = Instant::now();
    let mut slow = slow_client(server.addr).await;
    let mut silent = TcpStream::connect(server.addr).await.unwrap();
    // Meanwhile a normal client is served, twice on one kept-alive connection.
    let mut normal = TcpStream::connect(server.addr).await.unwrap();
    assert_eq!(
        get_on(&mut normal, "/healthz").await,
        (200, "ok".to_string())
    );
    let second = Instant::now();
    assert_eq!(
        get_on(&mut normal, "/healthz").await,
        (200, "ok".to_string())
    );

    let limit = timeout + Duration::from_secs(2);
    assert!(closed_within(&mut slow, limit).await, "slow client kept");
    let slow_cut = started.elapsed();
    assert!(
        closed_within(&mut silent, limit).await,
        "silent client kept"
    );
    assert!(
        slow_cut >= timeout && slow_cut < limit,
        "slow client cut after {slow_cut:?}, the timeout is {timeout:?}"
    );
    // The kept-alive connection, idle since its last answer, is closed after the timeout too.
    assert!(
        closed_within(&mut normal, limit).await,
        "idle connection kept"
    );
    assert!(second.elapsed() >= timeout, "idle connection cut early");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_does_not_wait_for_200_slow_clients() {
    let _serial = SERIAL.read().await;
    let (state, dir) = sqlite_state("slow_shutdown").await;
    // The default 10 s header timeout: the slow clients would hold on for that long.
    let server = Server::start(state, dir).await;
    let mut slow = Vec::new();
    for _ in 0..200 {
        slow.push(slow_client(server.addr).await);
    }
    // Accepted in order: once this is answered, the server has taken all 200.
    let mut normal = TcpStream::connect(server.addr).await.unwrap();
    assert_eq!(get_on(&mut normal, "/readyz").await.0, 200);

    let took = server.stop().await;
    eprintln!("shutdown with 200 slow-header clients took {took:?}");
    assert!(took < Duration::from_secs(1), "shutdown took {took:?}");
    for (i, tcp) in slow.iter_mut().enumerate() {
        assert!(
            closed_within(tcp, Duration::from_secs(1)).await,
            "slow client {i} still connected after shutdown"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_lets_an_in_flight_request_finish() {
    let _serial = SERIAL.read().await;
    let (state, dir) = sqlite_state("inflight_shutdown").await;
    let store = state.store.clone();
    let token = "t0ken-for-the-tests";
    // The directory outlives the server: the store is read after it stopped.
    let _dir = dir;
    let server = Server::start(state.with_token(Some(token)), None).await;
    let rule = json!({
        "id": "btc-high", "symbol": "BTC-USDT", "interval": "1m", "model": "ensemble",
        "horizon": 5, "kind": "above", "on": "lo95", "threshold": 70000.0, "for": "3m",
        "hysteresis": 100.0
    })
    .to_string();
    let mut tcp = TcpStream::connect(server.addr).await.unwrap();
    let head = format!(
        "PUT /api/v1/alerts/rules/btc-high HTTP/1.1\r\nHost: test\r\n\
         Authorization: Bearer {token}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nExpect: 100-continue\r\n\r\n",
        rule.len()
    );
    tcp.write_all(head.as_bytes()).await.unwrap();
    // `100 Continue` comes when the handler starts reading the body: the request is in flight.
    assert_eq!(read_answer(&mut tcp).await.0, 100);
    let addr = server.addr;
    let stopping = tokio::spawn(server.stop());
    // Once new connections are refused, the server is shutting down.
    let deadline = Instant::now() + Duration::from_secs(2);
    while TcpStream::connect(addr).await.is_ok() {
        assert!(Instant::now() < deadline, "still accepting after shutdown");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tcp.write_all(rule.as_bytes()).await.unwrap();
    let (status, head, body) = read_answer(&mut tcp).await;
    assert_eq!(status, 201, "{body}");
    assert!(head.contains("connection: close"), "{head}");
    assert!(closed_within(&mut tcp, Duration::from_secs(1)).await);
    let took = stopping.await.unwrap();
    assert!(took < Duration::from_secs(2), "shutdown took {took:?}");
    assert_eq!(store.alert_rules().await.unwrap().len(), 1);
}

#[tokio::test]
async fn over_the_connection_limit_answers_503_then_recovers() {
    let _serial = SERIAL.read().await;
    let timeout = Duration::from_secs(3);
    let (state, dir) = sqlite_state("conn_limit").await;
    let server = Server::start(state.with_limits(limits(timeout, 8)), dir).await;
    let mut idle = Vec::new();
    for _ in 0..8 {
        idle.push(TcpStream::connect(server.addr).await.unwrap());
    }
    let over_limit = json!({"error": "the server is at its limit of 8 open connections \
        (--api-max-connections); try again shortly"});

    let asked = Instant::now();
    let mut ninth = TcpStream::connect(server.addr).await.unwrap();
    let (status, head, body) = {
        ninth
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: test\r\n\r\n")
            .await
            .unwrap();
        read_answer(&mut ninth).await
    };
    assert!(asked.elapsed() < Duration::from_secs(1), "503 not prompt");
    assert_eq!(status, 503, "{body}");
    assert_eq!(serde_json::from_str::<Value>(&body).unwrap(), over_limit);
    assert!(head.contains("retry-after: 1\r\n"), "{head}");
    assert!(head.contains("connection: close\r\n"), "{head}");
    assert!(closed_within(&mut ninth, Duration::from_secs(1)).await);

    // Over-limit connections that send nothing hold the spare slots until they are closed,
    // unanswered; meanwhile the next one waits in the backlog, then gets its 503 too. Open
    // sockets never exceed the limit plus the spare slots.
    let mut spare = Vec::new();
    for _ in 0..tickcast_api::server::SPARE_SLOTS {
        spare.push(TcpStream::connect(server.addr).await.unwrap());
    }
    let mut beyond = TcpStream::connect(server.addr).await.unwrap();
    let (status, body) = get_on(&mut beyond, "/healthz").await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(serde_json::from_str::<Value>(&body).unwrap(), over_limit);
    for tcp in &mut spare {
        assert!(closed_within(tcp, Duration::from_secs(1)).await);
    }

    // The idle connections end at the header timeout, and service resumes by itself.
    for tcp in &mut idle {
        assert!(closed_within(tcp, timeout).await);
    }
    let http = reqwest::Client::new();
    let ok = common::eventually(Duration::from_secs(5), || async {
        let r = http.get(server.url("/healthz")).send().await.unwrap();
        r.status() == 200 && r.text().await.unwrap() == "ok"
    })
    .await;
    assert!(ok, "/healthz did not come back");
    drop(http);
    server.stop().await;
}

/// A stream server with a hub (no broker), `max_streams` and the extra origin
/// `https://dash.example`.
async fn stream_server(name: &str, max_streams: usize, ping_every: Duration) -> Server {
    let (state, dir) = sqlite_state(name).await;
    let state = state
        .with_live(Hub::new(64))
        .with_stream_limits(StreamLimits {
            max_streams,
            ping_every,
            origins: AllowList::parse(["https://dash.example"]).unwrap(),
        });
    Server::start(state, dir).await
}

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<TcpStream>>;

/// Opens the stream with `origin`: the socket (its hello read), or the refusal's status and
/// JSON body.
async fn open_stream(server: &Server, origin: Option<&str>) -> Result<Ws, (u16, Value)> {
    let mut req = format!("ws://{}/api/v1/stream", server.addr)
        .into_client_request()
        .unwrap();
    if let Some(o) = origin {
        req.headers_mut().insert("origin", o.parse().unwrap());
    }
    match tokio_tungstenite::connect_async(req).await {
        Ok((mut ws, _)) => {
            let hello = ws.next().await.unwrap().unwrap();
            let hello: Value = serde_json::from_str(hello.to_text().unwrap()).unwrap();
            assert_eq!(hello["kind"], "hello");
            Ok(ws)
        }
        Err(tungstenite::Error::Http(resp)) => {
            let body = resp.body().clone().unwrap_or_default();
            Err((
                resp.status().as_u16(),
                serde_json::from_slice(&body).unwrap(),
            ))
        }
        Err(e) => panic!("handshake failed: {e}"),
    }
}

/// Reads until the server's close frame: (code, reason).
async fn close_of(ws: &mut Ws) -> (CloseCode, String) {
    loop {
        match ws.next().await {
            Some(Ok(Message::Close(Some(f)))) => return (f.code, f.reason.to_string()),
            Some(Ok(Message::Close(None))) | None => panic!("closed without a close frame"),
            Some(Ok(_)) => {}
            Some(Err(e)) => panic!("stream failed before its close frame: {e}"),
        }
    }
}

#[tokio::test]
async fn stream_origins_same_listed_or_none() {
    let _serial = SERIAL.read().await;
    let server = stream_server("ws_origins", 8, Duration::from_secs(20)).await;
    let own = format!("http://{}", server.addr);
    for origin in [None, Some(own.as_str()), Some("https://dash.example")] {
        let ws = open_stream(&server, origin).await;
        assert!(ws.is_ok(), "{origin:?} refused: {:?}", ws.err());
    }
    for origin in ["http://evil.example", "https://dash.example:8443", "null"] {
        let refused = open_stream(&server, Some(origin)).await.err();
        assert_eq!(
            refused,
            Some((
                403,
                json!({"error": format!("origin `{origin}` may not open the stream: only pages \
                    of this server's own origin or of one in --api-allowed-origins may")})
            ))
        );
    }
    server.stop().await;
}

#[tokio::test]
async fn stream_limit_answers_503_and_frees_slots() {
    let _serial = SERIAL.read().await;
    let server = stream_server("ws_limit", 2, Duration::from_secs(20)).await;
    let mut first = open_stream(&server, None).await.unwrap();
    let _second = open_stream(&server, None).await.unwrap();
    assert_eq!(
        open_stream(&server, None).await.err(),
        Some((
            503,
            json!({"error": "the live stream is at its limit of 2 open streams \
                (--api-max-streams); try again shortly"})
        ))
    );
    first.close(None).await.unwrap();
    while first.next().await.is_some() {}
    // The slot is free once the server has seen the close.
    let deadline = Instant::now() + Duration::from_secs(5);
    while open_stream(&server, None).await.is_err() {
        assert!(
            Instant::now() < deadline,
            "a closed stream's slot was not freed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    server.stop().await;
}

#[tokio::test]
async fn oversized_inbound_message_closes_the_stream_with_1009() {
    let _serial = SERIAL.read().await;
    let server = stream_server("ws_size", 8, Duration::from_secs(20)).await;
    let mut ws = open_stream(&server, None).await.unwrap();
    // Small texts are fine.
    ws.send(Message::text("hi")).await.unwrap();
    ws.send(Message::text("x".repeat(64 * 1024))).await.unwrap();
    assert_eq!(
        close_of(&mut ws).await,
        (
            CloseCode::Size,
            "messages to the stream are limited to 4096 bytes".to_string()
        )
    );
    server.stop().await;
}

#[tokio::test]
async fn silent_stream_clients_are_closed_and_answering_ones_kept() {
    let _serial = SERIAL.read().await;
    let ping = Duration::from_millis(300);
    let server = stream_server("ws_ping", 8, ping).await;
    let mut silent = open_stream(&server, None).await.unwrap();
    let mut alive = open_stream(&server, None).await.unwrap();
    // The answering client reads (and so answers pings) for five intervals, past the three
    // a silent client is given.
    let until = Instant::now() + ping * 5;
    let mut pings = 0;
    while let Ok(m) = tokio::time::timeout_at(until.into(), alive.next()).await {
        match m {
            Some(Ok(Message::Ping(_))) => pings += 1,
            other => panic!("the answering client got {other:?}"),
        }
    }
    assert!(pings >= 3, "{pings} pings in five intervals");
    // The silent one has read nothing, so has answered no ping: it was closed (the server
    // waits a while for its answer to the close, which it gives now).
    assert_eq!(
        close_of(&mut silent).await,
        (
            CloseCode::Away,
            "nothing heard for three ping intervals".to_string()
        )
    );
    // Shutdown closes the open streams with 1001 too.
    let mut alive = alive;
    let stopped = tokio::spawn(server.stop());
    assert_eq!(
        close_of(&mut alive).await,
        (CloseCode::Away, "server shutting down".to_string())
    );
    stopped.await.unwrap();
}

/// The process's thread count, from `/proc/self/status`.
fn threads() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

/// `GET /readyz` on a connection of its own: (status, JSON body).
async fn readyz(addr: std::net::SocketAddr) -> (u16, Value) {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    let (status, body) = get_on(&mut tcp, "/readyz").await;
    (status, serde_json::from_str(&body).unwrap())
}

/// The body without its `age_ms` (a number when there).
fn without_age(mut v: Value) -> Value {
    if let Some(age) = v.as_object_mut().unwrap().remove("age_ms") {
        assert!(age.is_u64(), "age_ms {age}");
    }
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_answers_1000_concurrent_calls_without_a_thread_each() {
    let _serial = SERIAL.write().await;
    // A broker nobody listens on: each check of it builds a Kafka client (with librdkafka's
    // threads) and waits out the timeout, as the old per-call check did.
    let (state, dir) = sqlite_state("readyz_threads").await;
    let state = state
        .with_broker(KafkaSettings::new("127.0.0.1:1"))
        .with_probe_every(Duration::from_millis(100))
        .with_limits(limits(Duration::from_secs(10), 4096));
    let server = Server::start(state, dir).await;
    let probed = common::eventually(Duration::from_secs(15), || async {
        readyz(server.addr).await.1["checks"][1]["name"] == "broker"
    })
    .await;
    assert!(probed, "the probe did not report the broker");

    let before = threads();
    let peak = Arc::new(std::sync::atomic::AtomicUsize::new(before));
    let sampling = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let sampler = {
        let (peak, sampling) = (peak.clone(), sampling.clone());
        std::thread::spawn(move || {
            while sampling.load(Ordering::Relaxed) {
                peak.fetch_max(threads(), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(2));
            }
        })
    };
    let started = Instant::now();
    let calls: Vec<_> = (0..1000)
        .map(|_| tokio::spawn(readyz(server.addr)))
        .collect();
    let mut answers = BTreeMap::new();
    for c in calls {
        let (status, body) = c.await.unwrap();
        assert!(body["age_ms"].is_u64(), "{body}");
        let body = without_age(body);
        *answers.entry((status, body.to_string())).or_insert(0) += 1;
    }
    let took = started.elapsed();
    sampling.store(false, Ordering::Relaxed);
    sampler.join().unwrap();
    let (after, peak) = (threads(), peak.load(Ordering::Relaxed));
    eprintln!(
        "1000 concurrent /readyz in {took:?}: threads {before} before, {peak} at most, \
         {after} after"
    );

    // Every call answered, all alike: the store fine, the broker named as failing.
    assert_eq!(answers.len(), 1, "{answers:?}");
    let ((status, body), n) = answers.into_iter().next().unwrap();
    assert_eq!((status, n), (503, 1000));
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["ready"], false);
    assert_eq!(body["checks"][0], json!({"name": "store", "ok": true}));
    assert_eq!(body["checks"][1]["name"], "broker");
    assert_eq!(body["checks"][1]["ok"], false);
    assert!(
        body["checks"][1]["error"]
            .as_str()
            .unwrap()
            .starts_with("Kafka at 127.0.0.1:1 did not answer"),
        "{body}"
    );
    // librdkafka's few threads come and go with each probe; no thread per call.
    assert!(
        peak <= before + 16,
        "threads grew from {before} to {peak} during the calls"
    );
    server.stop().await;
}

#[tokio::test]
async fn readyz_names_the_failing_store_and_waits_for_the_first_probe() {
    let _serial = SERIAL.read().await;
    let (inner, dir) = common::open_store(Mode::Embedded, "readyz_store")
        .await
        .unwrap();
    let store = Arc::new(FlakyStore {
        inner,
        ping: AtomicU8::new(HANG),
    });
    let state = AppState::new(store.clone()).with_probe_every(Duration::from_millis(50));
    let server = Server::start(state, dir).await;

    // The first probe is still waiting for the store.
    assert_eq!(
        readyz(server.addr).await,
        (
            503,
            json!({"ready": false, "checks": [
                {"name": "probe", "ok": false, "error": "not probed yet"}]})
        )
    );
    store.ping.store(OK, Ordering::Relaxed);
    let ready = json!({"ready": true, "checks": [{"name": "store", "ok": true}]});
    let became = |want: (u16, Value)| {
        let addr = server.addr;
        async move {
            common::eventually(Duration::from_secs(5), || {
                let want = want.clone();
                async move {
                    let (status, body) = readyz(addr).await;
                    (status, without_age(body)) == want
                }
            })
            .await
        }
    };
    // The hung first ping ends at the 2 s check timeout; the next one answers.
    assert!(became((200, ready.clone())).await, "never ready");
    let age = readyz(server.addr).await.1["age_ms"].as_u64().unwrap();
    assert!(age < 2_000, "age_ms {age} with a probe every 50 ms");
    store.ping.store(FAIL, Ordering::Relaxed);
    let failing = json!({"ready": false, "checks": [
        {"name": "store", "ok": false, "error": "database is gone"}]});
    assert!(became((503, failing)).await, "store failure not reported");
    store.ping.store(OK, Ordering::Relaxed);
    assert!(became((200, ready)).await, "not ready again");
    server.stop().await;
}

const OK: u8 = 0;
const FAIL: u8 = 1;
const HANG: u8 = 2;

/// A real store whose `ping` can be made to fail or hang.
#[derive(Debug)]
struct FlakyStore {
    inner: Arc<dyn Store>,
    ping: AtomicU8,
}

#[async_trait]
impl Backend for FlakyStore {
    fn backend(&self) -> &'static str {
        self.inner.backend()
    }
    async fn ping(&self) -> Result<()> {
        match self.ping.load(Ordering::Relaxed) {
            OK => self.inner.ping().await,
            FAIL => bail!("database is gone"),
            _ => std::future::pending().await,
        }
    }
}

#[async_trait]
impl SinkStore for FlakyStore {
    async fn write_batch(&self, consumer: &str, batch: &SinkBatch) -> Result<WriteSummary> {
        self.inner.write_batch(consumer, batch).await
    }
    async fn apply_retention(
        &self,
        policy: &tickcast_store::retention::Retention,
        clock_ms: i64,
    ) -> Result<tickcast_store::RetentionReport> {
        self.inner.apply_retention(policy, clock_ms).await
    }
    async fn offsets(&self, consumer: &str) -> Result<BTreeMap<(String, i32), i64>> {
        self.inner.offsets(consumer).await
    }
    async fn forget_offset(&self, consumer: &str, topic: &str, partition: i32) -> Result<()> {
        self.inner.forget_offset(consumer, topic, partition).await
    }
}

#[async_trait]
impl QueryStore for FlakyStore {
    async fn candles(&self, q: &CandleQuery) -> Result<Vec<Candle>> {
        self.inner.candles(q).await
    }
    async fn forecasts(&self, q: &ForecastQuery) -> Result<Vec<Forecast>> {
        self.inner.forecasts(q).await
    }
    async fn accuracy(&self, q: &AccuracyQuery) -> Result<Vec<AccuracyRow>> {
        self.inner.accuracy(q).await
    }
    async fn latest_forecasts(&self, q: &ForecastQuery) -> Result<Vec<Forecast>> {
        self.inner.latest_forecasts(q).await
    }
    async fn series(&self) -> Result<Vec<SeriesInfo>> {
        self.inner.series().await
    }
    async fn row_counts(&self) -> Result<(i64, i64)> {
        self.inner.row_counts().await
    }
}

#[async_trait]
impl CheckpointStore for FlakyStore {
    async fn save_checkpoint(&self, consumer: &str, cp: &Checkpoint) -> Result<()> {
        self.inner.save_checkpoint(consumer, cp).await
    }
    async fn load_series_states(
        &self,
        consumer: &str,
        keys: &[(String, String, String)],
    ) -> Result<Vec<SeriesCheckpoint>> {
        self.inner.load_series_states(consumer, keys).await
    }
    async fn load_model_states(&self, consumer: &str) -> Result<Vec<(String, Vec<u8>)>> {
        self.inner.load_model_states(consumer).await
    }
}

#[async_trait]
impl AlertStore for FlakyStore {
    async fn alert_rules(&self) -> Result<Vec<AlertRuleRow>> {
        self.inner.alert_rules().await
    }
    async fn alert_rule(&self, id: &str) -> Result<Option<AlertRuleRow>> {
        self.inner.alert_rule(id).await
    }
    async fn put_alert_rule(&self, row: &AlertRuleRow) -> Result<bool> {
        self.inner.put_alert_rule(row).await
    }
    async fn delete_alert_rule(&self, id: &str) -> Result<bool> {
        self.inner.delete_alert_rule(id).await
    }
    async fn replace_file_rules(&self, rules: &[Rule], now_ms: i64) -> Result<()> {
        self.inner.replace_file_rules(rules, now_ms).await
    }
    async fn alert_events(&self, q: &AlertEventQuery) -> Result<Vec<AlertEvent>> {
        self.inner.alert_events(q).await
    }
    async fn save_alert_checkpoint(&self, consumer: &str, cp: &AlertCheckpoint) -> Result<()> {
        self.inner.save_alert_checkpoint(consumer, cp).await
    }
    async fn load_alert_states(
        &self,
        consumer: &str,
        keys: &[(String, String, String)],
    ) -> Result<Vec<AlertSeriesState>> {
        self.inner.load_alert_states(consumer, keys).await
    }
    async fn claim_deliveries(
        &self,
        endpoint: &str,
        now_ms: i64,
        lease_ms: i64,
        limit: i64,
    ) -> Result<Vec<DeliveryJob>> {
        self.inner
            .claim_deliveries(endpoint, now_ms, lease_ms, limit)
            .await
    }
    async fn finish_delivery(
        &self,
        endpoint: &str,
        event_id: &str,
        outcome: &DeliveryOutcome,
        now_ms: i64,
    ) -> Result<()> {
        self.inner
            .finish_delivery(endpoint, event_id, outcome, now_ms)
            .await
    }
    async fn next_delivery_ms(&self, endpoint: &str) -> Result<Option<i64>> {
        self.inner.next_delivery_ms(endpoint).await
    }
    async fn alert_deliveries(&self, q: &DeliveryQuery) -> Result<Vec<DeliveryRow>> {
        self.inner.alert_deliveries(q).await
    }
}
