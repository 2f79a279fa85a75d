//! Device management requests (see [`crate::dm`]): starting one for a set of devices
//! ([`Dm::initiate`]), the per-device message sequences and how the devices' answers on
//! `iotdevice-1/response` move them on, cancelling, deleting, timeouts and retention
//! ([`Dm::tick`]).
//!
//! Sequences (each step waits for the previous answer, matched by reqId and only from the
//! device the step went to): reboot / factory reset: initiate -> 202 -> a manage from a
//! later connection; firmware download / update: `device/update` with the seven
//! `mgmt.firmware` keys -> 204, `observe` -> 200, initiate -> 202 and the final notify
//! (state 2 / updateStatus 0, in any order) -> `cancel` -> 200; custom: the action -> 200.
//! Per-device status: 0 complete, 1 in progress, the device's rc when it refused, 403 not
//! managed or unsupported, 408 timed out, 409 overridden or cancelled, 500 a firmware
//! failure notified (updateStatus 2 to 6).

use crate::dm::{
    DevKey, DeviceMgmt, DeviceRun, Dm, DmRefusal, Effects, Firmware, Initiate, MgmtRequest, OrgDm, Step,
    MAX_PARAMETER_BYTES, MAX_REQUESTS, MAX_REQUEST_DEVICES, MAX_TIMEOUT_SECS, RETENTION_MS, SWEEP_INTERVAL_MS,
};
use crate::dm_wire::{self as wire, tail, RC_BAD_REQUEST, RC_CONFLICT, RC_FORBIDDEN, RC_NOT_FOUND};
use serde_json::{json, Value};
use std::collections::BTreeSet;

/// What a request asks of its devices.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Action {
    Reboot,
    FactoryReset,
    Download,
    Update,
    Custom(String, String),
}

impl Action {
    /// The action named `name` in `o` (custom: a registered bundle's action).
    fn of(o: &OrgDm, name: &str) -> Result<Action, DmRefusal> {
        Ok(match name {
            "device/reboot" => Action::Reboot,
            "device/factoryReset" => Action::FactoryReset,
            "firmware/download" => Action::Download,
            "firmware/update" => Action::Update,
            _ => {
                let unknown = || DmRefusal::new(RC_BAD_REQUEST, format!("unknown action {name:?}"));
                let (bundle, action) = name.split_once('/').ok_or_else(unknown)?;
                let b = o.bundles.get(bundle).ok_or_else(unknown)?;
                if b.get("actions").and_then(|a| a.get(action)).is_none() {
                    return Err(unknown());
                }
                Action::Custom(bundle.to_string(), action.to_string())
            }
        })
    }

    /// Why `dev` cannot take it, if it cannot.
    fn refused_by(&self, dev: Option<&DeviceMgmt>) -> Option<String> {
        let dev = match dev {
            Some(d) if d.managed => d,
            _ => return Some("the device is not managed".into()),
        };
        if dev.dormant_ms.is_some() {
            return Some("the device is dormant (no manage within its lifetime)".into());
        }
        let (support, what) = match self {
            Action::Reboot | Action::FactoryReset => ("deviceActions", "device actions"),
            Action::Download | Action::Update => ("firmwareActions", "firmware actions"),
            Action::Custom(bundle, _) => (bundle.as_str(), "the bundle"),
        };
        (!dev.supports(support)).then(|| format!("the device does not support {what} (supports.{support})"))
    }
}

fn param<'a>(parameters: &'a [(String, Value)], name: &str) -> Option<&'a str> {
    parameters
        .iter()
        .find(|(n, _)| n == name)
        .and_then(|(_, v)| v.as_str())
        .filter(|s| !s.is_empty())
}

/// Ends a device's part of a request with `status`.
pub(crate) fn finish(run: &mut DeviceRun, now: u64, status: u16, message: Option<&str>) {
    run.status = status;
    run.message = message.map(str::to_string);
    run.complete = true;
    run.pending = None;
    run.undelivered = false;
    run.step = Step::Done;
    run.updated_ms = now;
}

/// Sends a run's next step with a fresh reqId.
fn dispatch(
    fx: &mut Effects,
    org: &str,
    run: &mut DeviceRun,
    step: Step,
    tail: &str,
    payload: impl Fn(&str) -> Vec<u8>,
) {
    let req_id = wire::uuid4();
    let body = payload(&req_id);
    run.step = step;
    run.pending = Some(req_id);
    run.tail = tail.to_string();
    run.payload = String::from_utf8_lossy(&body).into_owned();
    run.undelivered = false;
    fx.send(org, &run.key(), tail, body);
}

