//! The historian (issue #17) against the real binary: an organization switches storing on
//! with `PUT /api/v0002/config/historian`, a device publishes events over MQTT, and they
//! are read back through `GET /api/v0002/historian/...` exactly (order, JSON and base64
//! payloads), page by page with bookmarks, as aggregates checked against values computed
//! here, filtered by event id, kept across a kill -9, removed by retention when the
//! broker's test clock moves past it; bad queries get 400.
#![allow(clippy::unwrap_used, clippy::expect_used)]
mod common;
#[path = "iot_rest/harness.rs"]
mod harness;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use common::*;
use harness::*;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::time::Duration;
use tern_proto::*;

const TEMP: &str = "/historian/types/test/devices/4321/events/temp";

/// The REST tests' platform, its device allowed many messages a second (the default
/// quota is 10), restarted so the setting is in force.
fn platform() -> Platform {
    let mut p = Platform::start();
    iot(
        &p.data,
        &["org", "set", "za6xa7", "--device-messages-per-second", "100000"],
    );
    p.stop_and_restart();
    p
}

/// Switches storing on for za6xa7 with `body`.
fn enable(p: &Platform, body: Value) -> Value {
    p.call(&p.admin, "PUT", "/config/historian", Some(body)).ok(200)
}

/// A query's answer as the read-only key gets it.
fn query(p: &Platform, path_and_query: &str) -> Value {
    p.call(&p.reader, "GET", path_and_query, None).ok(200)
}

/// Polls until the device's `event` has `n` stored events (from the epoch on); returns them.
fn stored(p: &Platform, event: &str, n: usize) -> Vec<Value> {
    let path = format!("/historian/types/test/devices/4321/events/{event}?start=0&limit=1000");
    within(Duration::from_secs(10), &format!("{n} {event} events stored"), || {
        let events = query(p, &path)["events"].as_array().unwrap().clone();
        assert!(events.len() <= n, "more than {n} events: {events:?}");
        (events.len() == n).then_some(events)
    })
}

/// Publishes at QoS 1 (acknowledged before the next) from the device.
fn publish_all(device: &mut Client, topic: &str, payloads: &[Vec<u8>]) {
    for (i, payload) in payloads.iter().enumerate() {
        let id = u16::try_from(i % 60_000 + 1).unwrap();
        assert_eq!(
            device.publish(topic, payload, QoS::AtLeastOnce, false, id),
            ReasonCode::SUCCESS
        );
    }
}

fn temps(n: usize) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| json!({"d": {"temp": i as f64 * 0.5, "n": i}}).to_string().into_bytes())
        .collect()
}

