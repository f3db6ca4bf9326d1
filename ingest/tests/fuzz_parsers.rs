//! Property tests of every connector's parsers: arbitrary bytes and strings, and mutated
//! real-looking frames (the hand-written fixtures in `ingest/src/exchanges/*/fixtures/`, the
//! frames and REST pages each protocol's simulator writes), fed to `decode` and
//! `backfill_decode`. Nothing may panic, and results must be consistent: `Trades(n)` pushed
//! exactly `n` ticks, other outcomes pushed none, and every tick pushed has a positive price
//! and size and the connector's exchange id.
//!
//! Cases per property: 1,000, or `PROPTEST_CASES`.
#![allow(clippy::unwrap_used)]

use std::sync::OnceLock;

use proptest::prelude::*;
use tickcast_core::domain::Tick;
use tickcast_ingest::connectors::{BackfillQuery, Connector, Decoded};
use tickcast_ingest::exchanges::{self, EXCHANGES, NAMES};
use tickcast_ingest::simulator::{SimConfig, SimTrade, Simulator};

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1000)
}

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: cases(),
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

fn all_connectors() -> &'static [Box<dyn Connector>] {
    static C: OnceLock<Vec<Box<dyn Connector>>> = OnceLock::new();
    C.get_or_init(|| {
        NAMES
            .iter()
            .map(|n| exchanges::connector(n).unwrap())
            .collect()
    })
}

fn sim_trades() -> Vec<SimTrade> {
    Simulator::new(&SimConfig::default_symbols(7, 1_700_000_000_000))
        .take(20)
        .collect()
}

/// Valid-looking frames: our fixtures, plus each simulator's trade frames and REST pages.
fn seeds() -> &'static [String] {
    static S: OnceLock<Vec<String>> = OnceLock::new();
    S.get_or_init(|| {
        let mut out = Vec::new();
        // Every exchange folder's `fixtures/`, all files in the order of their names.
        let mut dirs: Vec<_> = EXCHANGES
            .iter()
            .map(|e| {
                std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                    .join("src/exchanges")
                    .join(e.folder)
                    .join("fixtures")
            })
            .collect();
        dirs.sort();
        dirs.dedup();
        let mut files: Vec<_> = dirs
            .iter()
            .flat_map(|dir| {
                std::fs::read_dir(dir)
                    .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
                    .map(|e| e.unwrap().path())
            })
            .collect();
        files.sort_by(|a, b| a.file_name().cmp(&b.file_name()));
        for f in files {
            let text = std::fs::read_to_string(&f).unwrap();
            out.extend(
                text.lines()
                    .filter(|l| !l.trim().is_empty())
                    .map(str::to_string),
            );
        }
        let trades = sim_trades();
        for name in NAMES {
            let (Some(sim), Some(c)) = (exchanges::sim(name), exchanges::connector(name)) else {
                continue;
            };
            for (i, t) in trades.iter().enumerate().take(6) {
                let path = if i % 2 == 0 { "/ws" } else { "/stream" };
                let f = sim.trade_frame(t, t.ts_ms + 1, path);
                if !f.is_empty() {
                    out.push(f);
                }
            }
            if let Some(p) = c.backfill_path(&query())
                && let Some(reply) = sim.rest(&p, &trades)
            {
                out.push(reply.body);
            }
        }
        assert!(out.len() >= 40, "seed frames: {}", out.len());
        out
    })
}

fn query() -> BackfillQuery<'static> {
    BackfillQuery {
        symbol: "BTC-USDT",
        from_id: 1,
        to_id: Some(100),
        after_ms: 1_700_000_000_000,
        cursor: None,
    }
}

fn check_ticks(c: &dyn Connector, input: &str, new: &[Tick]) -> Result<(), TestCaseError> {
    for t in new {
        prop_assert!(
            t.price > rust_decimal::Decimal::ZERO && t.size > rust_decimal::Decimal::ZERO,
            "{}: non-positive tick {t:?} from {input:?}",
            c.info().name
        );
        prop_assert_eq!(t.exchange.as_str(), c.info().exchange, "from {:?}", input);
    }
    Ok(())
}

