//! Analytics rules: per organization, a rule picks events (by device type, device, event
//! id, or a topic filter of the organization's space), tests a condition on the event's
//! JSON or on window aggregates per device ([`crate::rules_expr`], [`crate::rules_window`]),
//! and when its notification strategy says so runs its actions ([`crate::rules_actions`]):
//! publish a message, call a webhook, record an alert.
//!
//! Definitions live in one file per organization, `<data dir>/platform/rules/<org>.json`
//! (`{"rules": [...]}`), written whole by atomic replace (a kill -9 leaves the old file or
//! the new one) by the REST API ([`crate::rest_rules`]) and re-read when changed on disk
//! ([`Rules::reload_if_changed`]; a damaged file keeps the last good version). A rule is
//! validated as a whole before it is stored: a bad one is refused with what is wrong and,
//! in a condition, where. The running rules, their counters and each organization's recent
//! alerts are held here; the consumer that evaluates them is [`crate::rules_task`].

use crate::rules_actions::{Action, Alert};
use crate::rules_expr::{parse_duration, Condition};
use crate::rules_window::Strategy;
use parking_lot::{Mutex, RwLock};
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::SystemTime;

/// Most rules per organization.
pub const MAX_RULES: usize = 100;
/// Most actions per rule.
pub const MAX_ACTIONS: usize = 8;
/// Alerts kept per organization (the oldest go first).
pub use crate::rules_alerts::MAX_ALERTS;
/// The rules of plain (not platform) listeners: `platform/rules/_plain.json`, topic
/// sources only, over the messages outside the platform's `$iot/` root (never an
/// organization's name: those have no `_`).
pub const PLAIN: &str = "_plain";
/// Largest rules file read.
const MAX_FILE: u64 = 4 << 20;

/// Why a rule or a rules file was refused.
#[derive(Debug, thiserror::Error)]
pub enum RuleError {
    #[error("{0}")]
    Invalid(String),
    #[error("no rule {0}")]
    NotFound(String),
    #[error("a rule {0} exists already")]
    Exists(String),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Which events a rule looks at. Either device fields (each optional) or a topic filter
/// under the organization's root (e.g. `iot-2/type/+/id/+/evt/+/fmt/json`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Source {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub type_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic: Option<String>,
}

/// A notification strategy as written: `{"strategy": "every" | "becomesTrue" | "count" |
/// "persists", "times": N, "period": "1m", "for": "30s"}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NotificationDef {
    pub strategy: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub times: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub period: Option<String>,
    #[serde(default, rename = "for", skip_serializing_if = "Option::is_none")]
    pub for_: Option<String>,
}

impl Default for NotificationDef {
    fn default() -> NotificationDef {
        NotificationDef {
            strategy: "every".into(),
            times: None,
            period: None,
            for_: None,
        }
    }
}

/// An action as written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase", deny_unknown_fields)]
pub enum ActionDef {
    /// Publish `payload` (a template; the default is the alert's JSON) to `topic` (a
    /// template of an `iot-2/type/<t>/id/<d>/evt|cmd/<e>/fmt/<f>` topic of the org).
    Publish {
        topic: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        payload: Option<String>,
    },
    /// POST the alert's JSON to `url` (http://).
    #[serde(rename_all = "camelCase")]
    Webhook {
        url: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        timeout_ms: Option<u64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        retries: Option<u32>,
    },
    /// Record an alert, visible at `/api/v0002/alerts`.
    Alert {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        severity: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        message: Option<String>,
    },
}

/// A rule as written in the file and the API.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RuleDef {
    #[serde(default)]
    pub id: String,
    #[serde(default)]
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    #[serde(default = "yes")]
    pub enabled: bool,
    #[serde(default)]
    pub source: Source,
    pub condition: String,
    #[serde(default)]
    pub notification: NotificationDef,
    #[serde(default)]
    pub actions: Vec<ActionDef>,
}

fn yes() -> bool {
    true
}

/// The file's shape.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RulesFile {
    #[serde(default)]
    rules: Vec<RuleDef>,
}

/// A rule ready to run.
#[derive(Debug)]
pub struct Rule {
    pub def: RuleDef,
    pub condition: Condition,
    pub strategy: Strategy,
    pub actions: Vec<Action>,
    pub counters: Arc<Counters>,
}

