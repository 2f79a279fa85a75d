//! `GET /api/v1/stream/messages?filter=F`: the messages published on topics matching a
//! filter, as Server-Sent Events, for the console's live topic tree and subscribe panel
//! (docs/http-api.md, docs/console.md).
//!
//! What a stream costs is bounded whatever the broker's traffic: one event a second
//! (never more), holding the topics seen in that second (each once, with its count, QoS,
//! retain flag and the start of its last payload; at most [`TOPICS_PER_EVENT`] topics
//! and [`TOPIC_BYTES_PER_EVENT`] bytes of names) and, unless `messages=false`, the
//! first messages of that second (at most [`MESSAGES_PER_EVENT`] and
//! [`MESSAGE_BYTES_PER_EVENT`] bytes); what does not fit is counted, not sent. At most
//! [`MAX_STREAMS`] are open per broker (more get 503), each ends after
//! [`super::stream::STREAM_LIFETIME`] (the key is checked again when the client comes
//! back), and a client that stops reading loses events rather than growing a buffer.
//! A stream's task takes the published messages in bursts, every [`DRAIN_EVERY`], rather
//! than waking for each.
//!
//! An admin key sees every topic, as the rest of the API does; a filter that is not a
//! valid MQTT topic filter, or is a shared subscription (`$share/...`, which names no
//! topics), is refused with 400 naming `filter`.

use super::api::ApiState;
use super::input::{ApiError, Query};
use super::stream::{now_ms, Kind, Slot, INTERVAL, RETRY_MS, STREAM_LIFETIME};
use crate::events::{Event, EventKind, EventReceiver};
use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use hyper::body::Frame;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tern_proto::ByteStr;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Message streams open at once per broker.
pub const MAX_STREAMS: usize = 8;
/// Distinct topics in one event, at most.
pub const TOPICS_PER_EVENT: usize = 500;
/// Bytes of topic names in one event, at most.
pub const TOPIC_BYTES_PER_EVENT: usize = 64 << 10;
/// Payload bytes kept of a topic's last message.
pub const TOPIC_PREVIEW_BYTES: usize = 128;
/// Payloads up to this size are kept whole (shared) as a topic's last payload.
const KEEP_WHOLE: usize = 1024;
/// Messages in one event, at most.
pub const MESSAGES_PER_EVENT: usize = 20;
/// Bytes of messages (topic and payload shown) in one event, at most.
pub const MESSAGE_BYTES_PER_EVENT: usize = 64 << 10;
/// Payload bytes shown of one message.
pub const MESSAGE_PREVIEW_BYTES: usize = 4096;
/// How often a stream's task takes the messages published since it last looked. The
/// broker's event ring holds [`crate::events::CAPACITY`] events: above that many
/// messages in this time (about 200,000 a second) a stream misses some, and says how
/// many (`events_lost`).
const DRAIN_EVERY: std::time::Duration = std::time::Duration::from_millis(20);
/// Events waiting for a slow client before the next ones are dropped.
const BACKLOG: usize = 4;

/// The handler.
pub async fn messages(State(api): State<Arc<ApiState>>, RawQuery(q): RawQuery) -> Result<Response, ApiError> {
    let q = Query::parse(q.as_deref(), &["filter", "messages"])?;
    let Some(filter) = q.string("filter") else {
        return Err(ApiError::bad("filter", "a topic filter is needed (# for every topic)"));
    };
    tern_proto::topic::validate_topic_filter(&filter).map_err(|e| ApiError::bad("filter", e))?;
    if filter.starts_with("$share/") {
        return Err(ApiError::bad(
            "filter",
            "a shared subscription names no topics: give the filter after $share/GROUP/",
        ));
    }
    let with_messages = q.bool("messages")?.unwrap_or(true);
    let Some(slot) = Slot::take(&api, Kind::Messages, MAX_STREAMS) else {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("{MAX_STREAMS} message streams are open already; close one"),
            Some("path"),
        ));
    };
    let events = api.broker.events().subscribe(&[EventKind::Published]);
    let (tx, rx) = mpsc::channel(BACKLOG);
    let watch = Watch {
        filter,
        with_messages,
        batch: Batch::default(),
        sent: 0,
    };
    tokio::spawn(watch.run(events, tx, api.broker.shutdown.clone()));
    tracing::debug!(open = api.streams.messages(), "message stream opened");
    Ok((
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        Body::new(MessagesBody { rx, _slot: slot }),
    )
        .into_response())
}

