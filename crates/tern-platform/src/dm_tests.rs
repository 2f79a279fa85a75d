//! Unit tests of device management (`dm*.rs`) with a fake clock.

use crate::dm::*;
use crate::dm_wire::{self as wire};
use serde_json::{json, Value};
use std::path::PathBuf;

const T0: u64 = 1_800_000_000_000;
const ORG: &str = "acme";

/// Messages sent: (device, tail, JSON payload).
type Sent = Vec<(String, String, Value)>;

/// A fresh directory under the system's temporary one.
fn temp_dir() -> PathBuf {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("tern-dm-test-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// The messages of `fx` as (device, tail, JSON), checking the SDK's rules on each: a JSON
/// object with a string reqId; `rc` on responses only.
fn sent(fx: &Effects) -> Sent {
    fx.outgoing
        .iter()
        .map(|o| {
            let v: Value = serde_json::from_slice(&o.payload).expect("payload is JSON");
            assert!(v.is_object(), "{v}");
            assert!(v["reqId"].is_string(), "no reqId: {v}");
            assert_eq!(
                v.get("rc").is_some(),
                o.tail == "response",
                "rc rule broken: {} {v}",
                o.tail
            );
            assert_eq!(o.org, ORG);
            (o.device_id.clone(), o.tail.clone(), v)
        })
        .collect()
}

fn send(dm: &Dm, now: u64, d: &str, tail: &str, payload: Value) -> Sent {
    sent(&dm.on_device(now, ORG, "t", d, tail, payload.to_string().as_bytes()))
}

fn manage_payload(req_id: &str) -> Value {
    json!({"d":{"lifetime":3600,"supports":{"deviceActions":true,"firmwareActions":true},
                "deviceInfo":{},"metadata":{}},"reqId":req_id})
}

/// Manages device `d`, checking the 200.
fn manage(dm: &Dm, now: u64, d: &str) -> Sent {
    let out = send(dm, now, d, "mgmt/manage", manage_payload("m1"));
    assert_eq!(out[0].1, "response");
    assert_eq!(out[0].2, json!({"rc":200,"reqId":"m1"}));
    out
}

/// The device's answer `rc` to message `msg`.
fn answer(dm: &Dm, now: u64, d: &str, msg: &Value, rc: u16) -> Sent {
    send(dm, now, d, "response", json!({"rc": rc, "reqId": msg["reqId"]}))
}

fn initiate(
    dm: &Dm,
    now: u64,
    action: &str,
    params: Vec<(&str, Value)>,
    devices: &[&str],
    override_: bool,
) -> Result<(String, Sent), DmRefusal> {
    let request = Initiate {
        action: action.into(),
        parameters: params.into_iter().map(|(n, v)| (n.to_string(), v)).collect(),
        devices: devices.iter().map(|d| ("t".to_string(), d.to_string())).collect(),
        timeout_secs: 60,
        override_,
    };
    dm.initiate(now, |t, _| t == "t", ORG, request)
        .map(|(id, fx)| (id, sent(&fx)))
}

fn status(dm: &Dm, id: &str, d: &str) -> (u64, bool) {
    let s = dm.device_status(ORG, id, "t", d).expect("device in request");
    (
        s["status"].as_u64().expect("status"),
        s["complete"].as_bool().expect("complete"),
    )
}

fn notify(dm: &Dm, now: u64, d: &str, value: Value) -> Sent {
    send(
        dm,
        now,
        d,
        "notify",
        json!({"d":{"fields":[{"field":"mgmt.firmware","value":value}]}}),
    )
}

#[path = "dm_request_tests.rs"]
mod requests;
#[path = "dm_share_tests.rs"]
mod share;

#[test]
fn manage_ten_times_is_idempotent() {
    let dm = Dm::open(&temp_dir());
    for i in 0..10 {
        let out = send(&dm, T0 + i, "d1", "mgmt/manage", manage_payload(&format!("r{i}")));
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].2, json!({"rc":200,"reqId":format!("r{i}")}));
    }
    let mgmt = dm.mgmt(ORG, "t", "d1").expect("managed");
    assert_eq!(mgmt["dormant"], json!(false));
    assert_eq!(mgmt["lifetime"], json!(3600));
    assert_eq!(mgmt["supports"]["deviceActions"], json!(true));
    assert_eq!(mgmt["managedDateTime"], json!(wire::timestamp(T0)));
    // deviceInfo {} and metadata {} ask nothing of the registry.
    let fx = dm.on_device(
        T0,
        ORG,
        "t",
        "d1",
        "mgmt/manage",
        manage_payload("x").to_string().as_bytes(),
    );
    assert!(fx.device_info.is_empty() && fx.metadata.is_empty());
    let with_info = json!({"d":{"deviceInfo":{"model":"m","serialNumber":null},"metadata":{"k":1}},"reqId":"y"});
    let fx = dm.on_device(T0, ORG, "t", "d1", "mgmt/manage", with_info.to_string().as_bytes());
    assert_eq!(fx.device_info[0].3, json!({"model":"m"}));
    assert_eq!(fx.metadata[0].3, json!({"k":1}));
    // supports replaced: that manage had none.
    assert_eq!(dm.mgmt(ORG, "t", "d1").expect("managed")["supports"], json!({}));
}

