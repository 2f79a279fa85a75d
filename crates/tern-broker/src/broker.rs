//! The broker: its shared state, its listeners and its lifecycle (bind, serve, reload,
//! drain and stop).

use crate::admission::ListenerGate;
use crate::auth::{Authenticator, Authenticators};
use crate::config::{listener_addr, Config, ListenerProtocol};
use crate::connection;
use crate::connection::transport::Socket;
use crate::metrics::Metrics;
use crate::router::Router;
use crate::security::{self, ListenerSecurity};
use crate::session::{Session, Sessions};
use crate::store::{Durability, Store};
use crate::tls::{self, ListenerTls};
use crate::unix_listener::UnixEndpoint;
use anyhow::{Context, Result};
use parking_lot::RwLock;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use tern_proto::{ByteStr, PropertyId, Publish, Will};
use tokio::net::{TcpListener, TcpSocket};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// State shared by every task of the broker.
#[derive(Debug)]
pub struct BrokerState {
    /// The configuration in force; replaced whole on reload.
    config: RwLock<Arc<Config>>,
    pub sessions: Sessions,
    pub router: Router,
    pub metrics: Metrics,
    /// Cancelled to stop the broker; every task watches it.
    pub shutdown: CancellationToken,
    pub started: Instant,
    /// Start time in seconds since 1970, to make generated client ids unique across runs.
    pub started_unix: u64,
    /// Enhanced authentication methods; replaced on reload.
    authenticators: RwLock<Authenticators>,
    /// Each listener's anonymous setting, passwords and ACL; replaced on reload.
    security: RwLock<Vec<Arc<ListenerSecurity>>>,
    /// Each listener's TLS configuration (`None` for plain TCP); replaced on reload.
    tls: RwLock<Vec<Option<Arc<ListenerTls>>>>,
    /// The policy of listeners in platform mode (`policy.rs`), installed by the embedder.
    policy: RwLock<Option<Arc<dyn crate::policy::ListenerPolicy>>>,
    /// The installed policy's reserved root (`$...`), closed to other clients.
    reserved_root: RwLock<Option<Arc<str>>>,
    /// The durable store, when persistence is on.
    pub store: Option<Arc<Store>>,
    /// The admin facade's own state (listeners as bound, reload requests).
    pub(crate) admin: crate::admin::AdminShared,
}

/// Each listener's ACL, for check_retain_source (`None` when it is off).
fn retain_source_acls(
    config: &Config,
    security: &[Arc<ListenerSecurity>],
) -> Option<Vec<Option<Arc<tern_core::acl::Acl>>>> {
    config
        .check_retain_source
        .then(|| security.iter().map(|s| s.acl.clone()).collect())
}

/// The TLS configuration of every listener of `config`, in order.
fn load_tls(config: &Config) -> Result<Vec<Option<Arc<ListenerTls>>>> {
    config
        .effective_listeners()
        .iter()
        .map(|l| {
            if !l.tls.enabled() {
                return Ok(None);
            }
            let tls = tls::build(&l.tls).with_context(|| format!("TLS listener on port {}", l.port))?;
            Ok(Some(Arc::new(tls)))
        })
        .collect()
}

impl BrokerState {
    /// The configuration in force. Read at connect time and by housekeeping, not per message.
    pub fn config(&self) -> Arc<Config> {
        self.config.read().clone()
    }

    /// The security settings of listener `index`.
    pub fn listener_security(&self, index: usize) -> Arc<ListenerSecurity> {
        self.security.read().get(index).cloned().unwrap_or_default()
    }

    /// The TLS configuration of listener `index`, if it is a TLS listener.
    pub fn listener_tls(&self, index: usize) -> Option<Arc<ListenerTls>> {
        self.tls.read().get(index).cloned().flatten()
    }

