#!/usr/bin/env python3
"""Tables and a plot from bench/compare.sh's results (one JSON line per run).

Usage: compare_report.py RESULTS.jsonl [PLOT.png]

Prints Markdown: for each figure (broker CPU per delivered message, delivered
messages a second, latency at fixed rates, lost and duplicated messages, memory per
idle connection) a table of medians with a row per scenario and a column per broker,
each peer's cell followed by its ratio to Tern's (peer / Tern: above 1, the peer needs
more CPU or has more latency; for msg/s, above 1 the peer delivered more). A broker
that did not run a scenario shows why, in a note under the table. With PLOT, draws CPU
per message and p99 latency by scenario and broker (matplotlib) into that PNG.
"""
import json
import statistics
import sys

ORDER = ["tern", "tern1", "mosquitto", "rumqttd", "nats", "rabbitmq", "aedes"]
LABEL = {"tern": "Tern", "tern1": "Tern, 1 thread", "mosquitto": "mosquitto", "rumqttd": "rumqttd", "nats": "NATS",
         "rabbitmq": "RabbitMQ", "aedes": "Aedes"}


def load(path):
    rows = [json.loads(line) for line in open(path) if line.strip()]
    runs = [r for r in rows if "result" in r and "syscalls" not in r]
    skipped = [r for r in rows if "skipped" in r]
    names = list(dict.fromkeys(r["name"] for r in rows if "syscalls" not in r))
    seen = set(r["broker"] for r in rows)
    brokers = [b for b in ORDER if b in seen]
    return runs, skipped, names, brokers, [r for r in rows if "syscalls" in r]


def median(runs, name, broker, key):
    values = []
    for r in runs:
        if r["name"] == name and r["broker"] == broker:
            try:
                v = key(r["result"])
            except (KeyError, TypeError):
                v = None
            if v is not None:
                values.append(v)
    return statistics.median(values) if values else None


def fmt(v, digits=0):
    return "n/a" if v is None else f"{v:,.{digits}f}"


def why(skipped, name, broker):
    for r in skipped:
        if r["name"] == name and r["broker"] == broker:
            return r["skipped"]
    return None


def table(title, runs, skipped, names, brokers, key, digits=0, ratio=True, only=None):
    notes = {}
    print(f"**{title}**\n")
    print("| scenario | " + " | ".join(LABEL[b] for b in brokers) + " |")
    print("|---|" + "---|" * len(brokers))
    for name in names:
        if only and not only(name):
            continue
        tern = median(runs, name, "tern", key)
        cells = []
        for b in brokers:
            v = median(runs, name, b, key)
            if v is None:
                reason = why(skipped, name, b)
                if reason:
                    mark = notes.setdefault(reason, f"[{len(notes) + 1}]")
                    cells.append(f"— {mark}")
                else:
                    cells.append("n/a")
            elif b != "tern" and ratio and tern:
                cells.append(f"{fmt(v, digits)} ({v / tern:.2f})")
            else:
                cells.append(fmt(v, digits))
        print(f"| {name} | " + " | ".join(cells) + " |")
    for reason, mark in notes.items():
        print(f"\n{mark} {reason}")
    print()


def lost_table(runs, skipped, names, brokers):
    print("**Lost / duplicated messages (medians)**\n")
    print("| scenario | " + " | ".join(LABEL[b] for b in brokers) + " |")
    print("|---|" + "---|" * len(brokers))
    for name in names:
        if name.startswith("idle"):
            continue
        cells = []
        for b in brokers:
            lost = median(runs, name, b, lambda r: r["lost"])
            dup = median(runs, name, b, lambda r: r["duplicates"])
            cells.append("—" if lost is None else f"{fmt(lost)} / {fmt(dup)}")
        print(f"| {name} | " + " | ".join(cells) + " |")
    print()


