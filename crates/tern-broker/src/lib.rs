//! The Tern MQTT broker.
//!
//! [`Broker::bind`] opens the listeners of a [`config::Config`]; [`Broker::run`] serves
//! until its [`BrokerHandle`] says stop. Connection tasks (module `connection`) are the
//! only code that awaits a socket; the [`router::Router`] matches topics and fans out;
//! sessions hold what outlives a connection; `$SYS` and housekeeping run on one timer.

pub mod admin;
mod admission;
pub mod api_keys;
pub mod auth;
mod broker;
pub mod clock;
pub mod cluster;
pub mod config;
mod connection;
pub mod events;
pub mod file_lock;
mod http;
pub mod metrics;
pub mod policy;
mod presence;
pub mod prometheus;
mod restore;
pub mod router;
pub mod security;
pub mod session;
mod session_store;
pub mod shared;
pub mod store;
mod sys;
pub mod tls;
pub mod topic_map;
mod unix_listener;
pub mod wake;

pub use broker::{Broker, BrokerHandle, BrokerState};
pub use config::Config;
