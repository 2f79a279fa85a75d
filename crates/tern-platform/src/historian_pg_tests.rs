//! Unit tests of the PostgreSQL backend's pure parts ([`super`]); the backend against a
//! real server is tested in `crates/tern/tests/historian_pg.rs`.
#![allow(clippy::unwrap_used)]
use super::*;

#[test]
fn a_bad_connection_string_is_refused_naming_the_directive() {
    let e = parse_config("host=/tmp port=notanumber").unwrap_err().to_string();
    assert!(e.starts_with("historian_postgres:"), "{e}");
}

#[test]
fn the_target_in_logs_names_database_and_host_but_never_the_password() {
    let config = parse_config("host=db.example port=5433 user=tern password=secret dbname=iot").unwrap();
    let target = describe(&config);
    assert_eq!(target, "database iot on db.example");
    let config = parse_config("user=tern").unwrap();
    assert_eq!(describe(&config), format!("database tern on {DEFAULT_SOCKET_DIR}"));
}

#[test]
fn only_json_the_database_can_hold_gets_a_body() {
    assert_eq!(
        body_of(br#"{"d":{"temp":21.5}}"#),
        Some(serde_json::json!({"d": {"temp": 21.5}}))
    );
    assert_eq!(body_of(b"not json"), None);
    assert_eq!(body_of(br#"{"s":"a\u0000b"}"#), None);
    assert_eq!(body_of(br#"{"s":"a\U0000b"}"#), None);
}

#[test]
fn transient_and_refused_errors_are_told_apart_by_sqlstate_class() {
    assert!(transient("08006"));
    assert!(transient("57P01"));
    assert!(transient("53100"));
    assert!(!transient("22P02"));
    assert!(!transient("42P01"));
}
