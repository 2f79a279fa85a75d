//! Status monitoring messages: the JSON the platform publishes on a device's
//! `iot-2/type/<t>/id/<d>/mon` or an application's `iot-2/app/<appId>/mon` when the client
//! connects, disconnects or fails to connect, with the field names and retain rules the
//! platform's applications read:
//!
//! - `Connect`: retained (an application subscribing later learns who is online).
//! - `FailedConnect`: not retained.
//! - a device's or gateway's `Disconnect`: retained, replacing its `Connect`.
//! - an application's `Disconnect`: not retained, and its retained `Connect` is cleared
//!   (an empty retained message first).
//!
//! All are QoS 0. This module builds the messages; the platform's event-stream consumer
//! publishes them.

use crate::identity::{Class, ClientId};
use crate::topics;
use serde::Serialize;

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Action {
    Connect,
    FailedConnect,
    Disconnect,
}

/// The platform's close codes for a Disconnect (`CloseCode`).
pub mod close_code {
    /// Closed normally (a DISCONNECT from the client).
    pub const NORMAL: u32 = 0;
    /// The client went away without DISCONNECT.
    pub const CLOSED_BY_CLIENT: u32 = 91;
    /// Closed by the server (a protocol error).
    pub const CLOSED_BY_SERVER: u32 = 92;
    pub const SERVER_SHUTDOWN: u32 = 93;
    /// Closed by an administrator.
    pub const ADMIN: u32 = 94;
    pub const KEEPALIVE_TIMEOUT: u32 = 160;
    pub const NOT_AUTHORIZED: u32 = 180;
    /// FailedConnect: the client id was not valid.
    pub const INVALID_CLIENT_ID: u32 = 166;
    /// FailedConnect: the server could not take the client now.
    pub const SERVER_NOT_AVAILABLE: u32 = 167;
    pub const MESSAGE_TOO_LARGE: u32 = 287;
    /// Another connection with the same client id took over.
    pub const CLIENT_ID_REUSED: u32 = 288;
}

/// The transport a client connected over, as `Protocol` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// MQTT 3.1.
    Mqtt3,
    /// MQTT 3.1.1.
    Mqtt4,
    Mqtt5,
}

impl Protocol {
    /// `mqtt3`, `mqtt4`, `mqtt5`, with `-ws` over WebSocket (`mqttv5-ws` for 5.0, as the
    /// platform writes it).
    pub fn name(self, websocket: bool) -> &'static str {
        match (self, websocket) {
            (Protocol::Mqtt3, false) => "mqtt3",
            (Protocol::Mqtt4, false) => "mqtt4",
            (Protocol::Mqtt5, false) => "mqtt5",
            (Protocol::Mqtt3, true) => "mqtt3-ws",
            (Protocol::Mqtt4, true) => "mqtt4-ws",
            (Protocol::Mqtt5, true) => "mqttv5-ws",
        }
    }
}

/// One status message's body. Field names are the platform's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Status {
    pub action: Action,
    /// When it happened, ISO 8601 with milliseconds.
    pub time: String,
    /// The client's IP address.
    pub client_addr: String,
    #[serde(rename = "ClientID")]
    pub client_id: String,
    /// The port of the listener it connected to.
    pub port: u16,
    /// Whether the connection is TLS.
    pub secure: bool,
    pub protocol: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// When the connection started (Disconnect only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connect_time: Option<String>,
    /// Disconnect: a [`close_code`]; FailedConnect: the CONNACK code sent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub close_code: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub read_bytes: u64,
    pub read_msg: u64,
    pub write_bytes: u64,
    pub write_msg: u64,
}

/// A status message ready to publish inside the broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusMessage {
    /// The broker's name of the `mon` topic.
    pub topic: String,
    pub payload: Vec<u8>,
    pub retain: bool,
    /// Publish an empty retained message on the topic first (an application's
    /// Disconnect clears its retained Connect).
    pub clear_retained_first: bool,
}

/// The `mon` topic of a client inside the broker.
pub fn status_topic(client: &ClientId) -> String {
    match client {
        ClientId::Device {
            org,
            type_id,
            device_id,
            ..
        } => topics::device_status_topic(org, type_id, device_id),
        ClientId::Application { org, app_id, .. } => topics::app_status_topic(org, app_id),
    }
}

