//! Storage that lasts, on a real Postgres (`DATABASE_URL`) and SQLite:
//! - the sink's writes make exactly the time partitions their rows need, and the next span's;
//! - reads that span partitions answer as before;
//! - retention drops exactly the partitions past it (Postgres) or deletes exactly the rows past
//!   it (SQLite), and `forecasts_latest` and the accuracy scores stay whole;
//! - rows written before partitioning (migration 0007) are moved into partitions on open;
//! - rows written before version 2 forecasts (Postgres migration 0010, SQLite 0007) read back
//!   exactly, as version 1, beside the version 2 rows written after.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use std::collections::BTreeMap;

use rust_decimal::Decimal;
use sqlx::Connection as _;
use tickcast_core::domain::{
    Candle, FORECAST_VERSION, Forecast, Name, SCHEMA_VERSION, TouchCalibration,
};
use tickcast_store::retention::Retention;
use tickcast_store::{
    self as store, AccuracyQuery, AccuracyRow, CandleQuery, Checkpoint, ForecastQuery, Pos,
    QueryStore, SinkBatch, SinkStore, Store,
};

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
        ..Default::default()
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
        crps: None,
        crps_rel: None,
        pit_max_err: None,
        touch_brier: None,
        touch_brier_rel: None,
        touch_ece: None,
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
    // Through the store, every moved row is a version 1 forecast (0010's columns null).
    let moved = store
        .forecasts(&ForecastQuery {
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(moved.len(), 4);
    assert!(
        moved
            .iter()
            .all(|f| f.v == 1 && f.quantiles.is_none() && f.degraded.is_none()),
        "{moved:?}"
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

/// The version 1 forecasts a database holds before version 2's columns: two bars of one key
/// (with values at the edges of f64) and one of another series and model. In `forecasts`
/// order (target time, then names).
fn stored_v1() -> Vec<Forecast> {
    let mut edge = forecast("BTC-USDT", D0 + 60_000);
    edge.last = 5e-324;
    edge.point = 123_456.789_012_345_67;
    edge.lo80 = -1e-300;
    edge.hi80 = f64::MAX;
    edge.lo95 = f64::MIN;
    edge.hi95 = 1e300;
    let newer = forecast("BTC-USDT", D0 + 120_000);
    let other = Forecast {
        exchange: "kraken".into(),
        model: "lstm".into(),
        horizon: 5,
        target_ms: D0 + 120_000 + 5 * 60_000,
        point: 100.25,
        ..forecast("ETH-USD", D0 + 120_000)
    };
    vec![edge, newer, other]
}

/// A version 2 forecast of the same series and model as `stored_v1`'s first, a bar later.
fn written_v2() -> Forecast {
    let version: Name = "naive.r1.00c0ffee".into();
    Forecast {
        v: FORECAST_VERSION,
        quantiles: Some([
            -0.0,
            1e-300,
            97.5,
            98.0,
            100.0,
            101.0,
            101.5,
            102.0,
            f64::MAX,
        ]),
        touch: Some(TouchCalibration {
            alpha: -0.5,
            beta: 1e-300,
        }),
        model_version: Some(version),
        degraded: Some(true),
        ..forecast("BTC-USDT", D0 + 180_000)
    }
}

/// The bits of every float of `fs`.
fn float_bits(fs: &[Forecast]) -> Vec<Vec<u64>> {
    fs.iter()
        .map(|f| {
            let mut xs = vec![f.last, f.point, f.lo80, f.hi80, f.lo95, f.hi95];
            xs.extend(f.quantiles.iter().flatten());
            xs.extend(f.touch.iter().flat_map(|t| [t.alpha, t.beta]));
            xs.into_iter().map(f64::to_bits).collect()
        })
        .collect()
}

/// After the upgrade: the old rows (`old`, newest per key in `old_latest`) read back exactly
/// as version 1, with the score saved before; then a version 2 forecast of the first key goes
/// in beside them and becomes its latest.
async fn check_upgraded(store: &dyn Store, old: &[Forecast], old_latest: &[Forecast]) {
    let all = ForecastQuery {
        limit: 100,
        ..Default::default()
    };
    let back = store.forecasts(&all).await.unwrap();
    assert_eq!(back, old);
    assert_eq!(float_bits(&back), float_bits(old));
    assert!(back.iter().all(|f| f.v == 1 && f.model_version.is_none()));
    let latest = store.latest_forecasts(&all).await.unwrap();
    assert_eq!(latest, old_latest);
    assert_eq!(float_bits(&latest), float_bits(old_latest));
    let scores = store
        .accuracy(&AccuracyQuery {
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(scores, vec![accuracy()]);

    let v2 = written_v2();
    let batch = SinkBatch {
        forecasts: vec![(
            Pos {
                topic: "f".into(),
                partition: 0,
                offset: 0,
            },
            v2.clone(),
        )],
        offsets: BTreeMap::from([(("f".into(), 0), 1)]),
        ..Default::default()
    };
    store.write_batch("sink", &batch).await.unwrap();
    let mut want = old.to_vec();
    want.insert(2, v2.clone());
    let back = store.forecasts(&all).await.unwrap();
    assert_eq!(back, want);
    assert_eq!(float_bits(&back), float_bits(&want));
    let mut want = old_latest.to_vec();
    want[0] = v2;
    let latest = store.latest_forecasts(&all).await.unwrap();
    assert_eq!(latest, want);
    assert_eq!(float_bits(&latest), float_bits(&want));
}

#[tokio::test]
async fn forecasts_stored_before_version_2_read_back_as_version_1_postgres() {
    let Ok(url) = std::env::var("DATABASE_URL") else {
        assert!(
            std::env::var_os("TICKCAST_REQUIRE_SERVICES").is_none(),
            "DATABASE_URL unset but TICKCAST_REQUIRE_SERVICES is set"
        );
        eprintln!("SKIPPED retention (Postgres): set DATABASE_URL");
        return;
    };
    let db = fresh_db(&url, "forecast_v2").await;
    // As migration 0009 leaves a database with rows: the names and their ids, the rows in a day
    // partition, the newest per key in `forecast_latest_rows`, a score.
    migrated_before(&db, 10).await;
    let old = stored_v1();
    let old_latest = vec![old[1].clone(), old[2].clone()];
    let mut conn = sqlx::PgConnection::connect(&db).await.unwrap();
    sqlx::query(&format!(
        "create table forecast_rows_p20261201 partition of forecast_rows \
         for values from ({D0}) to ({})",
        D0 + DAY
    ))
    .execute(&mut conn)
    .await
    .unwrap();
    for (table, rows) in [
        ("forecast_rows", &old),
        ("forecast_latest_rows", &old_latest),
    ] {
        for f in rows.iter() {
            sqlx::query(
                "insert into forecast_series (exchange, symbol, interval) values ($1, $2, $3) \
                 on conflict do nothing",
            )
            .bind(&*f.exchange)
            .bind(&*f.symbol)
            .bind(&*f.interval)
            .execute(&mut conn)
            .await
            .unwrap();
            sqlx::query("insert into forecast_models (name) values ($1) on conflict do nothing")
                .bind(&*f.model)
                .execute(&mut conn)
                .await
                .unwrap();
            sqlx::query(&format!(
                "insert into {table} select s.id, m.id, $5::int, $6::bigint, $7::bigint, \
                 $8::float8, $9::float8, $10::float8, $11::float8, $12::float8, $13::float8 \
                 from forecast_series s, forecast_models m \
                 where s.exchange = $1 and s.symbol = $2 and s.interval = $3 and m.name = $4"
            ))
            .bind(&*f.exchange)
            .bind(&*f.symbol)
            .bind(&*f.interval)
            .bind(&*f.model)
            .bind(f.horizon as i32)
            .bind(f.base_ms)
            .bind(f.target_ms)
            .bind(f.last)
            .bind(f.point)
            .bind(f.lo80)
            .bind(f.hi80)
            .bind(f.lo95)
            .bind(f.hi95)
            .execute(&mut conn)
            .await
            .unwrap();
        }
    }
    let a = accuracy();
    sqlx::query(
        "insert into accuracy values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, \
         $14, $15)",
    )
    .bind(&a.exchange)
    .bind(&a.symbol)
    .bind(&a.interval)
    .bind(&a.model)
    .bind(a.horizon)
    .bind(a.ts_ms)
    .bind(a.n)
    .bind(a.mae)
    .bind(a.rmse)
    .bind(a.mase)
    .bind(a.rel_mae)
    .bind(a.coverage80)
    .bind(a.coverage95)
    .bind(a.winkler95)
    .bind(a.directional_accuracy)
    .execute(&mut conn)
    .await
    .unwrap();
    drop(conn);

    let store = store::postgres::PgStore::connect(&db).await.unwrap();
    // In the views, the new columns are null on every old row, and the views made on them
    // still answer.
    let (nulls, outcomes, newest): (i64, i64, i64) = sqlx::query_as(
        "select (select count(*) from forecasts where quantiles is null and touch_alpha is null \
                 and touch_beta is null and model_version is null and degraded is null), \
                (select count(*) from forecast_outcomes), (select count(*) from latest_forecasts)",
    )
    .fetch_one(store.pool())
    .await
    .unwrap();
    assert_eq!((nulls, outcomes, newest), (3, 3, 2));
    check_upgraded(&store, &old, &old_latest).await;
    // The new row in the view: its quantiles as one array, its version by name.
    let (quantiles, version, degraded): (Vec<f64>, String, bool) = sqlx::query_as(
        "select quantiles, model_version, degraded from forecasts where quantiles is not null",
    )
    .fetch_one(store.pool())
    .await
    .unwrap();
    let v2 = written_v2();
    assert_eq!(
        quantiles.iter().map(|q| q.to_bits()).collect::<Vec<_>>(),
        v2.quantiles.unwrap().map(f64::to_bits)
    );
    assert_eq!((version.as_str(), degraded), ("naive.r1.00c0ffee", true));
}

#[tokio::test]
async fn forecasts_stored_before_version_2_read_back_as_version_1_sqlite() {
    let dir = std::env::temp_dir().join(format!("tickcast-forecast-v2-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let url = format!("sqlite:{}", dir.join("t.db").display());
    // As migration 0006 leaves a database with rows.
    {
        let opts = <sqlx::sqlite::SqliteConnectOptions as std::str::FromStr>::from_str(&url)
            .unwrap()
            .create_if_missing(true);
        let pool = sqlx::SqlitePool::connect_with(opts).await.unwrap();
        let mut m = sqlx::migrate!("../migrations/sqlite");
        m.migrations = m
            .migrations
            .iter()
            .filter(|x| x.version < 7)
            .cloned()
            .collect::<Vec<_>>()
            .into();
        m.run(&pool).await.unwrap();
        let old = stored_v1();
        for (table, rows) in [("forecasts", &old[..]), ("forecasts_latest", &old[1..])] {
            for f in rows {
                sqlx::query(&format!(
                    "insert into {table} values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, \
                     $12, $13)"
                ))
                .bind(&*f.exchange)
                .bind(&*f.symbol)
                .bind(&*f.interval)
                .bind(&*f.model)
                .bind(f.horizon as i32)
                .bind(f.base_ms)
                .bind(f.target_ms)
                .bind(f.last)
                .bind(f.point)
                .bind(f.lo80)
                .bind(f.hi80)
                .bind(f.lo95)
                .bind(f.hi95)
                .execute(&pool)
                .await
                .unwrap();
            }
        }
        let a = accuracy();
        sqlx::query(
            "insert into accuracy values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, \
             $13, $14, $15)",
        )
        .bind(&a.exchange)
        .bind(&a.symbol)
        .bind(&a.interval)
        .bind(&a.model)
        .bind(a.horizon)
        .bind(a.ts_ms)
        .bind(a.n)
        .bind(a.mae)
        .bind(a.rmse)
        .bind(a.mase)
        .bind(a.rel_mae)
        .bind(a.coverage80)
        .bind(a.coverage95)
        .bind(a.winkler95)
        .bind(a.directional_accuracy)
        .execute(&pool)
        .await
        .unwrap();
        pool.close().await;
    }
    let store = store::open(&url).await.unwrap();
    let old = stored_v1();
    check_upgraded(&*store, &old, &old[1..]).await;
    drop(store);
    std::fs::remove_dir_all(&dir).unwrap();
}
