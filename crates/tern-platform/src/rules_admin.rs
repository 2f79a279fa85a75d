//! Plain listeners' rules on the broker's admin API, behind its key check: the same
//! operations as an organization's `/api/v0002/rules` ([`crate::rest_rules::ops`]) on
//! the rules of [`crate::rules::PLAIN`] (`platform/rules/_plain.json`):
//! - `GET|POST /api/v1/rules`, `GET|PUT|DELETE /api/v1/rules/<id>`,
//!   `GET /api/v1/rules/<id>/alerts`;
//! - `GET /api/v1/alerts`.
//!
//! Errors have the admin API's shape, `{"error": message}`.

use crate::rest::{path, RestError};
use crate::rest_rules::ops;
use crate::rules::{Rules, PLAIN};
use axum::body::Body;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{json, Value};
use std::sync::Arc;

/// Where the rules are served.
pub const RULES_PREFIX: &str = "/api/v1/rules";
/// Where their alerts are served.
pub const ALERTS_PREFIX: &str = "/api/v1/alerts";

type Shared = State<Arc<Rules>>;

/// The routes under [`RULES_PREFIX`].
pub fn rules_router(rules: Arc<Rules>) -> axum::Router {
    axum::Router::new()
        .route("/", get(list).post(create))
        .route("/{id}", get(read).put(replace).delete(remove))
        .route("/{id}/alerts", get(rule_alerts))
        .with_state(rules)
}

/// The route under [`ALERTS_PREFIX`].
pub fn alerts_router(rules: Arc<Rules>) -> axum::Router {
    axum::Router::new().route("/", get(alerts)).with_state(rules)
}

fn answer(status: StatusCode, result: Result<Value, RestError>) -> Response {
    match result {
        Ok(value) => (status, axum::Json(value)).into_response(),
        Err(e) => (e.status, axum::Json(json!({ "error": e.message }))).into_response(),
    }
}

async fn list(State(rules): Shared) -> Response {
    answer(StatusCode::OK, Ok(ops::list(&rules, PLAIN)))
}

async fn create(State(rules): Shared, body: Body) -> Response {
    let result = match ops::definition(body).await {
        Ok(def) => ops::create(&rules, PLAIN, def).await,
        Err(e) => Err(e),
    };
    answer(StatusCode::CREATED, result)
}

async fn read(State(rules): Shared, p: Result<Path<String>, PathRejection>) -> Response {
    answer(StatusCode::OK, path(p).and_then(|id| ops::read(&rules, PLAIN, &id)))
}

async fn replace(State(rules): Shared, p: Result<Path<String>, PathRejection>, body: Body) -> Response {
    let result = match (path(p), ops::definition(body).await) {
        (Ok(id), Ok(def)) => ops::replace(&rules, PLAIN, &id, def).await,
        (Err(e), _) | (_, Err(e)) => Err(e),
    };
    answer(StatusCode::OK, result)
}

async fn remove(State(rules): Shared, p: Result<Path<String>, PathRejection>) -> Response {
    let result = match path(p) {
        Ok(id) => ops::remove(&rules, PLAIN, &id).await,
        Err(e) => Err(e),
    };
    match result {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => answer(StatusCode::OK, Err(e)),
    }
}

async fn rule_alerts(State(rules): Shared, p: Result<Path<String>, PathRejection>) -> Response {
    answer(
        StatusCode::OK,
        path(p).and_then(|id| ops::rule_alerts(&rules, PLAIN, &id)),
    )
}

async fn alerts(State(rules): Shared) -> Response {
    answer(StatusCode::OK, Ok(ops::alerts_json(&rules, PLAIN, None)))
}
