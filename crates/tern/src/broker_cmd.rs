//! `tern broker`: builds the configuration from flags and file, sets up logging, binds,
//! and runs until SIGTERM or SIGINT; SIGHUP reloads the configuration file.
//!
//! Where state is kept: without `-c` and `--data-dir`, in `./tern-data`, unless another
//! broker holds that store (two `tern broker -p N` started in one folder both run, as two
//! mosquittos do): the second then keeps its state in memory and says so. A store named
//! by `--data-dir` or by the configuration file must be free, or the broker does not
//! start. With `-d` the process detaches only once it listens, so a start that fails
//! (port in use, store locked) is reported on standard error with status 1.

use anyhow::{bail, Context, Result};
use std::io::{Read, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use tern_broker::config::{ListenerConfig, LogDest};
use tern_broker::{Broker, Config};
use tokio::signal::unix::{signal, SignalKind};

/// `tern broker --help`, after the flags: where state is kept.
const STATE_HELP: &str = "\
Where state is kept (persistent sessions, their QoS 1/2 messages, retained messages):
  without -c:   in ./tern-data (in the folder the broker runs in), or in --data-dir DIR.
                If another running broker holds ./tern-data, this one keeps its state
                in memory only (it says so); give each a --data-dir to keep both.
  with -c:      where the file says (persistence, persistence_location; a mosquitto.conf
                keeps nothing unless `persistence true`); --data-dir DIR overrides it.
See docs/persistence.md and docs/tools.md.";

#[derive(clap::Args)]
#[command(after_help = STATE_HELP)]
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
    /// Run in the background, once listening (a start that fails is reported first).
    #[arg(short = 'd', long = "daemon")]
    daemon: bool,
    /// Keep state in DIR (created if missing), with persistence on, also over a
    /// configuration file's persistence settings.
    #[arg(long = "data-dir", value_name = "DIR")]
    data_dir: Option<PathBuf>,
}

impl BrokerArgs {
    /// Whether the store is the implicit ./tern-data, which a second broker started in the
    /// same folder may find in use.
    fn default_store(&self) -> bool {
        self.config.is_none() && self.data_dir.is_none()
    }
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
    if let Some(dir) = &args.data_dir {
        config.persistence = true;
        config.persistence_location = dir.clone();
    }
    config.verbose |= args.verbose;
    Ok(config)
}

/// Whether another process holds the store in `dir` (the storage engine takes an
/// exclusive `flock` on its file while open).
fn store_in_use(dir: &Path) -> bool {
    let Ok(file) = std::fs::File::open(dir.join(tern_broker::store::FILE)) else {
        return false;
    };
    use std::os::fd::AsRawFd;
    // SAFETY: flock on a descriptor this function owns; the lock, if taken, goes with the
    // descriptor when `file` is dropped.
    let locked = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    locked != 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::EWOULDBLOCK)
}

/// Binds the listeners and opens the store. The implicit ./tern-data held by another
/// broker is no reason not to start: this broker then keeps its state in memory.
async fn bind(config: Config, args: &BrokerArgs) -> Result<Broker> {
    let dir = config.persistence_location.clone();
    let fallback = args.default_store() && config.persistence;
    let in_memory = Config {
        persistence: false,
        ..config.clone()
    };
    let warn = || {
        tracing::warn!(
            "{} is in use by another broker: this one keeps its state in memory only (lost when it stops); give it --data-dir DIR to keep it on disk",
            dir.display()
        )
    };
    if fallback && store_in_use(&dir) {
        warn();
        return Broker::bind(in_memory).await;
    }
    match Broker::bind(config).await {
        Ok(broker) => Ok(broker),
        // Another broker took the store between the look and the open.
        Err(_) if fallback && store_in_use(&dir) => {
            warn();
            Broker::bind(in_memory).await
        }
        Err(e) => Err(e),
    }
}

/// The daemon's side of `-d`: the pipe its waiting parent reads.
struct Detach {
    to_parent: OwnedFd,
}

