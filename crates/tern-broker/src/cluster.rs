//! The cluster seam: how a cluster engine beside the broker (tern-cluster, on NATS
//! JetStream) sees what this node publishes and subscribes to, and hands it what the
//! other nodes publish.
//!
//! The broker knows nothing of NATS: an embedder installs a [`ClusterLink`] with
//! `BrokerHandle::set_cluster` before the broker runs. Without one, the only cost on the
//! publish path is one `OnceLock` load per routed message. With one:
//! - every message accepted on this node (a client's PUBLISH, a will, the admin API) is
//!   handed to [`ClusterLink::forward`] after it was routed locally;
//! - the router reports each subscription added or removed ([`ClusterLink::filter_added`],
//!   [`ClusterLink::filter_removed`]), so the engine can keep one subscription per
//!   distinct local filter;
//! - a QoS 1/2 PUBLISH of a client is refused while [`ClusterLink::accepts_reliable`] is
//!   false, and its PUBACK / PUBREC waits on the connection's [`AckTrack`] until the
//!   engine has settled the ticket it took for it (stored on a quorum); a failed ticket
//!   closes the connection without those acknowledgements, so the client sends again;
//! - a SUBACK waits in the same way until the new subscriptions are active in the
//!   cluster ([`ClusterLink::subscribed`]);
//! - messages from other nodes come in through `BrokerState::deliver_from_node` and
//!   `BrokerState::retain_from_node`.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::SystemTime;
use tern_proto::{Publish, Will};
use tokio::sync::Notify;

/// What became of a connection's will, for an engine that keeps the wills of its node's
/// connections where the other nodes find them (they publish them if this node dies).
#[derive(Debug, Clone, Copy)]
pub enum WillChange<'a> {
    /// A connection was accepted at `connected_at` with this will (or none), asking for
    /// a clean start or to resume its session (which cancels a will held for its delay).
    Connected {
        will: Option<&'a Will>,
        connected_at: SystemTime,
        clean_start: bool,
    },
    /// The connection of `connected_at` closed. Its will was published or dropped at
    /// once (`delayed_until: None`), or waits for its Will Delay Interval until then.
    Closed {
        connected_at: SystemTime,
        delayed_until: Option<SystemTime>,
    },
    /// A will held for its delay was published (due, or its session ended).
    DelayedPublished,
}

/// One node of the cluster as this node sees it (from the nodes' heartbeats).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeView {
    pub name: String,
    /// Milliseconds since its last heartbeat reached this node.
    pub heartbeat_age_ms: u64,
    /// Whether its heartbeat is younger than the node timeout.
    pub healthy: bool,
    /// Its figures as of that heartbeat.
    pub clients: u64,
    pub messages_in: u64,
    pub messages_out: u64,
}

/// The cluster as this node sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterView {
    /// This node's name.
    pub node: String,
    /// Every node heard of lately (this one included), by name.
    pub nodes: Vec<NodeView>,
}

/// Why a connection closes when the cluster could not store one of its QoS 1/2 publishes.
pub(crate) const FAILED: &str = "the cluster could not store a QoS 1/2 message: closed without acknowledging it";

/// Resolves when the cluster has settled or failed a ticket of `track` (never without one).
pub(crate) async fn changed(track: Option<&AckTrack>) {
    match track {
        Some(track) => track.changed().await,
        None => std::future::pending().await,
    }
}

/// A persistent session as the cluster holds it, to be resumed on this node: its
/// subscriptions (filter, options, 5.0 Subscription Identifier), and the messages the
/// node it leaves had in flight to its client.
#[derive(Debug, Clone, Default)]
pub struct SessionSnapshot {
    pub subscriptions: Vec<(tern_proto::ByteStr, tern_proto::SubscriptionOptions, Option<u32>)>,
    pub inflight: Vec<HandedOver>,
    /// Packet ids of QoS 2 messages the client published there, PUBREL not yet received.
    pub incoming_qos2: Vec<u16>,
}

/// What a node hands over of a persistent session it drops for another node: the
/// messages in flight to the client, and the packet ids of the QoS 2 messages the client
/// published and has not released (a resend of one is not routed twice; its PUBREL is
/// answered as known).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SessionHandover {
    pub inflight: Vec<HandedOver>,
    pub incoming_qos2: Vec<u16>,
}

