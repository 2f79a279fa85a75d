//! Handling of each packet a connected client sends.

use super::{Close, Connection, TOPIC_ALIAS_MAXIMUM};
use crate::events::{Event, EventKind, Origin};
use crate::metrics::DropReason;
use crate::shared::parse_share;
use std::sync::atomic::Ordering::Relaxed;
use tern_proto::*;

/// Why a QoS 1/2 publish is refused while the store cannot write.
const STORE_REFUSES: &str =
    "the broker's data directory cannot be written (full?): QoS 1/2 publishes are refused until it can";
/// Why a QoS 1/2 publish is refused while the cluster cannot store it.
const CLUSTER_REFUSES: &str = "the cluster's JetStream is unavailable: QoS 1/2 publishes are refused until it returns";

impl Connection {
    pub(super) fn handle_packet(&mut self, packet: Packet) -> Result<(), Close> {
        match packet {
            Packet::Publish(p) => self.on_publish(p),
            Packet::PublishAck(r) => {
                let mut state = self.session.state.lock();
                let seq = self.stored_seq(&state, r.packet_id);
                if state.outbox.on_publish_ack(r.packet_id) {
                    self.session.forget_message(seq);
                }
                Ok(())
            }
            Packet::PublishReceived(r) => {
                self.on_publish_received(r);
                Ok(())
            }
            Packet::PublishRelease(r) => {
                self.on_publish_release(r.packet_id);
                Ok(())
            }
            Packet::PublishComplete(r) => {
                let mut state = self.session.state.lock();
                let seq = self.stored_seq(&state, r.packet_id);
                if state.outbox.on_publish_complete(r.packet_id) {
                    self.session.forget_message(seq);
                }
                Ok(())
            }
            Packet::Subscribe(s) => self.on_subscribe(s),
            Packet::Unsubscribe(u) => {
                self.on_unsubscribe(u);
                Ok(())
            }
            Packet::PingRequest => {
                self.send(&Packet::PingResponse);
                Ok(())
            }
            Packet::Disconnect(d) => {
                if let Some(seconds) = d.properties.session_expiry_interval() {
                    self.override_session_expiry(seconds)?;
                }
                Err(Close::Disconnect {
                    publish_will: d.reason_code == ReasonCode::DISCONNECT_WITH_WILL_MESSAGE,
                })
            }
            Packet::Connect(_) => Err(Close::violation(
                ReasonCode::PROTOCOL_ERROR,
                "[MQTT-3.1.0-2] second CONNECT on one connection",
            )),
            Packet::Auth(auth) => self.on_auth(auth),
            other => Err(Close::violation(
                ReasonCode::PROTOCOL_ERROR,
                format!("a client must not send {}", other.packet_type()),
            )),
        }
    }

