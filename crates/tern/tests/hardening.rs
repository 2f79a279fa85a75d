//! The hardening suite: hand-made malicious byte sequences sent over real sockets. Each
//! must cost only its own connection (closed, with the right reason code for 5.0 clients)
//! while a control pair keeps exchanging messages, and the broker must stay up.
#![allow(clippy::unwrap_used)]
mod common;
use common::*;
use tern_proto::*;

/// A packet: fixed header byte, remaining length encoded honestly, then `body`.
fn pkt(header: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![header];
    let mut len = body.len();
    loop {
        let mut byte = (len % 128) as u8;
        len /= 128;
        if len > 0 {
            byte |= 0x80;
        }
        out.push(byte);
        if len == 0 {
            break;
        }
    }
    out.extend_from_slice(body);
    out
}

fn string(s: &[u8]) -> Vec<u8> {
    let mut out = (s.len() as u16).to_be_bytes().to_vec();
    out.extend_from_slice(s);
    out
}

/// A CONNECT with `level`, `flags`, 5.0 `properties` (ignored below 5) and `payload`
/// after the client id.
fn connect(level: u8, flags: u8, properties: &[u8], payload: &[u8]) -> Vec<u8> {
    let mut body = string(b"MQTT");
    body.extend_from_slice(&[level, flags, 0, 60]);
    if level == 5 {
        body.push(properties.len() as u8);
        body.extend_from_slice(properties);
    }
    body.extend_from_slice(&string(b"hardening"));
    body.extend_from_slice(payload);
    pkt(0x10, &body)
}

/// A 5.0 PUBLISH to `topic` at QoS 1 (packet id 7) with `properties`.
fn publish5(topic: &[u8], properties: &[u8], payload: &[u8]) -> Vec<u8> {
    let mut body = string(topic);
    body.extend_from_slice(&[0, 7, properties.len() as u8]);
    body.extend_from_slice(properties);
    body.extend_from_slice(payload);
    pkt(0x32, &body)
}

/// A 5.0 SUBSCRIBE (packet id 3) with `properties` and one filter with `options`.
fn subscribe5(properties: &[u8], filter: &[u8], options: u8) -> Vec<u8> {
    let mut body = vec![0, 3, properties.len() as u8];
    body.extend_from_slice(properties);
    body.extend_from_slice(&string(filter));
    body.push(options);
    pkt(0x82, &body)
}

/// What the broker must do with a case.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Expect {
    /// Close without answering (before CONNECT, or any 3.x violation).
    Closed,
    /// CONNACK with this return code (3.1.1 format), then close.
    Refused(u8),
}

/// Cases sent as the first bytes of a connection.
fn before_connect() -> Vec<(&'static str, Vec<u8>, Expect)> {
    use Expect::*;
    vec![
        ("PINGREQ before CONNECT", vec![0xC0, 0], Closed),
        ("PUBLISH before CONNECT", pkt(0x30, &[0, 1, b'a', b'x']), Closed),
        ("SUBSCRIBE before CONNECT", pkt(0x82, &[0, 1, 0, 1, b'a', 0]), Closed),
        (
            "protocol name MQTX",
            pkt(0x10, &[&string(b"MQTX")[..], &[4, 2, 0, 60], &string(b"x")].concat()),
            Closed,
        ),
        ("protocol level 9", connect(9, 2, &[], &[]), Refused(1)),
        ("CONNECT reserved flag", connect(4, 0x03, &[], &[]), Closed),
        (
            "will QoS 3",
            connect(4, 0x1E, &[], &[&string(b"w")[..], &string(b"m")].concat()),
            Closed,
        ),
        ("will QoS without will flag", connect(4, 0x0A, &[], &[]), Closed),
        ("will retain without will flag", connect(4, 0x22, &[], &[]), Closed),
        (
            "password without user name",
            connect(4, 0x42, &[], &string(b"pw")),
            Closed,
        ),
        (
            "CONNECT five-byte length",
            vec![0x10, 0xff, 0xff, 0xff, 0xff, 0x01],
            Closed,
        ),
        ("CONNECT non-minimal length", vec![0x10, 0x80, 0x00], Closed),
        (
            "CONNECT client id runs past the packet",
            pkt(0x10, &[&string(b"MQTT")[..], &[4, 2, 0, 60, 0, 10, b'a']].concat()),
            Closed,
        ),
        (
            "CONNECT client id not UTF-8",
            pkt(
                0x10,
                &[&string(b"MQTT")[..], &[4, 2, 0, 60], &string(b"\xff\xfe")].concat(),
            ),
            Closed,
        ),
        (
            "CONNECT flags reserved packet flags",
            {
                let mut c = connect(4, 2, &[], &[]);
                c[0] = 0x11;
                c
            },
            Closed,
        ),
        (
            "5.0 duplicate Session Expiry",
            connect(5, 2, &[0x11, 0, 0, 0, 1, 0x11, 0, 0, 0, 2], &[]),
            Closed,
        ),
        ("5.0 Topic Alias in CONNECT", connect(5, 2, &[0x23, 0, 1], &[]), Closed),
        ("5.0 unknown property 0x7F", connect(5, 2, &[0x7F, 0], &[]), Closed),
        ("5.0 Receive Maximum 0", connect(5, 2, &[0x21, 0, 0], &[]), Closed),
        (
            "5.0 Maximum Packet Size 0",
            connect(5, 2, &[0x27, 0, 0, 0, 0], &[]),
            Closed,
        ),
        (
            "5.0 property length past the packet",
            pkt(0x10, &[&string(b"MQTT")[..], &[5, 2, 0, 60, 50, 0x11, 0, 0]].concat()),
            Closed,
        ),
        (
            "5.0 user property not UTF-8",
            connect(5, 2, &[0x26, 0, 1, 0xff, 0, 1, b'v'], &[]),
            Closed,
        ),
        (
            "3.1.1 empty id without clean session",
            pkt(0x10, &[&string(b"MQTT")[..], &[4, 0, 0, 60, 0, 0]].concat()),
            Refused(2),
        ),
        ("CONNECT announcing 200 MB", vec![0x10, 0x80, 0x80, 0x80, 0x60], Closed),
    ]
}

