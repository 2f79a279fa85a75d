//! Differential tests against mosquitto 2.0: the same client bytes go to mosquitto and to
//! Tern, each started with the same mosquitto.conf, and every reply is compared byte for
//! byte (design: "Tests"). Where the MQTT specification lets a broker choose, Tern makes
//! mosquitto's choice, so that a client, a test suite or a packet capture written against
//! mosquitto sees no difference.
//!
//! Tern differs on purpose in a few places, each named in [`EXCEPTIONS`] with the reason.
//! A difference is excused in one of two ways: a rule that rewrites what Tern sent into
//! what mosquitto would have sent (stripping a Reason String, say) and proves on the way
//! that the rest is equal, or an entry of [`DIVERGENCES`] that gives, for one case, the
//! exact bytes of both brokers. Everything else must match. An exception no case needs any
//! more fails the test, so the table cannot go stale.
//!
//! Without mosquitto the test says so and passes; under CI=true it fails instead.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "differential/cases.rs"]
mod cases;
#[path = "differential/cases_errors.rs"]
mod cases_errors;
#[path = "differential/cases_mount.rs"]
mod cases_mount;
#[path = "differential/cases_v5.rs"]
mod cases_v5;
mod common;
#[path = "differential/divergences.rs"]
mod divergences;
#[path = "differential/normalize.rs"]
mod normalize;
#[path = "differential/tern_side.rs"]
mod tern_side;
#[path = "differential/wire.rs"]
mod wire;

use common::{peer_available, program_exists, Broker};
use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use wire::{hex, split};

/// How a difference came about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Tern chose otherwise, for the reason given.
    Deliberate,
    /// mosquitto releases disagree; Tern follows the later one. Used only while the
    /// installed mosquitto is older than `before`.
    Version { before: (u32, u32, u32) },
    /// A value each broker makes up (generated client ids): masked on both sides.
    Masked,
}

/// A named difference between Tern and mosquitto 2.0.
pub struct Exception {
    pub name: &'static str,
    pub kind: Kind,
    pub why: &'static str,
}

