#![allow(clippy::unwrap_used)]
//! Property-based tests: every valid packet of every type and version survives
//! `decode(encode(p)) == p`, and arbitrary bytes never panic, never loop and never consume
//! bytes without returning a packet.

use bytes::{Bytes, BytesMut};
use proptest::prelude::*;
use tern_proto::*;

fn version() -> impl Strategy<Value = ProtocolVersion> {
    prop_oneof![
        Just(ProtocolVersion::V3_1),
        Just(ProtocolVersion::V3_1_1),
        Just(ProtocolVersion::V5)
    ]
}

fn qos() -> impl Strategy<Value = QoS> {
    prop_oneof![Just(QoS::AtMostOnce), Just(QoS::AtLeastOnce), Just(QoS::ExactlyOnce)]
}

fn text() -> impl Strategy<Value = ByteStr> {
    "[^\u{0}]{0,12}".prop_map(ByteStr::from)
}

fn topic_name() -> impl Strategy<Value = ByteStr> {
    "[a-z0-9$/ é]{1,16}".prop_map(ByteStr::from)
}

fn topic_filter() -> impl Strategy<Value = ByteStr> {
    (
        prop::collection::vec(prop_oneof!["[a-z]{0,4}", Just("+".to_string())], 1..5),
        any::<bool>(),
    )
        .prop_map(|(levels, hash)| {
            let mut filter = levels.join("/");
            if hash {
                filter.push_str("/#");
            }
            if filter.is_empty() {
                filter.push('#');
            }
            ByteStr::from(filter)
        })
}

fn binary() -> impl Strategy<Value = Bytes> {
    prop::collection::vec(any::<u8>(), 0..16).prop_map(Bytes::from)
}

fn packet_id() -> impl Strategy<Value = u16> {
    1..=u16::MAX
}

fn reason(codes: &'static [u8]) -> impl Strategy<Value = ReasonCode> {
    prop::sample::select(codes).prop_map(ReasonCode)
}

/// Properties valid in `context`: each allowed single property at most once, any number
/// of user properties.
fn properties(version: ProtocolVersion, context: PropertyContext) -> BoxedStrategy<Properties> {
    if !version.is_v5() {
        return Just(Properties::default()).boxed();
    }
    let candidates = prop::collection::vec(
        prop_oneof![
            (0..=1u8).prop_map(Property::PayloadFormatIndicator),
            any::<u32>().prop_map(Property::MessageExpiryInterval),
            text().prop_map(Property::ContentType),
            topic_name().prop_map(Property::ResponseTopic),
            binary().prop_map(Property::CorrelationData),
            (1..=MAX_VARIABLE_BYTE_INTEGER).prop_map(Property::SubscriptionIdentifier),
            any::<u32>().prop_map(Property::SessionExpiryInterval),
            text().prop_map(Property::AssignedClientIdentifier),
            any::<u16>().prop_map(Property::ServerKeepAlive),
            text().prop_map(Property::AuthenticationMethod),
            binary().prop_map(Property::AuthenticationData),
            (0..=1u8).prop_map(Property::RequestProblemInformation),
            any::<u32>().prop_map(Property::WillDelayInterval),
            (0..=1u8).prop_map(Property::RequestResponseInformation),
            text().prop_map(Property::ResponseInformation),
            text().prop_map(Property::ServerReference),
            text().prop_map(Property::ReasonString),
            (1..=u16::MAX).prop_map(Property::ReceiveMaximum),
            any::<u16>().prop_map(Property::TopicAliasMaximum),
            (1..=u16::MAX).prop_map(Property::TopicAlias),
            (0..=1u8).prop_map(Property::MaximumQoS),
            (0..=1u8).prop_map(Property::RetainAvailable),
            (text(), text()).prop_map(Property::UserProperty),
            (1..=u32::MAX).prop_map(Property::MaximumPacketSize),
            (0..=1u8).prop_map(Property::WildcardSubscriptionAvailable),
            (0..=1u8).prop_map(Property::SubscriptionIdentifierAvailable),
            (0..=1u8).prop_map(Property::SharedSubscriptionAvailable),
        ],
        0..8,
    );
    candidates
        .prop_map(move |list| {
            let mut kept: Vec<Property> = Vec::new();
            for p in list {
                let id = p.id();
                let repeatable = id == PropertyId::UserProperty
                    || (id == PropertyId::SubscriptionIdentifier && context == PropertyContext::Publish);
                if id.is_allowed_in(context) && (repeatable || !kept.iter().any(|k| k.id() == id)) {
                    kept.push(p);
                }
            }
            Properties(kept)
        })
        .boxed()
}

