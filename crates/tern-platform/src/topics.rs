//! The `iot-2` topic space of one platform client: which topics it may publish and which
//! filters it may subscribe to, and the names they have inside the broker.
//!
//! Every platform topic lives inside the broker under a hidden root per organization,
//! `$iot/<org>/`: a device's event `iot-2/evt/status/fmt/json` is routed as
//! `$iot/<org>/iot-2/type/<type>/id/<device>/evt/status/fmt/json`. The root starts with
//! `$`, so no `#` or `+/...` subscription of a plain listener's client ever matches it,
//! and an organization id is one level of `[a-z0-9]` (no wildcard, no `/`), so a filter
//! mapped for one organization can never match a topic of another. Clients never see the
//! root: what is delivered to them has it taken off again.
//!
//! - A device publishes `iot-2/evt/<event>/fmt/<format>` and subscribes
//!   `iot-2/cmd/<command>/fmt/<format>` (`+` for command or format); both are its own
//!   device's topics in the full form, and what it receives comes back under the short
//!   form. For a device the mapping is one prefix replaced by another: `iot-2/` and
//!   `$iot/<org>/iot-2/type/<type>/id/<device>/`. A device may not subscribe to events
//!   (its own included) or to anything else.
//! - Applications use the full form, `+` allowed for each part of a filter: events and
//!   commands of any device, device status `iot-2/type/<t>/id/<d>/mon` and application
//!   status `iot-2/app/<appId>/mon`. Whether they may publish events and commands is the
//!   role of their API key ([`AppRights`]). Status topics are published by the platform
//!   alone. A scalable application's (`A:`) subscriptions become shared subscriptions of
//!   a group named after its client id, so its connections share the messages.
//! - Gateways use the full form for events and commands of themselves and the devices
//!   behind them, and may read device status. Whether a named device is behind the
//!   gateway is the registry's question, so a mapped topic names the device it is about
//!   ([`Mapped::device`]) and a gateway's wildcard subscription is narrowed per message
//!   ([`device_of`]). A gateway also reads its own `iot-2/type/<t>/id/<d>/notify`, where
//!   the platform reports what it refused it.
//!
//! - Device management (docs/device-management.md): a device publishes requests and
//!   answers under `iotdevice-1/...` and subscribes `iotdm-1/...` (wildcards allowed);
//!   inside the broker they are `$iot/<org>/iotdevice-1/type/<t>/id/<d>/...` and
//!   `$iot/<org>/iotdm-1/type/<t>/id/<d>/...`, so a device speaks and hears only for
//!   itself (its delivery map has a second prefix pair, [`TopicSpace::dm_prefixes`]). A
//!   gateway uses the long forms `iotdevice-1/type/<t>/id/<d>/...` and
//!   `iotdm-1/type/<t>/id/<d>/...` for itself and the devices behind it. Applications act
//!   through the REST API, not these topics.
//!
//! Anything else is refused with a [`TopicRefusal`] naming why.

use crate::identity::{is_id, ClientId};

/// The first level of every platform topic inside the broker.
pub const ROOT: &str = "$iot";

/// What an application's API key lets it publish (its role decides; subscribing to its
/// organization's events, commands and status is always allowed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppRights {
    pub publish_events: bool,
    pub publish_commands: bool,
}

impl AppRights {
    /// A standard application (or an admin key): everything.
    pub const ALL: AppRights = AppRights {
        publish_events: true,
        publish_commands: true,
    };
    /// A read-only application: subscribes, publishes nothing.
    pub const READ_ONLY: AppRights = AppRights {
        publish_events: false,
        publish_commands: false,
    };
}

/// A topic or filter outside a client's space.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{why}: {topic:?}")]
pub struct TopicRefusal {
    pub topic: String,
    pub why: &'static str,
}

/// A client topic or filter with its broker name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mapped {
    /// The name inside the broker.
    pub topic: String,
    /// For a gateway: the device (type, id) the topic is about when both are named, to be
    /// checked as the gateway itself or a device behind it. `None` for other clients, and
    /// for a gateway's filter with `+` for type or id (narrowed per message instead).
    pub device: Option<(String, String)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Who {
    Device,
    Gateway { type_id: String, device_id: String },
    Application { rights: AppRights, share: Option<String> },
}

