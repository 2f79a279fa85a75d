//! The last event cache (LEC): for each organization that has it enabled
//! (`PUT /api/v0002/config/lec`), the last message of each event id of each device,
//! read back with `GET /api/v0002/device/types/<t>/devices/<d>/events[/<e>]`.
//!
//! It is a consumer of the broker's event stream ([`crate::lec_task`]): every message the broker
//! accepts under a device's event topic (`$iot/<org>/iot-2/type/<t>/id/<d>/evt/<e>/fmt/<f>`,
//! see [`crate::topics`]), whether a device sent it over MQTT, a gateway for it, or an HTTP
//! client through the REST API, is put in the cache as soon as the task sees it, so it can
//! be read at once (well within a second). Publishers never wait for the cache: the event
//! stream is a bounded ring, and a cache that falls more than its length behind loses
//! events (the broker counts them) rather than slowing anyone down.
//!
//! Limits, which keep its memory bounded:
//! - [`EVENTS_PER_DEVICE`] event ids per device (the platform's own limit): a sixth event
//!   id replaces the device's least recently cached one;
//! - [`MAX_ORG_BYTES`] per organization (payloads, ids and a per-entry overhead): past
//!   it, the oldest tenth of that organization's entries is dropped, so one busy
//!   organization cannot push another's events out;
//! - [`MAX_BYTES`] for the whole cache: past it, the oldest tenth of all entries goes;
//! - a message larger than a sixteenth of [`MAX_ORG_BYTES`] is not cached;
//! - an entry older than its organization's time to live (`ttlDays`, 1 to 45 days) is
//!   never returned and is removed by a sweep each minute.
//!
//! Kept across restarts: each organization's cache is a file,
//! `platform/lec/<org>.json` in the data directory, written off the publish path by the
//! flush task at most once per [`FLUSH_INTERVAL`] for organizations whose cache changed
//! (a large one less often: [`WRITE_BYTES_PER_SECOND`]), as a whole new file renamed
//! over the old one (so kill -9 leaves the previous or the new version, never half of
//! one), and all of them at a clean stop. What arrived since the last write before a
//! kill -9 is lost, as on the platform, whose cache is written in batches too.

use crate::registry::Registry;
use crate::topics::ROOT;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use bytes::Bytes;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Event ids kept per device.
pub const EVENTS_PER_DEVICE: usize = 5;
/// Bytes the whole cache holds at most (payloads, ids and [`ENTRY_OVERHEAD`] each).
pub const MAX_BYTES: usize = 64 << 20;
/// Bytes one organization's cache holds at most.
pub const MAX_ORG_BYTES: usize = 16 << 20;
/// What an entry costs besides its payload and ids (allocation headers, timestamps).
const ENTRY_OVERHEAD: usize = 96;
/// How often changed organizations are written to disk.
pub const FLUSH_INTERVAL: Duration = Duration::from_secs(1);
/// An organization's file is written at most at this rate on average: a cache of more
/// than this many bytes is written less often than every [`FLUSH_INTERVAL`] (16 MiB:
/// every 4 seconds).
pub const WRITE_BYTES_PER_SECOND: usize = 4 << 20;
/// The file format's version.
const FORMAT_VERSION: u32 = 1;

/// Why the cache's files cannot be read or written.
#[derive(Debug, thiserror::Error)]
pub enum LecError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is damaged: {what}")]
    Damaged { path: PathBuf, what: String },
}

/// One cached message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachedEvent {
    pub type_id: String,
    pub device_id: String,
    pub event_id: String,
    pub format: String,
    pub payload: Bytes,
    /// When it was cached, in milliseconds since the Unix epoch.
    pub cached_ms: u64,
}

impl CachedEvent {
    fn cost(&self) -> usize {
        self.payload.len()
            + self.type_id.len()
            + self.device_id.len()
            + self.event_id.len()
            + self.format.len()
            + ENTRY_OVERHEAD
    }

    /// As the REST API returns it: the payload in base64, the time it was cached.
    pub fn to_api_json(&self) -> serde_json::Value {
        serde_json::json!({
            "typeId": self.type_id,
            "deviceId": self.device_id,
            "eventId": self.event_id,
            "format": self.format,
            "payload": STANDARD.encode(&self.payload),
            "timestamp": timestamp(self.cached_ms),
        })
    }
}

/// `2016-03-14T14:12:06.527+0000` for milliseconds since the Unix epoch.
pub fn timestamp(ms: u64) -> String {
    let seconds = crate::registry_model::iso8601(ms / 1000);
    // iso8601 writes `.000+0000`; put the milliseconds in.
    match seconds.strip_suffix(".000+0000") {
        Some(head) => format!("{head}.{:03}+0000", ms % 1000),
        None => seconds,
    }
}

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// One organization's cache: per device (type, id), its last event of each event id.
#[derive(Debug, Default)]
struct OrgCache {
    devices: HashMap<(String, String), Vec<CachedEvent>>,
    /// What its entries cost.
    bytes: usize,
    /// Changed since last written.
    dirty: bool,
    /// When it was last written.
    written: Option<std::time::Instant>,
}

