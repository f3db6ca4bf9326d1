//! Coinbase public trades, two feeds of the same matching engine (same products, same
//! per-product sequential trade ids):
//!
//! - `coinbase-exchange`: Exchange feed `wss://ws-feed.exchange.coinbase.com`, channel `matches`
//!   (<https://docs.cdp.coinbase.com/exchange/websocket-feed/channels#match>). Subscribe
//!   `{"type":"subscribe","product_ids":[…],"channels":["matches","heartbeat"]}`; one
//!   `{"type":"subscriptions",…}` frame acknowledges each request. Trades are `match` and
//!   `last_match` (the latest trade, sent once after subscribing) frames.
//! - `coinbase`: Advanced Trade `wss://advanced-trade-ws.coinbase.com`, channel `market_trades`
//!   (<https://docs.cdp.coinbase.com/coinbase-app/advanced-trade-apis/websocket/websocket-channels>).
//!   One channel per subscribe request, so we send two: `market_trades` and `heartbeats` ("most
//!   channels close within 60-90 seconds if no updates are sent; subscribe to heartbeats to
//!   keep all subscriptions open"); each is acknowledged by one `{"channel":"subscriptions",…}`
//!   frame. A `snapshot` event replays recent trades on subscribe: they are real trades
//!   (de-duplicated downstream by trade id).
//!
//! # SIDE: BOTH FEEDS REPORT THE MAKER'S SIDE — WE INVERT IT
//!
//! Exchange docs, `match`: "The side field indicates the maker order side. If the side is sell
//! this indicates the maker was a sell order and the match is considered an up-tick." The same
//! holds for the REST trades endpoint. Verified on a recorded 2021 capture: for every trade id
//! seen both as `match` and as `ticker` (whose `side` is the taker's) the sides differ.
//!
//! Advanced Trade `market_trades`: Coinbase's docs do not say whose side it is. We treat it as
//! the maker side too: NautilusTrader's Coinbase adapter
//! (<https://nautilustrader.io/docs/rust-api-latest/nautilus_coinbase/http/parse/fn.coinbase_side_to_aggressor.html>:
//! "Coinbase reports the maker side on public market trades, so the aggressor is the opposite
//! side") and bbgo (c9s/bbgo PR #2509 "[coinbase] correct market trade side to taker side")
//! both invert it, and it is the same engine's trade as the Exchange `match`.
//!
//! # Backfill (both connectors)
//!
//! Advanced Trade has no public trade-id-paged endpoint, so both use the Exchange REST
//! `GET /products/{product_id}/trades?limit=N&after=<id>`
//! (<https://docs.cdp.coinbase.com/exchange/reference/exchangerestapi_getproducttrades>):
//! newest first, ids `< after` (without `after`: the latest). A range `from..=to` starts at
//! `after = to + 1`; an open range starts at the latest page; both page down until `from`.

use std::time::Duration;

use serde::Deserialize;
use serde_json::value::RawValue;

use crate::connectors::{
    BackfillQuery, Connector, ConnectorInfo, Decoded, FrameError, Keepalive, json_err, missing,
    parse_canonical, positive_decimal, rfc3339_ms,
};
use tickcast_core::domain::{SCHEMA_VERSION, Side, Tick};

/// Rows per REST page (the endpoint's maximum).
pub const PAGE: u64 = 1000;

static ADVANCED: ConnectorInfo = ConnectorInfo {
    name: "coinbase",
    exchange: "coinbase",
    ws_url: "wss://advanced-trade-ws.coinbase.com",
    rest_url: "https://api.exchange.coinbase.com",
    max_symbols_per_connection: 100,
    // The `heartbeats` channel keeps subscriptions open; pings keep the socket open.
    keepalive: Keepalive::ClientPing {
        every: Duration::from_secs(30),
    },
    max_connection_age: None,
    sequential_ids: true,
};

static EXCHANGE: ConnectorInfo = ConnectorInfo {
    name: "coinbase-exchange",
    ws_url: "wss://ws-feed.exchange.coinbase.com",
    ..ADVANCED
};

