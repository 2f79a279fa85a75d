//! Device management over REST ([`crate::rest`], docs/device-management.md): requests
//! to devices and the state devices report, over [`crate::dm::Dm`].
//!
//! - `POST /mgmt/requests[?override=true]` `{action, parameters?, devices, timeout?}`:
//!   202 `{"reqId"}`; `GET /mgmt/requests` (paged), `GET|DELETE /mgmt/requests/<id>`,
//!   `POST /mgmt/requests/<id>/cancel`, `GET /mgmt/requests/<id>/deviceStatus` (paged)
//!   and `.../deviceStatus/<type>/<device>`;
//! - device management extensions: `GET|POST /mgmt/custom/bundle`,
//!   `GET|PUT|DELETE /mgmt/custom/bundle/<id>` (the bundles whose actions a device
//!   declares in its manage request's `supports`);
//! - per device: `GET .../mgmt` (404 when not managed), `GET|PUT .../location`,
//!   `GET|POST|DELETE .../diag/errorCodes`, `GET|POST|DELETE .../diag/logs` and
//!   `GET|DELETE .../diag/logs/<id>`.
//!
//! Reading needs any application key of the organization; starting, cancelling and
//! deleting requests and changing a device's state need an admin or device-operator key.
//! What a request sends devices is published by [`crate::dm_task::apply`].

use crate::dm::{DmRefusal, Initiate};
use crate::rest::{authenticate, json_answer, path, read_json, Answer, Need, Page, Rest, RestError, RestState};
use axum::body::Body;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, RawQuery};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::Router;
use serde_json::{json, Value};
use std::sync::Arc;

/// Devices one request may name at most.
pub const MAX_DEVICES: usize = 5000;
/// A request's time to complete unless it says otherwise, and the most it may ask.
const DEFAULT_TIMEOUT_SECS: u64 = 600;
const MAX_TIMEOUT_SECS: u64 = 86_400;

type Segments<T> = Result<Path<T>, PathRejection>;

pub(crate) fn routes() -> Router<Arc<RestState>> {
    let device = "/device/types/{t}/devices/{d}";
    Router::new()
        .route("/mgmt/requests", get(list_requests).post(initiate))
        .route("/mgmt/requests/{id}", get(get_request).delete(delete_request))
        .route("/mgmt/requests/{id}/cancel", post(cancel_request))
        .route("/mgmt/requests/{id}/deviceStatus", get(device_statuses))
        .route("/mgmt/requests/{id}/deviceStatus/{t}/{d}", get(device_status))
        .route("/mgmt/custom/bundle", get(list_bundles).post(add_bundle))
        .route(
            "/mgmt/custom/bundle/{id}",
            get(get_bundle).put(update_bundle).delete(delete_bundle),
        )
        .route(&format!("{device}/mgmt"), get(device_mgmt))
        .route(&format!("{device}/location"), get(get_location).put(put_location))
        .route(
            &format!("{device}/diag/errorCodes"),
            get(error_codes).post(add_error_code).delete(clear_error_codes),
        )
        .route(
            &format!("{device}/diag/logs"),
            get(logs).post(add_log).delete(clear_logs),
        )
        .route(&format!("{device}/diag/logs/{{id}}"), get(get_log).delete(delete_log))
}

impl From<DmRefusal> for RestError {
    fn from(r: DmRefusal) -> RestError {
        RestError::new(
            StatusCode::from_u16(r.status).unwrap_or(StatusCode::BAD_REQUEST),
            r.message,
        )
    }
}

fn now() -> u64 {
    crate::dm_task::now_ms()
}

/// The caller's organization, for an application allowed `need`.
async fn org_of(state: &Rest, headers: &HeaderMap, need: Need) -> Result<String, RestError> {
    Ok(authenticate(state, headers, None).await?.app(need)?.to_string())
}