#[test]
fn events_are_stored_and_read_back_in_order_page_by_page() {
    let p = platform();
    assert_eq!(
        p.call(&p.reader, "GET", "/config/historian", None).ok(200),
        json!({"enabled": false, "retentionDays": 30, "filter": {"typeIds": [], "eventIds": []}})
    );
    // Only admin keys change the settings.
    p.call(&p.reader, "PUT", "/config/historian", Some(json!({"enabled": true})))
        .refused(403);
    let set = enable(&p, json!({"enabled": true, "retentionDays": 7}));
    assert_eq!(set["retentionDays"], 7);
    assert_eq!(p.call(&p.reader, "GET", "/config/historian", None).ok(200), set);

    let mut device = p.device();
    let json_payloads = temps(25);
    publish_all(&mut device, "iot-2/evt/temp/fmt/json", &json_payloads);
    let raw_payloads: Vec<Vec<u8>> = vec![vec![0, 1, 2, 255], b"plain text".to_vec(), b"{broken".to_vec()];
    publish_all(&mut device, "iot-2/evt/raw/fmt/bin", &raw_payloads[..2]);
    publish_all(&mut device, "iot-2/evt/raw/fmt/json", &raw_payloads[2..]);

    let events = stored(&p, "temp", 25);
    let payloads: Vec<Value> = events.iter().map(|e| e["payload"].clone()).collect();
    let expected: Vec<Value> = json_payloads
        .iter()
        .map(|b| serde_json::from_slice(b).unwrap())
        .collect();
    assert_eq!(payloads, expected, "JSON payloads as sent, in order");
    let stamps: Vec<&str> = events.iter().map(|e| e["timestamp"].as_str().unwrap()).collect();
    assert!(stamps.windows(2).all(|w| w[0] <= w[1]), "{stamps:?}");
    assert!(
        stamps.iter().all(|s| s.len() == 28 && s.ends_with("+0000")),
        "{stamps:?}"
    );
    assert!(events.iter().all(|e| e["format"] == "json"));

    // Non-JSON payloads (and a json format that does not parse) come back in base64.
    let raw = stored(&p, "raw", 3);
    let got: Vec<(Value, Value)> = raw
        .iter()
        .map(|e| (e["format"].clone(), e["payload"].clone()))
        .collect();
    let want: Vec<(Value, Value)> = [("bin", 0), ("bin", 1), ("json", 2)]
        .iter()
        .map(|(f, i)| (json!(f), json!(STANDARD.encode(&raw_payloads[*i]))))
        .collect();
    assert_eq!(got, want);

    // Pages of 10 with bookmarks: 10, 10, 5, then no bookmark.
    let mut paged = Vec::new();
    let mut sizes = Vec::new();
    let mut next = format!("{TEMP}?start=0&limit=10");
    loop {
        let page = query(&p, &next);
        let events = page["events"].as_array().unwrap();
        sizes.push(events.len());
        paged.extend(events.iter().cloned());
        match page["bookmark"].as_str() {
            Some(b) => next = format!("{TEMP}?start=0&limit=10&bookmark={b}"),
            None => break,
        }
    }
    assert_eq!(sizes, vec![10, 10, 5]);
    assert_eq!(paged, events);

    // A range: from the 5th event's time on (ISO-8601 as the API wrote it).
    let from = stamps[5].replace('+', "%2B");
    let ranged = query(&p, &format!("{TEMP}?start={from}&limit=1000"))["events"]
        .as_array()
        .unwrap()
        .clone();
    assert!(ranged.len() >= 20 && ranged.len() <= 25, "{}", ranged.len());
    assert_eq!(ranged.last(), events.last());

    // `tern iot export` reads the same events, page by page, as JSON lines and as CSV.
    let key = String::from_utf8(STANDARD.decode(&p.reader[6..]).unwrap()).unwrap();
    let url = format!("http://{}", p.http());
    let export = |format: &str| {
        let args = [
            "iot",
            "--url",
            &url,
            "export",
            "test",
            "4321",
            "temp",
            "--api-key",
            &key,
            "--start",
            "0",
        ];
        let out = tern(&[&args[..], &["--format", format]].concat());
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };
    let lines: Vec<Value> = export("json")
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines, events);
    let csv = export("csv");
    let rows: Vec<&str> = csv.lines().collect();
    assert_eq!(rows.len(), 26, "{csv}");
    assert_eq!(rows[0], "timestamp,payload");
    assert!(rows[1].starts_with(&format!("{},\"{{", stamps[0])), "{}", rows[1]);

    // Another organization sees none of it; devices may not read; no credentials: 401.
    let orgb = request(
        p.http(),
        "GET",
        &format!("/api/v0002{TEMP}?start=0"),
        &[("Authorization", p.orgb.as_str()), ("Host", "orgb.iot.test")],
        b"",
    )
    .ok(200);
    assert_eq!(orgb["events"], json!([]));
    p.call(&p.device_auth(), "GET", TEMP, None).refused(403);
    request(p.http(), "GET", &format!("/api/v0002{TEMP}"), &[], b"").refused(401);
}

/// The expected points of `agg` over 1-minute intervals, from events as the API returned
/// them (a timestamp's first 16 characters name its minute).
fn expected_points(events: &[Value], agg: &str, interval_chars: usize, bucket_suffix: &str) -> Vec<Value> {
    let mut buckets: BTreeMap<String, Vec<Option<f64>>> = BTreeMap::new();
    for e in events {
        let stamp = e["timestamp"].as_str().unwrap();
        let key = format!("{}{bucket_suffix}", &stamp[..interval_chars]);
        buckets.entry(key).or_default().push(e["payload"]["d"]["temp"].as_f64());
    }
    buckets
        .into_iter()
        .filter_map(|(at, values)| {
            let numbers: Vec<f64> = values.iter().flatten().copied().collect();
            let value = match agg {
                "count" => json!(values.len()),
                _ if numbers.is_empty() => return None,
                "min" => json!(numbers.iter().copied().fold(f64::INFINITY, f64::min)),
                "max" => json!(numbers.iter().copied().fold(f64::NEG_INFINITY, f64::max)),
                "sum" => json!(numbers.iter().sum::<f64>()),
                "avg" => json!(numbers.iter().sum::<f64>() / numbers.len() as f64),
                "last" => json!(numbers.last().unwrap()),
                _ => unreachable!(),
            };
            Some(json!({"timestamp": at, "value": value}))
        })
        .collect()
}

