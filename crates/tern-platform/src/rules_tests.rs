//! Unit tests of the rules: the condition language, windows and notification strategies
//! on a fake clock (times passed in), templates and rule validation.

use crate::rules::{compile, RuleDef};
use crate::rules_actions::{EventCtx, Template};
use crate::rules_expr::{parse, AggFunc, EvalError};
use crate::rules_window::{NotifyState, RuleState, Strategy, Window};
use serde_json::{json, Value};

fn holds(condition: &str, event: Value) -> Result<bool, EvalError> {
    let c = parse(condition).unwrap_or_else(|e| panic!("{condition}: {e}"));
    c.holds(&event, &[])
}

#[test]
fn comparisons_and_logic_follow_the_events_fields() {
    let e = json!({"d": {"temp": 31.5, "hum": 10, "name": "boiler", "on": true}});
    assert_eq!(holds("d.temp > 30 and d.hum < 20", e.clone()), Ok(true));
    assert_eq!(holds("d.temp > 30 and d.hum > 20", e.clone()), Ok(false));
    assert_eq!(holds("d.temp > 40 or d.hum <= 10", e.clone()), Ok(true));
    assert_eq!(holds("not (d.temp > 30)", e.clone()), Ok(false));
    assert_eq!(holds("!(d.temp < 30) && d.on == true", e.clone()), Ok(true));
    assert_eq!(holds("d.name == 'boiler' and d.name != \"pump\"", e.clone()), Ok(true));
    assert_eq!(holds("d.temp >= 31.5 && d.temp = 31.5", e), Ok(true));
}

#[test]
fn arithmetic_has_the_usual_precedence() {
    let e = json!({"d": {"a": 2, "b": 3, "list": [5, 7]}});
    assert_eq!(holds("d.a + d.b * 2 == 8", e.clone()), Ok(true));
    assert_eq!(holds("(d.a + d.b) * 2 == 10", e.clone()), Ok(true));
    assert_eq!(holds("-d.a + 10 / 4 == 0.5", e.clone()), Ok(true));
    assert_eq!(holds("d.b % d.a == 1", e.clone()), Ok(true));
    assert_eq!(holds("d.list[1] - d.list[0] == 2", e.clone()), Ok(true));
    assert_eq!(holds("1e3 > 999", e), Ok(true));
}

#[test]
fn a_missing_or_non_numeric_field_is_an_error_not_false() {
    let e = json!({"d": {"temp": "hot", "obj": {}}});
    assert_eq!(holds("d.hum > 3", e.clone()), Err(EvalError::Missing("d.hum".into())));
    assert_eq!(
        holds("d.temp > 3", e.clone()),
        Err(EvalError::NotNumber("d.temp".into()))
    );
    assert_eq!(
        holds("d.temp + 1 > 3", e.clone()),
        Err(EvalError::NotNumber("d.temp".into()))
    );
    assert_eq!(holds("d.obj > 3", e.clone()), Err(EvalError::NotScalar("d.obj".into())));
    assert!(holds("1 / 0 > 3", e.clone()).is_err());
    assert!(holds("1 + 2", e).is_err(), "not a truth value");
}

#[test]
fn bad_conditions_are_refused_with_their_position() {
    let cases = [
        ("d.temp >", 8, "ends where an operand"),
        ("d.temp > > 3", 9, "expected"),
        ("d.temp > 30 and", 15, "ends where an operand"),
        ("(d.temp > 30", 12, "`)`"),
        ("d.temp > 30 30", 12, "unexpected `30`"),
        ("median(d.temp) over 5m > 3", 0, "unknown function `median`"),
        ("avg(d.temp) > 3", 12, "`over`"),
        ("avg(d.temp) over 5 > 3", 17, "window"),
        ("avg(d.temp) over 2d > 3", 17, "longer than 1d"),
        ("d.name == 'x", 10, "closing quote"),
        ("", 0, "ends where an operand"),
    ];
    for (text, position, words) in cases {
        match parse(text) {
            Ok(c) => panic!("{text:?} parsed as {c:?}"),
            Err(e) => {
                assert_eq!(e.position, position, "{text:?}: {e}");
                assert!(e.to_string().contains(words), "{text:?}: {e}");
            }
        }
    }
    let deep = format!("{}1 > 0{}", "(".repeat(40), ")".repeat(40));
    assert!(parse(&deep).is_err_and(|e| e.message.contains("nested")));
    let long = format!("{} > 0", vec!["1"; 300].join(" + "));
    assert!(parse(&long).is_err_and(|e| e.message.contains("operators")));
}

#[test]
fn aggregates_are_parsed_once_each() {
    let c = parse("avg(d.temp) over 5m > 30 and max(d.temp) over 5m < 50 and avg(d.temp) over 5m < 60")
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.aggregates.len(), 2);
    assert_eq!(c.aggregates[0].func, AggFunc::Avg);
    assert_eq!(c.aggregates[0].span_ms, 300_000);
    assert_eq!(c.aggregates[1].func, AggFunc::Max);
    assert_eq!(c.holds(&json!({}), &[Some(40.0), Some(45.0)]), Ok(true));
    assert_eq!(c.holds(&json!({}), &[Some(20.0), Some(45.0)]), Ok(false));
}

