//! The historian on PostgreSQL, for users who outgrow the embedded store
//! (`historian_postgres <connection string>`): the same [`HistorianBackend`] as the
//! embedded store, its rows in the table `tern_events` of the database the connection
//! string names (schema in [`crate::historian_pg_sql`], created and migrated by Tern).
//!
//! The trait blocks and tokio-postgres is async: the backend owns a small runtime of its
//! own (one worker thread) where its connection lives, and each call hands its work to it
//! and waits for the answer, so nothing here runs on (or blocks) the broker's runtime.
//!
//! A batch is one multi-row `INSERT ... SELECT FROM unnest(...)`, committed before
//! `append` returns. When the database cannot take it (down, unreachable, no answer in
//! [`INSERT_TIMEOUT`]) the batch goes to the spool in the data directory
//! ([`crate::historian_pg_spool`]), durably, and `append` still succeeds: nothing
//! acknowledged is lost. While anything waits in the spool, new batches queue behind it,
//! so the database receives events in the order they were stored. A thread of the
//! backend reconnects (with backoff) and writes the spool out oldest first. Every row
//! carries an identity given before its first attempt (`writer`, `seq`), unique in the
//! table, and inserts skip rows already there: a batch whose commit was lost with the
//! connection is not stored twice when sent again.
//!
//! Queries and retention run in SQL against the table's indexes; while the database is
//! down they fail as unavailable (the REST API answers 503).

use crate::historian::{
    AggregateBucket, Bookmark, EventPage, EventQuery, HistorianBackend, HistorianError, StoredEvent, MAX_PAGE,
};
use crate::historian_pg_spool::{Row, Spool};
use crate::historian_pg_sql as sql;
use parking_lot::{Condvar, Mutex};
use std::future::Future;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;
use tokio_postgres::config::Host;
use tokio_postgres::{Client, Config, NoTls, Statement};

const BACKEND: &str = "postgresql";
/// Longest wait for a direct insert before the batch goes to the spool instead: the
/// historian's consumer waits this long at most on a database that stopped answering.
const INSERT_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest wait for anything else (a query, a purge step, a catch-up batch).
const OP_TIMEOUT: Duration = Duration::from_secs(30);
/// Connect timeout unless the connection string sets one.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Retries after a failure wait this long at first, doubling up to [`RETRY_MAX`].
const RETRY_MIN: Duration = Duration::from_millis(200);
const RETRY_MAX: Duration = Duration::from_secs(5);
/// Most rows, and about how many bytes, one catch-up insert sends.
const DRAIN_ROWS: usize = 1000;
const DRAIN_BYTES: usize = 8 << 20;
/// The Unix socket directory Debian's PostgreSQL listens in, for a connection string
/// without a host (as libpq does).
const DEFAULT_SOCKET_DIR: &str = "/var/run/postgresql";

fn unavailable(what: impl std::fmt::Display) -> HistorianError {
    HistorianError::Unavailable {
        backend: BACKEND,
        what: what.to_string(),
    }
}

fn store_error(what: impl std::fmt::Display) -> HistorianError {
    HistorianError::Store {
        backend: BACKEND,
        what: what.to_string(),
    }
}

/// A failed insert: a row the database will never take (bad data), or anything else
/// (the database down, slow, refusing for now), which a retry may cure.
enum InsertError {
    Refused(String),
    Failed(HistorianError),
}

impl From<HistorianError> for InsertError {
    fn from(e: HistorianError) -> InsertError {
        InsertError::Failed(e)
    }
}

/// An open connection and its prepared statements.
struct Conn {
    client: Client,
    insert: Statement,
    select: Statement,
    generation: u64,
}

