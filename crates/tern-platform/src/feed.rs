//! A consumer's subscription to the broker's published messages, held only while the
//! consumer wants them (the last event cache while some organization has it enabled,
//! rules while some rule is): a broker where nobody wants them builds no event for any
//! publish. The consumer's loop re-decides at each wake-up ([`Feed::follow`]); a request
//! that switches the consumer on (a REST call) subscribes itself before it answers
//! ([`Feed::listen_now`]) and hands the subscription over, so no message published after
//! the answer is missed.

use parking_lot::Mutex;
use std::sync::{Arc, OnceLock};
use tern_broker::events::{Event, EventKind, EventReceiver};
use tern_broker::BrokerState;
use tokio::sync::Notify;

/// The consumer's link to the broker.
#[derive(Debug, Default)]
pub struct Feed {
    state: OnceLock<Arc<BrokerState>>,
    /// A subscription made for the consumer by [`Feed::listen_now`].
    handoff: Mutex<Option<EventReceiver>>,
    wake: Notify,
}

impl Feed {
    /// Connects the feed to the running broker (once, when the consumer starts).
    pub(crate) fn attach(&self, state: Arc<BrokerState>) {
        let _ = self.state.set(state);
    }

    /// Has the consumer listen from now on; a no-op before [`Feed::attach`].
    pub fn listen_now(&self) {
        let Some(state) = self.state.get() else {
            return;
        };
        let mut handoff = self.handoff.lock();
        if handoff.is_none() {
            *handoff = Some(state.events().subscribe(&[EventKind::Published]));
        }
        drop(handoff);
        self.wake.notify_one();
    }

    /// Resolves when [`Feed::listen_now`] was called.
    pub(crate) async fn woken(&self) {
        self.wake.notified().await;
    }

    /// A subscription now if `wanted`: the consumer's loop starts with this.
    pub(crate) fn initial(&self, wanted: bool) -> Option<EventReceiver> {
        let state = self.state.get()?;
        wanted.then(|| state.events().subscribe(&[EventKind::Published]))
    }

    /// Keeps `events` subscribed while `wanted`, taking a handed-over subscription first;
    /// drops it when not.
    pub(crate) fn follow(&self, wanted: bool, events: &mut Option<EventReceiver>) {
        let handed = self.handoff.lock().take();
        if !wanted {
            *events = None;
            return;
        }
        if events.is_none() {
            *events = handed.or_else(|| self.initial(true));
        }
    }
}

/// The next event of `events`, or never when there is no subscription.
pub(crate) async fn next(events: &mut Option<EventReceiver>) -> Option<Event> {
    match events {
        Some(events) => events.recv().await,
        None => std::future::pending().await,
    }
}
