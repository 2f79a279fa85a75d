//! Shared subscriptions across nodes: each message goes to one member of a
//! `$share/{group}/{filter}` group cluster-wide.
//!
//! QoS 1/2 messages come from the group's durable JetStream consumer
//! ([`crate::shared_feed`]): they stay in the stream until a member is done with them,
//! wait there while no member is connected, and go to a member of another node when the
//! node of the member that had them dies. This module starts and stops a node's feed of
//! each group as its first member joins and its last one leaves.
//!
//! QoS 0 messages take a lighter way: a node with members of a group subscribes to the
//! filter's QoS 0 subjects ([`subject::Class::AtMostOnce`]) in a NATS queue group named
//! after the group (for each distinct (group, filter), one queue subscription per subject
//! and per member here, up to [`MAX_QUEUE_SUBSCRIPTIONS`]), on a second NATS connection of
//! its own that, unlike the main one, receives the node's own messages too. NATS hands
//! each message to one of the queue's subscribers at random, so to one node with a chance
//! that follows its number of members, whose router then picks one of its local members
//! by the configured strategy ([`tern_broker::BrokerState::deliver_shared_from_node`]). While that
//! connection is up, the router leaves shared groups out of what it routes
//! (`ClusterLink::routes_shared`): a message published on a node reaches its own members
//! through NATS as well. While it is down, each node's groups get the QoS 0 messages that
//! node routes, as on a single node (the router never routes QoS 1/2 to a group:
//! `ClusterLink::feeds_groups`).
//!
//! Limits of the QoS 0 way: a message NATS hands to a node whose last member left in that
//! instant is not given to another node; when the connection drops or comes back,
//! messages in flight may reach a group twice or not at all.

use crate::link::Shared;
use crate::outbound::Ticket;
use crate::shared_feed::{self, Registry};
use crate::{subject, wire};
use futures_util::StreamExt;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;
use tern_broker::BrokerState;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// Most queue subscriptions a node keeps per subject of a group (one per member): past
/// this many members on a node, its share of the QoS 0 messages stops growing.
const MAX_QUEUE_SUBSCRIPTIONS: usize = 16;

/// A change of this node's membership in shared groups, for the queue subscribing task.
#[derive(Debug)]
pub enum Change {
    Add(String, String),
    /// The group's number of members here changed (it has some): as many queue
    /// subscriptions per subject, up to [`MAX_QUEUE_SUBSCRIPTIONS`].
    Members(String, String, usize),
    Remove(String, String),
    /// Settled once the changes before it are active at the NATS server.
    Barrier(Ticket),
}

/// This node's shared groups, counted per (group, filter), and the connection's state.
#[derive(Debug)]
pub struct Shares {
    counts: Mutex<HashMap<(String, String), usize>>,
    changes: mpsc::UnboundedSender<Change>,
    /// Whether the queue connection is up (then groups are served through NATS).
    pub connected: Arc<AtomicBool>,
    /// Messages NATS handed to this node for a group that had no member to take them.
    pub unplaced: Arc<AtomicU64>,
    /// The groups' QoS 1/2 feeds on this node.
    pub durable: Arc<Registry>,
}

impl Shares {
    pub fn new(changes: mpsc::UnboundedSender<Change>) -> Shares {
        Shares {
            counts: Mutex::new(HashMap::new()),
            changes,
            connected: Arc::new(AtomicBool::new(false)),
            unplaced: Arc::new(AtomicU64::new(0)),
            durable: Arc::default(),
        }
    }

    pub fn added(&self, group: &str, filter: &str) {
        let mut counts = self.counts.lock();
        let count = counts.entry((group.to_string(), filter.to_string())).or_insert(0);
        *count += 1;
        if *count == 1 {
            let _ = self.changes.send(Change::Add(group.to_string(), filter.to_string()));
        } else if *count <= MAX_QUEUE_SUBSCRIPTIONS {
            let change = Change::Members(group.to_string(), filter.to_string(), *count);
            let _ = self.changes.send(change);
        }
    }

