//! mosquitto's `mount_point` against the real binary: a listener whose clients' topics
//! are all prefixed inside the broker and stripped again on the way out, so that they see
//! only the tree under the mount point. Each broker has a plain listener (first) and a
//! mounted one (second); messages cross between them.
#![allow(clippy::unwrap_used)]

mod common;
use bytes::Bytes;
use common::*;
use tern_proto::*;

/// A plain listener, then one mounted at `site/`.
const CONFIG: &str =
    "listener 0 127.0.0.1\nallow_anonymous true\nsys_interval 1\nlistener 0 127.0.0.1\nmount_point site/\n";

struct Pair {
    broker: Broker,
}

impl Pair {
    fn start(config: &str) -> Pair {
        Pair {
            broker: Broker::with_config("mosquitto.conf", config),
        }
    }

    /// A client of the plain listener.
    fn plain(&self, version: ProtocolVersion, id: &str) -> Client {
        self.open(0, version, connect_packet(version, id, true, 60))
    }

    /// A client of the mounted listener.
    fn mounted(&self, version: ProtocolVersion, id: &str) -> Client {
        self.open(1, version, connect_packet(version, id, true, 60))
    }

    fn open(&self, listener: usize, version: ProtocolVersion, connect: Connect) -> Client {
        let mut c = Client::open(self.broker.listening_addrs()[listener], version);
        let ack = c.connect(&connect);
        assert_eq!(ack.reason_code, ReasonCode::SUCCESS, "{ack:?}");
        c
    }
}

#[test]
fn a_mounted_client_publishes_under_the_mount_point() {
    let pair = Pair::start(CONFIG);
    for version in VERSIONS {
        let mut plain = pair.plain(version, "plain");
        plain.subscribe("site/#", QoS::AtLeastOnce);
        plain.subscribe("a/#", QoS::AtLeastOnce);
        let mut mounted = pair.mounted(version, "mounted");
        mounted.publish("a/b", b"hello", QoS::AtLeastOnce, false, 1);
        let p = plain.recv_publish();
        assert_eq!((p.topic.as_str(), &p.payload[..]), ("site/a/b", &b"hello"[..]));
        // Not under its own name: the plain "a/#" saw nothing.
        plain.expect_quiet();
        plain.disconnect();
        mounted.disconnect();
    }
}

#[test]
fn a_mounted_client_receives_topics_under_the_mount_point_without_it() {
    let pair = Pair::start(CONFIG);
    for version in VERSIONS {
        let mut mounted = pair.mounted(version, "mounted");
        assert_eq!(mounted.subscribe("a/+", QoS::ExactlyOnce), [ReasonCode::GRANTED_QOS_2]);
        assert_eq!(mounted.subscribe("#", QoS::AtMostOnce), [ReasonCode::GRANTED_QOS_0]);
        let mut plain = pair.plain(version, "plain");
        for (topic, qos) in [
            ("site/a/b", QoS::AtMostOnce),
            ("site/a/c", QoS::AtLeastOnce),
            ("site/a/d", QoS::ExactlyOnce),
        ] {
            plain.publish(topic, topic.as_bytes(), qos, false, 7);
        }
        // Outside the mount point: never seen by a mounted client, not even with "#".
        plain.publish("a/b", b"outside", QoS::AtLeastOnce, false, 8);
        plain.publish("sitex/a/b", b"outside", QoS::AtLeastOnce, false, 9);
        let mut seen = Vec::new();
        mounted.drain(|c, p| {
            if let Packet::PublishRelease(r) = &p {
                c.send(&Packet::PublishComplete(PublishResponse::new(r.packet_id)));
            }
            if let Packet::Publish(p) = p {
                if p.qos == QoS::AtLeastOnce {
                    c.send(&Packet::PublishAck(PublishResponse::new(p.packet_id)));
                }
                if p.qos == QoS::ExactlyOnce {
                    c.send(&Packet::PublishReceived(PublishResponse::new(p.packet_id)));
                }
                seen.push((p.topic.to_string(), p.qos, p.payload));
            }
        });
        let expected: Vec<(String, QoS, Bytes)> = [
            ("a/b", QoS::AtMostOnce),
            ("a/c", QoS::AtLeastOnce),
            ("a/d", QoS::ExactlyOnce),
        ]
        .into_iter()
        .map(|(t, q)| (t.to_string(), q, Bytes::from(format!("site/{t}"))))
        .collect();
        assert_eq!(seen, expected, "{version:?}");
        plain.disconnect();
        mounted.disconnect();
    }
}

