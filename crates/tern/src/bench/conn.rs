//! Connection scenarios: `storm` (connects per second, CONNACK latency), `idle` (memory
//! per idle connection), `crowd` (many subscribed connections, then one message to all
//! of them), and `drain`, the trivial server for ceiling measurements.

use super::report::{sample, Latency};
use super::{wire, BenchArgs};
use anyhow::Result;
use bytes::BytesMut;
use hdrhistogram::Histogram;
use std::sync::Arc;
use std::time::Duration;
use tern_proto::{decode, encode, ConnectAck, Packet, Properties, ProtocolVersion, QoS, ReasonCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Semaphore;
use tokio::time::Instant;

/// The keep-alive the connections of `storm` and `idle` ask for: what a quiet device
/// asks for (and some brokers, rumqttd, refuse 0). Holds longer than one and a half times
/// it would see the connections closed, as they send no PINGREQ.
const KEEP_ALIVE: u16 = 60;

/// Opens `args.connections` connections, `args.concurrency` at a time, keeping them open;
/// each subscribes to `topic` (QoS 0) when one is given.
async fn open_many(args: &BenchArgs, topic: Option<&str>) -> Result<(Vec<wire::Raw>, Histogram<u64>, f64)> {
    let (target, version) = (Arc::new(args.target()?), args.version()?);
    let gate = Arc::new(Semaphore::new(args.concurrency.max(1)));
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(args.connections);
    for i in 0..args.connections {
        let permit = gate.clone().acquire_owned().await?;
        let login = wire::Login::anonymous(format!("bench-{}-c{i}", std::process::id()));
        let (target, topic) = (target.clone(), topic.map(str::to_string));
        tasks.push(tokio::spawn(async move {
            let began = Instant::now();
            let mut raw = wire::connect_nth(&target, i, version, &login, (KEEP_ALIVE, false)).await?;
            if let Some(topic) = topic {
                raw.subscribe(&topic, QoS::AtMostOnce).await?;
            }
            let took = began.elapsed();
            drop(permit);
            // What the generator holds per idle connection stays small too.
            raw.input = BytesMut::new();
            anyhow::Ok((raw, took))
        }));
    }
    let mut latency = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    let mut open = Vec::with_capacity(args.connections);
    for task in tasks {
        let (raw, took) = task.await??;
        let _ = latency.record(took.as_micros().max(1) as u64);
        open.push(raw);
    }
    Ok((open, latency, started.elapsed().as_secs_f64()))
}

pub async fn storm(args: &BenchArgs) -> Result<()> {
    let (open, latency, seconds) = open_many(args, None).await?;
    let l = Latency::from(&latency);
    let rate = open.len() as f64 / seconds;
    if args.json {
        println!(
            "{}",
            serde_json::json!({"scenario": "Storm", "connections": open.len(), "seconds": seconds, "connects_per_second": rate, "connack_latency_us": l})
        );
    } else {
        println!(
            "storm           {} connections in {seconds:.2} s: {rate:.0} connects/s",
            open.len()
        );
        println!(
            "CONNACK (us)    p50 {}  p99 {}  p99.9 {}  max {}",
            l.p50, l.p99, l.p999, l.max
        );
    }
    Ok(())
}

pub async fn idle(args: &BenchArgs) -> Result<()> {
    let before = args.broker_pid.and_then(sample);
    let (open, _, seconds) = open_many(args, None).await?;
    tokio::time::sleep(Duration::from_secs_f64(args.hold)).await;
    let after = args.broker_pid.and_then(sample);
    let per_connection = match (before, after) {
        (Some(b), Some(a)) => Some(a.rss_bytes.saturating_sub(b.rss_bytes) as f64 / open.len().max(1) as f64),
        _ => None,
    };
    if args.json {
        println!(
            "{}",
            serde_json::json!({"scenario": "Idle", "connections": open.len(), "connect_seconds": seconds,
                "broker_rss_before": before.map(|s| s.rss_bytes), "broker_rss_after": after.map(|s| s.rss_bytes),
                "broker_bytes_per_connection": per_connection})
        );
    } else {
        println!("idle            {} connections held {:.1} s", open.len(), args.hold);
        if let (Some(b), Some(a), Some(per)) = (before, after, per_connection) {
            println!(
                "broker RSS      {:.1} MiB -> {:.1} MiB: {per:.0} bytes per connection",
                b.rss_bytes as f64 / 1048576.0,
                a.rss_bytes as f64 / 1048576.0
            );
        }
    }
    drop(open);
    Ok(())
}

/// The topic every connection of `crowd` subscribes to.
const CROWD_TOPIC: &str = "bench/crowd";

/// Opens -c connections, each subscribed to one topic, and holds them (connect rate, the
/// broker's memory per connection); then one message published to that topic must reach
/// every one of them: how long until the last has it.
pub async fn crowd(args: &BenchArgs) -> Result<()> {
    let before = args.broker_pid.and_then(sample);
    let (open, latency, seconds) = open_many(args, Some(CROWD_TOPIC)).await?;
    let connect = Latency::from(&latency);
    tokio::time::sleep(Duration::from_secs_f64(args.hold)).await;
    let after = args.broker_pid.and_then(sample);
    let target = args.target()?;
    let login = wire::Login::anonymous(format!("bench-{}-crowd-pub", std::process::id()));
    let mut publisher = wire::connect_nth(&target, open.len(), args.version()?, &login, (KEEP_ALIVE, false)).await?;
    let readers: Vec<_> = open
        .into_iter()
        .map(|mut raw| {
            tokio::spawn(async move {
                loop {
                    match raw.next().await {
                        Ok(Packet::Publish(_)) => return Some(Instant::now()),
                        Ok(_) => {}
                        Err(_) => return None,
                    }
                }
            })
        })
        .collect();
    let frame = wire::Frame::new(CROWD_TOPIC, QoS::AtMostOnce, 16, 0, publisher.version)?;
    let mut out = BytesMut::new();
    frame.write(&mut out, 0, 0);
    let sent = Instant::now();
    publisher.writer.write_all(&out).await?;
    let mut arrivals = Histogram::<u64>::new_with_bounds(1, 600_000_000, 3)?;
    let deadline = sent + Duration::from_secs(120);
    let mut delivered = 0usize;
    let mut last = Duration::ZERO;
    for reader in readers {
        if let Ok(Ok(Some(at))) = tokio::time::timeout_at(deadline, reader).await {
            delivered += 1;
            last = last.max(at - sent);
            let _ = arrivals.record((at - sent).as_micros().max(1) as u64);
        }
    }
    let arrival = Latency::from(&arrivals);
    let per_connection = match (before, after) {
        (Some(b), Some(a)) => Some(a.rss_bytes.saturating_sub(b.rss_bytes) as f64 / args.connections.max(1) as f64),
        _ => None,
    };
    let rate = args.connections as f64 / seconds;
    if args.json {
        println!(
            "{}",
            serde_json::json!({"scenario": "Crowd", "connections": args.connections, "connect_seconds": seconds,
                "connects_per_second": rate, "connect_and_subscribe_latency_us": connect,
                "broker_rss_before": before.map(|s| s.rss_bytes), "broker_rss_after": after.map(|s| s.rss_bytes),
                "broker_bytes_per_connection": per_connection, "delivered": delivered,
                "lost": args.connections - delivered, "time_to_last_delivery_us": last.as_micros() as u64,
                "delivery_us": arrival})
        );
        return Ok(());
    }
    println!(
        "crowd           {} connections subscribed in {seconds:.2} s: {rate:.0} connects/s",
        args.connections
    );
    if let (Some(b), Some(a), Some(per)) = (before, after, per_connection) {
        println!(
            "broker RSS      {:.1} MiB -> {:.1} MiB: {per:.0} bytes per connection",
            b.rss_bytes as f64 / 1048576.0,
            a.rss_bytes as f64 / 1048576.0
        );
    }
    println!(
        "one message     reached {delivered} of {} in {:.1} ms (p50 {:.1} ms)",
        args.connections,
        last.as_secs_f64() * 1e3,
        arrival.p50 as f64 / 1e3
    );
    Ok(())
}

/// Accepts connections, answers CONNECT with CONNACK and discards everything after it.
pub async fn drain(args: &BenchArgs) -> Result<()> {
    let listener = tokio::net::TcpListener::bind((args.host.as_str(), args.port)).await?;
    eprintln!("drain server listening on {}", listener.local_addr()?);
    loop {
        let (mut socket, _) = listener.accept().await?;
        tokio::spawn(async move {
            let mut buf = BytesMut::with_capacity(64 * 1024);
            let mut connected = false;
            loop {
                match socket.read_buf(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
                if connected {
                    // Past CONNECT: discard without looking, the cheapest possible peer.
                    buf.clear();
                    continue;
                }
                if let Ok(Some(Packet::Connect(c))) = decode(&mut buf, ProtocolVersion::V3_1_1, usize::MAX) {
                    connected = true;
                    let mut out = BytesMut::new();
                    let ack = ConnectAck {
                        session_present: false,
                        reason_code: ReasonCode::SUCCESS,
                        properties: Properties::default(),
                    };
                    let _ = encode(&Packet::ConnectAck(ack), c.protocol_version, &mut out);
                    if socket.write_all(&out).await.is_err() {
                        return;
                    }
                }
                buf.clear();
            }
        });
    }
}
