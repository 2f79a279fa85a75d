//! The platform as the broker's listener policy (`tern_broker::policy`): who a client of
//! a listener in platform mode is (its client id and credentials checked against the
//! registry), and what it may publish and subscribe to under which broker names (its
//! topic space, [`crate::topics`]).
//!
//! Refusals at CONNECT, as the platform's SDKs expect them:
//! - a client id that is not a platform one: 2 (5.0: 0x85);
//! - a wrong user name for the class, an unknown device or key, a wrong token: 4 (0x86);
//! - an unknown organization, a key of another organization, plain TCP where the
//!   organization requires TLS, a `d:` id for a gateway or `g:` for a device, a TLS
//!   name (`<org>.messaging.<domain>`) of another organization: 5 (0x87);
//! - too many first-time token checks this second: 3 (0x88), try again;
//! - the organization's connections or connection rate at their quota: 3 (0x97 / 0x9F).
//!
//! Every client's retain flags are ignored, a payload over the organization's limit
//! (131,072 bytes by default) ends the connection, and a device's messages are limited to
//! its organization's rate (`policy_quota`). Gateways act for the devices behind them,
//! and have unknown ones registered (`policy_gateway`). With `platform_quickstart` the
//! open `quickstart` organization is served without registry or credentials.

use crate::identity::{ClientId, Credentials, IdentityError, Refusal, QUICKSTART};
use crate::policy_gateway::{rc as gateway_rc, GatewayServices, Refused};
use crate::policy_quota::{ConnectionSlot, OrgQuotas, RateLimit};
use crate::registry::{AuthRefusal, OrgSettings, Registry, RegistryError, POLL_INTERVAL};
use crate::registry_model::{DeviceClass, Role};
use crate::topics::{AppRights, Mapped, TopicSpace};
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;
use tern_broker::policy::{ClientPolicy, ConnectRequest, DeliveryFilter, ListenerPolicy, PolicyRefusal, RefusalKind};
use tern_broker::topic_map::TopicMap;
use tern_broker::BrokerHandle;
use tern_proto::ByteStr;

/// Where every organization's topics are inside the broker: `$iot/`.
const RESERVED_ROOT: &str = "$iot/";

/// The platform's listener policy over a registry.
#[derive(Debug)]
pub struct Platform {
    registry: Arc<Registry>,
    quotas: Arc<OrgQuotas>,
    gateways: Arc<GatewayServices>,
    /// `platform_domain`: a TLS name `<org>.messaging.<domain>` must name the client's org.
    domain: Option<String>,
    /// `platform_quickstart`: the open `quickstart` organization is served.
    quickstart: bool,
    /// Where devices' management messages and connects go (the device management task).
    dm: Option<crate::dm_task::Inbox>,
}

/// The `quickstart` organization's settings: plain TCP, default limits, a device may
/// publish one message a second.
fn quickstart_settings() -> OrgSettings {
    let mut settings = OrgSettings {
        allow_plain: true,
        ..OrgSettings::default()
    };
    settings.quotas.device_messages_per_second = 1;
    settings
}

impl Platform {
    pub fn new(registry: Arc<Registry>, domain: Option<String>) -> Platform {
        Platform {
            registry,
            quotas: Arc::default(),
            gateways: Arc::new(GatewayServices::new(None)),
            domain,
            quickstart: false,
            dm: None,
        }
    }

    /// The platform handing devices' management messages to `inbox`.
    pub fn with_dm(mut self, inbox: crate::dm_task::Inbox) -> Platform {
        self.dm = Some(inbox);
        self
    }

    /// The platform serving the open `quickstart` organization too (no credentials,
    /// plain TCP, devices publish events only, applications read only).
    pub fn with_quickstart(mut self, on: bool) -> Platform {
        self.quickstart = on;
        self
    }

