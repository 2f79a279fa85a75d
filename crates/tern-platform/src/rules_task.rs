//! The rules' consumer of the broker's event stream ([`crate::rules`]): for each message
//! published in an organization that has rules, the rules whose source matches look at
//! it (the payload parsed as JSON once), their windows and strategies step, and the rules
//! that fire run their actions. It runs off the publish path and never blocks it: a rule
//! that errors (not JSON, a missing field, a string where a number was needed) is counted
//! and the message goes on as it would have.
//!
//! It listens to the stream only while some organization has an enabled rule (checked
//! every second with the files' reload, and at once when the REST API changed rules:
//! [`Rules::listen_now`] subscribes before the request is answered). Messages its own
//! publish actions sent are recognized by their payload buffer and never evaluated, so
//! a rule cannot trigger itself or another rule in a loop. Time is the broker's clock
//! (`tern_broker::clock`), so tests move it instead of waiting.

use crate::rules::{Counters, Rule, RuleDef, Rules, Source};
use crate::rules_actions::{alert_of, publish_message, Action, EventCtx, Webhooks};
use crate::rules_window::RuleState;
use bytes::Bytes;
use serde_json::Value as Json;
use std::collections::{HashMap, VecDeque};
use std::fmt::Write;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};
use tern_broker::admin::Admin;
use tern_broker::events::{Event, Origin};
use tern_broker::BrokerHandle;

/// How often the files are looked at (and whether to listen decided).
const RECHECK: Duration = Duration::from_secs(1);
/// Payloads of our own publishes remembered (the event stream's ring is 4096).
const OWN_REMEMBERED: usize = 4096;

impl Rules {
    /// Has the consumer listen from now on (rules were just defined); a no-op before
    /// [`spawn`].
    pub fn listen_now(&self) {
        self.feed.listen_now();
    }
}

/// The consumer's state.
struct Consumer {
    rules: Arc<Rules>,
    admin: Admin,
    webhooks: Webhooks,
    /// Per (org, rule id): the definition the state was built for, and the state.
    states: HashMap<(String, String), (RuleDef, RuleState)>,
    /// Payloads our publish actions sent, not yet seen back on the stream.
    own: VecDeque<Bytes>,
}

