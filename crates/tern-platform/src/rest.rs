//! The platform's REST API, `/api/v0002/...`, served on the broker's HTTP listeners
//! whenever `platform_domain` is set (handed to the broker with
//! `Broker::with_http_routes`, outside the admin API's key check): the registry (device
//! types, devices, bulk add and remove) in [`crate::rest_registry`], the last event
//! cache and HTTP messaging in [`crate::rest_messaging`] (a device's command long-poll in
//! [`crate::rest_commands`]), connection states in [`crate::rest_connections`].
//!
//! Every request authenticates with HTTP Basic: an application with its API key and
//! token, a device with `use-token-auth` and its token (devices may only post their own
//! events). The organization is the Host name's (`<org>.<domain>` or
//! `<org>.messaging.<domain>`) or, for an application, its key's (`a-<org>-...`); a key
//! used under another organization's name is refused. What a key may do is its role's:
//! every role reads; registry writes need `admin` or `device-operator`; the cache's
//! settings need `admin`; posting events and commands follows the same rights as over
//! MQTT. Token checks and file access run off the runtime's threads.
//!
//! Errors are JSON, `{"message": "...", "exception": {"id": "...", "properties": []}}`,
//! with a 4xx status for anything the request got wrong (503 when the registry's files
//! cannot be read or written, 429 when too many first-time token checks are made at once).
//! Bodies are limited to [`MAX_BODY`] bytes and must arrive within [`BODY_TIMEOUT`].

use crate::lec::Lec;
use crate::registry::{AuthRefusal, Registry, RegistryError};
use crate::registry_model::{org_of_key, ApiKey, Role};
use axum::body::{Body, Bytes};
use axum::extract::rejection::PathRejection;
use axum::extract::Path;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;
use tern_broker::admin::Admin;
use tern_broker::BrokerHandle;

/// Where the API is served.
pub const PREFIX: &str = "/api/v0002";
/// Largest request body (the platform's bulk add limit, 512 KB).
pub const MAX_BODY: usize = 512 << 10;
/// Time for a request's body to arrive.
pub const BODY_TIMEOUT: Duration = Duration::from_secs(10);
/// Results per page unless `_limit` says otherwise.
pub const DEFAULT_LIMIT: usize = 25;
/// Most results per page.
pub const MAX_LIMIT: usize = 1000;
/// Longest Authorization header looked at.
const MAX_AUTHORIZATION: usize = 1024;
/// The user name of a device's HTTP Basic credentials.
pub const DEVICE_USER: &str = "use-token-auth";

/// What every handler gets.
#[derive(Debug)]
pub struct RestState {
    pub registry: Arc<Registry>,
    /// Device management ([`crate::rest_mgmt`]).
    pub dm: Arc<crate::dm::Dm>,
    pub lec: Arc<Lec>,
    pub admin: Admin,
    /// `platform_domain`.
    pub domain: Option<String>,
    /// Each device's rate of events posted over HTTP.
    pub(crate) rates: crate::rest_messaging::EventRates,
    /// Devices waiting for a command over HTTP.
    pub(crate) commands: Arc<crate::rest_commands::CommandWaits>,
    /// The historian ([`crate::rest_historian`]).
    pub historian: crate::rest_historian::HistorianRest,
    /// Analytics rules ([`crate::rest_rules`]).
    pub rules: Arc<crate::rules::Rules>,
}

pub(crate) type Rest = axum::extract::State<Arc<RestState>>;
pub(crate) type Answer = Result<Response, RestError>;

/// The API's routes, relative to [`PREFIX`]: hand them to `Broker::with_http_routes`.
pub fn router(
    handle: &BrokerHandle,
    started: &crate::policy::Started,
    lec: Arc<Lec>,
    domain: Option<String>,
) -> axum::Router {
    let state = Arc::new(RestState {
        registry: started.registry.clone(),
        dm: started.dm.clone(),
        lec,
        admin: handle.admin(),
        domain,
        rates: Default::default(),
        commands: crate::rest_commands::CommandWaits::start(handle),
        historian: crate::rest_historian::HistorianRest::new(started.historian.clone()),
        rules: started.rules.clone(),
    });
    crate::rest_registry::routes()
        .merge(crate::rest_messaging::routes())
        .merge(crate::rest_connections::routes())
        .merge(crate::rest_commands::routes())
        .merge(crate::rest_mgmt::routes())
        .merge(crate::rest_historian::routes())
        .merge(crate::rest_rules::routes())
        .fallback(|| async { RestError::new(StatusCode::NOT_FOUND, "no such endpoint under /api/v0002") })
        .method_not_allowed_fallback(|| async {
            RestError::new(StatusCode::METHOD_NOT_ALLOWED, "method not allowed on this endpoint")
        })
        .with_state(state)
}

