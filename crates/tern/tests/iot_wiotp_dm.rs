//! The Device Management Protocol against IBM's Watson IoT Platform Python SDK (PyPI
//! `wiotp-sdk` 1.0.1, unmodified): a `ManagedDeviceClient` over MQTT and an
//! `ApplicationClient` over the REST API drive manage, location, diagnostics, reboot,
//! factory reset, firmware download and update (and their failures), custom action
//! bundles, a timeout, a reboot queued while the device is away, refusal of an unmanaged
//! device, unmanage, and a `ManagedGatewayClient` managing itself through the long topic
//! forms (tests/interop/wiotp_dm_check.py).
//! The broker and the script run in a network namespace of their own where the
//! platform's host names resolve to 127.0.0.1 (common/wiotp.rs); the registry is made
//! with `tern iot`, as a user would.
#![allow(clippy::unwrap_used)]
mod common;
use common::iot::{iot, text};
use common::wiotp::{sdk_ready, Platform};

#[test]
fn the_platforms_python_sdk_manages_a_device_through_tern() {
    if !sdk_ready() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let platform = Platform::new(dir.path(), "dm7org", "iot.test");
    let org = platform.org.as_str();
    let admin = iot(&data, &["org", "create", org]);
    iot(&data, &["type", "create", org, "sensor"]);
    let managed = iot(&data, &["device", "create", org, "sensor", "s1"]);
    let plain = iot(&data, &["device", "create", org, "sensor", "s2"]);
    iot(&data, &["type", "create", org, "hub", "--class", "gateway"]);
    let gateway = iot(&data, &["device", "create", org, "hub", "h1"]);
    let tls = platform.tls_lines();
    let config = format!(
        "persistence true\npersistence_location {}\nplatform_domain {}\n\
         listener 8883\n{tls}platform true\nlistener 443\n{tls}protocol http\n",
        data.display(),
        platform.domain
    );
    let args = [
        "sensor".to_string(),
        "s1".to_string(),
        text(&managed, "authToken"),
        text(&admin, "apiKey"),
        text(&admin, "apiToken"),
        "s2".to_string(),
        text(&plain, "authToken"),
        "hub".to_string(),
        "h1".to_string(),
        text(&gateway, "authToken"),
    ];
    platform.run_check(&config, "wiotp_dm_check.py", &args);
}