    /// The platform publishing its gateway notifications through `admin`.
    pub fn with_admin(mut self, admin: tern_broker::admin::Admin) -> Platform {
        self.gateways = Arc::new(GatewayServices::new(Some(admin)));
        self
    }

    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    fn check(&self, request: &ConnectRequest) -> Result<PlatformClient, PolicyRefusal> {
        let client = ClientId::parse(&request.client_id).map_err(refusal)?;
        let org_id = client.org();
        if let Some(named) = self.sni_org(request.server_name.as_deref()) {
            if named != org_id {
                return Err(not_authorized(format!(
                    "connected to organization {named:?}'s endpoint with a client id of {org_id:?}"
                )));
            }
        }
        let credentials = client
            .credentials(request.username.as_deref(), request.password.as_deref())
            .map_err(refusal)?;
        let settings = self.settings(&client, request.secure)?;
        let (rights, gateway) = self.verify(&client, credentials, request)?;
        let space = TopicSpace::of(&client, rights);
        let delivery = match space.dm_prefixes() {
            Some((dm_broker, dm_client)) => {
                TopicMap::replace_each(&[(space.broker_prefix(), space.client_prefix()), (&dm_broker, dm_client)])
            }
            None => TopicMap::replace(space.broker_prefix(), space.client_prefix()),
        }
        .map_err(|e| unavailable(format!("topic space of {}: {e}", request.client_id)))?;
        let quotas = &settings.quotas;
        let (rate, max_subscriptions) = match client {
            ClientId::Device { gateway: false, .. } => (
                RateLimit::per_second(quotas.device_messages_per_second).map(parking_lot::Mutex::new),
                quotas.subscriptions_per_device,
            ),
            ClientId::Device { .. } => (None, quotas.subscriptions_per_device),
            ClientId::Application { .. } => (None, quotas.subscriptions_per_application),
        };
        // Connections of a scalable application without an instance id all send the same
        // client id: each gets a session of its own (and a clean one), so that they share
        // the application's messages rather than take each other over.
        let session_id = matches!(
            client,
            ClientId::Application {
                scalable: true,
                instance: None,
                ..
            }
        )
        .then(|| shared_session_id(&request.client_id));
        let slot = self.quotas.admit(org_id, quotas)?;
        // Only devices and gateways send management messages (an application's topic
        // space has none), so only their publishes are offered to the task.
        let dm = self
            .dm
            .clone()
            .filter(|_| org_id != QUICKSTART && matches!(client, ClientId::Device { .. }));
        if let (Some(inbox), ClientId::Device { type_id, device_id, .. }) = (&dm, &client) {
            inbox.connected(org_id, type_id, device_id);
        }
        Ok(PlatformClient {
            dm,
            last_publish: parking_lot::Mutex::new(None),
            _slot: slot,
            gateways: self.gateways.clone(),
            session_id,
            registry: self.registry.clone(),
            org: org_id.to_string(),
            user: request.username.clone().filter(|_| org_id != QUICKSTART),
            space,
            delivery,
            gateway,
            max_payload: settings.max_payload as usize,
            no_subscriptions: org_id == QUICKSTART && client.class() == crate::identity::Class::Device,
            rate,
            dm_rate: parking_lot::Mutex::new(RateLimit::per_second(DM_PER_SECOND)),
            max_subscriptions: max_subscriptions as usize,
        })
    }

    /// The settings of the client's organization, if it may connect to it at all (and
    /// over plain TCP, when `secure` is false).
    fn settings(&self, client: &ClientId, secure: bool) -> Result<OrgSettings, PolicyRefusal> {
        let org_id = client.org();
        let settings = match self.registry.org(org_id) {
            Some(org) => org.settings.clone(),
            None if org_id == QUICKSTART && self.quickstart => quickstart_settings(),
            None if org_id == QUICKSTART => {
                return Err(not_authorized("the quickstart organization is not enabled".into()))
            }
            None => return Err(not_authorized(format!("no organization {org_id:?}"))),
        };
        if org_id == QUICKSTART && client.class() == crate::identity::Class::Gateway {
            return Err(not_authorized("the quickstart organization has no gateways".into()));
        }
        if !secure && !settings.allow_plain {
            return Err(not_authorized(format!(
                "organization {org_id:?} requires TLS: connect to a TLS listener, or allow plain connections with `tern iot org set {org_id} --allow-plain true`"
            )));
        }
        Ok(settings)
    }