    fn on_publish(&mut self, mut publish: Publish) -> Result<(), Close> {
        if crate::sys::over_memory_limit() {
            self.broker.metrics.dropped(DropReason::MemoryLimit);
            // mosquitto's memory_limit: the message is dropped, its publisher disconnected.
            return Err(Close::Gone("memory_limit reached: message dropped".into()));
        }
        if self.version.is_v5() {
            self.resolve_topic_alias(&mut publish)?;
        }
        // Why the listener policy refuses the topic, if it does.
        let mut outside = None;
        if let Some(policy) = &self.policy {
            outside = self.apply_policy(policy.as_ref(), &mut publish)?;
        } else if let Some(map) = &self.topic_map {
            // mount_point: routed, retained and checked against the ACL under the
            // broker's name (a topic alias stays the client's name).
            publish.topic = map
                .to_broker_topic(&publish.topic)
                .map_err(|e| Close::violation(ReasonCode::TOPIC_NAME_INVALID, e.to_string()))?;
        }
        self.check_publish_rules(&publish)?;
        let packet_id = publish.packet_id;
        let qos = publish.qos;
        if qos == QoS::ExactlyOnce {
            self.check_receive_maximum(packet_id)?;
        }
        let (accepted, why) = if let Some((reason, why)) = outside {
            tracing::debug!(client = %self.session.client_id, topic = %publish.topic, "publish refused: {why}");
            (reason, why)
        } else if qos != QoS::AtMostOnce && self.store_refuses()? {
            (ReasonCode::QUOTA_EXCEEDED, STORE_REFUSES)
        } else if qos != QoS::AtMostOnce && self.cluster_refuses()? {
            (ReasonCode::QUOTA_EXCEEDED, CLUSTER_REFUSES)
        } else {
            self.check_publish(&publish)
        };
        // How many sessions the message reached; `None` for a QoS 2 message sent again
        // before PUBREL, forwarded the first time: its PUBREC says 0x00 (as mosquitto's).
        let mut delivered = None;
        if accepted.is_success() {
            let forward_now = match qos {
                QoS::ExactlyOnce => {
                    let mut state = self.session.state.lock();
                    let new = state.incoming_qos2.insert(packet_id);
                    if new {
                        self.session.persist_incoming(&state, packet_id, true);
                    }
                    new
                }
                _ => true,
            };
            if forward_now {
                delivered = Some(self.route(publish));
                if qos == QoS::ExactlyOnce && self.cluster_track.is_some() {
                    self.cluster_unsettled_qos2.push(packet_id);
                }
            }
        }
        let reason = if !accepted.is_success() {
            accepted
        } else if delivered == Some(0) && self.version.is_v5() && self.broker.router.cluster().is_none() {
            // (In a cluster, subscribers on other nodes are not known here.)
            ReasonCode::NO_MATCHING_SUBSCRIBERS
        } else {
            ReasonCode::SUCCESS
        };
        let response = PublishResponse {
            packet_id,
            reason_code: reason,
            properties: if accepted.is_success() {
                Properties::default()
            } else {
                self.problem(why)
            },
        };
        match qos {
            QoS::AtMostOnce => {}
            QoS::AtLeastOnce => self.send(&Packet::PublishAck(response)),
            QoS::ExactlyOnce => self.send(&Packet::PublishReceived(response)),
        }
        Ok(())
    }

    /// A listener policy's rules for a PUBLISH: retain ignored, the payload limit (over it
    /// the connection ends), its message rate (0x97), and the topic's broker name (0x87).
    /// Returns why the PUBLISH is refused, if it is (counted as dropped).
    fn apply_policy(
        &self,
        policy: &dyn crate::policy::ClientPolicy,
        publish: &mut Publish,
    ) -> Result<Option<(ReasonCode, &'static str)>, Close> {
        if policy.ignores_retain() {
            publish.retain = false;
        }
        if let Some(max) = policy.max_payload() {
            if publish.payload.len() > max {
                self.broker.metrics.dropped(DropReason::MessageSizeLimit);
                return Err(Close::violation(
                    ReasonCode::PACKET_TOO_LARGE,
                    format!(
                        "{}: a payload of {} bytes, over the {max} allowed",
                        crate::policy::MESSAGE_TOO_LARGE,
                        publish.payload.len()
                    ),
                ));
            }
        }
        if policy.over_rate(&publish.topic) {
            self.broker.metrics.dropped(DropReason::RateLimited);
            let why = "over the client's message rate";
            return Ok(Some((ReasonCode::QUOTA_EXCEEDED, why)));
        }
        Ok(match policy.publish_topic(&publish.topic) {
            Ok(topic) => {
                publish.topic = topic;
                None
            }
            Err(why) => {
                self.broker.metrics.dropped(DropReason::NotAuthorized);
                Some((ReasonCode::NOT_AUTHORIZED, why))
            }
        })
    }

