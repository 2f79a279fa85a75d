//! The QoS 1/2 messages of shared subscriptions across nodes: one durable JetStream
//! consumer per `$share/{group}/{filter}` on the `MQTT_MSGS` stream, read by every node
//! that has a connected member of the group, so that each message goes to one member in
//! the cluster and stays in the stream until that member is done with it.
//!
//! The consumer is named from a hash of (group, filter) (`tern-share-<hex>`), so every
//! node finds the same one; the first node that gets a member makes it (before the
//! member's SUBACK), from the next message stored on. A node reads it through short pull
//! requests while one of its members of the group is connected, one request open per
//! connected member (up to [`MAX_PULLS`]): JetStream hands the messages to the waiting
//! requests in turn, one each, so each node's share follows its number of connected
//! members. The node's router gives the message to one of those members ([`tern_broker::router::Router::publish_to_group_fed`]), numbered so that
//! the member's PUBACK / PUBCOMP comes back here ([`Registry::acked`]); only then is the
//! message acknowledged in JetStream. A member that goes away with messages unacknowledged
//! hands them back ([`Registry::released`]): they are given up at once (a negative
//! acknowledgement) and JetStream hands them to a member on any node. If the node dies,
//! JetStream hands out its unacknowledged messages again after [`ACK_WAIT`]; while a
//! member is connected and simply slow, the wait is extended every few seconds. While no
//! member is connected anywhere, nobody reads and the messages wait in the stream (an
//! hour at most, the stream's limit).
//!
//! Each node with members of a group (connected or not) has a key in the `MQTT_SHARES`
//! bucket, `<consumer>.<node>`, written before it reads. When its last member leaves
//! (unsubscribes, or its session ends), the node deletes its key and looks up the keys of
//! the other nodes it sees ([`crate::view`]); if none has one and no message waits in the
//! consumer, it deletes the consumer. The keys of a node that died are removed by the
//! others once the heartbeats say it is gone ([`sweep_dead_nodes`]), with the consumer if
//! no member is left. A consumer left behind (messages waiting, the bucket out of reach)
//! is deleted by JetStream once nobody has read it for [`INACTIVE_FOR`].

use crate::link::Shared;
use crate::session_record::consumer_subjects;
use crate::wire;
use async_nats::jetstream::consumer::{pull, AckPolicy, DeliverPolicy, PullConsumer};
use async_nats::jetstream::message::Acker;
use async_nats::jetstream::{kv, AckKind};
use futures_util::stream::SelectAll;
use futures_util::StreamExt;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering::Relaxed};
use std::sync::{Arc, OnceLock, Weak};
use std::time::{Duration, Instant};
use tern_broker::router::GroupDelivery;
use tern_broker::session::Session;
use tern_broker::BrokerState;
use tern_proto::QoS;
use tokio::sync::mpsc;

/// Marks a fed message's number as a shared group's (a persistent session's own feed
/// numbers its messages by stream sequence alone).
pub const GROUP_BIT: u64 = 1 << 62;
/// Below [`GROUP_BIT`]: the feed's number on this node, then the stream sequence.
const ID_SHIFT: u32 = 40;
const ID_MASK: u64 = (1 << 22) - 1;
const SEQ_MASK: u64 = (1 << ID_SHIFT) - 1;

