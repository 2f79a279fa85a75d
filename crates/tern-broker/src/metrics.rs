//! Broker-wide counters behind `$SYS`, `/metrics` and the logs, and the broker's event
//! stream (which rides here so that every place that counts something can also report it).
//!
//! Connection tasks count locally ([`LocalCounters`]) and add their counts here once per
//! loop turn, so the shared cache lines are touched once per batch of packets, not once
//! per message. Everything is a relaxed atomic: nothing on the publish path takes a lock
//! to count. Gauges that are cheaper to read than to keep (sessions, queue depths,
//! retained messages, subscriptions) are read from their owners when rendered.

use crate::events::{Event, EventKind, EventStream};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::OnceLock;
use std::time::Duration;
use tern_proto::{ByteStr, QoS};

/// Labels of reasons, in the order of their counters.
pub trait Reason: Copy + 'static {
    const ALL: &'static [Self];
    fn label(self) -> &'static str;
    fn index(self) -> usize;
}

macro_rules! reasons {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident => $label:literal,)* }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum $name { $($(#[$vdoc])* $variant,)* }
        impl Reason for $name {
            const ALL: &'static [Self] = &[$($name::$variant,)*];
            fn label(self) -> &'static str {
                match self { $($name::$variant => $label,)* }
            }
            fn index(self) -> usize {
                self as usize
            }
        }
    };
}

reasons! {
    /// Why a message was not delivered to a session (or not forwarded at all).
    DropReason {
        /// The session's queue was full (max_queued_messages / max_queued_bytes).
        QueueFull => "queue_full",
        /// The broker was above memory_limit: the message was dropped, its publisher disconnected.
        MemoryLimit => "memory_limit",
        /// Its Message Expiry Interval passed while it was queued.
        Expired => "expired",
        /// Larger than the receiving client's Maximum Packet Size.
        TooLargeForClient => "too_large_for_client",
        /// The payload was above message_size_limit.
        MessageSizeLimit => "message_size_limit",
        /// The topic was beyond max_topic_levels or max_topic_length.
        TopicLimits => "topic_limits",
        /// The publisher may not publish to the topic (ACL, or `$SYS`).
        NotAuthorized => "not_authorized",
        /// A QoS 1/2 publish refused while the store could not write.
        StoreUnwritable => "store_unwritable",
        /// Over the publisher's message rate (a listener policy's quota).
        RateLimited => "rate_limited",
    }
}

reasons! {
    /// Why a connection was refused before it became a connected client.
    RefusalReason {
        /// The listener's max_connections.
        ListenerLimit => "listener_limit",
        /// max_connection_rate from the source address.
        RateLimit => "rate_limit",
        /// The TLS session could not be started, or its handshake failed.
        Tls => "tls",
        /// No CONNECT within connect_timeout, or closed before CONNECT.
        ConnectTimeout => "connect_timeout",
        /// A malformed or oversized CONNECT, a first packet that is not CONNECT, or a
        /// refused WebSocket upgrade or bad frame before CONNECT.
        BadConnect => "bad_connect",
        /// A protocol version the broker does not speak.
        UnsupportedProtocol => "unsupported_protocol",
        /// Credentials refused (see `tern_auth_failures_total`), or a client id or user
        /// name the configuration does not allow.
        NotAuthorized => "not_authorized",
        /// The client identifier (or keepalive, under 3.x) is not acceptable.
        ClientIdentifier => "client_identifier",
        /// The broker was above memory_limit.
        ServerBusy => "server_busy",
        /// A will the listener cannot take (retain_available, max_qos).
        WillNotSupported => "will_not_supported",
        /// Sent to another server (server_reference).
        Redirected => "redirected",
        /// The live session could not be taken over in time.
        TakeoverFailed => "takeover_failed",
        /// Any other reason code.
        Other => "other",
    }
}

reasons! {
    /// Why authentication failed.
    AuthFailure {
        /// Wrong user name or password (or a user name without a password).
        BadCredentials => "bad_credentials",
        /// No credentials on a listener that refuses anonymous clients.
        Anonymous => "anonymous",
        /// The listener takes the user from a client certificate and there was none.
        NoCertificate => "no_certificate",
        /// Enhanced authentication (5.0 AUTH, e.g. SCRAM) failed.
        EnhancedAuth => "enhanced_auth",
    }
}