    /// Checks the token of a device, gateway or API key: what an application may publish,
    /// and a gateway's own type and id.
    fn verify(
        &self,
        client: &ClientId,
        credentials: Credentials<'_>,
        request: &ConnectRequest,
    ) -> Result<(AppRights, Option<(String, String)>), PolicyRefusal> {
        let org_id = client.org();
        let password = request.password.as_deref().unwrap_or_default();
        Ok(match (client, credentials) {
            (_, Credentials::Quickstart) => (AppRights::READ_ONLY, None),
            (
                ClientId::Device {
                    gateway,
                    type_id,
                    device_id,
                    ..
                },
                Credentials::DeviceToken,
            ) => {
                let (_, class) = self
                    .registry
                    .verify_device_token(org_id, type_id, device_id, password)
                    .map_err(|r| auth_refusal(r, &request.client_id))?;
                match (class, *gateway) {
                    (DeviceClass::Gateway, true) => {}
                    (DeviceClass::Device, false) => {}
                    (DeviceClass::Gateway, false) => {
                        return Err(not_authorized("a gateway connects with a g: client id".into()))
                    }
                    (DeviceClass::Device, true) => {
                        return Err(not_authorized(format!("type {type_id:?} is not a gateway type")))
                    }
                }
                (
                    AppRights::READ_ONLY,
                    gateway.then(|| (type_id.clone(), device_id.clone())),
                )
            }
            (_, Credentials::ApiKey(key)) => {
                let key = self
                    .registry
                    .verify_key_token(key, password)
                    .map_err(|r| auth_refusal(r, key))?;
                (rights_of(key.role), None)
            }
            (ClientId::Application { .. }, Credentials::DeviceToken) => {
                return Err(bad_credentials("applications authenticate with an API key".into()))
            }
        })
    }

    /// The organization a TLS name `<org>.messaging.<domain>` names, if it is one.
    fn sni_org<'n>(&self, server_name: Option<&'n str>) -> Option<&'n str> {
        let domain = self.domain.as_deref()?;
        let name = server_name?;
        let head = name.strip_suffix(domain)?.strip_suffix(".messaging.")?;
        (!head.is_empty() && !head.contains('.')).then_some(head)
    }
}

impl ListenerPolicy for Platform {
    fn authenticate(&self, request: &ConnectRequest) -> Result<Arc<dyn ClientPolicy>, PolicyRefusal> {
        Ok(Arc::new(self.check(request)?))
    }

    fn reserved_root(&self) -> Option<&str> {
        Some(RESERVED_ROOT)
    }
}

/// What [`start`] started that the REST API serves.
#[derive(Debug, Clone)]
pub struct Started {
    pub registry: Arc<Registry>,
    pub dm: Arc<crate::dm::Dm>,
    /// The historian ([`crate::historian`]).
    pub historian: Arc<crate::historian::Historian>,
    /// Analytics rules ([`crate::rules`]).
    pub rules: Arc<crate::rules::Rules>,
}

/// Starts the platform for a broker whose configuration has listeners in platform mode:
/// opens the registry of `data_dir`, installs the policy for those listeners, and starts
/// the registry's reload poll (changes made by `tern iot` are in force within a second),
/// the status publisher and the device management task. Call before the broker runs.
pub fn start(handle: &BrokerHandle, data_dir: &Path, domain: Option<String>) -> Result<Started, RegistryError> {
    let registry = Arc::new(Registry::open(data_dir)?);
    let quickstart = handle.state().config().platform_quickstart;
    let dm = Arc::new(crate::dm::Dm::open(data_dir));
    let (inbox, receiver) = crate::dm_task::inbox();
    let platform = Platform::new(registry.clone(), domain)
        .with_admin(handle.admin())
        .with_quickstart(quickstart)
        .with_dm(inbox);
    handle.set_listener_policy(Arc::new(platform));
    crate::status_task::spawn(handle, registry.clone());
    crate::dm_task::spawn(handle, registry.clone(), dm.clone(), receiver);
    let historian = crate::historian_task::start(handle, data_dir);
    let rules = Arc::new(crate::rules::Rules::new(data_dir));
    crate::rules_task::spawn(handle, rules.clone());
    let (polled, stop) = (registry.clone(), handle.state().shutdown.clone());
    tokio::spawn(async move {
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(POLL_INTERVAL) => {}
            }
            let registry = polled.clone();
            let Ok(reload) = tokio::task::spawn_blocking(move || registry.reload_if_changed()).await else {
                continue;
            };
            for org in &reload.changed {
                tracing::info!("platform registry: organization {org} reloaded");
            }
            for e in &reload.errors {
                tracing::error!("platform registry: {e} (the previous version stays in force)");
            }
        }
    });
    Ok(Started {
        registry,
        dm,
        rules,
        historian,
    })
}

/// What an API key's role lets an application publish.
pub fn rights_of(role: Role) -> AppRights {
    match role {
        Role::StandardApp | Role::Admin => AppRights::ALL,
        Role::ReadOnly => AppRights::READ_ONLY,
        Role::DeviceOperator => AppRights {
            publish_events: false,
            publish_commands: true,
        },
    }
}

