//! The IoT platform's rules over MQTT beyond the topic space (issue 15), against the real
//! binary: scalable applications sharing one client id, quotas (a device's message rate,
//! an organization's connections), gateways (the devices behind them, registering unknown
//! ones, notify messages) and the quickstart organization.
#![allow(clippy::unwrap_used, clippy::expect_used)]
mod common;
#[path = "iot_mqtt/platform.rs"]
mod platform;
use common::*;
use platform::*;
use serde_json::Value;
use tern_proto::*;

/// Gateway type `edge`, gateway `gw1` and devices `test/<id>` of `behind` behind it,
/// registered with `tern iot`; the gateway connected over 5.0 as soon as the broker has
/// seen them (one organization file, so all of them at once).
fn gateway(p: &Platform, behind: &[&str]) -> Client {
    iot(&p.data, &["type", "create", "za6xa7", "edge", "--class", "gateway"]);
    let gw = iot(&p.data, &["device", "create", "za6xa7", "edge", "gw1"]);
    for id in behind {
        iot(
            &p.data,
            &["device", "create", "za6xa7", "test", id, "--gateway", "edge:gw1"],
        );
    }
    let token = text(&gw, "authToken");
    let mut gateway = None;
    wait_until("the gateway registered", || {
        let (client, ack) = p.try_connect(ProtocolVersion::V5, "g:za6xa7:edge:gw1", "use-token-auth", &token);
        gateway = Some(client);
        ack.reason_code.is_success()
    });
    gateway.unwrap()
}

#[test]
fn a_scalable_applications_instances_share_its_messages() {
    let p = Platform::start();
    // Two connections with the SDK's shared client id (and its default, a persistent
    // session: the platform makes it clean), and one with an instance id.
    let mut instances: Vec<Client> = ["A:za6xa7:svc", "A:za6xa7:svc", "A:za6xa7:svc:one"]
        .iter()
        .map(|id| {
            let mut c = Client::open(p.addr(0), ProtocolVersion::V3_1_1);
            let mut connect = connect_packet(ProtocolVersion::V3_1_1, id, false, 60);
            connect.username = Some(ByteStr::from(p.key.as_str()));
            connect.password = Some(bytes::Bytes::copy_from_slice(p.token.as_bytes()));
            let ack = c.connect(&connect);
            assert!(ack.reason_code.is_success() && !ack.session_present);
            assert_eq!(
                c.subscribe("iot-2/type/+/id/+/evt/+/fmt/+", QoS::AtMostOnce),
                [ReasonCode(0)]
            );
            c
        })
        .collect();
    let mut device = p.device(ProtocolVersion::V5, "4321");
    for i in 0..6u16 {
        device.publish(
            "iot-2/evt/tick/fmt/txt",
            i.to_string().as_bytes(),
            QoS::AtLeastOnce,
            false,
            i + 1,
        );
    }
    let mut got = Vec::new();
    for instance in &mut instances {
        for packet in instance.ping_collect() {
            if let Packet::Publish(publish) = packet {
                assert_eq!(publish.topic, "iot-2/type/test/id/4321/evt/tick/fmt/txt");
                got.push(String::from_utf8(publish.payload.to_vec()).unwrap());
            }
        }
    }
    got.sort();
    assert_eq!(
        got,
        ["0", "1", "2", "3", "4", "5"],
        "each message to exactly one instance"
    );
    // All three are still connected: none took another over.
    for instance in &mut instances {
        instance.ping();
    }
    // Status messages name the client id the application sent.
    let mut monitor = p.app(ProtocolVersion::V5, "monitor");
    monitor.subscribe("iot-2/app/svc/mon", QoS::AtMostOnce);
    let body = status(&monitor.recv_publish());
    assert_eq!(body["Action"], "Connect");
    assert!(body["ClientID"].as_str().unwrap().starts_with("A:za6xa7:svc"), "{body}");
    assert!(!body["ClientID"].as_str().unwrap().contains('#'), "{body}");
}

#[test]
fn a_device_over_its_message_rate_is_refused() {
    let p = Platform::start();
    iot(&p.data, &["org", "set", "za6xa7", "--device-messages-per-second", "1"]);
    let topic = "iot-2/evt/tick/fmt/txt";
    // In force for connections made once the broker has read the change (within a
    // second): the first message of a second passes, the next is refused (5.0: 0x97).
    wait_until("a rate of 1 message a second", || {
        let mut device = p.device(ProtocolVersion::V5, "4321");
        let first = device.publish(topic, b"1", QoS::AtLeastOnce, false, 1);
        let second = device.publish(topic, b"2", QoS::AtLeastOnce, false, 2);
        first.is_success() && second == ReasonCode::QUOTA_EXCEEDED
    });
}

