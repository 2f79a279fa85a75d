//! Wills of a node that dies: the surviving nodes publish them.
//!
//! A connection with a will has it written to the `MQTT_WILLS` bucket under its client
//! id when it connects (with its Will Delay Interval); the key is removed when the node
//! publishes or drops the will itself (normal DISCONNECT), and rewritten with the time
//! it falls due while the node holds it for its delay. Each removal or rewrite is a
//! compare-and-set on the revision this node wrote, so a newer connection of the client
//! id on another node (which overwrote the key) is never undone.
//!
//! Every node watches the bucket. A will whose origin (a run of a node) is dead by the
//! heartbeats ([`crate::view`]: no heartbeat within `cluster_node_timeout`, or the node
//! restarted) is published by a survivor once its delay has passed, counted from the
//! dead node's last heartbeat (or from when its client disconnected, if earlier). Each
//! survivor first deletes the key with a compare-and-set on the revision it saw; only
//! the one whose delete succeeds publishes, so each will is published once. A client id
//! that resumes its session anywhere before then (Clean Start 0) rewrites or deletes the
//! key, which cancels the will: the survivors' compare-and-set fails, and a node that
//! holds the will for its delay itself drops it when it sees another node's write of the
//! key. One that connects with Clean Start 1 ends the session: the node it connects to
//! claims the will the same way and publishes it at once.
//!
//! A connection's will is written without waiting for the answer (a storm of connections
//! is not held to one round trip each); its close waits for that answer. While JetStream
//! is unavailable nothing is written, and removals wait until it answers.
//!
//! Limits: a survivor that dies between its delete and its publish loses that will; a
//! will longer than NATS's payload limit stays on its node only; the delay is not capped
//! by the dead client's session expiry; a node cut off from NATS for longer than the
//! timeout has its clients' wills published by the others (docs/cluster.md).

use crate::link::Shared;
use crate::view::{Liveness, Nodes};
use crate::{subject, wire};
use async_nats::jetstream::kv;
use bytes::{BufMut, Bytes, BytesMut};
use futures_util::StreamExt;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tern_broker::cluster::WillChange;
use tern_broker::BrokerState;
use tern_proto::{ByteStr, PropertyId, Publish, Will};
use tokio::sync::mpsc;

/// Commands waiting for the wills task; a full queue drops one (logged).
pub const QUEUE: usize = 16 * 1024;
/// How often orphaned wills are looked at.
const TICK: Duration = Duration::from_millis(250);
/// Longest wait for one bucket operation.
const OP_TIMEOUT: Duration = Duration::from_secs(3);
/// Pause before trying an orphaned will again after a failed delete (NATS trouble).
const RETRY: Duration = Duration::from_secs(2);
/// Most removals kept waiting for JetStream (the oldest go first).
const DEFERRED_MAX: usize = 64 * 1024;

/// What the broker told of a will, for the wills task.
#[derive(Debug)]
pub enum Command {
    Connected {
        client_id: String,
        connected_ms: u64,
        clean_start: bool,
        /// The record's body and the will's delay (seconds), if it has a will.
        will: Option<(Bytes, u32)>,
    },
    Closed {
        client_id: String,
        connected_ms: u64,
        delayed_until_ms: Option<u64>,
    },
    DelayedPublished {
        client_id: String,
    },
}

/// Counters of the wills of dead nodes.
#[derive(Debug, Default)]
pub struct Figures {
    /// Wills of dead nodes published by this node.
    pub published: AtomicU64,
    /// Wills of dead nodes waiting for their delay, as of the last look.
    pub waiting: AtomicU64,
}

/// Appends the wills' metric families (Prometheus text format).
pub fn render(node: &str, figures: &Figures, out: &mut String) {
    use std::fmt::Write;
    let _ = write!(
        out,
        "# HELP tern_cluster_dead_node_wills_total Wills of clients of dead nodes that this node published.\n\
         # TYPE tern_cluster_dead_node_wills_total counter\ntern_cluster_dead_node_wills_total{{node=\"{node}\"}} {}\n\
         # HELP tern_cluster_dead_node_wills_waiting Wills of clients of dead nodes waiting for their Will Delay Interval, as this node sees them.\n\
         # TYPE tern_cluster_dead_node_wills_waiting gauge\ntern_cluster_dead_node_wills_waiting{{node=\"{node}\"}} {}\n",
        figures.published.load(Relaxed),
        figures.waiting.load(Relaxed)
    );
}