/// Coinbase Advanced Trade `market_trades`.
#[derive(Debug, Clone, Copy, Default)]
pub struct CoinbaseAdvanced;

/// Coinbase Exchange feed `matches`.
#[derive(Debug, Clone, Copy, Default)]
pub struct CoinbaseExchange;

/// Every field of either feed's frames, borrowed, parsed in one pass.
///
/// ```json
/// {"type":"match","trade_id":10,"sequence":50,"maker_order_id":"ac928c66-ca53-498f-9c13-a110027a60e8",
///  "taker_order_id":"132fb6ae-456b-4654-b4e0-d681ac05cea1","time":"2014-11-07T08:19:27.028459Z",
///  "product_id":"BTC-USD","size":"5.23512","price":"400.23","side":"sell"}
/// {"channel":"market_trades","client_id":"","timestamp":"2023-02-09T20:19:35.39625135Z","sequence_num":0,
///  "events":[{"type":"snapshot","trades":[{"trade_id":"000000000","product_id":"ETH-USD",
///  "price":"1260.01","size":"0.3","side":"BUY","time":"2019-08-14T20:42:27.265Z"}]}]}
/// ```
#[derive(Debug, Deserialize)]
struct Frame<'a> {
    #[serde(rename = "type", borrow)]
    kind: Option<&'a str>,
    #[serde(borrow)]
    channel: Option<&'a str>,
    /// Parsed only on `market_trades` frames.
    #[serde(borrow)]
    events: Option<&'a RawValue>,
    // A `match` frame's trade fields (see [`Trade`]).
    #[serde(borrow)]
    trade_id: Option<&'a RawValue>,
    #[serde(borrow)]
    product_id: Option<&'a str>,
    #[serde(borrow)]
    price: Option<&'a str>,
    #[serde(borrow)]
    size: Option<&'a str>,
    #[serde(borrow)]
    side: Option<&'a str>,
    #[serde(borrow)]
    time: Option<&'a str>,
    message: Option<String>,
    reason: Option<String>,
}

impl<'a> Frame<'a> {
    fn trade(&self) -> Trade<'a> {
        Trade {
            trade_id: self.trade_id,
            product_id: self.product_id,
            price: self.price,
            size: self.size,
            side: self.side,
            time: self.time,
        }
    }
}

/// One trade: a `match` frame's fields, an Advanced Trade `trades[]` entry or a REST row.
///
/// ```json
/// {"time":"2014-11-07T22:19:28.578544Z","trade_id":74,"price":"10.00000000","size":"0.01000000","side":"buy"}
/// ```
#[derive(Debug, Deserialize)]
struct Trade<'a> {
    /// A number on the Exchange feed and REST, a string on Advanced Trade.
    #[serde(borrow)]
    trade_id: Option<&'a RawValue>,
    #[serde(borrow)]
    product_id: Option<&'a str>,
    #[serde(borrow)]
    price: Option<&'a str>,
    #[serde(borrow)]
    size: Option<&'a str>,
    #[serde(borrow)]
    side: Option<&'a str>,
    #[serde(borrow)]
    time: Option<&'a str>,
}

#[derive(Debug, Deserialize)]
struct Event<'a> {
    #[serde(borrow, default)]
    trades: Vec<Trade<'a>>,
}

/// An error body of the REST API: `{"message":"NotFound"}`.
#[derive(Debug, Deserialize)]
struct RestError {
    message: Option<String>,
}

/// Coinbase reports the MAKER's side (`buy`/`BUY` = a resting bid was hit = the taker sold):
/// returns the TAKER's side.
pub fn taker_side(maker_side: &str) -> Result<Side, FrameError> {
    match maker_side {
        "buy" | "BUY" => Ok(Side::Sell),
        "sell" | "SELL" => Ok(Side::Buy),
        other => Err(FrameError::Field {
            field: "side",
            reason: format!("`{other}` is neither buy nor sell"),
        }),
    }
}

/// The trade id as sent: a JSON number (`74`) or string (`"74"`), digits only.
fn trade_id(raw: &RawValue) -> Result<u64, FrameError> {
    let text = raw.get().trim_matches('"');
    text.parse::<u64>().map_err(|_| FrameError::Field {
        field: "trade_id",
        reason: format!("`{}` is not a trade id", raw.get()),
    })
}

