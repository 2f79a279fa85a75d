//! `tern rr`: mosquitto_rr's request/response over MQTT 5. Subscribes to the response
//! topic, publishes the request with Response Topic and Correlation Data, and prints the
//! first response that carries the same correlation data (or none).

use super::common::Common;
use anyhow::{bail, Context, Result};
use bytes::Bytes;
use std::io::{Read, Write};
use std::time::Duration;
use tern_client::Event;
use tern_proto::{ByteStr, Property, Publish, ReasonCode};

#[derive(clap::Args, Debug)]
#[command(disable_help_flag = true, disable_version_flag = true, version)]
pub struct RrArgs {
    #[command(flatten)]
    pub common: Common,
    /// Topic on which the response is expected.
    #[arg(short = 'e', long = "response-topic")]
    response_topic: String,
    /// Request payload.
    #[arg(short = 'm', long = "message")]
    message: Option<String>,
    /// Send the contents of a file as the request (binary-safe).
    #[arg(short = 'f', long = "file")]
    file: Option<std::path::PathBuf>,
    /// Send all of standard input as the request.
    #[arg(short = 's', long = "stdin-file")]
    stdin_file: bool,
    /// Send a zero-length request.
    #[arg(short = 'n', long = "null-message")]
    null_message: bool,
    /// Print the response topic too.
    #[arg(short = 'v', long = "verbose")]
    verbose: bool,
    /// No newline after the response.
    #[arg(short = 'N', long = "no-newline")]
    no_newline: bool,
    /// Seconds to wait for the response; then "Timed out" and exit status 27.
    #[arg(short = 'W', long = "timeout", default_value_t = 30)]
    timeout: u64,
}

fn payload(args: &RrArgs) -> Result<Bytes> {
    Ok(if let Some(m) = &args.message {
        Bytes::from(m.clone())
    } else if let Some(path) = &args.file {
        Bytes::from(std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?)
    } else if args.stdin_file {
        let mut all = Vec::new();
        std::io::stdin().read_to_end(&mut all)?;
        Bytes::from(all)
    } else if args.null_message {
        Bytes::new()
    } else {
        bail!("give one of -m, -f, -s or -n")
    })
}

/// Exit status when no response came within -W (mosquitto_rr's).
pub const EXIT_TIMEOUT: u8 = 27;

/// Returns the exit status: 0 with a response, [`EXIT_TIMEOUT`] without one.
pub async fn run(mut args: RrArgs) -> Result<u8> {
    // Request/response needs MQTT 5 properties, as mosquitto_rr always uses 5.
    args.common.protocol_version = "mqttv5".into();
    let options = args.common.connect_options("tern_rr")?;
    let request_topic = match args.common.topics.as_slice() {
        [t] => t.clone(),
        _ => bail!("give the request topic once with -t"),
    };
    let qos = args.common.qos()?;
    let body = payload(&args)?;
    let (client, mut events, _) = args.common.connect(options).await?;
    client.subscribe(&args.response_topic, qos).await?;
    let mut properties = args.common.properties_for("publish")?;
    properties.push(Property::ResponseTopic(ByteStr::from(args.response_topic.as_str())));
    let correlation = properties
        .correlation_data()
        .unwrap_or_else(|| Bytes::from(format!("tern-rr-{}", std::process::id())));
    if properties.correlation_data().is_none() {
        properties.push(Property::CorrelationData(correlation.clone()));
    }
    let request = Publish {
        dup: false,
        qos,
        retain: false,
        topic: ByteStr::from(request_topic.as_str()),
        packet_id: 0,
        properties,
        payload: body,
    };
    client.publish_message(request).await?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(args.timeout);
    loop {
        let Ok(event) = tokio::time::timeout_at(deadline, events.recv()).await else {
            if !args.common.quiet {
                eprintln!("Timed out");
            }
            args.common.leave_interrupted(&client).await;
            return Ok(EXIT_TIMEOUT);
        };
        match event {
            Some(Event::Message(p)) if p.properties.correlation_data().is_none_or(|c| c == correlation) => {
                let mut out = std::io::stdout().lock();
                if args.verbose {
                    write!(out, "{} ", p.topic)?;
                }
                out.write_all(&p.payload)?;
                if !args.no_newline {
                    out.write_all(b"\n")?;
                }
                out.flush()?;
                args.common.leave(&client, ReasonCode::NORMAL_DISCONNECTION).await;
                return Ok(0);
            }
            Some(_) => continue,
            None => bail!("connection closed before a response arrived"),
        }
    }
}
