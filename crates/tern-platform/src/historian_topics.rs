//! The historian for plain listeners: messages stored by topic filter, as the broker's
//! `historian_topic` lines say (`historian_topic sensors/# 30d 500MB`).
//!
//! Each line is a store of its own, kept in the historian's backend as a pseudo
//! organization named `$` and the filter (no organization id starts with `$`), with one
//! series per topic: a topic's messages are one ordered range, read back by topic. A
//! message is stored by the first line whose filter matches its topic; messages of the
//! platform's organizations (`$iot/...`) never match (filters may not start with `$`).
//!
//! The lines are applied live: the sweep task reads the broker's configuration every
//! second and, after a reload that changed them, puts the new lines in force. A line that
//! leaves the configuration stops storing, but what it stored is not orphaned: the line is
//! remembered in `platform/historian/_topics.json` with its retention and the time it
//! went, so its events still read back and age out as they would have, and the line is
//! forgotten once the last of them is past its retention.

use crate::historian::{HistorianError, StoredEvent};
use bytes::Bytes;
use parking_lot::{Mutex, RwLock};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use tern_broker::config::HistorianTopic;

/// One line's store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TopicStore {
    pub filter: String,
    pub retention_days: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention_bytes: Option<u64>,
    /// When its line left the configuration (ms since 1970); `None` while it is there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub removed_at_ms: Option<u64>,
}

impl TopicStore {
    fn of(line: &HistorianTopic) -> TopicStore {
        TopicStore {
            filter: line.filter.clone(),
            retention_days: line.retention_days,
            retention_bytes: line.retention_bytes,
            removed_at_ms: None,
        }
    }

    /// The pseudo organization its events are kept under.
    pub fn org(&self) -> String {
        format!("${}", self.filter)
    }

    /// Its retention in days, in milliseconds.
    pub fn retention_ms(&self) -> u64 {
        u64::from(self.retention_days) * 86_400_000
    }

    /// As the REST API shows it.
    pub fn to_json(&self) -> serde_json::Value {
        let mut json = serde_json::json!({
            "filter": self.filter,
            "retentionDays": self.retention_days,
            "configured": self.removed_at_ms.is_none(),
        });
        if let (Some(bytes), Some(object)) = (self.retention_bytes, json.as_object_mut()) {
            object.insert("retentionBytes".into(), bytes.into());
        }
        json
    }
}

/// The stores in force: the configured lines in order, then those that left.
#[derive(Debug)]
pub struct TopicStores {
    path: PathBuf,
    stores: RwLock<Arc<Vec<TopicStore>>>,
    /// The lines last applied, to tell a reload that changed them from one that did not.
    applied: Mutex<Option<Vec<HistorianTopic>>>,
    /// Whether a configured line exists (read for every published message).
    any: AtomicBool,
}

