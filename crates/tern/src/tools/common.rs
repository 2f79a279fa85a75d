//! The flags every client tool shares, and turning them into a connection.
//!
//! `-h` is the host, as in mosquitto's tools, so help is `--help` only.

use anyhow::{anyhow, bail, Context, Result};
use bytes::Bytes;
use std::path::PathBuf;
use std::time::Duration;
use tern_client::{Client, ClientError, ConnectOptions, Events, TlsOptions};
use tern_proto::{ByteStr, ConnectAck, Properties, Property, PropertyContext, ProtocolVersion, QoS, ReasonCode, Will};

/// Exit status when the connection is refused or lost (mosquitto's tools exit non-zero).
pub const EXIT_CONNECTION: u8 = 1;

#[derive(clap::Args, Debug, Clone)]
pub struct Common {
    /// Broker host.
    #[arg(short = 'h', long = "host", default_value = "localhost")]
    pub host: String,
    /// Broker port.
    #[arg(short = 'p', long = "port", default_value_t = 1883)]
    pub port: u16,
    /// Host, port, credentials and topic in one URL:
    /// mqtt://[user[:password]@]host[:port]/topic (mqtts:// for TLS, port 8883).
    #[arg(short = 'L', long = "url")]
    pub url: Option<String>,
    /// Client id (default: the tool's name and the process id).
    #[arg(short = 'i', long = "id")]
    pub id: Option<String>,
    /// Client id prefix, followed by the process id.
    #[arg(short = 'I', long = "id-prefix")]
    pub id_prefix: Option<String>,
    /// Keepalive in seconds.
    #[arg(short = 'k', long = "keepalive", default_value_t = 60)]
    pub keepalive: u16,
    /// Disable clean session: a persistent session (needs -i).
    #[arg(short = 'c', long = "disable-clean-session")]
    pub disable_clean_session: bool,
    /// Session Expiry Interval in seconds (MQTT 5).
    #[arg(short = 'x', long = "session-expiry-interval")]
    pub session_expiry: Option<u32>,
    /// mqttv31, mqttv311 or mqttv5 (also 31, 311, 5).
    #[arg(short = 'V', long = "protocol-version", default_value = "mqttv311")]
    pub protocol_version: String,
    /// User name to connect with.
    #[arg(short = 'u', long = "username")]
    pub username: Option<String>,
    /// Password to connect with (needs -u).
    #[arg(short = 'P', long = "pw")]
    pub password: Option<String>,
    /// Topic (repeatable where the tool takes several).
    #[arg(short = 't', long = "topic")]
    pub topics: Vec<String>,
    /// Quality of service.
    #[arg(short = 'q', long = "qos", default_value_t = 0)]
    pub qos: u8,
    /// MQTT 5 property: COMMAND NAME VALUE (user-property takes NAME KEY VALUE).
    #[arg(short = 'D', long = "property", num_args = 3..=4, action = clap::ArgAction::Append, value_names = ["COMMAND", "NAME", "VALUE"])]
    pub properties: Vec<String>,
    /// Print every packet sent and received on standard error, in mosquitto's words.
    #[arg(short = 'd', long = "debug")]
    pub debug: bool,
    /// Print no error messages.
    #[arg(long = "quiet")]
    pub quiet: bool,
    /// Topic of the will, published by the broker if this client goes away without
    /// DISCONNECT.
    #[arg(long = "will-topic")]
    pub will_topic: Option<String>,
    /// Payload of the will (default: empty).
    #[arg(long = "will-payload")]
    pub will_payload: Option<String>,
    /// QoS of the will.
    #[arg(long = "will-qos", default_value_t = 0)]
    pub will_qos: u8,
    /// Retain the will.
    #[arg(long = "will-retain")]
    pub will_retain: bool,
    /// Connect over TLS, trusting the CA certificates in this PEM file.
    #[arg(long = "cafile")]
    pub cafile: Option<String>,
    /// Connect over TLS, trusting the CA certificates (*.pem, *.crt) in this folder.
    #[arg(long = "capath")]
    pub capath: Option<String>,
    /// Client certificate (PEM) for brokers that require one (with --key; needs TLS).
    #[arg(long = "cert")]
    pub cert: Option<String>,
    /// Private key (PEM) of --cert.
    #[arg(long = "key")]
    pub key: Option<String>,
    /// Do not check that the broker's certificate names the host (the chain is still
    /// checked).
    #[arg(long = "insecure")]
    pub insecure: bool,
    /// Lowest TLS version: tlsv1.2 (default) or tlsv1.3.
    #[arg(long = "tls-version")]
    pub tls_version: Option<String>,
    /// Set by an mqtts:// URL.
    #[arg(skip)]
    pub url_tls: bool,
    #[arg(long = "help", action = clap::ArgAction::Help, help = "Print help")]
    pub help: Option<bool>,
    #[arg(long = "version", action = clap::ArgAction::Version, help = "Print version")]
    pub version: Option<bool>,
}

