//! Retained messages: the last retained PUBLISH per topic, handed to new subscribers.
//!
//! The store keeps topics in order, so that the messages matching a filter can be handed
//! out a few at a time: a [`RetainedScan`] visits the topics under the filter's literal
//! prefix (all of them for a filter starting with a wildcard), stops when its caller has
//! no room, and resumes later after the last topic it passed. It holds the filter and that
//! one topic, never the messages, so a subscriber that reads slowly costs no memory per
//! message waiting. A filter without wildcards is a single lookup. A message is its own
//! key (it knows its topic), so an entry of the ordered set is one pointer when the
//! messages are reference-counted.

use crate::topic::matches;
use std::borrow::Borrow;
use std::cmp::Ordering;
use std::collections::BTreeSet;
use std::ops::Bound;
use std::sync::Arc;
use tern_proto::topic::has_wildcard;
use tern_proto::ByteStr;

/// A retained message as the store sees it: something with a topic.
pub trait Retained {
    fn topic(&self) -> &ByteStr;
}

impl<T: Retained> Retained for Arc<T> {
    fn topic(&self) -> &ByteStr {
        (**self).topic()
    }
}

/// A message in the store's ordered set, ordered and looked up by its topic.
#[derive(Debug)]
struct Entry<M>(M);

impl<M: Retained> Borrow<str> for Entry<M> {
    fn borrow(&self) -> &str {
        self.0.topic()
    }
}

impl<M: Retained> PartialEq for Entry<M> {
    fn eq(&self, other: &Self) -> bool {
        self.0.topic() == other.0.topic()
    }
}

impl<M: Retained> Eq for Entry<M> {}

impl<M: Retained> PartialOrd for Entry<M> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl<M: Retained> Ord for Entry<M> {
    fn cmp(&self, other: &Self) -> Ordering {
        // As `str` orders, which the lookups by `&str` rely on.
        self.0.topic().as_str().cmp(other.0.topic().as_str())
    }
}

/// The retained message of each topic, in topic order.
#[derive(Debug)]
pub struct RetainedStore<M> {
    messages: BTreeSet<Entry<M>>,
}

impl<M> Default for RetainedStore<M> {
    fn default() -> Self {
        RetainedStore {
            messages: BTreeSet::new(),
        }
    }
}

/// The part of `filter` every matching topic starts with: the text before its first
/// wildcard, without the level separator in front of it (`a/#` also matches `a`).
fn literal_prefix(filter: &str) -> &str {
    let end = filter.find(['+', '#']).unwrap_or(filter.len());
    let prefix = &filter[..end];
    prefix.strip_suffix('/').unwrap_or(prefix)
}

impl<M: Retained> RetainedStore<M> {
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

    /// Stores `message` as the retained message of its topic; returns the one it replaces.
    pub fn set(&mut self, message: M) -> Option<M> {
        self.messages.replace(Entry(message)).map(|e| e.0)
    }

    /// The retained message of `topic`.
    pub fn get(&self, topic: &str) -> Option<&M> {
        self.messages.get(topic).map(|e| &e.0)
    }

    /// Clears the retained message of `topic` (a retained PUBLISH with an empty payload).
    pub fn remove(&mut self, topic: &str) -> Option<M> {
        self.messages.take(topic).map(|e| e.0)
    }

    /// Calls `f` for every retained message whose topic matches `filter`, in topic order.
    pub fn for_each_match(&self, filter: &str, mut f: impl FnMut(&str, &M)) {
        let mut scan = RetainedScan::new(ByteStr::from(filter));
        scan.resume(self, usize::MAX, |topic, m| {
            f(topic, m);
            Visit::Next
        });
    }

    /// Keeps only the messages for which `keep` returns true (expiry).
    pub fn retain(&mut self, mut keep: impl FnMut(&str, &M) -> bool) {
        self.messages.retain(|e| keep(e.0.topic(), &e.0));
    }
}

