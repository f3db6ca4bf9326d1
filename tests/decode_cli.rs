//! `tickcast decode` end to end: the real binary on the hand-written frames in each exchange's
//! `ingest/src/exchanges/<exchange>/fixtures/` (`<name>.jsonl` per connector name, written
//! from the exchange's documented message formats, plus `<name>.bad.jsonl` with one
//! undecodable line between two good ones).
//! Asserts the exact JSON lines of the ticks, the summary numbers and the exit status.
#![allow(clippy::unwrap_used)]

use std::io::Write as _;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use tickcast_ingest::exchanges::{self, NAMES};

const RECEIVED_MS: i64 = 7;

/// `file` of the fixtures of the exchange that connector `exchange` belongs to.
fn fixture(exchange: &str, file: &str) -> PathBuf {
    let folder = exchanges::find(exchange)
        .unwrap_or_else(|| panic!("unknown connector `{exchange}`"))
        .folder;
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("ingest/src/exchanges")
        .join(folder)
        .join("fixtures")
        .join(file)
}

fn tickcast(args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_tickcast"))
        .args(args)
        .env("RUST_LOG", "off")
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn tickcast");
    if let Some(bytes) = stdin {
        child.stdin.take().unwrap().write_all(bytes).unwrap();
    }
    child.wait_with_output().unwrap()
}

fn decode_file(exchange: &str, file: &str) -> Output {
    let path = fixture(exchange, file);
    tickcast(
        &[
            "decode",
            "--exchange",
            exchange,
            "--received-ms",
            &RECEIVED_MS.to_string(),
            // The fixtures' times are real ones, far from RECEIVED_MS.
            "--max-clock-skew-ms",
            "off",
            "--max-tick-age-ms",
            "off",
            path.to_str().unwrap(),
        ],
        None,
    )
}

/// The exact JSON line of one tick (field order of `Tick`).
fn tick(ex: &str, sym: &str, id: &str, price: &str, size: &str, side: &str, ts: i64) -> String {
    format!(
        r#"{{"v":1,"exchange":"{ex}","symbol":"{sym}","trade_id":"{id}","price":"{price}","size":"{size}","side":"{side}","ts_ms":{ts},"ingested_ms":{RECEIVED_MS}}}"#
    )
}

/// The numbers of the stderr summary.
#[derive(Debug, PartialEq, Eq)]
struct Counts {
    frames: u64,
    ticks: u64,
    acks: u64,
    reconnects: u64,
    skipped: u64,
    errors: u64,
}

fn counts(stderr: &str) -> Counts {
    let get = |key: &str| -> u64 {
        stderr
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{key}: ")))
            .unwrap_or_else(|| panic!("no `{key}:` line in summary:\n{stderr}"))
            .trim()
            .parse()
            .unwrap()
    };
    Counts {
        frames: get("frames"),
        ticks: get("ticks"),
        acks: get("acks"),
        reconnects: get("reconnects"),
        skipped: get("skipped"),
        errors: get("errors"),
    }
}

struct Case {
    name: &'static str,
    good: Vec<String>,
    good_counts: Counts,
    /// Ticks of `<name>.bad.jsonl` (lines 1 and 3; line 2 is the bad one).
    bad: Vec<String>,
}

fn c(frames: u64, ticks: u64, acks: u64, reconnects: u64, skipped: u64) -> Counts {
    Counts {
        frames,
        ticks,
        acks,
        reconnects,
        skipped,
        errors: 0,
    }
}

fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "binance",
            good: vec![
                tick(
                    "binance",
                    "BTC-USDT",
                    "3712047611",
                    "61234.10000000",
                    "0.00120000",
                    "sell",
                    1723075200122,
                ),
                tick(
                    "binance",
                    "ETH-BTC",
                    "512000001",
                    "0.04312000",
                    "1.25000000",
                    "buy",
                    1723075200199,
                ),
                tick(
                    "binance",
                    "PEPE-FDUSD",
                    "77",
                    "0.0000123456789",
                    "123456789012.5",
                    "buy",
                    1723075200498,
                ),
            ],
            good_counts: c(7, 3, 1, 0, 3),
            bad: vec![
                tick(
                    "binance",
                    "BTC-USDT",
                    "3712047612",
                    "61234.11000000",
                    "0.50000000",
                    "buy",
                    1723075200999,
                ),
                tick(
                    "binance",
                    "BTC-USDT",
                    "3712047614",
                    "61234.13000000",
                    "0.25000000",
                    "sell",
                    1723075201001,
                ),
            ],
        },
        Case {
            name: "binance-agg",
            good: vec![
                tick(
                    "binance",
                    "BNB-BTC",
                    "12345",
                    "0.00100000",
                    "100",
                    "sell",
                    123456785,
                ),
                tick(
                    "binance", "ETH-USDT", "900001", "3012.5", "0.0400", "buy", 123456799,
                ),
            ],
            good_counts: c(5, 2, 1, 0, 2),
            bad: vec![
                tick(
                    "binance", "ETH-USDT", "900002", "3012.6", "0.5", "sell", 123456899,
                ),
                tick(
                    "binance", "ETH-USDT", "900004", "3012.8", "1.5", "buy", 123456901,
                ),
            ],
        },
        Case {
            name: "coinbase",
            // Advanced Trade `market_trades`: `side` is the maker's (see
            // ingest/src/exchanges/coinbase/connector.rs), the tick carries the taker's; trade
            // ids are the integer the text spells (`000000011` → `11`), the same as the Exchange
            // feed's numeric ids.
            good: vec![
                tick(
                    "coinbase",
                    "ETH-USD",
                    "11",
                    "1260.01",
                    "0.30000000",
                    "sell",
                    1675973975396,
                ),
                tick(
                    "coinbase",
                    "ETH-USD",
                    "12",
                    "1260.00",
                    "1.5",
                    "buy",
                    1675973975396,
                ),
                tick(
                    "coinbase",
                    "BTC-USD",
                    "550000001",
                    "26500.10",
                    "0.00012",
                    "buy",
                    1695628178100,
                ),
            ],
            good_counts: c(4, 3, 1, 0, 1),
            bad: vec![
                tick(
                    "coinbase",
                    "BTC-USD",
                    "550000002",
                    "26500.11",
                    "0.1",
                    "sell",
                    1695628178100,
                ),
                tick(
                    "coinbase",
                    "BTC-USD",
                    "550000004",
                    "26500.13",
                    "0.2",
                    "buy",
                    1695628178100,
                ),
            ],
        },
        Case {
            name: "coinbase-exchange",
            // `matches`: `side` is the maker's, the tick carries the taker's (inverted).
            good: vec![
                tick(
                    "coinbase",
                    "BTC-USD",
                    "5510001",
                    "60211.01",
                    "0.01000000",
                    "sell",
                    1618677810244,
                ),
                tick(
                    "coinbase",
                    "BTC-USD",
                    "5510002",
                    "60212.50",
                    "0.25",
                    "buy",
                    1618677817089,
                ),
                tick(
                    "coinbase",
                    "ETH-BTC",
                    "880001",
                    "0.03100",
                    "2.5",
                    "sell",
                    1695628178100,
                ),
            ],
            good_counts: c(6, 3, 1, 0, 2),
            bad: vec![
                tick(
                    "coinbase",
                    "BTC-USD",
                    "5510003",
                    "60213",
                    "0.1",
                    "sell",
                    1618677818000,
                ),
                tick(
                    "coinbase",
                    "BTC-USD",
                    "5510005",
                    "60214",
                    "0.2",
                    "buy",
                    1618677819500,
                ),
            ],
        },
        Case {
            name: "kraken",
            good: vec![
                tick(
                    "kraken",
                    "BTC-USD",
                    "71234567",
                    "26500.1",
                    "0.00120000",
                    "buy",
                    1695628177708,
                ),
                tick(
                    "kraken",
                    "BTC-USD",
                    "71234568",
                    "26500.0",
                    "2",
                    "sell",
                    1695628178100,
                ),
            ],
            good_counts: c(4, 2, 1, 0, 2),
            bad: vec![
                tick(
                    "kraken",
                    "ETH-USD",
                    "4000001",
                    "1600.5",
                    "0.5",
                    "buy",
                    1695628177708,
                ),
                tick(
                    "kraken",
                    "ETH-USD",
                    "4000003",
                    "1600.25",
                    "1.25",
                    "sell",
                    1695628178100,
                ),
            ],
        },
        Case {
            name: "bybit",
            good: vec![
                tick(
                    "bybit",
                    "BTC-USDT",
                    "20f43950-d8dd-5b31-9112-a178eb6023af",
                    "16578.50",
                    "0.001",
                    "buy",
                    1672304486865,
                ),
                tick(
                    "bybit",
                    "ETH-USDT",
                    "2290000000012345678",
                    "1201.10",
                    "0.25000",
                    "sell",
                    1672304486990,
                ),
                tick(
                    "bybit",
                    "ETH-USDT",
                    "2290000000012345679",
                    "1201.05",
                    "3",
                    "sell",
                    1672304486991,
                ),
            ],
            good_counts: c(4, 3, 1, 0, 1),
            bad: vec![
                tick(
                    "bybit",
                    "BTC-USDT",
                    "2290000000099990001",
                    "16579.00",
                    "0.002",
                    "sell",
                    1672304489999,
                ),
                tick(
                    "bybit",
                    "BTC-USDT",
                    "2290000000099990003",
                    "16579.50",
                    "0.003",
                    "buy",
                    1672304490001,
                ),
            ],
        },
        Case {
            name: "okx",
            good: vec![
                tick(
                    "okx",
                    "BTC-USDT",
                    "130639474",
                    "42219.9",
                    "0.12060306",
                    "buy",
                    1630048897897,
                ),
                tick(
                    "okx",
                    "ETH-USDT",
                    "9100001",
                    "3201.00",
                    "0.5",
                    "sell",
                    1630048898001,
                ),
                tick(
                    "okx",
                    "ETH-USDT",
                    "9100002",
                    "3200.99",
                    "1.000",
                    "sell",
                    1630048898001,
                ),
            ],
            good_counts: c(4, 3, 1, 0, 1),
            bad: vec![
                tick(
                    "okx",
                    "BTC-USDT",
                    "130639475",
                    "42220.0",
                    "0.1",
                    "sell",
                    1630048899000,
                ),
                tick(
                    "okx",
                    "BTC-USDT",
                    "130639476",
                    "42220.1",
                    "0.2",
                    "buy",
                    1630048899001,
                ),
            ],
        },
        Case {
            name: "bitstamp",
            good: vec![
                tick(
                    "bitstamp",
                    "BTC-USD",
                    "320000001",
                    "61000.50",
                    "0.01500000",
                    "buy",
                    1709294400123,
                ),
                tick(
                    "bitstamp",
                    "ETH-USD",
                    "320000002",
                    "3400",
                    "2.00000000",
                    "sell",
                    1709294401000,
                ),
            ],
            good_counts: c(5, 2, 1, 1, 1),
            bad: vec![
                tick(
                    "bitstamp",
                    "BTC-USD",
                    "320000003",
                    "61001",
                    "0.10000000",
                    "sell",
                    1709294402000,
                ),
                tick(
                    "bitstamp",
                    "BTC-USD",
                    "320000005",
                    "61002",
                    "0.20000000",
                    "buy",
                    1709294403000,
                ),
            ],
        },
    ]
}

