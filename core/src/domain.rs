//! The normalised messages that travel on the topics: [`Tick`], [`Candle`], [`Forecast`],
//! [`Alert`]. Prices and sizes are exact decimals (encoded as JSON strings); model outputs are
//! `f64`. Every message carries `v`, its schema version (see `schemas/`).

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

/// Schema version of the ticks, candles, alerts and dead letters this build produces.
pub const SCHEMA_VERSION: u32 = 1;

/// Schema version of the forecasts this build produces. Version 2 added the quantiles, the
/// touch calibration, `model_version` and `degraded`; version 1 forecasts are still read.
pub const FORECAST_VERSION: u32 = 2;

/// The taker's side of a trade: `buy` means the aggressor bought (lifted the offer).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Side {
    Buy,
    Sell,
}

/// One public trade, normalised.
///
/// ```json
/// {"v":1,"exchange":"binance","symbol":"BTC-USDT","trade_id":"3712047611","price":"61234.10",
///  "size":"0.00120","side":"sell","ts_ms":1723075200123,"ingested_ms":1723075200150}
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Tick {
    pub v: u32,
    /// Lower-case exchange id (`binance`, `coinbase`, …).
    pub exchange: String,
    /// Canonical `BASE-QUOTE`, upper case.
    pub symbol: String,
    /// The exchange's trade id, as a string (some exchanges use UUIDs).
    pub trade_id: String,
    #[serde(with = "decimal_text")]
    #[schema(value_type = String, example = "64250.5")]
    pub price: Decimal,
    #[serde(with = "decimal_text")]
    #[schema(value_type = String, example = "0.0012")]
    pub size: Decimal,
    pub side: Side,
    /// Exchange event (trade) time, epoch milliseconds UTC.
    pub ts_ms: i64,
    /// When tickcast received the frame, epoch milliseconds UTC.
    pub ingested_ms: i64,
}

/// One OHLCV bar over the event-time window `[open_ms, open_ms + interval)`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Candle {
    pub v: u32,
    pub exchange: String,
    pub symbol: String,
    /// Interval label, e.g. `1m` (see [`crate::interval::Interval`]).
    pub interval: String,
    /// Window start, epoch milliseconds UTC.
    pub open_ms: i64,
    /// Window end (exclusive), epoch milliseconds UTC.
    pub close_ms: i64,
    #[serde(with = "decimal_text")]
    #[schema(value_type = String, example = "64250.5")]
    pub open: Decimal,
    #[serde(with = "decimal_text")]
    #[schema(value_type = String, example = "64250.5")]
    pub high: Decimal,
    #[serde(with = "decimal_text")]
    #[schema(value_type = String, example = "64250.5")]
    pub low: Decimal,
    #[serde(with = "decimal_text")]
    #[schema(value_type = String, example = "64250.5")]
    pub close: Decimal,
    /// Sum of trade sizes in base units.
    #[serde(with = "decimal_text")]
    #[schema(value_type = String, example = "12.5")]
    pub volume: Decimal,
    /// Number of trades in the window.
    pub trades: u64,
}

/// `d` as an `f64`: bit for bit what `rust_decimal`'s `to_f64` gives, without its 128-bit
/// division and remainder when the mantissa fits in 64 bits (every price and size seen in
/// practice). The forecast stage converts each candle's close several times per bar.
pub fn decimal_f64(d: &Decimal) -> f64 {
    let scale = d.scale();
    // Scale 0 is rust_decimal's own integer path; 10^scale fits in u64 up to scale 19.
    let (Ok(m), 1..=19) = (u64::try_from(d.mantissa().unsigned_abs()), scale) else {
        return rust_decimal::prelude::ToPrimitive::to_f64(d).unwrap_or(f64::NAN);
    };
    // rust_decimal's steps, in u64 (the same integers, so the same floats).
    let precision = 10u64.pow(scale);
    let (integral, frac) = ((m / precision) as f64, (m % precision) as f64);
    let frac = frac / precision as f64;
    let neg = d.is_sign_negative();
    if frac == 0.0 {
        return if neg { -integral } else { integral };
    }
    let round_to = 10f64.powi(scale as i32);
    let rounded = ((integral + frac) * round_to).round() / round_to;
    if neg { -rounded } else { rounded }
}