#[test]
fn an_organizations_connections_are_capped_by_its_quota() {
    let p = Platform::start();
    let mut first = p.app(ProtocolVersion::V5, "one");
    let second = p.app(ProtocolVersion::V5, "two");
    iot(&p.data, &["org", "set", "za6xa7", "--max-connections", "2"]);
    // Once the broker has read the change, a third connection is refused (5.0: 0x97,
    // 3.1.1: 3), and a slot freed by a disconnect can be taken again.
    let probe = |version| p.try_connect(version, "a:za6xa7:three", &p.key, &p.token).1;
    wait_until("a cap of 2 connections", || {
        probe(ProtocolVersion::V5).reason_code == ReasonCode::QUOTA_EXCEEDED
    });
    assert_eq!(probe(ProtocolVersion::V3_1_1).reason_code.to_connect_return_code(), 3);
    first.ping();
    second.disconnect();
    wait_until("the freed slot taken", || {
        probe(ProtocolVersion::V5).reason_code.is_success()
    });
}

#[test]
fn a_gateway_acts_for_itself_and_the_devices_behind_it_only() {
    let p = Platform::start();
    let mut gateway = gateway(&p, &["behind"]);
    // Commands for itself and every device: the broker delivers only its own and those
    // of the devices behind it.
    let all = "iot-2/type/+/id/+/cmd/+/fmt/+";
    assert_eq!(gateway.subscribe(all, QoS::AtMostOnce), [ReasonCode(0)]);
    let refused = "iot-2/type/test/id/4321/cmd/+/fmt/+";
    assert_eq!(
        gateway.subscribe(refused, QoS::AtMostOnce),
        [ReasonCode::NOT_AUTHORIZED]
    );
    let mut app = p.app(ProtocolVersion::V5, "commander");
    app.subscribe("iot-2/type/+/id/+/evt/+/fmt/+", QoS::AtMostOnce);
    for device in ["test/id/4321", "test/id/behind", "edge/id/gw1"] {
        let topic = format!("iot-2/type/{device}/cmd/go/fmt/txt");
        app.publish(&topic, device.as_bytes(), QoS::AtLeastOnce, false, 1);
    }
    let mut got = Vec::new();
    for packet in gateway.ping_collect() {
        if let Packet::Publish(publish) = packet {
            got.push(publish.topic.to_string());
        }
    }
    assert_eq!(
        got,
        [
            "iot-2/type/test/id/behind/cmd/go/fmt/txt",
            "iot-2/type/edge/id/gw1/cmd/go/fmt/txt"
        ]
    );
    // Events: for a device behind it, yes; for another device, no.
    let code = gateway.publish(
        "iot-2/type/test/id/behind/evt/t/fmt/txt",
        b"ok",
        QoS::AtLeastOnce,
        false,
        2,
    );
    assert!(code.is_success());
    assert_eq!(app.recv_publish().topic, "iot-2/type/test/id/behind/evt/t/fmt/txt");
    let code = gateway.publish(
        "iot-2/type/test/id/4321/evt/t/fmt/txt",
        b"no",
        QoS::AtLeastOnce,
        false,
        3,
    );
    assert_eq!(code, ReasonCode::NOT_AUTHORIZED);
    app.expect_quiet();
}

