//! An exclusive advisory lock on a lock file (`flock`), for the files several writers
//! share: the API keys, and the IoT platform's organization files that the registry and
//! the cluster's mirror both write. The lock is held while the returned file is open.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::Path;

/// Opens (creating it if needed) the lock file at `path` and waits for its exclusive
/// lock; released when the returned file is dropped.
pub fn exclusive(path: &Path) -> std::io::Result<File> {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)?;
    loop {
        // SAFETY: flock on a descriptor owned by `file`, released when it is closed.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } == 0 {
            return Ok(file);
        }
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}
