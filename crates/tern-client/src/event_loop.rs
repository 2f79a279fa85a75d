//! The background task that owns the connection.
//!
//! One task per client: it alone reads and writes the socket. Commands from [`Client`]
//! handles arrive on a channel; packets are batched into one output buffer and written
//! together. QoS state survives reconnects: unfinished outgoing flows are resent with DUP
//! (PUBREL for those past PUBREC), and QoS 2 ids received but not released are kept so a
//! resent message is not delivered twice.
//!
//! [`Client`]: crate::Client

use crate::client::{ClientError, Event};
use crate::enhanced_auth::Exchange;
use crate::options::{ConnectOptions, Direction};
use bytes::BytesMut;
use std::collections::{HashMap, HashSet, VecDeque};
use std::time::Duration;
use tern_proto::*;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

/// Any byte stream the client can speak MQTT over.
pub(crate) trait Transport: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Transport for T {}
type BoxedTransport = Box<dyn Transport>;

type Done<T> = oneshot::Sender<Result<T, ClientError>>;

pub(crate) enum Command {
    Publish {
        publish: Publish,
        done: Done<ReasonCode>,
    },
    Subscribe {
        subscribe: Subscribe,
        done: Done<SubscribeAck>,
    },
    Unsubscribe {
        unsubscribe: Unsubscribe,
        done: Done<UnsubscribeAck>,
    },
    Disconnect {
        reason_code: ReasonCode,
        properties: Properties,
        done: Done<()>,
    },
    Reauthenticate {
        done: Done<()>,
    },
}

/// An outgoing flow waiting for its acknowledgement.
enum Pending {
    /// QoS 1/2 PUBLISH sent; `released` once PUBREC came and PUBREL was sent.
    Publish {
        publish: Publish,
        released: bool,
        done: Done<ReasonCode>,
    },
    Subscribe(Done<SubscribeAck>),
    Unsubscribe(Done<UnsubscribeAck>),
}

/// QoS state that outlives one connection.
struct State {
    options: ConnectOptions,
    version: ProtocolVersion,
    last_packet_id: u16,
    pending: HashMap<u16, Pending>,
    /// Ids in send order, for resending after a reconnect.
    order: VecDeque<u16>,
    /// Publishes waiting for room in the in-flight window.
    waiting: VecDeque<(Publish, Done<ReasonCode>)>,
    /// QoS 2 ids received and not yet released by PUBREL.
    incoming_qos2: HashSet<u16>,
    /// Topic aliases the broker set on this connection (5.0).
    topic_aliases: HashMap<u16, ByteStr>,
    /// Smaller of ours and the broker's Receive Maximum.
    window: usize,
    out: BytesMut,
    events: mpsc::Sender<Event>,
    /// A re-authentication in progress (5.0 AUTH 0x19).
    reauth: Option<(Exchange, Done<()>)>,
}

pub(crate) async fn start(
    options: ConnectOptions,
    transport: Option<BoxedTransport>,
) -> Result<(mpsc::Sender<Command>, ConnectAck, mpsc::Receiver<Event>), ClientError> {
    let reconnect_allowed = transport.is_none();
    let transport = match transport {
        Some(t) => t,
        None => dial(&options).await?,
    };
    let (events_tx, events_rx) = mpsc::channel(1024);
    let mut state = State {
        version: options.version,
        window: options.max_inflight,
        options,
        last_packet_id: 0,
        pending: HashMap::new(),
        order: VecDeque::new(),
        waiting: VecDeque::new(),
        incoming_qos2: HashSet::new(),
        topic_aliases: HashMap::new(),
        out: BytesMut::new(),
        events: events_tx,
        reauth: None,
    };
    let clean = state.options.clean_start;
    let (connection, connack) = handshake(&mut state, transport, clean).await?;
    let (commands_tx, commands_rx) = mpsc::channel(256);
    tokio::spawn(run(state, connection, commands_rx, reconnect_allowed));
    Ok((commands_tx, connack, events_rx))
}

