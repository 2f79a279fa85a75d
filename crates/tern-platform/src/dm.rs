//! Device management (the Device Management Protocol of the IBM Watson IoT Platform): the
//! model and a pure state machine. Devices become *managed* with `iotdevice-1/mgmt/manage`,
//! report location, diagnostics and firmware state, and carry out the *requests*
//! applications start over REST (reboot, factory reset, firmware download and update,
//! custom actions of a registered bundle), each a fixed sequence of messages on
//! `iotdm-1/...` answered on `iotdevice-1/response` (docs/device-management.md).
//!
//! [`Dm`] does no I/O besides reading its files at [`Dm::open`] and writing them at
//! [`Dm::flush`] (`platform/dm/<org>.json`, see `dm_store`); the time is passed in as
//! milliseconds since the Unix epoch, so tests drive it with a fake clock. Every entry
//! point returns [`Effects`]: the messages to publish to devices (the caller publishes each
//! [`Outgoing`] at QoS 1 on [`Outgoing::topic`]) and the registry changes to make. The
//! device side is in `dm_device`, requests in `dm_requests`, the REST reads and writes in
//! `dm_rest`, the wire formats in [`crate::dm_wire`].
//!
//! Limits, which keep memory bounded: [`MAX_REQUEST_DEVICES`] devices per request,
//! [`MAX_REQUESTS`] requests per organization (completed ones kept [`RETENTION_MS`]),
//! [`MAX_ERROR_CODES`] error codes and [`MAX_LOG_BYTES`] of logs (kept [`RETENTION_MS`]) per
//! device, [`MAX_BUNDLES`] custom action bundles per organization, and the last
//! [`DEVICE_REQUESTS_SHOWN`] requests in a device's `mgmt` view.

use crate::dm_wire::{self as wire};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::{Path, PathBuf};

/// Devices one request may name.
pub const MAX_REQUEST_DEVICES: usize = 5_000;
/// Bytes of a request's parameters (names and JSON values; each device is sent them).
pub const MAX_PARAMETER_BYTES: usize = 16 * 1024;
/// Requests kept per organization; past it the oldest completed one goes, and a new
/// request is refused (429) while all of them are still in progress.
pub const MAX_REQUESTS: usize = 1_000;
/// How long completed requests and diagnostic logs are kept (7 days).
pub const RETENTION_MS: u64 = 7 * 86_400_000;
/// Error codes kept per device (the oldest go first).
pub const MAX_ERROR_CODES: usize = 100;
/// Bytes of diagnostic logs kept per device (message, data and timestamp of each, plus
/// [`LOG_OVERHEAD`]); the oldest go first.
pub const MAX_LOG_BYTES: usize = 500 * 1024;
/// What a log entry costs besides its strings.
pub const LOG_OVERHEAD: usize = 64;
/// Custom action bundles per organization.
pub const MAX_BUNDLES: usize = 100;
/// Bytes of one bundle's JSON.
pub const MAX_BUNDLE_BYTES: usize = 64 * 1024;
/// Requests listed in a device's `mgmt` view (the newest).
pub const DEVICE_REQUESTS_SHOWN: usize = 20;
/// A request's default timeout, in seconds.
pub const DEFAULT_TIMEOUT_SECS: u64 = 600;
/// A request's longest timeout, in seconds (a day).
pub const MAX_TIMEOUT_SECS: u64 = 86_400;
/// Shortest lifetime a device may manage with, besides 0 (never dormant), in seconds.
pub const MIN_LIFETIME_SECS: u64 = 3_600;
/// An organization's file is written at most at this rate on average by
/// [`Dm::flush_due`] (a 4 MiB file: once a second).
pub const WRITE_BYTES_PER_SECOND: usize = 4 << 20;
/// How often [`Dm::tick`] sweeps old requests and logs.
pub const SWEEP_INTERVAL_MS: u64 = 60_000;

