//! Topic names, message keys and the JSON codec. Decoding is strict: unknown fields, a wrong
//! schema version or values that break the contract in `schemas/` are rejected with a
//! [`DecodeError`] that says what was wrong.

use rust_decimal::Decimal;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::domain::{Alert, Candle, Forecast, SCHEMA_VERSION, Tick};

/// Base topic names. A deployment may prefix them (see [`Topics`]).
pub const TICKS: &str = "tickcast.ticks.v1";
pub const CANDLES: &str = "tickcast.candles.v1";
pub const FORECASTS: &str = "tickcast.forecasts.v1";
pub const ALERTS: &str = "tickcast.alerts.v1";
pub const DEADLETTER: &str = "tickcast.deadletter.v1";

/// Topic names with an optional prefix, so that tests and tenants can share one cluster.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Topics {
    pub prefix: String,
}

impl Topics {
    pub fn new(prefix: impl Into<String>) -> Self {
        Self {
            prefix: prefix.into(),
        }
    }
    pub fn name(&self, base: &str) -> String {
        format!("{}{}", self.prefix, base)
    }
    pub fn ticks(&self) -> String {
        self.name(TICKS)
    }
    pub fn candles(&self) -> String {
        self.name(CANDLES)
    }
    pub fn forecasts(&self) -> String {
        self.name(FORECASTS)
    }
    pub fn alerts(&self) -> String {
        self.name(ALERTS)
    }
    pub fn deadletter(&self) -> String {
        self.name(DEADLETTER)
    }
    /// Every topic the pipeline uses.
    pub fn all(&self) -> Vec<String> {
        [TICKS, CANDLES, FORECASTS, ALERTS, DEADLETTER]
            .iter()
            .map(|b| self.name(b))
            .collect()
    }
}

/// Why a message could not be decoded.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("not valid JSON for this message: {0}")]
    Json(String),
    #[error("unsupported schema version {found} (expected {expected})")]
    Version { found: u32, expected: u32 },
    #[error("invalid field `{field}`: {reason}")]
    Invalid { field: &'static str, reason: String },
}

fn invalid(field: &'static str, reason: impl Into<String>) -> DecodeError {
    DecodeError::Invalid {
        field,
        reason: reason.into(),
    }
}

/// A message that travels on a topic.
pub trait Message: Serialize + DeserializeOwned {
    /// The schema version in `v`.
    fn version(&self) -> u32;
    /// The partitioning key `EXCHANGE:BASE-QUOTE`.
    fn key(&self) -> String;
    /// Checks the invariants the JSON Schema states beyond types.
    fn check(&self) -> Result<(), DecodeError>;
}

/// `EXCHANGE:BASE-QUOTE`, the key of every topic.
pub fn key_of(exchange: &str, symbol: &str) -> String {
    format!("{exchange}:{symbol}")
}

/// Serialises a message to JSON bytes.
pub fn encode<M: Message>(m: &M) -> Vec<u8> {
    // Room for a forecast (about 300 bytes) at once: `to_vec` starts at 128 bytes and grows
    // twice on the way. Serialising these plain structs cannot fail (no maps with non-string
    // keys); if it ever did, the result is empty, as before.
    let mut out = Vec::with_capacity(384);
    match serde_json::to_writer(&mut out, m) {
        Ok(()) => out,
        Err(_) => Vec::new(),
    }
}

/// Parses and checks a message.
pub fn decode<M: Message>(bytes: &[u8]) -> Result<M, DecodeError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let m: M = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        if path == "." {
            DecodeError::Json(e.into_inner().to_string())
        } else {
            DecodeError::Json(format!("`{path}`: {}", e.into_inner()))
        }
    })?;
    de.end().map_err(|e| DecodeError::Json(e.to_string()))?;
    if m.version() != SCHEMA_VERSION {
        return Err(DecodeError::Version {
            found: m.version(),
            expected: SCHEMA_VERSION,
        });
    }
    m.check()?;
    Ok(m)
}

/// Checks that an exchange id is lower-case letters, digits and `_`.
pub fn check_exchange(exchange: &str) -> Result<(), DecodeError> {
    let ok = !exchange.is_empty()
        && exchange.len() <= 32
        && exchange
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(invalid(
            "exchange",
            format!("`{exchange}` is not a lower-case id"),
        ))
    }
}

