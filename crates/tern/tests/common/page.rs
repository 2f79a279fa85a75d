//! What the console's browser tests share whichever browser drives the page (Chromium
//! through `browser.rs`, Firefox through `firefox.rs`): where screenshots go, the checks
//! they make of a page, and the subscribe panel's round trip.

use super::Client;
use serde_json::Value;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use tern_proto::QoS;

/// The visible form controls and buttons without a label (by `<label>`, `aria-label` or
/// their text), as HTML snippets.
pub const UNLABELLED: &str = "return [...document.querySelectorAll('input, select, textarea, button')] \
    .filter((e) => e.offsetParent !== null) \
    .filter((e) => e.tagName === 'BUTTON' ? !e.textContent.trim() && !e.getAttribute('aria-label') \
                                          : !(e.labels && e.labels.length) && !e.getAttribute('aria-label')) \
    .map((e) => e.outerHTML.slice(0, 100));";

/// target/console-screenshots, found from the test's executable (target/debug/deps/...).
pub fn screenshots() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.ancestors().nth(3).unwrap().join("console-screenshots")
}

/// Whether a script's answer counts as true (as JavaScript would take it).
pub fn truthy(value: &Value) -> bool {
    match value {
        Value::Null | Value::Bool(false) => false,
        Value::String(s) => !s.is_empty(),
        Value::Number(n) => n.as_f64() != Some(0.0),
        _ => true,
    }
}

/// With the subscribe panel on `<prefix>/panel/+`: publishes to a topic it matches and
/// one it does not until the panel (its text from `shown`) has the first, and checks it
/// never has the second.
pub fn panel_shows_only_its_filter(publisher: &mut Client, prefix: &str, shown: impl Fn() -> String) {
    let deadline = Instant::now() + super::PATIENCE;
    loop {
        publisher.publish(&format!("{prefix}/panel/1"), b"to the panel", QoS::AtMostOnce, false, 0);
        publisher.publish(
            &format!("{prefix}/other"),
            b"not for the panel",
            QoS::AtMostOnce,
            false,
            0,
        );
        let text = shown();
        if text.contains("to the panel") {
            assert!(!text.contains("not for the panel"), "{text}");
            return;
        }
        assert!(Instant::now() < deadline, "the panel showed nothing: {text}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Polls `eval` (a script's answer) until it is truthy, every 50 ms; returns it, or
/// panics after `PATIENCE` with what `describe` says of the page.
pub fn wait_truthy(what: &str, eval: impl Fn() -> Value, describe: impl Fn() -> String) -> Value {
    let deadline = Instant::now() + super::PATIENCE;
    loop {
        let value = eval();
        if truthy(&value) {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "waited {:?} for {what}; {}",
            super::PATIENCE,
            describe()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
