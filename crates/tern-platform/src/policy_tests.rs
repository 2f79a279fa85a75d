//! Unit tests of the platform policy over a registry in a temporary directory: CONNECT
//! refusals with their codes, roles, gateways, and the broker names of topics.

use super::*;
use crate::registry::{create_org, edit_org};
use crate::registry_model::{DeviceType, GatewayRef, NewDevice, OrgSettings};
use std::path::{Path, PathBuf};

struct Setup {
    platform: Platform,
    admin_key: String,
    admin_token: String,
    reader_key: String,
    reader_token: String,
    device_token: String,
    gateway_token: String,
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tern-policy-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn device_type(id: &str, class_id: DeviceClass) -> DeviceType {
    DeviceType {
        id: id.into(),
        description: None,
        class_id,
        device_info: serde_json::json!({}),
        metadata: serde_json::json!({}),
        created_unix: 0,
    }
}

fn add(dir: &Path, type_id: &str, id: &str, gateway: Option<GatewayRef>) -> String {
    edit_org(dir, "acme", |o| {
        o.add_device(NewDevice {
            type_id: type_id.into(),
            device_id: id.into(),
            gateway,
            ..NewDevice::default()
        })
    })
    .unwrap()
    .1
}

fn setup(name: &str, allow_plain: bool) -> Setup {
    let dir = temp_dir(name);
    let settings = OrgSettings {
        allow_plain,
        ..OrgSettings::default()
    };
    let admin = create_org(&dir, "acme", settings).unwrap();
    create_org(&dir, "other", OrgSettings::default()).unwrap();
    edit_org(&dir, "acme", |o| o.add_type(device_type("sensor", DeviceClass::Device))).unwrap();
    edit_org(&dir, "acme", |o| o.add_type(device_type("gw", DeviceClass::Gateway))).unwrap();
    let (reader, reader_token) = edit_org(&dir, "acme", |o| o.add_key(Role::ReadOnly, None)).unwrap();
    let device_token = add(&dir, "sensor", "s1", None);
    let gateway_token = add(&dir, "gw", "g1", None);
    let behind = GatewayRef {
        type_id: "gw".into(),
        device_id: "g1".into(),
    };
    add(&dir, "sensor", "s2", Some(behind));
    let registry = Arc::new(Registry::open(&dir).unwrap());
    Setup {
        platform: Platform::new(registry, Some("iot.example".into())),
        admin_key: admin.key.key,
        admin_token: admin.token,
        reader_key: reader.key,
        reader_token,
        device_token,
        gateway_token,
    }
}

fn request(client_id: &str, user: Option<&str>, password: &str) -> ConnectRequest {
    ConnectRequest {
        client_id: client_id.into(),
        username: user.map(String::from),
        password: Some(password.as_bytes().to_vec()),
        peer: "127.0.0.1:5000".parse().unwrap(),
        listener: 0,
        secure: true,
        server_name: None,
        protocol: tern_proto::ProtocolVersion::V3_1_1,
    }
}

fn refused(s: &Setup, r: &ConnectRequest) -> RefusalKind {
    s.platform.authenticate(r).unwrap_err().kind
}

#[test]
fn devices_and_applications_connect_with_their_tokens() {
    let s = setup("connect", false);
    let d = s
        .platform
        .authenticate(&request("d:acme:sensor:s1", Some("use-token-auth"), &s.device_token))
        .unwrap();
    assert_eq!(d.user(), Some("use-token-auth"));
    assert!(d.ignores_retain());
    assert_eq!(d.max_payload(), Some(131_072));
    assert_eq!(
        d.publish_topic("iot-2/evt/status/fmt/json").unwrap(),
        "$iot/acme/iot-2/type/sensor/id/s1/evt/status/fmt/json"
    );
    let a = s
        .platform
        .authenticate(&request("a:acme:app1", Some(&s.admin_key), &s.admin_token))
        .unwrap();
    assert_eq!(
        a.subscribe_filter("iot-2/type/+/id/+/evt/+/fmt/+").unwrap(),
        "$iot/acme/iot-2/type/+/id/+/evt/+/fmt/+"
    );
    assert!(a.publish_topic("iot-2/type/sensor/id/s1/cmd/reboot/fmt/json").is_ok());
    let map = a.delivery_map().unwrap();
    assert_eq!(
        map.to_client_topic("$iot/acme/iot-2/type/sensor/id/s1/evt/e/fmt/f")
            .as_deref(),
        Some("iot-2/type/sensor/id/s1/evt/e/fmt/f")
    );
    assert!(a.delivery_filter().is_none());
}

#[test]
fn refusals_have_the_codes_the_sdks_expect() {
    let s = setup("refusals", false);
    let user = Some("use-token-auth");
    assert_eq!(refused(&s, &request("sensor-1", user, "x")), RefusalKind::BadClientId);
    assert_eq!(
        refused(&s, &request("d:acme:sensor", user, "x")),
        RefusalKind::BadClientId
    );
    // A wrong token, an unknown device, a wrong user name: bad credentials.
    assert_eq!(
        refused(&s, &request("d:acme:sensor:s1", user, "wrong-token")),
        RefusalKind::BadCredentials
    );
    assert_eq!(
        refused(&s, &request("d:acme:sensor:nope", user, &s.device_token)),
        RefusalKind::BadCredentials
    );
    assert_eq!(
        refused(&s, &request("d:acme:sensor:s1", Some("bob"), &s.device_token)),
        RefusalKind::BadCredentials
    );
    assert_eq!(
        refused(&s, &request("a:acme:app", Some(&s.admin_key), "wrong")),
        RefusalKind::BadCredentials
    );
    // Not authorized: unknown org, a key of another org, a gateway as d:, a device as g:.
    assert_eq!(
        refused(&s, &request("d:nobody:sensor:s1", user, "x")),
        RefusalKind::NotAuthorized
    );
    assert_eq!(
        refused(&s, &request("a:other:app", Some(&s.admin_key), &s.admin_token)),
        RefusalKind::NotAuthorized
    );
    assert_eq!(
        refused(&s, &request("d:acme:gw:g1", user, &s.gateway_token)),
        RefusalKind::NotAuthorized
    );
    assert_eq!(
        refused(&s, &request("g:acme:sensor:s1", user, &s.device_token)),
        RefusalKind::NotAuthorized
    );
}

#[test]
fn tls_is_required_unless_the_organization_allows_plain() {
    let s = setup("tls", false);
    let mut r = request("d:acme:sensor:s1", Some("use-token-auth"), &s.device_token);
    r.secure = false;
    assert_eq!(refused(&s, &r), RefusalKind::NotAuthorized);
    let open = setup("plain", true);
    let mut r = request("d:acme:sensor:s1", Some("use-token-auth"), &open.device_token);
    r.secure = false;
    assert!(open.platform.authenticate(&r).is_ok());
}

#[test]
fn the_tls_name_must_name_the_clients_organization() {
    let s = setup("sni", false);
    let mut r = request("d:acme:sensor:s1", Some("use-token-auth"), &s.device_token);
    r.server_name = Some("other.messaging.iot.example".into());
    assert_eq!(refused(&s, &r), RefusalKind::NotAuthorized);
    r.server_name = Some("acme.messaging.iot.example".into());
    assert!(s.platform.authenticate(&r).is_ok());
    // Other names (an IP address, another domain) say nothing about the organization.
    r.server_name = Some("broker.local".into());
    assert!(s.platform.authenticate(&r).is_ok());
}

#[test]
fn a_read_only_key_may_not_publish_commands() {
    let s = setup("roles", false);
    let a = s
        .platform
        .authenticate(&request("a:acme:viewer", Some(&s.reader_key), &s.reader_token))
        .unwrap();
    assert!(a.publish_topic("iot-2/type/sensor/id/s1/cmd/reboot/fmt/json").is_err());
    assert!(a.subscribe_filter("iot-2/type/+/id/+/evt/+/fmt/+").is_ok());
    assert!(rights_of(Role::DeviceOperator).publish_commands);
    assert!(!rights_of(Role::DeviceOperator).publish_events);
}

#[test]
fn a_gateway_acts_for_itself_and_the_devices_behind_it() {
    let s = setup("gateway", false);
    let g = s
        .platform
        .authenticate(&request("g:acme:gw:g1", Some("use-token-auth"), &s.gateway_token))
        .unwrap();
    assert!(g.publish_topic("iot-2/type/gw/id/g1/evt/e/fmt/json").is_ok());
    assert!(g.publish_topic("iot-2/type/sensor/id/s2/evt/e/fmt/json").is_ok());
    assert!(g.publish_topic("iot-2/type/sensor/id/s1/evt/e/fmt/json").is_err());
    assert!(g.subscribe_filter("iot-2/type/sensor/id/s1/cmd/+/fmt/+").is_err());
    assert!(g.subscribe_filter("iot-2/type/+/id/+/cmd/+/fmt/+").is_ok());
    let filter = g.delivery_filter().unwrap();
    assert!(filter.may_receive("$iot/acme/iot-2/type/sensor/id/s2/cmd/c/fmt/f"));
    assert!(filter.may_receive("$iot/acme/iot-2/type/gw/id/g1/cmd/c/fmt/f"));
    assert!(!filter.may_receive("$iot/acme/iot-2/type/sensor/id/s1/cmd/c/fmt/f"));
}

#[test]
fn the_reserved_root_is_where_every_organization_is_mapped() {
    let s = setup("reserved", false);
    assert_eq!(s.platform.reserved_root(), Some("$iot/"));
    assert_eq!(RESERVED_ROOT, format!("{}/", crate::topics::ROOT));
    assert!(crate::topics::org_root("acme").starts_with(RESERVED_ROOT));
}

#[test]
fn devices_get_the_organizations_quotas() {
    let s = setup("quotas", false);
    let d = s
        .platform
        .authenticate(&request("d:acme:sensor:s1", Some("use-token-auth"), &s.device_token))
        .unwrap();
    assert_eq!(d.max_subscriptions(), Some(50));
    assert!((0..10).all(|_| !d.over_rate("iot-2/evt/e/fmt/json")));
    assert!(d.over_rate("iot-2/evt/e/fmt/json"));
    let a = s
        .platform
        .authenticate(&request("a:acme:app1", Some(&s.admin_key), &s.admin_token))
        .unwrap();
    assert_eq!(a.max_subscriptions(), Some(500));
    assert!(
        (0..100).all(|_| !a.over_rate("iot-2/type/t/id/d/evt/e/fmt/json")),
        "applications are not rate limited"
    );
}

#[test]
fn connections_of_a_scalable_application_get_sessions_of_their_own() {
    let s = setup("scalable", false);
    let connect = |id: &str| {
        s.platform
            .authenticate(&request(id, Some(&s.admin_key), &s.admin_token))
            .unwrap()
    };
    let (one, two) = (connect("A:acme:svc"), connect("A:acme:svc"));
    let (a, b) = (one.session_client_id().unwrap(), two.session_client_id().unwrap());
    assert_ne!(a, b);
    assert!(a.starts_with("A:acme:svc#") && one.forces_clean_session());
    assert_eq!(client_id_of_session(&a), "A:acme:svc");
    assert_eq!(client_id_of_session("d:acme:sensor:s1"), "d:acme:sensor:s1");
    // An instance id, or a plain application: the client id as sent.
    for id in ["A:acme:svc:inst1", "a:acme:app"] {
        let c = connect(id);
        assert_eq!(c.session_client_id(), None);
        assert!(!c.forces_clean_session());
    }
}

#[test]
fn an_organizations_connections_are_counted_while_their_clients_live() {
    let s = setup("connections", false);
    let r = request("d:acme:sensor:s1", Some("use-token-auth"), &s.device_token);
    let clients: Vec<_> = (0..3).map(|_| s.platform.authenticate(&r).unwrap()).collect();
    assert_eq!(s.platform.quotas.connected("acme"), 3);
    drop(clients);
    assert_eq!(s.platform.quotas.connected("acme"), 0);
    // A refused client takes no slot.
    let wrong = request("d:acme:sensor:s1", Some("use-token-auth"), "wrong");
    assert!(s.platform.authenticate(&wrong).is_err());
    assert_eq!(s.platform.quotas.connected("acme"), 0);
}

#[test]
fn quickstart_is_open_when_enabled_and_has_no_commands() {
    let s = setup("quickstart", false);
    let mut device = request("d:quickstart:mosquitto:myDeviceId", None, "");
    device.password = None;
    device.secure = false;
    assert_eq!(refused(&s, &device), RefusalKind::NotAuthorized, "off by default");
    let open = Platform::new(s.platform.registry().clone(), None).with_quickstart(true);
    let d = open.authenticate(&device).unwrap();
    assert_eq!(d.user(), None);
    assert!(d.publish_topic("iot-2/evt/helloworld/fmt/json").is_ok());
    assert!(d.subscribe_filter("iot-2/cmd/+/fmt/+").is_err());
    assert!(
        !d.over_rate("iot-2/evt/e/fmt/json") && d.over_rate("iot-2/evt/e/fmt/json"),
        "one message a second"
    );
    let mut app = device.clone();
    app.client_id = "a:quickstart:viewer".into();
    let a = open.authenticate(&app).unwrap();
    assert!(a.subscribe_filter("iot-2/type/mosquitto/id/+/evt/+/fmt/+").is_ok());
    assert!(a
        .publish_topic("iot-2/type/mosquitto/id/myDeviceId/cmd/c/fmt/json")
        .is_err());
    let mut gateway = device.clone();
    gateway.client_id = "g:quickstart:edge:gw".into();
    assert_eq!(
        open.authenticate(&gateway).unwrap_err().kind,
        RefusalKind::NotAuthorized
    );
}
