//! The command line behaves like mosquitto's (issue 13): two `tern broker -p N` in one
//! folder both run, `--data-dir`, `--version`, `-d` reporting a failed start before it
//! detaches, `tern passwd` refusing an empty password, `tern sub` leaving with DISCONNECT
//! on SIGINT/SIGTERM and reconnecting when the broker restarts, `-d` printing every
//! packet in libmosquitto's words, and help text for every flag. Each runs the real
//! `tern` binary.
#![allow(clippy::unwrap_used, clippy::expect_used)]
mod common;
use common::*;
use std::io::Write;
use std::net::SocketAddr;
use std::os::fd::{FromRawFd, OwnedFd};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tern_proto::*;

/// A `tern` process (broker or tool) whose standard output and error are collected as
/// they come. Killed on drop.
struct Running {
    child: Child,
    stdout: Arc<Mutex<Vec<u8>>>,
    stderr: Arc<Mutex<Vec<u8>>>,
    readers: Vec<std::thread::JoinHandle<()>>,
}

impl Running {
    /// `tern ARGS`, in `dir` if given.
    fn spawn(dir: Option<&Path>, args: &[&str]) -> Running {
        let mut command = Command::new(env!("CARGO_BIN_EXE_tern"));
        if let Some(dir) = dir {
            command.current_dir(dir);
        }
        let mut child = command
            .args(args)
            .env("TERN_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (stdout, stderr) = (Arc::default(), Arc::default());
        let readers = vec![
            collect(child.stdout.take().unwrap(), Arc::clone(&stdout)),
            collect(child.stderr.take().unwrap(), Arc::clone(&stderr)),
        ];
        Running {
            child,
            stdout,
            stderr,
            readers,
        }
    }

    fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.stderr.lock().unwrap()).to_string()
    }

    fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.stdout.lock().unwrap()).to_string()
    }

    /// Waits until standard error holds `needle` `n` times or more.
    fn wait_stderr_count(&self, needle: &str, n: usize) {
        let deadline = Instant::now() + PATIENCE;
        while self.stderr().matches(needle).count() < n {
            assert!(
                Instant::now() < deadline,
                "{needle:?} x{n} not on standard error: {}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn wait_stderr(&self, needle: &str) {
        self.wait_stderr_count(needle, 1);
    }

    fn wait_stdout(&self, needle: &str) {
        wait_until(&format!("{needle:?} on standard output"), || {
            self.stdout().contains(needle)
        });
    }

    /// The address of a broker's first "listening on" line, once the line is whole (its
    /// bytes may arrive in more than one read).
    fn addr(&self) -> SocketAddr {
        wait_until("a whole \"listening on\" line on standard error", || {
            self.stderr()
                .split_once("listening on ")
                .is_some_and(|(_, rest)| rest.contains('\n'))
        });
        listening_addr(&self.stderr())
    }

    fn signal(&self, signal: i32) {
        // SAFETY: a signal to our own child.
        unsafe { libc::kill(self.child.id() as i32, signal) };
    }

    /// Waits for the process to exit: its exit code, standard output and error.
    fn finish(mut self) -> (Option<i32>, String, String) {
        let deadline = Instant::now() + PATIENCE;
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            assert!(
                Instant::now() < deadline,
                "did not exit: {}{}",
                self.stdout(),
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(10));
        };
        for reader in self.readers.drain(..) {
            reader.join().unwrap();
        }
        (status.code(), self.stdout(), self.stderr())
    }

    /// SIGTERM, and a clean exit.
    fn stop(self) {
        self.signal(libc::SIGTERM);
        let (code, _, err) = self.finish();
        assert_eq!(code, Some(0), "{err}");
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The address in the first "listening on ADDR" of `text`.
fn listening_addr(text: &str) -> SocketAddr {
    text.split("listening on ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no listening address in {text:?}"))
}

/// Runs `command` to completion (all its output read), failing after `PATIENCE`: a
/// daemon that kept the pipes open would otherwise hang the test.
fn output_within_patience(mut command: Command) -> Output {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(command.stdin(Stdio::null()).output().unwrap());
    });
    rx.recv_timeout(PATIENCE)
        .expect("the command did not finish (are its output pipes still held?)")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).to_string()
}

/// `tern ARGS` run in `dir`, to completion.
fn tern_in(dir: &Path, args: &[&str]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_tern"));
    command.current_dir(dir).args(args);
    output_within_patience(command)
}

