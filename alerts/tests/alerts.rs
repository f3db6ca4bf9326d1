//! The alert stage through its handler, on a real store (a fresh Postgres database when
//! `DATABASE_URL` is set, and a SQLite file): the exact event sequence of each rule kind,
//! flapping input, a restart in the middle of a `for` duration, rule reloads, and the store's
//! alert methods.

mod alerts_common;

use std::collections::BTreeMap;

use alerts_common::*;
use tickcast_alerts::{AlertEvent, AlertState, reload_channel};
use tickcast_core::stage::Handler as _;
use tickcast_store::{AlertEventQuery, AlertRuleRow, SOURCE_API, SOURCE_FILE, Store};

use AlertState::{Firing, Pending, Resolved};

/// A forecast of model `m`, horizon `h`, whose point is `point` (last 100, 95% band ±10
/// around it unless `lo95` is given).
fn point(h: u32, bar: i64, point: f64) -> In {
    In::F(fc("m", h, bar, 100.0, point, (point - 10.0, point + 10.0)))
}

/// [`point`] as a version 2 forecast, degraded or not.
fn point_v2(h: u32, bar: i64, point: f64, degraded: bool) -> In {
    let In::F(f) = self::point(h, bar, point) else {
        unreachable!("point makes forecasts")
    };
    In::F(tickcast_core::domain::Forecast {
        v: tickcast_core::domain::FORECAST_VERSION,
        quantiles: Some([
            f.lo95, f.lo95, f.lo80, f.lo80, f.point, f.hi80, f.hi80, f.hi95, f.hi95,
        ]),
        touch: Some(tickcast_core::domain::TouchCalibration {
            alpha: 0.0,
            beta: 1.0,
        }),
        model_version: Some("m.r1.00000000".into()),
        degraded: Some(degraded),
        ..f
    })
}

fn lo95(h: u32, bar: i64, lo: f64) -> In {
    In::F(fc("m", h, bar, 100.0, lo + 5.0, (lo, lo + 10.0)))
}

/// One batch per input.
fn one_by_one(inputs: Vec<In>) -> Vec<Vec<In>> {
    inputs.into_iter().map(|i| vec![i]).collect()
}

