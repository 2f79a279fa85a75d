//! `tern iot export ...`: a range of a device's stored events (the historian,
//! docs/historian.md) written out as CSV or JSON lines, read page by page from a running
//! broker's platform API (`/api/v0002/historian/...`) as an application of the
//! organization, so an export of any size holds one page in memory at a time. With
//! `--topic`, a plain listener's topic stored by a `historian_topic` line, read from the
//! broker's admin API (`/api/v1/historian/events`) with `--admin-key`.

use anyhow::{bail, Result};
use serde_json::Value;
use std::io::Write;
use std::path::Path;
use tern_platform::registry_ops::segment;

#[derive(clap::Args)]
pub struct ExportArgs {
    #[command(flatten)]
    key: crate::iot_remote::ApiKeyArg,
    /// Device type.
    #[arg(value_name = "TYPE", required_unless_present = "topic")]
    type_id: Option<String>,
    /// Device id.
    #[arg(value_name = "DEVICE", required_unless_present = "topic")]
    device_id: Option<String>,
    /// Event id.
    #[arg(value_name = "EVENT", required_unless_present = "topic")]
    event_id: Option<String>,
    /// Instead of a device's events: the messages of this topic of a plain listener
    /// (stored by a `historian_topic` line), with `--admin-key`.
    #[arg(long, conflicts_with_all = ["type_id", "device_id", "event_id"])]
    topic: Option<String>,
    /// From this time (ISO 8601, or milliseconds since 1970), included.
    #[arg(long)]
    start: Option<String>,
    /// Up to this time, excluded.
    #[arg(long)]
    end: Option<String>,
    /// `csv` (timestamp,payload) or `json` (one JSON object a line).
    #[arg(long, default_value = "csv")]
    format: String,
}

/// Events asked for per page.
const PAGE: usize = 1000;

/// Runs an export; `admin_key` is `tern iot --admin-key`, used with `--topic`.
pub fn run(args: ExportArgs, url: Option<&str>, cafile: Option<&Path>, admin_key: Option<&str>) -> Result<()> {
    let csv = match args.format.as_str() {
        "csv" => true,
        "json" => false,
        other => bail!("--format {other:?}: expected csv or json"),
    };
    let (remote, base, mut query) = match (&args.topic, &args.type_id, &args.device_id, &args.event_id) {
        (Some(topic), ..) => {
            let Some(url) = url else {
                bail!("export --topic needs a running broker: --url (its HTTP listener) and --admin-key ID:SECRET");
            };
            let remote = crate::iot_remote::Remote::new(url, admin_key, cafile)?;
            let query = format!("topic={}&limit={PAGE}", segment(topic));
            (remote, "/api/v1/historian/events".to_string(), query)
        }
        (None, Some(type_id), Some(device_id), Some(event_id)) => {
            let remote = args.key.remote(url, cafile, "export")?;
            let base = format!(
                "/api/v0002/historian/types/{}/devices/{}/events/{}",
                segment(type_id),
                segment(device_id),
                segment(event_id)
            );
            (remote, base, format!("limit={PAGE}"))
        }
        _ => bail!("export needs TYPE DEVICE EVENT, or --topic TOPIC"),
    };
    for (name, value) in [("start", &args.start), ("end", &args.end)] {
        if let Some(value) = value {
            query.push_str(&format!("&{name}={}", segment(value)));
        }
    }
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    if csv {
        writeln!(out, "timestamp,payload")?;
    }
    let mut bookmark: Option<String> = None;
    loop {
        let mut path = format!("{base}?{query}");
        if let Some(b) = &bookmark {
            path.push_str(&format!("&bookmark={}", segment(b)));
        }
        let page = remote.call("GET", &path, None)?;
        let Some(events) = page["events"].as_array() else {
            bail!("the broker's answer has no events: {page}");
        };
        for event in events {
            write_event(&mut out, event, csv)?;
        }
        match page["bookmark"].as_str() {
            Some(next) if !events.is_empty() => bookmark = Some(next.to_string()),
            _ => break,
        }
    }
    out.flush()?;
    Ok(())
}

fn write_event(out: &mut impl Write, event: &Value, csv: bool) -> Result<()> {
    if !csv {
        writeln!(out, "{event}")?;
        return Ok(());
    }
    let timestamp = event["timestamp"].as_str().unwrap_or("");
    let payload = match &event["payload"] {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    };
    writeln!(out, "{timestamp},{}", csv_field(&payload))?;
    Ok(())
}

/// A CSV field (RFC 4180): quoted, with quotes doubled, when it holds a comma, a quote or
/// a line break.
fn csv_field(text: &str) -> String {
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_fields_are_quoted_only_when_needed() {
        assert_eq!(csv_field("21.5"), "21.5");
        assert_eq!(csv_field(r#"{"d":{"t":1,"h":2}}"#), r#""{""d"":{""t"":1,""h"":2}}""#);
        assert_eq!(csv_field("a\nb"), "\"a\nb\"");
    }
}