impl Candle {
    /// The close as an `f64` ([`decimal_f64`]).
    pub fn close_f64(&self) -> f64 {
        decimal_f64(&self.close)
    }

    /// The high as an `f64` ([`decimal_f64`]).
    pub fn high_f64(&self) -> f64 {
        decimal_f64(&self.high)
    }

    /// The low as an `f64` ([`decimal_f64`]).
    pub fn low_f64(&self) -> f64 {
        decimal_f64(&self.low)
    }
}

/// A shared name (exchange, symbol, interval, model) in a [`Forecast`]: the forecast stage
/// makes some 24 forecasts per series and bar, each naming the same four strings, so they share
/// them instead of owning copies (on the wire it is a plain string). An inline small string
/// (`compact_str`) measured slower here: the larger forecasts cost more than the reference
/// counts.
pub type Name = std::sync::Arc<str>;

/// A forecast of the close of the bar `horizon` bars after the bar that opened at `base_ms`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Forecast {
    pub v: u32,
    #[schema(value_type = String)]
    pub exchange: Name,
    #[schema(value_type = String)]
    pub symbol: Name,
    #[schema(value_type = String)]
    pub interval: Name,
    /// Model name (`naive`, `ets`, `lstm`, `ensemble`, …).
    #[schema(value_type = String)]
    pub model: Name,
    /// Horizon in bars (≥ 1).
    pub horizon: u32,
    /// Open time of the last closed bar the forecast was made from.
    pub base_ms: i64,
    /// Open time of the bar whose close is forecast (`base_ms + horizon × interval`).
    pub target_ms: i64,
    /// Close of the base bar, for reference.
    pub last: f64,
    pub point: f64,
    pub lo80: f64,
    pub hi80: f64,
    pub lo95: f64,
    pub hi95: f64,
    /// The close's quantiles at 2.5, 5, 10, 25, 50, 75, 90, 95 and 97.5% ([`QUANTILE_LEVELS`]),
    /// each calibrated online, in order. Version 2; absent in version 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quantiles: Option<[f64; 9]>,
    /// The online calibration of this series', model's and horizon's touch probabilities.
    /// Version 2; absent in version 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub touch: Option<TouchCalibration>,
    /// A short, stable id of the model's code revision and settings (and, for the LSTM, its
    /// training steps), e.g. `ets.r2.5c1f09ab`. Version 2; absent in version 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub model_version: Option<Name>,
    /// True when the series had an empty (synthesized) candle or restarted after an unfilled
    /// gap within its recent window: the models saw a thin or broken history. Alert rules skip
    /// degraded forecasts unless they say otherwise. Version 2; absent in version 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub degraded: Option<bool>,
}

/// The levels of [`Forecast::quantiles`].
pub const QUANTILE_LEVELS: [f64; 9] = [0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.975];

/// Platt scaling of a touch probability: `p = σ(alpha + beta · logit p₀)`, where `p₀` is the
/// reflection-principle probability from the forecast's drift and spread.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TouchCalibration {
    pub alpha: f64,
    pub beta: f64,
}

impl Forecast {
    /// Whether the forecast says it was made from a thin or broken history (version 1
    /// forecasts never do).
    pub fn is_degraded(&self) -> bool {
        self.degraded == Some(true)
    }
}

/// State of an alert rule instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum AlertState {
    Pending,
    Firing,
    Resolved,
}

impl AlertState {
    /// The state as JSON, the store and metric labels write it.
    pub fn as_str(self) -> &'static str {
        match self {
            AlertState::Pending => "pending",
            AlertState::Firing => "firing",
            AlertState::Resolved => "resolved",
        }
    }
}

/// One alert state transition (the alert stage's output, see `tickcast_alerts`).
/// `id` is deterministic so redelivery is idempotent.
///
/// ```json
/// {"v":1,"id":"5d0f…","rule":"btc-above-70k","exchange":"binance","symbol":"BTC-USDT",
///  "interval":"1m","model":"ensemble","horizon":5,"state":"firing","ts_ms":1723075200000,
///  "value":70012.5,"threshold":70000.0,"message":"btc-above-70k: firing: lo95 70012.50 (rule: above 70000.00)"}
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Alert {
    pub v: u32,
    pub id: String,
    pub rule: String,
    pub exchange: String,
    pub symbol: String,
    /// Candle interval of the series, e.g. `1m`.
    pub interval: String,
    pub model: String,
    pub horizon: u32,
    pub state: AlertState,
    /// Event time of the transition (open time of the bar that moved the state), epoch
    /// milliseconds UTC.
    pub ts_ms: i64,
    /// The value that was compared with the rule's threshold.
    pub value: f64,
    /// What `value` was compared with.
    pub threshold: f64,
    pub message: String,
}

