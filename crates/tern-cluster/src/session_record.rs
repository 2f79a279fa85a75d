//! What the cluster keeps of a persistent session in the `MQTT_SESSIONS` bucket, and the
//! subjects its JetStream consumer is filtered on.
//!
//! The record (one key per client id, the key made as for a topic) names the run of the
//! node that holds the session (its origin), the durable consumer on the `MQTT_MSGS`
//! stream that keeps the session's QoS 1/2 messages (none until it subscribes), its expiry
//! interval, and its subscriptions. It is text: a first line `tern-session 2`, the
//! origin, the consumer's name (empty for none), the expiry interval in seconds (empty for
//! none: it never expires), then one line per subscription: the options byte (as
//! SUBSCRIBE carries it), the 5.0 Subscription Identifier (0 for none) and the filter,
//! separated by tabs. A filter holding a line break is not kept (the session loses it
//! elsewhere). A record of format 1 (`tern-session 1`, from before the expiry line) reads
//! as one without an expiry interval.

use crate::subject;
use tern_broker::store::records::{options_byte, options_from_byte};
use tern_proto::{ByteStr, SubscriptionOptions};

const HEADER: &str = "tern-session 2";
const HEADER_WITHOUT_EXPIRY: &str = "tern-session 1";

/// A persistent session as the bucket holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// `<node>:<incarnation>` of the node that holds it.
    pub origin: String,
    /// The durable consumer keeping its messages, once it subscribed.
    pub consumer: Option<String>,
    /// Its expiry interval in seconds as its node last wrote it (`None`: never, or not
    /// known), for a node that finds the session's own node dead.
    pub expiry: Option<u64>,
    pub subscriptions: Vec<(ByteStr, SubscriptionOptions, Option<u32>)>,
}

impl Record {
    pub fn encode(&self) -> String {
        let mut out = format!(
            "{HEADER}\n{}\n{}\n{}\n",
            self.origin,
            self.consumer.as_deref().unwrap_or(""),
            self.expiry.map(|e| e.to_string()).unwrap_or_default()
        );
        for (filter, options, identifier) in &self.subscriptions {
            if filter.contains('\n') {
                continue;
            }
            let byte = options_byte(options);
            out.push_str(&format!("{byte}\t{}\t{filter}\n", identifier.unwrap_or(0)));
        }
        out
    }

    /// The filters of the subscriptions at QoS 1 or 2: only those can bring the session a
    /// message at QoS 1/2, so only they make the consumer's subjects.
    pub fn reliable_filters(&self) -> impl Iterator<Item = &str> {
        self.subscriptions
            .iter()
            .filter(|(_, options, _)| options.qos != tern_proto::QoS::AtMostOnce)
            .map(|(filter, _, _)| filter.as_str())
    }

    /// The record in `bytes`, or `None` if it is not one.
    pub fn decode(bytes: &[u8]) -> Option<Record> {
        let text = std::str::from_utf8(bytes).ok()?;
        let mut lines = text.split('\n');
        let with_expiry = match lines.next()? {
            HEADER => true,
            HEADER_WITHOUT_EXPIRY => false,
            _ => return None,
        };
        let origin = lines.next()?.to_string();
        let consumer = Some(lines.next()?.to_string()).filter(|c| !c.is_empty());
        let expiry = match with_expiry {
            true => match lines.next()? {
                "" => None,
                seconds => Some(seconds.parse().ok()?),
            },
            false => None,
        };
        let mut subscriptions = Vec::new();
        for line in lines.filter(|l| !l.is_empty()) {
            let mut fields = line.splitn(3, '\t');
            let options = options_from_byte(fields.next()?.parse().ok()?)?;
            let identifier = fields.next()?.parse::<u32>().ok()?;
            let filter = ByteStr::from(fields.next()?);
            subscriptions.push((filter, options, (identifier != 0).then_some(identifier)));
        }
        Some(Record {
            origin,
            consumer,
            expiry,
            subscriptions,
        })
    }
}

