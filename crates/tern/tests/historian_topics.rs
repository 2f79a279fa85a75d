//! The historian for plain listeners (issue #17, docs/historian.md "Plain listeners")
//! against the real binary: `historian_topic` lines choose what is stored, messages
//! published over MQTT (3.1.1 and 5.0) are read back by topic through
//! `GET /api/v1/historian/events` exactly, page by page and as aggregates checked against
//! values computed here; a reload adds and removes lines live; retention by days and by
//! bytes removes the oldest when the broker's test clock moves; bad lines stop the start
//! naming the directive, bad queries get 400, no key 401.
#![allow(clippy::unwrap_used, clippy::expect_used)]
mod common;
#[allow(dead_code)]
#[path = "http_api/harness.rs"]
mod harness;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use common::*;
use harness::{send, Answer, Key};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;
use tern_proto::*;

/// A broker with an MQTT and an HTTP listener, `lines` in its configuration, its test
/// clock on, and an admin key.
struct Historian {
    broker: Broker,
    http: SocketAddr,
    key: Key,
    _data: tempfile::TempDir,
}

fn config(data: &Path, lines: &str) -> String {
    format!(
        "listener 0 127.0.0.1\nallow_anonymous true\nlistener 0 127.0.0.1\nprotocol http\npersistence_location {}\n{lines}",
        data.display()
    )
}

impl Historian {
    fn start(lines: &str) -> Historian {
        Self::start_with(lines, |_| {})
    }

    /// Like `start`, after `prepare` has had the data directory.
    fn start_with(lines: &str, prepare: impl FnOnce(&Path)) -> Historian {
        let data = tempfile::tempdir().unwrap();
        prepare(data.path());
        let key = admin_key(data.path());
        let broker = Broker::with_test_clock("tern.conf", &config(data.path(), lines));
        let http = broker.listening_addrs()[1];
        Historian {
            broker,
            http,
            key,
            _data: data,
        }
    }

    fn call(&self, path: &str) -> Answer {
        let auth = format!("Bearer {}", self.key.secret);
        send(self.http, "GET", path, &[("Authorization", &auth)], b"")
    }

    fn get(&self, path: &str) -> Value {
        let answer = self.call(path);
        assert_eq!(answer.status, 200, "GET {path}: {answer:?}");
        answer.json()
    }

    /// Polls until `topic` has `n` stored messages; returns them.
    fn stored(&self, topic: &str, n: usize) -> Vec<Value> {
        let path = format!("/api/v1/historian/events?topic={}&start=0&limit=1000", encode(topic));
        within(
            Duration::from_secs(10),
            &format!("{n} messages of {topic} stored"),
            || {
                let events = self.get(&path)["events"].as_array().unwrap().clone();
                (events.len() == n).then_some(events)
            },
        )
    }

    /// Publishes each payload at QoS 1 on `topic` from a new client of `version`.
    fn publish(&self, version: ProtocolVersion, topic: &str, payloads: &[Vec<u8>]) {
        let mut client = self.broker.connect(version, "publisher");
        for (i, payload) in payloads.iter().enumerate() {
            let id = u16::try_from(i + 1).unwrap();
            // Acknowledged (5.0 adds that nobody subscribes).
            let code = client.publish(topic, payload, QoS::AtLeastOnce, false, id);
            assert!(
                [ReasonCode::SUCCESS, ReasonCode::NO_MATCHING_SUBSCRIBERS].contains(&code),
                "{code:?}"
            );
        }
        client.disconnect();
    }
}

