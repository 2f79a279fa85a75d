//! `/metrics` of the real binary, read over HTTP with an API key and parsed by the real
//! Prometheus text parser (Python's `prometheus_client`), and its counters moving as
//! traffic flows through real MQTT clients.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::*;
use serde_json::Value;
use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use tern_proto::*;

/// Parses exposition text with `prometheus_client` and prints every family's type and
/// every sample, as JSON.
const PARSER: &str = r#"
import json, sys
from prometheus_client.parser import text_string_to_metric_families
families = {}
samples = []
for family in text_string_to_metric_families(sys.stdin.read()):
    families[family.name] = family.type
    for s in family.samples:
        samples.append([s.name, s.labels, s.value])
print(json.dumps({"families": families, "samples": samples}))
"#;

fn parser_available() -> bool {
    let present = python_module_exists("prometheus_client.parser");
    peer_available("the Prometheus text parser (pip install prometheus-client)", present)
}

/// One scrape, as the parser read it.
struct Scrape {
    families: HashMap<String, String>,
    samples: Vec<(String, HashMap<String, String>, f64)>,
}

impl Scrape {
    /// The value of the sample `name` whose labels include `labels`; panics if there is
    /// not exactly one.
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let found: Vec<f64> = self
            .samples
            .iter()
            .filter(|(n, l, _)| n == name && labels.iter().all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v)))
            .map(|(_, _, v)| *v)
            .collect();
        assert_eq!(found.len(), 1, "{name} {labels:?}: {found:?}");
        found[0]
    }
}

fn parse(text: &str) -> Scrape {
    let mut python = Command::new("python3")
        .args(["-c", PARSER])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    python.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = python.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "the parser refused the exposition: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    let parsed: Value = serde_json::from_slice(&out.stdout).unwrap();
    let families = parsed["families"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
        .collect();
    let samples = parsed["samples"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let labels = s[1]
                .as_object()
                .unwrap()
                .iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
                .collect();
            (s[0].as_str().unwrap().to_string(), labels, s[2].as_f64().unwrap())
        })
        .collect();
    Scrape { families, samples }
}

/// A plain HTTP/1.1 request; returns the status and the body.
fn http_get(addr: SocketAddr, path: &str, authorization: Option<&str>) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    let auth = authorization.map_or(String::new(), |a| format!("Authorization: {a}\r\n"));
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Connection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).unwrap();
    let text = String::from_utf8(response).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    let chunked = head.lines().any(|l| {
        let l = l.to_ascii_lowercase();
        l.starts_with("transfer-encoding:") && l.contains("chunked")
    });
    (status, if chunked { dechunk(body) } else { body.to_string() })
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    loop {
        let (size, rest) = body.split_once("\r\n").unwrap();
        let size = usize::from_str_radix(size.trim(), 16).unwrap();
        if size == 0 {
            return out;
        }
        out.push_str(&rest[..size]);
        body = &rest[size + 2..];
    }
}

/// A broker with an MQTT listener and an HTTP listener, persistence on (so the store's
/// metrics exist), a password file (user `u`, password `p`) beside anonymous access, and
/// an API key, and `extra` directives for the MQTT listener; returns it with the key's
/// Basic credentials.
struct Setup {
    /// Kept running for the test.
    _broker: Broker,
    mqtt: SocketAddr,
    http: SocketAddr,
    authorization: String,
    _dir: tempfile::TempDir,
}

fn setup(extra: &str) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let out = tern(&["admin", "key", "create", "--json", "--data-dir", data.to_str().unwrap()]);
    assert!(out.status.success(), "{out:?}");
    let key: Value = serde_json::from_slice(&out.stdout).unwrap();
    let credentials = format!("{}:{}", key["key"].as_str().unwrap(), key["secret"].as_str().unwrap());
    let passwords = dir.path().join("passwd");
    tern_passwd(&passwords, "u", "p", true);
    let broker = Broker::with_config(
        "mosquitto.conf",
        &format!(
            "listener 0 127.0.0.1\nallow_anonymous true\npassword_file {}\nauth_failure_delay 0\n\
             message_size_limit 100\nsys_interval 0\n{extra}listener 0 127.0.0.1\nprotocol http\n\
             persistence true\npersistence_location {}\n",
            passwords.display(),
            data.display()
        ),
    );
    let addrs = broker.listening_addrs();
    Setup {
        mqtt: addrs[0],
        http: addrs[1],
        _broker: broker,
        authorization: format!("Basic {}", base64(credentials.as_bytes())),
        _dir: dir,
    }
}

fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

impl Setup {
    fn scrape(&self) -> Scrape {
        let (status, body) = http_get(self.http, "/metrics", Some(&self.authorization));
        assert_eq!(status, 200, "{body}");
        parse(&body)
    }

