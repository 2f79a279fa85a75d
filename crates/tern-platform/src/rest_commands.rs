//! A device's command long-poll over HTTP ([`crate::rest`]):
//! `POST /device/types/<t>/devices/<d>/commands/<c>/request` with `{"waitTimeSecs": 0..3600}`,
//! by the device itself (`use-token-auth`). The first command for the device published
//! (over MQTT or HTTP) while it waits, of id `<c>` (or any with `+`), is the answer: 200
//! with the command's payload, its format as Content-Type, and with `+` its id in
//! `X-commandId`; 204 when none came in time. Commands published while no request
//! waits are not kept for HTTP (an MQTT subscriber gets them as usual).
//!
//! One dispatcher task reads the broker's event stream for every waiting request and
//! hands each a matching command, so a message costs one lookup however many devices
//! wait. It listens to the stream only while some request waits: a request subscribes
//! on the dispatcher's behalf before it starts waiting (as the last event cache does,
//! [`crate::lec_task`]), so nothing published after that is missed. A device waits once
//! at a time: its new request replaces the one before, which gets 204 at once. At most
//! [`MAX_WAITING`] requests wait at once (429 beyond).

use crate::registry_model::check_id;
use crate::rest::{authenticate, path, read_body, Answer, Caller, Rest, RestError};
use crate::topics::org_root;
use axum::body::{Body, Bytes};
use axum::extract::rejection::PathRejection;
use axum::extract::Path;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::IntoResponse;
use parking_lot::Mutex;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tern_broker::events::{Event, EventKind, EventReceiver};
use tern_broker::{BrokerHandle, BrokerState};
use tokio::sync::{oneshot, Notify};

/// Requests waiting at once, at most.
pub const MAX_WAITING: usize = 1024;
/// Longest wait a request may ask for.
pub const MAX_WAIT_SECS: u64 = 3600;

/// A command handed to a waiting request: its id, format and payload.
type Command = (String, String, Bytes);

/// One waiting request: the command id it wants (`+`: any) and where its command goes.
#[derive(Debug)]
struct Waiter {
    /// Tells this request's registration from a later one of the same device.
    id: u64,
    command: String,
    to: oneshot::Sender<Command>,
}

/// The waiting requests, by the broker topic prefix of their device's commands
/// (`$iot/<org>/iot-2/type/<t>/id/<d>/cmd/`).
#[derive(Debug)]
pub(crate) struct CommandWaits {
    waiting: Mutex<HashMap<String, Waiter>>,
    next_id: std::sync::atomic::AtomicU64,
    state: Arc<BrokerState>,
    /// A subscription made for the dispatcher by a request about to wait.
    handoff: Mutex<Option<EventReceiver>>,
    wake: Notify,
}

/// A request's place among the waiting; leaving it (the request answered or dropped)
/// frees the device's turn.
struct Turn<'a> {
    waits: &'a CommandWaits,
    prefix: String,
    id: u64,
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        let mut waiting = self.waits.waiting.lock();
        if waiting.get(&self.prefix).is_some_and(|w| w.id == self.id) {
            waiting.remove(&self.prefix);
        }
        drop(waiting);
        self.waits.wake.notify_one();
    }
}

pub(crate) fn routes() -> axum::Router<Arc<crate::rest::RestState>> {
    axum::Router::new().route(
        "/device/types/{t}/devices/{d}/commands/{c}/request",
        axum::routing::post(command_request),
    )
}

impl CommandWaits {
    /// The waits of a broker, with their dispatcher task (stopped with the broker).
    pub(crate) fn start(handle: &BrokerHandle) -> Arc<CommandWaits> {
        let waits = Arc::new(CommandWaits {
            waiting: Mutex::new(HashMap::new()),
            next_id: std::sync::atomic::AtomicU64::new(0),
            state: handle.state().clone(),
            handoff: Mutex::new(None),
            wake: Notify::new(),
        });
        tokio::spawn(dispatch(waits.clone()));
        waits
    }

    /// Registers a request waiting for `command` on the device of `prefix`, listening from
    /// now on.
    fn enter(&self, prefix: String, command: String) -> Result<(Turn<'_>, oneshot::Receiver<Command>), RestError> {
        let (to, from) = oneshot::channel();
        let id = self.next_id.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        {
            let mut waiting = self.waiting.lock();
            if waiting.len() >= MAX_WAITING && !waiting.contains_key(&prefix) {
                return Err(RestError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    format!("{MAX_WAITING} requests already wait for commands"),
                ));
            }
            // A device's new request replaces its previous one, which answers 204 at once
            // (its client may be gone without the server having noticed).
            waiting.insert(prefix.clone(), Waiter { id, command, to });
        }
        let mut handoff = self.handoff.lock();
        if handoff.is_none() {
            *handoff = Some(self.state.events().subscribe(&[EventKind::Published]));
        }
        drop(handoff);
        self.wake.notify_one();
        Ok((
            Turn {
                waits: self,
                prefix,
                id,
            },
            from,
        ))
    }

    /// Hands a published message to the request waiting for it, if it is one.
    fn deliver(&self, topic: &str, payload: Bytes) {
        let Some((prefix, command, format)) = command_of(topic) else {
            return;
        };
        let mut waiting = self.waiting.lock();
        let wanted = waiting
            .get(prefix)
            .is_some_and(|w| w.command == "+" || w.command == command);
        if wanted {
            if let Some(waiter) = waiting.remove(prefix) {
                let _ = waiter.to.send((command.to_string(), format.to_string(), payload));
            }
        }
    }
}

