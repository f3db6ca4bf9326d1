//! The sink's write path into Postgres against Postgres's own bulk load, in the same run:
//! - **sink**: `Store::write_batch` with batches of 5,000 forecasts, as the sink stage calls it
//!   (partitions made as needed, `forecast_rows` and `forecast_latest_rows` written, offsets stored,
//!   one transaction per batch);
//! - **COPY**: the same rows into the same table of a second fresh database
//!   (`COPY forecast_rows FROM STDIN`, one statement, partitions and the names' ids made
//!   beforehand).
//!
//! The rows are version 2 forecasts, as the forecast stage publishes them: nine quantiles around
//! the point, a touch calibration, one shared model version per model, not degraded.
//!
//! Also the bytes a forecast row takes on disk (table and indexes of the `forecast_rows`
//! partitions), and from it the bytes per day of 1,000 symbols on 1-minute bars with the
//! default models (4 and the ensemble) and horizons (1, 5, 15).
//!
//! `scripts/bench-sink.sh [SYMBOLS] [BARS]` runs it (default 1,000 symbols × 10 bars × 15 =
//! 150,000 rows); or `DATABASE_URL=postgres://… cargo bench -p tickcast-consumers --bench sink
//! -- [SYMBOLS] [BARS]`. Results also go to `SINK_BENCH_OUT` (key=value) when set.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Instant;

use sqlx::Connection as _;
use tickcast_core::domain::{FORECAST_VERSION, Forecast, Name, TouchCalibration};
use tickcast_store::postgres::PgStore;
use tickcast_store::{Pos, QueryStore, SinkBatch, SinkStore};

/// The default models and the ensemble.
const MODELS: [&str; 5] = ["naive", "garch", "ets", "lstm", "ensemble"];
const HORIZONS: [u32; 3] = [1, 5, 15];
const BATCH: usize = 5_000;
/// 2026-12-01T00:00:00Z.
const T0: i64 = 1_796_083_200_000;
/// Standard normal quantiles at the levels of `Forecast::quantiles`.
const Z: [f64; 9] = [
    -1.959_964, -1.644_854, -1.281_552, -0.674_490, 0.0, 0.674_490, 1.281_552, 1.644_854, 1.959_964,
];

fn rows(symbols: usize, bars: usize) -> Vec<Forecast> {
    let mut out = Vec::with_capacity(symbols * bars * MODELS.len() * HORIZONS.len());
    // One version per model, shared by its rows as the stage shares it.
    let versions: Vec<Name> = MODELS
        .iter()
        .map(|m| match *m {
            "lstm" => format!("{m}.r1.0a9b3c2d.t1200").into(),
            _ => format!("{m}.r2.5c1f09ab").into(),
        })
        .collect();
    for bar in 0..bars {
        let base = T0 + bar as i64 * 60_000;
        for s in 0..symbols {
            let last = 100.0 + s as f64 * 0.37 + bar as f64 * 0.01;
            for (model, version) in MODELS.iter().zip(&versions) {
                for h in HORIZONS {
                    let point = last * (1.0 + 0.0001 * f64::from(h));
                    // A spread of about 1% a bar, wider with the horizon.
                    let spread = 0.0102 * f64::from(h).sqrt();
                    out.push(Forecast {
                        v: FORECAST_VERSION,
                        exchange: "binance".into(),
                        symbol: format!("S{s:04}-USDT").into(),
                        interval: "1m".into(),
                        model: (*model).into(),
                        horizon: h,
                        base_ms: base,
                        target_ms: base + i64::from(h) * 60_000,
                        last,
                        point,
                        lo80: point * 0.99,
                        hi80: point * 1.01,
                        lo95: point * 0.98,
                        hi95: point * 1.02,
                        quantiles: Some(Z.map(|z| point * (1.0 + z * spread))),
                        touch: Some(TouchCalibration {
                            alpha: -0.031 + 0.007 * (s % 9) as f64,
                            beta: 0.97 + 0.011 * f64::from(h),
                        }),
                        model_version: Some(version.clone()),
                        degraded: Some(false),
                    });
                }
            }
        }
    }
    out
}

async fn fresh_db(url: &str, name: &str) -> String {
    let db = format!("{name}_{}", std::process::id());
    let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
    sqlx::query(&format!("drop database if exists \"{db}\""))
        .execute(&mut conn)
        .await
        .unwrap();
    tickcast_store::postgres::create_database_beside(url, &db)
        .await
        .unwrap()
}

