//! The broker's metrics in Prometheus text exposition format (version 0.0.4), for
//! `/metrics`, named as OpenMetrics asks: `tern_` prefix, `_total` on counters, base units
//! (seconds, bytes). Counters are read from [`crate::metrics::Metrics`] (relaxed atomics,
//! never locked by the publish path); gauges that their owners already know (sessions,
//! subscriptions, retained messages) and the queue depth histogram are sampled here, once
//! per scrape. Every metric is listed in docs/metrics.md.

use crate::broker::BrokerState;
use crate::config::ListenerProtocol;
use crate::metrics::{HistogramSnapshot, ListenerMetrics, Metrics, Reason};
use std::fmt::Write;
use std::sync::Arc;

/// Upper bounds of the session queue depth histogram (messages).
const QUEUE_DEPTH_BOUNDS: &[f64] = &[0.0, 1.0, 10.0, 100.0, 1_000.0, 10_000.0, 100_000.0];

/// Renders every metric of `state` in Prometheus text exposition format.
pub fn render(state: &BrokerState) -> String {
    let mut out = Exposition::default();
    let m = &state.metrics;
    out.family("tern_build_info", "gauge", "The broker's version; always 1.");
    out.sample("tern_build_info", &[("version", env!("CARGO_PKG_VERSION"))], 1);
    out.gauge(
        "tern_uptime_seconds",
        "Seconds since the broker started.",
        state.started.elapsed().as_secs_f64(),
    );
    connections(&mut out, state);
    traffic(&mut out, m);
    out.family(
        "tern_messages_dropped_total",
        "counter",
        "Messages not delivered (or not forwarded at all), by reason.",
    );
    for (reason, count) in m.dropped.each() {
        out.sample("tern_messages_dropped_total", &[("reason", reason.label())], count);
    }
    out.gauge(
        "tern_retained_messages",
        "Retained messages stored.",
        state.router.retained_count(),
    );
    out.gauge(
        "tern_subscriptions",
        "Subscriptions, over every session.",
        state.router.subscription_count(),
    );
    sessions(&mut out, state);
    store(&mut out, state);
    out.counter(
        "tern_events_lost_total",
        "Events lost by event stream consumers that fell behind.",
        m.events.lost(),
    );
    m.extra.render(&mut out.text);
    out.text
}

/// A callback that appends whole metric families (`# HELP`, `# TYPE`, samples) in the
/// text format.
pub type ExtraRenderer = Box<dyn Fn(&mut String) + Send + Sync>;

/// Metrics that an embedder of the broker adds to `/metrics` (the IoT platform's per-rule
/// counters), rendered after the broker's own, once per scrape. Each renderer owns its
/// names (prefixed `tern_`, listed in docs/metrics.md) and never repeats the broker's.
#[derive(Default)]
pub struct ExtraMetrics(parking_lot::RwLock<Vec<ExtraRenderer>>);

impl std::fmt::Debug for ExtraMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ExtraMetrics({} renderers)", self.0.read().len())
    }
}

impl ExtraMetrics {
    /// Adds `renderer` to every later scrape.
    pub fn add(&self, renderer: ExtraRenderer) {
        self.0.write().push(renderer);
    }

    fn render(&self, out: &mut String) {
        for renderer in self.0.read().iter() {
            renderer(out);
        }
    }
}

/// The MQTT listeners' counters (HTTP listeners have no MQTT clients).
fn mqtt_listeners(state: &BrokerState) -> Vec<&ListenerMetrics> {
    let config = state.config();
    let is_http = |i: usize| {
        config
            .listeners
            .get(i)
            .is_some_and(|l| l.protocol == ListenerProtocol::Http)
    };
    let listeners = state.metrics.listeners().iter().enumerate();
    listeners.filter(|(i, _)| !is_http(*i)).map(|(_, l)| l).collect()
}

fn connections(out: &mut Exposition, state: &BrokerState) {
    let m = &state.metrics;
    let listeners = mqtt_listeners(state);
    let help = "Clients connected now (past CONNACK), by listener.";
    out.family("tern_connections", "gauge", help);
    for l in &listeners {
        let connected = Metrics::get(&l.connected);
        out.sample("tern_connections", &[("listener", &l.label)], connected);
    }
    let help = "Sockets accepted, by listener.";
    out.family("tern_connections_accepted_total", "counter", help);
    for l in &listeners {
        let accepted = Metrics::get(&l.accepted);
        out.sample("tern_connections_accepted_total", &[("listener", &l.label)], accepted);
    }
    out.gauge(
        "tern_connections_maximum",
        "Most clients connected at once since start.",
        Metrics::get(&m.clients_maximum),
    );
    out.family(
        "tern_connections_refused_total",
        "counter",
        "Connections refused before becoming clients, by reason.",
    );
    for (reason, count) in m.refused.each() {
        out.sample("tern_connections_refused_total", &[("reason", reason.label())], count);
    }
    out.family(
        "tern_auth_failures_total",
        "counter",
        "Failed authentications, by reason.",
    );
    for (reason, count) in m.auth_failures.each() {
        out.sample("tern_auth_failures_total", &[("reason", reason.label())], count);
    }
}

