//! SCRAM-SHA-256 (RFC 5802, RFC 7677) for MQTT 5.0 enhanced authentication, both sides,
//! without channel binding (GS2 header `n,,`).
//!
//! The server stores no password, only [`ScramCredentials`] (salt, iteration count,
//! StoredKey, ServerKey) in the RFC 5803 text form
//! `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>`, as PostgreSQL does. The
//! exchange is three messages: client-first (in CONNECT), server-first (in AUTH),
//! client-final (in AUTH), and the server-final signature returned in CONNACK.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

/// The MQTT Authentication Method name.
pub const METHOD: &str = "SCRAM-SHA-256";
/// Iterations used when creating credentials (RFC 7677 asks for at least 4096).
pub const DEFAULT_ITERATIONS: u32 = 4096;
const NONCE_LEN: usize = 18;

/// Why an exchange failed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ScramError {
    #[error("malformed SCRAM message: {0}")]
    Malformed(&'static str),
    #[error("channel binding is not supported")]
    ChannelBinding,
    #[error("unknown user")]
    UnknownUser,
    #[error("wrong password")]
    WrongProof,
    #[error("the server's signature does not match: it does not know the password")]
    WrongServerSignature,
    #[error("the nonce was changed")]
    NonceMismatch,
    #[error("cannot generate a random nonce: {0}")]
    Random(String),
}

type HmacSha256 = Hmac<Sha256>;

fn hmac(key: &[u8], data: &[u8]) -> [u8; 32] {
    // HMAC accepts keys of any length; new_from_slice cannot fail for it.
    let mut mac = match HmacSha256::new_from_slice(key) {
        Ok(mac) => mac,
        Err(_) => return [0; 32],
    };
    mac.update(data);
    mac.finalize().into_bytes().into()
}

fn sha256(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

fn random_nonce() -> Result<String, ScramError> {
    let mut bytes = [0u8; NONCE_LEN];
    getrandom::getrandom(&mut bytes).map_err(|e| ScramError::Random(e.to_string()))?;
    Ok(STANDARD.encode(bytes))
}

/// What the server keeps for one user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScramCredentials {
    pub salt: Vec<u8>,
    pub iterations: u32,
    pub stored_key: [u8; 32],
    pub server_key: [u8; 32],
}

impl ScramCredentials {
    /// Derives credentials from a password with a new random salt.
    pub fn new(password: &str, iterations: u32) -> Result<ScramCredentials, ScramError> {
        let mut salt = vec![0u8; 16];
        getrandom::getrandom(&mut salt).map_err(|e| ScramError::Random(e.to_string()))?;
        Ok(Self::derive(password, salt, iterations))
    }

    pub fn derive(password: impl AsRef<[u8]>, salt: Vec<u8>, iterations: u32) -> ScramCredentials {
        let salted = salted_password(password, &salt, iterations);
        ScramCredentials {
            stored_key: sha256(&hmac(&salted, b"Client Key")),
            server_key: hmac(&salted, b"Server Key"),
            salt,
            iterations,
        }
    }

    /// The RFC 5803 text form.
    pub fn encode(&self) -> String {
        format!(
            "{METHOD}${}:{}${}:{}",
            self.iterations,
            STANDARD.encode(&self.salt),
            STANDARD.encode(self.stored_key),
            STANDARD.encode(self.server_key)
        )
    }

    /// Reads the RFC 5803 text form; `None` if it is not one.
    pub fn parse(text: &str) -> Option<ScramCredentials> {
        let rest = text.strip_prefix(METHOD)?.strip_prefix('$')?;
        let (iterations_salt, keys) = rest.split_once('$')?;
        let (iterations, salt) = iterations_salt.split_once(':')?;
        let (stored, server) = keys.split_once(':')?;
        let key = |b64: &str| -> Option<[u8; 32]> { STANDARD.decode(b64).ok()?.try_into().ok() };
        Some(ScramCredentials {
            iterations: iterations.parse().ok().filter(|n| *n > 0)?,
            salt: STANDARD.decode(salt).ok()?,
            stored_key: key(stored)?,
            server_key: key(server)?,
        })
    }
}

fn salted_password(password: impl AsRef<[u8]>, salt: &[u8], iterations: u32) -> [u8; 32] {
    let mut out = [0u8; 32];
    pbkdf2::pbkdf2_hmac::<Sha256>(password.as_ref(), salt, iterations, &mut out);
    out
}

