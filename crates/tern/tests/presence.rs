//! Client presence without wills (`presence_events true`): JSON events on
//! `$SYS/broker/clients/<id>/connected` and `.../disconnected`, checked against the real
//! binary with 3.1.1 and 5.0 subscribers, under an ACL, and off by default.
#![allow(clippy::unwrap_used)]

mod common;
use common::*;
use serde_json::Value;
use std::net::SocketAddr;
use tern_proto::*;

const PRESENCE: &str = "listener 0 127.0.0.1\nallow_anonymous true\npresence_events true\n";

/// A subscriber to the presence events of `client_id` (both kinds).
fn watcher(broker: &Broker, version: ProtocolVersion, name: &str, client_id: &str) -> Client {
    let mut w = broker.connect(version, name);
    let filter = format!("$SYS/broker/clients/{client_id}/+");
    assert_eq!(w.subscribe(&filter, QoS::AtLeastOnce), vec![ReasonCode(1)]);
    w
}

/// The next presence event `w` receives (acknowledged): its kind (the topic's last
/// level) and its JSON body.
fn next_event(w: &mut Client) -> (String, Value) {
    let publish = w.recv_publish();
    if publish.qos == QoS::AtLeastOnce {
        w.send(&Packet::PublishAck(PublishResponse::new(publish.packet_id)));
    }
    let topic = publish.topic.as_str();
    assert!(topic.starts_with("$SYS/broker/clients/"), "{topic}");
    if w.version.is_v5() {
        assert_eq!(publish.properties.content_type().as_deref(), Some("application/json"));
        assert_eq!(publish.properties.payload_format_indicator(), Some(1));
    }
    let kind = topic.rsplit('/').next().unwrap().to_string();
    let body: Value = serde_json::from_slice(&publish.payload).unwrap();
    (kind, body)
}

/// A client connected as `client_id` with `version`, and the address the broker sees.
fn device(broker: &Broker, version: ProtocolVersion, client_id: &str) -> (Client, SocketAddr) {
    let c = broker.connect(version, client_id);
    let addr = c.stream.local_addr().unwrap();
    (c, addr)
}

/// RFC 3339 in UTC with milliseconds, as docs/presence.md says.
fn assert_timestamp(value: &Value) {
    let text = value.as_str().unwrap_or_else(|| panic!("not a string: {value}"));
    let bytes = text.as_bytes();
    assert_eq!(bytes.len(), 24, "{text}");
    for (i, b) in bytes.iter().enumerate() {
        let expected = match i {
            4 | 7 => b'-',
            10 => b'T',
            13 | 16 => b':',
            19 => b'.',
            23 => b'Z',
            _ => {
                assert!(b.is_ascii_digit(), "{text}");
                continue;
            }
        };
        assert_eq!(*b, expected, "{text}");
    }
}

fn protocol_name(version: ProtocolVersion) -> &'static str {
    if version.is_v5() {
        "mqttv5"
    } else {
        "mqttv311"
    }
}

#[test]
fn connects_and_disconnects_reach_3_1_1_and_5_0_subscribers_as_json() {
    let broker = Broker::with_config("mosquitto.conf", PRESENCE);
    for version in VERSIONS {
        let id = format!("dev-{}", protocol_name(version));
        let mut watchers: Vec<Client> = VERSIONS
            .iter()
            .enumerate()
            .map(|(i, v)| watcher(&broker, *v, &format!("watcher-{i}-{id}"), &id))
            .collect();
        let (c, addr) = device(&broker, version, &id);
        for w in &mut watchers {
            let (kind, body) = next_event(w);
            assert_eq!(kind, "connected");
            assert_eq!(body["clientid"], id.as_str());
            assert_eq!(body["username"], Value::Null);
            assert_eq!(body["address"], addr.to_string().as_str());
            assert_eq!(body["protocol"], protocol_name(version));
            assert_eq!(body["clean_start"], true);
            assert_eq!(body["keepalive"], 60);
            assert_timestamp(&body["connected_at"]);
        }
        c.disconnect();
        for w in &mut watchers {
            let (kind, body) = next_event(w);
            assert_eq!(kind, "disconnected");
            assert_eq!(body["clientid"], id.as_str());
            assert_eq!(body["reason"], "normal");
            assert_eq!(body["address"], addr.to_string().as_str());
            assert_timestamp(&body["connected_at"]);
            assert_timestamp(&body["disconnected_at"]);
            assert!(
                body["disconnected_at"].as_str() >= body["connected_at"].as_str(),
                "{body}"
            );
        }
    }
}