/// What the backend's calls and its catch-up thread share.
struct Shared {
    config: Config,
    /// "database X on Y", for logs (never the password).
    target: String,
    spool: Spool,
    /// This run's identity in the rows' `writer` column, and the next row's `seq`.
    writer: i64,
    next_seq: AtomicI64,
    conn: Mutex<Option<Arc<Conn>>>,
    generation: AtomicU64,
    /// Held by whoever writes rows (an append, a catch-up step), so rows reach the
    /// database and the spool in order.
    write: Mutex<()>,
    /// Wakes the catch-up thread.
    wake: (Mutex<bool>, Condvar),
    stop: AtomicBool,
    /// Whether the outage was logged (logged once per outage).
    down: AtomicBool,
    /// Rows dropped: refused by the database as bad data, or damaged in the spool.
    dropped: AtomicU64,
    runtime: tokio::runtime::Handle,
}

/// The PostgreSQL backend.
pub struct PgBackend {
    shared: Arc<Shared>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl std::fmt::Debug for PgBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgBackend")
            .field("target", &self.shared.target)
            .field("spool", &self.shared.spool)
            .finish()
    }
}

/// Reads a `historian_postgres` connection string (libpq's `key=value` form or a
/// `postgresql://` URL); the error names what is wrong.
pub fn parse_config(conn_str: &str) -> Result<Config, HistorianError> {
    let mut config: Config = conn_str
        .parse()
        .map_err(|e| HistorianError::Invalid(format!("historian_postgres: {}", chain(&e))))?;
    if config.get_hosts().is_empty() {
        config.host_path(DEFAULT_SOCKET_DIR);
    }
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(CONNECT_TIMEOUT);
    }
    if config.get_application_name().is_none() {
        config.application_name("tern");
    }
    Ok(config)
}

fn describe(config: &Config) -> String {
    let host = match config.get_hosts().first() {
        Some(Host::Tcp(name)) => name.clone(),
        Some(Host::Unix(path)) => path.display().to_string(),
        None => DEFAULT_SOCKET_DIR.to_string(),
    };
    let db = config.get_dbname().or(config.get_user()).unwrap_or("(default)");
    format!("database {db} on {host}")
}

/// Opens the PostgreSQL backend for `conn_str`, its spool in `data_dir`. Returns at once:
/// the connection (and the schema's creation or migration) is made by the backend's
/// thread, which logs it, and retries until the database answers; events stored before
/// then wait in the spool.
pub fn open(conn_str: &str, data_dir: &Path) -> Result<PgBackend, HistorianError> {
    let config = parse_config(conn_str)?;
    let spool = Spool::open(data_dir)?;
    let io = |source| HistorianError::Io {
        path: data_dir.to_path_buf(),
        source,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("tern-historian-pg")
        .enable_all()
        .build()
        .map_err(io)?;
    let mut id = [0u8; 8];
    getrandom::getrandom(&mut id).map_err(|e| store_error(format!("no random writer id: {e}")))?;
    let shared = Arc::new(Shared {
        target: describe(&config),
        config,
        spool,
        writer: i64::from_be_bytes(id),
        next_seq: AtomicI64::new(0),
        conn: Mutex::new(None),
        generation: AtomicU64::new(0),
        write: Mutex::new(()),
        wake: (Mutex::new(false), Condvar::new()),
        stop: AtomicBool::new(false),
        down: AtomicBool::new(false),
        dropped: AtomicU64::new(0),
        runtime: runtime.handle().clone(),
    });
    if !shared.spool.is_empty() {
        tracing::info!(
            "historian: {} events buffered by an earlier run wait in {} for PostgreSQL",
            shared.spool.len(),
            shared.spool.path().display()
        );
    }
    let catch_up = shared.clone();
    std::thread::Builder::new()
        .name("tern-historian-pg-sync".into())
        .spawn(move || catch_up_loop(&catch_up))
        .map_err(io)?;
    Ok(PgBackend {
        shared,
        runtime: Some(runtime),
    })
}

/// The historian's backend when the broker's configuration names a PostgreSQL database
/// (`historian_postgres`), `None` when it does not (the embedded store serves). A backend
/// that cannot be opened (its spool file) is logged and stores nothing.
pub fn configured(handle: &tern_broker::BrokerHandle, data_dir: &Path) -> Option<Arc<dyn HistorianBackend>> {
    let conn_str = handle.state().config().historian_postgres.clone()?;
    Some(match open(&conn_str, data_dir) {
        Ok(backend) => {
            tracing::info!("historian: storing events in PostgreSQL ({})", backend.shared.target);
            let shared = backend.shared.clone();
            let metrics = move |out: &mut String| exposition(&shared, out);
            handle.state().metrics.extra.add(Box::new(metrics));
            Arc::new(backend)
        }
        Err(e) => {
            tracing::error!("historian: {e}: nothing will be stored");
            Arc::new(crate::historian::NoStore(e.to_string()))
        }
    })
}

/// Appends the backend's gauges and counter to a `/metrics` scrape.
fn exposition(shared: &Shared, out: &mut String) {
    use std::fmt::Write;
    let connected = u64::from(shared.current().is_some());
    for (name, kind, help, value) in [
        (
            "tern_historian_pg_connected",
            "gauge",
            "Whether the historian has a connection to its PostgreSQL database.",
            connected,
        ),
        (
            "tern_historian_pg_buffered",
            "gauge",
            "Stored events waiting in the spool for the PostgreSQL database.",
            shared.spool.len(),
        ),
        (
            "tern_historian_pg_dropped_total",
            "counter",
            "Events dropped: refused by PostgreSQL as bad data, or damaged in the spool.",
            shared.dropped.load(Relaxed),
        ),
    ] {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}");
    }
}