/// How long JetStream waits for a message's acknowledgement before it hands it out again
/// (to any node): how long a dead node's members' messages wait.
pub const ACK_WAIT: Duration = Duration::from_secs(20);
/// A message a connected member holds longer than this has its wait extended.
const EXTEND_AFTER: Duration = Duration::from_secs(8);
const EXTEND_EVERY: Duration = Duration::from_secs(4);
/// Most messages of a group handed out and not yet acknowledged, cluster-wide.
const MAX_ACK_PENDING: i64 = 1000;
/// JetStream deletes a group's consumer that nobody read for this long (the stream keeps
/// messages an hour).
pub const INACTIVE_FOR: Duration = Duration::from_secs(3600);
/// One pull request: at most this many messages, for at most this long.
const BATCH: usize = 64;
/// Most pull requests one node keeps open for a group (one per connected member): past
/// this many members on a node, its share stops growing with them.
pub const MAX_PULLS: usize = 16;
const PULL_FOR: Duration = Duration::from_secs(2);
/// How often a node without a connected member looks again.
const IDLE_CHECK: Duration = Duration::from_millis(200);
/// After a failed pull (JetStream unavailable), the next one.
const RETRY_AFTER: Duration = Duration::from_secs(1);
/// How often, and how long apart, a group whose last member left is looked at again while
/// JetStream still counts messages handed out (their acknowledgements may be on the way).
const ACKS_SETTLE_LOOKS: u32 = 4;
const ACKS_SETTLE_WAIT: Duration = Duration::from_millis(500);
/// How often each node looks for keys of dead nodes in `MQTT_SHARES`.
const SWEEP_EVERY: Duration = Duration::from_secs(2);
/// A message no member here could take is handed out again after this.
const NO_MEMBER_DELAY: Duration = Duration::from_millis(500);
/// Longest the making of a consumer holds up a SUBACK.
const CREATE_WAIT: Duration = Duration::from_secs(2);

/// What a member's session tells its group's feed.
#[derive(Debug)]
pub enum Command {
    /// The member is done with the message of this stream sequence.
    Acked(u64),
    /// The member went away without acknowledging it: for another member.
    Released(u64),
    /// No member is left on this node.
    Stop,
}

/// The key-value bucket of which nodes have members of which group.
pub const MEMBERS_BUCKET: &str = "MQTT_SHARES";

/// This node's group feeds, by number (the number travels in each fed message's
/// sequence, so that an acknowledgement finds its feed).
#[derive(Debug, Default)]
pub struct Registry {
    next: AtomicU32,
    feeds: Mutex<HashMap<u32, mpsc::UnboundedSender<Command>>>,
    /// The `MQTT_SHARES` bucket, once JetStream answered, and the nodes this node sees.
    members: OnceLock<kv::Store>,
    view: OnceLock<Arc<crate::view::Nodes>>,
}

impl Registry {
    /// Whether the fed number `seq` is a shared group's.
    pub fn is_group(seq: u64) -> bool {
        seq & GROUP_BIT != 0
    }

    /// The member is done with fed message `seq`.
    pub fn acked(&self, seq: u64) {
        self.send(seq, Command::Acked(seq & SEQ_MASK));
    }

    /// The member left without acknowledging fed message `seq`.
    pub fn released(&self, seq: u64) {
        self.send(seq, Command::Released(seq & SEQ_MASK));
    }

    fn send(&self, seq: u64, command: Command) {
        let id = ((seq >> ID_SHIFT) & ID_MASK) as u32;
        if let Some(feed) = self.feeds.lock().get(&id) {
            let _ = feed.send(command);
        }
    }

    fn register(&self) -> (u32, mpsc::UnboundedReceiver<Command>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let mut feeds = self.feeds.lock();
        let mut id = self.next.fetch_add(1, Relaxed) & ID_MASK as u32;
        while feeds.contains_key(&id) {
            id = self.next.fetch_add(1, Relaxed) & ID_MASK as u32;
        }
        feeds.insert(id, tx);
        (id, rx)
    }

    /// Opens (or makes) the `MQTT_SHARES` bucket, retrying until JetStream answers; the
    /// view tells which nodes to ask when a group's last member here leaves.
    pub async fn open_members(
        &self,
        js: &async_nats::jetstream::Context,
        replicas: usize,
        view: Arc<crate::view::Nodes>,
    ) {
        let _ = self.view.set(view);
        loop {
            let bucket = crate::health::bucket(js, MEMBERS_BUCKET, replicas, Duration::ZERO)
                .await
                .map_err(|e| e.to_string());
            match bucket {
                Ok(bucket) => {
                    let _ = self.members.set(bucket);
                    return;
                }
                Err(e) => {
                    tracing::debug!("cluster: the shared groups' bucket is not ready: {e}");
                    tokio::time::sleep(RETRY_AFTER).await;
                }
            }
        }
    }