/// Counters indexed by a [`Reason`].
#[derive(Debug)]
pub struct ReasonCounters<R: Reason> {
    counts: Box<[AtomicU64]>,
    _reason: std::marker::PhantomData<R>,
}

impl<R: Reason> Default for ReasonCounters<R> {
    fn default() -> Self {
        ReasonCounters {
            counts: R::ALL.iter().map(|_| AtomicU64::new(0)).collect(),
            _reason: std::marker::PhantomData,
        }
    }
}

impl<R: Reason> ReasonCounters<R> {
    /// Adds one for `reason`; returns the count before.
    pub fn add(&self, reason: R) -> u64 {
        self.counts.get(reason.index()).map_or(0, |c| c.fetch_add(1, Relaxed))
    }

    pub fn get(&self, reason: R) -> u64 {
        self.counts.get(reason.index()).map_or(0, |c| c.load(Relaxed))
    }

    pub fn total(&self) -> u64 {
        self.counts.iter().map(|c| c.load(Relaxed)).sum()
    }

    /// Every reason with its count, in declaration order.
    pub fn each(&self) -> impl Iterator<Item = (R, u64)> + '_ {
        R::ALL.iter().map(|r| (*r, self.get(*r)))
    }
}

/// A histogram with fixed upper bounds, updated with relaxed atomics.
#[derive(Debug)]
pub struct Histogram {
    bounds: &'static [f64],
    /// Observations per bucket (not cumulative), the last one above every bound.
    buckets: Box<[AtomicU64]>,
    /// Sum of observations in millionths of the unit.
    sum_micros: AtomicU64,
}

impl Histogram {
    pub fn new(bounds: &'static [f64]) -> Histogram {
        Histogram {
            bounds,
            buckets: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum_micros: AtomicU64::new(0),
        }
    }

    pub fn observe(&self, value: f64) {
        let index = self
            .bounds
            .iter()
            .position(|b| value <= *b)
            .unwrap_or(self.bounds.len());
        if let Some(bucket) = self.buckets.get(index) {
            bucket.fetch_add(1, Relaxed);
        }
        self.sum_micros.fetch_add((value.max(0.0) * 1e6) as u64, Relaxed);
    }

    pub fn observe_duration(&self, elapsed: Duration) {
        self.observe(elapsed.as_secs_f64());
    }

    /// The upper bounds, the cumulative count at each bound and the overall count
    /// (`+Inf`), and the sum.
    pub fn snapshot(&self) -> HistogramSnapshot {
        let mut cumulative = Vec::with_capacity(self.bounds.len());
        let mut running = 0;
        for (i, bucket) in self.buckets.iter().enumerate() {
            running += bucket.load(Relaxed);
            if i < self.bounds.len() {
                cumulative.push(running);
            }
        }
        HistogramSnapshot {
            bounds: self.bounds.to_vec(),
            cumulative,
            count: running,
            sum: self.sum_micros.load(Relaxed) as f64 / 1e6,
        }
    }
}

/// A histogram's values at one moment, ready to render.
#[derive(Debug, Clone, PartialEq)]
pub struct HistogramSnapshot {
    pub bounds: Vec<f64>,
    /// Observations at or below each bound.
    pub cumulative: Vec<u64>,
    pub count: u64,
    pub sum: f64,
}

impl HistogramSnapshot {
    /// A histogram of `values` (sampled when rendering) over `bounds`.
    pub fn of(bounds: &[f64], values: impl IntoIterator<Item = f64>) -> HistogramSnapshot {
        let mut per_bucket = vec![0u64; bounds.len()];
        let (mut count, mut sum) = (0u64, 0.0);
        for value in values {
            count += 1;
            sum += value;
            if let Some(i) = bounds.iter().position(|b| value <= *b) {
                per_bucket[i] += 1;
            }
        }
        let cumulative = per_bucket
            .iter()
            .scan(0u64, |running, n| {
                *running += n;
                Some(*running)
            })
            .collect();
        HistogramSnapshot {
            bounds: bounds.to_vec(),
            cumulative,
            count,
            sum,
        }
    }
}

/// The counters of one listener.
#[derive(Debug)]
pub struct ListenerMetrics {
    /// How the listener is named in labels: its bound address, or its socket's path.
    pub label: String,
    /// Sockets accepted.
    pub accepted: AtomicU64,
    /// Clients connected now (past CONNACK).
    pub connected: AtomicU64,
}

