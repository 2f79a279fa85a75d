//! The router: who receives a PUBLISH, and the retained messages.
//!
//! Publishing takes the subscription trie's read lock (a synchronous lock, never held
//! across an await), finds the matching sessions, merges overlapping subscriptions of one
//! session into a single delivery at the highest granted QoS, and encodes the message
//! once per (protocol flavour, QoS, RETAIN) actually needed. Each receiver gets a
//! reference-counted copy of that frame in its outbox.
//!
//! Shared subscriptions live in a second trie, keyed by group name: each matching group
//! adds one member, picked by the group, to the receivers (see [`crate::shared`]).
//!
//! Retained messages are stored in bytes of their own and reach a new subscriber as a
//! stream its connection draws from as it has room (see [`retained`]).

mod listing;
mod retained;

pub use retained::{Feed, RetainSource, RetainedMessage};

use crate::metrics::Metrics;
use crate::session::{Delivery, Session, SessionId};
use crate::shared::{parse_share, ShareStrategy, SharedGroup};
use crate::store::{Op, Store};
use parking_lot::{Mutex, RwLock};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tern_core::{Deadlines, RetainedStore, SubscriptionTrie};
use tern_proto::{ByteStr, Property, PropertyId, ProtocolVersion, Publish, PublishFrame, QoS, SubscriptionOptions};

/// A subscription as the trie stores it.
#[derive(Debug, Clone)]
pub struct Subscriber {
    pub session: Arc<Session>,
    pub options: SubscriptionOptions,
    /// The 5.0 Subscription Identifier given with the subscription, sent back with every
    /// message it matches [MQTT-3.3.4-3].
    pub identifier: Option<u32>,
}

/// When a message arriving now expires.
fn expires_at(publish: &Publish) -> Option<Instant> {
    publish
        .properties
        .message_expiry_interval()
        .map(|s| crate::clock::now() + Duration::from_secs(u64::from(s)))
}

/// One receiver of a message, its overlapping subscriptions merged.
struct Target<'a> {
    subscriber: &'a Subscriber,
    qos: QoS,
    retain_as_published: bool,
    /// Identifiers of every matching subscription (no allocation when there are none).
    identifiers: Vec<u32>,
    /// The shared subscription it was picked from, if any.
    shared: Option<ByteStr>,
}

impl<'a> Target<'a> {
    /// A delivery through `subscriber`'s subscription, as it asked for it; `shared` names
    /// the group it was picked from.
    fn of(subscriber: &'a Subscriber, shared: Option<ByteStr>) -> Target<'a> {
        Target {
            subscriber,
            qos: subscriber.options.qos,
            retain_as_published: subscriber.options.retain_as_published,
            identifiers: subscriber.identifier.into_iter().collect(),
            shared,
        }
    }
}

/// Subscriptions and retained messages of the whole broker.
#[derive(Debug, Default)]
pub struct Router {
    subscriptions: RwLock<SubscriptionTrie<SessionId, Subscriber>>,
    /// Retained messages in their forwarded form (DUP clear, no packet id).
    retained: RwLock<RetainedStore<Arc<RetainedMessage>>>,
    /// Retained messages stored so far (the `seq` of the last one).
    retained_seq: AtomicU64,
    /// Retained messages still to be sent to sessions for their SUBSCRIBEs.
    backlogs: retained::Backlogs,
    /// Retained messages with a Message Expiry Interval, by when they expire: (topic,
    /// seq of the message as stored), stale once the topic holds another message.
    retained_expiry: Mutex<Deadlines<(ByteStr, u64)>>,
    /// Shared subscriptions: the filter after `$share/{group}/`, keyed by group name.
    shared: RwLock<SubscriptionTrie<ByteStr, SharedGroup>>,
    /// Number of shared subscriptions, read without locking to skip `shared` when empty.
    shared_count: AtomicUsize,
    /// The configured [`ShareStrategy`].
    strategy: RwLock<ShareStrategy>,
    /// Where retained messages are kept across restarts, when persistence is on.
    store: Option<Arc<Store>>,
    /// upgrade_outgoing_qos: deliver at the subscription's QoS, not the lower of the two.
    upgrade_outgoing_qos: AtomicBool,
    /// queue_qos0_messages: offline persistent sessions keep QoS 0 messages too.
    queue_qos0_messages: AtomicBool,
    /// check_retain_source: each listener's ACL, against which the publisher of a
    /// retained message is checked again before it goes to a new subscriber.
    retain_source_acls: RwLock<Option<retained::SourceAcls>>,
    /// The cluster engine, when this node is part of a cluster (`crate::cluster`).
    cluster: std::sync::OnceLock<Arc<dyn crate::cluster::ClusterLink>>,
}

/// Up to 12 frames: 2 flavours (3.x, 5.0) x 3 QoS x RETAIN on/off, and the delivery
/// rules in force for this message.
struct FrameCache {
    frames: [Option<PublishFrame>; 12],
    upgrade_qos: bool,
    queue_qos0: bool,
}

impl FrameCache {
    fn new(router: &Router) -> Self {
        FrameCache {
            frames: Default::default(),
            upgrade_qos: router.upgrade_outgoing_qos.load(Relaxed),
            queue_qos0: router.queue_qos0_messages.load(Relaxed),
        }
    }