async fn drop_db(url: &str, db_url: &str) {
    let db = db_url
        .rsplit('/')
        .next()
        .unwrap()
        .split('?')
        .next()
        .unwrap();
    let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
    sqlx::query(&format!("drop database if exists \"{db}\" with (force)"))
        .execute(&mut conn)
        .await
        .unwrap();
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let symbols: usize = args.first().and_then(|a| a.parse().ok()).unwrap_or(1_000);
    let bars: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(10);
    let url = std::env::var("DATABASE_URL").expect("DATABASE_URL (scripts/bench-sink.sh sets it)");
    let all = rows(symbols, bars);
    let n = all.len();
    eprintln!(
        "{n} forecast rows: {symbols} symbols × {bars} bars × {} models × {} horizons",
        MODELS.len(),
        HORIZONS.len()
    );

    // The sink's path.
    let sink_url = fresh_db(&url, "bench_sink").await;
    let store = PgStore::connect(&sink_url).await.unwrap();
    let mut offset = 0i64;
    let batches: Vec<SinkBatch> = all
        .chunks(BATCH)
        .map(|chunk| {
            let mut b = SinkBatch::default();
            for f in chunk {
                b.forecasts.push((
                    Pos {
                        topic: "tickcast.forecasts.v1".into(),
                        partition: 0,
                        offset,
                    },
                    f.clone(),
                ));
                offset += 1;
            }
            b.offsets
                .insert(("tickcast.forecasts.v1".into(), 0), offset);
            b
        })
        .collect();
    let started = Instant::now();
    for b in &batches {
        store.write_batch("bench", b).await.unwrap();
    }
    let sink_s = started.elapsed().as_secs_f64();
    let (_, stored) = store.row_counts().await.unwrap();
    assert_eq!(stored as usize, n, "the sink stored every row");
    let (bytes,): (i64,) = sqlx::query_as(
        "select coalesce(sum(pg_total_relation_size(inhrelid)), 0)::bigint from pg_inherits \
         where inhparent = 'forecast_rows'::regclass",
    )
    .fetch_one(store.pool())
    .await
    .unwrap();

    // COPY of the same rows into the same table (partitions and the names' ids made by the
    // sink's path first, then the rows emptied).
    let copy_url = fresh_db(&url, "bench_copy").await;
    let copy_store = PgStore::connect(&copy_url).await.unwrap();
    for b in &batches {
        copy_store.write_batch("bench", b).await.unwrap();
    }
    let mut conn = sqlx::PgConnection::connect(&copy_url).await.unwrap();
    sqlx::query("truncate forecast_rows, forecast_latest_rows")
        .execute(&mut conn)
        .await
        .unwrap();
    let series: std::collections::HashMap<String, i32> =
        sqlx::query_as::<_, (i32, String)>("select id, symbol from forecast_series")
            .fetch_all(&mut conn)
            .await
            .unwrap()
            .into_iter()
            .map(|(id, s)| (s, id))
            .collect();
    let models: std::collections::HashMap<String, i16> =
        sqlx::query_as::<_, (i16, String)>("select id, name from forecast_models")
            .fetch_all(&mut conn)
            .await
            .unwrap()
            .into_iter()
            .map(|(id, m)| (m, id))
            .collect();
    let versions: std::collections::HashMap<String, i32> =
        sqlx::query_as::<_, (i32, String)>("select id, name from forecast_model_versions")
            .fetch_all(&mut conn)
            .await
            .unwrap()
            .into_iter()
            .map(|(id, v)| (v, id))
            .collect();
    let mut text = String::with_capacity(n * 300);
    for f in &all {
        use std::fmt::Write as _;
        write!(
            text,
            "{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}",
            series[&*f.symbol],
            models[&*f.model],
            f.horizon,
            f.base_ms,
            f.target_ms,
            f.last,
            f.point,
            f.lo80,
            f.hi80,
            f.lo95,
            f.hi95
        )
        .unwrap();
        for q in f.quantiles.expect("version 2") {
            write!(text, "\t{q}").unwrap();
        }
        let touch = f.touch.expect("version 2");
        let version = f.model_version.as_deref().expect("version 2");
        let degraded = if f.degraded == Some(true) { 't' } else { 'f' };
        writeln!(
            text,
            "\t{}\t{}\t{}\t{degraded}",
            touch.alpha, touch.beta, versions[version]
        )
        .unwrap();
    }
    let started = Instant::now();
    let mut copy = conn
        .copy_in_raw("copy forecast_rows from stdin")
        .await
        .unwrap();
    copy.send(text.as_bytes()).await.unwrap();
    let copied = copy.finish().await.unwrap();
    let copy_s = started.elapsed().as_secs_f64();
    assert_eq!(copied as usize, n, "COPY loaded every row");
    drop(conn);
    drop(store);
    drop(copy_store);
    drop_db(&url, &sink_url).await;
    drop_db(&url, &copy_url).await;

    let sink_rps = n as f64 / sink_s;
    let copy_rps = n as f64 / copy_s;
    let bytes_per_row = bytes as f64 / n as f64;
    let rows_per_day_1000 = 1_000.0 * (MODELS.len() * HORIZONS.len()) as f64 * 1_440.0;
    let gb_per_day_1000 = rows_per_day_1000 * bytes_per_row / 1e9;
    println!("sink (write_batch, {BATCH}/batch): {sink_rps:>10.0} rows/s ({sink_s:.2} s)");
    println!("COPY (one statement):        {copy_rps:>10.0} rows/s ({copy_s:.2} s)");
    println!("sink / COPY:                 {:>10.2}", sink_rps / copy_rps);
    println!("bytes per forecast row:      {bytes_per_row:>10.0} (table and indexes)");
    println!(
        "1,000 symbols, 1 m bars, {} models × {} horizons: {:.1} M rows/day, {gb_per_day_1000:.1} GB/day",
        MODELS.len(),
        HORIZONS.len(),
        rows_per_day_1000 / 1e6
    );
    if let Ok(out) = std::env::var("SINK_BENCH_OUT") {
        std::fs::write(
            out,
            format!(
                "rows={n}\nsink_rps={sink_rps:.0}\ncopy_rps={copy_rps:.0}\nratio={:.3}\nbytes_per_row={bytes_per_row:.1}\ngb_per_day_1000={gb_per_day_1000:.2}\n",
                sink_rps / copy_rps
            ),
        )
        .unwrap();
    }
}
