#![allow(clippy::unwrap_used)]
//! Malformed and forbidden input: each case is refused with the error naming the rule it
//! breaks and the reason code the peer must be sent.

use bytes::BytesMut;
use tern_proto::*;

const V311: ProtocolVersion = ProtocolVersion::V3_1_1;
const V5: ProtocolVersion = ProtocolVersion::V5;

fn error(version: ProtocolVersion, wire: &[u8]) -> DecodeError {
    let mut buf = BytesMut::from(wire);
    match decode(&mut buf, version, 1 << 20) {
        Err(e) => e,
        Ok(p) => panic!("{wire:02x?} decoded as {p:?}"),
    }
}

fn assert_rule(version: ProtocolVersion, wire: &[u8], statement: &str, reason: ReasonCode) {
    let e = error(version, wire);
    assert!(
        e.to_string().contains(statement),
        "{wire:02x?}: {e} should cite {statement}"
    );
    assert_eq!(e.reason_code(), reason, "{wire:02x?}: {e}");
}

#[test]
fn reserved_packet_type_0() {
    assert_rule(V311, b"\x00\x00", "[MQTT-2.1.3-1]", ReasonCode::MALFORMED_PACKET);
}

#[test]
fn auth_under_3_1_1() {
    assert_eq!(error(V311, b"\xf0\x00"), DecodeError::AuthBeforeV5);
}

#[test]
fn wrong_fixed_header_flags() {
    for wire in [
        &b"\x63\x02\x00\x01"[..],
        b"\x80\x06\x00\x01\x00\x01a\x00",
        b"\xa0\x05\x00\x01\x00\x01a",
        b"\xc1\x00",
        b"\x41\x02\x00\x01",
        b"\xe8\x00",
    ] {
        assert_rule(V311, wire, "[MQTT-2.1.3-1]", ReasonCode::MALFORMED_PACKET);
    }
}

#[test]
fn a_remaining_length_of_five_bytes() {
    assert_rule(
        V311,
        b"\x30\xff\xff\xff\xff\x01",
        "[MQTT-1.5.5-1]",
        ReasonCode::MALFORMED_PACKET,
    );
}

#[test]
fn a_forged_length_beyond_the_maximum_is_refused_before_buffering() {
    let mut buf = BytesMut::from(&b"\x30\xff\xff\xff\x7f"[..]);
    let e = decode(&mut buf, V311, 1024).unwrap_err();
    assert_eq!(
        e,
        DecodeError::PacketTooLarge {
            size: 268_435_460,
            max: 1024
        }
    );
    assert_eq!(e.reason_code(), ReasonCode::PACKET_TOO_LARGE);
    assert!(buf.capacity() < 1024, "no allocation for the forged length");
}

#[test]
fn publish_with_qos_3() {
    assert_rule(
        V311,
        b"\x36\x05\x00\x01a\x00\x01",
        "[MQTT-3.3.1-4]",
        ReasonCode::MALFORMED_PACKET,
    );
}

#[test]
fn publish_qos_0_with_dup() {
    assert_rule(
        V311,
        b"\x38\x03\x00\x01a",
        "[MQTT-3.3.1-2]",
        ReasonCode::MALFORMED_PACKET,
    );
}

#[test]
fn wildcards_in_a_topic_name() {
    assert_rule(
        V311,
        b"\x30\x05\x00\x03a/+",
        "[MQTT-3.3.2-2]",
        ReasonCode::TOPIC_NAME_INVALID,
    );
    assert_rule(
        V5,
        b"\x30\x06\x00\x03a/#\x00",
        "[MQTT-3.3.2-2]",
        ReasonCode::TOPIC_NAME_INVALID,
    );
}

#[test]
fn an_empty_topic_name_without_alias() {
    assert_rule(
        V311,
        b"\x30\x02\x00\x00",
        "[MQTT-4.7.3-1]",
        ReasonCode::TOPIC_NAME_INVALID,
    );
    assert_rule(
        V5,
        b"\x30\x03\x00\x00\x00",
        "[MQTT-4.7.3-1]",
        ReasonCode::TOPIC_NAME_INVALID,
    );
}

