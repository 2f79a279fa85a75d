//! The durable store: persistent sessions, their QoS 1/2 messages (queued and in flight,
//! both directions) and retained messages, in one redb file under the data directory.
//!
//! Connection tasks never touch the disk. State changes become [`Op`]s on a channel, each
//! with a ticket number; one writer thread applies whatever has accumulated in a single
//! transaction and, in `sync` mode, fsyncs it before publishing the highest durable ticket
//! (group commit: every client waiting at that moment shares the fsync). A connection that
//! caused ops holds its output (PUBACK, PUBREC, SUBACK, outgoing PUBLISH with a new packet
//! id) until its last ticket is durable, so nothing is acknowledged before it is on disk.
//! `periodic` mode fsyncs on a timer and holds nothing; `off` keeps no store at all.

mod load;
mod open;
pub mod records;
mod writer;

pub use load::Loaded;

use anyhow::{Context, Result};
use parking_lot::Mutex;
use redb::TableDefinition;
use std::cell::Cell;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;
use tern_proto::ByteStr;
use tokio::sync::Notify;

pub(crate) const SESSIONS: TableDefinition<&str, &[u8]> = TableDefinition::new("sessions");
pub(crate) const MESSAGES: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("messages");
pub(crate) const INCOMING: TableDefinition<(&str, u16), ()> = TableDefinition::new("incoming_qos2");
pub(crate) const RETAINED: TableDefinition<&str, &[u8]> = TableDefinition::new("retained");

/// The file name under the data directory.
pub const FILE: &str = "tern.redb";

/// When writes reach the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// fsync before anything that depends on the write is acknowledged (group commit).
    Sync,
    /// fsync every interval; acknowledgements do not wait.
    Periodic(Duration),
    /// No store: memory only.
    Off,
}

/// One change to the stored state.
#[derive(Debug)]
pub enum Op {
    /// A session's record; `None` deletes the session with its messages and QoS 2 ids.
    Session {
        client_id: ByteStr,
        record: Option<Vec<u8>>,
    },
    /// A message of a session by sequence number; `None` deletes it. `first` marks the
    /// write that creates the record (the message was just queued).
    Message {
        client_id: ByteStr,
        seq: u64,
        record: Option<Vec<u8>>,
        first: bool,
    },
    /// A QoS 2 packet id received from the session's client and not yet released.
    Incoming {
        client_id: ByteStr,
        packet_id: u16,
        present: bool,
    },
    /// The retained message of a topic; `None` clears it.
    Retained { topic: String, record: Option<Vec<u8>> },
}

/// The channel to the writer: ops with their tickets.
type OpSender = mpsc::Sender<(u64, Op)>;

thread_local! {
    /// The last ticket this thread enqueued: the connection code runs packet handling
    /// synchronously, so it learns here what its own handling must wait for.
    static LAST_TICKET: Cell<u64> = const { Cell::new(0) };
}

/// The store's handle, shared by the whole broker.
#[derive(Debug)]
pub struct Store {
    /// The last ticket handed out, and the channel to the writer, locked together so that
    /// tickets reach the writer in order.
    queue: Mutex<(u64, Option<OpSender>)>,
    /// Every op up to this ticket is on disk (sync mode) or committed.
    durable: AtomicU64,
    /// Wakes connections waiting for `durable` to pass their ticket.
    advanced: Notify,
    durability: Durability,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
    /// False while commits fail (full disk, I/O error): QoS 1/2 publishes are refused.
    writable: AtomicBool,
    /// Commits that failed since start, for `$SYS` and the metrics.
    write_failures: AtomicU64,
    /// How long commits take (seconds), for the metrics.
    commit_seconds: crate::metrics::Histogram,
}

/// Upper bounds of the commit duration histogram, in seconds.
const COMMIT_BOUNDS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

impl Store {
    /// Opens (or creates) the store under `dir` and reads everything in it. A damaged file
    /// never stops the start: what can be read is salvaged into a fresh file, the damaged
    /// one is moved aside, and the log says so in one line.
    pub fn open(dir: &Path, durability: Durability) -> Result<(Arc<Store>, Loaded)> {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create data directory {}", dir.display()))?;
        let path = dir.join(FILE);
        let (db, loaded) = open::open_and_load(&path)?;
        let (tx, rx) = mpsc::channel();
        let store = Arc::new(Store {
            queue: Mutex::new((0, Some(tx))),
            durable: AtomicU64::new(0),
            advanced: Notify::new(),
            durability,
            writer: Mutex::new(None),
            writable: AtomicBool::new(true),
            write_failures: AtomicU64::new(0),
            commit_seconds: crate::metrics::Histogram::new(COMMIT_BOUNDS),
        });
        let writer_store = store.clone();
        let handle = std::thread::Builder::new()
            .name("tern-store".into())
            .spawn(move || writer::Writer::new(&writer_store, path, db).run(rx))
            .context("cannot start the store writer")?;
        *store.writer.lock() = Some(handle);
        Ok((store, loaded))
    }

