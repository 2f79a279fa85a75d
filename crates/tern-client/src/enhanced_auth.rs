//! MQTT 5.0 enhanced authentication from the client side, with SCRAM-SHA-256: the
//! exchange between CONNECT and CONNACK, and re-authentication on a live connection.

use crate::client::ClientError;
use bytes::Bytes;
use tern_core::scram::{self, ScramClient};
use tern_proto::{Auth, ByteStr, Packet, Properties, Property, ReasonCode};

/// A user name and password for SCRAM-SHA-256.
#[derive(Clone)]
pub struct ScramLogin {
    pub user: String,
    pub password: String,
}

impl std::fmt::Debug for ScramLogin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScramLogin")
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

fn failed(e: scram::ScramError) -> ClientError {
    ClientError::Authentication(e.to_string())
}

/// An exchange in progress.
pub(crate) struct Exchange {
    client: ScramClient,
}

impl Exchange {
    /// Starts an exchange; returns it and the client-first data.
    pub fn start(login: &ScramLogin) -> Result<(Exchange, Bytes), ClientError> {
        let (client, first) = ScramClient::start(&login.user, &login.password).map_err(failed)?;
        Ok((Exchange { client }, Bytes::from(first)))
    }

    /// The properties that name the method and carry `data`.
    pub fn properties(data: Bytes) -> Vec<Property> {
        vec![
            Property::AuthenticationMethod(ByteStr::from(scram::METHOD)),
            Property::AuthenticationData(data),
        ]
    }

    /// Answers the broker's AUTH 0x18 with the AUTH 0x18 to send.
    pub fn respond(&mut self, auth: &Auth) -> Result<Packet, ClientError> {
        if auth.reason_code != ReasonCode::CONTINUE_AUTHENTICATION {
            return Err(ClientError::Authentication(format!(
                "unexpected AUTH {}",
                auth.reason_code
            )));
        }
        let challenge = auth.properties.authentication_data().unwrap_or_default();
        let answer = self.client.respond(&challenge).map_err(failed)?;
        Ok(Packet::Auth(Auth {
            reason_code: ReasonCode::CONTINUE_AUTHENTICATION,
            properties: Properties(Self::properties(Bytes::from(answer))),
        }))
    }

    /// Checks the broker's final data (in CONNACK or AUTH 0x00): it proves the broker
    /// knows the credentials.
    pub fn verify(&self, properties: &Properties) -> Result<(), ClientError> {
        let data = properties.authentication_data().unwrap_or_default();
        self.client.verify(&data).map_err(failed)
    }
}
