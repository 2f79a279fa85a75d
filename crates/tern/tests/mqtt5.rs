//! MQTT 5.0 subscription features: No Local and Subscription Identifiers.
#![allow(clippy::unwrap_used)]
mod common;
use common::*;
use std::time::{Duration, Instant};
use tern_proto::*;

fn subscribe_with_id(c: &mut Client, packet_id: u16, filter: &str, options: SubscriptionOptions, id: Option<u32>) {
    let properties = Properties(id.map(Property::SubscriptionIdentifier).into_iter().collect());
    let subscriptions = vec![Subscription {
        filter: ByteStr::from(filter),
        options,
    }];
    c.send(&Packet::Subscribe(Subscribe {
        packet_id,
        subscriptions,
        properties,
    }));
    let Packet::SubscribeAck(ack) = c.recv() else {
        panic!("no SUBACK")
    };
    assert_eq!(ack.reason_codes, vec![ReasonCode(options.qos as u8)]);
}

#[test]
fn no_local_skips_only_the_publishers_own_subscription() {
    let broker = Broker::start();
    let mut me = broker.connect(V5, "nl-me");
    let no_local = SubscriptionOptions {
        qos: QoS::AtMostOnce,
        no_local: true,
        ..Default::default()
    };
    subscribe_with_id(&mut me, 1, "nl/t", no_local, None);
    me.publish("nl/t", b"mine", QoS::AtLeastOnce, false, 2);
    me.expect_quiet();
    let mut other = broker.connect(V5, "nl-other");
    other.publish("nl/t", b"theirs", QoS::AtLeastOnce, false, 3);
    assert_eq!(&me.recv_publish().payload[..], b"theirs");
    // A second, ordinary subscription of the same client still matches its own messages.
    subscribe_with_id(&mut me, 4, "nl/#", SubscriptionOptions::default(), None);
    me.publish("nl/t", b"again", QoS::AtLeastOnce, false, 5);
    assert_eq!(&me.recv_publish().payload[..], b"again");
    me.expect_quiet();
}

#[test]
fn subscription_identifiers_come_back_with_every_matching_message() {
    let broker = Broker::start();
    let mut sub = broker.client(V5);
    let ack = sub.connect(&connect_packet(V5, "si-sub", true, 60));
    assert_ne!(
        ack.properties.subscription_identifier_available(),
        Some(0),
        "advertised as available"
    );
    subscribe_with_id(&mut sub, 1, "si/+", SubscriptionOptions::default(), Some(7));
    subscribe_with_id(&mut sub, 2, "si/#", SubscriptionOptions::default(), Some(300_000));
    subscribe_with_id(&mut sub, 3, "si/a/b", SubscriptionOptions::default(), None);
    let mut publisher = broker.connect(V5, "si-pub");
    publisher.publish("si/a", b"both", QoS::AtLeastOnce, false, 1);
    let p = sub.recv_publish();
    let mut ids: Vec<u32> = p.properties.subscription_identifiers().collect();
    ids.sort();
    assert_eq!(ids, vec![7, 300_000], "one copy carrying every matching identifier");
    publisher.publish("si/a/b", b"one", QoS::AtLeastOnce, false, 2);
    let p = sub.recv_publish();
    assert_eq!(
        p.properties.subscription_identifiers().collect::<Vec<_>>(),
        vec![300_000]
    );
    sub.expect_quiet();
    // A retained message sent because of a new subscription carries its identifier.
    publisher.publish("kept/x", b"stored", QoS::AtLeastOnce, true, 3);
    subscribe_with_id(&mut sub, 4, "kept/#", SubscriptionOptions::default(), Some(42));
    let p = sub.recv_publish();
    assert!(p.retain);
    assert_eq!(p.properties.subscription_identifiers().collect::<Vec<_>>(), vec![42]);
}

#[test]
fn a_3_1_1_subscriber_never_sees_identifiers() {
    let broker = Broker::start();
    let mut v3 = broker.connect(V311, "si-v3");
    v3.subscribe("mix/#", QoS::AtMostOnce);
    let mut v5 = broker.connect(V5, "si-v5");
    subscribe_with_id(&mut v5, 1, "mix/#", SubscriptionOptions::default(), Some(5));
    let mut publisher = broker.connect(V5, "si-pub2");
    publisher.publish("mix/t", b"x", QoS::AtLeastOnce, false, 1);
    assert!(v3.recv_publish().properties.is_empty());
    assert_eq!(
        v5.recv_publish()
            .properties
            .subscription_identifiers()
            .collect::<Vec<_>>(),
        vec![5]
    );
}