/// An untracked `iotdm-1/cancel` of the firmware observation.
fn send_cancel(fx: &mut Effects, org: &str, key: &DevKey) {
    let req_id = wire::untracked_uuid4();
    fx.send(
        org,
        key,
        tail::CANCEL,
        wire::fields_request(&req_id, &[("mgmt.firmware", None)]),
    );
}

/// Whether the run's device is observing its firmware for it.
fn observing(run: &DeviceRun) -> bool {
    matches!(run.step, Step::FwObserve | Step::FwInitiate | Step::FwCancel)
}

/// Sends the first message of a run.
fn start(fx: &mut Effects, now: u64, org: &str, dev: &mut DeviceMgmt, run: &mut DeviceRun, request: &MgmtRequest) {
    let action = match request.action.as_str() {
        "device/reboot" => Action::Reboot,
        "device/factoryReset" => Action::FactoryReset,
        "firmware/download" => Action::Download,
        "firmware/update" => Action::Update,
        other => match other.split_once('/') {
            Some((b, a)) => Action::Custom(b.into(), a.into()),
            None => Action::Reboot,
        },
    };
    match action {
        Action::Reboot => dispatch(fx, org, run, Step::Action, tail::REBOOT, wire::bare_request),
        Action::FactoryReset => dispatch(fx, org, run, Step::Action, tail::FACTORY_RESET, wire::bare_request),
        Action::Download | Action::Update => {
            let fw = dev.firmware.get_or_insert_with(Firmware::default);
            for (name, slot) in [
                ("uri", &mut fw.uri),
                ("name", &mut fw.name),
                ("version", &mut fw.version),
                ("verifier", &mut fw.verifier),
            ] {
                if let Some(v) = param(&request.parameters, name) {
                    *slot = v.to_string();
                }
            }
            fw.updated_ms = now;
            dev.fw_settled = false;
            let value = fw.to_json();
            dispatch(fx, org, run, Step::FwSet, tail::DEVICE_UPDATE, |r| {
                wire::fields_request(r, &[("mgmt.firmware", Some(value.clone()))])
            });
        }
        Action::Custom(bundle, action) => {
            let fields: Vec<(&str, Option<Value>)> = request
                .parameters
                .iter()
                .map(|(n, v)| (n.as_str(), Some(v.clone())))
                .collect();
            let t = format!("{}{bundle}/{action}", tail::CUSTOM_PREFIX);
            dispatch(fx, org, run, Step::Custom, &t, |r| wire::fields_request(r, &fields));
        }
    }
}

/// Ends device `key`'s request in progress in `o` (if any) with 409 `message`, cancelling
/// a firmware observation.
fn end_active(o: &mut OrgDm, fx: &mut Effects, now: u64, org: &str, key: &DevKey, message: &str) {
    let Some(id) = o.devices.get_mut(key).and_then(|d| d.active.take()) else {
        return;
    };
    if let Some(r) = o.requests.get_mut(&id) {
        r.updated_ms = now;
        if let Some(run) = r.run_mut(key).filter(|run| !run.complete) {
            if observing(run) {
                send_cancel(fx, org, key);
            }
            finish(run, now, RC_CONFLICT, Some(message));
        }
    }
}

