//! The `historian_topic` directive: which messages of plain listeners the historian
//! keeps, and for how long. One line per topic filter, in mosquitto.conf form
//! (`historian_topic sensors/# 30d 500MB`) and in the TOML file as the same strings
//! (`historian_topic = ["sensors/# 30d"]`). The historian itself is in `tern-platform`;
//! the broker only reads and checks the lines, and hands them over on every reload.

use anyhow::{bail, Result};

/// Days a `historian_topic` line keeps events when it names no retention in days.
pub const DEFAULT_RETENTION_DAYS: u32 = 30;
/// Longest retention in days (ten years), as for an organization.
pub const MAX_RETENTION_DAYS: u32 = 3650;

/// One `historian_topic` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistorianTopic {
    /// Messages whose topic this filter matches are stored (the first line that matches
    /// a topic stores it).
    pub filter: String,
    /// Events older than this many days are removed.
    pub retention_days: u32,
    /// At most this many bytes of stored events (payloads and their framing) are kept:
    /// past it the oldest go first. `None`: no limit but the days.
    pub retention_bytes: Option<u64>,
}

/// Reads the arguments of a `historian_topic` line: a topic filter, then optionally a
/// retention in days (`30d`) and one in bytes (`500MB`, `1GB`, `4096`), in any order.
pub(super) fn historian_topic(args: &[&str]) -> Result<HistorianTopic> {
    let Some((filter, retention)) = args.split_first() else {
        bail!("needs a topic filter, e.g. \"historian_topic sensors/# 30d\"");
    };
    if let Err(e) = tern_proto::topic::validate_topic_filter(filter) {
        bail!("{filter:?} is not a valid topic filter: {e}");
    }
    if filter.starts_with('$') {
        bail!("{filter:?}: topics starting with '$' are the broker's and the platform's, not stored by topic");
    }
    let mut topic = HistorianTopic {
        filter: filter.to_string(),
        retention_days: DEFAULT_RETENTION_DAYS,
        retention_bytes: None,
    };
    let (mut days_given, mut bytes_given) = (false, false);
    for word in retention {
        if let Some(days) = word.strip_suffix('d') {
            let days: u32 = days
                .parse()
                .ok()
                .filter(|d| (1..=MAX_RETENTION_DAYS).contains(d))
                .ok_or_else(|| {
                    anyhow::anyhow!("{filter}: {word:?}: a retention in days is 1d to {MAX_RETENTION_DAYS}d")
                })?;
            if std::mem::replace(&mut days_given, true) {
                bail!("{filter}: two retentions in days");
            }
            topic.retention_days = days;
        } else {
            let bytes = size(word).ok_or_else(|| {
                anyhow::anyhow!("{filter}: {word:?} is neither days (30d) nor a size (4096, 64KB, 500MB, 2GB)")
            })?;
            if std::mem::replace(&mut bytes_given, true) {
                bail!("{filter}: two retentions in bytes");
            }
            topic.retention_bytes = Some(bytes);
        }
    }
    Ok(topic)
}

/// A size: a number of bytes, optionally with `B`, `KB`, `MB` or `GB` (powers of 1024);
/// at least 1 byte.
fn size(word: &str) -> Option<u64> {
    let upper = word.to_ascii_uppercase();
    let (digits, unit) = match upper.find(|c: char| !c.is_ascii_digit()) {
        Some(at) => upper.split_at(at),
        None => (upper.as_str(), ""),
    };
    let unit: u64 = match unit {
        "" | "B" => 1,
        "KB" => 1 << 10,
        "MB" => 1 << 20,
        "GB" => 1 << 30,
        _ => return None,
    };
    let n: u64 = digits.parse().ok()?;
    n.checked_mul(unit).filter(|&b| b > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_is_a_filter_and_its_retentions() {
        let t = historian_topic(&["sensors/#"]).unwrap();
        assert_eq!((t.retention_days, t.retention_bytes), (DEFAULT_RETENTION_DAYS, None));
        let t = historian_topic(&["a/+/b", "500MB", "7d"]).unwrap();
        assert_eq!(
            (t.filter.as_str(), t.retention_days, t.retention_bytes),
            ("a/+/b", 7, Some(500 << 20))
        );
        assert_eq!(historian_topic(&["x", "4096"]).unwrap().retention_bytes, Some(4096));
        assert_eq!(historian_topic(&["x", "2gb"]).unwrap().retention_bytes, Some(2 << 30));
    }

    #[test]
    fn bad_lines_are_refused_naming_what_is_wrong() {
        for (args, says) in [
            (&[][..], "needs a topic filter"),
            (&["a/#/b"][..], "not a valid topic filter"),
            (&["$SYS/#"][..], "starting with '$'"),
            (&["a", "0d"][..], "1d to 3650d"),
            (&["a", "4000d"][..], "1d to 3650d"),
            (&["a", "5TB"][..], "neither days"),
            (&["a", "0"][..], "neither days"),
            (&["a", "1d", "2d"][..], "two retentions in days"),
            (&["a", "1MB", "2MB"][..], "two retentions in bytes"),
        ] {
            let e = historian_topic(args).unwrap_err().to_string();
            assert!(e.contains(says), "{args:?}: {e}");
        }
    }
}