/// One client's topic space.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicSpace {
    who: Who,
    /// `$iot/<org>/`: what is cut from every topic delivered to an application or gateway.
    org_root: String,
    /// For a device, `$iot/<org>/iot-2/type/<type>/id/<device>/`; else the org root.
    broker_prefix: String,
    /// For a device `iot-2/`, else empty: what replaces `broker_prefix` on delivery.
    client_prefix: &'static str,
}

/// The broker's root of organization `org`: `$iot/<org>/`.
pub fn org_root(org: &str) -> String {
    format!("{ROOT}/{org}/")
}

/// The broker's name of a device's status topic.
pub fn device_status_topic(org: &str, type_id: &str, device_id: &str) -> String {
    format!("{ROOT}/{org}/iot-2/type/{type_id}/id/{device_id}/mon")
}

/// The broker's name of a gateway's notify topic.
pub fn notify_topic(org: &str, type_id: &str, device_id: &str) -> String {
    format!("{ROOT}/{org}/iot-2/type/{type_id}/id/{device_id}/notify")
}

/// The broker's name of an application's status topic.
pub fn app_status_topic(org: &str, app_id: &str) -> String {
    format!("{ROOT}/{org}/iot-2/app/{app_id}/mon")
}

/// The first level of device management requests and answers a device sends.
pub const DM_UP: &str = "iotdevice-1";
/// The first level of device management messages the platform sends a device.
pub const DM_DOWN: &str = "iotdm-1";

/// The broker's name of a device management message for a device: `tail` is what
/// follows `iotdm-1/` in the device's own short form (`response`, `mgmt/initiate/device/reboot`).
pub fn dm_down_topic(org: &str, type_id: &str, device_id: &str, tail: &str) -> String {
    format!("{ROOT}/{org}/{DM_DOWN}/type/{type_id}/id/{device_id}/{tail}")
}

/// The organization, device type, device id and tail of a device management message a
/// device (or a gateway for it) sent: `$iot/<org>/iotdevice-1/type/<t>/id/<d>/<tail>`.
pub fn dm_up_of(broker_topic: &str) -> Option<(&str, &str, &str, &str)> {
    let rest = broker_topic.strip_prefix(ROOT)?.strip_prefix('/')?;
    let (org, rest) = rest.split_once('/')?;
    let rest = rest.strip_prefix(DM_UP)?.strip_prefix("/type/")?;
    let (t, rest) = rest.split_once('/')?;
    let (d, tail) = rest.strip_prefix("id/")?.split_once('/')?;
    Some((org, t, d, tail))
}

/// The organization, device type and device id a broker topic of the full form is about
/// (`$iot/<org>/iot-2/type/<t>/id/<d>/...`, or the `iotdm-1` and `iotdevice-1` forms),
/// if it is one.
pub fn device_of(broker_topic: &str) -> Option<(&str, &str, &str)> {
    let mut levels = broker_topic.split('/');
    let (Some(ROOT), Some(org), Some("iot-2" | DM_UP | DM_DOWN), Some("type"), Some(t), Some("id"), Some(d)) = (
        levels.next(),
        levels.next(),
        levels.next(),
        levels.next(),
        levels.next(),
        levels.next(),
        levels.next(),
    ) else {
        return None;
    };
    Some((org, t, d))
}

impl TopicSpace {
    /// The space of `client`; `rights` apply to applications (ignored for devices).
    pub fn of(client: &ClientId, rights: AppRights) -> TopicSpace {
        let org_root = org_root(client.org());
        match client {
            ClientId::Device {
                gateway: false,
                type_id,
                device_id,
                ..
            } => TopicSpace {
                who: Who::Device,
                broker_prefix: format!("{org_root}iot-2/type/{type_id}/id/{device_id}/"),
                org_root,
                client_prefix: "iot-2/",
            },
            ClientId::Device {
                gateway: true,
                type_id,
                device_id,
                ..
            } => TopicSpace {
                who: Who::Gateway {
                    type_id: type_id.clone(),
                    device_id: device_id.clone(),
                },
                broker_prefix: org_root.clone(),
                org_root,
                client_prefix: "",
            },
            ClientId::Application {
                scalable, org, app_id, ..
            } => TopicSpace {
                who: Who::Application {
                    rights,
                    share: scalable.then(|| format!("A:{org}:{app_id}")),
                },
                broker_prefix: org_root.clone(),
                org_root,
                client_prefix: "",
            },
        }
    }

