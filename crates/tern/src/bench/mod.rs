//! `tern bench`: a load generator in the spirit of emqtt-bench, for Tern or any broker.
//!
//! Message scenarios (one-to-one, fan-out, fan-in, pairs) run publishers and subscribers
//! in this process and report delivered throughput, loss, duplicates and end-to-end
//! latency; `storm` measures connection rate and CONNACK latency; `idle` holds many
//! connections (with `--broker-pid`, the broker's memory per connection); `drain` is a
//! trivial server that only accepts, to measure the generator's own ceiling.

mod conn;
mod iot;
mod load;
mod report;
mod wire;
mod ws;

use anyhow::{bail, Result};
use hdrhistogram::Histogram;
use load::{Progress, Publisher};
use report::{Latency, Summary};
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;
use tern_core::topic::matches;
use tern_proto::{ProtocolVersion, QoS};
use tokio::time::Instant;

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scenario {
    /// One publisher, one subscriber, one topic.
    OneToOne,
    /// One publisher, N subscribers (-S, default 20) on one topic.
    FanOut,
    /// N publishers (-P, default 8) on their own topics, one wildcard subscriber.
    FanIn,
    /// N publisher/subscriber pairs (-P, default 10) on distinct topics.
    Pairs,
    /// N publishers (-P, default 1) on one topic, M members (-S, default 4) of one shared
    /// subscription: each message to one member.
    Shared,
    /// Connect -c clients as fast as possible; connects/s and CONNACK latency.
    Storm,
    /// Hold -c idle connections for --hold seconds (memory per connection).
    Idle,
    /// -c connections subscribed to one topic, held --hold seconds; then one message
    /// to that topic: time until every connection has it.
    Crowd,
    /// Publishers only (to another process's subscribers, or to `drain`).
    Pub,
    /// Subscribers only, on bench/#.
    Sub,
    /// A trivial server that accepts CONNECT and discards everything (ceiling runs).
    Drain,
}

#[derive(clap::Args, Debug, Clone)]
#[command(disable_help_flag = true)]
pub struct BenchArgs {
    #[arg(value_enum)]
    scenario: Scenario,
    #[arg(short = 'h', long = "host", default_value = "127.0.0.1")]
    host: String,
    #[arg(short = 'p', long = "port", default_value_t = 1883)]
    port: u16,
    /// The port subscribers connect to (publishers connect to -p): another node of a
    /// cluster, for cross-node delivery. Default: -p.
    #[arg(long = "subscriber-port")]
    subscriber_port: Option<u16>,
    #[arg(short = 'q', long = "qos", default_value_t = 0)]
    qos: u8,
    /// Payload bytes (at least 16: timestamp, sequence, publisher).
    #[arg(short = 's', long = "size", default_value_t = 16)]
    size: usize,
    /// Messages per second per publisher; 0 sends as fast as possible.
    #[arg(short = 'r', long = "rate", default_value_t = 0)]
    rate: u64,
    /// Seconds of publishing.
    #[arg(short = 'd', long = "duration", default_value_t = 10.0)]
    duration: f64,
    /// Messages per publisher (0: until the duration ends).
    #[arg(short = 'n', long = "count", default_value_t = 0)]
    count: u64,
    #[arg(short = 'P', long = "publishers")]
    publishers: Option<usize>,
    #[arg(short = 'S', long = "subscribers")]
    subscribers: Option<usize>,
    /// Connections for storm and idle.
    #[arg(short = 'c', long = "connections", default_value_t = 1000)]
    connections: usize,
    /// Connections opened at once in storm and idle.
    #[arg(long = "concurrency", default_value_t = 100)]
    concurrency: usize,
    /// Seconds idle connections are held.
    #[arg(long = "hold", default_value_t = 5.0)]
    hold: f64,
    #[arg(short = 'V', long = "protocol-version", default_value = "mqttv311")]
    version: String,
    /// Messages per write when sending as fast as possible.
    #[arg(long = "batch", default_value_t = 64)]
    batch: usize,
    /// Unacknowledged QoS 1/2 messages per publisher.
    #[arg(long = "inflight", default_value_t = 100)]
    inflight: usize,
    /// The broker's process id: report its CPU per message and its memory.
    #[arg(long = "broker-pid")]
    broker_pid: Option<u32>,
    #[arg(long = "json")]
    json: bool,
    /// Subscribers keep persistent sessions (what the broker's store writes).
    #[arg(long = "persistent")]
    persistent: bool,
    /// Connect over WebSocket (the broker's `protocol websockets` listener at -p).
    #[arg(long = "ws")]
    websocket: bool,
    /// Connect over TLS, trusting the CA certificate in --cafile (the host name is not
    /// checked).
    #[arg(long = "tls", requires = "cafile")]
    tls: bool,
    #[arg(long = "cafile")]
    cafile: Option<std::path::PathBuf>,
    /// Connect from this many local addresses in turn (127.0.0.1, 127.0.0.2, ... on a
    /// loopback broker): about 28,000 connections fit on one address.
    #[arg(long = "sources", default_value_t = 1)]
    sources: u8,
    /// Through the IoT platform: ORG:TYPE:DEVICE_TOKEN:API_KEY:API_TOKEN (publishers are
    /// devices dev0, dev1... registered with DEVICE_TOKEN, subscribers applications).
    #[arg(long = "iot")]
    iot: Option<String>,
    /// Put this in front of every topic and filter (without --iot): the same traffic at
    /// another depth, e.g. the platform's topics' depth on a plain listener.
    #[arg(long = "topic-prefix", default_value = "")]
    topic_prefix: String,
    #[arg(long = "help", action = clap::ArgAction::Help)]
    help: Option<bool>,
}

