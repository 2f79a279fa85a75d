//! Topic mapping (the "Topic mapping" seam of the design): the name a client uses for a
//! topic and the name the broker routes it under, for the clients of one listener.
//!
//! Today's one mapping is mosquitto's `mount_point`: every topic a client of the listener
//! publishes to (its will included) and every filter it subscribes or unsubscribes to is
//! prefixed with the mount point inside the broker, and the prefix is taken off the topic
//! of each message delivered to it. Such a client therefore only sees topics under the
//! mount point. ACLs, retained messages, limits and the store all see the broker's names.
//!
//! The other user is a listener policy (`policy.rs`), which maps what its clients send
//! itself and hands the connection a map for the way out: a broker prefix replaced by a
//! shorter client prefix ([`TopicMap::replace`]; the IoT platform's devices get
//! `$iot/<org>/iot-2/type/<t>/id/<d>/...` as `iot-2/...`).
//!
//! Connections of listeners without a mount point hold no [`TopicMap`] and never call
//! into this module: their deliveries are the shared, encoded-once frames as before. A
//! mapped receiver writes its own copy of each frame with the prefix cut out of the topic
//! (or replaced by the client's) ([`TopicMap::write_frame`]): one copy and a header
//! rewrite, no decoding.

use crate::session::Expiry;
use bytes::BytesMut;
use std::borrow::Cow;
use std::sync::Arc;
use tern_proto::{ByteStr, PublishFrame};

/// Why a client's topic or filter has no name inside the broker.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TopicMapError {
    #[error("with the mount point {mount:?} the topic is {len} bytes, over the 65,535 a topic may have")]
    TooLong { mount: String, len: usize },
    #[error("with the mount point {mount:?} the filter {filter:?} is not a valid topic filter: {why}")]
    InvalidFilter {
        mount: String,
        filter: String,
        why: &'static str,
    },
}

/// Why a mount point cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MountPointError {
    #[error("a mount point cannot be empty")]
    Empty,
    #[error("invalid mount point {0:?}: it contains a wildcard character (+ or #)")]
    Wildcard(String),
    #[error("invalid mount point {0:?}: it contains a NUL character")]
    Nul(String),
    #[error("invalid mount point: {0} bytes, over the 65,535 a topic may have")]
    TooLong(usize),
    #[error("a client prefix of {0} bytes is not shorter than the broker prefix it replaces")]
    ClientPrefixTooLong(usize),
}

/// The longest topic name or filter the protocol can carry.
const MAX_TOPIC: usize = u16::MAX as usize;

/// One listener's mapping: its mount point (or, for a policy's client, the broker prefix
/// that a shorter client prefix stands for). Cheap to clone (shared text).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicMap {
    mount: Arc<str>,
    /// What the client sees in place of `mount` (empty for a mount point).
    client: Arc<str>,
    /// More (broker, client) prefix pairs of a way-out-only mapping
    /// ([`TopicMap::replace_each`]): a platform device gets its commands under `iot-2/`
    /// and its management requests under `iotdm-1/`. Empty for a mount point.
    others: Arc<[(Arc<str>, Arc<str>)]>,
}

impl TopicMap {
    /// A mapping that prefixes `mount_point`, checked as mosquitto checks it (a valid
    /// topic name: no wildcard).
    pub fn mount(mount_point: &str) -> Result<TopicMap, MountPointError> {
        if mount_point.is_empty() {
            return Err(MountPointError::Empty);
        }
        if mount_point.contains(['+', '#']) {
            return Err(MountPointError::Wildcard(mount_point.into()));
        }
        if mount_point.contains('\0') {
            return Err(MountPointError::Nul(mount_point.into()));
        }
        if mount_point.len() >= MAX_TOPIC {
            return Err(MountPointError::TooLong(mount_point.len()));
        }
        Ok(TopicMap {
            mount: mount_point.into(),
            client: Arc::from(""),
            others: Arc::from([]),
        })
    }

    /// A mapping for the way out only: topics starting with `broker` are delivered with
    /// `client` in its place; others are not delivered. `client` must be shorter than
    /// `broker`, which must be a valid mount point.
    pub fn replace(broker: &str, client: &str) -> Result<TopicMap, MountPointError> {
        let mut map = TopicMap::mount(broker)?;
        if client.len() >= broker.len() {
            return Err(MountPointError::ClientPrefixTooLong(client.len()));
        }
        map.client = client.into();
        Ok(map)
    }

