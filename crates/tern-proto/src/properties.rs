//! MQTT 5.0 properties: all 27 identifiers, their data types, the packets each may appear
//! in, and their decoding with the specification's checks.
//!
//! [`Properties`] keeps the properties in wire order in a `Vec`, which costs nothing when a
//! packet has none (the common case, and always under 3.1.1) and keeps a PUBLISH small on
//! the hot path. Typed accessors (`properties.session_expiry_interval()`) scan the short
//! list.

use crate::wire::{put_binary, put_variable_integer, variable_integer_len, Reader};
use crate::{ByteStr, DecodeError, EncodeError, MAX_VARIABLE_BYTE_INTEGER};
use bytes::{BufMut, Bytes, BytesMut};

/// Where a property block stands, which decides the properties it may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PropertyContext {
    Connect,
    Will,
    ConnectAck,
    Publish,
    /// PUBACK, PUBREC, PUBREL, PUBCOMP.
    PublishResponse,
    Subscribe,
    SubscribeAck,
    Unsubscribe,
    UnsubscribeAck,
    Disconnect,
    Auth,
}

impl PropertyContext {
    fn bit(self) -> u16 {
        1 << (self as u16)
    }

    fn name(self) -> &'static str {
        use PropertyContext::*;
        match self {
            Connect => "CONNECT",
            Will => "the Will properties",
            ConnectAck => "CONNACK",
            Publish => "PUBLISH",
            PublishResponse => "PUBACK/PUBREC/PUBREL/PUBCOMP",
            Subscribe => "SUBSCRIBE",
            SubscribeAck => "SUBACK",
            Unsubscribe => "UNSUBSCRIBE",
            UnsubscribeAck => "UNSUBACK",
            Disconnect => "DISCONNECT",
            Auth => "AUTH",
        }
    }
}

/// The data type of a property's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ValueType {
    Byte,
    TwoByteInteger,
    FourByteInteger,
    VariableByteInteger,
    String,
    Binary,
    StringPair,
}

macro_rules! property_table {
    ($($name:ident = $id:literal, $ty:ident, $value:ty, [$($ctx:ident),*];)*) => {
        /// A property identifier.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum PropertyId { $($name = $id,)* }

        impl PropertyId {
            /// The property for the identifier `id`, if MQTT 5.0 defines one.
            pub fn from_u32(id: u32) -> Option<PropertyId> {
                match id { $($id => Some(PropertyId::$name),)* _ => None }
            }

            fn value_type(self) -> ValueType {
                match self { $(PropertyId::$name => ValueType::$ty,)* }
            }

            fn contexts(self) -> u16 {
                match self { $(PropertyId::$name => 0 $(| PropertyContext::$ctx.bit())*,)* }
            }
        }

        /// One property with its value.
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub enum Property { $($name($value),)* }

        impl Property {
            /// The identifier of this property.
            pub fn id(&self) -> PropertyId {
                match self { $(Property::$name(..) => PropertyId::$name,)* }
            }
        }
    };
}

property_table! {
    PayloadFormatIndicator = 0x01, Byte, u8, [Publish, Will];
    MessageExpiryInterval = 0x02, FourByteInteger, u32, [Publish, Will];
    ContentType = 0x03, String, ByteStr, [Publish, Will];
    ResponseTopic = 0x08, String, ByteStr, [Publish, Will];
    CorrelationData = 0x09, Binary, Bytes, [Publish, Will];
    SubscriptionIdentifier = 0x0B, VariableByteInteger, u32, [Publish, Subscribe];
    SessionExpiryInterval = 0x11, FourByteInteger, u32, [Connect, ConnectAck, Disconnect];
    AssignedClientIdentifier = 0x12, String, ByteStr, [ConnectAck];
    ServerKeepAlive = 0x13, TwoByteInteger, u16, [ConnectAck];
    AuthenticationMethod = 0x15, String, ByteStr, [Connect, ConnectAck, Auth];
    AuthenticationData = 0x16, Binary, Bytes, [Connect, ConnectAck, Auth];
    RequestProblemInformation = 0x17, Byte, u8, [Connect];
    WillDelayInterval = 0x18, FourByteInteger, u32, [Will];
    RequestResponseInformation = 0x19, Byte, u8, [Connect];
    ResponseInformation = 0x1A, String, ByteStr, [ConnectAck];
    ServerReference = 0x1C, String, ByteStr, [ConnectAck, Disconnect];
    ReasonString = 0x1F, String, ByteStr,
        [ConnectAck, PublishResponse, SubscribeAck, UnsubscribeAck, Disconnect, Auth];
    ReceiveMaximum = 0x21, TwoByteInteger, u16, [Connect, ConnectAck];
    TopicAliasMaximum = 0x22, TwoByteInteger, u16, [Connect, ConnectAck];
    TopicAlias = 0x23, TwoByteInteger, u16, [Publish];
    MaximumQoS = 0x24, Byte, u8, [ConnectAck];
    RetainAvailable = 0x25, Byte, u8, [ConnectAck];
    UserProperty = 0x26, StringPair, (ByteStr, ByteStr),
        [Connect, Will, ConnectAck, Publish, PublishResponse, Subscribe, SubscribeAck,
         Unsubscribe, UnsubscribeAck, Disconnect, Auth];
    MaximumPacketSize = 0x27, FourByteInteger, u32, [Connect, ConnectAck];
    WildcardSubscriptionAvailable = 0x28, Byte, u8, [ConnectAck];
    SubscriptionIdentifierAvailable = 0x29, Byte, u8, [ConnectAck];
    SharedSubscriptionAvailable = 0x2A, Byte, u8, [ConnectAck];
}

