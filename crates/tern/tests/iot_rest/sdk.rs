//! IBM's Python SDK (wiotp-sdk 1.0.1, unmodified) against the REST API.

use super::harness::*;
use crate::common::*;
use std::process::Command;

/// Where .ci/run installs IBM's SDK (a virtualenv of its own: it needs paho-mqtt below 2).
const SDK_PYTHON: &str = "/opt/tern-wiotp/bin/python";

#[test]
fn the_platforms_python_sdk_manages_the_registry_and_reads_the_cache() {
    let sdk_installed = Command::new(SDK_PYTHON)
        .args(["-c", "import wiotp.sdk.application"])
        .status()
        .is_ok_and(|s| s.success());
    let sdk = "wiotp-sdk 1.0.1 in /opt/tern-wiotp (python3 -m venv /opt/tern-wiotp; pip install wiotp-sdk==1.0.1)";
    // SAFETY: geteuid has no preconditions and cannot fail.
    let root = unsafe { libc::geteuid() == 0 };
    if !peer_available(sdk, sdk_installed) || !peer_available("root (for a network namespace)", root) {
        return;
    }
    let (org, domain) = ("za6xa7", "iot.test");
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let admin = iot(&data, &["org", "create", org, "--lec", "true"]);
    iot(&data, &["type", "create", org, "test"]);
    let device = iot(&data, &["device", "create", org, "test", "4321"]);
    let (messaging, rest) = (format!("{org}.messaging.{domain}"), format!("{org}.{domain}"));
    let ca = crate::common::pki::Ca::new(dir.path(), "platform");
    let (cert, key) = ca.server_for("server", &[&messaging, &rest]);
    let conf = dir.path().join("tern.conf");
    let tls = format!("certfile {}\nkeyfile {}\n", cert.display(), key.display());
    std::fs::write(
        &conf,
        format!(
            "persistence true\npersistence_location {}\nplatform_domain {domain}\n\
             listener 8883\n{tls}platform true\nlistener 443\n{tls}protocol http\n",
            data.display()
        ),
    )
    .unwrap();
    let hosts = dir.path().join("hosts");
    std::fs::write(&hosts, format!("127.0.0.1 localhost\n127.0.0.1 {messaging} {rest}\n")).unwrap();
    let log = dir.path().join("broker.log");
    let interop = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop");
    let out = Command::new("unshare")
        .args(["--net", "--mount", "bash", &format!("{interop}/wiotp_netns.sh")])
        .args([
            env!("CARGO_BIN_EXE_tern"),
            conf.to_str().unwrap(),
            hosts.to_str().unwrap(),
        ])
        .args([
            log.to_str().unwrap(),
            SDK_PYTHON,
            &format!("{interop}/wiotp_rest_check.py"),
        ])
        .args([org, domain, ca.cafile().to_str().unwrap(), "test", "4321"])
        .args([
            text(&device, "authToken"),
            text(&admin, "apiKey"),
            text(&admin, "apiToken"),
        ])
        .env("REQUESTS_CA_BUNDLE", ca.cafile())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    eprintln!("{stdout}");
    assert!(
        out.status.success() && stdout.contains(" 0 failed"),
        "{stdout}\n{}\nbroker log:\n{}",
        String::from_utf8_lossy(&out.stderr),
        std::fs::read_to_string(&log).unwrap_or_default()
    );
}
