//! Bitstamp public trades: channel `live_trades_<pair>` on `wss://ws.bitstamp.net`.
//!
//! Docs: <https://www.bitstamp.net/websocket/v2/>.
//!
//! - Subscribe: one `{"event":"bts:subscribe","data":{"channel":"live_trades_btcusd"}}` per
//!   channel, acknowledged by `{"event":"bts:subscription_succeeded","channel":…,"data":{}}`.
//! - Keepalive: the client may send `{"event":"bts:heartbeat"}`; the server answers
//!   `{"event":"bts:heartbeat","channel":"","data":{"status":"success"}}`.
//! - `bts:request_reconnect` asks the client to reconnect (maintenance); `bts:error` reports a
//!   bad request.
//! - Trades carry `price`/`amount` as JSON numbers and `price_str`/`amount_str` as exact text
//!   (used here); `type` 0 = buy, 1 = sell is the taker's side (in recordings the taker's order
//!   id is the newer, larger one); `microtimestamp` is epoch µs as a string.
//! - No backfill: trade ids are global across all pairs, so per-pair gaps cannot be told from
//!   ids, and `/api/v2/transactions/{pair}/` pages only by time window (minute/hour/day).

use std::time::Duration;

use serde::Deserialize;
use serde_json::value::RawValue;

use crate::connectors::{
    Connector, ConnectorInfo, Decoded, FrameError, Keepalive, json_err, missing, positive_decimal,
};
use tickcast_core::codec::split_concatenated;
use tickcast_core::domain::{SCHEMA_VERSION, Side, Tick};

/// Channel name prefix of the public trades channel.
pub const CHANNEL_PREFIX: &str = "live_trades_";

static BITSTAMP_INFO: ConnectorInfo = ConnectorInfo {
    name: "bitstamp",
    exchange: "bitstamp",
    ws_url: "wss://ws.bitstamp.net",
    rest_url: "https://www.bitstamp.net",
    // Not documented; one subscribe frame per channel, so keep connections modest.
    max_symbols_per_connection: 100,
    keepalive: Keepalive::ClientText {
        text: r#"{"event":"bts:heartbeat"}"#,
        every: Duration::from_secs(20),
    },
    max_connection_age: None,
    sequential_ids: false,
};

/// Bitstamp `live_trades`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Bitstamp;

/// The envelope of every frame.
///
/// ```json
/// {"data":{"id":215669584,"timestamp":"1641314378","amount":0.0109,"amount_str":"0.01090000",
///  "price":46338,"price_str":"46338.00","type":1,"microtimestamp":"1641314378028000",
///  "buy_order_id":1443000000000001,"sell_order_id":1443000000000002},
///  "channel":"live_trades_btcusd","event":"trade"}
/// {"event":"bts:subscription_succeeded","channel":"live_trades_btcusd","data":{}}
/// {"event":"bts:error","channel":"","data":{"code":null,"message":"Bad subscription string."}}
/// ```
#[derive(Debug, Deserialize)]
struct Frame<'a> {
    #[serde(borrow)]
    event: Option<&'a str>,
    #[serde(borrow)]
    channel: Option<&'a str>,
    #[serde(borrow)]
    data: Option<&'a RawValue>,
}

/// The `data` of a `trade` event (the JSON-number `price`/`amount` are not read).
#[derive(Debug, Deserialize)]
struct Trade<'a> {
    id: Option<u64>,
    #[serde(borrow)]
    price_str: Option<&'a str>,
    #[serde(borrow)]
    amount_str: Option<&'a str>,
    #[serde(rename = "type")]
    kind: Option<u8>,
    #[serde(borrow)]
    microtimestamp: Option<&'a str>,
    #[serde(borrow)]
    timestamp: Option<&'a str>,
}

/// The `data` of a `bts:error` event.
#[derive(Debug, Deserialize)]
struct ErrorData {
    code: Option<serde_json::Value>,
    message: Option<String>,
}

/// Epoch ms from `microtimestamp` (µs), else from `timestamp` (s).
fn trade_ms(t: &Trade<'_>) -> Result<i64, FrameError> {
    let parse = |field: &'static str, text: &str| {
        text.parse::<i64>().map_err(|_| FrameError::Field {
            field,
            reason: format!("`{text}` is not an epoch time"),
        })
    };
    match (t.microtimestamp, t.timestamp) {
        (Some(us), _) => Ok(parse("microtimestamp", us)?.div_euclid(1000)),
        (None, Some(s)) => {
            parse("timestamp", s)?
                .checked_mul(1000)
                .ok_or_else(|| FrameError::Field {
                    field: "timestamp",
                    reason: format!("`{s}` is out of range"),
                })
        }
        (None, None) => Err(missing("microtimestamp")),
    }
}

