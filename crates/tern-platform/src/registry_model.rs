//! The registry's records as they are stored and shown: an organization and its settings,
//! device types, devices (gateways are devices whose type has the gateway class) and
//! application API keys, with the rules their ids follow and the edits the command line
//! and the REST API make to one organization ([`OrgData`]).
//!
//! Field names are the platform's REST API names (camelCase: `typeId`, `deviceInfo`, ...),
//! so the stored file, the command line's `--json` and the REST API speak alike. Secrets
//! never appear here in clear: a record keeps the PBKDF2 hash of its token.

use crate::registry::RegistryError;
use crate::token;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// The organization name reserved for the platform's open, unauthenticated mode.
pub const QUICKSTART: &str = "quickstart";
/// Longest id of anything in the registry.
pub const MAX_ID_LEN: usize = 36;
/// The default payload limit of an organization (the platform's 128 KiB).
pub const DEFAULT_MAX_PAYLOAD: u32 = 131_072;
/// Length of the random part of an API key (`a-<org>-<10 chars>`).
pub const KEY_SUFFIX_LEN: usize = 10;

/// Checks an organization id: 1 to 36 of `a-z 0-9`.
pub fn check_org_id(id: &str) -> Result<(), RegistryError> {
    let ok = (1..=MAX_ID_LEN).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    ok.then_some(()).ok_or_else(|| RegistryError::BadId {
        what: "organization id",
        value: id.to_string(),
        rule: "1 to 36 characters of a-z and 0-9",
    })
}

/// Checks a device type, device or application id: 1 to 36 of `A-Z a-z 0-9 . _ -`.
pub fn check_id(what: &'static str, id: &str) -> Result<(), RegistryError> {
    let ok = (1..=MAX_ID_LEN).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    ok.then_some(()).ok_or_else(|| RegistryError::BadId {
        what,
        value: id.to_string(),
        rule: "1 to 36 characters of A-Z, a-z, 0-9, '.', '_' and '-'",
    })
}

/// The organization an API key `a-<org>-<random>` names, as the platform's SDKs read it.
pub fn org_of_key(key: &str) -> Option<&str> {
    let rest = key.strip_prefix("a-")?;
    let (org, suffix) = rest.split_once('-')?;
    (check_org_id(org).is_ok() && !suffix.is_empty()).then_some(org)
}

/// Seconds since the Unix epoch, now.
pub fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// `2016-03-14T14:12:06.000+0000`, the platform's timestamp form, for Unix seconds.
pub fn iso8601(unix: u64) -> String {
    let days = (unix / 86_400) as i64;
    let secs = unix % 86_400;
    // Civil date from days since 1970-01-01 (proleptic Gregorian calendar).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.000+0000",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

/// Per-organization limits. Defaults are the platform's Standard plan where it has one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Quotas {
    /// Connections of the organization's devices and applications at once (default 10000).
    pub max_connections: u32,
    /// New connections accepted per second for the organization (default 300).
    pub connections_per_second: u32,
    /// Messages a device may publish per second (default 10).
    pub device_messages_per_second: u32,
    /// Devices (gateways included) the registry holds at most (default 1000000).
    pub max_devices: u32,
    /// Subscriptions per device connection (default 50).
    pub subscriptions_per_device: u32,
    /// Subscriptions per application connection (default 500).
    pub subscriptions_per_application: u32,
}

impl Default for Quotas {
    fn default() -> Quotas {
        Quotas {
            max_connections: 10_000,
            connections_per_second: 300,
            device_messages_per_second: 10,
            max_devices: 1_000_000,
            subscriptions_per_device: 50,
            subscriptions_per_application: 500,
        }
    }
}

/// The last event cache's settings (`GET|PUT /api/v0002/config/lec`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct LecSettings {
    /// Off by default, as on the platform.
    pub enabled: bool,
    /// How long a cached event is kept, 1 to 45 days (default 7).
    pub ttl_days: u32,
}