/// The subjects a consumer for `filters` is filtered on: JetStream refuses filters that
/// overlap, so a subject another one covers is left out, and if some still overlap
/// (`a/+` and `+/b`), the roots they are under are taken whole (the session's node
/// matches each message against the filters anyway). Shared subscriptions are not
/// included (their messages go to one member, by the node's routing).
pub fn consumer_subjects<'a>(filters: impl Iterator<Item = &'a str>) -> Vec<String> {
    let mut subjects: Vec<String> = filters
        .filter(|f| !f.starts_with("$share/"))
        .filter_map(subject::filter_subjects)
        .flatten()
        .collect();
    subjects.sort();
    subjects.dedup();
    let all = subjects.clone();
    subjects.retain(|s| !all.iter().any(|other| other != s && covers(other, s)));
    let overlap = subjects
        .iter()
        .enumerate()
        .any(|(i, a)| subjects[i + 1..].iter().any(|b| collide(a, b)));
    if overlap {
        let mut roots: Vec<String> = subjects
            .iter()
            .filter_map(|s| s.split('.').next())
            .map(|root| format!("{root}.>"))
            .collect();
        roots.sort();
        roots.dedup();
        return roots;
    }
    subjects
}

/// Whether every subject `b` matches is matched by `a`.
fn covers(a: &str, b: &str) -> bool {
    let (a, b): (Vec<&str>, Vec<&str>) = (a.split('.').collect(), b.split('.').collect());
    for (i, token) in a.iter().enumerate() {
        match *token {
            ">" => return i < b.len(),
            _ if i >= b.len() => return false,
            "*" if b[i] == ">" => return false,
            "*" => {}
            literal if literal != b[i] => return false,
            _ => {}
        }
    }
    a.len() == b.len()
}

/// Whether some subject matches both `a` and `b`.
fn collide(a: &str, b: &str) -> bool {
    let (a, b): (Vec<&str>, Vec<&str>) = (a.split('.').collect(), b.split('.').collect());
    for i in 0..a.len().min(b.len()) {
        match (a[i], b[i]) {
            (">", _) | (_, ">") => return true,
            ("*", _) | (_, "*") => {}
            (x, y) if x != y => return false,
            _ => {}
        }
    }
    a.len() == b.len()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tern_proto::QoS;

    #[test]
    fn a_record_reads_back() {
        let options = SubscriptionOptions {
            qos: QoS::ExactlyOnce,
            no_local: true,
            ..Default::default()
        };
        let record = Record {
            origin: "a:0000abcd".into(),
            consumer: Some("tern-a-1".into()),
            expiry: Some(300),
            subscriptions: vec![
                (ByteStr::from("x/+/y"), options, Some(7)),
                (ByteStr::from("tab\there"), SubscriptionOptions::default(), None),
            ],
        };
        assert_eq!(Record::decode(record.encode().as_bytes()), Some(record.clone()));
        assert_eq!(
            record.reliable_filters().collect::<Vec<_>>(),
            ["x/+/y"],
            "QoS 0 ones left out"
        );
        let none = Record {
            consumer: None,
            expiry: None,
            subscriptions: vec![],
            ..record
        };
        assert_eq!(Record::decode(none.encode().as_bytes()), Some(none.clone()));
        // Format 1 (no expiry line) still reads.
        let old = "tern-session 1\na:0000abcd\n\n";
        assert_eq!(Record::decode(old.as_bytes()), Some(none));
        assert_eq!(Record::decode(b"something else"), None);
        assert_eq!(Record::decode(b"tern-session 1\na\n\n9\tx\n"), None);
    }

    #[test]
    fn consumer_subjects_do_not_overlap() {
        let subjects = |filters: &[&str]| consumer_subjects(filters.iter().copied());
        assert_eq!(subjects(&["a/b", "a/b"]), ["mq.a.b"]);
        assert_eq!(subjects(&["t/#", "t/+/1", "t/x"]), ["mq.t", "mq.t.>"]);
        assert_eq!(subjects(&["a/+", "+/b"]), ["mq.>"]);
        assert_eq!(subjects(&["$SYS/#", "x"]), ["mq.x", "mqs.=24SYS", "mqs.=24SYS.>"]);
        assert_eq!(subjects(&["$share/g/a", "b"]), ["mq.b"]);
        assert!(covers("mq.>", "mq.a.*"));
        assert!(!covers("mq.*", "mq.>"));
        assert!(!covers("mq.a", "mq.a.b"));
        assert!(collide("mq.a.*", "mq.*.b"));
        assert!(!collide("mq.a", "mq.a.b"));
    }
}
