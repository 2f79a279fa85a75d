//! A headless Chromium session driven through ChromeDriver's WebDriver API (Debian
//! `chromium` and `chromium-driver`), for the tests that need a real browser: MQTT.js
//! over WebSocket and the web console. Requests are plain HTTP/1.1 to ChromeDriver; every
//! wait polls the page with a deadline.

use super::PATIENCE;
use base64::Engine;
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const CHROMIUM: &str = "/usr/bin/chromium";
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// Whether Debian's chromium and chromium-driver are installed.
pub fn chromium_installed() -> bool {
    std::path::Path::new(CHROMIUM).exists() && std::path::Path::new(CHROMEDRIVER).exists()
}
/// The key WebDriver names element references with.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// A WebDriver session in headless Chromium.
pub struct Browser {
    driver: Child,
    port: u16,
    session: String,
    /// Chromium's profile, removed after the session ends.
    profile: tempfile::TempDir,
}

impl Browser {
    /// ChromeDriver and a session of headless Chromium with Chromium's `extra` arguments.
    pub fn start(extra: &[&str]) -> Browser {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let profile = tempfile::tempdir().unwrap();
        let mut browser = Browser {
            driver,
            port,
            session: String::new(),
            profile,
        };
        let deadline = Instant::now() + PATIENCE;
        while browser.request("GET", "/status", None).is_none() {
            assert!(Instant::now() < deadline, "chromedriver did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        let args = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--window-size=1280,900",
            &format!("--user-data-dir={}", browser.profile.path().display()),
        ];
        let args: Vec<&str> = args.iter().copied().chain(extra.iter().copied()).collect();
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "goog:chromeOptions": {"binary": CHROMIUM, "args": args},
            "goog:loggingPrefs": {"browser": "ALL"}
        }}});
        let created = browser
            .request("POST", "/session", Some(capabilities))
            .expect("a session");
        browser.session = created["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {created}"))
            .to_string();
        browser.command("POST", "timeouts", Some(json!({"script": 60_000})));
        browser
    }

    /// One WebDriver request; the answer's JSON, or `None` if the driver is not there.
    pub fn request(&self, method: &str, path: &str, body: Option<Value>) -> Option<Value> {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        stream.set_read_timeout(Some(Duration::from_secs(60))).ok()?;
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        stream.write_all(head.as_bytes()).ok()?;
        stream.write_all(body.as_bytes()).ok()?;
        // ChromeDriver may keep the connection open: read the head, then its body.
        let mut raw = Vec::new();
        let mut chunk = [0u8; 8192];
        let (end, length) = loop {
            let n = stream.read(&mut chunk).ok()?;
            if n == 0 {
                return None;
            }
            raw.extend_from_slice(&chunk[..n]);
            if let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&raw[..end]).to_ascii_lowercase();
                let length = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|n| n.trim().parse::<usize>().ok())?;
                break (end + 4, length);
            }
        };
        while raw.len() < end + length {
            let n = stream.read(&mut chunk).ok()?;
            if n == 0 {
                return None;
            }
            raw.extend_from_slice(&chunk[..n]);
        }
        serde_json::from_slice(&raw[end..end + length]).ok()
    }

    /// A command of this session; fails the test if the driver reports an error.
    pub fn command(&self, method: &str, command: &str, body: Option<Value>) -> Value {
        let path = format!("/session/{}/{command}", self.session);
        let answer = self.request(method, &path, body).expect("chromedriver answers");
        if let Some(error) = answer["value"]["error"].as_str() {
            panic!("WebDriver {command}: {error}: {}", answer["value"]["message"]);
        }
        answer["value"].clone()
    }

    pub fn open(&self, url: &str) {
        self.command("POST", "url", Some(json!({ "url": url })));
    }

    /// Runs `script` (a function body; `arguments` are `args`) and returns what it returns.
    pub fn eval(&self, script: &str, args: Value) -> Value {
        self.command("POST", "execute/sync", Some(json!({"script": script, "args": args})))
    }

    /// Polls `expression` (JavaScript, with `arguments`) until it is truthy; returns it.
    pub fn wait(&self, what: &str, expression: &str, args: Value) -> Value {
        let script = format!("return ({expression});");
        super::page::wait_truthy(
            what,
            || self.eval(&script, args.clone()),
            || {
                let text = self.eval("return document.body.innerText;", json!([]));
                format!("page: {text}; log: {:?}", self.log())
            },
        )
    }

    /// The element `css` selects, waiting for it to appear.
    pub fn find(&self, css: &str) -> String {
        let css_arg = json!([css]);
        self.wait(
            &format!("element {css}"),
            "document.querySelector(arguments[0])",
            css_arg,
        );
        let found = self.command("POST", "element", Some(json!({"using": "css selector", "value": css})));
        found[ELEMENT]
            .as_str()
            .unwrap_or_else(|| panic!("no element {css}: {found}"))
            .to_string()
    }

    pub fn click(&self, css: &str) {
        let id = self.find(css);
        self.command("POST", &format!("element/{id}/click"), Some(json!({})));
    }

    /// Types `text` into the element as keystrokes ("\u{E007}" is Enter).
    pub fn type_into(&self, css: &str, text: &str) {
        let id = self.find(css);
        self.command("POST", &format!("element/{id}/value"), Some(json!({ "text": text })));
    }

    pub fn clear(&self, css: &str) {
        let id = self.find(css);
        self.command("POST", &format!("element/{id}/clear"), Some(json!({})));
    }

    /// The text of the element `css` selects.
    pub fn text(&self, css: &str) -> String {
        self.find(css);
        let value = self.eval("return document.querySelector(arguments[0]).textContent;", json!([css]));
        value.as_str().unwrap_or_default().to_string()
    }

    /// Writes a PNG of the viewport to `dir/NAME.png`.
    pub fn screenshot(&self, dir: &Path, name: &str) {
        let png = self.command("GET", "screenshot", None);
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(png.as_str().unwrap())
            .unwrap();
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join(format!("{name}.png")), bytes).unwrap();
    }

    /// Runs `script` in the page; it ends by calling its last argument with a result,
    /// which is returned as it is (a result may well have an `error` field of its own).
    pub fn execute_async(&self, script: &str, args: Value) -> Value {
        let path = format!("/session/{}/execute/async", self.session);
        let body = json!({"script": script, "args": args});
        let answer = self.request("POST", &path, Some(body)).expect("chromedriver answers");
        answer["value"].clone()
    }

    /// The browser console's messages so far.
    pub fn log(&self) -> Vec<String> {
        let answer = self.command("POST", "se/log", Some(json!({"type": "browser"})));
        let entries = answer.as_array().cloned().unwrap_or_default();
        entries
            .iter()
            .map(|e| format!("{} {}", e["level"], e["message"]))
            .collect()
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let path = format!("/session/{}", self.session);
        let _ = self.request("DELETE", &path, None);
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