    pub fn removed(&self, group: &str, filter: &str) {
        let mut counts = self.counts.lock();
        let key = (group.to_string(), filter.to_string());
        let Some(count) = counts.get_mut(&key) else { return };
        *count -= 1;
        if *count == 0 {
            counts.remove(&key);
            let _ = self.changes.send(Change::Remove(key.0, key.1));
        } else if *count < MAX_QUEUE_SUBSCRIPTIONS {
            let _ = self.changes.send(Change::Members(key.0, key.1, *count));
        }
    }

    /// A SUBACK waits for this too (the task settles the ticket).
    pub fn barrier(&self, ticket: Ticket) {
        let _ = self.changes.send(Change::Barrier(ticket));
    }

    /// Distinct (group, filter) pairs this node has members of.
    pub fn count(&self) -> usize {
        self.counts.lock().len()
    }
}

/// Appends the shared subscriptions' metric families (Prometheus text format).
pub fn render(node: &str, groups: usize, unplaced: u64, out: &mut String) {
    use std::fmt::Write;
    let _ = write!(
        out,
        "# HELP tern_cluster_shared_groups Distinct shared subscriptions ($share/group/filter) this node has members of, each with NATS queue subscriptions for QoS 0 (one per member here and subject, up to 16) and a reader of the group's JetStream consumer for QoS 1/2.\n\
         # TYPE tern_cluster_shared_groups gauge\ntern_cluster_shared_groups{{node=\"{node}\"}} {groups}\n\
         # HELP tern_cluster_shared_unplaced_total QoS 0 messages NATS handed this node for a shared subscription that had no member here to take them.\n\
         # TYPE tern_cluster_shared_unplaced_total counter\ntern_cluster_shared_unplaced_total{{node=\"{node}\"}} {unplaced}\n"
    );
}

/// The queue group of `group`: its name as one subject token.
fn queue_name(group: &str) -> Option<String> {
    Some(format!("tern-share.{}", subject::topic_key(group)?))
}

/// One (group, filter) this node has members of: per subject of its QoS 0 messages, the
/// tasks of its queue subscriptions (one per member here), and its QoS 1/2 feed's number.
struct Served {
    subjects: Vec<(String, Vec<JoinHandle<()>>)>,
    queue: String,
    fed: Option<u32>,
}

impl Served {
    fn stop(self, durable: &Registry) {
        self.subjects.iter().flat_map(|(_, t)| t).for_each(JoinHandle::abort);
        self.fed.into_iter().for_each(|id| durable.stop(id));
    }
}

/// What the queue subscriptions' tasks need.
struct Queues {
    client: async_nats::Client,
    state: Arc<BrokerState>,
    shared: Arc<Shared>,
    unplaced: Arc<AtomicU64>,
}

impl Queues {
    /// Makes (or ends) queue subscriptions of `served` until each subject has `wanted`:
    /// NATS hands each message to one subscription of the queue group, at random, so a
    /// node's share of the group's QoS 0 messages follows its number of members.
    async fn keep(&self, group: &str, filter: &str, served: &mut Served, wanted: usize) {
        for (subject, tasks) in &mut served.subjects {
            while tasks.len() > wanted {
                if let Some(task) = tasks.pop() {
                    task.abort();
                }
            }
            while tasks.len() < wanted {
                match self.client.queue_subscribe(subject.clone(), served.queue.clone()).await {
                    Ok(subscriber) => {
                        let feed = Feed {
                            state: self.state.clone(),
                            shared: self.shared.clone(),
                            unplaced: self.unplaced.clone(),
                            group: group.to_string(),
                            filter: filter.to_string(),
                        };
                        tasks.push(tokio::spawn(feed.run(subscriber)));
                    }
                    Err(e) => {
                        tracing::error!("cluster: cannot subscribe to {subject} in queue {}: {e}", served.queue);
                        break;
                    }
                }
            }
        }
    }
}

