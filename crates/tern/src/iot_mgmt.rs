//! `tern iot mgmt ...`: device management requests from the command line, sent as an
//! application of the organization to a running broker's platform API
//! (`/api/v0002/mgmt/requests`, what curl and the platform's SDKs use): reboot, factory
//! reset, firmware download and update, custom actions, and the requests' states.
//! `--wait` follows a request until every device has answered and exits with status 1
//! if one failed.

use crate::iot_remote::Remote;
use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use std::path::Path;
use std::time::{Duration, Instant};
use tern_platform::registry_ops::segment;

#[derive(clap::Args)]
pub struct MgmtArgs {
    /// The organization's key (the role must be admin or device-operator to start requests).
    #[command(flatten)]
    key: crate::iot_remote::ApiKeyArg,
    #[command(subcommand)]
    command: MgmtCommand,
}

#[derive(clap::Args)]
struct Targets {
    /// The devices, as TYPE:ID (1 to 5000).
    #[arg(value_name = "TYPE:ID", required = true)]
    devices: Vec<String>,
    /// Seconds the devices have to complete the request (default 600).
    #[arg(long, value_name = "SECONDS")]
    timeout: Option<u64>,
    /// Replace a request a device is still working on.
    #[arg(long = "override")]
    override_: bool,
    /// Wait until every device has answered; exit with status 1 if one failed.
    #[arg(long)]
    wait: bool,
}

#[derive(clap::Subcommand)]
enum MgmtCommand {
    /// Reboot devices (each must be managed and support device actions).
    Reboot(Targets),
    /// Factory-reset devices.
    FactoryReset(Targets),
    /// Have devices download a firmware image.
    FirmwareDownload {
        /// Where the image is.
        #[arg(long)]
        uri: String,
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        version: Option<String>,
        /// A checksum of the image, for the device to verify it.
        #[arg(long)]
        verifier: Option<String>,
        #[command(flatten)]
        targets: Targets,
    },
    /// Have devices install the firmware they downloaded.
    FirmwareUpdate(Targets),
    /// A custom action of a device management extension: BUNDLE/ACTION.
    Custom {
        #[arg(value_name = "BUNDLE/ACTION")]
        action: String,
        /// A parameter, NAME=VALUE (repeatable).
        #[arg(long = "param", value_name = "NAME=VALUE")]
        params: Vec<String>,
        #[command(flatten)]
        targets: Targets,
    },
    /// The organization's requests, newest first.
    List,
    /// One request.
    Get { id: String },
    /// Each device's state in a request.
    Status { id: String },
    /// Cancel what is left of a request.
    Cancel { id: String },
    /// Forget a request (cancelling it first).
    Delete { id: String },
}

const BASE: &str = "/api/v0002/mgmt/requests";

pub fn run(args: MgmtArgs, url: Option<&str>, cafile: Option<&Path>, json_out: bool) -> Result<()> {
    let remote = args.key.remote(url, cafile, "device management")?;
    let out = |value: &Value, text: String| {
        if json_out {
            println!("{value}");
        } else {
            println!("{text}");
        }
    };
    let (action, parameters, targets) = match args.command {
        MgmtCommand::Reboot(t) => ("device/reboot".to_string(), Vec::new(), t),
        MgmtCommand::FactoryReset(t) => ("device/factoryReset".to_string(), Vec::new(), t),
        MgmtCommand::FirmwareUpdate(t) => ("firmware/update".to_string(), Vec::new(), t),
        MgmtCommand::FirmwareDownload {
            uri,
            name,
            version,
            verifier,
            targets,
        } => {
            let mut p = vec![("uri".to_string(), uri)];
            for (k, v) in [("name", name), ("version", version), ("verifier", verifier)] {
                if let Some(v) = v {
                    p.push((k.to_string(), v));
                }
            }
            ("firmware/download".to_string(), p, targets)
        }
        MgmtCommand::Custom {
            action,
            params,
            targets,
        } => {
            let mut p = Vec::new();
            for param in params {
                let Some((k, v)) = param.split_once('=') else {
                    bail!("--param {param:?}: expected NAME=VALUE");
                };
                p.push((k.to_string(), v.to_string()));
            }
            (action, p, targets)
        }
        MgmtCommand::List => {
            let v = remote.call("GET", BASE, None)?;
            let lines: Vec<String> = v["results"]
                .as_array()
                .map(|all| all.iter().map(request_line).collect())
                .unwrap_or_default();
            out(&v, lines.join("\n"));
            return Ok(());
        }
        MgmtCommand::Get { id } => {
            let v = remote.call("GET", &format!("{BASE}/{}", segment(&id)), None)?;
            out(&v, request_line(&v));
            return Ok(());
        }
        MgmtCommand::Status { id } => return print_status(&remote, &id, json_out),
        MgmtCommand::Cancel { id } => {
            let v = remote.call("POST", &format!("{BASE}/{}/cancel", segment(&id)), Some(&json!({})))?;
            out(&v, request_line(&v));
            return Ok(());
        }
        MgmtCommand::Delete { id } => {
            remote.call("DELETE", &format!("{BASE}/{}", segment(&id)), None)?;
            out(
                &json!({ "reqId": id, "deleted": true }),
                format!("request {id} deleted"),
            );
            return Ok(());
        }
    };
    let id = initiate(&remote, &action, &parameters, &targets)?;
    if !targets.wait {
        out(&json!({ "reqId": id }), format!("request {id} started ({action})"));
        return Ok(());
    }
    wait(&remote, &id, targets.timeout.unwrap_or(600))?;
    print_status(&remote, &id, json_out)
}

