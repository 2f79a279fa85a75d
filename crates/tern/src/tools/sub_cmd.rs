//! `tern sub`: mosquitto_sub's flags.

use super::common::{parse_qos, Common};
use super::format::{default_line, render, Received};
use anyhow::{bail, Result};
use bytes::Bytes;
use std::io::Write;
use std::time::{Duration, SystemTime};
use tern_client::{Client, Event, Reconnect};
use tern_core::topic::matches;
use tern_proto::{ByteStr, Properties, Publish, QoS, ReasonCode, RetainHandling, Subscription, SubscriptionOptions};
use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio::sync::mpsc;

#[derive(clap::Args, Debug)]
#[command(disable_help_flag = true, disable_version_flag = true, version)]
pub struct SubArgs {
    #[command(flatten)]
    pub common: Common,
    /// Exit after this many messages.
    #[arg(short = 'C', long = "count")]
    count: Option<u64>,
    /// Exit once the subscriptions are acknowledged.
    #[arg(short = 'E', long = "exit-after-subscribe")]
    exit_after_subscribe: bool,
    /// Output format with mosquitto_sub's % and @ codes.
    #[arg(short = 'F', long = "format")]
    format: Option<String>,
    /// No newline after each message.
    #[arg(short = 'N', long = "no-newline")]
    no_newline: bool,
    /// Do not print stale (retained) messages.
    #[arg(short = 'R', long = "no-retained")]
    no_retained: bool,
    /// Topic filter whose messages are not printed (repeatable).
    #[arg(short = 'T', long = "filter-out")]
    filter_out: Vec<String>,
    /// Unsubscribe from this filter after connecting (repeatable).
    #[arg(short = 'U', long = "unsubscribe")]
    unsubscribe: Vec<String>,
    /// Print the topic before the payload.
    #[arg(short = 'v', long = "verbose")]
    verbose: bool,
    /// Exit after this many seconds.
    #[arg(short = 'W', long = "timeout")]
    timeout: Option<u64>,
    /// Pretty-print JSON output (%j, %J).
    #[arg(long = "pretty")]
    pretty: bool,
    /// Only handle retained messages; exit at the first live one.
    #[arg(long = "retained-only")]
    retained_only: bool,
    /// Clear each retained message received (publish an empty retained message).
    #[arg(long = "remove-retained")]
    remove_retained: bool,
    /// Keep the retain flag of forwarded messages (MQTT 5).
    #[arg(long = "retain-as-published")]
    retain_as_published: bool,
}

/// Exit status after -W when the count was not reached (mosquitto_sub's).
pub const EXIT_TIMEOUT: u8 = 27;

/// Why the subscriber stopped.
pub enum Outcome {
    Done,
    TimedOut,
}

/// Between connections: mosquitto_sub's libmosquitto tries again every second.
const RECONNECT: Reconnect = Reconnect {
    initial_delay: Duration::from_millis(100),
    max_delay: Duration::from_secs(1),
};

pub async fn run(mut args: SubArgs) -> Result<Outcome> {
    // As mosquitto_sub: a lost connection is made again and the subscriptions with it; a
    // first connection that fails is an error.
    let options = args.common.connect_options("tern_sub")?.reconnect(Some(RECONNECT));
    if args.common.topics.is_empty() && args.unsubscribe.is_empty() {
        bail!("at least one topic is needed (-t or -U)");
    }
    let qos = parse_qos(args.common.qos, "QoS")?;
    for filter in args
        .common
        .topics
        .iter()
        .chain(&args.filter_out)
        .chain(&args.unsubscribe)
    {
        tern_proto::topic::validate_topic_filter(filter)
            .map_err(|e| anyhow::anyhow!("invalid topic filter {filter:?}: {e}"))?;
    }
    let setup = Setup::new(&args, qos)?;
    let client_id = options.client_id.clone();
    let (client, mut events, _) = args.common.connect(options).await?;
    let mut stop = Stop::install()?;
    let (setup_done, mut setups) = mpsc::channel(4);
    tokio::spawn(setup.clone().run(client.clone(), setup_done.clone()));
    let deadline = args
        .timeout
        .map(|s| tokio::time::Instant::now() + Duration::from_secs(s));
    let mut printed = 0u64;
    loop {
        let event = tokio::select! {
            event = events.recv() => event,
            Some(done) = setups.recv() => {
                if let Err(e) = done {
                    args.common.leave(&client, ReasonCode::NORMAL_DISCONNECTION).await;
                    return Err(e);
                }
                if args.exit_after_subscribe {
                    args.common.leave(&client, ReasonCode::NORMAL_DISCONNECTION).await;
                    return Ok(Outcome::Done);
                }
                continue;
            }
            () = stop.signalled() => {
                args.common.leave_interrupted(&client).await;
                return Ok(Outcome::Done);
            }
            () = until(deadline) => {
                if !args.common.quiet {
                    eprintln!("Timed out");
                }
                args.common.leave_interrupted(&client).await;
                return Ok(Outcome::TimedOut);
            }
        };
        let publish = match event {
            Some(Event::Message(p)) => p,
            Some(Event::Reconnected(_)) => {
                tokio::spawn(setup.clone().run(client.clone(), setup_done.clone()));
                continue;
            }
            // The client is connecting again.
            Some(Event::Disconnected(_) | Event::DisconnectedByBroker(_)) => continue,
            None => bail!(super::common::ToolError(format!(
                "{}:{}: connection closed",
                args.common.host, args.common.port
            ))),
        };
        if args.retained_only && !publish.retain {
            args.common.leave(&client, ReasonCode::NORMAL_DISCONNECTION).await;
            return Ok(Outcome::Done);
        }
        if args.remove_retained && publish.retain && !publish.payload.is_empty() {
            // Not waited for: the connection's task sends it in order.
            let clear = Publish {
                dup: false,
                qos: QoS::AtMostOnce,
                retain: true,
                topic: publish.topic.clone(),
                packet_id: 0,
                properties: Properties::default(),
                payload: Bytes::new(),
            };
            drop(client.start_publish(clear).await?);
        }
        if (args.no_retained && publish.retain) || args.filter_out.iter().any(|f| matches(f, &publish.topic)) {
            continue;
        }
        print(&mut std::io::stdout().lock(), &args, &publish, &client_id)?;
        printed += 1;
        if args.count.is_some_and(|c| printed >= c) {
            args.common.leave(&client, ReasonCode::NORMAL_DISCONNECTION).await;
            return Ok(Outcome::Done);
        }
    }
}

