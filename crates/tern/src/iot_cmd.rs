//! `tern iot org|type|device|key ...`: the IoT platform's registry from the command line,
//! against a stopped or running broker's data directory (`--data-dir`, the broker's
//! `persistence_location`; a running broker sees the changes within a second), or against
//! a running broker through its admin API (`--url`, with an admin API key). Each command is
//! a [`RegistryOp`], run the same way either side. Tokens are shown once, when made; only
//! their hashes are kept. Every command takes `--json` for scripts.

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use tern_platform::registry_model::{check_id, DeviceClass, Role};
use tern_platform::registry_ops::{NewType, RegistryOp, SettingsChange};

#[derive(clap::Args)]
pub struct IotArgs {
    #[command(subcommand)]
    command: IotCommand,
    /// The broker's data directory (persistence_location, or `tern broker --data-dir`).
    #[arg(
        long = "data-dir",
        value_name = "DIR",
        default_value = "tern-data",
        env = "TERN_DATA_DIR",
        global = true
    )]
    data_dir: PathBuf,
    /// Print JSON (one document) instead of text.
    #[arg(long, global = true)]
    json: bool,
    /// A running broker's HTTP API (e.g. http://127.0.0.1:8080) to send the command to,
    /// instead of changing --data-dir.
    #[arg(long, value_name = "URL", env = "TERN_URL", global = true)]
    url: Option<String>,
    /// The admin API key for --url, as `ID:SECRET` (`tern admin key create` makes one).
    #[arg(
        long = "admin-key",
        value_name = "ID:SECRET",
        env = "TERN_ADMIN_KEY",
        global = true,
        hide_env_values = true
    )]
    admin_key: Option<String>,
    /// CA certificate(s) (PEM) to trust for an https --url.
    #[arg(long, value_name = "FILE", global = true)]
    cafile: Option<PathBuf>,
}

#[derive(clap::Subcommand)]
enum IotCommand {
    /// Organizations: create (prints its first admin API key), list, get, set, delete.
    #[command(subcommand)]
    Org(OrgCommand),
    /// Device types: create, list, get, delete.
    #[command(subcommand, name = "type")]
    Type(TypeCommand),
    /// Devices and gateways: create (prints the token), list, get, delete, regenerate-token.
    #[command(subcommand)]
    Device(DeviceCommand),
    /// Application API keys: create (prints key and token), list, revoke, regenerate.
    #[command(subcommand)]
    Key(KeyCommand),
    /// Device management requests (reboot, factory reset, firmware) through a running
    /// broker's platform API: needs --url and --api-key.
    Mgmt(crate::iot_mgmt::MgmtArgs),
    /// A device's stored events (the historian) as CSV or JSON lines, through a running
    /// broker's platform API: needs --url and --api-key.
    Export(crate::iot_export::ExportArgs),
}

#[derive(clap::Subcommand)]
enum OrgCommand {
    /// Create an organization; prints its first API key (role admin) and token, once.
    Create {
        /// Organization id: 1 to 36 of a-z and 0-9.
        #[arg(value_name = "ORG")]
        org: String,
        #[command(flatten)]
        settings: SettingsArgs,
    },
    /// List the organizations.
    List,
    /// Show an organization's settings and counts.
    Get {
        /// Organization id.
        #[arg(value_name = "ORG")]
        org: String,
    },
    /// Change an organization's settings.
    Set {
        /// Organization id.
        #[arg(value_name = "ORG")]
        org: String,
        #[command(flatten)]
        settings: SettingsArgs,
    },
    /// Delete an organization with its whole registry.
    Delete {
        /// Organization id.
        #[arg(value_name = "ORG")]
        org: String,
    },
}

