//! The web console's platform pages (docs/console.md) end to end in headless Chromium,
//! against the real binary running the IoT platform: the test logs in with the broker's
//! admin key, creates an organization, a device type and a device (its token shown
//! once), is refused a duplicate device next to the field, bulk adds two devices from
//! CSV, connects the new device over MQTT with the token the page showed, has it manage
//! itself (the device side of the management protocol written by hand, as iot_dm.rs
//! does), presses Reboot on its page and sees the request complete once the device has
//! restarted, sees its last event, opens the rules page, and deletes a device. Each page
//! is written as a screenshot to target/console-screenshots/.
#![allow(clippy::unwrap_used)]
mod common;
use common::browser::{chromium_installed, Browser};
use common::next_json as next;
use common::page::{screenshots, UNLABELLED};
use common::*;
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::time::Instant;
use tern_proto::{ByteStr, ProtocolVersion, QoS, ReasonCode};

const ORG: &str = "cons01";

/// Every control of the page has a label, and at phone width (390 px) nothing is wider
/// than the screen; a screenshot of it so.
fn readable(browser: &Browser, name: &str) {
    assert_eq!(browser.eval(UNLABELLED, json!([])), json!([]), "{name}");
    browser.command("POST", "window/rect", Some(json!({"width": 390, "height": 844})));
    let overflow = browser.eval(
        "return document.documentElement.scrollWidth - document.documentElement.clientWidth;",
        json!([]),
    );
    assert!(
        overflow.as_f64().unwrap() <= 0.0,
        "{name} is wider than the screen by {overflow}px"
    );
    browser.screenshot(&screenshots(), &format!("{name}-phone"));
    browser.command("POST", "window/rect", Some(json!({"width": 1000, "height": 760})));
}

/// Whether the element `arguments[0]` has text containing `arguments[1]`.
const HAS_TEXT: &str =
    "document.querySelector(arguments[0]) && document.querySelector(arguments[0]).textContent.includes(arguments[1])";

struct Platform {
    broker: Broker,
    mqtt: SocketAddr,
    http: SocketAddr,
    _data: tempfile::TempDir,
    key: String,
}

fn start_platform() -> Platform {
    let data = tempfile::tempdir().unwrap();
    let key = admin_key(data.path()).pair();
    let config = format!(
        "persistence true\npersistence_location {}\nplatform_domain iot.test\nauth_failure_delay 0\n\
         listener 0 127.0.0.1\nplatform true\nlistener 0 127.0.0.1\nprotocol http\n",
        data.path().display()
    );
    let broker = Broker::with_config("tern.conf", &config);
    let addrs = broker.listening_addrs();
    Platform {
        mqtt: addrs[0],
        http: addrs[1],
        broker,
        _data: data,
        key,
    }
}

