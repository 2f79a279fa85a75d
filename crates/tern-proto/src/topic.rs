//! The syntax of topic names and topic filters (section 4.7 of both specifications).
//!
//! Checked here so that no packet with an invalid topic ever reaches the broker's core;
//! matching names against filters is the core's business, not the codec's.

/// Checks a topic name: at least one character [MQTT-4.7.3-1] and no wildcard
/// [MQTT-3.3.2-2]. Returns why it is invalid.
pub fn validate_topic_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() {
        return Err("a topic name must be at least one character long");
    }
    if name.bytes().any(|b| b == b'+' || b == b'#') {
        return Err("a topic name must not contain wildcard characters");
    }
    Ok(())
}

/// Checks a topic filter: at least one character [MQTT-4.7.3-1], `+` only as a whole level
/// [MQTT-4.7.1-3], `#` only as a whole and last level [MQTT-4.7.1-2]. Returns why it is
/// invalid.
pub fn validate_topic_filter(filter: &str) -> Result<(), &'static str> {
    if filter.is_empty() {
        return Err("a topic filter must be at least one character long");
    }
    let mut levels = filter.split('/').peekable();
    while let Some(level) = levels.next() {
        if level.contains('#') && (level != "#" || levels.peek().is_some()) {
            return Err("'#' must be a whole level and the last level");
        }
        if level.contains('+') && level != "+" {
            return Err("'+' must occupy a whole level");
        }
    }
    Ok(())
}

/// Whether a (valid) topic filter contains a wildcard.
pub fn has_wildcard(filter: &str) -> bool {
    filter.bytes().any(|b| b == b'+' || b == b'#')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_names_reject_wildcards_and_emptiness() {
        assert!(validate_topic_name("sport/tennis/player1").is_ok());
        assert!(validate_topic_name("/").is_ok());
        assert!(validate_topic_name("$SYS/broker").is_ok());
        assert!(validate_topic_name("").is_err());
        assert!(validate_topic_name("sport/+").is_err());
        assert!(validate_topic_name("sport/#").is_err());
    }

    #[test]
    fn topic_filters_follow_the_specification_examples() {
        for ok in [
            "#",
            "+",
            "sport/#",
            "sport/tennis/#",
            "+/tennis/#",
            "sport/+/player1",
            "/+",
            "+/+",
            "a//b",
        ] {
            assert!(validate_topic_filter(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "sport/tennis#",
            "sport/tennis/#/ranking",
            "sport+",
            "sport/+x",
            "#/a",
            "a/##",
        ] {
            assert!(validate_topic_filter(bad).is_err(), "{bad}");
        }
    }
}