#[test]
fn packet_identifier_zero() {
    assert_rule(
        V311,
        b"\x32\x05\x00\x01a\x00\x00",
        "[MQTT-2.2.1-3]",
        ReasonCode::PROTOCOL_ERROR,
    );
    assert_rule(
        V311,
        b"\x82\x06\x00\x00\x00\x01a\x00",
        "[MQTT-2.2.1-3]",
        ReasonCode::PROTOCOL_ERROR,
    );
    assert_rule(V311, b"\x40\x02\x00\x00", "[MQTT-2.2.1-3]", ReasonCode::PROTOCOL_ERROR);
}

#[test]
fn invalid_utf8_and_null_characters() {
    assert_rule(
        V311,
        b"\x30\x04\x00\x02\xc3\x28",
        "[MQTT-1.5.4-1]",
        ReasonCode::MALFORMED_PACKET,
    );
    assert_rule(
        V311,
        b"\x30\x05\x00\x03\xed\xa0\x80",
        "[MQTT-1.5.4-1]",
        ReasonCode::MALFORMED_PACKET,
    );
    assert_rule(
        V311,
        b"\x30\x05\x00\x03a\x00b",
        "[MQTT-1.5.4-2]",
        ReasonCode::MALFORMED_PACKET,
    );
}

#[test]
fn a_string_longer_than_the_packet() {
    let e = error(V311, b"\x30\x04\x00\x09ab");
    assert!(
        matches!(
            e,
            DecodeError::Truncated {
                packet: PacketType::Publish
            }
        ),
        "{e}"
    );
}

#[test]
fn bytes_after_the_last_field() {
    let e = error(V311, b"\x40\x03\x00\x01\x00");
    assert_eq!(
        e,
        DecodeError::TrailingBytes {
            packet: PacketType::PublishAck,
            extra: 1
        }
    );
    let e = error(V311, b"\xc0\x01\x00");
    assert_eq!(
        e,
        DecodeError::TrailingBytes {
            packet: PacketType::PingRequest,
            extra: 1
        }
    );
}

#[test]
fn connect_with_an_unknown_protocol_name() {
    assert_rule(
        V311,
        b"\x10\x0c\x00\x04MQTX\x04\x02\x00\x3c\x00\x00",
        "[MQTT-3.1.2-1]",
        ReasonCode::UNSUPPORTED_PROTOCOL_VERSION,
    );
}

#[test]
fn connect_with_an_unsupported_level() {
    let e = error(V311, b"\x10\x0c\x00\x04MQTT\x06\x02\x00\x3c\x00\x00");
    assert_eq!(
        e,
        DecodeError::UnsupportedProtocolVersion {
            name: "MQTT".into(),
            level: 6
        }
    );
    assert_eq!(e.reason_code(), ReasonCode::UNSUPPORTED_PROTOCOL_VERSION);
}

#[test]
fn connect_flag_rules() {
    assert_rule(
        V311,
        b"\x10\x0c\x00\x04MQTT\x04\x03\x00\x3c\x00\x00",
        "[MQTT-3.1.2-3]",
        ReasonCode::MALFORMED_PACKET,
    );
    assert_rule(
        V311,
        b"\x10\x0c\x00\x04MQTT\x04\x0a\x00\x3c\x00\x00",
        "[MQTT-3.1.2-11]",
        ReasonCode::MALFORMED_PACKET,
    );
    assert_rule(
        V311,
        b"\x10\x0c\x00\x04MQTT\x04\x1e\x00\x3c\x00\x00",
        "[MQTT-3.1.2-12]",
        ReasonCode::MALFORMED_PACKET,
    );
    assert_rule(
        V311,
        b"\x10\x0c\x00\x04MQTT\x04\x22\x00\x3c\x00\x00",
        "[MQTT-3.1.2-13]",
        ReasonCode::MALFORMED_PACKET,
    );
    assert_rule(
        V311,
        b"\x10\x0f\x00\x04MQTT\x04\x42\x00\x3c\x00\x00\x00\x01p",
        "[MQTT-3.1.2-22]",
        ReasonCode::MALFORMED_PACKET,
    );
}

