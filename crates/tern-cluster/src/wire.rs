//! A message as it travels between nodes (NATS message body, key-value value).
//!
//! ```text
//! [1]  format, 2
//! [1]  flags: QoS in bits 0-1, RETAIN in bit 2
//! [1]  length n of the origin
//! [n]  origin: "<node name>:<incarnation>", the node that accepted the message and
//!      which run of it (a restarted node numbers its messages afresh)
//! [8]  the origin's sequence number of the message, big-endian
//! [2]  length k of the publisher's client id, big-endian (0: not a client's message)
//! [k]  the publisher's client id, for No Local where the message is read from the stream
//! [..] the message as an MQTT 5.0 PUBLISH at QoS 0 (topic, properties, payload)
//! ```
//!
//! Format 1, without the publisher's client id, is still read (messages stored in the
//! stream by an earlier version).
//!
//! The PUBLISH form reuses the codec (properties included) and is checked whole when
//! read: a body that does not decode is dropped and counted, never trusted.

use bytes::{BufMut, Bytes, BytesMut};
use tern_proto::{Packet, PropertyId, ProtocolVersion, Publish, QoS};

const FORMAT: u8 = 2;
/// The format before the publisher's client id.
const FORMAT_1: u8 = 1;
/// Largest body read back: NATS's own default payload limit is 1 MiB, JetStream's 8 MiB.
const MAX_BODY: usize = 64 << 20;

/// A message decoded from another node.
#[derive(Debug)]
pub struct Record {
    pub origin: String,
    pub seq: u64,
    /// The client id of the client that published it, if a client did.
    pub publisher: Option<String>,
    pub publish: Publish,
}

/// Why a body was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("body too short or of an unknown format")]
    Framing,
    #[error("origin is not UTF-8")]
    Origin,
    #[error("the PUBLISH inside does not decode: {0}")]
    Publish(String),
}

/// The body for `publish` from `origin`, message number `seq`, not a client's.
pub fn encode(publish: &Publish, origin: &str, seq: u64) -> Result<Bytes, WireError> {
    encode_from(publish, origin, None, seq)
}

/// The body for `publish` from `origin`, message number `seq`, published by the client
/// `publisher` if given.
pub fn encode_from(publish: &Publish, origin: &str, publisher: Option<&str>, seq: u64) -> Result<Bytes, WireError> {
    let mut p = publish.clone();
    p.qos = QoS::AtMostOnce;
    p.packet_id = 0;
    p.dup = false;
    let origin = &origin.as_bytes()[..origin.len().min(255)];
    let mut out = BytesMut::with_capacity(16 + origin.len() + publish.topic.len() + publish.payload.len() + 16);
    out.put_u8(FORMAT);
    out.put_u8(publish.qos as u8 | (u8::from(publish.retain) << 2));
    out.put_u8(origin.len() as u8);
    out.put_slice(origin);
    out.put_u64(seq);
    let publisher = publisher.map_or(&[][..], |p| &p.as_bytes()[..p.len().min(usize::from(u16::MAX))]);
    out.put_u16(publisher.len() as u16);
    out.put_slice(publisher);
    tern_proto::encode(&Packet::Publish(p), ProtocolVersion::V5, &mut out)
        .map_err(|e| WireError::Publish(e.to_string()))?;
    Ok(out.freeze())
}

