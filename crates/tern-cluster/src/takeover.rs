//! Takeover across nodes: a client id connected on two nodes ends with one connection,
//! the newer, as on a single node (the older gets DISCONNECT 0x8E in 5.0).
//!
//! When a client connects (the broker's event stream), the node claims its client id in
//! the `MQTT_SESS` bucket: a write of `<origin>\n<connected at, µs>\n<client id>` under the
//! client id's key. Every node watches the bucket; a node that holds a claim for a client
//! id and sees another node's claim of a newer connection closes its own connection of
//! that client id. Newer means a later connection time by the nodes' clocks and, for the
//! same microsecond, the later write (the bucket numbers writes in one order: revisions).
//! Both nodes compare the same two claims, so exactly one connection stays. (Connections
//! made on two nodes within the nodes' clock skew of each other may be decided either way.)
//! A claim whose write is not yet acknowledged remembers the highest revision of a claim
//! of the same microsecond and is decided when its own revision is known; a claim that
//! could not be written loses such ties. Other nodes' claims of the last seconds are
//! remembered too: a connection whose event reaches the takeover after a newer claim
//! from elsewhere (a busy node) is closed as soon as it is claimed.
//!
//! Each written claim is also published once on core NATS ([`CLAIMS`]) with its
//! revision, and read there as from the watch: the bucket's watch (an ordered consumer)
//! was seen to stall for many seconds after a node had just closed connections, leaving
//! both connections of a client id that connected on two nodes at once. Either path
//! decides; the second to bring a claim changes nothing.

use crate::link::Shared;
use crate::subject;
use async_nats::jetstream::kv;
use futures_util::StreamExt;
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tern_broker::events::{Event, EventKind, EventReceiver};
use tern_broker::BrokerState;
use tokio::sync::mpsc;

/// The core NATS subject every node publishes its written claims on.
pub const CLAIMS: &str = "tern.claims";

/// How long other nodes' claims are remembered.
const RECENT: Duration = Duration::from_secs(10);
/// Most other nodes' claims remembered at once.
const RECENT_MAX: usize = 100_000;

/// One of this node's connections, as claimed in the bucket.
struct Claim {
    /// When it connected (µs since 1970): a newer connection of the id is not this one.
    connected_us: u64,
    /// Its write's revision; `None` while unacknowledged, `Some(0)` if it failed.
    revision: Option<u64>,
    /// The highest revision of another node's claim of the same microsecond, seen while
    /// ours was unacknowledged.
    beaten_by: u64,
}

/// A claim's write, answered.
struct Written {
    client_id: String,
    connected_us: u64,
    revision: Option<u64>,
}

/// The takeover's state: this node's claims and the other nodes' recent ones.
struct Takeover {
    state: Arc<BrokerState>,
    shared: Arc<Shared>,
    claims: HashMap<String, Claim>,
    /// Other nodes' claims: client id to (connected at, revision, when seen).
    recent: HashMap<String, (u64, u64, Instant)>,
    recent_order: VecDeque<(Instant, String)>,
}

/// The events the takeover follows (subscribed before the broker runs, so that no
/// connection is missed).
pub fn subscribe(state: &BrokerState) -> EventReceiver {
    state
        .events()
        .subscribe(&[EventKind::Connected, EventKind::Disconnected])
}

fn micros(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_micros() as u64)
}