/// A CONNECT/CONNACK round trip: the broker at `addr` serves MQTT.
fn serves(addr: SocketAddr, client_id: &str) {
    let mut client = Client::open(addr, V311);
    let ack = client.connect(&connect_packet(V311, client_id, true, 60));
    assert_eq!(ack.reason_code, ReasonCode::SUCCESS);
    client.disconnect();
}

// ---------------------------------------------------------------------------------------
// tern broker: where state is kept, --data-dir, --version, --help

#[test]
fn two_brokers_started_in_one_folder_both_run() {
    let dir = tempfile::tempdir().unwrap();
    let first = Running::spawn(Some(dir.path()), &["broker", "-p", "0"]);
    let first_addr = first.addr();
    let second = Running::spawn(Some(dir.path()), &["broker", "-p", "0"]);
    let second_addr = second.addr();
    serves(first_addr, "in-first");
    serves(second_addr, "in-second");
    // The first keeps ./tern-data; the second says it keeps its state in memory.
    assert!(dir.path().join("tern-data/tern.redb").exists());
    assert!(!first.stderr().contains("in use"), "{}", first.stderr());
    let said = second.stderr();
    assert!(
        said.contains("tern-data is in use by another broker") && said.contains("in memory only"),
        "{said}"
    );
    second.stop();
    first.stop();
}

#[test]
fn data_dir_says_where_the_store_is_and_a_taken_one_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("state");
    let data = data.to_str().unwrap();
    let first = Running::spawn(Some(dir.path()), &["broker", "-p", "0", "--data-dir", data]);
    serves(first.addr(), "kept");
    assert!(Path::new(data).join("tern.redb").exists());
    assert!(!dir.path().join("tern-data").exists(), "no ./tern-data with --data-dir");
    // Named explicitly, a store in use is an error, not a silent fallback.
    let out = tern_in(dir.path(), &["broker", "-p", "0", "--data-dir", data]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("is in use by another running broker"),
        "{}",
        text(&out.stderr)
    );
    // --data-dir turns persistence on over a mosquitto.conf that has none.
    let conf = dir.path().join("m.conf");
    std::fs::write(&conf, "listener 0 127.0.0.1\nallow_anonymous true\n").unwrap();
    let other = dir.path().join("other");
    let with_file = Running::spawn(
        Some(dir.path()),
        &[
            "broker",
            "-c",
            conf.to_str().unwrap(),
            "--data-dir",
            other.to_str().unwrap(),
        ],
    );
    serves(with_file.addr(), "configured");
    assert!(other.join("tern.redb").exists());
    with_file.stop();
    first.stop();
}

#[test]
fn broker_help_says_where_state_is_kept_and_version_prints() {
    let help = text(&tern(&["broker", "--help"]).stdout);
    for needle in [
        "--data-dir <DIR>",
        "Where state is kept",
        "./tern-data",
        "in memory only",
        "--version",
    ] {
        assert!(help.contains(needle), "{needle:?} not in {help}");
    }
    let out = tern(&["broker", "--version"]);
    assert!(out.status.success());
    assert!(text(&out.stdout).contains(env!("CARGO_PKG_VERSION")));
}

// ---------------------------------------------------------------------------------------
// tern broker -d

/// A daemon, by process id; killed on drop if the test did not stop it.
struct Daemon(i32);

