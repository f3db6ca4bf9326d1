//! Exchange connectors: one module per exchange behind the small [`Connector`] trait (subscribe
//! request, frame → [`Tick`]s, symbol mapping to canonical `BASE-QUOTE`).
//!
//! Layout:
//! - `binance` — Binance spot `@trade` (raw and combined streams).

pub mod binance;

use crate::domain::Tick;

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
}

/// What a frame was.
#[derive(Debug, PartialEq, Eq)]
pub enum Decoded {
    /// A trade frame that produced this many ticks.
    Trades(usize),
    /// A subscription acknowledgement.
    Ack,
    /// A frame that is not a trade (heartbeat, other channel), skipped on purpose.
    Skipped(&'static str),
}

/// One exchange's public trade protocol.
pub trait Connector: Send + Sync + std::fmt::Debug {
    /// Lower-case exchange id, used in topic keys.
    fn id(&self) -> &'static str;
    /// Text frames to send after connecting to subscribe to `symbols` (canonical).
    fn subscribe(&self, symbols: &[String]) -> Vec<String>;
    /// Decodes one text frame, appending ticks to `out`.
    fn decode(
        &self,
        frame: &str,
        received_ms: i64,
        out: &mut Vec<Tick>,
    ) -> Result<Decoded, FrameError>;
}

/// Looks a connector up by exchange id.
pub fn by_name(name: &str) -> Option<Box<dyn Connector>> {
    match name {
        "binance" => Some(Box::new(binance::Binance)),
        _ => None,
    }
}

/// Quote assets recognised when an exchange spells symbols without a separator, longest first.
const QUOTES: &[&str] = &[
    "FDUSD", "USDT", "USDC", "BUSD", "TUSD", "USDP", "DAI", "USD", "EUR", "GBP", "TRY", "BRL",
    "JPY", "AUD", "BTC", "ETH", "BNB", "XRP", "SOL", "DOGE", "TRX",
];

/// `BTCUSDT` → `BTC-USDT` by the longest known quote suffix.
pub fn split_concatenated(raw: &str) -> Option<String> {
    let upper = raw.to_ascii_uppercase();
    let mut quotes: Vec<&str> = QUOTES.to_vec();
    quotes.sort_by_key(|q| std::cmp::Reverse(q.len()));
    quotes
        .iter()
        .filter(|q| upper.len() > q.len() && upper.ends_with(*q))
        .map(|q| format!("{}-{}", &upper[..upper.len() - q.len()], q))
        .next()
}
