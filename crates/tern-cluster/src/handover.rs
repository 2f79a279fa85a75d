//! A persistent session's messages in flight, handed from the node that held it to the
//! node its client reconnects to.
//!
//! Once it has taken a session held by another node ([`crate::sessions`]: the record
//! rewritten by compare-and-set), the node asks that node, over a NATS request to the
//! subject of its run ([`subject_of`]) naming the client id and when the asking
//! connection was made, for what it had in flight to the client. The old node closes its
//! older connection of the client there (5.0: DISCONNECT 0x8E, as a takeover does), drops
//! its copy of the session and stops its feed, and answers with:
//! - each QoS 1/2 message the feed had given the session that was in flight: its stream
//!   sequence, packet id, stage and PUBLISH (the new node puts them in the session before
//!   CONNACK, so they go out again under the same packet ids: the PUBLISH with DUP, or the
//!   PUBREL of a QoS 2 message the client has already received); a shared group's QoS 2
//!   message in flight too, counted as done for the group by the old node (the client
//!   finishes it where it is now), and its queued messages and QoS 1 in flight handed
//!   back to the group at once;
//! - the stream sequences of the messages the client had finished lately, whose
//!   acknowledgements may not have reached JetStream yet (the new node's feed acknowledges
//!   them when its consumer hands them out, instead of sending them again);
//! - the packet ids of the QoS 2 messages the client published and has not released yet
//!   (a resend of one is answered without routing it again, its PUBREL as known).
//!
//! An answer larger than the NATS server's largest message leaves out the last messages
//! in flight (those come again as new ones). Without an answer in [`WAIT`] (the old node
//! died, or is cut off) the session is taken as before: everything unacknowledged comes
//! again as new messages.

use crate::subject;
use bytes::{Buf, BufMut, Bytes, BytesMut};
use futures_util::StreamExt;
use std::sync::Arc;
use std::time::Duration;
use tern_broker::cluster::HandedOver;
use tern_core::Stage;

/// Root of the subjects nodes answer handover requests on (not an MQTT subject root).
const SUBJECT_ROOT: &str = "_TERN.handover";
/// Longest a CONNECT waits for the old node's answer.
pub const WAIT: Duration = Duration::from_secs(2);
/// The answer's format number.
const FORMAT: u8 = 1;
/// Most entries of each kind an answer is read with (a session holds at most its
/// in-flight window, and the feed remembers a bounded number of finished messages).
const MOST: usize = 1 << 16;

/// What the old node hands over.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Handover {
    pub inflight: Vec<HandedOver>,
    /// Stream sequences of messages the client finished lately.
    pub done: Vec<u64>,
    /// Packet ids of QoS 2 messages the client published, not yet released.
    pub incoming: Vec<u16>,
}

/// The subject a run of a node (`origin`) answers handover requests on.
pub fn subject_of(origin: &str) -> Option<String> {
    subject::topic_key(origin).map(|key| format!("{SUBJECT_ROOT}.{key}"))
}

fn stage_byte(stage: Stage) -> u8 {
    match stage {
        Stage::AwaitingPublishAck => 1,
        Stage::AwaitingPublishReceived => 2,
        Stage::AwaitingPublishComplete => 3,
    }
}

fn stage_of(byte: u8) -> Option<Stage> {
    match byte {
        1 => Some(Stage::AwaitingPublishAck),
        2 => Some(Stage::AwaitingPublishReceived),
        3 => Some(Stage::AwaitingPublishComplete),
        _ => None,
    }
}

/// [`encode`], leaving out in-flight messages from the end until the answer fits in
/// `limit` bytes (then also finished sequences, if those alone are too many).
pub fn encode_within(handover: &mut Handover, limit: usize) -> Bytes {
    loop {
        let bytes = encode(handover);
        if bytes.len() <= limit {
            return bytes;
        }
        if handover.inflight.pop().is_none() && handover.done.pop().is_none() {
            return bytes;
        }
    }
}

/// The answer's bytes: the format, the in-flight messages (sequence, packet id, stage,
/// 5.0 or not, milliseconds of expiry left or `u64::MAX`, the frame's length and bytes),
/// the finished sequences, then the client's unreleased QoS 2 packet ids.
pub fn encode(handover: &Handover) -> Bytes {
    let mut out = BytesMut::new();
    out.put_u8(FORMAT);
    out.put_u32(handover.inflight.len() as u32);
    for m in &handover.inflight {
        out.put_u64(m.seq);
        out.put_u16(m.packet_id);
        out.put_u8(stage_byte(m.stage));
        out.put_u8(u8::from(m.v5));
        out.put_u64(m.expires_in.map_or(u64::MAX, |d| d.as_millis() as u64));
        out.put_u32(m.frame.len() as u32);
        out.put_slice(&m.frame);
    }
    out.put_u32(handover.done.len() as u32);
    for seq in &handover.done {
        out.put_u64(*seq);
    }
    out.put_u32(handover.incoming.len() as u32);
    for packet_id in &handover.incoming {
        out.put_u16(*packet_id);
    }
    out.freeze()
}

