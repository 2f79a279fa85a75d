//! The broker's clock for work that is due at a time: session expiry, will delay, message
//! expiry. It is the monotonic clock, plus an offset that only tests move: with
//! `TERN_TEST_CLOCK=1` in its environment the broker reads lines `advance SECONDS` on its
//! standard input, moves this clock forward, runs the housekeeping at once and logs
//! `test clock advanced to +N s: due work done`, so a test of an expiry waits on that line
//! instead of on the wall clock. Without the variable nothing reads standard input and
//! the offset stays 0.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::Notify;

/// Milliseconds the clock is ahead of the monotonic clock.
static OFFSET_MS: AtomicU64 = AtomicU64::new(0);

/// Wakes the housekeeping when a test moved the clock.
pub(crate) static ADVANCED: Notify = Notify::const_new();

/// Now, for what is due at a time.
pub fn now() -> Instant {
    Instant::now() + offset()
}

/// Now as wall-clock time, moved as [`now`] is.
pub fn system_now() -> SystemTime {
    SystemTime::now() + offset()
}

/// How far tests have moved the clock.
pub fn offset() -> Duration {
    Duration::from_millis(OFFSET_MS.load(Relaxed))
}

/// Moves the clock forward by `by` and wakes the housekeeping.
pub fn advance(by: Duration) {
    let by_ms = u64::try_from(by.as_millis()).unwrap_or(u64::MAX);
    let _ = OFFSET_MS.fetch_update(Relaxed, Relaxed, |ms| Some(ms.saturating_add(by_ms)));
    ADVANCED.notify_one();
}

/// With `TERN_TEST_CLOCK=1`, reads `advance SECONDS` lines from standard input on a thread
/// of its own.
pub(crate) fn listen_for_tests() {
    if std::env::var("TERN_TEST_CLOCK").as_deref() != Ok("1") {
        return;
    }
    let spawned = std::thread::Builder::new().name("tern-test-clock".into()).spawn(|| {
        use std::io::BufRead;
        for line in std::io::stdin().lock().lines().map_while(Result::ok) {
            match line.trim().strip_prefix("advance ").map(|s| s.trim().parse::<f64>()) {
                Some(Ok(seconds)) if seconds.is_finite() && seconds >= 0.0 => {
                    advance(Duration::from_secs_f64(seconds));
                }
                _ => tracing::warn!("test clock: cannot read {line:?} (expected `advance SECONDS`)"),
            }
        }
    });
    if let Err(e) = spawned {
        tracing::error!("test clock: cannot start its reader: {e}");
    }
}
