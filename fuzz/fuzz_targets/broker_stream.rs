//! Streams fuzz input into a running broker core over an in-memory transport (a Unix
//! socket pair handed to `BrokerHandle::serve_unix`), as one client's bytes, then reads
//! whatever the broker answers until it closes. One broker serves every input, so state
//! left by earlier inputs (sessions, retained messages, subscriptions) is exercised too.
//! The durable store is on (in a temporary folder), so its write path runs too. A panic
//! anywhere in the broker aborts the process (libfuzzer's panic hook).
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;
use std::time::Duration;
use tern_broker::config::{Config, ListenerConfig};
use tern_broker::store::Durability;
use tern_broker::{Broker, BrokerHandle};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::runtime::Runtime;

fn broker() -> &'static (Runtime, BrokerHandle) {
    static BROKER: OnceLock<(Runtime, BrokerHandle)> = OnceLock::new();
    BROKER.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let config = Config {
            listeners: vec![ListenerConfig {
                port: 0,
                bind_address: Some("127.0.0.1".into()),
                allow_anonymous: Some(true),
                ..ListenerConfig::default()
            }],
            message_size_limit: 65_536,
            connect_timeout: Duration::from_millis(200),
            // The store is on, so persistent sessions, QoS 2 state and retained messages
            // from the inputs are written too (periodic: an fsync per input would only
            // slow the run down).
            persistence: true,
            persistence_location: std::env::temp_dir().join(format!("tern-fuzz-{}", std::process::id())),
            durability: Durability::Periodic(Duration::from_millis(100)),
            ..Config::default()
        };
        let broker = runtime.block_on(Broker::bind(config)).expect("bind");
        let handle = broker.handle();
        runtime.spawn(broker.run());
        (runtime, handle)
    })
}

fuzz_target!(|data: &[u8]| {
    let (runtime, handle) = broker();
    runtime.block_on(async {
        let Ok((client, server)) = tokio::net::UnixStream::pair() else {
            return;
        };
        let task = handle.serve_unix(server);
        let (mut reader, mut writer) = client.into_split();
        // Two writes, split where the first byte says, to exercise partial packets.
        let split = data.first().map_or(0, |b| usize::from(*b)).min(data.len());
        let _ = writer.write_all(&data[..split]).await;
        tokio::task::yield_now().await;
        let _ = writer.write_all(&data[split..]).await;
        let _ = writer.shutdown().await;
        let mut sink = vec![0u8; 16 * 1024];
        let _ = tokio::time::timeout(Duration::from_millis(500), async {
            while let Ok(n) = reader.read(&mut sink).await {
                if n == 0 {
                    break;
                }
            }
        })
        .await;
        drop(reader);
        let _ = tokio::time::timeout(Duration::from_secs(2), task).await;
    });
});
