//! `-d`: one line per packet sent and received, in libmosquitto's words, so that what
//! users grep for in `mosquitto_pub -d` / `mosquitto_sub -d` output is found here too
//! (`Client ID sending PUBLISH (d0, q1, r0, m1, 'topic', ... (5 bytes))`). The lines go
//! to standard error, which keeps standard output for the messages themselves.

use tern_client::{Direction, PacketTrace};
use tern_proto::{Packet, ProtocolVersion, ReasonCode};

/// A packet trace that prints each packet of client `client_id` on standard error. With
/// `subscribed`, each SUBACK is followed by mosquitto_sub's own `Subscribed (mid: 1): 1`
/// line (the granted QoS or failure code of each filter), right behind it as there.
pub fn tracer(client_id: String, version: ProtocolVersion, subscribed: bool) -> PacketTrace {
    PacketTrace::new(move |direction, packet| {
        for line in describe(&client_id, version, direction, packet) {
            eprintln!("{line}");
        }
        if let (true, Direction::Received, Packet::SubscribeAck(ack)) = (subscribed, direction, packet) {
            let codes: Vec<String> = ack.reason_codes.iter().map(|c| c.0.to_string()).collect();
            eprintln!("Subscribed (mid: {}): {}", ack.packet_id, codes.join(", "));
        }
    })
}

/// libmosquitto's debug lines for `packet` (several for a SUBSCRIBE or UNSUBSCRIBE with
/// several filters, one per filter, as libmosquitto writes them).
pub fn describe(id: &str, version: ProtocolVersion, direction: Direction, packet: &Packet) -> Vec<String> {
    match direction {
        Direction::Sent => sent(id, packet),
        Direction::Received => received(id, version, packet).into_iter().collect(),
    }
}

fn publish_summary(p: &tern_proto::Publish) -> String {
    format!(
        "(d{}, q{}, r{}, m{}, '{}', ... ({} bytes))",
        u8::from(p.dup),
        p.qos as u8,
        u8::from(p.retain),
        p.packet_id,
        p.topic,
        p.payload.len()
    )
}

fn sent(id: &str, packet: &Packet) -> Vec<String> {
    let line = match packet {
        Packet::Connect(_) => format!("Client {id} sending CONNECT"),
        Packet::Publish(p) => format!("Client {id} sending PUBLISH {}", publish_summary(p)),
        Packet::PublishAck(r) => format!("Client {id} sending PUBACK (m{}, rc{})", r.packet_id, r.reason_code.0),
        Packet::PublishReceived(r) => format!("Client {id} sending PUBREC (m{}, rc{})", r.packet_id, r.reason_code.0),
        Packet::PublishRelease(r) => format!("Client {id} sending PUBREL (m{})", r.packet_id),
        Packet::PublishComplete(r) => format!("Client {id} sending PUBCOMP (m{})", r.packet_id),
        Packet::Subscribe(s) => {
            return s
                .subscriptions
                .iter()
                .map(|sub| {
                    let o = sub.options;
                    let options = u8::from(o.no_local) << 2
                        | u8::from(o.retain_as_published) << 3
                        | (o.retain_handling as u8) << 4;
                    format!(
                        "Client {id} sending SUBSCRIBE (Mid: {}, Topic: {}, QoS: {}, Options: 0x{options:02x})",
                        s.packet_id, sub.filter, o.qos as u8,
                    )
                })
                .collect()
        }
        Packet::Unsubscribe(u) => {
            return u
                .filters
                .iter()
                .map(|f| format!("Client {id} sending UNSUBSCRIBE (Mid: {}, Topic: {f})", u.packet_id))
                .collect()
        }
        Packet::PingRequest => format!("Client {id} sending PINGREQ"),
        Packet::Disconnect(_) => format!("Client {id} sending DISCONNECT"),
        Packet::Auth(a) => format!("Client {id} sending AUTH (rc{})", a.reason_code.0),
        other => format!("Client {id} sending {}", other.packet_type().name()),
    };
    vec![line]
}

