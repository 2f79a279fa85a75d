//! Read access to the retained messages for the admin facade: one message, a page of the
//! messages matching a filter (resumed after the last topic of the previous page), and the
//! topics matching a filter (to clear them). Pages are walked in bounded steps, the read
//! lock taken per step, so a listing never holds up publishers for long.

use super::{RetainedMessage, Router};
use std::sync::Arc;
use tern_core::retained::{RetainedScan, Visit};
use tern_proto::topic::has_wildcard;
use tern_proto::ByteStr;

/// Topics looked at per step under the read lock.
const STEP: usize = 1024;

impl Router {
    /// The retained message of `topic`, if any.
    pub fn retained_message(&self, topic: &str) -> Option<Arc<RetainedMessage>> {
        self.retained.read().get(topic).cloned()
    }

    /// Up to `limit` retained messages matching `filter` (a valid topic filter), in topic
    /// order, after topic `after`; and whether more follow.
    pub fn retained_page(
        &self,
        filter: &ByteStr,
        after: Option<&str>,
        limit: usize,
    ) -> (Vec<Arc<RetainedMessage>>, bool) {
        if !has_wildcard(filter) {
            let found = self
                .retained_message(filter)
                .filter(|_| after.is_none_or(|a| a < filter.as_str()) && limit > 0);
            return (found.into_iter().collect(), false);
        }
        let mut scan = match after {
            Some(after) => RetainedScan::starting_after(filter.clone(), ByteStr::from(after)),
            None => RetainedScan::new(filter.clone()),
        };
        let mut page = Vec::new();
        let mut more = false;
        while !scan.is_finished() {
            let store = self.retained.read();
            scan.resume(&store, STEP, |_, m| {
                if page.len() == limit {
                    more = true;
                    return Visit::Stop;
                }
                page.push(m.clone());
                Visit::Next
            });
            if more {
                break;
            }
        }
        (page, more)
    }

    /// Every retained topic matching `filter` (a valid topic filter).
    pub fn retained_topics(&self, filter: &ByteStr) -> Vec<ByteStr> {
        let mut topics = Vec::new();
        let mut scan = RetainedScan::new(filter.clone());
        while !scan.is_finished() {
            let store = self.retained.read();
            scan.resume(&store, STEP, |topic, _| {
                topics.push(topic.clone());
                Visit::Next
            });
        }
        topics
    }
}