    /// Whether acknowledgements wait for the disk.
    pub fn is_sync(&self) -> bool {
        self.durability == Durability::Sync
    }

    /// Whether commits succeed; false while the disk is full or failing.
    pub fn is_writable(&self) -> bool {
        self.writable.load(Relaxed)
    }

    /// Whether a QoS 1/2 publish must be refused now: in sync mode nothing may be
    /// acknowledged that cannot reach the disk.
    pub fn refuses_publishes(&self) -> bool {
        self.is_sync() && !self.is_writable()
    }

    /// Commits that failed since start.
    /// How long commits (successful or not) took, in seconds.
    pub fn commit_seconds(&self) -> &crate::metrics::Histogram {
        &self.commit_seconds
    }

    pub fn write_failures(&self) -> u64 {
        self.write_failures.load(Relaxed)
    }

    /// Queues a change that what the current connection sends next depends on (its
    /// output waits for it in sync mode).
    pub fn enqueue(&self, op: Op) {
        if let Some(ticket) = self.send(op) {
            LAST_TICKET.with(|t| t.set(ticket));
        }
    }

    /// Queues a change nothing has to wait for (a removal whose loss in a crash only
    /// means a QoS 1 message is sent again, or a QoS 2 one gets its PUBREL again).
    pub fn enqueue_quiet(&self, op: Op) {
        self.send(op);
    }

    fn send(&self, op: Op) -> Option<u64> {
        let mut queue = self.queue.lock();
        let ticket = queue.0 + 1;
        let sent = queue.1.as_ref().is_some_and(|tx| tx.send((ticket, op)).is_ok());
        sent.then(|| {
            queue.0 = ticket;
            ticket
        })
    }

    /// The last ticket this thread enqueued since the previous call (0 if none).
    pub fn take_thread_ticket() -> u64 {
        LAST_TICKET.with(|t| t.replace(0))
    }

    /// Whether every op up to `ticket` is durable.
    pub fn is_durable(&self, ticket: u64) -> bool {
        self.durable.load(Relaxed) >= ticket
    }

    /// Waits until every op up to `ticket` is durable.
    pub async fn wait_durable(&self, ticket: u64) {
        loop {
            let advanced = self.advanced.notified();
            tokio::pin!(advanced);
            advanced.as_mut().enable();
            if self.is_durable(ticket) {
                return;
            }
            advanced.await;
        }
    }

    /// Commits and fsyncs what is queued and stops the writer (at shutdown).
    pub fn close(&self) {
        self.queue.lock().1 = None;
        if let Some(handle) = self.writer.lock().take() {
            let _ = handle.join();
        }
    }
}

/// Drops from a batch the messages that were created and removed within it: delivered
/// and acknowledged before they reached the disk, they never need to. Under load most
/// QoS 1 messages take this path, which keeps the writer's work to the ones still owed.
fn coalesce(batch: &mut Vec<(u64, Op)>) {
    use std::collections::HashMap;
    // Per message: whether its first op in the batch created it, and whether it is removed.
    let mut messages: HashMap<(&str, u64), (bool, bool)> = HashMap::new();
    for (_, op) in batch.iter() {
        if let Op::Message {
            client_id,
            seq,
            record,
            first,
        } = op
        {
            let entry = messages.entry((client_id.as_str(), *seq)).or_insert((*first, false));
            entry.1 |= record.is_none();
        }
    }
    let keep: Vec<bool> = batch
        .iter()
        .map(|(_, op)| match op {
            Op::Message { client_id, seq, .. } => messages
                .get(&(client_id.as_str(), *seq))
                .is_none_or(|(created, removed)| !(*created && *removed)),
            _ => true,
        })
        .collect();
    drop(messages);
    let mut index = 0;
    batch.retain(|_| {
        index += 1;
        keep[index - 1]
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(seq: u64, record: bool, first: bool) -> (u64, Op) {
        let record = record.then(|| vec![1]);
        (
            seq,
            Op::Message {
                client_id: ByteStr::from("c"),
                seq,
                record,
                first,
            },
        )
    }

    #[test]
    fn messages_created_and_removed_in_one_batch_never_reach_the_disk() {
        let mut batch = vec![
            message(1, true, true),  // created
            message(2, true, false), // an update of a stored message
            message(1, false, false),
            message(2, false, false),
            message(3, true, true), // still owed
        ];
        coalesce(&mut batch);
        let left: Vec<(u64, bool)> = batch
            .iter()
            .map(|(t, op)| match op {
                Op::Message { record, .. } => (*t, record.is_some()),
                _ => unreachable!(),
            })
            .collect();
        assert_eq!(left, vec![(2, true), (2, false), (3, true)]);
    }
}