/// A message for a device, to be published at QoS 1, not retained, on
/// `$iot/<org>/iotdm-1/type/<type_id>/id/<device_id>/<tail>` ([`Outgoing::topic`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    pub org: String,
    pub type_id: String,
    pub device_id: String,
    /// After `iotdm-1/`, e.g. `response` or `mgmt/initiate/device/reboot`.
    pub tail: String,
    /// Always a JSON object with a `reqId`.
    pub payload: Vec<u8>,
}

impl Outgoing {
    /// The broker topic to publish it on.
    pub fn topic(&self) -> String {
        format!(
            "{}/{}/iotdm-1/type/{}/id/{}/{}",
            crate::topics::ROOT,
            self.org,
            self.type_id,
            self.device_id,
            self.tail
        )
    }
}

/// What an operation asks of the world besides its result.
#[derive(Debug, Default)]
pub struct Effects {
    /// Messages to publish to devices, in order.
    pub outgoing: Vec<Outgoing>,
    /// (org, type, device, object): keys to merge into the registry device's `deviceInfo`
    /// (a manage's non-null deviceInfo keys; `fwVersion` after a firmware update). Only
    /// sent when there is something to merge; the caller skips the write if nothing changes.
    pub device_info: Vec<(String, String, String, Value)>,
    /// (org, type, device, object): the registry device's new `metadata` (a manage with a
    /// non-empty metadata object, or a notify of the `metadata` field).
    pub metadata: Vec<(String, String, String, Value)>,
}

impl Effects {
    pub(crate) fn send(&mut self, org: &str, key: &DevKey, tail: &str, payload: Vec<u8>) {
        self.outgoing.push(Outgoing {
            org: org.to_string(),
            type_id: key.0.clone(),
            device_id: key.1.clone(),
            tail: tail.to_string(),
            payload,
        });
    }
}

/// A request to start, as REST (or the CLI's inbox) parsed it.
#[derive(Debug, Clone)]
pub struct Initiate {
    /// `device/reboot`, `device/factoryReset`, `firmware/download`, `firmware/update` or
    /// `<bundleId>/<actionId>`.
    pub action: String,
    /// (name, value) pairs; unknown names are ignored.
    pub parameters: Vec<(String, Value)>,
    /// (type, device) pairs; duplicates are folded.
    pub devices: Vec<(String, String)>,
    /// 1 to [`MAX_TIMEOUT_SECS`]; callers use [`DEFAULT_TIMEOUT_SECS`] when none was given.
    pub timeout_secs: u64,
    /// Whether a device's request in progress is ended (status 409) rather than refusing it.
    pub override_: bool,
}

/// Why an operation was refused: an HTTP status (400, 403, 404, 409, 429) and a message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{status}: {message}")]
pub struct DmRefusal {
    pub status: u16,
    pub message: String,
}

impl DmRefusal {
    pub(crate) fn new(status: u16, message: impl Into<String>) -> DmRefusal {
        DmRefusal {
            status,
            message: message.into(),
        }
    }
}

/// Why the store cannot be written.
#[derive(Debug, thiserror::Error)]
pub enum DmStoreError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// A device of an organization: (type, id).
pub(crate) type DevKey = (String, String);

/// A device's firmware as it reported it (`mgmt.firmware`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub(crate) struct Firmware {
    pub version: String,
    pub name: String,
    pub uri: String,
    pub verifier: String,
    /// 0 idle, 1 downloading, 2 downloaded.
    pub state: i64,
    /// 0 success, 1 in progress, 2..6 failures.
    pub update_status: i64,
    pub updated_ms: u64,
}

impl Firmware {
    /// The seven keys the SDK requires.
    pub fn to_json(&self) -> Value {
        serde_json::json!({
            "version": self.version, "name": self.name, "uri": self.uri,
            "verifier": self.verifier, "state": self.state, "updateStatus": self.update_status,
            "updatedDateTime": wire::timestamp(self.updated_ms),
        })
    }
}

/// One error code a device reported.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ErrorCode {
    pub error_code: i64,
    pub timestamp: String,
}

