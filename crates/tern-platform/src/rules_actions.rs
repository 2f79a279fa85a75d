//! What a rule does when it fires ([`crate::rules`]): publish a message into the
//! organization's topic space (topic and payload templated from the event), POST the
//! alert's JSON to a webhook (retries with backoff, a timeout, at most
//! [`MAX_WEBHOOKS_IN_FLIGHT`] at once), and record an alert for the API.
//!
//! Templates: `${typeId}`, `${deviceId}`, `${eventId}`, `${format}`, `${orgId}`,
//! `${topic}`, `${ruleId}`, `${ruleName}`, `${timestamp}` are replaced by their text,
//! `${payload}` by the event's JSON, and any other `${a.b}` by the event's field (in a
//! payload as JSON, so `{"temp": ${d.temp}}` stays JSON; in a topic or a message a string
//! field is its text).

use crate::rules_expr::{EvalError, FieldPath};
use crate::topics::{AppRights, TopicSpace};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;

/// Webhook calls in progress at most; a firing beyond counts as failed.
pub const MAX_WEBHOOKS_IN_FLIGHT: usize = 64;
/// Webhook timeout unless the action says.
const DEFAULT_TIMEOUT_MS: u64 = 5000;
/// Attempts after the first unless the action says.
const DEFAULT_RETRIES: u32 = 3;
/// First wait before a retry (doubled each time, at most [`MAX_BACKOFF`]).
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// Longest rendered payload or message.
const MAX_RENDERED: usize = 64 << 10;

/// The event a rule fired on.
#[derive(Debug)]
pub struct EventCtx<'a> {
    pub org: &'a str,
    /// The topic under the organization's root.
    pub topic: &'a str,
    pub type_id: &'a str,
    pub device_id: &'a str,
    pub event_id: &'a str,
    pub format: &'a str,
    pub json: &'a Json,
    pub timestamp_ms: u64,
    pub rule_id: &'a str,
    pub rule_name: &'a str,
}

/// An alert record, as the API shows it (and the body of webhooks).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Alert {
    pub id: u64,
    pub rule_id: String,
    pub rule_name: String,
    pub org_id: String,
    pub type_id: String,
    pub device_id: String,
    pub event_id: String,
    pub topic: String,
    pub timestamp: String,
    pub severity: String,
    pub message: String,
    pub payload: Json,
}

/// A piece of a template.
#[derive(Debug, Clone, PartialEq)]
enum Piece {
    Text(String),
    Builtin(&'static str),
    Field(FieldPath),
}

/// A parsed `${...}` template.
#[derive(Debug, Clone, PartialEq)]
pub struct Template(Vec<Piece>);

const BUILTINS: &[&str] = &[
    "typeId",
    "deviceId",
    "eventId",
    "format",
    "orgId",
    "topic",
    "ruleId",
    "ruleName",
    "timestamp",
    "payload",
];

impl Template {
    pub fn parse(text: &str) -> Result<Template, String> {
        let mut pieces = Vec::new();
        let mut rest = text;
        while let Some(start) = rest.find("${") {
            if start > 0 {
                pieces.push(Piece::Text(rest[..start].to_string()));
            }
            let after = &rest[start + 2..];
            let Some(end) = after.find('}') else {
                return Err(format!("`${{` without its `}}` in {text:?}"));
            };
            let name = after[..end].trim();
            if let Some(b) = BUILTINS.iter().find(|b| **b == name) {
                pieces.push(Piece::Builtin(b));
            } else {
                let path = crate::rules_expr::parse_field(name).ok_or_else(|| {
                    format!(
                        "`${{{name}}}` is neither a field (d.temp) nor one of {}",
                        BUILTINS.join(", ")
                    )
                })?;
                pieces.push(Piece::Field(path));
            }
            rest = &after[end + 1..];
        }
        if !rest.is_empty() {
            pieces.push(Piece::Text(rest.to_string()));
        }
        Ok(Template(pieces))
    }

