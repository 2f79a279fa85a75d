//! The admin facade: the read and act operations over the broker's state that the HTTP
//! API (and later the web console and the IoT platform) use: clients, sessions,
//! subscriptions, retained messages, publishing, kicking a client, statistics, listeners,
//! readiness and reload. Nothing outside the broker reaches into session internals; it
//! calls these and gets plain data back ([`model`]).
//!
//! Listings are paged by key (client id, topic) in key order: a page is what comes after
//! the last key of the previous one, so a listing stays correct while clients come and
//! go. A page of clients costs a pass over the registry's keys (the registry lock is held
//! only to copy the matching entries out, as on CONNECT) and a sort; the sessions are then
//! locked one at a time, briefly, as a publisher would.

mod live;
pub mod model;
mod queue;

pub use live::{ConnectionInfo, Kick, Traffic};
pub use model::*;

use crate::broker::BrokerState;
use crate::config::ListenerProtocol;
use crate::session::{Session, SessionState};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, OnceLock};
use tern_proto::{ByteStr, Property, Publish, QoS};
use tokio::sync::Notify;

/// The facade's own part of the broker state.
#[derive(Debug, Default)]
pub struct AdminShared {
    /// Reload requests (from the API) for whoever runs the broker (`tern broker`).
    reload: Notify,
    reloads_requested: AtomicU64,
    /// The listeners as bound, set once they are.
    listeners: OnceLock<Vec<ListenerInfo>>,
}

/// The admin facade over one broker.
#[derive(Debug, Clone)]
pub struct Admin {
    state: Arc<BrokerState>,
}

impl Admin {
    pub fn new(state: Arc<BrokerState>) -> Admin {
        Admin { state }
    }

    /// Sessions whose client id comes after `after` and starts with `prefix`, in client
    /// id order.
    fn sessions_after(&self, after: Option<&str>, prefix: Option<&str>) -> Vec<Arc<Session>> {
        let mut found: Vec<Arc<Session>> = self.state.sessions.with(|map| {
            map.iter()
                .filter(|(id, _)| after.is_none_or(|a| id.as_str() > a))
                .filter(|(id, _)| prefix.is_none_or(|p| id.starts_with(p)))
                .map(|(_, s)| s.clone())
                .collect()
        });
        found.sort_unstable_by(|a, b| a.client_id.cmp(&b.client_id));
        found
    }

    fn session(&self, client_id: &str) -> Result<Arc<Session>, AdminError> {
        self.state
            .sessions
            // Looked up as a ByteStr: its hash is not that of a str.
            .with(|map| map.get(&ByteStr::from(client_id)).cloned())
            .ok_or_else(|| AdminError::NotFound {
                what: "client",
                name: client_id.to_string(),
            })
    }

