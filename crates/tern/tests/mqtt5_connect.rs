//! MQTT 5.0 CONNECT / CONNACK features: Response Information, server redirection, and
//! Reason Strings with the client's Request Problem Information.
#![allow(clippy::unwrap_used)]
mod common;
use common::*;
use tern_proto::*;

fn connect_with(version: ProtocolVersion, id: &str, properties: Vec<Property>) -> Connect {
    let mut connect = connect_packet(version, id, true, 60);
    connect.properties = Properties(properties);
    connect
}

#[test]
fn response_information_is_given_only_when_requested() {
    let broker = Broker::start();
    let mut c = broker.client(V5);
    let ack = c.connect(&connect_with(
        V5,
        "asker",
        vec![Property::RequestResponseInformation(1)],
    ));
    assert_eq!(ack.properties.response_information().as_deref(), Some("response/asker"));
    let mut c = broker.client(V5);
    let ack = c.connect(&connect_with(V5, "quiet", vec![]));
    assert_eq!(ack.properties.response_information(), None);
}

#[test]
fn a_configured_server_reference_redirects_clients() {
    for (moved, reason) in [
        ("false", ReasonCode::USE_ANOTHER_SERVER),
        ("true", ReasonCode::SERVER_MOVED),
    ] {
        let broker = Broker::with_config(
            "r.conf",
            &format!("listener 0 127.0.0.1\nallow_anonymous true\nserver_reference other.example:1883\nserver_moved {moved}\n"),
        );
        let mut c = broker.client(V5);
        let ack = c.connect(&connect_packet(V5, "r5", true, 60));
        assert_eq!(ack.reason_code, reason);
        assert_eq!(ack.properties.server_reference().as_deref(), Some("other.example:1883"));
        assert!(c.expect_closed().is_empty());
        let mut c = broker.client(V311);
        let ack = c.connect(&connect_packet(V311, "r3", true, 60));
        assert_eq!(ack.reason_code, ReasonCode::SERVER_UNAVAILABLE, "3.1.1 return code 3");
    }
}

#[test]
fn acknowledgements_explain_failures_unless_the_client_opts_out() {
    let broker = Broker::with_config(
        "p.conf",
        "listener 0 127.0.0.1\nallow_anonymous true\nmessage_size_limit 10\n",
    );
    for (request, expect_reason_string) in [(None, true), (Some(0u8), false)] {
        let properties = request.map(Property::RequestProblemInformation).into_iter().collect();
        let mut c = broker.client(V5);
        c.connect(&connect_with(V5, "problems", properties));
        c.send(&publish_packet("big", &[0u8; 50], QoS::AtLeastOnce, false, 1));
        let Packet::PublishAck(ack) = c.recv() else {
            panic!("no PUBACK")
        };
        assert_eq!(ack.reason_code, ReasonCode::QUOTA_EXCEEDED);
        assert_eq!(
            ack.properties.reason_string().is_some(),
            expect_reason_string,
            "{ack:?}"
        );
        // A DISCONNECT always explains itself.
        c.send(&Packet::Connect(Box::new(connect_packet(V5, "again", true, 60))));
        assert_eq!(disconnect_reason(&c.expect_closed()), ReasonCode::PROTOCOL_ERROR);
    }
}

#[test]
fn a_refused_connect_says_why() {
    let broker = Broker::with_config("a.conf", "listener 0 127.0.0.1\nallow_anonymous false\n");
    let mut c = broker.client(V5);
    let ack = c.connect(&connect_packet(V5, "anon", true, 60));
    assert_eq!(ack.reason_code, ReasonCode::NOT_AUTHORIZED);
    assert!(ack.properties.reason_string().is_some());
}