/// What a [`RetainedScan`]'s caller wants after being handed a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Visit {
    /// Taken (or skipped on purpose): go on with the next one.
    Next,
    /// Not taken, for want of room: stop, and start with this message next time.
    Stop,
}

/// The retained messages matching one filter, handed out in topic order over as many
/// calls as the caller needs.
#[derive(Debug, Clone)]
pub struct RetainedScan {
    filter: ByteStr,
    /// The last topic passed: the scan resumes after it. A topic removed meanwhile is
    /// still a valid place to resume from.
    after: Option<ByteStr>,
    finished: bool,
}

impl RetainedScan {
    /// A scan of the messages matching `filter` (a valid topic filter), from the start.
    pub fn new(filter: ByteStr) -> RetainedScan {
        RetainedScan {
            filter,
            after: None,
            finished: false,
        }
    }

    /// A scan of the messages matching `filter` that come after topic `after` in the
    /// store's order: the next page of a listing that ended at `after`.
    pub fn starting_after(filter: ByteStr, after: ByteStr) -> RetainedScan {
        RetainedScan {
            filter,
            after: Some(after),
            finished: false,
        }
    }

    pub fn filter(&self) -> &ByteStr {
        &self.filter
    }

    /// Whether every matching message has been handed out.
    pub fn is_finished(&self) -> bool {
        self.finished
    }