async fn dial(options: &ConnectOptions) -> Result<BoxedTransport, ClientError> {
    let address = format!("{}:{}", options.host, options.port);
    let stream = tokio::time::timeout(options.connect_timeout, TcpStream::connect(&address))
        .await
        .map_err(|_| ClientError::Timeout)?
        .map_err(|source| ClientError::Connect { address, source })?;
    let _ = stream.set_nodelay(true);
    let Some(tls) = &options.tls else {
        return Ok(Box::new(stream));
    };
    let config = crate::tls::client_config(tls)?;
    let name = rustls::pki_types::ServerName::try_from(options.host.clone())
        .map_err(|e| ClientError::Tls(format!("{}: {e}", options.host)))?;
    let connector = tokio_rustls::TlsConnector::from(config);
    let stream = tokio::time::timeout(options.connect_timeout, connector.connect(name, stream))
        .await
        .map_err(|_| ClientError::Timeout)?
        .map_err(|e| ClientError::Tls(e.to_string()))?;
    Ok(Box::new(stream))
}

struct Connection {
    reader: ReadHalf<BoxedTransport>,
    writer: WriteHalf<BoxedTransport>,
    input: BytesMut,
}

/// Sends CONNECT, reads CONNACK, resends unfinished flows if the session was resumed.
async fn handshake(
    state: &mut State,
    transport: BoxedTransport,
    clean: bool,
) -> Result<(Connection, ConnectAck), ClientError> {
    let (reader, writer) = tokio::io::split(transport);
    let mut connection = Connection {
        reader,
        writer,
        input: BytesMut::with_capacity(4096),
    };
    let mut out = BytesMut::new();
    let mut connect = state.options.connect_packet(clean);
    let mut exchange = match &state.options.scram {
        Some(login) => {
            let (exchange, first) = Exchange::start(login)?;
            connect.properties.0.extend(Exchange::properties(first));
            Some(exchange)
        }
        None => None,
    };
    let connect = Packet::Connect(Box::new(connect));
    encode(&connect, state.version, &mut out)?;
    state.trace(Direction::Sent, &connect);
    connection.writer.write_all(&out).await?;
    let timeout = state.options.connect_timeout;
    let connack = tokio::time::timeout(timeout, async {
        loop {
            if let Some(packet) = decode(&mut connection.input, state.version, usize::MAX)? {
                state.trace(Direction::Received, &packet);
                match (packet, exchange.as_mut()) {
                    (Packet::ConnectAck(ack), Some(exchange)) if ack.reason_code.is_success() => {
                        exchange.verify(&ack.properties)?;
                        return Ok(ack);
                    }
                    (Packet::ConnectAck(ack), _) => return Ok(ack),
                    (Packet::Auth(auth), Some(exchange)) => {
                        let mut out = BytesMut::new();
                        let answer = exchange.respond(&auth)?;
                        encode(&answer, state.version, &mut out)?;
                        state.trace(Direction::Sent, &answer);
                        connection.writer.write_all(&out).await?;
                        continue;
                    }
                    (other, _) => return Err(ClientError::Unexpected(other.packet_type().name())),
                }
            }
            if connection.reader.read_buf(&mut connection.input).await? == 0 {
                return Err(ClientError::ConnectionLost("closed before CONNACK".into()));
            }
        }
    })
    .await
    .map_err(|_| ClientError::Timeout)??;
    if !connack.reason_code.is_success() {
        return Err(ClientError::Refused(connack.reason_code));
    }
    if let Some(receive_maximum) = connack.properties.receive_maximum() {
        state.window = state.options.max_inflight.min(usize::from(receive_maximum));
    }
    state.topic_aliases.clear();
    if connack.session_present {
        state.resend();
    } else {
        state.fail_unfinished_session();
    }
    Ok((connection, connack))
}

async fn run(
    mut state: State,
    mut connection: Connection,
    mut commands: mpsc::Receiver<Command>,
    reconnect_allowed: bool,
) {
    loop {
        let reason = serve(&mut state, &mut connection, &mut commands).await;
        let Some(reason) = reason else { return };
        // What was not written went with the connection; a resumed session resends it.
        state.out.clear();
        let _ = state.events.send(Event::Disconnected(reason.clone())).await;
        state.fail_requests(&reason);
        let Some(policy) = state.options.reconnect.filter(|_| reconnect_allowed) else {
            state.fail_all(&reason);
            return;
        };
        let mut delay = policy.initial_delay;
        let clean = state.options.clean_start;
        connection = loop {
            if !backoff(&mut state, &mut commands, delay).await {
                return;
            }
            delay = (delay * 2).min(policy.max_delay);
            let attempt = match dial(&state.options).await {
                Ok(transport) => handshake(&mut state, transport, clean).await,
                Err(e) => Err(e),
            };
            match attempt {
                Ok((connection, ack)) => {
                    let _ = state.events.send(Event::Reconnected(ack)).await;
                    break connection;
                }
                Err(e) => tracing::debug!("reconnect failed: {e}"),
            }
            if state.events.is_closed() && commands.is_closed() {
                return;
            }
        };
    }
}