/// Opens (or creates) the wills bucket, retrying until JetStream answers.
pub async fn open(js: &async_nats::jetstream::Context, replicas: usize) -> kv::Store {
    loop {
        match crate::health::bucket(js, crate::WILLS_BUCKET, replicas, Duration::ZERO).await {
            Ok(bucket) => return bucket,
            Err(e) => {
                tracing::debug!("cluster: the wills bucket is not ready: {e}");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
}

fn ms(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// The command for a [`WillChange`] of `client_id` (the will encoded once, here).
pub fn command(client_id: &str, change: WillChange<'_>, origin: &str) -> Option<Command> {
    let client_id = client_id.to_string();
    Some(match change {
        WillChange::Connected {
            will,
            connected_at,
            clean_start,
        } => Command::Connected {
            client_id,
            connected_ms: ms(connected_at),
            clean_start,
            will: match will {
                Some(will) => Some(encode_will(will, origin)?),
                None => None,
            },
        },
        WillChange::Closed {
            connected_at,
            delayed_until,
        } => Command::Closed {
            client_id,
            connected_ms: ms(connected_at),
            delayed_until_ms: delayed_until.map(ms),
        },
        WillChange::DelayedPublished => Command::DelayedPublished { client_id },
    })
}

/// The will as the message it becomes (as the broker publishes it) and its delay.
fn encode_will(will: &Will, origin: &str) -> Option<(Bytes, u32)> {
    let delay = will.properties.will_delay_interval().unwrap_or(0);
    let mut properties = will.properties.clone();
    properties.remove(PropertyId::WillDelayInterval);
    let publish = Publish {
        dup: false,
        qos: will.qos,
        retain: will.retain,
        topic: will.topic.clone(),
        packet_id: 0,
        properties,
        payload: will.payload.clone(),
    };
    match wire::encode(&publish, origin, 0) {
        Ok(body) => Some((body, delay)),
        Err(e) => {
            tracing::warn!("cluster: a will cannot be kept for the other nodes: {e}");
            None
        }
    }
}

/// A record's value: `<connected ms> <delay s> <due ms or 0> <client id length>\n`, the
/// client id, then the will as [`wire`] encodes a message (with its origin).
fn value(client_id: &str, connected_ms: u64, delay: u32, due_ms: u64, body: &[u8]) -> Bytes {
    let header = format!("{connected_ms} {delay} {due_ms} {}\n", client_id.len());
    let mut out = BytesMut::with_capacity(header.len() + client_id.len() + body.len());
    out.put_slice(header.as_bytes());
    out.put_slice(client_id.as_bytes());
    out.put_slice(body);
    out.freeze()
}

/// A will record read from the bucket.
#[derive(Debug)]
struct Record {
    revision: u64,
    client_id: String,
    delay: u32,
    due_ms: u64,
    origin: String,
    publish: Publish,
    /// When this node first found its origin dead (ms since 1970).
    dead_since_ms: Option<u64>,
    /// No claim before this (after a failed one).
    next_try: Option<Instant>,
}

fn parse(value: &[u8], revision: u64) -> Option<Record> {
    let newline = value.iter().position(|&b| b == b'\n')?;
    let header = std::str::from_utf8(&value[..newline]).ok()?;
    let mut fields = header.split(' ').map(str::parse::<u64>);
    let (Some(Ok(_connected)), Some(Ok(delay)), Some(Ok(due_ms)), Some(Ok(id_len))) =
        (fields.next(), fields.next(), fields.next(), fields.next())
    else {
        return None;
    };
    let rest = &value[newline + 1..];
    let (id, body) = rest.split_at_checked(usize::try_from(id_len).ok()?)?;
    let record = wire::decode(body).ok()?;
    Some(Record {
        revision,
        client_id: std::str::from_utf8(id).ok()?.to_string(),
        delay: u32::try_from(delay).ok()?,
        due_ms,
        origin: record.origin,
        publish: record.publish,
        dead_since_ms: None,
        next_try: None,
    })
}

/// Why a node takes on another node's will.
#[derive(Debug, Clone, Copy)]
enum Claim {
    /// Its node is dead.
    DeadNode,
    /// Its client started a clean session on this node while the other held the will
    /// for its delay.
    SessionEnded,
}

/// A will of this node's connection, as written.
struct Mine {
    client_id: String,
    connected_ms: u64,
    /// The write's revision; `None` until it is answered.
    revision: Option<u64>,
    delay: u32,
    body: Bytes,
    /// Held for its delay now (the connection closed).
    delayed: bool,
    /// A close that waits for the write's answer (with when the will falls due, if held).
    closing: Option<Option<u64>>,
}

struct Wills {
    bucket: kv::Store,
    js: async_nats::jetstream::Context,
    /// Answers of will writes: (key, connected ms, revision or `None` if it failed).
    written_tx: mpsc::UnboundedSender<(String, u64, Option<u64>)>,
    state: Arc<BrokerState>,
    shared: Arc<Shared>,
    nodes: Arc<Nodes>,
    figures: Arc<Figures>,
    /// Every record in the bucket, by key.
    records: HashMap<String, Record>,
    /// The records' origins, with how many each has.
    origins: HashMap<String, usize>,
    /// This node's records, by key.
    mine: HashMap<String, Mine>,
    /// Removals of this node's records that wait for JetStream: (key, revision).
    deferred: Vec<(String, u64)>,
}

/// Runs the wills task until `commands` closes.
pub async fn run(
    (bucket, js): (kv::Store, async_nats::jetstream::Context),
    mut commands: mpsc::Receiver<Command>,
    (state, shared): (Arc<BrokerState>, Arc<Shared>),
    nodes: Arc<Nodes>,
    figures: Arc<Figures>,
) {
    let (written_tx, mut written_rx) = mpsc::unbounded_channel();
    let mut wills = Wills {
        bucket,
        js,
        written_tx,
        state,
        shared,
        nodes,
        figures,
        records: HashMap::new(),
        origins: HashMap::new(),
        mine: HashMap::new(),
        deferred: Vec::new(),
    };
    let mut watch = None;
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        if watch.is_none() {
            watch = wills.bucket.watch_with_history(">").await.ok();
        }
        tokio::select! {
            command = commands.recv() => match command {
                Some(command) => wills.command(command).await,
                None => return,
            },
            Some((key, connected_ms, revision)) = written_rx.recv() => {
                wills.written(key, connected_ms, revision).await;
            }
            entry = next_entry(&mut watch) => match entry {
                Some(Ok(entry)) => wills.entry(entry),
                Some(Err(e)) => {
                    tracing::debug!("cluster: watching wills: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                None => {
                    watch = None;
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            },
            _ = tick.tick() => {
                wills.retry_deferred().await;
                wills.orphans().await;
            }
        }
    }
}

async fn next_entry(watch: &mut Option<kv::Watch>) -> Option<Result<kv::Entry, kv::WatcherError>> {
    match watch {
        Some(w) => w.next().await,
        None => None,
    }
}

impl Wills {
    async fn command(&mut self, command: Command) {
        match command {
            Command::Connected {
                client_id,
                connected_ms,
                clean_start,
                will,
            } => self.connected(client_id, connected_ms, clean_start, will).await,
            Command::Closed {
                client_id,
                connected_ms,
                delayed_until_ms,
            } => {
                let Some(key) = subject::topic_key(&client_id) else {
                    return;
                };
                let Some(mine) = self.mine.get_mut(&key).filter(|m| m.connected_ms == connected_ms) else {
                    return;
                };
                mine.delayed = delayed_until_ms.is_some();
                if mine.revision.is_none() {
                    // Its write is not answered yet: closed once it is.
                    mine.closing = Some(delayed_until_ms);
                    return;
                }
                self.close(&key, delayed_until_ms).await;
            }
            Command::DelayedPublished { client_id } => {
                let Some(key) = subject::topic_key(&client_id) else {
                    return;
                };
                match self.mine.get_mut(&key) {
                    Some(mine) if mine.revision.is_none() => mine.closing = Some(None),
                    Some(_) => self.close(&key, None).await,
                    None => {}
                }
            }
        }
    }

    /// A connection of this node: its will written (without waiting for the answer, so
    /// that a storm of connections is not held to one round trip each), or a will left
    /// for the client id by a dead node published (clean start) or cancelled (resume).
    async fn connected(&mut self, client_id: String, connected_ms: u64, clean_start: bool, will: Option<(Bytes, u32)>) {
        let Some(key) = subject::topic_key(&client_id) else {
            return;
        };
        self.mine.remove(&key);
        // While JetStream does not answer, nothing is written (each write would wait for
        // its time limit): new wills stay with their node only.
        if !self.shared.available.load(Relaxed) {
            return;
        }
        if clean_start {
            // A clean start ends the session: a will another node holds for its delay (or
            // a dead node's) goes now. Resuming, below, cancels it.
            self.publish_ended_now(&key).await;
        }
        let Some((body, delay)) = will else {
            // A will left by an earlier connection (on a dead node, waiting for its delay)
            // is cancelled by this one.
            if self.records.contains_key(&key) {
                let _ = tokio::time::timeout(OP_TIMEOUT, self.bucket.delete(&key)).await;
            }
            return;
        };
        let v = value(&client_id, connected_ms, delay, 0, &body);
        let subject = format!("$KV.{}.{key}", crate::WILLS_BUCKET);
        let ack = match tokio::time::timeout(OP_TIMEOUT, self.js.publish(subject, v)).await {
            Ok(Ok(ack)) => ack,
            _ => {
                tracing::debug!(
                    client = client_id,
                    "cluster: the will could not be stored for the other nodes"
                );
                return;
            }
        };
        let written = self.written_tx.clone();
        let answer_key = key.clone();
        tokio::spawn(async move {
            let revision = match tokio::time::timeout(OP_TIMEOUT, ack).await {
                Ok(Ok(ack)) => Some(ack.sequence),
                _ => None,
            };
            let _ = written.send((answer_key, connected_ms, revision));
        });
        let mine = Mine {
            client_id,
            connected_ms,
            revision: None,
            delay,
            body,
            delayed: false,
            closing: None,
        };
        self.mine.insert(key, mine);
    }

    /// A will's write was answered (`None`: it failed): a close that waited for it is
    /// done now.
    async fn written(&mut self, key: String, connected_ms: u64, revision: Option<u64>) {
        let Some(mine) = self
            .mine
            .get_mut(&key)
            .filter(|m| m.connected_ms == connected_ms && m.revision.is_none())
        else {
            return;
        };
        let Some(revision) = revision else {
            tracing::debug!(
                client = mine.client_id,
                "cluster: the will could not be stored for the other nodes"
            );
            self.mine.remove(&key);
            return;
        };
        mine.revision = Some(revision);
        if let Some(closing) = mine.closing.take() {
            self.close(&key, closing).await;
        }
    }

    /// This node's connection of `key` closed (its write answered): the record removed,
    /// or rewritten with the time its will falls due.
    async fn close(&mut self, key: &str, delayed_until_ms: Option<u64>) {
        let Some(mine) = self.mine.get_mut(key) else {
            return;
        };
        let Some(revision) = mine.revision else {
            return;
        };
        let Some(due_ms) = delayed_until_ms else {
            self.mine.remove(key);
            self.delete_mine(key, revision).await;
            return;
        };
        if !self.shared.available.load(Relaxed) {
            // Survivors count the delay from this node's last heartbeat instead.
            return;
        }
        let v = value(&mine.client_id, mine.connected_ms, mine.delay, due_ms, &mine.body);
        match tokio::time::timeout(OP_TIMEOUT, self.bucket.update(key, v, revision)).await {
            Ok(Ok(revision)) => mine.revision = Some(revision),
            Ok(Err(e)) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => {
                // The client id was written elsewhere meanwhile: it is back.
                if let Some(mine) = self.mine.remove(key) {
                    if self.state.cancel_delayed_will(&mine.client_id) {
                        tracing::info!(
                            client = mine.client_id,
                            "cluster: will cancelled: the client connected to another node"
                        );
                    }
                }
            }
            Ok(Err(_)) | Err(_) => {}
        }
    }

    /// Publishes the will of `key` at once (claimed first) if a dead node left it, or
    /// another node holds it for its delay (that node drops it when it sees the claim).
    async fn publish_ended_now(&mut self, key: &str) {
        let Some(record) = self.records.get(key) else {
            return;
        };
        if record.origin == *self.shared.origin {
            // This node's own: the broker publishes it as the clean start ends the session.
            return;
        }
        match self.nodes.liveness(&record.origin) {
            Liveness::Dead(_) => self.claim(key.to_string(), Claim::DeadNode).await,
            Liveness::Alive if record.due_ms != 0 => self.claim(key.to_string(), Claim::SessionEnded).await,
            Liveness::Alive => {}
        }
    }

    /// Removes this node's record at `revision` (a newer write, elsewhere, stays); while
    /// JetStream does not answer, later (a will left behind would be published if this
    /// node died).
    async fn delete_mine(&mut self, key: &str, revision: u64) {
        if !self.shared.available.load(Relaxed) {
            self.deferred.push((key.to_string(), revision));
            return;
        }
        let delete = self.bucket.delete_expect_revision(key, Some(revision));
        match tokio::time::timeout(OP_TIMEOUT, delete).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) if e.kind() == kv::DeleteErrorKind::WrongLastRevision => {}
            Ok(Err(_)) | Err(_) => self.deferred.push((key.to_string(), revision)),
        }
    }

    /// Tries the removals that waited for JetStream again.
    async fn retry_deferred(&mut self) {
        if self.deferred.is_empty() || !self.shared.available.load(Relaxed) {
            return;
        }
        let deferred = std::mem::take(&mut self.deferred);
        let dropped = deferred.len().saturating_sub(DEFERRED_MAX);
        for (key, revision) in deferred.into_iter().skip(dropped) {
            self.delete_mine(&key, revision).await;
        }
    }

    /// A write of the bucket: the record kept up to date, and a will this node holds
    /// for its delay dropped when another node wrote its key (the client is back).
    fn entry(&mut self, entry: kv::Entry) {
        let record = match entry.operation {
            kv::Operation::Put => parse(&entry.value, entry.revision),
            kv::Operation::Delete | kv::Operation::Purge => None,
        };
        let ours = record.as_ref().is_some_and(|r| r.origin == *self.shared.origin);
        if !ours {
            if let Some(mine) = self.mine.get(&entry.key) {
                // Another node's write (a delete has no origin: this node's own deletes
                // forget the record first) after this node's: the client id is back there.
                if mine.revision.is_some_and(|r| entry.revision > r) {
                    let mine = self.mine.remove(&entry.key);
                    if let Some(mine) = mine.filter(|m| m.delayed) {
                        if self.state.cancel_delayed_will(&mine.client_id) {
                            tracing::info!(
                                client = mine.client_id,
                                "cluster: will cancelled: the client connected to another node"
                            );
                        }
                    }
                }
            }
        }
        match record {
            Some(record) => {
                self.insert_record(entry.key, record);
            }
            None => {
                if entry.operation == kv::Operation::Put {
                    tracing::warn!("cluster: will record {:?} not understood", entry.key);
                }
                self.remove_record(&entry.key);
            }
        }
    }

    fn insert_record(&mut self, key: String, record: Record) {
        *self.origins.entry(record.origin.clone()).or_insert(0) += 1;
        if let Some(old) = self.records.insert(key, record) {
            self.forget_origin(&old.origin);
        }
    }

    fn remove_record(&mut self, key: &str) -> Option<Record> {
        let record = self.records.remove(key)?;
        self.forget_origin(&record.origin);
        Some(record)
    }

    fn forget_origin(&mut self, origin: &str) {
        if let Some(count) = self.origins.get_mut(origin) {
            *count -= 1;
            if *count == 0 {
                self.origins.remove(origin);
            }
        }
    }

    /// Publishes the wills of dead nodes that are due (once cluster-wide: the node whose
    /// delete of the record succeeds publishes it).
    async fn orphans(&mut self) {
        // Most of the time every origin lives: the records are not looked at one by one.
        if !self
            .origins
            .keys()
            .any(|o| matches!(self.nodes.liveness(o), Liveness::Dead(_)))
        {
            self.figures.waiting.store(0, Relaxed);
            return;
        }
        let now = ms(SystemTime::now());
        let mut due = Vec::new();
        let mut waiting = 0u64;
        for (key, record) in &mut self.records {
            let Liveness::Dead(last_beat) = self.nodes.liveness(&record.origin) else {
                continue;
            };
            let dead_since = *record.dead_since_ms.get_or_insert(now);
            let from = match record.due_ms {
                // Its client had disconnected: the node held it until then.
                0 => last_beat.unwrap_or(dead_since) + u64::from(record.delay) * 1000,
                due_ms => due_ms.min(last_beat.unwrap_or(dead_since) + u64::from(record.delay) * 1000),
            };
            if now < from || record.next_try.is_some_and(|t| t > Instant::now()) {
                waiting += 1;
                continue;
            }
            due.push(key.clone());
        }
        self.figures.waiting.store(waiting, Relaxed);
        if !self.shared.available.load(Relaxed) {
            return;
        }
        for key in due {
            self.claim(key, Claim::DeadNode).await;
        }
    }

    /// Deletes the record of `key` at the revision seen and, if that succeeded (no other
    /// node did, and the client did not come back), publishes its will.
    async fn claim(&mut self, key: String, why: Claim) {
        let Some(record) = self.records.get_mut(&key) else {
            return;
        };
        let delete = self.bucket.delete_expect_revision(&key, Some(record.revision));
        match tokio::time::timeout(OP_TIMEOUT, delete).await {
            Ok(Ok(())) => {
                let Some(record) = self.remove_record(&key) else {
                    return;
                };
                match why {
                    Claim::DeadNode => {
                        tracing::info!(
                            client = record.client_id,
                            "cluster: publishing the will of a client of dead node {}",
                            record.origin
                        );
                        self.figures.published.fetch_add(1, Relaxed);
                    }
                    Claim::SessionEnded => tracing::info!(
                        client = record.client_id,
                        "cluster: publishing the will {} held: the client started a clean session here",
                        record.origin
                    ),
                }
                let client_id = ByteStr::from(record.client_id.as_str());
                self.state.publish_will_of_node(&record.publish, &client_id);
            }
            Ok(Err(e)) if e.kind() == kv::DeleteErrorKind::WrongLastRevision => {
                // Another survivor had it, or the client came back: the watch tells.
                self.remove_record(&key);
            }
            _ => record.next_try = Some(Instant::now() + RETRY),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tern_proto::{Properties, Property, QoS};

    #[test]
    fn a_record_reads_back() {
        let mut properties = Properties::default();
        properties.push(Property::WillDelayInterval(30));
        properties.push(Property::ContentType(ByteStr::from("text/plain")));
        let will = Will {
            topic: ByteStr::from("dead/x"),
            payload: Bytes::from_static(b"gone"),
            qos: QoS::AtLeastOnce,
            retain: true,
            properties,
        };
        let (body, delay) = encode_will(&will, "n1:00ff").unwrap();
        assert_eq!(delay, 30);
        let v = value("a\nb c", 17, delay, 99, &body);
        let record = parse(&v, 5).unwrap();
        assert_eq!(record.client_id, "a\nb c");
        assert_eq!((record.revision, record.delay, record.due_ms), (5, 30, 99));
        assert_eq!(record.origin, "n1:00ff");
        assert_eq!(record.publish.topic.as_str(), "dead/x");
        assert_eq!(record.publish.qos, QoS::AtLeastOnce);
        assert!(record.publish.retain);
        assert!(record.publish.properties.will_delay_interval().is_none());
        assert!(parse(b"1 2 3\nxx", 1).is_none());
        assert!(parse(&v[..v.len() - 1], 1).is_none());
    }
}
