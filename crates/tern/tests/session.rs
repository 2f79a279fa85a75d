//! Clean and persistent sessions: what is kept while offline, session present, resending
//! in-flight messages with DUP, bounded queues.
#![allow(clippy::unwrap_used)]
mod common;
use common::*;
use tern_proto::*;

/// A persistent session: Clean Session 0 (3.1.1), or Clean Start 0 with a one-hour
/// Session Expiry Interval (5.0).
fn persistent(broker: &Broker, version: ProtocolVersion, id: &str) -> (Client, ConnectAck) {
    let mut c = broker.client(version);
    let mut connect = connect_packet(version, id, false, 60);
    if version == V5 {
        connect.properties.push(Property::SessionExpiryInterval(3600));
    }
    let ack = c.connect(&connect);
    (c, ack)
}

#[test]
fn a_5_0_session_without_expiry_interval_ends_with_its_connection() {
    let broker = Broker::start();
    let mut c = broker.client(V5);
    c.connect(&connect_packet(V5, "no-expiry", false, 60));
    c.subscribe("x", QoS::AtLeastOnce);
    c.disconnect();
    let mut c = broker.client(V5);
    let ack = c.connect(&connect_packet(V5, "no-expiry", false, 60));
    assert!(!ack.session_present);
}

#[test]
fn a_5_0_session_expires_after_its_interval_and_disconnect_can_change_it() {
    let mut broker = Broker::with_test_clock("clock.conf", "listener 0 127.0.0.1\nallow_anonymous true\n");
    let mut c = broker.client(V5);
    let mut connect = connect_packet(V5, "short", false, 60);
    connect.properties.push(Property::SessionExpiryInterval(600));
    c.connect(&connect);
    c.disconnect();
    // Past its interval on the broker's clock (counted from the close disconnect() waited
    // for): the housekeeping that has run when this returns ended it.
    broker.advance_clock(601);
    assert!(broker.logged("persistent session expired"));
    let (c, ack) = persistent(&broker, V5, "short");
    assert!(!ack.session_present, "expired after its interval");
    // DISCONNECT with Session Expiry Interval 0 ends a persistent session at once: the
    // broker has handled it when it closes the socket.
    let mut c = c;
    c.send(&Packet::Disconnect(Disconnect {
        reason_code: ReasonCode::SUCCESS,
        properties: Properties(vec![Property::SessionExpiryInterval(0)]),
    }));
    c.expect_closed();
    let (_, ack) = persistent(&broker, V5, "short");
    assert!(!ack.session_present);
}

#[test]
fn a_persistent_session_keeps_subscriptions_and_qos_1_messages_while_offline() {
    let broker = Broker::start();
    for version in VERSIONS {
        let id = format!("keep-{version}");
        let (mut c, ack) = persistent(&broker, version, &id);
        assert!(!ack.session_present);
        c.subscribe("offline/#", QoS::AtLeastOnce);
        c.disconnect();
        let mut publisher = broker.connect(version, "op");
        publisher.publish("offline/a", b"q1", QoS::AtLeastOnce, false, 1);
        publisher.publish("offline/b", b"q0", QoS::AtMostOnce, false, 0);
        publisher.publish("offline/c", b"q2", QoS::ExactlyOnce, false, 2);
        let (mut c, ack) = persistent(&broker, version, &id);
        assert!(ack.session_present);
        let first = c.recv_publish();
        assert_eq!(&first.payload[..], b"q1");
        let second = c.recv_publish();
        assert_eq!((&second.payload[..], second.qos), (&b"q2"[..], QoS::AtLeastOnce));
        c.send(&Packet::PublishAck(PublishResponse::new(first.packet_id)));
        c.send(&Packet::PublishAck(PublishResponse::new(second.packet_id)));
        // The QoS 0 message was not queued.
        c.expect_quiet();
        // Subscriptions survived too.
        publisher.publish("offline/d", b"live", QoS::AtMostOnce, false, 0);
        assert_eq!(&c.recv_publish().payload[..], b"live");
    }
}

