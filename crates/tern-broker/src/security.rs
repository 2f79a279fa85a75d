//! Who may connect and what they may touch: each listener's anonymous setting, mosquitto
//! password file and mosquitto ACL file, loaded from the configuration at start and again
//! on SIGHUP (a file that fails to load keeps the previous tables, with an error logged).

use crate::config::Config;
use anyhow::{anyhow, Context, Result};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tern_core::acl::{self, Acl};
use tern_core::password::{parse_file, PasswordHash, Secret};

/// The security settings of one listener.
#[derive(Debug, Default)]
pub struct ListenerSecurity {
    pub allow_anonymous: bool,
    /// From the password file; `None` without one.
    pub passwords: Option<Arc<HashMap<String, PasswordHash>>>,
    /// From the ACL file; `None` without one (then everything is allowed).
    pub acl: Option<Arc<Acl>>,
}

/// The outcome of checking a CONNECT's user name and password.
#[derive(Debug, PartialEq, Eq)]
pub enum Login {
    /// Accepted; the user name the client is known by (for ACLs), if any.
    Accepted(Option<String>),
    /// No user name and anonymous access is off.
    AnonymousRefused,
    /// Unknown user or wrong password.
    BadCredentials,
}

impl ListenerSecurity {
    /// mosquitto's rules: with a password file, a user name must come with its password;
    /// without one, a user name is taken as given (and used by the ACL) if anonymous
    /// access is on; a client without a user name needs anonymous access.
    pub fn login(&self, username: Option<&str>, password: Option<&[u8]>) -> Login {
        match (username, &self.passwords) {
            (Some(user), Some(passwords)) => {
                let known = passwords.get(user);
                match (known, password) {
                    (Some(hash), Some(password)) if hash.verify(password) => Login::Accepted(Some(user.to_string())),
                    _ => Login::BadCredentials,
                }
            }
            (Some(user), None) if self.allow_anonymous => Login::Accepted(Some(user.to_string())),
            (None, _) if self.allow_anonymous => Login::Accepted(None),
            _ => Login::AnonymousRefused,
        }
    }
}

/// What a client may do under an ACL, kept in its session so that deliveries can be
/// checked against it.
#[derive(Debug, Clone)]
pub struct ClientAccess {
    pub acl: Arc<Acl>,
    pub user: Option<Box<str>>,
    /// The listener it connected through, to find the new ACL after a reload.
    pub listener: usize,
}

impl ClientAccess {
    fn client<'a>(&'a self, client_id: &'a str) -> acl::Client<'a> {
        acl::Client {
            user: self.user.as_deref(),
            client_id,
        }
    }

    pub fn may_read(&self, client_id: &str, topic: &str) -> bool {
        self.acl.may_read(self.client(client_id), topic)
    }

    pub fn may_write(&self, client_id: &str, topic: &str) -> bool {
        self.acl.may_write(self.client(client_id), topic)
    }

    pub fn may_subscribe(&self, client_id: &str, filter: &str) -> bool {
        self.acl.may_subscribe(self.client(client_id), filter)
    }
}

fn load_passwords(path: &Path) -> Result<Arc<HashMap<String, PasswordHash>>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read password_file {}", path.display()))?;
    let entries = parse_file(&text, false).map_err(|e| anyhow!("password_file {}: {e}", path.display()))?;
    let mut passwords = HashMap::new();
    for entry in entries {
        if let Secret::Hashed(hash) = entry.secret {
            passwords.insert(entry.user, hash);
        }
    }
    Ok(Arc::new(passwords))
}

fn load_acl(path: &Path) -> Result<Arc<Acl>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read acl_file {}", path.display()))?;
    let acl = Acl::parse(&text).map_err(|e| anyhow!("acl_file {}: {e}", path.display()))?;
    Ok(Arc::new(acl))
}

/// Loads the security of every listener of `config` (in `effective_listeners` order);
/// a file shared by several listeners is read once.
pub fn load(config: &Config) -> Result<Vec<Arc<ListenerSecurity>>> {
    let mut passwords: HashMap<PathBuf, Arc<HashMap<String, PasswordHash>>> = HashMap::new();
    let mut acls: HashMap<PathBuf, Arc<Acl>> = HashMap::new();
    let local_default = config.is_local_default();
    let mut tables = Vec::new();
    for listener in config.effective_listeners() {
        let password_file = listener.password_file.as_ref().or(config.password_file.as_ref());
        let acl_file = listener.acl_file.as_ref().or(config.acl_file.as_ref());
        let passwords = match password_file {
            Some(path) => Some(match passwords.get(path) {
                Some(p) => p.clone(),
                None => passwords.entry(path.clone()).or_insert(load_passwords(path)?).clone(),
            }),
            None => None,
        };
        let acl = match acl_file {
            Some(path) => Some(match acls.get(path) {
                Some(a) => a.clone(),
                None => acls.entry(path.clone()).or_insert(load_acl(path)?).clone(),
            }),
            None => None,
        };
        let allow_anonymous = if local_default && config.password_file.is_none() {
            true
        } else {
            listener.allow_anonymous.unwrap_or(config.allow_anonymous)
        };
        tables.push(Arc::new(ListenerSecurity {
            allow_anonymous,
            passwords,
            acl,
        }));
    }
    Ok(tables)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tern_core::password::Algorithm;

    fn with_alice(allow_anonymous: bool) -> ListenerSecurity {
        let hash = PasswordHash::new(b"secret", Algorithm::Pbkdf2Sha512 { iterations: 10 }).unwrap();
        ListenerSecurity {
            allow_anonymous,
            passwords: Some(Arc::new(HashMap::from([("alice".to_string(), hash)]))),
            acl: None,
        }
    }

    #[test]
    fn mosquitto_login_rules() {
        let s = with_alice(false);
        assert_eq!(
            s.login(Some("alice"), Some(b"secret")),
            Login::Accepted(Some("alice".into()))
        );
        assert_eq!(s.login(Some("alice"), Some(b"nope")), Login::BadCredentials);
        assert_eq!(s.login(Some("alice"), None), Login::BadCredentials);
        assert_eq!(s.login(Some("bob"), Some(b"secret")), Login::BadCredentials);
        assert_eq!(s.login(None, None), Login::AnonymousRefused);
        assert_eq!(with_alice(true).login(None, None), Login::Accepted(None));
        let open = ListenerSecurity {
            allow_anonymous: true,
            ..ListenerSecurity::default()
        };
        assert_eq!(open.login(Some("any"), None), Login::Accepted(Some("any".into())));
        assert_eq!(
            ListenerSecurity::default().login(Some("any"), Some(b"x")),
            Login::AnonymousRefused
        );
    }
}
