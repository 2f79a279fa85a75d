//! Broker configuration: one [`Config`] read from Tern's own TOML file or from a
//! mosquitto.conf, so existing mosquitto deployments start unchanged.
//!
//! Both formats use mosquitto's directive names and defaults. Anything Tern does not
//! support is an error naming the file, the line and the directive: silently ignoring a
//! security or persistence setting would be worse than refusing to start.

mod cluster;
mod historian;
mod mosquitto;
mod tern_toml;

use crate::shared::ShareStrategy;
use crate::store::Durability;
use anyhow::{bail, Context, Result};
pub use cluster::NatsAuth;
pub use historian::HistorianTopic;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tern_core::OutboxLimits;

/// One network listener.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ListenerConfig {
    /// Port to listen on; 0 picks a free one (tests).
    pub port: u16,
    /// Address to bind; `None` binds every interface.
    pub bind_address: Option<String>,
    /// Whether clients without a user name may connect; `None` takes the global setting.
    pub allow_anonymous: Option<bool>,
    /// This listener's password file (per_listener_settings); `None` takes the global one.
    pub password_file: Option<PathBuf>,
    /// This listener's ACL file (per_listener_settings); `None` takes the global one.
    pub acl_file: Option<PathBuf>,
    /// Most clients connected through this listener at once; `None`: no limit.
    pub max_connections: Option<usize>,
    /// Highest QoS clients of this listener may use (mosquitto's `max_qos`); `None` takes
    /// the global setting.
    pub max_qos: Option<u8>,
    /// allow_zero_length_clientid for this listener (per_listener_settings).
    pub allow_zero_length_clientid: Option<bool>,
    /// auto_id_prefix for this listener (per_listener_settings).
    pub auto_id_prefix: Option<String>,
    /// use_username_as_clientid for this listener (per_listener_settings).
    pub use_username_as_clientid: Option<bool>,
    /// The network interface the listener is bound to (mosquitto's `bind_interface`).
    pub bind_interface: Option<String>,
    /// TLS settings; the listener speaks TLS when `certfile` is set.
    pub tls: TlsListenerConfig,
    /// What the listener speaks over its transport (mosquitto's `protocol`).
    pub protocol: ListenerProtocol,
    /// WebSocket settings, for `protocol websockets`.
    pub websockets: WebSocketSettings,
    /// mosquitto's `mount_point`: the prefix of every topic of this listener's clients
    /// inside the broker.
    pub mount_point: Option<crate::topic_map::TopicMap>,
    /// Platform mode (`platform true`): the listener's clients are authenticated,
    /// authorized and mapped by the installed listener policy (`policy.rs`), not by the
    /// password file, ACL and mount point.
    pub platform: bool,
}

/// What a listener speaks (mosquitto's `protocol` directive).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ListenerProtocol {
    /// MQTT straight over TCP or TLS.
    #[default]
    Mqtt,
    /// MQTT over WebSocket (ws, or wss with the listener's TLS settings).
    WebSockets,
    /// The HTTP API, health checks and metrics.
    Http,
}

impl ListenerProtocol {
    /// The name mosquitto's `protocol` directive and Tern's TOML use.
    pub fn name(self) -> &'static str {
        match self {
            ListenerProtocol::Mqtt => "mqtt",
            ListenerProtocol::WebSockets => "websockets",
            ListenerProtocol::Http => "http",
        }
    }

    /// Parses the `protocol` directive's value.
    pub fn parse(text: &str) -> Option<ListenerProtocol> {
        match text {
            "mqtt" => Some(ListenerProtocol::Mqtt),
            "websockets" => Some(ListenerProtocol::WebSockets),
            "http" => Some(ListenerProtocol::Http),
            _ => None,
        }
    }
}

/// How a WebSocket listener accepts the HTTP upgrade.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct WebSocketSettings {
    /// The only request path accepted (`websockets_path`); `None` accepts any path, as
    /// MQTT.js uses `/` and EMQX and HiveMQ clients `/mqtt`.
    pub path: Option<String>,
    /// Origins a browser may connect from (`websockets_origins`); empty: any origin.
    pub origins: Vec<String>,
    /// Proxies whose X-Forwarded-For names the client (`websockets_trusted_proxies`);
    /// from anyone else the header is ignored.
    pub trusted_proxies: Vec<std::net::IpAddr>,
    /// Refuse upgrades that offer neither `mqtt` nor `mqttv3.1` as subprotocol
    /// (`websockets_require_subprotocol`); by default they are taken as MQTT, as
    /// mosquitto does.
    pub require_subprotocol: bool,
    /// Largest upgrade request accepted, in bytes (mosquitto's `websockets_headers_size`);
    /// 0: [`DEFAULT_WEBSOCKETS_HEADERS_SIZE`].
    pub headers_size: usize,
}

