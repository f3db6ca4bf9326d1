//! Alert rules: what to watch and when to tell. A [`Rule`] is written as a flat document
//! ([`RuleSpec`], the same in JSON and YAML) and validated into typed form; every error names
//! the field that is wrong ([`RuleError`]).
//!
//! ```yaml
//! id: btc-surely-above-70k      # [a-z0-9_-]{1,64}, unique
//! exchange: binance             # optional: every exchange when absent
//! symbol: BTC-USDT              # optional: every symbol when absent
//! interval: 1m
//! model: ensemble
//! horizon: 5                    # bars
//! kind: above                   # above | below | change | anomaly
//! on: lo95                      # above/below: point | lo80 | hi80 | lo95 | hi95 (default point)
//! threshold: 70000              # above/below: a price; change: a percentage (2.5 = ±2.5%)
//! for: 3m                       # or for_bars: 3 (not both); default 0 = fire at once
//! hysteresis: 50                # same unit as the threshold; default 0
//! cooldown: 15m                 # default 0
//! enabled: true                 # default true
//! ```
//!
//! `anomaly` rules take `band: 80 | 95` (default 95) instead of `on` and `threshold`; their
//! hysteresis is a price distance inside the band.
//!
//! `probability` rules fire when the forecast makes a price `level` likely enough:
//!
//! ```yaml
//! kind: probability
//! of: touch                     # above (close at or above level, default) | below | touch
//! level: 70000                  # a price
//! threshold: 0.8                # the probability, in (0, 1]
//! hysteresis: 0.1               # resolves below 0.7
//! ```
//!
//! `above` and `below` read the forecast's calibrated bands and point as its 2.5, 10, 50, 90 and
//! 97.5% quantiles; `touch` is the chance that the price reaches `level` at any time before
//! the target bar (`tickcast_forecast::scoring::touch`). The event's `value` is the probability.

use std::collections::HashSet;
use std::path::Path;

use crate::codec::{check_exchange, check_symbol};
use crate::domain::Forecast;
use crate::interval::Interval;
use serde::{Deserialize, Serialize};

/// A rule field that is wrong, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{field}`: {reason}")]
pub struct RuleError {
    /// The field's path, e.g. `threshold` or `rules[2].threshold` in a rule file.
    pub field: String,
    pub reason: String,
}

impl RuleError {
    fn new(field: &str, reason: impl Into<String>) -> Self {
        Self {
            field: field.to_string(),
            reason: reason.into(),
        }
    }

    /// The same error inside a list: `rules[2].threshold`.
    fn within(self, prefix: &str) -> Self {
        Self {
            field: format!("{prefix}.{}", self.field),
            reason: self.reason,
        }
    }
}

/// What a rule compares its threshold with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// The forecast value (`on`) is above the threshold price.
    Above,
    /// The forecast value (`on`) is below the threshold price.
    Below,
    /// The predicted change over the horizon, `(point / last − 1) × 100`, is beyond
    /// ±threshold percent.
    Change,
    /// The actual close of the target bar falls outside the forecast's interval.
    Anomaly,
    /// The forecast's probability of a price level (`of`) reaches the threshold.
    Probability,
}

/// Which probability of its level a `probability` rule watches.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Odds {
    /// The target bar closes at or above the level.
    #[default]
    Above,
    /// The target bar closes at or below the level.
    Below,
    /// The price reaches the level at any time before the target bar closes.
    Touch,
}

impl Odds {
    pub fn name(self) -> &'static str {
        match self {
            Odds::Above => "close ≥",
            Odds::Below => "close ≤",
            Odds::Touch => "touch",
        }
    }
}

/// A forecast value a price rule looks at. `lo95 above X` reads "at least 97.5% likely
/// above X".
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Bound {
    #[default]
    Point,
    Lo80,
    Hi80,
    Lo95,
    Hi95,
}

