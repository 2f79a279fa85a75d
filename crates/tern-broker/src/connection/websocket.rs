//! MQTT over WebSocket (RFC 6455), as a sans-IO layer of a connection's transport.
//!
//! The layer sits between the byte stream below (TCP, or TLS plaintext) and the MQTT
//! buffers above. It takes bytes read from below, answers the HTTP upgrade, and turns the
//! payload of binary frames into the MQTT byte stream: frame boundaries mean nothing to
//! MQTT, so a packet may span frames and a frame may carry several packets. Payload is
//! unmasked straight into the caller's buffer, never held whole, so the memory a
//! WebSocket client costs is the same as over plain TCP. Going out, each write of MQTT
//! bytes becomes one unmasked binary frame (written by the transport straight from the
//! connection's buffer). Ping, pong and close are answered here.
//! Frame headers are parsed and written by `tungstenite`; the accept key is its too.

use crate::config::{WebSocketSettings, DEFAULT_WEBSOCKETS_HEADERS_SIZE};
use bytes::{Buf, BufMut, BytesMut};
use std::io::{self, Cursor};
use std::net::IpAddr;
use tungstenite::protocol::frame::coding::{Control, Data, OpCode};
use tungstenite::protocol::frame::FrameHeader;

/// Headers parsed from the upgrade request, at most.
const MAX_HEADERS: usize = 64;
/// The subprotocols MQTT clients offer: `mqtt` (3.1.1 and 5.0) and `mqttv3.1`.
const SUBPROTOCOLS: [&str; 2] = ["mqtt", "mqttv3.1"];
/// Close codes (RFC 6455 section 7.4.1).
const CLOSE_NORMAL: u16 = 1000;
const CLOSE_PROTOCOL_ERROR: u16 = 1002;
const CLOSE_UNSUPPORTED_DATA: u16 = 1003;
const CLOSE_POLICY_VIOLATION: u16 = 1008;
/// Pongs (and other answers) waiting for a client that does not read, at most: a ping
/// flood must not grow the broker's memory.
const MAX_UNSENT_CONTROL: usize = 16 * 1024;
const CLOSE_TOO_BIG: u16 = 1009;

/// Where the layer is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Waiting for the whole HTTP upgrade request.
    Upgrading,
    /// Frames flow both ways.
    Open,
    /// A close frame was sent or received: nothing more is read or written.
    Closed,
}

/// The data frame whose payload is being read.
#[derive(Debug, Clone, Copy)]
struct Payload {
    /// Payload bytes of the frame still to come.
    left: u64,
    /// The client's masking key.
    mask: [u8; 4],
    /// Position in the mask of the next payload byte.
    offset: usize,
}

/// One WebSocket connection's state, without I/O.
#[derive(Debug)]
pub(crate) struct WebSocket {
    phase: Phase,
    settings: WebSocketSettings,
    /// The TCP peer, which may be a trusted proxy speaking for the client.
    peer: IpAddr,
    /// Largest frame, and largest message, accepted: the broker's maximum packet size.
    max_message: u64,
    /// Bytes read from below and not yet decoded: a partial request, frame header or
    /// control frame. Released whenever it is empty.
    input: BytesMut,
    /// Bytes for below: the upgrade answer, frames, pongs, the close frame.
    output: BytesMut,
    /// The data frame in progress, if its payload is not all read.
    payload: Option<Payload>,
    /// A fragmented message is open: the next data frame must be a continuation.
    in_message: bool,
    /// Bytes of the current message so far (for the message size limit).
    message_len: u64,
    /// The client's address from X-Forwarded-For, when the peer is a trusted proxy.
    forwarded_for: Option<IpAddr>,
}

impl WebSocket {
    pub fn new(settings: WebSocketSettings, peer: IpAddr, max_message: usize) -> WebSocket {
        WebSocket {
            phase: Phase::Upgrading,
            settings,
            peer,
            max_message: max_message as u64,
            input: BytesMut::new(),
            output: BytesMut::new(),
            payload: None,
            in_message: false,
            message_len: 0,
            forwarded_for: None,
        }
    }

    /// The buffer bytes from below are read into, with room for `chunk` more.
    pub fn input_buffer(&mut self, chunk: usize) -> &mut BytesMut {
        if self.input.capacity() - self.input.len() < chunk / 4 {
            self.input.reserve(chunk);
        }
        &mut self.input
    }

