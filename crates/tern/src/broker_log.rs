//! The broker's log, to mosquitto's `log_dest` destinations: any of `stdout`, `stderr`
//! and `file PATH` (one formatted line each), `syslog` (RFC 3164 datagrams to /dev/log,
//! facility `daemon` or `local0`-`local7` with `log_facility`) and `topic` (each line
//! published as `$SYS/broker/log/E`, `W` or `I`, as mosquitto does); `none` alone keeps
//! quiet. Several `log_dest` lines all receive every line. Without any, lines go to
//! standard error.
//!
//! The log file is reopened on SIGHUP ([`reopen_file`]); log lines for `topic` wait in a
//! bounded queue until the broker runs ([`start_topic`]) and are dropped when it is full,
//! so logging never blocks or grows without bound.

use anyhow::{Context, Result};
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use tern_broker::config::LogDest;
use tern_broker::Config;
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::{Context as LayerContext, Layer, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;

/// The socket syslog lines are sent to; tests point `TERN_SYSLOG_SOCKET` elsewhere.
const SYSLOG_SOCKET: &str = "/dev/log";
/// How many log lines may wait for the broker to publish them (`log_dest topic`).
const TOPIC_QUEUE: usize = 1024;
/// mosquitto's Message Expiry Interval on `$SYS/broker/log/...` messages, in seconds.
const TOPIC_EXPIRY: u32 = 20;

/// Sets up logging for `config`; called once, before the broker starts.
pub fn init(config: &Config) -> Result<()> {
    use tracing_subscriber::fmt::writer::BoxMakeWriter;
    let level = if config.verbose { "debug" } else { "info" };
    let mut filter = tracing_subscriber::EnvFilter::try_from_env("TERN_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    if config.verbose {
        // -v and log_type debug/all show every packet, whatever TERN_LOG says.
        filter = filter.add_directive(tracing_subscriber::filter::LevelFilter::DEBUG.into());
    }
    if !std::env::var("TERN_LOG").is_ok_and(|v| v.contains("rustls")) {
        // rustls warns for every client that sends an IP address as SNI (mosquitto_pub
        // -h 127.0.0.1 does), which is harmless: the name is ignored.
        if let Ok(quiet) = "rustls::msgs::handshake=error".parse() {
            filter = filter.add_directive(quiet);
        }
    }
    let dests: Vec<LogDest> = match config.log_dest.as_slice() {
        [] => vec![LogDest::Stderr],
        dests => dests.to_vec(),
    };
    let mut text = Vec::new();
    let mut terminal = true;
    let (mut syslog, mut topic) = (None, None);
    for dest in &dests {
        match dest {
            LogDest::Stderr => {
                terminal &= std::io::stderr().is_terminal();
                text.push(Text::Stderr);
            }
            LogDest::Stdout => {
                terminal &= std::io::stdout().is_terminal();
                text.push(Text::Stdout);
            }
            LogDest::File(path) => {
                let file = Arc::new(LogFile::open(path)?);
                let _ = LOG_FILE.set(file.clone());
                terminal = false;
                text.push(Text::File(file));
            }
            LogDest::Syslog => syslog = Some(SyslogLayer::new(config.log_facility)),
            LogDest::Topic => topic = Some(TopicLayer::new(config)),
            LogDest::None => {}
        }
    }
    let fmt = (!text.is_empty()).then(|| {
        let ansi = terminal && text.len() == 1;
        let builder = tracing_subscriber::fmt::layer()
            .with_target(false)
            .with_ansi(ansi)
            .with_writer(BoxMakeWriter::new(Fanout(Arc::new(text))));
        // mosquitto's log_timestamp and log_timestamp_format.
        match (config.log_timestamp, &config.log_timestamp_format) {
            (false, _) => Ok::<_, anyhow::Error>(builder.without_time().boxed()),
            (true, Some(format)) => Ok(builder.with_timer(Strftime::new(format)?).boxed()),
            (true, None) => Ok(builder.boxed()),
        }
    });
    tracing_subscriber::registry()
        .with(filter)
        .with(fmt.transpose()?)
        .with(syslog)
        .with(topic)
        .init();
    Ok(())
}

/// A destination of formatted lines.
enum Text {
    Stdout,
    Stderr,
    File(Arc<LogFile>),
}

/// Writes each formatted line to every text destination.
struct Fanout(Arc<Vec<Text>>);

impl<'a> MakeWriter<'a> for Fanout {
    type Writer = FanoutWriter;

    fn make_writer(&'a self) -> FanoutWriter {
        FanoutWriter(self.0.clone())
    }
}

struct FanoutWriter(Arc<Vec<Text>>);

impl Write for FanoutWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        for dest in self.0.iter() {
            // A destination that fails (a full disk, a closed pipe) does not keep the
            // line from the others.
            let _ = match dest {
                Text::Stdout => std::io::stdout().write_all(buf),
                Text::Stderr => std::io::stderr().write_all(buf),
                Text::File(file) => (&**file).write_all(buf),
            };
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The log file of `log_dest file`, reopened on SIGHUP: logrotate (Debian's
/// /etc/logrotate.d/mosquitto among them) moves it away and signals the broker.
static LOG_FILE: OnceLock<Arc<LogFile>> = OnceLock::new();

/// Opens the log file under its name again (SIGHUP), and logs that it did.
pub fn reopen_file() {
    if let Some(log) = LOG_FILE.get() {
        match log.reopen() {
            Ok(()) => tracing::info!("SIGHUP: log file {} reopened", log.path.display()),
            Err(e) => tracing::error!("SIGHUP: cannot reopen log file {}: {e}", log.path.display()),
        }
    }
}

/// A log file that can be opened again under its name.
struct LogFile {
    path: PathBuf,
    file: Mutex<std::fs::File>,
}

impl LogFile {
    fn open(path: &Path) -> Result<LogFile> {
        let file = Self::open_file(path).with_context(|| format!("cannot open log file {}", path.display()))?;
        Ok(LogFile {
            path: path.to_path_buf(),
            file: Mutex::new(file),
        })
    }

    fn open_file(path: &Path) -> std::io::Result<std::fs::File> {
        std::fs::OpenOptions::new().create(true).append(true).open(path)
    }

    /// Opens the file under its name again; lines go on to the old one if that fails.
    fn reopen(&self) -> std::io::Result<()> {
        let file = Self::open_file(&self.path)?;
        if let Ok(mut current) = self.file.lock() {
            *current = file;
        }
        Ok(())
    }
}

impl Write for &LogFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self.file.lock() {
            Ok(mut file) => file.write(buf),
            Err(_) => Ok(buf.len()),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self.file.lock() {
            Ok(mut file) => file.flush(),
            Err(_) => Ok(()),
        }
    }
}

/// Local time in a strftime format; empty if the format does not fit 256 bytes.
fn local_time(format: &std::ffi::CStr) -> String {
    // SAFETY: time with a null pointer only returns the time; localtime_r fills the
    // zeroed `tm` this function owns (or fails, returning null); strftime writes at most
    // `buf.len()` bytes into `buf` and returns how many (0 if it did not fit), reading the
    // NUL-terminated format and `tm`.
    unsafe {
        let now = libc::time(std::ptr::null_mut());
        let mut tm: libc::tm = std::mem::zeroed();
        if libc::localtime_r(&now, &mut tm).is_null() {
            return String::new();
        }
        let mut buf = [0u8; 256];
        let n = libc::strftime(buf.as_mut_ptr().cast(), buf.len(), format.as_ptr(), &tm);
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }
}

/// Log timestamps in a strftime format (log_timestamp_format), in local time.
struct Strftime(std::ffi::CString);

impl Strftime {
    fn new(format: &str) -> Result<Strftime> {
        let format = std::ffi::CString::new(format).context("log_timestamp_format contains a NUL byte")?;
        Ok(Strftime(format))
    }
}

impl tracing_subscriber::fmt::time::FormatTime for Strftime {
    fn format_time(&self, w: &mut tracing_subscriber::fmt::format::Writer<'_>) -> std::fmt::Result {
        w.write_str(&local_time(&self.0))
    }
}

/// An event as one line of text: its message, then its other fields as `name=value`.
#[derive(Default)]
struct Line(String);

impl Visit for Line {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.record_debug(field, &format_args!("{value}"));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        use std::fmt::Write as _;
        if field.name() == "message" {
            let rest = std::mem::take(&mut self.0);
            let _ = write!(self.0, "{value:?}");
            self.0.push_str(&rest);
        } else {
            let _ = write!(self.0, " {}={value:?}", field.name());
        }
    }
}

fn line_of(event: &Event<'_>) -> String {
    let mut line = Line::default();
    event.record(&mut line);
    line.0
}

/// `log_dest syslog`: each event as an RFC 3164 datagram (`<PRI>Mmm dd hh:mm:ss
/// tern[PID]: message`), as syslog(3) sends it, to /dev/log.
struct SyslogLayer {
    /// The facility code shifted into place: daemon (3), or local0-7 (16-23).
    facility: u8,
    socket: Option<std::os::unix::net::UnixDatagram>,
    path: PathBuf,
    pid: u32,
}

impl SyslogLayer {
    fn new(log_facility: Option<u8>) -> SyslogLayer {
        let path = std::env::var_os("TERN_SYSLOG_SOCKET").map_or_else(|| PathBuf::from(SYSLOG_SOCKET), PathBuf::from);
        SyslogLayer {
            facility: log_facility.map_or(3, |n| 16 + n.min(7)) << 3,
            socket: std::os::unix::net::UnixDatagram::unbound().ok(),
            path,
            pid: std::process::id(),
        }
    }
}

/// The syslog severity of a level: error 3, warning 4, info 6, debug 7.
fn severity(level: &Level) -> u8 {
    match *level {
        Level::ERROR => 3,
        Level::WARN => 4,
        Level::INFO => 6,
        _ => 7,
    }
}

impl<S: Subscriber> Layer<S> for SyslogLayer {
    fn on_event(&self, event: &Event<'_>, _: LayerContext<'_, S>) {
        let Some(socket) = &self.socket else { return };
        let priority = self.facility | severity(event.metadata().level());
        let stamp = local_time(c"%b %e %H:%M:%S");
        let datagram = format!("<{priority}>{stamp} tern[{}]: {}", self.pid, line_of(event));
        // No syslog daemon listening: the line is lost, as with syslog(3).
        let _ = socket.send_to(datagram.as_bytes(), &self.path);
    }
}

/// One log line on its way to `$SYS/broker/log/<level>`.
type TopicLine = (&'static str, String);

/// The queue from the log to the broker, taken by [`start_topic`].
static TOPIC_RECEIVER: Mutex<Option<tokio::sync::mpsc::Receiver<TopicLine>>> = Mutex::new(None);

thread_local! {
    /// Set while this thread publishes a log line: what that logs is not published again.
    static PUBLISHING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// `log_dest topic`: every event but debug ones, as mosquitto's topics name them.
struct TopicLayer {
    queue: tokio::sync::mpsc::Sender<TopicLine>,
    /// mosquitto prefixes its lines with the time (log_timestamp): seconds since 1970, or
    /// log_timestamp_format.
    timestamp: Option<Option<std::ffi::CString>>,
}

impl TopicLayer {
    fn new(config: &Config) -> TopicLayer {
        let (queue, receiver) = tokio::sync::mpsc::channel(TOPIC_QUEUE);
        if let Ok(mut slot) = TOPIC_RECEIVER.lock() {
            *slot = Some(receiver);
        }
        let format = config
            .log_timestamp_format
            .as_deref()
            .and_then(|f| std::ffi::CString::new(f).ok());
        TopicLayer {
            queue,
            timestamp: config.log_timestamp.then_some(format),
        }
    }
}

impl<S: Subscriber> Layer<S> for TopicLayer {
    fn on_event(&self, event: &Event<'_>, _: LayerContext<'_, S>) {
        let suffix = match *event.metadata().level() {
            Level::ERROR => "E",
            Level::WARN => "W",
            Level::INFO => "I",
            _ => return,
        };
        if PUBLISHING.with(|p| p.get()) {
            return;
        }
        let line = match &self.timestamp {
            None => line_of(event),
            Some(None) => {
                let seconds = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs());
                format!("{seconds}: {}", line_of(event))
            }
            Some(Some(format)) => format!("{}: {}", local_time(format), line_of(event)),
        };
        // A full queue drops the line: the log never waits for the broker.
        let _ = self.queue.try_send((suffix, line));
    }
}

/// `log_dest topic`: publishes the queued log lines through `broker` as mosquitto does
/// (QoS 2, not retained, expiring after 20 s), until the broker stops.
pub fn start_topic(broker: &tern_broker::BrokerHandle) {
    let Some(mut receiver) = TOPIC_RECEIVER.lock().ok().and_then(|mut r| r.take()) else {
        return;
    };
    let state = broker.state().clone();
    tokio::spawn(async move {
        while let Some((suffix, line)) = receiver.recv().await {
            let mut properties = tern_proto::Properties::default();
            properties.push(tern_proto::Property::MessageExpiryInterval(TOPIC_EXPIRY));
            let publish = tern_proto::Publish {
                dup: false,
                qos: tern_proto::QoS::ExactlyOnce,
                retain: false,
                topic: tern_proto::ByteStr::from(format!("$SYS/broker/log/{suffix}")),
                packet_id: 0,
                properties,
                payload: bytes::Bytes::from(line),
            };
            PUBLISHING.with(|p| p.set(true));
            state.router.publish(&publish, None, &state.metrics);
            PUBLISHING.with(|p| p.set(false));
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn syslog_priorities_are_facility_and_severity() {
        assert_eq!(SyslogLayer::new(None).facility | severity(&Level::INFO), 30);
        assert_eq!(SyslogLayer::new(Some(3)).facility | severity(&Level::WARN), 156);
        assert_eq!(SyslogLayer::new(Some(0)).facility | severity(&Level::ERROR), 131);
    }
}