/// Feeds `input` to every connector's `decode` and `backfill_decode`.
fn feed_all(input: &str) -> Result<(), TestCaseError> {
    for c in all_connectors() {
        let c = c.as_ref();
        // Start with something in `out`: connectors append, never clear.
        let mut out = vec![];
        let before = out.len();
        match c.decode(input, 5, &mut out) {
            Ok(Decoded::Trades(n)) => prop_assert_eq!(
                out.len() - before,
                n,
                "{}: Trades({}) from {:?}",
                c.info().name,
                n,
                input
            ),
            Ok(other) => prop_assert_eq!(
                out.len(),
                before,
                "{}: {:?} pushed ticks from {:?}",
                c.info().name,
                other,
                input
            ),
            Err(_) => {}
        }
        check_ticks(c, input, &out[before..])?;
        let mut out = Vec::new();
        if c.backfill_decode(&query(), input, 5, &mut out).is_ok() {
            check_ticks(c, input, &out)?;
        }
    }
    Ok(())
}

/// One way to damage a frame.
#[derive(Debug, Clone)]
enum Mutation {
    FlipByte {
        at: usize,
        bit: u8,
    },
    Truncate {
        at: usize,
    },
    Insert {
        at: usize,
        bytes: Vec<u8>,
    },
    /// Remove the `n`-th `"key":value` member of any object.
    DeleteField {
        n: usize,
    },
    /// Quote the `n`-th number / unquote the `n`-th numeric-looking string.
    SwapNumberString {
        n: usize,
    },
    /// Replace the `n`-th value with another JSON value.
    ReplaceValue {
        n: usize,
        with: &'static str,
    },
    /// Duplicate a slice of the frame at another place.
    Splice {
        from: usize,
        len: usize,
        at: usize,
    },
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), 0u8..8).prop_map(|(at, bit)| Mutation::FlipByte { at, bit }),
        any::<usize>().prop_map(|at| Mutation::Truncate { at }),
        (
            any::<usize>(),
            prop::collection::vec(
                prop_oneof![
                    any::<u8>(),
                    prop::sample::select(b"{}[]\",:-.0123456789eE \\".to_vec())
                ],
                1..8
            )
        )
            .prop_map(|(at, bytes)| Mutation::Insert { at, bytes }),
        any::<usize>().prop_map(|n| Mutation::DeleteField { n }),
        any::<usize>().prop_map(|n| Mutation::SwapNumberString { n }),
        (
            any::<usize>(),
            prop::sample::select(vec![
                "null",
                "true",
                "0",
                "-1",
                "1e308",
                "\"\"",
                "\"-0.0\"",
                "\"NaN\"",
                "[]",
                "{}",
                "18446744073709551616",
                "\"99999999999999999999999999999999.9\"",
                "[{}]"
            ])
        )
            .prop_map(|(n, with)| Mutation::ReplaceValue { n, with }),
        (any::<usize>(), 1usize..40, any::<usize>()).prop_map(|(from, len, at)| Mutation::Splice {
            from,
            len,
            at
        }),
    ]
}

/// Byte ranges of JSON tokens: (start, end, is_string) for strings and numbers.
fn scalars(b: &[u8]) -> Vec<(usize, usize, bool)> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'"' => {
                let start = i;
                i += 1;
                while i < b.len() && b[i] != b'"' {
                    if b[i] == b'\\' {
                        i += 1;
                    }
                    i += 1;
                }
                out.push((start, (i + 1).min(b.len()), true));
                i += 1;
            }
            b'-' | b'0'..=b'9' => {
                let start = i;
                while i < b.len() && matches!(b[i], b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9')
                {
                    i += 1;
                }
                out.push((start, i, false));
            }
            _ => i += 1,
        }
    }
    out
}