/// One stream's work: matching messages gathered into a batch, sent once a second.
struct Watch {
    filter: String,
    with_messages: bool,
    batch: Batch,
    sent: u64,
}

impl Watch {
    async fn run(mut self, mut events: EventReceiver, tx: mpsc::Sender<Bytes>, stop: CancellationToken) {
        let mut tick = tokio::time::interval(INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut drain = tokio::time::interval(DRAIN_EVERY);
        drain.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let end = tokio::time::sleep(STREAM_LIFETIME);
        tokio::pin!(end);
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                () = &mut end => return,
                () = tx.closed() => return,
                _ = tick.tick() => {
                    self.drain(&mut events);
                    let lost = events.lost();
                    let event = self.event(lost);
                    // A client that does not read loses events; nothing piles up here.
                    if let Err(mpsc::error::TrySendError::Closed(_)) = tx.try_send(event) {
                        return;
                    }
                }
                _ = drain.tick() => self.drain(&mut events),
            }
        }
    }

    /// Everything published since the last look, in one wake-up: a stream's task wakes
    /// 50 times a second, not once per message.
    fn drain(&mut self, events: &mut EventReceiver) {
        for _ in 0..crate::events::CAPACITY {
            let Some(event) = events.try_recv() else { break };
            self.take(event);
        }
    }

    fn take(&mut self, event: Event) {
        if let Event::Published {
            topic,
            payload,
            qos,
            retain,
            ..
        } = event
        {
            if tern_core::topic::matches(&self.filter, &topic) {
                self.batch.add(&topic, &payload, qos as u8, retain, self.with_messages);
            }
        }
    }

    /// The batch so far as one event; the batch starts again.
    fn event(&mut self, lost: u64) -> Bytes {
        let batch = std::mem::take(&mut self.batch);
        let topics: Vec<Value> = batch
            .topics
            .into_iter()
            .map(|(topic, seen)| {
                json!({
                    "topic": &*topic,
                    "count": seen.count,
                    "qos": seen.qos,
                    "retain": seen.retain,
                    "payload": preview(&seen.payload, TOPIC_PREVIEW_BYTES),
                    "payload_bytes": seen.payload_bytes,
                })
            })
            .collect();
        let data = json!({
            "time_ms": now_ms(),
            "filter": self.filter,
            "matched": batch.matched,
            "topics": topics,
            "topics_skipped": batch.topics_skipped,
            "messages": batch.messages,
            "messages_skipped": batch.messages_skipped,
            "events_lost": lost,
        });
        let retry = if self.sent == 0 {
            format!("retry: {RETRY_MS}\n")
        } else {
            String::new()
        };
        self.sent += 1;
        Bytes::from(format!("{retry}event: messages\nid: {}\ndata: {data}\n\n", self.sent))
    }
}

/// A topic seen in the current second.
struct TopicSeen {
    count: u64,
    qos: u8,
    retain: bool,
    /// Its last payload, or the start of it when it is large (see `KEEP_WHOLE`).
    payload: Bytes,
    payload_bytes: usize,
}

/// What one second brought.
#[derive(Default)]
struct Batch {
    matched: u64,
    topics: HashMap<ByteStr, TopicSeen>,
    topic_bytes: usize,
    topics_skipped: u64,
    messages: Vec<Value>,
    message_bytes: usize,
    messages_skipped: u64,
}

