//! Reading the historian back: the query string of
//! `GET /api/v0002/historian/types/<t>/devices/<d>/events/<e>` ([`parse`]), a page of
//! events as the API answers it ([`page_json`]), and aggregates of a numeric JSON field
//! over fixed intervals ([`aggregate`]).
//!
//! Aggregates are computed here over pages of [`HistorianBackend::query`], so every
//! backend has them. Their cost is bounded: at most [`MAX_POINTS`] intervals in a range
//! and [`MAX_SCANNED`] events read, past which the query is refused (narrow the range),
//! never a long scan. Times are ISO-8601 (`2026-11-30T01:02:03.456Z`, `+0000`, `+00:00`,
//! or a date alone) or milliseconds since the Unix epoch.

use crate::historian::{
    Bookmark, EventPage, EventQuery, HistorianBackend, HistorianError, StoredEvent, DEFAULT_PAGE, MAX_PAGE,
};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// Most intervals one aggregate query returns.
pub const MAX_POINTS: u64 = 10_000;
/// Most events one aggregate query reads.
pub const MAX_SCANNED: u64 = 2_000_000;
/// The range when `start` is not given: this long before `end`.
pub const DEFAULT_SPAN_MS: u64 = 86_400_000;

/// An aggregate function.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AggKind {
    Count,
    Min,
    Max,
    Avg,
    Sum,
    Last,
}

impl AggKind {
    fn parse(s: &str) -> Option<AggKind> {
        Some(match s {
            "count" => AggKind::Count,
            "min" => AggKind::Min,
            "max" => AggKind::Max,
            "avg" => AggKind::Avg,
            "sum" => AggKind::Sum,
            "last" => AggKind::Last,
            _ => return None,
        })
    }
}

/// `agg`, `interval` and `field` of a query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Aggregate {
    pub kind: AggKind,
    pub interval_ms: u64,
    /// The field's path in the payload, `d.temp` as `["d", "temp"]`; may be empty for `count`.
    pub field: Vec<String>,
}

/// A parsed query string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub start_ms: u64,
    pub end_ms: u64,
    pub limit: usize,
    pub after: Option<Bookmark>,
    pub aggregate: Option<Aggregate>,
}

fn invalid(what: impl Into<String>) -> HistorianError {
    HistorianError::Invalid(what.into())
}

/// Reads a query string (`start`, `end`, `limit`, `bookmark`, `agg`, `interval`,
/// `field`); `now_ms` is the default `end`. Unknown names are refused, so a typo is not
/// silently ignored.
pub fn parse(query: Option<&str>, now_ms: u64) -> Result<Request, HistorianError> {
    let (mut start, mut end, mut limit, mut after) = (None, None, DEFAULT_PAGE, None);
    let (mut agg, mut interval, mut field) = (None, None, None);
    for pair in query.unwrap_or_default().split('&').filter(|p| !p.is_empty()) {
        let (name, raw) = pair.split_once('=').unwrap_or((pair, ""));
        let value = percent_decode(raw).ok_or_else(|| invalid(format!("{name}: bad percent-encoding")))?;
        match name {
            "start" => start = Some(parse_time(&value).map_err(|e| invalid(format!("start: {e}")))?),
            "end" => end = Some(parse_time(&value).map_err(|e| invalid(format!("end: {e}")))?),
            "limit" => {
                limit = value
                    .parse()
                    .ok()
                    .filter(|n| (1..=MAX_PAGE).contains(n))
                    .ok_or_else(|| invalid(format!("limit must be a number from 1 to {MAX_PAGE}")))?;
            }
            "bookmark" => after = Some(Bookmark::decode(&value)?),
            "agg" => {
                agg = Some(
                    AggKind::parse(&value)
                        .ok_or_else(|| invalid("agg must be one of count, min, max, avg, sum, last"))?,
                );
            }
            "interval" => {
                interval =
                    Some(parse_interval(&value).ok_or_else(|| invalid("interval must be one of 1m, 5m, 1h, 1d"))?)
            }
            "field" => field = Some(parse_field(&value)?),
            _ => return Err(invalid(format!("unknown query parameter {name:?}"))),
        }
    }
    let end_ms = end.unwrap_or(now_ms.saturating_add(1));
    let start_ms = start.unwrap_or(end_ms.saturating_sub(DEFAULT_SPAN_MS));
    if start_ms >= end_ms {
        return Err(invalid("start must be before end"));
    }
    let aggregate = match (agg, interval, field) {
        (None, None, None) => None,
        (None, ..) => return Err(invalid("interval and field go with agg")),
        (Some(kind), interval, field) => {
            let field = match (kind, field) {
                (AggKind::Count, f) => f.unwrap_or_default(),
                (_, Some(f)) => f,
                (_, None) => return Err(invalid("field (the payload's numeric field, e.g. d.temp) is needed")),
            };
            let interval_ms = interval.ok_or_else(|| invalid("interval (1m, 5m, 1h or 1d) is needed with agg"))?;
            if (end_ms - start_ms).div_ceil(interval_ms) > MAX_POINTS {
                return Err(invalid(format!(
                    "the range holds more than {MAX_POINTS} intervals: narrow start and end or use a longer interval"
                )));
            }
            Some(Aggregate {
                kind,
                interval_ms,
                field,
            })
        }
    };
    if aggregate.is_some() && after.is_some() {
        return Err(invalid("bookmark does not go with agg"));
    }
    Ok(Request {
        start_ms,
        end_ms,
        limit,
        after,
        aggregate,
    })
}