    /// Stops feed `id` (its last member here left: the group's key of this node goes,
    /// and the consumer with it if no other node has members).
    pub fn stop(&self, id: u32) {
        if let Some(feed) = self.feeds.lock().remove(&id) {
            let _ = feed.send(Command::Stop);
        }
    }
}

/// Deletes the group consumer `name` if no node this node sees has a key for it in
/// `MQTT_SHARES` and no message waits in it (a member may be on its way: a persistent
/// session moving to another node that has not written its key yet). Acknowledgements on
/// their way (the last members' own, just before they left) are waited for a moment.
/// Whether it did.
async fn remove_if_unused(registry: &Registry, shared: &Shared, name: &str) -> bool {
    let (Some(members), Some(view)) = (registry.members.get(), registry.view.get()) else {
        return false;
    };
    let Some(ready) = shared.sessions.get().and_then(|e| e.ready.get()) else {
        return false;
    };
    let mut looks = 0;
    loop {
        for node in view.view().nodes.iter() {
            match members.entry(format!("{name}.{}", node.name)).await {
                Ok(Some(entry)) if entry.operation == kv::Operation::Put => return false,
                Ok(_) => {}
                Err(_) => return false,
            }
        }
        match ready.stream.consumer_info(name).await {
            Ok(info) if info.num_pending == 0 && info.num_ack_pending == 0 => break,
            Ok(info) if info.num_pending == 0 && looks < ACKS_SETTLE_LOOKS => {
                looks += 1;
                tokio::time::sleep(ACKS_SETTLE_WAIT).await;
            }
            _ => return false,
        }
    }
    match ready.stream.delete_consumer(name).await {
        Ok(_) => true,
        Err(e) => {
            tracing::debug!("cluster: deleting the group consumer {name}: {e}");
            false
        }
    }
}

/// Removes the `MQTT_SHARES` keys of nodes that died (a run of a node that the
/// heartbeats say is gone, [`crate::view`]): such a node holds no member any more (its
/// persistent sessions' members write keys of their own where they resume), and a key
/// left behind would keep its group's consumer from being deleted when the last live
/// member leaves. Each node watches the bucket and looks every [`SWEEP_EVERY`]; a key is
/// deleted with a compare-and-set on the revision seen, and the group's consumer with it
/// when unused ([`remove_if_unused`]).
pub async fn sweep_dead_nodes(registry: Arc<Registry>, shared: Arc<Shared>) {
    let (Some(members), Some(view)) = (registry.members.get(), registry.view.get()) else {
        return;
    };
    // Each key's origin (the run of the node that wrote it) and revision.
    let mut keys: HashMap<String, (String, u64)> = HashMap::new();
    let mut watch = None;
    let mut tick = tokio::time::interval(SWEEP_EVERY);
    loop {
        let Some(entries) = watch.as_mut() else {
            match members.watch_with_history(">").await {
                Ok(w) => {
                    keys.clear();
                    watch = Some(w);
                }
                Err(e) => {
                    tracing::debug!("cluster: watching the shared groups' bucket: {e}");
                    tokio::time::sleep(RETRY_AFTER).await;
                }
            }
            continue;
        };
        tokio::select! {
            entry = entries.next() => match entry {
                Some(Ok(entry)) if entry.operation == kv::Operation::Put => {
                    let origin = String::from_utf8_lossy(&entry.value).into_owned();
                    keys.insert(entry.key, (origin, entry.revision));
                }
                Some(Ok(entry)) => {
                    keys.remove(&entry.key);
                }
                Some(Err(_)) | None => watch = None,
            },
            _ = tick.tick() => {
                let dead: Vec<(String, u64)> = keys
                    .iter()
                    .filter(|(_, (origin, _))| matches!(view.liveness(origin), crate::view::Liveness::Dead(_)))
                    .map(|(key, (_, revision))| (key.clone(), *revision))
                    .collect();
                for (key, revision) in dead {
                    keys.remove(&key);
                    if members.delete_expect_revision(&key, Some(revision)).await.is_err() {
                        continue;
                    }
                    let Some((name, node)) = key.split_once('.') else { continue };
                    tracing::debug!("cluster: node {node} died holding members of the group consumer {name}");
                    if remove_if_unused(&registry, &shared, name).await {
                        tracing::debug!("cluster: the group consumer {name} has no member left: deleted");
                    }
                }
            }
        }
    }
}