/// The largest price or size a tick may carry: 10^15 (a quadrillion quote units for one base
/// unit, or base units in one trade). Far above any real market, and low enough that a window's
/// volume cannot overflow a decimal before 10^13 trades at the maximum.
pub const MAX_TICK_DECIMAL: Decimal = Decimal::from_parts(0xA4C6_8000, 0x0003_8D7E, 0, false, 0);

/// The most decimals a tick's price or size may carry (the canonical scale).
pub const MAX_TICK_SCALE: u32 = 18;

/// The latest event time a tick may carry: 2200-01-01T00:00:00Z in epoch milliseconds. A time in
/// microseconds or nanoseconds (or `i64::MAX`) lies far beyond it, so it is refused before it can
/// move a watermark, and every window computed from an accepted time fits an `i64`.
pub const MAX_EVENT_MS: i64 = 7_258_118_400_000;

/// How far a tick's event time may lie from the time tickcast received it:
/// `[received − max_age, received + max_skew]`, each bound optional. A time in the wrong unit
/// (seconds read as milliseconds lands in 1970; microseconds far in the future) or from a
/// clock far off falls outside, and is dead-lettered at the edge before it can move a
/// watermark.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventWindow {
    /// How old a trade may be when received (`None`: no limit). Backfilled trades after an
    /// outage are as old as the outage, so the default is generous.
    pub max_age_ms: Option<i64>,
    /// How far ahead of the receive time a trade may be stamped (`None`: no limit): the
    /// exchange's clock against ours.
    pub max_skew_ms: Option<i64>,
}

impl EventWindow {
    /// Default clock skew allowed: 60 s.
    pub const DEFAULT_MAX_SKEW_MS: i64 = 60_000;
    /// Default age allowed: 7 days.
    pub const DEFAULT_MAX_AGE_MS: i64 = 7 * 24 * 3_600_000;
    /// No bounds (the fixed ones of [`MAX_EVENT_MS`] and ≥ 0 still apply).
    pub const OFF: EventWindow = EventWindow {
        max_age_ms: None,
        max_skew_ms: None,
    };

    /// Why `ts_ms` cannot be the event time of a trade received at `received_ms`, or `None`.
    pub fn problem(&self, ts_ms: i64, received_ms: i64) -> Option<String> {
        let ahead = ts_ms.saturating_sub(received_ms);
        if let Some(skew) = self.max_skew_ms
            && ahead > skew
        {
            return Some(format!(
                "{ts_ms} is {ahead} ms after the receive time {received_ms}, more than the \
                 allowed clock skew of {skew} ms (a time in microseconds, or a clock far off; \
                 see --max-clock-skew-ms)"
            ));
        }
        let behind = received_ms.saturating_sub(ts_ms);
        if let Some(age) = self.max_age_ms
            && behind > age
        {
            return Some(format!(
                "{ts_ms} is {behind} ms before the receive time {received_ms}, more than the \
                 maximum age of {age} ms (a time in seconds, or a clock far off; see \
                 --max-tick-age-ms)"
            ));
        }
        None
    }
}

impl Default for EventWindow {
    fn default() -> Self {
        Self {
            max_age_ms: Some(Self::DEFAULT_MAX_AGE_MS),
            max_skew_ms: Some(Self::DEFAULT_MAX_SKEW_MS),
        }
    }
}

/// Why a price or size cannot be a tick's: not > 0, above [`MAX_TICK_DECIMAL`], or with more than
/// [`MAX_TICK_SCALE`] decimals. `None`: it can.
pub fn tick_decimal_problem(d: Decimal) -> Option<String> {
    if d <= Decimal::ZERO {
        Some(format!("{d} is not > 0"))
    } else if d > MAX_TICK_DECIMAL {
        Some(format!("{d} is above the maximum {MAX_TICK_DECIMAL}"))
    } else if d.scale() > MAX_TICK_SCALE {
        Some(format!(
            "{d} has {} decimals, more than {MAX_TICK_SCALE}",
            d.scale()
        ))
    } else {
        None
    }
}

