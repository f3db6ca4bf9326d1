//! Binance spot public trades: `<symbol>@trade` (or `<symbol>@aggTrade` with the `binance-agg`
//! connector), raw (`/ws`) or combined (`/stream`) streams.
//!
//! - Subscribe: `{"method":"SUBSCRIBE","params":["btcusdt@trade",…],"id":N}`, acknowledged by
//!   `{"result":null,"id":N}`; at most 200 streams per request, 1024 per connection.
//! - Keepalive: the server pings every 20 s and drops connections that do not pong.
//! - Connections are cut after 24 h.
//! - Trade ids (`t`; aggregate ids `a`) are consecutive per symbol. Backfill:
//!   `GET /api/v3/historicalTrades?symbol=BTCUSDT&fromId=N&limit=1000` (ascending), or
//!   `/api/v3/aggTrades` for aggregate trades.
//! - `m` is "buyer is the maker": then the taker sold.

use std::sync::Mutex;
use std::time::Duration;

use serde::Deserialize;
use serde::de::{self, IgnoredAny, MapAccess, Visitor};
use serde_json::value::RawValue;

use crate::connectors::{
    BackfillQuery, Connector, ConnectorInfo, Decoded, FrameError, Keepalive, json_err, missing,
    positive_decimal,
};
use tickcast_core::codec::split_concatenated;
use tickcast_core::domain::{SCHEMA_VERSION, Side, Tick};

/// Streams per SUBSCRIBE request.
const STREAMS_PER_REQUEST: usize = 200;
/// Trades per backfill page (the endpoint's maximum).
pub const PAGE: u64 = 1000;

static TRADES: ConnectorInfo = ConnectorInfo {
    name: "binance",
    exchange: "binance",
    ws_url: "wss://stream.binance.com:9443/ws",
    rest_url: "https://api.binance.com",
    max_symbols_per_connection: 1024,
    keepalive: Keepalive::ServerPings,
    max_connection_age: Some(Duration::from_secs(24 * 3600)),
    sequential_ids: true,
};

static AGG_TRADES: ConnectorInfo = ConnectorInfo {
    name: "binance-agg",
    ..TRADES
};

/// Binance spot, `@trade` or `@aggTrade`.
#[derive(Debug)]
pub struct Binance {
    agg: bool,
    /// The last native symbol seen and its canonical form: a stream repeats one symbol, and
    /// splitting it costs more than comparing it.
    last_symbol: Mutex<Option<(Box<str>, String)>>,
}

impl Binance {
    pub fn trades() -> Self {
        Self::new(false)
    }
    pub fn agg_trades() -> Self {
        Self::new(true)
    }
    fn new(agg: bool) -> Self {
        Self {
            agg,
            last_symbol: Mutex::new(None),
        }
    }
    /// `BTCUSDT` → `BTC-USDT`, from the cache when it is the last symbol seen.
    fn canonical(&self, raw: &str) -> Result<String, FrameError> {
        // A poisoned lock only loses the cache.
        let mut cache = self.last_symbol.lock().ok();
        if let Some(Some((last, canonical))) = cache.as_deref()
            && **last == *raw
        {
            return Ok(canonical.clone());
        }
        let symbol = split_concatenated(raw).ok_or(FrameError::Symbol(raw.to_string()))?;
        if let Some(cache) = cache.as_deref_mut() {
            *cache = Some((raw.into(), symbol.clone()));
        }
        Ok(symbol)
    }
    fn stream_suffix(&self) -> &'static str {
        if self.agg { "@aggTrade" } else { "@trade" }
    }
}

