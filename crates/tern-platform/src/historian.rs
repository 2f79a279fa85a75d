//! The historian: device events kept for a configured time and read back by range
//! (issue #17). This module holds its model, shared by every part: what is stored
//! ([`StoredEvent`]), how a range is asked for ([`EventQuery`], [`EventPage`],
//! [`Bookmark`]), each organization's settings ([`HistorianConfig`], kept by
//! [`HistorianConfigs`] in `platform/historian/<org>.json`), and the [`HistorianBackend`]
//! trait a store implements: the embedded redb store ([`crate::historian_embedded`]) by
//! default, PostgreSQL for scale.
//!
//! Events come from the broker's event stream ([`crate::historian_task`]), batched off
//! the publish path; queries and aggregates ([`crate::historian_query`]) and the REST
//! routes ([`crate::rest_historian`]) read through the same trait, so they work on any
//! backend. A backend's calls block (disk, network): callers run them with
//! `tokio::task::spawn_blocking`, never on the runtime's threads.

use bytes::Bytes;
use parking_lot::RwLock;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

/// Days of retention unless an organization's settings say otherwise.
pub const DEFAULT_RETENTION_DAYS: u32 = 30;
/// Longest retention (ten years).
pub const MAX_RETENTION_DAYS: u32 = 3650;
/// Most type ids or event ids in a filter.
pub const MAX_FILTER_IDS: usize = 64;
/// Most events one query page returns.
pub const MAX_PAGE: usize = 1000;
/// Events per page unless the query says otherwise.
pub const DEFAULT_PAGE: usize = 100;

/// Why the historian could not do something.
#[derive(Debug, thiserror::Error)]
pub enum HistorianError {
    /// A file of the historian (its settings, the embedded store) failed.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A settings file could not be read as one.
    #[error("{path} is damaged: {what}")]
    Damaged { path: PathBuf, what: String },
    /// The backend failed (a database error, a transaction that could not commit).
    #[error("historian store ({backend}): {what}")]
    Store { backend: &'static str, what: String },
    /// The backend cannot be reached now (a database down); the caller may retry.
    #[error("historian store ({backend}) unavailable: {what}")]
    Unavailable { backend: &'static str, what: String },
    /// A query or setting the caller got wrong; the message names what.
    #[error("{0}")]
    Invalid(String),
}

/// One stored device event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEvent {
    pub org: String,
    pub type_id: String,
    pub device_id: String,
    pub event_id: String,
    /// The topic's `fmt` level (`json`, `text`, ...).
    pub format: String,
    /// When the broker accepted it, in milliseconds since the Unix epoch (the broker's
    /// clock, which tests may move: `tern_broker::clock::system_now`).
    pub timestamp_ms: u64,
    pub payload: Bytes,
}

/// Where a page ended: the last event's time and a backend-given tie-breaker (the
/// embedded store's sequence number, a database's row id), so events of the same
/// millisecond are neither repeated nor skipped. Opaque to clients: the REST API gives
/// it as a string ([`Bookmark::encode`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Bookmark {
    pub timestamp_ms: u64,
    pub seq: u64,
}

impl Bookmark {
    /// As the REST API gives it: `<timestamp_ms>-<seq>` in hex.
    pub fn encode(&self) -> String {
        format!("{:x}-{:x}", self.timestamp_ms, self.seq)
    }

    /// A bookmark [`Bookmark::encode`] made, or what is wrong with it.
    pub fn decode(text: &str) -> Result<Bookmark, HistorianError> {
        let bad = || HistorianError::Invalid(format!("bookmark {text:?} is not one this API gave"));
        let (t, s) = text.split_once('-').ok_or_else(bad)?;
        if t.len() > 16 || s.len() > 16 {
            return Err(bad());
        }
        Ok(Bookmark {
            timestamp_ms: u64::from_str_radix(t, 16).map_err(|_| bad())?,
            seq: u64::from_str_radix(s, 16).map_err(|_| bad())?,
        })
    }
}

