//! The real browser client: MQTT.js (npm package `mqtt`) in headless Chromium, driven
//! through ChromeDriver's WebDriver API, talks to Tern over ws and wss under MQTT 3.1.1
//! and 5.0. The page is served from 127.0.0.1 by the test, so the browser sends a real
//! Origin, which a listener's `websockets_origins` admits or refuses.
#![allow(clippy::unwrap_used)]
mod common;
use common::browser::{chromium_installed, Browser};
use common::pki::Ca;
use common::*;
use serde_json::json;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use tern_proto::QoS;

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
    let present = chromium_installed() && mqtt_js().exists();
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
    let browser = Browser::start(&["--disable-quic", "--ignore-certificate-errors"]);
    browser.open(&format!("http://{page}/"));
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
            let got = browser.execute_async(EXCHANGE, args);
            assert_eq!(got["payload"], json!(tag), "{url} v{version}: {got}");
            assert_eq!(got["retain"], json!(true), "{got}");
            let answer = watcher.recv_publish();
            assert_eq!(&answer.topic[..], format!("browser/out/{tag}"));
            assert_eq!(&answer.payload[..], b"answer from chromium");
        }
    }
    // The page's origin is not among the fourth listener's: the browser is refused.
    let url = format!("ws://127.0.0.1:{}/mqtt", addrs[3].port());
    let got = browser.execute_async(EXCHANGE, json!([url, 4, "browser/in/x", "browser/out/x"]));
    assert!(got["error"].is_string(), "{got}");
    assert!(broker.log_contains(&format!("origin \"http://{page}\" is not allowed")));
}
