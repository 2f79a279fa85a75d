//! Takeover across nodes: a client id connected on two nodes ends with one connection,
//! the newer, as on a single node (the older gets DISCONNECT 0x8E in 5.0).
//!
//! When a client connects (the broker's event stream), the node claims its client id in
//! the `MQTT_SESS` bucket: a write of `<origin>\n<connected at, ms>\n<client id>` under the
//! client id's key. Every node watches the bucket; a node that holds a claim for a client
//! id and sees another node's claim of a newer connection closes its own connection of
//! that client id. Newer means a later connection time by the nodes' clocks and, for the
//! same millisecond, the later write (the bucket numbers writes in one order: revisions).
//! Both nodes compare the same two claims, so exactly one connection stays. (Connections
//! made on two nodes within the nodes' clock skew of each other may be decided either way.)
//! A claim whose write is not yet acknowledged remembers the highest revision of a claim
//! of the same millisecond and is decided when its own revision is known; a claim that
//! could not be written loses such ties.

use crate::link::Shared;
use crate::subject;
use async_nats::jetstream::kv;
use futures_util::StreamExt;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};
use tern_broker::events::{Event, EventKind, EventReceiver};
use tern_broker::BrokerState;
use tokio::sync::mpsc;

/// One of this node's connections, as claimed in the bucket.
struct Claim {
    /// When it connected (ms since 1970): a newer connection of the id is not this one.
    connected_ms: u64,
    /// Its write's revision; `None` while unacknowledged, `Some(0)` if it failed.
    revision: Option<u64>,
    /// The highest revision of another node's claim of the same millisecond, seen while
    /// ours was unacknowledged.
    beaten_by: u64,
}

/// A claim's write, answered.
struct Written {
    client_id: String,
    connected_ms: u64,
    revision: Option<u64>,
}

/// The events the takeover follows (subscribed before the broker runs, so that no
/// connection is missed).
pub fn subscribe(state: &BrokerState) -> EventReceiver {
    state
        .events()
        .subscribe(&[EventKind::Connected, EventKind::Disconnected])
}

/// Runs until the broker's event stream ends.
pub async fn run(bucket: kv::Store, mut events: EventReceiver, state: Arc<BrokerState>, shared: Arc<Shared>) {
    let (written_tx, mut written_rx) = mpsc::unbounded_channel::<Written>();
    let mut claims: HashMap<String, Claim> = HashMap::new();
    let mut watch = None;
    loop {
        if watch.is_none() {
            // Only what is written from now on matters: claims older than this node's
            // connections never beat them.
            watch = bucket.watch_all().await.ok();
        }
        tokio::select! {
            // This node's connections first: a connection is claimed before any later
            // claim of another node is looked at.
            biased;
            event = events.recv() => match event {
                Some(Event::Connected(client)) => {
                    let client_id = client.client_id.to_string();
                    let connected_ms = client
                        .connected_at
                        .duration_since(UNIX_EPOCH)
                        .map_or(0, |d| d.as_millis() as u64);
                    let Some(key) = subject::topic_key(&client_id) else { continue };
                    claims.insert(client_id.clone(), Claim { connected_ms, revision: None, beaten_by: 0 });
                    let value = format!("{}\n{connected_ms}\n{client_id}", shared.origin);
                    let (bucket, tx) = (bucket.clone(), written_tx.clone());
                    tokio::spawn(async move {
                        let put = tokio::time::timeout(Duration::from_secs(5), bucket.put(key, value.into())).await;
                        let revision = put.ok().and_then(Result::ok);
                        let _ = tx.send(Written { client_id, connected_ms, revision });
                    });
                }
                Some(Event::Disconnected { client, .. }) => {
                    let connected_ms = client.connected_at.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
                    if claims.get(client.client_id.as_str()).is_some_and(|c| c.connected_ms == connected_ms) {
                        claims.remove(client.client_id.as_str());
                    }
                }
                Some(_) => {}
                None => return,
            },
            Some(written) = written_rx.recv() => {
                let Some(claim) = claims.get_mut(&written.client_id).filter(|c| c.connected_ms == written.connected_ms) else {
                    continue;
                };
                let revision = written.revision.unwrap_or(0);
                claim.revision = Some(revision);
                if claim.beaten_by > revision {
                    take_over(&state, &mut claims, &written.client_id);
                }
            }
            entry = next_entry(&mut watch) => match entry {
                Some(entry) => on_entry(&entry, &state, &shared, &mut claims),
                None => {
                    watch = None;
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            },
        }
    }
}

/// The next write of the bucket; `None` when the watch ended (or there is none).
async fn next_entry(watch: &mut Option<kv::Watch>) -> Option<kv::Entry> {
    match watch {
        Some(w) => w.next().await.and_then(Result::ok),
        None => None,
    }
}

/// Another node's claim beats ours if its connection is newer.
fn on_entry(entry: &kv::Entry, state: &BrokerState, shared: &Shared, claims: &mut HashMap<String, Claim>) {
    if entry.operation != kv::Operation::Put {
        return;
    }
    let Ok(text) = std::str::from_utf8(&entry.value) else {
        return;
    };
    let mut fields = text.splitn(3, '\n');
    let (Some(origin), Some(connected_ms), Some(client_id)) = (fields.next(), fields.next(), fields.next()) else {
        return;
    };
    let Ok(theirs) = connected_ms.parse::<u64>() else {
        return;
    };
    if origin == &*shared.origin {
        return;
    }
    let Some(claim) = claims.get_mut(client_id) else {
        return;
    };
    let beaten = match (theirs.cmp(&claim.connected_ms), claim.revision) {
        (std::cmp::Ordering::Greater, _) => true,
        (std::cmp::Ordering::Less, _) => false,
        (std::cmp::Ordering::Equal, Some(ours)) => ours < entry.revision,
        (std::cmp::Ordering::Equal, None) => {
            claim.beaten_by = claim.beaten_by.max(entry.revision);
            false
        }
    };
    if beaten {
        take_over(state, claims, client_id);
    }
}

/// Closes this node's connection of `client_id` that the claim stood for.
fn take_over(state: &BrokerState, claims: &mut HashMap<String, Claim>, client_id: &str) {
    if let Some(claim) = claims.remove(client_id) {
        if state.take_over_from_node(client_id, claim.connected_ms) {
            tracing::info!(
                client = client_id,
                "cluster: client id connected to another node: this connection closes"
            );
        }
    }
}
