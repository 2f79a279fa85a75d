//! The registry over REST ([`crate::rest`]): device types (`/device/types[/<t>]`),
//! devices (`/device/types/<t>/devices[/<d>]`, `/bulk/devices`), bulk add and remove
//! (`/bulk/devices/add`, `/bulk/devices/remove`), in the platform's JSON shapes.
//!
//! Listings come from the organization's file, single reads from the running registry,
//! which every write here reloads, so a read after a write sees it; writes go
//! through [`registry::edit_org`] (the same locked, atomic file change as `tern iot`), and
//! then the running registry is reloaded so the change is in force for MQTT at once.
//! A device's token is in the answer of its creation only (a device's own POST, or the
//! bulk add's results), never again.

use crate::registry::{self, RegistryError};
use crate::registry_bulk::BulkOutcome;
use crate::registry_model::{check_object, DeviceClass, DeviceType, NewDevice, OrgData};
use crate::rest::{
    authenticate, blocking, json_answer, path, read_json, Answer, Need, Page, Rest, RestError, RestState,
};
use axum::body::Body;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, RawQuery};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::Router;
use serde_json::{json, Value};
use std::sync::Arc;

pub(crate) fn routes() -> Router<Arc<RestState>> {
    Router::new()
        .route("/device/types", get(list_types).post(create_type))
        .route("/device/types/", get(list_types).post(create_type))
        .route("/device/types/{t}", get(get_type).put(update_type).delete(delete_type))
        .route("/device/types/{t}/devices", get(list_devices).post(create_device))
        // The platform's Python SDK lists a type's devices with a trailing slash.
        .route("/device/types/{t}/devices/", get(list_devices).post(create_device))
        .route(
            "/device/types/{t}/devices/{d}",
            get(get_device).put(update_device).delete(delete_device),
        )
        .route("/bulk/devices", get(all_devices))
        .route("/bulk/devices/add", post(bulk_add))
        .route("/bulk/devices/remove", post(bulk_remove))
}

/// The organization's registry as stored.
pub(crate) async fn read(state: &Arc<RestState>, org: &str) -> Result<OrgData, RestError> {
    let (dir, org) = (state.registry.data_dir().to_path_buf(), org.to_string());
    blocking(move || Ok(registry::read_org(&dir, &org)?)).await
}

/// Changes the organization's registry with `change`, then has the running registry
/// read it again.
async fn edit<T: Send + 'static>(
    state: &Arc<RestState>,
    org: &str,
    change: impl FnOnce(&mut OrgData) -> Result<T, RegistryError> + Send + 'static,
) -> Result<T, RestError> {
    let (registry, org) = (state.registry.clone(), org.to_string());
    blocking(move || {
        let out = registry::edit_org(registry.data_dir(), &org, change)?;
        registry.reload_if_changed();
        Ok(out)
    })
    .await
}

fn optional_string(body: &Value, field: &str) -> Result<Option<String>, RestError> {
    match body.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(RestError::bad_request(format!("{field} must be a string"))),
    }
}

fn object_body(body: &Value) -> Result<(), RestError> {
    body.is_object()
        .then_some(())
        .ok_or_else(|| RestError::bad_request("the body must be a JSON object"))
}

async fn list_types(state: Rest, headers: HeaderMap, RawQuery(query): RawQuery) -> Answer {
    let org = authenticate(&state, &headers, None).await?.app(Need::Read)?.to_string();
    let page = Page::parse(query.as_deref())?;
    let data = read(&state, &org).await?;
    let items = data.types.values().map(|t| (t.id.clone(), t.to_api_json()));
    json_answer(StatusCode::OK, page.answer(items))
}

async fn create_type(state: Rest, headers: HeaderMap, body: Body) -> Answer {
    let org = authenticate(&state, &headers, None)
        .await?
        .app(Need::Registry)?
        .to_string();
    let body = read_json(body).await?;
    object_body(&body)?;
    let id = optional_string(&body, "id")?.ok_or_else(|| RestError::bad_request("id is missing"))?;
    let class_id = match optional_string(&body, "classId")? {
        Some(class) => class.parse()?,
        None => DeviceClass::Device,
    };
    let new = DeviceType {
        id,
        description: optional_string(&body, "description")?,
        class_id,
        device_info: body.get("deviceInfo").cloned().unwrap_or_else(|| json!({})),
        metadata: body.get("metadata").cloned().unwrap_or_else(|| json!({})),
        created_unix: crate::registry_model::now_unix(),
    };
    let value = new.to_api_json();
    edit(&state, &org, move |data| data.add_type(new)).await?;
    json_answer(StatusCode::CREATED, value)
}

