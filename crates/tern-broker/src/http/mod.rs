//! The HTTP listener: the admin API (`/api/v1`), `/healthz`, `/readyz`, `/metrics` and
//! the web console (`/`, [`console`]),
//! over plain TCP or TLS (the listener's certfile and keyfile), served with hyper.
//!
//! What a client that does not play along can cost is bounded: at most
//! [`MAX_CONNECTIONS`] connections per listener (or its `max_connections`; more are
//! closed at once), a TLS handshake and each request's headers must arrive within
//! [`HEADER_TIMEOUT`] (an idle keep-alive connection is closed after as long), headers
//! are limited to [`MAX_HEADER_BYTES`],
//! bodies to [`input::MAX_BODY`] and a timeout, and a client that stops reading has its
//! connection closed once a write has stalled for [`WRITE_STALL`].

mod api;
mod auth;
mod console;
mod input;
mod stream;
mod topic_stream;

use crate::admin::Admin;
use crate::api_keys::ApiKeys;
use crate::broker::BrokerState;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Connections served at once per HTTP listener, unless its `max_connections` says otherwise.
pub const MAX_CONNECTIONS: usize = 256;
/// Time for a TLS handshake, and for each request's headers (and between requests).
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest request head (request line and headers) read.
pub const MAX_HEADER_BYTES: usize = 16 << 10;
/// A write that makes no progress for this long closes the connection.
pub const WRITE_STALL: Duration = Duration::from_secs(20);

/// Where a broker without configured listeners serves the API (local only).
pub const DEFAULT_ADDR: &str = "127.0.0.1:8080";

/// Binds [`DEFAULT_ADDR`]. A port in use is no reason not to start: the broker goes on
/// without the API and says so.
pub(crate) async fn bind_default() -> Option<TcpListener> {
    match TcpListener::bind(DEFAULT_ADDR).await {
        Ok(listener) => Some(listener),
        Err(e) => {
            tracing::warn!("HTTP API not served: cannot listen on {DEFAULT_ADDR}: {e} (configure a `protocol http` listener to choose another port)");
            None
        }
    }
}

