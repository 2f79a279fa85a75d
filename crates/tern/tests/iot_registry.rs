//! The IoT platform's registry from the command line (issue 15): `tern iot org|type|device|key`
//! run as the real binary against a data directory, its JSON, tokens shown once and
//! checked through the library's `Registry` as a broker checks them, regenerated tokens
//! locking the old ones out, concurrent commands all kept, commands killed with SIGKILL
//! leaving a readable registry, and damaged files named in the error.
#![allow(clippy::unwrap_used, clippy::expect_used)]
mod common;
use common::*;
use serde_json::Value;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use tern_platform::registry::{AuthRefusal, Registry};

/// `tern iot ARGS --data-dir DIR --json`.
fn iot(dir: &Path, args: &[&str]) -> Output {
    let mut all = vec!["iot"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--data-dir", dir.to_str().unwrap(), "--json"]);
    tern(&all)
}

/// Runs `tern iot ARGS` expecting success; returns its JSON.
fn ok(dir: &Path, args: &[&str]) -> Value {
    let out = iot(dir, args);
    assert!(
        out.status.success(),
        "tern iot {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "tern iot {args:?}: not JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// Runs `tern iot ARGS` expecting exit status 1; returns its standard error.
fn fails(dir: &Path, args: &[&str]) -> String {
    let out = iot(dir, args);
    assert_eq!(out.status.code(), Some(1), "tern iot {args:?}: {out:?}");
    assert!(out.stdout.is_empty(), "nothing on standard output: {out:?}");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn s<'a>(v: &'a Value, field: &str) -> &'a str {
    v[field].as_str().unwrap_or_else(|| panic!("no string {field} in {v}"))
}

fn org_file(dir: &Path, org: &str) -> std::path::PathBuf {
    dir.join("platform").join("orgs").join(format!("{org}.json"))
}

#[test]
fn org_create_prints_its_first_admin_key_once_and_the_token_is_stored_only_hashed() {
    let dir = tempfile::tempdir().unwrap();
    let created = ok(dir.path(), &["org", "create", "za6xa7"]);
    assert_eq!(created.as_object().map(|o| o.len()), Some(3), "{created}");
    assert_eq!(s(&created, "org"), "za6xa7");
    let key = s(&created, "apiKey");
    let token = s(&created, "apiToken");
    assert!(
        key.starts_with("a-za6xa7-") && key.len() == "a-za6xa7-".len() + 10,
        "{key}"
    );
    assert!(token.len() >= 18, "{token}");
    let stored = std::fs::read_to_string(org_file(dir.path(), "za6xa7")).unwrap();
    assert!(!stored.contains(token), "the token is kept hashed only");

    let registry = Registry::open(dir.path()).unwrap();
    let verified = registry.verify_key_token(key, token.as_bytes()).unwrap();
    assert_eq!(serde_json::to_value(verified.role).unwrap(), "admin");
    assert_eq!(
        registry.verify_key_token(key, b"not-the-token").err(),
        Some(AuthRefusal::WrongToken)
    );

    let listed = ok(dir.path(), &["org", "list"]);
    assert_eq!(listed.as_array().map(Vec::len), Some(1), "{listed}");
    assert_eq!(s(&listed[0], "org"), "za6xa7");
    assert_eq!(listed[0]["settings"]["maxPayload"], 131_072);
    assert_eq!(listed[0]["settings"]["allowPlain"], false);
    let keys = ok(dir.path(), &["key", "list", "za6xa7"]);
    assert!(!keys.to_string().contains(token), "a token is never listed: {keys}");
    assert_eq!(s(&keys[0], "role"), "admin");

    let set = ok(
        dir.path(),
        &["org", "set", "za6xa7", "--allow-plain", "true", "--max-payload", "1000"],
    );
    assert_eq!(set["settings"]["allowPlain"], true);
    assert_eq!(set["settings"]["maxPayload"], 1000);

    let deleted = ok(dir.path(), &["org", "delete", "za6xa7"]);
    assert_eq!(deleted["deleted"], true);
    assert_eq!(ok(dir.path(), &["org", "list"]), serde_json::json!([]));
    assert!(!org_file(dir.path(), "za6xa7").exists());
}

#[test]
fn types_devices_and_gateways_are_created_listed_shown_and_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    ok(d, &["org", "create", "acme"]);
    let t = ok(
        d,
        &[
            "type",
            "create",
            "acme",
            "sensor",
            "--description",
            "Temperature",
            "--device-info",
            r#"{"manufacturer":"Acme"}"#,
        ],
    );
    assert_eq!(s(&t, "id"), "sensor");
    assert_eq!(s(&t, "classId"), "Device");
    assert_eq!(s(&t, "description"), "Temperature");
    let g = ok(d, &["type", "create", "acme", "edge", "--class", "gateway"]);
    assert_eq!(s(&g, "classId"), "Gateway");
    assert_eq!(ok(d, &["type", "list", "acme"]).as_array().map(Vec::len), Some(2));
    assert_eq!(s(&ok(d, &["type", "get", "acme", "edge"]), "classId"), "Gateway");

    let gw = ok(d, &["device", "create", "acme", "edge", "gw1"]);
    assert_eq!(s(&gw, "clientId"), "g:acme:edge:gw1");
    let dev = ok(
        d,
        &[
            "device",
            "create",
            "acme",
            "sensor",
            "s1",
            "--gateway",
            "edge:gw1",
            "--location",
            r#"{"latitude":52.1}"#,
            "--metadata",
            r#"{"room":"7"}"#,
            "--device-info",
            r#"{"model":"T1"}"#,
        ],
    );
    assert_eq!(s(&dev, "clientId"), "d:acme:sensor:s1");
    assert_eq!(s(&dev, "typeId"), "sensor");
    assert_eq!(s(&dev, "deviceId"), "s1");
    assert_eq!(
        dev["deviceInfo"],
        serde_json::json!({"manufacturer": "Acme", "model": "T1"})
    );
    assert_eq!(dev["gateway"], serde_json::json!({"typeId": "edge", "deviceId": "gw1"}));
    assert_eq!(dev["location"]["latitude"], 52.1);
    assert_eq!(dev["metadata"]["room"], "7");
    assert!(dev["authToken"].as_str().is_some_and(|t| t.len() >= 18));

    let got = ok(d, &["device", "get", "acme", "sensor", "s1"]);
    assert!(got.get("authToken").is_none(), "the token is shown only once: {got}");
    assert_eq!(got["gateway"], dev["gateway"]);
    let all = ok(d, &["device", "list", "acme"]);
    let ids: Vec<&str> = all.as_array().unwrap().iter().map(|d| s(d, "clientId")).collect();
    assert_eq!(ids, ["g:acme:edge:gw1", "d:acme:sensor:s1"]);
    assert_eq!(
        ok(d, &["device", "list", "acme", "sensor"]).as_array().map(Vec::len),
        Some(1)
    );
    assert!(!all.to_string().contains("authToken") && !all.to_string().contains("tokenHash"));

    // What something still refers to stays.
    let e = fails(d, &["device", "delete", "acme", "edge", "gw1"]);
    assert!(e.contains("gateway edge/gw1 has 1 device(s) behind it"), "{e}");
    let e = fails(d, &["type", "delete", "acme", "sensor"]);
    assert!(e.contains("device type sensor still has 1 device(s)"), "{e}");

    assert_eq!(ok(d, &["device", "delete", "acme", "sensor", "s1"])["deleted"], true);
    ok(d, &["device", "delete", "acme", "edge", "gw1"]);
    ok(d, &["type", "delete", "acme", "sensor"]);
    assert_eq!(ok(d, &["device", "list", "acme"]), serde_json::json!([]));
    assert_eq!(ok(d, &["type", "list", "acme"]).as_array().map(Vec::len), Some(1));
}

#[test]
fn device_tokens_verify_and_a_regenerated_token_locks_the_old_one_out() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    ok(d, &["org", "create", "acme"]);
    ok(d, &["type", "create", "acme", "sensor"]);
    let chosen = ok(
        d,
        &["device", "create", "acme", "sensor", "s1", "--token", "my-own-token-1"],
    );
    assert_eq!(s(&chosen, "authToken"), "my-own-token-1");
    let generated = ok(d, &["device", "create", "acme", "sensor", "s2"]);
    let s2_token = s(&generated, "authToken").to_string();

    let registry = Registry::open(d).unwrap();
    assert!(registry
        .verify_device_token("acme", "sensor", "s1", b"my-own-token-1")
        .is_ok());
    assert!(registry
        .verify_device_token("acme", "sensor", "s2", s2_token.as_bytes())
        .is_ok());
    assert_eq!(
        registry
            .verify_device_token("acme", "sensor", "s2", b"my-own-token-1")
            .err(),
        Some(AuthRefusal::WrongToken)
    );

    let renewed = ok(d, &["device", "regenerate-token", "acme", "sensor", "s2"]);
    let new_token = s(&renewed, "authToken");
    assert_ne!(new_token, s2_token);
    registry.reload_if_changed();
    assert_eq!(
        registry
            .verify_device_token("acme", "sensor", "s2", s2_token.as_bytes())
            .err(),
        Some(AuthRefusal::WrongToken),
        "the old token, accepted before, no longer works"
    );
    assert!(registry
        .verify_device_token("acme", "sensor", "s2", new_token.as_bytes())
        .is_ok());
    // The other device was not touched and still works.
    assert!(registry
        .verify_device_token("acme", "sensor", "s1", b"my-own-token-1")
        .is_ok());
}