/// An error answer.
#[derive(Debug)]
pub struct RestError {
    pub status: StatusCode,
    pub message: String,
}

impl RestError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> RestError {
        RestError {
            status,
            message: message.into(),
        }
    }

    pub fn bad_request(message: impl Into<String>) -> RestError {
        RestError::new(StatusCode::BAD_REQUEST, message)
    }

    pub fn not_found(message: impl Into<String>) -> RestError {
        RestError::new(StatusCode::NOT_FOUND, message)
    }

    pub fn forbidden(message: impl Into<String>) -> RestError {
        RestError::new(StatusCode::FORBIDDEN, message)
    }

    fn unauthorized(message: impl Into<String>) -> RestError {
        RestError::new(StatusCode::UNAUTHORIZED, message)
    }
}

impl IntoResponse for RestError {
    fn into_response(self) -> Response {
        let id = format!("TERN{}E", self.status.as_u16());
        let body = json!({
            "message": format!("{id}: {}", self.message),
            "exception": { "id": id, "properties": [self.message] },
        });
        let mut response = (self.status, axum::Json(body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"iot\""),
            );
        }
        if self.status == StatusCode::TOO_MANY_REQUESTS {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}

impl From<RegistryError> for RestError {
    fn from(e: RegistryError) -> RestError {
        let status = match &e {
            RegistryError::BadId { .. } | RegistryError::Invalid(_) => StatusCode::BAD_REQUEST,
            RegistryError::NotFound(_) => StatusCode::NOT_FOUND,
            RegistryError::Exists(_) | RegistryError::InUse(_) => StatusCode::CONFLICT,
            RegistryError::Quota(_) => StatusCode::FORBIDDEN,
            _ => {
                tracing::error!("REST API: {e}");
                StatusCode::SERVICE_UNAVAILABLE
            }
        };
        RestError::new(status, e.to_string())
    }
}

/// A path's parameters, or the reason they are not.
pub(crate) fn path<T>(p: Result<Path<T>, PathRejection>) -> Result<T, RestError> {
    p.map(|Path(t)| t)
        .map_err(|e| RestError::bad_request(format!("bad path: {}", e.body_text())))
}

/// Runs blocking work (token checks, file access) off the runtime.
pub(crate) async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, RestError> + Send + 'static,
) -> Result<T, RestError> {
    tokio::task::spawn_blocking(work).await.unwrap_or_else(|_| {
        Err(RestError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "the request's work failed",
        ))
    })
}

/// Reads a request body of at most `limit` bytes within [`BODY_TIMEOUT`].
pub(crate) async fn read_body(body: Body, limit: usize) -> Result<Bytes, RestError> {
    match tokio::time::timeout(BODY_TIMEOUT, axum::body::to_bytes(body, limit)).await {
        Ok(Ok(bytes)) => Ok(bytes),
        Ok(Err(_)) => Err(RestError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the body is larger than {limit} bytes (or was cut off)"),
        )),
        Err(_) => Err(RestError::new(
            StatusCode::REQUEST_TIMEOUT,
            "the body did not arrive in time",
        )),
    }
}

/// A JSON request body. Fields set to `null` (in an object, or in the objects of an
/// array) are taken as absent, as the platform's SDKs send every optional field.
pub(crate) async fn read_json(body: Body) -> Result<Value, RestError> {
    let bytes = read_body(body, MAX_BODY).await?;
    let mut value: Value =
        serde_json::from_slice(&bytes).map_err(|e| RestError::bad_request(format!("the body is not JSON: {e}")))?;
    match &mut value {
        Value::Object(map) => map.retain(|_, v| !v.is_null()),
        Value::Array(items) => {
            for item in items {
                if let Value::Object(map) = item {
                    map.retain(|_, v| !v.is_null());
                }
            }
        }
        _ => {}
    }
    Ok(value)
}

/// Who sent a request.
#[derive(Debug, Clone)]
pub(crate) enum Caller {
    App { org: String, key: Arc<ApiKey> },
    Device { org: String },
}

/// What a request needs of an application's key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Need {
    /// Any role.
    Read,
    /// Change the registry: admin or device-operator.
    Registry,
    /// The organization's settings: admin.
    Admin,
}

