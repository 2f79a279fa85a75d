//! The cluster as this node sees it, from the nodes' heartbeats in the `MQTT_NODES`
//! bucket: which nodes there are, how long ago each was last heard of, whether that is
//! within the node timeout (`cluster_node_timeout`), and the figures each heartbeat
//! carries (clients connected, messages in and out).
//!
//! Every node watches the bucket. A node is healthy while its heartbeats keep coming
//! (measured on this node's clock from the moment each one arrives, so the nodes' clocks
//! need not agree); a node whose heartbeat carries a new origin (it restarted) retires its
//! previous origin at once; a node unheard of for five timeouts has left and is no longer
//! listed. The wills of dead nodes ([`crate::wills`]) ask this view
//! whether an origin is gone. The view also feeds `$SYS/broker/cluster/...`,
//! `GET /api/v1/cluster` and the `tern_cluster_node*` metrics.

use crate::link::Shared;
use async_nats::jetstream::kv;
use futures_util::StreamExt;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::fmt::Write;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tern_broker::cluster::{ClusterView, NodeView};
use tern_broker::metrics::Metrics;
use tern_broker::BrokerState;

/// Most retired origins remembered (restarts of nodes).
const RETIRED_MAX: usize = 1024;
/// A node unheard of for this many node timeouts is no longer listed in the view.
const FORGET_AFTER: u32 = 5;
/// Longest gap between two of this node's stored heartbeats (one a second) that still
/// counts as an unbroken run of them.
const STEADY_GAP: Duration = Duration::from_millis(2500);

/// One node's last heartbeat.
#[derive(Debug, Clone)]
struct Node {
    origin: String,
    /// When it arrived here.
    seen: Instant,
    /// When it was stored (the NATS server's clock), ms since 1970.
    stored_ms: u64,
    clients: u64,
    messages_in: u64,
    messages_out: u64,
}

/// What a heartbeat says (the value of a node's key, its name).
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Beat {
    #[serde(default)]
    node: String,
    origin: String,
    #[serde(default)]
    clients: u64,
    #[serde(default)]
    messages_in: u64,
    #[serde(default)]
    messages_out: u64,
}

/// Whether an origin (a run of a node) is gone, and since when.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Liveness {
    Alive,
    /// Gone; its last heartbeat was stored at this time (ms since 1970), if known.
    Dead(Option<u64>),
}