    /// retain_available and max_qos: a PUBLISH beyond them ends the connection (5.0:
    /// DISCONNECT 0x9A or 0x9B), as mosquitto does.
    fn check_publish_rules(&self, publish: &Publish) -> Result<(), Close> {
        let (max_qos, retain_available) = self.publish_rules;
        if publish.retain && !retain_available {
            let why = "retained messages are not available (retain_available false)";
            return Err(Close::violation(ReasonCode::RETAIN_NOT_SUPPORTED, why));
        }
        let qos = publish.qos as u8;
        if qos > max_qos {
            let why = format!("PUBLISH with QoS {qos} above max_qos {max_qos}");
            return Err(Close::violation(ReasonCode::QOS_NOT_SUPPORTED, why));
        }
        Ok(())
    }

    /// Whether the store cannot take a QoS 1/2 message now (sync mode, disk full or
    /// failing): a 5.0 client is told with 0x97; a 3.x client, which cannot be refused,
    /// is disconnected without an acknowledgement and sends the message again later.
    fn store_refuses(&self) -> Result<bool, Close> {
        let refuses = self.broker.store.as_ref().is_some_and(|s| s.refuses_publishes());
        if refuses {
            self.broker.metrics.publishes_refused.fetch_add(1, Relaxed);
            self.broker.metrics.dropped(DropReason::StoreUnwritable);
            if !self.version.is_v5() {
                return Err(Close::Gone(STORE_REFUSES.into()));
            }
        }
        Ok(refuses)
    }

    /// Whether the cluster cannot store a QoS 1/2 message now (its JetStream is out of
    /// reach or without quorum): refused as when the store cannot write.
    fn cluster_refuses(&self) -> Result<bool, Close> {
        let refuses = self.broker.router.cluster().is_some_and(|c| !c.accepts_reliable());
        if refuses {
            self.broker.metrics.publishes_refused.fetch_add(1, Relaxed);
            self.broker.metrics.dropped(DropReason::StoreUnwritable);
            if !self.version.is_v5() {
                return Err(Close::Gone(CLUSTER_REFUSES.into()));
            }
        }
        Ok(refuses)
    }

    /// 5.0: a client may leave at most the advertised Receive Maximum of QoS 2 messages
    /// unreleased (QoS 1 messages are acknowledged at once and never accumulate).
    fn check_receive_maximum(&self, packet_id: u16) -> Result<(), Close> {
        let limit = usize::from(self.receive_maximum);
        if limit == 0 {
            return Ok(());
        }
        let state = self.session.state.lock();
        if state.incoming_qos2.len() >= limit && !state.incoming_qos2.contains(&packet_id) {
            return Err(Close::violation(
                ReasonCode::RECEIVE_MAXIMUM_EXCEEDED,
                format!("[MQTT-3.3.4-9] more than the Receive Maximum of {limit} QoS 2 messages unreleased"),
            ));
        }
        Ok(())
    }

    /// Whether a PUBLISH is accepted for forwarding, as the reason code a 5.0 client
    /// receives; 3.x clients are acknowledged either way and the message dropped.
    fn check_publish(&self, publish: &Publish) -> (ReasonCode, &'static str) {
        let limit = self.message_size_limit;
        if limit != 0 && publish.payload.len() > limit {
            self.broker.metrics.dropped(DropReason::MessageSizeLimit);
            tracing::info!(client = %self.session.client_id, "message of {} bytes exceeds message_size_limit {limit}: dropped", publish.payload.len());
            return (ReasonCode::QUOTA_EXCEEDED, "payload exceeds message_size_limit");
        }
        if publish.topic.starts_with('$') {
            if publish.topic.starts_with("$SYS") {
                self.broker.metrics.dropped(DropReason::NotAuthorized);
                return (ReasonCode::NOT_AUTHORIZED, "clients may not publish to $SYS");
            }
            if self.policy.is_none() && self.broker.is_reserved(&publish.topic) {
                self.broker.metrics.dropped(DropReason::NotAuthorized);
                return (
                    ReasonCode::NOT_AUTHORIZED,
                    "this topic belongs to the clients of platform listeners",
                );
            }
        }
        if !self.topic_within_limits(&publish.topic) {
            self.broker.metrics.dropped(DropReason::TopicLimits);
            return (
                ReasonCode::TOPIC_NAME_INVALID,
                "topic exceeds max_topic_levels or max_topic_length",
            );
        }
        if self.acl_enforced {
            let state = self.session.state.lock();
            if let Some(access) = &state.access {
                if !access.may_write(&self.session.client_id, &publish.topic) {
                    self.broker.metrics.dropped(DropReason::NotAuthorized);
                    tracing::info!(client = %self.session.client_id, topic = %publish.topic, "publish denied by the ACL");
                    return (
                        ReasonCode::NOT_AUTHORIZED,
                        "the ACL does not allow publishing to this topic",
                    );
                }
            }
        }
        (ReasonCode::SUCCESS, "")
    }