/// Exact decimals on the wire: JSON strings of plain digits (`"61234.10"`), never numbers, so
/// no float ever touches a price. Serialises with the value's own scale. Reading also takes
/// exponent notation (`"2.17e-05"`, common in exported CSVs), exactly.
pub mod decimal_text {
    use std::str::FromStr as _;

    use rust_decimal::Decimal;
    use serde::{Deserialize as _, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Decimal, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(d)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(de: D) -> Result<Decimal, D::Error> {
        let text = std::borrow::Cow::<'de, str>::deserialize(de).map_err(|_| {
            serde::de::Error::custom("expected a decimal string such as \"61234.10\"")
        })?;
        parse(&text).map_err(serde::de::Error::custom)
    }

    /// Parses `-?digits(.digits)?`, optionally followed by an exponent `[eE][+-]?digits`,
    /// exactly: `2.17e-05` is 0.0000217 (scale 7). An exponent that leaves more than 28
    /// decimals or overflows is an error, never a rounded value.
    pub fn parse(text: &str) -> Result<Decimal, String> {
        if let Some(d) = parse_short(text) {
            return Ok(d);
        }
        let (mantissa, exponent) = match text.find(['e', 'E']) {
            Some(i) => (&text[..i], Some(&text[i + 1..])),
            None => (text, None),
        };
        let body = mantissa.strip_prefix('-').unwrap_or(mantissa);
        let (int, frac) = body.split_once('.').unwrap_or((body, "0"));
        let digits = |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit());
        if !(digits(int) && digits(frac)) {
            return Err(format!("`{text}` is not a plain decimal number"));
        }
        let plain = Decimal::from_str(mantissa).map_err(|e| format!("`{text}`: {e}"))?;
        let Some(exponent) = exponent else {
            return Ok(plain);
        };
        let unsigned = exponent.strip_prefix(['+', '-']).unwrap_or(exponent);
        if !digits(unsigned) || unsigned.len() > 3 {
            return Err(format!("`{text}` has no valid exponent"));
        }
        let e: i64 = exponent
            .parse()
            .map_err(|_| format!("`{text}` has no valid exponent"))?;
        let scale = i64::from(plain.scale()) - e;
        if scale > 28 {
            return Err(format!("`{text}` has more than 28 decimals"));
        }
        if scale >= 0 {
            let mut d = plain;
            d.set_scale(u32::try_from(scale).map_err(|_| format!("`{text}`: scale"))?)
                .map_err(|e| format!("`{text}`: {e}"))?;
            return Ok(d);
        }
        // A positive exponent beyond the decimals: multiply by 10^(−scale), checked.
        let mut d = plain;
        d.set_scale(0).map_err(|e| format!("`{text}`: {e}"))?;
        (0..-scale)
            .try_fold(d, |acc, _| acc.checked_mul(Decimal::TEN))
            .ok_or_else(|| format!("`{text}` is too large"))
    }

    /// The common case in one scan, with the same result as `Decimal::from_str`: a
    /// non-negative `digits(.digits)?` of at most 18 digits (so the mantissa fits an `i64` and
    /// the scale is at most 18). `None` for anything else, which [`parse`] handles in full.
    fn parse_short(text: &str) -> Option<Decimal> {
        let b = text.as_bytes();
        if b.is_empty() || b.len() > 19 {
            return None;
        }
        let (mut mantissa, mut digits, mut dot) = (0u64, 0u32, None);
        for (i, &c) in b.iter().enumerate() {
            match c {
                b'0'..=b'9' => {
                    mantissa = mantissa * 10 + u64::from(c - b'0');
                    digits += 1;
                }
                b'.' if dot.is_none() && i > 0 && i + 1 < b.len() => dot = Some(i),
                _ => return None,
            }
        }
        if digits > 18 {
            return None;
        }
        let scale = dot.map_or(0, |i| (b.len() - i - 1) as u32);
        Some(Decimal::from_i128_with_scale(i128::from(mantissa), scale))
    }

    #[cfg(test)]
    mod tests {
        #![allow(clippy::unwrap_used)]
        use super::*;

        #[test]
        fn short_path_matches_from_str() {
            let cases = [
                "0",
                "1",
                "0.0",
                "00.10",
                "61837.63000000",
                "0.00009000",
                "123456789012.5",
                "999999999999999999",
                "99999999999999999.9",
                "0.000000000000000001",
                "9999999999999999999",
                "1234567890.123456789",
                "-1.5",
                "-0",
                "1.",
                ".5",
                "1..2",
                "+1",
                "1_0",
                "",
                "-",
                "12a",
                " 1",
            ];
            for text in cases {
                let short = parse_short(text);
                let full = Decimal::from_str(text).ok().filter(|_| {
                    let body = text.strip_prefix('-').unwrap_or(text);
                    let (int, frac) = body.split_once('.').unwrap_or((body, "0"));
                    let digits = |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit());
                    digits(int) && digits(frac)
                });
                if let Some(d) = short {
                    let full = full.unwrap();
                    assert_eq!(
                        (d.mantissa(), d.scale(), d.to_string()),
                        (full.mantissa(), full.scale(), full.to_string()),
                        "{text}"
                    );
                }
                assert_eq!(parse(text).ok(), full, "{text}");
            }
        }

        #[test]
        fn exponents_are_exact() {
            for (text, mantissa, scale) in [
                ("2.17e-05", 217, 7),
                ("2.17E-05", 217, 7),
                ("1e5", 100_000, 0),
                ("1.5e+3", 1500, 0),
                ("1.50e1", 150, 1),
                ("-4e-2", -4, 2),
                ("6.1234e4", 61234, 0),
                ("1e-28", 1, 28),
            ] {
                let d = parse(text).unwrap();
                assert_eq!((d.mantissa(), d.scale()), (mantissa, scale), "{text}");
            }
            for text in [
                "1e", "e5", "1e+", "1e5.5", "1e-29", "1e400", "1e1000", "1ee5", "1e 5", "--1e5",
                "1e99",
            ] {
                assert!(parse(text).is_err(), "{text} parsed as {:?}", parse(text));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rust_decimal::prelude::ToPrimitive as _;

    fn same(d: Decimal) {
        let want = d.to_f64().unwrap_or(f64::NAN);
        assert_eq!(decimal_f64(&d).to_bits(), want.to_bits(), "{d}");
    }

    #[test]
    fn the_event_window_takes_its_bounds_inclusive_and_never_overflows() {
        let w = EventWindow::default();
        let r = 1_723_075_200_000;
        // (event time, accepted)
        let cases = [
            (r, true),
            (r + 60_000, true),
            (r + 60_001, false),
            (r - 604_800_000, true),
            (r - 604_800_001, false),
            (i64::MAX, false),
            (i64::MIN, false),
            (0, false),
        ];
        for (ts, ok) in cases {
            assert_eq!(w.problem(ts, r).is_none(), ok, "{ts}");
            assert_eq!(EventWindow::OFF.problem(ts, r), None, "{ts}");
        }
        // A receive time at the extremes (a broken clock) still gives an answer, no overflow.
        assert!(w.problem(0, i64::MAX).is_some());
        assert!(w.problem(i64::MAX, i64::MIN).is_some());
        assert!(w.problem(i64::MIN, i64::MAX).is_some());
    }

    #[test]
    fn decimal_f64_is_rust_decimals_conversion_on_known_cases() {
        for s in [
            "0",
            "-0.00",
            "1",
            "64250.5",
            "0.1",
            "0.3",
            "-2.675",
            "123456789.123456789",
            "0.0000001",
            "18446744073709551615",
            "18446744073709551616.5",
            "79228162514264337593543950335",
            "0.0000000000000000000000000001",
        ] {
            same(s.parse().expect(s));
        }
    }

    proptest! {
        #[test]
        fn decimal_f64_is_rust_decimals_conversion(
            lo in any::<u32>(), mid in any::<u32>(), hi in prop_oneof![Just(0u32), any::<u32>()],
            neg in any::<bool>(), scale in 0u32..=28,
        ) {
            same(Decimal::from_parts(lo, mid, hi, neg, scale));
        }
    }
}
