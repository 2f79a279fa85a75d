//! The mosquitto.conf reader.
//!
//! One directive per line, `#` starts a comment. Directives Tern implements are applied;
//! any other directive, a bad value or a missing argument is an error of the form
//! `FILE:LINE: directive: problem`.

use super::{parse_mosquitto_duration, Config, ListenerConfig, ListenerProtocol, LogDest};
use crate::shared::ShareStrategy;
use crate::store::Durability;
use anyhow::{anyhow, bail, Result};
use std::path::{Path, PathBuf};

pub(super) fn parse_into(config: &mut Config, path: &Path, text: &str) -> Result<()> {
    for (index, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut words = line.split_whitespace();
        let directive = words.next().unwrap_or_default();
        let args: Vec<&str> = words.collect();
        apply(config, path, directive, &args)
            .map_err(|e| anyhow!("{}:{}: {directive}: {e}", path.display(), index + 1))?;
    }
    Ok(())
}

fn one<'a>(args: &[&'a str]) -> Result<&'a str> {
    match args {
        [value] => Ok(value),
        [] => bail!("missing value"),
        _ => bail!("expected one value, got {}", args.len()),
    }
}

fn number<T: std::str::FromStr>(args: &[&str]) -> Result<T> {
    let value = one(args)?;
    value.parse().map_err(|_| anyhow!("{value:?} is not a valid number"))
}

fn boolean(args: &[&str]) -> Result<bool> {
    match one(args)? {
        "true" => Ok(true),
        "false" => Ok(false),
        other => bail!("{other:?} is neither true nor false"),
    }
}

/// `sync`, `periodic` (keeping a configured interval, else 100 ms) or `off`.
pub(super) fn durability(name: &str, current: Durability) -> Result<Durability> {
    Ok(match name {
        "sync" => Durability::Sync,
        "periodic" => match current {
            Durability::Periodic(every) => Durability::Periodic(every),
            _ => Durability::Periodic(std::time::Duration::from_millis(100)),
        },
        "off" => Durability::Off,
        other => bail!("unknown durability {other:?}; use sync, periodic or off"),
    })
}

pub(super) fn strategy(name: &str) -> Result<ShareStrategy> {
    ShareStrategy::parse(name)
        .ok_or_else(|| anyhow!("unknown strategy {name:?}; use round_robin, random, sticky or hash_topic"))
}

/// A TLS directive: it belongs to the current listener (the default one if none yet).
fn tls_directive(config: &mut Config, directive: &str, args: &[&str]) -> Result<()> {
    if config.listeners.is_empty() {
        config.listeners.push(ListenerConfig {
            port: 1883,
            ..ListenerConfig::default()
        });
    }
    let Some(listener) = config.listeners.last_mut() else {
        return Ok(());
    };
    let tls = &mut listener.tls;
    let path = || one(args).map(PathBuf::from);
    match directive {
        "certfile" => tls.certfile = Some(path()?),
        "keyfile" => tls.keyfile = Some(path()?),
        "cafile" => tls.cafile = Some(path()?),
        "capath" => tls.capath = Some(path()?),
        "crlfile" => tls.crlfile = Some(path()?),
        "tls_version" => tls.tls_version = Some(one(args)?.to_string()),
        "tls_alpn" => tls.alpn = one(args)?.split(',').map(str::to_string).collect(),
        "ciphers" => tls.ciphers = Some(crate::tls::ciphers::tls12(one(args)?)?),
        "ciphers_tls1.3" => tls.ciphers_tls13 = Some(crate::tls::ciphers::tls13(one(args)?)?),
        "require_certificate" => tls.require_certificate = boolean(args)?,
        "use_identity_as_username" => tls.use_identity_as_username = boolean(args)?,
        "use_subject_as_username" => tls.use_subject_as_username = boolean(args)?,
        _ => bail!("not a TLS directive"),
    }
    Ok(())
}