    fn transport(config: &crate::Config, listener: usize) -> &'static str {
        match config.listeners.get(listener).map(|l| l.protocol) {
            Some(ListenerProtocol::WebSockets) => "websockets",
            Some(ListenerProtocol::Http) => "http",
            _ => "mqtt",
        }
    }

    fn client_info(config: &crate::Config, session: &Session, state: &SessionState) -> ClientInfo {
        let info = state.connection.as_ref().map(|c| c.info.clone());
        let traffic = info.as_ref().map(|i| i.traffic());
        ClientInfo {
            client_id: session.client_id.to_string(),
            connected: info.is_some(),
            user: info
                .as_ref()
                .and_then(|i| i.user.as_deref())
                // A listener policy's client owns its session under OWNER_PREFIX.
                .or(state
                    .owner
                    .as_deref()
                    .map(|o| o.strip_prefix(crate::policy::OWNER_PREFIX).unwrap_or(o)))
                .map(str::to_string),
            address: info.as_ref().map(|i| i.peer.to_string()),
            protocol_version: info.as_ref().map(|i| i.version.to_string()),
            transport: info.as_ref().map(|i| Self::transport(config, i.listener)),
            listener: info.as_ref().map(|i| i.listener),
            keepalive: info.as_ref().map(|i| i.keep_alive),
            connected_since_ms: info.as_ref().map(|i| i.connected_at_ms),
            clean_session: state.clean,
            inflight: state.outbox.inflight_len(),
            queued: state.outbox.queued(),
            subscriptions: state.subscriptions.len(),
            bytes_in: traffic.map(|t| t.bytes_in),
            bytes_out: traffic.map(|t| t.bytes_out),
            messages_in: traffic.map(|t| t.messages_in),
            messages_out: traffic.map(|t| t.messages_out),
        }
    }

    /// A page of clients matching `filter`, in client id order.
    pub fn clients(&self, filter: &ClientFilter, page: &Page) -> Listing<ClientInfo> {
        let candidates = self.sessions_after(page.after.as_deref(), filter.client_id_prefix.as_deref());
        let config = self.state.config();
        let mut items = Vec::new();
        let mut next = None;
        for session in candidates {
            let info = {
                let state = session.state.lock();
                Self::client_info(&config, &session, &state)
            };
            let wanted = filter.connected.is_none_or(|c| c == info.connected)
                && filter.user.as_ref().is_none_or(|u| info.user.as_ref() == Some(u))
                && filter.protocol.as_ref().is_none_or(|p| {
                    info.protocol_version.as_deref() == Some(p.as_str()) || info.transport == Some(p.as_str())
                });
            if !wanted {
                continue;
            }
            if items.len() == page.limit {
                next = items.last().map(|c: &ClientInfo| c.client_id.clone());
                break;
            }
            items.push(info);
        }
        Listing { items, next }
    }

    /// One client.
    pub fn client(&self, client_id: &str) -> Result<ClientInfo, AdminError> {
        let session = self.session(client_id)?;
        let config = self.state.config();
        let state = session.state.lock();
        Ok(Self::client_info(&config, &session, &state))
    }

    /// Closes a client's connection (a 5.0 client gets DISCONNECT 0x98 Administrative
    /// action; its will is published). Its session stays, as after any disconnect.
    pub fn kick(&self, client_id: &str) -> Result<(), AdminError> {
        let session = self.session(client_id)?;
        let info = session.state.lock().connection.as_ref().map(|c| c.info.clone());
        let Some(info) = info else {
            return Err(AdminError::NotConnected(client_id.to_string()));
        };
        info.kick();
        session.wake.notify_one();
        tracing::info!(client = client_id, "client kicked through the admin API");
        Ok(())
    }

    /// A page of one client's subscriptions, in filter order.
    pub fn client_subscriptions(&self, client_id: &str, page: &Page) -> Result<Listing<SubscriptionInfo>, AdminError> {
        let session = self.session(client_id)?;
        let mut subscriptions = subscriptions_of(&session);
        subscriptions.retain(|s| page.after.as_ref().is_none_or(|a| s.filter.as_str() > a.as_str()));
        Ok(paginate(subscriptions, page.limit, |s| s.filter.clone()))
    }

    /// A page of every session's subscriptions, by client id then filter. The cursor is
    /// `client id` NUL `filter`.
    pub fn subscriptions(&self, filter: &SubscriptionFilter, page: &Page) -> Listing<SubscriptionInfo> {
        let (after_client, after_filter) = match page.after.as_deref().map(|a| a.split_once('\0')) {
            Some(Some((c, f))) => (Some(c), Some(f)),
            _ => (None, None),
        };
        // Sessions from the cursor's own client on (it may have filters left).
        let start = after_client.map(|c| c.to_string());
        let sessions = self.sessions_after(None, None);
        let mut items = Vec::new();
        let mut next = None;
        'sessions: for session in sessions {
            if start.as_deref().is_some_and(|c| session.client_id.as_str() < c) {
                continue;
            }
            for s in subscriptions_of(&session) {
                if after_client == Some(s.client_id.as_str()) && after_filter.is_some_and(|f| s.filter.as_str() <= f) {
                    continue;
                }
                let wanted = filter.filter.as_ref().is_none_or(|f| *f == s.filter)
                    && filter
                        .topic
                        .as_ref()
                        .is_none_or(|t| tern_core::topic::matches(subscribed_filter(&s.filter), t));
                if !wanted {
                    continue;
                }
                if items.len() == page.limit {
                    next = items
                        .last()
                        .map(|l: &SubscriptionInfo| format!("{}\0{}", l.client_id, l.filter));
                    break 'sessions;
                }
                items.push(s);
            }
        }
        Listing { items, next }
    }

    /// A page of sessions, online and offline, in client id order.
    pub fn sessions(&self, connected: Option<bool>, page: &Page) -> Listing<SessionInfo> {
        let now = crate::clock::now();
        let mut items = Vec::new();
        let mut next = None;
        for session in self.sessions_after(page.after.as_deref(), None) {
            let info = {
                let state = session.state.lock();
                let expires_in_s = state
                    .disconnected_at
                    .zip(state.expiry)
                    .filter(|_| state.connection.is_none())
                    .map(|(at, expiry)| (at + expiry).saturating_duration_since(now).as_secs());
                SessionInfo {
                    client_id: session.client_id.to_string(),
                    connected: state.connection.is_some(),
                    owner: state.owner.as_deref().map(str::to_string),
                    clean_session: state.clean,
                    expiry_interval_s: state.expiry.map(|e| e.as_secs()).filter(|_| !state.clean),
                    expires_in_s,
                    queued: state.outbox.queued(),
                    inflight: state.outbox.inflight_len(),
                    subscriptions: state.subscriptions.len(),
                }
            };
            if connected.is_some_and(|c| c != info.connected) {
                continue;
            }
            if items.len() == page.limit {
                next = items.last().map(|s: &SessionInfo| s.client_id.clone());
                break;
            }
            items.push(info);
        }
        Listing { items, next }
    }

    /// Ends an offline session: its queue and subscriptions go (from the store too), and a
    /// will still waiting for its delay is published, as when it expires. A connected
    /// client's session is not ended: kick the client first.
    pub fn delete_session(&self, client_id: &str) -> Result<(), AdminError> {
        let key = ByteStr::from(client_id);
        let removed = self.state.sessions.with(|map| {
            let session = map.get(&key)?.clone();
            if session.is_online() {
                return Some(Err(AdminError::Connected(client_id.to_string())));
            }
            map.remove(&key);
            Some(Ok(session))
        });
        let session = removed.ok_or_else(|| AdminError::NotFound {
            what: "session",
            name: client_id.to_string(),
        })??;
        tracing::info!(client = client_id, "session ended through the admin API");
        self.state.end_session(&session);
        Ok(())
    }

    /// A page of the retained messages matching `filter`, in topic order.
    pub fn retained(&self, filter: &str, page: &Page) -> Result<Listing<RetainedInfo>, AdminError> {
        tern_proto::topic::validate_topic_filter(filter).map_err(|e| AdminError::invalid("filter", e))?;
        let filter = ByteStr::from(filter);
        let (messages, more) = self
            .state
            .router
            .retained_page(&filter, page.after.as_deref(), page.limit);
        let items: Vec<RetainedInfo> = messages.iter().map(|m| retained_info(m)).collect();
        let next = more.then(|| items.last().map(|m| m.topic.clone())).flatten();
        Ok(Listing { items, next })
    }

    /// The retained message of `topic`.
    pub fn retained_message(&self, topic: &str) -> Result<RetainedInfo, AdminError> {
        self.state
            .router
            .retained_message(topic)
            .map(|m| retained_info(&m))
            .ok_or_else(|| AdminError::NotFound {
                what: "retained message on",
                name: topic.to_string(),
            })
    }

    /// Clears the retained message of `topic` (in the store too).
    pub fn delete_retained(&self, topic: &str) -> Result<(), AdminError> {
        if self.state.router.retained_message(topic).is_none() {
            return Err(AdminError::NotFound {
                what: "retained message on",
                name: topic.to_string(),
            });
        }
        self.clear_retained(ByteStr::from(topic));
        Ok(())
    }

    /// Clears every retained message matching `filter`; returns how many.
    pub fn delete_retained_matching(&self, filter: &str) -> Result<usize, AdminError> {
        tern_proto::topic::validate_topic_filter(filter).map_err(|e| AdminError::invalid("filter", e))?;
        let topics = self.state.router.retained_topics(&ByteStr::from(filter));
        let count = topics.len();
        for topic in topics {
            self.clear_retained(topic);
        }
        Ok(count)
    }

    fn clear_retained(&self, topic: ByteStr) {
        let clear = Publish {
            dup: false,
            qos: QoS::AtMostOnce,
            retain: true,
            topic,
            packet_id: 0,
            properties: Default::default(),
            payload: Default::default(),
        };
        self.state.router.retain(&clear);
        if let Some(cluster) = self.state.router.cluster() {
            cluster.clear_retained(&clear.topic);
        }
    }

    /// Publishes a message as the broker (no client is its origin); returns the number of
    /// sessions it was queued for.
    pub fn publish(&self, request: PublishRequest) -> Result<usize, AdminError> {
        let config = self.state.config();
        let topic = request.topic.as_str();
        tern_proto::topic::validate_topic_name(topic).map_err(|e| AdminError::invalid("topic", e))?;
        if topic.starts_with('$') {
            return Err(AdminError::invalid(
                "topic",
                "topics starting with '$' are the broker's own",
            ));
        }
        if config.max_topic_length > 0 && topic.len() > config.max_topic_length {
            return Err(AdminError::invalid("topic", "longer than max_topic_length"));
        }
        if config.max_topic_levels > 0 && topic.split('/').count() > config.max_topic_levels {
            return Err(AdminError::invalid("topic", "more levels than max_topic_levels"));
        }
        if config.message_size_limit > 0 && request.payload.len() > config.message_size_limit {
            return Err(AdminError::invalid("payload", "larger than message_size_limit"));
        }
        if request.qos != QoS::AtMostOnce && self.state.store.as_ref().is_some_and(|s| s.refuses_publishes()) {
            // As for clients: nothing is taken on at QoS 1/2 that cannot reach the disk.
            return Err(AdminError::Unavailable {
                field: "qos",
                message: "the store cannot write: QoS 1 and 2 publishes are refused until it can".into(),
            });
        }
        if request.retain && !config.retain_available {
            return Err(AdminError::invalid(
                "retain",
                "retained messages are off (retain_available false)",
            ));
        }
        let publish = Publish {
            dup: false,
            qos: request.qos,
            retain: request.retain,
            topic: ByteStr::from(topic),
            packet_id: 0,
            properties: request.properties,
            payload: request.payload,
        };
        if publish.retain {
            self.state.router.retain(&publish);
        }
        self.state.events().emit(crate::events::EventKind::Published, || {
            crate::events::published(&publish, crate::events::Origin::Api)
        });
        let reached = self.state.router.publish(&publish, None, &self.state.metrics);
        if let Some(cluster) = self.state.router.cluster() {
            cluster.forward(&publish, None, None);
        }
        Ok(reached)
    }

    /// Publishes a message of a service beside the broker (the IoT platform's status
    /// messages): any valid topic, `$` ones included, stored if retained, then routed.
    /// An empty retained payload only clears the topic's retained message (nothing is
    /// routed). Returns how many sessions it reached.
    pub fn publish_as_broker(&self, topic: &str, payload: bytes::Bytes, retain: bool) -> Result<usize, AdminError> {
        self.publish_as_broker_with(topic, payload, QoS::AtMostOnce, retain)
    }

    /// [`Admin::publish_as_broker`] at QoS `qos`, not retained: a request the platform
    /// sends a device (device management), queued in the device's persistent session
    /// while it is offline. QoS 1 and 2 are refused while the store cannot write.
    pub fn publish_as_broker_qos(&self, topic: &str, payload: bytes::Bytes, qos: QoS) -> Result<usize, AdminError> {
        if qos != QoS::AtMostOnce && self.state.store.as_ref().is_some_and(|s| s.refuses_publishes()) {
            return Err(AdminError::Unavailable {
                field: "qos",
                message: "the store cannot write: QoS 1 and 2 publishes are refused until it can".into(),
            });
        }
        self.publish_as_broker_with(topic, payload, qos, false)
    }

    fn publish_as_broker_with(
        &self,
        topic: &str,
        payload: bytes::Bytes,
        qos: QoS,
        retain: bool,
    ) -> Result<usize, AdminError> {
        tern_proto::topic::validate_topic_name(topic).map_err(|e| AdminError::invalid("topic", e))?;
        let publish = Publish {
            dup: false,
            qos,
            retain,
            topic: ByteStr::from(topic),
            packet_id: 0,
            properties: tern_proto::Properties::default(),
            payload,
        };
        if publish.retain {
            self.state.router.retain(&publish);
            if publish.payload.is_empty() {
                if let Some(cluster) = self.state.router.cluster() {
                    cluster.clear_retained(&publish.topic);
                }
                return Ok(0);
            }
        }
        self.state.events().emit(crate::events::EventKind::Published, || {
            crate::events::published(&publish, crate::events::Origin::Api)
        });
        let reached = self.state.router.publish(&publish, None, &self.state.metrics);
        if let Some(cluster) = self.state.router.cluster() {
            cluster.forward(&publish, None, None);
        }
        Ok(reached)
    }

    /// Broker-wide figures.
    pub fn stats(&self) -> Stats {
        use crate::metrics::Metrics as M;
        let m = &self.state.metrics;
        Stats {
            version: env!("CARGO_PKG_VERSION"),
            uptime_s: self.state.started.elapsed().as_secs(),
            started_unix: self.state.started_unix,
            clients_connected: M::get(&m.clients_connected),
            clients_maximum: M::get(&m.clients_maximum),
            connections_total: M::get(&m.connections_total),
            sessions: self.state.sessions.len(),
            subscriptions: self.state.router.subscription_count(),
            retained_messages: self.state.router.retained_count(),
            messages_received: M::get(&m.messages_received),
            messages_sent: M::get(&m.messages_sent),
            bytes_received: M::get(&m.bytes_received),
            bytes_sent: M::get(&m.bytes_sent),
            store: StoreStatus {
                enabled: self.state.store.is_some(),
                writable: self.state.store.as_ref().is_none_or(|s| s.is_writable()),
                write_failures: self.state.store.as_ref().map_or(0, |s| s.write_failures()),
            },
        }
    }

    /// Records the listeners as bound (once): each configured one's index and address,
    /// and the default HTTP API's address if it is served.
    pub fn record_listeners(&self, endpoints: Vec<(usize, String)>, default_http: Option<String>) {
        let config = self.state.config();
        let configured = config.effective_listeners();
        let mut listeners: Vec<ListenerInfo> = endpoints
            .into_iter()
            .map(|(index, address)| {
                let listener = configured.get(index);
                ListenerInfo {
                    index,
                    protocol: listener.map_or("mqtt", |l| l.protocol.name()),
                    address,
                    tls: listener.is_some_and(|l| l.tls.enabled()),
                }
            })
            .collect();
        if let Some(address) = default_http {
            listeners.push(ListenerInfo {
                index: configured.len(),
                protocol: "http",
                address,
                tls: false,
            });
        }
        let _ = self.state.admin.listeners.set(listeners);
    }

    /// The listeners as bound (empty until they are).
    pub fn listeners(&self) -> Vec<ListenerInfo> {
        self.state.admin.listeners.get().cloned().unwrap_or_default()
    }

    /// Whether the broker can serve now.
    pub fn readiness(&self) -> Readiness {
        let listeners_bound = self.state.admin.listeners.get().is_some();
        let store_writable = self
            .state
            .store
            .as_ref()
            .is_none_or(|s| !s.refuses_publishes() && s.is_writable());
        let shutting_down = self.state.shutdown.is_cancelled();
        Readiness {
            ready: listeners_bound && store_writable && !shutting_down,
            listeners_bound,
            store_writable,
            shutting_down,
        }
    }

    /// Asks whoever runs the broker to reload its configuration, as SIGHUP does.
    pub fn request_reload(&self) {
        self.state.admin.reloads_requested.fetch_add(1, Relaxed);
        self.state.admin.reload.notify_one();
    }

    /// Resolves at the next reload request (for the code that runs the broker).
    pub async fn reload_requested(&self) {
        self.state.admin.reload.notified().await;
    }
}