/// `a=b,c=d` attributes of a SCRAM message, in order.
fn attributes(message: &str) -> impl Iterator<Item = (char, &str)> {
    message.split(',').filter_map(|part| {
        let mut chars = part.chars();
        let name = chars.next()?;
        part.get(1..)?.strip_prefix('=').map(|value| (name, value))
    })
}

fn attribute(message: &str, name: char) -> Option<&str> {
    attributes(message).find(|(n, _)| *n == name).map(|(_, v)| v)
}

/// SASLprep is not applied; names with `,` or `=` are escaped as RFC 5802 says.
fn escape_name(name: &str) -> String {
    name.replace('=', "=3D").replace(',', "=2C")
}

fn unescape_name(name: &str) -> String {
    name.replace("=2C", ",").replace("=3D", "=")
}

/// The server side of one exchange, between client-first and client-final.
#[derive(Debug)]
pub struct ScramServer {
    user: String,
    credentials: ScramCredentials,
    client_first_bare: String,
    server_first: String,
    nonce: String,
}

impl ScramServer {
    /// Reads client-first, looks the user up and returns the exchange and server-first.
    pub fn start(
        client_first: &[u8],
        lookup: impl FnOnce(&str) -> Option<ScramCredentials>,
    ) -> Result<(ScramServer, Vec<u8>), ScramError> {
        let text = std::str::from_utf8(client_first).map_err(|_| ScramError::Malformed("not UTF-8"))?;
        let bare = match text.strip_prefix("n,,").or_else(|| text.strip_prefix("y,,")) {
            Some(bare) => bare,
            None if text.starts_with("p=") => return Err(ScramError::ChannelBinding),
            None => return Err(ScramError::Malformed("GS2 header")),
        };
        let user = unescape_name(attribute(bare, 'n').ok_or(ScramError::Malformed("no user name"))?);
        let client_nonce = attribute(bare, 'r').ok_or(ScramError::Malformed("no nonce"))?;
        let credentials = lookup(&user).ok_or(ScramError::UnknownUser)?;
        let nonce = format!("{client_nonce}{}", random_nonce()?);
        let server_first = format!(
            "r={nonce},s={},i={}",
            STANDARD.encode(&credentials.salt),
            credentials.iterations
        );
        let exchange = ScramServer {
            user,
            credentials,
            client_first_bare: bare.to_string(),
            server_first: server_first.clone(),
            nonce,
        };
        Ok((exchange, server_first.into_bytes()))
    }

    /// Checks client-final's proof; returns the user name and server-final.
    pub fn finish(self, client_final: &[u8]) -> Result<(String, Vec<u8>), ScramError> {
        let text = std::str::from_utf8(client_final).map_err(|_| ScramError::Malformed("not UTF-8"))?;
        let (without_proof, proof) = text.rsplit_once(",p=").ok_or(ScramError::Malformed("no proof"))?;
        if attribute(without_proof, 'r') != Some(self.nonce.as_str()) {
            return Err(ScramError::NonceMismatch);
        }
        let proof = STANDARD
            .decode(proof)
            .map_err(|_| ScramError::Malformed("proof is not base64"))?;
        let auth_message = format!("{},{},{without_proof}", self.client_first_bare, self.server_first);
        let signature = hmac(&self.credentials.stored_key, auth_message.as_bytes());
        if proof.len() != 32 {
            return Err(ScramError::WrongProof);
        }
        let client_key: Vec<u8> = proof.iter().zip(signature).map(|(p, s)| p ^ s).collect();
        if sha256(&client_key) != self.credentials.stored_key {
            return Err(ScramError::WrongProof);
        }
        let server_signature = hmac(&self.credentials.server_key, auth_message.as_bytes());
        let server_final = format!("v={}", STANDARD.encode(server_signature));
        Ok((self.user, server_final.into_bytes()))
    }
}

/// The client side of one exchange.
#[derive(Debug, Clone)]
pub struct ScramClient {
    password: String,
    client_first_bare: String,
    client_nonce: String,
    /// AuthMessage and ServerKey once client-final is made, to check server-final.
    expected_server_signature: Option<[u8; 32]>,
}

impl ScramClient {
    /// A new exchange for `user`; returns it and client-first.
    pub fn start(user: &str, password: &str) -> Result<(ScramClient, Vec<u8>), ScramError> {
        let client_nonce = random_nonce()?;
        let client_first_bare = format!("n={},r={client_nonce}", escape_name(user));
        let first = format!("n,,{client_first_bare}").into_bytes();
        let client = ScramClient {
            password: password.to_string(),
            client_first_bare,
            client_nonce,
            expected_server_signature: None,
        };
        Ok((client, first))
    }