    /// Scrapes until `done` holds for a scrape (connections add their counts once per
    /// turn of their loop, right after writing): returns that scrape.
    fn scrape_until(&self, what: &str, done: impl Fn(&Scrape) -> bool) -> Scrape {
        let mut last = None;
        wait_until(what, || {
            let scrape = self.scrape();
            let ok = done(&scrape);
            last = Some(scrape);
            ok
        });
        last.unwrap()
    }

    fn client(&self, version: ProtocolVersion, connect: &Connect) -> (Client, ConnectAck) {
        let mut c = Client::open(self.mqtt, version);
        let ack = c.connect(connect);
        (c, ack)
    }
}

#[test]
fn metrics_parse_with_the_prometheus_parser_and_need_an_api_key() {
    if !parser_available() {
        return;
    }
    let s = setup("");
    assert_eq!(http_get(s.http, "/metrics", None).0, 401);
    assert_eq!(http_get(s.http, "/metrics", Some("Bearer wrong")).0, 401);
    let scrape = s.scrape();
    let expected = [
        ("tern_build_info", "gauge"),
        ("tern_uptime_seconds", "gauge"),
        ("tern_connections", "gauge"),
        ("tern_connections_accepted", "counter"),
        ("tern_connections_maximum", "gauge"),
        ("tern_connections_refused", "counter"),
        ("tern_auth_failures", "counter"),
        ("tern_messages_received", "counter"),
        ("tern_messages_sent", "counter"),
        ("tern_publish_bytes_received", "counter"),
        ("tern_publish_bytes_sent", "counter"),
        ("tern_bytes_received", "counter"),
        ("tern_bytes_sent", "counter"),
        ("tern_messages_dropped", "counter"),
        ("tern_retained_messages", "gauge"),
        ("tern_subscriptions", "gauge"),
        ("tern_sessions", "gauge"),
        ("tern_session_queue_depth_messages", "histogram"),
        ("tern_store_commit_duration_seconds", "histogram"),
        ("tern_store_commit_failures", "counter"),
        ("tern_store_writable", "gauge"),
        ("tern_events_lost", "counter"),
    ];
    for (name, kind) in expected {
        assert_eq!(scrape.families.get(name).map(String::as_str), Some(kind), "{name}");
    }
    let listener = s.mqtt.to_string();
    assert_eq!(scrape.value("tern_connections", &[("listener", &listener)]), 0.0);
    assert_eq!(scrape.value("tern_store_writable", &[]), 1.0);
    for qos in ["0", "1", "2"] {
        assert_eq!(scrape.value("tern_messages_received_total", &[("qos", qos)]), 0.0);
    }
}

#[test]
fn message_and_byte_counters_grow_with_traffic_by_qos() {
    if !parser_available() {
        return;
    }
    let s = setup("");
    const N: u16 = 25;
    let before = s.scrape();
    let (mut subscriber, _) = s.client(V5, &connect_packet(V5, "sub", true, 60));
    subscriber.subscribe("m/#", QoS::ExactlyOnce);
    let (mut publisher, _) = s.client(V311, &connect_packet(V311, "pub", true, 60));
    for i in 1..=N {
        assert_eq!(
            publisher.publish("m/x", b"0123456789", QoS::AtLeastOnce, false, i),
            ReasonCode::SUCCESS
        );
    }
    for _ in 0..N {
        let p = subscriber.recv_publish();
        subscriber.send(&Packet::PublishAck(PublishResponse::new(p.packet_id)));
    }
    publisher.publish("m/two", b"x", QoS::ExactlyOnce, true, 100);
    let p = subscriber.recv_publish();
    subscriber.send(&Packet::PublishReceived(PublishResponse::new(p.packet_id)));
    assert!(matches!(subscriber.recv(), Packet::PublishRelease(_)));
    subscriber.send(&Packet::PublishComplete(PublishResponse::new(p.packet_id)));
    subscriber.ping();

    let n = f64::from(N);
    let after = s.scrape_until("the counters to move", |now| {
        now.value("tern_messages_sent_total", &[("qos", "2")]) == 1.0
            && now.value("tern_messages_received_total", &[("qos", "2")]) == 1.0
    });
    let grew = |name: &str, qos: &str| after.value(name, &[("qos", qos)]) - before.value(name, &[("qos", qos)]);
    assert_eq!(grew("tern_messages_received_total", "1"), n);
    assert_eq!(grew("tern_messages_sent_total", "1"), n);
    assert_eq!(grew("tern_messages_received_total", "0"), 0.0);
    // 3.1.1 PUBLISH of "m/x", 10 bytes, QoS 1: 2 (fixed header) + 5 (topic) + 2 (id) + 10.
    assert_eq!(grew("tern_publish_bytes_received_total", "1"), n * 19.0);
    // To the 5.0 subscriber: one more byte, the empty property length.
    assert_eq!(grew("tern_publish_bytes_sent_total", "1"), n * 20.0);
    assert!(after.value("tern_bytes_received_total", &[]) >= n * 19.0);
    assert!(after.value("tern_bytes_sent_total", &[]) >= n * 20.0);
    let listener = s.mqtt.to_string();
    assert_eq!(after.value("tern_connections", &[("listener", &listener)]), 2.0);
    assert!(after.value("tern_connections_accepted_total", &[("listener", &listener)]) >= 2.0);
    assert_eq!(after.value("tern_sessions", &[("state", "online")]), 2.0);
    assert_eq!(after.value("tern_subscriptions", &[]), 1.0);
    assert_eq!(after.value("tern_retained_messages", &[]), 1.0);
    assert!(after.value("tern_store_commit_duration_seconds_count", &[]) >= 1.0);
    let commits = after.value("tern_store_commit_duration_seconds_count", &[]);
    assert_eq!(
        after.value("tern_store_commit_duration_seconds_bucket", &[("le", "+Inf")]),
        commits
    );
}

