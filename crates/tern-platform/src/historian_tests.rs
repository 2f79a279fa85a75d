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

fn event(org: &str, device: &str, event_id: &str, ms: u64, payload: &str) -> StoredEvent {
    StoredEvent {
        org: org.into(),
        type_id: "t".into(),
        device_id: device.into(),
        event_id: event_id.into(),
        format: "json".into(),
        timestamp_ms: ms,
        payload: bytes::Bytes::from(payload.to_string()),
    }
}

fn range(org: &str, device: &str, start_ms: u64, end_ms: u64, limit: usize) -> EventQuery {
    EventQuery {
        org: org.into(),
        type_id: "t".into(),
        device_id: device.into(),
        event_id: "e".into(),
        start_ms,
        end_ms,
        limit,
        after: None,
    }
}

#[test]
fn the_embedded_store_reads_one_series_in_time_order_page_by_page() {
    let dir = TempDir::new();
    let store = crate::historian_embedded::EmbeddedStore::open(dir.path()).unwrap();
    // Out of order, with neighbours whose ids extend this one's ("d" and "d1", "e" and "e2").
    // Two batches: each series' events of a batch are one block.
    let sent: Vec<StoredEvent> = [30, 10, 20, 20, 40]
        .iter()
        .enumerate()
        .map(|(i, &ms)| event("o", "d", "e", ms, &format!("{i}")))
        .collect();
    let first: Vec<StoredEvent> = [&sent[2], &sent[1], &sent[3]]
        .into_iter()
        .cloned()
        .chain([
            event("o", "d1", "e", 15, "x"),
            event("o", "d", "e2", 15, "y"),
            event("o2", "d", "e", 15, "z"),
        ])
        .collect();
    store.append(&first).unwrap();
    store.append(&[sent[0].clone(), sent[4].clone()]).unwrap();
    let all = store.query(&range("o", "d", 0, 100, 100)).unwrap();
    let got: Vec<(u64, &[u8])> = all.events.iter().map(|e| (e.timestamp_ms, &e.payload[..])).collect();
    assert_eq!(
        got,
        vec![(10, &b"1"[..]), (20, b"2"), (20, b"3"), (30, b"0"), (40, b"4")]
    );
    assert_eq!(all.bookmark, None);
    // The range is start <= t < end.
    let some = store.query(&range("o", "d", 20, 40, 100)).unwrap();
    assert_eq!(some.events.len(), 3);
    // Pages of two, events of one millisecond neither repeated nor skipped.
    let mut q = range("o", "d", 0, 100, 2);
    let mut seen = Vec::new();
    loop {
        let page = store.query(&q).unwrap();
        seen.extend(page.events.iter().map(|e| e.payload.clone()));
        match page.bookmark {
            Some(b) => q.after = Some(b),
            None => break,
        }
    }
    assert_eq!(seen, all.events.iter().map(|e| e.payload.clone()).collect::<Vec<_>>());
    // Retention: one organization's blocks whose newest event is old, only.
    assert_eq!(store.purge_before("o", 25).unwrap(), 5);
    let left = store.query(&range("o", "d", 0, 100, 100)).unwrap();
    assert_eq!(
        left.events.iter().map(|e| e.timestamp_ms).collect::<Vec<_>>(),
        vec![30, 40]
    );
    assert_eq!(store.query(&range("o2", "d", 0, 100, 100)).unwrap().events.len(), 1);
    drop(store);
    // Kept when opened again.
    let store = crate::historian_embedded::EmbeddedStore::open(dir.path()).unwrap();
    assert_eq!(store.query(&range("o", "d", 0, 100, 100)).unwrap().events.len(), 2);
}

#[test]
fn retention_by_size_cuts_whole_minutes_newest_first_and_keeps_count_across_purges() {
    let dir = TempDir::new();
    let store = crate::historian_embedded::EmbeddedStore::open(dir.path()).unwrap();
    let minute = 60_000;
    // 10 bytes of payload, 4 of format ("json"), 13 of framing: 27 bytes an event; two
    // events in each of minutes 0, 2 and 4 (blocks apart), and one of another organization.
    let size = 27;
    let mut batch = Vec::new();
    for m in 0..3u64 {
        for k in 0..2 {
            batch.push(event("o", "d", "e", 2 * m * minute + k, "0123456789"));
        }
    }
    batch.push(event("o2", "d", "e", 5, "0123456789"));
    store.append(&batch).unwrap();
    assert_eq!(store.bytes_cutoff("o", 6 * size).unwrap(), None);
    assert_eq!(store.bytes_cutoff("o", 6 * size - 1).unwrap(), Some(minute));
    assert_eq!(store.bytes_cutoff("o", 4 * size).unwrap(), Some(minute));
    assert_eq!(store.bytes_cutoff("o", 2 * size).unwrap(), Some(3 * minute));
    assert_eq!(store.bytes_cutoff("o", 1).unwrap(), Some(5 * minute));
    assert_eq!(store.bytes_cutoff("nobody", 1).unwrap(), None);
    // A purge takes its bytes away: what is left fits again.
    assert_eq!(store.purge_before("o", minute).unwrap(), 2);
    assert_eq!(store.bytes_cutoff("o", 4 * size).unwrap(), None);
    assert_eq!(store.bytes_cutoff("o2", size).unwrap(), None);
}