#[test]
fn a_clean_session_discards_the_old_state() {
    let broker = Broker::start();
    for version in VERSIONS {
        let (mut c, _) = persistent(&broker, version, "discard");
        c.subscribe("gone", QoS::AtLeastOnce);
        c.disconnect();
        let mut c = broker.client(version);
        let ack = c.connect(&connect_packet(version, "discard", true, 60));
        assert!(!ack.session_present);
        c.disconnect();
        let (mut c, ack) = persistent(&broker, version, "discard");
        assert!(!ack.session_present);
        let mut publisher = broker.connect(version, "dp");
        publisher.publish("gone", b"x", QoS::AtLeastOnce, false, 1);
        c.expect_quiet();
    }
}

#[test]
fn unacknowledged_messages_are_resent_with_dup_after_reconnect() {
    let broker = Broker::start();
    for version in VERSIONS {
        let id = format!("dup-{version}");
        let (mut c, _) = persistent(&broker, version, &id);
        c.subscribe("dup/1", QoS::AtLeastOnce);
        c.subscribe("dup/2", QoS::ExactlyOnce);
        let mut publisher = broker.connect(version, "dupp");
        publisher.publish("dup/1", b"a", QoS::AtLeastOnce, false, 1);
        publisher.publish("dup/2", b"b", QoS::ExactlyOnce, false, 2);
        let a = c.recv_publish();
        let b = c.recv_publish();
        assert!(!a.dup && !b.dup);
        // Acknowledge nothing; the connection drops without DISCONNECT.
        drop(c);
        let (mut c, ack) = persistent(&broker, version, &id);
        assert!(ack.session_present);
        let a2 = c.recv_publish();
        let b2 = c.recv_publish();
        assert!(a2.dup && b2.dup);
        assert_eq!((a2.packet_id, b2.packet_id), (a.packet_id, b.packet_id));
        c.send(&Packet::PublishAck(PublishResponse::new(a2.packet_id)));
        c.send(&Packet::PublishReceived(PublishResponse::new(b2.packet_id)));
        assert!(matches!(c.recv(), Packet::PublishRelease(r) if r.packet_id == b2.packet_id));
        // PUBREL is resent too if the connection drops before PUBCOMP.
        drop(c);
        let (mut c, _) = persistent(&broker, version, &id);
        assert!(matches!(c.recv(), Packet::PublishRelease(r) if r.packet_id == b2.packet_id));
        c.send(&Packet::PublishComplete(PublishResponse::new(b2.packet_id)));
        c.expect_quiet();
    }
}

#[test]
fn the_offline_queue_is_bounded_and_drops_are_logged() {
    let broker = Broker::with_config(
        "q.conf",
        "listener 0 127.0.0.1\nallow_anonymous true\nmax_queued_messages 5\n",
    );
    let (mut c, _) = persistent(&broker, V311, "bounded");
    c.subscribe("b", QoS::AtLeastOnce);
    c.disconnect();
    let mut publisher = broker.connect(V311, "bp");
    for i in 0..10u8 {
        publisher.publish("b", &[i], QoS::AtLeastOnce, false, u16::from(i) + 1);
    }
    let (mut c, _) = persistent(&broker, V311, "bounded");
    for i in 0..5u8 {
        let p = c.recv_publish();
        assert_eq!(&p.payload[..], &[i]);
        c.send(&Packet::PublishAck(PublishResponse::new(p.packet_id)));
    }
    c.expect_quiet();
    assert!(broker.log_contains("queue full"));
}

#[test]
fn persistent_sessions_expire_after_persistent_client_expiration() {
    let broker = Broker::with_config("e.toml", "persistent_client_expiration = \"1s\"\n[[listener]]\nport = 0\nbind_address = \"127.0.0.1\"\nallow_anonymous = true\n");
    let (c, _) = persistent(&broker, V311, "expiring");
    c.disconnect();
    // Time is the subject: housekeeping (every second) ends it after its second.
    assert!(broker.log_line(&["persistent session expired", "client=expiring"]));
    let (_, ack) = persistent(&broker, V311, "expiring");
    assert!(!ack.session_present);
}