fn now_ms() -> u64 {
    tern_broker::clock::system_now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn source_matches(source: &Source, topic: &str, device: Option<[&str; 4]>) -> bool {
    if let Some(filter) = &source.topic {
        return tern_core::topic::matches(filter, topic);
    }
    let Some([t, d, e, _]) = device else {
        return false;
    };
    let is = |want: &Option<String>, have: &str| want.as_deref().is_none_or(|w| w == have);
    is(&source.type_id, t) && is(&source.device_id, d) && is(&source.event_id, e)
}

impl Consumer {
    /// Forgets the state of rules that are gone.
    fn prune(&mut self) {
        let rules = &self.rules;
        self.states
            .retain(|(org, id), _| rules.of(org).is_some_and(|o| o.rules.iter().any(|r| &r.def.id == id)));
    }

    fn take(&mut self, event: Event) {
        let Event::Published {
            topic, payload, origin, ..
        } = event
        else {
            return;
        };
        if matches!(origin, Origin::Api) {
            let same = |p: &Bytes| p.as_ptr() == payload.as_ptr() && p.len() == payload.len();
            if let Some(i) = self.own.iter().position(same) {
                self.own.remove(i);
                return;
            }
        }
        let (org, relative) = match topic.strip_prefix("$iot/") {
            Some(t) => match t.split_once('/') {
                Some(split) => split,
                None => return,
            },
            None if topic.starts_with('$') => return,
            None => (crate::rules::PLAIN, &topic[..]),
        };
        let Some(org_rules) = self.rules.of(org) else {
            return;
        };
        let device = crate::lec::event_of(&topic).map(|[_, t, d, e, f]| [t, d, e, f]);
        let mut json: Option<Option<Json>> = None;
        for rule in org_rules.rules.iter().filter(|r| r.def.enabled) {
            if !source_matches(&rule.def.source, relative, device) {
                continue;
            }
            Counters::add(&rule.counters.matched);
            let Some(parsed) = json.get_or_insert_with(|| serde_json::from_slice(&payload).ok()) else {
                Counters::add(&rule.counters.errors);
                tracing::debug!("rule {org}/{}: the payload on {relative} is not JSON", rule.def.id);
                continue;
            };
            let [t, d, e, f] = device.unwrap_or(["", "", "", ""]);
            let key = match device {
                Some(_) => format!("{t}/{d}"),
                None => relative.to_string(),
            };
            let ctx = EventCtx {
                org,
                topic: relative,
                type_id: t,
                device_id: d,
                event_id: e,
                format: f,
                json: parsed,
                timestamp_ms: now_ms(),
                rule_id: &rule.def.id,
                rule_name: &rule.def.name,
            };
            let fire = match evaluate(&mut self.states, rule, &key, &ctx) {
                Ok(fire) => fire,
                Err(why) => {
                    Counters::add(&rule.counters.errors);
                    tracing::debug!("rule {org}/{}: {why} (on {relative})", rule.def.id);
                    continue;
                }
            };
            if fire {
                Counters::add(&rule.counters.fired);
                run_actions(&self.rules, &self.admin, &self.webhooks, &mut self.own, rule, &ctx);
            }
        }
    }
}

/// Steps `rule`'s state for device `key` with the event; whether it fires.
fn evaluate(
    states: &mut HashMap<(String, String), (RuleDef, RuleState)>,
    rule: &Rule,
    key: &str,
    ctx: &EventCtx<'_>,
) -> Result<bool, String> {
    let aggregates = &rule.condition.aggregates;
    let values: Vec<f64> = aggregates
        .iter()
        .map(|a| a.field.number(ctx.json))
        .collect::<Result<_, _>>()
        .map_err(|e| e.to_string())?;
    let slot = states
        .entry((ctx.org.to_string(), rule.def.id.clone()))
        .or_insert_with(|| (rule.def.clone(), RuleState::default()));
    if slot.0 != rule.def {
        *slot = (rule.def.clone(), RuleState::default());
    }
    let Some(device) = slot.1.device(key, aggregates) else {
        return Err(format!("the rule keeps state for {} devices already", slot.1.len()));
    };
    let now = ctx.timestamp_ms;
    let mut current = Vec::with_capacity(values.len());
    for ((window, value), aggregate) in device.windows.iter_mut().zip(values).zip(aggregates) {
        window.push(now, value);
        current.push(window.value(aggregate.func));
    }
    let holds = rule.condition.holds(ctx.json, &current).map_err(|e| e.to_string())?;
    Ok(device.notify.step(rule.strategy, holds, now))
}

fn run_actions(
    rules: &Rules,
    admin: &Admin,
    webhooks: &Webhooks,
    own: &mut VecDeque<Bytes>,
    rule: &Rule,
    ctx: &EventCtx<'_>,
) {
    let failed = |why: String| {
        Counters::add(&rule.counters.failed);
        tracing::warn!("rule {}/{}: {why}", ctx.org, rule.def.id);
    };
    for action in &rule.actions {
        match action {
            Action::Publish { topic, payload } => match publish_message(ctx, topic, payload.as_ref()) {
                Ok((topic, payload)) => {
                    if own.len() >= OWN_REMEMBERED {
                        own.pop_front();
                    }
                    own.push_back(payload.clone());
                    if let Err(e) = admin.publish_as_broker(&topic, payload, false) {
                        failed(format!("publish to {topic}: {e}"));
                    }
                }
                Err(e) => failed(format!("publish: {e}")),
            },
            Action::Webhook(hook) => {
                let body = serde_json::to_vec(&alert_of(ctx, "warning", String::new())).unwrap_or_default();
                let counters = rule.counters.clone();
                let started = webhooks.call(hook.clone(), Bytes::from(body), move |ok| {
                    if !ok {
                        Counters::add(&counters.failed);
                    }
                });
                if !started {
                    failed("webhook not called: too many calls in progress".into());
                }
            }
            Action::Alert { severity, message } => {
                let text = match message {
                    Some(m) => m.render(ctx, false).unwrap_or_else(|e| format!("(message: {e})")),
                    None => format!(
                        "rule {} fired",
                        if rule.def.name.is_empty() {
                            &rule.def.id
                        } else {
                            &rule.def.name
                        }
                    ),
                };
                rules.record_alert(ctx.org, alert_of(ctx, severity, text));
            }
        }
    }
}

/// A metric family: name, help, how to read it.
type Family = (&'static str, &'static str, fn(&Counters) -> u64);

/// The rules' counters in Prometheus text format (for the broker's `/metrics`).
pub fn exposition(rules: &Rules, out: &mut String) {
    let all = rules.each();
    let families: [Family; 4] = [
        ("tern_rule_matched_total", "Events a rule's source matched.", |c| {
            c.matched.load(Relaxed)
        }),
        (
            "tern_rule_fired_total",
            "Times a rule's notification strategy fired its actions.",
            |c| c.fired.load(Relaxed),
        ),
        (
            "tern_rule_failed_total",
            "Actions of a rule that failed (webhook after its retries, publish refused).",
            |c| c.failed.load(Relaxed),
        ),
        (
            "tern_rule_errors_total",
            "Events a rule's condition could not be evaluated on.",
            |c| c.errors.load(Relaxed),
        ),
    ];
    for (name, help, get) in families {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
        for (org, rule) in &all {
            let _ = writeln!(
                out,
                "{name}{{org=\"{org}\",rule=\"{}\"}} {}",
                rule.def.id,
                get(&rule.counters)
            );
        }
    }
}

/// Starts the consumer: reads the rules files (again every second), registers the
/// counters with the broker's `/metrics`, and listens while some rule is enabled.
/// Writes the alerts recorded since the last call; a failure is logged when it first
/// happens (`failing` holds what was last logged), not every second.
async fn save_alerts(rules: &Arc<Rules>, failing: &mut Vec<String>) {
    let saving = rules.clone();
    let errors = tokio::task::spawn_blocking(move || saving.alerts.flush())
        .await
        .unwrap_or_else(|e| vec![format!("alerts not saved: {e}")]);
    for e in errors.iter().filter(|e| !failing.contains(e)) {
        tracing::error!("rules: {e} (tried again every second)");
    }
    *failing = errors;
}

pub fn spawn(handle: &BrokerHandle, rules: Arc<Rules>) {
    for e in rules.reload_if_changed() {
        tracing::error!("rules: {e} (not in force)");
    }
    let state = handle.state().clone();
    rules.feed.attach(state.clone());
    let metrics_rules = rules.clone();
    state
        .metrics
        .extra
        .add(Box::new(move |out: &mut String| exposition(&metrics_rules, out)));
    let mut events = rules.feed.initial(rules.any());
    let mut consumer = Consumer {
        rules: rules.clone(),
        admin: handle.admin(),
        webhooks: Webhooks::default(),
        states: HashMap::new(),
        own: VecDeque::new(),
    };
    let stop = state.shutdown.clone();
    // Waited for at shutdown, so the last alerts are written.
    state.events().spawn_consumer(async move {
        let mut recheck = tokio::time::interval(RECHECK);
        recheck.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut failing = Vec::new();
        loop {
            tokio::select! {
                () = stop.cancelled() => {
                    save_alerts(&rules, &mut failing).await;
                    return;
                }
                () = rules.feed.woken() => {}
                _ = recheck.tick() => {
                    let reloading = rules.clone();
                    if let Ok(errors) = tokio::task::spawn_blocking(move || reloading.reload_if_changed()).await {
                        for e in errors {
                            tracing::error!("rules: {e} (the previous version stays in force)");
                        }
                    }
                    consumer.prune();
                    save_alerts(&rules, &mut failing).await;
                }
                event = crate::feed::next(&mut events) => {
                    match event {
                        Some(event) => consumer.take(event),
                        None => {
                            save_alerts(&rules, &mut failing).await;
                            return;
                        }
                    }
                    continue;
                }
            }
            rules.feed.follow(rules.any(), &mut events);
        }
    });
}