#[derive(clap::Args)]
struct SettingsArgs {
    /// Let devices and applications connect without TLS.
    #[arg(long, value_name = "BOOL")]
    allow_plain: Option<bool>,
    /// Largest message payload in bytes (default 131072).
    #[arg(long, value_name = "BYTES")]
    max_payload: Option<u32>,
    /// Connections of the organization at once (default 10000).
    #[arg(long, value_name = "N")]
    max_connections: Option<u32>,
    /// New connections of the organization accepted per second (default 300).
    #[arg(long, value_name = "N")]
    connections_per_second: Option<u32>,
    /// Messages a device may publish per second (default 10).
    #[arg(long, value_name = "N")]
    device_messages_per_second: Option<u32>,
    /// Subscriptions per device connection (default 50).
    #[arg(long, value_name = "N")]
    subscriptions_per_device: Option<u32>,
    /// Subscriptions per application connection (default 500).
    #[arg(long, value_name = "N")]
    subscriptions_per_application: Option<u32>,
    /// Devices the registry may hold (default 1000000).
    #[arg(long, value_name = "N")]
    max_devices: Option<u32>,
    /// Turn the last event cache on or off.
    #[arg(long, value_name = "BOOL")]
    lec: Option<bool>,
    /// Days the last event cache keeps an event, 1 to 45 (default 7).
    #[arg(long, value_name = "DAYS")]
    lec_ttl_days: Option<u32>,
}

#[derive(clap::Subcommand)]
enum TypeCommand {
    /// Create a device type.
    Create {
        /// Organization id.
        #[arg(value_name = "ORG")]
        org: String,
        /// Type id: 1 to 36 of A-Z a-z 0-9 . _ -
        #[arg(value_name = "TYPE")]
        type_id: String,
        #[arg(long)]
        description: Option<String>,
        /// `device`, or `gateway` for gateways' types.
        #[arg(long, default_value = "device")]
        class: String,
        /// Default deviceInfo of its devices (a JSON object).
        #[arg(long, value_name = "JSON")]
        device_info: Option<String>,
        /// Metadata (a JSON object).
        #[arg(long, value_name = "JSON")]
        metadata: Option<String>,
    },
    /// List an organization's device types.
    List {
        /// Organization id.
        #[arg(value_name = "ORG")]
        org: String,
    },
    /// Show a device type.
    Get {
        /// Organization id.
        #[arg(value_name = "ORG")]
        org: String,
        /// Device type id.
        #[arg(value_name = "TYPE")]
        type_id: String,
    },
    /// Delete a device type that has no devices.
    Delete {
        /// Organization id.
        #[arg(value_name = "ORG")]
        org: String,
        /// Device type id.
        #[arg(value_name = "TYPE")]
        type_id: String,
    },
}

#[derive(clap::Subcommand)]
enum DeviceCommand {
    /// Register a device; prints its token (given or generated), once.
    Create {
        /// Organization id.
        #[arg(value_name = "ORG")]
        org: String,
        /// Device type id.
        #[arg(value_name = "TYPE")]
        type_id: String,
        /// Device id: 1 to 36 of A-Z a-z 0-9 . _ -
        #[arg(value_name = "ID")]
        device_id: String,
        /// The device's token (8 to 36 characters); generated if not given.
        #[arg(long)]
        token: Option<String>,
        /// deviceInfo (a JSON object), over the type's defaults.
        #[arg(long, value_name = "JSON")]
        device_info: Option<String>,
        /// Location (a JSON object).
        #[arg(long, value_name = "JSON")]
        location: Option<String>,
        /// Metadata (a JSON object).
        #[arg(long, value_name = "JSON")]
        metadata: Option<String>,
        /// The gateway the device sits behind.
        #[arg(long, value_name = "TYPE:ID")]
        gateway: Option<String>,
    },
    /// List an organization's devices (of one type if given).
    List {
        /// Organization id.
        #[arg(value_name = "ORG")]
        org: String,
        /// Only devices of this type.
        #[arg(value_name = "TYPE")]
        type_id: Option<String>,
    },
    /// Show a device.
    Get {
        /// Organization id.
        #[arg(value_name = "ORG")]
        org: String,
        /// Device type id.
        #[arg(value_name = "TYPE")]
        type_id: String,
        /// Device id.
        #[arg(value_name = "ID")]
        device_id: String,
    },
    /// Remove a device.
    Delete {
        /// Organization id.
        #[arg(value_name = "ORG")]
        org: String,
        /// Device type id.
        #[arg(value_name = "TYPE")]
        type_id: String,
        /// Device id.
        #[arg(value_name = "ID")]
        device_id: String,
    },
    /// Register many devices in one change, from a JSON array as the platform's
    /// `POST /bulk/devices/add` takes it; prints one result per device, with its token.
    BulkAdd {
        /// Organization id.
        #[arg(value_name = "ORG")]
        org: String,
        /// The JSON file (`-`: standard input): [{"typeId", "deviceId", "authToken"?,
        /// "deviceInfo"?, "location"?, "metadata"?}, ...].
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },
    /// Give a device a new token (the old one stops working); prints it once.
    RegenerateToken {
        /// Organization id.
        #[arg(value_name = "ORG")]
        org: String,
        /// Device type id.
        #[arg(value_name = "TYPE")]
        type_id: String,
        /// Device id.
        #[arg(value_name = "ID")]
        device_id: String,
        /// The new token; generated if not given.
        #[arg(long)]
        token: Option<String>,
    },
}

