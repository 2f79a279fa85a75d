//! The command-line tools end to end: every flag of `tern pub`, `tern sub`, `tern rr` and
//! `tern passwd` tried as a user would, against the Tern broker, and the main flows also
//! against the mosquitto broker.
#![allow(clippy::unwrap_used)]
mod common;
use common::*;
use std::io::Write;
use std::net::SocketAddr;
use std::process::{Command, Output, Stdio};
use tern_proto::*;

fn tern_with_stdin(args: &[&str], input: &[u8]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_tern"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input).unwrap();
    child.wait_with_output().unwrap()
}

/// Runs `tern` with `more` (subcommand first) against `base` and asserts it succeeded.
fn ok(base: &[String], more: &[&str]) -> Output {
    let out = tern(&args(base, more));
    assert!(
        out.status.success(),
        "tern {more:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).to_string()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}

/// `-h 127.0.0.1 -p PORT` for `addr`.
fn at(addr: SocketAddr) -> Vec<String> {
    vec!["-h".into(), "127.0.0.1".into(), "-p".into(), addr.port().to_string()]
}

/// The subcommand (`more[0]`), then the host and port, then the rest.
fn args<'a>(base: &'a [String], more: &[&'a str]) -> Vec<&'a str> {
    let (command, rest) = more.split_first().expect("a subcommand");
    std::iter::once(*command)
        .chain(base.iter().map(String::as_str))
        .chain(rest.iter().copied())
        .collect()
}

fn raw_sub(broker: &Broker, version: ProtocolVersion, filter: &str, qos: QoS) -> Client {
    let mut c = broker.connect(version, &format!("raw-{filter}-{version}"));
    c.subscribe(filter, qos);
    c
}

#[test]
fn pub_sends_each_message_source_at_each_qos_and_version() {
    let broker = Broker::start();
    let base = at(broker.addr);
    let mut sub = raw_sub(&broker, V5, "p/#", QoS::ExactlyOnce);
    for (version, qos) in [
        ("mqttv31", "0"),
        ("mqttv311", "1"),
        ("mqttv5", "2"),
        ("311", "2"),
        ("5", "1"),
    ] {
        let out = tern(&args(
            &base,
            &["pub", "-V", version, "-q", qos, "-t", "p/m", "-m", "hi"],
        ));
        assert!(out.status.success(), "{}", stderr(&out));
        let p = sub.recv_publish();
        assert_eq!(
            (&p.payload[..], p.qos as u8),
            (&b"hi"[..], qos.parse::<u8>().unwrap()),
            "{version}"
        );
        if p.qos == QoS::AtLeastOnce {
            sub.send(&Packet::PublishAck(PublishResponse::new(p.packet_id)));
        } else if p.qos == QoS::ExactlyOnce {
            sub.send(&Packet::PublishReceived(PublishResponse::new(p.packet_id)));
            assert!(matches!(sub.recv(), Packet::PublishRelease(_)));
            sub.send(&Packet::PublishComplete(PublishResponse::new(p.packet_id)));
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("blob");
    let blob: Vec<u8> = (0..=255u8).cycle().take(5000).collect();
    std::fs::write(&file, &blob).unwrap();
    ok(&base, &["pub", "-t", "p/f", "-f", file.to_str().unwrap()]);
    assert_eq!(&sub.recv_publish().payload[..], &blob[..], "-f is binary-safe");
    assert!(
        tern_with_stdin(&args(&base, &["pub", "-t", "p/l", "-l"]), b"one\n\ntwo\n")
            .status
            .success()
    );
    assert_eq!(&sub.recv_publish().payload[..], b"one");
    assert_eq!(&sub.recv_publish().payload[..], b"two", "blank lines are skipped");
    assert!(
        tern_with_stdin(&args(&base, &["pub", "-t", "p/s", "-s"]), b"all\nof it")
            .status
            .success()
    );
    assert_eq!(&sub.recv_publish().payload[..], b"all\nof it");
    ok(&base, &["pub", "-t", "p/n", "-n"]);
    assert!(sub.recv_publish().payload.is_empty());
    let out = tern(&args(&base, &["pub", "-t", "p/x", "-m", "a", "-n"]));
    assert!(!out.status.success() && stderr(&out).contains("exactly one of -m, -f, -l, -s or -n"));
}

#[test]
fn pub_repeat_retain_inflight_url_and_ids() {
    let broker = Broker::start();
    let base = at(broker.addr);
    let mut sub = raw_sub(&broker, V311, "r/#", QoS::AtMostOnce);
    ok(
        &base,
        &[
            "pub",
            "-t",
            "r/rep",
            "-m",
            "x",
            "--repeat",
            "3",
            "--repeat-delay",
            "0.05",
        ],
    );
    for _ in 0..3 {
        assert_eq!(&sub.recv_publish().payload[..], b"x");
    }
    ok(
        &base,
        &["pub", "-t", "r/many", "-m", "y", "-q", "1", "--repeat", "50", "-M", "2"],
    );
    for _ in 0..50 {
        assert_eq!(&sub.recv_publish().payload[..], b"y");
    }
    ok(&base, &["pub", "-t", "r/kept", "-m", "kept", "-r"]);
    let _ = sub.recv_publish();
    let mut late = raw_sub(&broker, V311, "r/kept", QoS::AtMostOnce);
    assert!(late.recv_publish().retain);
    let url = format!("mqtt://127.0.0.1:{}/r/url", broker.addr.port());
    assert!(tern(&["pub", "-L", &url, "-m", "via url"]).status.success());
    assert_eq!(sub.recv_publish().topic, "r/url");
    ok(
        &base,
        &["pub", "-t", "r/id", "-m", "z", "-i", "my-publisher", "-k", "17"],
    );
    assert!(broker.log_contains("keepalive 17") && broker.log_contains("my-publisher"));
    ok(&base, &["pub", "-t", "r/id", "-m", "z", "-I", "prefix-"]);
    assert!(broker.log_contains("prefix-"));
    let out = tern(&args(&base, &["pub", "-t", "r/d", "-m", "z", "-d"]));
    assert!(stderr(&out).contains("sending CONNECT") && stderr(&out).contains("sending PUBLISH"));
}

#[test]
fn refused_connections_name_host_port_and_reason_and_exit_non_zero() {
    let broker = Broker::with_config("deny.conf", "listener 0 127.0.0.1\nallow_anonymous false\n");
    let base = at(broker.addr);
    let out = tern(&args(&base, &["pub", "-t", "t", "-m", "x", "-u", "user", "-P", "pw"]));
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr(&out).trim(),
        format!(
            "Error: 127.0.0.1:{}: Connection refused: not authorised",
            broker.addr.port()
        )
    );
    let out = tern(&args(&base, &["sub", "-t", "t", "--quiet"]));
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).is_empty(), "--quiet prints nothing");
    let out = tern(&["pub", "-h", "127.0.0.1", "-p", "1", "-t", "t", "-m", "x"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("cannot connect to 127.0.0.1:1"),
        "{}",
        stderr(&out)
    );
    let out = tern(&args(&base, &["pub", "-t", "t", "-m", "x", "--cafile", "/etc/ca.pem"]));
    assert!(!out.status.success() && stderr(&out).contains("TLS"));
}

#[test]
fn mqtt_5_properties_and_wills_from_the_command_line() {
    let broker = Broker::start();
    let base = at(broker.addr);
    let mut sub = raw_sub(&broker, V5, "v5/#", QoS::AtMostOnce);
    let out = tern(&args(
        &base,
        &[
            "pub",
            "-V",
            "mqttv5",
            "-t",
            "v5/p",
            "-m",
            "x",
            "-D",
            "publish",
            "user-property",
            "site",
            "lab",
            "-D",
            "publish",
            "content-type",
            "text/plain",
        ],
    ));
    assert!(out.status.success(), "{}", stderr(&out));
    let p = sub.recv_publish();
    assert_eq!(
        p.properties
            .user_properties()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<Vec<_>>(),
        vec![("site".to_string(), "lab".to_string())]
    );
    assert_eq!(p.properties.content_type().unwrap(), "text/plain");
    let out = tern(&args(
        &base,
        &["pub", "-t", "v5/p", "-m", "x", "-D", "publish", "content-type", "a"],
    ));
    assert!(stderr(&out).contains("need MQTT 5"));
    let out = tern(&args(
        &base,
        &[
            "pub",
            "-V",
            "5",
            "-t",
            "v5/p",
            "-m",
            "x",
            "-D",
            "publish",
            "session-expiry-interval",
            "5",
        ],
    ));
    assert!(stderr(&out).contains("not allowed in publish"), "{}", stderr(&out));
    // A will, published when the subscriber holding it is killed (once connected: -d
    // prints the CONNACK).
    let doomed = Background::tern(&args(
        &base,
        &[
            "sub",
            "-d",
            "-t",
            "v5/nothing",
            "--will-topic",
            "v5/will",
            "--will-payload",
            "bye",
            "--will-qos",
            "1",
        ],
    ));
    doomed.wait_stderr("received CONNACK");
    drop(doomed);
    assert_eq!(&sub.recv_publish().payload[..], b"bye");
}

#[test]
fn persistent_sessions_with_c_and_x() {
    let broker = Broker::start();
    let base = at(broker.addr);
    let out = tern(&args(&base, &["sub", "-t", "s", "-c"]));
    assert!(stderr(&out).contains("client id (-i) with -c"));
    for (version, extra) in [("mqttv311", vec![]), ("mqttv5", vec!["-x", "600"])] {
        let id = format!("keeper-{version}");
        let mut first = args(
            &base,
            &["sub", "-V", version, "-t", "s/q", "-q", "1", "-c", "-i", &id, "-E"],
        );
        first.extend(extra.iter().copied());
        assert!(tern(&first).status.success());
        ok(&base, &["pub", "-V", version, "-t", "s/q", "-m", "queued", "-q", "1"]);
        let mut second = args(
            &base,
            &[
                "sub", "-V", version, "-t", "s/q", "-q", "1", "-c", "-i", &id, "-C", "1", "-W", "20",
            ],
        );
        second.extend(extra.iter().copied());
        let out = tern(&second);
        assert_eq!(stdout(&out), "queued\n", "{version}: {}", stderr(&out));
    }
}

#[test]
fn sub_output_and_filters() {
    let broker = Broker::start();
    let base = at(broker.addr);
    ok(&base, &["pub", "-t", "o/stale", "-m", "old", "-r"]);
    // The subscription is made first, by a persistent session (-E returns once it is
    // acknowledged), so the QoS 1 messages below reach the subscriber whether they come
    // before it has reconnected (queued) or after (live).
    ok(&base, &["sub", "-t", "o/#", "-q", "1", "-c", "-i", "filters", "-E"]);
    let sub = Background::tern(&args(
        &base,
        &[
            "sub",
            "-t",
            "o/#",
            "-q",
            "1",
            "-c",
            "-i",
            "filters",
            "-v",
            "-R",
            "-T",
            "o/hidden/#",
            "-C",
            "2",
            "-W",
            "20",
        ],
    ));
    for (topic, message) in [("o/hidden/x", "no"), ("o/a", "first"), ("o/b", "second")] {
        ok(&base, &["pub", "-t", topic, "-m", message, "-q", "1"]);
    }
    let (code, out, _) = sub.finish();
    assert_eq!(code, Some(0));
    assert_eq!(
        out, "o/a first\no/b second\n",
        "-R skips the retained message, -T the filtered topic"
    );
    // AB is retained, so it reaches the subscriber when its subscription is made: once
    // it is printed, C published next reaches it too.
    ok(&base, &["pub", "-t", "o/f", "-m", "AB", "-r"]);
    let sub = Background::tern(&args(
        &base,
        &["sub", "-t", "o/f", "-C", "2", "-N", "-F", "%t:%p:%q:%l:%x|"],
    ));
    sub.wait_stdout("o/f:AB");
    ok(&base, &["pub", "-t", "o/f", "-m", "C"]);
    assert_eq!(sub.finish().1, "o/f:AB:0:2:4142|o/f:C:0:1:43|");
    let out = tern(&args(
        &base,
        &["sub", "-t", "o/stale", "-C", "1", "-F", "%j", "--pretty"],
    ));
    assert!(
        stdout(&out).contains("\"payload\": \"old\"") && stdout(&out).contains('\n'),
        "{}",
        stdout(&out)
    );
    let out = tern(&args(&base, &["sub", "-t", "o/none", "-W", "1"]));
    assert_eq!(out.status.code(), Some(27));
    assert!(stderr(&out).contains("Timed out"));
    let out = tern(&args(&base, &["sub", "-t", "o/e", "-E"]));
    assert!(out.status.success() && stdout(&out).is_empty());
}

#[test]
fn retained_only_remove_retained_and_unsubscribe() {
    let broker = Broker::start();
    let base = at(broker.addr);
    for topic in ["k/1", "k/2"] {
        ok(&base, &["pub", "-t", topic, "-m", "stale", "-r"]);
    }
    let sub = Background::tern(&args(
        &base,
        &[
            "sub",
            "-t",
            "k/#",
            "--retained-only",
            "--remove-retained",
            "-v",
            "-i",
            "retained-only",
        ],
    ));
    // Both retained messages printed: subscribed, so the live message reaches it.
    sub.wait_stdout("k/1 stale");
    sub.wait_stdout("k/2 stale");
    ok(&base, &["pub", "-t", "k/live", "-m", "live"]);
    let (code, out, _) = sub.finish();
    // Its removals were sent before it disconnected: handled once the broker closes it.
    broker.wait_closed("retained-only");
    assert_eq!(code, Some(0));
    let mut lines: Vec<&str> = out.lines().collect();
    lines.sort();
    assert_eq!(lines, vec!["k/1 stale", "k/2 stale"], "exits at the first live message");
    let out = tern(&args(&base, &["sub", "-t", "k/#", "-W", "1"]));
    assert!(
        stdout(&out).is_empty(),
        "--remove-retained cleared them: {}",
        stdout(&out)
    );
    // -U removes a persistent subscription.
    ok(&base, &["sub", "-t", "u/t", "-q", "1", "-c", "-i", "unsub", "-E"]);
    ok(&base, &["sub", "-U", "u/t", "-c", "-i", "unsub", "-E"]);
    ok(&base, &["pub", "-t", "u/t", "-m", "x", "-q", "1"]);
    let out = tern(&args(&base, &["sub", "-t", "u/other", "-c", "-i", "unsub", "-W", "1"]));
    assert!(stdout(&out).is_empty());
}

#[test]
fn retain_as_published_and_denied_subscriptions() {
    let broker = Broker::start();
    let base = at(broker.addr);
    // The retained probe arrives when the subscription is made (always with RETAIN); the
    // live message after it keeps RETAIN only because of --retain-as-published.
    ok(&base, &["pub", "-t", "rap", "-m", "probe", "-r"]);
    let sub = Background::tern(&args(
        &base,
        &[
            "sub",
            "-V",
            "5",
            "-t",
            "rap",
            "--retain-as-published",
            "-C",
            "2",
            "-F",
            "%r %p",
        ],
    ));
    sub.wait_stdout("1 probe");
    ok(&base, &["pub", "-t", "rap", "-m", "x", "-r"]);
    assert_eq!(sub.finish().1, "1 probe\n1 x\n");
    let out = tern(&args(&base, &["sub", "-V", "5", "-t", "$share/g", "-W", "1"]));
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("Subscription denied: $share/g")
            && stderr(&out).contains("All subscription requests were denied."),
        "{}",
        stderr(&out)
    );
}

#[test]
fn rr_prints_the_matching_response() {
    let broker = Broker::start();
    let base = at(broker.addr);
    let mut responder = broker.connect(V5, "responder");
    responder.subscribe("svc/time", QoS::AtMostOnce);
    let rr = Background::tern(&args(
        &base,
        &["rr", "-t", "svc/time", "-e", "reply/me", "-m", "what time?"],
    ));
    let request = responder.recv_publish();
    assert_eq!(&request.payload[..], b"what time?");
    let response_topic = request.properties.response_topic().unwrap();
    let correlation = request.properties.correlation_data().unwrap();
    let answer = |correlation: bytes::Bytes, payload: &'static [u8]| {
        Packet::Publish(Publish {
            dup: false,
            qos: QoS::AtMostOnce,
            retain: false,
            topic: response_topic.clone(),
            packet_id: 0,
            properties: Properties(vec![Property::CorrelationData(correlation)]),
            payload: bytes::Bytes::from_static(payload),
        })
    };
    responder.send(&answer(bytes::Bytes::from_static(b"someone else"), b"wrong"));
    responder.send(&answer(correlation, b"noon"));
    let (code, out, err) = rr.finish();
    assert_eq!((code, out.as_str()), (Some(0), "noon\n"), "{err}");
}

#[test]
fn passwd_files_work_both_ways_with_mosquitto() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("pw");
    let f = file.to_str().unwrap();
    assert!(tern(&["passwd", "-c", "-b", f, "alice", "secret"]).status.success());
    assert!(tern(&["passwd", "-b", "-H", "sha512", f, "bob", "hunter2"])
        .status
        .success());
    assert!(tern(&["passwd", "-b", "-I", "1000", f, "erin", "pw5"]).status.success());
    assert!(tern_with_stdin(&["passwd", f, "frank"], b"typed\n").status.success());
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(
        text.contains("alice:$7$101$") && text.contains("bob:$6$") && text.contains("erin:$7$1000$"),
        "{text}"
    );
    assert!(tern(&["passwd", "-D", f, "erin"]).status.success());
    assert!(!std::fs::read_to_string(&file).unwrap().contains("erin"));
    let plain = dir.path().join("plain");
    std::fs::write(&plain, "gina:clear\n").unwrap();
    assert!(tern(&["passwd", "-U", plain.to_str().unwrap()]).status.success());
    let upgraded = tern_core::password::parse_file(&std::fs::read_to_string(&plain).unwrap(), false).unwrap();
    let tern_core::password::Secret::Hashed(hash) = &upgraded[0].secret else {
        panic!("not hashed")
    };
    assert!(hash.verify(b"clear"));
    if !peer_available(
        "mosquitto_passwd and the mosquitto broker (apt-get install mosquitto)",
        program_exists("mosquitto_passwd"),
    ) {
        return;
    }
    // mosquitto_passwd adds a user to tern's file; tern passwd reads and updates it.
    assert!(Command::new("mosquitto_passwd")
        .args(["-b", f, "carol", "pw3"])
        .status()
        .unwrap()
        .success());
    assert!(tern(&["passwd", "-b", f, "dave", "pw4"]).status.success());
    let password_file = f.to_string();
    let config = move |port: u16| {
        format!("user root\nlistener {port} 127.0.0.1\nallow_anonymous false\npassword_file {password_file}\n")
    };
    let Some(mosquitto) = Mosquitto::start(Some(&config)) else {
        return;
    };
    let port = mosquitto.addr.port().to_string();
    for (user, password, ok) in [
        ("alice", "secret", true),
        ("bob", "hunter2", true),
        ("carol", "pw3", true),
        ("dave", "pw4", true),
        ("frank", "typed", true),
        ("alice", "wrong", false),
        ("erin", "pw5", false),
    ] {
        let out = tern(&[
            "pub",
            "-h",
            "127.0.0.1",
            "-p",
            &port,
            "-u",
            user,
            "-P",
            password,
            "-t",
            "t",
            "-m",
            "x",
        ]);
        assert_eq!(out.status.success(), ok, "{user}/{password}: {}", stderr(&out));
    }
}