/// One diagnostic log entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct LogEntry {
    pub id: u64,
    pub message: String,
    pub severity: i64,
    pub data: String,
    pub timestamp: String,
    pub added_ms: u64,
}

impl LogEntry {
    pub fn cost(&self) -> usize {
        self.message.len() + self.data.len() + self.timestamp.len() + LOG_OVERHEAD
    }
}

/// What the platform knows of one device's management.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub(crate) struct DeviceMgmt {
    pub type_id: String,
    pub device_id: String,
    pub managed: bool,
    /// Seconds without a manage before the device is dormant; 0 never.
    pub lifetime: u64,
    pub supports: Map<String, Value>,
    /// When the current managed period started.
    pub managed_ms: u64,
    pub last_manage_ms: u64,
    pub last_activity_ms: u64,
    pub dormant_ms: Option<u64>,
    pub firmware: Option<Firmware>,
    /// A firmware request ended well: late in-progress notifies are ignored.
    pub fw_settled: bool,
    pub location: Option<Value>,
    pub error_codes: VecDeque<ErrorCode>,
    pub logs: VecDeque<LogEntry>,
    pub log_bytes: usize,
    pub next_log_id: u64,
    /// Connections seen (the reboot completion rule).
    pub conn_gen: u64,
    /// When the device last connected (the same rule on a cluster, where connections are
    /// counted on several nodes).
    pub connected_ms: u64,
    /// The request in progress for the device.
    pub active: Option<String>,
}

impl DeviceMgmt {
    pub fn new(key: &DevKey) -> DeviceMgmt {
        DeviceMgmt {
            type_id: key.0.clone(),
            device_id: key.1.clone(),
            next_log_id: 1,
            ..DeviceMgmt::default()
        }
    }

    /// Whether `supports.<name>` is true.
    pub fn supports(&self, name: &str) -> bool {
        self.supports.get(name).and_then(Value::as_bool).unwrap_or(false)
    }

    pub fn add_log(&mut self, input: wire::LogInput, now_ms: u64) {
        let entry = LogEntry {
            id: self.next_log_id,
            message: input.message,
            severity: input.severity,
            data: input.data,
            timestamp: input.timestamp,
            added_ms: now_ms,
        };
        self.next_log_id += 1;
        self.log_bytes += entry.cost();
        self.logs.push_back(entry);
        while self.log_bytes > MAX_LOG_BYTES {
            match self.logs.pop_front() {
                Some(old) => self.log_bytes = self.log_bytes.saturating_sub(old.cost()),
                None => self.log_bytes = 0,
            }
        }
    }

    pub fn add_error_code(&mut self, error_code: i64, timestamp: String) {
        self.error_codes.push_back(ErrorCode { error_code, timestamp });
        while self.error_codes.len() > MAX_ERROR_CODES {
            self.error_codes.pop_front();
        }
    }
}

/// Where a device's part of a request is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Step {
    /// Reboot or factory reset sent, waiting for 202.
    Action,
    /// 202 received, waiting for a manage from a later connection.
    Restart,
    /// `device/update` with mgmt.firmware sent, waiting for 204.
    FwSet,
    /// `observe` sent, waiting for 200.
    FwObserve,
    /// Firmware download/update initiated: waiting for 202 and the final notify.
    FwInitiate,
    /// `cancel` sent, waiting for 200.
    FwCancel,
    /// Custom action sent, waiting for 200.
    Custom,
    /// Complete.
    Done,
}

