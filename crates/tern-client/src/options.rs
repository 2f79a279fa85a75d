//! What a client connects with.

use crate::enhanced_auth::ScramLogin;
use crate::tls::TlsOptions;
use bytes::Bytes;
use std::sync::Arc;
use std::time::Duration;
use tern_proto::{ByteStr, Packet, Properties, Property, ProtocolVersion, QoS, Will};

/// Which way a traced packet went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Sent,
    Received,
}

/// Called with every packet the client sends (once encoded into the output) and
/// receives (once decoded), on every connection including reconnects: debug output such
/// as the tools' `-d`. It runs on the connection's task, so it should be quick.
#[derive(Clone)]
pub struct PacketTrace(Arc<TraceFn>);

type TraceFn = dyn Fn(Direction, &Packet) + Send + Sync;

impl PacketTrace {
    pub fn new(trace: impl Fn(Direction, &Packet) + Send + Sync + 'static) -> Self {
        PacketTrace(Arc::new(trace))
    }

    pub(crate) fn record(&self, direction: Direction, packet: &Packet) {
        (self.0)(direction, packet);
    }
}

impl std::fmt::Debug for PacketTrace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PacketTrace(..)")
    }
}

/// Automatic reconnection with exponential backoff.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reconnect {
    /// First wait after a connection is lost.
    pub initial_delay: Duration,
    /// The wait doubles up to this.
    pub max_delay: Duration,
}

impl Default for Reconnect {
    fn default() -> Self {
        Reconnect {
            initial_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(30),
        }
    }
}

/// Connection options; build with [`ConnectOptions::new`] and the setters.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    pub host: String,
    pub port: u16,
    pub version: ProtocolVersion,
    /// Empty asks the broker to assign one (5.0, or 3.1.1 with a clean session).
    pub client_id: String,
    /// Clean Session (3.x) / Clean Start (5.0).
    pub clean_start: bool,
    pub keep_alive: u16,
    pub username: Option<String>,
    pub password: Option<Bytes>,
    pub will: Option<Will>,
    /// CONNECT properties (5.0 only), e.g. Session Expiry Interval.
    pub properties: Properties,
    /// Maximum QoS 1/2 messages in flight; the broker's Receive Maximum may lower it.
    pub max_inflight: usize,
    /// `None`: a lost connection ends the event stream. A reconnect asks for the same
    /// Clean Session / Clean Start as the first connection (as libmosquitto does): a
    /// persistent session is resumed, a clean one starts afresh.
    pub reconnect: Option<Reconnect>,
    pub connect_timeout: Duration,
    /// MQTT 5.0 enhanced authentication with SCRAM-SHA-256 instead of a password.
    pub scram: Option<ScramLogin>,
    /// Connect over TLS with these settings.
    pub tls: Option<TlsOptions>,
    /// Sees every packet sent and received.
    pub trace: Option<PacketTrace>,
}

impl ConnectOptions {
    pub fn new(host: impl Into<String>, port: u16) -> Self {
        ConnectOptions {
            host: host.into(),
            port,
            version: ProtocolVersion::V3_1_1,
            client_id: String::new(),
            clean_start: true,
            keep_alive: 60,
            username: None,
            password: None,
            will: None,
            properties: Properties::default(),
            max_inflight: 20,
            reconnect: None,
            connect_timeout: Duration::from_secs(10),
            scram: None,
            tls: None,
            trace: None,
        }
    }

    pub fn version(mut self, version: ProtocolVersion) -> Self {
        self.version = version;
        self
    }

    pub fn client_id(mut self, id: impl Into<String>) -> Self {
        self.client_id = id.into();
        self
    }

    pub fn clean_start(mut self, clean: bool) -> Self {
        self.clean_start = clean;
        self
    }

    pub fn keep_alive(mut self, seconds: u16) -> Self {
        self.keep_alive = seconds;
        self
    }

    pub fn credentials(mut self, username: impl Into<String>, password: Option<impl Into<Bytes>>) -> Self {
        self.username = Some(username.into());
        self.password = password.map(Into::into);
        self
    }

    pub fn will(mut self, topic: &str, payload: impl Into<Bytes>, qos: QoS, retain: bool) -> Self {
        self.will = Some(Will {
            topic: ByteStr::from(topic),
            payload: payload.into(),
            qos,
            retain,
            properties: Properties::default(),
        });
        self
    }

    /// Session Expiry Interval (5.0): how long the broker keeps the session.
    pub fn session_expiry(mut self, seconds: u32) -> Self {
        self.properties.remove(tern_proto::PropertyId::SessionExpiryInterval);
        self.properties.push(Property::SessionExpiryInterval(seconds));
        self
    }

    /// Authenticates with SCRAM-SHA-256 (MQTT 5.0 enhanced authentication; selects 5.0).
    pub fn scram_sha_256(mut self, user: impl Into<String>, password: impl Into<String>) -> Self {
        self.version = ProtocolVersion::V5;
        self.scram = Some(ScramLogin {
            user: user.into(),
            password: password.into(),
        });
        self
    }

    /// Connects over TLS (the host name is verified unless `tls.insecure`).
    pub fn tls(mut self, tls: TlsOptions) -> Self {
        self.tls = Some(tls);
        self
    }

    pub fn max_inflight(mut self, n: usize) -> Self {
        self.max_inflight = n.max(1);
        self
    }

    pub fn reconnect(mut self, reconnect: Option<Reconnect>) -> Self {
        self.reconnect = reconnect;
        self
    }

    /// Calls `trace` with every packet sent and received.
    pub fn trace(mut self, trace: impl Fn(Direction, &Packet) + Send + Sync + 'static) -> Self {
        self.trace = Some(PacketTrace::new(trace));
        self
    }

    pub(crate) fn connect_packet(&self, clean_start: bool) -> tern_proto::Connect {
        tern_proto::Connect {
            protocol_version: self.version,
            clean_start,
            keep_alive: self.keep_alive,
            client_id: ByteStr::from(self.client_id.as_str()),
            will: self.will.clone(),
            username: self.username.as_deref().map(ByteStr::from),
            password: self.password.clone(),
            properties: if self.version.is_v5() {
                self.properties.clone()
            } else {
                Properties::default()
            },
        }
    }
}
