//! The feed of one persistent session on the node that holds it: one task that reads the
//! session's durable consumer on the `MQTT_MSGS` stream into its queue (through the
//! router, at each matching subscription's QoS), acknowledges each message in JetStream
//! once the client is done with it, follows the session's subscriptions (the consumer's
//! subjects and the record in `MQTT_SESSIONS`), and deletes both when the session ends.
//!
//! The consumer holds at most [`crate::sessions`]' in-flight limit unacknowledged; a
//! message JetStream hands out again while it is still queued for the client is skipped.
//! When the consumer is deleted (another node took the session), the feed ends.
//!
//! A delivery can be lost on its way (the NATS server that carried it, or the consumer's
//! leader, died with it in flight): JetStream counts it as handed out and would send it
//! again only after the acknowledgement wait (minutes). The feed notices such a loss, by
//! a gap in the consumer's delivery numbers or, after an error of the reading, by the
//! consumer counting deliveries that never came, and reads the session's messages again
//! from the consumer's acknowledgement floor through a new consumer (what is still queued
//! for the client is recognised and not sent twice).

use crate::outbound::Ticket;
use crate::session_record::{consumer_subjects, Record};
use crate::sessions::{consumer_config, not_found, Engine, Ready, Taken};
use crate::wire;
use async_nats::jetstream::consumer::pull::{Config, MessagesErrorKind, Stream};
use async_nats::jetstream::consumer::FromConsumer;
use async_nats::jetstream::message::Acker;
use futures_util::StreamExt;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tern_broker::session::Session;
use tern_proto::ByteStr;

use tokio::sync::mpsc;

/// How often a feed looks its session up again in the broker's registry.
const LOOKUP_EVERY: Duration = Duration::from_secs(1);
/// How long deliveries on their way take at most, for telling them from lost ones.
const CHECK_EVERY: Duration = Duration::from_secs(1);

/// What the broker tells a feed.
#[derive(Debug)]
pub enum Command {
    /// The session's subscriptions changed; the ticket (a SUBSCRIBE's) is settled once
    /// the consumer keeps the new subscriptions' messages.
    Subscribed(Option<Ticket>),
    /// The client is done with the message of this stream sequence.
    Acked(u64),
    /// The session ended: its record and consumer go.
    Ended,
    /// Another node holds the session now: stop, leaving the consumer to it.
    Stop,
    /// Another node takes the session ([`crate::handover`]): stop, and say which messages
    /// the client finished lately.
    HandOver(tokio::sync::oneshot::Sender<Vec<u64>>),
}

/// Most finished messages a feed remembers regardless of the floor (those whose
/// acknowledgements may still be on their way to JetStream when the session moves).
const FINISHED_RECENT: usize = 64;
/// Most finished messages a feed remembers above the lowest one still queued (a message
/// the client never finishes must not let them grow without end).
const FINISHED_ABOVE_MOST: usize = 16 * 1024;

/// The stream sequences of messages the client finished: for a node that takes the
/// session, whose new consumer starts at JetStream's acknowledgement floor and would
/// hand those out again. Kept: those above the lowest message still queued (all of them
/// are above the floor), and the last [`FINISHED_RECENT`]. Those below the lowest queued
/// one are dropped only now and then (the lowest is looked for when the set has doubled),
/// not on every acknowledgement.
struct Finished {
    above_queued: std::collections::BTreeSet<u64>,
    recent: std::collections::VecDeque<u64>,
    /// The size of `above_queued` at which the lowest queued message is looked for again.
    prune_at: usize,
}

impl Default for Finished {
    fn default() -> Finished {
        Finished {
            above_queued: Default::default(),
            recent: Default::default(),
            prune_at: FINISHED_RECENT,
        }
    }
}

impl Finished {
    fn add(&mut self, seq: u64, lowest_queued: impl FnOnce() -> Option<u64>) {
        if self.recent.len() == FINISHED_RECENT {
            self.recent.pop_front();
        }
        self.recent.push_back(seq);
        self.above_queued.insert(seq);
        if self.above_queued.len() > FINISHED_ABOVE_MOST {
            self.above_queued.pop_first();
        }
        if self.above_queued.len() < self.prune_at {
            return;
        }
        match lowest_queued() {
            Some(lowest) => self.above_queued = self.above_queued.split_off(&lowest),
            None => self.above_queued.clear(),
        }
        self.prune_at = (2 * self.above_queued.len()).max(FINISHED_RECENT);
    }