#[test]
fn retained_messages_cross_the_mount_point_both_ways() {
    let pair = Pair::start(CONFIG);
    let mut plain = pair.plain(V5, "plain");
    plain.publish("site/r/1", b"one", QoS::AtLeastOnce, true, 1);
    plain.publish("r/2", b"outside", QoS::AtLeastOnce, true, 2);
    let mut mounted = pair.mounted(V311, "mounted");
    mounted.publish("r/3", b"three", QoS::AtLeastOnce, true, 3);
    assert_eq!(mounted.subscribe("r/#", QoS::AtLeastOnce), [ReasonCode::GRANTED_QOS_1]);
    let mut topics = Vec::new();
    mounted.drain(|c, p| {
        if let Packet::Publish(p) = p {
            assert!(p.retain);
            c.send(&Packet::PublishAck(PublishResponse::new(p.packet_id)));
            topics.push(p.topic.to_string());
        }
    });
    topics.sort();
    assert_eq!(topics, ["r/1", "r/3"]);
    // The mounted client's retained message is stored under the broker's name.
    plain.subscribe("site/r/3", QoS::AtMostOnce);
    let p = plain.recv_publish();
    assert_eq!(
        (p.topic.as_str(), p.retain, &p.payload[..]),
        ("site/r/3", true, &b"three"[..])
    );
}

#[test]
fn a_will_is_published_under_the_mount_point() {
    let pair = Pair::start(CONFIG);
    for version in VERSIONS {
        let mut plain = pair.plain(version, "watcher");
        plain.subscribe("site/status/#", QoS::AtLeastOnce);
        let mut connect = connect_packet(version, "dying", true, 60);
        connect.will = Some(Will {
            topic: ByteStr::from("status/dying"),
            payload: Bytes::from_static(b"gone"),
            qos: QoS::AtLeastOnce,
            retain: false,
            properties: Properties::default(),
        });
        pair.open(1, version, connect).hang_up();
        let p = plain.recv_publish();
        assert_eq!((p.topic.as_str(), &p.payload[..]), ("site/status/dying", &b"gone"[..]));
        plain.disconnect();
    }
}

#[test]
fn sys_topics_are_outside_every_mount_point() {
    let pair = Pair::start(CONFIG);
    let mut plain = pair.plain(V311, "plain");
    plain.subscribe("$SYS/broker/version", QoS::AtMostOnce);
    // Retained as soon as the broker has published its $SYS tree.
    assert!(plain.recv_publish().topic.starts_with("$SYS/broker/version"));
    let mut mounted = pair.mounted(V311, "mounted");
    assert_eq!(
        mounted.subscribe("$SYS/#", QoS::AtMostOnce),
        [ReasonCode::GRANTED_QOS_0]
    );
    mounted.expect_quiet();
    // A mounted client's "$SYS/..." is an ordinary topic under its mount point.
    mounted.publish("$SYS/fake", b"x", QoS::AtLeastOnce, false, 1);
    plain.subscribe("site/#", QoS::AtMostOnce);
    mounted.publish("$SYS/fake", b"y", QoS::AtMostOnce, false, 0);
    let p = plain.recv_publish();
    assert_eq!(p.topic.as_str(), "site/$SYS/fake");
}

#[test]
fn a_shared_subscription_groups_members_of_both_listeners_under_the_broker_name() {
    let pair = Pair::start(CONFIG);
    let mut a = pair.mounted(V5, "member-a");
    let mut b = pair.plain(V5, "member-b");
    assert_eq!(
        a.subscribe("$share/g/jobs/#", QoS::AtLeastOnce),
        [ReasonCode::GRANTED_QOS_1]
    );
    assert_eq!(
        b.subscribe("$share/g/site/jobs/#", QoS::AtLeastOnce),
        [ReasonCode::GRANTED_QOS_1]
    );
    let mut publisher = pair.plain(V5, "publisher");
    for i in 0..6u16 {
        publisher.publish(&format!("site/jobs/{i}"), b"job", QoS::AtLeastOnce, false, i + 1);
    }
    let mut got = Vec::new();
    for (member, prefix) in [(&mut a, ""), (&mut b, "site/")] {
        member.drain(|c, p| {
            if let Packet::Publish(p) = p {
                c.send(&Packet::PublishAck(PublishResponse::new(p.packet_id)));
                let topic = p.topic.to_string();
                assert!(topic.starts_with(&format!("{prefix}jobs/")), "{topic}");
                got.push(topic.trim_start_matches(prefix).to_string());
            }
        });
    }
    got.sort();
    let all: Vec<String> = (0..6).map(|i| format!("jobs/{i}")).collect();
    assert_eq!(got, all, "each job once, to one member of the one group");
}