/// A device connection with its token (the registry may take a moment to see it).
fn device(p: &Platform, id: &str, token: &str) -> Client {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let mut client = Client::open(p.mqtt, ProtocolVersion::V3_1_1);
        let mut connect = connect_packet(ProtocolVersion::V3_1_1, &format!("d:{ORG}:sensor:{id}"), true, 60);
        connect.username = Some(ByteStr::from("use-token-auth"));
        connect.password = Some(bytes::Bytes::copy_from_slice(token.as_bytes()));
        let ack = client.connect(&connect);
        if ack.reason_code == ReasonCode::SUCCESS {
            assert_eq!(client.subscribe("iotdm-1/#", QoS::AtLeastOnce), [ReasonCode(1)]);
            return client;
        }
        assert!(Instant::now() < deadline, "the device was refused: {ack:?}");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// Publishes `payload` on `iotdevice-1/<tail>` at QoS 1.
fn send(c: &mut Client, tail: &str, payload: &Value, id: u16) {
    let code = c.publish(
        &format!("iotdevice-1/{tail}"),
        payload.to_string().as_bytes(),
        QoS::AtLeastOnce,
        false,
        id,
    );
    assert_eq!(code, ReasonCode::SUCCESS);
}

fn manage(c: &mut Client, req: &str, id: u16) {
    let body =
        json!({"d": {"lifetime": 3600, "supports": {"deviceActions": true, "firmwareActions": true}}, "reqId": req});
    send(c, "mgmt/manage", &body, id);
    let (topic, answer) = next(c);
    assert_eq!(
        (topic.as_str(), answer),
        ("iotdm-1/response", json!({"rc": 200, "reqId": req}))
    );
}

#[test]
fn the_console_runs_the_platform_devices_and_a_reboot() {
    if !peer_available("chromium and chromium-driver (apt)", chromium_installed()) {
        return;
    }
    let p = start_platform();
    let browser = Browser::start(&[]);
    // Screenshots 1000 px wide (docs/console/ has copies).
    browser.command("POST", "window/rect", Some(json!({"width": 1000, "height": 760})));
    browser.open(&format!("http://{}/", p.http));
    browser.type_into("#key", &format!("{}\u{E007}", p.key));
    browser.wait(
        "the platform's menu entry",
        "!document.querySelector('#nav-platform').hidden",
        json!([]),
    );
    browser.click("#nav-platform");

    // An organization (its admin key kept for the org's pages), a type, a device.
    browser.type_into("#org-id", ORG);
    browser.click("#org-plain");
    browser.type_into("#org-id", "\u{E007}");
    browser.wait("the new organization", HAS_TEXT, json!(["#orgs", ORG]));
    browser.screenshot(&screenshots(), "platform-orgs");
    browser.click(&format!("a[href='#/platform/{ORG}']"));
    browser.find("#org-key-current");
    browser.type_into("#type-id", "sensor\u{E007}");
    browser.wait("the type", HAS_TEXT, json!(["#types", "sensor"]));
    browser.wait(
        "the type to be offered",
        "document.querySelector('#device-type').options.length",
        json!([]),
    );
    browser.type_into("#device-id", "dev1\u{E007}");
    let token = browser.wait(
        "the token, once",
        "document.querySelector('#device-token-value') && document.querySelector('#device-token-value').textContent",
        json!([]),
    );
    let token = token.as_str().unwrap().to_string();
    // The same id again: the API's refusal next to the field.
    browser.type_into("#device-id", "dev1\u{E007}");
    let error = browser.wait(
        "the duplicate's error",
        "document.querySelector('#device-id-error').textContent",
        json!([]),
    );
    assert!(error.as_str().unwrap().contains("dev1"), "{error}");
    browser.screenshot(&screenshots(), "platform-org-duplicate");
    // Bulk add from CSV, one line of which is the device that exists.
    browser.type_into("#bulk-csv", "typeId,deviceId\nsensor,dev2\nsensor,dev3\nsensor,dev1");
    browser.click("#bulk button[type=submit]");
    browser.wait("the bulk results", HAS_TEXT, json!(["#bulk-result", "sensor/dev3"]));
    browser.wait("the devices listed", HAS_TEXT, json!(["#devices", "dev3"]));
    let rows = browser.eval(
        "return document.querySelectorAll('#bulk-table-body .secret').length;",
        json!([]),
    );
    assert_eq!(rows, json!(2), "two tokens shown, one refusal");
    browser.screenshot(&screenshots(), "platform-org");
    readable(&browser, "platform-org");

    // The device connects with the token the page showed, and manages itself.
    let mut d = device(&p, "dev1", &token);
    manage(&mut d, "m1", 1);
    enable_lec(&browser);
    send_event(&mut d);
    reboot(&browser, &p, &mut d, &token);
    rules_and_delete(&browser);

    let problems: Vec<String> = browser
        .log()
        .into_iter()
        .filter(|l| l.contains("Content Security Policy") || l.contains("Uncaught"))
        .collect();
    assert!(problems.is_empty(), "{problems:?}");
    p.broker.stop();
}

/// Turns the organization's last event cache and historian on and adds a rule, with the
/// key the console holds for it.
fn enable_lec(browser: &Browser) {
    let rule = json!({
        "id": "hot", "name": "Too hot",
        "source": {"typeId": "sensor", "eventId": "status"},
        "condition": "d.temp > 20",
        "actions": [{"type": "alert", "severity": "critical", "message": "${deviceId} is at ${d.temp}"}]
    });
    for (method, path, body, status) in [
        (
            "PUT",
            "/api/v0002/config/lec",
            json!({"enabled": true, "ttlDays": 1}),
            200,
        ),
        (
            "PUT",
            "/api/v0002/config/historian",
            json!({"enabled": true, "retentionDays": 1}),
            200,
        ),
        ("POST", "/api/v0002/rules", rule, 201),
    ] {
        let answer = browser.execute_async(
            "const done = arguments[arguments.length - 1]; \
             const key = JSON.parse(sessionStorage.getItem('tern.org.' + arguments[0])); \
             fetch(arguments[2], {method: arguments[1], headers: {Authorization: key.header, 'Content-Type': 'application/json'}, \
               body: JSON.stringify(arguments[3])}).then((r) => done(r.status), (e) => done(String(e)));",
            json!([ORG, method, path, body]),
        );
        assert_eq!(answer, json!(status), "{path}");
    }
}

fn send_event(d: &mut Client) {
    let code = d.publish(
        "iot-2/evt/status/fmt/json",
        br#"{"d":{"temp":21.5}}"#,
        QoS::AtLeastOnce,
        false,
        9,
    );
    assert_eq!(code, ReasonCode::SUCCESS);
}

/// Reboot from the device's page: the device gets the request, answers, restarts and
/// manages itself again; the page says the request is complete.
fn reboot(browser: &Browser, p: &Platform, d: &mut Client, token: &str) {
    browser.open(&format!("http://{}/#/platform/{ORG}/device/sensor/dev1", p.http));
    browser.wait("the management state", HAS_TEXT, json!(["#mgmt-state", "lifetime"]));
    browser.wait("the last event", HAS_TEXT, json!(["#device-lec", "21.5"]));
    // The registration's description, edited and read back.
    browser.type_into("#edit-description", "kitchen sensor");
    browser.click("#device-edit button[type=submit]");
    browser.wait("saved", HAS_TEXT, json!(["#device-edit-result", "Saved"]));
    let saved = browser.execute_async(
        "const done = arguments[arguments.length - 1]; \
         const key = JSON.parse(sessionStorage.getItem('tern.org.' + arguments[0])); \
         fetch('/api/v0002/device/types/sensor/devices/dev1', {headers: {Authorization: key.header}}) \
           .then((r) => r.json()).then((d) => done(d.deviceInfo.description), (e) => done(String(e)));",
        json!([ORG]),
    );
    assert_eq!(saved, json!("kitchen sensor"));
    browser.click("#mgmt-reboot");
    browser.click("#mgmt-reboot-confirm");
    let (topic, request) = next(d);
    assert_eq!(topic, "iotdm-1/mgmt/initiate/device/reboot");
    browser.wait(
        "the request in progress",
        HAS_TEXT,
        json!(["#mgmt-progress", "in progress"]),
    );
    let req = request["reqId"].as_str().unwrap().to_string();
    send(d, "response", &json!({"rc": 202, "reqId": req}), 2);
    let old = std::mem::replace(d, device(p, "dev1", token));
    drop(old);
    manage(d, "m2", 3);
    browser.wait("the request complete", HAS_TEXT, json!(["#mgmt-progress", "complete"]));
    // The history chart of the event's field: the point of the event sent (the
    // historian stores it within a moment: asked again until it is there).
    let deadline = Instant::now() + PATIENCE;
    loop {
        browser.type_into("#history-field", "\u{E007}");
        let points = browser.eval(
            "return Number(document.querySelector('#plot-history').dataset.points || 0);",
            json!([]),
        );
        if points.as_f64().is_some_and(|n| n >= 1.0) {
            break;
        }
        let error = browser.text("#history-form-error");
        assert!(Instant::now() < deadline, "no point in the chart; error: {error:?}");
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let max = browser.eval(
        "return Number(document.querySelector('#plot-history').dataset.max);",
        json!([]),
    );
    assert_eq!(max, json!(21.5));
    browser.screenshot(&screenshots(), "platform-device");
    readable(browser, "platform-device");
}

/// The rules page opens with the org's key; a device is deleted from the org's page.
fn rules_and_delete(browser: &Browser) {
    browser.click(&format!("a[href='#/platform/{ORG}']"));
    browser.click(&format!("a[href='#/platform/{ORG}/rules']"));
    browser.wait("the rule", HAS_TEXT, json!(["#rules", "Too hot"]));
    // The event sent fired it once: its counters and its alert.
    let fired = browser.wait(
        "the rule's counters",
        "(() => { const c = document.querySelectorAll('#rules-table tbody tr td'); return c.length >= 6 && c[4].textContent === '1' && c[3].textContent; })()",
        json!([]),
    );
    assert_eq!(fired, json!("1"));
    browser.wait("the alert", HAS_TEXT, json!(["#alerts", "dev1 is at 21.5"]));
    browser.screenshot(&screenshots(), "platform-rules");
    readable(browser, "platform-rules");
    browser.click(&format!("a[href='#/platform/{ORG}']"));
    browser.wait("the devices", HAS_TEXT, json!(["#devices", "dev3"]));
    let index = browser.eval(
        "return [...document.querySelectorAll('#devices-table-body tr')].findIndex((r) => r.textContent.includes('dev3'));",
        json!([]),
    );
    let index = index.as_i64().unwrap();
    browser.click(&format!("#device-delete-{index}"));
    browser.click(&format!("#device-delete-{index}-confirm"));
    browser.wait(
        "dev3 gone",
        "!document.querySelector('#devices').textContent.includes('dev3')",
        json!([]),
    );
}