/// Every field any frame might carry, borrowed, parsed in one pass.
///
/// ```json
/// {"e":"trade","E":1723075200123,"s":"BTCUSDT","t":3712047611,"p":"61234.10000000",
///  "q":"0.00120000","T":1723075200122,"m":true,"M":true}
/// {"e":"aggTrade","E":1,"s":"BTCUSDT","a":26129,"p":"0.01633102","q":"4.70443515",
///  "f":27781,"l":27781,"T":1498793709153,"m":true,"M":true}
/// ```
#[derive(Debug, Default, Deserialize)]
struct Frame<'a> {
    #[serde(borrow)]
    e: Option<&'a str>,
    #[serde(borrow)]
    s: Option<&'a str>,
    t: Option<u64>,
    /// Aggregate trade id, but the ask price or levels in book frames: parsed only for trades.
    #[serde(borrow)]
    a: Option<&'a RawValue>,
    #[serde(borrow)]
    p: Option<&'a str>,
    #[serde(borrow)]
    q: Option<&'a str>,
    #[serde(rename = "T")]
    trade_time: Option<i64>,
    m: Option<bool>,
    // bookTicker frames carry no event type.
    u: Option<u64>,
    #[serde(rename = "B", borrow)]
    big_b: Option<&'a str>,
    // Combined-stream envelope.
    #[serde(borrow)]
    stream: Option<&'a str>,
    /// Only for a frame nested in `data`: [`Envelope`] reads the outer one.
    #[serde(borrow, rename = "data")]
    _data: Option<&'a RawValue>,
    // Acks and errors.
    id: Option<serde_json::Value>,
    code: Option<serde_json::Value>,
    msg: Option<String>,
    error: Option<serde_json::Value>,
}

/// A frame's `data` as met by the one-pass parse of [`Envelope`].
#[derive(Debug)]
#[allow(clippy::large_enum_variant)] // lives on the stack for one frame; boxing would allocate
enum Data<'a> {
    /// The event of a trade stream named before `data`, parsed in the same pass.
    Event(Frame<'a>),
    /// Anything else, parsed later if at all: another stream, or `data` before `stream`.
    Raw(&'a RawValue),
}

/// A whole frame, parsed in one pass: the fields of [`Frame`] and, for a combined-stream
/// envelope (`{"stream":"btcusdt@trade","data":{…}}`), its `data`, which is parsed as an
/// event on the spot when `stream` came first and names a trade stream.
#[derive(Debug)]
struct Envelope<'a> {
    /// The outer frame's own fields (its `data` is left `None`; see `data`).
    f: Frame<'a>,
    data: Option<Data<'a>>,
}

/// Names of [`Frame`]'s fields, for [`Envelope`]'s visitor.
#[derive(Clone, Copy, Deserialize)]
#[serde(field_identifier)]
enum Key {
    #[serde(rename = "e")]
    E,
    #[serde(rename = "s")]
    S,
    #[serde(rename = "t")]
    T,
    #[serde(rename = "a")]
    A,
    #[serde(rename = "p")]
    P,
    #[serde(rename = "q")]
    Q,
    #[serde(rename = "T")]
    TradeTime,
    #[serde(rename = "m")]
    M,
    #[serde(rename = "u")]
    U,
    #[serde(rename = "B")]
    BigB,
    #[serde(rename = "stream")]
    Stream,
    #[serde(rename = "data")]
    Data,
    #[serde(rename = "id")]
    Id,
    #[serde(rename = "code")]
    Code,
    #[serde(rename = "msg")]
    Msg,
    #[serde(rename = "error")]
    Error,
    #[serde(other)]
    Other,
}

fn is_trade_stream(stream: &str) -> bool {
    stream.ends_with("@trade") || stream.ends_with("@aggTrade")
}

impl<'de: 'a, 'a> Deserialize<'de> for Envelope<'a> {
    fn deserialize<D: de::Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        de.deserialize_map(EnvelopeVisitor(std::marker::PhantomData))
    }
}

struct EnvelopeVisitor<'a>(std::marker::PhantomData<&'a ()>);

/// Sets a field once, as `#[derive(Deserialize)]` does (a repeated key is an error).
fn once<'de, A: MapAccess<'de>, T: Deserialize<'de>>(
    map: &mut A,
    slot: &mut Option<T>,
    seen: &mut bool,
    name: &'static str,
) -> Result<(), A::Error> {
    if std::mem::replace(seen, true) {
        return Err(de::Error::duplicate_field(name));
    }
    *slot = map.next_value()?;
    Ok(())
}

