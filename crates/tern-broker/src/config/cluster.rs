//! The cluster directives: `cluster_nats_urls nats://host:4222,nats://...` (the NATS
//! servers, with JetStream, that the nodes of a cluster share) and `cluster_node_name
//! <name>` (this node's name, unique in the cluster). Without them the broker is a
//! single node. The cluster itself is in `tern-cluster`; the broker only reads and checks
//! the values, so that a bad one stops the start naming its directive. The NATS
//! connection's own security: `cluster_nats_cafile` (the CA certificates that signed the
//! servers' certificates), `cluster_nats_certfile` and `cluster_nats_keyfile` (a client
//! certificate, for servers that verify clients), `cluster_nats_nkey_file` (a file
//! holding an nkey seed, `SU...`, for servers that authenticate users by nkey) and
//! `cluster_nats_credentials` (a NATS credentials file, a user JWT and its seed, for
//! servers in operator mode).

use anyhow::{bail, Result};
use std::path::PathBuf;

/// How a node proves itself to NATS and checks the servers (the `cluster_nats_*` files;
/// their contents are read and checked when the node joins).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NatsAuth {
    /// CA certificates (PEM) for the servers' certificates; set, the connection uses TLS.
    pub cafile: Option<PathBuf>,
    /// The node's client certificate chain (PEM).
    pub certfile: Option<PathBuf>,
    /// The client certificate's private key (PEM).
    pub keyfile: Option<PathBuf>,
    /// A file holding the node's nkey seed.
    pub nkey_file: Option<PathBuf>,
    /// A NATS credentials file (`.creds`: a user JWT and its nkey seed).
    pub credentials: Option<PathBuf>,
}

impl NatsAuth {
    fn any(&self) -> bool {
        *self != NatsAuth::default()
    }

    /// Sets one of the file directives; false if `directive` is none of them.
    pub(super) fn set(&mut self, directive: &str, path: &str) -> Result<bool> {
        if path.is_empty() {
            bail!("{directive} needs a file path");
        }
        let slot = match directive {
            "cluster_nats_cafile" => &mut self.cafile,
            "cluster_nats_certfile" => &mut self.certfile,
            "cluster_nats_keyfile" => &mut self.keyfile,
            "cluster_nats_nkey_file" => &mut self.nkey_file,
            "cluster_nats_credentials" => &mut self.credentials,
            _ => return Ok(false),
        };
        *slot = Some(PathBuf::from(path));
        Ok(true)
    }
}

/// Longest node name: it is part of NATS subjects, key-value keys and connection names.
pub const MAX_NODE_NAME: usize = 64;
/// Most NATS servers one node may list.
const MAX_URLS: usize = 32;

/// Reads `cluster_nats_urls`: one or more `nats://` or `tls://` URLs, separated by commas
/// (several arguments are joined the same way).
pub(super) fn nats_urls(args: &[&str]) -> Result<Vec<String>> {
    let urls: Vec<String> = args
        .iter()
        .flat_map(|a| a.split(','))
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .map(str::to_string)
        .collect();
    if urls.is_empty() {
        bail!("cluster_nats_urls needs at least one URL, e.g. nats://127.0.0.1:4222");
    }
    if urls.len() > MAX_URLS {
        bail!("cluster_nats_urls lists {} URLs, more than {MAX_URLS}", urls.len());
    }
    for url in &urls {
        check_url(url)?;
    }
    Ok(urls)
}

/// A NATS server URL: `nats://` or `tls://`, optional `user:password@`, a host, an
/// optional port. Only the host and port are named in errors (never the credentials).
fn check_url(url: &str) -> Result<()> {
    let Some((scheme, rest)) = url.split_once("://") else {
        bail!(
            "cluster_nats_urls: {:?} is not a URL (expected nats://host:port)",
            redact(url)
        );
    };
    if scheme != "nats" && scheme != "tls" {
        bail!(
            "cluster_nats_urls: {:?}: the scheme must be nats:// or tls://",
            redact(url)
        );
    }
    let authority = rest.split_once('/').map_or(rest, |(a, _)| a);
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let (host, port) = match host_port.rsplit_once(':') {
        // An IPv6 address in brackets without a port ends with ']'.
        Some((host, port)) if !port.ends_with(']') => (host, Some(port)),
        _ => (host_port, None),
    };
    let host_ok = !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b'[' | b']' | b':'));
    if !host_ok {
        bail!("cluster_nats_urls: {:?} has no valid host", redact(url));
    }
    if let Some(port) = port {
        if !port.parse::<u16>().is_ok_and(|p| p != 0) {
            bail!("cluster_nats_urls: {:?}: {port:?} is not a port number", redact(url));
        }
    }
    Ok(())
}

/// `url` with any `user:password@` replaced, for error messages.
fn redact(url: &str) -> String {
    match (url.split_once("://"), url.rsplit_once('@')) {
        (Some((scheme, _)), Some((_, host))) => format!("{scheme}://***@{host}"),
        _ => url.to_string(),
    }
}

/// The default `cluster_node_timeout`, in seconds.
pub const DEFAULT_NODE_TIMEOUT: u64 = 15;
/// Longest `cluster_node_timeout`, in seconds (an hour).
const MAX_NODE_TIMEOUT: u64 = 3600;