fn initiate(remote: &Remote, action: &str, parameters: &[(String, String)], targets: &Targets) -> Result<String> {
    let mut devices = Vec::new();
    for d in &targets.devices {
        let Some((t, id)) = d.split_once(':') else {
            bail!("{d:?}: expected TYPE:ID");
        };
        devices.push(json!({ "typeId": t, "deviceId": id }));
    }
    let parameters: Vec<Value> = parameters
        .iter()
        .map(|(k, v)| json!({ "name": k, "value": v }))
        .collect();
    let mut body = json!({ "action": action, "parameters": parameters, "devices": devices });
    if let (Some(timeout), Value::Object(m)) = (targets.timeout, &mut body) {
        m.insert("timeout".into(), json!(timeout));
    }
    let path = if targets.override_ {
        format!("{BASE}?override=true")
    } else {
        BASE.to_string()
    };
    let answer = remote.call("POST", &path, Some(&body))?;
    answer["reqId"]
        .as_str()
        .map(str::to_string)
        .context("the broker's answer has no reqId")
}

/// Polls the request until it is complete (or `timeout` seconds and a little more pass).
fn wait(remote: &Remote, id: &str, timeout: u64) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(timeout + 5);
    loop {
        let v = remote.call("GET", &format!("{BASE}/{}", segment(id)), None)?;
        if v["complete"] == true {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("request {id} is not complete after {timeout} s");
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

fn print_status(remote: &Remote, id: &str, json_out: bool) -> Result<()> {
    let v = remote.call("GET", &format!("{BASE}/{}/deviceStatus?_limit=1000", segment(id)), None)?;
    let results = v["results"].as_array().cloned().unwrap_or_default();
    if json_out {
        println!("{v}");
    } else {
        for r in &results {
            let state = match (r["status"].as_u64(), r["complete"].as_bool()) {
                (Some(0), Some(true)) => "done".to_string(),
                (_, Some(false)) => "in progress".to_string(),
                (Some(code), _) => format!("failed {code}: {}", r["message"].as_str().unwrap_or("")),
                _ => "unknown".to_string(),
            };
            println!(
                "{}/{}  {state}",
                r["typeId"].as_str().unwrap_or(""),
                r["deviceId"].as_str().unwrap_or("")
            );
        }
    }
    let failed = results
        .iter()
        .filter(|r| r["complete"] == true && r["status"] != 0)
        .count();
    if failed > 0 {
        bail!("{failed} of {} device(s) failed", results.len());
    }
    Ok(())
}

fn request_line(v: &Value) -> String {
    format!(
        "{}  {}  {}  {}",
        v["id"].as_str().unwrap_or(""),
        v["action"].as_str().unwrap_or(""),
        if v["complete"] == true {
            "complete"
        } else {
            "in progress"
        },
        v["status"]
    )
}
