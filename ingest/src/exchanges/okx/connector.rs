//! OKX v5 public trades: channel `trades` on `wss://ws.okx.com:8443/ws/v5/public`.
//!
//! Docs: <https://www.okx.com/docs-v5/en/#overview-websocket-overview>,
//! <https://www.okx.com/docs-v5/en/#order-book-trading-market-data-ws-trades-channel>.
//!
//! - Subscribe: `{"op":"subscribe","args":[{"channel":"trades","instId":"BTC-USDT"},…]}`; one
//!   ack per arg: `{"event":"subscribe","arg":{…},"connId":"…"}`. Errors:
//!   `{"event":"error","code":"60012","msg":"…","connId":"…"}`. Subscribe requests are limited
//!   to 480 per hour per connection and the args to 64 KB, so one request per connection.
//! - Keepalive: the server drops connections with no traffic for 30 s; the client sends the
//!   text `ping` (not JSON) and the server answers the text `pong`.
//! - Trades: `side` is the taker's side; `ts` is a string of epoch ms. Since 2023 a frame may
//!   aggregate several fills of one taker order (`count`, `seqId`); older frames lack them.
//! - `{"event":"notice","code":"64008",…}` announces a service upgrade: reconnect.
//! - instIds are canonical symbols as they are: spot `BASE-QUOTE`, and derivatives with their
//!   instrument parts (`BTC-USDT-SWAP`, `BTC-USD-220325-40000-C`); derivative sizes are in
//!   contracts, as OKX sends them.
//! - No backfill: since the 2023 aggregation `tradeId` is the last id of an aggregated
//!   order, so ids are not consecutive and gaps cannot be told from ids.

use std::time::Duration;

use serde::Deserialize;
use serde_json::value::RawValue;

use crate::connectors::{
    Connector, ConnectorInfo, Decoded, FrameError, Keepalive, json_err, missing, positive_decimal,
};
use tickcast_core::domain::{SCHEMA_VERSION, Side, Tick};

/// The trades channel name.
pub const CHANNEL: &str = "trades";

static OKX_INFO: ConnectorInfo = ConnectorInfo {
    name: "okx",
    exchange: "okx",
    ws_url: "wss://ws.okx.com:8443/ws/v5/public",
    rest_url: "https://www.okx.com",
    // No documented per-connection channel limit beyond the 64 KB of args per request;
    // 100 args are about 5 KB.
    max_symbols_per_connection: 100,
    keepalive: Keepalive::ClientText {
        text: "ping",
        every: Duration::from_secs(20),
    },
    max_connection_age: None,
    sequential_ids: false,
};

/// OKX v5 `trades`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Okx;

/// Every top-level field of any frame, parsed in one pass.
///
/// ```json
/// {"arg":{"channel":"trades","instId":"BTC-USDT"},"data":[{"instId":"BTC-USDT",
///  "tradeId":"130639474","px":"42219.9","sz":"0.12060306","side":"buy","ts":"1630048897897",
///  "count":"3","seqId":1234}]}
/// {"event":"subscribe","arg":{"channel":"trades","instId":"BTC-USDT"},"connId":"accb8e21"}
/// {"event":"error","code":"60012","msg":"Invalid request: {\"op\": \"subscribe\"}",
///  "connId":"a4d3ae55"}
/// ```
#[derive(Debug, Deserialize)]
struct Frame<'a> {
    #[serde(borrow)]
    event: Option<&'a str>,
    #[serde(borrow)]
    arg: Option<Arg<'a>>,
    #[serde(borrow)]
    data: Option<&'a RawValue>,
    code: Option<String>,
    msg: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Arg<'a> {
    #[serde(borrow)]
    channel: Option<&'a str>,
}