#[derive(clap::Subcommand)]
enum KeyCommand {
    /// Create an API key; prints the key and its token, once.
    Create {
        /// Organization id.
        #[arg(value_name = "ORG")]
        org: String,
        /// standard-app, read-only, device-operator or admin.
        #[arg(long, default_value = "standard-app")]
        role: String,
        #[arg(long)]
        description: Option<String>,
    },
    /// List an organization's API keys (tokens are not kept).
    List {
        /// Organization id.
        #[arg(value_name = "ORG")]
        org: String,
    },
    /// Revoke an API key.
    Revoke {
        /// Organization id.
        #[arg(value_name = "ORG")]
        org: String,
        /// The API key (a-<org>-...).
        #[arg(value_name = "KEY")]
        key: String,
    },
    /// Give an API key a new token (the old one stops working); prints it once.
    Regenerate {
        /// Organization id.
        #[arg(value_name = "ORG")]
        org: String,
        /// The API key (a-<org>-...).
        #[arg(value_name = "KEY")]
        key: String,
    },
}

/// How a command's answer reads as text.
type Text = fn(&Value) -> String;

pub fn run(args: IotArgs) -> Result<()> {
    let (op, text) = match args.command {
        IotCommand::Mgmt(m) => return crate::iot_mgmt::run(m, args.url.as_deref(), args.cafile.as_deref(), args.json),
        IotCommand::Export(e) => {
            let (url, cafile) = (args.url.as_deref(), args.cafile.as_deref());
            return crate::iot_export::run(e, url, cafile, args.admin_key.as_deref());
        }
        IotCommand::Org(c) => org(c)?,
        IotCommand::Type(c) => device_type(c)?,
        IotCommand::Device(c) => device(c)?,
        IotCommand::Key(c) => key(c)?,
    };
    let bulk = matches!(op, RegistryOp::DeviceBulkAdd { .. });
    let value = match &args.url {
        Some(url) => {
            let remote = crate::iot_remote::Remote::new(url, args.admin_key.as_deref(), args.cafile.as_deref())?;
            remote.send(&op)?
        }
        None => run_local(op, &args.data_dir)?,
    };
    if args.json {
        println!("{value}");
    } else {
        let text = text(&value);
        if !text.is_empty() {
            println!("{text}");
        }
    }
    if bulk {
        let items = value.as_array().map_or(0, Vec::len);
        let failed = value
            .as_array()
            .map_or(0, |all| all.iter().filter(|r| r["authToken"].is_null()).count());
        if failed > 0 {
            bail!("{failed} of {items} device(s) not added");
        }
    }
    Ok(())
}

/// Runs `op` on the data directory `dir`, which must exist unless an organization is
/// being created there (a mistyped path would otherwise start a new, empty registry).
fn run_local(op: RegistryOp, dir: &Path) -> Result<Value> {
    if !dir.is_dir() && !matches!(op, RegistryOp::OrgCreate { .. }) {
        bail!(
            "no data directory {}: give the broker's (its persistence_location) with --data-dir DIR, or a running broker with --url",
            dir.display()
        );
    }
    op.run(dir).map_err(|e| match e {
        tern_platform::registry::RegistryError::NotFound(m) => {
            anyhow::anyhow!("{m} (in data directory {})", dir.display())
        }
        e => e.into(),
    })
}