impl Default for LecSettings {
    fn default() -> LecSettings {
        LecSettings {
            enabled: false,
            ttl_days: 7,
        }
    }
}

/// An organization's settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct OrgSettings {
    /// Whether devices and applications may connect without TLS (default false).
    pub allow_plain: bool,
    /// Largest PUBLISH payload in bytes (default 131072).
    pub max_payload: u32,
    pub quotas: Quotas,
    pub lec: LecSettings,
}

impl Default for OrgSettings {
    fn default() -> OrgSettings {
        OrgSettings {
            allow_plain: false,
            max_payload: DEFAULT_MAX_PAYLOAD,
            quotas: Quotas::default(),
            lec: LecSettings::default(),
        }
    }
}

/// An organization: a tenant with its own registry, topic space, quotas and keys.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Organization {
    pub id: String,
    pub created_unix: u64,
    #[serde(default)]
    pub settings: OrgSettings,
}

/// Whether a device type's devices are plain devices or gateways (the REST API's
/// `classId`: "Device" or "Gateway").
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum DeviceClass {
    #[default]
    Device,
    Gateway,
}

impl std::str::FromStr for DeviceClass {
    type Err = RegistryError;
    fn from_str(s: &str) -> Result<DeviceClass, RegistryError> {
        match s.to_ascii_lowercase().as_str() {
            "device" => Ok(DeviceClass::Device),
            "gateway" => Ok(DeviceClass::Gateway),
            _ => Err(RegistryError::Invalid(format!(
                "unknown class {s:?} (expected device or gateway)"
            ))),
        }
    }
}

/// A device type.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeviceType {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default)]
    pub class_id: DeviceClass,
    /// Default deviceInfo of the type's devices (a JSON object).
    #[serde(default = "empty_object")]
    pub device_info: Value,
    #[serde(default = "empty_object")]
    pub metadata: Value,
    pub created_unix: u64,
}

/// A gateway a device sits behind.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GatewayRef {
    pub type_id: String,
    pub device_id: String,
}

/// A device (or gateway) of the registry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Device {
    pub type_id: String,
    pub device_id: String,
    #[serde(default = "empty_object")]
    pub device_info: Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<Value>,
    #[serde(default = "empty_object")]
    pub metadata: Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<GatewayRef>,
    /// PBKDF2 hash of the device's token (`$7$...`).
    pub token_hash: String,
    pub created_unix: u64,
}

/// What an application API key may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// Publish and subscribe events and commands, read the registry (the default).
    StandardApp,
    /// Subscribe and read only.
    ReadOnly,
    /// Manage devices in the registry and send commands.
    DeviceOperator,
    /// Everything, the organization's settings and keys included.
    Admin,
}

impl Role {
    pub const NAMES: &'static str = "standard-app, read-only, device-operator, admin";

    pub fn name(self) -> &'static str {
        match self {
            Role::StandardApp => "standard-app",
            Role::ReadOnly => "read-only",
            Role::DeviceOperator => "device-operator",
            Role::Admin => "admin",
        }
    }
}

impl std::str::FromStr for Role {
    type Err = RegistryError;
    fn from_str(s: &str) -> Result<Role, RegistryError> {
        match s.to_ascii_lowercase().replace('_', "-").as_str() {
            "standard-app" | "standard" => Ok(Role::StandardApp),
            "read-only" | "reader" => Ok(Role::ReadOnly),
            "device-operator" | "operator" => Ok(Role::DeviceOperator),
            "admin" => Ok(Role::Admin),
            _ => Err(RegistryError::Invalid(format!(
                "unknown role {s:?} (expected one of {})",
                Role::NAMES
            ))),
        }
    }
}

/// An application API key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApiKey {
    /// `a-<org>-<10 random characters>`.
    pub key: String,
    pub role: Role,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// PBKDF2 hash of the key's token.
    pub token_hash: String,
    pub created_unix: u64,
}

