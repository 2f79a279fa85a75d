//! The device management task: the one owner of the running broker's side of
//! [`crate::dm::Dm`]. Devices' management messages (`iotdevice-1/...`) reach it through
//! an [`Inbox`] that the platform's client policy fills as the broker takes those
//! PUBLISHes ([`tern_broker::policy::ClientPolicy::take_publish`]), so none is lost to a
//! slow consumer and other traffic costs nothing; device connects arrive the same way
//! (for the reboot rule: a reboot is done when the device manages itself again from a
//! later connection). Every second it lets the state machine time out requests and mark
//! dormant devices, and writes what changed to the data directory; it writes once more
//! when the broker stops. Every few seconds it drops the state of devices and
//! organizations deleted from the registry.
//!
//! On a node of a cluster ([`Dm::is_shared`], `dm_share`) it writes and reads back its
//! files every [`SYNC`], and holds back a device's answer to a request it does not know
//! yet (made on another node, still on its way through the shared files), with the
//! device's later messages, until the request has arrived or [`HOLD`] has passed.
//!
//! What the state machine answers ([`Effects`]) is carried out by [`apply`]: messages to
//! devices are published at QoS 1 under `$iot/<org>/iotdm-1/type/<t>/id/<d>/...`, so a
//! device with a persistent session gets them when it comes back, and deviceInfo changes
//! are merged into the registry off the runtime.

use crate::dm::{Dm, Effects};
use crate::registry::{self, Registry};
use crate::topics::{dm_down_topic, dm_up_of};
use bytes::Bytes;
use serde_json::Value;
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tern_broker::admin::Admin;
use tern_broker::BrokerHandle;
use tern_proto::{Publish, QoS};
use tokio::sync::mpsc;

/// Messages waiting for the task at most; beyond, a device's message is dropped (and
/// its request, if any, times out) rather than memory growing.
const INBOX_CAPACITY: usize = 4096;
/// How often requests are timed out, dormancy checked and changes written.
const TICK: Duration = Duration::from_secs(1);
/// Every how many ticks the state of devices deleted from the registry is dropped.
const FORGET_EVERY: u64 = 5;
/// How often a node of a cluster writes its changes and reads back the other nodes'.
const SYNC: Duration = Duration::from_millis(250);
/// How long a device's answer to a request not known here waits for it (a cluster).
const HOLD: Duration = Duration::from_secs(5);
/// Messages held back at most (beyond, they are handled at once).
const MAX_HELD: usize = 4096;
/// Messages of one device held back at most (beyond, its next ones are handled at once).
const MAX_HELD_PER_DEVICE: usize = 64;

/// What the policy hands the task.
#[derive(Debug)]
pub(crate) enum Inbound {
    /// A device's (or a gateway's for it) message under `iotdevice-1/`.
    Message {
        org: String,
        type_id: String,
        device_id: String,
        /// A gateway sent it for a device behind it.
        via_gateway: bool,
        tail: String,
        payload: Bytes,
    },
    /// A device has been let in.
    Connected {
        org: String,
        type_id: String,
        device_id: String,
    },
}

impl Inbound {
    /// The device it is about: (org, type, id).
    fn device(&self) -> DeviceOf {
        match self {
            Inbound::Message {
                org,
                type_id,
                device_id,
                ..
            }
            | Inbound::Connected {
                org,
                type_id,
                device_id,
            } => (org.clone(), type_id.clone(), device_id.clone()),
        }
    }

    /// The reqId it answers, if it is a device's answer to a request.
    fn answers(&self) -> Option<String> {
        match self {
            Inbound::Message { tail, payload, .. } => Dm::answer_req_id(tail, payload),
            Inbound::Connected { .. } => None,
        }
    }
}

/// A device: (org, type, id).
type DeviceOf = (String, String, String);
/// A held message: when it came (and by the clock, in ms), the reqId it answers, the
/// message.
type HeldMessage = (Instant, u64, Option<String>, Inbound);

/// Devices' messages held back on a node of a cluster, in order per device.
#[derive(Debug, Default)]
pub(crate) struct Held {
    queues: HashMap<DeviceOf, VecDeque<HeldMessage>>,
    count: usize,
}

/// Whether a message (of `device`, answering `answers`) can be handled now: it is not an
/// answer, or the device's request known here waits for it.
fn ready(dm: &Dm, device: &DeviceOf, answers: Option<&str>) -> bool {
    answers.is_none_or(|req_id| dm.awaits(&device.0, &device.1, &device.2, req_id))
}

impl Held {
    /// Holds `inbound` back if it must wait, or a message of its device waits already;
    /// otherwise gives it back.
    pub(crate) fn keep(&mut self, dm: &Dm, inbound: Inbound) -> Option<Inbound> {
        if !dm.is_shared() || self.count >= MAX_HELD {
            return Some(inbound);
        }
        let device = inbound.device();
        let answers = inbound.answers();
        match self.queues.get(&device) {
            None if ready(dm, &device, answers.as_deref()) => return Some(inbound),
            None => tracing::debug!(
                org = device.0,
                device = %format!("{}/{}", device.1, device.2),
                "device management: an answer held until its request arrives from another node"
            ),
            Some(queue) if queue.len() >= MAX_HELD_PER_DEVICE => return Some(inbound),
            Some(_) => {}
        }
        let queue = self.queues.entry(device).or_default();
        queue.push_back((Instant::now(), now_ms(), answers, inbound));
        self.count += 1;
        None
    }

