//! CONNECT: checking it (client id, credentials, keepalive, will), deciding whether the
//! client is admitted and answering with CONNACK (its properties, or the refusal and
//! why), then building the connection's state. Attaching to the session (new, resumed or
//! taken over) is in attach.rs; the cluster's part of it in resume.rs.

use super::attach::{attach_session, gone_before_connack, session_lifetime};
use super::transport::Socket;
use super::{enhanced_auth, Connection, TOPIC_ALIAS_MAXIMUM};
use crate::broker::BrokerState;
use crate::events::{ClientInfo, Event, EventKind};
use crate::metrics::{AuthFailure, RefusalReason};
use crate::policy::ClientPolicy;
use crate::security::{ClientAccess, Login};
use crate::session::{ConnectionHandle, Session};
use crate::tls::{identity_of, IdentityAsUser};
use bytes::BytesMut;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;
use tern_proto::{encode, ByteStr, Connect, ConnectAck, Packet, Properties, Property, ProtocolVersion, ReasonCode};
use tokio::sync::oneshot;

/// Connections accepted since start, for connection generations and generated ids.
static CONNECTIONS: AtomicU64 = AtomicU64::new(0);

/// How a refusing CONNACK is counted among refused connections.
fn refusal_reason(code: ReasonCode) -> RefusalReason {
    match code {
        ReasonCode::NOT_AUTHORIZED | ReasonCode::BAD_USER_NAME_OR_PASSWORD | ReasonCode::BAD_AUTHENTICATION_METHOD => {
            RefusalReason::NotAuthorized
        }
        ReasonCode::CLIENT_IDENTIFIER_NOT_VALID => RefusalReason::ClientIdentifier,
        ReasonCode::SERVER_BUSY => RefusalReason::ServerBusy,
        ReasonCode::RETAIN_NOT_SUPPORTED | ReasonCode::QOS_NOT_SUPPORTED => RefusalReason::WillNotSupported,
        _ => RefusalReason::Other,
    }
}

fn connack(
    version: ProtocolVersion,
    session_present: bool,
    reason_code: ReasonCode,
    properties: Properties,
) -> BytesMut {
    let mut out = BytesMut::with_capacity(16);
    let packet = Packet::ConnectAck(ConnectAck {
        session_present,
        reason_code,
        properties,
    });
    if let Err(e) = encode(&packet, version, &mut out) {
        tracing::error!("cannot encode CONNACK: {e}");
    }
    out
}

/// Refuses the connection with `reason`; a 5.0 client also gets `why` as Reason String
/// (always allowed on CONNACK [MQTT-3.1.2-29]) and any `extra` properties.
async fn refuse(
    socket: &mut Socket,
    version: ProtocolVersion,
    (reason, why): (ReasonCode, &str),
    peer: SocketAddr,
    (client_id, user): (&str, Option<&str>),
    extra: Vec<Property>,
) {
    let user = user.unwrap_or("");
    tracing::info!(%peer, client = client_id, user, "connection refused: {reason}: {why}");
    if !version.is_v5() && matches!(reason, ReasonCode::RETAIN_NOT_SUPPORTED | ReasonCode::QOS_NOT_SUPPORTED) {
        // 3.x has no return code for these: mosquitto closes without CONNACK.
        socket.shutdown().await;
        return;
    }
    let mut properties = Properties(extra);
    if version.is_v5() && !why.is_empty() {
        properties.push(Property::ReasonString(ByteStr::from(why)));
    }
    if !version.is_v5() {
        properties = Properties::default();
    }
    let reply = connack(version, false, reason, properties);
    let _ = socket.write_all(&reply).await;
    socket.shutdown().await;
    super::drain(socket).await;
}

