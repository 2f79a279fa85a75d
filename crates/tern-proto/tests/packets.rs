#![allow(clippy::unwrap_used)]
//! Exact bytes on the wire for every packet type under 3.1, 3.1.1 and 5.0: each array is
//! decoded to the expected packet and the packet encoded back to the same array.

use bytes::{Bytes, BytesMut};
use tern_proto::*;

const V31: ProtocolVersion = ProtocolVersion::V3_1;
const V311: ProtocolVersion = ProtocolVersion::V3_1_1;
const V5: ProtocolVersion = ProtocolVersion::V5;

fn both_ways(version: ProtocolVersion, wire: &[u8], packet: Packet) {
    let mut buf = BytesMut::from(wire);
    let decoded = decode(&mut buf, version, usize::MAX).expect("decodes");
    assert_eq!(decoded, Some(packet.clone()), "decoding {wire:02x?}");
    assert!(buf.is_empty(), "the whole packet is consumed");
    let mut out = BytesMut::new();
    encode(&packet, version, &mut out).expect("encodes");
    assert_eq!(&out[..], wire, "encoding {packet:?}");
    assert_eq!(encoded_len(&packet, version), wire.len());
}

fn s(text: &'static str) -> ByteStr {
    ByteStr::from_static(text)
}

fn props(list: Vec<Property>) -> Properties {
    Properties(list)
}

fn connect(version: ProtocolVersion) -> Connect {
    Connect {
        protocol_version: version,
        clean_start: true,
        keep_alive: 60,
        client_id: s(""),
        will: None,
        username: None,
        password: None,
        properties: Properties::default(),
    }
}

#[test]
fn connect_3_1_1_minimal() {
    both_ways(
        V311,
        b"\x10\x0c\x00\x04MQTT\x04\x02\x00\x3c\x00\x00",
        Packet::Connect(Box::new(connect(V311))),
    );
}

#[test]
fn connect_3_1_uses_the_mqisdp_protocol_name() {
    let mut c = connect(V31);
    c.client_id = s("c1");
    both_ways(
        V31,
        b"\x10\x10\x00\x06MQIsdp\x03\x02\x00\x3c\x00\x02c1",
        Packet::Connect(Box::new(c)),
    );
}

#[test]
fn connect_3_1_1_with_will_username_and_password() {
    let mut c = connect(V311);
    c.clean_start = false;
    c.keep_alive = 10;
    c.client_id = s("id");
    c.will = Some(Will {
        topic: s("w/t"),
        payload: Bytes::from_static(b"bye"),
        qos: QoS::AtLeastOnce,
        retain: true,
        properties: Properties::default(),
    });
    c.username = Some(s("u"));
    c.password = Some(Bytes::from_static(b"p"));
    // flags: username, password, will retain, will QoS 1, will flag = 0xEC
    both_ways(
        V311,
        b"\x10\x1e\x00\x04MQTT\x04\xec\x00\x0a\x00\x02id\x00\x03w/t\x00\x03bye\x00\x01u\x00\x01p",
        Packet::Connect(Box::new(c)),
    );
}

#[test]
fn connect_5_with_properties_and_will_properties() {
    let mut c = connect(V5);
    c.client_id = s("x");
    c.properties = props(vec![
        Property::SessionExpiryInterval(3600),
        Property::ReceiveMaximum(20),
    ]);
    c.will = Some(Will {
        topic: s("t"),
        payload: Bytes::new(),
        qos: QoS::AtMostOnce,
        retain: false,
        properties: props(vec![Property::WillDelayInterval(5)]),
    });
    both_ways(
        V5,
        b"\x10\x21\x00\x04MQTT\x05\x06\x00\x3c\x08\x11\x00\x00\x0e\x10\x21\x00\x14\x00\x01x\x05\x18\x00\x00\x00\x05\x00\x01t\x00\x00",
        Packet::Connect(Box::new(c)),
    );
}

#[test]
fn connect_5_allows_a_password_without_a_username() {
    let mut c = connect(V5);
    c.password = Some(Bytes::from_static(b"token"));
    both_ways(
        V5,
        b"\x10\x14\x00\x04MQTT\x05\x42\x00\x3c\x00\x00\x00\x00\x05token",
        Packet::Connect(Box::new(c)),
    );
}