async fn get_type(state: Rest, headers: HeaderMap, t: Result<Path<String>, PathRejection>) -> Answer {
    let org = authenticate(&state, &headers, None).await?.app(Need::Read)?.to_string();
    let t = path(t)?;
    // From the running registry, which every write here reloads: no file read.
    let found = state
        .registry
        .device_type(&org, &t)
        .ok_or_else(|| RestError::not_found(format!("no device type {t}")))?;
    json_answer(StatusCode::OK, found.to_api_json())
}

async fn update_type(state: Rest, headers: HeaderMap, t: Result<Path<String>, PathRejection>, body: Body) -> Answer {
    let org = authenticate(&state, &headers, None)
        .await?
        .app(Need::Registry)?
        .to_string();
    let t = path(t)?;
    let body = read_json(body).await?;
    object_body(&body)?;
    let description = optional_string(&body, "description")?;
    let (info, metadata) = (body.get("deviceInfo").cloned(), body.get("metadata").cloned());
    let updated = edit(&state, &org, move |data| {
        let found = data
            .types
            .get_mut(&t)
            .ok_or_else(|| RegistryError::NotFound(format!("no device type {t}")))?;
        if let Some(info) = info {
            check_object("deviceInfo", &info)?;
            found.device_info = info;
        }
        if let Some(metadata) = metadata {
            check_object("metadata", &metadata)?;
            found.metadata = metadata;
        }
        if description.is_some() {
            found.description = description;
        }
        Ok(found.to_api_json())
    })
    .await?;
    json_answer(StatusCode::OK, updated)
}