/// Sends the client to `server`: 5.0 clients get 0x9C Use another server (0x9D Server
/// moved if `moved`) with the Server Reference; 3.x clients, who cannot be told where,
/// get 0x03 Server unavailable.
async fn redirect(
    socket: &mut Socket,
    version: ProtocolVersion,
    server: &str,
    moved: bool,
    peer: SocketAddr,
    client_id: &str,
) {
    let (reason, why) = match (version.is_v5(), moved) {
        (false, _) => (
            ReasonCode::SERVER_UNAVAILABLE,
            "this server sends its clients elsewhere",
        ),
        (true, false) => (ReasonCode::USE_ANOTHER_SERVER, "use another server"),
        (true, true) => (ReasonCode::SERVER_MOVED, "server moved"),
    };
    let reference = vec![Property::ServerReference(ByteStr::from(server))];
    refuse(socket, version, (reason, why), peer, (client_id, None), reference).await;
}

/// Why CONNECT is refused: the reason code and the Reason String a 5.0 client gets.
type Refusal = (ReasonCode, String);

/// Who the client is, once CONNECT has been checked and the credentials accepted.
struct Admitted {
    client_id: ByteStr,
    /// The client id the broker made up for an empty one (a 5.0 client is told it).
    assigned: bool,
    user: Option<Box<str>>,
    /// Enhanced authentication: the method, and the data the CONNACK carries.
    auth: Option<(Box<enhanced_auth::ConnectionAuth>, Option<Vec<u8>>)>,
    /// The keepalive in force, and whether a 5.0 client must be told it (Server Keep Alive).
    keep_alive: u16,
    server_keep_alive: bool,
    /// On a listener in platform mode: what the listener policy made of the client.
    policy: Option<Arc<dyn ClientPolicy>>,
}

