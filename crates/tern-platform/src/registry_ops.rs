//! The registry's operations as values: what `tern iot ...` asks for, run the same way
//! against a stopped broker's data directory ([`RegistryOp::run`]) or sent to a running
//! broker's admin API ([`RegistryOp::request`], served by [`crate::registry_admin`]),
//! which runs it there. Each answers one JSON document, identical either way; tokens are
//! in it only when they were just made.

use crate::registry::{self, DeviceType, NewDevice, OrgSettings, RegistryError};
use crate::registry_model::{now_unix, DeviceClass, Role};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::path::Path;

/// A change to an organization's settings: the fields given are set, the others kept.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SettingsChange {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_plain: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_payload: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_connections: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connections_per_second: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_messages_per_second: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subscriptions_per_device: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subscriptions_per_application: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_devices: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lec: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lec_ttl_days: Option<u32>,
}

impl SettingsChange {
    /// Checks the change and applies it to `settings`.
    pub fn apply(&self, settings: &mut OrgSettings) -> Result<(), RegistryError> {
        if let Some(max) = self.max_payload {
            if !(1..=268_435_455).contains(&max) {
                return Err(RegistryError::Invalid(format!(
                    "maxPayload {max}: must be 1 to 268435455 bytes"
                )));
            }
        }
        if let Some(days) = self.lec_ttl_days {
            if !(1..=45).contains(&days) {
                return Err(RegistryError::Invalid(format!("lecTtlDays {days}: must be 1 to 45")));
            }
        }
        set(&mut settings.max_payload, self.max_payload);
        set(&mut settings.lec.ttl_days, self.lec_ttl_days);
        set(&mut settings.allow_plain, self.allow_plain);
        set(&mut settings.quotas.max_connections, self.max_connections);
        set(
            &mut settings.quotas.device_messages_per_second,
            self.device_messages_per_second,
        );
        set(&mut settings.quotas.max_devices, self.max_devices);
        set(&mut settings.quotas.connections_per_second, self.connections_per_second);
        set(
            &mut settings.quotas.subscriptions_per_device,
            self.subscriptions_per_device,
        );
        set(
            &mut settings.quotas.subscriptions_per_application,
            self.subscriptions_per_application,
        );
        set(&mut settings.lec.enabled, self.lec);
        Ok(())
    }
}

fn set<T>(field: &mut T, value: Option<T>) {
    if let Some(value) = value {
        *field = value;
    }
}

/// A new device type as the operation carries it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NewType {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// `device` or `gateway`.
    #[serde(default)]
    pub class_id: DeviceClass,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_info: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Value>,
}

/// One registry operation.
#[derive(Debug, Clone, PartialEq)]
pub enum RegistryOp {
    OrgCreate {
        org: String,
        settings: SettingsChange,
    },
    OrgList,
    OrgGet {
        org: String,
    },
    OrgSet {
        org: String,
        settings: SettingsChange,
    },
    OrgDelete {
        org: String,
    },
    TypeCreate {
        org: String,
        new: NewType,
    },
    TypeList {
        org: String,
    },
    TypeGet {
        org: String,
        type_id: String,
    },
    TypeDelete {
        org: String,
        type_id: String,
    },
    /// `device` is the REST API's device object (`typeId`, `deviceId`, `authToken`, ...).
    DeviceCreate {
        org: String,
        device: Value,
    },
    DeviceList {
        org: String,
        type_id: Option<String>,
    },
    DeviceGet {
        org: String,
        type_id: String,
        device_id: String,
    },
    DeviceDelete {
        org: String,
        type_id: String,
        device_id: String,
    },
    /// `devices`: a JSON array as `POST /bulk/devices/add` takes it.
    DeviceBulkAdd {
        org: String,
        devices: Value,
    },
    DeviceRegenerateToken {
        org: String,
        type_id: String,
        device_id: String,
        token: Option<String>,
    },
    KeyCreate {
        org: String,
        role: Role,
        description: Option<String>,
    },
    KeyList {
        org: String,
    },
    KeyRevoke {
        org: String,
        key: String,
    },
    KeyRegenerate {
        org: String,
        key: String,
    },
}

/// An HTTP request of the admin API, as [`RegistryOp::request`] makes it.
#[derive(Debug, Clone, PartialEq)]
pub struct OpRequest {
    pub method: &'static str,
    /// Under [`crate::registry_admin::PREFIX`], percent-encoded.
    pub path: String,
    pub body: Option<Value>,
}

