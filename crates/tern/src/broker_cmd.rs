//! `tern broker`: builds the configuration from flags and file, sets up logging, binds,
//! and runs until SIGTERM or SIGINT; SIGHUP reloads the configuration file.

use anyhow::{bail, Context, Result};
use std::io::IsTerminal;
use std::path::PathBuf;
use tern_broker::config::{ListenerConfig, LogDest};
use tern_broker::{Broker, Config};
use tokio::signal::unix::{signal, SignalKind};

#[derive(clap::Args)]
pub struct BrokerArgs {
    /// Configuration file: Tern's TOML (*.toml) or a mosquitto.conf.
    #[arg(short = 'c', long = "config-file", value_name = "FILE")]
    config: Option<PathBuf>,
    /// Listen on PORT (127.0.0.1 only when no config file is given). Repeatable.
    #[arg(short = 'p', long = "port", value_name = "PORT")]
    port: Vec<u16>,
    /// Verbose logging (every log type, as mosquitto's -v).
    #[arg(short = 'v', long = "verbose")]
    verbose: bool,
    /// Run in the background.
    #[arg(short = 'd', long = "daemon")]
    daemon: bool,
}

fn build_config(args: &BrokerArgs) -> Result<Config> {
    let mut config = match &args.config {
        Some(path) => Config::load(path)?,
        // No configuration: state is kept in ./tern-data, acknowledged messages durably.
        None => Config {
            persistence: true,
            ..Config::default()
        },
    };
    for &port in &args.port {
        let listener = if args.config.is_none() {
            ListenerConfig {
                port,
                bind_address: Some("127.0.0.1".into()),
                allow_anonymous: Some(true),
                ..ListenerConfig::default()
            }
        } else {
            ListenerConfig {
                port,
                ..ListenerConfig::default()
            }
        };
        config.listeners.push(listener);
    }
    config.verbose |= args.verbose;
    Ok(config)
}

fn init_logging(config: &Config) -> Result<()> {
    let level = if config.verbose { "debug" } else { "info" };
    let filter = tracing_subscriber::EnvFilter::try_from_env("TERN_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_target(false);
    match config.log_dest.first() {
        None | Some(LogDest::Stderr) => builder
            .with_ansi(std::io::stderr().is_terminal())
            .with_writer(std::io::stderr)
            .init(),
        Some(LogDest::Stdout) => builder
            .with_ansi(std::io::stdout().is_terminal())
            .with_writer(std::io::stdout)
            .init(),
        Some(LogDest::None) => builder.with_writer(std::io::sink).init(),
        Some(LogDest::File(path)) => {
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .with_context(|| format!("cannot open log file {}", path.display()))?;
            builder.with_ansi(false).with_writer(std::sync::Mutex::new(file)).init()
        }
    }
    Ok(())
}

/// Detaches from the terminal: fork, the parent exits, the child starts a new session
/// with its standard streams on /dev/null. Done before any thread is started.
fn daemonize() -> Result<()> {
    // SAFETY: called while the process is single-threaded (before the runtime starts);
    // only async-signal-safe libc calls follow the fork in the child.
    unsafe {
        match libc::fork() {
            -1 => bail!("fork failed: {}", std::io::Error::last_os_error()),
            0 => {}
            _ => libc::_exit(0),
        }
        libc::setsid();
        let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDWR);
        if null >= 0 {
            libc::dup2(null, 0);
            libc::dup2(null, 1);
            libc::dup2(null, 2);
        }
    }
    Ok(())
}

pub fn run(args: BrokerArgs) -> Result<()> {
    let config = build_config(&args)?;
    if args.daemon {
        daemonize()?;
    }
    init_logging(&config)?;
    if let Some(pid_file) = &config.pid_file {
        std::fs::write(pid_file, format!("{}\n", std::process::id()))
            .with_context(|| format!("cannot write pid file {}", pid_file.display()))?;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the runtime")?;
    runtime.block_on(serve(config, args))
}

async fn serve(config: Config, args: BrokerArgs) -> Result<()> {
    // Handlers first: a signal that arrives once the broker has said it listens must not
    // meet the default action (SIGHUP would kill the process).
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut hangup = signal(SignalKind::hangup())?;
    let local_default = config.is_local_default() || (args.config.is_none() && !args.port.is_empty());
    let broker = Broker::bind(config).await?;
    for addr in broker.local_addrs() {
        if args.daemon {
            // Standard error is /dev/null now: the log destination says where it listens.
            tracing::info!("tern broker {} listening on {addr}", env!("CARGO_PKG_VERSION"));
        } else if local_default {
            eprintln!(
                "tern broker {} listening on {addr} (local only, anonymous clients allowed; to accept other hosts, run `tern broker -c FILE` with a listener, see docs/configuration.md)",
                env!("CARGO_PKG_VERSION")
            );
        } else {
            eprintln!("tern broker {} listening on {addr}", env!("CARGO_PKG_VERSION"));
        }
    }
    let handle = broker.handle();
    let running = tokio::spawn(broker.run());
    loop {
        tokio::select! {
            _ = terminate.recv() => break,
            _ = interrupt.recv() => break,
            _ = hangup.recv() => reload(&handle, &args),
        }
    }
    tracing::info!("stopping: closing connections");
    handle.shutdown();
    running.await.context("broker task failed")??;
    tracing::info!("stopped");
    Ok(())
}

fn reload(handle: &tern_broker::BrokerHandle, args: &BrokerArgs) {
    if args.config.is_none() {
        tracing::info!("SIGHUP: no configuration file to reload");
        return;
    }
    match build_config(args) {
        Ok(config) => handle.reload(config),
        Err(e) => tracing::error!("SIGHUP: configuration not reloaded: {e:#}"),
    }
}