fn received(id: &str, version: ProtocolVersion, packet: &Packet) -> Option<String> {
    Some(match packet {
        Packet::ConnectAck(ack) => format!(
            "Client {id} received CONNACK ({})",
            connack_code(version, ack.reason_code)
        ),
        Packet::Publish(p) => format!("Client {id} received PUBLISH {}", publish_summary(p)),
        Packet::PublishAck(r) => format!(
            "Client {id} received PUBACK (Mid: {}, RC:{})",
            r.packet_id, r.reason_code.0
        ),
        Packet::PublishReceived(r) => format!("Client {id} received PUBREC (Mid: {})", r.packet_id),
        Packet::PublishRelease(r) => format!("Client {id} received PUBREL (Mid: {})", r.packet_id),
        Packet::PublishComplete(r) => format!(
            "Client {id} received PUBCOMP (Mid: {}, RC:{})",
            r.packet_id, r.reason_code.0
        ),
        Packet::SubscribeAck(_) => format!("Client {id} received SUBACK"),
        Packet::UnsubscribeAck(_) => format!("Client {id} received UNSUBACK"),
        Packet::PingResponse => format!("Client {id} received PINGRESP"),
        // libmosquitto's own line has no client id.
        Packet::Disconnect(d) => format!("Received DISCONNECT ({})", d.reason_code.0),
        Packet::Auth(a) => format!("Client {id} received AUTH (rc{})", a.reason_code.0),
        other => format!("Client {id} received {}", other.packet_type().name()),
    })
}

/// The number a CONNACK carries on the wire: 3.x return codes (5: not authorised), 5.0
/// reason codes (135).
fn connack_code(version: ProtocolVersion, code: ReasonCode) -> u8 {
    if version.is_v5() {
        code.0
    } else {
        code.to_connect_return_code()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use tern_proto::{
        ByteStr, ConnectAck, Properties, Publish, PublishResponse, QoS, Subscribe, Subscription, SubscriptionOptions,
    };

    const V311: ProtocolVersion = ProtocolVersion::V3_1_1;

    fn publish(qos: QoS, packet_id: u16) -> Packet {
        Packet::Publish(Publish {
            dup: false,
            qos,
            retain: false,
            topic: ByteStr::from("a/b"),
            packet_id,
            properties: Properties::default(),
            payload: Bytes::from_static(b"hello"),
        })
    }

    fn one(direction: Direction, packet: &Packet) -> String {
        describe("(null)", V311, direction, packet).join("\n")
    }

    #[test]
    fn lines_read_as_mosquitto_2_prints_them() {
        assert_eq!(
            one(Direction::Sent, &publish(QoS::AtLeastOnce, 1)),
            "Client (null) sending PUBLISH (d0, q1, r0, m1, 'a/b', ... (5 bytes))"
        );
        assert_eq!(
            one(Direction::Received, &Packet::PublishAck(PublishResponse::new(1))),
            "Client (null) received PUBACK (Mid: 1, RC:0)"
        );
        assert_eq!(
            one(Direction::Sent, &Packet::PublishAck(PublishResponse::new(3))),
            "Client (null) sending PUBACK (m3, rc0)"
        );
        assert_eq!(
            one(Direction::Sent, &Packet::PublishRelease(PublishResponse::new(1))),
            "Client (null) sending PUBREL (m1)"
        );
        assert_eq!(
            one(Direction::Received, &Packet::PublishReceived(PublishResponse::new(1))),
            "Client (null) received PUBREC (Mid: 1)"
        );
        assert_eq!(
            one(Direction::Received, &Packet::PublishComplete(PublishResponse::new(1))),
            "Client (null) received PUBCOMP (Mid: 1, RC:0)"
        );
    }

    #[test]
    fn a_subscribe_with_two_filters_is_two_lines() {
        let options = SubscriptionOptions {
            qos: QoS::AtLeastOnce,
            ..Default::default()
        };
        let subscribe = Packet::Subscribe(Subscribe {
            packet_id: 1,
            subscriptions: ["x/#", "y"]
                .iter()
                .map(|f| Subscription {
                    filter: ByteStr::from(*f),
                    options,
                })
                .collect(),
            properties: Properties::default(),
        });
        assert_eq!(
            describe("keep", V311, Direction::Sent, &subscribe),
            vec![
                "Client keep sending SUBSCRIBE (Mid: 1, Topic: x/#, QoS: 1, Options: 0x00)",
                "Client keep sending SUBSCRIBE (Mid: 1, Topic: y, QoS: 1, Options: 0x00)",
            ]
        );
    }

    #[test]
    fn connack_codes_are_the_ones_on_the_wire() {
        let refused = Packet::ConnectAck(ConnectAck {
            session_present: false,
            reason_code: ReasonCode::NOT_AUTHORIZED,
            properties: Properties::default(),
        });
        assert_eq!(one(Direction::Received, &refused), "Client (null) received CONNACK (5)");
        assert_eq!(
            describe("c", ProtocolVersion::V5, Direction::Received, &refused),
            vec!["Client c received CONNACK (135)"]
        );
    }
}
