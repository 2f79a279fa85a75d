use super::*;

const DAY: Duration = Duration::from_secs(86_400);

fn event(d: &str, e: &str, payload: &str, cached_ms: u64) -> CachedEvent {
    CachedEvent {
        type_id: "t".into(),
        device_id: d.into(),
        event_id: e.into(),
        format: "json".into(),
        payload: Bytes::from(payload.to_string()),
        cached_ms,
    }
}

fn ids(events: &[CachedEvent]) -> Vec<(String, String)> {
    events
        .iter()
        .map(|e| (e.event_id.clone(), String::from_utf8_lossy(&e.payload).to_string()))
        .collect()
}

#[test]
fn the_last_message_of_each_event_id_is_kept_five_ids_per_device() {
    let dir = tempfile_dir();
    let lec = Lec::new(&dir);
    let now = now_ms();
    lec.insert("acme", event("d1", "status", "1", now));
    lec.insert("acme", event("d1", "status", "2", now + 1));
    lec.insert("acme", event("d2", "status", "other", now));
    lec.insert("orgb", event("d1", "status", "b", now));
    let got = lec.device_events("acme", "t", "d1", DAY);
    assert_eq!(ids(&got), vec![("status".into(), "2".into())]);
    for (i, e) in ["a", "b", "c", "d", "e"].iter().enumerate() {
        lec.insert("acme", event("d1", e, "x", now + 10 + i as u64));
    }
    // Six ids: "status", the least recently cached, went.
    let got: Vec<String> = lec
        .device_events("acme", "t", "d1", DAY)
        .into_iter()
        .map(|e| e.event_id)
        .collect();
    assert_eq!(got, vec!["a", "b", "c", "d", "e"]);
    assert_eq!(
        ids(&lec.device_events("orgb", "t", "d1", DAY)),
        vec![("status".into(), "b".into())]
    );
    assert!(lec.device_events("orgc", "t", "d1", DAY).is_empty());
}

#[test]
fn old_entries_are_not_returned_and_are_swept() {
    let dir = tempfile_dir();
    let lec = Lec::new(&dir);
    let now = now_ms();
    lec.insert("acme", event("d1", "old", "x", now - 2 * 86_400_000));
    lec.insert("acme", event("d1", "new", "y", now));
    let got = lec.device_events("acme", "t", "d1", DAY);
    assert_eq!(ids(&got), vec![("new".into(), "y".into())]);
    let before = lec.bytes();
    lec.sweep(|_| Some(DAY));
    assert!(lec.bytes() < before);
    lec.sweep(|_| None);
    assert_eq!(lec.bytes(), 0);
    assert!(lec.device_events("acme", "t", "d1", DAY * 10).is_empty());
}

#[test]
fn memory_is_bounded_by_dropping_the_oldest() {
    let dir = tempfile_dir();
    let lec = Lec::with_limits(&dir, 128 << 10, 64 << 10);
    let now = now_ms();
    let payload = "p".repeat(1000);
    lec.insert("quiet", event("q", "e", "kept", now - 1000));
    for i in 0..500u64 {
        lec.insert("acme", event(&format!("d{i}"), "e", &payload, now + i));
    }
    assert!(lec.bytes() <= 64 << 10, "{}", lec.bytes());
    assert!(!lec.device_events("acme", "t", "d499", DAY).is_empty());
    assert!(lec.device_events("acme", "t", "d0", DAY).is_empty());
    // The busy organization lost its own oldest entries, not the quiet one's.
    assert!(!lec.device_events("quiet", "t", "q", DAY).is_empty());
    // Past the whole cache's limit, the oldest of all go.
    for i in 0..500u64 {
        lec.insert("other", event(&format!("d{i}"), "e", &payload, now + 1000 + i));
    }
    for i in 0..500u64 {
        lec.insert("third", event(&format!("d{i}"), "e", &payload, now + 2000 + i));
    }
    assert!(lec.bytes() <= 128 << 10, "{}", lec.bytes());
    assert!(lec.device_events("quiet", "t", "q", DAY).is_empty());
    assert!(!lec.device_events("third", "t", "d499", DAY).is_empty());
    // Larger than a sixteenth of an organization's limit: not cached at all, and the
    // device's previous message of that event id is no longer the last.
    lec.insert("acme", event("big", "e", "small", now));
    lec.insert("acme", event("big", "f", "kept", now));
    lec.insert("acme", event("big", "e", &"p".repeat(5000), now));
    assert_eq!(
        ids(&lec.device_events("acme", "t", "big", DAY)),
        vec![("f".into(), "kept".into())]
    );
}

