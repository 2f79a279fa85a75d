//! One JSON file per organization in a directory of the data directory (the last event
//! cache's, device management's): listing them, and replacing one so that a reader, even
//! after a crash at any moment, finds the old file or the new one, never a mix.

use std::io::Write;
use std::path::{Path, PathBuf};

/// The `<org>.json` files of `dir` with a valid organization id, sorted by organization;
/// none when `dir` does not exist. Other files (temporary ones included) are ignored.
pub(crate) fn list(dir: &Path) -> std::io::Result<Vec<(String, PathBuf)>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name();
        let Some(org) = name.to_str().and_then(|n| n.strip_suffix(".json")) else {
            continue;
        };
        if crate::registry_model::check_org_id(org).is_ok() {
            files.push((org.to_string(), entry.path()));
        }
    }
    files.sort();
    Ok(files)
}

/// Replaces `dir/<org>.json` with `body`, readable by its owner only: a temporary file
/// written and flushed, renamed over the old one, the directory flushed. `None` removes
/// the file. On error, the path the error is about comes with it.
pub(crate) fn replace(dir: &Path, org: &str, body: Option<&[u8]>) -> Result<(), (PathBuf, std::io::Error)> {
    let path = dir.join(format!("{org}.json"));
    let at = |path: &Path| {
        let path = path.to_path_buf();
        move |e| (path, e)
    };
    let Some(body) = body else {
        return match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err((path, e)),
            _ => Ok(()),
        };
    };
    std::fs::create_dir_all(dir).map_err(at(dir))?;
    let tmp = dir.join(format!(".{org}.json.{}.tmp", std::process::id()));
    let mut file = {
        use std::os::unix::fs::OpenOptionsExt;
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true).mode(0o600);
        options.open(&tmp).map_err(at(&tmp))?
    };
    file.write_all(body).map_err(at(&tmp))?;
    file.sync_all().map_err(at(&tmp))?;
    std::fs::rename(&tmp, &path).map_err(at(&path))?;
    std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(at(dir))?;
    Ok(())
}

/// The exclusive lock on `dir/<org>.json` that the cluster's mirror also takes
/// (`.<org>.lock`, flock), released when the file is dropped.
pub(crate) fn lock(dir: &Path, org: &str) -> std::io::Result<std::fs::File> {
    std::fs::create_dir_all(dir)?;
    tern_broker::file_lock::exclusive(&dir.join(format!(".{org}.lock")))
}
