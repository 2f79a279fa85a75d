//! The durable store: what the broker acknowledged survives kill -9 (QoS 1 may repeat,
//! QoS 2 may not), sessions, subscriptions and retained messages survive restarts, expired
//! sessions leave the store, and a corrupt data file does not stop the broker.
#![allow(clippy::unwrap_used)]
mod common;
use bytes::BytesMut;
use common::*;
use std::collections::{HashMap, HashSet};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tern_proto::*;

fn config(dir: &Path, durability: &str) -> PathBuf {
    let path = dir.join("tern.conf");
    std::fs::write(
        &path,
        format!(
            "listener 0 127.0.0.1\nallow_anonymous true\nmax_queued_messages 0\npersistence true\npersistence_location {}\ndurability {durability}\n",
            dir.join("data").display()
        ),
    )
    .unwrap();
    path
}

/// A persistent 3.1.1 session for `id` subscribed to `filter`, left offline.
fn park_subscriber(broker: &Broker, id: &str, filter: &str, qos: QoS) {
    let mut c = broker.client(V311);
    let ack = c.connect(&connect_packet(V311, id, false, 60));
    assert_eq!(ack.reason_code, ReasonCode::SUCCESS);
    c.subscribe(filter, qos);
    c.disconnect();
}

/// Publishes `count` messages as fast as the socket takes them while another thread
/// records which the broker acknowledged (PUBACK, or PUBREC for QoS 2); after `kill_after`
/// acknowledgements the broker is killed with SIGKILL. Returns the acknowledged payloads.
fn publish_until_killed(
    broker: Broker,
    topic: &str,
    qos: QoS,
    count: u16,
    kill_after: usize,
    tag: &str,
) -> HashSet<String> {
    let mut stream = TcpStream::connect(broker.addr).unwrap();
    let mut out = BytesMut::new();
    encode(
        &Packet::Connect(Box::new(connect_packet(V311, &format!("pub-{tag}"), true, 60))),
        V311,
        &mut out,
    )
    .unwrap();
    stream.write_all(&out).unwrap();
    let acked: Arc<Mutex<HashSet<u16>>> = Arc::default();
    let seen = Arc::new(AtomicUsize::new(0));
    let reader = {
        let (mut stream, acked, seen) = (stream.try_clone().unwrap(), acked.clone(), seen.clone());
        std::thread::spawn(move || {
            let mut buf = BytesMut::new();
            let mut chunk = [0u8; 4096];
            while let Ok(n) = stream.read(&mut chunk) {
                if n == 0 {
                    break;
                }
                buf.extend_from_slice(&chunk[..n]);
                while let Ok(Some(packet)) = decode(&mut buf, V311, usize::MAX) {
                    if let Packet::PublishAck(r) | Packet::PublishReceived(r) = packet {
                        acked.lock().unwrap().insert(r.packet_id);
                        seen.fetch_add(1, Ordering::SeqCst);
                    }
                }
            }
        })
    };
    let mut killed = Some(broker);
    for id in 1..=count {
        let mut out = BytesMut::new();
        encode(
            &publish_packet(topic, format!("{tag}-{id}").as_bytes(), qos, false, id),
            V311,
            &mut out,
        )
        .unwrap();
        if stream.write_all(&out).is_err() {
            break;
        }
        if id % 20 == 0 {
            std::thread::sleep(Duration::from_millis(2));
        }
        if seen.load(Ordering::SeqCst) >= kill_after {
            if let Some(b) = killed.take() {
                b.kill_9();
            }
        }
    }
    let deadline = Instant::now() + PATIENCE;
    while killed.is_some() && seen.load(Ordering::SeqCst) < kill_after && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    if let Some(b) = killed.take() {
        b.kill_9();
    }
    reader.join().unwrap();
    let acked = acked.lock().unwrap();
    acked.iter().map(|id| format!("{tag}-{id}")).collect()
}

/// Resumes `id`'s session and collects what it receives until the broker has nothing
/// more for it.
fn drain(broker: &Broker, id: &str) -> Vec<String> {
    let mut c = broker.client(V311);
    let ack = c.connect(&connect_packet(V311, id, false, 60));
    assert!(ack.session_present, "the session survived");
    let mut got = Vec::new();
    c.drain(|c, packet| match packet {
        Packet::Publish(p) => {
            got.push(String::from_utf8(p.payload.to_vec()).unwrap());
            match p.qos {
                QoS::AtLeastOnce => c.send(&Packet::PublishAck(PublishResponse::new(p.packet_id))),
                QoS::ExactlyOnce => c.send(&Packet::PublishReceived(PublishResponse::new(p.packet_id))),
                QoS::AtMostOnce => {}
            }
        }
        Packet::PublishRelease(r) => c.send(&Packet::PublishComplete(PublishResponse::new(r.packet_id))),
        _ => {}
    });
    c.disconnect();
    got
}

