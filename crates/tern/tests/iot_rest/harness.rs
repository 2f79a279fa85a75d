//! The REST API tests' tools: `tern iot`, a small HTTP/1.1 client over std's TcpStream,
//! and a broker with the platform's REST API and two organizations.
#![allow(dead_code)]

use crate::common::*;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde_json::Value;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::time::{Duration, Instant};
use tern_proto::*;

pub const ORG_HOST: &str = "za6xa7.iot.test";

pub use crate::common::iot::{iot, text};

/// An HTTP answer.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    /// The status line and headers.
    pub head: String,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head
            .split("\r\n")
            .filter_map(|l| l.split_once(':'))
            .find(|(n, _)| n.trim().eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim())
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {self:?}"))
    }

    /// A refusal: `status` and the platform's error shape.
    pub fn refused(&self, status: u16) -> String {
        assert_eq!(self.status, status, "{self:?} {}", String::from_utf8_lossy(&self.body));
        let body = self.json();
        assert!(body["exception"]["id"].as_str().is_some(), "{body}");
        body["message"].as_str().unwrap().to_string()
    }

    pub fn ok(&self, status: u16) -> Value {
        assert_eq!(self.status, status, "{}", String::from_utf8_lossy(&self.body));
        if self.body.is_empty() {
            Value::Null
        } else {
            self.json()
        }
    }
}

/// One HTTP/1.1 request with `Connection: close`; the whole answer.
pub fn request(addr: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Answer {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    if !headers.iter().any(|(n, _)| *n == "Host") {
        head.push_str(&format!("Host: {ORG_HOST}\r\n"));
    }
    for (n, v) in headers {
        head.push_str(&format!("{n}: {v}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).unwrap();
    let _ = stream.write_all(body);
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw);
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n").expect("end of headers");
    let head = String::from_utf8_lossy(&raw[..end]).to_string();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    let mut body = raw[end + 4..].to_vec();
    if head.to_ascii_lowercase().contains("transfer-encoding: chunked") {
        body = crate::common::dechunk(&body);
    }
    Answer { status, head, body }
}

pub fn basic(user: &str, password: &str) -> String {
    format!("Basic {}", STANDARD.encode(format!("{user}:{password}")))
}

/// A broker with `platform_domain iot.test`, a plain MQTT listener in platform mode (0)
/// and an HTTP listener (1); organization `za6xa7` (plain TCP allowed) with type `test`,
/// device `4321`, its admin key and a read-only key; organization `orgb` with `test/4321`
/// (2 messages a second per device).
pub struct Platform {
    pub broker: Option<Broker>,
    pub config: PathBuf,
    pub data: PathBuf,
    pub admin: String,
    pub reader: String,
    pub orgb: String,
    pub device_token: String,
    pub orgb_device_token: String,
    pub _dir: tempfile::TempDir,
}

impl Platform {
    pub fn start() -> Platform {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let admin = iot(&data, &["org", "create", "za6xa7", "--allow-plain", "true"]);
        iot(&data, &["type", "create", "za6xa7", "test"]);
        let device = iot(&data, &["device", "create", "za6xa7", "test", "4321"]);
        let reader = iot(&data, &["key", "create", "za6xa7", "--role", "read-only"]);
        let orgb = iot(
            &data,
            &[
                "org",
                "create",
                "orgb",
                "--allow-plain",
                "true",
                "--device-messages-per-second",
                "2",
            ],
        );
        iot(&data, &["type", "create", "orgb", "test"]);
        let orgb_device = iot(&data, &["device", "create", "orgb", "test", "4321"]);
        let config = format!(
            "persistence true\npersistence_location {}\nplatform_domain iot.test\nauth_failure_delay 0\n\
             listener 0 127.0.0.1\nplatform true\n\
             listener 0 127.0.0.1\nprotocol http\n",
            data.display()
        );
        let path = dir.path().join("mosquitto.conf");
        std::fs::write(&path, config).unwrap();
        let pair = |v: &Value| basic(&text(v, "apiKey"), &text(v, "apiToken"));
        Platform {
            broker: Some(Broker::from_file(&path)),
            config: path,
            data,
            admin: pair(&admin),
            reader: pair(&reader),
            orgb: pair(&orgb),
            device_token: text(&device, "authToken"),
            orgb_device_token: text(&orgb_device, "authToken"),
            _dir: dir,
        }
    }

    pub fn mqtt(&self) -> SocketAddr {
        self.broker.as_ref().unwrap().listening_addrs()[0]
    }

    pub fn http(&self) -> SocketAddr {
        self.broker.as_ref().unwrap().listening_addrs()[1]
    }

    /// kill -9, then the broker again with the same configuration and data.
    pub fn kill_and_restart(&mut self) {
        self.broker.take().unwrap().kill_9();
        self.broker = Some(Broker::from_file(&self.config));
    }

    /// SIGTERM, then the broker again.
    pub fn stop_and_restart(&mut self) {
        self.broker.take().unwrap().stop();
        self.broker = Some(Broker::from_file(&self.config));
    }

    /// A request as `auth` (a full Authorization value), with an optional JSON body.
    pub fn call(&self, auth: &str, method: &str, path: &str, body: Option<Value>) -> Answer {
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let mut headers = vec![("Authorization", auth)];
        if !body.is_empty() {
            headers.push(("Content-Type", "application/json"));
        }
        request(
            self.http(),
            method,
            &format!("/api/v0002{path}"),
            &headers,
            body.as_bytes(),
        )
    }

    /// A raw body posted with a Content-Type.
    pub fn post(&self, auth: &str, path: &str, content_type: &str, body: &[u8]) -> Answer {
        let headers = [("Authorization", auth), ("Content-Type", content_type)];
        request(self.http(), "POST", &format!("/api/v0002{path}"), &headers, body)
    }

    pub fn mqtt_client(&self, client_id: &str, user: &str, password: &str) -> Client {
        let mut client = Client::open(self.mqtt(), ProtocolVersion::V3_1_1);
        let mut connect = connect_packet(ProtocolVersion::V3_1_1, client_id, true, 60);
        connect.username = Some(ByteStr::from(user));
        connect.password = Some(bytes::Bytes::copy_from_slice(password.as_bytes()));
        let ack = client.connect(&connect);
        assert_eq!(ack.reason_code, ReasonCode::SUCCESS, "{client_id}: {ack:?}");
        client
    }

    /// An application client of za6xa7 with the admin key.
    pub fn app(&self, app_id: &str) -> Client {
        let decoded = String::from_utf8(STANDARD.decode(&self.admin[6..]).unwrap()).unwrap();
        let (key, token) = decoded.split_once(':').unwrap();
        self.mqtt_client(&format!("a:za6xa7:{app_id}"), key, token)
    }

    pub fn device(&self) -> Client {
        self.mqtt_client("d:za6xa7:test:4321", "use-token-auth", &self.device_token)
    }

    pub fn device_auth(&self) -> String {
        basic("use-token-auth", &self.device_token)
    }
}

/// Polls `probe` until it gives something, for at most `within`.
pub fn within<T>(within: Duration, what: &str, mut probe: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + within;
    loop {
        if let Some(found) = probe() {
            return found;
        }
        assert!(Instant::now() < deadline, "not within {within:?}: {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The events the cache has for za6xa7's test/4321, by event id.
pub fn cached(p: &Platform) -> Vec<Value> {
    p.call(&p.reader, "GET", "/device/types/test/devices/4321/events", None)
        .ok(200)
        .as_array()
        .unwrap()
        .clone()
}
