//! The REST API of analytics rules ([`crate::rules`]): `GET|POST /rules`,
//! `GET|PUT|DELETE /rules/<id>`, `GET /rules/<id>/alerts` and `GET /alerts`. Any key of
//! the organization reads; changing rules needs the `admin` role (a rule can call any
//! URL as a webhook). A rule is checked whole before it is stored: a refusal is a 400
//! naming what is wrong (for a condition, the position). Stored rules take effect at once:
//! the change is written to the organization's rules file, loaded, and the consumer told
//! to listen before the answer goes out.

use crate::rest::{authenticate, blocking, json_answer, path, read_body, Answer, Need, Rest, RestError, RestState};
use crate::rules::{RuleDef, RuleError};
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

/// A rule as the API shows it: its definition and its counters.
fn shown(state: &RestState, org: &str, id: &str) -> Option<Value> {
    let rules = state.rules.of(org)?;
    let rule = rules.rules.iter().find(|r| r.def.id == id)?;
    let mut value = serde_json::to_value(&rule.def).ok()?;
    if let Value::Object(map) = &mut value {
        map.insert("counters".into(), rule.counters.json());
    }
    Some(value)
}

async fn list(state: Rest, headers: HeaderMap) -> Answer {
    let org = authenticate(&state, &headers, None).await?.app(Need::Read)?.to_string();
    let ids: Vec<String> = state
        .rules
        .of(&org)
        .map(|o| o.rules.iter().map(|r| r.def.id.clone()).collect())
        .unwrap_or_default();
    let results: Vec<Value> = ids.iter().filter_map(|id| shown(&state, &org, id)).collect();
    json_answer(
        StatusCode::OK,
        json!({"results": results, "meta": {"total_rows": results.len()}}),
    )
}

/// The request's rule definition.
async fn definition(body: Body) -> Result<RuleDef, RestError> {
    let bytes = read_body(body, crate::rest::MAX_BODY).await?;
    serde_json::from_slice(&bytes).map_err(|e| RestError::bad_request(format!("the rule is not valid: {e}")))
}

fn new_id() -> String {
    let mut bytes = [0u8; 6];
    let _ = getrandom::getrandom(&mut bytes);
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("rule-{hex}")
}

async fn create(state: Rest, headers: HeaderMap, body: Body) -> Answer {
    let org = authenticate(&state, &headers, None)
        .await?
        .app(Need::Admin)?
        .to_string();
    let mut def = definition(body).await?;
    if def.id.is_empty() {
        def.id = new_id();
    }
    let id = def.id.clone();
    let (rules, edited) = (state.rules.clone(), org.clone());
    blocking(move || {
        rules.edit(&edited, |defs| {
            if defs.iter().any(|d| d.id == def.id) {
                return Err(RuleError::Exists(def.id.clone()));
            }
            defs.push(def);
            Ok(())
        })?;
        Ok(())
    })
    .await?;
    state.rules.listen_now();
    let shown = shown(&state, &org, &id).unwrap_or(Value::Null);
    json_answer(StatusCode::CREATED, shown)
}

async fn read(state: Rest, headers: HeaderMap, p: Result<Path<String>, PathRejection>) -> Answer {
    let id = path(p)?;
    let org = authenticate(&state, &headers, None).await?.app(Need::Read)?.to_string();
    match shown(&state, &org, &id) {
        Some(value) => json_answer(StatusCode::OK, value),
        None => Err(RuleError::NotFound(id).into()),
    }
}

async fn replace(state: Rest, headers: HeaderMap, p: Result<Path<String>, PathRejection>, body: Body) -> Answer {
    let id = path(p)?;
    let org = authenticate(&state, &headers, None)
        .await?
        .app(Need::Admin)?
        .to_string();
    let mut def = definition(body).await?;
    if def.id.is_empty() {
        def.id = id.clone();
    } else if def.id != id {
        return Err(RestError::bad_request(format!(
            "the body's id {:?} is not the path's {id:?}",
            def.id
        )));
    }
    let (rules, edited) = (state.rules.clone(), org.clone());
    blocking(move || {
        rules.edit(&edited, |defs| match defs.iter_mut().find(|d| d.id == def.id) {
            Some(slot) => {
                *slot = def;
                Ok(())
            }
            None => Err(RuleError::NotFound(def.id.clone())),
        })?;
        Ok(())
    })
    .await?;
    state.rules.listen_now();
    json_answer(StatusCode::OK, shown(&state, &org, &id).unwrap_or(Value::Null))
}

async fn remove(state: Rest, headers: HeaderMap, p: Result<Path<String>, PathRejection>) -> Answer {
    let id = path(p)?;
    let org = authenticate(&state, &headers, None)
        .await?
        .app(Need::Admin)?
        .to_string();
    let rules = state.rules.clone();
    blocking(move || {
        rules.edit(&org, |defs| {
            let before = defs.len();
            defs.retain(|d| d.id != id);
            match defs.len() < before {
                true => Ok(()),
                false => Err(RuleError::NotFound(id.clone())),
            }
        })?;
        Ok(())
    })
    .await?;
    Ok(axum::response::IntoResponse::into_response(StatusCode::NO_CONTENT))
}

async fn rule_alerts(state: Rest, headers: HeaderMap, p: Result<Path<String>, PathRejection>) -> Answer {
    let id = path(p)?;
    let org = authenticate(&state, &headers, None).await?.app(Need::Read)?.to_string();
    if shown(&state, &org, &id).is_none() {
        return Err(RuleError::NotFound(id).into());
    }
    let results = state.rules.alerts(&org, Some(&id));
    json_answer(
        StatusCode::OK,
        json!({"results": results, "meta": {"total_rows": results.len()}}),
    )
}

async fn alerts(state: Rest, headers: HeaderMap) -> Answer {
    let org = authenticate(&state, &headers, None).await?.app(Need::Read)?.to_string();
    let results = state.rules.alerts(&org, None);
    json_answer(
        StatusCode::OK,
        json!({"results": results, "meta": {"total_rows": results.len()}}),
    )
}
