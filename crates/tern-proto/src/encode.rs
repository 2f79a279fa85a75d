//! Encoding: [`Packet`]s to bytes.
//!
//! The body length is computed first so the fixed header can be written in place and the
//! packet appended with a single reservation, no intermediate buffer. Fields a version does
//! not carry (properties before 5.0, say) are left out.

use crate::wire::{put_binary, put_variable_integer, variable_integer_len};
use crate::*;
use bytes::{BufMut, BytesMut};

/// Appends `packet`, encoded for `version`, to `out`. On error nothing is appended.
///
/// A CONNECT is always encoded with its own `protocol_version`.
pub fn encode(packet: &Packet, version: ProtocolVersion, out: &mut BytesMut) -> Result<(), EncodeError> {
    let start = out.len();
    let result = encode_unchecked(packet, version, out);
    if result.is_err() {
        out.truncate(start);
    }
    result
}

/// The number of bytes `encode` writes for `packet`, fixed header included.
pub fn encoded_len(packet: &Packet, version: ProtocolVersion) -> usize {
    let body = body_len(packet, version);
    1 + variable_integer_len(body.min(MAX_VARIABLE_BYTE_INTEGER as usize) as u32) + body
}

fn encode_unchecked(packet: &Packet, version: ProtocolVersion, out: &mut BytesMut) -> Result<(), EncodeError> {
    if matches!(packet, Packet::Auth(_)) && !version.is_v5() {
        return Err(EncodeError::NotInVersion {
            packet: PacketType::Auth,
            version,
        });
    }
    let body = body_len(packet, version);
    if body > MAX_VARIABLE_BYTE_INTEGER as usize {
        return Err(EncodeError::PacketTooLarge {
            packet: packet.packet_type(),
            size: body,
        });
    }
    out.reserve(5 + body);
    out.put_u8(first_byte(packet));
    put_variable_integer(out, body as u32);
    put_body(packet, version, out)
}

fn first_byte(packet: &Packet) -> u8 {
    let kind = packet.packet_type();
    let flags = match packet {
        Packet::Publish(p) => publish_flags(p.dup, p.qos, p.retain),
        _ => kind.required_flags(),
    };
    ((kind as u8) << 4) | flags
}

pub(crate) fn publish_flags(dup: bool, qos: QoS, retain: bool) -> u8 {
    (u8::from(dup) << 3) | ((qos as u8) << 1) | u8::from(retain)
}

fn props_len(properties: &Properties, version: ProtocolVersion) -> usize {
    if version.is_v5() {
        properties.encoded_len()
    } else {
        0
    }
}

fn put_props(out: &mut BytesMut, properties: &Properties, version: ProtocolVersion) -> Result<(), EncodeError> {
    if version.is_v5() {
        properties.encode(out)?;
    }
    Ok(())
}

/// The length of an optional reason code and property block (5.0), both left out when
/// they are Success and empty.
fn reason_tail_len(code: ReasonCode, properties: &Properties, version: ProtocolVersion) -> usize {
    if !version.is_v5() || (code == ReasonCode::SUCCESS && properties.is_empty()) {
        0
    } else if properties.is_empty() {
        1
    } else {
        1 + properties.encoded_len()
    }
}

fn put_reason_tail(
    out: &mut BytesMut,
    code: ReasonCode,
    properties: &Properties,
    version: ProtocolVersion,
) -> Result<(), EncodeError> {
    match reason_tail_len(code, properties, version) {
        0 => Ok(()),
        1 => {
            out.put_u8(code.0);
            Ok(())
        }
        _ => {
            out.put_u8(code.0);
            properties.encode(out)
        }
    }
}

fn body_len(packet: &Packet, version: ProtocolVersion) -> usize {
    match packet {
        Packet::Connect(c) => connect_len(c),
        Packet::ConnectAck(c) => 2 + props_len(&c.properties, version),
        Packet::Publish(p) => publish_body_len(p, version),
        Packet::PublishAck(r) | Packet::PublishReceived(r) | Packet::PublishRelease(r) | Packet::PublishComplete(r) => {
            2 + reason_tail_len(r.reason_code, &r.properties, version)
        }
        Packet::Subscribe(s) => {
            2 + props_len(&s.properties, version) + s.subscriptions.iter().map(|s| 3 + s.filter.len()).sum::<usize>()
        }
        Packet::SubscribeAck(s) => 2 + props_len(&s.properties, version) + s.reason_codes.len(),
        Packet::Unsubscribe(u) => {
            2 + props_len(&u.properties, version) + u.filters.iter().map(|f| 2 + f.len()).sum::<usize>()
        }
        Packet::UnsubscribeAck(u) if version.is_v5() => 2 + u.properties.encoded_len() + u.reason_codes.len(),
        Packet::UnsubscribeAck(_) => 2,
        Packet::PingRequest | Packet::PingResponse => 0,
        Packet::Disconnect(d) => reason_tail_len(d.reason_code, &d.properties, version),
        Packet::Auth(a) => reason_tail_len(a.reason_code, &a.properties, version),
    }
}

