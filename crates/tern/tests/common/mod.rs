//! Test harness: starts the real `tern` binary on 127.0.0.1 port 0 and talks to it over
//! real sockets with a raw client that sends and reads exact packets.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

pub mod browser;
pub mod cluster;
pub mod firefox;
pub mod iot;
pub mod page;
pub mod pki;
pub mod postgres;
pub mod wiotp;

use bytes::{Bytes, BytesMut};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tern_proto::*;

/// How long a test waits for something that is certain to happen (a packet, a log line,
/// a process exit). Generous: the suite runs on loaded machines; a passing test never
/// waits this long.
pub const PATIENCE: Duration = Duration::from_secs(20);

/// Polls `done` every 10 ms until it holds; panics naming `what` after `PATIENCE`.
pub fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !done() {
        assert!(Instant::now() < deadline, "waited {PATIENCE:?} for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

pub const V311: ProtocolVersion = ProtocolVersion::V3_1_1;
pub const V5: ProtocolVersion = ProtocolVersion::V5;
/// The versions every test that applies to both is run under.
pub const VERSIONS: [ProtocolVersion; 2] = [V311, V5];

/// A running broker process, killed on drop.
pub struct Broker {
    pub child: Child,
    /// The first listener's address.
    pub addr: SocketAddr,
    /// Every listener's address, in listener order.
    addrs: Vec<SocketAddr>,
    /// Every line the broker wrote to stderr so far.
    pub log: Arc<Mutex<Vec<String>>>,
    /// The configuration file given with -c, if any.
    pub config_path: Option<std::path::PathBuf>,
    /// The broker's standard input when its test clock is on (`with_test_clock`).
    clock: Option<std::process::ChildStdin>,
    _dir: Option<tempfile::TempDir>,
}

impl Broker {
    /// `tern broker -p 0`: the local default (anonymous allowed).
    pub fn start() -> Broker {
        // Without a configuration the broker keeps its store in ./tern-data: give each
        // broker a folder of its own to run in.
        Self::spawn(&["broker", "-p", "0"], Some(tempfile::tempdir().unwrap()))
    }

    /// `tern broker -c FILE` with `config` written to a file named `name` (its extension
    /// picks the format). The config should contain a listener on port 0.
    pub fn with_config(name: &str, config: &str) -> Broker {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(name);
        std::fs::write(&path, config).unwrap();
        let mut broker = Self::spawn(&["broker", "-c", path.to_str().unwrap()], Some(dir));
        broker.config_path = Some(path);
        broker
    }

    /// `tern broker -c PATH` with a configuration file the test keeps (and may restart
    /// the broker with).
    pub fn from_file(path: &std::path::Path) -> Broker {
        let mut broker = Self::spawn(&["broker", "-c", path.to_str().unwrap()], None);
        broker.config_path = Some(path.to_path_buf());
        broker
    }

    /// Like `with_config`, with the broker's test clock on: `advance_clock` moves the
    /// time its expiry, will delay and message expiry follow.
    pub fn with_test_clock(name: &str, config: &str) -> Broker {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(name);
        std::fs::write(&path, config).unwrap();
        let mut broker = Self::spawn_with(&["broker", "-c", path.to_str().unwrap()], Some(dir), true);
        broker.config_path = Some(path);
        broker
    }

    /// Moves the broker's test clock forward by `seconds` and returns once it says its
    /// housekeeping has run at the new time.
    pub fn advance_clock(&mut self, seconds: u64) {
        let before = self.count_log("test clock advanced to");
        let stdin = self.clock.as_mut().expect("started with_test_clock");
        writeln!(stdin, "advance {seconds}").unwrap();
        stdin.flush().unwrap();
        let deadline = Instant::now() + PATIENCE;
        while self.count_log("test clock advanced to") == before {
            assert!(Instant::now() < deadline, "the broker did not advance its clock");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn count_log(&self, needle: &str) -> usize {
        self.log.lock().unwrap().iter().filter(|l| l.contains(needle)).count()
    }

    /// SIGKILL: the broker gets no chance to write anything.
    pub fn kill_9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts the broker and returns once it has announced every listener it will open:
    /// it binds them all, then prints one "listening on" line each, so the first line
    /// alone says nothing about the others.
    fn spawn(args: &[&str], dir: Option<tempfile::TempDir>) -> Broker {
        Self::spawn_with(args, dir, false)
    }

    fn spawn_with(args: &[&str], dir: Option<tempfile::TempDir>, test_clock: bool) -> Broker {
        let expected = expected_listeners(args, dir.as_ref().map(|d| d.path()));
        let mut command = Command::new(env!("CARGO_BIN_EXE_tern"));
        if let Some(dir) = &dir {
            command.current_dir(dir.path());
        }
        if test_clock {
            command.env("TERN_TEST_CLOCK", "1").stdin(Stdio::piped());
        } else {
            command.stdin(Stdio::null());
        }
        let mut child = command
            .args(args)
            .env("TERN_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start tern broker");
        let stderr = child.stderr.take().unwrap();
        let clock = child.stdin.take();
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                // A TCP listener's address, or None for a Unix socket listener's path.
                let announced = line
                    .split("listening on ")
                    .nth(1)
                    .map(|rest| rest.split_whitespace().next()?.parse::<SocketAddr>().ok());
                sink.lock().unwrap().push(line);
                if let Some(addr) = announced {
                    let _ = tx.send(addr);
                }
            }
        });
        let deadline = Instant::now() + PATIENCE;
        let mut announced: Vec<Option<SocketAddr>> = Vec::new();
        while announced.len() < expected {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(addr) => announced.push(addr),
                Err(e) => {
                    let _ = child.kill();
                    let status = child.wait();
                    panic!(
                        "broker did not announce {expected} listeners ({e:?}; {} so far; exit {status:?}): {:?}",
                        announced.len(),
                        log.lock().unwrap()
                    )
                }
            }
        }
        // TCP listeners only (a Unix socket listener's path is in the log).
        let addrs: Vec<SocketAddr> = announced.into_iter().flatten().collect();
        Broker {
            child,
            addr: addrs[0],
            addrs,
            log,
            config_path: None,
            clock,
            _dir: dir,
        }
    }

    /// The folder the broker runs in (and its configuration file lives in), if it has one.
    pub fn dir(&self) -> Option<&std::path::Path> {
        self._dir.as_ref().map(|d| d.path())
    }

    /// Every address the broker listens on, in listener order (all of them: `spawn`
    /// waited for every announcement).
    pub fn listening_addrs(&self) -> Vec<SocketAddr> {
        self.addrs.clone()
    }

    /// Whether some log line contains `needle`, waiting up to `PATIENCE` for it. For
    /// something that must appear; to check that a line is absent use [`Broker::logged`]
    /// after an event that proves it would be there by now.
    pub fn log_contains(&self, needle: &str) -> bool {
        self.log_line(&[needle])
    }

    /// Whether one log line contains every one of `needles`, waiting up to `PATIENCE`.
    pub fn log_line(&self, needles: &[&str]) -> bool {
        self.wait_log_count(needles, 1)
    }

    /// Whether `n` or more log lines contain every one of `needles`, waiting up to
    /// `PATIENCE` (a line logged on every reload, say, counts the reloads).
    pub fn wait_log_count(&self, needles: &[&str], n: usize) -> bool {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if self.log_count(needles) >= n {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// How many log lines so far contain every one of `needles` (no waiting).
    pub fn log_count(&self, needles: &[&str]) -> usize {
        self.log
            .lock()
            .unwrap()
            .iter()
            .filter(|l| needles.iter().all(|n| l.contains(n)))
            .count()
    }

    /// Whether some log line so far contains `needle` (no waiting).
    pub fn logged(&self, needle: &str) -> bool {
        self.log_count(&[needle]) > 0
    }

    /// Waits until the broker has logged that `client_id`'s connection closed: it has
    /// handled everything that client sent and is letting the connection go.
    pub fn wait_closed(&self, client_id: &str) {
        let id = format!("client={client_id} ");
        assert!(
            self.log_line(&["client closed", &id]),
            "no close of {client_id} logged: {:?}",
            self.log.lock().unwrap()
        );
    }

    /// SIGTERM, then waits for the broker to exit and checks it exited cleanly.
    pub fn stop(mut self) {
        self.signal(SIGTERM);
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                assert!(status.success(), "broker exited with {status}");
                return;
            }
            assert!(Instant::now() < deadline, "broker did not exit after SIGTERM");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn signal(&self, signal: i32) {
        unsafe { libc_kill(self.child.id() as i32, signal) };
    }

    pub fn client(&self, version: ProtocolVersion) -> Client {
        Client::open(self.addr, version)
    }

    /// A client connected with a clean session under `client_id`.
    pub fn connect(&self, version: ProtocolVersion, client_id: &str) -> Client {
        let mut c = self.client(version);
        let ack = c.connect(&connect_packet(version, client_id, true, 60));
        assert_eq!(ack.reason_code, ReasonCode::SUCCESS, "{client_id}: {ack:?}");
        c
    }
}

/// How many listeners `tern broker ARGS` opens: those of its configuration file (read
/// with the broker's own parser) plus one per `-p`, or the one default listener.
fn expected_listeners(args: &[&str], dir: Option<&Path>) -> usize {
    let ports = args.iter().filter(|a| **a == "-p").count();
    let configured = match args.iter().position(|a| *a == "-c") {
        Some(i) => {
            let path = Path::new(args[i + 1]);
            let path = match dir {
                Some(dir) if path.is_relative() => dir.join(path),
                _ => path.to_path_buf(),
            };
            // A file the broker cannot read either: it will say so and exit, and the
            // harness reports what it said.
            tern_broker::Config::load(&path).map_or(0, |c| c.listeners.len())
        }
        None => 0,
    };
    (configured + ports).max(1)
}

extern "C" {
    #[link_name = "kill"]
    fn libc_kill(pid: i32, sig: i32) -> i32;
}
pub const SIGTERM: i32 = 15;
pub const SIGHUP: i32 = 1;

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs the `tern` binary with `args` (no standard input) and returns what it did.
/// The body of an HTTP/1.1 answer sent with `Transfer-Encoding: chunked`, joined.
pub fn dechunk(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut rest = body;
    loop {
        let at = rest.windows(2).position(|w| w == b"\r\n").unwrap();
        let size = usize::from_str_radix(std::str::from_utf8(&rest[..at]).unwrap().trim(), 16).unwrap();
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&rest[at + 2..at + 2 + size]);
        rest = &rest[at + 4 + size..];
    }
}

/// An API key of the broker's HTTP API, made with `tern admin key create --json`.
#[derive(Debug, Clone)]
pub struct AdminKey {
    pub id: String,
    pub secret: String,
}

impl AdminKey {
    /// `ID:SECRET`, as `--admin-key` and HTTP Basic take it.
    pub fn pair(&self) -> String {
        format!("{}:{}", self.id, self.secret)
    }
}

/// `tern admin key create --json --data-dir DIR`, which must succeed.
pub fn admin_key(dir: &std::path::Path) -> AdminKey {
    let out = tern(&["admin", "key", "create", "--json", "--data-dir", dir.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    AdminKey {
        id: v["key"].as_str().unwrap().to_string(),
        secret: v["secret"].as_str().unwrap().to_string(),
    }
}

pub fn tern(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_tern"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// The reason code of the one DISCONNECT in `seen`, after checking that it explains
/// itself with a Reason String.
pub fn disconnect_reason(seen: &[Packet]) -> ReasonCode {
    match seen {
        [Packet::Disconnect(d)] => {
            let why = d.properties.reason_string();
            assert!(why.is_some_and(|w| !w.is_empty()), "no Reason String in {d:?}");
            d.reason_code
        }
        other => panic!("expected one DISCONNECT, got {other:?}"),
    }
}

pub fn connect_packet(version: ProtocolVersion, client_id: &str, clean: bool, keep_alive: u16) -> Connect {
    Connect::new(version, ByteStr::from(client_id), clean, keep_alive)
}

/// A raw MQTT client over a blocking socket.
pub struct Client {
    pub stream: TcpStream,
    pub version: ProtocolVersion,
    buf: BytesMut,
    /// Why the last receive ended empty-handed, for failure messages.
    ended: String,
}

impl Client {
    pub fn open(addr: SocketAddr, version: ProtocolVersion) -> Client {
        let stream = TcpStream::connect(addr).unwrap();
        stream.set_read_timeout(Some(PATIENCE)).unwrap();
        stream.set_nodelay(true).unwrap();
        Client {
            stream,
            version,
            buf: BytesMut::new(),
            ended: String::new(),
        }
    }

    pub fn send(&mut self, packet: &Packet) {
        let mut out = BytesMut::new();
        encode(packet, self.version, &mut out).unwrap();
        self.stream.write_all(&out).unwrap();
    }

    /// Sends `packet`; false if the socket is closed (the broker hung up).
    pub fn try_send(&mut self, packet: &Packet) -> bool {
        let mut out = BytesMut::new();
        encode(packet, self.version, &mut out).unwrap();
        self.stream.write_all(&out).is_ok()
    }

    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).unwrap();
    }

    /// Sends CONNECT and returns the CONNACK.
    pub fn connect(&mut self, connect: &Connect) -> ConnectAck {
        self.send(&Packet::Connect(Box::new(connect.clone())));
        match self.recv() {
            Packet::ConnectAck(ack) => ack,
            other => panic!("expected CONNACK, got {other:?}"),
        }
    }

    /// The next packet, or None if none arrives within `timeout` or the socket closes.
    pub fn recv_within(&mut self, timeout: Duration) -> Option<Packet> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(p) = decode(&mut self.buf, self.version, usize::MAX).expect("broker sent a malformed packet") {
                return Some(p);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            self.stream.set_read_timeout(Some(left)).unwrap();
            let mut chunk = [0u8; 8192];
            match self.stream.read(&mut chunk) {
                Ok(0) => {
                    self.ended = "the broker closed the connection".into();
                    return None;
                }
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock || e.kind() == std::io::ErrorKind::TimedOut => {
                    self.ended = "timed out".into();
                    return None;
                }
                Err(e) => {
                    self.ended = format!("read error: {e}");
                    return None;
                }
            }
        }
    }

    /// Whether the last receive ended because the connection is closed (not a timeout).
    pub fn is_closed(&self) -> bool {
        self.ended == "the broker closed the connection" || self.ended.starts_with("read error")
    }

    pub fn recv(&mut self) -> Packet {
        match self.recv_within(PATIENCE) {
            Some(p) => p,
            None => panic!("no packet within {PATIENCE:?}: {}", self.ended),
        }
    }

    /// Asserts nothing arrives within `ms` milliseconds. Meaningful only after a barrier
    /// that proves the broker already decided (see [`Client::expect_quiet`]); on its own
    /// it only says nothing came *yet*.
    pub fn expect_nothing(&mut self, ms: u64) {
        if let Some(p) = self.recv_within(Duration::from_millis(ms)) {
            panic!("expected nothing, got {p:?}");
        }
    }

    /// PINGREQ, and every packet that arrives before its PINGRESP or in the same write
    /// right behind it. The broker handles a connection's packets in order and, after
    /// handling what it read, moves what the session's outbox allows into the output
    /// behind the PINGRESP: an empty answer means the broker had nothing to send this
    /// client once it had handled everything the client sent before.
    pub fn ping_collect(&mut self) -> Vec<Packet> {
        self.send(&Packet::PingRequest);
        let mut seen = Vec::new();
        loop {
            match self.recv() {
                Packet::PingResponse => break,
                other => seen.push(other),
            }
        }
        // What was written with the PINGRESP is on its way already (same write on
        // loopback): a short grace covers the read, it does not stand in for an event.
        while let Some(p) = self.recv_within(Duration::from_millis(50)) {
            seen.push(p);
        }
        seen
    }

    /// A PINGREQ/PINGRESP round trip that must see nothing else: proves the broker has
    /// handled everything sent before on this connection.
    pub fn ping(&mut self) {
        self.send(&Packet::PingRequest);
        match self.recv() {
            Packet::PingResponse => {}
            other => panic!("expected PINGRESP, got {other:?}"),
        }
    }

    /// Asserts that nothing is waiting for this client: a ping round trip (anything the
    /// broker had queued for it comes before or right behind the PINGRESP) that brings
    /// nothing else. Anything routed to this client before the call (by a publisher that
    /// got its PUBACK, or whose own ping came back) is covered.
    pub fn expect_quiet(&mut self) {
        let seen = self.ping_collect();
        assert!(seen.is_empty(), "expected nothing, got {seen:?}");
    }

    /// Receives until the broker has nothing more to send this client, passing each
    /// packet to `handle` (which may answer it): rounds of [`Client::ping_collect`] until
    /// one brings nothing, so acknowledgements that free the in-flight window are handled
    /// before the broker is asked again. No quiet period is waited for.
    pub fn drain(&mut self, mut handle: impl FnMut(&mut Client, Packet)) {
        loop {
            let seen = self.ping_collect();
            if seen.is_empty() {
                return;
            }
            for p in seen {
                handle(self, p);
            }
        }
    }

    /// Waits for the broker to close the socket; returns the packets received before.
    pub fn expect_closed(&mut self) -> Vec<Packet> {
        let mut seen = Vec::new();
        let deadline = Instant::now() + PATIENCE;
        loop {
            assert!(Instant::now() < deadline, "connection not closed; got {seen:?}");
            if let Some(p) = decode(&mut self.buf, self.version, usize::MAX).unwrap_or(None) {
                seen.push(p);
                continue;
            }
            self.stream.set_read_timeout(Some(PATIENCE)).unwrap();
            let mut chunk = [0u8; 4096];
            match self.stream.read(&mut chunk) {
                Ok(0) | Err(_) => return seen,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
    }

    pub fn subscribe(&mut self, filter: &str, qos: QoS) -> Vec<ReasonCode> {
        self.subscribe_with(
            1,
            &[(
                filter,
                SubscriptionOptions {
                    qos,
                    ..Default::default()
                },
            )],
        )
    }

    pub fn subscribe_with(&mut self, packet_id: u16, filters: &[(&str, SubscriptionOptions)]) -> Vec<ReasonCode> {
        let subscriptions = filters
            .iter()
            .map(|(f, o)| Subscription {
                filter: ByteStr::from(*f),
                options: *o,
            })
            .collect();
        self.send(&Packet::Subscribe(Subscribe {
            packet_id,
            subscriptions,
            properties: Properties::default(),
        }));
        match self.recv() {
            Packet::SubscribeAck(ack) => {
                assert_eq!(ack.packet_id, packet_id);
                ack.reason_codes
            }
            other => panic!("expected SUBACK, got {other:?}"),
        }
    }

    /// Publishes and completes the QoS flow; returns the reason code of PUBACK/PUBREC.
    pub fn publish(&mut self, topic: &str, payload: &[u8], qos: QoS, retain: bool, packet_id: u16) -> ReasonCode {
        self.send(&publish_packet(topic, payload, qos, retain, packet_id));
        match qos {
            QoS::AtMostOnce => ReasonCode::SUCCESS,
            QoS::AtLeastOnce => match self.recv() {
                Packet::PublishAck(r) => {
                    assert_eq!(r.packet_id, packet_id);
                    r.reason_code
                }
                other => panic!("expected PUBACK, got {other:?}"),
            },
            QoS::ExactlyOnce => {
                let code = match self.recv() {
                    Packet::PublishReceived(r) => {
                        assert_eq!(r.packet_id, packet_id);
                        r.reason_code
                    }
                    other => panic!("expected PUBREC, got {other:?}"),
                };
                self.send(&Packet::PublishRelease(PublishResponse::new(packet_id)));
                match self.recv() {
                    Packet::PublishComplete(r) => assert_eq!(r.packet_id, packet_id),
                    other => panic!("expected PUBCOMP, got {other:?}"),
                }
                code
            }
        }
    }

    /// The next PUBLISH (skipping nothing: any other packet fails the test).
    pub fn recv_publish(&mut self) -> Publish {
        match self.recv() {
            Packet::Publish(p) => p,
            other => panic!("expected PUBLISH, got {other:?}"),
        }
    }

    /// Sends DISCONNECT and waits until the broker closes the socket, which it does once
    /// it has handled the DISCONNECT and detached the session: what the test does next
    /// happens after that. (The socket may already be closed, by a takeover say: then
    /// there is nothing to wait for.)
    /// Ends the connection without DISCONNECT, as a client that vanishes does (the
    /// broker reads the end of the stream), and waits until the broker closes its side
    /// too: by then it has detached the session and published or scheduled the will.
    pub fn hang_up(mut self) {
        let _ = self.stream.shutdown(std::net::Shutdown::Write);
        self.expect_closed();
    }

    pub fn disconnect(mut self) {
        let mut out = BytesMut::new();
        encode(&Packet::Disconnect(Disconnect::default()), self.version, &mut out).unwrap();
        if self.stream.write_all(&out).is_ok() {
            self.expect_closed();
        }
    }
}

pub fn publish_packet(topic: &str, payload: &[u8], qos: QoS, retain: bool, packet_id: u16) -> Packet {
    Packet::Publish(Publish {
        dup: false,
        qos,
        retain,
        topic: ByteStr::from(topic),
        packet_id: if qos == QoS::AtMostOnce { 0 } else { packet_id },
        properties: Properties::default(),
        payload: Bytes::copy_from_slice(payload),
    })
}

/// Whether an interop peer (a program on PATH, or a Python module) is present. Absent:
/// the test says so and is skipped, except under CI=true, where it fails.
pub fn peer_available(what: &str, present: bool) -> bool {
    if present {
        return true;
    }
    if std::env::var("CI").is_ok_and(|v| v == "true" || v == "1") {
        panic!("interop peer {what} is missing and CI=true: install it (see .ci/run)");
    }
    eprintln!("SKIPPED: interop peer {what} is not installed");
    false
}

/// Whether `python3` can import `module` (an interop peer from PyPI).
pub fn python_module_exists(module: &str) -> bool {
    Command::new("python3")
        .args(["-c", &format!("import {module}")])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

pub fn program_exists(name: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {name}"))
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The mosquitto broker (Debian package mosquitto) on a free local port, killed on drop.
pub struct Mosquitto {
    _process: Background,
    pub addr: SocketAddr,
}

impl Mosquitto {
    /// `mosquitto -p PORT`, or `mosquitto -c FILE` with `config(port)` written to FILE
    /// (which must leave logging to standard error on). Returns once mosquitto says it is
    /// running, so once it has bound PORT; `None` (test skipped) when mosquitto is not
    /// installed outside CI.
    pub fn start(config: Option<&dyn Fn(u16) -> String>) -> Option<Mosquitto> {
        let program = if program_exists("mosquitto") {
            "mosquitto"
        } else {
            "/usr/sbin/mosquitto"
        };
        let present = program_exists("mosquitto") || std::path::Path::new(program).exists();
        if !peer_available("the mosquitto broker (apt-get install mosquitto)", present) {
            return None;
        }
        // mosquitto cannot listen on port 0: a free port is picked here and may be taken by
        // another process before mosquitto binds it. Then mosquitto exits, and another
        // port is tried.
        for _ in 0..5 {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            let mut command = Command::new(program);
            match config {
                Some(text) => {
                    let path = std::env::temp_dir().join(format!("tern-test-mosquitto-{port}.conf"));
                    std::fs::write(&path, text(port)).unwrap();
                    command.arg("-c").arg(path)
                }
                None => command.args(["-p", &port.to_string()]),
            };
            let mut process = Background::spawn(&mut command);
            let deadline = Instant::now() + PATIENCE;
            loop {
                if process.stderr_contains(" running") {
                    return Some(Mosquitto {
                        _process: process,
                        addr: format!("127.0.0.1:{port}").parse().unwrap(),
                    });
                }
                if process.child.try_wait().unwrap().is_some() {
                    eprintln!(
                        "mosquitto on port {port} exited: {}",
                        String::from_utf8_lossy(&process.stderr.lock().unwrap())
                    );
                    break;
                }
                assert!(Instant::now() < deadline, "mosquitto did not start");
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        panic!("mosquitto did not start on any of five ports");
    }
}

/// A client tool (`tern sub`, `tern rr`, `mosquitto_sub`) running in the background, its
/// standard output and error collected as they come so that a test can wait for what it
/// prints. Killed on drop.
pub struct Background {
    child: Child,
    stdout: Arc<Mutex<Vec<u8>>>,
    stderr: Arc<Mutex<Vec<u8>>>,
    readers: Vec<std::thread::JoinHandle<()>>,
}

impl Background {
    /// Starts `command` with its output piped (and no standard input).
    pub fn spawn(command: &mut Command) -> Background {
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (stdout, stderr) = (Arc::new(Mutex::new(Vec::new())), Arc::new(Mutex::new(Vec::new())));
        let readers = vec![
            collect(child.stdout.take().unwrap(), stdout.clone()),
            collect(child.stderr.take().unwrap(), stderr.clone()),
        ];
        Background {
            child,
            stdout,
            stderr,
            readers,
        }
    }

    /// `tern ARGS`.
    pub fn tern(args: &[&str]) -> Background {
        Self::spawn(Command::new(env!("CARGO_BIN_EXE_tern")).args(args))
    }

    /// `mosquitto_sub -d ARGS` with line-buffered output (stdbuf), returned once its
    /// SUBACK has arrived: from then on the broker delivers to it. Its messages are the
    /// lines [`mosquitto_messages`] keeps.
    pub fn mosquitto_sub(args: &[&str]) -> Background {
        let sub = Self::spawn(Command::new("stdbuf").args(["-oL", "mosquitto_sub", "-d"]).args(args));
        sub.wait_stdout("received SUBACK");
        sub
    }

    /// Whether the tool has printed `needle` on standard error so far.
    pub fn stderr_contains(&self, needle: &str) -> bool {
        String::from_utf8_lossy(&self.stderr.lock().unwrap()).contains(needle)
    }

    /// Waits until the tool has printed `needle` on standard output.
    pub fn wait_stdout(&self, needle: &str) {
        self.wait_for(&self.stdout, "standard output", needle);
    }

    /// Waits until the tool has printed `needle` on standard error.
    pub fn wait_stderr(&self, needle: &str) {
        self.wait_for(&self.stderr, "standard error", needle);
    }

    fn wait_for(&self, buffer: &Mutex<Vec<u8>>, name: &str, needle: &str) {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if String::from_utf8_lossy(&buffer.lock().unwrap()).contains(needle) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{needle:?} not on {name} within {PATIENCE:?}; stdout {:?}, stderr {:?}",
                String::from_utf8_lossy(&self.stdout.lock().unwrap()),
                String::from_utf8_lossy(&self.stderr.lock().unwrap())
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits for the tool to exit; returns its exit code, standard output and error.
    pub fn finish(mut self) -> (Option<i32>, String, String) {
        let deadline = Instant::now() + PATIENCE;
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            assert!(
                Instant::now() < deadline,
                "tool did not exit; stdout {:?}, stderr {:?}",
                String::from_utf8_lossy(&self.stdout.lock().unwrap()),
                String::from_utf8_lossy(&self.stderr.lock().unwrap())
            );
            std::thread::sleep(Duration::from_millis(10));
        };
        for reader in self.readers.drain(..) {
            reader.join().unwrap();
        }
        let text = |b: &Mutex<Vec<u8>>| String::from_utf8_lossy(&b.lock().unwrap()).to_string();
        (status.code(), text(&self.stdout), text(&self.stderr))
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A thread appending everything `from` yields to `into`, until end of file.
pub fn collect(mut from: impl Read + Send + 'static, into: Arc<Mutex<Vec<u8>>>) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut chunk = [0u8; 4096];
        while let Ok(n) = from.read(&mut chunk) {
            if n == 0 {
                break;
            }
            into.lock().unwrap().extend_from_slice(&chunk[..n]);
        }
    })
}

/// The message lines of `mosquitto_sub -d` output (its debug lines left out).
pub fn mosquitto_messages(out: &str) -> Vec<&str> {
    out.lines()
        .filter(|l| !l.starts_with("Client ") && !l.starts_with("Subscribed"))
        .collect()
}

/// `tern passwd -b [-c] FILE USER PASSWORD`, which must succeed.
pub fn tern_passwd(file: &std::path::Path, user: &str, password: &str, create: bool) {
    let mut args = vec!["passwd", "-b"];
    if create {
        args.push("-c");
    }
    let out = Command::new(env!("CARGO_BIN_EXE_tern"))
        .args(&args)
        .arg(file)
        .args([user, password])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

impl Broker {
    /// The broker's resident memory in KiB (VmRSS).
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap()
    }
}

/// The next PUBLISH `c` receives (acknowledged if QoS 1): its topic and JSON payload
/// (null if it is not JSON). Panics after `PATIENCE` without one.
pub fn next_json(c: &mut Client) -> (String, serde_json::Value) {
    loop {
        match c.recv_within(PATIENCE) {
            Some(Packet::Publish(p)) => {
                if p.qos == QoS::AtLeastOnce {
                    c.send(&Packet::PublishAck(PublishResponse {
                        packet_id: p.packet_id,
                        reason_code: ReasonCode::SUCCESS,
                        properties: Default::default(),
                    }));
                }
                let body = serde_json::from_slice(&p.payload).unwrap_or(serde_json::Value::Null);
                return (p.topic.to_string(), body);
            }
            Some(_) => continue,
            None => panic!("no message within {PATIENCE:?}"),
        }
    }
}
