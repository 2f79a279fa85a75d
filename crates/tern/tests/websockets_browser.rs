//! The real browser client: MQTT.js (npm package `mqtt`) in headless Chromium, driven
//! through ChromeDriver's WebDriver API, talks to Tern over ws and wss under MQTT 3.1.1
//! and 5.0. The page is served from 127.0.0.1 by the test, so the browser sends a real
//! Origin, which a listener's `websockets_origins` admits or refuses.
#![allow(clippy::unwrap_used)]
mod common;
use common::pki::Ca;
use common::*;
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tern_proto::QoS;

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

fn mqtt_js() -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/browser/node_modules/mqtt/dist/mqtt.min.js"
    ))
}

/// Serves the test page and MQTT.js on 127.0.0.1 until the test ends.
fn serve_page() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let script = std::fs::read(mqtt_js()).unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut request = Vec::new();
            let mut buf = [0u8; 1024];
            while !request.ends_with(b"\r\n\r\n") {
                match stream.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => request.extend_from_slice(&buf[..n]),
                }
            }
            let (kind, body): (&str, &[u8]) = if request.starts_with(b"GET /mqtt.min.js") {
                ("application/javascript", &script)
            } else {
                (
                    "text/html",
                    b"<!doctype html><title>tern</title><script src=\"/mqtt.min.js\"></script>",
                )
            };
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = stream.write_all(head.as_bytes());
            let _ = stream.write_all(body);
        }
    });
    addr
}

/// ChromeDriver and one headless Chromium session.
struct Browser {
    driver: Child,
    port: u16,
    session: String,
}

