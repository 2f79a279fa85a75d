//! mosquitto.conf directives with mosquitto's meaning, checked against the real binary
//! over real sockets; and the directives Tern refuses, with what to use instead.
#![allow(clippy::unwrap_used)]

mod common;
use common::*;
use tern_proto::*;

const LISTENER: &str = "listener 0 127.0.0.1\nallow_anonymous true\n";

fn broker(extra: &str) -> Broker {
    Broker::with_config("mosquitto.conf", &format!("{LISTENER}{extra}"))
}

fn connack(broker: &Broker, version: ProtocolVersion, client_id: &str) -> (Client, ConnectAck) {
    let mut c = broker.client(version);
    let ack = c.connect(&connect_packet(version, client_id, true, 60));
    (c, ack)
}

/// Runs `tern broker -c` on `config` (which must make it refuse to start) and returns
/// what it printed.
fn refused_start(config: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mosquitto.conf");
    std::fs::write(&path, config).unwrap();
    let out = tern(&["broker", "-c", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn allow_zero_length_clientid_false_refuses_empty_client_ids() {
    let broker = broker("allow_zero_length_clientid false\n");
    let (_, ack) = connack(&broker, V311, "");
    assert_eq!(ack.reason_code.to_connect_return_code(), 2, "{ack:?}");
    // mosquitto's answer to a 5.0 client: 0x80.
    let (_, ack) = connack(&broker, V5, "");
    assert_eq!(ack.reason_code, ReasonCode::UNSPECIFIED_ERROR, "{ack:?}");
    broker.connect(V5, "named");
}

#[test]
fn auto_id_prefix_starts_generated_client_ids() {
    let broker = broker("auto_id_prefix gen-\n");
    let (_, ack) = connack(&broker, V5, "");
    assert_eq!(ack.reason_code, ReasonCode::SUCCESS);
    let id = ack.properties.assigned_client_identifier().unwrap();
    assert!(id.starts_with("gen-") && id.len() > 4, "{id}");
}

#[test]
fn clientid_prefixes_admits_only_client_ids_with_the_prefix() {
    let broker = broker("clientid_prefixes secure-\n");
    for version in VERSIONS {
        broker.connect(version, "secure-client");
        // mosquitto's answer: Not authorized (3.x: 5).
        let (_, ack) = connack(&broker, version, "mqtt");
        assert_eq!(ack.reason_code, ReasonCode::NOT_AUTHORIZED, "{version:?}: {ack:?}");
    }
}

#[test]
fn use_username_as_clientid_makes_the_user_name_the_client_id() {
    let broker = broker("use_username_as_clientid true\n");
    let as_alice = |client_id: &str| {
        let mut c = broker.client(V5);
        let mut connect = connect_packet(V5, client_id, true, 60);
        connect.username = Some(ByteStr::from("alice"));
        let ack = c.connect(&connect);
        assert_eq!(ack.reason_code, ReasonCode::SUCCESS, "{ack:?}");
        c
    };
    let mut first = as_alice("phone");
    // Another client id, the same user: the same session, taken over.
    let _second = as_alice("laptop");
    assert_eq!(
        disconnect_reason(&first.expect_closed()),
        ReasonCode::SESSION_TAKEN_OVER
    );
    // Without a user name: refused, Not authorized (mosquitto's answer).
    for version in VERSIONS {
        let (_, ack) = connack(&broker, version, "anonymous");
        assert_eq!(ack.reason_code, ReasonCode::NOT_AUTHORIZED, "{version:?}: {ack:?}");
    }
}

#[test]
fn max_packet_size_is_announced_and_larger_packets_end_the_connection() {
    let broker = broker("max_packet_size 100\n");
    let (mut c, ack) = connack(&broker, V5, "small");
    assert_eq!(ack.properties.maximum_packet_size(), Some(100));
    c.send(&publish_packet("t", &[b'x'; 200], QoS::AtMostOnce, false, 0));
    assert_eq!(disconnect_reason(&c.expect_closed()), ReasonCode::PACKET_TOO_LARGE);
    // 3.1.1 clients cannot be told the limit; they are disconnected all the same.
    let (mut c, _) = connack(&broker, V311, "small3");
    c.send(&publish_packet("t", &[b'x'; 200], QoS::AtMostOnce, false, 0));
    assert!(c.expect_closed().is_empty());
    // Below the limit all is well.
    let mut c = broker.connect(V5, "fits");
    assert_eq!(
        c.publish("t", &[b'x'; 50], QoS::AtLeastOnce, false, 1),
        ReasonCode::NO_MATCHING_SUBSCRIBERS
    );
}

#[test]
fn max_packet_size_below_20_bytes_is_refused() {
    let said = refused_start("max_packet_size 10\n");
    assert!(
        said.contains("mosquitto.conf:1: max_packet_size: 10 is below 20 bytes"),
        "{said}"
    );
}

#[test]
fn max_qos_is_announced_caps_subscriptions_and_higher_publishes_end_the_connection() {
    let broker = broker("max_qos 1\n");
    for version in VERSIONS {
        let (mut c, ack) = connack(&broker, version, "q");
        if version == V5 {
            assert_eq!(ack.properties.maximum_qos(), Some(1));
        }
        assert_eq!(c.subscribe("t", QoS::ExactlyOnce), vec![ReasonCode::GRANTED_QOS_1]);
        assert_eq!(c.publish("t", b"one", QoS::AtLeastOnce, false, 1), ReasonCode::SUCCESS);
        assert_eq!(c.recv_publish().qos, QoS::AtLeastOnce);
        c.send(&publish_packet("t", b"two", QoS::ExactlyOnce, false, 2));
        let seen = c.expect_closed();
        if version == V5 {
            assert_eq!(disconnect_reason(&seen), ReasonCode::QOS_NOT_SUPPORTED);
        } else {
            assert!(seen.is_empty(), "{seen:?}");
        }
    }
    // A will above max_qos is refused at CONNECT.
    let mut c = broker.client(V5);
    let mut connect = connect_packet(V5, "will", true, 60);
    connect.will = Some(Will {
        topic: ByteStr::from("w"),
        payload: bytes::Bytes::from_static(b"gone"),
        qos: QoS::ExactlyOnce,
        retain: false,
        properties: Properties::default(),
    });
    assert_eq!(c.connect(&connect).reason_code, ReasonCode::QOS_NOT_SUPPORTED);
}

#[test]
fn max_qos_belongs_to_the_listener_it_follows() {
    let broker = Broker::with_config(
        "mosquitto.conf",
        "listener 0 127.0.0.1\nallow_anonymous true\nmax_qos 0\nlistener 0 127.0.0.1\n",
    );
    let addrs = broker.listening_addrs();
    let mut first = Client::open(addrs[0], V5);
    let ack = first.connect(&connect_packet(V5, "a", true, 60));
    assert_eq!(ack.properties.maximum_qos(), Some(0));
    let mut second = Client::open(addrs[1], V5);
    let ack = second.connect(&connect_packet(V5, "b", true, 60));
    assert_eq!(ack.properties.maximum_qos(), None);
}

#[test]
fn retain_available_false_is_announced_and_retained_publishes_end_the_connection() {
    let broker = broker("retain_available false\n");
    let (mut c, ack) = connack(&broker, V5, "r");
    assert_eq!(ack.properties.retain_available(), Some(0));
    c.send(&publish_packet("t", b"kept?", QoS::AtMostOnce, true, 0));
    assert_eq!(disconnect_reason(&c.expect_closed()), ReasonCode::RETAIN_NOT_SUPPORTED);
    let (mut c, _) = connack(&broker, V311, "r3");
    c.send(&publish_packet("t", b"kept?", QoS::AtLeastOnce, true, 1));
    assert!(c.expect_closed().is_empty());
    // Nothing was retained.
    let mut c = broker.connect(V5, "late");
    c.subscribe("t", QoS::AtMostOnce);
    c.expect_quiet();
    // A retained will is refused at CONNECT.
    let mut c = broker.client(V5);
    let mut connect = connect_packet(V5, "will", true, 60);
    connect.will = Some(Will {
        topic: ByteStr::from("w"),
        payload: bytes::Bytes::from_static(b"gone"),
        qos: QoS::AtMostOnce,
        retain: true,
        properties: Properties::default(),
    });
    assert_eq!(c.connect(&connect).reason_code, ReasonCode::RETAIN_NOT_SUPPORTED);
    // 3.x has no return code for it: closed without CONNACK, as by mosquitto.
    let mut c = broker.client(V311);
    let mut connect = connect_packet(V311, "will3", true, 60);
    connect.will = Some(Will {
        topic: ByteStr::from("w"),
        payload: bytes::Bytes::from_static(b"gone"),
        qos: QoS::AtMostOnce,
        retain: true,
        properties: Properties::default(),
    });
    c.send(&Packet::Connect(Box::new(connect)));
    assert!(c.expect_closed().is_empty());
}

#[test]
fn connack_with_limits_has_mosquittos_bytes() {
    // mosquitto 2.0 answers this CONNECT under the same directives with exactly these
    // bytes: Topic Alias Maximum 10, Retain Available 0, Maximum Packet Size 100,
    // Receive Maximum 20, Maximum QoS 1.
    let broker = broker("max_qos 1\nretain_available false\nmax_packet_size 100\n");
    let mut stream = std::net::TcpStream::connect(broker.addr).unwrap();
    use std::io::{Read, Write};
    stream
        .write_all(b"\x10\x10\x00\x04MQTT\x05\x02\x00\x3c\x00\x00\x03abc")
        .unwrap();
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    let mut reply = [0u8; 20];
    stream.read_exact(&mut reply).unwrap();
    assert_eq!(
        reply,
        *b"\x20\x12\x00\x00\x0f\x22\x00\x0a\x25\x00\x27\x00\x00\x00\x64\x21\x00\x14\x24\x01"
    );
}

#[test]
fn upgrade_outgoing_qos_delivers_at_the_subscription_qos() {
    for (extra, expected) in [("", QoS::AtMostOnce), ("upgrade_outgoing_qos true\n", QoS::AtLeastOnce)] {
        let broker = broker(extra);
        let mut sub = broker.connect(V311, "sub");
        sub.subscribe("t", QoS::AtLeastOnce);
        let mut publisher = broker.connect(V311, "pub");
        publisher.publish("t", b"m", QoS::AtMostOnce, false, 0);
        assert_eq!(sub.recv_publish().qos, expected, "{extra:?}");
        // Retained messages too.
        publisher.publish("r", b"kept", QoS::AtMostOnce, true, 0);
        publisher.ping();
        sub.subscribe("r", QoS::AtLeastOnce);
        assert_eq!(sub.recv_publish().qos, expected, "{extra:?}");
    }
}

#[test]
fn max_inflight_bytes_holds_messages_back_until_acknowledgements_make_room() {
    let broker = broker("max_inflight_bytes 100\n");
    let mut sub = broker.connect(V311, "sub");
    sub.subscribe("t", QoS::AtLeastOnce);
    let mut publisher = broker.connect(V311, "pub");
    for payload in [[b'a'; 60], [b'b'; 60]] {
        publisher.publish("t", &payload, QoS::AtLeastOnce, false, 1);
    }
    let first = sub.recv_publish();
    assert_eq!(first.payload[0], b'a');
    // 120 bytes would be in flight: the second waits for the first's PUBACK.
    sub.expect_quiet();
    sub.send(&Packet::PublishAck(PublishResponse::new(first.packet_id)));
    assert_eq!(sub.recv_publish().payload[0], b'b');
}

#[test]
fn memory_limit_drops_messages_and_refuses_clients_while_the_heap_is_above_it() {
    let broker = broker("");
    let mut publisher = broker.connect(V5, "pub");
    let path = broker.config_path.clone().unwrap();
    std::fs::write(&path, format!("{LISTENER}memory_limit 1000\n")).unwrap();
    broker.signal(SIGHUP);
    assert!(
        broker.log_contains("above memory_limit 1000"),
        "{:?}",
        broker.log.lock().unwrap()
    );
    publisher.send(&publish_packet("t", b"m", QoS::AtLeastOnce, false, 1));
    assert!(publisher.expect_closed().is_empty());
    let (_, ack) = connack(&broker, V5, "late");
    assert_eq!(ack.reason_code, ReasonCode::SERVER_BUSY, "{ack:?}");
    let (_, ack) = connack(&broker, V311, "late3");
    assert_eq!(ack.reason_code.to_connect_return_code(), 3, "{ack:?}");
    std::fs::write(&path, format!("{LISTENER}memory_limit 1000000000\n")).unwrap();
    broker.signal(SIGHUP);
    assert!(broker.log_contains("memory_limit no longer exceeded"));
    broker.connect(V5, "later");
}

#[test]
fn check_retain_source_withholds_retained_messages_whose_publisher_lost_its_access() {
    for (extra, delivered_after) in [("", false), ("check_retain_source false\n", true)] {
        let dir = tempfile::tempdir().unwrap();
        let acl = dir.path().join("acl");
        std::fs::write(&acl, "user alice\ntopic write news/#\n\nuser bob\ntopic read news/#\n").unwrap();
        let broker = broker(&format!("acl_file {}\n{extra}", acl.display()));
        let as_user = |client_id: &str, user: &str| {
            let mut c = broker.client(V311);
            let mut connect = connect_packet(V311, client_id, true, 60);
            connect.username = Some(ByteStr::from(user));
            assert_eq!(c.connect(&connect).reason_code, ReasonCode::SUCCESS);
            c
        };
        let mut alice = as_user("alice", "alice");
        alice.publish("news/a", b"kept", QoS::AtLeastOnce, true, 1);
        let mut bob = as_user("bob", "bob");
        bob.subscribe("news/#", QoS::AtMostOnce);
        assert_eq!(&bob.recv_publish().payload[..], b"kept");
        // alice may no longer publish there: her retained message is withheld from new
        // subscribers (mosquitto's default), unless check_retain_source is false.
        std::fs::write(&acl, "user alice\ntopic read news/#\n\nuser bob\ntopic read news/#\n").unwrap();
        broker.signal(SIGHUP);
        assert!(broker.log_contains("configuration reloaded"));
        let mut bob = as_user("bob2", "bob");
        bob.subscribe("news/#", QoS::AtMostOnce);
        if delivered_after {
            assert_eq!(&bob.recv_publish().payload[..], b"kept");
        } else {
            bob.expect_quiet();
        }
    }
}

#[test]
fn queue_qos0_messages_keeps_qos0_messages_for_offline_sessions() {
    for (extra, kept) in [("", false), ("queue_qos0_messages true\n", true)] {
        let broker = broker(extra);
        let mut sub = broker.client(V311);
        sub.connect(&connect_packet(V311, "sub", false, 60));
        sub.subscribe("t", QoS::AtMostOnce);
        sub.disconnect();
        broker.wait_closed("sub");
        let mut publisher = broker.connect(V311, "pub");
        publisher.publish("t", b"while away", QoS::AtMostOnce, false, 0);
        publisher.ping();
        let mut sub = broker.client(V311);
        let ack = sub.connect(&connect_packet(V311, "sub", false, 60));
        assert!(ack.session_present);
        if kept {
            assert_eq!(&sub.recv_publish().payload[..], b"while away");
        } else {
            sub.expect_quiet();
        }
    }
}

#[test]
fn worker_threads_sets_how_many_threads_serve_clients() {
    for (threads, config) in [(1, "worker_threads 1\n"), (3, "worker_threads 3\n")] {
        let broker = broker(config);
        let said = if threads == 1 {
            "on 1 worker thread"
        } else {
            "on 3 worker threads"
        };
        assert!(broker.log_contains(said), "{config}");
        for version in VERSIONS {
            let mut sub = broker.connect(version, "sub");
            sub.subscribe("t", QoS::AtLeastOnce);
            let mut publisher = broker.connect(version, "pub");
            assert_eq!(
                publisher.publish("t", b"m", QoS::AtLeastOnce, false, 1),
                ReasonCode::SUCCESS
            );
            assert_eq!(&sub.recv_publish().payload[..], b"m");
        }
    }
    let said = refused_start("worker_threads 5000\n");
    assert!(said.contains("worker_threads 5000 is more than 1024"), "{said}");
    let said = refused_start("worker_threads many\n");
    assert!(
        said.contains("worker_threads") && said.contains("not a valid number"),
        "{said}"
    );
}

#[test]
fn mosquitto_settings_with_nothing_to_change_are_accepted() {
    let broker = broker(
        "set_tcp_nodelay true\npersistence_file mosquitto.db\nautosave_interval 1800\nautosave_on_changes false\ncheck_retain_source false\nmax_inflight_bytes 0\nmemory_limit 0\nmaximum_qos 2\nallow_duplicate_messages false\nmax_topic_alias 10\nsocket_domain ipv4\n",
    );
    let mut sub = broker.connect(V5, "sub");
    sub.subscribe("t", QoS::ExactlyOnce);
    let mut publisher = broker.connect(V5, "pub");
    assert_eq!(
        publisher.publish("t", b"m", QoS::ExactlyOnce, false, 1),
        ReasonCode::SUCCESS
    );
    assert_eq!(sub.recv_publish().qos, QoS::ExactlyOnce);
}

#[test]
fn connection_messages_false_logs_no_connects() {
    let broker = broker("connection_messages false\n");
    broker.connect(V311, "quiet").disconnect();
    let mut other = broker.connect(V311, "other");
    other.ping();
    assert!(!broker.logged("client connected"), "{:?}", broker.log.lock().unwrap());
    let loud = Broker::with_config("mosquitto.conf", LISTENER);
    loud.connect(V311, "loud");
    assert!(loud.log_contains("client connected"));
}

#[test]
fn log_timestamp_false_and_log_timestamp_format_shape_log_lines() {
    let broker = broker("log_timestamp false\n");
    broker.connect(V311, "a");
    assert!(broker.log_contains("client connected"));
    let line = broker
        .log
        .lock()
        .unwrap()
        .iter()
        .find(|l| l.contains("client connected"))
        .cloned();
    assert!(
        line.as_deref().is_some_and(|l| l.trim_start().starts_with("INFO")),
        "{line:?}"
    );

    let broker = broker_with_format();
    broker.connect(V311, "b");
    assert!(broker.log_contains("client connected"));
    let line = broker
        .log
        .lock()
        .unwrap()
        .iter()
        .find(|l| l.contains("client connected"))
        .cloned();
    let line = line.unwrap();
    // "[2026-11-29 20:31:05] INFO ..."
    let stamp = line
        .strip_prefix('[')
        .and_then(|l| l.split_once(']'))
        .map(|(s, _)| s.to_string());
    let stamp = stamp.unwrap_or_default();
    assert_eq!(stamp.len(), 19, "{line}");
    assert!(stamp.as_bytes()[4] == b'-' && stamp.as_bytes()[10] == b' ', "{line}");
}

fn broker_with_format() -> Broker {
    broker("log_timestamp_format [%Y-%m-%d %H:%M:%S]\n")
}

#[test]
fn the_start_up_lines_name_each_listeners_protocol_tls_and_authentication() {
    let broker = Broker::with_config(
        "mosquitto.conf",
        "per_listener_settings true\nlistener 0 127.0.0.1\nallow_anonymous true\nlistener 0 127.0.0.1\nacl_file /dev/null\n",
    );
    let [first, second] = broker.listening_addrs()[..] else {
        panic!("two listeners expected")
    };
    let open = format!("listening on {first} (mqtt, plain TCP; anonymous allowed)");
    let closed = format!("listening on {second} (mqtt, plain TCP; anonymous refused, acl_file /dev/null)");
    assert!(broker.log_contains(&open), "{:?}", broker.log.lock().unwrap());
    assert!(broker.log_contains(&closed), "{:?}", broker.log.lock().unwrap());
}

#[test]
fn unsupported_directives_name_themselves_and_what_to_use_instead() {
    for (line, says) in [
        ("psk_hint broker", "pre-shared keys"),
        ("psk_file /etc/mosquitto/psk", "pre-shared keys"),
        (
            "plugin /usr/lib/mosquitto_dynamic_security.so",
            "use password_file, acl_file",
        ),
        ("auth_plugin /usr/lib/auth.so", "use password_file, acl_file"),
        ("connection to-cloud", "bridges are not supported"),
        ("address 192.0.2.1:1883", "bridges are not supported"),
        ("topic sensors/# out 1", "bridges are not supported"),
        ("bridge_protocol_version mqttv311", "bridges are not supported"),
        ("max_topic_alias 5", "topic alias maximum is 10"),
        ("mount_point site/+/", "wildcard character"),
        ("log_dest dlt", "use stdout, stderr, file, syslog or topic"),
        ("http_dir /var/www", "WebSocket listeners serve MQTT only"),
    ] {
        let said = refused_start(&format!("listener 0 127.0.0.1\n{line}\n"));
        let directive = line.split(' ').next().unwrap();
        assert!(
            said.contains(&format!("mosquitto.conf:2: {directive}: ")),
            "{line}: {said}"
        );
        assert!(said.contains(says), "{line}: {said}");
    }
}

// mosquitto-tls(7): certificates made exactly as its openssl commands make them are X.509
// version 1 (no extensions), which webpki refuses and mosquitto accepts.

/// Runs `openssl ARGS` in `dir`.
fn openssl(dir: &std::path::Path, args: &[&str]) {
    let out = std::process::Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA, a server certificate (CN localhost) and a client certificate (CN `client`) per
/// mosquitto-tls(7), in `dir`: ca.crt, server.crt/.key, client.crt/.key.
fn mosquitto_tls_pki(dir: &std::path::Path, client: &str) {
    let req_ca = ["req", "-new", "-x509", "-days", "30", "-extensions", "v3_ca", "-nodes"];
    openssl(
        dir,
        &[
            &req_ca[..],
            &["-keyout", "ca.key", "-out", "ca.crt", "-subj", "/CN=Test CA/O=Tern"],
        ]
        .concat(),
    );
    for (name, cn) in [("server", "localhost"), ("client", client)] {
        let (key, csr, crt) = (format!("{name}.key"), format!("{name}.csr"), format!("{name}.crt"));
        openssl(dir, &["genrsa", "-out", &key, "2048"]);
        let subject = format!("/CN={cn}/O=Tern {name}");
        openssl(dir, &["req", "-out", &csr, "-key", &key, "-new", "-subj", &subject]);
        let sign = [
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
        ];
        openssl(dir, &[&sign[..], &["-out", &crt, "-days", "30"]].concat());
    }
}

fn tls_pub(broker: &Broker, dir: &std::path::Path, extra: &[&str]) -> std::process::Output {
    let port = broker.addr.port().to_string();
    let mut args = vec![
        "-h",
        "localhost",
        "-p",
        &port,
        "--cafile",
        "ca.crt",
        "-t",
        "t",
        "-m",
        "hi",
    ];
    args.extend_from_slice(extra);
    std::process::Command::new("mosquitto_pub")
        .args(&args)
        .current_dir(dir)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap()
}

#[test]
fn mosquitto_tls_v1_certificates_are_accepted_and_checked() {
    if !peer_available("openssl", program_exists("openssl"))
        || !peer_available("mosquitto_pub", program_exists("mosquitto_pub"))
    {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    mosquitto_tls_pki(dir, "alice");
    // A client certificate of another CA with the same subject names.
    let other = dir.join("other");
    std::fs::create_dir(&other).unwrap();
    mosquitto_tls_pki(&other, "alice");
    let d = dir.display();
    let config = format!(
        "listener 0 127.0.0.1\nallow_anonymous false\ncertfile {d}/server.crt\nkeyfile {d}/server.key\ncafile {d}/ca.crt\nrequire_certificate true\nuse_identity_as_username true\n"
    );
    let broker = Broker::with_config("mosquitto.conf", &config);
    let summary = "(mqtt, TLS with client certificates required; users from the certificate CN, anonymous refused)";
    assert!(
        broker.log_line(&["listening on", summary]),
        "{:?}",
        broker.log.lock().unwrap()
    );
    // The v1 server certificate is served, and the v1 client certificate names the user.
    let out = tls_pub(&broker, dir, &["--cert", "client.crt", "--key", "client.key"]);
    assert!(out.status.success(), "{out:?} {:?}", broker.log.lock().unwrap());
    // No certificate, or one from another CA: refused in the handshake.
    let out = tls_pub(&broker, dir, &[]);
    assert!(!out.status.success());
    let out = tls_pub(
        &broker,
        dir,
        &["--cert", "other/client.crt", "--key", "other/client.key"],
    );
    assert!(!out.status.success());
    // Same CA name, another CA key: the signature does not check out.
    assert!(broker.log_contains("BadSignature"), "{:?}", broker.log.lock().unwrap());
    // An IP address as SNI (what mosquitto_pub -h 127.0.0.1 sends) is no warning.
    let port = broker.addr.port().to_string();
    let out = std::process::Command::new("mosquitto_pub")
        .args(["-h", "127.0.0.1", "-p", &port, "--cafile", "ca.crt", "--insecure"])
        .args(["--cert", "client.crt", "--key", "client.key", "-t", "t", "-m", "hi"])
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(broker.wait_log_count(&["client closed"], 2));
    assert!(!broker.logged("SNI"), "{:?}", broker.log.lock().unwrap());
}

#[test]
fn a_revoked_v1_client_certificate_is_refused() {
    if !peer_available("openssl", program_exists("openssl"))
        || !peer_available("mosquitto_pub", program_exists("mosquitto_pub"))
    {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    mosquitto_tls_pki(dir, "bob");
    std::fs::write(dir.join("index.txt"), "").unwrap();
    std::fs::write(dir.join("crlnumber"), "01\n").unwrap();
    let cnf = "[ ca ]\ndefault_ca = d\n[ d ]\ndatabase = index.txt\ncrlnumber = crlnumber\ndefault_md = sha256\ndefault_crl_days = 30\n";
    std::fs::write(dir.join("ca.cnf"), cnf).unwrap();
    let ca = ["ca", "-config", "ca.cnf", "-keyfile", "ca.key", "-cert", "ca.crt"];
    openssl(dir, &[&ca[..], &["-gencrl", "-out", "empty.pem"]].concat());
    openssl(dir, &[&ca[..], &["-revoke", "client.crt"]].concat());
    openssl(dir, &[&ca[..], &["-gencrl", "-out", "crl.pem"]].concat());
    let d = dir.display();
    let listener = format!(
        "listener 0 127.0.0.1\nallow_anonymous true\ncertfile {d}/server.crt\nkeyfile {d}/server.key\ncafile {d}/ca.crt\nrequire_certificate true\n"
    );
    let before = Broker::with_config("mosquitto.conf", &format!("{listener}crlfile {d}/empty.pem\n"));
    let out = tls_pub(&before, dir, &["--cert", "client.crt", "--key", "client.key"]);
    assert!(out.status.success(), "{out:?} {:?}", before.log.lock().unwrap());
    let after = Broker::with_config("mosquitto.conf", &format!("{listener}crlfile {d}/crl.pem\n"));
    let out = tls_pub(&after, dir, &["--cert", "client.crt", "--key", "client.key"]);
    assert!(!out.status.success());
    assert!(after.log_contains("Revoked"), "{:?}", after.log.lock().unwrap());
}

#[test]
fn an_expired_v1_client_certificate_is_refused() {
    if !peer_available("openssl", program_exists("openssl"))
        || !peer_available("mosquitto_pub", program_exists("mosquitto_pub"))
    {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    mosquitto_tls_pki(dir, "carol");
    // `openssl ca` without extensions also makes v1 certificates, and takes dates.
    std::fs::create_dir(dir.join("newcerts")).unwrap();
    std::fs::write(dir.join("index.txt"), "").unwrap();
    std::fs::write(dir.join("serial"), "1000\n").unwrap();
    let cnf = "[ ca ]\ndefault_ca = d\n[ d ]\ndatabase = index.txt\nnew_certs_dir = newcerts\nserial = serial\ndefault_md = sha256\npolicy = p\n[ p ]\ncommonName = supplied\n";
    std::fs::write(dir.join("ca.cnf"), cnf).unwrap();
    let ca = [
        "ca", "-batch", "-config", "ca.cnf", "-keyfile", "ca.key", "-cert", "ca.crt",
    ];
    let dates = ["-startdate", "20200101000000Z", "-enddate", "20200201000000Z"];
    openssl(
        dir,
        &[&ca[..], &["-in", "client.csr", "-out", "old.crt"], &dates[..]].concat(),
    );
    let d = dir.display();
    let config = format!(
        "listener 0 127.0.0.1\nallow_anonymous true\ncertfile {d}/server.crt\nkeyfile {d}/server.key\ncafile {d}/ca.crt\nrequire_certificate true\n"
    );
    let broker = Broker::with_config("mosquitto.conf", &config);
    let out = tls_pub(&broker, dir, &["--cert", "old.crt", "--key", "client.key"]);
    assert!(!out.status.success());
    assert!(broker.log_contains("Expired"), "{:?}", broker.log.lock().unwrap());
    let out = tls_pub(&broker, dir, &["--cert", "client.crt", "--key", "client.key"]);
    assert!(out.status.success(), "{out:?}");
}

#[test]
fn bind_interface_binds_the_listener_to_that_interface() {
    // SO_BINDTODEVICE needs root (or CAP_NET_RAW); CI runs as root.
    let root = running_as_root();
    let said = refused_start("listener 0 127.0.0.1\nbind_interface nosuchif0\n");
    assert!(said.contains("bind_interface nosuchif0"), "{said}");
    if !root {
        eprintln!("SKIPPED: binding to an interface needs root");
        assert!(std::env::var("CI").is_err(), "CI must run this test as root");
        return;
    }
    let broker = Broker::with_config(
        "interface.conf",
        "listener 0 127.0.0.1\nbind_interface lo\nallow_anonymous true\n",
    );
    let mut c = broker.connect(V5, "through-lo");
    c.subscribe("lo/x", QoS::AtMostOnce);
    c.publish("lo/x", b"on lo", QoS::AtMostOnce, false, 0);
    assert_eq!(&c.recv_publish().payload[..], b"on lo");
}

#[test]
fn user_drops_root_to_that_user_once_everything_is_open() {
    let root = running_as_root();
    if !root {
        eprintln!("SKIPPED: changing user needs root");
        assert!(std::env::var("CI").is_err(), "CI must run this test as root");
        return;
    }
    let said = refused_start("listener 0 127.0.0.1\nuser no-such-user-here\n");
    assert!(said.contains("user no-such-user-here: no such user"), "{said}");
    let broker = Broker::with_config("user.conf", "listener 0 127.0.0.1\nallow_anonymous true\nuser nobody\n");
    assert!(broker.log_contains("running as user nobody"));
    let status = std::fs::read_to_string(format!("/proc/{}/status", broker.child.id())).unwrap();
    let uids: Vec<&str> = status
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .unwrap()
        .split_whitespace()
        .skip(1)
        .collect();
    assert!(
        uids.iter().all(|u| *u == "65534"),
        "real, effective and saved uid are nobody's: {uids:?}"
    );
    let mut c = broker.connect(V311, "served-by-nobody");
    c.subscribe("u", QoS::AtMostOnce);
    c.publish("u", b"ok", QoS::AtMostOnce, false, 0);
    assert_eq!(&c.recv_publish().payload[..], b"ok");
}

/// Whether the tests run as root (CI does): binding to an interface and changing user
/// need it.
fn running_as_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
}