/// One trade of a `trades` frame.
///
/// ```json
/// {"instId":"BTC-USDT","tradeId":"130639474","px":"42219.9","sz":"0.12060306","side":"buy",
///  "ts":"1630048897897","count":"3","seqId":1234}
/// ```
#[derive(Debug, Deserialize)]
struct Trade<'a> {
    #[serde(rename = "instId", borrow)]
    inst_id: Option<&'a str>,
    #[serde(rename = "tradeId", borrow)]
    trade_id: Option<&'a str>,
    #[serde(borrow)]
    px: Option<&'a str>,
    #[serde(borrow)]
    sz: Option<&'a str>,
    #[serde(borrow)]
    side: Option<&'a str>,
    #[serde(borrow)]
    ts: Option<&'a str>,
}

/// Whether an instId is a canonical symbol (spot pair or derivative instrument).
fn is_canonical(inst_id: &str) -> bool {
    tickcast_core::codec::check_symbol(inst_id).is_ok()
}

fn tick(t: &Trade<'_>, received_ms: i64) -> Result<Tick, FrameError> {
    let inst = t.inst_id.ok_or(missing("instId"))?;
    if !is_canonical(inst) {
        return Err(FrameError::Symbol(inst.to_string()));
    }
    let side = match t.side.ok_or(missing("side"))? {
        "buy" => Side::Buy,
        "sell" => Side::Sell,
        other => {
            return Err(FrameError::Field {
                field: "side",
                reason: format!("`{other}` is not buy or sell"),
            });
        }
    };
    let id = t.trade_id.ok_or(missing("tradeId"))?;
    if id.is_empty() {
        return Err(FrameError::Field {
            field: "tradeId",
            reason: "empty trade id".into(),
        });
    }
    let ts = t.ts.ok_or(missing("ts"))?;
    let ts_ms = ts.parse::<i64>().map_err(|_| FrameError::Field {
        field: "ts",
        reason: format!("`{ts}` is not epoch milliseconds"),
    })?;
    Ok(Tick {
        v: SCHEMA_VERSION,
        exchange: "okx".to_string(),
        symbol: inst.to_string(),
        trade_id: id.to_string(),
        price: positive_decimal("px", t.px.ok_or(missing("px"))?)?,
        size: positive_decimal("sz", t.sz.ok_or(missing("sz"))?)?,
        side,
        ts_ms,
        ingested_ms: received_ms,
    })
}