impl BenchArgs {
    fn addr(&self) -> Result<SocketAddr> {
        (self.host.as_str(), self.port)
            .to_socket_addrs()?
            .next()
            .ok_or_else(|| anyhow::anyhow!("cannot resolve {}", self.host))
    }

    /// The broker to connect to, over TCP or TLS, WebSocket or not, from which addresses.
    fn target(&self) -> Result<wire::Target> {
        let addr = self.addr()?;
        let sources = match addr.ip() {
            _ if self.sources <= 1 => Vec::new(),
            std::net::IpAddr::V4(ip) if ip.is_loopback() => (1..=self.sources)
                .map(|i| std::net::IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, i)))
                .collect(),
            _ => bail!("--sources needs a broker on an IPv4 loopback address (127.x.x.x)"),
        };
        let tls = match (&self.cafile, self.tls) {
            (Some(cafile), true) => {
                let options = tern_client::TlsOptions {
                    cafile: Some(cafile.clone()),
                    insecure: true,
                    ..Default::default()
                };
                Some(tern_client::client_config(&options)?)
            }
            _ => None,
        };
        Ok(wire::Target {
            addr,
            tls,
            sources,
            websocket: self.websocket,
        })
    }

    fn version(&self) -> Result<ProtocolVersion> {
        Ok(match self.version.as_str() {
            "mqttv31" | "31" => ProtocolVersion::V3_1,
            "mqttv311" | "311" => ProtocolVersion::V3_1_1,
            "mqttv5" | "5" => ProtocolVersion::V5,
            other => bail!("unknown protocol version {other:?}"),
        })
    }
}

/// `name` (a topic or filter) with `prefix` in front; a shared subscription keeps its
/// `$share/<group>/` first.
fn prefixed(prefix: &str, name: &str) -> String {
    match name.strip_prefix(SHARED_PREFIX) {
        Some(filter) => format!("{SHARED_PREFIX}{prefix}{filter}"),
        None => format!("{prefix}{name}"),
    }
}

/// The group of the shared scenario's subscription.
const SHARED_PREFIX: &str = "$share/bench/";

