//! Time as the subject, on the broker's test clock (`TERN_TEST_CLOCK=1`): session expiry,
//! persistent_client_expiration, will delay and message expiry with intervals of hours,
//! checked on either side of their deadline without waiting for them. Each step waits on
//! the broker saying its housekeeping ran at the new time, never on the wall clock.
#![allow(clippy::unwrap_used)]
mod common;
use common::*;
use tern_proto::*;

const CONFIG: &str = "listener 0 127.0.0.1\nallow_anonymous true\npersistent_client_expiration 2h\n";

fn persistent(version: ProtocolVersion, id: &str, expiry: u32) -> Connect {
    let mut c = connect_packet(version, id, false, 0);
    if version.is_v5() {
        c.properties.push(Property::SessionExpiryInterval(expiry));
    }
    c
}

/// Whether `id`'s session is still there: a reconnect that finds it says so (and leaves
/// it offline again, from the current time).
fn session_present(broker: &Broker, version: ProtocolVersion, id: &str, expiry: u32) -> bool {
    let mut c = broker.client(version);
    let present = c.connect(&persistent(version, id, expiry)).session_present;
    c.disconnect();
    present
}

#[test]
fn sessions_expire_at_their_interval_and_not_before() {
    for version in VERSIONS {
        let mut broker = Broker::with_test_clock("clock.conf", CONFIG);
        // 5.0: the Session Expiry Interval, one hour; 3.1.1: persistent_client_expiration, 2 h.
        let (id, seconds) = ("expiring", if version.is_v5() { 3600 } else { 7200 });
        let mut c = broker.client(version);
        c.connect(&persistent(version, id, seconds));
        c.subscribe("keep/#", QoS::AtLeastOnce);
        c.disconnect();
        broker.advance_clock(u64::from(seconds) - 60);
        assert!(
            session_present(&broker, version, id, seconds),
            "{version:?}: kept before its expiry"
        );
        broker.advance_clock(u64::from(seconds) + 1);
        assert!(
            !session_present(&broker, version, id, seconds),
            "{version:?}: gone after its expiry"
        );
        assert!(broker.log_contains("persistent session expired"));
    }
}

#[test]
fn a_delayed_will_is_published_when_its_delay_has_passed() {
    let mut broker = Broker::with_test_clock("clock.conf", CONFIG);
    let mut watcher = broker.connect(V5, "watcher");
    watcher.subscribe("wills/#", QoS::AtLeastOnce);
    let mut connect = persistent(V5, "mortal", 7200);
    let mut properties = Properties::default();
    properties.push(Property::WillDelayInterval(600));
    connect.will = Some(Will {
        topic: ByteStr::from("wills/mortal"),
        payload: bytes::Bytes::from_static(b"gone"),
        qos: QoS::AtLeastOnce,
        retain: false,
        properties,
    });
    let mut mortal = broker.client(V5);
    mortal.connect(&connect);
    // Gone without DISCONNECT: the will waits for its delay. The broker closes its side
    // once the will is scheduled.
    mortal.stream.shutdown(std::net::Shutdown::Write).unwrap();
    mortal.expect_closed();
    broker.advance_clock(590);
    watcher.expect_quiet();
    broker.advance_clock(20);
    let will = watcher.recv_publish();
    assert_eq!(&will.payload[..], b"gone");
}

#[test]
fn queued_messages_expire_at_their_interval_and_carry_what_is_left() {
    let mut broker = Broker::with_test_clock("clock.conf", CONFIG);
    let mut sleeper = broker.client(V5);
    sleeper.connect(&persistent(V5, "sleeper", 86_400));
    sleeper.subscribe("news/#", QoS::AtLeastOnce);
    sleeper.disconnect();
    let mut publisher = broker.connect(V5, "publisher");
    for (topic, seconds, id) in [("news/short", 3600u32, 1u16), ("news/long", 7200, 2)] {
        let publish = Packet::Publish(Publish {
            dup: false,
            qos: QoS::AtLeastOnce,
            retain: false,
            topic: ByteStr::from(topic),
            packet_id: id,
            properties: Properties(vec![Property::MessageExpiryInterval(seconds)]),
            payload: bytes::Bytes::from_static(b"x"),
        });
        publisher.send(&publish);
        assert!(matches!(publisher.recv(), Packet::PublishAck(_)));
    }
    broker.advance_clock(5400);
    let mut back = broker.client(V5);
    assert!(back.connect(&persistent(V5, "sleeper", 86_400)).session_present);
    let p = back.recv_publish();
    assert_eq!(
        &p.topic[..],
        "news/long",
        "the one-hour message expired, the two-hour one did not"
    );
    let left = p.properties.message_expiry_interval().unwrap();
    assert!((1790..=1800).contains(&left), "1,800 s of 7,200 left, got {left}");
    back.send(&Packet::PublishAck(PublishResponse::new(p.packet_id)));
    back.expect_quiet();
}
