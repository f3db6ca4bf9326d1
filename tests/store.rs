//! The two `Store` implementations behave the same: upserts on natural keys, offsets and rows in
//! one transaction, records below the stored offsets skipped, filters and pagination; version 2
//! forecasts and the accuracy scores come back exactly, version 1 forecasts as version 1.

#![allow(clippy::unwrap_used)] // tests fail loudly by design

mod common;

use std::collections::BTreeMap;

use common::Mode;
use rust_decimal::Decimal;
use tickcast_core::domain::{
    Candle, FORECAST_VERSION, Forecast, Name, SCHEMA_VERSION, TouchCalibration,
};
use tickcast_store::{
    AccuracyQuery, AccuracyRow, CandleQuery, Checkpoint, ForecastQuery, Pos, SinkBatch,
    WriteSummary,
};

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
        ..Default::default()
    }
}

/// `f` as version 2: quantiles at the edges of f64 (−0.0, subnormal, ±MAX) in ascending
/// order, a negative touch intercept, `version` and `degraded`.
fn v2(f: Forecast, version: &Name, degraded: bool) -> Forecast {
    Forecast {
        v: FORECAST_VERSION,
        quantiles: Some([
            f64::MIN,
            -1e-300,
            -0.0,
            5e-324,
            1e-300,
            f.point - 0.1,
            f.point + 123_456.789_012_345_67,
            1e300,
            f64::MAX,
        ]),
        touch: Some(TouchCalibration {
            alpha: -3.25e-7 - f.point * 1e-12,
            beta: 1.000_000_000_000_000_2,
        }),
        model_version: Some(version.clone()),
        degraded: Some(degraded),
        ..f
    }
}

