//! `tern iot --url`: sends a registry operation to a running broker's admin API
//! (`/api/v1/platform/...`, see tern_platform::registry_admin) over HTTP or HTTPS, with
//! the admin API key as HTTP Basic, and returns the JSON it answers. An error answer
//! becomes an error carrying the broker's message and the HTTP status.

use anyhow::{anyhow, bail, Context, Result};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::Request;
use hyper_util::rt::TokioIo;
use serde_json::Value;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tern_platform::registry_ops::RegistryOp;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

/// How long a request may take, connecting included.
const TIMEOUT: Duration = Duration::from_secs(30);
/// Largest answer read (a listing of a big registry).
const MAX_ANSWER: usize = 256 << 20;

/// An organization's API key for the platform's own API (`tern iot mgmt`, `tern iot
/// export`).
#[derive(clap::Args)]
pub struct ApiKeyArg {
    /// The organization's API key and token, as `KEY:TOKEN` (`tern iot key create` makes
    /// them).
    #[arg(
        long = "api-key",
        value_name = "KEY:TOKEN",
        env = "TERN_API_KEY",
        hide_env_values = true
    )]
    api_key: Option<String>,
}

impl ApiKeyArg {
    /// The broker at `url` (its HTTP listener) with this key; `what` says what needs it.
    pub fn remote(&self, url: Option<&str>, cafile: Option<&Path>, what: &str) -> Result<Remote> {
        let Some(url) = url else {
            bail!("{what} needs a running broker: --url (its HTTP listener, e.g. https://<org>.<domain>) and --api-key KEY:TOKEN");
        };
        let Some(key) = self.api_key.as_deref() else {
            bail!("--api-key KEY:TOKEN (or TERN_API_KEY) is needed: an API key of the organization and its token");
        };
        if !key.starts_with("a-") || !key.contains(':') {
            bail!("--api-key: expected KEY:TOKEN, as `tern iot key create` prints them (a-<org>-...)");
        }
        Remote::with_credentials(url, key, cafile)
    }
}

/// A running broker's admin API.
pub struct Remote {
    host: String,
    port: u16,
    /// The URL's path, without its trailing `/`, for an API behind a proxy's prefix.
    base: String,
    authorization: String,
    tls: Option<Arc<rustls::ClientConfig>>,
}

impl Remote {
    /// `url`: `http://host[:port][/prefix]` or `https://...`; `key`: `ID:SECRET`.
    pub fn new(url: &str, key: Option<&str>, cafile: Option<&Path>) -> Result<Remote> {
        let Some(key) = key else {
            bail!("--url needs an admin API key: --admin-key ID:SECRET (or TERN_ADMIN_KEY); `tern admin key create` makes one");
        };
        if !key.contains(':') {
            bail!("--admin-key: expected ID:SECRET, as `tern admin key create` prints them");
        }
        Remote::with_credentials(url, key, cafile)
    }

    /// A server at `url` taking `user:password` as HTTP Basic.
    pub fn with_credentials(url: &str, key: &str, cafile: Option<&Path>) -> Result<Remote> {
        let uri: hyper::Uri = url.parse().with_context(|| format!("--url {url:?} is not a URL"))?;
        let https = match uri.scheme_str() {
            Some("http") => false,
            Some("https") => true,
            _ => bail!("--url {url:?}: expected http://HOST:PORT or https://HOST:PORT"),
        };
        let host = uri
            .host()
            .ok_or_else(|| anyhow!("--url {url:?} names no host"))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        if https && cafile.is_none() {
            bail!("an https --url needs --cafile FILE: the CA certificate(s) that signed the broker's certificate");
        }
        let tls = if https {
            let options = tern_client::TlsOptions {
                cafile: cafile.map(Path::to_path_buf),
                ..Default::default()
            };
            Some(tern_client::client_config(&options).map_err(|e| anyhow!("{e}"))?)
        } else {
            None
        };
        Ok(Remote {
            host,
            port,
            base: uri.path().trim_end_matches('/').to_string(),
            authorization: format!("Basic {}", STANDARD.encode(key)),
            tls,
        })
    }

    /// Runs `op` on the broker and returns its answer.
    pub fn send(&self, op: &RegistryOp) -> Result<Value> {
        let wanted = op.request();
        let path = format!("{}{}", tern_platform::registry_admin::PREFIX, wanted.path);
        self.call(wanted.method, &path, wanted.body.as_ref())
    }

    /// `method path` (below the URL's own path) with a JSON `body`; the JSON answered
    /// (`null` for an empty answer).
    pub fn call(&self, method: &'static str, path: &str, body: Option<&Value>) -> Result<Value> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("cannot start the runtime")?;
        let what = format!("{}:{}", self.host, self.port);
        runtime
            .block_on(async { tokio::time::timeout(TIMEOUT, self.exchange(method, path, body)).await })
            .map_err(|_| anyhow!("{what}: no answer within {} s", TIMEOUT.as_secs()))?
    }

    async fn exchange(&self, method: &'static str, path: &str, body: Option<&Value>) -> Result<Value> {
        let tcp = TcpStream::connect((self.host.as_str(), self.port))
            .await
            .with_context(|| format!("cannot connect to {}:{}", self.host, self.port))?;
        let _ = tcp.set_nodelay(true);
        match &self.tls {
            None => self.request(tcp, method, path, body).await,
            Some(config) => {
                let name = rustls::pki_types::ServerName::try_from(self.host.clone())
                    .with_context(|| format!("{} is not a host name", self.host))?;
                let stream = tokio_rustls::TlsConnector::from(config.clone())
                    .connect(name, tcp)
                    .await
                    .with_context(|| format!("TLS with {}:{}", self.host, self.port))?;
                self.request(stream, method, path, body).await
            }
        }
    }

    async fn request<S>(&self, stream: S, method: &'static str, path: &str, body: Option<&Value>) -> Result<Value>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .context("HTTP handshake")?;
        tokio::spawn(connection);
        let path = format!("{}{path}", self.base);
        let body = match body {
            Some(body) => Bytes::from(body.to_string()),
            None => Bytes::new(),
        };
        let request = Request::builder()
            .method(method)
            .uri(&path)
            .header(hyper::header::HOST, format!("{}:{}", self.host, self.port))
            .header(hyper::header::AUTHORIZATION, &self.authorization)
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .body(Full::new(body))
            .context("the request")?;
        let response = sender.send_request(request).await.with_context(|| {
            format!(
                "{} {path} (is {}:{} the broker's HTTP listener?)",
                method, self.host, self.port
            )
        })?;
        let status = response.status();
        let limited = http_body_util::Limited::new(response.into_body(), MAX_ANSWER);
        let bytes = limited
            .collect()
            .await
            .map_err(|e| anyhow!("reading the answer to {} {path}: {e}", method))?
            .to_bytes();
        let value: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        if status.is_success() {
            return Ok(value);
        }
        // The admin API's `{"error"}`, or the platform API's `{"message"}`.
        let message = value["error"]
            .as_str()
            .or_else(|| value["message"].as_str())
            .map(str::to_string)
            .unwrap_or_else(|| String::from_utf8_lossy(&bytes).trim().to_string());
        let admin = path.contains(tern_platform::registry_admin::PREFIX);
        match status.as_u16() {
            401 if admin => bail!("the broker refused the admin API key ({message})"),
            401 => bail!("the broker refused the API key ({message})"),
            404 if admin && value["error"].is_null() => bail!(
                "{}: no platform admin API at {path} (is the broker's platform on, and is this its HTTP listener?)",
                status
            ),
            _ => bail!("{message} (HTTP {})", status.as_u16()),
        }
    }
}
