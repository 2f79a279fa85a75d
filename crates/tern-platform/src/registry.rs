//! The platform registry: organizations, device types, devices, gateways and application
//! API keys, kept per organization in the broker's data directory (`platform/orgs/`).
//!
//! Two sides use it. Commands (`tern iot ...`, later the REST API) change it with
//! [`create_org`], [`edit_org`] and [`delete_org`], which read, change and rewrite one
//! organization's file under that organization's lock. A running broker holds a
//! [`Registry`]: the files as last read, looked up without touching the disk, with
//! [`Registry::reload_if_changed`] to be called every [`POLL_INTERVAL`] so that changes
//! made by commands are in force within a second, and token checks that cost one SHA-256
//! once a token has been accepted (see the `token` module).

use crate::registry_model::{check_org_id, org_of_key, OrgData, Role, QUICKSTART};
use crate::registry_store::{self as store, Edit, Stamp};
use crate::token::{self, Pbkdf2Budget, TokenCheck, TokenRefusal};
use parking_lot::{Mutex, RwLock};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

pub use crate::registry_model::{
    ApiKey, Device, DeviceClass, DeviceType, GatewayRef, LecSettings, NewDevice, OrgSettings, Organization, Quotas,
};

/// How often a running broker should call [`Registry::reload_if_changed`].
pub const POLL_INTERVAL: Duration = Duration::from_millis(400);

/// Why the registry, or a change to it, cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// An id that breaks its rule.
    #[error("bad {what} {value:?}: it must be {rule}")]
    BadId {
        what: &'static str,
        value: String,
        rule: &'static str,
    },
    /// Bad input other than an id (a token, a JSON field, a role).
    #[error("{0}")]
    Invalid(String),
    /// No such organization, type, device or key.
    #[error("{0}")]
    NotFound(String),
    /// It exists already.
    #[error("{0}")]
    Exists(String),
    /// Cannot be removed while something refers to it.
    #[error("{0}")]
    InUse(String),
    /// An organization's quota is reached.
    #[error("{0}")]
    Quota(String),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A registry file that cannot be read as one.
    #[error("{path} is damaged: {what}")]
    Damaged { path: PathBuf, what: String },
    #[error("cannot generate random bytes: {0}")]
    Random(String),
}

/// Checks what JSON parsing cannot: ids, keys that match their records, token hashes,
/// gateway references. The error says which record is wrong.
pub(crate) fn validate(data: &OrgData) -> Result<(), String> {
    let org = data.id();
    check_org_id(org).map_err(|e| e.to_string())?;
    for (id, t) in &data.types {
        if *id != t.id {
            return Err(format!("device type {id:?} holds id {:?}", t.id));
        }
        crate::registry_model::check_id("device type id", id).map_err(|e| e.to_string())?;
    }
    for (type_id, devices) in &data.devices {
        if !data.types.contains_key(type_id) {
            return Err(format!("devices of type {type_id:?}, which is not in the file"));
        }
        for (id, d) in devices {
            let what = format!("device {type_id}/{id}");
            if d.device_id != *id || d.type_id != *type_id {
                return Err(format!("{what} holds {}/{}", d.type_id, d.device_id));
            }
            crate::registry_model::check_id("device id", id).map_err(|e| e.to_string())?;
            token::parse_hash(&d.token_hash, &what)?;
            if let Some(g) = &d.gateway {
                if data.device(&g.type_id, &g.device_id).is_none() {
                    return Err(format!(
                        "{what} is behind gateway {}/{}, which is not in the file",
                        g.type_id, g.device_id
                    ));
                }
            }
        }
    }
    for (id, k) in &data.keys {
        if k.key != *id || org_of_key(id) != Some(org) {
            return Err(format!("API key {id:?} does not belong here (a-{org}-...)"));
        }
        token::parse_hash(&k.token_hash, &format!("API key {id}"))?;
    }
    Ok(())
}

/// The organization ids in `data_dir`, sorted.
pub fn list_orgs(data_dir: &Path) -> Result<Vec<String>, RegistryError> {
    store::list_orgs(data_dir)
}