pub fn parse_qos(value: u8, what: &str) -> Result<QoS> {
    QoS::from_u8(value).ok_or_else(|| anyhow!("{what} must be 0, 1 or 2, not {value}"))
}

impl Common {
    pub fn protocol(&self) -> Result<ProtocolVersion> {
        Ok(match self.protocol_version.as_str() {
            "mqttv31" | "31" => ProtocolVersion::V3_1,
            "mqttv311" | "311" => ProtocolVersion::V3_1_1,
            "mqttv5" | "5" => ProtocolVersion::V5,
            other => bail!("unknown protocol version {other:?}: use mqttv31, mqttv311 or mqttv5"),
        })
    }

    pub fn qos(&self) -> Result<QoS> {
        parse_qos(self.qos, "QoS")
    }

    /// Applies `-L mqtt://user:pass@host:port/topic`.
    fn apply_url(&mut self) -> Result<()> {
        let Some(url) = self.url.clone() else { return Ok(()) };
        let rest = match (url.strip_prefix("mqtt://"), url.strip_prefix("mqtts://")) {
            (Some(rest), _) => rest,
            (None, Some(rest)) => {
                // mosquitto: TLS on port 8883, with the system's CA store unless --cafile
                // or --capath says otherwise.
                self.url_tls = true;
                self.port = 8883;
                rest
            }
            _ => bail!("unsupported URL {url:?}: it must start with mqtt:// or mqtts://"),
        };
        let (authority, topic) = rest
            .split_once('/')
            .ok_or_else(|| anyhow!("URL {url:?} has no topic"))?;
        let host_port = match authority.rsplit_once('@') {
            Some((credentials, host_port)) => {
                let (user, password) = match credentials.split_once(':') {
                    Some((u, p)) => (u, Some(p)),
                    None => (credentials, None),
                };
                self.username = Some(user.to_string());
                self.password = password.map(str::to_string);
                host_port
            }
            None => authority,
        };
        match host_port.rsplit_once(':') {
            Some((host, port)) => {
                self.host = host.to_string();
                self.port = port.parse().map_err(|_| anyhow!("invalid port {port:?} in URL"))?;
            }
            None => self.host = host_port.to_string(),
        }
        if !topic.is_empty() {
            self.topics.push(topic.to_string());
        }
        Ok(())
    }

    /// The -D occurrences, grouped: COMMAND NAME VALUE, or COMMAND user-property KEY VALUE.
    fn property_specs(&self) -> Result<Vec<Vec<String>>> {
        let mut specs = Vec::new();
        let mut rest = self.properties.as_slice();
        while !rest.is_empty() {
            let len = if rest.get(1).is_some_and(|n| n == "user-property") {
                4
            } else {
                3
            };
            if rest.len() < len {
                bail!("-D needs COMMAND NAME VALUE (user-property: COMMAND user-property KEY VALUE)");
            }
            specs.push(rest[..len].to_vec());
            rest = &rest[len..];
        }
        Ok(specs)
    }

    /// The -D properties for `command` (connect, publish, subscribe, ...).
    pub fn properties_for(&self, command: &str) -> Result<Properties> {
        let mut properties = Properties::default();
        for spec in &self.property_specs()? {
            if !spec[0].eq_ignore_ascii_case(command) {
                continue;
            }
            properties.push(parse_property(spec)?);
        }
        Ok(properties)
    }

    fn check_property_commands(&self) -> Result<()> {
        for spec in &self.property_specs()? {
            let context = match spec[0].to_ascii_lowercase().as_str() {
                "connect" => PropertyContext::Connect,
                "publish" => PropertyContext::Publish,
                "subscribe" => PropertyContext::Subscribe,
                "unsubscribe" => PropertyContext::Unsubscribe,
                "disconnect" => PropertyContext::Disconnect,
                "will" => PropertyContext::Will,
                "auth" => PropertyContext::Auth,
                other => bail!("-D: unknown command {other:?}"),
            };
            let property = parse_property(spec)?;
            if !property.id().is_allowed_in(context) {
                bail!("-D: property {} is not allowed in {}", spec[1], spec[0]);
            }
        }
        Ok(())
    }

