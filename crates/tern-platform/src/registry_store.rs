//! The registry's files in the broker's data directory: `platform/orgs/<org>.json`, one
//! per organization, so that a change to one organization rewrites only its own file.
//!
//! A file is replaced whole and at once: the new content goes to a temporary file beside
//! it (`.<org>.json.<pid>.tmp`), which is flushed to disk, renamed over the old one, and
//! the directory flushed too; a reader, or a broker restarted after kill -9 at any moment,
//! sees the old file or the new one, never half of one. Temporary files a killed writer
//! left behind are ignored by readers and removed by the next writer of that organization.
//! Writers of one organization take an exclusive lock (`.<org>.lock`, flock) around their
//! read-change-write, so commands run at once do not lose each other's changes.

use crate::registry::RegistryError;
use crate::registry_model::{check_org_id, OrgData, FORMAT_VERSION};
use std::io::Write;
use std::path::{Path, PathBuf};

/// The registry's directory inside a data directory.
pub fn orgs_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("platform").join("orgs")
}

/// The file of organization `org`.
pub fn org_file(data_dir: &Path, org: &str) -> PathBuf {
    orgs_dir(data_dir).join(format!("{org}.json"))
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> RegistryError {
    let path = path.to_path_buf();
    move |source| RegistryError::Io { path, source }
}

/// The organization ids that have a file, sorted. Other names in the directory
/// (temporary and lock files, strays) are skipped.
pub fn list_orgs(data_dir: &Path) -> Result<Vec<String>, RegistryError> {
    let dir = orgs_dir(data_dir);
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => return Err(RegistryError::Io { path: dir, source }),
    };
    let mut orgs = Vec::new();
    for entry in entries {
        let entry = entry.map_err(io(&dir))?;
        let name = entry.file_name();
        let Some(org) = name.to_str().and_then(|n| n.strip_suffix(".json")) else {
            continue;
        };
        if check_org_id(org).is_ok() {
            orgs.push(org.to_string());
        }
    }
    orgs.sort();
    Ok(orgs)
}

/// Parses an organization's file; errors name the file and what is wrong in it.
pub fn parse_org(text: &[u8], path: &Path, org: &str) -> Result<OrgData, RegistryError> {
    let damaged = |what: String| RegistryError::Damaged {
        path: path.to_path_buf(),
        what,
    };
    let data: OrgData = serde_json::from_slice(text).map_err(|e| damaged(e.to_string()))?;
    if data.version != FORMAT_VERSION {
        return Err(damaged(format!(
            "format version {} (this Tern reads version {FORMAT_VERSION})",
            data.version
        )));
    }
    if data.org.id != org {
        return Err(damaged(format!("it holds organization {:?}, not {org:?}", data.org.id)));
    }
    crate::registry::validate(&data).map_err(damaged)?;
    Ok(data)
}

/// Reads organization `org`; `None` if it has no file.
pub fn read_org(data_dir: &Path, org: &str) -> Result<Option<OrgData>, RegistryError> {
    check_org_id(org)?;
    let path = org_file(data_dir, org);
    match std::fs::read(&path) {
        Ok(text) => parse_org(&text, &path, org).map(Some),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(RegistryError::Io { path, source }),
    }
}

/// Flushes directory `dir`, so that a rename or removal in it survives a crash.
fn sync_dir(dir: &Path) -> Result<(), RegistryError> {
    std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(io(dir))
}

/// Replaces organization `data`'s file at once (see the module's notes). Readable by its
/// owner only: the file holds token hashes.
fn write_org(data_dir: &Path, data: &OrgData) -> Result<(), RegistryError> {
    use std::os::unix::fs::OpenOptionsExt;
    let dir = orgs_dir(data_dir);
    let path = org_file(data_dir, data.id());
    let temporary = dir.join(format!(".{}.json.{}.tmp", data.id(), std::process::id()));
    let text = serde_json::to_vec_pretty(data).map_err(|e| RegistryError::Damaged {
        path: path.clone(),
        what: format!("cannot encode: {e}"),
    })?;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&temporary)
        .map_err(io(&temporary))?;
    file.write_all(&text).map_err(io(&temporary))?;
    file.write_all(b"\n").map_err(io(&temporary))?;
    file.sync_all().map_err(io(&temporary))?;
    drop(file);
    std::fs::rename(&temporary, &path).map_err(io(&path))?;
    sync_dir(&dir)
}

