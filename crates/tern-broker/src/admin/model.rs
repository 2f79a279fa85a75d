//! The shapes the admin facade answers with and takes: plain data, serializable, with no
//! reference into the broker's state, so the HTTP API, the console and the platform can
//! hand them on as they are.

use bytes::Bytes;
use serde::Serialize;
use tern_proto::{Properties, QoS};

/// A page request: at most `limit` items after the key `after` (exclusive).
#[derive(Debug, Clone, Default)]
pub struct Page {
    pub limit: usize,
    pub after: Option<String>,
}

/// One page of a listing, in key order; `next` is the key to resume after when more follow.
#[derive(Debug, Clone)]
pub struct Listing<T> {
    pub items: Vec<T>,
    pub next: Option<String>,
}

/// Which clients a listing shows.
#[derive(Debug, Clone, Default)]
pub struct ClientFilter {
    pub connected: Option<bool>,
    pub user: Option<String>,
    pub client_id_prefix: Option<String>,
    /// An MQTT version (`3.1`, `3.1.1`, `5.0`) or a listener protocol (`mqtt`,
    /// `websockets`).
    pub protocol: Option<String>,
}

/// A client (a session, with its connection when it has one).
#[derive(Debug, Clone, Serialize)]
pub struct ClientInfo {
    pub client_id: String,
    pub connected: bool,
    /// The user it authenticated as (while connected), or the user that owns the session.
    pub user: Option<String>,
    /// `ip:port` of the connection.
    pub address: Option<String>,
    /// MQTT version of the connection: `3.1`, `3.1.1` or `5.0`.
    pub protocol_version: Option<String>,
    /// What the listener speaks: `mqtt` or `websockets`.
    pub transport: Option<&'static str>,
    pub listener: Option<usize>,
    pub keepalive: Option<u16>,
    /// When the connection began, in milliseconds since the Unix epoch.
    pub connected_since_ms: Option<u64>,
    pub clean_session: bool,
    /// QoS 1/2 messages sent and not yet acknowledged.
    pub inflight: usize,
    /// Messages waiting to be sent.
    pub queued: usize,
    pub subscriptions: usize,
    /// Traffic of the current connection (absent while offline).
    pub bytes_in: Option<u64>,
    pub bytes_out: Option<u64>,
    pub messages_in: Option<u64>,
    pub messages_out: Option<u64>,
}

/// A session, online or offline.
#[derive(Debug, Clone, Serialize)]
pub struct SessionInfo {
    pub client_id: String,
    pub connected: bool,
    pub owner: Option<String>,
    /// Whether it ends with its connection.
    pub clean_session: bool,
    /// How long it outlives its connection, in seconds (`None`: for ever, or it ends with it).
    pub expiry_interval_s: Option<u64>,
    /// Seconds left before an offline session expires.
    pub expires_in_s: Option<u64>,
    pub queued: usize,
    pub inflight: usize,
    pub subscriptions: usize,
}

/// Which subscriptions a listing shows.
#[derive(Debug, Clone, Default)]
pub struct SubscriptionFilter {
    /// Only those whose filter matches this topic name.
    pub topic: Option<String>,
    /// Only this exact filter.
    pub filter: Option<String>,
}

/// One subscription of one session.
#[derive(Debug, Clone, Serialize)]
pub struct SubscriptionInfo {
    pub client_id: String,
    pub filter: String,
    pub qos: u8,
    pub no_local: bool,
    pub retain_as_published: bool,
    pub retain_handling: u8,
    pub subscription_identifier: Option<u32>,
}

/// A retained message.
#[derive(Debug, Clone, Serialize)]
pub struct RetainedInfo {
    pub topic: String,
    pub qos: u8,
    /// The payload as text when it is UTF-8.
    pub payload: Option<String>,
    pub payload_base64: String,
    pub payload_bytes: usize,
    /// Seconds left before it expires (5.0 Message Expiry Interval).
    pub expires_in_s: Option<u64>,
    pub properties: MessageProperties,
}

/// The MQTT 5.0 properties of a message that an operator sets or reads.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct MessageProperties {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payload_format_indicator: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message_expiry_interval: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response_topic: Option<String>,
    /// Base64.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub correlation_data: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub user_properties: Vec<(String, String)>,
}

/// A message to publish on behalf of the operator.
#[derive(Debug, Clone)]
pub struct PublishRequest {
    pub topic: String,
    pub payload: Bytes,
    pub qos: QoS,
    pub retain: bool,
    pub properties: Properties,
}

/// Broker-wide figures.
#[derive(Debug, Clone, Serialize)]
pub struct Stats {
    pub version: &'static str,
    pub uptime_s: u64,
    pub started_unix: u64,
    pub clients_connected: u64,
    pub clients_maximum: u64,
    pub connections_total: u64,
    pub sessions: usize,
    pub subscriptions: usize,
    pub retained_messages: usize,
    pub messages_received: u64,
    pub messages_sent: u64,
    pub bytes_received: u64,
    pub bytes_sent: u64,
    pub store: StoreStatus,
}

/// The durable store's state.
#[derive(Debug, Clone, Serialize)]
pub struct StoreStatus {
    pub enabled: bool,
    pub writable: bool,
    pub write_failures: u64,
}

/// One listener as bound.
#[derive(Debug, Clone, Serialize)]
pub struct ListenerInfo {
    pub index: usize,
    /// `mqtt`, `websockets` or `http`.
    pub protocol: &'static str,
    /// `host:port` as bound (the port picked for port 0), or a Unix socket's path.
    pub address: String,
    pub tls: bool,
}

/// Whether the broker can serve: listeners bound, store open and writable.
#[derive(Debug, Clone, Serialize)]
pub struct Readiness {
    pub ready: bool,
    pub listeners_bound: bool,
    pub store_writable: bool,
    pub shutting_down: bool,
}

/// Why an admin operation did not happen.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum AdminError {
    #[error("no {what} {name:?}")]
    NotFound { what: &'static str, name: String },
    #[error("{field}: {message}")]
    Invalid { field: &'static str, message: String },
    #[error("client {0:?} is not connected")]
    NotConnected(String),
    #[error("client {0:?} is connected (kick it first)")]
    Connected(String),
    /// The broker cannot do it now (the store cannot write, say).
    #[error("{message}")]
    Unavailable { field: &'static str, message: String },
}

impl AdminError {
    pub fn invalid(field: &'static str, message: impl Into<String>) -> AdminError {
        AdminError::Invalid {
            field,
            message: message.into(),
        }
    }
}
