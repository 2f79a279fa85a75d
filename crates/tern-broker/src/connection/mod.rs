//! A connection task: the only code that reads or writes a client's socket.
//!
//! It reads CONNECT (within the connect timeout), performs the handshake, then loops over
//! four events: bytes from the client, deliveries queued in its session's outbox, room in
//! the socket for buffered output, and timers/control (keepalive, takeover, shutdown).
//! Everything decoded in one read is handled before anything is written, and everything
//! pending is written with one `write` call: batching in both directions.

mod aliases;
mod attach;
mod close;
mod connect_read;
mod enhanced_auth;
mod handshake;
mod inbound;
mod packet_log;
mod resume;
pub(crate) mod transport;
mod waits;
mod websocket;

pub(crate) use aliases::OutgoingAliases;
use close::event_reason;
pub(crate) use close::Close;
use transport::Socket;
use waits::{held_until, Waits, Wakeup};

use crate::admission::Slot;
use crate::broker::BrokerState;
use crate::events::{ClientInfo, Event, EventKind};
use crate::metrics::{DropReason, LocalCounters};
use crate::router::Feed;
use crate::session::{Expiry, PendingWill, Session};
use crate::store::records::StoredStage;
use crate::store::Store;
use crate::topic_map::TopicMap;
use bytes::{Buf, BytesMut};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use tern_core::Stage;
use tern_proto::{
    encode, ByteStr, Disconnect, Packet, Properties, Property, ProtocolVersion, Publish, PublishFrame, PublishResponse,
    QoS, ReasonCode, Will,
};
use tokio::sync::oneshot;

/// Output buffered beyond this stops reading from the client and refilling from the
/// outbox until the socket drains: a client that does not read cannot grow our memory.
const OUTPUT_HIGH_WATER: usize = 64 * 1024;
/// Payload bytes of held messages ([`Connection::cluster_held_routes`]) past which the
/// client's input waits until the cluster has stored its QoS 2 message.
const HELD_ROUTES_HIGH_WATER: usize = 1024 * 1024;
/// Read buffer growth step.
const READ_CHUNK: usize = 4096;
/// Topic aliases a 5.0 client may use towards the broker: mosquitto's default
/// (max_topic_alias 10), so that CONNACK carries the same Topic Alias Maximum.
pub(crate) const TOPIC_ALIAS_MAXIMUM: u16 = 10;
/// After the broker closes a connection, how long and how much it goes on reading (and
/// discarding) what the client still sends, so that the client reads the DISCONNECT (or
/// refusing CONNACK) instead of a reset. Generous in bytes: a client that sends without
/// reading fills this quickly, and what the broker wrote last must reach it meanwhile. The
/// bytes pass through one small buffer; only the time is spent.
const DRAIN_TIME: Duration = Duration::from_secs(1);
const DRAIN_BYTES: usize = 16 << 20;

