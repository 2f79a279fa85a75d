//! The options of every NATS connection a node makes (the main one, the shared groups'
//! and the platform's): a name, reconnecting forever, and the connection's security from
//! the `cluster_nats_*` files. The files are read and checked here, when the node joins,
//! so that a missing or malformed one stops the start naming its directive instead of
//! leaving the node retrying a connection that can never succeed.

use crate::{ClusterError, Settings};
use std::path::Path;
use std::time::Duration;

/// Longest file read for a directive (certificates, keys, a seed).
const MAX_FILE: u64 = 1 << 20;

/// Options for the connection called `tern-<node><suffix>`.
pub fn options(settings: &Settings, suffix: &str) -> Result<async_nats::ConnectOptions, ClusterError> {
    let mut options = async_nats::ConnectOptions::new()
        .name(format!("tern-{}{suffix}", settings.node))
        .retry_on_initial_connect()
        .max_reconnects(None)
        .connection_timeout(Duration::from_secs(2))
        .reconnect_delay_callback(|attempts| Duration::from_millis((attempts as u64 * 100).min(1000)));
    let auth = &settings.auth;
    if let Some(cafile) = &auth.cafile {
        certificates("cluster_nats_cafile", cafile)?;
        options = options.add_root_certificates(cafile.clone()).require_tls(true);
    }
    if let (Some(certfile), Some(keyfile)) = (&auth.certfile, &auth.keyfile) {
        certificates("cluster_nats_certfile", certfile)?;
        let pem = read("cluster_nats_keyfile", keyfile)?;
        if !matches!(rustls_pemfile::private_key(&mut pem.as_slice()), Ok(Some(_))) {
            return Err(file_error("cluster_nats_keyfile", keyfile, "no PEM private key in it"));
        }
        options = options
            .add_client_certificate(certfile.clone(), keyfile.clone())
            .require_tls(true);
    }
    if let Some(path) = &auth.nkey_file {
        let text = read("cluster_nats_nkey_file", path)?;
        let seed = String::from_utf8_lossy(&text)
            .lines()
            .map(str::trim)
            .find(|l| l.starts_with("SU"))
            .map(str::to_string);
        let Some(seed) = seed.filter(|s| nkeys::KeyPair::from_seed(s).is_ok()) else {
            return Err(file_error(
                "cluster_nats_nkey_file",
                path,
                "no user nkey seed (SU...) in it",
            ));
        };
        options = options.nkey(seed);
    }
    if let Some(path) = &auth.credentials {
        let text = read("cluster_nats_credentials", path)?;
        let text = String::from_utf8_lossy(&text);
        options = options
            .credentials(&text)
            .map_err(|e| file_error("cluster_nats_credentials", path, &e.to_string()))?;
    }
    Ok(options)
}

/// Checks that the file of `directive` holds at least one PEM certificate.
fn certificates(directive: &'static str, path: &Path) -> Result<(), ClusterError> {
    let pem = read(directive, path)?;
    if rustls_pemfile::certs(&mut pem.as_slice()).any(|c| c.is_ok()) {
        Ok(())
    } else {
        Err(file_error(directive, path, "no PEM certificate in it"))
    }
}

fn read(directive: &'static str, path: &Path) -> Result<Vec<u8>, ClusterError> {
    use std::io::Read;
    let file = std::fs::File::open(path).map_err(|e| file_error(directive, path, &e.to_string()))?;
    let mut bytes = Vec::new();
    file.take(MAX_FILE + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| file_error(directive, path, &e.to_string()))?;
    if bytes.len() as u64 > MAX_FILE {
        return Err(file_error(directive, path, "larger than 1 MiB"));
    }
    Ok(bytes)
}

fn file_error(directive: &'static str, path: &Path, why: &str) -> ClusterError {
    ClusterError::File {
        directive,
        path: path.display().to_string(),
        why: why.to_string(),
    }
}
