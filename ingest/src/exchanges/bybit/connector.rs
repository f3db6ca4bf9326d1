//! Bybit v5 public spot trades: topic `publicTrade.<SYMBOL>` on
//! `wss://stream.bybit.com/v5/public/spot`.
//!
//! Docs: <https://bybit-exchange.github.io/docs/v5/ws/connect>,
//! <https://bybit-exchange.github.io/docs/v5/websocket/public/trade>.
//!
//! - Subscribe: `{"op":"subscribe","args":["publicTrade.BTCUSDT",…],"req_id":"…"}`; spot takes
//!   at most 10 args per request, so larger subscriptions are split, one ack per request:
//!   `{"success":true,"ret_msg":"subscribe","conn_id":"…","req_id":"…","op":"subscribe"}`.
//! - Keepalive: the client sends `{"op":"ping"}` every 20 s (the docs recommend 20 s; the server
//!   drops connections silent for 10 minutes). Spot answers
//!   `{"success":true,"ret_msg":"pong",…,"op":"ping"}`, linear `{"op":"pong",…}`.
//! - Trade frames carry up to 1024 trades; `S` is the taker's side, `i` the trade id (a UUID
//!   string on spot).
//! - No backfill: spot trade ids are UUIDs, not consecutive integers, so gaps cannot be
//!   detected from ids, and `/v5/market/recent-trade` only returns the latest trades (no
//!   id or time paging).

use std::time::Duration;

use serde::Deserialize;
use serde_json::value::RawValue;

use crate::connectors::{
    Connector, ConnectorInfo, Decoded, FrameError, Keepalive, json_err, missing, positive_decimal,
};
use tickcast_core::codec::split_concatenated;
use tickcast_core::domain::{SCHEMA_VERSION, Side, Tick};

/// Topics per subscribe request on the spot stream.
pub const ARGS_PER_REQUEST: usize = 10;
/// Topic prefix of the public trade stream.
pub const TOPIC_PREFIX: &str = "publicTrade.";

static BYBIT_INFO: ConnectorInfo = ConnectorInfo {
    name: "bybit",
    exchange: "bybit",
    ws_url: "wss://stream.bybit.com/v5/public/spot",
    rest_url: "https://api.bybit.com",
    // Not documented per connection beyond the 21,000-character `args` limit per request;
    // 100 topics keeps each connection well inside it.
    max_symbols_per_connection: 100,
    keepalive: Keepalive::ClientText {
        text: r#"{"op":"ping"}"#,
        every: Duration::from_secs(20),
    },
    max_connection_age: None,
    sequential_ids: false,
};

/// Bybit v5 spot `publicTrade`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Bybit;

/// Every top-level field of any frame, borrowed, parsed in one pass.
///
/// ```json
/// {"topic":"publicTrade.BTCUSDT","type":"snapshot","ts":1672304486868,"data":[{"T":1672304486865,
///  "s":"BTCUSDT","S":"Buy","v":"0.001","p":"16578.50","L":"PlusTick",
///  "i":"20f43950-d8dd-5b31-9112-a178eb6023af","BT":false}]}
/// {"success":true,"ret_msg":"subscribe","conn_id":"2324d924-aa4d-45b0-a858-7b8be29ab52b",
///  "req_id":"10001","op":"subscribe"}
/// {"success":true,"ret_msg":"pong","conn_id":"0970e817-426e-429a-a679-ff7f55e0b16a",
///  "op":"ping"}
/// ```
#[derive(Debug, Deserialize)]
struct Frame<'a> {
    #[serde(borrow)]
    topic: Option<&'a str>,
    #[serde(borrow)]
    data: Option<&'a RawValue>,
    success: Option<bool>,
    ret_msg: Option<String>,
    #[serde(borrow)]
    op: Option<&'a str>,
    /// Pre-v5 acks echo the request: `"request":{"op":"subscribe","args":[…]}`.
    request: Option<EchoedRequest<'a>>,
}

#[derive(Debug, Deserialize)]
struct EchoedRequest<'a> {
    #[serde(borrow)]
    op: Option<&'a str>,
}