    fn get(&mut self, publish: &Publish, v5: bool, qos: QoS, retain: bool) -> Option<&PublishFrame> {
        let index = usize::from(v5) * 6 + (qos as usize) * 2 + usize::from(retain);
        if self.frames[index].is_none() {
            self.frames[index] = Some(encode_forward(publish, v5, qos, retain, &[])?);
        }
        self.frames[index].as_ref()
    }
}

/// The forwarded form of `publish` for one (flavour, QoS, RETAIN), with the receiver's
/// Subscription Identifiers when it speaks 5.0 and has any.
fn encode_forward(publish: &Publish, v5: bool, qos: QoS, retain: bool, identifiers: &[u32]) -> Option<PublishFrame> {
    let version = if v5 {
        ProtocolVersion::V5
    } else {
        ProtocolVersion::V3_1_1
    };
    let mut p = publish.clone();
    p.qos = qos;
    p.retain = retain;
    if v5 {
        p.properties
            .0
            .extend(identifiers.iter().map(|id| Property::SubscriptionIdentifier(*id)));
    }
    match PublishFrame::new(&p, version) {
        Ok(frame) => Some(frame),
        Err(e) => {
            tracing::error!(topic = %publish.topic, "cannot encode message for forwarding: {e}");
            None
        }
    }
}

impl Router {
    /// A router whose retained messages are written to `store`.
    pub fn with_store(store: Option<Arc<Store>>) -> Router {
        Router {
            store,
            ..Router::default()
        }
    }

    /// Sets how shared subscription groups pick a member.
    pub fn set_share_strategy(&self, strategy: ShareStrategy) {
        *self.strategy.write() = strategy;
    }

    /// Turns check_retain_source on with each listener's ACL (`None`: off).
    pub fn set_retain_source_check(&self, acls: Option<Vec<Option<Arc<tern_core::acl::Acl>>>>) {
        *self.retain_source_acls.write() = acls.map(Arc::new);
    }

    /// Sets mosquitto's upgrade_outgoing_qos and queue_qos0_messages.
    pub fn set_delivery_rules(&self, upgrade_outgoing_qos: bool, queue_qos0_messages: bool) {
        self.upgrade_outgoing_qos.store(upgrade_outgoing_qos, Relaxed);
        self.queue_qos0_messages.store(queue_qos0_messages, Relaxed);
    }

