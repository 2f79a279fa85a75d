#!/usr/bin/env python3
"""Medians of bench/cluster.sh's runs, as a Markdown table.

Usage: cluster_report.py RESULTS.jsonl CLK_TCK

RESULTS holds one JSON line per run: "name" (the scenario), "setup" (lone, single or
cross), "tern_ticks" and "nats_ticks" (CPU clock ticks Tern's processes and the NATS
servers took during the run) and "result" (what `tern bench --json` printed); a run
that failed has "failed" (why) instead. One row per scenario and set-up, set-ups of a
scenario next to each other. CPU per message counts unique delivered messages; the
last column is the set-up's Tern + NATS CPU per message over the lone broker's.
"""
import json
import statistics
import sys

SETUPS = {
    "lone": "lone broker (no cluster)",
    "single": "cluster, same node (a to a)",
    "cross": "cluster, across nodes (a to b)",
}


def per_message(row, key, hz):
    unique = row["result"]["delivered"] - row["result"]["duplicates"]
    return row[key] / hz * 1e6 / unique if unique > 0 else None


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def fmt(v, digits=0):
    return "n/a" if v is None else f"{v:,.{digits}f}"


def main():
    path, hz = sys.argv[1], float(sys.argv[2])
    rows = [json.loads(line) for line in open(path) if line.strip()]
    names = list(dict.fromkeys(r["name"] for r in rows))
    print("| scenario | set-up | delivered msg/s | Tern CPU us/msg | NATS CPU us/msg "
          "| CPU vs lone | p50 / p99 latency us | lost | duplicates | runs |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    failures = []
    for name in names:
        total = {}
        for setup in SETUPS:
            runs = [r for r in rows if r["name"] == name and r["setup"] == setup]
            ok = [r for r in runs if "result" in r]
            failures += [f"{name} / {setup}: {r['failed']}" for r in runs if "failed" in r]
            if not runs:
                continue
            get = lambda f: median(f(r) for r in ok)
            tern = get(lambda r: per_message(r, "tern_ticks", hz))
            nats = get(lambda r: per_message(r, "nats_ticks", hz)) if setup != "lone" else None
            both = get(lambda r: None if per_message(r, "tern_ticks", hz) is None
                       else per_message(r, "tern_ticks", hz) + per_message(r, "nats_ticks", hz))
            total[setup] = both
            base = total.get("lone")
            ratio = f"{both / base:.2f}" if both is not None and base else "n/a"
            rate = get(lambda r: r["result"]["delivered_per_second"])
            p50 = get(lambda r: r["result"]["latency_us"]["p50"])
            p99 = get(lambda r: r["result"]["latency_us"]["p99"])
            lost = get(lambda r: r["result"]["lost"])
            duplicates = get(lambda r: r["result"]["duplicates"])
            nats_cell = "-" if setup == "lone" else fmt(nats, 2)
            print(f"| {name} | {SETUPS[setup]} | {fmt(rate)} | {fmt(tern, 2)} | {nats_cell} | {ratio} "
                  f"| {fmt(p50)} / {fmt(p99)} | {fmt(lost)} | {fmt(duplicates)} | {len(ok)} of {len(runs)} |")
    if failures:
        print()
        print("Failed runs:")
        for failure in failures:
            print(f"- {failure}")


if __name__ == "__main__":
    main()