fn parse_interval(s: &str) -> Option<u64> {
    Some(match s {
        "1m" => 60_000,
        "5m" => 300_000,
        "1h" => 3_600_000,
        "1d" => 86_400_000,
        _ => return None,
    })
}

fn parse_field(s: &str) -> Result<Vec<String>, HistorianError> {
    let parts: Vec<String> = s.split('.').map(str::to_string).collect();
    if s.len() > 256 || parts.len() > 16 || parts.iter().any(String::is_empty) {
        return Err(invalid(format!(
            "field {s:?} is not a path of names separated by dots (e.g. d.temp)"
        )));
    }
    Ok(parts)
}

/// `%XX` and `+` of a query string's value, decoded.
pub(crate) fn percent_decode(s: &str) -> Option<String> {
    let mut out = Vec::with_capacity(s.len());
    let mut bytes = s.bytes();
    while let Some(b) = bytes.next() {
        match b {
            b'%' => {
                let hi = char::from(bytes.next()?).to_digit(16)?;
                let lo = char::from(bytes.next()?).to_digit(16)?;
                out.push(u8::try_from(hi * 16 + lo).ok()?);
            }
            b'+' => out.push(b' '),
            b => out.push(b),
        }
    }
    String::from_utf8(out).ok()
}

/// Milliseconds since the Unix epoch of an ISO-8601 time or a number of milliseconds.
pub fn parse_time(s: &str) -> Result<u64, String> {
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        return s.parse().map_err(|_| format!("{s:?} is too large"));
    }
    let bad = || format!("{s:?} is neither ISO-8601 (2026-11-30T01:02:03Z) nor milliseconds since 1970");
    if !s.is_ascii() {
        return Err(bad());
    }
    let num = |from: usize, len: usize| -> Result<i64, String> {
        let part = s.get(from..from + len).ok_or_else(bad)?;
        if !part.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        part.parse().map_err(|_| bad())
    };
    let (year, month, day) = (num(0, 4)?, num(5, 2)?, num(8, 2)?);
    if s.get(4..5) != Some("-") || s.get(7..8) != Some("-") || !(1..=12).contains(&month) || !(1..=31).contains(&day) {
        return Err(bad());
    }
    let mut ms = days_from_civil(year, month, day) * 86_400_000;
    let rest = &s[10..];
    if !rest.is_empty() {
        if !matches!(rest.as_bytes()[0], b'T' | b' ') {
            return Err(bad());
        }
        let (h, m, sec) = (num(11, 2)?, num(14, 2)?, num(17, 2)?);
        if s.get(13..14) != Some(":") || s.get(16..17) != Some(":") || h > 23 || m > 59 || sec > 60 {
            return Err(bad());
        }
        ms += (h * 3600 + m * 60 + sec) * 1000;
        let mut zone = s.get(19..).ok_or_else(bad)?;
        if let Some(fraction) = zone.strip_prefix('.') {
            let digits = fraction.bytes().take_while(u8::is_ascii_digit).count();
            if digits == 0 || digits > 9 {
                return Err(bad());
            }
            let mut frac: i64 = fraction[..digits].parse().map_err(|_| bad())?;
            for _ in digits..3 {
                frac *= 10;
            }
            for _ in 3..digits {
                frac /= 10;
            }
            ms += frac;
            zone = &fraction[digits..];
        }
        ms -= zone_offset_ms(zone).ok_or_else(bad)?;
    }
    u64::try_from(ms).map_err(|_| format!("{s:?} is before 1970"))
}