async fn delete_type(state: Rest, headers: HeaderMap, t: Result<Path<String>, PathRejection>) -> Answer {
    let org = authenticate(&state, &headers, None)
        .await?
        .app(Need::Registry)?
        .to_string();
    let t = path(t)?;
    edit(&state, &org, move |data| data.remove_type(&t)).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn list_devices(
    state: Rest,
    headers: HeaderMap,
    t: Result<Path<String>, PathRejection>,
    RawQuery(query): RawQuery,
) -> Answer {
    let org = authenticate(&state, &headers, None).await?.app(Need::Read)?.to_string();
    let t = path(t)?;
    let page = Page::parse(query.as_deref())?;
    let data = read(&state, &org).await?;
    if !data.types.contains_key(&t) {
        return Err(RestError::not_found(format!("no device type {t}")));
    }
    let class = data.class_of(&t);
    let devices = data.devices.get(&t).into_iter().flat_map(|d| d.values());
    let items = devices.map(|d| (d.device_id.clone(), d.to_api_json(&org, class)));
    json_answer(StatusCode::OK, page.answer(items))
}

async fn all_devices(state: Rest, headers: HeaderMap, RawQuery(query): RawQuery) -> Answer {
    let org = authenticate(&state, &headers, None).await?.app(Need::Read)?.to_string();
    let page = Page::parse(query.as_deref())?;
    let data = read(&state, &org).await?;
    let items = data.devices.iter().flat_map(|(t, devices)| {
        let class = data.class_of(t);
        let org = &org;
        // "\u{1}" sorts before every id character, so keys sort by type, then device.
        devices
            .values()
            .map(move |d| (format!("{t}\u{1}{}", d.device_id), d.to_api_json(org, class)))
    });
    json_answer(StatusCode::OK, page.answer(items))
}

async fn create_device(state: Rest, headers: HeaderMap, t: Result<Path<String>, PathRejection>, body: Body) -> Answer {
    let org = authenticate(&state, &headers, None)
        .await?
        .app(Need::Registry)?
        .to_string();
    let t = path(t)?;
    let mut body = read_json(body).await?;
    object_body(&body)?;
    if let Value::Object(map) = &mut body {
        map.insert("typeId".into(), Value::String(t));
    }
    let new = NewDevice::from_api_json(&body, 0)
        .map_err(|e| RestError::bad_request(e.to_string().trim_start_matches("item 0: ").to_string()))?;
    let answer = edit(&state, &org, move |data| {
        let (device, token) = data.add_device(new)?;
        let mut value = device.to_api_json(data.id(), data.class_of(&device.type_id));
        if let Value::Object(map) = &mut value {
            map.insert("authToken".into(), Value::String(token));
        }
        Ok(value)
    })
    .await?;
    json_answer(StatusCode::CREATED, answer)
}

type DevicePath = Result<Path<(String, String)>, PathRejection>;

async fn get_device(state: Rest, headers: HeaderMap, p: DevicePath) -> Answer {
    let (org, device, class) = crate::rest::registered_device(&state, &headers, Need::Read, p).await?;
    json_answer(StatusCode::OK, device.to_api_json(&org, class))
}

async fn update_device(state: Rest, headers: HeaderMap, p: DevicePath, body: Body) -> Answer {
    let org = authenticate(&state, &headers, None)
        .await?
        .app(Need::Registry)?
        .to_string();
    let (t, d) = path(p)?;
    let body = read_json(body).await?;
    object_body(&body)?;
    let (info, metadata, location) = (
        body.get("deviceInfo").cloned(),
        body.get("metadata").cloned(),
        body.get("location").cloned(),
    );
    let updated = edit(&state, &org, move |data| {
        let org = data.id().to_string();
        let class = data.class_of(&t);
        let device = data
            .devices
            .get_mut(&t)
            .and_then(|of_type| of_type.get_mut(&d))
            .ok_or_else(|| RegistryError::NotFound(format!("no device {t}/{d}")))?;
        if let Some(info) = info {
            check_object("deviceInfo", &info)?;
            device.device_info = info;
        }
        if let Some(metadata) = metadata {
            check_object("metadata", &metadata)?;
            device.metadata = metadata;
        }
        if let Some(location) = location {
            check_object("location", &location)?;
            device.location = Some(location);
        }
        Ok(device.to_api_json(&org, class))
    })
    .await?;
    json_answer(StatusCode::OK, updated)
}

async fn delete_device(state: Rest, headers: HeaderMap, p: DevicePath) -> Answer {
    let org = authenticate(&state, &headers, None)
        .await?
        .app(Need::Registry)?
        .to_string();
    let (t, d) = path(p)?;
    edit(&state, &org, move |data| data.remove_device(&t, &d)).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// 201 when every item succeeded, 202 when some did not (the platform's codes).
fn bulk_status(results: &[Value]) -> StatusCode {
    match results.iter().all(|r| r["success"] == true) {
        true => StatusCode::CREATED,
        false => StatusCode::ACCEPTED,
    }
}

async fn bulk_add(state: Rest, headers: HeaderMap, body: Body) -> Answer {
    let org = authenticate(&state, &headers, None)
        .await?
        .app(Need::Registry)?
        .to_string();
    let news = NewDevice::list_from_api_json(&read_json(body).await?)?;
    let outcomes = edit(&state, &org, move |data| Ok(data.add_devices(news))).await?;
    let results: Vec<Value> = outcomes.iter().map(BulkOutcome::to_api_json).collect();
    json_answer(bulk_status(&results), Value::Array(results))
}

async fn bulk_remove(state: Rest, headers: HeaderMap, body: Body) -> Answer {
    let org = authenticate(&state, &headers, None)
        .await?
        .app(Need::Registry)?
        .to_string();
    let Value::Array(items) = read_json(body).await? else {
        return Err(RestError::bad_request(
            "a bulk remove is a JSON array of {typeId, deviceId}",
        ));
    };
    let mut wanted = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let field = |name: &str| {
            item.get(name)
                .and_then(Value::as_str)
                .map(str::to_string)
                .ok_or_else(|| RestError::bad_request(format!("item {i}: {name} is missing or not a string")))
        };
        wanted.push((field("typeId")?, field("deviceId")?));
    }
    let results = edit(&state, &org, move |data| {
        Ok(wanted
            .into_iter()
            .map(|(t, d)| match data.remove_device(&t, &d) {
                Ok(_) => json!({"typeId": t, "deviceId": d, "success": true}),
                Err(e) => json!({"typeId": t, "deviceId": d, "success": false, "message": e.to_string()}),
            })
            .collect::<Vec<Value>>())
    })
    .await?;
    let status = match bulk_status(&results) {
        StatusCode::CREATED => StatusCode::OK,
        other => other,
    };
    json_answer(status, Value::Array(results))
}
