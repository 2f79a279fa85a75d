//! `tern`: one binary for the broker and the tools.
//!
//! `tern broker` takes mosquitto's flags (-c, -p, -v, -d) so scripts and service files
//! written for mosquitto keep working.

mod admin_cmd;
mod bench;
mod broker_cmd;
mod broker_log;
mod iot_cmd;
mod iot_export;
mod iot_mgmt;
mod iot_remote;
mod tools;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "tern",
    version,
    about = "Tern: an MQTT 3.1 / 3.1.1 / 5.0 broker and its tools"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the MQTT broker (mosquitto-compatible flags).
    #[command(version)]
    Broker(broker_cmd::BrokerArgs),
    /// Publish a message (mosquitto_pub's flags).
    Pub(tools::pub_cmd::PubArgs),
    /// Subscribe and print messages (mosquitto_sub's flags).
    Sub(tools::sub_cmd::SubArgs),
    /// Request/response over MQTT 5 (mosquitto_rr's flags).
    Rr(tools::rr_cmd::RrArgs),
    /// Manage a password file (mosquitto_passwd's flags).
    Passwd(tools::passwd_cmd::PasswdArgs),
    /// Load generator: throughput, latency, connection storms, idle connections.
    Bench(bench::BenchArgs),
    /// Administration: API keys of the HTTP API (`tern admin key create|revoke|list`).
    Admin(admin_cmd::AdminArgs),
    /// The IoT platform's registry: `tern iot org|type|device|key ...`.
    Iot(iot_cmd::IotArgs),
}

/// Runs a client tool on a small runtime and maps its result to an exit status.
fn client_tool<F>(quiet: bool, future: F) -> ExitCode
where
    F: std::future::Future<Output = anyhow::Result<u8>>,
{
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("Error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(future) {
        Ok(code) => ExitCode::from(code),
        Err(e) => ExitCode::from(tools::common::report(&e, quiet)),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Broker(args) => broker_cmd::run(args),
        Command::Admin(args) => admin_cmd::run(args),
        Command::Iot(args) => iot_cmd::run(args),
        Command::Pub(args) => {
            let quiet = args.common.quiet;
            return client_tool(quiet, async move { tools::pub_cmd::run(args).await.map(|()| 0) });
        }
        Command::Sub(args) => {
            let quiet = args.common.quiet;
            return client_tool(quiet, async move {
                Ok(match tools::sub_cmd::run(args).await? {
                    tools::sub_cmd::Outcome::Done => 0,
                    tools::sub_cmd::Outcome::TimedOut => tools::sub_cmd::EXIT_TIMEOUT,
                })
            });
        }
        Command::Rr(args) => {
            let quiet = args.common.quiet;
            return client_tool(quiet, tools::rr_cmd::run(args));
        }
        Command::Passwd(args) => {
            // mosquitto_passwd's form: `Error: Empty password.`, status 1.
            return match tools::passwd_cmd::run(args) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => ExitCode::from(tools::common::report(&e, false)),
            };
        }
        Command::Bench(args) => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .map_err(anyhow::Error::from)
            .and_then(|rt| rt.block_on(bench::run(args))),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tern: {e:#}");
            ExitCode::FAILURE
        }
    }
}
