//! Kraken spot WebSocket v2 `trade` channel
//! (<https://docs.kraken.com/api/docs/websocket-v2/trade>).
//!
//! - Subscribe: `{"method":"subscribe","params":{"channel":"trade","symbol":["BTC/USD"],
//!   "snapshot":false},"req_id":1}`; Kraken answers with one `{"method":"subscribe",
//!   "result":{"channel":"trade","symbol":"BTC/USD",…},"success":true,…}` per symbol, or
//!   `"success":false,"error":"…"`.
//! - Symbols are `BTC/USD` (v2 calls bitcoin BTC; REST still says XBT: `XBTUSD`).
//! - Keepalive: the server sends `{"channel":"heartbeat"}` about every second while subscribed;
//!   the client may send `{"method":"ping"}`, answered by `{"method":"pong",…}`
//!   (<https://docs.kraken.com/api/docs/websocket-v2/ping>). Connects with a `status` frame.
//! - `price` and `qty` are JSON numbers: their exact text becomes the Decimal, never an f64.
//! - `side` is the taker's side ("the side of the taker order").
//! - Trade ids are sequential per pair. Backfill:
//!   `GET /0/public/Trades?pair=XBTUSD&since=<unix ns>&count=1000`
//!   (<https://docs.kraken.com/api/docs/rest-api/get-recent-trades>), rows
//!   `[price, volume, time, buy/sell (taker), market/limit, misc, trade_id]`, oldest first,
//!   paged by `since = last`.

use std::time::Duration;

use rust_decimal::Decimal;
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::connectors::{
    BackfillQuery, Connector, ConnectorInfo, Decoded, FrameError, Keepalive, json_err,
    parse_canonical, positive_decimal, rfc3339_ms,
};
use tickcast_core::domain::{SCHEMA_VERSION, Side, Tick};

/// Rows per REST page (`count`'s maximum).
pub const PAGE: usize = 1000;

static KRAKEN_INFO: ConnectorInfo = ConnectorInfo {
    name: "kraken",
    exchange: "kraken",
    ws_url: "wss://ws.kraken.com/v2",
    rest_url: "https://api.kraken.com",
    max_symbols_per_connection: 100,
    keepalive: Keepalive::ClientText {
        text: r#"{"method":"ping"}"#,
        every: Duration::from_secs(30),
    },
    max_connection_age: None,
    sequential_ids: true,
};

/// Kraken spot, WebSocket v2.
#[derive(Debug, Clone, Copy, Default)]
pub struct Kraken;

/// Every top-level field any frame might carry, borrowed.
///
/// ```json
/// {"channel":"trade","type":"update","data":[{"symbol":"MATIC/USD","side":"buy","price":0.5147,
///  "qty":6423.46326,"ord_type":"limit","trade_id":4665846,"timestamp":"2023-09-25T07:48:36.925533Z"}]}
/// {"method":"subscribe","result":{"channel":"trade","snapshot":true,"symbol":"MATIC/USD"},
///  "success":true,"time_in":"2023-09-25T09:04:31.742599Z","time_out":"2023-09-25T09:04:31.742648Z"}
/// ```
#[derive(Debug, Deserialize)]
struct Frame<'a> {
    #[serde(borrow)]
    channel: Option<&'a str>,
    #[serde(borrow)]
    data: Option<&'a RawValue>,
    #[serde(borrow)]
    method: Option<&'a str>,
    success: Option<bool>,
    error: Option<String>,
}

/// One `data[]` entry of a `trade` frame.
#[derive(Debug, Deserialize)]
struct Trade<'a> {
    #[serde(borrow)]
    symbol: &'a str,
    #[serde(borrow)]
    side: &'a str,
    #[serde(borrow)]
    price: &'a RawValue,
    #[serde(borrow)]
    qty: &'a RawValue,
    trade_id: u64,
    #[serde(borrow)]
    timestamp: &'a str,
}

/// A `/0/public/Trades` response:
///
/// ```json
/// {"error":[],"result":{"XXBTZUSD":[["30243.40000","0.34507674",1688669597.8277369,"b","m","",61044952]],
///  "last":"1688671969993150842"}}
/// ```
#[derive(Debug, Deserialize)]
struct RestBody<'a> {
    #[serde(default)]
    error: Vec<String>,
    #[serde(borrow)]
    result: Option<std::collections::HashMap<&'a str, &'a RawValue>>,
}

