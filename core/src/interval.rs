//! Candle intervals: `1s`, `15s`, `1m`, `5m`, `1h`, `1d`, … and window arithmetic.

use std::fmt;

/// A fixed-length candle interval, stored in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Interval {
    ms: i64,
}

impl Interval {
    /// Parses `<n><unit>` with unit `ms`, `s`, `m`, `h` or `d`.
    pub fn parse(s: &str) -> Result<Self, String> {
        let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        let (num, unit) = s.split_at(split);
        let n: i64 = num
            .parse()
            .map_err(|_| format!("`{s}`: expected <number><unit>, e.g. 1m"))?;
        let unit_ms = match unit {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            _ => return Err(format!("`{s}`: unit must be one of ms, s, m, h, d")),
        };
        if n <= 0 || n > 1_000_000 {
            return Err(format!("`{s}`: length must be between 1 and 1000000"));
        }
        Ok(Self { ms: n * unit_ms })
    }

    pub fn from_ms(ms: i64) -> Self {
        Self { ms: ms.max(1) }
    }

    pub fn ms(self) -> i64 {
        self.ms
    }

    /// Start of the window that contains `ts_ms`.
    pub fn window_start(self, ts_ms: i64) -> i64 {
        ts_ms.div_euclid(self.ms) * self.ms
    }
}

impl fmt::Display for Interval {
    /// The shortest label: 60000 ms → `1m`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (unit, len) in [
            ("d", 86_400_000),
            ("h", 3_600_000),
            ("m", 60_000),
            ("s", 1_000),
        ] {
            if self.ms % len == 0 {
                return write!(f, "{}{unit}", self.ms / len);
            }
        }
        write!(f, "{}ms", self.ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_labels() {
        for (label, ms) in [
            ("1s", 1_000),
            ("1m", 60_000),
            ("90s", 90_000),
            ("4h", 14_400_000),
        ] {
            let i = Interval::parse(label).expect(label);
            assert_eq!(i.ms(), ms);
        }
        assert_eq!(
            Interval::parse("90s").map(|i| i.to_string()),
            Ok("90s".to_string())
        );
        assert_eq!(
            Interval::parse("120s").map(|i| i.to_string()),
            Ok("2m".to_string())
        );
        assert_eq!(
            Interval::parse("250ms").map(|i| i.to_string()),
            Ok("250ms".to_string())
        );
    }

    #[test]
    fn rejects_bad_labels() {
        for bad in ["", "m", "0m", "1w", "-1m", "1.5m"] {
            assert!(Interval::parse(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn windows_floor_including_negative_times() {
        let m = Interval::parse("1m").expect("1m");
        assert_eq!(m.window_start(119_999), 60_000);
        assert_eq!(m.window_start(120_000), 120_000);
        assert_eq!(m.window_start(-1), -60_000);
    }
}