    /// For a listener in platform mode, the installed listener policy (`Some(None)` when
    /// none is installed: its clients are refused); `None` for other listeners.
    pub fn listener_policy(&self, index: usize) -> Option<Option<Arc<dyn crate::policy::ListenerPolicy>>> {
        let platform = self.config.read().listeners.get(index).is_some_and(|l| l.platform);
        platform.then(|| self.policy.read().clone())
    }

    /// Whether the session of `client_id` belongs to a listener policy's client (checked
    /// for clients of other listeners, and only once a policy is installed).
    pub fn owned_by_policy_client(&self, client_id: &ByteStr) -> bool {
        self.policy.read().is_some()
            && self.sessions.with(|map| {
                map.get(client_id).is_some_and(|session| {
                    let state = session.state.lock();
                    let owner = state.owner.as_deref();
                    owner.is_some_and(|o| o.starts_with(crate::policy::OWNER_PREFIX))
                })
            })
    }

    /// Whether `topic` (a name or filter) is under the installed policy's reserved root,
    /// where only the policy's clients may go. Costs one byte comparison for a topic
    /// that does not start with `$`.
    pub fn is_reserved(&self, topic: &str) -> bool {
        topic.starts_with('$')
            && self
                .reserved_root
                .read()
                .as_deref()
                .is_some_and(|root| topic.starts_with(root))
    }

    /// The enhanced authentication method called `method`, if offered.
    pub fn authenticator(&self, method: &str) -> Option<Arc<dyn Authenticator>> {
        self.authenticators.read().find(method).cloned()
    }

    /// The broker's event stream (connected, disconnected, published, ...).
    pub fn events(&self) -> &crate::events::EventStream {
        &self.metrics.events
    }

    /// Ends a session: its queue and subscriptions go, and a will still waiting for its
    /// delay is published now (the session ending comes first) [MQTT-3.1.3-9]. The
    /// caller takes care of the registry.
    pub fn end_session(&self, session: &Session) {
        let (filters, pending_will): (Vec<ByteStr>, _) = {
            let mut state = session.state.lock();
            state.outbox.clear();
            session.persist(&mut state, true);
            (
                state.subscriptions.drain().map(|(f, _)| f).collect(),
                state.pending_will.take(),
            )
        };
        for filter in filters {
            self.router.unsubscribe(session.id, &filter);
        }
        if let Some(pending) = pending_will {
            self.publish_delayed_will(pending.will, session);
        }
    }

    /// Publishes a will that waited for its delay (due, or its session ended); the
    /// cluster engine, if any, learns that it is done with.
    pub(crate) fn publish_delayed_will(&self, will: Will, origin: &Session) {
        self.publish_will(will, origin);
        if let Some(cluster) = self.router.cluster() {
            cluster.will_changed(&origin.client_id, crate::cluster::WillChange::DelayedPublished);
        }
    }

    /// Drops the will `client_id`'s session holds for its delay, if its connection is
    /// gone: the client connected to another node of the cluster within the delay.
    /// Returns whether one was dropped.
    pub fn cancel_delayed_will(&self, client_id: &str) -> bool {
        let Some(session) = self.sessions.with(|map| map.get(client_id).cloned()) else {
            return false;
        };
        let mut state = session.state.lock();
        state.connection.is_none() && state.pending_will.take().is_some()
    }

    /// Publishes the will of a client whose node of the cluster died with its
    /// connection (this node took it on): stored if retained, routed to this node's
    /// subscribers and forwarded to the other nodes, as a will of this node's would be.
    pub fn publish_will_of_node(&self, publish: &Publish, client_id: &ByteStr) {
        if publish.retain {
            self.router.retain(publish);
        }
        self.events().emit(crate::events::EventKind::Published, || {
            crate::events::published(publish, crate::events::Origin::Will(client_id.clone()))
        });
        self.router.publish(publish, None, &self.metrics);
        if let Some(cluster) = self.router.cluster() {
            cluster.forward(publish, None, None);
        }
    }

