//! The registry on the broker's admin API (`/api/v1/platform/...`, behind the admin API's
//! key check): what `tern iot --url URL` sends. Each route turns its request into a
//! [`RegistryOp`], runs it on the broker's data directory and reloads the registry before
//! answering, so a client connecting right after the answer is judged by the change.
//! Errors have the admin API's shape, `{"error": message}`, with 400, 404 or 409.

use crate::registry::Registry;
use crate::registry_model::Role;
use crate::registry_ops::{NewType, RegistryOp, SettingsChange};
use crate::rest::{blocking, path, read_body, read_json, RestError, MAX_BODY};
use axum::body::Body;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::json;
use std::collections::HashMap;
use std::sync::Arc;

/// Where the routes are served, beside the broker's own `/api/v1` routes.
pub const PREFIX: &str = "/api/v1/platform";

type Shared = State<Arc<Registry>>;
type Segments<T> = Result<Path<T>, PathRejection>;

/// The routes, relative to [`PREFIX`].
pub fn router(registry: Arc<Registry>) -> axum::Router {
    axum::Router::new()
        .route("/orgs", get(org_list).post(org_create))
        .route("/orgs/{org}", get(org_get).patch(org_set).delete(org_delete))
        .route("/orgs/{org}/types", get(type_list).post(type_create))
        .route("/orgs/{org}/types/{type}", get(type_get).delete(type_delete))
        .route("/orgs/{org}/devices", get(device_list).post(device_create))
        .route("/orgs/{org}/bulk/devices/add", post(device_bulk_add))
        .route(
            "/orgs/{org}/devices/{type}/{device}",
            get(device_get).delete(device_delete),
        )
        .route("/orgs/{org}/devices/{type}/{device}/token", post(device_token))
        .route("/orgs/{org}/keys", get(key_list).post(key_create))
        .route("/orgs/{org}/keys/{key}", axum::routing::delete(key_revoke))
        .route("/orgs/{org}/keys/{key}/token", post(key_token))
        .fallback(|| async { error(RestError::not_found("no such route of the platform's admin API")) })
        .with_state(registry)
}

/// Runs `op` off the runtime; a change is made visible to the broker before the answer.
async fn run(registry: Arc<Registry>, op: Result<RegistryOp, RestError>, created: bool) -> Response {
    let bulk = matches!(op, Ok(RegistryOp::DeviceBulkAdd { .. }));
    let op = match op {
        Ok(op) => op,
        Err(e) => return error(e),
    };
    let result = blocking(move || {
        let value = op.run(registry.data_dir()).map_err(RestError::from)?;
        registry.reload_if_changed();
        Ok(value)
    })
    .await;
    match result {
        Ok(value) => {
            let partial = bulk
                && value
                    .as_array()
                    .is_some_and(|all| all.iter().any(|r| r["authToken"].is_null()));
            let status = match (created, partial) {
                // As the platform's bulk add: 202 when some devices were not added.
                (_, true) => StatusCode::ACCEPTED,
                (true, false) => StatusCode::CREATED,
                (false, false) => StatusCode::OK,
            };
            (status, axum::Json(value)).into_response()
        }
        Err(e) => error(e),
    }
}

fn error(e: RestError) -> Response {
    (e.status, axum::Json(json!({ "error": e.message }))).into_response()
}

/// A JSON body read into `T` (an empty body is `{}`), or a 400 naming what was wrong.
async fn body<T: for<'de> Deserialize<'de>>(body: Body) -> Result<T, RestError> {
    let bytes = read_body(body, MAX_BODY).await?;
    let value = if bytes.iter().all(u8::is_ascii_whitespace) {
        json!({})
    } else {
        serde_json::from_slice(&bytes).map_err(|e| RestError::bad_request(format!("the body is not JSON: {e}")))?
    };
    serde_json::from_value(value).map_err(|e| RestError::bad_request(format!("bad body: {e}")))
}

async fn org_list(State(r): Shared) -> Response {
    run(r, Ok(RegistryOp::OrgList), false).await
}

/// `{"org": ID, ...settings}`; an unknown setting is refused, not ignored.
async fn org_body(b: Body) -> Result<RegistryOp, RestError> {
    let mut value = read_json(b).await?;
    let org = match value.as_object_mut().and_then(|m| m.remove("org")) {
        Some(serde_json::Value::String(org)) => org,
        _ => return Err(RestError::bad_request("org (a string) is missing")),
    };
    let settings: SettingsChange =
        serde_json::from_value(value).map_err(|e| RestError::bad_request(format!("bad body: {e}")))?;
    Ok(RegistryOp::OrgCreate { org, settings })
}

async fn org_create(State(r): Shared, b: Body) -> Response {
    run(r, org_body(b).await, true).await
}

async fn org_get(State(r): Shared, p: Segments<String>) -> Response {
    run(r, path(p).map(|org| RegistryOp::OrgGet { org }), false).await
}