#[test]
fn aggregates_agree_with_values_computed_from_the_stored_events() {
    let p = platform();
    enable(&p, json!({"enabled": true}));
    let mut device = p.device();
    let mut payloads = temps(40);
    // Skipped by all but count: no such field, and a field that is not a number.
    payloads.insert(7, br#"{"d": {"hum": 3}}"#.to_vec());
    payloads.insert(20, br#"{"d": {"temp": "hot"}}"#.to_vec());
    publish_all(&mut device, "iot-2/evt/temp/fmt/json", &payloads);
    let events = stored(&p, "temp", 42);
    // From the start of the first event's day (a range of at most 10000 intervals).
    let day = &events[0]["timestamp"].as_str().unwrap()[..10];
    for agg in ["count", "min", "max", "sum", "avg", "last"] {
        let minutes = query(&p, &format!("{TEMP}?start={day}&agg={agg}&interval=1m&field=d.temp"));
        assert_eq!(
            minutes["points"],
            json!(expected_points(&events, agg, 16, ":00.000+0000")),
            "{agg} per minute"
        );
        let days = query(&p, &format!("{TEMP}?start={day}&agg={agg}&interval=1d&field=d.temp"));
        assert_eq!(
            days["points"],
            json!(expected_points(&events, agg, 10, "T00:00:00.000+0000")),
            "{agg} per day"
        );
    }
    // count needs no field.
    let count = query(&p, &format!("{TEMP}?start={day}&agg=count&interval=1h"));
    let total: u64 = count["points"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["value"].as_u64().unwrap())
        .sum();
    assert_eq!(total, 42);
}

#[test]
fn bad_queries_and_settings_are_refused_with_400_naming_what_is_wrong() {
    let p = platform();
    enable(&p, json!({"enabled": true}));
    for (query, needle) in [
        ("limit=0", "limit"),
        ("limit=1001", "limit"),
        ("limit=x", "limit"),
        ("start=yesterday", "start"),
        ("end=2026-13-01T00:00:00Z", "end"),
        ("start=2000&end=1000", "start must be before end"),
        ("bookmark=zz", "bookmark"),
        ("agg=median&interval=1m&field=d.temp", "agg"),
        ("agg=avg&interval=1m", "field"),
        ("agg=avg&field=d.temp", "interval"),
        ("agg=avg&interval=2m&field=d.temp", "interval"),
        ("agg=avg&interval=1m&field=d..temp", "field"),
        ("interval=1m", "agg"),
        ("start=0&agg=count&interval=1m", "intervals"),
        ("colour=red", "colour"),
        ("start=%zz", "percent"),
    ] {
        let message = p.call(&p.reader, "GET", &format!("{TEMP}?{query}"), None).refused(400);
        assert!(message.contains(needle), "{query}: {message}");
    }
    for body in [
        json!({"retentionDays": 3}),
        json!({"enabled": true, "retentionDays": 0}),
        json!({"enabled": true, "retentionDays": 100000}),
        json!({"enabled": true, "retentionBytes": 0}),
        json!({"enabled": true, "retentionBytes": -5}),
        json!({"enabled": true, "filter": {"typeIds": ["a/b"]}}),
        json!({"enabled": true, "filter": {"topics": ["#"]}}),
        json!({"enabled": true, "color": "red"}),
        json!([1]),
    ] {
        p.call(&p.admin, "PUT", "/config/historian", Some(body.clone()))
            .refused(400);
    }
    let raw = [
        ("Authorization", p.admin.as_str()),
        ("Content-Type", "application/json"),
    ];
    request(p.http(), "PUT", "/api/v0002/config/historian", &raw, b"{nope").refused(400);
    // Unchanged by the refusals.
    assert_eq!(
        p.call(&p.admin, "GET", "/config/historian", None).ok(200)["enabled"],
        true
    );
}

#[test]
fn the_filter_chooses_which_events_are_stored_and_changes_apply_at_once() {
    let p = platform();
    enable(&p, json!({"enabled": true, "filter": {"eventIds": ["temp"]}}));
    let mut device = p.device();
    publish_all(&mut device, "iot-2/evt/other/fmt/json", &[b"{}".to_vec()]);
    publish_all(&mut device, "iot-2/evt/temp/fmt/json", &temps(1));
    stored(&p, "temp", 1);
    // Batches keep the order of publishing: had `other` been stored it would be by now.
    assert_eq!(
        query(&p, "/historian/types/test/devices/4321/events/other?start=0")["events"],
        json!([])
    );
    // Everything from now on: the next `other` is stored.
    enable(&p, json!({"enabled": true}));
    publish_all(&mut device, "iot-2/evt/other/fmt/json", &[b"{\"x\":1}".to_vec()]);
    assert_eq!(stored(&p, "other", 1)[0]["payload"], json!({"x": 1}));
}

#[test]
fn stored_events_survive_a_kill_9() {
    let mut p = platform();
    enable(&p, json!({"enabled": true}));
    let mut device = p.device();
    publish_all(&mut device, "iot-2/evt/temp/fmt/json", &temps(30));
    let before = stored(&p, "temp", 30);
    drop(device);
    p.kill_and_restart();
    assert_eq!(
        query(&p, &format!("{TEMP}?start=0&limit=1000"))["events"],
        json!(before)
    );
    // Still storing after the restart (the settings were kept too).
    assert_eq!(
        p.call(&p.reader, "GET", "/config/historian", None).ok(200)["enabled"],
        true
    );
    let mut device = p.device();
    publish_all(&mut device, "iot-2/evt/temp/fmt/json", &temps(2));
    stored(&p, "temp", 32);
}

#[test]
fn retention_removes_events_older_than_the_organizations_days_or_over_its_bytes() {
    let mut p = Platform::start();
    iot(
        &p.data,
        &["org", "set", "za6xa7", "--device-messages-per-second", "100000"],
    );
    // An admin API key for /metrics.
    let out = tern(&[
        "admin",
        "key",
        "create",
        "--json",
        "--data-dir",
        p.data.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let key: Value = serde_json::from_slice(&out.stdout).unwrap();
    let metrics_auth = basic(&text(&key, "key"), &text(&key, "secret"));
    // The same broker with its test clock on.
    let config = std::fs::read_to_string(&p.config).unwrap();
    p.broker.take().unwrap().stop();
    p.broker = Some(Broker::with_test_clock("mosquitto.conf", &config));
    enable(&p, json!({"enabled": true, "retentionDays": 1}));
    let mut device = p.device();
    publish_all(&mut device, "iot-2/evt/temp/fmt/json", &temps(5));
    stored(&p, "temp", 5);
    // Half a day on: nothing is old enough.
    p.broker.as_mut().unwrap().advance_clock(43_200);
    publish_all(&mut device, "iot-2/evt/temp/fmt/json", &temps(2));
    stored(&p, "temp", 7);
    // A day and a bit after the first five: they go, the two later ones stay.
    p.broker.as_mut().unwrap().advance_clock(50_000);
    let broker = p.broker.as_ref().unwrap();
    wait_until("the retention sweep", || {
        broker.log_contains("historian: retention removed 5 events of za6xa7")
    });
    let kept = stored(&p, "temp", 2);
    let metrics = request(p.http(), "GET", "/metrics", &[("Authorization", &metrics_auth)], b"");
    let metrics = String::from_utf8(metrics.body).unwrap();
    for line in [
        "tern_historian_stored_total 7",
        "tern_historian_purged_total 5",
        "tern_historian_lost_total 0",
    ] {
        assert!(metrics.lines().any(|l| l == line), "{line} in\n{metrics}");
    }
    let payloads: Vec<Value> = kept.iter().map(|e| e["payload"].clone()).collect();
    let expected: Vec<Value> = temps(2).iter().map(|b| serde_json::from_slice(b).unwrap()).collect();
    assert_eq!(payloads, expected);

    // By size: room for one event (payload, format and 13 bytes), so once a newer one is
    // stored the minute of the two older ones goes.
    let newest = json!({"d": {"temp": 99.5, "n": 9}}).to_string().into_bytes();
    let room = newest.len() + "json".len() + 13;
    let set = enable(&p, json!({"enabled": true, "retentionDays": 1, "retentionBytes": room}));
    assert_eq!(set["retentionBytes"], room);
    p.broker.as_mut().unwrap().advance_clock(120);
    publish_all(&mut device, "iot-2/evt/temp/fmt/json", std::slice::from_ref(&newest));
    stored(&p, "temp", 3);
    p.broker.as_mut().unwrap().advance_clock(60);
    let broker = p.broker.as_ref().unwrap();
    wait_until("the retention sweep by size", || {
        broker.log_contains(&format!(
            "historian: retention removed 2 events of za6xa7 (over {room} bytes)"
        ))
    });
    let kept = stored(&p, "temp", 1);
    assert_eq!(kept[0]["payload"], serde_json::from_slice::<Value>(&newest).unwrap());
}