fn decode_push(
    arg: &Arg<'_>,
    data: &RawValue,
    received_ms: i64,
    out: &mut Vec<Tick>,
) -> Result<Decoded, FrameError> {
    if arg.channel != Some(CHANNEL) {
        return Ok(Decoded::Skipped("not the trades channel"));
    }
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

impl Connector for Okx {
    fn info(&self) -> &'static ConnectorInfo {
        &OKX_INFO
    }

    fn native_symbol(&self, canonical: &str) -> String {
        canonical.to_string()
    }

    fn subscribe(&self, symbols: &[String]) -> Vec<String> {
        if symbols.is_empty() {
            return Vec::new();
        }
        let args: Vec<serde_json::Value> = symbols
            .iter()
            .map(|s| serde_json::json!({"channel": CHANNEL, "instId": self.native_symbol(s)}))
            .collect();
        vec![serde_json::json!({"op": "subscribe", "args": args}).to_string()]
    }

    fn expected_acks(&self, symbols: &[String]) -> usize {
        symbols.len()
    }

    fn decode(
        &self,
        frame: &str,
        received_ms: i64,
        out: &mut Vec<Tick>,
    ) -> Result<Decoded, FrameError> {
        if frame.trim() == "pong" {
            return Ok(Decoded::Skipped("pong"));
        }
        let f: Frame<'_> = serde_json::from_str(frame).map_err(json_err)?;
        let detail = || {
            format!(
                "{}: {}",
                f.code.as_deref().unwrap_or_default(),
                f.msg.as_deref().unwrap_or_default()
            )
        };
        match (f.event, &f.arg, f.data) {
            (Some("subscribe"), _, _) => Ok(Decoded::Ack),
            (Some("error"), _, _) => Err(FrameError::Exchange(detail())),
            (Some("notice"), _, _) if f.code.as_deref() == Some("64008") => Ok(Decoded::Reconnect),
            (Some("notice"), _, _) => Ok(Decoded::Skipped("notice")),
            (Some("unsubscribe"), _, _) => Ok(Decoded::Skipped("unsubscribe confirmation")),
            (Some("channel-conn-count"), _, _) => Ok(Decoded::Skipped("channel connection count")),
            (Some(_), _, _) => Ok(Decoded::Skipped("other event")),
            (None, Some(arg), Some(data)) => decode_push(arg, data, received_ms, out),
            (None, _, _) => Err(FrameError::Unrecognised(
                "neither an event nor a channel push (`arg` + `data`)".into(),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(frame: &str) -> (Result<Decoded, FrameError>, Vec<Tick>) {
        let mut out = Vec::new();
        let r = Okx.decode(frame, 99, &mut out);
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
                r#"{"arg":{"channel":"trades","instId":"BTC-USDT"},"data":[{"instId":"BTC-USDT","tradeId":"130639474","px":"42219.9","sz":"0.12060306","side":"buy","ts":"1630048897897"}]}"#,
                &[(
                    "BTC-USDT",
                    "130639474",
                    "42219.9",
                    "0.12060306",
                    Side::Buy,
                    1630048897897,
                )],
            ),
            (
                r#"{"arg":{"channel":"trades","instId":"ETH-BTC"},"data":[{"instId":"ETH-BTC","tradeId":"7","px":"0.05123000","sz":"12.50","side":"sell","ts":"2","count":"3","seqId":1234,"source":"0"},{"instId":"ETH-BTC","tradeId":"10","px":"0.0512","sz":"1","side":"buy","ts":"3","count":"1","seqId":1235}]}"#,
                &[
                    ("ETH-BTC", "7", "0.05123000", "12.50", Side::Sell, 2),
                    ("ETH-BTC", "10", "0.0512", "1", Side::Buy, 3),
                ],
            ),
            (
                r#"{"arg":{"channel":"trades","instId":"ELON-USDT"},"data":[{"instId":"ELON-USDT","tradeId":"4","px":"0.00000074408","sz":"20728470","side":"sell","ts":"1646003665730"}]}"#,
                &[(
                    "ELON-USDT",
                    "4",
                    "0.00000074408",
                    "20728470",
                    Side::Sell,
                    1646003665730,
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
                assert_eq!(t.exchange, "okx");
            }
        }
    }

    #[test]
    fn acks_pongs_and_other_frames_are_explicit() {
        let cases = [
            (
                r#"{"event":"subscribe","arg":{"channel":"trades","instId":"BTC-USDT"},"connId":"accb8e21"}"#,
                Ok(Decoded::Ack),
            ),
            ("pong", Ok(Decoded::Skipped("pong"))),
            (
                r#"{"event":"notice","code":"64008","msg":"The connection will soon be closed for a service upgrade. Please reconnect.","connId":"a4d3ae55"}"#,
                Ok(Decoded::Reconnect),
            ),
            (
                r#"{"event":"notice","code":"1","msg":"hello","connId":"a"}"#,
                Ok(Decoded::Skipped("notice")),
            ),
            (
                r#"{"event":"unsubscribe","arg":{"channel":"trades","instId":"BTC-USDT"},"connId":"a"}"#,
                Ok(Decoded::Skipped("unsubscribe confirmation")),
            ),
            (
                r#"{"event":"channel-conn-count","channel":"trades","connCount":"2","connId":"a"}"#,
                Ok(Decoded::Skipped("channel connection count")),
            ),
            (
                r#"{"arg":{"channel":"tickers","instId":"BTC-USDT"},"data":[{"instId":"BTC-USDT","last":"1"}]}"#,
                Ok(Decoded::Skipped("not the trades channel")),
            ),
            (
                r#"{"arg":{"channel":"trades","instId":"BTC-USDT"},"data":[]}"#,
                Ok(Decoded::Skipped("trade frame without trades")),
            ),
            (
                r#"{"event":"error","code":"60012","msg":"Invalid request: {\"op\": \"subscribe\"}","connId":"a4d3ae55"}"#,
                Err(FrameError::Exchange(
                    r#"60012: Invalid request: {"op": "subscribe"}"#.into(),
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
    fn derivative_instruments_keep_their_instrument_parts() {
        let (r, ticks) = decode(
            r#"{"arg":{"channel":"trades","instId":"XMR-USDT-SWAP"},"data":[{"instId":"XMR-USDT-SWAP","tradeId":"6845125","px":"196.11","sz":"8","side":"buy","ts":"1626995753200"}]}"#,
        );
        assert_eq!(r, Ok(Decoded::Trades(1)));
        let t = &ticks[0];
        assert_eq!(
            (
                t.symbol.as_str(),
                t.trade_id.as_str(),
                t.price.to_string(),
                t.size.to_string()
            ),
            (
                "XMR-USDT-SWAP",
                "6845125",
                "196.11".to_string(),
                "8".to_string()
            )
        );
        assert_eq!((t.side, t.ts_ms), (Side::Buy, 1_626_995_753_200));
        let (r, _) = decode(
            r#"{"arg":{"channel":"trades","instId":"BTC-USD-220325-40000-C"},"data":[{"instId":"BTC-USD-220325-40000-C","tradeId":"1","px":"0.05","sz":"2","side":"sell","ts":"1"}]}"#,
        );
        assert_eq!(r, Ok(Decoded::Trades(1)));
    }

    #[test]
    fn bad_frames_are_errors_not_panics() {
        let bad = [
            "",
            "ping",
            "[1]",
            r#"{"foo":1}"#,
            r#"{"arg":{"channel":"trades","instId":"BTC-USDT"}}"#,
            r#"{"arg":{"channel":"trades","instId":"BTC-USDT"},"data":{"px":"1"}}"#,
            r#"{"arg":{"channel":"trades","instId":"BTC-USDT"},"data":[{"instId":"BTC-USDT","tradeId":"1","px":"1","sz":"1","side":"up","ts":"1"}]}"#,
            r#"{"arg":{"channel":"trades","instId":"BTC-USDT"},"data":[{"instId":"BTC-USDT","tradeId":"1","px":"0","sz":"1","side":"buy","ts":"1"}]}"#,
            r#"{"arg":{"channel":"trades","instId":"BTC-USDT"},"data":[{"instId":"BTC-USDT","tradeId":"1","px":1.5,"sz":"1","side":"buy","ts":"1"}]}"#,
            r#"{"arg":{"channel":"trades","instId":"BTC-USDT"},"data":[{"instId":"BTC-USDT","tradeId":"1","px":"1","sz":"1","side":"buy","ts":"soon"}]}"#,
            r#"{"arg":{"channel":"trades","instId":"BTC-USDT"},"data":[{"instId":"btc/usdt","tradeId":"1","px":"1","sz":"1","side":"buy","ts":"1"}]}"#,
            r#"{"arg":{"channel":"trades","instId":"BTC-USDT"},"data":[{"instId":"BTC-USDT","tradeId":"1","px":"1","sz":"1","side":"buy","ts":"1"},{"instId":"BTC-USDT","px":"1","sz":"1","side":"buy","ts":"1"}]}"#,
        ];
        for frame in bad {
            let (r, ticks) = decode(frame);
            assert!(r.is_err(), "{frame} accepted: {r:?}");
            assert!(ticks.is_empty(), "{frame}");
        }
    }

    #[test]
    fn one_subscribe_request_acked_per_symbol() {
        let symbols = vec!["BTC-USDT".to_string(), "ETH-USDT".to_string()];
        assert_eq!(
            Okx.subscribe(&symbols),
            vec![
                r#"{"args":[{"channel":"trades","instId":"BTC-USDT"},{"channel":"trades","instId":"ETH-USDT"}],"op":"subscribe"}"#
            ]
        );
        assert_eq!(Okx.expected_acks(&symbols), 2);
        assert!(Okx.subscribe(&[]).is_empty());
    }
}
