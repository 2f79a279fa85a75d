//! `log_type all` (and `tern broker -v`) shows every packet in and out in mosquitto's
//! words.
#![allow(clippy::unwrap_used)]
mod common;
use common::*;
use tern_proto::*;

#[test]
fn log_type_all_shows_every_packet_as_mosquitto_does() {
    let broker = Broker::with_config(
        "verbose.conf",
        "listener 0 127.0.0.1\nallow_anonymous true\nlog_type all\n",
    );
    let mut c = broker.connect(V311, "client");
    c.subscribe("topic", QoS::AtLeastOnce);
    assert_eq!(
        c.publish("topic", b"hello", QoS::AtLeastOnce, false, 3),
        ReasonCode::SUCCESS
    );
    let p = c.recv_publish();
    c.send(&Packet::PublishAck(PublishResponse::new(p.packet_id)));
    c.ping();
    for line in [
        "Received SUBSCRIBE from client: topic (QoS 1)",
        "Received PUBLISH from client (d0, q1, r0, m3, 'topic', ... (5 bytes))",
        "Sending PUBACK to client (m3, rc0)",
        "Sending PUBLISH to client (d0, q1, r0, m1, 'topic', ... (5 bytes))",
        "Received PUBACK from client (Mid: 1, RC:0)",
        "Received PINGREQ from client",
        "Sending PINGRESP to client",
    ] {
        assert!(broker.log_contains(line), "{line}\n{:?}", broker.log.lock().unwrap());
    }
}

#[test]
fn without_log_type_debug_no_packet_is_logged() {
    let broker = Broker::with_config("quiet.conf", "listener 0 127.0.0.1\nallow_anonymous true\n");
    let mut c = broker.connect(V311, "client");
    c.ping();
    c.disconnect();
    assert!(broker.log_contains("client closed"));
    assert!(
        !broker.logged("Received PINGREQ"),
        "no packet lines at the default level"
    );
}
