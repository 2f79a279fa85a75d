//! Opening the store file whatever state it is in. The storage engine may return an error
//! or panic on a damaged file (a torn write, a truncated copy, garbage over some pages);
//! neither may stop the broker. A file the engine cannot open is moved aside whole; a file
//! it opens but cannot read through is salvaged: every record still readable is copied
//! into a fresh file, the damaged one is moved aside, and the log says how many records
//! were recovered.

use super::load::{self, Loaded};
use super::{INCOMING, MESSAGES, RETAINED, SESSIONS};
use anyhow::{anyhow, bail, Context, Result};
use redb::{Database, ReadableTable, TableDefinition};
use std::cell::Cell;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::Once;

thread_local! {
    /// Set while this thread runs storage-engine code under [`guarded`], whose panics are
    /// turned into errors and logged there, not printed by the panic hook.
    static IN_ENGINE: Cell<bool> = const { Cell::new(false) };
}

/// Installs (once) a panic hook that stays quiet for panics [`guarded`] catches and
/// defers to the previous hook for every other.
fn quiet_engine_panics() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !IN_ENGINE.with(Cell::get) {
                previous(info);
            }
        }));
    });
}

/// Runs `f`, turning a panic of the storage engine into an error naming `what`.
pub(super) fn guarded<T>(what: &str, f: impl FnOnce() -> Result<T>) -> Result<T> {
    quiet_engine_panics();
    let was = IN_ENGINE.with(|flag| flag.replace(true));
    let outcome = catch_unwind(AssertUnwindSafe(f));
    IN_ENGINE.with(|flag| flag.set(was));
    match outcome {
        Ok(result) => result,
        Err(panic) => {
            let message = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "no message".into());
            Err(anyhow!("the storage engine failed while {what}: {message}"))
        }
    }
}

/// The storage engine's page cache: what it reads at start-up and what it writes stay
/// cached up to this size, for the broker's whole life (the engine's default is 1 GiB).
const CACHE_BYTES: usize = 32 << 20;

/// Opens or creates the file with the broker's cache size.
pub(super) fn create_database(path: &Path) -> Result<Database, redb::DatabaseError> {
    Database::builder().set_cache_size(CACHE_BYTES).create(path)
}

/// Drops a database whose file may be damaged or whose disk may be full: its closing
/// must not take the process down with it.
pub(super) fn close_quietly(db: Database) {
    let _ = guarded("closing the store", move || {
        drop(db);
        Ok(())
    });
}

/// Opens (or creates) the file at `path` and reads everything in it, moving a damaged
/// file aside (after salvaging what it can) rather than failing.
pub(super) fn open_and_load(path: &Path) -> Result<(Database, Loaded)> {
    let db = match open_database(path)? {
        Some(db) => db,
        None => return start_empty(path),
    };
    match guarded("reading the store", || load::read_all(&db)) {
        Ok(loaded) => Ok((db, loaded)),
        Err(e) => salvage(db, path, &e),
    }
}

/// The engine's open; `None` when the file is damaged beyond opening (the caller moves
/// it aside), an error when it cannot be used for another reason (in use, no access).
fn open_database(path: &Path) -> Result<Option<Database>> {
    let opened = guarded("opening the store", || Ok(create_database(path)));
    match opened {
        Ok(Ok(db)) => Ok(Some(db)),
        Ok(Err(redb::DatabaseError::DatabaseAlreadyOpen)) => bail!(
            "{} is in use by another running broker: each broker needs a persistence_location of its own",
            path.display()
        ),
        Ok(Err(redb::DatabaseError::Storage(redb::StorageError::Io(e))))
            if !matches!(
                e.kind(),
                std::io::ErrorKind::InvalidData | std::io::ErrorKind::UnexpectedEof
            ) =>
        {
            bail!("cannot open {}: {e}", path.display())
        }
        Ok(Err(e)) => {
            tracing::error!("data file {} cannot be opened: {e}", path.display());
            Ok(None)
        }
        Err(e) => {
            tracing::error!("data file {} cannot be opened: {e:#}", path.display());
            Ok(None)
        }
    }
}

