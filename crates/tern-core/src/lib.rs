//! The broker's rules without its sockets.
//!
//! Everything here is plain data and synchronous methods: topic matching, the subscription
//! trie that finds a PUBLISH's receivers, the retained-message store, and the outbox of a
//! session (its bounded queue, in-flight window and packet identifiers). The broker crate
//! wraps them in its connection tasks; keeping them free of I/O makes them easy to test
//! exhaustively and to reuse.

pub mod acl;
pub mod deadlines;
pub mod outbox;
pub mod password;
pub mod retained;
pub mod scram;
pub mod topic;
pub mod trie;

pub use deadlines::Deadlines;
pub use outbox::{Inflight, Outbox, OutboxLimits, QueueFull, Sendable, Stage};
pub use retained::RetainedStore;
pub use trie::SubscriptionTrie;
