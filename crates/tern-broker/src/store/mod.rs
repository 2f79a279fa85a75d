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
pub mod records;

pub use load::Loaded;

use anyhow::{bail, Context, Result};
use parking_lot::Mutex;
use redb::{Database, TableDefinition};
use std::cell::Cell;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};
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
}

impl Store {
    /// Opens (or creates) the store under `dir` and reads everything in it. A file that
    /// cannot be opened is moved aside and an empty store started, with one log line.
    pub fn open(dir: &Path, durability: Durability) -> Result<(Arc<Store>, Loaded)> {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create data directory {}", dir.display()))?;
        let path = dir.join(FILE);
        let db = open_or_set_aside(&path)?;
        let loaded = load::read_all(&db)?;
        let (tx, rx) = mpsc::channel();
        let store = Arc::new(Store {
            queue: Mutex::new((0, Some(tx))),
            durable: AtomicU64::new(0),
            advanced: Notify::new(),
            durability,
            writer: Mutex::new(None),
        });
        let writer_store = store.clone();
        let handle = std::thread::Builder::new()
            .name("tern-store".into())
            .spawn(move || writer_store.write_loop(db, rx))
            .context("cannot start the store writer")?;
        *store.writer.lock() = Some(handle);
        Ok((store, loaded))
    }

    /// Whether acknowledgements wait for the disk.
    pub fn is_sync(&self) -> bool {
        self.durability == Durability::Sync
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

    fn write_loop(&self, db: Database, rx: mpsc::Receiver<(u64, Op)>) {
        let interval = match self.durability {
            Durability::Periodic(every) => every,
            _ => Duration::from_secs(3600),
        };
        let mut last_flush = Instant::now();
        let mut dirty = false;
        loop {
            let first = match rx.recv_timeout(interval.saturating_sub(last_flush.elapsed())) {
                Ok(op) => Some(op),
                Err(mpsc::RecvTimeoutError::Timeout) => None,
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            };
            let mut batch: Vec<(u64, Op)> = first.into_iter().collect();
            while batch.len() < 50_000 {
                match rx.try_recv() {
                    Ok(op) => batch.push(op),
                    Err(_) => break,
                }
            }
            let flush_due = dirty && last_flush.elapsed() >= interval;
            if batch.is_empty() && !flush_due {
                continue;
            }
            let fsync = self.is_sync() || flush_due;
            let last = batch.last().map(|(t, _)| *t);
            coalesce(&mut batch);
            if let Err(e) = apply(&db, batch, fsync) {
                tracing::error!("store write failed ({e:#}); acknowledgements continue without durability");
            }
            dirty = !fsync;
            if fsync {
                last_flush = Instant::now();
            }
            if let Some(ticket) = last {
                self.durable.store(ticket, Relaxed);
                self.advanced.notify_waiters();
            }
        }
        if let Err(e) = apply(&db, Vec::new(), true) {
            tracing::error!("final store flush failed: {e:#}");
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

/// Applies `ops` in one transaction, fsynced if `fsync`.
fn apply(db: &Database, ops: Vec<(u64, Op)>, fsync: bool) -> Result<()> {
    let mut tx = db.begin_write()?;
    tx.set_durability(if fsync {
        redb::Durability::Immediate
    } else {
        redb::Durability::None
    });
    {
        let mut sessions = tx.open_table(SESSIONS)?;
        let mut messages = tx.open_table(MESSAGES)?;
        let mut incoming = tx.open_table(INCOMING)?;
        let mut retained = tx.open_table(RETAINED)?;
        for (_, op) in ops {
            match op {
                Op::Session {
                    client_id,
                    record: Some(r),
                } => {
                    sessions.insert(client_id.as_str(), r.as_slice())?;
                }
                Op::Session {
                    client_id,
                    record: None,
                } => {
                    let id = client_id.as_str();
                    sessions.remove(id)?;
                    messages.retain_in((id, 0)..=(id, u64::MAX), |_, _| false)?;
                    incoming.retain_in((id, 0)..=(id, u16::MAX), |_, _| false)?;
                }
                Op::Message {
                    client_id,
                    seq,
                    record: Some(r),
                    ..
                } => {
                    messages.insert((client_id.as_str(), seq), r.as_slice())?;
                }
                Op::Message {
                    client_id,
                    seq,
                    record: None,
                    ..
                } => {
                    messages.remove((client_id.as_str(), seq))?;
                }
                Op::Incoming {
                    client_id,
                    packet_id,
                    present: true,
                } => {
                    incoming.insert((client_id.as_str(), packet_id), ())?;
                }
                Op::Incoming {
                    client_id,
                    packet_id,
                    present: false,
                } => {
                    incoming.remove((client_id.as_str(), packet_id))?;
                }
                Op::Retained { topic, record: Some(r) } => {
                    retained.insert(topic.as_str(), r.as_slice())?;
                }
                Op::Retained { topic, record: None } => {
                    retained.remove(topic.as_str())?;
                }
            }
        }
    }
    tx.commit()?;
    Ok(())
}

/// Opens the database; one that cannot be opened (corrupt, torn beyond repair, not a
/// redb file) is renamed `tern.redb.corrupt-<unix time>` and a new one created.
fn open_or_set_aside(path: &Path) -> Result<Database> {
    match Database::create(path) {
        Ok(db) => Ok(db),
        Err(redb::DatabaseError::DatabaseAlreadyOpen) => bail!(
            "{} is in use by another running broker: each broker needs a persistence_location of its own",
            path.display()
        ),
        Err(redb::DatabaseError::Storage(redb::StorageError::Io(e)))
            if !matches!(
                e.kind(),
                std::io::ErrorKind::InvalidData | std::io::ErrorKind::UnexpectedEof
            ) =>
        {
            bail!("cannot open {}: {e}", path.display())
        }
        Err(e) => {
            let stamp = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            let aside: PathBuf = path.with_extension(format!("redb.corrupt-{stamp}"));
            std::fs::rename(path, &aside)
                .with_context(|| format!("{} is unreadable ({e}) and cannot be moved aside", path.display()))?;
            tracing::error!(
                "data file {} is unreadable ({e}): moved to {}; starting with an empty store, every stored session and retained message in it is lost",
                path.display(),
                aside.display()
            );
            Database::create(path).with_context(|| format!("cannot create {}", path.display()))
        }
    }
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
