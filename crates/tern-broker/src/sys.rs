//! `$SYS/broker/...`: the broker's own statistics under mosquitto's topic names, published
//! as retained messages every `sys_interval` seconds (only the values that changed), and
//! the housekeeping that runs on the same clock: delayed wills that fall due, and expiry
//! of offline sessions.

use crate::broker::BrokerState;
use crate::metrics::Metrics;
use crate::session::{Due, Session, SessionId};
use bytes::Bytes;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tern_proto::{ByteStr, Properties, Publish, QoS};
use tokio::task::JoinHandle;

/// Starts the $SYS and housekeeping task.
pub(crate) fn spawn(state: Arc<BrokerState>) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut sys = SysState::default();
        let mut next_sys = Instant::now();
        let mut ticks: u64 = 0;
        let mut clock_offset = crate::clock::offset();
        crate::clock::listen_for_tests();
        loop {
            let interval = state.config().sys_interval;
            if interval > 0 && Instant::now() >= next_sys {
                sys.publish(&state, interval);
                next_sys = Instant::now() + Duration::from_secs(interval);
            }
            let now = crate::clock::now();
            run_due(&state, now);
            state.router.purge_expired_retained(now);
            if crate::clock::offset() != clock_offset {
                clock_offset = crate::clock::offset();
                tracing::info!(
                    "test clock advanced to +{} s: due work done",
                    clock_offset.as_secs_f64()
                );
            }
            check_memory_limit(state.config().memory_limit);
            ticks += 1;
            if ticks % TRIM_EVERY_TICKS == 0 {
                release_free_memory();
            }
            tokio::select! {
                () = state.shutdown.cancelled() => return,
                () = tokio::time::sleep(Duration::from_secs(1)) => {}
                () = crate::clock::ADVANCED.notified() => {}
            }
        }
    })
}

/// Whether the heap was above memory_limit at the last check (the heap is the process's,
/// so this is too).
static OVER_MEMORY_LIMIT: AtomicBool = AtomicBool::new(false);

/// Whether the broker is above its memory_limit: incoming messages are dropped (their
/// publisher disconnected) and new clients refused, as by mosquitto.
pub(crate) fn over_memory_limit() -> bool {
    OVER_MEMORY_LIMIT.load(Relaxed)
}

/// Compares the heap in use with mosquitto's memory_limit (0: none), once a second.
fn check_memory_limit(limit: usize) {
    let used = if limit == 0 { None } else { heap_in_use() };
    let over = used.is_some_and(|used| used > limit);
    if OVER_MEMORY_LIMIT.swap(over, Relaxed) != over {
        match used {
            Some(used) if over => tracing::warn!(
                "heap in use {used} bytes is above memory_limit {limit}: incoming messages are dropped and new clients refused"
            ),
            _ => tracing::info!("memory_limit no longer exceeded: messages and new clients are accepted again"),
        }
    }
}

/// Bytes the allocator has handed out and not had back (glibc: in use in the arenas
/// plus mmapped blocks).
fn heap_in_use() -> Option<usize> {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: mallinfo2 only reads the allocator's statistics; it has no
        // preconditions and may be called from any thread at any time.
        let info = unsafe { libc::mallinfo2() };
        Some(info.uordblks.saturating_add(info.hblkhd))
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    None
}

/// Seconds between returns of freed memory to the system.
const TRIM_EVERY_TICKS: u64 = 5;

/// Gives memory freed after a burst (queues drained, buffers released) back to the
/// system: glibc's allocator keeps freed pages of its per-thread arenas otherwise, so a
/// broker's resident size would stay at its peak.
pub(crate) fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks the allocator's own free lists; it has no
    // preconditions and may be called from any thread at any time.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Exponentially weighted moving averages per minute, as mosquitto's load figures.
#[derive(Default)]
struct Load {
    last: u64,
    averages: [f64; 3],
}