/// Every way Tern's replies may differ from mosquitto's. docs/compatibility.md explains
/// the same list for users.
pub const EXCEPTIONS: &[Exception] = &[
    Exception {
        name: "reason-string",
        kind: Kind::Deliberate,
        why: "Tern explains every refusal and error to a 5.0 client with a Reason String (CONNACK, \
              DISCONNECT and acknowledgements; never when the client set Request Problem \
              Information 0 [MQTT-3.1.2-29]); mosquitto sends none",
    },
    Exception {
        name: "maximum-packet-size",
        kind: Kind::Deliberate,
        why: "message_size_limit defaults to 1 MiB in Tern (unlimited in mosquitto) and Tern \
              advertises the packet size it implies in CONNACK (Maximum Packet Size); mosquitto \
              advertises only its max_packet_size directive",
    },
    Exception {
        name: "response-information",
        kind: Kind::Deliberate,
        why: "Tern answers Request Response Information with a Response Information (the \
              response_information directive); mosquitto 2.0 ignores the request",
    },
    Exception {
        name: "outgoing-topic-aliases",
        kind: Kind::Deliberate,
        why: "Tern assigns topic aliases to a 5.0 client that allows them (Topic Alias Maximum in \
              CONNECT): the first message on a topic carries topic and alias, later ones the alias \
              alone; mosquitto 2.0 always sends the topic. Checked, then resolved",
    },
    Exception {
        name: "violation-disconnect",
        kind: Kind::Deliberate,
        why: "on a protocol violation Tern always sends a 5.0 client DISCONNECT with the reason \
              code its decoder maps the broken rule to (0x90 Topic Name invalid, 0x8F Topic \
              Filter invalid, 0x94 Topic Alias invalid, 0x82 for a missing topic filter, ...); \
              mosquitto answers with 0x81/0x82 or closes without a word",
    },
    Exception {
        name: "strict-decoding",
        kind: Kind::Deliberate,
        why: "Tern refuses packets the specification forbids that mosquitto lets through: DUP \
              set on a QoS 0 PUBLISH [MQTT-3.3.1-2], a PINGREQ with a body",
    },
    Exception {
        name: "qos2-forwarded-on-publish",
        kind: Kind::Deliberate,
        why: "Tern forwards a QoS 2 message when its PUBLISH arrives (it then knows whether \
              anyone received it: PUBREC 0x10 No matching subscribers); mosquitto forwards it on \
              PUBREL and always answers PUBREC 0x00. Subscribers see the same bytes, sooner",
    },
    Exception {
        name: "no-matching-subscribers",
        kind: Kind::Deliberate,
        why: "Tern's 0x10 No matching subscribers says that no session received the message; \
              mosquitto counts matching subscriptions, so it answers 0x00 to a publisher whose \
              only match is its own No Local subscription, or an offline session whose queue is \
              full (max_queued_messages)",
    },
    Exception {
        name: "one-copy-per-message",
        kind: Kind::Deliberate,
        why: "a client whose subscriptions overlap gets one copy of a message from Tern, at the \
              highest QoS granted and with every Subscription Identifier [MQTT-3.3.4-3, -4]; \
              mosquitto sends one copy per matching subscription. Both are allowed",
    },
    Exception {
        name: "unknown-packet-id",
        kind: Kind::Deliberate,
        why: "a PUBREC or PUBREL for a packet identifier Tern does not know is answered with \
              reason 0x92 Packet Identifier not found; mosquitto answers 0x00",
    },
    Exception {
        name: "receive-maximum-exceeded",
        kind: Kind::Deliberate,
        why: "a 5.0 client with more unreleased QoS 2 messages than the Receive Maximum gets \
              DISCONNECT 0x93, as the specification says (section 3.3.4); mosquitto answers \
              PUBREC 0x97 and goes on",
    },
    Exception {
        name: "message-size-limit-code",
        kind: Kind::Deliberate,
        why: "a message over message_size_limit is refused with 0x97 Quota exceeded; mosquitto \
              sends 0x95, which is not a reason code of PUBACK or PUBREC in MQTT 5.0",
    },
    Exception {
        name: "session-taken-over",
        kind: Kind::Deliberate,
        why: "a 5.0 connection whose session a new connection takes over gets DISCONNECT 0x8E \
              before it is closed [MQTT-3.1.4-3]; mosquitto 2.0 closes it without one",
    },
    Exception {
        name: "shared-no-local",
        kind: Kind::Deliberate,
        why: "No Local on a shared subscription is a Protocol Error [MQTT-3.8.3-4]: Tern \
              disconnects with 0x82; mosquitto 2.0 accepts it",
    },
    Exception {
        name: "max-connect-packet-size",
        kind: Kind::Deliberate,
        why: "a CONNECT larger than max_connect_packet_size (64 KiB by default) is refused before \
              it is read (5.0: CONNACK 0x95), so that unauthenticated clients cannot make the \
              broker hold much; mosquitto reads any size",
    },
    Exception {
        name: "acl-subscribe",
        kind: Kind::Deliberate,
        why: "Tern refuses at SUBSCRIBE a filter the ACL gives no read access to (3.1.1: 0x80, \
              5.0: 0x87 Not authorized), so the client learns it; mosquitto 2.0 grants every \
              subscription (its ACL file does not check them) and drops the messages on delivery",
    },
    Exception {
        name: "subscription-replaced",
        kind: Kind::Deliberate,
        why: "a repeated SUBSCRIBE to a filter replaces the whole subscription, options included \
              [MQTT-3.8.4-3]; mosquitto 2.0 updates only QoS and Subscription Identifier and keeps \
              the first No Local and Retain As Published",
    },
    Exception {
        name: "own-message-order",
        kind: Kind::Deliberate,
        why: "a client subscribed to what it publishes gets Tern's PUBACK before the message: \
              Tern handles every packet of a read before it writes deliveries (one write per \
              batch); mosquitto writes the message first. The order between the two is free",
    },
    Exception {
        name: "keepalive-3x-over-maximum",
        kind: Kind::Version { before: (2, 0, 12) },
        why: "a 3.x client whose keepalive exceeds max_keepalive is refused with return code 2 \
              (mosquitto 2.0.12 and later); 2.0.11 accepts it",
    },
    Exception {
        name: "keepalive-zero",
        kind: Kind::Version { before: (2, 0, 16) },
        why: "a 5.0 client with keepalive 0 keeps it while max_keepalive is left at its default \
              (mosquitto 2.0.16 and later, where the default became 0); earlier releases impose \
              65535 with Server Keep Alive",
    },
    Exception {
        name: "mount-point-outgoing",
        kind: Kind::Version { before: (2, 0, 12) },
        why: "a client of a listener with a mount_point receives topics without the mount point, \
              as mosquitto.conf(5) says (mosquitto 2.0.12 and later); 2.0.11 sends them with it",
    },
    Exception {
        name: "mount-point-unsubscribe",
        kind: Kind::Deliberate,
        why: "UNSUBSCRIBE from a client of a listener with a mount_point removes the subscription \
              its SUBSCRIBE made (both filters get the mount point in front); mosquitto 2.0 does not \
              mount UNSUBSCRIBE's filters, so it removes nothing (5.0: 0x11) and delivery goes on",
    },
    Exception {
        name: "mount-point-shared",
        kind: Kind::Deliberate,
        why: "a shared subscription from a client of a listener with a mount_point is \
              $share/GROUP/MOUNTFILTER in Tern, a member of the group; mosquitto 2.0 puts the mount \
              point before $share, which makes it an ordinary filter that matches nothing published",
    },
    Exception {
        name: "assigned-client-identifier",
        kind: Kind::Masked,
        why: "the client id each broker makes up for an empty one differs (mosquitto: auto-UUID, \
              Tern: tern-START-N); masked on both sides",
    },
];

