//! The historian's tasks: the consumer that takes device events from the broker's event
//! stream into the store in batches, and the retention sweep.
//!
//! The consumer listens to the stream only while some organization stores events, so a
//! broker where none does costs publishers nothing; it looks again when settings change
//! (at once: the REST API wakes it) and every second. Each device event
//! (`$iot/<org>/iot-2/type/<t>/id/<d>/evt/<e>/fmt/<f>`) its organization's settings
//! want is stamped with the broker's clock and queued, grouped by series
//! ([`crate::historian_batch`]). A thread of its own reads the stream every [`POLL`] (at
//! once again while it is busy) rather than being woken per event, and without a timer
//! on the broker's runtime, so the broker's worker threads are left to the connections.
//! A batch goes to the backend, on a blocking thread, once [`BATCH_EVENTS`] are queued or
//! [`BATCH_DELAY`] after the first;
//! while a batch is being written the queue keeps filling (the next batch is larger, so
//! a slow disk means fewer, bigger transactions), up to [`MAX_QUEUED`] events, past which
//! new events are dropped and counted. The broker never waits for any of this: a consumer
//! that falls more than the event stream's ring behind loses the oldest events, which are
//! counted and logged too. The consumer runs through `EventStream::spawn_consumer`, so at
//! a clean stop it takes what is left in the stream and writes its last batch before the
//! broker exits.
//!
//! The sweep removes, every [`SWEEP_INTERVAL`] (and at once when a test moves the
//! broker's clock), each organization's events older than its retention.

use crate::historian::{now_ms, Historian};
use crate::historian_batch::Batcher;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;
use tern_broker::events::{Event, EventKind, EventReceiver};
use tern_broker::BrokerHandle;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// A batch is written once this many events are queued...
pub const BATCH_EVENTS: usize = 1000;
/// ... or this long after its first event.
pub const BATCH_DELAY: Duration = Duration::from_millis(100);
/// Events queued at most while a batch is written; past it new events are dropped.
pub const MAX_QUEUED: usize = 100_000;
/// How often the consumer takes what the event stream holds for it, while it is quiet.
/// Reading on a timer instead of being woken for each event keeps a busy broker's
/// threads from waking the consumer (an eventfd write and a context switch) per message;
/// the ring of published messages holds 32,768 events, so up to about 3 million a second
/// wait safely in between (and a thread left unscheduled for a while loses nothing).
const POLL: Duration = Duration::from_millis(10);
/// A take this large means the stream is busy: read again at once (after a yield).
const BUSY: usize = 1024;
/// How often old events are removed.
pub const SWEEP_INTERVAL: Duration = Duration::from_secs(60);
/// How often the consumer checks whether it should listen, and the sweep whether the
/// clock moved.
const RECHECK: Duration = Duration::from_secs(1);
/// Losses are logged at most this often.
const LOSS_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// Opens the historian of `data_dir` on the store the configuration picks (PostgreSQL
/// with `historian_postgres`, else the embedded one; on a store that failed to open,
/// every read and write fails with the reason, logged once here) and starts its tasks.
/// Call before the broker runs.
pub fn start(handle: &BrokerHandle, data_dir: &std::path::Path) -> Arc<Historian> {
    let configured = crate::historian_pg::configured(handle, data_dir);
    let backend: Arc<dyn crate::historian::HistorianBackend> =
        configured.unwrap_or_else(|| match crate::historian_embedded::EmbeddedStore::open(data_dir) {
            Ok(store) => Arc::new(store),
            Err(e) => {
                tracing::error!("historian: {e}: nothing will be stored");
                Arc::new(crate::historian::NoStore(e.to_string()))
            }
        });
    let (historian, errors) = Historian::new(data_dir, backend);
    for e in errors {
        tracing::error!("historian settings: {e} (that file is ignored: its organization stores nothing, or removed historian_topic lines are forgotten)");
    }
    let historian = Arc::new(historian);
    crate::historian_topics::apply_config(&historian, handle.state());
    spawn(handle, historian.clone());
    historian
}