/// Runs `work` on the backend's runtime and waits for it, `timeout` at most.
fn block<T: Send + 'static>(
    runtime: &tokio::runtime::Handle,
    timeout: Duration,
    work: impl Future<Output = Result<T, InsertError>> + Send + 'static,
) -> Result<T, InsertError> {
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    runtime.spawn(async move {
        let answer = match tokio::time::timeout(timeout, work).await {
            Ok(answer) => answer,
            Err(_) => Err(InsertError::Failed(unavailable(format!(
                "no answer within {} s",
                timeout.as_secs()
            )))),
        };
        let _ = tx.send(answer);
    });
    rx.recv()
        .unwrap_or_else(|_| Err(InsertError::Failed(unavailable("the backend is stopping"))))
}

/// Like [`block`] for work that cannot be refused row by row.
fn run<T: Send + 'static>(
    runtime: &tokio::runtime::Handle,
    work: impl Future<Output = Result<T, HistorianError>> + Send + 'static,
) -> Result<T, HistorianError> {
    match block(
        runtime,
        OP_TIMEOUT,
        async move { work.await.map_err(InsertError::Failed) },
    ) {
        Ok(value) => Ok(value),
        Err(InsertError::Failed(e)) => Err(e),
        Err(InsertError::Refused(what)) => Err(store_error(what)),
    }
}

/// An error and its causes, one after the other (tokio-postgres says "error connecting
/// to server" and keeps the why in its source).
pub(crate) fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// A database error as the historian reports it: unavailable when the connection is
/// gone or the server says it cannot serve now, a store error otherwise.
fn pg_error(e: &tokio_postgres::Error) -> HistorianError {
    match e.code() {
        Some(code) if !transient(code.code()) => store_error(chain(e)),
        _ => unavailable(chain(e)),
    }
}

/// SQLSTATE classes that say "not now" rather than "never": connection exceptions,
/// insufficient resources, operator intervention, system errors, rollbacks.
fn transient(code: &str) -> bool {
    matches!(code.get(..2), Some("08" | "53" | "57" | "58" | "40" | "XX"))
}

