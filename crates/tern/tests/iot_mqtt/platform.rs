//! The harness of the IoT platform's MQTT tests (`iot_mqtt.rs`, `iot_mqtt_rules.rs`): a
//! broker with platform listeners over a registry made with `tern iot`, and raw clients
//! that connect to it as the platform's devices and applications.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]
use crate::common::*;
use serde_json::Value;
use std::net::SocketAddr;
use std::process::Command;
use tern_proto::*;

pub use crate::common::iot::{iot, text};

/// A broker with four listeners: platform mode on plain TCP, platform mode on TLS, a plain
/// mosquitto-style listener, and platform mode over WebSocket; organization `za6xa7` (plain TCP allowed) with type
/// `test`, devices 4321 and 4322, its admin key and a read-only key; organization `orgb`
/// (TLS only) with device `test/4321` too.
pub struct Platform {
    pub broker: Broker,
    pub ca: std::path::PathBuf,
    pub key: String,
    pub token: String,
    pub reader_key: String,
    pub reader_token: String,
    pub device_token: String,
    pub other_device_token: String,
    pub orgb_key: String,
    pub orgb_token: String,
    pub orgb_device_token: String,
    /// The broker's data directory (the registry is in it).
    pub data: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Platform {
    pub fn start() -> Platform {
        Platform::start_with("")
    }

    /// [`Platform::start`] with more global directives.
    pub fn start_with(extra: &str) -> Platform {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let admin = iot(&data, &["org", "create", "za6xa7", "--allow-plain", "true"]);
        iot(&data, &["type", "create", "za6xa7", "test"]);
        let device = iot(&data, &["device", "create", "za6xa7", "test", "4321"]);
        let other = iot(&data, &["device", "create", "za6xa7", "test", "4322"]);
        let reader = iot(&data, &["key", "create", "za6xa7", "--role", "read-only"]);
        let orgb = iot(&data, &["org", "create", "orgb"]);
        iot(&data, &["type", "create", "orgb", "test"]);
        let orgb_device = iot(&data, &["device", "create", "orgb", "test", "4321"]);
        let ca = pki::Ca::new(dir.path(), "iot");
        let (cert, key) = ca.server("server");
        let config = format!(
            "{extra}persistence true\npersistence_location {}\nplatform_domain iot.test\nallow_anonymous true\nauth_failure_delay 0\n\
             listener 0 127.0.0.1\nplatform true\n\
             listener 0 127.0.0.1\ncertfile {}\nkeyfile {}\nplatform true\n\
             listener 0 127.0.0.1\n\
             listener 0 127.0.0.1\nprotocol websockets\nplatform true\n",
            data.display(),
            cert.display(),
            key.display()
        );
        let path = dir.path().join("mosquitto.conf");
        std::fs::write(&path, config).unwrap();
        Platform {
            broker: Broker::from_file(&path),
            ca: ca.cafile(),
            key: text(&admin, "apiKey"),
            token: text(&admin, "apiToken"),
            reader_key: text(&reader, "apiKey"),
            reader_token: text(&reader, "apiToken"),
            device_token: text(&device, "authToken"),
            other_device_token: text(&other, "authToken"),
            orgb_key: text(&orgb, "apiKey"),
            orgb_token: text(&orgb, "apiToken"),
            orgb_device_token: text(&orgb_device, "authToken"),
            data,
            _dir: dir,
        }
    }

    /// Stops the broker (SIGTERM, waiting for it to exit) and starts it again on the same
    /// configuration and data directory; its listeners get new ports.
    pub fn restart(self) -> Platform {
        let path = self._dir.path().join("mosquitto.conf");
        self.broker.stop();
        Platform {
            broker: Broker::from_file(&path),
            ..self
        }
    }

    /// The broker's configuration file.
    pub fn config_path(&self) -> std::path::PathBuf {
        self._dir.path().join("mosquitto.conf")
    }

    pub fn addr(&self, listener: usize) -> SocketAddr {
        self.broker.listening_addrs()[listener]
    }

    pub fn port(&self, listener: usize) -> String {
        self.addr(listener).port().to_string()
    }

    /// A raw client's CONNECT with credentials on listener `listener`; returns the client
    /// and CONNACK.
    pub fn try_connect(
        &self,
        version: ProtocolVersion,
        client_id: &str,
        user: &str,
        password: &str,
    ) -> (Client, ConnectAck) {
        let mut client = Client::open(self.addr(0), version);
        let mut connect = connect_packet(version, client_id, true, 60);
        connect.username = Some(ByteStr::from(user));
        connect.password = Some(bytes::Bytes::copy_from_slice(password.as_bytes()));
        let ack = client.connect(&connect);
        (client, ack)
    }

    pub fn connect(&self, version: ProtocolVersion, client_id: &str, user: &str, password: &str) -> Client {
        let (client, ack) = self.try_connect(version, client_id, user, password);
        assert_eq!(ack.reason_code, ReasonCode::SUCCESS, "{client_id}: {ack:?}");
        client
    }

    pub fn device(&self, version: ProtocolVersion, id: &str) -> Client {
        let token = if id == "4321" {
            &self.device_token
        } else {
            &self.other_device_token
        };
        self.connect(version, &format!("d:za6xa7:test:{id}"), "use-token-auth", token)
    }

    pub fn app(&self, version: ProtocolVersion, app_id: &str) -> Client {
        self.connect(version, &format!("a:za6xa7:{app_id}"), &self.key, &self.token)
    }
}

pub fn mosquitto_clients() -> bool {
    peer_available(
        "mosquitto_pub/mosquitto_sub (apt-get install mosquitto-clients)",
        program_exists("mosquitto_sub") && program_exists("mosquitto_pub"),
    )
}

pub fn mosquitto_pub(args: &[&str]) {
    let out = Command::new("mosquitto_pub").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "mosquitto_pub {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

pub fn status(publish: &Publish) -> Value {
    serde_json::from_slice(&publish.payload).unwrap()
}