#[test]
fn connack_3_1_1_return_codes() {
    both_ways(
        V311,
        b"\x20\x02\x00\x00",
        Packet::ConnectAck(ConnectAck {
            session_present: false,
            reason_code: ReasonCode::SUCCESS,
            properties: Properties::default(),
        }),
    );
    both_ways(
        V311,
        b"\x20\x02\x01\x00",
        Packet::ConnectAck(ConnectAck {
            session_present: true,
            reason_code: ReasonCode::SUCCESS,
            properties: Properties::default(),
        }),
    );
    both_ways(
        V311,
        b"\x20\x02\x00\x05",
        Packet::ConnectAck(ConnectAck {
            session_present: false,
            reason_code: ReasonCode::NOT_AUTHORIZED,
            properties: Properties::default(),
        }),
    );
    both_ways(
        V31,
        b"\x20\x02\x00\x02",
        Packet::ConnectAck(ConnectAck {
            session_present: false,
            reason_code: ReasonCode::CLIENT_IDENTIFIER_NOT_VALID,
            properties: Properties::default(),
        }),
    );
}

#[test]
fn connack_5_with_assigned_client_identifier() {
    both_ways(
        V5,
        b"\x20\x09\x00\x00\x06\x12\x00\x03abc",
        Packet::ConnectAck(ConnectAck {
            session_present: false,
            reason_code: ReasonCode::SUCCESS,
            properties: props(vec![Property::AssignedClientIdentifier(s("abc"))]),
        }),
    );
    both_ways(
        V5,
        b"\x20\x03\x00\x86\x00",
        Packet::ConnectAck(ConnectAck {
            session_present: false,
            reason_code: ReasonCode::BAD_USER_NAME_OR_PASSWORD,
            properties: Properties::default(),
        }),
    );
}

fn publish(qos: QoS, packet_id: u16) -> Publish {
    Publish {
        dup: false,
        qos,
        retain: false,
        topic: s("a/b"),
        packet_id,
        properties: Properties::default(),
        payload: Bytes::from_static(b"hello"),
    }
}

#[test]
fn publish_qos_0_has_no_packet_identifier() {
    for version in [V31, V311] {
        both_ways(
            version,
            b"\x30\x0a\x00\x03a/bhello",
            Packet::Publish(publish(QoS::AtMostOnce, 0)),
        );
    }
    both_ways(
        V5,
        b"\x30\x0b\x00\x03a/b\x00hello",
        Packet::Publish(publish(QoS::AtMostOnce, 0)),
    );
}

#[test]
fn publish_qos_1_with_dup_and_retain() {
    let mut p = publish(QoS::AtLeastOnce, 10);
    p.dup = true;
    p.retain = true;
    both_ways(V311, b"\x3b\x0c\x00\x03a/b\x00\x0ahello", Packet::Publish(p));
}

#[test]
fn publish_qos_2_5_with_properties() {
    let mut p = publish(QoS::ExactlyOnce, 0x1234);
    p.properties = props(vec![
        Property::PayloadFormatIndicator(1),
        Property::MessageExpiryInterval(30),
        Property::TopicAlias(3),
        Property::ResponseTopic(s("r")),
        Property::CorrelationData(Bytes::from_static(b"\x01")),
        Property::UserProperty((s("k"), s("v"))),
        Property::SubscriptionIdentifier(200),
        Property::ContentType(s("t")),
    ]);
    both_ways(
        V5,
        b"\x34\x2d\x00\x03a/b\x12\x34\x20\x01\x01\x02\x00\x00\x00\x1e\x23\x00\x03\x08\x00\x01r\x09\x00\x01\x01\x26\x00\x01k\x00\x01v\x0b\xc8\x01\x03\x00\x01thello",
        Packet::Publish(p),
    );
}

#[test]
fn publish_5_with_a_topic_alias_may_have_an_empty_topic() {
    let mut p = publish(QoS::AtMostOnce, 0);
    p.topic = s("");
    p.properties = props(vec![Property::TopicAlias(1)]);
    both_ways(V5, b"\x30\x0b\x00\x00\x03\x23\x00\x01hello", Packet::Publish(p));
}