#[test]
fn keys_are_created_with_roles_listed_regenerated_and_revoked() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    ok(d, &["org", "create", "acme"]);
    let mut made = Vec::new();
    for role in ["standard-app", "read-only", "device-operator", "admin"] {
        let k = ok(
            d,
            &["key", "create", "acme", "--role", role, "--description", "for tests"],
        );
        assert_eq!(s(&k, "org"), "acme");
        assert_eq!(s(&k, "role"), role);
        assert!(s(&k, "apiKey").starts_with("a-acme-"));
        made.push((s(&k, "apiKey").to_string(), s(&k, "apiToken").to_string()));
    }
    let listed = ok(d, &["key", "list", "acme"]);
    assert_eq!(listed.as_array().map(Vec::len), Some(5));
    let registry = Registry::open(d).unwrap();
    for (key, token) in &made {
        assert!(registry.verify_key_token(key, token.as_bytes()).is_ok(), "{key}");
    }
    let (key, old) = &made[0];
    let renewed = ok(d, &["key", "regenerate", "acme", key]);
    assert_eq!(s(&renewed, "apiKey"), key);
    let new = s(&renewed, "apiToken");
    registry.reload_if_changed();
    assert_eq!(
        registry.verify_key_token(key, old.as_bytes()).err(),
        Some(AuthRefusal::WrongToken)
    );
    assert!(registry.verify_key_token(key, new.as_bytes()).is_ok());

    assert_eq!(ok(d, &["key", "revoke", "acme", key])["revoked"], true);
    registry.reload_if_changed();
    assert_eq!(
        registry.verify_key_token(key, new.as_bytes()).err(),
        Some(AuthRefusal::UnknownIdentity)
    );
    let e = fails(d, &["key", "revoke", "acme", key]);
    assert!(e.contains(&format!("no API key {key}")), "{e}");
}

