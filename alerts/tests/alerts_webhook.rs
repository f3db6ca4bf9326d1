//! Webhook delivery against a real HTTP server (axum on 127.0.0.1:0) that checks every
//! signature: an endpoint that fails the first tries and recovers receives every event
//! exactly once by id; one that keeps failing ends in dead-letter records after the last try;
//! one that rejects (400) is given up at once. On Postgres and SQLite.

mod alerts_common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use alerts_common::*;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use tickcast_alerts::webhook::{EVENT_ID_HEADER, SIGNATURE_HEADER, verify};
use tickcast_alerts::{AlertEvent, Deliverer, Secret, WebhookSettings};
use tickcast_core::codec;
use tickcast_core::shutdown;
use tickcast_core::stage::Handler as _;
use tickcast_store::{DeliveryQuery, DeliveryRow, DeliveryStatus, Store};

const SECRET: &str = "s3cret-for-tests";

#[derive(Debug, Default)]
struct Log {
    requests: usize,
    bad_signatures: usize,
    /// Requests without a signature header.
    unsigned: usize,
    /// Bodies answered 2xx, by event id, in order.
    accepted: Vec<(String, String)>,
}

#[derive(Debug, Clone)]
struct Endpoint {
    /// Answer `failure` to the first `fail_first` requests (with a valid signature).
    fail_first: usize,
    failure: StatusCode,
    /// Each answer takes this long.
    delay: Duration,
    log: Arc<Mutex<Log>>,
}

