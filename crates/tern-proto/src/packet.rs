//! The version-neutral packet model.
//!
//! One struct per MQTT control packet, shared by 3.1, 3.1.1 and 5.0. Fields that only MQTT
//! 5.0 puts on the wire (properties, reason codes of acknowledgements, subscription options
//! beyond QoS) are left empty or at their defaults for the older versions, and the encoder
//! leaves them out when it writes those versions.

use crate::{ByteStr, Properties, ProtocolVersion, QoS, ReasonCode};
use bytes::Bytes;
use std::fmt;

/// The type of a control packet: the high nibble of its first byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PacketType {
    Connect = 1,
    ConnectAck = 2,
    Publish = 3,
    PublishAck = 4,
    PublishReceived = 5,
    PublishRelease = 6,
    PublishComplete = 7,
    Subscribe = 8,
    SubscribeAck = 9,
    Unsubscribe = 10,
    UnsubscribeAck = 11,
    PingRequest = 12,
    PingResponse = 13,
    Disconnect = 14,
    Auth = 15,
}

impl PacketType {
    /// The packet type for the high nibble `value`, or `None` for the reserved value 0.
    pub fn from_nibble(value: u8) -> Option<PacketType> {
        use PacketType::*;
        Some(match value {
            1 => Connect,
            2 => ConnectAck,
            3 => Publish,
            4 => PublishAck,
            5 => PublishReceived,
            6 => PublishRelease,
            7 => PublishComplete,
            8 => Subscribe,
            9 => SubscribeAck,
            10 => Unsubscribe,
            11 => UnsubscribeAck,
            12 => PingRequest,
            13 => PingResponse,
            14 => Disconnect,
            15 => Auth,
            _ => return None,
        })
    }

    /// The flags the specification requires in the low nibble of the first byte (PUBLISH
    /// excepted, whose flags carry DUP, QoS and RETAIN).
    pub fn required_flags(self) -> u8 {
        match self {
            PacketType::PublishRelease | PacketType::Subscribe | PacketType::Unsubscribe => 0b0010,
            _ => 0,
        }
    }

    /// The specification's upper-case name, as in "PUBACK".
    pub fn name(self) -> &'static str {
        use PacketType::*;
        match self {
            Connect => "CONNECT",
            ConnectAck => "CONNACK",
            Publish => "PUBLISH",
            PublishAck => "PUBACK",
            PublishReceived => "PUBREC",
            PublishRelease => "PUBREL",
            PublishComplete => "PUBCOMP",
            Subscribe => "SUBSCRIBE",
            SubscribeAck => "SUBACK",
            Unsubscribe => "UNSUBSCRIBE",
            UnsubscribeAck => "UNSUBACK",
            PingRequest => "PINGREQ",
            PingResponse => "PINGRESP",
            Disconnect => "DISCONNECT",
            Auth => "AUTH",
        }
    }
}

impl fmt::Display for PacketType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An MQTT control packet of any version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Packet {
    Connect(Box<Connect>),
    ConnectAck(ConnectAck),
    Publish(Publish),
    PublishAck(PublishResponse),
    PublishReceived(PublishResponse),
    PublishRelease(PublishResponse),
    PublishComplete(PublishResponse),
    Subscribe(Subscribe),
    SubscribeAck(SubscribeAck),
    Unsubscribe(Unsubscribe),
    UnsubscribeAck(UnsubscribeAck),
    PingRequest,
    PingResponse,
    Disconnect(Disconnect),
    Auth(Auth),
}

impl Packet {
    /// The type of this packet.
    pub fn packet_type(&self) -> PacketType {
        match self {
            Packet::Connect(_) => PacketType::Connect,
            Packet::ConnectAck(_) => PacketType::ConnectAck,
            Packet::Publish(_) => PacketType::Publish,
            Packet::PublishAck(_) => PacketType::PublishAck,
            Packet::PublishReceived(_) => PacketType::PublishReceived,
            Packet::PublishRelease(_) => PacketType::PublishRelease,
            Packet::PublishComplete(_) => PacketType::PublishComplete,
            Packet::Subscribe(_) => PacketType::Subscribe,
            Packet::SubscribeAck(_) => PacketType::SubscribeAck,
            Packet::Unsubscribe(_) => PacketType::Unsubscribe,
            Packet::UnsubscribeAck(_) => PacketType::UnsubscribeAck,
            Packet::PingRequest => PacketType::PingRequest,
            Packet::PingResponse => PacketType::PingResponse,
            Packet::Disconnect(_) => PacketType::Disconnect,
            Packet::Auth(_) => PacketType::Auth,
        }
    }
}