#[test]
fn the_reason_says_how_the_connection_ended() {
    let broker = Broker::with_config("mosquitto.conf", PRESENCE);
    for version in VERSIONS {
        let id = format!("gone-{}", protocol_name(version));
        let mut w = watcher(&broker, version, &format!("w-{id}"), &id);
        // Vanishes without DISCONNECT.
        let (c, _) = device(&broker, version, &id);
        c.hang_up();
        assert_eq!(next_event(&mut w).0, "connected");
        let (kind, body) = next_event(&mut w);
        assert_eq!(
            (kind.as_str(), &body["reason"]),
            ("disconnected", &Value::from("connection lost"))
        );
        // Breaks the protocol: a second CONNECT.
        let (mut c, _) = device(&broker, version, &id);
        c.send(&Packet::Connect(Box::new(connect_packet(version, &id, true, 60))));
        c.expect_closed();
        assert_eq!(next_event(&mut w).0, "connected");
        assert_eq!(next_event(&mut w).1["reason"], "protocol error");
        // Stays silent past its keepalive (1 s: closed after 1.5 s).
        let mut c = broker.client(version);
        let ack = c.connect(&connect_packet(version, &id, true, 1));
        assert_eq!(ack.reason_code, ReasonCode::SUCCESS);
        assert_eq!(next_event(&mut w).1["keepalive"], 1);
        let (kind, body) = next_event(&mut w);
        assert_eq!(
            (kind.as_str(), &body["reason"]),
            ("disconnected", &Value::from("keepalive timeout"))
        );
    }
}

#[test]
fn a_taken_over_client_is_reported_gone_before_its_successor_is_reported_connected() {
    let broker = Broker::with_config("mosquitto.conf", PRESENCE);
    for version in VERSIONS {
        let id = format!("twin-{}", protocol_name(version));
        let mut w = watcher(&broker, version, &format!("w-{id}"), &id);
        let (mut first, first_addr) = device(&broker, version, &id);
        let (second, second_addr) = device(&broker, version, &id);
        first.expect_closed();
        let events: Vec<(String, Value)> = (0..3).map(|_| next_event(&mut w)).collect();
        let seen: Vec<(&str, &str)> = events
            .iter()
            .map(|(kind, body)| (kind.as_str(), body["address"].as_str().unwrap()))
            .collect();
        let (a, b) = (first_addr.to_string(), second_addr.to_string());
        assert_eq!(
            seen,
            [
                ("connected", a.as_str()),
                ("disconnected", a.as_str()),
                ("connected", b.as_str())
            ]
        );
        assert_eq!(events[1].1["reason"], "taken over");
        second.disconnect();
        assert_eq!(next_event(&mut w).1["reason"], "normal");
    }
}

#[test]
fn a_client_id_with_topic_characters_is_escaped_in_the_topic_only() {
    let broker = Broker::with_config("mosquitto.conf", PRESENCE);
    let mut w = broker.connect(V5, "watcher");
    // The escaped id is one level; unescaped it would be three. One SUBSCRIBE: the
    // watcher's own connected event may come any time after it.
    let qos1 = SubscriptionOptions {
        qos: QoS::AtLeastOnce,
        ..Default::default()
    };
    w.subscribe_with(
        1,
        &[("$SYS/broker/clients/+/+", qos1), ("$SYS/broker/clients/+/+/+/+", qos1)],
    );
    let (c, _) = device(&broker, V5, "site/a+b#c");
    loop {
        let publish = w.recv_publish();
        w.send(&Packet::PublishAck(PublishResponse::new(publish.packet_id)));
        let body: Value = serde_json::from_slice(&publish.payload).unwrap();
        if body["clientid"] == "site/a+b#c" {
            assert_eq!(publish.topic.as_str(), "$SYS/broker/clients/site%2Fa%2Bb%23c/connected");
            break;
        }
    }
    drop(c);
}

