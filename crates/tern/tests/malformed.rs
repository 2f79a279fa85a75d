//! Bad input costs only the offending connection: each malformed sequence closes its own
//! socket (5.0 clients get DISCONNECT with the reason code first), is logged with the spec
//! statement, and a control pair keeps exchanging messages throughout.
#![allow(clippy::unwrap_used)]
mod common;
use common::*;
use tern_proto::*;

/// (name, bytes after a successful CONNECT, expected 5.0 reason code, spec statement).
/// SUBSCRIBE cases have a 5.0 twin with the property length byte.
const CASES: &[(&str, &[u8], u8, &str)] = &[
    ("reserved packet type", b"\x00\x00", 0x81, "[MQTT-2.1.3-1]"),
    ("PUBREL flags", b"\x60\x02\x00\x01", 0x81, "[MQTT-2.1.3-1]"),
    ("QoS 3", b"\x36\x05\x00\x01a\x00\x01", 0x81, "[MQTT-3.3.1-4]"),
    ("wildcard in topic", b"\x30\x05\x00\x03a/#", 0x90, "[MQTT-3.3.2-2]"),
    ("invalid UTF-8", b"\x30\x04\x00\x02\xc3\x28", 0x81, "[MQTT-1.5.4-1]"),
    ("null character", b"\x30\x05\x00\x03a\x00b", 0x81, "[MQTT-1.5.4-2]"),
    ("five-byte length", b"\x30\xff\xff\xff\xff\x01", 0x81, "[MQTT-1.5.5-1]"),
    ("packet id 0", b"\x32\x05\x00\x01a\x00\x00", 0x82, "[MQTT-2.2.1-3]"),
    ("empty SUBSCRIBE", b"\x82\x02\x00\x01", 0x82, "[MQTT-3.8.3-2]"),
    ("empty SUBSCRIBE 5", b"\x82\x03\x00\x01\x00", 0x82, "[MQTT-3.8.3-2]"),
    ("bad filter", b"\x82\x08\x00\x01\x00\x03a#b\x00", 0x8f, "[MQTT-4.7.1-1]"),
    (
        "bad filter 5",
        b"\x82\x09\x00\x01\x00\x00\x03a#b\x00",
        0x8f,
        "[MQTT-4.7.1-1]",
    ),
    (
        "truncated string",
        b"\x30\x04\x00\x09ab",
        0x81,
        "remaining length ends inside a field",
    ),
    (
        "client sends SUBACK",
        b"\x90\x03\x00\x01\x00",
        0x82,
        "a client must not send SUBACK",
    ),
    (
        "client sends SUBACK 5",
        b"\x90\x04\x00\x01\x00\x00",
        0x82,
        "a client must not send SUBACK",
    ),
];

#[test]
fn each_malformed_packet_closes_only_its_connection() {
    let broker = Broker::start();
    for version in VERSIONS {
        let mut control_sub = broker.connect(version, "control-sub");
        control_sub.subscribe("control", QoS::AtLeastOnce);
        let mut control_pub = broker.connect(version, "control-pub");
        for (i, (name, bytes, reason, statement)) in CASES.iter().enumerate() {
            let twin = name.ends_with(" 5");
            if twin != (version == V5) && (twin || CASES.iter().any(|(n, ..)| *n == format!("{name} 5"))) {
                continue;
            }
            let mut bad = broker.connect(version, &format!("bad-{i}"));
            bad.send_raw(bytes);
            let seen = bad.expect_closed();
            if version == V5 {
                assert_eq!(disconnect_reason(&seen), ReasonCode(*reason), "{name}");
            } else {
                assert!(seen.is_empty(), "{name}: {seen:?}");
            }
            assert!(broker.log_contains(statement), "{name}: log names {statement}");
            control_pub.publish("control", name.as_bytes(), QoS::AtLeastOnce, false, i as u16 + 1);
            let p = control_sub.recv_publish();
            assert_eq!(&p.payload[..], name.as_bytes());
            control_sub.send(&Packet::PublishAck(PublishResponse::new(p.packet_id)));
        }
    }
}

#[test]
fn a_packet_over_message_size_limit_is_refused_before_it_is_buffered() {
    let broker = Broker::with_config(
        "l.conf",
        "listener 0 127.0.0.1\nallow_anonymous true\nmessage_size_limit 1000\n",
    );
    let mut c = broker.connect(V5, "big");
    // Announce a 200 MB PUBLISH: refused from the header alone.
    c.send_raw(b"\x30\x80\x80\x80\x60");
    let seen = c.expect_closed();
    assert_eq!(disconnect_reason(&seen), ReasonCode::PACKET_TOO_LARGE);
    // Within the packet limit but over the payload limit: 5.0 is told, nothing forwarded.
    let mut sub = broker.connect(V5, "limit-sub");
    sub.subscribe("limit", QoS::AtMostOnce);
    let mut c = broker.connect(V5, "limit-pub");
    assert_eq!(
        c.publish("limit", &[7u8; 2000], QoS::AtLeastOnce, false, 1),
        ReasonCode::QUOTA_EXCEEDED
    );
    sub.expect_quiet();
}

#[test]
fn half_open_and_idle_sockets_do_not_disturb_others() {
    let broker = Broker::with_config(
        "h.toml",
        "connect_timeout = 1\n[[listener]]\nport = 0\nbind_address = \"127.0.0.1\"\nallow_anonymous = true\n",
    );
    let mut idle: Vec<Client> = (0..50).map(|_| broker.client(V311)).collect();
    // Half a CONNECT, then silence (slowloris).
    for c in &mut idle {
        c.send_raw(b"\x10\x0c\x00\x04MQ");
    }
    let mut c = broker.connect(V311, "busy");
    c.subscribe("busy", QoS::AtMostOnce);
    c.publish("busy", b"ok", QoS::AtLeastOnce, false, 1);
    assert_eq!(&c.recv_publish().payload[..], b"ok");
    for c in &mut idle {
        assert!(c.expect_closed().is_empty());
    }
}

#[test]
fn a_connect_flood_does_not_stop_a_control_pair() {
    let broker = Broker::start();
    let mut sub = broker.connect(V311, "flood-sub");
    sub.subscribe("flood/control", QoS::AtLeastOnce);
    let mut publisher = broker.connect(V311, "flood-pub");
    let addr = broker.addr;
    let flood = std::thread::spawn(move || {
        for i in 0..400 {
            let mut c = Client::open(addr, V311);
            if i % 2 == 0 {
                // Connect and vanish without DISCONNECT.
                c.send(&Packet::Connect(Box::new(connect_packet(
                    V311,
                    &format!("flood-{i}"),
                    true,
                    60,
                ))));
            } else {
                // Open a socket and drop it before CONNECT.
                c.send_raw(b"\x10");
            }
        }
    });
    for i in 0..50u16 {
        publisher.publish("flood/control", &i.to_be_bytes(), QoS::AtLeastOnce, false, i + 1);
        let p = sub.recv_publish();
        assert_eq!(&p.payload[..], &i.to_be_bytes());
        sub.send(&Packet::PublishAck(PublishResponse::new(p.packet_id)));
    }
    flood.join().unwrap();
    publisher.publish("flood/control", b"after", QoS::AtLeastOnce, false, 999);
    assert_eq!(&sub.recv_publish().payload[..], b"after");
}