#[derive(Debug, Default)]
struct Inner {
    orgs: HashMap<String, OrgCache>,
    bytes: usize,
}

/// The cache of every organization.
#[derive(Debug)]
pub struct Lec {
    inner: Mutex<Inner>,
    /// `platform/lec` in the data directory.
    dir: PathBuf,
    /// Bytes held at most (normally [`MAX_BYTES`]).
    max_bytes: usize,
    /// Bytes held per organization at most (normally [`MAX_ORG_BYTES`]).
    max_org_bytes: usize,
    /// How the cache gets the broker's messages.
    pub(crate) feed: crate::feed::Feed,
    /// Held while files are written, so two flushes (the flush task's last one and the
    /// one at a stop) never write one file at once.
    writing: Mutex<()>,
}

/// One line of an organization's file.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct StoredEvent {
    type_id: String,
    device_id: String,
    event_id: String,
    format: String,
    /// Base64.
    payload: String,
    cached_ms: u64,
}

#[derive(Debug, Serialize, Deserialize)]
struct StoredOrg {
    version: u32,
    events: Vec<StoredEvent>,
}

/// The cache's directory inside a data directory.
pub fn lec_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("platform").join("lec")
}

impl Lec {
    /// An empty cache that keeps its files in `data_dir`.
    pub fn new(data_dir: &Path) -> Lec {
        Lec::with_limits(data_dir, MAX_BYTES, MAX_ORG_BYTES)
    }

    /// With limits other than [`MAX_BYTES`] and [`MAX_ORG_BYTES`] (for tests).
    pub fn with_limits(data_dir: &Path, max_bytes: usize, max_org_bytes: usize) -> Lec {
        Lec {
            inner: Mutex::new(Inner::default()),
            dir: lec_dir(data_dir),
            max_bytes,
            max_org_bytes: max_org_bytes.min(max_bytes),
            feed: crate::feed::Feed::default(),
            writing: Mutex::new(()),
        }
    }

    /// Puts a message in organization `org`'s cache, replacing the device's previous one of
    /// the same event id. One too large to cache removes that previous one (it is no
    /// longer the last).
    pub fn insert(&self, org: &str, event: CachedEvent) {
        let cost = event.cost();
        let mut inner = self.inner.lock();
        if cost > self.max_org_bytes / 16 {
            let key = (event.type_id, event.device_id);
            let Some(cache) = inner.orgs.get_mut(org) else {
                return;
            };
            let Some(device) = cache.devices.get_mut(&key) else {
                return;
            };
            let Some(at) = device.iter().position(|e| e.event_id == event.event_id) else {
                return;
            };
            let freed = device.swap_remove(at).cost();
            if device.is_empty() {
                cache.devices.remove(&key);
            }
            cache.bytes -= freed;
            cache.dirty = true;
            inner.bytes -= freed;
            return;
        }
        let cache = inner.orgs.entry(org.to_string()).or_default();
        cache.dirty = true;
        let device = cache
            .devices
            .entry((event.type_id.clone(), event.device_id.clone()))
            .or_default();
        let mut freed = 0;
        if let Some(at) = device.iter().position(|e| e.event_id == event.event_id) {
            freed = device.swap_remove(at).cost();
        } else if device.len() >= EVENTS_PER_DEVICE {
            if let Some(oldest) = (0..device.len()).min_by_key(|&i| device[i].cached_ms) {
                freed = device.swap_remove(oldest).cost();
            }
        }
        device.push(event);
        cache.bytes = cache.bytes + cost - freed;
        let org_bytes = cache.bytes;
        inner.bytes = inner.bytes + cost - freed;
        if org_bytes > self.max_org_bytes {
            shrink(&mut inner, Some(org), self.max_org_bytes - self.max_org_bytes / 10);
        }
        if inner.bytes > self.max_bytes {
            shrink(&mut inner, None, self.max_bytes - self.max_bytes / 10);
        }
    }

    /// Device `type_id`/`device_id`'s cached events of `org` not older than `ttl`, by event id.
    pub fn device_events(&self, org: &str, type_id: &str, device_id: &str, ttl: Duration) -> Vec<CachedEvent> {
        let oldest = oldest_kept(ttl);
        let inner = self.inner.lock();
        let mut found: Vec<CachedEvent> = inner
            .orgs
            .get(org)
            .and_then(|c| c.devices.get(&(type_id.to_string(), device_id.to_string())))
            .map(|events| events.iter().filter(|e| e.cached_ms >= oldest).cloned().collect())
            .unwrap_or_default();
        found.sort_by(|a, b| a.event_id.cmp(&b.event_id));
        found
    }