/// The message that publishes `status` for `client`, with the retain rules above.
pub fn message(client: &ClientId, status: &Status) -> StatusMessage {
    let device = matches!(client.class(), Class::Device | Class::Gateway);
    let (retain, clear) = match status.action {
        Action::Connect => (true, false),
        Action::FailedConnect => (false, false),
        Action::Disconnect if device => (true, false),
        Action::Disconnect => (false, true),
    };
    StatusMessage {
        topic: status_topic(client),
        // Serializing a struct of strings and numbers cannot fail.
        payload: serde_json::to_vec(status).unwrap_or_default(),
        retain,
        clear_retained_first: clear,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(action: Action) -> Status {
        Status {
            action,
            time: "2026-11-29T22:15:03.123Z".into(),
            client_addr: "127.0.0.1".into(),
            client_id: "d:za6xa7:test:4321".into(),
            port: 8883,
            secure: true,
            protocol: Protocol::Mqtt4.name(false),
            user: Some("use-token-auth".into()),
            connect_time: None,
            close_code: None,
            reason: None,
            read_bytes: 0,
            read_msg: 0,
            write_bytes: 0,
            write_msg: 0,
        }
    }

    #[test]
    fn fields_have_the_platforms_names() {
        let mut s = status(Action::Disconnect);
        s.connect_time = Some("2026-11-29T22:00:00.000Z".into());
        s.close_code = Some(close_code::CLOSED_BY_CLIENT);
        s.reason = Some("The connection has completed normally.".into());
        s.read_bytes = 120;
        s.read_msg = 2;
        s.write_bytes = 4;
        s.write_msg = 1;
        let v: serde_json::Value = serde_json::to_value(&s).unwrap();
        let expected = serde_json::json!({
            "Action": "Disconnect",
            "Time": "2026-11-29T22:15:03.123Z",
            "ClientAddr": "127.0.0.1",
            "ClientID": "d:za6xa7:test:4321",
            "Port": 8883,
            "Secure": true,
            "Protocol": "mqtt4",
            "User": "use-token-auth",
            "ConnectTime": "2026-11-29T22:00:00.000Z",
            "CloseCode": 91,
            "Reason": "The connection has completed normally.",
            "ReadBytes": 120,
            "ReadMsg": 2,
            "WriteBytes": 4,
            "WriteMsg": 1
        });
        assert_eq!(v, expected);
    }

    #[test]
    fn absent_fields_are_left_out() {
        let v: serde_json::Value = serde_json::to_value(status(Action::Connect)).unwrap();
        let object = v.as_object().unwrap();
        for absent in ["ConnectTime", "CloseCode", "Reason"] {
            assert!(!object.contains_key(absent), "{absent}");
        }
        assert_eq!(object["Action"], "Connect");
    }

    #[test]
    fn protocols_are_named_as_the_platform_names_them() {
        assert_eq!(Protocol::Mqtt3.name(false), "mqtt3");
        assert_eq!(Protocol::Mqtt4.name(false), "mqtt4");
        assert_eq!(Protocol::Mqtt5.name(false), "mqtt5");
        assert_eq!(Protocol::Mqtt4.name(true), "mqtt4-ws");
        assert_eq!(Protocol::Mqtt5.name(true), "mqttv5-ws");
    }

    #[test]
    fn retain_rules_follow_the_reference() {
        let device = ClientId::parse("d:za6xa7:test:4321").unwrap();
        let gateway = ClientId::parse("g:za6xa7:gw:1").unwrap();
        let app = ClientId::parse("a:za6xa7:test2").unwrap();
        let rules = |c: &ClientId, a| {
            let m = message(c, &status(a));
            (m.retain, m.clear_retained_first)
        };
        assert_eq!(rules(&device, Action::Connect), (true, false));
        assert_eq!(rules(&device, Action::FailedConnect), (false, false));
        assert_eq!(rules(&device, Action::Disconnect), (true, false));
        assert_eq!(rules(&gateway, Action::Disconnect), (true, false));
        assert_eq!(rules(&app, Action::Connect), (true, false));
        assert_eq!(rules(&app, Action::FailedConnect), (false, false));
        assert_eq!(rules(&app, Action::Disconnect), (false, true));
    }

    #[test]
    fn messages_go_to_the_clients_mon_topic() {
        let device = ClientId::parse("d:za6xa7:test:4321").unwrap();
        assert_eq!(status_topic(&device), "$iot/za6xa7/iot-2/type/test/id/4321/mon");
        let app = ClientId::parse("A:za6xa7:svc:2").unwrap();
        assert_eq!(status_topic(&app), "$iot/za6xa7/iot-2/app/svc/mon");
        let m = message(&device, &status(Action::Connect));
        let back: serde_json::Value = serde_json::from_slice(&m.payload).unwrap();
        assert_eq!(back["ClientID"], "d:za6xa7:test:4321");
    }
}