    /// Frees the input buffer if it holds nothing.
    pub fn release_empty_input(&mut self) {
        if self.input.is_empty() {
            self.input = BytesMut::new();
        }
    }

    /// Bytes waiting to go below.
    pub fn output(&mut self) -> &mut BytesMut {
        &mut self.output
    }

    pub fn output_is_empty(&self) -> bool {
        self.output.is_empty()
    }

    /// Whether frames may be written.
    pub fn is_open(&self) -> bool {
        self.phase == Phase::Open
    }

    /// The client's address as a trusted proxy gave it.
    pub fn forwarded_for(&self) -> Option<IpAddr> {
        self.forwarded_for
    }

    /// Decodes what was read: answers the upgrade, appends the payload of data frames to
    /// `mqtt` and answers control frames. Returns whether the stream has ended (a close
    /// frame came). An error names what the client got wrong; the layer has queued its
    /// answer (an HTTP error or a close frame) in [`WebSocket::output`].
    pub fn decode(&mut self, mqtt: &mut BytesMut) -> io::Result<bool> {
        if self.phase == Phase::Upgrading && !self.upgrade()? {
            return Ok(false);
        }
        while self.phase == Phase::Open {
            if self.payload.is_some() {
                if self.input.is_empty() {
                    break;
                }
                self.take_payload(mqtt);
                continue;
            }
            if !self.next_frame()? {
                break;
            }
        }
        self.release_empty_input();
        Ok(self.phase == Phase::Closed)
    }

    /// Queues a close frame (once), with `code`; nothing is written after it.
    pub fn close(&mut self, code: u16) {
        if self.phase == Phase::Open {
            let header = FrameHeader::default();
            self.write_frame(&header, &code.to_be_bytes());
        }
        self.phase = Phase::Closed;
    }

    fn write_frame(&mut self, header: &FrameHeader, payload: &[u8]) {
        let length = payload.len() as u64;
        self.output.reserve(header.len(length) + payload.len());
        let mut writer = (&mut self.output).writer();
        // Writing into memory cannot fail.
        let _ = header.format(length, &mut writer);
        self.output.extend_from_slice(payload);
    }

    /// Copies the available payload of the current data frame into `mqtt`, unmasked.
    fn take_payload(&mut self, mqtt: &mut BytesMut) {
        let Some(payload) = self.payload.as_mut() else {
            return;
        };
        let n = (self.input.len() as u64).min(payload.left) as usize;
        let start = mqtt.len();
        mqtt.extend_from_slice(&self.input[..n]);
        for (i, byte) in mqtt[start..].iter_mut().enumerate() {
            *byte ^= payload.mask[(payload.offset + i) % 4];
        }
        payload.offset = (payload.offset + n) % 4;
        payload.left -= n as u64;
        self.input.advance(n);
        if payload.left == 0 {
            self.payload = None;
        }
    }

    /// Reads the next frame header (and a control frame's payload). Returns false when
    /// more bytes are needed.
    fn next_frame(&mut self) -> io::Result<bool> {
        let mut cursor = Cursor::new(&self.input[..]);
        let parsed = FrameHeader::parse(&mut cursor);
        let (header, length) = match parsed {
            Ok(Some(found)) => found,
            Ok(None) => return Ok(false),
            Err(e) => return Err(self.fail(CLOSE_PROTOCOL_ERROR, format!("bad frame header: {e}"))),
        };
        let header_len = cursor.position() as usize;
        if header.rsv1 || header.rsv2 || header.rsv3 {
            return Err(self.fail(
                CLOSE_PROTOCOL_ERROR,
                "frame with reserved bits set (no extension was agreed)",
            ));
        }
        let Some(mask) = header.mask else {
            return Err(self.fail(CLOSE_PROTOCOL_ERROR, "unmasked frame from the client [RFC 6455 5.1]"));
        };
        match header.opcode {
            OpCode::Data(Data::Binary) if self.in_message => {
                Err(self.fail(CLOSE_PROTOCOL_ERROR, "new message before the last one ended"))
            }
            OpCode::Data(Data::Continue) if !self.in_message => {
                Err(self.fail(CLOSE_PROTOCOL_ERROR, "continuation frame outside a message"))
            }
            OpCode::Data(Data::Binary | Data::Continue) => {
                if header.opcode == OpCode::Data(Data::Binary) {
                    self.message_len = 0;
                }
                self.message_len = self.message_len.saturating_add(length);
                if self.message_len > self.max_message {
                    let why = format!(
                        "message of {} bytes or more (at most {})",
                        self.message_len, self.max_message
                    );
                    return Err(self.fail(CLOSE_TOO_BIG, why));
                }
                self.in_message = !header.is_final;
                self.input.advance(header_len);
                self.payload = (length > 0).then_some(Payload {
                    left: length,
                    mask,
                    offset: 0,
                });
                Ok(true)
            }
            OpCode::Data(Data::Text) => {
                Err(self.fail(CLOSE_UNSUPPORTED_DATA, "text frame (MQTT is carried in binary frames)"))
            }
            OpCode::Data(Data::Reserved(op)) | OpCode::Control(Control::Reserved(op)) => {
                Err(self.fail(CLOSE_PROTOCOL_ERROR, format!("unknown opcode {op:#x}")))
            }
            OpCode::Control(control) => self.control_frame(control, &header, header_len, length, mask),
        }
    }

