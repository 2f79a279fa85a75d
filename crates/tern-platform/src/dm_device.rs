//! The device side of device management (see [`crate::dm`]): what a device publishes under
//! `iotdevice-1/...` — manage, unmanage, location, diagnostics, notify — checked, applied to
//! its state and answered on `iotdm-1/response` (`{"rc","reqId","message"?}`), and its
//! answers to the platform's requests (`iotdevice-1/response`, never answered) handed to
//! `dm_requests`.
//!
//! Order of the checks: an unknown topic is 404, a payload that is not a JSON object 400
//! (with the reqId scraped from the raw bytes, or ""), no string reqId 400 with `""`, then
//! 403 when the device is not managed (every topic but manage, unmanage and response).
//! A notify without reqId is applied but never answered (the SDK's firmware notifies have
//! none, and an answer without reqId would kill its network thread).

use crate::dm::{DevKey, DeviceMgmt, Effects, Firmware, OrgDm, Step};
use crate::dm_wire::{self as wire, DeviceMessage, RC_BAD_REQUEST, RC_FORBIDDEN, RC_NOT_FOUND, RC_OK};
use serde_json::{Map, Value};

/// The device -> server topics (after `iotdevice-1/`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DeviceTopic {
    Manage,
    Unmanage,
    Location,
    AddErrorCode,
    ClearErrorCodes,
    AddLog,
    ClearLogs,
    Notify,
    Response,
}

impl DeviceTopic {
    pub fn of(tail: &str) -> Option<DeviceTopic> {
        Some(match tail {
            "mgmt/manage" => DeviceTopic::Manage,
            "mgmt/unmanage" => DeviceTopic::Unmanage,
            "device/update/location" => DeviceTopic::Location,
            "add/diag/errorCodes" => DeviceTopic::AddErrorCode,
            "clear/diag/errorCodes" => DeviceTopic::ClearErrorCodes,
            "add/diag/log" => DeviceTopic::AddLog,
            "clear/diag/log" => DeviceTopic::ClearLogs,
            "notify" => DeviceTopic::Notify,
            "response" => DeviceTopic::Response,
            _ => return None,
        })
    }
}

type Outcome = Result<(), (u16, String)>;

fn bad(message: impl Into<String>) -> (u16, String) {
    (RC_BAD_REQUEST, message.into())
}