#[test]
fn drops_refusals_auth_failures_and_queues_are_counted() {
    if !parser_available() {
        return;
    }
    let s = setup("max_queued_messages 2\n");
    // A persistent 3.1.1 session goes offline with a subscription: what comes queues.
    let (mut offline, _) = s.client(V311, &connect_packet(V311, "away", false, 60));
    offline.subscribe("q/#", QoS::AtLeastOnce);
    offline.disconnect();
    let (mut publisher, _) = s.client(V5, &connect_packet(V5, "pub", true, 60));
    for i in 1..=3 {
        publisher.publish("q/x", b"queued", QoS::AtLeastOnce, false, i);
    }
    // Above message_size_limit (100): refused with 0x97 and dropped.
    let big = [b'x'; 101];
    assert_eq!(
        publisher.publish("q/x", &big, QoS::AtLeastOnce, false, 9),
        ReasonCode::QUOTA_EXCEEDED
    );
    // Clients may not publish to $SYS.
    publisher.publish("$SYS/x", b"no", QoS::AtLeastOnce, false, 10);
    // A wrong password.
    let mut bad = connect_packet(V5, "intruder", true, 60);
    bad.username = Some(ByteStr::from("u"));
    bad.password = Some(bytes::Bytes::from_static(b"wrong"));
    assert_eq!(s.client(V5, &bad).1.reason_code, ReasonCode::NOT_AUTHORIZED);
    // A 3.1.1 client with an empty id and no clean session.
    let empty = connect_packet(V311, "", false, 60);
    assert_eq!(s.client(V311, &empty).1.reason_code.to_connect_return_code(), 2);
    // Not MQTT at all.
    let mut junk = TcpStream::connect(s.mqtt).unwrap();
    junk.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
    let _ = junk.read_to_end(&mut Vec::new());

    let scrape = s.scrape_until("the refusals to be counted", |now| {
        now.value("tern_connections_refused_total", &[("reason", "bad_connect")]) == 1.0
    });
    let dropped = |reason: &str| scrape.value("tern_messages_dropped_total", &[("reason", reason)]);
    assert_eq!(dropped("message_size_limit"), 1.0);
    assert_eq!(dropped("not_authorized"), 1.0);
    // max_queued_messages 2: the third message for the offline session.
    assert_eq!(dropped("queue_full"), 1.0);
    assert_eq!(
        scrape.value("tern_auth_failures_total", &[("reason", "bad_credentials")]),
        1.0
    );
    let refused = |reason: &str| scrape.value("tern_connections_refused_total", &[("reason", reason)]);
    assert_eq!(refused("not_authorized"), 1.0);
    assert_eq!(refused("client_identifier"), 1.0);
    assert_eq!(scrape.value("tern_sessions", &[("state", "offline")]), 1.0);
    assert_eq!(scrape.value("tern_sessions", &[("state", "online")]), 1.0);
    // Two sessions: the publisher's empty queue, and two messages for the one away.
    let bucket = |le: &str| scrape.value("tern_session_queue_depth_messages_bucket", &[("le", le)]);
    assert_eq!(bucket("0.0"), 1.0);
    assert_eq!(bucket("1.0"), 1.0);
    assert_eq!(bucket("10.0"), 2.0);
    assert_eq!(bucket("+Inf"), 2.0);
    assert_eq!(scrape.value("tern_session_queue_depth_messages_sum", &[]), 2.0);
    assert_eq!(scrape.value("tern_session_queue_depth_messages_count", &[]), 2.0);
    // The HTTP listener has no MQTT clients to count.
    let http = s.http.to_string();
    assert!(!scrape
        .samples
        .iter()
        .any(|(_, labels, _)| labels.get("listener") == Some(&http)));
}