    /// Handles a ping, pong or close frame once it is whole.
    fn control_frame(
        &mut self,
        control: Control,
        header: &FrameHeader,
        header_len: usize,
        length: u64,
        mask: [u8; 4],
    ) -> io::Result<bool> {
        if length > 125 || !header.is_final {
            return Err(self.fail(CLOSE_PROTOCOL_ERROR, "control frame fragmented or over 125 bytes"));
        }
        let end = header_len + length as usize;
        if self.input.len() < end {
            return Ok(false);
        }
        let mut payload = self.input.split_to(end).split_off(header_len);
        for (i, byte) in payload.iter_mut().enumerate() {
            *byte ^= mask[i % 4];
        }
        match control {
            Control::Ping => {
                if self.output.len() > MAX_UNSENT_CONTROL {
                    let why = format!("pings faster than their pongs are read ({MAX_UNSENT_CONTROL} bytes unsent)");
                    return Err(self.fail(CLOSE_POLICY_VIOLATION, why));
                }
                let pong = FrameHeader {
                    opcode: OpCode::Control(Control::Pong),
                    ..FrameHeader::default()
                };
                self.write_frame(&pong, &payload);
            }
            Control::Pong | Control::Reserved(_) => {}
            Control::Close => {
                // Echo the client's code, as RFC 6455 5.5.1 asks; a code no endpoint may
                // send (7.4) or a one-byte body is a protocol error.
                let code = match payload.len() {
                    0 => CLOSE_NORMAL,
                    1 => return Err(self.fail(CLOSE_PROTOCOL_ERROR, "close frame with a one-byte body")),
                    _ => u16::from_be_bytes([payload[0], payload[1]]),
                };
                if !sendable_close_code(code) {
                    return Err(self.fail(CLOSE_PROTOCOL_ERROR, format!("close code {code} may not be sent")));
                }
                self.close(code);
            }
        }
        Ok(true)
    }

    /// Queues a close frame with `code` and returns the error naming why.
    fn fail(&mut self, code: u16, why: impl Into<String>) -> io::Error {
        self.close(code);
        self.input = BytesMut::new();
        io::Error::new(io::ErrorKind::InvalidData, format!("WebSocket: {}", why.into()))
    }

    /// Answers the upgrade request once it is whole. Returns whether the WebSocket is open.
    fn upgrade(&mut self) -> io::Result<bool> {
        let limit = match self.settings.headers_size {
            0 => DEFAULT_WEBSOCKETS_HEADERS_SIZE,
            n => n,
        };
        let Some(end) = find_end_of_headers(&self.input) else {
            if self.input.len() > limit {
                return Err(self.refuse(
                    "431 Request Header Fields Too Large",
                    format!("upgrade request over {limit} bytes"),
                ));
            }
            return Ok(false);
        };
        if end > limit {
            return Err(self.refuse(
                "431 Request Header Fields Too Large",
                format!("upgrade request over {limit} bytes"),
            ));
        }
        let request = self.input.split_to(end);
        match check_request(&request, &self.settings, self.peer) {
            Ok(accepted) => {
                self.forwarded_for = accepted.forwarded_for;
                let mut answer = format!(
                    "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n",
                    tungstenite::handshake::derive_accept_key(accepted.key.as_bytes())
                );
                if let Some(protocol) = accepted.subprotocol {
                    answer.push_str(&format!("Sec-WebSocket-Protocol: {protocol}\r\n"));
                }
                answer.push_str("\r\n");
                self.output.extend_from_slice(answer.as_bytes());
                self.phase = Phase::Open;
                Ok(true)
            }
            Err((status, why)) => Err(self.refuse(status, why)),
        }
    }

