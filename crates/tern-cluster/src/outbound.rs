//! The publishing side: one task sends what this node accepted to NATS in the order it
//! was accepted (so the other nodes see each publisher's messages in order), and a second
//! task waits for JetStream's acknowledgements in the same order and settles (or fails)
//! the publishers' tickets.
//!
//! QoS 0 messages are plain NATS publishes, under the roots of their class
//! ([`crate::subject::Class`]) that no stream captures. QoS 1/2 messages are JetStream
//! publishes: the `MQTT_MSGS` stream stores them on a quorum of its replicas, and
//! NATS routes them to the other nodes' subscriptions as it does any message. A retained
//! message is also written to the `MQTT_RETAIN` key-value bucket (a JetStream publish to
//! its key's subject), and its publisher's ticket waits for that write too.

use crate::link::Shared;
use crate::RETAIN_BUCKET;
use async_nats::jetstream;
use bytes::Bytes;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use tern_broker::cluster::AckTrack;
use tokio::sync::mpsc;

/// How many commands may wait for the publishing task.
pub const QUEUE: usize = 16 * 1024;

/// A connection's claim on something the cluster must do before its output goes out.
/// Settled or failed once; one dropped unresolved (a task gone, a full queue) fails, so
/// that nothing waits on it for ever and nothing is acknowledged that was not done.
#[derive(Debug)]
pub struct Ticket {
    track: Option<Arc<AckTrack>>,
}

impl Ticket {
    /// Takes a ticket on `track`.
    pub fn new(track: &Arc<AckTrack>) -> Ticket {
        track.issue();
        Ticket {
            track: Some(track.clone()),
        }
    }

    pub fn settle(mut self) {
        if let Some(track) = self.track.take() {
            track.settle();
        }
    }

    pub fn fail(mut self) {
        if let Some(track) = self.track.take() {
            track.fail();
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if let Some(track) = self.track.take() {
            track.fail();
        }
    }
}

/// Something to send to NATS.
#[derive(Debug)]
pub enum Outbound {
    /// A message for the other nodes; `reliable` (QoS 1/2) ones go through JetStream.
    Message {
        subject: String,
        body: Bytes,
        reliable: bool,
        ticket: Option<Ticket>,
    },
    /// A retained message (an empty payload clears) for the key-value bucket.
    Retained {
        key: String,
        body: Bytes,
        ticket: Option<Ticket>,
    },
}

/// A JetStream publish sent and not yet acknowledged.
type Pending = (jetstream::context::PublishAckFuture, Option<Ticket>);

/// Runs the publishing task and its acknowledging task until `commands` closes.
pub async fn run(
    client: async_nats::Client,
    js: jetstream::Context,
    shared: Arc<Shared>,
    mut commands: mpsc::Receiver<Outbound>,
) {
    let (acks_tx, acks_rx) = mpsc::channel::<Pending>(QUEUE);
    let acker = tokio::spawn(acknowledge(acks_rx, shared.clone()));
    while let Some(command) = commands.recv().await {
        let (subject, body, ticket) = match command {
            Outbound::Message {
                subject,
                body,
                reliable: false,
                ..
            } => {
                if let Err(e) = client.publish(subject, body).await {
                    tracing::debug!("cluster: publish to NATS failed: {e}");
                    shared.not_forwarded.fetch_add(1, Relaxed);
                }
                continue;
            }
            Outbound::Message {
                subject, body, ticket, ..
            } => (subject, body, ticket),
            Outbound::Retained { key, body, ticket } => (format!("$KV.{RETAIN_BUCKET}.{key}"), body, ticket),
        };
        match js.publish(subject, body).await {
            Ok(ack) => {
                if acks_tx.send((ack, ticket)).await.is_err() {
                    break;
                }
            }
            Err(e) => {
                refused(&shared, &e.to_string());
                if let Some(ticket) = ticket {
                    ticket.fail();
                }
            }
        }
    }
    drop(acks_tx);
    let _ = acker.await;
}

/// Waits for each acknowledgement in turn (they were all sent already, so waiting in
/// order costs no round trips) and settles or fails its ticket.
async fn acknowledge(mut acks: mpsc::Receiver<Pending>, shared: Arc<Shared>) {
    while let Some((ack, ticket)) = acks.recv().await {
        match ack.await {
            Ok(_) => {
                if let Some(ticket) = ticket {
                    ticket.settle();
                }
            }
            Err(e) => {
                refused(&shared, &e.to_string());
                if let Some(ticket) = ticket {
                    ticket.fail();
                }
            }
        }
    }
}

/// JetStream did not take a message: QoS 1/2 publishes are refused until the health
/// check sees it answer again.
fn refused(shared: &Shared, why: &str) {
    if shared.available.swap(false, Relaxed) {
        tracing::warn!(
            "cluster: JetStream did not store a message ({why}): QoS 1/2 publishes are refused until it answers again"
        );
    }
}
