//! `tickcast backtest` as a user runs it: a candle CSV in, one JSON object per model and horizon
//! out, with the exact scores of the naive model on a hand-checked series, and clear errors.

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
    let file = dir.join("candles.csv");
    std::fs::write(&file, CSV).unwrap();
    let out = tickcast(&[
        "backtest",
        "--data",
        file.to_str().unwrap(),
        "--symbol",
        "BTC-USDT",
        "--horizons",
        "1,2",
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<serde_json::Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
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
    for l in &lines {
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
            .contains("unknown model `prophet`; known: naive, garch")
    );
}