#[test]
fn manage_checks_its_values() {
    let dm = Dm::open(&temp_dir());
    for (d, rc) in [
        (json!({"lifetime": 60}), 400),
        (json!({"lifetime": "x"}), 400),
        (json!({"supports": 1}), 400),
        (json!({"supports": {"deviceActions": 1}}), 400),
        (json!({"supports": {"nobundle": true}}), 403),
        (json!({"deviceInfo": []}), 400),
        (json!({"lifetime": 0}), 200),
    ] {
        let out = send(&dm, T0, "d1", "mgmt/manage", json!({"d": d, "reqId": "r"}));
        assert_eq!(out[0].2["rc"], json!(rc), "{d}");
        assert_eq!(out[0].2["reqId"], json!("r"));
    }
}

#[test]
fn bad_payloads_get_400_with_a_scraped_or_empty_req_id() {
    let dm = Dm::open(&temp_dir());
    let raw = |payload: &[u8]| sent(&dm.on_device(T0, ORG, "t", "d1", "mgmt/manage", payload));
    let out = raw(br#"{"reqId":"abc","d":"#);
    assert_eq!(out[0].2["rc"], json!(400));
    assert_eq!(out[0].2["reqId"], json!("abc"));
    let out = raw(b"\xff\xfe not json");
    assert_eq!(out[0].2["reqId"], json!(""));
    let out = raw(b"[1,2]");
    assert_eq!(
        (out[0].2["rc"].clone(), out[0].2["reqId"].clone()),
        (json!(400), json!(""))
    );
    let out = raw(br#"{"d":{}}"#);
    assert_eq!(
        (out[0].2["rc"].clone(), out[0].2["reqId"].clone()),
        (json!(400), json!(""))
    );
    let out = raw(br#"{"d":{},"reqId":7}"#);
    assert_eq!(out[0].2["reqId"], json!(""));
    assert_eq!(wire::scrape_req_id(br#"x "reqId" : "q-1" , "#), "q-1");
    assert_eq!(wire::scrape_req_id(br#""reqId":1, "reqId":"ok""#), "ok");
    assert_eq!(wire::scrape_req_id(br#""reqId":"""#), "");
}

#[test]
fn unmanaged_devices_get_403_unknown_topics_404_bad_location_400() {
    let dm = Dm::open(&temp_dir());
    let loc = json!({"d":{"longitude":4.9,"latitude":52.37},"reqId":"a1"});
    let out = send(&dm, T0, "d1", "device/update/location", loc.clone());
    assert_eq!(out[0].2["rc"], json!(403));
    let out = send(&dm, T0, "d1", "foo", json!({"reqId":"z"}));
    assert_eq!(
        out[0].2,
        json!({"rc":404,"message":"unknown device management topic","reqId":"z"})
    );
    manage(&dm, T0, "d1");
    let out = send(
        &dm,
        T0,
        "d1",
        "device/update/location",
        json!({"d":{"longitude":4.9,"latitude":278},"reqId":"a2"}),
    );
    assert_eq!(out[0].2["rc"], json!(400));
    assert!(out[0].2["message"].as_str().expect("message").contains("latitude"));
    let out = send(&dm, T0, "d1", "device/update/location", loc);
    assert_eq!(out[0].2["rc"], json!(200));
    let stored = dm.location(ORG, "t", "d1").expect("location");
    assert_eq!(stored["latitude"], json!(52.37));
    assert_eq!(stored["updatedDateTime"], json!(wire::timestamp(T0)));
    // unmanage: 200, then 403 again and no mgmt.
    let out = send(&dm, T0, "d1", "mgmt/unmanage", json!({"reqId":"u"}));
    assert_eq!(out[0].2, json!({"rc":200,"reqId":"u"}));
    assert!(dm.mgmt(ORG, "t", "d1").is_none());
    let out = send(
        &dm,
        T0,
        "d1",
        "add/diag/errorCodes",
        json!({"d":{"errorCode":1},"reqId":"e"}),
    );
    assert_eq!(out[0].2["rc"], json!(403));
}

#[test]
fn diagnostics_are_kept_and_bounded() {
    let dm = Dm::open(&temp_dir());
    manage(&dm, T0, "d1");
    for i in 0..(MAX_ERROR_CODES + 5) {
        let out = send(
            &dm,
            T0,
            "d1",
            "add/diag/errorCodes",
            json!({"d":{"errorCode":i},"reqId":"e"}),
        );
        assert_eq!(out[0].2["rc"], json!(200));
    }
    let codes = dm.error_codes(ORG, "t", "d1");
    assert_eq!(codes.len(), MAX_ERROR_CODES);
    assert_eq!(codes[0]["errorCode"], json!(5));
    send(&dm, T0, "d1", "clear/diag/errorCodes", json!({"reqId":"c"}));
    assert!(dm.error_codes(ORG, "t", "d1").is_empty());
    let log =
        json!({"d":{"message":"boot","timestamp":"2026-11-30T01:02:03.123456","data":"","severity":1},"reqId":"l"});
    assert_eq!(send(&dm, T0, "d1", "add/diag/log", log)[0].2["rc"], json!(200));
    let bad = json!({"d":{"message":"x","severity":7},"reqId":"l"});
    assert_eq!(send(&dm, T0, "d1", "add/diag/log", bad)[0].2["rc"], json!(400));
    let logs = dm.logs(ORG, "t", "d1");
    assert_eq!(logs.len(), 1);
    assert_eq!(logs[0]["timestamp"], json!("2026-11-30T01:02:03.123456"));
    assert_eq!(logs[0]["severity"], json!(1));
    let id = logs[0]["id"].as_str().expect("id").to_string();
    assert!(dm.log(ORG, "t", "d1", &id).is_some());
    // 500 KB per device: big entries push the oldest out.
    let big = "x".repeat(60_000);
    for _ in 0..10 {
        dm.add_log(T0, ORG, "t", "d1", &json!({"message": big})).expect("log");
    }
    let logs = dm.logs(ORG, "t", "d1");
    assert!(logs.len() < 10 && logs[0]["message"] == json!(big));
    assert!(dm.delete_log(ORG, "t", "d1", logs[0]["id"].as_str().expect("id")));
    // 7 days: swept.
    let _ = dm.tick(T0 + RETENTION_MS + 1);
    assert!(dm.logs(ORG, "t", "d1").is_empty());
}

#[test]
fn lifetime_makes_a_device_dormant_until_it_manages_again() {
    let dm = Dm::open(&temp_dir());
    manage(&dm, T0, "d1");
    let _ = dm.tick(T0 + 3_599_000);
    assert_eq!(dm.mgmt(ORG, "t", "d1").expect("managed")["dormant"], json!(false));
    let _ = dm.tick(T0 + 3_600_000);
    let mgmt = dm.mgmt(ORG, "t", "d1").expect("dormant is still shown");
    assert_eq!(mgmt["dormant"], json!(true));
    assert!(mgmt["dormantDateTime"].is_string());
    let refused = initiate(&dm, T0 + 3_600_001, "device/reboot", vec![], &["d1"], false).expect_err("dormant");
    assert_eq!(refused.status, 403);
    manage(&dm, T0 + 3_700_000, "d1");
    assert_eq!(dm.mgmt(ORG, "t", "d1").expect("managed")["dormant"], json!(false));
}

#[test]
fn notify_with_req_id_is_answered_without_it_never() {
    let dm = Dm::open(&temp_dir());
    // Unmanaged and without reqId: nothing at all.
    assert!(notify(&dm, T0, "d1", json!({"state":1})).is_empty());
    manage(&dm, T0, "d1");
    assert!(notify(&dm, T0, "d1", json!({"state":1})).is_empty());
    assert_eq!(dm.mgmt(ORG, "t", "d1").expect("managed")["firmware"]["state"], json!(1));
    let with = |f: Value| send(&dm, T0, "d1", "notify", json!({"d":{"fields":[f]},"reqId":"n"}));
    assert_eq!(
        with(json!({"field":"mgmt.firmware","value":{"state":2}}))[0].2,
        json!({"rc":200,"reqId":"n"})
    );
    assert_eq!(
        with(json!({"field":"mgmt.firmware","value":{"state":9}}))[0].2["rc"],
        json!(400)
    );
    assert_eq!(with(json!({"field":"bogus","value":{}}))[0].2["rc"], json!(404));
    // Not JSON and no reqId to be found: no answer either.
    assert!(sent(&dm.on_device(T0, ORG, "t", "d1", "notify", b"{oops")).is_empty());
}

#[test]
fn state_survives_a_flush_and_reopen() {
    let dir = temp_dir();
    let dm = Dm::open(&dir);
    manage(&dm, T0, "d1");
    send(
        &dm,
        T0,
        "d1",
        "device/update/location",
        json!({"d":{"longitude":1,"latitude":2},"reqId":"l"}),
    );
    dm.add_error_code(T0, ORG, "t", "d1", &json!({"errorCode":3}))
        .expect("code");
    let (id, _) = initiate(&dm, T0, "device/reboot", vec![], &["d1"], false).expect("accepted");
    dm.flush().expect("flush");
    let path = dir.join("platform/dm/acme.json");
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).expect("file").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let again = Dm::open(&dir);
    assert!(again.mgmt(ORG, "t", "d1").is_some());
    assert_eq!(
        again.location(ORG, "t", "d1").expect("location")["latitude"],
        json!(2.0)
    );
    assert_eq!(again.error_codes(ORG, "t", "d1").len(), 1);
    assert_eq!(again.request(ORG, &id).expect("request")["status"], json!(1));
    // Still in progress: another request is refused with 409.
    assert_eq!(
        initiate(&again, T0, "device/reboot", vec![], &["d1"], false)
            .expect_err("busy")
            .status,
        409
    );
    // A damaged file is skipped, not a panic.
    std::fs::write(dir.join("platform/dm/other.json"), b"{not json").expect("write");
    let third = Dm::open(&dir);
    assert!(third.mgmt(ORG, "t", "d1").is_some());
    third.forget_device(ORG, "t", "d1");
    assert!(third.mgmt(ORG, "t", "d1").is_none());
    assert_eq!(third.request(ORG, &id).expect("request")["status"], json!(404));
}

#[test]
fn rest_location_is_pushed_to_a_managed_device() {
    let dm = Dm::open(&temp_dir());
    assert_eq!(
        dm.set_location(T0, ORG, "t", "d1", &json!({"latitude":91,"longitude":0}))
            .expect_err("bad")
            .status,
        400
    );
    let (stored, fx) = dm
        .set_location(T0, ORG, "t", "d1", &json!({"latitude":1,"longitude":2}))
        .expect("ok");
    assert!(fx.outgoing.is_empty(), "not managed: nothing sent");
    assert_eq!(stored["measuredDateTime"], json!(wire::timestamp(T0)));
    manage(&dm, T0, "d1");
    let (_, fx) = dm
        .set_location(T0, ORG, "t", "d1", &json!({"latitude":1,"longitude":2}))
        .expect("ok");
    let out = sent(&fx);
    assert_eq!(
        (out[0].1.as_str(), out[0].2["d"]["fields"][0]["field"].clone()),
        ("device/update", json!("location"))
    );
}

#[test]
fn wire_helpers() {
    assert!(wire::is_timestamp("2026-11-30T01:02:03"));
    assert!(wire::is_timestamp("2026-11-30T01:02:03.5Z"));
    assert!(wire::is_timestamp("2026-11-30T01:02:03.123+01:00"));
    assert!(wire::is_timestamp("2026-11-30T01:02:03.123+0000"));
    assert!(!wire::is_timestamp("2026-11-30"));
    assert!(!wire::is_timestamp("2026-11-30T01:02:03.Z"));
    let u = wire::uuid4();
    assert_eq!((u.len(), &u[14..15]), (36, "4"));
    assert_ne!(u, wire::uuid4());
    // Untracked ones: the same form, told apart by their variant.
    let untracked = wire::untracked_uuid4();
    assert_eq!((untracked.len(), &untracked[14..15]), (36, "4"));
    assert!(wire::is_untracked(&untracked), "{untracked}");
    assert!(!wire::is_untracked(&u), "{u}");
    assert!(!wire::is_untracked("m1"));
    assert_eq!(
        Outgoing {
            org: "o".into(),
            type_id: "t".into(),
            device_id: "d".into(),
            tail: "response".into(),
            payload: vec![]
        }
        .topic(),
        "$iot/o/iotdm-1/type/t/id/d/response"
    );
}

proptest::proptest! {
    #[test]
    fn random_input_never_panics_and_answers_follow_the_rules(
        tail in proptest::sample::select(vec!["mgmt/manage", "mgmt/unmanage", "device/update/location", "add/diag/errorCodes",
            "clear/diag/errorCodes", "add/diag/log", "clear/diag/log", "notify", "response", "x/y", ""]),
        payload in proptest::collection::vec(proptest::num::u8::ANY, 0..200),
        json_payload in "\\{(\"reqId\":\"[a-z]{0,4}\",?)?(\"d\":\\{(\"[a-zA-Z]{1,10}\":(1|\"s\"|\\[\\]|\\{\\}|null|-9e9),?){0,4}\\})?\\}",
    ) {
        let dm = Dm::open(&temp_dir());
        for p in [payload.as_slice(), json_payload.as_bytes()] {
            let _ = sent(&dm.on_device(T0, ORG, "t", "d1", "mgmt/manage", p));
            let _ = sent(&dm.on_device(T0, ORG, "t", "d1", tail, p));
            let _ = sent(&dm.tick(T0 + 10_000_000));
        }
    }
}