/// Default largest WebSocket upgrade request.
pub const DEFAULT_WEBSOCKETS_HEADERS_SIZE: usize = 8 << 10;

impl ListenerConfig {
    /// The socket file of a Unix socket listener (mosquitto's `listener 0 /path`).
    pub fn unix_path(&self) -> Option<&std::path::Path> {
        match &self.bind_address {
            Some(path) if self.port == 0 && path.starts_with('/') => Some(std::path::Path::new(path)),
            _ => None,
        }
    }
}

/// mosquitto's per-listener TLS directives.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TlsListenerConfig {
    pub certfile: Option<PathBuf>,
    pub keyfile: Option<PathBuf>,
    /// CA certificates client certificates are checked against.
    pub cafile: Option<PathBuf>,
    /// A folder of CA certificates (`*.pem`, `*.crt`).
    pub capath: Option<PathBuf>,
    /// Mutual TLS: a client without a valid certificate is refused during the handshake.
    pub require_certificate: bool,
    /// The client certificate's Common Name is the user name (password file not used).
    pub use_identity_as_username: bool,
    /// The client certificate's whole subject is the user name.
    pub use_subject_as_username: bool,
    /// Certificate revocation list for client certificates.
    pub crlfile: Option<PathBuf>,
    /// Lowest TLS version offered: `tlsv1.2` (default) or `tlsv1.3`.
    pub tls_version: Option<String>,
    /// ALPN protocols offered (Tern's `tls_alpn`); empty: no ALPN.
    pub alpn: Vec<String>,
    /// TLS 1.2 suites offered, in order (mosquitto's `ciphers`); `None`: all of rustls's.
    pub ciphers: Option<Vec<rustls::CipherSuite>>,
    /// TLS 1.3 suites offered (mosquitto's `ciphers_tls1.3`); `None`: all of rustls's.
    pub ciphers_tls13: Option<Vec<rustls::CipherSuite>>,
}

impl TlsListenerConfig {
    pub fn enabled(&self) -> bool {
        self.certfile.is_some() || self.keyfile.is_some()
    }
}

/// Where log lines go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogDest {
    Stdout,
    Stderr,
    File(PathBuf),
    /// RFC 3164 datagrams to /dev/log.
    Syslog,
    /// Published as `$SYS/broker/log/<E|W|I>`.
    Topic,
    None,
}