/// An embedder's routes: `open` under its prefix outside the API key check (they
/// authenticate their own requests), `admin` behind it.
pub(crate) struct Extra {
    pub open: Option<(&'static str, axum::Router)>,
    pub admin: Vec<(&'static str, axum::Router)>,
}

/// Takes the HTTP listeners out of `listeners` and serves them (and `default`, the
/// default local one) on `tracker`, with the API keys of the data directory, watched
/// for changes until the broker stops; `extra` is an embedder's routes under a prefix
/// ([`crate::Broker::with_http_routes`]).
pub(crate) fn start(
    state: &Arc<BrokerState>,
    listeners: &mut Vec<(usize, TcpListener)>,
    default: Option<TcpListener>,
    extra: Extra,
    tracker: &TaskTracker,
) {
    let config = state.config();
    let is_http = |i: usize| {
        config
            .listeners
            .get(i)
            .is_some_and(|l| l.protocol == crate::config::ListenerProtocol::Http)
    };
    let (http, others): (Vec<_>, Vec<_>) = std::mem::take(listeners).into_iter().partition(|(i, _)| is_http(*i));
    *listeners = others;
    if http.is_empty() && default.is_none() {
        return;
    }
    let keys = Arc::new(ApiKeys::load(&config.persistence_location));
    if keys.is_empty() {
        tracing::info!(
            "HTTP API: no API keys yet in {}: create one with `tern admin key create --data-dir {}`",
            keys.path().display(),
            config.persistence_location.display()
        );
    }
    tracker.spawn(keys.clone().watch(state.shutdown.clone()));
    let mut app = app(state, keys, extra.admin);
    if let Some((prefix, routes)) = extra.open {
        // Added after the admin API's key check, so that check does not apply to them.
        app = app.nest_service(prefix, routes);
    }
    for (index, listener) in http {
        tracker.spawn(serve(
            Some(index),
            listener,
            state.clone(),
            app.clone(),
            tracker.clone(),
        ));
    }
    if let Some(listener) = default {
        tracker.spawn(serve(None, listener, state.clone(), app, tracker.clone()));
    }
}

/// The API's shared parts, one per broker.
fn app(state: &Arc<BrokerState>, keys: Arc<ApiKeys>, admin: Vec<(&'static str, axum::Router)>) -> axum::Router {
    let api = Arc::new(api::ApiState {
        admin: Admin::new(state.clone()),
        keys,
        broker: state.clone(),
        streams: stream::OpenStreams::default(),
    });
    api::router(api, admin)
}

/// Accepts and serves HTTP connections on `listener` until the broker stops. `index` is
/// the listener's place in the configuration (for its TLS settings); `None` for the
/// default local listener.
pub(crate) async fn serve(
    index: Option<usize>,
    listener: TcpListener,
    state: Arc<BrokerState>,
    app: axum::Router,
    tracker: TaskTracker,
) {
    let most = index
        .and_then(|i| state.config().listeners.get(i).and_then(|l| l.max_connections))
        .unwrap_or(MAX_CONNECTIONS);
    let slots = Arc::new(Semaphore::new(most));
    let mut refused = 0u64;
    loop {
        let accepted = tokio::select! {
            () = state.shutdown.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::warn!("HTTP accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            refused += 1;
            if refused.is_power_of_two() {
                tracing::warn!(%peer, "HTTP connection refused: {most} already open ({refused} refused so far)");
            }
            continue;
        };
        let _ = stream.set_nodelay(true);
        let tls = index.and_then(|i| state.listener_tls(i));
        let app = app.clone();
        let stop = state.shutdown.clone();
        tracker.spawn(async move {
            let _slot = slot;
            let stream = TimedIo::new(stream);
            match tls {
                None => connection(stream, app, stop).await,
                Some(tls) => {
                    let acceptor = tokio_rustls::TlsAcceptor::from(tls.server.clone());
                    match tokio::time::timeout(HEADER_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(stream)) => connection(stream, app, stop).await,
                        Ok(Err(e)) => tracing::debug!(%peer, "HTTP TLS handshake failed: {e}"),
                        Err(_) => tracing::debug!(%peer, "HTTP TLS handshake timed out"),
                    }
                }
            }
        });
    }
}

/// Serves HTTP/1.1 requests on one connection until it closes or the broker stops.
async fn connection<S>(stream: S, app: axum::Router, stop: CancellationToken)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = TowerToHyperService::new(app);
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .max_buf_size(MAX_HEADER_BYTES);
    let conn = builder.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => {}
        () = stop.cancelled() => {
            conn.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(Duration::from_secs(1), conn).await;
        }
    }
}

/// A TCP stream whose writes fail once they have made no progress for [`WRITE_STALL`].
struct TimedIo {
    inner: TcpStream,
    stall: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl TimedIo {
    fn new(inner: TcpStream) -> TimedIo {
        TimedIo { inner, stall: None }
    }

    /// Passes on a write-side result, timing how long it has been pending.
    fn timed<T>(&mut self, cx: &mut Context<'_>, result: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        match result {
            Poll::Ready(r) => {
                self.stall = None;
                Poll::Ready(r)
            }
            Poll::Pending => {
                let stall = self
                    .stall
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(WRITE_STALL)));
                if stall.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "the client stopped reading",
                    )));
                }
                Poll::Pending
            }
        }
    }
}

impl AsyncRead for TimedIo {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for TimedIo {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.timed(cx, result)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let result = Pin::new(&mut self.inner).poll_flush(cx);
        self.timed(cx, result)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let result = Pin::new(&mut self.inner).poll_shutdown(cx);
        self.timed(cx, result)
    }
}