/// One client action of a case.
pub enum Step {
    /// The client sends the bytes and a PINGREQ: its reply is everything that arrives
    /// before the PINGRESP (or before the broker closes the connection).
    Send(&'static str, Vec<u8>),
    /// The client sends the bytes and its reply is the next this many packets. For replies
    /// that include deliveries: a broker may write those before or after a PINGRESP.
    Expect(&'static str, Vec<u8>, usize),
    /// The client sends the bytes (perhaps none) and waits for the broker to close the
    /// connection: its reply is everything that arrives before.
    Close(&'static str, Vec<u8>),
    /// The client receives this many packets (what another client's step caused).
    Recv(&'static str, usize),
    /// The client's socket is closed abruptly (no DISCONNECT).
    Drop(&'static str),
}

/// A scripted exchange, run against a fresh pair of brokers.
pub struct Case {
    pub name: String,
    /// mosquitto.conf lines after the listener; `{dir}` stands for a folder holding
    /// `passwd` (alice:secret) and `acl` (see [`write_files`]).
    pub config: String,
    pub steps: Vec<Step>,
}

/// What one step brought one client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub client: &'static str,
    /// The protocol level the client connected with (4 or 5).
    pub level: u8,
    pub packets: Vec<Vec<u8>>,
    pub closed: bool,
}

impl Reply {
    /// The packets in hex, then "EOF" if the connection closed.
    pub fn render(&self) -> String {
        let mut parts: Vec<String> = self.packets.iter().map(|p| hex(p)).collect();
        if self.closed {
            parts.push("EOF".into());
        }
        parts.join(" ")
    }
}

/// A case's difference excused by exact bytes: in case `case`, a step where mosquitto's
/// reply renders as `mosquitto` and Tern's as `tern` (after the rules) counts as equal.
pub struct Divergence {
    pub case: &'static str,
    pub exception: &'static str,
    pub mosquitto: &'static str,
    pub tern: &'static str,
}

/// The exact differences, case by case (in the corpus, beside the cases).
pub use divergences::DIVERGENCES;

/// How long a client waits for a reply that is certain to come (failures only wait).
const REPLY_PATIENCE: Duration = Duration::from_secs(10);

/// A client of a running case.
struct Client {
    stream: TcpStream,
    level: u8,
    /// Bytes received and not yet split into packets.
    buf: Vec<u8>,
    /// Packets received and not yet part of a reply.
    pending: std::collections::VecDeque<Vec<u8>>,
    closed: bool,
}

impl Client {
    /// Takes packets one at a time until `done` says the reply is complete, the connection
    /// closes, or the patience runs out. Packets past the end stay for the next reply.
    fn read(&mut self, mut done: impl FnMut(&[Vec<u8>]) -> bool) -> Vec<Vec<u8>> {
        let deadline = Instant::now() + REPLY_PATIENCE;
        let mut packets = Vec::new();
        loop {
            while let Some(packet) = self.pending.pop_front() {
                packets.push(packet);
                if done(&packets) {
                    return packets;
                }
            }
            if self.closed {
                return packets;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return packets;
            }
            self.stream.set_read_timeout(Some(left)).unwrap();
            let mut chunk = [0u8; 16 * 1024];
            match self.stream.read(&mut chunk) {
                Ok(0) => self.closed = true,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
                // A reset: closed as well (mosquitto resets where Tern closes in order).
                Err(_) => self.closed = true,
            }
            match split(&mut self.buf) {
                Some(more) => self.pending.extend(more),
                // Not MQTT framing: kept whole, as one "packet", and the reading ends.
                None => {
                    self.pending.push_back(std::mem::take(&mut self.buf));
                    self.closed = true;
                }
            }
        }
    }
}

/// Runs `case` against the broker at `addr`; one reply per step that reads, and at the
/// end one per client: for each still connected, what comes before the PINGRESP of a
/// last ping (nothing else should be on its way).
fn run(case: &Case, addr: SocketAddr) -> Vec<Reply> {
    let mut clients: BTreeMap<&'static str, Client> = BTreeMap::new();
    let mut replies = Vec::new();
    let open = |clients: &mut BTreeMap<&'static str, Client>, name: &'static str, bytes: &[u8]| {
        clients.entry(name).or_insert_with(|| {
            let stream = TcpStream::connect(addr).unwrap();
            stream.set_nodelay(true).unwrap();
            // A CONNECT names the protocol level after "\0\x04MQTT" (1-byte length here).
            let level = bytes
                .get(8)
                .copied()
                .filter(|_| bytes.first() == Some(&0x10))
                .unwrap_or(4);
            Client {
                stream,
                level,
                buf: Vec::new(),
                pending: Default::default(),
                closed: false,
            }
        });
    };
    for step in &case.steps {
        match step {
            Step::Send(name, bytes) | Step::Expect(name, bytes, _) | Step::Close(name, bytes) => {
                open(&mut clients, name, bytes);
                let client = clients.get_mut(name).unwrap();
                let barrier = matches!(step, Step::Send(..));
                let count = match step {
                    Step::Expect(_, _, n) => Some(*n),
                    _ => None,
                };
                let mut out = bytes.clone();
                if barrier {
                    out.extend(wire::PINGREQ);
                }
                // A write into a closed connection fails; the reply says it closed.
                let _ = client.stream.write_all(&out);
                let mut packets = client.read(|p| match count {
                    Some(n) => p.len() >= n,
                    None => barrier && p.last().is_some_and(|l| l[..] == wire::PINGRESP),
                });
                if barrier && packets.last().is_some_and(|l| l[..] == wire::PINGRESP) {
                    packets.pop();
                }
                replies.push(Reply {
                    client: name,
                    level: client.level,
                    packets,
                    closed: client.closed,
                });
            }
            Step::Recv(name, n) => {
                let client = clients.get_mut(name).expect("Recv before the client's first Send");
                let packets = client.read(|p| p.len() >= *n);
                replies.push(Reply {
                    client: name,
                    level: client.level,
                    packets,
                    closed: client.closed,
                });
            }
            Step::Drop(name) => {
                if let Some(client) = clients.remove(name) {
                    let _ = client.stream.shutdown(Shutdown::Both);
                }
            }
        }
    }
    for (name, client) in clients.iter_mut() {
        let mut packets = Vec::new();
        if !client.closed {
            let _ = client.stream.write_all(&wire::PINGREQ);
            packets = client.read(|p| p.last().is_some_and(|l| l[..] == wire::PINGRESP));
            if packets.last().is_some_and(|l| l[..] == wire::PINGRESP) {
                packets.pop();
            }
        }
        replies.push(Reply {
            client: name,
            level: client.level,
            packets,
            closed: client.closed,
        });
    }
    replies
}

/// Writes the files a case's configuration may name under `{dir}`: `passwd` with user
/// alice (password "secret") made by `tern passwd`, and `acl`. Readable by mosquitto, which
/// drops root privileges to its own user.
fn write_files(dir: &std::path::Path) {
    use std::os::unix::fs::PermissionsExt;
    let passwd = dir.join("passwd");
    let out = common::tern(&["passwd", "-c", "-b", passwd.to_str().unwrap(), "alice", "secret"]);
    assert!(
        out.status.success(),
        "tern passwd: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::write(
        dir.join("acl"),
        "topic read open/#\ntopic readwrite open/#\nuser alice\ntopic readwrite alice/#\ntopic read news/#\n",
    )
    .unwrap();
    for file in ["passwd", "acl"] {
        std::fs::set_permissions(dir.join(file), std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// mosquitto on a port of its own, killed on drop. Its port comes from below the range
/// the system hands out for port 0 and outgoing connections, so that no Tern started
/// meanwhile (on port 0) can take it between the choice and mosquitto's bind; a port
/// another process holds makes mosquitto exit, and the next one is tried.
struct Peer {
    child: std::process::Child,
    addr: SocketAddr,
}

impl Peer {
    fn start(dir: &std::path::Path, config: &str) -> Peer {
        use std::io::BufRead;
        use std::os::unix::fs::PermissionsExt;
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let program = if program_exists("mosquitto") {
            "mosquitto"
        } else {
            "/usr/sbin/mosquitto"
        };
        let spread = std::process::id() as usize % 1000 * 10;
        for _ in 0..20 {
            let port = 20_000 + (spread + NEXT.fetch_add(1, Ordering::Relaxed)) % 10_000;
            let path = dir.join(format!("mosquitto-{port}.conf"));
            std::fs::write(&path, format!("listener {port} 127.0.0.1\n{config}")).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
            let mut child = std::process::Command::new(program)
                .arg("-c")
                .arg(&path)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap();
            // "mosquitto version X running" once it listens; end of output if it exited.
            // Read to the end meanwhile: a closed pipe would kill it at its next log line.
            let stderr = child.stderr.take().unwrap();
            let (tx, rx) = std::sync::mpsc::channel();
            std::thread::spawn(move || {
                for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
                    if line.contains(" running") {
                        let _ = tx.send(());
                    }
                }
            });
            let running = rx.recv_timeout(common::PATIENCE).is_ok();
            let peer = Peer {
                child,
                addr: format!("127.0.0.1:{port}").parse().unwrap(),
            };
            if running {
                return peer;
            }
        }
        panic!("mosquitto did not start on any of 20 ports");
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The outcome of one case.
struct Outcome {
    name: String,
    /// Exceptions that excused something in this case.
    used: BTreeSet<&'static str>,
    /// Why the case failed, if it did.
    failure: Option<String>,
}

/// Starts both brokers with the case's configuration, runs it against each and compares.
fn check(case: &Case, version: (u32, u32, u32)) -> Outcome {
    let dir = tempfile::tempdir().unwrap();
    write_files(dir.path());
    let config = case.config.replace("{dir}", dir.path().to_str().unwrap());
    let mosquitto = Peer::start(dir.path(), &config);
    let tern = Broker::with_config("tern.conf", &format!("listener 0 127.0.0.1\n{config}"));
    let mut theirs = run(case, mosquitto.addr);
    let mut ours = run(case, tern.addr);
    drop((mosquitto, tern));
    let mut used = BTreeSet::new();
    normalize::mask(&mut theirs, &mut ours, &mut used);
    normalize::excuse(&theirs, &mut ours, &mut used);
    let mut differences = Vec::new();
    for i in 0..theirs.len().max(ours.len()) {
        let (m, t) = (theirs.get(i), ours.get(i));
        if m == t {
            continue;
        }
        let render = |r: Option<&Reply>| r.map_or("(no step)".into(), |r| format!("{}: {}", r.client, r.render()));
        let excused = DIVERGENCES.iter().chain(cases_mount::MOUNT_DIVERGENCES).find(|d| {
            d.case == case.name
                && applies(d.exception, version)
                && m.is_some_and(|m| m.render() == d.mosquitto)
                && t.is_some_and(|t| t.render() == d.tern)
        });
        match excused {
            Some(d) => {
                used.insert(d.exception);
            }
            None => differences.push(format!(
                "  reply {i}\n    mosquitto {}\n    tern      {}",
                render(m),
                render(t)
            )),
        }
    }
    Outcome {
        name: case.name.clone(),
        used,
        failure: (!differences.is_empty()).then(|| format!("{}:\n{}", case.name, differences.join("\n"))),
    }
}

/// Whether the exception `name` applies against mosquitto `version`.
fn applies(name: &str, version: (u32, u32, u32)) -> bool {
    match EXCEPTIONS.iter().find(|e| e.name == name).map(|e| e.kind) {
        Some(Kind::Version { before }) => version < before,
        Some(_) => true,
        None => panic!("exception {name:?} is not in EXCEPTIONS"),
    }
}

/// The installed mosquitto's version, from the first line of `mosquitto -h`.
fn mosquitto_version() -> Option<(u32, u32, u32)> {
    let program = if program_exists("mosquitto") {
        "mosquitto"
    } else {
        "/usr/sbin/mosquitto"
    };
    let out = std::process::Command::new(program).arg("-h").output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    let word = text.split("version ").nth(1)?.split_whitespace().next()?.to_string();
    let mut numbers = word.split('.').map(|n| n.parse::<u32>().ok());
    Some((
        numbers.next()??,
        numbers.next()??,
        numbers.next().flatten().unwrap_or(0),
    ))
}

#[test]
fn tern_answers_like_mosquitto_except_where_named() {
    let present = mosquitto_version();
    if !peer_available("the mosquitto broker (apt-get install mosquitto)", present.is_some()) {
        return;
    }
    let version = present.unwrap();
    let cases = cases::all();
    let names: BTreeSet<&str> = cases.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names.len(), cases.len(), "case names are unique");
    for d in DIVERGENCES.iter().chain(cases_mount::MOUNT_DIVERGENCES) {
        assert!(names.contains(d.case), "divergence for unknown case {:?}", d.case);
    }
    let next = AtomicUsize::new(0);
    let outcomes = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..4 {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(case) = cases.get(i) else { return };
                let outcome = check(case, version);
                outcomes.lock().unwrap().push(outcome);
            });
        }
    });
    let outcomes = outcomes.into_inner().unwrap();
    let failures: Vec<&String> = outcomes.iter().filter_map(|o| o.failure.as_ref()).collect();
    let used: BTreeSet<&str> = outcomes.iter().flat_map(|o| o.used.iter().copied()).collect();
    let exact = outcomes
        .iter()
        .filter(|o| o.used.is_empty() && o.failure.is_none())
        .count();
    eprintln!(
        "differential: {} cases against mosquitto {}.{}.{}: {} identical, {} identical but for named exceptions, {} different",
        outcomes.len(),
        version.0,
        version.1,
        version.2,
        exact,
        outcomes.len() - exact - failures.len(),
        failures.len()
    );
    for exception in EXCEPTIONS {
        let cases: Vec<&str> = outcomes
            .iter()
            .filter(|o| o.used.contains(exception.name))
            .map(|o| o.name.as_str())
            .collect();
        eprintln!("  {} ({} cases): {}", exception.name, cases.len(), cases.join(", "));
    }
    assert!(
        failures.is_empty(),
        "replies differ from mosquitto's:\n{}",
        failures.iter().map(|f| f.as_str()).collect::<Vec<_>>().join("\n")
    );
    let stale: Vec<&str> = EXCEPTIONS
        .iter()
        .filter(|e| applies(e.name, version) && !used.contains(e.name))
        .map(|e| e.name)
        .collect();
    assert!(
        stale.is_empty(),
        "exceptions no case needs any more (remove them): {stale:?}"
    );
}