impl Load {
    fn update(&mut self, total: u64, interval: f64) -> [f64; 3] {
        let per_minute = (total.saturating_sub(self.last)) as f64 * 60.0 / interval;
        self.last = total;
        for (average, minutes) in self.averages.iter_mut().zip([1.0, 5.0, 15.0]) {
            let factor = (-interval / (minutes * 60.0)).exp();
            *average = per_minute + factor * (*average - per_minute);
        }
        self.averages
    }
}

#[derive(Default)]
struct SysState {
    /// Last value published per topic: only changes are published again.
    published: HashMap<String, String>,
    loads: HashMap<&'static str, Load>,
}

impl SysState {
    fn publish(&mut self, state: &BrokerState, interval: u64) {
        let m = &state.metrics;
        let connected = Metrics::get(&m.clients_connected);
        let total = state.sessions.len() as u64;
        let mut values: Vec<(String, String)> = vec![
            ("version".into(), format!("tern version {}", env!("CARGO_PKG_VERSION"))),
            (
                "uptime".into(),
                format!("{} seconds", state.started.elapsed().as_secs()),
            ),
            ("clients/connected".into(), connected.to_string()),
            ("clients/active".into(), connected.to_string()),
            (
                "clients/disconnected".into(),
                total.saturating_sub(connected).to_string(),
            ),
            ("clients/total".into(), total.to_string()),
            ("clients/maximum".into(), Metrics::get(&m.clients_maximum).to_string()),
            (
                "messages/received".into(),
                Metrics::get(&m.messages_received).to_string(),
            ),
            ("messages/sent".into(), Metrics::get(&m.messages_sent).to_string()),
            (
                // mosquitto's meaning: messages a full queue refused.
                "publish/messages/dropped".into(),
                m.dropped.get(crate::metrics::DropReason::QueueFull).to_string(),
            ),
            ("bytes/received".into(), Metrics::get(&m.bytes_received).to_string()),
            ("bytes/sent".into(), Metrics::get(&m.bytes_sent).to_string()),
            (
                "subscriptions/count".into(),
                state.router.subscription_count().to_string(),
            ),
            (
                "retained messages/count".into(),
                state.router.retained_count().to_string(),
            ),
        ];
        if let Some(store) = &state.store {
            values.push(("store/write failures".into(), store.write_failures().to_string()));
            values.push(("store/writable".into(), u8::from(store.is_writable()).to_string()));
            values.push((
                "publish/messages/refused".into(),
                Metrics::get(&m.publishes_refused).to_string(),
            ));
        }
        if let Some(view) = state.router.cluster().and_then(|c| c.view()) {
            cluster_values(&view, &mut values);
        }
        for (name, counter) in [
            ("messages/received", &m.messages_received),
            ("messages/sent", &m.messages_sent),
            ("bytes/received", &m.bytes_received),
            ("bytes/sent", &m.bytes_sent),
            ("connections", &m.connections_total),
        ] {
            let averages = self
                .loads
                .entry(name)
                .or_default()
                .update(Metrics::get(counter), interval as f64);
            for (average, period) in averages.iter().zip(["1min", "5min", "15min"]) {
                values.push((format!("load/{name}/{period}"), format!("{average:.2}")));
            }
        }
        for (name, value) in values {
            if self.published.get(&name) == Some(&value) {
                continue;
            }
            let publish = Publish {
                dup: false,
                qos: QoS::AtMostOnce,
                retain: true,
                topic: ByteStr::from(format!("$SYS/broker/{name}")),
                packet_id: 0,
                properties: Properties::default(),
                payload: Bytes::from(value.clone().into_bytes()),
            };
            state.router.retain(&publish);
            state.router.publish(&publish, None, &state.metrics);
            self.published.insert(name, value);
        }
    }
}

