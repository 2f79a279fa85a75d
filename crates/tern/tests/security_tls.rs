//! TLS listeners (rustls): a mosquitto.conf with cafile/certfile/keyfile works unchanged
//! with mosquitto_pub/mosquitto_sub and the tern tools; mutual TLS with the certificate's
//! identity as user name and an ACL; revocation lists; ALPN; host name checks; SIGHUP
//! reloading certificates while connected clients stay.
#![allow(clippy::unwrap_used)]
mod common;
use common::pki::Ca;
use common::*;
use std::path::Path;
use std::process::Command;
use tern_client::{Client as LibClient, ConnectOptions, TlsOptions};
use tern_proto::*;

fn tls_broker(dir: &Path, extra: &str) -> (Broker, Ca) {
    let ca = Ca::new(dir, "test");
    let (cert, key) = ca.server("server");
    let conf = format!(
        "listener 0 127.0.0.1\ncafile {}\ncertfile {}\nkeyfile {}\n{extra}",
        ca.cafile().display(),
        cert.display(),
        key.display()
    );
    (Broker::with_config("tls.conf", &conf), ca)
}

fn lib_options(broker: &Broker, tls: TlsOptions) -> ConnectOptions {
    ConnectOptions::new("localhost", broker.addr.port())
        .client_id("lib-tls")
        .tls(tls)
}

fn trusting(ca: &Ca) -> TlsOptions {
    TlsOptions {
        cafile: Some(ca.cafile()),
        ..TlsOptions::default()
    }
}