/// The consumer of `$share/{group}/{filter}`: the same name on every node (FNV-1a of the
/// pair, which cannot collide with another pair's bytes since group names hold no `/`).
pub fn consumer_name(group: &str, filter: &str) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in group.bytes().chain([b'/']).chain(filter.bytes()) {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    format!("tern-share-{hash:016x}")
}

/// The group's consumer's configuration (the same on every node, so that making it where
/// it exists already is harmless); `None` if the filter is too long for NATS.
fn consumer_config(group: &str, filter: &str) -> Option<pull::Config> {
    let subjects = consumer_subjects(std::iter::once(filter));
    if subjects.is_empty() {
        return None;
    }
    Some(pull::Config {
        durable_name: Some(consumer_name(group, filter)),
        deliver_policy: DeliverPolicy::New,
        ack_policy: AckPolicy::Explicit,
        ack_wait: ACK_WAIT,
        max_ack_pending: MAX_ACK_PENDING,
        filter_subjects: subjects,
        inactive_threshold: INACTIVE_FOR,
        ..Default::default()
    })
}

/// Starts this node's feed of `$share/{group}/{filter}` (its first member here joined):
/// the consumer is found or made first (waited for at most [`CREATE_WAIT`]: the SUBACK
/// waits for this), then read in the background. Returns the feed's number.
pub async fn start(
    registry: &Arc<Registry>,
    state: Arc<BrokerState>,
    shared: Arc<Shared>,
    group: String,
    filter: String,
) -> Option<u32> {
    let Some(config) = consumer_config(&group, &filter) else {
        tracing::warn!("cluster: the shared subscription $share/{group}/{filter} is too long for NATS: its QoS 1/2 messages reach no member");
        return None;
    };
    let (id, commands) = registry.register();
    let mut feed = GroupFeed {
        state,
        shared,
        registry: registry.clone(),
        group,
        filter,
        config,
        id,
        consumer: None,
        pending: HashMap::new(),
        retry_at: Instant::now(),
    };
    let _ = tokio::time::timeout(CREATE_WAIT, feed.open()).await;
    tokio::spawn(feed.run(commands));
    Some(id)
}

/// A message queued for a member, until it is done with it.
struct Pending {
    acker: Acker,
    since: Instant,
    member: Weak<Session>,
}

/// One group's feed on this node.
struct GroupFeed {
    state: Arc<BrokerState>,
    shared: Arc<Shared>,
    registry: Arc<Registry>,
    group: String,
    filter: String,
    config: pull::Config,
    id: u32,
    consumer: Option<PullConsumer>,
    /// Messages queued for members here, by stream sequence.
    pending: HashMap<u64, Pending>,
    retry_at: Instant,
}

