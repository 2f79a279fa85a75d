//! `tern bench --iot ORG:TYPE:DEVICE_TOKEN:API_KEY:API_TOKEN`: the same load through the
//! IoT platform's identities and topic space, to set the cost of its mapping beside a
//! plain listener's.
//!
//! Publisher `i` is device `d:ORG:TYPE:dev<i>` (registered beforehand with the token
//! DEVICE_TOKEN) publishing its events on `iot-2/evt/bench/fmt/bin`; subscriber `j` is
//! application `a:ORG:bench<j>` subscribing to those events in the application form,
//! `iot-2/type/TYPE/id/dev<i>/evt/bench/fmt/bin` (or `id/+` where the scenario's filter is
//! a wildcard). The scenario's own topics still say who should receive what.

use super::wire::Login;
use anyhow::{bail, Result};

/// The event every bench device publishes.
const EVENT_TOPIC: &str = "iot-2/evt/bench/fmt/bin";

/// The organization's names and secrets a run uses.
#[derive(Debug, Clone)]
pub struct Iot {
    org: String,
    type_id: String,
    device_token: String,
    api_key: String,
    api_token: String,
}

impl Iot {
    /// Parses `ORG:TYPE:DEVICE_TOKEN:API_KEY:API_TOKEN`.
    pub fn parse(text: &str) -> Result<Iot> {
        let parts: Vec<&str> = text.splitn(5, ':').collect();
        let [org, type_id, device_token, api_key, api_token] = parts[..] else {
            bail!("--iot takes ORG:TYPE:DEVICE_TOKEN:API_KEY:API_TOKEN");
        };
        Ok(Iot {
            org: org.into(),
            type_id: type_id.into(),
            device_token: device_token.into(),
            api_key: api_key.into(),
            api_token: api_token.into(),
        })
    }

    /// Publisher `i`: device `dev<i>`.
    pub fn publisher(&self, i: usize) -> (Login, String) {
        let login = Login {
            client_id: format!("d:{}:{}:dev{i}", self.org, self.type_id),
            credentials: Some(("use-token-auth".into(), self.device_token.clone())),
        };
        (login, EVENT_TOPIC.to_string())
    }

    /// Subscriber `j`, taking the scenario's `filter` over its publishers' `topics`.
    pub fn subscriber(&self, j: usize, filter: &str, topics: &[String]) -> (Login, String) {
        let login = Login {
            client_id: format!("a:{}:bench{j}", self.org),
            credentials: Some((self.api_key.clone(), self.api_token.clone())),
        };
        let device = match topics.iter().position(|t| t == filter) {
            Some(i) if !filter.contains(['+', '#']) => format!("dev{i}"),
            _ => "+".to_string(),
        };
        let filter = format!("iot-2/type/{}/id/{device}/evt/bench/fmt/bin", self.type_id);
        (login, filter)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_filters_name_their_device_and_wildcards_take_all() {
        let iot = Iot::parse("acme:bench:tok:a-acme-k:secret").unwrap();
        let topics = vec!["bench/in/0".to_string(), "bench/in/1".to_string()];
        assert_eq!(
            iot.subscriber(0, "bench/in/1", &topics).1,
            "iot-2/type/bench/id/dev1/evt/bench/fmt/bin"
        );
        assert_eq!(
            iot.subscriber(0, "bench/in/+", &topics).1,
            "iot-2/type/bench/id/+/evt/bench/fmt/bin"
        );
        let (login, topic) = iot.publisher(1);
        assert_eq!(
            (login.client_id.as_str(), topic.as_str()),
            ("d:acme:bench:dev1", EVENT_TOPIC)
        );
        assert!(Iot::parse("acme:bench").is_err());
    }
}
