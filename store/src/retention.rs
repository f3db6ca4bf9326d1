//! How long stored rows are kept, and the time partitions Postgres keeps them in.
//!
//! **Partitions (Postgres).** `forecasts` is range-partitioned on `base_ms` by day. `candles` is
//! list-partitioned on `interval`, and each interval's table range-partitioned on `open_ms`:
//! by day below one minute, by 30 days below one hour, by 365 days above. Spans start at
//! multiples of their length from the Unix epoch; a partition is named after the UTC date its
//! span starts (`forecast_rows_p20261207`, `candles_1m_p20261120`). The sink makes the partitions a
//! batch needs, and the next span's, before it writes.
//!
//! **Retention.** A table's rows are kept for its retention, counted back from the data clock:
//! the newest bar time the sink has written, but never more than a day ahead of the wall clock
//! (a stray future-dated row must not age everything out). Postgres drops whole partitions
//! that end at or before the cutoff, never deleting row by row; SQLite deletes in batches.
//! `forecasts_latest`, the accuracy scores and every other table are not touched.

use std::collections::BTreeMap;

use tickcast_core::interval::Interval;

/// What a retention pass removed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RetentionReport {
    /// Postgres partitions dropped.
    pub dropped: Vec<String>,
    /// SQLite rows deleted.
    pub deleted: u64,
}

const DAY_MS: i64 = 86_400_000;

/// Retention per table and candle interval, in days; `None` keeps everything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retention {
    pub forecasts_days: Option<u32>,
    /// Per candle interval label (`1s`, `1m`, …), overriding [`default_candle_days`].
    pub candles_days: BTreeMap<String, Option<u32>>,
}

impl Default for Retention {
    /// Forecasts 30 days; candles per [`default_candle_days`].
    fn default() -> Self {
        Self {
            forecasts_days: Some(30),
            candles_days: BTreeMap::new(),
        }
    }
}

/// Candles of intervals below one minute are kept 7 days, below one hour 365 days, longer ones
/// for good.
pub fn default_candle_days(interval_ms: i64) -> Option<u32> {
    if interval_ms < 60_000 {
        Some(7)
    } else if interval_ms < 3_600_000 {
        Some(365)
    } else {
        None
    }
}

impl Retention {
    /// Nothing is ever removed.
    pub fn keep_all() -> Self {
        Self {
            forecasts_days: None,
            candles_days: BTreeMap::new(),
        }
    }

    /// Days the candles of `interval` are kept (`None`: for good).
    pub fn candle_days(&self, interval: &str) -> Option<u32> {
        if let Some(d) = self.candles_days.get(interval) {
            return *d;
        }
        Interval::parse(interval)
            .ok()
            .and_then(|i| default_candle_days(i.ms()))
    }

    /// Parses `forecasts=30d,1s=7d,1m=365d,1h=keep`: `forecasts` or a candle interval, then a
    /// number of days (`d` optional) or `keep`.
    pub fn parse(spec: &str) -> Result<Self, String> {
        let mut r = Self::default();
        for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (what, days) = part
                .split_once('=')
                .ok_or_else(|| format!("`{part}`: expected NAME=DAYS, e.g. forecasts=30d"))?;
            let days = match days.trim() {
                "keep" => None,
                d => {
                    let n: u32 = d.trim_end_matches('d').parse().map_err(|_| {
                        format!("`{part}`: `{d}` is not a number of days (or `keep`)")
                    })?;
                    if n == 0 {
                        return Err(format!(
                            "`{part}`: 0 days would keep nothing; use `keep` to keep everything"
                        ));
                    }
                    Some(n)
                }
            };
            match what.trim() {
                "forecasts" => r.forecasts_days = days,
                iv => {
                    Interval::parse(iv).map_err(|e| {
                        format!(
                            "`{part}`: `{iv}` is neither `forecasts` nor a candle interval ({e})"
                        )
                    })?;
                    r.candles_days.insert(iv.to_string(), days);
                }
            }
        }
        Ok(r)
    }
}

