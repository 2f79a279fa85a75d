//! Encode-once PUBLISH frames for fan-out.
//!
//! A broker forwards one incoming PUBLISH to many subscribers. Those that share a protocol
//! version, QoS and RETAIN flag get identical bytes but for the Packet Identifier and the
//! DUP flag, so the broker encodes a [`PublishFrame`] once and each connection copies it
//! into its write buffer with [`PublishFrame::write`], which patches just those bytes.

use crate::encode::{publish_body_len, publish_flags, put_publish_body};
use crate::wire::{put_variable_integer, variable_integer_len};
use crate::{EncodeError, PacketType, PropertyId, ProtocolVersion, Publish, QoS, MAX_VARIABLE_BYTE_INTEGER};
use bytes::{BufMut, Bytes, BytesMut};

/// A PUBLISH packet encoded once, to be sent many times.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishFrame {
    /// The encoded packet, shared by reference count between all receivers.
    bytes: Bytes,
    /// Where the two Packet Identifier bytes start; 0 for QoS 0, which has none.
    packet_id_offset: u32,
    /// Where the four bytes of the Message Expiry Interval start (5.0); 0 when absent.
    expiry_offset: u32,
}

impl PublishFrame {
    /// Encodes `publish` for `version`. Its `dup` and `packet_id` are placeholders that
    /// [`write`](Self::write) replaces.
    pub fn new(publish: &Publish, version: ProtocolVersion) -> Result<PublishFrame, EncodeError> {
        let body = publish_body_len(publish, version);
        if body > MAX_VARIABLE_BYTE_INTEGER as usize {
            return Err(EncodeError::PacketTooLarge {
                packet: PacketType::Publish,
                size: body,
            });
        }
        let header = 1 + variable_integer_len(body as u32);
        let mut out = BytesMut::with_capacity(header + body);
        out.put_u8(((PacketType::Publish as u8) << 4) | publish_flags(false, publish.qos, publish.retain));
        put_variable_integer(&mut out, body as u32);
        put_publish_body(publish, version, &mut out)?;
        let after_topic = header + 2 + publish.topic.len();
        let packet_id_offset = if publish.qos == QoS::AtMostOnce { 0 } else { after_topic };
        let properties_at = after_topic + if publish.qos == QoS::AtMostOnce { 0 } else { 2 };
        let expiry_offset = if version.is_v5() {
            let content = publish.properties.content_len();
            publish
                .properties
                .value_offset(PropertyId::MessageExpiryInterval)
                .map_or(0, |at| properties_at + variable_integer_len(content as u32) + at)
        } else {
            0
        };
        Ok(PublishFrame {
            bytes: out.freeze(),
            packet_id_offset: packet_id_offset as u32,
            expiry_offset: expiry_offset as u32,
        })
    }

    /// The encoded packet as built (DUP clear, placeholder packet id).
    pub fn bytes(&self) -> &Bytes {
        &self.bytes
    }

    /// The encoded size in bytes.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Always false: a PUBLISH has at least a fixed header.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// The QoS the frame was encoded with.
    pub fn qos(&self) -> QoS {
        QoS::from_u8((self.bytes[0] >> 1) & 0x03).unwrap_or_default()
    }

    /// Appends the packet to `out` with `packet_id` (ignored for QoS 0) and `dup`.
    pub fn write(&self, out: &mut BytesMut, packet_id: u16, dup: bool) {
        let start = out.len();
        out.extend_from_slice(&self.bytes);
        if dup {
            out[start] |= 0x08;
        }
        if self.packet_id_offset != 0 {
            let at = start + self.packet_id_offset as usize;
            out[at..at + 2].copy_from_slice(&packet_id.to_be_bytes());
        }
    }

    /// Whether the frame carries a Message Expiry Interval (5.0).
    pub fn has_expiry(&self) -> bool {
        self.expiry_offset != 0
    }

    /// As [`write`](Self::write), with the Message Expiry Interval set to `remaining`
    /// seconds (the time the message has left when it is forwarded, [MQTT-3.3.2-6]).
    pub fn write_expiring(&self, out: &mut BytesMut, packet_id: u16, dup: bool, remaining: u32) {
        let start = out.len();
        self.write(out, packet_id, dup);
        if self.expiry_offset != 0 {
            let at = start + self.expiry_offset as usize;
            out[at..at + 4].copy_from_slice(&remaining.to_be_bytes());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{decode, encode, ByteStr, Packet, Properties};

    fn publish(qos: QoS) -> Publish {
        Publish {
            dup: false,
            qos,
            retain: true,
            topic: ByteStr::from_static("a/b"),
            packet_id: if qos == QoS::AtMostOnce { 0 } else { 1 },
            properties: Properties::default(),
            payload: Bytes::from_static(b"hello"),
        }
    }

    #[test]
    fn a_frame_written_with_an_id_equals_the_packet_encoded_with_it() {
        for version in [ProtocolVersion::V3_1_1, ProtocolVersion::V5] {
            let frame = PublishFrame::new(&publish(QoS::ExactlyOnce), version).unwrap();
            let mut out = BytesMut::new();
            frame.write(&mut out, 0xBEEF, true);
            let mut expected = publish(QoS::ExactlyOnce);
            expected.packet_id = 0xBEEF;
            expected.dup = true;
            let mut direct = BytesMut::new();
            encode(&Packet::Publish(expected.clone()), version, &mut direct).unwrap();
            assert_eq!(out, direct);
            assert_eq!(
                decode(&mut out, version, usize::MAX).unwrap(),
                Some(Packet::Publish(expected))
            );
        }
    }

    #[test]
    fn the_message_expiry_interval_is_patched_per_copy() {
        let mut p = publish(QoS::AtLeastOnce);
        p.properties = Properties(vec![
            crate::Property::UserProperty((ByteStr::from_static("k"), ByteStr::from_static("v"))),
            crate::Property::MessageExpiryInterval(60),
        ]);
        let frame = PublishFrame::new(&p, ProtocolVersion::V5).unwrap();
        assert!(frame.has_expiry());
        let mut out = BytesMut::new();
        frame.write_expiring(&mut out, 9, false, 17);
        let Some(Packet::Publish(got)) = decode(&mut out, ProtocolVersion::V5, usize::MAX).unwrap() else {
            panic!()
        };
        assert_eq!(got.properties.message_expiry_interval(), Some(17));
        assert_eq!(got.packet_id, 9);
        assert_eq!(got.properties.user_properties().count(), 1);
        assert!(!PublishFrame::new(&p, ProtocolVersion::V3_1_1).unwrap().has_expiry());
    }

    #[test]
    fn a_qos_0_frame_is_written_unchanged() {
        let frame = PublishFrame::new(&publish(QoS::AtMostOnce), ProtocolVersion::V3_1_1).unwrap();
        let mut out = BytesMut::new();
        frame.write(&mut out, 7, false);
        assert_eq!(&out[..], &frame.bytes()[..]);
        assert_eq!(&out[..], b"\x31\x0a\x00\x03a/bhello");
    }
}
