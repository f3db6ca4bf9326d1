//! The HTTP API against a real store: every endpoint, and bad parameters answered with a 4xx
//! whose JSON body names the field (never a 500).

#![allow(clippy::unwrap_used)] // tests fail loudly by design

mod common;

use std::collections::BTreeMap;

use common::Mode;
use rust_decimal::Decimal;
use serde_json::Value;
use tickcast_consumers::store::{Pos, SinkBatch};
use tickcast_pipeline::domain::{Candle, SCHEMA_VERSION};
use tickcast_pipeline::shutdown;

fn candle(minute: i64) -> Candle {
    let p = Decimal::new(100 + minute, 0);
    Candle {
        v: SCHEMA_VERSION,
        exchange: "binance".into(),
        symbol: "BTC-USDT".into(),
        interval: "1m".into(),
        open_ms: minute * 60_000,
        close_ms: (minute + 1) * 60_000,
        open: p,
        high: p,
        low: p,
        close: p,
        volume: Decimal::ONE,
        trades: 1,
    }
}

async fn api(mode: Mode) {
    let Some((store, _dir)) = common::open_store(mode, "api").await else {
        return;
    };
    let batch = SinkBatch {
        candles: (0..30)
            .map(|i| {
                (
                    Pos {
                        topic: "c".into(),
                        partition: 0,
                        offset: i,
                    },
                    candle(i),
                )
            })
            .collect(),
        offsets: BTreeMap::from([(("c".into(), 0), 30)]),
        ..Default::default()
    };
    store.write_batch("sink", &batch).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (trigger, signal) = shutdown::channel();
    let server = tokio::spawn(tickcast_api::serve(
        listener,
        tickcast_api::AppState { store },
        signal,
    ));
    let http = reqwest::Client::new();
    let get = |path: &str| {
        let req = http.get(format!("{base}{path}"));
        async move {
            let r = req.send().await.unwrap();
            let status = r.status().as_u16();
            (status, r.text().await.unwrap())
        }
    };

    assert_eq!(get("/healthz").await, (200, "ok".to_string()));
    let (status, metrics) = get("/metrics").await;
    assert_eq!(status, 200);
    assert!(
        metrics.is_empty() || metrics.contains("# TYPE"),
        "{metrics}"
    );

    // Newest `limit` rows in range, oldest first.
    let (status, body) = get("/api/v1/candles?symbol=BTC-USDT&from=300000&to=900000&limit=3").await;
    assert_eq!(status, 200, "{body}");
    let page: Value = serde_json::from_str(&body).unwrap();
    let opens: Vec<i64> = page["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["open_ms"].as_i64().unwrap())
        .collect();
    assert_eq!(
        (page["count"].as_u64(), opens),
        (Some(3), vec![720_000, 780_000, 840_000])
    );
    assert_eq!(page["data"][0]["close"], Value::from("112"));
    let (_, body) = get("/api/v1/forecasts?symbol=BTC-USDT").await;
    assert_eq!(serde_json::from_str::<Value>(&body).unwrap()["count"], 0);

    // Bad parameters: 400 with the field named.
    let cases = [
        ("/api/v1/candles?symbol=btcusdt", Some("symbol")),
        ("/api/v1/candles?interval=7w", Some("interval")),
        ("/api/v1/candles?exchange=Binance", Some("exchange")),
        ("/api/v1/candles?limit=0", Some("limit")),
        ("/api/v1/candles?limit=10001", Some("limit")),
        ("/api/v1/candles?from=10&to=5", Some("from")),
        ("/api/v1/forecasts?horizon=0", Some("horizon")),
        ("/api/v1/candles?limit=abc", None),
        ("/api/v1/candles?colour=red", None),
        ("/api/v1/candles?horizon=1", None),
    ];
    for (path, field) in cases {
        let (status, body) = get(path).await;
        assert_eq!(status, 400, "{path}: {body}");
        let v: Value =
            serde_json::from_str(&body).unwrap_or_else(|_| panic!("{path}: not JSON: {body}"));
        assert!(
            v["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{path}: {body}"
        );
        if let Some(f) = field {
            assert_eq!(v["field"], Value::from(f), "{path}: {body}");
        }
    }
    let (status, _) = get("/api/v1/nothing").await;
    assert_eq!(status, 404);

    trigger.fire();
    server.await.unwrap().unwrap();
}

#[tokio::test]
async fn api_on_postgres() {
    api(Mode::Real).await;
}

#[tokio::test]
async fn api_on_sqlite() {
    api(Mode::Embedded).await;
}