fn object_arg(flag: &str, text: Option<&str>) -> Result<Option<Value>> {
    let Some(text) = text else { return Ok(None) };
    let value: Value = serde_json::from_str(text).with_context(|| format!("{flag} is not valid JSON"))?;
    if !value.is_object() {
        bail!("{flag} must be a JSON object, like '{{\"model\": \"x1\"}}'");
    }
    Ok(Some(value))
}

impl SettingsArgs {
    fn change(&self) -> SettingsChange {
        SettingsChange {
            allow_plain: self.allow_plain,
            max_payload: self.max_payload,
            max_connections: self.max_connections,
            connections_per_second: self.connections_per_second,
            device_messages_per_second: self.device_messages_per_second,
            subscriptions_per_device: self.subscriptions_per_device,
            subscriptions_per_application: self.subscriptions_per_application,
            max_devices: self.max_devices,
            lec: self.lec,
            lec_ttl_days: self.lec_ttl_days,
        }
    }
}

fn str_of<'a>(value: &'a Value, field: &str) -> &'a str {
    value[field].as_str().unwrap_or("")
}

fn org(command: OrgCommand) -> Result<(RegistryOp, Text)> {
    Ok(match command {
        OrgCommand::Create { org, settings } => (
            RegistryOp::OrgCreate {
                org,
                settings: settings.change(),
            },
            |v| {
                format!(
                    "organization {} created\napiKey:   {}\napiToken: {}\n(the token is shown only now)",
                    str_of(v, "org"),
                    str_of(v, "apiKey"),
                    str_of(v, "apiToken")
                )
            },
        ),
        OrgCommand::List => (RegistryOp::OrgList, |v| lines(v, |o| str_of(o, "org").to_string())),
        OrgCommand::Get { org } => (RegistryOp::OrgGet { org }, pretty),
        OrgCommand::Set { org, settings } => (
            RegistryOp::OrgSet {
                org,
                settings: settings.change(),
            },
            pretty,
        ),
        OrgCommand::Delete { org } => (RegistryOp::OrgDelete { org }, |v| {
            format!(
                "organization {} deleted with its {} device(s)",
                str_of(v, "org"),
                v["devices"]
            )
        }),
    })
}

fn device_type(command: TypeCommand) -> Result<(RegistryOp, Text)> {
    Ok(match command {
        TypeCommand::Create {
            org,
            type_id,
            description,
            class,
            device_info,
            metadata,
        } => {
            let class_id: DeviceClass = class.parse()?;
            let new = NewType {
                id: type_id,
                description,
                class_id,
                device_info: object_arg("--device-info", device_info.as_deref())?,
                metadata: object_arg("--metadata", metadata.as_deref())?,
            };
            (RegistryOp::TypeCreate { org, new }, |v| {
                format!("device type {} created", str_of(v, "id"))
            })
        }
        TypeCommand::List { org } => (RegistryOp::TypeList { org }, |v| {
            lines(v, |t| format!("{}  {}", str_of(t, "id"), str_of(t, "classId")))
        }),
        TypeCommand::Get { org, type_id } => (RegistryOp::TypeGet { org, type_id }, pretty),
        TypeCommand::Delete { org, type_id } => (RegistryOp::TypeDelete { org, type_id }, |v| {
            format!("device type {} deleted from {}", str_of(v, "typeId"), str_of(v, "org"))
        }),
    })
}

fn gateway_arg(text: Option<&str>) -> Result<Option<Value>> {
    let Some(text) = text else { return Ok(None) };
    let Some((type_id, device_id)) = text.split_once(':') else {
        bail!("--gateway {text:?}: expected TYPE:ID");
    };
    check_id("gateway type id", type_id)?;
    check_id("gateway id", device_id)?;
    Ok(Some(json!({ "typeId": type_id, "deviceId": device_id })))
}