impl GroupFeed {
    async fn run(mut self, mut commands: mpsc::UnboundedReceiver<Command>) {
        // One open pull request per connected member here (up to MAX_PULLS).
        let mut pulls: SelectAll<pull::Batch> = SelectAll::new();
        // How many requests the members here called for, when last counted: counted
        // again only when fewer are open (each request ends within PULL_FOR).
        let mut wanted = 0;
        // Stopped by the last member here leaving (not by the node shutting down).
        let mut stopping = false;
        let mut extend = tokio::time::interval(EXTEND_EVERY);
        loop {
            if stopping {
                if pulls.is_empty() {
                    break;
                }
            } else if pulls.len() < wanted || pulls.is_empty() {
                wanted = if Instant::now() >= self.retry_at {
                    self.state
                        .router
                        .group_online_members(&self.group, &self.filter)
                        .min(MAX_PULLS)
                } else {
                    0
                };
                while pulls.len() < wanted {
                    let Some(batch) = self.pull().await else { break };
                    pulls.push(batch);
                }
            }
            tokio::select! {
                command = commands.recv(), if !stopping => match command {
                    Some(Command::Acked(seq)) => {
                        if let Some(p) = self.pending.remove(&seq) {
                            let _ = p.acker.ack().await;
                        }
                    }
                    Some(Command::Released(seq)) => {
                        if let Some(p) = self.pending.remove(&seq) {
                            let _ = p.acker.ack_with(AckKind::Nak(None)).await;
                        }
                    }
                    Some(Command::Stop) | None => stopping = true,
                },
                message = pulls.next(), if !pulls.is_empty() => match message {
                    Some(Ok(message)) => self.handle(message, stopping).await,
                    Some(Err(e)) => {
                        tracing::debug!("cluster: reading $share/{}/{}: {e}", self.group, self.filter);
                        // The consumer may be gone (JetStream deletes an unread one): found or
                        // made again next time.
                        pulls.clear();
                        self.consumer = None;
                        self.retry_at = Instant::now() + RETRY_AFTER;
                    }
                    None => {}
                },
                _ = extend.tick() => self.extend().await,
                _ = tokio::time::sleep(IDLE_CHECK), if pulls.is_empty() => {}
            }
        }
        // Whatever is still queued here goes to the members of other nodes.
        for (_, p) in self.pending.drain() {
            let _ = p.acker.ack_with(AckKind::Nak(None)).await;
        }
        if stopping {
            self.leave().await;
        }
    }

    /// This node's key of the group: `<consumer>.<node>`.
    fn key(&self) -> String {
        format!("{}.{}", consumer_name(&self.group, &self.filter), self.shared.node)
    }

    /// Notes in the bucket that this node has members of the group.
    async fn join(&self) {
        let Some(members) = self.registry.members.get() else {
            return;
        };
        let origin = bytes::Bytes::from(self.shared.origin.to_string());
        if let Err(e) = members.put(self.key(), origin).await {
            tracing::debug!(
                "cluster: noting $share/{}/{} in the bucket: {e}",
                self.group,
                self.filter
            );
        }
    }

    /// The last member here left: this node's key goes, and the consumer too if no other
    /// node this node sees has members and nothing waits in it (when in doubt it stays,
    /// for JetStream to delete once unread for [`INACTIVE_FOR`]).
    async fn leave(&self) {
        let Some(members) = self.registry.members.get() else {
            return;
        };
        if members.delete(self.key()).await.is_err() {
            return;
        }
        let name = consumer_name(&self.group, &self.filter);
        if remove_if_unused(&self.registry, &self.shared, &name).await {
            tracing::debug!(
                "cluster: $share/{}/{} has no member left: its consumer is deleted",
                self.group,
                self.filter
            );
        }
    }

    /// Finds (or makes) the group's consumer, this node's key written first: a node whose
    /// last member leaves meanwhile sees it (and a key the others removed, taking this node
    /// for dead while it was cut off, is written again when the consumer is found anew).
    async fn open(&mut self) -> Option<&PullConsumer> {
        if self.consumer.is_none() {
            self.join().await;
            let ready = self.shared.sessions.get().and_then(|e| e.ready.get())?;
            let name = consumer_name(&self.group, &self.filter);
            match ready.stream.get_or_create_consumer(&name, self.config.clone()).await {
                Ok(consumer) => self.consumer = Some(consumer),
                Err(e) => {
                    tracing::debug!("cluster: the consumer of $share/{}/{}: {e}", self.group, self.filter);
                    self.retry_at = Instant::now() + RETRY_AFTER;
                }
            }
        }
        self.consumer.as_ref()
    }

    /// One pull request for one of this node's members.
    async fn pull(&mut self) -> Option<pull::Batch> {
        let consumer = self.open().await?;
        match consumer.batch().max_messages(BATCH).expires(PULL_FOR).messages().await {
            Ok(batch) => Some(batch),
            Err(e) => {
                tracing::debug!("cluster: pulling $share/{}/{}: {e}", self.group, self.filter);
                self.consumer = None;
                self.retry_at = Instant::now() + RETRY_AFTER;
                None
            }
        }
    }

