//! Retained messages sent on SUBSCRIBE are streamed as the subscriber reads, not pushed
//! into its bounded queue at once (issue 12): a `#` subscriber receives every one of
//! 20,000 retained messages, under 3.1.1 and 5.0, at QoS 0 and 1, and so does
//! `mosquitto_sub`. Also: a second SUBSCRIBE while a stream is under way, a stream that
//! resumes with its persistent session, retained messages replaced or cleared while they
//! wait, UNSUBSCRIBE mid-stream, and the client's Maximum Packet Size.
#![allow(clippy::unwrap_used)]
mod common;
use bytes::BytesMut;
use common::*;
use std::collections::{HashMap, HashSet};
use std::process::{Command, Stdio};
use std::time::Duration;
use tern_proto::*;

/// The number of retained topics of the issue's reproduction.
const TOPICS: usize = 20_000;
/// The broker's default in-flight window: a QoS 1 stream whose messages are not
/// acknowledged stops after this many, which holds a stream in the middle for a test.
const WINDOW: usize = 20;

fn topic(prefix: &str, i: usize) -> String {
    format!("{prefix}/{}/{i}", i / 1000)
}

/// Stores `count` retained messages `{prefix}/{i / 1000}/{i}` with payload `i`, published
/// at QoS 1 (so that a QoS 1 subscription receives them at QoS 1) in writes of 1,000, each
/// followed by reading their PUBACKs: once the last arrived, every message is stored.
fn retain_topics(broker: &Broker, prefix: &str, count: usize) {
    retain_topics_sized(broker, prefix, count, |i| i.to_string().into_bytes());
}

fn retain_topics_sized(broker: &Broker, prefix: &str, count: usize, payload: impl Fn(usize) -> Vec<u8>) {
    let mut c = broker.connect(V311, &format!("retainer-{prefix}"));
    for start in (0..count).step_by(1000) {
        let end = count.min(start + 1000);
        let mut out = BytesMut::new();
        for i in start..end {
            let packet_id = u16::try_from(i % 60_000 + 1).unwrap();
            let packet = publish_packet(&topic(prefix, i), &payload(i), QoS::AtLeastOnce, true, packet_id);
            encode(&packet, V311, &mut out).unwrap();
        }
        c.send_raw(&out);
        for _ in start..end {
            assert!(matches!(c.recv(), Packet::PublishAck(_)));
        }
    }
    c.disconnect();
}

/// SUBSCRIBE with one filter and, for 5.0, a Subscription Identifier; returns the SUBACK's
/// reason codes.
fn subscribe(c: &mut Client, packet_id: u16, filter: &str, qos: QoS, identifier: Option<u32>) -> Vec<ReasonCode> {
    let properties = Properties(identifier.map(Property::SubscriptionIdentifier).into_iter().collect());
    c.send(&Packet::Subscribe(Subscribe {
        packet_id,
        subscriptions: vec![Subscription {
            filter: ByteStr::from(filter),
            options: SubscriptionOptions {
                qos,
                ..Default::default()
            },
        }],
        properties,
    }));
    match c.recv() {
        Packet::SubscribeAck(ack) => ack.reason_codes,
        other => panic!("expected SUBACK, got {other:?}"),
    }
}

/// Reads `count` PUBLISH packets, acknowledging QoS 1 ones at once when `ack`.
fn receive(c: &mut Client, count: usize, ack: bool) -> Vec<Publish> {
    let mut got = Vec::with_capacity(count);
    while got.len() < count {
        match c.recv_within(Duration::from_secs(10)) {
            Some(Packet::Publish(p)) => {
                if ack && p.qos == QoS::AtLeastOnce {
                    c.send(&Packet::PublishAck(PublishResponse::new(p.packet_id)));
                }
                got.push(p);
            }
            Some(other) => panic!("expected PUBLISH, got {other:?}"),
            None => panic!("received {} of {count} messages, then nothing for 10 s", got.len()),
        }
    }
    got
}