#[test]
fn a_will_topic_with_a_wildcard() {
    assert_rule(
        V311,
        b"\x10\x11\x00\x04MQTT\x04\x06\x00\x3c\x00\x00\x00\x01#\x00\x00",
        "[MQTT-3.3.2-2]",
        ReasonCode::TOPIC_NAME_INVALID,
    );
}

#[test]
fn subscribe_without_filters() {
    assert_rule(V311, b"\x82\x02\x00\x01", "[MQTT-3.8.3-2]", ReasonCode::PROTOCOL_ERROR);
    assert_rule(V311, b"\xa2\x02\x00\x01", "[MQTT-3.10.3-2]", ReasonCode::PROTOCOL_ERROR);
}

#[test]
fn subscribe_with_reserved_option_bits() {
    assert_rule(
        V311,
        b"\x82\x06\x00\x01\x00\x01a\x04",
        "[MQTT-3.8.3-5]",
        ReasonCode::MALFORMED_PACKET,
    );
    assert_rule(
        V5,
        b"\x82\x07\x00\x01\x00\x00\x01a\x40",
        "[MQTT-3.8.3-5]",
        ReasonCode::MALFORMED_PACKET,
    );
    assert_rule(
        V311,
        b"\x82\x06\x00\x01\x00\x01a\x03",
        "[MQTT-3.8.3-5]",
        ReasonCode::MALFORMED_PACKET,
    );
    assert_eq!(
        error(V5, b"\x82\x07\x00\x01\x00\x00\x01a\x30"),
        DecodeError::InvalidRetainHandling
    );
}

#[test]
fn invalid_topic_filters() {
    for filter in [&b"a/b#"[..], b"a/#/b", b"a+", b""] {
        let mut wire = vec![0x82, (5 + filter.len()) as u8, 0, 1, 0, filter.len() as u8];
        wire.extend_from_slice(filter);
        wire.push(0);
        assert_rule(V311, &wire, "[MQTT-4.7.1-1]", ReasonCode::TOPIC_FILTER_INVALID);
    }
}

#[test]
fn reason_codes_outside_their_packet() {
    assert!(matches!(
        error(V5, b"\x40\x03\x00\x01\x8e"),
        DecodeError::InvalidReasonCode { .. }
    ));
    assert!(matches!(
        error(V5, b"\xe0\x01\x10"),
        DecodeError::InvalidReasonCode { .. }
    ));
    assert!(matches!(
        error(V311, b"\x20\x02\x00\x06"),
        DecodeError::InvalidReasonCode { .. }
    ));
    assert!(matches!(
        error(V311, b"\x90\x03\x00\x01\x03"),
        DecodeError::InvalidReasonCode { .. }
    ));
}

#[test]
fn connack_reserved_flags() {
    assert_rule(
        V311,
        b"\x20\x02\x02\x00",
        "[MQTT-3.2.2-1]",
        ReasonCode::MALFORMED_PACKET,
    );
}

#[test]
fn properties_in_the_wrong_packet_or_twice() {
    // PUBLISH with Session Expiry Interval.
    assert_rule(
        V5,
        b"\x30\x09\x00\x01a\x05\x11\x00\x00\x00\x01",
        "[MQTT-2.2.2]",
        ReasonCode::MALFORMED_PACKET,
    );
    // CONNECT with two Receive Maximum properties.
    let e = error(
        V5,
        b"\x10\x13\x00\x04MQTT\x05\x02\x00\x3c\x06\x21\x00\x01\x21\x00\x02\x00\x00",
    );
    assert_eq!(e, DecodeError::DuplicateProperty(PropertyId::ReceiveMaximum));
    assert_eq!(e.reason_code(), ReasonCode::PROTOCOL_ERROR);
}

#[test]
fn topic_alias_zero() {
    assert_rule(
        V5,
        b"\x30\x08\x00\x01a\x03\x23\x00\x00x",
        "[MQTT-3.3.2-8]",
        ReasonCode::TOPIC_ALIAS_INVALID,
    );
}
