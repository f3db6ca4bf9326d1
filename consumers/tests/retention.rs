//! Storage that lasts, on a real Postgres (`DATABASE_URL`) and SQLite:
//! - the sink's writes make exactly the time partitions their rows need, and the next span's;
//! - reads that span partitions answer as before;
//! - retention drops exactly the partitions past it (Postgres) or deletes exactly the rows past
//!   it (SQLite), and `forecasts_latest` and the accuracy scores stay whole;
//! - rows written before partitioning (migration 0007) are moved into partitions on open.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use std::collections::BTreeMap;

use rust_decimal::Decimal;
use sqlx::Connection as _;
use tickcast_consumers::store::retention::Retention;
use tickcast_consumers::store::{
    self, AccuracyQuery, AccuracyRow, CandleQuery, Checkpoint, ForecastQuery, Pos, SinkBatch, Store,
};
use tickcast_pipeline::domain::{Candle, Forecast, SCHEMA_VERSION};

const DAY: i64 = 86_400_000;
/// 2026-12-01T00:00:00Z.
const D0: i64 = 1_796_083_200_000;

fn candle(interval: &str, open_ms: i64, len_ms: i64) -> Candle {
    let p = Decimal::new(100, 0);
    Candle {
        v: SCHEMA_VERSION,
        exchange: "binance".into(),
        symbol: "BTC-USDT".into(),
        interval: interval.into(),
        open_ms,
        close_ms: open_ms + len_ms,
        open: p,
        high: p,
        low: p,
        close: p,
        volume: Decimal::ONE,
        trades: 1,
    }
}

fn forecast(symbol: &str, base_ms: i64) -> Forecast {
    Forecast {
        v: SCHEMA_VERSION,
        exchange: "binance".into(),
        symbol: symbol.into(),
        interval: "1m".into(),
        model: "naive".into(),
        horizon: 1,
        base_ms,
        target_ms: base_ms + 60_000,
        last: 100.0,
        point: 100.0,
        lo80: 99.0,
        hi80: 101.0,
        lo95: 98.0,
        hi95: 102.0,
    }
}

/// Forecasts at 01:00 and 13:00 of days 0, 1 and 2 for two symbols; 1 s candles at the same
/// times; 1 m candles on days 0 and 40; one 1 h candle on day 0.
fn seed() -> SinkBatch {
    let mut b = SinkBatch::default();
    let mut offset = 0;
    let mut pos = |topic: &str| {
        offset += 1;
        Pos {
            topic: topic.into(),
            partition: 0,
            offset,
        }
    };
    for day in 0..3 {
        for hour in [1, 13] {
            let t = D0 + day * DAY + hour * 3_600_000;
            for sym in ["BTC-USDT", "ETH-USDT"] {
                b.forecasts.push((pos("f"), forecast(sym, t)));
            }
            b.candles.push((pos("c"), candle("1s", t, 1_000)));
        }
    }
    for day in [0, 40] {
        b.candles
            .push((pos("c"), candle("1m", D0 + day * DAY + 3_600_000, 60_000)));
    }
    b.candles.push((pos("c"), candle("1h", D0, 3_600_000)));
    b.offsets = BTreeMap::from([(("f".into(), 0), offset + 1)]);
    b
}

fn accuracy() -> AccuracyRow {
    AccuracyRow {
        exchange: "binance".into(),
        symbol: "BTC-USDT".into(),
        interval: "1m".into(),
        model: "naive".into(),
        horizon: 1,
        ts_ms: D0,
        n: 30,
        mae: 1.0,
        rmse: 1.5,
        mase: Some(1.0),
        rel_mae: Some(1.0),
        coverage80: 0.8,
        coverage95: 0.95,
        winkler95: 4.0,
        directional_accuracy: Some(0.5),
    }
}

