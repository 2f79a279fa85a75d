//! What a session writes to the store: its record (expiry, subscriptions, when it went
//! offline) and its QoS 1/2 messages with their stage. Only persistent sessions (not
//! clean) write anything; a broker without a store skips all of it.

use crate::session::{Delivery, Session, SessionState, CLUSTER_SEQ};
use crate::store::records::{options_byte, MessageRecord, SessionRecord, StoredStage};
use crate::store::Op;
use std::time::{Instant, UNIX_EPOCH};
use tern_proto::QoS;

/// Milliseconds since 1970 for an `Instant` (past or future).
pub fn unix_ms(at: Instant) -> u64 {
    let now_unix = crate::clock::system_now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let now = crate::clock::now();
    if at <= now {
        now_unix.saturating_sub((now - at).as_millis() as u64)
    } else {
        now_unix + (at - now).as_millis() as u64
    }
}

/// The `Instant` of a time in milliseconds since 1970.
pub fn instant_of(ms: u64) -> Instant {
    let now_unix = crate::clock::system_now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let now = crate::clock::now();
    if ms <= now_unix {
        now.checked_sub(std::time::Duration::from_millis(now_unix - ms))
            .unwrap_or(now)
    } else {
        now + std::time::Duration::from_millis(ms - now_unix)
    }
}

impl Session {
    fn persistent(&self, state: &SessionState) -> bool {
        self.store.is_some() && !state.clean
    }

    /// Writes the session's record, or removes it once the session is no longer
    /// persistent (or has ended: `ended`).
    pub fn persist(&self, state: &mut SessionState, ended: bool) {
        // Ended, not merely clean: a persistent session resumed to end with its connection
        // is still fed until then.
        if let (true, Some(cluster)) = (ended, self.cluster_feed.get()) {
            cluster.session_ended(&self.client_id, self.id);
        }
        let Some(store) = &self.store else { return };
        let client_id = self.client_id.clone();
        if ended || state.clean {
            if state.stored {
                store.enqueue(Op::Session {
                    client_id,
                    record: None,
                });
                state.stored = false;
            }
            return;
        }
        let record = SessionRecord {
            v5: self.is_v5(),
            expiry: state.expiry.map(|d| d.as_secs()),
            disconnected_at: state.disconnected_at.map(unix_ms),
            subscriptions: state
                .subscriptions
                .iter()
                .map(|(filter, (options, identifier))| (filter.to_string(), options_byte(options), *identifier))
                .collect(),
            owner: state.owner.as_deref().map(str::to_string),
        };
        store.enqueue(Op::Session {
            client_id,
            record: Some(record.encode()),
        });
        state.stored = true;
    }

    /// Gives a QoS 1/2 delivery for a persistent session its sequence number and stores
    /// it as queued.
    pub(crate) fn persist_new(&self, state: &mut SessionState, delivery: &mut Delivery, qos: QoS) {
        if qos == QoS::AtMostOnce || !self.persistent(state) || delivery.seq & CLUSTER_SEQ != 0 {
            return;
        }
        state.next_seq += 1;
        delivery.seq = state.next_seq;
        self.persist_message(delivery, qos, 0, StoredStage::Queued);
    }

    /// Stores a message's current stage (and packet id).
    pub fn persist_message(&self, delivery: &Delivery, qos: QoS, packet_id: u16, stage: StoredStage) {
        let (Some(store), true) = (&self.store, delivery.seq != 0 && delivery.seq & CLUSTER_SEQ == 0) else {
            return;
        };
        let record = MessageRecord::encode_parts(
            (qos, delivery.v5, packet_id, stage),
            delivery.expires_at.map(unix_ms),
            delivery.shared.as_deref(),
            delivery.frame.bytes(),
        );
        store.enqueue(Op::Message {
            client_id: self.client_id.clone(),
            seq: delivery.seq,
            record: Some(record),
            first: stage == StoredStage::Queued,
        });
    }

    /// Removes a stored message (acknowledged, expired, moved or dropped).
    pub fn forget_message(&self, seq: u64) {
        if seq & CLUSTER_SEQ != 0 {
            if let Some(cluster) = self.cluster_feed.get().or_else(|| self.cluster_acks.get()) {
                cluster.session_acked(&self.client_id, self.id, seq & !CLUSTER_SEQ);
            }
            return;
        }
        if let (Some(store), true) = (&self.store, seq != 0) {
            store.enqueue_quiet(Op::Message {
                client_id: self.client_id.clone(),
                seq,
                record: None,
                first: false,
            });
        }
    }

    /// Records a QoS 2 packet id received (`present`) or released.
    pub fn persist_incoming(&self, state: &SessionState, packet_id: u16, present: bool) {
        if let (Some(store), true) = (&self.store, self.persistent(state)) {
            store.enqueue(Op::Incoming {
                client_id: self.client_id.clone(),
                packet_id,
                present,
            });
        }
    }
}