    /// Queues an HTTP error answer and returns the error naming why.
    fn refuse(&mut self, status: &str, why: String) -> io::Error {
        let mut answer = format!(
            "HTTP/1.1 {status}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n",
            why.len() + 1
        );
        if status.starts_with("426") {
            answer.push_str("Sec-WebSocket-Version: 13\r\n");
        }
        answer.push_str(&format!("\r\n{why}\n"));
        self.output.extend_from_slice(answer.as_bytes());
        self.phase = Phase::Closed;
        self.input = BytesMut::new();
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("WebSocket upgrade refused ({status}): {why}"),
        )
    }
}

/// Whether an endpoint may put `code` in a close frame (RFC 6455 7.4).
fn sendable_close_code(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1011 | 3000..=4999)
}

/// What an acceptable upgrade request gave.
struct Accepted {
    key: String,
    subprotocol: Option<&'static str>,
    forwarded_for: Option<IpAddr>,
}

fn find_end_of_headers(input: &[u8]) -> Option<usize> {
    input.windows(4).position(|w| w == b"\r\n\r\n").map(|at| at + 4)
}

/// Checks an upgrade request against RFC 6455 4.2.1 and the listener's settings.
fn check_request(
    request: &[u8],
    settings: &WebSocketSettings,
    peer: IpAddr,
) -> Result<Accepted, (&'static str, String)> {
    const BAD: &str = "400 Bad Request";
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Request::new(&mut headers);
    match parsed.parse(request) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) => return Err((BAD, "incomplete HTTP request".into())),
        Err(e) => return Err((BAD, format!("malformed HTTP request: {e}"))),
    }
    if parsed.method != Some("GET") {
        return Err(("405 Method Not Allowed", "the upgrade request must be a GET".into()));
    }
    let header = |name: &str| {
        parsed
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .and_then(|h| std::str::from_utf8(h.value).ok())
            .map(str::trim)
    };
    // Repeated header lines are one comma-separated list (RFC 9110 5.3).
    let all_values = |name: &str| {
        let values = parsed.headers.iter().filter(|h| h.name.eq_ignore_ascii_case(name));
        let values = values.filter_map(|h| std::str::from_utf8(h.value).ok()).map(str::trim);
        values.collect::<Vec<_>>().join(", ")
    };
    let has_token = |name: &str, token: &str| {
        header(name).is_some_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
    };
    if !has_token("upgrade", "websocket") || !has_token("connection", "upgrade") {
        return Err((
            "426 Upgrade Required",
            "not a WebSocket upgrade (Upgrade: websocket and Connection: Upgrade)".into(),
        ));
    }
    if header("sec-websocket-version") != Some("13") {
        return Err((
            "426 Upgrade Required",
            "unsupported Sec-WebSocket-Version (13 is supported)".into(),
        ));
    }
    let key = header("sec-websocket-key").filter(|k| !k.is_empty());
    let Some(key) = key else {
        return Err((BAD, "missing Sec-WebSocket-Key".into()));
    };
    if base64::Engine::decode(&base64::engine::general_purpose::STANDARD, key).map(|k| k.len()) != Ok(16) {
        return Err((
            BAD,
            format!("Sec-WebSocket-Key {key:?} is not 16 bytes in base64 [RFC 6455 4.1]"),
        ));
    }
    let path = parsed.path.unwrap_or("/");
    let path_only = path.split('?').next().unwrap_or(path);
    if let Some(wanted) = &settings.path {
        if path_only != wanted {
            return Err((
                "404 Not Found",
                format!("path {path_only:?} (this listener serves {wanted:?})"),
            ));
        }
    }
    if let Some(origin) = header("origin") {
        // The broker's own origin (scheme://<Host header>) is always allowed: paho-mqtt
        // sends it, and it is no other site's page.
        let own = header("host").is_some_and(|host| {
            origin
                .split_once("://")
                .is_some_and(|(_, authority)| authority.eq_ignore_ascii_case(host))
        });
        if !settings.origins.is_empty() && !own && !settings.origins.iter().any(|o| o.eq_ignore_ascii_case(origin)) {
            return Err(("403 Forbidden", format!("origin {origin:?} is not allowed")));
        }
    }
    // Subprotocol names are case-sensitive (RFC 6455 4.1): `MQTT` is not `mqtt`.
    let offered = all_values("sec-websocket-protocol");
    let subprotocol = offered
        .split(',')
        .map(str::trim)
        .find_map(|p| SUBPROTOCOLS.iter().copied().find(|s| *s == p));
    if subprotocol.is_none() && settings.require_subprotocol {
        return Err((
            BAD,
            format!("no MQTT subprotocol offered (mqtt or mqttv3.1), offered {offered:?}"),
        ));
    }
    let forwarded_for = if settings.trusted_proxies.contains(&peer) {
        Some(all_values("x-forwarded-for")).and_then(|list| client_of(&list, &settings.trusted_proxies))
    } else {
        None
    };
    Ok(Accepted {
        key: key.to_string(),
        subprotocol,
        forwarded_for,
    })
}

