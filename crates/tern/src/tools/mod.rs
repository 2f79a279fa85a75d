//! `tern pub`, `tern sub`, `tern rr` and `tern passwd`: mosquitto's client tools with the
//! same flags, letters and meanings, built on tern-client.

pub mod common;
pub mod debug;
pub mod format;
pub mod passwd_cmd;
pub mod pub_cmd;
pub mod rr_cmd;
pub mod sub_cmd;
