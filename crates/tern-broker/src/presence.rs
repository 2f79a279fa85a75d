//! Client presence without wills (`presence_events true`): for every client that connects
//! or disconnects, a JSON event on `$SYS/broker/clients/<client id>/connected` or
//! `.../disconnected`, published like any message (so the ACL decides who may read it).
//!
//! It is a consumer of the event stream (`events.rs`), in one task: the connection tasks
//! only emit, and this task builds and routes the messages. One connection's events are
//! emitted in order by its own task, and a takeover's "taken over" disconnect is emitted
//! before the newcomer's connect; one task publishing them in stream order keeps that
//! order for every subscriber. A task that falls more than the stream's buffer behind
//! loses the oldest events (logged and counted in `tern_events_lost_total`).
//!
//! Timestamps are RFC 3339 in UTC with milliseconds (`2026-11-29T22:15:03.123Z`). A client
//! id that is not a valid single topic level has `/`, `+`, `#`, `%` and NUL written as
//! `%XX` in the topic (the JSON carries it as it is).

use crate::broker::BrokerState;
use crate::events::{ClientInfo, Event, EventKind};
use bytes::Bytes;
use serde_json::json;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};
use tern_proto::{ByteStr, Properties, Property, ProtocolVersion, Publish, QoS};
use tokio::task::JoinHandle;

/// The topic prefix of presence events.
pub const PREFIX: &str = "$SYS/broker/clients/";

/// Starts the presence task if `presence_events` is on; it subscribes to the event stream
/// before returning, so it sees every client that connects afterwards.
pub(crate) fn spawn(state: &Arc<BrokerState>) -> Option<JoinHandle<()>> {
    if !state.config().presence_events {
        return None;
    }
    let mut events = state
        .events()
        .subscribe(&[EventKind::Connected, EventKind::Disconnected]);
    let state = state.clone();
    Some(tokio::spawn(async move {
        loop {
            let event = tokio::select! {
                () = state.shutdown.cancelled() => return,
                event = events.recv() => event,
            };
            let Some(event) = event else {
                return;
            };
            if let Some(publish) = message(&event) {
                state.router.publish(&publish, None, &state.metrics);
            }
        }
    }))
}

/// The presence message for `event`, if it is a connect or disconnect.
pub fn message(event: &Event) -> Option<Publish> {
    let (client, what, body) = match event {
        Event::Connected(client) => {
            let mut body = common(client);
            body["clean_start"] = json!(client.clean_start);
            body["keepalive"] = json!(client.keep_alive);
            (client, "connected", body)
        }
        Event::Disconnected {
            client,
            reason,
            detail,
            at,
            ..
        } => {
            let mut body = common(client);
            body["reason"] = json!(reason.label());
            body["detail"] = json!(&**detail);
            body["disconnected_at"] = json!(rfc3339(*at));
            (client, "disconnected", body)
        }
        _ => return None,
    };
    let topic = format!("{PREFIX}{}/{what}", topic_level(&client.client_id));
    if topic.len() > usize::from(u16::MAX) {
        tracing::warn!(client = %client.client_id, "client id too long for a presence topic: no {what} event");
        return None;
    }
    let mut properties = Properties::default();
    properties.push(Property::PayloadFormatIndicator(1));
    properties.push(Property::ContentType(ByteStr::from("application/json")));
    Some(Publish {
        dup: false,
        qos: QoS::AtLeastOnce,
        retain: false,
        topic: ByteStr::from(topic),
        packet_id: 0,
        properties,
        payload: Bytes::from(body.to_string()),
    })
}

/// The fields both events carry.
fn common(client: &ClientInfo) -> serde_json::Value {
    json!({
        "clientid": client.client_id.as_str(),
        "username": client.user.as_deref(),
        "address": client.address.to_string(),
        "protocol": protocol_name(client.protocol),
        "connected_at": rfc3339(client.connected_at),
    })
}

pub fn protocol_name(version: ProtocolVersion) -> &'static str {
    match version {
        ProtocolVersion::V3_1 => "mqttv31",
        ProtocolVersion::V3_1_1 => "mqttv311",
        ProtocolVersion::V5 => "mqttv5",
    }
}

