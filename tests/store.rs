//! The two `Store` implementations behave the same: upserts on natural keys, offsets and rows in
//! one transaction, records below the stored offsets skipped, filters and pagination.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

mod common;

use std::collections::BTreeMap;

use common::Mode;
use rust_decimal::Decimal;
use tickcast_consumers::store::{CandleQuery, ForecastQuery, Pos, SinkBatch, WriteSummary};
use tickcast_pipeline::domain::{Candle, Forecast, SCHEMA_VERSION};

fn candle(symbol: &str, minute: i64, close: i64) -> Candle {
    let p = Decimal::new(close, 4);
    Candle {
        v: SCHEMA_VERSION,
        exchange: "kraken".into(),
        symbol: symbol.into(),
        interval: "1m".into(),
        open_ms: minute * 60_000,
        close_ms: (minute + 1) * 60_000,
        open: p,
        high: p,
        low: p,
        close: p,
        volume: "123456789.123456789".parse().expect("decimal"),
        trades: 3,
    }
}

fn forecast(symbol: &str, minute: i64, horizon: u32, point: f64) -> Forecast {
    Forecast {
        v: SCHEMA_VERSION,
        exchange: "kraken".into(),
        symbol: symbol.into(),
        interval: "1m".into(),
        model: "naive".into(),
        horizon,
        base_ms: minute * 60_000,
        target_ms: (minute + i64::from(horizon)) * 60_000,
        last: point,
        point,
        lo80: point - 1.0,
        hi80: point + 1.0,
        lo95: point - 2.5,
        hi95: point + 2.5,
    }
}

fn pos(topic: &str, offset: i64) -> Pos {
    Pos {
        topic: topic.into(),
        partition: 0,
        offset,
    }
}

