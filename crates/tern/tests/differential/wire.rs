//! The client side of the differential tests: MQTT packets built byte by byte (not with
//! Tern's codec, whose output is under test), and the framing that splits a broker's
//! reply into packets without decoding them.

/// The protocol level byte of CONNECT: 4 (3.1.1) or 5 (5.0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum V {
    V4,
    V5,
}

impl V {
    pub fn is_v5(self) -> bool {
        self == V::V5
    }

    pub fn label(self) -> &'static str {
        match self {
            V::V4 => "3.1.1",
            V::V5 => "5.0",
        }
    }
}

/// A Variable Byte Integer.
pub fn varint(mut n: usize) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let mut byte = (n % 128) as u8;
        n /= 128;
        if n > 0 {
            byte |= 0x80;
        }
        out.push(byte);
        if n == 0 {
            return out;
        }
    }
}

/// A fixed header (`first` byte and Remaining Length) in front of `body`.
pub fn packet(first: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![first];
    out.extend(varint(body.len()));
    out.extend_from_slice(body);
    out
}

/// A UTF-8 string or binary field: two length bytes and the bytes.
pub fn field(bytes: &[u8]) -> Vec<u8> {
    let mut out = (bytes.len() as u16).to_be_bytes().to_vec();
    out.extend_from_slice(bytes);
    out
}

/// A property block: its length, then the properties.
fn properties(v: V, props: &[u8]) -> Vec<u8> {
    if !v.is_v5() {
        return Vec::new();
    }
    let mut out = varint(props.len());
    out.extend_from_slice(props);
    out
}

/// Properties, each built by one of these.
pub mod prop {
    use super::field;

    pub fn byte(id: u8, value: u8) -> Vec<u8> {
        vec![id, value]
    }
    pub fn two(id: u8, value: u16) -> Vec<u8> {
        let mut out = vec![id];
        out.extend(value.to_be_bytes());
        out
    }
    pub fn four(id: u8, value: u32) -> Vec<u8> {
        let mut out = vec![id];
        out.extend(value.to_be_bytes());
        out
    }
    pub fn string(id: u8, value: &str) -> Vec<u8> {
        let mut out = vec![id];
        out.extend(field(value.as_bytes()));
        out
    }
    pub fn varint(id: u8, value: usize) -> Vec<u8> {
        let mut out = vec![id];
        out.extend(super::varint(value));
        out
    }
    pub fn user(key: &str, value: &str) -> Vec<u8> {
        let mut out = vec![0x26];
        out.extend(field(key.as_bytes()));
        out.extend(field(value.as_bytes()));
        out
    }
    pub const PAYLOAD_FORMAT: u8 = 0x01;
    pub const CONTENT_TYPE: u8 = 0x03;
    pub const RESPONSE_TOPIC: u8 = 0x08;
    pub const CORRELATION_DATA: u8 = 0x09;
    pub const SUBSCRIPTION_ID: u8 = 0x0B;
    pub const SESSION_EXPIRY: u8 = 0x11;
    pub const AUTHENTICATION_METHOD: u8 = 0x15;
    pub const REQUEST_PROBLEM_INFORMATION: u8 = 0x17;
    pub const WILL_DELAY: u8 = 0x18;
    pub const REQUEST_RESPONSE_INFORMATION: u8 = 0x19;
    pub const RECEIVE_MAXIMUM: u8 = 0x21;
    pub const TOPIC_ALIAS_MAXIMUM: u8 = 0x22;
    pub const TOPIC_ALIAS: u8 = 0x23;
    pub const MAXIMUM_PACKET_SIZE: u8 = 0x27;
}

/// A CONNECT, built up with its methods and finished with [`Connect::bytes`].
#[derive(Clone)]
pub struct Connect {
    v: V,
    client_id: String,
    flags: u8,
    keep_alive: u16,
    props: Vec<u8>,
    will: Option<(String, Vec<u8>, Vec<u8>)>,
    username: Option<String>,
    password: Option<String>,
    level: Option<u8>,
}

/// A CONNECT with Clean Start, keepalive 60.
pub fn connect(v: V, client_id: &str) -> Connect {
    Connect {
        v,
        client_id: client_id.into(),
        flags: 0x02,
        keep_alive: 60,
        props: Vec::new(),
        will: None,
        username: None,
        password: None,
        level: None,
    }
}

impl Connect {
    pub fn persistent(mut self) -> Self {
        self.flags &= !0x02;
        self
    }
    pub fn keep_alive(mut self, seconds: u16) -> Self {
        self.keep_alive = seconds;
        self
    }
    pub fn prop(mut self, p: Vec<u8>) -> Self {
        self.props.extend(p);
        self
    }
    /// Sets flag bits as they are (reserved bit, will QoS 3, ...).
    pub fn flags(mut self, bits: u8) -> Self {
        self.flags |= bits;
        self
    }
    /// A will with QoS `qos` and RETAIN `retain`, and (5.0) will properties `props`.
    pub fn will(mut self, topic: &str, payload: &[u8], qos: u8, retain: bool, props: Vec<u8>) -> Self {
        self.flags |= 0x04 | (qos << 3) | if retain { 0x20 } else { 0 };
        self.will = Some((topic.into(), payload.to_vec(), props));
        self
    }
    pub fn user(mut self, name: &str) -> Self {
        self.username = Some(name.into());
        self
    }
    pub fn password(mut self, password: &str) -> Self {
        self.password = Some(password.into());
        self
    }
    /// Another protocol level byte than the version's.
    pub fn level(mut self, level: u8) -> Self {
        self.level = Some(level);
        self
    }