/// Forks. The parent waits for the child to report that it listens (then exits 0) or to
/// exit (then exits with its status; the child has printed why on the standard error
/// they share). The child starts a new session and returns. Done before any thread is
/// started.
fn daemonize() -> Result<Detach> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills `fds` with two new descriptors, owned from here on.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        bail!("cannot create a pipe: {}", std::io::Error::last_os_error());
    }
    // SAFETY: both descriptors were just created and are owned by nothing else.
    let (from_child, to_parent) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    // SAFETY: the process is single-threaded here (the runtime is not started yet), so
    // the child may go on running ordinary code.
    match unsafe { libc::fork() } {
        -1 => bail!("fork failed: {}", std::io::Error::last_os_error()),
        0 => {
            drop(from_child);
            // SAFETY: plain system call; the child is not a process group leader.
            unsafe { libc::setsid() };
            Ok(Detach { to_parent })
        }
        child => {
            drop(to_parent);
            wait_for_daemon(from_child, child)
        }
    }
}

/// The parent of `-d`: exits 0 once the daemon says it listens, or with the daemon's own
/// status if it exits first.
fn wait_for_daemon(from_child: OwnedFd, child: libc::pid_t) -> ! {
    let mut byte = [0u8; 1];
    if matches!(std::fs::File::from(from_child).read(&mut byte), Ok(1)) {
        std::process::exit(0);
    }
    let mut status = 0;
    // SAFETY: waits for our own child; `status` is a valid out-pointer.
    let waited = unsafe { libc::waitpid(child, &mut status, 0) };
    let code = if waited == child && libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        1
    };
    std::process::exit(code.max(1));
}

impl Detach {
    /// Called once the broker listens: standard streams go to /dev/null, then the parent
    /// is told to exit 0.
    fn ready(self) {
        // SAFETY: open and dup2 on descriptors 0-2, which this process owns.
        unsafe {
            let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDWR);
            if null >= 0 {
                libc::dup2(null, 0);
                libc::dup2(null, 1);
                libc::dup2(null, 2);
                if null > 2 {
                    libc::close(null);
                }
            }
        }
        let _ = std::fs::File::from(self.to_parent).write_all(b"1");
    }
}

pub fn run(args: BrokerArgs) -> Result<()> {
    let config = build_config(&args)?;
    if let Some(conn) = &config.historian_postgres {
        // A connection string PostgreSQL would refuse stops the start, named.
        tern_platform::historian_pg::parse_config(conn)?;
    }
    let detach = if args.daemon { Some(daemonize()?) } else { None };
    crate::broker_log::init(&config)?;
    if let Some(pid_file) = &config.pid_file {
        std::fs::write(pid_file, format!("{}\n", std::process::id()))
            .with_context(|| format!("cannot write pid file {}", pid_file.display()))?;
    }
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if config.worker_threads > 0 {
        builder.worker_threads(config.worker_threads);
    }
    let runtime = builder.enable_all().build().context("cannot start the runtime")?;
    runtime.block_on(serve(config, args, detach))
}

