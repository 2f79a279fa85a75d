//! Decoding: bytes in a buffer to [`Packet`]s.
//!
//! [`decode`] looks at the fixed header first, so a forbidden packet type, wrong flags or
//! a Remaining Length beyond the allowed packet size are refused as soon as the first few
//! bytes arrive, before anything is buffered for the body. Only a complete packet is split
//! off the buffer; its fields are then read from that one `Bytes` without copying.

use crate::topic::{validate_topic_filter, validate_topic_name};
use crate::wire::{parse_variable_integer, Reader};
use crate::*;
use bytes::{Buf, BytesMut};

/// Decodes the first packet in `buf`.
///
/// Returns `Ok(None)` while the packet is incomplete (nothing is consumed), `Ok(Some(_))`
/// once it is whole (its bytes are split off `buf`), or an error naming the violated rule.
/// `version` is the connection's protocol version; a CONNECT carries its own.
/// `max_packet_size` bounds the whole packet, fixed header included.
pub fn decode(
    buf: &mut BytesMut,
    version: ProtocolVersion,
    max_packet_size: usize,
) -> Result<Option<Packet>, DecodeError> {
    let Some(&first) = buf.first() else {
        return Ok(None);
    };
    let packet_type = check_fixed_header(first, version)?;
    let Some((remaining, length_len)) = parse_variable_integer(&buf[1..])? else {
        return Ok(None);
    };
    let total = 1 + length_len + remaining as usize;
    if total > max_packet_size {
        return Err(DecodeError::PacketTooLarge {
            size: total,
            max: max_packet_size,
        });
    }
    if buf.len() < total {
        return Ok(None);
    }
    let mut frame = buf.split_to(total).freeze();
    frame.advance(1 + length_len);
    let r = Reader::new(frame, packet_type);
    decode_body(first, r, version).map(Some)
}

fn check_fixed_header(first: u8, version: ProtocolVersion) -> Result<PacketType, DecodeError> {
    let nibble = first >> 4;
    let flags = first & 0x0F;
    let packet = PacketType::from_nibble(nibble).ok_or(DecodeError::ReservedPacketType(nibble))?;
    if packet == PacketType::Auth && !version.is_v5() {
        return Err(DecodeError::AuthBeforeV5);
    }
    if packet != PacketType::Publish && flags != packet.required_flags() {
        return Err(DecodeError::InvalidHeaderFlags { packet, flags });
    }
    Ok(packet)
}

fn decode_body(first: u8, mut r: Reader, version: ProtocolVersion) -> Result<Packet, DecodeError> {
    let packet = match r.packet() {
        PacketType::Connect => return connect(r).map(|c| Packet::Connect(Box::new(c))),
        PacketType::ConnectAck => Packet::ConnectAck(connect_ack(&mut r, version)?),
        PacketType::Publish => Packet::Publish(publish(first, &mut r, version)?),
        PacketType::PublishAck => Packet::PublishAck(publish_response(&mut r, version)?),
        PacketType::PublishReceived => Packet::PublishReceived(publish_response(&mut r, version)?),
        PacketType::PublishRelease => Packet::PublishRelease(publish_response(&mut r, version)?),
        PacketType::PublishComplete => Packet::PublishComplete(publish_response(&mut r, version)?),
        PacketType::Subscribe => Packet::Subscribe(subscribe(&mut r, version)?),
        PacketType::SubscribeAck => Packet::SubscribeAck(subscribe_ack(&mut r, version)?),
        PacketType::Unsubscribe => Packet::Unsubscribe(unsubscribe(&mut r, version)?),
        PacketType::UnsubscribeAck => Packet::UnsubscribeAck(unsubscribe_ack(&mut r, version)?),
        PacketType::PingRequest => Packet::PingRequest,
        PacketType::PingResponse => Packet::PingResponse,
        PacketType::Disconnect => {
            let (reason_code, properties) = reason_and_properties(&mut r, version, PropertyContext::Disconnect)?;
            Packet::Disconnect(Disconnect {
                reason_code,
                properties,
            })
        }
        PacketType::Auth => {
            let (reason_code, properties) = reason_and_properties(&mut r, version, PropertyContext::Auth)?;
            Packet::Auth(Auth {
                reason_code,
                properties,
            })
        }
    };
    r.finish()?;
    Ok(packet)
}

fn properties(r: &mut Reader, version: ProtocolVersion, context: PropertyContext) -> Result<Properties, DecodeError> {
    if version.is_v5() {
        Properties::decode(r, context)
    } else {
        Ok(Properties::default())
    }
}

fn packet_id(r: &mut Reader) -> Result<u16, DecodeError> {
    match r.u16()? {
        0 => Err(DecodeError::ZeroPacketId { packet: r.packet() }),
        id => Ok(id),
    }
}

fn reason_code(r: &mut Reader) -> Result<ReasonCode, DecodeError> {
    let code = ReasonCode(r.u8()?);
    if code.is_valid_for(r.packet()) {
        Ok(code)
    } else {
        Err(DecodeError::InvalidReasonCode {
            packet: r.packet(),
            code: code.0,
        })
    }
}