    fn all(&self) -> Vec<u64> {
        let mut all: Vec<u64> = self.above_queued.iter().chain(&self.recent).copied().collect();
        all.sort_unstable();
        all.dedup();
        all
    }
}

/// One session's feed.
pub struct Feed {
    engine: Arc<Engine>,
    client_id: String,
    session: u64,
    key: String,
    consumer: Option<(String, Config)>,
    /// The consumer taken over on CONNECT, whose configuration is read at start.
    taken: Option<String>,
    revision: Option<u64>,
    /// The record as last written.
    written: Option<Record>,
    /// Messages queued for the client, by stream sequence, until it is done with them;
    /// without an acknowledger yet for those the old node handed over in flight (in the
    /// session already: the consumer's delivery of one is kept, not queued again).
    pending: HashMap<u64, Option<Acker>>,
    /// Messages the client finished before the consumer handed them to this feed (on
    /// the old node, or handed over): acknowledged when they come, not queued.
    done: HashSet<u64>,
    finished: Finished,
    /// The session, and when it was looked up (again at most once a second: the
    /// registry's lock is CONNECT's, not every message's).
    cached: Option<(Arc<Session>, Instant)>,
    /// The consumer's delivery number of the last message read: a jump says deliveries
    /// were lost on the way.
    last_delivery: u64,
    /// Whether deliveries may have been lost, and when that is checked next.
    loss: Loss,
    check_at: tokio::time::Instant,
}

/// What a feed knows of lost deliveries.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Loss {
    None,
    /// After an error of the reading: the consumer's count of deliveries at the last
    /// check (`None` before the first), to be compared with what arrived.
    Suspected(Option<u64>),
    /// A gap in the delivery numbers: read again at once.
    Certain,
}

/// Whether a feed goes on.
enum Next {
    Go,
    /// On, reading a new consumer.
    Reopen,
    End,
    /// The consumer is gone: another node took the session (or a clean start there ended
    /// it). The session here goes too, once its client is offline.
    Taken,
}

impl Feed {
    pub fn new(engine: Arc<Engine>, client_id: String, session: u64, key: String, taken: Option<Taken>) -> Feed {
        let (taken, revision, handed, done) = match taken {
            Some(t) => (t.consumer, Some(t.revision), t.handed, t.done),
            None => (None, None, Vec::new(), Vec::new()),
        };
        Feed {
            engine,
            client_id,
            session,
            key,
            consumer: None,
            taken,
            revision,
            written: None,
            pending: handed.into_iter().map(|seq| (seq, None)).collect(),
            done: done.into_iter().collect(),
            finished: Finished::default(),
            cached: None,
            last_delivery: 0,
            loss: Loss::None,
            check_at: tokio::time::Instant::now(),
        }
    }

