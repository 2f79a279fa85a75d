//! A headless Firefox session driven over Marionette, Firefox's own remote protocol
//! (Debian's `firefox-esr`; Debian ships no geckodriver, so this client speaks to the
//! browser directly). Marionette is one TCP connection carrying `LENGTH:JSON` frames: a
//! command `[0, id, "WebDriver:Name", params]` and its answer `[1, id, error, result]`.
//! The commands are those geckodriver would send, so the API mirrors `browser.rs`; every
//! wait polls the page with a deadline.

use super::PATIENCE;
use base64::Engine;
use serde_json::{json, Value};
use std::cell::RefCell;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const FIREFOX: &str = "/usr/bin/firefox-esr";
/// The key WebDriver names element references with.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";
/// Preferences for a quiet, testable profile: Marionette on a port of its choosing
/// (written to `MarionetteActivePort`), no first-run pages, updates or telemetry.
const PREFS: &str = r#"user_pref("marionette.port", 0);
user_pref("browser.shell.checkDefaultBrowser", false);
user_pref("browser.startup.homepage_override.mstone", "ignore");
user_pref("browser.startup.page", 0);
user_pref("browser.aboutwelcome.enabled", false);
user_pref("datareporting.policy.dataSubmissionEnabled", false);
user_pref("toolkit.telemetry.reportingpolicy.firstRun", false);
user_pref("app.update.disabledForTesting", true);
user_pref("app.normandy.enabled", false);
user_pref("network.captive-portal-service.enabled", false);
user_pref("extensions.autoDisableScopes", 0);
"#;

/// One Marionette connection and its next command id.
struct Wire {
    stream: BufReader<TcpStream>,
    next: u64,
}

impl Wire {
    fn send(&mut self, name: &str, params: Value) -> Result<Value, String> {
        self.next += 1;
        let id = self.next;
        let body = json!([0, id, name, params]).to_string();
        let stream = self.stream.get_mut();
        stream
            .write_all(format!("{}:{body}", body.len()).as_bytes())
            .map_err(|e| format!("{name}: write: {e}"))?;
        loop {
            let answer = self.frame().map_err(|e| format!("{name}: {e}"))?;
            // Answers to an earlier command (one that timed out) are skipped.
            if answer[0] != json!(1) || answer[1] != json!(id) {
                continue;
            }
            if !answer[2].is_null() {
                return Err(format!("{name}: {}: {}", answer[2]["error"], answer[2]["message"]));
            }
            return Ok(answer[3].clone());
        }
    }

    /// One `LENGTH:JSON` frame.
    fn frame(&mut self) -> Result<Value, String> {
        let mut length = Vec::new();
        self.stream
            .read_until(b':', &mut length)
            .map_err(|e| format!("read: {e}"))?;
        let length: usize = std::str::from_utf8(&length)
            .ok()
            .and_then(|l| l.trim_end_matches(':').parse().ok())
            .ok_or_else(|| format!("bad frame length {length:?}"))?;
        let mut body = vec![0u8; length];
        self.stream.read_exact(&mut body).map_err(|e| format!("read: {e}"))?;
        serde_json::from_slice(&body).map_err(|e| format!("bad frame: {e}"))
    }
}

/// A Marionette session in headless Firefox, with a fresh profile; Firefox quits on drop.
pub struct Firefox {
    child: Child,
    wire: RefCell<Wire>,
    _profile: tempfile::TempDir,
}

