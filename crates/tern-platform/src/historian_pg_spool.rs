//! The PostgreSQL backend's spool: events acknowledged while the database could not take
//! them, kept durably in the data directory (`platform/historian-pg-spool.redb`) until the
//! backend has written them to the database, oldest first.
//!
//! One redb table maps an increasing number to one encoded row. Each row keeps the
//! identity the backend gave it before its first attempt (`writer`, `seq`), so a row that
//! did reach the database before the connection broke is not stored twice when it is
//! sent again: the database ignores a second row with the same identity.

use crate::historian::HistorianError;
use bytes::Bytes;
use redb::{Database, ReadableTable, ReadableTableMetadata, TableDefinition};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

const ROWS: TableDefinition<u64, &[u8]> = TableDefinition::new("rows");

/// One event as the PostgreSQL backend writes it: the event and its identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Row {
    /// Which backend instance made the row (random at each start).
    pub writer: i64,
    /// The row's number within its writer.
    pub seq: i64,
    pub org: String,
    pub type_id: String,
    pub device_id: String,
    pub event_id: String,
    pub format: String,
    pub ts_ms: i64,
    pub payload: Bytes,
}

/// The spool file of a data directory.
pub(crate) fn spool_path(data_dir: &Path) -> PathBuf {
    data_dir.join("platform").join("historian-pg-spool.redb")
}

/// The durable queue of rows waiting for the database.
pub(crate) struct Spool {
    db: Database,
    path: PathBuf,
    /// The key the next pushed row gets.
    next_key: AtomicU64,
    /// Rows in the spool now.
    len: AtomicU64,
}

impl std::fmt::Debug for Spool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Spool")
            .field("path", &self.path)
            .field("len", &self.len())
            .finish()
    }
}

fn spool_error(e: impl std::fmt::Display) -> HistorianError {
    HistorianError::Store {
        backend: "postgresql spool",
        what: e.to_string(),
    }
}

impl Spool {
    /// Opens (or creates) the spool of `data_dir`, with whatever an earlier run left in it.
    pub(crate) fn open(data_dir: &Path) -> Result<Spool, HistorianError> {
        let path = spool_path(data_dir);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|source| HistorianError::Io {
                path: dir.to_path_buf(),
                source,
            })?;
        }
        let db = Database::create(&path).map_err(|e| spool_error(format!("{}: {e}", path.display())))?;
        let tx = db.begin_write().map_err(spool_error)?;
        let (next_key, len) = {
            let table = tx.open_table(ROWS).map_err(spool_error)?;
            let last = table.last().map_err(spool_error)?.map(|(k, _)| k.value());
            (last.map_or(0, |k| k + 1), table.len().map_err(spool_error)?)
        };
        tx.commit().map_err(spool_error)?;
        Ok(Spool {
            db,
            path,
            next_key: AtomicU64::new(next_key),
            len: AtomicU64::new(len),
        })
    }

    /// The spool's file.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// How many rows wait.
    pub(crate) fn len(&self) -> u64 {
        self.len.load(Relaxed)
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Adds `rows` after those waiting, durably (committed to disk) before it returns.
    /// The caller serializes pushes and removals.
    pub(crate) fn push(&self, rows: &[Row]) -> Result<(), HistorianError> {
        let tx = self.db.begin_write().map_err(spool_error)?;
        let mut key = self.next_key.load(Relaxed);
        {
            let mut table = tx.open_table(ROWS).map_err(spool_error)?;
            for row in rows {
                table.insert(key, encode(row).as_slice()).map_err(spool_error)?;
                key += 1;
            }
        }
        tx.commit().map_err(spool_error)?;
        self.next_key.store(key, Relaxed);
        self.len.fetch_add(rows.len() as u64, Relaxed);
        Ok(())
    }

    /// The oldest rows, at most `max_rows` of them and about `max_bytes` of payload (at
    /// least one row when any waits), with their keys. A row that cannot be decoded (a
    /// damaged file) comes back as `None` so the caller can drop it.
    #[allow(clippy::type_complexity)]
    pub(crate) fn peek(&self, max_rows: usize, max_bytes: usize) -> Result<Vec<(u64, Option<Row>)>, HistorianError> {
        let tx = self.db.begin_read().map_err(spool_error)?;
        let table = tx.open_table(ROWS).map_err(spool_error)?;
        let mut out = Vec::new();
        let mut bytes = 0usize;
        for entry in table.iter().map_err(spool_error)? {
            let (key, value) = entry.map_err(spool_error)?;
            let value = value.value();
            bytes = bytes.saturating_add(value.len());
            out.push((key.value(), decode(value)));
            if out.len() >= max_rows || bytes >= max_bytes {
                break;
            }
        }
        Ok(out)
    }

    /// Removes the rows with these keys (written to the database), durably.
    pub(crate) fn remove(&self, keys: &[u64]) -> Result<(), HistorianError> {
        let tx = self.db.begin_write().map_err(spool_error)?;
        let mut removed = 0u64;
        {
            let mut table = tx.open_table(ROWS).map_err(spool_error)?;
            for key in keys {
                if table.remove(*key).map_err(spool_error)?.is_some() {
                    removed += 1;
                }
            }
        }
        tx.commit().map_err(spool_error)?;
        self.len.fetch_sub(removed.min(self.len()), Relaxed);
        Ok(())
    }
}

