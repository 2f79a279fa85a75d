//! The outbox of a session: messages waiting to be sent to one client, the in-flight
//! window of QoS 1 and 2 messages sent but not yet acknowledged, and packet identifiers.
//!
//! Messages leave strictly in the order they were queued [MQTT-4.6.0-6]; a QoS 1 or 2
//! message at the head waits while the in-flight window is full, and what queues behind
//! it waits too. The queue is bounded by message count and bytes so that a slow or
//! offline client costs its own memory, never the broker's.

use std::collections::VecDeque;
use tern_proto::QoS;

/// Where an outgoing QoS 1 / 2 message stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// QoS 1 PUBLISH sent, PUBACK awaited.
    AwaitingPublishAck,
    /// QoS 2 PUBLISH sent, PUBREC awaited.
    AwaitingPublishReceived,
    /// PUBREL sent, PUBCOMP awaited.
    AwaitingPublishComplete,
}

/// An in-flight message.
#[derive(Debug, Clone)]
pub struct Inflight<D> {
    pub packet_id: u16,
    pub stage: Stage,
    pub delivery: D,
    /// Payload bytes, for `max_inflight_bytes` (0 for messages restored from the store).
    pub bytes: usize,
}

/// The bounds of an outbox; 0 means unlimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutboxLimits {
    /// Maximum QoS 1/2 messages in flight at once (mosquitto's max_inflight_messages).
    pub max_inflight: usize,
    /// Maximum messages waiting in the queue (max_queued_messages).
    pub max_queued_messages: usize,
    /// Maximum payload bytes waiting in the queue (max_queued_bytes).
    pub max_queued_bytes: usize,
    /// Maximum payload bytes of QoS 1/2 messages in flight (mosquitto's
    /// max_inflight_bytes); a larger message still goes out alone.
    pub max_inflight_bytes: usize,
}

impl Default for OutboxLimits {
    fn default() -> Self {
        OutboxLimits {
            max_inflight: 20,
            max_queued_messages: 1000,
            max_queued_bytes: 0,
            max_inflight_bytes: 0,
        }
    }
}

/// The queue refused a message because a bound was reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueFull;

/// A message taken from the queue, ready to write.
#[derive(Debug, Clone)]
pub struct Sendable<D> {
    /// The packet identifier it was given; 0 for QoS 0.
    pub packet_id: u16,
    pub qos: QoS,
    pub delivery: D,
}

#[derive(Debug)]
struct Queued<D> {
    delivery: D,
    qos: QoS,
    bytes: usize,
}

/// One session's outgoing state.
#[derive(Debug)]
pub struct Outbox<D> {
    queue: VecDeque<Queued<D>>,
    /// Payload bytes in `queue`, for `max_queued_bytes`.
    queued_bytes: usize,
    /// In send order, so a reconnect resends them in the order first sent [MQTT-4.4.0-1].
    inflight: VecDeque<Inflight<D>>,
    /// Payload bytes in `inflight`, for `max_inflight_bytes`.
    inflight_bytes: usize,
    /// The last packet identifier handed out.
    last_packet_id: u16,
    pub limits: OutboxLimits,
}

impl<D: Clone> Outbox<D> {
    pub fn new(limits: OutboxLimits) -> Self {
        Outbox {
            queue: VecDeque::new(),
            queued_bytes: 0,
            inflight: VecDeque::new(),
            inflight_bytes: 0,
            last_packet_id: 0,
            limits,
        }
    }

    /// Messages waiting in the queue.
    pub fn queued(&self) -> usize {
        self.queue.len()
    }

    /// Messages in flight.
    pub fn inflight_len(&self) -> usize {
        self.inflight.len()
    }

    /// Whether a message of `bytes` payload bytes fits within the bounds.
    pub fn has_room(&self, bytes: usize) -> bool {
        let l = &self.limits;
        !((l.max_queued_messages != 0 && self.queue.len() >= l.max_queued_messages)
            || (l.max_queued_bytes != 0 && self.queued_bytes + bytes > l.max_queued_bytes && !self.queue.is_empty()))
    }

    /// Appends a message of `bytes` payload bytes, unless a bound is reached.
    pub fn push(&mut self, delivery: D, qos: QoS, bytes: usize) -> Result<(), QueueFull> {
        if !self.has_room(bytes) {
            return Err(QueueFull);
        }
        self.queued_bytes += bytes;
        self.queue.push_back(Queued { delivery, qos, bytes });
        Ok(())
    }

