//! SUBSCRIBE / UNSUBSCRIBE: wildcards, granted QoS, overlapping subscriptions, $ topics.
#![allow(clippy::unwrap_used)]
mod common;
use common::*;
use tern_proto::*;

#[test]
fn wildcards_match_by_level() {
    let broker = Broker::start();
    for version in VERSIONS {
        let mut sub = broker.connect(version, "sub");
        assert_eq!(sub.subscribe("a/+/c", QoS::AtMostOnce), vec![ReasonCode::GRANTED_QOS_0]);
        assert_eq!(sub.subscribe("x/#", QoS::AtMostOnce), vec![ReasonCode::GRANTED_QOS_0]);
        let mut publisher = broker.connect(version, "pub");
        for topic in ["a/b/c", "a/b/d", "a/b/c/d", "x", "x/y/z", "y"] {
            publisher.publish(topic, topic.as_bytes(), QoS::AtLeastOnce, false, 1);
        }
        let got: Vec<String> = (0..3).map(|_| sub.recv_publish().topic.to_string()).collect();
        assert_eq!(got, vec!["a/b/c", "x", "x/y/z"]);
        sub.expect_quiet();
    }
}

#[test]
fn the_granted_qos_is_the_requested_one() {
    let broker = Broker::start();
    for version in VERSIONS {
        let mut c = broker.connect(version, "g");
        let opts = |qos| SubscriptionOptions {
            qos,
            ..Default::default()
        };
        let codes = c.subscribe_with(
            7,
            &[
                ("a", opts(QoS::AtMostOnce)),
                ("b", opts(QoS::AtLeastOnce)),
                ("c", opts(QoS::ExactlyOnce)),
            ],
        );
        assert_eq!(
            codes,
            vec![
                ReasonCode::GRANTED_QOS_0,
                ReasonCode::GRANTED_QOS_1,
                ReasonCode::GRANTED_QOS_2
            ]
        );
    }
}

#[test]
fn suback_exact_bytes_3_1_1() {
    let broker = Broker::start();
    let mut c = broker.connect(V311, "bytes");
    c.send_raw(b"\x82\x08\x00\x2a\x00\x03a/b\x01");
    let mut reply = [0u8; 5];
    std::io::Read::read_exact(&mut c.stream, &mut reply).unwrap();
    assert_eq!(&reply, b"\x90\x03\x00\x2a\x01");
}

#[test]
fn overlapping_subscriptions_deliver_one_copy_at_the_highest_qos() {
    let broker = Broker::start();
    for version in VERSIONS {
        let mut sub = broker.connect(version, "overlap");
        sub.subscribe("o/#", QoS::AtMostOnce);
        sub.subscribe("o/+", QoS::ExactlyOnce);
        sub.subscribe("o/t", QoS::AtLeastOnce);
        let mut publisher = broker.connect(version, "op");
        publisher.publish("o/t", b"once", QoS::ExactlyOnce, false, 3);
        let p = sub.recv_publish();
        assert_eq!(p.qos, QoS::ExactlyOnce);
        sub.send(&Packet::PublishReceived(PublishResponse::new(p.packet_id)));
        assert!(matches!(sub.recv(), Packet::PublishRelease(_)));
        sub.send(&Packet::PublishComplete(PublishResponse::new(p.packet_id)));
        sub.expect_quiet();
    }
}

#[test]
fn dollar_topics_are_not_matched_by_leading_wildcards() {
    let broker = Broker::with_config("s.conf", "listener 0 127.0.0.1\nallow_anonymous true\nsys_interval 1\n");
    let mut all = broker.connect(V311, "all");
    all.subscribe("#", QoS::AtMostOnce);
    all.subscribe("+/broker/uptime", QoS::AtMostOnce);
    let mut sys = broker.connect(V311, "sys");
    sys.subscribe("$SYS/broker/uptime", QoS::AtMostOnce);
    // A live update (not the retained copy sent on subscribing) is routed to every
    // matching subscription at once: once sys has one, all would have it too.
    loop {
        let p = sys.recv_publish();
        assert!(p.topic.starts_with("$SYS/"));
        if !p.retain {
            break;
        }
    }
    all.expect_quiet();
}

#[test]
fn unsubscribe_stops_delivery() {
    let broker = Broker::start();
    for version in VERSIONS {
        let mut c = broker.connect(version, "u");
        c.subscribe("u/1", QoS::AtMostOnce);
        c.send(&Packet::Unsubscribe(Unsubscribe {
            packet_id: 9,
            filters: vec![ByteStr::from("u/1"), ByteStr::from("never")],
            properties: Properties::default(),
        }));
        let Packet::UnsubscribeAck(ack) = c.recv() else {
            panic!("no UNSUBACK")
        };
        assert_eq!(ack.packet_id, 9);
        if version == V5 {
            assert_eq!(
                ack.reason_codes,
                vec![ReasonCode::SUCCESS, ReasonCode::NO_SUBSCRIPTION_EXISTED]
            );
        }
        c.publish("u/1", b"x", QoS::AtLeastOnce, false, 2);
        c.expect_quiet();
    }
}
