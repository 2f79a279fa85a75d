//! The router: who receives a PUBLISH, and the retained messages.
//!
//! Publishing takes the subscription trie's read lock (a synchronous lock, never held
//! across an await), finds the matching sessions, merges overlapping subscriptions of one
//! session into a single delivery at the highest granted QoS, and encodes the message
//! once per (protocol flavour, QoS, RETAIN) actually needed. Each receiver gets a
//! reference-counted copy of that frame in its outbox.

use crate::metrics::Metrics;
use crate::session::{Delivery, Session, SessionId};
use parking_lot::RwLock;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tern_core::{RetainedStore, SubscriptionTrie};
use tern_proto::{Property, ProtocolVersion, Publish, PublishFrame, QoS, SubscriptionOptions};

/// A subscription as the trie stores it.
#[derive(Debug, Clone)]
pub struct Subscriber {
    pub session: Arc<Session>,
    pub options: SubscriptionOptions,
    /// The 5.0 Subscription Identifier given with the subscription, sent back with every
    /// message it matches [MQTT-3.3.4-3].
    pub identifier: Option<u32>,
}

/// A retained message and when it expires (5.0 Message Expiry Interval).
#[derive(Debug)]
pub struct RetainedMessage {
    pub publish: Publish,
    pub expires_at: Option<Instant>,
}

/// When a message arriving now expires.
fn expires_at(publish: &Publish) -> Option<Instant> {
    publish
        .properties
        .message_expiry_interval()
        .map(|s| Instant::now() + Duration::from_secs(u64::from(s)))
}

/// One receiver of a message, its overlapping subscriptions merged.
struct Target<'a> {
    subscriber: &'a Subscriber,
    qos: QoS,
    retain_as_published: bool,
    /// Identifiers of every matching subscription (no allocation when there are none).
    identifiers: Vec<u32>,
}

/// Subscriptions and retained messages of the whole broker.
#[derive(Debug, Default)]
pub struct Router {
    subscriptions: RwLock<SubscriptionTrie<SessionId, Subscriber>>,
    /// Retained messages in their forwarded form (DUP clear, no packet id).
    retained: RwLock<RetainedStore<Arc<RetainedMessage>>>,
}

/// Up to 12 frames: 2 flavours (3.x, 5.0) x 3 QoS x RETAIN on/off.
struct FrameCache {
    frames: [Option<PublishFrame>; 12],
}

impl FrameCache {
    fn new() -> Self {
        FrameCache {
            frames: Default::default(),
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
    /// Adds or replaces `session`'s subscription to `filter`. Returns whether it existed.
    pub fn subscribe(
        &self,
        session: &Arc<Session>,
        filter: &str,
        options: SubscriptionOptions,
        identifier: Option<u32>,
    ) -> bool {
        let subscriber = Subscriber {
            session: session.clone(),
            options,
            identifier,
        };
        self.subscriptions
            .write()
            .insert(filter, session.id, subscriber)
            .is_some()
    }

    /// Removes a subscription. Returns whether it existed.
    pub fn unsubscribe(&self, session: SessionId, filter: &str) -> bool {
        self.subscriptions.write().remove(filter, &session).is_some()
    }

    /// Number of subscriptions.
    pub fn subscription_count(&self) -> usize {
        self.subscriptions.read().len()
    }

    /// Number of retained messages.
    pub fn retained_count(&self) -> usize {
        self.retained.read().len()
    }

    /// Stores (non-empty payload) or clears (empty payload) the retained message of the
    /// topic of `publish`.
    pub fn retain(&self, publish: &Publish) {
        let mut store = self.retained.write();
        if publish.payload.is_empty() {
            store.remove(&publish.topic);
        } else {
            let message = RetainedMessage {
                publish: publish.clone(),
                expires_at: expires_at(publish),
            };
            store.set(&publish.topic, Arc::new(message));
        }
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
            targets.push(Target {
                subscriber: s,
                qos: s.options.qos,
                retain_as_published: s.options.retain_as_published,
                identifiers: s.identifier.into_iter().collect(),
            });
        });
        if targets.len() > 1 {
            merge_overlapping(&mut targets);
        }
        let mut cache = FrameCache::new();
        let mut delivered = 0;
        let expires_at = expires_at(publish);
        for target in targets {
            let session = &target.subscriber.session;
            let v5 = session.is_v5();
            let qos = publish.qos.min(target.qos);
            // [MQTT-3.3.1-9]: RETAIN is cleared on forwarding, unless a 5.0 subscriber asked
            // for Retain As Published.
            let retain = v5 && target.retain_as_published && publish.retain;
            let frame = if v5 && !target.identifiers.is_empty() {
                // Identifiers make the frame this subscriber's own: encoded for it alone.
                encode_forward(publish, v5, qos, retain, &target.identifiers)
            } else {
                cache.get(publish, v5, qos, retain).cloned()
            };
            let Some(frame) = frame else { continue };
            if session.deliver(Delivery { frame, v5, expires_at }, qos, publish.payload.len(), metrics) {
                delivered += 1;
            }
        }
        delivered
    }

    /// Queues for `session` the retained messages matching `filter`, at most at QoS
    /// `granted`, with RETAIN set [MQTT-3.3.1-8].
    pub fn send_retained(
        &self,
        session: &Session,
        filter: &str,
        granted: QoS,
        identifier: Option<u32>,
        metrics: &Metrics,
    ) {
        let now = Instant::now();
        let matches: Vec<Arc<RetainedMessage>> = {
            let mut found = Vec::new();
            self.retained.read().for_each_match(filter, |_, m| {
                if m.expires_at.is_none_or(|at| at > now) {
                    found.push(m.clone());
                }
            });
            found
        };
        let v5 = session.is_v5();
        for retained in matches {
            let message = &retained.publish;
            let qos = message.qos.min(granted);
            let frame = encode_forward(message, v5, qos, true, identifier.as_slice());
            if let Some(frame) = frame {
                let delivery = Delivery {
                    frame,
                    v5,
                    expires_at: retained.expires_at,
                };
                session.deliver(delivery, qos, message.payload.len(), metrics);
            }
        }
    }

    /// Removes expired retained messages; returns how many.
    pub fn purge_expired_retained(&self, now: Instant) -> usize {
        let mut store = self.retained.write();
        let before = store.len();
        store.retain(|_, m| m.expires_at.is_none_or(|at| at > now));
        before - store.len()
    }
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
