//! The REST API's messaging side ([`crate::rest`]): HTTP messaging (a device posting an
//! event, an application posting an event for a device or a command to one), and the last
//! event cache's settings and reads ([`crate::lec`]).
//!
//! A posted message is published through the broker's admin facade under the broker's
//! name of the topic a device would have used over MQTT
//! (`$iot/<org>/iot-2/type/<t>/id/<d>/evt/<e>/fmt/<f>`, see [`crate::topics`]), at QoS 0
//! without retain, so MQTT subscribers, status and the cache see it like any other
//! message. Its format is the request's Content-Type: `application/json` json,
//! `text/plain` text, `application/xml` xml, `application/octet-stream` (or none) bin.
//! Its payload is limited by the organization's `maxPayload`, and a device's events by
//! its organization's `deviceMessagesPerSecond` (429 beyond), as over MQTT.

use crate::lec::{ttl_of, CachedEvent};
use crate::policy::rights_of;
use crate::registry;
use crate::registry_model::check_id;
use crate::rest::{
    authenticate, blocking, json_answer, path, read_body, read_json, Answer, Caller, Need, Rest, RestError, RestState,
};
use crate::topics::org_root;
use axum::body::Body;
use axum::extract::rejection::PathRejection;
use axum::extract::Path;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::Router;
use parking_lot::Mutex;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

pub(crate) fn routes() -> Router<Arc<RestState>> {
    Router::new()
        .route("/config/lec", get(get_lec).put(put_lec))
        .route("/device/types/{t}/devices/{d}/events", get(cached_events))
        .route(
            "/device/types/{t}/devices/{d}/events/{e}",
            get(cached_event).post(device_event),
        )
        .route("/application/types/{t}/devices/{d}/events/{e}", post(app_event))
        .route("/application/types/{t}/devices/{d}/commands/{c}", post(app_command))
}

/// Longest event id, command id or format.
const MAX_NAME: usize = 36;

/// Each device's rate of events over HTTP: token buckets of a second's worth, by
/// (organization, type, device). A bucket idle for a second is full again, so such
/// buckets are dropped whenever the map has grown to another power of two (from 1024).
#[derive(Debug, Default)]
pub(crate) struct EventRates {
    buckets: Mutex<HashMap<DeviceKey, (f64, Instant)>>,
}

/// (organization, type, device).
type DeviceKey = (String, String, String);

impl EventRates {
    /// Takes one event of device `t`/`d` of `org`, allowed `per_second` (0: no limit).
    fn take(&self, org: &str, t: &str, d: &str, per_second: u32) -> bool {
        if per_second == 0 {
            return true;
        }
        let (now, rate) = (Instant::now(), f64::from(per_second));
        let mut buckets = self.buckets.lock();
        if buckets.len() >= 1024 && buckets.len().is_power_of_two() {
            buckets.retain(|_, (_, at)| now.saturating_duration_since(*at).as_secs_f64() < 1.0);
        }
        let (tokens, at) = buckets
            .entry((org.to_string(), t.to_string(), d.to_string()))
            .or_insert((rate, now));
        *tokens = (*tokens + now.saturating_duration_since(*at).as_secs_f64() * rate).min(rate.max(1.0));
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// The format of a posted message, from its Content-Type.
fn format_of(headers: &HeaderMap) -> Result<&'static str, RestError> {
    let Some(value) = headers.get(header::CONTENT_TYPE) else {
        return Ok("bin");
    };
    let mime = value
        .to_str()
        .ok()
        .and_then(|v| v.split(';').next())
        .map(|m| m.trim().to_ascii_lowercase())
        .unwrap_or_default();
    match mime.as_str() {
        "application/json" => Ok("json"),
        "text/plain" => Ok("text"),
        "application/xml" | "text/xml" => Ok("xml"),
        "application/octet-stream" => Ok("bin"),
        _ => Err(RestError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!(
                "Content-Type {mime:?} has no format: use application/json, text/plain, application/xml or application/octet-stream"
            ),
        )),
    }
}

/// An event or command id: the characters of the platform's ids.
fn check_name(what: &'static str, name: &str) -> Result<(), RestError> {
    if name.len() > MAX_NAME {
        return Err(RestError::bad_request(format!(
            "{what} {name:?} is longer than {MAX_NAME}"
        )));
    }
    check_id(what, name).map_err(RestError::from)
}

/// Publishes a posted message under `kind` (`evt` or `cmd`) of device `t`/`d` of `org`.
async fn post_message(
    state: &Arc<RestState>,
    org: &str,
    (t, d, kind, name): (&str, &str, &str, &str),
    headers: &HeaderMap,
    body: Body,
) -> Answer {
    check_id("device type id", t)?;
    check_id("device id", d)?;
    check_name(if kind == "evt" { "event id" } else { "command id" }, name)?;
    let format = format_of(headers)?;
    if state.registry.device(org, t, d).is_none() {
        return Err(RestError::not_found(format!("no device {t}/{d}")));
    }
    let settings = state.registry.org(org).map(|o| o.settings.clone()).unwrap_or_default();
    let payload = read_body(body, settings.max_payload as usize).await?;
    let per_second = settings.quotas.device_messages_per_second;
    if kind == "evt" && !state.rates.take(org, t, d, per_second) {
        return Err(RestError::new(
            StatusCode::TOO_MANY_REQUESTS,
            format!("device {t}/{d} may send {per_second} events a second (deviceMessagesPerSecond)"),
        ));
    }
    let topic = format!("{}iot-2/type/{t}/id/{d}/{kind}/{name}/fmt/{format}", org_root(org));
    state
        .admin
        .publish_as_broker(&topic, payload, false)
        .map_err(|e| RestError::bad_request(e.to_string()))?;
    Ok(StatusCode::OK.into_response())
}

