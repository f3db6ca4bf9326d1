//! The HTTP API against a real store: every endpoint, and bad parameters answered with a 4xx
//! whose JSON body names the field (never a 500).

#![allow(clippy::unwrap_used)] // tests fail loudly by design

mod common;

use std::collections::BTreeMap;

use common::Mode;
use rust_decimal::Decimal;
use serde_json::Value;
use tickcast_core::domain::{
    Candle, FORECAST_VERSION, Forecast, Name, SCHEMA_VERSION, TouchCalibration,
};
use tickcast_core::shutdown;
use tickcast_store::{AccuracyRow, Checkpoint};
use tickcast_store::{Pos, SinkBatch};

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

fn forecast(model: &str, horizon: u32, base_minute: i64) -> Forecast {
    let last = 100.0 + base_minute as f64;
    Forecast {
        v: SCHEMA_VERSION,
        exchange: "binance".into(),
        symbol: "BTC-USDT".into(),
        interval: "1m".into(),
        model: model.into(),
        horizon,
        base_ms: base_minute * 60_000,
        target_ms: (base_minute + i64::from(horizon)) * 60_000,
        last,
        point: last + 0.5,
        lo80: last - 1.0,
        hi80: last + 1.0,
        lo95: last - 2.0,
        hi95: last + 2.0,
        ..Default::default()
    }
}

