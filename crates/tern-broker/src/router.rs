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
use tern_core::{RetainedStore, SubscriptionTrie};
use tern_proto::{ProtocolVersion, Publish, PublishFrame, QoS, SubscriptionOptions};

/// A subscription as the trie stores it.
#[derive(Debug, Clone)]
pub struct Subscriber {
    pub session: Arc<Session>,
    pub options: SubscriptionOptions,
}

/// Subscriptions and retained messages of the whole broker.
#[derive(Debug, Default)]
pub struct Router {
    subscriptions: RwLock<SubscriptionTrie<SessionId, Subscriber>>,
    /// Retained messages in their forwarded form (DUP clear, no packet id).
    retained: RwLock<RetainedStore<Arc<Publish>>>,
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
            self.frames[index] = Some(encode_forward(publish, v5, qos, retain)?);
        }
        self.frames[index].as_ref()
    }
}

fn encode_forward(publish: &Publish, v5: bool, qos: QoS, retain: bool) -> Option<PublishFrame> {
    let version = if v5 {
        ProtocolVersion::V5
    } else {
        ProtocolVersion::V3_1_1
    };
    let mut p = publish.clone();
    p.qos = qos;
    p.retain = retain;
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
    pub fn subscribe(&self, session: &Arc<Session>, filter: &str, options: SubscriptionOptions) -> bool {
        let subscriber = Subscriber {
            session: session.clone(),
            options,
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
            store.set(&publish.topic, Arc::new(publish.clone()));
        }
    }

    /// Delivers `publish` (its forwarded form) to every matching subscription and
    /// returns the number of sessions it was queued for.
    pub fn publish(&self, publish: &Publish, metrics: &Metrics) -> usize {
        let trie = self.subscriptions.read();
        let mut targets: Vec<(&Subscriber, QoS, bool)> = Vec::new();
        trie.for_each_match(&publish.topic, |_, s| {
            targets.push((s, s.options.qos, s.options.retain_as_published));
        });
        if targets.len() > 1 {
            merge_overlapping(&mut targets);
        }
        let mut cache = FrameCache::new();
        let mut delivered = 0;
        for (subscriber, granted, retain_as_published) in targets {
            let session = &subscriber.session;
            let v5 = session.is_v5();
            let qos = publish.qos.min(granted);
            // [MQTT-3.3.1-9]: RETAIN is cleared on forwarding, unless a 5.0 subscriber asked
            // for Retain As Published.
            let retain = v5 && retain_as_published && publish.retain;
            let Some(frame) = cache.get(publish, v5, qos, retain) else {
                continue;
            };
            let delivery = Delivery {
                frame: frame.clone(),
                v5,
            };
            if session.deliver(delivery, qos, publish.payload.len(), metrics) {
                delivered += 1;
            }
        }
        delivered
    }

    /// Queues for `session` the retained messages matching `filter`, at most at QoS
    /// `granted`, with RETAIN set [MQTT-3.3.1-8].
    pub fn send_retained(&self, session: &Session, filter: &str, granted: QoS, metrics: &Metrics) {
        let matches: Vec<Arc<Publish>> = {
            let mut found = Vec::new();
            self.retained
                .read()
                .for_each_match(filter, |_, m| found.push(m.clone()));
            found
        };
        let v5 = session.is_v5();
        for message in matches {
            let qos = message.qos.min(granted);
            if let Some(frame) = encode_forward(&message, v5, qos, true) {
                session.deliver(Delivery { frame, v5 }, qos, message.payload.len(), metrics);
            }
        }
    }
}

/// Folds the several matching subscriptions of one session into one entry with the
/// highest QoS [MQTT-3.3.5-1].
fn merge_overlapping(targets: &mut Vec<(&Subscriber, QoS, bool)>) {
    targets.sort_by_key(|(s, _, _)| s.session.id);
    targets.dedup_by(|later, kept| {
        if later.0.session.id != kept.0.session.id {
            return false;
        }
        kept.1 = kept.1.max(later.1);
        kept.2 |= later.2;
        true
    });
}