#[test]
fn a_gateway_registers_unknown_devices_behind_it_and_is_told_what_it_was_refused() {
    let p = Platform::start();
    let mut gateway = gateway(&p, &[]);
    let notify = "iot-2/type/edge/id/gw1/notify";
    assert_eq!(gateway.subscribe(notify, QoS::AtMostOnce), [ReasonCode(0)]);
    assert_eq!(
        gateway.subscribe("iot-2/type/edge/id/other/notify", QoS::AtMostOnce),
        [ReasonCode::NOT_AUTHORIZED]
    );
    let mut app = p.app(ProtocolVersion::V5, "watcher");
    app.subscribe("iot-2/type/+/id/+/evt/+/fmt/+", QoS::AtMostOnce);
    // A registered device that is not behind it: refused, and told so.
    let topic = "iot-2/type/test/id/4321/evt/t/fmt/txt";
    assert_eq!(
        gateway.publish(topic, b"x", QoS::AtLeastOnce, false, 1),
        ReasonCode::NOT_AUTHORIZED
    );
    let told = gateway.recv_publish();
    assert_eq!(told.topic, notify);
    let body: Value = serde_json::from_slice(&told.payload).unwrap();
    assert_eq!(
        (body["Request"].as_str(), body["RC"].as_u64()),
        (Some("publish"), Some(403))
    );
    assert_eq!(
        (body["Type"].as_str(), body["Id"].as_str()),
        (Some("test"), Some("4321"))
    );
    assert_eq!(body["Client"], "g:za6xa7:edge:gw1");
    // An unknown device of a known type: registered behind the gateway; its first
    // messages are refused while that happens.
    let topic = "iot-2/type/test/id/newdev/evt/t/fmt/txt";
    let (mut packet_id, mut rcs) = (10, Vec::new());
    wait_until("the new device registered", || {
        packet_id += 1;
        gateway.send(&publish_packet(topic, b"hello", QoS::AtLeastOnce, false, packet_id));
        let mut accepted = false;
        for packet in gateway.ping_collect() {
            match packet {
                Packet::PublishAck(ack) => accepted = ack.reason_code.is_success(),
                Packet::Publish(publish) => {
                    let body: Value = serde_json::from_slice(&publish.payload).unwrap();
                    rcs.push(body["RC"].as_u64().unwrap());
                }
                _ => {}
            }
        }
        accepted
    });
    assert!(!rcs.is_empty() && rcs.iter().all(|rc| *rc == 202), "{rcs:?}");
    assert_eq!(app.recv_publish().topic, topic);
    let device = iot(&p.data, &["device", "get", "za6xa7", "test", "newdev"]);
    assert_eq!(device["gateway"]["deviceId"], "gw1", "{device}");
    // An unknown type: not registered.
    let unknown = "iot-2/type/nosuchtype/id/x/evt/t/fmt/txt";
    assert_eq!(
        gateway.publish(unknown, b"x", QoS::AtLeastOnce, false, 99),
        ReasonCode::NOT_AUTHORIZED
    );
    let body: Value = serde_json::from_slice(&gateway.recv_publish().payload).unwrap();
    assert_eq!(body["RC"], 404);
}

#[test]
fn the_quickstart_organization_takes_the_seeds_open_device_when_enabled() {
    if !mosquitto_clients() {
        return;
    }
    let p = Platform::start_with("platform_quickstart true\n");
    let port = p.port(0);
    let viewer = Background::mosquitto_sub(&[
        "-h",
        "127.0.0.1",
        "-p",
        &port,
        "-i",
        "a:quickstart:viewer",
        "-t",
        "iot-2/type/mosquitto/id/myDeviceId/evt/+/fmt/+",
        "-v",
    ]);
    // The platform documentation's quickstart example: no credentials.
    mosquitto_pub(&[
        "-h",
        "127.0.0.1",
        "-p",
        &port,
        "-i",
        "d:quickstart:mosquitto:myDeviceId",
        "-t",
        "iot-2/evt/helloworld/fmt/json",
        "-m",
        r#"{"d":{"hello":"world"}}"#,
    ]);
    viewer.wait_stdout(r#"iot-2/type/mosquitto/id/myDeviceId/evt/helloworld/fmt/json {"d":{"hello":"world"}}"#);
    // No commands in quickstart.
    let mut device = Client::open(p.addr(0), ProtocolVersion::V5);
    let connect = connect_packet(ProtocolVersion::V5, "d:quickstart:mosquitto:other", true, 60);
    assert!(device.connect(&connect).reason_code.is_success());
    assert_eq!(
        device.subscribe("iot-2/cmd/+/fmt/+", QoS::AtMostOnce),
        [ReasonCode::NOT_AUTHORIZED]
    );
    // Without the directive, quickstart is refused (3.1.1: 5).
    let closed = Platform::start();
    let mut device = Client::open(closed.addr(0), ProtocolVersion::V3_1_1);
    let connect = connect_packet(ProtocolVersion::V3_1_1, "d:quickstart:mosquitto:myDeviceId", true, 60);
    assert_eq!(device.connect(&connect).reason_code.to_connect_return_code(), 5);
}