#[test]
fn unsubscribe_uses_the_mounted_filter() {
    let pair = Pair::start(CONFIG);
    for version in VERSIONS {
        let mut mounted = pair.mounted(version, "mounted");
        mounted.subscribe("u/#", QoS::AtMostOnce);
        mounted.send(&Packet::Unsubscribe(Unsubscribe {
            packet_id: 2,
            filters: vec![ByteStr::from("u/#")],
            properties: Properties::default(),
        }));
        match mounted.recv() {
            Packet::UnsubscribeAck(ack) if version.is_v5() => assert_eq!(ack.reason_codes, [ReasonCode::SUCCESS]),
            Packet::UnsubscribeAck(_) => {}
            other => panic!("expected UNSUBACK, got {other:?}"),
        }
        let mut plain = pair.plain(version, "plain");
        plain.publish("site/u/1", b"x", QoS::AtLeastOnce, false, 1);
        mounted.expect_quiet();
        mounted.disconnect();
        plain.disconnect();
    }
}

#[test]
fn topic_aliases_are_the_clients_names() {
    let pair = Pair::start(CONFIG);
    let mut connect = connect_packet(V5, "aliased", true, 60);
    connect.properties.push(Property::TopicAliasMaximum(5));
    let mut receiver = pair.open(1, V5, connect);
    receiver.subscribe("t/#", QoS::AtMostOnce);
    let mut plain = pair.plain(V5, "plain");
    plain.subscribe("site/t/#", QoS::AtMostOnce);
    let mut sender = pair.mounted(V5, "sender");
    // The alias set and then used by the mounted sender stands for its own name, t/1.
    for topic in ["t/1", ""] {
        let mut properties = Properties::default();
        properties.push(Property::TopicAlias(1));
        sender.send(&Packet::Publish(Publish {
            dup: false,
            qos: QoS::AtMostOnce,
            retain: false,
            topic: ByteStr::from(topic),
            packet_id: 0,
            properties,
            payload: Bytes::from_static(b"m"),
        }));
    }
    for _ in 0..2 {
        assert_eq!(plain.recv_publish().topic.as_str(), "site/t/1");
    }
    // Towards the mounted receiver, aliases are assigned for its names too.
    let first = receiver.recv_publish();
    assert_eq!(first.topic.as_str(), "t/1");
    let alias = first.properties.topic_alias().unwrap();
    let second = receiver.recv_publish();
    assert_eq!(
        (second.topic.as_str(), second.properties.topic_alias()),
        ("", Some(alias))
    );
}

#[test]
fn the_acl_sees_the_broker_names() {
    let dir = tempfile::tempdir().unwrap();
    let acl = dir.path().join("acl");
    std::fs::write(&acl, "topic readwrite site/ok/#\n").unwrap();
    let config = format!("acl_file {}\n{CONFIG}", acl.display());
    let pair = Pair::start(&config);
    let mut mounted = pair.mounted(V5, "mounted");
    assert_eq!(mounted.subscribe("ok/#", QoS::AtLeastOnce), [ReasonCode::GRANTED_QOS_1]);
    assert_eq!(
        mounted.subscribe("no/#", QoS::AtLeastOnce),
        [ReasonCode::NOT_AUTHORIZED]
    );
    assert_eq!(
        mounted.publish("no/1", b"x", QoS::AtLeastOnce, false, 2),
        ReasonCode::NOT_AUTHORIZED
    );
    assert_eq!(
        mounted.publish("ok/1", b"x", QoS::AtLeastOnce, false, 1),
        ReasonCode::SUCCESS
    );
    assert_eq!(mounted.recv_publish().topic.as_str(), "ok/1");
}

