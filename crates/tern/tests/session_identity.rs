//! A session belongs to the identity that made it: another user connecting with the same
//! client id starts a new session and never receives the old one's messages (mosquitto's
//! behaviour), under 3.1.1 and 5.0.
#![allow(clippy::unwrap_used)]
mod common;
use bytes::Bytes;
use common::*;
use std::path::Path;
use tern_proto::*;

fn broker(dir: &Path) -> Broker {
    let passwords = dir.join("passwd");
    tern_passwd(&passwords, "alice", "apple", true);
    tern_passwd(&passwords, "bob", "banana", false);
    let acl = dir.join("acl");
    std::fs::write(
        &acl,
        "user alice\ntopic readwrite alice/#\nuser bob\ntopic readwrite bob/#\n",
    )
    .unwrap();
    Broker::with_config(
        "identity.conf",
        &format!(
            "listener 0 127.0.0.1\nallow_anonymous false\npassword_file {}\nacl_file {}\n",
            passwords.display(),
            acl.display()
        ),
    )
}

fn login(version: ProtocolVersion, client_id: &str, user: &str, password: &str) -> Connect {
    let mut connect = connect_packet(version, client_id, false, 60);
    connect.username = Some(ByteStr::from(user));
    connect.password = Some(Bytes::copy_from_slice(password.as_bytes()));
    if version.is_v5() {
        connect.properties.push(Property::SessionExpiryInterval(3600));
    }
    connect
}

#[test]
fn another_user_taking_over_a_client_id_gets_none_of_its_messages() {
    for version in VERSIONS {
        let dir = tempfile::tempdir().unwrap();
        let broker = broker(dir.path());
        let mut alice = broker.client(version);
        assert_eq!(
            alice
                .connect(&login(version, "shared-id", "alice", "apple"))
                .reason_code,
            ReasonCode::SUCCESS
        );
        alice.subscribe("alice/#", QoS::AtLeastOnce);
        alice.disconnect();

        let mut sender = broker.client(version);
        sender.connect(&login(version, "alice-sender", "alice", "apple"));
        for i in 1..=3u16 {
            sender.publish(
                "alice/private",
                format!("secret {i}").as_bytes(),
                QoS::AtLeastOnce,
                false,
                i,
            );
        }

        let mut bob = broker.client(version);
        let ack = bob.connect(&login(version, "shared-id", "bob", "banana"));
        assert_eq!(ack.reason_code, ReasonCode::SUCCESS);
        assert!(!ack.session_present, "{version:?}: bob does not resume alice's session");
        let seen = bob.ping_collect();
        assert!(seen.is_empty(), "{version:?}: bob received {seen:?}");
        // alice's subscription did not pass to bob either.
        sender.publish("alice/private", b"later", QoS::AtLeastOnce, false, 9);
        assert!(
            bob.ping_collect().is_empty(),
            "{version:?}: bob holds no alice/# subscription"
        );
        bob.disconnect();
        assert!(broker.log_contains("session of user \"alice\" discarded"));

        // The same user resumes as before.
        let mut again = broker.client(version);
        let ack = again.connect(&login(version, "shared-id", "bob", "banana"));
        assert!(ack.session_present, "{version:?}: bob's own session resumes");
    }
}

#[test]
fn connect_and_refusal_log_lines_name_the_user() {
    let dir = tempfile::tempdir().unwrap();
    let broker = broker(dir.path());
    let mut alice = broker.client(V311);
    assert_eq!(
        alice.connect(&login(V311, "alice-1", "alice", "apple")).reason_code,
        ReasonCode::SUCCESS
    );
    let mut wrong = broker.client(V5);
    let ack = wrong.connect(&login(V5, "bob-1", "bob", "not-his"));
    assert!(!ack.reason_code.is_success());
    // The connect line follows the CONNACK: wait for it.
    assert!(
        broker.log_contains("client=alice-1 user=\"alice\""),
        "the connect line names the user"
    );
    assert!(
        broker.log_contains("client=\"bob-1\" user=\"bob\""),
        "the refusal names the user"
    );
}