#[tokio::test]
async fn each_rule_kind_emits_its_exact_sequence() {
    for (store, _dir) in stores("alerts_kinds").await {
        let rules = [
            rule(
                r#"{"id":"lo95-above","interval":"1m","model":"m","horizon":5,"kind":"above","on":"lo95","threshold":100,"for_bars":2,"hysteresis":2}"#,
            ),
            rule(
                r#"{"id":"point-below","symbol":"BTC-USDT","interval":"1m","model":"m","horizon":1,"kind":"below","threshold":90,"hysteresis":1,"cooldown":"3m"}"#,
            ),
            rule(
                r#"{"id":"big-move","exchange":"binance","interval":"1m","model":"m","horizon":15,"kind":"change","threshold":2,"hysteresis":0.5}"#,
            ),
            rule(
                r#"{"id":"outside-80","interval":"1m","model":"m","horizon":2,"kind":"anomaly","band":80}"#,
            ),
            rule(
                r#"{"id":"likely-above-105","interval":"1m","model":"m","horizon":4,"kind":"probability","of":"above","level":105,"threshold":0.6,"hysteresis":0.1}"#,
            ),
            rule(
                r#"{"id":"may-touch-90","interval":"1m","model":"m","horizon":6,"kind":"probability","of":"touch","level":90,"threshold":0.5}"#,
            ),
            rule(
                r#"{"id":"skips-degraded","interval":"1m","model":"m","horizon":7,"kind":"above","threshold":100}"#,
            ),
            rule(
                r#"{"id":"reads-degraded","interval":"1m","model":"m","horizon":7,"kind":"above","threshold":100,"include_degraded":true}"#,
            ),
        ];
        put_rules(store.as_ref(), &rules).await;

        // (name, inputs, expected (rule, state, bar))
        let above: Vec<In> = [99.0, 101.0, 101.5, 100.5, 103.0, 97.9, 101.0, 99.0, 98.0]
            .iter()
            .enumerate()
            .map(|(b, v)| lo95(5, b as i64, *v))
            .collect();
        let below: Vec<In> = [91.0, 89.0, 90.5, 91.0, 80.0, 80.0, 80.0, 95.0]
            .iter()
            .enumerate()
            .map(|(b, v)| point(1, b as i64, *v))
            .collect();
        let change: Vec<In> = [101.4, 97.5, 98.4, 101.4, 102.5]
            .iter()
            .enumerate()
            .map(|(b, v)| point(15, b as i64, *v))
            .collect();
        // Horizon 2: the forecast made at bar b targets bar b + 2; 80% band 95..105.
        let anomaly = vec![
            point(2, 0, 100.0),
            point(2, 1, 100.0),
            In::C(candle("BTC-USDT", 1, "100")),
            In::C(candle("BTC-USDT", 2, "106")),
            point(2, 2, 100.0),
            In::C(candle("BTC-USDT", 3, "104")),
            // The candle of bar 5 comes before the forecast that targets it.
            In::C(candle("BTC-USDT", 4, "100")),
            In::C(candle("BTC-USDT", 5, "94")),
            point(2, 3, 100.0),
            point(2, 4, 100.0),
            In::C(candle("BTC-USDT", 6, "100")),
            // Bar 7's forecast never gets its candle (a gap); bar 8 has no forecast.
            point(2, 5, 100.0),
            In::C(candle("BTC-USDT", 8, "200")),
        ];
        // P(close ≥ 105) by forecasts with last 100, 80% band point ± 5, 95% ± 10: point 100
        // → 0.10, 110 → 0.90, 105.5 → 0.55 (inside the hysteresis), 104 → 0.40, 107 → 0.69.
        let likely: Vec<In> = [100.0, 110.0, 105.5, 104.0, 107.0]
            .iter()
            .enumerate()
            .map(|(b, v)| point(4, b as i64, *v))
            .collect();
        // P(touching 90 within 6 bars): point 100 → 0.03, 89 → 0.67, 100 → 0.03.
        let touch: Vec<In> = [100.0, 89.0, 100.0]
            .iter()
            .enumerate()
            .map(|(b, v)| point(6, b as i64, *v))
            .collect();
        // Degraded forecasts (bars 1 and 2) are skipped unless the rule includes them.
        let degraded: Vec<In> = [
            (101.0, false),
            (102.0, true),
            (99.0, true),
            (101.0, false),
            (99.0, false),
        ]
        .iter()
        .enumerate()
        .map(|(b, (v, d))| point_v2(7, b as i64, *v, *d))
        .collect();
        // Inputs no rule matches: other model, other horizon, other symbol.
        let others = vec![
            In::F(fc("other", 5, 0, 100.0, 300.0, (290.0, 310.0))),
            point(3, 0, 10.0),
            In::C(candle("ETH-USDT", 2, "1")),
        ];
        type Case = (&'static str, Vec<In>, Vec<(String, AlertState, i64)>);
        let cases: [Case; 8] = [
            (
                "above on lo95, for 2 bars, hysteresis 2",
                above,
                want(&[
                    ("lo95-above", Pending, 1),
                    ("lo95-above", Firing, 3),
                    ("lo95-above", Resolved, 5),
                    ("lo95-above", Pending, 6),
                    ("lo95-above", Resolved, 8),
                ]),
            ),
            (
                "below on point, hysteresis 1, cooldown 3 bars",
                below,
                want(&[
                    ("point-below", Firing, 1),
                    ("point-below", Resolved, 3),
                    ("point-below", Firing, 6),
                    ("point-below", Resolved, 7),
                ]),
            ),
            (
                "change beyond ±2%, hysteresis 0.5",
                change,
                want(&[
                    ("big-move", Firing, 1),
                    ("big-move", Resolved, 3),
                    ("big-move", Firing, 4),
                ]),
            ),
            (
                "anomaly: close outside the 80% band",
                anomaly,
                want(&[
                    ("outside-80", Firing, 2),
                    ("outside-80", Resolved, 3),
                    ("outside-80", Firing, 5),
                    ("outside-80", Resolved, 6),
                ]),
            ),
            (
                "probability of closing at or above 105, at least 0.6, hysteresis 0.1",
                likely,
                want(&[
                    ("likely-above-105", Firing, 1),
                    ("likely-above-105", Resolved, 3),
                    ("likely-above-105", Firing, 4),
                ]),
            ),
            (
                "probability of touching 90, at least 0.5",
                touch,
                want(&[("may-touch-90", Firing, 1), ("may-touch-90", Resolved, 2)]),
            ),
            (
                "degraded forecasts skipped unless the rule includes them",
                degraded,
                want(&[
                    ("reads-degraded", Firing, 0),
                    ("skips-degraded", Firing, 0),
                    ("reads-degraded", Resolved, 2),
                    ("reads-degraded", Firing, 3),
                    ("reads-degraded", Resolved, 4),
                    ("skips-degraded", Resolved, 4),
                ]),
            ),
            ("inputs no rule watches", others, Vec::new()),
        ];
        let mut stage = stage(&store);
        let mut feed = Feed::new();
        let mut all: Vec<AlertEvent> = Vec::new();
        for (name, inputs, expected) in cases {
            let events = drive(&mut stage, &mut feed, &one_by_one(inputs)).await;
            assert_eq!(shape(&events), expected, "{} on {}", name, store.backend());
            all.extend(events);
        }

        // What each event carries.
        let first = |rule: &str, state: AlertState| {
            all.iter()
                .find(|e| e.rule == rule && e.state == state)
                .cloned()
                .expect("event")
        };
        let e = first("outside-80", Firing);
        assert_eq!((e.value, e.threshold), (106.0, 105.0));
        assert_eq!(
            (e.exchange.as_str(), e.symbol.as_str(), e.interval.as_str()),
            ("binance", "BTC-USDT", "1m")
        );
        assert_eq!((e.model.as_str(), e.horizon), ("m", 2));
        assert_eq!(
            e.message,
            "outside-80: firing: close 106.00 (rule: outside the 80% band; nearest bound 105.00)"
        );
        let e = first("outside-80", Resolved);
        assert_eq!((e.value, e.threshold), (104.0, 105.0));
        let e = first("lo95-above", Firing);
        assert_eq!((e.value, e.threshold), (100.5, 100.0));
        assert_eq!(
            e.message,
            "lo95-above: firing: lo95 100.50 (rule: above 100.00)"
        );
        let e = first("likely-above-105", Firing);
        assert_eq!(e.threshold, 0.6);
        assert!((e.value - 0.9).abs() < 1e-6, "{}", e.value);
        assert_eq!(
            e.message,
            "likely-above-105: firing: P(close ≥ 105.00) 0.900 (rule: at least 0.6)"
        );
        let e = first("may-touch-90", Firing);
        assert!((e.value - 0.6722).abs() < 1e-3, "{}", e.value);
        assert_eq!(
            e.message,
            "may-touch-90: firing: P(touch 90.00) 0.672 (rule: at least 0.5)"
        );
        let e = first("big-move", Firing);
        assert_eq!(e.threshold, 2.0);
        assert!((e.value + 2.5).abs() < 1e-9, "{}", e.value);
        assert_eq!(
            e.message,
            "big-move: firing: predicted change -2.50% (rule: beyond ±2%)"
        );
        assert_eq!(
            all.iter()
                .map(|e| &e.id)
                .collect::<std::collections::HashSet<_>>()
                .len(),
            all.len(),
            "ids unique"
        );

        // The store holds exactly the events sent, newest first.
        stage.acknowledged(true).await.expect("final checkpoint");
        let stored = store
            .alert_events(&AlertEventQuery {
                limit: 1_000,
                ..Default::default()
            })
            .await
            .expect("events");
        let mut newest_first = all.clone();
        newest_first.sort_by(|a, b| b.ts_ms.cmp(&a.ts_ms).then(a.id.cmp(&b.id)));
        assert_eq!(stored, newest_first, "{}", store.backend());
        event_filters(store.as_ref(), &newest_first).await;
    }
}

/// The filters of [`Store::alert_events`] against the same filter applied in memory.
async fn event_filters(store: &dyn Store, newest_first: &[AlertEvent]) {
    let q = |f: fn(&mut AlertEventQuery)| {
        let mut q = AlertEventQuery {
            limit: 1_000,
            ..Default::default()
        };
        f(&mut q);
        q
    };
    type Keep = Box<dyn Fn(&AlertEvent) -> bool>;
    let cases: [(&str, AlertEventQuery, Keep); 6] = [
        (
            "rule",
            q(|q| q.rule_id = Some("big-move".into())),
            Box::new(|e| e.rule == "big-move"),
        ),
        (
            "state",
            q(|q| q.state = Some(AlertState::Firing)),
            Box::new(|e| e.state == AlertState::Firing),
        ),
        (
            "symbol",
            q(|q| q.symbol = Some("BTC-USDT".into())),
            Box::new(|_| true),
        ),
        (
            "other symbol",
            q(|q| q.symbol = Some("ETH-USDT".into())),
            Box::new(|_| false),
        ),
        (
            "time range [bar 3, bar 6)",
            q(|q| {
                q.from_ms = Some(T0 + 3 * BAR);
                q.to_ms = Some(T0 + 6 * BAR);
            }),
            Box::new(|e| e.ts_ms >= T0 + 3 * BAR && e.ts_ms < T0 + 6 * BAR),
        ),
        (
            "rule and state",
            q(|q| {
                q.rule_id = Some("lo95-above".into());
                q.state = Some(AlertState::Resolved);
                q.exchange = Some("binance".into());
            }),
            Box::new(|e| e.rule == "lo95-above" && e.state == AlertState::Resolved),
        ),
    ];
    for (name, query, keep) in cases {
        let got = store.alert_events(&query).await.expect("events");
        let want: Vec<AlertEvent> = newest_first.iter().filter(|e| keep(e)).cloned().collect();
        assert!(
            name == "other symbol" || !want.is_empty(),
            "{name}: empty case"
        );
        assert_eq!(got, want, "{name} on {}", store.backend());
    }
    let two = store
        .alert_events(&AlertEventQuery {
            limit: 2,
            ..Default::default()
        })
        .await
        .expect("events");
    assert_eq!(two, newest_first[..2].to_vec(), "limit");
}

#[tokio::test]
async fn flapping_input_does_not_flap() {
    for (store, _dir) in stores("alerts_flapping").await {
        put_rules(
            store.as_ref(),
            &[
                rule(
                    r#"{"id":"steady","interval":"1m","model":"m","horizon":1,"kind":"above","threshold":100,"for_bars":2,"hysteresis":3}"#,
                ),
                // The same condition without `for` and hysteresis, to show the input flaps.
                rule(
                    r#"{"id":"naive","interval":"1m","model":"m","horizon":1,"kind":"above","threshold":100}"#,
                ),
            ],
        )
        .await;
        let mut inputs: Vec<In> = (0..12)
            .map(|b| point(1, b, if b % 2 == 0 { 101.0 } else { 99.0 }))
            .collect();
        inputs.push(point(1, 12, 96.0));
        let events = drive(&mut stage(&store), &mut Feed::new(), &one_by_one(inputs)).await;
        let steady: Vec<AlertEvent> = events
            .iter()
            .filter(|e| e.rule == "steady")
            .cloned()
            .collect();
        assert_eq!(
            shape(&steady),
            want(&[
                ("steady", Pending, 0),
                ("steady", Firing, 2),
                ("steady", Resolved, 12)
            ]),
            "{}",
            store.backend()
        );
        let naive: Vec<(String, AlertState, i64)> = (0..12)
            .map(|b| {
                (
                    "naive".to_string(),
                    if b % 2 == 0 { Firing } else { Resolved },
                    b,
                )
            })
            .collect();
        let got: Vec<AlertEvent> = events
            .iter()
            .filter(|e| e.rule == "naive")
            .cloned()
            .collect();
        assert_eq!(
            shape(&got),
            naive,
            "the input flaps without for and hysteresis"
        );
    }
}

#[tokio::test]
async fn restart_in_the_middle_of_a_for_duration_resumes_exactly() {
    let values = [
        99.0, 101.0, 102.0, 101.0, 101.0, 103.0, 90.0, 101.0, 101.0, 101.0, 101.0,
    ];
    let closes = [
        "", "99", "99", "120", "115", "100", "100", "100", "100", "100", "100",
    ];
    // F(0), then per bar b: the candle of bar b (checked against F(b − 1)'s band), F(b).
    let inputs = || -> Vec<In> {
        let mut v = vec![point(1, 0, values[0])];
        for b in 1..values.len() {
            v.push(In::C(candle("BTC-USDT", b as i64, closes[b])));
            v.push(point(1, b as i64, values[b]));
        }
        v
    };
    let rules = [
        rule(
            r#"{"id":"held","interval":"1m","model":"m","horizon":1,"kind":"above","threshold":100,"for_bars":3}"#,
        ),
        rule(
            r#"{"id":"held-anomaly","interval":"1m","model":"m","horizon":1,"kind":"anomaly","band":95,"for_bars":1}"#,
        ),
    ];
    for (store, _dir) in stores("alerts_restart").await {
        put_rules(store.as_ref(), &rules).await;
        // Uninterrupted, on a consumer group of its own.
        let mut settings =
            tickcast_alerts::AlertSettings::new(&Default::default(), "uninterrupted");
        settings.checkpoint_every = std::time::Duration::ZERO;
        let mut whole = tickcast_alerts::AlertStage::new(settings, store.clone());
        let straight = drive(&mut whole, &mut Feed::new(), &one_by_one(inputs())).await;
        assert_eq!(
            shape(&straight),
            want(&[
                ("held", Pending, 1),
                ("held-anomaly", Pending, 3),
                ("held-anomaly", Firing, 4),
                ("held", Firing, 4),
                ("held-anomaly", Resolved, 5),
                ("held", Resolved, 6),
                ("held", Pending, 7),
                ("held", Firing, 10),
            ]),
        );

        // Interrupted: everything up to F(3) checkpointed (`held` pending since bar 1,
        // `held-anomaly` pending since bar 3 with F(3)'s band awaiting bar 4), the candle of
        // bar 4 and F(4) handled but never acknowledged (a crash), then a new process from the
        // checkpoint's offsets.
        let all = inputs();
        let mut first = stage(&store);
        let mut feed = Feed::new();
        let mut events = drive(&mut first, &mut feed, &one_by_one(all[..7].to_vec())).await;
        let covered = first
            .acknowledged(false)
            .await
            .expect("ack")
            .expect("offsets");
        assert_eq!(
            covered,
            BTreeMap::from([
                (("tickcast.candles.v1".to_string(), 0), 3),
                (("tickcast.forecasts.v1".to_string(), 0), 4),
            ])
        );
        let lost = first
            .handle(&feed.messages(&all[7..9]))
            .await
            .expect("handle");
        assert_eq!(
            lost.records.len(),
            2,
            "firing events that a restart sends again"
        );
        drop(first);

        let mut second = stage(&store);
        let mut feed = Feed::new();
        (feed.next_c, feed.next_f) = (3, 4);
        let resumed = drive(&mut second, &mut feed, &one_by_one(all[7..].to_vec())).await;
        events.extend(resumed);
        assert_eq!(events, straight, "restart on {}", store.backend());
    }
}

#[tokio::test]
async fn rule_changes_apply_without_restart() {
    for (store, _dir) in stores("alerts_reload").await {
        let (trigger, watch) = reload_channel();
        let mut stage = stage(&store).with_reload_signal(watch);
        let mut feed = Feed::new();
        let above = |threshold: f64| {
            rule(&format!(
                r#"{{"id":"reloaded","interval":"1m","model":"m","horizon":1,"kind":"above","threshold":{threshold}}}"#
            ))
        };
        let mut events = drive(&mut stage, &mut feed, &[vec![point(1, 0, 150.0)]]).await;
        assert!(stage.rules().is_empty());

        put_rules(store.as_ref(), &[above(100.0)]).await;
        trigger.notify();
        events.extend(drive(&mut stage, &mut feed, &[vec![point(1, 1, 150.0)]]).await);

        assert!(store.delete_alert_rule("reloaded").await.expect("delete"));
        trigger.notify();
        events.extend(drive(&mut stage, &mut feed, &[vec![point(1, 2, 150.0)]]).await);

        put_rules(store.as_ref(), &[above(100.0)]).await;
        trigger.notify();
        events.extend(drive(&mut stage, &mut feed, &[vec![point(1, 3, 150.0)]]).await);

        put_rules(store.as_ref(), &[above(200.0)]).await;
        trigger.notify();
        events.extend(drive(&mut stage, &mut feed, &[vec![point(1, 4, 150.0)]]).await);

        assert_eq!(
            shape(&events),
            want(&[
                ("reloaded", Firing, 1),
                ("reloaded", Resolved, 1),
                ("reloaded", Firing, 3),
                ("reloaded", Resolved, 3),
            ]),
            "{}",
            store.backend()
        );
        assert_eq!(events[1].message, "rule removed or disabled");
        assert_eq!(events[3].message, "rule changed");
        assert_eq!(stage.rules(), vec![above(200.0)]);
    }
}

#[tokio::test]
async fn store_keeps_rules_from_the_file_and_the_api_apart() {
    for (store, _dir) in stores("alerts_rules").await {
        let r = |id: &str, threshold: f64| {
            rule(&format!(
                r#"{{"id":"{id}","interval":"1m","model":"m","horizon":1,"kind":"above","threshold":{threshold}}}"#
            ))
        };
        let row = |rule, updated_ms| AlertRuleRow {
            rule,
            source: SOURCE_API.into(),
            updated_ms,
        };
        assert!(
            store
                .put_alert_rule(&row(r("api-1", 1.0), 10))
                .await
                .expect("put")
        );
        assert!(
            !store
                .put_alert_rule(&row(r("api-1", 2.0), 11))
                .await
                .expect("replace")
        );
        assert_eq!(
            store.alert_rule("api-1").await.expect("get"),
            Some(row(r("api-1", 2.0), 11))
        );
        assert_eq!(store.alert_rule("nope").await.expect("get"), None);

        store
            .replace_file_rules(&[r("file-a", 1.0), r("file-b", 1.0)], 20)
            .await
            .expect("file rules");
        // Reading the same file again changes nothing (updated_ms stays).
        store
            .replace_file_rules(&[r("file-a", 1.0), r("file-b", 1.0)], 25)
            .await
            .expect("file rules");
        store
            .replace_file_rules(&[r("file-b", 3.0)], 30)
            .await
            .expect("file rules");
        let listed: Vec<(String, String, i64)> = store
            .alert_rules()
            .await
            .expect("list")
            .into_iter()
            .map(|x| (x.rule.id, x.source, x.updated_ms))
            .collect();
        assert_eq!(
            listed,
            vec![
                ("api-1".to_string(), SOURCE_API.to_string(), 11),
                ("file-b".to_string(), SOURCE_FILE.to_string(), 30),
            ],
            "{}",
            store.backend()
        );
        assert!(store.delete_alert_rule("api-1").await.expect("delete"));
        assert!(
            !store
                .delete_alert_rule("api-1")
                .await
                .expect("delete again")
        );
        assert_eq!(store.alert_rules().await.expect("list").len(), 1);
    }
}

#[tokio::test]
async fn rule_file_loads_into_the_store() {
    let (store, dir) = sqlite("alerts_rule_file").await;
    let path = dir.0.join("alerts.yaml");
    let example =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../monitoring/alerts.example.yaml");
    std::fs::copy(&example, &path).expect("copy the example rule file");
    let n = tickcast_alerts::load_rule_file(store.as_ref(), &path)
        .await
        .expect("example file is valid");
    let stored = store.alert_rules().await.expect("rules");
    assert_eq!(stored.len(), n);
    assert!(n >= 5, "the example shows every kind");
    let kinds: std::collections::BTreeSet<String> = stored
        .iter()
        .map(|r| format!("{:?}", r.rule.kind()))
        .collect();
    assert_eq!(
        kinds.into_iter().collect::<Vec<_>>(),
        ["Above", "Anomaly", "Below", "Change", "Probability"]
    );
    assert!(stored.iter().all(|r| r.source == SOURCE_FILE));

    std::fs::write(
        &path,
        "rules:\n  - {id: x, interval: 1m, model: m, horizon: 1, kind: above}\n",
    )
    .expect("write");
    let err = tickcast_alerts::load_rule_file(store.as_ref(), &path)
        .await
        .expect_err("invalid");
    assert!(
        err.to_string()
            .ends_with("`rules[0].threshold`: required for `above` rules"),
        "{err}"
    );
}

mod properties {
    //! Schema-valid but extreme forecasts and candles (points to ±10^300, closes from 10^-18
    //! to 10^15) mixed with poison, in batches of any size: no panic, every poison message is
    //! dead-lettered, and the events equal those of the valid messages alone.

    use super::*;
    use proptest::prelude::*;
    use rust_decimal::Decimal;
    use tickcast_core::codec;
    use tickcast_core::stage::Inbound;

    // A test's short list of messages: the size of a variant does not matter here.
    #[allow(clippy::large_enum_variant)]
    #[derive(Debug, Clone)]
    enum Msg {
        Valid(In),
        Poison(usize),
    }

    fn msg() -> impl Strategy<Value = Msg> {
        let double = prop_oneof![
            Just(1e300),
            Just(-1e300),
            Just(f64::MIN_POSITIVE),
            Just(0.0),
            -1e4f64..1e4,
        ];
        let forecast =
            (1u32..=3, double.clone(), 0.0f64..1e300).prop_map(|(h, p, spread)| (h, p, spread));
        let close = (1i64..=1_000_000_000_000_000, 0u32..=18).prop_map(|(m, s)| Decimal::new(m, s));
        prop_oneof![
            5 => forecast.prop_map(|(h, p, s)| Msg::Valid(In::F(fc("m", h, 0, 100.0, p, (p - s / 2.0, p + s / 2.0))))),
            2 => close.prop_map(|c| Msg::Valid(In::C(candle("BTC-USDT", 0, &c.to_string())))),
            1 => (0usize..3).prop_map(Msg::Poison),
        ]
    }

    /// Numbers the bars: each input is the next bar, so forecasts and candles interleave.
    fn number(msgs: Vec<Msg>) -> Vec<Msg> {
        msgs.into_iter()
            .enumerate()
            .map(|(i, m)| match m {
                Msg::Valid(In::F(f)) => {
                    let bar = i as i64;
                    Msg::Valid(In::F(fc(
                        "m",
                        f.horizon,
                        bar,
                        f.last,
                        f.point,
                        (f.lo95, f.hi95),
                    )))
                }
                Msg::Valid(In::C(c)) => {
                    Msg::Valid(In::C(candle("BTC-USDT", i as i64, &c.close.to_string())))
                }
                p => p,
            })
            .collect()
    }

    fn messages(msgs: &[Msg], valid_only: bool) -> Vec<Inbound> {
        let mut feed = Feed::new();
        let forecasts = feed.topics.forecasts();
        let mut out = Vec::new();
        for m in msgs {
            match m {
                Msg::Valid(i) => out.extend(feed.messages(std::slice::from_ref(i))),
                Msg::Poison(_) if valid_only => {}
                Msg::Poison(k) => {
                    let good = codec::encode(&fc("m", 1, 0, 100.0, 100.0, (90.0, 110.0)));
                    let text = String::from_utf8(good).unwrap_or_default();
                    let payload = match k {
                        0 => text.replacen("\"v\":1", "\"v\":7", 1),
                        1 => text.replacen("\"lo95\":90.0", "\"lo95\":120.0", 1),
                        _ => text[..text.len() / 3].to_string(),
                    };
                    feed.next_f += 1;
                    out.push(Inbound {
                        topic: forecasts.clone(),
                        partition: 0,
                        offset: feed.next_f - 1,
                        key: None,
                        payload: payload.into_bytes(),
                    });
                }
            }
        }
        out
    }

    fn events(batch: &[Inbound], split: usize) -> (Vec<AlertEvent>, usize) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async {
            let (store, _dir) = sqlite("alerts_props").await;
            let rules = [
                rule(r#"{"id":"above","interval":"1m","model":"m","horizon":1,"kind":"above","threshold":100,"hysteresis":1}"#),
                rule(r#"{"id":"below","interval":"1m","model":"m","horizon":2,"kind":"below","on":"lo95","threshold":50,"for_bars":1}"#),
                rule(r#"{"id":"move","interval":"1m","model":"m","horizon":3,"kind":"change","threshold":2,"hysteresis":0.5}"#),
                rule(r#"{"id":"anomaly","interval":"1m","model":"m","horizon":1,"kind":"anomaly","band":95}"#),
            ];
            put_rules(store.as_ref(), &rules).await;
            let mut stage = stage(&store);
            let (mut out, mut dead) = (Vec::new(), 0);
            for piece in batch.chunks(split.max(1)) {
                let fx = stage.handle(piece).await.expect("handle");
                dead += fx.dead.len();
                out.extend(
                    fx.records
                        .iter()
                        .map(|r| codec::decode::<AlertEvent>(&r.payload).expect("an event")),
                );
                stage.acknowledged(false).await.expect("checkpoint");
            }
            (out, dead)
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]

        #[test]
        fn extreme_inputs_never_panic_and_the_valid_ones_decide(
            msgs in proptest::collection::vec(msg(), 1..50).prop_map(number),
            split in 1usize..15,
        ) {
            let all = messages(&msgs, false);
            let valid = messages(&msgs, true);
            let (got, dead) = events(&all, split);
            let (want, dead_valid) = events(&valid, valid.len().max(1));
            prop_assert_eq!(dead_valid, 0);
            prop_assert_eq!(dead, all.len() - valid.len());
            prop_assert_eq!(shape(&got), shape(&want));
            prop_assert_eq!(got, want);
        }
    }
}