/// Checks CONNECT, resolves the session and sends CONNACK. Returns the connection ready
/// to run, or `None` if it was refused.
pub(super) async fn accept(
    mut connect: Connect,
    peer: SocketAddr,
    broker: &Arc<BrokerState>,
    listener: usize,
    (socket, input): (&mut Socket, &mut BytesMut),
) -> Option<(Connection, oneshot::Receiver<oneshot::Sender<()>>)> {
    let config = broker.config();
    let version = connect.protocol_version;
    let generation = CONNECTIONS.fetch_add(1, Relaxed) + 1;
    if let Some(server) = &config.server_reference {
        broker.metrics.refused.add(RefusalReason::Redirected);
        redirect(socket, version, server, config.server_moved, peer, &connect.client_id).await;
        return None;
    }
    let admitted = match admit(
        &connect,
        broker,
        (listener, generation, peer),
        (&mut *socket, &mut *input),
    )
    .await
    {
        Ok(admitted) => admitted,
        Err((client_id, (reason, why))) => {
            broker.metrics.refused.add(refusal_reason(reason));
            emit_refused(broker, &connect, (peer, listener), &client_id, (reason, &why));
            let extra = refusal_properties(&config, listener);
            let who = (client_id.as_ref(), connect.username.as_deref());
            refuse(socket, version, (reason, &why), peer, who, extra).await;
            return None;
        }
    };
    let properties = connack_properties(&connect, &admitted, (&config, listener));
    let (takeover_tx, takeover_rx) = oneshot::channel();
    let info = Arc::new(crate::admin::ConnectionInfo::new(
        peer,
        version,
        admitted.keep_alive,
        admitted.user.clone(),
        listener,
    ));
    let handle = ConnectionHandle {
        generation,
        takeover: Some(takeover_tx),
        info: info.clone(),
    };
    let lifetime = session_lifetime(policy_session_rules(&mut connect, &admitted), &config);
    let owner = session_owner(&admitted);
    let (clean_start, from_cluster) =
        match super::resume::ask_cluster(broker, &admitted.client_id, connect.clean_start).await {
            Ok(answer) => answer,
            Err(why) => {
                broker.metrics.refused.add(RefusalReason::TakeoverFailed);
                let (extra, reason) = (refusal_properties(&config, listener), ReasonCode::SERVER_UNAVAILABLE);
                let who = (admitted.client_id.as_ref(), admitted.user.as_deref());
                refuse(socket, version, (reason, &why), peer, who, extra).await;
                return None;
            }
        };
    let Some((session, mut session_present)) = attach_session(
        broker,
        (&admitted.client_id, owner.as_deref()),
        clean_start,
        lifetime,
        handle,
    )
    .await
    else {
        broker.metrics.refused.add(RefusalReason::TakeoverFailed);
        let reason = (ReasonCode::SERVER_UNAVAILABLE, "the session could not be taken over");
        let extra = refusal_properties(&config, listener);
        let who = (admitted.client_id.as_ref(), admitted.user.as_deref());
        refuse(socket, version, reason, peer, who, extra).await;
        return None;
    };
    session.set_v5(version.is_v5());
    session_present |= super::resume::attach(broker, &session, from_cluster);
    let security = broker.listener_security(listener);
    // A policy decides for its clients instead of the listener's ACL.
    let acl = security.acl.clone().filter(|_| admitted.policy.is_none());
    let acl_enforced = acl.is_some();
    {
        let mut state = session.state.lock();
        state.receive_policy = admitted.policy.as_ref().and_then(|p| p.delivery_filter());
        state.access = acl.map(|acl| {
            Box::new(ClientAccess {
                acl,
                user: admitted.user.clone(),
                listener,
            })
        });
        state.disconnected_at = None;
        session.persist(&mut state, false);
    }
    let reply = connack(version, session_present, ReasonCode::SUCCESS, properties);
    // Taken before the CONNACK leaves: a later connection of the client id, anywhere,
    // has a later time (the cluster's takeover orders connections by it).
    let connected_at = std::time::SystemTime::now();
    if socket.write_all(&reply).await.is_err() {
        gone_before_connack(broker, &session);
        return None;
    }
    broker.metrics.client_connected(listener);
    let events = broker.events();
    let client = (events.wants(EventKind::Connected) || events.wants(EventKind::Disconnected)).then(|| {
        Arc::new(ClientInfo {
            client_id: admitted.client_id.clone(),
            user: admitted.user.clone(),
            address: peer,
            protocol: version,
            listener,
            clean_start: connect.clean_start,
            keep_alive: admitted.keep_alive,
            connected_at,
        })
    });
    if config.connection_messages {
        let (clean, keep_alive) = (connect.clean_start, admitted.keep_alive);
        let user = admitted.user.as_deref().unwrap_or("");
        tracing::info!(%peer, client = %admitted.client_id, user, "client connected (MQTT {version}, clean {clean}, keepalive {keep_alive})");
    }
    let asked_clean_start = connect.clean_start;
    let mut connection = connection(
        connect,
        admitted,
        (peer, session, generation, info),
        broker,
        (acl_enforced, listener),
    );
    if let Some(cluster) = broker.router.cluster() {
        // The connection is known by its info's time, which its close names again.
        let connected_at = std::time::UNIX_EPOCH + Duration::from_millis(connection.info.connected_at_ms);
        let will = connection.will.as_deref();
        let change = crate::cluster::WillChange::Connected {
            will,
            connected_at,
            clean_start: asked_clean_start,
        };
        cluster.will_changed(&connection.session.client_id, change);
    }
    if let Some(client) = client {
        broker
            .events()
            .emit(EventKind::Connected, || Event::Connected(client.clone()));
        connection.client = Some(client);
    }
    if session_present {
        connection.resend_inflight();
    }
    Some((connection, takeover_rx))
}