fn tick(channel: &str, data: &RawValue, received_ms: i64) -> Result<Tick, FrameError> {
    let pair = channel.strip_prefix(CHANNEL_PREFIX).unwrap_or(channel);
    let symbol = split_concatenated(pair).ok_or(FrameError::Symbol(pair.to_string()))?;
    let t: Trade<'_> = serde_json::from_str(data.get()).map_err(|e| FrameError::Field {
        field: "data",
        reason: e.to_string(),
    })?;
    let side = match t.kind.ok_or(missing("type"))? {
        0 => Side::Buy,
        1 => Side::Sell,
        other => {
            return Err(FrameError::Field {
                field: "type",
                reason: format!("`{other}` is not 0 (buy) or 1 (sell)"),
            });
        }
    };
    Ok(Tick {
        v: SCHEMA_VERSION,
        exchange: "bitstamp".to_string(),
        symbol,
        trade_id: t.id.ok_or(missing("id"))?.to_string(),
        price: positive_decimal("price_str", t.price_str.ok_or(missing("price_str"))?)?,
        size: positive_decimal("amount_str", t.amount_str.ok_or(missing("amount_str"))?)?,
        side,
        ts_ms: trade_ms(&t)?,
        ingested_ms: received_ms,
    })
}

fn exchange_error(data: Option<&RawValue>) -> FrameError {
    let parsed = data.and_then(|d| serde_json::from_str::<ErrorData>(d.get()).ok());
    match parsed {
        Some(ErrorData {
            code: Some(code),
            message,
        }) if !code.is_null() => {
            FrameError::Exchange(format!("{code}: {}", message.unwrap_or_default()))
        }
        Some(ErrorData { message, .. }) => {
            FrameError::Exchange(message.unwrap_or_else(|| "bts:error".into()))
        }
        None => FrameError::Exchange("bts:error".into()),
    }
}

