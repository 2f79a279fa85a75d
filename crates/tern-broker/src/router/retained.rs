//! Retained messages in the router: kept in bytes of their own, and streamed to a new
//! subscriber as fast as it reads.
//!
//! A retained message may outlive its publisher's connection by months, so it is copied
//! out of the publisher's read buffer (a slice of which would keep a whole 4 KiB chunk
//! alive) into one allocation of exactly its size. On SUBSCRIBE the matching messages are
//! not queued at once, which would overflow the session's bounded queue (and drop all but
//! the first `max_queued_messages`): the subscription gets a *stream*, a paused
//! [`RetainedScan`] of the store, and the session's connection task asks for more each
//! time its queue has run empty ([`Router::feed_retained`]). A stream holds its filter
//! and the last topic it passed, never the messages. It sends the messages stored before
//! its SUBSCRIBE that are still retained when their turn comes: one replaced or stored
//! later reached the subscriber live, through its subscription. A stream belongs to the
//! session, so it goes on when a persistent session comes back after its connection
//! ended, then with the messages as they are at that point (what was published while the
//! client was away did not all reach it: QoS 0 is not kept for an offline session).
//! UNSUBSCRIBE (and so the end of the session) drops it, and a new SUBSCRIBE to the same
//! filter starts it again from the beginning.
//!
//! Live messages are not held back behind a stream: one published after the SUBSCRIBE may
//! arrive before retained messages still waiting in it (before its own topic's, if it was
//! not itself retained). Streams draw only on an empty queue, so live traffic goes first.

use super::{encode_forward, expires_at, Router};
use crate::metrics::Metrics;
use crate::session::{Delivery, Session, SessionId, SessionState};
use crate::store::records::RetainedRecord;
use crate::store::Op;
use bytes::Bytes;
use parking_lot::Mutex;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Instant;
use tern_core::retained::{Retained, RetainedScan, Visit};
use tern_proto::{ByteStr, Property, ProtocolVersion, Publish, PublishFrame, QoS};

/// Messages queued by one call of [`Router::feed_retained`].
const FEED_BATCH: usize = 64;
/// Topics one call of [`Router::feed_retained`] may look at, matching or not.
const SCAN_BUDGET: usize = 1024;

/// A retained message, when it expires (5.0 Message Expiry Interval) and when it was
/// stored.
#[derive(Debug)]
pub struct RetainedMessage {
    pub publish: Publish,
    pub expires_at: Option<Instant>,
    /// Its number in the order retained messages were stored: a stream sends only those
    /// stored before its SUBSCRIBE.
    pub seq: u64,
    /// Who published it, when that client was under an ACL (check_retain_source).
    pub source: Option<Box<RetainSource>>,
}

/// The publisher of a retained message, whose access check_retain_source checks again
/// (under the ACL in force then) before the message goes to a new subscriber.
#[derive(Debug, Clone)]
pub struct RetainSource {
    pub client_id: ByteStr,
    pub user: Option<Box<str>>,
    pub listener: usize,
}

/// Each listener's ACL, when check_retain_source is on.
pub(crate) type SourceAcls = Arc<Vec<Option<Arc<tern_core::acl::Acl>>>>;

/// Whether the publisher of `m` may still publish to its topic (check_retain_source).
fn source_may_write(acls: &SourceAcls, m: &RetainedMessage) -> bool {
    let Some(source) = &m.source else { return true };
    let Some(acl) = acls.get(source.listener).and_then(Option::as_ref) else {
        return true;
    };
    let client = tern_core::acl::Client {
        user: source.user.as_deref(),
        client_id: &source.client_id,
    };
    acl.may_write(client, &m.publish.topic)
}

impl Retained for RetainedMessage {
    fn topic(&self) -> &ByteStr {
        &self.publish.topic
    }
}

/// What [`Router::feed_retained`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Feed {
    /// Messages were queued: send them.
    Queued,
    /// Nothing queued yet but more to look at: call again on a later turn.
    Paused,
    /// Nothing waiting that can be queued now.
    Idle,
}