/// What follows the client id in the broker's session id of a connection of a scalable
/// application without instance id: `A:<org>:<appId>` + `#` + a number. `#` is in no
/// platform id, so no client can name such a session.
pub const SHARED_SESSION_MARK: char = '#';

/// The client id a status message or log names for a broker session id.
pub fn client_id_of_session(session_id: &str) -> &str {
    session_id.split(SHARED_SESSION_MARK).next().unwrap_or(session_id)
}

fn shared_session_id(client_id: &str) -> String {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("{client_id}{SHARED_SESSION_MARK}{n}")
}

/// One connected platform client.
#[derive(Debug)]
pub struct PlatformClient {
    /// The broker's session id, when not the client id (see [`SHARED_SESSION_MARK`]).
    session_id: Option<String>,
    registry: Arc<Registry>,
    org: String,
    user: Option<String>,
    space: TopicSpace,
    delivery: TopicMap,
    /// A gateway's own type and id.
    gateway: Option<(String, String)>,
    max_payload: usize,
    /// A device's message rate (`quotas.deviceMessagesPerSecond`).
    rate: Option<parking_lot::Mutex<RateLimit>>,
    /// The rate of device management messages ([`DM_PER_SECOND`]), counted apart from
    /// events so that the SDK's ten manage requests at connect do not eat the event quota.
    dm_rate: parking_lot::Mutex<Option<RateLimit>>,
    /// Counts the connection in its organization's until the connection drops it.
    _slot: ConnectionSlot,
    /// A quickstart device: no commands, so no subscriptions.
    no_subscriptions: bool,
    /// Where a device's or gateway's management messages go (`None` for applications and in quickstart).
    dm: Option<crate::dm_task::Inbox>,
    /// The last topic a device published and its broker name: a device publishes the
    /// same few event topics over and over, and this spares mapping each one again.
    last_publish: parking_lot::Mutex<Option<(ByteStr, ByteStr)>>,
    gateways: Arc<GatewayServices>,
    /// `quotas.subscriptionsPerDevice` or `...PerApplication`; 0: no limit.
    max_subscriptions: usize,
}

/// Device management messages a connection may send per second (bursts of a second's
/// worth): room for the SDK's ten manage requests at connect and the answers of a busy
/// gateway, while a flood of them is refused like events over their quota.
pub const DM_PER_SECOND: u32 = 50;

/// Whether gateway `gateway` (type, id) of `org` may act for device `type_id`/`device_id`:
/// itself, or a device the registry has behind it.
fn behind(registry: &Registry, org: &str, (gw_type, gw_id): (&str, &str), type_id: &str, device_id: &str) -> bool {
    if type_id == gw_type && device_id == gw_id {
        return true;
    }
    registry
        .device(org, type_id, device_id)
        .and_then(|d| d.gateway.clone())
        .is_some_and(|g| g.type_id == gw_type && g.device_id == gw_id)
}

/// What a gateway's session may receive: messages about itself and the devices behind it
/// (its `+` subscriptions match the whole organization).
#[derive(Debug)]
struct GatewayFilter {
    registry: Arc<Registry>,
    org: String,
    space: TopicSpace,
    gateway: (String, String),
}

impl DeliveryFilter for GatewayFilter {
    fn may_receive(&self, topic: &str) -> bool {
        let gateway = (self.gateway.0.as_str(), self.gateway.1.as_str());
        self.space
            .may_receive(topic, |t, d| behind(&self.registry, &self.org, gateway, t, d))
    }
}

impl PlatformClient {
    fn behind(&self, type_id: &str, device_id: &str) -> bool {
        match &self.gateway {
            Some((t, d)) => behind(&self.registry, &self.org, (t, d), type_id, device_id),
            None => false,
        }
    }

    /// The mapped topic, unless it is a gateway's about a device not behind it: then the
    /// gateway is told on its notify topic, and an unknown device is registered behind it.
    fn allowed(&self, request: &'static str, topic: &str, mapped: Mapped) -> Result<ByteStr, &'static str> {
        let (Some((gw_type, gw_id)), Some((t, d))) = (&self.gateway, &mapped.device) else {
            return Ok(ByteStr::from(mapped.topic));
        };
        if self.behind(t, d) {
            return Ok(ByteStr::from(mapped.topic));
        }
        let gateway = (gw_type.as_str(), gw_id.as_str());
        let (rc, message) = match self.registry.device(&self.org, t, d) {
            Some(_) => (gateway_rc::NOT_BEHIND, "the device is not behind this gateway"),
            None => self.gateways.register(&self.registry, &self.org, gateway, (t, d)),
        };
        let refused = Refused {
            request,
            topic,
            device: (t, d),
            rc,
            message,
        };
        self.gateways.notify(&self.org, gateway, &refused);
        Err(message)
    }
}

impl ClientPolicy for PlatformClient {
    fn user(&self) -> Option<&str> {
        self.user.as_deref()
    }