    /// The held messages that can be handled now (their request has arrived, or they
    /// waited [`HOLD`]), in order per device, each with when it came (ms): it is handled
    /// as of then.
    pub(crate) fn release(&mut self, dm: &Dm) -> Vec<(u64, Inbound)> {
        let mut out = Vec::new();
        for (device, queue) in self.queues.iter_mut() {
            while let Some((at, _, answers, _)) = queue.front() {
                if at.elapsed() < HOLD && !ready(dm, device, answers.as_deref()) {
                    break;
                }
                if let Some((_, at_ms, _, inbound)) = queue.pop_front() {
                    out.push((at_ms, inbound));
                }
            }
        }
        self.queues.retain(|_, q| !q.is_empty());
        self.count -= out.len().min(self.count);
        out
    }
}

/// The policy's end of the task's queue.
#[derive(Debug, Clone)]
pub struct Inbox(mpsc::Sender<Inbound>);

impl Inbox {
    /// Takes a PUBLISH if it is a device management message (`$iot/<org>/iotdevice-1/...`);
    /// `gateway` is the (type, id) of the sender when it is a gateway.
    pub fn offer(&self, publish: &Publish, gateway: Option<(&str, &str)>) -> bool {
        let Some((org, t, d, tail)) = dm_up_of(&publish.topic) else {
            return false;
        };
        let message = Inbound::Message {
            org: org.to_string(),
            type_id: t.to_string(),
            device_id: d.to_string(),
            via_gateway: gateway.is_some_and(|g| g != (t, d)),
            tail: tail.to_string(),
            payload: publish.payload.clone(),
        };
        if self.0.try_send(message).is_err() {
            tracing::warn!(org, device = %format!("{t}/{d}"), "device management message dropped: the task is behind");
        }
        true
    }

    /// Says device `type_id`/`device_id` of `org` has connected.
    pub fn connected(&self, org: &str, type_id: &str, device_id: &str) {
        let _ = self.0.try_send(Inbound::Connected {
            org: org.to_string(),
            type_id: type_id.to_string(),
            device_id: device_id.to_string(),
        });
    }
}

/// A queue for the policy and the task.
pub fn inbox() -> (Inbox, InboxReceiver) {
    let (tx, rx) = mpsc::channel(INBOX_CAPACITY);
    (Inbox(tx), InboxReceiver(rx))
}

/// The task's end of the queue.
#[derive(Debug)]
pub struct InboxReceiver(mpsc::Receiver<Inbound>);

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Starts the task; it runs until the broker stops.
pub fn spawn(handle: &BrokerHandle, registry: Arc<Registry>, dm: Arc<Dm>, inbox: InboxReceiver) {
    let admin = handle.admin();
    let stop = handle.state().shutdown.clone();
    let mut rx = inbox.0;
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(TICK);
        let mut sync = tokio::time::interval(SYNC);
        sync.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut held = Held::default();
        let mut lacking = HashSet::new();
        let mut ticks = 0u64;
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let take = |(now, inbound): (u64, Inbound)| match inbound {
            Inbound::Message {
                org,
                type_id,
                device_id,
                via_gateway,
                tail,
                payload,
            } => {
                let effects = dm.on_device_from(now, &org, &type_id, &device_id, via_gateway, &tail, &payload);
                apply(&admin, &registry, &dm, effects);
            }
            Inbound::Connected {
                org,
                type_id,
                device_id,
            } => dm.on_connected_at(now, &org, &type_id, &device_id),
        };
        loop {
            tokio::select! {
                () = stop.cancelled() => break,
                inbound = rx.recv() => match inbound {
                    Some(inbound) => {
                        if let Some(inbound) = held.keep(&dm, inbound) {
                            take((now_ms(), inbound));
                        }
                    }
                    None => break,
                },
                _ = sync.tick(), if dm.is_shared() => {
                    // Other nodes' changes read back first: a held answer may now be known.
                    flush(&dm, false).await;
                    held.release(&dm).into_iter().for_each(&take);
                }
                _ = tick.tick() => {
                    ticks += 1;
                    if ticks % FORGET_EVERY == 0 {
                        // Devices and organizations deleted from the registry.
                        forget_removed(&dm, &registry, &mut lacking);
                    }
                    if dm.is_shared() {
                        dm.complete_moved_restarts(now_ms());
                    }
                    let effects = dm.tick(now_ms());
                    apply(&admin, &registry, &dm, effects);
                    flush(&dm, false).await;
                    held.release(&dm).into_iter().for_each(&take);
                }
            }
        }
        flush(&dm, true).await;
    });
}