/// One REST row: price, volume, time (s, as a JSON number), side, type, misc, trade id.
type RestRow<'a> = (
    &'a str,
    &'a str,
    &'a RawValue,
    &'a str,
    &'a str,
    &'a str,
    u64,
);

/// The exact decimal a JSON number (or numeric string) spells, exponent forms included.
fn number(field: &'static str, raw: &RawValue) -> Result<Decimal, FrameError> {
    let text = raw.get().trim_matches('"');
    if text.contains(['e', 'E']) {
        return match Decimal::from_scientific(text) {
            Ok(d) if d > Decimal::ZERO => Ok(d),
            _ => Err(FrameError::Field {
                field,
                reason: format!("`{text}` is not a number > 0"),
            }),
        };
    }
    positive_decimal(field, text)
}

/// `BTC/USD` → `BTC-USD`.
fn canonical(raw: &str) -> Result<String, FrameError> {
    let (base, quote) = raw
        .split_once('/')
        .ok_or_else(|| FrameError::Symbol(raw.to_string()))?;
    parse_canonical(&format!("{base}-{quote}")).map_err(|_| FrameError::Symbol(raw.to_string()))
}

/// The REST pair for a canonical symbol: `BTC-USD` → `XBTUSD` (REST keeps the old asset codes
/// XBT and XDG).
pub fn rest_pair(canonical: &str) -> String {
    let rename = |a: &str| match a {
        "BTC" => "XBT".to_string(),
        "DOGE" => "XDG".to_string(),
        other => other.to_string(),
    };
    let (base, quote) = canonical.split_once('-').unwrap_or((canonical, ""));
    format!("{}{}", rename(base), rename(quote))
}

/// Epoch seconds with a fraction (`1688669597.8277369`) → epoch ms, exactly (no f64).
fn seconds_to_ms(raw: &RawValue) -> Result<i64, FrameError> {
    let text = raw.get().trim_matches('"');
    let bad = || FrameError::Field {
        field: "time",
        reason: format!("`{text}` is not epoch seconds"),
    };
    let (secs, frac) = text.split_once('.').unwrap_or((text, ""));
    if !frac.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let secs: i64 = secs.parse().map_err(|_| bad())?;
    let millis = format!("{frac:0<3}")[..3]
        .parse::<i64>()
        .map_err(|_| bad())?;
    secs.checked_mul(1000)
        .and_then(|ms| ms.checked_add(millis))
        .ok_or_else(bad)
}

fn side(field: &'static str, s: &str) -> Result<Side, FrameError> {
    match s {
        "buy" | "b" => Ok(Side::Buy),
        "sell" | "s" => Ok(Side::Sell),
        other => Err(FrameError::Field {
            field,
            reason: format!("`{other}` is neither buy nor sell"),
        }),
    }
}

fn decode_trades(
    data: &RawValue,
    received_ms: i64,
    out: &mut Vec<Tick>,
) -> Result<usize, FrameError> {
    let trades: Vec<Trade<'_>> = serde_json::from_str(data.get()).map_err(json_err)?;
    let mut ticks = Vec::with_capacity(trades.len());
    for t in &trades {
        ticks.push(Tick {
            v: SCHEMA_VERSION,
            exchange: "kraken".to_string(),
            symbol: canonical(t.symbol)?,
            trade_id: t.trade_id.to_string(),
            price: number("price", t.price)?,
            size: number("qty", t.qty)?,
            side: side("side", t.side)?,
            ts_ms: rfc3339_ms("timestamp", t.timestamp)?,
            ingested_ms: received_ms,
        });
    }
    let n = ticks.len();
    out.extend(ticks);
    Ok(n)
}

