//! What the server side of every exchange protocol shares, as the replay exchange speaks it:
//! the [`ExchangeSim`] trait (subscription handling and acks, pongs, trade frames and the
//! public REST trades endpoint used for backfill), and helpers for requests and times. Each
//! exchange's implementation is the `replay` module of its folder in [`crate::exchanges`],
//! tested by decoding what it writes with the matching connector.

use crate::simulator::SimTrade;

/// What the server does with one text frame from a client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientRequest {
    /// Subscribe the connection to these canonical symbols and send `replies` (the acks).
    Subscribe {
        symbols: Vec<String>,
        replies: Vec<String>,
    },
    /// Send these frames back (a pong, …).
    Reply(Vec<String>),
    /// Nothing to send.
    Ignore,
    /// A request the exchange would reject: send these frames (its error message).
    Reject(Vec<String>),
}

/// A REST response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestReply {
    pub status: u16,
    /// JSON body.
    pub body: String,
}

impl RestReply {
    pub fn ok(body: String) -> Self {
        Self { status: 200, body }
    }
    pub fn bad_request(body: String) -> Self {
        Self { status: 400, body }
    }
}

/// The server side of one exchange protocol.
pub trait ExchangeSim: Send + Sync + std::fmt::Debug {
    /// The connector name this mirrors (`coinbase-exchange`).
    fn name(&self) -> &'static str;

    /// The trade id the exchange gives simulated trade `t`; the connector must produce exactly
    /// this string as `Tick::trade_id`.
    fn trade_id(&self, t: &SimTrade) -> String {
        t.trade_id.to_string()
    }

    /// Canonical symbols subscribed by the URL path alone (Binance `/stream?streams=`).
    fn symbols_in_path(&self, _path: &str) -> Vec<String> {
        Vec::new()
    }

    /// Frames sent as soon as a websocket opens (Kraken's `status`, …).
    fn greeting(&self) -> Vec<String> {
        Vec::new()
    }

    /// Reacts to one text frame from a client.
    fn on_client_text(&self, text: &str) -> ClientRequest;

    /// The frame that carries trade `t`, published at `event_ms`, on a connection opened at
    /// `path` (Binance wraps frames in an envelope on `/stream`).
    fn trade_frame(&self, t: &SimTrade, event_ms: i64, path: &str) -> String;

    /// A frame the server sends on its own every few seconds, if the protocol has one.
    fn heartbeat(&self) -> Option<String> {
        None
    }

    /// Answers a REST `GET path?query` from the trades that have happened so far (all symbols,
    /// in order of occurrence). `None` → 404.
    fn rest(&self, path_and_query: &str, happened: &[SimTrade]) -> Option<RestReply>;
}

/// The value of `key` in a `path?a=1&b=2` query string (no percent-decoding beyond `%2F` and
/// `%2D`, which is all exchange symbols need).
pub fn query_param(path_and_query: &str, key: &str) -> Option<String> {
    let (_, query) = path_and_query.split_once('?')?;
    query.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k == key).then(|| {
            v.replace("%2F", "/")
                .replace("%2f", "/")
                .replace("%2D", "-")
        })
    })
}

/// The path without its query string.
pub fn path_only(path_and_query: &str) -> &str {
    path_and_query.split('?').next().unwrap_or(path_and_query)
}

/// Epoch ms → `2021-04-17T10:11:12.123000Z` (microsecond digits, as Coinbase and Kraken
/// write them).
pub fn rfc3339_micros(ms: i64) -> String {
    let (days, rem) = (ms.div_euclid(86_400_000), ms.rem_euclid(86_400_000));
    // Civil from days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}000Z",
        rem / 3_600_000,
        rem / 60_000 % 60,
        rem / 1000 % 60,
        rem % 1000
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_params_are_found() {
        let pq = "/0/public/Trades?pair=BTC%2FUSD&since=12";
        assert_eq!(query_param(pq, "pair").as_deref(), Some("BTC/USD"));
        assert_eq!(query_param(pq, "since").as_deref(), Some("12"));
        assert_eq!(query_param(pq, "x"), None);
        assert_eq!(path_only(pq), "/0/public/Trades");
    }

    #[test]
    fn times_format_as_rfc3339() {
        assert_eq!(rfc3339_micros(0), "1970-01-01T00:00:00.000000Z");
        assert_eq!(
            rfc3339_micros(1_618_654_272_123),
            "2021-04-17T10:11:12.123000Z"
        );
        assert_eq!(
            rfc3339_micros(1_709_251_199_900),
            "2024-02-29T23:59:59.900000Z"
        );
    }
}
