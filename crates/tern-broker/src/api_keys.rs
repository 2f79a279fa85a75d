//! API keys for the HTTP API: the file that holds them (in the data directory), the
//! commands' side (create, revoke, list) and the broker's side (checking a request's
//! credentials cheaply, and noticing changes to the file within a second).
//!
//! A key is an id and a secret. The secret is `tern_<id>_<43 random base64url chars>`
//! (256 random bits), so a Bearer token alone names its key. The file keeps, per line,
//! `id:created_unix:$7$...`, the secret hashed with PBKDF2-HMAC-SHA512 in the format of
//! mosquitto password files: reading the file gives nobody a working secret.
//!
//! Cost of a request: PBKDF2 runs at most once per key, the first time its right secret
//! comes (and only within a small broker-wide budget per second, so wrong guesses for a
//! key never used yet cannot keep a core busy); from then on the key holds the SHA-256
//! of the secret it accepted, and every request costs one SHA-256 and a constant-time
//! comparison, whether its secret is right or wrong.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use parking_lot::{Mutex, RwLock};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use subtle::ConstantTimeEq;
use tern_core::password::{Algorithm, PasswordHash, DEFAULT_ITERATIONS};

/// The file's name in the data directory.
pub const FILE: &str = "api-keys";
/// How often a running broker looks at the file.
pub const POLL_INTERVAL: Duration = Duration::from_millis(400);
/// PBKDF2 verifications the broker runs per second at most (first use of a key).
const PBKDF2_PER_SECOND: u32 = 20;
const SECRET_PREFIX: &str = "tern_";

/// Why the key file or a key cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ApiKeyError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} line {line}: {what}")]
    Malformed { path: PathBuf, line: usize, what: String },
    #[error("cannot generate random bytes: {0}")]
    Random(String),
    #[error("no API key {0}")]
    NoSuchKey(String),
}

/// One line of the key file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRecord {
    pub id: String,
    /// When the key was created, in seconds since the Unix epoch.
    pub created_unix: u64,
    pub hash: PasswordHash,
}

/// The key file of data directory `dir`.
pub fn file_path(dir: &Path) -> PathBuf {
    dir.join(FILE)
}

fn random_bytes(n: usize) -> Result<Vec<u8>, ApiKeyError> {
    let mut bytes = vec![0u8; n];
    getrandom::getrandom(&mut bytes).map_err(|e| ApiKeyError::Random(e.to_string()))?;
    Ok(bytes)
}

/// A new key: its record (to store) and its secret (to show once).
pub fn generate() -> Result<(KeyRecord, String), ApiKeyError> {
    let id: String = random_bytes(6)?.iter().map(|b| format!("{b:02x}")).collect();
    let secret = format!("{SECRET_PREFIX}{id}_{}", URL_SAFE_NO_PAD.encode(random_bytes(32)?));
    let hash = PasswordHash::new(
        secret.as_bytes(),
        Algorithm::Pbkdf2Sha512 {
            iterations: DEFAULT_ITERATIONS,
        },
    )
    .map_err(|e| ApiKeyError::Random(e.to_string()))?;
    let created_unix = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    Ok((KeyRecord { id, created_unix, hash }, secret))
}

/// The key id a secret names (`tern_<id>_...`), if it has the form of one.
pub fn key_id_of(secret: &str) -> Option<&str> {
    let rest = secret.strip_prefix(SECRET_PREFIX)?;
    let (id, _) = rest.split_once('_')?;
    (!id.is_empty()).then_some(id)
}

/// Parses the key file's text; `path` is for messages.
pub fn parse(text: &str, path: &Path) -> Result<Vec<KeyRecord>, ApiKeyError> {
    let mut records = Vec::new();
    for (index, raw) in text.lines().enumerate() {
        let line = index + 1;
        let malformed = |what: &str| ApiKeyError::Malformed {
            path: path.to_path_buf(),
            line,
            what: what.to_string(),
        };
        let raw = raw.trim_end_matches('\r');
        if raw.trim().is_empty() || raw.starts_with('#') {
            continue;
        }
        let mut parts = raw.splitn(3, ':');
        let (Some(id), Some(created), Some(hash)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(malformed("expected id:created:hash"));
        };
        if id.is_empty() || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
            return Err(malformed("the key id must be letters, digits and '-'"));
        }
        let created_unix = created
            .parse()
            .map_err(|_| malformed("the creation time is not a number"))?;
        let hash = PasswordHash::parse(hash, line).map_err(|e| malformed(&e.to_string()))?;
        records.push(KeyRecord {
            id: id.to_string(),
            created_unix,
            hash,
        });
    }
    Ok(records)
}

/// The key file's text for `records`.
pub fn format(records: &[KeyRecord]) -> String {
    let mut text = String::from("# Tern API keys: id:created (Unix seconds):PBKDF2 hash of the secret\n");
    for r in records {
        text.push_str(&format!("{}:{}:{}\n", r.id, r.created_unix, r.hash.encode()));
    }
    text
}

