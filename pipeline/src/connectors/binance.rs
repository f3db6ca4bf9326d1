//! Binance spot public trades: `<symbol>@trade`, raw (`/ws`) or combined (`/stream`) streams.

use rust_decimal::Decimal;
use serde::Deserialize;
use serde_json::value::RawValue;

use super::{Connector, Decoded, FrameError, split_concatenated};
use crate::domain::{SCHEMA_VERSION, Side, Tick};

/// Binance spot.
#[derive(Debug, Clone, Copy, Default)]
pub struct Binance;

/// A `trade` event.
///
/// ```json
/// {"e":"trade","E":1723075200123,"s":"BTCUSDT","t":3712047611,"p":"61234.10000000",
///  "q":"0.00120000","T":1723075200122,"m":true,"M":true}
/// ```
/// `m` is "buyer is the maker": then the taker sold.
#[derive(Debug, Deserialize)]
pub struct TradeEvent {
    #[serde(rename = "e")]
    pub event: String,
    #[serde(rename = "s")]
    pub symbol: String,
    #[serde(rename = "t")]
    pub trade_id: u64,
    #[serde(rename = "p")]
    pub price: String,
    #[serde(rename = "q")]
    pub qty: String,
    #[serde(rename = "T")]
    pub trade_time: i64,
    #[serde(rename = "m")]
    pub buyer_is_maker: bool,
}

/// A combined-stream envelope: `{"stream":"btcusdt@trade","data":{…}}`.
#[derive(Debug, Deserialize)]
struct Envelope<'a> {
    #[serde(borrow)]
    data: &'a RawValue,
}

/// Any frame, looked at just enough to classify it.
#[derive(Debug, Deserialize)]
struct Probe {
    e: Option<String>,
    id: Option<serde_json::Value>,
    stream: Option<String>,
    code: Option<serde_json::Value>,
    msg: Option<String>,
}

/// Binance's lower-case stream name for a canonical symbol: `BTC-USDT` → `btcusdt`.
pub fn stream_symbol(canonical: &str) -> String {
    canonical.replace('-', "").to_ascii_lowercase()
}

fn decimal(field: &'static str, s: &str) -> Result<Decimal, FrameError> {
    let d = crate::domain::decimal_text::parse(s)
        .map_err(|reason| FrameError::Field { field, reason })?;
    if d <= Decimal::ZERO {
        return Err(FrameError::Field {
            field,
            reason: format!("`{s}` is not > 0"),
        });
    }
    Ok(d)
}

impl TradeEvent {
    pub fn into_tick(self, received_ms: i64) -> Result<Tick, FrameError> {
        let symbol =
            split_concatenated(&self.symbol).ok_or(FrameError::Symbol(self.symbol.clone()))?;
        Ok(Tick {
            v: SCHEMA_VERSION,
            exchange: "binance".to_string(),
            symbol,
            trade_id: self.trade_id.to_string(),
            price: decimal("p", &self.price)?,
            size: decimal("q", &self.qty)?,
            side: if self.buyer_is_maker {
                Side::Sell
            } else {
                Side::Buy
            },
            ts_ms: self.trade_time,
            ingested_ms: received_ms,
        })
    }
}

