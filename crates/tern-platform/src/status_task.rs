//! The status publisher: a consumer of the broker's event stream that turns the connects,
//! disconnects and refused connects of platform listeners' clients into the platform's
//! `mon` messages ([`crate::status`]) and publishes them through the admin facade.
//!
//! It runs as one task beside the broker, so it never slows a connection down: the
//! connection tasks only emit events. Clients of plain listeners are ignored, and so are
//! refused connects whose client id names no platform identity of a known organization
//! (nothing to publish, and nobody may create topics of organizations that do not exist).

use crate::identity::ClientId;
use crate::policy::client_id_of_session;
use crate::registry::Registry;
use crate::registry_model::iso8601;
use crate::status::{self, close_code, Action, Protocol, Status};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};
use tern_broker::admin::Admin;
use tern_broker::events::{ClientInfo, DisconnectReason, Event, EventKind};
use tern_broker::{BrokerHandle, BrokerState};
use tern_proto::{ProtocolVersion, ReasonCode};
use tokio::task::JoinHandle;

/// Starts the status publisher; it subscribes before returning, so it sees every client
/// that connects afterwards.
pub fn spawn(handle: &BrokerHandle, registry: Arc<Registry>) -> JoinHandle<()> {
    let state = handle.state().clone();
    let admin = handle.admin();
    let mut events = state
        .events()
        .subscribe(&[EventKind::Connected, EventKind::Disconnected, EventKind::Refused]);
    // A consumer the broker waits for at shutdown: the Disconnect (CloseCode 93) of each
    // client still connected is published, and kept, before the store closes.
    let stream = state.clone();
    stream.events().spawn_consumer(async move {
        while let Some(event) = events.recv().await {
            if let Some((client, body)) = status_of(&event, (&state, &admin), &registry) {
                publish(&admin, &client, &body);
            }
        }
    })
}

fn publish(admin: &Admin, client: &ClientId, body: &Status) {
    let message = status::message(client, body);
    if message.clear_retained_first {
        let _ = admin.publish_as_broker(&message.topic, bytes::Bytes::new(), true);
    }
    if let Err(e) = admin.publish_as_broker(&message.topic, message.payload.into(), message.retain) {
        tracing::warn!(client = %client, "status message not published: {e}");
    }
}

/// The broker's state (for its configuration) and its admin facade.
type Facade<'a> = (&'a BrokerState, &'a Admin);

/// Where a listener is and how clients reach it: its port, whether it is TLS, whether
/// it is WebSocket; `None` when it is not in platform mode.
fn listener_facts((state, admin): Facade, index: usize) -> Option<(u16, bool, bool)> {
    let config = state.config();
    let listener = config.listeners.get(index).filter(|l| l.platform)?;
    let bound = admin.listeners().into_iter().find(|l| l.index == index);
    let port = bound
        .as_ref()
        .and_then(|l| l.address.rsplit(':').next()?.parse().ok())
        .unwrap_or(listener.port);
    let websocket = listener.protocol == tern_broker::config::ListenerProtocol::WebSockets;
    Some((port, listener.tls.enabled(), websocket))
}

/// The status message an event calls for, if any.
fn status_of(event: &Event, facade: Facade, registry: &Registry) -> Option<(ClientId, Status)> {
    match event {
        Event::Connected(client) => {
            let (id, mut body) = base(client, facade, Action::Connect)?;
            body.time = time(client.connected_at);
            Some((id, body))
        }
        Event::Disconnected {
            client,
            reason,
            detail,
            at,
            traffic,
        } => {
            let (id, mut body) = base(client, facade, Action::Disconnect)?;
            body.time = time(*at);
            body.connect_time = Some(time(client.connected_at));
            body.close_code = Some(close_code_of(*reason, detail));
            body.reason = Some(match *reason {
                DisconnectReason::Normal | DisconnectReason::NormalWithWill => {
                    "The connection has completed normally.".to_string()
                }
                _ => detail.to_string(),
            });
            body.read_bytes = traffic.bytes_in;
            body.read_msg = traffic.messages_in;
            body.write_bytes = traffic.bytes_out;
            body.write_msg = traffic.messages_out;
            Some((id, body))
        }
        Event::Refused {
            client_id,
            user,
            address,
            listener,
            protocol,
            reason,
            why,
            at,
        } => {
            let (port, secure, websocket) = listener_facts(facade, *listener)?;
            let id = ClientId::parse(client_id).ok()?;
            registry.org(id.org())?;
            let body = Status {
                action: Action::FailedConnect,
                time: time(*at),
                client_addr: address.ip().to_string(),
                client_id: client_id.to_string(),
                port,
                secure,
                protocol: protocol_of(*protocol).name(websocket),
                user: user.as_deref().map(String::from),
                connect_time: None,
                close_code: Some(refusal_close_code(*reason)),
                reason: Some(why.to_string()),
                read_bytes: 0,
                read_msg: 0,
                write_bytes: 0,
                write_msg: 0,
            };
            Some((id, body))
        }
        _ => None,
    }
}