#[test]
fn times_are_read_in_iso_8601_or_milliseconds() {
    use crate::historian_query::parse_time;
    let t = 1_457_964_726_527;
    for text in [
        "1457964726527",
        "2016-03-14T14:12:06.527Z",
        "2016-03-14T14:12:06.527+0000",
        "2016-03-14T15:12:06.527+01:00",
        "2016-03-14T13:12:06.527-0100",
        "2016-03-14T14:12:06.527123Z",
    ] {
        assert_eq!(parse_time(text), Ok(t), "{text}");
    }
    assert_eq!(parse_time("2016-03-14"), Ok(1_457_913_600_000));
    assert_eq!(parse_time("2016-03-14T14:12:06"), Ok(1_457_964_726_000));
    assert_eq!(parse_time(&crate::lec::timestamp(t)), Ok(t));
    for bad in [
        "",
        "yesterday",
        "2016-3-14",
        "2016-13-01",
        "2016-03-14T25:00:00Z",
        "2016-03-14T14:12:06.Z",
        "2016-03-14T14:12:06+1",
        "1969-12-31T23:59:59Z",
        "2016-03-14T14:12:06é",
    ] {
        assert!(parse_time(bad).is_err(), "{bad}");
    }
}

/// A backend that holds events in memory and answers with pages of at most three, to
/// check aggregates see every page.
struct Paged(Vec<StoredEvent>);

impl HistorianBackend for Paged {
    fn name(&self) -> &'static str {
        "test"
    }

    fn append(&self, _batch: &[StoredEvent]) -> Result<(), HistorianError> {
        Ok(())
    }

    fn query(&self, q: &EventQuery) -> Result<EventPage, HistorianError> {
        let from = q.after.map_or(0, |b| b.seq as usize + 1);
        let events: Vec<StoredEvent> = self.0.iter().skip(from).take(3).cloned().collect();
        let end = from + events.len();
        let bookmark = (end < self.0.len()).then(|| Bookmark {
            timestamp_ms: 0,
            seq: end as u64 - 1,
        });
        Ok(EventPage { events, bookmark })
    }

    fn purge_before(&self, _org: &str, _before_ms: u64) -> Result<u64, HistorianError> {
        Ok(0)
    }

    fn bytes_cutoff(&self, _org: &str, _max_bytes: u64) -> Result<Option<u64>, HistorianError> {
        Ok(None)
    }
}

#[test]
fn aggregates_cover_every_page_and_skip_values_that_are_not_numbers() {
    use crate::historian_query::{aggregate, parse};
    let temps = [
        (0, "1"),
        (1_000, "3"),
        (59_999, "\"x\""),
        (60_000, "10"),
        (61_000, "-2"),
        (125_000, "7"),
    ];
    let mut events: Vec<StoredEvent> = temps
        .iter()
        .map(|(ms, v)| event("o", "d", "e", *ms, &format!("{{\"d\":{{\"temp\":{v}}}}}")))
        .collect();
    events.push(event("o", "d", "e", 2_000, "not json"));
    events.sort_by_key(|e| e.timestamp_ms);
    let backend = Paged(events);
    let run = |agg: &str| {
        let request = parse(
            Some(&format!("start=0&end=200000&agg={agg}&interval=1m&field=d.temp")),
            0,
        )
        .unwrap();
        let points = aggregate(
            &backend,
            range("o", "d", 0, 200_000, 10),
            request.aggregate.as_ref().unwrap(),
        )
        .unwrap();
        points["points"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["value"].as_f64().unwrap())
            .collect::<Vec<_>>()
    };
    assert_eq!(run("count"), vec![4.0, 2.0, 1.0]);
    assert_eq!(run("sum"), vec![4.0, 8.0, 7.0]);
    assert_eq!(run("avg"), vec![2.0, 4.0, 7.0]);
    assert_eq!(run("min"), vec![1.0, -2.0, 7.0]);
    assert_eq!(run("max"), vec![3.0, 10.0, 7.0]);
    assert_eq!(run("last"), vec![3.0, -2.0, 7.0]);
}