    /// For a device, the second (broker, client) prefix pair of its delivery map:
    /// `$iot/<org>/iotdm-1/type/<t>/id/<d>/` delivered as `iotdm-1/`.
    pub fn dm_prefixes(&self) -> Option<(String, &'static str)> {
        let Who::Device = self.who else { return None };
        let device = self
            .broker_prefix
            .strip_prefix(&*self.org_root)?
            .strip_prefix("iot-2/")?;
        Some((format!("{}{DM_DOWN}/{device}", self.org_root), "iotdm-1/"))
    }

    /// The broker's prefix replaced by [`TopicSpace::client_prefix`] on delivery.
    pub fn broker_prefix(&self) -> &str {
        &self.broker_prefix
    }

    /// What the client sees in place of [`TopicSpace::broker_prefix`]: `iot-2/` for a
    /// device, nothing for others (always shorter than the broker's prefix).
    pub fn client_prefix(&self) -> &'static str {
        self.client_prefix
    }

    /// The organization's root, `$iot/<org>/`.
    pub fn org_root(&self) -> &str {
        &self.org_root
    }

    /// The client's name for a broker topic delivered to it; `None` if it is outside the
    /// client's space (never delivered).
    pub fn to_client_topic(&self, broker_topic: &str) -> Option<String> {
        if let Some((dm_broker, dm_client)) = self.dm_prefixes() {
            if let Some(rest) = broker_topic.strip_prefix(&*dm_broker) {
                return (!rest.is_empty()).then(|| format!("{dm_client}{rest}"));
            }
        }
        let rest = broker_topic.strip_prefix(&*self.broker_prefix)?;
        (!rest.is_empty()).then(|| format!("{}{rest}", self.client_prefix))
    }

    /// A device's own management topic or filter (`iotdevice-1/<tail>` published,
    /// `iotdm-1/<tail>` subscribed) in the broker's long form.
    fn device_dm(&self, root: &str, tail: &str) -> Mapped {
        let device = self
            .broker_prefix
            .strip_prefix(&*self.org_root)
            .and_then(|p| p.strip_prefix("iot-2/"))
            .unwrap_or_default();
        Mapped {
            topic: format!("{}{root}/{device}{tail}", self.org_root),
            device: None,
        }
    }

    /// The broker's name of a topic the client publishes to, if it may.
    pub fn publish(&self, topic: &str) -> Result<Mapped, TopicRefusal> {
        let refuse = |why| Err(refusal(topic, why));
        let mut buffer = [""; MAX_LEVELS];
        let levels = split_levels(topic, &mut buffer);
        match &self.who {
            Who::Device => match levels {
                ["iot-2", "evt", event, "fmt", format] if is_level(event) && is_level(format) => {
                    Ok(self.device_topic(topic))
                }
                ["iot-2", "evt", ..] => refuse("a device publishes events as iot-2/evt/<event>/fmt/<format>"),
                [DM_UP, "type", ..] => refuse("a device speaks for itself: iotdevice-1/<request>"),
                [DM_UP, rest @ ..] if is_dm_tail(rest, false) => Ok(self.device_dm(DM_UP, &topic[DM_UP.len() + 1..])),
                _ => refuse("a device may publish only its events, iot-2/evt/<event>/fmt/<format>, and device management messages, iotdevice-1/..."),
            },
            Who::Gateway { .. } if levels.first() == Some(&DM_UP) => match levels {
                [DM_UP, "type", t, "id", d, rest @ ..] if is_id(t) && is_id(d) && is_dm_tail(rest, false) => Ok(Mapped {
                    topic: format!("{}{topic}", self.org_root),
                    device: Some((t.to_string(), d.to_string())),
                }),
                _ => refuse("a gateway sends device management messages as iotdevice-1/type/<type>/id/<device>/..."),
            },
            Who::Application { .. } if matches!(levels.first(), Some(&(DM_UP | DM_DOWN))) => {
                refuse("applications manage devices through the REST API (/api/v0002/mgmt/requests)")
            }
            Who::Gateway { .. } | Who::Application { .. } => {
                let Some(FullForm { device, kind }) = full_form(levels, false) else {
                    return refuse("not a topic of the platform's iot-2 space that can be published to");
                };
                match (&self.who, kind) {
                    (_, Kind::Status | Kind::App | Kind::Notify) => {
                        refuse("status and notify topics are published by the platform only")
                    }
                    (Who::Application { rights, .. }, Kind::Event) if !rights.publish_events => {
                        refuse("this application may not publish events (its API key's role is read-only or device-operator, or it is a quickstart application)")
                    }
                    (Who::Application { rights, .. }, Kind::Command) if !rights.publish_commands => {
                        refuse("this application may not publish commands (its API key's role is read-only, or it is a quickstart application)")
                    }
                    (Who::Gateway { .. }, _) => Ok(Mapped {
                        topic: format!("{}{topic}", self.org_root),
                        device: device.map(|(t, d)| (t.to_string(), d.to_string())),
                    }),
                    _ => Ok(Mapped {
                        topic: format!("{}{topic}", self.org_root),
                        device: None,
                    }),
                }
            }
        }
    }

    /// The broker's name of a filter the client subscribes to, if it may.
    pub fn subscribe(&self, filter: &str) -> Result<Mapped, TopicRefusal> {
        let refuse = |why| Err(refusal(filter, why));
        if filter.starts_with("$share/") {
            return refuse(
                "platform clients do not name shared subscriptions (scalable applications share by their client id)",
            );
        }
        let mut buffer = [""; MAX_LEVELS];
        let levels = split_levels(filter, &mut buffer);
        match &self.who {
            Who::Device => match levels {
                ["iot-2", "cmd", command, "fmt", format] if is_filter_level(command) && is_filter_level(format) => {
                    Ok(self.device_topic(filter))
                }
                ["iot-2", "evt", ..] => refuse("a device may not subscribe to events"),
                [DM_DOWN, "type", ..] => refuse("a device hears only its own device management messages: iotdm-1/..."),
                [DM_DOWN, rest @ ..] if is_dm_tail(rest, true) => Ok(self.device_dm(DM_DOWN, &filter[DM_DOWN.len() + 1..])),
                _ => refuse("a device may subscribe only to its commands, iot-2/cmd/<command>/fmt/<format>, and device management messages, iotdm-1/..."),
            },
            Who::Gateway { .. } if levels.first() == Some(&DM_DOWN) => match levels {
                [DM_DOWN, "type", t, "id", d, rest @ ..]
                    if (is_id(t) || *t == "+") && (is_id(d) || *d == "+") && is_dm_tail(rest, true) =>
                {
                    Ok(Mapped {
                        topic: format!("{}{filter}", self.org_root),
                        device: (*t != "+" && *d != "+").then(|| (t.to_string(), d.to_string())),
                    })
                }
                _ => refuse("a gateway hears device management messages as iotdm-1/type/<type>/id/<device>/..."),
            },
            Who::Application { .. } if matches!(levels.first(), Some(&(DM_UP | DM_DOWN))) => {
                refuse("applications manage devices through the REST API (/api/v0002/mgmt/requests)")
            }
            Who::Gateway { .. } => {
                let Some(FullForm { device, kind }) = full_form(levels, true) else {
                    return refuse("not a filter of the platform's iot-2 space");
                };
                if kind == Kind::App {
                    return refuse("a gateway may not read application status");
                }
                let Who::Gateway { type_id, device_id } = &self.who else {
                    return refuse("not a gateway");
                };
                if kind == Kind::Notify && device != Some((type_id.as_str(), device_id.as_str())) {
                    return refuse("a gateway reads only its own notify topic");
                }
                Ok(Mapped {
                    topic: format!("{}{filter}", self.org_root),
                    device: device.map(|(t, d)| (t.to_string(), d.to_string())),
                })
            }
            Who::Application { share, .. } => {
                if full_form(levels, true).is_none() {
                    return refuse("not a filter of the platform's iot-2 space");
                }
                let topic = match share {
                    Some(group) => format!("$share/{group}/{}{filter}", self.org_root),
                    None => format!("{}{filter}", self.org_root),
                };
                Ok(Mapped { topic, device: None })
            }
        }
    }

    /// Whether a gateway may receive a message on `broker_topic` given whether the device
    /// it is about is behind it (asked only for devices other than the gateway itself).
    /// Other clients' deliveries are bounded by their filters and always allowed.
    pub fn may_receive(&self, broker_topic: &str, behind: impl FnOnce(&str, &str) -> bool) -> bool {
        let Who::Gateway { type_id, device_id } = &self.who else {
            return true;
        };
        match device_of(broker_topic) {
            Some((_, t, d)) if t == type_id && d == device_id => true,
            Some((_, t, d)) => behind(t, d),
            None => false,
        }
    }

    fn device_topic(&self, client_topic: &str) -> Mapped {
        let rest = &client_topic[self.client_prefix.len()..];
        Mapped {
            topic: format!("{}{rest}", self.broker_prefix),
            device: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Event,
    Command,
    /// Device status, `.../mon`.
    Status,
    /// Application status, `iot-2/app/<appId>/mon`.
    App,
    /// A gateway's notifications, `iot-2/type/<t>/id/<d>/notify`.
    Notify,
}

struct FullForm<'a> {
    /// The (type, id) named, when neither is `+`.
    device: Option<(&'a str, &'a str)>,
    kind: Kind,
}