/// Reads `cluster_node_timeout`: whole seconds, 2 to 3600 (heartbeats come every second,
/// so a shorter one would take a node that missed one for dead).
pub(super) fn node_timeout(value: &str) -> Result<std::time::Duration> {
    match value.parse::<u64>() {
        Ok(seconds) if (2..=MAX_NODE_TIMEOUT).contains(&seconds) => Ok(std::time::Duration::from_secs(seconds)),
        _ => bail!("cluster_node_timeout {value:?}: whole seconds from 2 to {MAX_NODE_TIMEOUT}"),
    }
}

/// Reads `cluster_node_name`: 1 to 64 ASCII letters, digits, `-` and `_`.
pub(super) fn node_name(name: &str) -> Result<String> {
    let valid = !name.is_empty()
        && name.len() <= MAX_NODE_NAME
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !valid {
        bail!("cluster_node_name {name:?}: 1 to {MAX_NODE_NAME} letters, digits, '-' or '_'");
    }
    Ok(name.to_string())
}

/// The two directives go together; the NATS connection's files need them, and a client
/// certificate needs its key (and the other way round).
pub(super) fn check(urls: &[String], node: Option<&str>, auth: &NatsAuth) -> Result<()> {
    if urls.is_empty() && auth.any() {
        bail!("cluster_nats_cafile, _certfile, _keyfile, _nkey_file and _credentials need cluster_nats_urls");
    }
    if auth.nkey_file.is_some() && auth.credentials.is_some() {
        bail!("cluster_nats_nkey_file and cluster_nats_credentials exclude each other (a credentials file holds its own seed)");
    }
    match (&auth.certfile, &auth.keyfile) {
        (Some(_), None) => bail!("cluster_nats_certfile is set but cluster_nats_keyfile is not"),
        (None, Some(_)) => bail!("cluster_nats_keyfile is set but cluster_nats_certfile is not"),
        _ => {}
    }
    match (urls.is_empty(), node) {
        (false, None) => bail!("cluster_nats_urls is set but cluster_node_name is not: every node needs a name"),
        (true, Some(_)) => {
            bail!("cluster_node_name is set but cluster_nats_urls is not: a node needs the NATS servers")
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_split_at_commas_and_checked() {
        let urls = nats_urls(&["nats://127.0.0.1:4222,nats://u:p@h2:4223", "tls://h3"]).unwrap();
        assert_eq!(urls, ["nats://127.0.0.1:4222", "nats://u:p@h2:4223", "tls://h3"]);
        for bad in [
            "",
            "127.0.0.1:4222",
            "http://h:1",
            "nats://:4222",
            "nats://h:0",
            "nats://h:99999",
            "nats://h x",
        ] {
            let e = nats_urls(&[bad]).unwrap_err().to_string();
            assert!(e.starts_with("cluster_nats_urls"), "{bad}: {e}");
        }
    }

    #[test]
    fn credentials_never_appear_in_errors() {
        let e = nats_urls(&["nats://user:secret@h:70000"]).unwrap_err().to_string();
        assert!(!e.contains("secret"), "{e}");
    }

    #[test]
    fn node_names_are_short_and_plain() {
        assert_eq!(node_name("node-a_1").unwrap(), "node-a_1");
        for bad in ["", "a.b", "a b", "ä", &"x".repeat(65)] {
            assert!(node_name(bad).unwrap_err().to_string().starts_with("cluster_node_name"));
        }
    }

    #[test]
    fn the_node_timeout_is_whole_seconds_in_range() {
        assert_eq!(node_timeout("2").unwrap(), std::time::Duration::from_secs(2));
        assert_eq!(node_timeout("3600").unwrap(), std::time::Duration::from_secs(3600));
        for bad in ["", "1", "0", "3601", "1.5", "-3", "10s"] {
            let e = node_timeout(bad).unwrap_err().to_string();
            assert!(e.starts_with("cluster_node_timeout"), "{bad}: {e}");
        }
    }

    #[test]
    fn one_directive_without_the_other_is_refused() {
        let none = NatsAuth::default();
        assert!(check(&[], None, &none).is_ok());
        assert!(check(&["nats://h".into()], Some("a"), &none).is_ok());
        assert!(check(&["nats://h".into()], None, &none).is_err());
        assert!(check(&[], Some("a"), &none).is_err());
    }

    #[test]
    fn nats_files_need_the_urls_and_a_certificate_needs_its_key() {
        let urls = ["tls://h".to_string()];
        let mut auth = NatsAuth::default();
        assert!(auth.set("cluster_nats_cafile", "ca.pem").unwrap());
        assert!(!auth.set("cluster_nats_other", "x").unwrap());
        assert!(auth.set("cluster_nats_nkey_file", "").is_err());
        assert!(check(&urls, Some("a"), &auth).is_ok());
        let e = check(&[], None, &auth).unwrap_err().to_string();
        assert!(e.contains("need cluster_nats_urls"), "{e}");
        auth.set("cluster_nats_certfile", "node.pem").unwrap();
        let e = check(&urls, Some("a"), &auth).unwrap_err().to_string();
        assert!(
            e.starts_with("cluster_nats_certfile is set but cluster_nats_keyfile"),
            "{e}"
        );
        auth.set("cluster_nats_keyfile", "node.key").unwrap();
        assert!(check(&urls, Some("a"), &auth).is_ok());
        auth.set("cluster_nats_nkey_file", "node.nk").unwrap();
        auth.set("cluster_nats_credentials", "node.creds").unwrap();
        let e = check(&urls, Some("a"), &auth).unwrap_err().to_string();
        assert!(e.contains("exclude each other"), "{e}");
    }
}