/// Topics each publisher uses and filters each subscriber takes.
fn layout(args: &BenchArgs) -> Result<(Vec<String>, Vec<String>)> {
    let p = |default| args.publishers.unwrap_or(default);
    let s = |default| args.subscribers.unwrap_or(default);
    Ok(match args.scenario {
        Scenario::OneToOne => (vec!["bench/1".into()], vec!["bench/1".into()]),
        Scenario::FanOut => (vec!["bench/fan".into(); p(1)], vec!["bench/fan".into(); s(20)]),
        Scenario::FanIn => (
            (0..p(8)).map(|i| format!("bench/in/{i}")).collect(),
            vec!["bench/in/+".into(); s(1)],
        ),
        Scenario::Pairs => {
            let n = p(10);
            (
                (0..n).map(|i| format!("bench/pair/{i}")).collect(),
                (0..n).map(|i| format!("bench/pair/{i}")).collect(),
            )
        }
        Scenario::Pub => ((0..p(1)).map(|i| format!("bench/pub/{i}")).collect(), Vec::new()),
        Scenario::Sub => (Vec::new(), vec!["bench/#".into(); s(1)]),
        Scenario::Shared => (
            vec!["bench/shared".into(); p(1)],
            vec![format!("{SHARED_PREFIX}bench/shared"); s(4)],
        ),
        Scenario::Storm | Scenario::Idle | Scenario::Crowd | Scenario::Drain => (Vec::new(), Vec::new()),
    })
}

