//! The session side of CONNECT: how long the session outlives the connection (Clean
//! Start / Session Expiry Interval), finding or creating the client id's session and
//! taking it over from a live connection [MQTT-3.1.4-2], and leaving it as a disconnect
//! would when the client is gone before its CONNACK. The handshake (handshake.rs) checks
//! CONNECT and answers it; this module only attaches the connection to its session.

use crate::broker::BrokerState;
use crate::session::{ConnectionHandle, Session};
use std::sync::Arc;
use std::time::Duration;
use tern_proto::{ByteStr, Connect};
use tokio::sync::oneshot;

/// Whether the session ends with the connection, and how long it outlives it otherwise.
#[derive(Debug, Clone, Copy)]
pub(super) struct Lifetime {
    ends_with_connection: bool,
    expiry: Option<Duration>,
}

/// 3.x: Clean Session decides, persistent sessions live persistent_client_expiration.
/// 5.0: the Session Expiry Interval decides (absent or 0: the session ends with the
/// connection; 0xFFFFFFFF: never expires) [MQTT-3.1.2-23].
pub(super) fn session_lifetime(connect: &Connect, config: &crate::Config) -> Lifetime {
    if !connect.protocol_version.is_v5() {
        return Lifetime {
            ends_with_connection: connect.clean_start,
            expiry: config.persistent_client_expiration,
        };
    }
    match connect.properties.session_expiry_interval().unwrap_or(0) {
        0 => Lifetime {
            ends_with_connection: true,
            expiry: None,
        },
        u32::MAX => Lifetime {
            ends_with_connection: false,
            expiry: None,
        },
        seconds => Lifetime {
            ends_with_connection: false,
            expiry: Some(Duration::from_secs(u64::from(seconds))),
        },
    }
}

/// Finds or creates the session for `client_id`, taking it over from a live connection
/// first [MQTT-3.1.4-2]. Returns the session and whether it was resumed.
pub(super) async fn attach_session(
    broker: &BrokerState,
    (client_id, user): (&ByteStr, Option<&str>),
    clean_start: bool,
    lifetime: Lifetime,
    handle: ConnectionHandle,
) -> Option<(Arc<Session>, bool)> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let mut handle = Some(handle);
    while tokio::time::Instant::now() < deadline {
        let live = broker.sessions.with(|map| {
            let existing = map.get(client_id).cloned();
            if let Some(session) = &existing {
                let mut state = session.state.lock();
                if let Some(current) = &mut state.connection {
                    return Err(current.takeover.take());
                }
                // A session belongs to the identity that made it: another user with the
                // same client id starts afresh and never sees its messages (mosquitto's rule).
                let same_owner = state.owner.as_deref() == user;
                if !same_owner {
                    tracing::info!(client = %client_id, "session of user {:?} discarded: the client id now connects as user {:?}", state.owner.as_deref().unwrap_or(""), user.unwrap_or(""));
                }
                if !clean_start && same_owner {
                    state.connection = handle.take();
                    // A reconnect within the Will Delay Interval cancels the will.
                    state.pending_will = None;
                    state.clean = lifetime.ends_with_connection;
                    state.expiry = lifetime.expiry;
                    state.disconnected_at = None;
                    drop(state);
                    return Ok((session.clone(), true, None));
                }
            }
            let fresh = broker.sessions.create(
                client_id.clone(),
                broker.config().outbox_limits(),
                lifetime.ends_with_connection,
            );
            {
                let mut state = fresh.state.lock();
                state.connection = handle.take();
                state.expiry = lifetime.expiry;
                state.owner = user.map(Box::from);
            }
            map.insert(client_id.clone(), fresh.clone());
            Ok((fresh, false, existing))
        });
        match live {
            Ok((session, present, discarded)) => {
                if let Some(old) = discarded {
                    // A clean start ends the session it replaces.
                    broker.end_session(&old);
                }
                return Some((session, present));
            }
            Err(takeover) => {
                let answered = match takeover {
                    Some(takeover) => {
                        let (done_tx, done_rx) = oneshot::channel();
                        takeover.send(done_tx).is_ok()
                            && tokio::time::timeout_at(deadline, done_rx)
                                .await
                                .is_ok_and(|r| r.is_ok())
                    }
                    // Another newcomer is already taking it over: wait for the outcome.
                    None => false,
                };
                if !answered {
                    // The old connection is already closing: give it a moment to detach.
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
        }
    }
    tracing::warn!(client = %client_id, "could not take over the session within 5 s");
    None
}

/// A client gone before its CONNACK could be written: the session is left as a
/// disconnect would leave it.
pub(super) fn gone_before_connack(broker: &BrokerState, session: &Arc<Session>) {
    let ends = broker.sessions.with(|map| {
        let mut state = session.state.lock();
        state.connection = None;
        state.disconnected_at = Some(crate::clock::now());
        if state.clean && map.get(&session.client_id).is_some_and(|s| s.id == session.id) {
            map.remove(&session.client_id);
        }
        state.clean
    });
    if ends {
        broker.end_session(session);
    }
}
