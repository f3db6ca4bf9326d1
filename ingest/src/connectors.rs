//! What every exchange connector shares: the small [`Connector`] trait (subscribe request,
//! frame → [`Tick`]s, keepalive rule, symbol mapping to canonical `BASE-QUOTE`, and the public
//! REST trades endpoint used to fill gaps), its frame errors and outcomes, and the parsing
//! helpers the connectors use (symbols, exact decimals, RFC 3339 times).
//!
//! The connectors themselves live one folder per exchange in [`crate::exchanges`], whose table
//! names them all and looks them up by name.

use std::time::Duration;

use rust_decimal::Decimal;

use tickcast_core::domain::Tick;

/// Why a frame could not be decoded.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FrameError {
    #[error("frame is not valid JSON: {0}")]
    Json(String),
    #[error("trade frame field `{field}`: {reason}")]
    Field { field: &'static str, reason: String },
    #[error("unknown symbol `{0}`")]
    Symbol(String),
    #[error("exchange reported an error: {0}")]
    Exchange(String),
    #[error("unrecognised frame: {0}")]
    Unrecognised(String),
}

/// What a frame was.
#[derive(Debug, PartialEq, Eq)]
pub enum Decoded {
    /// A trade frame that produced this many ticks.
    Trades(usize),
    /// A subscription acknowledgement (counted against [`Connector::expected_acks`]).
    Ack,
    /// The exchange asks us to reconnect (Bitstamp `bts:request_reconnect`).
    Reconnect,
    /// A frame that is not a trade (heartbeat, pong, status, other channel), skipped on purpose.
    Skipped(&'static str),
}

/// How a connection is kept alive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keepalive {
    /// The server sends websocket pings; we answer with pongs (Binance).
    ServerPings,
    /// Send this text frame every `every` (OKX `ping`, Bybit `{"op":"ping"}`, …).
    ClientText { text: &'static str, every: Duration },
    /// Send a websocket ping frame every `every`.
    ClientPing { every: Duration },
}

/// Static facts about one exchange protocol.
#[derive(Debug, Clone, Copy)]
pub struct ConnectorInfo {
    /// Connector name used on the command line (`coinbase-exchange`).
    pub name: &'static str,
    /// Lower-case exchange id written into ticks and topic keys (`coinbase`).
    pub exchange: &'static str,
    /// Default live websocket URL.
    pub ws_url: &'static str,
    /// Default live REST base URL (for gap backfill), no trailing slash.
    pub rest_url: &'static str,
    /// Symbols per connection at most; more symbols open more connections.
    pub max_symbols_per_connection: usize,
    pub keepalive: Keepalive,
    /// The exchange cuts connections after this long (Binance: 24 h); the session reconnects
    /// before that, make-before-break.
    pub max_connection_age: Option<Duration>,
    /// Trade ids are consecutive integers per symbol: gaps can be detected and backfilled.
    pub sequential_ids: bool,
}

/// One backfill request: the trades of `symbol` with ids in `from_id..=to_id` (`to_id` `None`
/// = up to the latest). `after_ms` is the exchange time of trade `from_id - 1` (for exchanges
/// that page by time). `cursor` is `None` on the first page, then whatever the previous
/// [`Connector::backfill_decode`] returned.
#[derive(Debug, Clone, Copy)]
pub struct BackfillQuery<'a> {
    /// Canonical symbol.
    pub symbol: &'a str,
    pub from_id: u64,
    pub to_id: Option<u64>,
    pub after_ms: i64,
    pub cursor: Option<&'a str>,
}

/// One exchange's public trade protocol.
pub trait Connector: Send + Sync + std::fmt::Debug {
    fn info(&self) -> &'static ConnectorInfo;

    /// Lower-case exchange id, used in topic keys.
    fn id(&self) -> &'static str {
        self.info().exchange
    }

    /// The exchange's spelling of a canonical symbol (`BTC-USDT` → `BTCUSDT`).
    fn native_symbol(&self, canonical: &str) -> String;

    /// Text frames to send after connecting to subscribe to `symbols` (canonical; at most
    /// `max_symbols_per_connection`).
    fn subscribe(&self, symbols: &[String]) -> Vec<String>;

    /// How many [`Decoded::Ack`] frames confirm the subscription to `symbols`.
    fn expected_acks(&self, symbols: &[String]) -> usize;

    /// Decodes one text frame, appending ticks to `out`. Never panics on any input.
    fn decode(
        &self,
        frame: &str,
        received_ms: i64,
        out: &mut Vec<Tick>,
    ) -> Result<Decoded, FrameError>;

    /// Path and query (after the REST base URL) of one page of a backfill; `None` when the
    /// exchange has no usable public trades endpoint.
    fn backfill_path(&self, _q: &BackfillQuery<'_>) -> Option<String> {
        None
    }

    /// Decodes one page of a backfill response, appending its ticks (any order; the caller
    /// filters to the requested range and de-duplicates). Returns the cursor of the next page,
    /// or `None` when the range is covered or the exchange has nothing more.
    fn backfill_decode(
        &self,
        _q: &BackfillQuery<'_>,
        _body: &str,
        _received_ms: i64,
        _out: &mut Vec<Tick>,
    ) -> Result<Option<String>, FrameError> {
        Err(FrameError::Unrecognised(
            "this exchange has no backfill".into(),
        ))
    }
}