#[test]
fn bad_input_is_refused_with_a_clear_error_and_exit_status_1() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let e = fails(d, &["device", "create", "nope", "sensor", "s1"]);
    assert!(e.contains("no organization nope"), "{e}");
    let e = fails(d, &["org", "create", "Acme"]);
    assert!(
        e.contains("bad organization id \"Acme\"") && e.contains("a-z and 0-9"),
        "{e}"
    );
    let e = fails(d, &["org", "create", "quickstart"]);
    assert!(e.contains("reserved"), "{e}");
    ok(d, &["org", "create", "acme"]);
    let e = fails(d, &["org", "create", "acme"]);
    assert!(e.contains("organization acme already exists"), "{e}");
    let e = fails(d, &["type", "create", "acme", "no/slash"]);
    assert!(
        e.contains("bad device type id \"no/slash\"") && e.contains("1 to 36 characters"),
        "{e}"
    );
    ok(d, &["type", "create", "acme", "sensor"]);
    let e = fails(d, &["device", "create", "acme", "missing", "s1"]);
    assert!(e.contains("no device type missing in organization acme"), "{e}");
    let e = fails(d, &["device", "create", "acme", "sensor", &"x".repeat(37)]);
    assert!(e.contains("bad device id"), "{e}");
    ok(d, &["device", "create", "acme", "sensor", "s1"]);
    let e = fails(d, &["device", "create", "acme", "sensor", "s1"]);
    assert!(
        e.contains("device sensor/s1 already exists in organization acme"),
        "{e}"
    );
    let e = fails(d, &["device", "create", "acme", "sensor", "s2", "--token", "short"]);
    assert!(e.contains("8 to 36 characters"), "{e}");
    let e = fails(
        d,
        &["device", "create", "acme", "sensor", "s2", "--metadata", "{not json"],
    );
    assert!(e.contains("--metadata is not valid JSON"), "{e}");
    let e = fails(d, &["device", "create", "acme", "sensor", "s2", "--location", "[1,2]"]);
    assert!(e.contains("--location must be a JSON object"), "{e}");
    let e = fails(
        d,
        &["device", "create", "acme", "sensor", "s2", "--gateway", "sensor:s1"],
    );
    assert!(e.contains("sensor/s1 is not a gateway"), "{e}");
    let e = fails(d, &["key", "create", "acme", "--role", "boss"]);
    assert!(e.contains("unknown role \"boss\""), "{e}");
    let e = fails(d, &["device", "get", "acme", "sensor", "s9"]);
    assert!(e.contains("no device sensor/s9"), "{e}");
    let e = fails(d, &["org", "set", "acme", "--lec-ttl-days", "46"]);
    assert!(e.contains("1 to 45"), "{e}");
    // Nothing that failed was written.
    assert_eq!(ok(d, &["device", "list", "acme"]).as_array().map(Vec::len), Some(1));
}