/// Checks what CONNECT says about the client: its id, its credentials (enhanced
/// authentication, certificate or password) and its keepalive. On refusal: the client id
/// for the log, the reason code and why.
async fn admit(
    connect: &Connect,
    broker: &BrokerState,
    (listener, generation, peer): (usize, u64, SocketAddr),
    (socket, input): (&mut Socket, &mut BytesMut),
) -> Result<Admitted, (ByteStr, Refusal)> {
    let config = broker.config();
    let version = connect.protocol_version;
    if let Some(refusal) = connect_refusal(connect, &config, listener) {
        return Err((ByteStr::from(connect.client_id.as_str()), refusal));
    }
    let (client_id, assigned) = if connect.client_id.is_empty() {
        // 3.1.1: a zero-length id needs Clean Session [MQTT-3.1.3-8]; 3.1 needs an id; 5.0
        // always gets one assigned.
        if version == ProtocolVersion::V3_1 || (version == ProtocolVersion::V3_1_1 && !connect.clean_start) {
            let why = "[MQTT-3.1.3-8] an empty client id needs Clean Start (3.1.1) and is not allowed in 3.1";
            return Err((
                ByteStr::default(),
                (ReasonCode::CLIENT_IDENTIFIER_NOT_VALID, why.into()),
            ));
        }
        let unique = format_args!("{:x}-{generation}", broker.started_unix);
        let id = ByteStr::from(config.assigned_client_id(listener, unique));
        (id, version.is_v5())
    } else {
        // A copy: the decoded id shares the whole read buffer, which the session would
        // otherwise keep alive for its lifetime.
        (ByteStr::from(connect.client_id.as_str()), false)
    };
    let refused = |refusal: Refusal| (client_id.clone(), refusal);
    if let Some(policy) = broker.listener_policy(listener) {
        return admit_by_policy(connect, broker, policy, (listener, peer), socket)
            .await
            .map(|admitted| Admitted { assigned, ..admitted })
            .map_err(refused);
    }
    let mut user = None;
    let mut auth = None;
    if let (Some(method), true) = (connect.properties.authentication_method(), version.is_v5()) {
        let io = (&mut *socket, &mut *input);
        let done = enhanced_auth::authenticate(connect, &method, broker, io, config.connect_timeout)
            .await
            .map_err(|refusal| {
                broker.metrics.auth_failures.add(AuthFailure::EnhancedAuth);
                refused(refusal)
            })?;
        user = Some(done.user.into_boxed_str());
        let exchange = Box::new(enhanced_auth::ConnectionAuth { method, exchange: None });
        auth = Some((exchange, done.data));
    }
    if let Some(tls) = broker
        .listener_tls(listener)
        .filter(|t| t.identity != IdentityAsUser::No)
    {
        // use_identity_as_username / use_subject_as_username: the verified certificate
        // names the user; CONNECT's user name and password are not used.
        let certificate = socket
            .tls_session()
            .and_then(|s| s.peer_certificates())
            .and_then(|c| c.first());
        match certificate.and_then(|c| identity_of(c, tls.identity)) {
            Some(name) if user.is_none() => user = Some(name.into_boxed_str()),
            Some(_) => {}
            None => {
                broker.metrics.auth_failures.add(AuthFailure::NoCertificate);
                let why = "this listener needs a client certificate";
                return Err(refused((ReasonCode::NOT_AUTHORIZED, why.into())));
            }
        }
    }
    if user.is_none() {
        let security = broker.listener_security(listener);
        match security.login(connect.username.as_deref(), connect.password.as_deref()) {
            Login::Accepted(name) => user = name.map(String::into_boxed_str),
            Login::AnonymousRefused => {
                broker.metrics.auth_failures.add(AuthFailure::Anonymous);
                let why = "anonymous clients are not allowed";
                return Err(refused((ReasonCode::NOT_AUTHORIZED, why.into())));
            }
            Login::BadCredentials => {
                broker.metrics.auth_failures.add(AuthFailure::BadCredentials);
                // Slows password guessing down: one answer per delay per connection.
                tokio::time::sleep(config.auth_failure_delay).await;
                // mosquitto's answer to every failed password check, a user name without
                // a password included: 5 (3.x) or 0x87 (5.0) Not authorized.
                let why = "bad user name or password";
                return Err(refused((ReasonCode::NOT_AUTHORIZED, why.into())));
            }
        }
    }
    let (keep_alive, server_keep_alive) = negotiate_keep_alive(connect, &config).map_err(refused)?;
    let client_id = match username_as_client_id(&config, listener, user.as_deref()) {
        Ok(Some(name)) => name,
        Ok(None) => client_id,
        Err(refusal) => return Err((client_id, refusal)),
    };
    if broker.owned_by_policy_client(&client_id) {
        // Neither its connection nor its session is this client's to take.
        let why = "the client id belongs to a client of a platform listener";
        return Err((client_id, (ReasonCode::NOT_AUTHORIZED, why.into())));
    }
    Ok(Admitted {
        client_id,
        assigned,
        user,
        auth,
        keep_alive,
        server_keep_alive,
        policy: None,
    })
}

