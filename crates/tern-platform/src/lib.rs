//! The IoT platform that runs on top of the Tern broker.
//!
//! A platform organization is an isolated tenant with its own registry of device types,
//! devices, gateways and application API keys, its own `iot-2/...` topic space and its own
//! quotas. This crate holds that model and plugs into the broker through its seams
//! (authentication, authorization, topic mapping, the event stream) rather than living
//! inside it; see docs/iot-platform.md.

pub mod dm;
mod dm_device;
mod dm_requests;
mod dm_rest;
pub mod dm_share;
mod dm_store;
pub mod dm_task;
#[cfg(test)]
mod dm_tests;
pub mod dm_wire;
pub mod feed;
pub mod historian;
pub mod historian_batch;
pub mod historian_embedded;
pub mod historian_pg;
mod historian_pg_spool;
mod historian_pg_sql;
pub mod historian_query;
pub mod historian_task;
pub mod historian_topics;
pub mod identity;
pub mod lec;
pub mod lec_task;
mod org_files;
pub mod policy;
pub mod policy_gateway;
pub mod policy_quota;
pub mod registry;
pub mod registry_admin;
pub mod registry_bulk;
pub mod registry_model;
pub mod registry_ops;
mod registry_store;
pub mod rest;
mod rest_commands;
mod rest_connections;
mod rest_historian;
pub mod rest_historian_topics;
mod rest_messaging;
mod rest_mgmt;
mod rest_registry;
mod rest_rules;
pub mod rules;
pub mod rules_actions;
pub mod rules_admin;
pub mod rules_alerts;
pub mod rules_expr;
pub mod rules_task;
#[cfg(test)]
mod rules_tests;
pub mod rules_webhook;
pub mod rules_window;
pub mod status;
pub mod status_task;
pub mod token;
pub mod topics;