/// Whether the database refused a row for what it holds (a data exception, a
/// constraint, a program limit): sending it again can never succeed.
fn refused(e: &tokio_postgres::Error) -> bool {
    e.code()
        .is_some_and(|code| matches!(code.code().get(..2), Some("22" | "23" | "54")))
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// The payload as JSON for the `body` column, when it is JSON the database can hold
/// (jsonb refuses the character U+0000).
fn body_of(payload: &[u8]) -> Option<serde_json::Value> {
    if payload.windows(6).any(|w| w.eq_ignore_ascii_case(b"\\u0000")) {
        return None;
    }
    serde_json::from_slice(payload).ok()
}

/// Inserts `rows` in one statement; rows already in the table are skipped.
async fn insert(conn: Arc<Conn>, rows: Arc<Vec<Row>>, with_body: bool) -> Result<(), InsertError> {
    let text = |f: fn(&Row) -> &str| rows.iter().map(f).collect::<Vec<&str>>();
    let orgs = text(|r| &r.org);
    let types = text(|r| &r.type_id);
    let devices = text(|r| &r.device_id);
    let events = text(|r| &r.event_id);
    let formats = text(|r| &r.format);
    let times: Vec<i64> = rows.iter().map(|r| r.ts_ms).collect();
    let writers: Vec<i64> = rows.iter().map(|r| r.writer).collect();
    let seqs: Vec<i64> = rows.iter().map(|r| r.seq).collect();
    let payloads: Vec<&[u8]> = rows.iter().map(|r| &r.payload[..]).collect();
    let bodies: Vec<Option<serde_json::Value>> = rows
        .iter()
        .map(|r| if with_body { body_of(&r.payload) } else { None })
        .collect();
    conn.client
        .execute(
            &conn.insert,
            &[
                &orgs, &types, &devices, &events, &formats, &times, &writers, &seqs, &payloads, &bodies,
            ],
        )
        .await
        .map(|_| ())
        .map_err(|e| match refused(&e) {
            true => InsertError::Refused(e.to_string()),
            false => InsertError::Failed(pg_error(&e)),
        })
}

impl Shared {
    fn current(&self) -> Option<Arc<Conn>> {
        self.conn.lock().clone()
    }

    /// Forgets connection `generation` (it failed) and has the catch-up thread reconnect.
    fn drop_conn(&self, generation: u64) {
        let mut conn = self.conn.lock();
        if conn.as_ref().is_some_and(|c| c.generation == generation) {
            *conn = None;
        }
        drop(conn);
        self.wake();
    }

    fn wake(&self) {
        *self.wake.0.lock() = true;
        self.wake.1.notify_one();
    }

    /// Waits until woken, or `timeout` passed.
    fn sleep(&self, timeout: Option<Duration>) {
        let mut woken = self.wake.0.lock();
        if !*woken {
            match timeout {
                Some(t) => {
                    self.wake.1.wait_for(&mut woken, t);
                }
                None => self.wake.1.wait(&mut woken),
            }
        }
        *woken = false;
    }

    /// Logs the start of an outage once.
    fn note_down(&self, e: &HistorianError) {
        if !self.down.swap(true, Relaxed) {
            let why = match e {
                HistorianError::Unavailable { what, .. } | HistorianError::Store { what, .. } => what.clone(),
                other => other.to_string(),
            };
            tracing::warn!(
                "historian: PostgreSQL ({}) unavailable: {why}; events are kept in {} until it is back",
                self.target,
                self.spool.path().display()
            );
        }
    }

    fn row(&self, e: &StoredEvent) -> Row {
        Row {
            writer: self.writer,
            seq: self.next_seq.fetch_add(1, Relaxed),
            org: e.org.clone(),
            type_id: e.type_id.clone(),
            device_id: e.device_id.clone(),
            event_id: e.event_id.clone(),
            format: e.format.clone(),
            ts_ms: to_i64(e.timestamp_ms),
            payload: e.payload.clone(),
        }
    }
}

/// Connects, creates or migrates the schema, prepares the statements.
async fn connect(shared: Arc<Shared>) -> Result<(Arc<Conn>, sql::Migrated), HistorianError> {
    let (mut client, connection) = shared.config.connect(NoTls).await.map_err(|e| unavailable(chain(&e)))?;
    let generation = shared.generation.fetch_add(1, Relaxed) + 1;
    let watcher = shared.clone();
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!("historian: PostgreSQL connection ended: {e}");
        }
        watcher.drop_conn(generation);
    });
    let migrated = sql::migrate(&mut client).await?;
    let insert = client.prepare(sql::INSERT).await.map_err(|e| pg_error(&e))?;
    let select = client.prepare(sql::SELECT).await.map_err(|e| pg_error(&e))?;
    let conn = Conn {
        client,
        insert,
        select,
        generation,
    };
    Ok((Arc::new(conn), migrated))
}