/// A range of one device's events of one event id: `start_ms <= timestamp < end_ms`,
/// oldest first, at most `limit` (1 to [`MAX_PAGE`]), after `after` if given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventQuery {
    pub org: String,
    pub type_id: String,
    pub device_id: String,
    pub event_id: String,
    pub start_ms: u64,
    pub end_ms: u64,
    pub limit: usize,
    pub after: Option<Bookmark>,
}

impl EventQuery {
    /// Its series' ids, owned: organization, type, device, event id.
    pub fn series(&self) -> [String; 4] {
        [
            self.org.clone(),
            self.type_id.clone(),
            self.device_id.clone(),
            self.event_id.clone(),
        ]
    }
}

/// One page of a query's events, and where the next page starts (`None`: there is none).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventPage {
    pub events: Vec<StoredEvent>,
    pub bookmark: Option<Bookmark>,
}

/// A store of events. Every call blocks (run it with `spawn_blocking`) and may be made
/// from several threads at once.
///
/// - `append` stores a batch (any organizations, devices, order) durably before it
///   returns `Ok`: what it acknowledged survives a kill -9. On `Err` nothing of the batch
///   is known stored, and the caller may offer it again (an implementation should make
///   that harmless where it can).
/// - `query` returns events of the query's device and event id in the range, ordered by
///   (timestamp, tie-breaker), at most `limit`, with a bookmark when more may follow.
/// - `purge_before` removes an organization's events older than `before_ms` and says
///   how many went.
pub trait HistorianBackend: Send + Sync + 'static {
    /// A short name for logs and errors (`embedded`, `postgresql`).
    fn name(&self) -> &'static str;
    fn append(&self, batch: &[StoredEvent]) -> Result<(), HistorianError>;

    /// `append` of a batch already grouped by series (each series' events in arrival
    /// order), as the consumer gives it; a store that keeps series together overrides it
    /// to skip grouping. The default copies the ids into each event and calls `append`.
    fn append_series(&self, batch: &[crate::historian_batch::SeriesBatch]) -> Result<(), HistorianError> {
        let events: Vec<StoredEvent> = batch.iter().flat_map(|s| s.stored_events()).collect();
        self.append(&events)
    }

    fn query(&self, query: &EventQuery) -> Result<EventPage, HistorianError>;
    fn purge_before(&self, org: &str, before_ms: u64) -> Result<u64, HistorianError>;

    /// For retention by size: the time before which `org`'s events must go so that the
    /// rest take at most `max_bytes` (each event counted as its payload, its format and 13
    /// bytes of framing); `None` when they already do. A store may round the time down
    /// (to a minute), never up.
    fn bytes_cutoff(&self, org: &str, max_bytes: u64) -> Result<Option<u64>, HistorianError>;

    /// The buckets of an aggregate over `query`'s range (`interval_ms` wide, from the
    /// epoch), computed by the store next to the data (a database); `None`, the default:
    /// the caller reads the range page by page and computes them. With `field` empty every
    /// event counts; otherwise only events whose payload has a JSON number there.
    fn aggregate_buckets(
        &self,
        _query: &EventQuery,
        _interval_ms: u64,
        _field: &[String],
    ) -> Option<Result<Vec<AggregateBucket>, HistorianError>> {
        None
    }
}

/// One interval of an aggregate: its start and the statistics of its values (the last
/// by time).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AggregateBucket {
    pub start_ms: u64,
    pub count: u64,
    pub sum: f64,
    pub min: f64,
    pub max: f64,
    pub last: f64,
}

/// A backend for a store that could not be opened: every call fails with why.
#[derive(Debug)]
pub struct NoStore(pub String);