/// The device's command prefix (`$iot/<org>/iot-2/type/<t>/id/<d>/cmd/`), command id
/// and format of a broker topic that is a command, `.../cmd/<c>/fmt/<f>`.
fn command_of(topic: &str) -> Option<(&str, &str, &str)> {
    let mut levels = topic.split('/');
    let head: [Option<&str>; 8] = std::array::from_fn(|_| levels.next());
    let rest: Vec<&str> = levels.collect();
    match (head, rest.as_slice()) {
        (
            [Some(crate::topics::ROOT), Some(_), Some("iot-2"), Some("type"), Some(_), Some("id"), Some(_), Some("cmd")],
            [command, "fmt", format],
        ) => {
            let prefix_len = topic.len() - command.len() - format.len() - "/fmt/".len();
            Some((&topic[..prefix_len], command, format))
        }
        _ => None,
    }
}

/// The dispatcher: listens while some request waits.
async fn dispatch(waits: Arc<CommandWaits>) {
    let stop = waits.state.shutdown.clone();
    let mut events: Option<EventReceiver> = None;
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = waits.wake.notified() => {}
            event = async {
                match &mut events {
                    Some(events) => events.recv().await,
                    None => std::future::pending().await,
                }
            } => {
                match event {
                    Some(Event::Published { topic, payload, .. }) => waits.deliver(&topic, payload),
                    Some(_) => {}
                    None => return,
                }
                continue;
            }
        }
        let handed = waits.handoff.lock().take();
        if waits.waiting.lock().is_empty() {
            events = None;
        } else if events.is_none() {
            events = handed;
        }
    }
}

/// The Content-Type of a command's format.
fn content_type(format: &str) -> &'static str {
    match format {
        "json" => "application/json",
        "text" | "txt" => "text/plain",
        "xml" => "application/xml",
        _ => "application/octet-stream",
    }
}

type CommandPath = Result<Path<(String, String, String)>, PathRejection>;

/// `POST /device/types/<t>/devices/<d>/commands/<c>/request`.
pub(crate) async fn command_request(state: Rest, headers: HeaderMap, p: CommandPath, body: Body) -> Answer {
    let (t, d, c) = path(p)?;
    let caller = authenticate(&state, &headers, Some((&t, &d))).await?;
    let Caller::Device { org } = caller else {
        return Err(RestError::forbidden("only the device itself waits for its commands"));
    };
    if c != "+" {
        check_id("command id", &c)?;
    }
    let body = read_body(body, 4096).await?;
    let body: Value = match body.is_empty() {
        true => Value::Object(Default::default()),
        false => {
            serde_json::from_slice(&body).map_err(|e| RestError::bad_request(format!("the body is not JSON: {e}")))?
        }
    };
    let wait = match body.get("waitTimeSecs") {
        None => 0,
        Some(v) => v.as_u64().filter(|s| *s <= MAX_WAIT_SECS).ok_or_else(|| {
            RestError::bad_request(format!("waitTimeSecs must be a whole number from 0 to {MAX_WAIT_SECS}"))
        })?,
    };
    if !matches!(body, Value::Object(_)) {
        return Err(RestError::bad_request("the body must be a JSON object"));
    }
    let prefix = format!("{}iot-2/type/{t}/id/{d}/cmd/", org_root(&org));
    let (_turn, command) = state.commands.enter(prefix, c.clone())?;
    let Ok(Ok((id, format, payload))) = tokio::time::timeout(Duration::from_secs(wait), command).await else {
        return Ok(StatusCode::NO_CONTENT.into_response());
    };
    let mut response = (StatusCode::OK, payload).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type(&format)));
    if c == "+" {
        if let Ok(id) = HeaderValue::from_str(&id) {
            headers.insert("x-commandid", id);
        }
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_command_topics_are_commands() {
        assert_eq!(
            command_of("$iot/o/iot-2/type/cmd/id/d/cmd/c/fmt/json"),
            Some(("$iot/o/iot-2/type/cmd/id/d/cmd/", "c", "json"))
        );
        for topic in [
            "$iot/o/iot-2/type/t/id/d/evt/cmd/fmt/json",
            "$iot/o/iot-2/type/t/id/d/cmd/c/fmt",
            "$iot/o/iot-2/type/t/id/d/cmd/c/fmt/json/x",
            "iot-2/type/t/id/d/cmd/c/fmt/json",
        ] {
            assert_eq!(command_of(topic), None, "{topic}");
        }
    }
}