/// Appends the historian's counters to a `/metrics` scrape.
fn exposition(historian: &Historian, out: &mut String) {
    use std::fmt::Write;
    let counters = &historian.counters;
    for (name, help, value) in [
        ("tern_historian_stored_total", "Device events the historian stored.", &counters.stored),
        (
            "tern_historian_lost_total",
            "Device events the historian wanted but did not store (fell behind, queue full, or a batch the store refused).",
            &counters.lost,
        ),
        ("tern_historian_purged_total", "Stored events removed by retention.", &counters.purged),
    ] {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}", value.load(Relaxed));
    }
}

/// Starts the consumer and the sweep; both stop with the broker. The counters are added
/// to the broker's `/metrics`.
pub fn spawn(handle: &BrokerHandle, historian: Arc<Historian>) {
    let state = handle.state().clone();
    let counted = historian.clone();
    state
        .metrics
        .extra
        .add(Box::new(move |out: &mut String| exposition(&counted, out)));
    let consumer = Consumer {
        historian: historian.clone(),
        batch: Batcher::default(),
        first_queued: None,
        writing: None,
        lost_seen: 0,
        lost_logged: 0,
        last_loss_log: None,
    };
    let stream = state.clone();
    state.events().spawn_consumer(consumer.run(stream));
    let stop = state.shutdown.clone();
    tokio::spawn(async move {
        let state = state;
        let mut last = Instant::now();
        let mut offset = tern_broker::clock::offset();
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(RECHECK) => {}
            }
            crate::historian_topics::apply_config(&historian, &state);
            let moved = tern_broker::clock::offset();
            if last.elapsed() < SWEEP_INTERVAL && moved == offset {
                continue;
            }
            (last, offset) = (Instant::now(), moved);
            sweep(&historian).await;
        }
    });
}

/// Removes each organization's and each `historian_topic` store's events older than
/// its retention, then the oldest of those over their size limit.
async fn sweep(historian: &Arc<Historian>) {
    let now = now_ms();
    let mut targets: Vec<(String, String, u64, Option<u64>)> = Vec::new();
    for (org, config) in historian.configs.all() {
        targets.push((org.clone(), org, config.retention_ms(), config.retention_bytes));
    }
    for store in historian.configs.topics.all().iter() {
        let name = format!("historian_topic {}", store.filter);
        targets.push((store.org(), name, store.retention_ms(), store.retention_bytes));
    }
    for (org, name, retention_ms, max_bytes) in targets {
        let backend = historian.backend.clone();
        let before = now.saturating_sub(retention_ms);
        let purged = tokio::task::spawn_blocking(move || {
            let by_size = match max_bytes {
                Some(max) => backend.bytes_cutoff(&org, max)?,
                None => None,
            };
            let cut = by_size.map_or(before, |at| at.max(before));
            Ok::<_, crate::historian::HistorianError>((backend.purge_before(&org, cut)?, by_size > Some(before)))
        })
        .await;
        match purged {
            Ok(Ok((0, _))) => {}
            Ok(Ok((n, by_size))) => {
                historian.counters.purged.fetch_add(n, Relaxed);
                let why = match (by_size, max_bytes) {
                    (true, Some(max)) => format!("over {max} bytes"),
                    _ => format!("older than {} days", retention_ms / 86_400_000),
                };
                tracing::info!("historian: retention removed {n} events of {name} ({why})");
            }
            Ok(Err(e)) => tracing::error!("historian: retention of {name}: {e}"),
            Err(e) => tracing::error!("historian: retention of {name} failed: {e}"),
        }
    }
    let topics = historian.clone();
    match tokio::task::spawn_blocking(move || topics.configs.topics.forget_expired(now)).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::error!("historian: {e}"),
        Err(e) => tracing::error!("historian: forgetting removed historian_topic lines failed: {e}"),
    }
}

/// The consumer's state.
struct Consumer {
    historian: Arc<Historian>,
    /// Events waiting for the next batch.
    batch: Batcher,
    /// When the oldest of them was queued.
    first_queued: Option<Instant>,
    /// The batch being written, with its size.
    writing: Option<Writing>,
    /// Events the stream said this consumer lost, as last seen.
    lost_seen: u64,
    /// Lost events as last logged.
    lost_logged: u64,
    last_loss_log: Option<Instant>,
}

