//! The historian's REST routes ([`crate::historian`]):
//!
//! - `GET|PUT /config/historian`: an organization's settings, `{"enabled": bool,
//!   "retentionDays": 1..3650, "filter": {"typeIds": [...], "eventIds": [...]}}`; reading
//!   needs any role, changing needs `admin`. A change is in force when the answer comes.
//! - `GET /historian/types/<t>/devices/<d>/events/<e>?start=&end=&limit=&bookmark=`: a
//!   page of a device's stored events of one event id, oldest first, and with
//!   `agg=&interval=&field=` aggregates ([`crate::historian_query`]).
//!
//! Queries run on blocking threads, at most [`QUERY_SLOTS`] at once (a request waits up
//! to [`QUERY_WAIT`] for a slot, then gets 503), so however many arrive, the broker's
//! own threads never wait on the store.

use crate::historian::{EventQuery, Historian, HistorianConfig, HistorianError};
use crate::historian_query::{aggregate, page_json, parse};
use crate::rest::{authenticate, blocking, json_answer, path, read_json, Answer, Need, Rest, RestError, RestState};
use axum::body::Body;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, RawQuery};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::get;
use axum::Router;
use std::sync::Arc;
use std::time::Duration;

/// Queries run at once at most.
pub const QUERY_SLOTS: usize = 4;
/// How long a query waits for a slot.
pub const QUERY_WAIT: Duration = Duration::from_secs(5);

/// The historian's state in the REST API.
#[derive(Debug)]
pub struct HistorianRest {
    pub historian: Arc<Historian>,
    slots: tokio::sync::Semaphore,
}

impl HistorianRest {
    pub fn new(historian: Arc<Historian>) -> HistorianRest {
        HistorianRest {
            historian,
            slots: tokio::sync::Semaphore::new(QUERY_SLOTS),
        }
    }
}

pub(crate) fn routes() -> Router<Arc<RestState>> {
    Router::new()
        .route("/config/historian", get(get_config).put(put_config))
        .route("/historian/types/{t}/devices/{d}/events/{e}", get(events))
}

impl From<HistorianError> for RestError {
    fn from(e: HistorianError) -> RestError {
        match e {
            HistorianError::Invalid(what) => RestError::bad_request(what),
            e => {
                tracing::error!("historian: {e}");
                RestError::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string())
            }
        }
    }
}

async fn get_config(state: Rest, headers: HeaderMap) -> Answer {
    let org = authenticate(&state, &headers, None).await?.app(Need::Read)?.to_string();
    json_answer(StatusCode::OK, state.historian.historian.configs.get(&org).to_json())
}

async fn put_config(state: Rest, headers: HeaderMap, body: Body) -> Answer {
    let org = authenticate(&state, &headers, None)
        .await?
        .app(Need::Admin)?
        .to_string();
    let config = HistorianConfig::from_json(read_json(body).await?)?;
    let historian = state.historian.historian.clone();
    let answer = config.to_json();
    blocking(move || historian.configure(&org, config).map_err(RestError::from)).await?;
    json_answer(StatusCode::OK, answer)
}

/// A path's id, refused if it could not be a topic level.
fn check_level(what: &str, id: &str) -> Result<(), RestError> {
    if id.is_empty() || id.len() > 256 || id.contains(['/', '+', '#', '\0']) {
        return Err(RestError::bad_request(format!("{what} {id:?} is not a valid id")));
    }
    Ok(())
}

async fn events(
    state: Rest,
    headers: HeaderMap,
    p: Result<Path<(String, String, String)>, PathRejection>,
    RawQuery(query): RawQuery,
) -> Answer {
    let org = authenticate(&state, &headers, None).await?.app(Need::Read)?.to_string();
    let (type_id, device_id, event_id) = path(p)?;
    check_level("type", &type_id)?;
    check_level("device", &device_id)?;
    check_level("event", &event_id)?;
    let request = parse(query.as_deref(), crate::historian::now_ms())?;
    let Ok(Ok(_slot)) = tokio::time::timeout(QUERY_WAIT, state.historian.slots.acquire()).await else {
        return Err(RestError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "the historian is busy with other queries: try again",
        ));
    };
    let query = EventQuery {
        org,
        type_id,
        device_id,
        event_id,
        start_ms: request.start_ms,
        end_ms: request.end_ms,
        limit: request.limit,
        after: request.after,
    };
    let backend = state.historian.historian.backend.clone();
    let answer = blocking(move || {
        Ok(match &request.aggregate {
            Some(agg) => aggregate(backend.as_ref(), query, agg)?,
            None => page_json(&backend.query(&query)?),
        })
    })
    .await?;
    json_answer(StatusCode::OK, answer)
}