    /// Gives one message to a connected member here, or back to JetStream.
    async fn handle(&mut self, message: async_nats::jetstream::Message, stopping: bool) {
        let Ok((seq, published)) = message
            .info()
            .map(|i| (i.stream_sequence, i.published.unix_timestamp()))
        else {
            return;
        };
        let (message, acker) = message.split();
        if stopping {
            let _ = acker.ack_with(AckKind::Nak(None)).await;
            return;
        }
        if let Some(queued) = self.pending.get_mut(&seq) {
            if queued.member.upgrade().is_some() {
                // Handed out again while still held by a member here (connected, or a QoS
                // 2 message in flight that its offline session keeps): that one finishes it.
                queued.acker = acker;
                return;
            }
            self.pending.remove(&seq);
        }
        let record = match wire::decode(&message.payload) {
            Ok(record) if seq <= SEQ_MASK => record,
            _ => {
                self.shared.dropped_inbound.fetch_add(1, Relaxed);
                let _ = acker.ack_with(AckKind::Term).await;
                return;
            }
        };
        let mut publish = record.publish;
        // A node of an earlier version published QoS 0 on the stored subjects too:
        // skipped (a group's QoS 0 messages go through its NATS queue group).
        if publish.qos == QoS::AtMostOnce || !wire::still_valid(&mut publish, published) {
            let _ = acker.ack().await;
            return;
        }
        let fed = GROUP_BIT | (u64::from(self.id) << ID_SHIFT) | seq;
        let state = &self.state;
        let group = (self.group.as_str(), self.filter.as_str());
        match state.router.publish_to_group_fed(&publish, group, fed, &state.metrics) {
            GroupDelivery::Queued(session) => {
                let member = Arc::downgrade(&session);
                let since = Instant::now();
                self.pending.insert(seq, Pending { acker, since, member });
            }
            GroupDelivery::Untracked => {
                let _ = acker.ack().await;
            }
            GroupDelivery::NoMember => {
                let _ = acker.ack_with(AckKind::Nak(Some(NO_MEMBER_DELAY))).await;
            }
        }
    }

    /// Extends the wait of messages members here hold long, connected or not: what an
    /// offline member still holds is a QoS 2 message in flight, which its session keeps
    /// for it [MQTT-4.4.0-1] (the rest was handed back when it went), and which must not
    /// reach a second member. Hands back those of members whose session is gone.
    async fn extend(&mut self) {
        let now = Instant::now();
        let mut gone = Vec::new();
        for (seq, p) in &mut self.pending {
            if now.duration_since(p.since) < EXTEND_AFTER {
                continue;
            }
            if p.member.strong_count() == 0 {
                gone.push(*seq);
            } else {
                let _ = p.acker.ack_with(AckKind::Progress).await;
                p.since = now;
            }
        }
        for seq in gone {
            if let Some(p) = self.pending.remove(&seq) {
                let _ = p.acker.ack_with(AckKind::Nak(None)).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_group_consumer_name_is_the_same_everywhere_and_differs_per_pair() {
        assert_eq!(consumer_name("g", "a/b"), consumer_name("g", "a/b"));
        assert_ne!(consumer_name("g", "ab"), consumer_name("ga", "b"));
        assert_ne!(consumer_name("g", "a/b"), consumer_name("h", "a/b"));
        assert!(consumer_name("g", "#")
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-'));
    }

    #[test]
    fn a_fed_number_finds_its_feed_and_sequence() {
        let registry = Registry::default();
        let (id, mut rx) = registry.register();
        let seq = GROUP_BIT | (u64::from(id) << ID_SHIFT) | 12345;
        assert!(Registry::is_group(seq));
        assert!(!Registry::is_group(12345));
        registry.acked(seq);
        assert!(matches!(rx.try_recv(), Ok(Command::Acked(12345))));
        registry.released(seq);
        assert!(matches!(rx.try_recv(), Ok(Command::Released(12345))));
        registry.stop(id);
        assert!(matches!(rx.try_recv(), Ok(Command::Stop)));
        registry.acked(seq);
        assert!(rx.try_recv().is_err());
    }
}
