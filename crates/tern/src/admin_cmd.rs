//! `tern admin key create|revoke|list --data-dir DIR`: the HTTP API's keys, kept hashed in
//! the data directory's `api-keys` file, which a running broker re-reads within a second.
//! A key's secret is shown once, at creation; only its PBKDF2 hash is stored.

use anyhow::{Context, Result};
use std::path::PathBuf;
use tern_broker::api_keys;

#[derive(clap::Args)]
pub struct AdminArgs {
    #[command(subcommand)]
    command: AdminCommand,
}

#[derive(clap::Subcommand)]
enum AdminCommand {
    /// API keys of the HTTP API.
    #[command(subcommand)]
    Key(KeyCommand),
}

#[derive(clap::Subcommand)]
enum KeyCommand {
    /// Create a key and print its id and secret (the secret is shown only now).
    Create {
        #[command(flatten)]
        dir: DataDir,
        /// Print {"key": ID, "secret": SECRET} as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Revoke a key: requests with it are refused from the next second on.
    Revoke {
        #[command(flatten)]
        dir: DataDir,
        /// The key id (as `list` shows it).
        key: String,
    },
    /// List the keys (ids and creation times; secrets are not kept).
    List {
        #[command(flatten)]
        dir: DataDir,
        /// Print a JSON array.
        #[arg(long)]
        json: bool,
    },
}

#[derive(clap::Args)]
struct DataDir {
    /// The broker's data directory (persistence_location, or `tern broker --data-dir`).
    #[arg(
        long = "data-dir",
        value_name = "DIR",
        default_value = "tern-data",
        env = "TERN_DATA_DIR"
    )]
    data_dir: PathBuf,
}

pub fn run(args: AdminArgs) -> Result<()> {
    let AdminCommand::Key(command) = args.command;
    match command {
        KeyCommand::Create { dir, json } => create(&dir.data_dir, json),
        KeyCommand::Revoke { dir, key } => revoke(&dir.data_dir, &key),
        KeyCommand::List { dir, json } => list(&dir.data_dir, json),
    }
}

fn create(dir: &std::path::Path, json: bool) -> Result<()> {
    let (record, secret) = api_keys::generate()?;
    let id = record.id.clone();
    api_keys::update(dir, |records| {
        records.push(record);
        Ok(())
    })
    .with_context(|| format!("cannot save the key in {}", dir.display()))?;
    if json {
        println!("{}", serde_json::json!({ "key": id, "secret": secret }));
    } else {
        println!("key:    {id}");
        println!("secret: {secret}");
        eprintln!("The secret is shown only now. Use it as `Authorization: Bearer SECRET`, or HTTP Basic with the key id as user.");
    }
    Ok(())
}

fn revoke(dir: &std::path::Path, key: &str) -> Result<()> {
    api_keys::update(dir, |records| {
        let before = records.len();
        records.retain(|r| r.id != key);
        match records.len() == before {
            true => Err(api_keys::ApiKeyError::NoSuchKey(key.to_string())),
            false => Ok(()),
        }
    })?;
    eprintln!("key {key} revoked");
    Ok(())
}

fn list(dir: &std::path::Path, json: bool) -> Result<()> {
    let records = api_keys::read(dir)?;
    if json {
        let keys: Vec<_> = records
            .iter()
            .map(|r| serde_json::json!({ "key": r.id, "created_unix": r.created_unix }))
            .collect();
        println!("{}", serde_json::Value::Array(keys));
        return Ok(());
    }
    for r in &records {
        println!("{}  created {}", r.id, r.created_unix);
    }
    Ok(())
}