fn apply(frame: &str, m: &Mutation) -> String {
    let mut b = frame.as_bytes().to_vec();
    let pick = |n: usize, len: usize| if len == 0 { 0 } else { n % len };
    match m {
        Mutation::FlipByte { at, bit } => {
            if !b.is_empty() {
                let i = pick(*at, b.len());
                b[i] ^= 1 << bit;
            }
        }
        Mutation::Truncate { at } => b.truncate(pick(*at, b.len() + 1)),
        Mutation::Insert { at, bytes } => {
            let i = pick(*at, b.len() + 1);
            b.splice(i..i, bytes.iter().copied());
        }
        Mutation::DeleteField { n } => {
            // A member is a string followed by `:`; delete through the end of its value
            // (the next `,` or closing bracket at the same depth) and one separating comma.
            let keys: Vec<(usize, usize, bool)> = scalars(&b)
                .into_iter()
                .filter(|&(_, end, s)| s && b.get(end) == Some(&b':'))
                .collect();
            if !keys.is_empty() {
                let (start, end, _) = keys[pick(*n, keys.len())];
                let mut depth = 0i32;
                let mut j = end + 1;
                let mut in_str = false;
                while j < b.len() {
                    let c = b[j];
                    if in_str {
                        if c == b'\\' {
                            j += 1;
                        } else if c == b'"' {
                            in_str = false;
                        }
                    } else {
                        match c {
                            b'"' => in_str = true,
                            b'{' | b'[' => depth += 1,
                            b'}' | b']' if depth == 0 => break,
                            b'}' | b']' => depth -= 1,
                            b',' if depth == 0 => {
                                j += 1;
                                break;
                            }
                            _ => {}
                        }
                    }
                    j += 1;
                }
                b.drain(start..j.min(b.len()));
            }
        }
        Mutation::SwapNumberString { n } => {
            let s = scalars(&b);
            let candidates: Vec<_> = s
                .into_iter()
                .filter(|&(start, end, is_str)| {
                    !is_str
                        || (end - start > 2
                            && b[start + 1..end - 1]
                                .iter()
                                .all(|c| c.is_ascii_digit() || *c == b'.' || *c == b'-'))
                })
                .collect();
            if !candidates.is_empty() {
                let (start, end, is_str) = candidates[pick(*n, candidates.len())];
                if is_str {
                    b.remove(end - 1);
                    b.remove(start);
                } else {
                    b.insert(end, b'"');
                    b.insert(start, b'"');
                }
            }
        }
        Mutation::ReplaceValue { n, with } => {
            let s = scalars(&b);
            if !s.is_empty() {
                let (start, end, _) = s[pick(*n, s.len())];
                b.splice(start..end, with.bytes());
            }
        }
        Mutation::Splice { from, len, at } => {
            if !b.is_empty() {
                let f = pick(*from, b.len());
                let piece = b[f..(f + len).min(b.len())].to_vec();
                let i = pick(*at, b.len() + 1);
                b.splice(i..i, piece);
            }
        }
    }
    String::from_utf8_lossy(&b).into_owned()
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        feed_all(&String::from_utf8_lossy(&bytes))?;
    }

    #[test]
    fn arbitrary_strings_never_panic(s in any::<String>()) {
        feed_all(&s)?;
    }

    #[test]
    fn json_shaped_noise_never_panics(
        parts in prop::collection::vec(prop::sample::select(vec![
            "{", "}", "[", "]", ",", ":", "\"e\"", "\"trade\"", "\"data\"", "\"p\"", "\"px\"",
            "\"price\"", "\"1.5\"", "1.5", "-0", "null", "true", "\"type\"", "\"match\"",
            "\"channel\"", "\"trades\"", "\"event\"", "\"stream\"", "\"btcusdt@trade\"",
        ]), 0..40)
    ) {
        feed_all(&parts.concat())?;
    }

    #[test]
    fn mutated_frames_never_panic(
        seed in any::<prop::sample::Index>(),
        mutations in prop::collection::vec(mutation(), 1..4),
    ) {
        let seeds = seeds();
        let mut frame = seed.get(seeds).clone();
        for m in &mutations {
            frame = apply(&frame, m);
        }
        feed_all(&frame)?;
    }
}

#[test]
fn seeds_decode_cleanly_where_the_connector_exists() {
    // The unmutated seeds exercise the happy paths (and catch a seed file gone wrong):
    // every seed is at least JSON (or OKX's bare `pong`).
    for s in seeds() {
        assert!(
            s == "pong" || serde_json::from_str::<serde_json::Value>(s).is_ok(),
            "{s}"
        );
        feed_all(s).unwrap();
    }
}

#[test]
fn mutations_do_what_they_say() {
    let f = r#"{"a":"1.5","b":[1,{"c":2}],"d":"x"}"#;
    assert_eq!(
        apply(f, &Mutation::DeleteField { n: 0 }),
        r#"{"b":[1,{"c":2}],"d":"x"}"#
    );
    assert_eq!(
        apply(f, &Mutation::DeleteField { n: 3 }),
        r#"{"a":"1.5","b":[1,{"c":2}],}"#
    );
    assert_eq!(
        apply(f, &Mutation::SwapNumberString { n: 0 }),
        r#"{"a":1.5,"b":[1,{"c":2}],"d":"x"}"#
    );
    assert_eq!(
        apply(f, &Mutation::SwapNumberString { n: 1 }),
        r#"{"a":"1.5","b":["1",{"c":2}],"d":"x"}"#
    );
    assert_eq!(apply(f, &Mutation::Truncate { at: 5 }), r#"{"a":"#);
}