fn topic_name(r: &mut Reader) -> Result<ByteStr, DecodeError> {
    let topic = r.string()?;
    if !topic.is_empty() && validate_topic_name(&topic).is_err() {
        return Err(DecodeError::WildcardInTopicName(topic.to_string()));
    }
    Ok(topic)
}

fn topic_filter(r: &mut Reader) -> Result<ByteStr, DecodeError> {
    let filter = r.string()?;
    validate_topic_filter(&filter).map_err(|reason| DecodeError::InvalidTopicFilter {
        filter: filter.to_string(),
        reason,
    })?;
    Ok(filter)
}

fn connect(mut r: Reader) -> Result<Connect, DecodeError> {
    let name = r.string()?;
    let level = r.u8()?;
    let version = match (name.as_str(), level) {
        ("MQTT", 4) => ProtocolVersion::V3_1_1,
        ("MQTT", 5) => ProtocolVersion::V5,
        ("MQIsdp", 3) => ProtocolVersion::V3_1,
        ("MQTT" | "MQIsdp", _) => {
            return Err(DecodeError::UnsupportedProtocolVersion {
                name: name.to_string(),
                level,
            })
        }
        _ => return Err(DecodeError::InvalidProtocolName(name.to_string())),
    };
    let flags = r.u8()?;
    if flags & 0x01 != 0 {
        return Err(DecodeError::ConnectReservedFlag);
    }
    let will_flag = flags & 0x04 != 0;
    let will_qos_bits = (flags >> 3) & 0x03;
    let will_retain = flags & 0x20 != 0;
    let password_flag = flags & 0x40 != 0;
    let username_flag = flags & 0x80 != 0;
    if !will_flag && will_qos_bits != 0 {
        return Err(DecodeError::WillQoSWithoutWill);
    }
    if !will_flag && will_retain {
        return Err(DecodeError::WillRetainWithoutWill);
    }
    let will_qos = QoS::from_u8(will_qos_bits).ok_or(DecodeError::InvalidWillQoS)?;
    if password_flag && !username_flag && !version.is_v5() {
        return Err(DecodeError::PasswordWithoutUsername);
    }
    let keep_alive = r.u16()?;
    let properties = properties(&mut r, version, PropertyContext::Connect)?;
    let client_id = r.string()?;
    let will = if will_flag {
        let properties = properties_for_will(&mut r, version)?;
        let topic = topic_name(&mut r)?;
        if topic.is_empty() {
            return Err(DecodeError::EmptyTopicName);
        }
        let payload = r.binary()?;
        Some(Will {
            topic,
            payload,
            qos: will_qos,
            retain: will_retain,
            properties,
        })
    } else {
        None
    };
    let username = if username_flag { Some(r.string()?) } else { None };
    let password = if password_flag { Some(r.binary()?) } else { None };
    r.finish()?;
    Ok(Connect {
        protocol_version: version,
        clean_start: flags & 0x02 != 0,
        keep_alive,
        client_id,
        will,
        username,
        password,
        properties,
    })
}

fn properties_for_will(r: &mut Reader, version: ProtocolVersion) -> Result<Properties, DecodeError> {
    properties(r, version, PropertyContext::Will)
}

fn connect_ack(r: &mut Reader, version: ProtocolVersion) -> Result<ConnectAck, DecodeError> {
    let flags = r.u8()?;
    if flags & 0xFE != 0 {
        return Err(DecodeError::ConnectAckReservedFlags(flags));
    }
    let reason_code = if version.is_v5() {
        reason_code(r)?
    } else {
        let code = r.u8()?;
        ReasonCode::from_connect_return_code(code).ok_or(DecodeError::InvalidReasonCode {
            packet: PacketType::ConnectAck,
            code,
        })?
    };
    // Lenient: a 5.0 CONNACK without a property length is read as having no properties.
    let properties = if r.is_empty() {
        Properties::default()
    } else {
        properties(r, version, PropertyContext::ConnectAck)?
    };
    Ok(ConnectAck {
        session_present: flags & 0x01 != 0,
        reason_code,
        properties,
    })
}

fn publish(first: u8, r: &mut Reader, version: ProtocolVersion) -> Result<Publish, DecodeError> {
    let dup = first & 0x08 != 0;
    let qos = QoS::from_u8((first >> 1) & 0x03).ok_or(DecodeError::InvalidPublishQoS)?;
    if dup && qos == QoS::AtMostOnce {
        return Err(DecodeError::DupOnQoS0);
    }
    let topic = topic_name(r)?;
    let packet_id = if qos == QoS::AtMostOnce { 0 } else { packet_id(r)? };
    let properties = properties(r, version, PropertyContext::Publish)?;
    if topic.is_empty() && properties.topic_alias().is_none() {
        return Err(DecodeError::EmptyTopicName);
    }
    Ok(Publish {
        dup,
        qos,
        retain: first & 0x01 != 0,
        topic,
        packet_id,
        properties,
        payload: r.rest(),
    })
}

