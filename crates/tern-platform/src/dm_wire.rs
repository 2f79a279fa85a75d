//! The wire side of the Device Management Protocol (see [`crate::dm`]): reading what
//! devices publish under `iotdevice-1/...` (JSON objects with a `reqId` and a `d`), and
//! building what the platform publishes to them under `iotdm-1/...`.
//!
//! Two rules of the IBM SDK's managed client shape everything here (docs/device-management.md):
//! a server *request* never carries `rc` and always carries a `reqId`; a server *response*
//! always carries both `rc` and `reqId` (an empty string when the device's message had
//! none that could be read), and every payload is a JSON object. Anything else kills the
//! SDK's network thread. The checks of device-supplied values (location, log entries,
//! error codes, timestamps) live here too, so that MQTT and REST apply the same rules.

use serde_json::{json, Map, Value};

/// The device's request was carried out.
pub const RC_OK: u16 = 200;
/// The device accepted an action it will carry out (reboot, firmware download...).
pub const RC_ACCEPTED: u16 = 202;
/// The device changed the attributes it was sent (`iotdm-1/device/update`).
pub const RC_CHANGED: u16 = 204;
/// A malformed message or a value out of range.
pub const RC_BAD_REQUEST: u16 = 400;
/// Not allowed: the device is not managed, or does not support the action.
pub const RC_FORBIDDEN: u16 = 403;
/// Unknown topic or field.
pub const RC_NOT_FOUND: u16 = 404;
/// Tern's per-device status of a request the device did not answer in time.
pub const RC_TIMEOUT: u16 = 408;
/// A conflicting request in progress; also Tern's status of an overridden or cancelled request.
pub const RC_CONFLICT: u16 = 409;
/// Too many requests kept for an organization.
pub const RC_TOO_MANY: u16 = 429;

/// Longest `reqId` echoed back (the SDK sends 36-character uuids).
pub const MAX_REQ_ID_LEN: usize = 256;
/// Longest device-supplied timestamp kept as given.
const MAX_TIMESTAMP_LEN: usize = 64;

/// Server -> device topic tails (after `iotdm-1/`).
pub mod tail {
    /// The answer to a device's request.
    pub const RESPONSE: &str = "response";
    pub const REBOOT: &str = "mgmt/initiate/device/reboot";
    pub const FACTORY_RESET: &str = "mgmt/initiate/device/factory_reset";
    pub const DEVICE_UPDATE: &str = "device/update";
    pub const OBSERVE: &str = "observe";
    pub const CANCEL: &str = "cancel";
    pub const FIRMWARE_DOWNLOAD: &str = "mgmt/initiate/firmware/download";
    pub const FIRMWARE_UPDATE: &str = "mgmt/initiate/firmware/update";
    /// Followed by `<bundleId>/<actionId>`.
    pub const CUSTOM_PREFIX: &str = "mgmt/custom/";
}

/// A device message that was a JSON object.
#[derive(Debug)]
pub struct DeviceMessage {
    /// Its `reqId`, when it is a string of at most [`MAX_REQ_ID_LEN`] characters.
    pub req_id: Option<String>,
    /// The whole object.
    pub body: Map<String, Value>,
}

impl DeviceMessage {
    /// Its `d` member, when it is an object.
    pub fn d(&self) -> Option<&Map<String, Value>> {
        self.body.get("d").and_then(Value::as_object)
    }
}

/// Reads a device's payload; `Err` holds the reqId scraped from the raw bytes (or "") and
/// what was wrong, for a 400 answer.
pub fn parse(payload: &[u8]) -> Result<DeviceMessage, (String, String)> {
    let value: Value = match serde_json::from_slice(payload) {
        Ok(v) => v,
        Err(e) => return Err((scrape_req_id(payload), format!("the payload is not JSON: {e}"))),
    };
    let Value::Object(body) = value else {
        return Err((scrape_req_id(payload), "the payload is not a JSON object".into()));
    };
    let req_id = body
        .get("reqId")
        .and_then(Value::as_str)
        .filter(|r| r.len() <= MAX_REQ_ID_LEN)
        .map(str::to_string);
    Ok(DeviceMessage { req_id, body })
}

