//! Tern's own TOML configuration: mosquitto's directive names as keys, listeners as
//! `[[listener]]` tables. Unknown keys are errors (with line and column from the parser).

use super::{
    parse_mosquitto_duration, Config, ListenerConfig, ListenerProtocol, LogDest, TlsListenerConfig, WebSocketSettings,
};
use anyhow::{anyhow, bail, Result};
use serde::Deserialize;
use std::path::PathBuf;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    listener: Vec<Listener>,
    allow_anonymous: Option<bool>,
    max_inflight_messages: Option<usize>,
    max_queued_messages: Option<usize>,
    max_queued_bytes: Option<usize>,
    max_inflight_bytes: Option<usize>,
    memory_limit: Option<usize>,
    message_size_limit: Option<usize>,
    max_connect_packet_size: Option<usize>,
    max_subscriptions_per_client: Option<usize>,
    max_keepalive: Option<u16>,
    sys_interval: Option<u64>,
    worker_threads: Option<usize>,
    persistent_client_expiration: Option<String>,
    connect_timeout: Option<u64>,
    connection_messages: Option<bool>,
    presence_events: Option<bool>,
    platform_domain: Option<String>,
    platform_quickstart: Option<bool>,
    historian_postgres: Option<String>,
    historian_topic: Option<Vec<String>>,
    cluster_nats_urls: Option<String>,
    cluster_node_name: Option<String>,
    cluster_node_timeout: Option<u64>,
    cluster_nats_cafile: Option<String>,
    cluster_nats_certfile: Option<String>,
    cluster_nats_keyfile: Option<String>,
    cluster_nats_nkey_file: Option<String>,
    cluster_nats_credentials: Option<String>,
    verbose: Option<bool>,
    log_dest: Option<Vec<String>>,
    log_facility: Option<u8>,
    pid_file: Option<PathBuf>,
    shared_subscription_strategy: Option<String>,
    server_reference: Option<String>,
    server_moved: Option<bool>,
    response_information: Option<String>,
    scram_file: Option<PathBuf>,
    password_file: Option<PathBuf>,
    acl_file: Option<PathBuf>,
    /// Milliseconds.
    auth_failure_delay: Option<u64>,
    max_connection_rate: Option<u32>,
    max_topic_levels: Option<usize>,
    max_topic_length: Option<usize>,
    persistence: Option<bool>,
    persistence_location: Option<PathBuf>,
    durability: Option<String>,
    flush_interval_ms: Option<u64>,
    allow_zero_length_clientid: Option<bool>,
    auto_id_prefix: Option<String>,
    clientid_prefixes: Option<String>,
    use_username_as_clientid: Option<bool>,
    max_packet_size: Option<usize>,
    max_qos: Option<u8>,
    retain_available: Option<bool>,
    upgrade_outgoing_qos: Option<bool>,
    queue_qos0_messages: Option<bool>,
    check_retain_source: Option<bool>,
    set_tcp_nodelay: Option<bool>,
    log_timestamp: Option<bool>,
    log_timestamp_format: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Listener {
    port: u16,
    bind_address: Option<String>,
    bind_interface: Option<String>,
    allow_anonymous: Option<bool>,
    password_file: Option<PathBuf>,
    acl_file: Option<PathBuf>,
    max_connections: Option<usize>,
    max_qos: Option<u8>,
    allow_zero_length_clientid: Option<bool>,
    auto_id_prefix: Option<String>,
    use_username_as_clientid: Option<bool>,
    certfile: Option<PathBuf>,
    keyfile: Option<PathBuf>,
    cafile: Option<PathBuf>,
    capath: Option<PathBuf>,
    crlfile: Option<PathBuf>,
    tls_version: Option<String>,
    #[serde(default)]
    tls_alpn: Vec<String>,
    /// TLS 1.2 suites: an OpenSSL cipher list, as mosquitto's `ciphers`.
    ciphers: Option<String>,
    /// TLS 1.3 suites, as mosquitto's `ciphers_tls1.3`.
    #[serde(rename = "ciphers_tls1.3")]
    ciphers_tls13: Option<String>,
    #[serde(default)]
    require_certificate: bool,
    #[serde(default)]
    use_identity_as_username: bool,
    #[serde(default)]
    use_subject_as_username: bool,
    /// `mqtt` (default), `websockets` or `http`.
    protocol: Option<String>,
    websockets_path: Option<String>,
    #[serde(default)]
    websockets_origins: Vec<String>,
    #[serde(default)]
    websockets_trusted_proxies: Vec<std::net::IpAddr>,
    #[serde(default)]
    websockets_require_subprotocol: bool,
    #[serde(default)]
    websockets_headers_size: usize,
    mount_point: Option<String>,
    #[serde(default)]
    platform: bool,
}