    /// The store sequence number of the in-flight message `packet_id` (0 when it is not
    /// stored); looked up only when there is a store.
    fn stored_seq(&self, state: &crate::session::SessionState, packet_id: u16) -> u64 {
        if self.session.store.is_none() && !self.session.cluster_fed() {
            return 0;
        }
        state.outbox.find(packet_id).map_or(0, |m| m.delivery.seq)
    }

    /// max_topic_levels and max_topic_length, for topic names and filters.
    fn topic_within_limits(&self, topic: &str) -> bool {
        let (levels, length) = self.topic_limits;
        // A topic shorter than the level limit cannot have more levels than it: the common
        // case costs one comparison.
        (length == 0 || topic.len() <= length)
            && (levels == 0 || topic.len() < levels || topic.bytes().filter(|b| *b == b'/').count() < levels)
    }

    /// Why a subscription to `filter` is refused, if it is: topic limits or the ACL.
    fn subscription_refusal(&self, filter: &str) -> Option<(ReasonCode, &'static str)> {
        if !self.topic_within_limits(filter) {
            Some((
                ReasonCode::TOPIC_FILTER_INVALID,
                "exceeds max_topic_levels or max_topic_length",
            ))
        } else if !self.may_subscribe(filter) {
            Some((ReasonCode::NOT_AUTHORIZED, "not allowed by the ACL"))
        } else if self.policy.is_none() && self.broker.is_reserved(unshared(filter)) {
            Some((
                ReasonCode::NOT_AUTHORIZED,
                "these topics belong to the clients of platform listeners",
            ))
        } else {
            None
        }
    }

    /// Whether the ACL (if any) lets this client subscribe to `filter` (for a shared
    /// subscription, the filter after the group).
    fn may_subscribe(&self, filter: &str) -> bool {
        if !self.acl_enforced {
            return true;
        }
        let filter = unshared(filter);
        let state = self.session.state.lock();
        state
            .access
            .as_ref()
            .is_none_or(|access| access.may_subscribe(&self.session.client_id, filter))
    }

    /// Replaces a 5.0 Topic Alias by its topic, or records a new alias.
    fn resolve_topic_alias(&mut self, publish: &mut Publish) -> Result<(), Close> {
        if publish.properties.subscription_identifiers().next().is_some() {
            return Err(Close::violation(
                ReasonCode::PROTOCOL_ERROR,
                "[MQTT-3.3.4-6] PUBLISH from a client carries a Subscription Identifier",
            ));
        }
        let Some(alias) = publish.properties.topic_alias() else {
            return Ok(());
        };
        if alias > TOPIC_ALIAS_MAXIMUM {
            return Err(Close::violation(
                ReasonCode::TOPIC_ALIAS_INVALID,
                format!("[MQTT-3.3.2-9] Topic Alias {alias} exceeds the maximum {TOPIC_ALIAS_MAXIMUM}"),
            ));
        }
        if publish.topic.is_empty() {
            publish.topic = self
                .topic_aliases
                .as_ref()
                .and_then(|aliases| aliases.get(&alias))
                .cloned()
                .ok_or_else(|| {
                    Close::violation(
                        ReasonCode::PROTOCOL_ERROR,
                        format!("Topic Alias {alias} used before it was set"),
                    )
                })?;
        } else {
            self.topic_aliases
                .get_or_insert_with(Default::default)
                // A copy of its own: a slice would keep the publish's read buffer alive.
                .insert(alias, ByteStr::from(publish.topic.as_str()));
        }
        publish.properties.remove(PropertyId::TopicAlias);
        Ok(())
    }

