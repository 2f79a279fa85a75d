//! What the admin facade can see of a live connection: who it is, since when, and its
//! traffic. The connection task owns the counting (it adds its local counts here once per
//! loop turn, as it does to the broker-wide metrics); the facade only reads, and asks the
//! connection to close (a kick) through a flag and the session's wake-up.

use crate::metrics::LocalCounters;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering::Relaxed};
use tern_proto::ProtocolVersion;

/// One connection as the admin facade sees it; shared by the connection task and the
/// session's [`crate::session::ConnectionHandle`].
#[derive(Debug)]
pub struct ConnectionInfo {
    pub peer: SocketAddr,
    pub version: ProtocolVersion,
    /// The keepalive in force, in seconds (0: off).
    pub keep_alive: u16,
    /// When CONNACK was sent, in milliseconds since the Unix epoch.
    pub connected_at_ms: u64,
    /// The user the client authenticated as.
    pub user: Option<Box<str>>,
    /// The index of the listener that accepted it.
    pub listener: usize,
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
    messages_in: AtomicU64,
    messages_out: AtomicU64,
    /// Why the connection must close, if it must: 0 no, else a [`Kick`] as a number.
    kicked: AtomicU8,
}

/// Why a connection is asked to close from outside its task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kick {
    /// An administrator (DISCONNECT 0x98).
    Admin = 1,
    /// The client id connected to another node of the cluster (DISCONNECT 0x8E).
    TakenOverElsewhere = 2,
}

/// A connection's traffic so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Traffic {
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub messages_in: u64,
    pub messages_out: u64,
}

impl ConnectionInfo {
    pub fn new(
        peer: SocketAddr,
        version: ProtocolVersion,
        keep_alive: u16,
        user: Option<Box<str>>,
        listener: usize,
    ) -> ConnectionInfo {
        let connected_at_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        ConnectionInfo {
            peer,
            version,
            keep_alive,
            connected_at_ms,
            user,
            listener,
            bytes_in: AtomicU64::new(0),
            bytes_out: AtomicU64::new(0),
            messages_in: AtomicU64::new(0),
            messages_out: AtomicU64::new(0),
            kicked: AtomicU8::new(0),
        }
    }

    /// Adds a connection's local counts (before they are flushed into the metrics).
    pub fn count(&self, local: &LocalCounters) {
        for (counter, value) in [
            (&self.bytes_in, local.bytes_received),
            (&self.bytes_out, local.bytes_sent),
            (&self.messages_in, local.received.iter().sum()),
            (&self.messages_out, local.sent.iter().sum()),
        ] {
            if value != 0 {
                counter.fetch_add(value, Relaxed);
            }
        }
    }

    pub fn traffic(&self) -> Traffic {
        Traffic {
            bytes_in: self.bytes_in.load(Relaxed),
            bytes_out: self.bytes_out.load(Relaxed),
            messages_in: self.messages_in.load(Relaxed),
            messages_out: self.messages_out.load(Relaxed),
        }
    }

    /// Marks the connection for closing by an administrator; the caller wakes it.
    pub fn kick(&self) {
        self.kick_for(Kick::Admin);
    }

    /// Marks the connection for closing, for `why`; the caller wakes it.
    pub fn kick_for(&self, why: Kick) {
        self.kicked.store(why as u8, Relaxed);
    }

    /// Whether the connection was asked to close.
    pub fn is_kicked(&self) -> bool {
        self.kicked.load(Relaxed) != 0
    }

    /// Why the connection was asked to close, if it was.
    pub fn kicked(&self) -> Option<Kick> {
        match self.kicked.load(Relaxed) {
            0 => None,
            2 => Some(Kick::TakenOverElsewhere),
            _ => Some(Kick::Admin),
        }
    }
}