impl<'de: 'a, 'a> Visitor<'de> for EnvelopeVisitor<'a> {
    type Value = Envelope<'a>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("struct Frame")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut f = Frame::default();
        let mut data = None;
        let mut seen = [false; 17];
        while let Some(key) = map.next_key::<Key>()? {
            let seen = &mut seen[key as usize];
            match key {
                Key::E => once(&mut map, &mut f.e, seen, "e")?,
                Key::S => once(&mut map, &mut f.s, seen, "s")?,
                Key::T => once(&mut map, &mut f.t, seen, "t")?,
                Key::A => once(&mut map, &mut f.a, seen, "a")?,
                Key::P => once(&mut map, &mut f.p, seen, "p")?,
                Key::Q => once(&mut map, &mut f.q, seen, "q")?,
                Key::TradeTime => once(&mut map, &mut f.trade_time, seen, "T")?,
                Key::M => once(&mut map, &mut f.m, seen, "m")?,
                Key::U => once(&mut map, &mut f.u, seen, "u")?,
                Key::BigB => once(&mut map, &mut f.big_b, seen, "B")?,
                Key::Stream => once(&mut map, &mut f.stream, seen, "stream")?,
                Key::Id => once(&mut map, &mut f.id, seen, "id")?,
                Key::Code => once(&mut map, &mut f.code, seen, "code")?,
                Key::Msg => once(&mut map, &mut f.msg, seen, "msg")?,
                Key::Error => once(&mut map, &mut f.error, seen, "error")?,
                Key::Data => {
                    if std::mem::replace(seen, true) {
                        return Err(de::Error::duplicate_field("data"));
                    }
                    data = if f.stream.is_some_and(is_trade_stream) {
                        map.next_value::<Option<Frame<'a>>>()?.map(Data::Event)
                    } else {
                        map.next_value::<Option<&'a RawValue>>()?.map(Data::Raw)
                    };
                }
                Key::Other => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(Envelope { f, data })
    }
}

/// One row of `/api/v3/historicalTrades` or `/api/v3/aggTrades`.
#[derive(Debug, Deserialize)]
struct RestTrade<'a> {
    id: Option<u64>,
    a: Option<u64>,
    #[serde(borrow, alias = "p")]
    price: Option<&'a str>,
    #[serde(borrow, alias = "q")]
    qty: Option<&'a str>,
    #[serde(alias = "T")]
    time: Option<i64>,
    #[serde(alias = "m")]
    is_buyer_maker: Option<bool>,
    #[serde(rename = "isBuyerMaker")]
    is_buyer_maker_long: Option<bool>,
}

/// Binance's lower-case stream name for a canonical symbol: `BTC-USDT` → `btcusdt`.
pub fn stream_symbol(canonical: &str) -> String {
    canonical.replace('-', "").to_ascii_lowercase()
}

#[allow(clippy::too_many_arguments)]
fn tick(
    symbol: String,
    id: u64,
    price: &str,
    qty: &str,
    ts_ms: i64,
    buyer_is_maker: bool,
    received_ms: i64,
) -> Result<Tick, FrameError> {
    Ok(Tick {
        v: SCHEMA_VERSION,
        exchange: "binance".to_string(),
        symbol,
        trade_id: id.to_string(),
        price: positive_decimal("p", price)?,
        size: positive_decimal("q", qty)?,
        side: if buyer_is_maker {
            Side::Sell
        } else {
            Side::Buy
        },
        ts_ms,
        ingested_ms: received_ms,
    })
}

impl Binance {
    fn decode_event(
        &self,
        f: &Frame<'_>,
        received_ms: i64,
        out: &mut Vec<Tick>,
    ) -> Result<Decoded, FrameError> {
        let want = if self.agg { "aggTrade" } else { "trade" };
        match f.e {
            Some(e) if e == want => {}
            Some("trade") => {
                return Ok(Decoded::Skipped(
                    "trade event (this connector reads aggTrade)",
                ));
            }
            Some("aggTrade") => {
                return Ok(Decoded::Skipped(
                    "aggTrade event (this connector reads trade)",
                ));
            }
            Some(_) => return Ok(Decoded::Skipped("not a trade event")),
            None => return Err(missing("e")),
        }
        let id = if self.agg {
            let raw = f.a.ok_or(missing("a"))?.get();
            raw.parse::<u64>().map_err(|_| FrameError::Field {
                field: "a",
                reason: format!("`{raw}` is not a trade id"),
            })?
        } else {
            f.t.ok_or(missing("t"))?
        };
        let (s, p, q) = (
            f.s.ok_or(missing("s"))?,
            f.p.ok_or(missing("p"))?,
            f.q.ok_or(missing("q"))?,
        );
        let (ts, maker) = (f.trade_time.ok_or(missing("T"))?, f.m.ok_or(missing("m"))?);
        out.push(tick(self.canonical(s)?, id, p, q, ts, maker, received_ms)?);
        Ok(Decoded::Trades(1))
    }
}

