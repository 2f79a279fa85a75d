//! Interop with mosquitto_pub and mosquitto_sub (Debian mosquitto-clients) under MQTT 3.1,
//! 3.1.1 and 5.0: the seed's getting-started flow with `tern broker` in mosquitto's place.
#![allow(clippy::unwrap_used)]
mod common;
use common::*;
use std::io::{BufRead, BufReader};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::mpsc;

fn clients_installed() -> bool {
    peer_available(
        "mosquitto_pub/mosquitto_sub (apt-get install mosquitto-clients)",
        program_exists("mosquitto_sub") && program_exists("mosquitto_pub"),
    )
}

/// A running mosquitto_sub whose output lines arrive on a channel.
struct Sub {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Sub {
    /// Starts mosquitto_sub in debug mode and waits for its SUBACK.
    fn start(broker: &Broker, args: &[&str]) -> Sub {
        // stdbuf: line-buffered output, so debug lines arrive as they happen.
        let mut child = Command::new("stdbuf")
            .args([
                "-oL",
                "mosquitto_sub",
                "-h",
                "127.0.0.1",
                "-p",
                &broker.addr.port().to_string(),
                "-d",
                "-W",
                "60",
            ])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout: ChildStdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let sub = Sub { child, lines };
        sub.wait_for(|l| l.contains("received SUBACK"));
        sub
    }

    fn wait_for(&self, want: impl Fn(&str) -> bool) -> String {
        loop {
            let line = self.lines.recv_timeout(PATIENCE).expect("mosquitto_sub went quiet");
            if want(&line) {
                return line;
            }
        }
    }

    /// The next message line (`topic payload` with -v), skipping debug output.
    fn message(&self) -> String {
        self.wait_for(|l| !l.starts_with("Client ") && !l.starts_with("Subscribed"))
    }
}

impl Drop for Sub {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn publish(broker: &Broker, args: &[&str]) {
    let status = Command::new("mosquitto_pub")
        .args(["-h", "127.0.0.1", "-p", &broker.addr.port().to_string()])
        .args(args)
        .status()
        .unwrap();
    assert!(status.success(), "mosquitto_pub {args:?}");
}

#[test]
fn mosquitto_clients_exchange_messages_at_every_qos_and_version() {
    if !clients_installed() {
        return;
    }
    let broker = Broker::start();
    for version in ["mqttv31", "mqttv311", "mqttv5"] {
        let sub = Sub::start(&broker, &["-V", version, "-t", "seed/#", "-q", "2", "-v"]);
        for qos in ["0", "1", "2"] {
            publish(
                &broker,
                &[
                    "-V",
                    version,
                    "-t",
                    &format!("seed/qos{qos}"),
                    "-m",
                    &format!("hello {version}"),
                    "-q",
                    qos,
                ],
            );
            assert_eq!(sub.message(), format!("seed/qos{qos} hello {version}"));
        }
    }
}

#[test]
fn mosquitto_clients_see_retained_messages() {
    if !clients_installed() {
        return;
    }
    let broker = Broker::start();
    publish(&broker, &["-t", "seed/status", "-m", "online", "-r", "-q", "1"]);
    for version in ["mqttv311", "mqttv5"] {
        let out = Command::new("mosquitto_sub")
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &broker.addr.port().to_string(),
                "-V",
                version,
                "-t",
                "seed/status",
                "-C",
                "1",
                "-W",
                "20",
                "-F",
                "%t %p %r",
            ])
            .output()
            .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            "seed/status online 1",
            "{version}"
        );
    }
}

#[test]
fn a_mosquitto_sub_persistent_session_receives_what_was_published_while_away() {
    if !clients_installed() {
        return;
    }
    let broker = Broker::start();
    for (version, extra) in [("mqttv311", vec![]), ("mqttv5", vec!["-x", "3600"])] {
        let id = format!("durable-{version}");
        let mut args = vec!["-V", version, "-c", "-i", &id, "-q", "1", "-t", "seed/durable", "-E"];
        args.extend(extra.iter().copied());
        let sub = Sub::start(&broker, &args);
        drop(sub);
        publish(
            &broker,
            &["-V", version, "-t", "seed/durable", "-m", "kept for you", "-q", "1"],
        );
        let mut args = vec![
            "-V",
            version,
            "-c",
            "-i",
            &id,
            "-q",
            "1",
            "-t",
            "seed/durable",
            "-C",
            "1",
            "-W",
            "20",
        ];
        args.extend(extra.iter().copied());
        let out = Command::new("mosquitto_sub")
            .args(["-h", "127.0.0.1", "-p", &broker.addr.port().to_string()])
            .args(&args)
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "kept for you", "{version}");
    }
}

#[test]
fn the_will_of_a_killed_mosquitto_sub_is_published() {
    if !clients_installed() {
        return;
    }
    let broker = Broker::start();
    let watcher = Sub::start(&broker, &["-t", "seed/will", "-v"]);
    let mut doomed = Sub::start(
        &broker,
        &[
            "-t",
            "seed/anything",
            "--will-topic",
            "seed/will",
            "--will-payload",
            "lost",
            "--will-qos",
            "1",
        ],
    );
    doomed.child.kill().unwrap();
    assert_eq!(watcher.message(), "seed/will lost");
}

#[test]
fn mosquitto_subs_share_a_subscription() {
    if !clients_installed() {
        return;
    }
    let broker = Broker::start();
    for version in ["mqttv311", "mqttv5"] {
        let subs: Vec<Sub> = (0..2)
            .map(|_| Sub::start(&broker, &["-V", version, "-t", "$share/workers/jobs", "-q", "1"]))
            .collect();
        for i in 0..6 {
            publish(
                &broker,
                &["-V", version, "-t", "jobs", "-m", &format!("job{i}"), "-q", "1"],
            );
        }
        let mut got: Vec<String> = subs.iter().flat_map(|s| (0..3).map(|_| s.message())).collect();
        got.sort();
        assert_eq!(got, (0..6).map(|i| format!("job{i}")).collect::<Vec<_>>(), "{version}");
    }
}