    /// Routes an accepted PUBLISH: to the cluster, and here (retained store, events, local
    /// subscribers). In a cluster a QoS 2 message is routed here only once the cluster has
    /// stored it, and so is every message after it until then (their order kept): one the
    /// cluster refuses reaches nobody, and the client's resend goes out once. Returns how
    /// many sessions here it was queued for (1 while it waits).
    pub(super) fn route(&mut self, mut publish: Publish) -> usize {
        publish.dup = false;
        publish.packet_id = 0;
        if self.policy.as_ref().is_some_and(|p| p.take_publish(&publish)) {
            // Taken by the listener's service (reached its one recipient).
            return 1;
        }
        if let Some(cluster) = self.broker.router.cluster() {
            let track = self.cluster_track.as_ref().filter(|_| publish.qos != QoS::AtMostOnce);
            cluster.forward(&publish, Some(self.session.client_id.as_str()), track);
            let stored_first = publish.qos == QoS::ExactlyOnce && track.is_some();
            if stored_first || !self.cluster_held_routes.is_empty() {
                self.cluster_held_bytes += publish.payload.len() + publish.topic.len();
                self.cluster_held_routes.push(publish);
                return 1;
            }
        }
        self.route_here(&publish)
    }

    /// The messages that waited for the cluster to store a QoS 2 message, stored now:
    /// routed here in the order they came.
    pub(super) fn release_held_routes(&mut self) {
        self.cluster_held_bytes = 0;
        for publish in std::mem::take(&mut self.cluster_held_routes) {
            self.route_here(&publish);
        }
    }

    /// Stores the retained message if any and delivers to this node's subscribers; returns
    /// how many sessions it was queued for.
    fn route_here(&self, publish: &Publish) -> usize {
        if publish.retain {
            // The publisher, when under an ACL, for check_retain_source.
            let listener = self.session.state.lock().access.as_ref().map(|a| a.listener);
            let source = listener.map(|listener| crate::router::RetainSource {
                client_id: self.session.client_id.clone(),
                user: self.user.clone(),
                listener,
            });
            self.broker.router.retain_from(publish, source);
        }
        self.broker.events().emit(EventKind::Published, || {
            crate::events::published(publish, Origin::Client(self.session.client_id.clone()))
        });
        self.broker
            .router
            .publish(publish, Some(self.session.id), &self.broker.metrics)
    }

    fn on_publish_received(&mut self, response: PublishResponse) {
        let mut state = self.session.state.lock();
        let seq = self.stored_seq(&state, response.packet_id);
        if !response.reason_code.is_success() {
            if state.outbox.on_publish_received_failure(response.packet_id) {
                self.session.forget_message(seq);
            }
            return;
        }
        let known = state.outbox.on_publish_received(response.packet_id);
        if let Some(m) = state.outbox.find(response.packet_id).filter(|_| known && seq != 0) {
            let stage = crate::store::records::StoredStage::AwaitingPublishComplete;
            self.session
                .persist_message(&m.delivery, QoS::ExactlyOnce, response.packet_id, stage);
        }
        drop(state);
        let reason = if known {
            ReasonCode::SUCCESS
        } else {
            ReasonCode::PACKET_IDENTIFIER_NOT_FOUND
        };
        self.send(&Packet::PublishRelease(PublishResponse {
            packet_id: response.packet_id,
            reason_code: reason,
            properties: Properties::default(),
        }));
    }

    fn on_publish_release(&mut self, packet_id: u16) {
        let known = {
            let state = &mut *self.session.state.lock();
            let known = state.incoming_qos2.remove(&packet_id);
            if known {
                self.session.persist_incoming(state, packet_id, false);
            }
            known
        };
        let reason = if known {
            ReasonCode::SUCCESS
        } else {
            ReasonCode::PACKET_IDENTIFIER_NOT_FOUND
        };
        self.send(&Packet::PublishComplete(PublishResponse {
            packet_id,
            reason_code: reason,
            properties: Properties::default(),
        }));
    }