/// The filter a subscription matches topics with (`$share/{group}/` removed).
fn subscribed_filter(filter: &str) -> &str {
    match crate::shared::parse_share(filter) {
        Some(Ok((_, topic_filter))) => topic_filter,
        _ => filter,
    }
}

fn subscriptions_of(session: &Session) -> Vec<SubscriptionInfo> {
    let state = session.state.lock();
    let mut list: Vec<SubscriptionInfo> = state
        .subscriptions
        .iter()
        .map(|(filter, (options, identifier))| SubscriptionInfo {
            client_id: session.client_id.to_string(),
            filter: filter.to_string(),
            qos: options.qos as u8,
            no_local: options.no_local,
            retain_as_published: options.retain_as_published,
            retain_handling: options.retain_handling as u8,
            subscription_identifier: *identifier,
        })
        .collect();
    drop(state);
    list.sort_unstable_by(|a, b| a.filter.cmp(&b.filter));
    list
}

/// The first `limit` of `items` (sorted by `key`), with the key to resume after.
fn paginate<T>(mut items: Vec<T>, limit: usize, key: impl Fn(&T) -> String) -> Listing<T> {
    let next = (items.len() > limit).then(|| {
        items.truncate(limit);
        items.last().map(&key)
    });
    Listing {
        items,
        next: next.flatten(),
    }
}