impl PropertyId {
    /// Whether MQTT 5.0 allows this property in `context`.
    pub fn is_allowed_in(self, context: PropertyContext) -> bool {
        self.contexts() & context.bit() != 0
    }

    /// Whether the property may appear more than once in `context`.
    fn is_repeatable_in(self, context: PropertyContext) -> bool {
        self == PropertyId::UserProperty
            || (self == PropertyId::SubscriptionIdentifier && context == PropertyContext::Publish)
    }
}

/// The properties of one packet (or of a Will), in the order they were received or will
/// be sent.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Properties(pub Vec<Property>);

macro_rules! accessors {
    ($($method:ident -> $ty:ty = $name:ident;)*) => {
        impl Properties {
            $(
                #[doc = concat!("The `", stringify!($name), "` property, if present.")]
                pub fn $method(&self) -> Option<$ty> {
                    self.0.iter().find_map(|p| match p {
                        Property::$name(value) => Some(value.clone()),
                        _ => None,
                    })
                }
            )*
        }
    };
}

accessors! {
    payload_format_indicator -> u8 = PayloadFormatIndicator;
    message_expiry_interval -> u32 = MessageExpiryInterval;
    content_type -> ByteStr = ContentType;
    response_topic -> ByteStr = ResponseTopic;
    correlation_data -> Bytes = CorrelationData;
    session_expiry_interval -> u32 = SessionExpiryInterval;
    assigned_client_identifier -> ByteStr = AssignedClientIdentifier;
    server_keep_alive -> u16 = ServerKeepAlive;
    authentication_method -> ByteStr = AuthenticationMethod;
    authentication_data -> Bytes = AuthenticationData;
    request_problem_information -> u8 = RequestProblemInformation;
    will_delay_interval -> u32 = WillDelayInterval;
    request_response_information -> u8 = RequestResponseInformation;
    response_information -> ByteStr = ResponseInformation;
    server_reference -> ByteStr = ServerReference;
    reason_string -> ByteStr = ReasonString;
    receive_maximum -> u16 = ReceiveMaximum;
    topic_alias_maximum -> u16 = TopicAliasMaximum;
    topic_alias -> u16 = TopicAlias;
    maximum_qos -> u8 = MaximumQoS;
    retain_available -> u8 = RetainAvailable;
    maximum_packet_size -> u32 = MaximumPacketSize;
    wildcard_subscription_available -> u8 = WildcardSubscriptionAvailable;
    subscription_identifier_available -> u8 = SubscriptionIdentifierAvailable;
    shared_subscription_available -> u8 = SharedSubscriptionAvailable;
}

impl Properties {
    pub fn new() -> Properties {
        Properties(Vec::new())
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn push(&mut self, property: Property) {
        self.0.push(property);
    }

    pub fn iter(&self) -> std::slice::Iter<'_, Property> {
        self.0.iter()
    }