#[test]
fn acknowledged_messages_survive_repeated_kill_9() {
    for qos in [QoS::AtLeastOnce, QoS::ExactlyOnce] {
        let dir = tempfile::tempdir().unwrap();
        let conf = config(
            dir.path(),
            std::env::var("TERN_TEST_DURABILITY").as_deref().unwrap_or("sync"),
        );
        let broker = Broker::from_file(&conf);
        park_subscriber(&broker, "crash-sub", "crash/#", qos);
        let mut acked_total = HashSet::new();
        let mut broker = Some(broker);
        for round in 0..3 {
            let tag = format!("q{}r{round}", qos as u8);
            let b = broker.take().unwrap_or_else(|| Broker::from_file(&conf));
            let acked = publish_until_killed(b, "crash/t", qos, 2000, 300, &tag);
            assert!(
                acked.len() >= 300,
                "{tag}: only {} acknowledged before the kill",
                acked.len()
            );
            acked_total.extend(acked);
        }
        let broker = Broker::from_file(&conf);
        assert!(broker.log_contains("store: restored"));
        let got = drain(&broker, "crash-sub");
        eprintln!(
            "QoS {}: {} acknowledged over 3 kills, {} received after",
            qos as u8,
            acked_total.len(),
            got.len()
        );
        let mut counts: HashMap<&str, usize> = HashMap::new();
        for g in &got {
            *counts.entry(g.as_str()).or_default() += 1;
        }
        let missing: Vec<_> = acked_total
            .iter()
            .filter(|a| !counts.contains_key(a.as_str()))
            .collect();
        assert!(
            missing.is_empty(),
            "QoS {}: {} acknowledged messages lost, e.g. {:?}",
            qos as u8,
            missing.len(),
            &missing[..missing.len().min(5)]
        );
        if qos == QoS::ExactlyOnce {
            let twice: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).collect();
            assert!(twice.is_empty(), "QoS 2 duplicates: {twice:?}");
        }
    }
}

#[test]
fn sessions_subscriptions_and_retained_messages_survive_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let conf = config(dir.path(), "sync");
    let broker = Broker::from_file(&conf);
    park_subscriber(&broker, "keeper", "keep/#", QoS::AtLeastOnce);
    let mut p = broker.connect(V5, "retainer");
    p.publish("keep/status", b"on", QoS::AtLeastOnce, true, 1);
    p.publish("keep/queued", b"while away", QoS::AtLeastOnce, false, 2);
    broker.kill_9();
    let broker = Broker::from_file(&conf);
    // The retained message is still there for a newcomer.
    let mut late = broker.connect(V5, "late");
    late.subscribe("keep/status", QoS::AtLeastOnce);
    let r = late.recv_publish();
    assert_eq!((&r.payload[..], r.retain), (&b"on"[..], true));
    // The session kept its queue and its subscription.
    let got = drain(&broker, "keeper");
    assert!(got.contains(&"while away".to_string()), "{got:?}");
    let mut p = broker.connect(V5, "again");
    p.publish("keep/after", b"after restart", QoS::AtLeastOnce, false, 1);
    assert_eq!(drain(&broker, "keeper"), vec!["after restart"]);
    // A graceful stop keeps everything too.
    broker.stop();
    let broker = Broker::from_file(&conf);
    let mut late = broker.connect(V5, "later");
    late.subscribe("keep/status", QoS::AtLeastOnce);
    assert_eq!(&late.recv_publish().payload[..], b"on");
}

#[test]
fn expired_sessions_leave_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let conf = config(dir.path(), "periodic");
    let mut broker = Broker::with_test_clock("tern.conf", &std::fs::read_to_string(&conf).unwrap());
    let mut c = broker.client(V5);
    let mut connect = connect_packet(V5, "brief", false, 60);
    connect.properties = Properties(vec![Property::SessionExpiryInterval(600)]);
    c.connect(&connect);
    c.subscribe("brief/#", QoS::AtLeastOnce);
    c.disconnect();
    // Past its interval on the broker's clock (counted from the close disconnect() waited
    // for): the housekeeping that has run when this returns ended it.
    broker.advance_clock(601);
    assert!(broker.logged("persistent session expired"));
    broker.stop();
    let broker = Broker::from_file(&conf);
    assert!(
        broker.log_contains("restored 0 sessions"),
        "{:?}",
        broker.log.lock().unwrap()
    );
}

#[test]
fn a_corrupt_data_file_is_moved_aside_and_the_broker_starts() {
    let dir = tempfile::tempdir().unwrap();
    let conf = config(dir.path(), "sync");
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("tern.redb"), vec![0x5a; 64 * 1024]).unwrap();
    let broker = Broker::from_file(&conf);
    assert!(broker.log_contains("is unreadable"));
    assert!(broker.log_contains("moved to"));
    let aside = std::fs::read_dir(&data)
        .unwrap()
        .filter_map(|e| e.ok())
        .any(|e| e.file_name().to_string_lossy().contains("corrupt"));
    assert!(aside, "the damaged file is kept for inspection");
    let mut c = broker.connect(V5, "works");
    c.subscribe("x", QoS::AtMostOnce);
    c.publish("x", b"y", QoS::AtLeastOnce, false, 1);
    assert_eq!(&c.recv_publish().payload[..], b"y");
}