impl Batch {
    fn add(&mut self, topic: &ByteStr, payload: &Bytes, qos: u8, retain: bool, with_messages: bool) {
        self.matched += 1;
        // A small payload is kept as it is (a reference count); of a large one only the
        // start is copied, so that no large payload is held for the second.
        let head = if payload.len() <= KEEP_WHOLE {
            payload.clone()
        } else {
            Bytes::copy_from_slice(&payload[..TOPIC_PREVIEW_BYTES])
        };
        if let Some(seen) = self.topics.get_mut(topic) {
            seen.count += 1;
            seen.qos = qos;
            seen.retain = retain;
            seen.payload = head;
            seen.payload_bytes = payload.len();
        } else if self.topics.len() < TOPICS_PER_EVENT && self.topic_bytes + topic.len() <= TOPIC_BYTES_PER_EVENT {
            self.topic_bytes += topic.len();
            let seen = TopicSeen {
                count: 1,
                qos,
                retain,
                payload: head,
                payload_bytes: payload.len(),
            };
            self.topics.insert(topic.clone(), seen);
        } else {
            self.topics_skipped += 1;
        }
        if !with_messages {
            return;
        }
        let size = topic.len() + payload.len().min(MESSAGE_PREVIEW_BYTES);
        if self.messages.len() >= MESSAGES_PER_EVENT || self.message_bytes + size > MESSAGE_BYTES_PER_EVENT {
            self.messages_skipped += 1;
            return;
        }
        self.message_bytes += size;
        self.messages.push(json!({
            "time_ms": now_ms(),
            "topic": &**topic,
            "qos": qos,
            "retain": retain,
            "payload": preview(payload, MESSAGE_PREVIEW_BYTES),
            "payload_bytes": payload.len(),
        }));
    }
}

/// The first `most` bytes of `payload` as text, or `None` when they are not UTF-8 (a
/// character cut at the end is left out).
fn preview(payload: &[u8], most: usize) -> Option<String> {
    let head = &payload[..payload.len().min(most)];
    match std::str::from_utf8(head) {
        Ok(text) => Some(text.to_string()),
        Err(e) if e.error_len().is_none() => std::str::from_utf8(&head[..e.valid_up_to()]).ok().map(str::to_string),
        Err(_) => None,
    }
}

/// The response body: the events the watch task makes, until it ends.
struct MessagesBody {
    rx: mpsc::Receiver<Bytes>,
    _slot: Slot,
}

impl hyper::body::Body for MessagesBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.get_mut()
            .rx
            .poll_recv(cx)
            .map(|next| next.map(|bytes| Ok(Frame::data(bytes))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_keeps_within_its_bounds() {
        let mut batch = Batch::default();
        let payload = Bytes::from(vec![b'x'; 10_000]);
        for i in 0..(TOPICS_PER_EVENT + 10) {
            let topic = ByteStr::from(format!("t/{i}").as_str());
            batch.add(&topic, &payload, 0, false, true);
        }
        assert_eq!(batch.topics.len(), TOPICS_PER_EVENT);
        assert_eq!(batch.topics_skipped, 10);
        assert!(batch.messages.len() <= MESSAGES_PER_EVENT);
        assert!(batch.message_bytes <= MESSAGE_BYTES_PER_EVENT);
        assert_eq!(batch.messages.len() as u64 + batch.messages_skipped, batch.matched);
        assert!(batch.topics.values().all(|t| t.payload.len() == TOPIC_PREVIEW_BYTES));
        let small = Bytes::from_static(b"21.5");
        batch.add(&ByteStr::from("t/0"), &small, 0, false, false);
        assert_eq!(batch.topics[&ByteStr::from("t/0")].payload, small);
    }

    #[test]
    fn previews_cut_whole_characters_and_refuse_binary() {
        assert_eq!(preview("héllo".as_bytes(), 2).as_deref(), Some("h"));
        assert_eq!(preview(b"abc", 10).as_deref(), Some("abc"));
        assert_eq!(preview(&[0xff, 0x00], 10), None);
    }
}