    /// Hands a message another node accepted to this node's members of the shared
    /// subscription `$share/{group}/{filter}` (one member gets it), when the cluster
    /// picked this node for it; returns whether a member took it.
    /// (No event is emitted: the message's event comes with its plain routing.)
    pub fn deliver_shared_from_node(&self, publish: &Publish, group: &str, filter: &str) -> bool {
        self.router.publish_to_group(publish, group, filter, &self.metrics)
    }

    /// Publishes the will of session `origin`: stored if retained, then forwarded.
    pub fn publish_will(&self, will: Will, origin: &Session) {
        let mut properties = will.properties;
        properties.remove(PropertyId::WillDelayInterval);
        let publish = Publish {
            dup: false,
            qos: will.qos,
            retain: will.retain,
            topic: will.topic,
            packet_id: 0,
            properties,
            payload: will.payload,
        };
        if publish.retain {
            self.router.retain(&publish);
        }
        self.events().emit(crate::events::EventKind::Published, || {
            crate::events::published(&publish, crate::events::Origin::Will(origin.client_id.clone()))
        });
        self.router.publish(&publish, Some(origin.id), &self.metrics);
        if let Some(cluster) = self.router.cluster() {
            cluster.forward(&publish, None, None);
        }
    }

    /// Routes a message another node of the cluster accepted to this node's subscribers
    /// (it is not forwarded again, and its retained copy comes through
    /// [`BrokerState::retain_from_node`]); returns how many sessions it reached.
    pub fn deliver_from_node(&self, publish: &Publish, node: &Arc<str>) -> usize {
        self.events().emit(crate::events::EventKind::Published, || {
            crate::events::published(publish, crate::events::Origin::Node(node.clone()))
        });
        self.router.publish(publish, None, &self.metrics)
    }

    /// Closes this node's connection of `client_id` (5.0: DISCONNECT 0x8E, its will
    /// published) because the client id connected to another node of the cluster, if it
    /// connected here no later than `connected_by_ms` (ms since 1970): a newer connection
    /// here is not the one the other node took over. Returns whether one was closed.
    pub fn take_over_from_node(&self, client_id: &str, connected_by_ms: u64) -> bool {
        let Some(session) = self.sessions.with(|map| map.get(client_id).cloned()) else {
            return false;
        };
        let info = session.state.lock().connection.as_ref().map(|c| c.info.clone());
        match info {
            Some(info) if info.connected_at_ms <= connected_by_ms => {
                info.kick_for(crate::admin::Kick::TakenOverElsewhere);
                session.wake.notify_one();
                true
            }
            _ => false,
        }
    }

    /// Forgets this node's session `session` of `client_id` if it is offline, without
    /// ending it in the cluster: the client connected to another node, which holds the
    /// session now. No will is published and nothing is said to the cluster engine.
    /// `None` if that session is not here (any more); else whether it was dropped (not:
    /// it is online).
    pub fn drop_session_from_node(&self, client_id: &str, session: u64) -> Option<bool> {
        self.take_session_from_node(client_id, session, false)
            .map(|dropped| dropped.is_some())
    }

    /// As [`Self::drop_session_from_node`], and returns, once dropped, the messages the
    /// cluster fed it that were in flight to its client (for the node that takes it).
    pub fn hand_over_session_from_node(
        &self,
        client_id: &str,
        session: u64,
    ) -> Option<Option<crate::cluster::SessionHandover>> {
        self.take_session_from_node(client_id, session, true)
    }

