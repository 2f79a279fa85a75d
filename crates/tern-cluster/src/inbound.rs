//! The receiving side: NATS subscriptions for each distinct filter of this node's clients
//! (one per subject of each class, QoS 1/2 and QoS 0: two, or four for a filter ending in
//! `/#`), all feeding one delivery task.
//!
//! A message matching several local filters arrives once per matching subscription; the
//! delivery task routes it the first time only, by the origin's sequence number
//! ([`Seen`]). NATS keeps each subscription's messages in the order their publisher sent
//! them, so the first arrivals of one topic's messages are in that order as well, and
//! each subscriber gets a publisher's messages on a topic once and in order. The local
//! router then matches the topic exactly (the NATS subscriptions are only as narrow as
//! the filters) and delivers at each subscription's QoS.
//!
//! While the node's NATS connection is away (its server died, it moves to another), the
//! messages published on the other nodes do not reach it. Once it is back, the node
//! reads what the stream stored for its clients' filters since a moment before the
//! connection went ([`Gap`]) through a short-lived ordered consumer into the same
//! delivery task, where what had arrived already is recognised as a repeat: its clean
//! sessions get the QoS 1/2 messages of the gap (after the newer ones that came first).

use crate::link::{Interest, Shared};
use crate::{subject, wire};
use futures_util::StreamExt;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tern_broker::BrokerState;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// A subject no one subscribes to (outside the `mq`/`mqs` roots), for the barrier.
const BARRIER_SUBJECT: &str = "_TERN.barrier";
/// Longest a SUBACK waits for NATS to confirm new subscriptions.
const BARRIER_WAIT: std::time::Duration = std::time::Duration::from_secs(2);
/// Messages waiting for the delivery task.
const DELIVERY_QUEUE: usize = 8 * 1024;
/// How far back, in an origin's sequence numbers, a repeat is recognised.
const WINDOW: u64 = 1 << 16;
/// Origins remembered (a restarted node is a new origin); the least recent goes first.
const ORIGINS: usize = 256;
/// How far before the connection went the catching up starts (the last messages before
/// it may have been lost in flight too).
const GAP_MARGIN: Duration = Duration::from_secs(2);
/// A catching up ends when it has read what the stream held, or once the stream has had
/// nothing for it this long.
const GAP_IDLE: Duration = Duration::from_secs(2);
/// Longest a catching up runs.
const GAP_MOST: Duration = Duration::from_secs(60);
/// Most subjects a catching up filters on; with more, it reads every message of the gap
/// (the delivery task routes only what local subscriptions match).
const GAP_SUBJECTS: usize = 256;

/// When the node's NATS connection went away; noticed again when it is back.
#[derive(Debug, Default)]
pub struct Gap {
    since: parking_lot::Mutex<Option<SystemTime>>,
    back: tokio::sync::Notify,
}

impl Gap {
    /// The connection went away (the first time since it was last back counts).
    pub fn disconnected(&self) {
        self.since.lock().get_or_insert_with(SystemTime::now);
    }

    /// The connection is back: the subscribing task catches up.
    pub fn connected(&self) {
        if self.since.lock().is_some() {
            self.back.notify_one();
        }
    }

    /// Waits until the connection is back after a gap; returns when the gap began.
    async fn closed(&self) -> SystemTime {
        loop {
            self.back.notified().await;
            if let Some(since) = self.since.lock().take() {
                return since;
            }
        }
    }
}

