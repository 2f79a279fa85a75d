//! What one connection can make the broker hold: before CONNACK at most what a CONNECT
//! needs (max_connect_packet_size), a finite message_size_limit by default, queues toward a
//! client bounded in bytes by default, and memory given back to the system after a burst.
#![allow(clippy::unwrap_used)]
mod common;
use common::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};
use tern_proto::*;

fn secured_broker() -> Broker {
    let dir = tempfile::tempdir().unwrap();
    let passwords = dir.path().join("passwd");
    let out = tern(&["passwd", "-b", "-c", passwords.to_str().unwrap(), "alice", "apple"]);
    assert!(out.status.success());
    let broker = Broker::with_config(
        "limits.conf",
        &format!(
            "listener 0 127.0.0.1\nallow_anonymous false\npassword_file {}\n",
            passwords.display()
        ),
    );
    // The password file must outlive the start only.
    drop(dir);
    broker
}

/// Streams up to `total` bytes after `head` until the broker closes the socket; returns
/// how many it took.
fn stream_until_closed(broker: &Broker, head: &[u8], total: usize) -> usize {
    let mut s = TcpStream::connect(broker.addr).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(10))).unwrap();
    if s.write_all(head).is_err() {
        return 0;
    }
    let chunk = vec![0x41u8; 16 * 1024];
    let mut sent = 0;
    while sent < total {
        match s.write(&chunk) {
            Ok(n) => sent += n,
            Err(_) => break,
        }
    }
    sent
}

#[test]
fn an_unauthenticated_giant_connect_is_refused_at_its_fixed_header() {
    let broker = secured_broker();
    let before = broker.rss_kib();
    // Eight sockets each announcing a 256 MB CONNECT and streaming 32 MB.
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let addr = broker.addr;
            std::thread::spawn(move || {
                let mut s = TcpStream::connect(addr).unwrap();
                s.set_write_timeout(Some(Duration::from_secs(10))).unwrap();
                let _ = s.write_all(&[0x10, 0xff, 0xff, 0xff, 0x7f]);
                let chunk = vec![0x41u8; 64 * 1024];
                let mut sent = 0usize;
                while sent < 32 << 20 {
                    match s.write(&chunk) {
                        Ok(n) => sent += n,
                        Err(_) => break,
                    }
                }
                sent
            })
        })
        .collect();
    let sent: Vec<usize> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    let after = broker.rss_kib();
    eprintln!("giant CONNECTs: RSS {before} KiB before, {after} KiB after; bytes taken {sent:?}");
    assert!(
        sent.iter().all(|&n| n < 32 << 20),
        "every socket was closed before its 32 MB were taken: {sent:?}"
    );
    assert!(after < before + 16 * 1024, "RSS grew from {before} to {after} KiB");
    assert!(broker.log_contains("larger than max_connect_packet_size"));
    // The broker still serves.
    let _ = stream_until_closed(&broker, &[0xc0, 0x00], 0);
    let mut c = broker.client(V5);
    let mut connect = connect_packet(V5, "after", true, 60);
    connect.username = Some(ByteStr::from("alice"));
    connect.password = Some(bytes::Bytes::from_static(b"apple"));
    assert_eq!(c.connect(&connect).reason_code, ReasonCode::SUCCESS);
}

#[test]
fn a_5_0_connect_over_the_limit_gets_connack_0x95() {
    let broker = secured_broker();
    let mut s = TcpStream::connect(broker.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    // Remaining Length 100,000 (over 64 KiB), then the start of a 5.0 CONNECT.
    s.write_all(&[
        0x10, 0xa0, 0x8d, 0x06, 0x00, 0x04, b'M', b'Q', b'T', b'T', 0x05, 0x02, 0x00, 0x3c,
    ])
    .unwrap();
    let mut reply = Vec::new();
    let _ = s.read_to_end(&mut reply);
    assert_eq!(
        reply,
        [0x20, 0x03, 0x00, 0x95, 0x00],
        "CONNACK Packet too large, then close"
    );
}

#[test]
fn the_default_message_size_limit_is_1_mib_and_advertised() {
    let broker = Broker::start();
    let mut c = broker.client(V5);
    let ack = c.connect(&connect_packet(V5, "big", true, 60));
    assert!(
        ack.properties.maximum_packet_size().is_some(),
        "CONNACK advertises the Maximum Packet Size: {ack:?}"
    );
    c.subscribe("big", QoS::AtMostOnce);
    let fits = vec![b'f'; 1 << 20];
    assert!(c.publish("big", &fits, QoS::AtLeastOnce, false, 1).is_success());
    assert_eq!(c.recv_publish().payload.len(), 1 << 20);
    let over = vec![b'o'; (1 << 20) + 1];
    assert_eq!(
        c.publish("big", &over, QoS::AtLeastOnce, false, 2),
        ReasonCode::QUOTA_EXCEEDED
    );
    assert!(c.ping_collect().is_empty(), "the oversized message was not forwarded");
}

#[test]
fn a_slow_subscriber_costs_at_most_its_queued_bytes_and_memory_comes_back() {
    let broker = Broker::start();
    let idle = broker.rss_kib();
    // A subscriber that never reads, at QoS 1 so nothing of its queue may be skipped.
    let mut slow = broker.client(V311);
    slow.connect(&connect_packet(V311, "slow", true, 60));
    slow.subscribe("burst", QoS::AtLeastOnce);
    let mut publisher = broker.connect(V311, "burster");
    let payload = vec![b'p'; 1 << 20];
    for i in 1..=400u16 {
        publisher.publish("burst", &payload, QoS::AtLeastOnce, false, i);
    }
    let during = broker.rss_kib();
    assert!(
        during < idle + 160 * 1024,
        "400 MB published to a subscriber that does not read: RSS {idle} -> {during} KiB"
    );
    drop(slow);
    drop(publisher);
    // Freed memory is returned within seconds: wait for it, with a deadline.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut after = broker.rss_kib();
    while after > idle + 24 * 1024 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
        after = broker.rss_kib();
    }
    eprintln!("slow subscriber, 400 x 1 MiB: RSS {idle} KiB idle, {during} KiB during, {after} KiB after");
    assert!(
        after <= idle + 24 * 1024,
        "memory returned after the burst: {idle} -> {during} -> {after} KiB"
    );
}