    /// [`TopicMap::replace`] with several (broker, client) prefix pairs: a topic is
    /// delivered under the client prefix of the first pair whose broker prefix it starts
    /// with. At least one pair; each as `replace` requires.
    pub fn replace_each(pairs: &[(&str, &str)]) -> Result<TopicMap, MountPointError> {
        let Some(((broker, client), rest)) = pairs.split_first() else {
            return Err(MountPointError::Empty);
        };
        let mut map = TopicMap::replace(broker, client)?;
        let mut others = Vec::with_capacity(rest.len());
        for (broker, client) in rest {
            let checked = TopicMap::replace(broker, client)?;
            others.push((checked.mount, checked.client));
        }
        map.others = others.into();
        Ok(map)
    }

    /// The (broker, client) prefix pair that applies to `topic`, if any.
    fn pair_for(&self, topic: &[u8]) -> Option<(&str, &str)> {
        std::iter::once((&self.mount, &self.client))
            .chain(self.others.iter().map(|(b, c)| (b, c)))
            .find(|(broker, _)| topic.len() > broker.len() && topic.starts_with(broker.as_bytes()))
            .map(|(b, c)| (&**b, &**c))
    }

    /// The mount point.
    pub fn mount_point(&self) -> &str {
        &self.mount
    }

    /// The broker's name for a topic the client publishes to (or names in its will).
    pub fn to_broker_topic(&self, topic: &str) -> Result<ByteStr, TopicMapError> {
        let len = self.mount.len() + topic.len();
        if len > MAX_TOPIC {
            return Err(TopicMapError::TooLong {
                mount: self.mount.to_string(),
                len,
            });
        }
        let mut mapped = String::with_capacity(len);
        mapped.push_str(&self.mount);
        mapped.push_str(topic);
        Ok(ByteStr::from(mapped))
    }

    /// The broker's name for a filter the client subscribes or unsubscribes to. A shared
    /// subscription keeps its `$share/{group}/` in front: the mount point goes before the
    /// filter inside it (`$share/g/site/a/#`). A malformed `$share/...` is passed through
    /// unchanged for the subscription's own checks to refuse. The result must be a valid
    /// filter: the mount point `site` and the filter `#` make `site#`, which is not.
    pub fn to_broker_filter(&self, filter: &str) -> Result<ByteStr, TopicMapError> {
        let (share, inner) = match crate::shared::parse_share(filter) {
            Some(Ok((group, inner))) => (Some(group), inner),
            Some(Err(_)) => return Ok(ByteStr::from(filter)),
            None => (None, filter),
        };
        let share_len = share.map_or(0, |g| "$share/".len() + g.len() + 1);
        let len = share_len + self.mount.len() + inner.len();
        if len > MAX_TOPIC {
            return Err(TopicMapError::TooLong {
                mount: self.mount.to_string(),
                len,
            });
        }
        let mut mapped = String::with_capacity(len);
        if let Some(group) = share {
            mapped.push_str("$share/");
            mapped.push_str(group);
            mapped.push('/');
        }
        let at = mapped.len();
        mapped.push_str(&self.mount);
        mapped.push_str(inner);
        if let Err(why) = tern_proto::topic::validate_topic_filter(&mapped[at..]) {
            return Err(TopicMapError::InvalidFilter {
                mount: self.mount.to_string(),
                filter: filter.to_string(),
                why,
            });
        }
        Ok(ByteStr::from(mapped))
    }