/// The listener a security directive belongs to: the current one with
/// per_listener_settings, none (global) without.
fn security_listener(config: &mut Config) -> Option<&mut ListenerConfig> {
    if config.per_listener_settings {
        config.listeners.last_mut()
    } else {
        None
    }
}

fn current_listener(config: &mut Config) -> Option<&mut ListenerConfig> {
    config.listeners.last_mut()
}

/// The listener a per-listener directive belongs to: the last `listener` line.
/// Checks a `platform_domain`: a DNS name (letters, digits, `-` and dots).
pub(super) fn platform_domain(domain: &str) -> Result<String> {
    let valid = !domain.is_empty()
        && domain.len() <= 253
        && domain.split('.').all(|label| {
            (1..=63).contains(&label.len())
                && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        });
    if !valid {
        bail!("platform_domain {domain:?} is not a DNS name");
    }
    Ok(domain.to_ascii_lowercase())
}

/// Checks a `historian_postgres` connection string as far as the broker can (the platform
/// reads it whole at start, naming what is wrong).
pub(super) fn historian_postgres(conn: &str) -> Result<String> {
    let conn = conn.trim();
    if conn.is_empty() {
        bail!("historian_postgres needs a connection string, e.g. \"host=/var/run/postgresql dbname=tern\"");
    }
    Ok(conn.to_string())
}

fn listener_for<'c>(config: &'c mut Config, directive: &str) -> Result<&'c mut ListenerConfig> {
    config
        .listeners
        .last_mut()
        .ok_or_else(|| anyhow!("{directive} belongs to a listener: put it after a listener line"))
}