#[test]
fn publish_responses_3_1_1() {
    let r = PublishResponse::new(1);
    both_ways(V311, b"\x40\x02\x00\x01", Packet::PublishAck(r.clone()));
    both_ways(V311, b"\x50\x02\x00\x01", Packet::PublishReceived(r.clone()));
    both_ways(V311, b"\x62\x02\x00\x01", Packet::PublishRelease(r.clone()));
    both_ways(V311, b"\x70\x02\x00\x01", Packet::PublishComplete(r));
}

#[test]
fn publish_responses_5_shorten_when_they_can() {
    both_ways(V5, b"\x40\x02\x00\x01", Packet::PublishAck(PublishResponse::new(1)));
    both_ways(
        V5,
        b"\x40\x03\x00\x01\x10",
        Packet::PublishAck(PublishResponse {
            packet_id: 1,
            reason_code: ReasonCode::NO_MATCHING_SUBSCRIBERS,
            properties: Properties::default(),
        }),
    );
    both_ways(
        V5,
        b"\x50\x08\x00\x01\x87\x04\x1f\x00\x01x",
        Packet::PublishReceived(PublishResponse {
            packet_id: 1,
            reason_code: ReasonCode::NOT_AUTHORIZED,
            properties: props(vec![Property::ReasonString(s("x"))]),
        }),
    );
    both_ways(
        V5,
        b"\x62\x03\x00\x01\x92",
        Packet::PublishRelease(PublishResponse {
            packet_id: 1,
            reason_code: ReasonCode::PACKET_IDENTIFIER_NOT_FOUND,
            properties: Properties::default(),
        }),
    );
}

#[test]
fn subscribe_3_1_1_with_two_filters() {
    let sub = |filter, qos| Subscription {
        filter: s(filter),
        options: SubscriptionOptions {
            qos,
            ..Default::default()
        },
    };
    both_ways(
        V311,
        b"\x82\x0e\x00\x0a\x00\x03a/b\x01\x00\x03c/#\x02",
        Packet::Subscribe(Subscribe {
            packet_id: 10,
            subscriptions: vec![sub("a/b", QoS::AtLeastOnce), sub("c/#", QoS::ExactlyOnce)],
            properties: Properties::default(),
        }),
    );
}

#[test]
fn subscribe_5_with_every_option_and_an_identifier() {
    let options = SubscriptionOptions {
        qos: QoS::AtLeastOnce,
        no_local: true,
        retain_as_published: true,
        retain_handling: RetainHandling::DoNotSend,
    };
    both_ways(
        V5,
        b"\x82\x0a\x00\x01\x02\x0b\x07\x00\x02+/\x2d",
        Packet::Subscribe(Subscribe {
            packet_id: 1,
            subscriptions: vec![Subscription {
                filter: s("+/"),
                options,
            }],
            properties: props(vec![Property::SubscriptionIdentifier(7)]),
        }),
    );
}

#[test]
fn suback_in_each_version() {
    let ack = |codes: Vec<ReasonCode>| {
        Packet::SubscribeAck(SubscribeAck {
            packet_id: 10,
            reason_codes: codes,
            properties: Properties::default(),
        })
    };
    both_ways(
        V311,
        b"\x90\x04\x00\x0a\x01\x80",
        ack(vec![ReasonCode::GRANTED_QOS_1, ReasonCode::UNSPECIFIED_ERROR]),
    );
    both_ways(
        V5,
        b"\x90\x05\x00\x0a\x00\x02\x87",
        ack(vec![ReasonCode::GRANTED_QOS_2, ReasonCode::NOT_AUTHORIZED]),
    );
}

#[test]
fn a_5_0_failure_code_becomes_0x80_under_3_1_1() {
    let mut out = BytesMut::new();
    let packet = Packet::SubscribeAck(SubscribeAck {
        packet_id: 1,
        reason_codes: vec![ReasonCode::NOT_AUTHORIZED],
        properties: Properties::default(),
    });
    encode(&packet, V311, &mut out).unwrap();
    assert_eq!(&out[..], b"\x90\x03\x00\x01\x80");
}