    /// Drops the session (see [`Self::drop_session_from_node`]); with `hand_over`, what
    /// it had in flight and its unreleased QoS 2 packet ids are returned (empty without).
    fn take_session_from_node(
        &self,
        client_id: &str,
        session: u64,
        hand_over: bool,
    ) -> Option<Option<crate::cluster::SessionHandover>> {
        let dropped = self.sessions.with(|map| {
            let current = map.get(client_id).filter(|s| s.id == session)?;
            if current.state.lock().connection.is_some() {
                return Some(None);
            }
            Some(map.remove(client_id))
        })?;
        let Some(session) = dropped else { return Some(None) };
        // A shared group's queued messages and QoS 1 in flight go back to the group now.
        self.router.hand_off_shared(&session, false, &self.metrics);
        let now = crate::clock::now();
        let (inflight, incoming_qos2, shared_done, filters) = {
            let mut state = session.state.lock();
            let mut inflight = Vec::new();
            let mut shared_done = Vec::new();
            for m in state.outbox.inflight().filter(|_| hand_over) {
                let seq = m.delivery.seq;
                if seq & crate::session::CLUSTER_SEQ == 0 {
                    continue;
                }
                let shared = m.delivery.shared.is_some();
                if shared {
                    shared_done.push(seq);
                }
                inflight.push(crate::cluster::HandedOver {
                    seq: if shared { 0 } else { seq & !crate::session::CLUSTER_SEQ },
                    packet_id: m.packet_id,
                    stage: m.stage,
                    v5: m.delivery.v5,
                    frame: m.delivery.frame.bytes().to_vec(),
                    expires_in: m.delivery.expires_at.map(|at| at.saturating_duration_since(now)),
                });
            }
            state.outbox.clear();
            state.pending_will = None;
            let filters: Vec<ByteStr> = state.subscriptions.drain().map(|(f, _)| f).collect();
            let incoming: Vec<u16> = state.incoming_qos2.iter().copied().filter(|_| hand_over).collect();
            (inflight, incoming, shared_done, filters)
        };
        // A shared group's QoS 2 message in flight is for this client to finish where its
        // session goes: done for the group (no other member gets it).
        for seq in shared_done {
            session.forget_message(seq);
        }
        for filter in filters {
            self.router.unsubscribe(session.id, &filter);
        }
        Some(Some(crate::cluster::SessionHandover {
            inflight,
            incoming_qos2,
        }))
    }

    /// Stores (or with an empty payload, clears) a retained message another node of the
    /// cluster accepted, without routing it.
    pub fn retain_from_node(&self, publish: &Publish) {
        self.router.retain(publish);
    }
}