/// Resolves at `deadline`, never without one.
async fn until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// SIGINT and SIGTERM, caught once connected: the subscriber then leaves with DISCONNECT
/// and exit status 0, as mosquitto_sub does.
struct Stop {
    interrupt: Signal,
    terminate: Signal,
}

impl Stop {
    fn install() -> Result<Stop> {
        Ok(Stop {
            interrupt: signal(SignalKind::interrupt())?,
            terminate: signal(SignalKind::terminate())?,
        })
    }

    async fn signalled(&mut self) {
        tokio::select! {
            _ = self.interrupt.recv() => {}
            _ = self.terminate.recv() => {}
        }
    }
}

/// What is asked of every connection, the first and each one after a reconnect
/// (mosquitto_sub subscribes again each time it connects): the -U unsubscriptions, then
/// the -t subscriptions.
#[derive(Clone)]
struct Setup {
    unsubscribe: Vec<ByteStr>,
    unsubscribe_properties: Properties,
    subscriptions: Vec<Subscription>,
    subscribe_properties: Properties,
    quiet: bool,
}

impl Setup {
    fn new(args: &SubArgs, qos: QoS) -> Result<Setup> {
        let v5 = args.common.protocol()?.is_v5();
        let options = SubscriptionOptions {
            qos,
            no_local: false,
            retain_as_published: args.retain_as_published,
            retain_handling: if args.no_retained && v5 {
                RetainHandling::DoNotSend
            } else {
                RetainHandling::SendAtSubscribe
            },
        };
        let props = |command: &str| -> Result<Properties> {
            Ok(if v5 {
                args.common.properties_for(command)?
            } else {
                Properties::default()
            })
        };
        Ok(Setup {
            unsubscribe: args.unsubscribe.iter().map(|f| ByteStr::from(f.as_str())).collect(),
            unsubscribe_properties: props("unsubscribe")?,
            subscriptions: args
                .common
                .topics
                .iter()
                .map(|t| Subscription {
                    filter: ByteStr::from(t.as_str()),
                    options,
                })
                .collect(),
            subscribe_properties: props("subscribe")?,
            quiet: args.common.quiet,
        })
    }

    /// Runs on a task of its own, so that messages keep flowing while it waits for the
    /// acknowledgements. Reports success, or the refusal of every subscription; a
    /// connection lost meanwhile reports nothing (the reconnect runs it again).
    async fn run(self, client: Client, done: mpsc::Sender<Result<()>>) {
        match self.subscribe(&client).await {
            Ok(()) => drop(done.send(Ok(())).await),
            Err(Refused(e)) => drop(done.send(Err(e)).await),
            Err(Lost) => {}
        }
    }

    async fn subscribe(&self, client: &Client) -> Result<(), SetupError> {
        if !self.unsubscribe.is_empty() {
            client
                .unsubscribe(self.unsubscribe.clone(), self.unsubscribe_properties.clone())
                .await
                .map_err(|_| Lost)?;
        }
        if self.subscriptions.is_empty() {
            return Ok(());
        }
        let ack = client
            .subscribe_many(self.subscriptions.clone(), self.subscribe_properties.clone())
            .await
            .map_err(|_| Lost)?;
        let mut denied = 0;
        for (subscription, code) in self.subscriptions.iter().zip(&ack.reason_codes) {
            if !code.is_success() {
                denied += 1;
                if !self.quiet {
                    eprintln!("Subscription denied: {} ({code})", subscription.filter);
                }
            }
        }
        if denied == self.subscriptions.len() {
            return Err(Refused(anyhow::anyhow!("All subscription requests were denied.")));
        }
        Ok(())
    }
}

/// Why a [`Setup`] did not complete.
enum SetupError {
    /// Every subscription was refused: the subscriber stops (status 1).
    Refused(anyhow::Error),
    /// The connection went away first.
    Lost,
}
use SetupError::{Lost, Refused};

fn print(out: &mut impl Write, args: &SubArgs, publish: &Publish, client_id: &str) -> Result<()> {
    let mut line = match &args.format {
        Some(format) => render(
            format,
            &Received {
                publish,
                client_id,
                at: SystemTime::now(),
            },
            args.pretty,
        ),
        None => default_line(publish, args.verbose),
    };
    if !args.no_newline {
        line.push(b'\n');
    }
    out.write_all(&line)?;
    out.flush()?;
    Ok(())
}