async fn serve(config: Config, args: BrokerArgs, detach: Option<Detach>) -> Result<()> {
    // Handlers first: a signal that arrives once the broker has said it listens must not
    // meet the default action (SIGHUP would kill the process).
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut hangup = signal(SignalKind::hangup())?;
    let local_default = config.is_local_default() || (args.config.is_none() && !args.port.is_empty());
    let logs_elsewhere = !matches!(config.log_dest.first(), None | Some(LogDest::Stderr));
    let summaries: Vec<String> = (0..config.effective_listeners().len())
        .map(|i| config.listener_summary(i))
        .collect();
    let user = config.user.clone();
    let data_dir = config.persistence_location.clone();
    let no_listeners = config.is_local_default();
    let platform_domain = (config.listeners.iter().any(|l| l.platform) || config.platform_domain.is_some())
        .then(|| config.platform_domain.clone());
    let historian_topics = !config.historian_topics.is_empty();
    let cluster = (!config.cluster_nats_urls.is_empty()).then(|| tern_cluster::Settings {
        urls: config.cluster_nats_urls.clone(),
        node: config.cluster_node_name.clone().unwrap_or_default(),
        node_timeout: config.cluster_node_timeout,
        auth: config.cluster_nats_auth.clone(),
    });
    if let Some(settings) = &cluster {
        tern_cluster::check(settings).context("the cluster")?;
    }
    let mut broker = bind(config, &args).await?;
    let platform_cluster = cluster.clone().filter(|_| platform_domain.is_some());
    if let Some(settings) = cluster {
        // A node of a cluster (docs/cluster.md): joined before any client connects.
        tern_cluster::start(&broker.handle(), settings)
            .await
            .context("the cluster")?;
    }
    let mut lec = None;
    let mut historian = None;
    let mut rules = None;
    if let Some(domain) = platform_domain {
        // Listeners in platform mode: the IoT platform decides who their clients are.
        let handle = broker.handle();
        let started =
            tern_platform::policy::start(&handle, &data_dir, domain.clone()).context("the IoT platform's registry")?;
        let registry = started.registry.clone();
        historian = Some(started.historian.clone());
        rules = Some(started.rules.clone());
        // `tern iot --url`: the registry on the admin API, behind its keys.
        let admin_routes = tern_platform::registry_admin::router(registry.clone());
        broker = broker.with_admin_http_routes(tern_platform::registry_admin::PREFIX, admin_routes);
        if domain.is_some() {
            // The REST API (/api/v0002) on the HTTP listeners, and the last event cache.
            let cache = std::sync::Arc::new(tern_platform::lec::Lec::new(&data_dir));
            tern_platform::lec_task::spawn(&handle, registry.clone(), cache.clone());
            let routes = tern_platform::rest::router(&handle, &started, cache.clone(), domain);
            broker = broker.with_http_routes(tern_platform::rest::PREFIX, routes);
            lec = Some(cache);
        }
        if let Some(settings) = platform_cluster {
            // The registry's files shared with the other nodes, and their device events
            // fed to this node's last event cache (docs/cluster.md).
            let cache = lec.clone().map(|lec| {
                let registry = registry.clone();
                std::sync::Arc::new(ClusterLec { registry, lec })
                    as std::sync::Arc<dyn tern_cluster::platform::EventCache>
            });
            let check: tern_cluster::platform::CheckFile = std::sync::Arc::new(|org: &str, text: &[u8]| {
                tern_platform::registry::check_org_file(org, text).map_err(|e| e.to_string())
            });
            // Device management's state likewise, merged into this node's as it changes.
            started.dm.share(tern_cluster::platform::merge);
            let check_dm: tern_cluster::platform::CheckFile = std::sync::Arc::new(tern_platform::dm_share::check_file);
            tokio::spawn(tern_cluster::platform::run(
                settings,
                data_dir.clone(),
                check,
                check_dm,
                cache,
            ));
        }
    }
    if historian.is_none() && historian_topics {
        // `historian_topic` lines without the platform: the historian alone.
        historian = Some(tern_platform::historian_task::start(&broker.handle(), &data_dir));
    }
    if let Some(historian) = historian {
        let routes = tern_platform::rest_historian_topics::router(historian);
        broker = broker.with_admin_http_routes(tern_platform::rest_historian_topics::PREFIX, routes);
    }
    // Plain listeners' rules (docs/analytics.md): with the platform's, or on their own
    // (nothing is listened to until a rule exists).
    let rules = rules.unwrap_or_else(|| {
        let rules = std::sync::Arc::new(tern_platform::rules::Rules::new(&data_dir));
        tern_platform::rules_task::spawn(&broker.handle(), rules.clone());
        rules
    });
    use tern_platform::rules_admin::{alerts_router, rules_router, ALERTS_PREFIX, RULES_PREFIX};
    broker = broker
        .with_admin_http_routes(RULES_PREFIX, rules_router(rules.clone()))
        .with_admin_http_routes(ALERTS_PREFIX, alerts_router(rules));
    if no_listeners {
        broker = broker.with_default_http_api().await;
    }
    if let Some(user) = user {
        drop_privileges(&user)?;
    }
    let workers = tokio::runtime::Handle::current().metrics().num_workers();
    tracing::info!(
        "serving clients on {workers} worker thread{}",
        if workers == 1 { "" } else { "s" }
    );
    for (index, addr) in broker.local_endpoints().into_iter().enumerate() {
        let summary = summaries.get(index).map_or("mqtt", String::as_str);
        if args.daemon {
            // Said on the terminal before detaching, and in the log if it goes elsewhere.
            let line = format!(
                "tern broker {} listening on {addr} (in the background, pid {})",
                env!("CARGO_PKG_VERSION"),
                std::process::id()
            );
            eprintln!("{line}");
            if logs_elsewhere {
                tracing::info!("{line}");
            }
        } else if local_default {
            eprintln!(
                "tern broker {} listening on {addr} (local only, anonymous clients allowed; to accept other hosts, run `tern broker -c FILE` with a listener, see docs/configuration.md)",
                env!("CARGO_PKG_VERSION")
            );
        } else {
            eprintln!(
                "tern broker {} listening on {addr} ({summary})",
                env!("CARGO_PKG_VERSION")
            );
        }
    }
    if let Some(addr) = broker.default_http_endpoint() {
        eprintln!(
            "tern broker {} listening on {addr} (HTTP API, local only; make an API key with `tern admin key create --data-dir {}`, see docs/http-api.md)",
            env!("CARGO_PKG_VERSION"),
            data_dir.display()
        );
    }
    if let Some(detach) = detach {
        detach.ready();
    }
    let handle = broker.handle();
    crate::broker_log::start_topic(&handle);
    let running = tokio::spawn(broker.run());
    loop {
        tokio::select! {
            _ = terminate.recv() => break,
            _ = interrupt.recv() => break,
            _ = hangup.recv() => reload(&handle, &args),
            () = handle.reload_requested() => {
                tracing::info!("reload requested through the HTTP API");
                reload(&handle, &args);
            }
        }
    }
    tracing::info!("stopping: closing connections");
    handle.shutdown();
    running.await.context("broker task failed")??;
    if let Some(lec) = lec {
        // What the last event cache took in since its last batch.
        for e in tokio::task::spawn_blocking(move || lec.flush())
            .await
            .unwrap_or_default()
        {
            tracing::error!("last event cache not saved: {e}");
        }
    }
    tracing::info!("stopped");
    Ok(())
}