/// A broker with its listeners bound, ready to run.
pub struct Broker {
    state: Arc<BrokerState>,
    listeners: Vec<(usize, TcpListener)>,
    /// Unix socket listeners (`listener 0 /path`), by their index in the configuration.
    unix: Vec<(usize, UnixEndpoint)>,
    /// The HTTP API on 127.0.0.1:8080 of a broker without configured listeners, when
    /// that port was free.
    http_default: Option<TcpListener>,
    /// Routes an embedder serves on the HTTP listeners under a path prefix of its own.
    http_routes: Option<(&'static str, axum::Router)>,
    /// Routes an embedder serves behind the admin API's key check.
    http_admin_routes: Vec<(&'static str, axum::Router)>,
}

/// Controls a running broker from elsewhere (signal handlers, tests).
#[derive(Clone)]
pub struct BrokerHandle {
    state: Arc<BrokerState>,
}

impl Broker {
    /// Binds every listener of `config`.
    pub async fn bind(config: Config) -> Result<Broker> {
        // Ports are taken first (a port in use fails the start at once) but listened on
        // only once the store is restored: until then a client's connect is refused, and
        // it tries again, rather than waiting unanswered through a long restore.
        let mut bound = Vec::new();
        let mut unix = Vec::new();
        for (index, listener) in config.effective_listeners().iter().enumerate() {
            if let Some(path) = listener.unix_path() {
                unix.push((index, UnixEndpoint::bind(path)?));
                continue;
            }
            let addr = listener_addr(listener)?;
            let socket = if addr.is_ipv4() {
                TcpSocket::new_v4()
            } else {
                TcpSocket::new_v6()
            }
            .with_context(|| format!("cannot open a socket for {addr}"))?;
            socket.set_reuseaddr(true)?;
            if let Some(interface) = &listener.bind_interface {
                socket
                    .bind_device(Some(interface.as_bytes()))
                    .with_context(|| format!("bind_interface {interface}: cannot bind the listener on {addr} to it"))?;
            }
            socket.bind(addr).with_context(|| format!("cannot listen on {addr}"))?;
            bound.push((index, addr, socket));
        }
        let started_unix = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let authenticators = Authenticators::from_file(config.scram_file.as_deref())?;
        let security = security::load(&config)?;
        let tls = load_tls(&config)?;
        let (store, loaded) = if config.persistence && config.durability != Durability::Off {
            let (store, loaded) = Store::open(&config.persistence_location, config.durability)?;
            (Some(store), Some(loaded))
        } else {
            (None, None)
        };
        let router = Router::with_store(store.clone());
        router.set_share_strategy(config.shared_subscription_strategy);
        router.set_delivery_rules(config.upgrade_outgoing_qos, config.queue_qos0_messages);
        router.set_retain_source_check(retain_source_acls(&config, &security));
        let state = Arc::new(BrokerState {
            config: RwLock::new(Arc::new(config)),
            sessions: Sessions::with_store(store.clone()),
            router,
            metrics: Metrics::default(),
            shutdown: CancellationToken::new(),
            started: Instant::now(),
            started_unix,
            authenticators: RwLock::new(authenticators),
            security: RwLock::new(security),
            tls: RwLock::new(tls),
            policy: RwLock::new(None),
            reserved_root: RwLock::new(None),
            store,
            admin: Default::default(),
        });
        if let Some(loaded) = loaded {
            let summary = crate::restore::restore(&state, loaded);
            tracing::info!("{summary} from {}", state.config().persistence_location.display());
            // What the restore read and decoded is freed: give it back now.
            crate::sys::release_free_memory();
        }
        let mut listeners = Vec::new();
        for (index, addr, socket) in bound {
            let listener = socket
                .listen(1024)
                .with_context(|| format!("cannot listen on {addr}"))?;
            listeners.push((index, listener));
        }
        let broker = Broker {
            state,
            listeners,
            unix,
            http_default: None,
            http_routes: None,
            http_admin_routes: Vec::new(),
        };
        broker.name_listeners();
        Ok(broker)
    }

    /// Every listener's address as it is shown: `host:port` (with the port picked for
    /// port 0) or the Unix socket's path, in configuration order.
    pub fn local_endpoints(&self) -> Vec<String> {
        self.indexed_endpoints().into_iter().map(|(_, e)| e).collect()
    }

    /// [`Broker::local_endpoints`] with each listener's index in the configuration.
    fn indexed_endpoints(&self) -> Vec<(usize, String)> {
        let mut endpoints: Vec<(usize, String)> = self
            .listeners
            .iter()
            .filter_map(|(i, l)| Some((*i, l.local_addr().ok()?.to_string())))
            .chain(self.unix.iter().map(|(i, u)| (*i, u.path().display().to_string())))
            .collect();
        endpoints.sort_by_key(|(i, _)| *i);
        endpoints
    }

    /// Also serves the HTTP API on 127.0.0.1:8080, as `tern broker` does when no listener
    /// is configured; a port in use is logged and the broker goes on without it.
    pub async fn with_default_http_api(mut self) -> Broker {
        if self.http_default.is_none() {
            self.http_default = crate::http::bind_default().await;
        }
        self
    }

    /// Serves `routes` on the HTTP listeners for every path under `prefix` (e.g.
    /// `/api/v0002`), beside the admin API and outside its API key check: the routes
    /// authenticate their own requests. Their paths are seen with the prefix taken off.
    pub fn with_http_routes(mut self, prefix: &'static str, routes: axum::Router) -> Broker {
        self.http_routes = Some((prefix, routes));
        self
    }

    /// Serves `routes` under `prefix` (e.g. `/api/v1/platform`) as part of the admin API:
    /// behind its API key check, with its 404 and 405 answers around them.
    pub fn with_admin_http_routes(mut self, prefix: &'static str, routes: axum::Router) -> Broker {
        self.http_admin_routes.push((prefix, routes));
        self
    }

    /// Where the default HTTP API listens (see [`Broker::with_default_http_api`]).
    pub fn default_http_endpoint(&self) -> Option<String> {
        Some(self.http_default.as_ref()?.local_addr().ok()?.to_string())
    }

    /// Gives the metrics each listener's label: its bound address or socket path.
    fn name_listeners(&self) {
        let count = self.state.config().effective_listeners().len();
        let mut labels: Vec<String> = (0..count).map(|i| format!("listener {i}")).collect();
        for (i, l) in &self.listeners {
            if let (Some(label), Ok(addr)) = (labels.get_mut(*i), l.local_addr()) {
                *label = addr.to_string();
            }
        }
        for (i, u) in &self.unix {
            if let Some(label) = labels.get_mut(*i) {
                *label = u.path().display().to_string();
            }
        }
        self.state.metrics.set_listeners(labels);
    }

    /// The addresses actually bound (with the ports picked for port 0).
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.listeners.iter().filter_map(|(_, l)| l.local_addr().ok()).collect()
    }

    pub fn handle(&self) -> BrokerHandle {
        BrokerHandle {
            state: self.state.clone(),
        }
    }

    /// Serves until [`BrokerHandle::shutdown`], then closes every connection (5.0 clients
    /// get DISCONNECT 0x8B, wills are published) and returns.
    pub async fn run(self) -> Result<()> {
        let tracker = TaskTracker::new();
        let background = crate::sys::spawn(self.state.clone());
        // Subscribed to the event stream before the first client can connect.
        let presence = crate::presence::spawn(&self.state);
        crate::admin::Admin::new(self.state.clone())
            .record_listeners(self.indexed_endpoints(), self.default_http_endpoint());
        let mut listeners = self.listeners;
        crate::http::start(
            &self.state,
            &mut listeners,
            self.http_default,
            crate::http::Extra {
                open: self.http_routes,
                admin: self.http_admin_routes,
            },
            &tracker,
        );
        for (index, listener) in listeners {
            tracker.spawn(accept_loop(index, listener, self.state.clone(), tracker.clone()));
        }
        for (index, endpoint) in self.unix {
            let state = self.state.clone();
            tracker.spawn(crate::unix_listener::accept_loop(
                index,
                endpoint,
                state,
                tracker.clone(),
            ));
        }
        self.state.shutdown.cancelled().await;
        // Connections look at the shutdown token when woken (not on every wait): wake
        // them all. One that registers its session after this sees the token cancelled
        // before its loop starts.
        self.state
            .sessions
            .with(|sessions| sessions.values().for_each(|session| session.wake.notify_one()));
        tracker.close();
        if tokio::time::timeout(Duration::from_secs(10), tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!("some connections did not close within 10 s");
        }
        // The connections' last events reach the consumers that act on them (the
        // platform's status messages) while the store is still open.
        self.state.events().finish(Duration::from_secs(5)).await;
        background.abort();
        if let Some(presence) = presence {
            presence.abort();
        }
        if let Some(store) = &self.state.store {
            store.close();
        }
        Ok(())
    }
}

impl BrokerHandle {
    /// Starts a graceful stop.
    pub fn shutdown(&self) {
        self.state.shutdown.cancel();
    }