#[test]
fn a_data_directory_in_use_is_refused_not_moved_aside() {
    let dir = tempfile::tempdir().unwrap();
    let conf = config(dir.path(), "sync");
    let first = Broker::from_file(&conf);
    let second = std::process::Command::new(env!("CARGO_BIN_EXE_tern"))
        .args(["broker", "-c", conf.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!second.status.success());
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(stderr.contains("in use by another running broker"), "{stderr}");
    assert!(!stderr.contains("moved to"), "{stderr}");
    // The first broker logs what it did with the file before it announces its listeners.
    assert!(!first.logged("moved to"));
    let mut c = first.connect(V5, "still-fine");
    c.send(&Packet::PingRequest);
    assert_eq!(c.recv(), Packet::PingResponse);
}

/// Exactly-once towards a subscriber that is online when the broker dies: QoS 2 messages
/// it received but did not acknowledge come back under the same packet ids (so a receiver
/// that remembers ids, as QoS 2 requires, takes none twice), those it acknowledged with
/// PUBREC get their PUBREL, and the rest follow.
#[test]
fn qos_2_in_flight_to_an_online_subscriber_survives_kill_9_under_the_same_ids() {
    let dir = tempfile::tempdir().unwrap();
    let conf = config(dir.path(), "sync");
    let broker = Broker::from_file(&conf);
    let mut sub = broker.client(V311);
    sub.connect(&connect_packet(V311, "flight-sub", false, 60));
    sub.subscribe("flight/#", QoS::ExactlyOnce);
    let mut publisher = broker.connect(V311, "flight-pub");
    for i in 1..=40u16 {
        publisher.publish("flight/t", format!("m{i}").as_bytes(), QoS::ExactlyOnce, false, i);
    }
    // The window holds 20 (max_inflight_messages): take them; PUBREC the first 10.
    let mut before: HashMap<u16, String> = HashMap::new();
    let mut released = HashSet::new();
    while before.len() < 20 || released.len() < 10 {
        match sub.recv() {
            Packet::Publish(p) => {
                if before.len() < 10 {
                    sub.send(&Packet::PublishReceived(PublishResponse::new(p.packet_id)));
                }
                before.insert(p.packet_id, String::from_utf8(p.payload.to_vec()).unwrap());
            }
            Packet::PublishRelease(r) => assert!(released.insert(r.packet_id)),
            other => panic!("unexpected {other:?}"),
        }
    }
    broker.kill_9();
    let broker = Broker::from_file(&conf);
    let mut sub = broker.client(V311);
    assert!(
        sub.connect(&connect_packet(V311, "flight-sub", false, 60))
            .session_present
    );
    let mut delivered: HashSet<String> = before
        .iter()
        .filter(|(id, _)| released.contains(id))
        .map(|(_, payload)| payload.clone())
        .collect();
    let mut releases_again = HashSet::new();
    let mut received_now = HashSet::new();
    sub.drain(|sub, packet| match packet {
        Packet::PublishRelease(r) => {
            if !received_now.remove(&r.packet_id) {
                assert!(
                    released.contains(&r.packet_id),
                    "PUBREL for {} out of nowhere",
                    r.packet_id
                );
                releases_again.insert(r.packet_id);
            }
            sub.send(&Packet::PublishComplete(PublishResponse::new(r.packet_id)));
        }
        Packet::Publish(p) => {
            let payload = String::from_utf8(p.payload.to_vec()).unwrap();
            if let Some((id, _)) = before.iter().find(|(id, b)| **b == payload && !released.contains(id)) {
                assert_eq!(*id, p.packet_id, "{payload} resent under another packet id");
            }
            if let Some(earlier) = before.get(&p.packet_id).filter(|_| !released.contains(&p.packet_id)) {
                // A resend: same id, same message, DUP set.
                assert_eq!(earlier, &payload, "packet id {} now names another message", p.packet_id);
                assert!(p.dup, "a resent PUBLISH carries DUP");
            }
            assert!(
                delivered.insert(payload.clone()) || before.values().any(|b| *b == payload),
                "{payload} twice"
            );
            received_now.insert(p.packet_id);
            sub.send(&Packet::PublishReceived(PublishResponse::new(p.packet_id)));
        }
        _ => {}
    });
    assert_eq!(releases_again, released, "every PUBREC'd message gets its PUBREL again");
    let expected: HashSet<String> = (1..=40).map(|i| format!("m{i}")).collect();
    assert_eq!(delivered, expected, "all 40 messages, each once");
}

#[test]
fn tern_broker_without_configuration_keeps_its_state_in_tern_data() {
    let broker = Broker::start();
    park_subscriber(&broker, "default-store", "d/#", QoS::AtLeastOnce);
    let mut p = broker.connect(V311, "default-pub");
    p.publish("d/x", b"kept", QoS::AtLeastOnce, false, 1);
    let data = broker.dir().unwrap().join("tern-data").join("tern.redb");
    assert!(data.exists(), "{} is missing", data.display());
    assert!(broker.log_contains("store: restored 0 sessions"));
}