/// The fields every message of a connected client has.
fn base(client: &ClientInfo, facade: Facade, action: Action) -> Option<(ClientId, Status)> {
    let (port, secure, websocket) = listener_facts(facade, client.listener)?;
    let client_id = client_id_of_session(&client.client_id);
    let id = ClientId::parse(client_id).ok()?;
    let body = Status {
        action,
        time: String::new(),
        client_addr: client.address.ip().to_string(),
        client_id: client_id.to_string(),
        port,
        secure,
        protocol: protocol_of(client.protocol).name(websocket),
        user: client.user.as_deref().map(String::from),
        connect_time: None,
        close_code: None,
        reason: None,
        read_bytes: 0,
        read_msg: 0,
        write_bytes: 0,
        write_msg: 0,
    };
    Some((id, body))
}

fn protocol_of(version: ProtocolVersion) -> Protocol {
    match version {
        ProtocolVersion::V3_1 => Protocol::Mqtt3,
        ProtocolVersion::V3_1_1 => Protocol::Mqtt4,
        _ => Protocol::Mqtt5,
    }
}

/// The platform's close code for why a connection ended.
fn close_code_of(reason: DisconnectReason, detail: &str) -> u32 {
    match reason {
        DisconnectReason::Normal | DisconnectReason::NormalWithWill => close_code::NORMAL,
        DisconnectReason::ConnectionLost => close_code::CLOSED_BY_CLIENT,
        DisconnectReason::ProtocolError if detail.contains(tern_broker::policy::MESSAGE_TOO_LARGE) => {
            close_code::MESSAGE_TOO_LARGE
        }
        DisconnectReason::ProtocolError => close_code::CLOSED_BY_SERVER,
        DisconnectReason::KeepAliveTimeout => close_code::KEEPALIVE_TIMEOUT,
        DisconnectReason::TakenOver => close_code::CLIENT_ID_REUSED,
        DisconnectReason::ServerShutdown => close_code::SERVER_SHUTDOWN,
        DisconnectReason::Kicked => close_code::ADMIN,
    }
}

/// The platform's close code for a refused CONNECT.
fn refusal_close_code(reason: ReasonCode) -> u32 {
    match reason {
        ReasonCode::CLIENT_IDENTIFIER_NOT_VALID => close_code::INVALID_CLIENT_ID,
        ReasonCode::SERVER_UNAVAILABLE | ReasonCode::SERVER_BUSY => close_code::SERVER_NOT_AVAILABLE,
        _ => close_code::NOT_AUTHORIZED,
    }
}

/// The platform's timestamp form with milliseconds: `2016-03-14T14:12:06.527+0000`.
fn time(t: SystemTime) -> String {
    let since = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    iso8601(since.as_secs()).replacen(".000+", &format!(".{:03}+", since.subsec_millis()), 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn times_have_milliseconds_in_the_platforms_form() {
        let t = UNIX_EPOCH + Duration::from_millis(1_457_964_726_527);
        assert_eq!(time(t), "2016-03-14T14:12:06.527+0000");
    }

    #[test]
    fn close_codes_follow_the_reason() {
        assert_eq!(close_code_of(DisconnectReason::Normal, ""), 0);
        assert_eq!(close_code_of(DisconnectReason::ConnectionLost, ""), 91);
        assert_eq!(close_code_of(DisconnectReason::ProtocolError, "bad packet"), 92);
        let too_large = format!("{}: a payload of 200000 bytes", tern_broker::policy::MESSAGE_TOO_LARGE);
        assert_eq!(close_code_of(DisconnectReason::ProtocolError, &too_large), 287);
        assert_eq!(close_code_of(DisconnectReason::KeepAliveTimeout, ""), 160);
        assert_eq!(close_code_of(DisconnectReason::TakenOver, ""), 288);
        assert_eq!(close_code_of(DisconnectReason::ServerShutdown, ""), 93);
        assert_eq!(close_code_of(DisconnectReason::Kicked, ""), 94);
        assert_eq!(refusal_close_code(ReasonCode::BAD_USER_NAME_OR_PASSWORD), 180);
        assert_eq!(refusal_close_code(ReasonCode::CLIENT_IDENTIFIER_NOT_VALID), 166);
    }
}
