//! The broker core over an in-memory transport (`BrokerHandle::serve_unix`): the path the
//! fuzz target streams its input through, checked with exact bytes.
#![allow(clippy::unwrap_used)]
use std::time::Duration;
use tern_broker::config::{Config, ListenerConfig};
use tern_broker::Broker;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

const CONNECT_311: &[u8] = b"\x10\x0f\x00\x04MQTT\x04\x02\x00\x3c\x00\x03mem";
const CONNACK_OK: &[u8] = b"\x20\x02\x00\x00";

async fn read_exactly(stream: &mut UnixStream, n: usize) -> Vec<u8> {
    let mut buf = vec![0u8; n];
    tokio::time::timeout(Duration::from_secs(5), stream.read_exact(&mut buf))
        .await
        .unwrap()
        .unwrap();
    buf
}

#[tokio::test]
async fn a_client_over_a_unix_stream_pair_is_served_like_a_tcp_one() {
    let config = Config {
        listeners: vec![ListenerConfig {
            port: 0,
            bind_address: Some("127.0.0.1".into()),
            allow_anonymous: Some(true),
            ..ListenerConfig::default()
        }],
        ..Config::default()
    };
    let broker = Broker::bind(config).await.unwrap();
    let handle = broker.handle();
    tokio::spawn(broker.run());

    let (mut sub, server) = UnixStream::pair().unwrap();
    handle.serve_unix(server);
    sub.write_all(CONNECT_311).await.unwrap();
    assert_eq!(read_exactly(&mut sub, 4).await, CONNACK_OK);
    // SUBSCRIBE mem/t at QoS 0 -> SUBACK granted 0.
    sub.write_all(b"\x82\x0a\x00\x01\x00\x05mem/t\x00").await.unwrap();
    assert_eq!(read_exactly(&mut sub, 5).await, b"\x90\x03\x00\x01\x00");

    let (mut publisher, server) = UnixStream::pair().unwrap();
    handle.serve_unix(server);
    publisher
        .write_all(b"\x10\x0f\x00\x04MQTT\x04\x02\x00\x3c\x00\x03pub")
        .await
        .unwrap();
    assert_eq!(read_exactly(&mut publisher, 4).await, CONNACK_OK);
    publisher.write_all(b"\x30\x09\x00\x05mem/thi").await.unwrap();
    assert_eq!(read_exactly(&mut sub, 11).await, b"\x30\x09\x00\x05mem/thi");

    // Garbage closes only that stream.
    let (mut bad, server) = UnixStream::pair().unwrap();
    let task = handle.serve_unix(server);
    bad.write_all(b"\x00\x00\x00\x00").await.unwrap();
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), bad.read_to_end(&mut rest))
        .await
        .unwrap();
    assert!(rest.is_empty());
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .unwrap()
        .unwrap();
    publisher.write_all(b"\x30\x09\x00\x05mem/tok").await.unwrap();
    assert_eq!(read_exactly(&mut sub, 11).await, b"\x30\x09\x00\x05mem/tok");
    handle.shutdown();
}
