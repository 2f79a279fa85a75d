//! Enhanced authentication on the wire (MQTT 5.0 section 4.12): the AUTH exchange between
//! CONNECT and CONNACK, and re-authentication of a connected client with AUTH 0x19.

use super::connect_read::{read_packet, ReadError};
use super::transport::Socket;
use super::{Close, Connection};
use crate::auth::{AuthExchange, AuthStep};
use crate::broker::BrokerState;
use bytes::{Bytes, BytesMut};
use std::time::Duration;
use tern_proto::{encode, Auth, ByteStr, Connect, Packet, Properties, Property, ProtocolVersion, ReasonCode};

/// The method a connection authenticated with, and a re-authentication in progress.
pub(crate) struct ConnectionAuth {
    pub method: ByteStr,
    pub exchange: Option<Box<dyn AuthExchange>>,
}

/// A successful CONNECT-time exchange.
pub(super) struct Authenticated {
    pub user: String,
    /// Authentication Data for the CONNACK.
    pub data: Option<Vec<u8>>,
}

fn auth_packet(reason_code: ReasonCode, method: &ByteStr, data: Option<Vec<u8>>) -> Packet {
    let mut properties = Properties(vec![Property::AuthenticationMethod(method.clone())]);
    if let Some(data) = data {
        properties.push(Property::AuthenticationData(Bytes::from(data)));
    }
    Packet::Auth(Auth {
        reason_code,
        properties,
    })
}

/// Runs the exchange a CONNECT with Authentication Method `method` starts, reading the
/// client's AUTH packets within `timeout` each. On failure: the reason code and why.
pub(super) async fn authenticate(
    connect: &Connect,
    method: &ByteStr,
    broker: &BrokerState,
    (socket, input): (&mut Socket, &mut BytesMut),
    timeout: Duration,
) -> Result<Authenticated, (ReasonCode, String)> {
    let Some(authenticator) = broker.authenticator(method) else {
        let why = format!("authentication method {method:?} is not offered");
        return Err((ReasonCode::BAD_AUTHENTICATION_METHOD, why));
    };
    let mut exchange = authenticator.start();
    let mut data = connect.properties.authentication_data().unwrap_or_default();
    let max = broker.config().max_connect_packet_size();
    loop {
        match exchange.step(&data) {
            AuthStep::Success { user, data } => return Ok(Authenticated { user, data }),
            AuthStep::Failure { reason, why } => return Err((reason, why)),
            AuthStep::Continue(challenge) => {
                let mut out = BytesMut::new();
                let packet = auth_packet(ReasonCode::CONTINUE_AUTHENTICATION, method, Some(challenge));
                if encode(&packet, ProtocolVersion::V5, &mut out).is_err() || socket.write_all(&out).await.is_err() {
                    return Err((ReasonCode::UNSPECIFIED_ERROR, "cannot send AUTH".into()));
                }
                let read = tokio::time::timeout(timeout, read_packet(socket, input, ProtocolVersion::V5, max)).await;
                data = match read {
                    Ok(Ok(Packet::Auth(auth))) => {
                        continuation(&auth, method).map_err(|why| (ReasonCode::PROTOCOL_ERROR, why))?
                    }
                    Ok(Ok(other)) => {
                        let why = format!(
                            "[MQTT-4.12.0-3] expected AUTH during authentication, got {}",
                            other.packet_type()
                        );
                        return Err((ReasonCode::PROTOCOL_ERROR, why));
                    }
                    Ok(Err(ReadError::Malformed(e))) => return Err((e.reason_code(), e.to_string())),
                    Ok(Err(_)) => return Err((ReasonCode::UNSPECIFIED_ERROR, "closed during authentication".into())),
                    Err(_) => return Err((ReasonCode::NOT_AUTHORIZED, "no AUTH within the connect timeout".into())),
                };
            }
        }
    }
}

/// The data of an AUTH 0x18 that continues an exchange through `method`.
fn continuation(auth: &Auth, method: &ByteStr) -> Result<Bytes, String> {
    if auth.reason_code != ReasonCode::CONTINUE_AUTHENTICATION {
        return Err(format!(
            "AUTH {} where 0x18 Continue authentication was due",
            auth.reason_code
        ));
    }
    if auth.properties.authentication_method().as_ref() != Some(method) {
        return Err("[MQTT-4.12.0-5] AUTH names another Authentication Method than CONNECT".into());
    }
    Ok(auth.properties.authentication_data().unwrap_or_default())
}

impl Connection {
    /// An AUTH from a connected client: starts (0x19) or continues (0x18) a
    /// re-authentication through the method the connection authenticated with.
    pub(super) fn on_auth(&mut self, auth: Auth) -> Result<(), Close> {
        let Some(state) = self.auth.as_deref_mut() else {
            return Err(Close::violation(
                ReasonCode::PROTOCOL_ERROR,
                "[MQTT-4.12.0-7] AUTH without an Authentication Method in CONNECT",
            ));
        };
        if auth.properties.authentication_method().as_ref() != Some(&state.method) {
            return Err(Close::violation(
                ReasonCode::PROTOCOL_ERROR,
                "[MQTT-4.12.1-1] re-authentication must use the Authentication Method of CONNECT",
            ));
        }
        let data = auth.properties.authentication_data().unwrap_or_default();
        let mut exchange = match (auth.reason_code, state.exchange.take()) {
            (ReasonCode::RE_AUTHENTICATE, None) => match self.broker.authenticator(&state.method) {
                Some(authenticator) => authenticator.start(),
                None => {
                    return Err(Close::violation(
                        ReasonCode::NOT_AUTHORIZED,
                        "the authentication method is no longer offered",
                    ))
                }
            },
            (ReasonCode::CONTINUE_AUTHENTICATION, Some(exchange)) => exchange,
            (code, _) => {
                return Err(Close::violation(
                    ReasonCode::PROTOCOL_ERROR,
                    format!("AUTH {code} out of turn in re-authentication"),
                ))
            }
        };
        let method = state.method.clone();
        match exchange.step(&data) {
            AuthStep::Continue(challenge) => {
                state.exchange = Some(exchange);
                self.send(&auth_packet(
                    ReasonCode::CONTINUE_AUTHENTICATION,
                    &method,
                    Some(challenge),
                ));
            }
            AuthStep::Success { user, data } => {
                if self.user.as_deref().is_some_and(|u| u != user) {
                    return Err(Close::violation(
                        ReasonCode::NOT_AUTHORIZED,
                        "re-authentication as another user",
                    ));
                }
                tracing::info!(client = %self.session.client_id, %user, "re-authenticated");
                self.send(&auth_packet(ReasonCode::SUCCESS, &method, data));
            }
            AuthStep::Failure { reason, why } => {
                return Err(Close::violation(reason, format!("re-authentication failed: {why}")))
            }
        }
        Ok(())
    }
}