pub async fn run(args: BenchArgs) -> Result<()> {
    match args.scenario {
        Scenario::Storm => return conn::storm(&args).await,
        Scenario::Idle => return conn::idle(&args).await,
        Scenario::Crowd => return conn::crowd(&args).await,
        Scenario::Drain => return conn::drain(&args).await,
        _ => {}
    }
    if args.size < wire::HEADER {
        bail!(
            "--size must be at least {} bytes (timestamp, sequence, publisher id)",
            wire::HEADER
        );
    }
    let qos = QoS::from_u8(args.qos).ok_or_else(|| anyhow::anyhow!("--qos must be 0, 1 or 2"))?;
    let (version, addr) = (args.version()?, args.target()?);
    let mut subscriber_addr = addr.clone();
    if let Some(port) = args.subscriber_port {
        subscriber_addr.addr.set_port(port);
    }
    let (topics, filters) = layout(&args)?;
    let progress = Arc::new(Progress::default());
    let done = Arc::new(AtomicBool::new(false));
    let run_id = std::process::id();
    let mut subscribers = Vec::new();
    let mut expected = Vec::new();
    let iot = args.iot.as_deref().map(iot::Iot::parse).transpose()?;
    if iot.is_some()
        && !matches!(
            args.scenario,
            Scenario::OneToOne | Scenario::FanOut | Scenario::FanIn | Scenario::Pairs
        )
    {
        bail!("--iot works with one-to-one, fan-out, fan-in and pairs");
    }
    for (i, filter) in filters.iter().enumerate() {
        let (login, wire_filter) = match &iot {
            Some(iot) => iot.subscriber(i, filter, &topics),
            None => (
                wire::Login::anonymous(format!("bench-{run_id}-s{i}")),
                prefixed(&args.topic_prefix, filter),
            ),
        };
        let mut raw = wire::connect_with(&subscriber_addr, version, &login, 600, args.persistent).await?;
        raw.subscribe(&wire_filter, qos).await?;
        let target = Arc::new(AtomicU64::new(0));
        expected.push(target.clone());
        subscribers.push(tokio::spawn(load::subscribe(
            raw,
            target,
            done.clone(),
            Duration::from_secs(2),
            progress.clone(),
        )));
    }
    let mut publishers = Vec::new();
    for (i, topic) in topics.iter().enumerate() {
        let (login, wire_topic) = match &iot {
            Some(iot) => iot.publisher(i),
            None => (
                wire::Login::anonymous(format!("bench-{run_id}-p{i}")),
                prefixed(&args.topic_prefix, topic),
            ),
        };
        let raw = wire::connect_with(&addr, version, &login, 600, false).await?;
        let frame = wire::Frame::new(&wire_topic, qos, args.size, i as u32, version)?;
        publishers.push(Publisher {
            raw,
            frame,
            qos,
            rate: args.rate,
            batch: args.batch,
            inflight: args.inflight,
            count: args.count,
        });
    }
    let before = args.broker_pid.and_then(report::sample);
    let started = Instant::now();
    let stop = started + Duration::from_secs_f64(args.duration);
    let ticker = tokio::spawn(progress_line(progress.clone(), started));
    let publishing: Vec<_> = publishers
        .into_iter()
        .map(|p| tokio::spawn(load::publish(p, stop, progress.clone())))
        .collect();
    let mut sent = Vec::new();
    for task in publishing {
        sent.push(task.await??);
    }
    if topics.is_empty() {
        // Subscribers only: messages come from another process; listen for the duration
        // and end when the stream goes quiet.
        tokio::time::sleep_until(stop).await;
        for target in &expected {
            target.store(u64::MAX / 2, Relaxed);
        }
    }
    let shared = args.scenario == Scenario::Shared;
    for (target, filter) in expected.iter().zip(&filters).filter(|_| !topics.is_empty()) {
        if shared {
            // Which member gets a message is the broker's choice: members stop when the
            // stream goes quiet, and the group as a whole must get every message once.
            target.store(u64::MAX / 2, Relaxed);
            continue;
        }
        let n: u64 = topics
            .iter()
            .zip(&sent)
            .filter(|(t, _)| matches(filter, t))
            .map(|(_, n)| n)
            .sum();
        target.store(n, Relaxed);
    }
    done.store(true, Relaxed);
    let mut latency = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    let (mut delivered, mut duplicates, mut last) = (0u64, 0u64, started);
    for task in subscribers {
        let r = task.await??;
        delivered += r.messages;
        duplicates += r.duplicates;
        last = last.max(r.last_at.unwrap_or(started));
        latency.add(&r.latency)?;
    }
    ticker.abort();
    let after = args.broker_pid.and_then(report::sample);
    let expected_total: u64 = if topics.is_empty() {
        delivered
    } else if shared {
        sent.iter().sum()
    } else {
        expected.iter().map(|e| e.load(Relaxed)).sum()
    };
    let seconds = if filters.is_empty() {
        started.elapsed().as_secs_f64()
    } else {
        (last - started).as_secs_f64().max(1e-9)
    };
    let unique = delivered - duplicates;
    let (cpu, system) = match (before, after) {
        (Some(b), Some(a)) if unique > 0 => (
            Some((a.cpu_seconds - b.cpu_seconds) * 1e6 / unique as f64),
            Some((a.system_seconds - b.system_seconds) * 1e6 / unique as f64),
        ),
        _ => (None, None),
    };
    let summary = Summary {
        scenario: format!("{:?}", args.scenario),
        qos: qos as u8,
        payload_bytes: args.size,
        publishers: topics.len(),
        subscribers: filters.len(),
        offered_rate: args.rate,
        seconds,
        sent: sent.iter().sum(),
        expected: expected_total,
        delivered,
        lost: expected_total.saturating_sub(unique),
        duplicates,
        delivered_per_second: if filters.is_empty() {
            sent.iter().sum::<u64>() as f64 / seconds
        } else {
            unique as f64 / seconds
        },
        latency_us: Latency::from(&latency),
        broker_cpu_us_per_message: cpu,
        broker_system_us_per_message: system,
        broker_rss_bytes: after.map(|a| a.rss_bytes),
    };
    eprintln!();
    summary.print(args.json);
    Ok(())
}

/// One line per second on stderr while the run goes on.
async fn progress_line(progress: Arc<Progress>, started: Instant) {
    let (mut sent, mut received) = (0, 0);
    let mut tick = tokio::time::interval_at(started + Duration::from_secs(1), Duration::from_secs(1));
    loop {
        tick.tick().await;
        let (s, r) = (progress.sent.load(Relaxed), progress.received.load(Relaxed));
        eprint!(
            "\r{:>4.0}s  sent {:>9}/s  delivered {:>9}/s   ",
            started.elapsed().as_secs_f64(),
            s - sent,
            r - received
        );
        (sent, received) = (s, r);
    }
}