impl Bound {
    /// This bound's value in a forecast.
    pub fn value_in(self, f: &Forecast) -> f64 {
        match self {
            Bound::Point => f.point,
            Bound::Lo80 => f.lo80,
            Bound::Hi80 => f.hi80,
            Bound::Lo95 => f.lo95,
            Bound::Hi95 => f.hi95,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Bound::Point => "point",
            Bound::Lo80 => "lo80",
            Bound::Hi80 => "hi80",
            Bound::Lo95 => "lo95",
            Bound::Hi95 => "hi95",
        }
    }
}

/// The prediction interval an anomaly rule checks the actual close against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Band {
    P80,
    P95,
}

impl Band {
    pub fn percent(self) -> u8 {
        match self {
            Band::P80 => 80,
            Band::P95 => 95,
        }
    }

    /// (lo, hi) of a forecast.
    pub fn edges_in(self, f: &Forecast) -> (f64, f64) {
        match self {
            Band::P80 => (f.lo80, f.hi80),
            Band::P95 => (f.lo95, f.hi95),
        }
    }
}

/// A rule's condition, typed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Condition {
    Above {
        on: Bound,
        price: f64,
    },
    Below {
        on: Bound,
        price: f64,
    },
    /// Beyond ±`percent` percent.
    Change {
        percent: f64,
    },
    Anomaly {
        band: Band,
    },
    /// The probability `of` the price `level` is at least `at_least`.
    Probability {
        of: Odds,
        level: f64,
        at_least: f64,
    },
}

/// How long the condition must hold before the alert fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hold {
    /// This many bars of the rule's interval.
    Bars(u32),
    /// This many milliseconds (written as a duration: `90s`, `5m`, `1h30m`).
    Ms(i64),
}

/// A validated alert rule. Serialises as its [`RuleSpec`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "RuleSpec", into = "RuleSpec")]
pub struct Rule {
    pub id: String,
    /// `None`: every exchange.
    pub exchange: Option<String>,
    /// `None`: every symbol.
    pub symbol: Option<String>,
    pub interval: String,
    pub model: String,
    pub horizon: u32,
    pub condition: Condition,
    pub hold: Hold,
    /// To resolve, the value must come back beyond threshold ∓ hysteresis (same unit as the
    /// threshold).
    pub hysteresis: f64,
    /// No new alert for this long after one resolved.
    pub cooldown_ms: i64,
    pub enabled: bool,
    pub description: Option<String>,
    /// Whether the rule also reads degraded forecasts ([`Forecast::degraded`]); by default it
    /// skips them.
    pub include_degraded: bool,
    interval_ms: i64,
}

/// The written form of a rule, field for field what JSON and YAML documents hold.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RuleSpec {
    #[schema(pattern = r"^[a-z0-9_-]{1,64}$")]
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exchange: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub symbol: Option<String>,
    pub interval: String,
    pub model: String,
    pub horizon: u32,
    pub kind: Kind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on: Option<Bound>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub band: Option<u8>,
    /// `probability` rules: the price level.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub level: Option<f64>,
    /// `probability` rules: which probability of the level (default `above`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub of: Option<Odds>,
    /// A duration such as `3m`; exclusive with `for_bars`.
    #[serde(rename = "for", default, skip_serializing_if = "Option::is_none")]
    pub for_duration: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub for_bars: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hysteresis: Option<f64>,
    /// A duration such as `15m`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cooldown: Option<String>,
    #[serde(default = "yes")]
    pub enabled: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Also read forecasts made from a thin or broken history (`degraded: true`), which a rule
    /// skips by default.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub include_degraded: bool,
}

fn yes() -> bool {
    true
}

impl Rule {
    /// Parses and validates one rule from JSON; the error names the field.
    pub fn from_json(bytes: &[u8]) -> Result<Self, RuleError> {
        let mut de = serde_json::Deserializer::from_slice(bytes);
        let spec: RuleSpec = serde_path_to_error::deserialize(&mut de).map_err(|e| {
            let path = e.path().to_string();
            RuleError::new(
                if path == "." { "body" } else { &path },
                e.inner().to_string(),
            )
        })?;
        de.end()
            .map_err(|e| RuleError::new("body", e.to_string()))?;
        Self::try_from(spec)
    }

