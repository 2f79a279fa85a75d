//! Sessions: the state the broker keeps for a client identifier, across connections when
//! the session is persistent, and the registry that maps identifiers to sessions.
//!
//! A [`Session`] is shared between the connection task that serves it (its one reader and
//! writer) and every publisher that delivers to it. Publishers only append to its outbox
//! under a short synchronous lock and wake the connection task; the connection task owns
//! all writing to the socket.

use crate::metrics::Metrics;
use crate::security::ClientAccess;
use crate::store::Store;
use bytes::BytesMut;
use parking_lot::Mutex;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tern_core::{Deadlines, Outbox, OutboxLimits};
use tern_proto::{decode, ByteStr, Packet, ProtocolVersion, Publish, PublishFrame, QoS, SubscriptionOptions, Will};
use tokio::sync::oneshot;

/// Identifies one session object (a client id may have several over time).
pub type SessionId = u64;

/// Marks a delivery's `seq` as a message the cluster engine fed (the rest is its
/// number there), acknowledged to the engine rather than to the store.
pub const CLUSTER_SEQ: u64 = 1 << 63;

/// What falls due for a session at a time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Due {
    /// The offline session may have outlived its expiry interval.
    Expiry,
    /// A delayed will may be due.
    Will,
    /// A queued message may have passed its Message Expiry Interval.
    MessageExpiry,
}

/// Every session's timed work, in the order it falls due (shared by the registry and its
/// sessions); stale entries are checked and dropped when they come up.
pub type SessionDeadlines = Mutex<Deadlines<(Due, ByteStr, SessionId)>>;

/// One message on its way to one session: a PUBLISH encoded once and shared.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub frame: PublishFrame,
    /// Whether `frame` was encoded for MQTT 5.0 (else 3.1 / 3.1.1, which are identical).
    pub v5: bool,
    /// When the message expires (5.0 Message Expiry Interval): not sent after that.
    pub expires_at: Option<Instant>,
    /// The shared subscription (`$share/{group}/{filter}`) it came through, so that it
    /// can go to another member if this one leaves before acknowledging it.
    pub shared: Option<ByteStr>,
    /// Its number in the session's stored messages; 0 when it is not stored.
    pub seq: u64,
}

/// Where a delivery stands against its Message Expiry Interval.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expiry {
    Never,
    Expired,
    /// Whole seconds left, rounded up.
    Remaining(u32),
}

impl Delivery {
    /// Where this delivery stands against its expiry at `now`.
    pub fn expiry(&self, now: Instant) -> Expiry {
        match self.expires_at {
            None => Expiry::Never,
            Some(at) if at <= now => Expiry::Expired,
            Some(at) => {
                let left = at - now;
                let seconds = left.as_secs() + u64::from(left.subsec_nanos() > 0);
                Expiry::Remaining(u32::try_from(seconds).unwrap_or(u32::MAX))
            }
        }
    }

    /// The frame for a connection speaking 5.0 (`v5`) or not; re-encoded only in the rare
    /// case that a session resumes under another protocol version than it was queued for.
    pub fn frame_for(&self, v5: bool) -> Option<PublishFrame> {
        if self.v5 == v5 {
            return Some(self.frame.clone());
        }
        let to = if v5 {
            ProtocolVersion::V5
        } else {
            ProtocolVersion::V3_1_1
        };
        PublishFrame::new(&self.publish()?, to).ok()
    }

    /// The message decoded back from its frame (to encode it for another receiver).
    pub fn publish(&self) -> Option<Publish> {
        let version = if self.v5 {
            ProtocolVersion::V5
        } else {
            ProtocolVersion::V3_1_1
        };
        // The frame's packet id is a placeholder (0), which the decoder rightly refuses for
        // QoS 1 and 2: write it with a real one.
        let mut buf = BytesMut::with_capacity(self.frame.len());
        self.frame.write(&mut buf, 1, false);
        match decode(&mut buf, version, usize::MAX) {
            Ok(Some(Packet::Publish(p))) => Some(p),
            _ => None,
        }
    }
}

/// Asks the connection serving a session to close for a newcomer with the same client id;
/// it answers on the inner sender once it has published its will and detached.
pub type TakeOver = oneshot::Sender<oneshot::Sender<()>>;

/// The connection currently serving a session.
#[derive(Debug)]
pub struct ConnectionHandle {
    /// Distinguishes this connection from later ones of the same session.
    pub generation: u64,
    /// Taken by the one newcomer that asks this connection to close.
    pub takeover: Option<TakeOver>,
    /// Who is connected and its traffic, for the admin facade.
    pub info: Arc<crate::admin::ConnectionInfo>,
}