impl Caller {
    /// The organization, if an application whose role allows `need`.
    pub(crate) fn app(&self, need: Need) -> Result<&str, RestError> {
        let Caller::App { org, key } = self else {
            return Err(RestError::forbidden("devices may only post their own events"));
        };
        let allowed = match need {
            Need::Read => true,
            Need::Registry => matches!(key.role, Role::Admin | Role::DeviceOperator),
            Need::Admin => key.role == Role::Admin,
        };
        if !allowed {
            return Err(RestError::forbidden(format!(
                "API key {} (role {}) may not do this",
                key.key,
                key.role.name()
            )));
        }
        Ok(org)
    }
}

/// The organization the Host header names (`<org>.<domain>`, `<org>.messaging.<domain>`).
fn host_org(headers: &HeaderMap, domain: Option<&str>) -> Option<String> {
    let domain = domain?;
    let host = headers.get(header::HOST)?.to_str().ok()?;
    let host = host.rsplit_once(':').map_or(host, |(h, port)| {
        if port.bytes().all(|b| b.is_ascii_digit()) {
            h
        } else {
            host
        }
    });
    let host = host.to_ascii_lowercase();
    let head = host.strip_suffix(domain)?.strip_suffix('.')?;
    let org = head.strip_suffix(".messaging").unwrap_or(head);
    crate::registry_model::check_org_id(org).ok()?;
    Some(org.to_string())
}

/// The user name and password of an HTTP Basic Authorization header.
fn basic(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers.get(header::AUTHORIZATION)?.as_bytes();
    if value.len() > MAX_AUTHORIZATION {
        return None;
    }
    let (scheme, token) = std::str::from_utf8(value).ok()?.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let pair = String::from_utf8(STANDARD.decode(token.trim()).ok()?).ok()?;
    let (user, password) = pair.split_once(':')?;
    Some((user.to_string(), password.to_string()))
}

fn auth_refusal(r: AuthRefusal) -> RestError {
    match r {
        AuthRefusal::Throttled => RestError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too many first-time token checks this second: try again",
        ),
        _ => RestError::unauthorized("invalid credentials"),
    }
}

/// Checks the request's credentials. `device` is the device a device may act as (the
/// path's); `None` where devices are not allowed at all.
pub(crate) async fn authenticate(
    state: &Arc<RestState>,
    headers: &HeaderMap,
    device: Option<(&str, &str)>,
) -> Result<Caller, RestError> {
    let Some((user, password)) = basic(headers) else {
        return Err(RestError::unauthorized(
            "HTTP Basic credentials are needed: an API key and its token, or use-token-auth and a device token",
        ));
    };
    let host = host_org(headers, state.domain.as_deref());
    let registry = state.registry.clone();
    if user == DEVICE_USER {
        let Some(org) = host else {
            return Err(RestError::unauthorized(
                "a device is known by its organization's host name, <org>.<domain>",
            ));
        };
        let Some((type_id, device_id)) = device else {
            return Err(RestError::forbidden("devices may only post their own events"));
        };
        let (t, d) = (type_id.to_string(), device_id.to_string());
        return blocking(move || {
            registry
                .verify_device_token(&org, &t, &d, password.as_bytes())
                .map_err(|r| match r {
                    AuthRefusal::Throttled => auth_refusal(r),
                    _ => RestError::unauthorized(format!(
                        "invalid credentials for device {t}/{d}: a device posts with its own token to its own path"
                    )),
                })?;
            Ok(Caller::Device { org })
        })
        .await;
    }
    let Some(key_org) = org_of_key(&user).map(str::to_string) else {
        return Err(RestError::unauthorized("invalid credentials"));
    };
    if host.as_ref().is_some_and(|h| *h != key_org) {
        return Err(RestError::unauthorized(
            "the API key belongs to another organization than the host name's",
        ));
    }
    blocking(move || {
        let key = registry
            .verify_key_token(&user, password.as_bytes())
            .map_err(auth_refusal)?;
        Ok(Caller::App { org: key_org, key })
    })
    .await
}

/// A registered device the path names, of the organization of a caller allowed `need`:
/// (organization, device, its type's class); 404 when the registry has no such device.
pub(crate) async fn registered_device(
    state: &Rest,
    headers: &HeaderMap,
    need: Need,
    p: Result<Path<(String, String)>, PathRejection>,
) -> Result<
    (
        String,
        Arc<crate::registry_model::Device>,
        crate::registry_model::DeviceClass,
    ),
    RestError,