/// The catch-up thread: keeps a connection, writes the spool out oldest first.
fn catch_up_loop(shared: &Arc<Shared>) {
    let mut backoff = RETRY_MIN;
    while !shared.stop.load(Relaxed) {
        let connected = shared.current().is_some();
        if connected && shared.spool.is_empty() {
            shared.sleep(None);
            continue;
        }
        let step = if connected {
            catch_up_step(shared)
        } else {
            reconnect(shared)
        };
        match step {
            Ok(()) => backoff = RETRY_MIN,
            Err(e) => {
                shared.note_down(&e);
                shared.sleep(Some(backoff));
                backoff = (backoff * 2).min(RETRY_MAX);
            }
        }
    }
}

fn reconnect(shared: &Arc<Shared>) -> Result<(), HistorianError> {
    let (conn, migrated) = run(&shared.runtime, connect(shared.clone()))?;
    tracing::info!("historian: PostgreSQL ({}) connected; {migrated}", shared.target);
    *shared.conn.lock() = Some(conn);
    if shared.down.swap(false, Relaxed) || !shared.spool.is_empty() {
        tracing::info!(
            "historian: PostgreSQL is back; writing {} buffered events",
            shared.spool.len()
        );
    }
    Ok(())
}

/// Writes the spool's oldest rows to the database and removes them from the spool.
fn catch_up_step(shared: &Arc<Shared>) -> Result<(), HistorianError> {
    let _writing = shared.write.lock();
    let chunk = shared.spool.peek(DRAIN_ROWS, DRAIN_BYTES)?;
    if chunk.is_empty() {
        return Ok(());
    }
    let keys: Vec<u64> = chunk.iter().map(|(k, _)| *k).collect();
    let damaged = chunk.iter().filter(|(_, r)| r.is_none()).count();
    if damaged > 0 {
        shared.dropped.fetch_add(damaged as u64, Relaxed);
        tracing::error!("historian: {damaged} damaged events in the PostgreSQL spool dropped");
    }
    let rows: Vec<Row> = chunk.into_iter().filter_map(|(_, r)| r).collect();
    let conn = shared.current().ok_or_else(|| unavailable("not connected"))?;
    match block(
        &shared.runtime,
        OP_TIMEOUT,
        insert(conn.clone(), Arc::new(rows.clone()), true),
    ) {
        Ok(()) => {}
        Err(InsertError::Refused(_)) => insert_one_by_one(shared, &conn, rows)?,
        Err(InsertError::Failed(e)) => {
            shared.drop_conn(conn.generation);
            return Err(e);
        }
    }
    shared.spool.remove(&keys)?;
    if shared.spool.is_empty() {
        tracing::info!("historian: buffered events caught up with PostgreSQL");
    }
    Ok(())
}

/// A batch the database refused: each row alone, then without its JSON body; a row it
/// still refuses is dropped, logged and counted.
fn insert_one_by_one(shared: &Arc<Shared>, conn: &Arc<Conn>, rows: Vec<Row>) -> Result<(), HistorianError> {
    for row in rows {
        let one = Arc::new(vec![row]);
        for with_body in [true, false] {
            match block(
                &shared.runtime,
                OP_TIMEOUT,
                insert(conn.clone(), one.clone(), with_body),
            ) {
                Ok(()) => break,
                Err(InsertError::Refused(what)) if !with_body => {
                    shared.dropped.fetch_add(1, Relaxed);
                    let r = &one[0];
                    tracing::error!(
                        "historian: PostgreSQL refused an event of {}/{}/{} ({}): {what}; dropped",
                        r.org,
                        r.type_id,
                        r.device_id,
                        r.event_id
                    );
                }
                Err(InsertError::Refused(_)) => {}
                Err(InsertError::Failed(e)) => {
                    shared.drop_conn(conn.generation);
                    return Err(e);
                }
            }
        }
    }
    Ok(())
}

