//! The IoT platform over MQTT (issue 15), against the real binary: organizations made with
//! `tern iot`, a broker with listeners in platform mode (`platform true`), the seed's exact
//! mosquitto_sub / mosquitto_pub commands, device events reaching applications under the
//! full topic, application commands reaching exactly one device under the short one,
//! isolation (devices, organizations, read-only keys, the plain listener beside), the
//! CONNACK codes the platform's SDKs expect, status messages, retain and payload rules.
#![allow(clippy::unwrap_used, clippy::expect_used)]
mod common;
#[path = "iot_mqtt/platform.rs"]
mod platform;
use common::*;
use platform::*;
use serde_json::Value;
use tern_proto::*;

#[test]
fn the_seeds_mosquitto_commands_carry_events_from_devices_and_applications() {
    if !mosquitto_clients() {
        return;
    }
    let p = Platform::start();
    let port = p.port(0);
    // The seed's application subscriber, over plain TCP (the organization allows it).
    let sub = Background::mosquitto_sub(&[
        "-t",
        "iot-2/type/test/id/4321/evt/status/fmt/+",
        "-h",
        "127.0.0.1",
        "-p",
        &port,
        "-u",
        &p.key,
        "-P",
        &p.token,
        "-i",
        "a:za6xa7:test2",
        "-v",
    ]);
    // The seed's device publisher.
    mosquitto_pub(&[
        "-h",
        "127.0.0.1",
        "-p",
        &port,
        "-i",
        "d:za6xa7:test:4321",
        "-u",
        "use-token-auth",
        "-P",
        &p.device_token,
        "-t",
        "iot-2/evt/status/fmt/json",
        "-m",
        r#"{"d":{"temp":21}}"#,
    ]);
    sub.wait_stdout(r#"iot-2/type/test/id/4321/evt/status/fmt/json {"d":{"temp":21}}"#);
    // The seed's application publisher: an event on the device's behalf.
    mosquitto_pub(&[
        "-t",
        "iot-2/type/test/id/4321/evt/status/fmt/txt",
        "-h",
        "127.0.0.1",
        "-p",
        &port,
        "-u",
        &p.key,
        "-P",
        &p.token,
        "-i",
        "a:za6xa7:test1",
        "-m",
        "from test1",
    ]);
    sub.wait_stdout("iot-2/type/test/id/4321/evt/status/fmt/txt from test1");
}

#[test]
fn the_seeds_commands_work_over_tls_with_the_organizations_ca() {
    if !mosquitto_clients() {
        return;
    }
    let p = Platform::start();
    let port = p.port(1);
    let ca = p.ca.to_str().unwrap();
    let sub = Background::mosquitto_sub(&[
        "-t",
        "iot-2/type/test/id/4321/evt/status/fmt/+",
        "-h",
        "localhost",
        "-p",
        &port,
        "--cafile",
        ca,
        "-u",
        &p.orgb_key,
        "-P",
        &p.orgb_token,
        "-i",
        "a:orgb:test2",
        "-v",
    ]);
    mosquitto_pub(&[
        "-h",
        "localhost",
        "-p",
        &port,
        "--cafile",
        ca,
        "-i",
        "d:orgb:test:4321",
        "-u",
        "use-token-auth",
        "-P",
        &p.orgb_device_token,
        "-t",
        "iot-2/evt/status/fmt/json",
        "-m",
        "over tls",
    ]);
    sub.wait_stdout("iot-2/type/test/id/4321/evt/status/fmt/json over tls");
}

#[test]
fn an_application_command_reaches_exactly_its_device_under_the_short_name() {
    let p = Platform::start();
    for version in [ProtocolVersion::V3_1_1, ProtocolVersion::V5] {
        let mut target = p.device(version, "4321");
        let mut bystander = p.device(version, "4322");
        assert_eq!(target.subscribe("iot-2/cmd/+/fmt/+", QoS::AtLeastOnce), [ReasonCode(1)]);
        assert_eq!(
            bystander.subscribe("iot-2/cmd/+/fmt/+", QoS::AtLeastOnce),
            [ReasonCode(1)]
        );
        let mut app = p.app(version, "commander");
        let code = app.publish(
            "iot-2/type/test/id/4321/cmd/reboot/fmt/json",
            b"{\"delay\":0}",
            QoS::AtLeastOnce,
            false,
            1,
        );
        assert!(code.is_success(), "{code:?}");
        let got = target.recv_publish();
        assert_eq!(got.topic, "iot-2/cmd/reboot/fmt/json");
        assert_eq!(&got.payload[..], b"{\"delay\":0}");
        bystander.expect_quiet();
        target.expect_quiet();
    }
}

#[test]
fn a_device_event_reaches_applications_under_the_full_name_and_never_another_device() {
    let p = Platform::start();
    let mut app = p.app(ProtocolVersion::V5, "watcher");
    assert_eq!(
        app.subscribe("iot-2/type/+/id/+/evt/+/fmt/+", QoS::AtMostOnce),
        [ReasonCode(0)]
    );
    let mut other = p.device(ProtocolVersion::V5, "4322");
    other.subscribe("iot-2/cmd/+/fmt/+", QoS::AtMostOnce);
    let mut device = p.device(ProtocolVersion::V5, "4321");
    assert!(device
        .publish("iot-2/evt/temp/fmt/json", b"21", QoS::AtLeastOnce, false, 1)
        .is_success());
    let got = app.recv_publish();
    assert_eq!(got.topic, "iot-2/type/test/id/4321/evt/temp/fmt/json");
    other.expect_quiet();
}

#[test]
fn a_device_cannot_read_events_or_another_devices_commands() {
    let p = Platform::start();
    for (version, refused) in [
        (ProtocolVersion::V3_1_1, ReasonCode(0x80)),
        (ProtocolVersion::V5, ReasonCode(0x87)),
    ] {
        let mut device = p.device(version, "4321");
        for filter in [
            "iot-2/evt/+/fmt/+",
            "iot-2/evt/status/fmt/json",
            "iot-2/type/test/id/4322/cmd/+/fmt/+",
            "iot-2/type/+/id/+/evt/+/fmt/+",
            "#",
            "$iot/za6xa7/#",
        ] {
            assert_eq!(device.subscribe(filter, QoS::AtMostOnce), [refused], "{filter}");
        }
        let mut app = p.app(version, "spy-check");
        app.subscribe("iot-2/type/+/id/+/cmd/+/fmt/+", QoS::AtMostOnce);
        app.subscribe("iot-2/type/+/id/+/evt/+/fmt/+", QoS::AtMostOnce);
        // Posing as another device, or sending commands: refused (5.0: 0x87), never routed.
        let expected = if version.is_v5() {
            ReasonCode::NOT_AUTHORIZED
        } else {
            ReasonCode::SUCCESS
        };
        let code = device.publish(
            "iot-2/type/test/id/4322/evt/x/fmt/json",
            b"fake",
            QoS::AtLeastOnce,
            false,
            1,
        );
        assert_eq!(code, expected);
        let code = device.publish("iot-2/cmd/reboot/fmt/json", b"fake", QoS::AtLeastOnce, false, 2);
        assert_eq!(code, expected);
        app.expect_quiet();
    }
}

#[test]
fn organizations_and_the_plain_listener_see_nothing_of_each_other() {
    let p = Platform::start();
    let mut plain = Client::open(p.addr(2), ProtocolVersion::V5);
    let ack = plain.connect(&connect_packet(ProtocolVersion::V5, "plain-watcher", true, 60));
    assert!(ack.reason_code.is_success());
    assert_eq!(plain.subscribe("#", QoS::AtMostOnce), [ReasonCode(0)]);
    assert_eq!(plain.subscribe("iot-2/#", QoS::AtMostOnce), [ReasonCode(0)]);
    let mut device = p.device(ProtocolVersion::V5, "4321");
    device.publish("iot-2/evt/temp/fmt/json", b"21", QoS::AtLeastOnce, false, 1);
    plain.expect_quiet();
    // The broker's names of platform topics are closed to plain clients: no reading,
    // no forged commands or events, no will there.
    for filter in ["$iot/#", "$iot/za6xa7/iot-2/type/+/id/+/evt/+/fmt/+", "$share/g/$iot/#"] {
        assert_eq!(
            plain.subscribe(filter, QoS::AtMostOnce),
            [ReasonCode::NOT_AUTHORIZED],
            "{filter}"
        );
    }
    device.subscribe("iot-2/cmd/+/fmt/+", QoS::AtMostOnce);
    let mut app = p.app(ProtocolVersion::V5, "watcher");
    app.subscribe("iot-2/type/+/id/+/evt/+/fmt/+", QoS::AtMostOnce);
    let mut forger = Client::open(p.addr(2), ProtocolVersion::V5);
    let hello = connect_packet(ProtocolVersion::V5, "plain-forger", true, 60);
    assert!(forger.connect(&hello).reason_code.is_success());
    let topic = "iot-2/type/test/id/4321/evt/temp/fmt/json";
    forger.publish(topic, b"forged", QoS::AtLeastOnce, false, 2);
    let forged = "$iot/za6xa7/iot-2/type/test/id/4321/cmd/reboot/fmt/json";
    let code = forger.publish(forged, b"forged", QoS::AtLeastOnce, false, 3);
    assert_eq!(code, ReasonCode::NOT_AUTHORIZED);
    // The plain subscriber of iot-2/# got the plain client's message, nothing else.
    assert_eq!(&plain.recv_publish().payload[..], b"forged");
    plain.expect_quiet();
    let mut willing = Client::open(p.addr(2), ProtocolVersion::V3_1_1);
    let mut connect = connect_packet(ProtocolVersion::V3_1_1, "plain-will", true, 60);
    connect.will = Some(Will {
        topic: ByteStr::from(forged),
        payload: bytes::Bytes::from_static(b"forged will"),
        qos: QoS::AtMostOnce,
        retain: false,
        properties: Properties::default(),
    });
    assert!(willing.connect(&connect).reason_code.is_success());
    willing.hang_up();
    app.expect_quiet();
    device.expect_quiet();
}

#[test]
fn an_application_of_one_organization_sees_nothing_of_another() {
    let p = Platform::start();
    // Keys and tokens do not cross organizations.
    let (_, ack) = p.try_connect(ProtocolVersion::V5, "a:za6xa7:intruder", &p.orgb_key, &p.orgb_token);
    assert_eq!(ack.reason_code, ReasonCode::NOT_AUTHORIZED);
    let (_, ack) = p.try_connect(ProtocolVersion::V5, "a:orgb:app", &p.key, &p.token);
    assert_eq!(ack.reason_code, ReasonCode::NOT_AUTHORIZED);
    // orgb is TLS only: refused on plain TCP, until `tern iot org set` allows it, which
    // the running broker sees within a second.
    let orgb_device = |p: &Platform| {
        p.try_connect(
            ProtocolVersion::V3_1_1,
            "d:orgb:test:4321",
            "use-token-auth",
            &p.orgb_device_token,
        )
    };
    assert_eq!(orgb_device(&p).1.reason_code.to_connect_return_code(), 5);
    iot(&p.data, &["org", "set", "orgb", "--allow-plain", "true"]);
    wait_until("orgb allows plain TCP", || orgb_device(&p).1.reason_code.is_success());
    // The same type and device id in both organizations: za6xa7's device token is no
    // token for orgb's device.
    let (_, ack) = p.try_connect(
        ProtocolVersion::V5,
        "d:orgb:test:4321",
        "use-token-auth",
        &p.device_token,
    );
    assert_eq!(ack.reason_code, ReasonCode::BAD_USER_NAME_OR_PASSWORD);
    let mut orgb_app = p.connect(ProtocolVersion::V5, "a:orgb:watcher", &p.orgb_key, &p.orgb_token);
    orgb_app.subscribe("iot-2/type/+/id/+/evt/+/fmt/+", QoS::AtMostOnce);
    orgb_app.subscribe("iot-2/type/+/id/+/cmd/+/fmt/+", QoS::AtMostOnce);
    let mut device = p.device(ProtocolVersion::V5, "4321");
    device.subscribe("iot-2/cmd/+/fmt/+", QoS::AtMostOnce);
    device.publish("iot-2/evt/temp/fmt/json", b"za6xa7", QoS::AtLeastOnce, false, 1);
    let mut app = p.app(ProtocolVersion::V5, "commander");
    app.publish(
        "iot-2/type/test/id/4321/cmd/reboot/fmt/json",
        b"za6xa7",
        QoS::AtLeastOnce,
        false,
        1,
    );
    assert_eq!(&device.recv_publish().payload[..], b"za6xa7");
    orgb_app.expect_quiet();
    // orgb's own device reaches it.
    let (mut orgb_device, _) = orgb_device(&p);
    orgb_device.publish("iot-2/evt/temp/fmt/json", b"orgb", QoS::AtLeastOnce, false, 1);
    let got = orgb_app.recv_publish();
    assert_eq!(
        (got.topic.as_str(), &got.payload[..]),
        ("iot-2/type/test/id/4321/evt/temp/fmt/json", &b"orgb"[..])
    );
    device.expect_quiet();
}

#[test]
fn a_read_only_key_cannot_publish_commands() {
    let p = Platform::start();
    let mut device = p.device(ProtocolVersion::V5, "4321");
    device.subscribe("iot-2/cmd/+/fmt/+", QoS::AtMostOnce);
    let mut reader = p.connect(ProtocolVersion::V5, "a:za6xa7:viewer", &p.reader_key, &p.reader_token);
    let code = reader.publish(
        "iot-2/type/test/id/4321/cmd/reboot/fmt/json",
        b"x",
        QoS::AtLeastOnce,
        false,
        1,
    );
    assert_eq!(code, ReasonCode::NOT_AUTHORIZED);
    assert_eq!(
        reader.subscribe("iot-2/type/+/id/+/evt/+/fmt/+", QoS::AtMostOnce),
        [ReasonCode(0)]
    );
    device.expect_quiet();
}

#[test]
fn refused_connects_get_the_codes_the_sdks_expect() {
    let p = Platform::start();
    assert!(p
        .broker
        .log_contains("plain TCP; IoT platform: devices and applications of the registry"));
    let cases: [(&str, &str, &str, u8, u8); 7] = [
        ("not-a-platform-id", "use-token-auth", "x", 2, 0x85),
        ("d:za6xa7:test", "use-token-auth", "x", 2, 0x85),
        ("d:za6xa7:test:4321", "use-token-auth", "wrong-token", 4, 0x86),
        ("d:za6xa7:test:9999", "use-token-auth", &p.device_token, 4, 0x86),
        ("d:za6xa7:test:4321", "someone", &p.device_token, 4, 0x86),
        ("d:nosuchorg:test:4321", "use-token-auth", &p.device_token, 5, 0x87),
        ("a:za6xa7:app", &p.key, "wrong-token", 4, 0x86),
    ];
    for (client_id, user, password, v3, v5) in cases {
        let (_, ack) = p.try_connect(ProtocolVersion::V3_1_1, client_id, user, password);
        assert_eq!(ack.reason_code.to_connect_return_code(), v3, "{client_id} as {user}");
        let (mut c, ack) = p.try_connect(ProtocolVersion::V5, client_id, user, password);
        assert_eq!(ack.reason_code, ReasonCode(v5), "{client_id} as {user}");
        c.expect_closed();
    }
}

#[test]
fn status_messages_report_connects_disconnects_and_failed_connects() {
    let p = Platform::start();
    let mut app = p.app(ProtocolVersion::V3_1_1, "monitor");
    assert_eq!(app.subscribe("iot-2/type/+/id/+/mon", QoS::AtMostOnce), [ReasonCode(0)]);
    let mut device = p.device(ProtocolVersion::V3_1_1, "4321");
    let connect = app.recv_publish();
    assert_eq!(connect.topic, "iot-2/type/test/id/4321/mon");
    let body = status(&connect);
    assert_eq!(body["Action"], "Connect");
    assert_eq!(body["ClientID"], "d:za6xa7:test:4321");
    assert_eq!(body["ClientAddr"], "127.0.0.1");
    assert_eq!(body["Port"], p.addr(0).port());
    assert_eq!(body["Secure"], false);
    assert_eq!(body["Protocol"], "mqtt4");
    assert_eq!(body["User"], "use-token-auth");
    device.publish("iot-2/evt/a/fmt/txt", b"one", QoS::AtLeastOnce, false, 1);
    device.disconnect();
    let body = status(&app.recv_publish());
    assert_eq!(body["Action"], "Disconnect");
    assert_eq!(body["CloseCode"], 0);
    assert_eq!(body["ReadMsg"], 1);
    assert!(body["ReadBytes"].as_u64().unwrap() > 0);
    assert!(body["ConnectTime"].is_string() && body["Time"].is_string());
    // A wrong token: FailedConnect, not retained.
    let (_, ack) = p.try_connect(
        ProtocolVersion::V3_1_1,
        "d:za6xa7:test:4322",
        "use-token-auth",
        "wrong-token",
    );
    assert_eq!(ack.reason_code.to_connect_return_code(), 4);
    let failed = app.recv_publish();
    assert_eq!(failed.topic, "iot-2/type/test/id/4322/mon");
    assert_eq!(status(&failed)["Action"], "FailedConnect");
    // A late subscriber gets the retained Disconnect of 4321 and nothing for 4322.
    let mut late = p.app(ProtocolVersion::V5, "late");
    late.subscribe("iot-2/type/+/id/+/mon", QoS::AtMostOnce);
    let retained = late.recv_publish();
    assert!(retained.retain);
    assert_eq!(retained.topic, "iot-2/type/test/id/4321/mon");
    assert_eq!(status(&retained)["Action"], "Disconnect");
    late.expect_quiet();
}

#[test]
fn a_devices_retained_status_is_kept_across_a_restart() {
    let p = Platform::start();
    let mut app = p.app(ProtocolVersion::V3_1_1, "monitor");
    app.subscribe("iot-2/type/test/id/4321/mon", QoS::AtMostOnce);
    let device = p.device(ProtocolVersion::V5, "4321");
    assert_eq!(status(&app.recv_publish())["Action"], "Connect");
    device.disconnect();
    let before = status(&app.recv_publish());
    assert_eq!(before["Action"], "Disconnect");
    app.disconnect();
    let _online = p.device(ProtocolVersion::V3_1_1, "4322");

    let p = p.restart();
    let mut late = p.app(ProtocolVersion::V3_1_1, "late");
    late.subscribe("iot-2/type/+/id/+/mon", QoS::AtMostOnce);
    let mut kept = std::collections::BTreeMap::new();
    for _ in 0..2 {
        let publish = late.recv_publish();
        assert!(publish.retain);
        kept.insert(publish.topic.to_string(), status(&publish));
    }
    late.expect_quiet();
    // 4321's Disconnect as it was published, from the store.
    assert_eq!(kept["iot-2/type/test/id/4321/mon"], before);
    // 4322 was online when the broker stopped: its Disconnect says so.
    let stopped = &kept["iot-2/type/test/id/4322/mon"];
    assert_eq!(
        (&stopped["Action"], &stopped["CloseCode"]),
        (&"Disconnect".into(), &93.into())
    );
}

#[test]
fn a_reload_keeps_the_platform_domain_it_started_with_and_says_so() {
    let p = Platform::start();
    let path = p.config_path();
    let config = std::fs::read_to_string(&path).unwrap();
    std::fs::write(
        &path,
        config.replace("platform_domain iot.test", "platform_domain other.test"),
    )
    .unwrap();
    p.broker.signal(SIGHUP);
    wait_until("the reload's warning", || {
        p.broker
            .logged("platform_domain and platform_quickstart take effect at the next restart")
    });
    // Clients still connect as before.
    let mut device = p.device(ProtocolVersion::V3_1_1, "4321");
    device.ping();
}

#[test]
fn an_applications_status_is_cleared_when_it_leaves() {
    let p = Platform::start();
    let mut monitor = p.app(ProtocolVersion::V5, "monitor");
    monitor.subscribe("iot-2/app/worker/mon", QoS::AtMostOnce);
    let worker = p.app(ProtocolVersion::V5, "worker");
    let body = status(&monitor.recv_publish());
    assert_eq!(
        (body["Action"].as_str(), body["Protocol"].as_str()),
        (Some("Connect"), Some("mqtt5"))
    );
    worker.disconnect();
    let gone = monitor.recv_publish();
    assert!(!gone.retain);
    assert_eq!(status(&gone)["Action"], "Disconnect");
    let mut late = p.app(ProtocolVersion::V5, "late");
    late.subscribe("iot-2/app/worker/mon", QoS::AtMostOnce);
    late.expect_quiet();
}

#[test]
fn retain_is_ignored_and_oversized_payloads_end_the_connection() {
    let p = Platform::start();
    let mut device = p.device(ProtocolVersion::V5, "4321");
    device.publish("iot-2/evt/kept/fmt/txt", b"not kept", QoS::AtLeastOnce, true, 1);
    let mut app = p.app(ProtocolVersion::V5, "late");
    app.subscribe("iot-2/type/+/id/+/evt/+/fmt/+", QoS::AtMostOnce);
    app.expect_quiet();
    // 131,072 bytes pass; one more ends the connection (5.0: DISCONNECT 0x95).
    let limit = vec![b'x'; 131_072];
    assert!(device
        .publish("iot-2/evt/big/fmt/bin", &limit, QoS::AtLeastOnce, false, 2)
        .is_success());
    assert_eq!(app.recv_publish().payload.len(), 131_072);
    device.send(&publish_packet(
        "iot-2/evt/big/fmt/bin",
        &[b'x'; 131_073],
        QoS::AtLeastOnce,
        false,
        3,
    ));
    assert_eq!(disconnect_reason(&device.expect_closed()), ReasonCode::PACKET_TOO_LARGE);
    app.expect_quiet();
}

#[test]
fn a_plain_client_cannot_take_a_platform_clients_id_or_session() {
    let p = Platform::start();
    // The device keeps a session with a subscription and a queued command.
    let device_connect = || {
        let mut device = Client::open(p.addr(0), ProtocolVersion::V3_1_1);
        let mut connect = connect_packet(ProtocolVersion::V3_1_1, "d:za6xa7:test:4321", false, 60);
        connect.username = Some(ByteStr::from("use-token-auth"));
        connect.password = Some(bytes::Bytes::copy_from_slice(p.device_token.as_bytes()));
        let ack = device.connect(&connect);
        assert!(ack.reason_code.is_success());
        (device, ack.session_present)
    };
    let (mut device, _) = device_connect();
    device.subscribe("iot-2/cmd/+/fmt/+", QoS::AtLeastOnce);
    // The same client id and user name on the plain listener (anonymous allowed there):
    // refused (3.1.1: 5), and the device stays connected.
    let impostor = || {
        let mut plain = Client::open(p.addr(2), ProtocolVersion::V3_1_1);
        let mut connect = connect_packet(ProtocolVersion::V3_1_1, "d:za6xa7:test:4321", false, 60);
        connect.username = Some(ByteStr::from("use-token-auth"));
        plain.connect(&connect).reason_code.to_connect_return_code()
    };
    assert_eq!(impostor(), 5);
    device.ping();
    device.disconnect();
    let mut app = p.app(ProtocolVersion::V5, "commander");
    let command = "iot-2/type/test/id/4321/cmd/secret/fmt/txt";
    app.publish(command, b"for 4321", QoS::AtLeastOnce, false, 1);
    // Nor may it take the offline session with its queued command.
    assert_eq!(impostor(), 5);
    let (mut device, present) = device_connect();
    assert!(present);
    assert_eq!(&device.recv_publish().payload[..], b"for 4321");
}

/// A device over WebSocket with paho-mqtt: connects, publishes an event, disconnects.
const PAHO_WS_DEVICE: &str = r#"
import sys, paho.mqtt.client as mqtt
port, token = int(sys.argv[1]), sys.argv[2]
c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="d:za6xa7:test:4321",
                protocol=mqtt.MQTTv311, transport="websockets")
