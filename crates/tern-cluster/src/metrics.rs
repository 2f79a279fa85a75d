//! The cluster's figures on the broker's `/metrics` (through its extra-metrics seam):
//! whether this node can store QoS 1/2 messages now, the distinct filters it subscribes
//! to in NATS, and what it could not send or had to drop.

use crate::link::Shared;
use std::fmt::Write;
use std::sync::atomic::Ordering::Relaxed;

/// Appends the cluster's families in Prometheus text format.
pub fn render(shared: &Shared, filters: usize, out: &mut String) {
    let families: [(&str, &str, &str, u64); 4] = [
        (
            "tern_cluster_available",
            "gauge",
            "1 while JetStream stores this node's QoS 1/2 messages, 0 while they are refused.",
            u64::from(shared.available.load(Relaxed)),
        ),
        (
            "tern_cluster_nats_filters",
            "gauge",
            "Distinct topic filters of this node's clients, each one NATS subscription (two for /#).",
            filters as u64,
        ),
        (
            "tern_cluster_not_forwarded_total",
            "counter",
            "Messages accepted on this node and not sent to the other nodes (queue full, topic too long, NATS error).",
            shared.not_forwarded.load(Relaxed),
        ),
        (
            "tern_cluster_inbound_dropped_total",
            "counter",
            "Messages from other nodes dropped because they did not decode.",
            shared.dropped_inbound.load(Relaxed),
        ),
    ];
    for (name, kind, help, value) in families {
        let _ = write!(
            out,
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name}{{node=\"{}\"}} {value}\n",
            shared.node
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, AtomicU64};
    use std::sync::Arc;

    #[test]
    fn the_families_carry_the_node() {
        let shared = Shared {
            node: Arc::from("a"),
            origin: Arc::from("a:1"),
            available: AtomicBool::new(true),
            not_forwarded: AtomicU64::new(3),
            dropped_inbound: AtomicU64::new(0),
            sessions: Default::default(),
            gap: Default::default(),
        };
        let mut out = String::new();
        render(&shared, 2, &mut out);
        assert!(out.contains("tern_cluster_available{node=\"a\"} 1\n"), "{out}");
        assert!(out.contains("tern_cluster_nats_filters{node=\"a\"} 2\n"), "{out}");
        assert!(
            out.contains("tern_cluster_not_forwarded_total{node=\"a\"} 3\n"),
            "{out}"
        );
        assert!(
            out.contains("# TYPE tern_cluster_inbound_dropped_total counter\n"),
            "{out}"
        );
    }
}