/// The mutable part of a session.
#[derive(Debug)]
pub struct SessionState {
    pub outbox: Outbox<Delivery>,
    /// The serving connection; `None` while the client is offline.
    pub connection: Option<ConnectionHandle>,
    /// The session's subscriptions with their identifiers, to remove them from the
    /// router when it ends and to store them.
    pub subscriptions: HashMap<ByteStr, (SubscriptionOptions, Option<u32>)>,
    /// QoS 2 packet ids received and not yet released: a resent PUBLISH with one of these
    /// is acknowledged again but not forwarded again (exactly once).
    pub incoming_qos2: HashSet<u16>,
    /// Whether the session ends when its connection does (Clean Session).
    pub clean: bool,
    /// When the client went offline, for expiry.
    pub disconnected_at: Option<Instant>,
    /// How long the session outlives its connection: the 5.0 Session Expiry Interval, or
    /// persistent_client_expiration for 3.x; `None` is forever.
    pub expiry: Option<Duration>,
    /// A will held back by its Will Delay Interval (5.0): published when due or when the
    /// session ends, dropped if the client reconnects first.
    pub pending_will: Option<Box<PendingWill>>,
    /// The ACL the client is under, if its listener has one: deliveries are checked
    /// against it (the client's read access) before they are queued.
    pub access: Option<Box<ClientAccess>>,
    /// A listener policy's check of each delivery to the session (`policy.rs`).
    pub receive_policy: Option<Arc<dyn crate::policy::DeliveryFilter>>,
    /// The last sequence number given to a stored message.
    pub next_seq: u64,
    /// Whether the store holds a record of this session.
    pub stored: bool,
    /// The user name (or certificate identity) the session belongs to: a client of
    /// another identity connecting with the same client id never resumes it.
    pub owner: Option<Box<str>>,
    /// The earliest message expiry a purge is scheduled for, so that a queue of expiring
    /// messages costs one scheduled purge, not one per message.
    pub purge_at: Option<Instant>,
    /// When the scheduled expiry check comes up, so that a client that connects and
    /// leaves again and again keeps one entry, not one per disconnect.
    pub expiry_check_at: Option<Instant>,
}

/// A will waiting for its delay to pass.
#[derive(Debug)]
pub struct PendingWill {
    pub will: Will,
    pub due: Instant,
}

/// The broker's state for one client identifier.
#[derive(Debug)]
pub struct Session {
    pub id: SessionId,
    pub client_id: ByteStr,
    /// Whether the serving connection speaks 5.0: publishers read it without locking to
    /// pick the matching pre-encoded frame.
    v5: AtomicBool,
    pub state: Mutex<SessionState>,
    /// Wakes the serving connection task when deliveries are queued.
    pub wake: crate::wake::Wake,
    /// The durable store, when persistence is on.
    pub store: Option<Arc<Store>>,
    /// Where the session's timed work is scheduled.
    deadlines: Arc<SessionDeadlines>,
    /// The cluster engine, once it feeds this session's QoS 1/2 messages (a persistent
    /// session on a node of a cluster): the router then leaves them to it.
    pub cluster_feed: std::sync::OnceLock<Arc<dyn crate::cluster::ClusterLink>>,
    /// The cluster engine, once it handed this session a shared group's QoS 1/2 message
    /// (`Router::publish_to_group_fed`): such messages are acknowledged to it.
    pub cluster_acks: std::sync::OnceLock<Arc<dyn crate::cluster::ClusterLink>>,
}

impl Session {
    /// Whether some of this session's QoS 1/2 messages come from the cluster engine (and
    /// are acknowledged to it): its own feed, or a shared group's.
    pub fn cluster_fed(&self) -> bool {
        self.cluster_feed.get().is_some() || self.cluster_acks.get().is_some()
    }

    /// Whether the cluster engine feeds this session's own (not shared) QoS 1/2 messages.
    pub fn session_fed(&self) -> bool {
        self.cluster_feed.get().is_some()
    }

    pub fn is_v5(&self) -> bool {
        self.v5.load(Relaxed)
    }

    pub fn set_v5(&self, v5: bool) {
        self.v5.store(v5, Relaxed);
    }

    /// Schedules `due` for `at`.
    pub fn schedule(&self, at: Instant, due: Due) {
        self.deadlines
            .lock()
            .schedule(at, (due, self.client_id.clone(), self.id));
    }

    /// Schedules the session's expiry if it is offline with an expiry interval (it went
    /// offline, or was restored so).
    pub fn schedule_expiry(&self, state: &mut SessionState) {
        if state.connection.is_some() {
            return;
        }
        let at = state
            .disconnected_at
            .zip(state.expiry)
            .and_then(|(t, e)| t.checked_add(e));
        if let Some(at) = at {
            // A later check than one already scheduled is made by that one, which
            // schedules again when it finds the session not yet due.
            if state.expiry_check_at.is_none_or(|scheduled| at < scheduled) {
                state.expiry_check_at = Some(at);
                self.schedule(at, Due::Expiry);
            }
        }
    }

