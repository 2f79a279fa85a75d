//! The REST API of analytics rules ([`crate::rules`]): `GET|POST /rules`,
//! `GET|PUT|DELETE /rules/<id>`, `GET /rules/<id>/alerts` and `GET /alerts`. Any key of
//! the organization reads; changing rules needs the `admin` role (a rule can call any
//! URL as a webhook). A rule is checked whole before it is stored: a refusal is a 400
//! naming what is wrong (for a condition, the position). Stored rules take effect at once:
//! the change is written to the organization's rules file, loaded, and the consumer told
//! to listen before the answer goes out.
//!
//! The same operations ([`ops`]) serve plain listeners' rules on the broker's admin API
//! ([`crate::rules_admin`]), behind the admin key instead of an organization's.

use crate::rest::{authenticate, blocking, json_answer, path, read_body, Answer, Need, Rest, RestError, RestState};
use crate::rules::{RuleDef, RuleError, Rules};
use axum::body::Body;
use axum::extract::rejection::PathRejection;
use axum::extract::Path;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::get;
use axum::Router;
use serde_json::{json, Value};
use std::sync::Arc;

pub(crate) fn routes() -> Router<Arc<RestState>> {
    Router::new()
        .route("/rules", get(list).post(create))
        .route("/rules/{id}", get(read).put(replace).delete(remove))
        .route("/rules/{id}/alerts", get(rule_alerts))
        .route("/alerts", get(alerts))
}

impl From<RuleError> for RestError {
    fn from(e: RuleError) -> RestError {
        match &e {
            RuleError::Invalid(_) => RestError::bad_request(e.to_string()),
            RuleError::NotFound(_) => RestError::not_found(e.to_string()),
            RuleError::Exists(_) => RestError::new(StatusCode::CONFLICT, e.to_string()),
            RuleError::Io { .. } => {
                tracing::error!("rules: {e}");
                RestError::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string())
            }
        }
    }
}

/// The operations on one organization's rules, whoever authenticated the request.
pub(crate) mod ops {
    use super::*;

    /// A rule as the API shows it: its definition and its counters.
    fn shown(rules: &Rules, org: &str, id: &str) -> Option<Value> {
        let of = rules.of(org)?;
        let rule = of.rules.iter().find(|r| r.def.id == id)?;
        let mut value = serde_json::to_value(&rule.def).ok()?;
        if let Value::Object(map) = &mut value {
            map.insert("counters".into(), rule.counters.json());
        }
        Some(value)
    }

    fn results(results: Vec<Value>) -> Value {
        let total = results.len();
        json!({"results": results, "meta": {"total_rows": total}})
    }

    pub fn list(rules: &Rules, org: &str) -> Value {
        let ids: Vec<String> = rules
            .of(org)
            .map(|o| o.rules.iter().map(|r| r.def.id.clone()).collect())
            .unwrap_or_default();
        results(ids.iter().filter_map(|id| shown(rules, org, id)).collect())
    }

    /// The request's rule definition.
    pub async fn definition(body: Body) -> Result<RuleDef, RestError> {
        let bytes = read_body(body, crate::rest::MAX_BODY).await?;
        serde_json::from_slice(&bytes).map_err(|e| RestError::bad_request(format!("the rule is not valid: {e}")))
    }

    fn new_id() -> String {
        let mut bytes = [0u8; 6];
        let _ = getrandom::getrandom(&mut bytes);
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        format!("rule-{hex}")
    }

    pub async fn create(rules: &Arc<Rules>, org: &str, mut def: RuleDef) -> Result<Value, RestError> {
        if def.id.is_empty() {
            def.id = new_id();
        }
        let id = def.id.clone();
        let (editing, edited) = (rules.clone(), org.to_string());
        blocking(move || {
            editing.edit(&edited, |defs| {
                if defs.iter().any(|d| d.id == def.id) {
                    return Err(RuleError::Exists(def.id.clone()));
                }
                defs.push(def);
                Ok(())
            })?;
            Ok(())
        })
        .await?;
        rules.listen_now();
        Ok(shown(rules, org, &id).unwrap_or(Value::Null))
    }

    pub fn read(rules: &Rules, org: &str, id: &str) -> Result<Value, RestError> {
        shown(rules, org, id).ok_or_else(|| RuleError::NotFound(id.to_string()).into())
    }

