//! The candles the stage publishes — with trades, explicit empty windows, several intervals —
//! validate against `schemas/candle.v1.json`, and so does a message published before empty
//! windows existed.

use std::path::PathBuf;

use rust_decimal::Decimal;
use serde_json::Value;
use tickcast_candles::{CandleBuilder, CandleOptions};
use tickcast_core::codec;
use tickcast_core::domain::{SCHEMA_VERSION, Side, Tick};
use tickcast_core::interval::Interval;

fn validator() -> jsonschema::Validator {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../schemas/candle.v1.json");
    let text = std::fs::read_to_string(&path).expect("schema file");
    let value: Value = serde_json::from_str(&text).expect("schema is JSON");
    jsonschema::draft202012::new(&value).expect("valid schema")
}

fn errors(v: &jsonschema::Validator, doc: &Value) -> Vec<String> {
    v.iter_errors(doc)
        .map(|e| format!("{e} at {}", e.instance_path))
        .collect()
}

#[test]
fn published_candles_validate_including_empty_windows() {
    let mut b = CandleBuilder::new(
        CandleOptions::new(["1s", "1m", "1h"].map(|i| Interval::parse(i).expect(i))),
        "candles",
    );
    let tick = |id: u64, cents: i64, ts_ms: i64| Tick {
        v: SCHEMA_VERSION,
        exchange: "binance".into(),
        symbol: "BTC-USDT".into(),
        trade_id: id.to_string(),
        price: Decimal::new(cents, 2),
        size: Decimal::new(125, 5),
        side: Side::Sell,
        ts_ms,
        ingested_ms: ts_ms,
    };
    let mut closed = Vec::new();
    for (i, (cents, ts)) in [(6_123_410, 0), (6_123_500, 1_500), (6_120_000, 3_700_000)]
        .into_iter()
        .enumerate()
    {
        b.push(
            &tick(i as u64, cents, ts),
            ("ticks", 0, i as i64),
            &mut closed,
        );
    }
    let empty = closed.iter().filter(|c| c.trades == 0).count();
    assert!(empty > 0, "no empty window among {} candles", closed.len());
    let labels: std::collections::BTreeSet<&str> =
        closed.iter().map(|c| c.interval.as_str()).collect();
    assert_eq!(labels, ["1h", "1m", "1s"].into_iter().collect());
    let v = validator();
    for c in &closed {
        let doc: Value = serde_json::from_slice(&codec::encode(c)).expect("json");
        assert_eq!(errors(&v, &doc), Vec::<String>::new(), "{doc}");
    }
    let e = closed.iter().find(|c| c.trades == 0).expect("empty");
    let doc: Value = serde_json::from_slice(&codec::encode(e)).expect("json");
    assert_eq!(doc["volume"], Value::from("0"));
    assert_eq!(
        (doc["open"].clone(), doc["high"].clone()),
        (doc["close"].clone(), doc["low"].clone())
    );
}

#[test]
fn a_message_from_before_empty_windows_still_validates() {
    let doc: Value = serde_json::from_str(
        r#"{"v":1,"exchange":"coinbase","symbol":"ETH-USD","interval":"1m","open_ms":1723075200000,
            "close_ms":1723075260000,"open":"2521.01","high":"2523.00","low":"2519.00",
            "close":"2522.50","volume":"12.34567890","trades":418}"#,
    )
    .expect("json");
    assert_eq!(errors(&validator(), &doc), Vec::<String>::new());
}
