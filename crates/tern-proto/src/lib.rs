//! Sans-IO codec for MQTT 3.1, 3.1.1 and 5.0.
//!
//! This crate turns bytes into [`Packet`]s and back and knows nothing of sockets, tasks or
//! brokers. One version-neutral [`Packet`] model serves all three protocol versions: fields
//! that exist only in MQTT 5.0 (properties, reason codes on acknowledgements) are simply
//! empty or `Success` under 3.1 and 3.1.1, and are not written on the wire for them.
//!
//! - [`decode`] returns `Ok(None)` until a whole packet is buffered, then splits it off the
//!   buffer; payloads and strings are [`bytes::Bytes`] slices of that buffer, never copied.
//! - [`encode`] appends one packet to a buffer.
//! - [`PublishFrame`] encodes a PUBLISH once so a broker can send the same bytes to many
//!   subscribers, patching only the packet identifier and the DUP flag per receiver.
//!
//! Every violation of the specifications found while decoding is a [`DecodeError`] whose
//! message starts with the conformance statement it breaks (MQTT 5.0 numbering, e.g.
//! `[MQTT-3.3.2-2]`) and which carries the MQTT 5.0 [`ReasonCode`] the peer should receive
//! before the connection is closed.

mod bytestr;
mod decode;
mod encode;
mod error;
mod frame;
mod packet;
mod properties;
mod reason;
pub mod topic;
mod wire;

pub use bytestr::ByteStr;
pub use decode::decode;
pub use encode::{encode, encoded_len};
pub use error::{DecodeError, EncodeError};
pub use frame::PublishFrame;
pub use packet::{
    Auth, Connect, ConnectAck, Disconnect, Packet, PacketType, Publish, PublishResponse, RetainHandling, Subscribe,
    SubscribeAck, Subscription, SubscriptionOptions, Unsubscribe, UnsubscribeAck, Will,
};
pub use properties::{Properties, Property, PropertyContext, PropertyId};
pub use reason::ReasonCode;

/// The largest value a Variable Byte Integer can carry (268,435,455): the bound of the
/// Remaining Length and so of every packet.
pub const MAX_VARIABLE_BYTE_INTEGER: u32 = 268_435_455;

/// The protocol version a connection speaks, fixed by its CONNECT packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ProtocolVersion {
    /// MQTT 3.1: protocol name `MQIsdp`, level 3.
    V3_1,
    /// MQTT 3.1.1: protocol name `MQTT`, level 4.
    V3_1_1,
    /// MQTT 5.0: protocol name `MQTT`, level 5.
    V5,
}

impl ProtocolVersion {
    /// The protocol level byte sent in CONNECT.
    pub fn level(self) -> u8 {
        match self {
            ProtocolVersion::V3_1 => 3,
            ProtocolVersion::V3_1_1 => 4,
            ProtocolVersion::V5 => 5,
        }
    }

    /// The protocol name sent in CONNECT.
    pub fn protocol_name(self) -> &'static str {
        match self {
            ProtocolVersion::V3_1 => "MQIsdp",
            ProtocolVersion::V3_1_1 | ProtocolVersion::V5 => "MQTT",
        }
    }

    /// Whether packets of this version carry properties and reason codes.
    pub fn is_v5(self) -> bool {
        self == ProtocolVersion::V5
    }
}

impl std::fmt::Display for ProtocolVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ProtocolVersion::V3_1 => "3.1",
            ProtocolVersion::V3_1_1 => "3.1.1",
            ProtocolVersion::V5 => "5.0",
        })
    }
}

/// Quality of service of a message or a subscription.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub enum QoS {
    /// QoS 0: at most once, no acknowledgement.
    #[default]
    AtMostOnce = 0,
    /// QoS 1: at least once, PUBACK.
    AtLeastOnce = 1,
    /// QoS 2: exactly once, PUBREC / PUBREL / PUBCOMP.
    ExactlyOnce = 2,
}

impl QoS {
    /// The QoS for the two-bit value `bits`, or `None` for the forbidden value 3.
    pub fn from_u8(bits: u8) -> Option<QoS> {
        match bits {
            0 => Some(QoS::AtMostOnce),
            1 => Some(QoS::AtLeastOnce),
            2 => Some(QoS::ExactlyOnce),
            _ => None,
        }
    }
}
