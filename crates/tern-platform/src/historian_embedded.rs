//! The historian's embedded store: one redb file, `platform/historian.redb` in the data
//! directory, so `tern broker` keeps events with nothing to install.
//!
//! Events are stored in blocks: each batch is split by series (organization, type,
//! device, event id; the consumer gives it split, [`HistorianBackend::append_series`]),
//! and each series' events of the batch
//! (in time order, at most [`BLOCK_EVENTS`] and [`BLOCK_SPAN_MS`] apart) become one
//! record. A busy device's thousand events of a batch are then one B-tree insert instead
//! of a thousand, which is most of the store's cost per event. Two tables:
//! - `blocks` maps (organization, type, device, event id, first timestamp, block number)
//!   to the block's events (timestamp, format, payload each), so one series' time range
//!   is one ordered scan, starting [`BLOCK_SPAN_MS`] early to catch a block that began
//!   before the range;
//! - `by_time` maps (organization, last timestamp, block number) to the block's key and
//!   its count of events, so retention removes an organization's old blocks with one scan
//!   from its start. A block goes once its newest event is past the retention, so events
//!   may outlive it by at most [`BLOCK_SPAN_MS`];
//! - `usage` maps (organization, minute of a block's last timestamp) to the bytes of the
//!   blocks of that minute, kept with every append and purge, so retention by size finds
//!   where to cut by reading an organization's minutes newest first, not its events.
//!
//! Strings in keys end with a 0 byte (ids never contain one: topics may not), numbers are
//! big-endian, so byte order is the order above. Block numbers start from the clock at
//! open and count up, so they stay unique across restarts. A [`Bookmark`] is the block's
//! key time and `block number << 16 | index` of the page's last event in it.
//!
//! A batch is one write transaction, committed durably before `append` returns, so what
//! was acknowledged survives a kill -9 (redb repairs the file at the next open).

use crate::historian::{Bookmark, EventPage, EventQuery, HistorianBackend, HistorianError, StoredEvent};
use crate::historian_batch::{SeriesBatch, SeriesEvent};
use bytes::Bytes;
use redb::{Database, ReadableTable, TableDefinition};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

const BLOCKS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("blocks");
const BY_TIME: TableDefinition<&[u8], &[u8]> = TableDefinition::new("by_time");
const USAGE: TableDefinition<&[u8], u64> = TableDefinition::new("usage");
/// The `usage` table's granularity: retention by size cuts at a minute's start.
const USAGE_MS: u64 = 60_000;
/// Most events in one block (the bookmark's index has 16 bits).
pub const BLOCK_EVENTS: usize = 4096;
/// Most time between a block's first and last event.
pub const BLOCK_SPAN_MS: u64 = 60_000;
/// Most blocks one retention transaction removes; `purge_before` loops until done.
const PURGE_BLOCKS: usize = 2_000;

