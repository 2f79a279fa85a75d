//! The stored form of sessions, queued messages and retained messages: a version byte and
//! fields in a fixed order, lengths checked on reading. A record that does not decode is
//! reported, skipped and counted, never trusted.

use tern_proto::{QoS, RetainHandling, SubscriptionOptions};

const VERSION: u8 = 1;

/// Appends fields.
#[derive(Default)]
pub struct Writer(pub Vec<u8>);

impl Writer {
    pub fn new() -> Writer {
        Writer(vec![VERSION])
    }
    pub fn u8(&mut self, v: u8) -> &mut Self {
        self.0.push(v);
        self
    }
    pub fn u16(&mut self, v: u16) -> &mut Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    pub fn u32(&mut self, v: u32) -> &mut Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    pub fn u64(&mut self, v: u64) -> &mut Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    /// An optional u64 (a flag byte, then the value).
    pub fn opt_u64(&mut self, v: Option<u64>) -> &mut Self {
        match v {
            Some(v) => self.u8(1).u64(v),
            None => self.u8(0),
        }
    }
    pub fn bytes(&mut self, v: &[u8]) -> &mut Self {
        self.u32(u32::try_from(v.len()).unwrap_or(u32::MAX));
        self.0.extend_from_slice(v);
        self
    }
}

/// Reads fields; every method returns `None` past the end.
pub struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    /// Checks the version byte.
    pub fn new(data: &'a [u8]) -> Option<Reader<'a>> {
        match data.split_first() {
            Some((&VERSION, rest)) => Some(Reader(rest)),
            _ => None,
        }
    }
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }
    pub fn u8(&mut self) -> Option<u8> {
        Some(self.take(1)?[0])
    }
    pub fn u16(&mut self) -> Option<u16> {
        Some(u16::from_be_bytes(self.take(2)?.try_into().ok()?))
    }
    pub fn u32(&mut self) -> Option<u32> {
        Some(u32::from_be_bytes(self.take(4)?.try_into().ok()?))
    }
    pub fn u64(&mut self) -> Option<u64> {
        Some(u64::from_be_bytes(self.take(8)?.try_into().ok()?))
    }
    pub fn opt_u64(&mut self) -> Option<Option<u64>> {
        match self.u8()? {
            0 => Some(None),
            1 => Some(Some(self.u64()?)),
            _ => None,
        }
    }
    pub fn bytes(&mut self) -> Option<&'a [u8]> {
        let n = self.u32()? as usize;
        self.take(n)
    }
    pub fn string(&mut self) -> Option<&'a str> {
        std::str::from_utf8(self.bytes()?).ok()
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Subscription options as the SUBSCRIBE byte carries them.
pub fn options_byte(o: &SubscriptionOptions) -> u8 {
    let handling = match o.retain_handling {
        RetainHandling::SendAtSubscribe => 0,
        RetainHandling::SendAtNewSubscribe => 1,
        RetainHandling::DoNotSend => 2,
    };
    o.qos as u8 | u8::from(o.no_local) << 2 | u8::from(o.retain_as_published) << 3 | handling << 4
}

pub fn options_from_byte(b: u8) -> Option<SubscriptionOptions> {
    Some(SubscriptionOptions {
        qos: QoS::from_u8(b & 3)?,
        no_local: b & 4 != 0,
        retain_as_published: b & 8 != 0,
        retain_handling: match (b >> 4) & 3 {
            0 => RetainHandling::SendAtSubscribe,
            1 => RetainHandling::SendAtNewSubscribe,
            2 => RetainHandling::DoNotSend,
            _ => return None,
        },
    })
}

/// A persistent session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRecord {
    pub v5: bool,
    /// Seconds it outlives its connection; `None`: forever.
    pub expiry: Option<u64>,
    /// When it went offline (ms since 1970); `None` if it was online when last written.
    pub disconnected_at: Option<u64>,
    /// (filter, options byte, subscription identifier)
    pub subscriptions: Vec<(String, u8, Option<u32>)>,
    /// The user name the session belongs to (records written before it was kept have
    /// none at the end, read as anonymous).
    pub owner: Option<String>,
}

impl SessionRecord {
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.u8(u8::from(self.v5))
            .opt_u64(self.expiry)
            .opt_u64(self.disconnected_at);
        w.u32(self.subscriptions.len() as u32);
        for (filter, options, identifier) in &self.subscriptions {
            w.bytes(filter.as_bytes())
                .u8(*options)
                .opt_u64(identifier.map(u64::from));
        }
        match &self.owner {
            Some(owner) => w.u8(1).bytes(owner.as_bytes()),
            None => w.u8(0),
        };
        w.0
    }

    pub fn decode(data: &[u8]) -> Option<SessionRecord> {
        let mut r = Reader::new(data)?;
        let v5 = r.u8()? != 0;
        let expiry = r.opt_u64()?;
        let disconnected_at = r.opt_u64()?;
        let n = r.u32()?;
        let mut subscriptions = Vec::with_capacity((n as usize).min(4096));
        for _ in 0..n {
            let filter = r.string()?.to_string();
            let options = r.u8()?;
            options_from_byte(options)?;
            let identifier = r
                .opt_u64()?
                .map(|i| u32::try_from(i).ok())
                .map_or(Some(None), |i| i.map(Some))?;
            subscriptions.push((filter, options, identifier));
        }
        let owner = match r.is_empty() {
            true => None,
            false => match r.u8()? {
                0 => None,
                1 => Some(r.string()?.to_string()),
                _ => return None,
            },
        };
        r.is_empty().then_some(SessionRecord {
            v5,
            expiry,
            disconnected_at,
            subscriptions,
            owner,
        })
    }
}

