//! Start-up from the store: every persistent session (offline, with its subscriptions,
//! queued and in-flight messages and unreleased QoS 2 ids) and every retained message
//! comes back as it was. What cannot be decoded is left out and reported in one line.

use crate::broker::BrokerState;
use crate::session::Delivery;
use crate::session_store::instant_of;
use crate::store::records::{options_from_byte, with_packet_id_placeholder_filled, StoredStage};
use crate::store::Loaded;
use bytes::BytesMut;
use std::collections::HashMap;
use std::time::Duration;
use tern_core::Stage;
use tern_proto::{decode, ByteStr, Packet, ProtocolVersion, Publish, PublishFrame};

fn decode_publish(frame: &[u8], v5: bool) -> Option<Publish> {
    let version = if v5 {
        ProtocolVersion::V5
    } else {
        ProtocolVersion::V3_1_1
    };
    let frame = with_packet_id_placeholder_filled(frame)?;
    match decode(&mut BytesMut::from(&frame[..]), version, usize::MAX) {
        Ok(Some(Packet::Publish(p))) => Some(p),
        _ => None,
    }
}

/// A frame for a PUBLISH in the store's form (`stored`, encoded for 5.0 if `v5`), and its
/// payload's length.
pub(crate) fn frame_of_stored(stored: &[u8], v5: bool) -> Option<(PublishFrame, usize)> {
    let publish = decode_publish(stored, v5)?;
    let version = if v5 {
        ProtocolVersion::V5
    } else {
        ProtocolVersion::V3_1_1
    };
    let frame = PublishFrame::new(&publish, version).ok()?;
    Some((frame, publish.payload.len()))
}

/// The frames of restored messages, one per distinct message: a message queued for many
/// sessions is stored once per session but held once in memory, as before the restart.
#[derive(Default)]
struct SharedFrames {
    /// (encoded for 5.0, stored frame) to the frame and its payload length.
    by_bytes: HashMap<(bool, Vec<u8>), (PublishFrame, usize)>,
}

impl SharedFrames {
    /// The frame for a stored one, decoded and encoded the first time it is met.
    fn get(&mut self, v5: bool, stored: &[u8]) -> Option<(PublishFrame, usize)> {
        let key = (v5, stored.to_vec());
        if let Some(found) = self.by_bytes.get(&key) {
            return Some(found.clone());
        }
        let entry = frame_of_stored(stored, v5)?;
        self.by_bytes.insert(key, entry.clone());
        Some(entry)
    }
}

/// Loads `loaded` into the broker; returns a summary line.
pub fn restore(state: &BrokerState, loaded: Loaded) -> String {
    let mut skipped = loaded.skipped;
    let retained = loaded.retained.len();
    for (_, record) in loaded.retained {
        match decode_publish(&record.frame, true) {
            Some(mut publish) => {
                publish.packet_id = 0;
                state
                    .router
                    .restore_retained(publish, record.expires_at.map(instant_of));
            }
            None => skipped += 1,
        }
    }
    let (sessions, mut messages) = (loaded.sessions.len(), 0);
    let limits = state.config().outbox_limits();
    let mut frames = SharedFrames::default();
    for stored in loaded.sessions {
        let session = state
            .sessions
            .create(ByteStr::from(stored.client_id.as_str()), limits, false);
        session.set_v5(stored.record.v5);
        for (filter, options, identifier) in &stored.record.subscriptions {
            let Some(options) = options_from_byte(*options) else {
                skipped += 1;
                continue;
            };
            let filter = ByteStr::from(filter.as_str());
            state.router.subscribe(&session, &filter, options, *identifier);
            session
                .state
                .lock()
                .subscriptions
                .insert(filter, (options, *identifier));
        }
        let mut st = session.state.lock();
        st.expiry = stored.record.expiry.map(Duration::from_secs);
        st.owner = stored.record.owner.as_deref().map(Box::from);
        st.disconnected_at = Some(stored.record.disconnected_at.map_or_else(crate::clock::now, instant_of));
        st.stored = true;
        session.schedule_expiry(&mut st);
        st.incoming_qos2 = stored.incoming_qos2.into_iter().collect();
        let (inflight, queued): (Vec<_>, Vec<_>) = stored
            .messages
            .into_iter()
            .partition(|(_, m)| m.stage != StoredStage::Queued);
        for (seq, record) in inflight.into_iter().chain(queued) {
            st.next_seq = st.next_seq.max(seq);
            let Some((frame, len)) = frames.get(record.v5, &record.frame) else {
                skipped += 1;
                continue;
            };
            let expires_at = record.expires_at.map(instant_of);
            if let Some(at) = expires_at {
                session.schedule_purge(&mut st, at);
            }
            let delivery = Delivery {
                frame,
                v5: record.v5,
                expires_at,
                shared: record.shared.as_deref().map(ByteStr::from),
                seq,
            };
            messages += 1;
            let stage = match record.stage {
                StoredStage::Queued => None,
                StoredStage::AwaitingPublishAck => Some(Stage::AwaitingPublishAck),
                StoredStage::AwaitingPublishReceived => Some(Stage::AwaitingPublishReceived),
                StoredStage::AwaitingPublishComplete => Some(Stage::AwaitingPublishComplete),
            };
            match stage {
                Some(stage) => st.outbox.restore_inflight(record.packet_id, stage, delivery),
                None => {
                    let _ = st.outbox.push(delivery, record.qos, len);
                }
            }
        }
        drop(st);
        state.sessions.insert(session);
    }
    let mut line = format!("store: restored {sessions} sessions, {messages} messages, {retained} retained messages");
    if skipped > 0 {
        line.push_str(&format!(
            "; {skipped} damaged records could not be read and were left out"
        ));
    }
    line
}
