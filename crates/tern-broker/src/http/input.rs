//! What a request brings, checked: query parameters (known names only, typed), paging
//! (`limit`, `cursor`), JSON bodies (bounded in size and time, unknown fields refused),
//! and the errors all of these answer with: a 4xx with `{"error": ..., "field": ...}`
//! naming what was wrong, never a 500.

use crate::admin::{AdminError, Page};
use axum::body::Body;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use http_body_util::BodyExt;
use serde_json::{json, Map, Value};
use std::time::Duration;

/// Largest request body read.
pub const MAX_BODY: usize = 1 << 20;
/// Longest a request body may take to arrive.
const BODY_TIMEOUT: Duration = Duration::from_secs(10);
/// Default and largest page size.
pub const DEFAULT_LIMIT: usize = 100;
pub const MAX_LIMIT: usize = 1000;

/// An answer that is not a success.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    pub field: Option<String>,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>, field: Option<&str>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
            field: field.map(str::to_string),
        }
    }

    pub fn bad(field: &str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, message, Some(field))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({ "error": self.message, "field": self.field });
        (self.status, axum::Json(body)).into_response()
    }
}

impl From<AdminError> for ApiError {
    fn from(e: AdminError) -> ApiError {
        let message = e.to_string();
        match e {
            AdminError::NotFound { .. } => ApiError::new(StatusCode::NOT_FOUND, message, None),
            AdminError::Invalid { field, .. } => ApiError::bad(field, message),
            AdminError::Unavailable { field, .. } => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, message, Some(field))
            }
            AdminError::NotConnected(_) | AdminError::Connected(_) => {
                ApiError::new(StatusCode::CONFLICT, message, Some("client_id"))
            }
        }
    }
}

/// Decodes `%XX` and `+` of a query string component.
fn percent_decode(text: &str, name: &str) -> Result<String, ApiError> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = bytes
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or_else(|| ApiError::bad(name, "invalid percent-encoding"))?;
                out.push(hex);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).map_err(|_| ApiError::bad(name, "not UTF-8"))
}

/// A request's query parameters, each allowed name at most once.
#[derive(Debug, Default)]
pub struct Query {
    pairs: Vec<(String, String)>,
}

impl Query {
    /// Parses `raw`, refusing names not in `allowed` and repeated names.
    pub fn parse(raw: Option<&str>, allowed: &[&str]) -> Result<Query, ApiError> {
        let mut pairs: Vec<(String, String)> = Vec::new();
        for part in raw.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            let (name, value) = part.split_once('=').unwrap_or((part, ""));
            let name = percent_decode(name, "query")?;
            if !allowed.contains(&name.as_str()) {
                let known = if allowed.is_empty() {
                    "none".to_string()
                } else {
                    allowed.join(", ")
                };
                return Err(ApiError::bad(
                    &name,
                    format!("unknown query parameter (known: {known})"),
                ));
            }
            if pairs.iter().any(|(n, _)| *n == name) {
                return Err(ApiError::bad(&name, "given more than once"));
            }
            let value = percent_decode(value, &name)?;
            pairs.push((name, value));
        }
        Ok(Query { pairs })
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.pairs.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    pub fn string(&self, name: &str) -> Option<String> {
        self.get(name).map(str::to_string)
    }

    pub fn bool(&self, name: &str) -> Result<Option<bool>, ApiError> {
        match self.get(name) {
            None => Ok(None),
            Some("true" | "1") => Ok(Some(true)),
            Some("false" | "0") => Ok(Some(false)),
            Some(_) => Err(ApiError::bad(name, "expected true or false")),
        }
    }

    /// `limit` and `cursor`.
    pub fn page(&self) -> Result<Page, ApiError> {
        let limit = match self.get("limit") {
            None => DEFAULT_LIMIT,
            Some(text) => match text.parse::<usize>() {
                Ok(n) if (1..=MAX_LIMIT).contains(&n) => n,
                _ => {
                    return Err(ApiError::bad(
                        "limit",
                        format!("expected a number from 1 to {MAX_LIMIT}"),
                    ))
                }
            },
        };
        let after = match self.get("cursor") {
            None | Some("") => None,
            Some(cursor) => Some(decode_cursor(cursor)?),
        };
        Ok(Page { limit, after })
    }
}