/// One trade in a `publicTrade` frame.
///
/// ```json
/// {"T":1672304486865,"s":"BTCUSDT","S":"Buy","v":"0.001","p":"16578.50","L":"PlusTick",
///  "i":"20f43950-d8dd-5b31-9112-a178eb6023af","BT":false}
/// ```
#[derive(Debug, Deserialize)]
struct Trade<'a> {
    #[serde(rename = "T")]
    time: Option<i64>,
    #[serde(borrow)]
    s: Option<&'a str>,
    #[serde(rename = "S", borrow)]
    side: Option<&'a str>,
    #[serde(borrow)]
    v: Option<&'a str>,
    #[serde(borrow)]
    p: Option<&'a str>,
    #[serde(borrow)]
    i: Option<&'a str>,
}

fn tick(t: &Trade<'_>, received_ms: i64) -> Result<Tick, FrameError> {
    let raw = t.s.ok_or(missing("s"))?;
    let symbol = split_concatenated(raw).ok_or(FrameError::Symbol(raw.to_string()))?;
    let side = match t.side.ok_or(missing("S"))? {
        "Buy" => Side::Buy,
        "Sell" => Side::Sell,
        other => {
            return Err(FrameError::Field {
                field: "S",
                reason: format!("`{other}` is not Buy or Sell"),
            });
        }
    };
    let id = t.i.ok_or(missing("i"))?;
    if id.is_empty() {
        return Err(FrameError::Field {
            field: "i",
            reason: "empty trade id".into(),
        });
    }
    Ok(Tick {
        v: SCHEMA_VERSION,
        exchange: "bybit".to_string(),
        symbol,
        trade_id: id.to_string(),
        price: positive_decimal("p", t.p.ok_or(missing("p"))?)?,
        size: positive_decimal("v", t.v.ok_or(missing("v"))?)?,
        side,
        ts_ms: t.time.ok_or(missing("T"))?,
        ingested_ms: received_ms,
    })
}

fn decode_trades(
    data: Option<&RawValue>,
    received_ms: i64,
    out: &mut Vec<Tick>,
) -> Result<Decoded, FrameError> {
    let data = data.ok_or(missing("data"))?;
    let trades: Vec<Trade<'_>> =
        serde_json::from_str(data.get()).map_err(|e| FrameError::Field {
            field: "data",
            reason: e.to_string(),
        })?;
    if trades.is_empty() {
        return Ok(Decoded::Skipped("trade frame without trades"));
    }
    // All or nothing: a bad trade in the middle leaves `out` untouched.
    let ticks = trades
        .iter()
        .map(|t| tick(t, received_ms))
        .collect::<Result<Vec<_>, _>>()?;
    let n = ticks.len();
    out.extend(ticks);
    Ok(Decoded::Trades(n))
}

