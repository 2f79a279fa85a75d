//! The tern-client library against the Tern broker and against the mosquitto broker.
#![allow(clippy::unwrap_used)]
mod common;
use common::*;
use std::net::SocketAddr;
use std::time::Duration;
use tern_client::{Client, ConnectOptions, Event, Reconnect};
use tern_proto::*;

async fn next_message(events: &mut tern_client::Events) -> Publish {
    loop {
        match tokio::time::timeout(PATIENCE, events.recv())
            .await
            .expect("no event in time")
        {
            Some(Event::Message(p)) => return p,
            Some(_) => continue,
            None => panic!("event stream ended"),
        }
    }
}

/// Subscribe, publish at every QoS, receive each exactly once, under 3.1.1 and 5.0.
async fn exchange(addr: SocketAddr) {
    for version in [ProtocolVersion::V3_1_1, ProtocolVersion::V5] {
        let options = ConnectOptions::new(addr.ip().to_string(), addr.port())
            .version(version)
            .client_id(format!("lib-{version}"));
        let (client, mut events, ack) = Client::connect(options).await.unwrap();
        assert_eq!(ack.reason_code, ReasonCode::SUCCESS);
        assert_eq!(
            client.subscribe("lib/#", QoS::ExactlyOnce).await.unwrap(),
            ReasonCode::GRANTED_QOS_2
        );
        for qos in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce] {
            client
                .publish(&format!("lib/{}", qos as u8), format!("m{}", qos as u8), qos, false)
                .await
                .unwrap();
            let p = next_message(&mut events).await;
            assert_eq!((p.qos, &p.payload[..]), (qos, format!("m{}", qos as u8).as_bytes()));
        }
        // Many messages in flight at once from one task, all completed.
        let mut pending = Vec::new();
        for i in 0..100u32 {
            let message = Publish {
                dup: false,
                qos: QoS::AtLeastOnce,
                retain: false,
                topic: ByteStr::from("lib/burst"),
                packet_id: 0,
                properties: Properties::default(),
                payload: i.to_be_bytes().to_vec().into(),
            };
            pending.push(client.start_publish(message).await.unwrap());
        }
        for done in pending {
            done.await.unwrap().unwrap();
        }
        for i in 0..100u32 {
            assert_eq!(&next_message(&mut events).await.payload[..], &i.to_be_bytes());
        }
        client.disconnect().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_library_speaks_to_the_tern_broker() {
    let broker = Broker::start();
    exchange(broker.addr).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_library_speaks_to_the_mosquitto_broker() {
    let Some(mosquitto) = Mosquitto::start(None) else {
        return;
    };
    exchange(mosquitto.addr).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_connection_names_the_reason() {
    let broker = Broker::with_config("r.conf", "listener 0 127.0.0.1\nallow_anonymous false\n");
    let options = ConnectOptions::new("127.0.0.1", broker.addr.port());
    let err = Client::connect(options).await.unwrap_err();
    assert_eq!(err.to_string(), "Connection refused: not authorised");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_reconnects_and_resumes_its_session() {
    let broker = Broker::start();
    let options = ConnectOptions::new("127.0.0.1", broker.addr.port())
        .client_id("resumer")
        .clean_start(false)
        .reconnect(Some(Reconnect {
            initial_delay: Duration::from_millis(50),
            max_delay: Duration::from_millis(200),
        }));
    let (client, mut events, _) = Client::connect(options).await.unwrap();
    client.subscribe("resume/t", QoS::AtLeastOnce).await.unwrap();
    // Another connection with the same id takes the session over, then leaves: the client
    // sees its connection drop, reconnects, and the persistent session is still there.
    let mut intruder = broker.client(V311);
    intruder.connect(&connect_packet(V311, "resumer", false, 60));
    intruder.disconnect();
    loop {
        match tokio::time::timeout(PATIENCE, events.recv()).await.unwrap() {
            Some(Event::Reconnected(ack)) => {
                assert!(ack.session_present);
                break;
            }
            Some(_) => continue,
            None => panic!("stream ended"),
        }
    }
    let mut publisher = broker.connect(V311, "resume-pub");
    publisher.publish("resume/t", b"after", QoS::AtLeastOnce, false, 1);
    assert_eq!(&next_message(&mut events).await.payload[..], b"after");
}
