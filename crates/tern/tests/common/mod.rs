//! Test harness: starts the real `tern` binary on 127.0.0.1 port 0 and talks to it over
//! real sockets with a raw client that sends and reads exact packets.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

pub mod pki;

use bytes::{Bytes, BytesMut};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tern_proto::*;

pub const V311: ProtocolVersion = ProtocolVersion::V3_1_1;
pub const V5: ProtocolVersion = ProtocolVersion::V5;
/// The versions every test that applies to both is run under.
pub const VERSIONS: [ProtocolVersion; 2] = [V311, V5];

/// A running broker process, killed on drop.
pub struct Broker {
    pub child: Child,
    pub addr: SocketAddr,
    /// Every line the broker wrote to stderr so far.
    pub log: Arc<Mutex<Vec<String>>>,
    /// The configuration file given with -c, if any.
    pub config_path: Option<std::path::PathBuf>,
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

    /// SIGKILL: the broker gets no chance to write anything.
    pub fn kill_9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn spawn(args: &[&str], dir: Option<tempfile::TempDir>) -> Broker {
        let mut command = Command::new(env!("CARGO_BIN_EXE_tern"));
        if let Some(dir) = &dir {
            command.current_dir(dir.path());
        }
        let mut child = command
            .args(args)
            .env("TERN_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start tern broker");
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(addr) = line.split("listening on ").nth(1) {
                    let _ = tx.send(addr.split_whitespace().next().unwrap_or_default().to_string());
                }
                sink.lock().unwrap().push(line);
            }
        });
        let addr = rx
            .recv_timeout(Duration::from_secs(20))
            .unwrap_or_else(|_| panic!("broker did not start: {:?}", log.lock().unwrap()));
        Broker {
            child,
            addr: addr.parse().unwrap(),
            log,
            config_path: None,
            _dir: dir,
        }
    }

    /// The folder the broker runs in (and its configuration file lives in), if it has one.
    pub fn dir(&self) -> Option<&std::path::Path> {
        self._dir.as_ref().map(|d| d.path())
    }

    /// Every address the broker listens on, in listener order.
    pub fn listening_addrs(&self) -> Vec<SocketAddr> {
        self.log
            .lock()
            .unwrap()
            .iter()
            .filter_map(|l| l.split("listening on ").nth(1))
            .filter_map(|rest| rest.split_whitespace().next()?.parse().ok())
            .collect()
    }

    /// Whether some log line contains `needle`, waiting up to 3 s for it.
    pub fn log_contains(&self, needle: &str) -> bool {
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            if self.log.lock().unwrap().iter().any(|l| l.contains(needle)) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
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
        stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
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

    pub fn recv(&mut self) -> Packet {
        match self.recv_within(Duration::from_secs(5)) {
            Some(p) => p,
            None => panic!("no packet within 5 s: {}", self.ended),
        }
    }

    /// Asserts nothing arrives within `ms` milliseconds.
    pub fn expect_nothing(&mut self, ms: u64) {
        if let Some(p) = self.recv_within(Duration::from_millis(ms)) {
            panic!("expected nothing, got {p:?}");
        }
    }

    /// Waits for the broker to close the socket; returns the packets received before.
    pub fn expect_closed(&mut self) -> Vec<Packet> {
        let mut seen = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            assert!(Instant::now() < deadline, "connection not closed; got {seen:?}");
            if let Some(p) = decode(&mut self.buf, self.version, usize::MAX).unwrap_or(None) {
                seen.push(p);
                continue;
            }
            self.stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
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

    pub fn disconnect(mut self) {
        self.send(&Packet::Disconnect(Disconnect::default()));
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
    child: Child,
    pub addr: SocketAddr,
}

impl Mosquitto {
    /// `mosquitto -p PORT`, or `mosquitto -c FILE` with `config(port)` written to FILE.
    /// `None` (test skipped) when mosquitto is not installed outside CI.
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
        let child = command.stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
        // Owned at once, so the process is killed and reaped on every path.
        let mosquitto = Mosquitto {
            child,
            addr: format!("127.0.0.1:{port}").parse().unwrap(),
        };
        let started = Instant::now();
        while TcpStream::connect(mosquitto.addr).is_err() {
            assert!(started.elapsed() < Duration::from_secs(10), "mosquitto did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        Some(mosquitto)
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