impl OrgDm {
    /// Handles one message of device `key` on `iotdevice-1/<tail>`.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn on_device(
        &mut self,
        fx: &mut Effects,
        now: u64,
        org: &str,
        key: &DevKey,
        via_gateway: bool,
        tail: &str,
        payload: &[u8],
    ) {
        let answer = |fx: &mut Effects, rc: u16, req_id: &str, message: Option<&str>| {
            fx.send(org, key, wire::tail::RESPONSE, wire::response(rc, req_id, message));
        };
        let Some(topic) = DeviceTopic::of(tail) else {
            let req_id = match wire::parse(payload) {
                Ok(m) => m.req_id.unwrap_or_default(),
                Err((scraped, _)) => scraped,
            };
            answer(fx, RC_NOT_FOUND, &req_id, Some("unknown device management topic"));
            return;
        };
        if topic == DeviceTopic::Response {
            self.on_response(fx, now, org, key, payload);
            return;
        }
        let msg = match wire::parse(payload) {
            Ok(m) => m,
            Err((req_id, why)) => {
                if topic != DeviceTopic::Notify || !req_id.is_empty() {
                    answer(fx, RC_BAD_REQUEST, &req_id, Some(&why));
                }
                return;
            }
        };
        let managed = self.devices.get(key).is_some_and(|d| d.managed);
        let Some(req_id) = msg.req_id.clone() else {
            if topic == DeviceTopic::Notify {
                if managed {
                    let _ = self.notify(fx, now, org, key, &msg);
                }
            } else {
                let why = format!("reqId must be a string of at most {} characters", wire::MAX_REQ_ID_LEN);
                answer(fx, RC_BAD_REQUEST, "", Some(&why));
            }
            return;
        };
        let outcome = match topic {
            DeviceTopic::Manage => self.manage(fx, now, org, key, &msg),
            DeviceTopic::Unmanage => self.unmanage(key),
            _ if !managed => Err((
                RC_FORBIDDEN,
                "the device is not managed: publish iotdevice-1/mgmt/manage first".into(),
            )),
            DeviceTopic::Notify => self.notify(fx, now, org, key, &msg),
            other => self.report(now, key, other, &msg),
        };
        if let Some(dev) = self.devices.get_mut(key) {
            dev.last_activity_ms = now;
        }
        match &outcome {
            Ok(()) => answer(fx, RC_OK, &req_id, None),
            Err((rc, why)) => answer(fx, *rc, &req_id, Some(why)),
        }
        if topic == DeviceTopic::Manage && outcome.is_ok() {
            self.after_manage(fx, now, org, key, via_gateway);
        }
    }

    /// `mgmt/manage`: lifetime stored, `supports` replaced, deviceInfo merged (non-null
    /// keys), metadata replaced when a non-empty object; idempotent.
    fn manage(&mut self, fx: &mut Effects, now: u64, org: &str, key: &DevKey, msg: &DeviceMessage) -> Outcome {
        let empty = Map::new();
        let d = match msg.body.get("d") {
            None | Some(Value::Null) => &empty,
            Some(Value::Object(d)) => d,
            Some(_) => return Err(bad("d must be an object")),
        };
        let lifetime = match d.get("lifetime") {
            None | Some(Value::Null) => 0,
            Some(v) => v
                .as_u64()
                .filter(|l| *l == 0 || *l >= crate::dm::MIN_LIFETIME_SECS)
                .ok_or_else(|| bad("lifetime must be 0 or an integer of at least 3600 (seconds)"))?,
        };
        let supports = match d.get("supports") {
            None | Some(Value::Null) => Map::new(),
            Some(Value::Object(s)) => s.clone(),
            Some(_) => return Err(bad("supports must be an object")),
        };
        for (name, value) in &supports {
            if !value.is_boolean() {
                return Err(bad(format!("supports.{name} must be true or false")));
            }
            let builtin = name == "deviceActions" || name == "firmwareActions";
            if !builtin && value.as_bool() == Some(true) && !self.bundles.contains_key(name) {
                return Err((
                    RC_FORBIDDEN,
                    format!("supports names {name:?}, which is not a custom action bundle of the organization"),
                ));
            }
        }
        let device_info = object_member(d, "deviceInfo")?;
        let metadata = object_member(d, "metadata")?;
        if let Some(info) = device_info {
            let merged: Map<String, Value> = info.iter().filter(|(_, v)| !v.is_null()).map(clone_kv).collect();
            if !merged.is_empty() {
                fx.device_info.push(triple(org, key, Value::Object(merged)));
            }
        }
        if let Some(meta) = metadata.filter(|m| !m.is_empty()) {
            fx.metadata.push(triple(org, key, Value::Object(meta.clone())));
        }
        let dev = self.devices.entry(key.clone()).or_insert_with(|| DeviceMgmt::new(key));
        if !dev.managed {
            dev.managed_ms = now;
        }
        dev.managed = true;
        dev.lifetime = lifetime;
        dev.supports = supports;
        dev.last_manage_ms = now;
        dev.dormant_ms = None;
        self.dirty = true;
        Ok(())
    }

    /// `mgmt/unmanage`: 409 while a request is in progress for the device.
    fn unmanage(&mut self, key: &DevKey) -> Outcome {
        let Some(dev) = self.devices.get_mut(key) else {
            return Ok(());
        };
        if let Some(id) = &dev.active {
            return Err((
                crate::dm_wire::RC_CONFLICT,
                format!("request {id} is in progress for the device"),
            ));
        }
        if dev.managed {
            dev.managed = false;
            dev.dormant_ms = None;
            self.dirty = true;
        }
        Ok(())
    }

    /// Location and diagnostics of a managed device.
    fn report(&mut self, now: u64, key: &DevKey, topic: DeviceTopic, msg: &DeviceMessage) -> Outcome {
        let empty = Map::new();
        let d = msg.d().unwrap_or(&empty);
        let dev = self.devices.get_mut(key).ok_or_else(|| bad("unknown device"))?;
        match topic {
            DeviceTopic::Location => dev.location = Some(wire::check_location(d, now).map_err(bad)?),
            DeviceTopic::AddErrorCode => {
                let code = wire::check_error_code(d).map_err(bad)?;
                dev.add_error_code(code, wire::timestamp(now));
            }
            DeviceTopic::ClearErrorCodes => dev.error_codes.clear(),
            DeviceTopic::AddLog => dev.add_log(wire::check_log(d, now).map_err(bad)?, now),
            DeviceTopic::ClearLogs => {
                dev.logs.clear();
                dev.log_bytes = 0;
            }
            _ => return Err((RC_NOT_FOUND, "unknown device management topic".into())),
        }
        self.dirty = true;
        Ok(())
    }

    /// `notify`: `d.fields` of `mgmt.firmware`, `location`, `deviceInfo` or `metadata`.
    /// Nothing is applied unless every field is valid.
    fn notify(&mut self, fx: &mut Effects, now: u64, org: &str, key: &DevKey, msg: &DeviceMessage) -> Outcome {
        let fields = msg
            .d()
            .and_then(|d| d.get("fields"))
            .and_then(Value::as_array)
            .ok_or_else(|| bad("d.fields must be an array"))?;
        let mut checked = Vec::new();
        for f in fields {
            let name = f
                .get("field")
                .and_then(Value::as_str)
                .ok_or_else(|| bad("each of d.fields needs a field name"))?;
            let value = f
                .get("value")
                .and_then(Value::as_object)
                .ok_or_else(|| bad(format!("the value of {name} must be an object")))?;
            match name {
                "mgmt.firmware" => check_firmware(value).map_err(bad)?,
                "location" => {
                    wire::check_location(value, now).map_err(bad)?;
                }
                "deviceInfo" | "metadata" => {}
                _ => return Err((RC_NOT_FOUND, format!("unknown field {name:?}"))),
            }
            checked.push((name, value));
        }
        for (name, value) in checked {
            match name {
                "mgmt.firmware" => self.firmware_notify(fx, now, org, key, value),
                "location" => {
                    if let (Some(dev), Ok(loc)) = (self.devices.get_mut(key), wire::check_location(value, now)) {
                        dev.location = Some(loc);
                    }
                }
                "deviceInfo" => fx.device_info.push(triple(org, key, Value::Object(value.clone()))),
                _ => fx.metadata.push(triple(org, key, Value::Object(value.clone()))),
            }
        }
        self.dirty = true;
        Ok(())
    }

    /// Merges a notified `mgmt.firmware` value, and moves the device's firmware request on.
    fn firmware_notify(&mut self, fx: &mut Effects, now: u64, org: &str, key: &DevKey, value: &Map<String, Value>) {
        let Some(dev) = self.devices.get_mut(key) else {
            return;
        };
        let state = value.get("state").and_then(Value::as_i64);
        let update_status = value.get("updateStatus").and_then(Value::as_i64);
        let run = dev
            .active
            .as_ref()
            .and_then(|id| self.requests.get_mut(id))
            .and_then(|r| r.run_mut(key))
            .filter(|r| r.step == Step::FwInitiate);
        let in_progress = state == Some(1) || update_status == Some(1);
        let settled = dev.fw_settled || run.as_ref().is_some_and(|r| r.seen_done);
        if in_progress && settled {
            return;
        }
        let fw = dev.firmware.get_or_insert_with(Firmware::default);
        for (k, slot) in [
            ("version", &mut fw.version),
            ("name", &mut fw.name),
            ("uri", &mut fw.uri),
            ("verifier", &mut fw.verifier),
        ] {
            if let Some(s) = value.get(k).and_then(Value::as_str) {
                *slot = s.to_string();
            }
        }
        if let Some(s) = state {
            fw.state = s;
        }
        if let Some(u) = update_status {
            fw.update_status = u;
        }
        fw.updated_ms = now;
        let Some(id) = dev.active.clone() else {
            return;
        };
        crate::dm_requests::firmware_progress(self, fx, now, org, key, &id, state, update_status);
    }

    /// After a manage was answered: reboots waiting for it complete, undelivered steps are
    /// sent again.
    fn after_manage(&mut self, fx: &mut Effects, now: u64, org: &str, key: &DevKey, via_gateway: bool) {
        let Some(dev) = self.devices.get_mut(key) else {
            return;
        };
        let generation = dev.conn_gen;
        let Some(id) = dev.active.clone() else {
            return;
        };
        let Some(request) = self.requests.get_mut(&id) else {
            dev.active = None;
            return;
        };
        let Some(run) = request.run_mut(key) else {
            dev.active = None;
            return;
        };
        if run.step == Step::Restart && (via_gateway || run.any_manage || generation > run.restart_gen) {
            crate::dm_requests::finish(run, now, 0, None);
            request.updated_ms = now;
            dev.active = None;
        } else if run.undelivered && !run.complete {
            run.undelivered = false;
            fx.send(org, key, &run.tail.clone(), run.payload.clone().into_bytes());
        }
        self.dirty = true;
    }
}

