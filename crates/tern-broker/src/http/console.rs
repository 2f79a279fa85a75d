//! The web console's static files (docs/console.md): HTML, CSS and JavaScript modules
//! under `http/console/`, embedded in the binary at build time and served at `/` and
//! `/console/NAME`. They hold no data, so they are served without an API key; every call
//! the console makes for data goes to `/api/v1` with the key the user logged in with.
//!
//! Each answer carries a Content-Security-Policy that lets the page load only its own
//! scripts and styles and talk only to its own origin (no inline script or style, no
//! frames, no forms posted elsewhere), and an ETag so a browser revalidates cheaply.

use axum::extract::Path;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use sha2::{Digest, Sha256};
use std::sync::OnceLock;

/// What the console's pages may load and where they may connect.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
    img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; \
    frame-ancestors 'none'";

/// One embedded file: its name under `/console/`, content type and bytes.
struct Asset {
    name: &'static str,
    kind: &'static str,
    body: &'static str,
}

const JS: &str = "text/javascript; charset=utf-8";

const ASSETS: &[Asset] = &[
    Asset {
        name: "index.html",
        kind: "text/html; charset=utf-8",
        body: include_str!("console/index.html"),
    },
    Asset {
        name: "console.css",
        kind: "text/css; charset=utf-8",
        body: include_str!("console/console.css"),
    },
    Asset {
        name: "app.js",
        kind: JS,
        body: include_str!("console/app.js"),
    },
    Asset {
        name: "api.js",
        kind: JS,
        body: include_str!("console/api.js"),
    },
    Asset {
        name: "dom.js",
        kind: JS,
        body: include_str!("console/dom.js"),
    },
    Asset {
        name: "plot.js",
        kind: JS,
        body: include_str!("console/plot.js"),
    },
    Asset {
        name: "overview.js",
        kind: JS,
        body: include_str!("console/overview.js"),
    },
    Asset {
        name: "clients.js",
        kind: JS,
        body: include_str!("console/clients.js"),
    },
    Asset {
        name: "topics.js",
        kind: JS,
        body: include_str!("console/topics.js"),
    },
    Asset {
        name: "tree.js",
        kind: JS,
        body: include_str!("console/tree.js"),
    },
    Asset {
        name: "subscribe.js",
        kind: JS,
        body: include_str!("console/subscribe.js"),
    },
    Asset {
        name: "platform.js",
        kind: JS,
        body: include_str!("console/platform.js"),
    },
    Asset {
        name: "orgkey.js",
        kind: JS,
        body: include_str!("console/orgkey.js"),
    },
    Asset {
        name: "device.js",
        kind: JS,
        body: include_str!("console/device.js"),
    },
    Asset {
        name: "rules.js",
        kind: JS,
        body: include_str!("console/rules.js"),
    },
    Asset {
        name: "icon.svg",
        kind: "image/svg+xml",
        body: include_str!("console/icon.svg"),
    },
];

/// The console's routes; added to the HTTP router after the API key check, so they are
/// public.
pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/", get(index))
        .route("/console", get(index))
        .route("/console/", get(index))
        .route("/console/{*name}", get(asset))
}

async fn index(headers: HeaderMap) -> Response {
    serve("index.html", &headers)
}

async fn asset(Path(name): Path<String>, headers: HeaderMap) -> Response {
    serve(&name, &headers)
}

/// The strong ETag of each asset, in [`ASSETS`] order, computed on first use.
fn etags() -> &'static [String] {
    static ETAGS: OnceLock<Vec<String>> = OnceLock::new();
    ETAGS.get_or_init(|| {
        ASSETS
            .iter()
            .map(|a| {
                let digest = Sha256::digest(a.body.as_bytes());
                let hex: String = digest.iter().take(12).map(|b| format!("{b:02x}")).collect();
                format!("\"{hex}\"")
            })
            .collect()
    })
}

/// The asset called `name` (304 when the browser's copy is current), or 404.
fn serve(name: &str, headers: &HeaderMap) -> Response {
    let Some(index) = ASSETS.iter().position(|a| a.name == name) else {
        return super::input::ApiError::new(StatusCode::NOT_FOUND, "no such console file", Some("path"))
            .into_response();
    };
    let asset = &ASSETS[index];
    let etag = etags()[index].as_str();
    let current = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
    let mut response = if current {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        ([(header::CONTENT_TYPE, asset.kind)], asset.body).into_response()
    };
    let h = response.headers_mut();
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    if let Ok(value) = HeaderValue::from_str(etag) {
        h.insert(header::ETAG, value);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_asset_has_a_known_type_and_a_distinct_name() {
        let mut names: Vec<_> = ASSETS.iter().map(|a| a.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), ASSETS.len());
        for a in ASSETS {
            assert!(!a.body.is_empty(), "{}", a.name);
            assert!(a.kind.contains('/'), "{}", a.name);
        }
    }

    #[test]
    fn html_loads_nothing_inline() {
        // The CSP forbids inline scripts and styles: the page must not rely on them.
        let html = ASSETS[0].body;
        assert!(!html.contains("<script>") && !html.contains("style="), "{html}");
        assert!(!html.contains("<style"), "{html}");
    }

    #[test]
    fn conditional_requests_get_304() {
        let mut headers = HeaderMap::new();
        let first = serve("app.js", &headers);
        assert_eq!(first.status(), StatusCode::OK);
        let etag = first.headers().get(header::ETAG).cloned();
        assert!(etag.is_some());
        if let Some(etag) = etag {
            headers.insert(header::IF_NONE_MATCH, etag);
        }
        assert_eq!(serve("app.js", &headers).status(), StatusCode::NOT_MODIFIED);
        assert_eq!(
            serve("../Cargo.toml", &HeaderMap::new()).status(),
            StatusCode::NOT_FOUND
        );
    }
}
