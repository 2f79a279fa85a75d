//! Running the broker: $SYS topics, configuration files, SIGTERM and SIGHUP.
#![allow(clippy::unwrap_used)]
mod common;
use common::*;
use std::collections::HashMap;
use std::process::Command;
use std::time::{Duration, Instant};
use tern_proto::*;

#[test]
fn sys_topics_use_mosquitto_names() {
    let broker = Broker::with_config(
        "sys.conf",
        "listener 0 127.0.0.1\nallow_anonymous true\nsys_interval 1\n",
    );
    let mut c = broker.connect(V311, "sys-reader");
    c.subscribe("$SYS/broker/#", QoS::AtMostOnce);
    let mut seen = HashMap::new();
    let wanted = [
        "$SYS/broker/version",
        "$SYS/broker/uptime",
        "$SYS/broker/clients/connected",
        "$SYS/broker/clients/total",
        "$SYS/broker/messages/received",
        "$SYS/broker/messages/sent",
        "$SYS/broker/bytes/received",
        "$SYS/broker/subscriptions/count",
        "$SYS/broker/retained messages/count",
        "$SYS/broker/load/messages/received/1min",
    ];
    let deadline = Instant::now() + PATIENCE;
    while Instant::now() < deadline && !wanted.iter().all(|t| seen.contains_key(*t)) {
        if let Some(Packet::Publish(p)) = c.recv_within(Duration::from_millis(500)) {
            seen.insert(p.topic.to_string(), String::from_utf8_lossy(&p.payload).to_string());
        }
    }
    for topic in wanted {
        assert!(seen.contains_key(topic), "{topic} missing from {seen:?}");
    }
    assert!(seen["$SYS/broker/uptime"].ends_with(" seconds"));
    assert!(seen["$SYS/broker/version"].starts_with("tern version"));
    // The reader's own subscription is counted once the next update comes.
    let mut count = seen["$SYS/broker/subscriptions/count"].clone();
    let deadline = Instant::now() + PATIENCE;
    while count == "0" && Instant::now() < deadline {
        if let Some(Packet::Publish(p)) = c.recv_within(Duration::from_millis(500)) {
            if p.topic == "$SYS/broker/subscriptions/count" {
                count = String::from_utf8_lossy(&p.payload).to_string();
            }
        }
    }
    assert_eq!(count, "1");
}

#[test]
fn allow_anonymous_false_refuses_clients_without_credentials() {
    let broker = Broker::with_config("anon.conf", "listener 0 127.0.0.1\nallow_anonymous false\n");
    for version in VERSIONS {
        let mut c = broker.client(version);
        c.send(&Packet::Connect(Box::new(connect_packet(version, "anon", true, 60))));
        let seen = c.expect_closed();
        assert!(
            matches!(&seen[..], [Packet::ConnectAck(a)] if a.reason_code == ReasonCode::NOT_AUTHORIZED),
            "{seen:?}"
        );
    }
}

#[test]
fn a_bad_config_file_names_the_file_line_and_directive() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.conf");
    std::fs::write(&path, "listener 1883\n# fine so far\nautosave_everything yes\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_tern"))
        .args(["broker", "-c", path.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "{}:3: autosave_everything: unknown or unsupported directive",
            path.display()
        )),
        "{stderr}"
    );
    let toml = dir.path().join("bad.toml");
    std::fs::write(&toml, "sys_interval = 10\nmax_queued = 3\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_tern"))
        .args(["broker", "-c", toml.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("max_queued") && stderr.contains("line 2"), "{stderr}");
}

#[test]
fn sigterm_disconnects_clients_and_exits_cleanly() {
    let mut broker = Broker::start();
    let mut c5 = broker.connect(V5, "v5");
    let mut c3 = broker.connect(V311, "v3");
    broker.signal(SIGTERM);
    assert_eq!(disconnect_reason(&c5.expect_closed()), ReasonCode::SERVER_SHUTTING_DOWN);
    assert!(c3.expect_closed().is_empty());
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Some(status) = broker.child.try_wait().unwrap() {
            assert!(status.success(), "{status}");
            break;
        }
        assert!(Instant::now() < deadline, "broker did not exit");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn sighup_reloads_the_configuration() {
    let broker = Broker::with_config("reload.conf", "listener 0 127.0.0.1\nallow_anonymous true\n");
    broker.connect(V311, "before-reload");
    std::fs::write(
        broker.config_path.as_ref().unwrap(),
        "listener 0 127.0.0.1\nallow_anonymous false\n",
    )
    .unwrap();
    broker.signal(SIGHUP);
    assert!(broker.log_contains("configuration reloaded"));
    let mut c = broker.client(V311);
    c.send(&Packet::Connect(Box::new(connect_packet(
        V311,
        "after-reload",
        true,
        60,
    ))));
    let seen = c.expect_closed();
    assert!(
        matches!(&seen[..], [Packet::ConnectAck(a)] if a.reason_code == ReasonCode::NOT_AUTHORIZED),
        "{seen:?}"
    );
}

#[test]
fn daemon_mode_detaches_writes_its_pid_and_serves() {
    let dir = tempfile::tempdir().unwrap();
    let (pid_file, log_file) = (dir.path().join("tern.pid"), dir.path().join("tern.log"));
    let conf = dir.path().join("d.conf");
    std::fs::write(
        &conf,
        format!(
            "listener 0 127.0.0.1\nallow_anonymous true\npid_file {}\nlog_dest file {}\n",
            pid_file.display(),
            log_file.display()
        ),
    )
    .unwrap();
    let status = Command::new(env!("CARGO_BIN_EXE_tern"))
        .args(["broker", "-d", "-c", conf.to_str().unwrap()])
        .status()
        .unwrap();
    assert!(status.success(), "the foreground process exits once detached");
    let deadline = Instant::now() + PATIENCE;
    let addr = loop {
        assert!(Instant::now() < deadline, "no listening line in the log file");
        let log = std::fs::read_to_string(&log_file).unwrap_or_default();
        if let Some(rest) = log.split("listening on ").nth(1) {
            break rest
                .split_whitespace()
                .next()
                .unwrap()
                .parse::<std::net::SocketAddr>()
                .unwrap();
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let pid: i32 = std::fs::read_to_string(&pid_file).unwrap().trim().parse().unwrap();
    let mut c = Client::open(addr, V311);
    assert_eq!(
        c.connect(&connect_packet(V311, "daemon-client", true, 60)).reason_code,
        ReasonCode::SUCCESS
    );
    let _ = Command::new("kill").arg(pid.to_string()).status();
    assert!(c.expect_closed().is_empty());
    let deadline = Instant::now() + PATIENCE;
    while std::path::Path::new(&format!("/proc/{pid}")).exists() {
        assert!(Instant::now() < deadline, "daemon did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    }
}