#[test]
fn mosquitto_and_tern_clients_talk_over_tls() {
    let dir = tempfile::tempdir().unwrap();
    let (broker, ca) = tls_broker(dir.path(), "allow_anonymous true\n");
    let port = broker.addr.port().to_string();
    let cafile = ca.cafile().display().to_string();
    let base = ["-h", "localhost", "-p", &port, "--cafile", &cafile];
    // tern sub and tern pub, both protocol versions. A retained probe, printed once a
    // subscription is in place, says when to publish.
    let probe = tern(&[&["pub"][..], &base, &["-t", "tls/t", "-m", "ready", "-r"]].concat());
    assert!(probe.status.success(), "{}", String::from_utf8_lossy(&probe.stderr));
    for version in ["mqttv311", "mqttv5"] {
        let sub = Background::tern(
            &[
                &["sub"][..],
                &base,
                &["-V", version, "-t", "tls/t", "-C", "2", "-W", "20"],
            ]
            .concat(),
        );
        sub.wait_stdout("ready");
        let out = tern(
            &[
                &["pub"][..],
                &base,
                &["-V", version, "-t", "tls/t", "-m", "secret", "-q", "1"],
            ]
            .concat(),
        );
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(sub.finish().1, "ready\nsecret\n");
    }
    // The certificate names localhost, not 127.0.0.1: refused unless --insecure.
    let by_ip = [
        "-h",
        "127.0.0.1",
        "-p",
        &port,
        "--cafile",
        &cafile,
        "-t",
        "t",
        "-m",
        "x",
    ];
    let out = tern(&[&["pub"][..], &by_ip].concat());
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("TLS"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(tern(&[&["pub"][..], &by_ip, &["--insecure"]].concat()).status.success());
    // Plain MQTT on a TLS listener goes nowhere.
    let mut plain = broker.client(V311);
    plain.send(&Packet::Connect(Box::new(connect_packet(V311, "plain", true, 60))));
    assert!(plain.expect_closed().is_empty());

    if !peer_available(
        "mosquitto_pub/mosquitto_sub (apt-get install mosquitto-clients)",
        program_exists("mosquitto_sub"),
    ) {
        return;
    }
    for version in ["mqttv311", "mqttv5"] {
        let sub =
            Background::mosquitto_sub(&[&base[..], &["-V", version, "-t", "tls/m", "-C", "1", "-W", "20"]].concat());
        let status = Command::new("mosquitto_pub")
            .args(base)
            .args(["-V", version, "-t", "tls/m", "-m", "from mosquitto_pub", "-q", "1"])
            .status()
            .unwrap();
        assert!(status.success());
        assert_eq!(mosquitto_messages(&sub.finish().1), ["from mosquitto_pub"]);
    }
}

/// A mutual-TLS broker whose client certificate identity (`mode`) is the user name, with
/// an ACL giving `user` read and write on `filter`; returns it and the tern/mosquitto
/// client arguments that connect with a certificate whose CN is `device-N`.
fn mtls_broker(dir: &Path, mode: &str, user: &str, filter: &str) -> (Broker, Vec<String>) {
    let acl = dir.join("acl");
    std::fs::write(&acl, format!("user {user}\ntopic readwrite {filter}\n")).unwrap();
    let (broker, ca) = tls_broker(
        dir,
        &format!(
            "require_certificate true\n{mode} true\nallow_anonymous false\nacl_file {}\n",
            acl.display()
        ),
    );
    let cn = user.rsplit("CN=").next().unwrap_or(user);
    let (cert, key) = ca.client(cn, cn, 11);
    let args = [
        "-h".to_string(),
        "localhost".into(),
        "-p".into(),
        broker.addr.port().to_string(),
        "--cafile".into(),
        ca.cafile().display().to_string(),
        "--cert".into(),
        cert.display().to_string(),
        "--key".into(),
        key.display().to_string(),
    ];
    (broker, args.to_vec())
}

#[test]
fn mutual_tls_uses_the_certificate_identity_and_the_acl() {
    let dir = tempfile::tempdir().unwrap();
    let (broker, args) = mtls_broker(dir.path(), "use_identity_as_username", "device-1", "devices/1/#");
    let with_cert: Vec<&str> = args.iter().map(String::as_str).collect();
    // The same connection without the certificate and key.
    let without_cert = [&with_cert[..6], &["-t", "devices/1/x", "-m", "x"]].concat();
    let out = tern(
        &[
            &["pub"][..],
            &with_cert,
            &["-t", "devices/1/state", "-m", "on", "-q", "1", "-V", "mqttv5"],
        ]
        .concat(),
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // The ACL applies to the certificate's identity.
    let out = tern(&[&["sub"][..], &with_cert, &["-t", "devices/2/#", "-W", "2"]].concat());
    assert!(!out.status.success(), "devices/2 is not device-1's");
    assert!(String::from_utf8_lossy(&out.stderr).contains("Subscription denied"));
    // Without a certificate the handshake fails.
    let out = tern(&[&["pub"][..], &without_cert].concat());
    assert!(!out.status.success());
    assert!(broker.log_contains("TLS"), "the broker logs why");

    if !peer_available(
        "mosquitto_pub/mosquitto_sub (apt-get install mosquitto-clients)",
        program_exists("mosquitto_sub"),
    ) {
        return;
    }
    let sub =
        Background::mosquitto_sub(&[&with_cert[..], &["-t", "devices/1/#", "-C", "1", "-W", "20", "-v"]].concat());
    let status = Command::new("mosquitto_pub")
        .args(&with_cert)
        .args(["-t", "devices/1/temp", "-m", "21"])
        .status()
        .unwrap();
    assert!(status.success());
    assert_eq!(mosquitto_messages(&sub.finish().1), ["devices/1/temp 21"]);
    let refused = Command::new("mosquitto_pub").args(&without_cert).output().unwrap();
    assert!(
        !refused.status.success(),
        "mosquitto_pub without a certificate is refused"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoked_client_certificates_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let ca_dir = dir.path().join("pki");
    std::fs::create_dir(&ca_dir).unwrap();
    // The CRL must exist before the broker reads its configuration.
    let ca = Ca::new(&ca_dir, "test");
    let (server_cert, server_key) = ca.server("server");
    let (good_cert, good_key) = ca.client("good", "good", 21);
    let (bad_cert, bad_key) = ca.client("bad", "bad", 22);
    let crl = ca.crl(&[22]);
    let broker = Broker::with_config(
        "crl.conf",
        &format!(
            "listener 0 127.0.0.1\nallow_anonymous true\ncafile {}\ncertfile {}\nkeyfile {}\nrequire_certificate true\ncrlfile {}\n",
            ca.cafile().display(),
            server_cert.display(),
            server_key.display(),
            crl.display()
        ),
    );
    let with = |cert: &Path, key: &Path| TlsOptions {
        cafile: Some(ca.cafile()),
        cert: Some(cert.to_path_buf()),
        key: Some(key.to_path_buf()),
        ..TlsOptions::default()
    };
    let (client, _events, _) = LibClient::connect(lib_options(&broker, with(&good_cert, &good_key)))
        .await
        .unwrap();
    client.publish("crl/ok", "x", QoS::AtLeastOnce, false).await.unwrap();
    assert!(LibClient::connect(lib_options(&broker, with(&bad_cert, &bad_key)))
        .await
        .is_err());
    assert!(broker.log_contains("TLS"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alpn_and_minimum_version_are_negotiated() {
    let dir = tempfile::tempdir().unwrap();
    let (broker, ca) = tls_broker(dir.path(), "allow_anonymous true\ntls_alpn mqtt\ntls_version tlsv1.3\n");
    let offer = |alpn: &[&str], version: Option<&str>| TlsOptions {
        alpn: alpn.iter().map(|s| s.to_string()).collect(),
        tls_version: version.map(str::to_string),
        ..trusting(&ca)
    };
    let (client, _, _) = LibClient::connect(lib_options(&broker, offer(&["mqtt"], None)))
        .await
        .unwrap();
    client.disconnect().await.unwrap();
    assert!(LibClient::connect(lib_options(&broker, offer(&[], Some("tlsv1.3"))))
        .await
        .is_ok());
    assert!(
        LibClient::connect(lib_options(&broker, offer(&["h2"], None)))
            .await
            .is_err(),
        "a client offering only other protocols is refused"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_certificates_without_dropping_clients() {
    let dir = tempfile::tempdir().unwrap();
    let (broker, old_ca) = tls_broker(dir.path(), "allow_anonymous true\n");
    let options = |ca: &Ca, id: &str| lib_options(&broker, trusting(ca)).client_id(id);
    let (stays, mut events, _) = LibClient::connect(options(&old_ca, "stays")).await.unwrap();
    stays.subscribe("reload/#", QoS::AtLeastOnce).await.unwrap();
    // A new CA and server certificate replace the files in place.
    let old_copy = dir.path().join("old-ca.crt");
    std::fs::copy(old_ca.cafile(), &old_copy).unwrap();
    let new_dir = dir.path().join("new");
    std::fs::create_dir(&new_dir).unwrap();
    let new_ca = Ca::new(&new_dir, "test");
    let (cert, key) = new_ca.server("server");
    for (from, to) in [
        (new_ca.cafile(), old_ca.cafile()),
        (cert, dir.path().join("server.crt")),
        (key, dir.path().join("server.key")),
    ] {
        std::fs::copy(from, to).unwrap();
    }
    broker.signal(SIGHUP);
    assert!(broker.log_contains("configuration reloaded"));
    let (newcomer, _, _) = LibClient::connect(options(&new_ca, "newcomer")).await.unwrap();
    newcomer
        .publish("reload/x", "after", QoS::AtLeastOnce, false)
        .await
        .unwrap();
    loop {
        match tokio::time::timeout(PATIENCE, events.recv()).await.unwrap() {
            Some(tern_client::Event::Message(p)) => {
                assert_eq!(&p.payload[..], b"after", "the old connection still receives");
                break;
            }
            Some(_) => continue,
            None => panic!("the old connection was dropped"),
        }
    }
    // New connections get the new certificate: the old CA no longer vouches for it.
    let old_trust = TlsOptions {
        cafile: Some(old_copy),
        ..TlsOptions::default()
    };
    assert!(LibClient::connect(lib_options(&broker, old_trust).client_id("late"))
        .await
        .is_err());
}

#[test]
fn the_certificate_subject_can_be_the_user_name() {
    let dir = tempfile::tempdir().unwrap();
    let (_broker, args) = mtls_broker(
        dir.path(),
        "use_subject_as_username",
        "O=Tern Tests,CN=device-2",
        "subject/#",
    );
    let with_cert: Vec<&str> = args.iter().map(String::as_str).collect();
    let granted = tern(&[&["sub"][..], &with_cert, &["-t", "subject/#", "-W", "1"]].concat());
    assert_eq!(
        granted.status.code(),
        Some(27),
        "subscribed, then timed out: {}",
        String::from_utf8_lossy(&granted.stderr)
    );
    let denied = tern(&[&["sub"][..], &with_cert, &["-t", "other/#", "-W", "1"]].concat());
    assert!(String::from_utf8_lossy(&denied.stderr).contains("Subscription denied"));
}