/// Waits `delay` between connections, taking commands meanwhile (publishes and
/// subscriptions wait for the next connection). Returns false when a DISCONNECT was asked
/// for: there is no connection to send it on, so the client just stops.
async fn backoff(state: &mut State, commands: &mut mpsc::Receiver<Command>, delay: Duration) -> bool {
    let until = Instant::now() + delay;
    loop {
        tokio::select! {
            _ = tokio::time::sleep_until(until) => return true,
            command = commands.recv(), if !commands.is_closed() => match command {
                Some(Command::Disconnect { done, .. }) => {
                    state.fail_all("disconnected");
                    let _ = done.send(Ok(()));
                    return false;
                }
                Some(command) => state.command(command),
                None => {}
            },
        }
    }
}

/// Serves one connection. Returns `None` after a requested disconnect or when every
/// handle and the event stream are gone, or the reason the connection was lost.
async fn serve(state: &mut State, c: &mut Connection, commands: &mut mpsc::Receiver<Command>) -> Option<String> {
    let keep_alive = Duration::from_secs(u64::from(state.options.keep_alive));
    let mut last_sent = Instant::now();
    let mut ping_outstanding: Option<Instant> = None;
    let tick = if keep_alive.is_zero() {
        Duration::from_secs(3600)
    } else {
        keep_alive / 2
    };
    let mut timer = tokio::time::interval(tick);
    loop {
        state.admit_waiting();
        if !state.out.is_empty() {
            if let Err(e) = c.writer.write_all(&state.out).await {
                return Some(format!("write error: {e}"));
            }
            state.out.clear();
            last_sent = Instant::now();
        }
        tokio::select! {
            command = commands.recv() => match command {
                Some(Command::Disconnect { reason_code, properties, done }) => {
                    state.send(&Packet::Disconnect(Disconnect { reason_code, properties }));
                    let _ = c.writer.write_all(&state.out).await;
                    let _ = c.writer.shutdown().await;
                    state.fail_all("disconnected");
                    let _ = done.send(Ok(()));
                    return None;
                }
                Some(command) => state.command(command),
                None => {
                    let _ = c.writer.shutdown().await;
                    return None;
                }
            },
            read = c.reader.read_buf(&mut c.input) => match read {
                Ok(0) => return Some("closed by the broker".into()),
                Ok(_) => loop {
                    let decoded = decode(&mut c.input, state.version, usize::MAX);
                    if let Ok(Some(packet)) = &decoded {
                        state.trace(Direction::Received, packet);
                    }
                    match decoded {
                        Ok(Some(Packet::PingResponse)) => ping_outstanding = None,
                        Ok(Some(Packet::Disconnect(d))) => {
                            let _ = state.events.send(Event::DisconnectedByBroker(d.reason_code)).await;
                            return Some(format!("the broker disconnected: {}", d.reason_code));
                        }
                        Ok(Some(packet)) => {
                            if let Err(e) = state.incoming(packet).await {
                                return Some(e);
                            }
                        }
                        Ok(None) => break,
                        Err(e) => return Some(format!("malformed packet from the broker: {e}")),
                    }
                },
                Err(e) => return Some(format!("read error: {e}")),
            },
            _ = timer.tick(), if !keep_alive.is_zero() => {
                if ping_outstanding.is_some_and(|t| t.elapsed() >= keep_alive) {
                    return Some("no PINGRESP within the keepalive".into());
                }
                if last_sent.elapsed() >= tick && ping_outstanding.is_none() {
                    state.send(&Packet::PingRequest);
                    ping_outstanding = Some(Instant::now());
                }
            }
        }
    }
}

impl State {
    fn send(&mut self, packet: &Packet) {
        match encode(packet, self.version, &mut self.out) {
            Ok(()) => self.trace(Direction::Sent, packet),
            Err(e) => tracing::error!("cannot encode {}: {e}", packet.packet_type()),
        }
    }

    fn trace(&self, direction: Direction, packet: &Packet) {
        if let Some(trace) = &self.options.trace {
            trace.record(direction, packet);
        }
    }

    fn next_packet_id(&mut self) -> u16 {
        loop {
            self.last_packet_id = self.last_packet_id.wrapping_add(1);
            if self.last_packet_id != 0 && !self.pending.contains_key(&self.last_packet_id) {
                return self.last_packet_id;
            }
        }
    }