#[test]
fn a_filter_that_the_mount_point_makes_invalid_is_refused() {
    let pair = Pair::start("listener 0 127.0.0.1\nallow_anonymous true\nlistener 0 127.0.0.1\nmount_point pre\n");
    for (version, refused) in [
        (V311, ReasonCode::UNSPECIFIED_ERROR),
        (V5, ReasonCode::TOPIC_FILTER_INVALID),
    ] {
        let mut mounted = pair.mounted(version, "mounted");
        // "pre" + "#" is "pre#": not a filter. "pre" + "x/#" is fine.
        assert_eq!(mounted.subscribe("#", QoS::AtMostOnce), [refused], "{version:?}");
        assert_eq!(mounted.subscribe("x/#", QoS::AtMostOnce), [ReasonCode::GRANTED_QOS_0]);
        let mut plain = pair.plain(version, "plain");
        plain.publish("prex/1", b"x", QoS::AtLeastOnce, false, 1);
        assert_eq!(mounted.recv_publish().topic.as_str(), "x/1");
        mounted.disconnect();
        plain.disconnect();
    }
}

#[test]
fn mount_point_is_a_toml_listener_key_too() {
    let config = "persistence = false\n[[listener]]\nport = 0\nbind_address = \"127.0.0.1\"\nallow_anonymous = true\n[[listener]]\nport = 0\nbind_address = \"127.0.0.1\"\nallow_anonymous = true\nmount_point = \"site/\"\n";
    let pair = Pair {
        broker: Broker::with_config("tern.toml", config),
    };
    let mut plain = pair.plain(V311, "plain");
    plain.subscribe("site/#", QoS::AtMostOnce);
    pair.mounted(V311, "mounted")
        .publish("x", b"1", QoS::AtLeastOnce, false, 1);
    assert_eq!(plain.recv_publish().topic.as_str(), "site/x");
}

