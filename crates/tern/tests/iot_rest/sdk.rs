//! IBM's Python SDK (wiotp-sdk 1.0.1, unmodified) against the REST API.

use super::harness::*;
use crate::common::wiotp::{sdk_ready, Platform};

#[test]
fn the_platforms_python_sdk_manages_the_registry_and_reads_the_cache() {
    if !sdk_ready() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let platform = Platform::new(dir.path(), "za6xa7", "iot.test");
    let org = platform.org.as_str();
    let admin = iot(&data, &["org", "create", org, "--lec", "true"]);
    iot(&data, &["type", "create", org, "test"]);
    let device = iot(&data, &["device", "create", org, "test", "4321"]);
    let tls = platform.tls_lines();
    let config = format!(
        "persistence true\npersistence_location {}\nplatform_domain {}\n\
         listener 8883\n{tls}platform true\nlistener 443\n{tls}protocol http\n",
        data.display(),
        platform.domain
    );
    let args = [
        "test".to_string(),
        "4321".to_string(),
        text(&device, "authToken"),
        text(&admin, "apiKey"),
        text(&admin, "apiToken"),
    ];
    platform.run_check(&config, "wiotp_rest_check.py", &args);
}