    /// TLS settings from --cafile, --capath, --cert, --key, --insecure, --tls-version and
    /// mqtts:// URLs; `None` for plain TCP.
    fn tls_options(&self) -> Result<Option<TlsOptions>> {
        let wanted = self.url_tls || self.cafile.is_some() || self.capath.is_some();
        if !wanted {
            if self.cert.is_some() || self.key.is_some() || self.insecure || self.tls_version.is_some() {
                bail!("TLS options need --cafile or --capath (or an mqtts:// URL)");
            }
            return Ok(None);
        }
        let mut capath = self.capath.clone().map(PathBuf::from);
        if self.cafile.is_none() && capath.is_none() {
            capath = Some(PathBuf::from("/etc/ssl/certs"));
        }
        Ok(Some(TlsOptions {
            cafile: self.cafile.clone().map(PathBuf::from),
            capath,
            cert: self.cert.clone().map(PathBuf::from),
            key: self.key.clone().map(PathBuf::from),
            insecure: self.insecure,
            tls_version: self.tls_version.clone(),
            alpn: Vec::new(),
        }))
    }

    /// Validates the flags and builds the connection options. `tool` names the default
    /// client id, as mosquitto does (`mosquitto_sub_1234`).
    pub fn connect_options(&mut self, tool: &str) -> Result<ConnectOptions> {
        self.apply_url()?;
        let tls = self.tls_options()?;
        let version = self.protocol()?;
        if !self.properties.is_empty() && version != ProtocolVersion::V5 {
            bail!("-D properties need MQTT 5 (-V mqttv5)");
        }
        self.check_property_commands()?;
        let id = match (&self.id, &self.id_prefix) {
            (Some(id), _) => id.clone(),
            (None, Some(prefix)) => format!("{prefix}{}", std::process::id()),
            (None, None) if self.disable_clean_session => bail!("you must provide a client id (-i) with -c"),
            (None, None) => format!("{tool}_{}", std::process::id()),
        };
        let mut options = ConnectOptions::new(self.host.clone(), self.port)
            .version(version)
            .client_id(id)
            .clean_start(!self.disable_clean_session)
            .keep_alive(self.keepalive);
        if let Some(user) = &self.username {
            options = options.credentials(user.clone(), self.password.clone().map(Bytes::from));
        } else if self.password.is_some() {
            bail!("a password (-P) needs a user name (-u)");
        }
        if let Some(topic) = &self.will_topic {
            tern_proto::topic::validate_topic_name(topic).map_err(|e| anyhow!("invalid will topic {topic:?}: {e}"))?;
            options.will = Some(Will {
                topic: ByteStr::from(topic.as_str()),
                payload: Bytes::from(self.will_payload.clone().unwrap_or_default()),
                qos: parse_qos(self.will_qos, "will QoS")?,
                retain: self.will_retain,
                properties: self.properties_for("will")?,
            });
        }
        if version == ProtocolVersion::V5 {
            options.properties = self.properties_for("connect")?;
            let expiry = match self.session_expiry {
                Some(seconds) => Some(seconds),
                None if self.disable_clean_session => Some(u32::MAX),
                None => None,
            };
            if let Some(seconds) = expiry {
                options = options.session_expiry(seconds);
            }
        }
        options.connect_timeout = Duration::from_secs(10);
        options.tls = tls;
        if self.debug {
            let subscribed = tool == "tern_sub";
            options.trace = Some(super::debug::tracer(options.client_id.clone(), version, subscribed));
        }
        Ok(options)
    }

    /// Connects (with -d the options trace every packet).
    pub async fn connect(&self, options: ConnectOptions) -> Result<(Client, Events, ConnectAck)> {
        let address = format!("{}:{}", options.host, options.port);
        match Client::connect(options).await {
            Ok(connected) => Ok(connected),
            Err(e @ ClientError::Connect { .. }) => Err(ToolError::connection(e.to_string())),
            Err(ClientError::Refused(code)) => Err(ToolError::connection(format!(
                "{address}: {}",
                ClientError::Refused(code)
            ))),
            Err(e) => Err(ToolError::connection(format!("{address}: {e}"))),
        }
    }
}

