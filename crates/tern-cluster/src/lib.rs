//! Tern brokers as one cluster on NATS JetStream.
//!
//! Each `tern broker` node with `cluster_nats_urls` and `cluster_node_name` connects to
//! the NATS servers (one connection, `no_echo`: it never receives its own messages) and
//! plugs into the broker through its cluster seam (`tern_broker::cluster`):
//! - every message accepted on the node is sent to NATS under the subject of its topic
//!   ([`subject`]), QoS 0 as a plain publish under subjects no stream stores, QoS 1/2 as
//!   a JetStream publish into the `MQTT_MSGS` stream (replicated on three servers when three or more are listed), and
//!   the publisher's PUBACK / PUBREC waits for JetStream's acknowledgement
//!   ([`outbound`]);
//! - the node subscribes in NATS only to the subjects of its clients' filters, one
//!   subscription per distinct filter and class (QoS 0, QoS 1/2), and routes what arrives to its local subscribers
//!   once ([`inbound`]);
//! - retained messages are also kept in the `MQTT_RETAIN` key-value bucket, which every
//!   node watches into its own retained store ([`retained`]);
//! - a client id connected on two nodes ends with the newer connection: each connection
//!   claims its client id in the `MQTT_SESS` bucket, and the node whose claim is beaten
//!   closes its connection (5.0: 0x8E) ([`takeover`]);
//! - a heartbeat in the `MQTT_NODES` bucket tells whether JetStream answers; while it
//!   does not (or NATS is out of reach), QoS 1/2 publishes are refused and QoS 0 keeps
//!   flowing between this node's clients ([`health`]);
//! - the heartbeats carry each node's figures and tell which nodes are alive ([`view`]);
//! - wills are kept in the `MQTT_WILLS` bucket, and the survivors publish those of a node
//!   that died, once ([`wills`]);
//! - shared subscriptions balance across the nodes: QoS 0 through NATS queue groups
//!   ([`shared`]), QoS 1/2 from one durable consumer per group on the stream, acknowledged
//!   as a member acknowledges them and handed to another node's member if its node dies
//!   ([`shared_feed`], the groups' members per node in the `MQTT_SHARES` bucket);
//! - a persistent session is resumed on whichever node its client reconnects to: its
//!   record in the `MQTT_SESSIONS` bucket, and a durable consumer on the stream that feeds
//!   it its QoS 1/2 messages, acknowledged as the client acknowledges them ([`sessions`],
//!   [`feed`]);
//! - the IoT platform's registry files are mirrored in the `PLATFORM_REGISTRY` bucket
//!   ([`platform`]).

mod connect;
mod feed;
mod handover;
mod health;
mod inbound;
mod link;
mod metrics;
mod outbound;
pub mod platform;
mod retained;
mod session_record;
mod sessions;
mod shared;
mod shared_feed;
pub mod subject;
mod takeover;
mod view;
mod wills;
pub mod wire;

use link::{NatsLink, Shared};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;
use tern_broker::BrokerHandle;
use tokio::sync::mpsc;

/// The JetStream stream of QoS 1/2 messages.
pub const STREAM: &str = "MQTT_MSGS";
/// The key-value bucket of retained messages.
pub const RETAIN_BUCKET: &str = "MQTT_RETAIN";
/// The key-value bucket of client ids' claims (which node holds a client id's newest
/// connection).
pub const SESSIONS_BUCKET: &str = "MQTT_SESS";
/// The key-value bucket of node heartbeats.
pub const NODES_BUCKET: &str = "MQTT_NODES";
/// The key-value bucket of the wills of connected clients (and of those held for their
/// delay), for the other nodes to publish if their node dies.
pub const WILLS_BUCKET: &str = "MQTT_WILLS";

/// What a node needs to join the cluster (the broker's `cluster_*` directives).
#[derive(Debug, Clone)]
pub struct Settings {
    /// The NATS servers (`nats://` or `tls://` URLs).
    pub urls: Vec<String>,
    /// This node's name, unique in the cluster.
    pub node: String,
    /// How long a node may go without a heartbeat before the others take it for dead
    /// (`cluster_node_timeout`).
    pub node_timeout: Duration,
    /// The NATS connection's TLS and nkey files (`cluster_nats_cafile` and the others).
    pub auth: tern_broker::config::NatsAuth,
}

impl Settings {
    /// JetStream replicas for the stream and buckets: three when three or more NATS
    /// servers are listed (a quorum of two survives one server), else one.
    pub fn replicas(&self) -> usize {
        if self.urls.len() >= 3 {
            3
        } else {
            1
        }
    }
}

/// Why a node could not join.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("cluster_nats_urls: {0}")]
    Urls(String),
    #[error("cannot install the cluster link: {0}")]
    Install(String),
    #[error("{directive} {path}: {why}")]
    File {
        directive: &'static str,
        path: String,
        why: String,
    },
}

/// Reads and checks the NATS connection's files (`cluster_nats_cafile` and the others):
/// call before anything else starts, so that a bad one stops the start at once.
pub fn check(settings: &Settings) -> Result<(), ClusterError> {
    connect::options(settings, "").map(|_| ())
}

