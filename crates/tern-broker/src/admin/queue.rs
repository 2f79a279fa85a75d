//! One client's queue as an operator sees it (`GET /api/v1/clients/{id}/queue`, the
//! console's client page): the messages in flight (sent, not yet acknowledged) and the
//! first of those waiting to be sent, each with its topic, QoS, size and the start of its
//! payload. A queue changes as it drains, so this is a look at one moment, not a
//! listing to page through; at most [`MAX_SHOWN`] of each are shown, with the totals.

use super::{Admin, AdminError};
use crate::session::Delivery;
use serde::Serialize;
use tern_core::outbox::Stage;

/// Messages shown of each part of a queue, at most.
pub const MAX_SHOWN: usize = 100;
/// Payload bytes shown of each message, at most.
pub const PREVIEW_BYTES: usize = 256;

/// A client's queue at one moment.
#[derive(Debug, Clone, Serialize)]
pub struct QueueInfo {
    pub client_id: String,
    pub inflight_total: usize,
    pub queued_total: usize,
    pub inflight: Vec<QueuedMessage>,
    pub queued: Vec<QueuedMessage>,
}

/// One message of a queue.
#[derive(Debug, Clone, Serialize)]
pub struct QueuedMessage {
    pub topic: String,
    pub qos: u8,
    pub payload_bytes: usize,
    /// The payload's first [`PREVIEW_BYTES`] bytes as text, when they are UTF-8.
    pub payload_preview: Option<String>,
    /// The packet identifier of a message in flight.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub packet_id: Option<u16>,
    /// What a message in flight waits for: `puback`, `pubrec` or `pubcomp`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub waiting_for: Option<&'static str>,
}

fn message(delivery: &Delivery, qos: u8) -> QueuedMessage {
    let publish = delivery.publish();
    let (topic, payload) = match &publish {
        Some(p) => (p.topic.to_string(), &p.payload[..]),
        None => (String::new(), &[][..]),
    };
    let head = &payload[..payload.len().min(PREVIEW_BYTES)];
    // A character cut by the preview's end is left out; any other invalid byte means the
    // payload is not text.
    let preview = match std::str::from_utf8(head) {
        Ok(text) => Some(text.to_string()),
        Err(e) if e.error_len().is_none() => std::str::from_utf8(&head[..e.valid_up_to()]).ok().map(str::to_string),
        Err(_) => None,
    };
    QueuedMessage {
        topic,
        qos,
        payload_bytes: payload.len(),
        payload_preview: preview,
        packet_id: None,
        waiting_for: None,
    }
}

impl Admin {
    /// The first [`MAX_SHOWN`] messages in flight and queued of `client_id`'s session.
    pub fn client_queue(&self, client_id: &str, limit: usize) -> Result<QueueInfo, AdminError> {
        let limit = limit.clamp(1, MAX_SHOWN);
        let session = self.session(client_id)?;
        let state = session.state.lock();
        let outbox = &state.outbox;
        let inflight = outbox
            .inflight()
            .take(limit)
            .map(|m| {
                let qos = if m.stage == Stage::AwaitingPublishAck { 1 } else { 2 };
                let mut shown = message(&m.delivery, qos);
                shown.packet_id = Some(m.packet_id);
                shown.waiting_for = Some(match m.stage {
                    Stage::AwaitingPublishAck => "puback",
                    Stage::AwaitingPublishReceived => "pubrec",
                    _ => "pubcomp",
                });
                shown
            })
            .collect();
        let queued = outbox
            .queued_messages()
            .take(limit)
            .map(|(d, qos, _)| message(d, qos as u8))
            .collect();
        Ok(QueueInfo {
            client_id: client_id.to_string(),
            inflight_total: outbox.inflight_len(),
            queued_total: outbox.queued(),
            inflight,
            queued,
        })
    }
}