/// A canonical symbol (`BTC-USDT`): checks the form, for CLI and config errors.
pub fn parse_canonical(symbol: &str) -> Result<String, String> {
    let upper = symbol.trim().to_ascii_uppercase();
    tickcast_core::codec::check_symbol(&upper)
        .map(|()| upper)
        .map_err(|_| format!("`{symbol}` is not a canonical BASE-QUOTE symbol like BTC-USDT"))
}

/// A required field is absent from a frame.
pub fn missing(field: &'static str) -> FrameError {
    FrameError::Field {
        field,
        reason: "missing".into(),
    }
}

/// A frame that is not JSON (or not the JSON shape expected).
pub fn json_err(e: serde_json::Error) -> FrameError {
    FrameError::Json(e.to_string())
}

/// Parses a tick's price or size given as text: > 0, at most
/// [`MAX_TICK_DECIMAL`](tickcast_core::domain::MAX_TICK_DECIMAL), at most
/// [`MAX_TICK_SCALE`](tickcast_core::domain::MAX_TICK_SCALE) decimals.
pub fn positive_decimal(field: &'static str, s: &str) -> Result<Decimal, FrameError> {
    let d = tickcast_core::domain::decimal_text::parse(s)
        .map_err(|reason| FrameError::Field { field, reason })?;
    match tickcast_core::domain::tick_decimal_problem(d) {
        None => Ok(d),
        Some(why) => Err(FrameError::Field {
            field,
            reason: format!("`{s}`: {why}"),
        }),
    }
}

/// Parses an RFC 3339 UTC timestamp (`2021-04-17T10:11:12.123456Z`) into epoch milliseconds
/// (sub-millisecond digits truncated). Only the `Z` form and `+00:00` are accepted.
pub fn rfc3339_ms(field: &'static str, s: &str) -> Result<i64, FrameError> {
    let bad = |why: &str| FrameError::Field {
        field,
        reason: format!("`{s}` is not an RFC 3339 UTC time: {why}"),
    };
    let b = s.as_bytes();
    if b.len() < 20 {
        return Err(bad("too short"));
    }
    let num = |r: std::ops::Range<usize>| -> Result<i64, FrameError> {
        let part = s.get(r).ok_or_else(|| bad("truncated"))?;
        if !part.bytes().all(|c| c.is_ascii_digit()) {
            return Err(bad("not a digit"));
        }
        part.parse::<i64>().map_err(|_| bad("not a number"))
    };
    if b[4] != b'-'
        || b[7] != b'-'
        || (b[10] != b'T' && b[10] != b' ')
        || b[13] != b':'
        || b[16] != b':'
    {
        return Err(bad("wrong separators"));
    }
    let (y, mo, d, h, mi, sec) = (
        num(0..4)?,
        num(5..7)?,
        num(8..10)?,
        num(11..13)?,
        num(14..16)?,
        num(17..19)?,
    );
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || sec > 60 {
        return Err(bad("field out of range"));
    }
    let mut rest = &s[19..];
    let mut millis = 0i64;
    if let Some(frac) = rest.strip_prefix('.') {
        let digits = frac.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(bad("empty fraction"));
        }
        for (i, c) in frac.bytes().take(3).enumerate().take(digits) {
            millis += i64::from(c - b'0') * [100, 10, 1][i];
        }
        rest = &frac[digits..];
    }
    if rest != "Z" && rest != "z" && rest != "+00:00" {
        return Err(bad("not UTC"));
    }
    // Days from civil (Howard Hinnant's algorithm).
    let (y2, m2) = if mo <= 2 {
        (y - 1, mo + 9)
    } else {
        (y, mo - 3)
    };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let doy = (153 * m2 + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Ok(((days * 24 + h) * 60 + mi) * 60_000 + sec * 1000 + millis)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_times_parse_to_epoch_ms() {
        assert_eq!(rfc3339_ms("t", "1970-01-01T00:00:00Z"), Ok(0));
        assert_eq!(
            rfc3339_ms("t", "2021-04-17T10:11:12.123456Z"),
            Ok(1_618_654_272_123)
        );
        assert_eq!(
            rfc3339_ms("t", "2024-02-29T23:59:59.9Z"),
            Ok(1_709_251_199_900)
        );
        assert_eq!(
            rfc3339_ms("t", "2023-09-25T07:48:36.925533Z"),
            Ok(1_695_628_116_925)
        );
        for bad in [
            "",
            "2021-04-17",
            "2021-04-17T10:11:12+02:00",
            "2021-13-01T00:00:00Z",
            "2021-04-17T10:11:12.Z",
            "2021-04-1xT10:11:12Z",
        ] {
            assert!(rfc3339_ms("t", bad).is_err(), "{bad}");
        }
    }
}
