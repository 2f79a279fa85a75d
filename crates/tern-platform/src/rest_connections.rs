//! Connection states over REST ([`crate::rest`]): whether a client of the caller's
//! organization is connected, from the broker's sessions through the admin facade.
//!
//! - `GET /clientconnectionstates/<clientId>`, and the same for a registered device as
//!   `GET /device/types/<t>/devices/<d>/connection`: `{"id": <clientId>,
//!   "connectionStatus": "connected"|"disconnected", "connectedAt"?}`;
//! - `GET /clientconnectionstates`: a page of the organization's registered devices'
//!   states, filtered by `deviceType`, `deviceId`, `connectionStatus` and
//!   `connectedAfter` (an ISO 8601 UTC time), as the platform's SDKs ask.
//!
//! The list looks at every registered device of the organization (one session lookup
//! each), so it costs in proportion to the registry's size.

use crate::rest::{authenticate, json_answer, path, registered_device, Answer, Need, Page, Rest, RestError, RestState};
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, RawQuery};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::get;
use axum::Router;
use serde_json::{json, Value};
use std::sync::Arc;

pub(crate) fn routes() -> Router<Arc<RestState>> {
    Router::new()
        .route("/device/types/{t}/devices/{d}/connection", get(device_connection))
        .route("/clientconnectionstates", get(connection_states))
        .route("/clientconnectionstates/{client}", get(connection_state))
}

/// The state of `client_id` (a client id of the caller's organization).
fn connection_json(state: &RestState, client_id: &str) -> Value {
    match state.admin.client(client_id) {
        Ok(info) if info.connected => {
            let mut v = json!({"id": client_id, "connectionStatus": "connected"});
            if let (Some(ms), Value::Object(map)) = (info.connected_since_ms, &mut v) {
                map.insert("connectedAt".into(), Value::String(crate::lec::timestamp(ms)));
            }
            v
        }
        _ => json!({"id": client_id, "connectionStatus": "disconnected"}),
    }
}

async fn device_connection(
    state: Rest,
    headers: HeaderMap,
    p: Result<Path<(String, String)>, PathRejection>,
) -> Answer {
    let (org, device, class) = registered_device(&state, &headers, Need::Read, p).await?;
    json_answer(StatusCode::OK, connection_json(&state, &device.client_id(&org, class)))
}

async fn connection_state(state: Rest, headers: HeaderMap, p: Result<Path<String>, PathRejection>) -> Answer {
    let org = authenticate(&state, &headers, None).await?.app(Need::Read)?.to_string();
    let client = path(p)?;
    let of_org = client.split(':').nth(1) == Some(org.as_str()) && client.len() <= 200;
    if !of_org {
        return Err(RestError::not_found(format!(
            "{client:?} is not a client id of organization {org}"
        )));
    }
    json_answer(StatusCode::OK, connection_json(&state, &client))
}

/// The filters of `GET /clientconnectionstates`.
#[derive(Debug, Default)]
struct Filters {
    device_type: Option<String>,
    device_id: Option<String>,
    connected: Option<bool>,
    /// `YYYY-MM-DDTHH:MM:SS` (UTC): only clients connected after it.
    connected_after: Option<String>,
}

/// `%XX` escapes and `+` of a query value.
fn unescape(value: &str) -> String {
    let hex = |b: u8| (b as char).to_digit(16).and_then(|d| u8::try_from(d).ok());
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = match bytes[i] {
            b'%' if i + 2 < bytes.len() => hex(bytes[i + 1]).zip(hex(bytes[i + 2])),
            _ => None,
        };
        match (escaped, bytes[i]) {
            (Some((high, low)), _) => {
                out.push(high * 16 + low);
                i += 3;
                continue;
            }
            (None, b'+') => out.push(b' '),
            (None, b) => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl Filters {
    fn parse(query: Option<&str>) -> Result<Filters, RestError> {
        let mut filters = Filters::default();
        for pair in query.unwrap_or_default().split('&').filter(|p| !p.is_empty()) {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            let value = unescape(value);
            match name {
                "deviceType" | "typeId" => filters.device_type = Some(value),
                "deviceId" => filters.device_id = Some(value),
                "connectionStatus" => {
                    filters.connected = Some(match value.as_str() {
                        "connected" => true,
                        "disconnected" => false,
                        _ => {
                            return Err(RestError::bad_request(
                                "connectionStatus must be connected or disconnected",
                            ))
                        }
                    })
                }
                "connectedAfter" => {
                    let head = value.get(..19).filter(|h| h.as_bytes().get(10) == Some(&b'T'));
                    let Some(head) = head else {
                        return Err(RestError::bad_request(
                            "connectedAfter must be an ISO 8601 time, 2026-01-31T12:00:00Z",
                        ));
                    };
                    filters.connected_after = Some(head.to_string());
                }
                _ => {}
            }
        }
        Ok(filters)
    }

    fn admit(&self, type_id: &str, device_id: &str, state: &Value) -> bool {
        let connected = state["connectionStatus"] == "connected";
        self.device_type.as_ref().is_none_or(|t| t == type_id)
            && self.device_id.as_ref().is_none_or(|d| d == device_id)
            && self.connected.is_none_or(|c| c == connected)
            && self.connected_after.as_ref().is_none_or(|after| {
                state["connectedAt"]
                    .as_str()
                    .and_then(|at| at.get(..19))
                    .is_some_and(|at| at > after.as_str())
            })
    }
}

async fn connection_states(state: Rest, headers: HeaderMap, RawQuery(query): RawQuery) -> Answer {
    let org = authenticate(&state, &headers, None).await?.app(Need::Read)?.to_string();
    let page = Page::parse(query.as_deref())?;
    let filters = Filters::parse(query.as_deref())?;
    let data = crate::rest_registry::read(&state, &org).await?;
    let items = data.devices.iter().flat_map(|(t, devices)| {
        let class = data.class_of(t);
        let (state, org, filters) = (&state, &org, &filters);
        devices.values().filter_map(move |d| {
            let client_id = d.client_id(org, class);
            let json = connection_json(state, &client_id);
            filters.admit(t, &d.device_id, &json).then_some((client_id, json))
        })
    });
    json_answer(StatusCode::OK, page.answer(items))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_values_are_unescaped() {
        assert_eq!(unescape("2026-01-31T12%3A00%3A00Z"), "2026-01-31T12:00:00Z");
        assert_eq!(unescape("a+b%2"), "a b%2");
        assert_eq!(unescape("%zz%"), "%zz%");
    }
}
