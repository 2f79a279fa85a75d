//! Device management as the REST API reads and writes it (see [`crate::dm`]): requests and
//! their per-device status, a device's `mgmt`, location, diagnostic error codes and logs,
//! and the organization's custom action bundles, in the JSON shapes of the IBM API
//! (docs/device-management.md). Each returns what the route answers; the caller has
//! already checked that the organization, type and device exist.

use crate::dm::{
    DevKey, DeviceMgmt, DeviceRun, Dm, DmRefusal, Effects, MgmtRequest, OrgDm, DEVICE_REQUESTS_SHOWN, MAX_BUNDLES,
    MAX_BUNDLE_BYTES,
};
use crate::dm_wire::{self as wire, RC_BAD_REQUEST, RC_CONFLICT, RC_NOT_FOUND};
use serde_json::{json, Map, Value};

/// A request's JSON: `{"id","action","parameters","devices"?,"complete","status",
/// "createdDateTime","updatedDateTime","timeout"}` (`devices` when `with_devices`).
pub(crate) fn request_json(r: &MgmtRequest, with_devices: bool) -> Value {
    let parameters: Vec<Value> = r
        .parameters
        .iter()
        .map(|(name, value)| json!({ "name": name, "value": value }))
        .collect();
    let mut out = json!({
        "id": r.id,
        "action": r.action,
        "parameters": parameters,
        "complete": r.complete(),
        "status": r.status(),
        "createdDateTime": wire::timestamp(r.created_ms),
        "updatedDateTime": wire::timestamp(r.updated_ms),
        "timeout": r.timeout_secs,
    });
    if with_devices {
        let devices: Vec<Value> = r
            .runs
            .iter()
            .map(|run| json!({ "typeId": run.type_id, "deviceId": run.device_id }))
            .collect();
        out["devices"] = Value::Array(devices);
    }
    out
}

/// A device's status in a request: `{"typeId","deviceId","status","complete","message"?,
/// "updatedDateTime"}`.
fn run_json(run: &DeviceRun) -> Value {
    let mut out = json!({
        "typeId": run.type_id,
        "deviceId": run.device_id,
        "status": run.status,
        "complete": run.complete,
        "updatedDateTime": wire::timestamp(run.updated_ms),
    });
    if let Some(m) = &run.message {
        out["message"] = json!(m);
    }
    out
}

fn key(t: &str, d: &str) -> DevKey {
    (t.to_string(), d.to_string())
}

fn body_object(body: &Value) -> Result<&Map<String, Value>, DmRefusal> {
    body.as_object()
        .ok_or_else(|| DmRefusal::new(RC_BAD_REQUEST, "the body must be a JSON object"))
}

