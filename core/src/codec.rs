//! Topic names, message keys and the JSON codec. Decoding is strict: unknown fields, a wrong
//! schema version or values that break the contract in `schemas/` are rejected with a
//! [`DecodeError`] that says what was wrong.

use std::sync::Arc;

use rust_decimal::Decimal;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::domain::{Alert, Candle, FORECAST_VERSION, Forecast, SCHEMA_VERSION, Tick};

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
    Version { found: u32, expected: &'static str },
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
    /// The schema versions this build reads, as the error names them.
    const READS: &'static str = "1";
    /// Whether this build reads schema version `v`.
    fn reads(v: u32) -> bool {
        v == SCHEMA_VERSION
    }
    /// The partitioning key `EXCHANGE:BASE-QUOTE`.
    fn key(&self) -> Arc<str>;
    /// Checks the invariants the JSON Schema states beyond types.
    fn check(&self) -> Result<(), DecodeError>;
    /// The message as JSON bytes, as `serde_json` writes it; empty if it cannot be serialised.
    fn to_json(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(384);
        match serde_json::to_writer(&mut out, self) {
            Ok(()) => out,
            Err(_) => Vec::new(),
        }
    }
}

/// `EXCHANGE:BASE-QUOTE`, the key of every topic: shared text, so the records of one series
/// can share one key. One allocation (the text is put together on the stack when it fits).
pub fn key_of(exchange: &str, symbol: &str) -> Arc<str> {
    let n = exchange.len() + 1 + symbol.len();
    let mut buf = [0u8; 64];
    if let Some(out) = buf.get_mut(..n) {
        let (e, rest) = out.split_at_mut(exchange.len());
        e.copy_from_slice(exchange.as_bytes());
        let (colon, s) = rest.split_at_mut(1);
        colon[0] = b':';
        s.copy_from_slice(symbol.as_bytes());
        if let Ok(key) = std::str::from_utf8(out) {
            return Arc::from(key);
        }
    }
    Arc::from(format!("{exchange}:{symbol}"))
}

/// Serialises a message to JSON bytes ([`Message::to_json`]). Serialising these plain structs
/// cannot fail (no maps with non-string keys); if it ever did, the result is empty.
pub fn encode<M: Message>(m: &M) -> Vec<u8> {
    m.to_json()
}

/// Appends `s` as a JSON string, escaped exactly as `serde_json` escapes it.
fn write_json_str(out: &mut Vec<u8>, s: &str) {
    if s.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
    } else {
        // Never for a name the checks accept: serde_json's own escaping.
        let _ = serde_json::to_writer(&mut *out, s);
    }
}

/// Appends `x` as `serde_json` writes an `f64`: the shortest text that reads back as the same
/// number (by `zmij`, as serde_json does), `null` when it is not finite.
fn write_json_f64(out: &mut Vec<u8>, x: f64) {
    if x.is_finite() {
        out.extend_from_slice(zmij::Buffer::new().format_finite(x).as_bytes());
    } else {
        out.extend_from_slice(b"null");
    }
}