impl HistorianBackend for NoStore {
    fn name(&self) -> &'static str {
        "none"
    }

    fn append(&self, _batch: &[StoredEvent]) -> Result<(), HistorianError> {
        Err(self.unavailable())
    }

    fn query(&self, _query: &EventQuery) -> Result<EventPage, HistorianError> {
        Err(self.unavailable())
    }

    fn purge_before(&self, _org: &str, _before_ms: u64) -> Result<u64, HistorianError> {
        Err(self.unavailable())
    }

    fn bytes_cutoff(&self, _org: &str, _max_bytes: u64) -> Result<Option<u64>, HistorianError> {
        Err(self.unavailable())
    }
}

impl NoStore {
    fn unavailable(&self) -> HistorianError {
        HistorianError::Unavailable {
            backend: "none",
            what: self.0.clone(),
        }
    }
}

/// Which events of an organization are stored: those whose device type is in `typeIds`
/// and whose event id is in `eventIds`, an empty (or absent) list meaning any.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct HistorianFilter {
    pub type_ids: Vec<String>,
    pub event_ids: Vec<String>,
}

impl HistorianFilter {
    /// Whether an event of device type `type_id` and event id `event_id` is stored.
    pub fn matches(&self, type_id: &str, event_id: &str) -> bool {
        (self.type_ids.is_empty() || self.type_ids.iter().any(|t| t == type_id))
            && (self.event_ids.is_empty() || self.event_ids.iter().any(|e| e == event_id))
    }
}

/// An organization's historian settings (`GET|PUT /api/v0002/config/historian`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HistorianConfig {
    pub enabled: bool,
    #[serde(default = "default_retention")]
    pub retention_days: u32,
    /// At most this many bytes of events are kept; past it the oldest go first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention_bytes: Option<u64>,
    #[serde(default)]
    pub filter: HistorianFilter,
}

fn default_retention() -> u32 {
    DEFAULT_RETENTION_DAYS
}

impl Default for HistorianConfig {
    fn default() -> HistorianConfig {
        HistorianConfig {
            enabled: false,
            retention_days: DEFAULT_RETENTION_DAYS,
            retention_bytes: None,
            filter: HistorianFilter::default(),
        }
    }
}

impl HistorianConfig {
    /// Settings from a request body or file, checked: retention 1 to
    /// [`MAX_RETENTION_DAYS`] days, at most [`MAX_FILTER_IDS`] ids per list, each a
    /// valid type or event id.
    pub fn from_json(value: serde_json::Value) -> Result<HistorianConfig, HistorianError> {
        let config: HistorianConfig = serde_json::from_value(value).map_err(|e| {
            HistorianError::Invalid(format!(
                "historian settings: {e} (expected {{\"enabled\": bool, \"retentionDays\": 1..{MAX_RETENTION_DAYS}, \"retentionBytes\": bytes, \"filter\": {{\"typeIds\": [...], \"eventIds\": [...]}}}})"
            ))
        })?;
        config.check()?;
        Ok(config)
    }

    fn check(&self) -> Result<(), HistorianError> {
        if !(1..=MAX_RETENTION_DAYS).contains(&self.retention_days) {
            return Err(HistorianError::Invalid(format!(
                "retentionDays must be a whole number of days from 1 to {MAX_RETENTION_DAYS}"
            )));
        }
        if self.retention_bytes == Some(0) {
            return Err(HistorianError::Invalid(
                "retentionBytes must be a number of bytes above 0 (or left out: no limit but the days)".into(),
            ));
        }
        for (name, ids) in [("typeIds", &self.filter.type_ids), ("eventIds", &self.filter.event_ids)] {
            if ids.len() > MAX_FILTER_IDS {
                return Err(HistorianError::Invalid(format!(
                    "filter.{name} has more than {MAX_FILTER_IDS} ids"
                )));
            }
            if let Some(bad) = ids.iter().find(|id| !valid_id(id)) {
                return Err(HistorianError::Invalid(format!(
                    "filter.{name}: {bad:?} is not a valid id (1 to 36 letters, digits, '-', '_', '.')"
                )));
            }
        }
        Ok(())
    }