fn object_member<'a>(d: &'a Map<String, Value>, name: &str) -> Result<Option<&'a Map<String, Value>>, (u16, String)> {
    match d.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(o)) => Ok(Some(o)),
        Some(_) => Err(bad(format!("{name} must be an object"))),
    }
}

fn clone_kv((k, v): (&String, &Value)) -> (String, Value) {
    (k.clone(), v.clone())
}

fn triple(org: &str, key: &DevKey, value: Value) -> (String, String, String, Value) {
    (org.to_string(), key.0.clone(), key.1.clone(), value)
}

/// Checks a notified `mgmt.firmware` value: state 0..2, updateStatus 0..6, strings.
fn check_firmware(value: &Map<String, Value>) -> Result<(), String> {
    let int_in = |k: &str, max: i64| match value.get(k) {
        None => Ok(()),
        Some(v) if v.as_i64().is_some_and(|n| (0..=max).contains(&n)) => Ok(()),
        Some(_) => Err(format!("mgmt.firmware {k} must be an integer from 0 to {max}")),
    };
    int_in("state", 2)?;
    int_in("updateStatus", 6)?;
    for k in ["version", "name", "uri", "verifier", "updatedDateTime"] {
        if value.get(k).is_some_and(|v| !v.is_string()) {
            return Err(format!("mgmt.firmware {k} must be a string"));
        }
    }
    Ok(())
}
