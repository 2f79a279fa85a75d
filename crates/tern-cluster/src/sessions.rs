//! Persistent sessions across nodes: a session made on one node is resumed on whichever
//! node its client reconnects to, with its subscriptions and the QoS 1/2 messages kept for
//! it meanwhile, even if its node died.
//!
//! Each persistent session has a record in the `MQTT_SESSIONS` bucket
//! ([`crate::session_record`]) naming the node that holds it and the durable consumer on
//! the `MQTT_MSGS` stream that keeps its QoS 1/2 messages. The node that holds a session
//! feeds it from that consumer only ([`crate::feed`]): the router leaves its QoS 1/2
//! messages to the feed, and each message is acknowledged in JetStream once the client
//! has acknowledged it (PUBACK, PUBCOMP), so what a client has not acknowledged stays in
//! the consumer whatever becomes of the node.
//!
//! When a client connects, before CONNACK, the node reads the record. A session held by
//! another node (or by an earlier run of this one) is taken: a new consumer is made from
//! the old one's acknowledgement floor (every message the client had not acknowledged,
//! and perhaps a few it had: duplicates QoS 1 allows), the record is rewritten naming
//! this node and the new consumer with a compare-and-set on its revision (so of two nodes
//! taking one session at once, one wins and the other refuses its client, which tries
//! again), and the old consumer is deleted, which stops the old node's feed. The old
//! node drops its copy of the session when it sees the client's claim in `MQTT_SESS`
//! ([`crate::takeover`]). A clean start deletes the record and consumer. A session that
//! expires on its node deletes them; one whose node died expires with its consumer
//! (JetStream deletes a consumer left unread for the session expiry interval, plus a
//! minute).

use crate::feed::{Command, Feed};
use crate::link::Shared;
use crate::outbound::Ticket;
use crate::session_record::{consumer_subjects, Record};
use crate::subject;
use async_nats::jetstream::{self, consumer, kv, stream};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tern_broker::cluster::{Resume, SessionSnapshot};
use tern_broker::BrokerState;
use tokio::sync::mpsc;

/// The key-value bucket of persistent sessions.
pub const BUCKET: &str = "MQTT_SESSIONS";
/// How long a session whose client moved is waited for to go offline, to drop it.
const DROP_WAIT: Duration = Duration::from_secs(10);
/// Longest one JetStream request of a CONNECT waits.
const REQUEST_WAIT: Duration = Duration::from_secs(1);
/// How long a CONNECT tries again a lookup that failed (the handshake waits 5 s at most).
const RETRY_FOR: Duration = Duration::from_secs(3);

/// The bucket and stream, once JetStream answered.
pub struct Ready {
    pub bucket: kv::Store,
    pub stream: stream::Stream,
}

/// A session this node feeds.
struct FeedHandle {
    session: u64,
    /// When it was attached here (µs since 1970): a claim of the client id elsewhere
    /// after that means the client moved.
    attached_us: u64,
    commands: mpsc::UnboundedSender<Command>,
}

/// What [`Engine::resume`] took over, for the session attached next.
pub struct Taken {
    pub consumer: Option<String>,
    pub revision: u64,
    /// Stream sequences of the messages the old node handed over in flight (in the
    /// session already: not to be queued again when the consumer hands them out).
    pub handed: Vec<u64>,
    /// Stream sequences the client had finished on the old node lately.
    pub done: Vec<u64>,
}

/// The sessions part of the cluster engine.
pub struct Engine {
    pub shared: Arc<Shared>,
    pub state: Arc<BrokerState>,
    /// The node's NATS connection, for handover requests ([`crate::handover`]).
    nats: async_nats::Client,
    /// Which nodes are alive: a session whose node died expires by its interval.
    view: Arc<crate::view::Nodes>,
    pub ready: OnceLock<Ready>,
    feeds: Mutex<HashMap<String, FeedHandle>>,
    taken: Mutex<HashMap<String, Taken>>,
    consumers: AtomicU64,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("feeds", &self.feeds.lock().len())
            .finish()
    }
}

fn micros_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// Whether a JetStream error says the consumer does not exist.
pub fn not_found(e: &impl std::fmt::Display) -> bool {
    let text = e.to_string().to_ascii_lowercase();
    text.contains("not found") || text.contains("10014")
}