    /// The retention in milliseconds.
    pub fn retention_ms(&self) -> u64 {
        u64::from(self.retention_days) * 86_400_000
    }

    /// As the REST API shows it (`retentionBytes` only when set).
    pub fn to_json(&self) -> serde_json::Value {
        let mut json = serde_json::json!({
            "enabled": self.enabled,
            "retentionDays": self.retention_days,
            "filter": {"typeIds": self.filter.type_ids, "eventIds": self.filter.event_ids},
        });
        if let (Some(bytes), Some(object)) = (self.retention_bytes, json.as_object_mut()) {
            object.insert("retentionBytes".into(), bytes.into());
        }
        json
    }
}

/// A type or event id as the platform allows them in topics.
fn valid_id(id: &str) -> bool {
    (1..=36).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// Every organization's settings, in memory, each kept in its file
/// `platform/historian/<org>.json` (written whole and renamed over the old one).
#[derive(Debug)]
pub struct HistorianConfigs {
    dir: PathBuf,
    orgs: RwLock<HashMap<String, HistorianConfig>>,
    /// Bumped at every change, so the consumer sees one cheaply.
    generation: AtomicU64,
    /// Held while a file is written.
    writing: parking_lot::Mutex<()>,
    /// What plain listeners' messages are stored ([`crate::historian_topics`]).
    pub topics: crate::historian_topics::TopicStores,
}

/// The settings' directory inside a data directory.
pub fn config_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("platform").join("historian")
}

