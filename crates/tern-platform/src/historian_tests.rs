//! Unit tests of the historian's model, embedded store and queries.

use super::*;
use serde_json::json;

#[test]
fn bookmarks_read_back_what_they_wrote_and_refuse_anything_else() {
    let b = Bookmark {
        timestamp_ms: 1_700_000_000_123,
        seq: 42,
    };
    assert_eq!(Bookmark::decode(&b.encode()).ok(), Some(b));
    for bad in ["", "x", "1", "1-", "-1", "zz-1", "11111111111111111-1", "1-2-3"] {
        assert!(Bookmark::decode(bad).is_err(), "{bad}");
    }
}

#[test]
fn settings_are_checked_and_filters_match_as_documented() {
    let config = HistorianConfig::from_json(json!({"enabled": true})).unwrap();
    assert_eq!(config.retention_days, DEFAULT_RETENTION_DAYS);
    assert!(config.filter.matches("any", "thing"));
    let config = HistorianConfig::from_json(
        json!({"enabled": true, "retentionDays": 2, "filter": {"typeIds": ["sensor"], "eventIds": ["temp", "hum"]}}),
    )
    .unwrap();
    assert!(config.filter.matches("sensor", "hum"));
    assert!(!config.filter.matches("sensor", "status"));
    assert!(!config.filter.matches("pump", "temp"));
    for bad in [
        json!({}),
        json!({"enabled": "yes"}),
        json!({"enabled": true, "retentionDays": 0}),
        json!({"enabled": true, "retentionDays": 3651}),
        json!({"enabled": true, "retentionDays": -1}),
        json!({"enabled": true, "retentionDays": 1.5}),
        json!({"enabled": true, "filter": {"typeIds": ["a/b"]}}),
        json!({"enabled": true, "filter": {"typeIds": "sensor"}}),
        json!({"enabled": true, "filter": {"devices": []}}),
        json!({"enabled": true, "ttlDays": 3}),
    ] {
        assert!(HistorianConfig::from_json(bad.clone()).is_err(), "{bad}");
    }
}

#[test]
fn settings_are_kept_in_files_and_read_back() {
    let dir = TempDir::new();
    let (configs, errors) = HistorianConfigs::load(dir.path());
    assert!(errors.is_empty());
    assert!(!configs.any_enabled());
    let before = configs.generation();
    let config = HistorianConfig::from_json(json!({"enabled": true, "retentionDays": 7})).unwrap();
    configs.set("acme", config.clone()).unwrap();
    assert!(configs.generation() > before);
    assert!(configs.wants("acme", "t", "e"));
    assert!(!configs.wants("other", "t", "e"));
    std::fs::write(config_dir(dir.path()).join("broken.json"), b"{").unwrap();
    let (again, errors) = HistorianConfigs::load(dir.path());
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(again.get("acme"), config);
}

/// A fresh directory under the system's temporary one, removed when dropped.
pub(crate) struct TempDir(std::path::PathBuf);

impl TempDir {
    pub(crate) fn new() -> TempDir {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("tern-historian-test-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    pub(crate) fn path(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
