//! The historian's embedded store: one redb file, `platform/historian.redb` in the data
//! directory, so `tern broker` keeps events with nothing to install.
//!
//! Two tables. `events` maps (organization, type, device, event id, timestamp, sequence)
//! to (format, payload), so one device's range of one event id is one ordered scan.
//! `by_time` maps (organization, timestamp, sequence) to the `events` key, so retention
//! removes an organization's oldest events with one scan from its start, without reading
//! the rest. Strings in keys end with a 0 byte (ids never contain one: topics may not), numbers
//! are big-endian, so byte order is the order above. The sequence number breaks ties
//! between events of one millisecond; it starts from the clock at open and counts up,
//! so it stays unique across restarts.
//!
//! A batch is one write transaction, committed durably before `append` returns, so
//! what was acknowledged survives a kill -9 (redb repairs the file at the next open).

use crate::historian::{Bookmark, EventPage, EventQuery, HistorianBackend, HistorianError, StoredEvent};
use bytes::Bytes;
use redb::{Database, ReadableTable, TableDefinition};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

const EVENTS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("events");
const BY_TIME: TableDefinition<&[u8], &[u8]> = TableDefinition::new("by_time");
/// Most events one retention transaction removes, so a large purge does not hold the
/// writer for long; `purge_before` loops until done.
const PURGE_CHUNK: usize = 10_000;

/// The embedded store.
pub struct EmbeddedStore {
    db: Database,
    path: PathBuf,
    next_seq: AtomicU64,
}

impl std::fmt::Debug for EmbeddedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedStore").field("path", &self.path).finish()
    }
}

/// The store's file inside a data directory.
pub fn store_path(data_dir: &Path) -> PathBuf {
    data_dir.join("platform").join("historian.redb")
}

impl EmbeddedStore {
    /// Opens (or creates) the store of `data_dir`. Blocking.
    pub fn open(data_dir: &Path) -> Result<EmbeddedStore, HistorianError> {
        let path = store_path(data_dir);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|source| HistorianError::Io {
                path: dir.to_path_buf(),
                source,
            })?;
        }
        let db = Database::create(&path).map_err(|e| store_error(format!("{}: {e}", path.display())))?;
        let tx = db.begin_write().map_err(store)?;
        tx.open_table(EVENTS).map_err(store)?;
        tx.open_table(BY_TIME).map_err(store)?;
        tx.commit().map_err(store)?;
        // Unique across restarts unless more than a million events a millisecond.
        let next_seq = AtomicU64::new(crate::lec::now_ms() << 20);
        Ok(EmbeddedStore { db, path, next_seq })
    }
}

fn store_error(what: String) -> HistorianError {
    HistorianError::Store {
        backend: "embedded",
        what,
    }
}

fn store(e: impl std::fmt::Display) -> HistorianError {
    store_error(e.to_string())
}

fn push_str(key: &mut Vec<u8>, s: &str) {
    key.extend_from_slice(s.as_bytes());
    key.push(0);
}

/// The `events` key prefix of one device's event id.
fn series_prefix(org: &str, type_id: &str, device_id: &str, event_id: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(org.len() + type_id.len() + device_id.len() + event_id.len() + 20);
    for s in [org, type_id, device_id, event_id] {
        push_str(&mut key, s);
    }
    key
}

fn with_time(mut prefix: Vec<u8>, timestamp_ms: u64, seq: u64) -> Vec<u8> {
    prefix.extend_from_slice(&timestamp_ms.to_be_bytes());
    prefix.extend_from_slice(&seq.to_be_bytes());
    prefix
}

/// The timestamp and sequence at the end of a key.
fn time_of(key: &[u8]) -> Option<(u64, u64)> {
    let at = key.len().checked_sub(16)?;
    let t = u64::from_be_bytes(key[at..at + 8].try_into().ok()?);
    let s = u64::from_be_bytes(key[at + 8..].try_into().ok()?);
    Some((t, s))
}

/// A value: the format's length (one byte), the format, the payload.
fn encode_value(format: &str, payload: &[u8]) -> Vec<u8> {
    let format = &format.as_bytes()[..format.len().min(255)];
    let mut value = Vec::with_capacity(1 + format.len() + payload.len());
    value.push(format.len() as u8);
    value.extend_from_slice(format);
    value.extend_from_slice(payload);
    value
}