    /// Forgets organization `org`'s cache (its LEC was disabled); its file goes at the
    /// next flush.
    pub fn clear_org(&self, org: &str) {
        let mut inner = self.inner.lock();
        if let Some(mut cache) = inner.orgs.remove(org) {
            let freed: usize = cache.devices.values().flatten().map(CachedEvent::cost).sum();
            inner.bytes -= freed;
            cache.devices.clear();
            cache.bytes = 0;
            cache.dirty = true;
            inner.orgs.insert(org.to_string(), cache);
        }
    }

    /// Bytes held now (as [`MAX_BYTES`] counts them).
    pub fn bytes(&self) -> usize {
        self.inner.lock().bytes
    }

    /// Removes entries older than their organization's time to live (`ttl_of` gives it,
    /// `None` for an organization whose cache is off or gone: all of its entries go).
    pub fn sweep(&self, ttl_of: impl Fn(&str) -> Option<Duration>) {
        let mut inner = self.inner.lock();
        let mut freed = 0;
        for (org, cache) in &mut inner.orgs {
            let oldest = ttl_of(org).map_or(u64::MAX, oldest_kept);
            for events in cache.devices.values_mut() {
                let before = events.len();
                let mut freed_here = 0;
                events.retain(|e| {
                    let keep = e.cached_ms >= oldest;
                    if !keep {
                        freed_here += e.cost();
                    }
                    keep
                });
                cache.bytes -= freed_here;
                freed += freed_here;
                cache.dirty |= events.len() != before;
            }
            cache.devices.retain(|_, events| !events.is_empty());
        }
        inner.bytes -= freed;
    }

    /// Reads every organization's file (at start). A damaged file is reported and skipped.
    pub fn load(&self) -> Vec<LecError> {
        let mut errors = Vec::new();
        let files = match crate::org_files::list(&self.dir) {
            Ok(files) => files,
            Err(source) => {
                errors.push(LecError::Io {
                    path: self.dir.clone(),
                    source,
                });
                return errors;
            }
        };
        for (org, path) in files {
            let org = org.as_str();
            match read_file(&path) {
                Ok(events) => {
                    for event in events {
                        self.insert(org, event);
                    }
                    if let Some(cache) = self.inner.lock().orgs.get_mut(org) {
                        cache.dirty = false;
                    }
                }
                Err(e) => errors.push(e),
            }
        }
        errors
    }

    /// Takes the organizations changed since they were last written, with their
    /// entries: all of them, or (`all` false) those whose size allows a write now.
    fn take_dirty(&self, all: bool) -> Vec<(String, Vec<CachedEvent>)> {
        let now = std::time::Instant::now();
        let mut inner = self.inner.lock();
        let mut out = Vec::new();
        for (org, cache) in &mut inner.orgs {
            let pause = Duration::from_secs_f64(cache.bytes as f64 / WRITE_BYTES_PER_SECOND as f64);
            let early = cache
                .written
                .is_some_and(|at| now.saturating_duration_since(at) < pause);
            if cache.dirty && (all || !early) {
                cache.dirty = false;
                cache.written = Some(now);
                out.push((org.clone(), cache.devices.values().flatten().cloned().collect()));
            }
        }
        inner.orgs.retain(|_, c| !c.devices.is_empty() || c.dirty);
        out
    }

    /// Writes every organization changed since it was last written (at a stop). Blocking:
    /// call off the runtime. An organization whose write failed is marked changed again.
    pub fn flush(&self) -> Vec<LecError> {
        self.write_changed(true)
    }

    /// Writes the changed organizations whose last write is long enough ago for their
    /// size ([`WRITE_BYTES_PER_SECOND`]). Blocking, as [`Lec::flush`].
    pub fn flush_due(&self) -> Vec<LecError> {
        self.write_changed(false)
    }

    fn write_changed(&self, all: bool) -> Vec<LecError> {
        let _writing = self.writing.lock();
        let mut errors = Vec::new();
        for (org, events) in self.take_dirty(all) {
            if let Err(e) = write_file(&self.dir, &org, &events) {
                errors.push(e);
                if let Some(cache) = self.inner.lock().orgs.get_mut(&org) {
                    cache.dirty = true;
                }
            }
        }
        errors
    }
}

/// The first cached time still within `ttl`.
fn oldest_kept(ttl: Duration) -> u64 {
    now_ms().saturating_sub(u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX))
}