fn pos(topic: &str, offset: i64) -> Pos {
    Pos {
        topic: topic.into(),
        partition: 0,
        offset,
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
    // Forecasts for bars 0..30 of two models and two horizons, written in two batches, the
    // second redelivering an old one: `latest` keeps the newest base bar of each.
    let mut fs: Vec<Forecast> = Vec::new();
    for m in 0..30 {
        for model in ["naive", "ensemble"] {
            for h in [1, 5] {
                fs.push(forecast(model, h, m));
            }
        }
    }
    let first = SinkBatch {
        forecasts: fs[..80]
            .iter()
            .enumerate()
            .map(|(i, f)| (pos("f", i as i64), f.clone()))
            .collect(),
        offsets: BTreeMap::from([(("f".into(), 0), 80)]),
        ..Default::default()
    };
    store.write_batch("sink", &first).await.unwrap();
    let second = SinkBatch {
        forecasts: fs[80..]
            .iter()
            .chain([&forecast("naive", 1, 3)])
            .enumerate()
            .map(|(i, f)| (pos("f", 80 + i as i64), f.clone()))
            .collect(),
        offsets: BTreeMap::from([(("f".into(), 0), 121)]),
        ..Default::default()
    };
    store.write_batch("sink", &second).await.unwrap();
    let old_alone = SinkBatch {
        forecasts: vec![(pos("f", 121), forecast("ensemble", 5, 2))],
        offsets: BTreeMap::from([(("f".into(), 0), 122)]),
        ..Default::default()
    };
    store.write_batch("sink", &old_alone).await.unwrap();
    store
        .save_checkpoint(
            "forecast",
            &Checkpoint {
                accuracy: vec![AccuracyRow {
                    exchange: "binance".into(),
                    symbol: "BTC-USDT".into(),
                    interval: "1m".into(),
                    model: "ensemble".into(),
                    horizon: 1,
                    ts_ms: 1_740_000,
                    n: 29,
                    mae: 0.5,
                    rmse: 0.5,
                    mase: Some(0.5),
                    rel_mae: Some(1.0),
                    coverage80: 1.0,
                    coverage95: 1.0,
                    winkler95: 4.0,
                    directional_accuracy: None,
                    crps: Some(0.25),
                    crps_rel: Some(0.5),
                    pit_max_err: Some(0.125),
                    touch_brier: Some(0.1875),
                    touch_brier_rel: Some(0.75),
                    touch_ece: Some(0.0625),
                }],
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (trigger, signal) = shutdown::channel();
    let server = tokio::spawn(tickcast_api::serve(
        listener,
        tickcast_api::AppState::new(store.clone()),
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
    // Every answer says nosniff and no-referrer; the dashboard page also its CSP and no framing.
    for path in ["/", "/healthz", "/api/v1/nope", "/assets/app.js"] {
        let r = http.get(format!("{base}{path}")).send().await.unwrap();
        let h = r.headers();
        assert_eq!(h["x-content-type-options"], "nosniff", "{path}");
        assert_eq!(h["referrer-policy"], "no-referrer", "{path}");
        if path == "/" {
            assert_eq!(h["x-frame-options"], "DENY");
            assert_eq!(
                h["content-security-policy"],
                tickcast_api::dashboard::CONTENT_SECURITY_POLICY
            );
            assert!(
                tickcast_api::dashboard::CONTENT_SECURITY_POLICY.contains("script-src 'self';")
            );
        }
    }
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
    // An empty range is an empty page, not an error.
    let (status, body) = get("/api/v1/candles?from=600000&to=300000").await;
    assert_eq!(
        (
            status,
            serde_json::from_str::<Value>(&body).unwrap()["count"].as_u64()
        ),
        (200, Some(0))
    );
    let (_, body) = get("/api/v1/forecasts?symbol=ETH-USDT").await;
    assert_eq!(serde_json::from_str::<Value>(&body).unwrap()["count"], 0);
    let (_, body) = get("/api/v1/forecasts?symbol=BTC-USDT&model=naive&horizon=5&limit=2").await;
    let page: Value = serde_json::from_str(&body).unwrap();
    let bases: Vec<i64> = page["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["base_ms"].as_i64().unwrap())
        .collect();
    assert_eq!(bases, vec![28 * 60_000, 29 * 60_000], "{body}");

    // Latest: one row per model and horizon, each from the newest base bar (29), in key order.
    let (status, body) = get("/api/v1/forecasts/latest?symbol=BTC-USDT").await;
    assert_eq!(status, 200, "{body}");
    let page: Value = serde_json::from_str(&body).unwrap();
    let rows: Vec<(String, i64, i64, f64)> = page["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["model"].as_str().unwrap().to_string(),
                f["horizon"].as_i64().unwrap(),
                f["base_ms"].as_i64().unwrap(),
                f["point"].as_f64().unwrap(),
            )
        })
        .collect();
    let at = 29 * 60_000;
    assert_eq!(
        rows,
        vec![
            ("ensemble".to_string(), 1, at, 129.5),
            ("ensemble".to_string(), 5, at, 129.5),
            ("naive".to_string(), 1, at, 129.5),
            ("naive".to_string(), 5, at, 129.5),
        ]
    );
    let (_, body) = get("/api/v1/forecasts/latest?model=naive&horizon=1").await;
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["count"],
        1,
        "{body}"
    );

    // Series and accuracy.
    let (status, body) = get("/api/v1/symbols").await;
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        v["data"],
        serde_json::json!([{"exchange": "binance", "symbol": "BTC-USDT", "interval": "1m",
            "candles": 30, "first_open_ms": 0, "last_open_ms": 29 * 60_000}]),
        "{body}"
    );
    let (status, body) = get("/api/v1/accuracy?model=ensemble").await;
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["count"], 1);
    assert_eq!(v["data"][0]["rel_mae"], Value::from(1.0));
    assert_eq!(v["data"][0]["winkler95"], Value::from(4.0));
    // The scores of version 2's fields, exactly as saved.
    for (field, want) in [
        ("crps", 0.25),
        ("crps_rel", 0.5),
        ("pit_max_err", 0.125),
        ("touch_brier", 0.1875),
        ("touch_brier_rel", 0.75),
        ("touch_ece", 0.0625),
    ] {
        assert_eq!(v["data"][0][field], Value::from(want), "{field}: {body}");
    }
    let (_, body) = get("/api/v1/accuracy?model=naive").await;
    assert_eq!(serde_json::from_str::<Value>(&body).unwrap()["count"], 0);

    // Ops: readiness (store only: this server has no broker) from the background probe, which
    // says how old its answer is; the OpenAPI document; and no live stream without a broker.
    let (status, body) = get("/readyz").await;
    assert_eq!(status, 200, "{body}");
    let mut ready: Value = serde_json::from_str(&body).unwrap();
    let age = ready.as_object_mut().unwrap().remove("age_ms");
    assert!(age.is_some_and(|a| a.is_u64()), "{body}");
    assert_eq!(
        ready,
        serde_json::json!({"ready": true, "checks": [{"name": "store", "ok": true}]})
    );
    let (status, body) = get("/openapi.json").await;
    assert_eq!(status, 200);
    let doc: Value = serde_json::from_str(&body).unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    for path in [
        "/api/v1/symbols",
        "/api/v1/candles",
        "/api/v1/forecasts",
        "/api/v1/forecasts/latest",
        "/api/v1/accuracy",
        "/api/v1/probability",
        "/api/v1/stream",
        "/healthz",
        "/readyz",
        "/metrics",
    ] {
        assert!(
            doc["paths"][path]["get"].is_object(),
            "{path} missing from the OpenAPI document"
        );
    }
    // The probability's parameters are required in the document as in the handler (a client
    // generated from it must send them).
    let required: Vec<&str> = doc["paths"]["/api/v1/probability"]["get"]["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["required"] == Value::Bool(true))
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        required,
        ["exchange", "symbol", "interval", "horizon", "level"]
    );
    let (status, body) = get("/api/v1/stream").await;
    assert_eq!(status, 503, "{body}");

    // The probability of a level by the newest forecast: the ensemble's at 1 bar was made at
    // bar 29 (last 129, point 129.5, 80% 128–130, 95% 127–131).
    let (status, body) =
        get("/api/v1/probability?exchange=binance&symbol=BTC-USDT&interval=1m&horizon=1&level=131")
            .await;
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    use tickcast_forecast::Z95;
    use tickcast_forecast::scoring::touch::{above_probability, touch_probability};
    let newest = forecast("ensemble", 1, 29);
    assert_eq!(v["level"], Value::from(131.0));
    assert_eq!(
        v["above"].as_f64(),
        above_probability(129.5, 128.0, 130.0, 127.0, 131.0, 131.0)
    );
    assert!(
        (v["above"].as_f64().unwrap() - 0.025).abs() < 1e-6,
        "{body}"
    );
    let touch = touch_probability(
        (131.0f64 / 129.0).ln(),
        (129.5f64 / 129.0).ln(),
        (131.0f64 / 129.5).ln() / Z95,
    );
    assert_eq!(v["touch"].as_f64(), Some(touch));
    // Touching a level is likelier than closing beyond it.
    assert!(touch > 0.025 && touch < 1.0, "{touch}");
    let f: Forecast = serde_json::from_value(v["forecast"].clone()).unwrap();
    assert_eq!(f, newest);
    // Another model, and the point itself: even odds.
    let (status, body) = get(
        "/api/v1/probability?exchange=binance&symbol=BTC-USDT&interval=1m&model=naive&horizon=5&level=129.5",
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert!((v["above"].as_f64().unwrap() - 0.5).abs() < 1e-6, "{body}");
    assert_eq!(v["forecast"]["model"], Value::from("naive"));
    // No such series: 404 saying which.
    let (status, body) =
        get("/api/v1/probability?exchange=binance&symbol=ETH-USDT&interval=1m&horizon=1&level=10")
            .await;
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("ETH-USDT"), "{body}");
    let ok = "/api/v1/probability?exchange=binance&symbol=BTC-USDT&interval=1m&horizon=1";
    let probability_cases = [
        (ok.to_string(), "level"),
        (format!("{ok}&level=-1"), "level"),
        (format!("{ok}&level=0"), "level"),
        (format!("{ok}&level=abc"), "level"),
        (format!("{ok}&level=NaN"), "level"),
        (
            "/api/v1/probability?exchange=binance&symbol=BTC-USDT&interval=1m&level=1".to_string(),
            "horizon",
        ),
        (
            "/api/v1/probability?symbol=BTC-USDT&interval=1m&horizon=1&level=1".to_string(),
            "exchange",
        ),
        (format!("{ok}&level=1&colour=red"), "colour"),
    ];
    for (path, field) in probability_cases {
        let (status, body) = get(&path).await;
        assert_eq!(status, 400, "{path}: {body}");
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["field"], Value::from(field), "{path}: {body}");
    }

    // Bad parameters: 400 with the field named.
    let cases = [
        ("/api/v1/candles?symbol=btcusdt", Some("symbol")),
        ("/api/v1/candles?interval=7w", Some("interval")),
        ("/api/v1/candles?exchange=Binance", Some("exchange")),
        ("/api/v1/candles?limit=0", Some("limit")),
        ("/api/v1/candles?limit=10001", Some("limit")),
        ("/api/v1/forecasts?horizon=0", Some("horizon")),
        ("/api/v1/candles?limit=abc", Some("limit")),
        ("/api/v1/candles?colour=red", Some("colour")),
        ("/api/v1/candles?horizon=1", Some("horizon")),
        ("/api/v1/forecasts/latest?horizon=-3", Some("horizon")),
        ("/api/v1/forecasts/latest?symbol=BTC_USDT", Some("symbol")),
        ("/api/v1/accuracy?limit=0", Some("limit")),
        ("/api/v1/accuracy?from=1", Some("from")),
        ("/api/v1/stream?kinds=bars", Some("kinds")),
        ("/api/v1/stream?symbols=btc", Some("symbols")),
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
    let (status, body) = get("/api/v1/nothing").await;
    assert_eq!(status, 404);
    assert!(serde_json::from_str::<Value>(&body).unwrap()["error"].is_string());
    let r = http
        .post(format!("{base}/api/v1/candles"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 405);

    // A version 2 forecast is served with its quantiles, touch calibration, model version and
    // degraded flag, exactly; a version 1 forecast without them. (Written last: the rows above
    // are the only ones the earlier answers count.)
    let version: Name = "ets.r2.5c1f09ab".into();
    let v2 = Forecast {
        v: FORECAST_VERSION,
        quantiles: Some([
            -0.0, 1e-300, 126.5, 127.25, 129.5, 130.0, 130.75, 131.0, 1e300,
        ]),
        touch: Some(TouchCalibration {
            alpha: -0.123_456_789_012_345_67,
            beta: 1.000_000_000_000_000_2,
        }),
        model_version: Some(version),
        degraded: Some(true),
        ..forecast("ets", 1, 29)
    };
    store
        .write_batch(
            "sink",
            &SinkBatch {
                forecasts: vec![(pos("f", 122), v2.clone())],
                offsets: BTreeMap::from([(("f".into(), 0), 123)]),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    for path in [
        "/api/v1/forecasts?model=ets",
        "/api/v1/forecasts/latest?model=ets",
    ] {
        let (status, body) = get(path).await;
        assert_eq!(status, 200, "{path}: {body}");
        let page: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(page["count"], 1, "{path}: {body}");
        let f = &page["data"][0];
        assert_eq!(f["v"], 2, "{path}: {body}");
        assert_eq!(f["model_version"], "ets.r2.5c1f09ab", "{path}: {body}");
        assert_eq!(f["degraded"], true, "{path}: {body}");
        assert_eq!(f["touch"]["alpha"], -0.123_456_789_012_345_67, "{body}");
        let back: Forecast = serde_json::from_value(f.clone()).unwrap();
        assert_eq!(back, v2, "{path}: {body}");
        let bits = |f: &Forecast| f.quantiles.map(|qs| qs.map(f64::to_bits));
        assert_eq!(bits(&back), bits(&v2), "{path}: {body}");
    }
    // The probability of a level by a version 2 forecast: from its nine quantiles and through
    // its touch calibration, as the library computes them.
    let v2 = Forecast {
        v: FORECAST_VERSION,
        quantiles: Some([
            126.0, 126.8, 127.6, 128.6, 129.5, 130.1, 131.2, 131.9, 132.4,
        ]),
        touch: Some(TouchCalibration {
            alpha: -0.4,
            beta: 1.3,
        }),
        model_version: Some("lstm.r1.0a9b3c2d.t720".into()),
        degraded: Some(false),
        ..forecast("lstm", 1, 29)
    };
    store
        .write_batch(
            "sink",
            &SinkBatch {
                forecasts: vec![(pos("f", 123), v2.clone())],
                offsets: BTreeMap::from([(("f".into(), 0), 124)]),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let (status, body) =
        get("/api/v1/probability?exchange=binance&symbol=BTC-USDT&interval=1m&model=lstm&horizon=1&level=131.5").await;
    assert_eq!(status, 200, "{body}");
    let p: Value = serde_json::from_str(&body).unwrap();
    use tickcast_forecast::scoring::touch::{above_of, touch_of};
    let (above, touch) = (above_of(&v2, 131.5).unwrap(), touch_of(&v2, 131.5).unwrap());
    assert_eq!(p["above"], Value::from(above), "{body}");
    assert_eq!(p["touch"], Value::from(touch), "{body}");
    // Between the 90% (131.2) and 95% (131.9) quantiles.
    assert!(above > 0.05 && above < 0.1, "{above}");
    assert_eq!(p["forecast"]["model_version"], "lstm.r1.0a9b3c2d.t720");

    let (_, body) = get("/api/v1/forecasts/latest?model=naive&horizon=5").await;
    let f = &serde_json::from_str::<Value>(&body).unwrap()["data"][0];
    assert_eq!(f["v"], 1, "{body}");
    for field in ["quantiles", "touch", "model_version", "degraded"] {
        assert!(f.get(field).is_none(), "{field}: {body}");
    }

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

/// Alert rules through the API: auth on every mutation (401 without or with a wrong token,
/// 403 when the server has none, never a 500), create → 201, replace → 200, read, delete →
/// 204 then 404, validation errors naming the field, and events with filters.
async fn alerts_api(mode: Mode) {
    let Some((store, _dir)) = common::open_store(mode, "api_alerts").await else {
        return;
    };
    let token = "t0ken-for-tests";
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (trigger, signal) = shutdown::channel();
    let server = tokio::spawn(tickcast_api::serve(
        listener,
        tickcast_api::AppState::new(store.clone()).with_token(Some(token)),
        signal.clone(),
    ));
    let ro_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let ro_base = format!("http://{}", ro_listener.local_addr().unwrap());
    let ro_server = tokio::spawn(tickcast_api::serve(
        ro_listener,
        tickcast_api::AppState::new(store.clone()),
        signal,
    ));
    let http = reqwest::Client::new();
    let rule = serde_json::json!({
        "id": "btc-high", "symbol": "BTC-USDT", "interval": "1m", "model": "ensemble",
        "horizon": 5, "kind": "above", "on": "lo95", "threshold": 70000.0, "for": "3m",
        "hysteresis": 100.0
    });
    let put = |base: &str, id: &str, body: &Value, auth: Option<&str>| {
        let mut req = http
            .put(format!("{base}/api/v1/alerts/rules/{id}"))
            .json(body);
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        async move {
            let r = req.send().await.unwrap();
            let status = r.status().as_u16();
            (status, r.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let bearer = format!("Bearer {token}");

    // Auth first: nothing is written without the right token.
    assert_eq!(put(&base, "btc-high", &rule, None).await.0, 401);
    assert_eq!(
        put(&base, "btc-high", &rule, Some("Bearer nope")).await.0,
        401
    );
    assert_eq!(put(&base, "btc-high", &rule, Some(token)).await.0, 401);
    let (status, body) = put(&ro_base, "btc-high", &rule, Some(&bearer)).await;
    assert_eq!(status, 403, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("TICKCAST_API_TOKEN")
    );
    let r = http
        .delete(format!("{base}/api/v1/alerts/rules/btc-high"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    assert!(store.alert_rules().await.unwrap().is_empty());

    // Create, replace, read.
    let (status, body) = put(&base, "btc-high", &rule, Some(&bearer)).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["rule"]["threshold"], 70000.0);
    assert_eq!(body["source"], "api");
    let mut changed = rule.clone();
    changed["threshold"] = 71000.0.into();
    assert_eq!(put(&base, "btc-high", &changed, Some(&bearer)).await.0, 200);
    let v: Value = http
        .get(format!("{base}/api/v1/alerts/rules/btc-high"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["rule"]["threshold"], 71000.0);
    assert_eq!(v["rule"]["for"], "3m");
    let v: Value = http
        .get(format!("{base}/api/v1/alerts/rules"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["count"], 1);

    // Validation: 400 naming the field.
    let bad = |field: &str, value: Value| {
        let mut b = rule.clone();
        b[field] = value;
        b
    };
    let cases = [
        (bad("threshold", Value::from("high")), "threshold"),
        (bad("horizon", Value::from(0)), "horizon"),
        (bad("symbol", Value::from("btc")), "symbol"),
        (bad("kind", Value::from("sideways")), "kind"),
        (bad("id", Value::from("other")), "id"),
        (bad("colour", Value::from("red")), "body"),
    ];
    for (body, field) in cases {
        let (status, v) = put(&base, "btc-high", &body, Some(&bearer)).await;
        assert_eq!(status, 400, "{field}: {v}");
        assert!(
            v["field"].as_str().is_some_and(|f| f.contains(field)) || field == "body",
            "{field}: {v}"
        );
    }
    let r = http
        .put(format!("{base}/api/v1/alerts/rules/btc-high"))
        .header("authorization", &bearer)
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    let r = http
        .put(format!("{base}/api/v1/alerts/rules/Bad%20Id"))
        .header("authorization", &bearer)
        .json(&rule)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    let r = http
        .put(format!("{base}/api/v1/alerts/rules/btc-high"))
        .header("authorization", &bearer)
        .body(vec![b' '; 100 * 1024])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 413);
    assert_eq!(
        r.headers()["content-type"].to_str().unwrap(),
        "application/json"
    );
    let body: Value = r.json().await.unwrap();
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|e| e.starts_with("request body larger than the limit of ")),
        "{body}"
    );

    // Events, newest first, filtered.
    let (status, v) = {
        let r = http
            .get(format!(
                "{base}/api/v1/alerts/events?symbol=BTC-USDT&state=firing"
            ))
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json::<Value>().await.unwrap())
    };
    assert_eq!((status, v["count"].as_u64()), (200, Some(0)), "{v}");
    let r = http
        .get(format!("{base}/api/v1/alerts/events?state=burning"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);

    // Delete: 204, then 404.
    for expect in [204, 404] {
        let r = http
            .delete(format!("{base}/api/v1/alerts/rules/btc-high"))
            .header("authorization", &bearer)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), expect);
    }
    assert!(store.alert_rules().await.unwrap().is_empty());
    trigger.fire();
    server.await.unwrap().unwrap();
    ro_server.await.unwrap().unwrap();
}

#[tokio::test]
async fn alerts_api_on_postgres() {
    alerts_api(Mode::Real).await;
}

#[tokio::test]
async fn alerts_api_on_sqlite() {
    alerts_api(Mode::Embedded).await;
}