/// Makes the broker of `handle` a node of the cluster: connects to NATS (in the
/// background, retrying: a node whose NATS servers are down starts, refusing QoS 1/2
/// until they answer) and installs the link. Call before the broker runs.
pub async fn start(handle: &BrokerHandle, settings: Settings) -> Result<(), ClusterError> {
    let incarnation = {
        let mut bytes = [0u8; 4];
        let _ = getrandom::getrandom(&mut bytes);
        u32::from_be_bytes(bytes)
    };
    let shared = Arc::new(Shared {
        node: Arc::from(settings.node.as_str()),
        origin: Arc::from(format!("{}:{incarnation:08x}", settings.node)),
        available: AtomicBool::new(false),
        not_forwarded: AtomicU64::new(0),
        dropped_inbound: AtomicU64::new(0),
        sessions: Default::default(),
        gap: Default::default(),
    });
    let events = shared.clone();
    let options = connect::options(&settings, "")?.no_echo().event_callback(move |event| {
        let shared = events.clone();
        async move { health::on_event(&shared, event) }
    });
    let client = options
        .connect(settings.urls.as_slice())
        .await
        .map_err(|e| ClusterError::Urls(e.to_string()))?;
    let js = async_nats::jetstream::ContextBuilder::new()
        .timeout(Duration::from_secs(5))
        .max_ack_inflight(outbound::QUEUE)
        .backpressure_on_inflight(true)
        .build(client.clone());
    let (out_tx, out_rx) = mpsc::channel(outbound::QUEUE);
    let (interest_tx, interest_rx) = mpsc::unbounded_channel();
    let (share_tx, share_rx) = mpsc::unbounded_channel();
    let (wills_tx, wills_rx) = mpsc::channel(wills::QUEUE);
    let shares = shared::Shares::new(share_tx);
    let share_client = share_connection(&settings, shares.connected.clone()).await?;
    let unplaced = shares.unplaced.clone();
    let durable = shares.durable.clone();
    let feed_unplaced = (unplaced.clone(), durable.clone());
    let view = Arc::new(view::Nodes::new(
        shared.clone(),
        handle.state().clone(),
        settings.node_timeout,
    ));
    let parts = link::Parts {
        shares,
        wills: wills_tx,
        wills_dropped: AtomicU64::new(0),
        view: view.clone(),
    };
    let link = Arc::new(NatsLink::new(shared.clone(), out_tx, interest_tx).with_parts(parts));
    // Installing reports the restored sessions' filters into the channel, read below.
    handle
        .set_cluster(link.clone())
        .map_err(|e| ClusterError::Install(e.to_string()))?;
    let figures = shared.clone();
    let will_figures = Arc::new(wills::Figures::default());
    let (rendered_view, rendered_wills) = (view.clone(), will_figures.clone());
    let renderer = move |out: &mut String| {
        metrics::render(&figures, link.filter_count(), out);
        shared::render(&figures.node, link.share_count(), unplaced.load(Relaxed), out);
        wills::render(&figures.node, &rendered_wills, out);
        rendered_view.render(out);
    };
    handle.state().metrics.extra.add(Box::new(renderer));
    let state = handle.state().clone();
    let connections = takeover::subscribe(&state);
    let sessions = Arc::new(sessions::Engine::new(
        shared.clone(),
        state.clone(),
        client.clone(),
        view.clone(),
    ));
    tokio::spawn(handover::serve(sessions.clone(), client.clone()));
    let _ = shared.sessions.set(sessions.clone());
    let (sessions_js, replicas) = (js.clone(), settings.replicas());
    let (members_js, members_view) = (js.clone(), view.clone());
    let swept = shared.clone();
    tokio::spawn(async move {
        durable.open_members(&members_js, replicas, members_view).await;
        shared_feed::sweep_dead_nodes(durable, swept).await;
    });
    tokio::spawn(async move { sessions.set_up(&sessions_js, replicas).await });
    tokio::spawn(outbound::run(client.clone(), js.clone(), shared.clone(), out_rx));
    tokio::spawn(inbound::run(client.clone(), state.clone(), shared.clone(), interest_rx));
    tokio::spawn(shared::run(
        share_client,
        state.clone(),
        shared.clone(),
        feed_unplaced,
        share_rx,
    ));
    tokio::spawn(async move {
        let buckets = health::set_up(&js, &settings, &shared).await;
        tokio::spawn(retained::watch(buckets.retained, state.clone(), shared.clone()));
        tokio::spawn(view::watch(buckets.nodes.clone(), view.clone()));
        tokio::spawn(health::heartbeat(
            js.clone(),
            buckets.nodes,
            shared.clone(),
            view.clone(),
        ));
        tokio::spawn(takeover::run(
            (buckets.sessions, client.clone()),
            connections,
            state.clone(),
            shared.clone(),
        ));
        let wills_bucket = wills::open(&js, settings.replicas()).await;
        wills::run((wills_bucket, js), wills_rx, (state, shared), view, will_figures).await;
    });
    Ok(())
}

/// The second NATS connection, for the queue subscriptions of shared groups: unlike the
/// main one it receives this node's own messages (its members are served through NATS
/// like the others'). `connected` follows its state.
async fn share_connection(settings: &Settings, connected: Arc<AtomicBool>) -> Result<async_nats::Client, ClusterError> {
    connect::options(settings, "-shares")?
        .event_callback(move |event| {
            let connected = connected.clone();
            async move {
                match event {
                    async_nats::Event::Connected => connected.store(true, Relaxed),
                    async_nats::Event::Disconnected => connected.store(false, Relaxed),
                    _ => {}
                }
            }
        })
        .connect(settings.urls.as_slice())
        .await
        .map_err(|e| ClusterError::Urls(e.to_string()))
}