    /// The client's name for a topic the broker routes: the topic without the mount point;
    /// `None` when the topic is not below the mount point (such a message is not for a
    /// client of this listener).
    pub fn to_client_topic<'t>(&self, topic: &'t str) -> Option<Cow<'t, str>> {
        let (mount, client) = self.pair_for(topic.as_bytes())?;
        let rest = &topic[mount.len()..];
        Some(match client.is_empty() {
            true => Cow::Borrowed(rest),
            false => Cow::Owned(format!("{client}{rest}")),
        })
    }

    /// Appends `frame` to `out` as this client gets it: the mount point cut from the
    /// front of its topic, with `packet_id`, `dup` and the expiry it has left patched in
    /// as [`PublishFrame::write`] does. Returns false, writing nothing, when the message's
    /// topic is not below the mount point.
    ///
    /// The frame is written whole and then closed up in place: a new fixed header and topic
    /// length (never longer than the old) go before the rest of the topic, which moves
    /// left over the mount point. No allocation beyond `out`'s own.
    pub fn write_frame(
        &self,
        frame: &PublishFrame,
        out: &mut BytesMut,
        packet_id: u16,
        dup: bool,
        expiry: Expiry,
    ) -> bool {
        let Some((header, remaining)) = fixed_header(frame.bytes()) else {
            return false;
        };
        let topic_at = header + 2;
        let Some(topic) = frame
            .bytes()
            .get(header..topic_at)
            .map(|b| usize::from(u16::from_be_bytes([b[0], b[1]])))
            .and_then(|len| frame.bytes().get(topic_at..topic_at + len))
        else {
            return false;
        };
        let Some((mount_prefix, client_prefix)) = self.pair_for(topic) else {
            return false;
        };
        let (mount, client) = (mount_prefix.len(), client_prefix.len());
        let cut = mount - client;
        let topic_len = topic.len();
        let start = out.len();
        match expiry {
            Expiry::Remaining(seconds) if frame.has_expiry() => frame.write_expiring(out, packet_id, dup, seconds),
            _ => frame.write(out, packet_id, dup),
        }
        let mut prefix = [0u8; 7];
        prefix[0] = out[start];
        let varint = put_variable_integer(&mut prefix[1..5], remaining - cut);
        let prefix_len = 1 + varint + 2;
        prefix[1 + varint..prefix_len].copy_from_slice(&((topic_len - cut) as u16).to_be_bytes());
        let end = out.len();
        // The rest of the topic and everything after it, moved left over the cut bytes,
        // behind the client's prefix.
        out.copy_within(start + topic_at + mount..end, start + prefix_len + client);
        out[start..start + prefix_len].copy_from_slice(&prefix[..prefix_len]);
        out[start + prefix_len..start + prefix_len + client].copy_from_slice(client_prefix.as_bytes());
        out.truncate(end - (topic_at + cut - prefix_len));
        true
    }

    /// How many bytes shorter a frame is for this client than as the broker encoded it,
    /// at least (the smallest cut of its prefix pairs).
    pub fn saved_bytes(&self) -> usize {
        self.others
            .iter()
            .map(|(b, c)| b.len() - c.len())
            .fold(self.mount.len() - self.client.len(), usize::min)
    }
}

/// The length of a packet's fixed header and its Remaining Length.
fn fixed_header(packet: &[u8]) -> Option<(usize, usize)> {
    let mut value = 0usize;
    for (i, byte) in packet.iter().skip(1).take(4).enumerate() {
        value |= usize::from(byte & 0x7F) << (7 * i);
        if byte & 0x80 == 0 {
            return Some((i + 2, value));
        }
    }
    None
}