fn write_json_int(out: &mut Vec<u8>, i: impl itoa::Integer) {
    out.extend_from_slice(itoa::Buffer::new().format(i).as_bytes());
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
    if !M::reads(m.version()) {
        return Err(DecodeError::Version {
            found: m.version(),
            expected: M::READS,
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
    fn key(&self) -> Arc<str> {
        key_of(&self.exchange, &self.symbol)
    }
    fn check(&self) -> Result<(), DecodeError> {
        check_exchange(&self.exchange)?;
        check_symbol(&self.symbol)?;
        if self.trade_id.is_empty() || self.trade_id.len() > 64 {
            return Err(invalid("trade_id", "must be 1 to 64 characters"));
        }
        for (field, d) in [("price", self.price), ("size", self.size)] {
            if let Some(why) = crate::domain::tick_decimal_problem(d) {
                return Err(invalid(field, why));
            }
        }
        if self.ts_ms < 0 {
            return Err(invalid("ts_ms", "negative time"));
        }
        if self.ts_ms > crate::domain::MAX_EVENT_MS {
            return Err(invalid(
                "ts_ms",
                format!(
                    "{} is after 2200-01-01 ({}): not epoch milliseconds (microseconds?)",
                    self.ts_ms,
                    crate::domain::MAX_EVENT_MS
                ),
            ));
        }
        Ok(())
    }
}

impl Message for Candle {
    fn version(&self) -> u32 {
        self.v
    }
    fn key(&self) -> Arc<str> {
        key_of(&self.exchange, &self.symbol)
    }
    fn check(&self) -> Result<(), DecodeError> {
        check_series(&self.exchange, &self.symbol, &self.interval)?;
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

/// Writes forecasts as JSON, field by field: the forecast stage sends some 24 per series and bar,
/// and serde's generic path took as long as computing them. Consecutive forecasts share text: a
/// series' forecasts its names and its base bar's close, a model's its name, a bar's its base
/// time. So the writer keeps each such piece from the previous forecast and writes it again only
/// when its value changes (the same name pointers mean the same names). The bytes are
/// serde_json's (`forecast_json_is_serde_json`, `forecast_writer_runs_are_serde_json`).
#[derive(Debug, Default)]
pub struct ForecastWriter {
    /// `{"v":…,"exchange":…,"symbol":…,"interval":…,"model":`, of a version and three names.
    head: Kept<(u32, [crate::domain::Name; 3])>,
    /// The model's name as a JSON string.
    model: Kept<crate::domain::Name>,
    /// `,"base_ms":…,"target_ms":`, of a base time.
    base: Kept<i64>,
    /// `,"last":…`, of a close (its bits).
    last: Kept<u64>,
    /// `,"model_version":…`, of a model version.
    version: Kept<crate::domain::Name>,
}

/// Text written from a value, kept until a different value asks for it.
#[derive(Debug, Default)]
struct Kept<K> {
    of: Option<K>,
    text: Vec<u8>,
}

impl<K> Kept<K> {
    /// The text, written again by `write` (and kept for `key()`) unless the kept value is
    /// `same`.
    fn text(
        &mut self,
        same: impl FnOnce(&K) -> bool,
        key: impl FnOnce() -> K,
        write: impl FnOnce(&mut Vec<u8>),
    ) -> &[u8] {
        if !self.of.as_ref().is_some_and(same) {
            self.text.clear();
            write(&mut self.text);
            self.of = Some(key());
        }
        &self.text
    }
}

impl ForecastWriter {
    /// `f` as JSON bytes.
    pub fn json(&mut self, f: &Forecast) -> Vec<u8> {
        let names = [&f.exchange, &f.symbol, &f.interval];
        let head = self.head.text(
            |(v, known)| *v == f.v && same_series_names(known, f),
            || (f.v, names.map(Arc::clone)),
            |t| {
                t.extend_from_slice(b"{\"v\":");
                write_json_int(t, f.v);
                for (field, name) in [
                    (&b",\"exchange\":"[..], names[0]),
                    (b",\"symbol\":", names[1]),
                    (b",\"interval\":", names[2]),
                ] {
                    t.extend_from_slice(field);
                    write_json_str(t, name);
                }
                t.extend_from_slice(b",\"model\":");
            },
        );
        let model = self.model.text(
            |m| Arc::ptr_eq(m, &f.model),
            || Arc::clone(&f.model),
            |t| write_json_str(t, &f.model),
        );
        let base = self.base.text(
            |b| *b == f.base_ms,
            || f.base_ms,
            |t| {
                t.extend_from_slice(b",\"base_ms\":");
                write_json_int(t, f.base_ms);
                t.extend_from_slice(b",\"target_ms\":");
            },
        );
        let last = self.last.text(
            |bits| *bits == f.last.to_bits(),
            || f.last.to_bits(),
            |t| {
                t.extend_from_slice(b",\"last\":");
                write_json_f64(t, f.last);
            },
        );
        let version = match &f.model_version {
            Some(mv) => self.version.text(
                |known| Arc::ptr_eq(known, mv),
                || Arc::clone(mv),
                |t| {
                    t.extend_from_slice(b",\"model_version\":");
                    write_json_str(t, mv);
                },
            ),
            None => &[],
        };
        // Room for the longest numbers (at most 203 bytes with the field names, 560 more for
        // version 2's), so the buffer never grows.
        let mut out = Vec::with_capacity(
            head.len() + model.len() + base.len() + last.len() + version.len() + 784,
        );
        out.extend_from_slice(head);
        out.extend_from_slice(model);
        out.extend_from_slice(b",\"horizon\":");
        write_json_int(&mut out, f.horizon);
        out.extend_from_slice(base);
        write_json_int(&mut out, f.target_ms);
        out.extend_from_slice(last);
        for (field, x) in [
            (&b",\"point\":"[..], f.point),
            (b",\"lo80\":", f.lo80),
            (b",\"hi80\":", f.hi80),
            (b",\"lo95\":", f.lo95),
            (b",\"hi95\":", f.hi95),
        ] {
            out.extend_from_slice(field);
            write_json_f64(&mut out, x);
        }
        if let Some(qs) = &f.quantiles {
            out.extend_from_slice(b",\"quantiles\":[");
            for (i, &q) in qs.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_json_f64(&mut out, q);
            }
            out.push(b']');
        }
        if let Some(t) = &f.touch {
            out.extend_from_slice(b",\"touch\":{\"alpha\":");
            write_json_f64(&mut out, t.alpha);
            out.extend_from_slice(b",\"beta\":");
            write_json_f64(&mut out, t.beta);
            out.push(b'}');
        }
        out.extend_from_slice(version);
        if let Some(d) = f.degraded {
            out.extend_from_slice(if d {
                b",\"degraded\":true"
            } else {
                b",\"degraded\":false"
            });
        }
        out.push(b'}');
        out
    }
}

impl Message for Forecast {
    fn version(&self) -> u32 {
        self.v
    }
    const READS: &'static str = "1 or 2";
    fn reads(v: u32) -> bool {
        v == 1 || v == FORECAST_VERSION
    }
    fn key(&self) -> Arc<str> {
        key_of(&self.exchange, &self.symbol)
    }
    /// Written field by field ([`ForecastWriter`]); the bytes are serde_json's
    /// (`forecast_json_is_serde_json`).
    fn to_json(&self) -> Vec<u8> {
        ForecastWriter::default().json(self)
    }
    fn check(&self) -> Result<(), DecodeError> {
        check_series(&self.exchange, &self.symbol, &self.interval)?;
        check_forecast_values(self)
    }
}

/// Checks a series' names: exchange, symbol and interval.
pub fn check_series(exchange: &str, symbol: &str, interval: &str) -> Result<(), DecodeError> {
    check_exchange(exchange)?;
    check_symbol(symbol)?;
    check_interval(interval)
}

/// Whether `f` names its series by the very names in `known` (the same pointers). A stage's
/// forecasts of one series share their names, so what was worked out from them still holds.
pub fn same_series_names(known: &[crate::domain::Name; 3], f: &Forecast) -> bool {
    let names = [&f.exchange, &f.symbol, &f.interval];
    known.iter().zip(names).all(|(a, b)| Arc::ptr_eq(a, b))
}

/// Checks what a forecast states beyond its series' names ([`check_series`]): model, horizon,
/// finite values, nested intervals. With it, a stage that sends many forecasts of one series
/// checks the series' names once.
pub fn check_forecast_values(f: &Forecast) -> Result<(), DecodeError> {
    if f.model.is_empty() || f.model.len() > 32 {
        return Err(invalid("model", "must be 1 to 32 characters"));
    }
    if f.horizon == 0 {
        return Err(invalid("horizon", "must be at least 1"));
    }
    let values = [
        ("last", f.last),
        ("point", f.point),
        ("lo80", f.lo80),
        ("hi80", f.hi80),
        ("lo95", f.lo95),
        ("hi95", f.hi95),
    ];
    for (field, x) in values {
        check_finite(field, x)?;
    }
    if !(f.lo95 <= f.lo80 && f.lo80 <= f.hi80 && f.hi80 <= f.hi95) {
        return Err(invalid(
            "lo80",
            "intervals must nest: lo95 ≤ lo80 ≤ hi80 ≤ hi95",
        ));
    }
    check_forecast_v2(f)
}

/// Checks the fields version 2 added: present in version 2 and absent in version 1; the
/// quantiles finite and in order, the touch calibration finite, the model version 1 to 64
/// printable ASCII characters.
fn check_forecast_v2(f: &Forecast) -> Result<(), DecodeError> {
    let v2 = f.v >= FORECAST_VERSION;
    for (field, present) in [
        ("quantiles", f.quantiles.is_some()),
        ("touch", f.touch.is_some()),
        ("model_version", f.model_version.is_some()),
        ("degraded", f.degraded.is_some()),
    ] {
        if present != v2 {
            let why = if v2 {
                "required from schema version 2"
            } else {
                "not part of schema version 1"
            };
            return Err(invalid(field, why));
        }
    }
    if let Some(qs) = &f.quantiles {
        if qs.iter().any(|q| !q.is_finite()) {
            return Err(invalid("quantiles", "must be finite numbers"));
        }
        if qs.windows(2).any(|w| w[0] > w[1]) {
            return Err(invalid("quantiles", "must be in ascending order"));
        }
    }
    if let Some(t) = &f.touch {
        check_finite("touch", t.alpha)?;
        check_finite("touch", t.beta)?;
    }
    if let Some(mv) = &f.model_version
        && (mv.is_empty() || mv.len() > 64 || !mv.bytes().all(|b| b.is_ascii_graphic()))
    {
        return Err(invalid(
            "model_version",
            "must be 1 to 64 printable ASCII characters",
        ));
    }
    Ok(())
}

impl Message for Alert {
    fn version(&self) -> u32 {
        self.v
    }
    fn key(&self) -> Arc<str> {
        key_of(&self.exchange, &self.symbol)
    }
    fn check(&self) -> Result<(), DecodeError> {
        check_series(&self.exchange, &self.symbol, &self.interval)?;
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

/// Quote assets recognised when an exchange spells symbols without a separator, longest first.
const QUOTES: &[&str] = &[
    "FDUSD", "USDT", "USDC", "BUSD", "TUSD", "USDP", "EURC", "DAI", "USD", "EUR", "GBP", "TRY",
    "BRL", "JPY", "AUD", "CAD", "CHF", "BTC", "ETH", "BNB", "XRP", "SOL", "DOGE", "TRX",
];

/// `BTCUSDT` → `BTC-USDT` by the longest known quote suffix.
pub fn split_concatenated(raw: &str) -> Option<String> {
    let upper = raw.to_ascii_uppercase();
    // QUOTES is ordered so that no entry is a suffix of a later, longer one being skipped:
    // try longer quotes first.
    let mut best: Option<&str> = None;
    for q in QUOTES {
        if upper.len() > q.len() && upper.ends_with(q) && best.is_none_or(|b| q.len() > b.len()) {
            best = Some(q);
        }
    }
    best.map(|q| format!("{}-{}", &upper[..upper.len() - q.len()], q))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn concatenated_symbols_split_on_the_longest_quote() {
        assert_eq!(split_concatenated("btcusdt").as_deref(), Some("BTC-USDT"));
        assert_eq!(split_concatenated("ETHBTC").as_deref(), Some("ETH-BTC"));
        assert_eq!(
            split_concatenated("PEPEFDUSD").as_deref(),
            Some("PEPE-FDUSD")
        );
        assert_eq!(split_concatenated("btcusd").as_deref(), Some("BTC-USD"));
        assert_eq!(split_concatenated("USDT"), None);
        assert_eq!(split_concatenated("XYZ"), None);
    }
    use crate::domain::Forecast;
    use proptest::prelude::*;

    fn forecast(names: [&str; 4], ints: (u32, u32, i64, i64), xs: [f64; 6]) -> Forecast {
        let [exchange, symbol, interval, model] = names;
        let (v, horizon, base_ms, target_ms) = ints;
        let [last, point, lo80, hi80, lo95, hi95] = xs;
        Forecast {
            v,
            exchange: exchange.into(),
            symbol: symbol.into(),
            interval: interval.into(),
            model: model.into(),
            horizon,
            base_ms,
            target_ms,
            last,
            point,
            lo80,
            hi80,
            lo95,
            hi95,
            quantiles: None,
            touch: None,
            model_version: None,
            degraded: None,
        }
    }

    /// `f` as version 2, its extra fields from `xs` (and a shared version name).
    fn v2(f: Forecast, xs: [f64; 6], version: &crate::domain::Name, degraded: bool) -> Forecast {
        Forecast {
            quantiles: Some(std::array::from_fn(|i| xs[i % 6] * i as f64)),
            touch: Some(crate::domain::TouchCalibration {
                alpha: xs[4],
                beta: xs[5],
            }),
            model_version: Some(Arc::clone(version)),
            degraded: Some(degraded),
            ..f
        }
    }

    fn same_as_serde(f: &Forecast) {
        let want = serde_json::to_vec(f).expect("serde_json");
        let got = f.to_json();
        assert_eq!(
            String::from_utf8_lossy(&got),
            String::from_utf8_lossy(&want)
        );
        assert_eq!(got, want);
    }

    #[test]
    fn forecast_json_is_serde_json_on_edge_cases() {
        let awkward = [
            0.0,
            -0.0,
            1.0,
            -1.5,
            0.1,
            64_250.5,
            1e21,
            1e-7,
            123_456_789.123_456_79,
            f64::MIN_POSITIVE,
            f64::MIN_POSITIVE / 3.0,
            f64::MAX,
            f64::MIN,
            f64::EPSILON,
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
        ];
        let version: crate::domain::Name = "ets.r2.5c1f09ab".into();
        for (i, &x) in awkward.iter().enumerate() {
            let xs = [x, awkward[(i + 1) % awkward.len()], x, x, -x, x / 3.0];
            let f = forecast(
                ["binance", "BTC-USDT", "1m", "ensemble"],
                (1, 60, 1_723_075_200_000, 1_723_078_800_000),
                xs,
            );
            same_as_serde(&f);
            same_as_serde(&v2(f, xs, &version, i % 2 == 0));
        }
        same_as_serde(&v2(
            forecast(["a", "b", "c", "d"], (2, 1, 0, 0), [1.0; 6]),
            [1.0; 6],
            &"quote\"back\\slash\u{7}".into(),
            true,
        ));
        same_as_serde(&forecast(
            [
                "",
                "quote\"back\\slash",
                "tab\tnl\ncr\rbell\u{7}del\u{7f}",
                "é€😀\u{0}",
            ],
            (u32::MAX, 0, i64::MIN, i64::MAX),
            [0.0; 6],
        ));
    }

    fn name() -> impl Strategy<Value = String> {
        prop_oneof![
            "[a-z0-9_]{1,12}",
            "[A-Z0-9]{1,6}-[A-Z0-9]{1,6}",
            any::<String>(),
            "[\\x00-\\x7f]{0,8}",
        ]
    }

    fn number() -> impl Strategy<Value = f64> {
        prop_oneof![
            any::<f64>(),
            (-1e6f64..1e6),
            (0u64..1_000_000_000).prop_map(|n| n as f64 / 100.0),
            any::<u64>().prop_map(f64::from_bits),
        ]
    }

    proptest! {
        #[test]
        fn forecast_json_is_serde_json(
            names in proptest::array::uniform4(name()),
            ints in (any::<u32>(), any::<u32>(), any::<i64>(), any::<i64>()),
            xs in proptest::array::uniform6(number()),
            version in name(),
            degraded in any::<bool>(),
        ) {
            let names = names.each_ref().map(String::as_str);
            let f = forecast(names, ints, xs);
            same_as_serde(&f);
            same_as_serde(&v2(f, xs, &version.as_str().into(), degraded));
        }
    }

    proptest! {
        /// Runs of forecasts through one writer, as the forecast stage sends them: series and
        /// models that share their names (the same pointers) or only their text, closes and
        /// base times that repeat or change, versions that change under the same names.
        #[test]
        fn forecast_writer_runs_are_serde_json(
            series in proptest::collection::vec(proptest::array::uniform3(name()), 1..4),
            models in proptest::collection::vec(name(), 1..4),
            run in proptest::collection::vec(
                (0usize..4, any::<bool>(), prop_oneof![Just(1u32), any::<u32>()],
                 (0usize..4, any::<bool>()),
                 prop_oneof![Just(100.0f64), number()],
                 prop_oneof![Just(1_723_075_200_000i64), any::<i64>()],
                 proptest::array::uniform6(number())),
                1..40,
            ),
        ) {
            let shared: Vec<[crate::domain::Name; 3]> = series
                .iter()
                .map(|n| n.each_ref().map(|x| crate::domain::Name::from(x.as_str())))
                .collect();
            let models: Vec<crate::domain::Name> =
                models.iter().map(|m| crate::domain::Name::from(m.as_str())).collect();
            let mut w = ForecastWriter::default();
            for (k, copy, v, (m, copy_model), last, base_ms, xs) in run {
                let names = &shared[k % shared.len()];
                // The same text in new allocations, or the shared ones.
                let names = if copy {
                    names.each_ref().map(|n| crate::domain::Name::from(&**n))
                } else {
                    names.clone()
                };
                let model = &models[m % models.len()];
                let model = if copy_model {
                    crate::domain::Name::from(&**model)
                } else {
                    Arc::clone(model)
                };
                let [exchange, symbol, interval] = names;
                let extra = if copy_model { v2(forecast(["", "", "", ""], (0, 0, 0, 0), xs), xs, &model, copy) } else { forecast(["", "", "", ""], (0, 0, 0, 0), xs) };
                let f = Forecast {
                    v,
                    exchange,
                    symbol,
                    interval,
                    model,
                    horizon: xs[0].to_bits() as u32,
                    base_ms,
                    target_ms: xs[2].to_bits() as i64,
                    last,
                    ..extra
                };
                prop_assert_eq!(w.json(&f), serde_json::to_vec(&f).expect("serde_json"));
            }
        }
    }

    #[test]
    fn key_of_joins_exchange_and_symbol() {
        assert_eq!(&*key_of("binance", "BTC-USDT"), "binance:BTC-USDT");
        assert_eq!(&*key_of("", ""), ":");
        // Longer than the stack buffer: the same text.
        let long = "X".repeat(70);
        assert_eq!(&*key_of("kraken", &long), format!("kraken:{long}"));
        assert_eq!(&*key_of(&long, "BTC-USDT"), format!("{long}:BTC-USDT"));
    }
}