async fn behaves(mode: Mode) {
    let sqlite = matches!(mode, Mode::Embedded);
    let Some((store, _dir)) = common::open_store(mode, "store").await else {
        return;
    };
    let batch = SinkBatch {
        candles: vec![
            (pos("c", 0), candle("BTC-USD", 1, 650_001_234)),
            (pos("c", 1), candle("BTC-USD", 2, 650_101_234)),
            (pos("c", 2), candle("ETH-USD", 1, 31_000_000)),
            // Same key again later in the batch: the later one wins.
            (pos("c", 3), candle("BTC-USD", 2, 650_202_000)),
        ],
        forecasts: vec![
            (pos("f", 0), forecast("BTC-USD", 1, 1, 65_000.5)),
            (pos("f", 1), forecast("BTC-USD", 1, 5, 65_001.0)),
        ],
        offsets: BTreeMap::from([(("c".into(), 0), 4), (("f".into(), 0), 2)]),
    };
    let s = store.write_batch("sink", &batch).await.expect("write");
    assert_eq!(
        s,
        WriteSummary {
            candles: 3,
            forecasts: 2,
            skipped: 0
        }
    );

    // Re-delivery of the same batch is skipped by offsets and changes nothing.
    let again = store.write_batch("sink", &batch).await.expect("rewrite");
    assert_eq!(
        again,
        WriteSummary {
            candles: 0,
            forecasts: 0,
            skipped: 6
        }
    );
    assert_eq!(store.offsets("sink").await.expect("offsets"), batch.offsets);

    // Exact decimals survive the round trip.
    let btc = store
        .candles(&CandleQuery {
            symbol: Some("BTC-USD".into()),
            limit: 100,
            ..Default::default()
        })
        .await
        .expect("read");
    assert_eq!(
        btc,
        vec![
            candle("BTC-USD", 1, 650_001_234),
            candle("BTC-USD", 2, 650_202_000)
        ]
    );
    assert_eq!(btc[0].volume.to_string(), "123456789.123456789");

    // A newer offset for an existing key updates it.
    let update = SinkBatch {
        candles: vec![(pos("c", 4), candle("ETH-USD", 1, 31_500_000))],
        offsets: BTreeMap::from([(("c".into(), 0), 5)]),
        ..Default::default()
    };
    store.write_batch("sink", &update).await.expect("update");
    let eth = store
        .candles(&CandleQuery {
            symbol: Some("ETH-USD".into()),
            limit: 10,
            ..Default::default()
        })
        .await
        .expect("read");
    assert_eq!(eth, vec![candle("ETH-USD", 1, 31_500_000)]);

    // Filters, ranges and limits: the newest rows (ties by exchange, symbol), oldest first.
    let all = store
        .candles(&CandleQuery {
            limit: 2,
            ..Default::default()
        })
        .await
        .expect("read");
    assert_eq!(
        all.iter()
            .map(|c| (c.symbol.as_str(), c.open_ms))
            .collect::<Vec<_>>(),
        vec![("BTC-USD", 60_000), ("BTC-USD", 120_000)]
    );
    let ranged = store
        .candles(&CandleQuery {
            from_ms: Some(60_000),
            to_ms: Some(120_000),
            limit: 10,
            ..Default::default()
        })
        .await
        .expect("read");
    assert_eq!(ranged.len(), 2);
    let f5 = store
        .forecasts(&ForecastQuery {
            horizon: Some(5),
            model: Some("naive".into()),
            limit: 10,
            ..Default::default()
        })
        .await
        .expect("read");
    assert_eq!(f5, vec![forecast("BTC-USD", 1, 5, 65_001.0)]);
    let none = store
        .forecasts(&ForecastQuery {
            model: Some("lstm".into()),
            limit: 10,
            ..Default::default()
        })
        .await
        .expect("read");
    assert!(none.is_empty());
    // A forecast delivered again under a newer offset (a restarted forecast stage), beside a
    // new one and two bars of another series: the stored row and the latest row take the new
    // values, the new rows go in, and the latest row of a series is its newest bar.
    let mut again = forecast("BTC-USD", 1, 5, 65_002.0);
    again.hi95 = 65_010.0;
    let redelivered = SinkBatch {
        forecasts: vec![
            (pos("f", 2), again.clone()),
            (pos("f", 3), forecast("BTC-USD", 2, 5, 65_003.0)),
            (pos("f", 4), forecast("SOL-USD", 3, 1, 150.0)),
            (pos("f", 5), forecast("SOL-USD", 2, 1, 149.0)),
        ],
        offsets: BTreeMap::from([(("f".into(), 0), 6)]),
        ..Default::default()
    };
    let s = store
        .write_batch("sink", &redelivered)
        .await
        .expect("redelivered");
    assert_eq!(s.forecasts, 4);
    let f5 = store
        .forecasts(&ForecastQuery {
            horizon: Some(5),
            limit: 10,
            ..Default::default()
        })
        .await
        .expect("read");
    assert_eq!(f5, vec![again.clone(), forecast("BTC-USD", 2, 5, 65_003.0)]);
    let latest = store
        .latest_forecasts(&ForecastQuery {
            limit: 10,
            ..Default::default()
        })
        .await
        .expect("latest");
    assert_eq!(
        latest,
        vec![
            forecast("BTC-USD", 1, 1, 65_000.5),
            forecast("BTC-USD", 2, 5, 65_003.0),
            forecast("SOL-USD", 3, 1, 150.0),
        ]
    );

    // Values at the edges of f64 and keys with the characters a text format escapes come
    // back bit for bit.
    let mut edge = forecast("X\\Y\tZ\nÉ", 7, 3, 0.1);
    edge.last = 5e-324;
    edge.point = -0.0;
    edge.lo80 = f64::MIN;
    edge.hi80 = f64::MAX;
    edge.lo95 = -1e-300;
    edge.hi95 = 123_456.789_012_345_67;
    let edges = SinkBatch {
        forecasts: vec![(pos("f", 6), edge.clone())],
        offsets: BTreeMap::from([(("f".into(), 0), 7)]),
        ..Default::default()
    };
    store.write_batch("sink", &edges).await.expect("edges");
    let back = store
        .forecasts(&ForecastQuery {
            symbol: Some(edge.symbol.to_string()),
            limit: 10,
            ..Default::default()
        })
        .await
        .expect("read");
    assert_eq!(back, vec![edge.clone()]);
    let bits = |f: &Forecast| [f.last, f.point, f.lo80, f.hi80, f.lo95, f.hi95].map(f64::to_bits);
    let mut want = bits(&edge);
    if sqlite {
        // SQLite stores a REAL with an integral value as an integer: −0.0 comes back as 0.
        want[1] = 0.0f64.to_bits();
    }
    assert_eq!(bits(&back[0]), want);

    // Offsets are per consumer.
    assert!(store.offsets("other").await.expect("offsets").is_empty());
    store.ping().await.expect("ping");
}

#[tokio::test]
async fn postgres_store() {
    behaves(Mode::Real).await;
}

#[tokio::test]
async fn sqlite_store() {
    behaves(Mode::Embedded).await;
}