    /// Every Subscription Identifier (a PUBLISH may carry several).
    pub fn subscription_identifiers(&self) -> impl Iterator<Item = u32> + '_ {
        self.0.iter().filter_map(|p| match p {
            Property::SubscriptionIdentifier(id) => Some(*id),
            _ => None,
        })
    }

    /// Every User Property as (name, value), in order.
    pub fn user_properties(&self) -> impl Iterator<Item = (&ByteStr, &ByteStr)> + '_ {
        self.0.iter().filter_map(|p| match p {
            Property::UserProperty((name, value)) => Some((name, value)),
            _ => None,
        })
    }

    /// Removes every property with identifier `id`.
    pub fn remove(&mut self, id: PropertyId) {
        self.0.retain(|p| p.id() != id);
    }

    /// Decodes a property block (length prefix included) in `context`.
    pub(crate) fn decode(r: &mut Reader, context: PropertyContext) -> Result<Properties, DecodeError> {
        let len = r.variable_integer()? as usize;
        let mut block = r.sub_reader(len)?;
        let mut list = Vec::new();
        let mut seen: u64 = 0;
        while !block.is_empty() {
            let raw_id = block.variable_integer()?;
            let id = PropertyId::from_u32(raw_id).ok_or(DecodeError::UnknownProperty(raw_id))?;
            if !id.is_allowed_in(context) {
                return Err(DecodeError::PropertyNotAllowed {
                    property: id,
                    context: context.name(),
                });
            }
            let bit = 1u64 << (id as u8);
            if seen & bit != 0 && !id.is_repeatable_in(context) {
                return Err(DecodeError::DuplicateProperty(id));
            }
            seen |= bit;
            let property = read_value(&mut block, id)?;
            check_value(&property)?;
            list.push(property);
        }
        Ok(Properties(list))
    }

    /// Where the value of the first property `id` starts, counted from the start of the
    /// block's content (after its length prefix).
    pub(crate) fn value_offset(&self, id: PropertyId) -> Option<usize> {
        let mut offset = 0;
        for property in &self.0 {
            if property.id() == id {
                return Some(offset + 1);
            }
            offset += value_len(property);
        }
        None
    }

    /// The length of the block's content, without its length prefix.
    pub(crate) fn content_len(&self) -> usize {
        self.0.iter().map(value_len).sum()
    }

    /// The length of the block with its length prefix.
    pub(crate) fn encoded_len(&self) -> usize {
        let content = self.content_len();
        variable_integer_len(content as u32) + content
    }

    /// Appends the block (length prefix included).
    pub(crate) fn encode(&self, out: &mut BytesMut) -> Result<(), EncodeError> {
        let content = self.content_len();
        if content > MAX_VARIABLE_BYTE_INTEGER as usize {
            return Err(EncodeError::FieldTooLong(content));
        }
        put_variable_integer(out, content as u32);
        for property in &self.0 {
            put_value(out, property)?;
        }
        Ok(())
    }
}

fn read_value(r: &mut Reader, id: PropertyId) -> Result<Property, DecodeError> {
    use PropertyId as I;
    Ok(match (id, id.value_type()) {
        (I::PayloadFormatIndicator, _) => Property::PayloadFormatIndicator(r.u8()?),
        (I::RequestProblemInformation, _) => Property::RequestProblemInformation(r.u8()?),
        (I::RequestResponseInformation, _) => Property::RequestResponseInformation(r.u8()?),
        (I::MaximumQoS, _) => Property::MaximumQoS(r.u8()?),
        (I::RetainAvailable, _) => Property::RetainAvailable(r.u8()?),
        (I::WildcardSubscriptionAvailable, _) => Property::WildcardSubscriptionAvailable(r.u8()?),
        (I::SubscriptionIdentifierAvailable, _) => Property::SubscriptionIdentifierAvailable(r.u8()?),
        (I::SharedSubscriptionAvailable, _) => Property::SharedSubscriptionAvailable(r.u8()?),
        (I::ServerKeepAlive, _) => Property::ServerKeepAlive(r.u16()?),
        (I::ReceiveMaximum, _) => Property::ReceiveMaximum(r.u16()?),
        (I::TopicAliasMaximum, _) => Property::TopicAliasMaximum(r.u16()?),
        (I::TopicAlias, _) => Property::TopicAlias(r.u16()?),
        (I::MessageExpiryInterval, _) => Property::MessageExpiryInterval(r.u32()?),
        (I::SessionExpiryInterval, _) => Property::SessionExpiryInterval(r.u32()?),
        (I::WillDelayInterval, _) => Property::WillDelayInterval(r.u32()?),
        (I::MaximumPacketSize, _) => Property::MaximumPacketSize(r.u32()?),
        (I::SubscriptionIdentifier, _) => Property::SubscriptionIdentifier(r.variable_integer()?),
        (I::ContentType, _) => Property::ContentType(r.string()?),
        (I::ResponseTopic, _) => Property::ResponseTopic(r.string()?),
        (I::AssignedClientIdentifier, _) => Property::AssignedClientIdentifier(r.string()?),
        (I::AuthenticationMethod, _) => Property::AuthenticationMethod(r.string()?),
        (I::ResponseInformation, _) => Property::ResponseInformation(r.string()?),
        (I::ServerReference, _) => Property::ServerReference(r.string()?),
        (I::ReasonString, _) => Property::ReasonString(r.string()?),
        (I::CorrelationData, _) => Property::CorrelationData(r.binary()?),
        (I::AuthenticationData, _) => Property::AuthenticationData(r.binary()?),
        (I::UserProperty, _) => Property::UserProperty((r.string()?, r.string()?)),
    })
}

