//! Retained messages: the last retained PUBLISH per topic, handed to new subscribers.
//!
//! A filter without wildcards is a single lookup; a wildcard filter scans the store with
//! the plain matcher. Subscribing is rare next to publishing, so the scan is acceptable.

use crate::topic::matches;
use std::collections::HashMap;
use tern_proto::topic::has_wildcard;

/// The retained message of each topic.
#[derive(Debug)]
pub struct RetainedStore<M> {
    messages: HashMap<Box<str>, M>,
}

impl<M> Default for RetainedStore<M> {
    fn default() -> Self {
        RetainedStore {
            messages: HashMap::new(),
        }
    }
}

impl<M> RetainedStore<M> {
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of retained messages.
    pub fn len(&self) -> usize {
        self.messages.len()
    }

    pub fn is_empty(&self) -> bool {
        self.messages.is_empty()
    }

    /// Stores `message` as the retained message of `topic`, replacing any earlier one.
    pub fn set(&mut self, topic: &str, message: M) {
        self.messages.insert(topic.into(), message);
    }

    /// Clears the retained message of `topic` (a retained PUBLISH with an empty payload).
    pub fn remove(&mut self, topic: &str) -> Option<M> {
        self.messages.remove(topic)
    }

    /// Calls `f` for every retained message whose topic matches `filter`.
    pub fn for_each_match(&self, filter: &str, mut f: impl FnMut(&str, &M)) {
        if !has_wildcard(filter) {
            if let Some((topic, m)) = self.messages.get_key_value(filter) {
                f(topic, m);
            }
            return;
        }
        for (topic, m) in &self.messages {
            if matches(filter, topic) {
                f(topic, m);
            }
        }
    }

    /// Keeps only the messages for which `keep` returns true (expiry).
    pub fn retain(&mut self, mut keep: impl FnMut(&str, &M) -> bool) {
        self.messages.retain(|topic, m| keep(topic, m));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retained_messages_are_replaced_cleared_and_matched() {
        let mut store = RetainedStore::new();
        store.set("a/b", 1);
        store.set("a/b", 2);
        store.set("a/c", 3);
        store.set("$SYS/x", 4);
        let mut seen = Vec::new();
        store.for_each_match("a/+", |_, m| seen.push(*m));
        seen.sort();
        assert_eq!(seen, vec![2, 3]);
        let mut all = Vec::new();
        store.for_each_match("#", |_, m| all.push(*m));
        assert_eq!(all.len(), 2, "$ topics are not matched by #");
        assert_eq!(store.remove("a/b"), Some(2));
        assert_eq!(store.len(), 2);
    }
}