/// Percent-encodes one path segment or query value (ids are plain; this keeps an odd one
/// from changing the path).
pub fn segment(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl RegistryOp {
    /// Runs the operation against the data directory `dir`.
    pub fn run(self, dir: &Path) -> Result<Value, RegistryError> {
        match self {
            RegistryOp::OrgCreate { org, settings } => {
                let mut initial = OrgSettings::default();
                settings.apply(&mut initial)?;
                let new = registry::create_org(dir, &org, initial)?;
                Ok(json!({ "org": org, "apiKey": new.key.key, "apiToken": new.token }))
            }
            RegistryOp::OrgList => {
                let mut all = Vec::new();
                for org in registry::list_orgs(dir)? {
                    all.push(registry::read_org(dir, &org)?.summary_json());
                }
                Ok(Value::Array(all))
            }
            RegistryOp::OrgGet { org } => Ok(registry::read_org(dir, &org)?.summary_json()),
            RegistryOp::OrgSet { org, settings } => registry::edit_org(dir, &org, |data| {
                settings.apply(&mut data.org.settings)?;
                Ok(data.summary_json())
            }),
            RegistryOp::OrgDelete { org } => {
                let old = registry::delete_org(dir, &org)?;
                Ok(json!({ "org": org, "deleted": true, "devices": old.device_count() }))
            }
            RegistryOp::TypeCreate { org, new } => type_create(dir, &org, new),
            RegistryOp::TypeList { org } => {
                let data = registry::read_org(dir, &org)?;
                Ok(data.types.values().map(DeviceType::to_api_json).collect())
            }
            RegistryOp::TypeGet { org, type_id } => {
                let data = registry::read_org(dir, &org)?;
                match data.types.get(&type_id) {
                    Some(t) => Ok(t.to_api_json()),
                    None => Err(RegistryError::NotFound(format!(
                        "no device type {type_id} in organization {org}"
                    ))),
                }
            }
            RegistryOp::TypeDelete { org, type_id } => {
                registry::edit_org(dir, &org, |data| data.remove_type(&type_id))?;
                Ok(json!({ "org": org, "typeId": type_id, "deleted": true }))
            }
            RegistryOp::KeyCreate { org, role, description } => {
                let (key, token) = registry::edit_org(dir, &org, |data| data.add_key(role, description))?;
                Ok(json!({ "org": org, "apiKey": key.key, "apiToken": token, "role": role }))
            }
            RegistryOp::KeyList { org } => {
                let data = registry::read_org(dir, &org)?;
                Ok(data.keys.values().map(|k| k.to_api_json()).collect())
            }
            RegistryOp::KeyRevoke { org, key } => {
                registry::edit_org(dir, &org, |data| data.remove_key(&key))?;
                Ok(json!({ "org": org, "apiKey": key, "revoked": true }))
            }
            RegistryOp::KeyRegenerate { org, key } => {
                let token = registry::edit_org(dir, &org, |data| data.regenerate_key_token(&key))?;
                Ok(json!({ "org": org, "apiKey": key, "apiToken": token }))
            }
            device_op => run_device(device_op, dir),
        }
    }

    /// The admin API request that runs this operation on a running broker.
    pub fn request(&self) -> OpRequest {
        let get = |path: String| OpRequest {
            method: "GET",
            path,
            body: None,
        };
        let delete = |path: String| OpRequest {
            method: "DELETE",
            path,
            body: None,
        };
        let post = |path: String, body: Value| OpRequest {
            method: "POST",
            path,
            body: Some(body),
        };
        let o = |org: &str| format!("/orgs/{}", segment(org));
        let t = |org: &str, t: &str| format!("{}/types/{}", o(org), segment(t));
        let d = |org: &str, t: &str, d: &str| format!("{}/devices/{}/{}", o(org), segment(t), segment(d));
        let k = |org: &str, k: &str| format!("{}/keys/{}", o(org), segment(k));
        match self {
            RegistryOp::OrgCreate { org, settings } => {
                let mut body = to_json(settings);
                if let Value::Object(m) = &mut body {
                    m.insert("org".into(), Value::String(org.clone()));
                }
                post("/orgs".into(), body)
            }
            RegistryOp::OrgList => get("/orgs".into()),
            RegistryOp::OrgGet { org } => get(o(org)),
            RegistryOp::OrgSet { org, settings } => OpRequest {
                method: "PATCH",
                path: o(org),
                body: Some(to_json(settings)),
            },
            RegistryOp::OrgDelete { org } => delete(o(org)),
            RegistryOp::TypeCreate { org, new } => post(format!("{}/types", o(org)), to_json(new)),
            RegistryOp::TypeList { org } => get(format!("{}/types", o(org))),
            RegistryOp::TypeGet { org, type_id } => get(t(org, type_id)),
            RegistryOp::TypeDelete { org, type_id } => delete(t(org, type_id)),
            RegistryOp::DeviceCreate { org, device } => post(format!("{}/devices", o(org)), device.clone()),
            RegistryOp::DeviceList { org, type_id: None } => get(format!("{}/devices", o(org))),
            RegistryOp::DeviceList { org, type_id: Some(t) } => {
                get(format!("{}/devices?typeId={}", o(org), segment(t)))
            }
            RegistryOp::DeviceGet {
                org,
                type_id,
                device_id,
            } => get(d(org, type_id, device_id)),
            RegistryOp::DeviceDelete {
                org,
                type_id,
                device_id,
            } => delete(d(org, type_id, device_id)),
            RegistryOp::DeviceBulkAdd { org, devices } => post(format!("{}/bulk/devices/add", o(org)), devices.clone()),
            RegistryOp::DeviceRegenerateToken {
                org,
                type_id,
                device_id,
                token,
            } => post(
                format!("{}/token", d(org, type_id, device_id)),
                json!({ "authToken": token }),
            ),
            RegistryOp::KeyCreate { org, role, description } => post(
                format!("{}/keys", o(org)),
                json!({ "role": role, "description": description }),
            ),
            RegistryOp::KeyList { org } => get(format!("{}/keys", o(org))),
            RegistryOp::KeyRevoke { org, key } => delete(k(org, key)),
            RegistryOp::KeyRegenerate { org, key } => post(format!("{}/token", k(org, key)), json!({})),
        }
    }
}

/// A request body; these types have only string keys, so serializing cannot fail.
fn to_json<T: Serialize>(value: &T) -> Value {
    serde_json::to_value(value).unwrap_or(Value::Null)
}

fn type_create(dir: &Path, org: &str, new: NewType) -> Result<Value, RegistryError> {
    for (what, value) in [("deviceInfo", &new.device_info), ("metadata", &new.metadata)] {
        if let Some(value) = value {
            crate::registry_model::check_object(what, value)?;
        }
    }
    let device_type = DeviceType {
        id: new.id,
        description: new.description,
        class_id: new.class_id,
        device_info: new.device_info.unwrap_or_else(|| json!({})),
        metadata: new.metadata.unwrap_or_else(|| json!({})),
        created_unix: now_unix(),
    };
    let value = device_type.to_api_json();
    registry::edit_org(dir, org, |data| data.add_type(device_type))?;
    Ok(value)
}

/// The device operations of [`RegistryOp::run`].
fn run_device(op: RegistryOp, dir: &Path) -> Result<Value, RegistryError> {
    match op {
        RegistryOp::DeviceCreate { org, device } => {
            let new = NewDevice::from_api_json(&device, 0)?;
            registry::edit_org(dir, &org, |data| {
                let (device, token) = data.add_device(new)?;
                let mut value = device.to_api_json(&org, data.class_of(&device.type_id));
                with_token(&mut value, &token);
                Ok(value)
            })
        }
        RegistryOp::DeviceList { org, type_id } => {
            let data = registry::read_org(dir, &org)?;
            if let Some(t) = &type_id {
                if !data.types.contains_key(t) {
                    return Err(RegistryError::NotFound(format!(
                        "no device type {t} in organization {org}"
                    )));
                }
            }
            Ok(data
                .devices
                .iter()
                .filter(|(t, _)| type_id.as_ref().is_none_or(|wanted| wanted == *t))
                .flat_map(|(t, devices)| devices.values().map(|d| d.to_api_json(&org, data.class_of(t))))
                .collect())
        }
        RegistryOp::DeviceGet {
            org,
            type_id,
            device_id,
        } => {
            let data = registry::read_org(dir, &org)?;
            match data.device(&type_id, &device_id) {
                Some(d) => Ok(d.to_api_json(&org, data.class_of(&type_id))),
                None => Err(RegistryError::NotFound(format!(
                    "no device {type_id}/{device_id} in organization {org}"
                ))),
            }
        }
        RegistryOp::DeviceDelete {
            org,
            type_id,
            device_id,
        } => {
            registry::edit_org(dir, &org, |data| data.remove_device(&type_id, &device_id))?;
            Ok(json!({ "org": org, "typeId": type_id, "deviceId": device_id, "deleted": true }))
        }
        RegistryOp::DeviceBulkAdd { org, devices } => {
            let news = NewDevice::list_from_api_json(&devices)?;
            let outcomes = registry::edit_org(dir, &org, |data| Ok(data.add_devices(news)))?;
            Ok(outcomes.iter().map(|o| o.to_api_json()).collect())
        }
        RegistryOp::DeviceRegenerateToken {
            org,
            type_id,
            device_id,
            token,
        } => registry::edit_org(dir, &org, |data| {
            let token = data.regenerate_device_token(&type_id, &device_id, token)?;
            let mut value = data
                .device(&type_id, &device_id)
                .map_or(Value::Null, |d| d.to_api_json(&org, data.class_of(&type_id)));
            with_token(&mut value, &token);
            Ok(value)
        }),
        other => Err(RegistryError::Invalid(format!("not a device operation: {other:?}"))),
    }
}

/// Adds a token just made to a device's JSON (`authToken`, the REST API's name).
fn with_token(value: &mut Value, token: &str) {
    if let Value::Object(m) = value {
        m.insert("authToken".into(), Value::String(token.to_string()));
    }
}