/// Monotonic counters and gauges, all relaxed atomics.
#[derive(Debug, Default)]
pub struct Metrics {
    /// PUBLISH packets received, all QoS (the sum of `received_by_qos`), for `$SYS`.
    pub messages_received: AtomicU64,
    /// PUBLISH packets sent, all QoS.
    pub messages_sent: AtomicU64,
    /// Bytes read from and written to clients' sockets, every packet.
    pub bytes_received: AtomicU64,
    pub bytes_sent: AtomicU64,
    /// PUBLISH packets and their bytes, by QoS (index 0, 1, 2).
    pub received_by_qos: [AtomicU64; 3],
    pub received_bytes_by_qos: [AtomicU64; 3],
    pub sent_by_qos: [AtomicU64; 3],
    pub sent_bytes_by_qos: [AtomicU64; 3],
    /// Messages not delivered, by reason.
    pub dropped: ReasonCounters<DropReason>,
    /// QoS 1/2 publishes refused because the store could not write (sync mode).
    pub publishes_refused: AtomicU64,
    pub clients_connected: AtomicU64,
    pub clients_maximum: AtomicU64,
    /// Sockets accepted since start.
    pub connections_total: AtomicU64,
    /// Connections refused before becoming clients, by reason.
    pub refused: ReasonCounters<RefusalReason>,
    pub auth_failures: ReasonCounters<AuthFailure>,
    /// Per listener, in configuration order; set once the listeners are bound.
    listeners: OnceLock<Box<[ListenerMetrics]>>,
    /// The broker's event stream.
    pub events: EventStream,
    /// Metrics an embedder adds to `/metrics` (the IoT platform's rule counters).
    pub extra: crate::prometheus::ExtraMetrics,
}

/// Counts of one connection not yet added to [`Metrics`].
#[derive(Debug, Default)]
pub struct LocalCounters {
    pub bytes_received: u64,
    pub bytes_sent: u64,
    /// PUBLISH packets and bytes by QoS.
    pub received: [u64; 3],
    pub received_bytes: [u64; 3],
    pub sent: [u64; 3],
    pub sent_bytes: [u64; 3],
}

impl LocalCounters {
    /// One PUBLISH packet of `bytes` received.
    pub fn publish_received(&mut self, qos: QoS, bytes: usize) {
        let i = qos as usize % 3;
        self.received[i] += 1;
        self.received_bytes[i] += bytes as u64;
    }

    /// One PUBLISH packet of `bytes` sent.
    pub fn publish_sent(&mut self, qos: QoS, bytes: usize) {
        let i = qos as usize % 3;
        self.sent[i] += 1;
        self.sent_bytes[i] += bytes as u64;
    }
}

fn add(counter: &AtomicU64, value: u64) {
    if value != 0 {
        counter.fetch_add(value, Relaxed);
    }
}

impl Metrics {
    /// Adds and resets `local`.
    pub fn flush(&self, local: &mut LocalCounters) {
        let l = std::mem::take(local);
        add(&self.bytes_received, l.bytes_received);
        add(&self.bytes_sent, l.bytes_sent);
        add(&self.messages_received, l.received.iter().sum());
        add(&self.messages_sent, l.sent.iter().sum());
        for i in 0..3 {
            add(&self.received_by_qos[i], l.received[i]);
            add(&self.received_bytes_by_qos[i], l.received_bytes[i]);
            add(&self.sent_by_qos[i], l.sent[i]);
            add(&self.sent_bytes_by_qos[i], l.sent_bytes[i]);
        }
    }

    /// Names the listeners (once, when they are bound).
    pub fn set_listeners(&self, labels: Vec<String>) {
        let listeners = labels
            .into_iter()
            .map(|label| ListenerMetrics {
                label,
                accepted: AtomicU64::new(0),
                connected: AtomicU64::new(0),
            })
            .collect();
        let _ = self.listeners.set(listeners);
    }

    /// Every listener's counters (empty until the listeners are bound).
    pub fn listeners(&self) -> &[ListenerMetrics] {
        self.listeners.get().map_or(&[], |l| l)
    }

    fn listener(&self, index: usize) -> Option<&ListenerMetrics> {
        self.listeners().get(index)
    }

    /// A socket accepted by listener `index`.
    pub fn accepted(&self, index: usize) {
        self.connections_total.fetch_add(1, Relaxed);
        if let Some(l) = self.listener(index) {
            l.accepted.fetch_add(1, Relaxed);
        }
    }