impl Daemon {
    fn alive(&self) -> bool {
        // Reparented to whichever process reaps orphans here: a zombie has exited.
        match std::fs::read_to_string(format!("/proc/{}/stat", self.0)) {
            Ok(stat) => stat
                .rsplit(')')
                .next()
                .is_some_and(|rest| !rest.trim_start().starts_with('Z')),
            Err(_) => false,
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if self.alive() {
            // SAFETY: a signal to the daemon this test started.
            unsafe { libc::kill(self.0, libc::SIGKILL) };
        }
    }
}

#[test]
fn a_daemon_reports_a_failed_start_before_detaching() {
    let dir = tempfile::tempdir().unwrap();
    // The port is taken.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let out = tern_in(dir.path(), &["broker", "-d", "-p", &port]);
    assert_eq!(out.status.code(), Some(1));
    let said = text(&out.stderr);
    assert!(
        said.contains(&format!("cannot listen on 127.0.0.1:{port}")) && said.contains("in use"),
        "{said}"
    );
    // The data directory is held by another broker.
    let holder = Running::spawn(Some(dir.path()), &["broker", "-p", "0", "--data-dir", "held"]);
    holder.addr();
    let out = tern_in(dir.path(), &["broker", "-d", "-p", "0", "--data-dir", "held"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("held/tern.redb is in use"),
        "{}",
        text(&out.stderr)
    );
    holder.stop();
    // A configuration file with a directive Tern does not know.
    let conf = dir.path().join("bad.conf");
    std::fs::write(&conf, "listener 0 127.0.0.1\nno_such_directive 1\n").unwrap();
    let out = tern_in(dir.path(), &["broker", "-d", "-c", conf.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let said = text(&out.stderr);
    assert!(
        said.contains("bad.conf:2") && said.contains("no_such_directive"),
        "{said}"
    );
}

#[test]
fn a_daemon_detaches_once_it_listens() {
    let dir = tempfile::tempdir().unwrap();
    let out = tern_in(dir.path(), &["broker", "-d", "-p", "0", "--data-dir", "d"]);
    let said = text(&out.stderr);
    assert!(out.status.success(), "{said}");
    let pid: i32 = said
        .split("pid ")
        .nth(1)
        .and_then(|rest| rest.split(')').next()?.parse().ok())
        .unwrap_or_else(|| panic!("no pid in {said:?}"));
    let daemon = Daemon(pid);
    assert!(said.contains("(in the background, pid"), "{said}");
    // It listened before the command returned: no waiting for a port.
    let addr = listening_addr(&said);
    let mut client = Client::open(addr, V311);
    let ack = client.connect(&connect_packet(V311, "to-the-daemon", true, 60));
    assert_eq!(ack.reason_code, ReasonCode::SUCCESS);
    assert!(dir.path().join("d/tern.redb").exists());
    // SAFETY: a signal to the daemon this test started.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    client.expect_closed();
    wait_until("the daemon to exit", || !daemon.alive());
}

// ---------------------------------------------------------------------------------------
// tern passwd

#[test]
fn passwd_refuses_an_empty_password() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("pw");
    let f = file.to_str().unwrap();
    let out = tern(&["passwd", "-c", "-b", f, "alice", ""]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(text(&out.stderr), "Error: Empty password.\n");
    assert!(!file.exists(), "nothing written");
    // The password read from standard input (not a terminal).
    let mut command = Command::new(env!("CARGO_BIN_EXE_tern"));
    let mut child = command
        .args(["passwd", "-c", f, "bob"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(text(&out.stderr), "Error: Empty password.\n");
    assert!(!file.exists(), "nothing written");
}

/// `tern passwd ARGS` with a terminal (a pseudo-terminal) as standard input, on which
/// `typed` is typed; returns the output.
fn passwd_on_a_terminal(args: &[&str], typed: &[u8]) -> Output {
    let (mut master, mut slave) = (0, 0);
    // SAFETY: openpty fills the two descriptors; null name, termios and window size.
    let opened = unsafe {
        libc::openpty(
            &mut master,
            &mut slave,
            std::ptr::null_mut(),
            std::ptr::null(),
            std::ptr::null(),
        )
    };
    assert_eq!(opened, 0, "openpty: {}", std::io::Error::last_os_error());
    // SAFETY: both descriptors were just opened and belong to nothing else.
    let (master, slave) = unsafe { (OwnedFd::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) };
    let child = Command::new(env!("CARGO_BIN_EXE_tern"))
        .args(args)
        .stdin(Stdio::from(slave))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut terminal = std::fs::File::from(master);
    terminal.write_all(typed).unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output().unwrap());
    });
    let out = rx.recv_timeout(PATIENCE).expect("tern passwd did not finish");
    drop(terminal);
    out
}

#[test]
fn passwd_on_a_terminal_refuses_an_empty_password_and_takes_a_confirmed_one() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("pw");
    let f = file.to_str().unwrap();
    let out = passwd_on_a_terminal(&["passwd", "-c", f, "carol"], b"\n");
    assert_eq!(out.status.code(), Some(1));
    let said = text(&out.stderr);
    assert!(
        said.starts_with("Password: ") && said.ends_with("Error: Empty password.\n"),
        "{said:?}"
    );
    assert!(!said.contains("Reenter"), "refused at the first prompt: {said:?}");
    assert!(!file.exists());
    let out = passwd_on_a_terminal(&["passwd", "-c", f, "carol"], b"cherry\ncherry\n");
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(std::fs::read_to_string(&file).unwrap().starts_with("carol:$7$101$"));
}

// ---------------------------------------------------------------------------------------
// tern sub: signals and reconnecting

/// Reads `watcher`'s messages until `$SYS/broker/clients/connected` says `count`; returns
/// the other messages that came before it.
fn until_connected(watcher: &mut Client, count: &str) -> Vec<Publish> {
    let mut others = Vec::new();
    loop {
        let p = watcher.recv_publish();
        if p.topic == "$SYS/broker/clients/connected" {
            if &p.payload[..] == count.as_bytes() {
                return others;
            }
        } else {
            others.push(p);
        }
    }
}

#[test]
fn sub_leaves_with_disconnect_on_sigint_and_sigterm() {
    // $SYS every second: its clients/connected count changes only once a connection has
    // finished closing, will included, so it is the barrier behind which a will would be.
    let broker = Broker::with_config(
        "sys.conf",
        "listener 0 127.0.0.1\nallow_anonymous true\nsys_interval 1\n",
    );
    let port = broker.addr.port().to_string();
    let mut watcher = broker.connect(V311, "will-watcher");
    let options = SubscriptionOptions::default();
    watcher.subscribe_with(1, &[("will/#", options), ("$SYS/broker/clients/connected", options)]);
    until_connected(&mut watcher, "1");
    for (version, signal) in [
        ("mqttv311", libc::SIGINT),
        ("mqttv311", libc::SIGTERM),
        ("mqttv5", libc::SIGINT),
        ("mqttv5", libc::SIGTERM),
    ] {
        let id = format!("leaver-{version}-{signal}");
        let sub = Running::spawn(
            None,
            &[
                "sub",
                "-h",
                "127.0.0.1",
                "-p",
                &port,
                "-V",
                version,
                "-d",
                "-i",
                &id,
                "-t",
                "quiet/t",
                "--will-topic",
                "will/x",
                "--will-payload",
                "died",
            ],
        );
        sub.wait_stderr("Subscribed (mid: 1): 0");
        until_connected(&mut watcher, "2");
        sub.signal(signal);
        let (code, _, err) = sub.finish();
        assert_eq!(code, Some(0), "{version} {signal}: {err}");
        assert!(err.ends_with(&format!("Client {id} sending DISCONNECT\n")), "{err}");
        let before = until_connected(&mut watcher, "1");
        let wills: Vec<&[u8]> = before.iter().map(|p| &p.payload[..]).collect();
        if version == "mqttv5" {
            // mosquitto_sub's way under 5.0: DISCONNECT 0x04, "Disconnect with Will
            // Message", so the broker publishes the will all the same.
            assert_eq!(wills, vec![b"died".as_slice()], "{version} {signal}");
        } else {
            assert!(wills.is_empty(), "{version} {signal}: a will after DISCONNECT");
        }
    }
}

#[test]
fn sub_reconnects_and_subscribes_again_when_the_broker_restarts() {
    let dir = tempfile::tempdir().unwrap();
    for version in ["mqttv311", "mqttv5"] {
        let first = Running::spawn(Some(dir.path()), &["broker", "-p", "0"]);
        let addr = first.addr();
        let port = addr.port().to_string();
        let sub = Running::spawn(
            None,
            &[
                "sub",
                "-h",
                "127.0.0.1",
                "-p",
                &port,
                "-V",
                version,
                "-d",
                "-t",
                "again/#",
                "-q",
                "1",
                "-v",
            ],
        );
        sub.wait_stderr("Subscribed (mid: 1): 1");
        let mut publisher = Client::open(addr, V311);
        publisher.connect(&connect_packet(V311, "before", true, 60));
        publisher.publish("again/before", b"one", QoS::AtLeastOnce, false, 1);
        sub.wait_stdout("again/before one\n");
        first.stop();
        if version == "mqttv5" {
            sub.wait_stderr("Received DISCONNECT (139)");
        }
        let second = Running::spawn(Some(dir.path()), &["broker", "-p", &port]);
        assert_eq!(second.addr(), addr);
        // Connected again and subscribed again, as mosquitto_sub does.
        sub.wait_stderr_count("received SUBACK", 2);
        let mut publisher = Client::open(addr, V311);
        publisher.connect(&connect_packet(V311, "after", true, 60));
        publisher.publish("again/after", b"two", QoS::AtLeastOnce, false, 1);
        sub.wait_stdout("again/after two\n");
        sub.signal(libc::SIGINT);
        let (code, out, err) = sub.finish();
        assert_eq!(code, Some(0), "{err}");
        assert_eq!(out, "again/before one\nagain/after two\n");
        assert_eq!(err.matches("sending CONNECT").count(), 2, "{err}");
        second.stop();
    }
}

// ---------------------------------------------------------------------------------------
// -d: every packet, in libmosquitto's words

fn lines(text: &str) -> Vec<&str> {
    text.lines().collect()
}

#[test]
fn d_prints_every_packet_sent_and_received() {
    let broker = Broker::start();
    let port = broker.addr.port().to_string();
    let at = ["-h", "127.0.0.1", "-p", port.as_str()];
    let run = |more: &[&str]| {
        let out = tern(&[&more[..1], &at[..], &more[1..]].concat());
        assert!(out.status.success(), "{}", text(&out.stderr));
        text(&out.stderr)
    };
    let err = run(&["pub", "-d", "-i", "dp", "-t", "dbg/t", "-m", "hello", "-q", "1"]);
    assert_eq!(
        lines(&err),
        [
            "Client dp sending CONNECT",
            "Client dp received CONNACK (0)",
            "Client dp sending PUBLISH (d0, q1, r0, m1, 'dbg/t', ... (5 bytes))",
            "Client dp received PUBACK (Mid: 1, RC:0)",
            "Client dp sending DISCONNECT",
        ]
    );
    let err = run(&["pub", "-d", "-i", "dp", "-t", "dbg/t", "-m", "hello", "-q", "2", "-r"]);
    assert_eq!(
        lines(&err)[2..5],
        [
            "Client dp sending PUBLISH (d0, q2, r1, m1, 'dbg/t', ... (5 bytes))",
            "Client dp received PUBREC (Mid: 1)",
            "Client dp sending PUBREL (m1)",
        ]
    );
    assert_eq!(lines(&err)[5], "Client dp received PUBCOMP (Mid: 1, RC:0)");
    // The subscriber gets the retained message at QoS 1 and leaves after one (-C 1).
    let err = run(&["sub", "-d", "-i", "ds", "-t", "dbg/t", "-q", "1", "-C", "1"]);
    assert_eq!(
        lines(&err),
        [
            "Client ds sending CONNECT",
            "Client ds received CONNACK (0)",
            "Client ds sending SUBSCRIBE (Mid: 1, Topic: dbg/t, QoS: 1, Options: 0x00)",
            "Client ds received SUBACK",
            "Subscribed (mid: 1): 1",
            "Client ds received PUBLISH (d0, q1, r1, m1, 'dbg/t', ... (5 bytes))",
            "Client ds sending PUBACK (m1, rc0)",
            "Client ds sending DISCONNECT",
        ]
    );
    // rr: subscribe, request, response.
    let mut responder = broker.connect(V5, "responder");
    responder.subscribe("dbg/req", QoS::AtMostOnce);
    let rr = Running::spawn(
        None,
        &[
            "rr",
            "-h",
            "127.0.0.1",
            "-p",
            &port,
            "-d",
            "-i",
            "dr",
            "-t",
            "dbg/req",
            "-e",
            "dbg/resp",
            "-m",
            "hi",
        ],
    );
    let request = responder.recv_publish();
    responder.send(&Packet::Publish(Publish {
        dup: false,
        qos: QoS::AtMostOnce,
        retain: false,
        topic: ByteStr::from("dbg/resp"),
        packet_id: 0,
        properties: Properties(vec![Property::CorrelationData(
            request.properties.correlation_data().unwrap(),
        )]),
        payload: bytes::Bytes::from_static(b"pong"),
    }));
    let (code, out, err) = rr.finish();
    assert_eq!((code, out.as_str()), (Some(0), "pong\n"), "{err}");
    for line in [
        "Client dr sending SUBSCRIBE (Mid: 1, Topic: dbg/resp, QoS: 0, Options: 0x00)",
        "Client dr sending PUBLISH (d0, q0, r0, m0, 'dbg/req', ... (2 bytes))",
        "Client dr received PUBLISH (d0, q0, r0, m0, 'dbg/resp', ... (4 bytes))",
        "Client dr sending DISCONNECT",
    ] {
        assert!(lines(&err).contains(&line), "{line:?} not in {err}");
    }
}

/// `mosquitto_pub -d` and `mosquitto_sub -d` (their debug lines are on standard output)
/// print the same lines as `tern pub -d` and `tern sub -d` (on standard error).
#[test]
fn d_lines_are_the_ones_mosquitto_tools_print() {
    if !peer_available(
        "mosquitto_pub (apt-get install mosquitto-clients)",
        program_exists("mosquitto_pub"),
    ) {
        return;
    }
    let broker = Broker::start();
    let port = broker.addr.port().to_string();
    for qos in ["1", "2"] {
        let args = [
            "-h",
            "127.0.0.1",
            "-p",
            &port,
            "-d",
            "-i",
            "same",
            "-t",
            "cmp/t",
            "-m",
            "hello",
            "-q",
            qos,
        ];
        let theirs = output_within_patience({
            let mut c = Command::new("mosquitto_pub");
            c.args(args);
            c
        });
        let ours = tern(&[&["pub"][..], &args[..]].concat());
        assert!(theirs.status.success() && ours.status.success());
        assert_eq!(text(&ours.stderr), text(&theirs.stdout), "QoS {qos}");
    }
    let sub_args = [
        "-h",
        "127.0.0.1",
        "-p",
        &port,
        "-d",
        "-i",
        "same-sub",
        "-t",
        "cmp/s",
        "-q",
        "1",
        "-C",
        "1",
    ];
    // (-d is the harness's own.)
    let theirs = Background::mosquitto_sub(&[&sub_args[..4], &sub_args[5..]].concat());
    let mut publisher = broker.connect(V311, "cmp-publisher");
    publisher.publish("cmp/s", b"hello", QoS::AtLeastOnce, false, 1);
    let (code, their_out, _) = theirs.finish();
    assert_eq!(code, Some(0));
    let ours = Running::spawn(None, &[&["sub"][..], &sub_args[..]].concat());
    ours.wait_stderr("Subscribed (mid: 1)");
    publisher.publish("cmp/s", b"hello", QoS::AtLeastOnce, false, 2);
    let (code, our_out, our_err) = ours.finish();
    assert_eq!(code, Some(0));
    assert_eq!(our_out, "hello\n");
    // mosquitto_sub -d mixes the message into its debug lines.
    let their_debug: Vec<&str> = lines(&their_out).into_iter().filter(|l| *l != "hello").collect();
    assert_eq!(lines(&our_err), their_debug);
}

// ---------------------------------------------------------------------------------------
// help text, rr -W

/// The flags and arguments in clap's `--help` output that have no description.
fn undocumented(help: &str) -> Vec<String> {
    let mut entries: Vec<(String, String)> = Vec::new();
    let mut in_section = false;
    for line in help.lines() {
        if !line.starts_with(' ') {
            in_section = line == "Options:" || line == "Arguments:";
            continue;
        }
        if !in_section {
            continue;
        }
        let trimmed = line.trim();
        if trimmed.starts_with('-') || trimmed.starts_with('<') {
            let (spec, description) = trimmed.split_once("  ").unwrap_or((trimmed, ""));
            entries.push((spec.to_string(), description.to_string()));
        } else if let Some((_, description)) = entries.last_mut() {
            description.push_str(trimmed);
        }
    }
    entries
        .into_iter()
        .filter(|(_, description)| {
            let without_default = description.split("[default:").next().unwrap_or("");
            without_default.trim().is_empty()
        })
        .map(|(spec, _)| spec)
        .collect()
}

#[test]
fn every_flag_has_help_text() {
    for tool in ["pub", "sub", "rr", "passwd", "broker"] {
        let out = tern(&[tool, "--help"]);
        assert!(out.status.success(), "{tool}");
        let help = text(&out.stdout);
        assert!(help.contains("Options:"), "{help}");
        assert_eq!(undocumented(&help), Vec::<String>::new(), "tern {tool} --help:\n{help}");
    }
    // The check itself finds a flag without text.
    assert_eq!(
        undocumented("Options:\n  -x, --bare\n          \n  -y  Why\n"),
        ["-x, --bare"]
    );
}

#[test]
fn rr_without_a_response_times_out_with_status_27() {
    let broker = Broker::start();
    let port = broker.addr.port().to_string();
    // Time is the subject here: -W 1.
    let out = tern(&[
        "rr",
        "-h",
        "127.0.0.1",
        "-p",
        &port,
        "-t",
        "nobody/home",
        "-e",
        "r/me",
        "-m",
        "x",
        "-W",
        "1",
    ]);
    assert_eq!(out.status.code(), Some(27));
    assert_eq!(text(&out.stderr), "Timed out\n");
}