fn connect_len(c: &Connect) -> usize {
    let v = c.protocol_version;
    let mut len = 2 + v.protocol_name().len() + 1 + 1 + 2 + props_len(&c.properties, v) + 2 + c.client_id.len();
    if let Some(will) = &c.will {
        len += props_len(&will.properties, v) + 2 + will.topic.len() + 2 + will.payload.len();
    }
    len += c.username.as_ref().map_or(0, |u| 2 + u.len());
    len += c.password.as_ref().map_or(0, |p| 2 + p.len());
    len
}

pub(crate) fn publish_body_len(p: &Publish, version: ProtocolVersion) -> usize {
    let id = if p.qos == QoS::AtMostOnce { 0 } else { 2 };
    2 + p.topic.len() + id + props_len(&p.properties, version) + p.payload.len()
}

fn put_body(packet: &Packet, version: ProtocolVersion, out: &mut BytesMut) -> Result<(), EncodeError> {
    match packet {
        Packet::Connect(c) => put_connect(c, out),
        Packet::ConnectAck(c) => {
            out.put_u8(u8::from(c.session_present));
            out.put_u8(if version.is_v5() {
                c.reason_code.0
            } else {
                c.reason_code.to_connect_return_code()
            });
            put_props(out, &c.properties, version)
        }
        Packet::Publish(p) => put_publish_body(p, version, out),
        Packet::PublishAck(r) | Packet::PublishReceived(r) | Packet::PublishRelease(r) | Packet::PublishComplete(r) => {
            out.put_u16(r.packet_id);
            put_reason_tail(out, r.reason_code, &r.properties, version)
        }
        Packet::Subscribe(s) => {
            out.put_u16(s.packet_id);
            put_props(out, &s.properties, version)?;
            for sub in &s.subscriptions {
                put_binary(out, sub.filter.as_bytes())?;
                out.put_u8(options_byte(&sub.options, version));
            }
            Ok(())
        }
        Packet::SubscribeAck(s) => {
            out.put_u16(s.packet_id);
            put_props(out, &s.properties, version)?;
            for code in &s.reason_codes {
                out.put_u8(if version.is_v5() {
                    code.0
                } else {
                    code.to_subscribe_return_code()
                });
            }
            Ok(())
        }
        Packet::Unsubscribe(u) => {
            out.put_u16(u.packet_id);
            put_props(out, &u.properties, version)?;
            for filter in &u.filters {
                put_binary(out, filter.as_bytes())?;
            }
            Ok(())
        }
        Packet::UnsubscribeAck(u) => {
            out.put_u16(u.packet_id);
            if version.is_v5() {
                u.properties.encode(out)?;
                for code in &u.reason_codes {
                    out.put_u8(code.0);
                }
            }
            Ok(())
        }
        Packet::PingRequest | Packet::PingResponse => Ok(()),
        Packet::Disconnect(d) => put_reason_tail(out, d.reason_code, &d.properties, version),
        Packet::Auth(a) => put_reason_tail(out, a.reason_code, &a.properties, version),
    }
}

fn options_byte(options: &SubscriptionOptions, version: ProtocolVersion) -> u8 {
    let qos = options.qos as u8;
    if !version.is_v5() {
        return qos;
    }
    qos | (u8::from(options.no_local) << 2)
        | (u8::from(options.retain_as_published) << 3)
        | ((options.retain_handling as u8) << 4)
}

fn put_connect(c: &Connect, out: &mut BytesMut) -> Result<(), EncodeError> {
    let v = c.protocol_version;
    put_binary(out, v.protocol_name().as_bytes())?;
    out.put_u8(v.level());
    let mut flags = u8::from(c.clean_start) << 1;
    if let Some(will) = &c.will {
        flags |= 0x04 | ((will.qos as u8) << 3) | (u8::from(will.retain) << 5);
    }
    flags |= u8::from(c.password.is_some()) << 6;
    flags |= u8::from(c.username.is_some()) << 7;
    out.put_u8(flags);
    out.put_u16(c.keep_alive);
    put_props(out, &c.properties, v)?;
    put_binary(out, c.client_id.as_bytes())?;
    if let Some(will) = &c.will {
        put_props(out, &will.properties, v)?;
        put_binary(out, will.topic.as_bytes())?;
        put_binary(out, &will.payload)?;
    }
    if let Some(username) = &c.username {
        put_binary(out, username.as_bytes())?;
    }
    if let Some(password) = &c.password {
        put_binary(out, password)?;
    }
    Ok(())
}

pub(crate) fn put_publish_body(p: &Publish, version: ProtocolVersion, out: &mut BytesMut) -> Result<(), EncodeError> {
    put_binary(out, p.topic.as_bytes())?;
    if p.qos != QoS::AtMostOnce {
        out.put_u16(p.packet_id);
    }
    put_props(out, &p.properties, version)?;
    out.put_slice(&p.payload);
    Ok(())
}