impl Dm {
    /// Starts a request of `org` (REST `POST /mgmt/requests`, or the CLI's inbox).
    /// `registered(type, device)` says whether a device is in the organization's registry.
    /// Refused (nothing created): an unknown action, a firmware download without `uri`, a
    /// custom action without a required parameter, no devices or more than
    /// [`MAX_REQUEST_DEVICES`], a timeout out of 1..=[`MAX_TIMEOUT_SECS`], parameters past
    /// [`MAX_PARAMETER_BYTES`], an unregistered
    /// device (400); every device refused (their first refusal: 403 or 409); too many
    /// requests kept (429). Otherwise the request id and the first messages.
    pub fn initiate(
        &self,
        now_ms: u64,
        registered: impl Fn(&str, &str) -> bool,
        org: &str,
        request: Initiate,
    ) -> Result<(String, Effects), DmRefusal> {
        let devices: BTreeSet<DevKey> = request.devices.iter().cloned().collect();
        if devices.is_empty() || devices.len() > MAX_REQUEST_DEVICES {
            return Err(DmRefusal::new(
                RC_BAD_REQUEST,
                format!("a request names 1 to {MAX_REQUEST_DEVICES} devices"),
            ));
        }
        if !(1..=MAX_TIMEOUT_SECS).contains(&request.timeout_secs) {
            return Err(DmRefusal::new(
                RC_BAD_REQUEST,
                format!("timeout must be 1 to {MAX_TIMEOUT_SECS} seconds"),
            ));
        }
        let size: usize = request
            .parameters
            .iter()
            .map(|(n, v)| n.len() + v.to_string().len())
            .sum();
        if size > MAX_PARAMETER_BYTES {
            return Err(DmRefusal::new(
                RC_BAD_REQUEST,
                format!("parameters are at most {MAX_PARAMETER_BYTES} bytes"),
            ));
        }
        if let Some((t, d)) = devices.iter().find(|(t, d)| !registered(t, d)) {
            return Err(DmRefusal::new(
                RC_BAD_REQUEST,
                format!("device {t}/{d} is not in the registry"),
            ));
        }
        let mut orgs = self.orgs.lock();
        let o = orgs.entry(org.to_string()).or_default();
        let action = Action::of(o, &request.action)?;
        check_parameters(o, &action, &request.parameters)?;
        // Each device: refused, conflicting, or accepted.
        let mut runs = Vec::with_capacity(devices.len());
        let mut first_refusal: Option<DmRefusal> = None;
        let mut accepted = 0;
        for key in &devices {
            let refusal = judge(o, &action, key, request.override_);
            let mut run = new_run(key, now_ms);
            match refusal {
                Some(r) => {
                    finish(&mut run, now_ms, r.status, Some(&r.message));
                    first_refusal.get_or_insert(r);
                }
                None => accepted += 1,
            }
            runs.push(run);
        }
        if accepted == 0 {
            return Err(first_refusal.unwrap_or_else(|| DmRefusal::new(RC_FORBIDDEN, "no device accepted")));
        }
        make_room(o)?;
        let id = wire::uuid4();
        let mut fx = Effects::default();
        let mut req = MgmtRequest {
            id: id.clone(),
            action: request.action,
            parameters: request.parameters,
            created_ms: now_ms,
            updated_ms: now_ms,
            timeout_secs: request.timeout_secs,
            runs: Vec::new(),
        };
        for run in runs.iter_mut().filter(|r| !r.complete) {
            let key = run.key();
            end_active(o, &mut fx, now_ms, org, &key, &format!("overridden by {id}"));
            if let Some(dev) = o.devices.get_mut(&key) {
                start(&mut fx, now_ms, org, dev, run, &req);
                dev.active = Some(id.clone());
            }
        }
        req.runs = runs;
        o.requests.insert(id.clone(), req);
        o.dirty = true;
        Ok((id, fx))
    }

    /// Cancels request `id` of `org`: its devices in progress end with 409 "cancelled"
    /// (a firmware observation is cancelled on the device). Returns the request's JSON.
    pub fn cancel(&self, now_ms: u64, org: &str, id: &str) -> Result<(Value, Effects), DmRefusal> {
        let mut orgs = self.orgs.lock();
        let o = orgs
            .get_mut(org)
            .filter(|o| o.requests.contains_key(id))
            .ok_or_else(|| DmRefusal::new(RC_NOT_FOUND, format!("no request {id}")))?;
        let mut fx = Effects::default();
        cancel_in(o, &mut fx, now_ms, org, id);
        let body = o
            .requests
            .get(id)
            .map(|r| crate::dm_rest::request_json(r, true))
            .unwrap_or(Value::Null);
        Ok((body, fx))
    }

    /// Deletes request `id` of `org`, cancelling it first if it is in progress.
    pub fn delete(&self, now_ms: u64, org: &str, id: &str) -> Result<Effects, DmRefusal> {
        let mut orgs = self.orgs.lock();
        let o = orgs
            .get_mut(org)
            .filter(|o| o.requests.contains_key(id))
            .ok_or_else(|| DmRefusal::new(RC_NOT_FOUND, format!("no request {id}")))?;
        let mut fx = Effects::default();
        cancel_in(o, &mut fx, now_ms, org, id);
        o.requests.remove(id);
        Ok(fx)
    }