/// Checks that `text` is a registry file of organization `org` that a broker can load (for
/// a version that comes from another node of a cluster); the error says what is wrong.
pub fn check_org_file(org: &str, text: &[u8]) -> Result<(), RegistryError> {
    check_org_id(org)?;
    store::parse_org(text, Path::new(&format!("{org}.json")), org).map(|_| ())
}

/// Organization `org` as stored in `data_dir`.
pub fn read_org(data_dir: &Path, org: &str) -> Result<OrgData, RegistryError> {
    store::read_org(data_dir, org)?.ok_or_else(|| no_org(org))
}

fn no_org(org: &str) -> RegistryError {
    RegistryError::NotFound(format!("no organization {org}"))
}

/// A key just made: its record and its token, which is shown only now.
#[derive(Debug, Clone)]
pub struct NewKey {
    pub key: ApiKey,
    pub token: String,
}

/// Creates organization `org` with `settings` and its first API key (role admin).
pub fn create_org(data_dir: &Path, org: &str, settings: OrgSettings) -> Result<NewKey, RegistryError> {
    check_org_id(org)?;
    if org == QUICKSTART {
        return Err(RegistryError::Invalid(format!(
            "{QUICKSTART} is reserved for the platform's open mode, which configuration enables"
        )));
    }
    store::update_org(data_dir, org, |data| {
        if data.is_some() {
            return Err(RegistryError::Exists(format!("organization {org} already exists")));
        }
        let mut new = OrgData::new(org);
        new.org.settings = settings;
        let (key, token) = new.add_key(Role::Admin, Some("first admin key".to_string()))?;
        *data = Some(new);
        Ok(Edit::Write(NewKey { key, token }))
    })
}

/// Deletes organization `org` with everything in it; returns what it held.
pub fn delete_org(data_dir: &Path, org: &str) -> Result<OrgData, RegistryError> {
    store::update_org(data_dir, org, |data| {
        let old = data.take().ok_or_else(|| no_org(org))?;
        Ok(Edit::Remove(old))
    })
}

/// Changes organization `org` with `change` and saves it, under the organization's lock;
/// nothing is saved if `change` fails.
pub fn edit_org<T>(
    data_dir: &Path,
    org: &str,
    change: impl FnOnce(&mut OrgData) -> Result<T, RegistryError>,
) -> Result<T, RegistryError> {
    store::update_org(data_dir, org, |data| {
        let data = data.as_mut().ok_or_else(|| no_org(org))?;
        change(data).map(Edit::Write)
    })
}

/// Why a token check failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthRefusal {
    /// No such organization.
    UnknownOrg,
    /// No such device, gateway or API key in the organization.
    UnknownIdentity,
    /// The token is wrong.
    WrongToken,
    /// Not checked now: too many first-time token verifications this second.
    Throttled,
}

/// A device as a running broker holds it, with its token check.
#[derive(Debug)]
struct DeviceEntry {
    device: Arc<Device>,
    token: TokenCheck,
}

/// An API key as a running broker holds it, with its token check.
#[derive(Debug)]
struct KeyEntry {
    key: Arc<ApiKey>,
    token: TokenCheck,
}

/// One organization as a running broker holds it.
#[derive(Debug)]
struct OrgView {
    org: Arc<Organization>,
    types: HashMap<String, Arc<DeviceType>>,
    devices: HashMap<String, HashMap<String, Arc<DeviceEntry>>>,
    keys: HashMap<String, Arc<KeyEntry>>,
}

