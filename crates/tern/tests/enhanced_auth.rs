//! MQTT 5.0 enhanced authentication (section 4.12) with SCRAM-SHA-256: credentials made
//! by `tern passwd -H scram-sha-256`, the exchange on the wire, the client library, and
//! re-authentication.
#![allow(clippy::unwrap_used)]
mod common;
use bytes::Bytes;
use common::*;
use std::process::Command;
use tern_client::{Client as LibClient, ClientError, ConnectOptions};
use tern_core::scram::ScramClient;
use tern_proto::*;

/// A broker that allows no anonymous clients and knows `alice` / `wonderland` by SCRAM.
fn broker() -> Broker {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("scram.txt");
    let out = Command::new(env!("CARGO_BIN_EXE_tern"))
        .args(["passwd", "-H", "scram-sha-256", "-c", "-b"])
        .arg(&file)
        .args(["alice", "wonderland"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(std::fs::read_to_string(&file)
        .unwrap()
        .starts_with("alice:SCRAM-SHA-256$4096:"));
    let broker = Broker::with_config(
        "auth.conf",
        &format!(
            "listener 0 127.0.0.1\nallow_anonymous false\nscram_file {}\n",
            file.display()
        ),
    );
    std::mem::forget(dir); // the broker reads the file again on SIGHUP
    broker
}

fn method() -> Property {
    Property::AuthenticationMethod(ByteStr::from("SCRAM-SHA-256"))
}

fn auth(reason_code: ReasonCode, data: Vec<u8>) -> Packet {
    Packet::Auth(Auth {
        reason_code,
        properties: Properties(vec![method(), Property::AuthenticationData(Bytes::from(data))]),
    })
}

/// Runs the exchange by hand and returns the connected raw client and its SCRAM state.
fn connect_by_hand(broker: &Broker, password: &str) -> (Client, ConnectAck) {
    let mut c = broker.client(V5);
    let (mut scram, first) = ScramClient::start("alice", password).unwrap();
    let mut connect = connect_packet(V5, "by-hand", true, 60);
    connect.properties = Properties(vec![method(), Property::AuthenticationData(Bytes::from(first))]);
    c.send(&Packet::Connect(Box::new(connect)));
    let Packet::Auth(challenge) = c.recv() else {
        panic!("expected AUTH")
    };
    assert_eq!(challenge.reason_code, ReasonCode::CONTINUE_AUTHENTICATION);
    assert_eq!(
        challenge.properties.authentication_method().as_deref(),
        Some("SCRAM-SHA-256")
    );
    let answer = scram
        .respond(&challenge.properties.authentication_data().unwrap())
        .unwrap();
    c.send(&auth(ReasonCode::CONTINUE_AUTHENTICATION, answer));
    let Packet::ConnectAck(ack) = c.recv() else {
        panic!("expected CONNACK")
    };
    if ack.reason_code.is_success() {
        assert_eq!(ack.properties.authentication_method().as_deref(), Some("SCRAM-SHA-256"));
        scram
            .verify(&ack.properties.authentication_data().unwrap())
            .expect("the broker proves it knows the credentials");
    }
    (c, ack)
}

#[test]
fn the_exchange_on_the_wire_authenticates_both_sides() {
    let broker = broker();
    let (mut c, ack) = connect_by_hand(&broker, "wonderland");
    assert_eq!(ack.reason_code, ReasonCode::SUCCESS);
    c.subscribe("t", QoS::AtMostOnce);
    let (_, ack) = connect_by_hand(&broker, "looking-glass");
    assert_eq!(ack.reason_code, ReasonCode::NOT_AUTHORIZED);
    assert!(ack
        .properties
        .reason_string()
        .is_some_and(|r| r.contains("wrong password")));
    // Without enhanced authentication, anonymous clients stay refused.
    let mut anon = broker.client(V5);
    let ack = anon.connect(&connect_packet(V5, "anon", true, 60));
    assert_eq!(ack.reason_code, ReasonCode::NOT_AUTHORIZED);
}

#[test]
fn an_unknown_method_is_refused_with_0x8c() {
    let broker = broker();
    let mut c = broker.client(V5);
    let mut connect = connect_packet(V5, "kerberos", true, 60);
    connect.properties = Properties(vec![Property::AuthenticationMethod(ByteStr::from("GSSAPI"))]);
    assert_eq!(c.connect(&connect).reason_code, ReasonCode::BAD_AUTHENTICATION_METHOD);
}

/// Sends AUTH 0x19 and answers the broker's challenge with `password`; returns the SCRAM
/// state to check the broker's final AUTH with.
fn start_reauthentication(c: &mut Client, password: &str) -> ScramClient {
    let (mut scram, first) = ScramClient::start("alice", password).unwrap();
    c.send(&auth(ReasonCode::RE_AUTHENTICATE, first));
    let Packet::Auth(challenge) = c.recv() else {
        panic!("expected AUTH 0x18")
    };
    let answer = scram
        .respond(&challenge.properties.authentication_data().unwrap())
        .unwrap();
    c.send(&auth(ReasonCode::CONTINUE_AUTHENTICATION, answer));
    scram
}

#[test]
fn re_authentication_on_the_wire_and_its_violations() {
    let broker = broker();
    let (mut c, _) = connect_by_hand(&broker, "wonderland");
    let scram = start_reauthentication(&mut c, "wonderland");
    let Packet::Auth(done) = c.recv() else {
        panic!("expected AUTH 0x00")
    };
    assert_eq!(done.reason_code, ReasonCode::SUCCESS);
    scram.verify(&done.properties.authentication_data().unwrap()).unwrap();
    c.send(&Packet::PingRequest);
    assert_eq!(c.recv(), Packet::PingResponse);
    // A re-authentication with a wrong password ends the connection.
    start_reauthentication(&mut c, "guess");
    assert_eq!(disconnect_reason(&c.expect_closed()), ReasonCode::NOT_AUTHORIZED);
    // Another method in re-authentication, or AUTH without enhanced authentication at all,
    // is a protocol error.
    let (mut c, _) = connect_by_hand(&broker, "wonderland");
    c.send(&Packet::Auth(Auth {
        reason_code: ReasonCode::RE_AUTHENTICATE,
        properties: Properties(vec![Property::AuthenticationMethod(ByteStr::from("PLAIN"))]),
    }));
    assert_eq!(disconnect_reason(&c.expect_closed()), ReasonCode::PROTOCOL_ERROR);
    let open = Broker::start();
    let mut plain = open.connect(V5, "plain");
    plain.send(&auth(ReasonCode::RE_AUTHENTICATE, Vec::new()));
    assert_eq!(disconnect_reason(&plain.expect_closed()), ReasonCode::PROTOCOL_ERROR);
    assert!(open.log_contains("[MQTT-4.12.0-7]"));
}

#[tokio::test]
async fn the_client_library_authenticates_and_re_authenticates() {
    let broker = broker();
    let options = |password: &str| {
        ConnectOptions::new("127.0.0.1", broker.addr.port())
            .client_id("lib-scram")
            .scram_sha_256("alice", password)
    };
    let (client, _events, ack) = LibClient::connect(options("wonderland")).await.unwrap();
    assert_eq!(ack.reason_code, ReasonCode::SUCCESS);
    client.reauthenticate().await.unwrap();
    client.reauthenticate().await.unwrap();
    client
        .publish("after/reauth", "x", QoS::AtLeastOnce, false)
        .await
        .unwrap();
    client.disconnect().await.unwrap();
    match LibClient::connect(options("nope")).await {
        Err(ClientError::Refused(code)) => assert_eq!(code, ReasonCode::NOT_AUTHORIZED),
        other => panic!("expected a refusal, got {:?}", other.map(|c| c.2)),
    }
}
