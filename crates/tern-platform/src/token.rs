//! Device and API key tokens: generating them, the rules for tokens a user chooses,
//! hashing them for the registry file, and checking one at connect time cheaply.
//!
//! A generated token is 24 characters of `A-Z a-z 0-9 - _` from the operating system's
//! random source (144 bits). The registry keeps only its PBKDF2-HMAC-SHA512 hash in the
//! `$7$` form of mosquitto password files (tern-core's `password` module).
//!
//! Cost of a check, as for the HTTP API's keys: PBKDF2 runs at most once per token, the
//! first time the right token comes, and only within a per-second budget, so wrong
//! guesses for an identity not yet used cannot keep a core busy. From then on the record
//! holds the SHA-256 of the token it accepted and every check is one SHA-256 and a
//! constant-time comparison, right token or wrong.

use crate::registry::RegistryError;
use parking_lot::Mutex;
use sha2::{Digest, Sha256};
use std::time::{Duration, Instant};
use subtle::ConstantTimeEq;
use tern_core::password::{Algorithm, PasswordHash, DEFAULT_ITERATIONS};

/// Length of a generated token.
pub const GENERATED_TOKEN_LEN: usize = 24;
/// Shortest and longest token a user may choose.
pub const USER_TOKEN_LEN: std::ops::RangeInclusive<usize> = 8..=36;
/// PBKDF2 verifications a registry runs per second at most by default.
pub const DEFAULT_PBKDF2_PER_SECOND: u32 = 1000;

const TOKEN_ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
const KEY_ALPHABET: &[u8; 36] = b"abcdefghijklmnopqrstuvwxyz0123456789";

fn random_bytes(n: usize) -> Result<Vec<u8>, RegistryError> {
    let mut bytes = vec![0u8; n];
    getrandom::getrandom(&mut bytes).map_err(|e| RegistryError::Random(e.to_string()))?;
    Ok(bytes)
}

/// A new random token.
pub fn generate_token() -> Result<String, RegistryError> {
    let bytes = random_bytes(GENERATED_TOKEN_LEN)?;
    let mut token: String = bytes
        .iter()
        .map(|b| char::from(TOKEN_ALPHABET[usize::from(b & 63)]))
        .collect();
    if token.starts_with('-') {
        // A leading `-` reads as an option to command-line tools (`tern pub -P -x...`).
        token.replace_range(..1, "_");
    }
    Ok(token)
}

/// The random part of an API key: 10 characters of `a-z 0-9`, without modulo bias.
pub fn random_key_suffix() -> Result<String, RegistryError> {
    let mut out = String::with_capacity(crate::registry_model::KEY_SUFFIX_LEN);
    while out.len() < crate::registry_model::KEY_SUFFIX_LEN {
        for b in random_bytes(16)? {
            // 252 = 7 * 36: bytes above it would favour the first letters.
            if b < 252 && out.len() < crate::registry_model::KEY_SUFFIX_LEN {
                out.push(char::from(KEY_ALPHABET[usize::from(b % 36)]));
            }
        }
    }
    Ok(out)
}

/// Checks a token a user chose: 8 to 36 printable ASCII characters, no spaces.
pub fn check_token(token: &str) -> Result<(), RegistryError> {
    if !USER_TOKEN_LEN.contains(&token.len()) {
        return Err(RegistryError::Invalid(format!(
            "a token must be {} to {} characters long (this one has {})",
            USER_TOKEN_LEN.start(),
            USER_TOKEN_LEN.end(),
            token.chars().count()
        )));
    }
    if !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(RegistryError::Invalid(
            "a token must be printable ASCII characters without spaces".to_string(),
        ));
    }
    Ok(())
}

/// The stored form of `token`: its PBKDF2 hash with a fresh salt.
pub fn hash_token(token: &str) -> Result<String, RegistryError> {
    let algorithm = Algorithm::Pbkdf2Sha512 {
        iterations: DEFAULT_ITERATIONS,
    };
    PasswordHash::new(token.as_bytes(), algorithm)
        .map(|h| h.encode())
        .map_err(|e| RegistryError::Random(e.to_string()))
}

/// Parses a stored hash (`what` names its record in the error).
pub fn parse_hash(text: &str, what: &str) -> Result<PasswordHash, String> {
    match PasswordHash::parse(text, 1) {
        Ok(hash @ PasswordHash::Pbkdf2Sha512 { .. }) => Ok(hash),
        Ok(_) => Err(format!("{what}: tokenHash is not a $7$ PBKDF2 hash")),
        Err(e) => Err(format!("{what}: tokenHash: {e}")),
    }
}