/// Where a stored outgoing message stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoredStage {
    Queued,
    AwaitingPublishAck,
    AwaitingPublishReceived,
    AwaitingPublishComplete,
}

/// A QoS 1/2 message for a persistent session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageRecord {
    pub qos: QoS,
    pub v5: bool,
    pub packet_id: u16,
    pub stage: StoredStage,
    /// ms since 1970.
    pub expires_at: Option<u64>,
    pub shared: Option<String>,
    /// The PUBLISH as encoded for the session (packet id placeholder).
    pub frame: Vec<u8>,
}

impl MessageRecord {
    pub fn encode(&self) -> Vec<u8> {
        let header = (self.qos, self.v5, self.packet_id, self.stage);
        Self::encode_parts(header, self.expires_at, self.shared.as_deref(), &self.frame)
    }

    /// The record of a message, written in one allocation (the hot path of the store).
    /// `frame` may carry packet id 0 (the shared frame's placeholder); see
    /// [`with_packet_id_placeholder_filled`].
    pub fn encode_parts(
        (qos, v5, packet_id, stage): (QoS, bool, u16, StoredStage),
        expires_at: Option<u64>,
        shared: Option<&str>,
        frame: &[u8],
    ) -> Vec<u8> {
        let mut w = Writer(Vec::with_capacity(frame.len() + shared.map_or(0, str::len) + 32));
        w.u8(VERSION);
        let stage = match stage {
            StoredStage::Queued => 0,
            StoredStage::AwaitingPublishAck => 1,
            StoredStage::AwaitingPublishReceived => 2,
            StoredStage::AwaitingPublishComplete => 3,
        };
        w.u8(qos as u8).u8(u8::from(v5)).u16(packet_id).u8(stage);
        w.opt_u64(expires_at);
        w.bytes(shared.unwrap_or_default().as_bytes());
        w.bytes(frame);
        w.0
    }

    pub fn decode(data: &[u8]) -> Option<MessageRecord> {
        let mut r = Reader::new(data)?;
        let qos = QoS::from_u8(r.u8()?)?;
        let v5 = r.u8()? != 0;
        let packet_id = r.u16()?;
        let stage = match r.u8()? {
            0 => StoredStage::Queued,
            1 => StoredStage::AwaitingPublishAck,
            2 => StoredStage::AwaitingPublishReceived,
            3 => StoredStage::AwaitingPublishComplete,
            _ => return None,
        };
        let expires_at = r.opt_u64()?;
        let shared = Some(r.string()?).filter(|s| !s.is_empty()).map(str::to_string);
        let frame = r.bytes()?.to_vec();
        r.is_empty().then_some(MessageRecord {
            qos,
            v5,
            packet_id,
            stage,
            expires_at,
            shared,
            frame,
        })
    }
}

/// A stored PUBLISH made decodable: a QoS 1/2 frame stored with the placeholder packet id
/// 0 (which decoders rightly refuse) gets id 1; the real id lives in the record.
pub fn with_packet_id_placeholder_filled(frame: &[u8]) -> Option<Vec<u8>> {
    let mut frame = frame.to_vec();
    let qos = (frame.first()? >> 1) & 3;
    if qos == 0 {
        return Some(frame);
    }
    // Fixed header: type byte, then the Remaining Length (1 to 4 bytes).
    let mut at = 1;
    while frame.get(at)? & 0x80 != 0 {
        at += 1;
    }
    at += 1;
    let topic_len = usize::from(u16::from_be_bytes([*frame.get(at)?, *frame.get(at + 1)?]));
    let id = at + 2 + topic_len;
    if frame.get(id..id + 2)? == [0, 0] {
        frame[id + 1] = 1;
    }
    Some(frame)
}

/// A retained message: its PUBLISH encoded for 5.0, and its expiry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetainedRecord {
    pub expires_at: Option<u64>,
    pub frame: Vec<u8>,
}

impl RetainedRecord {
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.opt_u64(self.expires_at).bytes(&self.frame);
        w.0
    }

    pub fn decode(data: &[u8]) -> Option<RetainedRecord> {
        let mut r = Reader::new(data)?;
        let expires_at = r.opt_u64()?;
        let frame = r.bytes()?.to_vec();
        r.is_empty().then_some(RetainedRecord { expires_at, frame })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_damage_is_detected() {
        let s = SessionRecord {
            v5: true,
            expiry: Some(60),
            disconnected_at: None,
            subscriptions: vec![("a/#".into(), 0x21, Some(7)), ("b".into(), 1, None)],
            owner: Some("alice".into()),
        };
        let bytes = s.encode();
        assert_eq!(SessionRecord::decode(&bytes), Some(s.clone()));
        assert_eq!(SessionRecord::decode(&bytes[..bytes.len() - 1]), None);
        // A record written before owners were kept ends after the subscriptions.
        let anonymous = SessionRecord { owner: None, ..s };
        let old = anonymous.encode();
        assert_eq!(SessionRecord::decode(&old[..old.len() - 1]), Some(anonymous));
        assert_eq!(SessionRecord::decode(&[9, 9, 9]), None);
        let m = MessageRecord {
            qos: QoS::ExactlyOnce,
            v5: false,
            packet_id: 9,
            stage: StoredStage::AwaitingPublishComplete,
            expires_at: Some(1),
            shared: Some("$share/g/t".into()),
            frame: vec![0x34, 0],
        };
        assert_eq!(MessageRecord::decode(&m.encode()), Some(m));
        for b in 0..=0x3f_u8 {
            if let Some(o) = options_from_byte(b) {
                assert_eq!(options_byte(&o), b);
            }
        }
    }
}
