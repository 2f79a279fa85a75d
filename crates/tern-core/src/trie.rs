//! The subscription trie: topic filters indexed level by level, so finding the receivers
//! of a PUBLISH costs the depth of its topic, not the number of subscriptions.
//!
//! Each node has exact children by level name, one `+` child, and two subscriber lists:
//! those whose filter ends at the node and those whose filter is the node followed by `#`.
//! Keys identify subscribers (a session); values carry the subscription's options.

use std::collections::HashMap;

/// Exact children up to this many are a vector searched by comparing names.
const FEW_CHILDREN: usize = 8;

/// A node's exact children by level name. Most levels of a topic tree have a handful of
/// names: those are a vector searched by comparison, so a walk pays no hashing per level
/// (deep topics, such as the IoT platform's eleven levels, made SipHash the top cost of a
/// publish). A level with more names is a hash map, SipHash as std has it: level names
/// come from clients, and a weaker hash would let them build collisions.
#[derive(Debug)]
enum Children<N> {
    Few(Vec<(Box<str>, N)>),
    Many(HashMap<Box<str>, N>),
}

impl<N: Default> Children<N> {
    fn get(&self, level: &str) -> Option<&N> {
        match self {
            Children::Few(few) => few.iter().find(|(name, _)| &**name == level).map(|(_, n)| n),
            Children::Many(many) => many.get(level),
        }
    }

    fn get_mut(&mut self, level: &str) -> Option<&mut N> {
        match self {
            Children::Few(few) => few.iter_mut().find(|(name, _)| &**name == level).map(|(_, n)| n),
            Children::Many(many) => many.get_mut(level),
        }
    }

    /// The child called `level`, made if it is not there.
    fn get_or_insert(&mut self, level: &str) -> &mut N {
        if let Children::Few(few) = self {
            if few.len() >= FEW_CHILDREN && !few.iter().any(|(name, _)| &**name == level) {
                let many = std::mem::take(few).into_iter().collect();
                *self = Children::Many(many);
            }
        }
        match self {
            Children::Few(few) => {
                let at = match few.iter().position(|(name, _)| &**name == level) {
                    Some(at) => at,
                    None => {
                        few.push((level.into(), N::default()));
                        few.len() - 1
                    }
                };
                &mut few[at].1
            }
            Children::Many(many) => many.entry(level.into()).or_default(),
        }
    }

    fn remove(&mut self, level: &str) {
        match self {
            Children::Few(few) => few.retain(|(name, _)| &**name != level),
            Children::Many(many) => {
                many.remove(level);
            }
        }
    }

    fn is_empty(&self) -> bool {
        match self {
            Children::Few(few) => few.is_empty(),
            Children::Many(many) => many.is_empty(),
        }
    }
}

#[derive(Debug)]
struct Node<K, V> {
    children: Children<Node<K, V>>,
    /// The `+` child.
    plus: Option<Box<Node<K, V>>>,
    /// Subscribers whose filter ends here.
    exact: Vec<(K, V)>,
    /// Subscribers whose filter is this node followed by `#`.
    hash: Vec<(K, V)>,
}

impl<K, V> Default for Node<K, V> {
    fn default() -> Self {
        Node {
            children: Children::Few(Vec::new()),
            plus: None,
            exact: Vec::new(),
            hash: Vec::new(),
        }
    }
}

impl<K, V> Node<K, V> {
    fn is_empty(&self) -> bool {
        self.children.is_empty() && self.plus.is_none() && self.exact.is_empty() && self.hash.is_empty()
    }
}

/// Topic filters mapped to subscribers.
#[derive(Debug)]
pub struct SubscriptionTrie<K, V> {
    root: Node<K, V>,
    /// Number of (filter, key) pairs, for $SYS and metrics.
    len: usize,
}

impl<K, V> Default for SubscriptionTrie<K, V> {
    fn default() -> Self {
        SubscriptionTrie {
            root: Node::default(),
            len: 0,
        }
    }
}

impl<K: PartialEq + Clone, V> SubscriptionTrie<K, V> {
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of subscriptions.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Adds or replaces the subscription of `key` to `filter` (a valid topic filter).
    /// Returns the previous value if the subscription existed.
    pub fn insert(&mut self, filter: &str, key: K, value: V) -> Option<V> {
        let (node, list_is_hash) = Self::walk_create(&mut self.root, filter);
        let list = if list_is_hash { &mut node.hash } else { &mut node.exact };
        if let Some(entry) = list.iter_mut().find(|(k, _)| *k == key) {
            return Some(std::mem::replace(&mut entry.1, value));
        }
        list.push((key, value));
        self.len += 1;
        None
    }

