//! `GET /api/v1/stream/stats`: the broker's figures as Server-Sent Events, one event a
//! second, for the console's live plots (docs/http-api.md).
//!
//! The rate is the server's (a client cannot ask for more), the first event goes out at
//! once, and a stream costs one timer and one [`crate::admin::Admin::stats`] a second.
//! At most [`MAX_STREAMS`] are open per broker (more get 503). A stream ends when its
//! client goes (the body is dropped), when the broker stops, and after
//! [`STREAM_LIFETIME`], so that the client reconnects and its key is checked again (a
//! revoked key stops a console within that time).

use super::api::ApiState;
use super::input::{ApiError, Query};
use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use hyper::body::Frame;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio_util::sync::WaitForCancellationFutureOwned;

/// Streams open at once per broker.
pub const MAX_STREAMS: usize = 32;
/// Time between events.
pub const INTERVAL: Duration = Duration::from_secs(1);
/// A stream ends after this long; the client opens another (with its key checked again).
pub const STREAM_LIFETIME: Duration = Duration::from_secs(60);
/// What a client waits before reconnecting after a stream ends (the SSE `retry` field).
pub(crate) const RETRY_MS: u64 = 1000;

/// How many streams are open: statistics streams, and message streams
/// ([`super::topic_stream`]).
#[derive(Debug, Default)]
pub struct OpenStreams {
    stats: AtomicUsize,
    messages: AtomicUsize,
}

impl OpenStreams {
    /// Statistics streams open.
    pub fn get(&self) -> usize {
        self.stats.load(Ordering::Relaxed)
    }

    /// Message streams open.
    pub fn messages(&self) -> usize {
        self.messages.load(Ordering::Relaxed)
    }
}

/// Which count a stream is in.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Kind {
    Stats,
    Messages,
}

fn counter(api: &ApiState, kind: Kind) -> &AtomicUsize {
    match kind {
        Kind::Stats => &api.streams.stats,
        Kind::Messages => &api.streams.messages,
    }
}

/// One open stream's place in its count, given back when the stream is dropped.
pub(crate) struct Slot(Arc<ApiState>, Kind);

impl Slot {
    /// A place in `kind`'s count, unless `most` are open.
    pub(crate) fn take(api: &Arc<ApiState>, kind: Kind, most: usize) -> Option<Slot> {
        let count = counter(api, kind);
        let mut current = count.load(Ordering::Relaxed);
        loop {
            if current >= most {
                return None;
            }
            match count.compare_exchange_weak(current, current + 1, Ordering::AcqRel, Ordering::Relaxed) {
                Ok(_) => return Some(Slot(api.clone(), kind)),
                Err(now) => current = now,
            }
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        counter(&self.0, self.1).fetch_sub(1, Ordering::AcqRel);
    }
}

/// The handler.
pub async fn stats(State(api): State<Arc<ApiState>>, RawQuery(q): RawQuery) -> Result<Response, ApiError> {
    Query::parse(q.as_deref(), &[])?;
    let Some(slot) = Slot::take(&api, Kind::Stats, MAX_STREAMS) else {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("{MAX_STREAMS} statistics streams are open already; close one"),
            Some("path"),
        ));
    };
    tracing::debug!(open = api.streams.get(), "statistics stream opened");
    let mut tick = tokio::time::interval(INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let body = StatsBody {
        stop: Box::pin(api.broker.shutdown.clone().cancelled_owned()),
        end: Box::pin(tokio::time::sleep(STREAM_LIFETIME)),
        tick,
        sent: 0,
        slot,
    };
    Ok((
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        Body::new(body),
    )
        .into_response())
}

/// The event stream as a response body: each tick makes one event.
struct StatsBody {
    stop: Pin<Box<WaitForCancellationFutureOwned>>,
    end: Pin<Box<tokio::time::Sleep>>,
    tick: tokio::time::Interval,
    sent: u64,
    slot: Slot,
}

impl StatsBody {
    /// The next event: the admin facade's figures, the dropped messages, the messages sent
    /// by QoS, the store's commit histogram (when there is a store), the time.
    fn event(&mut self) -> Bytes {
        let api = &self.slot.0;
        let mut data = serde_json::to_value(api.admin.stats()).unwrap_or_default();
        if let Some(map) = data.as_object_mut() {
            let metrics = &api.broker.metrics;
            map.insert("messages_dropped".into(), metrics.dropped.total().into());
            let by_qos: Vec<u64> = metrics.sent_by_qos.iter().map(crate::metrics::Metrics::get).collect();
            map.insert("sent_by_qos".into(), by_qos.into());
            if let Some(store) = &api.broker.store {
                let commits = store.commit_seconds().snapshot();
                map.insert(
                    "store_commits".into(),
                    serde_json::json!({
                        "count": commits.count,
                        "sum_s": commits.sum,
                        "bounds_s": commits.bounds,
                        "cumulative": commits.cumulative,
                    }),
                );
            }
            map.insert("streams_open".into(), api.streams.get().into());
            map.insert("time_ms".into(), now_ms().into());
        }
        let retry = if self.sent == 0 {
            format!("retry: {RETRY_MS}\n")
        } else {
            String::new()
        };
        self.sent += 1;
        Bytes::from(format!("{retry}event: stats\nid: {}\ndata: {data}\n\n", self.sent))
    }
}

pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl hyper::body::Body for StatsBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = self.get_mut();
        if this.stop.as_mut().poll(cx).is_ready() || this.end.as_mut().poll(cx).is_ready() {
            return Poll::Ready(None);
        }
        match this.tick.poll_tick(cx) {
            Poll::Ready(_) => Poll::Ready(Some(Ok(Frame::data(this.event())))),
            Poll::Pending => Poll::Pending,
        }
    }
}
