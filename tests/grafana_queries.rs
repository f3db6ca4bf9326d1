//! The Grafana dashboards and Prometheus rules against the real things:
//! - every Postgres query of every dashboard in `monitoring/grafana/dashboards/` (panel targets
//!   and template-variable queries) runs against a fresh Postgres database (`DATABASE_URL`)
//!   seeded through the [`Store`] trait (alert rows by SQL), with Grafana's macros and template
//!   variables expanded as Grafana expands them; each returns rows, time-series queries have a
//!   `time` column, and the panels whose numbers follow from the seed return exactly those;
//! - the views of migration 0004 give the same answers on Postgres and on SQLite;
//! - every metric a dashboard or an alert rule queries is one tickcast defines;
//! - every datasource a dashboard names is provisioned.
//!
//! Needs `DATABASE_URL` for the Postgres test: skipped with a `SKIPPED` line without it, failed
//! when `TICKCAST_REQUIRE_SERVICES` is set.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use rust_decimal::Decimal;
use serde_json::Value;
use sqlx::{Connection as _, PgPool, Row as _, SqlitePool};
use tickcast_core::domain::{Candle, Forecast, SCHEMA_VERSION};
use tickcast_store::{AccuracyRow, Checkpoint, Pos, SinkBatch, Store};

/// 2026-01-01T00:00:00Z, the first seeded bar.
const T0_MS: i64 = 1_767_225_600_000;
const MINUTE: i64 = 60_000;
/// The dashboards' time range: one hour before the first bar to two hours after.
const RANGE: TimeRange = TimeRange {
    from_s: T0_MS / 1000 - 3_600,
    to_s: T0_MS / 1000 + 7_200,
    from: "2025-12-31T23:00:00Z",
    to: "2026-01-01T02:00:00Z",
};
/// What `$__interval` is taken to be.
const INTERVAL: &str = "1m";

const PG_UID: &str = "tickcast-postgres";
const PROM_UID: &str = "tickcast-prometheus";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

// ------------------------------------------------------------------------------------------
// Seed

fn candle(symbol: &str, i: i64, close: i64) -> Candle {
    let p = Decimal::from(close);
    Candle {
        v: SCHEMA_VERSION,
        exchange: "binance".into(),
        symbol: symbol.into(),
        interval: "1m".into(),
        open_ms: T0_MS + i * MINUTE,
        close_ms: T0_MS + (i + 1) * MINUTE,
        open: p,
        high: p,
        low: p,
        close: p,
        volume: Decimal::ONE,
        trades: 1,
    }
}

/// `last` is the base bar's close; intervals are `point ± half80` and `point ± half95`; a
/// version 2 forecast, its quantiles between the bands (midpoints at 5, 25, 75 and 95%), a
/// touch calibration, and every seventh bar degraded.
fn forecast(symbol: &str, model: &str, h: i64, i: i64, last: f64, point: f64) -> Forecast {
    let (half80, half95) = if model == "naive" {
        (0.9, 4.0)
    } else {
        (0.5, 1.0)
    };
    let (lo80, hi80, lo95, hi95) = (
        point - half80,
        point + half80,
        point - half95,
        point + half95,
    );
    let mid = |a: f64, b: f64| (a + b) / 2.0;
    Forecast {
        v: tickcast_core::domain::FORECAST_VERSION,
        exchange: "binance".into(),
        symbol: symbol.into(),
        interval: "1m".into(),
        model: model.into(),
        horizon: h as u32,
        base_ms: T0_MS + i * MINUTE,
        target_ms: T0_MS + (i + h) * MINUTE,
        last,
        point,
        lo80,
        hi80,
        lo95,
        hi95,
        quantiles: Some([
            lo95,
            mid(lo95, lo80),
            lo80,
            mid(lo80, point),
            point,
            mid(point, hi80),
            hi80,
            mid(hi80, hi95),
            hi95,
        ]),
        touch: Some(tickcast_core::domain::TouchCalibration {
            alpha: 0.25,
            beta: 0.9,
        }),
        model_version: Some(format!("{model}.r1.00000000").into()),
        degraded: Some(i % 7 == 0),
    }
}

fn accuracy(symbol: &str, model: &str, horizon: i32, mae: f64) -> AccuracyRow {
    AccuracyRow {
        exchange: "binance".into(),
        symbol: symbol.into(),
        interval: "1m".into(),
        model: model.into(),
        horizon,
        ts_ms: T0_MS + 39 * MINUTE,
        n: 30,
        mae,
        rmse: mae * 1.5,
        mase: Some(mae / 1.0),
        rel_mae: Some(mae / 2.0),
        coverage80: 0.8,
        coverage95: 0.95,
        winkler95: 4.0 + mae,
        directional_accuracy: Some(0.5),
        crps: None,
        crps_rel: None,
        pit_max_err: None,
        touch_brier: None,
        touch_brier_rel: None,
        touch_ece: None,
    }
}

