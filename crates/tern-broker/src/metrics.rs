//! Broker-wide counters behind $SYS and the logs.
//!
//! Connection tasks count locally and add their counts here once per loop turn, so the
//! shared cache lines are touched once per batch of packets, not once per message.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Monotonic counters and gauges, all relaxed atomics.
#[derive(Debug, Default)]
pub struct Metrics {
    pub messages_received: AtomicU64,
    pub messages_sent: AtomicU64,
    pub bytes_received: AtomicU64,
    pub bytes_sent: AtomicU64,
    /// Messages dropped because a session's queue was full.
    pub messages_dropped: AtomicU64,
    /// QoS 1/2 publishes refused because the store could not write (sync mode).
    pub publishes_refused: AtomicU64,
    pub clients_connected: AtomicU64,
    pub clients_maximum: AtomicU64,
    /// Sockets accepted since start.
    pub connections_total: AtomicU64,
}

/// Counts of one connection not yet added to [`Metrics`].
#[derive(Debug, Default)]
pub struct LocalCounters {
    pub messages_received: u64,
    pub messages_sent: u64,
    pub bytes_received: u64,
    pub bytes_sent: u64,
}

impl Metrics {
    /// Adds and resets `local`.
    pub fn flush(&self, local: &mut LocalCounters) {
        let l = std::mem::take(local);
        for (counter, value) in [
            (&self.messages_received, l.messages_received),
            (&self.messages_sent, l.messages_sent),
            (&self.bytes_received, l.bytes_received),
            (&self.bytes_sent, l.bytes_sent),
        ] {
            if value != 0 {
                counter.fetch_add(value, Relaxed);
            }
        }
    }

    pub fn client_connected(&self) {
        let now = self.clients_connected.fetch_add(1, Relaxed) + 1;
        self.clients_maximum.fetch_max(now, Relaxed);
    }

    pub fn client_disconnected(&self) {
        self.clients_connected.fetch_sub(1, Relaxed);
    }

    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Relaxed)
    }
}