#[test]
fn the_main_flows_work_against_the_mosquitto_broker() {
    let Some(mosquitto) = Mosquitto::start(None) else {
        return;
    };
    let addr = mosquitto.addr;
    let base = at(addr);
    // A retained probe: printed once a subscriber's subscription is in place.
    ok(&base, &["pub", "-t", "m/probe", "-m", "ready", "-r"]);
    for version in ["mqttv311", "mqttv5"] {
        let sub = Background::tern(&args(
            &base,
            &["sub", "-V", version, "-t", "m/#", "-q", "2", "-C", "4", "-v"],
        ));
        sub.wait_stdout("m/probe ready");
        for qos in ["0", "1", "2"] {
            ok(
                &base,
                &["pub", "-V", version, "-t", &format!("m/{qos}"), "-m", "x", "-q", qos],
            );
        }
        assert_eq!(sub.finish().1, "m/probe ready\nm/0 x\nm/1 x\nm/2 x\n", "{version}");
    }
    ok(&base, &["pub", "-t", "m/kept", "-m", "kept", "-r"]);
    assert_eq!(
        stdout(&tern(&args(&base, &["sub", "-t", "m/kept", "-C", "1", "-F", "%p %r"]))),
        "kept 1\n"
    );
    ok(&base, &["sub", "-t", "m/q", "-q", "1", "-c", "-i", "m-keeper", "-E"]);
    ok(&base, &["pub", "-t", "m/q", "-m", "queued", "-q", "1"]);
    assert_eq!(
        stdout(&tern(&args(
            &base,
            &["sub", "-t", "m/q", "-q", "1", "-c", "-i", "m-keeper", "-C", "1", "-W", "20"]
        ))),
        "queued\n"
    );
    // rr against mosquitto, with a raw client as a responder's eyes and tern pub as its
    // mouth: rr subscribes to its response topic before it sends the request.
    let mut eyes = Client::open(addr, V311);
    eyes.connect(&connect_packet(V311, "m-eyes", true, 60));
    eyes.subscribe("m/req", QoS::AtMostOnce);
    let rr = Background::tern(&args(
        &base,
        &["rr", "-t", "m/req", "-e", "m/resp", "-m", "ping", "-W", "20"],
    ));
    assert_eq!(&eyes.recv_publish().payload[..], b"ping");
    ok(&base, &["pub", "-t", "m/resp", "-m", "pong"]);
    assert_eq!(rr.finish().1, "pong\n");
}