/// Follows `changes`, keeping queue subscriptions for each (group, filter) (one per
/// subject and member here, see [`Queues::keep`]) and its QoS 1/2 feed, until `changes`
/// closes.
pub async fn run(
    client: async_nats::Client,
    state: Arc<BrokerState>,
    shared: Arc<Shared>,
    (unplaced, durable): (Arc<AtomicU64>, Arc<Registry>),
    mut changes: mpsc::UnboundedReceiver<Change>,
) {
    let mut subscriptions: HashMap<(String, String), Served> = HashMap::new();
    let queues = Queues {
        client: client.clone(),
        state: state.clone(),
        shared: shared.clone(),
        unplaced,
    };
    while let Some(change) = changes.recv().await {
        match change {
            Change::Add(group, filter) => {
                // QoS 1/2 from the group's consumer (made before the SUBACK goes).
                let fed =
                    shared_feed::start(&durable, state.clone(), shared.clone(), group.clone(), filter.clone()).await;
                let subjects = subject::class_filter_subjects(subject::Class::AtMostOnce, &filter);
                let (Some(subjects), Some(queue)) = (subjects, queue_name(&group)) else {
                    tracing::warn!("cluster: the shared subscription $share/{group}/{filter} is too long for NATS: its members get only this node's messages");
                    let served = Served {
                        subjects: Vec::new(),
                        queue: String::new(),
                        fed,
                    };
                    subscriptions.insert((group, filter), served);
                    continue;
                };
                let mut served = Served {
                    subjects: subjects.into_iter().map(|s| (s, Vec::new())).collect(),
                    queue,
                    fed,
                };
                queues.keep(&group, &filter, &mut served, 1).await;
                subscriptions.insert((group, filter), served);
            }
            Change::Members(group, filter, members) => {
                let key = (group, filter);
                if let Some(served) = subscriptions.get_mut(&key) {
                    let wanted = members.min(MAX_QUEUE_SUBSCRIPTIONS);
                    queues.keep(&key.0, &key.1, served, wanted).await;
                }
            }
            Change::Remove(group, filter) => {
                if let Some(served) = subscriptions.remove(&(group, filter)) {
                    served.stop(&durable);
                }
            }
            Change::Barrier(ticket) => {
                // As for plain subscriptions (crate::inbound): a request nobody answers
                // comes back after the server has handled the SUBs before it.
                let request = client.request("_TERN.barrier", bytes::Bytes::new());
                let _ = tokio::time::timeout(Duration::from_secs(2), request).await;
                ticket.settle();
            }
        }
    }
    for served in subscriptions.into_values() {
        served.stop(&durable);
    }
}

/// One queue subscription's messages, handed to the group's local members.
struct Feed {
    state: Arc<BrokerState>,
    shared: Arc<Shared>,
    unplaced: Arc<AtomicU64>,
    group: String,
    filter: String,
}

impl Feed {
    async fn run(self, mut subscriber: async_nats::Subscriber) {
        while let Some(message) = subscriber.next().await {
            let record = match wire::decode(&message.payload) {
                Ok(record) => record,
                Err(e) => {
                    self.shared.dropped_inbound.fetch_add(1, Relaxed);
                    tracing::debug!("cluster: a message on {} was dropped: {e}", message.subject);
                    continue;
                }
            };
            if record.publish.qos != tern_proto::QoS::AtMostOnce {
                // Not on these subjects, but never given twice: the group's consumer feeds
                // QoS 1/2 (crate::shared_feed).
                continue;
            }
            // RETAIN as published: the router clears it unless the member asked otherwise.
            if !self
                .state
                .deliver_shared_from_node(&record.publish, &self.group, &self.filter)
            {
                let n = self.unplaced.fetch_add(1, Relaxed) + 1;
                if n.is_power_of_two() {
                    tracing::warn!(
                        "cluster: a message for $share/{}/{} found no member on this node ({n} so far)",
                        self.group,
                        self.filter
                    );
                }
            }
        }
    }
}