    /// Takes the next message that may be sent now: a QoS 0 message, or a QoS 1/2 one if
    /// the in-flight window has room (it then gets a packet id and enters the window).
    /// `window` is the smaller of the broker's limit and the client's Receive Maximum.
    pub fn pop_sendable(&mut self, window: usize) -> Option<Sendable<D>> {
        let head = self.queue.front()?;
        if head.qos != QoS::AtMostOnce {
            if window != 0 && self.inflight.len() >= window {
                return None;
            }
            let max_bytes = self.limits.max_inflight_bytes;
            if max_bytes != 0 && !self.inflight.is_empty() && self.inflight_bytes + head.bytes > max_bytes {
                return None;
            }
        }
        let Queued { delivery, qos, bytes } = self.queue.pop_front()?;
        self.queued_bytes -= bytes;
        if qos == QoS::AtMostOnce {
            return Some(Sendable {
                packet_id: 0,
                qos,
                delivery,
            });
        }
        let packet_id = self.next_packet_id();
        let stage = if qos == QoS::AtLeastOnce {
            Stage::AwaitingPublishAck
        } else {
            Stage::AwaitingPublishReceived
        };
        self.inflight_bytes += bytes;
        self.inflight.push_back(Inflight {
            packet_id,
            stage,
            delivery: delivery.clone(),
            bytes,
        });
        Some(Sendable {
            packet_id,
            qos,
            delivery,
        })
    }

    fn next_packet_id(&mut self) -> u16 {
        loop {
            self.last_packet_id = self.last_packet_id.wrapping_add(1);
            if self.last_packet_id == 0 {
                continue;
            }
            let id = self.last_packet_id;
            if !self.inflight.iter().any(|m| m.packet_id == id) {
                return id;
            }
        }
    }

    /// Ends the flow at index `i` of the window.
    fn remove_inflight(&mut self, i: usize) -> Option<Inflight<D>> {
        let m = self.inflight.remove(i)?;
        self.inflight_bytes -= m.bytes;
        Some(m)
    }

    fn position(&self, packet_id: u16, stage: Stage) -> Option<usize> {
        self.inflight
            .iter()
            .position(|m| m.packet_id == packet_id && m.stage == stage)
    }

    /// PUBACK received: ends a QoS 1 flow. False if no such message was in flight.
    pub fn on_publish_ack(&mut self, packet_id: u16) -> bool {
        self.position(packet_id, Stage::AwaitingPublishAck)
            .and_then(|i| self.remove_inflight(i))
            .is_some()
    }

    /// PUBREC received: the message moves to awaiting PUBCOMP and a PUBREL is due. False
    /// if no such message was awaiting PUBREC (a PUBREL is still due if it already moved).
    pub fn on_publish_received(&mut self, packet_id: u16) -> bool {
        match self.position(packet_id, Stage::AwaitingPublishReceived) {
            Some(i) => {
                self.inflight[i].stage = Stage::AwaitingPublishComplete;
                true
            }
            None => self.position(packet_id, Stage::AwaitingPublishComplete).is_some(),
        }
    }

    /// PUBREC with a failure reason code (5.0): the flow ends there.
    pub fn on_publish_received_failure(&mut self, packet_id: u16) -> bool {
        self.position(packet_id, Stage::AwaitingPublishReceived)
            .and_then(|i| self.remove_inflight(i))
            .is_some()
    }

    /// PUBCOMP received: ends a QoS 2 flow.
    pub fn on_publish_complete(&mut self, packet_id: u16) -> bool {
        self.position(packet_id, Stage::AwaitingPublishComplete)
            .and_then(|i| self.remove_inflight(i))
            .is_some()
    }

    /// Ends the flow of `packet_id` whatever its stage (a message that could not be sent).
    pub fn forget(&mut self, packet_id: u16) -> bool {
        match self.inflight.iter().position(|m| m.packet_id == packet_id) {
            Some(i) => self.remove_inflight(i).is_some(),
            None => false,
        }
    }

    /// The in-flight message with `packet_id`, if any.
    pub fn find(&self, packet_id: u16) -> Option<&Inflight<D>> {
        self.inflight.iter().find(|m| m.packet_id == packet_id)
    }

