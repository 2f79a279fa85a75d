//! Retained messages cluster-wide: every node watches the `MQTT_RETAIN` bucket (one key
//! per topic, [`crate::subject::topic_key`], the latest message only) into its own
//! retained store, from the bucket's current contents on (a node that joins late gets
//! them all) to every later write. The bucket orders the writes of all nodes, and each
//! node applies them in that order, so they all end with the bucket's last message for a
//! topic. A node's own write is skipped when its store already holds that message (the
//! usual case: it stored it before sending it).
//!
//! A retained message with a 5.0 Message Expiry Interval keeps the time it was written:
//! a node that reads it later (one that joins, or restarts) counts the time since the
//! write, by the NATS server's clock, against the interval, and one already expired is
//! not stored (the bucket keeps it until the topic's next write, harmless).

use crate::link::Shared;
use crate::{subject, wire};
use async_nats::jetstream::kv;
use futures_util::StreamExt;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;
use tern_broker::BrokerState;
use tern_proto::{ByteStr, Publish, QoS};

/// Watches the bucket until the process ends, starting again after a lost connection.
pub async fn watch(bucket: kv::Store, state: Arc<BrokerState>, shared: Arc<Shared>) {
    loop {
        match bucket.watch_with_history(">").await {
            Ok(mut entries) => {
                while let Some(entry) = entries.next().await {
                    match entry {
                        Ok(entry) => apply(&entry, &state, &shared),
                        // A hiccup of the watch (it recovers by itself): go on reading, paced.
                        Err(e) => {
                            tracing::debug!("cluster: watching retained messages: {e}");
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                    }
                }
            }
            Err(e) => tracing::debug!("cluster: cannot watch retained messages yet: {e}"),
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// The retained message that clears `topic`'s (an empty payload).
pub(crate) fn clearing(topic: &str) -> Publish {
    Publish {
        dup: false,
        qos: QoS::AtMostOnce,
        retain: true,
        topic: ByteStr::from(topic),
        packet_id: 0,
        properties: Default::default(),
        payload: Default::default(),
    }
}

/// Applies one write of the bucket to this node's retained store.
fn apply(entry: &kv::Entry, state: &BrokerState, shared: &Shared) {
    let publish = match entry.operation {
        kv::Operation::Put => match wire::decode(&entry.value) {
            Ok(mut record) => {
                if record.origin == *shared.origin && holds(state, &record.publish) {
                    return;
                }
                if !wire::still_valid(&mut record.publish, entry.created.unix_timestamp()) {
                    clearing(&record.publish.topic)
                } else {
                    record.publish
                }
            }
            Err(e) => {
                shared.dropped_inbound.fetch_add(1, Relaxed);
                tracing::warn!("cluster: retained message under key {:?} dropped: {e}", entry.key);
                return;
            }
        },
        kv::Operation::Delete | kv::Operation::Purge => {
            let Some(topic) = subject::key_topic(&entry.key) else {
                return;
            };
            clearing(&topic)
        }
    };
    let mut publish = publish;
    publish.retain = true;
    state.retain_from_node(&publish);
}

/// Whether this node's retained store holds `publish` already (or, for a clear, nothing).
fn holds(state: &BrokerState, publish: &Publish) -> bool {
    match state.router.retained_message(&publish.topic) {
        Some(current) => current.publish.payload == publish.payload && current.publish.qos == publish.qos,
        None => publish.payload.is_empty(),
    }
}