impl Browser {
    fn start() -> Browser {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut browser = Browser {
            driver,
            port,
            session: String::new(),
        };
        let deadline = Instant::now() + PATIENCE;
        while browser.call("GET", "/status", None).is_none() {
            assert!(Instant::now() < deadline, "chromedriver did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        let profile = tempfile::tempdir().unwrap().keep();
        let args = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--ignore-certificate-errors",
            &format!("--user-data-dir={}", profile.display()),
        ];
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "goog:chromeOptions": {"binary": CHROMIUM, "args": args}
        }}});
        let created = browser.call("POST", "/session", Some(capabilities)).expect("a session");
        browser.session = created["value"]["sessionId"]
            .as_str()
            .expect("a session id")
            .to_string();
        let timeouts = json!({"script": 60_000});
        browser.session_call("timeouts", timeouts);
        browser
    }

    /// One WebDriver request; the answer's JSON, or `None` if the driver is not there.
    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Option<Value> {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        stream.write_all(request.as_bytes()).ok()?;
        // ChromeDriver keeps the connection open: read the head, then Content-Length bytes.
        let mut answer = Vec::new();
        let mut byte = [0u8; 1];
        while !answer.ends_with(b"\r\n\r\n") {
            if stream.read(&mut byte).ok()? == 0 {
                return None;
            }
            answer.push(byte[0]);
        }
        let head = String::from_utf8_lossy(&answer).to_ascii_lowercase();
        let length = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|n| n.trim().parse::<usize>().ok())?;
        let mut body = vec![0u8; length];
        stream.read_exact(&mut body).ok()?;
        serde_json::from_slice(&body).ok()
    }

    fn session_call(&self, command: &str, body: Value) -> Value {
        let path = format!("/session/{}/{command}", self.session);
        self.call("POST", &path, Some(body)).expect("chromedriver answers")
    }

    /// Runs `script` in the page; it ends by calling its last argument with a result.
    fn run(&self, script: &str, args: Value) -> Value {
        let answer = self.session_call("execute/async", json!({"script": script, "args": args}));
        answer["value"].clone()
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let path = format!("/session/{}", self.session);
        let _ = self.call("DELETE", &path, None);
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// In the page: connects to `url` with MQTT.js at `version` (4: 3.1.1, 5), subscribes to
/// `in`, waits for the retained message there, answers it on `out` at QoS 1 and returns
/// what it received (or the error).
const EXCHANGE: &str = r#"
const [url, version, inTopic, outTopic, done] = arguments;
const client = mqtt.connect(url, {protocolVersion: version, clientId: 'chromium-' + version + '-' + outTopic.length + '-' + Math.random().toString(16).slice(2), reconnectPeriod: 0, connectTimeout: 15000});
const finish = (result) => { client.end(true); done(result); };
const timer = setTimeout(() => finish({error: 'timeout'}), 30000);
client.on('error', (e) => { clearTimeout(timer); finish({error: String(e)}); });
client.on('close', () => { clearTimeout(timer); finish({error: 'closed'}); });
client.on('connect', () => client.subscribe(inTopic, {qos: 1}));
client.on('message', (topic, payload, packet) => {
  client.publish(outTopic, 'answer from chromium', {qos: 1}, (err) => {
    clearTimeout(timer);
    finish(err ? {error: String(err)} : {topic, payload: payload.toString(), retain: packet.retain});
  });
});
"#;

#[test]
fn mqtt_js_in_chromium_talks_over_ws_and_wss_and_origins_are_checked() {
    let present =
        std::path::Path::new(CHROMIUM).exists() && std::path::Path::new(CHROMEDRIVER).exists() && mqtt_js().exists();
    let what = "chromium, chromium-driver (apt) and MQTT.js (npm install --prefix crates/tern/tests/browser)";
    if !peer_available(what, present) {
        return;
    }
    let page = serve_page();
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new(dir.path(), "browser");
    let (cert, key) = ca.server("server");
    let conf = format!(
        "allow_anonymous true\nlistener 0 127.0.0.1\n\
         listener 0 127.0.0.1\nprotocol websockets\nwebsockets_origins http://{page}\n\
         listener 0 127.0.0.1\nprotocol websockets\ncertfile {}\nkeyfile {}\n\
         listener 0 127.0.0.1\nprotocol websockets\nwebsockets_origins https://elsewhere.example\n",
        cert.display(),
        key.display()
    );
    let broker = Broker::with_config("browser.conf", &conf);
    let addrs = broker.listening_addrs();
    let mut watcher = broker.connect(V5, "watcher");
    watcher.subscribe("browser/out/#", QoS::AtLeastOnce);
    let browser = Browser::start();
    browser.session_call("url", json!({"url": format!("http://{page}/")}));
    let urls = [
        ("ws", format!("ws://127.0.0.1:{}/mqtt", addrs[1].port())),
        ("wss", format!("wss://localhost:{}/mqtt", addrs[2].port())),
    ];
    for (scheme, url) in &urls {
        for version in [4, 5] {
            let tag = format!("{scheme}{version}");
            let mut publisher = broker.connect(V311, &format!("to-{tag}"));
            publisher.publish(&format!("browser/in/{tag}"), tag.as_bytes(), QoS::AtLeastOnce, true, 1);
            let args = json!([url, version, format!("browser/in/{tag}"), format!("browser/out/{tag}")]);
            let got = browser.run(EXCHANGE, args);
            assert_eq!(got["payload"], json!(tag), "{url} v{version}: {got}");
            assert_eq!(got["retain"], json!(true), "{got}");
            let answer = watcher.recv_publish();
            assert_eq!(&answer.topic[..], format!("browser/out/{tag}"));
            assert_eq!(&answer.payload[..], b"answer from chromium");
        }
    }
    // The page's origin is not among the fourth listener's: the browser is refused.
    let url = format!("ws://127.0.0.1:{}/mqtt", addrs[3].port());
    let got = browser.run(EXCHANGE, json!([url, 4, "browser/in/x", "browser/out/x"]));
    assert!(got["error"].is_string(), "{got}");
    assert!(broker.log_contains(&format!("origin \"http://{page}\" is not allowed")));
}
