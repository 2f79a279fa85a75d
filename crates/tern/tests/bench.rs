//! `tern bench` against the real broker: every message scenario delivers what it sent and
//! says so in its JSON; storm and idle open the connections they are asked for.
#![allow(clippy::unwrap_used)]
mod common;
use common::*;
use std::process::Command;

fn bench(broker: &Broker, args: &[&str]) -> serde_json::Value {
    let port = broker.addr.port().to_string();
    let out = Command::new(env!("CARGO_BIN_EXE_tern"))
        .arg("bench")
        .args(args)
        .args(["-p", &port, "--json", "--broker-pid", &broker.child.id().to_string()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn message_scenarios_deliver_everything_at_every_qos() {
    // No queue limit: a publisher at full speed outruns its subscriber, and the default
    // bound (1000) would drop the excess, by design.
    let broker = Broker::with_config(
        "b.conf",
        "listener 0 127.0.0.1\nallow_anonymous true\nmax_queued_messages 0\n",
    );
    for args in [
        &["one-to-one", "-d", "1", "-r", "2000"][..],
        &["one-to-one", "-d", "1", "-q", "1", "--inflight", "20"],
        &["one-to-one", "-d", "1", "-q", "2", "--inflight", "20", "-V", "5"],
        &["fan-out", "-S", "5", "-d", "1", "-r", "500"],
        &["fan-in", "-P", "3", "-d", "1", "-r", "500"],
        &["pairs", "-P", "3", "-n", "300", "-d", "5", "-s", "1024"],
    ] {
        let r = bench(&broker, args);
        assert!(r["sent"].as_u64().unwrap() > 0, "{args:?}: {r}");
        assert_eq!(r["delivered"], r["expected"], "{args:?}: {r}");
        assert_eq!(
            (r["lost"].as_u64(), r["duplicates"].as_u64()),
            (Some(0), Some(0)),
            "{args:?}: {r}"
        );
        assert!(r["latency_us"]["p50"].as_u64().unwrap() > 0);
        assert!(r["broker_cpu_us_per_message"].as_f64().is_some());
    }
}

#[test]
fn storm_and_idle_open_every_connection() {
    let broker = Broker::start();
    let storm = bench(&broker, &["storm", "-c", "300", "--concurrency", "50"]);
    assert_eq!(storm["connections"], 300);
    assert!(storm["connects_per_second"].as_f64().unwrap() > 0.0);
    let idle = bench(&broker, &["idle", "-c", "300", "--hold", "0.2"]);
    assert_eq!(idle["connections"], 300);
    assert!(idle["broker_bytes_per_connection"].as_f64().is_some());
}