/// mosquitto's `user`: a broker started as root runs on as `user` and its primary group
/// once everything that needs root (ports below 1024, files only root may open) is open.
/// Started as another user, it stays that user.
fn drop_privileges(user: &str) -> Result<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Ok(());
    }
    let name = std::ffi::CString::new(user).context("user contains a NUL byte")?;
    // SAFETY: getpwnam reads the NUL-terminated name and returns a pointer to static
    // storage (or null), read at once before any other passwd call.
    let ids = unsafe {
        let entry = libc::getpwnam(name.as_ptr());
        (!entry.is_null()).then(|| ((*entry).pw_uid, (*entry).pw_gid))
    };
    let Some((uid, gid)) = ids else {
        bail!("user {user}: no such user");
    };
    // SAFETY: plain system calls on ids from the passwd entry; glibc applies setgid and
    // setuid to every thread of the process.
    let failed =
        unsafe { libc::initgroups(name.as_ptr(), gid) != 0 || libc::setgid(gid) != 0 || libc::setuid(uid) != 0 };
    if failed {
        bail!("user {user}: cannot change to it: {}", std::io::Error::last_os_error());
    }
    tracing::info!("running as user {user} (uid {uid}, gid {gid})");
    Ok(())
}

fn reload(handle: &tern_broker::BrokerHandle, args: &BrokerArgs) {
    crate::broker_log::reopen_file();
    if args.config.is_none() {
        tracing::info!("SIGHUP: no configuration file to reload");
        return;
    }
    match build_config(args) {
        Ok(config) => handle.reload(config),
        Err(e) => tracing::error!("SIGHUP: configuration not reloaded: {e:#}"),
    }
}

/// A cluster node's last event cache, fed the other nodes' device events.
struct ClusterLec {
    registry: std::sync::Arc<tern_platform::registry::Registry>,
    lec: std::sync::Arc<tern_platform::lec::Lec>,
}

impl tern_cluster::platform::EventCache for ClusterLec {
    fn wanted(&self) -> bool {
        tern_platform::lec_task::wanted_by(&self.registry)
    }

    fn take(&self, topic: &str, payload: bytes::Bytes) {
        tern_platform::lec_task::take_event(&self.registry, &self.lec, topic, payload)
    }
}
