//! `tickcast backtest` as a user runs it: a candle or trade CSV in, one JSON object per model and
//! horizon out, with the exact scores of the naive model on hand-checked series, and clear errors.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

use std::process::Command;

const CSV: &str = "ts_ms,timestamp,open,high,low,close,volume
0,x,100,101,99,100,1
60000,x,100,103,99,102,1
120000,x,102,102,98,99,1
180000,x,99,104,99,103,1
240000,x,103,103,100,101,1
360000,x,101,101,90,95,1
420000,x,95,96,94,96,1
";

fn tickcast(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_tickcast"))
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn json_lines_carry_the_exact_scores() {
    let dir = std::env::temp_dir().join(format!("tickcast-backtest-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (stdout, _) = backtest_on(&dir.join("candles.csv"), CSV, &[]);
    let lines: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    // naive and the ensemble (GARCH needs 200 returns: no points here), sorted by model.
    assert_eq!(lines.len(), 4);
    let (ensemble, lines) = lines.split_at(2);
    for (e, n) in ensemble.iter().zip(lines) {
        assert_eq!(e["model"].as_str(), Some("ensemble"));
        // Nothing has beaten naive: the ensemble's point is naive's.
        for k in ["horizon", "n", "mae", "rmse", "rel_mae"] {
            assert_eq!(e[k], n[k], "{k}");
        }
    }

    let keys = [
        "model",
        "horizon",
        "n",
        "mae",
        "rmse",
        "mase",
        "rel_mae",
        "coverage80",
        "coverage95",
        "winkler95",
        "directional_accuracy",
    ];
    for l in lines {
        for k in keys {
            assert!(l.get(k).is_some(), "{k} missing in {l}");
        }
    }
    assert_eq!(
        (
            lines[0]["model"].as_str(),
            lines[0]["horizon"].as_u64(),
            lines[0]["n"].as_u64()
        ),
        (Some("naive"), Some(1), Some(3))
    );
    assert!((lines[0]["mae"].as_f64().unwrap() - 3.0).abs() < 1e-12);
    assert_eq!(lines[0]["rel_mae"].as_f64(), Some(1.0));
    assert_eq!(
        (lines[1]["horizon"].as_u64(), lines[1]["n"].as_u64()),
        (Some(2), Some(2))
    );
    assert!((lines[1]["mae"].as_f64().unwrap() - 1.5).abs() < 1e-12);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `text` written to `file`, then `tickcast backtest` on it as BTC-USDT at horizons 1 and 2,
/// JSON lines, with `extra` arguments: (stdout, stderr) of a successful run.
fn backtest_on(file: &std::path::Path, text: &str, extra: &[&str]) -> (String, String) {
    std::fs::write(file, text).unwrap();
    let data = file.to_str().unwrap();
    let base = [
        "backtest",
        "--data",
        data,
        "--symbol",
        "BTC-USDT",
        "--horizons",
        "1,2",
        "--json",
    ];
    let out = tickcast(&[&base[..], extra].concat());
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{stderr}");
    (String::from_utf8(out.stdout).unwrap(), stderr)
}

/// [`backtest_on`] with the naive model alone.
fn naive_on(file: &std::path::Path, text: &str) -> (String, String) {
    backtest_on(file, text, &["--models", "naive", "--no-ensemble"])
}

/// Trades whose 1-minute candles close at 100, 102, 99, 103, 101, (no trade: an explicit empty
/// candle at 101), 95, 96; the last trade opens a window that never closes. A duplicate and a
/// late trade change nothing.
const TRADES: &str = "local_ts_ns,trade_time_ms,symbol,trade_id,price,qty,is_buyer_maker
0,1000,BTCUSDT,1,101,1,true
0,50000,BTCUSDT,2,100,1,false
0,61000,BTCUSDT,3,103,1,false
0,119000,BTCUSDT,4,102,1,true
0,119000,BTCUSDT,4,102,1,true
0,150000,BTCUSDT,5,99,2,false
0,190000,BTCUSDT,6,103,1,false
0,100000,BTCUSDT,7,50,1,false
0,250000,BTCUSDT,8,101,1,true
0,370000,BTCUSDT,9,95,1,true
0,430000,BTCUSDT,10,96,1,true
0,490000,BTCUSDT,11,97,1,true
";

#[test]
fn trades_make_candles_through_the_stream_code_and_score_exactly() {
    let dir = std::env::temp_dir().join(format!("tickcast-bt-trades-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (stdout, stderr) = naive_on(&dir.join("binance_spot_BTCUSDT_trades.csv"), TRADES);
    assert!(
        stderr.contains(
            "12 trades → 8 candles of 1m (1 empty, 1 duplicates, 1 late, 0 gaps left unfilled, \
             0 rows skipped as invalid)"
        ),
        "{stderr}"
    );
    let lines: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    // h=1 from the second candle on: |99-102| + |103-99| + |101-103| + |101-101| + |95-101|
    // + |96-95| = 16 over 6 points.
    assert_eq!(
        (
            lines[0]["model"].as_str(),
            lines[0]["horizon"].as_u64(),
            lines[0]["n"].as_u64()
        ),
        (Some("naive"), Some(1), Some(6))
    );
    assert!((lines[0]["mae"].as_f64().unwrap() - 16.0 / 6.0).abs() < 1e-12);
    // h=2: |103-102| + |101-99| + |101-103| + |95-101| + |96-101| = 16 over 5 points.
    assert_eq!(
        (lines[1]["horizon"].as_u64(), lines[1]["n"].as_u64()),
        (Some(2), Some(5))
    );
    assert!((lines[1]["mae"].as_f64().unwrap() - 16.0 / 5.0).abs() < 1e-12);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Rows that parse but cannot be trades are skipped and counted, and the scores are those of
/// the file without them: a size past the maximum (the one that once overflowed a window's
/// volume), two sizes that would have overflowed together, a time in microseconds, `i64::MAX`.
/// A size in exponent notation is an exact decimal, not an error.
#[test]
fn invalid_trade_rows_are_skipped_and_counted() {
    let dir = std::env::temp_dir().join(format!("tickcast-bt-poison-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let run = |name: &str, text: &str| naive_on(&dir.join(name), text);
    let (clean, _) = run("clean_trades.csv", TRADES);
    let mut poisoned = String::new();
    for (i, line) in TRADES.lines().enumerate() {
        poisoned.push_str(line);
        poisoned.push('\n');
        if i == 2 {
            poisoned.push_str("0,62000,BTCUSDT,90,100,79228162514264337593543950335,false\n");
            poisoned.push_str("0,62500,BTCUSDT,91,100,5e28,false\n");
            poisoned.push_str("0,63000,BTCUSDT,92,100,5e28,false\n");
            poisoned.push_str("0,1700000000000000,BTCUSDT,93,100,1,false\n");
            poisoned.push_str(&format!("0,{},BTCUSDT,94,100,1,false\n", i64::MAX));
        }
    }
    let (scores, stderr) = run("poisoned_trades.csv", &poisoned);
    assert_eq!(scores, clean, "{stderr}");
    assert!(
        stderr.contains(
            "12 trades → 8 candles of 1m (1 empty, 1 duplicates, 1 late, 0 gaps \
                         left unfilled, 5 rows skipped as invalid)"
        ),
        "{stderr}"
    );
    for (line, why) in [
        (4, "above the maximum"),
        (5, "above the maximum"),
        (6, "above the maximum"),
        (7, "after 2200-01-01"),
        (8, "after 2200-01-01"),
    ] {
        assert!(
            stderr.lines().any(
                |l| l.starts_with(&format!("backtest: line {line} skipped:")) && l.contains(why)
            ),
            "line {line}: {why}\n{stderr}"
        );
    }
    // 2.17e-05 is read exactly: the same scores as the plain decimal.
    let exp = TRADES.replace(",BTCUSDT,9,95,1,true", ",BTCUSDT,9,95,2.17e-05,true");
    let plain = TRADES.replace(",BTCUSDT,9,95,1,true", ",BTCUSDT,9,95,0.0000217,true");
    assert_ne!(exp, TRADES);
    assert_eq!(
        run("exp_trades.csv", &exp).0,
        run("plain_trades.csv", &plain).0
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn mistakes_get_clear_errors() {
    let out = tickcast(&[
        "backtest",
        "--data",
        "/nonexistent/candles.csv",
        "--symbol",
        "BTC-USDT",
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/candles.csv"));
    let out = tickcast(&["backtest", "--data", "data.csv"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("pass --symbol"));
    let out = tickcast(&[
        "backtest", "--data", "data.csv", "--symbol", "BTC-USDT", "--models", "prophet",
    ]);
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("unknown model `prophet`; known: naive, garch, ets, trend")
    );
}
