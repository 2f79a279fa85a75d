//! `tern sub`: mosquitto_sub's flags.

use super::common::{parse_qos, Common};
use super::format::{default_line, render, Received};
use anyhow::{bail, Result};
use bytes::Bytes;
use std::io::Write;
use std::time::{Duration, SystemTime};
use tern_client::{Client, Event};
use tern_core::topic::matches;
use tern_proto::{ByteStr, Properties, Publish, QoS, RetainHandling, Subscription, SubscriptionOptions};

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

pub async fn run(mut args: SubArgs) -> Result<Outcome> {
    let options = args.common.connect_options("tern_sub")?;
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
    let client_id = options.client_id.clone();
    let (client, mut events, _) = args.common.connect(options).await?;
    if !args.unsubscribe.is_empty() {
        let filters = args.unsubscribe.iter().map(|f| ByteStr::from(f.as_str())).collect();
        client
            .unsubscribe(filters, args.common.properties_for("unsubscribe")?)
            .await?;
    }
    if !args.common.topics.is_empty() {
        subscribe(&client, &args, qos).await?;
    }
    if args.exit_after_subscribe {
        client.disconnect().await?;
        return Ok(Outcome::Done);
    }
    let deadline = args
        .timeout
        .map(|s| tokio::time::Instant::now() + Duration::from_secs(s));
    let mut printed = 0u64;
    let mut stdout = std::io::stdout().lock();
    loop {
        let event = match deadline {
            Some(d) => match tokio::time::timeout_at(d, events.recv()).await {
                Ok(e) => e,
                Err(_) => {
                    if !args.common.quiet {
                        eprintln!("Timed out");
                    }
                    let _ = client.disconnect().await;
                    return Ok(Outcome::TimedOut);
                }
            },
            None => events.recv().await,
        };
        let publish = match event {
            Some(Event::Message(p)) => p,
            Some(Event::Disconnected(reason)) => bail!(super::common::ToolError(format!(
                "{}:{}: connection lost: {reason}",
                args.common.host, args.common.port
            ))),
            Some(_) => continue,
            None => bail!(super::common::ToolError(format!(
                "{}:{}: connection closed",
                args.common.host, args.common.port
            ))),
        };
        if args.retained_only && !publish.retain {
            let _ = client.disconnect().await;
            return Ok(Outcome::Done);
        }
        if args.remove_retained && publish.retain && !publish.payload.is_empty() {
            client
                .publish(&publish.topic, Bytes::new(), QoS::AtMostOnce, true)
                .await?;
        }
        if (args.no_retained && publish.retain) || args.filter_out.iter().any(|f| matches(f, &publish.topic)) {
            continue;
        }
        print(&mut stdout, &args, &publish, &client_id)?;
        printed += 1;
        if args.count.is_some_and(|c| printed >= c) {
            let _ = client.disconnect().await;
            return Ok(Outcome::Done);
        }
    }
}

async fn subscribe(client: &Client, args: &SubArgs, qos: QoS) -> Result<()> {
    let options = SubscriptionOptions {
        qos,
        no_local: false,
        retain_as_published: args.retain_as_published,
        retain_handling: if args.no_retained && args.common.protocol()?.is_v5() {
            RetainHandling::DoNotSend
        } else {
            RetainHandling::SendAtSubscribe
        },
    };
    let subscriptions: Vec<Subscription> = args
        .common
        .topics
        .iter()
        .map(|t| Subscription {
            filter: ByteStr::from(t.as_str()),
            options,
        })
        .collect();
    let properties = if args.common.protocol()?.is_v5() {
        args.common.properties_for("subscribe")?
    } else {
        Properties::default()
    };
    let ack = client.subscribe_many(subscriptions, properties).await?;
    let mut denied = 0;
    for (topic, code) in args.common.topics.iter().zip(&ack.reason_codes) {
        if !code.is_success() {
            denied += 1;
            if !args.common.quiet {
                eprintln!("Subscription denied: {topic} ({code})");
            }
        }
    }
    if denied == args.common.topics.len() {
        bail!("All subscription requests were denied.");
    }
    Ok(())
}

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