/// A rule's counters, shown in `/metrics` and the API.
#[derive(Debug, Default)]
pub struct Counters {
    /// Events the rule looked at (its source matched).
    pub matched: AtomicU64,
    /// Times its strategy fired its actions.
    pub fired: AtomicU64,
    /// Actions that failed (a webhook after its retries, a publish refused).
    pub failed: AtomicU64,
    /// Events its condition could not be evaluated on (missing field, wrong type).
    pub errors: AtomicU64,
}

impl Counters {
    pub fn add(counter: &AtomicU64) {
        counter.fetch_add(1, Relaxed);
    }

    pub fn json(&self) -> Json {
        serde_json::json!({
            "matched": self.matched.load(Relaxed),
            "fired": self.fired.load(Relaxed),
            "failed": self.failed.load(Relaxed),
            "errors": self.errors.load(Relaxed),
        })
    }
}

fn is_id(s: &str) -> bool {
    !s.is_empty() && s.len() <= 64 && s.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
}

fn invalid(message: impl Into<String>) -> RuleError {
    RuleError::Invalid(message.into())
}

fn strategy_of(n: &NotificationDef) -> Result<Strategy, RuleError> {
    let duration = |field: &str, text: &Option<String>| {
        let text = text.as_deref().ok_or_else(|| {
            invalid(format!(
                "notification strategy {:?} needs \"{field}\" (e.g. \"5m\")",
                n.strategy
            ))
        })?;
        match parse_duration(text) {
            Some(ms) if ms > 0 && ms <= crate::rules_expr::MAX_WINDOW_MS => Ok(ms),
            _ => Err(invalid(format!(
                "notification \"{field}\": {text:?} is not a duration from 1ms to 1d such as 30s, 5m, 1h"
            ))),
        }
    };
    let strategy = match n.strategy.as_str() {
        "every" => Strategy::Every,
        "becomesTrue" => Strategy::BecomesTrue,
        "count" => {
            let times = n.times.filter(|t| (1..=10_000).contains(t)).ok_or_else(|| {
                invalid("notification strategy \"count\" needs \"times\" from 1 to 10000 and a \"period\"")
            })?;
            Strategy::Count {
                times,
                period_ms: duration("period", &n.period)?,
            }
        }
        "persists" => Strategy::Persists {
            for_ms: duration("for", &n.for_)?,
        },
        other => {
            return Err(invalid(format!(
                "unknown notification strategy {other:?}: every, becomesTrue, count or persists"
            )))
        }
    };
    let extra = match strategy {
        Strategy::Every | Strategy::BecomesTrue => n.times.is_some() || n.period.is_some() || n.for_.is_some(),
        Strategy::Count { .. } => n.for_.is_some(),
        Strategy::Persists { .. } => n.times.is_some() || n.period.is_some(),
    };
    if extra {
        return Err(invalid(format!(
            "notification strategy {:?} has fields it does not use",
            n.strategy
        )));
    }
    Ok(strategy)
}

fn check_source(org: &str, s: &Source) -> Result<(), RuleError> {
    if org == PLAIN && s.topic.is_none() {
        return Err(invalid(
            "a rule of plain listeners picks its messages by topic: source {\"topic\": \"<filter>\"}",
        ));
    }
    for (name, value) in [
        ("typeId", &s.type_id),
        ("deviceId", &s.device_id),
        ("eventId", &s.event_id),
    ] {
        if let Some(v) = value {
            if !is_id(v) {
                return Err(invalid(format!(
                    "source {name} {v:?} is not an id (letters, digits, - _ .)"
                )));
            }
        }
    }
    if let Some(filter) = &s.topic {
        if s.type_id.is_some() || s.device_id.is_some() || s.event_id.is_some() {
            return Err(invalid(
                "a source is either a topic filter or typeId/deviceId/eventId, not both",
            ));
        }
        if filter.len() > 512 || filter.starts_with('$') {
            return Err(invalid(format!("source topic {filter:?} must be a filter of the organization's topics, e.g. iot-2/type/+/id/+/evt/+/fmt/json")));
        }
        tern_proto::topic::validate_topic_filter(filter)
            .map_err(|e| invalid(format!("source topic {filter:?}: {e}")))?;
    }
    Ok(())
}