impl Connector for Binance {
    fn info(&self) -> &'static ConnectorInfo {
        if self.agg { &AGG_TRADES } else { &TRADES }
    }

    fn native_symbol(&self, canonical: &str) -> String {
        canonical.replace('-', "")
    }

    fn subscribe(&self, symbols: &[String]) -> Vec<String> {
        symbols
            .chunks(STREAMS_PER_REQUEST)
            .enumerate()
            .map(|(i, chunk)| {
                let params: Vec<String> = chunk
                    .iter()
                    .map(|s| format!("{}{}", stream_symbol(s), self.stream_suffix()))
                    .collect();
                serde_json::json!({"method": "SUBSCRIBE", "params": params, "id": i + 1})
                    .to_string()
            })
            .collect()
    }

    fn expected_acks(&self, symbols: &[String]) -> usize {
        symbols.len().div_ceil(STREAMS_PER_REQUEST)
    }

    fn decode(
        &self,
        frame: &str,
        received_ms: i64,
        out: &mut Vec<Tick>,
    ) -> Result<Decoded, FrameError> {
        let Envelope { f, data } = serde_json::from_str(frame).map_err(json_err)?;
        match data {
            // `stream` came first and names a trade stream: the event is parsed already.
            Some(Data::Event(inner)) => return self.decode_event(&inner, received_ms, out),
            Some(Data::Raw(data)) => {
                let Some(stream) = f.stream else {
                    return Err(FrameError::Unrecognised("`data` without `stream`".into()));
                };
                if !is_trade_stream(stream) {
                    return Ok(Decoded::Skipped("not a trade stream"));
                }
                let inner: Frame<'_> = serde_json::from_str(data.get()).map_err(json_err)?;
                return self.decode_event(&inner, received_ms, out);
            }
            None => {}
        }
        if let Some(code) = &f.code {
            return Err(FrameError::Exchange(format!(
                "{code}: {}",
                f.msg.as_deref().unwrap_or_default()
            )));
        }
        if let Some(err) = &f.error {
            return Err(FrameError::Exchange(err.to_string()));
        }
        if f.e.is_none() && f.id.is_some() {
            return Ok(Decoded::Ack);
        }
        if f.e.is_none() && f.u.is_some() && f.big_b.is_some() {
            return Ok(Decoded::Skipped("bookTicker"));
        }
        if f.e.is_none() {
            return Err(FrameError::Unrecognised(
                "neither an event (`e`), a stream envelope nor an ack".into(),
            ));
        }
        self.decode_event(&f, received_ms, out)
    }

    fn backfill_path(&self, q: &BackfillQuery<'_>) -> Option<String> {
        let from = q
            .cursor
            .and_then(|c| c.parse::<u64>().ok())
            .unwrap_or(q.from_id);
        let limit = q
            .to_id
            .map_or(PAGE, |to| (to + 1).saturating_sub(from).clamp(1, PAGE));
        let endpoint = if self.agg {
            "aggTrades"
        } else {
            "historicalTrades"
        };
        Some(format!(
            "/api/v3/{endpoint}?symbol={}&fromId={from}&limit={limit}",
            self.native_symbol(q.symbol)
        ))
    }

    fn backfill_decode(
        &self,
        q: &BackfillQuery<'_>,
        body: &str,
        received_ms: i64,
        out: &mut Vec<Tick>,
    ) -> Result<Option<String>, FrameError> {
        let rows: Vec<RestTrade<'_>> = match serde_json::from_str(body) {
            Ok(rows) => rows,
            Err(_) => {
                let f: Frame<'_> = serde_json::from_str(body).map_err(json_err)?;
                return Err(FrameError::Exchange(format!(
                    "{}: {}",
                    f.code.map(|c| c.to_string()).unwrap_or_default(),
                    f.msg.unwrap_or_default()
                )));
            }
        };
        let native = self.native_symbol(q.symbol);
        let mut last = None;
        let n = rows.len() as u64;
        for r in rows {
            let id = if self.agg { r.a } else { r.id }.ok_or(missing("id"))?;
            let maker = r
                .is_buyer_maker
                .or(r.is_buyer_maker_long)
                .ok_or(missing("isBuyerMaker"))?;
            let (price, qty) = (
                r.price.ok_or(missing("price"))?,
                r.qty.ok_or(missing("qty"))?,
            );
            let time = r.time.ok_or(missing("time"))?;
            out.push(tick(
                self.canonical(&native)?,
                id,
                price,
                qty,
                time,
                maker,
                received_ms,
            )?);
            last = last.max(Some(id));
        }
        Ok(match (last, q.to_id) {
            (None, _) => None,
            (Some(l), Some(to)) if l >= to => None,
            // A short page means we reached the latest trade.
            _ if n < PAGE && q.to_id.is_none() => None,
            (Some(l), _) => Some((l + 1).to_string()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(c: &Binance, frame: &str) -> (Result<Decoded, FrameError>, Vec<Tick>) {
        let mut out = Vec::new();
        let r = c.decode(frame, 99, &mut out);
        (r, out)
    }

    #[test]
    fn trade_frames_decode_exactly_with_taker_side() {
        // (connector, frame, symbol, id, price, size, side, ts)
        let cases = [
            (
                Binance::trades(),
                r#"{"e":"trade","E":1723075200123,"s":"BTCUSDT","t":3712047611,"p":"61234.10000000","q":"0.00120000","T":1723075200122,"m":true,"M":true}"#,
                "BTC-USDT",
                "3712047611",
                "61234.10000000",
                "0.00120000",
                Side::Sell,
                1723075200122,
            ),
            (
                Binance::trades(),
                r#"{"stream":"ethbtc@trade","data":{"e":"trade","E":1,"s":"ETHBTC","t":7,"p":"0.05123000","q":"12.5","T":2,"m":false,"M":true}}"#,
                "ETH-BTC",
                "7",
                "0.05123000",
                "12.5",
                Side::Buy,
                2,
            ),
            (
                Binance::trades(),
                r#"{"e":"trade","E":5,"s":"PEPEFDUSD","t":1,"p":"0.0000123456789","q":"123456789012.5","T":5,"m":false,"M":true}"#,
                "PEPE-FDUSD",
                "1",
                "0.0000123456789",
                "123456789012.5",
                Side::Buy,
                5,
            ),
            (
                Binance::agg_trades(),
                r#"{"stream":"bnbbtc@aggTrade","data":{"e":"aggTrade","E":123456789,"s":"BNBBTC","a":12345,"p":"0.001","q":"100","f":100,"l":105,"T":123456785,"m":true,"M":true}}"#,
                "BNB-BTC",
                "12345",
                "0.001",
                "100",
                Side::Sell,
                123456785,
            ),
        ];
        for (c, frame, sym, id, price, size, side, ts) in cases {
            let (r, ticks) = decode(&c, frame);
            assert_eq!(r, Ok(Decoded::Trades(1)), "{frame}");
            let t = &ticks[0];
            assert_eq!((t.symbol.as_str(), t.trade_id.as_str()), (sym, id));
            assert_eq!(t.price.to_string(), price, "price digits kept");
            assert_eq!(t.size.to_string(), size, "size digits kept");
            assert_eq!((t.side, t.ts_ms, t.ingested_ms), (side, ts, 99));
            assert_eq!(t.exchange, "binance");
        }
    }

    #[test]
    fn acks_and_other_events_are_skipped_explicitly() {
        let t = &Binance::trades();
        assert_eq!(decode(t, r#"{"result":null,"id":1}"#).0, Ok(Decoded::Ack));
        assert_eq!(
            decode(t, r#"{"e":"aggTrade","E":1,"s":"BTCUSDT","a":1,"p":"1","q":"1","f":1,"l":1,"T":1,"m":true}"#).0,
            Ok(Decoded::Skipped("aggTrade event (this connector reads trade)"))
        );
        assert_eq!(
            decode(t, r#"{"stream":"btcusdt@bookTicker","data":{"u":1,"s":"BTCUSDT","b":"1","B":"1","a":"2","A":"1"}}"#).0,
            Ok(Decoded::Skipped("not a trade stream"))
        );
        assert_eq!(
            decode(
                t,
                r#"{"u":1,"s":"BTCUSDT","b":"1","B":"1","a":"2","A":"1"}"#
            )
            .0,
            Ok(Decoded::Skipped("bookTicker"))
        );
        assert_eq!(
            decode(
                t,
                r#"{"stream":"btcusdt@trade","data":{"s":"BTCUSDT","t":1}}"#
            )
            .0,
            Err(missing("e")),
            "a trade stream event without a type is an error, not a silent skip"
        );
        assert_eq!(
            decode(t, r#"{"stream":"btcusdt@depth","data":{"e":"depthUpdate","E":1,"s":"BTCUSDT","U":1,"u":2,"b":[],"a":[]}}"#).0,
            Ok(Decoded::Skipped("not a trade stream"))
        );
        assert_eq!(
            decode(t, r#"{"e":"depthUpdate","E":1,"s":"BTCUSDT","U":1,"u":2,"b":[["1","2"]],"a":[["3","4"]]}"#).0,
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
            r#"{"e":"trade","E":1,"s":"BTCUSDT","t":1,"p":1.5,"q":"1","T":1,"m":true}"#,
            r#"{"e":"trade","E":1,"s":"XYZ","t":1,"p":"1","q":"1","T":1,"m":true}"#,
            r#"{"code":2,"msg":"Invalid request"}"#,
            r#"{"foo":1}"#,
            r#"[1,2]"#,
        ];
        for frame in bad {
            let (r, ticks) = decode(&Binance::trades(), frame);
            assert!(r.is_err(), "{frame} accepted: {r:?}");
            assert!(ticks.is_empty());
        }
    }

    #[test]
    fn subscribe_request_names_streams_in_chunks() {
        let b = Binance::trades();
        let msgs = b.subscribe(&["BTC-USDT".into(), "ETH-USDT".into()]);
        assert_eq!(
            msgs,
            vec![r#"{"id":1,"method":"SUBSCRIBE","params":["btcusdt@trade","ethusdt@trade"]}"#]
        );
        let many: Vec<String> = (0..450).map(|i| format!("C{i}-USDT")).collect();
        assert_eq!(b.subscribe(&many).len(), 3);
        assert_eq!(b.expected_acks(&many), 3);
        assert!(Binance::agg_trades().subscribe(&many[..1])[0].contains("c0usdt@aggTrade"));
    }

    #[test]
    fn backfill_pages_ascend_from_the_gap() {
        let b = Binance::trades();
        let q = BackfillQuery {
            symbol: "BTC-USDT",
            from_id: 100,
            to_id: Some(102),
            after_ms: 0,
            cursor: None,
        };
        assert_eq!(
            b.backfill_path(&q).as_deref(),
            Some("/api/v3/historicalTrades?symbol=BTCUSDT&fromId=100&limit=3")
        );
        let body = r#"[{"id":100,"price":"4.00000100","qty":"12.00000000","quoteQty":"48.000012","time":1499865549590,"isBuyerMaker":true,"isBestMatch":true},
                       {"id":101,"price":"4.1","qty":"1","quoteQty":"4.1","time":1499865549591,"isBuyerMaker":false,"isBestMatch":true},
                       {"id":102,"price":"4.2","qty":"2","quoteQty":"8.4","time":1499865549592,"isBuyerMaker":false,"isBestMatch":true}]"#;
        let mut out = Vec::new();
        assert_eq!(b.backfill_decode(&q, body, 5, &mut out), Ok(None));
        assert_eq!(out.len(), 3);
        assert_eq!(
            (out[0].side, out[0].price.to_string()),
            (Side::Sell, "4.00000100".into())
        );
        assert_eq!((out[1].side, out[2].trade_id.as_str()), (Side::Buy, "102"));
        // Open-ended: a full page asks for the next.
        let open = BackfillQuery { to_id: None, ..q };
        let rows: Vec<String> = (0..PAGE)
            .map(|i| {
                format!(
                    r#"{{"id":{},"price":"1","qty":"1","time":1,"isBuyerMaker":true}}"#,
                    100 + i
                )
            })
            .collect();
        let mut out = Vec::new();
        assert_eq!(
            b.backfill_decode(&open, &format!("[{}]", rows.join(",")), 5, &mut out),
            Ok(Some("1100".into()))
        );
        let next = BackfillQuery {
            cursor: Some("1100"),
            ..open
        };
        assert!(
            b.backfill_path(&next)
                .is_some_and(|p| p.contains("fromId=1100&limit=1000"))
        );
        assert!(matches!(
            b.backfill_decode(&q, r#"{"code":-1121,"msg":"Invalid symbol."}"#, 0, &mut Vec::new()),
            Err(FrameError::Exchange(m)) if m.contains("Invalid symbol")
        ));
    }
}