/// Runs the subscribing task: follows `interest`, keeping one NATS subscription per
/// subject of each filter, until `interest` closes.
pub async fn run(
    client: async_nats::Client,
    state: Arc<BrokerState>,
    shared: Arc<Shared>,
    mut interest: mpsc::UnboundedReceiver<Interest>,
) {
    let (tx, rx) = mpsc::channel(DELIVERY_QUEUE);
    let delivery = tokio::spawn(deliver(rx, state, shared.clone()));
    let mut subscriptions: HashMap<String, Vec<JoinHandle<()>>> = HashMap::new();
    let js = async_nats::jetstream::new(client.clone());
    loop {
        let change = tokio::select! {
            change = interest.recv() => change,
            since = shared.gap.closed() => {
                let subjects = crate::session_record::consumer_subjects(subscriptions.keys().map(String::as_str));
                if !subjects.is_empty() {
                    tokio::spawn(catch_up(js.clone(), subjects, since, tx.clone()));
                }
                continue;
            }
        };
        let Some(change) = change else { break };
        match change {
            Interest::Add(filter) => {
                let Some(subjects) = subject::live_filter_subjects(&filter) else {
                    tracing::warn!("cluster: the filter {filter:?} is too long for NATS: its subscribers get only this node's messages");
                    continue;
                };
                let mut tasks = Vec::with_capacity(subjects.len());
                for subject in subjects {
                    match client.subscribe(subject.clone()).await {
                        Ok(subscriber) => tasks.push(tokio::spawn(feed(subscriber, tx.clone()))),
                        Err(e) => tracing::error!("cluster: cannot subscribe to {subject} in NATS: {e}"),
                    }
                }
                tracing::debug!("cluster: subscribed in NATS for {filter:?}");
                subscriptions.insert(filter, tasks);
            }
            Interest::Barrier(ticket) => {
                // A request nobody answers: the server handles a connection's lines in
                // order, so its "no responders" reply comes after it has handled every SUB
                // sent before. (A flush only writes them out.) Without NATS the subscriber
                // gets its SUBACK anyway, after a short wait.
                let request = client.request(BARRIER_SUBJECT, bytes::Bytes::new());
                let _ = tokio::time::timeout(BARRIER_WAIT, request).await;
                ticket.settle();
            }
            Interest::Remove(filter) => {
                // Dropping a subscriber (with its task) unsubscribes it in NATS.
                for task in subscriptions.remove(&filter).into_iter().flatten() {
                    task.abort();
                }
                tracing::debug!("cluster: unsubscribed in NATS for {filter:?}");
            }
        }
    }
    for task in subscriptions.into_values().flatten() {
        task.abort();
    }
    drop(tx);
    let _ = delivery.await;
}

/// Reads what the stream stored on `subjects` since a moment before `since` into the
/// delivery task, until it has had nothing more for a while.
async fn catch_up(
    js: async_nats::jetstream::Context,
    subjects: Vec<String>,
    since: SystemTime,
    tx: mpsc::Sender<async_nats::Message>,
) {
    let start_time = time::OffsetDateTime::from(since - GAP_MARGIN);
    let subjects = if subjects.len() > GAP_SUBJECTS {
        vec![format!("{}.>", subject::ROOT), format!("{}.>", subject::DOLLAR_ROOT)]
    } else {
        subjects
    };
    let config = async_nats::jetstream::consumer::pull::OrderedConfig {
        filter_subjects: subjects,
        deliver_policy: async_nats::jetstream::consumer::DeliverPolicy::ByStartTime { start_time },
        ..Default::default()
    };
    let messages = async {
        let stream = js.get_stream(crate::STREAM).await.map_err(|e| e.to_string())?;
        let consumer = stream.create_consumer(config).await.map_err(|e| e.to_string())?;
        consumer.messages().await.map_err(|e| e.to_string())
    };
    let mut messages = match messages.await {
        Ok(messages) => messages,
        Err(e) => {
            tracing::warn!("cluster: cannot read what was published while NATS was away: {e}");
            return;
        }
    };
    let (started, mut read) = (std::time::Instant::now(), 0u64);
    while started.elapsed() < GAP_MOST {
        match tokio::time::timeout(GAP_IDLE, messages.next()).await {
            Ok(Some(Ok(message))) => {
                read += 1;
                // Caught up once the consumer has nothing more stored: from there on the
                // live subscriptions carry everything (read on, the catching up would
                // hand the delivery task each new message a second time).
                let last = message.info().is_ok_and(|i| i.pending == 0);
                if tx.send(message.message).await.is_err() || last {
                    break;
                }
            }
            Ok(Some(Err(e))) => tracing::debug!("cluster: catching up: {e}"),
            Ok(None) | Err(_) => break,
        }
    }
    tracing::info!("cluster: caught up with what was stored while NATS was away ({read} messages read again)");
}

/// Passes one subscription's messages on, in order.
async fn feed(mut subscriber: async_nats::Subscriber, tx: mpsc::Sender<async_nats::Message>) {
    while let Some(message) = subscriber.next().await {
        if tx.send(message).await.is_err() {
            return;
        }
    }
}