    /// Answers server-first with client-final.
    pub fn respond(&mut self, server_first: &[u8]) -> Result<Vec<u8>, ScramError> {
        let text = std::str::from_utf8(server_first).map_err(|_| ScramError::Malformed("not UTF-8"))?;
        let nonce = attribute(text, 'r').ok_or(ScramError::Malformed("no nonce"))?;
        if !nonce.starts_with(&self.client_nonce) {
            return Err(ScramError::NonceMismatch);
        }
        let salt = attribute(text, 's')
            .and_then(|s| STANDARD.decode(s).ok())
            .ok_or(ScramError::Malformed("no salt"))?;
        let iterations: u32 = attribute(text, 'i')
            .and_then(|i| i.parse().ok())
            .filter(|i| *i > 0)
            .ok_or(ScramError::Malformed("no iteration count"))?;
        let salted = salted_password(&self.password, &salt, iterations);
        let client_key = hmac(&salted, b"Client Key");
        let stored_key = sha256(&client_key);
        let without_proof = format!("c=biws,r={nonce}");
        let auth_message = format!("{},{text},{without_proof}", self.client_first_bare);
        let signature = hmac(&stored_key, auth_message.as_bytes());
        let proof: Vec<u8> = client_key.iter().zip(signature).map(|(k, s)| k ^ s).collect();
        let server_key = hmac(&salted, b"Server Key");
        self.expected_server_signature = Some(hmac(&server_key, auth_message.as_bytes()));
        Ok(format!("{without_proof},p={}", STANDARD.encode(proof)).into_bytes())
    }

    /// Checks server-final: proof that the server knows the credentials.
    pub fn verify(&self, server_final: &[u8]) -> Result<(), ScramError> {
        let text = std::str::from_utf8(server_final).map_err(|_| ScramError::Malformed("not UTF-8"))?;
        let signature = attribute(text, 'v')
            .and_then(|v| STANDARD.decode(v).ok())
            .ok_or(ScramError::Malformed("no server signature"))?;
        match self.expected_server_signature {
            Some(expected) if signature == expected => Ok(()),
            _ => Err(ScramError::WrongServerSignature),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exchange(password: &str) -> Result<String, ScramError> {
        let stored = ScramCredentials::new("secret", 4096).unwrap();
        let (mut client, first) = ScramClient::start("al,ice", password).unwrap();
        let (server, server_first) = ScramServer::start(&first, |user| {
            assert_eq!(user, "al,ice");
            Some(stored.clone())
        })?;
        let client_final = client.respond(&server_first)?;
        let (user, server_final) = server.finish(&client_final)?;
        client.verify(&server_final)?;
        Ok(user)
    }

    #[test]
    fn a_full_exchange_authenticates_both_sides() {
        assert_eq!(exchange("secret"), Ok("al,ice".to_string()));
        assert_eq!(exchange("wrong"), Err(ScramError::WrongProof));
    }

    #[test]
    fn rfc_7677_test_vector() {
        // RFC 7677 section 3: user "user", password "pencil".
        let salt = STANDARD.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
        let credentials = ScramCredentials::derive("pencil", salt, 4096);
        let client_first = b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO";
        let (mut server, _) = ScramServer::start(client_first, |_| Some(credentials.clone())).unwrap();
        // Replace the random server nonce with the RFC's.
        server.nonce = "rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0".into();
        server.server_first = format!("r={},s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096", server.nonce);
        let client_final = b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
        let (_, server_final) = server.finish(client_final).unwrap();
        assert_eq!(server_final, b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=");
    }

    #[test]
    fn credentials_round_trip_through_text_and_reject_garbage() {
        let c = ScramCredentials::new("pw", 4096).unwrap();
        assert_eq!(ScramCredentials::parse(&c.encode()), Some(c));
        assert_eq!(ScramCredentials::parse("SCRAM-SHA-256$x:abc$def:ghi"), None);
        assert_eq!(ScramCredentials::parse("$7$101$abc$def"), None);
    }

    #[test]
    fn malformed_messages_are_errors_not_panics() {
        let lookup = |_: &str| None;
        assert!(ScramServer::start(b"", lookup).is_err());
        assert!(ScramServer::start(b"n,,", |_| None).is_err());
        assert_eq!(
            ScramServer::start(b"p=tls-unique,,n=a,r=b", |_| None).unwrap_err(),
            ScramError::ChannelBinding
        );
        assert_eq!(
            ScramServer::start(b"n,,n=nobody,r=abc", |_| None).unwrap_err(),
            ScramError::UnknownUser
        );
        assert!(ScramServer::start(&[0xff, 0xfe], |_| None).is_err());
    }
}
