//! The broker's side of the cluster: [`NatsLink`] implements the broker's `ClusterLink`
//! seam. Everything it does on the broker's tasks is synchronous and short: it encodes
//! the message once, takes a ticket for a QoS 1/2 publish, and queues a command for the
//! publishing task ([`crate::outbound`]); subscription changes are counted per distinct
//! filter and only the first and last of each reach the subscribing task
//! ([`crate::inbound`]).

use crate::outbound::{Outbound, Ticket};
use crate::subject;
use crate::wire;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use tern_broker::cluster::{AckTrack, ClusterLink, ClusterView, WillChange};
use tern_broker::cluster::{Resume, ResumeFuture};
use tern_proto::{Publish, QoS};
use tokio::sync::mpsc;

/// A change of this node's interest in a filter, for the subscribing task.
#[derive(Debug)]
pub enum Interest {
    Add(String),
    Remove(String),
    /// Settled once the changes before it are active at the NATS server.
    Barrier(Ticket),
}

/// State shared by the link and the cluster's tasks.
#[derive(Debug)]
pub struct Shared {
    /// This node's name.
    pub node: Arc<str>,
    /// `<node>:<incarnation>`: who this run of the node is, in every message it sends.
    pub origin: Arc<str>,
    /// Whether QoS 1/2 messages can be stored now (NATS connected, JetStream answering).
    pub available: AtomicBool,
    /// Messages not sent to the cluster (queue full, topic too long to map, encoding).
    pub not_forwarded: AtomicU64,
    /// Messages from other nodes dropped (undecodable, or seen already).
    pub dropped_inbound: AtomicU64,
    /// The persistent sessions' part of the engine.
    pub sessions: std::sync::OnceLock<Arc<crate::sessions::Engine>>,
    /// When the NATS connection went away, for catching up once it is back.
    pub gap: crate::inbound::Gap,
}

/// The installed `ClusterLink`.
#[derive(Debug)]
pub struct NatsLink {
    shared: Arc<Shared>,
    /// Numbers this node's messages, from 1.
    seq: AtomicU64,
    outbound: mpsc::Sender<Outbound>,
    interest: mpsc::UnboundedSender<Interest>,
    /// Sessions subscribed, per distinct filter.
    filters: Mutex<HashMap<Box<str>, usize>>,
    /// Shared subscriptions across nodes, the wills for the other nodes and the view of
    /// the nodes (set by [`NatsLink::with_parts`]).
    parts: Option<Parts>,
}

/// The link's ends towards the shared subscriptions, wills and cluster view.
#[derive(Debug)]
pub struct Parts {
    pub shares: crate::shared::Shares,
    pub wills: mpsc::Sender<crate::wills::Command>,
    /// Will changes dropped because the wills task's queue was full.
    pub wills_dropped: AtomicU64,
    pub view: Arc<crate::view::Nodes>,
}

impl NatsLink {
    pub fn new(
        shared: Arc<Shared>,
        outbound: mpsc::Sender<Outbound>,
        interest: mpsc::UnboundedSender<Interest>,
    ) -> NatsLink {
        NatsLink {
            shared,
            seq: AtomicU64::new(0),
            outbound,
            interest,
            filters: Mutex::new(HashMap::new()),
            parts: None,
        }
    }

    /// The link with its shared subscriptions, wills and view.
    pub fn with_parts(mut self, parts: Parts) -> NatsLink {
        self.parts = Some(parts);
        self
    }

    /// Distinct (group, filter) shared subscriptions of this node.
    pub fn share_count(&self) -> usize {
        self.parts.as_ref().map_or(0, |p| p.shares.count())
    }

    /// Queues `command`; a full queue drops it, which fails its ticket (the publisher is
    /// not acknowledged and sends again) or, at QoS 0, leaves the other nodes without it.
    fn queue(&self, command: Outbound) {
        if self.outbound.try_send(command).is_err() {
            self.count_not_forwarded("the queue towards NATS is full");
        }
    }

    /// Distinct filters this node subscribes to in NATS.
    pub fn filter_count(&self) -> usize {
        self.filters.lock().len()
    }

    fn count_not_forwarded(&self, why: &str) {
        let n = self.shared.not_forwarded.fetch_add(1, Relaxed) + 1;
        if n.is_power_of_two() {
            tracing::warn!("cluster: a message was not sent to the other nodes: {why} ({n} so far)");
        }
    }
}

impl ClusterLink for NatsLink {
    fn accepts_reliable(&self) -> bool {
        self.shared.available.load(Relaxed)
    }