/// Admits a client of a listener in platform mode through the installed listener policy
/// (`assigned` is left false for the caller to set).
async fn admit_by_policy(
    connect: &Connect,
    broker: &BrokerState,
    policy: Option<Arc<dyn crate::policy::ListenerPolicy>>,
    (listener, peer): (usize, SocketAddr),
    socket: &mut Socket,
) -> Result<Admitted, Refusal> {
    let policy = policy.ok_or_else(|| {
        let why = "this listener is in platform mode and no platform is installed";
        (ReasonCode::SERVER_UNAVAILABLE, why.to_string())
    })?;
    let client_policy = crate::policy::admit(connect, broker, policy, (listener, peer), socket).await?;
    let (keep_alive, server_keep_alive) = negotiate_keep_alive(connect, &broker.config())?;
    let client_id = ByteStr::from(connect.client_id.as_str());
    Ok(Admitted {
        client_id: client_policy.session_client_id().map_or(client_id, ByteStr::from),
        assigned: false,
        user: client_policy.user().map(Box::from),
        auth: None,
        keep_alive,
        server_keep_alive,
        policy: Some(client_policy),
    })
}

/// Who a session belongs to. A policy's client owns its session under a name no MQTT
/// user name can be (it has a NUL): a client of another listener with the same client id
/// and user name starts a session of its own, never resumes this one.
fn session_owner(admitted: &Admitted) -> Option<String> {
    match &admitted.policy {
        Some(_) => Some(format!(
            "{}{}",
            crate::policy::OWNER_PREFIX,
            admitted.user.as_deref().unwrap_or("")
        )),
        None => admitted.user.as_deref().map(String::from),
    }
}

/// A policy that wants its client's session to end with the connection gets Clean Start
/// and no Session Expiry Interval, whatever the client asked. Returns the CONNECT.
fn policy_session_rules<'c>(connect: &'c mut Connect, admitted: &Admitted) -> &'c Connect {
    if admitted.policy.as_ref().is_some_and(|p| p.forces_clean_session()) {
        connect.clean_start = true;
        connect.properties.remove(tern_proto::PropertyId::SessionExpiryInterval);
    }
    connect
}

/// Tells the event stream about a refused CONNECT.
fn emit_refused(
    broker: &BrokerState,
    connect: &Connect,
    (peer, listener): (SocketAddr, usize),
    client_id: &ByteStr,
    (reason, why): (ReasonCode, &str),
) {
    broker.events().emit(EventKind::Refused, || Event::Refused {
        client_id: client_id.clone(),
        user: connect.username.as_deref().map(Box::from),
        address: peer,
        listener,
        protocol: connect.protocol_version,
        reason,
        why: Arc::from(why),
        at: std::time::SystemTime::now(),
    });
}

/// What the configuration refuses in CONNECT before credentials are looked at: the
/// client id (allow_zero_length_clientid, clientid_prefixes) and a will beyond what the
/// listener allows (retain_available, max_qos), as mosquitto refuses them.
fn connect_refusal(connect: &Connect, config: &crate::Config, listener: usize) -> Option<(ReasonCode, String)> {
    if crate::sys::over_memory_limit() {
        let why = "the broker is above its memory_limit";
        return Some((ReasonCode::SERVER_BUSY, why.into()));
    }
    if let Some(why) = config.client_id_refusal(listener, &connect.client_id) {
        // mosquitto's answers: to an empty id 0x80 (3.x: 2 Identifier rejected), to one
        // without the prefix Not authorized.
        let reason = match (connect.client_id.is_empty(), connect.protocol_version.is_v5()) {
            (true, true) => ReasonCode::UNSPECIFIED_ERROR,
            (true, false) => ReasonCode::CLIENT_IDENTIFIER_NOT_VALID,
            (false, _) => ReasonCode::NOT_AUTHORIZED,
        };
        return Some((reason, why.into()));
    }
    let will = connect.will.as_ref()?;
    if will.retain && !config.retain_available {
        let why = "retained messages are not available (retain_available false)";
        return Some((ReasonCode::RETAIN_NOT_SUPPORTED, why.into()));
    }
    let max_qos = config.max_qos(listener);
    if will.qos as u8 > max_qos {
        return Some((
            ReasonCode::QOS_NOT_SUPPORTED,
            format!("will QoS above max_qos {max_qos}"),
        ));
    }
    if let Some(Err(e)) = mount_point(config, listener).map(|map| map.to_broker_topic(&will.topic)) {
        return Some((ReasonCode::TOPIC_NAME_INVALID, format!("will topic: {e}")));
    }
    None
}