/// Reads PUBLISH packets (acknowledging them) until `topics` different topics of
/// messages for which `wanted` holds have arrived; returns all it read.
fn receive_topics(c: &mut Client, topics: usize, wanted: impl Fn(&Publish) -> bool) -> Vec<Publish> {
    let mut got = Vec::new();
    let mut seen = HashSet::new();
    while seen.len() < topics {
        let p = receive(c, 1, true).remove(0);
        if wanted(&p) {
            seen.insert(p.topic.clone());
        }
        got.push(p);
    }
    got
}

/// Acknowledges QoS 1 messages already received.
fn acknowledge(c: &mut Client, messages: &[Publish]) {
    for p in messages.iter().filter(|p| p.qos == QoS::AtLeastOnce) {
        c.send(&Packet::PublishAck(PublishResponse::new(p.packet_id)));
    }
}

/// How many times each topic arrived.
fn counts(messages: &[Publish]) -> HashMap<String, usize> {
    let mut seen = HashMap::new();
    for p in messages {
        *seen.entry(p.topic.to_string()).or_insert(0) += 1;
    }
    seen
}

/// A persistent session: Clean Session 0, or for 5.0 Clean Start 0 with an hour's expiry.
fn persistent(broker: &Broker, version: ProtocolVersion, id: &str) -> Client {
    let mut c = broker.client(version);
    let mut connect = connect_packet(version, id, false, 60);
    if version == V5 {
        connect.properties.push(Property::SessionExpiryInterval(3600));
    }
    let ack = c.connect(&connect);
    assert_eq!(ack.reason_code, ReasonCode::SUCCESS);
    c
}

#[test]
fn a_wildcard_subscriber_receives_all_20000_retained_messages_at_qos_0_and_1() {
    let broker = Broker::start();
    retain_topics(&broker, "r", TOPICS);
    for version in VERSIONS {
        for qos in [QoS::AtMostOnce, QoS::AtLeastOnce] {
            let mut sub = broker.connect(version, &format!("all-{version}-{qos:?}"));
            let identifier = (version == V5).then_some(7);
            assert_eq!(
                subscribe(&mut sub, 1, "#", qos, identifier),
                vec![ReasonCode(qos as u8)]
            );
            let got = receive(&mut sub, TOPICS, true);
            let topics: HashSet<&str> = got.iter().map(|p| &*p.topic).collect();
            assert_eq!(topics.len(), TOPICS, "{version} {qos:?}: every topic once");
            for p in &got {
                assert!(p.retain, "[MQTT-3.3.1-8] RETAIN set on {}", p.topic);
                assert_eq!(p.qos, qos);
                assert_eq!(p.payload, p.topic.rsplit('/').next().unwrap().as_bytes());
                let ids: Vec<u32> = p.properties.subscription_identifiers().collect();
                assert_eq!(ids, identifier.into_iter().collect::<Vec<_>>(), "{}", p.topic);
            }
            sub.expect_quiet();
        }
    }
    assert!(
        !broker.log_lines_contain("queue full"),
        "nothing was dropped for a full queue"
    );
}

trait LogLines {
    fn log_lines_contain(&self, needle: &str) -> bool;
}

impl LogLines for Broker {
    /// Whether some line logged so far contains `needle` (no waiting).
    fn log_lines_contain(&self, needle: &str) -> bool {
        self.log.lock().unwrap().iter().any(|l| l.contains(needle))
    }
}

