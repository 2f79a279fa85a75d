//! The platform's quotas over MQTT: per organization, connections at once
//! (`maxConnections`) and new connections per second (`connectionsPerSecond`), checked
//! when a client has authenticated; per device connection, messages per second
//! (`deviceMessagesPerSecond`), as token buckets.
//!
//! Connections are counted exactly: an admitted client holds a [`ConnectionSlot`], owned
//! by its connection in the broker, and the count goes down when the connection ends and
//! drops it.

use crate::registry::Quotas;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;
use tern_broker::policy::{PolicyRefusal, RefusalKind};

/// A token bucket: `per_second` events a second, in bursts of up to a second's worth.
#[derive(Debug)]
pub struct RateLimit {
    per_second: f64,
    tokens: f64,
    pub(crate) at: Instant,
}

impl RateLimit {
    /// A full bucket; `None` for 0 (no limit).
    pub fn per_second(per_second: u32) -> Option<RateLimit> {
        (per_second > 0).then(|| RateLimit {
            per_second: f64::from(per_second),
            tokens: f64::from(per_second),
            at: Instant::now(),
        })
    }

    /// Takes one event's token at `now`; false when there is none.
    pub fn take(&mut self, now: Instant) -> bool {
        let refill = now.saturating_duration_since(self.at).as_secs_f64() * self.per_second;
        self.tokens = (self.tokens + refill).min(self.per_second.max(1.0));
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// The organizations' live connection counts and connection rates.
#[derive(Debug, Default)]
pub struct OrgQuotas {
    connected: Mutex<HashMap<String, usize>>,
    rates: Mutex<HashMap<String, RateLimit>>,
}

impl OrgQuotas {
    /// Admits one more connection of `org` under `quotas` (0 is no limit), or says which
    /// quota is full.
    pub fn admit(self: &Arc<Self>, org: &str, quotas: &Quotas) -> Result<ConnectionSlot, PolicyRefusal> {
        let per_second = quotas.connections_per_second;
        if per_second > 0 {
            let mut rates = self.rates.lock();
            let limit = rates.entry(org.to_string()).or_insert_with(|| RateLimit {
                per_second: f64::from(per_second),
                tokens: f64::from(per_second),
                at: Instant::now(),
            });
            // A changed quota takes effect at once.
            limit.per_second = f64::from(per_second);
            if !limit.take(Instant::now()) {
                return Err(PolicyRefusal {
                    kind: RefusalKind::ConnectionRate,
                    why: format!("organization {org:?} takes {per_second} new connections a second"),
                });
            }
        }
        let mut connected = self.connected.lock();
        let count = connected.entry(org.to_string()).or_default();
        let max = quotas.max_connections as usize;
        if max > 0 && *count >= max {
            return Err(PolicyRefusal {
                kind: RefusalKind::QuotaExceeded,
                why: format!("organization {org:?} has its {max} connections"),
            });
        }
        *count += 1;
        Ok(ConnectionSlot {
            org: org.to_string(),
            quotas: self.clone(),
        })
    }

    /// The connections of `org` at the moment.
    pub fn connected(&self, org: &str) -> usize {
        self.connected.lock().get(org).copied().unwrap_or(0)
    }
}

/// One admitted connection of an organization; counted until dropped.
#[derive(Debug)]
pub struct ConnectionSlot {
    org: String,
    quotas: Arc<OrgQuotas>,
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        let mut connected = self.quotas.connected.lock();
        if let Some(count) = connected.get_mut(&self.org) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                connected.remove(&self.org);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_rate_limit_allows_a_seconds_burst_then_its_rate() {
        let start = Instant::now();
        let mut limit = RateLimit::per_second(10).unwrap();
        limit.at = start;
        assert!((0..10).all(|_| limit.take(start)), "a burst of 10");
        assert!(!limit.take(start), "the 11th in the same instant");
        assert!(limit.take(start + Duration::from_millis(100)), "one more after 100 ms");
        assert!(!limit.take(start + Duration::from_millis(100)));
        // Idle time never banks more than a second's worth.
        let later = start + Duration::from_secs(60);
        assert_eq!((0..20).filter(|_| limit.take(later)).count(), 10);
        assert!(RateLimit::per_second(0).is_none());
    }

    #[test]
    fn connections_are_counted_until_their_slot_is_dropped() {
        let quotas = Arc::new(OrgQuotas::default());
        let limits = Quotas {
            max_connections: 2,
            connections_per_second: 0,
            ..Quotas::default()
        };
        let one = quotas.admit("acme", &limits).unwrap();
        let two = quotas.admit("acme", &limits).unwrap();
        let full = quotas.admit("acme", &limits).unwrap_err();
        assert_eq!(full.kind, RefusalKind::QuotaExceeded);
        assert!(quotas.admit("other", &limits).is_ok(), "another organization's count");
        drop(one);
        assert_eq!(quotas.connected("acme"), 1);
        let _three = quotas.admit("acme", &limits).unwrap();
        drop(two);
        assert_eq!(quotas.connected("acme"), 1);
        let unlimited = Quotas {
            max_connections: 0,
            connections_per_second: 0,
            ..Quotas::default()
        };
        let many: Vec<_> = (0..100).map(|_| quotas.admit("acme", &unlimited).unwrap()).collect();
        assert_eq!(quotas.connected("acme"), 101);
        drop(many);
        assert_eq!(quotas.connected("acme"), 1);
    }

    #[test]
    fn connections_beyond_the_rate_are_refused() {
        let quotas = Arc::new(OrgQuotas::default());
        let limits = Quotas {
            connections_per_second: 1,
            ..Quotas::default()
        };
        let _slot = quotas.admit("acme", &limits).unwrap();
        assert_eq!(
            quotas.admit("acme", &limits).unwrap_err().kind,
            RefusalKind::ConnectionRate
        );
        assert!(quotas.admit("other", &limits).is_ok(), "each organization its own rate");
    }
}