/// Reads an answer; `None` if it is not one this version makes (whole, or not at all).
pub fn decode(mut bytes: &[u8]) -> Option<Handover> {
    if bytes.try_get_u8().ok()? != FORMAT {
        return None;
    }
    let count = bytes.try_get_u32().ok()? as usize;
    if count > MOST {
        return None;
    }
    let mut handover = Handover::default();
    for _ in 0..count {
        let seq = bytes.try_get_u64().ok()?;
        let packet_id = bytes.try_get_u16().ok()?;
        let stage = stage_of(bytes.try_get_u8().ok()?)?;
        let v5 = bytes.try_get_u8().ok()? != 0;
        let expires_in = match bytes.try_get_u64().ok()? {
            u64::MAX => None,
            ms => Some(Duration::from_millis(ms)),
        };
        let len = bytes.try_get_u32().ok()? as usize;
        if packet_id == 0 || bytes.len() < len {
            return None;
        }
        let frame = bytes[..len].to_vec();
        bytes.advance(len);
        handover.inflight.push(HandedOver {
            seq,
            packet_id,
            stage,
            v5,
            frame,
            expires_in,
        });
    }
    let count = bytes.try_get_u32().ok()? as usize;
    if count > MOST {
        return None;
    }
    for _ in 0..count {
        handover.done.push(bytes.try_get_u64().ok()?);
    }
    let count = bytes.try_get_u32().ok()? as usize;
    if count > MOST {
        return None;
    }
    for _ in 0..count {
        handover.incoming.push(bytes.try_get_u16().ok()?);
    }
    bytes.is_empty().then_some(handover)
}

/// Asks the run of a node `origin` for what it had in flight to `client_id`; nothing if
/// it does not answer in [`WAIT`] (it died, or no longer holds the session).
pub async fn ask(client: &async_nats::Client, origin: &str, client_id: &str) -> Handover {
    let Some(subject) = subject_of(origin) else {
        return Handover::default();
    };
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let request = client.request(subject, Bytes::from(format!("{now_ms}\n{client_id}")));
    match tokio::time::timeout(WAIT, request).await {
        Ok(Ok(answer)) => decode(&answer.payload).unwrap_or_else(|| {
            tracing::warn!(
                client = client_id,
                "cluster: the handover from the session's old node did not decode"
            );
            Handover::default()
        }),
        Ok(Err(e)) => {
            tracing::debug!(
                client = client_id,
                "cluster: no handover from the session's old node: {e}"
            );
            Handover::default()
        }
        Err(_) => {
            tracing::debug!(
                client = client_id,
                "cluster: no handover from the session's old node in time"
            );
            Handover::default()
        }
    }
}

/// Answers the other nodes' handover requests for this node's sessions.
pub async fn serve(engine: Arc<crate::sessions::Engine>, client: async_nats::Client) {
    let Some(subject) = subject_of(&engine.shared.origin) else {
        return;
    };
    let mut requests = loop {
        match client.subscribe(subject.clone()).await {
            Ok(requests) => break requests,
            Err(e) => {
                tracing::warn!("cluster: cannot answer session handovers: {e}");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    };
    while let Some(request) = requests.next().await {
        let text = String::from_utf8(request.payload.to_vec()).unwrap_or_default();
        let parsed = text
            .split_once('\n')
            .and_then(|(ms, id)| Some((ms.parse::<u64>().ok()?, id.to_string())));
        let (Some(reply), Some((connected_ms, client_id))) = (request.reply, parsed) else {
            continue;
        };
        let (engine, client) = (engine.clone(), client.clone());
        tokio::spawn(async move {
            let mut handover = engine.hand_over(&client_id, connected_ms).await;
            // Room for NATS's own headers within the server's largest message.
            let limit = client.server_info().max_payload;
            let answer = encode_within(&mut handover, limit.saturating_sub(4096));
            if let Err(e) = client.publish(reply, answer).await {
                tracing::debug!(client = client_id, "cluster: answering a session handover: {e}");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_reads_back_and_a_damaged_one_not_at_all() {
        let handover = Handover {
            inflight: vec![
                HandedOver {
                    seq: 42,
                    packet_id: 7,
                    stage: Stage::AwaitingPublishComplete,
                    v5: true,
                    frame: vec![0x32, 3, 0, 1, b'a'],
                    expires_in: Some(Duration::from_millis(1500)),
                },
                HandedOver {
                    seq: 43,
                    packet_id: 8,
                    stage: Stage::AwaitingPublishAck,
                    v5: false,
                    frame: vec![],
                    expires_in: None,
                },
            ],
            done: vec![40, 41],
            incoming: vec![3, 65535],
        };
        let bytes = encode(&handover);
        assert_eq!(decode(&bytes), Some(handover));
        for cut in 0..bytes.len() {
            assert_eq!(decode(&bytes[..cut]), None, "cut at {cut}");
        }
        let mut longer = bytes.to_vec();
        longer.push(0);
        assert_eq!(decode(&longer), None);
        let mut bad_stage = bytes.to_vec();
        bad_stage[1 + 4 + 8 + 2] = 9;
        assert_eq!(decode(&bad_stage), None);
        assert_eq!(decode(&[FORMAT, 0xFF, 0xFF, 0xFF, 0xFF]), None);
    }

    #[test]
    fn an_answer_too_large_leaves_out_its_last_messages() {
        let message = |seq| HandedOver {
            seq,
            packet_id: 1,
            stage: Stage::AwaitingPublishReceived,
            v5: true,
            frame: vec![0; 1000],
            expires_in: None,
        };
        let mut handover = Handover {
            inflight: (1..=10).map(message).collect(),
            done: vec![1, 2],
            incoming: Vec::new(),
        };
        let bytes = encode_within(&mut handover, 5000);
        assert!(bytes.len() <= 5000);
        let read = decode(&bytes).unwrap();
        assert_eq!(read.inflight.iter().map(|m| m.seq).collect::<Vec<_>>(), [1, 2, 3, 4]);
        assert_eq!(read.done, [1, 2]);
    }

    #[test]
    fn each_run_of_a_node_has_a_subject_of_its_own() {
        assert_eq!(subject_of("a:17").as_deref(), Some("_TERN.handover.a=3A17"));
        assert_ne!(subject_of("a:17"), subject_of("a:18"));
    }
}