/// Reads the key file of `dir`; a missing file holds no keys.
pub fn read(dir: &Path) -> Result<Vec<KeyRecord>, ApiKeyError> {
    let path = file_path(dir);
    match std::fs::read_to_string(&path) {
        Ok(text) => parse(&text, &path),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(source) => Err(ApiKeyError::Io { path, source }),
    }
}

/// Replaces the key file of `dir` (created with the directory if missing) at once: a
/// reader sees the old file or the new one, never half of one. Readable by its owner only.
pub fn write(dir: &Path, records: &[KeyRecord]) -> Result<(), ApiKeyError> {
    use std::os::unix::fs::OpenOptionsExt;
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| ApiKeyError::Io { path, source }
    };
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let path = file_path(dir);
    let temporary = dir.join(format!(".{FILE}.{}", std::process::id()));
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&temporary)
        .map_err(io(&temporary))?;
    file.write_all(format(records).as_bytes()).map_err(io(&temporary))?;
    file.sync_all().map_err(io(&temporary))?;
    std::fs::rename(&temporary, &path).map_err(io(&path))
}

/// Reads the key file of `dir`, lets `change` edit the keys, and writes them back, under
/// an exclusive lock (`.api-keys.lock` in `dir`), so that two commands run at once do not
/// lose each other's keys.
pub fn update<T>(
    dir: &Path,
    change: impl FnOnce(&mut Vec<KeyRecord>) -> Result<T, ApiKeyError>,
) -> Result<T, ApiKeyError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| ApiKeyError::Io { path, source }
    };
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let lock_path = dir.join(format!(".{FILE}.lock"));
    let lock = crate::file_lock::exclusive(&lock_path).map_err(io(&lock_path))?;
    let mut records = read(dir)?;
    let result = change(&mut records)?;
    write(dir, &records)?;
    drop(lock);
    Ok(result)
}

/// A key as the broker holds it, with the digest of the secret it has accepted.
#[derive(Debug)]
struct Key {
    record: KeyRecord,
    /// SHA-256 of the secret PBKDF2 accepted: later requests compare against this.
    accepted: Mutex<Option<[u8; 32]>>,
}

/// What identifies the key file's version on disk.
type Stamp = (u64, u64, i64, i64, i64, i64);

fn stamp(path: &Path) -> Option<Stamp> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).ok()?;
    Some((m.ino(), m.len(), m.mtime(), m.mtime_nsec(), m.ctime(), m.ctime_nsec()))
}

/// The broker's view of the key file.
#[derive(Debug)]
pub struct ApiKeys {
    path: PathBuf,
    keys: RwLock<Arc<HashMap<String, Arc<Key>>>>,
    /// The file as last read (`None`: missing).
    stamp: Mutex<Option<Stamp>>,
    /// PBKDF2 verifications left in the current second, and when it began.
    budget: Mutex<(u32, Instant)>,
}

/// A request's credentials, as its Authorization header gave them.
#[derive(Debug, Clone, Copy)]
pub enum Credentials<'a> {
    /// HTTP Basic: key id and secret.
    Basic { id: &'a str, secret: &'a str },
    /// Bearer: the secret alone (it names its key).
    Bearer { secret: &'a str },
}

impl ApiKeys {
    /// The keys of data directory `dir`, read now (a file that cannot be read is logged
    /// and holds no keys until it can).
    pub fn load(dir: &Path) -> ApiKeys {
        let keys = ApiKeys {
            path: file_path(dir),
            keys: RwLock::new(Arc::default()),
            stamp: Mutex::new(None),
            budget: Mutex::new((PBKDF2_PER_SECOND, Instant::now())),
        };
        keys.refresh(true);
        keys
    }

    /// The file the keys are read from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Number of keys in force.
    pub fn len(&self) -> usize {
        self.keys.read().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Reads the file again if it changed since the last look (or if `force`). A file that
    /// has gone revokes every key; one that cannot be parsed leaves the keys as they were.
    pub fn refresh(&self, force: bool) {
        let now = stamp(&self.path);
        {
            let mut last = self.stamp.lock();
            if !force && *last == now {
                return;
            }
            *last = now;
        }
        let records = match std::fs::read_to_string(&self.path) {
            Ok(text) => match parse(&text, &self.path) {
                Ok(records) => records,
                Err(e) => {
                    tracing::error!("API keys not reloaded, the previous ones stay: {e}");
                    return;
                }
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => {
                tracing::error!(
                    "API keys not reloaded, the previous ones stay: {}: {e}",
                    self.path.display()
                );
                return;
            }
        };
        let old = self.keys.read().clone();
        let keys: HashMap<String, Arc<Key>> = records
            .into_iter()
            .map(|record| {
                let key = match old.get(&record.id) {
                    // The same key as before keeps the secret it has accepted.
                    Some(existing) if existing.record == record => existing.clone(),
                    _ => Arc::new(Key {
                        record,
                        accepted: Mutex::new(None),
                    }),
                };
                (key.record.id.clone(), key)
            })
            .collect();
        if !force || !keys.is_empty() {
            tracing::info!("API keys: {} in force, from {}", keys.len(), self.path.display());
        }
        *self.keys.write() = Arc::new(keys);
    }

    /// Looks at the file every [`POLL_INTERVAL`] until `stop` is cancelled.
    pub async fn watch(self: Arc<Self>, stop: tokio_util::sync::CancellationToken) {
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(POLL_INTERVAL) => {}
            }
            let keys = self.clone();
            // A stat (and rarely a read) of a small file: off the runtime's workers all the same.
            let _ = tokio::task::spawn_blocking(move || keys.refresh(false)).await;
        }
    }