#[test]
fn devices_created_by_concurrent_commands_are_all_kept() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    ok(d, &["org", "create", "acme"]);
    ok(d, &["type", "create", "acme", "sensor"]);
    let children: Vec<_> = (0..16)
        .map(|i| {
            Command::new(env!("CARGO_BIN_EXE_tern"))
                .args([
                    "iot",
                    "device",
                    "create",
                    "acme",
                    "sensor",
                    &format!("d{i}"),
                    "--json",
                    "--data-dir",
                ])
                .arg(d)
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut tokens = Vec::new();
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        tokens.push((s(&v, "deviceId").to_string(), s(&v, "authToken").to_string()));
    }
    assert_eq!(ok(d, &["device", "list", "acme"]).as_array().map(Vec::len), Some(16));
    let registry = Registry::open(d).unwrap();
    for (id, token) in &tokens {
        assert!(
            registry
                .verify_device_token("acme", "sensor", id, token.as_bytes())
                .is_ok(),
            "{id}"
        );
    }
}

#[test]
fn commands_killed_with_sigkill_leave_a_readable_registry_holding_every_reported_device() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    ok(d, &["org", "create", "acme"]);
    ok(d, &["type", "create", "acme", "sensor"]);
    let mut children: Vec<_> = (0..24)
        .map(|i| {
            Command::new(env!("CARGO_BIN_EXE_tern"))
                .args([
                    "iot",
                    "device",
                    "create",
                    "acme",
                    "sensor",
                    &format!("k{i}"),
                    "--json",
                    "--data-dir",
                ])
                .arg(d)
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    // Kill every other one at whatever point it has reached: before, while or after it
    // writes.
    for child in children.iter_mut().skip(1).step_by(2) {
        let _ = child.kill();
    }
    let mut reported = Vec::new();
    for child in children {
        let out = child.wait_with_output().unwrap();
        if out.status.success() {
            let v: Value = serde_json::from_slice(&out.stdout).unwrap();
            reported.push(s(&v, "deviceId").to_string());
        }
    }
    assert!(
        reported.len() >= 12,
        "the commands not killed all succeeded: {reported:?}"
    );
    let registry = Registry::open(d).expect("the registry reads cleanly after the kills");
    for id in &reported {
        assert!(
            registry.device("acme", "sensor", id).is_some(),
            "{id} was reported created"
        );
    }
    // A command that runs after them works and leaves no temporary file behind.
    ok(d, &["device", "create", "acme", "sensor", "after"]);
    let names: Vec<String> = std::fs::read_dir(d.join("platform").join("orgs"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(!names.iter().any(|n| n.ends_with(".tmp")), "{names:?}");
}

#[test]
fn a_leftover_temporary_file_is_ignored_and_a_damaged_org_file_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    ok(d, &["org", "create", "acme"]);
    ok(d, &["org", "create", "beta"]);
    // What a writer killed between writing and renaming leaves: half a file.
    let orgs = d.join("platform").join("orgs");
    let leftover = orgs.join(".acme.json.4242.tmp");
    std::fs::write(&leftover, b"{\"version\": 1, \"org\": {").unwrap();
    assert_eq!(ok(d, &["org", "list"]).as_array().map(Vec::len), Some(2));
    assert!(Registry::open(d).is_ok());
    ok(d, &["type", "create", "acme", "sensor"]);
    assert!(!leftover.exists(), "the next writer removed it");

    let path = org_file(d, "acme");
    std::fs::write(
        &path,
        b"{\"version\": 1, \"org\": {\"id\": \"acme\", \"createdUnix\": 0}, \"types\": [1]}",
    )
    .unwrap();
    let e = fails(d, &["device", "list", "acme"]);
    assert!(e.contains(&path.display().to_string()) && e.contains("damaged"), "{e}");
    let e = fails(d, &["device", "create", "acme", "sensor", "s1"]);
    assert!(e.contains(&path.display().to_string()), "{e}");
    let e = fails(d, &["org", "list"]);
    assert!(e.contains(&path.display().to_string()), "{e}");
    // The other organization is untouched.
    ok(d, &["type", "create", "beta", "sensor"]);
    let e = Registry::open(d).err().map(|e| e.to_string()).unwrap_or_default();
    assert!(e.contains(&path.display().to_string()), "{e}");
    std::fs::write(&path, b"\xff\xfe not text").unwrap();
    let e = fails(d, &["org", "get", "acme"]);
    assert!(e.contains(&path.display().to_string()), "{e}");
}

#[test]
fn a_running_registry_sees_what_commands_change() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let registry = Registry::open(d).unwrap();
    let created = ok(d, &["org", "create", "acme"]);
    ok(d, &["type", "create", "acme", "sensor"]);
    let dev = ok(d, &["device", "create", "acme", "sensor", "s1"]);
    wait_until("the registry to see device s1", || {
        registry.reload_if_changed();
        registry.device("acme", "sensor", "s1").is_some()
    });
    assert!(registry
        .verify_device_token("acme", "sensor", "s1", s(&dev, "authToken").as_bytes())
        .is_ok());
    assert!(registry.app_key(s(&created, "apiKey")).is_some());
    ok(d, &["org", "delete", "acme"]);
    wait_until("the registry to drop organization acme", || {
        registry.reload_if_changed();
        registry.org("acme").is_none()
    });
    assert!(registry.device("acme", "sensor", "s1").is_none());
}

#[test]
fn text_output_shows_tokens_once_with_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let out = tern(&[
        "iot",
        "org",
        "create",
        "acme",
        "--data-dir",
        dir.path().to_str().unwrap(),
    ]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("apiKey:   a-acme-") && text.contains("shown only now"),
        "{text}"
    );
    // The text listing of keys says what the JSON one does, without the token.
    let list = tern(&["iot", "key", "list", "acme", "--data-dir", dir.path().to_str().unwrap()]);
    let listed = String::from_utf8_lossy(&list.stdout);
    assert!(
        listed.contains("a-acme-") && listed.contains("admin") && listed.contains("first admin key"),
        "{listed}"
    );
    // Creation times as the platform writes them: 2026-11-30T00:16:40.000+0000.
    assert!(listed.contains("+0000"), "a creation time: {listed}");
}