#[test]
fn the_acl_decides_who_reads_presence_events() {
    let dir = tempfile::tempdir().unwrap();
    let passwords = dir.path().join("passwd");
    tern_passwd(&passwords, "ops", "ops-pw", true);
    tern_passwd(&passwords, "nosy", "nosy-pw", false);
    tern_passwd(&passwords, "half", "half-pw", false);
    tern_passwd(&passwords, "dev", "dev-pw", false);
    let acl = dir.path().join("acl");
    std::fs::write(
        &acl,
        "user ops\ntopic read $SYS/broker/clients/#\nuser nosy\ntopic readwrite public/#\n\
         user half\ntopic read $SYS/broker/clients/+/connected\n",
    )
    .unwrap();
    let broker = Broker::with_config(
        "mosquitto.conf",
        &format!(
            "listener 0 127.0.0.1\nallow_anonymous false\npassword_file {}\nacl_file {}\npresence_events true\n",
            passwords.display(),
            acl.display()
        ),
    );
    let login = |version: ProtocolVersion, id: &str, user: &str, password: &str| {
        let mut c = broker.client(version);
        let mut connect = connect_packet(version, id, true, 60);
        connect.username = Some(ByteStr::from(user));
        connect.password = Some(bytes::Bytes::copy_from_slice(password.as_bytes()));
        assert_eq!(c.connect(&connect).reason_code, ReasonCode::SUCCESS, "{user}");
        c
    };
    for version in VERSIONS {
        let id = format!("sensor-{}", protocol_name(version));
        let mut ops = login(version, &format!("ops-{id}"), "ops", "ops-pw");
        ops.subscribe("$SYS/broker/clients/+/+", QoS::AtLeastOnce);
        // No read access to $SYS: the subscription is refused.
        let mut nosy = login(version, &format!("nosy-{id}"), "nosy", "nosy-pw");
        let refused = nosy.subscribe("$SYS/broker/clients/+/+", QoS::AtLeastOnce);
        assert!(refused[0].0 >= 0x80, "{refused:?}");
        // Allowed the connected events only.
        let mut half = login(version, &format!("half-{id}"), "half", "half-pw");
        let qos1 = SubscriptionOptions {
            qos: QoS::AtLeastOnce,
            ..Default::default()
        };
        let filters = [
            ("$SYS/broker/clients/+/connected", qos1),
            ("$SYS/broker/clients/+/disconnected", qos1),
        ];
        let codes = half.subscribe_with(1, &filters);
        assert_eq!(codes[0], ReasonCode(1));
        assert!(codes[1].0 >= 0x80, "{codes:?}");

        let device = login(version, &id, "dev", "dev-pw");
        device.disconnect();
        let mut seen = Vec::new();
        while seen.len() < 2 {
            let (kind, body) = next_event(&mut ops);
            if body["clientid"] == id.as_str() {
                assert_eq!(body["username"], "dev");
                seen.push(kind);
            }
        }
        assert_eq!(seen, ["connected", "disconnected"]);
        let (kind, body) = loop {
            let (kind, body) = next_event(&mut half);
            if body["clientid"] == id.as_str() {
                break (kind, body);
            }
        };
        assert_eq!(
            (kind.as_str(), &body["clientid"]),
            ("connected", &Value::from(id.as_str()))
        );
        // ops has the disconnected event, so it was routed: half was passed over.
        half.expect_quiet();
        nosy.expect_quiet();
    }
}

#[test]
fn presence_events_are_off_by_default_and_on_in_toml_too() {
    let broker = Broker::start();
    let mut w = broker.connect(V5, "watcher");
    // Anonymous local clients have no ACL: the subscription is granted.
    assert_eq!(
        w.subscribe("$SYS/broker/clients/+/+", QoS::AtLeastOnce),
        vec![ReasonCode(1)]
    );
    let c = broker.connect(V311, "quiet-device");
    c.disconnect();
    broker.wait_closed("quiet-device");
    w.expect_quiet();

    let toml = Broker::with_config(
        "tern.toml",
        "presence_events = true\n[[listener]]\nport = 0\nbind_address = \"127.0.0.1\"\nallow_anonymous = true\n",
    );
    let mut w = watcher(&toml, V311, "watcher", "loud-device");
    let c = toml.connect(V5, "loud-device");
    assert_eq!(next_event(&mut w).0, "connected");
    c.disconnect();
    assert_eq!(next_event(&mut w).0, "disconnected");
}

#[test]
fn clients_cannot_forge_presence_events() {
    let broker = Broker::with_config("mosquitto.conf", PRESENCE);
    let mut w = watcher(&broker, V5, "watcher", "victim");
    for version in VERSIONS {
        let mut forger = broker.connect(version, &format!("forger-{}", protocol_name(version)));
        let code = forger.publish(
            "$SYS/broker/clients/victim/connected",
            b"{}",
            QoS::AtLeastOnce,
            false,
            1,
        );
        if version.is_v5() {
            assert_eq!(code, ReasonCode::NOT_AUTHORIZED);
        }
    }
    // The forgers' PUBACKs came after their messages were refused: nothing was routed.
    w.expect_quiet();
}

#[test]
fn a_client_kicked_through_the_http_api_is_reported_kicked() {
    use std::io::{Read, Write};
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let out = tern(&["admin", "key", "create", "--json", "--data-dir", data.to_str().unwrap()]);
    assert!(out.status.success(), "{out:?}");
    let key: Value = serde_json::from_slice(&out.stdout).unwrap();
    let broker = Broker::with_config(
        "mosquitto.conf",
        &format!(
            "{PRESENCE}listener 0 127.0.0.1\nprotocol http\npersistence true\npersistence_location {}\n",
            data.display()
        ),
    );
    let http = broker.listening_addrs()[1];
    for version in VERSIONS {
        let id = format!("kicked-{}", protocol_name(version));
        let mut w = watcher(&broker, V311, &format!("w-{id}"), &id);
        let (mut c, _) = device(&broker, version, &id);
        assert_eq!(next_event(&mut w).0, "connected");
        let mut api = std::net::TcpStream::connect(http).unwrap();
        api.set_read_timeout(Some(PATIENCE)).unwrap();
        let secret = key["secret"].as_str().unwrap();
        write!(
            api,
            "POST /api/v1/clients/{id}/kick HTTP/1.1\r\nHost: tern\r\nAuthorization: Bearer {secret}\r\n\
             Content-Length: 0\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut answer = String::new();
        api.read_to_string(&mut answer).unwrap();
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        c.expect_closed();
        let (kind, body) = next_event(&mut w);
        assert_eq!(
            (kind.as_str(), &body["reason"]),
            ("disconnected", &Value::from("kicked"))
        );
    }
}