    /// Visits up to `budget` topics after the last one passed, matching or not (so a
    /// filter that matches few of many topics costs bounded time per call), handing each
    /// matching message to `f`, until `f` says [`Visit::Stop`] or the matching topics run
    /// out (then the scan is finished). Returns the number of topics visited.
    pub fn resume<M: Retained>(
        &mut self,
        store: &RetainedStore<M>,
        budget: usize,
        mut f: impl FnMut(&ByteStr, &M) -> Visit,
    ) -> usize {
        if self.finished || budget == 0 {
            return 0;
        }
        if !has_wildcard(&self.filter) {
            if let Some(Entry(m)) = store.messages.get(self.filter.as_str()) {
                if f(m.topic(), m) == Visit::Stop {
                    return 1;
                }
            }
            self.finished = true;
            return 1;
        }
        let prefix = literal_prefix(&self.filter);
        let start = match &self.after {
            Some(topic) => Bound::Excluded(topic.as_str()),
            None => Bound::Included(prefix),
        };
        let mut visited = 0;
        let mut passed: Option<&ByteStr> = None;
        let mut stopped = false;
        for Entry(m) in store.messages.range::<str, _>((start, Bound::Unbounded)) {
            let topic = m.topic();
            if !topic.starts_with(prefix) {
                break;
            }
            if visited == budget || (matches(&self.filter, topic) && f(topic, m) == Visit::Stop) {
                stopped = true;
                break;
            }
            visited += 1;
            passed = Some(topic);
        }
        if let Some(topic) = passed {
            self.after = Some(topic.clone());
        }
        self.finished = !stopped;
        visited
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A message: its topic and a number.
    #[derive(Debug, PartialEq)]
    struct M(ByteStr, usize);

    impl Retained for M {
        fn topic(&self) -> &ByteStr {
            &self.0
        }
    }

    fn m(topic: &str, n: usize) -> M {
        M(ByteStr::from(topic), n)
    }

    fn store(topics: &[&str]) -> RetainedStore<M> {
        let mut store = RetainedStore::new();
        for (i, t) in topics.iter().enumerate() {
            store.set(m(t, i));
        }
        store
    }

    #[test]
    fn retained_messages_are_replaced_cleared_and_matched() {
        let mut store = RetainedStore::new();
        assert_eq!(store.set(m("a/b", 1)), None);
        assert_eq!(store.set(m("a/b", 2)), Some(m("a/b", 1)));
        store.set(m("a/c", 3));
        store.set(m("$SYS/x", 4));
        let mut seen = Vec::new();
        store.for_each_match("a/+", |_, m| seen.push(m.1));
        assert_eq!(seen, vec![2, 3]);
        let mut all = Vec::new();
        store.for_each_match("#", |_, m| all.push(m.1));
        assert_eq!(all.len(), 2, "$ topics are not matched by #");
        assert_eq!(store.get("a/c"), Some(&m("a/c", 3)));
        assert_eq!(store.remove("a/b"), Some(m("a/b", 2)));
        assert_eq!(store.len(), 2);
    }

    #[test]
    fn the_literal_prefix_stops_before_the_first_wildcard_and_its_separator() {
        assert_eq!(literal_prefix("#"), "");
        assert_eq!(literal_prefix("a/#"), "a");
        assert_eq!(literal_prefix("a/b/+/c"), "a/b");
        assert_eq!(literal_prefix("a//#"), "a/");
        assert_eq!(literal_prefix("+/x"), "");
    }

    #[test]
    fn a_scan_resumed_with_any_budget_hands_out_what_the_matcher_matches_once_each() {
        let topics = [
            "a", "a/b", "a/b/c", "a/bc", "a//x", "a/", "ab", "b/a", "$SYS/a", "$x", "/", "/a", "a/b/c/d",
        ];
        let store = store(&topics);
        let filters = [
            "#", "a/#", "a/+", "a/b/#", "+/a", "+", "a//#", "$SYS/#", "+/+", "/#", "a/b", "nothing", "a/+/c",
        ];
        for filter in filters {
            let mut want: Vec<&str> = topics.iter().copied().filter(|t| matches(filter, t)).collect();
            want.sort();
            for budget in [1, 2, 3, usize::MAX] {
                let mut scan = RetainedScan::new(ByteStr::from(filter));
                let mut got = Vec::new();
                let mut calls = 0;
                while !scan.is_finished() {
                    scan.resume(&store, budget, |t, _| {
                        got.push(t.to_string());
                        Visit::Next
                    });
                    calls += 1;
                    assert!(calls <= topics.len() + 1, "{filter}: the scan does not end");
                }
                assert_eq!(got, want, "{filter} with budget {budget}");
            }
        }
    }

    #[test]
    fn a_stopped_scan_starts_again_with_the_message_it_stopped_at() {
        let store = store(&["t/1", "t/2", "t/3"]);
        let mut scan = RetainedScan::new(ByteStr::from("t/#"));
        let mut got = Vec::new();
        let mut room = 2;
        while !scan.is_finished() {
            scan.resume(&store, 10, |t, _| {
                if room == 0 {
                    return Visit::Stop;
                }
                room -= 1;
                got.push(t.to_string());
                Visit::Next
            });
            room = 1;
        }
        assert_eq!(got, ["t/1", "t/2", "t/3"]);
        // The same for a filter without wildcards.
        let mut exact = RetainedScan::new(ByteStr::from("t/2"));
        exact.resume(&store, 10, |_, _| Visit::Stop);
        assert!(!exact.is_finished());
        let mut taken = 0;
        exact.resume(&store, 10, |_, _| {
            taken += 1;
            Visit::Next
        });
        assert!(exact.is_finished() && taken == 1);
    }

    #[test]
    fn a_scan_goes_on_after_its_last_topic_was_removed_and_sees_later_ones() {
        let mut store = store(&["t/1", "t/2", "t/4"]);
        let mut scan = RetainedScan::new(ByteStr::from("t/+"));
        let mut got = Vec::new();
        scan.resume(&store, 2, |t, _| {
            got.push(t.to_string());
            Visit::Next
        });
        store.remove("t/2");
        store.set(m("t/3", 9));
        scan.resume(&store, 10, |t, _| {
            got.push(t.to_string());
            Visit::Next
        });
        assert!(scan.is_finished());
        assert_eq!(got, ["t/1", "t/2", "t/3", "t/4"]);
    }
}
