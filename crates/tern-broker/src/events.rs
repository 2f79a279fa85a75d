//! The broker's event stream: what happens to clients and messages (connected,
//! disconnected with its reason, published with its origin, subscribed, unsubscribed,
//! dropped), for consumers that live beside the broker: presence (`presence.rs`), and
//! later status topics, a last event cache, a historian, rules, the cluster.
//!
//! Consumers never slow the broker down. Events go through a bounded
//! `tokio::sync::broadcast` ring: emitting never waits, and a consumer that falls more
//! than the ring's length behind loses the oldest events (it is told how many, and
//! `tern_events_lost_total` counts them). Each consumer says which kinds it wants; the
//! stream keeps a count of interested consumers per kind, so emitting a kind nobody wants
//! costs one relaxed atomic load and builds nothing. Events of one connection are emitted
//! by its task in order, and the ring keeps the order in which they were emitted.
//!
//! Published messages, by far the most frequent events, have a ring of their own for
//! the consumers that want only them (historian, last event cache, rules): a consumer of
//! connections waiting on the main ring is then not woken for every message once one of
//! those listens (on two cores those wake-ups cost more than the consumer's work). A
//! consumer of published messages and other kinds reads the main ring, in order.

use bytes::Bytes;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::SystemTime;
use tern_proto::{ByteStr, ProtocolVersion, Publish, QoS};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::metrics::DropReason;

/// Events held for the slowest consumer before it starts losing them.
pub const CAPACITY: usize = 4096;
/// The ring of published messages holds this many times [`CAPACITY`]: messages come far
/// more often, and a consumer that reads them in bulk (the historian, every 10 ms) must
/// not lose any when a busy machine leaves its thread unscheduled for a while (32,768
/// events: 1.6 s of 20,000 messages a second).
pub const PUBLISHED_CAPACITY_FACTOR: usize = 8;

/// The kinds of event, each of which a consumer asks for separately.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    Connected,
    Disconnected,
    Published,
    Subscribed,
    Unsubscribed,
    Dropped,
    Refused,
}

const KINDS: usize = 7;

/// Who a connected client is, shared by its connected and disconnected events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientInfo {
    pub client_id: ByteStr,
    /// The user it authenticated as, if any.
    pub user: Option<Box<str>>,
    pub address: SocketAddr,
    pub protocol: ProtocolVersion,
    /// The index of the listener that accepted it.
    pub listener: usize,
    pub clean_start: bool,
    pub keep_alive: u16,
    /// When its CONNACK was sent (wall clock).
    pub connected_at: SystemTime,
}

/// Why a client's connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DisconnectReason {
    /// DISCONNECT from the client.
    Normal,
    /// DISCONNECT with reason 0x04 (publish my will).
    NormalWithWill,
    /// The socket closed or failed without DISCONNECT.
    ConnectionLost,
    /// A malformed packet or protocol violation.
    ProtocolError,
    KeepAliveTimeout,
    /// Another connection with the same client id took the session over.
    TakenOver,
    ServerShutdown,
    /// Closed by an operator (the admin API).
    Kicked,
}

impl DisconnectReason {
    /// The name used in presence events and logs.
    pub fn label(self) -> &'static str {
        match self {
            DisconnectReason::Normal => "normal",
            DisconnectReason::NormalWithWill => "normal with will",
            DisconnectReason::ConnectionLost => "connection lost",
            DisconnectReason::ProtocolError => "protocol error",
            DisconnectReason::KeepAliveTimeout => "keepalive timeout",
            DisconnectReason::TakenOver => "taken over",
            DisconnectReason::ServerShutdown => "server shutdown",
            DisconnectReason::Kicked => "kicked",
        }
    }
}

/// Where a published message came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// A PUBLISH from the client with this id.
    Client(ByteStr),
    /// The will of the client with this id.
    Will(ByteStr),
    /// The admin API.
    Api,
    /// Another node of a cluster.
    Node(Arc<str>),
}