    /// The `for` duration in milliseconds.
    pub fn for_ms(&self) -> i64 {
        match self.hold {
            Hold::Bars(n) => i64::from(n) * self.interval_ms,
            Hold::Ms(ms) => ms,
        }
    }

    pub fn interval_ms(&self) -> i64 {
        self.interval_ms
    }

    pub fn kind(&self) -> Kind {
        match self.condition {
            Condition::Above { .. } => Kind::Above,
            Condition::Below { .. } => Kind::Below,
            Condition::Change { .. } => Kind::Change,
            Condition::Anomaly { .. } => Kind::Anomaly,
            Condition::Probability { .. } => Kind::Probability,
        }
    }

    /// Whether the rule watches this series (exchange, symbol, interval).
    pub fn watches(&self, exchange: &str, symbol: &str, interval: &str) -> bool {
        self.enabled
            && self.interval == interval
            && self.exchange.as_deref().is_none_or(|e| e == exchange)
            && self.symbol.as_deref().is_none_or(|s| s == symbol)
    }

    /// Whether the rule evaluates this forecast's model and horizon on its series.
    /// Whether the rule reads forecast `f`: its series, model and horizon, and not degraded
    /// unless the rule includes degraded forecasts.
    pub fn matches(&self, f: &Forecast) -> bool {
        *self.model == *f.model
            && self.horizon == f.horizon
            && self.watches(&f.exchange, &f.symbol, &f.interval)
            && (self.include_degraded || !f.is_degraded())
    }
}

impl TryFrom<RuleSpec> for Rule {
    type Error = RuleError;

    fn try_from(s: RuleSpec) -> Result<Self, RuleError> {
        check_id(&s.id)?;
        if let Some(e) = &s.exchange {
            check_exchange(e).map_err(|e| RuleError::new("exchange", e.to_string()))?;
        }
        if let Some(sym) = &s.symbol {
            check_symbol(sym).map_err(|e| RuleError::new("symbol", e.to_string()))?;
        }
        let interval = Interval::parse(&s.interval).map_err(|e| RuleError::new("interval", e))?;
        if s.model.is_empty() || s.model.len() > 32 {
            return Err(RuleError::new("model", "must be 1 to 32 characters"));
        }
        if s.horizon == 0 {
            return Err(RuleError::new("horizon", "must be at least 1 bar"));
        }
        let condition = condition(&s)?;
        let hysteresis = s.hysteresis.unwrap_or(0.0);
        if !hysteresis.is_finite() || hysteresis < 0.0 {
            return Err(RuleError::new("hysteresis", "must be a number ≥ 0"));
        }
        if let Condition::Change { percent } = condition
            && hysteresis >= percent
        {
            return Err(RuleError::new(
                "hysteresis",
                format!("must be below the threshold ({percent} percent) for a change rule"),
            ));
        }
        if let Condition::Probability { at_least, .. } = condition
            && hysteresis >= at_least
        {
            return Err(RuleError::new(
                "hysteresis",
                format!("must be below the threshold ({at_least}) for a probability rule"),
            ));
        }
        let hold = match (&s.for_duration, s.for_bars) {
            (Some(_), Some(_)) => {
                return Err(RuleError::new("for", "give `for` or `for_bars`, not both"));
            }
            (Some(d), None) => Hold::Ms(parse_duration(d).map_err(|e| RuleError::new("for", e))?),
            (None, Some(n)) => Hold::Bars(n),
            (None, None) => Hold::Ms(0),
        };
        let cooldown_ms = match &s.cooldown {
            Some(d) => parse_duration(d).map_err(|e| RuleError::new("cooldown", e))?,
            None => 0,
        };
        if let Some(d) = &s.description
            && d.len() > 1024
        {
            return Err(RuleError::new("description", "at most 1024 bytes"));
        }
        Ok(Rule {
            id: s.id,
            exchange: s.exchange,
            symbol: s.symbol,
            interval: s.interval,
            model: s.model,
            horizon: s.horizon,
            condition,
            hold,
            hysteresis,
            cooldown_ms,
            enabled: s.enabled,
            description: s.description,
            include_degraded: s.include_degraded,
            interval_ms: interval.ms(),
        })
    }
}

