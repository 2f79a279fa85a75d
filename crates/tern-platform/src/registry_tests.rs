//! Unit tests of the registry: commands' edits seen by a running broker's [`Registry`],
//! token checks, regeneration, reloads and damaged files.

use super::*;
use crate::registry_model::{DeviceClass, DeviceType};

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tern-registry-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn ok<T>(r: Result<T, RegistryError>) -> T {
    r.unwrap_or_else(|e| panic!("{e}"))
}

fn sensor_type() -> DeviceType {
    DeviceType {
        id: "sensor".into(),
        description: Some("a sensor".into()),
        class_id: DeviceClass::Device,
        device_info: serde_json::json!({}),
        metadata: serde_json::json!({}),
        created_unix: 0,
    }
}

fn add_sensor(dir: &Path, id: &str) -> String {
    ok(edit_org(dir, "acme", |o| {
        o.add_device(NewDevice {
            type_id: "sensor".into(),
            device_id: id.into(),
            ..NewDevice::default()
        })
    }))
    .1
}

#[test]
fn a_running_registry_sees_orgs_devices_and_keys_that_commands_add_and_remove() {
    let dir = temp_dir("reload");
    let registry = ok(Registry::open(&dir));
    assert!(registry.orgs().is_empty());
    let admin = ok(create_org(&dir, "acme", OrgSettings::default()));
    assert!(matches!(
        create_org(&dir, "acme", OrgSettings::default()),
        Err(RegistryError::Exists(_))
    ));
    ok(edit_org(&dir, "acme", |o| o.add_type(sensor_type())));
    let token = add_sensor(&dir, "s1");
    let reload = registry.reload_if_changed();
    assert_eq!(reload.changed, vec!["acme".to_string()]);
    assert!(registry.reload_if_changed().changed.is_empty(), "nothing changed since");
    assert_eq!(registry.orgs(), vec!["acme".to_string()]);
    assert!(registry.device("acme", "sensor", "s1").is_some());
    assert_eq!(
        registry.device_type("acme", "sensor").map(|t| t.class_id),
        Some(DeviceClass::Device)
    );
    let verified = registry.verify_device_token("acme", "sensor", "s1", token.as_bytes());
    assert!(matches!(verified, Ok((_, DeviceClass::Device))));
    assert_eq!(
        registry
            .verify_key_token(&admin.key.key, admin.token.as_bytes())
            .map(|k| k.role),
        Ok(Role::Admin)
    );
    assert_eq!(
        registry.verify_key_token(&admin.key.key, b"wrong").err(),
        Some(AuthRefusal::WrongToken)
    );
    assert_eq!(
        registry
            .verify_device_token("other", "sensor", "s1", token.as_bytes())
            .err(),
        Some(AuthRefusal::UnknownOrg)
    );
    assert_eq!(
        registry
            .verify_device_token("acme", "sensor", "s2", token.as_bytes())
            .err(),
        Some(AuthRefusal::UnknownIdentity)
    );
    ok(edit_org(&dir, "acme", |o| o.remove_device("sensor", "s1")));
    registry.reload_if_changed();
    assert!(registry.device("acme", "sensor", "s1").is_none());
    ok(delete_org(&dir, "acme"));
    assert_eq!(registry.reload_if_changed().changed, vec!["acme".to_string()]);
    assert!(registry.org("acme").is_none());
    assert!(registry.app_key(&admin.key.key).is_none());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_regenerated_token_locks_the_old_one_out_and_unchanged_records_keep_their_cache() {
    let dir = temp_dir("regenerate");
    let admin = ok(create_org(&dir, "acme", OrgSettings::default()));
    ok(edit_org(&dir, "acme", |o| o.add_type(sensor_type())));
    let old = add_sensor(&dir, "s1");
    let registry = ok(Registry::open(&dir));
    assert!(registry
        .verify_device_token("acme", "sensor", "s1", old.as_bytes())
        .is_ok());
    assert!(registry
        .verify_key_token(&admin.key.key, admin.token.as_bytes())
        .is_ok());
    let new = ok(edit_org(&dir, "acme", |o| {
        o.regenerate_device_token("sensor", "s1", None)
    }));
    assert_ne!(old, new);
    // Another device added at the same time: the key's record is unchanged and keeps the
    // token it has accepted, so it is checked without PBKDF2 even with no budget left.
    add_sensor(&dir, "s2");
    registry.reload_if_changed();
    registry.set_pbkdf2_per_second(0);
    assert!(registry
        .verify_key_token(&admin.key.key, admin.token.as_bytes())
        .is_ok());
    assert_eq!(
        registry
            .verify_device_token("acme", "sensor", "s1", new.as_bytes())
            .err(),
        Some(AuthRefusal::Throttled)
    );
    registry.set_pbkdf2_per_second(100);
    assert_eq!(
        registry
            .verify_device_token("acme", "sensor", "s1", old.as_bytes())
            .err(),
        Some(AuthRefusal::WrongToken)
    );
    assert!(registry
        .verify_device_token("acme", "sensor", "s1", new.as_bytes())
        .is_ok());
    let new_key_token = ok(edit_org(&dir, "acme", |o| o.regenerate_key_token(&admin.key.key)));
    registry.reload_if_changed();
    assert_eq!(
        registry.verify_key_token(&admin.key.key, admin.token.as_bytes()).err(),
        Some(AuthRefusal::WrongToken)
    );
    assert!(registry
        .verify_key_token(&admin.key.key, new_key_token.as_bytes())
        .is_ok());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_damaged_file_fails_open_and_leaves_a_running_registry_as_it_was() {
    let dir = temp_dir("damaged");
    ok(create_org(&dir, "acme", OrgSettings::default()));
    ok(create_org(&dir, "beta", OrgSettings::default()));
    let registry = ok(Registry::open(&dir));
    let path = store::org_file(&dir, "acme");
    std::fs::write(&path, b"{\"version\": 1, \"org\": {\"id\": \"acme\"").unwrap_or_else(|e| panic!("{e}"));
    let reload = registry.reload_if_changed();
    assert_eq!(reload.errors.len(), 1);
    let message = reload.errors[0].to_string();
    assert!(
        message.contains(&path.display().to_string()) && message.contains("damaged"),
        "{message}"
    );
    assert!(registry.org("acme").is_some(), "the previous version stays in force");
    assert!(
        registry.reload_if_changed().errors.is_empty(),
        "reported once per change"
    );
    let e = Registry::open(&dir).err().map(|e| e.to_string()).unwrap_or_default();
    assert!(e.contains(&path.display().to_string()), "{e}");
    // A broker that starts despite it gets the other organizations and the error.
    let lenient = Registry::empty(&dir);
    let reload = lenient.reload_if_changed();
    assert_eq!(reload.changed, vec!["beta".to_string()]);
    assert_eq!(reload.errors.len(), 1);
    // A token hash that is not one is named with its record.
    let mut data = ok(read_org(&dir, "beta"));
    if let Some(key) = data.keys.values_mut().next() {
        key.token_hash = "plain".into();
    }
    let text = serde_json::to_string(&data).unwrap_or_default();
    let beta = store::org_file(&dir, "beta");
    std::fs::write(&beta, text).unwrap_or_else(|e| panic!("{e}"));
    let e = ok_err(read_org(&dir, "beta"));
    assert!(e.contains("API key a-beta-") && e.contains("tokenHash"), "{e}");
    let _ = std::fs::remove_dir_all(&dir);
}

fn ok_err<T: std::fmt::Debug>(r: Result<T, RegistryError>) -> String {
    match r {
        Ok(v) => panic!("expected an error, got {v:?}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn quickstart_and_bad_org_ids_are_refused_by_name() {
    let dir = temp_dir("names");
    let e = ok_err(create_org(&dir, "quickstart", OrgSettings::default()));
    assert!(e.contains("reserved"), "{e}");
    let e = ok_err(create_org(&dir, "Acme", OrgSettings::default()));
    assert!(e.contains("organization id") && e.contains("a-z"), "{e}");
    let e = ok_err(edit_org(&dir, "nope", |_| Ok(())));
    assert!(e.contains("no organization nope"), "{e}");
    // An edit that would leave a file nobody can read is not written.
    ok(create_org(&dir, "acme", OrgSettings::default()));
    let e = ok_err(edit_org(&dir, "acme", |o| {
        o.org.id = "other".into();
        Ok(())
    }));
    assert!(e.contains("cannot be renamed"), "{e}");
    let e = ok_err(edit_org(&dir, "acme", |o| {
        if let Some(key) = o.keys.values_mut().next() {
            key.token_hash = "clear-text".into();
        }
        Ok(())
    }));
    assert!(e.contains("tokenHash"), "{e}");
    assert!(Registry::open(&dir).is_ok());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn concurrent_edits_of_one_org_are_all_kept() {
    let dir = temp_dir("concurrent");
    ok(create_org(&dir, "acme", OrgSettings::default()));
    ok(edit_org(&dir, "acme", |o| o.add_type(sensor_type())));
    let threads: Vec<_> = (0..8)
        .map(|i| {
            let dir = dir.clone();
            std::thread::spawn(move || add_sensor(&dir, &format!("d{i}")))
        })
        .collect();
    for t in threads {
        let _ = t.join();
    }
    assert_eq!(ok(read_org(&dir, "acme")).device_count(), 8);
    let _ = std::fs::remove_dir_all(&dir);
}