/// The state of one connected client.
pub(crate) struct Connection {
    broker: Arc<BrokerState>,
    peer: SocketAddr,
    version: ProtocolVersion,
    session: Arc<Session>,
    /// This connection's number in its session, to detach only itself.
    generation: u64,
    /// 1.5 x the negotiated keepalive; `None` when keepalive is off.
    keep_alive_limit: Option<Duration>,
    /// Boxed: most clients have none, and it is read once, at the end.
    will: Option<Box<Will>>,
    /// Encoded packets not yet written.
    out: BytesMut,
    /// Topic aliases the client set (5.0).
    /// Boxed (a 5.0 feature few clients use) to keep idle connections small.
    #[allow(clippy::box_collection)]
    topic_aliases: Option<Box<HashMap<u16, ByteStr>>>,
    /// Topic aliases the broker assigns towards a 5.0 client that allows them.
    outgoing_aliases: Option<Box<OutgoingAliases>>,
    /// The listener's topic mapping (mount_point); `None` for most listeners, whose
    /// deliveries are written as encoded.
    topic_map: Option<TopicMap>,
    /// On a listener in platform mode, the listener policy's client: it maps and
    /// authorizes what the client publishes and subscribes to (`policy.rs`).
    policy: Option<Arc<dyn crate::policy::ClientPolicy>>,
    /// Smaller of the broker's in-flight limit and the client's Receive Maximum.
    inflight_window: usize,
    /// Largest packet the client accepts (5.0 Maximum Packet Size).
    client_max_packet_size: usize,
    /// The Receive Maximum advertised to a 5.0 client; 0 when none is enforced.
    receive_maximum: u16,
    /// message_size_limit when the client connected (a reload applies to new connections).
    message_size_limit: usize,
    /// The listener's max_qos and retain_available when the client connected.
    publish_rules: (u8, bool),
    /// max_topic_levels and max_topic_length when the client connected, read per PUBLISH.
    topic_limits: (usize, usize),
    /// The 5.0 client's Request Problem Information: when false, acknowledgements carry
    /// no Reason String [MQTT-3.1.2-29].
    problem_information: bool,
    /// The user the client authenticated as (password or enhanced authentication).
    user: Option<Box<str>>,
    /// Whether the client is under an ACL (kept in its session, where a reload updates it).
    acl_enforced: bool,
    /// The last store ticket this connection's handling produced: in sync mode, output
    /// waits until it is durable.
    hold: u64,
    /// In a cluster, this connection's QoS 1/2 publishes waiting for the cluster to store
    /// them: output waits until they are settled (`crate::cluster`). `None` on a single node.
    cluster_track: Option<Arc<crate::cluster::AckTrack>>,
    /// QoS 2 packet ids routed while the cluster had not settled all of this connection's
    /// publishes: if it fails them, they are forgotten, so that the client's resend is
    /// routed and stored again instead of answered as a duplicate (subscribers here may
    /// get it twice; those on other nodes would otherwise never get it).
    cluster_unsettled_qos2: Vec<u16>,
    /// In a cluster, messages this client published that wait to be routed here until the
    /// cluster has stored a QoS 2 message before them ([`Self::route`]); dropped if it fails.
    cluster_held_routes: Vec<Publish>,
    /// Their payload bytes: past [`HELD_ROUTES_HIGH_WATER`] no more input is read.
    cluster_held_bytes: usize,
    /// The enhanced-authentication method of CONNECT, for re-authentication (5.0).
    auth: Option<Box<enhanced_auth::ConnectionAuth>>,
    counters: LocalCounters,
    /// The index of the listener that accepted it.
    listener: usize,
    /// Who the client is, for its disconnected event; only when some consumer of the
    /// event stream wanted connection events when it connected.
    client: Option<Arc<ClientInfo>>,
    /// What the admin facade sees of this connection (traffic, kick).
    info: Arc<crate::admin::ConnectionInfo>,
}

/// Appends a frame with its packet id, DUP flag and, when it has one, the Message Expiry
/// Interval it has left [MQTT-3.3.2-6].
fn write_frame(frame: &PublishFrame, out: &mut BytesMut, packet_id: u16, dup: bool, expiry: Expiry) {
    match expiry {
        Expiry::Remaining(seconds) if frame.has_expiry() => frame.write_expiring(out, packet_id, dup, seconds),
        _ => frame.write(out, packet_id, dup),
    }
}

/// Reads and discards what the client still sends after the broker has written its last
/// packet and shut its side down, until the client closes too, `DRAIN_BYTES` have come or
/// `DRAIN_TIME` has passed. Closing a socket with unread input resets the connection, and
/// a reset can destroy the DISCONNECT (or refusing CONNACK) before the client reads it.
pub(super) async fn drain(socket: &mut Socket) {
    let mut scratch = BytesMut::new();
    let mut drained = 0;
    let _ = tokio::time::timeout(DRAIN_TIME, async {
        while drained < DRAIN_BYTES {
            scratch.clear();
            scratch.reserve(4 * READ_CHUNK);
            match socket.read_buf(&mut scratch).await {
                Ok(0) | Err(_) => return,
                Ok(n) => drained += n,
            }
        }
    })
    .await;
}

/// Serves one accepted socket until it closes.
///
/// Setting up (CONNECT, handshake) runs in its own boxed future and hands over one value;
/// the future that stays resident for the connection's life is only the loop's.
/// `listener` is the index of the listener that accepted it; `_slot` counts it against the
/// listener's max_connections until this returns.
pub(crate) async fn serve(
    socket: Socket,
    peer: SocketAddr,
    broker: Arc<BrokerState>,
    (listener, _slot): (usize, Slot),
) {
    let Some(mut live) = Box::pin(set_up(socket, peer, broker, listener)).await else {
        return;
    };
    let close = live.run().await;
    let Live {
        connection, mut socket, ..
    } = live;
    // The closing runs once: boxed, it does not size the resident future either.
    Box::pin(connection.finish(close, &mut socket)).await;
}