    /// Time passes: devices without a manage for their lifetime become dormant, requests
    /// past their timeout end (408, naming the step waited for), and every
    /// [`SWEEP_INTERVAL_MS`] completed requests and logs older than [`RETENTION_MS`] go.
    pub fn tick(&self, now_ms: u64) -> Effects {
        let mut fx = Effects::default();
        let sweep = {
            let mut last = self.last_sweep_ms.lock();
            let due = now_ms.saturating_sub(*last) >= SWEEP_INTERVAL_MS;
            if due {
                *last = now_ms;
            }
            due
        };
        let mut orgs = self.orgs.lock();
        for (org, o) in orgs.iter_mut() {
            for dev in o.devices.values_mut() {
                let expires = dev.last_manage_ms.saturating_add(dev.lifetime.saturating_mul(1000));
                if dev.managed && dev.lifetime > 0 && dev.dormant_ms.is_none() && now_ms >= expires {
                    dev.dormant_ms = Some(now_ms);
                    o.dirty = true;
                }
            }
            time_out(o, &mut fx, now_ms, org);
            if sweep {
                sweep_org(o, now_ms);
            }
        }
        fx
    }
}

/// Why device `key` of `o` cannot take `action` now: 403 (not managed, dormant,
/// unsupported) or 409 (a request in progress, unless `override_`).
fn judge(o: &OrgDm, action: &Action, key: &DevKey, override_: bool) -> Option<DmRefusal> {
    let dev = o.devices.get(key);
    if let Some(why) = action.refused_by(dev) {
        return Some(DmRefusal::new(RC_FORBIDDEN, why));
    }
    match dev.and_then(|d| d.active.as_ref()) {
        Some(id) if !override_ => Some(DmRefusal::new(
            RC_CONFLICT,
            format!("request {id} is in progress for the device"),
        )),
        _ => None,
    }
}

/// A device's part of a new request, in progress, nothing sent yet.
fn new_run(key: &DevKey, now: u64) -> DeviceRun {
    DeviceRun {
        type_id: key.0.clone(),
        device_id: key.1.clone(),
        status: 1,
        message: None,
        complete: false,
        updated_ms: now,
        step: Step::Done,
        pending: None,
        tail: String::new(),
        payload: String::new(),
        undelivered: false,
        seen_202: false,
        seen_done: false,
        restart_gen: 0,
        any_manage: false,
    }
}

/// A bundle parameter's `required`: a boolean, or the strings `"true"` and `"false"`,
/// as IBM's own samples write it.
pub(crate) fn flag(value: &Value) -> Option<bool> {
    match value {
        Value::Bool(b) => Some(*b),
        Value::String(s) if s == "true" => Some(true),
        Value::String(s) if s == "false" => Some(false),
        _ => None,
    }
}

