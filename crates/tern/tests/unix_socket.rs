//! mosquitto's Unix socket listener (`listener 0 /path`): MQTT over a Unix stream socket,
//! with the same sessions and routing as the TCP listener beside it, checked with a raw
//! client and with mosquitto_sub's `--unix`.
#![allow(clippy::unwrap_used)]
mod common;
use bytes::BytesMut;
use common::*;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use tern_proto::*;

/// Sends `packet` over `stream` and reads one packet back.
fn exchange(stream: &mut UnixStream, version: ProtocolVersion, packet: &Packet) -> Packet {
    let mut out = BytesMut::new();
    encode(packet, version, &mut out).unwrap();
    stream.write_all(&out).unwrap();
    let mut buf = BytesMut::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(p) = decode(&mut buf, version, usize::MAX).unwrap() {
            return p;
        }
        let n = stream.read(&mut chunk).unwrap();
        assert!(n > 0, "closed");
        buf.extend_from_slice(&chunk[..n]);
    }
}

#[test]
fn a_unix_socket_listener_serves_mqtt_beside_tcp() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tern.sock");
    let broker = Broker::with_config(
        "unix.conf",
        &format!(
            "listener 0 127.0.0.1\nlistener 0 {}\nallow_anonymous true\n",
            path.display()
        ),
    );
    assert!(broker.log_contains(&format!("listening on {}", path.display())));
    for version in VERSIONS {
        let mut tcp = broker.connect(version, "over-tcp");
        tcp.subscribe("local/#", QoS::AtLeastOnce);
        let mut unix = UnixStream::connect(&path).unwrap();
        unix.set_read_timeout(Some(PATIENCE)).unwrap();
        let connect = Packet::Connect(Box::new(connect_packet(version, "over-unix", true, 60)));
        match exchange(&mut unix, version, &connect) {
            Packet::ConnectAck(ack) => assert_eq!(ack.reason_code, ReasonCode::SUCCESS),
            other => panic!("expected CONNACK, got {other:?}"),
        }
        let publish = publish_packet("local/x", b"from the socket", QoS::AtLeastOnce, false, 1);
        assert!(matches!(exchange(&mut unix, version, &publish), Packet::PublishAck(_)));
        assert_eq!(&tcp.recv_publish().payload[..], b"from the socket");
    }
    if peer_available("mosquitto_sub", program_exists("mosquitto_sub")) {
        let mut publisher = broker.connect(V311, "for-mosquitto-sub");
        publisher.publish("local/kept", b"retained", QoS::AtLeastOnce, true, 1);
        let out = std::process::Command::new("mosquitto_sub")
            .arg("--unix")
            .arg(&path)
            .args(["-t", "local/kept", "-C", "1", "-W", "10"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "retained");
    }
    // A broker that stops removes its socket file.
    broker.stop();
    assert!(!path.exists(), "the socket file is removed at stop");
}
