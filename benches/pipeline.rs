//! End-to-end throughput: seeded trades through replay → ingest → Kafka → candles → forecast →
//! sink → store, in ticks per second, on the embedded broker + SQLite and (when
//! `KAFKA_BOOTSTRAP` and `DATABASE_URL` are set) on Apache Kafka + Postgres.
//!
//! Baseline in the same run: the ingest leg alone (replay → ingest → Kafka, acknowledged),
//! so the report states what the stream stages and the store cost on top of getting ticks in.
//!
//! `scripts/bench-pipeline.sh` starts the services and runs this; or
//! `cargo bench --bench pipeline -- [TRADES]`.

#![allow(clippy::unwrap_used)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use common::{ALL, Env, Mode, Parts, Pipeline};
use prometheus::core::Collector as _;
use tickcast_core::telemetry;

const SEED: u64 = 7;
const HORIZONS: &[u32] = &[1, 5, 15];

fn ingested() -> u64 {
    telemetry::FEED_TRADES
        .collect()
        .iter()
        .flat_map(|f| f.get_metric())
        .map(|m| m.get_counter().get_value() as u64)
        .sum()
}

/// Seconds for the ingest leg alone to publish `trades` ticks.
async fn ingest_only(mode: Mode, trades: u64) -> Option<f64> {
    let env = Env::new(mode, "bench_ingest", 3).await?;
    let before = ingested();
    let start = Instant::now();
    let parts = Parts {
        ingest: true,
        stages: &[],
        api: false,
    };
    let p = Pipeline::start(&env, SEED, trades, HORIZONS, parts).await;
    let ok = common::eventually(Duration::from_secs(600), || async {
        ingested() - before >= trades
    })
    .await;
    let secs = start.elapsed().as_secs_f64();
    p.stop().await;
    assert!(ok, "ingest did not finish");
    Some(secs)
}

/// Seconds until every expected candle and forecast is in the store.
async fn full(mode: Mode, trades: u64) -> Option<f64> {
    let env = Env::new(mode, "bench_full", 3).await?;
    let expected = common::expected_candles(SEED, trades as usize);
    let forecasts = common::expected_forecast_count(&expected, HORIZONS);
    let start = Instant::now();
    let p = Pipeline::start(&env, SEED, trades, HORIZONS, Parts { api: false, ..ALL }).await;
    let store = env.store.clone();
    let ok = common::eventually(Duration::from_secs(900), || {
        let store = store.clone();
        let n = expected.len();
        async move {
            common::candle_count(&*store).await >= n
                && common::forecast_count(&*store).await >= forecasts
        }
    })
    .await;
    let secs = start.elapsed().as_secs_f64();
    p.stop().await;
    assert!(ok, "pipeline did not finish");
    assert_eq!(
        common::candle_count(&*env.store).await,
        expected.len(),
        "bench results must be exact too"
    );
    assert_eq!(common::forecast_count(&*env.store).await, forecasts);
    Some(secs)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 4)]
async fn main() {
    let trades: u64 = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(200_000);
    println!(
        "tickcast end-to-end throughput, {trades} seeded trades, 2 symbols, 1m candles, horizons {HORIZONS:?}"
    );
    println!(
        "{:<28} {:>12} {:>14} {:>12} {:>14} {:>8}",
        "backend", "ingest s", "ingest tick/s", "full s", "full tick/s", "ratio"
    );
    for (mode, label) in [
        (Mode::Embedded, "embedded broker + SQLite"),
        (Mode::Real, "Apache Kafka + Postgres"),
    ] {
        if mode == Mode::Real && std::env::var("KAFKA_BOOTSTRAP").is_err() {
            println!("{label:<28} skipped (KAFKA_BOOTSTRAP / DATABASE_URL not set)");
            continue;
        }
        let (Some(i), Some(f)) = (ingest_only(mode, trades).await, full(mode, trades).await) else {
            continue;
        };
        let (ir, fr) = (trades as f64 / i, trades as f64 / f);
        println!(
            "{label:<28} {i:>12.2} {ir:>14.0} {f:>12.2} {fr:>14.0} {:>8.2}",
            fr / ir
        );
    }
    println!("ratio = full-pipeline ticks/s ÷ ingest-only ticks/s (same backend, same run)");
}