#[test]
fn a_bulk_add_registers_many_devices_in_one_change_and_reports_each() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    ok(d, &["org", "create", "acme"]);
    ok(d, &["type", "create", "acme", "sensor"]);
    ok(d, &["device", "create", "acme", "sensor", "taken"]);
    let mut items: Vec<Value> = (0..200)
        .map(|i| serde_json::json!({"typeId": "sensor", "deviceId": format!("b{i}"), "metadata": {"n": i}}))
        .collect();
    items.push(serde_json::json!({"typeId": "sensor", "deviceId": "own", "authToken": "own-token-1"}));
    let file = d.join("devices.json");
    std::fs::write(&file, serde_json::to_vec(&items).unwrap()).unwrap();
    let results = ok(d, &["device", "bulk-add", "acme", file.to_str().unwrap()]);
    let results = results.as_array().unwrap();
    assert_eq!(results.len(), 201);
    assert!(results.iter().all(|r| r["success"] == true), "{results:?}");
    assert_eq!(s(&results[200], "authToken"), "own-token-1");
    let registry = Registry::open(d).unwrap();
    for r in [&results[0], &results[199]] {
        let token = s(r, "authToken");
        assert!(registry
            .verify_device_token("acme", "sensor", s(r, "deviceId"), token.as_bytes())
            .is_ok());
    }
    assert_eq!(ok(d, &["device", "list", "acme"]).as_array().map(Vec::len), Some(202));

    // Some refused: the others are kept, each refusal says why, and the status is 1.
    let mixed = serde_json::json!([
        {"typeId": "sensor", "deviceId": "taken"},
        {"typeId": "sensor", "deviceId": "fresh"},
        {"typeId": "sensor", "deviceId": "bad id"},
    ]);
    std::fs::write(&file, mixed.to_string()).unwrap();
    let out = iot(d, &["device", "bulk-add", "acme", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let results: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(results[0]["success"], false);
    assert!(s(&results[0], "message").contains("already exists"));
    assert_eq!(results[1]["success"], true);
    assert!(s(&results[2], "message").contains("bad device id"));
    assert!(String::from_utf8_lossy(&out.stderr).contains("2 of 3 device(s) not added"));
    assert!(ok(d, &["device", "get", "acme", "sensor", "fresh"]).is_object());

    std::fs::write(&file, b"[{\"typeId\": \"sensor\"}]").unwrap();
    let e = fails(d, &["device", "bulk-add", "acme", file.to_str().unwrap()]);
    assert!(e.contains("item 0: deviceId is missing"), "{e}");
}
