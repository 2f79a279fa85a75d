//! Device management's files (see [`crate::dm`]): one per organization,
//! `platform/dm/<org>.json` in the data directory, holding its devices' management state
//! (managed, supports, firmware, location, error codes, logs), its requests and its custom
//! action bundles. Kept apart from the registry's `platform/orgs/<org>.json` on purpose:
//! location, log and notify traffic must not rewrite the registry's file.
//!
//! Written as lec.rs writes its cache: a whole new file (`.<org>.json.<pid>.tmp`, mode
//! 0600, fsync) renamed over the old one, then the directory fsynced, so a kill -9 leaves
//! the previous or the new version. A file that cannot be read is logged and skipped.

use crate::dm::{DevKey, DeviceMgmt, DmStoreError, MgmtRequest, OrgDm, Step};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::HashMap;
use std::path::Path;

/// The file format's version.
const FORMAT_VERSION: u32 = 1;

#[derive(Serialize)]
struct StoredRef<'a> {
    version: u32,
    devices: Vec<&'a DeviceMgmt>,
    requests: Vec<&'a MgmtRequest>,
    bundles: Vec<&'a Value>,
}

#[derive(Deserialize)]
struct Stored {
    version: u32,
    #[serde(default)]
    devices: Vec<DeviceMgmt>,
    #[serde(default)]
    requests: Vec<MgmtRequest>,
    #[serde(default)]
    bundles: Vec<Value>,
}

/// An organization's file body; `None` when it holds nothing (the file is removed).
pub(crate) fn encode(o: &OrgDm) -> Option<Vec<u8>> {
    if o.devices.is_empty() && o.requests.is_empty() && o.bundles.is_empty() {
        return None;
    }
    let stored = StoredRef {
        version: FORMAT_VERSION,
        devices: o.devices.values().collect(),
        requests: o.requests.values().collect(),
        bundles: o.bundles.values().collect(),
    };
    match serde_json::to_vec(&stored) {
        Ok(body) => Some(body),
        Err(e) => {
            // Only non-string map keys fail, and there are none; keep the old file.
            tracing::error!("device management state cannot be encoded: {e}");
            Some(Vec::new())
        }
    }
}

/// Reads every organization's file in `dir`; damaged ones are logged and skipped.
pub(crate) fn load_all(dir: &Path) -> HashMap<String, OrgDm> {
    let mut orgs = HashMap::new();
    let files = match crate::org_files::list(dir) {
        Ok(files) => files,
        Err(e) => {
            tracing::warn!("{}: {e}; device management starts empty", dir.display());
            return orgs;
        }
    };
    for (org, path) in files {
        match std::fs::read(&path).map_err(|e| e.to_string()).and_then(|b| decode(&b)) {
            Ok(o) => {
                orgs.insert(org.to_string(), o);
            }
            Err(what) => tracing::warn!("{} is damaged ({what}): skipped", path.display()),
        }
    }
    orgs
}

/// An organization's state from its file's body, made consistent (runs sorted, a device's
/// request in progress still in progress).
pub(crate) fn decode(body: &[u8]) -> Result<OrgDm, String> {
    let stored: Stored = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    if stored.version != FORMAT_VERSION {
        return Err(format!("unknown format version {}", stored.version));
    }
    let mut o = OrgDm::default();
    for mut r in stored.requests {
        r.runs
            .sort_by(|a, b| (&a.type_id, &a.device_id).cmp(&(&b.type_id, &b.device_id)));
        r.runs
            .dedup_by(|a, b| a.type_id == b.type_id && a.device_id == b.device_id);
        for run in &mut r.runs {
            if run.complete {
                run.step = Step::Done;
            }
        }
        o.requests.insert(r.id.clone(), r);
    }
    for mut dev in stored.devices {
        let key: DevKey = (dev.type_id.clone(), dev.device_id.clone());
        let running = dev
            .active
            .as_ref()
            .and_then(|id| o.requests.get(id))
            .and_then(|r| r.run(&key))
            .is_some_and(|run| !run.complete);
        if !running {
            dev.active = None;
        }
        dev.log_bytes = dev.logs.iter().map(|l| l.cost()).sum();
        dev.next_log_id = dev
            .next_log_id
            .max(dev.logs.iter().map(|l| l.id + 1).max().unwrap_or(1));
        o.devices.insert(key, dev);
    }
    for b in stored.bundles {
        if let Some(id) = b.get("bundleId").and_then(Value::as_str) {
            o.bundles.insert(id.to_string(), b.clone());
        }
    }
    Ok(o)
}

/// Writes (or, `body` `None`, removes) organization `org`'s file in `dir`. An empty body
/// (state that could not be encoded) leaves the file as it is.
pub(crate) fn write_org(dir: &Path, org: &str, body: Option<&[u8]>) -> Result<(), DmStoreError> {
    if body.is_some_and(<[u8]>::is_empty) {
        return Ok(());
    }
    // Owner only: devices' locations and logs are as private as the registry.
    crate::org_files::replace(dir, org, body).map_err(|(path, source)| DmStoreError::Io { path, source })
}