/// Percent-encodes a topic for a query string.
fn encode(topic: &str) -> String {
    topic
        .bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' => char::from(b).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Polls `f` until it gives a value, at most `limit`.
fn within<T>(limit: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = std::time::Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(std::time::Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn messages_on_configured_topics_are_stored_and_read_back_by_topic() {
    let h = Historian::start("historian_topic sensors/# 7d\nhistorian_topic logs/+ 1MB\n");
    let temps: Vec<Vec<u8>> = (0..7)
        .map(|i| {
            json!({"d": {"temp": 20.0 + f64::from(i) * 0.5}})
                .to_string()
                .into_bytes()
        })
        .collect();
    h.publish(ProtocolVersion::V3_1_1, "sensors/room 1/temp", &temps);
    let odd = vec![b"21.5".to_vec(), vec![0, 1, 2, 255], b"not json".to_vec()];
    h.publish(ProtocolVersion::V5, "logs/app", &odd);
    // Not stored: no line matches, or a line's filter does not.
    h.publish(ProtocolVersion::V5, "other/x", &[b"1".to_vec()]);
    h.publish(ProtocolVersion::V3_1_1, "logs/app/deeper", &[b"1".to_vec()]);

    let events = h.stored("sensors/room 1/temp", 7);
    for (event, sent) in events.iter().zip(&temps) {
        assert_eq!(event["topic"], "sensors/room 1/temp");
        assert_eq!(event["format"], "json");
        assert_eq!(event["payload"], serde_json::from_slice::<Value>(sent).unwrap());
        assert!(event["timestamp"].as_str().unwrap().ends_with("+0000"), "{event}");
    }
    let logs = h.stored("logs/app", 3);
    assert_eq!(logs[0]["payload"], json!(21.5));
    assert_eq!(logs[1]["format"], "base64");
    assert_eq!(
        STANDARD.decode(logs[1]["payload"].as_str().unwrap()).unwrap(),
        vec![0, 1, 2, 255]
    );
    assert_eq!(
        STANDARD.decode(logs[2]["payload"].as_str().unwrap()).unwrap(),
        b"not json"
    );

    // `tern iot export --topic` writes the same, as CSV.
    let url = format!("http://{}", h.http);
    let out = tern(&[
        "iot",
        "--url",
        &url,
        "--admin-key",
        &h.key.pair(),
        "export",
        "--topic",
        "logs/app",
        "--start",
        "0",
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let expected: Vec<String> = std::iter::once("timestamp,payload".to_string())
        .chain(logs.iter().map(|e| {
            let payload = match &e["payload"] {
                Value::String(text) => text.clone(),
                other => other.to_string(),
            };
            format!("{},{payload}", e["timestamp"].as_str().unwrap())
        }))
        .collect();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).lines().collect::<Vec<_>>(),
        expected
    );

    // Pages of 3 with bookmarks give the same messages, once each.
    let mut paged = Vec::new();
    let mut bookmark: Option<String> = None;
    loop {
        let mut path = "/api/v1/historian/events?topic=sensors%2Froom%201%2Ftemp&start=0&limit=3".to_string();
        if let Some(b) = &bookmark {
            path.push_str(&format!("&bookmark={b}"));
        }
        let page = h.get(&path);
        paged.extend(page["events"].as_array().unwrap().iter().cloned());
        match page["bookmark"].as_str() {
            Some(b) => bookmark = Some(b.to_string()),
            None => break,
        }
    }
    assert_eq!(paged, events);

    // Aggregates over the last day (the default range) by day, computed here from what
    // was sent; the range may hold two days' intervals: combined with their counts.
    let values: Vec<f64> = (0..7).map(|i| 20.0 + f64::from(i) * 0.5).collect();
    let points = |agg: &str| -> Vec<f64> {
        let path = format!("/api/v1/historian/events?topic=sensors/room%201/temp&agg={agg}&interval=1d&field=d.temp");
        let points = h.get(&path)["points"].as_array().unwrap().clone();
        points.iter().map(|p| p["value"].as_f64().unwrap()).collect()
    };
    let counts = points("count");
    assert_eq!(counts.iter().sum::<f64>(), 7.0, "{counts:?}");
    let sum: f64 = values.iter().sum();
    assert!((points("sum").iter().sum::<f64>() - sum).abs() < 1e-9);
    let weighted: f64 = points("avg").iter().zip(&counts).map(|(a, c)| a * c).sum();
    assert!((weighted / 7.0 - sum / 7.0).abs() < 1e-9);
    assert_eq!(points("min").into_iter().fold(f64::MAX, f64::min), 20.0);
    assert_eq!(points("max").into_iter().fold(f64::MIN, f64::max), 23.0);
    assert_eq!(points("last").last().copied(), Some(23.0));

    // What is not stored, and what the lines are.
    let missing = h.call("/api/v1/historian/events?topic=other/x&start=0");
    assert_eq!(missing.status, 404, "{missing:?}");
    assert!(missing.json()["error"]
        .as_str()
        .unwrap()
        .contains("no historian_topic line stores"));
    let deeper = h.call("/api/v1/historian/events?topic=logs/app/deeper&start=0");
    assert_eq!(deeper.status, 404, "logs/+ is one level: {deeper:?}");
    assert_eq!(
        h.get("/api/v1/historian/topics")["topics"],
        json!([
            {"filter": "sensors/#", "retentionDays": 7, "configured": true},
            {"filter": "logs/+", "retentionDays": 30, "retentionBytes": 1_048_576, "configured": true},
        ])
    );
}

#[test]
fn bad_queries_are_refused_naming_what_is_wrong() {
    let h = Historian::start("historian_topic a/#\n");
    for (query, says) in [
        ("start=0", "topic"),
        ("topic=a/%2B", "not a topic name"),
        ("topic=a/b&topic=a/c", "twice"),
        ("topic=a/b&limt=5", "unknown query parameter"),
        ("topic=a/b&limit=0", "limit"),
        ("topic=a/b&agg=avg&interval=1m", "field"),
        ("topic=a/b&start=yesterday", "start"),
    ] {
        let answer = h.call(&format!("/api/v1/historian/events?{query}"));
        assert_eq!(answer.status, 400, "{query}: {answer:?}");
        let error = answer.json()["error"].as_str().unwrap().to_string();
        assert!(error.contains(says), "{query}: {error}");
    }
    let anonymous = send(h.http, "GET", "/api/v1/historian/events?topic=a/b", &[], b"");
    assert_eq!(anonymous.status, 401, "{anonymous:?}");
}

#[test]
fn a_reload_puts_new_lines_in_force_and_keeps_what_a_removed_line_stored() {
    let mut h = Historian::start("historian_topic first/#\n");
    h.publish(ProtocolVersion::V3_1_1, "first/1", &[b"1".to_vec()]);
    h.stored("first/1", 1);
    let path = h.broker.config_path.clone().unwrap();
    let data = h._data.path().to_path_buf();
    std::fs::write(&path, config(&data, "historian_topic second/# 2d\n")).unwrap();
    let before = h.broker.log_count(&["historian: storing messages on second/#"]);
    h.broker.signal(SIGHUP);
    assert!(
        h.broker
            .wait_log_count(&["historian: storing messages on second/#"], before + 1),
        "the new line was not applied"
    );
    h.publish(ProtocolVersion::V5, "second/2", &[b"2".to_vec()]);
    h.stored("second/2", 1);
    // The removed line stores nothing more, and what it stored still reads back.
    h.publish(ProtocolVersion::V3_1_1, "first/1", &[b"3".to_vec()]);
    h.publish(ProtocolVersion::V3_1_1, "second/2", &[b"4".to_vec()]);
    h.stored("second/2", 2);
    assert_eq!(h.stored("first/1", 1)[0]["payload"], json!(1));
    assert_eq!(
        h.get("/api/v1/historian/topics")["topics"],
        json!([
            {"filter": "second/#", "retentionDays": 2, "configured": true},
            {"filter": "first/#", "retentionDays": 30, "configured": false},
        ])
    );
    // Past the removed line's retention (and a day), its events and the line are gone.
    h.broker.advance_clock(32 * 86_400);
    within(Duration::from_secs(10), "the removed line forgotten", || {
        let topics = h.get("/api/v1/historian/topics")["topics"].clone();
        (topics.as_array().unwrap().len() == 1).then_some(())
    });
    assert_eq!(h.call("/api/v1/historian/events?topic=first/1&start=0").status, 404);
}

#[test]
fn retention_removes_what_is_older_than_its_days_or_over_its_bytes() {
    let mut h = Historian::start("historian_topic old/# 1d\nhistorian_topic big/# 2000B\n");
    let payload = vec![b'x'; 300];
    h.publish(ProtocolVersion::V3_1_1, "old/t", &[b"1".to_vec(), b"2".to_vec()]);
    h.publish(ProtocolVersion::V3_1_1, "big/t", &vec![payload.clone(); 4]);
    h.stored("old/t", 2);
    h.stored("big/t", 4);
    // Ten minutes on: 4 more of 313 bytes each (payload and framing): 2504 bytes in all,
    // over 2000, so the older minute's four go.
    h.broker.advance_clock(600);
    let newer: Vec<Vec<u8>> = (0..4).map(|i| format!("n{i:0>299}").into_bytes()).collect();
    h.publish(ProtocolVersion::V5, "big/t", &newer);
    h.stored("big/t", 8);
    h.broker.advance_clock(60);
    let kept = h.stored("big/t", 4);
    for (event, sent) in kept.iter().zip(&newer) {
        assert_eq!(STANDARD.decode(event["payload"].as_str().unwrap()).unwrap(), *sent);
    }
    assert!(h
        .broker
        .log_contains("historian: retention removed 4 events of historian_topic big/# (over 2000 bytes)"));
    // Two days on, old/t's events are past their day.
    h.broker.advance_clock(2 * 86_400);
    h.stored("old/t", 0);
    assert!(h
        .broker
        .log_contains("historian: retention removed 2 events of historian_topic old/# (older than 1 days)"));
}

#[test]
fn bad_historian_topic_lines_stop_the_start_naming_the_directive() {
    let dir = tempfile::tempdir().unwrap();
    for (line, says) in [
        ("historian_topic", "historian_topic: needs a topic filter"),
        ("historian_topic a/#/b", "is not a valid topic filter"),
        ("historian_topic $SYS/#", "starting with '$'"),
        ("historian_topic a/# 0d", "1d to 3650d"),
        ("historian_topic a/# 3TB", "neither days"),
    ] {
        let path = dir.path().join("bad.conf");
        std::fs::write(&path, format!("listener 0 127.0.0.1\n{line}\n")).unwrap();
        let out = tern(&["broker", "-c", path.to_str().unwrap()]);
        assert!(!out.status.success(), "{line}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains(":2: historian_topic") && stderr.contains(says),
            "{line}: {stderr}"
        );
    }
    let toml = dir.path().join("bad.toml");
    std::fs::write(&toml, "historian_topic = [\"ok/# 2d\", \"x/# 2q\"]\n").unwrap();
    let out = tern(&["broker", "-c", toml.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("historian_topic: x/#: \"2q\" is neither days"));
}

#[test]
fn damaged_historian_files_are_reported_and_cost_only_the_historian() {
    // A damaged list of removed lines: reported, ignored, the lines in force still store.
    let h = Historian::start_with("historian_topic a/#\n", |data| {
        let dir = data.join("platform").join("historian");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("_topics.json"), b"{damaged").unwrap();
    });
    assert!(h.broker.log_contains("_topics.json is damaged"));
    h.publish(ProtocolVersion::V5, "a/1", &[b"1".to_vec()]);
    h.stored("a/1", 1);
    // A damaged store: reported; queries say why (503); MQTT is not touched.
    let h = Historian::start_with("historian_topic a/#\n", |data| {
        let dir = data.join("platform");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("historian.redb"), vec![0x5a; 8192]).unwrap();
    });
    assert!(h.broker.log_contains("historian.redb"));
    let mut subscriber = h.broker.connect(ProtocolVersion::V3_1_1, "listener");
    subscriber.subscribe("a/#", QoS::AtLeastOnce);
    h.publish(ProtocolVersion::V5, "a/1", &[b"1".to_vec()]);
    assert_eq!(subscriber.recv_publish().payload.as_ref(), b"1");
    let answer = h.call("/api/v1/historian/events?topic=a/1");
    assert_eq!(answer.status, 503, "{answer:?}");
    assert!(answer.json()["error"].as_str().unwrap().contains("historian.redb"));
}