/// Routes each message from another node to this node's subscribers, once.
async fn deliver(mut rx: mpsc::Receiver<async_nats::Message>, state: Arc<BrokerState>, shared: Arc<Shared>) {
    let mut seen = Seen::default();
    let mut nodes: HashMap<String, Arc<str>> = HashMap::new();
    while let Some(message) = rx.recv().await {
        let record = match wire::decode(&message.payload) {
            Ok(record) => record,
            Err(e) => {
                let n = shared.dropped_inbound.fetch_add(1, Relaxed) + 1;
                if n.is_power_of_two() {
                    tracing::warn!(
                        "cluster: a message on {} was dropped: {e} ({n} so far)",
                        message.subject
                    );
                }
                continue;
            }
        };
        if record.origin == *shared.origin || !seen.first_time(&record.origin, record.seq) {
            continue;
        }
        let node = record.origin.split(':').next().unwrap_or_default();
        let node = nodes.entry(node.to_string()).or_insert_with(|| Arc::from(node)).clone();
        // The retained copy comes through the key-value bucket; routed, RETAIN is the
        // flag as published (the router clears it unless Retain As Published).
        state.deliver_from_node(&record.publish, &node);
    }
}

/// Which sequence numbers of each origin have been routed already: a bitmap over the
/// last [`WINDOW`] numbers below the highest seen.
#[derive(Default)]
struct Seen {
    origins: HashMap<String, Window>,
    /// Origins by first use, to forget the oldest.
    order: VecDeque<String>,
}

struct Window {
    top: u64,
    bits: Box<[u64]>,
}

impl Window {
    fn new() -> Window {
        Window {
            top: 0,
            bits: vec![0; (WINDOW / 64) as usize].into_boxed_slice(),
        }
    }

    fn slot(seq: u64) -> (usize, u64) {
        let at = seq % WINDOW;
        ((at / 64) as usize, 1 << (at % 64))
    }

    /// Marks `seq` seen; returns whether it was new. Numbers that fell out of the window
    /// count as seen: they came through some subscription long ago.
    fn mark(&mut self, seq: u64) -> bool {
        if seq > self.top {
            if seq - self.top >= WINDOW {
                self.bits.fill(0);
            } else {
                for s in self.top + 1..seq {
                    let (word, bit) = Self::slot(s);
                    self.bits[word] &= !bit;
                }
            }
            self.top = seq;
            let (word, bit) = Self::slot(seq);
            self.bits[word] |= bit;
            return true;
        }
        if self.top - seq >= WINDOW {
            return false;
        }
        let (word, bit) = Self::slot(seq);
        let new = self.bits[word] & bit == 0;
        self.bits[word] |= bit;
        new
    }
}

impl Seen {
    fn first_time(&mut self, origin: &str, seq: u64) -> bool {
        if !self.origins.contains_key(origin) {
            if self.order.len() >= ORIGINS {
                if let Some(oldest) = self.order.pop_front() {
                    self.origins.remove(&oldest);
                }
            }
            self.order.push_back(origin.to_string());
            self.origins.insert(origin.to_string(), Window::new());
        }
        self.origins.get_mut(origin).is_some_and(|w| w.mark(seq))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_number_passes_once() {
        let mut seen = Seen::default();
        assert!(seen.first_time("a:1", 1));
        assert!(!seen.first_time("a:1", 1));
        assert!(seen.first_time("a:1", 3));
        assert!(seen.first_time("a:1", 2));
        assert!(!seen.first_time("a:1", 2));
        assert!(!seen.first_time("a:1", 3));
        assert!(seen.first_time("b:1", 1), "origins are counted apart");
    }

    #[test]
    fn the_window_slides() {
        let mut seen = Seen::default();
        assert!(seen.first_time("a", 5));
        assert!(seen.first_time("a", 5 + WINDOW - 1));
        assert!(!seen.first_time("a", 5 + WINDOW - 1));
        // A slot reused by a later number is cleared for it.
        assert!(seen.first_time("a", 5 + WINDOW));
        assert!(!seen.first_time("a", 3), "below the window");
        assert!(seen.first_time("a", 10 * WINDOW));
        assert!(!seen.first_time("a", 10 * WINDOW));
    }

    #[test]
    fn the_oldest_origin_is_forgotten() {
        let mut seen = Seen::default();
        for i in 0..=ORIGINS {
            assert!(seen.first_time(&format!("n:{i}"), 1));
        }
        assert_eq!(seen.origins.len(), ORIGINS);
        assert!(seen.first_time("n:0", 1), "forgotten, so new again");
    }
}