fn device(command: DeviceCommand) -> Result<(RegistryOp, Text)> {
    Ok(match command {
        DeviceCommand::Create {
            org,
            type_id,
            device_id,
            token,
            device_info,
            location,
            metadata,
            gateway,
        } => {
            let mut device = json!({ "typeId": type_id, "deviceId": device_id });
            let fields = [
                ("authToken", token.map(Value::String)),
                ("deviceInfo", object_arg("--device-info", device_info.as_deref())?),
                ("location", object_arg("--location", location.as_deref())?),
                ("metadata", object_arg("--metadata", metadata.as_deref())?),
                ("gateway", gateway_arg(gateway.as_deref())?),
            ];
            if let Value::Object(m) = &mut device {
                for (name, value) in fields {
                    if let Some(value) = value {
                        m.insert(name.into(), value);
                    }
                }
            }
            (RegistryOp::DeviceCreate { org, device }, |v| {
                with_token(v, "registered")
            })
        }
        DeviceCommand::List { org, type_id } => (RegistryOp::DeviceList { org, type_id }, |v| {
            lines(v, |d| str_of(d, "clientId").to_string())
        }),
        DeviceCommand::Get {
            org,
            type_id,
            device_id,
        } => (
            RegistryOp::DeviceGet {
                org,
                type_id,
                device_id,
            },
            pretty,
        ),
        DeviceCommand::Delete {
            org,
            type_id,
            device_id,
        } => (
            RegistryOp::DeviceDelete {
                org,
                type_id,
                device_id,
            },
            |v| {
                format!(
                    "device {}/{} deleted from {}",
                    str_of(v, "typeId"),
                    str_of(v, "deviceId"),
                    str_of(v, "org")
                )
            },
        ),
        DeviceCommand::BulkAdd { org, file } => (
            RegistryOp::DeviceBulkAdd {
                org,
                devices: read_json_file(&file)?,
            },
            bulk_text,
        ),
        DeviceCommand::RegenerateToken {
            org,
            type_id,
            device_id,
            token,
        } => (
            RegistryOp::DeviceRegenerateToken {
                org,
                type_id,
                device_id,
                token,
            },
            |v| with_token(v, "has a new token"),
        ),
    })
}

fn read_json_file(file: &Path) -> Result<Value> {
    let text = if file == Path::new("-") {
        let mut text = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin(), &mut text).context("cannot read standard input")?;
        text
    } else {
        std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?
    };
    serde_json::from_slice(&text).with_context(|| format!("{} is not valid JSON", file.display()))
}

fn bulk_text(value: &Value) -> String {
    lines(value, |r| {
        let id = format!("{}/{}", str_of(r, "typeId"), str_of(r, "deviceId"));
        match r["authToken"].as_str() {
            Some(token) => format!("{id}  authToken: {token}"),
            None => format!("{id}  not added: {}", str_of(r, "message")),
        }
    })
}

/// A device with its token, shown only now.
fn with_token(value: &Value, done: &str) -> String {
    format!(
        "device {} {done}\nauthToken: {}\n(the token is shown only now)",
        str_of(value, "clientId"),
        str_of(value, "authToken")
    )
}

fn key(command: KeyCommand) -> Result<(RegistryOp, Text)> {
    Ok(match command {
        KeyCommand::Create { org, role, description } => {
            let role: Role = role.parse()?;
            (RegistryOp::KeyCreate { org, role, description }, |v| {
                format!(
                    "apiKey:   {}\napiToken: {}\nrole:     {}\n(the token is shown only now)",
                    str_of(v, "apiKey"),
                    str_of(v, "apiToken"),
                    str_of(v, "role")
                )
            })
        }
        KeyCommand::List { org } => (RegistryOp::KeyList { org }, |v| {
            lines(v, |k| {
                format!(
                    "{}  {}  {}  {}",
                    str_of(k, "apiKey"),
                    str_of(k, "role"),
                    str_of(k, "created"),
                    str_of(k, "description")
                )
            })
        }),
        KeyCommand::Revoke { org, key } => (RegistryOp::KeyRevoke { org, key }, |v| {
            format!("API key {} revoked", str_of(v, "apiKey"))
        }),
        KeyCommand::Regenerate { org, key } => (RegistryOp::KeyRegenerate { org, key }, |v| {
            format!(
                "apiKey:   {}\napiToken: {}\n(the token is shown only now)",
                str_of(v, "apiKey"),
                str_of(v, "apiToken")
            )
        }),
    })
}

fn lines(items: &Value, line: impl Fn(&Value) -> String) -> String {
    let Some(items) = items.as_array() else {
        return String::new();
    };
    items.iter().map(line).collect::<Vec<_>>().join("\n")
}

fn pretty(value: &Value) -> String {
    serde_json::to_string_pretty(value).unwrap_or_default()
}
