//! What the platform does for gateways beyond their topic space: a device a gateway
//! names that the registry does not know yet is registered behind it (in the background,
//! at most [`MAX_PENDING`] at once), and what is refused to a gateway is reported on its
//! `iot-2/type/<t>/id/<d>/notify` topic as JSON (`Request`, `Time`, `Topic`, `Type`, `Id`,
//! `Client`, `RC`, `Message`).
//!
//! Messages for a device being registered are refused until the registry has it (within
//! a second), as the platform drops them while it registers.

use crate::registry::{edit_org, GatewayRef, NewDevice, Registry};
use crate::registry_model::{now_unix, DeviceClass};
use crate::topics::notify_topic;
use parking_lot::Mutex;
use std::collections::HashSet;
use std::sync::Arc;
use tern_broker::admin::Admin;

/// Registrations under way at most, over all gateways.
pub const MAX_PENDING: usize = 128;

/// Return codes in notify messages.
pub mod rc {
    /// The device is being registered behind the gateway; retry shortly.
    pub const REGISTERING: u16 = 202;
    /// The device exists but is not behind this gateway.
    pub const NOT_BEHIND: u16 = 403;
    /// The device's type is unknown, or is a gateway type, so it cannot be registered.
    pub const UNKNOWN_TYPE: u16 = 404;
    /// Too many registrations under way, or the registry refused it.
    pub const UNAVAILABLE: u16 = 503;
}

/// A gateway's request the platform refused, for its notify topic.
pub struct Refused<'a> {
    /// `publish` or `subscribe`.
    pub request: &'static str,
    pub topic: &'a str,
    pub device: (&'a str, &'a str),
    pub rc: u16,
    pub message: &'a str,
}

/// The platform's services for gateways.
#[derive(Debug)]
pub struct GatewayServices {
    admin: Option<Admin>,
    pending: Mutex<HashSet<(String, String, String)>>,
}

impl GatewayServices {
    /// Services that publish notifications through `admin` (none without one).
    pub fn new(admin: Option<Admin>) -> GatewayServices {
        GatewayServices {
            admin,
            pending: Mutex::new(HashSet::new()),
        }
    }

    /// Publishes `refused` on the notify topic of gateway `gateway` of `org`.
    pub fn notify(&self, org: &str, gateway: (&str, &str), refused: &Refused<'_>) {
        let Some(admin) = &self.admin else {
            return;
        };
        let body = serde_json::json!({
            "Request": refused.request,
            "Time": crate::registry_model::iso8601(now_unix()),
            "Topic": refused.topic,
            "Type": refused.device.0,
            "Id": refused.device.1,
            "Client": format!("g:{org}:{}:{}", gateway.0, gateway.1),
            "RC": refused.rc,
            "Message": refused.message,
        });
        let topic = notify_topic(org, gateway.0, gateway.1);
        if let Err(e) = admin.publish_as_broker(&topic, body.to_string().into(), false) {
            tracing::warn!("gateway notification on {topic} not published: {e}");
        }
    }

    /// What to do about device `type_id`/`device_id`, unknown to the registry, that gateway
    /// `gateway` named: starts its registration behind the gateway if it can (the answer
    /// is then [`rc::REGISTERING`]), or says why not.
    pub fn register(
        self: &Arc<Self>,
        registry: &Arc<Registry>,
        org: &str,
        gateway: (&str, &str),
        (type_id, device_id): (&str, &str),
    ) -> (u16, &'static str) {
        match registry.device_type(org, type_id) {
            Some(t) if t.class_id == DeviceClass::Device => {}
            Some(_) => {
                return (
                    rc::UNKNOWN_TYPE,
                    "a gateway type's devices are not registered by gateways",
                )
            }
            None => {
                return (
                    rc::UNKNOWN_TYPE,
                    "no such device type: devices of unknown types are not registered",
                )
            }
        }
        let key = (org.to_string(), type_id.to_string(), device_id.to_string());
        {
            let mut pending = self.pending.lock();
            if pending.contains(&key) {
                return (rc::REGISTERING, "the device is being registered behind this gateway");
            }
            if pending.len() >= MAX_PENDING {
                return (rc::UNAVAILABLE, "too many devices being registered: retry later");
            }
            pending.insert(key.clone());
        }
        let (services, registry) = (self.clone(), registry.clone());
        let behind = GatewayRef {
            type_id: gateway.0.to_string(),
            device_id: gateway.1.to_string(),
        };
        let unstarted = key.clone();
        let started = tokio::runtime::Handle::try_current().map(|runtime| {
            runtime.spawn_blocking(move || {
                let (org, type_id, device_id) = &key;
                let added = edit_org(registry.data_dir(), org, |o| {
                    o.add_device(NewDevice {
                        type_id: type_id.clone(),
                        device_id: device_id.clone(),
                        gateway: Some(behind),
                        ..NewDevice::default()
                    })
                });
                match added {
                    Ok(_) => {
                        tracing::info!("platform: device {type_id}/{device_id} of {org} registered by its gateway")
                    }
                    Err(e) => tracing::warn!("platform: device {type_id}/{device_id} of {org} not registered: {e}"),
                }
                // In force now, not at the next poll.
                registry.reload_if_changed();
                services.pending.lock().remove(&key);
            })
        });
        match started {
            Ok(_) => (
                rc::REGISTERING,
                "the device is being registered behind this gateway: retry shortly",
            ),
            Err(_) => {
                self.pending.lock().remove(&unstarted);
                (rc::UNAVAILABLE, "registration is not available here")
            }
        }
    }
}