    pub async fn run(mut self, mut commands: mpsc::UnboundedReceiver<Command>) {
        let engine = self.engine.clone();
        let ready = loop {
            if let Some(ready) = engine.ready.get() {
                break ready;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        if let Some(name) = self.taken.take() {
            let info = ready.stream.consumer_info(&name).await.map_err(|e| e.to_string());
            match info.and_then(|i| Config::try_from_consumer_config(i.config).map_err(|e| e.to_string())) {
                Ok(config) => self.consumer = Some((name, config)),
                Err(e) => tracing::warn!(client = %self.client_id, "cluster: the session's consumer is gone: {e}"),
            }
        }
        if let Err(e) = self.sync(ready).await {
            tracing::warn!(client = %self.client_id, "cluster: the session's record could not be written: {e}");
        }
        let mut messages = self.open().await;
        loop {
            let next = tokio::select! {
                command = commands.recv() => match command {
                    Some(Command::Subscribed(ticket)) => {
                        let before = self.consumer_name();
                        let result = self.sync(ready).await;
                        if let Err(e) = &result {
                            tracing::warn!(client = %self.client_id, "cluster: the session's subscriptions could not be kept in the cluster: {e}");
                        }
                        if self.consumer_name() != before {
                            self.last_delivery = 0;
                            messages = self.open().await;
                        }
                        match (ticket, result) {
                            (Some(ticket), Ok(())) => ticket.settle(),
                            (Some(ticket), Err(_)) => ticket.fail(),
                            _ => {}
                        }
                        Next::Go
                    }
                    Some(Command::Acked(seq)) => {
                        match self.pending.remove(&seq) {
                            Some(Some(acker)) => {
                                let _ = acker.ack().await;
                            }
                            // Handed over, finished before the consumer handed it out here.
                            Some(None) => {
                                self.done.insert(seq);
                            }
                            None => {}
                        }
                        let pending = &self.pending;
                        self.finished.add(seq, || pending.keys().min().copied());
                        Next::Go
                    }
                    Some(Command::HandOver(answer)) => {
                        // With what an earlier node handed over and the consumer has not
                        // handed out here yet (a client moving twice in a row).
                        let mut done = self.finished.all();
                        done.extend(&self.done);
                        let _ = answer.send(done);
                        Next::End
                    }
                    Some(Command::Ended) => {
                        self.end(ready).await;
                        Next::End
                    }
                    Some(Command::Stop) | None => Next::End,
                },
                message = next_message(&mut messages) => match message {
                    Some(Ok(message)) => self.deliver(message).await,
                    Some(Err(e)) if e.kind() == MessagesErrorKind::ConsumerDeleted => {
                        tracing::info!(client = %self.client_id, "cluster: the session's consumer was deleted (taken by another node)");
                        Next::Taken
                    }
                    Some(Err(e)) => {
                        tracing::debug!(client = %self.client_id, "cluster: reading the session's messages: {e}");
                        self.suspect_loss(Loss::Suspected(None));
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        self.still_there(ready).await
                    }
                    None => {
                        messages = None;
                        Next::Go
                    }
                },
                _ = tokio::time::sleep_until(self.check_at), if self.loss != Loss::None => {
                    self.check_deliveries(ready).await
                }
                // Reading could not start (JetStream did not answer): tried again each second.
                _ = tokio::time::sleep(Duration::from_secs(1)), if messages.is_none() && self.consumer.is_some() => {
                    messages = self.open().await;
                    match messages {
                        Some(_) => Next::Go,
                        None => self.still_there(ready).await,
                    }
                }
            };
            match next {
                Next::End => break,
                Next::Taken => {
                    self.engine.taken_elsewhere(&self.client_id, self.session);
                    break;
                }
                Next::Reopen => messages = self.open().await,
                Next::Go => {}
            }
        }
        self.engine.feed_gone(&self.client_id, self.session);
    }

    /// After an error of the reading: whether the consumer handed out deliveries that
    /// never came. Deliveries still on their way arrive within the second between two
    /// checks, so only a count the feed has not reached by the next check is a loss.
    async fn check_deliveries(&mut self, ready: &Ready) -> Next {
        let Some((name, _)) = &self.consumer else {
            self.loss = Loss::None;
            return Next::Go;
        };
        if self.loss == Loss::Certain {
            return self.read_again(ready).await;
        }
        self.check_at = tokio::time::Instant::now() + CHECK_EVERY;
        let delivered = match ready.stream.consumer_info(name).await {
            Ok(info) => info.delivered.consumer_sequence,
            Err(e) if not_found(&e) => return Next::Taken,
            Err(_) => return Next::Go,
        };
        match self.loss {
            Loss::Suspected(Some(seen)) if seen > self.last_delivery => self.read_again(ready).await,
            _ if delivered > self.last_delivery => {
                self.loss = Loss::Suspected(Some(delivered));
                Next::Go
            }
            _ => {
                self.loss = Loss::None;
                Next::Go
            }
        }
    }

    /// Deliveries may have been lost (checked in a while, unless a check is under way)
    /// or were (read again at once).
    fn suspect_loss(&mut self, loss: Loss) {
        let now = tokio::time::Instant::now();
        match (loss, self.loss) {
            (Loss::Certain, _) => (self.loss, self.check_at) = (Loss::Certain, now),
            (Loss::Suspected(_), Loss::None) => (self.loss, self.check_at) = (loss, now + CHECK_EVERY),
            _ => {}
        }
    }

    /// Deliveries were lost: a new consumer reads the session's messages again from the
    /// old one's acknowledgement floor; the record names it (compare-and-set, so a node
    /// that took the session meanwhile keeps it) and the old consumer goes.
    async fn read_again(&mut self, ready: &Ready) -> Next {
        let Some((old, config)) = self.consumer.clone() else {
            return Next::Go;
        };
        let floor = match ready.stream.consumer_info(&old).await {
            Ok(info) => info.ack_floor.stream_sequence,
            Err(e) if not_found(&e) => return Next::Taken,
            Err(_) => return Next::Go,
        };
        let name = self.engine.consumer_name();
        let fresh = consumer_config(&name, config.filter_subjects.clone(), Some(floor + 1), self.expiry());
        if let Err(e) = ready.stream.create_consumer(fresh.clone()).await {
            tracing::debug!(client = %self.client_id, "cluster: a consumer to read the session again: {e}");
            return Next::Go;
        }
        self.consumer = Some((name.clone(), fresh));
        if let Err(e) = self.sync(ready).await {
            tracing::debug!(client = %self.client_id, "cluster: the session's record naming a new consumer: {e}");
            let _ = ready.stream.delete_consumer(&name).await;
            self.consumer = Some((old, config));
            return Next::Go;
        }
        let _ = ready.stream.delete_consumer(&old).await;
        tracing::info!(
            client = %self.client_id,
            from = floor + 1,
            "cluster: deliveries of the session's messages were lost on the way: read again from the stream"
        );
        self.last_delivery = 0;
        self.loss = Loss::None;
        Next::Reopen
    }

    /// Whether the consumer still exists (else another node took the session).
    async fn still_there(&self, ready: &Ready) -> Next {
        let Some((name, _)) = &self.consumer else {
            return Next::Go;
        };
        match ready.stream.consumer_info(name).await {
            Err(e) if not_found(&e) => {
                tracing::info!(client = %self.client_id, "cluster: the session's consumer is gone (taken by another node)");
                Next::Taken
            }
            _ => Next::Go,
        }
    }

    fn consumer_name(&self) -> Option<String> {
        self.consumer.as_ref().map(|(name, _)| name.clone())
    }

    /// Reads the consumer's messages, if there is a consumer (and it still exists).
    async fn open(&self) -> Option<Stream> {
        let (name, _) = self.consumer.as_ref()?;
        let ready = self.engine.ready.get()?;
        let consumer = ready.stream.get_consumer::<Config>(name).await.ok()?;
        consumer.messages().await.ok()
    }

    /// Queues one message for the session (or acknowledges it at once if it is not for
    /// the session at QoS 1/2); ends the feed if the session is gone.
    async fn deliver(&mut self, message: async_nats::jetstream::Message) -> Next {
        let Ok((seq, delivery, published)) = message
            .info()
            .map(|i| (i.stream_sequence, i.consumer_sequence, i.published.unix_timestamp()))
        else {
            return Next::Go;
        };
        if self.last_delivery > 0 && delivery > self.last_delivery + 1 {
            // A delivery between the two was lost: read again at once.
            self.suspect_loss(Loss::Certain);
        }
        self.last_delivery = self.last_delivery.max(delivery);
        let (message, acker) = message.split();
        if self.done.remove(&seq) {
            let _ = acker.ack().await;
            return Next::Go;
        }
        if let Some(queued) = self.pending.get_mut(&seq) {
            // Handed out again while still queued (or handed over in flight): the newest
            // delivery is the one to acknowledge (the old one may be a deleted consumer's).
            *queued = Some(acker);
            return Next::Go;
        }
        if self.cached.as_ref().is_none_or(|(_, at)| at.elapsed() >= LOOKUP_EVERY) {
            let id = ByteStr::from(self.client_id.as_str());
            let session = self.engine.state.sessions.current(&id, self.session);
            self.cached = session.map(|s| (s, Instant::now()));
        }
        let queued = match (&self.cached, wire::decode(&message.payload)) {
            (None, _) => None,
            (Some((session, _)), Ok(mut record)) => {
                let state = &self.engine.state;
                let valid = wire::still_valid(&mut record.publish, published);
                Some(
                    valid
                        && state.router.publish_to_session(
                            &record.publish,
                            record.publisher.as_deref(),
                            session,
                            seq,
                            &state.metrics,
                        ),
                )
            }
            (Some(_), Err(_)) => Some(false),
        };
        match queued {
            None => return Next::End,
            Some(true) => {
                self.pending.insert(seq, Some(acker));
            }
            Some(false) => {
                let _ = acker.ack().await;
            }
        }
        Next::Go
    }

    /// The session's subscriptions (non-shared ones make the consumer's subjects) and its
    /// expiry, as the broker holds them now; `None` if the session is gone.
    fn session_now(&self) -> Option<Record> {
        let session = self.engine.state.sessions.with(|map| {
            map.get(self.client_id.as_str())
                .filter(|s| s.id == self.session)
                .cloned()
        })?;
        let state = session.state.lock();
        let expiry = state.expiry.map(|e| e.as_secs());
        let mut subscriptions: Vec<_> = state
            .subscriptions
            .iter()
            .map(|(filter, (options, identifier))| (filter.clone(), *options, *identifier))
            .collect();
        subscriptions.sort_by(|a, b| a.0.cmp(&b.0));
        Some(Record {
            origin: self.engine.shared.origin.to_string(),
            consumer: None,
            expiry,
            subscriptions,
        })
    }

    fn expiry(&self) -> Option<Duration> {
        let session = self.engine.state.sessions.with(|map| {
            map.get(self.client_id.as_str())
                .filter(|s| s.id == self.session)
                .cloned()
        })?;
        let expiry = session.state.lock().expiry;
        expiry
    }

    /// Makes the consumer follow the session's subscriptions (made, changed or deleted)
    /// and writes the record if it changed.
    async fn sync(&mut self, ready: &Ready) -> Result<(), String> {
        let Some(mut record) = self.session_now() else {
            return Ok(());
        };
        let subjects = consumer_subjects(record.reliable_filters());
        let expiry = self.expiry();
        match (self.consumer.take(), subjects.is_empty()) {
            (None, true) => {}
            (Some((name, _)), true) => {
                let _ = ready.stream.delete_consumer(&name).await;
            }
            (None, false) => {
                let name = self.engine.consumer_name();
                let config = consumer_config(&name, subjects, None, expiry);
                ready
                    .stream
                    .create_consumer(config.clone())
                    .await
                    .map_err(|e| e.to_string())?;
                self.consumer = Some((name, config));
            }
            (Some((name, mut config)), false) => {
                let threshold = consumer_config(&name, Vec::new(), None, expiry).inactive_threshold;
                if config.filter_subjects != subjects || config.inactive_threshold != threshold {
                    config.filter_subjects = subjects;
                    config.filter_subject = String::new();
                    config.inactive_threshold = threshold;
                    if let Err(e) = ready.stream.update_consumer(config.clone()).await {
                        if not_found(&e) {
                            return Err("the session's consumer is gone".into());
                        }
                        self.consumer = Some((name, config));
                        return Err(e.to_string());
                    }
                }
                self.consumer = Some((name, config));
            }
        }
        record.consumer = self.consumer.as_ref().map(|(name, _)| name.clone());
        if self.written.as_ref() == Some(&record) {
            return Ok(());
        }
        let value = record.encode().into_bytes().into();
        let written = match self.revision {
            Some(revision) => ready
                .bucket
                .update(&self.key, value, revision)
                .await
                .map_err(|e| e.to_string()),
            None => ready.bucket.put(&self.key, value).await.map_err(|e| e.to_string()),
        };
        self.revision = Some(written?);
        self.written = Some(record);
        Ok(())
    }

    /// The session ended: its record (if still this node's) and consumer are deleted.
    async fn end(&mut self, ready: &Ready) {
        if let Some(revision) = self.revision {
            let _ = ready.bucket.delete_expect_revision(&self.key, Some(revision)).await;
        }
        if let Some((name, _)) = self.consumer.take() {
            let _ = ready.stream.delete_consumer(&name).await;
        }
    }
}

async fn next_message(
    messages: &mut Option<Stream>,
) -> Option<Result<async_nats::jetstream::Message, async_nats::error::Error<MessagesErrorKind>>> {
    match messages {
        Some(stream) => stream.next().await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finished_messages_stay_bounded_and_keep_what_the_floor_may_hide() {
        let mut finished = Finished::default();
        // In order, nothing left queued: the last few only.
        for seq in 1..=10_000 {
            finished.add(seq, || None);
        }
        let all = finished.all();
        assert!(all.len() <= 2 * FINISHED_RECENT, "{}", all.len());
        assert!(all.contains(&10_000) && all.contains(&(10_001 - FINISHED_RECENT as u64)));
        // Message 20,000 never finished: every one finished above it is kept, up to the cap.
        let mut finished = Finished::default();
        for seq in 20_001..=20_000 + 3 * FINISHED_ABOVE_MOST as u64 {
            finished.add(seq, || Some(20_000));
        }
        let all = finished.all();
        assert_eq!(all.len(), FINISHED_ABOVE_MOST);
        assert_eq!(all.last(), Some(&(20_000 + 3 * FINISHED_ABOVE_MOST as u64)));
    }
}
