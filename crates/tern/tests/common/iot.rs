//! `tern iot` from the tests: the IoT platform's registry made the way a user makes it.

use super::tern;
use serde_json::Value;
use std::path::Path;

/// `tern iot ARGS --data-dir DIR --json`, which must succeed; its JSON.
pub fn iot(dir: &Path, args: &[&str]) -> Value {
    let mut all = vec!["iot"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--data-dir", dir.to_str().unwrap(), "--json"]);
    let out = tern(&all);
    assert!(
        out.status.success(),
        "tern iot {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The string `field` of `v`, which must be there.
pub fn text(v: &Value, field: &str) -> String {
    v[field]
        .as_str()
        .unwrap_or_else(|| panic!("no {field} in {v}"))
        .to_string()
}
