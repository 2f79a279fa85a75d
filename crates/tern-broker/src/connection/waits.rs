//! What a connection's loop waits for, and the one place that waits for it.
//!
//! Each turn of the loop ([`super::Live::run`]) waits until the first of these is ready,
//! in this order: a takeover, input, what holds output back (the store or the
//! cluster), room for output, the session's wake signal, the keep-alive timer. They are
//! polled by hand rather than through `select!`: no per-wait futures (each with its waiter
//! node) are made, registered and dropped on every wake-up, readiness is asked of the
//! socket directly, and the connection's resident future stays small while it is idle.

use super::transport::Socket;
use crate::store::Store;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::sync::oneshot;

/// What the loop waits for while output is held back: the store making this connection's
/// changes durable (sync mode), or the cluster settling its QoS 1/2 publishes. Made only
/// while held, and boxed, so that the loop's resident future stays small.
pub(super) fn held_until(
    store: Option<&Store>,
    hold: u64,
    track: Option<Arc<crate::cluster::AckTrack>>,
) -> HeldWait<'_> {
    Box::pin(async move {
        let durable = async {
            match store {
                Some(store) => store.wait_durable(hold).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = durable => {}
            () = crate::cluster::changed(track.as_deref()) => {}
        }
    })
}

pub(super) type HeldWait<'a> = Pin<Box<dyn Future<Output = ()> + Send + 'a>>;

/// What ended one wait of the loop.
pub(super) enum Wakeup {
    /// A newcomer takes the session over; the sender answers it once this one is gone.
    TakenOver(oneshot::Sender<()>),
    Readable(std::io::Result<()>),
    /// What held output back is durable or settled.
    Settled,
    Writable(std::io::Result<()>),
    /// The session's wake signal (deliveries queued, a kick, shutdown), or the loop's own
    /// "again".
    Woken,
    KeepAlive,
}

/// Everything one wait of the loop watches, polled in a fixed order (the first ready
/// wins): a takeover, input, what holds output back, room for output, the wake
/// signal, the keep-alive timer. Polled by hand rather than through `select!`, so that
/// no per-wait futures (each with its waiter node) are made, registered and dropped on
/// every wake-up, and the connection's resident future stays small while it is idle.
pub(super) struct Waits<'a, 'b> {
    pub(super) takeover: &'a mut Option<oneshot::Receiver<oneshot::Sender<()>>>,
    pub(super) socket: &'a Socket,
    /// Whether to watch for input (not while output is above the high-water mark).
    pub(super) read: bool,
    pub(super) held: Option<Pin<&'a mut (dyn Future<Output = ()> + Send + 'b)>>,
    /// Whether to watch for room for output (there is some, and nothing holds it back).
    pub(super) write: bool,
    /// Go round again without waiting for a wake-up (more is queued than was taken).
    pub(super) again: bool,
    pub(super) wake: &'a crate::wake::Wake,
    pub(super) keep_alive: Option<Pin<&'a mut tokio::time::Sleep>>,
}

impl Waits<'_, '_> {
    pub(super) fn poll(&mut self, cx: &mut Context<'_>) -> Poll<Wakeup> {
        if let Some(receiver) = self.takeover.as_mut() {
            if let Poll::Ready(asked) = Pin::new(receiver).poll(cx) {
                // Without a sender the handle is gone: no takeover can come any more.
                *self.takeover = None;
                if let Ok(done) = asked {
                    return Poll::Ready(Wakeup::TakenOver(done));
                }
            }
        }
        if self.read {
            if let Poll::Ready(ready) = self.socket.poll_read_ready(cx) {
                return Poll::Ready(Wakeup::Readable(ready));
            }
        }
        if let Some(held) = self.held.as_mut() {
            if held.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Wakeup::Settled);
            }
        }
        if self.write {
            if let Poll::Ready(ready) = self.socket.poll_write_ready(cx) {
                return Poll::Ready(Wakeup::Writable(ready));
            }
        }
        if self.again || self.wake.poll_woken(cx).is_ready() {
            return Poll::Ready(Wakeup::Woken);
        }
        if let Some(keep_alive) = self.keep_alive.as_mut() {
            if keep_alive.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Wakeup::KeepAlive);
            }
        }
        Poll::Pending
    }
}