fn connect() -> impl Strategy<Value = Packet> {
    version().prop_flat_map(|v| {
        let will = (
            topic_name(),
            binary(),
            qos(),
            any::<bool>(),
            properties(v, PropertyContext::Will),
        )
            .prop_map(|(topic, payload, qos, retain, properties)| Will {
                topic,
                payload,
                qos,
                retain,
                properties,
            });
        (
            any::<bool>(),
            any::<u16>(),
            text(),
            prop::option::of(will),
            prop::option::of(text()),
            prop::option::of(binary()),
            properties(v, PropertyContext::Connect),
        )
            .prop_map(
                move |(clean_start, keep_alive, client_id, will, username, password, properties)| {
                    // Before 5.0 a password needs a user name.
                    let password = if v.is_v5() || username.is_some() {
                        password
                    } else {
                        None
                    };
                    (
                        v,
                        Packet::Connect(Box::new(Connect {
                            protocol_version: v,
                            clean_start,
                            keep_alive,
                            client_id,
                            will,
                            username,
                            password,
                            properties,
                        })),
                    )
                },
            )
            .prop_map(|(_, p)| p)
    })
}

fn packet(v: ProtocolVersion) -> BoxedStrategy<Packet> {
    let connack_codes: &'static [u8] = if v.is_v5() {
        &[0x00, 0x80, 0x84, 0x85, 0x86, 0x87, 0x88, 0x89, 0x9C, 0x9F]
    } else {
        &[0x00, 0x84, 0x85, 0x86, 0x87, 0x88]
    };
    let suback_codes: &'static [u8] = if v.is_v5() {
        &[0x00, 0x01, 0x02, 0x80, 0x87, 0x8F, 0xA2]
    } else {
        &[0x00, 0x01, 0x02, 0x80]
    };
    let ack_codes: &'static [u8] = if v.is_v5() {
        &[0x00, 0x10, 0x80, 0x87, 0x97]
    } else {
        &[0x00]
    };
    let rel_codes: &'static [u8] = if v.is_v5() { &[0x00, 0x92] } else { &[0x00] };
    let disconnect_codes: &'static [u8] = if v.is_v5() {
        &[0x00, 0x04, 0x8B, 0x8E, 0x93]
    } else {
        &[0x00]
    };
    let response = move |codes: &'static [u8]| {
        (
            packet_id(),
            reason(codes),
            properties(v, PropertyContext::PublishResponse),
        )
            .prop_map(|(packet_id, reason_code, properties)| PublishResponse {
                packet_id,
                reason_code,
                properties,
            })
    };
    let sub_options = (qos(), any::<bool>(), any::<bool>(), 0..3u8).prop_map(move |(qos, nl, rap, rh)| {
        if v.is_v5() {
            SubscriptionOptions {
                qos,
                no_local: nl,
                retain_as_published: rap,
                retain_handling: [
                    RetainHandling::SendAtSubscribe,
                    RetainHandling::SendAtNewSubscribe,
                    RetainHandling::DoNotSend,
                ][rh as usize],
            }
        } else {
            SubscriptionOptions {
                qos,
                ..Default::default()
            }
        }
    });
    let mut choices: Vec<BoxedStrategy<Packet>> = vec![
        (
            any::<bool>(),
            reason(connack_codes),
            properties(v, PropertyContext::ConnectAck),
        )
            .prop_map(|(session_present, reason_code, properties)| {
                Packet::ConnectAck(ConnectAck {
                    session_present,
                    reason_code,
                    properties,
                })
            })
            .boxed(),
        (
            any::<bool>(),
            qos(),
            any::<bool>(),
            topic_name(),
            packet_id(),
            properties(v, PropertyContext::Publish),
            binary(),
        )
            .prop_map(|(dup, qos, retain, topic, id, properties, payload)| {
                let zero = qos == QoS::AtMostOnce;
                Packet::Publish(Publish {
                    dup: dup && !zero,
                    qos,
                    retain,
                    topic,
                    packet_id: if zero { 0 } else { id },
                    properties,
                    payload,
                })
            })
            .boxed(),
        response(ack_codes).prop_map(Packet::PublishAck).boxed(),
        response(ack_codes).prop_map(Packet::PublishReceived).boxed(),
        response(rel_codes).prop_map(Packet::PublishRelease).boxed(),
        response(rel_codes).prop_map(Packet::PublishComplete).boxed(),
        (
            packet_id(),
            prop::collection::vec(
                (topic_filter(), sub_options).prop_map(|(filter, options)| Subscription { filter, options }),
                1..4,
            ),
            properties(v, PropertyContext::Subscribe),
        )
            .prop_map(|(packet_id, subscriptions, properties)| {
                Packet::Subscribe(Subscribe {
                    packet_id,
                    subscriptions,
                    properties,
                })
            })
            .boxed(),
        (
            packet_id(),
            prop::collection::vec(reason(suback_codes), 1..4),
            properties(v, PropertyContext::SubscribeAck),
        )
            .prop_map(|(packet_id, reason_codes, properties)| {
                Packet::SubscribeAck(SubscribeAck {
                    packet_id,
                    reason_codes,
                    properties,
                })
            })
            .boxed(),
        (
            packet_id(),
            prop::collection::vec(topic_filter(), 1..4),
            properties(v, PropertyContext::Unsubscribe),
        )
            .prop_map(|(packet_id, filters, properties)| {
                Packet::Unsubscribe(Unsubscribe {
                    packet_id,
                    filters,
                    properties,
                })
            })
            .boxed(),
        (
            packet_id(),
            prop::collection::vec(reason(&[0x00, 0x11, 0x80, 0x87]), 1..4),
            properties(v, PropertyContext::UnsubscribeAck),
        )
            .prop_map(move |(packet_id, codes, properties)| {
                let reason_codes = if v.is_v5() { codes } else { Vec::new() };
                Packet::UnsubscribeAck(UnsubscribeAck {
                    packet_id,
                    reason_codes,
                    properties,
                })
            })
            .boxed(),
        Just(Packet::PingRequest).boxed(),
        Just(Packet::PingResponse).boxed(),
        (reason(disconnect_codes), properties(v, PropertyContext::Disconnect))
            .prop_map(|(reason_code, properties)| {
                Packet::Disconnect(Disconnect {
                    reason_code,
                    properties,
                })
            })
            .boxed(),
    ];
    if v.is_v5() {
        choices.push(
            (reason(&[0x00, 0x18, 0x19]), properties(v, PropertyContext::Auth))
                .prop_map(|(reason_code, properties)| {
                    Packet::Auth(Auth {
                        reason_code,
                        properties,
                    })
                })
                .boxed(),
        );
    }
    prop::strategy::Union::new(choices).boxed()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn every_packet_round_trips((v, p) in version().prop_flat_map(|v| (Just(v), packet(v)))) {
        let mut buf = BytesMut::new();
        encode(&p, v, &mut buf).unwrap();
        prop_assert_eq!(buf.len(), encoded_len(&p, v));
        let decoded = decode(&mut buf, v, usize::MAX).unwrap();
        prop_assert_eq!(decoded, Some(p));
        prop_assert!(buf.is_empty());
    }

    #[test]
    fn every_connect_round_trips(p in connect()) {
        let mut buf = BytesMut::new();
        encode(&p, ProtocolVersion::V3_1_1, &mut buf).unwrap();
        let decoded = decode(&mut buf, ProtocolVersion::V3_1_1, usize::MAX).unwrap();
        prop_assert_eq!(decoded, Some(p));
    }

    #[test]
    fn arbitrary_bytes_never_panic_or_stall(v in version(), bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        let mut buf = BytesMut::from(&bytes[..]);
        // Each call either makes progress, waits for more, or fails: bounded by the input.
        for _ in 0..=bytes.len() {
            let before = buf.len();
            match decode(&mut buf, v, 1 << 16) {
                Ok(Some(_)) => prop_assert!(buf.len() < before),
                Ok(None) => { prop_assert_eq!(buf.len(), before); break; }
                Err(_) => break,
            }
        }
    }

    #[test]
    fn a_mutated_valid_packet_never_panics((v, p) in version().prop_flat_map(|v| (Just(v), packet(v))), at in any::<prop::sample::Index>(), byte in any::<u8>()) {
        let mut buf = BytesMut::new();
        encode(&p, v, &mut buf).unwrap();
        let i = at.index(buf.len());
        buf[i] = byte;
        let _ = decode(&mut buf, v, usize::MAX);
    }
}
