//! IBM's Watson IoT Platform Python SDK (PyPI `wiotp-sdk` 1.0.1, unmodified, in a
//! virtualenv of its own since it needs paho-mqtt below 2) against the real broker.
//!
//! The SDK connects to `<org>.messaging.<domain>` on port 8883 and nowhere else, so the
//! broker and the SDK run inside a network namespace of their own (`unshare --net
//! --mount`, as root) where a hosts file bind-mounted over /etc/hosts sends those names to
//! 127.0.0.1 (tests/interop/wiotp_netns.sh). The SDK trusts the test CA through its
//! `caFile` option. The registry is made with `tern iot`, as a user would.
#![allow(clippy::unwrap_used)]
mod common;
use common::pki::Ca;
use common::*;
use serde_json::Value;
use std::process::Command;

/// The virtualenv .ci/run makes for the SDK.
const SDK_PYTHON: &str = "/opt/tern-wiotp/bin/python";
const ORG: &str = "za6xa7";
const DOMAIN: &str = "iot.test";

fn sdk_installed() -> bool {
    Command::new(SDK_PYTHON)
        .args(["-c", "import wiotp.sdk.application, wiotp.sdk.device"])
        .status()
        .is_ok_and(|s| s.success())
}

fn running_as_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// `tern iot ARGS --data-dir DATA --json`, parsed.
fn iot(data: &std::path::Path, args: &[&str]) -> Value {
    let mut all = vec!["iot"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--data-dir", data.to_str().unwrap(), "--json"]);
    let out = tern(&all);
    assert!(
        out.status.success(),
        "tern {all:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn the_platforms_python_sdk_devices_gateways_and_applications_talk_through_tern() {
    let sdk = "wiotp-sdk 1.0.1 in /opt/tern-wiotp (python3 -m venv /opt/tern-wiotp; pip install wiotp-sdk==1.0.1)";
    if !peer_available(sdk, sdk_installed()) || !peer_available("root (for a network namespace)", running_as_root()) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let org = iot(&data, &["org", "create", ORG]);
    iot(&data, &["type", "create", ORG, "test"]);
    let device = iot(&data, &["device", "create", ORG, "test", "4321"]);
    iot(&data, &["type", "create", ORG, "gw", "--class", "gateway"]);
    let gateway = iot(&data, &["device", "create", ORG, "gw", "gw1"]);
    iot(
        &data,
        &["device", "create", ORG, "test", "sensor9", "--gateway", "gw:gw1"],
    );
    let messaging = format!("{ORG}.messaging.{DOMAIN}");
    let ca = Ca::new(dir.path(), "platform");
    let (cert, key) = ca.server_for("server", &[&messaging, &format!("{ORG}.{DOMAIN}")]);
    let conf = dir.path().join("tern.conf");
    std::fs::write(
        &conf,
        format!(
            "persistence true\npersistence_location {}\nplatform_domain {DOMAIN}\nlistener 8883\ncertfile {}\nkeyfile {}\nplatform true\n",
            data.display(),
            cert.display(),
            key.display()
        ),
    )
    .unwrap();
    let hosts = dir.path().join("hosts");
    std::fs::write(
        &hosts,
        format!("127.0.0.1 localhost\n127.0.0.1 {messaging} {ORG}.{DOMAIN}\n"),
    )
    .unwrap();
    let log = dir.path().join("broker.log");
    let interop = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop");
    let text = |v: &Value| v.as_str().unwrap().to_string();
    let out = Command::new("unshare")
        .args(["--net", "--mount", "bash", &format!("{interop}/wiotp_netns.sh")])
        .args([
            env!("CARGO_BIN_EXE_tern"),
            conf.to_str().unwrap(),
            hosts.to_str().unwrap(),
        ])
        .args([log.to_str().unwrap(), SDK_PYTHON, &format!("{interop}/wiotp_check.py")])
        .args([ORG, DOMAIN, ca.cafile().to_str().unwrap(), "test", "4321"])
        .args([text(&device["authToken"]), text(&org["apiKey"]), text(&org["apiToken"])])
        .args([
            "gw".to_string(),
            "gw1".to_string(),
            text(&gateway["authToken"]),
            "sensor9".to_string(),
        ])
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