impl PgBackend {
    /// Events waiting in the spool for the database.
    pub fn buffered(&self) -> u64 {
        self.shared.spool.len()
    }

    /// Events dropped: refused by the database as bad data, or damaged in the spool.
    pub fn dropped(&self) -> u64 {
        self.shared.dropped.load(Relaxed)
    }

    fn connected(&self) -> Result<Arc<Conn>, HistorianError> {
        self.shared.current().ok_or_else(|| {
            unavailable(format!(
                "not connected to {} (stored events wait in the spool until it is back)",
                self.shared.target
            ))
        })
    }
}

impl PgBackend {
    /// An aggregate's buckets computed by the database, on a connection of its own (a
    /// long aggregate must not hold up the inserts queued on the shared one), with a
    /// statement timeout.
    fn buckets_in_sql(
        &self,
        q: &EventQuery,
        interval_ms: u64,
        field: &[String],
    ) -> Result<Vec<AggregateBucket>, HistorianError> {
        let (start, end) = (to_i64(q.start_ms), to_i64(q.end_ms));
        if start >= end {
            return Ok(Vec::new());
        }
        self.connected()?;
        let config = self.shared.config.clone();
        let width = to_i64(interval_ms).max(1);
        let path = field.to_vec();
        let key = q.series();
        let rows = run(&self.shared.runtime, async move {
            let (client, connection) = config.connect(NoTls).await.map_err(|e| unavailable(chain(&e)))?;
            tokio::spawn(async move {
                let _ = connection.await;
            });
            client
                .batch_execute(sql::AGGREGATE_TIMEOUT)
                .await
                .map_err(|e| pg_error(&e))?;
            let [org, t, d, e] = &key;
            client
                .query(sql::AGGREGATE, &[org, t, d, e, &start, &end, &width, &path])
                .await
                .map_err(|e| pg_error(&e))
        })?;
        let mut buckets = Vec::with_capacity(rows.len());
        for row in &rows {
            let field_error = |e: tokio_postgres::Error| store_error(format!("reading an aggregate: {e}"));
            let bucket: i64 = row.try_get("bucket").map_err(field_error)?;
            let events: i64 = row.try_get("events").map_err(field_error)?;
            let numbers: i64 = row.try_get("numbers").map_err(field_error)?;
            let value = |name: &str| -> Result<f64, HistorianError> {
                let v: Option<f64> = row.try_get(name).map_err(field_error)?;
                Ok(v.unwrap_or(0.0))
            };
            let count = if field.is_empty() { events } else { numbers };
            if count == 0 {
                continue;
            }
            buckets.push(AggregateBucket {
                start_ms: u64::try_from(bucket).unwrap_or(0),
                count: u64::try_from(count).unwrap_or(0),
                sum: value("total")?,
                min: value("low")?,
                max: value("high")?,
                last: value("latest")?,
            });
        }
        Ok(buckets)
    }
}

impl HistorianBackend for PgBackend {
    fn aggregate_buckets(
        &self,
        query: &EventQuery,
        interval_ms: u64,
        field: &[String],
    ) -> Option<Result<Vec<AggregateBucket>, HistorianError>> {
        Some(self.buckets_in_sql(query, interval_ms, field))
    }