/// Moves the unopenable file aside and starts with an empty store.
fn start_empty(path: &Path) -> Result<(Database, Loaded)> {
    let aside = set_aside(path)?;
    tracing::error!(
        "data file {} is unreadable: moved to {}; starting with an empty store, every stored session and retained message in it is lost",
        path.display(),
        aside.display()
    );
    let db = create_database(path).with_context(|| format!("cannot create {}", path.display()))?;
    let loaded = guarded("reading the new store", || load::read_all(&db))?;
    Ok((db, loaded))
}

/// Renames the file at `path` to `tern.redb.corrupt-<unix time>`.
fn set_aside(path: &Path) -> Result<PathBuf> {
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let aside = path.with_extension(format!("redb.corrupt-{stamp}"));
    std::fs::rename(path, &aside)
        .with_context(|| format!("{} is damaged and cannot be moved aside", path.display()))?;
    Ok(aside)
}

/// Copies every readable record of the damaged `db` into a fresh file, moves the damaged
/// file aside, puts the fresh one in its place and loads it.
fn salvage(db: Database, path: &Path, damage: &anyhow::Error) -> Result<(Database, Loaded)> {
    let fresh_path = path.with_extension("redb.salvage");
    let _ = std::fs::remove_file(&fresh_path);
    let fresh = create_database(&fresh_path).with_context(|| format!("cannot create {}", fresh_path.display()))?;
    let mut copied = Copied::default();
    copy_table(&db, &fresh, SESSIONS, &mut copied);
    copy_table(&db, &fresh, MESSAGES, &mut copied);
    copy_table(&db, &fresh, INCOMING, &mut copied);
    copy_table(&db, &fresh, RETAINED, &mut copied);
    close_quietly(db);
    drop(fresh);
    let aside = set_aside(path)?;
    std::fs::rename(&fresh_path, path)
        .with_context(|| format!("cannot move the salvaged store {} into place", fresh_path.display()))?;
    tracing::error!(
        "data file {} is damaged ({damage:#}): moved to {}; {} records recovered into a new file, the rest is lost ({} of 4 tables could not be read to the end)",
        path.display(),
        aside.display(),
        copied.records,
        copied.broken_tables
    );
    let db = create_database(path).with_context(|| format!("cannot open the salvaged {}", path.display()))?;
    let loaded = guarded("reading the salvaged store", || load::read_all(&db))?;
    Ok((db, loaded))
}

/// What a salvage managed.
#[derive(Default)]
struct Copied {
    records: usize,
    broken_tables: usize,
}

/// Copies the entries of `table` that can be read, in key order, until the first one that
/// cannot; each entry is committed with the ones before it in one transaction at the end.
fn copy_table<K, V>(from: &Database, to: &Database, table: TableDefinition<K, V>, copied: &mut Copied)
where
    K: redb::Key + 'static,
    V: redb::Value + 'static,
{
    let mut entries: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
    let read = guarded("salvaging a table", || {
        let tx = from.begin_read()?;
        let source = tx.open_table(table)?;
        for entry in source.iter()? {
            let (key, value) = entry?;
            let key = K::as_bytes(&key.value()).as_ref().to_vec();
            let value = V::as_bytes(&value.value()).as_ref().to_vec();
            entries.push((key, value));
        }
        Ok(())
    });
    if read.is_err() {
        copied.broken_tables += 1;
    }
    let written = guarded("writing salvaged records", || {
        let tx = to.begin_write()?;
        {
            let mut target = tx.open_table(table)?;
            for (key, value) in &entries {
                target.insert(K::from_bytes(key), V::from_bytes(value))?;
            }
        }
        tx.commit()?;
        Ok(())
    });
    match written {
        Ok(()) => copied.records += entries.len(),
        Err(e) => tracing::error!("salvaged records could not be written: {e:#}"),
    }
}
