//! mosquitto password files: `user:$7$ITERATIONS$SALT$HASH` (PBKDF2-HMAC-SHA512, the
//! default since mosquitto 2.0) and `user:$6$SALT$HASH` (SHA-512 of password and salt,
//! mosquitto 1.x), salt and hash in standard base64.
//!
//! Read and written byte-compatibly so that a file made by `mosquitto_passwd` works with
//! Tern and one made by `tern passwd` works with mosquitto.

use crate::scram::{self, ScramCredentials};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use sha2::{Digest, Sha512};

/// The default PBKDF2 iteration count of mosquitto_passwd.
pub const DEFAULT_ITERATIONS: u32 = 101;
const SALT_LEN: usize = 12;
const HASH_LEN: usize = 64;

/// A hashed password as stored in the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PasswordHash {
    /// `$7$`: PBKDF2-HMAC-SHA512.
    Pbkdf2Sha512 {
        iterations: u32,
        salt: Vec<u8>,
        hash: Vec<u8>,
    },
    /// `$6$`: SHA-512 over password then salt.
    Sha512 { salt: Vec<u8>, hash: Vec<u8> },
    /// `SCRAM-SHA-256$...` (RFC 5803): Tern's, for MQTT 5.0 enhanced authentication; it
    /// also checks plain passwords. mosquitto does not read these lines.
    ScramSha256(ScramCredentials),
}

/// The hashing algorithm to write with (`-H`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    Pbkdf2Sha512 { iterations: u32 },
    Sha512,
    ScramSha256 { iterations: u32 },
}

/// A line of a password file that cannot be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PasswordError {
    #[error("line {line}: no ':' between user name and password hash")]
    MissingColon { line: usize },
    #[error("line {line}: unknown hash format (expected $6$, $7$ or SCRAM-SHA-256$)")]
    UnknownFormat { line: usize },
    #[error("line {line}: {what} is not valid base64")]
    BadBase64 { line: usize, what: &'static str },
    #[error("line {line}: invalid iteration count")]
    BadIterations { line: usize },
    #[error("cannot generate a random salt: {0}")]
    Random(String),
}

fn pbkdf2(password: &[u8], salt: &[u8], iterations: u32) -> Vec<u8> {
    let mut out = vec![0u8; HASH_LEN];
    pbkdf2::pbkdf2_hmac::<Sha512>(password, salt, iterations, &mut out);
    out
}

fn sha512(password: &[u8], salt: &[u8]) -> Vec<u8> {
    let mut digest = Sha512::new();
    digest.update(password);
    digest.update(salt);
    digest.finalize().to_vec()
}

impl PasswordHash {
    /// Hashes `password` with a fresh random salt.
    pub fn new(password: &[u8], algorithm: Algorithm) -> Result<PasswordHash, PasswordError> {
        let mut salt = vec![0u8; SALT_LEN];
        getrandom::getrandom(&mut salt).map_err(|e| PasswordError::Random(e.to_string()))?;
        Ok(Self::with_salt(password, algorithm, salt))
    }

    pub fn with_salt(password: &[u8], algorithm: Algorithm, salt: Vec<u8>) -> PasswordHash {
        match algorithm {
            Algorithm::Pbkdf2Sha512 { iterations } => {
                let hash = pbkdf2(password, &salt, iterations);
                PasswordHash::Pbkdf2Sha512 { iterations, salt, hash }
            }
            Algorithm::Sha512 => {
                let hash = sha512(password, &salt);
                PasswordHash::Sha512 { salt, hash }
            }
            Algorithm::ScramSha256 { iterations } => {
                PasswordHash::ScramSha256(ScramCredentials::derive(password, salt, iterations))
            }
        }
    }

    /// Whether `password` matches, compared in constant time.
    pub fn verify(&self, password: &[u8]) -> bool {
        let (expected, actual) = match self {
            PasswordHash::Pbkdf2Sha512 { iterations, salt, hash } => (hash, pbkdf2(password, salt, *iterations)),
            PasswordHash::Sha512 { salt, hash } => (hash, sha512(password, salt)),
            PasswordHash::ScramSha256(stored) => {
                let derived = ScramCredentials::derive(password, stored.salt.clone(), stored.iterations);
                (&stored.stored_key.to_vec(), derived.stored_key.to_vec())
            }
        };
        expected.len() == actual.len() && expected.iter().zip(&actual).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
    }

    /// The text after `user:` in the file.
    pub fn encode(&self) -> String {
        match self {
            PasswordHash::Pbkdf2Sha512 { iterations, salt, hash } => {
                format!("$7${iterations}${}${}", STANDARD.encode(salt), STANDARD.encode(hash))
            }
            PasswordHash::Sha512 { salt, hash } => format!("$6${}${}", STANDARD.encode(salt), STANDARD.encode(hash)),
            PasswordHash::ScramSha256(credentials) => credentials.encode(),
        }
    }