    fn inflight(&self) -> usize {
        self.pending
            .values()
            .filter(|p| matches!(p, Pending::Publish { .. }))
            .count()
    }

    fn command(&mut self, command: Command) {
        match command {
            Command::Publish { publish, done } => self.waiting.push_back((publish, done)),
            Command::Subscribe { mut subscribe, done } => {
                subscribe.packet_id = self.next_packet_id();
                self.pending.insert(subscribe.packet_id, Pending::Subscribe(done));
                self.send(&Packet::Subscribe(subscribe));
            }
            Command::Unsubscribe { mut unsubscribe, done } => {
                unsubscribe.packet_id = self.next_packet_id();
                self.pending.insert(unsubscribe.packet_id, Pending::Unsubscribe(done));
                self.send(&Packet::Unsubscribe(unsubscribe));
            }
            Command::Disconnect { .. } => {}
            Command::Reauthenticate { done } => self.start_reauthentication(done),
        }
    }

    /// Sends AUTH 0x19 with a new SCRAM client-first message.
    fn start_reauthentication(&mut self, done: Done<()>) {
        let Some(login) = self.options.scram.clone() else {
            let _ = done.send(Err(ClientError::Authentication(
                "the connection was not made with enhanced authentication".into(),
            )));
            return;
        };
        if self.reauth.is_some() {
            let _ = done.send(Err(ClientError::Authentication(
                "a re-authentication is in progress".into(),
            )));
            return;
        }
        match Exchange::start(&login) {
            Ok((exchange, first)) => {
                self.send(&Packet::Auth(Auth {
                    reason_code: ReasonCode::RE_AUTHENTICATE,
                    properties: Properties(Exchange::properties(first)),
                }));
                self.reauth = Some((exchange, done));
            }
            Err(e) => {
                let _ = done.send(Err(e));
            }
        }
    }

    /// The broker's AUTH during a re-authentication.
    fn incoming_auth(&mut self, auth: Auth) -> Result<(), String> {
        let Some((mut exchange, done)) = self.reauth.take() else {
            return Err("[MQTT-4.12.0-6] AUTH from the broker with no authentication in progress".into());
        };
        if auth.reason_code == ReasonCode::SUCCESS {
            let _ = done.send(exchange.verify(&auth.properties));
            return Ok(());
        }
        match exchange.respond(&auth) {
            Ok(answer) => {
                self.send(&answer);
                self.reauth = Some((exchange, done));
                Ok(())
            }
            Err(e) => {
                let why = e.to_string();
                let _ = done.send(Err(e));
                Err(why)
            }
        }
    }

    /// Sends waiting publishes while the in-flight window has room (QoS 0 always).
    fn admit_waiting(&mut self) {
        while let Some((publish, _)) = self.waiting.front() {
            if publish.qos != QoS::AtMostOnce && self.inflight() >= self.window {
                return;
            }
            let Some((mut publish, done)) = self.waiting.pop_front() else {
                return;
            };
            if publish.qos == QoS::AtMostOnce {
                publish.packet_id = 0;
                let start = self.out.len();
                self.send(&Packet::Publish(publish));
                let _ = done.send(if self.out.len() > start {
                    Ok(ReasonCode::SUCCESS)
                } else {
                    Err(ClientError::Closed)
                });
                continue;
            }
            publish.packet_id = self.next_packet_id();
            self.send(&Packet::Publish(publish.clone()));
            self.order.push_back(publish.packet_id);
            self.pending.insert(
                publish.packet_id,
                Pending::Publish {
                    publish,
                    released: false,
                    done,
                },
            );
        }
    }