/// Checks and compiles a rule of `org`.
pub fn compile(org: &str, def: RuleDef) -> Result<Rule, RuleError> {
    if !is_id(&def.id) {
        return Err(invalid(format!(
            "rule id {:?} is not an id (1 to 64 letters, digits, - _ .)",
            def.id
        )));
    }
    if def.name.len() > 256 || def.description.len() > 4096 {
        return Err(invalid("name (256 bytes) or description (4096 bytes) too long"));
    }
    check_source(org, &def.source)?;
    let condition =
        crate::rules_expr::parse(&def.condition).map_err(|e| invalid(format!("condition {:?}: {e}", def.condition)))?;
    let strategy = strategy_of(&def.notification)?;
    if def.actions.len() > MAX_ACTIONS {
        return Err(invalid(format!("more than {MAX_ACTIONS} actions")));
    }
    let actions = def
        .actions
        .iter()
        .enumerate()
        .map(|(i, a)| Action::compile(org, a).map_err(|e| invalid(format!("action {i}: {e}"))))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Rule {
        def,
        condition,
        strategy,
        actions,
        counters: Arc::default(),
    })
}

/// One organization's rules as last read.
#[derive(Debug, Default)]
pub struct OrgRules {
    pub rules: Vec<Arc<Rule>>,
    modified: Option<SystemTime>,
}

/// Every organization's rules, counters and alerts.
#[derive(Debug)]
pub struct Rules {
    dir: PathBuf,
    orgs: RwLock<HashMap<String, Arc<OrgRules>>>,
    /// Serializes writers.
    write: Mutex<()>,
    /// The alerts recorded, kept across restarts ([`crate::rules_alerts`]).
    pub(crate) alerts: crate::rules_alerts::AlertLog,
    /// The consumer's link to the broker ([`crate::rules_task`]).
    pub(crate) feed: crate::feed::Feed,
}

impl Rules {
    /// The rules of `data_dir` (nothing is read until [`Rules::reload_if_changed`]).
    pub fn new(data_dir: &Path) -> Rules {
        let dir = data_dir.join("platform").join("rules");
        let (alerts, errors) = crate::rules_alerts::AlertLog::load(&dir);
        for e in errors {
            tracing::error!("rules: alerts not read back: {e}");
        }
        Rules {
            dir,
            orgs: RwLock::default(),
            write: Mutex::new(()),
            alerts,
            feed: Default::default(),
        }
    }

    /// The rules of `org`.
    pub fn of(&self, org: &str) -> Option<Arc<OrgRules>> {
        self.orgs.read().get(org).cloned()
    }

    /// Whether some organization has an enabled rule.
    pub fn any(&self) -> bool {
        self.orgs.read().values().any(|o| o.rules.iter().any(|r| r.def.enabled))
    }

    /// Every rule, for the metrics: (org, rule).
    pub fn each(&self) -> Vec<(String, Arc<Rule>)> {
        let orgs = self.orgs.read();
        let mut all: Vec<_> = orgs
            .iter()
            .flat_map(|(org, o)| o.rules.iter().map(move |r| (org.clone(), r.clone())))
            .collect();
        all.sort_by(|a, b| (&a.0, &a.1.def.id).cmp(&(&b.0, &b.1.def.id)));
        all
    }

    fn path(&self, org: &str) -> PathBuf {
        self.dir.join(format!("{org}.json"))
    }

    /// Re-reads the files changed since last time; returns the problems (the previous
    /// version of a damaged file stays in force).
    pub fn reload_if_changed(&self) -> Vec<RuleError> {
        // Not while an edit writes and loads a file (it would be listed as missing).
        let _writing = self.write.lock();
        let mut errors = Vec::new();
        let mut seen = Vec::new();
        if let Ok(entries) = std::fs::read_dir(&self.dir) {
            for entry in entries.flatten() {
                let name = entry.file_name();
                let Some(org) = name.to_str().and_then(|n| n.strip_suffix(".json")) else {
                    continue;
                };
                if !crate::identity::is_org_id(org) && org != PLAIN {
                    continue;
                }
                seen.push(org.to_string());
                let modified = entry.metadata().and_then(|m| m.modified()).ok();
                let current = self.of(org);
                if current
                    .as_ref()
                    .is_some_and(|c| c.modified == modified && modified.is_some())
                {
                    continue;
                }
                if let Err(e) = self.load(org, modified, current.as_deref()) {
                    errors.push(e);
                }
            }
        }
        self.orgs.write().retain(|org, _| seen.contains(org));
        errors
    }