impl Firefox {
    /// Headless Firefox with a `width` x `height` window, and a session in it.
    pub fn start(width: u32, height: u32) -> Firefox {
        let profile = tempfile::tempdir().unwrap();
        std::fs::write(profile.path().join("user.js"), PREFS).unwrap();
        let mut child = Command::new(FIREFOX)
            .args([
                "--headless",
                "--marionette",
                "--remote-allow-system-access",
                "--no-remote",
                "--new-instance",
                "--profile",
            ])
            .arg(profile.path())
            .arg("about:blank")
            .env("MOZ_HEADLESS", "1")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let port_file = profile.path().join("MarionetteActivePort");
        let deadline = Instant::now() + PATIENCE;
        let stream = loop {
            let port = std::fs::read_to_string(&port_file).ok();
            let port = port.and_then(|p| p.trim().parse::<u16>().ok());
            if let Some(stream) = port.and_then(|p| TcpStream::connect(("127.0.0.1", p)).ok()) {
                break stream;
            }
            if Instant::now() >= deadline || child.try_wait().unwrap().is_some() {
                let _ = child.kill();
                panic!("Firefox's Marionette did not start");
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        stream.set_read_timeout(Some(Duration::from_secs(90))).unwrap();
        let mut wire = Wire {
            stream: BufReader::new(stream),
            next: 0,
        };
        // The server speaks first: {"applicationType": "gecko", "marionetteProtocol": 3}.
        let hello = wire.frame().unwrap();
        assert_eq!(hello["applicationType"], "gecko", "{hello}");
        let firefox = Firefox {
            child,
            wire: RefCell::new(wire),
            _profile: profile,
        };
        firefox.command("WebDriver:NewSession", json!({"strictFileInteractability": true}));
        firefox.command("WebDriver:SetTimeouts", json!({"script": 60_000, "pageLoad": 30_000}));
        firefox.command("WebDriver:SetWindowRect", json!({"width": width, "height": height}));
        firefox
    }

    /// A Marionette command; fails the test if Firefox reports an error.
    pub fn command(&self, name: &str, params: Value) -> Value {
        self.wire
            .borrow_mut()
            .send(name, params)
            .unwrap_or_else(|e| panic!("Marionette {e}"))
    }

    pub fn open(&self, url: &str) {
        self.command("WebDriver:Navigate", json!({ "url": url }));
    }

    /// Runs `script` (a function body; `arguments` are `args`) and returns what it returns.
    pub fn eval(&self, script: &str, args: Value) -> Value {
        let answer = self.command("WebDriver:ExecuteScript", json!({"script": script, "args": args}));
        answer["value"].clone()
    }

    /// Polls `expression` (JavaScript, with `arguments`) until it is truthy; returns it.
    pub fn wait(&self, what: &str, expression: &str, args: Value) -> Value {
        let script = format!("return ({expression});");
        super::page::wait_truthy(
            what,
            || self.eval(&script, args.clone()),
            || {
                let text = self.eval("return document.body.innerText;", json!([]));
                format!("page: {text}; errors: {:?}", self.errors())
            },
        )
    }

    /// The element `css` selects, waiting for it to appear.
    pub fn find(&self, css: &str) -> String {
        self.wait(
            &format!("element {css}"),
            "document.querySelector(arguments[0])",
            json!([css]),
        );
        let found = self.command("WebDriver:FindElement", json!({"using": "css selector", "value": css}));
        found["value"][ELEMENT]
            .as_str()
            .unwrap_or_else(|| panic!("no element {css}: {found}"))
            .to_string()
    }

    pub fn click(&self, css: &str) {
        let id = self.find(css);
        self.command("WebDriver:ElementClick", json!({ "id": id }));
    }

    /// Types `text` into the element as keystrokes ("\u{E007}" is Enter).
    pub fn type_into(&self, css: &str, text: &str) {
        let id = self.find(css);
        self.command("WebDriver:ElementSendKeys", json!({ "id": id, "text": text }));
    }

    pub fn clear(&self, css: &str) {
        let id = self.find(css);
        self.command("WebDriver:ElementClear", json!({ "id": id }));
    }

    /// Presses `key` (a WebDriver key code, "\u{E004}" is Tab) on whatever has the focus.
    pub fn press(&self, key: &str) {
        let keys = json!([{"type": "keyDown", "value": key}, {"type": "keyUp", "value": key}]);
        let actions = json!({"actions": [{"type": "key", "id": "keyboard", "actions": keys}]});
        self.command("WebDriver:PerformActions", actions);
        self.command("WebDriver:ReleaseActions", json!({}));
    }

    /// The text of the element `css` selects.
    pub fn text(&self, css: &str) -> String {
        self.find(css);
        let value = self.eval("return document.querySelector(arguments[0]).textContent;", json!([css]));
        value.as_str().unwrap_or_default().to_string()
    }

    /// Writes a PNG of the viewport to `dir/NAME.png`.
    pub fn screenshot(&self, dir: &Path, name: &str) {
        let png = self.command("WebDriver:TakeScreenshot", json!({"full": false, "hash": false}));
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(png["value"].as_str().unwrap())
            .unwrap();
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join(format!("{name}.png")), bytes).unwrap();
    }

    /// Zooms the page as a user would (Ctrl +): the page's CSS width is the window's
    /// divided by `factor` (rounded to Firefox's units: 500 px at 500/390 is 392 px).
    /// Firefox keeps its windows at least 500 px wide; a zoom gives a narrower page, with
    /// the media queries that go with it.
    pub fn zoom(&self, factor: f64) {
        self.command("Marionette:SetContext", json!({"value": "chrome"}));
        let done = self.wire.borrow_mut().send(
            "WebDriver:ExecuteScript",
            json!({"script": "window.FullZoom.setZoom(arguments[0]);", "args": [factor]}),
        );
        self.command("Marionette:SetContext", json!({"value": "content"}));
        done.unwrap_or_else(|e| panic!("Marionette {e}"));
    }

    /// The errors and warnings the pages reported to Firefox's console so far (uncaught
    /// exceptions, unhandled rejections, Content-Security-Policy violations, failed module
    /// loads), read from the browser's console service in Marionette's chrome context.
    pub fn errors(&self) -> Vec<String> {
        self.command("Marionette:SetContext", json!({"value": "chrome"}));
        let read = self
            .wire
            .borrow_mut()
            .send("WebDriver:ExecuteScript", json!({"script": ERRORS, "args": []}));
        self.command("Marionette:SetContext", json!({"value": "content"}));
        let listed = read.unwrap_or_else(|e| panic!("Marionette {e}"));
        let entries = listed["value"].as_array().cloned().unwrap_or_default();
        entries
            .iter()
            .map(|e| e.as_str().unwrap_or_default().to_string())
            .collect()
    }
}

/// Chrome-context script: the console service's script errors from web pages, each as
/// "category: message (source:line)". Warnings are left out except CSP's.
const ERRORS: &str = r#"
  const out = [];
  for (const m of Services.console.getMessageArray() || []) {
    if (!(m instanceof Ci.nsIScriptError)) continue;
    const page = m.sourceName.startsWith('http') || m.category === 'CSP';
    const error = !(m.flags & Ci.nsIScriptError.warningFlag) && !(m.flags & Ci.nsIScriptError.infoFlag);
    if (page && !m.isFromChromeContext && (error || m.category === 'CSP')) {
      out.push(`${m.category}: ${m.errorMessage} (${m.sourceName}:${m.lineNumber})`);
    }
  }
  return out;
"#;

impl Drop for Firefox {
    fn drop(&mut self) {
        // Quit cleanly (Firefox's content processes go with it); kill if that fails.
        let quit = self
            .wire
            .borrow_mut()
            .send("Marionette:Quit", json!({"flags": ["eForceQuit"]}));
        let deadline = Instant::now() + Duration::from_secs(10);
        while quit.is_ok() && Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
