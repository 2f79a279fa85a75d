//! The routes of the HTTP API (`/api/v1/...`), health, readiness and metrics. Handlers
//! check their input ([`super::input`]) and call the admin facade; they never touch the
//! broker's state themselves.

use super::input::{check_fields, encode_cursor, field, read_object, ApiError, Query};
use crate::admin::{Admin, ClientFilter, Listing, PublishRequest, SubscriptionFilter};
use crate::api_keys::ApiKeys;
use crate::broker::BrokerState;
use axum::body::Body;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde::Serialize;
use serde_json::{json, Map, Value};
use std::sync::Arc;
use tern_proto::{ByteStr, Properties, Property, QoS};

/// The OpenAPI description of this API.
pub(crate) const OPENAPI: &str = include_str!("openapi.json");

/// What every handler gets.
#[derive(Debug)]
pub struct ApiState {
    pub admin: Admin,
    pub keys: Arc<ApiKeys>,
    pub broker: Arc<BrokerState>,
    /// The statistics streams open now (`/api/v1/stream/stats`).
    pub streams: super::stream::OpenStreams,
}

type Api = State<Arc<ApiState>>;
type Answer = Result<Response, ApiError>;

/// Every route, an embedder's `extra` ones included, behind the API key check.
pub fn router(state: Arc<ApiState>, extra: Vec<(&'static str, Router)>) -> Router {
    let mut routes = Router::new();
    for (prefix, nested) in extra {
        routes = routes.nest_service(prefix, nested);
    }
    routes
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/api/v1/openapi.json", get(openapi))
        .route("/api/v1/clients", get(clients))
        .route("/api/v1/clients/{client_id}", get(client))
        .route("/api/v1/clients/{client_id}/kick", post(kick))
        .route("/api/v1/clients/{client_id}/subscriptions", get(client_subscriptions))
        .route("/api/v1/clients/{client_id}/queue", get(client_queue))
        .route("/api/v1/subscriptions", get(subscriptions))
        .route("/api/v1/sessions", get(sessions))
        .route("/api/v1/sessions/{client_id}", axum::routing::delete(delete_session))
        .route("/api/v1/retained", get(retained_list).delete(retained_delete_matching))
        .route("/api/v1/retained/{*topic}", get(retained_get).delete(retained_delete))
        .route("/api/v1/publish", post(publish))
        .route("/api/v1/stats", get(stats))
        .route("/api/v1/listeners", get(listeners))
        .route("/api/v1/cluster", get(cluster))
        .route("/api/v1/reload", post(reload))
        .route("/api/v1/stream/stats", get(super::stream::stats))
        .route("/api/v1/stream/messages", get(super::topic_stream::messages))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            super::auth::require_key,
        ))
        // The console's static files, added after the key check: they hold no data.
        .merge(super::console::routes())
        .with_state(state)
}

async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "no such endpoint", Some("path"))
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method not allowed here",
        Some("method"),
    )
}

fn ok<T: Serialize>(value: T) -> Answer {
    Ok(Json(value).into_response())
}

fn listing<T: Serialize>(listing: Listing<T>) -> Answer {
    ok(json!({
        "items": listing.items,
        "next_cursor": listing.next.as_deref().map(encode_cursor),
    }))
}

/// A path parameter, or a 400 naming it.
fn param(path: Result<Path<String>, PathRejection>, name: &str) -> Result<String, ApiError> {
    path.map(|Path(p)| p)
        .map_err(|e| ApiError::bad(name, format!("invalid path parameter: {}", e.body_text())))
}

/// A retained topic from the path (`{*topic}` keeps no leading slash; `%2F` gives one).
fn topic_param(path: Result<Path<String>, PathRejection>) -> Result<String, ApiError> {
    let topic = param(path, "topic")?;
    mqtt_string("topic", &topic)?;
    tern_proto::topic::validate_topic_name(&topic).map_err(|e| ApiError::bad("topic", e))?;
    Ok(topic)
}