    /// Parses the text after `user:`; `line` is for error messages.
    pub fn parse(text: &str, line: usize) -> Result<PasswordHash, PasswordError> {
        let b64 = |part: &str, what| {
            STANDARD
                .decode(part)
                .map_err(|_| PasswordError::BadBase64 { line, what })
        };
        if text.starts_with(scram::METHOD) {
            return ScramCredentials::parse(text)
                .map(PasswordHash::ScramSha256)
                .ok_or(PasswordError::UnknownFormat { line });
        }
        let parts: Vec<&str> = text.split('$').collect();
        match parts.as_slice() {
            ["", "7", iterations, salt, hash] => Ok(PasswordHash::Pbkdf2Sha512 {
                iterations: iterations
                    .parse()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or(PasswordError::BadIterations { line })?,
                salt: b64(salt, "salt")?,
                hash: b64(hash, "hash")?,
            }),
            ["", "6", salt, hash] => Ok(PasswordHash::Sha512 {
                salt: b64(salt, "salt")?,
                hash: b64(hash, "hash")?,
            }),
            _ => Err(PasswordError::UnknownFormat { line }),
        }
    }
}

/// One line of a password file: a user and either a hash or (before `-U`) plain text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub user: String,
    pub secret: Secret,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Secret {
    Hashed(PasswordHash),
    /// A plain-text password, as mosquitto_passwd -U upgrades.
    Plain(String),
}

/// Parses a whole password file. Blank lines and `#` comments are skipped. With
/// `allow_plain`, lines whose password is not a hash are read as plain text (for -U).
pub fn parse_file(text: &str, allow_plain: bool) -> Result<Vec<Entry>, PasswordError> {
    let mut entries = Vec::new();
    for (index, raw) in text.lines().enumerate() {
        let line = index + 1;
        let trimmed = raw.trim_end_matches('\r');
        if trimmed.trim().is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let (user, secret) = trimmed.split_once(':').ok_or(PasswordError::MissingColon { line })?;
        let secret = if secret.starts_with('$') || !allow_plain {
            Secret::Hashed(PasswordHash::parse(secret, line)?)
        } else {
            Secret::Plain(secret.to_string())
        };
        entries.push(Entry {
            user: user.to_string(),
            secret,
        });
    }
    Ok(entries)
}

/// Writes entries in the file format (plain entries are written as they are).
pub fn format_file(entries: &[Entry]) -> String {
    entries
        .iter()
        .map(|e| match &e.secret {
            Secret::Hashed(h) => format!("{}:{}\n", e.user, h.encode()),
            Secret::Plain(p) => format!("{}:{p}\n", e.user),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    // Written by mosquitto_passwd 2.0.11: alice/secret (default) and bob/hunter2 (-H sha512).
    const ALICE: &str = "$7$101$6XfXhykdNn7LJetp$9ZB5XFTAlqLcU2b0wgGLp2O605vViZdWV6kuFzj115RJGcIcGxTxyQVkfzIqADwvN9kA6UMAE4o9A+dXhqdoYQ==";
    const BOB: &str =
        "$6$+sMTOhLM7d0wDbcA$wpgWuGSlqeCYjBPd/7O9Sb55Pyq6+KmLuVwn+/T4YRWWXDmKOoaXi+edKnkbDio15gH3Y7xtHxofVinkHaBhkA==";

    #[test]
    fn hashes_written_by_mosquitto_passwd_verify() {
        let alice = PasswordHash::parse(ALICE, 1).unwrap();
        assert!(alice.verify(b"secret"));
        assert!(!alice.verify(b"Secret"));
        let bob = PasswordHash::parse(BOB, 2).unwrap();
        assert!(bob.verify(b"hunter2"));
        assert!(!bob.verify(b"hunter3"));
    }

    #[test]
    fn encoding_reproduces_the_file_text() {
        assert_eq!(PasswordHash::parse(ALICE, 1).unwrap().encode(), ALICE);
        assert_eq!(PasswordHash::parse(BOB, 1).unwrap().encode(), BOB);
    }

    #[test]
    fn new_hashes_verify_and_use_fresh_salts() {
        let a = PasswordHash::new(b"pw", Algorithm::Pbkdf2Sha512 { iterations: 1000 }).unwrap();
        let b = PasswordHash::new(b"pw", Algorithm::Pbkdf2Sha512 { iterations: 1000 }).unwrap();
        assert!(a.verify(b"pw") && b.verify(b"pw"));
        assert_ne!(a, b);
        assert!(a.encode().starts_with("$7$1000$"));
    }

    #[test]
    fn bad_lines_are_named() {
        assert_eq!(
            parse_file("alice\n", false),
            Err(PasswordError::MissingColon { line: 1 })
        );
        assert_eq!(
            parse_file("# c\n\nbob:plain\n", false),
            Err(PasswordError::UnknownFormat { line: 3 })
        );
        assert_eq!(
            parse_file("bob:plain\n", true).unwrap()[0].secret,
            Secret::Plain("plain".into())
        );
        assert!(matches!(
            parse_file("x:$7$0$AA==$AA==\n", false),
            Err(PasswordError::BadIterations { line: 1 })
        ));
    }
}