#[test]
fn a_bad_mount_point_stops_the_start_naming_file_and_line() {
    for (config, says) in [
        (
            "listener 0 127.0.0.1\nmount_point a/+/\n",
            "mosquitto.conf:2: mount_point: invalid mount point \"a/+/\": it contains a wildcard",
        ),
        (
            "mount_point site/\nlistener 0 127.0.0.1\n",
            "mosquitto.conf:1: mount_point: mount_point belongs to a listener",
        ),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mosquitto.conf");
        std::fs::write(&path, config).unwrap();
        let out = tern(&["broker", "-c", path.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(1), "{out:?}");
        let said = String::from_utf8_lossy(&out.stderr);
        assert!(said.contains(says), "{said}");
    }
}

/// The topics a plain subscriber ("#") and a mounted one ("#") receive when a mounted
/// client publishes `a/b` and a plain one `site/q` and `q`, on the broker whose plain
/// listener is `plain` and mounted one `mounted`.
fn topics_seen(plain: std::net::SocketAddr, mounted: std::net::SocketAddr) -> (Vec<String>, Vec<String>) {
    let connect = |addr, id: &str| {
        let mut c = Client::open(addr, V311);
        let ack = c.connect(&connect_packet(V311, id, true, 60));
        assert_eq!(ack.reason_code, ReasonCode::SUCCESS);
        c
    };
    let mut plain_sub = connect(plain, "plain-sub");
    plain_sub.subscribe("#", QoS::AtLeastOnce);
    let mut mounted_sub = connect(mounted, "mounted-sub");
    mounted_sub.subscribe("#", QoS::AtLeastOnce);
    connect(mounted, "mounted-pub").publish("a/b", b"1", QoS::AtLeastOnce, false, 1);
    let mut plain_pub = connect(plain, "plain-pub");
    plain_pub.publish("site/q", b"2", QoS::AtLeastOnce, false, 1);
    plain_pub.publish("q", b"3", QoS::AtLeastOnce, false, 2);
    let mut seen = Vec::new();
    for client in [&mut plain_sub, &mut mounted_sub] {
        let mut topics = Vec::new();
        client.drain(|c, p| {
            if let Packet::Publish(p) = p {
                c.send(&Packet::PublishAck(PublishResponse::new(p.packet_id)));
                // Not mosquitto's $SYS tree, which the plain "#" does not match anyway.
                topics.push(p.topic.to_string());
            }
        });
        topics.sort();
        seen.push(topics);
    }
    let mounted_seen = seen.pop().unwrap();
    (seen.pop().unwrap(), mounted_seen)
}

#[test]
fn mosquitto_and_tern_deliver_the_same_topics_across_the_mount_point() {
    let second = std::cell::Cell::new(0u16);
    let config = |port: u16| {
        let free = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        second.set(free);
        format!("listener {port} 127.0.0.1\nallow_anonymous true\nlistener {free} 127.0.0.1\nmount_point site/\n")
    };
    let Some(mosquitto) = Mosquitto::start(Some(&config)) else {
        return;
    };
    let theirs = topics_seen(mosquitto.addr, format!("127.0.0.1:{}", second.get()).parse().unwrap());
    let pair = Pair::start(CONFIG);
    let addrs = pair.broker.listening_addrs();
    let ours = topics_seen(addrs[0], addrs[1]);
    // The plain listener's client sees the same topics from both brokers.
    assert_eq!(ours.0, ["q", "site/a/b", "site/q"]);
    assert_eq!(ours.0, theirs.0);
    // The mounted one sees the topics under the mount point, without it; mosquitto
    // before 2.0.12 sends them with it (mosquitto issue 2244).
    assert_eq!(ours.1, ["a/b", "q"]);
    if mosquitto_version().is_some_and(|v| v < (2, 0, 12)) {
        assert_eq!(theirs.1, ["site/a/b", "site/q"]);
    } else {
        assert_eq!(theirs.1, ours.1);
    }
}

/// The installed mosquitto's version, from `mosquitto -h`.
fn mosquitto_version() -> Option<(u32, u32, u32)> {
    let program = if program_exists("mosquitto") {
        "mosquitto"
    } else {
        "/usr/sbin/mosquitto"
    };
    let out = std::process::Command::new(program).arg("-h").output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let word = text.split("version ").nth(1)?.split_whitespace().next()?.to_string();
    let mut parts = word.split('.').map(|n| n.parse::<u32>().ok());
    Some((parts.next()??, parts.next()??, parts.next().flatten().unwrap_or(0)))
}

#[test]
fn messages_resent_after_a_reconnect_lose_the_mount_point_too() {
    let pair = Pair::start(CONFIG);
    let mut first = pair.open(1, V311, connect_packet(V311, "resumer", false, 60));
    first.subscribe("r/#", QoS::AtLeastOnce);
    pair.plain(V311, "plain")
        .publish("site/r/1", b"x", QoS::AtLeastOnce, false, 1);
    let p = first.recv_publish();
    assert_eq!((p.topic.as_str(), p.dup), ("r/1", false));
    // Not acknowledged: sent again, with DUP, on the session's next connection.
    first.hang_up();
    let mut again = pair.open(1, V311, connect_packet(V311, "resumer", false, 60));
    let p = again.recv_publish();
    assert_eq!((p.topic.as_str(), p.dup), ("r/1", true));
}

#[test]
fn a_session_resumed_on_a_mounted_listener_gets_only_what_is_under_the_mount_point() {
    let pair = Pair::start(CONFIG);
    let mut roamer = pair.open(0, V311, connect_packet(V311, "roamer", false, 60));
    roamer.subscribe("#", QoS::AtLeastOnce);
    roamer.disconnect();
    let mut plain = pair.plain(V311, "plain");
    plain.publish("outside", b"1", QoS::AtLeastOnce, false, 1);
    plain.publish("site/inside", b"2", QoS::AtLeastOnce, false, 2);
    let mut back = pair.open(1, V311, connect_packet(V311, "roamer", false, 60));
    let mut topics = Vec::new();
    back.drain(|c, p| {
        if let Packet::Publish(p) = p {
            c.send(&Packet::PublishAck(PublishResponse::new(p.packet_id)));
            topics.push(p.topic.to_string());
        }
    });
    assert_eq!(topics, ["inside"]);
    // What was dropped left no gap in the in-flight window: later messages flow.
    plain.publish("site/later", b"3", QoS::AtLeastOnce, false, 3);
    assert_eq!(back.recv_publish().topic.as_str(), "later");
}

#[test]
fn a_reload_keeps_the_mount_point_the_listener_started_with() {
    let pair = Pair::start(CONFIG);
    let path = pair.broker.config_path.clone().unwrap();
    std::fs::write(&path, CONFIG.replace("mount_point site/", "mount_point elsewhere/")).unwrap();
    pair.broker.signal(SIGHUP);
    assert!(pair.broker.log_contains("configuration reloaded"));
    let mut plain = pair.plain(V311, "plain");
    plain.subscribe("+/x", QoS::AtMostOnce);
    pair.mounted(V311, "after-reload")
        .publish("x", b"1", QoS::AtLeastOnce, false, 1);
    assert_eq!(plain.recv_publish().topic.as_str(), "site/x");
}