impl DeviceType {
    /// The type as the REST API shows it (`id`, `classId`, `createdDateTime`, ...).
    pub fn to_api_json(&self) -> Value {
        let mut v = serde_json::json!({
            "id": self.id,
            "classId": self.class_id,
            "deviceInfo": self.device_info,
            "metadata": self.metadata,
            "createdDateTime": iso8601(self.created_unix),
        });
        if let (Some(d), Value::Object(m)) = (&self.description, &mut v) {
            m.insert("description".into(), Value::String(d.clone()));
        }
        v
    }
}

impl Device {
    /// The client id this device connects with: `d:` (or `g:` for a gateway).
    pub fn client_id(&self, org: &str, class: DeviceClass) -> String {
        let prefix = match class {
            DeviceClass::Device => 'd',
            DeviceClass::Gateway => 'g',
        };
        format!("{prefix}:{org}:{}:{}", self.type_id, self.device_id)
    }

    /// The device as the REST API shows it; never its token or hash.
    pub fn to_api_json(&self, org: &str, class: DeviceClass) -> Value {
        let mut v = serde_json::json!({
            "clientId": self.client_id(org, class),
            "typeId": self.type_id,
            "deviceId": self.device_id,
            "deviceInfo": self.device_info,
            "metadata": self.metadata,
            "registration": { "date": iso8601(self.created_unix) },
        });
        if let Value::Object(m) = &mut v {
            if let Some(location) = &self.location {
                m.insert("location".into(), location.clone());
            }
            if let Some(g) = &self.gateway {
                m.insert(
                    "gateway".into(),
                    serde_json::json!({ "typeId": g.type_id, "deviceId": g.device_id }),
                );
            }
        }
        v
    }
}

impl ApiKey {
    /// The key as listed: name, role, description, creation time; never its token.
    pub fn to_api_json(&self) -> Value {
        let mut v = serde_json::json!({
            "apiKey": self.key,
            "role": self.role,
            "created": iso8601(self.created_unix),
        });
        if let (Some(d), Value::Object(m)) = (&self.description, &mut v) {
            m.insert("description".into(), Value::String(d.clone()));
        }
        v
    }
}

impl OrgData {
    /// The class of type `type_id`'s devices (plain device if the type is unknown).
    pub fn class_of(&self, type_id: &str) -> DeviceClass {
        self.types.get(type_id).map_or(DeviceClass::Device, |t| t.class_id)
    }

    /// The organization as listed: id, creation time, settings and counts.
    pub fn summary_json(&self) -> Value {
        serde_json::json!({
            "org": self.org.id,
            "created": iso8601(self.org.created_unix),
            "settings": self.org.settings,
            "deviceTypes": self.types.len(),
            "devices": self.device_count(),
            "apiKeys": self.keys.len(),
        })
    }
}

fn empty_object() -> Value {
    Value::Object(Map::new())
}

/// Checks that `value` (given as `what`) is a JSON object.
pub fn check_object(what: &str, value: &Value) -> Result<(), RegistryError> {
    match value {
        Value::Object(_) => Ok(()),
        _ => Err(RegistryError::Invalid(format!("{what} must be a JSON object"))),
    }
}

/// What a new device is made of; `token: None` generates one.
#[derive(Debug, Clone, Default)]
pub struct NewDevice {
    pub type_id: String,
    pub device_id: String,
    pub token: Option<String>,
    pub device_info: Option<Value>,
    pub location: Option<Value>,
    pub metadata: Option<Value>,
    pub gateway: Option<GatewayRef>,
}

/// Everything the registry holds for one organization: the content of its file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrgData {
    /// Format version of the file.
    pub version: u32,
    pub org: Organization,
    #[serde(default)]
    pub types: BTreeMap<String, DeviceType>,
    /// Devices by type id, then device id.
    #[serde(default)]
    pub devices: BTreeMap<String, BTreeMap<String, Device>>,
    #[serde(default)]
    pub keys: BTreeMap<String, ApiKey>,
}

/// The file format version this code writes.
pub const FORMAT_VERSION: u32 = 1;

