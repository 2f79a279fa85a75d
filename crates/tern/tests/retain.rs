//! Retained messages: stored per topic, replaced, cleared by an empty payload, sent on
//! subscribe with RETAIN set, forwarded live with RETAIN clear.
#![allow(clippy::unwrap_used)]
mod common;
use common::*;
use tern_proto::*;

#[test]
fn a_retained_message_is_sent_to_later_subscribers_with_retain_set() {
    let broker = Broker::start();
    for version in VERSIONS {
        let topic = format!("r/{version}");
        let mut publisher = broker.connect(version, "rp");
        publisher.publish(&topic, b"first", QoS::AtLeastOnce, true, 1);
        publisher.publish(&topic, b"second", QoS::AtLeastOnce, true, 2);
        let mut sub = broker.connect(version, "rs");
        sub.subscribe("r/#", QoS::AtLeastOnce);
        let p = sub.recv_publish();
        assert!(p.retain);
        assert_eq!(&p.payload[..], b"second", "replaced by the later message");
        sub.send(&Packet::PublishAck(PublishResponse::new(p.packet_id)));
        sub.expect_quiet();
        // Live forwarding clears RETAIN [MQTT-3.3.1-9].
        publisher.publish(&topic, b"third", QoS::AtMostOnce, true, 0);
        let live = sub.recv_publish();
        assert!(!live.retain);
        assert_eq!(&live.payload[..], b"third");
        // An empty retained payload clears the topic.
        publisher.publish(&topic, b"", QoS::AtMostOnce, true, 0);
        let _ = sub.recv_publish();
        let mut late = broker.connect(version, "rl");
        late.subscribe(&topic, QoS::AtMostOnce);
        late.expect_quiet();
    }
}

#[test]
fn retained_messages_are_sent_at_most_at_the_granted_qos() {
    let broker = Broker::start();
    let mut publisher = broker.connect(V311, "rq");
    publisher.publish("rq/t", b"x", QoS::ExactlyOnce, true, 1);
    let mut sub = broker.connect(V311, "rqs");
    sub.subscribe("rq/t", QoS::AtLeastOnce);
    let p = sub.recv_publish();
    assert_eq!((p.qos, p.retain), (QoS::AtLeastOnce, true));
}

#[test]
fn mqtt_5_retain_handling_and_retain_as_published() {
    let broker = Broker::start();
    let mut publisher = broker.connect(V5, "rh-pub");
    // QoS 1: acknowledged, so stored before the subscriptions below are made.
    publisher.publish("rh", b"kept", QoS::AtLeastOnce, true, 1);
    let mut sub = broker.connect(V5, "rh-sub");
    let opts = |rh, rap| SubscriptionOptions {
        qos: QoS::AtMostOnce,
        no_local: false,
        retain_as_published: rap,
        retain_handling: rh,
    };
    sub.subscribe_with(1, &[("rh", opts(RetainHandling::DoNotSend, true))]);
    sub.expect_quiet();
    sub.subscribe_with(2, &[("rh", opts(RetainHandling::SendAtNewSubscribe, true))]);
    sub.expect_quiet();
    sub.subscribe_with(3, &[("rh", opts(RetainHandling::SendAtSubscribe, true))]);
    assert!(sub.recv_publish().retain);
    publisher.publish("rh", b"live", QoS::AtMostOnce, true, 0);
    assert!(sub.recv_publish().retain, "retain as published keeps the flag");
}