    /// Adds or replaces `session`'s subscription to `filter` (a valid topic filter or a
    /// valid `$share/{group}/{filter}`). Returns whether it existed.
    pub fn subscribe(
        &self,
        session: &Arc<Session>,
        filter: &ByteStr,
        options: SubscriptionOptions,
        identifier: Option<u32>,
    ) -> bool {
        let subscriber = Subscriber {
            session: session.clone(),
            options,
            identifier,
        };
        if let Some(Ok((group, topic_filter))) = parse_share(filter) {
            let mut shared = self.shared.write();
            let key = ByteStr::from(group);
            let mut entry = shared
                .remove(topic_filter, &key)
                .unwrap_or_else(|| SharedGroup::new(filter.clone()));
            let existed = entry.join(subscriber);
            if !existed {
                self.shared_count.fetch_add(1, Relaxed);
                if let Some(cluster) = self.cluster.get() {
                    cluster.share_added(group, topic_filter);
                }
            }
            shared.insert(topic_filter, key, entry);
            return existed;
        }
        let existed = self
            .subscriptions
            .write()
            .insert(filter, session.id, subscriber)
            .is_some();
        if existed {
            self.retained_subscription_changed(session.id, filter, options.qos, identifier);
        } else {
            self.cluster_filter(filter, true);
        }
        existed
    }

    /// Removes a subscription. Returns whether it existed.
    pub fn unsubscribe(&self, session: SessionId, filter: &str) -> bool {
        if let Some(Ok((group, topic_filter))) = parse_share(filter) {
            let mut shared = self.shared.write();
            let key = ByteStr::from(group);
            let Some(mut entry) = shared.remove(topic_filter, &key) else {
                return false;
            };
            let existed = entry.leave(session);
            if existed {
                self.shared_count.fetch_sub(1, Relaxed);
                if let Some(cluster) = self.cluster.get() {
                    cluster.share_removed(group, topic_filter);
                }
            }
            if !entry.members.is_empty() {
                shared.insert(topic_filter, key, entry);
            }
            return existed;
        }
        self.drop_retained_stream(session, filter);
        let existed = self.subscriptions.write().remove(filter, &session).is_some();
        if existed {
            self.cluster_filter(filter, false);
        }
        existed
    }

    /// The cluster engine, if this node is part of a cluster.
    pub fn cluster(&self) -> Option<&Arc<dyn crate::cluster::ClusterLink>> {
        self.cluster.get()
    }

    /// Installs the cluster engine (once; a second one is refused and returned).
    pub(crate) fn set_cluster(
        &self,
        link: Arc<dyn crate::cluster::ClusterLink>,
    ) -> Result<(), Arc<dyn crate::cluster::ClusterLink>> {
        self.cluster.set(link)
    }

    /// Tells the cluster engine, if any, that a subscription to `filter` came or went.
    fn cluster_filter(&self, filter: &str, added: bool) {
        if let Some(cluster) = self.cluster.get() {
            if added {
                cluster.filter_added(filter);
            } else {
                cluster.filter_removed(filter);
            }
        }
    }

    /// Number of subscriptions (each member of a shared subscription counts).
    pub fn subscription_count(&self) -> usize {
        self.subscriptions.read().len() + self.shared_count.load(Relaxed)
    }

    /// Delivers `publish` (its forwarded form) to every matching subscription and
    /// returns the number of sessions it was queued for. `origin` is the publishing
    /// session, skipped by its own No Local subscriptions [MQTT-3.8.3-3].
    pub fn publish(&self, publish: &Publish, origin: Option<SessionId>, metrics: &Metrics) -> usize {
        let trie = self.subscriptions.read();
        let mut targets: Vec<Target> = Vec::new();
        trie.for_each_match(&publish.topic, |_, s| {
            if s.options.no_local && origin == Some(s.session.id) {
                return;
            }
            targets.push(Target::of(s, None));
        });
        if targets.len() > 1 {
            merge_overlapping(&mut targets);
        }
        let mut cache = FrameCache::new(self);
        let expires_at = expires_at(publish);
        let mut delivered = 0;
        for target in targets {
            delivered += usize::from(deliver(publish, target, &mut cache, expires_at, metrics));
        }
        // In a cluster that balances shared subscriptions across nodes, the engine hands
        // each message to one node's group instead ([`Router::publish_to_group`]).
        // An engine that feeds shared groups their QoS 1/2 messages gives them each one.
        let reliable = publish.qos != QoS::AtMostOnce;
        if self.shared_count.load(Relaxed) > 0
            && !self
                .cluster
                .get()
                .is_some_and(|c| c.routes_shared() || (reliable && c.feeds_groups()))
        {
            delivered += self.publish_shared(publish, &mut cache, expires_at, metrics);
        }
        delivered
    }

