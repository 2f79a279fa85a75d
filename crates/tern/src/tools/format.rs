//! `tern sub`'s output: `-v`, `-N`, and `-F` with mosquitto_sub's `%` codes, `@` time
//! codes and backslash escapes. Times are UTC.

use std::fmt::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};
use tern_proto::Publish;

/// A received message and what the codes may print besides it.
pub struct Received<'a> {
    pub publish: &'a Publish,
    pub client_id: &'a str,
    pub at: SystemTime,
}

/// Civil UTC date and time of `at`: (year, month, day, hour, minute, second, nanos).
fn civil(at: SystemTime) -> (i64, u32, u32, u32, u32, u32, u32) {
    let d = at.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Howard Hinnant's days-to-civil.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (
        year,
        month,
        day,
        (rem / 3600) as u32,
        (rem % 3600 / 60) as u32,
        (rem % 60) as u32,
        d.subsec_nanos(),
    )
}

fn iso8601(at: SystemTime) -> String {
    let (y, mo, d, h, mi, s, _) = civil(at);
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}+0000")
}

fn json_string(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Whether `bytes` look like one JSON value (a light check: balanced brackets outside
/// strings, or a JSON literal), so `%J` can embed it without quoting.
fn looks_like_json(bytes: &[u8]) -> bool {
    let text = match std::str::from_utf8(bytes) {
        Ok(t) => t.trim(),
        Err(_) => return false,
    };
    if matches!(text, "true" | "false" | "null") || text.parse::<f64>().is_ok() {
        return true;
    }
    let (open, close) = match text.as_bytes().first() {
        Some(b'{') => (b'{', b'}'),
        Some(b'[') => (b'[', b']'),
        Some(b'"') => return text.len() >= 2 && text.ends_with('"'),
        _ => return false,
    };
    let (mut depth, mut in_string, mut escaped) = (0i32, false, false);
    for &b in text.as_bytes() {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b if b == open || b == b'{' || b == b'[' => depth += 1,
            b if b == close || b == b'}' || b == b']' => depth -= 1,
            _ => {}
        }
        if depth < 0 {
            return false;
        }
    }
    depth == 0 && !in_string && text.as_bytes().last() == Some(&close)
}

/// `%j` / `%J`: the message as one JSON object.
fn json(m: &Received, payload_as_json: bool, pretty: bool) -> String {
    let p = m.publish;
    let payload = if payload_as_json && looks_like_json(&p.payload) {
        String::from_utf8_lossy(&p.payload).trim().to_string()
    } else {
        json_string(&p.payload)
    };
    let fields = [
        ("tst", json_string(iso8601(m.at).as_bytes())),
        ("topic", json_string(p.topic.as_bytes())),
        ("qos", (p.qos as u8).to_string()),
        ("retain", u8::from(p.retain).to_string()),
        ("payloadlen", p.payload.len().to_string()),
        ("payload", payload),
    ];
    let (open, sep, close) = if pretty {
        ("{\n\t", ",\n\t", "\n}")
    } else {
        ("{", ",", "}")
    };
    let body: Vec<String> = fields
        .iter()
        .map(|(k, v)| format!("\"{k}\":{}{v}", if pretty { " " } else { "" }))
        .collect();
    format!("{open}{}{close}", body.join(sep))
}

fn hex(bytes: &[u8], upper: bool) -> String {
    bytes
        .iter()
        .map(|b| if upper { format!("{b:02X}") } else { format!("{b:02x}") })
        .collect()
}

/// Renders `format` for one message.
pub fn render(format: &str, m: &Received, pretty: bool) -> Vec<u8> {
    let p = m.publish;
    let props = &p.properties;
    let mut out: Vec<u8> = Vec::new();
    let mut chars = format.chars().peekable();
    let text = |out: &mut Vec<u8>, s: &str| out.extend_from_slice(s.as_bytes());
    while let Some(c) = chars.next() {
        match c {
            '%' => match chars.next() {
                Some('%') => out.push(b'%'),
                Some('c') => text(&mut out, m.client_id),
                Some('l') => text(&mut out, &p.payload.len().to_string()),
                Some('m') => text(&mut out, &p.packet_id.to_string()),
                Some('p') => out.extend_from_slice(&p.payload),
                Some('q') => text(&mut out, &(p.qos as u8).to_string()),
                Some('r') => text(&mut out, if p.retain { "1" } else { "0" }),
                Some('t') => text(&mut out, &p.topic),
                Some('x') => text(&mut out, &hex(&p.payload, false)),
                Some('X') => text(&mut out, &hex(&p.payload, true)),
                Some('I') => text(&mut out, &iso8601(m.at)),
                Some('U') => {
                    let d = m.at.duration_since(UNIX_EPOCH).unwrap_or_default();
                    text(&mut out, &format!("{}.{:09}", d.as_secs(), d.subsec_nanos()));
                }
                Some('j') => text(&mut out, &json(m, false, pretty)),
                Some('J') => text(&mut out, &json(m, true, pretty)),
                Some('A') => text(
                    &mut out,
                    &props.topic_alias().map(|a| a.to_string()).unwrap_or_default(),
                ),
                Some('C') => text(&mut out, props.content_type().as_deref().unwrap_or("")),
                Some('D') => out.extend_from_slice(&props.correlation_data().unwrap_or_default()),
                Some('E') => text(
                    &mut out,
                    &props
                        .message_expiry_interval()
                        .map(|e| e.to_string())
                        .unwrap_or_default(),
                ),
                Some('F') => text(
                    &mut out,
                    &props
                        .payload_format_indicator()
                        .map(|f| f.to_string())
                        .unwrap_or_default(),
                ),
                Some('P') => {
                    let pairs: Vec<String> = props.user_properties().map(|(k, v)| format!("{k}:{v}")).collect();
                    text(&mut out, &pairs.join(" "));
                }
                Some('R') => text(&mut out, props.response_topic().as_deref().unwrap_or("")),
                Some('S') => {
                    let ids: Vec<String> = props.subscription_identifiers().map(|i| i.to_string()).collect();
                    text(&mut out, &ids.join(","));
                }
                Some(other) => text(&mut out, &format!("%{other}")),
                None => out.push(b'%'),
            },
            '@' => render_time(&mut out, chars.next(), m.at),
            '\\' => match chars.next() {
                Some('\\') => out.push(b'\\'),
                Some('0') => out.push(0),
                Some('a') => out.push(7),
                Some('e') => out.push(0x1b),
                Some('n') => out.push(b'\n'),
                Some('r') => out.push(b'\r'),
                Some('t') => out.push(b'\t'),
                Some('v') => out.push(0x0b),
                Some(other) => text(&mut out, &format!("\\{other}")),
                None => out.push(b'\\'),
            },
            c => {
                let mut buf = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
        }
    }
    out
}

/// strftime-style `@` codes (`@@` is a literal `@`).
fn render_time(out: &mut Vec<u8>, code: Option<char>, at: SystemTime) {
    let (y, mo, d, h, mi, s, nanos) = civil(at);
    let secs = at.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
    let piece = match code {
        Some('@') => "@".to_string(),
        Some('Y') => format!("{y:04}"),
        Some('y') => format!("{:02}", y.rem_euclid(100)),
        Some('m') => format!("{mo:02}"),
        Some('d') => format!("{d:02}"),
        Some('H') => format!("{h:02}"),
        Some('M') => format!("{mi:02}"),
        Some('S') => format!("{s:02}"),
        Some('N') => format!("{nanos:09}"),
        Some('s') => secs.to_string(),
        Some('F') => format!("{y:04}-{mo:02}-{d:02}"),
        Some('T') => format!("{h:02}:{mi:02}:{s:02}"),
        Some('z') => "+0000".to_string(),
        Some('Z') => "UTC".to_string(),
        Some(other) => format!("@{other}"),
        None => "@".to_string(),
    };
    out.extend_from_slice(piece.as_bytes());
}

/// The default output: the payload, or `topic payload` with -v.
pub fn default_line(p: &Publish, verbose: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(p.topic.len() + p.payload.len() + 1);
    if verbose {
        out.extend_from_slice(p.topic.as_bytes());
        out.push(b' ');
    }
    out.extend_from_slice(&p.payload);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use tern_proto::{ByteStr, Properties, Property, QoS};

    fn message() -> Publish {
        Publish {
            dup: false,
            qos: QoS::AtLeastOnce,
            retain: true,
            topic: ByteStr::from("a/b"),
            packet_id: 7,
            properties: Properties(vec![
                Property::UserProperty((ByteStr::from("k"), ByteStr::from("v"))),
                Property::ContentType(ByteStr::from("text/plain")),
            ]),
            payload: bytes::Bytes::from_static(b"{\"t\": 1}"),
        }
    }

    fn run(format: &str) -> String {
        let p = message();
        let at = UNIX_EPOCH + Duration::new(1_700_000_000, 123_456_789);
        String::from_utf8(render(
            format,
            &Received {
                publish: &p,
                client_id: "me",
                at,
            },
            false,
        ))
        .unwrap()
    }

    #[test]
    fn percent_codes_print_the_message_fields() {
        assert_eq!(run("%t %q %r %l %m %c"), "a/b 1 1 8 7 me");
        assert_eq!(run("%x"), "7b2274223a20317d");
        assert_eq!(run("%P|%C|%%"), "k:v|text/plain|%");
        assert_eq!(run("%I %U"), "2023-11-14T22:13:20+0000 1700000000.123456789");
    }

    #[test]
    fn json_embeds_the_payload_as_json_with_capital_j() {
        assert_eq!(
            run("%j"),
            r#"{"tst":"2023-11-14T22:13:20+0000","topic":"a/b","qos":1,"retain":1,"payloadlen":8,"payload":"{\"t\": 1}"}"#
        );
        assert!(run("%J").ends_with(r#""payload":{"t": 1}}"#));
    }

    #[test]
    fn time_codes_and_escapes() {
        assert_eq!(run("@Y-@m-@d @H:@M:@S.@N @@\\t|"), "2023-11-14 22:13:20.123456789 @\t|");
    }
}