fn apply(config: &mut Config, path: &Path, directive: &str, args: &[&str]) -> Result<()> {
    match directive {
        "listener" => {
            let (port, bind) = match args {
                [port] => (port, None),
                [port, bind] => (port, Some(bind.to_string())),
                _ => bail!("expected a port and an optional bind address"),
            };
            let port = port.parse().map_err(|_| anyhow!("{port:?} is not a valid port"))?;
            config.listeners.push(ListenerConfig {
                port,
                bind_address: bind,
                ..ListenerConfig::default()
            });
        }
        "port" => {
            let port = number(args)?;
            match config.listeners.first_mut() {
                Some(l) => l.port = port,
                None => config.listeners.push(ListenerConfig {
                    port,
                    ..ListenerConfig::default()
                }),
            }
        }
        "bind_address" => {
            let addr = one(args)?.to_string();
            match config.listeners.first_mut() {
                Some(l) => l.bind_address = Some(addr),
                None => config.listeners.push(ListenerConfig {
                    port: 1883,
                    bind_address: Some(addr),
                    ..ListenerConfig::default()
                }),
            }
        }
        "protocol" => {
            let name = one(args)?;
            let protocol = ListenerProtocol::parse(name)
                .ok_or_else(|| anyhow!("unknown protocol {name:?} (expected mqtt, websockets or http)"))?;
            listener_for(config, directive)?.protocol = protocol;
        }
        "websockets_path" => {
            let path = one(args)?;
            if !path.starts_with('/') {
                bail!("{path:?} is not a request path (it starts with /)");
            }
            listener_for(config, directive)?.websockets.path = Some(path.to_string());
        }
        "websockets_origins" => {
            let origins = args.iter().flat_map(|a| a.split(',')).filter(|o| !o.is_empty());
            let origins: Vec<String> = origins.map(str::to_string).collect();
            listener_for(config, directive)?.websockets.origins = origins;
        }
        "websockets_trusted_proxies" => {
            let mut proxies = Vec::new();
            for text in args.iter().flat_map(|a| a.split(',')).filter(|p| !p.is_empty()) {
                proxies.push(text.parse().map_err(|_| anyhow!("{text:?} is not an IP address"))?);
            }
            listener_for(config, directive)?.websockets.trusted_proxies = proxies;
        }
        "websockets_require_subprotocol" => {
            listener_for(config, directive)?.websockets.require_subprotocol = boolean(args)?;
        }
        "websockets_headers_size" => listener_for(config, directive)?.websockets.headers_size = number(args)?,
        // libwebsockets' own debug output in mosquitto; Tern logs every WebSocket fault
        // with its connection, so the level has nothing to select.
        "websockets_log_level" => {
            number::<i64>(args)?;
        }
        "mount_point" => {
            let map = crate::topic_map::TopicMap::mount(one(args)?)?;
            let listener = listener_for(config, directive)?;
            if listener.platform {
                bail!("platform true and mount_point exclude each other: the platform maps its clients' topics");
            }
            listener.mount_point = Some(map);
        }
        "platform" => {
            let on = boolean(args)?;
            let listener = listener_for(config, directive)?;
            if on && listener.mount_point.is_some() {
                bail!("platform true and mount_point exclude each other: the platform maps its clients' topics");
            }
            listener.platform = on;
        }
        "platform_domain" => config.platform_domain = Some(platform_domain(one(args)?)?),
        "platform_quickstart" => config.platform_quickstart = boolean(args)?,
        "historian_postgres" => config.historian_postgres = Some(historian_postgres(&args.join(" "))?),
        "historian_topic" => config.historian_topics.push(super::historian::historian_topic(args)?),
        "cluster_nats_urls" => config.cluster_nats_urls = super::cluster::nats_urls(args)?,
        "cluster_node_name" => config.cluster_node_name = Some(super::cluster::node_name(one(args)?)?),
        "cluster_node_timeout" => config.cluster_node_timeout = super::cluster::node_timeout(one(args)?)?,
        "cluster_nats_cafile"
        | "cluster_nats_certfile"
        | "cluster_nats_keyfile"
        | "cluster_nats_nkey_file"
        | "cluster_nats_credentials" => {
            config.cluster_nats_auth.set(directive, one(args)?)?;
        }
        "per_listener_settings" => config.per_listener_settings = boolean(args)?,
        // Security settings: per listener with per_listener_settings, else global.
        "allow_anonymous" => {
            let allow = boolean(args)?;
            match security_listener(config) {
                Some(l) => l.allow_anonymous = Some(allow),
                None => config.allow_anonymous = allow,
            }
        }
        "password_file" => {
            let file = Some(PathBuf::from(one(args)?));
            match security_listener(config) {
                Some(l) => l.password_file = file,
                None => config.password_file = file,
            }
        }
        "acl_file" => {
            let file = Some(PathBuf::from(one(args)?));
            match security_listener(config) {
                Some(l) => l.acl_file = file,
                None => config.acl_file = file,
            }
        }
        "user" => config.user = Some(one(args)?.to_string()),
        "bind_interface" => {
            // mosquitto: the listener it follows accepts connections only through this
            // network interface (SO_BINDTODEVICE; needs root or CAP_NET_RAW).
            let name = one(args)?.to_string();
            match current_listener(config) {
                Some(l) => l.bind_interface = Some(name),
                None => bail!("bind_interface belongs to a listener: put it after a listener line"),
            }
        }
        "max_connections" => {
            // mosquitto: -1 means no limit; it belongs to the listener it follows.
            let n: i64 = number(args)?;
            let limit = usize::try_from(n).ok();
            match current_listener(config) {
                Some(l) => l.max_connections = limit,
                None => config.listeners.push(ListenerConfig {
                    port: 1883,
                    max_connections: limit,
                    ..ListenerConfig::default()
                }),
            }
        }
        "certfile"
        | "keyfile"
        | "cafile"
        | "capath"
        | "crlfile"
        | "tls_version"
        | "tls_alpn"
        | "ciphers"
        | "ciphers_tls1.3"
        | "require_certificate"
        | "use_identity_as_username"
        | "use_subject_as_username" => tls_directive(config, directive, args)?,
        "persistence" => config.persistence = boolean(args)?,
        "persistence_location" => config.persistence_location = PathBuf::from(one(args)?),
        // mosquitto's snapshot settings: Tern writes continuously, so the file name is
        // fixed and autosave_interval becomes the periodic flush interval.
        "persistence_file" | "autosave_on_changes" => {}
        "autosave_interval" => {
            let seconds: u64 = number(args)?;
            if let Durability::Periodic(_) = config.durability {
                config.durability = Durability::Periodic(std::time::Duration::from_secs(seconds.max(1)));
            }
        }
        "durability" => config.durability = durability(one(args)?, config.durability)?,
        "flush_interval_ms" => {
            config.durability = Durability::Periodic(std::time::Duration::from_millis(number::<u64>(args)?.max(1)));
        }
        "auth_failure_delay" => config.auth_failure_delay = std::time::Duration::from_millis(number(args)?),
        "max_connection_rate" => config.max_connection_rate = number(args)?,
        "max_topic_levels" => config.max_topic_levels = number(args)?,
        "max_topic_length" => config.max_topic_length = number(args)?,
        "max_inflight_messages" => config.max_inflight_messages = number(args)?,
        "max_queued_messages" => config.max_queued_messages = number(args)?,
        "max_queued_bytes" => config.max_queued_bytes = number(args)?,
        "message_size_limit" => config.message_size_limit = number(args)?,
        "max_connect_packet_size" => config.max_connect_packet_size = number(args)?,
        "max_subscriptions_per_client" => config.max_subscriptions_per_client = number(args)?,
        "max_keepalive" => config.max_keepalive = number(args)?,
        "sys_interval" => config.sys_interval = number(args)?,
        "worker_threads" => config.worker_threads = number(args)?,
        "persistent_client_expiration" => {
            let value = one(args)?;
            config.persistent_client_expiration = Some(
                parse_mosquitto_duration(value)
                    .ok_or_else(|| anyhow!("{value:?} is not a duration such as 2h, 14d or 1w"))?,
            );
        }
        "connection_messages" => config.connection_messages = boolean(args)?,
        "presence_events" => config.presence_events = boolean(args)?,
        "log_type" => match one(args)? {
            "debug" | "all" => config.verbose = true,
            "error" | "warning" | "notice" | "information" | "subscribe" | "unsubscribe" | "websockets" | "none" => {}
            other => bail!("unknown log type {other:?}"),
        },
        "log_dest" => config.log_dest.push(match args {
            ["stdout"] => LogDest::Stdout,
            ["stderr"] => LogDest::Stderr,
            ["none"] => LogDest::None,
            ["file", file] => LogDest::File(PathBuf::from(file)),
            ["syslog"] => LogDest::Syslog,
            ["topic"] => LogDest::Topic,
            ["dlt"] => bail!("log destination dlt is not supported; use stdout, stderr, file, syslog or topic"),
            _ => bail!("expected stdout, stderr, syslog, topic, none or file PATH"),
        }),
        "log_facility" => {
            let n: u8 = number(args)?;
            if n > 7 {
                bail!("{n}: use 0 to 7 (syslog facilities local0 to local7)");
            }
            config.log_facility = Some(n);
        }
        "log_timestamp" => config.log_timestamp = boolean(args)?,
        // A strftime format, which may contain spaces: the rest of the line.
        "log_timestamp_format" => match args {
            [] => bail!("missing value"),
            _ => config.log_timestamp_format = Some(args.join(" ")),
        },
        "allow_zero_length_clientid" => {
            let allow = boolean(args)?;
            match security_listener(config) {
                Some(l) => l.allow_zero_length_clientid = Some(allow),
                None => config.allow_zero_length_clientid = allow,
            }
        }
        "auto_id_prefix" => {
            let prefix = one(args)?.to_string();
            match security_listener(config) {
                Some(l) => l.auto_id_prefix = Some(prefix),
                None => config.auto_id_prefix = Some(prefix),
            }
        }
        "use_username_as_clientid" => {
            let on = boolean(args)?;
            match security_listener(config) {
                Some(l) => l.use_username_as_clientid = Some(on),
                None => config.use_username_as_clientid = on,
            }
        }
        "clientid_prefixes" => config.clientid_prefixes = Some(one(args)?.to_string()),
        "max_packet_size" => {
            let size: usize = number(args)?;
            if size != 0 && size < 20 {
                bail!("{size} is below 20 bytes, which mosquitto forbids too");
            }
            config.packet_size_limit = size;
        }
        "max_qos" | "maximum_qos" => {
            let qos: u8 = number(args)?;
            if qos > 2 {
                bail!("{qos} is not a QoS (0, 1 or 2)");
            }
            // A listener setting (mosquitto's); before any listener, the default for all.
            match current_listener(config) {
                Some(l) => l.max_qos = Some(qos),
                None => config.max_qos = qos,
            }
        }
        "check_retain_source" => config.check_retain_source = boolean(args)?,
        "memory_limit" => config.memory_limit = number(args)?,
        "max_inflight_bytes" => config.max_inflight_bytes = number(args)?,
        // Tern sends a message once to a client whose subscriptions overlap, which is
        // what either value allows.
        "allow_duplicate_messages" => {
            boolean(args)?;
        }
        "max_topic_alias" => match number::<u32>(args)? {
            10 => {}
            n => bail!("{n}: Tern's topic alias maximum is 10 (mosquitto's default) on every listener"),
        },
        // Before any listener it concerns the default one, which binds as Tern does anyway.
        "socket_domain" => {
            let any = match one(args)? {
                "ipv4" => "0.0.0.0",
                "ipv6" => "::",
                other => bail!("{other:?}: use ipv4 or ipv6"),
            };
            if let Some(l) = current_listener(config).filter(|l| l.bind_address.is_none()) {
                l.bind_address = Some(any.to_string());
            }
        }
        "retain_available" => config.retain_available = boolean(args)?,
        "upgrade_outgoing_qos" => config.upgrade_outgoing_qos = boolean(args)?,
        "queue_qos0_messages" => config.queue_qos0_messages = boolean(args)?,
        // Tern always turns Nagle's algorithm off: it writes what a wake-up produced in one
        // call, so there is nothing for Nagle to merge.
        "set_tcp_nodelay" => {
            boolean(args)?;
        }
        // Tern's own directives (MQTT 5.0 choices mosquitto does not offer).
        "shared_subscription_strategy" => config.shared_subscription_strategy = strategy(one(args)?)?,
        "server_reference" => config.server_reference = Some(one(args)?.to_string()),
        "server_moved" => config.server_moved = boolean(args)?,
        "response_information" => config.response_information = one(args)?.to_string(),
        "scram_file" => config.scram_file = Some(PathBuf::from(one(args)?)),
        "pid_file" => config.pid_file = Some(PathBuf::from(one(args)?)),
        "include_dir" => include_dir(config, Path::new(one(args)?))?,
        _ => {
            let _ = path;
            match refusal(directive) {
                Some(why) => bail!("{why}"),
                None => bail!("unknown or unsupported directive"),
            }
        }
    }
    Ok(())
}