def targets_table(runs, names, brokers):
    """Issue 20's targets: Tern's CPU per message at most 1/4 of the best peer's at max
    rate, at most 1/2 at fixed rates and in the unbatched scenarios."""
    cpu = lambda r: r.get("broker_cpu_us_per_message")
    peers = [b for b in brokers if not b.startswith("tern")]
    terns = [b for b in brokers if b.startswith("tern")]
    print("**Targets: Tern's CPU per message against the best peer's**\n")
    print("| scenario | best peer (µs) | target | " + " | ".join(f"{LABEL[t]} / best" for t in terns) + " |")
    print("|---|---|---|" + "---|" * len(terns))
    for name in names:
        if name.startswith("idle"):
            continue
        measured = [(median(runs, name, b, cpu), b) for b in peers]
        measured = [(v, b) for v, b in measured if v]
        if not measured:
            continue
        best, who = min(measured)
        target = 0.25 if "max rate" in name and "unbatched" not in name else 0.5
        cells = []
        for t in terns:
            v = median(runs, name, t, cpu)
            cells.append("n/a" if v is None else f"{v / best:.2f} ({'met' if v / best <= target else 'missed'})")
        print(f"| {name} | {LABEL[who]} {best:.3f} | {target:g} | " + " | ".join(cells) + " |")
    print()


def plot(path, runs, names, brokers):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print(f"(matplotlib is not installed: no plot written to {path})", file=sys.stderr)
        return
    scenarios = [n for n in names if not n.startswith("idle")]
    fixed = [n for n in scenarios if " at " in n]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(12, 9))
    width = 0.8 / max(len(brokers), 1)
    for i, b in enumerate(brokers):
        cpu = [median(runs, n, b, lambda r: r.get("broker_cpu_us_per_message")) or 0 for n in scenarios]
        top.bar([x + i * width for x in range(len(scenarios))], cpu, width, label=LABEL[b])
        p99 = [median(runs, n, b, lambda r: r["latency_us"]["p99"]) or 0 for n in fixed]
        bottom.bar([x + i * width for x in range(len(fixed))], p99, width, label=LABEL[b])
    top.set_yscale("log")
    top.set_ylabel("broker CPU µs per delivered message (log)")
    top.set_xticks([x + width * (len(brokers) - 1) / 2 for x in range(len(scenarios))])
    top.set_xticklabels(scenarios, rotation=20, ha="right", fontsize=7)
    top.legend(fontsize=8)
    bottom.set_yscale("log")
    bottom.set_ylabel("p99 latency µs at a fixed rate (log)")
    bottom.set_xticks([x + width * (len(brokers) - 1) / 2 for x in range(len(fixed))])
    bottom.set_xticklabels(fixed, rotation=20, ha="right", fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    print(f"(plot written to {path})", file=sys.stderr)


def main():
    runs, skipped, names, brokers, syscalls = load(sys.argv[1])
    cpu = lambda r: r.get("broker_cpu_us_per_message")
    table("Broker CPU µs per delivered message (peer / Tern in brackets: above 1, the peer needs more)",
          runs, skipped, names, brokers, cpu, digits=3, only=lambda n: not n.startswith("idle"))
    table("Of which in the kernel, µs per delivered message (system time: system calls, and on loopback "
          "the TCP work of both ends of what the broker sends)",
          runs, skipped, names, brokers, lambda r: r.get("broker_system_us_per_message"), digits=3,
          only=lambda n: not n.startswith("idle"))
    table("Delivered messages a second (peer / Tern: above 1, the peer delivered more)",
          runs, skipped, names, brokers, lambda r: r["delivered_per_second"],
          only=lambda n: not n.startswith("idle"))
    for pct in ("p50", "p99"):
        table(f"Latency {pct} µs at a fixed rate (peer / Tern: above 1, the peer is slower)",
              runs, skipped, names, brokers, lambda r, p=pct: r["latency_us"][p], only=lambda n: " at " in n)
    targets_table(runs, names, brokers)
    lost_table(runs, skipped, names, brokers)
    table("Memory per idle connection, bytes (peer / Tern)", runs, skipped, names, brokers,
          lambda r: r.get("broker_bytes_per_connection"), only=lambda n: n.startswith("idle"))
    for r in syscalls:
        delivered = r["result"].get("delivered") or 1
        print(f"Syscalls per delivered message, {r['name']}, {LABEL.get(r['broker'], r['broker'])}: "
              f"{r['syscalls'] / delivered:.2f} ({r['syscalls']:,} calls, {delivered:,} messages)")
    if len(sys.argv) > 2:
        plot(sys.argv[2], runs, names, brokers)


if __name__ == "__main__":
    main()