/// The embedded store.
pub struct EmbeddedStore {
    db: Database,
    path: PathBuf,
    next_block: AtomicU64,
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
        tx.open_table(BLOCKS).map_err(store)?;
        tx.open_table(BY_TIME).map_err(store)?;
        tx.open_table(USAGE).map_err(store)?;
        tx.commit().map_err(store)?;
        // Unique across restarts unless more than a million blocks a millisecond.
        let next_block = AtomicU64::new(crate::lec::now_ms() << 20);
        Ok(EmbeddedStore { db, path, next_block })
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

/// The `blocks` key prefix of one series.
fn series_prefix(org: &str, type_id: &str, device_id: &str, event_id: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(org.len() + type_id.len() + device_id.len() + event_id.len() + 20);
    for s in [org, type_id, device_id, event_id] {
        push_str(&mut key, s);
    }
    key
}

fn with_time(mut prefix: Vec<u8>, timestamp_ms: u64, block: u64) -> Vec<u8> {
    prefix.extend_from_slice(&timestamp_ms.to_be_bytes());
    prefix.extend_from_slice(&block.to_be_bytes());
    prefix
}

/// The `usage` key of an organization's minute (`at_ms` rounded down to it).
fn usage_key(org: &str, at_ms: u64) -> Vec<u8> {
    let mut key = Vec::with_capacity(org.len() + 9);
    push_str(&mut key, org);
    key.extend_from_slice(&(at_ms / USAGE_MS).to_be_bytes());
    key
}

/// Adds (or with `grown` false, takes away) bytes to minutes of the `usage` table.
fn change_usage(
    tx: &redb::WriteTransaction,
    changes: std::collections::HashMap<Vec<u8>, u64>,
    grown: bool,
) -> Result<(), HistorianError> {
    let mut usage = tx.open_table(USAGE).map_err(store)?;
    for (key, bytes) in changes {
        let was = usage.get(key.as_slice()).map_err(store)?.map_or(0, |v| v.value());
        let now = if grown {
            was.saturating_add(bytes)
        } else {
            was.saturating_sub(bytes)
        };
        if now == 0 {
            usage.remove(key.as_slice()).map_err(store)?;
        } else {
            usage.insert(key.as_slice(), now).map_err(store)?;
        }
    }
    Ok(())
}

/// The timestamp and block number at the end of a key.
fn time_of(key: &[u8]) -> Option<(u64, u64)> {
    let at = key.len().checked_sub(16)?;
    let t = u64::from_be_bytes(key.get(at..at + 8)?.try_into().ok()?);
    let b = u64::from_be_bytes(key.get(at + 8..)?.try_into().ok()?);
    Some((t, b))
}

/// Appends one event to a block: timestamp (8 bytes), format length (1), format, payload
/// length (4), payload.
fn encode_event(block: &mut Vec<u8>, e: &SeriesEvent) {
    let format = &e.format.as_bytes()[..e.format.len().min(255)];
    block.extend_from_slice(&e.timestamp_ms.to_be_bytes());
    block.push(format.len() as u8);
    block.extend_from_slice(format);
    let len = u32::try_from(e.payload.len()).unwrap_or(u32::MAX);
    block.extend_from_slice(&len.to_be_bytes());
    block.extend_from_slice(&e.payload[..len as usize]);
}

/// One event of a block: timestamp, format, payload.
type BlockEvent<'a> = (u64, &'a [u8], &'a [u8]);

/// A block's events: (timestamp, format, payload) each, borrowed from the block (only
/// the events a query returns are copied); `None` if it is damaged.
fn decode_block(mut block: &[u8]) -> Option<Vec<BlockEvent<'_>>> {
    let mut events = Vec::new();
    while !block.is_empty() {
        let ts = u64::from_be_bytes(block.get(..8)?.try_into().ok()?);
        let n = usize::from(*block.get(8)?);
        let format = block.get(9..9 + n)?;
        let len = u32::from_be_bytes(block.get(9 + n..13 + n)?.try_into().ok()?) as usize;
        let payload = block.get(13 + n..13 + n + len)?;
        events.push((ts, format, payload));
        block = &block[13 + n + len..];
    }
    Some(events)
}