/// `$SYS/broker/cluster/...`: this node's name, how many nodes it knows and how many are
/// healthy, and each node's health and figures as of its last heartbeat.
fn cluster_values(view: &crate::cluster::ClusterView, values: &mut Vec<(String, String)>) {
    let healthy = view.nodes.iter().filter(|n| n.healthy).count();
    values.push(("cluster/node".into(), view.node.clone()));
    values.push(("cluster/nodes".into(), view.nodes.len().to_string()));
    values.push(("cluster/nodes/healthy".into(), healthy.to_string()));
    for node in &view.nodes {
        let name = &node.name;
        values.push((
            format!("cluster/node/{name}/healthy"),
            u8::from(node.healthy).to_string(),
        ));
        values.push((format!("cluster/node/{name}/clients"), node.clients.to_string()));
        values.push((
            format!("cluster/node/{name}/messages/received"),
            node.messages_in.to_string(),
        ));
        values.push((
            format!("cluster/node/{name}/messages/sent"),
            node.messages_out.to_string(),
        ));
    }
}

/// Does the sessions' timed work that has fallen due: expiry of offline sessions,
/// delayed wills, expired queued messages. Each entry is checked against the session as it
/// is now (an entry whose session came back online, was replaced or rescheduled is stale).
fn run_due(state: &BrokerState, now: Instant) {
    for (due, client_id, id) in state.sessions.take_due(now) {
        match due {
            Due::Expiry => expire_session(state, &client_id, id, now),
            Due::Will => {
                let Some(session) = state.sessions.current(&client_id, id) else {
                    continue;
                };
                let will = {
                    let mut st = session.state.lock();
                    let is_due = st.pending_will.as_ref().is_some_and(|p| p.due <= now);
                    if is_due {
                        st.pending_will.take()
                    } else {
                        None
                    }
                };
                if let Some(pending) = will {
                    state.publish_delayed_will(pending.will, &session);
                }
            }
            Due::MessageExpiry => {
                if let Some(session) = state.sessions.current(&client_id, id) {
                    purge_expired_messages(&session, now, &state.metrics);
                }
            }
        }
    }
}

/// Ends session `id` of `client_id` if it is still offline past its expiry.
fn expire_session(state: &BrokerState, client_id: &ByteStr, id: SessionId, now: Instant) {
    let expired = state.sessions.with(|map| {
        let session = map.get(client_id).filter(|s| s.id == id)?.clone();
        let mut st = session.state.lock();
        st.expiry_check_at = None;
        let ends_at = st.disconnected_at.zip(st.expiry).and_then(|(t, e)| t.checked_add(e));
        let is_due = st.connection.is_none() && ends_at.is_some_and(|at| at <= now);
        if !is_due {
            // Back online since (scheduled again when it leaves), or offline again later.
            session.schedule_expiry(&mut st);
        }
        drop(st);
        if is_due {
            map.remove(client_id);
        }
        is_due.then_some(session)
    });
    if let Some(session) = expired {
        tracing::info!(client = %session.client_id, "persistent session expired");
        state.end_session(&session);
    }
}

/// Drops the messages of `session`'s queue whose Message Expiry Interval has passed, and
/// schedules the next purge for the earliest one left.
fn purge_expired_messages(session: &Session, now: Instant, metrics: &Metrics) {
    let mut gone = Vec::new();
    let mut next: Option<Instant> = None;
    {
        let mut st = session.state.lock();
        st.outbox.drop_queued(|d| {
            let expired = d.expires_at.is_some_and(|at| at <= now);
            if expired {
                metrics.dropped_for(crate::metrics::DropReason::Expired, &session.client_id);
            }
            if expired && d.seq != 0 {
                gone.push(d.seq);
            }
            if let Some(at) = d.expires_at.filter(|_| !expired) {
                next = Some(next.map_or(at, |n| n.min(at)));
            }
            expired
        });
        st.purge_at = None;
        if let Some(at) = next {
            session.schedule_purge(&mut st, at);
        }
    }
    for seq in gone {
        session.forget_message(seq);
    }
}