/// Something that happened in the broker.
#[derive(Debug, Clone)]
pub enum Event {
    Connected(Arc<ClientInfo>),
    Disconnected {
        client: Arc<ClientInfo>,
        reason: DisconnectReason,
        /// What the log says about it (e.g. the protocol rule broken).
        detail: Arc<str>,
        at: SystemTime,
        /// What the connection read and wrote.
        traffic: crate::admin::Traffic,
    },
    /// A CONNECT answered with a refusing CONNACK (bad id, credentials, not authorized,
    /// ...), after the client sent it whole.
    Refused {
        client_id: ByteStr,
        /// The user name it sent.
        user: Option<Box<str>>,
        address: SocketAddr,
        listener: usize,
        protocol: ProtocolVersion,
        reason: tern_proto::ReasonCode,
        why: Arc<str>,
        at: SystemTime,
    },
    /// A message accepted for routing. Topic and payload share the publisher's buffer.
    Published {
        topic: ByteStr,
        payload: Bytes,
        qos: QoS,
        retain: bool,
        origin: Origin,
    },
    Subscribed {
        client_id: ByteStr,
        filter: ByteStr,
        qos: QoS,
    },
    Unsubscribed {
        client_id: ByteStr,
        filter: ByteStr,
    },
    /// A message not delivered to `client_id` (or, when empty, not forwarded at all).
    Dropped {
        client_id: ByteStr,
        reason: DropReason,
    },
}

/// The event of a message accepted for routing from `origin`.
pub fn published(publish: &Publish, origin: Origin) -> Event {
    Event::Published {
        topic: publish.topic.clone(),
        payload: publish.payload.clone(),
        qos: publish.qos,
        retain: publish.retain,
        origin,
    }
}

impl Event {
    pub fn kind(&self) -> EventKind {
        match self {
            Event::Connected(_) => EventKind::Connected,
            Event::Disconnected { .. } => EventKind::Disconnected,
            Event::Published { .. } => EventKind::Published,
            Event::Subscribed { .. } => EventKind::Subscribed,
            Event::Unsubscribed { .. } => EventKind::Unsubscribed,
            Event::Dropped { .. } => EventKind::Dropped,
            Event::Refused { .. } => EventKind::Refused,
        }
    }
}

/// What the stream and its receivers share.
#[derive(Debug, Default)]
struct Shared {
    /// Receivers interested in each kind.
    interest: [AtomicUsize; KINDS],
    /// Events lost by consumers that fell behind, summed over consumers.
    lost: AtomicU64,
    /// Cancelled once no event can come any more (the broker's connections have all
    /// closed at shutdown): receivers then get what is queued, then `None`.
    finished: CancellationToken,
    /// Consumers that must see the last events before the broker's store closes.
    consumers: TaskTracker,
    /// Receivers of published messages only (on the `published` ring); the others with
    /// `Published` in their kinds read the main ring.
    published_only: AtomicUsize,
}

/// The sending side, owned by the broker.
#[derive(Debug)]
pub struct EventStream {
    tx: broadcast::Sender<Event>,
    /// Published messages for the receivers that want only them.
    published: broadcast::Sender<Event>,
    shared: Arc<Shared>,
}

impl Default for EventStream {
    fn default() -> Self {
        EventStream::with_capacity(CAPACITY)
    }
}

impl EventStream {
    pub fn with_capacity(capacity: usize) -> EventStream {
        let (tx, _) = broadcast::channel(capacity.max(1));
        let (published, _) = broadcast::channel(capacity.max(1) * PUBLISHED_CAPACITY_FACTOR);
        EventStream {
            tx,
            published,
            shared: Arc::default(),
        }
    }

    /// Whether some consumer wants events of `kind`: check before building one.
    #[inline]
    pub fn wants(&self, kind: EventKind) -> bool {
        self.shared.interest[kind as usize].load(Relaxed) > 0
    }

