//! Adding many devices in one change, in the shapes of the platform's
//! `POST /api/v0002/bulk/devices/add`: a JSON array of `{typeId, deviceId, authToken?,
//! deviceInfo?, location?, metadata?}` in, one result per device out (`{typeId, deviceId,
//! success, authToken}` or `{..., success: false, message}`), the generated tokens shown
//! only there. One write of the organization's file for the whole batch, which is what
//! makes registering a fleet affordable. Used by `tern iot device bulk-add` and, later,
//! the REST API.

use crate::registry::RegistryError;
use crate::registry_model::{GatewayRef, NewDevice, OrgData};
use serde_json::{json, Value};

/// The outcome for one device of a batch.
#[derive(Debug)]
pub struct BulkOutcome {
    pub type_id: String,
    pub device_id: String,
    /// The device's token (shown only now), or why it was not added.
    pub result: Result<String, RegistryError>,
}

impl BulkOutcome {
    /// As the REST API answers it.
    pub fn to_api_json(&self) -> Value {
        match &self.result {
            Ok(token) => json!({
                "typeId": self.type_id, "deviceId": self.device_id, "success": true, "authToken": token,
            }),
            Err(e) => json!({
                "typeId": self.type_id, "deviceId": self.device_id, "success": false, "message": e.to_string(),
            }),
        }
    }
}

fn string_field(item: &Value, field: &str, index: usize) -> Result<Option<String>, RegistryError> {
    match item.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(RegistryError::Invalid(format!(
            "item {index}: {field} must be a string"
        ))),
    }
}

impl NewDevice {
    /// One item of a bulk add (`index` is for messages).
    pub fn from_api_json(item: &Value, index: usize) -> Result<NewDevice, RegistryError> {
        if !item.is_object() {
            return Err(RegistryError::Invalid(format!("item {index} is not a JSON object")));
        }
        let required = |field: &str| {
            string_field(item, field, index)?
                .ok_or_else(|| RegistryError::Invalid(format!("item {index}: {field} is missing")))
        };
        let gateway = match item.get("gateway") {
            None | Some(Value::Null) => None,
            Some(g) => Some(GatewayRef {
                type_id: string_field(g, "typeId", index)?.unwrap_or_default(),
                device_id: string_field(g, "deviceId", index)?.unwrap_or_default(),
            }),
        };
        Ok(NewDevice {
            type_id: required("typeId")?,
            device_id: required("deviceId")?,
            token: string_field(item, "authToken", index)?,
            device_info: item.get("deviceInfo").cloned(),
            location: item.get("location").cloned(),
            metadata: item.get("metadata").cloned(),
            gateway,
        })
    }

    /// The items of a bulk add: a JSON array of device objects.
    pub fn list_from_api_json(body: &Value) -> Result<Vec<NewDevice>, RegistryError> {
        let Value::Array(items) = body else {
            return Err(RegistryError::Invalid(
                "a bulk add is a JSON array of devices".to_string(),
            ));
        };
        items
            .iter()
            .enumerate()
            .map(|(i, item)| NewDevice::from_api_json(item, i))
            .collect()
    }
}

impl OrgData {
    /// Adds each device it can; one that cannot be added (duplicate, unknown type, bad id,
    /// quota) is reported and does not stop the others.
    pub fn add_devices(&mut self, devices: Vec<NewDevice>) -> Vec<BulkOutcome> {
        devices
            .into_iter()
            .map(|new| {
                let (type_id, device_id) = (new.type_id.clone(), new.device_id.clone());
                let result = self.add_device(new).map(|(_, token)| token);
                BulkOutcome {
                    type_id,
                    device_id,
                    result,
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry_model::{DeviceClass, DeviceType};

    #[test]
    fn a_bulk_add_keeps_what_it_can_and_says_why_not_for_the_rest() {
        let mut org = OrgData::new("acme");
        let t = DeviceType {
            id: "t".into(),
            description: None,
            class_id: DeviceClass::Device,
            device_info: json!({}),
            metadata: json!({}),
            created_unix: 0,
        };
        org.add_type(t).unwrap_or_else(|e| panic!("{e}"));
        let body = json!([
            {"typeId": "t", "deviceId": "a", "authToken": "chosen-token-1", "metadata": {"x": 1}},
            {"typeId": "t", "deviceId": "b"},
            {"typeId": "t", "deviceId": "a"},
            {"typeId": "nope", "deviceId": "c"},
        ]);
        let news = NewDevice::list_from_api_json(&body).unwrap_or_else(|e| panic!("{e}"));
        let out: Vec<Value> = org.add_devices(news).iter().map(BulkOutcome::to_api_json).collect();
        assert_eq!(out[0]["authToken"], "chosen-token-1");
        assert_eq!(out[1]["success"], true);
        assert!(out[1]["authToken"].as_str().is_some_and(|t| t.len() == 24));
        assert_eq!(out[2]["success"], false);
        assert!(out[2]["message"].as_str().is_some_and(|m| m.contains("already exists")));
        assert!(out[3]["message"]
            .as_str()
            .is_some_and(|m| m.contains("no device type nope")));
        assert_eq!(org.device_count(), 2);
        assert_eq!(org.device("t", "a").map(|d| d.metadata.clone()), Some(json!({"x": 1})));
    }

    #[test]
    fn malformed_items_are_named() {
        let e = NewDevice::list_from_api_json(&json!([{"typeId": "t"}]))
            .err()
            .map(|e| e.to_string());
        assert_eq!(e.as_deref(), Some("item 0: deviceId is missing"));
        let e = NewDevice::list_from_api_json(&json!([{"typeId": "t", "deviceId": 5}]))
            .err()
            .map(|e| e.to_string());
        assert_eq!(e.as_deref(), Some("item 0: deviceId must be a string"));
        assert!(NewDevice::list_from_api_json(&json!({})).is_err());
    }
}