    async fn incoming(&mut self, packet: Packet) -> Result<(), String> {
        match packet {
            Packet::Publish(p) => self.incoming_publish(p).await,
            Packet::PublishAck(r) => self.finish_publish(r.packet_id, r.reason_code),
            Packet::PublishReceived(r) => {
                let reason = r.reason_code;
                if let Some(Pending::Publish { released, .. }) = self.pending.get_mut(&r.packet_id) {
                    if !reason.is_success() {
                        self.finish_publish(r.packet_id, reason);
                        return Ok(());
                    }
                    *released = true;
                }
                self.send(&Packet::PublishRelease(PublishResponse::new(r.packet_id)));
            }
            Packet::PublishRelease(r) => {
                self.incoming_qos2.remove(&r.packet_id);
                self.send(&Packet::PublishComplete(PublishResponse::new(r.packet_id)));
            }
            Packet::PublishComplete(r) => self.finish_publish(r.packet_id, r.reason_code),
            Packet::SubscribeAck(ack) => {
                if let Some(Pending::Subscribe(done)) = self.pending.remove(&ack.packet_id) {
                    let _ = done.send(Ok(ack));
                }
            }
            Packet::UnsubscribeAck(ack) => {
                if let Some(Pending::Unsubscribe(done)) = self.pending.remove(&ack.packet_id) {
                    let _ = done.send(Ok(ack));
                }
            }
            Packet::Auth(auth) => return self.incoming_auth(auth),
            other => return Err(format!("unexpected {} from the broker", other.packet_type())),
        }
        Ok(())
    }

    async fn incoming_publish(&mut self, mut publish: Publish) {
        // 5.0 topic aliases set by the broker (when CONNECT allowed them): resolved here,
        // so applications always see the topic.
        if let Some(alias) = publish.properties.topic_alias() {
            if publish.topic.is_empty() {
                publish.topic = self.topic_aliases.get(&alias).cloned().unwrap_or_default();
            } else {
                self.topic_aliases.insert(alias, publish.topic.clone());
            }
            publish.properties.remove(PropertyId::TopicAlias);
        }
        let id = publish.packet_id;
        let deliver = match publish.qos {
            QoS::AtMostOnce => true,
            QoS::AtLeastOnce => {
                self.send(&Packet::PublishAck(PublishResponse::new(id)));
                true
            }
            QoS::ExactlyOnce => {
                self.send(&Packet::PublishReceived(PublishResponse::new(id)));
                self.incoming_qos2.insert(id)
            }
        };
        if deliver {
            // Back-pressure: a slow consumer of events slows reading from the socket.
            let _ = self.events.send(Event::Message(publish)).await;
        }
    }

    fn finish_publish(&mut self, packet_id: u16, reason: ReasonCode) {
        if let Some(Pending::Publish { done, .. }) = self.pending.remove(&packet_id) {
            self.order.retain(|id| *id != packet_id);
            let _ = done.send(Ok(reason));
        }
    }

    /// Resends unfinished flows in their original order after the session resumed.
    fn resend(&mut self) {
        let ids: Vec<u16> = self.order.iter().copied().collect();
        for id in ids {
            let packet = match self.pending.get(&id) {
                Some(Pending::Publish {
                    publish,
                    released: false,
                    ..
                }) => {
                    let mut again = publish.clone();
                    again.dup = true;
                    Packet::Publish(again)
                }
                Some(Pending::Publish { released: true, .. }) => Packet::PublishRelease(PublishResponse::new(id)),
                _ => continue,
            };
            self.send(&packet);
        }
    }

    /// The broker has no session for us: unfinished flows are sent again as new messages.
    fn fail_unfinished_session(&mut self) {
        self.incoming_qos2.clear();
        let ids: Vec<u16> = self.order.drain(..).collect();
        for id in ids.into_iter().rev() {
            if let Some(Pending::Publish { mut publish, done, .. }) = self.pending.remove(&id) {
                publish.dup = false;
                self.waiting.push_front((publish, done));
            }
        }
    }

    /// Subscribe and unsubscribe requests do not survive a lost connection.
    fn fail_requests(&mut self, reason: &str) {
        let ids: Vec<u16> = self
            .pending
            .iter()
            .filter(|(_, p)| !matches!(p, Pending::Publish { .. }))
            .map(|(id, _)| *id)
            .collect();
        for id in ids {
            match self.pending.remove(&id) {
                Some(Pending::Subscribe(done)) => drop(done.send(Err(ClientError::ConnectionLost(reason.into())))),
                Some(Pending::Unsubscribe(done)) => drop(done.send(Err(ClientError::ConnectionLost(reason.into())))),
                _ => {}
            }
        }
    }

    fn fail_all(&mut self, reason: &str) {
        self.fail_requests(reason);
        for (_, pending) in self.pending.drain() {
            if let Pending::Publish { done, .. } = pending {
                let _ = done.send(Err(ClientError::ConnectionLost(reason.into())));
            }
        }
        for (_, done) in self.waiting.drain(..) {
            let _ = done.send(Err(ClientError::ConnectionLost(reason.into())));
        }
        self.order.clear();
    }
}