    fn on_subscribe(&mut self, subscribe: Subscribe) -> Result<(), Close> {
        // 5.0: one identifier for every subscription of the packet (the codec checked it).
        let identifier = subscribe.properties.subscription_identifiers().next();
        let mut reason_codes = Vec::with_capacity(subscribe.subscriptions.len());
        let mut problems = Vec::new();
        let mut retained = Vec::new();
        let limit = match self.policy.as_ref().and_then(|p| p.max_subscriptions()) {
            Some(limit) => limit,
            None => self.broker.config().max_subscriptions_per_client,
        };
        for Subscription { filter, mut options } in subscribe.subscriptions {
            let (filter, client_filter, unmapped) = self.broker_filter(filter);
            // max_qos: a subscription is granted at most the listener's QoS (mosquitto's rule).
            options.qos = options
                .qos
                .min(QoS::from_u8(self.publish_rules.0).unwrap_or(QoS::ExactlyOnce));
            let (shared, refusal) = match parse_share(&filter) {
                Some(Ok(_)) if options.no_local => {
                    return Err(Close::violation(
                        ReasonCode::PROTOCOL_ERROR,
                        "[MQTT-3.8.3-4] No Local set on a shared subscription",
                    ))
                }
                Some(Err(rule)) => (true, Some((ReasonCode::TOPIC_FILTER_INVALID, rule))),
                share => (share.is_some(), self.subscription_refusal(&filter)),
            };
            let refusal = unmapped
                .or(refusal)
                .or_else(|| self.over_subscription_limit(&filter, limit));
            if let Some((reason, why)) = refusal {
                if problems.is_empty() {
                    tracing::info!(client = %self.session.client_id, "subscription to {filter:?} refused: {why}");
                }
                problems.push(format!("{client_filter}: {why}"));
                reason_codes.push(if self.version.is_v5() {
                    reason
                } else {
                    ReasonCode::UNSPECIFIED_ERROR
                });
                continue;
            }
            // The filter is a slice of the read buffer: kept for the subscription's life, it
            // would keep the whole chunk (4 KiB or more) alive. A copy of its own costs its
            // length.
            let filter = ByteStr::from(filter.as_str());
            let existed = self
                .broker
                .router
                .subscribe(&self.session, &filter, options, identifier);
            {
                let mut state = self.session.state.lock();
                state.subscriptions.insert(filter.clone(), (options, identifier));
                self.session.persist(&mut state, false);
            }
            reason_codes.push(ReasonCode(options.qos as u8));
            self.broker.events().emit(EventKind::Subscribed, || Event::Subscribed {
                client_id: self.session.client_id.clone(),
                filter: filter.clone(),
                qos: options.qos,
            });
            let send = match options.retain_handling {
                // Retained messages are not sent to a new shared subscription [MQTT-4.8.2].
                _ if shared => false,
                RetainHandling::SendAtSubscribe => true,
                RetainHandling::SendAtNewSubscribe => !existed,
                RetainHandling::DoNotSend => false,
            };
            if send {
                retained.push((filter, options.qos));
            }
        }
        if let (Some(cluster), Some(track)) = (self.broker.router.cluster(), &self.cluster_track) {
            if problems.len() < reason_codes.len() {
                // The SUBACK waits until the subscriptions are active in the cluster.
                cluster.subscribed(track);
                if self.session.cluster_fed() {
                    cluster.session_subscribed(&self.session.client_id, self.session.id, Some(track));
                }
            }
        }
        let properties = self.problem(&problems.join("; "));
        self.send(&Packet::SubscribeAck(SubscribeAck {
            packet_id: subscribe.packet_id,
            reason_codes,
            properties: if problems.is_empty() {
                Properties::default()
            } else {
                properties
            },
        }));
        for (filter, qos) in retained {
            self.broker
                .router
                .send_retained(&self.session, &filter, qos, identifier, &self.broker.metrics);
        }
        Ok(())
    }