/// Bridge directives of mosquitto.conf (besides those starting with `bridge_`).
const BRIDGE_DIRECTIVES: &[&str] = &[
    "connection",
    "address",
    "addresses",
    "topic",
    "cleansession",
    "local_cleansession",
    "idle_timeout",
    "keepalive_interval",
    "local_clientid",
    "local_password",
    "local_username",
    "notifications",
    "notifications_local_only",
    "notification_topic",
    "remote_clientid",
    "remote_password",
    "remote_username",
    "restart_timeout",
    "round_robin",
    "start_type",
    "threshold",
    "try_private",
];

/// Why a mosquitto directive Tern does not implement is refused, and what to use
/// instead; `None` for a directive mosquitto does not know either.
fn refusal(directive: &str) -> Option<String> {
    let why = match directive {
        "psk_file" | "psk_hint" => {
            "TLS with pre-shared keys is not supported (rustls has no PSK cipher suites); use certificates (certfile, keyfile, cafile) or password_file over TLS"
        }
        "plugin" | "auth_plugin" | "global_plugin" | "auth_plugin_deny_special_chars" => {
            "plugins are not supported (Tern cannot load mosquitto's C plugins); use password_file, acl_file, scram_file or TLS client certificates (use_identity_as_username)"
        }
        d if d.starts_with("plugin_opt_") || d.starts_with("auth_opt_") => {
            "plugin options are not supported, nor are plugins; use password_file, acl_file, scram_file or TLS client certificates"
        }
        d if d.starts_with("bridge_") || BRIDGE_DIRECTIVES.contains(&d) => {
            "bridges are not supported; run the bridge in a separate mosquitto (its configuration holding only the bridge section) connected to Tern as a client"
        }
        "dhparamfile" | "ecdh_curve" | "tls_engine" | "tls_engine_kpass_sha1" | "tls_keyform" | "keyfile_password" => {
            "Tern's TLS (rustls) offers only its own modern cipher suites and keys in PEM files; remove this line"
        }
        "http_dir" => {
            "WebSocket listeners serve MQTT only, not files; serve the directory with a web server (the console and the HTTP API are on protocol http listeners)"
        }
        _ => return None,
    };
    Some(why.to_string())
}

