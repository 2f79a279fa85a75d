//! Analytics rules (issue 17) against the real binary: rules defined over the REST API
//! and in the rules file, evaluated on device events published over MQTT; a threshold
//! rule calling a webhook (a small HTTP server in the test) and publishing an alert an
//! application receives; each notification strategy and a window aggregate, with the
//! broker's test clock moved instead of waiting; bad rules refused with what is wrong;
//! a rule erroring on a field counts the error while delivery goes on; the counters on
//! `/metrics`.
#![allow(clippy::unwrap_used, clippy::expect_used)]
mod common;
#[path = "iot_rest/harness.rs"]
mod harness;

use common::*;
use harness::*;
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::mpsc;
use std::time::Duration;
use tern_proto::*;

const PATIENCE: Duration = Duration::from_secs(10);

/// The REST harness's platform, here with the test clock on, a second device
/// (`test/4322`) and an admin API key for `/metrics`.
struct Setup {
    p: Platform,
    second_token: String,
    metrics_auth: String,
}

fn start() -> Setup {
    start_with(|_| {}, "")
}

/// [`start`], with `prepare` run on the data directory first and `extra` appended to the
/// configuration.
fn start_with(prepare: impl FnOnce(&std::path::Path), extra: &str) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let admin = iot(&data, &["org", "create", "za6xa7", "--allow-plain", "true"]);
    iot(&data, &["type", "create", "za6xa7", "test"]);
    let device = iot(&data, &["device", "create", "za6xa7", "test", "4321"]);
    let second = iot(&data, &["device", "create", "za6xa7", "test", "4322"]);
    let reader = iot(&data, &["key", "create", "za6xa7", "--role", "read-only"]);
    let out = tern(&["admin", "key", "create", "--json", "--data-dir", data.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let key: Value = serde_json::from_slice(&out.stdout).unwrap();
    let config = format!(
        "persistence true\npersistence_location {}\nplatform_domain iot.test\nauth_failure_delay 0\n\
         listener 0 127.0.0.1\nplatform true\n\
         listener 0 127.0.0.1\nprotocol http\n{extra}",
        data.display()
    );
    prepare(&data);
    let broker = Broker::with_test_clock("mosquitto.conf", &config);
    let pair = |v: &Value| basic(&text(v, "apiKey"), &text(v, "apiToken"));
    let p = Platform {
        broker: Some(broker),
        config: dir.path().join("unused.conf"),
        data,
        admin: pair(&admin),
        reader: pair(&reader),
        orgb: String::new(),
        device_token: text(&device, "authToken"),
        orgb_device_token: String::new(),
        _dir: dir,
    };
    Setup {
        second_token: text(&second, "authToken"),
        metrics_auth: basic(&text(&key, "key"), &text(&key, "secret")),
        p,
    }
}

impl Setup {
    fn rule(&self, rule: Value) -> Value {
        self.p.call(&self.p.admin, "POST", "/rules", Some(rule)).ok(201)
    }

    fn counters(&self, id: &str) -> Value {
        self.p
            .call(&self.p.reader, "GET", &format!("/rules/{id}"), None)
            .ok(200)["counters"]
            .clone()
    }

    /// Waits until rule `id`'s counters are `want` (a subset of matched, fired, failed,
    /// errors).
    fn wait_counters(&self, id: &str, want: Value) {
        let deadline = std::time::Instant::now() + PATIENCE;
        loop {
            let last = self.counters(id);
            if want.as_object().unwrap().iter().all(|(k, v)| last[k] == *v) {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "rule {id}: counters {last}, wanted {want}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn metrics(&self) -> String {
        let answer = request(
            self.p.http(),
            "GET",
            "/metrics",
            &[("Authorization", &self.metrics_auth)],
            b"",
        );
        assert_eq!(answer.status, 200, "{answer:?}");
        String::from_utf8(answer.body.clone()).unwrap()
    }

    fn second_device(&self) -> Client {
        self.p
            .mqtt_client("d:za6xa7:test:4322", "use-token-auth", &self.second_token)
    }

    fn clock(&mut self, seconds: u64) {
        self.p.broker.as_mut().unwrap().advance_clock(seconds);
    }
}

/// Publishes a device event at QoS 1 (answered once routed).
fn send(device: &mut Client, event: &str, payload: &[u8], packet_id: u16) {
    let topic = format!("iot-2/evt/{event}/fmt/json");
    assert_eq!(
        device.publish(&topic, payload, QoS::AtLeastOnce, false, packet_id),
        ReasonCode::SUCCESS
    );
}

/// A webhook receiver on a thread: answers its first `failures` requests 500, then 200,
/// and sends (status, JSON body) of each to the channel.
fn hook_server(failures: usize) -> (String, mpsc::Receiver<(u16, Value)>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for (n, stream) in listener.incoming().enumerate() {
            let Ok(stream) = stream else { return };
            if !answer_hook(stream, n < failures, &tx) {
                return;
            }
        }
    });
    (url, rx)
}

/// An `https://localhost` webhook receiver with a certificate of `ca` (answers 200).
fn https_hook_server(ca: &common::pki::Ca, name: &str) -> (String, mpsc::Receiver<(u16, Value)>) {
    let (crt, key) = ca.server(name);
    let certs: Vec<_> = rustls_pemfile::certs(&mut std::io::BufReader::new(std::fs::File::open(crt).unwrap()))
        .map(Result::unwrap)
        .collect();
    let key = rustls_pemfile::private_key(&mut std::io::BufReader::new(std::fs::File::open(key).unwrap()))
        .unwrap()
        .unwrap();
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
    let config = std::sync::Arc::new(config);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("https://localhost:{}/hook", listener.local_addr().unwrap().port());
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            let tls = rustls::ServerConnection::new(config.clone()).unwrap();
            if !answer_hook(rustls::StreamOwned::new(tls, stream), false, &tx) {
                return;
            }
        }
    });
    (url, rx)
}