    /// Delivers `publish` to one member of the shared subscription
    /// `$share/{group}/{filter}` on this node (the cluster picked this node for it);
    /// returns whether a member took it.
    pub fn publish_to_group(&self, publish: &Publish, group: &str, filter: &str, metrics: &Metrics) -> bool {
        let strategy = *self.strategy.read();
        let shared = self.shared.read();
        let Some(group) = shared.get(filter, &ByteStr::from(group)) else {
            return false;
        };
        let mut cache = FrameCache::new(self);
        let expires_at = expires_at(publish);
        deliver_to_one_member(publish, group, strategy, &mut cache, expires_at, metrics)
    }

    /// Delivers a QoS 1/2 message the cluster engine feeds to the shared subscription
    /// `$share/{group}/{filter}` (its number `fed`, given back through the member's
    /// session when it is done with it) to one connected member on this node.
    pub fn publish_to_group_fed(
        &self,
        publish: &Publish,
        (group, filter): (&str, &str),
        fed: u64,
        metrics: &Metrics,
    ) -> GroupDelivery {
        let Some(cluster) = self.cluster.get() else {
            return GroupDelivery::NoMember;
        };
        let strategy = *self.strategy.read();
        let shared = self.shared.read();
        let Some(group) = shared.get(filter, &ByteStr::from(group)) else {
            return GroupDelivery::NoMember;
        };
        let mut cache = FrameCache::new(self);
        let expires_at = expires_at(publish);
        let mut passed_over = Vec::new();
        while let Some(s) = group.pick(strategy, &publish.topic, &passed_over, true) {
            let qos = if cache.upgrade_qos {
                s.options.qos
            } else {
                publish.qos.min(s.options.qos)
            };
            if qos != QoS::AtMostOnce {
                let _ = s.session.cluster_acks.get_or_init(|| cluster.clone());
            }
            let target = Target::of(s, Some(group.name.clone()));
            if deliver_with(publish, target, &mut cache, expires_at, metrics, fed) {
                return match qos {
                    QoS::AtMostOnce => GroupDelivery::Untracked,
                    _ => GroupDelivery::Queued(s.session.clone()),
                };
            }
            passed_over.push(s.session.id);
        }
        GroupDelivery::NoMember
    }

    /// How many members of `$share/{group}/{filter}` on this node are connected.
    pub fn group_online_members(&self, group: &str, filter: &str) -> usize {
        self.shared
            .read()
            .get(filter, &ByteStr::from(group))
            .map_or(0, |g| g.members.iter().filter(|m| m.session.is_online()).count())
    }

    /// Delivers a message the cluster engine feeds to `session` (its number `seq`, given
    /// back when the client is done with it) through the session's matching subscriptions
    /// at QoS 1 or 2; returns whether it was queued (else nothing waits for it).
    pub fn publish_to_session(
        &self,
        publish: &Publish,
        publisher: Option<&str>,
        session: &Session,
        seq: u64,
        metrics: &Metrics,
    ) -> bool {
        let trie = self.subscriptions.read();
        let mut targets: Vec<Target> = Vec::new();
        // No Local compares client ids [MQTT-3.8.3-3]: the publisher may have been on
        // another node, or an earlier connection of the session.
        let own = publisher.is_some_and(|p| p == session.client_id.as_str());
        trie.for_each_match(&publish.topic, |_, s| {
            if s.session.id == session.id && !(own && s.options.no_local) {
                targets.push(Target::of(s, None));
            }
        });
        if targets.len() > 1 {
            merge_overlapping(&mut targets);
        }
        let mut cache = FrameCache::new(self);
        let expires_at = expires_at(publish);
        targets
            .into_iter()
            .any(|target| deliver_with(publish, target, &mut cache, expires_at, metrics, seq.max(1)))
    }

    /// Each matching shared subscription is one of its own: one member gets a copy even
    /// if it also matches through another subscription. A member whose queue is full is
    /// passed over for the next.
    fn publish_shared(
        &self,
        publish: &Publish,
        cache: &mut FrameCache,
        expires_at: Option<Instant>,
        metrics: &Metrics,
    ) -> usize {
        let strategy = *self.strategy.read();
        let mut delivered = 0;
        self.shared.read().for_each_match(&publish.topic, |_, group| {
            delivered += usize::from(deliver_to_one_member(
                publish, group, strategy, cache, expires_at, metrics,
            ));
        });
        delivered
    }