/// A QoS 1/2 message a node had in flight to a persistent session's client when the
/// session moved to another node: what that node needs to finish it under the same packet
/// id (the PUBLISH again with DUP, or the PUBREL), so that a QoS 2 message the client has
/// is not sent to it as a new one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandedOver {
    /// Its sequence in the cluster's message stream; 0 for a shared group's message (which
    /// the old node counted as done for the group: only this client finishes it).
    pub seq: u64,
    pub packet_id: u16,
    pub stage: tern_core::Stage,
    /// Whether `frame` is encoded for MQTT 5.0.
    pub v5: bool,
    /// The PUBLISH, in the local store's form (packet id left as a placeholder).
    pub frame: Vec<u8>,
    /// What was left of its Message Expiry Interval.
    pub expires_in: Option<std::time::Duration>,
}

/// What the cluster says of a client id's persistent session before CONNACK.
#[derive(Debug)]
pub enum Resume {
    /// This node's own session (if any) is the current one: resumed as on a single node.
    Local,
    /// No session is held anywhere: whatever this node keeps for the client id is stale
    /// and is discarded (the client starts afresh, session present 0).
    Fresh,
    /// The session lives on in the cluster (made on another node): this node's copy, if
    /// any, is discarded and the session is made here from the snapshot (session present 1).
    Remote(SessionSnapshot),
    /// The cluster cannot tell now (JetStream unavailable): the connection is refused
    /// (server unavailable), and the client tries again.
    Unavailable(String),
}

/// The answer of [`ClusterLink::resume_session`].
pub type ResumeFuture = std::pin::Pin<Box<dyn std::future::Future<Output = Resume> + Send>>;

/// What a cluster engine implements to plug into the broker.
pub trait ClusterLink: Send + Sync + std::fmt::Debug {
    /// Whether a QoS 1/2 message can be stored by the cluster now; while not, clients'
    /// QoS 1/2 publishes are refused (5.0: 0x97, 3.x: the connection is closed without
    /// an acknowledgement).
    fn accepts_reliable(&self) -> bool;

    /// A message accepted on this node and routed to its local subscribers, for the other
    /// nodes (and, if retained, for the cluster's retained store). `track` is given for a
    /// client's QoS 1/2 PUBLISH: the engine takes a ticket from it ([`AckTrack::issue`])
    /// and settles or fails it once the cluster has answered. `publisher` is the client id
    /// of the client that published it (for No Local on other nodes). Must not block.
    fn forward(&self, publish: &Publish, publisher: Option<&str>, track: Option<&Arc<AckTrack>>);

    /// The retained message of `topic` was cleared on this node without a message being
    /// routed (the admin API): cleared on the other nodes too.
    fn clear_retained(&self, topic: &str);

    /// The connection of `track` subscribed: its SUBACK (and all its output) waits until
    /// the subscriptions made so far are active in the cluster (the engine takes a ticket
    /// and settles it then), so that a message published on another node right after the
    /// SUBACK reaches it.
    fn subscribed(&self, track: &Arc<AckTrack>);

    /// Asked during CONNECT, before CONNACK (the handshake waits a few seconds at most):
    /// where `client_id`'s session is. With `clean_start` the engine ends the session
    /// wherever it is held and answers [`Resume::Fresh`].
    fn resume_session(&self, client_id: &str, clean_start: bool) -> ResumeFuture {
        let _ = (client_id, clean_start);
        Box::pin(async { Resume::Local })
    }

    /// Whether the engine feeds persistent sessions: then their QoS 1/2 messages come
    /// only from the engine (`Router::publish_to_session`), each given back to it by
    /// [`ClusterLink::session_acked`] when the client is done with it.
    fn feeds_sessions(&self) -> bool {
        false
    }

    /// The persistent session `session` of `client_id` is attached to a connection on
    /// this node (and fed by the engine from now on).
    fn session_attached(&self, client_id: &str, session: u64) {
        let _ = (client_id, session);
    }

    /// A fed session's subscriptions changed. With `track` (a SUBSCRIBE), the engine
    /// takes a ticket and settles it once messages for the new subscriptions are kept
    /// for the session: the SUBACK waits for it.
    fn session_subscribed(&self, client_id: &str, session: u64, track: Option<&Arc<AckTrack>>) {
        let _ = (client_id, session, track);
    }

    /// The client is done with the fed message `seq` (acknowledged, expired or dropped).
    fn session_acked(&self, client_id: &str, session: u64, seq: u64) {
        let _ = (client_id, session, seq);
    }

