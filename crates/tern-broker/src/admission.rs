//! Admission of new sockets, before a byte is read: each listener's `max_connections` and
//! the per-source-address `max_connection_rate`. A refused socket is closed at once (as
//! mosquitto does: the protocol version, and so the CONNACK format, is not known yet).

use parking_lot::Mutex;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Counts the connections of one listener.
#[derive(Debug, Default)]
pub struct ListenerGate {
    open: Arc<AtomicUsize>,
    /// New connections per source address in the current one-second window.
    recent: Mutex<HashMap<IpAddr, (Instant, u32)>>,
}

/// One admitted connection; the listener's count drops when it is dropped.
#[derive(Debug)]
pub struct Slot(Arc<AtomicUsize>);

impl Slot {
    /// A slot outside any listener (a stream handed in by an embedder).
    pub fn unlisted() -> Slot {
        let open = Arc::new(AtomicUsize::new(1));
        Slot(open)
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Relaxed);
    }
}

/// Why a socket was not admitted.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    TooManyConnections(usize),
    TooFast(u32),
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::TooManyConnections(n) => write!(f, "max_connections ({n}) reached"),
            Refusal::TooFast(n) => write!(f, "more than max_connection_rate ({n}/s) from this address"),
        }
    }
}

impl ListenerGate {
    /// Admits a socket from `peer`, or says why not.
    pub fn admit(&self, peer: IpAddr, max_connections: Option<usize>, max_rate: u32) -> Result<Slot, Refusal> {
        if max_rate > 0 {
            let now = Instant::now();
            let mut recent = self.recent.lock();
            if recent.len() > 10_000 {
                recent.retain(|_, (start, _)| now - *start < Duration::from_secs(1));
            }
            let entry = recent.entry(peer).or_insert((now, 0));
            if now - entry.0 >= Duration::from_secs(1) {
                *entry = (now, 0);
            }
            entry.1 += 1;
            if entry.1 > max_rate {
                return Err(Refusal::TooFast(max_rate));
            }
        }
        let before = self.open.fetch_add(1, Relaxed);
        let slot = Slot(self.open.clone());
        match max_connections {
            Some(max) if before >= max => Err(Refusal::TooManyConnections(max)),
            _ => Ok(slot),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_are_counted_and_released() {
        let gate = ListenerGate::default();
        let ip: IpAddr = [127, 0, 0, 1].into();
        let a = gate.admit(ip, Some(2), 0).unwrap();
        let _b = gate.admit(ip, Some(2), 0).unwrap();
        assert_eq!(gate.admit(ip, Some(2), 0).unwrap_err(), Refusal::TooManyConnections(2));
        drop(a);
        assert!(gate.admit(ip, Some(2), 0).is_ok());
    }

    #[test]
    fn the_rate_is_per_address_and_second() {
        let gate = ListenerGate::default();
        let (one, two): (IpAddr, IpAddr) = ([10, 0, 0, 1].into(), [10, 0, 0, 2].into());
        let _s: Vec<Slot> = (0..3).map(|_| gate.admit(one, None, 3).unwrap()).collect();
        assert_eq!(gate.admit(one, None, 3).unwrap_err(), Refusal::TooFast(3));
        assert!(gate.admit(two, None, 3).is_ok());
    }
}