fn check_id(id: &str) -> Result<(), RuleError> {
    let ok = !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(RuleError::new(
            "id",
            format!("`{id}` is not 1 to 64 of [a-z0-9_-]"),
        ))
    }
}

fn condition(s: &RuleSpec) -> Result<Condition, RuleError> {
    let price = |what: &str| -> Result<f64, RuleError> {
        match s.threshold {
            None => Err(RuleError::new(
                "threshold",
                format!("required for `{what}` rules"),
            )),
            Some(x) if !x.is_finite() || x <= 0.0 => {
                Err(RuleError::new("threshold", "must be a number > 0"))
            }
            Some(x) => Ok(x),
        }
    };
    let no = |field: &str, value: bool, kinds: &str| -> Result<(), RuleError> {
        if value {
            Err(RuleError::new(field, format!("only for {kinds} rules")))
        } else {
            Ok(())
        }
    };
    if s.kind != Kind::Probability {
        no("level", s.level.is_some(), "`probability`")?;
        no("of", s.of.is_some(), "`probability`")?;
    }
    match s.kind {
        Kind::Probability => {
            no("band", s.band.is_some(), "`anomaly`")?;
            no("on", s.on.is_some(), "`above` and `below`")?;
            let level = match s.level {
                None => return Err(RuleError::new("level", "required for `probability` rules")),
                Some(x) if !x.is_finite() || x <= 0.0 => {
                    return Err(RuleError::new("level", "must be a price > 0"));
                }
                Some(x) => x,
            };
            let at_least = match s.threshold {
                None => {
                    return Err(RuleError::new(
                        "threshold",
                        "required for `probability` rules",
                    ));
                }
                Some(x) if !(x > 0.0 && x <= 1.0) => {
                    return Err(RuleError::new(
                        "threshold",
                        "a probability: more than 0, at most 1",
                    ));
                }
                Some(x) => x,
            };
            Ok(Condition::Probability {
                of: s.of.unwrap_or_default(),
                level,
                at_least,
            })
        }
        Kind::Above | Kind::Below => {
            no("band", s.band.is_some(), "`anomaly`")?;
            let on = s.on.unwrap_or_default();
            let price = price(if s.kind == Kind::Above {
                "above"
            } else {
                "below"
            })?;
            Ok(if s.kind == Kind::Above {
                Condition::Above { on, price }
            } else {
                Condition::Below { on, price }
            })
        }
        Kind::Change => {
            no("band", s.band.is_some(), "`anomaly`")?;
            no("on", s.on.is_some(), "`above` and `below`")?;
            Ok(Condition::Change {
                percent: price("change")?,
            })
        }
        Kind::Anomaly => {
            no("on", s.on.is_some(), "`above` and `below`")?;
            no(
                "threshold",
                s.threshold.is_some(),
                "`above`, `below` and `change`",
            )?;
            let band = match s.band.unwrap_or(95) {
                80 => Band::P80,
                95 => Band::P95,
                b => return Err(RuleError::new("band", format!("{b}: must be 80 or 95"))),
            };
            Ok(Condition::Anomaly { band })
        }
    }
}

impl From<Rule> for RuleSpec {
    fn from(r: Rule) -> Self {
        let (kind, on, threshold, band) = match r.condition {
            Condition::Above { on, price } => (Kind::Above, Some(on), Some(price), None),
            Condition::Below { on, price } => (Kind::Below, Some(on), Some(price), None),
            Condition::Change { percent } => (Kind::Change, None, Some(percent), None),
            Condition::Anomaly { band } => (Kind::Anomaly, None, None, Some(band.percent())),
            Condition::Probability { at_least, .. } => {
                (Kind::Probability, None, Some(at_least), None)
            }
        };
        let (level, of) = match r.condition {
            Condition::Probability { of, level, .. } => (Some(level), Some(of)),
            _ => (None, None),
        };
        let (for_duration, for_bars) = match r.hold {
            Hold::Bars(n) => (None, Some(n)),
            Hold::Ms(0) => (None, None),
            Hold::Ms(ms) => (Some(format_duration(ms)), None),
        };
        RuleSpec {
            id: r.id,
            exchange: r.exchange,
            symbol: r.symbol,
            interval: r.interval,
            model: r.model,
            horizon: r.horizon,
            kind,
            on,
            threshold,
            band,
            level,
            of,
            for_duration,
            for_bars,
            hysteresis: (r.hysteresis != 0.0).then_some(r.hysteresis),
            cooldown: (r.cooldown_ms != 0).then(|| format_duration(r.cooldown_ms)),
            enabled: r.enabled,
            description: r.description,
            include_degraded: r.include_degraded,
        }
    }
}