fn check_good(case: &Case) -> Result<(), String> {
    let out = decode_file(case.name, &format!("{}.jsonl", case.name));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = stdout.lines().collect();
    let want: Vec<&str> = case.good.iter().map(String::as_str).collect();
    if lines != want {
        return Err(format!(
            "{}: stdout\n{stdout}\nwanted\n{}\nstderr:\n{stderr}",
            case.name,
            want.join("\n")
        ));
    }
    let got = counts(&stderr);
    if got != case.good_counts {
        return Err(format!(
            "{}: summary {got:?}, wanted {:?}\n{stderr}",
            case.name, case.good_counts
        ));
    }
    if out.status.code() != Some(0) {
        return Err(format!("{}: exit {:?}\n{stderr}", case.name, out.status));
    }
    Ok(())
}

fn check_bad(case: &Case) -> Result<(), String> {
    let out = decode_file(case.name, &format!("{}.bad.jsonl", case.name));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = stdout.lines().collect();
    let want: Vec<&str> = case.bad.iter().map(String::as_str).collect();
    if lines != want {
        return Err(format!(
            "{} (bad): stdout\n{stdout}\nwanted\n{}\nstderr:\n{stderr}",
            case.name,
            want.join("\n")
        ));
    }
    let want_counts = Counts {
        frames: 3,
        ticks: 2,
        acks: 0,
        reconnects: 0,
        skipped: 0,
        errors: 1,
    };
    let got = counts(&stderr);
    if got != want_counts {
        return Err(format!(
            "{} (bad): summary {got:?}, wanted {want_counts:?}\n{stderr}",
            case.name
        ));
    }
    if !stderr
        .lines()
        .any(|l| l.trim_start().starts_with("line 2: "))
    {
        return Err(format!(
            "{} (bad): the error is not reported at line 2\n{stderr}",
            case.name
        ));
    }
    if out.status.code() != Some(1) {
        return Err(format!(
            "{} (bad): exit {:?}, wanted 1\n{stderr}",
            case.name, out.status
        ));
    }
    Ok(())
}