/// The retained messages still to be sent for one SUBSCRIBE filter.
#[derive(Debug)]
struct Stream {
    scan: RetainedScan,
    granted: QoS,
    identifier: Option<u32>,
    /// The last retained message stored before the SUBSCRIBE, or before the connection
    /// it goes to began.
    snapshot: u64,
    /// That connection's number in its session.
    generation: u64,
}

/// The streams of one session, in the order their SUBSCRIBEs came.
#[derive(Debug, Default)]
struct Backlog {
    streams: VecDeque<Stream>,
}

/// The backlogs of all sessions that have one.
#[derive(Debug, Default)]
pub(super) struct Backlogs {
    map: Mutex<HashMap<SessionId, Arc<Mutex<Backlog>>>>,
    /// Entries in `map`, read without locking: most of the time there are none.
    count: AtomicUsize,
}

impl Backlogs {
    fn get(&self, session: SessionId) -> Option<Arc<Mutex<Backlog>>> {
        if self.count.load(Relaxed) == 0 {
            return None;
        }
        self.map.lock().get(&session).cloned()
    }

    /// Runs `f` on the streams of `session`, creating its backlog if `create`; a backlog
    /// left empty is removed.
    fn with(&self, session: SessionId, create: bool, f: impl FnOnce(&mut VecDeque<Stream>)) {
        if !create && self.count.load(Relaxed) == 0 {
            return;
        }
        let mut map = self.map.lock();
        let backlog = match map.get(&session) {
            Some(backlog) => backlog.clone(),
            None if create => {
                self.count.fetch_add(1, Relaxed);
                map.entry(session).or_default().clone()
            }
            None => return,
        };
        let mut backlog = backlog.lock();
        f(&mut backlog.streams);
        if backlog.streams.is_empty() {
            map.remove(&session);
            self.count.fetch_sub(1, Relaxed);
        }
    }
}

/// The number of the connection serving the session; 0 when offline.
fn connection_generation(state: &SessionState) -> u64 {
    state.connection.as_ref().map_or(0, |c| c.generation)
}

/// `publish` with its topic, payload and string and binary properties copied into one
/// allocation of exactly their size, so that it keeps no other bytes alive.
pub(super) fn own_bytes(publish: &Publish) -> Publish {
    let property_bytes = |p: &Property| match p {
        Property::ContentType(s) | Property::ResponseTopic(s) => s.len(),
        Property::CorrelationData(b) => b.len(),
        Property::UserProperty((k, v)) => k.len() + v.len(),
        _ => 0,
    };
    let size =
        publish.topic.len() + publish.payload.len() + publish.properties.0.iter().map(property_bytes).sum::<usize>();
    let mut buffer = Vec::with_capacity(size);
    buffer.extend_from_slice(publish.topic.as_bytes());
    buffer.extend_from_slice(&publish.payload);
    for p in &publish.properties.0 {
        match p {
            Property::ContentType(s) | Property::ResponseTopic(s) => buffer.extend_from_slice(s.as_bytes()),
            Property::CorrelationData(b) => buffer.extend_from_slice(b),
            Property::UserProperty((k, v)) => {
                buffer.extend_from_slice(k.as_bytes());
                buffer.extend_from_slice(v.as_bytes());
            }
            _ => {}
        }
    }
    let mut parts = Parts {
        buffer: Bytes::from(buffer),
        at: 0,
    };
    let topic = parts.string(&publish.topic);
    let payload = parts.take(publish.payload.len());
    let properties = publish
        .properties
        .0
        .iter()
        .map(|p| match p {
            Property::ContentType(s) => Property::ContentType(parts.string(s)),
            Property::ResponseTopic(s) => Property::ResponseTopic(parts.string(s)),
            Property::CorrelationData(b) => Property::CorrelationData(parts.take(b.len())),
            Property::UserProperty((k, v)) => Property::UserProperty((parts.string(k), parts.string(v))),
            other => other.clone(),
        })
        .collect();
    Publish {
        dup: false,
        qos: publish.qos,
        retain: publish.retain,
        topic,
        packet_id: 0,
        properties: tern_proto::Properties(properties),
        payload,
    }
}

/// Hands out consecutive slices of one buffer.
struct Parts {
    buffer: Bytes,
    at: usize,
}