/// Parses a duration: one or more `<n><unit>` with unit `ms`, `s`, `m`, `h` or `d`
/// (`90s`, `1h30m`), or `0`.
pub fn parse_duration(text: &str) -> Result<i64, String> {
    let t = text.trim();
    if t == "0" {
        return Ok(0);
    }
    if t.is_empty() {
        return Err("empty duration".into());
    }
    let mut total: i64 = 0;
    let mut rest = t;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            return Err(format!(
                "`{text}`: expected <number><unit>, e.g. 5m or 1h30m"
            ));
        }
        let n: i64 = rest[..digits]
            .parse()
            .map_err(|_| format!("`{text}`: number too large"))?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit = match &rest[..unit_len] {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            u => {
                return Err(format!(
                    "`{text}`: unit `{u}` must be one of ms, s, m, h, d"
                ));
            }
        };
        rest = &rest[unit_len..];
        total = n
            .checked_mul(unit)
            .and_then(|x| total.checked_add(x))
            .filter(|&x| x <= MAX_DURATION_MS)
            .ok_or_else(|| format!("`{text}`: longer than 366 days"))?;
    }
    Ok(total)
}

const MAX_DURATION_MS: i64 = 366 * 86_400_000;

/// The canonical text of a duration: `5400000` → `1h30m`.
pub fn format_duration(ms: i64) -> String {
    if ms == 0 {
        return "0s".into();
    }
    let mut out = String::new();
    let mut rest = ms;
    for (unit, len) in [
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1_000),
        ("ms", 1),
    ] {
        if rest >= len {
            out.push_str(&format!("{}{unit}", rest / len));
            rest %= len;
        }
    }
    out
}

/// The rules of one file or of the store, ids unique.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RuleSet {
    pub rules: Vec<Rule>,
}

/// A rule file: `rules:` and a list of rules.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleFile {
    #[serde(default)]
    rules: Vec<RuleSpec>,
}

/// Why a rule file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum RuleFileError {
    #[error("reading {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Invalid { path: String, source: RuleError },
}

impl RuleSet {
    /// Validates a list of rules: each rule, and ids unique (errors name `rules[i].field`).
    pub fn new(specs: Vec<RuleSpec>) -> Result<Self, RuleError> {
        let mut seen = HashSet::new();
        let mut rules = Vec::with_capacity(specs.len());
        for (i, spec) in specs.into_iter().enumerate() {
            let at = format!("rules[{i}]");
            let rule = Rule::try_from(spec).map_err(|e| e.within(&at))?;
            if !seen.insert(rule.id.clone()) {
                return Err(RuleError::new(
                    &format!("{at}.id"),
                    format!("`{}` is used twice", rule.id),
                ));
            }
            rules.push(rule);
        }
        Ok(Self { rules })
    }

    /// Parses a YAML document `rules: [...]`.
    pub fn from_yaml_str(text: &str) -> Result<Self, RuleError> {
        let de = serde_yaml::Deserializer::from_str(text);
        let file: RuleFile = serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            RuleError::new(
                if path == "." { "rules" } else { &path },
                e.inner().to_string(),
            )
        })?;
        Self::new(file.rules)
    }

    /// Reads and validates a YAML rule file (see `monitoring/alerts.example.yaml`).
    pub fn from_yaml_file(path: impl AsRef<Path>) -> Result<Self, RuleFileError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| RuleFileError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_yaml_str(&text).map_err(|source| RuleFileError::Invalid {
            path: path.display().to_string(),
            source,
        })
    }
}