impl HistorianBackend for EmbeddedStore {
    fn name(&self) -> &'static str {
        "embedded"
    }

    fn append(&self, batch: &[StoredEvent]) -> Result<(), HistorianError> {
        self.append_series(&crate::historian_batch::group(batch))
    }

    fn append_series(&self, batch: &[SeriesBatch]) -> Result<(), HistorianError> {
        if batch.iter().all(|s| s.events.is_empty()) {
            return Ok(());
        }
        let tx = self.db.begin_write().map_err(store)?;
        let mut grown = std::collections::HashMap::new();
        {
            let mut blocks = tx.open_table(BLOCKS).map_err(store)?;
            let mut by_time = tx.open_table(BY_TIME).map_err(store)?;
            let mut value = Vec::new();
            for series in batch {
                let mut sorted = std::borrow::Cow::Borrowed(&series.events[..]);
                if !sorted.is_sorted_by_key(|e| e.timestamp_ms) {
                    // The broker's clock went back (a test moved it): blocks are in time order.
                    sorted.to_mut().sort_by_key(|e| e.timestamp_ms);
                }
                let prefix = series_prefix(&series.org, &series.type_id, &series.device_id, &series.event_id);
                let mut at = 0;
                while at < sorted.len() {
                    let first = sorted[at].timestamp_ms;
                    let mut end = at + 1;
                    while end < sorted.len()
                        && end - at < BLOCK_EVENTS
                        && sorted[end].timestamp_ms - first <= BLOCK_SPAN_MS
                    {
                        end += 1;
                    }
                    let number = self.next_block.fetch_add(1, Relaxed);
                    let last = sorted[end - 1].timestamp_ms;
                    let key = with_time(prefix.clone(), first, number);
                    value.clear();
                    for e in &sorted[at..end] {
                        encode_event(&mut value, e);
                    }
                    let mut org = Vec::with_capacity(series.org.len() + 1);
                    push_str(&mut org, &series.org);
                    let time_key = with_time(org, last, number);
                    let mut index = Vec::with_capacity(key.len() + 4);
                    index.extend_from_slice(&u32::try_from(end - at).unwrap_or(u32::MAX).to_be_bytes());
                    index.extend_from_slice(&key);
                    blocks.insert(key.as_slice(), value.as_slice()).map_err(store)?;
                    by_time.insert(time_key.as_slice(), index.as_slice()).map_err(store)?;
                    *grown.entry(usage_key(&series.org, last)).or_insert(0) += value.len() as u64;
                    at = end;
                }
            }
        }
        change_usage(&tx, grown, true)?;
        tx.commit().map_err(store)
    }

    fn query(&self, q: &EventQuery) -> Result<EventPage, HistorianError> {
        let prefix = series_prefix(&q.org, &q.type_id, &q.device_id, &q.event_id);
        // Where to start: the bookmark's block, or a block span before the range.
        let (from, skip) = match q.after {
            Some(b) => (with_time(prefix.clone(), b.timestamp_ms, b.seq >> 16), Some(b)),
            None => (
                with_time(prefix.clone(), q.start_ms.saturating_sub(BLOCK_SPAN_MS), 0),
                None,
            ),
        };
        let to = with_time(prefix, q.end_ms, 0);
        let mut page = EventPage::default();
        if from >= to {
            return Ok(page);
        }
        let tx = self.db.begin_read().map_err(store)?;
        let table = tx.open_table(BLOCKS).map_err(store)?;
        let limit = q.limit.max(1);
        'blocks: for entry in table.range(from.as_slice()..to.as_slice()).map_err(store)? {
            let (key, value) = entry.map_err(store)?;
            let (Some((block_ms, number)), Some(events)) = (time_of(key.value()), decode_block(value.value())) else {
                continue;
            };
            for (index, (timestamp_ms, format, payload)) in events.into_iter().enumerate() {
                let seq = number << 16 | index as u64;
                let passed = skip.is_some_and(|b| (block_ms, seq) <= (b.timestamp_ms, b.seq));
                if passed || timestamp_ms < q.start_ms || timestamp_ms >= q.end_ms {
                    continue;
                }
                if page.events.len() == limit {
                    // One more exists: the page ends at the last one returned.
                    break 'blocks;
                }
                page.events.push(StoredEvent {
                    org: q.org.clone(),
                    type_id: q.type_id.clone(),
                    device_id: q.device_id.clone(),
                    event_id: q.event_id.clone(),
                    format: String::from_utf8_lossy(format).into_owned(),
                    timestamp_ms,
                    payload: Bytes::copy_from_slice(payload),
                });
                page.bookmark = Some(Bookmark {
                    timestamp_ms: block_ms,
                    seq,
                });
            }
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
            let mut shrunk = std::collections::HashMap::new();
            {
                let mut by_time = tx.open_table(BY_TIME).map_err(store)?;
                let mut blocks = tx.open_table(BLOCKS).map_err(store)?;
                let mut old: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
                for entry in by_time.range(from.as_slice()..to.as_slice()).map_err(store)? {
                    let (time_key, index) = entry.map_err(store)?;
                    old.push((time_key.value().to_vec(), index.value().to_vec()));
                    if old.len() == PURGE_BLOCKS {
                        break;
                    }
                }
                done = old.len() < PURGE_BLOCKS;
                for (time_key, index) in &old {
                    let (Some(count), Some(key)) = (index.get(..4), index.get(4..)) else {
                        continue;
                    };
                    let count = u32::from_be_bytes(count.try_into().unwrap_or_default());
                    if let Some(block) = blocks.remove(key).map_err(store)? {
                        let minute = time_of(time_key).map_or(0, |(t, _)| t);
                        *shrunk.entry(usage_key(org, minute)).or_insert(0) += block.value().len() as u64;
                    }
                    by_time.remove(time_key.as_slice()).map_err(store)?;
                    removed += u64::from(count);
                }
            }
            change_usage(&tx, shrunk, false)?;
            tx.commit().map_err(store)?;
            if done {
                return Ok(removed);
            }
        }
    }

    fn bytes_cutoff(&self, org: &str, max_bytes: u64) -> Result<Option<u64>, HistorianError> {
        let (from, to) = (usage_key(org, 0), usage_key(org, u64::MAX));
        let tx = self.db.begin_read().map_err(store)?;
        let usage = tx.open_table(USAGE).map_err(store)?;
        let mut total = 0u64;
        for entry in usage.range(from.as_slice()..=to.as_slice()).map_err(store)?.rev() {
            let (key, bytes) = entry.map_err(store)?;
            total = total.saturating_add(bytes.value());
            if total > max_bytes {
                // This minute and every older one go.
                let minute = key.value().len().checked_sub(8).and_then(|at| key.value().get(at..));
                let minute = minute.and_then(|m| m.try_into().ok()).map_or(0, u64::from_be_bytes);
                return Ok(Some(minute.saturating_add(1).saturating_mul(USAGE_MS)));
            }
        }
        Ok(None)
    }
}
