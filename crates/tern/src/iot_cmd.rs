//! `tern iot org|type|device|key ...`: the IoT platform's registry from the command line,
//! against a broker's data directory (`--data-dir`, the broker's `persistence_location`).
//! A running broker sees the changes within a second. Tokens are shown once, when made;
//! only their hashes are kept. Every command takes `--json` for scripts.

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use tern_platform::registry::{self, DeviceType, GatewayRef, NewDevice, OrgSettings};
use tern_platform::registry_model::{check_id, now_unix, DeviceClass, Role};

#[derive(clap::Args)]
pub struct IotArgs {
    #[command(subcommand)]
    command: IotCommand,
    /// The broker's data directory (persistence_location, or `tern broker --data-dir`).
    #[arg(long = "data-dir", value_name = "DIR", default_value = "tern-data", global = true)]
    data_dir: PathBuf,
    /// Print JSON (one document) instead of text.
    #[arg(long, global = true)]
    json: bool,
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
    /// Messages a device may publish per second (default 10).
    #[arg(long, value_name = "N")]
    device_messages_per_second: Option<u32>,
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

/// What a command prints: JSON for `--json`, text otherwise.
struct Out {
    json: bool,
}

impl Out {
    fn print(&self, value: &Value, text: impl FnOnce() -> String) {
        if self.json {
            println!("{value}");
            return;
        }
        let text = text();
        if !text.is_empty() {
            println!("{text}");
        }
    }
}

pub fn run(args: IotArgs) -> Result<()> {
    let out = Out { json: args.json };
    let dir = args.data_dir.as_path();
    match args.command {
        IotCommand::Org(c) => org(dir, &out, c),
        IotCommand::Type(c) => device_type(dir, &out, c),
        IotCommand::Device(c) => device(dir, &out, c),
        IotCommand::Key(c) => key(dir, &out, c),
    }
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
    fn apply(&self, s: &mut OrgSettings) -> Result<(), registry::RegistryError> {
        let invalid = |m: String| Err(registry::RegistryError::Invalid(m));
        if let Some(max) = self.max_payload {
            if !(1..=268_435_455).contains(&max) {
                return invalid(format!("--max-payload {max}: must be 1 to 268435455 bytes"));
            }
        }
        if let Some(days) = self.lec_ttl_days {
            if !(1..=45).contains(&days) {
                return invalid(format!("--lec-ttl-days {days}: must be 1 to 45"));
            }
        }
        set(&mut s.max_payload, self.max_payload);
        set(&mut s.lec.ttl_days, self.lec_ttl_days);
        set(&mut s.allow_plain, self.allow_plain);
        set(&mut s.quotas.max_connections, self.max_connections);
        set(
            &mut s.quotas.device_messages_per_second,
            self.device_messages_per_second,
        );
        set(&mut s.quotas.max_devices, self.max_devices);
        set(&mut s.lec.enabled, self.lec);
        Ok(())
    }
}

fn set<T>(field: &mut T, value: Option<T>) {
    if let Some(value) = value {
        *field = value;
    }
}

fn org(dir: &Path, out: &Out, command: OrgCommand) -> Result<()> {
    match command {
        OrgCommand::Create { org, settings } => {
            let mut initial = OrgSettings::default();
            settings.apply(&mut initial)?;
            let new = registry::create_org(dir, &org, initial)?;
            let value = json!({ "org": org, "apiKey": new.key.key, "apiToken": new.token });
            out.print(&value, || {
                format!(
                    "organization {org} created\napiKey:   {}\napiToken: {}\n(the token is shown only now)",
                    new.key.key, new.token
                )
            });
        }
        OrgCommand::List => {
            let mut all = Vec::new();
            for org in registry::list_orgs(dir)? {
                all.push(registry::read_org(dir, &org)?.summary_json());
            }
            out.print(&Value::Array(all.clone()), || {
                lines(&all, |o| o["org"].as_str().unwrap_or("").to_string())
            });
        }
        OrgCommand::Get { org } => {
            let summary = registry::read_org(dir, &org)?.summary_json();
            out.print(&summary, || pretty(&summary));
        }
        OrgCommand::Set { org, settings } => {
            let data = registry::edit_org(dir, &org, |data| {
                settings.apply(&mut data.org.settings)?;
                Ok(data.summary_json())
            })?;
            out.print(&data, || pretty(&data));
        }
        OrgCommand::Delete { org } => {
            let old = registry::delete_org(dir, &org)?;
            let value = json!({ "org": org, "deleted": true, "devices": old.device_count() });
            out.print(&value, || {
                format!("organization {org} deleted with its {} device(s)", old.device_count())
            });
        }
    }
    Ok(())
}

fn device_type(dir: &Path, out: &Out, command: TypeCommand) -> Result<()> {
    match command {
        TypeCommand::Create {
            org,
            type_id,
            description,
            class,
            device_info,
            metadata,
        } => {
            let class_id: DeviceClass = class.parse()?;
            let new = DeviceType {
                id: type_id.clone(),
                description,
                class_id,
                device_info: object_arg("--device-info", device_info.as_deref())?.unwrap_or_else(|| json!({})),
                metadata: object_arg("--metadata", metadata.as_deref())?.unwrap_or_else(|| json!({})),
                created_unix: now_unix(),
            };
            let value = new.to_api_json();
            registry::edit_org(dir, &org, |data| data.add_type(new))?;
            out.print(&value, || format!("device type {type_id} created in {org}"));
        }
        TypeCommand::List { org } => {
            let data = registry::read_org(dir, &org)?;
            let all: Vec<Value> = data.types.values().map(DeviceType::to_api_json).collect();
            out.print(&Value::Array(all.clone()), || {
                lines(&all, |t| {
                    format!(
                        "{}  {}",
                        t["id"].as_str().unwrap_or(""),
                        t["classId"].as_str().unwrap_or("")
                    )
                })
            });
        }
        TypeCommand::Get { org, type_id } => {
            let data = registry::read_org(dir, &org)?;
            let Some(t) = data.types.get(&type_id) else {
                bail!("no device type {type_id} in organization {org}");
            };
            let value = t.to_api_json();
            out.print(&value, || pretty(&value));
        }
        TypeCommand::Delete { org, type_id } => {
            registry::edit_org(dir, &org, |data| data.remove_type(&type_id))?;
            let value = json!({ "org": org, "typeId": type_id, "deleted": true });
            out.print(&value, || format!("device type {type_id} deleted from {org}"));
        }
    }
    Ok(())
}

fn gateway_arg(text: Option<&str>) -> Result<Option<GatewayRef>> {
    let Some(text) = text else { return Ok(None) };
    let Some((type_id, device_id)) = text.split_once(':') else {
        bail!("--gateway {text:?}: expected TYPE:ID");
    };
    check_id("gateway type id", type_id)?;
    check_id("gateway id", device_id)?;
    Ok(Some(GatewayRef {
        type_id: type_id.to_string(),
        device_id: device_id.to_string(),
    }))
}

fn device(dir: &Path, out: &Out, command: DeviceCommand) -> Result<()> {
    match command {
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
            let new = NewDevice {
                type_id,
                device_id,
                token,
                device_info: object_arg("--device-info", device_info.as_deref())?,
                location: object_arg("--location", location.as_deref())?,
                metadata: object_arg("--metadata", metadata.as_deref())?,
                gateway: gateway_arg(gateway.as_deref())?,
            };
            let (value, token) = registry::edit_org(dir, &org, |data| {
                let (device, token) = data.add_device(new)?;
                Ok((device.to_api_json(&org, data.class_of(&device.type_id)), token))
            })?;
            print_with_token(out, value, &token, "registered");
        }
        DeviceCommand::List { org, type_id } => {
            let data = registry::read_org(dir, &org)?;
            if let Some(t) = &type_id {
                if !data.types.contains_key(t) {
                    bail!("no device type {t} in organization {org}");
                }
            }
            let all: Vec<Value> = data
                .devices
                .iter()
                .filter(|(t, _)| type_id.as_ref().is_none_or(|wanted| wanted == *t))
                .flat_map(|(t, devices)| devices.values().map(|d| d.to_api_json(&org, data.class_of(t))))
                .collect();
            out.print(&Value::Array(all.clone()), || {
                lines(&all, |d| d["clientId"].as_str().unwrap_or("").to_string())
            });
        }
        DeviceCommand::Get {
            org,
            type_id,
            device_id,
        } => {
            let data = registry::read_org(dir, &org)?;
            let Some(d) = data.device(&type_id, &device_id) else {
                bail!("no device {type_id}/{device_id} in organization {org}");
            };
            let value = d.to_api_json(&org, data.class_of(&type_id));
            out.print(&value, || pretty(&value));
        }
        DeviceCommand::Delete {
            org,
            type_id,
            device_id,
        } => {
            registry::edit_org(dir, &org, |data| data.remove_device(&type_id, &device_id))?;
            let value = json!({ "org": org, "typeId": type_id, "deviceId": device_id, "deleted": true });
            out.print(&value, || format!("device {type_id}/{device_id} deleted from {org}"));
        }
        DeviceCommand::BulkAdd { org, file } => bulk_add(dir, out, &org, &file)?,
        DeviceCommand::RegenerateToken {
            org,
            type_id,
            device_id,
            token,
        } => {
            let (value, token) = registry::edit_org(dir, &org, |data| {
                let token = data.regenerate_device_token(&type_id, &device_id, token)?;
                let device = data
                    .device(&type_id, &device_id)
                    .map(|d| d.to_api_json(&org, data.class_of(&type_id)));
                Ok((device.unwrap_or(Value::Null), token))
            })?;
            print_with_token(out, value, &token, "has a new token");
        }
    }
    Ok(())
}