/// Cases sent after a successful 5.0 CONNECT; `both` ones also under 3.1.1 (closed there).
fn after_connect() -> Vec<(&'static str, Vec<u8>, u8, bool)> {
    vec![
        ("reserved packet type 0", vec![0x00, 0x00], 0x81, true),
        ("reserved packet type 15 without AUTH", vec![0xF1, 0x00], 0x81, true),
        ("PUBREL with flags 0", vec![0x60, 0x02, 0x00, 0x01], 0x81, true),
        (
            "SUBSCRIBE with flags 0",
            pkt(0x80, &[0, 1, 0, 0, 1, b'a', 0]),
            0x81,
            false,
        ),
        (
            "UNSUBSCRIBE with flags 0",
            pkt(0xA0, &[0, 1, 0, 0, 1, b'a']),
            0x81,
            false,
        ),
        ("PINGREQ with a body", vec![0xC0, 0x01, 0x00], 0x81, true),
        ("DISCONNECT with flags", vec![0xE1, 0x00], 0x81, true),
        ("PUBLISH QoS 3", pkt(0x36, &[0, 1, b'a', 0, 1, 0]), 0x81, false),
        ("QoS 0 PUBLISH with DUP", pkt(0x38, &[0, 1, b'a', 0]), 0x81, false),
        ("wildcard # in topic name", publish5(b"a/#", &[], b"x"), 0x90, false),
        ("wildcard + in topic name", publish5(b"a/+/b", &[], b"x"), 0x90, false),
        ("topic not UTF-8", publish5(b"\xc3\x28", &[], b"x"), 0x81, false),
        ("topic with U+0000", publish5(b"a\x00b", &[], b"x"), 0x81, false),
        ("PUBLISH packet id 0", pkt(0x32, &[0, 1, b'a', 0, 0, 0]), 0x82, false),
        (
            "PUBLISH topic runs past the packet",
            pkt(0x30, &[0, 9, b'a', b'b']),
            0x81,
            true,
        ),
        (
            "PUBLISH five-byte length",
            vec![0x30, 0xff, 0xff, 0xff, 0xff, 0x01],
            0x81,
            true,
        ),
        ("Topic Alias 0", publish5(b"a", &[0x23, 0, 0], b"x"), 0x94, false),
        (
            "Topic Alias above the maximum",
            publish5(b"a", &[0x23, 0, 200], b"x"),
            0x94,
            false,
        ),
        ("unknown Topic Alias", publish5(b"", &[0x23, 0, 9], b"x"), 0x82, false),
        ("empty topic without alias", publish5(b"", &[], b"x"), 0x90, false),
        (
            "Subscription Identifier from a client",
            publish5(b"a", &[0x0B, 5], b"x"),
            0x82,
            false,
        ),
        (
            "duplicate Payload Format Indicator",
            publish5(b"a", &[0x01, 1, 0x01, 1], b"x"),
            0x82,
            false,
        ),
        (
            "Session Expiry in PUBLISH",
            publish5(b"a", &[0x11, 0, 0, 0, 1], b"x"),
            0x81,
            false,
        ),
        (
            "Payload Format Indicator 2",
            publish5(b"a", &[0x01, 2], b"x"),
            0x82,
            false,
        ),
        (
            "PUBLISH property length past the packet",
            pkt(0x32, &[0, 1, b'a', 0, 7, 100, 0x01]),
            0x81,
            false,
        ),
        (
            "five-byte property length",
            pkt(0x32, &[0, 1, b'a', 0, 7, 0xff, 0xff, 0xff, 0xff, 0x01]),
            0x81,
            false,
        ),
        (
            "user property value not UTF-8",
            publish5(b"a", &[0x26, 0, 1, b'k', 0, 1, 0xff], b"x"),
            0x81,
            false,
        ),
        ("empty SUBSCRIBE", pkt(0x82, &[0, 1, 0]), 0x82, false),
        (
            "SUBSCRIBE packet id 0",
            subscribe5(&[], b"a", 0)
                .iter()
                .enumerate()
                .map(|(i, b)| if i == 3 { 0 } else { *b })
                .collect(),
            0x82,
            false,
        ),
        (
            "subscription option reserved bits",
            subscribe5(&[], b"a", 0xC0),
            0x81,
            false,
        ),
        ("subscription QoS 3", subscribe5(&[], b"a", 0x03), 0x81, false),
        ("retain handling 3", subscribe5(&[], b"a", 0x30), 0x82, false),
        (
            "Subscription Identifier 0",
            subscribe5(&[0x0B, 0], b"a", 0),
            0x82,
            false,
        ),
        (
            "two Subscription Identifiers",
            subscribe5(&[0x0B, 1, 0x0B, 2], b"a", 0),
            0x82,
            false,
        ),
        ("filter with # in the middle", subscribe5(&[], b"a/#/b", 0), 0x8F, false),
        ("filter with a+ level", subscribe5(&[], b"a+/b", 0), 0x8F, false),
        (
            "No Local on a shared subscription",
            subscribe5(&[], b"$share/g/a", 0x04),
            0x82,
            false,
        ),
        ("empty UNSUBSCRIBE", pkt(0xA2, &[0, 1, 0]), 0x82, false),
        ("second CONNECT", connect(5, 2, &[], &[]), 0x82, false),
        ("client sends CONNACK", vec![0x20, 0x03, 0x00, 0x00, 0x00], 0x82, false),
        ("client sends SUBACK", pkt(0x90, &[0, 1, 0, 0]), 0x82, false),
        ("client sends UNSUBACK", pkt(0xB0, &[0, 1, 0, 0]), 0x82, false),
        ("client sends PINGRESP", vec![0xD0, 0x00], 0x82, true),
        (
            "AUTH without enhanced authentication",
            pkt(0xF0, &[0x19, 0]),
            0x82,
            false,
        ),
        (
            "DISCONNECT raising Session Expiry from 0",
            pkt(0xE0, &[0x00, 5, 0x11, 0, 0, 0, 9]),
            0x82,
            false,
        ),
        (
            "PUBLISH over message_size_limit announced",
            vec![0x30, 0x80, 0x80, 0x80, 0x60],
            0x95,
            true,
        ),
    ]
}