/// mosquitto's include_dir: every `*.conf` in the folder, in name order.
fn include_dir(config: &mut Config, dir: &Path) -> Result<()> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| anyhow!("cannot read {}: {e}", dir.display()))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "conf"))
        .collect();
    files.sort();
    for file in files {
        let text = std::fs::read_to_string(&file).map_err(|e| anyhow!("cannot read {}: {e}", file.display()))?;
        parse_into(config, &file, &text)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config> {
        let mut config = Config::default();
        parse_into(&mut config, Path::new("test.conf"), text)?;
        Ok(config)
    }

    #[test]
    fn listeners_and_limits_are_read() {
        let config = parse(
            "# comment\nper_listener_settings true\nlistener 1884 127.0.0.1\nallow_anonymous true\nlistener 1885\nmax_inflight_messages 5\nmax_queued_messages 0\nsys_interval 1\npersistent_client_expiration 2h\n",
        )
        .unwrap();
        assert_eq!(config.listeners.len(), 2);
        assert_eq!(config.listeners[0].allow_anonymous, Some(true));
        assert_eq!(config.listeners[1].allow_anonymous, None);
        assert_eq!(config.max_inflight_messages, 5);
        assert_eq!(config.max_queued_messages, 0);
        assert_eq!(
            config.persistent_client_expiration,
            Some(std::time::Duration::from_secs(7200))
        );
    }

    #[test]
    fn a_listener_is_put_in_platform_mode() {
        let c = parse(
            "platform_domain Example.COM\nplatform_quickstart true\nlistener 8883\nplatform true\nlistener 1883\n",
        )
        .unwrap();
        assert_eq!(c.platform_domain.as_deref(), Some("example.com"));
        assert!(c.platform_quickstart);
        assert!(c.listeners[0].platform && !c.listeners[1].platform);
        for bad in [
            "platform true\n",
            "listener 1\nplatform true\nmount_point a/\n",
            "listener 1\nmount_point a/\nplatform true\n",
            "platform_domain bad_name.com\n",
            "platform_domain -a.com\n",
            "platform_domain a..com\n",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn historian_postgres_takes_the_rest_of_the_line() {
        let c = parse("historian_postgres host=/var/run/postgresql  dbname=tern user=tern\n").unwrap();
        assert_eq!(
            c.historian_postgres.as_deref(),
            Some("host=/var/run/postgresql dbname=tern user=tern")
        );
        assert_eq!(parse("listener 1\n").unwrap().historian_postgres, None);
        assert!(parse("historian_postgres\n").is_err());
    }

    #[test]
    fn errors_name_the_file_line_and_directive() {
        let err = parse("listener 1883\nbogus_directive 1\n").unwrap_err().to_string();
        assert_eq!(err, "test.conf:2: bogus_directive: unknown or unsupported directive");
        let err = parse("max_inflight_messages many\n").unwrap_err().to_string();
        assert!(err.contains("test.conf:1: max_inflight_messages"), "{err}");
        let err = parse("ciphers AES128-SHA\n").unwrap_err().to_string();
        assert!(
            err.starts_with("test.conf:1: ciphers: cipher suite AES128-SHA is not offered"),
            "{err}"
        );
        let err = parse("listener 1883\nciphers_tls1.3 TLS_AES_128_CCM_SHA256\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("test.conf:2: ciphers_tls1.3: cipher suite TLS_AES_128_CCM_SHA256"),
            "{err}"
        );
    }

    #[test]
    fn mosquitto_client_rules_are_read() {
        let c = parse("allow_zero_length_clientid false\nauto_id_prefix gen-\nclientid_prefixes ok-\nmax_packet_size 1000\nmax_qos 1\nlistener 1883\nmax_qos 0\nretain_available false\nupgrade_outgoing_qos true\nqueue_qos0_messages true\nset_tcp_nodelay true\nlog_timestamp false\nlog_timestamp_format %Y-%m-%d %H:%M:%S\ncheck_retain_source false\nmax_inflight_bytes 0\nmemory_limit 0\n").unwrap();
        assert!(!c.allow_zero_length_clientid && !c.retain_available && !c.log_timestamp);
        assert!(c.upgrade_outgoing_qos && c.queue_qos0_messages);
        assert_eq!(c.auto_id_prefix.as_deref(), Some("gen-"));
        assert_eq!(c.max_packet_size(), 1000);
        assert_eq!((c.max_qos(0), c.max_qos(1)), (0, 1));
        assert_eq!(c.log_timestamp_format.as_deref(), Some("%Y-%m-%d %H:%M:%S"));
        assert_eq!(c.client_id_refusal(0, "ok-1"), None);
        assert!(c.client_id_refusal(0, "other").is_some());
        assert!(c.client_id_refusal(0, "").is_some());
        assert!(parse("max_packet_size 19\n").is_err());
        assert!(parse("max_qos 3\n").is_err());
    }

    #[test]
    fn refused_directives_say_what_to_use_instead() {
        for (line, says) in [
            ("psk_hint hint", "pre-shared keys"),
            ("psk_file /p", "pre-shared keys"),
            ("plugin /usr/lib/x.so", "plugins are not supported"),
            ("auth_plugin /usr/lib/x.so", "plugins are not supported"),
            ("plugin_opt_x 1", "plugin options"),
            ("connection bridge-1", "bridges are not supported"),
            ("address 10.0.0.1:1883", "bridges are not supported"),
            ("topic # both 0", "bridges are not supported"),
            ("bridge_cafile /c", "bridges are not supported"),
        ] {
            let err = parse(&format!("{line}\n")).unwrap_err().to_string();
            let directive = line.split(' ').next().unwrap();
            assert!(err.starts_with(&format!("test.conf:1: {directive}: ")), "{err}");
            assert!(err.contains(says), "{line}: {err}");
        }
    }

    #[test]
    fn security_directives_are_global_unless_per_listener_settings() {
        let global = parse("listener 1883\nallow_anonymous true\npassword_file /p\n").unwrap();
        assert!(global.allow_anonymous);
        assert_eq!(global.password_file, Some(PathBuf::from("/p")));
        assert_eq!(global.listeners[0].password_file, None);
        let per = parse("per_listener_settings true\nlistener 1883\npassword_file /p\nacl_file /a\nmax_connections 5\nlistener 1884\nmax_connections -1\n").unwrap();
        assert_eq!(per.password_file, None);
        assert_eq!(per.listeners[0].password_file, Some(PathBuf::from("/p")));
        assert_eq!(per.listeners[0].acl_file, Some(PathBuf::from("/a")));
        assert_eq!(per.listeners[0].max_connections, Some(5));
        assert_eq!(per.listeners[1].max_connections, None);
    }
}
