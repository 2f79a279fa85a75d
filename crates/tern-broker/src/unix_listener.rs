//! mosquitto's Unix socket listener: `listener 0 /path/to/socket` accepts MQTT over a Unix
//! stream socket (local clients, containers sharing a volume), with the same connection
//! tasks, limits and security settings as a TCP listener of the same place in the
//! configuration. A socket file left behind by a broker that did not stop cleanly is
//! replaced; the broker removes its socket file when it stops.

use crate::admission::ListenerGate;
use crate::broker::BrokerState;
use crate::connection;
use crate::connection::transport::Socket;
use anyhow::{Context, Result};
use std::net::SocketAddr;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::UnixListener;
use tokio_util::task::TaskTracker;

/// A bound Unix socket listener and its file.
#[derive(Debug)]
pub(crate) struct UnixEndpoint {
    listener: UnixListener,
    path: PathBuf,
}

impl UnixEndpoint {
    /// Binds the socket file at `path`.
    pub(crate) fn bind(path: &Path) -> Result<UnixEndpoint> {
        let stale = std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_socket());
        if stale {
            let _ = std::fs::remove_file(path);
        }
        let std_listener = std::os::unix::net::UnixListener::bind(path)
            .with_context(|| format!("cannot listen on the Unix socket {}", path.display()))?;
        std_listener.set_nonblocking(true)?;
        let listener = UnixListener::from_std(std_listener)
            .with_context(|| format!("cannot listen on the Unix socket {}", path.display()))?;
        Ok(UnixEndpoint {
            listener,
            path: path.to_path_buf(),
        })
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for UnixEndpoint {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Accepts Unix stream connections for listener `index` until shutdown. Clients have no
/// address: they are logged as 127.0.0.1 port 0 and not rate-limited per address.
pub(crate) async fn accept_loop(index: usize, endpoint: UnixEndpoint, state: Arc<BrokerState>, tracker: TaskTracker) {
    let gate = ListenerGate::default();
    let local = SocketAddr::from(([127, 0, 0, 1], 0));
    loop {
        let accepted = tokio::select! {
            () = state.shutdown.cancelled() => return,
            accepted = endpoint.listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, _)) => {
                state.metrics.accepted(index);
                let max_connections = state.config().listeners.get(index).and_then(|l| l.max_connections);
                match gate.admit(local.ip(), max_connections, 0) {
                    Ok(slot) => {
                        let socket = Socket::unix(stream);
                        tracker.spawn(connection::serve(socket, local, state.clone(), (index, slot)));
                    }
                    Err(refusal) => tracing::warn!(path = %endpoint.path.display(), "connection refused: {refusal}"),
                }
            }
            Err(e) => {
                tracing::warn!("accept failed on {}: {e}", endpoint.path.display());
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}
