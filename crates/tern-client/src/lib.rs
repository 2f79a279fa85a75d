//! An async MQTT client for tokio, speaking MQTT 3.1, 3.1.1 and 5.0.
//!
//! [`Client::connect`] opens the connection, sends CONNECT and waits for CONNACK, then
//! hands the socket to a background task that owns it: the task writes what the
//! [`Client`] handles ask for, reads what the broker sends, keeps the QoS 1 and 2 state
//! (packet identifiers, the in-flight window, resending with DUP after a reconnect),
//! answers acknowledgements, sends PINGREQ when the connection is idle, and optionally
//! reconnects with exponential backoff. Incoming messages arrive on the [`Events`] stream.
//!
//! ```no_run
//! use tern_client::{Client, ConnectOptions, Event};
//! use tern_proto::QoS;
//!
//! # async fn demo() -> Result<(), tern_client::ClientError> {
//! let options = ConnectOptions::new("127.0.0.1", 1883).client_id("sensor-1");
//! let (client, mut events, _connack) = Client::connect(options).await?;
//! client.subscribe("commands/#", QoS::AtLeastOnce).await?;
//! client.publish("sensors/temperature", "21.5", QoS::AtLeastOnce, false).await?;
//! while let Some(event) = events.recv().await {
//!     if let Event::Message(message) = event {
//!         println!("{} {:?}", message.topic, message.payload);
//!     }
//! }
//! # Ok(())
//! # }
//! ```
//!
//! The transport is any `AsyncRead + AsyncWrite` stream ([`Client::connect_with`]), so TLS
//! plugs in without touching the protocol code.

mod client;
mod enhanced_auth;
mod event_loop;
mod options;
mod tls;

pub use client::{Client, ClientError, Event, Events};
pub use enhanced_auth::ScramLogin;
pub use options::{ConnectOptions, Direction, PacketTrace, Reconnect};
pub use tern_proto;
pub use tls::{client_config, TlsOptions};