impl OrgData {
    /// A new, empty organization `id`.
    pub fn new(id: &str) -> OrgData {
        OrgData {
            version: FORMAT_VERSION,
            org: Organization {
                id: id.to_string(),
                created_unix: now_unix(),
                settings: OrgSettings::default(),
            },
            types: BTreeMap::new(),
            devices: BTreeMap::new(),
            keys: BTreeMap::new(),
        }
    }

    pub fn id(&self) -> &str {
        &self.org.id
    }

    /// Number of devices (gateways included).
    pub fn device_count(&self) -> usize {
        self.devices.values().map(BTreeMap::len).sum()
    }

    pub fn device(&self, type_id: &str, device_id: &str) -> Option<&Device> {
        self.devices.get(type_id)?.get(device_id)
    }

    /// Adds a device type.
    pub fn add_type(&mut self, device_type: DeviceType) -> Result<(), RegistryError> {
        check_id("device type id", &device_type.id)?;
        check_object("deviceInfo", &device_type.device_info)?;
        check_object("metadata", &device_type.metadata)?;
        if self.types.contains_key(&device_type.id) {
            return Err(RegistryError::Exists(format!(
                "device type {} already exists in organization {}",
                device_type.id,
                self.id()
            )));
        }
        self.types.insert(device_type.id.clone(), device_type);
        Ok(())
    }

    /// Removes a device type that has no devices left.
    pub fn remove_type(&mut self, type_id: &str) -> Result<DeviceType, RegistryError> {
        let count = self.devices.get(type_id).map_or(0, BTreeMap::len);
        if count > 0 {
            return Err(RegistryError::InUse(format!(
                "device type {type_id} still has {count} device(s); delete them first"
            )));
        }
        self.devices.remove(type_id);
        self.types.remove(type_id).ok_or_else(|| self.no_type(type_id))
    }

    fn no_type(&self, type_id: &str) -> RegistryError {
        RegistryError::NotFound(format!("no device type {type_id} in organization {}", self.id()))
    }

    fn no_device(&self, type_id: &str, device_id: &str) -> RegistryError {
        RegistryError::NotFound(format!("no device {type_id}/{device_id} in organization {}", self.id()))
    }

    /// Adds a device and returns its token (generated unless given), shown only now.
    pub fn add_device(&mut self, new: NewDevice) -> Result<(Device, String), RegistryError> {
        check_id("device id", &new.device_id)?;
        let device_type = self.types.get(&new.type_id).ok_or_else(|| self.no_type(&new.type_id))?;
        if self.device(&new.type_id, &new.device_id).is_some() {
            return Err(RegistryError::Exists(format!(
                "device {}/{} already exists in organization {}",
                new.type_id,
                new.device_id,
                self.id()
            )));
        }
        let max = self.org.settings.quotas.max_devices as usize;
        if self.device_count() >= max {
            return Err(RegistryError::Quota(format!(
                "organization {} holds its maximum of {max} devices",
                self.id()
            )));
        }
        // The type's deviceInfo gives defaults the device's own fields override.
        let mut device_info = device_type.device_info.clone();
        if let Some(given) = &new.device_info {
            check_object("deviceInfo", given)?;
            if let (Value::Object(base), Value::Object(given)) = (&mut device_info, given) {
                base.extend(given.clone());
            }
        }
        let metadata = new.metadata.unwrap_or_else(empty_object);
        check_object("metadata", &metadata)?;
        if let Some(location) = &new.location {
            check_object("location", location)?;
        }
        if let Some(gateway) = &new.gateway {
            self.check_gateway(gateway)?;
        }
        let token = match new.token {
            Some(token) => {
                token::check_token(&token)?;
                token
            }
            None => token::generate_token()?,
        };
        let device = Device {
            type_id: new.type_id,
            device_id: new.device_id,
            device_info,
            location: new.location,
            metadata,
            gateway: new.gateway,
            token_hash: token::hash_token(&token)?,
            created_unix: now_unix(),
        };
        self.devices
            .entry(device.type_id.clone())
            .or_default()
            .insert(device.device_id.clone(), device.clone());
        Ok((device, token))
    }