/// A stored token hash with the digest of the token it has accepted.
#[derive(Debug)]
pub struct TokenCheck {
    hash: PasswordHash,
    /// SHA-256 of the token PBKDF2 accepted: later checks compare against this.
    accepted: Mutex<Option<[u8; 32]>>,
}

/// Why a token was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenRefusal {
    /// The token is wrong.
    Wrong,
    /// Not checked: too many first-time verifications this second. Try again later.
    Throttled,
}

impl TokenCheck {
    pub fn new(hash: PasswordHash) -> TokenCheck {
        TokenCheck {
            hash,
            accepted: Mutex::new(None),
        }
    }

    /// Whether `token` is the one; runs PBKDF2 only until the right token has come once,
    /// and only if `budget` allows.
    pub fn check(&self, token: &[u8], budget: &Pbkdf2Budget) -> Result<(), TokenRefusal> {
        let digest: [u8; 32] = Sha256::digest(token).into();
        let accepted = *self.accepted.lock();
        if let Some(accepted) = accepted {
            return match bool::from(accepted.ct_eq(&digest)) {
                true => Ok(()),
                false => Err(TokenRefusal::Wrong),
            };
        }
        if !budget.take() {
            return Err(TokenRefusal::Throttled);
        }
        if !self.hash.verify(token) {
            return Err(TokenRefusal::Wrong);
        }
        *self.accepted.lock() = Some(digest);
        Ok(())
    }

    /// Whether the digest of an accepted token is held (tests and statistics).
    pub fn is_cached(&self) -> bool {
        self.accepted.lock().is_some()
    }
}

/// How many PBKDF2 verifications may still run in the current second.
#[derive(Debug)]
pub struct Pbkdf2Budget {
    per_second: Mutex<u32>,
    state: Mutex<(u32, Instant)>,
}

impl Pbkdf2Budget {
    pub fn new(per_second: u32) -> Pbkdf2Budget {
        Pbkdf2Budget {
            per_second: Mutex::new(per_second),
            state: Mutex::new((per_second, Instant::now())),
        }
    }

    /// Changes the allowance per second, starting a new second now.
    pub fn set_per_second(&self, per_second: u32) {
        *self.per_second.lock() = per_second;
        *self.state.lock() = (per_second, Instant::now());
    }

    /// Takes one verification from this second's allowance, if any is left.
    pub fn take(&self) -> bool {
        let per_second = *self.per_second.lock();
        let mut state = self.state.lock();
        if state.1.elapsed() >= Duration::from_secs(1) {
            *state = (per_second, Instant::now());
        }
        if state.0 == 0 {
            return false;
        }
        state.0 -= 1;
        true
    }

    /// Verifications left this second.
    pub fn left(&self) -> u32 {
        self.state.lock().0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_of(token: &str) -> TokenCheck {
        let hash = hash_token(token).unwrap_or_else(|e| panic!("{e}"));
        TokenCheck::new(parse_hash(&hash, "t").unwrap_or_else(|e| panic!("{e}")))
    }

    #[test]
    fn generated_tokens_and_key_names_are_random_and_well_formed() {
        let a = generate_token().unwrap_or_else(|e| panic!("{e}"));
        let b = generate_token().unwrap_or_else(|e| panic!("{e}"));
        assert_ne!(a, b);
        assert_eq!(a.len(), GENERATED_TOKEN_LEN);
        assert!(
            check_token(&a).is_ok(),
            "a generated token may also be given back as a chosen one"
        );
        let suffix = random_key_suffix().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(suffix.len(), 10);
        assert!(suffix.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()));
    }

    #[test]
    fn chosen_tokens_follow_the_rules() {
        assert!(check_token("12345678").is_ok());
        assert!(check_token("1234567").is_err());
        assert!(check_token("with space").is_err());
        assert!(check_token(&"x".repeat(37)).is_err());
    }

    #[test]
    fn once_accepted_a_token_is_checked_without_pbkdf2() {
        let check = check_of("the-right-token");
        let budget = Pbkdf2Budget::new(3);
        for _ in 0..5 {
            let _ = check.check(b"a-wrong-guess", &budget);
        }
        assert_eq!(budget.left(), 0);
        assert_eq!(check.check(b"the-right-token", &budget), Err(TokenRefusal::Throttled));
        let budget = Pbkdf2Budget::new(1);
        assert_eq!(check.check(b"the-right-token", &budget), Ok(()));
        assert!(check.is_cached());
        for _ in 0..100 {
            assert_eq!(check.check(b"a-wrong-guess", &budget), Err(TokenRefusal::Wrong));
        }
        assert_eq!(check.check(b"the-right-token", &budget), Ok(()));
    }
}
