//! Keepalive: PINGREQ/PINGRESP, and disconnection of a client silent for 1.5 x keepalive.
#![allow(clippy::unwrap_used)]
mod common;
use common::*;
use std::time::Duration;
use tern_proto::*;

#[test]
fn pingreq_gets_pingresp_exact_bytes() {
    let broker = Broker::start();
    let mut c = broker.connect(V311, "pinger");
    c.send_raw(b"\xc0\x00");
    let mut reply = [0u8; 2];
    std::io::Read::read_exact(&mut c.stream, &mut reply).unwrap();
    assert_eq!(&reply, b"\xd0\x00");
}

#[test]
fn a_silent_client_is_disconnected() {
    let broker = Broker::start();
    for version in VERSIONS {
        let mut c = broker.client(version);
        c.connect(&connect_packet(version, "quiet", true, 1));
        let seen = c.expect_closed();
        if version == V5 {
            assert_eq!(disconnect_reason(&seen), ReasonCode::KEEP_ALIVE_TIMEOUT);
        }
    }
    assert!(broker.log_contains("keepalive timeout"));
}

#[test]
fn a_client_that_pings_stays_connected() {
    let broker = Broker::start();
    let mut c = broker.client(V311);
    c.connect(&connect_packet(V311, "chatty", true, 1));
    // Time is the subject: pings 0.3 s apart for 2.4 s, well past the 1.5 s the broker
    // allows a silent client (a stall of over a second between two pings would be needed
    // to miss it).
    for _ in 0..8 {
        std::thread::sleep(Duration::from_millis(300));
        c.send(&Packet::PingRequest);
        assert_eq!(c.recv(), Packet::PingResponse);
    }
}
