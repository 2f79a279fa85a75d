//! Work due at a time, ordered by when it falls due: session expiry, delayed wills,
//! message expiry. Taking what is due costs what is due (and a logarithm), never a pass
//! over everything that might one day be due, so a broker with 100,000 idle sessions pays
//! nothing per tick for them.
//!
//! Entries are never updated in place: when the time of something changes, a new entry
//! is added and the old one is found stale when it falls due (its owner checks).

use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;
use std::time::Instant;

struct Entry<T> {
    at: Instant,
    /// Insertion order, so that equal times come out first in, first out.
    order: u64,
    item: T,
}

impl<T> PartialEq for Entry<T> {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.order) == (other.at, other.order)
    }
}
impl<T> Eq for Entry<T> {}
impl<T> PartialOrd for Entry<T> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl<T> Ord for Entry<T> {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.at, self.order).cmp(&(other.at, other.order))
    }
}

/// Items ordered by the instant they fall due.
pub struct Deadlines<T> {
    heap: BinaryHeap<Reverse<Entry<T>>>,
    next_order: u64,
}

impl<T> Default for Deadlines<T> {
    fn default() -> Self {
        Deadlines {
            heap: BinaryHeap::new(),
            next_order: 0,
        }
    }
}

impl<T> Deadlines<T> {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `item`, due at `at`.
    pub fn schedule(&mut self, at: Instant, item: T) {
        self.next_order += 1;
        self.heap.push(Reverse(Entry {
            at,
            order: self.next_order,
            item,
        }));
    }

    /// Removes and returns every item due at or before `now`, earliest first.
    pub fn take_due(&mut self, now: Instant) -> Vec<T> {
        let mut due = Vec::new();
        while self.heap.peek().is_some_and(|Reverse(e)| e.at <= now) {
            if let Some(Reverse(entry)) = self.heap.pop() {
                due.push(entry.item);
            }
        }
        due
    }

    /// When the earliest item falls due.
    pub fn next_due(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse(e)| e.at)
    }

    /// Number of items waiting (stale ones included).
    pub fn len(&self) -> usize {
        self.heap.len()
    }

    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }
}

impl<T> std::fmt::Debug for Deadlines<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Deadlines").field("len", &self.heap.len()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn items_come_out_when_due_earliest_first_and_ties_in_order() {
        let start = Instant::now();
        let mut d = Deadlines::new();
        d.schedule(start + Duration::from_secs(3), "c");
        d.schedule(start + Duration::from_secs(1), "a");
        d.schedule(start + Duration::from_secs(1), "b");
        assert!(d.take_due(start).is_empty());
        assert_eq!(d.take_due(start + Duration::from_secs(2)), vec!["a", "b"]);
        assert_eq!(d.next_due(), Some(start + Duration::from_secs(3)));
        assert_eq!(d.take_due(start + Duration::from_secs(3)), vec!["c"]);
        assert!(d.is_empty());
    }
}