impl Connector for Binance {
    fn id(&self) -> &'static str {
        "binance"
    }

    fn subscribe(&self, symbols: &[String]) -> Vec<String> {
        let params: Vec<String> = symbols
            .iter()
            .map(|s| format!("{}@trade", stream_symbol(s)))
            .collect();
        vec![serde_json::json!({"method": "SUBSCRIBE", "params": params, "id": 1}).to_string()]
    }

    fn decode(
        &self,
        frame: &str,
        received_ms: i64,
        out: &mut Vec<Tick>,
    ) -> Result<Decoded, FrameError> {
        let probe: Probe =
            serde_json::from_str(frame).map_err(|e| FrameError::Json(e.to_string()))?;
        let body = if probe.stream.is_some() {
            let env: Envelope<'_> =
                serde_json::from_str(frame).map_err(|e| FrameError::Json(e.to_string()))?;
            env.data.get()
        } else {
            frame
        };
        if let Some(code) = probe.code {
            return Err(FrameError::Exchange(format!(
                "{code}: {}",
                probe.msg.unwrap_or_default()
            )));
        }
        if probe.stream.is_none() && probe.e.is_none() && probe.id.is_some() {
            return Ok(Decoded::Ack);
        }
        let event: TradeEvent = match serde_json::from_str::<Probe>(body) {
            Ok(Probe { e: Some(e), .. }) if e == "trade" => {
                serde_json::from_str(body).map_err(|e| FrameError::Json(e.to_string()))?
            }
            Ok(Probe { e: Some(_), .. }) => return Ok(Decoded::Skipped("not a trade event")),
            _ => {
                return Err(FrameError::Field {
                    field: "e",
                    reason: "missing event type".into(),
                });
            }
        };
        out.push(event.into_tick(received_ms)?);
        Ok(Decoded::Trades(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(frame: &str) -> (Result<Decoded, FrameError>, Vec<Tick>) {
        let mut out = Vec::new();
        let r = Binance.decode(frame, 99, &mut out);
        (r, out)
    }

    #[test]
    fn trade_frames_decode_exactly_with_taker_side() {
        // (frame, symbol, id, price, size, side, ts)
        let cases = [
            (
                r#"{"e":"trade","E":1723075200123,"s":"BTCUSDT","t":3712047611,"p":"61234.10000000","q":"0.00120000","T":1723075200122,"m":true,"M":true}"#,
                "BTC-USDT",
                "3712047611",
                "61234.10000000",
                "0.00120000",
                Side::Sell,
                1723075200122,
            ),
            (
                r#"{"stream":"ethbtc@trade","data":{"e":"trade","E":1,"s":"ETHBTC","t":7,"p":"0.05123000","q":"12.5","T":2,"m":false,"M":true}}"#,
                "ETH-BTC",
                "7",
                "0.05123000",
                "12.5",
                Side::Buy,
                2,
            ),
            (
                r#"{"e":"trade","E":5,"s":"PEPEFDUSD","t":1,"p":"0.0000123456789","q":"123456789012.5","T":5,"m":false,"M":true}"#,
                "PEPE-FDUSD",
                "1",
                "0.0000123456789",
                "123456789012.5",
                Side::Buy,
                5,
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
        }
    }

    #[test]
    fn acks_and_other_events_are_skipped_explicitly() {
        assert_eq!(decode(r#"{"result":null,"id":1}"#).0, Ok(Decoded::Ack));
        assert_eq!(
            decode(r#"{"e":"aggTrade","E":1,"s":"BTCUSDT","a":1,"p":"1","q":"1","f":1,"l":1,"T":1,"m":true}"#).0,
            Ok(Decoded::Skipped("not a trade event"))
        );
    }

    #[test]
    fn bad_frames_are_errors_not_panics() {
        let bad = [
            "not json",
            r#"{"e":"trade","s":"BTCUSDT"}"#,
            r#"{"e":"trade","E":1,"s":"BTCUSDT","t":1,"p":"abc","q":"1","T":1,"m":true}"#,
            r#"{"e":"trade","E":1,"s":"BTCUSDT","t":1,"p":"-1","q":"1","T":1,"m":true}"#,
            r#"{"e":"trade","E":1,"s":"XYZ","t":1,"p":"1","q":"1","T":1,"m":true}"#,
            r#"{"code":2,"msg":"Invalid request"}"#,
            r#"{"foo":1}"#,
        ];
        for frame in bad {
            let (r, ticks) = decode(frame);
            assert!(r.is_err(), "{frame} accepted: {r:?}");
            assert!(ticks.is_empty());
        }
    }

    #[test]
    fn subscribe_request_names_streams() {
        let msgs = Binance.subscribe(&["BTC-USDT".into(), "ETH-USDT".into()]);
        assert_eq!(
            msgs,
            vec![r#"{"id":1,"method":"SUBSCRIBE","params":["btcusdt@trade","ethusdt@trade"]}"#]
        );
    }
}