impl Connector for Bitstamp {
    fn info(&self) -> &'static ConnectorInfo {
        &BITSTAMP_INFO
    }

    fn native_symbol(&self, canonical: &str) -> String {
        canonical.replace('-', "").to_ascii_lowercase()
    }

    fn subscribe(&self, symbols: &[String]) -> Vec<String> {
        symbols
            .iter()
            .map(|s| {
                let channel = format!("{CHANNEL_PREFIX}{}", self.native_symbol(s));
                serde_json::json!({"event": "bts:subscribe", "data": {"channel": channel}})
                    .to_string()
            })
            .collect()
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
        let f: Frame<'_> = serde_json::from_str(frame).map_err(json_err)?;
        match f.event.ok_or(missing("event"))? {
            "trade" => {
                let channel = f.channel.ok_or(missing("channel"))?;
                if !channel.starts_with(CHANNEL_PREFIX) {
                    return Ok(Decoded::Skipped(
                        "trade on a channel other than live_trades",
                    ));
                }
                out.push(tick(channel, f.data.ok_or(missing("data"))?, received_ms)?);
                Ok(Decoded::Trades(1))
            }
            "bts:subscription_succeeded" => Ok(Decoded::Ack),
            "bts:unsubscription_succeeded" => Ok(Decoded::Skipped("unsubscription confirmation")),
            "bts:heartbeat" => Ok(Decoded::Skipped("heartbeat reply")),
            "bts:request_reconnect" => Ok(Decoded::Reconnect),
            "bts:error" => Err(exchange_error(f.data)),
            _ => Ok(Decoded::Skipped("not a trade event")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(frame: &str) -> (Result<Decoded, FrameError>, Vec<Tick>) {
        let mut out = Vec::new();
        let r = Bitstamp.decode(frame, 99, &mut out);
        (r, out)
    }

    #[test]
    fn trade_frames_decode_exactly_with_taker_side() {
        // (frame, symbol, id, price, size, side, ts)
        let cases = [
            (
                r#"{"data":{"id":215669584,"timestamp":"1641314378","amount":0.0109,"amount_str":"0.01090000","price":46338,"price_str":"46338.00","type":1,"microtimestamp":"1641314378028000","buy_order_id":1,"sell_order_id":2},"channel":"live_trades_btcusd","event":"trade"}"#,
                "BTC-USD",
                "215669584",
                "46338.00",
                "0.01090000",
                Side::Sell,
                1641314378028,
            ),
            (
                r#"{"data":{"id":7,"timestamp":"1641343699","amount":0.0792,"amount_str":"0.07920000","price":3805.44,"price_str":"3805.44","type":0,"microtimestamp":"1641343699596999","buy_order_id":3,"sell_order_id":2},"channel":"live_trades_ethbtc","event":"trade"}"#,
                "ETH-BTC",
                "7",
                "3805.44",
                "0.07920000",
                Side::Buy,
                1641343699596,
            ),
            (
                r#"{"data":{"id":8,"timestamp":"1641343700","amount_str":"12345.678","price_str":"0.00001234","type":0},"channel":"live_trades_usdteur","event":"trade"}"#,
                "USDT-EUR",
                "8",
                "0.00001234",
                "12345.678",
                Side::Buy,
                1641343700000,
            ),
        ];
        for (frame, sym, id, price, size, side, ts) in cases {
            let (r, ticks) = decode(frame);
            assert_eq!(r, Ok(Decoded::Trades(1)), "{frame}");
            let t = &ticks[0];
            assert_eq!((t.symbol.as_str(), t.trade_id.as_str()), (sym, id));
            assert_eq!(t.price.to_string(), price, "price digits kept");
            assert_eq!(t.size.to_string(), size, "size digits kept");
            assert_eq!((t.side, t.ts_ms, t.ingested_ms), (side, ts, 99));
            assert_eq!(t.exchange, "bitstamp");
        }
    }

    #[test]
    fn acks_heartbeats_and_other_events_are_explicit() {
        let cases = [
            (
                r#"{"event":"bts:subscription_succeeded","channel":"live_trades_btcusd","data":{}}"#,
                Ok(Decoded::Ack),
            ),
            (
                r#"{"event":"bts:heartbeat","channel":"","data":{"status":"success"}}"#,
                Ok(Decoded::Skipped("heartbeat reply")),
            ),
            (
                r#"{"event":"bts:request_reconnect","channel":"","data":""}"#,
                Ok(Decoded::Reconnect),
            ),
            (
                r#"{"event":"bts:unsubscription_succeeded","channel":"live_trades_btcusd","data":{}}"#,
                Ok(Decoded::Skipped("unsubscription confirmation")),
            ),
            (
                r#"{"data":{"id":1,"amount":1,"price":1,"order_type":0},"channel":"live_orders_btcusd","event":"order_created"}"#,
                Ok(Decoded::Skipped("not a trade event")),
            ),
            (
                r#"{"data":{"id":1},"channel":"private-my_trades_btcusd-1","event":"trade"}"#,
                Ok(Decoded::Skipped(
                    "trade on a channel other than live_trades",
                )),
            ),
            (
                r#"{"event":"bts:error","channel":"","data":{"code":null,"message":"Bad subscription string."}}"#,
                Err(FrameError::Exchange("Bad subscription string.".into())),
            ),
            (
                r#"{"event":"bts:error","channel":"","data":{"code":4009,"message":"Unauthorized"}}"#,
                Err(FrameError::Exchange("4009: Unauthorized".into())),
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
        let trade = |data: &str| {
            format!(r#"{{"data":{data},"channel":"live_trades_btcusd","event":"trade"}}"#)
        };
        let bad = [
            "".to_string(),
            "not json".into(),
            "[1]".into(),
            r#"{"foo":1}"#.into(),
            r#"{"event":"trade","channel":"live_trades_btcusd"}"#.into(),
            r#"{"event":"bts:error"}"#.into(),
            trade(r#"{"id":1,"price_str":"1","amount_str":"1","type":2,"microtimestamp":"1"}"#),
            trade(r#"{"id":1,"price_str":"0","amount_str":"1","type":0,"microtimestamp":"1"}"#),
            trade(r#"{"id":1,"price":1.5,"amount_str":"1","type":0,"microtimestamp":"1"}"#),
            trade(r#"{"id":1,"price_str":"1","amount_str":"1","type":0,"microtimestamp":"x"}"#),
            trade(r#"{"id":1,"price_str":"1","amount_str":"1","type":0}"#),
            trade(r#"{"price_str":"1","amount_str":"1","type":0,"microtimestamp":"1"}"#),
            trade(r#"[1,2]"#),
            r#"{"data":{"id":1,"price_str":"1","amount_str":"1","type":0,"microtimestamp":"1"},"channel":"live_trades_xyz","event":"trade"}"#.into(),
        ];
        for frame in &bad {
            let (r, ticks) = decode(frame);
            assert!(r.is_err(), "{frame} accepted: {r:?}");
            assert!(ticks.is_empty(), "{frame}");
        }
    }

    #[test]
    fn one_subscribe_frame_and_ack_per_channel() {
        let symbols = vec!["BTC-USD".to_string(), "ETH-EUR".to_string()];
        assert_eq!(
            Bitstamp.subscribe(&symbols),
            vec![
                r#"{"data":{"channel":"live_trades_btcusd"},"event":"bts:subscribe"}"#,
                r#"{"data":{"channel":"live_trades_etheur"},"event":"bts:subscribe"}"#,
            ]
        );
        assert_eq!(Bitstamp.expected_acks(&symbols), 2);
        assert_eq!(Bitstamp.native_symbol("BTC-USD"), "btcusd");
    }
}