/// Reads the full form: `iot-2/type/<t>/id/<d>/{evt|cmd}/<x>/fmt/<f>`,
/// `iot-2/type/<t>/id/<d>/mon` or `iot-2/app/<a>/mon`; `+` in place of any part when
/// `filter`.
fn full_form<'a>(levels: &[&'a str], filter: bool) -> Option<FullForm<'a>> {
    let id_ok = |s: &str| is_id(s) || (filter && s == "+");
    let level_ok = |s: &str| if filter { is_filter_level(s) } else { is_level(s) };
    let (t, d, kind) = match *levels {
        ["iot-2", "type", t, "id", d, "evt", event, "fmt", format] if level_ok(event) && level_ok(format) => {
            (t, d, Kind::Event)
        }
        ["iot-2", "type", t, "id", d, "cmd", command, "fmt", format] if level_ok(command) && level_ok(format) => {
            (t, d, Kind::Command)
        }
        ["iot-2", "type", t, "id", d, "mon"] => (t, d, Kind::Status),
        ["iot-2", "type", t, "id", d, "notify"] => (t, d, Kind::Notify),
        ["iot-2", "app", app, "mon"] if id_ok(app) => {
            return Some(FullForm {
                device: None,
                kind: Kind::App,
            })
        }
        _ => return None,
    };
    if !id_ok(t) || !id_ok(d) {
        return None;
    }
    let device = (t != "+" && d != "+").then_some((t, d));
    Some(FullForm { device, kind })
}

