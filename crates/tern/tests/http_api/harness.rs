//! The HTTP API tests' tools: a small HTTP/1.1 client over std's TcpStream, API keys
//! made with `tern admin key`, a broker with an MQTT and an HTTP listener, and a tmpfs.

use crate::common::*;
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use tern_proto::*;

/// An HTTP answer.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {self:?}"))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Checks a 4xx error body: JSON naming `field`.
    pub fn refused(&self, status: u16, field: &str) {
        assert_eq!(self.status, status, "{self:?}");
        let body = self.json();
        assert!(body["error"].as_str().is_some_and(|e| !e.is_empty()), "{body}");
        // "" stands for no field (a thing that does not exist, say).
        let expected = if field.is_empty() { Value::Null } else { json!(field) };
        assert_eq!(body["field"], expected, "{body}");
    }
}

/// Parses a whole HTTP/1.1 response (the server closes after it: Connection: close).
pub fn parse_answer(raw: &[u8]) -> Answer {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no end of headers in {:?}", String::from_utf8_lossy(raw)));
    let head = String::from_utf8_lossy(&raw[..end]).to_string();
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap().split(' ').nth(1).unwrap().parse().unwrap();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
        .collect();
    let mut body = raw[end + 4..].to_vec();
    let chunked = headers
        .iter()
        .any(|(n, v)| n.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"));
    if chunked {
        body = crate::common::dechunk(&body);
    }
    Answer { status, headers, body }
}

/// Sends one request (with `Connection: close`) and reads the whole answer.
pub fn send(addr: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Answer {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    let mut request = format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n");
    for (n, v) in headers {
        request.push_str(&format!("{n}: {v}\r\n"));
    }
    if !body.is_empty() || method == "POST" {
        request.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).unwrap();
    // The server may answer (413) and close before taking all of a large body.
    let _ = stream.write_all(body);
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw);
    parse_answer(&raw)
}

/// A key made with `tern admin key create --json`.
pub use crate::common::{admin_key as create_key, AdminKey as Key};

pub fn basic(id: &str, secret: &str) -> String {
    use base64::Engine;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{id}:{secret}"))
    )
}

/// A broker with an MQTT listener (anonymous) and an HTTP listener, its data directory
/// holding one API key.
pub struct Api {
    pub broker: Broker,
    pub http: SocketAddr,
    pub key: Key,
    data: PathBuf,
    _data: Option<tempfile::TempDir>,
}

impl Api {
    pub fn start() -> Api {
        Self::with("")
    }

    /// With `extra` appended to the HTTP listener's lines.
    pub fn with(extra: &str) -> Api {
        let dir = tempfile::tempdir().unwrap();
        let mut api = Self::in_dir(dir.path(), extra);
        api._data = Some(dir);
        api
    }

    /// With its data directory (and API key) in `data`.
    pub fn in_dir(data: &Path, extra: &str) -> Api {
        let key = create_key(data);
        let config = format!(
            "listener 0 127.0.0.1\nallow_anonymous true\nlistener 0 127.0.0.1\nprotocol http\n{extra}\npersistence_location {}\n",
            data.display()
        );
        let broker = Broker::with_config("tern.conf", &config);
        let http = broker.listening_addrs()[1];
        Api {
            broker,
            http,
            key,
            data: data.to_path_buf(),
            _data: None,
        }
    }

    pub fn bearer(&self) -> String {
        format!("Bearer {}", self.key.secret)
    }

    pub fn call(&self, method: &str, path: &str, body: Option<Value>) -> Answer {
        let auth = self.bearer();
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        send(self.http, method, path, &[("Authorization", &auth)], body.as_bytes())
    }

    pub fn get(&self, path: &str) -> Value {
        let answer = self.call("GET", path, None);
        assert_eq!(answer.status, 200, "GET {path}: {answer:?}");
        answer.json()
    }

    /// Every item of a paged listing, fetched `limit` at a time.
    pub fn all_pages(&self, path: &str, limit: usize) -> Vec<Value> {
        let sep = if path.contains('?') { '&' } else { '?' };
        let mut items = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut url = format!("{path}{sep}limit={limit}");
            if let Some(c) = &cursor {
                url.push_str(&format!("&cursor={c}"));
            }
            let page = self.get(&url);
            let got = page["items"].as_array().unwrap();
            assert!(got.len() <= limit);
            items.extend(got.iter().cloned());
            match page["next_cursor"].as_str() {
                Some(c) => cursor = Some(c.to_string()),
                None => return items,
            }
        }
    }

    pub fn data_dir(&self) -> PathBuf {
        self.data.clone()
    }
}

pub fn connect_as(broker: &Broker, version: ProtocolVersion, id: &str, setup: impl FnOnce(&mut Connect)) -> Client {
    let mut c = broker.client(version);
    let mut connect = connect_packet(version, id, true, 30);
    setup(&mut connect);
    let ack = c.connect(&connect);
    assert_eq!(ack.reason_code, ReasonCode::SUCCESS, "{id}: {ack:?}");
    c
}

pub fn ids(items: &[Value], key: &str) -> Vec<String> {
    items.iter().map(|i| i[key].as_str().unwrap().to_string()).collect()
}

/// A tmpfs of `size` mounted on a fresh folder, unmounted on drop.
pub struct SmallDisk {
    pub dir: tempfile::TempDir,
}

impl SmallDisk {
    /// `None` when this process may not mount (not root).
    pub fn mount(size: &str) -> Option<SmallDisk> {
        let dir = tempfile::tempdir().unwrap();
        let status = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .status()
            .ok()?;
        status.success().then_some(SmallDisk { dir })
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}
