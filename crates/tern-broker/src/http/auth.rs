//! The API's gate: every request but `/healthz` needs an API key, as HTTP Basic
//! (`key id:secret`) or Bearer (the secret). A refused request costs a header parse, one
//! SHA-256 and a constant-time comparison (see [`crate::api_keys`]) and gets 401.

use super::api::ApiState;
use super::input::ApiError;
use crate::api_keys::Credentials;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use std::sync::Arc;

/// Longest Authorization header looked at.
const MAX_AUTHORIZATION: usize = 1024;

/// Paths anyone may read.
const PUBLIC: &[&str] = &["/healthz"];

fn unauthorized(message: &str) -> Response {
    let mut response = ApiError::new(StatusCode::UNAUTHORIZED, message, Some("authorization")).into_response();
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Basic realm=\"tern\", Bearer realm=\"tern\""),
    );
    response
}

/// Checks the request's credentials before it goes on.
pub async fn require_key(State(api): State<Arc<ApiState>>, request: Request, next: Next) -> Response {
    if PUBLIC.contains(&request.uri().path()) {
        return next.run(request).await;
    }
    let Some(value) = request.headers().get(header::AUTHORIZATION) else {
        return unauthorized("an API key is needed (HTTP Basic key:secret, or Bearer secret)");
    };
    let value = value.as_bytes();
    if value.len() > MAX_AUTHORIZATION {
        return unauthorized("invalid credentials");
    }
    let Ok(value) = std::str::from_utf8(value) else {
        return unauthorized("invalid credentials");
    };
    let accepted = match value.split_once(' ') {
        Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => {
            api.keys.check(Credentials::Bearer { secret: token.trim() })
        }
        Some((scheme, token)) if scheme.eq_ignore_ascii_case("basic") => STANDARD
            .decode(token.trim())
            .ok()
            .and_then(|decoded| String::from_utf8(decoded).ok())
            .and_then(|pair| {
                let (id, secret) = pair.split_once(':')?;
                api.keys.check(Credentials::Basic { id, secret })
            }),
        _ => None,
    };
    match accepted {
        Some(key) => {
            let (method, path) = (request.method(), request.uri().path());
            if method == Method::GET || method == Method::HEAD {
                tracing::debug!(key, %method, path, "API request");
            } else {
                // What changes the broker is logged with the key that did it.
                tracing::info!(key, %method, path, "API request");
            }
            next.run(request).await
        }
        None => unauthorized("invalid credentials"),
    }
}
