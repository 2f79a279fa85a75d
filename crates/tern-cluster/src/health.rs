//! Whether this node can store QoS 1/2 messages in the cluster now, and the JetStream
//! objects the cluster uses.
//!
//! Availability goes down at once when the NATS connection drops or a JetStream publish
//! fails (or after two heartbeats in a row fail), and comes back only when a heartbeat (a write to the node's key in the
//! `MQTT_NODES` bucket, replicated like the messages) is stored again. Until the stream
//! and buckets exist (created by the first node that reaches JetStream, with the same
//! settings by every node), the node is unavailable too.

use crate::link::Shared;
use crate::{Settings, NODES_BUCKET, RETAIN_BUCKET, SESSIONS_BUCKET, STREAM};
use async_nats::jetstream::{self, kv, stream};
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

/// How often a node writes its heartbeat (and so, at worst, how long JetStream's return
/// goes unnoticed).
const HEARTBEAT: Duration = Duration::from_secs(1);
/// A heartbeat not stored within this is a failure.
const HEARTBEAT_TIMEOUT: Duration = Duration::from_secs(3);
/// Consecutive failed heartbeats that make the node refuse QoS 1/2 publishes.
const FAILED_HEARTBEATS: u32 = 2;
/// How long a node's heartbeat key lives without being written again.
const NODE_TTL: Duration = Duration::from_secs(30);
/// How long a client id's claim is kept (a connection only needs it while a newer one
/// may come elsewhere; an expired claim only means nothing is known of that client id).
const CLAIM_AGE: Duration = Duration::from_secs(24 * 3600);
/// How long QoS 1/2 messages are kept in the stream (nothing replays them yet).
const MESSAGE_AGE: Duration = Duration::from_secs(3600);
/// Most bytes the stream keeps (oldest messages go first).
const STREAM_BYTES: i64 = 1 << 30;
/// Most consumers on the message stream: one per persistent session with QoS 1/2
/// subscriptions. Set explicitly: NATS 2.15 gives a stream without its own limit 1,000,
/// which refused the 1,000th persistent session of a cluster.
const MAX_CONSUMERS: i32 = 1_000_000;

/// The buckets a running node uses.
pub struct Buckets {
    pub retained: kv::Store,
    pub nodes: kv::Store,
    pub sessions: kv::Store,
}

/// Reacts to the NATS connection's events.
pub fn on_event(shared: &Shared, event: async_nats::Event) {
    match event {
        async_nats::Event::Disconnected => {
            shared.gap.disconnected();
            if shared.available.swap(false, Relaxed) {
                tracing::warn!(
                    "cluster: disconnected from NATS: QoS 1/2 publishes are refused until JetStream answers again"
                );
            } else {
                tracing::warn!("cluster: disconnected from NATS");
            }
        }
        async_nats::Event::Connected => {
            shared.gap.connected();
            tracing::info!("cluster: connected to NATS");
        }
        other => tracing::info!("cluster: NATS: {other}"),
    }
}