/// The broker's whole configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The listeners; empty means the local default (127.0.0.1:1883, anonymous allowed).
    pub listeners: Vec<ListenerConfig>,
    /// Global anonymous setting for listeners that do not set their own. mosquitto 2
    /// defaults to false once any listener is configured.
    pub allow_anonymous: bool,
    pub max_inflight_messages: usize,
    pub max_queued_messages: usize,
    pub max_queued_bytes: usize,
    /// Payload bytes of QoS 1/2 messages in flight to one client (0: no limit).
    pub max_inflight_bytes: usize,
    /// mosquitto's memory_limit: above this many heap bytes (checked every second),
    /// incoming messages are dropped and new clients refused; 0: no limit.
    pub memory_limit: usize,
    /// Largest accepted PUBLISH payload in bytes (default 1 MiB); 0 means the
    /// protocol's limit (256 MB).
    pub message_size_limit: usize,
    /// Largest packet read before CONNACK (CONNECT, AUTH), so that nobody unauthenticated
    /// makes the broker buffer more; raise it for large wills or authentication data.
    pub max_connect_packet_size: usize,
    /// Most subscriptions one client may hold (0: no limit): every publish matching a
    /// client's overlapping filters costs a step per filter, for every client.
    pub max_subscriptions_per_client: usize,
    /// Largest keepalive a client may ask for, in seconds.
    pub max_keepalive: u16,
    /// Seconds between $SYS updates; 0 turns $SYS off.
    pub sys_interval: u64,
    /// Threads that serve connections; 0: one per core. Read at start only.
    pub worker_threads: usize,
    /// Offline persistent sessions are removed after this long.
    pub persistent_client_expiration: Option<Duration>,
    /// A socket must send CONNECT within this time.
    pub connect_timeout: Duration,
    /// Whether connects and disconnects are logged.
    pub connection_messages: bool,
    /// Whether the broker publishes a JSON event on `$SYS/broker/clients/<id>/connected`
    /// and `.../disconnected` for every client (read at start).
    pub presence_events: bool,
    /// The IoT platform's domain (`platform_domain`): `<org>.messaging.<domain>` names
    /// an organization's MQTT endpoint, `<org>.<domain>` its REST API.
    pub platform_domain: Option<String>,
    /// Whether the platform serves the open `quickstart` organization
    /// (`platform_quickstart`).
    pub platform_quickstart: bool,
    /// The historian's PostgreSQL database (`historian_postgres <connection string>`, libpq
    /// `key=value` pairs or a `postgresql://` URL); `None`: the embedded store.
    pub historian_postgres: Option<String>,
    /// What the historian keeps of plain listeners' messages (`historian_topic` lines, in
    /// order: the first whose filter matches a topic stores it).
    pub historian_topics: Vec<HistorianTopic>,
    /// The NATS servers of the cluster this node belongs to (`cluster_nats_urls`);
    /// empty: a single node.
    pub cluster_nats_urls: Vec<String>,
    /// This node's name in the cluster (`cluster_node_name`).
    pub cluster_node_name: Option<String>,
    /// How long a node of the cluster may go without a heartbeat before the others take
    /// it for dead and publish its clients' wills (`cluster_node_timeout`, seconds).
    pub cluster_node_timeout: std::time::Duration,
    /// The NATS connection's TLS and nkey files (`cluster_nats_cafile` and the others).
    pub cluster_nats_auth: NatsAuth,
    /// Debug-level logging (mosquitto's `log_type debug` or `-v`).
    pub verbose: bool,
    pub log_dest: Vec<LogDest>,
    /// mosquitto's log_facility: syslog lines go to local0-local7 instead of daemon.
    pub log_facility: Option<u8>,
    /// Written with the broker's process id at start.
    pub pid_file: Option<PathBuf>,
    /// When started as root, the user (and its primary group) to run as once the
    /// listeners, the store and the log file are open (mosquitto's `user`).
    pub user: Option<String>,
    /// The file this configuration was read from, re-read on SIGHUP.
    pub source: Option<PathBuf>,
    /// How a shared subscription group picks the member for a message.
    pub shared_subscription_strategy: ShareStrategy,
    /// When set, 5.0 clients are sent to this server (CONNACK 0x9C, or 0x9D with
    /// `server_moved`, carrying it as Server Reference); 3.x clients are refused (0x03).
    pub server_reference: Option<String>,
    /// With `server_reference`: the move is permanent (0x9D Server moved).
    pub server_moved: bool,
    /// Response Information for clients that request it: this prefix and the client id.
    pub response_information: String,
    /// SCRAM-SHA-256 credentials (`tern passwd -H scram-sha-256`) for enhanced authentication.
    pub scram_file: Option<PathBuf>,
    /// mosquitto password file for listeners without their own.
    pub password_file: Option<PathBuf>,
    /// mosquitto ACL file for listeners without their own.
    pub acl_file: Option<PathBuf>,
    /// mosquitto's per_listener_settings: security directives after a `listener` line
    /// apply to that listener only (otherwise they are global wherever they appear).
    pub per_listener_settings: bool,
    /// A refused password is answered only after this long, to slow down guessing.
    pub auth_failure_delay: Duration,
    /// New connections accepted per second from one source address; 0: no limit.
    pub max_connection_rate: u32,
    /// Most levels in a topic name or filter; 0: no limit.
    pub max_topic_levels: usize,
    /// Longest topic name or filter in bytes; 0: the protocol's 65,535.
    pub max_topic_length: usize,
    /// Whether sessions, their messages and retained messages are kept on disk.
    pub persistence: bool,
    /// The data directory of the store.
    pub persistence_location: PathBuf,
    /// When stored changes reach the disk.
    pub durability: Durability,
    /// Whether a client may connect with an empty client id and be given one.
    pub allow_zero_length_clientid: bool,
    /// Prefix of the client ids the broker makes up; `None`: `tern-`.
    pub auto_id_prefix: Option<String>,
    /// mosquitto's clientid_prefixes: only client ids starting with this may connect.
    pub clientid_prefixes: Option<String>,
    /// The client's user name replaces its client id; clients without one are refused.
    pub use_username_as_clientid: bool,
    /// mosquitto's max_packet_size: largest packet a client may send (and is told of in
    /// a 5.0 CONNACK); 0: no limit beyond the one message_size_limit implies.
    pub packet_size_limit: usize,
    /// Highest QoS for listeners that do not set their own `max_qos`.
    pub max_qos: u8,
    /// Whether clients may publish retained messages (mosquitto's retain_available).
    pub retain_available: bool,
    /// Deliver messages at the subscription's QoS rather than the lower of the two.
    pub upgrade_outgoing_qos: bool,
    /// Queue QoS 0 messages for offline persistent sessions too.
    pub queue_qos0_messages: bool,
    /// mosquitto's check_retain_source: a retained message goes to a new subscriber only
    /// if its publisher may still publish to its topic under the ACL in force.
    pub check_retain_source: bool,
    /// Whether log lines start with a timestamp.
    pub log_timestamp: bool,
    /// strftime format of log timestamps; `None`: RFC 3339.
    pub log_timestamp_format: Option<String>,
}