#[test]
fn a_flushed_cache_is_read_back_and_damaged_files_are_named() {
    let dir = tempfile_dir();
    let lec = Lec::new(&dir);
    let now = now_ms();
    lec.insert("acme", event("d1", "status", "{\"a\":1}", now));
    lec.insert("acme", event("d1", "bin", "\u{1}\u{2}", now));
    assert!(lec.flush().is_empty());
    let again = Lec::new(&dir);
    assert!(again.load().is_empty());
    assert_eq!(
        again.device_events("acme", "t", "d1", DAY),
        lec.device_events("acme", "t", "d1", DAY)
    );
    // Cleared: the file goes at the next flush.
    lec.clear_org("acme");
    assert!(lec.flush().is_empty());
    assert!(!lec_dir(&dir).join("acme.json").exists());
    std::fs::write(lec_dir(&dir).join("bad.json"), "{not json").unwrap_or_else(|e| panic!("{e}"));
    let errors = Lec::new(&dir).load();
    assert_eq!(errors.len(), 1);
    assert!(errors[0].to_string().contains("bad.json is damaged"), "{}", errors[0]);
}

#[test]
fn a_large_cache_is_written_less_often_but_whole_at_a_stop() {
    let dir = tempfile_dir();
    let lec = Lec::with_limits(&dir, 64 << 20, 64 << 20);
    let now = now_ms();
    let payload = "p".repeat(1000);
    // About 22 MB: written at most every 5 seconds or so.
    for i in 0..20_000u64 {
        lec.insert("big", event(&format!("d{i}"), "e", &payload, now));
    }
    assert!(lec.flush_due().is_empty());
    let file = lec_dir(&dir).join("big.json");
    assert!(file.exists());
    lec.insert("big", event("late", "e", "late-one", now));
    lec.insert("small", event("d", "e", "x", now));
    assert!(lec.flush_due().is_empty());
    let text = std::fs::read_to_string(&file).unwrap_or_default();
    assert!(!text.contains(&STANDARD.encode("late-one")));
    assert!(lec_dir(&dir).join("small.json").exists());
    assert!(lec.flush().is_empty());
    let text = std::fs::read_to_string(&file).unwrap_or_default();
    assert!(text.contains(&STANDARD.encode("late-one")));
}

#[test]
fn only_device_event_topics_are_events() {
    assert_eq!(
        event_of("$iot/acme/iot-2/type/t/id/d/evt/status/fmt/json"),
        Some(["acme", "t", "d", "status", "json"])
    );
    for topic in [
        "$iot/acme/iot-2/type/t/id/d/cmd/reboot/fmt/json",
        "$iot/acme/iot-2/type/t/id/d/mon",
        "$iot/acme/iot-2/type/t/id/d/evt/status/fmt/json/more",
        "iot-2/type/t/id/d/evt/status/fmt/json",
    ] {
        assert_eq!(event_of(topic), None, "{topic}");
    }
    assert_eq!(timestamp(1_457_964_726_527), "2016-03-14T14:12:06.527+0000");
}

/// A fresh directory under the system's temporary one, removed by nobody (small).
fn tempfile_dir() -> PathBuf {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("tern-lec-test-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}