    /// The id of the key `credentials` prove, or `None`.
    pub fn check(&self, credentials: Credentials<'_>) -> Option<String> {
        let (id, secret) = match credentials {
            Credentials::Basic { id, secret } => (id, secret),
            Credentials::Bearer { secret } => (key_id_of(secret)?, secret),
        };
        let key = self.keys.read().get(id).cloned()?;
        let digest: [u8; 32] = Sha256::digest(secret.as_bytes()).into();
        let accepted = *key.accepted.lock();
        if let Some(accepted) = accepted {
            return bool::from(accepted.ct_eq(&digest)).then(|| id.to_string());
        }
        if !self.take_pbkdf2_budget() {
            tracing::warn!(
                key = id,
                "API key check refused: too many first-time verifications this second"
            );
            return None;
        }
        if !key.record.hash.verify(secret.as_bytes()) {
            return None;
        }
        *key.accepted.lock() = Some(digest);
        Some(id.to_string())
    }

    fn take_pbkdf2_budget(&self) -> bool {
        let mut budget = self.budget.lock();
        if budget.1.elapsed() >= Duration::from_secs(1) {
            *budget = (PBKDF2_PER_SECOND, Instant::now());
        }
        if budget.0 == 0 {
            return false;
        }
        budget.0 -= 1;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_key_is_written_read_back_and_checked_by_either_credential_form() {
        let dir = std::env::temp_dir().join(format!("tern-api-keys-{}", std::process::id()));
        let (record, secret) = generate().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(key_id_of(&secret), Some(record.id.as_str()));
        write(&dir, std::slice::from_ref(&record)).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(read(&dir).ok(), Some(vec![record.clone()]));
        let keys = ApiKeys::load(&dir);
        assert_eq!(
            keys.check(Credentials::Bearer { secret: &secret }),
            Some(record.id.clone())
        );
        let basic = Credentials::Basic {
            id: &record.id,
            secret: &secret,
        };
        assert_eq!(keys.check(basic), Some(record.id.clone()));
        let wrong = format!("{secret}x");
        assert_eq!(keys.check(Credentials::Bearer { secret: &wrong }), None);
        assert_eq!(keys.check(Credentials::Bearer { secret: "tern_nokey_x" }), None);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn once_a_key_has_been_verified_wrong_secrets_cost_no_pbkdf2() {
        let dir = std::env::temp_dir().join(format!("tern-api-keys-budget-{}", std::process::id()));
        let (record, secret) = generate().unwrap_or_else(|e| panic!("{e}"));
        write(&dir, std::slice::from_ref(&record)).unwrap_or_else(|e| panic!("{e}"));
        let keys = ApiKeys::load(&dir);
        let wrong = format!("tern_{}_guess", record.id);
        // Before the key's first use, wrong guesses spend the PBKDF2 budget, and stop
        // being verified at all once it is spent.
        for _ in 0..PBKDF2_PER_SECOND + 5 {
            assert_eq!(keys.check(Credentials::Bearer { secret: &wrong }), None);
        }
        assert_eq!(keys.budget.lock().0, 0);
        *keys.budget.lock() = (PBKDF2_PER_SECOND, Instant::now());
        assert!(keys.check(Credentials::Bearer { secret: &secret }).is_some());
        let left = keys.budget.lock().0;
        for _ in 0..100 {
            assert_eq!(keys.check(Credentials::Bearer { secret: &wrong }), None);
        }
        assert_eq!(keys.budget.lock().0, left, "checked against the cached digest only");
        assert!(keys.check(Credentials::Bearer { secret: &secret }).is_some());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_malformed_line_is_named() {
        let e = parse("abc:12:$9$x\n", Path::new("f"));
        assert!(matches!(e, Err(ApiKeyError::Malformed { line: 1, .. })), "{e:?}");
        assert!(parse("# comment\n\n", Path::new("f")).is_ok_and(|r| r.is_empty()));
    }
}