    pub async fn replace(rules: &Arc<Rules>, org: &str, id: &str, mut def: RuleDef) -> Result<Value, RestError> {
        if def.id.is_empty() {
            def.id = id.to_string();
        } else if def.id != id {
            return Err(RestError::bad_request(format!(
                "the body's id {:?} is not the path's {id:?}",
                def.id
            )));
        }
        let (editing, edited) = (rules.clone(), org.to_string());
        blocking(move || {
            editing.edit(&edited, |defs| match defs.iter_mut().find(|d| d.id == def.id) {
                Some(slot) => {
                    *slot = def;
                    Ok(())
                }
                None => Err(RuleError::NotFound(def.id.clone())),
            })?;
            Ok(())
        })
        .await?;
        rules.listen_now();
        Ok(shown(rules, org, id).unwrap_or(Value::Null))
    }

    pub async fn remove(rules: &Arc<Rules>, org: &str, id: &str) -> Result<(), RestError> {
        let (editing, edited, id) = (rules.clone(), org.to_string(), id.to_string());
        blocking(move || {
            editing.edit(&edited, |defs| {
                let before = defs.len();
                defs.retain(|d| d.id != id);
                match defs.len() < before {
                    true => Ok(()),
                    false => Err(RuleError::NotFound(id.clone())),
                }
            })?;
            Ok(())
        })
        .await
    }

    pub fn rule_alerts(rules: &Rules, org: &str, id: &str) -> Result<Value, RestError> {
        if shown(rules, org, id).is_none() {
            return Err(RuleError::NotFound(id.to_string()).into());
        }
        Ok(alerts_json(rules, org, Some(id)))
    }

    pub fn alerts_json(rules: &Rules, org: &str, rule: Option<&str>) -> Value {
        let alerts: Vec<Value> = rules
            .alerts(org, rule)
            .iter()
            .filter_map(|a| serde_json::to_value(a).ok())
            .collect();
        results(alerts)
    }
}

async fn list(state: Rest, headers: HeaderMap) -> Answer {
    let org = authenticate(&state, &headers, None).await?.app(Need::Read)?.to_string();
    json_answer(StatusCode::OK, ops::list(&state.rules, &org))
}

async fn create(state: Rest, headers: HeaderMap, body: Body) -> Answer {
    let org = authenticate(&state, &headers, None)
        .await?
        .app(Need::Admin)?
        .to_string();
    let def = ops::definition(body).await?;
    json_answer(StatusCode::CREATED, ops::create(&state.rules, &org, def).await?)
}

async fn read(state: Rest, headers: HeaderMap, p: Result<Path<String>, PathRejection>) -> Answer {
    let id = path(p)?;
    let org = authenticate(&state, &headers, None).await?.app(Need::Read)?.to_string();
    json_answer(StatusCode::OK, ops::read(&state.rules, &org, &id)?)
}

async fn replace(state: Rest, headers: HeaderMap, p: Result<Path<String>, PathRejection>, body: Body) -> Answer {
    let id = path(p)?;
    let org = authenticate(&state, &headers, None)
        .await?
        .app(Need::Admin)?
        .to_string();
    let def = ops::definition(body).await?;
    json_answer(StatusCode::OK, ops::replace(&state.rules, &org, &id, def).await?)
}

async fn remove(state: Rest, headers: HeaderMap, p: Result<Path<String>, PathRejection>) -> Answer {
    let id = path(p)?;
    let org = authenticate(&state, &headers, None)
        .await?
        .app(Need::Admin)?
        .to_string();
    ops::remove(&state.rules, &org, &id).await?;
    Ok(axum::response::IntoResponse::into_response(StatusCode::NO_CONTENT))
}

async fn rule_alerts(state: Rest, headers: HeaderMap, p: Result<Path<String>, PathRejection>) -> Answer {
    let id = path(p)?;
    let org = authenticate(&state, &headers, None).await?.app(Need::Read)?.to_string();
    json_answer(StatusCode::OK, ops::rule_alerts(&state.rules, &org, &id)?)
}

async fn alerts(state: Rest, headers: HeaderMap) -> Answer {
    let org = authenticate(&state, &headers, None).await?.app(Need::Read)?.to_string();
    json_answer(StatusCode::OK, ops::alerts_json(&state.rules, &org, None))
}