    fn forward(&self, publish: &Publish, publisher: Option<&str>, track: Option<&Arc<AckTrack>>) {
        // QoS 0 under roots of its own, which the stream does not store.
        let class = subject::Class::of(publish.qos);
        let Some(subject) = subject::class_topic_subject(class, &publish.topic) else {
            self.count_not_forwarded("its topic is too long for a NATS subject");
            return;
        };
        let seq = self.seq.fetch_add(1, Relaxed) + 1;
        let body = match wire::encode_from(publish, &self.shared.origin, publisher, seq) {
            Ok(body) => body,
            Err(e) => {
                self.count_not_forwarded(&e.to_string());
                return;
            }
        };
        let reliable = publish.qos != QoS::AtMostOnce;
        self.queue(Outbound::Message {
            subject,
            body: body.clone(),
            reliable,
            ticket: track.map(Ticket::new),
        });
        if publish.retain {
            if let Some(key) = subject::topic_key(&publish.topic) {
                self.queue(Outbound::Retained {
                    key,
                    body,
                    ticket: track.map(Ticket::new),
                });
            }
        }
    }

    fn clear_retained(&self, topic: &str) {
        let clear = crate::retained::clearing(topic);
        let seq = self.seq.fetch_add(1, Relaxed) + 1;
        if let (Some(key), Ok(body)) = (
            subject::topic_key(topic),
            wire::encode(&clear, &self.shared.origin, seq),
        ) {
            self.queue(Outbound::Retained {
                key,
                body,
                ticket: None,
            });
        }
    }

    fn subscribed(&self, track: &Arc<AckTrack>) {
        // A closed channel (the task gone) drops the barrier, which fails its ticket.
        let _ = self.interest.send(Interest::Barrier(Ticket::new(track)));
        if let Some(parts) = &self.parts {
            parts.shares.barrier(Ticket::new(track));
        }
    }

    fn share_added(&self, group: &str, filter: &str) {
        match &self.parts {
            Some(parts) => parts.shares.added(group, filter),
            None => self.filter_added(filter),
        }
    }

    fn share_removed(&self, group: &str, filter: &str) {
        match &self.parts {
            Some(parts) => parts.shares.removed(group, filter),
            None => self.filter_removed(filter),
        }
    }

    fn routes_shared(&self) -> bool {
        self.parts.as_ref().is_some_and(|p| p.shares.connected.load(Relaxed))
    }

    fn feeds_groups(&self) -> bool {
        self.parts.is_some()
    }

    fn shared_released(&self, seq: u64) {
        if let Some(parts) = self
            .parts
            .as_ref()
            .filter(|_| crate::shared_feed::Registry::is_group(seq))
        {
            parts.shares.durable.released(seq);
        }
    }

    fn will_changed(&self, client_id: &str, change: WillChange<'_>) {
        let Some(parts) = &self.parts else { return };
        if let Some(command) = crate::wills::command(client_id, change, &self.shared.origin) {
            if parts.wills.try_send(command).is_err() {
                let n = parts.wills_dropped.fetch_add(1, Relaxed) + 1;
                if n.is_power_of_two() {
                    tracing::warn!(
                        client = client_id,
                        "cluster: the wills queue is full: a will is not kept for the other nodes ({n} so far)"
                    );
                }
            }
        }
    }

    fn view(&self) -> Option<ClusterView> {
        self.parts.as_ref().map(|p| p.view.view())
    }

    fn filter_added(&self, filter: &str) {
        let mut filters = self.filters.lock();
        let count = filters.entry(Box::from(filter)).or_insert(0);
        *count += 1;
        if *count == 1 {
            let _ = self.interest.send(Interest::Add(filter.to_string()));
        }
    }

    fn filter_removed(&self, filter: &str) {
        let mut filters = self.filters.lock();
        let Some(count) = filters.get_mut(filter) else {
            return;
        };
        *count -= 1;
        if *count == 0 {
            filters.remove(filter);
            let _ = self.interest.send(Interest::Remove(filter.to_string()));
        }
    }

    fn resume_session(&self, client_id: &str, clean_start: bool) -> ResumeFuture {
        match self.shared.sessions.get() {
            Some(engine) => Box::pin(engine.clone().resume(client_id.to_string(), clean_start)),
            None => Box::pin(async { Resume::Local }),
        }
    }

    fn feeds_sessions(&self) -> bool {
        self.shared.sessions.get().is_some()
    }

    fn session_attached(&self, client_id: &str, session: u64) {
        if let Some(engine) = self.shared.sessions.get() {
            engine.attached(client_id, session);
        }
    }

    fn session_subscribed(&self, client_id: &str, session: u64, track: Option<&Arc<AckTrack>>) {
        if let Some(engine) = self.shared.sessions.get() {
            engine.subscribed(client_id, session, track.map(Ticket::new));
        }
    }

    fn session_acked(&self, client_id: &str, session: u64, seq: u64) {
        if crate::shared_feed::Registry::is_group(seq) {
            if let Some(parts) = &self.parts {
                parts.shares.durable.acked(seq);
            }
            return;
        }
        if let Some(engine) = self.shared.sessions.get() {
            engine.command(client_id, session, crate::feed::Command::Acked(seq));
        }
    }

    fn session_ended(&self, client_id: &str, session: u64) {
        if let Some(engine) = self.shared.sessions.get() {
            engine.ended(client_id, session);
        }
    }
}
