//! After a restart, a message queued for many persistent sessions is held once in memory,
//! as it was before the restart, not once per session.
#![allow(clippy::unwrap_used)]
mod common;
use common::*;
use std::path::Path;
use tern_proto::*;

fn config(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("tern.conf");
    std::fs::write(
        &path,
        format!(
            "listener 0 127.0.0.1\nallow_anonymous true\nmax_queued_messages 0\nmax_queued_bytes 0\npersistence true\npersistence_location {}\n",
            dir.join("data").display()
        ),
    )
    .unwrap();
    path
}

#[test]
fn restored_messages_shared_by_many_sessions_are_held_once() {
    const SESSIONS: usize = 100;
    const MESSAGES: u16 = 100;
    // Large enough that copies per session (80 MB) dwarf what varies from run to run (the
    // store's page cache, up to 32 MiB, fills while writing and again while reading).
    const PAYLOAD: usize = 8 * 1024;
    let dir = tempfile::tempdir().unwrap();
    let conf = config(dir.path());
    let broker = Broker::from_file(&conf);
    for i in 0..SESSIONS {
        let mut c = broker.client(V311);
        c.connect(&connect_packet(V311, &format!("offline-{i}"), false, 60));
        c.subscribe("fleet/#", QoS::AtLeastOnce);
        c.disconnect();
    }
    let mut publisher = broker.connect(V5, "fleet-publisher");
    let payload = vec![b'm'; PAYLOAD];
    for id in 1..=MESSAGES {
        publisher.publish("fleet/update", &payload, QoS::AtLeastOnce, false, id);
    }
    let live = broker.rss_kib();
    broker.signal(SIGTERM);
    let mut stopped = broker;
    let _ = stopped.child.wait();

    let broker = Broker::from_file(&conf);
    let expected = format!(
        "restored {SESSIONS} sessions, {} messages",
        SESSIONS * usize::from(MESSAGES)
    );
    assert!(broker.log_contains(&expected), "{expected}");
    let restored = broker.rss_kib();
    let copies_kib = (SESSIONS * usize::from(MESSAGES) * PAYLOAD / 1024) as u64;
    eprintln!("{SESSIONS} sessions x {MESSAGES} messages of {PAYLOAD} bytes: RSS {live} KiB live, {restored} KiB after restart (copies would add {copies_kib} KiB)");
    assert!(
        restored < live + copies_kib / 2,
        "restored messages are shared: {live} KiB live, {restored} KiB after restart"
    );
    // And they are all delivered.
    let mut c = broker.client(V311);
    assert!(c.connect(&connect_packet(V311, "offline-0", false, 60)).session_present);
    for _ in 0..MESSAGES {
        let p = c.recv_publish();
        assert_eq!(p.payload.len(), PAYLOAD);
        c.send(&Packet::PublishAck(PublishResponse::new(p.packet_id)));
    }
}
