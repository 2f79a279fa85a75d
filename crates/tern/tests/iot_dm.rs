//! Device management (issue 16) over raw MQTT and REST against the real binary: the
//! device side of the protocol as a device writes it by hand (manage, answers on
//! `iotdm-1/response`, bad JSON, unmanaged refusals), requests started through
//! `/api/v0002/mgmt/requests` and `tern iot mgmt`, a reboot completed by the device
//! managing itself again, a request queued for an offline device, a device that never
//! answers, isolation between devices, and management state kept across a kill -9.
#![allow(clippy::unwrap_used, clippy::expect_used)]
mod common;
#[path = "iot_rest/harness.rs"]
mod harness;

use common::next_json as next;
use common::*;
use harness::*;
use serde_json::{json, Value};
use std::time::Duration;
use tern_proto::*;

const PATIENCE: Duration = Duration::from_secs(20);

/// A raw device connection (`clean` false keeps its session), subscribed to `iotdm-1/#`.
fn device(p: &Platform, id: &str, token: &str, clean: bool) -> Client {
    let mut client = Client::open(p.mqtt(), ProtocolVersion::V3_1_1);
    let mut connect = connect_packet(ProtocolVersion::V3_1_1, &format!("d:za6xa7:test:{id}"), clean, 60);
    connect.username = Some(ByteStr::from("use-token-auth"));
    connect.password = Some(bytes::Bytes::copy_from_slice(token.as_bytes()));
    assert_eq!(client.connect(&connect).reason_code, ReasonCode::SUCCESS);
    assert_eq!(client.subscribe("iotdm-1/#", QoS::AtLeastOnce), [ReasonCode(1)]);
    client
}

/// A device or gateway just registered with `tern iot`, connected as soon as the broker
/// has seen it (within a second).
fn registered(p: &Platform, version: ProtocolVersion, client_id: &str, token: &str) -> Client {
    within(PATIENCE, "the new client accepted", || {
        let mut client = Client::open(p.mqtt(), version);
        let mut connect = connect_packet(version, client_id, true, 60);
        connect.username = Some(ByteStr::from("use-token-auth"));
        connect.password = Some(bytes::Bytes::copy_from_slice(token.as_bytes()));
        (client.connect(&connect).reason_code == ReasonCode::SUCCESS).then_some(client)
    })
}

/// Publishes `payload` on `iotdevice-1/<tail>` at QoS 1 (acknowledged).
fn send(c: &mut Client, tail: &str, payload: &Value) {
    send_raw(c, tail, payload.to_string().as_bytes());
}

fn send_raw(c: &mut Client, tail: &str, payload: &[u8]) {
    static NEXT: std::sync::atomic::AtomicU16 = std::sync::atomic::AtomicU16::new(1);
    let id = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed).max(1);
    c.publish(&format!("iotdevice-1/{tail}"), payload, QoS::AtLeastOnce, false, id);
}

/// Sends a manage request and checks the 200.
fn manage(c: &mut Client, req_id: &str) {
    let body = json!({"d": {"lifetime": 3600, "supports": {"deviceActions": true, "firmwareActions": true}, "deviceInfo": {"model": "T1"}}, "reqId": req_id});
    send(c, "mgmt/manage", &body);
    let (topic, answer) = next(c);
    assert_eq!(topic, "iotdm-1/response");
    assert_eq!(answer, json!({"rc": 200, "reqId": req_id}));
}

fn reboot(p: &Platform, devices: &[&str], timeout: Option<u64>) -> harness::Answer {
    let devices: Vec<Value> = devices
        .iter()
        .map(|d| json!({"typeId": "test", "deviceId": d}))
        .collect();
    let mut body = json!({"action": "device/reboot", "devices": devices});
    if let Some(t) = timeout {
        body["timeout"] = json!(t);
    }
    p.call(&p.admin, "POST", "/mgmt/requests", Some(body))
}

fn status_of(p: &Platform, id: &str, device: &str) -> Value {
    p.call(
        &p.admin,
        "GET",
        &format!("/mgmt/requests/{id}/deviceStatus/test/{device}"),
        None,
    )
    .ok(200)
}

