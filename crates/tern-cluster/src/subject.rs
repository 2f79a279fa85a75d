//! MQTT topics and filters as NATS subjects and key-value keys.
//!
//! Each MQTT level becomes one NATS token. A token keeps ASCII letters, digits, `-` and
//! `_`; every other byte of the level's UTF-8 (`.`, `*`, `>`, `$`, `=`, spaces, anything
//! non-ASCII) is written `=XX` (two upper-case hex digits), and an empty level is the
//! token `=` alone. The result is a valid NATS token and a valid JetStream key-value key
//! token, and it maps back to exactly one level. In filters, a `+` level is the token `*`
//! and a trailing `#` is `>`; since MQTT's `#` also matches its parent level
//! (`a/#` matches `a`), such a filter becomes two subjects (`mq.a` and `mq.a.>`).
//!
//! Topics starting with `$` live under the root `mqs`, all others under `mq`, so that a
//! subscription whose first level is a wildcard (`mq.>` for `#`) never receives `$`
//! topics, as MQTT requires [MQTT-4.7.2-1]. Those are the roots of QoS 1 and 2 messages,
//! which the `MQTT_MSGS` stream stores; QoS 0 messages go under roots of their own, `mq0`
//! and `mqs0` ([`Class::AtMostOnce`]), which no stream captures: they cost JetStream
//! nothing and cannot push stored messages out of the stream's limits. A node's live
//! subscriptions take both classes ([`live_filter_subjects`]); MQTT orders a topic's
//! messages per QoS [MQTT-4.6.0-6], which each subscription keeps. A subject longer than
//! [`MAX_SUBJECT`] bytes has no mapping: such a topic stays on its node.

/// Root of the subjects of QoS 1/2 messages on topics not starting with `$`.
pub const ROOT: &str = "mq";
/// Root of the subjects of QoS 1/2 messages on topics starting with `$`.
pub const DOLLAR_ROOT: &str = "mqs";
/// The roots of QoS 0 messages (kept out of the stream).
pub const AT_MOST_ONCE_ROOT: &str = "mq0";
pub const AT_MOST_ONCE_DOLLAR_ROOT: &str = "mqs0";

/// Which roots a message's subject is under: its QoS decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// QoS 1 and 2: stored by the `MQTT_MSGS` stream.
    Stored,
    /// QoS 0: only to whoever subscribes at that moment.
    AtMostOnce,
}

impl Class {
    /// The class of a message published at `qos`.
    pub fn of(qos: tern_proto::QoS) -> Class {
        if qos == tern_proto::QoS::AtMostOnce {
            Class::AtMostOnce
        } else {
            Class::Stored
        }
    }

    /// The root of a topic or filter of this class.
    fn root(self, topic_or_filter: &str) -> &'static str {
        match (self, topic_or_filter.starts_with('$')) {
            (Class::Stored, false) => ROOT,
            (Class::Stored, true) => DOLLAR_ROOT,
            (Class::AtMostOnce, false) => AT_MOST_ONCE_ROOT,
            (Class::AtMostOnce, true) => AT_MOST_ONCE_DOLLAR_ROOT,
        }
    }
}
/// Longest subject (or key) made; NATS's protocol line must hold it with room to spare.
pub const MAX_SUBJECT: usize = 2048;

/// Whether `b` stands for itself in a token.
fn plain(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'_'
}

/// Appends the token of one MQTT level.
fn push_level(level: &str, out: &mut String) {
    if level.is_empty() {
        out.push('=');
        return;
    }
    for &b in level.as_bytes() {
        if plain(b) {
            out.push(char::from(b));
        } else {
            const HEX: &[u8; 16] = b"0123456789ABCDEF";
            out.push('=');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 15)]));
        }
    }
}

/// The tokens of `topic` joined by `.` (a key-value key), or `None` when too long.
pub fn topic_key(topic: &str) -> Option<String> {
    let mut out = String::with_capacity(topic.len() + 8);
    for (i, level) in topic.split('/').enumerate() {
        if i > 0 {
            out.push('.');
        }
        push_level(level, &mut out);
        if out.len() > MAX_SUBJECT {
            return None;
        }
    }
    Some(out)
}

/// The subject of a QoS 1/2 message's topic name, or `None` when too long.
pub fn topic_subject(topic: &str) -> Option<String> {
    class_topic_subject(Class::Stored, topic)
}

/// The subject of a topic name for a message of `class`, or `None` when too long.
pub fn class_topic_subject(class: Class, topic: &str) -> Option<String> {
    let root = class.root(topic);
    let key = topic_key(topic)?;
    let subject = format!("{root}.{key}");
    (subject.len() <= MAX_SUBJECT).then_some(subject)
}

/// The subjects that together receive every QoS 1/2 message on a topic `filter` (a valid
/// MQTT filter, without `$share/{group}/`) matches: one, or two for a filter ending in
/// `/#`; what consumers of the stream filter on. `None` when too long.
pub fn filter_subjects(filter: &str) -> Option<Vec<String>> {
    class_filter_subjects(Class::Stored, filter)
}

/// The subjects that receive every message, of either class, on a topic `filter`
/// matches: a live subscription's.
pub fn live_filter_subjects(filter: &str) -> Option<Vec<String>> {
    let mut subjects = class_filter_subjects(Class::Stored, filter)?;
    subjects.extend(class_filter_subjects(Class::AtMostOnce, filter)?);
    Some(subjects)
}