    /// The admin facade over this broker (what the HTTP API, a console or an embedding
    /// program reads and acts through).
    pub fn admin(&self) -> crate::admin::Admin {
        crate::admin::Admin::new(self.state.clone())
    }

    /// Resolves when the HTTP API asks for a reload, which the caller performs as for SIGHUP.
    pub async fn reload_requested(&self) {
        self.admin().reload_requested().await
    }

    /// Applies a new configuration. Limits apply to connections made from now on;
    /// listeners are kept as they were bound (a change needs a restart).
    pub fn reload(&self, mut new: Config) {
        match security::load(&new) {
            Ok(tables) => {
                self.apply_security(&tables);
                *self.state.security.write() = tables;
            }
            Err(e) => tracing::error!("password and ACL files not reloaded, the previous ones stay: {e:#}"),
        }
        match load_tls(&new) {
            Ok(tls) => *self.state.tls.write() = tls,
            Err(e) => tracing::error!("certificates not reloaded, the previous ones stay: {e:#}"),
        }
        match Authenticators::from_file(new.scram_file.as_deref()) {
            Ok(mut methods) => {
                let mut current = self.state.authenticators.write();
                methods.merge_custom(&current);
                *current = methods;
            }
            Err(e) => tracing::error!("scram_file not reloaded, the previous credentials stay: {e:#}"),
        }
        let mut current = self.state.config.write();
        if new.effective_listeners() != current.effective_listeners() {
            tracing::warn!("listener changes take effect at the next restart");
        }
        // A listener keeps the mount point it started with (mosquitto does not reload
        // mount_point either): its clients' topics must not change meaning.
        for (listener, old) in new.listeners.iter_mut().zip(&current.listeners) {
            listener.mount_point.clone_from(&old.mount_point);
        }
        if new.presence_events != current.presence_events {
            tracing::warn!("presence_events takes effect at the next restart");
        }
        // The platform is set up once, at start, for the domain and quickstart it had.
        if new.platform_domain != current.platform_domain || new.platform_quickstart != current.platform_quickstart {
            tracing::warn!("platform_domain and platform_quickstart take effect at the next restart");
            new.platform_domain.clone_from(&current.platform_domain);
            new.platform_quickstart = current.platform_quickstart;
        }
        let platform = current.platform_domain.is_some() || current.listeners.iter().any(|l| l.platform);
        if current.historian_topics.is_empty() && !new.historian_topics.is_empty() && !platform {
            // The historian runs only if it had lines (or the platform) at start.
            tracing::warn!("historian_topic takes effect at the next restart: the historian was not started");
        }
        if new.historian_postgres != current.historian_postgres {
            tracing::warn!("historian_postgres takes effect at the next restart");
            new.historian_postgres.clone_from(&current.historian_postgres);
        }
        if new.cluster_nats_urls != current.cluster_nats_urls || new.cluster_node_name != current.cluster_node_name {
            tracing::warn!("cluster_nats_urls and cluster_node_name take effect at the next restart");
            new.cluster_nats_urls.clone_from(&current.cluster_nats_urls);
            new.cluster_node_name.clone_from(&current.cluster_node_name);
        }
        self.state.router.set_share_strategy(new.shared_subscription_strategy);
        self.state
            .router
            .set_delivery_rules(new.upgrade_outgoing_qos, new.queue_qos0_messages);
        let acls = retain_source_acls(&new, &self.state.security.read());
        self.state.router.set_retain_source_check(acls);
        *current = Arc::new(new);
        tracing::info!("configuration reloaded");
    }