type EventPath = Result<Path<(String, String, String)>, PathRejection>;

/// `POST /device/types/<t>/devices/<d>/events/<e>`: the device itself (`use-token-auth`)
/// or an application allowed to publish events.
async fn device_event(state: Rest, headers: HeaderMap, p: EventPath, body: Body) -> Answer {
    let (t, d, e) = path(p)?;
    let caller = authenticate(&state, &headers, Some((&t, &d))).await?;
    let org = match &caller {
        Caller::Device { org } => org.clone(),
        Caller::App { .. } => app_publisher(&caller, true)?,
    };
    post_message(&state, &org, (&t, &d, "evt", &e), &headers, body).await
}

/// The organization of an application whose key may publish events (`events`) or commands.
fn app_publisher(caller: &Caller, events: bool) -> Result<String, RestError> {
    let org = caller.app(Need::Read)?.to_string();
    let Caller::App { key, .. } = caller else {
        return Err(RestError::forbidden("only applications may do this"));
    };
    let rights = rights_of(key.role);
    let allowed = if events {
        rights.publish_events
    } else {
        rights.publish_commands
    };
    if !allowed {
        return Err(RestError::forbidden(format!(
            "API key {} (role {}) may not publish {}",
            key.key,
            key.role.name(),
            if events { "events" } else { "commands" }
        )));
    }
    Ok(org)
}

async fn app_event(state: Rest, headers: HeaderMap, p: EventPath, body: Body) -> Answer {
    let (t, d, e) = path(p)?;
    let caller = authenticate(&state, &headers, None).await?;
    let org = app_publisher(&caller, true)?;
    post_message(&state, &org, (&t, &d, "evt", &e), &headers, body).await
}

async fn app_command(state: Rest, headers: HeaderMap, p: EventPath, body: Body) -> Answer {
    let (t, d, c) = path(p)?;
    let caller = authenticate(&state, &headers, None).await?;
    let org = app_publisher(&caller, false)?;
    post_message(&state, &org, (&t, &d, "cmd", &c), &headers, body).await
}

async fn get_lec(state: Rest, headers: HeaderMap) -> Answer {
    let org = authenticate(&state, &headers, None).await?.app(Need::Read)?.to_string();
    let settings = state
        .registry
        .org(&org)
        .map(|o| o.settings.lec.clone())
        .unwrap_or_default();
    json_answer(
        StatusCode::OK,
        json!({"enabled": settings.enabled, "ttlDays": settings.ttl_days}),
    )
}

/// `PUT /config/lec` `{"enabled": bool, "ttlDays": 1..45}`.
async fn put_lec(state: Rest, headers: HeaderMap, body: Body) -> Answer {
    let org = authenticate(&state, &headers, None)
        .await?
        .app(Need::Admin)?
        .to_string();
    let body = read_json(body).await?;
    let Some(enabled) = body.get("enabled").and_then(Value::as_bool) else {
        return Err(RestError::bad_request("enabled (true or false) is missing"));
    };
    let ttl_days = match body.get("ttlDays") {
        None | Some(Value::Null) => None,
        Some(v) => Some(
            v.as_u64()
                .filter(|d| (1..=45).contains(d))
                .and_then(|d| u32::try_from(d).ok())
                .ok_or_else(|| RestError::bad_request("ttlDays must be a whole number of days from 1 to 45"))?,
        ),
    };
    let registry = state.registry.clone();
    let edited = org.clone();
    let settings = blocking(move || {
        let settings = registry::edit_org(registry.data_dir(), &edited, |data| {
            let lec = &mut data.org.settings.lec;
            lec.enabled = enabled;
            if let Some(days) = ttl_days {
                lec.ttl_days = days;
            }
            Ok(lec.clone())
        })?;
        registry.reload_if_changed();
        Ok(settings)
    })
    .await?;
    match settings.enabled {
        true => state.lec.listen_now(),
        false => state.lec.clear_org(&org),
    }
    json_answer(
        StatusCode::OK,
        json!({"enabled": settings.enabled, "ttlDays": settings.ttl_days}),
    )
}

/// The cached events of a device, once the caller and the cache are checked.
fn cached(state: &RestState, org: &str, t: &str, d: &str) -> Result<Vec<CachedEvent>, RestError> {
    let Some(ttl) = ttl_of(&state.registry, org) else {
        return Err(RestError::not_found(format!(
            "the last event cache is not enabled for organization {org} (PUT /api/v0002/config/lec)"
        )));
    };
    if state.registry.device(org, t, d).is_none() {
        return Err(RestError::not_found(format!("no device {t}/{d}")));
    }
    Ok(state.lec.device_events(org, t, d, ttl))
}

async fn cached_events(state: Rest, headers: HeaderMap, p: Result<Path<(String, String)>, PathRejection>) -> Answer {
    let org = authenticate(&state, &headers, None).await?.app(Need::Read)?.to_string();
    let (t, d) = path(p)?;
    let events = cached(&state, &org, &t, &d)?;
    json_answer(StatusCode::OK, events.iter().map(CachedEvent::to_api_json).collect())
}

async fn cached_event(state: Rest, headers: HeaderMap, p: EventPath) -> Answer {
    let org = authenticate(&state, &headers, None).await?.app(Need::Read)?.to_string();
    let (t, d, e) = path(p)?;
    let found = cached(&state, &org, &t, &d)?
        .into_iter()
        .find(|c| c.event_id == e)
        .ok_or_else(|| RestError::not_found(format!("no event {e} of device {t}/{d} in the cache")))?;
    json_answer(StatusCode::OK, found.to_api_json())
}