/// A write's outcome, with a failed task as an error.
fn write_result(
    result: Result<Result<(), crate::historian::HistorianError>, tokio::task::JoinError>,
) -> Result<(), String> {
    match result {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(e) => Err(e.to_string()),
    }
}

/// What the consumer's thread and its task share.
#[derive(Default)]
struct Control {
    /// Set when the broker stops: the thread returns.
    stop: parking_lot::Mutex<bool>,
    woken: parking_lot::Condvar,
    /// A subscription the task made when settings changed, for the thread to take.
    handoff: parking_lot::Mutex<Option<EventReceiver>>,
}

/// What a write in flight gives back: its result and its number of events.
type Writing = (JoinHandle<Result<(), crate::historian::HistorianError>>, usize);

impl Consumer {
    /// Runs the consumer until the broker stops. While it runs, the stream is read by a
    /// thread of its own (on the blocking pool) every [`POLL`]: a timer on the runtime
    /// would wake one of the broker's worker threads for each read, which then takes
    /// connections' work from the other (on two cores that cost more than the reading).
    /// This task only subscribes at once when settings change (so an event published
    /// after a change's answer is seen) and, at the stop, takes what is left in the
    /// stream until it ends and writes the last batches.
    async fn run(self, state: Arc<tern_broker::BrokerState>) {
        let subscribe = || state.events().subscribe(&[EventKind::Published]);
        let historian = self.historian.clone();
        let control = Arc::new(Control::default());
        let events = historian.configs.any_enabled().then(subscribe);
        let thread = {
            let (control, state) = (control.clone(), state.clone());
            tokio::task::spawn_blocking(move || {
                let mut consumer = self;
                let mut events = events;
                consumer.listen(&mut events, &control, &state);
                (consumer, events)
            })
        };
        let stop = state.shutdown.clone();
        loop {
            tokio::select! {
                () = stop.cancelled() => break,
                () = historian.wake.notified() => {}
            }
            let mut handoff = control.handoff.lock();
            if handoff.is_none() && historian.configs.any_enabled() {
                *handoff = Some(subscribe());
            }
            drop(handoff);
            control.woken.notify_one();
        }
        *control.stop.lock() = true;
        control.woken.notify_one();
        match thread.await {
            Ok((consumer, events)) => consumer.finish(events).await,
            Err(e) => tracing::error!("historian: the consumer failed: {e}"),
        }
    }

    /// The consumer's thread: reads the stream every [`POLL`] (at once again while it is
    /// busy), starts a batch's write when it is due, keeps the subscription while some
    /// organization stores; returns when `control` says stop.
    fn listen(&mut self, events: &mut Option<EventReceiver>, control: &Control, state: &tern_broker::BrokerState) {
        let mut wake_at = std::time::Instant::now();
        let mut recheck = std::time::Instant::now() + RECHECK;
        loop {
            {
                let mut stop = control.stop.lock();
                if !*stop {
                    control.woken.wait_until(&mut stop, wake_at);
                }
                if *stop {
                    return;
                }
            }
            let handed = control.handoff.lock().take();
            if handed.is_some() || std::time::Instant::now() >= recheck {
                recheck = std::time::Instant::now() + RECHECK;
                match self.historian.configs.any_enabled() {
                    true if events.is_none() => {
                        *events = handed.or_else(|| Some(state.events().subscribe(&[EventKind::Published])));
                        self.lost_seen = 0;
                    }
                    false => *events = None,
                    true => {}
                }
            }
            let drained = events.as_mut().map_or(0, |events| self.drain(events));
            if self.writing.as_ref().is_some_and(|(handle, _)| handle.is_finished()) {
                if let Some((handle, n)) = self.writing.take() {
                    let result = tokio::runtime::Handle::current().block_on(handle);
                    self.finished(write_result(result), n);
                }
            }
            let due = self.first_queued.map(|first| {
                if self.batch.len() >= BATCH_EVENTS {
                    first
                } else {
                    first + BATCH_DELAY
                }
            });
            if self.writing.is_none() && due.is_some_and(|due| due <= Instant::now()) {
                self.write();
            }
            self.count_losses(events.as_ref());
            let now = std::time::Instant::now();
            wake_at = if drained >= BUSY { now } else { now + POLL };
            if let (None, Some(due)) = (&self.writing, due) {
                wake_at = wake_at.min(due.into_std().max(now));
            }
        }
    }