/// BTC-USDT: 40 one-minute bars closing at 100, 101, …; from each, `ets` forecasts exactly
/// (point = last + h, inside both intervals) and `naive` forecasts `last` (1 off at h = 1:
/// outside its ±0.9 80% interval, inside its ±4 95% one; 5 off at h = 5: outside both), at
/// horizons 1 and 5. ETH-USDT: 10 bars closing at 50, 51, …, naive at h = 1.
/// Rolling accuracy for every (symbol, model, horizon) with a forecast.
async fn seed_store(store: &dyn Store) {
    let mut batch = SinkBatch::default();
    let mut push_candle = |c: Candle| {
        let offset = batch.candles.len() as i64;
        batch.candles.push((pos("candles", offset), c));
    };
    for i in 0..40 {
        push_candle(candle("BTC-USDT", i, 100 + i));
    }
    for i in 0..10 {
        push_candle(candle("ETH-USDT", i, 50 + i));
    }
    let mut forecasts = Vec::new();
    for i in 0..40 {
        let last = (100 + i) as f64;
        for h in [1, 5] {
            forecasts.push(forecast("BTC-USDT", "ets", h, i, last, last + h as f64));
            forecasts.push(forecast("BTC-USDT", "naive", h, i, last, last));
        }
    }
    for i in 0..10 {
        let last = (50 + i) as f64;
        forecasts.push(forecast("ETH-USDT", "naive", 1, i, last, last));
    }
    for (offset, f) in forecasts.into_iter().enumerate() {
        batch.forecasts.push((pos("forecasts", offset as i64), f));
    }
    batch.offsets = BTreeMap::from([
        (("candles".to_string(), 0), batch.candles.len() as i64),
        (("forecasts".to_string(), 0), batch.forecasts.len() as i64),
    ]);
    let written = store.write_batch("seed", &batch).await.expect("seed rows");
    assert_eq!((written.candles, written.forecasts), (50, 170));

    let cp = Checkpoint {
        accuracy: vec![
            accuracy("BTC-USDT", "ets", 1, 0.5),
            accuracy("BTC-USDT", "ets", 5, 0.25),
            accuracy("BTC-USDT", "naive", 1, 1.0),
            accuracy("BTC-USDT", "naive", 5, 5.0),
            accuracy("ETH-USDT", "naive", 1, 1.0),
        ],
        ..Checkpoint::default()
    };
    store
        .save_checkpoint("seed", &cp)
        .await
        .expect("seed scores");
}

fn pos(topic: &str, offset: i64) -> Pos {
    Pos {
        topic: topic.into(),
        partition: 0,
        offset,
    }
}

/// Two rules; `btc_above` fires on BTC ets h1 and is pending on BTC naive h1, `eth_band` went
/// pending → firing → resolved on ETH naive h1: six events, one firing, one pending now.
const ALERT_SEED: &[&str] = &[
    "insert into alert_rules (id, spec, source, updated_ms) values
        ('btc_above', '{\"kind\":\"above\",\"price\":120}', 'file', 1767225600000),
        ('eth_band', '{\"kind\":\"outside_interval\",\"level\":95}', 'api', 1767225600000)",
    "insert into alert_events (id, rule_id, exchange, symbol, interval, model, horizon, state,
        ts_ms, value, threshold, message) values
        ('e1', 'btc_above', 'binance', 'BTC-USDT', '1m', 'ets', 1, 'pending', 1767225900000, 121, 120, 'above 120'),
        ('e2', 'btc_above', 'binance', 'BTC-USDT', '1m', 'ets', 1, 'firing', 1767225960000, 122, 120, 'above 120'),
        ('e3', 'eth_band', 'binance', 'ETH-USDT', '1m', 'naive', 1, 'pending', 1767225720000, 53, 52, 'outside'),
        ('e4', 'eth_band', 'binance', 'ETH-USDT', '1m', 'naive', 1, 'firing', 1767225780000, 54, 52, 'outside'),
        ('e5', 'eth_band', 'binance', 'ETH-USDT', '1m', 'naive', 1, 'resolved', 1767226080000, 51, 52, 'inside'),
        ('e6', 'btc_above', 'binance', 'BTC-USDT', '1m', 'naive', 1, 'pending', 1767226200000, 121, 120, 'above 120')",
];