    /// A client of listener `index` past CONNACK.
    pub fn client_connected(&self, index: usize) {
        let now = self.clients_connected.fetch_add(1, Relaxed) + 1;
        self.clients_maximum.fetch_max(now, Relaxed);
        if let Some(l) = self.listener(index) {
            l.connected.fetch_add(1, Relaxed);
        }
    }

    pub fn client_disconnected(&self, index: usize) {
        self.clients_connected.fetch_sub(1, Relaxed);
        if let Some(l) = self.listener(index) {
            l.connected.fetch_sub(1, Relaxed);
        }
    }

    /// A message dropped for `reason`; returns how many were dropped for it before.
    pub fn dropped(&self, reason: DropReason) -> u64 {
        self.dropped.add(reason)
    }

    /// A message for `client_id` dropped for `reason`, also reported on the event stream;
    /// returns how many were dropped for that reason before.
    pub fn dropped_for(&self, reason: DropReason, client_id: &ByteStr) -> u64 {
        self.events.emit(EventKind::Dropped, || Event::Dropped {
            client_id: client_id.clone(),
            reason,
        });
        self.dropped(reason)
    }

    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flushing_adds_local_counts_by_qos_and_resets_them() {
        let metrics = Metrics::default();
        let mut local = LocalCounters::default();
        local.publish_received(QoS::AtLeastOnce, 10);
        local.publish_received(QoS::AtLeastOnce, 5);
        local.publish_sent(QoS::ExactlyOnce, 7);
        metrics.flush(&mut local);
        metrics.flush(&mut local);
        assert_eq!(Metrics::get(&metrics.messages_received), 2);
        assert_eq!(Metrics::get(&metrics.received_by_qos[1]), 2);
        assert_eq!(Metrics::get(&metrics.received_bytes_by_qos[1]), 15);
        assert_eq!(Metrics::get(&metrics.sent_by_qos[2]), 1);
        assert_eq!(Metrics::get(&metrics.messages_sent), 1);
    }

    #[test]
    fn a_histogram_counts_cumulatively_with_everything_in_the_overall_count() {
        let h = Histogram::new(&[0.1, 1.0]);
        for v in [0.05, 0.1, 0.5, 3.0] {
            h.observe(v);
        }
        let s = h.snapshot();
        assert_eq!(s.cumulative, vec![2, 3]);
        assert_eq!(s.count, 4);
        assert!((s.sum - 3.65).abs() < 1e-6);
        let sampled = HistogramSnapshot::of(&[0.0, 10.0], [0.0, 0.0, 4.0, 11.0]);
        assert_eq!((sampled.cumulative, sampled.count), (vec![2, 3], 4));
    }

    #[test]
    fn a_drop_for_a_client_is_counted_and_reported_on_the_event_stream() {
        let metrics = Metrics::default();
        metrics.dropped_for(DropReason::Expired, &ByteStr::from("nobody listens"));
        let mut events = metrics.events.subscribe(&[EventKind::Dropped]);
        metrics.dropped_for(DropReason::QueueFull, &ByteStr::from("c"));
        assert_eq!(metrics.dropped.get(DropReason::QueueFull), 1);
        assert_eq!(metrics.dropped.total(), 2);
        let event = events.try_recv();
        assert!(
            matches!(event, Some(Event::Dropped { reason: DropReason::QueueFull, ref client_id }) if &**client_id == "c")
        );
        assert!(events.try_recv().is_none());
    }

    #[test]
    fn listener_counters_follow_their_index_and_ignore_unknown_ones() {
        let metrics = Metrics::default();
        metrics.set_listeners(vec!["127.0.0.1:1883".into()]);
        metrics.accepted(0);
        metrics.accepted(7);
        metrics.client_connected(0);
        assert_eq!(Metrics::get(&metrics.connections_total), 2);
        assert_eq!(Metrics::get(&metrics.listeners()[0].accepted), 1);
        assert_eq!(Metrics::get(&metrics.listeners()[0].connected), 1);
        metrics.client_disconnected(0);
        assert_eq!(Metrics::get(&metrics.clients_connected), 0);
        assert_eq!(metrics.dropped(DropReason::Expired), 0);
        assert_eq!(metrics.dropped.total(), 1);
    }
}
