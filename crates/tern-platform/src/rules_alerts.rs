//! The alerts rules record: the last [`MAX_ALERTS`] of each organization, in memory for
//! the API and the console, and kept across restarts in
//! `platform/rules/alerts/<org>.json`.
//!
//! Recording never waits for the disk: an alert marks its organization changed, and the
//! rules task writes the changed organizations' lists at most once a second
//! ([`AlertLog::flush`]) and at a clean stop, each file written whole and renamed into
//! place. A kill -9 loses at most the last second's alerts. Ids go on from the highest
//! one read at start, so an id is never given twice.

use crate::rules_actions::Alert;
use parking_lot::Mutex;
use std::collections::{HashMap, HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Alerts kept per organization; the oldest go first.
pub const MAX_ALERTS: usize = 1000;

/// Every organization's recent alerts.
#[derive(Debug)]
pub struct AlertLog {
    dir: PathBuf,
    alerts: Mutex<HashMap<String, VecDeque<Alert>>>,
    /// Organizations whose file is behind their list.
    changed: Mutex<HashSet<String>>,
    next_id: AtomicU64,
}

impl AlertLog {
    /// The alerts kept under `rules_dir` (`platform/rules`); a file that cannot be read
    /// is reported (and that organization starts with none).
    pub fn load(rules_dir: &Path) -> (AlertLog, Vec<String>) {
        let dir = rules_dir.join("alerts");
        let mut alerts = HashMap::new();
        let mut errors = Vec::new();
        let mut highest = 0;
        if let Ok(entries) = std::fs::read_dir(&dir) {
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().to_string();
                let Some(org) = name.strip_suffix(".json") else {
                    continue;
                };
                if !crate::identity::is_org_id(org) && org != crate::rules::PLAIN {
                    continue;
                }
                let read = std::fs::read(entry.path())
                    .map_err(|e| e.to_string())
                    .and_then(|text| serde_json::from_slice::<VecDeque<Alert>>(&text).map_err(|e| e.to_string()));
                match read {
                    Ok(mut list) => {
                        while list.len() > MAX_ALERTS {
                            list.pop_front();
                        }
                        highest = list.iter().map(|a| a.id).fold(highest, u64::max);
                        alerts.insert(org.to_string(), list);
                    }
                    Err(e) => errors.push(format!("{}: {e}", entry.path().display())),
                }
            }
        }
        let log = AlertLog {
            dir,
            alerts: Mutex::new(alerts),
            changed: Mutex::default(),
            next_id: AtomicU64::new(highest + 1),
        };
        (log, errors)
    }

    /// Records an alert of `org`, giving it the next id.
    pub fn record(&self, org: &str, mut alert: Alert) {
        alert.id = self.next_id.fetch_add(1, Relaxed);
        {
            let mut alerts = self.alerts.lock();
            let list = alerts.entry(org.to_string()).or_default();
            if list.len() >= MAX_ALERTS {
                list.pop_front();
            }
            list.push_back(alert);
        }
        self.changed.lock().insert(org.to_string());
    }

    /// `org`'s alerts, newest first, of `rule` if given.
    pub fn list(&self, org: &str, rule: Option<&str>) -> Vec<Alert> {
        let alerts = self.alerts.lock();
        let Some(list) = alerts.get(org) else {
            return Vec::new();
        };
        list.iter()
            .rev()
            .filter(|a| rule.is_none_or(|r| a.rule_id == r))
            .cloned()
            .collect()
    }

    /// Writes the lists that changed since the last flush (blocking). An organization
    /// whose file could not be written stays marked, to be tried again.
    pub fn flush(&self) -> Vec<String> {
        let changed: Vec<String> = self.changed.lock().drain().collect();
        let mut errors = Vec::new();
        for org in changed {
            let list: Vec<Alert> = self
                .alerts
                .lock()
                .get(&org)
                .map(|l| l.iter().cloned().collect())
                .unwrap_or_default();
            let path = self.dir.join(format!("{org}.json"));
            if let Err(e) = crate::historian::write_json(&path, &list) {
                errors.push(format!("alerts of {org} not saved: {e}"));
                self.changed.lock().insert(org);
            }
        }
        errors
    }
}