/// Removes temporary files that killed writers of `org` left (under `org`'s lock, no
/// writer of it is running).
fn remove_leftovers(data_dir: &Path, org: &str) {
    let prefix = format!(".{org}.json.");
    let Ok(entries) = std::fs::read_dir(orgs_dir(data_dir)) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        if name
            .to_str()
            .is_some_and(|n| n.starts_with(&prefix) && n.ends_with(".tmp"))
        {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// An exclusive lock on one organization's file, released when dropped.
struct OrgLock {
    _file: std::fs::File,
}

fn lock_org(data_dir: &Path, org: &str) -> Result<OrgLock, RegistryError> {
    use std::os::fd::AsRawFd;
    let dir = orgs_dir(data_dir);
    if !dir.is_dir() {
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        // The new directories' entries, too, must survive a crash.
        for parent in [dir.parent(), dir.parent().and_then(Path::parent)]
            .into_iter()
            .flatten()
        {
            sync_dir(parent)?;
        }
    }
    let path = dir.join(format!(".{org}.lock"));
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(io(&path))?;
    loop {
        // SAFETY: flock on a descriptor owned by `file`, released when it is closed.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } == 0 {
            return Ok(OrgLock { _file: file });
        }
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::Interrupted {
            return Err(RegistryError::Io { path, source: e });
        }
    }
}

/// What [`update_org`] does with the organization's file.
pub enum Edit<T> {
    /// Write the changed organization and return `T`.
    Write(T),
    /// Remove the organization's file and return `T`.
    Remove(T),
}

/// Under organization `org`'s lock: reads it (`None`: no such organization), lets
/// `change` edit it, and writes or removes the file as `change` says.
pub fn update_org<T>(
    data_dir: &Path,
    org: &str,
    change: impl FnOnce(&mut Option<OrgData>) -> Result<Edit<T>, RegistryError>,
) -> Result<T, RegistryError> {
    check_org_id(org)?;
    let _lock = lock_org(data_dir, org)?;
    remove_leftovers(data_dir, org);
    let mut data = read_org(data_dir, org)?;
    match change(&mut data)? {
        Edit::Write(result) => {
            let data = data
                .as_ref()
                .ok_or_else(|| RegistryError::NotFound(format!("no organization {org}")))?;
            // Never write what could not be read back.
            if data.id() != org {
                return Err(RegistryError::Invalid(format!("organization {org} cannot be renamed")));
            }
            crate::registry::validate(data).map_err(RegistryError::Invalid)?;
            write_org(data_dir, data)?;
            Ok(result)
        }
        Edit::Remove(result) => {
            let path = org_file(data_dir, org);
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(source) => return Err(RegistryError::Io { path, source }),
            }
            sync_dir(&orgs_dir(data_dir))?;
            Ok(result)
        }
    }
}

/// What identifies a file's version on disk: inode, size, modification and change times.
pub type Stamp = (u64, u64, i64, i64, i64, i64);

/// The stamp of `path`, `None` if it cannot be looked at.
pub fn stamp(path: &Path) -> Option<Stamp> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).ok()?;
    Some((m.ino(), m.len(), m.mtime(), m.mtime_nsec(), m.ctime(), m.ctime_nsec()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("tern-registry-store-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn an_org_is_written_read_back_and_removed_and_leftovers_are_ignored() {
        let dir = temp_dir("roundtrip");
        let created = update_org(&dir, "acme", |data| {
            *data = Some(OrgData::new("acme"));
            Ok(Edit::Write(1))
        });
        assert_eq!(created.ok(), Some(1));
        // A temporary file a killed writer left: not an organization, and cleaned up by
        // the next writer.
        let leftover = orgs_dir(&dir).join(".acme.json.999999.tmp");
        std::fs::write(&leftover, b"{ half").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(list_orgs(&dir).ok(), Some(vec!["acme".to_string()]));
        let read = read_org(&dir, "acme").ok().flatten();
        assert_eq!(read.as_ref().map(OrgData::id), Some("acme"));
        let touched = update_org(&dir, "acme", |_| Ok(Edit::Write(())));
        assert!(touched.is_ok());
        assert!(!leftover.exists());
        let removed = update_org(&dir, "acme", |_| Ok(Edit::Remove(())));
        assert!(removed.is_ok());
        assert_eq!(list_orgs(&dir).ok(), Some(Vec::new()));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_damaged_file_is_named_with_what_is_wrong() {
        let dir = temp_dir("damaged");
        std::fs::create_dir_all(orgs_dir(&dir)).unwrap_or_else(|e| panic!("{e}"));
        let path = org_file(&dir, "acme");
        std::fs::write(&path, b"{\"version\": 1, \"org\": ").unwrap_or_else(|e| panic!("{e}"));
        let e = read_org(&dir, "acme").err().map(|e| e.to_string()).unwrap_or_default();
        assert!(e.contains(&path.display().to_string()), "{e}");
        let mut other = OrgData::new("other");
        other.org.id = "other".into();
        let text = serde_json::to_string(&other).unwrap_or_default();
        std::fs::write(&path, text).unwrap_or_else(|e| panic!("{e}"));
        let e = read_org(&dir, "acme").err().map(|e| e.to_string()).unwrap_or_default();
        assert!(e.contains("not \"acme\""), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