#[test]
fn mosquitto_sub_receives_all_20000_retained_messages() {
    if !peer_available(
        "mosquitto_sub (apt-get install mosquitto-clients)",
        program_exists("mosquitto_sub"),
    ) {
        return;
    }
    let broker = Broker::start();
    retain_topics(&broker, "m", TOPICS);
    let port = broker.addr.port().to_string();
    for (version, qos) in [("mqttv311", "0"), ("mqttv5", "0"), ("mqttv5", "1")] {
        let count = TOPICS.to_string();
        // -C: exit after that many messages; -W: give up (exit 27) after 60 s.
        let args = [
            "-h",
            "127.0.0.1",
            "-p",
            &port,
            "-V",
            version,
            "-q",
            qos,
            "-t",
            "#",
            "-C",
            &count,
            "-W",
            "60",
        ];
        let out = Command::new("mosquitto_sub")
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        let payloads: HashSet<&str> = text.lines().collect();
        assert_eq!(
            (out.status.code(), payloads.len()),
            (Some(0), TOPICS),
            "mosquitto_sub -V {version} -q {qos}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn a_second_subscription_while_retained_messages_stream_gets_its_own_and_nothing_is_lost() {
    let broker = Broker::start();
    retain_topics(&broker, "a", 2000);
    retain_topics(&broker, "b", 2000);
    for version in VERSIONS {
        let mut sub = broker.connect(version, &format!("second-{version}"));
        subscribe(&mut sub, 1, "#", QoS::AtLeastOnce, None);
        // Unacknowledged, the window holds the stream after its first messages.
        let first = receive(&mut sub, WINDOW, false);
        subscribe(&mut sub, 2, "b/#", QoS::AtLeastOnce, None);
        acknowledge(&mut sub, &first);
        let mut got = first;
        got.extend(receive(&mut sub, 4000 + 2000 - WINDOW, true));
        sub.expect_quiet();
        let seen = counts(&got);
        assert_eq!(seen.len(), 4000, "{version}: every topic of #");
        for (topic, n) in seen {
            let want = if topic.starts_with("b/") { 2 } else { 1 };
            assert_eq!(n, want, "{version}: {topic} once per matching SUBSCRIBE");
        }
    }
}

#[test]
fn subscribing_again_to_a_filter_whose_retained_messages_stream_sends_them_all_again() {
    let broker = Broker::start();
    retain_topics(&broker, "s", 2000);
    for version in VERSIONS {
        let mut sub = broker.connect(version, &format!("again-{version}"));
        subscribe(&mut sub, 1, "s/#", QoS::AtLeastOnce, None);
        let first = receive(&mut sub, WINDOW, false);
        // [MQTT-3.8.4-3]: the subscription is replaced and its retained messages re-sent.
        subscribe(&mut sub, 2, "s/#", QoS::AtLeastOnce, None);
        acknowledge(&mut sub, &first);
        // Every topic comes after the second SUBACK (after what was already queued).
        let again = receive_topics(&mut sub, 2000, |_| true);
        sub.expect_quiet();
        let mut got = first;
        got.extend(again);
        assert!(counts(&got).values().all(|&n| n <= 2), "{version}: at most twice each");
    }
}

#[test]
fn a_persistent_session_gets_the_rest_of_its_retained_messages_when_it_comes_back() {
    let broker = Broker::start();
    retain_topics(&broker, "p", 2000);
    for version in VERSIONS {
        let id = format!("resume-{version}");
        let mut sub = persistent(&broker, version, &id);
        subscribe(&mut sub, 1, "#", QoS::AtLeastOnce, None);
        let mut got = receive(&mut sub, WINDOW, false);
        sub.disconnect();
        // Replaced while the client is away, at QoS 0, which its session does not keep:
        // the rest of the stream brings the new message.
        let changed = topic("p", 1999);
        let mut publisher = broker.connect(V311, &format!("resume-pub-{version}"));
        publisher.publish(&changed, b"changed", QoS::AtMostOnce, true, 0);
        publisher.publish("barrier", b"", QoS::AtLeastOnce, false, 1);
        let mut sub = persistent(&broker, version, &id);
        // The barrier itself (QoS 1, kept for the session) arrives too: left out.
        got.extend(receive_topics(&mut sub, 2000, |p| p.retain));
        sub.expect_quiet();
        let got: Vec<Publish> = got.into_iter().filter(|p| p.retain).collect();
        let seen = counts(&got);
        // The messages in flight when the connection ended come again (with DUP); none
        // of the others.
        assert!(seen.values().all(|&n| n <= 2), "{version}");
        assert!(got.len() <= 2000 + WINDOW, "{version}: {} messages", got.len());
        let last: Vec<&Publish> = got.iter().filter(|p| p.topic == changed.as_str()).collect();
        assert_eq!(last.len(), 1, "{version}");
        assert_eq!(
            (&last[0].payload[..], last[0].retain),
            (&b"changed"[..], true),
            "{version}"
        );
        sub.disconnect();
        // A clean start ends the session, and with it the rest of its stream.
        let mut c = broker.connect(version, &id);
        c.expect_quiet();
    }
}

#[test]
fn retained_messages_replaced_or_cleared_while_waiting_are_not_sent_stale() {
    let broker = Broker::start();
    retain_topics(&broker, "c", 2000);
    for version in VERSIONS {
        let mut sub = broker.connect(version, &format!("stale-{version}"));
        subscribe(&mut sub, 1, "c/#", QoS::AtLeastOnce, None);
        let first = receive(&mut sub, WINDOW, false);
        let sent: HashSet<String> = first.iter().map(|p| p.topic.to_string()).collect();
        // Two topics far from the start, whatever order the stream takes.
        let waiting: Vec<String> = (0..2000)
            .rev()
            .map(|i| topic("c", i))
            .filter(|t| !sent.contains(t))
            .collect();
        let (replaced, cleared) = (&waiting[0], &waiting[1]);
        let mut publisher = broker.connect(V311, &format!("stale-pub-{version}"));
        publisher.publish(replaced, b"new", QoS::AtLeastOnce, true, 1);
        publisher.publish(cleared, b"", QoS::AtLeastOnce, true, 2);
        acknowledge(&mut sub, &first);
        let mut got = first;
        // Every topic once, except the cleared one, which arrives live (its empty PUBLISH).
        got.extend(receive(&mut sub, 2000 - WINDOW, true));
        sub.expect_quiet();
        let of = |t: &String| got.iter().filter(|p| p.topic == t.as_str()).collect::<Vec<_>>();
        let r = of(replaced);
        assert_eq!(r.len(), 1, "{version}: {replaced} once: {r:?}");
        assert_eq!(
            &r[0].payload[..],
            b"new",
            "{version}: the live message, not the stale one"
        );
        let c = of(cleared);
        assert_eq!(c.len(), 1, "{version}: {cleared} only live: {c:?}");
        assert!(c[0].payload.is_empty());
        assert_eq!(counts(&got).len(), 2000, "{version}");
    }
}

#[test]
fn unsubscribing_stops_the_retained_messages_still_waiting() {
    let broker = Broker::start();
    retain_topics(&broker, "u", 2000);
    for version in VERSIONS {
        let mut sub = broker.connect(version, &format!("unsub-{version}"));
        subscribe(&mut sub, 1, "u/#", QoS::AtLeastOnce, None);
        let first = receive(&mut sub, WINDOW, false);
        sub.send(&Packet::Unsubscribe(Unsubscribe {
            packet_id: 2,
            filters: vec![ByteStr::from("u/#")],
            properties: Properties::default(),
        }));
        assert!(matches!(sub.recv(), Packet::UnsubscribeAck(_)));
        acknowledge(&mut sub, &first);
        // What was already queued for the client may still come [MQTT-3.10.4-3]; the
        // rest of the stream does not.
        let mut more = 0;
        while let Some(p) = sub.recv_within(Duration::from_millis(300)) {
            match p {
                Packet::Publish(p) => {
                    acknowledge(&mut sub, &[p]);
                    more += 1;
                }
                other => panic!("{other:?}"),
            }
        }
        assert!(more < 200, "{version}: {more} more after UNSUBSCRIBE");
    }
}

#[test]
fn retained_messages_too_large_for_the_client_are_skipped_and_the_stream_goes_on() {
    let broker = Broker::start();
    // Every tenth message is larger than the client's Maximum Packet Size.
    retain_topics_sized(&broker, "big", 3000, |i| vec![b'x'; if i % 10 == 0 { 500 } else { 10 }]);
    let mut sub = broker.client(V5);
    let mut connect = connect_packet(V5, "small-packets", true, 60);
    connect.properties.push(Property::MaximumPacketSize(100));
    sub.connect(&connect);
    subscribe(&mut sub, 1, "big/#", QoS::AtLeastOnce, None);
    let got = receive(&mut sub, 2700, true);
    sub.expect_quiet();
    assert!(got.iter().all(|p| p.payload.len() == 10));
    assert_eq!(counts(&got).len(), 2700);
}