    /// Hands the shared-subscription messages `session` has not acknowledged to other
    /// connected members of their groups, when its connection is gone: queued messages
    /// and QoS 1 in flight (QoS 2 in flight stays, [MQTT-4.8.2-4]). Those no other member
    /// can take stay with the session, unless it `ended` (then they are dropped).
    pub fn hand_off_shared(&self, session: &Session, ended: bool, metrics: &Metrics) {
        if self.shared_count.load(Relaxed) == 0 {
            return;
        }
        let moved = session.state.lock().outbox.take_movable(|d| d.shared.is_some());
        // Those the cluster engine fed go back to it, for a member of any node.
        let (fed, moved): (Vec<_>, Vec<_>) = moved
            .into_iter()
            .partition(|(d, _)| d.seq & crate::session::CLUSTER_SEQ != 0);
        if let (Some(cluster), false) = (self.cluster.get(), fed.is_empty()) {
            for (delivery, _) in &fed {
                cluster.shared_released(delivery.seq & !crate::session::CLUSTER_SEQ);
            }
        }
        if moved.is_empty() {
            return;
        }
        for (delivery, _) in &moved {
            session.forget_message(delivery.seq);
        }
        let strategy = *self.strategy.read();
        let mut left = Vec::new();
        {
            let shared = self.shared.read();
            for (delivery, qos) in moved {
                let member = delivery
                    .shared
                    .as_deref()
                    .and_then(parse_share)
                    .and_then(Result::ok)
                    .and_then(|(group, filter)| shared.get(filter, &ByteStr::from(group)))
                    .and_then(|g| g.pick(strategy, "", &[session.id], true));
                match member.and_then(|m| Self::redirect(&delivery, qos, m)) {
                    Some((member, moved, topic, qos)) => {
                        member
                            .session
                            .deliver(moved, &topic, (qos, false), delivery.frame.len(), metrics);
                    }
                    None => left.push((delivery, qos)),
                }
            }
        }
        if !ended && !left.is_empty() {
            let mut state = session.state.lock();
            for (mut delivery, qos) in left {
                let len = delivery.frame.len();
                delivery.seq = 0;
                session.persist_new(&mut state, &mut delivery, qos);
                let _ = state.outbox.push(delivery, qos, len);
            }
        }
    }

    /// `delivery`, queued for one member at `qos`, encoded for another.
    fn redirect<'a>(
        delivery: &Delivery,
        qos: QoS,
        to: &'a Subscriber,
    ) -> Option<(&'a Subscriber, Delivery, ByteStr, QoS)> {
        let mut publish = delivery.publish()?;
        publish.properties.remove(PropertyId::SubscriptionIdentifier);
        let v5 = to.session.is_v5();
        let qos = qos.min(to.options.qos);
        let retain = publish.retain;
        let frame = encode_forward(&publish, v5, qos, retain, to.identifier.as_slice())?;
        let moved = Delivery {
            frame,
            v5,
            expires_at: delivery.expires_at,
            shared: delivery.shared.clone(),
            seq: 0,
        };
        Some((to, moved, publish.topic, qos))
    }

    /// Removes the retained messages whose expiry has come (only those: the others are
    /// not looked at); returns how many.
    pub fn purge_expired_retained(&self, now: Instant) -> usize {
        let due = self.retained_expiry.lock().take_due(now);
        if due.is_empty() {
            return 0;
        }
        let mut expired = Vec::new();
        {
            let mut store = self.retained.write();
            for (topic, seq) in due {
                if store.get(&topic).is_some_and(|m| m.seq == seq) {
                    store.remove(&topic);
                    expired.push(topic);
                }
            }
        }
        if let Some(disk) = &self.store {
            for topic in &expired {
                disk.enqueue(Op::Retained {
                    topic: topic.to_string(),
                    record: None,
                });
            }
        }
        expired.len()
    }