/// A broker with a message size limit and a short connect timeout, and its control pair.
struct Bench {
    broker: Broker,
    control_sub: Client,
    control_pub: Client,
    sent: u16,
}

impl Bench {
    fn new() -> Bench {
        let broker = Broker::with_config(
            "h.conf",
            "listener 0 127.0.0.1\nallow_anonymous true\nmessage_size_limit 100000\n",
        );
        let mut control_sub = broker.connect(V5, "control-sub");
        control_sub.subscribe("control", QoS::AtLeastOnce);
        let control_pub = broker.connect(V311, "control-pub");
        Bench {
            broker,
            control_sub,
            control_pub,
            sent: 0,
        }
    }

    /// The control pair still works.
    fn check_control(&mut self, case: &str) {
        self.sent += 1;
        self.control_pub
            .publish("control", case.as_bytes(), QoS::AtLeastOnce, false, self.sent);
        let p = self.control_sub.recv_publish();
        assert_eq!(&p.payload[..], case.as_bytes(), "control message after {case}");
        self.control_sub
            .send(&Packet::PublishAck(PublishResponse::new(p.packet_id)));
    }
}

fn replies(mut seen: Vec<Packet>) -> Option<Packet> {
    assert!(seen.len() <= 1, "{seen:?}");
    seen.pop()
}