#[test]
fn windows_slide_on_the_clock_they_are_given() {
    let mut w = Window::new(60_000);
    w.push(0, 10.0);
    w.push(30_000, 20.0);
    w.push(50_000, 30.0);
    assert_eq!(w.value(AggFunc::Avg), Some(20.0));
    assert_eq!(w.value(AggFunc::Count), Some(3.0));
    assert_eq!(w.value(AggFunc::Min), Some(10.0));
    assert_eq!(w.value(AggFunc::Max), Some(30.0));
    assert_eq!(w.value(AggFunc::Last), Some(30.0));
    assert_eq!(w.value(AggFunc::Sum), Some(60.0));
    // At 70 s the sample of 0 s has left the minute (slices of 1 s).
    w.push(70_000, 40.0);
    assert_eq!(w.value(AggFunc::Count), Some(3.0));
    assert_eq!(w.value(AggFunc::Min), Some(20.0));
    w.expire(200_000);
    assert_eq!(w.value(AggFunc::Avg), None);
    assert_eq!(w.value(AggFunc::Count), Some(0.0));
}

#[test]
fn a_window_keeps_fixed_memory_and_values_leave_within_a_slice() {
    // 5 minutes in slices of 5 s: a value at 1 s leaves once its slice [0, 5 s) is older
    // than 5 minutes, at 305 s.
    let mut w = Window::new(300_000);
    for t in 0..100_000u64 {
        w.push(1_000 + t / 1000, 1.0);
    }
    assert_eq!(w.value(AggFunc::Count), Some(100_000.0));
    w.push(304_999, 2.0);
    assert_eq!(w.value(AggFunc::Min), Some(1.0));
    w.push(305_000, 3.0);
    assert_eq!(w.value(AggFunc::Min), Some(2.0));
    assert_eq!(w.value(AggFunc::Count), Some(2.0));
    assert_eq!(w.value(AggFunc::Last), Some(3.0));
}

#[test]
fn every_fires_each_time_the_condition_holds() {
    let mut s = NotifyState::default();
    let fired: Vec<bool> = [true, true, false, true]
        .iter()
        .map(|h| s.step(Strategy::Every, *h, 0))
        .collect();
    assert_eq!(fired, [true, true, false, true]);
}

#[test]
fn becomes_true_fires_on_the_edge_only() {
    let mut s = NotifyState::default();
    let fired: Vec<bool> = [true, true, false, false, true, true]
        .iter()
        .map(|h| s.step(Strategy::BecomesTrue, *h, 0))
        .collect();
    assert_eq!(fired, [true, false, false, false, true, false]);
}

#[test]
fn count_fires_on_the_nth_hit_within_the_period() {
    let strategy = Strategy::Count {
        times: 3,
        period_ms: 10_000,
    };
    let mut s = NotifyState::default();
    assert!(!s.step(strategy, true, 0));
    assert!(!s.step(strategy, true, 1_000));
    assert!(!s.step(strategy, false, 2_000));
    assert!(s.step(strategy, true, 3_000), "third hit within 10 s");
    assert!(!s.step(strategy, true, 4_000), "counting starts again");
    assert!(!s.step(strategy, true, 5_000));
    // The hit at 4 s is out of the period at 14.5 s: only 2 in the last 10 s.
    assert!(!s.step(strategy, true, 14_500));
    assert!(s.step(strategy, true, 15_000));
}

#[test]
fn persists_fires_once_the_condition_held_long_enough_and_once_per_run() {
    let strategy = Strategy::Persists { for_ms: 60_000 };
    let mut s = NotifyState::default();
    assert!(!s.step(strategy, true, 0));
    assert!(!s.step(strategy, true, 59_999));
    assert!(s.step(strategy, true, 60_000));
    assert!(!s.step(strategy, true, 120_000), "once per run");
    assert!(!s.step(strategy, false, 130_000));
    assert!(!s.step(strategy, true, 140_000));
    assert!(s.step(strategy, true, 200_000));
}

#[test]
fn a_rule_keeps_state_per_device() {
    let c = parse("avg(d.t) over 1m > 5").unwrap_or_else(|e| panic!("{e}"));
    let mut state = RuleState::default();
    let a = state.device("t/a", &c.aggregates).map(|d| d.windows.len());
    assert_eq!(a, Some(1));
    assert!(state.device("t/b", &c.aggregates).is_some());
    assert_eq!(state.len(), 2);
}

fn ctx(json: &Value) -> EventCtx<'_> {
    EventCtx {
        org: "myorg1",
        topic: "iot-2/type/sensor/id/s1/evt/status/fmt/json",
        type_id: "sensor",
        device_id: "s1",
        event_id: "status",
        format: "json",
        json,
        timestamp_ms: 0,
        rule_id: "hot",
        rule_name: "Too hot",
    }
}