/// Checks that a symbol is canonical `BASE-QUOTE` (upper-case letters and digits), optionally
/// followed by up to three instrument parts for derivatives (`BTC-USDT-SWAP`,
/// `BTC-USD-220325-40000-C`).
pub fn check_symbol(symbol: &str) -> Result<(), DecodeError> {
    let part_ok = |p: &str| {
        !p.is_empty()
            && p.len() <= 16
            && p.bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
    };
    let parts = symbol.split('-').count();
    if (2..=5).contains(&parts) && symbol.split('-').all(part_ok) {
        Ok(())
    } else {
        Err(invalid(
            "symbol",
            format!("`{symbol}` is not canonical BASE-QUOTE"),
        ))
    }
}

fn check_positive(field: &'static str, d: Decimal) -> Result<(), DecodeError> {
    if d > Decimal::ZERO {
        Ok(())
    } else {
        Err(invalid(field, format!("{d} is not > 0")))
    }
}

fn check_finite(field: &'static str, x: f64) -> Result<(), DecodeError> {
    if x.is_finite() {
        Ok(())
    } else {
        Err(invalid(field, "not a finite number"))
    }
}

fn check_interval(interval: &str) -> Result<(), DecodeError> {
    crate::interval::Interval::parse(interval)
        .map(|_| ())
        .map_err(|e| invalid("interval", e))
}

impl Message for Tick {
    fn version(&self) -> u32 {
        self.v
    }
    fn key(&self) -> String {
        key_of(&self.exchange, &self.symbol)
    }
    fn check(&self) -> Result<(), DecodeError> {
        check_exchange(&self.exchange)?;
        check_symbol(&self.symbol)?;
        if self.trade_id.is_empty() || self.trade_id.len() > 64 {
            return Err(invalid("trade_id", "must be 1 to 64 characters"));
        }
        check_positive("price", self.price)?;
        check_positive("size", self.size)?;
        if self.ts_ms < 0 {
            return Err(invalid("ts_ms", "negative time"));
        }
        Ok(())
    }
}

impl Message for Candle {
    fn version(&self) -> u32 {
        self.v
    }
    fn key(&self) -> String {
        key_of(&self.exchange, &self.symbol)
    }
    fn check(&self) -> Result<(), DecodeError> {
        check_exchange(&self.exchange)?;
        check_symbol(&self.symbol)?;
        check_interval(&self.interval)?;
        if self.close_ms <= self.open_ms {
            return Err(invalid("close_ms", "must be after open_ms"));
        }
        for (f, d) in [("open", self.open), ("high", self.high), ("low", self.low)] {
            check_positive(f, d)?;
        }
        check_positive("close", self.close)?;
        if self.high < self.low || self.high < self.open.max(self.close) {
            return Err(invalid("high", "below low, open or close"));
        }
        if self.low > self.open.min(self.close) {
            return Err(invalid("low", "above open or close"));
        }
        if self.volume < Decimal::ZERO {
            return Err(invalid("volume", "negative"));
        }
        Ok(())
    }
}

impl Message for Forecast {
    fn version(&self) -> u32 {
        self.v
    }
    fn key(&self) -> String {
        key_of(&self.exchange, &self.symbol)
    }
    fn check(&self) -> Result<(), DecodeError> {
        check_exchange(&self.exchange)?;
        check_symbol(&self.symbol)?;
        check_interval(&self.interval)?;
        if self.model.is_empty() || self.model.len() > 32 {
            return Err(invalid("model", "must be 1 to 32 characters"));
        }
        if self.horizon == 0 {
            return Err(invalid("horizon", "must be at least 1"));
        }
        let values = [
            ("last", self.last),
            ("point", self.point),
            ("lo80", self.lo80),
            ("hi80", self.hi80),
            ("lo95", self.lo95),
            ("hi95", self.hi95),
        ];
        for (f, x) in values {
            check_finite(f, x)?;
        }
        if !(self.lo95 <= self.lo80 && self.lo80 <= self.hi80 && self.hi80 <= self.hi95) {
            return Err(invalid(
                "lo80",
                "intervals must nest: lo95 ≤ lo80 ≤ hi80 ≤ hi95",
            ));
        }
        Ok(())
    }
}

impl Message for Alert {
    fn version(&self) -> u32 {
        self.v
    }
    fn key(&self) -> String {
        key_of(&self.exchange, &self.symbol)
    }
    fn check(&self) -> Result<(), DecodeError> {
        check_exchange(&self.exchange)?;
        check_symbol(&self.symbol)?;
        check_interval(&self.interval)?;
        if self.id.is_empty() {
            return Err(invalid("id", "empty"));
        }
        if self.rule.is_empty() {
            return Err(invalid("rule", "empty"));
        }
        check_finite("value", self.value)?;
        check_finite("threshold", self.threshold)
    }
}