/// The nodes this node has heard of.
#[derive(Debug)]
pub struct Nodes {
    shared: Arc<Shared>,
    state: Arc<BrokerState>,
    timeout: Duration,
    /// When the watch first delivered the bucket's contents (until then nothing is dead).
    caught_up: Mutex<Option<Instant>>,
    nodes: Mutex<HashMap<String, Node>>,
    /// Origins replaced by a newer run of their node: last heartbeat stored (ms).
    retired: Mutex<HashMap<String, u64>>,
    /// When this node's own heartbeat was last stored, and since when they have been
    /// stored without a break.
    own_beat: Mutex<Option<(Instant, Instant)>>,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl Nodes {
    pub fn new(shared: Arc<Shared>, state: Arc<BrokerState>, timeout: Duration) -> Nodes {
        Nodes {
            shared,
            state,
            timeout,
            caught_up: Mutex::new(None),
            nodes: Mutex::new(HashMap::new()),
            retired: Mutex::new(HashMap::new()),
            own_beat: Mutex::new(None),
        }
    }

    /// This node's heartbeat: its origin and figures.
    pub fn heartbeat_value(&self) -> bytes::Bytes {
        let m = &self.state.metrics;
        let beat = Beat {
            node: self.shared.node.to_string(),
            origin: self.shared.origin.to_string(),
            clients: Metrics::get(&m.clients_connected),
            messages_in: Metrics::get(&m.messages_received),
            messages_out: Metrics::get(&m.messages_sent),
        };
        serde_json::to_vec(&beat).unwrap_or_default().into()
    }

    /// This node's heartbeat was stored.
    pub fn beat_stored(&self) {
        let now = Instant::now();
        let mut own = self.own_beat.lock();
        let since = match *own {
            Some((last, since)) if last.elapsed() <= STEADY_GAP => since,
            _ => now,
        };
        *own = Some((now, since));
    }

    /// Whether this node has stored its heartbeats without a break for a whole timeout:
    /// only then does a missing heartbeat of another node say that node is gone, not that
    /// this one was cut off (the other nodes' heartbeats had the time to come in since).
    fn steady(&self) -> bool {
        self.own_beat
            .lock()
            .is_some_and(|(last, since)| last.elapsed() <= STEADY_GAP && since.elapsed() > self.timeout)
    }

    /// Applies one write of the bucket.
    fn apply(&self, entry: &kv::Entry) {
        if entry.operation != kv::Operation::Put {
            return;
        }
        let Ok(beat) = serde_json::from_slice::<Beat>(&entry.value) else {
            tracing::debug!("cluster: heartbeat of {:?} not understood", entry.key);
            return;
        };
        let stored_ms = u64::try_from(entry.created.unix_timestamp_nanos() / 1_000_000).unwrap_or(0);
        // A heartbeat stored a while ago (read at start) counts from when it was stored.
        let age = Duration::from_millis(now_ms().saturating_sub(stored_ms));
        let now = Instant::now();
        let seen = now.checked_sub(age).unwrap_or(now);
        let node = Node {
            origin: beat.origin,
            seen,
            stored_ms,
            clients: beat.clients,
            messages_in: beat.messages_in,
            messages_out: beat.messages_out,
        };
        let previous = self.nodes.lock().insert(entry.key.clone(), node.clone());
        if let Some(previous) = previous.filter(|p| p.origin != node.origin) {
            tracing::info!(
                "cluster: node {} restarted ({} is now {})",
                entry.key,
                previous.origin,
                node.origin
            );
            let mut retired = self.retired.lock();
            if retired.len() >= RETIRED_MAX {
                retired.clear();
            }
            retired.insert(previous.origin, previous.stored_ms);
        }
    }

    /// Whether the run of a node `origin` names is alive. Until this node has read the
    /// bucket and waited one timeout, and while it is not [`Nodes::steady`], every origin
    /// counts as alive.
    pub fn liveness(&self, origin: &str) -> Liveness {
        if origin == &*self.shared.origin {
            return Liveness::Alive;
        }
        let Some(caught_up) = *self.caught_up.lock() else {
            return Liveness::Alive;
        };
        if !self.steady() {
            return Liveness::Alive;
        }
        if let Some(&stored) = self.retired.lock().get(origin) {
            return Liveness::Dead(Some(stored));
        }
        let name = origin.split(':').next().unwrap_or_default();
        match self.nodes.lock().get(name) {
            Some(node) if node.origin == origin => {
                if node.seen.elapsed() > self.timeout {
                    Liveness::Dead(Some(node.stored_ms))
                } else {
                    Liveness::Alive
                }
            }
            // Another run of the node beats now: this one is gone.
            Some(_) => Liveness::Dead(None),
            // Never heard of: gone if still unheard of a timeout after this node caught up.
            None if caught_up.elapsed() > self.timeout => Liveness::Dead(None),
            None => Liveness::Alive,
        }
    }

    /// The cluster as this node sees it.
    pub fn view(&self) -> ClusterView {
        let own_age = self.own_beat.lock().map(|(at, _)| at.elapsed());
        let mut nodes: Vec<NodeView> = self
            .nodes
            .lock()
            .iter()
            .filter(|(name, _)| name.as_str() != &*self.shared.node)
            // A node gone for long has left the cluster: no longer listed.
            .filter(|(_, node)| node.seen.elapsed() <= self.timeout * FORGET_AFTER)
            .map(|(name, node)| NodeView {
                name: name.clone(),
                heartbeat_age_ms: node.seen.elapsed().as_millis() as u64,
                healthy: node.seen.elapsed() <= self.timeout,
                clients: node.clients,
                messages_in: node.messages_in,
                messages_out: node.messages_out,
            })
            .collect();
        // This node from its own figures (its heartbeat's echo may lag).
        let m = &self.state.metrics;
        nodes.push(NodeView {
            name: self.shared.node.to_string(),
            heartbeat_age_ms: own_age.map_or(u64::MAX, |a| a.as_millis() as u64),
            healthy: self.shared.available.load(Relaxed) && own_age.is_some_and(|a| a <= self.timeout),
            clients: Metrics::get(&m.clients_connected),
            messages_in: Metrics::get(&m.messages_received),
            messages_out: Metrics::get(&m.messages_sent),
        });
        nodes.sort_by(|a, b| a.name.cmp(&b.name));
        ClusterView {
            node: self.shared.node.to_string(),
            nodes,
        }
    }

    /// Appends the view's metric families in Prometheus text format.
    pub fn render(&self, out: &mut String) {
        let view = self.view();
        let node = &view.node;
        let healthy = view.nodes.iter().filter(|n| n.healthy).count();
        let _ = write!(
            out,
            "# HELP tern_cluster_nodes Nodes of the cluster this node has heard of (itself included).\n\
             # TYPE tern_cluster_nodes gauge\ntern_cluster_nodes{{node=\"{node}\"}} {}\n\
             # HELP tern_cluster_nodes_healthy Nodes whose last heartbeat is within cluster_node_timeout.\n\
             # TYPE tern_cluster_nodes_healthy gauge\ntern_cluster_nodes_healthy{{node=\"{node}\"}} {healthy}\n\
             # HELP tern_cluster_node_healthy 1 while a node's heartbeats come within cluster_node_timeout, as this node sees it.\n\
             # TYPE tern_cluster_node_healthy gauge\n",
            view.nodes.len()
        );
        for n in &view.nodes {
            let _ = writeln!(
                out,
                "tern_cluster_node_healthy{{node=\"{node}\",peer=\"{}\"}} {}",
                n.name,
                u8::from(n.healthy)
            );
        }
        let _ = write!(
            out,
            "# HELP tern_cluster_node_heartbeat_age_seconds Seconds since a node's last heartbeat reached this node.\n\
             # TYPE tern_cluster_node_heartbeat_age_seconds gauge\n"
        );
        for n in view.nodes.iter().filter(|n| n.heartbeat_age_ms != u64::MAX) {
            let _ = writeln!(
                out,
                "tern_cluster_node_heartbeat_age_seconds{{node=\"{node}\",peer=\"{}\"}} {:.3}",
                n.name,
                n.heartbeat_age_ms as f64 / 1000.0
            );
        }
    }
}

/// Watches the heartbeats into `nodes` until the process ends, starting again after a
/// lost connection.
pub async fn watch(bucket: kv::Store, nodes: Arc<Nodes>) {
    loop {
        match bucket.watch_with_history(">").await {
            Ok(mut entries) => {
                // The watch first delivers the bucket's contents (one value per key),
                // then every later write.
                while let Some(entry) = entries.next().await {
                    match entry {
                        Ok(entry) => {
                            nodes.apply(&entry);
                            if entry.seen_current || entry.delta == 0 {
                                let mut caught_up = nodes.caught_up.lock();
                                caught_up.get_or_insert_with(Instant::now);
                            }
                        }
                        Err(e) => {
                            tracing::debug!("cluster: watching heartbeats: {e}");
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                    }
                }
            }
            Err(e) => tracing::debug!("cluster: cannot watch heartbeats yet: {e}"),
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_heartbeat_reads_back() {
        let beat = Beat {
            node: "a".into(),
            origin: "a:1".into(),
            clients: 3,
            messages_in: 4,
            messages_out: 5,
        };
        let text = serde_json::to_string(&beat).unwrap();
        let back: Beat = serde_json::from_str(&text).unwrap();
        assert_eq!((back.origin.as_str(), back.clients, back.messages_out), ("a:1", 3, 5));
        let old: Beat = serde_json::from_str(r#"{"origin":"b:2","at":17}"#).unwrap();
        assert_eq!((old.origin.as_str(), old.clients), ("b:2", 0));
    }
}