/// The opaque cursor for the key `key`.
pub fn encode_cursor(key: &str) -> String {
    URL_SAFE_NO_PAD.encode(key.as_bytes())
}

fn decode_cursor(cursor: &str) -> Result<String, ApiError> {
    URL_SAFE_NO_PAD
        .decode(cursor)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(|| ApiError::bad("cursor", "not a cursor this API gave out"))
}

fn too_large() -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("the request body is larger than {MAX_BODY} bytes"),
        Some("body"),
    )
}

/// Reads a body of at most [`MAX_BODY`] bytes within [`BODY_TIMEOUT`].
pub async fn read_body(body: Body) -> Result<bytes::Bytes, ApiError> {
    if axum::body::HttpBody::size_hint(&body).lower() > MAX_BODY as u64 {
        // Announced too large (Content-Length): refused before a byte of it is read.
        return Err(too_large());
    }
    let limited = http_body_util::Limited::new(body, MAX_BODY);
    match tokio::time::timeout(BODY_TIMEOUT, limited.collect()).await {
        Err(_) => Err(ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "the request body did not arrive in time",
            Some("body"),
        )),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => Err(too_large()),
        Ok(Err(_)) => Err(ApiError::bad("body", "the request body could not be read")),
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
    }
}

/// Reads a JSON object body whose fields are all in `allowed`.
pub async fn read_object(body: Body, allowed: &[&str]) -> Result<Map<String, Value>, ApiError> {
    let bytes = read_body(body).await?;
    let value: Value =
        serde_json::from_slice(&bytes).map_err(|e| ApiError::bad("body", format!("invalid JSON: {e}")))?;
    let Value::Object(map) = value else {
        return Err(ApiError::bad("body", "expected a JSON object"));
    };
    check_fields(&map, allowed, "")?;
    Ok(map)
}

/// Refuses fields of `map` not in `allowed`; `prefix` names the object for messages.
pub fn check_fields(map: &Map<String, Value>, allowed: &[&str], prefix: &str) -> Result<(), ApiError> {
    match map.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(unknown) => Err(ApiError::bad(
            &format!("{prefix}{unknown}"),
            format!("unknown field (known: {})", allowed.join(", ")),
        )),
        None => Ok(()),
    }
}

/// Field `name` of `map` as a `T`, if present (and not null).
pub fn field<T: serde::de::DeserializeOwned>(
    map: &Map<String, Value>,
    name: &str,
    prefix: &str,
) -> Result<Option<T>, ApiError> {
    match map.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(value) => T::deserialize(value)
            .map(Some)
            .map_err(|e| ApiError::bad(&format!("{prefix}{name}"), format!("invalid value: {e}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_parameters_are_decoded_and_unknown_ones_named() {
        let q = Query::parse(Some("topic=a%2Fb+c&limit=5"), &["topic", "limit"]).unwrap_or_default();
        assert_eq!(q.get("topic"), Some("a/b c"));
        assert_eq!(q.page().map(|p| p.limit).ok(), Some(5));
        let e = Query::parse(Some("nope=1"), &["topic"]).err();
        assert_eq!(e.and_then(|e| e.field), Some("nope".to_string()));
        let e = Query::parse(Some("topic=%zz"), &["topic"]).err();
        assert_eq!(e.and_then(|e| e.field), Some("topic".to_string()));
    }

    #[test]
    fn cursors_round_trip() {
        let c = encode_cursor("a/b\0c");
        let q = Query::parse(Some(&format!("cursor={c}")), &["cursor"]).unwrap_or_default();
        assert_eq!(q.page().ok().and_then(|p| p.after), Some("a/b\0c".to_string()));
    }
}
