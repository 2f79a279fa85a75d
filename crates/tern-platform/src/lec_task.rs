//! The last event cache's tasks ([`crate::lec`]): the consumer that takes device events
//! from the broker's event stream into the cache, and the flush task that writes changed
//! organizations every [`FLUSH_INTERVAL`] and sweeps expired entries.
//!
//! The consumer listens to the stream only while some organization has its cache
//! enabled, so a broker where none has costs publishers nothing (the stream builds no
//! event nobody wants). It looks again every second (an organization enabled with
//! `tern iot org set --lec true` is seen within about two), and at once when the REST
//! API enables a cache: that request subscribes to the stream itself before it answers
//! ([`Lec::listen_now`]) and hands the subscription over, so no message published after
//! the answer is missed.

use crate::lec::{event_of, now_ms, ttl_of, CachedEvent, Lec, FLUSH_INTERVAL};
use crate::registry::Registry;
use std::sync::Arc;
use std::time::Duration;
use tern_broker::events::Event;
use tern_broker::BrokerHandle;

/// How often expired entries are swept.
const SWEEP_INTERVAL: Duration = Duration::from_secs(60);
/// How often the consumer checks whether some organization has its cache enabled.
const RECHECK: Duration = Duration::from_secs(1);

impl Lec {
    /// Has the cache listen to the broker's messages from now on (an organization has just
    /// enabled it); a no-op before [`spawn`].
    pub fn listen_now(&self) {
        self.feed.listen_now();
    }
}

/// Whether some organization has its cache enabled.
fn wanted(registry: &Registry) -> bool {
    registry.orgs().iter().any(|org| ttl_of(registry, org).is_some())
}

/// Takes one published message into the cache if it is a device's event of an
/// organization whose cache is enabled.
fn take(registry: &Registry, lec: &Lec, event: Event) {
    let Event::Published { topic, payload, .. } = event else {
        return;
    };
    take_event(registry, lec, &topic, payload);
}

/// Whether some organization has its cache enabled (for a cluster's node, which then
/// follows the other nodes' device events).
pub fn wanted_by(registry: &Registry) -> bool {
    wanted(registry)
}

/// Takes message `payload` under internal topic `topic` into the cache if it is a
/// device's event of an organization whose cache is enabled (also for the events another
/// node of a cluster accepted).
pub fn take_event(registry: &Registry, lec: &Lec, topic: &str, payload: bytes::Bytes) {
    let Some([org, t, d, e, f]) = event_of(topic) else {
        return;
    };
    if ttl_of(registry, org).is_none() {
        return;
    }
    let cached = CachedEvent {
        type_id: t.to_string(),
        device_id: d.to_string(),
        event_id: e.to_string(),
        format: f.to_string(),
        payload,
        cached_ms: now_ms(),
    };
    lec.insert(org, cached);
}

/// Reads the cache's files, then starts the consumer (listening at once if some
/// organization has its cache enabled) and the flush task. Both stop with the broker; the
/// flush task writes once more then.
pub fn spawn(handle: &BrokerHandle, registry: Arc<Registry>, lec: Arc<Lec>) {
    for e in lec.load() {
        tracing::error!("last event cache: {e} (skipped)");
    }
    let state = handle.state().clone();
    lec.feed.attach(state.clone());
    let mut events = lec.feed.initial(wanted(&registry));
    let (consumer_registry, consumer_lec, stop) = (registry.clone(), lec.clone(), state.shutdown.clone());
    tokio::spawn(async move {
        let (registry, lec) = (consumer_registry, consumer_lec);
        let mut recheck = tokio::time::interval(RECHECK);
        recheck.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                () = lec.feed.woken() => {}
                _ = recheck.tick() => {}
                event = crate::feed::next(&mut events) => {
                    match event {
                        Some(event) => take(&registry, &lec, event),
                        None => return,
                    }
                    continue;
                }
            }
            lec.feed.follow(wanted(&registry), &mut events);
        }
    });
    let stop = handle.state().shutdown.clone();
    tokio::spawn(async move {
        let mut last_sweep = tokio::time::Instant::now();
        loop {
            let stopping = tokio::select! {
                () = stop.cancelled() => true,
                () = tokio::time::sleep(FLUSH_INTERVAL) => false,
            };
            if stopping || last_sweep.elapsed() >= SWEEP_INTERVAL {
                last_sweep = tokio::time::Instant::now();
                lec.sweep(|org| ttl_of(&registry, org));
            }
            let flushed = lec.clone();
            let write = move || match stopping {
                true => flushed.flush(),
                false => flushed.flush_due(),
            };
            if let Ok(errors) = tokio::task::spawn_blocking(write).await {
                for e in errors {
                    tracing::error!("last event cache not saved: {e}");
                }
            }
            if stopping {
                return;
            }
        }
    });
}