/// Portable checks of the views with the values the seed implies (same text on both dialects).
const VIEW_CHECKS: &[(&str, f64)] = &[
    ("select count(*) from candle_series", 50.0),
    (
        "select close from candle_series where symbol = 'BTC-USDT' and open_ms = 1767225660000",
        101.0,
    ),
    // BTC: 39 + 35 scored per model (targets up to bar 39), ETH: 9.
    (
        "select count(*) from forecast_outcomes where actual is not null",
        157.0,
    ),
    (
        "select count(*) from forecast_outcomes where inside80",
        74.0,
    ),
    (
        "select count(*) from forecast_outcomes where inside95",
        122.0,
    ),
    // naive h5: width 8 plus 40 × the 1 it missed by, 35 times.
    (
        "select sum(winkler95) from forecast_outcomes where model = 'naive' and horizon = 5",
        1680.0,
    ),
    (
        "select sum(naive_abs_error) from forecast_outcomes where model = 'ets' and horizon = 5",
        175.0,
    ),
    ("select count(*) from latest_forecasts", 5.0),
    (
        "select base_ms from latest_forecasts where symbol = 'BTC-USDT' and model = 'ets' and horizon = 5",
        1_767_227_940_000.0,
    ),
    (
        "select mae_vs_naive from accuracy_vs_naive where symbol = 'BTC-USDT' and model = 'ets' and horizon = 5",
        0.05,
    ),
    (
        "select naive_mae from accuracy_vs_naive where symbol = 'ETH-USDT' and model = 'naive'",
        1.0,
    ),
    (
        "select count(*) from alert_log where rule_spec is not null",
        6.0,
    ),
    (
        "select count(*) from alert_current where state = 'firing'",
        1.0,
    ),
    (
        "select count(*) from alert_current where state = 'pending'",
        1.0,
    ),
    (
        "select ts_ms from alert_current where rule_id = 'eth_band'",
        1_767_226_080_000.0,
    ),
];

// ------------------------------------------------------------------------------------------
// Dashboards

/// One query of a dashboard: a panel target or a template variable.
#[derive(Debug, Clone)]
struct Query {
    dashboard: String,
    /// Panel title, or `var NAME`.
    panel: String,
    ref_id: String,
    datasource: String,
    /// `rawSql` or `expr`.
    text: String,
    /// `time_series` or `table`.
    format: String,
}

/// A template variable as the dashboard declares it.
#[derive(Debug, Clone)]
struct Variable {
    name: String,
    query: String,
    multi: bool,
    include_all: bool,
    /// A text box's value (what a user types), from [`TEXTBOX`]; `None` for a query.
    typed: Option<String>,
}

/// What the test types into each text-box variable.
const TEXTBOX: &[(&str, &str)] = &[("level", "139.6")];

#[derive(Debug)]
struct Dashboard {
    uid: String,
    queries: Vec<Query>,
    variables: Vec<Variable>,
}

fn dashboards() -> Vec<Dashboard> {
    let dir = repo().join("monitoring/grafana/dashboards");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("dashboards directory")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    assert_eq!(
        files.len(),
        4,
        "Forecasts, Accuracy, Alerts, Pipeline health"
    );
    files
        .iter()
        .map(|f| {
            let text = std::fs::read_to_string(f).unwrap();
            let json: Value =
                serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
            parse_dashboard(&json)
        })
        .collect()
}

fn uid_of(ds: &Value) -> Option<String> {
    ds.get("uid").and_then(Value::as_str).map(String::from)
}

fn parse_dashboard(json: &Value) -> Dashboard {
    let uid = json["uid"].as_str().expect("dashboard uid").to_string();
    let mut queries = Vec::new();
    let mut panels: Vec<&Value> = json["panels"].as_array().expect("panels").iter().collect();
    while let Some(p) = panels.pop() {
        if let Some(inner) = p.get("panels").and_then(Value::as_array) {
            panels.extend(inner); // rows
        }
        if p["type"] == "row" {
            continue;
        }
        let title = p["title"].as_str().expect("panel title").to_string();
        let targets = p["targets"].as_array().expect("panel targets");
        assert!(!targets.is_empty(), "{uid}/{title}: no query");
        for t in targets {
            let datasource = uid_of(&t["datasource"])
                .or_else(|| uid_of(&p["datasource"]))
                .unwrap_or_else(|| panic!("{uid}/{title}: no datasource"));
            let text = t
                .get("rawSql")
                .or_else(|| t.get("expr"))
                .and_then(Value::as_str)
                .unwrap_or_else(|| panic!("{uid}/{title}: no rawSql or expr"));
            queries.push(Query {
                dashboard: uid.clone(),
                panel: title.clone(),
                ref_id: t["refId"].as_str().unwrap_or("A").to_string(),
                datasource,
                text: text.to_string(),
                format: t["format"].as_str().unwrap_or("table").to_string(),
            });
        }
    }
    let mut variables = Vec::new();
    for v in json["templating"]["list"].as_array().expect("templating") {
        let name = v["name"].as_str().unwrap().to_string();
        if v["type"] == "textbox" {
            let typed = TEXTBOX
                .iter()
                .find(|(n, _)| *n == name)
                .unwrap_or_else(|| panic!("{uid}: text box {name}: no value in TEXTBOX"))
                .1;
            variables.push(Variable {
                name,
                query: String::new(),
                multi: false,
                include_all: false,
                typed: Some(typed.to_string()),
            });
            continue;
        }
        assert_eq!(v["type"], "query", "{uid}: variable {name} is not a query");
        let datasource = uid_of(&v["datasource"]).expect("variable datasource");
        let query = v["query"].as_str().expect("variable query").to_string();
        queries.push(Query {
            dashboard: uid.clone(),
            panel: format!("var {name}"),
            ref_id: "var".into(),
            datasource,
            text: query.clone(),
            format: "table".into(),
        });
        variables.push(Variable {
            name,
            query,
            multi: v["multi"].as_bool().unwrap_or(false),
            include_all: v["includeAll"].as_bool().unwrap_or(false),
            typed: None,
        });
    }
    Dashboard {
        uid,
        queries,
        variables,
    }
}