fn publish_response(r: &mut Reader, version: ProtocolVersion) -> Result<PublishResponse, DecodeError> {
    let packet_id = packet_id(r)?;
    let (reason_code, properties) = reason_and_properties(r, version, PropertyContext::PublishResponse)?;
    Ok(PublishResponse {
        packet_id,
        reason_code,
        properties,
    })
}

/// The optional reason code and properties that end PUBACK-like packets, DISCONNECT and
/// AUTH in 5.0: both may be left out when they are Success and empty.
fn reason_and_properties(
    r: &mut Reader,
    version: ProtocolVersion,
    context: PropertyContext,
) -> Result<(ReasonCode, Properties), DecodeError> {
    if !version.is_v5() || r.is_empty() {
        return Ok((ReasonCode::SUCCESS, Properties::default()));
    }
    let code = reason_code(r)?;
    let properties = if r.is_empty() {
        Properties::default()
    } else {
        Properties::decode(r, context)?
    };
    Ok((code, properties))
}

fn subscribe(r: &mut Reader, version: ProtocolVersion) -> Result<Subscribe, DecodeError> {
    let packet_id = packet_id(r)?;
    let properties = properties(r, version, PropertyContext::Subscribe)?;
    if r.is_empty() {
        return Err(DecodeError::EmptySubscribe);
    }
    let mut subscriptions = Vec::new();
    while !r.is_empty() {
        let filter = topic_filter(r)?;
        let options = subscription_options(r.u8()?, version)?;
        subscriptions.push(Subscription { filter, options });
    }
    Ok(Subscribe {
        packet_id,
        subscriptions,
        properties,
    })
}

fn subscription_options(byte: u8, version: ProtocolVersion) -> Result<SubscriptionOptions, DecodeError> {
    let reserved = if version.is_v5() { 0xC0 } else { 0xFC };
    if byte & reserved != 0 {
        return Err(DecodeError::SubscriptionOptionsReserved(byte));
    }
    let qos = QoS::from_u8(byte & 0x03).ok_or(DecodeError::InvalidSubscriptionQoS)?;
    let retain_handling = match (byte >> 4) & 0x03 {
        0 => RetainHandling::SendAtSubscribe,
        1 => RetainHandling::SendAtNewSubscribe,
        2 => RetainHandling::DoNotSend,
        _ => return Err(DecodeError::InvalidRetainHandling),
    };
    Ok(SubscriptionOptions {
        qos,
        no_local: byte & 0x04 != 0,
        retain_as_published: byte & 0x08 != 0,
        retain_handling,
    })
}

fn subscribe_ack(r: &mut Reader, version: ProtocolVersion) -> Result<SubscribeAck, DecodeError> {
    let packet_id = packet_id(r)?;
    let properties = properties(r, version, PropertyContext::SubscribeAck)?;
    let mut reason_codes = Vec::with_capacity(r.remaining());
    while !r.is_empty() {
        let code = reason_code(r)?;
        if !version.is_v5() && !matches!(code.0, 0x00 | 0x01 | 0x02 | 0x80) {
            return Err(DecodeError::InvalidReasonCode {
                packet: PacketType::SubscribeAck,
                code: code.0,
            });
        }
        reason_codes.push(code);
    }
    if reason_codes.is_empty() {
        return Err(DecodeError::NoReasonCodes {
            packet: PacketType::SubscribeAck,
        });
    }
    Ok(SubscribeAck {
        packet_id,
        reason_codes,
        properties,
    })
}

fn unsubscribe(r: &mut Reader, version: ProtocolVersion) -> Result<Unsubscribe, DecodeError> {
    let packet_id = packet_id(r)?;
    let properties = properties(r, version, PropertyContext::Unsubscribe)?;
    if r.is_empty() {
        return Err(DecodeError::EmptyUnsubscribe);
    }
    let mut filters = Vec::new();
    while !r.is_empty() {
        filters.push(topic_filter(r)?);
    }
    Ok(Unsubscribe {
        packet_id,
        filters,
        properties,
    })
}

fn unsubscribe_ack(r: &mut Reader, version: ProtocolVersion) -> Result<UnsubscribeAck, DecodeError> {
    let packet_id = packet_id(r)?;
    if !version.is_v5() {
        return Ok(UnsubscribeAck {
            packet_id,
            reason_codes: Vec::new(),
            properties: Properties::default(),
        });
    }
    let properties = Properties::decode(r, PropertyContext::UnsubscribeAck)?;
    let mut reason_codes = Vec::with_capacity(r.remaining());
    while !r.is_empty() {
        reason_codes.push(reason_code(r)?);
    }
    if reason_codes.is_empty() {
        return Err(DecodeError::NoReasonCodes {
            packet: PacketType::UnsubscribeAck,
        });
    }
    Ok(UnsubscribeAck {
        packet_id,
        reason_codes,
        properties,
    })
}
