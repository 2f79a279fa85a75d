//! `tern pub`: mosquitto_pub's flags.

use super::common::Common;
use anyhow::{anyhow, bail, Context, Result};
use bytes::Bytes;
use std::io::{BufRead, Read};
use std::time::Duration;
use tern_proto::{ByteStr, Publish, ReasonCode};

#[derive(clap::Args, Debug)]
#[command(disable_help_flag = true, disable_version_flag = true, version)]
pub struct PubArgs {
    #[command(flatten)]
    pub common: Common,
    /// Message payload.
    #[arg(short = 'm', long = "message")]
    message: Option<String>,
    /// Send the contents of a file as the message (binary-safe).
    #[arg(short = 'f', long = "file")]
    file: Option<std::path::PathBuf>,
    /// Send each line of standard input as a message (blank lines are skipped).
    #[arg(short = 'l', long = "stdin-line")]
    stdin_line: bool,
    /// Send all of standard input as one message.
    #[arg(short = 's', long = "stdin-file")]
    stdin_file: bool,
    /// Send a zero-length message.
    #[arg(short = 'n', long = "null-message")]
    null_message: bool,
    /// Retain the message.
    #[arg(short = 'r', long = "retain")]
    retain: bool,
    /// Publish the message this many times.
    #[arg(long = "repeat", default_value_t = 1)]
    repeat: u64,
    /// Seconds between repeats.
    #[arg(long = "repeat-delay", default_value_t = 0.0)]
    repeat_delay: f64,
    /// Maximum QoS 1/2 messages in flight.
    #[arg(short = 'M', long = "max-inflight", default_value_t = 20)]
    max_inflight: usize,
}

enum Source {
    One(Bytes),
    Lines,
}

impl PubArgs {
    fn source(&self) -> Result<Source> {
        let chosen = [
            self.message.is_some(),
            self.file.is_some(),
            self.stdin_line,
            self.stdin_file,
            self.null_message,
        ]
        .iter()
        .filter(|b| **b)
        .count();
        if chosen != 1 {
            bail!("give exactly one of -m, -f, -l, -s or -n");
        }
        Ok(if let Some(m) = &self.message {
            Source::One(Bytes::from(m.clone()))
        } else if let Some(path) = &self.file {
            Source::One(Bytes::from(
                std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?,
            ))
        } else if self.stdin_file {
            let mut all = Vec::new();
            std::io::stdin()
                .read_to_end(&mut all)
                .context("cannot read standard input")?;
            Source::One(Bytes::from(all))
        } else if self.null_message {
            Source::One(Bytes::new())
        } else {
            Source::Lines
        })
    }
}

pub async fn run(mut args: PubArgs) -> Result<()> {
    let mut options = args.common.connect_options("tern_pub")?;
    options = options.max_inflight(args.max_inflight);
    let topic = match args.common.topics.as_slice() {
        [topic] => topic.clone(),
        [] => bail!("a topic is needed (-t)"),
        _ => bail!("tern pub publishes to one topic: give -t once"),
    };
    tern_proto::topic::validate_topic_name(&topic).map_err(|e| anyhow!("invalid topic {topic:?}: {e}"))?;
    let qos = args.common.qos()?;
    let properties = args.common.properties_for("publish")?;
    let source = args.source()?;
    let (client, _events, _) = args.common.connect(options).await?;
    let message = |payload: Bytes| Publish {
        dup: false,
        qos,
        retain: args.retain,
        topic: ByteStr::from(topic.as_str()),
        packet_id: 0,
        properties: properties.clone(),
        payload,
    };
    let mut in_flight = Vec::new();
    let send = |payload: Bytes| client.start_publish(message(payload));
    match source {
        Source::One(payload) => {
            for i in 0..args.repeat {
                if i > 0 && args.repeat_delay > 0.0 {
                    tokio::time::sleep(Duration::from_secs_f64(args.repeat_delay)).await;
                }
                in_flight.push(send(payload.clone()).await?);
            }
        }
        Source::Lines => {
            let (tx, mut rx) = tokio::sync::mpsc::channel::<String>(64);
            std::thread::spawn(move || {
                for line in std::io::stdin().lock().lines().map_while(Result::ok) {
                    if tx.blocking_send(line).is_err() {
                        break;
                    }
                }
            });
            while let Some(line) = rx.recv().await {
                if !line.is_empty() {
                    in_flight.push(send(Bytes::from(line)).await?);
                }
            }
        }
    }
    for done in in_flight {
        let reason = done.await.map_err(|_| anyhow!("connection closed"))??;
        if !reason.is_success() {
            eprintln!("Warning: publish returned {reason}");
        }
    }
    args.common.leave(&client, ReasonCode::NORMAL_DISCONNECTION).await;
    Ok(())
}