    /// Whether a new subscription to `filter` would take the client past
    /// max_subscriptions_per_client (a replaced one does not count).
    fn over_subscription_limit(&self, filter: &ByteStr, limit: usize) -> Option<(ReasonCode, &'static str)> {
        let state = self.session.state.lock();
        let over = limit != 0 && state.subscriptions.len() >= limit && !state.subscriptions.contains_key(filter);
        over.then_some((
            ReasonCode::QUOTA_EXCEEDED,
            "the client holds max_subscriptions_per_client subscriptions already",
        ))
    }

    /// The broker's name for a filter this client sent (mount_point), the filter as sent,
    /// and why it is refused when it has no such name.
    fn broker_filter(&self, filter: ByteStr) -> (ByteStr, ByteStr, Option<(ReasonCode, &'static str)>) {
        if let Some(policy) = &self.policy {
            return match policy.subscribe_filter(&filter) {
                Ok(mapped) => (mapped, filter, None),
                Err(why) => (filter.clone(), filter, Some((ReasonCode::NOT_AUTHORIZED, why))),
            };
        }
        let Some(map) = &self.topic_map else {
            return (filter.clone(), filter, None);
        };
        match map.to_broker_filter(&filter) {
            Ok(mapped) => (mapped, filter, None),
            Err(_) => {
                let why = "not a valid topic filter with the listener's mount_point in front";
                (filter.clone(), filter, Some((ReasonCode::TOPIC_FILTER_INVALID, why)))
            }
        }
    }

    fn on_unsubscribe(&mut self, unsubscribe: Unsubscribe) {
        let mut reason_codes = Vec::with_capacity(unsubscribe.filters.len());
        for filter in &unsubscribe.filters {
            let (filter, _, unmapped) = self.broker_filter(filter.clone());
            let filter = &filter;
            let existed = unmapped.is_none() && self.broker.router.unsubscribe(self.session.id, filter);
            if existed {
                self.broker
                    .events()
                    .emit(EventKind::Unsubscribed, || Event::Unsubscribed {
                        client_id: self.session.client_id.clone(),
                        filter: filter.clone(),
                    });
            }
            {
                let mut state = self.session.state.lock();
                state.subscriptions.remove(filter);
                self.session.persist(&mut state, false);
            }
            reason_codes.push(if existed {
                ReasonCode::SUCCESS
            } else {
                ReasonCode::NO_SUBSCRIPTION_EXISTED
            });
        }
        if let (Some(cluster), true) = (self.broker.router.cluster(), self.session.cluster_fed()) {
            cluster.session_subscribed(&self.session.client_id, self.session.id, None);
        }
        self.send(&Packet::UnsubscribeAck(UnsubscribeAck {
            packet_id: unsubscribe.packet_id,
            reason_codes,
            properties: Properties::default(),
        }));
    }

    /// A 5.0 DISCONNECT may change the Session Expiry Interval, but not from 0 [MQTT-3.14.2-2].
    fn override_session_expiry(&self, seconds: u32) -> Result<(), Close> {
        let mut state = self.session.state.lock();
        if state.clean && seconds != 0 {
            return Err(Close::violation(
                ReasonCode::PROTOCOL_ERROR,
                "[MQTT-3.14.2-2] DISCONNECT sets a Session Expiry Interval after CONNECT set 0",
            ));
        }
        state.clean = seconds == 0;
        state.expiry = (seconds != u32::MAX).then(|| std::time::Duration::from_secs(u64::from(seconds)));
        self.session.persist(&mut state, false);
        Ok(())
    }
}

/// A filter without its `$share/{group}/`, if it has one.
fn unshared(filter: &str) -> &str {
    match parse_share(filter) {
        Some(Ok((_, topic_filter))) => topic_filter,
        _ => filter,
    }
}