/// One device's part of a request.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct DeviceRun {
    pub type_id: String,
    pub device_id: String,
    /// 0 done, 1 in progress, else the failure code.
    pub status: u16,
    pub message: Option<String>,
    pub complete: bool,
    pub updated_ms: u64,
    pub step: Step,
    /// The reqId of the message waiting for an answer.
    pub pending: Option<String>,
    /// The last message sent (for a resend when it reached nobody).
    pub tail: String,
    pub payload: String,
    /// The last message reached no session: resent after the device's next manage.
    pub undelivered: bool,
    pub seen_202: bool,
    /// The final firmware notify (state 2 / updateStatus 0) arrived.
    pub seen_done: bool,
    /// The device's connection generation when it accepted a reboot.
    pub restart_gen: u64,
    /// Events were lost: any manage after the 202 completes a reboot.
    pub any_manage: bool,
}

impl DeviceRun {
    pub fn key(&self) -> DevKey {
        (self.type_id.clone(), self.device_id.clone())
    }
}

/// A request of an organization.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct MgmtRequest {
    pub id: String,
    pub action: String,
    pub parameters: Vec<(String, Value)>,
    pub created_ms: u64,
    pub updated_ms: u64,
    pub timeout_secs: u64,
    /// Sorted by (type, device).
    pub runs: Vec<DeviceRun>,
}

impl MgmtRequest {
    pub fn run_mut(&mut self, key: &DevKey) -> Option<&mut DeviceRun> {
        let at = self
            .runs
            .binary_search_by(|r| (r.type_id.as_str(), r.device_id.as_str()).cmp(&(&key.0, &key.1)))
            .ok()?;
        self.runs.get_mut(at)
    }

    pub fn run(&self, key: &DevKey) -> Option<&DeviceRun> {
        let at = self
            .runs
            .binary_search_by(|r| (r.type_id.as_str(), r.device_id.as_str()).cmp(&(&key.0, &key.1)))
            .ok()?;
        self.runs.get(at)
    }

    pub fn complete(&self) -> bool {
        self.runs.iter().all(|r| r.complete)
    }

    /// 1 while any device is in progress, else the first failure, else 0.
    pub fn status(&self) -> u16 {
        if !self.complete() {
            return 1;
        }
        self.runs.iter().map(|r| r.status).find(|s| *s != 0).unwrap_or(0)
    }
}

/// One organization's device management state.
#[derive(Debug, Default)]
pub(crate) struct OrgDm {
    pub devices: HashMap<DevKey, DeviceMgmt>,
    pub requests: HashMap<String, MgmtRequest>,
    /// Custom action bundles by id (their JSON as given).
    pub bundles: BTreeMap<String, Value>,
    /// Changed since last written.
    pub dirty: bool,
    /// When its file was last written, and how large it was (see [`Dm::flush_due`]).
    pub written: Option<(std::time::Instant, usize)>,
}

/// Device management of every organization.
#[derive(Debug)]
pub struct Dm {
    pub(crate) orgs: Mutex<HashMap<String, OrgDm>>,
    /// `platform/dm` in the data directory.
    pub(crate) dir: PathBuf,
    /// Held while files are written.
    pub(crate) writing: Mutex<()>,
    /// When [`Dm::tick`] last swept old requests and logs.
    pub(crate) last_sweep_ms: Mutex<u64>,
    /// Set on a node of a cluster ([`Dm::share`]).
    pub(crate) shared: std::sync::OnceLock<crate::dm_share::Sharing>,
}

/// The store's directory inside a data directory.
pub fn dm_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("platform").join("dm")
}

impl Dm {
    /// Device management kept in `data_dir`, its files read (`<data>/platform/dm/<org>.json`);
    /// a damaged file is logged and skipped.
    pub fn open(data_dir: &Path) -> Dm {
        let dir = dm_dir(data_dir);
        let orgs = crate::dm_store::load_all(&dir);
        Dm {
            orgs: Mutex::new(orgs),
            dir,
            writing: Mutex::new(()),
            last_sweep_ms: Mutex::new(0),
            shared: std::sync::OnceLock::new(),
        }
    }

    /// Writes every organization changed since it was last written (atomically, mode
    /// 0600): at a stop. Blocking: call off the runtime. Returns the first error; an
    /// organization whose write failed is written again next time.
    pub fn flush(&self) -> Result<(), DmStoreError> {
        if self.shared.get().is_some() {
            return self.sync(true);
        }
        self.write_changed(true)
    }