    fn name(&self) -> &'static str {
        BACKEND
    }

    fn append(&self, batch: &[StoredEvent]) -> Result<(), HistorianError> {
        if batch.is_empty() {
            return Ok(());
        }
        let shared = &self.shared;
        let rows = Arc::new(batch.iter().map(|e| shared.row(e)).collect::<Vec<Row>>());
        let writing = shared.write.lock();
        if shared.spool.is_empty() {
            if let Some(conn) = shared.current() {
                match block(
                    &shared.runtime,
                    INSERT_TIMEOUT,
                    insert(conn.clone(), rows.clone(), true),
                ) {
                    Ok(()) => return Ok(()),
                    // The catch-up thread sorts out the refused rows.
                    Err(InsertError::Refused(_)) => {}
                    Err(InsertError::Failed(e)) => {
                        shared.drop_conn(conn.generation);
                        shared.note_down(&e);
                    }
                }
            }
        }
        shared.spool.push(&rows)?;
        drop(writing);
        shared.wake();
        Ok(())
    }

    fn query(&self, q: &EventQuery) -> Result<EventPage, HistorianError> {
        let (start, end) = (to_i64(q.start_ms), to_i64(q.end_ms));
        if start >= end {
            return Ok(EventPage::default());
        }
        let conn = self.connected()?;
        let (after_ts, after_id) = match q.after {
            Some(b) if b.timestamp_ms >= q.start_ms => (to_i64(b.timestamp_ms), to_i64(b.seq)),
            _ => (-1, 0),
        };
        let limit = q.limit.clamp(1, MAX_PAGE);
        let fetch = i64::try_from(limit + 1).unwrap_or(i64::MAX);
        let key = q.series();
        let rows = run(&self.shared.runtime, async move {
            let [org, t, d, e] = &key;
            conn.client
                .query(
                    &conn.select,
                    &[org, t, d, e, &start, &end, &after_ts, &after_id, &fetch],
                )
                .await
                .map_err(|e| pg_error(&e))
        })?;
        let mut page = EventPage::default();
        for row in &rows {
            if page.events.len() == limit {
                break;
            }
            let field = |e: tokio_postgres::Error| store_error(format!("reading an event: {e}"));
            let id: i64 = row.try_get("id").map_err(field)?;
            let ts: i64 = row.try_get("ts_ms").map_err(field)?;
            let format: String = row.try_get("format").map_err(field)?;
            let payload: Vec<u8> = row.try_get("payload").map_err(field)?;
            let timestamp_ms = u64::try_from(ts).unwrap_or(0);
            page.events.push(StoredEvent {
                org: q.org.clone(),
                type_id: q.type_id.clone(),
                device_id: q.device_id.clone(),
                event_id: q.event_id.clone(),
                format,
                timestamp_ms,
                payload: payload.into(),
            });
            page.bookmark = Some(Bookmark {
                timestamp_ms,
                seq: u64::try_from(id).unwrap_or(0),
            });
        }
        if rows.len() <= limit {
            page.bookmark = None;
        }
        Ok(page)
    }

    fn purge_before(&self, org: &str, before_ms: u64) -> Result<u64, HistorianError> {
        let before = to_i64(before_ms);
        let mut removed = 0u64;
        loop {
            let conn = self.connected()?;
            let org = org.to_string();
            let n = run(&self.shared.runtime, async move {
                conn.client
                    .execute(sql::PURGE, &[&org, &before, &sql::PURGE_CHUNK])
                    .await
                    .map_err(|e| pg_error(&e))
            })?;
            removed += n;
            if n < sql::PURGE_CHUNK as u64 {
                return Ok(removed);
            }
        }
    }

    fn bytes_cutoff(&self, org: &str, max_bytes: u64) -> Result<Option<u64>, HistorianError> {
        let conn = self.connected()?;
        let (org, max) = (org.to_string(), to_i64(max_bytes));
        let row = run(&self.shared.runtime, async move {
            conn.client
                .query_opt(sql::BYTES_CUTOFF, &[&org, &max])
                .await
                .map_err(|e| pg_error(&e))
        })?;
        let Some(row) = row else {
            return Ok(None);
        };
        let ts: i64 = row
            .try_get("ts_ms")
            .map_err(|e| store_error(format!("reading a retention cutoff: {e}")))?;
        Ok(Some(u64::try_from(ts).unwrap_or(0).saturating_add(1)))
    }
}

impl Drop for PgBackend {
    fn drop(&mut self) {
        self.shared.stop.store(true, Relaxed);
        self.shared.wake();
        // Safe in any context (a runtime may not be dropped inside another): its tasks
        // end, and a call waiting for one is answered "stopping".
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

#[cfg(test)]
#[path = "historian_pg_tests.rs"]
mod tests;
