//! Every packet in and out, in mosquitto's words, at debug level: what `tern broker -v` and
//! `log_type debug`/`log_type all` show, e.g. `Received PUBLISH from client (d0, q1, r0,
//! m3, 'topic', ... (5 bytes))` and `Sending PUBACK to client (m3, rc0)`. Nothing is
//! formatted unless debug logging is on.

use bytes::BytesMut;
use tern_proto::{Packet, ProtocolVersion, Publish};

/// Whether packets are logged (debug level on).
pub(super) fn enabled() -> bool {
    tracing::enabled!(tracing::Level::DEBUG)
}

/// Logs a packet received from `client`.
pub(super) fn received(client: &str, packet: &Packet) {
    let (name, details) = describe(packet, true);
    tracing::debug!("Received {name} from {client}{details}");
}

/// Logs a packet sent to `client`.
pub(super) fn sending(client: &str, packet: &Packet) {
    let (name, details) = describe(packet, false);
    tracing::debug!("Sending {name} to {client}{details}");
}

/// Logs the PUBLISH packets written to `out` from `start` on.
pub(super) fn sending_written(client: &str, out: &BytesMut, start: usize, version: ProtocolVersion) {
    let mut written = BytesMut::from(out.get(start..).unwrap_or_default());
    while let Ok(Some(packet)) = tern_proto::decode(&mut written, version, usize::MAX) {
        sending(client, &packet);
    }
}

fn publish_details(p: &Publish) -> String {
    format!(
        " (d{}, q{}, r{}, m{}, '{}', ... ({} bytes))",
        u8::from(p.dup),
        p.qos as u8,
        u8::from(p.retain),
        p.packet_id,
        p.topic,
        p.payload.len()
    )
}

/// The packet's name and mosquitto's detail for it; acknowledgements read differently
/// received (`Mid: 1, RC:0`) and sent (`m1, rc0`), as in mosquitto's log.
fn describe(packet: &Packet, incoming: bool) -> (&'static str, String) {
    let ack = |id: u16, rc: u8, with_rc: bool| match (incoming, with_rc) {
        (true, true) => format!(" (Mid: {id}, RC:{rc})"),
        (true, false) => format!(" (Mid: {id})"),
        (false, true) => format!(" (m{id}, rc{rc})"),
        (false, false) => format!(" (m{id})"),
    };
    match packet {
        Packet::Publish(p) => ("PUBLISH", publish_details(p)),
        Packet::PublishAck(r) => ("PUBACK", ack(r.packet_id, r.reason_code.0, true)),
        Packet::PublishReceived(r) => ("PUBREC", ack(r.packet_id, r.reason_code.0, true)),
        Packet::PublishRelease(r) => ("PUBREL", ack(r.packet_id, r.reason_code.0, false)),
        Packet::PublishComplete(r) => ("PUBCOMP", ack(r.packet_id, r.reason_code.0, incoming)),
        Packet::ConnectAck(a) => (
            "CONNACK",
            format!(" ({}, {})", u8::from(a.session_present), a.reason_code.0),
        ),
        Packet::Subscribe(s) => {
            let filters: Vec<String> = s
                .subscriptions
                .iter()
                .map(|sub| format!("{} (QoS {})", sub.filter, sub.options.qos as u8))
                .collect();
            ("SUBSCRIBE", format!(": {}", filters.join(", ")))
        }
        Packet::Unsubscribe(u) => {
            let filters: Vec<&str> = u.filters.iter().map(|f| f.as_str()).collect();
            ("UNSUBSCRIBE", format!(": {}", filters.join(", ")))
        }
        other => (other.packet_type().name(), String::new()),
    }
}