    fn load(&self, org: &str, modified: Option<SystemTime>, current: Option<&OrgRules>) -> Result<(), RuleError> {
        let defs = self.read_file(org)?;
        let mut rules = Vec::with_capacity(defs.len());
        for def in defs {
            let id = def.id.clone();
            let rule =
                compile(org, def).map_err(|e| invalid(format!("{}: rule {id:?}: {e}", self.path(org).display())))?;
            // A rule that did not change keeps its counters.
            let old = current.and_then(|c| c.rules.iter().find(|r| r.def == rule.def));
            let rule = match old {
                Some(old) => Rule {
                    counters: old.counters.clone(),
                    ..rule
                },
                None => rule,
            };
            rules.push(Arc::new(rule));
        }
        self.orgs
            .write()
            .insert(org.to_string(), Arc::new(OrgRules { rules, modified }));
        Ok(())
    }

    fn read_file(&self, org: &str) -> Result<Vec<RuleDef>, RuleError> {
        let path = self.path(org);
        let io = |source| RuleError::Io {
            path: path.clone(),
            source,
        };
        let file = match std::fs::File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io(e)),
        };
        let mut text = String::new();
        std::io::Read::read_to_string(&mut std::io::Read::take(file, MAX_FILE + 1), &mut text).map_err(io)?;
        if text.len() as u64 > MAX_FILE {
            return Err(invalid(format!("{}: larger than {MAX_FILE} bytes", path.display())));
        }
        let file: RulesFile = serde_json::from_str(&text).map_err(|e| invalid(format!("{}: {e}", path.display())))?;
        let mut ids: Vec<&str> = file.rules.iter().map(|r| r.id.as_str()).collect();
        ids.sort_unstable();
        if let Some(w) = ids.windows(2).find(|w| w[0] == w[1]) {
            return Err(invalid(format!("{}: rule id {:?} is used twice", path.display(), w[0])));
        }
        if file.rules.len() > MAX_RULES {
            return Err(invalid(format!("{}: more than {MAX_RULES} rules", path.display())));
        }
        Ok(file.rules)
    }

    /// Changes `org`'s rules file with `change` (which gets the current definitions),
    /// writes it by atomic replace and loads it. Blocking.
    pub fn edit<T>(
        &self,
        org: &str,
        change: impl FnOnce(&mut Vec<RuleDef>) -> Result<T, RuleError>,
    ) -> Result<T, RuleError> {
        let _writing = self.write.lock();
        let mut defs = self.read_file(org)?;
        let out = change(&mut defs)?;
        if defs.len() > MAX_RULES {
            return Err(invalid(format!("an organization has at most {MAX_RULES} rules")));
        }
        for def in &defs {
            compile(org, def.clone())?;
        }
        let text = serde_json::to_vec_pretty(&RulesFile { rules: defs })
            .map_err(|e| invalid(format!("rules not serializable: {e}")))?;
        self.write_file(org, &text)?;
        let modified = std::fs::metadata(self.path(org)).and_then(|m| m.modified()).ok();
        let current = self.of(org);
        self.load(org, modified, current.as_deref())?;
        Ok(out)
    }

    fn write_file(&self, org: &str, text: &[u8]) -> Result<(), RuleError> {
        use std::io::Write;
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| RuleError::Io { path, source }
        };
        std::fs::create_dir_all(&self.dir).map_err(io(&self.dir))?;
        let path = self.path(org);
        let tmp = self.dir.join(format!(".{org}.json.tmp"));
        let mut file = std::fs::File::create(&tmp).map_err(io(&tmp))?;
        file.write_all(text).and_then(|()| file.sync_all()).map_err(io(&tmp))?;
        std::fs::rename(&tmp, &path).map_err(io(&path))?;
        std::fs::File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(io(&self.dir))?;
        Ok(())
    }

    /// Records an alert of `org` (the oldest beyond [`MAX_ALERTS`] go).
    pub fn record_alert(&self, org: &str, alert: Alert) {
        self.alerts.record(org, alert);
    }

    /// `org`'s alerts, newest first, of `rule` if given.
    pub fn alerts(&self, org: &str, rule: Option<&str>) -> Vec<Alert> {
        self.alerts.list(org, rule)
    }
}