    /// A fed session ended (expired, replaced by a clean start, or no longer persistent).
    fn session_ended(&self, client_id: &str, session: u64) {
        let _ = (client_id, session);
    }

    /// A session subscribed to `filter` (a topic filter; a shared subscription's filter
    /// comes without its `$share/{group}/`). Called once per (session, filter).
    fn filter_added(&self, filter: &str);

    /// A session's subscription to `filter` ended.
    fn filter_removed(&self, filter: &str);

    /// A session joined the shared subscription `$share/{group}/{filter}` (called once
    /// per (session, shared subscription)). By default counted as a plain filter.
    fn share_added(&self, group: &str, filter: &str) {
        let _ = group;
        self.filter_added(filter);
    }

    /// A session left the shared subscription `$share/{group}/{filter}`.
    fn share_removed(&self, group: &str, filter: &str) {
        let _ = group;
        self.filter_removed(filter);
    }

    /// Whether the engine balances shared subscriptions across the nodes now: then the
    /// router leaves shared groups out of what it routes, and the engine hands each
    /// message to one node's group through `BrokerState::deliver_shared_from_node`.
    fn routes_shared(&self) -> bool {
        false
    }

    /// Whether the engine feeds shared groups their QoS 1/2 messages itself (from the
    /// cluster's store, through `Router::publish_to_group_fed`, each given back by
    /// [`ClusterLink::session_acked`] or [`ClusterLink::shared_released`]): then the
    /// router never routes a QoS 1/2 message to a shared group.
    fn feeds_groups(&self) -> bool {
        false
    }

    /// A member left with the fed shared-group message `seq` unacknowledged: the engine
    /// gives it to another member (of any node).
    fn shared_released(&self, seq: u64) {
        let _ = seq;
    }

    /// What became of the will of a connection of `client_id` on this node.
    fn will_changed(&self, client_id: &str, change: WillChange<'_>) {
        let _ = (client_id, change);
    }

    /// The cluster as this node sees it, if the engine keeps such a view.
    fn view(&self) -> Option<ClusterView> {
        None
    }
}

/// What one connection waits for from the cluster (QoS 1/2 publishes to be stored,
/// subscriptions to become active): tickets are issued and settled, in any order; the
/// connection holds its output while any is outstanding.
#[derive(Debug, Default)]
pub struct AckTrack {
    outstanding: AtomicU64,
    failed: AtomicBool,
    wake: Notify,
}

impl AckTrack {
    /// Takes a ticket (called by the engine on the connection's task).
    pub fn issue(&self) {
        self.outstanding.fetch_add(1, Ordering::AcqRel);
    }

    /// One ticket is done with (stored, or active).
    pub fn settle(&self) {
        let _ = self
            .outstanding
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
        self.wake.notify_one();
    }

    /// A ticket could not be stored: the connection must close without acknowledging.
    pub fn fail(&self) {
        self.failed.store(true, Ordering::Release);
        self.settle();
    }

    /// Whether some ticket is outstanding.
    pub fn pending(&self) -> bool {
        self.outstanding.load(Ordering::Acquire) > 0
    }

    /// Whether some ticket failed.
    pub fn failed(&self) -> bool {
        self.failed.load(Ordering::Acquire)
    }

    /// Resolves when the state may have changed (a ticket settled or failed).
    pub async fn changed(&self) {
        self.wake.notified().await
    }

    /// Waits (at most `limit`) until nothing is pending; returns whether everything
    /// issued was stored.
    pub async fn wait_settled(&self, limit: std::time::Duration) -> bool {
        let _ = tokio::time::timeout(limit, async {
            while self.pending() && !self.failed() {
                self.changed().await;
            }
        })
        .await;
        !self.pending() && !self.failed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_track_is_pending_until_every_ticket_settles() {
        let track = AckTrack::default();
        assert!(!track.pending());
        track.issue();
        track.issue();
        assert!(track.pending());
        track.settle();
        assert!(track.pending());
        track.settle();
        assert!(!track.pending());
        track.settle();
        assert!(!track.pending(), "a stray settle does not go below zero");
        assert!(!track.failed());
        track.issue();
        track.fail();
        assert!(track.failed());
        assert!(!track.pending());
    }

    #[tokio::test]
    async fn waiting_ends_when_the_tickets_settle() {
        let track = Arc::new(AckTrack::default());
        track.issue();
        let settler = track.clone();
        tokio::spawn(async move { settler.settle() });
        assert!(track.wait_settled(std::time::Duration::from_secs(5)).await);
    }
}