/// CONNECT: the first packet a client sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connect {
    /// The version named by the protocol name and level; every later packet on the
    /// connection is decoded and encoded with it.
    pub protocol_version: ProtocolVersion,
    /// Clean Session (3.1, 3.1.1) or Clean Start (5.0).
    pub clean_start: bool,
    /// Keep Alive in seconds; 0 turns the mechanism off.
    pub keep_alive: u16,
    /// The Client Identifier; may be empty, the broker decides what that means.
    pub client_id: ByteStr,
    /// The Will Message, present when the Will Flag is set.
    pub will: Option<Will>,
    pub username: Option<ByteStr>,
    pub password: Option<Bytes>,
    /// CONNECT properties (5.0 only).
    pub properties: Properties,
}

impl Connect {
    /// A CONNECT without will, credentials or properties.
    pub fn new(protocol_version: ProtocolVersion, client_id: ByteStr, clean_start: bool, keep_alive: u16) -> Connect {
        Connect {
            protocol_version,
            clean_start,
            keep_alive,
            client_id,
            will: None,
            username: None,
            password: None,
            properties: Properties::default(),
        }
    }
}

/// The Will Message of a CONNECT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Will {
    pub topic: ByteStr,
    pub payload: Bytes,
    pub qos: QoS,
    pub retain: bool,
    /// Will properties (5.0 only), e.g. the Will Delay Interval.
    pub properties: Properties,
}

/// CONNACK.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectAck {
    pub session_present: bool,
    /// The 5.0 reason code; under 3.1 / 3.1.1 it is mapped to and from the return code.
    pub reason_code: ReasonCode,
    pub properties: Properties,
}

/// PUBLISH.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Publish {
    pub dup: bool,
    pub qos: QoS,
    pub retain: bool,
    /// The Topic Name; empty only in 5.0 when a Topic Alias stands in for it.
    pub topic: ByteStr,
    /// The Packet Identifier; 0 for QoS 0, which carries none.
    pub packet_id: u16,
    pub properties: Properties,
    /// The Application Message, a slice of the received buffer.
    pub payload: Bytes,
}

/// PUBACK, PUBREC, PUBREL and PUBCOMP, which share one shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishResponse {
    pub packet_id: u16,
    /// The 5.0 reason code; always `Success` under 3.1 / 3.1.1.
    pub reason_code: ReasonCode,
    pub properties: Properties,
}

impl PublishResponse {
    /// A successful response without properties, the only kind 3.1.1 knows.
    pub fn new(packet_id: u16) -> PublishResponse {
        PublishResponse {
            packet_id,
            reason_code: ReasonCode::SUCCESS,
            properties: Properties::default(),
        }
    }
}

/// How retained messages are sent when a subscription is made (5.0).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum RetainHandling {
    /// 0: send retained messages at the time of the subscribe.
    #[default]
    SendAtSubscribe = 0,
    /// 1: send them only if the subscription did not already exist.
    SendAtNewSubscribe = 1,
    /// 2: do not send them.
    DoNotSend = 2,
}

/// The options byte of one subscription.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct SubscriptionOptions {
    /// Maximum QoS the client wants for messages of this subscription.
    pub qos: QoS,
    /// 5.0: do not forward messages the client itself published.
    pub no_local: bool,
    /// 5.0: keep the RETAIN flag of forwarded messages as published.
    pub retain_as_published: bool,
    /// 5.0: whether retained messages are sent on subscribe.
    pub retain_handling: RetainHandling,
}

/// One topic filter of a SUBSCRIBE with its options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription {
    pub filter: ByteStr,
    pub options: SubscriptionOptions,
}

/// SUBSCRIBE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscribe {
    pub packet_id: u16,
    /// At least one subscription.
    pub subscriptions: Vec<Subscription>,
    pub properties: Properties,
}

/// SUBACK.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscribeAck {
    pub packet_id: u16,
    /// One per subscription of the SUBSCRIBE: the granted QoS (0x00..0x02) or a failure.
    pub reason_codes: Vec<ReasonCode>,
    pub properties: Properties,
}

/// UNSUBSCRIBE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsubscribe {
    pub packet_id: u16,
    /// At least one topic filter.
    pub filters: Vec<ByteStr>,
    pub properties: Properties,
}

/// UNSUBACK.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnsubscribeAck {
    pub packet_id: u16,
    /// One per filter of the UNSUBSCRIBE (5.0); empty under 3.1 / 3.1.1, which carry none.
    pub reason_codes: Vec<ReasonCode>,
    pub properties: Properties,
}

/// DISCONNECT.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Disconnect {
    /// The 5.0 reason code; `Success` (normal disconnection) under 3.1 / 3.1.1.
    pub reason_code: ReasonCode,
    pub properties: Properties,
}

/// AUTH (5.0 only): a step of enhanced authentication.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Auth {
    pub reason_code: ReasonCode,
    pub properties: Properties,
}