#[test]
fn every_malicious_sequence_closes_only_its_own_connection() {
    let mut bench = Bench::new();
    let before = before_connect();
    let after = after_connect();
    assert!(before.len() + after.len() >= 50, "at least 50 cases");
    for (name, bytes, expect) in before {
        let mut c = bench.broker.client(V311);
        c.send_raw(&bytes);
        let seen = replies(c.expect_closed());
        match expect {
            Expect::Closed => assert_eq!(seen, None, "{name}"),
            Expect::Refused(code) => match seen {
                Some(Packet::ConnectAck(ack)) => assert_eq!(ack.reason_code.to_connect_return_code(), code, "{name}"),
                other => panic!("{name}: expected CONNACK {code}, got {other:?}"),
            },
        }
        bench.check_control(name);
    }
    for (name, bytes, reason, both) in after {
        let versions: &[ProtocolVersion] = if both { &[V5, V311] } else { &[V5] };
        for &version in versions {
            let mut c = bench.broker.connect(version, "victim");
            c.send_raw(&bytes);
            let seen = c.expect_closed();
            if version == V5 {
                assert_eq!(disconnect_reason(&seen), ReasonCode(reason), "{name}: {seen:?}");
            } else {
                assert!(seen.is_empty(), "{name}: {seen:?}");
            }
            bench.check_control(name);
        }
    }
}

#[test]
fn floods_and_giants_are_absorbed() {
    let mut bench = Bench::new();
    // 10,000 subscriptions in one SUBSCRIBE: all answered in one SUBACK, the first 1,000
    // granted, the rest refused by max_subscriptions_per_client (default 1,000).
    let mut c = bench.broker.connect(V5, "many");
    let filters: Vec<(String, SubscriptionOptions)> = (0..10_000)
        .map(|i| (format!("many/{i}"), SubscriptionOptions::default()))
        .collect();
    let refs: Vec<(&str, SubscriptionOptions)> = filters.iter().map(|(f, o)| (f.as_str(), *o)).collect();
    let codes = c.subscribe_with(1, &refs);
    assert_eq!(codes.len(), 10_000);
    assert!(codes[..1000].iter().all(|c| *c == ReasonCode::GRANTED_QOS_0));
    assert!(codes[1000..].iter().all(|c| *c == ReasonCode::QUOTA_EXCEEDED));
    bench.check_control("after 10,000 subscriptions");
    // A 1,000-level topic: refused by max_topic_levels (default 128), connection kept.
    let deep = vec!["d"; 1000].join("/");
    assert_eq!(
        c.publish(&deep, b"x", QoS::AtLeastOnce, false, 2),
        ReasonCode::TOPIC_NAME_INVALID
    );
    assert_eq!(
        c.subscribe(&deep, QoS::AtMostOnce),
        vec![ReasonCode::TOPIC_FILTER_INVALID]
    );
    c.send(&Packet::PingRequest);
    assert_eq!(c.recv(), Packet::PingResponse);
    // More QoS 2 messages unreleased than the Receive Maximum (20): 0x93.
    let mut greedy = bench.broker.connect(V5, "greedy");
    let mut flood = Vec::new();
    for id in 1..=21u16 {
        let mut body = string(b"q2");
        body.extend_from_slice(&id.to_be_bytes());
        body.push(0);
        flood.extend_from_slice(&pkt(0x34, &body));
    }
    greedy.send_raw(&flood);
    let seen = greedy.expect_closed();
    let disconnect: Vec<Packet> = seen
        .into_iter()
        .filter(|p| matches!(p, Packet::Disconnect(_)))
        .collect();
    assert_eq!(disconnect_reason(&disconnect), ReasonCode::RECEIVE_MAXIMUM_EXCEEDED);
    bench.check_control("after the QoS 2 flood");
    // A payload just over message_size_limit with QoS 1: refused with 0x97, kept.
    assert_eq!(
        c.publish("big", &vec![0u8; 100_001], QoS::AtLeastOnce, false, 3),
        ReasonCode::QUOTA_EXCEEDED
    );
    bench.check_control("after the oversized payload");
}
