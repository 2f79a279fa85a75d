//! The signal that wakes a connection task: publishers, the router, the admin facade and
//! the cluster set it when there is something for the connection to do (deliveries
//! queued, a kick, a takeover from another node); the connection's loop polls it.
//!
//! One flag and one registered waker, both atomic: setting it takes no lock, and the
//! connection keeps no waiter node while idle (24 bytes in the session instead of a
//! `Notify` and its per-wait future). A signal set while the connection is busy is kept
//! and seen at its next poll, as a `Notify` permit would be.

use atomic_waker::AtomicWaker;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

/// A single-waiter wake-up signal with a stored permit.
#[derive(Default)]
pub struct Wake {
    /// Set by a wake-up not yet seen by the waiter.
    woken: AtomicBool,
    /// The waiting connection task's waker, registered each time it waits.
    waker: AtomicWaker,
}

impl std::fmt::Debug for Wake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Wake")
            .field("woken", &self.woken.load(Ordering::Relaxed))
            .finish()
    }
}

impl Wake {
    pub fn new() -> Wake {
        Wake::default()
    }

    /// Wakes the waiter, or leaves the signal set for its next poll.
    pub fn notify_one(&self) {
        if !self.woken.swap(true, Ordering::AcqRel) {
            self.waker.wake();
        }
    }

    /// Whether a wake-up came that the waiter has not seen yet (left set).
    pub fn is_set(&self) -> bool {
        self.woken.load(Ordering::Acquire)
    }

    /// Ready (and consumed) when a wake-up came since the last one seen; otherwise
    /// registers the task to be woken by the next.
    pub fn poll_woken(&self, cx: &mut Context<'_>) -> Poll<()> {
        if self.woken.swap(false, Ordering::AcqRel) {
            return Poll::Ready(());
        }
        self.waker.register(cx.waker());
        // A wake-up between the check and the registration found no waker to wake.
        if self.woken.swap(false, Ordering::AcqRel) {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Wake;
    use std::sync::Arc;
    use std::time::Duration;

    async fn woken(wake: &Wake) {
        std::future::poll_fn(|cx| wake.poll_woken(cx)).await;
    }

    #[tokio::test]
    async fn a_wake_up_before_the_wait_is_kept() {
        let wake = Wake::new();
        wake.notify_one();
        wake.notify_one();
        tokio::time::timeout(Duration::from_secs(5), woken(&wake))
            .await
            .unwrap();
        // Two wake-ups before one wait are one: the next wait waits.
        let again = tokio::time::timeout(Duration::from_millis(50), woken(&wake)).await;
        assert!(again.is_err());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn wake_ups_from_another_thread_are_never_lost() {
        let wake = Arc::new(Wake::new());
        let (seen_tx, mut seen_rx) = tokio::sync::mpsc::unbounded_channel::<u32>();
        let waiter = {
            let wake = wake.clone();
            tokio::spawn(async move {
                for round in 0..10_000u32 {
                    woken(&wake).await;
                    if seen_tx.send(round).is_err() {
                        return;
                    }
                }
            })
        };
        for round in 0..10_000u32 {
            wake.notify_one();
            // The next wake-up only after the waiter saw this one: each must arrive.
            let seen = tokio::time::timeout(Duration::from_secs(5), seen_rx.recv()).await;
            assert_eq!(seen.unwrap(), Some(round));
        }
        waiter.await.unwrap();
    }
}
