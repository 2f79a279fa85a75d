//! What one client's overlapping wildcard filters cost every publish: the router's
//! publish for a topic that all of them match, with N filters held by one session and one
//! plain subscriber beside it. N = 1,000 is the default max_subscriptions_per_client;
//! 16,384 is what a client could hold without the limit (the attack in issue 12).

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion};
use std::sync::Arc;
use tern_broker::metrics::Metrics;
use tern_broker::router::Router;
use tern_broker::session::Sessions;
use tern_core::OutboxLimits;
use tern_proto::{ByteStr, Properties, Publish, QoS, SubscriptionOptions};

const LEVELS: usize = 14;

/// The `n` first filters of the 2^14 that match the 14-level topic (each level literal or
/// `+`).
fn overlapping_filters(n: usize) -> Vec<ByteStr> {
    (0..n)
        .map(|mask| {
            let levels: Vec<String> = (0..LEVELS)
                .map(|l| {
                    if mask & (1 << l) != 0 {
                        "+".into()
                    } else {
                        format!("l{l}")
                    }
                })
                .collect();
            ByteStr::from(levels.join("/"))
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let topic: Vec<String> = (0..LEVELS).map(|l| format!("l{l}")).collect();
    let publish = Publish {
        dup: false,
        qos: QoS::AtMostOnce,
        retain: false,
        topic: ByteStr::from(topic.join("/")),
        packet_id: 0,
        properties: Properties::default(),
        payload: bytes::Bytes::from_static(b"21.5"),
    };
    let limits = OutboxLimits {
        max_inflight: 20,
        max_queued_messages: 1000,
        max_queued_bytes: 0,
        max_inflight_bytes: 0,
    };
    let mut group = c.benchmark_group("publish_with_one_clients_overlapping_filters");
    for n in [1usize, 100, 1000, 16_384] {
        let sessions = Sessions::default();
        let router = Router::with_store(None);
        let metrics = Metrics::default();
        let attacker = sessions.create(ByteStr::from("attacker"), limits, true);
        let control = sessions.create(ByteStr::from("control"), limits, true);
        let options = SubscriptionOptions::default();
        for filter in overlapping_filters(n) {
            router.subscribe(&attacker, &filter, options, None);
        }
        router.subscribe(&control, &publish.topic, options, None);
        // Offline clean sessions drop QoS 0 at once: what is measured is finding and
        // merging the receivers, which is what grows with N.
        let _keep: Vec<Arc<_>> = vec![attacker, control];
        group.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, _| {
            b.iter(|| router.publish(black_box(&publish), None, &metrics))
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