fn bulk_add(dir: &Path, out: &Out, org: &str, file: &Path) -> Result<()> {
    let text = if file == Path::new("-") {
        let mut text = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin(), &mut text).context("cannot read standard input")?;
        text
    } else {
        std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?
    };
    let body: Value = serde_json::from_slice(&text).with_context(|| format!("{} is not valid JSON", file.display()))?;
    let news = NewDevice::list_from_api_json(&body).with_context(|| format!("in {}", file.display()))?;
    let outcomes = registry::edit_org(dir, org, |data| Ok(data.add_devices(news)))?;
    let results: Vec<Value> = outcomes.iter().map(|o| o.to_api_json()).collect();
    out.print(&Value::Array(results), || {
        lines(&outcomes.iter().map(|o| o.to_api_json()).collect::<Vec<_>>(), |r| {
            let id = format!(
                "{}/{}",
                r["typeId"].as_str().unwrap_or(""),
                r["deviceId"].as_str().unwrap_or("")
            );
            match r["authToken"].as_str() {
                Some(token) => format!("{id}  authToken: {token}"),
                None => format!("{id}  not added: {}", r["message"].as_str().unwrap_or("")),
            }
        })
    });
    let failed = outcomes.iter().filter(|o| o.result.is_err()).count();
    if failed > 0 {
        bail!("{failed} of {} device(s) not added", outcomes.len());
    }
    Ok(())
}