// ------------------------------------------------------------------------------------------
// Grafana's expansion (frontend template variables, then the Postgres macro engine)

#[derive(Debug, Clone, Copy)]
struct TimeRange {
    from_s: i64,
    to_s: i64,
    from: &'static str,
    to: &'static str,
}

/// Template variables as Grafana's SQL datasources format them: a multi-value or include-all
/// variable becomes a list of quoted literals, a single value is inserted as is (quotes
/// doubled). `$__from`/`$__to` are epoch milliseconds, `$__interval` a duration.
fn interpolate(sql: &str, vars: &BTreeMap<String, String>, r: &TimeRange) -> String {
    let mut all: Vec<(String, String)> = vars.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    all.push(("__from".into(), (r.from_s * 1000).to_string()));
    all.push(("__to".into(), (r.to_s * 1000).to_string()));
    all.push(("__interval".into(), INTERVAL.into()));
    all.push(("__interval_ms".into(), "60000".into()));
    let mut out = String::with_capacity(sql.len());
    let mut rest = sql;
    while let Some(at) = rest.find(['$', '[']) {
        out.push_str(&rest[..at]);
        let tail = &rest[at..];
        let (name, used) = if let Some(braced) = tail.strip_prefix("${") {
            let end = braced.find('}').expect("closing brace");
            (&braced[..end], end + 3)
        } else if let Some(old) = tail.strip_prefix("[[") {
            let end = old.find("]]").expect("closing ]]");
            (&old[..end], end + 4)
        } else if let Some(body) = tail.strip_prefix('$') {
            let end = body
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(body.len());
            (&body[..end], end + 1)
        } else {
            ("", 0)
        };
        match all.iter().find(|(k, _)| k == name) {
            Some((_, v)) => {
                out.push_str(v);
                rest = &tail[used..];
            }
            None => {
                // A macro (`$__timeFilter(…)`), or not a variable at all: left for later.
                out.push_str(&tail[..1]);
                rest = &tail[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// The value a variable takes in queries, from the values its query returned: every value for
/// multi/include-all ("All" selected), else the first (Grafana's default selection).
fn format_variable(v: &Variable, values: &[String]) -> String {
    if v.multi || v.include_all {
        values
            .iter()
            .map(|s| format!("'{}'", s.replace('\'', "''")))
            .collect::<Vec<_>>()
            .join(",")
    } else {
        values[0].replace('\'', "''")
    }
}

/// Seconds in a Grafana interval (`'5m'`, `1h`, `30s`).
fn interval_secs(arg: &str) -> i64 {
    let a = arg.trim().trim_matches('\'');
    let split = a
        .find(|c: char| !c.is_ascii_digit())
        .expect("interval unit");
    let n: i64 = a[..split].parse().expect("interval number");
    n * match &a[split..] {
        "s" => 1,
        "m" => 60,
        "h" => 3_600,
        "d" => 86_400,
        "w" => 604_800,
        u => panic!("interval unit {u}"),
    }
}

/// Grafana's Postgres macro engine (pkg/tsdb/grafana-postgresql-datasource/macros.go) plus the
/// SQL engine's `$__unixEpochFrom()`/`$__unixEpochTo()`. Unknown macros fail the test.
fn expand_macros(sql: &str, r: &TimeRange) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut rest = sql;
    while let Some(at) = rest.find("$__") {
        out.push_str(&rest[..at]);
        let tail = &rest[at + 1..];
        let name_end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        let name = &tail[..name_end];
        let call = &tail[name_end..];
        assert!(
            call.starts_with('('),
            "${name} is not a macro call in {sql}"
        );
        let close = call.find(')').expect("macro closing parenthesis");
        let args: Vec<&str> = call[1..close]
            .split(',')
            .map(str::trim)
            .filter(|a| !a.is_empty())
            .collect();
        rest = &call[close + 1..];
        // Grafana: `$__timeGroup(…),` is read as the aliased form (pre-5.3 dashboards).
        let name = if name == "__timeGroup" && rest.starts_with(',') {
            "__timeGroupAlias"
        } else {
            name
        };
        out.push_str(&macro_value(name, &args, r));
    }
    out.push_str(rest);
    out
}

fn macro_value(name: &str, args: &[&str], r: &TimeRange) -> String {
    let col = || {
        *args
            .first()
            .unwrap_or_else(|| panic!("{name} needs a column"))
    };
    let group = |c: &str| {
        let s = interval_secs(args.get(1).expect("group interval"));
        format!("floor(extract(epoch from {c})/{s})*{s}")
    };
    let epoch_group = |c: &str| {
        let s = interval_secs(args.get(1).expect("group interval"));
        format!("floor(({c})/{s})*{s}")
    };
    let nanos = |s: i64| s as i128 * 1_000_000_000;
    match name {
        "__time" => format!("{} AS \"time\"", col()),
        "__timeEpoch" => format!("extract(epoch from {}) as \"time\"", col()),
        "__timeFilter" => format!("{} BETWEEN '{}' AND '{}'", col(), r.from, r.to),
        "__timeFrom" => format!("'{}'", r.from),
        "__timeTo" => format!("'{}'", r.to),
        "__timeGroup" => group(col()),
        "__timeGroupAlias" => format!("{} AS \"time\"", group(col())),
        "__unixEpochFilter" => format!("{c} >= {} AND {c} <= {}", r.from_s, r.to_s, c = col()),
        "__unixEpochFrom" => r.from_s.to_string(),
        "__unixEpochTo" => r.to_s.to_string(),
        "__unixEpochNanoFilter" => format!(
            "{c} >= {} AND {c} <= {}",
            nanos(r.from_s),
            nanos(r.to_s),
            c = col()
        ),
        "__unixEpochNanoFrom" => nanos(r.from_s).to_string(),
        "__unixEpochNanoTo" => nanos(r.to_s).to_string(),
        "__unixEpochGroup" => epoch_group(col()),
        "__unixEpochGroupAlias" => format!("{} AS \"time\"", epoch_group(col())),
        other => panic!("unknown Grafana macro ${other}"),
    }
}

fn expand(sql: &str, vars: &BTreeMap<String, String>) -> String {
    let out = expand_macros(&interpolate(sql, vars, &RANGE), &RANGE);
    assert!(!out.contains('$'), "unexpanded `$` left in:\n{out}");
    out
}

#[test]
fn expansion_matches_grafana() {
    let vars = BTreeMap::from([
        ("symbol".to_string(), "BTC-USDT".to_string()),
        ("model".to_string(), "'ets','naive'".to_string()),
    ]);
    let cases = [
        (
            "where $__timeFilter(\"time\") and symbol = '$symbol'",
            "where \"time\" BETWEEN '2025-12-31T23:00:00Z' AND '2026-01-01T02:00:00Z' and symbol = 'BTC-USDT'",
        ),
        (
            "select $__timeGroupAlias(t, '5m'), x from v where model in ($model)",
            "select floor(extract(epoch from t)/300)*300 AS \"time\", x from v where model in ('ets','naive')",
        ),
        (
            "select $__timeGroup(t, $__interval), ${symbol}",
            "select floor(extract(epoch from t)/60)*60 AS \"time\", BTC-USDT",
        ),
        (
            "ms between $__unixEpochFrom() * 1000 and $__unixEpochTo() * 1000",
            "ms between 1767222000 * 1000 and 1767232800 * 1000",
        ),
        (
            "$__unixEpochFilter(s) and ms < $__to and $__timeFrom() < $__timeTo()",
            "s >= 1767222000 AND s <= 1767232800 and ms < 1767232800000 and '2025-12-31T23:00:00Z' < '2026-01-01T02:00:00Z'",
        ),
    ];
    for (sql, want) in cases {
        assert_eq!(expand(sql, &vars), want, "{sql}");
    }
    let multi = Variable {
        name: "m".into(),
        query: String::new(),
        multi: true,
        include_all: true,
        typed: None,
    };
    let single = Variable {
        multi: false,
        include_all: false,
        ..multi.clone()
    };
    let values = ["a".to_string(), "o'b".to_string()];
    assert_eq!(format_variable(&multi, &values), "'a','o''b'");
    assert_eq!(format_variable(&single, &values), "a");
}

// ------------------------------------------------------------------------------------------
// Expected results of the panels whose numbers follow from the seed

/// What a panel query returns with the seed: (dashboard, panel title, refId, expectation).
/// Variables take their defaults: the first exchange/symbol/interval/model/horizon (binance,
/// BTC-USDT, 1m, ets, 1) where single, all values where multi.
enum Want {
    Rows(usize),
    /// (column, value) of the first row.
    First(&'static str, f64),
}

const WANT: &[(&str, &str, &str, Want)] = &[
    (
        "tickcast-forecasts",
        "$symbol: odds of $level",
        "A",
        Want::Rows(4),
    ),
    (
        "tickcast-forecasts",
        "$symbol: price and $model forecast, $horizon bars ahead, with 80% / 95% bands",
        "A",
        Want::Rows(40),
    ),
    (
        "tickcast-forecasts",
        "$symbol: price and $model forecast, $horizon bars ahead, with 80% / 95% bands",
        "B",
        Want::Rows(40),
    ),
    (
        "tickcast-forecasts",
        "$symbol: point forecasts of every model, $horizon bars ahead",
        "B",
        Want::Rows(80),
    ),
    (
        "tickcast-forecasts",
        "$model, $horizon bars: realised in range",
        "A",
        Want::First("scored", 39.0),
    ),
    (
        "tickcast-forecasts",
        "$model, $horizon bars: realised in range",
        "A",
        Want::First("coverage80", 1.0),
    ),
    (
        "tickcast-forecasts",
        "$model, $horizon bars: realised in range",
        "A",
        Want::First("mae_vs_naive", 0.0),
    ),
    (
        "tickcast-forecasts",
        "$symbol: latest forecasts",
        "A",
        Want::Rows(4),
    ),
    (
        "tickcast-forecasts",
        "$symbol: $model forecasts beside the actual",
        "A",
        Want::Rows(39),
    ),
    (
        "tickcast-accuracy",
        "Rolling scores by model and horizon (mean over the selected symbols)",
        "A",
        Want::Rows(4),
    ),
    (
        "tickcast-accuracy",
        "Rolling scores by model and horizon (mean over the selected symbols)",
        "A",
        Want::First("mae_vs_naive", 0.5),
    ),
    (
        "tickcast-accuracy",
        "Realised in the time range (forecasts joined to their target bars)",
        "A",
        Want::First("scored", 39.0),
    ),
    (
        "tickcast-accuracy",
        "Realised in the time range (forecasts joined to their target bars)",
        "A",
        Want::Rows(4),
    ),
    (
        "tickcast-alerts",
        "Firing now",
        "A",
        Want::First("firing", 1.0),
    ),
    (
        "tickcast-alerts",
        "Pending now",
        "A",
        Want::First("pending", 1.0),
    ),
    (
        "tickcast-alerts",
        "Events in range",
        "A",
        Want::First("events", 6.0),
    ),
    (
        "tickcast-alerts",
        "Rule count",
        "A",
        Want::First("rules", 2.0),
    ),
    (
        "tickcast-alerts",
        "Pending and firing now",
        "A",
        Want::Rows(2),
    ),
    ("tickcast-alerts", "Events", "A", Want::Rows(6)),
];

// ------------------------------------------------------------------------------------------
// Postgres

fn database_url() -> Option<String> {
    match std::env::var("DATABASE_URL") {
        Ok(u) => Some(u),
        Err(_) if std::env::var_os("TICKCAST_REQUIRE_SERVICES").is_some() => {
            panic!("DATABASE_URL must be set (scripts/test.sh sets it)")
        }
        Err(_) => {
            eprintln!("SKIPPED grafana_queries: set DATABASE_URL (or run scripts/test.sh)");
            None
        }
    }
}

/// A fresh database beside the one `url` names.
async fn fresh_postgres(url: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    let db = format!("grafana_queries_{}_{nanos}", std::process::id());
    let mut conn = sqlx::PgConnection::connect(url).await.expect("connect");
    sqlx::query(&format!("create database \"{db}\""))
        .execute(&mut conn)
        .await
        .expect("create database");
    let base = url.rsplit_once('/').map(|(b, _)| b).unwrap_or(url);
    format!("{base}/{db}")
}

/// Rows of `sql` as JSON objects (Postgres renders them, numerics and timestamps included).
async fn pg_rows(pool: &PgPool, sql: &str) -> Result<Vec<Value>, sqlx::Error> {
    let wrapped = format!("select row_to_json(q)::text from ({sql}) as q");
    let rows = sqlx::query(&wrapped).fetch_all(pool).await?;
    Ok(rows
        .iter()
        .map(|r| serde_json::from_str(r.get::<&str, _>(0)).expect("row JSON"))
        .collect())
}

#[tokio::test]
async fn every_dashboard_sql_query_returns_rows_on_postgres() {
    let Some(url) = database_url() else { return };
    let url = fresh_postgres(&url).await;
    let store = tickcast_store::open(&url).await.expect("open store");
    seed_store(store.as_ref()).await;
    let pool = PgPool::connect(&url).await.expect("pool");
    for stmt in ALERT_SEED {
        sqlx::query(stmt).execute(&pool).await.expect("seed alerts");
    }
    // The hard-coded RFC 3339 bounds are the epoch seconds they stand for.
    let (from, to): (String, String) = sqlx::query_as(
        "select to_char(to_timestamp($1) at time zone 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), \
                to_char(to_timestamp($2) at time zone 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')",
    )
    .bind(RANGE.from_s as f64)
    .bind(RANGE.to_s as f64)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!((from.as_str(), to.as_str()), (RANGE.from, RANGE.to));

    let mut ran = 0;
    let mut matched = BTreeSet::new();
    for d in dashboards() {
        // Variables in order, each seeing the ones before it.
        let mut vars: BTreeMap<String, String> = BTreeMap::new();
        for v in &d.variables {
            if let Some(typed) = &v.typed {
                // Grafana inserts a text box's value as typed.
                vars.insert(v.name.clone(), typed.replace('\'', "''"));
                continue;
            }
            let sql = expand(&v.query, &vars);
            let values: Vec<String> =
                sqlx::query(&format!("select cast(v as text) from ({sql}) as q(v)"))
                    .fetch_all(&pool)
                    .await
                    .unwrap_or_else(|e| panic!("{}: variable {}: {e}\n{sql}", d.uid, v.name))
                    .iter()
                    .map(|r| r.get::<String, _>(0))
                    .collect();
            assert!(
                !values.is_empty(),
                "{}: variable {} has no values\n{sql}",
                d.uid,
                v.name
            );
            vars.insert(v.name.clone(), format_variable(v, &values));
        }
        for q in d.queries.iter().filter(|q| q.datasource == PG_UID) {
            let sql = expand(&q.text, &vars);
            let what = format!("{} / {} / {}", q.dashboard, q.panel, q.ref_id);
            // As Grafana sends it, then wrapped to read the values.
            let raw = sqlx::query(&sql)
                .fetch_all(&pool)
                .await
                .unwrap_or_else(|e| panic!("{what}: {e}\n{sql}"));
            let rows = pg_rows(&pool, &sql).await.expect("rows as JSON");
            assert_eq!(raw.len(), rows.len(), "{what}");
            assert!(!rows.is_empty(), "{what}: no rows\n{sql}");
            if q.format == "time_series" {
                assert!(
                    rows[0].get("time").is_some(),
                    "{what}: time series without `time`"
                );
            }
            if q.panel == "$symbol: odds of $level" {
                odds_match_the_api(store.as_ref(), &rows).await;
            }
            for (i, (dash, panel, ref_id, want)) in WANT.iter().enumerate() {
                if (*dash, *panel, *ref_id)
                    != (q.dashboard.as_str(), q.panel.as_str(), q.ref_id.as_str())
                {
                    continue;
                }
                matched.insert(i);
                match want {
                    Want::Rows(n) => assert_eq!(rows.len(), *n, "{what}: rows\n{sql}"),
                    Want::First(col, v) => {
                        let got = rows[0][*col]
                            .as_f64()
                            .unwrap_or_else(|| panic!("{what}: {col} in {}", rows[0]));
                        assert!((got - v).abs() < 1e-9, "{what}: {col} = {got}, want {v}");
                    }
                }
            }
            ran += 1;
        }
    }
    assert_eq!(
        matched.len(),
        WANT.len(),
        "expectations whose panel no dashboard has: {:?}",
        (0..WANT.len())
            .filter(|i| !matched.contains(i))
            .map(|i| WANT[i].1)
            .collect::<Vec<_>>()
    );
    assert!(ran >= 30, "only {ran} Postgres queries ran");

    for (sql, want) in VIEW_CHECKS {
        let got: f64 = sqlx::query_scalar(&format!("select cast(({sql}) as double precision)"))
            .fetch_one(&pool)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        assert!(
            (got - want).abs() < 1e-9,
            "postgres: {sql} = {got}, want {want}"
        );
    }
}

/// The odds panel's probabilities are the API's ([`above_of`] and [`touch_of`] on the same
/// newest forecasts), for the level the test typed.
async fn odds_match_the_api(store: &dyn Store, rows: &[Value]) {
    use tickcast_forecast::scoring::touch::{above_of, touch_of};
    let level: f64 = TEXTBOX[0].1.parse().unwrap();
    let latest = store
        .latest_forecasts(&tickcast_store::ForecastQuery {
            symbol: Some("BTC-USDT".into()),
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(rows.len(), latest.len());
    for f in &latest {
        let row = rows
            .iter()
            .find(|r| r["model"] == *f.model && r["horizon"] == f.horizon)
            .unwrap_or_else(|| panic!("no odds row for {} h{}", f.model, f.horizon));
        for (col, want) in [
            ("p_close_above", above_of(f, level).unwrap()),
            ("p_touch", touch_of(f, level).unwrap()),
        ] {
            let got = row[col]
                .as_f64()
                .unwrap_or_else(|| panic!("{col} in {row:?}"));
            assert!(
                (got - want).abs() < 1e-12,
                "{} h{}: {col} {got} in SQL, {want} by the API",
                f.model,
                f.horizon
            );
        }
        assert_eq!(row["model_version"], *f.model_version.as_deref().unwrap());
    }
}

// ------------------------------------------------------------------------------------------
// SQLite

#[tokio::test]
async fn views_give_the_same_answers_on_sqlite() {
    let dir = std::env::temp_dir().join(format!(
        "grafana_queries_{}_{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let url = format!("sqlite:{}", dir.join("t.db").display());
    let store = tickcast_store::open(&url).await.expect("open store");
    seed_store(store.as_ref()).await;
    let pool = SqlitePool::connect(&url).await.expect("pool");
    for stmt in ALERT_SEED {
        sqlx::query(stmt).execute(&pool).await.expect("seed alerts");
    }
    for (sql, want) in VIEW_CHECKS {
        let got: f64 = sqlx::query_scalar(&format!("select cast(({sql}) as double precision)"))
            .fetch_one(&pool)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        assert!(
            (got - want).abs() < 1e-9,
            "sqlite: {sql} = {got}, want {want}"
        );
    }
    pool.close().await;
    let _ = std::fs::remove_dir_all(&dir);
}

// ------------------------------------------------------------------------------------------
// Prometheus names and datasources

/// Every `"tickcast_…"` string literal in the Rust sources of the crates that register metrics.
fn defined_metrics() -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut dirs = vec![
        repo().join("core/src"),
        repo().join("consumers/src"),
        repo().join("api/src"),
    ];
    while let Some(d) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries {
            let p = e.unwrap().path();
            if p.is_dir() {
                dirs.push(p);
            } else if p.extension().is_some_and(|x| x == "rs") {
                let text = std::fs::read_to_string(&p).unwrap();
                for piece in text.split("\"tickcast_").skip(1) {
                    let end = piece
                        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                        .unwrap_or(piece.len());
                    if piece[end..].starts_with('"') {
                        names.insert(format!("tickcast_{}", &piece[..end]));
                    }
                }
            }
        }
    }
    names
}

/// `tickcast_…` identifiers in a PromQL expression (or any text).
fn metric_tokens(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find("tickcast_") {
        let before = rest[..at].chars().last();
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
            .unwrap_or(tail.len());
        if !before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') {
            out.push(tail[..end].to_string());
        }
        rest = &tail[end..];
    }
    out
}

fn is_defined(token: &str, defined: &BTreeSet<String>) -> bool {
    defined.contains(token)
        || ["_bucket", "_sum", "_count"]
            .iter()
            .any(|s| token.strip_suffix(s).is_some_and(|b| defined.contains(b)))
}

#[test]
fn every_prometheus_query_names_defined_metrics() {
    let defined = defined_metrics();
    for m in [
        "tickcast_feed_trades_total",
        "tickcast_consumer_lag",
        "tickcast_end_to_end_latency_seconds",
    ] {
        assert!(
            defined.contains(m),
            "{m} not found in the sources: {defined:?}"
        );
    }
    let mut used = 0;
    let mut check = |what: &str, text: &str| {
        for t in metric_tokens(text) {
            assert!(
                is_defined(&t, &defined),
                "{what}: {t} is not a tickcast metric"
            );
            used += 1;
        }
    };
    let mut prom_queries = 0;
    for d in dashboards() {
        for q in d.queries.iter().filter(|q| q.datasource == PROM_UID) {
            assert!(
                !metric_tokens(&q.text).is_empty() || q.text.contains("up{"),
                "{} / {}: no metric in {}",
                q.dashboard,
                q.panel,
                q.text
            );
            check(&format!("{} / {}", q.dashboard, q.panel), &q.text);
            prom_queries += 1;
        }
    }
    assert!(prom_queries >= 20, "only {prom_queries} Prometheus queries");
    let rules =
        std::fs::read_to_string(repo().join("monitoring/rules/tickcast.rules.yml")).unwrap();
    check("tickcast.rules.yml", &rules);
    let tests =
        std::fs::read_to_string(repo().join("monitoring/rules/tickcast.rules.test.yml")).unwrap();
    check("tickcast.rules.test.yml", &tests);
    assert!(used >= 40, "only {used} metric references");
    // The checker itself: a misspelt name is caught, suffixes of histograms are not.
    assert!(!is_defined("tickcast_feed_trade_total", &defined));
    assert!(is_defined("tickcast_feed_lag_seconds_bucket", &defined));
    assert_eq!(
        metric_tokens("rate(tickcast_a_total[5m]) / x_tickcast_b + tickcast_c:sum"),
        ["tickcast_a_total", "tickcast_c:sum"]
    );
}

#[test]
fn every_dashboard_datasource_is_provisioned() {
    let dir = repo().join("monitoring/grafana/provisioning/datasources");
    let mut uids = BTreeSet::new();
    for e in std::fs::read_dir(dir).expect("datasources directory") {
        let text = std::fs::read_to_string(e.unwrap().path()).unwrap();
        for line in text.lines() {
            if let Some(uid) = line.trim().strip_prefix("uid:") {
                uids.insert(uid.trim().to_string());
            }
        }
    }
    assert_eq!(
        uids,
        BTreeSet::from([PG_UID.to_string(), PROM_UID.to_string()])
    );
    for d in dashboards() {
        let mut seen = BTreeSet::new();
        for q in &d.queries {
            assert!(
                uids.contains(&q.datasource),
                "{} / {}: {}",
                d.uid,
                q.panel,
                q.datasource
            );
            seen.insert(q.datasource.as_str());
        }
        assert!(!seen.is_empty(), "{}: no queries", d.uid);
    }
}