> {
    let org = authenticate(state, headers, None).await?.app(need)?.to_string();
    let (t, d) = path(p)?;
    let device = state
        .registry
        .device(&org, &t, &d)
        .ok_or_else(|| RestError::not_found(format!("no device {t}/{d}")))?;
    let class = state
        .registry
        .device_type(&org, &t)
        .map(|ty| ty.class_id)
        .unwrap_or_default();
    Ok((org, device, class))
}

/// A page request: `_limit` and `_bookmark` of the query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Page {
    pub limit: usize,
    /// The last key of the previous page.
    pub after: Option<String>,
}

impl Page {
    pub(crate) fn parse(query: Option<&str>) -> Result<Page, RestError> {
        let mut page = Page {
            limit: DEFAULT_LIMIT,
            after: None,
        };
        for pair in query.unwrap_or_default().split('&').filter(|p| !p.is_empty()) {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            match name {
                "_limit" => {
                    page.limit = value
                        .parse()
                        .ok()
                        .filter(|n| (1..=MAX_LIMIT).contains(n))
                        .ok_or_else(|| {
                            RestError::bad_request(format!("_limit must be a number from 1 to {MAX_LIMIT}"))
                        })?;
                }
                "_bookmark" => {
                    let decoded = URL_SAFE_NO_PAD
                        .decode(value)
                        .ok()
                        .and_then(|b| String::from_utf8(b).ok())
                        .ok_or_else(|| RestError::bad_request("_bookmark is not one this API gave"))?;
                    page.after = Some(decoded);
                }
                _ => {}
            }
        }
        Ok(page)
    }

    /// One page of `items` (sorted by key): `{"results": [...], "meta": {"total_rows": n},
    /// "bookmark": "..."}`, the bookmark absent on the last page.
    pub(crate) fn answer(&self, items: impl Iterator<Item = (String, Value)>) -> Value {
        let mut total = 0usize;
        let mut results = Vec::new();
        let mut last = None;
        let mut more = false;
        for (key, value) in items {
            total += 1;
            if self.after.as_ref().is_some_and(|a| key <= *a) {
                continue;
            }
            if results.len() == self.limit {
                more = true;
                continue;
            }
            results.push(value);
            last = Some(key);
        }
        let mut answer = json!({ "results": results, "meta": { "total_rows": total } });
        if let (true, Some(last), Value::Object(map)) = (more, last, &mut answer) {
            map.insert("bookmark".into(), Value::String(URL_SAFE_NO_PAD.encode(last)));
        }
        answer
    }
}

/// A JSON answer with `status`.
pub(crate) fn json_answer(status: StatusCode, value: Value) -> Answer {
    Ok((status, axum::Json(value)).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_follow_their_bookmarks() {
        let items = || (0..7).map(|i| (format!("k{i}"), json!(i)));
        let mut page = Page::parse(Some("_limit=3&_sort=id")).unwrap_or_else(|e| panic!("{e:?}"));
        let mut seen = Vec::new();
        loop {
            let answer = page.answer(items());
            assert_eq!(answer["meta"]["total_rows"], 7);
            seen.extend(answer["results"].as_array().cloned().unwrap_or_default());
            let Some(bookmark) = answer["bookmark"].as_str() else {
                break;
            };
            page = Page::parse(Some(&format!("_limit=3&_bookmark={bookmark}"))).unwrap_or_else(|e| panic!("{e:?}"));
        }
        assert_eq!(seen, (0..7).map(|i| json!(i)).collect::<Vec<_>>());
        for bad in ["_limit=0", "_limit=x", "_limit=1001", "_bookmark=%%%"] {
            assert!(Page::parse(Some(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_host_name_names_the_organization() {
        let with = |host: &str| {
            let mut h = HeaderMap::new();
            h.insert(
                header::HOST,
                HeaderValue::from_str(host).unwrap_or_else(|e| panic!("{e}")),
            );
            host_org(&h, Some("iot.test"))
        };
        assert_eq!(with("acme.iot.test").as_deref(), Some("acme"));
        assert_eq!(with("Acme.IoT.test:8443").as_deref(), Some("acme"));
        assert_eq!(with("acme.messaging.iot.test").as_deref(), Some("acme"));
        assert_eq!(with("iot.test"), None);
        assert_eq!(with("a.b.iot.test"), None);
        assert_eq!(with("acme.iot.test.evil"), None);
        assert_eq!(with("127.0.0.1:80"), None);
    }
}