impl Connector for Bybit {
    fn info(&self) -> &'static ConnectorInfo {
        &BYBIT_INFO
    }

    fn native_symbol(&self, canonical: &str) -> String {
        canonical.replace('-', "")
    }

    fn subscribe(&self, symbols: &[String]) -> Vec<String> {
        symbols
            .chunks(ARGS_PER_REQUEST)
            .enumerate()
            .map(|(i, chunk)| {
                let args: Vec<String> = chunk
                    .iter()
                    .map(|s| format!("{TOPIC_PREFIX}{}", self.native_symbol(s)))
                    .collect();
                serde_json::json!({"op": "subscribe", "args": args, "req_id": format!("tickcast-{}", i + 1)})
                    .to_string()
            })
            .collect()
    }

    fn expected_acks(&self, symbols: &[String]) -> usize {
        symbols.len().div_ceil(ARGS_PER_REQUEST)
    }

    fn decode(
        &self,
        frame: &str,
        received_ms: i64,
        out: &mut Vec<Tick>,
    ) -> Result<Decoded, FrameError> {
        let f: Frame<'_> = serde_json::from_str(frame).map_err(json_err)?;
        if let Some(topic) = f.topic {
            if topic.starts_with(TOPIC_PREFIX) {
                return decode_trades(f.data, received_ms, out);
            }
            if topic.starts_with("trade.") {
                return Ok(Decoded::Skipped("pre-v5 `trade.` topic (legacy API)"));
            }
            return Ok(Decoded::Skipped("not a publicTrade topic"));
        }
        let op = f.op.or(f.request.as_ref().and_then(|r| r.op));
        let ret_msg = f.ret_msg.as_deref().unwrap_or_default();
        if op == Some("pong") || (op == Some("ping") && f.success != Some(false)) {
            return Ok(Decoded::Skipped("pong"));
        }
        match (f.success, op) {
            (Some(false), _) => Err(FrameError::Exchange(format!(
                "{}: {ret_msg}",
                op.unwrap_or("request")
            ))),
            (Some(true), Some("subscribe")) => Ok(Decoded::Ack),
            (Some(true), _) => Ok(Decoded::Skipped("reply to another operation")),
            (None, _) => Err(FrameError::Unrecognised(
                "neither a topic frame nor an operation reply".into(),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(frame: &str) -> (Result<Decoded, FrameError>, Vec<Tick>) {
        let mut out = Vec::new();
        let r = Bybit.decode(frame, 99, &mut out);
        (r, out)
    }

    /// (symbol, id, price, size, side, ts) of one expected tick.
    type Want = (
        &'static str,
        &'static str,
        &'static str,
        &'static str,
        Side,
        i64,
    );

    #[test]
    fn trade_frames_decode_exactly_with_taker_side() {
        // (frame, [(symbol, id, price, size, side, ts)])
        let cases: [(&str, &[Want]); 3] = [
            (
                r#"{"topic":"publicTrade.BTCUSDT","type":"snapshot","ts":1672304486868,"data":[{"T":1672304486865,"s":"BTCUSDT","S":"Buy","v":"0.001","p":"16578.50","L":"PlusTick","i":"20f43950-d8dd-5b31-9112-a178eb6023af","BT":false}]}"#,
                &[(
                    "BTC-USDT",
                    "20f43950-d8dd-5b31-9112-a178eb6023af",
                    "16578.50",
                    "0.001",
                    Side::Buy,
                    1672304486865,
                )],
            ),
            (
                r#"{"topic":"publicTrade.ETHBTC","type":"snapshot","ts":5,"data":[{"T":3,"s":"ETHBTC","S":"Sell","v":"12.50000","p":"0.05123000","L":"MinusTick","i":"a","BT":false},{"T":4,"s":"ETHBTC","S":"Buy","v":"0.1","p":"0.05124","L":"PlusTick","i":"b","BT":true,"seq":17}]}"#,
                &[
                    ("ETH-BTC", "a", "0.05123000", "12.50000", Side::Sell, 3),
                    ("ETH-BTC", "b", "0.05124", "0.1", Side::Buy, 4),
                ],
            ),
            (
                r#"{"topic":"publicTrade.PEPEUSDC","type":"snapshot","ts":9,"data":[{"T":8,"s":"PEPEUSDC","S":"Sell","v":"123456789012.5","p":"0.0000123456789","L":"ZeroMinusTick","i":"2290000000061666327","BT":false}]}"#,
                &[(
                    "PEPE-USDC",
                    "2290000000061666327",
                    "0.0000123456789",
                    "123456789012.5",
                    Side::Sell,
                    8,
                )],
            ),
        ];
        for (frame, want) in cases {
            let (r, ticks) = decode(frame);
            assert_eq!(r, Ok(Decoded::Trades(want.len())), "{frame}");
            assert_eq!(ticks.len(), want.len());
            for (t, (sym, id, price, size, side, ts)) in ticks.iter().zip(want) {
                assert_eq!((t.symbol.as_str(), t.trade_id.as_str()), (*sym, *id));
                assert_eq!(t.price.to_string(), *price, "price digits kept");
                assert_eq!(t.size.to_string(), *size, "size digits kept");
                assert_eq!((t.side, t.ts_ms, t.ingested_ms), (*side, *ts, 99));
                assert_eq!(t.exchange, "bybit");
            }
        }
    }

    #[test]
    fn acks_pongs_and_other_frames_are_explicit() {
        let cases = [
            (
                r#"{"success":true,"ret_msg":"subscribe","conn_id":"2324d924","req_id":"tickcast-1","op":"subscribe"}"#,
                Ok(Decoded::Ack),
            ),
            (
                r#"{"success":true,"ret_msg":"","conn_id":"38cf0ac3","request":{"op":"subscribe","args":["trade.BCHUSDT"]}}"#,
                Ok(Decoded::Ack),
            ),
            (
                r#"{"success":true,"ret_msg":"pong","conn_id":"0970e817","op":"ping"}"#,
                Ok(Decoded::Skipped("pong")),
            ),
            (
                r#"{"req_id":"","op":"pong","args":["1675418560633"],"conn_id":"cfcb4ocsvfriu23r3er0"}"#,
                Ok(Decoded::Skipped("pong")),
            ),
            (
                r#"{"success":true,"ret_msg":"","conn_id":"x","req_id":"","op":"unsubscribe"}"#,
                Ok(Decoded::Skipped("reply to another operation")),
            ),
            (
                r#"{"topic":"orderbook.1.BTCUSDT","type":"snapshot","ts":1,"data":{"s":"BTCUSDT","b":[],"a":[],"u":1,"seq":1}}"#,
                Ok(Decoded::Skipped("not a publicTrade topic")),
            ),
            (
                r#"{"topic":"trade.BCHUSDT","data":[{"symbol":"BCHUSDT","price":"1053.90","size":0.14,"side":"Buy","trade_id":"01cacfe9"}]}"#,
                Ok(Decoded::Skipped("pre-v5 `trade.` topic (legacy API)")),
            ),
            (
                r#"{"topic":"publicTrade.BTCUSDT","type":"snapshot","ts":1,"data":[]}"#,
                Ok(Decoded::Skipped("trade frame without trades")),
            ),
            (
                r#"{"success":false,"ret_msg":"error:handler not found,topic:publicTrade.NOPE","conn_id":"x","req_id":"","op":"subscribe"}"#,
                Err(FrameError::Exchange(
                    "subscribe: error:handler not found,topic:publicTrade.NOPE".into(),
                )),
            ),
        ];
        for (frame, want) in cases {
            let (r, ticks) = decode(frame);
            assert_eq!(r, want, "{frame}");
            assert!(ticks.is_empty());
        }
    }

    #[test]
    fn bad_frames_are_errors_not_panics() {
        let bad = [
            "",
            "not json",
            "[1,2]",
            r#"{"foo":1}"#,
            r#"{"topic":"publicTrade.BTCUSDT"}"#,
            r#"{"topic":"publicTrade.BTCUSDT","data":{"T":1}}"#,
            r#"{"topic":"publicTrade.BTCUSDT","data":[{"T":1,"s":"BTCUSDT","S":"Hold","v":"1","p":"1","i":"x"}]}"#,
            r#"{"topic":"publicTrade.BTCUSDT","data":[{"T":1,"s":"BTCUSDT","S":"Buy","v":"1","p":"-1","i":"x"}]}"#,
            r#"{"topic":"publicTrade.BTCUSDT","data":[{"T":1,"s":"BTCUSDT","S":"Buy","v":"1","p":16578.5,"i":"x"}]}"#,
            r#"{"topic":"publicTrade.BTCUSDT","data":[{"T":1,"s":"XYZ","S":"Buy","v":"1","p":"1","i":"x"}]}"#,
            r#"{"topic":"publicTrade.BTCUSDT","data":[{"T":1,"s":"BTCUSDT","S":"Buy","v":"1","p":"1","i":""}]}"#,
            // The second trade is bad: nothing of the frame is kept.
            r#"{"topic":"publicTrade.BTCUSDT","data":[{"T":1,"s":"BTCUSDT","S":"Buy","v":"1","p":"1","i":"a"},{"T":1,"s":"BTCUSDT","S":"Buy","v":"1","i":"b"}]}"#,
        ];
        for frame in bad {
            let (r, ticks) = decode(frame);
            assert!(r.is_err(), "{frame} accepted: {r:?}");
            assert!(ticks.is_empty(), "{frame}");
        }
    }

    #[test]
    fn subscriptions_are_split_into_requests_of_ten() {
        let msgs = Bybit.subscribe(&["BTC-USDT".into(), "ETH-USDT".into()]);
        assert_eq!(
            msgs,
            vec![
                r#"{"args":["publicTrade.BTCUSDT","publicTrade.ETHUSDT"],"op":"subscribe","req_id":"tickcast-1"}"#
            ]
        );
        let many: Vec<String> = (0..25).map(|i| format!("C{i}-USDT")).collect();
        let msgs = Bybit.subscribe(&many);
        assert_eq!(msgs.len(), 3);
        assert_eq!(Bybit.expected_acks(&many), 3);
        assert_eq!(Bybit.expected_acks(&many[..10]), 1);
        assert!(msgs[2].contains("publicTrade.C24USDT") && msgs[2].contains("tickcast-3"));
        assert_eq!(Bybit.native_symbol("BTC-USDT"), "BTCUSDT");
    }
}
