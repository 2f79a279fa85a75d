//! `tern iot --url` (issue 15): the registry managed through a running broker's admin API,
//! as the real binary against the real broker over HTTP and HTTPS. What it makes is used
//! at once by MQTT clients (the broker answers after reloading), it answers the same JSON
//! as the data-directory form, and a wrong admin key, an org API key, a missing broker or
//! bad input each fail with a message naming what was wrong, costing nothing else.
#![allow(clippy::unwrap_used, clippy::expect_used)]
mod common;
use common::pki::Ca;
use common::*;
use serde_json::Value;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Output;
use tern_proto::ProtocolVersion;

/// A platform broker: a plain MQTT listener in platform mode and an HTTP listener (plain,
/// or with TLS from `ca`), its data directory holding one admin API key.
struct Remote {
    broker: Broker,
    mqtt: SocketAddr,
    url: String,
    admin_key: String,
    cafile: Option<std::path::PathBuf>,
    data: tempfile::TempDir,
}

fn start(tls: bool) -> Remote {
    let data = tempfile::tempdir().unwrap();
    let admin_key = admin_key(data.path()).pair();
    let mut http_tls = String::new();
    let mut cafile = None;
    if tls {
        let ca = Ca::new(data.path(), "ca");
        let (cert, key) = ca.server_for("api", &["localhost"]);
        http_tls = format!("certfile {}\nkeyfile {}\n", cert.display(), key.display());
        cafile = Some(ca.cafile());
    }
    let config = format!(
        "persistence_location {}\nlistener 0 127.0.0.1\nplatform true\nlistener 0 127.0.0.1\nprotocol http\n{http_tls}",
        data.path().display()
    );
    let broker = Broker::with_config("tern.conf", &config);
    let addrs = broker.listening_addrs();
    let (scheme, host) = if tls {
        ("https", "localhost")
    } else {
        ("http", "127.0.0.1")
    };
    Remote {
        url: format!("{scheme}://{host}:{}", addrs[1].port()),
        mqtt: addrs[0],
        broker,
        admin_key,
        cafile,
        data,
    }
}

impl Remote {
    /// `tern iot ARGS --url URL --admin-key KEY [--cafile CA] --json`.
    fn iot_with_key(&self, key: &str, args: &[&str]) -> Output {
        let mut all = vec!["iot"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["--url", &self.url, "--admin-key", key, "--json"]);
        let ca;
        if let Some(cafile) = &self.cafile {
            ca = cafile.to_str().unwrap().to_string();
            all.extend_from_slice(&["--cafile", &ca]);
        }
        tern(&all)
    }

