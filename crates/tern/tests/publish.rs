//! PUBLISH at QoS 0, 1 and 2 in both directions, downgrade, ordering, in-flight window.
#![allow(clippy::unwrap_used)]
mod common;
use common::*;
use tern_proto::*;

#[test]
fn qos_1_and_2_flows_are_acknowledged_with_the_packet_id() {
    let broker = Broker::start();
    for version in VERSIONS {
        let mut c = broker.connect(version, "flows");
        c.subscribe("f", QoS::ExactlyOnce);
        let mut publisher = broker.connect(version, "flows-pub");
        publisher.publish("f", b"one", QoS::AtLeastOnce, false, 11);
        let p = c.recv_publish();
        assert_eq!((p.qos, &p.payload[..]), (QoS::AtLeastOnce, &b"one"[..]));
        assert_ne!(p.packet_id, 0);
        c.send(&Packet::PublishAck(PublishResponse::new(p.packet_id)));
        publisher.publish("f", b"two", QoS::ExactlyOnce, false, 12);
        let p = c.recv_publish();
        assert_eq!(p.qos, QoS::ExactlyOnce);
        c.send(&Packet::PublishReceived(PublishResponse::new(p.packet_id)));
        let Packet::PublishRelease(rel) = c.recv() else {
            panic!("no PUBREL")
        };
        assert_eq!(rel.packet_id, p.packet_id);
        c.send(&Packet::PublishComplete(PublishResponse::new(p.packet_id)));
        c.expect_quiet();
    }
}

#[test]
fn puback_exact_bytes_3_1_1() {
    let broker = Broker::start();
    let mut c = broker.connect(V311, "b");
    c.send_raw(b"\x32\x06\x00\x01t\x12\x34x");
    let mut reply = [0u8; 4];
    std::io::Read::read_exact(&mut c.stream, &mut reply).unwrap();
    assert_eq!(&reply, b"\x40\x02\x12\x34");
}

#[test]
fn messages_are_downgraded_to_the_subscription_qos() {
    let broker = Broker::start();
    for version in VERSIONS {
        let mut sub = broker.connect(version, "down");
        sub.subscribe("d", QoS::AtMostOnce);
        let mut publisher = broker.connect(version, "dp");
        publisher.publish("d", b"x", QoS::ExactlyOnce, false, 1);
        let p = sub.recv_publish();
        assert_eq!((p.qos, p.packet_id), (QoS::AtMostOnce, 0));
    }
}

#[test]
fn a_resent_qos_2_publish_is_delivered_once() {
    let broker = Broker::start();
    for version in VERSIONS {
        let mut sub = broker.connect(version, "once-sub");
        sub.subscribe("q2", QoS::AtMostOnce);
        let mut publisher = broker.connect(version, "once-pub");
        publisher.send(&publish_packet("q2", b"m", QoS::ExactlyOnce, false, 77));
        assert!(matches!(publisher.recv(), Packet::PublishReceived(r) if r.packet_id == 77));
        let Packet::Publish(mut again) = publish_packet("q2", b"m", QoS::ExactlyOnce, false, 77) else {
            unreachable!()
        };
        again.dup = true;
        publisher.send(&Packet::Publish(again));
        assert!(matches!(publisher.recv(), Packet::PublishReceived(r) if r.packet_id == 77));
        publisher.send(&Packet::PublishRelease(PublishResponse::new(77)));
        assert!(matches!(publisher.recv(), Packet::PublishComplete(r) if r.packet_id == 77));
        assert_eq!(sub.recv_publish().payload, &b"m"[..]);
        sub.expect_quiet();
        // After PUBREL the id is free: the same id carries a new message.
        publisher.publish("q2", b"n", QoS::ExactlyOnce, false, 77);
        assert_eq!(sub.recv_publish().payload, &b"n"[..]);
    }
}