/// Creates (or finds) the stream and buckets, retrying until JetStream answers.
pub async fn set_up(js: &jetstream::Context, settings: &Settings, shared: &Shared) -> Buckets {
    let replicas = settings.replicas();
    let mut attempts = 0u32;
    loop {
        match try_set_up(js, replicas).await {
            Ok(buckets) => {
                tracing::info!(
                    "cluster: node {} joined: JetStream ready (stream {STREAM}, {replicas} replicas)",
                    shared.node
                );
                return buckets;
            }
            Err(e) => {
                attempts += 1;
                if attempts.is_power_of_two() {
                    tracing::warn!("cluster: JetStream not ready ({e}); trying again ({attempts} attempts)");
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
}

async fn try_set_up(js: &jetstream::Context, replicas: usize) -> Result<Buckets, async_nats::Error> {
    let messages = js
        .get_or_create_stream(stream::Config {
            name: STREAM.to_string(),
            subjects: vec![
                format!("{}.>", crate::subject::ROOT),
                format!("{}.>", crate::subject::DOLLAR_ROOT),
            ],
            storage: stream::StorageType::File,
            num_replicas: replicas,
            max_age: MESSAGE_AGE,
            max_bytes: STREAM_BYTES,
            max_consumers: MAX_CONSUMERS,
            discard: stream::DiscardPolicy::Old,
            ..Default::default()
        })
        .await?;
    // A stream made by an earlier version has the server's default limit: raised.
    let config = messages.cached_info().config.clone();
    if config.max_consumers != MAX_CONSUMERS {
        let wanted = stream::Config {
            max_consumers: MAX_CONSUMERS,
            ..config
        };
        if let Err(e) = js.update_stream(wanted).await {
            tracing::warn!("cluster: the message stream keeps its limit of consumers (persistent sessions): {e}");
        }
    }
    let retained = bucket(js, RETAIN_BUCKET, replicas, Duration::ZERO).await?;
    let nodes = bucket(js, NODES_BUCKET, replicas, NODE_TTL).await?;
    let sessions = bucket(js, SESSIONS_BUCKET, replicas, CLAIM_AGE).await?;
    Ok(Buckets {
        retained,
        nodes,
        sessions,
    })
}

/// Opens the key-value bucket `name`, or makes it (one value a key, on file, `replicas`
/// copies, values older than `max_age` dropped; zero keeps them).
pub(crate) async fn bucket(
    js: &jetstream::Context,
    name: &str,
    replicas: usize,
    max_age: Duration,
) -> Result<kv::Store, async_nats::Error> {
    if let Ok(store) = js.get_key_value(name).await {
        return Ok(store);
    }
    Ok(js
        .create_key_value(kv::Config {
            bucket: name.to_string(),
            history: 1,
            storage: stream::StorageType::File,
            num_replicas: replicas,
            max_age,
            ..Default::default()
        })
        .await?)
}

/// Writes this node's heartbeat every second and asks whether the message stream has a
/// leader; each outcome sets the availability (both must answer: the bucket and the
/// stream are separate replica groups, and after an outage they elect leaders apart).
pub async fn heartbeat(
    js: jetstream::Context,
    nodes: kv::Store,
    shared: std::sync::Arc<Shared>,
    view: std::sync::Arc<crate::view::Nodes>,
) {
    let mut tick = tokio::time::interval(HEARTBEAT);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failures = 0u32;
    loop {
        tick.tick().await;
        // The node's origin and figures (crate::view).
        let value = view.heartbeat_value();
        let probe = async {
            nodes.put(&*shared.node, value).await.map_err(|e| e.to_string())?;
            let stream = js.get_stream(STREAM).await.map_err(|e| e.to_string())?;
            let info = stream.cached_info();
            match &info.cluster {
                Some(cluster) if cluster.leader.is_none() => Err(format!("stream {STREAM} has no leader")),
                _ => Ok(()),
            }
        };
        let failure = match tokio::time::timeout(HEARTBEAT_TIMEOUT, probe).await {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(e),
            Err(_) => Some("no answer in time".to_string()),
        };
        match failure {
            None => {
                failures = 0;
                view.beat_stored();
                // A probe answered just before the connection dropped does not undo
                // the refusal the disconnection set.
                let connected = js.client().connection_state() == async_nats::connection::State::Connected;
                if connected && !shared.available.swap(true, Relaxed) {
                    tracing::info!("cluster: JetStream available: QoS 1/2 publishes are accepted");
                }
            }
            // One failed heartbeat alone (a replica group electing a leader after a
            // server left) does not refuse publishes: the connection's loss and failed
            // writes do, at once.
            Some(e) => {
                failures += 1;
                if failures >= FAILED_HEARTBEATS {
                    unavailable(&shared, &e);
                }
            }
        }
    }
}

fn unavailable(shared: &Shared, why: &str) {
    if shared.available.swap(false, Relaxed) {
        tracing::warn!("cluster: JetStream unavailable ({why}): QoS 1/2 publishes are refused until it answers");
    }
}