fn decode_value(value: &[u8]) -> Option<(String, Bytes)> {
    let (&n, rest) = value.split_first()?;
    let format = rest.get(..usize::from(n))?;
    let payload = rest.get(usize::from(n)..)?;
    Some((
        String::from_utf8_lossy(format).into_owned(),
        Bytes::copy_from_slice(payload),
    ))
}

impl HistorianBackend for EmbeddedStore {
    fn name(&self) -> &'static str {
        "embedded"
    }

    fn append(&self, batch: &[StoredEvent]) -> Result<(), HistorianError> {
        if batch.is_empty() {
            return Ok(());
        }
        let tx = self.db.begin_write().map_err(store)?;
        {
            let mut events = tx.open_table(EVENTS).map_err(store)?;
            let mut by_time = tx.open_table(BY_TIME).map_err(store)?;
            for e in batch {
                let seq = self.next_seq.fetch_add(1, Relaxed);
                let key = with_time(
                    series_prefix(&e.org, &e.type_id, &e.device_id, &e.event_id),
                    e.timestamp_ms,
                    seq,
                );
                let mut org = Vec::with_capacity(e.org.len() + 1);
                push_str(&mut org, &e.org);
                let time_key = with_time(org, e.timestamp_ms, seq);
                events
                    .insert(key.as_slice(), encode_value(&e.format, &e.payload).as_slice())
                    .map_err(store)?;
                by_time.insert(time_key.as_slice(), key.as_slice()).map_err(store)?;
            }
        }
        tx.commit().map_err(store)
    }

    fn query(&self, q: &EventQuery) -> Result<EventPage, HistorianError> {
        let prefix = series_prefix(&q.org, &q.type_id, &q.device_id, &q.event_id);
        let from = match q.after {
            Some(b) if b.timestamp_ms >= q.start_ms => match b.seq.checked_add(1) {
                Some(seq) => with_time(prefix.clone(), b.timestamp_ms, seq),
                None => with_time(prefix.clone(), b.timestamp_ms.saturating_add(1), 0),
            },
            _ => with_time(prefix.clone(), q.start_ms, 0),
        };
        let to = with_time(prefix, q.end_ms, 0);
        let mut page = EventPage::default();
        if from >= to {
            return Ok(page);
        }
        let tx = self.db.begin_read().map_err(store)?;
        let table = tx.open_table(EVENTS).map_err(store)?;
        let limit = q.limit.max(1);
        for entry in table.range(from.as_slice()..to.as_slice()).map_err(store)? {
            let (key, value) = entry.map_err(store)?;
            let (Some((timestamp_ms, seq)), Some((format, payload))) =
                (time_of(key.value()), decode_value(value.value()))
            else {
                continue;
            };
            if page.events.len() == limit {
                // One more exists: the page ends at the last one returned.
                page.bookmark = page.bookmark.or(Some(Bookmark { timestamp_ms, seq }));
                break;
            }
            page.events.push(StoredEvent {
                org: q.org.clone(),
                type_id: q.type_id.clone(),
                device_id: q.device_id.clone(),
                event_id: q.event_id.clone(),
                format,
                timestamp_ms,
                payload,
            });
            page.bookmark = Some(Bookmark { timestamp_ms, seq });
        }
        if page.events.len() < limit {
            page.bookmark = None;
        }
        Ok(page)
    }

    fn purge_before(&self, org: &str, before_ms: u64) -> Result<u64, HistorianError> {
        let mut prefix = Vec::with_capacity(org.len() + 1);
        push_str(&mut prefix, org);
        let from = with_time(prefix.clone(), 0, 0);
        let to = with_time(prefix, before_ms, 0);
        let mut removed = 0u64;
        loop {
            let tx = self.db.begin_write().map_err(store)?;
            let done;
            {
                let mut by_time = tx.open_table(BY_TIME).map_err(store)?;
                let mut events = tx.open_table(EVENTS).map_err(store)?;
                let mut old: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
                for entry in by_time.range(from.as_slice()..to.as_slice()).map_err(store)? {
                    let (time_key, key) = entry.map_err(store)?;
                    old.push((time_key.value().to_vec(), key.value().to_vec()));
                    if old.len() == PURGE_CHUNK {
                        break;
                    }
                }
                done = old.len() < PURGE_CHUNK;
                for (time_key, key) in &old {
                    events.remove(key.as_slice()).map_err(store)?;
                    by_time.remove(time_key.as_slice()).map_err(store)?;
                }
                removed += old.len() as u64;
            }
            tx.commit().map_err(store)?;
            if done {
                return Ok(removed);
            }
        }
    }
}