/// The body of `POST /mgmt/requests`.
fn initiate_of(body: &Value, override_: bool) -> Result<Initiate, RestError> {
    let Some(action) = body.get("action").and_then(Value::as_str) else {
        return Err(RestError::bad_request("action (a string) is missing"));
    };
    let parameters = match body.get("parameters") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items
            .iter()
            .map(|p| match (p.get("name").and_then(Value::as_str), p.get("value")) {
                (Some(name), value) => Ok((name.to_string(), value.cloned().unwrap_or(Value::Null))),
                _ => Err(RestError::bad_request(
                    "each parameter is {\"name\": ..., \"value\": ...}",
                )),
            })
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(RestError::bad_request("parameters must be an array")),
    };
    let Some(Value::Array(items)) = body.get("devices") else {
        return Err(RestError::bad_request(
            "devices (an array of {typeId, deviceId}) is missing",
        ));
    };
    if items.is_empty() || items.len() > MAX_DEVICES {
        return Err(RestError::bad_request(format!(
            "a request names 1 to {MAX_DEVICES} devices (this one {})",
            items.len()
        )));
    }
    let mut devices = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        match (
            item.get("typeId").and_then(Value::as_str),
            item.get("deviceId").and_then(Value::as_str),
        ) {
            (Some(t), Some(d)) => devices.push((t.to_string(), d.to_string())),
            _ => {
                return Err(RestError::bad_request(format!(
                    "devices[{i}] must be {{\"typeId\": ..., \"deviceId\": ...}}"
                )))
            }
        }
    }
    let timeout_secs = match body.get("timeout") {
        None | Some(Value::Null) => DEFAULT_TIMEOUT_SECS,
        Some(v) => v
            .as_u64()
            .filter(|t| (1..=MAX_TIMEOUT_SECS).contains(t))
            .ok_or_else(|| RestError::bad_request(format!("timeout must be 1 to {MAX_TIMEOUT_SECS} seconds")))?,
    };
    Ok(Initiate {
        action: action.to_string(),
        parameters,
        devices,
        timeout_secs,
        override_,
    })
}

/// Whether the query says `override=true`.
fn overrides(query: Option<&str>) -> bool {
    query
        .unwrap_or("")
        .split('&')
        .any(|pair| pair.eq_ignore_ascii_case("override=true"))
}

async fn initiate(state: Rest, headers: HeaderMap, RawQuery(query): RawQuery, body: Body) -> Answer {
    let org = org_of(&state, &headers, Need::Registry).await?;
    let body = read_json(body).await?;
    let request = initiate_of(&body, overrides(query.as_deref()))?;
    let registry = state.registry.clone();
    let registered = |t: &str, d: &str| registry.device(&org, t, d).is_some();
    let (id, effects) = state.dm.initiate(now(), registered, &org, request)?;
    crate::dm_task::apply(&state.admin, &state.registry, &state.dm, effects);
    json_answer(StatusCode::ACCEPTED, json!({ "reqId": id }))
}

async fn list_requests(state: Rest, headers: HeaderMap, RawQuery(query): RawQuery) -> Answer {
    let org = org_of(&state, &headers, Need::Read).await?;
    let page = Page::parse(query.as_deref())?;
    // Newest first: keyed by position so the bookmark follows that order.
    let items = state.dm.requests(&org).into_iter().enumerate();
    json_answer(StatusCode::OK, page.answer(items.map(|(i, v)| (format!("{i:08}"), v))))
}

async fn get_request(state: Rest, headers: HeaderMap, p: Segments<String>) -> Answer {
    let org = org_of(&state, &headers, Need::Read).await?;
    let id = path(p)?;
    match state.dm.request(&org, &id) {
        Some(v) => json_answer(StatusCode::OK, v),
        None => Err(RestError::not_found(format!("no request {id}"))),
    }
}

