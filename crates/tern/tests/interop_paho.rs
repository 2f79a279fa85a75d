//! Interop with paho-mqtt (Python, Eclipse Paho): MQTT 3.1.1 and 5.0 clients nobody here
//! wrote run their checks (tests/interop/paho_check.py) against the real broker.
#![allow(clippy::unwrap_used)]
mod common;
use common::*;
use std::process::Command;

#[test]
fn paho_clients_pass_their_checks_under_3_1_1_and_5() {
    if !peer_available(
        "paho-mqtt (pip install paho-mqtt)",
        python_module_exists("paho.mqtt.client"),
    ) {
        return;
    }
    let broker = Broker::start();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop/paho_check.py");
    for version in ["3.1.1", "5"] {
        let out = Command::new("python3")
            .args([
                script,
                &broker.addr.ip().to_string(),
                &broker.addr.port().to_string(),
                version,
            ])
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "paho {version}:\n{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(stdout.contains("0 failed"), "{stdout}");
    }
}