#[test]
fn templates_fill_in_the_event() {
    let event = json!({"d": {"temp": 31, "where": "hall"}});
    let t = Template::parse("alerts/${typeId}/${deviceId}/${d.where}").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(t.render(&ctx(&event), false), Ok("alerts/sensor/s1/hall".into()));
    let p = Template::parse(r#"{"temp": ${d.temp}, "where": ${d.where}, "rule": "${ruleId}"}"#)
        .unwrap_or_else(|e| panic!("{e}"));
    let text = p.render(&ctx(&event), true).unwrap_or_else(|e| panic!("{e}"));
    let parsed: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{text}: {e}"));
    assert_eq!(parsed, json!({"temp": 31, "where": "hall", "rule": "hot"}));
    assert!(Template::parse("${d.temp").is_err());
    assert!(Template::parse("${no such}").is_err());
    assert_eq!(
        Template::parse("${d.nope}").map(|t| t.render(&ctx(&event), true)),
        Ok(Err(EvalError::Missing("d.nope".into())))
    );
}

fn rule(value: Value) -> Result<(), String> {
    let def: RuleDef = serde_json::from_value(value).map_err(|e| e.to_string())?;
    compile("myorg1", def).map(|_| ()).map_err(|e| e.to_string())
}

#[test]
fn rules_are_checked_whole() {
    let good = json!({
        "id": "hot", "condition": "d.temp > 30",
        "notification": {"strategy": "count", "times": 2, "period": "1m"},
        "actions": [
            {"type": "publish", "topic": "iot-2/type/${typeId}/id/${deviceId}/evt/alert/fmt/json"},
            {"type": "webhook", "url": "http://127.0.0.1:9/hook", "retries": 1},
            {"type": "alert", "severity": "critical"}
        ]
    });
    assert_eq!(rule(good), Ok(()));
    let refused = [
        (json!({"id": "a b", "condition": "1 > 0"}), "rule id"),
        (json!({"id": "x", "condition": "d.temp >"}), "position 8"),
        (
            json!({"id": "x", "condition": "1 > 0", "notification": {"strategy": "sometimes"}}),
            "unknown notification strategy",
        ),
        (
            json!({"id": "x", "condition": "1 > 0", "notification": {"strategy": "count", "times": 2}}),
            "\"period\"",
        ),
        (
            json!({"id": "x", "condition": "1 > 0", "notification": {"strategy": "persists", "for": "soon"}}),
            "not a duration",
        ),
        (
            json!({"id": "x", "condition": "1 > 0", "actions": [{"type": "publish", "topic": "alerts/x"}]}),
            "action 0",
        ),
        (
            json!({"id": "x", "condition": "1 > 0", "actions": [{"type": "webhook", "url": "ftp://x/"}]}),
            "http:// or https:// is needed",
        ),
        (
            json!({"id": "x", "condition": "1 > 0", "actions": [{"type": "mail"}]}),
            "unknown variant",
        ),
        (
            json!({"id": "x", "condition": "1 > 0", "source": {"topic": "a/#", "typeId": "t"}}),
            "not both",
        ),
        (
            json!({"id": "x", "condition": "1 > 0", "colour": "red"}),
            "unknown field",
        ),
    ];
    for (value, words) in refused {
        match rule(value.clone()) {
            Ok(()) => panic!("{value} accepted"),
            Err(e) => assert!(e.contains(words), "{value}: {e}"),
        }
    }
}

#[test]
fn rules_of_plain_listeners_pick_by_topic_and_publish_outside_dollar_topics() {
    let plain = |value: Value| {
        let def: RuleDef = serde_json::from_value(value).map_err(|e| e.to_string())?;
        compile(crate::rules::PLAIN, def).map(|_| ()).map_err(|e| e.to_string())
    };
    let ok = json!({"id": "p", "source": {"topic": "factory/#"}, "condition": "value > 1",
                    "actions": [{"type": "publish", "topic": "alerts/${topic}"}]});
    assert_eq!(plain(ok), Ok(()));
    let no_topic = json!({"id": "p", "source": {"typeId": "t"}, "condition": "value > 1"});
    assert!(plain(no_topic).is_err_and(|e| e.contains("by topic")));
    let dollar = json!({"id": "p", "source": {"topic": "a/#"}, "condition": "true",
                        "actions": [{"type": "publish", "topic": "$SYS/x"}]});
    assert!(plain(dollar).is_err_and(|e| e.contains("$ topic")));
}

proptest::proptest! {
    #[test]
    fn any_text_is_parsed_or_refused_and_never_panics(text in "[-+*/%()<>=!&|a-z0-9.\\[\\] '\"]{0,80}") {
        if let Ok(c) = parse(&text) {
            let event = json!({"d": {"temp": 1.5, "name": "x", "list": [1, 2]}});
            let _ = c.holds(&event, &vec![Some(1.0); c.aggregates.len()]);
        }
    }

    #[test]
    fn any_template_is_parsed_or_refused_and_never_panics(text in "[${}a-zA-Z0-9./\\[\\]\" ]{0,60}") {
        if let Ok(t) = Template::parse(&text) {
            let event = json!({"d": {"temp": 1.5}});
            let _ = t.render(&ctx(&event), true);
        }
    }
}
