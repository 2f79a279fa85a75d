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
use common::iot::{iot, text};
use common::wiotp::{sdk_ready, Platform};

const ORG: &str = "za6xa7";

#[test]
fn the_platforms_python_sdk_devices_gateways_and_applications_talk_through_tern() {
    if !sdk_ready() {
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
    let platform = Platform::new(dir.path(), ORG, "iot.test");
    let config = format!(
        "persistence true\npersistence_location {}\nplatform_domain {}\nlistener 8883\n{}platform true\n",
        data.display(),
        platform.domain,
        platform.tls_lines()
    );
    let args = [
        "test".to_string(),
        "4321".to_string(),
        text(&device, "authToken"),
        text(&org, "apiKey"),
        text(&org, "apiToken"),
        "gw".to_string(),
        "gw1".to_string(),
        text(&gateway, "authToken"),
        "sensor9".to_string(),
    ];
    platform.run_check(&config, "wiotp_check.py", &args);
}
