//! Errors of decoding and encoding.
//!
//! Each decode error names the conformance statement it breaks (MQTT 5.0 numbering; 3.1.1
//! states the same rules under nearby numbers) and maps to the MQTT 5.0 reason code the peer
//! must receive before the connection is closed, so a broker can answer
//! `DISCONNECT(error.reason_code())` and log `error` with no table of its own.

use crate::{PacketType, PropertyId, ReasonCode};
use thiserror::Error;

/// A packet that breaks the specification, or that is larger than the receiver accepts.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DecodeError {
    #[error("[MQTT-1.5.5-1] variable byte integer longer than four bytes")]
    VariableIntegerTooLong,
    #[error("[MQTT-1.5.5-1] variable byte integer not encoded in the minimum number of bytes")]
    VariableIntegerNotMinimal,
    #[error("[MQTT-2.1.3-1] reserved control packet type {0}")]
    ReservedPacketType(u8),
    #[error("[MQTT-2.1.3-1] fixed header flags {flags:#06b} are not the ones {packet} requires")]
    InvalidHeaderFlags { packet: PacketType, flags: u8 },
    #[error("[MQTT-3.1.2-24] packet of {size} bytes exceeds the maximum packet size of {max} bytes")]
    PacketTooLarge { size: usize, max: usize },
    #[error("malformed {packet}: remaining length ends inside a field")]
    Truncated { packet: PacketType },
    #[error("malformed {packet}: {extra} bytes after the last field")]
    TrailingBytes { packet: PacketType, extra: usize },
    #[error("[MQTT-1.5.4-1] string in {packet} is not well-formed UTF-8")]
    InvalidUtf8 { packet: PacketType },
    #[error("[MQTT-1.5.4-2] string in {packet} contains the null character U+0000")]
    NullCharacter { packet: PacketType },
    #[error("[MQTT-3.1.2-1] protocol name {0:?} is neither MQTT nor MQIsdp")]
    InvalidProtocolName(String),
    #[error("[MQTT-3.1.2-2] protocol level {level} with protocol name {name:?} is not supported")]
    UnsupportedProtocolVersion { name: String, level: u8 },
    #[error("[MQTT-3.1.2-3] reserved flag of CONNECT is set")]
    ConnectReservedFlag,
    #[error("[MQTT-3.1.2-11] Will QoS is not 0 although the Will Flag is 0")]
    WillQoSWithoutWill,
    #[error("[MQTT-3.1.2-12] Will QoS is 3")]
    InvalidWillQoS,
    #[error("[MQTT-3.1.2-13] Will Retain is set although the Will Flag is 0")]
    WillRetainWithoutWill,
    #[error("[MQTT-3.1.2-22] Password Flag is set without the User Name Flag")]
    PasswordWithoutUsername,
    #[error("[MQTT-3.2.2-1] reserved CONNACK acknowledge flags {0:#04x} are set")]
    ConnectAckReservedFlags(u8),
    #[error("[MQTT-3.3.1-4] PUBLISH with QoS 3")]
    InvalidPublishQoS,
    #[error("[MQTT-3.3.1-2] DUP flag set on a QoS 0 PUBLISH")]
    DupOnQoS0,
    #[error("[MQTT-2.2.1-3] {packet} with Packet Identifier 0")]
    ZeroPacketId { packet: PacketType },
    #[error("[MQTT-3.3.2-2] topic name {0:?} contains a wildcard character")]
    WildcardInTopicName(String),
    #[error("[MQTT-4.7.3-1] topic name is empty and no Topic Alias stands in for it")]
    EmptyTopicName,
    #[error("[MQTT-4.7.1-1] topic filter {filter:?} is invalid: {reason}")]
    InvalidTopicFilter { filter: String, reason: &'static str },
    #[error("[MQTT-3.8.3-2] SUBSCRIBE carries no topic filter")]
    EmptySubscribe,
    #[error("[MQTT-3.10.3-2] UNSUBSCRIBE carries no topic filter")]
    EmptyUnsubscribe,
    #[error("malformed {packet}: it carries no reason code")]
    NoReasonCodes { packet: PacketType },
    #[error("[MQTT-3.8.3-5] reserved bits of subscription options {0:#04x} are set")]
    SubscriptionOptionsReserved(u8),
    #[error("[MQTT-3.8.3-5] subscription requests QoS 3")]
    InvalidSubscriptionQoS,
    #[error("retain handling 3 in subscription options is a Protocol Error")]
    InvalidRetainHandling,
    #[error("reason code {code:#04x} is not defined for {packet}")]
    InvalidReasonCode { packet: PacketType, code: u8 },
    #[error("[MQTT-2.2.2] unknown property identifier {0:#04x}")]
    UnknownProperty(u32),
    #[error("[MQTT-2.2.2] property {property:?} is not allowed in {context}")]
    PropertyNotAllowed {
        property: PropertyId,
        context: &'static str,
    },
    #[error("property {0:?} appears more than once")]
    DuplicateProperty(PropertyId),
    #[error("property {property:?} has the invalid value {value}")]
    InvalidPropertyValue { property: PropertyId, value: u32 },
    #[error("[MQTT-3.3.2-8] Topic Alias 0 is not allowed")]
    TopicAliasZero,
    #[error("AUTH is an MQTT 5.0 packet and this connection speaks an earlier version")]
    AuthBeforeV5,
}

impl DecodeError {
    /// The MQTT 5.0 reason code the peer should be sent (in DISCONNECT, or in CONNACK when
    /// the error is in the CONNECT packet) before the connection is closed.
    pub fn reason_code(&self) -> ReasonCode {
        use DecodeError::*;
        match self {
            PacketTooLarge { .. } => ReasonCode::PACKET_TOO_LARGE,
            UnsupportedProtocolVersion { .. } | InvalidProtocolName(_) => ReasonCode::UNSUPPORTED_PROTOCOL_VERSION,
            WildcardInTopicName(_) | EmptyTopicName => ReasonCode::TOPIC_NAME_INVALID,
            InvalidTopicFilter { .. } => ReasonCode::TOPIC_FILTER_INVALID,
            TopicAliasZero => ReasonCode::TOPIC_ALIAS_INVALID,
            ZeroPacketId { .. }
            | EmptySubscribe
            | EmptyUnsubscribe
            | DuplicateProperty(_)
            | InvalidPropertyValue { .. }
            | InvalidRetainHandling
            | AuthBeforeV5 => ReasonCode::PROTOCOL_ERROR,
            _ => ReasonCode::MALFORMED_PACKET,
        }
    }
}

/// A packet that cannot be put on the wire.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum EncodeError {
    #[error("a string or binary field of {0} bytes exceeds the 65,535-byte limit")]
    FieldTooLong(usize),
    #[error("{packet} of {size} bytes exceeds the 268,435,455-byte limit of the remaining length")]
    PacketTooLarge { packet: PacketType, size: usize },
    #[error("{packet} cannot be sent with MQTT {version}")]
    NotInVersion {
        packet: PacketType,
        version: crate::ProtocolVersion,
    },
}