/// A row as the spool keeps it: writer, seq and timestamp (8 bytes each, big-endian),
/// then each string and the payload as a 4-byte length and its bytes.
fn encode(row: &Row) -> Vec<u8> {
    let strings = [&row.org, &row.type_id, &row.device_id, &row.event_id, &row.format];
    let size = 24 + strings.iter().map(|s| 4 + s.len()).sum::<usize>() + 4 + row.payload.len();
    let mut out = Vec::with_capacity(size);
    out.extend_from_slice(&row.writer.to_be_bytes());
    out.extend_from_slice(&row.seq.to_be_bytes());
    out.extend_from_slice(&row.ts_ms.to_be_bytes());
    for s in strings {
        push_bytes(&mut out, s.as_bytes());
    }
    push_bytes(&mut out, &row.payload);
    out
}

fn push_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    // Ids and formats are short and payloads at most 256 MB: a length always fits.
    let len = u32::try_from(bytes.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&bytes[..len as usize]);
}

/// Reads what [`encode`] wrote; `None` if it is not that.
fn decode(mut bytes: &[u8]) -> Option<Row> {
    let writer = i64::from_be_bytes(take(&mut bytes, 8)?.try_into().ok()?);
    let seq = i64::from_be_bytes(take(&mut bytes, 8)?.try_into().ok()?);
    let ts_ms = i64::from_be_bytes(take(&mut bytes, 8)?.try_into().ok()?);
    let mut text = || -> Option<String> {
        let len = u32::from_be_bytes(take(&mut bytes, 4)?.try_into().ok()?);
        String::from_utf8(take(&mut bytes, usize::try_from(len).ok()?)?.to_vec()).ok()
    };
    let (org, type_id, device_id, event_id, format) = (text()?, text()?, text()?, text()?, text()?);
    let len = u32::from_be_bytes(take(&mut bytes, 4)?.try_into().ok()?);
    let payload = Bytes::copy_from_slice(take(&mut bytes, usize::try_from(len).ok()?)?);
    bytes.is_empty().then_some(Row {
        writer,
        seq,
        org,
        type_id,
        device_id,
        event_id,
        format,
        ts_ms,
        payload,
    })
}

fn take<'a>(bytes: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
    if bytes.len() < n {
        return None;
    }
    let (head, rest) = bytes.split_at(n);
    *bytes = rest;
    Some(head)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn row(seq: i64, payload: &[u8]) -> Row {
        Row {
            writer: -7,
            seq,
            org: "org1".into(),
            type_id: "t".into(),
            device_id: "d".into(),
            event_id: "e".into(),
            format: "json".into(),
            ts_ms: 1_700_000_000_000 + seq,
            payload: Bytes::copy_from_slice(payload),
        }
    }

    #[test]
    fn a_row_survives_encoding_and_a_damaged_one_is_refused() {
        let r = row(3, b"{\"d\":1}");
        let bytes = encode(&r);
        assert_eq!(decode(&bytes), Some(r));
        assert_eq!(decode(&bytes[..bytes.len() - 1]), None);
        assert_eq!(decode(&[]), None);
    }

    #[test]
    fn rows_come_back_oldest_first_across_a_reopen_and_leave_when_removed() {
        let dir = std::env::temp_dir().join(format!("tern-pg-spool-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        {
            let spool = Spool::open(&dir).unwrap();
            assert!(spool.is_empty());
            spool.push(&[row(1, b"a"), row(2, b"b")]).unwrap();
            spool.push(&[row(3, b"c")]).unwrap();
            assert_eq!(spool.len(), 3);
        }
        let spool = Spool::open(&dir).unwrap();
        assert_eq!(spool.len(), 3);
        let first = spool.peek(2, usize::MAX).unwrap();
        let seqs: Vec<i64> = first.iter().map(|(_, r)| r.as_ref().unwrap().seq).collect();
        assert_eq!(seqs, [1, 2]);
        spool
            .remove(&first.iter().map(|(k, _)| *k).collect::<Vec<_>>())
            .unwrap();
        spool.push(&[row(4, b"d")]).unwrap();
        let rest = spool.peek(10, 1).unwrap();
        assert_eq!(rest.len(), 1, "the byte budget stops after one row");
        let all = spool.peek(10, usize::MAX).unwrap();
        let seqs: Vec<i64> = all.iter().map(|(_, r)| r.as_ref().unwrap().seq).collect();
        assert_eq!(seqs, [3, 4]);
        assert_eq!(spool.len(), 2);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