    pub fn bytes(&self) -> Vec<u8> {
        let mut flags = self.flags;
        flags |= if self.username.is_some() { 0x80 } else { 0 };
        flags |= if self.password.is_some() { 0x40 } else { 0 };
        let level = self.level.unwrap_or(if self.v.is_v5() { 5 } else { 4 });
        let mut body = field(b"MQTT");
        body.push(level);
        body.push(flags);
        body.extend(self.keep_alive.to_be_bytes());
        body.extend(properties(self.v, &self.props));
        body.extend(field(self.client_id.as_bytes()));
        if let Some((topic, payload, props)) = &self.will {
            body.extend(properties(self.v, props));
            body.extend(field(topic.as_bytes()));
            body.extend(field(payload));
        }
        if let Some(name) = &self.username {
            body.extend(field(name.as_bytes()));
        }
        if let Some(password) = &self.password {
            body.extend(field(password.as_bytes()));
        }
        packet(0x10, &body)
    }
}

/// A PUBLISH; `packet_id` is written only for QoS 1 and 2.
pub fn publish(v: V, topic: &str, payload: &[u8], qos: u8, retain: bool, packet_id: u16) -> Vec<u8> {
    publish_with(v, (topic, payload), (qos, retain, false), packet_id, &[])
}

/// A PUBLISH with the DUP flag and (5.0) properties.
pub fn publish_with(
    v: V,
    (topic, payload): (&str, &[u8]),
    (qos, retain, dup): (u8, bool, bool),
    packet_id: u16,
    props: &[u8],
) -> Vec<u8> {
    let first = 0x30 | (qos << 1) | u8::from(retain) | if dup { 0x08 } else { 0 };
    let mut body = field(topic.as_bytes());
    if qos > 0 {
        body.extend(packet_id.to_be_bytes());
    }
    body.extend(properties(v, props));
    body.extend_from_slice(payload);
    packet(first, &body)
}

/// A SUBSCRIBE of `(filter, options byte)` pairs, with (5.0) properties.
pub fn subscribe_with(v: V, packet_id: u16, filters: &[(&str, u8)], props: &[u8]) -> Vec<u8> {
    let mut body = packet_id.to_be_bytes().to_vec();
    body.extend(properties(v, props));
    for (filter, options) in filters {
        body.extend(field(filter.as_bytes()));
        body.push(*options);
    }
    packet(0x82, &body)
}

pub fn subscribe(v: V, packet_id: u16, filters: &[(&str, u8)]) -> Vec<u8> {
    subscribe_with(v, packet_id, filters, &[])
}

pub fn unsubscribe(v: V, packet_id: u16, filters: &[&str]) -> Vec<u8> {
    let mut body = packet_id.to_be_bytes().to_vec();
    body.extend(properties(v, &[]));
    for filter in filters {
        body.extend(field(filter.as_bytes()));
    }
    packet(0xA2, &body)
}

/// PUBACK (0x40), PUBREC (0x50), PUBREL (0x62), PUBCOMP (0x70) with success.
pub fn ack(first: u8, packet_id: u16) -> Vec<u8> {
    packet(first, &packet_id.to_be_bytes())
}

pub const PUBACK: u8 = 0x40;
pub const PUBREC: u8 = 0x50;
pub const PUBREL: u8 = 0x62;
pub const PUBCOMP: u8 = 0x70;
pub const PINGREQ: [u8; 2] = [0xC0, 0x00];
pub const PINGRESP: [u8; 2] = [0xD0, 0x00];
pub const DISCONNECT: [u8; 2] = [0xE0, 0x00];

/// Splits complete packets off the front of `buf` by their fixed headers; what remains
/// is an incomplete packet. `None` for a Remaining Length longer than four bytes.
pub fn split(buf: &mut Vec<u8>) -> Option<Vec<Vec<u8>>> {
    let mut packets = Vec::new();
    loop {
        let mut length = 0usize;
        let mut at = 1;
        loop {
            let Some(byte) = buf.get(at) else {
                return Some(packets);
            };
            length += usize::from(byte & 0x7F) << (7 * (at - 1));
            at += 1;
            if byte & 0x80 == 0 {
                break;
            }
            if at > 4 {
                return None;
            }
        }
        if buf.len() < at + length {
            return Some(packets);
        }
        packets.push(buf.drain(..at + length).collect());
    }
}

/// Lower-case hex without separators.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