/// Bundle and action ids: 1 to 64 letters, digits, `-`, `_` or `.` (they become topic levels).
fn check_bundle_id(what: &str, id: &str) -> Result<(), DmRefusal> {
    let ok = (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    match ok && id != "deviceActions" && id != "firmwareActions" {
        true => Ok(()),
        false => Err(DmRefusal::new(
            RC_BAD_REQUEST,
            format!("{what} {id:?} must be 1 to 64 letters, digits, '-', '_' or '.'"),
        )),
    }
}

/// Checks a bundle body (`bundleId`, `displayName`?, `version`?, `actions` with
/// `parameters` of `{name, value?, required?}`).
fn check_bundle(body: &Value) -> Result<String, DmRefusal> {
    let b = body_object(body)?;
    let id = b
        .get("bundleId")
        .and_then(Value::as_str)
        .ok_or_else(|| DmRefusal::new(RC_BAD_REQUEST, "bundleId must be a string"))?;
    check_bundle_id("bundleId", id)?;
    let actions = b
        .get("actions")
        .and_then(Value::as_object)
        .ok_or_else(|| DmRefusal::new(RC_BAD_REQUEST, "actions must be an object"))?;
    for (name, action) in actions {
        check_bundle_id("action id", name)?;
        let params = match action.get("parameters") {
            None | Some(Value::Null) => continue,
            Some(Value::Array(p)) => p,
            Some(_) => {
                return Err(DmRefusal::new(
                    RC_BAD_REQUEST,
                    format!("{name}.parameters must be an array"),
                ))
            }
        };
        for p in params {
            let named = p.get("name").and_then(Value::as_str).is_some();
            let required_ok = p.get("required").is_none_or(|r| crate::dm_requests::flag(r).is_some());
            if !named || !required_ok {
                return Err(DmRefusal::new(
                    RC_BAD_REQUEST,
                    format!("each parameter of {name} needs a name, and required must be true or false"),
                ));
            }
        }
    }
    if body.to_string().len() > MAX_BUNDLE_BYTES {
        return Err(DmRefusal::new(
            RC_BAD_REQUEST,
            format!("a bundle is at most {MAX_BUNDLE_BYTES} bytes"),
        ));
    }
    Ok(id.to_string())
}

impl Dm {
    fn with_org<T>(&self, org: &str, f: impl FnOnce(&OrgDm) -> T) -> Option<T> {
        self.orgs.lock().get(org).map(f)
    }

    fn with_device<T>(&self, org: &str, t: &str, d: &str, f: impl FnOnce(&DeviceMgmt) -> T) -> Option<T> {
        self.orgs.lock().get(org)?.devices.get(&key(t, d)).map(f)
    }

    /// Changes device `t`/`d` of `org`, creating its state.
    fn edit_device<T>(&self, org: &str, t: &str, d: &str, f: impl FnOnce(&mut DeviceMgmt) -> T) -> T {
        let mut orgs = self.orgs.lock();
        let o = orgs.entry(org.to_string()).or_default();
        o.dirty = true;
        let k = key(t, d);
        f(o.devices.entry(k.clone()).or_insert_with(|| DeviceMgmt::new(&k)))
    }

    /// `org`'s requests, newest first (without their devices).
    pub fn requests(&self, org: &str) -> Vec<Value> {
        self.with_org(org, |o| {
            let mut all: Vec<&MgmtRequest> = o.requests.values().collect();
            all.sort_by(|a, b| b.created_ms.cmp(&a.created_ms).then_with(|| a.id.cmp(&b.id)));
            all.into_iter().map(|r| request_json(r, false)).collect()
        })
        .unwrap_or_default()
    }

    /// Request `id` of `org`, with its devices.
    pub fn request(&self, org: &str, id: &str) -> Option<Value> {
        self.with_org(org, |o| o.requests.get(id).map(|r| request_json(r, true)))?
    }

    /// The status of each device of request `id` (sorted by type and device).
    pub fn device_statuses(&self, org: &str, id: &str) -> Option<Vec<Value>> {
        self.with_org(org, |o| {
            o.requests.get(id).map(|r| r.runs.iter().map(run_json).collect())
        })?
    }

    /// The status of device `t`/`d` in request `id`.
    pub fn device_status(&self, org: &str, id: &str, t: &str, d: &str) -> Option<Value> {
        self.with_org(org, |o| o.requests.get(id)?.run(&key(t, d)).map(run_json))?
    }

    /// Device `t`/`d`'s `mgmt` (`GET .../mgmt`); `None` when it is not managed (404).
    pub fn mgmt(&self, org: &str, t: &str, d: &str) -> Option<Value> {
        let orgs = self.orgs.lock();
        let o = orgs.get(org)?;
        let k = key(t, d);
        let dev = o.devices.get(&k).filter(|d| d.managed)?;
        let mut out = json!({
            "dormant": dev.dormant_ms.is_some(),
            "lifetime": dev.lifetime,
            "lastActivityDateTime": wire::timestamp(dev.last_activity_ms.max(dev.last_manage_ms)),
            "managedDateTime": wire::timestamp(dev.managed_ms),
            "supports": dev.supports,
        });
        if let Some(at) = dev.dormant_ms {
            out["dormantDateTime"] = json!(wire::timestamp(at));
        }
        if let Some(fw) = &dev.firmware {
            out["firmware"] = fw.to_json();
        }
        let mut requests: Vec<(&MgmtRequest, &DeviceRun)> =
            o.requests.values().filter_map(|r| Some((r, r.run(&k)?))).collect();
        requests.sort_by(|a, b| {
            b.1.updated_ms
                .cmp(&a.1.updated_ms)
                .then_with(|| b.0.created_ms.cmp(&a.0.created_ms))
        });
        let shown: Vec<Value> = requests
            .into_iter()
            .take(DEVICE_REQUESTS_SHOWN)
            .map(|(r, run)| {
                json!({ "id": r.id, "action": r.action, "status": run.status, "complete": run.complete,
                        "updatedDateTime": wire::timestamp(run.updated_ms) })
            })
            .collect();
        out["requests"] = Value::Array(shown);
        Some(out)
    }

    /// Device `t`/`d`'s last location, as stored.
    pub fn location(&self, org: &str, t: &str, d: &str) -> Option<Value> {
        self.with_device(org, t, d, |dev| dev.location.clone())?
    }

    /// Sets device `t`/`d`'s location (`PUT .../location`) and returns it as stored; a
    /// managed device is sent it (`iotdm-1/device/update`, field `location`).
    pub fn set_location(
        &self,
        now_ms: u64,
        org: &str,
        t: &str,
        d: &str,
        body: &Value,
    ) -> Result<(Value, Effects), DmRefusal> {
        let location =
            wire::check_location(body_object(body)?, now_ms).map_err(|m| DmRefusal::new(RC_BAD_REQUEST, m))?;
        let mut fx = Effects::default();
        let managed = self.edit_device(org, t, d, |dev| {
            dev.location = Some(location.clone());
            dev.managed
        });
        if managed {
            let req_id = wire::untracked_uuid4();
            let payload = wire::fields_request(&req_id, &[("location", Some(location.clone()))]);
            fx.send(org, &key(t, d), wire::tail::DEVICE_UPDATE, payload);
        }
        Ok((location, fx))
    }

    /// Device `t`/`d`'s error codes, oldest first: `[{"errorCode","timestamp"}]`.
    pub fn error_codes(&self, org: &str, t: &str, d: &str) -> Vec<Value> {
        self.with_device(org, t, d, |dev| {
            dev.error_codes
                .iter()
                .map(|e| json!({ "errorCode": e.error_code, "timestamp": e.timestamp }))
                .collect()
        })
        .unwrap_or_default()
    }

    /// Adds an error code (`{errorCode, timestamp?}`).
    pub fn add_error_code(&self, now_ms: u64, org: &str, t: &str, d: &str, body: &Value) -> Result<(), DmRefusal> {
        let b = body_object(body)?;
        let code = wire::check_error_code(b).map_err(|m| DmRefusal::new(RC_BAD_REQUEST, m))?;
        let timestamp = wire::timestamp_or_now(b.get("timestamp"), now_ms);
        self.edit_device(org, t, d, |dev| dev.add_error_code(code, timestamp));
        Ok(())
    }

    /// Removes device `t`/`d`'s error codes.
    pub fn clear_error_codes(&self, org: &str, t: &str, d: &str) {
        self.edit_device(org, t, d, |dev| dev.error_codes.clear());
    }

    /// Device `t`/`d`'s logs, oldest first: `[{"id","message","severity","data","timestamp"}]`.
    pub fn logs(&self, org: &str, t: &str, d: &str) -> Vec<Value> {
        self.with_device(org, t, d, |dev| dev.logs.iter().map(log_json).collect())
            .unwrap_or_default()
    }

    /// Log entry `id` of device `t`/`d`.
    pub fn log(&self, org: &str, t: &str, d: &str, id: &str) -> Option<Value> {
        let id: u64 = id.parse().ok()?;
        self.with_device(org, t, d, |dev| dev.logs.iter().find(|l| l.id == id).map(log_json))?
    }

    /// Adds a log entry (`{message, severity?, data?, timestamp?}`).
    pub fn add_log(&self, now_ms: u64, org: &str, t: &str, d: &str, body: &Value) -> Result<(), DmRefusal> {
        let input = wire::check_log(body_object(body)?, now_ms).map_err(|m| DmRefusal::new(RC_BAD_REQUEST, m))?;
        self.edit_device(org, t, d, |dev| dev.add_log(input, now_ms));
        Ok(())
    }

    /// Removes log entry `id` of device `t`/`d`; false when there is none.
    pub fn delete_log(&self, org: &str, t: &str, d: &str, id: &str) -> bool {
        let Ok(id) = id.parse::<u64>() else {
            return false;
        };
        let mut orgs = self.orgs.lock();
        let Some(o) = orgs.get_mut(org) else {
            return false;
        };
        let Some(dev) = o.devices.get_mut(&key(t, d)) else {
            return false;
        };
        let Some(at) = dev.logs.iter().position(|l| l.id == id) else {
            return false;
        };
        if let Some(old) = dev.logs.remove(at) {
            dev.log_bytes = dev.log_bytes.saturating_sub(old.cost());
        }
        o.dirty = true;
        true
    }

    /// Removes device `t`/`d`'s logs.
    pub fn clear_logs(&self, org: &str, t: &str, d: &str) {
        self.edit_device(org, t, d, |dev| {
            dev.logs.clear();
            dev.log_bytes = 0;
        });
    }

    /// `org`'s custom action bundles, by id.
    pub fn bundles(&self, org: &str) -> Vec<Value> {
        self.with_org(org, |o| o.bundles.values().cloned().collect())
            .unwrap_or_default()
    }

    /// Bundle `id` of `org`.
    pub fn bundle(&self, org: &str, id: &str) -> Option<Value> {
        self.with_org(org, |o| o.bundles.get(id).cloned())?
    }

    /// Adds a bundle (`POST /mgmt/custom/bundle`, 201): 400 bad body, 409 exists, 429 past
    /// [`MAX_BUNDLES`]. Returns it as stored.
    pub fn add_bundle(&self, org: &str, body: &Value) -> Result<Value, DmRefusal> {
        let id = check_bundle(body)?;
        let mut orgs = self.orgs.lock();
        let o = orgs.entry(org.to_string()).or_default();
        if o.bundles.contains_key(&id) {
            return Err(DmRefusal::new(RC_CONFLICT, format!("bundle {id} exists")));
        }
        if o.bundles.len() >= MAX_BUNDLES {
            return Err(DmRefusal::new(
                wire::RC_TOO_MANY,
                format!("an organization has at most {MAX_BUNDLES} bundles"),
            ));
        }
        o.bundles.insert(id, body.clone());
        o.dirty = true;
        Ok(body.clone())
    }

    /// Replaces bundle `id` (`PUT`, 200); the body's bundleId, when given, must be `id`.
    pub fn update_bundle(&self, org: &str, id: &str, body: &Value) -> Result<Value, DmRefusal> {
        let mut body = body.clone();
        if let Some(b) = body.as_object_mut() {
            b.entry("bundleId").or_insert_with(|| json!(id));
        }
        if check_bundle(&body)? != id {
            return Err(DmRefusal::new(RC_BAD_REQUEST, format!("bundleId must be {id}")));
        }
        let mut orgs = self.orgs.lock();
        let o = orgs
            .get_mut(org)
            .filter(|o| o.bundles.contains_key(id))
            .ok_or_else(|| DmRefusal::new(RC_NOT_FOUND, format!("no bundle {id}")))?;
        o.bundles.insert(id.to_string(), body.clone());
        o.dirty = true;
        Ok(body)
    }

    /// Removes bundle `id`; false when there is none.
    pub fn delete_bundle(&self, org: &str, id: &str) -> bool {
        let mut orgs = self.orgs.lock();
        let Some(o) = orgs.get_mut(org) else {
            return false;
        };
        let found = o.bundles.remove(id).is_some();
        o.dirty |= found;
        found
    }
}

fn log_json(l: &crate::dm::LogEntry) -> Value {
    json!({ "id": l.id.to_string(), "message": l.message, "severity": l.severity, "data": l.data, "timestamp": l.timestamp })
}