    fn check_gateway(&self, gateway: &GatewayRef) -> Result<(), RegistryError> {
        if self.device(&gateway.type_id, &gateway.device_id).is_none() {
            return Err(RegistryError::NotFound(format!(
                "no gateway {}/{} in organization {}",
                gateway.type_id,
                gateway.device_id,
                self.id()
            )));
        }
        match self.types.get(&gateway.type_id).map(|t| t.class_id) {
            Some(DeviceClass::Gateway) => Ok(()),
            _ => Err(RegistryError::Invalid(format!(
                "{}/{} is not a gateway: its type's class is device",
                gateway.type_id, gateway.device_id
            ))),
        }
    }

    /// Removes a device; a gateway with devices behind it stays.
    pub fn remove_device(&mut self, type_id: &str, device_id: &str) -> Result<Device, RegistryError> {
        let behind = self
            .devices
            .values()
            .flat_map(BTreeMap::values)
            .filter(|d| {
                d.gateway
                    .as_ref()
                    .is_some_and(|g| g.type_id == type_id && g.device_id == device_id)
            })
            .count();
        if behind > 0 {
            return Err(RegistryError::InUse(format!(
                "gateway {type_id}/{device_id} has {behind} device(s) behind it; delete or move them first"
            )));
        }
        let missing = self.no_device(type_id, device_id);
        let devices = self.devices.get_mut(type_id).ok_or(missing)?;
        let missing = || RegistryError::NotFound(format!("no device {type_id}/{device_id}"));
        let device = devices.remove(device_id).ok_or_else(missing)?;
        if devices.is_empty() {
            self.devices.remove(type_id);
        }
        Ok(device)
    }

    /// Gives a device a new token (generated unless given) and returns it; the old one
    /// stops working.
    pub fn regenerate_device_token(
        &mut self,
        type_id: &str,
        device_id: &str,
        token: Option<String>,
    ) -> Result<String, RegistryError> {
        let missing = self.no_device(type_id, device_id);
        let device = self
            .devices
            .get_mut(type_id)
            .and_then(|d| d.get_mut(device_id))
            .ok_or(missing)?;
        let token = match token {
            Some(token) => {
                token::check_token(&token)?;
                token
            }
            None => token::generate_token()?,
        };
        device.token_hash = token::hash_token(&token)?;
        Ok(token)
    }

    /// Adds an API key with a fresh random name and token; returns both (the token is
    /// shown only now).
    pub fn add_key(&mut self, role: Role, description: Option<String>) -> Result<(ApiKey, String), RegistryError> {
        let key = loop {
            let key = format!("a-{}-{}", self.id(), token::random_key_suffix()?);
            if !self.keys.contains_key(&key) {
                break key;
            }
        };
        let token = token::generate_token()?;
        let record = ApiKey {
            key: key.clone(),
            role,
            description,
            token_hash: token::hash_token(&token)?,
            created_unix: now_unix(),
        };
        self.keys.insert(key, record.clone());
        Ok((record, token))
    }

    fn no_key(&self, key: &str) -> RegistryError {
        RegistryError::NotFound(format!("no API key {key} in organization {}", self.id()))
    }

    /// Revokes an API key.
    pub fn remove_key(&mut self, key: &str) -> Result<ApiKey, RegistryError> {
        let missing = self.no_key(key);
        self.keys.remove(key).ok_or(missing)
    }

    /// Gives an API key a new token and returns it; the old one stops working.
    pub fn regenerate_key_token(&mut self, key: &str) -> Result<String, RegistryError> {
        let missing = self.no_key(key);
        let record = self.keys.get_mut(key).ok_or(missing)?;
        let token = token::generate_token()?;
        record.token_hash = token::hash_token(&token)?;
        Ok(token)
    }
}

#[cfg(test)]
#[path = "registry_model_tests.rs"]
mod tests;