impl Connector for Kraken {
    fn info(&self) -> &'static ConnectorInfo {
        &KRAKEN_INFO
    }

    fn native_symbol(&self, canonical: &str) -> String {
        canonical.to_ascii_uppercase().replacen('-', "/", 1)
    }

    fn subscribe(&self, symbols: &[String]) -> Vec<String> {
        let native: Vec<String> = symbols.iter().map(|s| self.native_symbol(s)).collect();
        vec![
            serde_json::json!({
                "method": "subscribe",
                "params": {"channel": "trade", "symbol": native, "snapshot": false},
                "req_id": 1,
            })
            .to_string(),
        ]
    }

    /// One acknowledgement per symbol.
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
        if f.success == Some(false) || (f.error.is_some() && f.channel.is_none()) {
            return Err(FrameError::Exchange(format!(
                "{}: {}",
                f.method.unwrap_or("request"),
                f.error.as_deref().unwrap_or("failed")
            )));
        }
        match (f.method, f.channel) {
            (Some("subscribe"), _) => Ok(Decoded::Ack),
            (Some("pong"), _) => Ok(Decoded::Skipped("pong")),
            (Some(_), _) => Ok(Decoded::Skipped("reply to another request")),
            (None, Some("trade")) => {
                let data = f.data.ok_or(FrameError::Field {
                    field: "data",
                    reason: "missing".into(),
                })?;
                Ok(Decoded::Trades(decode_trades(data, received_ms, out)?))
            }
            (None, Some("heartbeat")) => Ok(Decoded::Skipped("heartbeat")),
            (None, Some("status")) => Ok(Decoded::Skipped("status")),
            (None, Some(_)) => Ok(Decoded::Skipped("other channel")),
            (None, None) => Err(FrameError::Unrecognised(
                "neither a channel message nor a method reply".into(),
            )),
        }
    }

    fn backfill_path(&self, q: &BackfillQuery<'_>) -> Option<String> {
        // One nanosecond before trade `from_id - 1`'s millisecond: a superset, filtered by id.
        let since = q.cursor.map_or_else(
            || {
                (i128::from(q.after_ms.max(0)) * 1_000_000 - 1)
                    .max(0)
                    .to_string()
            },
            str::to_string,
        );
        Some(format!(
            "/0/public/Trades?pair={}&since={since}&count={PAGE}",
            rest_pair(q.symbol)
        ))
    }

    fn backfill_decode(
        &self,
        q: &BackfillQuery<'_>,
        body: &str,
        received_ms: i64,
        out: &mut Vec<Tick>,
    ) -> Result<Option<String>, FrameError> {
        let b: RestBody<'_> = serde_json::from_str(body).map_err(json_err)?;
        if !b.error.is_empty() {
            return Err(FrameError::Exchange(b.error.join("; ")));
        }
        let result = b.result.ok_or(FrameError::Field {
            field: "result",
            reason: "missing".into(),
        })?;
        let last = result
            .get("last")
            .map(|l| l.get().trim_matches('"').to_string());
        let Some(rows) = result.iter().find(|(k, _)| **k != "last").map(|(_, v)| v) else {
            return Ok(None);
        };
        let rows: Vec<RestRow<'_>> = serde_json::from_str(rows.get()).map_err(json_err)?;
        let mut newest = None;
        for (price, volume, time, s, _, _, id) in &rows {
            out.push(Tick {
                v: SCHEMA_VERSION,
                exchange: "kraken".to_string(),
                symbol: q.symbol.to_string(),
                trade_id: id.to_string(),
                price: positive_decimal("price", price)?,
                size: positive_decimal("volume", volume)?,
                side: side("side", s)?,
                ts_ms: seconds_to_ms(time)?,
                ingested_ms: received_ms,
            });
            newest = newest.max(Some(*id));
        }
        Ok(match (newest, q.to_id) {
            (None, _) => None,
            (Some(n), Some(to)) if n >= to => None,
            _ if rows.len() < PAGE && q.to_id.is_none() => None,
            _ => last,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(frame: &str) -> (Result<Decoded, FrameError>, Vec<Tick>) {
        let mut out = Vec::new();
        let r = Kraken.decode(frame, 99, &mut out);
        (r, out)
    }

    #[test]
    fn trades_decode_exactly_from_json_numbers() {
        // (frame, symbol, id, price, size, taker side, ts)
        let cases = [
            (
                r#"{"channel":"trade","type":"update","data":[{"symbol":"MATIC/USD","side":"buy","price":0.5147,"qty":6423.46326,"ord_type":"limit","trade_id":4665846,"timestamp":"2023-09-25T07:48:36.925533Z"}]}"#,
                "MATIC-USD",
                "4665846",
                "0.5147",
                "6423.46326",
                Side::Buy,
                1_695_628_116_925,
            ),
            (
                r#"{"channel":"trade","type":"snapshot","data":[{"symbol":"BTC/USD","side":"sell","price":61234.10000,"qty":0.00120000,"ord_type":"market","trade_id":1,"timestamp":"2024-02-29T23:59:59.9Z"}]}"#,
                "BTC-USD",
                "1",
                "61234.10000",
                "0.00120000",
                Side::Sell,
                1_709_251_199_900,
            ),
            (
                r#"{"channel":"trade","type":"update","data":[{"symbol":"PEPE/EUR","side":"buy","price":0.0000123456789,"qty":123456789012.5,"ord_type":"limit","trade_id":77,"timestamp":"2023-09-25T07:48:36Z"}]}"#,
                "PEPE-EUR",
                "77",
                "0.0000123456789",
                "123456789012.5",
                Side::Buy,
                1_695_628_116_000,
            ),
            (
                r#"{"channel":"trade","type":"update","data":[{"symbol":"SHIB/USD","side":"sell","price":1.2e-5,"qty":1E+3,"ord_type":"limit","trade_id":5,"timestamp":"2023-09-25T07:48:36Z"}]}"#,
                "SHIB-USD",
                "5",
                "0.000012",
                "1000",
                Side::Sell,
                1_695_628_116_000,
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
            assert_eq!(t.exchange, "kraken");
        }
    }

    #[test]
    fn one_ack_per_symbol_and_explicit_skips() {
        let syms = vec!["BTC-USD".to_string(), "ETH-USD".to_string()];
        assert_eq!(
            Kraken.subscribe(&syms),
            vec![
                r#"{"method":"subscribe","params":{"channel":"trade","snapshot":false,"symbol":["BTC/USD","ETH/USD"]},"req_id":1}"#
            ]
        );
        assert_eq!(Kraken.expected_acks(&syms), 2);
        assert_eq!(Kraken.native_symbol("btc-usdt"), "BTC/USDT");
        assert_eq!(
            decode(r#"{"method":"subscribe","req_id":1,"result":{"channel":"trade","snapshot":false,"symbol":"BTC/USD"},"success":true,"time_in":"2023-09-25T09:04:31.742599Z","time_out":"2023-09-25T09:04:31.742648Z"}"#).0,
            Ok(Decoded::Ack)
        );
        for (frame, why) in [
            (r#"{"channel":"heartbeat"}"#, "heartbeat"),
            (
                r#"{"channel":"status","type":"update","data":[{"version":"2.0.0","system":"online","api_version":"v2","connection_id":123}]}"#,
                "status",
            ),
            (
                r#"{"method":"pong","req_id":101,"time_in":"2023-09-24T14:10:23.799685Z","time_out":"2023-09-24T14:10:23.799703Z"}"#,
                "pong",
            ),
            (
                r#"{"channel":"book","type":"update","data":[]}"#,
                "other channel",
            ),
        ] {
            assert_eq!(decode(frame).0, Ok(Decoded::Skipped(why)), "{frame}");
        }
    }

    #[test]
    fn errors_and_garbage_are_errors_not_panics() {
        assert_eq!(
            decode(r#"{"error":"Currency pair not supported XYZ/USD","method":"subscribe","req_id":1,"success":false,"symbol":"XYZ/USD","time_in":"x","time_out":"y"}"#).0,
            Err(FrameError::Exchange(
                "subscribe: Currency pair not supported XYZ/USD".into()
            ))
        );
        let bad = [
            "not json",
            "[1]",
            r#"{"foo":1}"#,
            r#"{"channel":"trade","type":"update"}"#,
            r#"{"channel":"trade","data":{}}"#,
            r#"{"channel":"trade","data":[{"symbol":"BTC/USD","side":"buy","price":"abc","qty":1,"trade_id":1,"timestamp":"2023-09-25T07:48:36Z"}]}"#,
            r#"{"channel":"trade","data":[{"symbol":"BTC/USD","side":"buy","price":-1,"qty":1,"trade_id":1,"timestamp":"2023-09-25T07:48:36Z"}]}"#,
            r#"{"channel":"trade","data":[{"symbol":"BTC/USD","side":"up","price":1,"qty":1,"trade_id":1,"timestamp":"2023-09-25T07:48:36Z"}]}"#,
            r#"{"channel":"trade","data":[{"symbol":"BTCUSD","side":"buy","price":1,"qty":1,"trade_id":1,"timestamp":"2023-09-25T07:48:36Z"}]}"#,
            r#"{"channel":"trade","data":[{"symbol":"BTC/USD","side":"buy","price":1,"qty":1,"trade_id":-4,"timestamp":"2023-09-25T07:48:36Z"}]}"#,
            r#"{"channel":"trade","data":[{"symbol":"BTC/USD","side":"buy","price":1,"qty":1,"trade_id":1,"timestamp":"soon"}]}"#,
            r#"{"channel":"trade","data":[{"symbol":"BTC/USD","side":"buy","price":1,"qty":1,"trade_id":1,"timestamp":"2023-09-25T07:48:36Z"},{"symbol":"BTC/USD","side":"buy","price":0,"qty":1,"trade_id":2,"timestamp":"2023-09-25T07:48:36Z"}]}"#,
        ];
        for frame in bad {
            let (r, ticks) = decode(frame);
            assert!(r.is_err(), "{frame} accepted: {r:?}");
            assert!(ticks.is_empty(), "{frame}");
        }
    }

    #[test]
    fn backfill_pages_by_time_with_the_last_cursor() {
        let q = BackfillQuery {
            symbol: "BTC-USD",
            from_id: 61_044_952,
            to_id: Some(61_044_953),
            after_ms: 1_688_669_597_000,
            cursor: None,
        };
        assert_eq!(
            Kraken.backfill_path(&q).as_deref(),
            Some("/0/public/Trades?pair=XBTUSD&since=1688669596999999999&count=1000")
        );
        let body = r#"{"error":[],"result":{"XXBTZUSD":[["30243.40000","0.34507674",1688669597.8277369,"b","m","",61044952],["30243.30000","0.00100000",1688669598,"s","l","",61044953]],"last":"1688669598000000000"}}"#;
        let mut out = Vec::new();
        assert_eq!(Kraken.backfill_decode(&q, body, 5, &mut out), Ok(None));
        assert_eq!(out.len(), 2);
        let t = &out[0];
        assert_eq!(
            (t.trade_id.as_str(), t.price.to_string(), t.size.to_string()),
            ("61044952", "30243.40000".into(), "0.34507674".into())
        );
        assert_eq!(
            (t.side, t.ts_ms, t.symbol.as_str()),
            (Side::Buy, 1_688_669_597_827, "BTC-USD")
        );
        assert_eq!((out[1].side, out[1].ts_ms), (Side::Sell, 1_688_669_598_000));
        // Not there yet: page on from `last`.
        let far = BackfillQuery {
            to_id: Some(70_000_000),
            ..q
        };
        assert_eq!(
            Kraken.backfill_decode(&far, body, 5, &mut Vec::new()),
            Ok(Some("1688669598000000000".into()))
        );
        let next = BackfillQuery {
            cursor: Some("1688669598000000000"),
            ..far
        };
        assert!(
            Kraken
                .backfill_path(&next)
                .is_some_and(|p| p.contains("since=1688669598000000000&"))
        );
        // Open range: a short page is the end.
        let open = BackfillQuery { to_id: None, ..q };
        assert_eq!(
            Kraken.backfill_decode(&open, body, 5, &mut Vec::new()),
            Ok(None)
        );
        let empty = r#"{"error":[],"result":{"XXBTZUSD":[],"last":"1"}}"#;
        assert_eq!(
            Kraken.backfill_decode(&far, empty, 5, &mut Vec::new()),
            Ok(None)
        );
        assert_eq!(
            Kraken.backfill_decode(
                &q,
                r#"{"error":["EQuery:Unknown asset pair"]}"#,
                0,
                &mut Vec::new()
            ),
            Err(FrameError::Exchange("EQuery:Unknown asset pair".into()))
        );
        assert!(
            Kraken
                .backfill_decode(&q, "garbage", 0, &mut Vec::new())
                .is_err()
        );
        assert_eq!(rest_pair("DOGE-USDT"), "XDGUSDT");
    }
}