/// The value checks the specification makes a Protocol Error.
fn check_value(property: &Property) -> Result<(), DecodeError> {
    let invalid = |value: u32| DecodeError::InvalidPropertyValue {
        property: property.id(),
        value,
    };
    match property {
        Property::PayloadFormatIndicator(v)
        | Property::RequestProblemInformation(v)
        | Property::RequestResponseInformation(v)
        | Property::MaximumQoS(v)
        | Property::RetainAvailable(v)
        | Property::WildcardSubscriptionAvailable(v)
        | Property::SubscriptionIdentifierAvailable(v)
        | Property::SharedSubscriptionAvailable(v)
            if *v > 1 =>
        {
            Err(invalid(u32::from(*v)))
        }
        Property::ReceiveMaximum(0) => Err(invalid(0)),
        Property::MaximumPacketSize(0) => Err(invalid(0)),
        Property::SubscriptionIdentifier(0) => Err(invalid(0)),
        Property::TopicAlias(0) => Err(DecodeError::TopicAliasZero),
        _ => Ok(()),
    }
}

fn value_len(property: &Property) -> usize {
    1 + match property {
        Property::SubscriptionIdentifier(v) => variable_integer_len(*v),
        Property::ContentType(s)
        | Property::ResponseTopic(s)
        | Property::AssignedClientIdentifier(s)
        | Property::AuthenticationMethod(s)
        | Property::ResponseInformation(s)
        | Property::ServerReference(s)
        | Property::ReasonString(s) => 2 + s.len(),
        Property::CorrelationData(b) | Property::AuthenticationData(b) => 2 + b.len(),
        Property::UserProperty((k, v)) => 4 + k.len() + v.len(),
        other => match other.id().value_type() {
            ValueType::Byte => 1,
            ValueType::TwoByteInteger => 2,
            _ => 4,
        },
    }
}