    /// As [`Dm::flush`], but an organization whose last file was large waits
    /// ([`WRITE_BYTES_PER_SECOND`]) before it is written again, so a flood of manages or
    /// logs cannot keep the disk busy rewriting one big file: for the periodic flush.
    pub fn flush_due(&self) -> Result<(), DmStoreError> {
        if self.shared.get().is_some() {
            return self.sync(false);
        }
        self.write_changed(false)
    }

    fn write_changed(&self, all: bool) -> Result<(), DmStoreError> {
        let _writing = self.writing.lock();
        let mut first = Ok(());
        for (org, body) in self.take_dirty(all) {
            if let Err(e) = crate::dm_store::write_org(&self.dir, &org, body.as_deref()) {
                tracing::warn!("device management of {org} not saved: {e}");
                if let Some(o) = self.orgs.lock().get_mut(&org) {
                    o.dirty = true;
                }
                if first.is_ok() {
                    first = Err(e);
                }
            }
        }
        first
    }

    /// The changed organizations (all, or those due) with their files' bodies (`None`:
    /// nothing left, remove the file).
    fn take_dirty(&self, all: bool) -> Vec<(String, Option<Vec<u8>>)> {
        let now = std::time::Instant::now();
        let mut orgs = self.orgs.lock();
        let mut out = Vec::new();
        for (org, o) in orgs.iter_mut().filter(|(_, o)| o.dirty) {
            let early = o.written.is_some_and(|(at, bytes)| {
                let pause = std::time::Duration::from_secs_f64(bytes as f64 / WRITE_BYTES_PER_SECOND as f64);
                now.saturating_duration_since(at) < pause
            });
            if early && !all {
                continue;
            }
            o.dirty = false;
            let body = crate::dm_store::encode(o);
            o.written = Some((now, body.as_ref().map_or(0, Vec::len)));
            out.push((org.clone(), body));
        }
        orgs.retain(|_, o| o.dirty || !o.devices.is_empty() || !o.requests.is_empty() || !o.bundles.is_empty());
        out
    }

    /// A message a device published on `iotdevice-1/<tail>` (`tail` as `mgmt/manage`),
    /// directly. The effects include the answer on `iotdm-1/response` when one is due.
    pub fn on_device(
        &self,
        now_ms: u64,
        org: &str,
        type_id: &str,
        device_id: &str,
        tail: &str,
        payload: &[u8],
    ) -> Effects {
        self.on_device_from(now_ms, org, type_id, device_id, false, tail, payload)
    }

    /// As [`Dm::on_device`], saying whether a gateway sent it for the device (a device
    /// behind a gateway has no connections of its own: any manage after it accepted a
    /// reboot completes the reboot).
    #[allow(clippy::too_many_arguments)]
    pub fn on_device_from(
        &self,
        now_ms: u64,
        org: &str,
        type_id: &str,
        device_id: &str,
        via_gateway: bool,
        tail: &str,
        payload: &[u8],
    ) -> Effects {
        let mut fx = Effects::default();
        let key = (type_id.to_string(), device_id.to_string());
        let mut orgs = self.orgs.lock();
        let o = orgs.entry(org.to_string()).or_default();
        o.on_device(&mut fx, now_ms, org, &key, via_gateway, tail, payload);
        fx
    }

    /// Device `type_id`/`device_id` of `org` connected (its connection generation goes up;
    /// a reboot it accepted completes on a manage from a later generation).
    pub fn on_connected(&self, org: &str, type_id: &str, device_id: &str) {
        self.on_connected_at(crate::lec::now_ms(), org, type_id, device_id);
    }

