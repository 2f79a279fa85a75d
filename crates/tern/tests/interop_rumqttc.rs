//! Interop with the rumqttc crate (bytebeam), MQTT 3.1.1 and 5.0: a Rust client nobody
//! here wrote subscribes, publishes at QoS 0, 1 and 2 and receives through the broker.
#![allow(clippy::unwrap_used)]
mod common;
use common::*;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rumqttc_3_1_1_round_trip_at_every_qos() {
    use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
    let broker = Broker::start();
    let mut options = MqttOptions::new("rumqttc-v4", "127.0.0.1", broker.addr.port());
    options.set_keep_alive(Duration::from_secs(10));
    let (client, mut events) = AsyncClient::new(options, 16);
    client.subscribe("rq/#", QoS::ExactlyOnce).await.unwrap();
    let mut received = Vec::new();
    let mut published = false;
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while received.len() < 3 {
        let event = tokio::time::timeout_at(deadline, events.poll())
            .await
            .expect("timed out")
            .unwrap();
        match event {
            Event::Incoming(Packet::SubAck(_)) if !published => {
                published = true;
                for (qos, name) in [(QoS::AtMostOnce, "0"), (QoS::AtLeastOnce, "1"), (QoS::ExactlyOnce, "2")] {
                    client
                        .publish(format!("rq/{name}"), qos, false, format!("rumqttc {name}"))
                        .await
                        .unwrap();
                }
            }
            Event::Incoming(Packet::Publish(p)) => received.push((p.topic.clone(), p.qos, p.payload.to_vec())),
            _ => {}
        }
    }
    received.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        received,
        vec![
            ("rq/0".to_string(), QoS::AtMostOnce, b"rumqttc 0".to_vec()),
            ("rq/1".to_string(), QoS::AtLeastOnce, b"rumqttc 1".to_vec()),
            ("rq/2".to_string(), QoS::ExactlyOnce, b"rumqttc 2".to_vec()),
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rumqttc_5_round_trip_with_user_properties() {
    use rumqttc::v5::mqttbytes::v5::{Packet, PublishProperties};
    use rumqttc::v5::mqttbytes::QoS;
    use rumqttc::v5::{AsyncClient, Event, MqttOptions};
    let broker = Broker::start();
    let options = MqttOptions::new("rumqttc-v5", "127.0.0.1", broker.addr.port());
    let (client, mut events) = AsyncClient::new(options, 16);
    client.subscribe("r5/t", QoS::AtLeastOnce).await.unwrap();
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let event = tokio::time::timeout_at(deadline, events.poll())
            .await
            .expect("timed out")
            .unwrap();
        match event {
            Event::Incoming(Packet::SubAck(_)) => {
                let properties = PublishProperties {
                    user_properties: vec![("site".into(), "lab".into())],
                    ..Default::default()
                };
                client
                    .publish_with_properties("r5/t", QoS::AtLeastOnce, false, "five", properties)
                    .await
                    .unwrap();
            }
            Event::Incoming(Packet::Publish(p)) => {
                assert_eq!(&p.payload[..], b"five");
                let props = p.properties.expect("properties forwarded");
                assert_eq!(props.user_properties, vec![("site".to_string(), "lab".to_string())]);
                break;
            }
            _ => {}
        }
    }
}
