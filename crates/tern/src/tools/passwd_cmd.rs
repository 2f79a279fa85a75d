//! `tern passwd`: mosquitto_passwd's flags; the files it writes are read by mosquitto and
//! by Tern, and it reads mosquitto's.

use anyhow::{anyhow, bail, Context, Result};
use std::io::{BufRead, IsTerminal, Write};
use std::path::Path;
use tern_core::password::{format_file, parse_file, Algorithm, Entry, PasswordHash, Secret, DEFAULT_ITERATIONS};

#[derive(clap::Args, Debug)]
pub struct PasswdArgs {
    /// Create a new password file (overwrites an existing one).
    #[arg(short = 'c')]
    create: bool,
    /// Batch mode: the password is the last argument.
    #[arg(short = 'b')]
    batch: bool,
    /// Delete the user.
    #[arg(short = 'D')]
    delete: bool,
    /// Hash every plain-text password in the file.
    #[arg(short = 'U')]
    upgrade: bool,
    /// Hash algorithm: sha512-pbkdf2 (default) or sha512 (both mosquitto's), or
    /// scram-sha-256 (Tern's, for MQTT 5.0 enhanced authentication; see scram_file).
    #[arg(short = 'H', default_value = "sha512-pbkdf2")]
    hash: String,
    /// Iterations of sha512-pbkdf2 (scram-sha-256: 4096 unless given).
    #[arg(short = 'I', default_value_t = DEFAULT_ITERATIONS)]
    iterations: u32,
    /// The password file, then the user name (not with -U), then the password (-b only).
    #[arg(required = true, num_args = 1..=3, value_name = "passwordfile [username [password]]")]
    args: Vec<String>,
}

fn algorithm(args: &PasswdArgs) -> Result<Algorithm> {
    match args.hash.as_str() {
        "sha512-pbkdf2" if args.iterations > 0 => Ok(Algorithm::Pbkdf2Sha512 {
            iterations: args.iterations,
        }),
        "sha512-pbkdf2" => bail!("-I: the iteration count must be at least 1"),
        "sha512" => Ok(Algorithm::Sha512),
        "scram-sha-256" => Ok(Algorithm::ScramSha256 {
            // RFC 7677 asks for at least 4096; mosquitto's default of 101 is for PBKDF2-SHA512.
            iterations: if args.iterations == DEFAULT_ITERATIONS {
                tern_core::scram::DEFAULT_ITERATIONS
            } else {
                args.iterations.max(1)
            },
        }),
        other => bail!("-H: unknown hash {other:?}: use sha512-pbkdf2, sha512 or scram-sha-256"),
    }
}

/// mosquitto_passwd's refusal of an empty password (which would let anyone who knows
/// the user name in).
const EMPTY_PASSWORD: &str = "Empty password.";

/// Reads a password: without echo from a terminal (twice, to confirm), or a line of stdin.
/// An empty one is refused at once, as mosquitto_passwd does.
fn prompt_password() -> Result<String> {
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        let mut line = String::new();
        stdin.lock().read_line(&mut line)?;
        let password = line.trim_end_matches(['\n', '\r']).to_string();
        if password.is_empty() {
            bail!(EMPTY_PASSWORD);
        }
        return Ok(password);
    }
    let first = read_hidden("Password: ")?;
    if first.is_empty() {
        bail!(EMPTY_PASSWORD);
    }
    let second = read_hidden("Reenter password: ")?;
    if first != second {
        bail!("Passwords do not match.");
    }
    Ok(first)
}

fn read_hidden(prompt: &str) -> Result<String> {
    eprint!("{prompt}");
    std::io::stderr().flush()?;
    // SAFETY: plain termios calls on standard input's descriptor with a zeroed struct
    // filled by tcgetattr; the original settings are restored before returning.
    let saved = unsafe {
        let mut term: libc::termios = std::mem::zeroed();
        if libc::tcgetattr(0, &mut term) != 0 {
            return Err(anyhow!("cannot read terminal settings"));
        }
        let saved = term;
        term.c_lflag &= !libc::ECHO;
        libc::tcsetattr(0, libc::TCSANOW, &term);
        saved
    };
    let mut line = String::new();
    let result = std::io::stdin().lock().read_line(&mut line);
    unsafe {
        libc::tcsetattr(0, libc::TCSANOW, &saved);
    }
    eprintln!();
    result?;
    Ok(line.trim_end_matches(['\n', '\r']).to_string())
}

fn read_entries(path: &Path, allow_plain: bool) -> Result<Vec<Entry>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read password file {}", path.display()))?;
    parse_file(&text, allow_plain).map_err(|e| anyhow!("{}: {e}", path.display()))
}

/// Writes the file through a temporary file and a rename, readable by its owner only.
fn write_entries(path: &Path, entries: &[Entry]) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp-tern");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    file.write_all(format_file(entries).as_bytes())?;
    file.sync_all()?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot replace {}", path.display()))?;
    Ok(())
}

pub fn run(args: PasswdArgs) -> Result<()> {
    let algorithm = algorithm(&args)?;
    let path = Path::new(&args.args[0]);
    if args.upgrade {
        if args.args.len() != 1 || args.create || args.delete || args.batch {
            bail!("-U takes only the password file");
        }
        let mut entries = read_entries(path, true)?;
        for entry in &mut entries {
            if let Secret::Plain(plain) = &entry.secret {
                entry.secret = Secret::Hashed(PasswordHash::new(plain.as_bytes(), algorithm)?);
            }
        }
        return write_entries(path, &entries);
    }
    let user = args.args.get(1).ok_or_else(|| anyhow!("a user name is needed"))?;
    if user.contains(':') {
        bail!("user names must not contain ':'");
    }
    if args.create && args.delete {
        bail!("-c and -D cannot be used together");
    }
    let mut entries = if args.create {
        Vec::new()
    } else {
        read_entries(path, false)?
    };
    if args.delete {
        let before = entries.len();
        entries.retain(|e| &e.user != user);
        if entries.len() == before {
            bail!("user {user} not found in {}", path.display());
        }
        return write_entries(path, &entries);
    }
    let password = match (args.batch, args.args.get(2)) {
        (true, Some(p)) => p.clone(),
        (true, None) => bail!("-b needs the password as the last argument"),
        (false, Some(_)) => bail!("a password on the command line needs -b"),
        (false, None) => prompt_password()?,
    };
    if password.is_empty() {
        // mosquitto_passwd 2.0 accepts `-b FILE USER ""`; an empty password is refused in
        // every mode here.
        bail!(EMPTY_PASSWORD);
    }
    let secret = Secret::Hashed(PasswordHash::new(password.as_bytes(), algorithm)?);
    match entries.iter_mut().find(|e| &e.user == user) {
        Some(entry) => entry.secret = secret,
        None => entries.push(Entry {
            user: user.clone(),
            secret,
        }),
    }
    write_entries(path, &entries)
}