    fn ok(&self, args: &[&str]) -> Value {
        let out = self.iot_with_key(&self.admin_key, args);
        assert!(
            out.status.success(),
            "tern iot {args:?} --url: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }

    fn fails(&self, args: &[&str]) -> String {
        let out = self.iot_with_key(&self.admin_key, args);
        assert_eq!(out.status.code(), Some(1), "tern iot {args:?}: {out:?}");
        assert!(out.stdout.is_empty(), "{out:?}");
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    /// A device connecting with its token over MQTT 3.1.1; the CONNACK's return code.
    fn device_connects(&self, org: &str, type_id: &str, device_id: &str, token: &str) -> u8 {
        let mut connect = connect_packet(
            ProtocolVersion::V3_1_1,
            &format!("d:{org}:{type_id}:{device_id}"),
            true,
            30,
        );
        connect.username = Some("use-token-auth".into());
        connect.password = Some(token.as_bytes().to_vec().into());
        let mut client = Client::open(self.mqtt, ProtocolVersion::V3_1_1);
        client.connect(&connect).reason_code.to_connect_return_code()
    }
}

fn local(dir: &Path, args: &[&str]) -> Value {
    let mut all = vec!["iot"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--data-dir", dir.to_str().unwrap(), "--json"]);
    let out = tern(&all);
    assert!(out.status.success(), "{out:?}");
    serde_json::from_slice(&out.stdout).unwrap()
}

fn s<'a>(v: &'a Value, field: &str) -> &'a str {
    v[field].as_str().unwrap_or_else(|| panic!("no string {field} in {v}"))
}

#[test]
fn a_registry_made_through_the_running_broker_is_used_at_once_and_matches_the_data_directory() {
    let remote = start(false);
    let created = remote.ok(&["org", "create", "za6xa7", "--allow-plain", "true"]);
    assert_eq!(s(&created, "org"), "za6xa7");
    assert!(s(&created, "apiKey").starts_with("a-za6xa7-"), "{created}");
    remote.ok(&["type", "create", "za6xa7", "test", "--device-info", r#"{"model":"T1"}"#]);
    let device = remote.ok(&["device", "create", "za6xa7", "test", "4321"]);
    let token = s(&device, "authToken").to_string();
    assert!(!token.starts_with('-'), "{token}");

    // The broker answered after reloading: the device connects right away.
    assert_eq!(remote.device_connects("za6xa7", "test", "4321", &token), 0);
    assert_eq!(remote.device_connects("za6xa7", "test", "4321", "wrong-token-1234"), 4);

    // The same answers through the API as from the data directory.
    for args in [
        &["org", "get", "za6xa7"][..],
        &["type", "list", "za6xa7"],
        &["device", "get", "za6xa7", "test", "4321"],
        &["device", "list", "za6xa7", "test"],
        &["key", "list", "za6xa7"],
    ] {
        assert_eq!(remote.ok(args), local(remote.data.path(), args), "{args:?}");
    }

    // A new token locks the old one out at once.
    let renewed = remote.ok(&["device", "regenerate-token", "za6xa7", "test", "4321"]);
    assert_eq!(remote.device_connects("za6xa7", "test", "4321", &token), 4);
    assert_eq!(
        remote.device_connects("za6xa7", "test", "4321", s(&renewed, "authToken")),
        0
    );

    // Settings, keys, bulk add and deletion.
    let set = remote.ok(&[
        "org",
        "set",
        "za6xa7",
        "--subscriptions-per-device",
        "7",
        "--connections-per-second",
        "40",
    ]);
    assert_eq!(set["settings"]["quotas"]["subscriptionsPerDevice"], 7, "{set}");
    assert_eq!(set["settings"]["quotas"]["connectionsPerSecond"], 40, "{set}");
    let key = remote.ok(&["key", "create", "za6xa7", "--role", "read-only"]);
    assert_eq!(s(&key, "role"), "read-only");
    remote.ok(&["key", "revoke", "za6xa7", s(&key, "apiKey")]);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bulk.json");
    std::fs::write(
        &file,
        r#"[{"typeId":"test","deviceId":"b1"},{"typeId":"nope","deviceId":"b2"}]"#,
    )
    .unwrap();
    let out = remote.iot_with_key(
        &remote.admin_key,
        &["device", "bulk-add", "za6xa7", file.to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(1), "one of two is not added: {out:?}");
    let results: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(results[0]["authToken"].is_string(), "{results}");
    assert!(results[1]["authToken"].is_null(), "{results}");
    remote.ok(&["device", "delete", "za6xa7", "test", "4321"]);
    assert_eq!(
        remote.device_connects("za6xa7", "test", "4321", s(&renewed, "authToken")),
        4
    );
}

#[test]
fn refusals_name_what_was_wrong_and_cost_nothing_else() {
    let remote = start(false);
    let created = remote.ok(&["org", "create", "acme"]);

    let missing = remote.fails(&["device", "get", "acme", "test", "1"]);
    assert!(
        missing.contains("no device test/1 in organization acme") && missing.contains("404"),
        "{missing}"
    );
    let exists = remote.fails(&["org", "create", "acme"]);
    assert!(exists.contains("already exists") && exists.contains("409"), "{exists}");
    let bad = remote.fails(&["type", "create", "acme", "bad type"]);
    assert!(bad.contains("400") && bad.contains("type"), "{bad}");

    // A wrong admin key, and the organization's own API key, are refused as such.
    let wrong = remote.iot_with_key("nokey:nosecret", &["org", "list"]);
    assert_eq!(wrong.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&wrong.stderr).contains("refused the admin API key"),
        "{wrong:?}"
    );
    let org_key = format!("{}:{}", s(&created, "apiKey"), s(&created, "apiToken"));
    let refused = remote.iot_with_key(&org_key, &["org", "list"]);
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("refused the admin API key"),
        "{refused:?}"
    );
    let no_key = tern(&["iot", "org", "list", "--url", &remote.url]);
    assert!(
        String::from_utf8_lossy(&no_key.stderr).contains("--admin-key"),
        "{no_key:?}"
    );

    // Not the HTTP listener: said so rather than hanging.
    let mqtt_url = format!("http://{}", remote.mqtt);
    let wrong_port = tern(&[
        "iot",
        "org",
        "list",
        "--url",
        &mqtt_url,
        "--admin-key",
        &remote.admin_key,
    ]);
    assert_eq!(wrong_port.status.code(), Some(1), "{wrong_port:?}");
    assert!(
        String::from_utf8_lossy(&wrong_port.stderr).contains("HTTP listener"),
        "{wrong_port:?}"
    );

    // Raw bad bodies through the admin API: 400 naming the problem, the broker unharmed.
    let http: SocketAddr = remote.url.trim_start_matches("http://").parse().unwrap();
    let (id, secret) = remote.admin_key.split_once(':').unwrap();
    for (path, body) in [
        ("/api/v1/platform/orgs", "{not json"),
        ("/api/v1/platform/orgs", r#"{"org":"x1","maxPayload":"big"}"#),
        ("/api/v1/platform/orgs", r#"{"org":"x2","unknownSetting":1}"#),
        ("/api/v1/platform/orgs/acme/keys", r#"{"role":"emperor"}"#),
        ("/api/v1/platform/orgs/acme/devices", r#"[1,2]"#),
    ] {
        let answer = http_post(http, path, id, secret, body);
        assert!(answer.starts_with("HTTP/1.1 400"), "{path} {body}: {answer}");
        assert!(answer.contains("\"error\""), "{answer}");
    }
    // An empty body is `{}`; a bulk add that adds only some answers 202, as the platform's.
    let answer = http_post(http, "/api/v1/platform/orgs/acme/keys", id, secret, "");
    assert!(
        answer.starts_with("HTTP/1.1 201") && answer.contains("standard-app"),
        "{answer}"
    );
    remote.ok(&["type", "create", "acme", "t"]);
    let bulk = r#"[{"typeId":"t","deviceId":"d1"},{"typeId":"t","deviceId":"bad id"}]"#;
    let answer = http_post(http, "/api/v1/platform/orgs/acme/bulk/devices/add", id, secret, bulk);
    assert!(answer.starts_with("HTTP/1.1 202"), "{answer}");
    assert_eq!(remote.ok(&["org", "list"]).as_array().map(Vec::len), Some(1));
    assert!(!remote.broker.logged("panicked"));
}

/// One POST over a fresh connection; the whole answer as text.
fn http_post(addr: SocketAddr, path: &str, id: &str, secret: &str, body: &str) -> String {
    use base64::Engine;
    use std::io::{Read, Write};
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{id}:{secret}"));
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Basic {auth}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).unwrap();
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    answer
}

#[test]
fn over_https_with_the_brokers_ca() {
    let remote = start(true);
    let created = remote.ok(&["org", "create", "tlsorg"]);
    assert_eq!(s(&created, "org"), "tlsorg");
    assert_eq!(remote.ok(&["org", "list"])[0]["org"], "tlsorg");
    // Without --cafile the command says it needs one.
    let out = tern(&[
        "iot",
        "org",
        "list",
        "--url",
        &remote.url,
        "--admin-key",
        &remote.admin_key,
    ]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("--cafile"), "{out:?}");
    // With a CA that did not sign it, the certificate is not trusted, and the error says TLS.
    let other = Ca::new(remote.data.path(), "other");
    let other_ca = other.cafile();
    let out = tern(&[
        "iot",
        "org",
        "list",
        "--url",
        &remote.url,
        "--admin-key",
        &remote.admin_key,
        "--cafile",
        other_ca.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("TLS"), "{out:?}");
}

#[test]
fn the_data_directory_form_refuses_a_directory_that_is_not_there() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("typo");
    let out = tern(&["iot", "type", "list", "acme", "--data-dir", missing.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no data directory") && err.contains("typo"), "{err}");
    assert!(!missing.exists(), "nothing was made");
    let out = tern(&[
        "iot",
        "type",
        "list",
        "acme",
        "--data-dir",
        dir.path().to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no organization acme") && err.contains("in data directory"),
        "{err}"
    );
    // TERN_DATA_DIR stands for --data-dir.
    let created = std::process::Command::new(env!("CARGO_BIN_EXE_tern"))
        .args(["iot", "org", "create", "envorg", "--json"])
        .env("TERN_DATA_DIR", dir.path())
        .output()
        .unwrap();
    assert!(created.status.success(), "{created:?}");
    assert_eq!(local(dir.path(), &["org", "get", "envorg"])["org"], "envorg");
}