/// Every connector, so that one failure does not hide the others: the failures are listed.
#[test]
fn every_connector_decodes_its_fixture_exactly() {
    let cases = cases();
    assert_eq!(
        cases.iter().map(|c| c.name).collect::<Vec<_>>(),
        NAMES,
        "one case per connector"
    );
    let failures: Vec<String> = cases
        .iter()
        .flat_map(|c| [check_good(c).err(), check_bad(c).err()])
        .flatten()
        .collect();
    assert!(
        failures.is_empty(),
        "{} failure(s):\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}

#[test]
fn binance_summary_lists_skips_by_reason() {
    let out = decode_file("binance", "binance.jsonl");
    let stderr = String::from_utf8_lossy(&out.stderr);
    for line in [
        "skipped: 3",
        "  1  aggTrade event (this connector reads trade)",
        "  1  not a trade event",
        "  1  not a trade stream",
        "errors: 0",
    ] {
        assert!(stderr.lines().any(|l| l == line), "`{line}` in\n{stderr}");
    }
    let bad = decode_file("binance", "binance.bad.jsonl");
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(
        stderr
            .lines()
            .any(|l| l
                == "  line 2: trade frame field `p`: `61,234.12` is not a plain decimal number"),
        "{stderr}"
    );
}

#[test]
fn stdin_is_read_when_the_file_is_absent_or_dash() {
    let frames = std::fs::read(fixture("binance", "binance.jsonl")).unwrap();
    let from_file = decode_file("binance", "binance.jsonl");
    for args in [
        vec![
            "decode",
            "--exchange",
            "binance",
            "--received-ms",
            "7",
            "--max-clock-skew-ms",
            "off",
            "--max-tick-age-ms",
            "off",
        ],
        vec![
            "decode",
            "--exchange",
            "binance",
            "--received-ms",
            "7",
            "--max-clock-skew-ms",
            "off",
            "--max-tick-age-ms",
            "off",
            "-",
        ],
    ] {
        let out = tickcast(&args, Some(&frames));
        assert_eq!(out.status.code(), Some(0), "{args:?}");
        assert_eq!(out.stdout, from_file.stdout, "{args:?}");
        assert_eq!(out.stderr, from_file.stderr, "{args:?}");
    }
}

#[test]
fn blank_lines_and_crlf_are_ignored_and_garbage_is_counted() {
    let input = b"\n\r\n   \n{\"result\":null,\"id\":3}\r\nnot json at all\n\n";
    let out = tickcast(
        &[
            "decode",
            "--exchange",
            "binance",
            "--received-ms",
            "7",
            "--max-clock-skew-ms",
            "off",
            "--max-tick-age-ms",
            "off",
        ],
        Some(input),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        counts(&stderr),
        Counts {
            frames: 2,
            ticks: 0,
            acks: 1,
            reconnects: 0,
            skipped: 0,
            errors: 1
        },
        "{stderr}"
    );
    assert!(
        stderr.contains("line 5: frame is not valid JSON"),
        "{stderr}"
    );
    assert!(out.stdout.is_empty());
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn only_the_first_few_errors_are_listed_but_all_are_counted() {
    let input = "x\n".repeat(20);
    let out = tickcast(
        &[
            "decode",
            "--exchange",
            "binance",
            "--received-ms",
            "7",
            "--max-clock-skew-ms",
            "off",
            "--max-tick-age-ms",
            "off",
        ],
        Some(input.as_bytes()),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(counts(&stderr).errors, 20, "{stderr}");
    let listed = stderr
        .lines()
        .filter(|l| l.trim_start().starts_with("line "))
        .count();
    assert_eq!(listed, 5, "{stderr}");
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn usage_errors_exit_2() {
    let out = tickcast(&["decode", "--exchange", "mtgox"], Some(b""));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    for name in NAMES {
        assert!(stderr.contains(name), "known names listed: {stderr}");
    }
    assert!(out.stdout.is_empty());

    let out = tickcast(
        &["decode", "--exchange", "binance", "/no/such/file.jsonl"],
        None,
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/no/such/file.jsonl"));

    let out = tickcast(&["decode"], None);
    assert_eq!(out.status.code(), Some(2), "--exchange is required");
}

/// With `--received-ms`, trade times are checked as `tickcast ingest` checks them: one in
/// microseconds (past 2200), one 61 s ahead of the receive time, one in seconds (1970) and one
/// 8 days old are errors naming the cause; the trades 60 s ahead and 7 days old pass. Without
/// `--received-ms` only the fixed bounds apply.
#[test]
fn trade_times_are_checked_against_the_receive_time() {
    const NOW: i64 = 1_723_075_200_000;
    let frame = |id: u64, t: i64| {
        format!(
            r#"{{"e":"trade","E":{t},"s":"BTCUSDT","t":{id},"p":"61234.1","q":"0.5","T":{t},"m":true,"M":true}}"#
        )
    };
    let lines = [
        frame(1, NOW * 1_000),
        frame(2, NOW + 61_000),
        frame(3, NOW + 60_000),
        frame(4, NOW / 1_000),
        frame(5, NOW - 8 * 86_400_000),
        frame(6, NOW - 7 * 86_400_000),
    ]
    .join("\n");
    let out = tickcast(
        &[
            "decode",
            "--exchange",
            "binance",
            "--received-ms",
            &NOW.to_string(),
        ],
        Some(lines.as_bytes()),
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let ids: Vec<String> = stdout
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["trade_id"].to_string())
        .collect();
    assert_eq!(ids, ["\"3\"", "\"6\""]);
    assert_eq!(
        counts(&stderr),
        Counts {
            frames: 6,
            ticks: 2,
            acks: 0,
            reconnects: 0,
            skipped: 0,
            errors: 4
        }
    );
    for want in [
        format!(
            "line 1: invalid tick 1: invalid field `ts_ms`: {} is after 2200-01-01",
            NOW * 1_000
        ),
        format!(
            "line 2: invalid tick 2: invalid field `ts_ms`: {} is 61000 ms after the receive time {NOW}, more than the allowed clock skew of 60000 ms",
            NOW + 61_000
        ),
        format!(
            "line 4: invalid tick 4: invalid field `ts_ms`: {} is {} ms before the receive time {NOW}, more than the maximum age of 604800000 ms",
            NOW / 1_000,
            NOW - NOW / 1_000
        ),
        format!(
            "line 5: invalid tick 5: invalid field `ts_ms`: {} is 691200000 ms before the receive time {NOW}, more than the maximum age of 604800000 ms",
            NOW - 8 * 86_400_000
        ),
    ] {
        assert!(stderr.contains(&want), "{want}\nnot in:\n{stderr}");
    }

    // The bounds are settings; without a receive time only the fixed ones apply.
    let out = tickcast(
        &[
            "decode",
            "--exchange",
            "binance",
            "--received-ms",
            &NOW.to_string(),
            "--max-clock-skew-ms",
            "61000",
            "--max-tick-age-ms",
            "off",
        ],
        Some(lines.as_bytes()),
    );
    assert_eq!(counts(&String::from_utf8(out.stderr).unwrap()).ticks, 5);
    let out = tickcast(&["decode", "--exchange", "binance"], Some(lines.as_bytes()));
    assert_eq!(counts(&String::from_utf8(out.stderr).unwrap()).ticks, 5);
}