impl Common {
    /// Sends DISCONNECT with `reason_code` (5.0; 3.x has none) and the `-D disconnect`
    /// properties. Waits a few seconds at most: a tool that is leaving does not hang on a
    /// broker that has gone.
    pub async fn leave(&self, client: &Client, reason_code: ReasonCode) {
        let properties = match self.protocol() {
            Ok(v) if v.is_v5() => self.properties_for("disconnect").unwrap_or_default(),
            _ => Properties::default(),
        };
        let _ = tokio::time::timeout(Duration::from_secs(5), client.disconnect_with(reason_code, properties)).await;
    }

    /// How mosquitto's tools leave when interrupted (SIGINT, SIGTERM) or timed out (-W):
    /// DISCONNECT, under MQTT 5 with 0x04 "Disconnect with Will Message", so that the
    /// broker publishes the will all the same. A 3.x DISCONNECT cannot say that: no will.
    pub async fn leave_interrupted(&self, client: &Client) {
        let reason = match self.protocol() {
            Ok(v) if v.is_v5() => ReasonCode::DISCONNECT_WITH_WILL_MESSAGE,
            _ => ReasonCode::NORMAL_DISCONNECTION,
        };
        self.leave(client, reason).await;
    }
}

/// A refused or lost connection: reported as one line naming host, port and reason.
#[derive(Debug)]
pub struct ToolError(pub String);

impl std::fmt::Display for ToolError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ToolError {}

impl ToolError {
    pub fn connection(message: String) -> anyhow::Error {
        anyhow::Error::new(ToolError(message))
    }
}

/// mosquitto's -D property names.
fn parse_property(spec: &[String]) -> Result<Property> {
    let name = spec[1].as_str();
    let value = spec[2].as_str();
    let extra = spec.get(3);
    let number = |v: &str| -> Result<u32> { v.parse().with_context(|| format!("-D {name}: {v:?} is not a number")) };
    let small = |v: &str| -> Result<u16> {
        v.parse()
            .with_context(|| format!("-D {name}: {v:?} is not a 16-bit number"))
    };
    let byte = |v: &str| -> Result<u8> { v.parse().with_context(|| format!("-D {name}: {v:?} is not a byte")) };
    let text = |v: &str| ByteStr::from(v);
    let property = match name {
        "payload-format-indicator" => Property::PayloadFormatIndicator(byte(value)?),
        "message-expiry-interval" => Property::MessageExpiryInterval(number(value)?),
        "content-type" => Property::ContentType(text(value)),
        "response-topic" => Property::ResponseTopic(text(value)),
        "correlation-data" => Property::CorrelationData(Bytes::from(value.to_string())),
        "subscription-identifier" => Property::SubscriptionIdentifier(number(value)?),
        "session-expiry-interval" => Property::SessionExpiryInterval(number(value)?),
        "authentication-method" => Property::AuthenticationMethod(text(value)),
        "authentication-data" => Property::AuthenticationData(Bytes::from(value.to_string())),
        "request-problem-information" => Property::RequestProblemInformation(byte(value)?),
        "will-delay-interval" => Property::WillDelayInterval(number(value)?),
        "request-response-information" => Property::RequestResponseInformation(byte(value)?),
        "reason-string" => Property::ReasonString(text(value)),
        "receive-maximum" => Property::ReceiveMaximum(small(value)?),
        "topic-alias-maximum" => Property::TopicAliasMaximum(small(value)?),
        "topic-alias" => Property::TopicAlias(small(value)?),
        "maximum-packet-size" => Property::MaximumPacketSize(number(value)?),
        "user-property" => {
            let v = extra.ok_or_else(|| anyhow!("-D user-property needs a name and a value"))?;
            Property::UserProperty((text(value), text(v)))
        }
        other => bail!("-D: unknown or server-only property {other:?}"),
    };
    if name != "user-property" && extra.is_some() {
        bail!("-D {name} takes one value");
    }
    Ok(property)
}

/// Reports an error the way the tools do (unless --quiet) and picks the exit status.
pub fn report(error: &anyhow::Error, quiet: bool) -> u8 {
    if !quiet {
        eprintln!("Error: {error:#}");
    }
    if error.downcast_ref::<ToolError>().is_some() {
        EXIT_CONNECTION
    } else {
        1
    }
}