/// A connection past CONNACK, with its socket halves and pending input: everything the
/// loop needs, borrowed in place by [`Live::run`].
struct Live {
    connection: Connection,
    socket: Socket,
    /// Bytes read and not yet decoded; empty (no allocation) while idle.
    input: BytesMut,
    /// Resolves when a newcomer takes the session over; `None` once the handle is gone.
    takeover: Option<oneshot::Receiver<oneshot::Sender<()>>>,
    /// The last write found the socket full: wait for it to become writable.
    write_blocked: bool,
}

/// Reads CONNECT within the connect timeout and performs the handshake.
async fn set_up(mut socket: Socket, peer: SocketAddr, broker: Arc<BrokerState>, listener: usize) -> Option<Live> {
    let mut input = BytesMut::with_capacity(512);
    let connect_timeout = broker.config().connect_timeout;
    let read = tokio::time::timeout(
        connect_timeout,
        connect_read::read_connect(&mut socket, &mut input, &broker),
    )
    .await;
    let connect = match read {
        Ok(Ok(connect)) => connect,
        Ok(Err(connect_read::Refused { reply, message })) => {
            tracing::info!(%peer, "connection refused: {message}");
            if let Some(reply) = reply {
                let _ = socket.write_all(&reply).await;
                socket.shutdown().await;
                drain(&mut socket).await;
            }
            return None;
        }
        Err(_) => {
            broker
                .metrics
                .refused
                .add(crate::metrics::RefusalReason::ConnectTimeout);
            tracing::info!(%peer, "no CONNECT within {connect_timeout:?}: closing");
            return None;
        }
    };
    // Behind a trusted proxy (WebSocket X-Forwarded-For), the client is who it names.
    let peer = socket.forwarded_for().map_or(peer, |ip| SocketAddr::new(ip, 0));
    let io = (&mut socket, &mut input);
    let (connection, takeover) = handshake::accept(connect, peer, &broker, listener, io).await?;
    if input.is_empty() {
        input = BytesMut::new();
    }
    Some(Live {
        connection,
        socket,
        input,
        takeover: Some(takeover),
        write_blocked: false,
    })
}

