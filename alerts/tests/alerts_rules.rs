//! The rule format: durations, validation errors that name the field, JSON round trips,
//! YAML rule files.

use tickcast_core::alert_rule::{
    Bound, Condition, Rule, RuleError, RuleSet, format_duration, parse_duration,
};

fn spec(json: &str) -> Result<Rule, RuleError> {
    Rule::from_json(json.as_bytes())
}

const BASE: &str = r#""id":"r1","interval":"1m","model":"naive","horizon":5"#;

#[test]
fn durations_parse_and_print() {
    let cases = [
        ("0", Ok(0)),
        ("250ms", Ok(250)),
        ("90s", Ok(90_000)),
        ("5m", Ok(300_000)),
        ("1h30m", Ok(5_400_000)),
        ("2d", Ok(172_800_000)),
    ];
    for (text, want) in cases {
        assert_eq!(parse_duration(text), want, "{text}");
    }
    for bad in ["", "5", "m", "5x", "1h30", "400d"] {
        assert!(parse_duration(bad).is_err(), "{bad} should fail");
    }
    assert_eq!(format_duration(5_400_000), "1h30m");
    assert_eq!(format_duration(90_000), "1m30s");
    assert_eq!(format_duration(1_250), "1s250ms");
}

#[test]
fn errors_name_the_field() {
    let cases = [
        (
            r#"{"id":"Bad Id","interval":"1m","model":"m","horizon":1,"kind":"change","threshold":1}"#,
            "id",
        ),
        (&format!(r#"{{{BASE},"kind":"above"}}"#), "threshold"),
        (
            &format!(r#"{{{BASE},"kind":"above","threshold":-1}}"#),
            "threshold",
        ),
        (
            &format!(r#"{{{BASE},"kind":"above","threshold":1,"band":95}}"#),
            "band",
        ),
        (
            &format!(r#"{{{BASE},"kind":"change","threshold":1,"on":"lo95"}}"#),
            "on",
        ),
        (
            &format!(r#"{{{BASE},"kind":"change","threshold":1,"hysteresis":1}}"#),
            "hysteresis",
        ),
        (&format!(r#"{{{BASE},"kind":"anomaly","band":90}}"#), "band"),
        (
            &format!(r#"{{{BASE},"kind":"probability","threshold":0.5}}"#),
            "level",
        ),
        (
            &format!(r#"{{{BASE},"kind":"probability","level":-3,"threshold":0.5}}"#),
            "level",
        ),
        (
            &format!(r#"{{{BASE},"kind":"probability","level":100}}"#),
            "threshold",
        ),
        (
            &format!(r#"{{{BASE},"kind":"probability","level":100,"threshold":1.5}}"#),
            "threshold",
        ),
        (
            &format!(
                r#"{{{BASE},"kind":"probability","level":100,"threshold":0.5,"hysteresis":0.5}}"#
            ),
            "hysteresis",
        ),
        (
            &format!(r#"{{{BASE},"kind":"probability","level":100,"threshold":0.5,"of":"never"}}"#),
            "of",
        ),
        (
            &format!(r#"{{{BASE},"kind":"above","threshold":1,"level":100}}"#),
            "level",
        ),
        (
            &format!(r#"{{{BASE},"kind":"change","threshold":1,"of":"touch"}}"#),
            "of",
        ),
        (
            &format!(r#"{{{BASE},"kind":"anomaly","threshold":3}}"#),
            "threshold",
        ),
        (
            &format!(r#"{{{BASE},"kind":"below","threshold":1,"for":"3m","for_bars":3}}"#),
            "for",
        ),
        (
            &format!(r#"{{{BASE},"kind":"below","threshold":1,"cooldown":"soon"}}"#),
            "cooldown",
        ),
        (
            &format!(r#"{{{BASE},"kind":"below","threshold":1,"hysteresis":-2}}"#),
            "hysteresis",
        ),
        (
            &format!(r#"{{{BASE},"kind":"below","threshold":1,"symbol":"btc"}}"#),
            "symbol",
        ),
        (
            r#"{"id":"r","interval":"1q","model":"m","horizon":1,"kind":"change","threshold":1}"#,
            "interval",
        ),
        (
            r#"{"id":"r","interval":"1m","model":"m","horizon":0,"kind":"change","threshold":1}"#,
            "horizon",
        ),
        (&format!(r#"{{{BASE},"kind":"sideways"}}"#), "kind"),
        (
            &format!(r#"{{{BASE},"kind":"above","threshold":1,"hysterisis":1}}"#),
            "hysterisis",
        ),
    ];
    for (json, field) in cases {
        let err = spec(json).expect_err(json);
        assert_eq!(err.field, field, "{json}: {err}");
    }
}

#[test]
fn round_trips_through_json() {
    let json = format!(
        r#"{{{BASE},"symbol":"BTC-USDT","kind":"above","on":"lo95","threshold":70000.0,"for":"180s","hysteresis":50.0,"cooldown":"15m","enabled":true}}"#
    );
    let rule = spec(&json).expect("valid");
    assert_eq!(rule.for_ms(), 180_000);
    assert_eq!(rule.cooldown_ms, 900_000);
    assert_eq!(
        rule.condition,
        Condition::Above {
            on: Bound::Lo95,
            price: 70_000.0
        }
    );
    let back = serde_json::to_string(&rule).expect("json");
    assert_eq!(
        back,
        r#"{"id":"r1","symbol":"BTC-USDT","interval":"1m","model":"naive","horizon":5,"kind":"above","on":"lo95","threshold":70000.0,"for":"3m","hysteresis":50.0,"cooldown":"15m","enabled":true}"#
    );
    assert_eq!(serde_json::from_str::<Rule>(&back).expect("again"), rule);
    let bars = spec(&format!(
        r#"{{{BASE},"kind":"anomaly","band":80,"for_bars":2}}"#
    ))
    .expect("valid");
    assert_eq!(bars.for_ms(), 120_000);
    assert_eq!(
        serde_json::to_string(&bars).expect("json"),
        r#"{"id":"r1","interval":"1m","model":"naive","horizon":5,"kind":"anomaly","band":80,"for_bars":2,"enabled":true}"#
    );
    // A probability rule: `of` defaults to `above`, and is written out.
    let odds = spec(&format!(
        r#"{{{BASE},"kind":"probability","level":70000,"threshold":0.8,"hysteresis":0.1}}"#
    ))
    .expect("valid");
    assert_eq!(
        odds.condition,
        Condition::Probability {
            of: tickcast_core::alert_rule::Odds::Above,
            level: 70_000.0,
            at_least: 0.8
        }
    );
    let back = serde_json::to_string(&odds).expect("json");
    assert_eq!(
        back,
        r#"{"id":"r1","interval":"1m","model":"naive","horizon":5,"kind":"probability","threshold":0.8,"level":70000.0,"of":"above","hysteresis":0.1,"enabled":true}"#
    );
    assert_eq!(serde_json::from_str::<Rule>(&back).expect("again"), odds);
}

#[test]
fn yaml_files_validate_every_rule_and_unique_ids() {
    let ok = "rules:\n  - {id: a, interval: 1m, model: naive, horizon: 1, kind: change, threshold: 2}\n  - {id: b, interval: 1m, model: naive, horizon: 1, kind: anomaly}\n";
    let set = RuleSet::from_yaml_str(ok).expect("valid");
    assert_eq!(set.rules.len(), 2);
    let dup = "rules:\n  - {id: a, interval: 1m, model: naive, horizon: 1, kind: change, threshold: 2}\n  - {id: a, interval: 1m, model: naive, horizon: 1, kind: anomaly}\n";
    assert_eq!(
        RuleSet::from_yaml_str(dup).expect_err("dup").field,
        "rules[1].id"
    );
    let bad =
        "rules:\n  - {id: a, interval: 1m, model: naive, horizon: 1, kind: change, threshold: 0}\n";
    assert_eq!(
        RuleSet::from_yaml_str(bad).expect_err("bad").field,
        "rules[0].threshold"
    );
    let typo =
        "rules:\n  - {id: a, interval: 1m, model: naive, horizon: 1, kind: change, treshold: 1}\n";
    let e = RuleSet::from_yaml_str(typo).expect_err("typo");
    assert_eq!(e.field, "rules[0].treshold", "{e}");
    assert!(e.reason.contains("treshold"), "{e}");
}