/// Default largest PUBLISH payload: ample for IoT payloads, and what EMQX allows.
pub const DEFAULT_MESSAGE_SIZE_LIMIT: usize = 1 << 20;
/// Default bytes queued toward one client: a slow subscriber costs at most this.
pub const DEFAULT_MAX_QUEUED_BYTES: usize = 64 << 20;
/// Default most subscriptions per client (EMQX's max_subscriptions; mosquitto has none).
pub const DEFAULT_MAX_SUBSCRIPTIONS_PER_CLIENT: usize = 1000;
/// Default largest packet before CONNACK.
pub const DEFAULT_MAX_CONNECT_PACKET_SIZE: usize = 64 << 10;

impl Default for Config {
    fn default() -> Self {
        Config {
            listeners: Vec::new(),
            allow_anonymous: false,
            max_inflight_messages: 20,
            max_queued_messages: 1000,
            max_queued_bytes: DEFAULT_MAX_QUEUED_BYTES,
            max_inflight_bytes: 0,
            memory_limit: 0,
            message_size_limit: DEFAULT_MESSAGE_SIZE_LIMIT,
            max_connect_packet_size: DEFAULT_MAX_CONNECT_PACKET_SIZE,
            max_subscriptions_per_client: DEFAULT_MAX_SUBSCRIPTIONS_PER_CLIENT,
            max_keepalive: 65535,
            sys_interval: 10,
            worker_threads: 0,
            persistent_client_expiration: None,
            connect_timeout: Duration::from_secs(10),
            connection_messages: true,
            presence_events: false,
            platform_domain: None,
            platform_quickstart: false,
            historian_postgres: None,
            historian_topics: Vec::new(),
            cluster_nats_urls: Vec::new(),
            cluster_node_name: None,
            cluster_node_timeout: std::time::Duration::from_secs(cluster::DEFAULT_NODE_TIMEOUT),
            cluster_nats_auth: NatsAuth::default(),
            verbose: false,
            log_dest: Vec::new(),
            log_facility: None,
            pid_file: None,
            user: None,
            source: None,
            shared_subscription_strategy: ShareStrategy::RoundRobin,
            server_reference: None,
            server_moved: false,
            response_information: "response/".to_string(),
            scram_file: None,
            password_file: None,
            acl_file: None,
            per_listener_settings: false,
            auth_failure_delay: Duration::from_secs(1),
            max_connection_rate: 0,
            max_topic_levels: 128,
            max_topic_length: 0,
            persistence: false,
            persistence_location: PathBuf::from("tern-data"),
            durability: Durability::Sync,
            allow_zero_length_clientid: true,
            auto_id_prefix: None,
            clientid_prefixes: None,
            use_username_as_clientid: false,
            packet_size_limit: 0,
            max_qos: 2,
            retain_available: true,
            upgrade_outgoing_qos: false,
            queue_qos0_messages: false,
            check_retain_source: true,
            log_timestamp: true,
            log_timestamp_format: None,
        }
    }
}

