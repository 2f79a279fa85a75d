//! mosquitto ACL files, read unchanged, and the access checks made with them.
//!
//! ```text
//! # anonymous clients: rules before the first `user` line
//! topic read public/#
//! user alice
//! topic readwrite alice/#
//! topic deny alice/secret
//! # every client, with %c (client id) and %u (user name) substituted
//! pattern write devices/%c/state
//! ```
//!
//! A rule grants `read`, `write` or `readwrite` (the default when no access is named), or
//! `deny`. An operation is allowed when some rule that applies to the client grants it and
//! no `deny` rule matches; with an ACL file in force, anything else is denied. Subscribing
//! is wildcard-aware: a filter is allowed only if every topic it can match is readable
//! under one rule, so `#` is refused to a client that may read `a/#` only.

use crate::topic::matches;

/// What a rule allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Read,
    Write,
    ReadWrite,
    Deny,
}

impl Access {
    fn grants_read(self) -> bool {
        matches!(self, Access::Read | Access::ReadWrite)
    }

    fn grants_write(self) -> bool {
        matches!(self, Access::Write | Access::ReadWrite)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Rule {
    access: Access,
    filter: String,
}

/// A parsed ACL file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Acl {
    /// `topic` rules before the first `user` line: clients without a user name.
    anonymous: Vec<Rule>,
    /// `topic` rules per user name.
    users: Vec<(String, Vec<Rule>)>,
    /// `pattern` rules, for every client.
    patterns: Vec<Rule>,
}

/// A line of an ACL file that cannot be read.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[error("line {line}: {problem}")]
pub struct AclError {
    pub line: usize,
    pub problem: String,
}

/// The client an access check is for.
#[derive(Debug, Clone, Copy)]
pub struct Client<'a> {
    pub user: Option<&'a str>,
    pub client_id: &'a str,
}

fn parse_rule(words: &[&str], line: usize) -> Result<Rule, AclError> {
    let error = |problem: &str| AclError {
        line,
        problem: problem.to_string(),
    };
    // mosquitto: `topic [access] filter`, the filter being the rest of the line (it may
    // contain spaces).
    let (access, filter) = match words {
        [] => return Err(error("a topic filter is missing")),
        [only] => (Access::ReadWrite, only.to_string()),
        [first, rest @ ..] => match *first {
            "read" => (Access::Read, rest.join(" ")),
            "write" => (Access::Write, rest.join(" ")),
            "readwrite" => (Access::ReadWrite, rest.join(" ")),
            "deny" => (Access::Deny, rest.join(" ")),
            _ => (Access::ReadWrite, words.join(" ")),
        },
    };
    if tern_proto::topic::validate_topic_filter(&filter).is_err() {
        return Err(error(&format!("{filter:?} is not a valid topic filter")));
    }
    Ok(Rule { access, filter })
}

impl Acl {
    /// Parses the text of an ACL file.
    pub fn parse(text: &str) -> Result<Acl, AclError> {
        let mut acl = Acl::default();
        for (index, raw) in text.lines().enumerate() {
            let line = index + 1;
            let trimmed = raw.trim();
            if trimmed.is_empty() || trimmed.starts_with('#') {
                continue;
            }
            let words: Vec<&str> = trimmed.split_whitespace().collect();
            match words[0] {
                "user" => match &words[1..] {
                    [] => {
                        return Err(AclError {
                            line,
                            problem: "`user` needs a user name".into(),
                        })
                    }
                    name => acl.users.push((name.join(" "), Vec::new())),
                },
                "topic" => {
                    let rule = parse_rule(&words[1..], line)?;
                    match acl.users.last_mut() {
                        Some((_, rules)) => rules.push(rule),
                        None => acl.anonymous.push(rule),
                    }
                }
                "pattern" => acl.patterns.push(parse_rule(&words[1..], line)?),
                other => {
                    return Err(AclError {
                        line,
                        problem: format!("unknown keyword {other:?} (expected topic, user or pattern)"),
                    })
                }
            }
        }
        Ok(acl)
    }

    /// Every rule that applies to `client`, patterns substituted.
    fn rules_for<'a>(&'a self, client: Client<'a>) -> impl Iterator<Item = (Access, std::borrow::Cow<'a, str>)> + 'a {
        let own: &[Rule] = match client.user {
            None => &self.anonymous,
            Some(user) => self
                .users
                .iter()
                .find(|(name, _)| name == user)
                .map_or(&[], |(_, rules)| rules.as_slice()),
        };
        let topics = own
            .iter()
            .map(|r| (r.access, std::borrow::Cow::Borrowed(r.filter.as_str())));
        let patterns = self.patterns.iter().filter_map(move |r| {
            if r.filter.contains("%u") && client.user.is_none() {
                return None;
            }
            let filter = r
                .filter
                .replace("%c", client.client_id)
                .replace("%u", client.user.unwrap_or_default());
            // A substituted id containing wildcards must not widen the rule.
            if (client.client_id.contains(['+', '#']) && r.filter.contains("%c"))
                || (client.user.is_some_and(|u| u.contains(['+', '#'])) && r.filter.contains("%u"))
            {
                return None;
            }
            Some((r.access, std::borrow::Cow::Owned(filter)))
        });
        topics.chain(patterns)
    }

    /// Whether `client` may publish to `topic`.
    pub fn may_write(&self, client: Client<'_>, topic: &str) -> bool {
        self.check(client, |filter| matches(filter, topic), Access::grants_write)
    }

    /// Whether `client` may receive a message on `topic`.
    pub fn may_read(&self, client: Client<'_>, topic: &str) -> bool {
        self.check(client, |filter| matches(filter, topic), Access::grants_read)
    }

    /// Whether `client` may subscribe to `filter`: every topic it matches must be
    /// readable under one rule, and no deny rule may cover it entirely.
    pub fn may_subscribe(&self, client: Client<'_>, filter: &str) -> bool {
        self.check(client, |rule| filter_within(filter, rule), Access::grants_read)
    }

    fn check(&self, client: Client<'_>, applies: impl Fn(&str) -> bool, grants: fn(Access) -> bool) -> bool {
        let mut allowed = false;
        for (access, filter) in self.rules_for(client) {
            if !applies(&filter) {
                continue;
            }
            if access == Access::Deny {
                return false;
            }
            allowed |= grants(access);
        }
        allowed
    }
}