    /// Puts back a message that was in flight when the broker stopped (from the store),
    /// with its packet id and stage, behind those already restored.
    pub fn restore_inflight(&mut self, packet_id: u16, stage: Stage, delivery: D) {
        self.last_packet_id = self.last_packet_id.max(packet_id);
        self.inflight.push_back(Inflight {
            packet_id,
            stage,
            delivery,
            bytes: 0,
        });
    }

    /// The in-flight messages, in the order first sent, for resending after a reconnect.
    pub fn inflight(&self) -> impl Iterator<Item = &Inflight<D>> {
        self.inflight.iter()
    }

    /// The queued (not yet sent) messages in send order, each with its QoS and payload
    /// bytes, for an operator to look at.
    pub fn queued_messages(&self) -> impl Iterator<Item = (&D, QoS, usize)> {
        self.queue.iter().map(|q| (&q.delivery, q.qos, q.bytes))
    }

    /// Removes queued (not yet sent) messages for which `expired` is true; returns how
    /// many were removed. In-flight messages are left to finish.
    pub fn drop_queued(&mut self, mut expired: impl FnMut(&D) -> bool) -> usize {
        let before = self.queue.len();
        let mut freed = 0;
        self.queue.retain(|q| {
            let keep = !expired(&q.delivery);
            if !keep {
                freed += q.bytes;
            }
            keep
        });
        self.queued_bytes -= freed;
        before - self.queue.len()
    }

    /// Takes out the messages another client may still receive instead: queued ones for
    /// which `movable` is true, and QoS 1 ones in flight (not QoS 2, whose delivery must
    /// finish with the client it started with [MQTT-4.8.2-4]). Order is kept.
    pub fn take_movable(&mut self, mut movable: impl FnMut(&D) -> bool) -> Vec<(D, QoS)> {
        let mut taken = Vec::new();
        let mut kept = VecDeque::with_capacity(self.inflight.len());
        for m in self.inflight.drain(..) {
            if m.stage == Stage::AwaitingPublishAck && movable(&m.delivery) {
                self.inflight_bytes -= m.bytes;
                taken.push((m.delivery, QoS::AtLeastOnce));
            } else {
                kept.push_back(m);
            }
        }
        self.inflight = kept;
        let mut queue = VecDeque::with_capacity(self.queue.len());
        for q in self.queue.drain(..) {
            if movable(&q.delivery) {
                self.queued_bytes -= q.bytes;
                taken.push((q.delivery, q.qos));
            } else {
                queue.push_back(q);
            }
        }
        self.queue = queue;
        taken
    }