/// More threads than this is a typo, not a machine.
const MAX_WORKER_THREADS: usize = 1024;

impl Config {
    /// Reads a configuration file: TOML if it ends in `.toml`, mosquitto.conf otherwise.
    pub fn load(path: &Path) -> Result<Config> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("cannot read config file {}", path.display()))?;
        let mut config = if path.extension().is_some_and(|e| e == "toml") {
            tern_toml::parse(&text).with_context(|| format!("in {}", path.display()))?
        } else {
            let mut config = Config::default();
            mosquitto::parse_into(&mut config, path, &text)?;
            config
        };
        cluster::check(
            &config.cluster_nats_urls,
            config.cluster_node_name.as_deref(),
            &config.cluster_nats_auth,
        )
        .with_context(|| format!("in {}", path.display()))?;
        if config.worker_threads > MAX_WORKER_THREADS {
            bail!(
                "in {}: worker_threads {} is more than {MAX_WORKER_THREADS}",
                path.display(),
                config.worker_threads
            );
        }
        config.source = Some(path.to_path_buf());
        Ok(config)
    }

    /// The listeners to open: the configured ones, or the local default.
    pub fn effective_listeners(&self) -> Vec<ListenerConfig> {
        if self.listeners.is_empty() {
            vec![ListenerConfig {
                port: 1883,
                bind_address: Some("127.0.0.1".into()),
                allow_anonymous: Some(true),
                ..ListenerConfig::default()
            }]
        } else {
            self.listeners.clone()
        }
    }

    /// Whether the configuration falls back to the local-only default listener.
    pub fn is_local_default(&self) -> bool {
        self.listeners.is_empty()
    }

    /// The outbox bounds for each session.
    pub fn outbox_limits(&self) -> OutboxLimits {
        OutboxLimits {
            max_inflight: self.max_inflight_messages,
            max_queued_messages: self.max_queued_messages,
            max_queued_bytes: self.max_queued_bytes,
            max_inflight_bytes: self.max_inflight_bytes,
        }
    }

    /// Largest packet accepted from a client, in bytes.
    /// Largest packet accepted before CONNACK: the smaller of `max_connect_packet_size`
    /// and the largest packet at all.
    pub fn max_connect_packet_size(&self) -> usize {
        match self.max_connect_packet_size {
            0 => self.max_packet_size(),
            n => n.min(self.max_packet_size()),
        }
    }

    pub fn max_packet_size(&self) -> usize {
        const PROTOCOL_LIMIT: usize = 268_435_455 + 5;
        let implied = if self.message_size_limit == 0 {
            PROTOCOL_LIMIT
        } else {
            // The payload limit plus room for a topic and properties.
            (self.message_size_limit + 65_536 + 4096).min(PROTOCOL_LIMIT)
        };
        match self.packet_size_limit {
            0 => implied,
            n => n.min(implied),
        }
    }

    /// The Maximum Packet Size a 5.0 CONNACK announces, if any limit is set.
    pub fn advertised_max_packet_size(&self) -> Option<u32> {
        (self.message_size_limit != 0 || self.packet_size_limit != 0)
            .then(|| u32::try_from(self.max_packet_size()).unwrap_or(u32::MAX))
    }

    /// The highest QoS clients of listener `index` may use.
    pub fn max_qos(&self, index: usize) -> u8 {
        self.listeners
            .get(index)
            .and_then(|l| l.max_qos)
            .unwrap_or(self.max_qos)
    }

    /// Why CONNECT's client id is refused on listener `index` (allow_zero_length_clientid,
    /// clientid_prefixes), if it is.
    pub fn client_id_refusal(&self, index: usize, client_id: &str) -> Option<&'static str> {
        let listener = self.listeners.get(index);
        let allow_empty = listener
            .and_then(|l| l.allow_zero_length_clientid)
            .unwrap_or(self.allow_zero_length_clientid);
        if client_id.is_empty() {
            return (!allow_empty).then_some("empty client ids are not allowed (allow_zero_length_clientid false)");
        }
        match &self.clientid_prefixes {
            Some(prefix) if !client_id.starts_with(prefix.as_str()) => {
                Some("the client id does not start with clientid_prefixes")
            }
            _ => None,
        }
    }

    /// How listener `index` is reached and who may connect, for the start-up line: its
    /// protocol, TLS and authentication, e.g. `mqtt, TLS with client certificates
    /// required; users from the certificate CN, anonymous refused`.
    pub fn listener_summary(&self, index: usize) -> String {
        let listeners = self.effective_listeners();
        let Some(listener) = listeners.get(index) else {
            return "mqtt".into();
        };
        let tls = &listener.tls;
        let transport = match (
            tls.enabled(),
            tls.require_certificate,
            tls.cafile.is_some() || tls.capath.is_some(),
        ) {
            (false, _, _) => "plain TCP",
            (true, true, _) => "TLS with client certificates required",
            (true, false, true) => "TLS, client certificates optional",
            (true, false, false) => "TLS",
        };
        if listener.protocol == ListenerProtocol::Http {
            return format!("HTTP API, {transport}; API keys, see docs/http-api.md");
        }
        if listener.platform {
            return format!(
                "{}, {transport}; IoT platform: devices and applications of the registry, see docs/iot-platform.md",
                listener.protocol.name()
            );
        }
        let mut auth = Vec::new();
        if tls.use_subject_as_username {
            auth.push("users from the certificate subject".to_string());
        } else if tls.use_identity_as_username {
            auth.push("users from the certificate CN".to_string());
        }
        if let Some(file) = listener.password_file.as_ref().or(self.password_file.as_ref()) {
            auth.push(format!("password_file {}", file.display()));
        }
        if self.scram_file.is_some() {
            auth.push("SCRAM-SHA-256".into());
        }
        let anonymous = if self.is_local_default() && self.password_file.is_none() {
            true
        } else {
            listener.allow_anonymous.unwrap_or(self.allow_anonymous)
        };
        auth.push(
            if anonymous {
                "anonymous allowed"
            } else {
                "anonymous refused"
            }
            .into(),
        );
        if let Some(file) = listener.acl_file.as_ref().or(self.acl_file.as_ref()) {
            auth.push(format!("acl_file {}", file.display()));
        }
        format!("{}, {transport}; {}", listener.protocol.name(), auth.join(", "))
    }

    /// Whether clients of listener `index` are known by their user name
    /// (use_username_as_clientid).
    pub fn username_as_client_id(&self, index: usize) -> bool {
        self.listeners
            .get(index)
            .and_then(|l| l.use_username_as_clientid)
            .unwrap_or(self.use_username_as_clientid)
    }

    /// A client id for a client that sent an empty one: auto_id_prefix (default `tern-`)
    /// followed by `unique`.
    pub fn assigned_client_id(&self, index: usize, unique: std::fmt::Arguments<'_>) -> String {
        let prefix = self
            .listeners
            .get(index)
            .and_then(|l| l.auto_id_prefix.as_deref())
            .or(self.auto_id_prefix.as_deref())
            .unwrap_or("tern-");
        format!("{prefix}{unique}")
    }
}

/// Resolves a listener's bind address and port to a socket address.
pub fn listener_addr(listener: &ListenerConfig) -> Result<SocketAddr> {
    use std::net::ToSocketAddrs;
    let host = listener.bind_address.as_deref().unwrap_or("0.0.0.0");
    (host, listener.port)
        .to_socket_addrs()
        .with_context(|| format!("cannot resolve bind address {host}"))?
        .next()
        .with_context(|| format!("bind address {host} resolves to nothing"))
}

/// Parses a duration as mosquitto writes it: a number with an optional unit h, d, w, m, y
/// (hours, days, weeks, months, years) or s.
pub fn parse_mosquitto_duration(text: &str) -> Option<Duration> {
    let (digits, unit) = match text.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => (&text[..i], c),
        _ => (text, 's'),
    };
    let n: u64 = digits.parse().ok()?;
    let seconds = match unit {
        's' => 1,
        'h' => 3600,
        'd' => 86_400,
        'w' => 7 * 86_400,
        'm' => 30 * 86_400,
        'y' => 365 * 86_400,
        _ => return None,
    };
    Some(Duration::from_secs(n.checked_mul(seconds)?))
}