    /// Schedules a purge of the queue for a message expiring at `at`, unless one is due
    /// sooner already.
    pub fn schedule_purge(&self, state: &mut SessionState, at: Instant) {
        if state.purge_at.is_none_or(|p| at < p) {
            state.purge_at = Some(at);
            self.schedule(at, Due::MessageExpiry);
        }
    }

    /// Whether a connection serves the session now.
    pub fn is_online(&self) -> bool {
        self.state.lock().connection.is_some()
    }

    /// Queues `delivery` for this session and wakes its connection. QoS 0 messages for an
    /// offline client are dropped (mosquitto's default) unless `keep_qos0`
    /// (queue_qos0_messages); a full queue drops the message and counts it. Returns
    /// whether the message was queued.
    pub fn deliver(
        &self,
        mut delivery: Delivery,
        topic: &str,
        (qos, keep_qos0): (QoS, bool),
        payload_len: usize,
        metrics: &Metrics,
    ) -> bool {
        let mut state = self.state.lock();
        if state.connection.is_none() && qos == QoS::AtMostOnce && !keep_qos0 {
            return false;
        }
        if let Some(access) = &state.access {
            if !access.may_read(&self.client_id, topic) {
                return false;
            }
        }
        if state.receive_policy.as_ref().is_some_and(|p| !p.may_receive(topic)) {
            return false;
        }
        // Wake the connection only when the queue goes from empty to not: while it is not
        // empty the connection is draining it, or waiting for socket space or for acks,
        // each of which brings it back to the queue. One wake per burst, not per message.
        let was_empty = state.outbox.queued() == 0;
        if !state.outbox.has_room(payload_len) {
            drop(state);
            let dropped = metrics.dropped_for(crate::metrics::DropReason::QueueFull, &self.client_id);
            if dropped.is_power_of_two() {
                tracing::warn!(client = %self.client_id, "queue full: message dropped ({} dropped in total)", dropped + 1);
            }
            return false;
        }
        self.persist_new(&mut state, &mut delivery, qos);
        if let Some(at) = delivery.expires_at {
            self.schedule_purge(&mut state, at);
        }
        let _ = state.outbox.push(delivery, qos, payload_len);
        drop(state);
        if was_empty {
            self.wake.notify_one();
        }
        true
    }
}

impl Sessions {
    /// An empty registry whose sessions write to `store`.
    pub fn with_store(store: Option<Arc<Store>>) -> Sessions {
        Sessions {
            store,
            ..Sessions::default()
        }
    }

    /// Registers a session restored from the store.
    pub fn insert(&self, session: Arc<Session>) {
        self.map.lock().insert(session.client_id.clone(), session);
    }
}

/// All sessions by client identifier.
#[derive(Debug, Default)]
pub struct Sessions {
    map: Mutex<HashMap<ByteStr, Arc<Session>>>,
    next_id: AtomicU64,
    /// Given to every session created, when persistence is on.
    pub store: Option<Arc<Store>>,
    /// Every session's timed work.
    deadlines: Arc<SessionDeadlines>,
}

impl Sessions {
    /// Runs `f` with the registry locked. Only the CONNECT path and housekeeping take
    /// this lock, never the publish path.
    pub fn with<R>(&self, f: impl FnOnce(&mut HashMap<ByteStr, Arc<Session>>) -> R) -> R {
        f(&mut self.map.lock())
    }

    /// A new, empty session for `client_id` (not yet registered).
    pub fn create(&self, client_id: ByteStr, limits: OutboxLimits, clean: bool) -> Arc<Session> {
        Arc::new(Session {
            id: self.next_id.fetch_add(1, Relaxed) + 1,
            client_id,
            v5: AtomicBool::new(false),
            state: Mutex::new(SessionState {
                outbox: Outbox::new(limits),
                connection: None,
                subscriptions: HashMap::new(),
                incoming_qos2: HashSet::new(),
                clean,
                disconnected_at: None,
                expiry: None,
                pending_will: None,
                access: None,
                receive_policy: None,
                next_seq: 0,
                stored: false,
                owner: None,
                purge_at: None,
                expiry_check_at: None,
            }),
            wake: crate::wake::Wake::new(),
            store: self.store.clone(),
            deadlines: self.deadlines.clone(),
            cluster_feed: std::sync::OnceLock::new(),
            cluster_acks: std::sync::OnceLock::new(),
        })
    }

    /// Takes the timed work due at `now`.
    pub fn take_due(&self, now: Instant) -> Vec<(Due, ByteStr, SessionId)> {
        self.deadlines.lock().take_due(now)
    }

    /// The session registered under `client_id` if it is still session `id`.
    pub fn current(&self, client_id: &ByteStr, id: SessionId) -> Option<Arc<Session>> {
        self.map.lock().get(client_id).filter(|s| s.id == id).cloned()
    }

    /// Number of sessions, online and offline.
    pub fn len(&self) -> usize {
        self.map.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