/// Drops the oldest entries (of organization `only`, or of all) until at most `target`
/// bytes are held (by that organization, or by all).
fn shrink(inner: &mut Inner, only: Option<&str>, target: usize) {
    let mut all: Vec<(u64, String, (String, String), String)> = inner
        .orgs
        .iter()
        .filter(|(org, _)| only.is_none_or(|o| o == org.as_str()))
        .flat_map(|(org, cache)| {
            cache.devices.iter().flat_map(move |(device, events)| {
                events
                    .iter()
                    .map(move |e| (e.cached_ms, org.clone(), device.clone(), e.event_id.clone()))
            })
        })
        .collect();
    all.sort_unstable_by_key(|(ms, ..)| *ms);
    for (_, org, device, event_id) in all {
        let held = match only {
            Some(o) => inner.orgs.get(o).map_or(0, |c| c.bytes),
            None => inner.bytes,
        };
        if held <= target {
            break;
        }
        let Some(cache) = inner.orgs.get_mut(&org) else {
            continue;
        };
        let Some(events) = cache.devices.get_mut(&device) else {
            continue;
        };
        if let Some(at) = events.iter().position(|e| e.event_id == event_id) {
            let cost = events.swap_remove(at).cost();
            cache.bytes -= cost;
            cache.dirty = true;
            if events.is_empty() {
                cache.devices.remove(&device);
            }
            inner.bytes -= cost;
        }
    }
    match only {
        Some(org) => tracing::warn!("last event cache of {org} full: its oldest entries dropped"),
        None => tracing::warn!("last event cache full ({} bytes): oldest entries dropped", inner.bytes),
    }
}

fn read_file(path: &Path) -> Result<Vec<CachedEvent>, LecError> {
    let damaged = |what: String| LecError::Damaged {
        path: path.to_path_buf(),
        what,
    };
    let text = std::fs::read(path).map_err(|source| LecError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let stored: StoredOrg = serde_json::from_slice(&text).map_err(|e| damaged(e.to_string()))?;
    if stored.version != FORMAT_VERSION {
        return Err(damaged(format!("unknown format version {}", stored.version)));
    }
    stored
        .events
        .into_iter()
        .map(|s| {
            let payload = STANDARD
                .decode(&s.payload)
                .map_err(|e| damaged(format!("payload of {}/{}: {e}", s.type_id, s.device_id)))?;
            Ok(CachedEvent {
                type_id: s.type_id,
                device_id: s.device_id,
                event_id: s.event_id,
                format: s.format,
                payload: Bytes::from(payload),
                cached_ms: s.cached_ms,
            })
        })
        .collect()
}

/// Replaces `org`'s file with `events` (removes it when there are none): a temporary file
/// written and flushed, renamed over the old one, the directory flushed.
fn write_file(dir: &Path, org: &str, events: &[CachedEvent]) -> Result<(), LecError> {
    let io = |(path, source)| LecError::Io { path, source };
    if events.is_empty() {
        return crate::org_files::replace(dir, org, None).map_err(io);
    }
    let stored = StoredOrg {
        version: FORMAT_VERSION,
        events: events
            .iter()
            .map(|e| StoredEvent {
                type_id: e.type_id.clone(),
                device_id: e.device_id.clone(),
                event_id: e.event_id.clone(),
                format: e.format.clone(),
                payload: STANDARD.encode(&e.payload),
                cached_ms: e.cached_ms,
            })
            .collect(),
    };
    let body =
        serde_json::to_vec(&stored).map_err(|e| io((dir.join(format!("{org}.json")), std::io::Error::other(e))))?;
    // Owner only: the cache holds devices' payloads, as private as the registry's files.
    crate::org_files::replace(dir, org, Some(&body)).map_err(io)
}

/// The organization, type, device, event id and format of a broker topic that is a
/// device's event, `$iot/<org>/iot-2/type/<t>/id/<d>/evt/<e>/fmt/<f>`.
pub fn event_of(topic: &str) -> Option<[&str; 5]> {
    let mut l = topic.split('/');
    let levels: [Option<&str>; 12] = std::array::from_fn(|_| l.next());
    match levels {
        [Some(ROOT), Some(org), Some("iot-2"), Some("type"), Some(t), Some("id"), Some(d), Some("evt"), Some(e), Some("fmt"), Some(f), None] => {
            Some([org, t, d, e, f])
        }
        _ => None,
    }
}

/// The time to live of `org`'s cache, if it is enabled.
pub fn ttl_of(registry: &Registry, org: &str) -> Option<Duration> {
    let settings = registry.org(org)?.settings.lec.clone();
    settings
        .enabled
        .then(|| Duration::from_secs(u64::from(settings.ttl_days.clamp(1, 45)) * 86_400))
}

#[cfg(test)]
#[path = "lec_tests.rs"]
mod tests;