/// Drops the state of devices and organizations deleted from the registry. On a cluster
/// only those the registry lacked at the previous pass too (`lacking`, updated): this
/// node's registry may lag another node's device management by a second (a device made
/// and managed there at once), and what is dropped here is dropped on every node.
fn forget_removed(dm: &Dm, registry: &Registry, lacking: &mut HashSet<DeviceOf>) {
    if !dm.is_shared() {
        dm.forget_removed(
            |org| registry.org(org).is_some(),
            |org, t, d| registry.device(org, t, d).is_some(),
        );
        return;
    }
    let before = std::mem::take(lacking);
    let now = std::cell::RefCell::new(HashSet::new());
    // An organization is (org, "", ""): ids are never empty.
    let has = |org: &str, t: &str, d: &str, present: bool| {
        if present {
            return true;
        }
        let key = (org.to_string(), t.to_string(), d.to_string());
        let first = !before.contains(&key);
        now.borrow_mut().insert(key);
        first
    };
    dm.forget_removed(
        |org| has(org, "", "", registry.org(org).is_some()),
        |org, t, d| has(org, t, d, registry.device(org, t, d).is_some()),
    );
    *lacking = now.into_inner();
}

/// Writes what changed (`all`: every changed organization, at a stop; else those due).
async fn flush(dm: &Arc<Dm>, all: bool) {
    let dm = dm.clone();
    match tokio::task::spawn_blocking(move || if all { dm.flush() } else { dm.flush_due() }).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::error!("device management state not written: {e}"),
        Err(e) => tracing::error!("device management state not written: {e}"),
    }
}

/// Carries out what the state machine answered: messages to devices, deviceInfo merged
/// into the registry and metadata replaced there.
pub fn apply(admin: &Admin, registry: &Arc<Registry>, dm: &Dm, effects: Effects) {
    for out in effects.outgoing {
        let topic = dm_down_topic(&out.org, &out.type_id, &out.device_id, &out.tail);
        match admin.publish_as_broker_qos(&topic, Bytes::from(out.payload), QoS::AtLeastOnce) {
            Ok(0) => dm.undelivered(&out.org, &out.type_id, &out.device_id, &out.tail),
            Ok(_) => {}
            Err(e) => tracing::warn!(topic, "device management message not sent: {e}"),
        }
    }
    if effects.device_info.is_empty() && effects.metadata.is_empty() {
        return;
    }
    let registry = registry.clone();
    let (infos, metadata) = (effects.device_info, effects.metadata);
    tokio::task::spawn_blocking(move || {
        for (org, t, d, info) in infos {
            if let Err(e) = merge_device_info(registry.data_dir(), &org, &t, &d, &info) {
                tracing::warn!(org, device = %format!("{t}/{d}"), "deviceInfo not updated: {e}");
            }
        }
        for (org, t, d, value) in metadata {
            if let Err(e) = set_metadata(registry.data_dir(), &org, &t, &d, value) {
                tracing::warn!(org, device = %format!("{t}/{d}"), "metadata not updated: {e}");
            }
        }
        registry.reload_if_changed();
    });
}

/// Replaces a device's metadata (an object) unless it is already that.
fn set_metadata(
    data_dir: &std::path::Path,
    org: &str,
    type_id: &str,
    device_id: &str,
    value: Value,
) -> Result<(), registry::RegistryError> {
    let current = registry::read_org(data_dir, org)?;
    if !value.is_object() || current.device(type_id, device_id).is_none_or(|d| d.metadata == value) {
        return Ok(());
    }
    registry::edit_org(data_dir, org, |data| {
        if let Some(device) = data.devices.get_mut(type_id).and_then(|m| m.get_mut(device_id)) {
            device.metadata = value;
        }
        Ok(())
    })
}

/// Merges the keys of `info` (an object; null values ignored) into a device's deviceInfo;
/// nothing is written when nothing changes.
fn merge_device_info(
    data_dir: &std::path::Path,
    org: &str,
    type_id: &str,
    device_id: &str,
    info: &Value,
) -> Result<(), registry::RegistryError> {
    let Value::Object(new) = info else { return Ok(()) };
    if new.values().all(Value::is_null) {
        return Ok(());
    }
    let current = registry::read_org(data_dir, org)?;
    let Some(device) = current.device(type_id, device_id) else {
        return Ok(());
    };
    let changes = new
        .iter()
        .any(|(k, v)| !v.is_null() && device.device_info.get(k) != Some(v));
    if !changes {
        return Ok(());
    }
    registry::edit_org(data_dir, org, |data| {
        if let Some(Value::Object(existing)) = data
            .devices
            .get_mut(type_id)
            .and_then(|m| m.get_mut(device_id))
            .map(|d| &mut d.device_info)
        {
            for (k, v) in new.iter().filter(|(_, v)| !v.is_null()) {
                existing.insert(k.clone(), v.clone());
            }
        }
        Ok(())
    })
}
