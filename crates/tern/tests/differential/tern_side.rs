//! Tern's side of two named differences, checked against Tern alone: the outgoing topic
//! aliases the differential rule resolves, and the DISCONNECT a client reads even when it
//! goes on sending after its violation.

use crate::common::{connect_packet, publish_packet, Broker, V5};
use std::io::{Read, Write};
use tern_proto::{decode, encode, Packet, Property, ProtocolVersion, PublishResponse, QoS, ReasonCode};

#[test]
fn an_outgoing_topic_alias_stands_alone_after_the_first_message_at_every_qos() {
    let broker = Broker::start();
    let mut publisher = broker.connect(V5, "alias-publisher");
    for qos in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce] {
        // A client that allows one alias, and three messages on one topic.
        let mut subscriber = broker.client(V5);
        let mut connect = connect_packet(V5, &format!("one-alias-{}", qos as u8), true, 60);
        connect.properties.push(Property::TopicAliasMaximum(1));
        subscriber.connect(&connect);
        let topic = format!("alias/{}", qos as u8);
        subscriber.subscribe(&topic, qos);
        for i in 0..3u16 {
            publisher.publish(&topic, b"m", qos, false, 10 + i);
            let message = subscriber.recv_publish();
            let expected = if i == 0 { topic.as_str() } else { "" };
            assert_eq!(
                (message.topic.as_str(), message.properties.topic_alias()),
                (expected, Some(1)),
                "message {i} at {qos:?}"
            );
            let id = message.packet_id;
            match qos {
                QoS::AtMostOnce => {}
                QoS::AtLeastOnce => subscriber.send(&Packet::PublishAck(PublishResponse::new(id))),
                QoS::ExactlyOnce => {
                    subscriber.send(&Packet::PublishReceived(PublishResponse::new(id)));
                    assert!(matches!(subscriber.recv(), Packet::PublishRelease(_)));
                    subscriber.send(&Packet::PublishComplete(PublishResponse::new(id)));
                }
            }
        }
        // A second topic finds the one alias taken: sent in full, without one.
        publisher.publish("alias/other", b"m", QoS::AtMostOnce, false, 0);
        subscriber.subscribe("alias/other", QoS::AtMostOnce);
        publisher.publish("alias/other", b"m", QoS::AtMostOnce, false, 0);
        let message = subscriber.recv_publish();
        assert_eq!(
            (message.topic.as_str(), message.properties.topic_alias()),
            ("alias/other", None)
        );
    }
}

#[test]
fn a_client_that_keeps_sending_after_its_violation_still_reads_the_disconnect() {
    let broker = Broker::with_config(
        "tern.conf",
        "listener 0 127.0.0.1\nallow_anonymous true\nmax_inflight_messages 2\n",
    );
    let mut client = broker.client(V5);
    client.connect(&connect_packet(V5, "flooder", true, 60));
    // Many QoS 1 messages whose PUBACKs the client leaves unread for now (they wait in the
    // socket buffers), then QoS 2 messages never released: the third exceeds the Receive
    // Maximum of 2. Then more, as a client that does not read its socket would send.
    let encoded = |packet: Packet| {
        let mut out = bytes::BytesMut::new();
        encode(&packet, ProtocolVersion::V5, &mut out).unwrap();
        out.to_vec()
    };
    let mut before = Vec::new();
    for id in 0..40_000u32 {
        before.extend(encoded(publish_packet(
            "flood",
            b"x",
            QoS::AtLeastOnce,
            false,
            (id % 60_000 + 1) as u16,
        )));
    }
    for id in 1..=3u16 {
        before.extend(encoded(publish_packet(
            "flood",
            b"x",
            QoS::ExactlyOnce,
            false,
            60_000 + id,
        )));
    }
    let after = encoded(publish_packet("flood", &[b'x'; 1000], QoS::AtMostOnce, false, 0)).repeat(1000);
    let mut writer = client.stream.try_clone().unwrap();
    let sender = std::thread::spawn(move || {
        // Errors once the broker is gone: what matters is what the reader got.
        let _ = writer.write_all(&before).and_then(|()| writer.write_all(&after));
    });
    // The broker has seen the violation and is writing the PUBACKs and the DISCONNECT.
    assert!(broker.log_contains("[MQTT-3.3.4-9]"));
    let mut received = bytes::BytesMut::new();
    let mut chunk = [0u8; 64 * 1024];
    let mut seen = (0, None);
    client.stream.set_read_timeout(Some(crate::common::PATIENCE)).unwrap();
    while seen.1.is_none() {
        match client.stream.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => received.extend_from_slice(&chunk[..n]),
            Err(e) => panic!("read failed ({e}) after {} acknowledgements, before DISCONNECT", seen.0),
        }
        while let Some(packet) = decode(&mut received, ProtocolVersion::V5, usize::MAX).unwrap() {
            match packet {
                Packet::Disconnect(d) => seen.1 = Some(d.reason_code),
                _ => seen.0 += 1,
            }
        }
    }
    sender.join().unwrap();
    assert_eq!(seen, (40_002, Some(ReasonCode::RECEIVE_MAXIMUM_EXCEEDED)));
}
