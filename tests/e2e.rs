//! End to end: replay exchange → ingest → Kafka → candles → forecast → sink → store → API,
//! on (a) Apache Kafka + Postgres and (b) the embedded broker + SQLite. Asserts the exact
//! candles, the exact number of forecasts, what the API serves, and that a poison message on
//! the ticks topic lands in the dead-letter topic while the pipeline goes on.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

mod common;

use std::time::Duration;

use common::{ALL, Env, Mode, Pipeline};
use rdkafka::Message as _;
use rdkafka::consumer::{Consumer as _, StreamConsumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use tickcast_core::deadletter::DeadLetter;
use tickcast_core::domain::{Candle, Forecast};

const SEED: u64 = 20_240_808;
const TRADES: usize = 30_000;
const HORIZONS: &[u32] = &[1, 5, 15];

#[derive(serde::Deserialize)]
struct Page<T> {
    data: Vec<T>,
    count: usize,
}

async fn produce_poison(env: &Env) {
    let p: FutureProducer = env.settings().client_config().create().unwrap();
    let topic = env.topics.ticks();
    let rec = FutureRecord::to(&topic)
        .key("binance:BTC-USDT")
        .payload("{\"v\":1,\"price\":\"oops\"}");
    p.send(rec, Duration::from_secs(10))
        .await
        .map_err(|(e, _)| e)
        .unwrap();
}

async fn dead_letters(env: &Env, expected: usize) -> Vec<DeadLetter> {
    let consumer: StreamConsumer = env
        .settings()
        .client_config()
        .set("group.id", format!("{}dl-reader", env.group_prefix))
        .set("auto.offset.reset", "earliest")
        .create()
        .unwrap();
    consumer.subscribe(&[&env.topics.deadletter()]).unwrap();
    let mut out = Vec::new();
    while out.len() < expected {
        let m = tokio::time::timeout(Duration::from_secs(30), consumer.recv())
            .await
            .expect("dead letter arrives")
            .unwrap();
        out.push(serde_json::from_slice(m.payload().unwrap()).unwrap());
    }
    // Nothing more arrives.
    assert!(
        tokio::time::timeout(Duration::from_secs(2), consumer.recv())
            .await
            .is_err(),
        "unexpected extra dead letter"
    );
    out
}

async fn end_to_end(mode: Mode) {
    let Some(env) = Env::new(mode, "e2e", 3).await else {
        return;
    };
    let expected = common::expected_candles(SEED, TRADES);
    let expected_forecasts = common::expected_forecast_count(&expected, HORIZONS);
    assert!(
        expected.len() > 150,
        "the run should close many candles, got {}",
        expected.len()
    );

    produce_poison(&env).await;
    let pipeline = Pipeline::start(&env, SEED, TRADES as u64, HORIZONS, ALL).await;
    let store = env.store.clone();
    let done = common::eventually(Duration::from_secs(120), || {
        let store = store.clone();
        let (n, nf) = (expected.len(), expected_forecasts);
        async move {
            common::candle_count(&*store).await >= n && common::forecast_count(&*store).await >= nf
        }
    })
    .await;
    assert!(
        done,
        "{mode:?}: pipeline did not deliver everything in time"
    );
    // Let anything extra (there must be nothing) arrive before the exact comparison.
    tokio::time::sleep(Duration::from_secs(2)).await;

    assert_eq!(
        common::all_candles(&*env.store).await,
        expected,
        "{mode:?}: stored candles"
    );
    assert_eq!(
        common::forecast_count(&*env.store).await,
        expected_forecasts,
        "{mode:?}: forecast rows"
    );

    // The API serves exactly what is stored.
    let base = format!("http://{}", pipeline.api_addr);
    let http = reqwest::Client::new();
    let btc: Page<Candle> = http
        .get(format!(
            "{base}/api/v1/candles?exchange=binance&symbol=BTC-USDT&interval=1m&limit=10000"
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let want: Vec<Candle> = expected
        .iter()
        .filter(|c| c.symbol == "BTC-USDT")
        .cloned()
        .collect();
    assert_eq!((btc.count, btc.data), (want.len(), want));
    let fc: Page<Forecast> = http
        .get(format!(
            "{base}/api/v1/forecasts?symbol=ETH-USDT&model=naive&horizon=5&limit=10000"
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let eth = expected.iter().filter(|c| c.symbol == "ETH-USDT").count();
    assert_eq!(
        fc.count,
        eth - 1,
        "one h=5 forecast per ETH candle after the first"
    );
    assert!(
        fc.data.iter().all(|f| f.target_ms == f.base_ms + 5 * 60_000
            && f.lo95 <= f.point
            && f.point <= f.hi95)
    );
    let bad = http
        .get(format!("{base}/api/v1/candles?limit=0"))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);

    let dl = dead_letters(&env, 1).await;
    assert_eq!(
        (dl[0].stage.as_str(), dl[0].source.as_str()),
        ("candles", env.topics.ticks().as_str())
    );
    assert!(
        dl[0].reason.contains("price"),
        "reason names the field: {}",
        dl[0].reason
    );

    pipeline.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn end_to_end_on_kafka_and_postgres() {
    end_to_end(Mode::Real).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn end_to_end_on_embedded_broker_and_sqlite() {
    end_to_end(Mode::Embedded).await;
}