/// Reads a body made by [`encode`].
pub fn decode(body: &[u8]) -> Result<Record, WireError> {
    let (&[format, flags, len], rest) = body.split_first_chunk::<3>().ok_or(WireError::Framing)?;
    if !matches!(format, FORMAT | FORMAT_1) || body.len() > MAX_BODY {
        return Err(WireError::Framing);
    }
    let qos = QoS::from_u8(flags & 3).ok_or(WireError::Framing)?;
    let (origin, rest) = rest.split_at_checked(usize::from(len)).ok_or(WireError::Framing)?;
    let (seq, rest) = rest.split_first_chunk::<8>().ok_or(WireError::Framing)?;
    let origin = std::str::from_utf8(origin).map_err(|_| WireError::Origin)?.to_string();
    let (publisher, rest) = match format {
        FORMAT_1 => (None, rest),
        _ => {
            let (len, rest) = rest.split_first_chunk::<2>().ok_or(WireError::Framing)?;
            let (id, rest) = rest
                .split_at_checked(usize::from(u16::from_be_bytes(*len)))
                .ok_or(WireError::Framing)?;
            let id = std::str::from_utf8(id).map_err(|_| WireError::Origin)?;
            ((!id.is_empty()).then(|| id.to_string()), rest)
        }
    };
    let mut packet = BytesMut::from(rest);
    let publish = match tern_proto::decode(&mut packet, ProtocolVersion::V5, MAX_BODY) {
        Ok(Some(Packet::Publish(mut p))) if packet.is_empty() => {
            p.qos = qos;
            p.retain = flags & 4 != 0;
            // Never what a node sends (they are per connection): not passed on if present.
            p.properties.remove(PropertyId::TopicAlias);
            p.properties.remove(PropertyId::SubscriptionIdentifier);
            p
        }
        Ok(_) => return Err(WireError::Publish("not one whole PUBLISH".into())),
        Err(e) => return Err(WireError::Publish(e.to_string())),
    };
    Ok(Record {
        origin,
        seq: u64::from_be_bytes(*seq),
        publisher,
        publish,
    })
}