    /// Notes when a retained message stored as `seq` expires.
    fn schedule_retained_expiry(&self, topic: &ByteStr, seq: u64, at: Instant) {
        self.retained_expiry.lock().schedule(at, (topic.clone(), seq));
    }
}

/// What became of a shared group's message the cluster engine fed
/// ([`Router::publish_to_group_fed`]).
#[derive(Debug)]
pub enum GroupDelivery {
    /// No connected member on this node could take it.
    NoMember,
    /// Queued for a member at QoS 0: nothing is given back.
    Untracked,
    /// Queued for this member's session at QoS 1/2: given back when it is done with it.
    Queued(Arc<Session>),
}

/// Queues `publish` for one target in the frame it needs; returns whether it was queued.
fn deliver(
    publish: &Publish,
    target: Target,
    cache: &mut FrameCache,
    expires_at: Option<Instant>,
    metrics: &Metrics,
) -> bool {
    deliver_with(publish, target, cache, expires_at, metrics, 0)
}

/// Delivers `publish` to one member of `group`, passing over members whose queue is full;
/// returns whether one took it.
fn deliver_to_one_member(
    publish: &Publish,
    group: &crate::shared::SharedGroup,
    strategy: crate::shared::ShareStrategy,
    cache: &mut FrameCache,
    expires_at: Option<Instant>,
    metrics: &Metrics,
) -> bool {
    let mut passed_over = Vec::new();
    while let Some(s) = group.pick(strategy, &publish.topic, &passed_over, false) {
        if deliver(
            publish,
            Target::of(s, Some(group.name.clone())),
            cache,
            expires_at,
            metrics,
        ) {
            return true;
        }
        passed_over.push(s.session.id);
    }
    false
}

/// [`deliver`], for a message the cluster engine feeds as its number `fed` (0: routed
/// as usual). A session the engine feeds gets its QoS 1/2 messages from the engine only,
/// except through shared subscriptions.
fn deliver_with(
    publish: &Publish,
    target: Target,
    cache: &mut FrameCache,
    expires_at: Option<Instant>,
    metrics: &Metrics,
    fed: u64,
) -> bool {
    let session = &target.subscriber.session;
    let v5 = session.is_v5();
    let qos = if cache.upgrade_qos {
        target.qos
    } else {
        publish.qos.min(target.qos)
    };
    // A shared group's messages come fed or not, as the engine decides (see `publish`).
    let engine_feeds = qos != QoS::AtMostOnce && target.shared.is_none() && session.session_fed();
    if target.shared.is_none() && engine_feeds != (fed != 0) {
        return false;
    }
    // [MQTT-3.3.1-9]: RETAIN is cleared on forwarding, unless a 5.0 subscriber asked for
    // Retain As Published.
    let retain = v5 && target.retain_as_published && publish.retain;
    let frame = if v5 && !target.identifiers.is_empty() {
        // Identifiers make the frame this subscriber's own: encoded for it alone.
        encode_forward(publish, v5, qos, retain, &target.identifiers)
    } else {
        cache.get(publish, v5, qos, retain).cloned()
    };
    let Some(frame) = frame else { return false };
    let delivery = Delivery {
        frame,
        v5,
        expires_at,
        shared: target.shared,
        seq: if fed != 0 && qos != QoS::AtMostOnce {
            fed | crate::session::CLUSTER_SEQ
        } else {
            0
        },
    };
    let keep_qos0 = cache.queue_qos0;
    session.deliver(
        delivery,
        &publish.topic,
        (qos, keep_qos0),
        publish.payload.len(),
        metrics,
    )
}

/// Folds the several matching subscriptions of one session into one entry with the
/// highest QoS and every Subscription Identifier [MQTT-3.3.5-1], [MQTT-3.3.4-3].
fn merge_overlapping(targets: &mut Vec<Target>) {
    targets.sort_by_key(|t| t.subscriber.session.id);
    targets.dedup_by(|later, kept| {
        if later.subscriber.session.id != kept.subscriber.session.id {
            return false;
        }
        kept.qos = kept.qos.max(later.qos);
        kept.retain_as_published |= later.retain_as_published;
        kept.identifiers.append(&mut later.identifiers);
        true
    });
}