/// `Z`, `+HHMM`, `+HH:MM` (or `-`), or nothing (UTC), in milliseconds.
fn zone_offset_ms(zone: &str) -> Option<i64> {
    if zone.is_empty() || zone == "Z" {
        return Some(0);
    }
    let sign = match zone.as_bytes().first()? {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    let digits: String = zone[1..].chars().filter(|&c| c != ':').collect();
    if digits.len() != 4 || !digits.bytes().all(|b| b.is_ascii_digit()) || zone.len() > 6 {
        return None;
    }
    let h: i64 = digits[..2].parse().ok()?;
    let m: i64 = digits[2..].parse().ok()?;
    Some(sign * (h * 60 + m) * 60_000)
}

/// Days since 1970-01-01 of a date of the proleptic Gregorian calendar.
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// An event as the API returns it: its time, format, and payload (its JSON when the format
/// is `json` and it parses, otherwise the bytes in base64).
pub fn event_json(event: &StoredEvent) -> Value {
    let payload = match event.format.as_str() {
        "json" => serde_json::from_slice::<Value>(&event.payload).ok(),
        _ => None,
    };
    json!({
        "timestamp": crate::lec::timestamp(event.timestamp_ms),
        "format": event.format,
        "payload": payload.unwrap_or_else(|| Value::String(STANDARD.encode(&event.payload))),
    })
}

/// A page as the API returns it: `{"events": [...], "bookmark": "..."}` (bookmark `null`
/// on the last page).
pub fn page_json(page: &EventPage) -> Value {
    json!({
        "events": page.events.iter().map(event_json).collect::<Vec<_>>(),
        "bookmark": page.bookmark.map(|b| b.encode()),
    })
}

/// The number at `path` in a JSON payload.
fn field_of(payload: &[u8], path: &[String]) -> Option<f64> {
    let value: Value = serde_json::from_slice(payload).ok()?;
    let mut at = &value;
    for name in path {
        at = at.get(name)?;
    }
    at.as_f64()
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    count: u64,
    sum: f64,
    min: f64,
    max: f64,
    last: f64,
}

/// The aggregate `agg` of `query`'s device and event over its range (blocking: the
/// backend's own buckets, or pages of `backend.query`). `count` counts events; the others
/// use the events whose `field` is a number and skip the rest. Only intervals with a value
/// are returned, oldest first.
pub fn aggregate(
    backend: &dyn HistorianBackend,
    mut query: EventQuery,
    agg: &Aggregate,
) -> Result<Value, HistorianError> {
    let mut buckets: BTreeMap<u64, Bucket> = BTreeMap::new();
    // A store that computes aggregates itself (PostgreSQL) gives the buckets whole.
    let field: &[String] = if agg.kind == AggKind::Count { &[] } else { &agg.field };
    let computed = backend.aggregate_buckets(&query, agg.interval_ms, field).transpose()?;
    let paged = computed.is_none();
    for b in computed.into_iter().flatten() {
        let (count, sum, min, max, last) = (b.count, b.sum, b.min, b.max, b.last);
        buckets.insert(
            b.start_ms,
            Bucket {
                count,
                sum,
                min,
                max,
                last,
            },
        );
    }
    let mut scanned = 0u64;
    query.limit = MAX_PAGE;
    query.after = None;
    loop {
        if !paged {
            break;
        }
        let page = backend.query(&query)?;
        scanned += page.events.len() as u64;
        if scanned > MAX_SCANNED {
            return Err(invalid(format!(
                "more than {MAX_SCANNED} events in the range: narrow start and end"
            )));
        }
        for event in &page.events {
            let value = match agg.kind {
                AggKind::Count => 0.0,
                _ => match field_of(&event.payload, &agg.field) {
                    Some(v) => v,
                    None => continue,
                },
            };
            let start = event.timestamp_ms - event.timestamp_ms % agg.interval_ms;
            let b = buckets.entry(start).or_insert(Bucket {
                count: 0,
                sum: 0.0,
                min: f64::INFINITY,
                max: f64::NEG_INFINITY,
                last: 0.0,
            });
            b.count += 1;
            b.sum += value;
            b.min = b.min.min(value);
            b.max = b.max.max(value);
            b.last = value;
        }
        match page.bookmark {
            Some(b) => query.after = Some(b),
            None => break,
        }
    }
    let points: Vec<Value> = buckets
        .into_iter()
        .map(|(start, b)| {
            let value = match agg.kind {
                AggKind::Count => json!(b.count),
                AggKind::Min => json!(b.min),
                AggKind::Max => json!(b.max),
                AggKind::Sum => json!(b.sum),
                AggKind::Avg => json!(b.sum / b.count as f64),
                AggKind::Last => json!(b.last),
            };
            json!({"timestamp": crate::lec::timestamp(start), "value": value})
        })
        .collect();
    Ok(json!({ "points": points }))
}