fn traffic(out: &mut Exposition, m: &Metrics) {
    let by_qos = [
        (
            "tern_messages_received_total",
            "PUBLISH packets received from clients, by QoS.",
            &m.received_by_qos,
        ),
        (
            "tern_messages_sent_total",
            "PUBLISH packets sent to clients, by QoS.",
            &m.sent_by_qos,
        ),
        (
            "tern_publish_bytes_received_total",
            "Bytes of PUBLISH packets received, by QoS.",
            &m.received_bytes_by_qos,
        ),
        (
            "tern_publish_bytes_sent_total",
            "Bytes of PUBLISH packets sent, by QoS.",
            &m.sent_bytes_by_qos,
        ),
    ];
    for (name, help, counters) in by_qos {
        out.family(name, "counter", help);
        for (qos, counter) in ["0", "1", "2"].iter().zip(counters.iter()) {
            out.sample(name, &[("qos", qos)], Metrics::get(counter));
        }
    }
    out.counter(
        "tern_bytes_received_total",
        "Bytes read from clients, every packet.",
        Metrics::get(&m.bytes_received),
    );
    out.counter(
        "tern_bytes_sent_total",
        "Bytes written to clients, every packet.",
        Metrics::get(&m.bytes_sent),
    );
}

fn sessions(out: &mut Exposition, state: &BrokerState) {
    // The registry is locked only to copy the list; each session is locked in turn after.
    let all: Vec<Arc<crate::session::Session>> = state.sessions.with(|map| map.values().cloned().collect());
    let mut online = 0u64;
    let mut depths = Vec::with_capacity(all.len());
    for session in &all {
        let st = session.state.lock();
        online += u64::from(st.connection.is_some());
        depths.push((st.outbox.queued() + st.outbox.inflight_len()) as f64);
    }
    out.family(
        "tern_sessions",
        "gauge",
        "Sessions, by state (online: a client is connected).",
    );
    out.sample("tern_sessions", &[("state", "online")], online);
    out.sample("tern_sessions", &[("state", "offline")], all.len() as u64 - online);
    let depth = HistogramSnapshot::of(QUEUE_DEPTH_BOUNDS, depths);
    out.histogram(
        "tern_session_queue_depth_messages",
        "Messages queued or in flight per session, sampled at each scrape.",
        &depth,
    );
}

fn store(out: &mut Exposition, state: &BrokerState) {
    let Some(store) = &state.store else {
        return;
    };
    out.histogram(
        "tern_store_commit_duration_seconds",
        "Time taken by store commits (one transaction each).",
        &store.commit_seconds().snapshot(),
    );
    out.counter(
        "tern_store_commit_failures_total",
        "Store commits that failed.",
        store.write_failures(),
    );
    out.gauge(
        "tern_store_writable",
        "1 while the store commits, 0 while it fails.",
        u8::from(store.is_writable()),
    );
    out.counter(
        "tern_publishes_refused_total",
        "QoS 1/2 publishes refused while the store could not write.",
        Metrics::get(&state.metrics.publishes_refused),
    );
}

/// Text being written in the exposition format.
#[derive(Default)]
struct Exposition {
    text: String,
}

impl Exposition {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.text, "# HELP {name} {}", escape_help(help));
        let _ = writeln!(self.text, "# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl std::fmt::Display) {
        self.text.push_str(name);
        if !labels.is_empty() {
            self.text.push('{');
            for (i, (label, value)) in labels.iter().enumerate() {
                if i > 0 {
                    self.text.push(',');
                }
                let _ = write!(self.text, "{label}=\"{}\"", escape_label(value));
            }
            self.text.push('}');
        }
        let _ = writeln!(self.text, " {value}");
    }

    fn counter(&mut self, name: &str, help: &str, value: impl std::fmt::Display) {
        self.family(name, "counter", help);
        self.sample(name, &[], value);
    }

    fn gauge(&mut self, name: &str, help: &str, value: impl std::fmt::Display) {
        self.family(name, "gauge", help);
        self.sample(name, &[], value);
    }

    fn histogram(&mut self, name: &str, help: &str, h: &HistogramSnapshot) {
        self.family(name, "histogram", help);
        let bucket = format!("{name}_bucket");
        for (bound, count) in h.bounds.iter().zip(&h.cumulative) {
            self.sample(&bucket, &[("le", &float(*bound))], count);
        }
        self.sample(&bucket, &[("le", "+Inf")], h.count);
        self.sample(&format!("{name}_sum"), &[], h.sum);
        self.sample(&format!("{name}_count"), &[], h.count);
    }
}

/// A bound as OpenMetrics writes it: always with a decimal point (`1.0`, `0.005`).
fn float(value: f64) -> String {
    if value.fract() == 0.0 && value.abs() < 1e15 {
        format!("{value:.1}")
    } else {
        value.to_string()
    }
}

/// A label value with `\`, `"` and line feeds escaped.
fn escape_label(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// HELP text with `\` and line feeds escaped.
fn escape_help(text: &str) -> String {
    text.replace('\\', "\\\\").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped() {
        let mut out = Exposition::default();
        out.sample("m", &[("listener", "/tmp/a \"b\"\\\nc")], 1);
        assert_eq!(out.text, "m{listener=\"/tmp/a \\\"b\\\"\\\\\\nc\"} 1\n");
    }

    #[test]
    fn a_histogram_has_cumulative_buckets_inf_sum_and_count() {
        let mut out = Exposition::default();
        out.histogram("h", "help", &HistogramSnapshot::of(&[1.0, 10.0], [0.0, 5.0, 50.0]));
        let expected = "# HELP h help\n# TYPE h histogram\nh_bucket{le=\"1.0\"} 1\nh_bucket{le=\"10.0\"} 2\n\
                        h_bucket{le=\"+Inf\"} 3\nh_sum 55\nh_count 3\n";
        assert_eq!(out.text, expected);
    }
}