#[test]
fn unsubscribe_and_unsuback() {
    let unsub = Packet::Unsubscribe(Unsubscribe {
        packet_id: 11,
        filters: vec![s("a/b")],
        properties: Properties::default(),
    });
    both_ways(V311, b"\xa2\x07\x00\x0b\x00\x03a/b", unsub.clone());
    both_ways(V5, b"\xa2\x08\x00\x0b\x00\x00\x03a/b", unsub);
    both_ways(
        V311,
        b"\xb0\x02\x00\x0b",
        Packet::UnsubscribeAck(UnsubscribeAck {
            packet_id: 11,
            reason_codes: vec![],
            properties: Properties::default(),
        }),
    );
    both_ways(
        V5,
        b"\xb0\x04\x00\x0b\x00\x11",
        Packet::UnsubscribeAck(UnsubscribeAck {
            packet_id: 11,
            reason_codes: vec![ReasonCode::NO_SUBSCRIPTION_EXISTED],
            properties: Properties::default(),
        }),
    );
}

#[test]
fn ping_and_disconnect() {
    for version in [V31, V311, V5] {
        both_ways(version, b"\xc0\x00", Packet::PingRequest);
        both_ways(version, b"\xd0\x00", Packet::PingResponse);
        both_ways(version, b"\xe0\x00", Packet::Disconnect(Disconnect::default()));
    }
}

#[test]
fn disconnect_5_with_reason_and_properties() {
    both_ways(
        V5,
        b"\xe0\x01\x8e",
        Packet::Disconnect(Disconnect {
            reason_code: ReasonCode::SESSION_TAKEN_OVER,
            properties: Properties::default(),
        }),
    );
    both_ways(
        V5,
        b"\xe0\x07\x00\x05\x11\x00\x00\x00\x00",
        Packet::Disconnect(Disconnect {
            reason_code: ReasonCode::SUCCESS,
            properties: props(vec![Property::SessionExpiryInterval(0)]),
        }),
    );
}

#[test]
fn auth_5() {
    both_ways(V5, b"\xf0\x00", Packet::Auth(Auth::default()));
    both_ways(
        V5,
        b"\xf0\x10\x18\x0e\x15\x00\x05SCRAM\x16\x00\x03abc",
        Packet::Auth(Auth {
            reason_code: ReasonCode::CONTINUE_AUTHENTICATION,
            properties: props(vec![
                Property::AuthenticationMethod(s("SCRAM")),
                Property::AuthenticationData(Bytes::from_static(b"abc")),
            ]),
        }),
    );
}

#[test]
fn a_packet_arriving_byte_by_byte_decodes_once_complete() {
    let wire = b"\x30\x0a\x00\x03a/bhello";
    let mut buf = BytesMut::new();
    for (i, byte) in wire.iter().enumerate() {
        buf.extend_from_slice(&[*byte]);
        let result = decode(&mut buf, V311, usize::MAX).unwrap();
        assert_eq!(result.is_some(), i == wire.len() - 1, "after {} bytes", i + 1);
    }
}

#[test]
fn two_packets_in_one_buffer_decode_in_order() {
    let mut buf = BytesMut::from(&b"\xc0\x00\x40\x02\x00\x07"[..]);
    assert_eq!(decode(&mut buf, V311, usize::MAX).unwrap(), Some(Packet::PingRequest));
    assert_eq!(
        decode(&mut buf, V311, usize::MAX).unwrap(),
        Some(Packet::PublishAck(PublishResponse::new(7)))
    );
    assert_eq!(decode(&mut buf, V311, usize::MAX).unwrap(), None);
}

#[test]
fn the_payload_shares_the_read_buffer() {
    let mut buf = BytesMut::from(&b"\x30\x0a\x00\x03a/bhello"[..]);
    let start = buf.as_ptr() as usize;
    let Some(Packet::Publish(p)) = decode(&mut buf, V311, usize::MAX).unwrap() else {
        panic!("not a publish")
    };
    assert_eq!(p.payload.as_ptr() as usize, start + 7);
    assert_eq!(p.topic.as_ptr() as usize, start + 4);
}

#[test]
fn auth_cannot_be_encoded_for_3_1_1() {
    let mut out = BytesMut::new();
    assert!(encode(&Packet::Auth(Auth::default()), V311, &mut out).is_err());
    assert!(out.is_empty());
}