    /// The text for `ctx`; `json` renders fields as JSON.
    pub fn render(&self, ctx: &EventCtx<'_>, json: bool) -> Result<String, EvalError> {
        let mut out = String::new();
        for piece in &self.0 {
            match piece {
                Piece::Text(t) => out.push_str(t),
                Piece::Builtin(name) => out.push_str(&builtin(ctx, name)),
                Piece::Field(path) => match path.lookup(ctx.json) {
                    None => return Err(EvalError::Missing(path.to_string())),
                    Some(Json::String(s)) if !json => out.push_str(s),
                    Some(v) => out.push_str(&v.to_string()),
                },
            }
            if out.len() > MAX_RENDERED {
                return Err(EvalError::Type(format!(
                    "a rendered template is longer than {MAX_RENDERED} bytes"
                )));
            }
        }
        Ok(out)
    }

    /// The text with every placeholder replaced by `x` (to check a topic's shape).
    fn sample(&self) -> String {
        self.0.iter().fold(String::new(), |mut s, p| {
            match p {
                Piece::Text(t) => s.push_str(t),
                _ => s.push('x'),
            }
            s
        })
    }
}

fn builtin(ctx: &EventCtx<'_>, name: &str) -> String {
    match name {
        "typeId" => ctx.type_id.into(),
        "deviceId" => ctx.device_id.into(),
        "eventId" => ctx.event_id.into(),
        "format" => ctx.format.into(),
        "orgId" => ctx.org.into(),
        "topic" => ctx.topic.into(),
        "ruleId" => ctx.rule_id.into(),
        "ruleName" => ctx.rule_name.into(),
        "timestamp" => crate::lec::timestamp(ctx.timestamp_ms),
        _ => ctx.json.to_string(),
    }
}

/// Where a webhook goes.
#[derive(Debug, Clone)]
pub struct Webhook {
    pub target: crate::rules_webhook::Target,
    pub timeout: Duration,
    pub retries: u32,
}

/// An action ready to run.
#[derive(Debug, Clone)]
pub enum Action {
    Publish {
        topic: Template,
        payload: Option<Template>,
    },
    Webhook(Arc<Webhook>),
    Alert {
        severity: String,
        message: Option<Template>,
    },
}

/// The broker topic of `topic` (under the org root) if an application may publish it;
/// for plain listeners' rules, any topic outside `$` ones.
fn broker_topic(org: &str, topic: &str) -> Result<String, String> {
    if org == crate::rules::PLAIN {
        if topic.starts_with('$') {
            return Err("a plain listeners' rule may not publish to a $ topic".into());
        }
        tern_proto::topic::validate_topic_name(topic).map_err(|e| e.to_string())?;
        return Ok(topic.to_string());
    }
    let client = crate::identity::ClientId::parse(&format!("a:{org}:tern-rules")).map_err(|e| e.to_string())?;
    let space = TopicSpace::of(&client, AppRights::ALL);
    space.publish(topic).map(|m| m.topic).map_err(|e| e.to_string())
}

impl Action {
    /// Checks and compiles an action of a rule of `org`.
    pub fn compile(org: &str, def: &crate::rules::ActionDef) -> Result<Action, String> {
        use crate::rules::ActionDef;
        match def {
            ActionDef::Publish { topic, payload } => {
                let template = Template::parse(topic)?;
                // With every placeholder filled, the topic must be one of the org's.
                broker_topic(org, &template.sample()).map_err(|e| format!("publish topic {topic:?}: {e}"))?;
                let payload = payload.as_deref().map(Template::parse).transpose()?;
                Ok(Action::Publish {
                    topic: template,
                    payload,
                })
            }
            ActionDef::Webhook {
                url,
                timeout_ms,
                retries,
            } => {
                let target = crate::rules_webhook::Target::parse(url)?;
                let timeout_ms = timeout_ms.unwrap_or(DEFAULT_TIMEOUT_MS);
                if !(1..=60_000).contains(&timeout_ms) {
                    return Err("webhook timeoutMs must be from 1 to 60000".into());
                }
                let retries = retries.unwrap_or(DEFAULT_RETRIES);
                if retries > 10 {
                    return Err("webhook retries must be at most 10".into());
                }
                let hook = Webhook {
                    target,
                    timeout: Duration::from_millis(timeout_ms),
                    retries,
                };
                Ok(Action::Webhook(Arc::new(hook)))
            }
            ActionDef::Alert { severity, message } => {
                let severity = severity.clone().unwrap_or_else(|| "warning".into());
                if !["info", "warning", "critical"].contains(&severity.as_str()) {
                    return Err(format!("alert severity {severity:?}: info, warning or critical"));
                }
                let message = message.as_deref().map(Template::parse).transpose()?;
                Ok(Action::Alert { severity, message })
            }
        }
    }
}

/// The alert record of a firing (id 0 until recorded).
pub fn alert_of(ctx: &EventCtx<'_>, severity: &str, message: String) -> Alert {
    Alert {
        id: 0,
        rule_id: ctx.rule_id.into(),
        rule_name: ctx.rule_name.into(),
        org_id: ctx.org.into(),
        type_id: ctx.type_id.into(),
        device_id: ctx.device_id.into(),
        event_id: ctx.event_id.into(),
        topic: ctx.topic.into(),
        timestamp: crate::lec::timestamp(ctx.timestamp_ms),
        severity: severity.into(),
        message,
        payload: ctx.json.clone(),
    }
}

/// The broker topic and payload of a publish action for `ctx`.
pub fn publish_message(
    ctx: &EventCtx<'_>,
    topic: &Template,
    payload: Option<&Template>,
) -> Result<(String, Bytes), String> {
    let topic = topic.render(ctx, false).map_err(|e| e.to_string())?;
    let topic = broker_topic(ctx.org, &topic)?;
    let text = match payload {
        Some(t) => t.render(ctx, true).map_err(|e| e.to_string())?,
        None => serde_json::to_string(&alert_of(ctx, "warning", String::new())).map_err(|e| e.to_string())?,
    };
    Ok((topic, Bytes::from(text)))
}

/// Runs webhook calls, bounded.
#[derive(Debug)]
pub struct Webhooks {
    in_flight: Arc<Semaphore>,
}

impl Default for Webhooks {
    fn default() -> Webhooks {
        Webhooks {
            in_flight: Arc::new(Semaphore::new(MAX_WEBHOOKS_IN_FLIGHT)),
        }
    }
}

impl Webhooks {
    /// Starts POSTing `body` to `hook`; `done(ok)` is called once it succeeded or gave up.
    /// False (and nothing started) when too many calls are in progress.
    pub fn call(&self, hook: Arc<Webhook>, body: Bytes, done: impl FnOnce(bool) + Send + 'static) -> bool {
        let Ok(permit) = self.in_flight.clone().try_acquire_owned() else {
            return false;
        };
        tokio::spawn(async move {
            let mut backoff = FIRST_BACKOFF;
            let mut ok = false;
            let target = hook.target.describe();
            for attempt in 1..=hook.retries + 1 {
                let why =
                    match tokio::time::timeout(hook.timeout, crate::rules_webhook::post(&hook.target, body.clone()))
                        .await
                    {
                        Ok(Ok(status)) if (200..300).contains(&status) => {
                            ok = true;
                            break;
                        }
                        Ok(Ok(status)) => format!("answered {status}"),
                        Ok(Err(e)) => e,
                        Err(_) => "timed out".to_string(),
                    };
                tracing::debug!("rules: webhook {target}: {why} (attempt {attempt})");
                if attempt > hook.retries {
                    tracing::warn!("rules: webhook {target}: {why}; gave up after {attempt} attempts");
                }
                if attempt <= hook.retries {
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
            drop(permit);
            done(ok);
        });
        true
    }
}