c.ws_set_options(path="/mqtt")
c.username_pw_set("use-token-auth", token)
c.connect("127.0.0.1", port, 60)
c.loop_start()
info = c.publish("iot-2/evt/ws/fmt/txt", b"over websocket", qos=1)
info.wait_for_publish(20)
c.disconnect()
c.loop_stop()
print("published" if info.is_published() else "not published")
"#;

#[test]
fn a_device_over_websocket_is_a_platform_client_with_its_protocol_in_status() {
    if !peer_available(
        "paho-mqtt (pip install paho-mqtt)",
        python_module_exists("paho.mqtt.client"),
    ) {
        return;
    }
    let p = Platform::start();
    let mut app = p.app(ProtocolVersion::V3_1_1, "watcher");
    app.subscribe("iot-2/type/+/id/+/mon", QoS::AtMostOnce);
    app.subscribe("iot-2/type/+/id/+/evt/+/fmt/+", QoS::AtMostOnce);
    let out = std::process::Command::new("python3")
        .args(["-c", PAHO_WS_DEVICE, &p.port(3), &p.device_token])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("published"),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut seen = Vec::new();
    while seen.len() < 3 {
        let publish = app.recv_publish();
        seen.push((publish.topic.to_string(), publish.payload.clone()));
    }
    // The status task publishes beside the connection: the event may come first.
    let event = seen.iter().find(|(topic, _)| topic.contains("/evt/")).unwrap();
    assert_eq!(event.0, "iot-2/type/test/id/4321/evt/ws/fmt/txt");
    assert_eq!(&event.1[..], b"over websocket");
    let status: Vec<Value> = seen
        .iter()
        .filter(|(topic, _)| topic == "iot-2/type/test/id/4321/mon")
        .map(|(_, payload)| serde_json::from_slice(payload).unwrap())
        .collect();
    assert_eq!(status.len(), 2, "{seen:?}");
    assert_eq!(
        (status[0]["Action"].as_str(), status[1]["Action"].as_str()),
        (Some("Connect"), Some("Disconnect"))
    );
    for body in &status {
        assert_eq!(body["Protocol"], "mqtt4-ws");
        assert_eq!(body["Port"], p.addr(3).port());
    }
}