/// Whether every topic matching `filter` also matches `rule` (both valid filters).
pub fn filter_within(filter: &str, rule: &str) -> bool {
    // [MQTT-4.7.2-1]: wildcards at the first level do not match `$` topics.
    if filter.starts_with('$') && (rule.starts_with('+') || rule.starts_with('#')) {
        return false;
    }
    let mut f = filter.split('/');
    let mut r = rule.split('/');
    loop {
        match (f.next(), r.next()) {
            (_, Some("#")) => return true,
            (None, None) => return true,
            (Some(_), None) | (None, Some(_)) => return false,
            (Some("#"), Some(_)) => return false,
            (Some("+"), Some(level)) => {
                if level != "+" {
                    return false;
                }
            }
            (Some(level), Some(rule_level)) => {
                if rule_level != "+" && rule_level != level {
                    return false;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = "\
# anonymous
topic read public/#
user alice
topic readwrite alice/#
topic deny alice/secret
topic sensors/+/temp
user bob
topic write bob/out
pattern write devices/%c/state
pattern read users/%u/#
";

    fn anon(id: &str) -> Client<'_> {
        Client {
            user: None,
            client_id: id,
        }
    }

    fn user<'a>(name: &'a str, id: &'a str) -> Client<'a> {
        Client {
            user: Some(name),
            client_id: id,
        }
    }

    #[test]
    fn rules_apply_by_user_anonymous_and_pattern() {
        let acl = Acl::parse(FILE).unwrap();
        assert!(acl.may_read(anon("x"), "public/news"));
        assert!(!acl.may_write(anon("x"), "public/news"));
        assert!(!acl.may_read(anon("x"), "alice/a"));
        assert!(acl.may_write(user("alice", "a1"), "alice/a"));
        assert!(!acl.may_read(user("alice", "a1"), "alice/secret"), "deny wins");
        assert!(
            acl.may_write(user("alice", "a1"), "sensors/k/temp"),
            "no access word: readwrite"
        );
        assert!(
            !acl.may_read(user("alice", "a1"), "public/news"),
            "anonymous rules are not alice's"
        );
        assert!(acl.may_write(user("bob", "b1"), "bob/out"));
        assert!(!acl.may_read(user("bob", "b1"), "bob/out"));
        assert!(acl.may_write(anon("dev7"), "devices/dev7/state"), "%c");
        assert!(!acl.may_write(anon("dev7"), "devices/dev8/state"));
        assert!(acl.may_read(user("bob", "b1"), "users/bob/inbox"), "%u");
        assert!(!acl.may_read(anon("b1"), "users//inbox"), "%u needs a user");
        assert!(
            !acl.may_write(anon("+"), "devices/x/state"),
            "a wildcard id does not widen %c"
        );
        assert!(
            !acl.may_read(user("carol", "c"), "public/news"),
            "unknown users get patterns only"
        );
    }

    #[test]
    fn subscriptions_must_fit_inside_a_rule() {
        let acl = Acl::parse(FILE).unwrap();
        assert!(acl.may_subscribe(anon("x"), "public/#"));
        assert!(acl.may_subscribe(anon("x"), "public/+/x"));
        assert!(!acl.may_subscribe(anon("x"), "#"), "wider than the rule");
        assert!(!acl.may_subscribe(anon("x"), "+/news"));
        assert!(acl.may_subscribe(user("alice", "a"), "sensors/+/temp"));
        assert!(!acl.may_subscribe(user("alice", "a"), "sensors/#"));
        assert!(!acl.may_subscribe(user("alice", "a"), "alice/secret"));
        assert!(
            acl.may_subscribe(user("alice", "a"), "alice/#"),
            "deny is checked per message"
        );
    }

    #[test]
    fn filter_within_is_level_wise() {
        assert!(filter_within("a/b", "a/#"));
        assert!(filter_within("a", "a/#"));
        assert!(filter_within("a/+", "a/+"));
        assert!(!filter_within("a/+", "a/b"));
        assert!(!filter_within("a/#", "a/+"));
        assert!(filter_within("a/b/c", "+/+/c"));
        assert!(!filter_within("$SYS/x", "#"));
        assert!(filter_within("$SYS/x", "$SYS/#"));
    }

    #[test]
    fn bad_lines_are_named() {
        assert_eq!(Acl::parse("user\n").unwrap_err().line, 1);
        assert_eq!(Acl::parse("topic read a/#/b\n").unwrap_err().line, 1);
        let e = Acl::parse("# c\ntopics read a\n").unwrap_err();
        assert_eq!(e.line, 2);
        assert!(e.problem.contains("topics"));
        assert_eq!(
            Acl::parse("topic read my topic\n").unwrap().anonymous[0].filter,
            "my topic"
        );
    }
}
