//! Listener policies (the "Authenticate", "Authorize" and "Topic mapping" seams of the
//! design, together): what decides, for the clients of a listener in platform mode
//! (`platform true`), who they are, which topics they may use and what those topics are
//! called inside the broker, in place of the password file, the ACL and `mount_point`.
//!
//! The broker knows nothing of what a policy implements (the IoT platform of
//! `tern-platform` is the one there is). An embedder installs one [`ListenerPolicy`] with
//! [`crate::BrokerHandle::set_listener_policy`]; at CONNECT it turns the client's
//! credentials into a [`ClientPolicy`] or a refusal, and the connection then asks the
//! client policy for the broker's name of every topic it publishes and filter it
//! subscribes to. On the way out the connection uses the [`TopicMap`] the client policy
//! gives (a prefix replaced), as mosquitto's mount point does, so a delivery costs one
//! copy of the frame and no call into the policy, unless the policy asks to see
//! deliveries ([`ClientPolicy::delivery_filter`]).
//!
//! Connections of other listeners hold no policy: their paths are unchanged and pay one
//! `Option` check where a policy could apply.

use crate::topic_map::TopicMap;
use std::net::SocketAddr;
use std::sync::Arc;
use tern_proto::{ByteStr, ProtocolVersion, Publish, ReasonCode};

/// How the log line (and the disconnected event's detail) of a connection closed for a
/// payload over [`ClientPolicy::max_payload`] begins.
pub const MESSAGE_TOO_LARGE: &str = "message size is too large";

/// How the owner of a session of a policy's client begins (then its user name): a NUL,
/// which no MQTT user name has, so that no client of another listener can own it.
pub const OWNER_PREFIX: &str = "\0policy:";

/// What a CONNECT says, for a policy to decide on.
#[derive(Debug, Clone)]
pub struct ConnectRequest {
    pub client_id: String,
    pub username: Option<String>,
    pub password: Option<Vec<u8>>,
    pub peer: SocketAddr,
    /// The index of the listener in the configuration.
    pub listener: usize,
    /// Whether the connection is TLS.
    pub secure: bool,
    /// The TLS Server Name Indication the client sent, if any.
    pub server_name: Option<String>,
    pub protocol: ProtocolVersion,
}

/// Why a policy refuses a CONNECT; each is answered with the code clients expect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefusalKind {
    /// 3.1.1: 2; 5.0: 0x85.
    BadClientId,
    /// 3.1.1: 4; 5.0: 0x86.
    BadCredentials,
    /// 3.1.1: 5; 5.0: 0x87.
    NotAuthorized,
    /// 3.1.1: 3; 5.0: 0x88 (the policy cannot answer now).
    Unavailable,
    /// 3.1.1: 3; 5.0: 0x97 (a quota, e.g. connections at once, is full).
    QuotaExceeded,
    /// 3.1.1: 3; 5.0: 0x9F (connections come too fast).
    ConnectionRate,
}

impl RefusalKind {
    /// The CONNACK reason code (the codec writes the 3.1.1 return code for it).
    pub fn reason_code(self) -> ReasonCode {
        match self {
            RefusalKind::BadClientId => ReasonCode::CLIENT_IDENTIFIER_NOT_VALID,
            RefusalKind::BadCredentials => ReasonCode::BAD_USER_NAME_OR_PASSWORD,
            RefusalKind::NotAuthorized => ReasonCode::NOT_AUTHORIZED,
            RefusalKind::Unavailable => ReasonCode::SERVER_UNAVAILABLE,
            RefusalKind::QuotaExceeded => ReasonCode::QUOTA_EXCEEDED,
            RefusalKind::ConnectionRate => ReasonCode::CONNECTION_RATE_EXCEEDED,
        }
    }
}

/// A refused CONNECT: how to answer, and why (for the log and a 5.0 Reason String).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{why}")]
pub struct PolicyRefusal {
    pub kind: RefusalKind,
    pub why: String,
}

/// Decides who the clients of a listener in platform mode are.
pub trait ListenerPolicy: Send + Sync + std::fmt::Debug {
    /// Checks a CONNECT: the client's policy, or why it is refused. Runs on a blocking
    /// thread (it may hash a password), never on the publish path.
    fn authenticate(&self, request: &ConnectRequest) -> Result<Arc<dyn ClientPolicy>, PolicyRefusal>;

    /// The root of the broker topics the policy's clients live under (it must start
    /// with `$`), if any. Clients of other listeners may not publish, subscribe or leave
    /// a will there, so that nothing from outside the policy reaches its clients.
    fn reserved_root(&self) -> Option<&str> {
        None
    }
}

/// Decides, per message, whether a session may receive it.
pub trait DeliveryFilter: Send + Sync + std::fmt::Debug {
    /// Whether a message on the broker topic `topic` may be delivered.
    fn may_receive(&self, topic: &str) -> bool;
}

