//! mosquitto's `log_dest syslog` (RFC 3164 datagrams, facility daemon or `log_facility`
//! local0-7), `log_dest topic` (`$SYS/broker/log/E|W|I`, QoS 2, expiring after 20 s, no
//! debug lines) and several destinations at once, against the real binary. Syslog lines go
//! to a datagram socket the test binds, named by `TERN_SYSLOG_SOCKET` (/dev/log otherwise).
#![allow(clippy::unwrap_used)]

mod common;
use common::*;
use std::io::{BufRead, BufReader};
use std::os::unix::net::UnixDatagram;
use std::process::{Child, Command, Stdio};
use tern_proto::*;

/// A broker started with `config` and `TERN_SYSLOG_SOCKET` set, its address, and its
/// standard error lines (the harness cannot set the variable).
struct SyslogBroker {
    child: Child,
    addr: std::net::SocketAddr,
    _dir: tempfile::TempDir,
}

impl Drop for SyslogBroker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The broker logging to a syslog socket bound by the test, and that socket.
fn syslog_broker(extra: &str) -> (SyslogBroker, UnixDatagram) {
    let dir = tempfile::tempdir().unwrap();
    let socket_path = dir.path().join("log.sock");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    socket.set_read_timeout(Some(PATIENCE)).unwrap();
    let config = dir.path().join("mosquitto.conf");
    std::fs::write(
        &config,
        format!("listener 0 127.0.0.1\nallow_anonymous true\nlog_dest syslog\n{extra}"),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_tern"))
        .args(["broker", "-c", config.to_str().unwrap()])
        .env("TERN_SYSLOG_SOCKET", &socket_path)
        .env("TERN_LOG", "info")
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = BufReader::new(child.stderr.take().unwrap());
    let mut addr = None;
    for line in stderr.lines().map_while(Result::ok) {
        if let Some(rest) = line.split("listening on ").nth(1) {
            addr = rest.split_whitespace().next().and_then(|a| a.parse().ok());
            break;
        }
    }
    let broker = SyslogBroker {
        child,
        addr: addr.expect("the broker announces its listener"),
        _dir: dir,
    };
    (broker, socket)
}

/// Datagrams from `socket` until one contains `needle`; panics after `PATIENCE`.
fn datagram_with(socket: &UnixDatagram, needle: &str) -> String {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = socket
            .recv(&mut buf)
            .unwrap_or_else(|e| panic!("no syslog line with {needle:?}: {e}"));
        let text = String::from_utf8_lossy(&buf[..n]).into_owned();
        if text.contains(needle) {
            return text;
        }
    }
}

/// Checks the RFC 3164 form syslog(3) sends: `<PRI>Mmm dd hh:mm:ss tern[PID]: message`.
fn assert_rfc3164(datagram: &str, priority: u8, pid: u32) {
    let rest = datagram
        .strip_prefix(&format!("<{priority}>"))
        .unwrap_or_else(|| panic!("priority {priority} expected: {datagram}"));
    let (stamp, message) = rest.split_at(15);
    let months = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    assert!(months.contains(&&stamp[..3]), "{datagram}");
    let bytes = stamp.as_bytes();
    assert!(
        bytes[3] == b' ' && bytes[6] == b' ' && bytes[9] == b':' && bytes[12] == b':',
        "{datagram}"
    );
    assert!(
        message.starts_with(&format!(" tern[{pid}]: ")),
        "tag and pid expected: {datagram}"
    );
}

#[test]
fn syslog_lines_use_the_daemon_facility_by_default() {
    let (broker, socket) = syslog_broker("");
    let mut client = Client::open(broker.addr, V311);
    client.connect(&connect_packet(V311, "syslogged", true, 60));
    let line = datagram_with(&socket, "syslogged");
    // daemon (3) * 8 + info (6)
    assert_rfc3164(&line, 30, broker.child.id());
    assert!(line.contains("client connected"), "{line}");
    // A protocol violation is a warning: 3 * 8 + 4.
    client.send_raw(&[0x30, 0x03, 0x00, 0x01, b'#']);
    let line = datagram_with(&socket, "protocol violation");
    assert_rfc3164(&line, 28, broker.child.id());
}

