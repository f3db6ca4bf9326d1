//! Every message type, encoded from real values, validates against its JSON Schema in
//! `schemas/`; documents that break the schema are rejected by the schema and by the decoder,
//! with an error that names the problem.

use std::path::PathBuf;

use rust_decimal::Decimal;
use serde_json::{Value, json};
use tickcast_core::codec::{self, DecodeError};
use tickcast_core::deadletter::DeadLetter;
use tickcast_core::domain::{
    Alert, AlertState, Candle, FORECAST_VERSION, Forecast, SCHEMA_VERSION, Side, Tick,
    TouchCalibration,
};

fn schema(name: &str) -> jsonschema::Validator {
    schema_v(name, 1)
}

fn schema_v(name: &str, v: u32) -> jsonschema::Validator {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../schemas")
        .join(format!("{name}.v{v}.json"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let value: Value = serde_json::from_str(&text).expect("schema is JSON");
    jsonschema::draft202012::new(&value).unwrap_or_else(|e| panic!("{name} schema: {e}"))
}

fn assert_valid(v: &jsonschema::Validator, doc: &Value) {
    let errors: Vec<String> = v
        .iter_errors(doc)
        .map(|e| format!("{} at {}", e, e.instance_path))
        .collect();
    assert!(errors.is_empty(), "{doc} violates its schema: {errors:?}");
}

fn tick() -> Tick {
    Tick {
        v: SCHEMA_VERSION,
        exchange: "binance".into(),
        symbol: "BTC-USDT".into(),
        trade_id: "3712047611".into(),
        price: "61234.10000000".parse().expect("decimal"),
        size: "0.00120000".parse().expect("decimal"),
        side: Side::Sell,
        ts_ms: 1_723_075_200_122,
        ingested_ms: 1_723_075_200_150,
    }
}

fn candle() -> Candle {
    Candle {
        v: SCHEMA_VERSION,
        exchange: "coinbase".into(),
        symbol: "ETH-USD".into(),
        interval: "1m".into(),
        open_ms: 1_723_075_200_000,
        close_ms: 1_723_075_260_000,
        open: Decimal::new(252_101, 2),
        high: Decimal::new(252_300, 2),
        low: Decimal::new(251_900, 2),
        close: Decimal::new(252_250, 2),
        volume: Decimal::new(1_234_567_890, 8),
        trades: 418,
    }
}

fn forecast() -> Forecast {
    Forecast {
        v: SCHEMA_VERSION,
        exchange: "binance".into(),
        symbol: "BTC-USDT".into(),
        interval: "1m".into(),
        model: "naive".into(),
        horizon: 5,
        base_ms: 1_723_075_200_000,
        target_ms: 1_723_075_500_000,
        last: 61_234.1,
        point: 61_234.1,
        lo80: 61_100.0,
        hi80: 61_370.0,
        lo95: 61_020.5,
        hi95: 61_450.25,
        ..Default::default()
    }
}

/// A version 2 forecast: [`forecast`] with its distribution, touch calibration, model version
/// and degraded flag.
fn forecast_v2() -> Forecast {
    Forecast {
        v: FORECAST_VERSION,
        quantiles: Some([
            61_020.5, 61_060.0, 61_100.0, 61_170.0, 61_234.1, 61_300.0, 61_370.0, 61_410.0,
            61_450.25,
        ]),
        touch: Some(TouchCalibration {
            alpha: -0.05,
            beta: 1.1,
        }),
        model_version: Some("naive.r1.0c4e2b7d".into()),
        degraded: Some(false),
        ..forecast()
    }
}

fn alert() -> Alert {
    Alert {
        v: SCHEMA_VERSION,
        id: "above-70k:binance:BTC-USDT:naive:5:1723075200000:firing".into(),
        rule: "above-70k".into(),
        exchange: "binance".into(),
        symbol: "BTC-USDT".into(),
        interval: "1m".into(),
        model: "naive".into(),
        horizon: 5,
        state: AlertState::Firing,
        ts_ms: 1_723_075_200_000,
        value: 70_012.5,
        threshold: 70_000.0,
        message: "hi95 above 70000".into(),
    }
}

#[test]
fn encoded_messages_validate_and_round_trip() {
    let t = tick();
    let doc: Value = serde_json::from_slice(&codec::encode(&t)).expect("json");
    assert_valid(&schema("tick"), &doc);
    assert_eq!(
        doc["price"],
        json!("61234.10000000"),
        "decimal digits kept as text"
    );
    assert_eq!(codec::decode::<Tick>(&codec::encode(&t)), Ok(t));

    let c = candle();
    assert_valid(&schema("candle"), &serde_json::to_value(&c).expect("json"));
    assert_eq!(codec::decode::<Candle>(&codec::encode(&c)), Ok(c));

    // Version 2, as this build writes forecasts; version 1 is still read.
    let f = forecast_v2();
    assert_valid(
        &schema_v("forecast", 2),
        &serde_json::to_value(&f).expect("json"),
    );
    assert_eq!(codec::decode::<Forecast>(&codec::encode(&f)), Ok(f));
    let f = forecast();
    assert_valid(
        &schema("forecast"),
        &serde_json::to_value(&f).expect("json"),
    );
    assert_eq!(codec::decode::<Forecast>(&codec::encode(&f)), Ok(f));

    let a = alert();
    assert_valid(&schema("alert"), &serde_json::to_value(&a).expect("json"));
    assert_eq!(codec::decode::<Alert>(&codec::encode(&a)), Ok(a));

    let d = DeadLetter::new(
        "candles",
        "tickcast.ticks.v1",
        2,
        17,
        "invalid field `price`",
        b"{\"v\":1}",
    );
    assert_valid(
        &schema("deadletter"),
        &serde_json::to_value(&d).expect("json"),
    );
}

/// Applies `edit` to a valid tick document.
fn tick_with(edit: impl FnOnce(&mut Value)) -> Value {
    let mut doc = serde_json::to_value(tick()).expect("json");
    edit(&mut doc);
    doc
}

#[test]
fn schema_violations_are_rejected_by_schema_and_decoder() {
    let validator = schema("tick");
    // (document, text the decoder's error must contain)
    let cases: Vec<(Value, &str)> = vec![
        (
            tick_with(|d| d["v"] = json!(2)),
            "unsupported schema version 2",
        ),
        (tick_with(|d| d["price"] = json!("0")), "price"),
        (tick_with(|d| d["price"] = json!("-5.1")), "price"),
        (tick_with(|d| d["price"] = json!("abc")), "price"),
        (tick_with(|d| d["price"] = json!(1.5)), "price"),
        (tick_with(|d| d["size"] = json!("0.000")), "size"),
        (tick_with(|d| d["symbol"] = json!("btcusdt")), "symbol"),
        (tick_with(|d| d["exchange"] = json!("Binance")), "exchange"),
        (tick_with(|d| d["side"] = json!("long")), "side"),
        (tick_with(|d| d["trade_id"] = json!("")), "trade_id"),
        (tick_with(|d| d["ts_ms"] = json!(-1)), "ts_ms"),
        (
            tick_with(|d| d["extra"] = json!(1)),
            "unknown field `extra`",
        ),
        (
            tick_with(|d| _ = d.as_object_mut().map(|o| o.remove("ts_ms"))),
            "missing field `ts_ms`",
        ),
    ];
    for (doc, needle) in cases {
        assert!(!validator.is_valid(&doc), "schema accepted {doc}");
        let err =
            codec::decode::<Tick>(doc.to_string().as_bytes()).expect_err("decoder accepted it");
        assert!(
            err.to_string().contains(needle),
            "error `{err}` for {doc} does not mention `{needle}`"
        );
    }
}

#[test]
fn inconsistent_candles_and_forecasts_are_rejected() {
    let mut c = candle();
    c.high = Decimal::new(1, 0);
    assert!(matches!(
        codec::decode::<Candle>(&codec::encode(&c)),
        Err(DecodeError::Invalid { field: "high", .. })
    ));
    let mut f = forecast();
    f.hi80 = f.hi95 + 1.0;
    assert!(matches!(
        codec::decode::<Forecast>(&codec::encode(&f)),
        Err(DecodeError::Invalid { .. })
    ));
    let mut f = forecast();
    f.horizon = 0;
    let doc = serde_json::to_value(&f).expect("json");
    assert!(!schema("forecast").is_valid(&doc));
    assert!(codec::decode::<Forecast>(doc.to_string().as_bytes()).is_err());
    assert!(matches!(
        codec::decode::<Candle>(b"not json"),
        Err(DecodeError::Json(_))
    ));
}

/// Version 2 forecasts must carry every field version 2 added, and version 1 forecasts none of
/// them; a short quantile list, a partial calibration or an empty model version are rejected
/// by the schema and the decoder alike, and quantiles out of order by the decoder.
#[test]
fn forecast_versions_are_checked_field_by_field() {
    let v2 = serde_json::to_value(forecast_v2()).expect("json");
    let v1 = serde_json::to_value(forecast()).expect("json");
    let edit = |doc: &Value, f: &dyn Fn(&mut Value)| {
        let mut d = doc.clone();
        f(&mut d);
        d
    };
    let schema1 = schema("forecast");
    let schema2 = schema_v("forecast", 2);
    // (document, schema it must break, text the decoder's error must contain)
    let cases: Vec<(Value, &jsonschema::Validator, &str)> = vec![
        (
            edit(&v2, &|d| {
                _ = d.as_object_mut().map(|o| o.remove("quantiles"))
            }),
            &schema2,
            "`quantiles`: required from schema version 2",
        ),
        (
            edit(&v2, &|d| {
                _ = d.as_object_mut().map(|o| o.remove("degraded"))
            }),
            &schema2,
            "`degraded`: required from schema version 2",
        ),
        (
            edit(&v2, &|d| {
                _ = d.as_object_mut().map(|o| o.remove("model_version"))
            }),
            &schema2,
            "`model_version`: required",
        ),
        (
            edit(&v2, &|d| _ = d.as_object_mut().map(|o| o.remove("touch"))),
            &schema2,
            "`touch`: required",
        ),
        (
            edit(&v2, &|d| d["quantiles"] = json!([1.0, 2.0])),
            &schema2,
            "quantiles",
        ),
        (
            edit(&v2, &|d| d["model_version"] = json!("")),
            &schema2,
            "`model_version`",
        ),
        (
            edit(&v2, &|d| d["model_version"] = json!("has space")),
            &schema2,
            "`model_version`",
        ),
        (
            edit(&v2, &|d| d["touch"] = json!({"alpha": 1.0})),
            &schema2,
            "beta",
        ),
        (
            edit(&v2, &|d| d["degraded"] = json!("no")),
            &schema2,
            "degraded",
        ),
        (
            edit(&v1, &|d| d["degraded"] = json!(true)),
            &schema1,
            "`degraded`: not part of schema version 1",
        ),
        (
            edit(&v2, &|d| d["v"] = json!(3)),
            &schema2,
            "unsupported schema version 3 (expected 1 or 2)",
        ),
    ];
    for (doc, validator, needle) in cases {
        assert!(!validator.is_valid(&doc), "schema accepted {doc}");
        let err =
            codec::decode::<Forecast>(doc.to_string().as_bytes()).expect_err("decoder accepted it");
        assert!(
            err.to_string().contains(needle),
            "error `{err}` for {doc} does not mention `{needle}`"
        );
    }
    // Order is beyond JSON Schema (as the bands' nesting is): the decoder alone checks it.
    let unordered = edit(&v2, &|d| d["quantiles"][3] = json!(70_000.0));
    let err = codec::decode::<Forecast>(unordered.to_string().as_bytes()).expect_err("unordered");
    assert!(
        err.to_string()
            .contains("`quantiles`: must be in ascending order"),
        "{err}"
    );
    // A version 1 message, byte for byte as version 1 producers wrote it, still decodes.
    let old = br#"{"v":1,"exchange":"binance","symbol":"BTC-USDT","interval":"1m","model":"naive","horizon":5,"base_ms":1723075200000,"target_ms":1723075500000,"last":61234.1,"point":61234.1,"lo80":61100.0,"hi80":61370.0,"lo95":61020.5,"hi95":61450.25}"#;
    let f = codec::decode::<Forecast>(old).expect("v1 decodes");
    assert_eq!(f, forecast());
    assert!(!f.is_degraded());
}