impl Trade<'_> {
    /// `product` is used when the row carries no `product_id` (REST rows).
    fn tick(&self, product: Option<&str>, received_ms: i64) -> Result<Tick, FrameError> {
        let raw_symbol = self.product_id.or(product).ok_or(missing("product_id"))?;
        let symbol =
            parse_canonical(raw_symbol).map_err(|_| FrameError::Symbol(raw_symbol.to_string()))?;
        Ok(Tick {
            v: SCHEMA_VERSION,
            exchange: "coinbase".to_string(),
            symbol,
            trade_id: trade_id(self.trade_id.ok_or(missing("trade_id"))?)?.to_string(),
            price: positive_decimal("price", self.price.ok_or(missing("price"))?)?,
            size: positive_decimal("size", self.size.ok_or(missing("size"))?)?,
            side: taker_side(self.side.ok_or(missing("side"))?)?,
            ts_ms: rfc3339_ms("time", self.time.ok_or(missing("time"))?)?,
            ingested_ms: received_ms,
        })
    }
}

fn exchange_error(f: &Frame<'_>) -> FrameError {
    FrameError::Exchange(format!(
        "{}{}",
        f.message.as_deref().unwrap_or("error"),
        f.reason
            .as_deref()
            .map(|r| format!(": {r}"))
            .unwrap_or_default()
    ))
}

/// Path of one backfill page, shared by both connectors.
pub fn backfill_path(q: &BackfillQuery<'_>) -> String {
    let after = q
        .cursor
        .and_then(|c| c.parse::<u64>().ok())
        .or(q.to_id.map(|to| to.saturating_add(1)));
    match after {
        Some(after) => format!(
            "/products/{}/trades?limit={}&after={after}",
            q.symbol,
            after.saturating_sub(q.from_id).clamp(1, PAGE)
        ),
        None => format!("/products/{}/trades?limit={PAGE}", q.symbol),
    }
}

/// Decodes one backfill page (newest first), shared by both connectors. The next cursor is the
/// smallest id of the page, until `from_id` is reached or a page comes back empty.
pub fn backfill_decode(
    q: &BackfillQuery<'_>,
    body: &str,
    received_ms: i64,
    out: &mut Vec<Tick>,
) -> Result<Option<String>, FrameError> {
    let rows: Vec<Trade<'_>> = match serde_json::from_str(body) {
        Ok(rows) => rows,
        Err(e) => {
            return Err(match serde_json::from_str::<RestError>(body) {
                Ok(RestError { message: Some(m) }) => FrameError::Exchange(m),
                _ => json_err(e),
            });
        }
    };
    let mut oldest: Option<u64> = None;
    for r in &rows {
        let t = r.tick(Some(q.symbol), received_ms)?;
        let id = trade_id(r.trade_id.ok_or(missing("trade_id"))?)?;
        oldest = Some(oldest.map_or(id, |o| o.min(id)));
        out.push(t);
    }
    Ok(oldest.filter(|&o| o > q.from_id).map(|o| o.to_string()))
}

