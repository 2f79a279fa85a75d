//! Shared subscriptions `$share/{group}/{filter}` (MQTT 5.0 section 4.8.2), also honoured
//! for 3.1.1 clients as mosquitto does.
#![allow(clippy::unwrap_used)]
mod common;
use common::*;
use std::collections::HashMap;
use tern_proto::*;

fn qos1() -> SubscriptionOptions {
    SubscriptionOptions {
        qos: QoS::AtLeastOnce,
        ..Default::default()
    }
}

/// Receives `n` messages, acknowledging each; returns their payloads.
fn take(c: &mut Client, n: usize) -> Vec<String> {
    (0..n)
        .map(|_| {
            let p = c.recv_publish();
            if p.qos == QoS::AtLeastOnce {
                c.send(&Packet::PublishAck(PublishResponse::new(p.packet_id)));
            }
            String::from_utf8(p.payload.to_vec()).unwrap()
        })
        .collect()
}

#[test]
fn each_message_goes_to_one_member_in_turn_and_every_group_gets_it() {
    let broker = Broker::start();
    for version in VERSIONS {
        let mut members: Vec<Client> = (0..3).map(|i| broker.connect(version, &format!("m{i}"))).collect();
        for m in &mut members {
            assert_eq!(
                m.subscribe_with(1, &[("$share/g/work/+", qos1())]),
                vec![ReasonCode::GRANTED_QOS_1]
            );
        }
        let mut other_group = broker.connect(version, "other");
        other_group.subscribe_with(1, &[("$share/h/work/#", qos1())]);
        let mut plain = broker.connect(version, "plain");
        plain.subscribe("work/+", QoS::AtLeastOnce);
        let mut publisher = broker.connect(version, "pub");
        for i in 0..30u16 {
            publisher.publish("work/a", format!("{i}").as_bytes(), QoS::AtLeastOnce, false, i + 1);
        }
        let mut seen: HashMap<String, usize> = HashMap::new();
        for m in &mut members {
            let got = take(m, 10);
            for payload in got {
                *seen.entry(payload).or_default() += 1;
            }
            m.expect_quiet();
        }
        assert_eq!(seen.len(), 30, "every message reached exactly one member");
        assert!(seen.values().all(|n| *n == 1));
        assert_eq!(take(&mut other_group, 30).len(), 30, "another group gets every message");
        assert_eq!(take(&mut plain, 30).len(), 30, "a plain subscription is unaffected");
    }
}

#[test]
fn a_member_that_leaves_hands_unacknowledged_messages_to_the_others() {
    let broker = Broker::start();
    for version in VERSIONS {
        let mut leaver = broker.connect(version, "leaver");
        leaver.subscribe_with(1, &[("$share/g/jobs", qos1())]);
        let mut publisher = broker.connect(version, "pub");
        for i in 0..5u16 {
            publisher.publish("jobs", format!("job{i}").as_bytes(), QoS::AtLeastOnce, false, i + 1);
        }
        // The leaver receives all five (sole member) but acknowledges none, then goes.
        let mut unacked: Vec<String> = (0..5)
            .map(|_| String::from_utf8(leaver.recv_publish().payload.to_vec()).unwrap())
            .collect();
        unacked.sort();
        let mut stayer = broker.connect(version, "stayer");
        stayer.subscribe_with(1, &[("$share/g/jobs", qos1())]);
        drop(leaver);
        let mut handed = take(&mut stayer, 5);
        handed.sort();
        assert_eq!(handed, unacked);
        // Gone before the next round, so that it is no member of the group then.
        stayer.disconnect();
    }
}

#[test]
fn retained_messages_are_not_sent_to_a_new_shared_subscription() {
    let broker = Broker::start();
    for version in VERSIONS {
        let mut publisher = broker.connect(version, "pub");
        publisher.publish("kept", b"r", QoS::AtLeastOnce, true, 1);
        let mut m = broker.connect(version, "m");
        m.subscribe_with(1, &[("$share/g/kept", qos1())]);
        m.expect_quiet();
        publisher.publish("kept", b"", QoS::AtLeastOnce, true, 2);
    }
}

#[test]
fn malformed_share_names_are_refused_and_no_local_is_a_protocol_error() {
    let broker = Broker::start();
    for (version, refused) in [
        (V311, ReasonCode::UNSPECIFIED_ERROR),
        (V5, ReasonCode::TOPIC_FILTER_INVALID),
    ] {
        let mut c = broker.connect(version, "bad-share");
        let codes = c.subscribe_with(1, &[("$share/g", qos1()), ("$share/g/ok", qos1())]);
        assert_eq!(codes, vec![refused, ReasonCode::GRANTED_QOS_1]);
    }
    let mut c = broker.connect(V5, "no-local");
    let options = SubscriptionOptions {
        no_local: true,
        ..qos1()
    };
    c.send(&Packet::Subscribe(Subscribe {
        packet_id: 1,
        subscriptions: vec![Subscription {
            filter: ByteStr::from("$share/g/t"),
            options,
        }],
        properties: Properties::default(),
    }));
    assert_eq!(disconnect_reason(&c.expect_closed()), ReasonCode::PROTOCOL_ERROR);
    assert!(broker.log_contains("[MQTT-3.8.3-4]"));
}

#[test]
fn the_sticky_strategy_keeps_one_member_while_it_is_connected() {
    let broker = Broker::with_config(
        "s.conf",
        "listener 0 127.0.0.1\nallow_anonymous true\nshared_subscription_strategy sticky\n",
    );
    let mut a = broker.connect(V5, "a");
    let mut b = broker.connect(V5, "b");
    a.subscribe_with(1, &[("$share/g/s", qos1())]);
    b.subscribe_with(1, &[("$share/g/s", qos1())]);
    let mut publisher = broker.connect(V5, "pub");
    for i in 0..10u16 {
        publisher.publish("s", b"x", QoS::AtLeastOnce, false, i + 1);
    }
    // All ten were routed before their PUBACKs: the sticky member has them queued, and a
    // ping round trip brings them (the window holds 20). The other has nothing.
    let got = a.ping_collect();
    let (mut first, mut second, got) = if got.is_empty() {
        let got = b.ping_collect();
        (b, a, got)
    } else {
        (a, b, got)
    };
    let mut delivered = 0;
    for p in got {
        let Packet::Publish(p) = p else {
            panic!("expected PUBLISH, got {p:?}")
        };
        first.send(&Packet::PublishAck(PublishResponse::new(p.packet_id)));
        delivered += 1;
    }
    assert_eq!(delivered, 10, "all ten went to the first member");
    first.expect_quiet();
    second.expect_quiet();
    // The sticky member leaves: once the broker has let it go, the next one takes over.
    first.hang_up();
    publisher.publish("s", b"y", QoS::AtLeastOnce, false, 11);
    assert_eq!(take(&mut second, 1), vec!["y"]);
}

#[test]
fn connack_does_not_say_shared_subscriptions_are_unavailable() {
    let broker = Broker::start();
    let mut c = broker.client(V5);
    let ack = c.connect(&connect_packet(V5, "flags", true, 60));
    assert_eq!(ack.properties.shared_subscription_available(), None);
}