/// What one connected client may do, and the names its topics have in the broker. The
/// connection holds it while it lasts and drops it when it ends.
pub trait ClientPolicy: Send + Sync + std::fmt::Debug {
    /// The user name the session belongs to and events carry.
    fn user(&self) -> Option<&str>;

    /// The broker's name of a topic the client publishes to (its will included), or why
    /// it may not. A refused PUBLISH is acknowledged with 0x87 (5.0) or dropped and
    /// counted (3.x).
    fn publish_topic(&self, topic: &str) -> Result<ByteStr, &'static str>;

    /// The broker's name of a filter the client subscribes to (it may be a
    /// `$share/...` filter), or why it may not (SUBACK 0x87, or 0x80 for 3.x).
    fn subscribe_filter(&self, filter: &str) -> Result<ByteStr, &'static str>;

    /// The mapping deliveries are written through; `None` writes them as routed.
    fn delivery_map(&self) -> Option<TopicMap>;

    /// A check of each delivery to the client's session, kept in the session (and asked
    /// where the ACL is) for as long as the session lives; `None` for most clients, whose
    /// subscriptions bound what they receive.
    fn delivery_filter(&self) -> Option<Arc<dyn DeliveryFilter>> {
        None
    }

    /// Whether the client's retain flags are ignored (its messages are never retained).
    fn ignores_retain(&self) -> bool {
        false
    }

    /// The largest payload the client may publish; a larger one ends the connection.
    fn max_payload(&self) -> Option<usize> {
        None
    }

    /// Offered each accepted PUBLISH (under its broker name) before it is routed: a
    /// message addressed to the service behind the policy rather than to subscribers (the
    /// IoT platform's device management requests) is taken, and then neither retained nor
    /// routed; the publisher is acknowledged as for a routed message. True when taken.
    fn take_publish(&self, _publish: &Publish) -> bool {
        false
    }

    /// Asked once per PUBLISH (with its topic as the client sent it): whether it goes
    /// over the client's message rate. Such a PUBLISH is refused (5.0: 0x97 Quota
    /// exceeded) or, for 3.x, acknowledged and dropped.
    fn over_rate(&self, _topic: &str) -> bool {
        false
    }

    /// The client id the broker keeps the client's session under, when it is not the one
    /// the client sent (so that several connections with one client id share the load
    /// instead of taking each other over).
    fn session_client_id(&self) -> Option<String> {
        None
    }

    /// Whether the client's session ends with its connection, whatever Clean Start and
    /// Session Expiry Interval it asked for.
    fn forces_clean_session(&self) -> bool {
        false
    }

    /// The most subscriptions the client may hold, in place of
    /// `max_subscriptions_per_client`.
    fn max_subscriptions(&self) -> Option<usize> {
        None
    }
}

/// Asks the listener policy about a CONNECT (on a blocking thread: it may hash a token).
/// Refused credentials are answered after `auth_failure_delay`, as password failures are.
pub(crate) async fn admit(
    connect: &tern_proto::Connect,
    broker: &crate::BrokerState,
    policy: Arc<dyn ListenerPolicy>,
    (listener, peer): (usize, SocketAddr),
    socket: &mut crate::connection::transport::Socket,
) -> Result<Arc<dyn ClientPolicy>, (ReasonCode, String)> {
    let tls = socket.tls_session();
    let request = ConnectRequest {
        client_id: connect.client_id.to_string(),
        username: connect.username.as_deref().map(String::from),
        password: connect.password.as_deref().map(<[u8]>::to_vec),
        peer,
        listener,
        secure: tls.is_some(),
        server_name: tls.and_then(|t| t.server_name()).map(String::from),
        protocol: connect.protocol_version,
    };
    let outcome = tokio::task::spawn_blocking(move || policy.authenticate(&request)).await;
    let refusal = match outcome {
        Ok(Ok(client)) => return Ok(client),
        Ok(Err(refusal)) => refusal,
        Err(e) => {
            tracing::error!("the listener policy failed: {e}");
            return Err((ReasonCode::SERVER_UNAVAILABLE, "the platform failed".into()));
        }
    };
    if matches!(refusal.kind, RefusalKind::BadCredentials | RefusalKind::NotAuthorized) {
        broker
            .metrics
            .auth_failures
            .add(crate::metrics::AuthFailure::BadCredentials);
        tokio::time::sleep(broker.config().auth_failure_delay).await;
    }
    Err((refusal.kind.reason_code(), refusal.why))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_are_answered_with_the_codes_clients_expect() {
        for (kind, v5, v3) in [
            (RefusalKind::BadClientId, 0x85, 2),
            (RefusalKind::BadCredentials, 0x86, 4),
            (RefusalKind::NotAuthorized, 0x87, 5),
            (RefusalKind::Unavailable, 0x88, 3),
            (RefusalKind::QuotaExceeded, 0x97, 3),
            (RefusalKind::ConnectionRate, 0x9F, 3),
        ] {
            assert_eq!(kind.reason_code().0, v5);
            assert_eq!(kind.reason_code().to_connect_return_code(), v3);
        }
    }
}