    /// As [`Dm::on_connected`], the connection made at `now_ms`.
    pub fn on_connected_at(&self, now_ms: u64, org: &str, type_id: &str, device_id: &str) {
        let mut orgs = self.orgs.lock();
        let key = (type_id.to_string(), device_id.to_string());
        if let Some(o) = orgs.get_mut(org) {
            if let Some(dev) = o.devices.get_mut(&key) {
                dev.conn_gen += 1;
                dev.connected_ms = now_ms;
            }
        }
    }

    /// The caller lost events (the event stream fell behind): reboots in progress complete
    /// on any manage after their 202, since a connection may have gone unseen.
    pub fn lost_events(&self) {
        let mut orgs = self.orgs.lock();
        for o in orgs.values_mut() {
            for r in o.requests.values_mut() {
                for run in r
                    .runs
                    .iter_mut()
                    .filter(|r| matches!(r.step, Step::Action | Step::Restart))
                {
                    run.any_manage = true;
                }
            }
        }
    }

    /// A message of [`Effects::outgoing`] (`org`, `type_id`, `device_id`, `tail` as in the
    /// [`Outgoing`]) reached no session: the device is offline without a persistent session,
    /// or not yet subscribed. If it is the step its request waits on, that step is sent again
    /// (same reqId) right after the device's next manage (the SDK manages once its
    /// subscriptions exist); the request's timeout still runs. Other messages (answers,
    /// cancels, location pushes) are not resent.
    pub fn undelivered(&self, org: &str, type_id: &str, device_id: &str, tail: &str) {
        if self.shared.get().is_some() {
            // Only this node's sessions are counted: the device may be on another node.
            return;
        }
        let key = (type_id.to_string(), device_id.to_string());
        let mut orgs = self.orgs.lock();
        let Some(o) = orgs.get_mut(org) else {
            return;
        };
        let Some(active) = o.devices.get(&key).and_then(|d| d.active.clone()) else {
            return;
        };
        if let Some(run) = o.requests.get_mut(&active).and_then(|r| r.run_mut(&key)) {
            if run.pending.is_some() && run.tail == tail && !run.complete {
                run.undelivered = true;
                o.dirty = true;
            }
        }
    }

    /// Device `type_id`/`device_id` left `org`'s registry: its state goes, and its part of
    /// requests in progress ends (status 404).
    pub fn forget_device(&self, org: &str, type_id: &str, device_id: &str) {
        let now_ms = crate::lec::now_ms();
        let key = (type_id.to_string(), device_id.to_string());
        let mut orgs = self.orgs.lock();
        let Some(o) = orgs.get_mut(org) else {
            return;
        };
        if let Some(dev) = o.devices.remove(&key) {
            o.dirty = true;
            if let Some(run) = dev.active.and_then(|id| o.requests.get_mut(&id)).and_then(|r| {
                r.updated_ms = now_ms;
                r.run_mut(&key)
            }) {
                crate::dm_requests::finish(run, now_ms, wire::RC_NOT_FOUND, Some("the device was removed"));
            }
        }
    }

    /// Forgets what the registry no longer has: organizations `has_org` denies, and
    /// devices `has_device` denies ([`Dm::forget_org`], [`Dm::forget_device`]).
    pub fn forget_removed(&self, has_org: impl Fn(&str) -> bool, has_device: impl Fn(&str, &str, &str) -> bool) {
        let known: Vec<(String, Vec<DevKey>)> = self
            .orgs
            .lock()
            .iter()
            .map(|(org, o)| (org.clone(), o.devices.keys().cloned().collect()))
            .collect();
        for (org, devices) in known {
            if !has_org(&org) {
                self.forget_org(&org);
                continue;
            }
            for (t, d) in devices.iter().filter(|(t, d)| !has_device(&org, t, d)) {
                self.forget_device(&org, t, d);
            }
        }
    }

    /// Organization `org` was deleted: everything of it goes (its file at the next flush).
    pub fn forget_org(&self, org: &str) {
        let mut orgs = self.orgs.lock();
        if let Some(o) = orgs.get_mut(org) {
            *o = OrgDm {
                dirty: true,
                ..OrgDm::default()
            };
        }
    }
}