/// The data clock retention counts back from: the newest bar time written, at most a day past
/// the wall clock.
pub fn data_clock(newest_ms: i64, wall_ms: i64) -> i64 {
    newest_ms.min(wall_ms.saturating_add(DAY_MS))
}

/// Rows with a time below this are past retention (`None`: keep).
pub fn cutoff(clock_ms: i64, days: Option<u32>) -> Option<i64> {
    days.map(|d| clock_ms.saturating_sub(i64::from(d) * DAY_MS))
}

/// The partition span of `forecasts`.
pub const FORECAST_SPAN_MS: i64 = DAY_MS;

/// The partition span of one candle interval's table.
pub fn candle_span_ms(interval_ms: i64) -> i64 {
    if interval_ms < 60_000 {
        DAY_MS
    } else if interval_ms < 3_600_000 {
        30 * DAY_MS
    } else {
        365 * DAY_MS
    }
}

/// The start of the span holding `ms`.
pub fn span_start(ms: i64, span: i64) -> i64 {
    ms.div_euclid(span) * span
}

/// `YYYYMMDD` of the UTC day holding `ms`.
pub fn utc_date(ms: i64) -> String {
    // Howard Hinnant's civil-from-days.
    let z = ms.div_euclid(DAY_MS) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}{m:02}{d:02}")
}

/// The table name part of a candle interval (`1m` → `1m`; anything but ASCII letters and digits
/// becomes `_`; case is kept, the names are quoted).
pub fn interval_slug(interval: &str) -> String {
    interval
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_and_spans() {
        assert_eq!(utc_date(0), "19700101");
        assert_eq!(utc_date(1_796_601_600_000), "20261207");
        assert_eq!(utc_date(1_796_601_600_000 - 1), "20261206");
        assert_eq!(utc_date(951_782_400_000), "20000229");
        assert_eq!(span_start(1_796_601_600_123, DAY_MS), 1_796_601_600_000);
        assert_eq!(span_start(-1, DAY_MS), -DAY_MS);
        assert_eq!(candle_span_ms(1_000), DAY_MS);
        assert_eq!(candle_span_ms(60_000), 30 * DAY_MS);
        assert_eq!(candle_span_ms(3_600_000), 365 * DAY_MS);
        assert_eq!(interval_slug("1m"), "1m");
        assert_eq!(interval_slug("4H"), "4H");
    }

    #[test]
    fn retention_defaults_and_parsing() {
        let r = Retention::default();
        assert_eq!(r.forecasts_days, Some(30));
        assert_eq!(r.candle_days("1s"), Some(7));
        assert_eq!(r.candle_days("15s"), Some(7));
        assert_eq!(r.candle_days("1m"), Some(365));
        assert_eq!(r.candle_days("5m"), Some(365));
        assert_eq!(r.candle_days("1h"), None);
        assert_eq!(r.candle_days("1d"), None);
        let r = Retention::parse("forecasts=7d, 1m=keep, 1h=90").unwrap();
        assert_eq!(r.forecasts_days, Some(7));
        assert_eq!(r.candle_days("1m"), None);
        assert_eq!(r.candle_days("1h"), Some(90));
        assert_eq!(r.candle_days("1s"), Some(7));
        assert_eq!(
            Retention::parse("forecasts=keep").unwrap().forecasts_days,
            None
        );
        for bad in ["forecasts", "forecasts=0d", "forecasts=x", "2q=3d"] {
            assert!(Retention::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(data_clock(5 * DAY_MS, DAY_MS), 2 * DAY_MS);
        assert_eq!(data_clock(DAY_MS, 5 * DAY_MS), DAY_MS);
        assert_eq!(cutoff(10 * DAY_MS, Some(3)), Some(7 * DAY_MS));
        assert_eq!(cutoff(10 * DAY_MS, None), None);
    }
}