/// `client_id` as one topic level: `/`, `+`, `#`, `%` and NUL percent-encoded.
pub fn topic_level(client_id: &str) -> String {
    let mut level = String::with_capacity(client_id.len());
    for c in client_id.chars() {
        match c {
            '/' | '+' | '#' | '%' | '\0' => level.push_str(&format!("%{:02X}", c as u32)),
            c => level.push(c),
        }
    }
    level
}

/// `t` as RFC 3339 in UTC with milliseconds.
pub fn rfc3339(t: SystemTime) -> String {
    let since = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let seconds = since.as_secs();
    let (year, month, day) = civil_date((seconds / 86_400) as i64);
    let in_day = seconds % 86_400;
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        in_day / 3600,
        in_day % 3600 / 60,
        in_day % 60,
        since.subsec_millis()
    )
}

/// The proleptic Gregorian date `days` after 1970-01-01, counting in 400-year cycles of
/// 146,097 days from 0000-03-01 (so that the leap day ends each year).
fn civil_date(days: i64) -> (i64, u32, u32) {
    let from_march_0000 = days + 719_468;
    let cycle = from_march_0000.div_euclid(146_097);
    let day_of_cycle = from_march_0000.rem_euclid(146_097);
    let year_of_cycle = (day_of_cycle - day_of_cycle / 1460 + day_of_cycle / 36_524 - day_of_cycle / 146_096) / 365;
    let day_of_year = day_of_cycle - (365 * year_of_cycle + year_of_cycle / 4 - year_of_cycle / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_from_march + 2) / 5 + 1;
    let month = if month_from_march < 10 {
        month_from_march + 3
    } else {
        month_from_march - 9
    };
    let year = year_of_cycle + cycle * 400 + i64::from(month <= 2);
    (year, month as u32, day as u32)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::DisconnectReason;
    use std::time::Duration;

    fn at(seconds: u64, millis: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(seconds) + Duration::from_millis(millis)
    }

    #[test]
    fn timestamps_are_rfc3339_utc_with_milliseconds() {
        assert_eq!(rfc3339(at(0, 0)), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(at(951_782_400, 5)), "2000-02-29T00:00:00.005Z");
        assert_eq!(rfc3339(at(951_955_199, 999)), "2000-03-01T23:59:59.999Z");
        assert_eq!(rfc3339(at(1_709_251_199, 0)), "2024-02-29T23:59:59.000Z");
        assert_eq!(rfc3339(at(4_102_444_800, 0)), "2100-01-01T00:00:00.000Z");
    }

    #[test]
    fn a_client_id_that_is_not_one_topic_level_is_percent_encoded() {
        assert_eq!(topic_level("sensor-1"), "sensor-1");
        assert_eq!(topic_level("a/b+c#d%e"), "a%2Fb%2Bc%23d%25e");
        assert_eq!(topic_level("é"), "é");
    }

    #[test]
    fn a_disconnect_becomes_a_json_message_on_the_clients_topic() {
        let client = Arc::new(ClientInfo {
            client_id: ByteStr::from("dev/1"),
            user: Some("alice".into()),
            address: "127.0.0.1:5000".parse().unwrap(),
            protocol: ProtocolVersion::V5,
            listener: 0,
            clean_start: true,
            keep_alive: 30,
            connected_at: at(0, 0),
        });
        let event = Event::Disconnected {
            client,
            reason: DisconnectReason::KeepAliveTimeout,
            detail: Arc::from("keepalive timeout"),
            at: at(60, 0),
            traffic: Default::default(),
        };
        let publish = message(&event).unwrap();
        assert_eq!(&*publish.topic, "$SYS/broker/clients/dev%2F1/disconnected");
        let body: serde_json::Value = serde_json::from_slice(&publish.payload).unwrap();
        assert_eq!(body["clientid"], "dev/1");
        assert_eq!(body["username"], "alice");
        assert_eq!(body["protocol"], "mqttv5");
        assert_eq!(body["reason"], "keepalive timeout");
        assert_eq!(body["disconnected_at"], "1970-01-01T00:01:00.000Z");
        assert!(message(&Event::Unsubscribed {
            client_id: ByteStr::from("x"),
            filter: ByteStr::from("y")
        })
        .is_none());
    }
}