async fn org_set(State(r): Shared, p: Segments<String>, b: Body) -> Response {
    let op = match (path(p), body::<SettingsChange>(b).await) {
        (Ok(org), Ok(settings)) => Ok(RegistryOp::OrgSet { org, settings }),
        (Err(e), _) | (_, Err(e)) => Err(e),
    };
    run(r, op, false).await
}

async fn org_delete(State(r): Shared, p: Segments<String>) -> Response {
    run(r, path(p).map(|org| RegistryOp::OrgDelete { org }), false).await
}

async fn type_list(State(r): Shared, p: Segments<String>) -> Response {
    run(r, path(p).map(|org| RegistryOp::TypeList { org }), false).await
}

async fn type_create(State(r): Shared, p: Segments<String>, b: Body) -> Response {
    let op = match (path(p), body::<NewType>(b).await) {
        (Ok(org), Ok(new)) => Ok(RegistryOp::TypeCreate { org, new }),
        (Err(e), _) | (_, Err(e)) => Err(e),
    };
    run(r, op, true).await
}

async fn type_get(State(r): Shared, p: Segments<(String, String)>) -> Response {
    let op = path(p).map(|(org, type_id)| RegistryOp::TypeGet { org, type_id });
    run(r, op, false).await
}

async fn type_delete(State(r): Shared, p: Segments<(String, String)>) -> Response {
    let op = path(p).map(|(org, type_id)| RegistryOp::TypeDelete { org, type_id });
    run(r, op, false).await
}

async fn device_list(State(r): Shared, p: Segments<String>, Query(q): Query<HashMap<String, String>>) -> Response {
    let op = path(p).map(|org| RegistryOp::DeviceList {
        org,
        type_id: q.get("typeId").cloned(),
    });
    run(r, op, false).await
}

async fn device_create(State(r): Shared, p: Segments<String>, b: Body) -> Response {
    let op = match (path(p), read_json(b).await) {
        (Ok(org), Ok(device)) => Ok(RegistryOp::DeviceCreate { org, device }),
        (Err(e), _) | (_, Err(e)) => Err(e),
    };
    run(r, op, true).await
}

async fn device_bulk_add(State(r): Shared, p: Segments<String>, b: Body) -> Response {
    let op = match (path(p), read_json(b).await) {
        (Ok(org), Ok(devices)) => Ok(RegistryOp::DeviceBulkAdd { org, devices }),
        (Err(e), _) | (_, Err(e)) => Err(e),
    };
    run(r, op, true).await
}

async fn device_get(State(r): Shared, p: Segments<(String, String, String)>) -> Response {
    let op = path(p).map(|(org, type_id, device_id)| RegistryOp::DeviceGet {
        org,
        type_id,
        device_id,
    });
    run(r, op, false).await
}

async fn device_delete(State(r): Shared, p: Segments<(String, String, String)>) -> Response {
    let op = path(p).map(|(org, type_id, device_id)| RegistryOp::DeviceDelete {
        org,
        type_id,
        device_id,
    });
    run(r, op, false).await
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct TokenBody {
    #[serde(default)]
    auth_token: Option<String>,
}

async fn device_token(State(r): Shared, p: Segments<(String, String, String)>, b: Body) -> Response {
    let op = match (path(p), body::<TokenBody>(b).await) {
        (Ok((org, type_id, device_id)), Ok(t)) => Ok(RegistryOp::DeviceRegenerateToken {
            org,
            type_id,
            device_id,
            token: t.auth_token,
        }),
        (Err(e), _) | (_, Err(e)) => Err(e),
    };
    run(r, op, false).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyBody {
    #[serde(default)]
    role: Option<String>,
    #[serde(default)]
    description: Option<String>,
}

async fn key_create(State(r): Shared, p: Segments<String>, b: Body) -> Response {
    let op = match (path(p), body::<KeyBody>(b).await) {
        (Ok(org), Ok(k)) => k
            .role
            .as_deref()
            .unwrap_or("standard-app")
            .parse::<Role>()
            .map_err(RestError::from)
            .map(|role| RegistryOp::KeyCreate {
                org,
                role,
                description: k.description,
            }),
        (Err(e), _) | (_, Err(e)) => Err(e),
    };
    run(r, op, true).await
}

async fn key_list(State(r): Shared, p: Segments<String>) -> Response {
    run(r, path(p).map(|org| RegistryOp::KeyList { org }), false).await
}

async fn key_revoke(State(r): Shared, p: Segments<(String, String)>) -> Response {
    run(r, path(p).map(|(org, key)| RegistryOp::KeyRevoke { org, key }), false).await
}

async fn key_token(State(r): Shared, p: Segments<(String, String)>) -> Response {
    let op = path(p).map(|(org, key)| RegistryOp::KeyRegenerate { org, key });
    run(r, op, false).await
}