async fn receive(State(ep): State<Endpoint>, headers: HeaderMap, body: Bytes) -> StatusCode {
    tokio::time::sleep(ep.delay).await;
    let mut log = ep.log.lock().expect("log");
    log.requests += 1;
    if headers.get(SIGNATURE_HEADER).is_none() {
        log.unsigned += 1;
    }
    let sig = headers
        .get(SIGNATURE_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let id = headers
        .get(EVENT_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let event: Option<AlertEvent> = codec::decode(&body).ok();
    let content_json = headers
        .get("content-type")
        .is_some_and(|v| v == "application/json");
    if !verify(&Secret::new(SECRET), &body, sig)
        || event.is_none_or(|e| e.id != id)
        || !content_json
    {
        log.bad_signatures += 1;
        return StatusCode::UNAUTHORIZED;
    }
    if log.requests <= ep.fail_first {
        return ep.failure;
    }
    log.accepted
        .push((id, String::from_utf8_lossy(&body).into_owned()));
    StatusCode::NO_CONTENT
}

/// Starts an endpoint; returns its URL and log.
async fn endpoint(fail_first: usize, failure: StatusCode) -> (String, Arc<Mutex<Log>>) {
    slow_endpoint(fail_first, failure, Duration::ZERO).await
}

/// An endpoint that takes `delay` to answer each request.
async fn slow_endpoint(
    fail_first: usize,
    failure: StatusCode,
    delay: Duration,
) -> (String, Arc<Mutex<Log>>) {
    let log = Arc::new(Mutex::new(Log::default()));
    let app = axum::Router::new()
        .route("/hook", axum::routing::post(receive))
        .with_state(Endpoint {
            fail_first,
            failure,
            delay,
            log: log.clone(),
        });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}/hook"), log)
}

fn settings(name: &str, url: &str, max_tries: u32) -> WebhookSettings {
    let mut s = WebhookSettings::new(name, url, Secret::new(SECRET));
    s.backoff_base = Duration::from_millis(10);
    s.backoff_max = Duration::from_millis(80);
    s.max_tries = max_tries;
    s.timeout = Duration::from_secs(5);
    s.poll = Duration::from_millis(50);
    s
}

/// Firing/resolved alternating: 6 events over bars 0–5.
fn flipping_inputs() -> Vec<Vec<In>> {
    (0..6)
        .map(|b| {
            let p = if b % 2 == 0 { 150.0 } else { 50.0 };
            vec![In::F(fc("m", 1, b, 100.0, p, (p - 10.0, p + 10.0)))]
        })
        .collect()
}

/// A handle for endpoint `flaky` that no task serves (the test calls `pass` itself).
fn second_handle(store: &Arc<dyn Store>, url: &str) -> tickcast_alerts::webhook::WebhookHandle {
    Deliverer::new(store.clone(), settings("flaky", url, 10))
        .expect("client")
        .handle()
}

fn hook_rule() -> tickcast_alerts::Rule {
    rule(r#"{"id":"hook","interval":"1m","model":"m","horizon":1,"kind":"above","threshold":100}"#)
}

async fn rows(store: &dyn Store, endpoint: &str) -> Vec<DeliveryRow> {
    store
        .alert_deliveries(&DeliveryQuery {
            endpoint: Some(endpoint.into()),
            status: None,
            limit: 1_000,
        })
        .await
        .expect("deliveries")
}

/// Waits until every row of `endpoint` has `status`.
async fn settle(
    store: &dyn Store,
    endpoint: &str,
    n: usize,
    status: DeliveryStatus,
) -> Vec<DeliveryRow> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let r = rows(store, endpoint).await;
        if r.len() == n && r.iter().all(|d| d.status == status) {
            return r;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{endpoint} on {}: not all {status:?} in time: {r:?}",
            store.backend()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_failing_endpoint_that_recovers_gets_every_event_exactly_once() {
    const FAILURES: usize = 7;
    for (store, _dir) in stores("alerts_webhook_recovers").await {
        put_rules(store.as_ref(), &[hook_rule()]).await;
        let (url, log) = endpoint(FAILURES, StatusCode::INTERNAL_SERVER_ERROR).await;
        let deliverer = Deliverer::new(store.clone(), settings("flaky", &url, 10)).expect("client");
        let (trigger, signal) = shutdown::channel();
        let mut stage = stage(&store).with_webhook(deliverer.handle());
        let task = tokio::spawn(deliverer.run(signal));

        let events = drive(&mut stage, &mut Feed::new(), &flipping_inputs()).await;
        assert_eq!(events.len(), 6);
        stage.acknowledged(true).await.expect("checkpoint");
        let delivered = settle(
            store.as_ref(),
            "flaky",
            events.len(),
            DeliveryStatus::Delivered,
        )
        .await;

        {
            let log = log.lock().expect("log");
            assert_eq!(log.bad_signatures, 0);
            assert_eq!(log.requests, events.len() + FAILURES, "{}", store.backend());
            let mut got: BTreeMap<&str, usize> = BTreeMap::new();
            for (id, _) in &log.accepted {
                *got.entry(id.as_str()).or_default() += 1;
            }
            let want: BTreeMap<&str, usize> = events.iter().map(|e| (e.id.as_str(), 1)).collect();
            assert_eq!(got, want, "every event exactly once by id");
            for (id, body) in &log.accepted {
                let e = events.iter().find(|e| &e.id == id).expect("sent event");
                assert_eq!(
                    body.as_bytes(),
                    codec::encode(e).as_slice(),
                    "the body is the event"
                );
            }
        }
        let tries: i32 = delivered.iter().map(|d| d.attempts).sum();
        assert_eq!(tries as usize, events.len() + FAILURES);
        assert!(
            delivered
                .iter()
                .all(|d| d.last_error.is_none() == (d.attempts == 1))
        );

        // The same inputs again through a stage with no saved state (another consumer group,
        // as after a lost checkpoint): same event ids, so nothing is queued or sent again.
        let mut fresh = tickcast_alerts::AlertSettings::new(&Default::default(), "other-group");
        fresh.checkpoint_every = Duration::ZERO;
        let mut again = tickcast_alerts::AlertStage::new(fresh, store.clone())
            .with_webhook(second_handle(&store, &url));
        let replay = drive(&mut again, &mut Feed::new(), &flipping_inputs()).await;
        assert_eq!(replay, events);
        again.acknowledged(true).await.expect("checkpoint");
        let second = Deliverer::new(store.clone(), settings("flaky", &url, 10)).expect("client");
        assert_eq!(second.pass().await.expect("pass").tries(), 0);
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(log.lock().expect("log").requests, events.len() + FAILURES);
        assert_eq!(rows(store.as_ref(), "flaky").await, delivered);

        trigger.fire();
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .expect("deliverer stops")
            .expect("deliverer task");
    }
}

#[tokio::test]
async fn deliveries_dead_letter_after_the_last_try() {
    for (store, _dir) in stores("alerts_webhook_dead").await {
        put_rules(store.as_ref(), &[hook_rule()]).await;
        let (down_url, down_log) = endpoint(usize::MAX, StatusCode::SERVICE_UNAVAILABLE).await;
        let (rejects_url, rejects_log) = endpoint(usize::MAX, StatusCode::BAD_REQUEST).await;
        let down = Deliverer::new(store.clone(), settings("down", &down_url, 3)).expect("client");
        let rejects =
            Deliverer::new(store.clone(), settings("rejects", &rejects_url, 3)).expect("client");
        // Nothing listens here: connection refused is retried like a 5xx.
        let gone = Deliverer::new(
            store.clone(),
            settings("gone", "http://127.0.0.1:9/hook", 2),
        )
        .expect("client");
        let (trigger, signal) = shutdown::channel();
        let mut stage = stage(&store)
            .with_webhook(down.handle())
            .with_webhook(rejects.handle())
            .with_webhook(gone.handle());
        let tasks = [
            tokio::spawn(down.run(signal.clone())),
            tokio::spawn(rejects.run(signal.clone())),
            tokio::spawn(gone.run(signal)),
        ];

        let events = drive(&mut stage, &mut Feed::new(), &flipping_inputs()).await;
        stage.acknowledged(true).await.expect("checkpoint");
        let n = events.len();

        let dead = settle(store.as_ref(), "down", n, DeliveryStatus::Dead).await;
        assert!(dead.iter().all(|d| d.attempts == 3), "{dead:?}");
        assert!(
            dead.iter()
                .all(|d| d.last_error.as_deref() == Some("HTTP 503 Service Unavailable")),
            "{dead:?}"
        );
        assert_eq!(down_log.lock().expect("log").requests, 3 * n);

        let dead = settle(store.as_ref(), "rejects", n, DeliveryStatus::Dead).await;
        assert!(
            dead.iter().all(|d| d.attempts == 1),
            "a 400 is not retried: {dead:?}"
        );
        assert_eq!(rejects_log.lock().expect("log").requests, n);

        let dead = settle(store.as_ref(), "gone", n, DeliveryStatus::Dead).await;
        assert!(
            dead.iter().all(|d| d.attempts == 2
                && d.last_error
                    .as_deref()
                    .is_some_and(|e| e.starts_with("request failed"))),
            "{dead:?}"
        );

        let mut ids: Vec<String> = dead.iter().map(|d| d.event_id.clone()).collect();
        ids.sort();
        let mut want: Vec<String> = events.iter().map(|e| e.id.clone()).collect();
        want.sort();
        assert_eq!(ids, want, "one dead-letter record per event and endpoint");
        for log in [&down_log, &rejects_log] {
            let log = log.lock().expect("log");
            assert_eq!(log.bad_signatures, 0);
            assert!(log.accepted.is_empty());
        }
        trigger.fire();
        for t in tasks {
            tokio::time::timeout(Duration::from_secs(5), t)
                .await
                .expect("deliverer stops")
                .expect("deliverer task");
        }
    }
}

/// A 3xx is a failed try, never followed: the signed body reaches only the configured URL, and
/// the try's error names where the redirect pointed.
#[tokio::test]
async fn redirects_are_failed_tries_and_never_followed() {
    for (store, _dir) in stores("alerts_webhook_redirect").await {
        put_rules(store.as_ref(), &[hook_rule()]).await;
        let (target, target_log) = endpoint(0, StatusCode::OK).await;
        let location = target.clone();
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(move || {
                let to = location.clone();
                async move { (StatusCode::TEMPORARY_REDIRECT, [("location", to)]) }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
        tokio::spawn(async move { axum::serve(listener, app).await });
        let moved = Deliverer::new(store.clone(), settings("moved", &url, 2)).expect("client");
        let (trigger, signal) = shutdown::channel();
        let mut stage = stage(&store).with_webhook(moved.handle());
        let task = tokio::spawn(moved.run(signal));
        let events = drive(&mut stage, &mut Feed::new(), &flipping_inputs()).await;
        stage.acknowledged(true).await.expect("checkpoint");
        let dead = settle(store.as_ref(), "moved", events.len(), DeliveryStatus::Dead).await;
        let want = format!("HTTP 307 Temporary Redirect to {target}: redirects are not followed");
        assert!(
            dead.iter()
                .all(|d| d.attempts == 2 && d.last_error.as_deref() == Some(want.as_str())),
            "{dead:?}"
        );
        assert_eq!(
            target_log.lock().expect("log").requests,
            0,
            "followed a redirect"
        );
        trigger.fire();
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .expect("deliverer stops")
            .expect("deliverer task");
    }
}

/// `n` events: firing and resolved in turn, one per bar.
fn flipping(n: i64) -> Vec<Vec<In>> {
    (0..n)
        .map(|b| {
            let p = if b % 2 == 0 { 150.0 } else { 50.0 };
            vec![In::F(fc("m", 1, b, 100.0, p, (p - 10.0, p + 10.0)))]
        })
        .collect()
}

/// Events sent once each by id; panics naming the doubles.
fn once_each(log: &Log, events: &[AlertEvent]) {
    let mut got: BTreeMap<&str, usize> = BTreeMap::new();
    for (id, _) in &log.accepted {
        *got.entry(id.as_str()).or_default() += 1;
    }
    let want: BTreeMap<&str, usize> = events.iter().map(|e| (e.id.as_str(), 1)).collect();
    assert_eq!(got, want, "every event exactly once by id");
}

/// Two deliverers on one outbox (two alert processes) and an endpoint slower than the lease
/// would allow a whole batch: each delivery is leased on its own, so none is sent twice. A
/// second, fast endpoint gets every event while the slow one is still at it.
#[tokio::test]
async fn leases_are_per_delivery_and_a_slow_endpoint_holds_up_no_other() {
    for (store, _dir) in stores("alerts_webhook_leases").await {
        put_rules(store.as_ref(), &[hook_rule()]).await;
        let (slow_url, slow_log) =
            slow_endpoint(0, StatusCode::OK, Duration::from_millis(250)).await;
        let (fast_url, fast_log) = endpoint(0, StatusCode::OK).await;
        let slow = |name: &str| {
            let mut s = settings(name, &slow_url, 3);
            // Lease: 2 × 1 s + 1 s = 3 s, less than 20 tries of 250 ms.
            s.timeout = Duration::from_secs(1);
            Deliverer::new(store.clone(), s).expect("client")
        };
        let (a, b) = (slow("slow"), slow("slow"));
        let fast = Deliverer::new(store.clone(), settings("fast", &fast_url, 3)).expect("client");
        let mut stage = stage(&store)
            .with_webhook(a.handle())
            .with_webhook(fast.handle());
        let (trigger, signal) = shutdown::channel();
        let tasks = [
            tokio::spawn(a.run(signal.clone())),
            tokio::spawn(b.run(signal.clone())),
            tokio::spawn(fast.run(signal.clone())),
        ];
        let events = drive(&mut stage, &mut Feed::new(), &flipping(20)).await;
        assert_eq!(events.len(), 20);
        stage.acknowledged(true).await.expect("checkpoint");
        let queued = tokio::time::Instant::now();

        settle(store.as_ref(), "fast", 20, DeliveryStatus::Delivered).await;
        let slow_done = slow_log.lock().expect("log").accepted.len();
        assert!(
            slow_done < 20,
            "{}: the fast endpoint waited for the slow one ({slow_done} slow ones done after {:?})",
            store.backend(),
            queued.elapsed()
        );
        let delivered = settle(store.as_ref(), "slow", 20, DeliveryStatus::Delivered).await;
        for log in [&slow_log, &fast_log] {
            let log = log.lock().expect("log");
            assert_eq!(log.bad_signatures, 0);
            assert_eq!(log.requests, 20, "{}: requests", store.backend());
            once_each(&log, &events);
        }
        assert!(delivered.iter().all(|d| d.attempts == 1));

        trigger.fire();
        for t in tasks {
            tokio::time::timeout(Duration::from_secs(5), t)
                .await
                .expect("deliverer stops")
                .expect("deliverer task");
        }
    }
}

/// With an empty secret (allowed by `--alert-webhook-unsigned`) requests carry no signature
/// header at all, not a signature made with an empty key: this receiver, which checks
/// signatures, refuses them (401), and each delivery is dead after one try.
#[tokio::test]
async fn an_empty_secret_sends_unsigned_requests() {
    for (store, _dir) in stores("alerts_webhook_unsigned").await {
        put_rules(store.as_ref(), &[hook_rule()]).await;
        let (url, log) = endpoint(0, StatusCode::OK).await;
        let mut s = settings("unsigned", &url, 3);
        s.secret = Secret::new("");
        let deliverer = Deliverer::new(store.clone(), s).expect("client");
        let mut stage = stage(&store).with_webhook(deliverer.handle());
        let events = drive(&mut stage, &mut Feed::new(), &flipping(4)).await;
        stage.acknowledged(true).await.expect("checkpoint");
        assert_eq!(deliverer.pass().await.expect("pass").dead, 4);
        let dead = settle(store.as_ref(), "unsigned", 4, DeliveryStatus::Dead).await;
        assert!(
            dead.iter()
                .all(|d| d.last_error.as_deref() == Some("HTTP 401 Unauthorized"))
        );
        let log = log.lock().expect("log");
        assert_eq!((log.requests, log.unsigned), (events.len(), events.len()));
    }
}
