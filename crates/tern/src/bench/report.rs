//! Results: the summary table, `--json`, and the broker's CPU time and memory read from
//! /proc when its process id is given.

use hdrhistogram::Histogram;
use serde::Serialize;

/// CPU seconds (user + system) and resident memory of a process, from /proc.
#[derive(Debug, Clone, Copy)]
pub struct ProcessSample {
    pub cpu_seconds: f64,
    /// The part of `cpu_seconds` spent in the kernel (system calls, and on loopback the
    /// TCP work of both ends of what the process sends).
    pub system_seconds: f64,
    pub rss_bytes: u64,
}

pub fn sample(pid: u32) -> Option<ProcessSample> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesised command name; utime and stime are the 12th and 13th.
    let after = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = after.split_whitespace().collect();
    let system = fields.get(12)?.parse::<f64>().ok()?;
    let ticks = fields.get(11)?.parse::<f64>().ok()? + system;
    // SAFETY: sysconf has no preconditions.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss_kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())?;
    Some(ProcessSample {
        cpu_seconds: ticks / per_second,
        system_seconds: system / per_second,
        rss_bytes: rss_kib * 1024,
    })
}

/// The numbers of one run, as printed and as `--json`.
#[derive(Debug, Serialize, Default)]
pub struct Summary {
    pub scenario: String,
    pub qos: u8,
    pub payload_bytes: usize,
    pub publishers: usize,
    pub subscribers: usize,
    pub offered_rate: u64,
    pub seconds: f64,
    pub sent: u64,
    pub expected: u64,
    pub delivered: u64,
    pub lost: u64,
    pub duplicates: u64,
    pub delivered_per_second: f64,
    pub latency_us: Latency,
    /// Broker CPU microseconds per delivered message (with --broker-pid).
    pub broker_cpu_us_per_message: Option<f64>,
    /// Of which in the kernel.
    pub broker_system_us_per_message: Option<f64>,
    pub broker_rss_bytes: Option<u64>,
}

#[derive(Debug, Serialize, Default)]
pub struct Latency {
    pub p50: u64,
    pub p99: u64,
    pub p999: u64,
    pub max: u64,
}

impl Latency {
    pub fn from(h: &Histogram<u64>) -> Latency {
        if h.is_empty() {
            return Latency::default();
        }
        Latency {
            p50: h.value_at_quantile(0.5),
            p99: h.value_at_quantile(0.99),
            p999: h.value_at_quantile(0.999),
            max: h.max(),
        }
    }
}

impl Summary {
    pub fn print(&self, json: bool) {
        if json {
            println!("{}", serde_json::to_string(self).unwrap_or_default());
            return;
        }
        let rate = if self.offered_rate == 0 {
            "max".to_string()
        } else {
            format!("{}/s", self.offered_rate)
        };
        println!(
            "scenario        {} (QoS {}, {} B, {} pub, {} sub, rate {rate})",
            self.scenario, self.qos, self.payload_bytes, self.publishers, self.subscribers
        );
        println!("duration        {:.2} s", self.seconds);
        println!("sent            {}", self.sent);
        println!(
            "delivered       {} of {} expected ({} lost, {} duplicates)",
            self.delivered, self.expected, self.lost, self.duplicates
        );
        println!("throughput      {:.0} msg/s delivered", self.delivered_per_second);
        let l = &self.latency_us;
        println!(
            "latency (us)    p50 {}  p99 {}  p99.9 {}  max {}",
            l.p50, l.p99, l.p999, l.max
        );
        if let Some(cpu) = self.broker_cpu_us_per_message {
            let system = self.broker_system_us_per_message.unwrap_or(0.0);
            println!("broker CPU      {cpu:.3} us per delivered message ({system:.3} in the kernel)");
        }
        if let Some(rss) = self.broker_rss_bytes {
            println!("broker RSS      {:.1} MiB", rss as f64 / 1048576.0);
        }
    }
}
