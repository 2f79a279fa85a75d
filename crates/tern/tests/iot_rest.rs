//! The IoT platform's REST API (`/api/v0002`, issue 15) over real HTTP against the real
//! binary: a broker with `platform_domain` set, an MQTT listener in platform mode and an
//! HTTP listener; organizations and keys made with `tern iot ... --json`. Every endpoint,
//! its shapes and status codes, credentials (401), roles (a read-only key refused on
//! writes), organization isolation, paging, HTTP messaging reaching MQTT clients, and the
//! last event cache fed over MQTT and HTTP, kept across a kill -9; and IBM's Python SDK's
//! registry, connection state and cache APIs, unmodified, over HTTPS on port 443.
#![allow(clippy::unwrap_used, clippy::expect_used)]
mod common;
#[path = "iot_rest/harness.rs"]
mod harness;
#[path = "iot_rest/lec.rs"]
mod lec;
#[path = "iot_rest/sdk.rs"]
mod sdk;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use common::*;
use harness::*;
use serde_json::{json, Value};
use tern_proto::*;

#[test]
fn device_types_and_devices_are_created_read_changed_and_deleted() {
    let p = Platform::start();
    let a = p.admin.as_str();
    let made = p
        .call(
            a,
            "POST",
            "/device/types",
            Some(json!({"id": "sensor", "description": "a sensor", "deviceInfo": {"model": "m1"}})),
        )
        .ok(201);
    assert_eq!(made["id"], "sensor");
    assert_eq!(made["classId"], "Device");
    assert!(made["createdDateTime"].as_str().is_some());
    p.call(
        a,
        "POST",
        "/device/types",
        Some(json!({"id": "gw", "classId": "Gateway"})),
    )
    .ok(201);
    p.call(a, "POST", "/device/types", Some(json!({"id": "sensor"})))
        .refused(409);
    p.call(a, "POST", "/device/types", Some(json!({"id": "bad id"})))
        .refused(400);
    p.call(a, "POST", "/device/types", Some(json!({"description": "no id"})))
        .refused(400);
    p.call(a, "POST", "/device/types", Some(json!([1, 2]))).refused(400);
    let raw = [("Authorization", a), ("Content-Type", "application/json")];
    request(p.http(), "POST", "/api/v0002/device/types", &raw, b"{not json").refused(400);
    let types = p.call(a, "GET", "/device/types", None).ok(200);
    let ids: Vec<&str> = types["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec!["gw", "sensor", "test"]);
    assert_eq!(types["meta"]["total_rows"], 3);
    assert!(types.get("bookmark").is_none());
    assert_eq!(
        p.call(a, "GET", "/device/types/sensor", None).ok(200)["description"],
        "a sensor"
    );
    p.call(a, "GET", "/device/types/nope", None).refused(404);
    let changed = p
        .call(
            a,
            "PUT",
            "/device/types/sensor",
            Some(json!({"description": "changed", "metadata": {"k": 1}})),
        )
        .ok(200);
    assert_eq!(
        (changed["description"].clone(), changed["metadata"]["k"].clone()),
        (json!("changed"), json!(1))
    );
    p.call(a, "PUT", "/device/types/sensor", Some(json!({"metadata": 5})))
        .refused(400);

    // Devices: made with a token shown once, which works over MQTT at once.
    let device = p
        .call(
            a,
            "POST",
            "/device/types/sensor/devices",
            Some(json!({"deviceId": "s1", "metadata": {"room": 2}})),
        )
        .ok(201);
    assert_eq!(device["clientId"], "d:za6xa7:sensor:s1");
    assert_eq!(device["deviceInfo"]["model"], "m1");
    let token = text(&device, "authToken");
    p.mqtt_client("d:za6xa7:sensor:s1", "use-token-auth", &token)
        .disconnect();
    let read = p.call(a, "GET", "/device/types/sensor/devices/s1", None).ok(200);
    assert_eq!(read["metadata"]["room"], 2);
    assert!(read.get("authToken").is_none(), "{read}");
    p.call(
        a,
        "POST",
        "/device/types/sensor/devices",
        Some(json!({"deviceId": "s1"})),
    )
    .refused(409);
    p.call(a, "POST", "/device/types/nope/devices", Some(json!({"deviceId": "x"})))
        .refused(404);
    p.call(a, "GET", "/device/types/nope/devices", None).refused(404);
    let listed = p.call(a, "GET", "/device/types/sensor/devices", None).ok(200);
    assert_eq!(listed["results"][0]["deviceId"], "s1");
    let changed = p
        .call(
            a,
            "PUT",
            "/device/types/sensor/devices/s1",
            Some(json!({"deviceInfo": {"fwVersion": "2"}, "location": {"latitude": 1}})),
        )
        .ok(200);
    assert_eq!(changed["deviceInfo"]["fwVersion"], "2");
    assert_eq!(changed["location"]["latitude"], 1);
    // As the platform's SDK sends an update (every field, null for unchanged), and lists
    // a type's devices (with a trailing slash).
    let sdk = p
        .call(
            a,
            "PUT",
            "/device/types/sensor/devices/s1",
            Some(json!({"status": null, "deviceInfo": null, "metadata": {"room": 3}})),
        )
        .ok(200);
    assert_eq!(
        (sdk["metadata"]["room"].clone(), sdk["deviceInfo"]["fwVersion"].clone()),
        (json!(3), json!("2"))
    );
    let slash = p
        .call(a, "GET", "/device/types/sensor/devices/?_limit=50&_sort=deviceId", None)
        .ok(200);
    assert_eq!(slash["results"][0]["deviceId"], "s1");
    p.call(
        a,
        "PUT",
        "/device/types/sensor",
        Some(json!({"description": null, "deviceInfo": null, "metadata": null})),
    )
    .ok(200);
    p.call(a, "DELETE", "/device/types/sensor", None).refused(409);
    assert_eq!(p.call(a, "DELETE", "/device/types/sensor/devices/s1", None).status, 204);
    p.call(a, "GET", "/device/types/sensor/devices/s1", None).refused(404);
    p.call(a, "DELETE", "/device/types/sensor/devices/s1", None)
        .refused(404);
    assert_eq!(p.call(a, "DELETE", "/device/types/sensor", None).status, 204);
    p.call(a, "GET", "/device/types/sensor", None).refused(404);
    // Not an endpoint, not a method of one.
    p.call(a, "GET", "/nothing/here", None).refused(404);
    p.call(a, "PATCH", "/device/types", None).refused(405);
}

#[test]
fn bulk_add_returns_tokens_once_and_bulk_remove_says_what_it_did() {
    let p = Platform::start();
    let a = p.admin.as_str();
    let added = p
        .call(
            a,
            "POST",
            "/bulk/devices/add",
            Some(json!([
                {"typeId": "test", "deviceId": "b1"},
                {"typeId": "test", "deviceId": "b2", "authToken": "chosen-token-22",
                 "deviceInfo": null, "location": null, "metadata": null},
            ])),
        )
        .ok(201);
    assert_eq!(added[0]["success"], true);
    let b1 = text(&added[0], "authToken");
    assert_eq!(added[1]["authToken"], "chosen-token-22");
    p.mqtt_client("d:za6xa7:test:b1", "use-token-auth", &b1).disconnect();
    // One refused: 202, each item says.
    let some = p
        .call(
            a,
            "POST",
            "/bulk/devices/add",
            Some(json!([
                {"typeId": "test", "deviceId": "b3"},
                {"typeId": "test", "deviceId": "b1"},
            ])),
        )
        .ok(202);
    assert_eq!(
        (some[0]["success"].clone(), some[1]["success"].clone()),
        (json!(true), json!(false))
    );
    assert!(some[1]["message"].as_str().unwrap().contains("already exists"));
    p.call(a, "POST", "/bulk/devices/add", Some(json!({"typeId": "test"})))
        .refused(400);
    p.call(a, "POST", "/bulk/devices/add", Some(json!([{"typeId": "test"}])))
        .refused(400);
    let all = p.call(a, "GET", "/bulk/devices", None).ok(200);
    let ids: Vec<&str> = all["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["deviceId"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec!["4321", "b1", "b2", "b3"]);
    assert!(all["results"]
        .as_array()
        .unwrap()
        .iter()
        .all(|d| d.get("authToken").is_none()));
    let removed = p
        .call(
            a,
            "POST",
            "/bulk/devices/remove",
            Some(json!([
                {"typeId": "test", "deviceId": "b1"},
                {"typeId": "test", "deviceId": "b2"},
            ])),
        )
        .ok(200);
    assert_eq!(removed[1], json!({"typeId": "test", "deviceId": "b2", "success": true}));
    let partly = p
        .call(
            a,
            "POST",
            "/bulk/devices/remove",
            Some(json!([
                {"typeId": "test", "deviceId": "b3"},
                {"typeId": "test", "deviceId": "b1"},
            ])),
        )
        .ok(202);
    assert_eq!(partly[1]["success"], false);
    p.call(a, "POST", "/bulk/devices/remove", Some(json!([{"typeId": 1}])))
        .refused(400);
    assert_eq!(p.call(a, "GET", "/bulk/devices", None).ok(200)["meta"]["total_rows"], 1);
    // Removed devices cannot connect any more.
    let mut gone = Client::open(p.mqtt(), ProtocolVersion::V3_1_1);
    let mut connect = connect_packet(ProtocolVersion::V3_1_1, "d:za6xa7:test:b1", true, 60);
    connect.username = Some(ByteStr::from("use-token-auth"));
    connect.password = Some(bytes::Bytes::copy_from_slice(b1.as_bytes()));
    assert_ne!(gone.connect(&connect).reason_code, ReasonCode::SUCCESS);
}

#[test]
fn pages_follow_limit_and_bookmark() {
    let p = Platform::start();
    let a = p.admin.as_str();
    let items: Vec<Value> = (0..9)
        .map(|i| json!({"typeId": "test", "deviceId": format!("p{i}")}))
        .collect();
    p.call(a, "POST", "/bulk/devices/add", Some(Value::Array(items)))
        .ok(201);
    let mut seen = Vec::new();
    let mut path = "/device/types/test/devices?_limit=4".to_string();
    let mut pages = 0;
    loop {
        let page = p.call(a, "GET", &path, None).ok(200);
        pages += 1;
        assert_eq!(page["meta"]["total_rows"], 10);
        let results = page["results"].as_array().unwrap();
        assert!(results.len() <= 4);
        seen.extend(results.iter().map(|d| text(d, "deviceId")));
        let Some(bookmark) = page["bookmark"].as_str() else {
            break;
        };
        path = format!("/device/types/test/devices?_limit=4&_bookmark={bookmark}");
    }
    assert_eq!(pages, 3);
    let mut expected: Vec<String> = (0..9).map(|i| format!("p{i}")).collect();
    expected.insert(0, "4321".into());
    assert_eq!(seen, expected);
    for bad in ["_limit=0", "_limit=many", "_bookmark=*"] {
        p.call(a, "GET", &format!("/bulk/devices?{bad}"), None).refused(400);
    }
}

#[test]
fn credentials_roles_and_organizations_are_enforced() {
    let p = Platform::start();
    // No credentials, a wrong token, an unknown key, a device token for reads: 401/403.
    let none = request(p.http(), "GET", "/api/v0002/device/types", &[], b"");
    none.refused(401);
    let decoded = String::from_utf8(STANDARD.decode(&p.admin[6..]).unwrap()).unwrap();
    let (key, _) = decoded.split_once(':').unwrap();
    for auth in [
        basic(key, "wrong-token-000"),
        basic("a-za6xa7-nosuchkey0", "x"),
        "Bearer x".into(),
    ] {
        p.call(&auth, "GET", "/device/types", None).refused(401);
    }
    p.call(&p.device_auth(), "GET", "/device/types", None).refused(403);
    // A read-only key reads and may not write.
    let r = p.reader.as_str();
    p.call(r, "GET", "/device/types/test/devices/4321", None).ok(200);
    p.call(r, "GET", "/config/lec", None).ok(200);
    p.call(r, "POST", "/device/types", Some(json!({"id": "x"})))
        .refused(403);
    p.call(r, "DELETE", "/device/types/test/devices/4321", None)
        .refused(403);
    p.call(r, "POST", "/bulk/devices/add", Some(json!([]))).refused(403);
    p.call(r, "PUT", "/config/lec", Some(json!({"enabled": true})))
        .refused(403);
    p.post(
        r,
        "/application/types/test/devices/4321/commands/reboot",
        "application/json",
        b"{}",
    )
    .refused(403);
    p.post(
        r,
        "/application/types/test/devices/4321/events/status",
        "application/json",
        b"{}",
    )
    .refused(403);
    p.call(&p.admin, "GET", "/device/types/test/devices/4321", None).ok(200);

    // Organizations: orgb's key sees orgb only, and is refused under za6xa7's host name.
    let orgb_host = [("Authorization", p.orgb.as_str()), ("Host", "orgb.iot.test")];
    let theirs = request(p.http(), "GET", "/api/v0002/bulk/devices", &orgb_host, b"").ok(200);
    assert_eq!(theirs["results"][0]["clientId"], "d:orgb:test:4321");
    assert_eq!(theirs["meta"]["total_rows"], 1);
    p.call(&p.orgb, "GET", "/device/types", None).refused(401);
    let by_key = [("Authorization", p.orgb.as_str()), ("Host", "127.0.0.1")];
    let types = request(p.http(), "GET", "/api/v0002/device/types", &by_key, b"").ok(200);
    assert_eq!(types["meta"]["total_rows"], 1);
    let mine = [("Authorization", p.orgb.as_str()), ("Host", "orgb.iot.test")];
    request(
        p.http(),
        "DELETE",
        "/api/v0002/device/types/test/devices/4321",
        &mine,
        b"",
    )
    .ok(204);
    // za6xa7's device of the same name is untouched; orgb's device token is not za6xa7's.
    p.call(&p.admin, "GET", "/device/types/test/devices/4321", None).ok(200);
    let orgb_device = basic("use-token-auth", &p.orgb_device_token);
    p.post(
        &orgb_device,
        "/device/types/test/devices/4321/events/status",
        "application/json",
        b"{}",
    )
    .refused(401);
    p.call(&p.admin, "GET", "/clientconnectionstates/d:orgb:test:4321", None)
        .refused(404);
}

#[test]
fn http_messages_reach_mqtt_clients_and_connection_states_follow_them() {
    let p = Platform::start();
    let mut app = p.app("watcher");
    app.subscribe("iot-2/type/test/id/4321/evt/+/fmt/+", QoS::AtMostOnce);
    let mut device = p.device();
    device.subscribe("iot-2/cmd/+/fmt/+", QoS::AtMostOnce);
    let state = p
        .call(&p.reader, "GET", "/device/types/test/devices/4321/connection", None)
        .ok(200);
    assert_eq!(state["connectionStatus"], "connected");
    assert_eq!(state["id"], "d:za6xa7:test:4321");
    let same = p
        .call(&p.reader, "GET", "/clientconnectionstates/d:za6xa7:test:4321", None)
        .ok(200);
    assert_eq!(same["connectionStatus"], "connected");
    // The list form, with the filters the platform's SDK sends.
    let r = p.reader.as_str();
    let listed = p
        .call(
            r,
            "GET",
            "/clientconnectionstates?connectionStatus=connected&_limit=50",
            None,
        )
        .ok(200);
    assert_eq!(listed["results"][0]["id"], "d:za6xa7:test:4321");
    assert_eq!(listed["meta"]["total_rows"], 1);
    let none = p
        .call(
            r,
            "GET",
            "/clientconnectionstates?deviceType=test&connectionStatus=disconnected",
            None,
        )
        .ok(200);
    assert_eq!(none["meta"]["total_rows"], 0);
    let after = p
        .call(
            r,
            "GET",
            "/clientconnectionstates?connectedAfter=2000-01-01T00%3A00%3A00Z",
            None,
        )
        .ok(200);
    assert_eq!(after["meta"]["total_rows"], 1);
    let later = p
        .call(
            r,
            "GET",
            "/clientconnectionstates?connectedAfter=2999-01-01T00%3A00%3A00Z",
            None,
        )
        .ok(200);
    assert_eq!(later["meta"]["total_rows"], 0);
    p.call(r, "GET", "/clientconnectionstates?connectionStatus=maybe", None)
        .refused(400);
    p.call(r, "GET", "/clientconnectionstates?connectedAfter=yesterday", None)
        .refused(400);

    // The device posts an event with its own token.
    p.post(
        &p.device_auth(),
        "/device/types/test/devices/4321/events/status",
        "application/json",
        br#"{"t":1}"#,
    )
    .ok(200);
    let got = app.recv_publish();
    assert_eq!(
        (&*got.topic, &got.payload[..]),
        ("iot-2/type/test/id/4321/evt/status/fmt/json", &br#"{"t":1}"#[..])
    );
    p.post(
        &p.device_auth(),
        "/device/types/test/devices/4321/events/note",
        "text/plain; charset=utf-8",
        b"hi",
    )
    .ok(200);
    assert_eq!(&*app.recv_publish().topic, "iot-2/type/test/id/4321/evt/note/fmt/text");
    // An application posts an event for it, and a command to it.
    p.post(
        &p.admin,
        "/application/types/test/devices/4321/events/status",
        "application/octet-stream",
        b"\x01",
    )
    .ok(200);
    assert_eq!(&*app.recv_publish().topic, "iot-2/type/test/id/4321/evt/status/fmt/bin");
    p.post(
        &p.admin,
        "/application/types/test/devices/4321/commands/reboot",
        "application/json",
        b"{}",
    )
    .ok(200);
    let command = device.recv_publish();
    assert_eq!(&*command.topic, "iot-2/cmd/reboot/fmt/json");
    // Refused: a device posting as another, unknown devices, bad names, formats and sizes.
    p.post(
        &p.device_auth(),
        "/device/types/test/devices/4322/events/status",
        "application/json",
        b"{}",
    )
    .refused(401);
    p.post(
        &p.admin,
        "/application/types/test/devices/nope/commands/reboot",
        "application/json",
        b"{}",
    )
    .refused(404);
    p.post(
        &p.admin,
        "/application/types/test/devices/4321/commands/a+b",
        "application/json",
        b"{}",
    )
    .refused(400);
    p.post(
        &p.device_auth(),
        "/device/types/test/devices/4321/events/status",
        "image/png",
        b"x",
    )
    .refused(415);
    let big = vec![b'x'; 131_073];
    p.post(
        &p.device_auth(),
        "/device/types/test/devices/4321/events/status",
        "text/plain",
        &big,
    )
    .refused(413);
    device.ping();
    app.ping();
    app.expect_quiet();
    device.disconnect();
    within(PATIENCE, "the device shown disconnected", || {
        let state = p
            .call(&p.reader, "GET", "/device/types/test/devices/4321/connection", None)
            .ok(200);
        (state["connectionStatus"] == "disconnected").then_some(())
    });
}

#[test]
fn a_device_posting_faster_than_its_quota_is_refused() {
    let p = Platform::start();
    let auth = basic("use-token-auth", &p.orgb_device_token);
    let headers = [
        ("Authorization", auth.as_str()),
        ("Host", "orgb.iot.test"),
        ("Content-Type", "text/plain"),
    ];
    let path = "/api/v0002/device/types/test/devices/4321/events/fast";
    // orgb allows 2 a second, in bursts of a second's worth.
    let answers: Vec<u16> = (0..3)
        .map(|_| request(p.http(), "POST", path, &headers, b"x").status)
        .collect();
    assert_eq!(answers, vec![200, 200, 429]);
    request(p.http(), "POST", path, &headers, b"x").refused(429);
    within(PATIENCE, "the bucket refilled", || {
        (request(p.http(), "POST", path, &headers, b"x").status == 200).then_some(())
    });
    // za6xa7's devices have their own quota (the default, 10).
    for _ in 0..5 {
        p.post(
            &p.device_auth(),
            "/device/types/test/devices/4321/events/fast",
            "text/plain",
            b"x",
        )
        .ok(200);
    }
}

#[test]
fn without_platform_domain_there_is_no_platform_api() {
    let dir = tempfile::tempdir().unwrap();
    let admin = iot(dir.path(), &["org", "create", "za6xa7"]);
    let config = format!(
        "persistence_location {}\nlistener 0 127.0.0.1\nprotocol http\n",
        dir.path().display()
    );
    let broker = Broker::with_config("tern.conf", &config);
    let auth = basic(&text(&admin, "apiKey"), &text(&admin, "apiToken"));
    let answer = request(
        broker.listening_addrs()[0],
        "GET",
        "/api/v0002/device/types",
        &[("Authorization", &auth)],
        b"",
    );
    // The admin API's own refusal: the platform's key means nothing to it.
    assert_eq!(answer.status, 401, "{answer:?}");
    assert!(answer.json().get("exception").is_none(), "{}", answer.json());
}

#[test]
fn bad_input_gets_a_4xx_in_the_platforms_error_shape() {
    let p = Platform::start();
    let a = p.admin.as_str();
    let refused = |answer: Answer, what: &str| {
        assert!((400..500).contains(&answer.status), "{what}: {answer:?}");
        assert!(
            answer.json()["exception"]["id"].as_str().is_some(),
            "{what}: {answer:?}"
        );
    };
    let long = format!("Basic {}", "A".repeat(2000));
    for auth in ["Basic !!!", "Basic", "basic Og==", long.as_str()] {
        refused(p.call(auth, "GET", "/device/types", None), auth);
    }
    for (method, path, body) in [
        ("POST", "/device/types", json!("string")),
        ("POST", "/device/types", json!({"id": 5})),
        ("POST", "/device/types", json!({"id": "x", "classId": "robot"})),
        ("POST", "/device/types", json!({"id": "x", "deviceInfo": [1]})),
        ("POST", "/device/types", json!({"id": "x".repeat(37)})),
        ("PUT", "/config/lec", json!({"enabled": "yes"})),
        ("PUT", "/config/lec", json!({"enabled": true, "ttlDays": 1e10})),
        ("PUT", "/config/lec", json!({"enabled": true, "ttlDays": -1})),
        (
            "POST",
            "/device/types/test/devices",
            json!({"deviceId": "x", "authToken": "short"}),
        ),
        (
            "POST",
            "/device/types/test/devices",
            json!({"deviceId": "x", "gateway": {"typeId": "no", "deviceId": "y"}}),
        ),
        (
            "POST",
            "/device/types/test/devices",
            json!({"deviceId": "x", "location": "here"}),
        ),
        ("POST", "/bulk/devices/add", json!([1, 2])),
        ("POST", "/bulk/devices/remove", json!({"typeId": "test"})),
    ] {
        refused(
            p.call(a, method, path, Some(body.clone())),
            &format!("{method} {path} {body}"),
        );
    }
    for (method, path) in [
        ("GET", "/device/types/%FF"),
        ("GET", "/device/types/test/devices?_limit=99999999999999999999"),
        ("GET", "/bulk/devices?_bookmark=%FF%FE"),
        ("DELETE", "/config/lec"),
        ("GET", "/device/types/test/devices/4321/events/%C3%28"),
    ] {
        refused(p.call(a, method, path, None), path);
    }
    let huge = vec![b' '; 600 << 10];
    let headers = [("Authorization", a), ("Content-Type", "application/json")];
    refused(
        request(p.http(), "POST", "/api/v0002/bulk/devices/add", &headers, &huge),
        "600 KiB",
    );
    let name = "e".repeat(40);
    let path = format!("/device/types/test/devices/4321/events/{name}");
    refused(
        p.post(&p.device_auth(), &path, "application/json", b"{}"),
        "a long event id",
    );
    // Nothing of it changed the registry.
    assert_eq!(p.call(a, "GET", "/bulk/devices", None).ok(200)["meta"]["total_rows"], 1);
    assert_eq!(p.call(a, "GET", "/device/types", None).ok(200)["meta"]["total_rows"], 1);
}

#[test]
fn a_device_waits_for_its_commands_over_http() {
    let p = Platform::start();
    let device = p.device_auth();
    let poll = |command: &str, wait: u64| {
        let path = format!("/device/types/test/devices/4321/commands/{command}/request");
        let body = format!("{{\"waitTimeSecs\": {wait}}}");
        p.post(&device, &path, "application/json", body.as_bytes())
    };
    // Nothing comes: 204.
    assert_eq!(poll("reboot", 0).status, 204);
    // A command published while the device waits is the answer.
    std::thread::scope(|scope| {
        let waiting = scope.spawn(|| poll("+", 30));
        let sent = "/application/types/test/devices/4321/commands/reboot";
        within(PATIENCE, "the command answered", || {
            p.post(&p.admin, sent, "application/json", br#"{"delay":1}"#).ok(200);
            waiting.is_finished().then_some(())
        });
        let got = waiting.join().unwrap();
        assert_eq!(got.status, 200, "{got:?}");
        assert_eq!(got.body, br#"{"delay":1}"#);
        assert_eq!(got.header("x-commandid"), Some("reboot"));
        assert_eq!(got.header("content-type"), Some("application/json"));
    });
    // Only the command asked for, and only this device's.
    std::thread::scope(|scope| {
        let waiting = scope.spawn(|| poll("update", 30));
        within(PATIENCE, "the update answered", || {
            for (device, command) in [("4321", "reboot"), ("4321", "update")] {
                let sent = format!("/application/types/test/devices/{device}/commands/{command}");
                p.post(&p.admin, &sent, "text/plain", command.as_bytes()).ok(200);
            }
            waiting.is_finished().then_some(())
        });
        let got = waiting.join().unwrap();
        assert_eq!((got.status, &got.body[..]), (200, &b"update"[..]));
        assert_eq!(got.header("x-commandid"), None);
        assert_eq!(got.header("content-type"), Some("text/plain"));
    });
    // A device's new request answers the one before with 204.
    std::thread::scope(|scope| {
        let first = scope.spawn(|| poll("reboot", 30));
        within(PATIENCE, "the first request answered", || {
            assert_eq!(poll("reboot", 0).status, 204);
            first.is_finished().then_some(())
        });
        assert_eq!(first.join().unwrap().status, 204);
    });
    // Refused: an application, a bad wait, another device's token.
    let path = "/device/types/test/devices/4321/commands/reboot/request";
    p.post(&p.admin, path, "application/json", b"{}").refused(403);
    p.post(&device, path, "application/json", br#"{"waitTimeSecs": 3601}"#)
        .refused(400);
    p.post(&device, path, "application/json", b"[]").refused(400);
    let other = basic("use-token-auth", &p.orgb_device_token);
    p.post(&other, path, "application/json", b"{}").refused(401);
}