fn expiring(topic: &str, payload: &'static [u8], seconds: u32, retain: bool, packet_id: u16) -> Packet {
    Packet::Publish(Publish {
        dup: false,
        qos: QoS::AtLeastOnce,
        retain,
        topic: ByteStr::from(topic),
        packet_id,
        properties: Properties(vec![Property::MessageExpiryInterval(seconds)]),
        payload: bytes::Bytes::from_static(payload),
    })
}

fn send_acked(c: &mut Client, packet: Packet) {
    c.send(&packet);
    assert!(matches!(c.recv(), Packet::PublishAck(_)));
}

/// Asserts that `left`, the Message Expiry Interval a message arrived with, is what an
/// interval of `sent` seconds has left after the time that passed between `before` (just
/// before it was published) and now: the broker's own count of that time is no longer
/// than ours, whatever the load. `at_least_passed`: how long the broker certainly held it.
fn assert_left(left: u32, sent: u32, before: Instant, at_least_passed: Duration) {
    let passed = before.elapsed().as_secs_f64();
    let (low, high) = (
        f64::from(sent) - passed.ceil() - 1.0,
        f64::from(sent) - at_least_passed.as_secs_f64().floor(),
    );
    assert!(
        (low..=high).contains(&f64::from(left)),
        "{left} s left of {sent} after {passed:.1} s (at least {at_least_passed:?})"
    );
}

/// A broker whose expiry clock the test moves (`advance_clock`).
fn clocked() -> Broker {
    Broker::with_test_clock("clock.conf", "listener 0 127.0.0.1\nallow_anonymous true\n")
}

#[test]
fn expired_messages_are_dropped_and_the_rest_carry_what_they_have_left() {
    let mut broker = clocked();
    let mut connect = connect_packet(V5, "expiry-sub", false, 60);
    connect.properties.push(Property::SessionExpiryInterval(86_400));
    let mut sub = broker.client(V5);
    sub.connect(&connect);
    sub.subscribe("exp/#", QoS::AtLeastOnce);
    // Live: the interval arrives no larger than sent.
    let mut publisher = broker.connect(V5, "expiry-pub");
    let before = Instant::now();
    send_acked(&mut publisher, expiring("exp/live", b"live", 30, false, 1));
    let live = sub.recv_publish();
    assert_left(
        live.properties.message_expiry_interval().unwrap(),
        30,
        before,
        Duration::ZERO,
    );
    sub.send(&Packet::PublishAck(PublishResponse::new(live.packet_id)));
    sub.disconnect();
    // Offline: one message expires while queued, the other does not. The broker's clock
    // moves 601 s at once.
    send_acked(&mut publisher, expiring("exp/short", b"short", 600, false, 2));
    let before = Instant::now();
    send_acked(&mut publisher, expiring("exp/long", b"long", 3600, false, 3));
    broker.advance_clock(601);
    let mut sub = broker.client(V5);
    assert!(sub.connect(&connect).session_present);
    let p = sub.recv_publish();
    assert_eq!(&p.payload[..], b"long");
    let left = p.properties.message_expiry_interval().unwrap();
    assert_left(left, 3600 - 601, before, Duration::ZERO);
    sub.send(&Packet::PublishAck(PublishResponse::new(p.packet_id)));
    sub.expect_quiet();
}

#[test]
fn an_expired_retained_message_is_gone() {
    let mut broker = clocked();
    let mut publisher = broker.connect(V5, "ret-exp");
    send_acked(&mut publisher, expiring("rexp/a", b"brief", 600, true, 1));
    send_acked(&mut publisher, expiring("rexp/b", b"lasting", 6000, true, 2));
    broker.advance_clock(601);
    let mut late = broker.connect(V5, "ret-late");
    late.subscribe("rexp/#", QoS::AtLeastOnce);
    let p = late.recv_publish();
    assert_eq!(&p.payload[..], b"lasting");
    assert!(p.retain);
    late.send(&Packet::PublishAck(PublishResponse::new(p.packet_id)));
    late.expect_quiet();
}

