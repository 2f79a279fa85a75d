//! Last will: published when a connection ends without DISCONNECT, never after one.
#![allow(clippy::unwrap_used)]
mod common;
use common::*;
use std::time::{Duration, Instant};
use tern_proto::*;

fn with_will(version: ProtocolVersion, id: &str, topic: &str, retain: bool, keep_alive: u16) -> Connect {
    let mut c = connect_packet(version, id, true, keep_alive);
    c.will = Some(Will {
        topic: ByteStr::from(topic),
        payload: bytes::Bytes::from_static(b"gone"),
        qos: QoS::AtLeastOnce,
        retain,
        properties: Properties::default(),
    });
    c
}

fn watcher(broker: &Broker, version: ProtocolVersion, filter: &str) -> Client {
    let mut w = broker.connect(version, &format!("watch-{filter}"));
    w.subscribe(filter, QoS::AtLeastOnce);
    w
}

#[test]
fn the_will_is_published_when_the_socket_drops() {
    let broker = Broker::start();
    for version in VERSIONS {
        let mut w = watcher(&broker, version, "will/drop");
        let mut c = broker.client(version);
        c.connect(&with_will(version, "dropper", "will/drop", false, 60));
        drop(c);
        let p = w.recv_publish();
        assert_eq!((p.topic.as_str(), &p.payload[..]), ("will/drop", &b"gone"[..]));
    }
}

#[test]
fn the_will_is_not_published_after_disconnect() {
    let broker = Broker::start();
    for version in VERSIONS {
        let mut w = watcher(&broker, version, "will/clean");
        let mut c = broker.client(version);
        c.connect(&with_will(version, "polite", "will/clean", false, 60));
        // The broker has decided about the will when it closes the socket.
        c.disconnect();
        w.expect_quiet();
    }
}

#[test]
fn the_will_is_published_on_protocol_violation_and_takeover() {
    let broker = Broker::start();
    for version in VERSIONS {
        let mut w = watcher(&broker, version, "will/bad");
        let mut c = broker.client(version);
        c.connect(&with_will(version, "violator", "will/bad", false, 60));
        c.send_raw(b"\x00\x00");
        assert_eq!(&w.recv_publish().payload[..], b"gone");
        let mut first = broker.client(version);
        first.connect(&with_will(version, "taken", "will/bad", false, 60));
        let _second = broker.connect(version, "taken");
        assert_eq!(&w.recv_publish().payload[..], b"gone");
    }
}

#[test]
fn the_will_is_published_on_keepalive_timeout_and_can_be_retained() {
    let broker = Broker::start();
    let mut w = watcher(&broker, V311, "will/ka");
    let mut c = broker.client(V311);
    c.connect(&with_will(V311, "silent", "will/ka", true, 1));
    // Say nothing: after 1.5 s the broker gives up and publishes the retained will.
    assert_eq!(&w.recv_publish().payload[..], b"gone");
    let mut late = broker.connect(V311, "late");
    late.subscribe("will/ka", QoS::AtLeastOnce);
    let p = late.recv_publish();
    assert!(p.retain);
    assert_eq!(&p.payload[..], b"gone");
}

/// A 5.0 client with a will delayed `delay` seconds and a session of `expiry` seconds.
fn delayed_will(broker: &Broker, id: &str, topic: &str, delay: u32, expiry: u32) -> Client {
    let mut connect = with_will(V5, id, topic, false, 60);
    connect.clean_start = false;
    connect.properties.push(Property::SessionExpiryInterval(expiry));
    if let Some(will) = connect.will.as_mut() {
        will.properties.push(Property::WillDelayInterval(delay));
    }
    let mut c = broker.client(V5);
    assert_eq!(c.connect(&connect).reason_code, ReasonCode::SUCCESS);
    c
}

#[test]
fn a_delayed_will_waits_for_its_delay() {
    let broker = Broker::start();
    let mut w = watcher(&broker, V5, "will/delayed");
    drop(delayed_will(&broker, "slow-will", "will/delayed", 2, 600));
    // The broker sees the drop after this instant, so the will is due 2 s after it at
    // the earliest, however loaded the machine is.
    let dropped = Instant::now();
    let p = w.recv_publish();
    let waited = dropped.elapsed();
    assert!(waited >= Duration::from_secs(2), "the will came after {waited:?}");
    assert_eq!(&p.payload[..], b"gone");
    assert_eq!(p.properties.will_delay_interval(), None, "the delay is not forwarded");
}

#[test]
fn a_reconnect_within_the_delay_cancels_the_will() {
    let mut broker = Broker::with_test_clock("will.conf", "listener 0 127.0.0.1\nallow_anonymous true\n");
    let mut w = watcher(&broker, V5, "will/cancelled");
    // Once the broker has closed its side too, the will waits for its delay.
    delayed_will(&broker, "back-soon", "will/cancelled", 600, 6000).hang_up();
    let _back = delayed_will(&broker, "back-soon", "will/cancelled", 600, 6000);
    // Past the delay on the broker's clock: a will still pending is published by the
    // housekeeping that has run when this returns.
    broker.advance_clock(700);
    w.expect_quiet();
}

#[test]
fn a_session_ending_first_sends_the_will_before_its_delay() {
    let broker = Broker::start();
    let mut w = watcher(&broker, V5, "will/expiry");
    drop(delayed_will(&broker, "short-session", "will/expiry", 60, 1));
    // The session expires after 1 s, long before the 60 s delay: the will goes out then.
    let p = w.recv_publish();
    assert_eq!(&p.payload[..], b"gone");
    // A clean start by the same client id ends the old session at once, too.
    delayed_will(&broker, "replaced", "will/expiry", 60, 600).hang_up();
    let _fresh = broker.connect(V5, "replaced");
    assert_eq!(&w.recv_publish().payload[..], b"gone");
}