    /// Emits the event `make` builds, if some consumer wants `kind`. Never waits.
    #[inline]
    pub fn emit(&self, kind: EventKind, make: impl FnOnce() -> Event) {
        if !self.wants(kind) {
            return;
        }
        if kind != EventKind::Published {
            let _ = self.tx.send(make());
            return;
        }
        let only = self.shared.published_only.load(Relaxed);
        let all = self.shared.interest[kind as usize].load(Relaxed);
        match (only > 0, all > only) {
            (true, true) => {
                let event = make();
                let _ = self.published.send(event.clone());
                let _ = self.tx.send(event);
            }
            (true, false) => {
                let _ = self.published.send(make());
            }
            _ => {
                let _ = self.tx.send(make());
            }
        }
    }

    /// A new consumer of the events of `kinds` emitted from now on.
    pub fn subscribe(&self, kinds: &[EventKind]) -> EventReceiver {
        let mut mask = 0u8;
        for kind in kinds {
            if mask & (1 << *kind as u8) == 0 {
                mask |= 1 << *kind as u8;
                self.shared.interest[*kind as usize].fetch_add(1, Relaxed);
            }
        }
        let published_only = mask == 1 << EventKind::Published as u8;
        let rx = if published_only {
            self.shared.published_only.fetch_add(1, Relaxed);
            self.published.subscribe()
        } else {
            self.tx.subscribe()
        };
        EventReceiver {
            rx,
            mask,
            shared: self.shared.clone(),
            lost: 0,
        }
    }

    /// Events lost by consumers that fell behind, since start.
    pub fn lost(&self) -> u64 {
        self.shared.lost.load(Relaxed)
    }

    /// Runs `consumer` (a loop over an [`EventReceiver`] until `None`) as a consumer the
    /// broker waits for at shutdown: after its connections have closed and before its
    /// store closes, so what the consumer does with the last disconnects (publish a
    /// retained status message, say) is kept.
    pub fn spawn_consumer<F>(&self, consumer: F) -> tokio::task::JoinHandle<()>
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        self.shared.consumers.spawn(consumer)
    }

    /// Says no event will come any more, and waits up to `patience` for the consumers of
    /// [`EventStream::spawn_consumer`] to handle what is queued and end.
    pub async fn finish(&self, patience: std::time::Duration) {
        self.shared.finished.cancel();
        self.shared.consumers.close();
        if tokio::time::timeout(patience, self.shared.consumers.wait())
            .await
            .is_err()
        {
            tracing::warn!("event consumers did not finish within {patience:?}");
        }
    }
}

/// One consumer's end of the stream.
#[derive(Debug)]
pub struct EventReceiver {
    rx: broadcast::Receiver<Event>,
    /// The kinds asked for, one bit each.
    mask: u8,
    shared: Arc<Shared>,
    lost: u64,
}