/// The client named by an X-Forwarded-For list: the rightmost address that is not one of
/// our trusted proxies (entries further left were written by whoever the client is).
fn client_of(list: &str, trusted: &[IpAddr]) -> Option<IpAddr> {
    list.rsplit(',')
        .map(|entry| entry.trim().parse::<IpAddr>().ok())
        .find(|ip| ip.is_none_or(|ip| !trusted.contains(&ip)))
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(extra: &str) -> String {
        format!("GET /mqtt HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n")
    }

    fn open(settings: WebSocketSettings, extra: &str) -> (WebSocket, io::Result<bool>, String) {
        let mut ws = WebSocket::new(settings, IpAddr::from([10, 0, 0, 1]), 1000);
        ws.input_buffer(1024).extend_from_slice(request(extra).as_bytes());
        let mut mqtt = BytesMut::new();
        let result = ws.decode(&mut mqtt);
        let answer = String::from_utf8_lossy(&ws.output).to_string();
        ws.output.clear();
        (ws, result, answer)
    }

    fn masked(opcode: u8, payload: &[u8]) -> Vec<u8> {
        let mask = [1, 2, 3, 4];
        let mut frame = vec![opcode, 0x80 | payload.len() as u8];
        frame.extend_from_slice(&mask);
        frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        frame
    }

    #[test]
    fn upgrade_answers_with_rfc_6455_accept_key_and_mqtt_subprotocol() {
        let (ws, result, answer) = open(WebSocketSettings::default(), "Sec-WebSocket-Protocol: foo, mqtt\r\n");
        assert!(!result.unwrap());
        assert!(ws.is_open());
        // The example of RFC 6455 section 1.3.
        assert!(
            answer.contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"),
            "{answer}"
        );
        assert!(answer.contains("Sec-WebSocket-Protocol: mqtt\r\n"), "{answer}");
    }

    #[test]
    fn refusals_name_what_was_wrong() {
        let settings = WebSocketSettings {
            path: Some("/mqtt".into()),
            origins: vec!["https://ok.example".into()],
            require_subprotocol: true,
            ..WebSocketSettings::default()
        };
        let (_, result, answer) = open(
            settings.clone(),
            "Origin: https://evil.example\r\nSec-WebSocket-Protocol: mqtt\r\n",
        );
        assert!(answer.starts_with("HTTP/1.1 403 Forbidden"), "{answer}");
        assert!(result.unwrap_err().to_string().contains("origin"));
        let (_, result, answer) = open(settings, "Origin: https://ok.example\r\n");
        assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
        assert!(result.unwrap_err().to_string().contains("subprotocol"));
    }

    #[test]
    fn packets_span_frames_and_frames_carry_several_packets() {
        let (mut ws, _, _) = open(WebSocketSettings::default(), "");
        let mut mqtt = BytesMut::new();
        let mut bytes = masked(0x02, b"\xc0\x00\xc0"); // PINGREQ and half of another
        bytes.extend(masked(0x89, b"hi")); // a ping between data frames
        bytes.extend(masked(0x80, b"\x00")); // the continuation completes it
                                             // Fed one byte at a time, as a slow network might.
        let mut ended = false;
        for byte in bytes {
            ws.input_buffer(16).put_u8(byte);
            ended |= ws.decode(&mut mqtt).unwrap();
        }
        assert!(!ended);
        assert_eq!(&mqtt[..], b"\xc0\x00\xc0\x00");
        assert_eq!(&ws.output[..], b"\x8a\x02hi", "the ping is answered with its payload");
    }

    #[test]
    fn text_unmasked_and_oversize_frames_are_refused_with_a_close_code() {
        for (frame, code, word) in [
            (masked(0x81, b"x"), CLOSE_UNSUPPORTED_DATA, "text"),
            (vec![0x82, 0x01, 0x00], CLOSE_PROTOCOL_ERROR, "unmasked"),
            (
                [&[0x82u8, 0xfe, 0x10, 0x00][..], &[0, 0, 0, 0]].concat(),
                CLOSE_TOO_BIG,
                "4096 bytes",
            ),
        ] {
            let (mut ws, _, _) = open(WebSocketSettings::default(), "");
            ws.input_buffer(16).extend_from_slice(&frame);
            let err = ws.decode(&mut BytesMut::new()).unwrap_err().to_string();
            assert!(err.contains(word), "{err}");
            assert_eq!(ws.output[..4], [0x88, 0x02, (code >> 8) as u8, code as u8]);
        }
    }

    #[test]
    fn a_ping_flood_from_a_client_that_does_not_read_is_cut_off() {
        let (mut ws, _, _) = open(WebSocketSettings::default(), "");
        let ping = masked(0x89, &[0u8; 125]);
        let mut result = Ok(false);
        for _ in 0..1000 {
            ws.input_buffer(256).extend_from_slice(&ping);
            result = ws.decode(&mut BytesMut::new());
            if result.is_err() {
                break;
            }
        }
        assert!(result.unwrap_err().to_string().contains("pings faster"));
        assert!(ws.output.len() < 2 * MAX_UNSENT_CONTROL);
    }

    #[test]
    fn bad_close_frames_and_keys_are_protocol_errors() {
        for (payload, word) in [(&[0x00u8, 0x05][..], "close code 5"), (&[0x03][..], "one-byte")] {
            let (mut ws, _, _) = open(WebSocketSettings::default(), "");
            ws.input_buffer(16).extend_from_slice(&masked(0x88, payload));
            let err = ws.decode(&mut BytesMut::new()).unwrap_err().to_string();
            assert!(err.contains(word), "{err}");
            assert_eq!(ws.output[..4], [0x88, 0x02, 0x03, 0xea]);
        }
        let mut ws = WebSocket::new(WebSocketSettings::default(), IpAddr::from([10, 0, 0, 1]), 1000);
        let request = request("").replace("dGhlIHNhbXBsZSBub25jZQ==", "short");
        ws.input_buffer(1024).extend_from_slice(request.as_bytes());
        let err = ws.decode(&mut BytesMut::new()).unwrap_err().to_string();
        assert!(err.contains("not 16 bytes"), "{err}");
    }

    #[test]
    fn the_brokers_own_origin_passes_and_subprotocols_are_case_sensitive() {
        let settings = WebSocketSettings {
            origins: vec!["https://app.example".into()],
            ..WebSocketSettings::default()
        };
        let (ws, _, answer) = open(settings, "Origin: http://x\r\nSec-WebSocket-Protocol: MQTT\r\n");
        assert!(ws.is_open(), "{answer}");
        assert!(!answer.contains("Sec-WebSocket-Protocol"), "{answer}");
    }

    #[test]
    fn forwarded_for_is_taken_from_trusted_proxies_only() {
        let proxy = IpAddr::from([10, 0, 0, 1]);
        let trusted = WebSocketSettings {
            trusted_proxies: vec![proxy],
            ..WebSocketSettings::default()
        };
        let (ws, _, _) = open(trusted.clone(), "X-Forwarded-For: 6.6.6.6, 192.0.2.7\r\n");
        assert_eq!(ws.forwarded_for(), Some(IpAddr::from([192, 0, 2, 7])));
        // Two header lines are one list: the last address is the proxy's word.
        let (ws, _, _) = open(trusted, "X-Forwarded-For: 6.6.6.6\r\nX-Forwarded-For: 192.0.2.8\r\n");
        assert_eq!(ws.forwarded_for(), Some(IpAddr::from([192, 0, 2, 8])));
        let (ws, _, _) = open(WebSocketSettings::default(), "X-Forwarded-For: 192.0.2.7\r\n");
        assert_eq!(ws.forwarded_for(), None);
    }
}