/// Waits until the request's status for `device` is complete; returns it.
fn completed(p: &Platform, id: &str, device: &str) -> Value {
    within(PATIENCE, "the request to complete", || {
        let s = status_of(p, id, device);
        (s["complete"] == true).then_some(s)
    })
}

#[test]
fn manage_answers_and_bad_json_gets_400_with_the_req_id() {
    let p = Platform::start();
    let mut d = device(&p, "4321", &p.device_token, true);
    // Not managed yet: the other requests are refused with 403.
    send(
        &mut d,
        "device/update/location",
        &json!({"d": {"longitude": 4.9, "latitude": 52.37}, "reqId": "l0"}),
    );
    let (_, answer) = next(&mut d);
    assert_eq!(
        (answer["rc"].as_u64(), answer["reqId"].as_str()),
        (Some(403), Some("l0"))
    );
    manage(&mut d, "m1");
    manage(&mut d, "m2");
    // Bad JSON: the reqId read leniently, or empty; an unknown topic: 404.
    send_raw(&mut d, "mgmt/manage", br#"{"reqId":"abc","d":"#);
    let (_, answer) = next(&mut d);
    assert_eq!(
        (answer["rc"].as_u64(), answer["reqId"].as_str()),
        (Some(400), Some("abc"))
    );
    send_raw(&mut d, "mgmt/manage", b"\xff\xfe not json");
    let (_, answer) = next(&mut d);
    assert_eq!((answer["rc"].as_u64(), answer["reqId"].as_str()), (Some(400), Some("")));
    send(&mut d, "no/such/request", &json!({"reqId": "u1"}));
    let (_, answer) = next(&mut d);
    assert_eq!(answer["rc"], 404);
    send(
        &mut d,
        "device/update/location",
        &json!({"d": {"longitude": 4.9, "latitude": 278}, "reqId": "l1"}),
    );
    assert_eq!(next(&mut d).1["rc"], 400);
    send(
        &mut d,
        "device/update/location",
        &json!({"d": {"longitude": 4.9, "latitude": 52.37}, "reqId": "l2"}),
    );
    assert_eq!(next(&mut d).1["rc"], 200);
    send(
        &mut d,
        "add/diag/errorCodes",
        &json!({"d": {"errorCode": 7}, "reqId": "e1"}),
    );
    assert_eq!(next(&mut d).1["rc"], 200);
    // A notify without reqId is never answered.
    send(
        &mut d,
        "notify",
        &json!({"d": {"fields": [{"field": "mgmt.firmware", "value": {"state": 1}}]}}),
    );
    d.expect_nothing(300);

    // What the device reported, through REST.
    let mgmt = p
        .call(&p.admin, "GET", "/device/types/test/devices/4321/mgmt", None)
        .ok(200);
    assert_eq!(mgmt["dormant"], false, "{mgmt}");
    assert_eq!(mgmt["supports"]["deviceActions"], true, "{mgmt}");
    let location = p
        .call(&p.admin, "GET", "/device/types/test/devices/4321/location", None)
        .ok(200);
    assert_eq!(location["latitude"], 52.37);
    let codes = p
        .call(&p.admin, "GET", "/device/types/test/devices/4321/diag/errorCodes", None)
        .ok(200);
    assert_eq!(codes[0]["errorCode"], 7, "{codes}");
    // deviceInfo of the manage request reached the registry.
    let registered = within(PATIENCE, "deviceInfo in the registry", || {
        let d = p.call(&p.admin, "GET", "/device/types/test/devices/4321", None).ok(200);
        (d["deviceInfo"]["model"] == "T1").then_some(d)
    });
    assert_eq!(registered["deviceId"], "4321");
    assert!(!p.broker.as_ref().unwrap().logged("panicked"));
}

#[test]
fn a_reboot_completes_when_the_device_manages_again_from_a_new_connection() {
    let p = Platform::start();
    let mut d = device(&p, "4321", &p.device_token, true);
    manage(&mut d, "m1");
    let id = reboot(&p, &["4321"], None).ok(202)["reqId"]
        .as_str()
        .unwrap()
        .to_string();
    let (topic, request) = next(&mut d);
    assert_eq!(topic, "iotdm-1/mgmt/initiate/device/reboot");
    assert!(request.get("rc").is_none(), "{request}");
    let req_id = request["reqId"].as_str().unwrap().to_string();
    assert_eq!(status_of(&p, &id, "4321")["status"], 1);
    send(&mut d, "response", &json!({"rc": 202, "reqId": req_id}));
    // A manage from the same connection does not complete it.
    manage(&mut d, "m2");
    assert_eq!(status_of(&p, &id, "4321")["complete"], false);
    d.disconnect();
    let mut again = device(&p, "4321", &p.device_token, true);
    manage(&mut again, "m3");
    let done = completed(&p, &id, "4321");
    assert_eq!(done["status"], 0, "{done}");
    let request = p.call(&p.admin, "GET", &format!("/mgmt/requests/{id}"), None).ok(200);
    assert_eq!(
        (request["action"].as_str(), request["complete"].as_bool()),
        (Some("device/reboot"), Some(true))
    );
    let all = p.call(&p.admin, "GET", "/mgmt/requests", None).ok(200);
    assert!(
        all["results"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["id"] == id.as_str()),
        "{all}"
    );
    assert_eq!(
        p.call(&p.admin, "DELETE", &format!("/mgmt/requests/{id}"), None).status,
        204
    );
    assert_eq!(
        p.call(&p.admin, "GET", &format!("/mgmt/requests/{id}"), None).status,
        404
    );
}

#[test]
fn refusals_unmanaged_devices_read_only_keys_and_other_devices() {
    let p = Platform::start();
    // Not managed: the whole request is refused with 403.
    let refused = reboot(&p, &["4321"], None);
    assert_eq!(refused.status, 403, "{refused:?}");
    // A read-only key may not start requests; a device may not use the API.
    let body = json!({"action": "device/reboot", "devices": [{"typeId": "test", "deviceId": "4321"}]});
    assert_eq!(
        p.call(&p.reader, "POST", "/mgmt/requests", Some(body.clone())).status,
        403
    );
    assert_eq!(
        p.call(&p.device_auth(), "POST", "/mgmt/requests", Some(body)).status,
        403
    );
    // Bad requests: 400 naming what is wrong.
    for bad in [
        json!({"devices": [{"typeId": "test", "deviceId": "4321"}]}),
        json!({"action": "device/reboot", "devices": []}),
        json!({"action": "device/reboot", "devices": [{"typeId": "test"}]}),
        json!({"action": "device/reboot", "devices": [{"typeId": "test", "deviceId": "4321"}], "timeout": 0}),
    ] {
        let answer = p.call(&p.admin, "POST", "/mgmt/requests", Some(bad.clone()));
        assert_eq!(answer.status, 400, "{bad}: {answer:?}");
    }
    // A device speaks and hears only for itself (5.0: refused with 0x87).
    let token = text(
        &common::iot::iot(&p.data, &["device", "create", "za6xa7", "test", "other"]),
        "authToken",
    );
    let mut d = device(&p, "4321", &p.device_token, true);
    // The broker sees the new device within a second.
    let mut other = registered(&p, ProtocolVersion::V5, "d:za6xa7:test:other", &token);
    let rc = other.publish(
        "iotdevice-1/type/test/id/4321/mgmt/manage",
        b"{}",
        QoS::AtLeastOnce,
        false,
        1,
    );
    assert_eq!(rc, ReasonCode::NOT_AUTHORIZED);
    assert_eq!(
        other.subscribe("iotdm-1/type/test/id/4321/#", QoS::AtLeastOnce),
        [ReasonCode::NOT_AUTHORIZED]
    );
    // ... and another device's manage does not reach 4321.
    let rc = other.publish(
        "iotdevice-1/mgmt/manage",
        br#"{"reqId":"x"}"#,
        QoS::AtLeastOnce,
        false,
        2,
    );
    assert_eq!(rc, ReasonCode::SUCCESS);
    d.expect_nothing(300);
}

#[test]
fn a_reboot_for_an_offline_device_is_delivered_when_it_comes_back_and_silence_times_out() {
    let mut p = Platform::start();
    let mut d = device(&p, "4321", &p.device_token, false);
    manage(&mut d, "m1");
    d.disconnect();
    let id = reboot(&p, &["4321"], None).ok(202)["reqId"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(status_of(&p, &id, "4321")["complete"], false);
    // Back with its session: the queued reboot arrives.
    let mut client = Client::open(p.mqtt(), ProtocolVersion::V3_1_1);
    let mut connect = connect_packet(ProtocolVersion::V3_1_1, "d:za6xa7:test:4321", false, 60);
    connect.username = Some(ByteStr::from("use-token-auth"));
    connect.password = Some(bytes::Bytes::copy_from_slice(p.device_token.as_bytes()));
    assert!(client.connect(&connect).session_present);
    let (topic, request) = next(&mut client);
    assert_eq!(topic, "iotdm-1/mgmt/initiate/device/reboot");
    send(&mut client, "response", &json!({"rc": 202, "reqId": request["reqId"]}));
    client.disconnect();
    let mut again = device(&p, "4321", &p.device_token, false);
    manage(&mut again, "m2");
    assert_eq!(completed(&p, &id, "4321")["status"], 0);

    // A device that never answers: failed after the timeout, with the reason.
    let id = reboot(&p, &["4321"], Some(1)).ok(202)["reqId"]
        .as_str()
        .unwrap()
        .to_string();
    let _ignored = next(&mut again);
    let failed = completed(&p, &id, "4321");
    assert_eq!(failed["status"], 408, "{failed}");
    assert!(
        failed["message"].as_str().unwrap().contains("did not answer"),
        "{failed}"
    );

    // Management state survives a kill -9.
    again.disconnect();
    let file = p.data.join("platform/dm/za6xa7.json");
    within(PATIENCE, "the timed-out request written", || {
        let text = std::fs::read_to_string(&file).ok()?;
        (text.contains(&id) && text.contains("408")).then_some(())
    });
    p.kill_and_restart();
    let mgmt = p
        .call(&p.admin, "GET", "/device/types/test/devices/4321/mgmt", None)
        .ok(200);
    assert_eq!(mgmt["supports"]["deviceActions"], true, "{mgmt}");
    assert_eq!(status_of(&p, &id, "4321")["status"], 408);
}

#[test]
fn tern_iot_mgmt_reboots_a_device_and_waits_for_it() {
    let p = Platform::start();
    let mut d = device(&p, "4321", &p.device_token, true);
    manage(&mut d, "m1");
    let decoded = {
        use base64::Engine;
        String::from_utf8(base64::engine::general_purpose::STANDARD.decode(&p.admin[6..]).unwrap()).unwrap()
    };
    let url = format!("http://{}", p.http());
    let cli = Background::tern(&[
        "iot",
        "mgmt",
        "--url",
        &url,
        "--api-key",
        &decoded,
        "reboot",
        "test:4321",
        "--wait",
        "--timeout",
        "30",
    ]);
    let (topic, request) = next(&mut d);
    assert_eq!(topic, "iotdm-1/mgmt/initiate/device/reboot");
    send(&mut d, "response", &json!({"rc": 202, "reqId": request["reqId"]}));
    d.disconnect();
    let mut again = device(&p, "4321", &p.device_token, true);
    manage(&mut again, "m2");
    let (code, stdout, stderr) = cli.finish();
    assert_eq!(code, Some(0), "{stdout} {stderr}");
    assert!(stdout.contains("test/4321  done"), "{stdout}");
    // Without --url: said what is needed.
    let out = tern(&["iot", "mgmt", "reboot", "test:4321"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--url"), "{out:?}");
}

#[test]
fn a_device_deleted_from_the_registry_ends_its_requests() {
    let p = Platform::start();
    let token = text(
        &common::iot::iot(&p.data, &["device", "create", "za6xa7", "test", "gone"]),
        "authToken",
    );
    let mut d = registered(&p, ProtocolVersion::V3_1_1, "d:za6xa7:test:gone", &token);
    assert_eq!(d.subscribe("iotdm-1/#", QoS::AtLeastOnce), [ReasonCode(1)]);
    manage(&mut d, "m1");
    let id = reboot(&p, &["gone"], None).ok(202)["reqId"]
        .as_str()
        .unwrap()
        .to_string();
    common::iot::iot(&p.data, &["device", "delete", "za6xa7", "test", "gone"]);
    let ended = within(PATIENCE, "the request ended", || {
        let s = p
            .call(&p.admin, "GET", &format!("/mgmt/requests/{id}/deviceStatus"), None)
            .ok(200);
        let run = s["results"][0].clone();
        (run["complete"] == true).then_some(run)
    });
    assert_eq!(ended["status"], 404, "{ended}");
}

#[test]
fn a_gateway_manages_a_device_behind_it_with_the_long_forms() {
    let p = Platform::start();
    let iot = |args: &[&str]| common::iot::iot(&p.data, args);
    iot(&["type", "create", "za6xa7", "gw", "--class", "gateway"]);
    let gw_token = text(&iot(&["device", "create", "za6xa7", "gw", "gw1"]), "authToken");
    iot(&["device", "create", "za6xa7", "test", "behind", "--gateway", "gw:gw1"]);
    let mut gw = registered(&p, ProtocolVersion::V5, "g:za6xa7:gw:gw1", &gw_token);
    assert_eq!(gw.subscribe("iotdm-1/type/+/id/+/#", QoS::AtLeastOnce), [ReasonCode(1)]);
    let manage_body = json!({"d": {"lifetime": 0, "supports": {"deviceActions": true}}, "reqId": "g1"}).to_string();
    let rc = gw.publish(
        "iotdevice-1/type/test/id/behind/mgmt/manage",
        manage_body.as_bytes(),
        QoS::AtLeastOnce,
        false,
        1,
    );
    assert_eq!(rc, ReasonCode::SUCCESS);
    let (topic, answer) = next(&mut gw);
    assert_eq!(topic, "iotdm-1/type/test/id/behind/response");
    assert_eq!(answer, json!({"rc": 200, "reqId": "g1"}));
    // Not behind it: refused.
    let rc = gw.publish(
        "iotdevice-1/type/test/id/4321/mgmt/manage",
        manage_body.as_bytes(),
        QoS::AtLeastOnce,
        false,
        2,
    );
    assert_eq!(rc, ReasonCode::NOT_AUTHORIZED);

    // A reboot of the device reaches the gateway, which answers and manages it again.
    let id = reboot(&p, &["behind"], None).ok(202)["reqId"]
        .as_str()
        .unwrap()
        .to_string();
    let (topic, request) = next(&mut gw);
    assert_eq!(topic, "iotdm-1/type/test/id/behind/mgmt/initiate/device/reboot");
    let answer = json!({"rc": 202, "reqId": request["reqId"]}).to_string();
    gw.publish(
        "iotdevice-1/type/test/id/behind/response",
        answer.as_bytes(),
        QoS::AtLeastOnce,
        false,
        3,
    );
    let again = json!({"d": {"lifetime": 0, "supports": {"deviceActions": true}}, "reqId": "g2"}).to_string();
    gw.publish(
        "iotdevice-1/type/test/id/behind/mgmt/manage",
        again.as_bytes(),
        QoS::AtLeastOnce,
        false,
        4,
    );
    assert_eq!(next(&mut gw).1["reqId"], "g2");
    assert_eq!(completed(&p, &id, "behind")["status"], 0);
}

#[test]
fn management_messages_have_a_rate_of_their_own_apart_from_events() {
    let p = Platform::start();
    let mut d = Client::open(p.mqtt(), ProtocolVersion::V5);
    let mut connect = connect_packet(ProtocolVersion::V5, "d:za6xa7:test:4321", true, 60);
    connect.username = Some(ByteStr::from("use-token-auth"));
    connect.password = Some(bytes::Bytes::copy_from_slice(p.device_token.as_bytes()));
    assert_eq!(d.connect(&connect).reason_code, ReasonCode::SUCCESS);
    // 60 manage requests at once: a second's worth (50) is taken, the rest refused.
    let body = json!({"d": {"lifetime": 0}, "reqId": "r"}).to_string();
    let codes: Vec<ReasonCode> = (1..=60)
        .map(|id| d.publish("iotdevice-1/mgmt/manage", body.as_bytes(), QoS::AtLeastOnce, false, id))
        .collect();
    let refused = codes.iter().filter(|c| **c == ReasonCode::QUOTA_EXCEEDED).count();
    assert!(refused >= 1 && codes.len() - refused >= 50, "{codes:?}");
    // The event quota (10 a second) is untouched by them.
    for id in 61..71 {
        let code = d.publish("iot-2/evt/e/fmt/json", b"{}", QoS::AtLeastOnce, false, id);
        assert!(code.is_success(), "event {id}: {code:?}");
    }
}