async fn all_forecasts(s: &dyn Store, from_ms: Option<i64>, to_ms: Option<i64>) -> Vec<i64> {
    let mut v: Vec<i64> = s
        .forecasts(&ForecastQuery {
            symbol: Some("BTC-USDT".into()),
            from_ms,
            to_ms,
            limit: 10_000,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_iter()
        .map(|f| f.base_ms)
        .collect();
    v.sort_unstable();
    v
}

async fn candle_opens(s: &dyn Store, interval: &str) -> Vec<i64> {
    let mut v: Vec<i64> = s
        .candles(&CandleQuery {
            interval: Some(interval.into()),
            limit: 10_000,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.open_ms)
        .collect();
    v.sort_unstable();
    v
}

fn hours(day: i64, hour: i64) -> i64 {
    D0 + day * DAY + hour * 3_600_000
}

/// Seeds `store`, checks reads across spans, applies a one-day retention at noon of day 2.
async fn seed_and_retain(store: &dyn Store) -> store::RetentionReport {
    store.write_batch("sink", &seed()).await.unwrap();
    store
        .save_checkpoint(
            "forecast",
            &Checkpoint {
                accuracy: vec![accuracy()],
                ..Checkpoint::default()
            },
        )
        .await
        .unwrap();
    let everything: Vec<i64> = (0..3).flat_map(|d| [hours(d, 1), hours(d, 13)]).collect();
    // Reads spanning partitions: the forecasts query bounds the target time.
    assert_eq!(all_forecasts(store, None, None).await, everything);
    assert_eq!(
        all_forecasts(store, Some(hours(0, 13)), Some(hours(2, 2))).await,
        vec![hours(0, 13), hours(1, 1), hours(1, 13), hours(2, 1)]
    );
    let policy = Retention::parse("forecasts=1d,1s=1d").unwrap();
    store.apply_retention(&policy, hours(2, 12)).await.unwrap()
}

/// After retention: day 0's rows are gone (Postgres: its partitions; SQLite: every row before
/// the cutoff, noon of day 1), the rest answer as before.
async fn check_after(store: &dyn Store, cut_rows_of_day1: bool) {
    let kept: Vec<i64> = if cut_rows_of_day1 {
        vec![hours(1, 13), hours(2, 1), hours(2, 13)]
    } else {
        vec![hours(1, 1), hours(1, 13), hours(2, 1), hours(2, 13)]
    };
    assert_eq!(all_forecasts(store, None, None).await, kept);
    assert_eq!(candle_opens(store, "1s").await, kept);
    // 1 m (a year) and 1 h (kept) candles are untouched.
    assert_eq!(
        candle_opens(store, "1m").await,
        vec![hours(0, 1), hours(40, 1)]
    );
    assert_eq!(candle_opens(store, "1h").await, vec![D0]);
    // The newest forecast per series and the scores stay.
    let latest = store
        .latest_forecasts(&ForecastQuery {
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(latest.len(), 2);
    assert!(latest.iter().all(|f| f.base_ms == hours(2, 13)));
    let scores = store
        .accuracy(&AccuracyQuery {
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(scores, vec![accuracy()]);
}

async fn partitions_of(pool: &sqlx::PgPool, parent: &str) -> Vec<String> {
    let mut v: Vec<String> = sqlx::query_as::<_, (String,)>(
        "select c.relname::text from pg_inherits i join pg_class c on c.oid = i.inhrelid \
         where i.inhparent = $1::regclass",
    )
    .bind(parent)
    .fetch_all(pool)
    .await
    .unwrap()
    .into_iter()
    .map(|(n,)| n)
    .collect();
    v.sort();
    v
}

#[tokio::test]
async fn postgres_partitions_are_made_and_dropped_exactly() {
    let Ok(url) = std::env::var("DATABASE_URL") else {
        assert!(
            std::env::var_os("TICKCAST_REQUIRE_SERVICES").is_none(),
            "DATABASE_URL unset but TICKCAST_REQUIRE_SERVICES is set"
        );
        eprintln!("SKIPPED retention (Postgres): set DATABASE_URL");
        return;
    };
    let db = fresh_db(&url, "retention").await;
    let store = store::postgres::PgStore::connect(&db).await.unwrap();
    let pool = store.pool().clone();
    let report = seed_and_retain(&store).await;

    // Days 0–2 were written; each partition's next one was made ahead (day 3; for 1 m, the
    // 30-day span after each). Day 0's forecasts and 1 s candles are past a day's retention.
    assert_eq!(
        report.dropped,
        vec![
            "forecast_rows_p20261201".to_string(),
            "candles_1s_p20261201".to_string()
        ]
    );
    assert_eq!(
        partitions_of(&pool, "forecast_rows").await,
        [
            "forecast_rows_p20261202",
            "forecast_rows_p20261203",
            "forecast_rows_p20261204"
        ]
    );
    assert_eq!(
        partitions_of(&pool, "candles").await,
        ["candles_1h", "candles_1m", "candles_1s"]
    );
    assert_eq!(
        partitions_of(&pool, "candles_1s").await,
        [
            "candles_1s_p20261202",
            "candles_1s_p20261203",
            "candles_1s_p20261204"
        ]
    );
    // 1 m: 30-day spans from the epoch; day 0 and day 40 fall in two, each with its next.
    let m = partitions_of(&pool, "candles_1m").await;
    assert_eq!(m.len(), 4, "{m:?}");
    assert_eq!(partitions_of(&pool, "candles_1h").await.len(), 2);
    check_after(&store, false).await;

    // Applying it again drops nothing more.
    let again = store
        .apply_retention(
            &Retention::parse("forecasts=1d,1s=1d").unwrap(),
            hours(2, 12),
        )
        .await
        .unwrap();
    assert!(again.dropped.is_empty(), "{again:?}");
}

#[tokio::test]
async fn sqlite_deletes_exactly_the_rows_past_retention() {
    let dir = std::env::temp_dir().join(format!("tickcast-retention-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let url = format!("sqlite:{}", dir.join("t.db").display());
    let store = store::open(&url).await.unwrap();
    let report = seed_and_retain(&*store).await;
    // Forecasts before noon of day 1 (2 times × 2 symbols + 1 time × 2 symbols) and 1 s
    // candles (3).
    assert_eq!(report.deleted, 6 + 3);
    assert!(report.dropped.is_empty());
    check_after(&*store, true).await;
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A row of the `forecasts` view: exchange, symbol, model, horizon, base_ms, point, lo95, hi95.
type ViewRow = (String, String, String, i32, i64, f64, f64, f64);

/// A database as an earlier version left it: every migration before `version` applied.
async fn migrated_before(db: &str, version: i64) {
    let mut m = sqlx::migrate!("../migrations/postgres");
    let older: Vec<_> = m
        .migrations
        .iter()
        .filter(|x| x.version < version)
        .cloned()
        .collect();
    m.migrations = older.into();
    let pool = sqlx::PgPool::connect(db).await.unwrap();
    m.run(&pool).await.unwrap();
    pool.close().await;
}

#[tokio::test]
async fn rows_written_before_partitioning_and_ids_are_moved_over() {
    let Ok(url) = std::env::var("DATABASE_URL") else {
        eprintln!("SKIPPED retention (Postgres): set DATABASE_URL");
        return;
    };
    let db = fresh_db(&url, "adopt").await;
    // As migrations 0007 and 0008 leave a database that had rows: forecasts in a day
    // partition of the partitioned table, and the old unpartitioned tables (which 0007 makes
    // and the first process to open the store empties) beside the new.
    migrated_before(&db, 9).await;
    let mut conn = sqlx::PgConnection::connect(&db).await.unwrap();
    for sql in [
        "create table forecasts_p20261202 partition of forecasts \
         for values from (1796169600000) to (1796256000000)",
        "insert into forecasts values \
         ('binance','BTC-USDT','1m','lstm',5,1796169600000,1796169900000,1,1.5,0,2,-1,3), \
         ('kraken','ETH-USD','1m','naive',1,1796169660000,1796169720000,2,2,1,3,0,4)",
        "insert into candles_unpartitioned values \
         ('binance','BTC-USDT','1m',1796083200000,1796083260000,1,2,0.5,1.5,3,4), \
         ('binance','BTC-USDT','1s',1796169600000,1796169601000,1,1,1,1,1,1)",
        "insert into forecasts_latest values \
         ('kraken','ETH-USD','1m','naive',1,1796169660000,1796169720000,2,2,1,3,0,4)",
        "insert into forecasts_unpartitioned values \
         ('binance','BTC-USDT','1m','naive',1,1796083200000,1796083260000,1,1,0,2,-1,3), \
         ('binance','BTC-USDT','1m','naive',1,1796256000000,1796256060000,1,1,0,2,-1,3)",
    ] {
        sqlx::query(sql).execute(&mut conn).await.unwrap();
    }
    drop(conn);
    let store = store::postgres::PgStore::connect(&db).await.unwrap();
    let pool = store.pool().clone();
    assert_eq!(
        partitions_of(&pool, "forecast_rows").await,
        [
            "forecast_rows_p20261201",
            "forecast_rows_p20261202",
            "forecast_rows_p20261203"
        ]
    );
    assert_eq!(
        partitions_of(&pool, "candles_1s").await,
        ["candles_1s_p20261202"]
    );
    assert_eq!(store.row_counts().await.unwrap(), (2, 4));
    // Every row reads back through the `forecasts` view with its names, exactly.
    let rows: Vec<ViewRow> = sqlx::query_as(
        "select exchange, symbol, model, horizon, base_ms, point, lo95, hi95 from forecasts \
         order by base_ms, exchange",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    let row = |e: &str, s: &str, m: &str, h: i32, b: i64, p: f64, lo: f64, hi: f64| {
        (e.to_string(), s.to_string(), m.to_string(), h, b, p, lo, hi)
    };
    assert_eq!(
        rows,
        vec![
            row(
                "binance",
                "BTC-USDT",
                "naive",
                1,
                1_796_083_200_000,
                1.0,
                -1.0,
                3.0
            ),
            row(
                "binance",
                "BTC-USDT",
                "lstm",
                5,
                1_796_169_600_000,
                1.5,
                -1.0,
                3.0
            ),
            row(
                "kraken",
                "ETH-USD",
                "naive",
                1,
                1_796_169_660_000,
                2.0,
                0.0,
                4.0
            ),
            row(
                "binance",
                "BTC-USDT",
                "naive",
                1,
                1_796_256_000_000,
                1.0,
                -1.0,
                3.0
            ),
        ]
    );
    // The latest forecasts moved over too.
    let latest: Vec<(String, String, i64, f64)> =
        sqlx::query_as("select symbol, model, base_ms, hi95 from forecasts_latest")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(
        latest,
        vec![("ETH-USD".into(), "naive".into(), 1_796_169_660_000, 4.0)]
    );
    // Two series, two models: each name stored once.
    let (series, models): (i64, i64) = sqlx::query_as(
        "select (select count(*) from forecast_series), (select count(*) from forecast_models)",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!((series, models), (2, 2));
    let (left,): (bool,) = sqlx::query_as(
        "select to_regclass('candles_unpartitioned') is not null \
         or to_regclass('forecasts_unpartitioned') is not null \
         or to_regclass('forecast_rows_unpartitioned') is not null",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert!(!left, "the old tables were not dropped");
}

async fn fresh_db(url: &str, name: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    let db = format!("{name}_{}_{nanos}", std::process::id());
    store::postgres::create_database_beside(url, &db)
        .await
        .unwrap()
}
