//! Unit tests of the registry's records: id rules, timestamps, device defaults, gateways,
//! quotas.

use super::*;

#[test]
fn ids_follow_the_platform_rules() {
    assert!(check_org_id("za6xa7").is_ok());
    assert!(check_org_id("ZA6").is_err());
    assert!(check_org_id("").is_err());
    assert!(check_org_id(&"a".repeat(37)).is_err());
    assert!(check_id("device id", "Dev_1.a-b").is_ok());
    let e = check_id("device id", "a b")
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(e.contains("device id") && e.contains("1 to 36"), "{e}");
    assert_eq!(org_of_key("a-za6xa7-abcdefghij"), Some("za6xa7"));
    assert_eq!(org_of_key("a-ZA-x"), None);
    assert_eq!(org_of_key("d-za6xa7-x"), None);
}

#[test]
fn timestamps_are_the_platforms_form() {
    assert_eq!(iso8601(0), "1970-01-01T00:00:00.000+0000");
    assert_eq!(iso8601(1_457_964_726), "2016-03-14T14:12:06.000+0000");
    assert_eq!(iso8601(951_782_400), "2000-02-29T00:00:00.000+0000");
}

#[test]
fn devices_take_their_types_defaults_and_gateways_must_be_gateways() {
    let mut org = OrgData::new("acme");
    let mut sensor = DeviceType {
        id: "sensor".into(),
        description: None,
        class_id: DeviceClass::Device,
        device_info: serde_json::json!({"manufacturer": "Acme", "model": "S1"}),
        metadata: empty_object(),
        created_unix: 0,
    };
    org.add_type(sensor.clone()).unwrap_or_else(|e| panic!("{e}"));
    assert!(matches!(org.add_type(sensor.clone()), Err(RegistryError::Exists(_))));
    sensor.id = "gw".into();
    sensor.class_id = DeviceClass::Gateway;
    org.add_type(sensor).unwrap_or_else(|e| panic!("{e}"));
    let new = |t: &str, d: &str| NewDevice {
        type_id: t.into(),
        device_id: d.into(),
        ..NewDevice::default()
    };
    let (gw, _) = org.add_device(new("gw", "g1")).unwrap_or_else(|e| panic!("{e}"));
    let (_, s1token) = org.add_device(new("sensor", "s1")).unwrap_or_else(|e| panic!("{e}"));
    assert!(s1token.len() >= 18);
    let mut behind = new("sensor", "s2");
    behind.device_info = Some(serde_json::json!({"model": "S2"}));
    behind.gateway = Some(GatewayRef {
        type_id: gw.type_id.clone(),
        device_id: gw.device_id.clone(),
    });
    let (s2, _) = org.add_device(behind.clone()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        s2.device_info,
        serde_json::json!({"manufacturer": "Acme", "model": "S2"})
    );
    behind.device_id = "s3".into();
    behind.gateway = Some(GatewayRef {
        type_id: "sensor".into(),
        device_id: "s1".into(),
    });
    assert!(matches!(org.add_device(behind), Err(RegistryError::Invalid(_))));
    assert!(matches!(org.remove_device("gw", "g1"), Err(RegistryError::InUse(_))));
    assert!(matches!(org.remove_type("sensor"), Err(RegistryError::InUse(_))));
    assert!(matches!(
        org.add_device(new("nope", "x")),
        Err(RegistryError::NotFound(_))
    ));
    assert!(matches!(
        org.add_device(new("sensor", "s1")),
        Err(RegistryError::Exists(_))
    ));
    org.remove_device("sensor", "s2").unwrap_or_else(|e| panic!("{e}"));
    org.remove_device("gw", "g1").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(org.device_count(), 1);
}

#[test]
fn the_device_quota_is_enforced() {
    let mut org = OrgData::new("acme");
    org.org.settings.quotas.max_devices = 1;
    let t = DeviceType {
        id: "t".into(),
        description: None,
        class_id: DeviceClass::Device,
        device_info: empty_object(),
        metadata: empty_object(),
        created_unix: 0,
    };
    org.add_type(t).unwrap_or_else(|e| panic!("{e}"));
    let new = |d: &str| NewDevice {
        type_id: "t".into(),
        device_id: d.into(),
        token: Some("secret-token-1".into()),
        ..NewDevice::default()
    };
    assert!(org.add_device(new("a")).is_ok());
    assert!(matches!(org.add_device(new("b")), Err(RegistryError::Quota(_))));
}
