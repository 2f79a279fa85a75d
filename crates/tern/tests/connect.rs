//! CONNECT / CONNACK: return codes, client identifier rules, protocol versions, takeover.
#![allow(clippy::unwrap_used)]
mod common;
use common::*;
use tern_proto::*;

#[test]
fn a_clean_connect_gets_connack_0_exact_bytes() {
    let broker = Broker::start();
    let mut c = broker.client(V311);
    c.send_raw(b"\x10\x0e\x00\x04MQTT\x04\x02\x00\x3c\x00\x02c1");
    let mut reply = [0u8; 4];
    std::io::Read::read_exact(&mut c.stream, &mut reply).unwrap();
    assert_eq!(&reply, b"\x20\x02\x00\x00");
}

#[test]
fn mqtt_3_1_clients_connect_with_mqisdp() {
    let broker = Broker::start();
    let mut c = broker.client(ProtocolVersion::V3_1);
    let ack = c.connect(&connect_packet(ProtocolVersion::V3_1, "old-client", true, 30));
    assert_eq!(ack.reason_code, ReasonCode::SUCCESS);
    c.subscribe("t", QoS::AtLeastOnce);
    c.publish("t", b"x", QoS::AtLeastOnce, false, 5);
    assert_eq!(c.recv_publish().payload, &b"x"[..]);
}

#[test]
fn an_unsupported_protocol_level_gets_return_code_1_and_is_closed() {
    let broker = Broker::start();
    let mut c = broker.client(V311);
    c.send_raw(b"\x10\x0c\x00\x04MQTT\x07\x02\x00\x3c\x00\x00");
    let seen = c.expect_closed();
    assert_eq!(
        seen,
        vec![Packet::ConnectAck(ConnectAck {
            session_present: false,
            reason_code: ReasonCode::UNSUPPORTED_PROTOCOL_VERSION,
            properties: Properties::default()
        })]
    );
    assert!(broker.log_contains("[MQTT-3.1.2-2]"));
}

#[test]
fn an_empty_client_id_with_clean_session_gets_an_id() {
    let broker = Broker::start();
    for version in VERSIONS {
        let mut c = broker.client(version);
        let ack = c.connect(&connect_packet(version, "", true, 60));
        assert_eq!(ack.reason_code, ReasonCode::SUCCESS);
        if version == V5 {
            let id = ack.properties.assigned_client_identifier().expect("assigned id");
            assert!(id.starts_with("tern-"), "{id}");
        }
    }
}

#[test]
fn an_empty_client_id_without_clean_session_is_rejected_under_3_1_1() {
    let broker = Broker::start();
    let mut c = broker.client(V311);
    c.send(&Packet::Connect(Box::new(connect_packet(V311, "", false, 60))));
    let seen = c.expect_closed();
    assert_eq!(seen.len(), 1);
    let Packet::ConnectAck(ack) = &seen[0] else {
        panic!("{seen:?}")
    };
    assert_eq!(ack.reason_code, ReasonCode::CLIENT_IDENTIFIER_NOT_VALID);
    // 5.0 assigns one instead.
    let mut c = broker.client(V5);
    let ack = c.connect(&connect_packet(V5, "", false, 60));
    assert!(ack.properties.assigned_client_identifier().is_some());
}

#[test]
fn a_second_connect_is_a_protocol_violation() {
    let broker = Broker::start();
    for version in VERSIONS {
        let mut c = broker.connect(version, "twice");
        c.send(&Packet::Connect(Box::new(connect_packet(version, "twice", true, 60))));
        let seen = c.expect_closed();
        if version == V5 {
            assert_eq!(disconnect_reason(&seen), ReasonCode::PROTOCOL_ERROR);
        } else {
            assert!(seen.is_empty(), "{seen:?}");
        }
    }
    assert!(broker.log_contains("[MQTT-3.1.0-2]"));
}

#[test]
fn a_first_packet_other_than_connect_closes_without_connack() {
    let broker = Broker::start();
    let mut c = broker.client(V311);
    c.send(&Packet::PingRequest);
    assert!(c.expect_closed().is_empty());
}

#[test]
fn a_socket_that_never_sends_connect_is_closed_after_the_connect_timeout() {
    let broker = Broker::with_config(
        "t.toml",
        "connect_timeout = 1\n[[listener]]\nport = 0\nbind_address = \"127.0.0.1\"\nallow_anonymous = true\n",
    );
    let mut c = broker.client(V311);
    assert!(c.expect_closed().is_empty());
    assert!(broker.log_contains("no CONNECT within"));
}

#[test]
fn a_new_connection_with_the_same_id_takes_over() {
    let broker = Broker::start();
    for version in VERSIONS {
        let mut first = broker.connect(version, "same-id");
        let mut second = broker.connect(version, "same-id");
        let seen = first.expect_closed();
        if version == V5 {
            assert_eq!(disconnect_reason(&seen), ReasonCode::SESSION_TAKEN_OVER);
        }
        second.send(&Packet::PingRequest);
        assert_eq!(second.recv(), Packet::PingResponse);
    }
}

#[test]
fn a_keepalive_above_max_keepalive_is_refused_for_3_1_1_and_capped_for_5() {
    let broker = Broker::with_config(
        "m.conf",
        "listener 0 127.0.0.1\nallow_anonymous true\nmax_keepalive 30\n",
    );
    let mut c = broker.client(V311);
    c.send(&Packet::Connect(Box::new(connect_packet(V311, "k", true, 60))));
    let seen = c.expect_closed();
    assert!(
        matches!(&seen[..], [Packet::ConnectAck(a)] if a.reason_code == ReasonCode::CLIENT_IDENTIFIER_NOT_VALID),
        "{seen:?}"
    );
    let mut c = broker.client(V5);
    let ack = c.connect(&connect_packet(V5, "k5", true, 60));
    assert_eq!(ack.reason_code, ReasonCode::SUCCESS);
    assert_eq!(ack.properties.server_keep_alive(), Some(30));
    let ok = broker.client(V311).connect(&connect_packet(V311, "k2", true, 30));
    assert_eq!(ok.reason_code, ReasonCode::SUCCESS);
}