fn retained_info(m: &crate::router::RetainedMessage) -> RetainedInfo {
    let publish = &m.publish;
    RetainedInfo {
        topic: publish.topic.to_string(),
        qos: publish.qos as u8,
        payload: std::str::from_utf8(&publish.payload).ok().map(str::to_string),
        payload_base64: STANDARD.encode(&publish.payload),
        payload_bytes: publish.payload.len(),
        expires_in_s: m
            .expires_at
            .map(|at| at.saturating_duration_since(crate::clock::now()).as_secs()),
        properties: message_properties(&publish.properties),
    }
}

/// The operator-facing properties of a message.
pub fn message_properties(properties: &tern_proto::Properties) -> MessageProperties {
    let mut out = MessageProperties::default();
    for p in properties.iter() {
        match p {
            Property::PayloadFormatIndicator(v) => out.payload_format_indicator = Some(*v),
            Property::MessageExpiryInterval(v) => out.message_expiry_interval = Some(*v),
            Property::ContentType(v) => out.content_type = Some(v.to_string()),
            Property::ResponseTopic(v) => out.response_topic = Some(v.to_string()),
            Property::CorrelationData(v) => out.correlation_data = Some(STANDARD.encode(v)),
            Property::UserProperty((k, v)) => out.user_properties.push((k.to_string(), v.to_string())),
            _ => {}
        }
    }
    out
}