impl Parts {
    fn take(&mut self, len: usize) -> Bytes {
        self.at += len;
        self.buffer.slice(self.at - len..self.at)
    }

    /// The next `original.len()` bytes as a string: they were UTF-8 where they came from,
    /// and are checked all the same.
    fn string(&mut self, original: &ByteStr) -> ByteStr {
        ByteStr::from_utf8(self.take(original.len())).unwrap_or_else(|_| ByteStr::from(original.as_str()))
    }
}

/// `$SYS` topics: the broker's own figures, made anew by a running broker and not kept
/// across restarts. Other `$` topics (an embedder's, such as the IoT platform's device
/// status under its reserved root) are kept like any retained message.
fn is_sys_topic(topic: &str) -> bool {
    topic == "$SYS" || topic.starts_with("$SYS/")
}

impl Router {
    /// Stores (non-empty payload) or clears (empty payload) the retained message of the
    /// topic of `publish`, in bytes of its own.
    pub fn retain(&self, publish: &Publish) {
        self.retain_from(publish, None);
    }

    /// [`Router::retain`], noting who published the message (check_retain_source).
    pub fn retain_from(&self, publish: &Publish, source: Option<RetainSource>) {
        if let Some(disk) = self.store.as_ref().filter(|_| !is_sys_topic(&publish.topic)) {
            let record = if publish.payload.is_empty() {
                None
            } else {
                PublishFrame::new(publish, ProtocolVersion::V5).ok().map(|frame| {
                    RetainedRecord {
                        expires_at: expires_at(publish).map(crate::session_store::unix_ms),
                        frame: frame.bytes().to_vec(),
                    }
                    .encode()
                })
            };
            disk.enqueue(Op::Retained {
                topic: publish.topic.to_string(),
                record,
            });
        }
        if publish.payload.is_empty() {
            self.retained.write().remove(&publish.topic);
        } else {
            self.store_retained(own_bytes(publish), expires_at(publish), source.map(Box::new));
        }
    }

    /// Puts back a retained message read from the store.
    pub fn restore_retained(&self, publish: Publish, expires_at: Option<Instant>) {
        // Decoded from a record, it is a slice of that record's buffer: copied the same way.
        self.store_retained(own_bytes(&publish), expires_at, None);
    }

    fn store_retained(&self, publish: Publish, expires_at: Option<Instant>, source: Option<Box<RetainSource>>) {
        let mut store = self.retained.write();
        let seq = self.retained_seq.fetch_add(1, Relaxed) + 1;
        let topic = publish.topic.clone();
        let replaced = store.set(Arc::new(RetainedMessage {
            publish,
            expires_at,
            seq,
            source,
        }));
        drop(store);
        if let Some(at) = expires_at {
            self.schedule_retained_expiry(&topic, seq, at);
        }
        // The message replaced, freed outside the lock.
        drop(replaced);
    }

    /// Number of retained messages.
    pub fn retained_count(&self) -> usize {
        self.retained.read().len()
    }

    /// Starts sending `session` the retained messages matching `filter`, at most at QoS
    /// `granted`, with RETAIN set [MQTT-3.3.1-8]: they are queued as its queue has room
    /// (see [`Router::feed_retained`]). A stream for the same filter still under way
    /// starts again: a repeated SUBSCRIBE re-sends every retained message [MQTT-3.8.4-3].
    pub fn send_retained(
        &self,
        session: &Session,
        filter: &str,
        granted: QoS,
        identifier: Option<u32>,
        _metrics: &Metrics,
    ) {
        let snapshot = {
            let _store = self.retained.read();
            self.retained_seq.load(Relaxed)
        };
        let stream = Stream {
            // A copy: the filter is a slice of the subscriber's read buffer.
            scan: RetainedScan::new(ByteStr::from(filter)),
            granted,
            identifier,
            snapshot,
            generation: connection_generation(&session.state.lock()),
        };
        self.backlogs.with(session.id, true, |streams| {
            streams.retain(|s| s.scan.filter() != filter);
            streams.push_back(stream);
        });
        session.wake.notify_one();
    }