/// Writes `value` as a Variable Byte Integer into `into` (room for four bytes); returns
/// how many bytes it took.
fn put_variable_integer(into: &mut [u8], mut value: usize) -> usize {
    let mut n = 0;
    loop {
        let mut byte = (value % 128) as u8;
        value /= 128;
        if value > 0 {
            byte |= 0x80;
        }
        into[n] = byte;
        n += 1;
        if value == 0 || n == into.len() {
            return n;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use tern_proto::{decode, Packet, Properties, Property, ProtocolVersion, Publish, QoS};

    fn map() -> TopicMap {
        TopicMap::mount("site/").unwrap()
    }

    #[test]
    fn mount_points_with_wildcards_or_nothing_are_refused() {
        assert!(matches!(TopicMap::mount(""), Err(MountPointError::Empty)));
        assert!(matches!(TopicMap::mount("a/+/"), Err(MountPointError::Wildcard(_))));
        assert!(matches!(TopicMap::mount("a/#"), Err(MountPointError::Wildcard(_))));
        assert!(TopicMap::mount("$SYS-like/").is_ok());
    }

    #[test]
    fn topics_and_filters_get_the_mount_point_in_front() {
        let m = map();
        assert_eq!(m.to_broker_topic("a/b").unwrap(), "site/a/b");
        assert_eq!(m.to_broker_filter("#").unwrap(), "site/#");
        assert_eq!(m.to_broker_filter("+/x").unwrap(), "site/+/x");
        assert_eq!(m.to_broker_filter("$SYS/#").unwrap(), "site/$SYS/#");
        assert_eq!(m.to_client_topic("site/a/b").as_deref(), Some("a/b"));
        assert_eq!(m.to_client_topic("other/a"), None);
        assert_eq!(m.to_client_topic("site/"), None);
    }

    #[test]
    fn a_shared_subscription_keeps_its_group_in_front() {
        let m = map();
        assert_eq!(m.to_broker_filter("$share/g/a/#").unwrap(), "$share/g/site/a/#");
        // Malformed shares are left for the subscription's own checks.
        assert_eq!(m.to_broker_filter("$share/g").unwrap(), "$share/g");
    }

    #[test]
    fn a_mount_point_without_a_slash_can_make_an_invalid_filter() {
        let m = TopicMap::mount("site").unwrap();
        assert_eq!(m.to_broker_topic("x").unwrap(), "sitex");
        assert!(matches!(
            m.to_broker_filter("#"),
            Err(TopicMapError::InvalidFilter { .. })
        ));
        assert!(matches!(
            m.to_broker_filter("+/a"),
            Err(TopicMapError::InvalidFilter { .. })
        ));
        assert_eq!(m.to_broker_filter("x/#").unwrap(), "sitex/#");
    }

    #[test]
    fn topics_over_the_protocol_limit_are_refused() {
        let long = "x".repeat(65_535 - 4);
        assert!(map().to_broker_topic(&long).is_err());
        assert!(map().to_broker_filter(&long).is_err());
        assert!(map().to_broker_topic(&long[..65_535 - 5]).is_ok());
    }

    fn frame(topic: &str, qos: QoS, version: ProtocolVersion, payload: usize) -> PublishFrame {
        let mut properties = Properties::default();
        if version.is_v5() {
            properties.push(Property::MessageExpiryInterval(100));
        }
        let publish = Publish {
            dup: false,
            qos,
            retain: true,
            topic: ByteStr::from(topic),
            packet_id: 0,
            properties,
            payload: Bytes::from(vec![7u8; payload]),
        };
        PublishFrame::new(&publish, version).unwrap()
    }

    #[test]
    fn a_delivered_frame_loses_the_mount_point_and_keeps_the_rest() {
        let m = map();
        for version in [ProtocolVersion::V3_1_1, ProtocolVersion::V5] {
            for qos in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce] {
                // Around 120 bytes of payload the Remaining Length drops below 128 with
                // the cut (a shorter header).
                for payload in [3, 120, 300] {
                    let f = frame("site/a/b", qos, version, payload);
                    let mut out = BytesMut::new();
                    // DUP only where it is allowed (QoS 1 and 2).
                    let dup = qos != QoS::AtMostOnce;
                    assert!(m.write_frame(&f, &mut out, 9, dup, Expiry::Remaining(42)));
                    // Five bytes fewer, six where the Remaining Length lost a byte.
                    assert!([f.len() - 5, f.len() - 6].contains(&out.len()));
                    let Ok(Some(Packet::Publish(p))) = decode(&mut out, version, usize::MAX) else {
                        panic!("not a PUBLISH")
                    };
                    assert!(out.is_empty());
                    assert_eq!(p.topic, "a/b");
                    assert_eq!(p.payload.len(), payload);
                    assert!(p.retain);
                    assert_eq!(p.qos, qos);
                    if qos != QoS::AtMostOnce {
                        assert_eq!(p.packet_id, 9);
                        assert!(p.dup);
                    }
                    if version.is_v5() {
                        assert_eq!(p.properties.message_expiry_interval(), Some(42));
                    }
                }
            }
        }
    }

    #[test]
    fn frames_are_appended_behind_what_the_buffer_holds() {
        let mut out = BytesMut::new();
        for topic in ["site/one", "site/two/levels"] {
            let f = frame(topic, QoS::AtLeastOnce, ProtocolVersion::V5, 200);
            assert!(map().write_frame(&f, &mut out, 3, false, Expiry::Never));
        }
        for topic in ["one", "two/levels"] {
            let Ok(Some(Packet::Publish(p))) = decode(&mut out, ProtocolVersion::V5, usize::MAX) else {
                panic!("not a PUBLISH")
            };
            assert_eq!((p.topic.as_str(), p.packet_id, p.payload.len()), (topic, 3, 200));
            assert_eq!(p.properties.message_expiry_interval(), Some(100));
        }
        assert!(out.is_empty());
    }

    #[test]
    fn a_replaced_prefix_is_delivered_as_the_clients() {
        let m = TopicMap::replace("$iot/o/iot-2/type/t/id/d/", "iot-2/").unwrap();
        assert_eq!(m.saved_bytes(), 19);
        assert_eq!(
            m.to_client_topic("$iot/o/iot-2/type/t/id/d/cmd/c/fmt/f").as_deref(),
            Some("iot-2/cmd/c/fmt/f")
        );
        assert_eq!(m.to_client_topic("$iot/o/iot-2/type/t/id/e/cmd/c/fmt/f"), None);
        for version in [ProtocolVersion::V3_1_1, ProtocolVersion::V5] {
            for payload in [3, 120, 300] {
                let f = frame(
                    "$iot/o/iot-2/type/t/id/d/cmd/c/fmt/f",
                    QoS::AtLeastOnce,
                    version,
                    payload,
                );
                let mut out = BytesMut::from(&b"xy"[..]);
                assert!(m.write_frame(&f, &mut out, 5, true, Expiry::Remaining(7)));
                assert_eq!(&out[..2], b"xy");
                let _ = out.split_to(2);
                let Ok(Some(Packet::Publish(p))) = decode(&mut out, version, usize::MAX) else {
                    panic!("not a PUBLISH")
                };
                assert!(out.is_empty());
                assert_eq!(p.topic, "iot-2/cmd/c/fmt/f");
                assert_eq!((p.packet_id, p.dup, p.payload.len()), (5, true, payload));
            }
        }
        assert!(TopicMap::replace("ab/", "abc/").is_err());
    }

    #[test]
    fn several_prefix_pairs_each_deliver_under_their_client_prefix() {
        let m = TopicMap::replace_each(&[
            ("$iot/o/iot-2/type/t/id/d/", "iot-2/"),
            ("$iot/o/iotdm-1/type/t/id/d/", "iotdm-1/"),
        ])
        .unwrap();
        assert_eq!(m.saved_bytes(), 19);
        assert_eq!(
            m.to_client_topic("$iot/o/iotdm-1/type/t/id/d/mgmt/initiate/device/reboot")
                .as_deref(),
            Some("iotdm-1/mgmt/initiate/device/reboot")
        );
        assert_eq!(m.to_client_topic("$iot/o/iotdm-1/type/t/id/e/response"), None);
        assert_eq!(m.to_client_topic("$iot/o/iotdm-1/type/t/id/d/"), None);
        for (topic, client) in [
            ("$iot/o/iot-2/type/t/id/d/cmd/c/fmt/f", "iot-2/cmd/c/fmt/f"),
            ("$iot/o/iotdm-1/type/t/id/d/response", "iotdm-1/response"),
        ] {
            let f = frame(topic, QoS::AtLeastOnce, ProtocolVersion::V5, 40);
            let mut out = BytesMut::new();
            assert!(m.write_frame(&f, &mut out, 9, false, Expiry::Never));
            let Ok(Some(Packet::Publish(p))) = decode(&mut out, ProtocolVersion::V5, usize::MAX) else {
                panic!("not a PUBLISH")
            };
            assert_eq!((p.topic.as_str(), p.packet_id, p.payload.len()), (client, 9, 40));
        }
        let mut out = BytesMut::new();
        let f = frame(
            "$iot/o/iotdm-1/type/t/id/e/response",
            QoS::AtLeastOnce,
            ProtocolVersion::V5,
            3,
        );
        assert!(!m.write_frame(&f, &mut out, 1, false, Expiry::Never));
        assert!(TopicMap::replace_each(&[]).is_err());
    }

    #[test]
    fn a_frame_outside_the_mount_point_is_not_written() {
        let mut out = BytesMut::new();
        let f = frame("other/a", QoS::AtLeastOnce, ProtocolVersion::V5, 3);
        assert!(!map().write_frame(&f, &mut out, 1, false, Expiry::Never));
        let f = frame("site/", QoS::AtLeastOnce, ProtocolVersion::V5, 3);
        assert!(!map().write_frame(&f, &mut out, 1, false, Expiry::Never));
        assert!(out.is_empty());
    }
}
