//! One webhook call of a rule: an HTTP/1.1 POST of a JSON body with hyper's client, over
//! plain TCP for `http://` URLs and over TLS (rustls) for `https://` ones.
//!
//! An `https://` server is checked against the system's trusted certificates (read once,
//! by `rustls-native-certs`: `/etc/ssl/certs` on Debian, or the bundle `SSL_CERT_FILE`
//! names) and the URL's host name, as any HTTPS client does. Retries, timeouts and the
//! bound on calls in flight are the caller's ([`crate::rules_actions::Webhooks`]).

use bytes::Bytes;
use std::sync::{Arc, OnceLock};

/// Where a webhook goes: parsed and checked once, when its rule is compiled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub host: String,
    pub port: u16,
    /// Path and query, at least `/`.
    pub path: String,
    pub tls: bool,
}

impl Target {
    /// An `http://` or `https://` URL, or what is wrong with it.
    pub fn parse(url: &str) -> Result<Target, String> {
        let uri: hyper::Uri = url.parse().map_err(|e| format!("webhook url {url:?}: {e}"))?;
        let tls = match uri.scheme_str() {
            Some("http") => false,
            Some("https") => true,
            _ => return Err(format!("webhook url {url:?}: http:// or https:// is needed")),
        };
        let host = uri
            .host()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| format!("webhook url {url:?} has no host"))?;
        let path = uri.path_and_query().map_or("/", |p| p.as_str()).to_string();
        let host = host.trim_start_matches('[').trim_end_matches(']').to_string();
        let port = uri.port_u16().unwrap_or(if tls { 443 } else { 80 });
        Ok(Target { host, port, path, tls })
    }

    /// `host:port/path`, for logs.
    pub fn describe(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}:{}{}", self.host, self.port, self.path)
    }
}

/// The TLS client settings of every `https://` webhook: the system's roots, read once.
fn client_config() -> Result<Arc<rustls::ClientConfig>, String> {
    static CONFIG: OnceLock<Result<Arc<rustls::ClientConfig>, String>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let certs = rustls_native_certs::load_native_certs()
                .map_err(|e| format!("the system's trusted certificates could not be read: {e}"))?;
            let mut roots = rustls::RootCertStore::empty();
            let (added, _ignored) = roots.add_parsable_certificates(certs);
            if added == 0 {
                return Err("no trusted certificates found (install ca-certificates, or set SSL_CERT_FILE)".into());
            }
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let config = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .map_err(|e| format!("TLS: {e}"))?
                .with_root_certificates(roots)
                .with_no_client_auth();
            Ok(Arc::new(config))
        })
        .clone()
}

/// One POST of `body` to `target`; the answer's status.
pub async fn post(target: &Target, body: Bytes) -> Result<u16, String> {
    let stream = tokio::net::TcpStream::connect((target.host.as_str(), target.port))
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let _ = stream.set_nodelay(true);
    if !target.tls {
        return send(hyper_util::rt::TokioIo::new(stream), target, body).await;
    }
    let name = rustls::pki_types::ServerName::try_from(target.host.clone())
        .map_err(|e| format!("TLS: {:?} is not a host name: {e}", target.host))?;
    let connector = tokio_rustls::TlsConnector::from(client_config()?);
    let stream = connector.connect(name, stream).await.map_err(|e| format!("TLS: {e}"))?;
    send(hyper_util::rt::TokioIo::new(stream), target, body).await
}

/// The request over a connected stream.
async fn send<IO>(io: IO, target: &Target, body: Bytes) -> Result<u16, String>
where
    IO: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    use http_body_util::{BodyExt, Full};
    let (mut sender, connection) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    let driver = tokio::spawn(connection);
    let default_port = if target.tls { 443 } else { 80 };
    let host = match (target.host.contains(':'), target.port == default_port) {
        (true, true) => format!("[{}]", target.host),
        (true, false) => format!("[{}]:{}", target.host, target.port),
        (false, true) => target.host.clone(),
        (false, false) => format!("{}:{}", target.host, target.port),
    };
    let request = hyper::Request::post(target.path.as_str())
        .header(hyper::header::HOST, host)
        .header(hyper::header::CONTENT_TYPE, "application/json")
        .header(hyper::header::USER_AGENT, concat!("tern/", env!("CARGO_PKG_VERSION")))
        .body(Full::new(body))
        .map_err(|e| format!("request: {e}"))?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| format!("request: {e}"))?;
    let status = response.status().as_u16();
    // Read (and drop) a bounded answer so the connection ends cleanly.
    let _ = http_body_util::Limited::new(response.into_body(), 64 << 10)
        .collect()
        .await;
    driver.abort();
    Ok(status)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_http_or_https_with_their_default_ports() {
        let t = Target::parse("https://hooks.example.com/a?b=1").unwrap();
        assert_eq!(
            (t.host.as_str(), t.port, t.path.as_str(), t.tls),
            ("hooks.example.com", 443, "/a?b=1", true)
        );
        let t = Target::parse("http://[::1]:8080").unwrap();
        assert_eq!(
            (t.host.as_str(), t.port, t.path.as_str(), t.tls),
            ("::1", 8080, "/", false)
        );
        for bad in ["ftp://x/", "hooks.example.com/a", "https:///a", "http://"] {
            assert!(Target::parse(bad).is_err(), "{bad}");
        }
    }
}