#[test]
fn the_brokers_receive_maximum_is_advertised_and_enforced() {
    let broker = Broker::with_config(
        "rm.conf",
        "listener 0 127.0.0.1\nallow_anonymous true\nmax_inflight_messages 3\n",
    );
    let mut c = broker.client(V5);
    let ack = c.connect(&connect_packet(V5, "greedy", true, 60));
    assert_eq!(ack.properties.receive_maximum(), Some(3));
    // Three QoS 2 messages left unreleased are allowed; a fourth exceeds the maximum.
    for id in 1..=3u16 {
        c.send(&publish_packet("rm/t", b"x", QoS::ExactlyOnce, false, id));
        assert!(matches!(c.recv(), Packet::PublishReceived(r) if r.packet_id == id));
    }
    // A resend of one of them is not a new message.
    c.send(&publish_packet("rm/t", b"x", QoS::ExactlyOnce, false, 2));
    assert!(matches!(c.recv(), Packet::PublishReceived(r) if r.packet_id == 2));
    c.send(&publish_packet("rm/t", b"x", QoS::ExactlyOnce, false, 4));
    let seen = c.expect_closed();
    assert_eq!(disconnect_reason(&seen), ReasonCode::RECEIVE_MAXIMUM_EXCEEDED);
    assert!(broker.log_contains("[MQTT-3.3.4-9]"));
    // Releasing keeps a well-behaved client within the limit indefinitely.
    let mut polite = broker.client(V5);
    polite.connect(&connect_packet(V5, "polite", true, 60));
    for id in 1..=10u16 {
        polite.publish("rm/t", b"y", QoS::ExactlyOnce, false, id);
    }
}

#[test]
fn the_broker_assigns_topic_aliases_to_clients_that_allow_them() {
    let broker = Broker::start();
    let mut c = broker.client(V5);
    let mut connect = connect_packet(V5, "alias-taker", true, 60);
    connect.properties.push(Property::TopicAliasMaximum(2));
    c.connect(&connect);
    c.subscribe("ta/#", QoS::AtMostOnce);
    let mut publisher = broker.connect(V5, "alias-giver");
    for topic in ["ta/a", "ta/a", "ta/b", "ta/c", "ta/a"] {
        publisher.publish(topic, topic.as_bytes(), QoS::AtLeastOnce, false, 1);
    }
    let seen: Vec<(String, Option<u16>, Vec<u8>)> = (0..5)
        .map(|_| {
            let p = c.recv_publish();
            (p.topic.to_string(), p.properties.topic_alias(), p.payload.to_vec())
        })
        .collect();
    assert_eq!(
        seen,
        vec![
            ("ta/a".into(), Some(1), b"ta/a".to_vec()),
            ("".into(), Some(1), b"ta/a".to_vec()),
            ("ta/b".into(), Some(2), b"ta/b".to_vec()),
            ("ta/c".into(), None, b"ta/c".to_vec()),
            ("".into(), Some(1), b"ta/a".to_vec()),
        ],
        "two aliases at most; later topics in full"
    );
    // A client that did not allow aliases never receives one.
    let mut plain = broker.connect(V5, "no-alias");
    plain.subscribe("ta/#", QoS::AtMostOnce);
    publisher.publish("ta/a", b"x", QoS::AtLeastOnce, false, 2);
    let _ = c.recv_publish();
    let p = plain.recv_publish();
    assert_eq!((p.topic.as_str(), p.properties.topic_alias()), ("ta/a", None));
}

#[test]
fn tern_sub_resolves_the_aliases_it_allows() {
    let broker = Broker::start();
    let port = broker.addr.port().to_string();
    let mut publisher = broker.connect(V5, "tsa-pub");
    // A retained probe, printed once the subscription is in place.
    publisher.publish("tsa/probe", b"ready", QoS::AtLeastOnce, true, 1);
    let sub = Background::tern(&[
        "sub",
        "-h",
        "127.0.0.1",
        "-p",
        &port,
        "-V",
        "5",
        "-t",
        "tsa/#",
        "-v",
        "-C",
        "4",
        "-W",
        "20",
        "-D",
        "connect",
        "topic-alias-maximum",
        "5",
    ]);
    sub.wait_stdout("tsa/probe ready");
    for (i, topic) in ["tsa/x", "tsa/x", "tsa/y"].iter().enumerate() {
        publisher.publish(topic, format!("m{i}").as_bytes(), QoS::AtLeastOnce, false, 1);
    }
    assert_eq!(sub.finish().1, "tsa/probe ready\ntsa/x m0\ntsa/x m1\ntsa/y m2\n");
}