    fn walk_create<'a>(mut node: &'a mut Node<K, V>, filter: &str) -> (&'a mut Node<K, V>, bool) {
        for level in filter.split('/') {
            match level {
                "#" => return (node, true),
                "+" => node = node.plus.get_or_insert_with(Box::default),
                _ => node = node.children.get_or_insert(level),
            }
        }
        (node, false)
    }

    /// The value of `key`'s subscription to `filter`, if there is one.
    pub fn get(&self, filter: &str, key: &K) -> Option<&V> {
        let mut node = &self.root;
        let mut list = &node.exact;
        for level in filter.split('/') {
            match level {
                "#" => {
                    list = &node.hash;
                    break;
                }
                "+" => node = node.plus.as_deref()?,
                _ => node = node.children.get(level)?,
            }
            list = &node.exact;
        }
        list.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// Removes the subscription of `key` to `filter`, returning its value.
    pub fn remove(&mut self, filter: &str, key: &K) -> Option<V> {
        let levels: Vec<&str> = filter.split('/').collect();
        let removed = Self::remove_at(&mut self.root, &levels, key);
        if removed.is_some() {
            self.len -= 1;
        }
        removed
    }

    fn remove_at(node: &mut Node<K, V>, levels: &[&str], key: &K) -> Option<V> {
        let take = |list: &mut Vec<(K, V)>| list.iter().position(|(k, _)| k == key).map(|i| list.swap_remove(i).1);
        let Some((&level, rest)) = levels.split_first() else {
            return take(&mut node.exact);
        };
        match level {
            "#" => take(&mut node.hash),
            "+" => {
                let child = node.plus.as_deref_mut()?;
                let removed = Self::remove_at(child, rest, key);
                if child.is_empty() {
                    node.plus = None;
                }
                removed
            }
            _ => {
                let child = node.children.get_mut(level)?;
                let removed = Self::remove_at(child, rest, key);
                if child.is_empty() {
                    node.children.remove(level);
                }
                removed
            }
        }
    }

    /// Calls `f` for every subscription whose filter matches `topic`. A key subscribed
    /// through several matching filters is reported once per filter; the caller merges.
    pub fn for_each_match<'a>(&'a self, topic: &str, mut f: impl FnMut(&'a K, &'a V)) {
        let dollar = topic.starts_with('$');
        Self::visit(&self.root, topic.split('/'), !dollar, &mut f);
    }

    fn visit<'a>(
        node: &'a Node<K, V>,
        mut levels: std::str::Split<'_, char>,
        wildcards: bool,
        f: &mut impl FnMut(&'a K, &'a V),
    ) {
        if wildcards {
            for (k, v) in &node.hash {
                f(k, v);
            }
        }
        let Some(level) = levels.next() else {
            for (k, v) in &node.exact {
                f(k, v);
            }
            return;
        };
        if wildcards {
            if let Some(plus) = &node.plus {
                Self::visit(plus, levels.clone(), true, f);
            }
        }
        if let Some(child) = node.children.get(level) {
            Self::visit(child, levels, true, f);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matching(trie: &SubscriptionTrie<u32, ()>, topic: &str) -> Vec<u32> {
        let mut keys = Vec::new();
        trie.for_each_match(topic, |k, _| keys.push(*k));
        keys.sort();
        keys
    }

    #[test]
    fn parent_levels_match_hash_filters() {
        let mut trie = SubscriptionTrie::new();
        trie.insert("sport/#", 1, ());
        trie.insert("sport/+", 2, ());
        trie.insert("#", 3, ());
        assert_eq!(matching(&trie, "sport"), vec![1, 3]);
        assert_eq!(matching(&trie, "sport/tennis"), vec![1, 2, 3]);
        assert_eq!(matching(&trie, "$SYS/x"), Vec::<u32>::new());
    }

    #[test]
    fn removing_prunes_and_counts() {
        let mut trie = SubscriptionTrie::new();
        assert_eq!(trie.insert("a/+/c", 1, 'x'), None);
        assert_eq!(trie.insert("a/+/c", 1, 'y'), Some('x'));
        assert_eq!(trie.len(), 1);
        assert_eq!(trie.get("a/+/c", &1), Some(&'y'));
        assert_eq!(trie.get("a/+", &1), None);
        assert_eq!(trie.get("a/+/c", &2), None);
        trie.insert("a/#", 1, 'h');
        assert_eq!(trie.get("a/#", &1), Some(&'h'));
        assert_eq!(trie.remove("a/#", &1), Some('h'));
        assert_eq!(trie.remove("a/+/c", &1), Some('y'));
        assert_eq!(trie.remove("a/+/c", &1), None);
        assert!(trie.is_empty());
        assert!(trie.root.is_empty());
    }

    #[test]
    fn a_level_with_many_names_keeps_matching_as_it_grows_and_shrinks() {
        let mut trie = SubscriptionTrie::new();
        for i in 0..3 * FEW_CHILDREN as u32 {
            trie.insert(&format!("site/{i}/t"), i, ());
        }
        for i in 0..3 * FEW_CHILDREN as u32 {
            assert_eq!(matching(&trie, &format!("site/{i}/t")), vec![i]);
        }
        for i in 0..3 * FEW_CHILDREN as u32 {
            assert_eq!(trie.remove(&format!("site/{i}/t"), &i), Some(()));
        }
        assert!(trie.is_empty());
        assert!(trie.root.is_empty());
    }
}