impl EventReceiver {
    /// The next event of the kinds asked for; `None` once the broker is gone. Events lost
    /// by falling behind are counted (see [`EventReceiver::lost`]) and skipped.
    pub async fn recv(&mut self) -> Option<Event> {
        loop {
            let next = if self.shared.finished.is_cancelled() {
                // Nothing more will be sent: what is queued, then the end.
                match self.rx.try_recv() {
                    Ok(event) => Ok(event),
                    Err(broadcast::error::TryRecvError::Lagged(n)) => Err(broadcast::error::RecvError::Lagged(n)),
                    Err(_) => return None,
                }
            } else {
                tokio::select! {
                    biased;
                    next = self.rx.recv() => next,
                    () = self.shared.finished.cancelled() => continue,
                }
            };
            match next {
                Ok(event) if self.mask & (1 << event.kind() as u8) != 0 => return Some(event),
                Ok(_) => {}
                Err(broadcast::error::RecvError::Lagged(n)) => self.fell_behind(n),
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }

    /// The next event if one is waiting, without waiting.
    pub fn try_recv(&mut self) -> Option<Event> {
        loop {
            match self.rx.try_recv() {
                Ok(event) if self.mask & (1 << event.kind() as u8) != 0 => return Some(event),
                Ok(_) => {}
                Err(broadcast::error::TryRecvError::Lagged(n)) => self.fell_behind(n),
                Err(_) => return None,
            }
        }
    }

    fn fell_behind(&mut self, n: u64) {
        self.lost += n;
        self.shared.lost.fetch_add(n, Relaxed);
        tracing::warn!(
            "an event consumer fell behind: {n} events lost ({} in total)",
            self.lost
        );
    }

    /// Events this consumer lost by falling behind.
    pub fn lost(&self) -> u64 {
        self.lost
    }
}

impl Drop for EventReceiver {
    fn drop(&mut self) {
        if self.mask == 1 << EventKind::Published as u8 {
            self.shared.published_only.fetch_sub(1, Relaxed);
        }
        for (kind, interest) in self.shared.interest.iter().enumerate() {
            if self.mask & (1 << kind) != 0 {
                interest.fetch_sub(1, Relaxed);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subscribed(filter: &str) -> Event {
        Event::Subscribed {
            client_id: ByteStr::from("c"),
            filter: ByteStr::from(filter),
            qos: QoS::AtMostOnce,
        }
    }

    #[test]
    fn nothing_is_built_while_no_one_wants_the_kind() {
        let stream = EventStream::default();
        stream.emit(EventKind::Subscribed, || unreachable!("built without a consumer"));
        let receiver = stream.subscribe(&[EventKind::Connected]);
        stream.emit(EventKind::Subscribed, || {
            unreachable!("built for a consumer of another kind")
        });
        assert!(stream.wants(EventKind::Connected));
        drop(receiver);
        assert!(!stream.wants(EventKind::Connected));
    }

    #[test]
    fn a_consumer_gets_only_its_kinds_in_emission_order() {
        let stream = EventStream::default();
        let mut receiver = stream.subscribe(&[EventKind::Subscribed]);
        let _other = stream.subscribe(&[EventKind::Unsubscribed]);
        stream.emit(EventKind::Subscribed, || subscribed("a"));
        stream.emit(EventKind::Unsubscribed, || Event::Unsubscribed {
            client_id: ByteStr::from("c"),
            filter: ByteStr::from("x"),
        });
        stream.emit(EventKind::Subscribed, || subscribed("b"));
        let filters: Vec<String> = std::iter::from_fn(|| receiver.try_recv())
            .map(|e| match e {
                Event::Subscribed { filter, .. } => filter.to_string(),
                other => panic!("unexpected {other:?}"),
            })
            .collect();
        assert_eq!(filters, ["a", "b"]);
    }

    #[test]
    fn a_consumer_that_falls_behind_loses_the_oldest_events_and_the_emitter_never_waits() {
        let stream = EventStream::with_capacity(4);
        let mut receiver = stream.subscribe(&[EventKind::Subscribed]);
        for i in 0..10 {
            stream.emit(EventKind::Subscribed, || subscribed(&i.to_string()));
        }
        let first = receiver.try_recv();
        assert!(matches!(first, Some(Event::Subscribed { filter, .. }) if &*filter == "6"));
        assert_eq!(receiver.lost(), 6);
        assert_eq!(stream.lost(), 6);
    }

    #[test]
    fn published_messages_reach_their_consumers_and_do_not_wake_the_others() {
        let stream = EventStream::default();
        let publish = || Event::Published {
            topic: ByteStr::from("t"),
            payload: Bytes::from_static(b"x"),
            qos: QoS::AtMostOnce,
            retain: false,
            origin: Origin::Api,
        };
        let mut only = stream.subscribe(&[EventKind::Published]);
        let mut others = stream.subscribe(&[EventKind::Subscribed]);
        stream.emit(EventKind::Published, publish);
        stream.emit(EventKind::Subscribed, || subscribed("a"));
        assert!(matches!(only.try_recv(), Some(Event::Published { .. })));
        assert!(only.try_recv().is_none());
        // The main ring held no message at all: its consumers were not woken for it.
        assert_eq!(others.rx.len(), 1);
        assert!(matches!(others.try_recv(), Some(Event::Subscribed { .. })));
        let mut mixed = stream.subscribe(&[EventKind::Published, EventKind::Subscribed]);
        stream.emit(EventKind::Published, publish);
        assert!(matches!(only.try_recv(), Some(Event::Published { .. })));
        assert!(matches!(mixed.try_recv(), Some(Event::Published { .. })));
        drop((only, mixed));
        assert!(!stream.wants(EventKind::Published));
        assert_eq!(stream.shared.published_only.load(Relaxed), 0);
    }

    /// Encodes `packets` for a 5.0 connection, one after the other.
    fn encoded(packets: &[tern_proto::Packet]) -> Vec<u8> {
        let mut out = bytes::BytesMut::new();
        for packet in packets {
            tern_proto::encode(packet, ProtocolVersion::V5, &mut out).unwrap();
        }
        out.to_vec()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_clients_session_reaches_a_consumer_in_order_with_the_publish_origin() {
        use crate::config::{Config, ListenerConfig};
        use tern_proto::*;
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = ListenerConfig {
            port: 0,
            bind_address: Some("127.0.0.1".into()),
            allow_anonymous: Some(true),
            ..Default::default()
        };
        let config = Config {
            listeners: vec![listener],
            persistence: false,
            ..Config::default()
        };
        let broker = crate::Broker::bind(config).await.unwrap();
        let handle = broker.handle();
        let all = [
            EventKind::Connected,
            EventKind::Disconnected,
            EventKind::Published,
            EventKind::Subscribed,
            EventKind::Unsubscribed,
        ];
        let mut events = handle.state().events().subscribe(&all);
        let (mut client, server) = tokio::net::UnixStream::pair().unwrap();
        let served = handle.serve_unix(server);
        let subscription = Subscription {
            filter: ByteStr::from("t/#"),
            options: SubscriptionOptions::default(),
        };
        let publish = Publish {
            dup: false,
            qos: QoS::AtMostOnce,
            retain: false,
            topic: ByteStr::from("t/1"),
            packet_id: 0,
            properties: Properties::default(),
            payload: Bytes::from_static(b"hi"),
        };
        let session = encoded(&[
            Packet::Connect(Box::new(Connect::new(
                ProtocolVersion::V5,
                ByteStr::from("c1"),
                true,
                60,
            ))),
            Packet::Subscribe(Subscribe {
                packet_id: 1,
                subscriptions: vec![subscription],
                properties: Properties::default(),
            }),
            Packet::Publish(publish),
            Packet::Unsubscribe(Unsubscribe {
                packet_id: 2,
                filters: vec![ByteStr::from("t/#")],
                properties: Properties::default(),
            }),
            Packet::Disconnect(Disconnect::default()),
        ]);
        client.write_all(&session).await.unwrap();
        let mut seen = Vec::new();
        while seen.len() < 5 {
            let next = tokio::time::timeout(std::time::Duration::from_secs(20), events.recv());
            seen.push(next.await.unwrap().unwrap());
        }
        let mut rest = Vec::new();
        let _ = client.read_to_end(&mut rest).await;
        served.await.unwrap();
        assert!(matches!(&seen[0], Event::Connected(c) if &*c.client_id == "c1" && c.protocol == ProtocolVersion::V5));
        assert!(matches!(&seen[1], Event::Subscribed { filter, .. } if &**filter == "t/#"));
        match &seen[2] {
            Event::Published {
                topic, payload, origin, ..
            } => {
                assert_eq!((&**topic, &payload[..]), ("t/1", &b"hi"[..]));
                assert_eq!(origin, &Origin::Client(ByteStr::from("c1")));
            }
            other => panic!("expected the publish, got {other:?}"),
        }
        assert!(matches!(&seen[3], Event::Unsubscribed { filter, .. } if &**filter == "t/#"));
        assert!(matches!(
            &seen[4],
            Event::Disconnected {
                reason: DisconnectReason::Normal,
                ..
            }
        ));
    }
}