/// The `reqId` of a payload that is not valid JSON, read leniently: the first
/// `"reqId"`, optional blanks, `:`, blanks, then a string of 1 to 64 characters without a
/// quote. "" when there is none.
pub fn scrape_req_id(raw: &[u8]) -> String {
    const KEY: &[u8] = b"\"reqId\"";
    let mut from = 0;
    while let Some(at) = find(&raw[from..], KEY) {
        let mut i = from + at + KEY.len();
        from = i;
        while raw.get(i).is_some_and(u8::is_ascii_whitespace) {
            i += 1;
        }
        if raw.get(i) != Some(&b':') {
            continue;
        }
        i += 1;
        while raw.get(i).is_some_and(u8::is_ascii_whitespace) {
            i += 1;
        }
        if raw.get(i) != Some(&b'"') {
            continue;
        }
        let start = i + 1;
        let Some(len) = raw[start..].iter().position(|&b| b == b'"') else {
            continue;
        };
        if (1..=64).contains(&len) {
            if let Ok(id) = std::str::from_utf8(&raw[start..start + len]) {
                if id.chars().count() <= 64 {
                    return id.to_string();
                }
            }
        }
    }
    String::new()
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// The server's answer to a device request: `{"rc", "reqId"}` plus `message` when rc is
/// not 200.
pub fn response(rc: u16, req_id: &str, message: Option<&str>) -> Vec<u8> {
    let mut body = Map::new();
    body.insert("rc".into(), json!(rc));
    if let Some(message) = message.filter(|_| rc != RC_OK) {
        body.insert("message".into(), json!(message));
    }
    body.insert("reqId".into(), json!(req_id));
    Value::Object(body).to_string().into_bytes()
}

/// A request without data: `{"reqId"}` (device actions, firmware initiate).
pub fn bare_request(req_id: &str) -> Vec<u8> {
    json!({ "reqId": req_id }).to_string().into_bytes()
}

/// A request carrying fields: `{"reqId","d":{"fields":[{"field","value"?}]}}` (a `None`
/// value leaves `value` out, as observe and cancel do).
pub fn fields_request(req_id: &str, fields: &[(&str, Option<Value>)]) -> Vec<u8> {
    let fields: Vec<Value> = fields
        .iter()
        .map(|(field, value)| match value {
            Some(v) => json!({ "field": field, "value": v }),
            None => json!({ "field": field }),
        })
        .collect();
    json!({ "reqId": req_id, "d": { "fields": fields } })
        .to_string()
        .into_bytes()
}

/// A fresh random (version 4) uuid, the form of every `reqId` the platform sends.
pub fn uuid4() -> String {
    uuid(0x80, 0x3f)
}

/// As [`uuid4`], for a message whose answer nobody waits for (a location pushed, an
/// untracked cancel): its variant nibble is `c` or `d` instead of `8` to `b`, so that a
/// node of a cluster tells its answer from one to a request made on another node
/// ([`is_untracked`]). Still 36 characters of the uuid form.
pub fn untracked_uuid4() -> String {
    uuid(0xc0, 0x1f)
}

/// Whether `req_id` is one of [`untracked_uuid4`].
pub fn is_untracked(req_id: &str) -> bool {
    let b = req_id.as_bytes();
    b.len() == 36 && [8, 13, 18, 23].iter().all(|&i| b[i] == b'-') && matches!(b[19], b'c' | b'd')
}

/// A random version 4 uuid whose variant byte is `(random & keep) | variant`.
fn uuid(variant: u8, keep: u8) -> String {
    let mut b = [0u8; 16];
    if getrandom::getrandom(&mut b).is_err() {
        // No system randomness: still unique within this process, which is what a reqId needs.
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        b[..8].copy_from_slice(&n.to_be_bytes());
        b[8..].copy_from_slice(&crate::lec::now_ms().to_be_bytes());
    }
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & keep) | variant;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// The API's timestamp for milliseconds since the Unix epoch (`...T..:..:..mmm+0000`).
pub fn timestamp(ms: u64) -> String {
    crate::lec::timestamp(ms)
}

/// Whether `s` is an ISO 8601 date and time as devices send it: `YYYY-MM-DDTHH:MM:SS`,
/// optional fraction, optional `Z` or `±HH:MM`/`±HHMM` (naive local time, as the SDK sends
/// log timestamps, is accepted).
pub fn is_timestamp(s: &str) -> bool {
    let b = s.as_bytes();
    if b.len() < 19 || b.len() > MAX_TIMESTAMP_LEN {
        return false;
    }
    let digits = |r: std::ops::Range<usize>| b[r].iter().all(u8::is_ascii_digit);
    let head = digits(0..4)
        && b[4] == b'-'
        && digits(5..7)
        && b[7] == b'-'
        && digits(8..10)
        && matches!(b[10], b'T' | b't' | b' ')
        && digits(11..13)
        && b[13] == b':'
        && digits(14..16)
        && b[16] == b':'
        && digits(17..19);
    if !head {
        return false;
    }
    let mut rest = &b[19..];
    if rest.first() == Some(&b'.') {
        let n = rest[1..].iter().take_while(|c| c.is_ascii_digit()).count();
        if n == 0 {
            return false;
        }
        rest = &rest[1 + n..];
    }
    match rest {
        [] | [b'Z' | b'z'] => true,
        [b'+' | b'-', h1, h2, b':', m1, m2] | [b'+' | b'-', h1, h2, m1, m2] => {
            [h1, h2, m1, m2].iter().all(|c| c.is_ascii_digit())
        }
        [b'+' | b'-', h1, h2] => h1.is_ascii_digit() && h2.is_ascii_digit(),
        _ => false,
    }
}

/// A device-supplied timestamp kept as given when well-formed, else the server's time.
pub fn timestamp_or_now(given: Option<&Value>, now_ms: u64) -> String {
    match given.and_then(Value::as_str) {
        Some(s) if is_timestamp(s) => s.to_string(),
        _ => timestamp(now_ms),
    }
}

/// Checks a location (`d` of `device/update/location`, or the REST body) and returns it as
/// stored: `longitude`, `latitude`, optional `elevation` and `accuracy`,
/// `measuredDateTime` (as given when well-formed, else now) and `updatedDateTime` (now).
pub fn check_location(d: &Map<String, Value>, now_ms: u64) -> Result<Value, String> {
    let number = |key: &str| d.get(key).and_then(Value::as_f64);
    let latitude = number("latitude")
        .filter(|l| (-90.0..=90.0).contains(l))
        .ok_or("latitude must be a number from -90 to 90")?;
    let longitude = number("longitude")
        .filter(|l| (-180.0..=180.0).contains(l))
        .ok_or("longitude must be a number from -180 to 180")?;
    let mut out = Map::new();
    out.insert("longitude".into(), json!(longitude));
    out.insert("latitude".into(), json!(latitude));
    for key in ["elevation", "accuracy"] {
        match d.get(key) {
            None | Some(Value::Null) => {}
            Some(v) if v.as_f64().is_some_and(f64::is_finite) => {
                out.insert(key.into(), v.clone());
            }
            Some(_) => return Err(format!("{key} must be a number")),
        }
    }
    out.insert(
        "measuredDateTime".into(),
        json!(timestamp_or_now(d.get("measuredDateTime"), now_ms)),
    );
    out.insert("updatedDateTime".into(), json!(timestamp(now_ms)));
    Ok(Value::Object(out))
}

/// Checks an error code (`d.errorCode`, an integer; the REST body's too).
pub fn check_error_code(d: &Map<String, Value>) -> Result<i64, String> {
    d.get("errorCode")
        .and_then(Value::as_i64)
        .filter(|c| i32::try_from(*c).is_ok())
        .ok_or_else(|| "errorCode must be a 32-bit integer".to_string())
}

/// A diagnostic log entry as checked: message, severity 0 (info) to 2 (error), data and
/// timestamp (as given when well-formed, else now).
#[derive(Debug, Clone, PartialEq)]
pub struct LogInput {
    pub message: String,
    pub severity: i64,
    pub data: String,
    pub timestamp: String,
}

/// Longest log message or data kept, in bytes.
pub const MAX_LOG_FIELD: usize = 64 * 1024;

/// Checks a log entry (`d` of `add/diag/log`, or the REST body).
pub fn check_log(d: &Map<String, Value>, now_ms: u64) -> Result<LogInput, String> {
    let message = d
        .get("message")
        .and_then(Value::as_str)
        .ok_or("message must be a string")?;
    let severity = match d.get("severity") {
        None | Some(Value::Null) => 0,
        Some(v) => v
            .as_i64()
            .filter(|s| (0..=2).contains(s))
            .ok_or("severity must be 0 (info), 1 (warning) or 2 (error)")?,
    };
    let data = match d.get("data") {
        None | Some(Value::Null) => "",
        Some(v) => v.as_str().ok_or("data must be a string")?,
    };
    if message.len() > MAX_LOG_FIELD || data.len() > MAX_LOG_FIELD {
        return Err(format!("message and data must be at most {MAX_LOG_FIELD} bytes"));
    }
    Ok(LogInput {
        message: message.to_string(),
        severity,
        data: data.to_string(),
        timestamp: timestamp_or_now(d.get("timestamp"), now_ms),
    })
}