    /// A subscription was replaced without its retained messages being sent again: the
    /// rest of its stream, if one is under way, goes out with the new QoS and identifier.
    pub(super) fn retained_subscription_changed(
        &self,
        session: SessionId,
        filter: &str,
        granted: QoS,
        id: Option<u32>,
    ) {
        self.backlogs.with(session, false, |streams| {
            for s in streams.iter_mut().filter(|s| s.scan.filter() == filter) {
                (s.granted, s.identifier) = (granted, id);
            }
        });
    }

    /// An UNSUBSCRIBE: the rest of the filter's stream is not sent.
    pub(super) fn drop_retained_stream(&self, session: SessionId, filter: &str) {
        self.backlogs
            .with(session, false, |streams| streams.retain(|s| s.scan.filter() != filter));
    }

    /// Whether retained messages are waiting for `session`.
    pub fn has_retained_backlog(&self, session: SessionId) -> bool {
        self.backlogs.get(session).is_some()
    }

    /// Queues for `session` (locked by the caller, its connection task, when its queue
    /// has run empty) the next retained messages of its streams, up to a batch, as
    /// [`Session::deliver`] would: checked against its ACL and expiry, stored if the
    /// session is persistent. A message too large for the client is left to the
    /// connection, which drops it as it drops any other.
    pub fn feed_retained(&self, session: &Session, state: &mut SessionState) -> Feed {
        let Some(backlog) = self.backlogs.get(session.id) else {
            return Feed::Idle;
        };
        let v5 = session.is_v5();
        let now = crate::clock::now();
        let generation = connection_generation(state);
        let (mut queued, mut budget) = (0, SCAN_BUDGET);
        let upgrade = self.upgrade_outgoing_qos.load(Relaxed);
        let source_acls = self.retain_source_acls.read().clone();
        let emptied = {
            let mut backlog = backlog.lock();
            let store = self.retained.read();
            while let Some(stream) = backlog.streams.front_mut() {
                if stream.generation != generation {
                    // A persistent session back with a new connection: what changed while
                    // it was away may not have reached it, so it gets the messages as
                    // they are now.
                    stream.generation = generation;
                    stream.snapshot = self.retained_seq.load(Relaxed);
                }
                let Stream {
                    scan,
                    granted,
                    identifier,
                    snapshot,
                    ..
                } = stream;
                budget -= scan.resume(&store, budget, |topic, m| {
                    if queued == FEED_BATCH {
                        return Visit::Stop;
                    }
                    // Replaced since the SUBSCRIBE (the subscriber had the new one live),
                    // or expired: not sent.
                    if m.seq > *snapshot || m.expires_at.is_some_and(|at| at <= now) {
                        return Visit::Next;
                    }
                    if let Some(access) = &state.access {
                        if !access.may_read(&session.client_id, topic) {
                            return Visit::Next;
                        }
                    }
                    if state.receive_policy.as_ref().is_some_and(|p| !p.may_receive(topic)) {
                        return Visit::Next;
                    }
                    if source_acls.as_ref().is_some_and(|acls| !source_may_write(acls, m)) {
                        return Visit::Next;
                    }
                    let len = m.publish.payload.len();
                    if !state.outbox.has_room(len) {
                        return Visit::Stop;
                    }
                    let qos = if upgrade { *granted } else { m.publish.qos.min(*granted) };
                    let Some(frame) = encode_forward(&m.publish, v5, qos, true, identifier.as_slice()) else {
                        return Visit::Next;
                    };
                    let mut delivery = Delivery {
                        frame,
                        v5,
                        expires_at: m.expires_at,
                        shared: None,
                        seq: 0,
                    };
                    session.persist_new(state, &mut delivery, qos);
                    let _ = state.outbox.push(delivery, qos, len);
                    queued += 1;
                    Visit::Next
                });
                if !scan.is_finished() {
                    break;
                }
                backlog.streams.pop_front();
            }
            backlog.streams.is_empty()
        };
        if emptied {
            // Removed under the map's lock if still empty (nothing was added meanwhile).
            self.backlogs.with(session.id, false, |_| {});
        }
        match (queued, budget) {
            (0, 0) => Feed::Paused,
            (0, _) => Feed::Idle,
            _ => Feed::Queued,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tern_core::OutboxLimits;
    use tern_proto::Properties;

    fn publish(topic: &str, payload: &'static [u8], qos: QoS) -> Publish {
        Publish {
            dup: false,
            qos,
            retain: true,
            topic: ByteStr::from(topic),
            packet_id: 0,
            properties: Properties::default(),
            payload: Bytes::from_static(payload),
        }
    }

    fn session(limits: OutboxLimits) -> Arc<Session> {
        crate::session::Sessions::default().create(ByteStr::from("s"), limits, true)
    }

    fn limits(max_queued_messages: usize) -> OutboxLimits {
        OutboxLimits {
            max_inflight: 0,
            max_queued_messages,
            max_queued_bytes: 0,
            max_inflight_bytes: 0,
        }
    }

    /// Feeds and drains `session` until its backlog is done; returns the topics queued.
    fn drain(router: &Router, session: &Session) -> Vec<String> {
        let mut topics = Vec::new();
        loop {
            let mut state = session.state.lock();
            while let Some(s) = state.outbox.pop_sendable(0) {
                topics.push(s.delivery.publish().map(|p| p.topic.to_string()).unwrap_or_default());
            }
            if router.feed_retained(session, &mut state) == Feed::Idle {
                return topics;
            }
        }
    }

    #[test]
    fn a_retained_message_keeps_only_its_own_bytes() {
        let chunk = Bytes::from(vec![b'x'; 4096]);
        let mut p = publish("t", b"", QoS::AtMostOnce);
        p.topic = ByteStr::from_utf8(chunk.slice(0..3)).unwrap();
        p.payload = chunk.slice(3..13);
        p.properties.push(Property::UserProperty((
            ByteStr::from_utf8(chunk.slice(20..22)).unwrap(),
            ByteStr::from_utf8(chunk.slice(30..31)).unwrap(),
        )));
        p.properties.push(Property::MessageExpiryInterval(5));
        let own = own_bytes(&p);
        assert_eq!((&*own.topic, &own.payload[..]), ("xxx", &b"xxxxxxxxxx"[..]));
        assert_eq!(own.properties, p.properties);
        // One buffer of 3 + 10 + 3 bytes, shared by all the parts.
        let base = own.topic.as_bytes().as_ptr() as usize;
        assert_eq!(own.payload.as_ptr() as usize, base + 3);
        let Some(Property::UserProperty((k, v))) = own.properties.0.first() else {
            panic!()
        };
        assert_eq!(
            (k.as_bytes().as_ptr() as usize, v.as_bytes().as_ptr() as usize),
            (base + 13, base + 15)
        );
    }

    #[test]
    fn a_stream_queues_in_batches_as_the_queue_has_room_and_nothing_is_dropped() {
        let router = Router::default();
        for i in 0..300 {
            router.retain(&publish(&format!("a/{i:03}"), b"p", QoS::AtLeastOnce));
        }
        let session = session(limits(10));
        router.send_retained(&session, "a/#", QoS::AtMostOnce, None, &Metrics::default());
        {
            let mut state = session.state.lock();
            assert_eq!(router.feed_retained(&session, &mut state), Feed::Queued);
            assert_eq!(state.outbox.queued(), 10, "the queue's bound");
        }
        let mut topics = drain(&router, &session);
        assert_eq!(topics.len(), 300);
        topics.dedup();
        assert_eq!(topics.len(), 300, "each once");
        assert!(!router.has_retained_backlog(session.id));
    }

    #[test]
    fn a_stream_skips_what_expired_or_was_replaced_or_cleared_after_the_subscribe() {
        let router = Router::default();
        for t in ["k/1", "k/2", "k/3", "k/4"] {
            router.retain(&publish(t, b"old", QoS::AtMostOnce));
        }
        router.store_retained(
            own_bytes(&publish("k/0", b"gone", QoS::AtMostOnce)),
            Some(crate::clock::now()),
            None,
        );
        let session = session(limits(0));
        router.send_retained(&session, "k/+", QoS::AtMostOnce, None, &Metrics::default());
        router.retain(&publish("k/2", b"new", QoS::AtMostOnce));
        router.retain(&publish("k/3", b"", QoS::AtMostOnce));
        router.retain(&publish("k/5", b"later", QoS::AtMostOnce));
        assert_eq!(drain(&router, &session), ["k/1", "k/4"]);
    }

    #[test]
    fn a_stream_resumed_by_a_new_connection_sends_the_messages_as_they_are_then() {
        let router = Router::default();
        for t in ["g/1", "g/2", "g/3"] {
            router.retain(&publish(t, b"old", QoS::AtMostOnce));
        }
        let session = session(limits(1));
        let connected = |generation| {
            session.state.lock().connection = Some(crate::session::ConnectionHandle {
                generation,
                takeover: None,
                info: Arc::new(crate::admin::ConnectionInfo::new(
                    ([127, 0, 0, 1], 1).into(),
                    ProtocolVersion::V5,
                    0,
                    None,
                    0,
                )),
            })
        };
        connected(1);
        router.send_retained(&session, "g/#", QoS::AtMostOnce, None, &Metrics::default());
        let mut state = session.state.lock();
        assert_eq!(router.feed_retained(&session, &mut state), Feed::Queued);
        assert_eq!(
            state
                .outbox
                .pop_sendable(0)
                .map(|s| s.delivery.publish().map(|p| p.payload)),
            Some(Some(Bytes::from_static(b"old")))
        );
        drop(state);
        // Replaced while the client was online: it had the new one live.
        router.retain(&publish("g/2", b"live", QoS::AtMostOnce));
        session.state.lock().connection = None;
        // Replaced while it was away.
        router.retain(&publish("g/3", b"away", QoS::AtMostOnce));
        connected(2);
        let mut payloads = Vec::new();
        loop {
            let mut state = session.state.lock();
            while let Some(s) = state.outbox.pop_sendable(0) {
                payloads.extend(s.delivery.publish().map(|p| p.payload));
            }
            if router.feed_retained(&session, &mut state) == Feed::Idle {
                break;
            }
        }
        assert_eq!(payloads, [&b"live"[..], b"away"]);
    }

    #[test]
    fn a_scan_without_matches_pauses_after_its_budget_and_unsubscribe_ends_a_stream() {
        let router = Router::default();
        for i in 0..(SCAN_BUDGET + 10) {
            router.retain(&publish(&format!("n/{i}"), b"p", QoS::AtMostOnce));
        }
        let session = session(limits(0));
        router.send_retained(&session, "+/none", QoS::AtMostOnce, None, &Metrics::default());
        router.send_retained(&session, "n/1", QoS::AtMostOnce, None, &Metrics::default());
        let mut state = session.state.lock();
        assert_eq!(router.feed_retained(&session, &mut state), Feed::Paused);
        assert_eq!(router.feed_retained(&session, &mut state), Feed::Queued);
        assert!(!router.has_retained_backlog(session.id));
        drop(state);
        router.send_retained(&session, "n/#", QoS::AtMostOnce, None, &Metrics::default());
        router.drop_retained_stream(session.id, "n/#");
        assert!(!router.has_retained_backlog(session.id));
    }

    #[test]
    fn subscribing_again_restarts_the_stream_of_that_filter() {
        let router = Router::default();
        for t in ["r/1", "r/2", "r/3"] {
            router.retain(&publish(t, b"p", QoS::AtMostOnce));
        }
        let session = session(limits(2));
        let metrics = Metrics::default();
        router.send_retained(&session, "r/#", QoS::AtMostOnce, None, &metrics);
        let mut first = Vec::new();
        {
            let mut state = session.state.lock();
            router.feed_retained(&session, &mut state);
            while let Some(s) = state.outbox.pop_sendable(0) {
                first.extend(s.delivery.publish().map(|p| p.topic.to_string()));
            }
        }
        router.send_retained(&session, "r/#", QoS::AtMostOnce, None, &metrics);
        first.extend(drain(&router, &session));
        assert_eq!(first, ["r/1", "r/2", "r/1", "r/2", "r/3"]);
    }
}