async fn healthz(RawQuery(q): RawQuery) -> Answer {
    Query::parse(q.as_deref(), &[])?;
    ok(json!({"status": "ok"}))
}

async fn readyz(State(api): Api, RawQuery(q): RawQuery) -> Answer {
    Query::parse(q.as_deref(), &[])?;
    let readiness = api.admin.readiness();
    let status = if readiness.ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    Ok((status, Json(readiness)).into_response())
}

async fn metrics(State(api): Api, RawQuery(q): RawQuery) -> Answer {
    Query::parse(q.as_deref(), &[])?;
    let text = crate::prometheus::render(&api.broker);
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response())
}

async fn openapi(RawQuery(q): RawQuery) -> Answer {
    Query::parse(q.as_deref(), &[])?;
    Ok(([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response())
}

async fn clients(State(api): Api, RawQuery(q): RawQuery) -> Answer {
    let names = ["connected", "user", "client_id_prefix", "protocol", "limit", "cursor"];
    let q = Query::parse(q.as_deref(), &names)?;
    let filter = ClientFilter {
        connected: q.bool("connected")?,
        user: q.string("user"),
        client_id_prefix: q.string("client_id_prefix"),
        protocol: q.string("protocol"),
    };
    if let Some(p) = &filter.protocol {
        if !["3.1", "3.1.1", "5.0", "mqtt", "websockets"].contains(&p.as_str()) {
            return Err(ApiError::bad(
                "protocol",
                "expected 3.1, 3.1.1, 5.0, mqtt or websockets",
            ));
        }
    }
    listing(api.admin.clients(&filter, &q.page()?))
}

async fn client(State(api): Api, path: Result<Path<String>, PathRejection>, RawQuery(q): RawQuery) -> Answer {
    let id = param(path, "client_id")?;
    Query::parse(q.as_deref(), &[])?;
    ok(api.admin.client(&id)?)
}

async fn kick(State(api): Api, path: Result<Path<String>, PathRejection>, RawQuery(q): RawQuery) -> Answer {
    let id = param(path, "client_id")?;
    Query::parse(q.as_deref(), &[])?;
    api.admin.kick(&id)?;
    ok(json!({"kicked": id}))
}

async fn client_subscriptions(
    State(api): Api,
    path: Result<Path<String>, PathRejection>,
    RawQuery(q): RawQuery,
) -> Answer {
    let id = param(path, "client_id")?;
    let q = Query::parse(q.as_deref(), &["limit", "cursor"])?;
    listing(api.admin.client_subscriptions(&id, &q.page()?)?)
}

async fn client_queue(State(api): Api, path: Result<Path<String>, PathRejection>, RawQuery(q): RawQuery) -> Answer {
    let id = param(path, "client_id")?;
    let q = Query::parse(q.as_deref(), &["limit"])?;
    let limit = q.page()?.limit;
    ok(api.admin.client_queue(&id, limit)?)
}

async fn subscriptions(State(api): Api, RawQuery(q): RawQuery) -> Answer {
    let q = Query::parse(q.as_deref(), &["topic", "filter", "limit", "cursor"])?;
    let filter = SubscriptionFilter {
        topic: q.string("topic"),
        filter: q.string("filter"),
    };
    if filter.topic.is_some() && filter.filter.is_some() {
        return Err(ApiError::bad(
            "filter",
            "give topic (subscriptions matching a topic) or filter (one filter), not both",
        ));
    }
    if let Some(topic) = &filter.topic {
        tern_proto::topic::validate_topic_name(topic).map_err(|e| ApiError::bad("topic", e))?;
    }
    listing(api.admin.subscriptions(&filter, &q.page()?))
}

async fn sessions(State(api): Api, RawQuery(q): RawQuery) -> Answer {
    let q = Query::parse(q.as_deref(), &["connected", "limit", "cursor"])?;
    listing(api.admin.sessions(q.bool("connected")?, &q.page()?))
}

async fn delete_session(State(api): Api, path: Result<Path<String>, PathRejection>, RawQuery(q): RawQuery) -> Answer {
    let id = param(path, "client_id")?;
    Query::parse(q.as_deref(), &[])?;
    api.admin.delete_session(&id)?;
    ok(json!({ "deleted": id }))
}

async fn retained_list(State(api): Api, RawQuery(q): RawQuery) -> Answer {
    let q = Query::parse(q.as_deref(), &["filter", "limit", "cursor"])?;
    let filter = q.get("filter").unwrap_or("#");
    listing(api.admin.retained(filter, &q.page()?)?)
}

async fn retained_delete_matching(State(api): Api, RawQuery(q): RawQuery) -> Answer {
    let q = Query::parse(q.as_deref(), &["filter"])?;
    let Some(filter) = q.get("filter") else {
        return Err(ApiError::bad(
            "filter",
            "a topic filter is needed (filter=# clears them all)",
        ));
    };
    let deleted = api.admin.delete_retained_matching(filter)?;
    ok(json!({ "deleted": deleted }))
}

async fn retained_get(State(api): Api, path: Result<Path<String>, PathRejection>, RawQuery(q): RawQuery) -> Answer {
    let topic = topic_param(path)?;
    Query::parse(q.as_deref(), &[])?;
    ok(api.admin.retained_message(&topic)?)
}

async fn retained_delete(State(api): Api, path: Result<Path<String>, PathRejection>, RawQuery(q): RawQuery) -> Answer {
    let topic = topic_param(path)?;
    Query::parse(q.as_deref(), &[])?;
    api.admin.delete_retained(&topic)?;
    ok(json!({ "deleted": 1 }))
}

async fn stats(State(api): Api, RawQuery(q): RawQuery) -> Answer {
    Query::parse(q.as_deref(), &[])?;
    ok(api.admin.stats())
}

async fn listeners(State(api): Api, RawQuery(q): RawQuery) -> Answer {
    Query::parse(q.as_deref(), &[])?;
    ok(json!({ "items": api.admin.listeners() }))
}

/// The cluster as the node that answers sees it (docs/cluster.md); a single broker
/// answers `"clustered": false` and no nodes.
async fn cluster(State(api): Api, RawQuery(q): RawQuery) -> Answer {
    Query::parse(q.as_deref(), &[])?;
    let Some(view) = api.broker.router.cluster().and_then(|c| c.view()) else {
        return ok(json!({ "clustered": false, "answered_by": null, "nodes": [] }));
    };
    let nodes: Vec<Value> = view
        .nodes
        .iter()
        .map(|n| {
            json!({
                "name": n.name,
                "healthy": n.healthy,
                "heartbeat_age_ms": n.heartbeat_age_ms,
                "clients": n.clients,
                "messages_in": n.messages_in,
                "messages_out": n.messages_out,
            })
        })
        .collect();
    let healthy = view.nodes.iter().filter(|n| n.healthy).count();
    ok(json!({ "clustered": true, "answered_by": view.node, "healthy": healthy, "nodes": nodes }))
}

async fn reload(State(api): Api, RawQuery(q): RawQuery) -> Answer {
    Query::parse(q.as_deref(), &[])?;
    api.admin.request_reload();
    Ok((StatusCode::ACCEPTED, Json(json!({"reload": "requested"}))).into_response())
}

async fn publish(State(api): Api, RawQuery(q): RawQuery, body: Body) -> Answer {
    Query::parse(q.as_deref(), &[])?;
    let fields = ["topic", "payload", "payload_base64", "qos", "retain", "properties"];
    let map = read_object(body, &fields).await?;
    let request = publish_request(&map)?;
    let delivered = api.admin.publish(request)?;
    ok(json!({ "delivered": delivered }))
}

/// The message a publish body describes.
fn publish_request(map: &Map<String, Value>) -> Result<PublishRequest, ApiError> {
    let topic: String = field(map, "topic", "")?.ok_or_else(|| ApiError::bad("topic", "missing"))?;
    mqtt_string("topic", &topic)?;
    let payload = match (
        field::<String>(map, "payload", "")?,
        field::<String>(map, "payload_base64", "")?,
    ) {
        (Some(_), Some(_)) => {
            return Err(ApiError::bad(
                "payload_base64",
                "give payload or payload_base64, not both",
            ))
        }
        (Some(text), None) => bytes::Bytes::from(text),
        (None, Some(b64)) => STANDARD
            .decode(b64)
            .map(bytes::Bytes::from)
            .map_err(|e| ApiError::bad("payload_base64", format!("invalid base64: {e}")))?,
        (None, None) => bytes::Bytes::new(),
    };
    let qos = match field::<u8>(map, "qos", "")? {
        None => QoS::AtMostOnce,
        Some(n) => QoS::from_u8(n).ok_or_else(|| ApiError::bad("qos", "expected 0, 1 or 2"))?,
    };
    let retain = field::<bool>(map, "retain", "")?.unwrap_or(false);
    let properties = match map.get("properties") {
        None | Some(Value::Null) => Properties::default(),
        Some(Value::Object(p)) => properties(p)?,
        Some(_) => return Err(ApiError::bad("properties", "expected an object")),
    };
    if properties.payload_format_indicator() == Some(1) && std::str::from_utf8(&payload).is_err() {
        return Err(ApiError::bad(
            "payload_base64",
            "payload_format_indicator 1 says UTF-8, and the payload is not",
        ));
    }
    Ok(PublishRequest {
        topic,
        payload,
        qos,
        retain,
        properties,
    })
}

/// Checks that `text` can be an MQTT UTF-8 string: at most 65,535 bytes, no U+0000
/// [MQTT-1.5.4-1, MQTT-1.5.4-2].
fn mqtt_string(field: &str, text: &str) -> Result<(), ApiError> {
    if text.len() > usize::from(u16::MAX) {
        return Err(ApiError::bad(field, "longer than 65,535 bytes"));
    }
    if text.contains('\0') {
        return Err(ApiError::bad(field, "contains U+0000, which MQTT strings may not"));
    }
    Ok(())
}

/// MQTT 5.0 properties of a published message.
fn properties(map: &Map<String, Value>) -> Result<Properties, ApiError> {
    const P: &str = "properties.";
    let known = [
        "payload_format_indicator",
        "message_expiry_interval",
        "content_type",
        "response_topic",
        "correlation_data",
        "user_properties",
    ];
    check_fields(map, &known, P)?;
    let mut out = Properties::default();
    if let Some(v) = field::<u8>(map, "payload_format_indicator", P)? {
        if v > 1 {
            return Err(ApiError::bad("properties.payload_format_indicator", "expected 0 or 1"));
        }
        out.push(Property::PayloadFormatIndicator(v));
    }
    if let Some(v) = field::<u32>(map, "message_expiry_interval", P)? {
        out.push(Property::MessageExpiryInterval(v));
    }
    if let Some(v) = field::<String>(map, "content_type", P)? {
        mqtt_string("properties.content_type", &v)?;
        out.push(Property::ContentType(ByteStr::from(v.as_str())));
    }
    if let Some(v) = field::<String>(map, "response_topic", P)? {
        tern_proto::topic::validate_topic_name(&v).map_err(|e| ApiError::bad("properties.response_topic", e))?;
        mqtt_string("properties.response_topic", &v)?;
        out.push(Property::ResponseTopic(ByteStr::from(v.as_str())));
    }
    if let Some(v) = field::<String>(map, "correlation_data", P)? {
        let data = STANDARD
            .decode(v)
            .map_err(|e| ApiError::bad("properties.correlation_data", format!("invalid base64: {e}")))?;
        out.push(Property::CorrelationData(bytes::Bytes::from(data)));
    }
    if let Some(pairs) = field::<Vec<(String, String)>>(map, "user_properties", P)? {
        for (k, v) in pairs {
            mqtt_string("properties.user_properties", &k)?;
            mqtt_string("properties.user_properties", &v)?;
            out.push(Property::UserProperty((
                ByteStr::from(k.as_str()),
                ByteStr::from(v.as_str()),
            )));
        }
    }
    Ok(out)
}