    /// Gives every session that is under an ACL the reloaded ACL of its listener.
    fn apply_security(&self, tables: &[Arc<ListenerSecurity>]) {
        let sessions: Vec<Arc<Session>> = self.state.sessions.with(|map| map.values().cloned().collect());
        for session in sessions {
            let mut state = session.state.lock();
            let Some(access) = state.access.as_deref_mut() else {
                continue;
            };
            match tables.get(access.listener).and_then(|t| t.acl.clone()) {
                Some(acl) => access.acl = acl,
                None => state.access = None,
            }
        }
    }

    /// Serves one client over a connected Unix stream, as if listener 0 had accepted it:
    /// for in-process transports (embedding, tests, the fuzz target).
    pub fn serve_unix(&self, stream: tokio::net::UnixStream) -> tokio::task::JoinHandle<()> {
        let peer = SocketAddr::from(([127, 0, 0, 1], 0));
        let socket = Socket::unix(stream);
        let slot = crate::admission::Slot::unlisted();
        tokio::spawn(connection::serve(socket, peer, self.state.clone(), (0, slot)))
    }

    /// Offers another enhanced authentication method (or replaces the one of its name).
    pub fn add_authenticator(&self, authenticator: Arc<dyn Authenticator>) {
        self.state.authenticators.write().add(authenticator);
    }