/// Runs until the broker's event stream ends.
pub async fn run(
    (bucket, nats): (kv::Store, async_nats::Client),
    mut events: EventReceiver,
    state: Arc<BrokerState>,
    shared: Arc<Shared>,
) {
    let (written_tx, mut written_rx) = mpsc::unbounded_channel::<Written>();
    let mut takeover = Takeover {
        state,
        shared,
        claims: HashMap::new(),
        recent: HashMap::new(),
        recent_order: VecDeque::new(),
    };
    let mut watch = None;
    let mut published = None;
    // The last revision seen, to go on from it if the watch must be made again.
    let mut seen = 0u64;
    loop {
        if watch.is_none() {
            // Only what is written from now on matters: claims older than this node's
            // connections never beat them.
            watch = match seen {
                0 => bucket.watch_all().await.ok(),
                _ => bucket.watch_all_from_revision(seen + 1).await.ok(),
            };
        }
        if published.is_none() {
            published = nats.subscribe(CLAIMS).await.ok();
        }
        tokio::select! {
            // This node's connections first: a connection is claimed before any later
            // claim of another node is looked at.
            biased;
            event = events.recv() => match event {
                Some(Event::Connected(client)) => {
                    let client_id = client.client_id.to_string();
                    let connected_us = micros(client.connected_at);
                    let Some(key) = subject::topic_key(&client_id) else { continue };
                    let value = format!("{}\n{connected_us}\n{client_id}", takeover.shared.origin);
                    let (bucket, tx, nats) = (bucket.clone(), written_tx.clone(), nats.clone());
                    let id = client_id.clone();
                    tokio::spawn(async move {
                        let put = tokio::time::timeout(Duration::from_secs(5), bucket.put(key, value.clone().into())).await;
                        let revision = put.ok().and_then(Result::ok);
                        if let Some(revision) = revision {
                            let _ = nats.publish(CLAIMS, format!("{revision}\n{value}").into()).await;
                        }
                        let _ = tx.send(Written { client_id: id, connected_us, revision });
                    });
                    takeover.connected(client_id, connected_us);
                }
                Some(Event::Disconnected { client, .. }) => {
                    takeover.disconnected(client.client_id.as_str(), micros(client.connected_at));
                }
                Some(_) => {}
                None => return,
            },
            Some(written) = written_rx.recv() => takeover.written(written),
            message = next_published(&mut published) => match message {
                Some(message) => takeover.published(&message.payload),
                None => {
                    published = None;
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            },
            entry = next_entry(&mut watch) => match entry {
                Some(Ok(entry)) => {
                    seen = seen.max(entry.revision);
                    takeover.entry(&entry);
                }
                // A hiccup of the watch (it recovers by itself): go on reading, paced.
                Some(Err(e)) => {
                    tracing::debug!("cluster: watching client id claims: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                None => {
                    tracing::debug!("cluster: the watch of client id claims ended: made again in 1 s");
                    watch = None;
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            },
        }
    }
}

/// The next write of the bucket; `None` when the watch ended (or there is none).
async fn next_entry(watch: &mut Option<kv::Watch>) -> Option<Result<kv::Entry, kv::WatcherError>> {
    match watch {
        Some(w) => w.next().await,
        None => None,
    }
}

/// The next claim published on core NATS; `None` when the subscription ended (or there
/// is none).
async fn next_published(subscriber: &mut Option<async_nats::Subscriber>) -> Option<async_nats::Message> {
    match subscriber {
        Some(s) => s.next().await,
        None => None,
    }
}

/// A claim's text, `<origin>\n<connected at, µs>\n<client id>`: (origin, connected at,
/// client id).
fn parse_claim(text: &str) -> Option<(&str, u64, &str)> {
    let mut fields = text.splitn(3, '\n');
    let (origin, connected_us, client_id) = (fields.next()?, fields.next()?, fields.next()?);
    Some((origin, connected_us.parse().ok()?, client_id))
}

impl Takeover {
    /// A connection of this node: claimed, and closed at once if another node's recent
    /// claim is newer.
    fn connected(&mut self, client_id: String, connected_us: u64) {
        tracing::debug!(client = client_id, connected_us, "cluster: claiming a connection");
        let mut claim = Claim {
            connected_us,
            revision: None,
            beaten_by: 0,
        };
        let beaten = self
            .recent
            .get(&client_id)
            .is_some_and(|&(theirs, revision, _)| beats(&mut claim, theirs, revision));
        self.claims.insert(client_id.clone(), claim);
        if beaten {
            self.take_over(&client_id);
        }
    }

    fn disconnected(&mut self, client_id: &str, connected_us: u64) {
        if self
            .claims
            .get(client_id)
            .is_some_and(|c| c.connected_us == connected_us)
        {
            self.claims.remove(client_id);
        }
    }

    /// A claim's write was answered: a tie seen meanwhile is decided now.
    fn written(&mut self, written: Written) {
        let Some(claim) = self
            .claims
            .get_mut(&written.client_id)
            .filter(|c| c.connected_us == written.connected_us)
        else {
            return;
        };
        let revision = written.revision.unwrap_or(0);
        claim.revision = Some(revision);
        if claim.beaten_by > revision {
            self.take_over(&written.client_id);
        }
    }

    /// Another node's claim: remembered a while, and it closes this node's connection of
    /// the client id if that is older.
    fn entry(&mut self, entry: &kv::Entry) {
        if entry.operation != kv::Operation::Put {
            return;
        }
        let Some((origin, theirs, client_id)) = std::str::from_utf8(&entry.value).ok().and_then(parse_claim) else {
            return;
        };
        self.claim_seen(origin, theirs, client_id, entry.revision, "watch");
    }

    /// Another node's claim published on core NATS: `<revision>\n<claim>`.
    fn published(&mut self, payload: &[u8]) {
        let Some((revision, claim)) = std::str::from_utf8(payload).ok().and_then(|t| t.split_once('\n')) else {
            return;
        };
        let (Ok(revision), Some((origin, theirs, client_id))) = (revision.parse(), parse_claim(claim)) else {
            return;
        };
        self.claim_seen(origin, theirs, client_id, revision, "published");
    }

    /// A claim written by `origin`, from the watch or as published: remembered, and it
    /// closes this node's connection of the client id if that is older.
    fn claim_seen(&mut self, origin: &str, theirs: u64, client_id: &str, revision: u64, from: &str) {
        if origin == &*self.shared.origin {
            return;
        }
        let known = self.recent.get(client_id);
        if known.is_some_and(|&(at, seen, _)| at == theirs && seen == revision) {
            return;
        }
        tracing::debug!(
            client = client_id,
            theirs,
            revision,
            from,
            ours = ?self.claims.get(client_id).map(|c| (c.connected_us, c.revision)),
            "cluster: another node's claim"
        );
        self.remember(client_id, theirs, revision);
        if let Some(sessions) = self.shared.sessions.get() {
            sessions.claimed_elsewhere(client_id, theirs);
        }
        let beaten = self
            .claims
            .get_mut(client_id)
            .is_some_and(|claim| beats(claim, theirs, revision));
        if beaten {
            self.take_over(client_id);
        }
    }

    fn remember(&mut self, client_id: &str, connected_us: u64, revision: u64) {
        let now = Instant::now();
        self.recent.insert(client_id.to_string(), (connected_us, revision, now));
        self.recent_order.push_back((now, client_id.to_string()));
        while let Some((at, id)) = self.recent_order.front() {
            if now.duration_since(*at) < RECENT && self.recent_order.len() <= RECENT_MAX {
                break;
            }
            if self.recent.get(id).is_some_and(|(_, _, seen)| seen == at) {
                self.recent.remove(id);
            }
            self.recent_order.pop_front();
        }
    }

    /// Closes this node's connection of `client_id` that the claim stood for.
    fn take_over(&mut self, client_id: &str) {
        if let Some(claim) = self.claims.remove(client_id) {
            if self.state.take_over_from_node(client_id, claim.connected_us / 1000) {
                tracing::info!(
                    client = client_id,
                    "cluster: client id connected to another node: this connection closes"
                );
            } else {
                tracing::debug!(
                    client = client_id,
                    "cluster: claim beaten, but its connection is not here"
                );
            }
        }
    }
}

/// Whether another node's claim (connected at `theirs`, written as `revision`) is of a
/// newer connection than `claim`; a tie with an unacknowledged claim is noted in it.
fn beats(claim: &mut Claim, theirs: u64, revision: u64) -> bool {
    match (theirs.cmp(&claim.connected_us), claim.revision) {
        (std::cmp::Ordering::Greater, _) => true,
        (std::cmp::Ordering::Less, _) => false,
        (std::cmp::Ordering::Equal, Some(ours)) => ours < revision,
        (std::cmp::Ordering::Equal, None) => {
            claim.beaten_by = claim.beaten_by.max(revision);
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claim(connected_us: u64, revision: Option<u64>) -> Claim {
        Claim {
            connected_us,
            revision,
            beaten_by: 0,
        }
    }

    #[test]
    fn published_claims_are_read_whole_or_not_at_all() {
        assert_eq!(
            parse_claim("node-b:1f\n1700000000000000\nsensor-7"),
            Some(("node-b:1f", 1_700_000_000_000_000, "sensor-7"))
        );
        assert_eq!(
            parse_claim("node-b:1f\n17\nid\nwith a line break"),
            Some(("node-b:1f", 17, "id\nwith a line break"))
        );
        for bad in [
            "",
            "node-b",
            "node-b\n",
            "node-b\nnot a number\nid",
            "node-b\n-5\nid",
            "node-b\n99999999999999999999999\nid",
        ] {
            assert_eq!(parse_claim(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn the_newer_connection_wins() {
        assert!(beats(&mut claim(10, Some(5)), 11, 4));
        assert!(!beats(&mut claim(10, Some(5)), 9, 6));
        assert!(beats(&mut claim(10, Some(5)), 10, 6), "a tie goes to the later write");
        assert!(!beats(&mut claim(10, Some(7)), 10, 6));
        let mut pending = claim(10, None);
        assert!(!beats(&mut pending, 10, 6));
        assert_eq!(pending.beaten_by, 6, "decided when its own write is answered");
    }
}