impl Connector for CoinbaseExchange {
    fn info(&self) -> &'static ConnectorInfo {
        &EXCHANGE
    }

    fn native_symbol(&self, canonical: &str) -> String {
        canonical.to_ascii_uppercase()
    }

    fn subscribe(&self, symbols: &[String]) -> Vec<String> {
        vec![
            serde_json::json!({
                "type": "subscribe",
                "product_ids": symbols,
                "channels": ["matches", "heartbeat"],
            })
            .to_string(),
        ]
    }

    fn expected_acks(&self, _symbols: &[String]) -> usize {
        1
    }

    fn decode(
        &self,
        frame: &str,
        received_ms: i64,
        out: &mut Vec<Tick>,
    ) -> Result<Decoded, FrameError> {
        let f: Frame<'_> = serde_json::from_str(frame).map_err(json_err)?;
        Ok(match f.kind.ok_or(missing("type"))? {
            "match" | "last_match" => {
                out.push(f.trade().tick(None, received_ms)?);
                Decoded::Trades(1)
            }
            "subscriptions" => Decoded::Ack,
            "error" => return Err(exchange_error(&f)),
            "heartbeat" => Decoded::Skipped("heartbeat"),
            // Carries trade_id, last_size and the taker side, but only for the latest trade.
            "ticker" => Decoded::Skipped("ticker (trades come from `matches`)"),
            "snapshot" | "l2update" => Decoded::Skipped("level2 book"),
            "received" | "open" | "done" | "change" | "activate" => {
                Decoded::Skipped("full-channel order event")
            }
            "status" => Decoded::Skipped("status"),
            _ => Decoded::Skipped("unknown message type (ignored as the docs ask)"),
        })
    }

    fn backfill_path(&self, q: &BackfillQuery<'_>) -> Option<String> {
        Some(backfill_path(q))
    }

    fn backfill_decode(
        &self,
        q: &BackfillQuery<'_>,
        body: &str,
        received_ms: i64,
        out: &mut Vec<Tick>,
    ) -> Result<Option<String>, FrameError> {
        backfill_decode(q, body, received_ms, out)
    }
}