    /// Installs the policy of the listeners in platform mode (`platform true`); until
    /// one is, their clients are refused (server unavailable).
    pub fn set_listener_policy(&self, policy: Arc<dyn crate::policy::ListenerPolicy>) {
        let root = policy.reserved_root().filter(|r| r.starts_with('$')).map(Arc::from);
        *self.state.reserved_root.write() = root;
        *self.state.policy.write() = Some(policy);
    }

    pub fn state(&self) -> &Arc<BrokerState> {
        &self.state
    }

    /// Makes this broker a node of a cluster (`crate::cluster`): from now on what it
    /// accepts is forwarded to `link`, and `link` learns of every subscription, those of
    /// restored sessions included. Call before [`Broker::run`]; a second call is an error.
    pub fn set_cluster(&self, link: Arc<dyn crate::cluster::ClusterLink>) -> Result<()> {
        self.state
            .router
            .set_cluster(link.clone())
            .map_err(|_| anyhow::anyhow!("this broker already has a cluster link"))?;
        let sessions: Vec<Arc<Session>> = self.state.sessions.with(|map| map.values().cloned().collect());
        for session in sessions {
            let filters: Vec<ByteStr> = session.state.lock().subscriptions.keys().cloned().collect();
            for filter in filters {
                match crate::shared::parse_share(&filter) {
                    Some(Ok((group, topic_filter))) => link.share_added(group, topic_filter),
                    _ => link.filter_added(&filter),
                }
            }
        }
        Ok(())
    }
}

async fn accept_loop(index: usize, listener: TcpListener, state: Arc<BrokerState>, tracker: TaskTracker) {
    let gate = ListenerGate::default();
    let mut refused = 0u64;
    loop {
        let accepted = tokio::select! {
            () = state.shutdown.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, peer)) => {
                state.metrics.accepted(index);
                let config = state.config();
                let max_connections = config.listeners.get(index).and_then(|l| l.max_connections);
                match gate.admit(peer.ip(), max_connections, config.max_connection_rate) {
                    Ok(slot) => {
                        let _ = stream.set_nodelay(true);
                        let mut socket = match state.listener_tls(index).map(|tls| tls.session()) {
                            None => Socket::plain(stream),
                            Some(Ok(session)) => Socket::tls(stream, session),
                            Some(Err(e)) => {
                                state.metrics.refused.add(crate::metrics::RefusalReason::Tls);
                                tracing::error!(%peer, "cannot start a TLS session: {e}");
                                continue;
                            }
                        };
                        if let Some(listener) = config.listeners.get(index) {
                            if listener.protocol == ListenerProtocol::WebSockets {
                                let settings = listener.websockets.clone();
                                socket = socket.websocket(settings, peer.ip(), config.max_packet_size());
                            }
                        }
                        tracker.spawn(connection::serve(socket, peer, state.clone(), (index, slot)));
                    }
                    Err(refusal) => {
                        state.metrics.refused.add(match refusal {
                            crate::admission::Refusal::TooManyConnections(_) => {
                                crate::metrics::RefusalReason::ListenerLimit
                            }
                            crate::admission::Refusal::TooFast(_) => crate::metrics::RefusalReason::RateLimit,
                        });
                        refused += 1;
                        if refused.is_power_of_two() {
                            tracing::warn!(%peer, "connection refused: {refusal} ({refused} refused so far)");
                        }
                    }
                }
            }
            Err(e) => {
                // Out of file descriptors and the like: the listener stays, the pause
                // keeps the loop from spinning.
                tracing::warn!("accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}
