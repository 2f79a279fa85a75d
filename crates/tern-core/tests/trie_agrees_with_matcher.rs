#![allow(clippy::unwrap_used)]
//! proptest: the subscription trie finds exactly the subscriptions the plain matcher
//! accepts, after arbitrary inserts and removals.

use proptest::prelude::*;
use std::collections::BTreeSet;
use tern_core::topic::matches;
use tern_core::SubscriptionTrie;

fn level() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("a".to_string()),
        Just("b".to_string()),
        Just("".to_string()),
        Just("$s".to_string()),
        // Twelve more names, so that some levels outgrow the trie's small child vector.
        "[c-n]"
    ]
}

fn topic() -> impl Strategy<Value = String> {
    prop::collection::vec(level(), 1..5).prop_map(|l| l.join("/"))
}

fn filter() -> impl Strategy<Value = String> {
    (
        prop::collection::vec(prop_oneof![level(), Just("+".to_string())], 1..5),
        any::<bool>(),
    )
        .prop_map(|(l, hash)| {
            let mut f = l.join("/");
            if hash {
                f.push_str("/#");
            }
            f
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]

    #[test]
    fn the_trie_agrees_with_the_matcher(
        subs in prop::collection::vec((filter(), 0u8..6), 0..30),
        removals in prop::collection::vec(any::<prop::sample::Index>(), 0..10),
        topics in prop::collection::vec(topic(), 1..20),
        bare_hash in any::<bool>(),
    ) {
        let mut subs = subs;
        if bare_hash {
            subs.push(("#".to_string(), 9));
        }
        let mut trie = SubscriptionTrie::new();
        let mut model: BTreeSet<(String, u8)> = BTreeSet::new();
        for (f, k) in &subs {
            trie.insert(f, *k, ());
            model.insert((f.clone(), *k));
        }
        for r in removals {
            if subs.is_empty() { break; }
            let (f, k) = &subs[r.index(subs.len())];
            let expected = model.remove(&(f.clone(), *k));
            prop_assert_eq!(trie.remove(f, k).is_some(), expected);
        }
        prop_assert_eq!(trie.len(), model.len());
        for t in &topics {
            let mut got: Vec<(u8, String)> = Vec::new();
            trie.for_each_match(t, |k, _| got.push((*k, String::new())));
            let mut got: Vec<u8> = got.into_iter().map(|(k, _)| k).collect();
            got.sort();
            let mut want: Vec<u8> = model.iter().filter(|(f, _)| matches(f, t)).map(|(_, k)| *k).collect();
            want.sort();
            prop_assert_eq!(got, want, "topic {}", t);
        }
    }
}