/// More levels than any platform topic has (the full form has 9).
const MAX_LEVELS: usize = 10;

/// The levels of `topic` in `buffer`, without allocating; a topic of more levels than
/// the buffer holds gives its first levels and an empty one, which no form accepts.
fn split_levels<'t>(topic: &'t str, buffer: &'t mut [&'t str; MAX_LEVELS]) -> &'t [&'t str] {
    let mut n = 0;
    for level in topic.split('/') {
        if n == MAX_LEVELS {
            buffer[MAX_LEVELS - 1] = "";
            return &buffer[..];
        }
        buffer[n] = level;
        n += 1;
    }
    &buffer[..n]
}

/// The levels after a device management root: 1 to 6 of them; in a filter `+` anywhere
/// and `#` last.
fn is_dm_tail(levels: &[&str], filter: bool) -> bool {
    let Some((last, before)) = levels.split_last() else {
        return false;
    };
    levels.len() <= 6
        && before
            .iter()
            .all(|l| if filter { is_filter_level(l) } else { is_level(l) })
        && if filter {
            is_filter_level(last) || *last == "#"
        } else {
            is_level(last)
        }
}

/// An event, command or format in a topic: one non-empty level without wildcards.
fn is_level(s: &str) -> bool {
    !s.is_empty() && !s.contains(['+', '#', '/'])
}

/// An event, command or format in a filter: `+` or a level.
fn is_filter_level(s: &str) -> bool {
    s == "+" || is_level(s)
}

fn refusal(topic: &str, why: &'static str) -> TopicRefusal {
    let shown = match topic.char_indices().nth(200) {
        Some((at, _)) => &topic[..at],
        None => topic,
    };
    TopicRefusal {
        topic: shown.to_string(),
        why,
    }
}

#[cfg(test)]
#[path = "topics_tests.rs"]
mod tests;
