//! MQTT 5.0 enhanced authentication (section 4.12): the pluggable [`Authenticator`]
//! interface and the one method built in, SCRAM-SHA-256.
//!
//! A CONNECT naming an Authentication Method starts an exchange with the authenticator of
//! that name; each AUTH the client sends is one [`AuthExchange::step`], until the step
//! succeeds (CONNACK) or fails (CONNACK 0x87). A connected client may re-authenticate
//! with AUTH 0x19 through the same method. Embedders add methods with
//! [`crate::BrokerHandle::add_authenticator`]; `scram_file` in the configuration turns on
//! SCRAM-SHA-256 with the credentials `tern passwd --scram` writes.

use anyhow::{anyhow, Context, Result};
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use tern_core::password::{parse_file, PasswordHash, Secret};
use tern_core::scram::{self, ScramCredentials, ScramServer};
use tern_proto::ReasonCode;

/// What the broker does after one step of an exchange.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthStep {
    /// Send this Authentication Data in AUTH 0x18 and wait for the client's next AUTH.
    Continue(Vec<u8>),
    /// Authenticated as `user`; `data` goes back with CONNACK (or the final AUTH).
    Success { user: String, data: Option<Vec<u8>> },
    /// Refused: the reason code for the client and why, for the log and Reason String.
    Failure { reason: ReasonCode, why: String },
}

/// One authentication exchange in progress.
pub trait AuthExchange: Send {
    /// Takes the Authentication Data of the client's latest packet (CONNECT, then AUTH).
    fn step(&mut self, data: &[u8]) -> AuthStep;
}

/// An authentication method.
pub trait Authenticator: Send + Sync + std::fmt::Debug {
    /// The Authentication Method name clients put in CONNECT.
    fn method(&self) -> &str;
    /// A new exchange; its first step gets the CONNECT's (or AUTH 0x19's) data.
    fn start(&self) -> Box<dyn AuthExchange>;
}

/// The methods the broker offers, by name.
#[derive(Debug, Default, Clone)]
pub struct Authenticators {
    methods: Vec<Arc<dyn Authenticator>>,
}

impl Authenticators {
    /// The methods `scram_file` (if set) configures.
    pub fn from_file(scram_file: Option<&Path>) -> Result<Authenticators> {
        let mut methods: Vec<Arc<dyn Authenticator>> = Vec::new();
        if let Some(path) = scram_file {
            methods.push(Arc::new(ScramAuthenticator::load(path)?));
        }
        Ok(Authenticators { methods })
    }

    /// Adds or replaces the method of `authenticator`'s name.
    pub fn add(&mut self, authenticator: Arc<dyn Authenticator>) {
        self.methods.retain(|m| m.method() != authenticator.method());
        self.methods.push(authenticator);
    }

    pub fn find(&self, method: &str) -> Option<&Arc<dyn Authenticator>> {
        self.methods.iter().find(|m| m.method() == method)
    }

    /// Methods added by the embedder (kept across a configuration reload).
    pub fn merge_custom(&mut self, previous: &Authenticators) {
        for m in &previous.methods {
            if m.method() != scram::METHOD && self.find(m.method()).is_none() {
                self.methods.push(m.clone());
            }
        }
    }
}

/// SCRAM-SHA-256 with credentials from a password file: its `user:SCRAM-SHA-256$...`
/// lines (`tern passwd -H scram-sha-256`); mosquitto hashes in the same file are skipped,
/// as SCRAM cannot use them.
#[derive(Debug)]
pub struct ScramAuthenticator {
    users: Arc<HashMap<String, ScramCredentials>>,
}

impl ScramAuthenticator {
    /// Reads the credentials file; an unreadable line is an error naming it.
    pub fn load(path: &Path) -> Result<ScramAuthenticator> {
        let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
        let entries = parse_file(&text, false).map_err(|e| anyhow!("{}: {e}", path.display()))?;
        let users = entries
            .into_iter()
            .filter_map(|entry| match entry.secret {
                Secret::Hashed(PasswordHash::ScramSha256(credentials)) => Some((entry.user, credentials)),
                _ => None,
            })
            .collect();
        Ok(ScramAuthenticator { users: Arc::new(users) })
    }
}

impl Authenticator for ScramAuthenticator {
    fn method(&self) -> &str {
        scram::METHOD
    }

    fn start(&self) -> Box<dyn AuthExchange> {
        Box::new(ScramExchange {
            users: self.users.clone(),
            server: None,
        })
    }
}

struct ScramExchange {
    users: Arc<HashMap<String, ScramCredentials>>,
    /// Set after client-first; taken by client-final.
    server: Option<ScramServer>,
}

impl AuthExchange for ScramExchange {
    fn step(&mut self, data: &[u8]) -> AuthStep {
        let failed = |e: scram::ScramError| AuthStep::Failure {
            reason: ReasonCode::NOT_AUTHORIZED,
            why: format!("SCRAM-SHA-256: {e}"),
        };
        match self.server.take() {
            None => match ScramServer::start(data, |user| self.users.get(user).cloned()) {
                Ok((server, server_first)) => {
                    self.server = Some(server);
                    AuthStep::Continue(server_first)
                }
                Err(e) => failed(e),
            },
            Some(server) => match server.finish(data) {
                Ok((user, server_final)) => AuthStep::Success {
                    user,
                    data: Some(server_final),
                },
                Err(e) => failed(e),
            },
        }
    }
}