pub(super) fn parse(text: &str) -> Result<Config> {
    let file: File = toml::from_str(text)?;
    let mut listeners = Vec::new();
    for l in file.listener {
        let protocol = match l.protocol.as_deref() {
            None => ListenerProtocol::Mqtt,
            Some(name) => ListenerProtocol::parse(name).ok_or_else(|| {
                anyhow!(
                    "listener {}: unknown protocol {name:?} (expected mqtt, websockets or http)",
                    l.port
                )
            })?,
        };
        if l.websockets_path.as_deref().is_some_and(|p| !p.starts_with('/')) {
            return Err(anyhow!("listener {}: websockets_path must start with /", l.port));
        }
        let ciphers = l
            .ciphers
            .as_deref()
            .map(crate::tls::ciphers::tls12)
            .transpose()
            .map_err(|e| anyhow!("listener {}: ciphers: {e}", l.port))?;
        let ciphers_tls13 = l
            .ciphers_tls13
            .as_deref()
            .map(crate::tls::ciphers::tls13)
            .transpose()
            .map_err(|e| anyhow!("listener {}: ciphers_tls1.3: {e}", l.port))?;
        let mount_point = match l.mount_point.as_deref() {
            Some(mount) => Some(
                crate::topic_map::TopicMap::mount(mount)
                    .map_err(|e| anyhow!("listener {}: mount_point: {e}", l.port))?,
            ),
            None => None,
        };
        if l.platform && mount_point.is_some() {
            bail!(
                "listener {}: platform = true and mount_point exclude each other",
                l.port
            );
        }
        listeners.push(ListenerConfig {
            mount_point,
            platform: l.platform,
            protocol,
            websockets: WebSocketSettings {
                path: l.websockets_path,
                origins: l.websockets_origins,
                trusted_proxies: l.websockets_trusted_proxies,
                require_subprotocol: l.websockets_require_subprotocol,
                headers_size: l.websockets_headers_size,
            },
            port: l.port,
            bind_address: l.bind_address,
            bind_interface: l.bind_interface,
            allow_anonymous: l.allow_anonymous,
            password_file: l.password_file,
            acl_file: l.acl_file,
            max_connections: l.max_connections,
            max_qos: l.max_qos,
            allow_zero_length_clientid: l.allow_zero_length_clientid,
            auto_id_prefix: l.auto_id_prefix,
            use_username_as_clientid: l.use_username_as_clientid,
            tls: TlsListenerConfig {
                certfile: l.certfile,
                keyfile: l.keyfile,
                cafile: l.cafile,
                capath: l.capath,
                require_certificate: l.require_certificate,
                use_identity_as_username: l.use_identity_as_username,
                use_subject_as_username: l.use_subject_as_username,
                crlfile: l.crlfile,
                tls_version: l.tls_version,
                alpn: l.tls_alpn,
                ciphers,
                ciphers_tls13,
            },
        });
    }
    let mut c = Config {
        listeners,
        ..Config::default()
    };
    macro_rules! set {
        ($($field:ident),*) => { $(if let Some(v) = file.$field { c.$field = v; })* };
    }
    set!(
        allow_anonymous,
        max_inflight_messages,
        max_queued_messages,
        max_queued_bytes,
        max_inflight_bytes,
        memory_limit,
        message_size_limit,
        max_connect_packet_size,
        max_subscriptions_per_client
    );
    set!(
        max_keepalive,
        sys_interval,
        worker_threads,
        connection_messages,
        verbose,
        presence_events
    );
    set!(server_moved, response_information);
    c.platform_quickstart = file.platform_quickstart.unwrap_or(false);
    c.historian_postgres = file
        .historian_postgres
        .as_deref()
        .map(super::mosquitto::historian_postgres)
        .transpose()?;
    for line in file.historian_topic.iter().flatten() {
        let words: Vec<&str> = line.split_whitespace().collect();
        let topic = super::historian::historian_topic(&words).map_err(|e| anyhow!("historian_topic: {e}"))?;
        c.historian_topics.push(topic);
    }
    if let Some(urls) = &file.cluster_nats_urls {
        c.cluster_nats_urls = super::cluster::nats_urls(&[urls])?;
    }
    c.cluster_node_name = file
        .cluster_node_name
        .as_deref()
        .map(super::cluster::node_name)
        .transpose()?;
    if let Some(seconds) = file.cluster_node_timeout {
        c.cluster_node_timeout = super::cluster::node_timeout(&seconds.to_string())?;
    }
    for (directive, path) in [
        ("cluster_nats_cafile", &file.cluster_nats_cafile),
        ("cluster_nats_certfile", &file.cluster_nats_certfile),
        ("cluster_nats_keyfile", &file.cluster_nats_keyfile),
        ("cluster_nats_nkey_file", &file.cluster_nats_nkey_file),
        ("cluster_nats_credentials", &file.cluster_nats_credentials),
    ] {
        if let Some(path) = path {
            c.cluster_nats_auth.set(directive, path)?;
        }
    }
    c.platform_domain = file
        .platform_domain
        .as_deref()
        .map(super::mosquitto::platform_domain)
        .transpose()?;
    c.server_reference = file.server_reference;
    c.scram_file = file.scram_file;
    c.password_file = file.password_file;
    c.acl_file = file.acl_file;
    // Tern's own format is per listener by nature: a listener's keys are its own.
    c.per_listener_settings = true;
    set!(max_connection_rate, max_topic_levels, max_topic_length);
    // Tern's own format keeps state by default (in ./tern-data), safely (sync).
    c.persistence = file.persistence.unwrap_or(true);
    set!(persistence_location);
    if let Some(ms) = file.flush_interval_ms {
        c.durability = crate::store::Durability::Periodic(std::time::Duration::from_millis(ms.max(1)));
    }
    if let Some(name) = file.durability {
        c.durability = super::mosquitto::durability(&name, c.durability).map_err(|e| anyhow!("durability: {e}"))?;
    }
    if let Some(ms) = file.auth_failure_delay {
        c.auth_failure_delay = std::time::Duration::from_millis(ms);
    }
    if let Some(name) = file.shared_subscription_strategy {
        c.shared_subscription_strategy =
            super::mosquitto::strategy(&name).map_err(|e| anyhow!("shared_subscription_strategy: {e}"))?;
    }
    if let Some(text) = file.persistent_client_expiration {
        c.persistent_client_expiration =
            Some(parse_mosquitto_duration(&text).ok_or_else(|| {
                anyhow!("persistent_client_expiration: {text:?} is not a duration such as 2h or 14d")
            })?);
    }
    if let Some(secs) = file.connect_timeout {
        c.connect_timeout = std::time::Duration::from_secs(secs);
    }
    c.pid_file = file.pid_file;
    set!(
        allow_zero_length_clientid,
        retain_available,
        upgrade_outgoing_qos,
        queue_qos0_messages
    );
    set!(max_qos, log_timestamp, use_username_as_clientid, check_retain_source);
    c.auto_id_prefix = file.auto_id_prefix;
    c.clientid_prefixes = file.clientid_prefixes;
    c.log_timestamp_format = file.log_timestamp_format;
    if let Some(n) = file.log_facility {
        if n > 7 {
            return Err(anyhow!(
                "log_facility: {n}: use 0 to 7 (syslog facilities local0 to local7)"
            ));
        }
        c.log_facility = Some(n);
    }
    let _ = file.set_tcp_nodelay;
    if let Some(size) = file.max_packet_size {
        c.packet_size_limit = size;
    }
    let qos = c.listeners.iter().filter_map(|l| l.max_qos).chain([c.max_qos]);
    if let Some(bad) = qos.into_iter().find(|q| *q > 2) {
        return Err(anyhow!("max_qos: {bad} is not a QoS (0, 1 or 2)"));
    }
    for dest in file.log_dest.unwrap_or_default() {
        c.log_dest.push(match dest.as_str() {
            "stdout" => LogDest::Stdout,
            "stderr" => LogDest::Stderr,
            "none" => LogDest::None,
            "syslog" => LogDest::Syslog,
            "topic" => LogDest::Topic,
            path => LogDest::File(PathBuf::from(path.strip_prefix("file ").unwrap_or(path))),
        });
    }
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_toml_file_uses_mosquitto_names() {
        let c = parse("allow_anonymous = true\nmax_queued_messages = 10\n[[listener]]\nport = 1884\nbind_address = \"127.0.0.1\"\n").unwrap();
        assert!(c.allow_anonymous);
        assert_eq!(c.max_queued_messages, 10);
        assert_eq!(c.listeners[0].port, 1884);
    }

    #[test]
    fn mosquittos_client_rules_have_toml_keys_too() {
        let c = parse("allow_zero_length_clientid = false\nauto_id_prefix = \"gen-\"\nclientid_prefixes = \"ok-\"\nmax_packet_size = 500\nmax_qos = 1\nretain_available = false\nupgrade_outgoing_qos = true\nqueue_qos0_messages = true\nmax_inflight_bytes = 1000\nmemory_limit = 100000000\nlog_timestamp = false\nuse_username_as_clientid = true\n[[listener]]\nport = 1884\nmax_qos = 0\n").unwrap();
        assert!(!c.allow_zero_length_clientid && !c.retain_available && !c.log_timestamp);
        assert!(c.upgrade_outgoing_qos && c.queue_qos0_messages && c.username_as_client_id(0));
        assert_eq!((c.max_qos(0), c.max_qos(1)), (0, 1));
        assert_eq!(c.max_packet_size(), 500);
        assert_eq!((c.max_inflight_bytes, c.memory_limit), (1000, 100_000_000));
        assert_eq!(
            c.client_id_refusal(0, "other"),
            Some("the client id does not start with clientid_prefixes")
        );
        assert!(parse("max_qos = 3\n").is_err());
    }

    #[test]
    fn platform_mode_mirrors_the_mosquitto_form() {
        let c = parse("platform_domain = \"iot.example\"\n[[listener]]\nport = 8883\nplatform = true\n").unwrap();
        assert_eq!(c.platform_domain.as_deref(), Some("iot.example"));
        assert!(c.listeners[0].platform);
        assert!(parse("[[listener]]\nport = 1\nplatform = true\nmount_point = \"a/\"\n").is_err());
        assert!(parse("platform_domain = \"not a domain\"\n").is_err());
    }

    #[test]
    fn historian_postgres_is_a_connection_string() {
        let c = parse("historian_postgres = \"postgresql://tern@localhost/tern\"\n").unwrap();
        assert_eq!(
            c.historian_postgres.as_deref(),
            Some("postgresql://tern@localhost/tern")
        );
        assert!(parse("historian_postgres = \" \"\n").is_err());
    }

    #[test]
    fn unknown_keys_are_errors_with_a_line() {
        let err = format!("{:#}", parse("max_queued_messages = 10\nbogus = 1\n").unwrap_err());
        assert!(err.contains("bogus") && err.contains("line 2"), "{err}");
    }
}