/// The topic mapping (mount_point) of listener `listener`, if it has one.
fn mount_point(config: &crate::Config, listener: usize) -> Option<&crate::topic_map::TopicMap> {
    config.listeners.get(listener).and_then(|l| l.mount_point.as_ref())
}

/// use_username_as_clientid: the user name replaces the client id (`Ok(None)`: the rule
/// is off); without a user name the client is refused, as by mosquitto.
fn username_as_client_id(
    config: &crate::Config,
    listener: usize,
    user: Option<&str>,
) -> Result<Option<ByteStr>, (ReasonCode, String)> {
    if !config.username_as_client_id(listener) {
        return Ok(None);
    }
    match user {
        Some(name) => Ok(Some(ByteStr::from(name))),
        None => {
            let why = "use_username_as_clientid: a user name is needed";
            Err((ReasonCode::NOT_AUTHORIZED, why.into()))
        }
    }
}

/// The keepalive in force under max_keepalive, and whether a 5.0 client is told it.
fn negotiate_keep_alive(connect: &Connect, config: &crate::Config) -> Result<(u16, bool), Refusal> {
    let keep_alive = connect.keep_alive;
    if keep_alive > config.max_keepalive || (keep_alive == 0 && config.max_keepalive < 65535) {
        if connect.protocol_version.is_v5() {
            return Ok((config.max_keepalive, true));
        }
        // mosquitto's rule for 3.x clients, which cannot be told another keepalive.
        let why = "keepalive above max_keepalive";
        return Err((ReasonCode::CLIENT_IDENTIFIER_NOT_VALID, why.into()));
    }
    Ok((keep_alive, false))
}

/// The properties of a successful 5.0 CONNACK, in the order mosquitto writes them (what
/// CONNECT negotiated, then the broker's limits), so that the same CONNECT gets the same
/// bytes from both brokers.
fn connack_properties(
    connect: &Connect,
    admitted: &Admitted,
    (config, listener): (&crate::Config, usize),
) -> Properties {
    let mut properties = Properties::default();
    if !connect.protocol_version.is_v5() {
        return properties;
    }
    properties.push(Property::TopicAliasMaximum(TOPIC_ALIAS_MAXIMUM));
    if admitted.server_keep_alive {
        properties.push(Property::ServerKeepAlive(admitted.keep_alive));
    }
    if admitted.assigned {
        properties.push(Property::AssignedClientIdentifier(admitted.client_id.clone()));
    }
    if let Some((auth, data)) = &admitted.auth {
        properties.push(Property::AuthenticationMethod(auth.method.clone()));
        if let Some(data) = data {
            properties.push(Property::AuthenticationData(data.clone().into()));
        }
    }
    if !config.retain_available {
        properties.push(Property::RetainAvailable(0));
    }
    // max_packet_size, or the packet limit that follows from message_size_limit.
    if let Some(size) = config.advertised_max_packet_size() {
        properties.push(Property::MaximumPacketSize(size));
    }
    // mosquitto's rule: max_inflight_messages is also the Receive Maximum of 5.0 clients.
    if let Some(receive_maximum) = broker_receive_maximum(connect.protocol_version, config) {
        properties.push(Property::ReceiveMaximum(receive_maximum));
    }
    if config.max_qos(listener) < 2 {
        properties.push(Property::MaximumQoS(config.max_qos(listener)));
    }
    if connect.properties.request_response_information() == Some(1) {
        let information = format!("{}{}", config.response_information, admitted.client_id);
        properties.push(Property::ResponseInformation(ByteStr::from(information)));
    }
    properties
}