    /// Drops everything (a clean session ending).
    pub fn clear(&mut self) {
        self.queue.clear();
        self.queued_bytes = 0;
        self.inflight.clear();
        self.inflight_bytes = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(max_inflight: usize, max_queued_messages: usize) -> OutboxLimits {
        OutboxLimits {
            max_inflight,
            max_queued_messages,
            max_queued_bytes: 0,
            max_inflight_bytes: 0,
        }
    }

    #[test]
    fn the_window_holds_back_qos_1_and_what_follows_it() {
        let mut out = Outbox::new(limits(1, 0));
        out.push("a", QoS::AtLeastOnce, 1).unwrap();
        out.push("b", QoS::AtLeastOnce, 1).unwrap();
        out.push("c", QoS::AtMostOnce, 1).unwrap();
        let first = out.pop_sendable(1).unwrap();
        assert_eq!((first.packet_id, first.delivery), (1, "a"));
        assert!(out.pop_sendable(1).is_none(), "window full; order kept");
        assert!(out.on_publish_ack(1));
        assert!(!out.on_publish_ack(1), "a second PUBACK is not matched");
        assert_eq!(out.pop_sendable(1).unwrap().delivery, "b");
        assert!(out.on_publish_ack(2));
        let c = out.pop_sendable(1).unwrap();
        assert_eq!((c.packet_id, c.delivery), (0, "c"));
    }

    #[test]
    fn qos_2_moves_through_its_stages() {
        let mut out = Outbox::new(limits(10, 0));
        out.push("m", QoS::ExactlyOnce, 1).unwrap();
        let m = out.pop_sendable(10).unwrap();
        assert!(
            !out.on_publish_complete(m.packet_id),
            "PUBCOMP before PUBREC is not matched"
        );
        assert!(out.on_publish_received(m.packet_id));
        assert!(
            out.on_publish_received(m.packet_id),
            "a repeated PUBREC still wants a PUBREL"
        );
        assert_eq!(out.inflight().next().unwrap().stage, Stage::AwaitingPublishComplete);
        assert!(out.on_publish_complete(m.packet_id));
        assert_eq!(out.inflight_len(), 0);
    }

    #[test]
    fn max_inflight_bytes_holds_back_what_would_pass_it_but_lets_a_large_message_go_alone() {
        let mut out = Outbox::new(OutboxLimits {
            max_inflight_bytes: 100,
            ..limits(0, 0)
        });
        out.push("a", QoS::AtLeastOnce, 60).unwrap();
        out.push("b", QoS::AtLeastOnce, 60).unwrap();
        out.push("c", QoS::AtMostOnce, 500).unwrap();
        out.push("d", QoS::ExactlyOnce, 300).unwrap();
        let a = out.pop_sendable(0).unwrap();
        // 60 + 60 would pass 100: b waits, and so does everything behind it.
        assert!(out.pop_sendable(0).is_none());
        assert!(out.on_publish_ack(a.packet_id));
        let b = out.pop_sendable(0).unwrap();
        assert_eq!(b.delivery, "b");
        assert!(out.on_publish_ack(b.packet_id));
        // QoS 0 is not in flight; a message larger than the limit goes out alone.
        assert_eq!(out.pop_sendable(0).unwrap().delivery, "c");
        let d = out.pop_sendable(0).unwrap();
        assert_eq!(d.delivery, "d");
        assert!(out.on_publish_received(d.packet_id));
        assert!(out.on_publish_complete(d.packet_id));
        out.push("e", QoS::AtLeastOnce, 100).unwrap();
        assert_eq!(out.pop_sendable(0).unwrap().delivery, "e");
        out.clear();
        out.push("f", QoS::AtLeastOnce, 100).unwrap();
        assert_eq!(out.pop_sendable(0).unwrap().delivery, "f");
    }

    #[test]
    fn the_queue_is_bounded_by_count_and_bytes() {
        let mut out = Outbox::new(limits(10, 2));
        out.push(1, QoS::AtMostOnce, 10).unwrap();
        out.push(2, QoS::AtMostOnce, 10).unwrap();
        assert_eq!(out.push(3, QoS::AtMostOnce, 10), Err(QueueFull));
        let mut out = Outbox::new(OutboxLimits {
            max_inflight: 10,
            max_queued_messages: 0,
            max_queued_bytes: 15,
            max_inflight_bytes: 0,
        });
        out.push(1, QoS::AtMostOnce, 10).unwrap();
        assert_eq!(out.push(2, QoS::AtMostOnce, 10), Err(QueueFull));
    }

    #[test]
    fn qos_1_in_flight_and_queued_messages_can_move_but_not_qos_2_in_flight() {
        let mut out = Outbox::new(limits(10, 0));
        out.push("q1", QoS::AtLeastOnce, 1).unwrap();
        out.push("q2", QoS::ExactlyOnce, 1).unwrap();
        out.pop_sendable(10).unwrap();
        out.pop_sendable(10).unwrap();
        out.push("waiting", QoS::ExactlyOnce, 1).unwrap();
        out.push("mine", QoS::AtLeastOnce, 1).unwrap();
        let taken = out.take_movable(|d| *d != "mine");
        assert_eq!(taken, vec![("q1", QoS::AtLeastOnce), ("waiting", QoS::ExactlyOnce)]);
        assert_eq!(out.inflight().map(|m| m.delivery).collect::<Vec<_>>(), vec!["q2"]);
        assert_eq!(out.queued(), 1);
    }

    #[test]
    fn packet_ids_skip_zero_and_ids_in_flight() {
        let mut out = Outbox::new(limits(0, 0));
        out.last_packet_id = u16::MAX - 1;
        out.push('a', QoS::AtLeastOnce, 0).unwrap();
        out.push('b', QoS::AtLeastOnce, 0).unwrap();
        out.push('c', QoS::AtLeastOnce, 0).unwrap();
        assert_eq!(out.pop_sendable(0).unwrap().packet_id, u16::MAX);
        assert_eq!(out.pop_sendable(0).unwrap().packet_id, 1);
        out.last_packet_id = u16::MAX - 1;
        assert_eq!(out.pop_sendable(0).unwrap().packet_id, 2, "65535 and 1 are in flight");
    }
}
