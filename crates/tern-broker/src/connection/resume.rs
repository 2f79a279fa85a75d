//! A persistent session across the nodes of a cluster, as CONNECT sees it: before
//! CONNACK the cluster engine says whether the client id's session lives on elsewhere
//! (made on another node, or on a node that died), and the session is then made here
//! from what the engine holds (its subscriptions; its queued messages come from the
//! engine afterwards). Once attached, a persistent session is handed to the engine,
//! which feeds it its QoS 1/2 messages from then on.

use crate::broker::BrokerState;
use crate::cluster::{Resume, SessionSnapshot};
use crate::session::{Delivery, Session};
use std::sync::Arc;
use std::time::Duration;

/// Longest CONNECT waits for the cluster's answer.
const RESUME_WAIT: Duration = Duration::from_secs(6);

/// What CONNECT does with the session: start clean (`true`: a clean start, or this
/// node's copy is stale), and the session to make from the cluster's snapshot. `Err`
/// names why the cluster cannot answer now (the connection is refused).
pub(super) async fn ask_cluster(
    broker: &BrokerState,
    client_id: &str,
    clean_start: bool,
) -> Result<(bool, Option<SessionSnapshot>), String> {
    let Some(cluster) = broker.router.cluster() else {
        return Ok((clean_start, None));
    };
    match tokio::time::timeout(RESUME_WAIT, cluster.resume_session(client_id, clean_start)).await {
        Ok(Resume::Local) => Ok((clean_start, None)),
        Ok(Resume::Fresh) => Ok((true, None)),
        Ok(Resume::Remote(snapshot)) => Ok((true, Some(snapshot))),
        Ok(Resume::Unavailable(why)) => Err(why),
        Err(_) => Err("the cluster did not say in time where the session is".to_string()),
    }
}

/// Makes the new `session` the one the cluster held, if it held one (`snapshot`), and hands
/// a persistent session to the engine; returns whether the session was the cluster's.
pub(super) fn attach(broker: &BrokerState, session: &Arc<Session>, snapshot: Option<SessionSnapshot>) -> bool {
    let resumed = snapshot.is_some();
    if let Some(snapshot) = snapshot {
        restore(broker, session, snapshot);
    }
    feed(broker, session);
    resumed
}

/// Gives the new `session` the subscriptions the cluster held (no retained messages are
/// sent for them: they are not new), and the messages the node it left had in flight,
/// under their packet ids and at their stage (resent once the client is connected).
fn restore(broker: &BrokerState, session: &Arc<Session>, snapshot: SessionSnapshot) {
    for (filter, options, identifier) in snapshot.subscriptions {
        broker.router.subscribe(session, &filter, options, identifier);
        session.state.lock().subscriptions.insert(filter, (options, identifier));
    }
    let now = crate::clock::now();
    let mut state = session.state.lock();
    state.incoming_qos2.extend(snapshot.incoming_qos2);
    for message in snapshot.inflight {
        let Some((frame, _)) = crate::restore::frame_of_stored(&message.frame, message.v5) else {
            tracing::warn!(client = %session.client_id, "cluster: a message in flight handed over from another node did not decode: dropped");
            continue;
        };
        let expires_at = message.expires_in.map(|left| now + left);
        if let Some(at) = expires_at {
            session.schedule_purge(&mut state, at);
        }
        let delivery = Delivery {
            frame,
            v5: message.v5,
            expires_at,
            shared: None,
            seq: match message.seq {
                0 => 0,
                seq => seq | crate::session::CLUSTER_SEQ,
            },
        };
        state
            .outbox
            .restore_inflight(message.packet_id, message.stage, delivery);
    }
}

/// Hands a persistent session to the cluster engine, which feeds its QoS 1/2 messages.
fn feed(broker: &BrokerState, session: &Arc<Session>) {
    let Some(cluster) = broker.router.cluster() else { return };
    if session.state.lock().clean || !cluster.feeds_sessions() {
        return;
    }
    let _ = session.cluster_feed.set(cluster.clone());
    cluster.session_attached(&session.client_id, session.id);
}