/// Reads one request from `stream`, answers it (500 if `fail`), and sends what it got;
/// false once nobody listens.
fn answer_hook(mut stream: impl Read + Write, fail: bool, tx: &mpsc::Sender<(u16, Value)>) -> bool {
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    let (head_end, length) = loop {
        let Ok(got) = stream.read(&mut buf) else { return true };
        if got == 0 {
            return true;
        }
        raw.extend_from_slice(&buf[..got]);
        if let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&raw[..end]).to_lowercase();
            let length = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .map_or(0, |v| v.trim().parse().unwrap());
            break (end + 4, length);
        }
    };
    while raw.len() < head_end + length {
        let Ok(got) = stream.read(&mut buf) else { return true };
        if got == 0 {
            return true;
        }
        raw.extend_from_slice(&buf[..got]);
    }
    let status = if fail { 500 } else { 200 };
    let body: Value = serde_json::from_slice(&raw[head_end..head_end + length]).unwrap();
    let _ = write!(
        stream,
        "HTTP/1.1 {status} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    let _ = stream.flush();
    tx.send((status, body)).is_ok()
}

#[test]
fn a_threshold_rule_calls_a_webhook_and_publishes_an_alert_an_application_receives() {
    let s = start();
    let (url, hooks) = hook_server(2);
    let closed = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let made = s.rule(json!({
        "id": "hot",
        "name": "Too hot",
        "source": {"typeId": "test", "eventId": "status"},
        "condition": "d.temp > 30 and d.hum < 20",
        "actions": [
            {"type": "publish", "topic": "iot-2/type/${typeId}/id/${deviceId}/evt/alert/fmt/json",
             "payload": "{\"temp\": ${d.temp}, \"device\": \"${deviceId}\"}"},
            {"type": "webhook", "url": url, "retries": 3, "timeoutMs": 2000},
            {"type": "webhook", "url": format!("http://{closed}/nobody"), "retries": 1, "timeoutMs": 500},
            {"type": "alert", "severity": "critical", "message": "${deviceId} is at ${d.temp}"}
        ]
    }));
    assert_eq!(made["id"], "hot");
    assert_eq!(made["counters"]["fired"], 0);
    // Would loop if a rule fired on its own (or another rule's) publishes.
    s.rule(json!({
        "id": "echo", "source": {"eventId": "alert"}, "condition": "true",
        "actions": [{"type": "publish", "topic": "iot-2/type/test/id/4321/evt/alert/fmt/json"}]
    }));
    let mut app = s.p.app("watcher");
    app.subscribe("iot-2/type/+/id/+/evt/alert/fmt/json", QoS::AtMostOnce);
    let mut device = s.p.device();
    send(&mut device, "status", br#"{"d": {"temp": 25, "hum": 10}}"#, 1);
    send(&mut device, "status", br#"{"d": {"temp": 35, "hum": 10}}"#, 2);
    let alert = app.recv_publish();
    assert_eq!(&*alert.topic, "iot-2/type/test/id/4321/evt/alert/fmt/json");
    let payload: Value = serde_json::from_slice(&alert.payload).unwrap();
    assert_eq!(payload, json!({"temp": 35, "device": "4321"}));
    // The webhook: two 500s, then the third attempt is taken.
    let attempts: Vec<(u16, Value)> = (0..3).map(|_| hooks.recv_timeout(PATIENCE).unwrap()).collect();
    assert_eq!(attempts.iter().map(|a| a.0).collect::<Vec<_>>(), [500, 500, 200]);
    let body = &attempts[2].1;
    assert_eq!(body["ruleId"], "hot");
    assert_eq!(body["deviceId"], "4321");
    assert_eq!(body["typeId"], "test");
    assert_eq!(body["payload"], json!({"d": {"temp": 35, "hum": 10}}));
    // The webhook nobody answers fails after its retry; the publish and the first hook did not.
    s.wait_counters("hot", json!({"matched": 2, "fired": 1, "failed": 1, "errors": 0}));
    // An event after the alert is a barrier: by then the alert has passed the rules.
    send(&mut device, "status", br#"{"d": {"temp": 1, "hum": 1}}"#, 3);
    s.wait_counters("hot", json!({"matched": 3}));
    s.wait_counters("echo", json!({"matched": 0, "fired": 0}));
    app.expect_nothing(100);
    let alerts = s.p.call(&s.p.reader, "GET", "/alerts", None).ok(200);
    let results = alerts["results"].as_array().unwrap();
    assert_eq!(results.len(), 1, "{alerts}");
    assert_eq!(results[0]["message"], "4321 is at 35");
    assert_eq!(results[0]["severity"], "critical");
    let of_rule = s.p.call(&s.p.reader, "GET", "/rules/hot/alerts", None).ok(200);
    assert_eq!(of_rule["results"].as_array().unwrap().len(), 1);
    let metrics = s.metrics();
    for line in [
        "tern_rule_matched_total{org=\"za6xa7\",rule=\"hot\"} 3",
        "tern_rule_fired_total{org=\"za6xa7\",rule=\"hot\"} 1",
        "tern_rule_failed_total{org=\"za6xa7\",rule=\"hot\"} 1",
        "tern_rule_errors_total{org=\"za6xa7\",rule=\"hot\"} 0",
        "tern_rule_matched_total{org=\"za6xa7\",rule=\"echo\"} 0",
    ] {
        assert!(metrics.lines().any(|l| l == line), "{line} not in\n{metrics}");
    }
}

#[test]
fn each_notification_strategy_fires_as_it_says() {
    let mut s = start();
    let strategies = [
        ("every", json!({"strategy": "every"})),
        ("edge", json!({"strategy": "becomesTrue"})),
        ("twice", json!({"strategy": "count", "times": 2, "period": "1m"})),
        ("lasting", json!({"strategy": "persists", "for": "1m"})),
    ];
    for (id, notification) in &strategies {
        s.rule(
            json!({"id": id, "condition": "d.temp > 30", "notification": notification,
                      "actions": [{"type": "alert"}]}),
        );
    }
    let mut device = s.p.device();
    // (temperature, clock moved first, fired counters of every, edge, twice, lasting)
    let steps = [
        (35, 0, [1, 1, 0, 0]),
        (35, 0, [2, 1, 1, 0]),
        (20, 0, [2, 1, 1, 0]),
        (35, 0, [3, 2, 1, 0]),
        (35, 61, [4, 2, 1, 1]),
        (35, 0, [5, 2, 2, 1]),
        (36, 0, [6, 2, 2, 1]),
    ];
    for (n, (temp, advance, fired)) in steps.into_iter().enumerate() {
        if advance > 0 {
            s.clock(advance);
        }
        let payload = json!({"d": {"temp": temp}}).to_string();
        send(&mut device, "status", payload.as_bytes(), n as u16 + 1);
        for ((id, _), fired) in strategies.iter().zip(fired) {
            s.wait_counters(id, json!({"matched": n + 1, "fired": fired}));
        }
    }
    let alerts = s.p.call(&s.p.reader, "GET", "/alerts", None).ok(200);
    assert_eq!(alerts["results"].as_array().unwrap().len(), 6 + 2 + 2 + 1);
}

#[test]
fn a_window_aggregate_rule_fires_on_each_devices_average() {
    let mut s = start();
    s.rule(json!({"id": "warm", "source": {"typeId": "test"},
                  "condition": "avg(d.temp) over 5m > 30 and count(d.temp) over 5m >= 2",
                  "actions": [{"type": "alert", "message": "${deviceId} averages over 30"}]}));
    let mut one = s.p.device();
    let mut two = s.second_device();
    send(&mut one, "status", br#"{"d": {"temp": 20}}"#, 1);
    s.wait_counters("warm", json!({"matched": 1, "fired": 0}));
    send(&mut one, "status", br#"{"d": {"temp": 50}}"#, 2);
    s.wait_counters("warm", json!({"matched": 2, "fired": 1}));
    // The other device has a window of its own: 40 and 25 average 32.5 (with 4321's 20
    // and 50 mixed in it would be 33.75, with the first alone no count of 2).
    send(&mut two, "status", br#"{"d": {"temp": 40}}"#, 1);
    s.wait_counters("warm", json!({"matched": 3, "fired": 1}));
    send(&mut two, "status", br#"{"d": {"temp": 25}}"#, 2);
    s.wait_counters("warm", json!({"matched": 4, "fired": 2}));
    // Over five minutes on (windows are kept in slices of a sixtieth of their span, 5 s
    // here), 4321's 20 and 50 have left its window: 35 alone counts 1.
    s.clock(310);
    send(&mut one, "status", br#"{"d": {"temp": 35}}"#, 3);
    s.wait_counters("warm", json!({"matched": 5, "fired": 2}));
    send(&mut one, "status", br#"{"d": {"temp": 29}}"#, 4);
    s.wait_counters("warm", json!({"matched": 6, "fired": 3}));
    let alerts = s.p.call(&s.p.reader, "GET", "/alerts", None).ok(200);
    let messages: Vec<&str> = alerts["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["message"].as_str().unwrap())
        .collect();
    assert_eq!(
        messages,
        [
            "4321 averages over 30",
            "4322 averages over 30",
            "4321 averages over 30"
        ]
    );
}

#[test]
fn bad_rules_are_refused_with_a_clear_error() {
    let s = start();
    let p = &s.p;
    let refused = [
        (json!({"id": "x", "condition": "d.temp > > 30"}), "position 9"),
        (json!({"id": "x", "condition": "avg(d.temp) > 30"}), "`over`"),
        (
            json!({"id": "x", "condition": "d.temp > 30", "notification": {"strategy": "often"}}),
            "unknown notification strategy \"often\"",
        ),
        (
            json!({"id": "x", "condition": "d.temp > 30", "notification": {"strategy": "count", "times": 3}}),
            "\"period\"",
        ),
        (
            json!({"id": "x", "condition": "d.temp > 30", "actions": [{"type": "publish", "topic": "alerts/${deviceId}"}]}),
            "publish topic",
        ),
        (
            json!({"id": "x", "condition": "d.temp > 30", "actions": [{"type": "webhook", "url": "ftp://x/"}]}),
            "http:// or https:// is needed",
        ),
        (
            json!({"id": "x", "condition": "d.temp > 30", "actions": [{"type": "publish", "topic": "iot-2/type/t/id/d/evt/e/fmt/json", "payload": "${d.temp"}]}),
            "without its",
        ),
        (
            json!({"id": "x", "condition": "d.temp > 30", "colour": "red"}),
            "unknown field `colour`",
        ),
        (json!({"id": "no spaces", "condition": "d.temp > 30"}), "rule id"),
        (json!({"id": "x"}), "missing field `condition`"),
    ];
    for (rule, words) in refused {
        let message = p.call(&p.admin, "POST", "/rules", Some(rule.clone())).refused(400);
        assert!(message.contains(words), "{rule}: {message}");
    }
    let message = p
        .call(
            &p.reader,
            "POST",
            "/rules",
            Some(json!({"id": "x", "condition": "1 > 0"})),
        )
        .refused(403);
    assert!(!message.is_empty());
    p.call(&p.reader, "GET", "/rules/nothing", None).refused(404);
    assert_eq!(p.call(&p.reader, "GET", "/rules", None).ok(200)["results"], json!([]));
    // A good one is stored, changed, listed and deleted; the file holds it meanwhile.
    s.rule(json!({"id": "ok", "condition": "d.temp > 30"}));
    p.call(
        &p.admin,
        "POST",
        "/rules",
        Some(json!({"id": "ok", "condition": "1 > 0"})),
    )
    .refused(409);
    let changed = p
        .call(
            &p.admin,
            "PUT",
            "/rules/ok",
            Some(json!({"condition": "d.temp > 40", "enabled": false})),
        )
        .ok(200);
    assert_eq!(changed["condition"], "d.temp > 40");
    assert_eq!(changed["enabled"], false);
    p.call(&p.admin, "PUT", "/rules/ok", Some(json!({"condition": "d.temp >"})))
        .refused(400);
    let file = std::fs::read_to_string(p.data.join("platform/rules/za6xa7.json")).unwrap();
    assert!(file.contains("d.temp > 40"), "{file}");
    assert_eq!(
        p.call(&p.reader, "GET", "/rules", None).ok(200)["results"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    let deleted = p.call(&p.admin, "DELETE", "/rules/ok", None);
    assert_eq!(deleted.status, 204, "{deleted:?}");
    p.call(&p.reader, "GET", "/rules/ok", None).refused(404);
}

#[test]
fn rules_written_to_the_file_are_taken_while_the_broker_runs() {
    let s = start();
    let p = &s.p;
    let dir = p.data.join("platform/rules");
    std::fs::create_dir_all(&dir).unwrap();
    let file = json!({"rules": [{"id": "from-file", "condition": "d.temp > 30",
                                "actions": [{"type": "alert"}]}]});
    let tmp = dir.join("za6xa7.json.new");
    std::fs::write(&tmp, file.to_string()).unwrap();
    std::fs::rename(&tmp, dir.join("za6xa7.json")).unwrap();
    within(PATIENCE, "the rules file is loaded", || {
        let rules = p.call(&p.reader, "GET", "/rules", None).ok(200);
        (rules["results"].as_array().unwrap().len() == 1).then_some(())
    });
    let mut device = p.device();
    send(&mut device, "status", br#"{"d": {"temp": 31}}"#, 1);
    s.wait_counters("from-file", json!({"matched": 1, "fired": 1}));
}

#[test]
fn a_rule_erroring_on_an_event_counts_the_error_and_delivery_goes_on() {
    let s = start();
    s.rule(json!({"id": "hot", "condition": "d.temp * 2 > 60", "actions": [{"type": "alert"}]}));
    let mut app = s.p.app("listener");
    app.subscribe("iot-2/type/test/id/4321/evt/+/fmt/+", QoS::AtMostOnce);
    let mut device = s.p.device();
    let payloads: [&[u8]; 4] = [
        br#"{"d": {"temp": "hot"}}"#,
        br#"{"d": {"hum": 3}}"#,
        b"not json at all",
        br#"{"d": {"temp": 31}}"#,
    ];
    for (n, payload) in payloads.iter().enumerate() {
        send(&mut device, "status", payload, n as u16 + 1);
        let got = app.recv_publish();
        assert_eq!(&got.payload[..], *payload);
    }
    s.wait_counters("hot", json!({"matched": 4, "errors": 3, "fired": 1}));
    let metrics = s.metrics();
    let line = "tern_rule_errors_total{org=\"za6xa7\",rule=\"hot\"} 3";
    assert!(metrics.lines().any(|l| l == line), "{line} not in\n{metrics}");
}

#[test]
fn a_plain_listeners_rule_picks_messages_by_topic() {
    let rules = json!({"rules": [
        {"id": "hot", "source": {"topic": "factory/+/temp"}, "condition": "value > 100",
         "actions": [{"type": "publish", "topic": "alerts/${topic}", "payload": "{\"v\": ${value}}"}]},
        {"id": "echo", "source": {"topic": "alerts/#"}, "condition": "true",
         "actions": [{"type": "publish", "topic": "alerts/again"}]}
    ]});
    let s = start_with(
        |data| {
            let dir = data.join("platform/rules");
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join("_plain.json"), rules.to_string()).unwrap();
        },
        "allow_anonymous true\nlistener 0 127.0.0.1\n",
    );
    let plain = s.p.broker.as_ref().unwrap().listening_addrs()[2];
    let connect = |id: &str| {
        let mut c = Client::open(plain, ProtocolVersion::V3_1_1);
        let ack = c.connect(&connect_packet(ProtocolVersion::V3_1_1, id, true, 60));
        assert_eq!(ack.reason_code, ReasonCode::SUCCESS);
        c
    };
    let mut watcher = connect("watcher");
    watcher.subscribe("alerts/#", QoS::AtMostOnce);
    let mut sensor = connect("sensor");
    assert_eq!(
        sensor.publish("factory/line1/temp", br#"{"value": 90}"#, QoS::AtLeastOnce, false, 1),
        ReasonCode::SUCCESS
    );
    assert_eq!(
        sensor.publish("factory/line1/temp", br#"{"value": 120}"#, QoS::AtLeastOnce, false, 2),
        ReasonCode::SUCCESS
    );
    let alert = watcher.recv_publish();
    assert_eq!(&*alert.topic, "alerts/factory/line1/temp");
    assert_eq!(&alert.payload[..], br#"{"v": 120}"#);
    // A barrier: once this has been matched, the alert before it has passed the rules.
    assert_eq!(
        sensor.publish("factory/line2/temp", br#"{"value": 1}"#, QoS::AtLeastOnce, false, 3),
        ReasonCode::SUCCESS
    );
    within(PATIENCE, "the third message matched", || {
        let metrics = s.metrics();
        metrics
            .lines()
            .any(|l| l == "tern_rule_matched_total{org=\"_plain\",rule=\"hot\"} 3")
            .then_some(())
    });
    let metrics = s.metrics();
    for line in [
        "tern_rule_fired_total{org=\"_plain\",rule=\"hot\"} 1",
        "tern_rule_matched_total{org=\"_plain\",rule=\"echo\"} 0",
    ] {
        assert!(metrics.lines().any(|l| l == line), "{line} not in\n{metrics}");
    }
    watcher.expect_nothing(100);
}

#[test]
fn a_webhook_that_does_not_answer_in_time_is_tried_again_and_counted_as_failed() {
    let s = start();
    // Accepts connections and holds them without answering.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/slow", listener.local_addr().unwrap());
    let (tx, accepted) = mpsc::channel();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            held.push(stream);
            if tx.send(held.len()).is_err() {
                return;
            }
        }
    });
    s.rule(json!({"id": "slow", "condition": "d.temp > 30",
                  "actions": [{"type": "webhook", "url": url, "timeoutMs": 200, "retries": 1}]}));
    let mut device = s.p.device();
    send(&mut device, "status", br#"{"d": {"temp": 31}}"#, 1);
    assert_eq!(accepted.recv_timeout(PATIENCE).unwrap(), 1);
    assert_eq!(
        accepted.recv_timeout(PATIENCE).unwrap(),
        2,
        "one retry after the timeout"
    );
    s.wait_counters("slow", json!({"matched": 1, "fired": 1, "failed": 1}));
}

#[test]
fn alerts_are_kept_across_a_clean_stop_and_a_kill_9() {
    let mut s = start();
    s.rule(json!({"id": "any", "condition": "true",
                  "actions": [{"type": "alert", "message": "${deviceId} said ${d.n}"}]}));
    let alerts_of = |s: &Setup| -> Vec<Value> {
        let alerts = s.p.call(&s.p.reader, "GET", "/alerts", None).ok(200);
        alerts["results"].as_array().unwrap().clone()
    };
    let mut device = s.p.device();
    send(&mut device, "status", br#"{"d": {"n": 1}}"#, 1);
    s.wait_counters("any", json!({"fired": 1}));
    let before = alerts_of(&s);
    assert_eq!(before.len(), 1);
    // A clean stop writes them; the restarted broker shows the same records.
    let broker = s.p.broker.take().unwrap();
    let config = std::fs::read_to_string(broker.config_path.as_ref().unwrap()).unwrap();
    drop(device);
    broker.stop();
    s.p.broker = Some(Broker::with_config("mosquitto.conf", &config));
    assert_eq!(alerts_of(&s), before);
    // Ids go on; within a second an alert is on disk, so a kill -9 keeps it too.
    let mut device = s.p.device();
    send(&mut device, "status", br#"{"d": {"n": 2}}"#, 1);
    let file = s.p.data.join("platform/rules/alerts/za6xa7.json");
    let deadline = std::time::Instant::now() + PATIENCE;
    while std::fs::read_to_string(&file).map_or(0, |t| t.matches("\"ruleId\"").count()) < 2 {
        assert!(std::time::Instant::now() < deadline, "the second alert was not written");
        std::thread::sleep(Duration::from_millis(20));
    }
    drop(device);
    s.p.broker.take().unwrap().kill_9();
    s.p.broker = Some(Broker::with_config("mosquitto.conf", &config));
    let after = alerts_of(&s);
    assert_eq!(after.len(), 2, "{after:?}");
    assert_eq!(after[0]["message"], "4321 said 2");
    assert_eq!(after[0]["id"], before[0]["id"].as_u64().unwrap() + 1);
    assert_eq!(after[1], before[0]);
}

#[test]
fn an_https_webhook_is_called_when_its_certificate_is_trusted_and_fails_when_not() {
    let dir = tempfile::tempdir().unwrap();
    let trusted = common::pki::Ca::new(dir.path(), "trusted");
    let stranger = common::pki::Ca::new(dir.path(), "stranger");
    // The broker trusts the bundle SSL_CERT_FILE names, as other HTTPS clients do.
    std::env::set_var("SSL_CERT_FILE", trusted.cafile());
    let s = start();
    let (good, hooks) = https_hook_server(&trusted, "good");
    let (bad, strangers) = https_hook_server(&stranger, "bad");
    s.rule(json!({"id": "tls", "condition": "d.temp > 30", "actions": [
        {"type": "webhook", "url": good, "retries": 0, "timeoutMs": 5000},
        {"type": "webhook", "url": bad, "retries": 0, "timeoutMs": 5000}
    ]}));
    let mut device = s.p.device();
    send(&mut device, "status", br#"{"d": {"temp": 31}}"#, 1);
    let (status, body) = hooks.recv_timeout(PATIENCE).unwrap();
    assert_eq!(status, 200);
    assert_eq!(body["payload"], json!({"d": {"temp": 31}}));
    // The server whose certificate nobody trusts gets no request: the call failed.
    s.wait_counters("tls", json!({"matched": 1, "fired": 1, "failed": 1}));
    assert!(strangers.try_recv().is_err());
}

#[test]
fn plain_listeners_rules_are_managed_on_the_admin_api_without_the_platform() {
    let data = tempfile::tempdir().unwrap();
    let key = admin_key(data.path());
    let config = format!(
        "listener 0 127.0.0.1\nallow_anonymous true\nlistener 0 127.0.0.1\nprotocol http\npersistence_location {}\n",
        data.path().display()
    );
    let broker = Broker::with_config("tern.conf", &config);
    let http = broker.listening_addrs()[1];
    let auth = format!("Bearer {}", key.secret);
    let call = |method: &str, path: &str, body: Option<Value>| {
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let headers = [("Authorization", auth.as_str()), ("Content-Type", "application/json")];
        let answer = request(http, method, path, &headers, body.as_bytes());
        let json = serde_json::from_slice::<Value>(&answer.body).unwrap_or(Value::Null);
        (answer.status, json)
    };
    let rule = json!({"id": "hot", "source": {"topic": "factory/+/temp"}, "condition": "value > 100",
                      "actions": [{"type": "publish", "topic": "alerts/${topic}"},
                                  {"type": "alert", "message": "${topic} at ${value}"}]});
    let (status, made) = call("POST", "/api/v1/rules", Some(rule.clone()));
    assert_eq!(status, 201, "{made}");
    assert_eq!(made["counters"]["fired"], 0);
    assert_eq!(call("POST", "/api/v1/rules", Some(rule)).0, 409);
    let (status, refused) = call(
        "POST",
        "/api/v1/rules",
        Some(json!({"id": "x", "source": {"topic": "a/#"}, "condition": "value >", "actions": []})),
    );
    assert_eq!(status, 400);
    assert!(refused["error"].as_str().unwrap().contains("condition"), "{refused}");
    let mut watcher = broker.connect(ProtocolVersion::V5, "watcher");
    watcher.subscribe("alerts/#", QoS::AtMostOnce);
    let mut sensor = broker.connect(ProtocolVersion::V3_1_1, "sensor");
    assert_eq!(
        sensor.publish("factory/l1/temp", br#"{"value": 120}"#, QoS::AtLeastOnce, false, 1),
        ReasonCode::SUCCESS
    );
    assert_eq!(&*watcher.recv_publish().topic, "alerts/factory/l1/temp");
    let alerts = within(PATIENCE, "the alert recorded", || {
        let (_, alerts) = call("GET", "/api/v1/alerts", None);
        (alerts["results"].as_array().unwrap().len() == 1).then_some(alerts)
    });
    assert_eq!(alerts["results"][0]["message"], "factory/l1/temp at 120");
    assert_eq!(call("GET", "/api/v1/rules/hot/alerts", None).1, alerts);
    assert_eq!(
        call("GET", "/api/v1/rules", None).1["results"][0]["counters"]["fired"],
        1
    );
    // Changed, then removed: the broker stops acting on it.
    let mismatched = json!({"id": "other", "condition": "true", "actions": []});
    assert_eq!(call("PUT", "/api/v1/rules/hot", Some(mismatched)).0, 400);
    assert_eq!(call("DELETE", "/api/v1/rules/hot", None).0, 204);
    assert_eq!(call("GET", "/api/v1/rules/hot", None).0, 404);
    assert_eq!(call("DELETE", "/api/v1/rules/hot", None).0, 404);
    let anonymous = request(http, "GET", "/api/v1/rules", &[], b"");
    assert_eq!(anonymous.status, 401);
}
