//! `tern`: one binary for the broker and the tools.
//!
//! `tern broker` takes mosquitto's flags (-c, -p, -v, -d) so scripts and service files
//! written for mosquitto keep working.

mod broker_cmd;

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
    Broker(broker_cmd::BrokerArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Broker(args) => broker_cmd::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tern: {e:#}");
            ExitCode::FAILURE
        }
    }
}