/// The properties of a refusing 5.0 CONNACK besides its Reason String: as mosquitto's,
/// Maximum QoS when the listener's max_qos is below 2 (the other limits only accompany
/// a success).
fn refusal_properties(config: &crate::Config, listener: usize) -> Vec<Property> {
    let max_qos = config.max_qos(listener);
    (max_qos < 2)
        .then_some(Property::MaximumQoS(max_qos))
        .into_iter()
        .collect()
}

/// The Receive Maximum the broker enforces on a 5.0 client: max_inflight_messages, when
/// it is set.
fn broker_receive_maximum(version: ProtocolVersion, config: &crate::Config) -> Option<u16> {
    let limit = u16::try_from(config.max_inflight_messages).unwrap_or(u16::MAX);
    (version.is_v5() && limit != 0).then_some(limit)
}

/// The connection's state once CONNACK has been sent.
fn connection(
    connect: Connect,
    admitted: Admitted,
    (peer, session, generation, info): (SocketAddr, Arc<Session>, u64, Arc<crate::admin::ConnectionInfo>),
    broker: &Arc<BrokerState>,
    (acl_enforced, listener): (bool, usize),
) -> Connection {
    let config = broker.config();
    let version = connect.protocol_version;
    let receive_maximum = connect.properties.receive_maximum().map_or(usize::MAX, usize::from);
    let window = match config.max_inflight_messages {
        0 => receive_maximum,
        n => n.min(receive_maximum),
    };
    let keep_alive = admitted.keep_alive;
    let policy = admitted.policy;
    let topic_map = match &policy {
        Some(policy) => policy.delivery_map(),
        None => mount_point(&config, listener).cloned(),
    };
    Connection {
        broker: broker.clone(),
        peer,
        version,
        session,
        generation,
        keep_alive_limit: (keep_alive > 0).then(|| Duration::from_millis(u64::from(keep_alive) * 1500)),
        will: connect.will.and_then(|mut will| {
            // Copies, for the same reason as the client id; under the broker's name for
            // the topic (which connect_refusal checked).
            will.topic = match (&policy, &topic_map) {
                (Some(policy), _) => {
                    // A will outside the client's space is dropped (logged); its retain
                    // flag is ignored where the policy ignores retain.
                    let mapped = policy.publish_topic(&will.topic);
                    if let Err(why) = &mapped {
                        tracing::info!(client = %admitted.client_id, "will on {:?} dropped: {why}", will.topic.as_str());
                    }
                    will.retain &= !policy.ignores_retain();
                    mapped.ok()?
                }
                (None, Some(map)) => map.to_broker_topic(&will.topic).ok()?,
                (None, None) => ByteStr::from(will.topic.as_str()),
            };
            if policy.is_none() && broker.is_reserved(&will.topic) {
                tracing::info!(client = %admitted.client_id, "will on {:?} dropped: the topic belongs to the clients of platform listeners", will.topic.as_str());
                return None;
            }
            will.payload = bytes::Bytes::copy_from_slice(&will.payload);
            Some(Box::new(will))
        }),
        out: BytesMut::new(),
        topic_aliases: None,
        outgoing_aliases: connect
            .properties
            .topic_alias_maximum()
            .filter(|max| *max > 0 && version.is_v5())
            .map(|max| Box::new(super::OutgoingAliases::new(max))),
        topic_map,
        policy,
        inflight_window: window,
        client_max_packet_size: connect
            .properties
            .maximum_packet_size()
            .map_or(usize::MAX, |m| m as usize),
        receive_maximum: broker_receive_maximum(version, &config).unwrap_or(0),
        message_size_limit: config.message_size_limit,
        publish_rules: (config.max_qos(listener), config.retain_available),
        topic_limits: (config.max_topic_levels, config.max_topic_length),
        problem_information: connect.properties.request_problem_information() != Some(0),
        user: admitted.user,
        auth: admitted.auth.map(|(auth, _)| auth),
        acl_enforced,
        hold: 0,
        cluster_track: broker.router.cluster().map(|_| Default::default()),
        cluster_unsettled_qos2: Vec::new(),
        cluster_held_routes: Vec::new(),
        cluster_held_bytes: 0,
        counters: Default::default(),
        listener,
        client: None,
        info,
    }
}
