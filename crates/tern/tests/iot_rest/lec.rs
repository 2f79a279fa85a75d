//! The last event cache over REST: fed over MQTT and HTTP, kept across kill -9 and a
//! clean stop, enabled from the command line while the broker runs.

use super::harness::*;
use crate::common::*;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde_json::json;
use std::time::Duration;
use tern_proto::*;

#[test]
fn the_last_event_cache_keeps_mqtt_and_http_events_across_a_kill() {
    let mut p = Platform::start();
    let a = p.admin.clone();
    assert_eq!(
        p.call(&a, "GET", "/config/lec", None).ok(200),
        json!({"enabled": false, "ttlDays": 7})
    );
    p.call(&a, "GET", "/device/types/test/devices/4321/events", None)
        .refused(404);
    p.call(&a, "PUT", "/config/lec", Some(json!({"enabled": true, "ttlDays": 0})))
        .refused(400);
    p.call(&a, "PUT", "/config/lec", Some(json!({"ttlDays": 3})))
        .refused(400);
    let set = p
        .call(&a, "PUT", "/config/lec", Some(json!({"enabled": true, "ttlDays": 3})))
        .ok(200);
    assert_eq!(set, json!({"enabled": true, "ttlDays": 3}));
    assert_eq!(p.call(&p.reader, "GET", "/config/lec", None).ok(200), set);
    assert!(cached(&p).is_empty());

    // Over MQTT: acknowledged at QoS 1, readable within a second.
    let mut device = p.device();
    assert_eq!(
        device.publish("iot-2/evt/status/fmt/json", br#"{"v":1}"#, QoS::AtLeastOnce, false, 1),
        ReasonCode::SUCCESS
    );
    assert_eq!(
        device.publish("iot-2/evt/status/fmt/json", br#"{"v":2}"#, QoS::AtLeastOnce, false, 2),
        ReasonCode::SUCCESS
    );
    let status = within(Duration::from_secs(1), "the MQTT event in the cache", || {
        let got = p.call(&p.reader, "GET", "/device/types/test/devices/4321/events/status", None);
        (got.status == 200 && got.json()["payload"] == STANDARD.encode(br#"{"v":2}"#)).then(|| got.json())
    });
    assert_eq!(
        (
            status["typeId"].clone(),
            status["deviceId"].clone(),
            status["eventId"].clone(),
            status["format"].clone()
        ),
        (json!("test"), json!("4321"), json!("status"), json!("json"))
    );
    let stamp = status["timestamp"].as_str().unwrap();
    assert!(
        stamp.len() == 28 && stamp.ends_with("+0000") && stamp.as_bytes()[10] == b'T',
        "{stamp}"
    );
    // Over HTTP.
    p.post(
        &p.device_auth(),
        "/device/types/test/devices/4321/events/alarm",
        "text/plain",
        b"hot",
    )
    .ok(200);
    within(Duration::from_secs(1), "the HTTP event in the cache", || {
        (cached(&p).len() == 2).then_some(())
    });
    p.call(&p.reader, "GET", "/device/types/test/devices/4321/events/nothing", None)
        .refused(404);
    p.call(&p.reader, "GET", "/device/types/test/devices/nope/events", None)
        .refused(404);
    // orgb sees nothing of it.
    let orgb = [("Authorization", p.orgb.as_str()), ("Host", "orgb.iot.test")];
    request(
        p.http(),
        "GET",
        "/api/v0002/device/types/test/devices/4321/events",
        &orgb,
        b"",
    )
    .refused(404);
    let before = cached(&p);

    // Written in batches: once the file holds both, a kill -9 loses nothing.
    let file = p.data.join("platform/lec/za6xa7.json");
    within(PATIENCE, "the cache written", || {
        let text = std::fs::read_to_string(&file).ok()?;
        (text.contains(&STANDARD.encode(b"hot")) && text.contains(&STANDARD.encode(br#"{"v":2}"#))).then_some(())
    });
    device.hang_up();
    p.kill_and_restart();
    assert_eq!(cached(&p), before);
    // Disabled: gone.
    p.call(&a, "PUT", "/config/lec", Some(json!({"enabled": false})))
        .ok(200);
    p.call(&a, "GET", "/device/types/test/devices/4321/events", None)
        .refused(404);
}

#[test]
fn a_clean_stop_keeps_what_the_cache_took_in_its_last_moment() {
    let mut p = Platform::start();
    let a = p.admin.clone();
    p.call(&a, "PUT", "/config/lec", Some(json!({"enabled": true}))).ok(200);
    p.post(
        &p.device_auth(),
        "/device/types/test/devices/4321/events/last",
        "text/plain",
        b"bye",
    )
    .ok(200);
    within(Duration::from_secs(1), "the event in the cache", || {
        (cached(&p).len() == 1).then_some(())
    });
    // Stopped at once, before a batch may have been written: written on the way out.
    p.stop_and_restart();
    let kept = cached(&p);
    assert_eq!(kept.len(), 1);
    assert_eq!(kept[0]["payload"], STANDARD.encode(b"bye"));
    assert_eq!(kept[0]["format"], "text");
    // Enabled when it starts: new events are cached at once.
    p.post(
        &p.device_auth(),
        "/device/types/test/devices/4321/events/next",
        "text/plain",
        b"hi",
    )
    .ok(200);
    within(Duration::from_secs(1), "the new event in the cache", || {
        (cached(&p).len() == 2).then_some(())
    });
}

#[test]
fn a_cache_enabled_from_the_command_line_fills_while_the_broker_runs() {
    let p = Platform::start();
    iot(&p.data, &["org", "set", "za6xa7", "--lec", "true"]);
    let path = "/device/types/test/devices/4321/events/e";
    within(PATIENCE, "events cached", || {
        // 429 when this loop goes faster than the device's quota.
        let posted = p.post(&p.device_auth(), path, "text/plain", b"x").status;
        assert!(posted == 200 || posted == 429, "{posted}");
        // 404 until the broker has seen the change.
        let got = p.call(&p.reader, "GET", "/device/types/test/devices/4321/events", None);
        (got.status == 200 && got.json().as_array().is_some_and(|a| !a.is_empty())).then_some(())
    });
}
