//! The replay exchange over real sockets, with the Binance protocol: subscriptions, the shared
//! market, REST backfill on the same port, every fault with exact counts, and the sent log; and
//! Bitstamp's one subscribe frame per channel while the exchange streams and drops.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt as _, StreamExt as _};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, connect_async};

use tickcast_core::shutdown::{self, ShutdownTrigger};
use tickcast_ingest::connectors::{Connector as _, Decoded};
use tickcast_ingest::exchanges::binance::connector::Binance;
use tickcast_ingest::exchanges::binance::replay::BinanceSim;
use tickcast_ingest::replay::sims::{ClientRequest, ExchangeSim, RestReply};
use tickcast_ingest::replay::{Faults, MarketHandle, ReplayOptions, ReplayServer, SentLog, Source};
use tickcast_ingest::simulator::{SimConfig, SimTrade};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

struct Running {
    url: String,
    rest: String,
    sent: SentLog,
    market: MarketHandle,
    _trigger: ShutdownTrigger,
}

fn opts(total: u64, faults: Faults) -> ReplayOptions {
    ReplayOptions {
        total: Some(total),
        faults,
        ..ReplayOptions::new(SimConfig::default_symbols(7, 1_700_000_000_000))
    }
}

async fn start(opts: ReplayOptions) -> Running {
    let server = ReplayServer::bind("127.0.0.1:0", opts).await.unwrap();
    let (trigger, signal) = shutdown::channel();
    let r = Running {
        url: server.url().unwrap(),
        rest: server.rest_url().unwrap(),
        sent: server.sent(),
        market: server.market(),
        _trigger: trigger,
    };
    tokio::spawn(server.run(signal));
    r
}

fn both() -> Vec<String> {
    vec!["BTC-USDT".into(), "ETH-USDT".into()]
}

/// Connects and subscribes; returns once the ack arrived.
async fn subscribe(url: &str, symbols: &[String]) -> Ws {
    let (mut ws, _) = connect_async(url).await.unwrap();
    for req in Binance::trades().subscribe(symbols) {
        ws.send(Message::text(req)).await.unwrap();
    }
    let ack = ws.next().await.unwrap().unwrap();
    let mut out = Vec::new();
    assert_eq!(
        Binance::trades().decode(ack.to_text().unwrap(), 0, &mut out),
        Ok(Decoded::Ack)
    );
    ws
}

/// Text frames until the socket is idle for `idle` (false) or closes (true).
async fn collect(ws: &mut Ws, idle: Duration, max: usize) -> (Vec<String>, bool) {
    let mut out = Vec::new();
    while out.len() < max {
        match tokio::time::timeout(idle, ws.next()).await {
            Err(_) => return (out, false),
            Ok(None | Some(Err(_)) | Some(Ok(Message::Close(_)))) => return (out, true),
            Ok(Some(Ok(Message::Text(t)))) => out.push(t.to_string()),
            Ok(Some(Ok(_))) => {}
        }
    }
    (out, false)
}

const IDLE: Duration = Duration::from_millis(400);

/// `(symbol, trade id)` of each trade frame, in order (garbage and acks left out).
fn ids(frames: &[String]) -> Vec<(String, String)> {
    let mut ticks = Vec::new();
    for f in frames {
        let _ = Binance::trades().decode(f, 0, &mut ticks);
    }
    ticks.into_iter().map(|t| (t.symbol, t.trade_id)).collect()
}

fn ids_of(trades: &[SimTrade]) -> Vec<(String, String)> {
    trades
        .iter()
        .map(|t| (t.symbol.clone(), t.trade_id.to_string()))
        .collect()
}

async fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let t = Instant::now();
    while !f() {
        assert!(t.elapsed() < Duration::from_secs(5), "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn clients_get_the_trades_that_happen_after_they_subscribe() {
    let r = start(opts(400, Faults::default())).await;
    let mut a = subscribe(&r.url, &both()).await;
    let (first, _) = collect(&mut a, IDLE, 50).await;
    let btc = vec!["BTC-USDT".to_string()];
    let mut b = subscribe(&r.url, &btc).await;
    let joined_at = r.market.len() as usize;
    let (rest_a, _) = collect(&mut a, IDLE, usize::MAX).await;
    let (got_b, _) = collect(&mut b, IDLE, usize::MAX).await;

    let happened = r.market.happened();
    assert_eq!(happened.len(), 400, "total stops the market");
    assert!(r.market.exhausted());
    let got_a = ids(&[first, rest_a].concat());
    assert_eq!(
        got_a,
        ids_of(&happened),
        "a subscribed before anything happened"
    );
    let got_b = ids(&got_b);
    assert!(got_b.iter().all(|(s, _)| s == "BTC-USDT"));
    // b joined while a was reading: it gets exactly the BTC trades from some point on.
    let btc_after: Vec<_> = ids_of(&happened)
        .into_iter()
        .filter(|(s, _)| s == "BTC-USDT")
        .collect();
    let tail = &btc_after[btc_after.len() - got_b.len()..];
    assert_eq!(got_b, tail);
    let btc_since_join = ids_of(&happened[joined_at..])
        .into_iter()
        .filter(|(s, _)| s == "BTC-USDT")
        .count();
    assert!(got_b.len() >= btc_since_join && got_b.len() < btc_after.len());
    assert_eq!(r.sent.ids(), got_a.iter().cloned().collect::<BTreeSet<_>>());
    assert_eq!(r.sent.frames_sent() as usize, got_a.len() + got_b.len());
    assert_eq!(r.sent.connections(), 2);
}

#[tokio::test]
async fn path_subscriptions_combined_streams_and_pings() {
    let r = start(opts(30, Faults::default())).await;
    let url = r
        .url
        .replace("/ws", "/stream?streams=btcusdt@trade/ethusdt@trade");
    let (mut ws, _) = connect_async(&url).await.unwrap();
    ws.send(Message::Ping(b"hi".to_vec().into())).await.unwrap();
    let mut frames = Vec::new();
    let mut pong = false;
    while let Ok(Some(Ok(m))) = tokio::time::timeout(IDLE, ws.next()).await {
        match m {
            Message::Pong(p) => pong = p.as_ref() == b"hi",
            Message::Text(t) => frames.push(t.to_string()),
            _ => {}
        }
    }
    assert!(pong, "pings are answered");
    assert!(frames.iter().all(|f| f.starts_with(r#"{"stream":"#)));
    assert_eq!(ids(&frames), ids_of(&r.market.happened()));
}

#[tokio::test]
async fn rest_serves_history_on_the_same_port() {
    let r = start(opts(300, Faults::default())).await;
    let mut ws = subscribe(&r.url, &both()).await;
    collect(&mut ws, IDLE, usize::MAX).await;
    let http = reqwest::Client::new();
    let resp = http
        .get(format!(
            "{}/api/v3/historicalTrades?symbol=ETHUSDT&limit=1000",
            r.rest
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let rows: Vec<serde_json::Value> = resp.json().await.unwrap();
    let got: Vec<u64> = rows.iter().map(|v| v["id"].as_u64().unwrap()).collect();
    let want: Vec<u64> = r
        .market
        .happened()
        .iter()
        .filter(|t| t.symbol == "ETH-USDT")
        .map(|t| t.trade_id)
        .collect();
    assert_eq!(got, want);
    for path in ["/api/v3/klines?symbol=BTCUSDT", "/ws", "/"] {
        let resp = http.get(format!("{}{path}", r.rest)).send().await.unwrap();
        assert_eq!(resp.status(), 404, "{path}");
        let body: serde_json::Value = resp.json().await.unwrap();
        assert_eq!(body["error"], "not found");
    }
}

#[tokio::test]
async fn drops_close_after_n_frames_and_leave_a_gap() {
    let faults = Faults {
        drop_every: Some(10),
        gap_on_drop: 5,
        ..Faults::default()
    };
    let r = start(opts(100, faults)).await;
    let mut ws = subscribe(&r.url, &both()).await;
    let (frames, closed) = collect(&mut ws, Duration::from_secs(3), usize::MAX).await;
    assert!(closed, "dropped");
    assert_eq!(frames.len(), 10);
    wait_until("the gap", || r.market.len() == 15).await;
    assert_eq!(r.sent.drops(), 1);

    let mut ws = subscribe(&r.url, &both()).await;
    let (again, closed) = collect(&mut ws, Duration::from_secs(3), usize::MAX).await;
    assert!(closed);
    let happened = ids_of(&r.market.happened());
    assert_eq!(ids(&frames), happened[..10]);
    assert_eq!(
        ids(&again),
        happened[15..25],
        "the 5 gap trades were missed"
    );
    let sent: BTreeSet<_> = ids(&frames).into_iter().chain(ids(&again)).collect();
    assert_eq!(r.sent.ids(), sent);
    assert_eq!(r.sent.connections(), 2);
}

#[tokio::test]
async fn the_last_trade_is_never_dropped_or_skipped() {
    let faults = Faults {
        drop_every: Some(5),
        skip_every: Some(6),
        ..Faults::default()
    };
    // 6 trades: the 6th would be skipped, but it is the last.
    let r = start(opts(6, faults)).await;
    let mut ws = subscribe(&r.url, &both()).await;
    let (frames, closed) = collect(&mut ws, IDLE, usize::MAX).await;
    assert!(closed, "dropped after 5");
    assert_eq!(frames.len(), 5);
    let mut ws = subscribe(&r.url, &both()).await;
    let (frames, closed) = collect(&mut ws, IDLE, usize::MAX).await;
    assert!(!closed);
    assert_eq!(ids(&frames), ids_of(&r.market.happened()[5..]));
}

#[tokio::test]
async fn duplicates_garbage_and_skips_come_exactly_every_nth() {
    let faults = Faults {
        duplicate_every: Some(4),
        garbage_every: Some(3),
        skip_every: Some(7),
        ..Faults::default()
    };
    let r = start(opts(30, faults)).await;
    let mut ws = subscribe(&r.url, &both()).await;
    let (frames, _) = collect(&mut ws, IDLE, usize::MAX).await;
    let happened = ids_of(&r.market.happened());
    // Offered trades 7, 14, 21, 28 are skipped (30 is last): 26 sent.
    let unsent: Vec<_> = [7, 14, 21, 28]
        .iter()
        .map(|i| happened[i - 1].clone())
        .collect();
    let sent: Vec<_> = happened
        .iter()
        .filter(|t| !unsent.contains(t))
        .cloned()
        .collect();
    let mut want = Vec::new();
    for (n, t) in sent.iter().enumerate() {
        let n = n + 1;
        want.push(Some(t.clone()));
        if n % 4 == 0 {
            want.push(Some(t.clone()));
        }
        if n % 3 == 0 {
            want.push(None);
        }
    }
    let got: Vec<Option<(String, String)>> = frames
        .iter()
        .map(|f| ids(std::slice::from_ref(f)).into_iter().next())
        .collect();
    assert_eq!(got, want);
    assert_eq!(r.sent.garbage_sent(), 8);
    assert_eq!(r.sent.frames_sent(), 26 + 6);
    assert_eq!(r.sent.ids(), sent.iter().cloned().collect::<BTreeSet<_>>());
    assert!(
        frames
            .iter()
            .any(|f| serde_json::from_str::<serde_json::Value>(f).is_err())
    );

    // The skipped trades are in the REST history.
    let http = reqwest::Client::new();
    for (symbol, id) in &unsent {
        let native = symbol.replace('-', "");
        let url = format!(
            "{}/api/v3/historicalTrades?symbol={native}&fromId={id}&limit=1",
            r.rest
        );
        let rows: Vec<serde_json::Value> =
            http.get(url).send().await.unwrap().json().await.unwrap();
        assert_eq!(rows[0]["id"].to_string(), *id);
    }
}

#[tokio::test]
async fn stalls_keep_the_socket_open_but_silent() {
    let faults = Faults {
        stall_every: Some(5),
        stall_for: Duration::from_millis(600),
        ..Faults::default()
    };
    let r = start(opts(8, faults)).await;
    let mut ws = subscribe(&r.url, &both()).await;
    let (first, closed) = collect(&mut ws, Duration::from_millis(300), usize::MAX).await;
    assert_eq!((first.len(), closed), (5, false));
    let (rest, closed) = collect(&mut ws, Duration::from_secs(2), 3).await;
    assert_eq!((rest.len(), closed), (3, false));
    assert_eq!(ids(&[first, rest].concat()), ids_of(&r.market.happened()));
}

#[tokio::test]
async fn rate_paces_the_market_on_the_wall_clock() {
    let o = ReplayOptions {
        rate: 100.0,
        ..opts(20, Faults::default())
    };
    let r = start(o).await;
    let t = Instant::now();
    wait_until("20 trades", || r.market.exhausted()).await;
    assert!(
        t.elapsed() >= Duration::from_millis(150),
        "{:?}",
        t.elapsed()
    );
    assert_eq!(r.market.len(), 20);
}

fn temp_file(name: &str, text: &str) -> std::path::PathBuf {
    let p = std::env::temp_dir().join(format!("tickcast-replay-{}-{name}", std::process::id()));
    std::fs::write(&p, text).unwrap();
    p
}

#[tokio::test]
async fn csv_and_frame_sources() {
    let csv = temp_file(
        "trades.csv",
        "event_time_ms,trade_time_ms,symbol,trade_id,price,qty,is_buyer_maker\n\
         11,10,BTCUSDT,100,61837.63000000,0.02000000,true\n\
         21,20,ETHUSDT,5,2500.10,1.5,false\n\
         31,30,BTCUSDT,101,61837.64000000,0.00100000,false\n",
    );
    let o = ReplayOptions {
        source: Source::TradesCsv(csv.clone()),
        live: true,
        live_from_ms: Some(0),
        ..opts(100, Faults::default())
    };
    let r = start(o).await;
    let mut ws = subscribe(&r.url, &both()).await;
    let (frames, _) = collect(&mut ws, IDLE, usize::MAX).await;
    let mut ticks = Vec::new();
    for f in &frames {
        Binance::trades().decode(f, 0, &mut ticks).unwrap();
    }
    let prices: Vec<String> = ticks.iter().map(|t| t.price.to_string()).collect();
    assert_eq!(prices, ["61837.63000000", "2500.10", "61837.64000000"]);
    assert_eq!(ticks[0].trade_id, "100");
    std::fs::remove_file(csv).unwrap();

    let lines = temp_file("frames.jsonl", "{\"a\":1}\n\n{\"b\":2}\n");
    let o = ReplayOptions {
        source: Source::Frames(lines.clone()),
        ..opts(100, Faults::default())
    };
    let r = start(o).await;
    let mut ws = subscribe(&r.url, &both()).await;
    let (frames, _) = collect(&mut ws, IDLE, usize::MAX).await;
    assert_eq!(frames, [r#"{"a":1}"#, r#"{"b":2}"#]);
    assert_eq!(r.sent.frames_sent(), 2);
    assert!(r.market.happened().is_empty());
    std::fs::remove_file(lines).unwrap();
}

#[tokio::test]
async fn unknown_exchanges_are_refused_with_the_known_names() {
    let o = ReplayOptions {
        exchange: "nope".into(),
        ..opts(1, Faults::default())
    };
    let err = ReplayServer::bind("127.0.0.1:0", o).await.unwrap_err();
    assert!(err.to_string().contains("binance, binance-agg"), "{err}");
}

/// Binance with a greeting and a heartbeat, to see both delivered.
#[derive(Debug)]
struct Chatty(BinanceSim);

impl ExchangeSim for Chatty {
    fn name(&self) -> &'static str {
        "binance"
    }
    fn greeting(&self) -> Vec<String> {
        vec![r#"{"hello":1}"#.into()]
    }
    fn heartbeat(&self) -> Option<String> {
        Some(r#"{"beat":1}"#.into())
    }
    fn on_client_text(&self, text: &str) -> ClientRequest {
        self.0.on_client_text(text)
    }
    fn trade_frame(&self, t: &SimTrade, event_ms: i64, path: &str) -> String {
        self.0.trade_frame(t, event_ms, path)
    }
    fn rest(&self, path_and_query: &str, happened: &[SimTrade]) -> Option<RestReply> {
        self.0.rest(path_and_query, happened)
    }
}

#[tokio::test]
async fn greetings_heartbeats_and_rejections_are_sent() {
    let o = ReplayOptions {
        heartbeat_every: Duration::from_millis(100),
        ..opts(3, Faults::default())
    };
    let server = ReplayServer::bind_with("127.0.0.1:0", o, Arc::new(Chatty(BinanceSim::trades())))
        .await
        .unwrap();
    let url = server.url().unwrap();
    let (_trigger, signal) = shutdown::channel();
    tokio::spawn(server.run(signal));
    let (mut ws, _) = connect_async(&url).await.unwrap();
    ws.send(Message::text("nope")).await.unwrap();
    let (frames, closed) = collect(&mut ws, Duration::from_millis(500), 4).await;
    assert!(!closed);
    assert_eq!(frames[0], r#"{"hello":1}"#);
    assert!(frames[1].contains(r#""code":3"#), "rejected: {}", frames[1]);
    assert_eq!(&frames[2..], [r#"{"beat":1}"#, r#"{"beat":1}"#]);
}

/// Bitstamp subscribes one channel per frame. The exchange keeps reading the client while it
/// streams: the second subscription takes effect at once, not after the market ran out, and a
/// drop never discards frames already sent (closing a socket with unread client frames would
/// reset it, and the client would lose what it had not read yet).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_subscribe_frame_per_symbol_while_streaming_and_across_drops() {
    use tickcast_ingest::exchanges::bitstamp::connector::Bitstamp;
    let faults = Faults {
        drop_every: Some(400),
        gap_on_drop: 25,
        ..Faults::default()
    };
    let r = start(ReplayOptions {
        exchange: "bitstamp".into(),
        ..opts(3_000, faults)
    })
    .await;
    let mut got = BTreeSet::new();
    let mut per_conn = Vec::new();
    for _ in 0..20 {
        let (mut ws, _) = connect_async(&r.url).await.unwrap();
        for req in Bitstamp.subscribe(&both()) {
            ws.send(Message::text(req)).await.unwrap();
        }
        // A second without frames ends a connection only once the market has run out: on a
        // loaded machine the replay server can pause that long mid-stream, and ending there
        // made the market look unfinished.
        let mut frames = Vec::new();
        let mut closed = false;
        for _ in 0..30 {
            let (more, was_closed) = collect(&mut ws, Duration::from_secs(1), usize::MAX).await;
            frames.extend(more);
            closed = was_closed;
            if closed || r.market.exhausted() {
                break;
            }
        }
        let mut ticks = Vec::new();
        let mut acks = 0;
        for f in &frames {
            if Bitstamp.decode(f, 0, &mut ticks) == Ok(Decoded::Ack) {
                acks += 1;
            }
        }
        assert_eq!(acks, 2, "both subscriptions acknowledged: {per_conn:?}");
        let symbols: BTreeSet<String> = ticks.iter().map(|t| t.symbol.clone()).collect();
        per_conn.push((ticks.len(), symbols, closed));
        got.extend(ticks.into_iter().map(|t| (t.symbol, t.trade_id)));
        if !closed {
            break; // the market ran out; the socket went idle
        }
    }
    assert!(r.market.exhausted(), "the market ran out: {per_conn:?}");
    assert!(r.sent.drops() >= 3, "{per_conn:?}");
    for (n, symbols, closed) in &per_conn {
        if *closed {
            assert_eq!(
                *n, 400,
                "a dropped connection got every frame sent: {per_conn:?}"
            );
            assert_eq!(symbols.len(), 2, "both symbols: {per_conn:?}");
        }
    }
    assert_eq!(
        got,
        r.sent.ids(),
        "what was sent is what arrived: {per_conn:?}"
    );
}

#[tokio::test]
async fn history_goes_to_the_first_subscriber_only() {
    // A live market whose simulated history starts a minute ago: that minute happens at once.
    let now = tickcast_core::now_ms();
    let o = ReplayOptions {
        live: true,
        history_to_first: true,
        ..ReplayOptions::new(SimConfig::default_symbols(7, now - 60_000))
    };
    let r = start(o).await;
    wait_until("the history", || r.market.len() > 20).await;
    let history = r.market.happened();
    let mut first = subscribe(&r.url, &both()).await;
    let (frames, _) = collect(&mut first, IDLE, history.len()).await;
    // Every trade of the history, in order, then whatever happened since.
    assert_eq!(ids(&frames), ids_of(&history));
    // A second connection starts at the market's end: none of the history again.
    let mut second = subscribe(&r.url, &both()).await;
    let (frames, _) = collect(&mut second, Duration::from_millis(1500), 10).await;
    let old: BTreeSet<(String, String)> = ids_of(&history).into_iter().collect();
    assert!(
        ids(&frames).iter().all(|t| !old.contains(t)),
        "the second connection was sent the history"
    );
}
