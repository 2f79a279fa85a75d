//! The HTTP API (docs/http-api.md) over real HTTP against the real binary: every route of
//! the OpenAPI description, API keys (Basic and Bearer, made and revoked with
//! `tern admin key` while the broker runs), 401s, bad input, and clients, sessions,
//! subscriptions, retained messages and publishing made real with MQTT clients.
#![allow(clippy::unwrap_used)]

mod common;
#[path = "http_api/harness.rs"]
mod harness;

use common::*;
use harness::*;
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::Duration;
use tern_proto::*;

#[test]
fn health_is_open_and_everything_else_needs_a_valid_key() {
    let api = Api::start();
    let health = send(api.http, "GET", "/healthz", &[], b"");
    assert_eq!(health.status, 200);
    assert_eq!(health.json()["status"], "ok");
    let wrong_bearer = format!("Bearer {}x", api.key.secret);
    let wrong_basic = basic(&api.key.id, "tern_nope_secret");
    let other_id = basic("ffffffffffff", &api.key.secret);
    for path in [
        "/api/v1/stats",
        "/readyz",
        "/metrics",
        "/api/v1/openapi.json",
        "/nowhere",
    ] {
        let none = send(api.http, "GET", path, &[], b"");
        none.refused(401, "authorization");
        assert!(
            none.header("www-authenticate").is_some_and(|v| v.contains("Basic")),
            "{none:?}"
        );
        for auth in [&wrong_bearer, &wrong_basic, &other_id, &"Digest abc".to_string()] {
            send(api.http, "GET", path, &[("Authorization", auth)], b"").refused(401, "authorization");
        }
    }
    let post = send(api.http, "POST", "/api/v1/publish", &[], br#"{"topic":"a"}"#);
    post.refused(401, "authorization");
    // The right key, in either form.
    let basic_ok = basic(&api.key.id, &api.key.secret);
    for auth in [api.bearer(), basic_ok] {
        let answer = send(api.http, "GET", "/api/v1/stats", &[("Authorization", &auth)], b"");
        assert_eq!(answer.status, 200, "{answer:?}");
    }
}

#[test]
fn every_route_of_the_openapi_description_exists() {
    let api = Api::start();
    let description = api.get("/api/v1/openapi.json");
    assert!(description["openapi"].as_str().unwrap().starts_with("3."));
    let paths = description["paths"].as_object().unwrap();
    assert_eq!(paths.len(), 19, "{paths:?}");
    for (path, methods) in paths {
        let concrete = path
            .replace("{client_id}", "nobody")
            .replace("{topic}", "no/such/topic");
        for method in methods.as_object().unwrap().keys() {
            let method = method.to_uppercase();
            let answer = api.call(&method, &concrete, None);
            assert!(answer.status < 500, "{method} {concrete}: {answer:?}");
            assert_ne!(answer.status, 405, "{method} {concrete}: {answer:?}");
            if answer.status == 404 {
                assert_ne!(answer.json()["error"], "no such endpoint", "{method} {concrete}");
            }
        }
    }
    api.call("GET", "/api/v1/nothing", None).refused(404, "path");
    api.call("PUT", "/api/v1/stats", None).refused(405, "method");
}

#[test]
fn clients_are_listed_filtered_paged_and_shown_in_detail() {
    let api = Api::start();
    let mut a1 = connect_as(&api.broker, V5, "alpha-1", |c| c.username = Some(ByteStr::from("ann")));
    let _a2 = connect_as(&api.broker, V311, "alpha-2", |_| {});
    let _b = connect_as(&api.broker, V5, "beta", |c| c.username = Some(ByteStr::from("bob")));
    let gone = connect_as(&api.broker, V311, "gone", |c| c.clean_start = false);
    gone.disconnect();
    a1.publish("t/x", b"hello", QoS::AtLeastOnce, false, 1);
    a1.ping();

    let all = api.all_pages("/api/v1/clients", 1);
    assert_eq!(ids(&all, "client_id"), ["alpha-1", "alpha-2", "beta", "gone"]);
    let connected = api.get("/api/v1/clients?connected=true")["items"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(ids(&connected, "client_id"), ["alpha-1", "alpha-2", "beta"]);
    let offline = api.get("/api/v1/clients?connected=false")["items"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(ids(&offline, "client_id"), ["gone"]);
    let prefix = api.get("/api/v1/clients?client_id_prefix=alpha")["items"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(ids(&prefix, "client_id"), ["alpha-1", "alpha-2"]);
    let v311 = api.get("/api/v1/clients?protocol=3.1.1")["items"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(ids(&v311, "client_id"), ["alpha-2"]);
    let bob = api.get("/api/v1/clients?user=bob")["items"].as_array().unwrap().clone();
    assert_eq!(ids(&bob, "client_id"), ["beta"]);

    let one = api.get("/api/v1/clients/alpha-1");
    assert_eq!(one["connected"], true);
    assert_eq!(one["user"], "ann");
    assert_eq!(one["protocol_version"], "5.0");
    assert_eq!(one["transport"], "mqtt");
    assert_eq!(one["keepalive"], 30);
    assert!(one["address"].as_str().unwrap().starts_with("127.0.0.1:"), "{one}");
    assert!(one["connected_since_ms"].as_u64().unwrap() > 1_600_000_000_000, "{one}");
    assert_eq!(one["inflight"], 0);
    assert_eq!(one["queued"], 0);
    // CONNECT, PUBLISH and PINGREQ in; CONNACK, PUBACK and PINGRESP out.
    assert_eq!(one["messages_in"], 1, "{one}");
    assert!(one["bytes_in"].as_u64().unwrap() > 10, "{one}");
    assert!(one["bytes_out"].as_u64().unwrap() > 5, "{one}");
    let gone = api.get("/api/v1/clients/gone");
    assert_eq!(gone["connected"], false);
    assert_eq!(gone["address"], Value::Null);
    api.call("GET", "/api/v1/clients/nobody", None).refused(404, "");
}

#[test]
fn a_kicked_client_gets_disconnect_0x98_and_its_will_is_published() {
    let api = Api::start();
    let mut watcher = api.broker.connect(V5, "watcher");
    watcher.subscribe("wills/#", QoS::AtMostOnce);
    let mut victim = connect_as(&api.broker, V5, "victim", |c| {
        c.will = Some(Will {
            topic: ByteStr::from("wills/victim"),
            payload: bytes::Bytes::from_static(b"gone"),
            qos: QoS::AtMostOnce,
            retain: false,
            properties: Properties::default(),
        })
    });
    let answer = api.call("POST", "/api/v1/clients/victim/kick", None);
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(
        disconnect_reason(&victim.expect_closed()),
        ReasonCode::ADMINISTRATIVE_ACTION
    );
    assert!(
        api.broker
            .log_line(&["API request", &api.key.id, "POST", "victim/kick"]),
        "the kick is logged with its key: {:?}",
        api.broker.log
    );
    let will = watcher.recv_publish();
    assert_eq!(will.topic.as_str(), "wills/victim");
    api.broker.wait_closed("victim");
    let again = api.call("POST", "/api/v1/clients/victim/kick", None);
    assert!(again.status == 404 || again.status == 409, "{again:?}");
    api.call("POST", "/api/v1/clients/nobody/kick", None).refused(404, "");
    let mut old = connect_as(&api.broker, V311, "old", |_| {});
    assert_eq!(api.call("POST", "/api/v1/clients/old/kick", None).status, 200);
    assert!(old.expect_closed().is_empty(), "a 3.1.1 client gets no DISCONNECT");
}

#[test]
fn a_client_that_never_stops_sending_can_still_be_kicked() {
    let api = Api::start();
    let flood = connect_as(&api.broker, V311, "flood", |_| {});
    // QoS 0 PUBLISHes back to back, written as fast as the broker takes them, so that its
    // socket is readable every time the connection looks.
    let mut stream = flood.stream.try_clone().unwrap();
    let writer = std::thread::spawn(move || {
        let mut batch = bytes::BytesMut::new();
        let publish = publish_packet("flood/x", b"0123456789abcdef", QoS::AtMostOnce, false, 0);
        for _ in 0..256 {
            encode(&publish, V311, &mut batch).unwrap();
        }
        while stream.write_all(&batch).is_ok() {}
    });
    // Well into the flood before the kick.
    let deadline = std::time::Instant::now() + PATIENCE;
    while api.get("/api/v1/clients/flood")["messages_in"].as_u64().unwrap_or(0) < 10_000 {
        assert!(std::time::Instant::now() < deadline, "the flood never started");
    }
    assert_eq!(api.call("POST", "/api/v1/clients/flood/kick", None).status, 200);
    api.broker.wait_closed("flood");
    writer.join().unwrap();
}

#[test]
fn subscriptions_are_listed_per_client_and_for_all_with_filters() {
    let api = Api::start();
    let mut c1 = api.broker.connect(V5, "c1");
    c1.subscribe("a/+", QoS::AtLeastOnce);
    c1.subscribe("z/#", QoS::AtMostOnce);
    let mut c2 = api.broker.connect(V311, "c2");
    c2.subscribe("#", QoS::ExactlyOnce);
    c2.subscribe("$share/g/a/b", QoS::AtMostOnce);
    let mine = api.get("/api/v1/clients/c1/subscriptions")["items"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(ids(&mine, "filter"), ["a/+", "z/#"]);
    assert_eq!(mine[0]["qos"], 1);
    let all = api.all_pages("/api/v1/subscriptions", 1);
    let pairs: Vec<String> = all
        .iter()
        .map(|s| format!("{} {}", s["client_id"].as_str().unwrap(), s["filter"].as_str().unwrap()))
        .collect();
    assert_eq!(pairs, ["c1 a/+", "c1 z/#", "c2 #", "c2 $share/g/a/b"]);
    let matching = api.get("/api/v1/subscriptions?topic=a%2Fb")["items"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(ids(&matching, "filter"), ["a/+", "#", "$share/g/a/b"]);
    let exact = api.get("/api/v1/subscriptions?filter=z%2F%23")["items"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(ids(&exact, "client_id"), ["c1"]);
    api.call("GET", "/api/v1/subscriptions?topic=a/%23", None)
        .refused(400, "topic");
    api.call("GET", "/api/v1/clients/nobody/subscriptions", None)
        .refused(404, "");
}

#[test]
fn sessions_include_offline_ones_with_their_queue() {
    let api = Api::start();
    let mut away = connect_as(&api.broker, V311, "away", |c| c.clean_start = false);
    away.subscribe("jobs/#", QoS::AtLeastOnce);
    away.disconnect();
    let _here = api.broker.connect(V5, "here");
    for n in 0..3 {
        let answer = api.call(
            "POST",
            "/api/v1/publish",
            Some(json!({"topic": "jobs/1", "payload": format!("{n}"), "qos": 1})),
        );
        assert_eq!(answer.json()["delivered"], 1, "{answer:?}");
    }
    let sessions = api.get("/api/v1/sessions")["items"].as_array().unwrap().clone();
    assert_eq!(ids(&sessions, "client_id"), ["away", "here"]);
    assert_eq!(sessions[0]["connected"], false);
    assert_eq!(sessions[0]["queued"], 3, "{sessions:?}");
    assert_eq!(sessions[0]["subscriptions"], 1);
    assert_eq!(sessions[0]["clean_session"], false);
    let offline = api.get("/api/v1/sessions?connected=false")["items"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(ids(&offline, "client_id"), ["away"]);
    assert_eq!(api.get("/api/v1/clients/away")["queued"], 3);
    api.call("DELETE", "/api/v1/sessions/here", None)
        .refused(409, "client_id");
    let deleted = api.call("DELETE", "/api/v1/sessions/away", None);
    assert_eq!(deleted.json()["deleted"], "away", "{deleted:?}");
    api.call("DELETE", "/api/v1/sessions/away", None).refused(404, "");
    let left = api.get("/api/v1/sessions")["items"].as_array().unwrap().clone();
    assert_eq!(ids(&left, "client_id"), ["here"]);
    let mut back = api.broker.client(V311);
    let ack = back.connect(&connect_packet(V311, "away", false, 30));
    assert!(!ack.session_present, "the session was ended");
    back.expect_quiet();
}

#[test]
fn retained_messages_are_listed_read_and_cleared() {
    let api = Api::start();
    let mut publisher = api.broker.connect(V311, "publisher");
    for topic in ["r/1", "r/2", "r/3", "s/1"] {
        publisher.publish(topic, format!("v{topic}").as_bytes(), QoS::AtLeastOnce, true, 1);
    }
    let binary = json!({"topic": "b/bin", "payload_base64": "AP8=", "retain": true});
    assert_eq!(api.call("POST", "/api/v1/publish", Some(binary)).status, 200);
    let r = api.all_pages("/api/v1/retained?filter=r%2F%2B", 2);
    assert_eq!(ids(&r, "topic"), ["r/1", "r/2", "r/3"]);
    assert_eq!(r[0]["payload"], "vr/1");
    assert_eq!(r[0]["qos"], 1);
    let all = api.all_pages("/api/v1/retained", 2);
    assert_eq!(
        ids(&all, "topic"),
        ["b/bin", "r/1", "r/2", "r/3", "s/1"],
        "$SYS is not under #"
    );
    let bin = api.get("/api/v1/retained/b/bin");
    assert_eq!(bin["payload"], Value::Null);
    assert_eq!(bin["payload_base64"], "AP8=");
    assert_eq!(api.call("DELETE", "/api/v1/retained/r/2", None).json()["deleted"], 1);
    api.call("GET", "/api/v1/retained/r/2", None).refused(404, "");
    api.call("DELETE", "/api/v1/retained/r/2", None).refused(404, "");
    let cleared = api.call("DELETE", "/api/v1/retained?filter=r%2F%23", None);
    assert_eq!(cleared.json()["deleted"], 2, "{cleared:?}");
    api.call("DELETE", "/api/v1/retained", None).refused(400, "filter");
    api.call("GET", "/api/v1/retained?filter=a%2F%23%2Fb", None)
        .refused(400, "filter");
    let mut late = api.broker.connect(V311, "late");
    late.subscribe("#", QoS::AtMostOnce);
    let mut topics: Vec<String> = (0..2).map(|_| late.recv_publish().topic.to_string()).collect();
    topics.sort();
    assert_eq!(topics, ["b/bin", "s/1"]);
    late.expect_quiet();
}

#[test]
fn publish_reaches_subscribers_with_its_properties() {
    let api = Api::start();
    let mut v5 = api.broker.connect(V5, "v5");
    v5.subscribe("p/#", QoS::ExactlyOnce);
    let mut v3 = api.broker.connect(V311, "v3");
    v3.subscribe("p/+", QoS::AtLeastOnce);
    let body = json!({
        "topic": "p/1",
        "payload": "héllo",
        "qos": 1,
        "properties": {
            "payload_format_indicator": 1,
            "message_expiry_interval": 600,
            "content_type": "text/plain",
            "response_topic": "reply/here",
            "correlation_data": "AQID",
            "user_properties": [["k", "v"], ["k", "w"]]
        }
    });
    let answer = api.call("POST", "/api/v1/publish", Some(body));
    assert_eq!(answer.json(), json!({"delivered": 2}), "{answer:?}");
    let got = v5.recv_publish();
    assert_eq!(got.payload.as_ref(), "héllo".as_bytes());
    assert_eq!(got.qos, QoS::AtLeastOnce);
    let p = &got.properties;
    assert_eq!(p.content_type().map(|s| s.to_string()), Some("text/plain".into()));
    assert_eq!(p.response_topic().map(|s| s.to_string()), Some("reply/here".into()));
    assert_eq!(p.correlation_data().map(|b| b.to_vec()), Some(vec![1, 2, 3]));
    assert_eq!(p.payload_format_indicator(), Some(1));
    assert!(p.message_expiry_interval().is_some_and(|s| s <= 600 && s > 500));
    let users: Vec<(String, String)> = p
        .user_properties()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    assert_eq!(users, [("k".into(), "v".into()), ("k".into(), "w".into())]);
    assert_eq!(v3.recv_publish().topic.as_str(), "p/1");
    let nobody = api.call("POST", "/api/v1/publish", Some(json!({"topic": "q/none"})));
    assert_eq!(nobody.json()["delivered"], 0);
}

#[test]
fn bad_input_gets_a_4xx_naming_what_was_wrong() {
    let api = Api::start();
    let auth = api.bearer();
    let post = |body: &[u8]| send(api.http, "POST", "/api/v1/publish", &[("Authorization", &auth)], body);
    post(b"{not json").refused(400, "body");
    post(b"[1, 2]").refused(400, "body");
    post(b"").refused(400, "body");
    post(br#"{"topic": "a", "colour": "red"}"#).refused(400, "colour");
    post(br#"{"payload": "x"}"#).refused(400, "topic");
    post(br#"{"topic": 7}"#).refused(400, "topic");
    post(br#"{"topic": "a/#"}"#).refused(400, "topic");
    post(br#"{"topic": ""}"#).refused(400, "topic");
    post(br#"{"topic": "$SYS/x"}"#).refused(400, "topic");
    post(br#"{"topic": "a", "qos": 3}"#).refused(400, "qos");
    post(br#"{"topic": "a", "qos": -1}"#).refused(400, "qos");
    post(br#"{"topic": "a", "retain": "yes"}"#).refused(400, "retain");
    post(br#"{"topic": "a", "payload": "x", "payload_base64": "eA=="}"#).refused(400, "payload_base64");
    post(br#"{"topic": "a", "payload_base64": "!!"}"#).refused(400, "payload_base64");
    post(br#"{"topic": "a", "properties": 5}"#).refused(400, "properties");
    post(br#"{"topic": "a", "properties": {"size": 1}}"#).refused(400, "properties.size");
    post(br#"{"topic": "a", "properties": {"payload_format_indicator": 2}}"#)
        .refused(400, "properties.payload_format_indicator");
    post(br#"{"topic": "a", "properties": {"response_topic": "r/+"}}"#).refused(400, "properties.response_topic");
    post(br#"{"topic": "a", "properties": {"user_properties": [["k"]]}}"#).refused(400, "properties.user_properties");
    post(br#"{"topic": "a\u0000b"}"#).refused(400, "topic");
    post(br#"{"topic": "a", "properties": {"content_type": "x\u0000"}}"#).refused(400, "properties.content_type");
    post(br#"{"topic": "a", "payload_base64": "/w==", "properties": {"payload_format_indicator": 1}}"#)
        .refused(400, "payload_base64");
    post(br#"{"topic": "a", "properties": {"message_expiry_interval": 5000000000}}"#)
        .refused(400, "properties.message_expiry_interval");
    // A body announced over 1 MiB is refused before it is read.
    let mut big = TcpStream::connect(api.http).unwrap();
    big.set_read_timeout(Some(PATIENCE)).unwrap();
    let head = format!(
        "POST /api/v1/publish HTTP/1.1\r\nHost: x\r\nAuthorization: {auth}\r\nContent-Length: {}\r\n\r\n",
        (1 << 20) + 1
    );
    big.write_all(head.as_bytes()).unwrap();
    let mut raw = Vec::new();
    let _ = big.read_to_end(&mut raw);
    parse_answer(&raw).refused(413, "body");
    // One just under the limit is read and published.
    let large = format!(r#"{{"topic": "a", "payload": "{}"}}"#, "x".repeat((1 << 20) - 64));
    assert_eq!(post(large.as_bytes()).json()["delivered"], 0);
    let get = |path: &str| send(api.http, "GET", path, &[("Authorization", &auth)], b"");
    get("/api/v1/clients?limit=0").refused(400, "limit");
    get("/api/v1/clients?limit=1001").refused(400, "limit");
    get("/api/v1/clients?limit=x").refused(400, "limit");
    get("/api/v1/clients?cursor=%%%").refused(400, "cursor");
    get("/api/v1/clients?cursor=!!").refused(400, "cursor");
    get("/api/v1/clients?connected=maybe").refused(400, "connected");
    get("/api/v1/clients?protocol=http2").refused(400, "protocol");
    get("/api/v1/clients?colour=red").refused(400, "colour");
    get("/api/v1/clients?limit=1&limit=2").refused(400, "limit");
    get("/api/v1/stats?x=1").refused(400, "x");
    get("/api/v1/clients/%FF").refused(400, "client_id");
    get("/api/v1/retained/a/%23").refused(400, "topic");
    get("/api/v1/retained/a%00b").refused(400, "topic");
    get("/api/v1/subscriptions?topic=a&filter=a").refused(400, "filter");
    // Not HTTP at all, or a header too large: hyper answers 4xx and closes.
    let mut raw = TcpStream::connect(api.http).unwrap();
    raw.set_read_timeout(Some(PATIENCE)).unwrap();
    raw.write_all(b"\x10\x00garbage\r\n\r\n").unwrap();
    let mut answer = Vec::new();
    let _ = raw.read_to_end(&mut answer);
    let text = String::from_utf8_lossy(&answer);
    assert!(text.is_empty() || text.starts_with("HTTP/1.1 4"), "{text}");
    let huge = "x".repeat(64 << 10);
    let answer = send(
        api.http,
        "GET",
        "/api/v1/stats",
        &[("Authorization", &auth), ("X-Big", &huge)],
        b"",
    );
    assert!((400..500).contains(&answer.status), "{answer:?}");
    // The broker took all that without harm.
    assert_eq!(get("/api/v1/stats").status, 200);
}

#[test]
fn keys_created_and_revoked_while_running_take_effect_without_restart() {
    let api = Api::start();
    let dir = api.data_dir();
    let second = create_key(&dir);
    let auth = format!("Bearer {}", second.secret);
    let status = || send(api.http, "GET", "/api/v1/stats", &[("Authorization", &auth)], b"").status;
    wait_until("the new key to be accepted", || status() == 200);
    let list = tern(&["admin", "key", "list", "--json", "--data-dir", dir.to_str().unwrap()]);
    let listed: Value = serde_json::from_slice(&list.stdout).unwrap();
    let listed_ids: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["key"].as_str().unwrap())
        .collect();
    assert!(listed_ids.contains(&second.id.as_str()) && listed_ids.contains(&api.key.id.as_str()));
    assert!(!String::from_utf8_lossy(&std::fs::read(dir.join("api-keys")).unwrap()).contains(&second.secret));
    let revoke = tern(&[
        "admin",
        "key",
        "revoke",
        "--data-dir",
        dir.to_str().unwrap(),
        &second.id,
    ]);
    assert!(revoke.status.success(), "{}", String::from_utf8_lossy(&revoke.stderr));
    wait_until("the revoked key to be refused", || status() == 401);
    // The first key is untouched.
    assert_eq!(api.call("GET", "/api/v1/stats", None).status, 200);
    let again = tern(&[
        "admin",
        "key",
        "revoke",
        "--data-dir",
        dir.to_str().unwrap(),
        &second.id,
    ]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains(&second.id));
}

#[test]
fn stats_listeners_readiness_metrics_and_reload() {
    let api = Api::start();
    let mut c = api.broker.connect(V311, "counted");
    c.subscribe("x/#", QoS::AtMostOnce);
    c.publish("y/1", b"one", QoS::AtMostOnce, true, 0);
    c.ping();
    let stats = api.get("/api/v1/stats");
    assert_eq!(stats["clients_connected"], 1, "{stats}");
    assert_eq!(stats["subscriptions"], 1);
    assert!(stats["retained_messages"].as_u64().unwrap() >= 1);
    assert_eq!(stats["sessions"], 1);
    let listeners = api.get("/api/v1/listeners")["items"].as_array().unwrap().clone();
    let shown: Vec<(String, String)> = listeners
        .iter()
        .map(|l| {
            (
                l["protocol"].as_str().unwrap().into(),
                l["address"].as_str().unwrap().into(),
            )
        })
        .collect();
    let addrs = api.broker.listening_addrs();
    assert_eq!(
        shown,
        [
            ("mqtt".into(), addrs[0].to_string()),
            ("http".into(), addrs[1].to_string())
        ]
    );
    let ready = api.call("GET", "/readyz", None);
    assert_eq!(ready.status, 200);
    assert_eq!(ready.json()["ready"], true);
    let metrics = api.call("GET", "/metrics", None);
    assert_eq!(metrics.status, 200);
    assert_eq!(metrics.header("content-type"), Some("text/plain; version=0.0.4"));
    assert!(String::from_utf8_lossy(&metrics.body).contains("tern_"), "{metrics:?}");
    let reload = api.call("POST", "/api/v1/reload", None);
    assert_eq!(reload.status, 202, "{reload:?}");
    assert!(api.broker.log_contains("reload requested through the HTTP API"));
    assert!(api.broker.log_contains("configuration reloaded"));
}

#[test]
fn the_api_is_served_over_tls_with_the_listener_certificate() {
    let pki = tempfile::tempdir().unwrap();
    let ca = pki::Ca::new(pki.path(), "api");
    let (cert, key) = ca.server("server");
    let api = Api::with(&format!("certfile {}\nkeyfile {}\n", cert.display(), key.display()));
    let mut roots = rustls::RootCertStore::empty();
    let pem = std::fs::read(ca.cafile()).unwrap();
    for c in rustls_pemfile::certs(&mut pem.as_slice()) {
        roots.add(c.unwrap()).unwrap();
    }
    let config =
        rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let connection = rustls::ClientConnection::new(std::sync::Arc::new(config), name).unwrap();
    let tcp = TcpStream::connect(api.http).unwrap();
    tcp.set_read_timeout(Some(PATIENCE)).unwrap();
    let mut tls = rustls::StreamOwned::new(connection, tcp);
    let request = format!(
        "GET /api/v1/stats HTTP/1.1\r\nHost: localhost\r\nAuthorization: {}\r\nConnection: close\r\n\r\n",
        api.bearer()
    );
    tls.write_all(request.as_bytes()).unwrap();
    let mut raw = Vec::new();
    let _ = tls.read_to_end(&mut raw);
    let answer = parse_answer(&raw);
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(answer.json()["version"], env!("CARGO_PKG_VERSION"));
    // Plain HTTP on the TLS listener gets nowhere.
    let mut plain = TcpStream::connect(api.http).unwrap();
    plain.set_read_timeout(Some(PATIENCE)).unwrap();
    plain.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut back = Vec::new();
    let _ = plain.read_to_end(&mut back);
    assert!(!String::from_utf8_lossy(&back).contains("\"ok\""));
}

#[test]
fn connections_beyond_the_limit_are_closed_and_a_silent_one_times_out() {
    let api = Api::start();
    // A connection that never finishes its headers is closed (header timeout).
    let mut slow = TcpStream::connect(api.http).unwrap();
    slow.set_read_timeout(Some(PATIENCE)).unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n").unwrap();
    let mut idle: Vec<TcpStream> = (0..256).map(|_| TcpStream::connect(api.http).unwrap()).collect();
    // The 257th is closed at once, without an answer; the API still serves once some go.
    let mut extra = TcpStream::connect(api.http).unwrap();
    extra.set_read_timeout(Some(PATIENCE)).unwrap();
    let mut buf = [0u8; 64];
    match extra.read(&mut buf) {
        Ok(0) => {}
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        other => panic!("the connection over the limit is not closed: {other:?}"),
    }
    idle.truncate(0);
    wait_until("the API to serve again", || {
        TcpStream::connect(api.http).is_ok_and(|mut s| {
            let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
            s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                .is_ok()
                && s.read(&mut buf).is_ok_and(|n| n > 0)
        })
    });
    let mut rest = Vec::new();
    let _ = slow.read_to_end(&mut rest);
    assert!(
        rest.is_empty() || String::from_utf8_lossy(&rest).starts_with("HTTP/1.1 408"),
        "{rest:?}"
    );
}

#[test]
fn without_configuration_the_api_is_on_localhost_8080_or_the_broker_says_why_not() {
    // `tern broker` without -c or -p takes 127.0.0.1:1883, which this test cannot choose.
    if TcpStream::connect("127.0.0.1:1883").is_ok() {
        eprintln!("skipped: 127.0.0.1:1883 is in use, and a broker without configuration needs it");
        return;
    }
    let data = tempfile::tempdir().unwrap();
    let key = create_key(data.path());
    let broker = Background::tern(&["broker", "--data-dir", data.path().to_str().unwrap()]);
    wait_until("the broker to start or fail", || {
        broker.stderr_contains("listening on 127.0.0.1:1883") || broker.stderr_contains("tern: ")
    });
    if !broker.stderr_contains("listening on 127.0.0.1:1883") {
        eprintln!("skipped: the broker could not take 127.0.0.1:1883 (taken meanwhile)");
        return;
    }
    wait_until("the HTTP API line or the warning", || {
        broker.stderr_contains("listening on 127.0.0.1:8080") || broker.stderr_contains("HTTP API not served")
    });
    if broker.stderr_contains("listening on 127.0.0.1:8080") {
        let addr: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        assert_eq!(send(addr, "GET", "/healthz", &[], b"").status, 200);
        send(addr, "GET", "/api/v1/stats", &[], b"").refused(401, "authorization");
        let auth = format!("Bearer {}", key.secret);
        assert_eq!(
            send(addr, "GET", "/api/v1/stats", &[("Authorization", &auth)], b"").status,
            200
        );
    }
    // With or without the API, MQTT is served.
    let mut client = Client::open("127.0.0.1:1883".parse().unwrap(), V311);
    let ack = client.connect(&connect_packet(V311, "default-check", true, 30));
    assert_eq!(ack.reason_code, ReasonCode::SUCCESS);
}

#[test]
fn readyz_says_not_ready_while_the_store_cannot_write_and_ready_again_after() {
    let Some(disk) = SmallDisk::mount("8m") else {
        eprintln!("SKIPPED: mounting a tmpfs needs root (CI runs as root)");
        return;
    };
    let api = Api::in_dir(disk.dir.path(), "persistence true\n");
    let ready = || api.call("GET", "/readyz", None);
    assert_eq!(ready().status, 200, "{:?}", ready());
    // Fill the disk, then make the store write.
    let filler = disk.dir.path().join("filler");
    let mut file = std::fs::File::create(&filler).unwrap();
    let block = vec![0u8; 64 << 10];
    while file.write_all(&block).is_ok() {}
    let _ = file.sync_all();
    let payload = "x".repeat(256 << 10);
    let mut n = 0;
    wait_until("the store to fail to write", || {
        n += 1;
        let body = json!({"topic": format!("fill/{n}"), "payload": payload, "retain": true});
        let _ = api.call("POST", "/api/v1/publish", Some(body));
        ready().status == 503
    });
    let answer = ready();
    assert_eq!(answer.json()["store_writable"], false, "{answer:?}");
    let qos1 = json!({"topic": "q/1", "payload": "x", "qos": 1});
    api.call("POST", "/api/v1/publish", Some(qos1)).refused(503, "qos");
    assert_eq!(answer.json()["listeners_bound"], true);
    drop(file);
    std::fs::remove_file(&filler).unwrap();
    wait_until("the store to write again", || ready().status == 200);
    assert_eq!(api.get("/api/v1/stats")["store"]["writable"], true);
}

#[test]
fn a_toml_listener_with_protocol_http_serves_the_api() {
    let data = tempfile::tempdir().unwrap();
    let key = create_key(data.path());
    let config = format!(
        "persistence_location = \"{}\"\n\n[[listener]]\nport = 0\nbind_address = \"127.0.0.1\"\nprotocol = \"http\"\n",
        data.path().display()
    );
    let broker = Broker::with_config("tern.toml", &config);
    assert!(broker.log_line(&["listening on", "HTTP API"]), "{:?}", broker.log);
    let http = broker.listening_addrs()[0];
    let auth = basic(&key.id, &key.secret);
    let answer = send(http, "GET", "/api/v1/listeners", &[("Authorization", &auth)], b"");
    assert_eq!(answer.status, 200, "{answer:?}");
    let items = answer.json()["items"].clone();
    assert_eq!(items.as_array().map(Vec::len), Some(1), "{items}");
    assert_eq!(items[0]["protocol"], "http");
    assert_eq!(items[0]["address"], http.to_string());
}

#[test]
fn keys_created_at_the_same_time_are_all_kept() {
    let data = tempfile::tempdir().unwrap();
    let dir = data.path().to_str().unwrap().to_string();
    let creators: Vec<_> = (0..8)
        .map(|_| {
            let dir = dir.clone();
            std::thread::spawn(move || create_key(Path::new(&dir)).id)
        })
        .collect();
    let mut made: Vec<String> = creators.into_iter().map(|t| t.join().unwrap()).collect();
    made.sort();
    let list = tern(&["admin", "key", "list", "--json", "--data-dir", &dir]);
    let listed: Value = serde_json::from_slice(&list.stdout).unwrap();
    let mut ids: Vec<String> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["key"].as_str().unwrap().to_string())
        .collect();
    ids.sort();
    assert_eq!(ids, made);
    let human = tern(&["admin", "key", "list", "--data-dir", &dir]);
    assert_eq!(String::from_utf8_lossy(&human.stdout).lines().count(), 8);
}

#[test]
fn max_connections_of_an_http_listener_caps_it() {
    let api = Api::with("max_connections 2\n");
    let _held: Vec<TcpStream> = (0..2).map(|_| TcpStream::connect(api.http).unwrap()).collect();
    let mut third = TcpStream::connect(api.http).unwrap();
    third.set_read_timeout(Some(PATIENCE)).unwrap();
    let _ = third.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
    let mut answer = Vec::new();
    match third.read_to_end(&mut answer) {
        Ok(_) => assert!(answer.is_empty(), "{:?}", String::from_utf8_lossy(&answer)),
        Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e}"),
    }
}

#[test]
fn a_client_over_websockets_is_listed_with_its_transport() {
    let data = tempfile::tempdir().unwrap();
    let key = create_key(data.path());
    let config = format!(
        "listener 0 127.0.0.1\nallow_anonymous true\nlistener 0 127.0.0.1\nprotocol websockets\nlistener 0 127.0.0.1\nprotocol http\npersistence_location {}\n",
        data.path().display()
    );
    let broker = Broker::with_config("tern.conf", &config);
    let (ws, http) = (broker.listening_addrs()[1], broker.listening_addrs()[2]);
    let mut stream = TcpStream::connect(ws).unwrap();
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    stream
        .write_all(
            b"GET /mqtt HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
              Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
              Sec-WebSocket-Protocol: mqtt\r\n\r\n",
        )
        .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") && stream.read(&mut byte).unwrap() == 1 {
        head.push(byte[0]);
    }
    assert!(head.starts_with(b"HTTP/1.1 101"), "{}", String::from_utf8_lossy(&head));
    // CONNECT in one masked binary frame; the answer is CONNACK in one unmasked frame.
    let mut connect = bytes::BytesMut::new();
    let packet = Packet::Connect(Box::new(connect_packet(V5, "over-ws", true, 30)));
    encode(&packet, V5, &mut connect).unwrap();
    let mask = [1u8, 2, 3, 4];
    let mut frame = vec![0x82, 0x80 | connect.len() as u8];
    frame.extend_from_slice(&mask);
    frame.extend(connect.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    stream.write_all(&frame).unwrap();
    let mut answer = [0u8; 2];
    stream.read_exact(&mut answer).unwrap();
    assert_eq!(answer[0], 0x82, "a binary frame answers");
    let auth = format!("Bearer {}", key.secret);
    let listed = send(
        http,
        "GET",
        "/api/v1/clients?protocol=websockets",
        &[("Authorization", &auth)],
        b"",
    );
    let items = listed.json()["items"].clone();
    assert_eq!(items.as_array().map(Vec::len), Some(1), "{items}");
    assert_eq!(items[0]["client_id"], "over-ws");
    assert_eq!(items[0]["transport"], "websockets");
    assert_eq!(items[0]["protocol_version"], "5.0");
}
