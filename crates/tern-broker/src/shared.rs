//! Shared subscriptions (MQTT 5.0 section 4.8.2): `$share/{group}/{filter}`.
//!
//! The members of one group subscribed to one filter form a [`SharedGroup`]; each
//! matching message goes to one of them, picked by the configured [`ShareStrategy`],
//! preferring members that are connected. The router keeps the groups in a trie of their
//! own, keyed by group name; this module only parses names and picks members.

use crate::router::Subscriber;
use crate::session::SessionId;
use std::hash::{BuildHasher, Hash, Hasher};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use tern_proto::ByteStr;

/// How a group picks the member that receives a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ShareStrategy {
    /// Members in turn (the default, as EMQX and HiveMQ).
    #[default]
    RoundRobin,
    /// A member at random.
    Random,
    /// The same member while it stays connected, then the next.
    Sticky,
    /// The member chosen by a hash of the topic: one topic, one member (order per topic).
    HashTopic,
}

impl ShareStrategy {
    /// The configuration names, as EMQX spells them.
    pub fn parse(name: &str) -> Option<ShareStrategy> {
        match name {
            "round_robin" => Some(ShareStrategy::RoundRobin),
            "random" => Some(ShareStrategy::Random),
            "sticky" => Some(ShareStrategy::Sticky),
            "hash_topic" => Some(ShareStrategy::HashTopic),
            _ => None,
        }
    }
}

/// `$share/{group}/{filter}` split into group and filter; `None` if `filter` is not a
/// shared subscription. A malformed one is an error naming the rule it breaks.
pub fn parse_share(filter: &str) -> Option<Result<(&str, &str), &'static str>> {
    let rest = filter.strip_prefix("$share/")?;
    let Some((group, topic_filter)) = rest.split_once('/') else {
        return Some(Err(
            "[MQTT-4.8.2-2] a ShareName must be followed by \"/\" and a Topic Filter",
        ));
    };
    if group.is_empty() || group.contains(['+', '#']) {
        return Some(Err(
            "[MQTT-4.8.2-1] a ShareName is at least one character and has no \"/\", \"+\" or \"#\"",
        ));
    }
    if topic_filter.is_empty() {
        return Some(Err("[MQTT-4.8.2-2] the Topic Filter of a shared subscription is empty"));
    }
    Some(Ok((group, topic_filter)))
}

/// The members of one shared subscription.
#[derive(Debug)]
pub struct SharedGroup {
    /// The full `$share/{group}/{filter}`, carried by each delivery so that a member
    /// leaving can hand its messages back to the group.
    pub name: ByteStr,
    pub members: Vec<Subscriber>,
    /// Round-robin position, or the sticky member.
    cursor: AtomicUsize,
}

impl SharedGroup {
    pub fn new(name: ByteStr) -> SharedGroup {
        SharedGroup {
            name,
            members: Vec::new(),
            cursor: AtomicUsize::new(0),
        }
    }

    /// Adds or replaces `member`; returns whether it was already a member.
    pub fn join(&mut self, member: Subscriber) -> bool {
        match self.members.iter_mut().find(|m| m.session.id == member.session.id) {
            Some(existing) => {
                *existing = member;
                true
            }
            None => {
                self.members.push(member);
                false
            }
        }
    }

    /// Removes the member of session `id`; returns whether it was one.
    pub fn leave(&mut self, id: SessionId) -> bool {
        let before = self.members.len();
        self.members.retain(|m| m.session.id != id);
        self.members.len() != before
    }

    /// The member that receives a message on `topic`: the strategy's choice among
    /// connected members not in `except`. With none connected, an offline member (its
    /// persistent session queues the message) unless `online_only`.
    pub fn pick(
        &self,
        strategy: ShareStrategy,
        topic: &str,
        except: &[SessionId],
        online_only: bool,
    ) -> Option<&Subscriber> {
        let n = self.members.len();
        if n == 0 {
            return None;
        }
        let start = match strategy {
            ShareStrategy::RoundRobin => self.cursor.fetch_add(1, Relaxed),
            ShareStrategy::Sticky => self.cursor.load(Relaxed),
            ShareStrategy::Random => hash_of(&self.cursor.fetch_add(1, Relaxed), true),
            ShareStrategy::HashTopic => hash_of(topic, false),
        } % n;
        let candidates = || {
            (0..n)
                .map(|i| (start + i) % n)
                .filter(|&i| !except.contains(&self.members[i].session.id))
        };
        let online = candidates().find(|&i| self.members[i].session.is_online());
        if let (Some(i), ShareStrategy::Sticky) = (online, strategy) {
            self.cursor.store(i, Relaxed);
        }
        let chosen = match online {
            Some(i) => Some(i),
            None if online_only => None,
            None => candidates().next(),
        };
        chosen.map(|i| &self.members[i])
    }
}

/// A hash of `value`: with `random`, keyed per process so that it scatters counters.
fn hash_of<T: Hash + ?Sized>(value: &T, random: bool) -> usize {
    use std::sync::OnceLock;
    static RANDOM: OnceLock<std::collections::hash_map::RandomState> = OnceLock::new();
    let mut hasher = if random {
        RANDOM.get_or_init(Default::default).build_hasher()
    } else {
        std::hash::BuildHasherDefault::<std::collections::hash_map::DefaultHasher>::default().build_hasher()
    };
    value.hash(&mut hasher);
    hasher.finish() as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn share_names_are_parsed_and_checked() {
        assert_eq!(parse_share("a/b"), None);
        assert_eq!(parse_share("$share/g/a/+"), Some(Ok(("g", "a/+"))));
        assert_eq!(parse_share("$share/g/#"), Some(Ok(("g", "#"))));
        assert!(parse_share("$share/g").unwrap().is_err());
        assert!(parse_share("$share//a").unwrap().is_err());
        assert!(parse_share("$share/g+/a").unwrap().is_err());
        assert!(parse_share("$share/g/").unwrap().is_err());
        assert_eq!(ShareStrategy::parse("sticky"), Some(ShareStrategy::Sticky));
        assert_eq!(ShareStrategy::parse("fastest"), None);
    }
}