    /// At the stop: what is left in the stream until it ends, then the write in flight
    /// and the last batch.
    async fn finish(mut self, mut events: Option<EventReceiver>) {
        if let Some(events) = events.as_mut() {
            while let Some(event) = events.recv().await {
                self.batch.check_settings(&self.historian);
                self.take(event, now_ms());
            }
        }
        self.count_losses(events.as_ref());
        if let Some((handle, n)) = self.writing.take() {
            self.finished(write_result(handle.await), n);
        }
        self.write();
        if let Some((handle, n)) = self.writing.take() {
            self.finished(write_result(handle.await), n);
        }
    }

    /// Takes every event waiting in the stream (at most the ring's length); how many.
    /// They are stamped with one reading of the clock: they reached the stream since the
    /// last drain, at most [`POLL`] ago.
    fn drain(&mut self, events: &mut EventReceiver) -> usize {
        self.batch.check_settings(&self.historian);
        let now = now_ms();
        let mut drained = 0;
        while let Some(event) = events.try_recv() {
            self.take(event, now);
            drained += 1;
        }
        drained
    }

    /// Queues a published message if it is a device event some organization stores, or
    /// a message a `historian_topic` line stores.
    fn take(&mut self, event: Event, now: u64) {
        let Event::Published { topic, payload, .. } = event else {
            return;
        };
        if self.batch.len() >= MAX_QUEUED {
            if self.batch.stores(&self.historian, &topic) {
                self.historian.counters.lost.fetch_add(1, Relaxed);
            }
            return;
        }
        if self.batch.push(&self.historian, &topic, payload, now) {
            self.first_queued.get_or_insert_with(Instant::now);
        }
    }

    /// Starts writing what is queued (if anything is, and no write is in flight).
    fn write(&mut self) {
        if self.batch.is_empty() || self.writing.is_some() {
            return;
        }
        let n = self.batch.len();
        let batch = self.batch.take();
        self.first_queued = None;
        let backend = self.historian.backend.clone();
        self.writing = Some((tokio::task::spawn_blocking(move || backend.append_series(&batch)), n));
    }

    fn finished(&mut self, result: Result<(), String>, n: usize) {
        let counters = &self.historian.counters;
        match result {
            Ok(()) => {
                counters.stored.fetch_add(n as u64, Relaxed);
            }
            Err(e) => {
                counters.lost.fetch_add(n as u64, Relaxed);
                tracing::error!("historian: a batch of {n} events was not stored: {e}");
            }
        }
    }

    /// Adds what the stream dropped for this consumer to the lost count, and logs losses
    /// (at most every [`LOSS_LOG_INTERVAL`]).
    fn count_losses(&mut self, events: Option<&EventReceiver>) {
        let counters = &self.historian.counters;
        if let Some(events) = events {
            let lost = events.lost();
            if lost < self.lost_seen {
                self.lost_seen = 0;
            }
            counters.lost.fetch_add(lost - self.lost_seen, Relaxed);
            self.lost_seen = lost;
        }
        let lost = counters.lost.load(Relaxed);
        let quiet = self.last_loss_log.is_some_and(|at| at.elapsed() < LOSS_LOG_INTERVAL);
        if lost > self.lost_logged && !quiet {
            tracing::warn!(
                "historian: {} events lost (it fell behind the broker or the store failed), {lost} since start",
                lost - self.lost_logged
            );
            self.lost_logged = lost;
            self.last_loss_log = Some(Instant::now());
        }
    }
}