impl OrgView {
    /// The view of `data`; records unchanged since `old` keep their entry, and with it the
    /// token they have accepted.
    fn build(data: OrgData, old: Option<&OrgView>) -> Result<OrgView, String> {
        let mut devices: HashMap<String, HashMap<String, Arc<DeviceEntry>>> = HashMap::new();
        for (type_id, of_type) in data.devices {
            let mut entries = HashMap::with_capacity(of_type.len());
            for (id, device) in of_type {
                let kept = old
                    .and_then(|o| o.devices.get(&type_id)?.get(&id))
                    .filter(|e| *e.device == device)
                    .cloned();
                let entry = match kept {
                    Some(entry) => entry,
                    None => {
                        let hash = token::parse_hash(&device.token_hash, &format!("device {type_id}/{id}"))?;
                        Arc::new(DeviceEntry {
                            device: Arc::new(device),
                            token: TokenCheck::new(hash),
                        })
                    }
                };
                entries.insert(id, entry);
            }
            devices.insert(type_id, entries);
        }
        let mut keys = HashMap::with_capacity(data.keys.len());
        for (id, key) in data.keys {
            let kept = old.and_then(|o| o.keys.get(&id)).filter(|e| *e.key == key).cloned();
            let entry = match kept {
                Some(entry) => entry,
                None => {
                    let hash = token::parse_hash(&key.token_hash, &format!("API key {id}"))?;
                    Arc::new(KeyEntry {
                        key: Arc::new(key),
                        token: TokenCheck::new(hash),
                    })
                }
            };
            keys.insert(id, entry);
        }
        Ok(OrgView {
            org: Arc::new(data.org),
            types: data.types.into_iter().map(|(k, v)| (k, Arc::new(v))).collect(),
            devices,
            keys,
        })
    }
}

/// What [`Registry::reload_if_changed`] did.
#[derive(Debug, Default)]
pub struct Reload {
    /// Organizations read again, added or removed.
    pub changed: Vec<String>,
    /// Files that could not be read; their organizations stay as they were.
    pub errors: Vec<RegistryError>,
}

/// The registry as a running broker holds it.
#[derive(Debug)]
pub struct Registry {
    data_dir: PathBuf,
    orgs: RwLock<Arc<HashMap<String, Arc<OrgView>>>>,
    /// Each organization's file as last looked at.
    stamps: Mutex<HashMap<String, Option<Stamp>>>,
    budget: Pbkdf2Budget,
}

impl Registry {
    /// Reads every organization of `data_dir`; fails on the first file that cannot be
    /// read, naming it. A missing registry directory is an empty registry.
    pub fn open(data_dir: &Path) -> Result<Registry, RegistryError> {
        let registry = Registry::empty(data_dir);
        let mut reload = registry.reload_if_changed();
        match reload.errors.is_empty() {
            true => Ok(registry),
            false => Err(reload.errors.swap_remove(0)),
        }
    }

    /// A registry of `data_dir` that has read nothing yet: the first
    /// [`reload_if_changed`](Self::reload_if_changed) reads every organization it can and
    /// reports the files it cannot (for a broker that starts despite a damaged file).
    pub fn empty(data_dir: &Path) -> Registry {
        Registry {
            data_dir: data_dir.to_path_buf(),
            orgs: RwLock::new(Arc::default()),
            stamps: Mutex::new(HashMap::new()),
            budget: Pbkdf2Budget::new(token::DEFAULT_PBKDF2_PER_SECOND),
        }
    }

    /// The data directory the registry is read from.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// Sets how many first-time token verifications (PBKDF2) may run per second, in all
    /// (default 1000); beyond that, checks answer [`AuthRefusal::Throttled`].
    pub fn set_pbkdf2_per_second(&self, per_second: u32) {
        self.budget.set_per_second(per_second);
    }

    /// Reads again the organization files that changed since the last look (a directory
    /// listing and a stat per organization when nothing changed). A file that has gone
    /// removes its organization; one that cannot be read leaves it as it was and is
    /// reported in [`Reload::errors`] (once per change of the file). It reads files: call
    /// it off the async runtime's workers (`spawn_blocking`).
    pub fn reload_if_changed(&self) -> Reload {
        let mut reload = Reload::default();
        let on_disk = match store::list_orgs(&self.data_dir) {
            Ok(orgs) => orgs,
            Err(e) => {
                reload.errors.push(e);
                return reload;
            }
        };
        // Under the stamps' lock, so that two reloads at once cannot undo each other.
        let mut stamps = self.stamps.lock();
        let current = self.orgs.read().clone();
        let present: std::collections::HashSet<&str> = on_disk.iter().map(String::as_str).collect();
        let mut next: Option<HashMap<String, Arc<OrgView>>> = None;
        for org in &on_disk {
            let path = store::org_file(&self.data_dir, org);
            let now = store::stamp(&path);
            if stamps.get(org) == Some(&now) {
                continue;
            }
            stamps.insert(org.clone(), now);
            let view = store::read_org(&self.data_dir, org).and_then(|data| {
                let data = data.ok_or_else(|| no_org(org))?;
                OrgView::build(data, current.get(org).map(Arc::as_ref))
                    .map_err(|what| RegistryError::Damaged { path, what })
            });
            match view {
                Ok(view) => {
                    next.get_or_insert_with(|| (*current).clone())
                        .insert(org.clone(), Arc::new(view));
                    reload.changed.push(org.clone());
                }
                // Gone between the listing and the read: the next look removes it.
                Err(RegistryError::NotFound(_)) => {}
                Err(e) => reload.errors.push(e),
            }
        }
        let gone: Vec<String> = current
            .keys()
            .filter(|o| !present.contains(o.as_str()))
            .cloned()
            .collect();
        for org in gone {
            stamps.remove(&org);
            next.get_or_insert_with(|| (*current).clone()).remove(&org);
            reload.changed.push(org);
        }
        stamps.retain(|org, _| present.contains(org.as_str()));
        if let Some(next) = next {
            *self.orgs.write() = Arc::new(next);
        }
        reload
    }

