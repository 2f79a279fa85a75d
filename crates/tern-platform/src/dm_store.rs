//! Device management's files (see [`crate::dm`]): one per organization,
//! `platform/dm/<org>.json` in the data directory, holding its devices' management state
//! (managed, supports, firmware, location, error codes, logs), its requests and its custom
//! action bundles. Kept apart from the registry's `platform/orgs/<org>.json` on purpose:
//! location, log and notify traffic must not rewrite the registry's file.
//!
//! Format 2 keys every record (devices by `<type>/<device>`, requests by id, a request's
//! devices by `<type>/<device>`, bundles by id), so that a cluster's three-way merge of two
//! nodes' versions (`dm_share`) keeps changes to different records; format 1 (lists) is
//! still read.
//!
//! Written as lec.rs writes its cache: a whole new file (`.<org>.json.<pid>.tmp`, mode
//! 0600, fsync) renamed over the old one, then the directory fsynced, so a kill -9 leaves
//! the previous or the new version. A file that cannot be read is logged and skipped.

use crate::dm::{DevKey, DeviceMgmt, DmStoreError, MgmtRequest, OrgDm, Step};
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::path::Path;

/// The file format's version (1: lists, still read).
const FORMAT_VERSION: u64 = 2;

/// A document's records, read.
struct Stored {
    devices: Vec<DeviceMgmt>,
    requests: Vec<MgmtRequest>,
    bundles: Vec<Value>,
}

/// A record's key: `<type>/<device>` (neither holds a `/`).
fn device_key(record: &Value) -> String {
    let text = |name: &str| record.get(name).and_then(Value::as_str).unwrap_or_default().to_string();
    format!("{}/{}", text("typeId"), text("deviceId"))
}

/// An organization's state as a document of format 2; `None` when it holds nothing (the
/// file is removed).
pub(crate) fn encode_value(o: &OrgDm) -> Option<Value> {
    if o.devices.is_empty() && o.requests.is_empty() && o.bundles.is_empty() {
        return None;
    }
    let mut devices = Map::new();
    for dev in o.devices.values() {
        let record = serde_json::to_value(dev).ok()?;
        devices.insert(device_key(&record), record);
    }
    let mut requests = Map::new();
    for r in o.requests.values() {
        let mut record = serde_json::to_value(r).ok()?;
        if let Some(Value::Array(runs)) = record.get_mut("runs").map(Value::take) {
            let runs: Map<String, Value> = runs.into_iter().map(|run| (device_key(&run), run)).collect();
            record["runs"] = Value::Object(runs);
        }
        requests.insert(r.id.clone(), record);
    }
    let bundles: Map<String, Value> = o.bundles.iter().map(|(id, b)| (id.clone(), b.clone())).collect();
    Some(serde_json::json!({
        "version": FORMAT_VERSION, "devices": devices, "requests": requests, "bundles": bundles,
    }))
}

/// An organization's file body; `None` when it holds nothing (the file is removed).
pub(crate) fn encode(o: &OrgDm) -> Option<Vec<u8>> {
    let value = encode_value(o);
    if value.is_none() && !(o.devices.is_empty() && o.requests.is_empty() && o.bundles.is_empty()) {
        // Only non-string map keys fail, and there are none; keep the old file.
        tracing::error!("device management state cannot be encoded");
        return Some(Vec::new());
    }
    value.map(|v| v.to_string().into_bytes())
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
    decode_value(serde_json::from_slice(body).map_err(|e| e.to_string())?)
}

/// The records of a document's member `name`: a list (format 1) or keyed (format 2).
fn records(value: &mut Value, name: &str) -> Value {
    match value.get_mut(name).map(Value::take) {
        Some(Value::Object(map)) => Value::Array(map.into_iter().map(|(_, v)| v).collect()),
        Some(other) => other,
        None => Value::Array(Vec::new()),
    }
}

/// As [`decode`], from a parsed document of format 1 or 2.
pub(crate) fn decode_value(mut value: Value) -> Result<OrgDm, String> {
    match value.get("version").and_then(Value::as_u64) {
        Some(1 | FORMAT_VERSION) => {}
        other => return Err(format!("unknown format version {other:?}")),
    }
    let mut requests = records(&mut value, "requests");
    for r in requests.as_array_mut().into_iter().flatten() {
        let runs = records(r, "runs");
        if let Some(r) = r.as_object_mut() {
            r.insert("runs".into(), runs);
        }
    }
    let stored = Stored {
        devices: serde_json::from_value(records(&mut value, "devices")).map_err(|e| e.to_string())?,
        requests: serde_json::from_value(requests).map_err(|e| e.to_string())?,
        bundles: serde_json::from_value(records(&mut value, "bundles")).map_err(|e| e.to_string())?,
    };
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