impl Live {
    /// The connection's loop, until it must close.
    async fn run(&mut self) -> Close {
        let Live {
            connection: c,
            socket,
            input,
            takeover,
            write_blocked,
        } = self;
        let broker = &*c.broker.clone();
        let max_packet_size = broker.config().max_packet_size();
        // In sync mode, what this connection's packets changed must be on disk before the
        // answers to them (and outgoing PUBLISH with new packet ids) leave.
        let store = broker.store.as_deref().filter(|s| s.is_sync());
        if store.is_some() {
            Store::take_thread_ticket();
        }
        if let Err(close) = c.handle_early_input(input, max_packet_size) {
            return close;
        }
        if broker.shutdown.is_cancelled() {
            // Too late for the broker's waking of every session at shutdown.
            return Close::Shutdown;
        }
        let mut last_read = Instant::now();
        let keep_alive = tokio::time::sleep(c.keep_alive_limit.unwrap_or(Duration::from_secs(86_400)));
        tokio::pin!(keep_alive);
        loop {
            let more = c.out.len() >= OUTPUT_HIGH_WATER || c.fill_from_outbox();
            if store.is_some() {
                c.hold = c.hold.max(Store::take_thread_ticket());
            }
            let store_held = store.is_some_and(|s| !s.is_durable(c.hold));
            let cluster_held = match c.cluster_track.as_deref() {
                None => false,
                Some(track) if track.failed() => {
                    // What waited for the cluster is not acknowledged: the client sends
                    // it again on its next connection.
                    c.out.clear();
                    return Close::Gone(crate::cluster::FAILED.into());
                }
                Some(track) => {
                    let pending = track.pending();
                    let waiting = !c.cluster_unsettled_qos2.is_empty() || !c.cluster_held_routes.is_empty();
                    // (A failure between the two looks settles a ticket: not a success.)
                    if waiting && !pending && !track.failed() {
                        c.cluster_unsettled_qos2.clear();
                        c.release_held_routes();
                    }
                    pending
                }
            };
            let held = store_held || cluster_held;
            if (!c.out.is_empty() || socket.has_pending_output()) && !*write_blocked && !held {
                // Write at once when the socket has room: the common case needs no wait.
                match c.write_now(socket) {
                    Ok(blocked) => *write_blocked = blocked,
                    Err(close) => return close,
                }
            }
            c.info.count(&c.counters);
            broker.metrics.flush(&mut c.counters);
            let mut held_wait = held.then(|| {
                let track = c.cluster_track.clone().filter(|_| cluster_held);
                held_until(store.filter(|_| store_held), c.hold, track)
            });
            let event = {
                let mut waits = Waits {
                    takeover: &mut *takeover,
                    socket,
                    read: c.out.len() < OUTPUT_HIGH_WATER && c.cluster_held_bytes < HELD_ROUTES_HIGH_WATER,
                    held: held_wait.as_mut().map(|wait| wait.as_mut()),
                    write: (!c.out.is_empty() || socket.has_pending_output()) && !held,
                    // More is queued than fitted and there is room again; publishers wake
                    // us only when the queue was empty, so go round again ourselves.
                    again: more && c.out.len() < OUTPUT_HIGH_WATER,
                    wake: &c.session.wake,
                    keep_alive: c.keep_alive_limit.map(|_| keep_alive.as_mut()),
                };
                std::future::poll_fn(|cx| waits.poll(cx)).await
            };
            drop(held_wait);
            match event {
                Wakeup::TakenOver(done) => return Close::TakenOver(done),
                Wakeup::Readable(Err(e)) => return Close::Gone(format!("read error: {e}")),
                Wakeup::Readable(Ok(())) => {
                    // Deliveries queued before these bytes came go out before the answers
                    // to them, as a broker that writes on publish sends them (mosquitto).
                    // Only when something was queued since the last look: the session's
                    // lock is not taken on every read of a client that only publishes.
                    if c.session.wake.is_set() && c.out.len() < OUTPUT_HIGH_WATER {
                        c.fill_from_outbox();
                    }
                    let read = c.read_and_handle(socket, input, max_packet_size);
                    if store.is_some() {
                        c.hold = c.hold.max(Store::take_thread_ticket());
                    }
                    match read {
                        Ok(0) => {}
                        Ok(n) => {
                            last_read = Instant::now();
                            if n >= READ_CHUNK / 2 {
                                // A client that always has more to send is always readable,
                                // so its wake signal is not reached: look at what it carries
                                // (a kick, shutdown) here too.
                                if let Some(close) = c.told_to_close() {
                                    return close;
                                }
                                // It would otherwise keep this worker to itself and starve
                                // the connections it feeds.
                                tokio::task::yield_now().await;
                            }
                        }
                        Err(close) => return close,
                    }
                }
                Wakeup::Settled => {}
                Wakeup::Writable(Err(e)) => return Close::Gone(format!("write error: {e}")),
                Wakeup::Writable(Ok(())) => match c.write_now(socket) {
                    Ok(blocked) => *write_blocked = blocked,
                    Err(close) => return close,
                },
                Wakeup::Woken => {
                    if let Some(close) = c.told_to_close() {
                        return close;
                    }
                    // A connection woken again and again (a steady stream of deliveries
                    // to a fast reader) still yields its worker when its budget is spent.
                    tokio::task::consume_budget().await;
                }
                Wakeup::KeepAlive => {
                    let limit = c.keep_alive_limit.unwrap_or_default();
                    if last_read.elapsed() >= limit {
                        return Close::KeepAliveTimeout;
                    }
                    keep_alive.as_mut().reset((last_read + limit).into());
                }
            }
        }
    }
}

impl Connection {
    /// Whether the broker is shutting down or the connection was kicked (by the admin
    /// API, or because another node took its session over).
    fn told_to_close(&self) -> Option<Close> {
        if self.broker.shutdown.is_cancelled() {
            return Some(Close::Shutdown);
        }
        match self.info.kicked()? {
            crate::admin::Kick::Admin => Some(Close::Kicked),
            crate::admin::Kick::TakenOverElsewhere => Some(Close::TakenOverElsewhere),
        }
    }