/// The subjects of `class` that receive every topic `filter` matches.
pub fn class_filter_subjects(class: Class, filter: &str) -> Option<Vec<String>> {
    let root = class.root(filter);
    let mut out = String::with_capacity(filter.len() + 8);
    out.push_str(root);
    let mut parent = None;
    for level in filter.split('/') {
        match level {
            "+" => out.push_str(".*"),
            "#" => {
                // Everything below, and the parent level itself (not for a lone `#`:
                // the root is no topic).
                if out.len() > root.len() {
                    parent = Some(out.clone());
                }
                out.push_str(".>");
            }
            _ => {
                out.push('.');
                push_level(level, &mut out);
            }
        }
        if out.len() > MAX_SUBJECT {
            return None;
        }
    }
    Some(parent.into_iter().chain(std::iter::once(out)).collect())
}

/// The topic a key-value key stands for, or `None` if it is not one [`topic_key`] makes.
pub fn key_topic(key: &str) -> Option<String> {
    let mut bytes = Vec::with_capacity(key.len());
    for (i, token) in key.split('.').enumerate() {
        if i > 0 {
            bytes.push(b'/');
        }
        if token == "=" {
            continue;
        }
        let mut rest = token.as_bytes();
        if rest.is_empty() {
            return None;
        }
        while let Some((&b, tail)) = rest.split_first() {
            if b == b'=' {
                let hex = tail.get(..2)?;
                let text = std::str::from_utf8(hex).ok()?;
                bytes.push(u8::from_str_radix(text, 16).ok()?);
                rest = &tail[2..];
            } else if plain(b) {
                bytes.push(b);
                rest = tail;
            } else {
                return None;
            }
        }
    }
    String::from_utf8(bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_topics_keep_their_names() {
        assert_eq!(
            topic_subject("sensors/room-1/temp_c").unwrap(),
            "mq.sensors.room-1.temp_c"
        );
        assert_eq!(topic_key("a/b").unwrap(), "a.b");
    }

    #[test]
    fn what_nats_cannot_hold_is_escaped() {
        assert_eq!(topic_subject("a.b/*/>/x y").unwrap(), "mq.a=2Eb.=2A.=3E.x=20y");
        assert_eq!(topic_subject("/a//").unwrap(), "mq.=.a.=.=");
        assert_eq!(topic_subject("=").unwrap(), "mq.=3D");
        assert_eq!(topic_subject("ü").unwrap(), "mq.=C3=BC");
        assert_eq!(topic_subject("$SYS/x").unwrap(), "mqs.=24SYS.x");
    }

    #[test]
    fn keys_map_back_to_their_topics() {
        for topic in ["a", "/", "a//b/", "$iot/o/x.y", "ü/ =/*>#+", "===", "a/=/b"] {
            let key = topic_key(topic).unwrap();
            assert!(key.bytes().all(|b| plain(b) || b == b'=' || b == b'.'), "{key}");
            assert_eq!(key_topic(&key).as_deref(), Some(topic), "{key}");
        }
        assert_eq!(key_topic("a..b"), None);
        assert_eq!(key_topic("=4"), None);
        assert_eq!(key_topic("a b"), None);
    }

    #[test]
    fn wildcards_become_nats_wildcards() {
        assert_eq!(filter_subjects("a/+/c").unwrap(), ["mq.a.*.c"]);
        assert_eq!(filter_subjects("#").unwrap(), ["mq.>"]);
        assert_eq!(filter_subjects("+/#").unwrap(), ["mq.*", "mq.*.>"]);
        assert_eq!(filter_subjects("a/#").unwrap(), ["mq.a", "mq.a.>"]);
        assert_eq!(filter_subjects("$SYS/#").unwrap(), ["mqs.=24SYS", "mqs.=24SYS.>"]);
        assert_eq!(filter_subjects("a.b").unwrap(), ["mq.a=2Eb"]);
    }

    #[test]
    fn qos_0_messages_have_roots_of_their_own() {
        use tern_proto::QoS;
        assert_eq!(Class::of(QoS::AtMostOnce), Class::AtMostOnce);
        assert_eq!(Class::of(QoS::ExactlyOnce), Class::Stored);
        assert_eq!(class_topic_subject(Class::AtMostOnce, "a/b").unwrap(), "mq0.a.b");
        assert_eq!(
            class_topic_subject(Class::AtMostOnce, "$SYS/x").unwrap(),
            "mqs0.=24SYS.x"
        );
        assert_eq!(class_topic_subject(Class::Stored, "a/b").unwrap(), "mq.a.b");
        assert_eq!(
            live_filter_subjects("a/#").unwrap(),
            ["mq.a", "mq.a.>", "mq0.a", "mq0.a.>"]
        );
        assert_eq!(live_filter_subjects("#").unwrap(), ["mq.>", "mq0.>"]);
        assert_eq!(
            live_filter_subjects("$SYS/#").unwrap(),
            ["mqs.=24SYS", "mqs.=24SYS.>", "mqs0.=24SYS", "mqs0.=24SYS.>"]
        );
        assert_eq!(class_filter_subjects(Class::AtMostOnce, "+/x").unwrap(), ["mq0.*.x"]);
    }

    #[test]
    fn overlong_topics_have_no_subject() {
        let long = "x".repeat(MAX_SUBJECT);
        assert!(topic_subject(&long).is_none());
        assert!(filter_subjects(&format!("{long}/#")).is_none());
        assert!(topic_subject(&"x".repeat(MAX_SUBJECT - 10)).is_some());
    }
}