impl Engine {
    pub fn new(
        shared: Arc<Shared>,
        state: Arc<BrokerState>,
        nats: async_nats::Client,
        view: Arc<crate::view::Nodes>,
    ) -> Engine {
        Engine {
            shared,
            state,
            nats,
            view,
            ready: OnceLock::new(),
            feeds: Mutex::new(HashMap::new()),
            taken: Mutex::new(HashMap::new()),
            consumers: AtomicU64::new(0),
        }
    }

    /// Opens (or makes) the bucket and finds the stream, retrying until JetStream answers.
    pub async fn set_up(&self, js: &jetstream::Context, replicas: usize) {
        loop {
            let bucket = crate::health::bucket(js, BUCKET, replicas, Duration::ZERO)
                .await
                .map_err(|e| e.to_string());
            let stream = js.get_stream(crate::STREAM).await.map_err(|e| e.to_string());
            match (bucket, stream) {
                (Ok(bucket), Ok(stream)) => {
                    let _ = self.ready.set(Ready { bucket, stream });
                    return;
                }
                (Err(e), _) | (_, Err(e)) => {
                    tracing::debug!("cluster: sessions bucket not ready: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }

    /// A new consumer name, unique in the cluster (this run's origin and a counter).
    pub fn consumer_name(&self) -> String {
        let n = self.consumers.fetch_add(1, Relaxed) + 1;
        format!("tern-{}-{n}", self.shared.origin.replace(':', "-"))
    }

    /// Whether this node feeds `client_id`'s session now (a feed that ended, its
    /// consumer taken by another node, does not count).
    fn has_feed(&self, client_id: &str) -> bool {
        self.feeds
            .lock()
            .get(client_id)
            .is_some_and(|f| !f.commands.is_closed())
    }

    /// Stops this node's feed of `client_id` (its consumer stays: another node takes it).
    fn stop_feed(&self, client_id: &str) {
        if let Some(feed) = self.feeds.lock().remove(client_id) {
            let _ = feed.commands.send(Command::Stop);
        }
    }

    /// Where `client_id`'s session is, before CONNACK (see the module's doc).
    /// A lookup that meets a moment's trouble (another node writing the record in
    /// the same instant, JetStream electing a leader) is tried again, every 100 ms for
    /// [`RETRY_FOR`].
    pub async fn resume(self: Arc<Self>, client_id: String, clean_start: bool) -> Resume {
        let started = std::time::Instant::now();
        loop {
            match self.resume_once(&client_id, clean_start).await {
                Resume::Unavailable(why) if started.elapsed() < RETRY_FOR => {
                    tracing::debug!(
                        client = client_id,
                        "cluster: session lookup failed ({why}): trying again"
                    );
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Resume::Unavailable(why) if clean_start => {
                    // A clean start is not refused: the client gets a new session here.
                    tracing::warn!(
                        client = client_id,
                        "cluster: a session held on another node could not be ended by this clean start: {why}"
                    );
                    return Resume::Local;
                }
                Resume::Unavailable(why) => {
                    tracing::warn!(client = client_id, "cluster: session lookup failed: {why}");
                    return Resume::Unavailable(why);
                }
                answer => return answer,
            }
        }
    }

    async fn resume_once(&self, client_id: &str, clean_start: bool) -> Resume {
        let client_id = client_id.to_string();
        let available = self.shared.available.load(Relaxed);
        // Just after the node joined, the bucket may be moments behind.
        for _ in 0..20 {
            if self.ready.get().is_some() || !available {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let Some(ready) = self.ready.get().filter(|_| available) else {
            return if clean_start || self.has_feed(&client_id) {
                Resume::Local
            } else {
                Resume::Unavailable("the cluster's JetStream is unavailable: the session cannot be looked up".into())
            };
        };
        let Some(key) = subject::topic_key(&client_id) else {
            return Resume::Local;
        };
        let entry = match tokio::time::timeout(REQUEST_WAIT, ready.bucket.entry(key.clone())).await {
            Ok(Ok(entry)) => entry,
            Ok(Err(e)) => return Resume::Unavailable(format!("the session could not be looked up: {e}")),
            Err(_) => return Resume::Unavailable("the session could not be looked up in time".into()),
        };
        let revision = entry.as_ref().map(|e| e.revision);
        let record = entry
            .filter(|e| e.operation == kv::Operation::Put)
            .and_then(|e| Record::decode(&e.value));
        let local = self.has_feed(&client_id);
        let Some(record) = record else {
            // Nothing is held in the cluster (a session writes its record before its
            // first SUBACK): whatever this node keeps is stale, unless the client starts
            // clean anyway (then ending it here ends its feed).
            if clean_start {
                return Resume::Local;
            }
            self.stop_feed(&client_id);
            return Resume::Fresh;
        };
        if local && record.origin == *self.shared.origin {
            return Resume::Local;
        }
        self.stop_feed(&client_id);
        let ended = if self.expired_with_its_node(&record) {
            Some("expired after that node died")
        } else {
            clean_start.then_some("ended by a clean start")
        };
        if let Some(why) = ended {
            end_elsewhere(ready, &key, &record, revision).await;
            tracing::info!(
                client = client_id,
                "cluster: session of node {} {why}",
                record.origin.split(':').next().unwrap_or_default()
            );
            return Resume::Fresh;
        }
        self.take(ready, &client_id, &key, record, revision).await
    }

    /// Whether `record`'s session expired while nobody held it: its node is dead (by the
    /// heartbeats) for longer than the session's expiry interval, counted from the node's
    /// last heartbeat (the client may have left before: then it lives on a little longer
    /// than on a single node). A session whose node lives expires there.
    fn expired_with_its_node(&self, record: &Record) -> bool {
        let Some(expiry) = record.expiry else {
            return false;
        };
        match self.view.liveness(&record.origin) {
            crate::view::Liveness::Dead(Some(died_ms)) => {
                let now_ms = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |d| d.as_millis() as u64);
                now_ms >= died_ms.saturating_add(expiry.saturating_mul(1000))
            }
            _ => false,
        }
    }

    /// Takes the session held elsewhere: a new consumer from the old one's floor, the
    /// record rewritten by compare-and-set, what the old node had in flight handed over
    /// (if it answers), the old consumer deleted.
    async fn take(&self, ready: &Ready, client_id: &str, key: &str, record: Record, revision: Option<u64>) -> Resume {
        let start = match &record.consumer {
            None => None,
            Some(old) => match tokio::time::timeout(REQUEST_WAIT, ready.stream.consumer_info(old)).await {
                Ok(Ok(info)) => Some(info.ack_floor.stream_sequence + 1),
                Ok(Err(e)) if not_found(&e) => {
                    // Its consumer expired with it (left unread past the expiry interval).
                    end_elsewhere(ready, key, &record, revision).await;
                    return Resume::Fresh;
                }
                Ok(Err(e)) => return Resume::Unavailable(format!("the session's messages cannot be read: {e}")),
                Err(_) => return Resume::Unavailable("the session's messages cannot be read in time".into()),
            },
        };
        let subjects = consumer_subjects(record.reliable_filters());
        let consumer = match start {
            Some(start) if !subjects.is_empty() => {
                let name = self.consumer_name();
                let config = consumer_config(&name, subjects, Some(start), None);
                match tokio::time::timeout(REQUEST_WAIT, ready.stream.create_consumer(config)).await {
                    Ok(Ok(_)) => Some(name),
                    Ok(Err(e)) => return Resume::Unavailable(format!("the session's messages cannot be read: {e}")),
                    Err(_) => return Resume::Unavailable("the session's messages cannot be read in time".into()),
                }
            }
            _ => None,
        };
        let new = Record {
            origin: self.shared.origin.to_string(),
            consumer: consumer.clone(),
            expiry: record.expiry,
            subscriptions: record.subscriptions.clone(),
        };
        let value = new.encode().into_bytes().into();
        let written = match revision {
            Some(revision) => ready
                .bucket
                .update(key, value, revision)
                .await
                .map_err(|e| e.to_string()),
            None => ready.bucket.create(key, value).await.map_err(|e| e.to_string()),
        };
        let revision = match written {
            Ok(revision) => revision,
            Err(e) => {
                if let Some(name) = &consumer {
                    let _ = ready.stream.delete_consumer(name).await;
                }
                return Resume::Unavailable(format!("another node is taking the session: {e}"));
            }
        };
        // Only once the session is surely this node's: the old node drops its copy.
        let handover = crate::handover::ask(&self.nats, &record.origin, client_id).await;
        if let Some(old) = &record.consumer {
            // Its feed (on the old node, if alive) stops when it is gone.
            let _ = ready.stream.delete_consumer(old).await;
        }
        tracing::info!(
            client = client_id,
            "cluster: session of node {} resumed here",
            record.origin.split(':').next().unwrap_or_default()
        );
        let handed = handover.inflight.iter().map(|m| m.seq).collect();
        self.taken.lock().insert(
            client_id.to_string(),
            Taken {
                consumer,
                revision,
                handed,
                done: handover.done,
            },
        );
        Resume::Remote(SessionSnapshot {
            subscriptions: record.subscriptions,
            inflight: handover.inflight,
            incoming_qos2: handover.incoming,
        })
    }

    /// A persistent session was attached here: fed from now on (a session already fed
    /// here, resumed by its client, goes on as it was).
    pub fn attached(self: &Arc<Self>, client_id: &str, session: u64) {
        let mut feeds = self.feeds.lock();
        if feeds
            .get(client_id)
            .is_some_and(|f| f.session == session && !f.commands.is_closed())
        {
            return;
        }
        if let Some(old) = feeds.remove(client_id) {
            let _ = old.commands.send(Command::Stop);
        }
        let taken = self.taken.lock().remove(client_id);
        let Some(key) = subject::topic_key(client_id) else {
            return;
        };
        let (tx, rx) = mpsc::unbounded_channel();
        feeds.insert(
            client_id.to_string(),
            FeedHandle {
                session,
                attached_us: micros_now(),
                commands: tx,
            },
        );
        let feed = Feed::new(self.clone(), client_id.to_string(), session, key, taken);
        tokio::spawn(feed.run(rx));
    }

    /// Passes `command` to the feed of session `session` of `client_id`, if it is here.
    pub fn command(&self, client_id: &str, session: u64, command: Command) {
        let feeds = self.feeds.lock();
        if let Some(feed) = feeds.get(client_id).filter(|f| f.session == session) {
            let _ = feed.commands.send(command);
        }
    }

    /// A SUBSCRIBE or UNSUBSCRIBE of a fed session.
    pub fn subscribed(&self, client_id: &str, session: u64, ticket: Option<Ticket>) {
        let feeds = self.feeds.lock();
        match feeds.get(client_id).filter(|f| f.session == session) {
            Some(feed) => {
                let _ = feed.commands.send(Command::Subscribed(ticket));
            }
            // Not fed (a clean session that got a shared group's messages): nothing to keep.
            None => ticket.into_iter().for_each(Ticket::settle),
        }
    }

    /// A fed session ended: its feed deletes its record and consumer.
    pub fn ended(&self, client_id: &str, session: u64) {
        let mut feeds = self.feeds.lock();
        if feeds.get(client_id).is_some_and(|f| f.session == session) {
            if let Some(feed) = feeds.remove(client_id) {
                let _ = feed.commands.send(Command::Ended);
            }
        }
    }

    /// A feed ended by itself (its consumer taken by another node, or its session gone):
    /// its handle stays (closed) until the session is dropped or attached again, so that
    /// the client's claim elsewhere still drops this node's copy.
    pub fn feed_gone(&self, client_id: &str, session: u64) {
        let gone = self.feeds.lock().get(client_id).is_some_and(|f| f.session == session);
        if gone {
            tracing::debug!(client = client_id, "cluster: the session's feed ended");
        }
    }

    /// Another node claimed `client_id` for a connection made at `connected_us`: if this
    /// node's session of it was attached before that, the client moved: the session is
    /// dropped here once offline (a connection still open is being closed by the
    /// takeover; it is waited for, at most [`DROP_WAIT`]).
    pub fn claimed_elsewhere(self: &Arc<Self>, client_id: &str, connected_us: u64) {
        let session = self
            .feeds
            .lock()
            .get(client_id)
            .filter(|f| f.attached_us < connected_us)
            .map(|f| f.session);
        if let Some(session) = session {
            self.taken_elsewhere(client_id, session);
        }
    }

    /// Another node holds `client_id`'s session now (it claimed the client id, or deleted
    /// the session's consumer): session `session` here is dropped once offline.
    pub fn taken_elsewhere(self: &Arc<Self>, client_id: &str, session: u64) {
        if self.drop_moved(client_id, session).is_some() {
            return;
        }
        let (engine, client_id) = (self.clone(), client_id.to_string());
        tokio::spawn(async move {
            let deadline = tokio::time::Instant::now() + DROP_WAIT;
            while tokio::time::Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(100)).await;
                if engine.drop_moved(&client_id, session).is_some() {
                    return;
                }
            }
        });
    }

    /// Another node takes `client_id`'s session ([`crate::handover`]): its connection
    /// here is closed, the session dropped once offline (at most [`crate::handover::WAIT`]
    /// is waited for), its feed stopped; returns what it had in flight and what the
    /// client finished lately.
    pub async fn hand_over(self: &Arc<Self>, client_id: &str, connected_ms: u64) -> crate::handover::Handover {
        let Some(session) = self.feeds.lock().get(client_id).map(|f| f.session) else {
            return Default::default();
        };
        // Only a connection older than the one asking (as a takeover closes).
        self.state.take_over_from_node(client_id, connected_ms);
        let deadline = tokio::time::Instant::now() + crate::handover::WAIT / 2;
        let handed = loop {
            match self.state.hand_over_session_from_node(client_id, session) {
                Some(Some(handed)) => break handed,
                Some(None) if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                // Still connected (or gone meanwhile): nothing reliable to hand over; the
                // claim of the new connection drops it later, as without a handover.
                _ => return Default::default(),
            }
        };
        let feed = {
            let mut feeds = self.feeds.lock();
            match feeds.get(client_id).filter(|f| f.session == session) {
                Some(_) => feeds.remove(client_id),
                None => None,
            }
        };
        let mut done = Vec::new();
        if let Some(feed) = feed {
            let (tx, rx) = tokio::sync::oneshot::channel();
            if feed.commands.send(Command::HandOver(tx)).is_ok() {
                if let Ok(Ok(finished)) = tokio::time::timeout(crate::handover::WAIT / 4, rx).await {
                    done = finished;
                }
            }
        }
        tracing::info!(
            client = client_id,
            "cluster: client id connected to another node: its session here is dropped (handed over, {} in flight)",
            handed.inflight.len()
        );
        crate::handover::Handover {
            inflight: handed.inflight,
            done,
            incoming: handed.incoming_qos2,
        }
    }

    /// Drops session `session` of a client that moved if it is offline: `None` while it
    /// is online, else whether it was dropped.
    fn drop_moved(&self, client_id: &str, session: u64) -> Option<bool> {
        match self.state.drop_session_from_node(client_id, session) {
            Some(false) => None,
            Some(true) => {
                let mut feeds = self.feeds.lock();
                if feeds.get(client_id).is_some_and(|f| f.session == session) {
                    if let Some(feed) = feeds.remove(client_id) {
                        let _ = feed.commands.send(Command::Stop);
                    }
                }
                tracing::info!(
                    client = client_id,
                    "cluster: client id connected to another node: its session here is dropped"
                );
                Some(true)
            }
            None => Some(false),
        }
    }
}

/// Deletes the record (if still at `revision`) and consumer of a session held elsewhere.
async fn end_elsewhere(ready: &Ready, key: &str, record: &Record, revision: Option<u64>) {
    if let Some(revision) = revision {
        let _ = ready.bucket.delete_expect_revision(key, Some(revision)).await;
    }
    if let Some(name) = &record.consumer {
        let _ = ready.stream.delete_consumer(name).await;
    }
}

/// Most messages a session's consumer hands out before the client acknowledges some.
const MAX_ACK_PENDING: i64 = 1000;
/// How long JetStream waits for an acknowledgement before it hands a message out again
/// (the feed recognises it and skips it while it is still queued).
const ACK_WAIT: Duration = Duration::from_secs(300);

/// A session's durable consumer: filtered on `subjects`, from stream sequence `start`
/// (else from the next message stored), deleted by JetStream when left unread for
/// `expiry` plus a minute (never without).
pub fn consumer_config(
    name: &str,
    subjects: Vec<String>,
    start: Option<u64>,
    expiry: Option<Duration>,
) -> consumer::pull::Config {
    consumer::pull::Config {
        durable_name: Some(name.to_string()),
        deliver_policy: match start {
            Some(start_sequence) => consumer::DeliverPolicy::ByStartSequence { start_sequence },
            None => consumer::DeliverPolicy::New,
        },
        ack_policy: consumer::AckPolicy::Explicit,
        ack_wait: ACK_WAIT,
        max_ack_pending: MAX_ACK_PENDING,
        filter_subjects: subjects,
        inactive_threshold: expiry.map_or(Duration::ZERO, |e| e + Duration::from_secs(60)),
        ..Default::default()
    }
}