impl Connector for CoinbaseAdvanced {
    fn info(&self) -> &'static ConnectorInfo {
        &ADVANCED
    }

    fn native_symbol(&self, canonical: &str) -> String {
        canonical.to_ascii_uppercase()
    }

    fn subscribe(&self, symbols: &[String]) -> Vec<String> {
        ["market_trades", "heartbeats"]
            .iter()
            .map(|channel| {
                serde_json::json!({"type": "subscribe", "product_ids": symbols, "channel": channel})
                    .to_string()
            })
            .collect()
    }

    fn expected_acks(&self, _symbols: &[String]) -> usize {
        2
    }

    fn decode(
        &self,
        frame: &str,
        received_ms: i64,
        out: &mut Vec<Tick>,
    ) -> Result<Decoded, FrameError> {
        let f: Frame<'_> = serde_json::from_str(frame).map_err(json_err)?;
        if f.kind == Some("error") {
            return Err(exchange_error(&f));
        }
        Ok(match f.channel.ok_or(missing("channel"))? {
            "market_trades" => {
                let events = f.events.ok_or(missing("events"))?.get();
                let events: Vec<Event<'_>> = serde_json::from_str(events).map_err(json_err)?;
                let before = out.len();
                for event in &events {
                    for t in &event.trades {
                        match t.tick(None, received_ms) {
                            Ok(tick) => out.push(tick),
                            Err(e) => {
                                out.truncate(before);
                                return Err(e);
                            }
                        }
                    }
                }
                Decoded::Trades(out.len() - before)
            }
            "subscriptions" => Decoded::Ack,
            "heartbeats" => Decoded::Skipped("heartbeats"),
            _ => Decoded::Skipped("other channel"),
        })
    }

    fn backfill_path(&self, q: &BackfillQuery<'_>) -> Option<String> {
        Some(backfill_path(q))
    }

    fn backfill_decode(
        &self,
        q: &BackfillQuery<'_>,
        body: &str,
        received_ms: i64,
        out: &mut Vec<Tick>,
    ) -> Result<Option<String>, FrameError> {
        backfill_decode(q, body, received_ms, out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(c: &dyn Connector, frame: &str) -> (Result<Decoded, FrameError>, Vec<Tick>) {
        let mut out = Vec::new();
        let r = c.decode(frame, 99, &mut out);
        (r, out)
    }

    /// (connector, frame, symbol, id, price, size, TAKER side, ts)
    type Case = (
        &'static dyn Connector,
        &'static str,
        &'static str,
        &'static str,
        &'static str,
        &'static str,
        Side,
        i64,
    );

    #[test]
    fn trades_decode_exactly_with_the_maker_side_inverted() {
        let cases: [Case; 4] = [
            (
                &CoinbaseExchange,
                r#"{"type":"match","trade_id":10,"sequence":50,"maker_order_id":"ac928c66-ca53-498f-9c13-a110027a60e8","taker_order_id":"132fb6ae-456b-4654-b4e0-d681ac05cea1","time":"2014-11-07T08:19:27.028459Z","product_id":"BTC-USD","size":"5.23512","price":"400.23","side":"sell"}"#,
                "BTC-USD",
                "10",
                "400.23",
                "5.23512",
                Side::Buy, // maker sold → taker bought
                1_415_348_367_028,
            ),
            (
                &CoinbaseExchange,
                r#"{"type":"last_match","trade_id":163717041,"maker_order_id":"a","taker_order_id":"b","side":"buy","size":"0.00100000","price":"61001.01000000","product_id":"ETH-BTC","sequence":1,"time":"2021-04-17T10:11:12.123456Z"}"#,
                "ETH-BTC",
                "163717041",
                "61001.01000000",
                "0.00100000",
                Side::Sell, // maker bought → taker sold
                1_618_654_272_123,
            ),
            (
                &CoinbaseAdvanced,
                r#"{"channel":"market_trades","client_id":"","timestamp":"2023-02-09T20:19:35.39625135Z","sequence_num":0,"events":[{"type":"snapshot","trades":[{"trade_id":"000000000","product_id":"ETH-USD","price":"1260.01","size":"0.3","side":"BUY","time":"2019-08-14T20:42:27.265Z"}]}]}"#,
                "ETH-USD",
                "0",
                "1260.01",
                "0.3",
                Side::Sell,
                1_565_815_347_265,
            ),
            (
                &CoinbaseAdvanced,
                r#"{"channel":"market_trades","client_id":"","timestamp":"2023-02-09T20:19:35Z","sequence_num":4,"events":[{"type":"update","trades":[{"trade_id":"571","product_id":"PEPE-USD","price":"0.0000123456789","size":"123456789012.5","side":"SELL","time":"2024-02-29T23:59:59.9Z"}]}]}"#,
                "PEPE-USD",
                "571",
                "0.0000123456789",
                "123456789012.5",
                Side::Buy,
                1_709_251_199_900,
            ),
        ];
        for (c, frame, sym, id, price, size, side, ts) in cases {
            let (r, ticks) = decode(c, frame);
            assert_eq!(r, Ok(Decoded::Trades(1)), "{frame}");
            let t = &ticks[0];
            assert_eq!((t.symbol.as_str(), t.trade_id.as_str()), (sym, id));
            assert_eq!(t.price.to_string(), price, "price digits kept");
            assert_eq!(t.size.to_string(), size, "size digits kept");
            assert_eq!((t.side, t.ts_ms, t.ingested_ms), (side, ts, 99));
            assert_eq!(t.exchange, "coinbase");
        }
        let two = r#"{"channel":"market_trades","events":[{"type":"update","trades":[
            {"trade_id":"1","product_id":"BTC-USD","price":"1","size":"1","side":"BUY","time":"2023-01-01T00:00:00Z"},
            {"trade_id":"2","product_id":"BTC-USD","price":"2","size":"1","side":"SELL","time":"2023-01-01T00:00:00Z"}]}]}"#;
        assert_eq!(decode(&CoinbaseAdvanced, two).0, Ok(Decoded::Trades(2)));
    }

    #[test]
    fn acks_are_counted_and_other_frames_skipped_explicitly() {
        let syms = vec!["BTC-USD".to_string(), "ETH-USD".to_string()];
        let ex = CoinbaseExchange;
        assert_eq!(
            ex.subscribe(&syms),
            vec![
                r#"{"channels":["matches","heartbeat"],"product_ids":["BTC-USD","ETH-USD"],"type":"subscribe"}"#
            ]
        );
        let ack = r#"{"type":"subscriptions","channels":[{"name":"matches","product_ids":["BTC-USD","ETH-USD"]},{"name":"heartbeat","product_ids":["BTC-USD","ETH-USD"]}]}"#;
        assert_eq!(decode(&ex, ack).0, Ok(Decoded::Ack));
        assert_eq!(ex.expected_acks(&syms), ex.subscribe(&syms).len());
        for (frame, why) in [
            (
                r#"{"type":"heartbeat","sequence":90,"last_trade_id":20,"product_id":"BTC-USD","time":"2014-11-07T08:19:28.464459Z"}"#,
                "heartbeat",
            ),
            (
                r#"{"type":"ticker","sequence":1,"product_id":"BTC-USD","price":"1","side":"buy","time":"2021-04-17T10:11:12Z","trade_id":3,"last_size":"1"}"#,
                "ticker (trades come from `matches`)",
            ),
            (
                r#"{"type":"l2update","product_id":"BTC-USD","changes":[["buy","1","2"]]}"#,
                "level2 book",
            ),
            (
                r#"{"type":"done","order_id":"x","reason":"filled"}"#,
                "full-channel order event",
            ),
        ] {
            assert_eq!(decode(&ex, frame).0, Ok(Decoded::Skipped(why)), "{frame}");
        }
        let adv = CoinbaseAdvanced;
        let reqs = adv.subscribe(&syms);
        assert_eq!(
            reqs[0],
            r#"{"channel":"market_trades","product_ids":["BTC-USD","ETH-USD"],"type":"subscribe"}"#
        );
        assert_eq!(adv.expected_acks(&syms), reqs.len());
        let ack = r#"{"channel":"subscriptions","client_id":"","timestamp":"2023-02-09T20:32:51Z","sequence_num":1,"events":[{"subscriptions":{"market_trades":["BTC-USD"]}}]}"#;
        assert_eq!(decode(&adv, ack).0, Ok(Decoded::Ack));
        let hb = r#"{"channel":"heartbeats","client_id":"","timestamp":"2023-06-23T20:31:26.122969572Z","sequence_num":0,"events":[{"current_time":"2023-06-23 20:31:56.121961769 +0000 UTC m=+91717.525857105","heartbeat_counter":"3049"}]}"#;
        assert_eq!(decode(&adv, hb).0, Ok(Decoded::Skipped("heartbeats")));
        assert_eq!(
            decode(&adv, r#"{"channel":"l2_data","events":[1]}"#).0,
            Ok(Decoded::Skipped("other channel"))
        );
    }

    #[test]
    fn errors_and_garbage_are_errors_not_panics() {
        assert_eq!(
            decode(
                &CoinbaseExchange,
                r#"{"type":"error","message":"Failed to subscribe","reason":"BTC-XYZ is not a valid product"}"#
            )
            .0,
            Err(FrameError::Exchange(
                "Failed to subscribe: BTC-XYZ is not a valid product".into()
            ))
        );
        assert!(matches!(
            decode(&CoinbaseAdvanced, r#"{"type":"error","message":"failure to subscribe"}"#).0,
            Err(FrameError::Exchange(m)) if m == "failure to subscribe"
        ));
        let bad = [
            "not json",
            "[1,2]",
            r#"{"foo":1}"#,
            r#"{"type":"match","trade_id":1,"product_id":"BTC-USD","price":"1","size":"1","side":"up","time":"2021-01-01T00:00:00Z"}"#,
            r#"{"type":"match","trade_id":-1,"product_id":"BTC-USD","price":"1","size":"1","side":"buy","time":"2021-01-01T00:00:00Z"}"#,
            r#"{"type":"match","trade_id":1,"product_id":"BTC-USD","price":"-1","size":"1","side":"buy","time":"2021-01-01T00:00:00Z"}"#,
            r#"{"type":"match","trade_id":1,"product_id":"BTC-USD","price":1.5,"size":"1","side":"buy","time":"2021-01-01T00:00:00Z"}"#,
            r#"{"type":"match","trade_id":1,"product_id":"BTCUSD","price":"1","size":"1","side":"buy","time":"2021-01-01T00:00:00Z"}"#,
            r#"{"type":"match","trade_id":1,"product_id":"BTC-USD","price":"1","size":"1","side":"buy","time":"yesterday"}"#,
            r#"{"type":"match","product_id":"BTC-USD"}"#,
        ];
        for frame in bad {
            for c in [&CoinbaseExchange as &dyn Connector, &CoinbaseAdvanced] {
                let (r, ticks) = decode(c, frame);
                assert!(r.is_err(), "{frame} accepted: {r:?}");
                assert!(ticks.is_empty());
            }
        }
        // One bad trade in a batch rejects the batch, leaving nothing behind.
        let mixed = r#"{"channel":"market_trades","events":[{"type":"update","trades":[
            {"trade_id":"1","product_id":"BTC-USD","price":"1","size":"1","side":"BUY","time":"2023-01-01T00:00:00Z"},
            {"trade_id":"2","product_id":"BTC-USD","price":"0","size":"1","side":"SELL","time":"2023-01-01T00:00:00Z"}]}]}"#;
        let (r, ticks) = decode(&CoinbaseAdvanced, mixed);
        assert!(r.is_err() && ticks.is_empty());
        assert!(
            decode(
                &CoinbaseAdvanced,
                r#"{"channel":"market_trades","events":{}}"#
            )
            .0
            .is_err()
        );
    }

    #[test]
    fn backfill_pages_down_from_the_top_of_the_range() {
        let q = BackfillQuery {
            symbol: "BTC-USD",
            from_id: 100,
            to_id: Some(102),
            after_ms: 0,
            cursor: None,
        };
        for c in [&CoinbaseExchange as &dyn Connector, &CoinbaseAdvanced] {
            assert_eq!(
                c.backfill_path(&q).as_deref(),
                Some("/products/BTC-USD/trades?limit=3&after=103")
            );
        }
        let body = r#"[{"time":"2014-11-07T22:19:28.578544Z","trade_id":102,"price":"10.00000000","size":"0.01000000","side":"buy"},
                       {"time":"2014-11-07T01:08:43.642366Z","trade_id":101,"price":"100.00000000","size":"0.01000000","side":"sell"},
                       {"time":"2014-11-07T01:08:43.642366Z","trade_id":100,"price":"1","size":"2","side":"sell"}]"#;
        let mut out = Vec::new();
        assert_eq!(
            CoinbaseExchange.backfill_decode(&q, body, 5, &mut out),
            Ok(None)
        );
        assert_eq!(out.len(), 3);
        assert_eq!(
            (
                out[0].trade_id.as_str(),
                out[0].side,
                out[0].price.to_string()
            ),
            ("102", Side::Sell, "10.00000000".into())
        );
        assert_eq!(
            (out[1].side, out[1].symbol.as_str()),
            (Side::Buy, "BTC-USD")
        );
        assert_eq!(out[0].ts_ms, 1_415_398_768_578);
        // Open range: the latest page first, then below its oldest id.
        let open = BackfillQuery { to_id: None, ..q };
        assert_eq!(
            CoinbaseAdvanced.backfill_path(&open).as_deref(),
            Some("/products/BTC-USD/trades?limit=1000")
        );
        let page = r#"[{"time":"2021-01-01T00:00:00Z","trade_id":500,"price":"1","size":"1","side":"buy"},
                       {"time":"2021-01-01T00:00:00Z","trade_id":499,"price":"1","size":"1","side":"buy"}]"#;
        assert_eq!(
            CoinbaseAdvanced.backfill_decode(&open, page, 0, &mut Vec::new()),
            Ok(Some("499".into()))
        );
        let next = BackfillQuery {
            cursor: Some("499"),
            ..open
        };
        assert_eq!(
            CoinbaseAdvanced.backfill_path(&next).as_deref(),
            Some("/products/BTC-USD/trades?limit=399&after=499")
        );
        assert_eq!(
            CoinbaseAdvanced.backfill_decode(&open, "[]", 0, &mut Vec::new()),
            Ok(None)
        );
        assert_eq!(
            CoinbaseExchange.backfill_decode(&q, r#"{"message":"NotFound"}"#, 0, &mut Vec::new()),
            Err(FrameError::Exchange("NotFound".into()))
        );
        assert!(matches!(
            CoinbaseExchange.backfill_decode(&q, "<html>", 0, &mut Vec::new()),
            Err(FrameError::Json(_))
        ));
    }
}