/// Prints a device with its token (`authToken`, the REST API's name), shown only now.
fn print_with_token(out: &Out, mut value: Value, token: &str, done: &str) {
    if let Value::Object(m) = &mut value {
        m.insert("authToken".into(), Value::String(token.to_string()));
    }
    out.print(&value, || {
        format!(
            "device {} {done}\nauthToken: {token}\n(the token is shown only now)",
            value["clientId"].as_str().unwrap_or("")
        )
    });
}

fn key(dir: &Path, out: &Out, command: KeyCommand) -> Result<()> {
    match command {
        KeyCommand::Create { org, role, description } => {
            let role: Role = role.parse()?;
            let (key, token) = registry::edit_org(dir, &org, |data| data.add_key(role, description))?;
            let value = json!({ "org": org, "apiKey": key.key, "apiToken": token, "role": role });
            out.print(&value, || {
                format!(
                    "apiKey:   {}\napiToken: {token}\nrole:     {}\n(the token is shown only now)",
                    key.key,
                    role.name()
                )
            });
        }
        KeyCommand::List { org } => {
            let data = registry::read_org(dir, &org)?;
            let all: Vec<Value> = data.keys.values().map(|k| k.to_api_json()).collect();
            out.print(&Value::Array(all.clone()), || {
                lines(&all, |k| {
                    format!(
                        "{}  {}  {}  {}",
                        k["apiKey"].as_str().unwrap_or(""),
                        k["role"].as_str().unwrap_or(""),
                        k["created"].as_str().unwrap_or(""),
                        k["description"].as_str().unwrap_or("")
                    )
                })
            });
        }
        KeyCommand::Revoke { org, key } => {
            registry::edit_org(dir, &org, |data| data.remove_key(&key))?;
            let value = json!({ "org": org, "apiKey": key, "revoked": true });
            out.print(&value, || format!("API key {key} revoked"));
        }
        KeyCommand::Regenerate { org, key } => {
            let token = registry::edit_org(dir, &org, |data| data.regenerate_key_token(&key))?;
            let value = json!({ "org": org, "apiKey": key, "apiToken": token });
            out.print(&value, || {
                format!("apiKey:   {key}\napiToken: {token}\n(the token is shown only now)")
            });
        }
    }
    Ok(())
}

fn lines(items: &[Value], line: impl Fn(&Value) -> String) -> String {
    items.iter().map(line).collect::<Vec<_>>().join("\n")
}

fn pretty(value: &Value) -> String {
    serde_json::to_string_pretty(value).unwrap_or_default()
}
