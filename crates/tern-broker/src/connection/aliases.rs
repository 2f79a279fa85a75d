//! Topic aliases the broker assigns towards a 5.0 client ([`OutgoingAliases`]).

use super::write_frame;
use crate::session::Expiry;
use crate::topic_map::TopicMap;
use bytes::BytesMut;
use std::collections::HashMap;
use tern_proto::{encode, ByteStr, Packet, Property, ProtocolVersion, PublishFrame};

/// Topic aliases from the broker to one client (5.0): the first message on a topic sends
/// the topic with a new alias, later ones the alias alone. Aliases are assigned until the
/// client's Topic Alias Maximum is reached; later topics are sent in full.
#[derive(Debug)]
pub(crate) struct OutgoingAliases {
    /// The client's Topic Alias Maximum.
    maximum: u16,
    assigned: HashMap<ByteStr, u16>,
}

impl OutgoingAliases {
    pub(crate) fn new(maximum: u16) -> OutgoingAliases {
        OutgoingAliases {
            maximum,
            assigned: HashMap::new(),
        }
    }

    /// Appends the message of `frame`, re-encoded with an alias (a client that asked for
    /// aliases pays for its own copy), under the client's name for its topic (`map`).
    /// Returns false, writing nothing, when the topic has no name for this client.
    pub(super) fn write(
        &mut self,
        frame: &PublishFrame,
        out: &mut BytesMut,
        (packet_id, expiry): (u16, Expiry),
        map: Option<&TopicMap>,
    ) -> bool {
        // The frame as this client gets it (packet id, time left), decoded back. Not the
        // frame's own bytes: their packet id is a placeholder 0, which the decoder rightly
        // refuses for QoS 1 and 2, so those were once sent without an alias.
        let mut bytes = BytesMut::with_capacity(frame.len());
        write_frame(frame, &mut bytes, packet_id, false, expiry);
        let Ok(Some(Packet::Publish(mut publish))) = tern_proto::decode(&mut bytes, ProtocolVersion::V5, usize::MAX)
        else {
            write_frame(frame, out, packet_id, false, expiry);
            return true;
        };
        if let Some(map) = map {
            match map.to_client_topic(&publish.topic) {
                Some(topic) => publish.topic = ByteStr::from(topic.as_ref()),
                None => return false,
            }
        }
        match self.assigned.get(&publish.topic) {
            Some(&alias) => {
                publish.topic = ByteStr::default();
                publish.properties.push(Property::TopicAlias(alias));
            }
            None if self.assigned.len() < usize::from(self.maximum) => {
                let alias = self.assigned.len() as u16 + 1;
                // A copy: the decoded topic shares the whole message's buffer.
                self.assigned.insert(ByteStr::from(publish.topic.as_str()), alias);
                publish.properties.push(Property::TopicAlias(alias));
            }
            None => {}
        }
        if let Err(e) = encode(&Packet::Publish(publish), ProtocolVersion::V5, out) {
            tracing::error!("cannot encode an aliased PUBLISH: {e}");
        }
        true
    }
}