/// Checks an action's parameters: download needs `uri`; a custom action its required ones.
fn check_parameters(o: &OrgDm, action: &Action, parameters: &[(String, Value)]) -> Result<(), DmRefusal> {
    match action {
        Action::Download if param(parameters, "uri").is_none() => Err(DmRefusal::new(
            RC_BAD_REQUEST,
            "firmware/download needs the parameter uri",
        )),
        Action::Custom(bundle, name) => {
            let declared = o
                .bundles
                .get(bundle)
                .and_then(|b| b.get("actions"))
                .and_then(|a| a.get(name))
                .and_then(|a| a.get("parameters"))
                .and_then(Value::as_array);
            for p in declared.into_iter().flatten() {
                let required = p.get("required").and_then(flag).unwrap_or(false);
                let pname = p.get("name").and_then(Value::as_str).unwrap_or_default();
                if required && !parameters.iter().any(|(n, _)| n == pname) {
                    return Err(DmRefusal::new(
                        RC_BAD_REQUEST,
                        format!("{bundle}/{name} needs the parameter {pname}"),
                    ));
                }
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

/// Keeps the organization under [`MAX_REQUESTS`] before one more: the oldest completed
/// request goes; 429 when all of them are in progress.
fn make_room(o: &mut OrgDm) -> Result<(), DmRefusal> {
    while o.requests.len() >= MAX_REQUESTS {
        let oldest = o
            .requests
            .values()
            .filter(|r| r.complete())
            .min_by_key(|r| r.updated_ms)
            .map(|r| r.id.clone());
        match oldest {
            Some(id) => o.requests.remove(&id),
            None => {
                return Err(DmRefusal::new(
                    wire::RC_TOO_MANY,
                    format!("{MAX_REQUESTS} requests are in progress; wait for some to complete"),
                ))
            }
        };
    }
    Ok(())
}

fn cancel_in(o: &mut OrgDm, fx: &mut Effects, now: u64, org: &str, id: &str) {
    let Some(r) = o.requests.get_mut(id) else {
        return;
    };
    for run in r.runs.iter_mut().filter(|run| !run.complete) {
        if observing(run) {
            send_cancel(fx, org, &run.key());
        }
        finish(run, now, RC_CONFLICT, Some("cancelled"));
        if let Some(dev) = o.devices.get_mut(&run.key()) {
            if dev.active.as_deref() == Some(id) {
                dev.active = None;
            }
        }
        r.updated_ms = now;
    }
    o.dirty = true;
}

/// What a run waits for, for the timeout message.
fn waiting_for(run: &DeviceRun) -> String {
    let base = match run.step {
        Step::Action => "the answer to the reboot or factory reset",
        Step::Restart => "the device to restart and manage again",
        Step::FwSet => "the answer to device/update of mgmt.firmware",
        Step::FwObserve => "the answer to observe of mgmt.firmware",
        Step::FwInitiate if !run.seen_202 => "the answer to the firmware initiate",
        Step::FwInitiate => "the firmware notify of completion",
        Step::FwCancel => "the answer to cancel of mgmt.firmware",
        Step::Custom => "the answer to the custom action",
        Step::Done => "nothing",
    };
    match run.undelivered {
        true => format!("{base}; the request never reached the device"),
        false => base.to_string(),
    }
}

fn time_out(o: &mut OrgDm, fx: &mut Effects, now: u64, org: &str) {
    for r in o.requests.values_mut() {
        let deadline = r.created_ms.saturating_add(r.timeout_secs.saturating_mul(1000));
        if now < deadline || r.complete() {
            continue;
        }
        for run in r.runs.iter_mut().filter(|run| !run.complete) {
            if observing(run) {
                send_cancel(fx, org, &run.key());
            }
            let message = format!(
                "the device did not answer within {} s (waiting for {})",
                r.timeout_secs,
                waiting_for(run)
            );
            finish(run, now, wire::RC_TIMEOUT, Some(&message));
            if let Some(dev) = o.devices.get_mut(&run.key()) {
                if dev.active.as_deref() == Some(r.id.as_str()) {
                    dev.active = None;
                }
            }
        }
        r.updated_ms = now;
        o.dirty = true;
    }
}

fn sweep_org(o: &mut OrgDm, now: u64) {
    let oldest = now.saturating_sub(RETENTION_MS);
    let before = o.requests.len();
    o.requests.retain(|_, r| !r.complete() || r.updated_ms >= oldest);
    o.dirty |= o.requests.len() != before;
    for dev in o.devices.values_mut() {
        while dev.logs.front().is_some_and(|l| l.added_ms < oldest) {
            if let Some(old) = dev.logs.pop_front() {
                dev.log_bytes = dev.log_bytes.saturating_sub(old.cost());
                o.dirty = true;
            }
        }
    }
}

impl OrgDm {
    /// A device's answer to a request step (`iotdevice-1/response`): never answered; an
    /// unknown reqId, or one of another device's request, is ignored.
    pub(crate) fn on_response(&mut self, fx: &mut Effects, now: u64, org: &str, key: &DevKey, payload: &[u8]) {
        let Ok(msg) = wire::parse(payload) else {
            tracing::debug!("{org}: response of {}/{} is not a JSON object: ignored", key.0, key.1);
            return;
        };
        let rc = msg
            .body
            .get("rc")
            .and_then(Value::as_u64)
            .and_then(|n| u16::try_from(n).ok());
        let (Some(rc), Some(req_id)) = (rc, msg.req_id.as_deref()) else {
            tracing::debug!("{org}: response of {}/{} without rc or reqId: ignored", key.0, key.1);
            return;
        };
        let device_message = msg
            .body
            .get("message")
            .and_then(Value::as_str)
            .filter(|m| !m.is_empty())
            .map(|m| m.chars().take(256).collect::<String>());
        let Some(dev) = self.devices.get_mut(key) else {
            return;
        };
        dev.last_activity_ms = now;
        let id = dev.active.clone();
        let update = id
            .as_ref()
            .and_then(|i| self.requests.get(i))
            .is_some_and(|r| r.action == "firmware/update");
        let found = id
            .as_ref()
            .and_then(|id| self.requests.get_mut(id))
            .and_then(|r| r.run_mut(key))
            .filter(|run| run.pending.as_deref() == Some(req_id));
        let Some(run) = found else {
            tracing::debug!(
                "{org}: response of {}/{} to unknown reqId {req_id}: ignored",
                key.0,
                key.1
            );
            return;
        };
        run.pending = None;
        run.undelivered = false;
        run.updated_ms = now;
        let failed = |run: &mut DeviceRun| {
            let m = device_message
                .clone()
                .unwrap_or_else(|| format!("the device answered rc {rc}"));
            finish(run, now, rc, Some(&m));
        };
        match (run.step, rc) {
            (Step::Action, 202) => {
                run.step = Step::Restart;
                run.restart_gen = dev.conn_gen;
            }
            (Step::FwSet, 204) => dispatch(fx, org, run, Step::FwObserve, tail::OBSERVE, |r| {
                wire::fields_request(r, &[("mgmt.firmware", None)])
            }),
            (Step::FwObserve, 200) => {
                run.seen_202 = false;
                run.seen_done = false;
                let t = if update {
                    tail::FIRMWARE_UPDATE
                } else {
                    tail::FIRMWARE_DOWNLOAD
                };
                dispatch(fx, org, run, Step::FwInitiate, t, wire::bare_request);
            }
            (Step::FwInitiate, 202) => run.seen_202 = true,
            (Step::FwCancel, 200) | (Step::Custom, 200) => finish(run, now, 0, None),
            (Step::FwInitiate, _) => {
                failed(run);
                send_cancel(fx, org, key);
            }
            (Step::Action | Step::FwSet | Step::FwObserve | Step::FwCancel | Step::Custom, _) => failed(run),
            (Step::Restart | Step::Done, _) => {}
        }
        self.settle(fx, now, org, key);
    }

    /// After a run moved: a firmware run with 202 and the final notify is cancelled (its
    /// success recorded); a completed run frees the device.
    pub(crate) fn settle(&mut self, fx: &mut Effects, now: u64, org: &str, key: &DevKey) {
        let Some(dev) = self.devices.get_mut(key) else {
            return;
        };
        let Some(id) = dev.active.clone() else {
            return;
        };
        let Some(r) = self.requests.get_mut(&id) else {
            dev.active = None;
            return;
        };
        r.updated_ms = now;
        self.dirty = true;
        let update = r.action == "firmware/update";
        let Some(run) = r.run_mut(key) else {
            dev.active = None;
            return;
        };
        if run.step == Step::FwInitiate && run.seen_202 && run.seen_done {
            dev.fw_settled = true;
            if update {
                if let Some(version) = dev
                    .firmware
                    .as_ref()
                    .map(|f| f.version.clone())
                    .filter(|v| !v.is_empty())
                {
                    fx.device_info.push((
                        org.into(),
                        key.0.clone(),
                        key.1.clone(),
                        json!({ "fwVersion": version }),
                    ));
                }
            }
            dispatch(fx, org, run, Step::FwCancel, tail::CANCEL, |r| {
                wire::fields_request(r, &[("mgmt.firmware", None)])
            });
        }
        if run.complete {
            dev.active = None;
        }
    }
}

/// A notified firmware state for device `key`, whose request `id` is in progress: the final
/// state (download: state 2; update: updateStatus 0) once the initiate was sent, or a
/// failure (updateStatus 2 to 6, status 500).
#[allow(clippy::too_many_arguments)]
pub(crate) fn firmware_progress(
    o: &mut OrgDm,
    fx: &mut Effects,
    now: u64,
    org: &str,
    key: &DevKey,
    id: &str,
    state: Option<i64>,
    update_status: Option<i64>,
) {
    let Some(r) = o.requests.get_mut(id) else {
        return;
    };
    let update = r.action == "firmware/update";
    let Some(run) = r.run_mut(key).filter(|run| run.step == Step::FwInitiate) else {
        return;
    };
    if let Some(u) = update_status.filter(|u| (2..=6).contains(u)) {
        let what = if update { "update" } else { "download" };
        let message = format!("firmware {what} failed: updateStatus {u} ({})", update_status_name(u));
        finish(run, now, 500, Some(&message));
        send_cancel(fx, org, key);
    } else if (update && update_status == Some(0)) || (!update && state == Some(2)) {
        run.seen_done = true;
    }
    o.settle(fx, now, org, key);
}

fn update_status_name(u: i64) -> &'static str {
    match u {
        2 => "out of memory",
        3 => "connection lost",
        4 => "verification failed",
        5 => "unsupported image",
        6 => "invalid URI",
        _ => "unknown",
    }
}