async fn delete_request(state: Rest, headers: HeaderMap, p: Segments<String>) -> Answer {
    let org = org_of(&state, &headers, Need::Registry).await?;
    let id = path(p)?;
    let effects = state.dm.delete(now(), &org, &id)?;
    crate::dm_task::apply(&state.admin, &state.registry, &state.dm, effects);
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn cancel_request(state: Rest, headers: HeaderMap, p: Segments<String>) -> Answer {
    let org = org_of(&state, &headers, Need::Registry).await?;
    let id = path(p)?;
    let (value, effects) = state.dm.cancel(now(), &org, &id)?;
    crate::dm_task::apply(&state.admin, &state.registry, &state.dm, effects);
    json_answer(StatusCode::OK, value)
}

async fn device_statuses(state: Rest, headers: HeaderMap, p: Segments<String>, RawQuery(query): RawQuery) -> Answer {
    let org = org_of(&state, &headers, Need::Read).await?;
    let id = path(p)?;
    let page = Page::parse(query.as_deref())?;
    let Some(all) = state.dm.device_statuses(&org, &id) else {
        return Err(RestError::not_found(format!("no request {id}")));
    };
    let items = all.into_iter().map(|v| {
        let key = format!(
            "{}/{}",
            v["typeId"].as_str().unwrap_or(""),
            v["deviceId"].as_str().unwrap_or("")
        );
        (key, v)
    });
    json_answer(StatusCode::OK, page.answer(items))
}

async fn device_status(state: Rest, headers: HeaderMap, p: Segments<(String, String, String)>) -> Answer {
    let org = org_of(&state, &headers, Need::Read).await?;
    let (id, t, d) = path(p)?;
    match state.dm.device_status(&org, &id, &t, &d) {
        Some(v) => json_answer(StatusCode::OK, v),
        None => Err(RestError::not_found(format!("no request {id} for device {t}/{d}"))),
    }
}

async fn list_bundles(state: Rest, headers: HeaderMap, RawQuery(query): RawQuery) -> Answer {
    let org = org_of(&state, &headers, Need::Read).await?;
    let page = Page::parse(query.as_deref())?;
    let items = state.dm.bundles(&org).into_iter().map(|v| {
        let key = v["bundleId"].as_str().unwrap_or("").to_string();
        (key, v)
    });
    json_answer(StatusCode::OK, page.answer(items))
}

async fn add_bundle(state: Rest, headers: HeaderMap, body: Body) -> Answer {
    let org = org_of(&state, &headers, Need::Registry).await?;
    let body = read_json(body).await?;
    json_answer(StatusCode::CREATED, state.dm.add_bundle(&org, &body)?)
}

async fn get_bundle(state: Rest, headers: HeaderMap, p: Segments<String>) -> Answer {
    let org = org_of(&state, &headers, Need::Read).await?;
    let id = path(p)?;
    match state.dm.bundle(&org, &id) {
        Some(v) => json_answer(StatusCode::OK, v),
        None => Err(RestError::not_found(format!("no bundle {id}"))),
    }
}

async fn update_bundle(state: Rest, headers: HeaderMap, p: Segments<String>, body: Body) -> Answer {
    let org = org_of(&state, &headers, Need::Registry).await?;
    let id = path(p)?;
    let body = read_json(body).await?;
    json_answer(StatusCode::OK, state.dm.update_bundle(&org, &id, &body)?)
}

async fn delete_bundle(state: Rest, headers: HeaderMap, p: Segments<String>) -> Answer {
    let org = org_of(&state, &headers, Need::Registry).await?;
    let id = path(p)?;
    if state.dm.delete_bundle(&org, &id) {
        Ok(StatusCode::NO_CONTENT.into_response())
    } else {
        Err(RestError::not_found(format!("no bundle {id}")))
    }
}

/// The caller's organization and a registered device of it named by the path.
async fn device_of(
    state: &Rest,
    headers: &HeaderMap,
    need: Need,
    p: Segments<(String, String)>,
) -> Result<(String, String, String), RestError> {
    let (org, device, _) = crate::rest::registered_device(state, headers, need, p).await?;
    Ok((org, device.type_id.clone(), device.device_id.clone()))
}

async fn device_mgmt(state: Rest, headers: HeaderMap, p: Segments<(String, String)>) -> Answer {
    let (org, t, d) = device_of(&state, &headers, Need::Read, p).await?;
    match state.dm.mgmt(&org, &t, &d) {
        Some(v) => json_answer(StatusCode::OK, v),
        None => Err(RestError::not_found(format!("device {t}/{d} is not managed"))),
    }
}

async fn get_location(state: Rest, headers: HeaderMap, p: Segments<(String, String)>) -> Answer {
    let (org, t, d) = device_of(&state, &headers, Need::Read, p).await?;
    let reported = state.dm.location(&org, &t, &d);
    let registered = || {
        state
            .registry
            .device(&org, &t, &d)
            .and_then(|device| device.location.clone())
    };
    match reported.or_else(registered) {
        Some(v) => json_answer(StatusCode::OK, v),
        None => Err(RestError::not_found(format!("device {t}/{d} has no location"))),
    }
}

async fn put_location(state: Rest, headers: HeaderMap, p: Segments<(String, String)>, body: Body) -> Answer {
    let (org, t, d) = device_of(&state, &headers, Need::Registry, p).await?;
    let body = read_json(body).await?;
    let (value, effects) = state.dm.set_location(now(), &org, &t, &d, &body)?;
    crate::dm_task::apply(&state.admin, &state.registry, &state.dm, effects);
    json_answer(StatusCode::OK, value)
}

async fn error_codes(state: Rest, headers: HeaderMap, p: Segments<(String, String)>) -> Answer {
    let (org, t, d) = device_of(&state, &headers, Need::Read, p).await?;
    json_answer(StatusCode::OK, Value::Array(state.dm.error_codes(&org, &t, &d)))
}

async fn add_error_code(state: Rest, headers: HeaderMap, p: Segments<(String, String)>, body: Body) -> Answer {
    let (org, t, d) = device_of(&state, &headers, Need::Registry, p).await?;
    let body = read_json(body).await?;
    state.dm.add_error_code(now(), &org, &t, &d, &body)?;
    Ok(StatusCode::CREATED.into_response())
}

async fn clear_error_codes(state: Rest, headers: HeaderMap, p: Segments<(String, String)>) -> Answer {
    let (org, t, d) = device_of(&state, &headers, Need::Registry, p).await?;
    state.dm.clear_error_codes(&org, &t, &d);
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn logs(state: Rest, headers: HeaderMap, p: Segments<(String, String)>) -> Answer {
    let (org, t, d) = device_of(&state, &headers, Need::Read, p).await?;
    json_answer(StatusCode::OK, Value::Array(state.dm.logs(&org, &t, &d)))
}

async fn add_log(state: Rest, headers: HeaderMap, p: Segments<(String, String)>, body: Body) -> Answer {
    let (org, t, d) = device_of(&state, &headers, Need::Registry, p).await?;
    let body = read_json(body).await?;
    state.dm.add_log(now(), &org, &t, &d, &body)?;
    Ok(StatusCode::CREATED.into_response())
}

async fn clear_logs(state: Rest, headers: HeaderMap, p: Segments<(String, String)>) -> Answer {
    let (org, t, d) = device_of(&state, &headers, Need::Registry, p).await?;
    state.dm.clear_logs(&org, &t, &d);
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn get_log(state: Rest, headers: HeaderMap, p: Segments<(String, String, String)>) -> Answer {
    let (t, d, id) = path(p)?;
    let org = org_of(&state, &headers, Need::Read).await?;
    match state.dm.log(&org, &t, &d, &id) {
        Some(v) => json_answer(StatusCode::OK, v),
        None => Err(RestError::not_found(format!("no log entry {id} of device {t}/{d}"))),
    }
}

async fn delete_log(state: Rest, headers: HeaderMap, p: Segments<(String, String, String)>) -> Answer {
    let (t, d, id) = path(p)?;
    let org = org_of(&state, &headers, Need::Registry).await?;
    if state.dm.delete_log(&org, &t, &d, &id) {
        Ok(StatusCode::NO_CONTENT.into_response())
    } else {
        Err(RestError::not_found(format!("no log entry {id} of device {t}/{d}")))
    }
}