impl TopicStores {
    /// The remembered stores of `dir` (the historian's settings directory); a damaged
    /// file is returned to be reported, and only the configured lines then count.
    pub fn load(dir: &Path) -> (TopicStores, Option<HistorianError>) {
        // `_` keeps it apart from the organizations' files (ids are a-z and 0-9).
        let path = dir.join("_topics.json");
        let (stores, error) = match std::fs::read(&path) {
            Ok(text) => match serde_json::from_slice::<Vec<TopicStore>>(&text) {
                Ok(stores) => (stores, None),
                Err(e) => (
                    Vec::new(),
                    Some(HistorianError::Damaged {
                        path: path.clone(),
                        what: e.to_string(),
                    }),
                ),
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => (Vec::new(), None),
            Err(source) => (
                Vec::new(),
                Some(HistorianError::Io {
                    path: path.clone(),
                    source,
                }),
            ),
        };
        let stores = TopicStores {
            path,
            stores: RwLock::new(Arc::new(stores)),
            applied: Mutex::new(None),
            any: AtomicBool::new(false),
        };
        (stores, error)
    }

    /// Puts the configuration's lines in force if they changed since the last call
    /// (blocking when they did: the remembered stores are written). Whether they changed.
    pub fn apply(&self, lines: &[HistorianTopic], now_ms: u64) -> Result<bool, HistorianError> {
        let mut applied = self.applied.lock();
        if applied.as_deref() == Some(lines) {
            return Ok(false);
        }
        let old = self.stores.read().clone();
        let mut stores: Vec<TopicStore> = lines.iter().map(TopicStore::of).collect();
        for store in old.iter() {
            if !lines.iter().any(|l| l.filter == store.filter) {
                let mut gone = store.clone();
                gone.removed_at_ms = gone.removed_at_ms.or(Some(now_ms));
                stores.push(gone);
            }
        }
        if stores != *old {
            crate::historian::write_json(&self.path, &stores)?;
        }
        self.any.store(!lines.is_empty(), Relaxed);
        *self.stores.write() = Arc::new(stores);
        *applied = Some(lines.to_vec());
        Ok(true)
    }

    /// Whether some line stores messages.
    pub fn any(&self) -> bool {
        self.any.load(Relaxed)
    }

    /// Every store, configured ones first.
    pub fn all(&self) -> Arc<Vec<TopicStore>> {
        self.stores.read().clone()
    }

    /// The event to store for a message on `topic`, if a configured line wants it.
    pub fn event(&self, topic: &str, payload: Bytes, timestamp_ms: u64) -> Option<StoredEvent> {
        if !self.any() || topic.starts_with('$') {
            return None;
        }
        let stores = self.stores.read();
        let store = stores
            .iter()
            .take_while(|s| s.removed_at_ms.is_none())
            .find(|s| tern_core::topic::matches(&s.filter, topic))?;
        Some(StoredEvent {
            org: store.org(),
            type_id: String::new(),
            device_id: topic.to_string(),
            event_id: String::new(),
            format: String::new(),
            timestamp_ms,
            payload,
        })
    }

    /// The store a query for `topic` reads: the configured line that stores it now, else
    /// a line that left and still holds events.
    pub fn for_query(&self, topic: &str) -> Option<TopicStore> {
        let stores = self.stores.read();
        let configured = stores.iter().filter(|s| s.removed_at_ms.is_none());
        let gone = stores.iter().filter(|s| s.removed_at_ms.is_some());
        configured
            .chain(gone)
            .find(|s| tern_core::topic::matches(&s.filter, topic))
            .cloned()
    }

    /// Forgets the lines that left more than their retention (and a day) ago: their
    /// events are all past it and removed by now. Blocking when one is forgotten.
    pub fn forget_expired(&self, now_ms: u64) -> Result<(), HistorianError> {
        let _applying = self.applied.lock();
        let old = self.stores.read().clone();
        let kept: Vec<TopicStore> = old
            .iter()
            .filter(|s| {
                s.removed_at_ms.is_none_or(|at| {
                    // A day's margin: the sweep that removed its last events came first.
                    at.saturating_add(s.retention_ms()).saturating_add(86_400_000) > now_ms
                })
            })
            .cloned()
            .collect();
        if kept.len() != old.len() {
            crate::historian::write_json(&self.path, &kept)?;
            *self.stores.write() = Arc::new(kept);
        }
        Ok(())
    }
}

/// Puts the broker's `historian_topic` lines in force if a reload changed them (and at
/// start), waking the consumer so a first line starts storing at once.
pub fn apply_config(historian: &crate::historian::Historian, state: &tern_broker::BrokerState) {
    let config = state.config();
    match historian
        .configs
        .topics
        .apply(&config.historian_topics, crate::historian::now_ms())
    {
        Ok(false) => {}
        Ok(true) => {
            for line in &config.historian_topics {
                tracing::info!(
                    "historian: storing messages on {} for {} days{}",
                    line.filter,
                    line.retention_days,
                    line.retention_bytes
                        .map(|b| format!(", at most {b} bytes"))
                        .unwrap_or_default()
                );
            }
            historian.wake.notify_one();
        }
        Err(e) => tracing::error!("historian: historian_topic lines not applied: {e}"),
    }
}