#[test]
fn log_facility_sends_syslog_lines_to_a_local_facility() {
    let (broker, socket) = syslog_broker("log_facility 5\n");
    let mut client = Client::open(broker.addr, V5);
    client.connect(&connect_packet(V5, "local5", true, 60));
    let line = datagram_with(&socket, "local5");
    // local5 (21) * 8 + info (6)
    assert_rfc3164(&line, 174, broker.child.id());
}

#[test]
fn a_bad_log_facility_stops_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mosquitto.conf");
    std::fs::write(&path, "listener 0 127.0.0.1\nlog_facility 8\n").unwrap();
    let out = tern(&["broker", "-c", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("mosquitto.conf:2: log_facility: 8: use 0 to 7"), "{said}");
}

/// The next PUBLISH on `$SYS/broker/log/...` whose payload contains `needle`.
fn log_message_with(client: &mut Client, needle: &str) -> Publish {
    loop {
        match client.recv() {
            Packet::Publish(p) => {
                if p.qos == QoS::ExactlyOnce {
                    client.send(&Packet::PublishReceived(PublishResponse::new(p.packet_id)));
                }
                if String::from_utf8_lossy(&p.payload).contains(needle) {
                    return p;
                }
            }
            Packet::PublishRelease(r) => client.send(&Packet::PublishComplete(PublishResponse::new(r.packet_id))),
            other => panic!("expected PUBLISH, got {other:?}"),
        }
    }
}

#[test]
fn log_dest_topic_publishes_lines_under_sys_broker_log() {
    // With stderr as well: several destinations all get every line.
    let broker = Broker::with_config(
        "mosquitto.conf",
        "listener 0 127.0.0.1\nallow_anonymous true\nlog_dest topic\nlog_dest stderr\n",
    );
    let mut watcher = broker.connect(V5, "watcher");
    watcher.subscribe("$SYS/broker/log/#", QoS::ExactlyOnce);
    broker.connect(V311, "newcomer").disconnect();
    let info = log_message_with(&mut watcher, "newcomer");
    assert_eq!(info.topic.as_str(), "$SYS/broker/log/I");
    assert_eq!((info.qos, info.retain), (QoS::ExactlyOnce, false));
    let expiry = info.properties.message_expiry_interval().unwrap();
    assert!((1..=20).contains(&expiry), "{expiry}");
    // mosquitto's line: seconds since 1970, a colon, the message.
    let text = String::from_utf8_lossy(&info.payload).into_owned();
    let (stamp, _) = text.split_once(": ").unwrap();
    assert!(stamp.parse::<u64>().is_ok_and(|s| s > 1_600_000_000), "{text}");
    assert!(broker.log_contains("newcomer"), "stderr gets the line too");
    // A warning.
    let mut bad = broker.client(V311);
    bad.connect(&connect_packet(V311, "violator", true, 60));
    bad.send_raw(&[0x30, 0x03, 0x00, 0x01, b'#']);
    let warning = log_message_with(&mut watcher, "protocol violation");
    assert_eq!(warning.topic.as_str(), "$SYS/broker/log/W");
    assert!(String::from_utf8_lossy(&warning.payload).contains("violator"));
}

#[test]
fn debug_lines_are_not_published() {
    let broker = Broker::with_config(
        "mosquitto.conf",
        "listener 0 127.0.0.1\nallow_anonymous true\nlog_dest topic\nlog_dest stderr\nlog_type all\n",
    );
    let mut watcher = broker.connect(V311, "watcher");
    watcher.subscribe("$SYS/broker/log/#", QoS::AtMostOnce);
    let mut pinger = broker.connect(V311, "pinger");
    pinger.ping();
    // The debug line of that PINGREQ is in the log...
    assert!(broker.log_line(&["Received PINGREQ from pinger"]));
    // ...and an info line logged after it is published; lines are published in order,
    // so the debug line would have come first.
    broker.connect(V311, "last");
    let mut topics = Vec::new();
    loop {
        let p = watcher.recv_publish();
        topics.push(p.topic.to_string());
        if String::from_utf8_lossy(&p.payload).contains("last") {
            break;
        }
    }
    assert!(topics.iter().all(|t| t != "$SYS/broker/log/D"), "{topics:?}");
}