    /// Writes as much pending output as the socket takes without waiting. Returns whether
    /// the socket was full.
    fn write_now(&mut self, socket: &mut Socket) -> Result<bool, Close> {
        if self.out.is_empty() {
            return match socket.flush_pending() {
                Ok(()) => Ok(socket.has_pending_output()),
                Err(e) => Err(Close::Gone(format!("write error: {e}"))),
            };
        }
        match socket.try_write(&self.out) {
            Ok(n) => {
                self.counters.bytes_sent += n as u64;
                self.out.advance(n);
                if self.out.is_empty() && self.out.capacity() > READ_CHUNK {
                    // Idle connections keep no large buffers.
                    self.out = BytesMut::new();
                }
                Ok(socket.has_pending_output())
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Ok(true),
            Err(e) => Err(Close::Gone(format!("write error: {e}"))),
        }
    }

    /// Reads what the socket has (readiness was reported) and handles every complete
    /// packet. The read buffer exists only while bytes are pending: once everything in it
    /// is handled it is released, so an idle connection holds no read buffer. Returns
    /// how many bytes were read.
    fn read_and_handle(
        &mut self,
        socket: &mut Socket,
        input: &mut BytesMut,
        max_packet_size: usize,
    ) -> Result<usize, Close> {
        if input.capacity() - input.len() < READ_CHUNK / 4 {
            input.reserve(READ_CHUNK);
        }
        match socket.try_read_buf(input) {
            Ok(0) => Err(Close::Gone("closed by the client".into())),
            Ok(n) => {
                self.counters.bytes_received += n as u64;
                self.handle_input(input, max_packet_size)?;
                if input.is_empty() {
                    *input = BytesMut::new();
                }
                Ok(n)
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                // Readiness was stale (or TLS had no whole record yet): an idle connection
                // must not keep the buffer reserved for this read.
                if input.is_empty() {
                    *input = BytesMut::new();
                }
                Ok(0)
            }
            Err(e) => Err(Close::Gone(format!("read error: {e}"))),
        }
    }

    /// Handles the packets that came in the same read as CONNECT (a client need not wait
    /// for CONNACK), before the loop waits for new bytes, which may never come. What the
    /// session had queued goes out first, as it does after a CONNECT alone.
    fn handle_early_input(&mut self, input: &mut BytesMut, max_packet_size: usize) -> Result<(), Close> {
        if input.is_empty() {
            return Ok(());
        }
        self.fill_from_outbox();
        self.handle_input(input, max_packet_size)
    }

    /// Decodes and handles every complete packet in `input`.
    fn handle_input(&mut self, input: &mut BytesMut, max_packet_size: usize) -> Result<(), Close> {
        loop {
            let before = input.len();
            match tern_proto::decode(input, self.version, max_packet_size) {
                Ok(Some(packet)) => {
                    if let Packet::Publish(publish) = &packet {
                        self.counters.publish_received(publish.qos, before - input.len());
                    }
                    if packet_log::enabled() {
                        packet_log::received(&self.session.client_id, &packet);
                    }
                    self.handle_packet(packet)?
                }
                Ok(None) => return Ok(()),
                Err(e) => return Err(Close::from_decode(e)),
            }
        }
    }

    /// Moves sendable deliveries from the session's outbox into the output buffer, and
    /// when the outbox runs empty, retained messages its SUBSCRIBEs still have coming.
    /// Returns whether it stopped with more to send (at the high-water mark, or with a
    /// retained stream paused).
    fn fill_from_outbox(&mut self) -> bool {
        let v5 = self.version.is_v5();
        let mut state = self.session.state.lock();
        loop {
            if self.out.len() >= OUTPUT_HIGH_WATER {
                return state.outbox.queued() > 0 || self.broker.router.has_retained_backlog(self.session.id);
            }
            let Some(sendable) = state.outbox.pop_sendable(self.inflight_window) else {
                // The retained messages wait in the router rather than in the bounded
                // queue, and enter it a batch at a time.
                if state.outbox.queued() == 0 {
                    match self.broker.router.feed_retained(&self.session, &mut state) {
                        Feed::Queued => continue,
                        Feed::Paused => return true,
                        Feed::Idle => {}
                    }
                }
                return false;
            };
            // The clock is read only for the few messages that can expire.
            let expiry = match sendable.delivery.expires_at {
                None => Expiry::Never,
                Some(_) => sendable.delivery.expiry(crate::clock::now()),
            };
            let frame = match expiry {
                // [MQTT-3.3.2-5]: an expired message is not sent; it leaves the window too.
                Expiry::Expired => None,
                _ => sendable.delivery.frame_for(v5),
            };
            let Some(frame) = frame else {
                self.broker
                    .metrics
                    .dropped_for(DropReason::Expired, &self.session.client_id);
                state.outbox.forget(sendable.packet_id);
                self.session.forget_message(sendable.delivery.seq);
                continue;
            };
            let saved = self.topic_map.as_ref().map_or(0, TopicMap::saved_bytes);
            if frame.len() - saved > self.client_max_packet_size {
                // [MQTT-3.1.2-25]: never send more than the client accepts; the message is
                // dropped for this client as if it had been acknowledged.
                let client_id = &self.session.client_id;
                self.broker
                    .metrics
                    .dropped_for(DropReason::TooLargeForClient, client_id);
                state.outbox.forget(sendable.packet_id);
                self.session.forget_message(sendable.delivery.seq);
                continue;
            }
            if sendable.delivery.seq != 0 && sendable.qos == QoS::ExactlyOnce {
                // A QoS 2 packet id is stored before the PUBLISH leaves (the output waits
                // for it in sync mode), so a restart resends it under the same id and the
                // client cannot take it for a new message. A QoS 1 message is simply sent
                // again after a restart (duplicates are allowed at QoS 1).
                let (delivery, id) = (&sendable.delivery, sendable.packet_id);
                self.session
                    .persist_message(delivery, QoS::ExactlyOnce, id, StoredStage::AwaitingPublishReceived);
            }
            let start = self.out.len();
            let written = match (self.outgoing_aliases.as_deref_mut(), &self.topic_map) {
                (None, None) => {
                    write_frame(&frame, &mut self.out, sendable.packet_id, false, expiry);
                    true
                }
                (Some(aliases), map) => {
                    aliases.write(&frame, &mut self.out, (sendable.packet_id, expiry), map.as_ref())
                }
                (None, Some(map)) => map.write_frame(&frame, &mut self.out, sendable.packet_id, false, expiry),
            };
            if !written {
                // Not below this listener's mount point (a session subscribed through
                // another listener and resumed here): not for this client.
                state.outbox.forget(sendable.packet_id);
                self.session.forget_message(sendable.delivery.seq);
                continue;
            }
            if packet_log::enabled() {
                packet_log::sending_written(&self.session.client_id, &self.out, start, self.version);
            }
            self.counters.publish_sent(sendable.qos, self.out.len() - start);
        }
    }

    /// Resends in-flight messages after a session resumes [MQTT-4.4.0-1].
    fn resend_inflight(&mut self) {
        let v5 = self.version.is_v5();
        let mut state = self.session.state.lock();
        let mut unmapped = Vec::new();
        for inflight in state.outbox.inflight() {
            match inflight.stage {
                Stage::AwaitingPublishAck | Stage::AwaitingPublishReceived => {
                    if let Some(frame) = inflight.delivery.frame_for(v5) {
                        // Onward delivery has started: it finishes even if the message has
                        // expired meanwhile, with at least a second left on its interval.
                        let expiry = match inflight.delivery.expiry(crate::clock::now()) {
                            Expiry::Expired => Expiry::Remaining(1),
                            other => other,
                        };
                        let id = inflight.packet_id;
                        match &self.topic_map {
                            None => write_frame(&frame, &mut self.out, id, true, expiry),
                            Some(map) if map.write_frame(&frame, &mut self.out, id, true, expiry) => {}
                            Some(_) => {
                                unmapped.push((id, inflight.delivery.seq));
                                continue;
                            }
                        }
                        let qos = match inflight.stage {
                            Stage::AwaitingPublishAck => QoS::AtLeastOnce,
                            _ => QoS::ExactlyOnce,
                        };
                        self.counters.publish_sent(qos, frame.len());
                    }
                }
                Stage::AwaitingPublishComplete => {
                    let packet = Packet::PublishRelease(PublishResponse::new(inflight.packet_id));
                    if let Err(e) = encode(&packet, self.version, &mut self.out) {
                        tracing::error!("cannot encode PUBREL: {e}");
                    }
                }
            }
        }
        for (packet_id, seq) in unmapped {
            state.outbox.forget(packet_id);
            self.session.forget_message(seq);
        }
    }

    /// The cluster did not store what this connection published lately: its QoS 2
    /// packet ids since then are no longer taken as received ([`Self::cluster_unsettled_qos2`]).
    fn forget_unsettled_qos2(&mut self) {
        if self.cluster_unsettled_qos2.is_empty() {
            return;
        }
        let state = &mut *self.session.state.lock();
        for packet_id in self.cluster_unsettled_qos2.drain(..) {
            if state.incoming_qos2.remove(&packet_id) {
                self.session.persist_incoming(state, packet_id, false);
            }
        }
    }

    /// The properties of an acknowledgement that reports a problem: `why` as Reason String
    /// for a 5.0 client that did not opt out, and if it fits the client's packet limit.
    fn problem(&self, why: &str) -> Properties {
        // A Reason String is for people: long ones (a SUBSCRIBE refused thousands of times)
        // are cut, and never reach the 65,535 bytes a string may hold.
        const MOST: usize = 1024;
        let mut cut = why.len().min(MOST);
        while !why.is_char_boundary(cut) {
            cut -= 1;
        }
        let why = &why[..cut];
        let mut properties = Properties::default();
        if self.version.is_v5() && self.problem_information && why.len() + 32 <= self.client_max_packet_size {
            properties.push(Property::ReasonString(ByteStr::from(why)));
        }
        properties
    }

    /// Appends one packet to the output buffer.
    fn send(&mut self, packet: &Packet) {
        if packet_log::enabled() {
            packet_log::sending(&self.session.client_id, packet);
        }
        if let Err(e) = encode(packet, self.version, &mut self.out) {
            tracing::error!(client = %self.session.client_id, "cannot encode {}: {e}", packet.packet_type());
        }
    }

    /// Ends the connection: last packet to a 5.0 client, will, detaching the session.
    async fn finish(mut self, close: Close, socket: &mut Socket) {
        let (publish_will, disconnect_reason, log) = match &close {
            Close::Disconnect { publish_will } => (*publish_will, None, "disconnected".to_string()),
            Close::Gone(why) => (true, None, why.clone()),
            Close::Violation { reason, message } => (true, Some(*reason), format!("protocol violation: {message}")),
            Close::KeepAliveTimeout => (true, Some(ReasonCode::KEEP_ALIVE_TIMEOUT), "keepalive timeout".into()),
            Close::TakenOver(_) => (
                true,
                Some(ReasonCode::SESSION_TAKEN_OVER),
                "session taken over by a new connection".into(),
            ),
            Close::Kicked => (
                true,
                Some(ReasonCode::ADMINISTRATIVE_ACTION),
                "disconnected by an administrator".into(),
            ),
            Close::TakenOverElsewhere => (
                true,
                Some(ReasonCode::SESSION_TAKEN_OVER),
                "client id connected to another node of the cluster".into(),
            ),
            Close::Shutdown => (
                true,
                Some(ReasonCode::SERVER_SHUTTING_DOWN),
                "broker shutting down".into(),
            ),
        };
        match &close {
            Close::Violation { .. } => {
                tracing::warn!(client = %self.session.client_id, peer = %self.peer, "{log}")
            }
            _ if self.broker.config().connection_messages => {
                tracing::info!(client = %self.session.client_id, peer = %self.peer, "client closed: {log}")
            }
            _ => {}
        }
        if let (Some(reason), true) = (disconnect_reason, self.version.is_v5()) {
            // A DISCONNECT may always carry a Reason String, but never exceed the client's
            // Maximum Packet Size [MQTT-3.14.2-3].
            let mut properties = Properties::default();
            if log.len() + 16 <= self.client_max_packet_size {
                properties.push(Property::ReasonString(ByteStr::from(log.as_str())));
            }
            let packet = Packet::Disconnect(Disconnect {
                reason_code: reason,
                properties,
            });
            self.send(&packet);
        }
        if let Some(store) = self.broker.store.clone().filter(|s| s.is_sync()) {
            // Answers still waiting for the disk go out only once it has them; if it does
            // not take them in time (full or failing disk) they never go out, and the
            // client sends those messages again.
            let _ = tokio::time::timeout(Duration::from_secs(1), store.wait_durable(self.hold)).await;
            if !store.is_durable(self.hold) {
                self.out.clear();
            }
        }
        if let Some(track) = &self.cluster_track {
            // Likewise for acknowledgements waiting for the cluster.
            if track.wait_settled(Duration::from_secs(1)).await {
                self.release_held_routes();
            } else {
                self.out.clear();
                self.forget_unsettled_qos2();
                self.cluster_held_routes.clear();
                self.cluster_held_bytes = 0;
            }
        }
        if !self.out.is_empty() {
            let _ = tokio::time::timeout(Duration::from_secs(1), socket.write_all(&self.out)).await;
        }
        let had_will = self.will.is_some();
        let will = if publish_will { self.will.take() } else { None };
        let taken_over = matches!(close, Close::TakenOver(_));
        let session_ended = self.detach_session(!taken_over);
        let delayed_until = will.and_then(|will| self.publish_or_delay_will(*will, session_ended));
        if let (Some(cluster), true) = (self.broker.router.cluster(), had_will) {
            let connected_at = std::time::UNIX_EPOCH + Duration::from_millis(self.info.connected_at_ms);
            let change = crate::cluster::WillChange::Closed {
                connected_at,
                delayed_until,
            };
            cluster.will_changed(&self.session.client_id, change);
        }
        self.info.count(&self.counters);
        self.broker.metrics.flush(&mut self.counters);
        self.broker.metrics.client_disconnected(self.listener);
        if let Some(client) = self.client.take() {
            // Before the takeover is answered: a newcomer's connected event comes after.
            self.broker
                .events()
                .emit(EventKind::Disconnected, || Event::Disconnected {
                    client,
                    reason: event_reason(&close),
                    detail: Arc::from(log.as_str()),
                    at: SystemTime::now(),
                    traffic: self.info.traffic(),
                });
        }
        // Closed for the client only once the session is detached and the will published
        // or scheduled: the end of the stream tells a client (and a test) that all of it
        // has happened.
        let _ = tokio::time::timeout(Duration::from_secs(1), socket.shutdown()).await;
        if let Close::TakenOver(done) = close {
            let _ = done.send(());
        }
        if disconnect_reason.is_some() {
            // The broker ended the connection: the client may still be sending.
            drain(socket).await;
        }
    }

    /// Publishes the will now, or holds it in the session for its Will Delay Interval
    /// (5.0), capped by the session's own expiry [MQTT-3.1.3-9]; returns when a held
    /// will falls due (wall clock).
    fn publish_or_delay_will(&self, will: Will, session_ended: bool) -> Option<SystemTime> {
        let delay = if self.version.is_v5() {
            will.properties.will_delay_interval().unwrap_or(0)
        } else {
            0
        };
        if delay == 0 || session_ended {
            self.broker.publish_will(will, &self.session);
            return None;
        }
        let mut state = self.session.state.lock();
        if state.connection.is_some() {
            // The client is already back: a reconnect within the delay cancels the will.
            return None;
        }
        let delay = Duration::from_secs(u64::from(delay)).min(state.expiry.unwrap_or(Duration::MAX));
        let due = crate::clock::now().checked_add(delay)?;
        state.pending_will = Some(Box::new(PendingWill { will, due }));
        self.session.schedule(due, crate::session::Due::Will);
        SystemTime::now().checked_add(delay)
    }

    /// Leaves the session to later connections, or ends it if it is clean; with
    /// `hand_off`, its unacknowledged shared-subscription messages go to other members.
    /// Returns whether the session ended.
    fn detach_session(&self, hand_off: bool) -> bool {
        // Under the registry lock: a session that ends leaves the registry in the same
        // step as its connection, so a newcomer cannot resume it in between.
        let (ends, online) = self.broker.sessions.with(|map| {
            let mut state = self.session.state.lock();
            if state
                .connection
                .as_ref()
                .is_some_and(|c| c.generation == self.generation)
            {
                state.connection = None;
                state.disconnected_at = Some(crate::clock::now());
            }
            let ends = state.clean && state.connection.is_none();
            let online = state.connection.is_some();
            if ends
                && map
                    .get(&self.session.client_id)
                    .is_some_and(|s| s.id == self.session.id)
            {
                map.remove(&self.session.client_id);
            }
            if !ends && !online {
                self.session.persist(&mut state, false);
                self.session.schedule_expiry(&mut state);
            }
            (ends, online)
        });
        if hand_off && !online {
            let metrics = &self.broker.metrics;
            self.broker.router.hand_off_shared(&self.session, ends, metrics);
        }
        if ends {
            self.broker.end_session(&self.session);
        }
        ends
    }
}
