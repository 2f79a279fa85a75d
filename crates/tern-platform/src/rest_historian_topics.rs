//! The historian of plain listeners on the broker's admin API (`/api/v1/historian/...`,
//! behind the admin API's key check), for messages kept by `historian_topic` lines
//! ([`crate::historian_topics`]):
//! - `GET /topics`: the lines in force, and those that left but still hold events;
//! - `GET /events?topic=<topic>&start=&end=&limit=&bookmark=`: a topic's messages, oldest
//!   first, in pages, or with `agg=&interval=&field=` its aggregates, exactly as an
//!   organization's device events are read ([`crate::historian_query`]).
//!
//! Errors have the admin API's shape, `{"error": message}`. Queries share the REST API's
//! limits: at most [`QUERY_SLOTS`] at once on blocking threads, never the broker's.

use crate::historian::{EventPage, EventQuery, Historian, HistorianError, StoredEvent};
use crate::historian_query::{aggregate, parse, percent_decode};
use crate::rest_historian::{QUERY_SLOTS, QUERY_WAIT};
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde_json::{json, Value};
use std::sync::Arc;

/// Where the routes are served, beside the broker's own `/api/v1` routes.
pub const PREFIX: &str = "/api/v1/historian";

/// The routes' state.
struct Topics {
    historian: Arc<Historian>,
    slots: tokio::sync::Semaphore,
}

type Shared = State<Arc<Topics>>;

/// The routes, relative to [`PREFIX`].
pub fn router(historian: Arc<Historian>) -> axum::Router {
    let state = Arc::new(Topics {
        historian,
        slots: tokio::sync::Semaphore::new(QUERY_SLOTS),
    });
    axum::Router::new()
        .route("/topics", get(topics))
        .route("/events", get(events))
        .with_state(state)
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, axum::Json(json!({ "error": message.into() }))).into_response()
}

fn historian_error(e: HistorianError) -> Response {
    match e {
        HistorianError::Invalid(what) => error(StatusCode::BAD_REQUEST, what),
        e => {
            tracing::error!("historian: {e}");
            error(StatusCode::SERVICE_UNAVAILABLE, e.to_string())
        }
    }
}

async fn topics(State(t): Shared) -> Response {
    let stores = t.historian.configs.topics.all();
    axum::Json(json!({ "topics": stores.iter().map(|s| s.to_json()).collect::<Vec<_>>() })).into_response()
}

/// Takes `topic=` out of a query string: the topic, and the rest for [`parse`].
fn split_topic(query: &str) -> Result<(String, String), String> {
    let mut topic = None;
    let mut rest = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some(("topic", raw)) => {
                let value = percent_decode(raw).ok_or("topic: bad percent-encoding")?;
                if topic.replace(value).is_some() {
                    return Err("topic is given twice".into());
                }
            }
            _ => rest.push(pair),
        }
    }
    let topic = topic.ok_or("topic (the topic whose messages to read, percent-encoded) is needed")?;
    if let Err(e) = tern_proto::topic::validate_topic_name(&topic) {
        return Err(format!("topic {topic:?} is not a topic name: {e}"));
    }
    Ok((topic, rest.join("&")))
}

async fn events(State(t): Shared, RawQuery(query): RawQuery) -> Response {
    let (topic, rest) = match split_topic(query.as_deref().unwrap_or_default()) {
        Ok(split) => split,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    let request = match parse(Some(&rest), crate::historian::now_ms()) {
        Ok(request) => request,
        Err(e) => return historian_error(e),
    };
    let Some(store) = t.historian.configs.topics.for_query(&topic) else {
        return error(
            StatusCode::NOT_FOUND,
            format!("no historian_topic line stores {topic:?}"),
        );
    };
    let Ok(Ok(_slot)) = tokio::time::timeout(QUERY_WAIT, t.slots.acquire()).await else {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the historian is busy with other queries: try again",
        );
    };
    let query = EventQuery {
        org: store.org(),
        type_id: String::new(),
        device_id: topic,
        event_id: String::new(),
        start_ms: request.start_ms,
        end_ms: request.end_ms,
        limit: request.limit,
        after: request.after,
    };
    let backend = t.historian.backend.clone();
    let answer = tokio::task::spawn_blocking(move || match &request.aggregate {
        Some(agg) => aggregate(backend.as_ref(), query, agg),
        None => backend.query(&query).map(|page| page_json(&page)),
    })
    .await;
    match answer {
        Ok(Ok(value)) => axum::Json(value).into_response(),
        Ok(Err(e)) => historian_error(e),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, format!("the query failed: {e}")),
    }
}

/// A page of a topic's messages: each with its time, topic, and payload (its JSON when
/// it is JSON, `format` `json`; else base64, `format` `base64`).
fn page_json(page: &EventPage) -> Value {
    json!({
        "events": page.events.iter().map(event_json).collect::<Vec<_>>(),
        "bookmark": page.bookmark.map(|b| b.encode()),
    })
}

fn event_json(event: &StoredEvent) -> Value {
    let (format, payload) = match serde_json::from_slice::<Value>(&event.payload) {
        Ok(value) => ("json", value),
        Err(_) => ("base64", Value::String(STANDARD.encode(&event.payload))),
    };
    json!({
        "timestamp": crate::lec::timestamp(event.timestamp_ms),
        "topic": event.device_id,
        "format": format,
        "payload": payload,
    })
}