/// The bits of a forecast's floats, version 2's included (equality alone lets −0.0 be 0.0).
fn float_bits(f: &Forecast) -> Vec<u64> {
    let mut xs = vec![f.last, f.point, f.lo80, f.hi80, f.lo95, f.hi95];
    xs.extend(f.quantiles.iter().flatten());
    xs.extend(f.touch.iter().flat_map(|t| [t.alpha, t.beta]));
    xs.into_iter().map(f64::to_bits).collect()
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

/// Version 2 forecasts beside version 1's, through the sink's write and both reads, exactly;
/// a key moving between versions takes every field of the newer delivery; the accuracy
/// scores of version 2's fields come back exactly.
async fn keeps_version_2(mode: Mode) {
    let Some((store, _dir)) = common::open_store(mode, "store_v2").await else {
        return;
    };
    let ets: Name = "ets.r2.5c1f09ab".into();
    let lstm: Name = "lstm.r1.0a9b3c2d.t1200".into();
    let mut lstm_1 = v2(forecast("BTC-USD", 1, 1, 65_000.5), &lstm, false);
    lstm_1.model = "lstm".into();
    let ets_1 = v2(
        Forecast {
            model: "ets".into(),
            ..forecast("BTC-USD", 1, 1, 65_000.25)
        },
        &ets,
        true,
    );
    let ets_5 = v2(
        Forecast {
            model: "ets".into(),
            ..forecast("BTC-USD", 1, 5, 65_001.0)
        },
        &ets,
        false,
    );
    let old = forecast("BTC-USD", 1, 15, 65_002.0);
    let batch = SinkBatch {
        forecasts: vec![
            (pos("f", 0), lstm_1.clone()),
            (pos("f", 1), ets_1.clone()),
            (pos("f", 2), ets_5.clone()),
            (pos("f", 3), old.clone()),
        ],
        offsets: BTreeMap::from([(("f".into(), 0), 4)]),
        ..Default::default()
    };
    assert_eq!(
        store.write_batch("sink", &batch).await.unwrap().forecasts,
        4
    );
    let all = ForecastQuery {
        limit: 100,
        ..Default::default()
    };
    // In key order (one target time per horizon): ets h1, lstm h1, ets h5, naive h15.
    let want = vec![ets_1.clone(), lstm_1.clone(), ets_5.clone(), old.clone()];
    let back = store.forecasts(&all).await.unwrap();
    assert_eq!(back, want);
    assert_eq!(
        back.iter().map(float_bits).collect::<Vec<_>>(),
        want.iter().map(float_bits).collect::<Vec<_>>()
    );
    assert_eq!(
        back.iter().map(|f| f.v).collect::<Vec<_>>(),
        [FORECAST_VERSION, FORECAST_VERSION, FORECAST_VERSION, 1]
    );
    // The latest, in key order: exchange, symbol, interval, model, horizon.
    let want = vec![ets_1.clone(), ets_5.clone(), lstm_1.clone(), old.clone()];
    let latest = store.latest_forecasts(&all).await.unwrap();
    assert_eq!(latest, want);
    assert_eq!(
        latest.iter().map(float_bits).collect::<Vec<_>>(),
        want.iter().map(float_bits).collect::<Vec<_>>()
    );

    // Redelivered under newer offsets: the version 1 row as version 2 and a version 2 row as
    // version 1 (every field of version 2 is then gone); a newer bar of the version 2 series
    // as version 1 replaces its latest row whole.
    let old_as_v2 = v2(old.clone(), &ets, true);
    let ets_5_as_v1 = Forecast {
        v: 1,
        quantiles: None,
        touch: None,
        model_version: None,
        degraded: None,
        ..ets_5.clone()
    };
    let lstm_2 = Forecast {
        model: "lstm".into(),
        ..forecast("BTC-USD", 2, 1, 65_010.0)
    };
    let again = SinkBatch {
        forecasts: vec![
            (pos("f", 4), old_as_v2.clone()),
            (pos("f", 5), ets_5_as_v1.clone()),
            (pos("f", 6), lstm_2.clone()),
        ],
        offsets: BTreeMap::from([(("f".into(), 0), 7)]),
        ..Default::default()
    };
    assert_eq!(
        store.write_batch("sink", &again).await.unwrap().forecasts,
        3
    );
    let want = vec![
        ets_1.clone(),
        lstm_1.clone(),
        lstm_2.clone(),
        ets_5_as_v1.clone(),
        old_as_v2.clone(),
    ];
    let back = store.forecasts(&all).await.unwrap();
    assert_eq!(back, want);
    assert_eq!(
        back.iter().map(float_bits).collect::<Vec<_>>(),
        want.iter().map(float_bits).collect::<Vec<_>>()
    );
    let want = vec![ets_1, ets_5_as_v1, lstm_2, old_as_v2];
    let latest = store.latest_forecasts(&all).await.unwrap();
    assert_eq!(latest, want);
    assert_eq!(
        latest.iter().map(float_bits).collect::<Vec<_>>(),
        want.iter().map(float_bits).collect::<Vec<_>>()
    );
    // Served through serde as they came.
    let json = serde_json::to_value(&latest[3]).unwrap();
    assert_eq!(json["model_version"], "ets.r2.5c1f09ab");
    assert_eq!(json["degraded"], true);
    assert_eq!(json["quantiles"].as_array().map(Vec::len), Some(9));
    assert!(
        serde_json::to_value(&latest[1])
            .unwrap()
            .get("quantiles")
            .is_none()
    );

    // The accuracy scores, version 2's with values at the edges of f64, then replaced.
    let score = |model: &str, scores: [Option<f64>; 6]| AccuracyRow {
        exchange: "kraken".into(),
        symbol: "BTC-USD".into(),
        interval: "1m".into(),
        model: model.into(),
        horizon: 1,
        ts_ms: 120_000,
        n: 42,
        mae: 0.1,
        rmse: 0.2,
        mase: Some(1e-300),
        rel_mae: None,
        coverage80: 0.8,
        coverage95: 0.95,
        winkler95: 4.0,
        directional_accuracy: Some(0.5),
        crps: scores[0],
        crps_rel: scores[1],
        pit_max_err: scores[2],
        touch_brier: scores[3],
        touch_brier_rel: scores[4],
        touch_ece: scores[5],
    };
    let scored = vec![
        score(
            "ets",
            [
                Some(1e-300),
                Some(5e-324),
                Some(0.1),
                Some(f64::MAX),
                Some(123_456.789_012_345_67),
                None,
            ],
        ),
        score("naive", [None; 6]),
    ];
    let every = AccuracyQuery {
        limit: 10,
        ..Default::default()
    };
    for rows in [scored.clone(), vec![score("ets", [Some(0.25); 6])]] {
        store
            .save_checkpoint(
                "forecast",
                &Checkpoint {
                    accuracy: rows,
                    ..Default::default()
                },
            )
            .await
            .unwrap();
    }
    let want = vec![score("ets", [Some(0.25); 6]), scored[1].clone()];
    assert_eq!(store.accuracy(&every).await.unwrap(), want);
    store
        .save_checkpoint(
            "forecast",
            &Checkpoint {
                accuracy: scored.clone(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let back = store.accuracy(&every).await.unwrap();
    assert_eq!(back, scored);
    let bits = |a: &AccuracyRow| {
        [
            a.crps,
            a.crps_rel,
            a.pit_max_err,
            a.touch_brier,
            a.touch_brier_rel,
            a.touch_ece,
        ]
        .map(|x| x.map(f64::to_bits))
    };
    assert_eq!(bits(&back[0]), bits(&scored[0]));
}

#[tokio::test]
async fn postgres_store() {
    behaves(Mode::Real).await;
}

#[tokio::test]
async fn sqlite_store() {
    behaves(Mode::Embedded).await;
}

#[tokio::test]
async fn postgres_store_version_2() {
    keeps_version_2(Mode::Real).await;
}

#[tokio::test]
async fn sqlite_store_version_2() {
    keeps_version_2(Mode::Embedded).await;
}