impl HistorianConfigs {
    /// Reads the settings of `data_dir` (a damaged file is reported and that
    /// organization left off).
    pub fn load(data_dir: &Path) -> (HistorianConfigs, Vec<HistorianError>) {
        let dir = config_dir(data_dir);
        let mut orgs = HashMap::new();
        let mut errors = Vec::new();
        match std::fs::read_dir(&dir) {
            Ok(entries) => {
                for entry in entries.flatten() {
                    let name = entry.file_name().to_string_lossy().to_string();
                    let Some(org) = name.strip_suffix(".json") else {
                        continue;
                    };
                    if crate::registry_model::check_org_id(org).is_err() {
                        continue;
                    }
                    match read_config(&entry.path()) {
                        Ok(config) => {
                            orgs.insert(org.to_string(), config);
                        }
                        Err(e) => errors.push(e),
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => errors.push(HistorianError::Io {
                path: dir.clone(),
                source,
            }),
        }
        let (topics, topics_error) = crate::historian_topics::TopicStores::load(&dir);
        errors.extend(topics_error);
        let configs = HistorianConfigs {
            topics,
            dir,
            orgs: RwLock::new(orgs),
            generation: AtomicU64::new(0),
            writing: parking_lot::Mutex::new(()),
        };
        (configs, errors)
    }

    /// `org`'s settings (the defaults, disabled, if it has none).
    pub fn get(&self, org: &str) -> HistorianConfig {
        self.orgs.read().get(org).cloned().unwrap_or_default()
    }

    /// Every organization that has settings, with them.
    pub fn all(&self) -> Vec<(String, HistorianConfig)> {
        self.orgs.read().iter().map(|(o, c)| (o.clone(), c.clone())).collect()
    }

    /// Whether some organization, or some `historian_topic` line, stores events.
    pub fn any_enabled(&self) -> bool {
        self.topics.any() || self.orgs.read().values().any(|c| c.enabled)
    }

    /// Whether an event of `org` with this type and event id is stored now.
    pub fn wants(&self, org: &str, type_id: &str, event_id: &str) -> bool {
        self.orgs
            .read()
            .get(org)
            .is_some_and(|c| c.enabled && c.filter.matches(type_id, event_id))
    }

    /// A number that changes whenever some settings change.
    pub fn generation(&self) -> u64 {
        self.generation.load(Relaxed)
    }

    /// Writes `org`'s settings to its file, then puts them in force. Blocking.
    pub fn set(&self, org: &str, config: HistorianConfig) -> Result<(), HistorianError> {
        config.check()?;
        let _writing = self.writing.lock();
        write_config(&self.dir, org, &config)?;
        self.orgs.write().insert(org.to_string(), config);
        self.generation.fetch_add(1, Relaxed);
        Ok(())
    }
}

fn read_config(path: &Path) -> Result<HistorianConfig, HistorianError> {
    let text = std::fs::read(path).map_err(|source| HistorianError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let value: serde_json::Value = serde_json::from_slice(&text).map_err(|e| HistorianError::Damaged {
        path: path.to_path_buf(),
        what: e.to_string(),
    })?;
    HistorianConfig::from_json(value).map_err(|e| HistorianError::Damaged {
        path: path.to_path_buf(),
        what: e.to_string(),
    })
}

/// Replaces `org`'s settings file.
fn write_config(dir: &Path, org: &str, config: &HistorianConfig) -> Result<(), HistorianError> {
    write_json(&dir.join(format!("{org}.json")), &config.to_json())
}

/// Replaces a file of the historian with `value` as JSON: a temporary file written and
/// flushed, renamed over the old one, the directory flushed (a kill -9 leaves the old or
/// the new file). Its directory is made if missing. Blocking.
pub(crate) fn write_json(path: &Path, value: &impl Serialize) -> Result<(), HistorianError> {
    use std::os::unix::fs::OpenOptionsExt;
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| HistorianError::Io { path, source }
    };
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io(&tmp))?;
    let body = serde_json::to_vec_pretty(value).map_err(|e| io(&tmp)(std::io::Error::other(e)))?;
    file.write_all(&body).map_err(io(&tmp))?;
    file.sync_all().map_err(io(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io(path))?;
    std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(io(dir))?;
    Ok(())
}

/// Counters of the historian, for logs and `/metrics`.
#[derive(Debug, Default)]
pub struct HistorianCounters {
    /// Events stored.
    pub stored: AtomicU64,
    /// Events that were wanted but never reached the store: lost by the consumer falling
    /// behind the event stream, or in a batch the backend refused.
    pub lost: AtomicU64,
    /// Events removed by retention.
    pub purged: AtomicU64,
}

/// The running historian: settings, the store, counters. One per broker, shared by the
/// consumer task and the REST routes.
pub struct Historian {
    pub configs: HistorianConfigs,
    pub backend: Arc<dyn HistorianBackend>,
    pub counters: HistorianCounters,
    /// How the consumer is woken when settings change ([`crate::historian_task`]).
    pub(crate) wake: tokio::sync::Notify,
}

impl std::fmt::Debug for Historian {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Historian")
            .field("backend", &self.backend.name())
            .field("configs", &self.configs)
            .finish()
    }
}

impl Historian {
    /// A historian over `backend` with the settings of `data_dir`; settings files that
    /// cannot be read are returned to be reported.
    pub fn new(data_dir: &Path, backend: Arc<dyn HistorianBackend>) -> (Historian, Vec<HistorianError>) {
        let (configs, errors) = HistorianConfigs::load(data_dir);
        let historian = Historian {
            configs,
            backend,
            counters: HistorianCounters::default(),
            wake: tokio::sync::Notify::new(),
        };
        (historian, errors)
    }

    /// Changes `org`'s settings (blocking: writes a file) and tells the consumer.
    pub fn configure(&self, org: &str, config: HistorianConfig) -> Result<(), HistorianError> {
        self.configs.set(org, config)?;
        self.wake.notify_one();
        Ok(())
    }
}

/// Now in milliseconds since the Unix epoch, on the broker's clock (moved by tests).
pub fn now_ms() -> u64 {
    tern_broker::clock::system_now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
#[path = "historian_tests.rs"]
mod tests;