fn put_value(out: &mut BytesMut, property: &Property) -> Result<(), EncodeError> {
    out.put_u8(property.id() as u8);
    match property {
        Property::PayloadFormatIndicator(v)
        | Property::RequestProblemInformation(v)
        | Property::RequestResponseInformation(v)
        | Property::MaximumQoS(v)
        | Property::RetainAvailable(v)
        | Property::WildcardSubscriptionAvailable(v)
        | Property::SubscriptionIdentifierAvailable(v)
        | Property::SharedSubscriptionAvailable(v) => out.put_u8(*v),
        Property::ServerKeepAlive(v)
        | Property::ReceiveMaximum(v)
        | Property::TopicAliasMaximum(v)
        | Property::TopicAlias(v) => out.put_u16(*v),
        Property::MessageExpiryInterval(v)
        | Property::SessionExpiryInterval(v)
        | Property::WillDelayInterval(v)
        | Property::MaximumPacketSize(v) => out.put_u32(*v),
        Property::SubscriptionIdentifier(v) => {
            if *v > MAX_VARIABLE_BYTE_INTEGER {
                return Err(EncodeError::FieldTooLong(*v as usize));
            }
            put_variable_integer(out, *v)
        }
        Property::ContentType(s)
        | Property::ResponseTopic(s)
        | Property::AssignedClientIdentifier(s)
        | Property::AuthenticationMethod(s)
        | Property::ResponseInformation(s)
        | Property::ServerReference(s)
        | Property::ReasonString(s) => put_binary(out, s.as_bytes())?,
        Property::CorrelationData(b) | Property::AuthenticationData(b) => put_binary(out, b)?,
        Property::UserProperty((k, v)) => {
            put_binary(out, k.as_bytes())?;
            put_binary(out, v.as_bytes())?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::PacketType;

    fn decode_block(bytes: &'static [u8], context: PropertyContext) -> Result<Properties, DecodeError> {
        let mut r = Reader::new(Bytes::from_static(bytes), PacketType::Publish);
        Properties::decode(&mut r, context)
    }

    #[test]
    fn there_are_27_properties() {
        let count = (0..=0x2Au32).filter_map(PropertyId::from_u32).count();
        assert_eq!(count, 27);
    }

    #[test]
    fn a_property_block_decodes_in_order() {
        let props = decode_block(&[10, 0x02, 0, 0, 0, 60, 0x23, 0, 7, 0x01, 1], PropertyContext::Publish).unwrap();
        assert_eq!(props.message_expiry_interval(), Some(60));
        assert_eq!(props.topic_alias(), Some(7));
        assert_eq!(props.payload_format_indicator(), Some(1));
        assert_eq!(props.0[0].id(), PropertyId::MessageExpiryInterval);
    }

    #[test]
    fn a_property_outside_its_packets_is_malformed() {
        let err = decode_block(&[3, 0x13, 0, 10], PropertyContext::Publish).unwrap_err();
        assert!(matches!(
            err,
            DecodeError::PropertyNotAllowed {
                property: PropertyId::ServerKeepAlive,
                ..
            }
        ));
        assert_eq!(err.reason_code(), crate::ReasonCode::MALFORMED_PACKET);
    }

    #[test]
    fn a_repeated_property_is_a_protocol_error() {
        let err = decode_block(&[6, 0x23, 0, 1, 0x23, 0, 2], PropertyContext::Publish).unwrap_err();
        assert_eq!(err, DecodeError::DuplicateProperty(PropertyId::TopicAlias));
        assert_eq!(err.reason_code(), crate::ReasonCode::PROTOCOL_ERROR);
    }

    #[test]
    fn user_properties_and_publish_subscription_identifiers_may_repeat() {
        let props = decode_block(
            &[14, 0x26, 0, 1, b'a', 0, 1, b'b', 0x26, 0, 1, b'a', 0, 0, 0x0B, 5],
            PropertyContext::Publish,
        );
        // The block above declares 14 bytes but holds 15: it must be rejected as truncated
        // or trailing rather than misread.
        assert!(props.is_err());
        let props = decode_block(
            &[
                17, 0x26, 0, 1, b'a', 0, 1, b'b', 0x26, 0, 1, b'a', 0, 0, 0x0B, 5, 0x0B, 6,
            ],
            PropertyContext::Publish,
        )
        .unwrap();
        assert_eq!(props.user_properties().count(), 2);
        assert_eq!(props.subscription_identifiers().collect::<Vec<_>>(), vec![5, 6]);
    }

    #[test]
    fn a_subscribe_may_carry_only_one_subscription_identifier() {
        let err = decode_block(&[4, 0x0B, 5, 0x0B, 6], PropertyContext::Subscribe).unwrap_err();
        assert_eq!(err, DecodeError::DuplicateProperty(PropertyId::SubscriptionIdentifier));
    }

    #[test]
    fn an_unknown_identifier_is_malformed() {
        let err = decode_block(&[2, 0x04, 0], PropertyContext::Publish).unwrap_err();
        assert_eq!(err, DecodeError::UnknownProperty(0x04));
    }

    #[test]
    fn out_of_range_values_are_protocol_errors() {
        assert!(decode_block(&[2, 0x01, 2], PropertyContext::Publish).is_err());
        assert!(decode_block(&[3, 0x21, 0, 0], PropertyContext::Connect).is_err());
        assert_eq!(
            decode_block(&[3, 0x23, 0, 0], PropertyContext::Publish).unwrap_err(),
            DecodeError::TopicAliasZero
        );
    }

    #[test]
    fn a_block_longer_than_the_packet_is_truncated() {
        let err = decode_block(&[9, 0x01, 1], PropertyContext::Publish).unwrap_err();
        assert!(matches!(err, DecodeError::Truncated { .. }));
    }
}