#[test]
fn messages_arrive_in_order_per_topic() {
    let broker = Broker::start();
    for version in VERSIONS {
        let mut sub = broker.connect(version, "order-sub");
        sub.subscribe("order", QoS::AtLeastOnce);
        let mut publisher = broker.connect(version, "order-pub");
        for i in 0..200u16 {
            let qos = if i % 3 == 0 { QoS::AtMostOnce } else { QoS::AtLeastOnce };
            publisher.send(&publish_packet("order", &i.to_be_bytes(), qos, false, i + 1));
        }
        for i in 0..200u16 {
            let p = sub.recv_publish();
            assert_eq!(&p.payload[..], &i.to_be_bytes(), "message {i}");
            if p.qos == QoS::AtLeastOnce {
                sub.send(&Packet::PublishAck(PublishResponse::new(p.packet_id)));
            }
        }
    }
}

#[test]
fn the_inflight_window_holds_messages_until_acknowledged() {
    let broker = Broker::with_config(
        "w.conf",
        "listener 0 127.0.0.1\nallow_anonymous true\nmax_inflight_messages 2\n",
    );
    for version in VERSIONS {
        let mut sub = broker.connect(version, "window");
        sub.subscribe("w", QoS::AtLeastOnce);
        let mut publisher = broker.connect(version, "wp");
        for i in 1..=3u16 {
            publisher.publish("w", &[i as u8], QoS::AtLeastOnce, false, i);
        }
        let first = sub.recv_publish();
        let second = sub.recv_publish();
        // All three were routed before their PUBACKs: the third waits for room.
        sub.expect_quiet();
        sub.send(&Packet::PublishAck(PublishResponse::new(first.packet_id)));
        let third = sub.recv_publish();
        assert_eq!(&third.payload[..], &[3]);
        sub.send(&Packet::PublishAck(PublishResponse::new(second.packet_id)));
        sub.send(&Packet::PublishAck(PublishResponse::new(third.packet_id)));
    }
}

#[test]
fn mqtt_5_puback_says_when_nobody_subscribed() {
    let broker = Broker::start();
    let mut c = broker.connect(V5, "lonely");
    assert_eq!(
        c.publish("nobody/listens", b"x", QoS::AtLeastOnce, false, 1),
        ReasonCode::NO_MATCHING_SUBSCRIBERS
    );
    c.subscribe("somebody", QoS::AtMostOnce);
    assert_eq!(
        c.publish("somebody", b"x", QoS::AtLeastOnce, false, 2),
        ReasonCode::SUCCESS
    );
}

#[test]
fn mqtt_5_topic_aliases_stand_in_for_topics() {
    let broker = Broker::start();
    let mut sub = broker.connect(V5, "alias-sub");
    sub.subscribe("long/topic/name", QoS::AtMostOnce);
    let mut c = broker.connect(V5, "alias-pub");
    let with_alias = |topic: &str, payload: &[u8]| {
        Packet::Publish(Publish {
            dup: false,
            qos: QoS::AtMostOnce,
            retain: false,
            topic: ByteStr::from(topic),
            packet_id: 0,
            properties: Properties(vec![Property::TopicAlias(3)]),
            payload: bytes::Bytes::copy_from_slice(payload),
        })
    };
    c.send(&with_alias("long/topic/name", b"1"));
    c.send(&with_alias("", b"2"));
    for expected in [b"1", b"2"] {
        let p = sub.recv_publish();
        assert_eq!((p.topic.as_str(), &p.payload[..]), ("long/topic/name", &expected[..]));
        assert_eq!(
            p.properties.topic_alias(),
            None,
            "the publisher's alias is not forwarded"
        );
    }
    let Packet::Publish(mut unknown) = with_alias("", b"3") else {
        unreachable!()
    };
    unknown.properties = Properties(vec![Property::TopicAlias(9)]);
    c.send(&Packet::Publish(unknown));
    let seen = c.expect_closed();
    assert_eq!(disconnect_reason(&seen), ReasonCode::PROTOCOL_ERROR);
}

#[test]
fn payloads_of_every_size_pass_unchanged() {
    let broker = Broker::start();
    let mut c = broker.connect(V311, "sizes");
    c.subscribe("size", QoS::AtLeastOnce);
    for size in [0usize, 1, 127, 128, 16_383, 16_384, 300_000] {
        let payload: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
        c.publish("size", &payload, QoS::AtLeastOnce, false, 1);
        let p = c.recv_publish();
        assert_eq!(p.payload.len(), size);
        assert_eq!(&p.payload[..], &payload[..]);
        c.send(&Packet::PublishAck(PublishResponse::new(p.packet_id)));
    }
}
