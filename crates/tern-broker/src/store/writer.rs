//! The store's writer thread: it commits what connections queued, in batches, and keeps
//! every op until a commit containing it succeeds. A failed commit (full disk, I/O error,
//! a panic in the storage engine) advances nothing: what waits for those ops (PUBACK,
//! PUBREC, SUBACK in sync mode) stays held, the store is marked unwritable so that new
//! QoS 1/2 publishes are refused, and the writer reopens the file and retries every
//! second until a commit goes through, with one log line per change of state.

use super::open::{close_quietly, create_database, guarded};
use super::{Durability, Op, Store, INCOMING, MESSAGES, RETAINED, SESSIONS};
use anyhow::Result;
use redb::Database;
use std::path::PathBuf;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How long the writer waits before trying a failed commit again.
const RETRY_EVERY: Duration = Duration::from_secs(1);

/// Most ops taken off the channel for one commit.
const BATCH_MAX: usize = 50_000;

/// The writer's own state; it alone touches the database.
pub(super) struct Writer<'a> {
    store: &'a Store,
    path: PathBuf,
    /// `None` after a failure, until the file is opened again.
    db: Option<Database>,
    /// Ops received and not yet committed, oldest first.
    pending: Vec<(u64, Op)>,
    /// The highest ticket received.
    received: u64,
    /// Set while commits fail: when to try again.
    retry_at: Option<Instant>,
}

impl<'a> Writer<'a> {
    pub(super) fn new(store: &'a Store, path: PathBuf, db: Database) -> Writer<'a> {
        Writer {
            store,
            path,
            db: Some(db),
            pending: Vec::new(),
            received: 0,
            retry_at: None,
        }
    }

    /// Runs until the channel closes, then commits what is left (once, if it can).
    pub(super) fn run(mut self, rx: mpsc::Receiver<(u64, Op)>) {
        let interval = match self.store.durability {
            Durability::Periodic(every) => every,
            _ => Duration::from_secs(3600),
        };
        let mut last_flush = Instant::now();
        let mut dirty = false;
        loop {
            let wait = match self.retry_at {
                Some(at) => at.saturating_duration_since(Instant::now()),
                None => interval.saturating_sub(last_flush.elapsed()),
            };
            match rx.recv_timeout(wait) {
                Ok(op) => self.take(op),
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
            while self.pending.len() < BATCH_MAX {
                match rx.try_recv() {
                    Ok(op) => self.take(op),
                    Err(_) => break,
                }
            }
            if self.retry_at.is_some_and(|at| Instant::now() < at) {
                continue;
            }
            let flush_due = dirty && last_flush.elapsed() >= interval;
            if self.pending.is_empty() && !flush_due && self.retry_at.is_none() {
                continue;
            }
            let fsync = self.store.is_sync() || flush_due || self.retry_at.is_some();
            if self.commit(fsync) {
                dirty = !fsync;
                if fsync {
                    last_flush = Instant::now();
                }
            }
        }
        if !self.commit(true) {
            tracing::error!(
                "final store flush failed: {} changes were not written",
                self.pending.len()
            );
        }
        if let Some(db) = self.db.take() {
            close_quietly(db);
        }
    }

    fn take(&mut self, (ticket, op): (u64, Op)) {
        self.received = ticket;
        self.pending.push((ticket, op));
    }

    /// Commits everything pending; on success publishes the durable ticket. Returns
    /// whether it succeeded.
    fn commit(&mut self, fsync: bool) -> bool {
        super::coalesce(&mut self.pending);
        let started = Instant::now();
        let result = self.try_commit(fsync);
        self.store.commit_seconds.observe_duration(started.elapsed());
        match result {
            Ok(()) => {
                self.pending.clear();
                if self.retry_at.take().is_some() {
                    self.store.writable.store(true, Relaxed);
                    tracing::warn!(
                        "data directory {} is writable again: QoS 1/2 publishes accepted",
                        self.path.display()
                    );
                }
                self.store.durable.store(self.received, Relaxed);
                self.store.advanced.notify_waiters();
                true
            }
            Err(e) => {
                self.store.write_failures.fetch_add(1, Relaxed);
                if self.retry_at.is_none() {
                    self.store.writable.store(false, Relaxed);
                    tracing::error!("{}", failure_message(&self.path, &e));
                }
                if let Some(db) = self.db.take() {
                    // The engine refuses every later write after an I/O error until the
                    // file is opened again.
                    close_quietly(db);
                }
                self.retry_at = Some(Instant::now() + RETRY_EVERY);
                false
            }
        }
    }

    fn try_commit(&mut self, fsync: bool) -> Result<()> {
        if self.db.is_none() {
            let path = self.path.clone();
            self.db = Some(guarded("reopening the store", || Ok(create_database(&path)?))?);
        }
        let Some(db) = self.db.as_ref() else {
            return Ok(());
        };
        let pending = &self.pending;
        guarded("writing to the store", || apply(db, pending, fsync))
    }
}

/// The log line for a store that cannot write: what happened and what to do.
fn failure_message(path: &std::path::Path, e: &anyhow::Error) -> String {
    let text = format!("{e:#}");
    let full = text.contains("No space left") || text.contains("os error 28") || text.contains("quota");
    if full {
        format!(
            "data directory {} full: QoS 1/2 publishes refused until it has room ({text})",
            path.display()
        )
    } else {
        format!(
            "data directory {} cannot be written: QoS 1/2 publishes refused until it can ({text})",
            path.display()
        )
    }
}

/// Applies `ops` in one transaction, fsynced if `fsync`.
pub(super) fn apply(db: &Database, ops: &[(u64, Op)], fsync: bool) -> Result<()> {
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
                    messages.insert((client_id.as_str(), *seq), r.as_slice())?;
                }
                Op::Message {
                    client_id,
                    seq,
                    record: None,
                    ..
                } => {
                    messages.remove((client_id.as_str(), *seq))?;
                }
                Op::Incoming {
                    client_id,
                    packet_id,
                    present: true,
                } => {
                    incoming.insert((client_id.as_str(), *packet_id), ())?;
                }
                Op::Incoming {
                    client_id,
                    packet_id,
                    present: false,
                } => {
                    incoming.remove((client_id.as_str(), *packet_id))?;
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
