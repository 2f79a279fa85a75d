//! The rules that excuse Tern's named differences from mosquitto: each rewrites what Tern
//! sent into what mosquitto sends in its place, checking on the way that the difference
//! is exactly the named one, and reports the exception it used. Packets are decoded with
//! Tern's codec only here, and only those a rule changes are encoded again.

use crate::Reply;
use bytes::BytesMut;
use std::collections::{BTreeSet, HashMap};
use tern_proto::{decode, encode, ByteStr, Packet, Properties, Property, PropertyId, ProtocolVersion};

/// The packet decoded as a 5.0 client receives it, if it is one (3.x replies are left alone).
fn decoded(reply: &Reply, bytes: &[u8]) -> Option<Packet> {
    if reply.level != 5 {
        return None;
    }
    decode(&mut BytesMut::from(bytes), ProtocolVersion::V5, usize::MAX)
        .ok()
        .flatten()
}

fn encoded(packet: &Packet) -> Vec<u8> {
    let mut out = BytesMut::new();
    encode(packet, ProtocolVersion::V5, &mut out).unwrap();
    out.to_vec()
}

/// The property list of a packet that has one.
fn properties(packet: &mut Packet) -> Option<&mut Properties> {
    Some(match packet {
        Packet::ConnectAck(p) => &mut p.properties,
        Packet::Publish(p) => &mut p.properties,
        Packet::PublishAck(p) | Packet::PublishReceived(p) | Packet::PublishRelease(p) | Packet::PublishComplete(p) => {
            &mut p.properties
        }
        Packet::SubscribeAck(p) => &mut p.properties,
        Packet::UnsubscribeAck(p) => &mut p.properties,
        Packet::Disconnect(p) => &mut p.properties,
        Packet::Auth(p) => &mut p.properties,
        _ => return None,
    })
}

/// Applies `rule` to every packet of `replies`; the rule returns the packet rewritten, or
/// `None` to leave it.
fn rewrite(replies: &mut [Reply], mut rule: impl FnMut(usize, usize, &Reply, Packet) -> Option<Packet>) -> bool {
    let mut changed = false;
    for (i, reply) in replies.iter_mut().enumerate() {
        for j in 0..reply.packets.len() {
            let Some(packet) = decoded(reply, &reply.packets[j]) else {
                continue;
            };
            if let Some(new) = rule(i, j, reply, packet) {
                reply.packets[j] = encoded(&new);
                changed = true;
            }
        }
    }
    changed
}

/// Masks the values each broker makes up, on both sides.
pub fn mask(theirs: &mut [Reply], ours: &mut [Reply], used: &mut BTreeSet<&'static str>) {
    let mut rule = |_: usize, _: usize, _: &Reply, mut packet: Packet| {
        let Packet::ConnectAck(ack) = &mut packet else {
            return None;
        };
        ack.properties.assigned_client_identifier()?;
        for p in ack.properties.0.iter_mut() {
            if let Property::AssignedClientIdentifier(id) = p {
                *id = ByteStr::from("*");
            }
        }
        Some(packet)
    };
    if rewrite(theirs, &mut rule) | rewrite(ours, &mut rule) {
        used.insert("assigned-client-identifier");
    }
}

/// Rewrites Tern's replies by the rules of the named exceptions.
pub fn excuse(theirs: &[Reply], ours: &mut [Reply], used: &mut BTreeSet<&'static str>) {
    let strip = |packet: &mut Packet, id: PropertyId| -> bool {
        let Some(properties) = properties(packet) else {
            return false;
        };
        let before = properties.0.len();
        properties.remove(id);
        properties.0.len() != before
    };
    // What mosquitto's CONNACK in the same place carries.
    let their_connack = |i: usize, j: usize| -> Option<Properties> {
        let reply = theirs.get(i)?;
        match decoded(reply, reply.packets.get(j)?)? {
            Packet::ConnectAck(ack) => Some(ack.properties),
            _ => None,
        }
    };
    if rewrite(ours, |_, _, _, mut p| {
        strip(&mut p, PropertyId::ReasonString).then_some(p)
    }) {
        used.insert("reason-string");
    }
    for (id, exception) in [
        (PropertyId::MaximumPacketSize, "maximum-packet-size"),
        (PropertyId::ResponseInformation, "response-information"),
    ] {
        let changed = rewrite(ours, |i, j, _, mut p| {
            let theirs = their_connack(i, j)?;
            let absent = !theirs.iter().any(|q| q.id() == id);
            (matches!(p, Packet::ConnectAck(_)) && absent && strip(&mut p, id)).then_some(p)
        });
        if changed {
            used.insert(exception);
        }
    }
    if resolve_aliases(ours) {
        used.insert("outgoing-topic-aliases");
    }
}

/// Replaces the topic aliases Tern assigned by the topics, per client, if they were used
/// as they must be: an alias is set with a topic once, and from then on sent alone (a
/// message that repeats the topic with its alias is left as it is, and so differs).
fn resolve_aliases(ours: &mut [Reply]) -> bool {
    let mut aliases: HashMap<(&'static str, u16), ByteStr> = HashMap::new();
    rewrite(ours, |_, _, reply, mut packet| {
        let Packet::Publish(publish) = &mut packet else {
            return None;
        };
        let alias = publish.properties.topic_alias()?;
        let key = (reply.client, alias);
        if publish.topic.is_empty() {
            publish.topic = aliases.get(&key)?.clone();
        } else if aliases.get(&key) == Some(&publish.topic) {
            return None;
        } else {
            aliases.insert(key, publish.topic.clone());
        }
        publish.properties.remove(PropertyId::TopicAlias);
        Some(packet)
    })
}