    fn publish_topic(&self, topic: &str) -> Result<ByteStr, &'static str> {
        if self.gateway.is_some() {
            // Whether a device is behind the gateway can change: checked every time.
            return self.allowed("publish", topic, self.space.publish(topic).map_err(|r| r.why)?);
        }
        let mut last = self.last_publish.lock();
        if let Some((client, broker)) = last.as_ref().filter(|(client, _)| client.as_str() == topic) {
            debug_assert_eq!(client.as_str(), topic);
            return Ok(broker.clone());
        }
        let broker = self.allowed("publish", topic, self.space.publish(topic).map_err(|r| r.why)?)?;
        *last = Some((ByteStr::from(topic), broker.clone()));
        Ok(broker)
    }

    fn subscribe_filter(&self, filter: &str) -> Result<ByteStr, &'static str> {
        if self.no_subscriptions {
            return Err("the quickstart organization sends devices no commands");
        }
        self.allowed("subscribe", filter, self.space.subscribe(filter).map_err(|r| r.why)?)
    }

    fn delivery_map(&self) -> Option<TopicMap> {
        Some(self.delivery.clone())
    }

    fn delivery_filter(&self) -> Option<Arc<dyn DeliveryFilter>> {
        let gateway = self.gateway.clone()?;
        Some(Arc::new(GatewayFilter {
            registry: self.registry.clone(),
            org: self.org.clone(),
            space: self.space.clone(),
            gateway,
        }))
    }

    fn ignores_retain(&self) -> bool {
        true
    }

    fn max_payload(&self) -> Option<usize> {
        Some(self.max_payload)
    }

    fn take_publish(&self, publish: &tern_proto::Publish) -> bool {
        let gateway = self.gateway.as_ref().map(|(t, d)| (t.as_str(), d.as_str()));
        self.dm.as_ref().is_some_and(|inbox| inbox.offer(publish, gateway))
    }

    fn over_rate(&self, topic: &str) -> bool {
        // Device management messages (the SDK sends ten manage requests as it connects)
        // are not events: the quota counts events.
        if topic.starts_with(crate::topics::DM_UP) {
            return self.dm_rate.lock().as_mut().is_some_and(|r| !r.take(Instant::now()));
        }
        self.rate.as_ref().is_some_and(|r| !r.lock().take(Instant::now()))
    }

    fn max_subscriptions(&self) -> Option<usize> {
        Some(self.max_subscriptions)
    }

    fn session_client_id(&self) -> Option<String> {
        self.session_id.clone()
    }

    fn forces_clean_session(&self) -> bool {
        self.session_id.is_some()
    }
}

fn refusal(e: IdentityError) -> PolicyRefusal {
    let kind = match e.refusal {
        Refusal::BadClientId => RefusalKind::BadClientId,
        Refusal::BadCredentials => RefusalKind::BadCredentials,
        Refusal::NotAuthorized => RefusalKind::NotAuthorized,
    };
    PolicyRefusal { kind, why: e.why }
}

fn auth_refusal(r: AuthRefusal, who: &str) -> PolicyRefusal {
    match r {
        AuthRefusal::UnknownOrg => not_authorized("no such organization".into()),
        AuthRefusal::UnknownIdentity => bad_credentials(format!("{who} is not registered")),
        AuthRefusal::WrongToken => bad_credentials(format!("wrong token for {who}")),
        AuthRefusal::Throttled => unavailable("too many token checks this second: try again".into()),
    }
}

fn not_authorized(why: String) -> PolicyRefusal {
    PolicyRefusal {
        kind: RefusalKind::NotAuthorized,
        why,
    }
}

fn bad_credentials(why: String) -> PolicyRefusal {
    PolicyRefusal {
        kind: RefusalKind::BadCredentials,
        why,
    }
}

fn unavailable(why: String) -> PolicyRefusal {
    PolicyRefusal {
        kind: RefusalKind::Unavailable,
        why,
    }
}

#[cfg(test)]
#[path = "policy_tests.rs"]
mod tests;