    fn view(&self, org: &str) -> Option<Arc<OrgView>> {
        self.orgs.read().get(org).cloned()
    }

    /// The organization ids in force, sorted.
    pub fn orgs(&self) -> Vec<String> {
        let mut orgs: Vec<String> = self.orgs.read().keys().cloned().collect();
        orgs.sort();
        orgs
    }

    /// Organization `org` and its settings.
    pub fn org(&self, org: &str) -> Option<Arc<Organization>> {
        Some(self.view(org)?.org.clone())
    }

    /// Device type `type_id` of `org` (its `class_id` says whether its devices are gateways).
    pub fn device_type(&self, org: &str, type_id: &str) -> Option<Arc<DeviceType>> {
        self.view(org)?.types.get(type_id).cloned()
    }

    /// Device (or gateway) `type_id`/`device_id` of `org`.
    pub fn device(&self, org: &str, type_id: &str, device_id: &str) -> Option<Arc<Device>> {
        Some(self.view(org)?.devices.get(type_id)?.get(device_id)?.device.clone())
    }

    /// API key `key` (`a-<org>-...`; the organization comes from the key).
    pub fn app_key(&self, key: &str) -> Option<Arc<ApiKey>> {
        Some(self.view(org_of_key(key)?)?.keys.get(key)?.key.clone())
    }

    /// Checks a device's or gateway's token (`d:`/`g:` client ids, `use-token-auth`);
    /// returns the device and its type's class.
    pub fn verify_device_token(
        &self,
        org: &str,
        type_id: &str,
        device_id: &str,
        token: &[u8],
    ) -> Result<(Arc<Device>, DeviceClass), AuthRefusal> {
        let view = self.view(org).ok_or(AuthRefusal::UnknownOrg)?;
        let entry = view
            .devices
            .get(type_id)
            .and_then(|d| d.get(device_id))
            .ok_or(AuthRefusal::UnknownIdentity)?;
        entry.token.check(token, &self.budget).map_err(refusal)?;
        let class = view.types.get(type_id).map_or(DeviceClass::Device, |t| t.class_id);
        Ok((entry.device.clone(), class))
    }

    /// Checks an application's API key and token (user name and password of `a:`/`A:`
    /// client ids, or HTTP Basic); returns the key with its role.
    pub fn verify_key_token(&self, key: &str, token: &[u8]) -> Result<Arc<ApiKey>, AuthRefusal> {
        let org = org_of_key(key).ok_or(AuthRefusal::UnknownIdentity)?;
        let view = self.view(org).ok_or(AuthRefusal::UnknownOrg)?;
        let entry = view.keys.get(key).ok_or(AuthRefusal::UnknownIdentity)?;
        entry.token.check(token, &self.budget).map_err(refusal)?;
        Ok(entry.key.clone())
    }
}

fn refusal(r: TokenRefusal) -> AuthRefusal {
    match r {
        TokenRefusal::Wrong => AuthRefusal::WrongToken,
        TokenRefusal::Throttled => AuthRefusal::Throttled,
    }
}

#[cfg(test)]
#[path = "registry_tests.rs"]
mod tests;
