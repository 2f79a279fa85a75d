//! mosquitto's `ciphers` (TLS 1.2) and `ciphers_tls1.3` (TLS 1.3) against the real binary,
//! checked with OpenSSL's own client: the suites configured are negotiated, the others
//! refused in the handshake; a suite rustls does not offer, or an unknown cipher-list
//! keyword, stops the start naming it, the file and the line.
#![allow(clippy::unwrap_used)]

mod common;
use common::pki::Ca;
use common::*;

/// A TLS listener (ECDSA certificate for localhost) with `extra` lines, and its folder.
fn broker(extra: &str) -> (Broker, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new(dir.path(), "ca");
    let (cert, key) = ca.server("server");
    let config = format!(
        "listener 0 127.0.0.1\nallow_anonymous true\ncertfile {}\nkeyfile {}\n{extra}",
        cert.display(),
        key.display()
    );
    (Broker::with_config("mosquitto.conf", &config), dir)
}

/// What `openssl s_client -brief ARGS` says of a handshake with the broker: the suite
/// negotiated, or `None` when the handshake failed.
fn negotiated(broker: &Broker, args: &[&str]) -> Option<String> {
    let out = std::process::Command::new("openssl")
        .args([
            "s_client",
            "-brief",
            "-connect",
            &broker.addr.to_string(),
            "-servername",
            "localhost",
        ])
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    let suite = said
        .lines()
        .find_map(|l| l.strip_prefix("Ciphersuite: "))
        .map(|s| s.trim().to_string());
    assert_eq!(suite.is_some(), out.status.success(), "{said}");
    suite
}

fn openssl_present() -> bool {
    peer_available("openssl (apt-get install openssl)", program_exists("openssl"))
}

#[test]
fn ciphers_limits_the_tls12_suites_to_those_named() {
    if !openssl_present() {
        return;
    }
    let (broker, _dir) = broker("ciphers ECDHE-ECDSA-AES128-GCM-SHA256\n");
    assert_eq!(
        negotiated(&broker, &["-tls1_2"]).as_deref(),
        Some("ECDHE-ECDSA-AES128-GCM-SHA256")
    );
    let other = [
        "-tls1_2",
        "-cipher",
        "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305",
    ];
    assert_eq!(negotiated(&broker, &other), None);
    // TLS 1.3 is not what `ciphers` governs: its suites are all still offered.
    assert_eq!(
        negotiated(&broker, &["-tls1_3", "-ciphersuites", "TLS_AES_256_GCM_SHA384"]).as_deref(),
        Some("TLS_AES_256_GCM_SHA384")
    );
}

#[test]
fn an_openssl_cipher_list_expression_selects_among_the_offered_suites() {
    if !openssl_present() {
        return;
    }
    let (broker, _dir) = broker("ciphers HIGH:!aNULL:!MD5:!CHACHA20:-AES256\n");
    assert_eq!(
        negotiated(&broker, &["-tls1_2"]).as_deref(),
        Some("ECDHE-ECDSA-AES128-GCM-SHA256")
    );
    assert_eq!(
        negotiated(&broker, &["-tls1_2", "-cipher", "ECDHE-ECDSA-CHACHA20-POLY1305"]),
        None
    );
}

#[test]
fn ciphers_tls13_limits_the_tls13_suites_to_those_named() {
    if !openssl_present() {
        return;
    }
    let (broker, _dir) = broker("ciphers_tls1.3 TLS_CHACHA20_POLY1305_SHA256\n");
    let chacha = [
        "-tls1_3",
        "-ciphersuites",
        "TLS_CHACHA20_POLY1305_SHA256:TLS_AES_128_GCM_SHA256",
    ];
    assert_eq!(
        negotiated(&broker, &chacha).as_deref(),
        Some("TLS_CHACHA20_POLY1305_SHA256")
    );
    let aes = [
        "-tls1_3",
        "-ciphersuites",
        "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384",
    ];
    assert_eq!(negotiated(&broker, &aes), None);
}

#[test]
fn ciphers_are_toml_listener_keys_too() {
    if !openssl_present() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new(dir.path(), "ca");
    let (cert, key) = ca.server("server");
    let config = format!(
        "persistence = false\n[[listener]]\nport = 0\nbind_address = \"127.0.0.1\"\nallow_anonymous = true\ncertfile = \"{}\"\nkeyfile = \"{}\"\nciphers = \"ECDHE-ECDSA-CHACHA20-POLY1305\"\n\"ciphers_tls1.3\" = \"TLS_AES_128_GCM_SHA256\"\n",
        cert.display(),
        key.display()
    );
    let broker = Broker::with_config("tern.toml", &config);
    assert_eq!(
        negotiated(&broker, &["-tls1_2"]).as_deref(),
        Some("ECDHE-ECDSA-CHACHA20-POLY1305")
    );
    assert_eq!(
        negotiated(&broker, &["-tls1_3"]).as_deref(),
        Some("TLS_AES_128_GCM_SHA256")
    );
}

#[test]
fn suites_tern_does_not_offer_stop_the_start_naming_them() {
    for (line, says) in [
        (
            "ciphers ECDHE-RSA-AES128-GCM-SHA256:AES128-SHA",
            "mosquitto.conf:3: ciphers: cipher suite AES128-SHA is not offered by Tern's TLS library (rustls)",
        ),
        (
            "ciphers HIGH:!BOGUS",
            "mosquitto.conf:3: ciphers: \"BOGUS\" is neither a cipher suite nor an OpenSSL cipher-list keyword",
        ),
        (
            "ciphers aNULL:eNULL",
            "mosquitto.conf:3: ciphers: \"aNULL:eNULL\" selects none of the suites",
        ),
        (
            "ciphers_tls1.3 TLS_AES_128_CCM_8_SHA256",
            "mosquitto.conf:3: ciphers_tls1.3: cipher suite TLS_AES_128_CCM_8_SHA256 is not offered",
        ),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mosquitto.conf");
        std::fs::write(&path, format!("listener 0 127.0.0.1\nallow_anonymous true\n{line}\n")).unwrap();
        let out = tern(&["broker", "-c", path.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(1), "{out:?}");
        let said = String::from_utf8_lossy(&out.stderr);
        assert!(said.contains(says), "{line}: {said}");
    }
}

#[test]
fn suites_that_do_not_fit_the_key_are_warned_about() {
    if !openssl_present() {
        return;
    }
    // An ECDSA certificate and only RSA suites: TLS 1.2 cannot work, TLS 1.3 still does.
    let (broker, _dir) = broker("ciphers ECDHE-RSA-AES128-GCM-SHA256\n");
    assert!(broker.log_contains("ciphers: none of its TLS 1.2 suites works with the ECDSA key"));
    assert_eq!(negotiated(&broker, &["-tls1_2"]), None);
    assert!(negotiated(&broker, &["-tls1_3"]).is_some());
}