/// Counts the time a message spent in a stream or bucket (since `published`, seconds since
/// 1970 by the NATS server's clock) against its 5.0 Message Expiry Interval: the interval is
/// lowered to what is left; `false` if nothing is.
pub fn still_valid(publish: &mut tern_proto::Publish, published: i64) -> bool {
    let Some(interval) = publish.properties.message_expiry_interval() else {
        return true;
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let spent = u32::try_from(now.saturating_sub(published).max(0)).unwrap_or(u32::MAX);
    if spent == 0 {
        return true;
    }
    let Some(left) = interval.checked_sub(spent).filter(|left| *left > 0) else {
        return false;
    };
    publish.properties.remove(tern_proto::PropertyId::MessageExpiryInterval);
    publish
        .properties
        .push(tern_proto::Property::MessageExpiryInterval(left));
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use tern_proto::{ByteStr, Properties, Property};

    fn message(qos: QoS, retain: bool) -> Publish {
        let mut properties = Properties::default();
        properties.push(Property::ContentType(ByteStr::from("text/plain")));
        properties.push(Property::MessageExpiryInterval(60));
        Publish {
            dup: false,
            qos,
            retain,
            topic: ByteStr::from("a/b"),
            packet_id: 7,
            properties,
            payload: Bytes::from_static(b"hello"),
        }
    }

    #[test]
    fn a_message_survives_the_trip() {
        for (qos, retain) in [
            (QoS::AtMostOnce, false),
            (QoS::AtLeastOnce, true),
            (QoS::ExactlyOnce, false),
        ] {
            let body = encode(&message(qos, retain), "node-a:1f", 42).unwrap();
            let record = decode(&body).unwrap();
            assert_eq!(record.origin, "node-a:1f");
            assert_eq!(record.seq, 42);
            assert_eq!(record.publish.qos, qos);
            assert_eq!(record.publish.retain, retain);
            assert_eq!(record.publish.packet_id, 0);
            assert_eq!(record.publish.topic.as_str(), "a/b");
            assert_eq!(&record.publish.payload[..], b"hello");
            assert_eq!(record.publish.properties.message_expiry_interval(), Some(60));
            assert_eq!(record.publisher, None);
        }
        let body = encode_from(&message(QoS::AtLeastOnce, false), "node-a:1f", Some("dev-7"), 9).unwrap();
        let record = decode(&body).unwrap();
        assert_eq!(record.publisher.as_deref(), Some("dev-7"));
        assert_eq!(&record.publish.payload[..], b"hello");
    }

    #[test]
    fn format_1_without_the_publisher_is_still_read() {
        let body = encode_from(&message(QoS::AtLeastOnce, false), "n:1", Some("c"), 3).unwrap();
        // Format 1 is format 2 without the publisher's two length bytes and id.
        let mut old = vec![FORMAT_1];
        old.extend_from_slice(&body[1..3 + 3 + 8]);
        old.extend_from_slice(&body[3 + 3 + 8 + 2 + 1..]);
        let record = decode(&old).unwrap();
        assert_eq!((record.origin.as_str(), record.seq, record.publisher), ("n:1", 3, None));
        assert_eq!(&record.publish.payload[..], b"hello");
    }

    #[test]
    fn per_connection_properties_are_not_passed_on() {
        let mut m = message(QoS::AtMostOnce, false);
        m.properties.push(Property::TopicAlias(3));
        m.properties.push(Property::SubscriptionIdentifier(9));
        let record = decode(&encode(&m, "n:1", 1).unwrap()).unwrap();
        assert_eq!(record.publish.properties.topic_alias(), None);
        assert_eq!(record.publish.properties.subscription_identifiers().next(), None);
        assert_eq!(record.publish.properties.message_expiry_interval(), Some(60));
    }

    #[test]
    fn damaged_bodies_are_refused() {
        let body = encode(&message(QoS::AtLeastOnce, false), "n:1", 1).unwrap();
        for cut in 0..body.len() {
            assert!(decode(&body[..cut]).is_err(), "cut at {cut}");
        }
        let mut bad = body.to_vec();
        bad[0] = 9;
        assert!(decode(&bad).is_err());
        let mut bad = body.to_vec();
        bad[1] = 3;
        assert!(decode(&bad).is_err());
        let mut longer = body.to_vec();
        longer.push(0);
        assert!(decode(&longer).is_err());
        let from = encode_from(&message(QoS::AtLeastOnce, false), "n:1", Some("dev-1"), 1).unwrap();
        for cut in 0..from.len() {
            assert!(decode(&from[..cut]).is_err(), "with a publisher, cut at {cut}");
        }
        // The publisher's length (after format, flags, origin and sequence) past the end,
        // and a publisher that is not UTF-8.
        let at = 3 + 3 + 8;
        let mut bad = from.to_vec();
        bad[at..at + 2].copy_from_slice(&u16::MAX.to_be_bytes());
        assert!(decode(&bad).is_err());
        let mut bad = from.to_vec();
        bad[at + 2] = 0xFF;
        assert!(matches!(decode(&bad), Err(WireError::Origin)));
    }

    fn publish(expiry: Option<u32>) -> Publish {
        let mut p = Publish {
            dup: false,
            qos: QoS::AtLeastOnce,
            retain: false,
            topic: ByteStr::from("t"),
            packet_id: 0,
            properties: Default::default(),
            payload: bytes::Bytes::new(),
        };
        if let Some(seconds) = expiry {
            p.properties.push(Property::MessageExpiryInterval(seconds));
        }
        p
    }

    #[test]
    fn time_in_the_stream_counts_against_the_expiry_interval() {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        let mut p = publish(None);
        assert!(still_valid(&mut p, now - 1000));
        let mut p = publish(Some(60));
        assert!(still_valid(&mut p, now - 20));
        let left = p.properties.message_expiry_interval().unwrap();
        assert!((39..=40).contains(&left), "{left}");
        let mut p = publish(Some(60));
        assert!(!still_valid(&mut p, now - 60));
        let mut p = publish(Some(60));
        assert!(still_valid(&mut p, now + 5), "a clock ahead counts nothing");
        assert_eq!(p.properties.message_expiry_interval(), Some(60));
    }
}
