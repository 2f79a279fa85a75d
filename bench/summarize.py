"""Medians of the runs of bench/websockets.sh or bench/platform.sh, as a Markdown table.

Usage: summarize.py RESULTS KEY A B. RESULTS holds one JSON line per run, each with a
"name", the KEY field (what varied: "transport", "listener") set to A or B, and the
"result" `tern bench --json` printed. Ratios are B / A.
"""
import json
import statistics
import sys

path, key, a, b = sys.argv[1:5]
rows = [json.loads(line) for line in open(path)]
names = list(dict.fromkeys(r["name"] for r in rows))


def med(name, side, get):
    values = [get(r["result"]) for r in rows if r["name"] == name and r[key] == side]
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def fmt(v, digits=0):
    return "n/a" if v is None else f"{v:,.{digits}f}"


def ratio(x, y):
    return f"{x / y:.2f}" if x is not None and y else "n/a"


print(f"| scenario | delivered msg/s ({a} / {b}) | broker CPU us per message ({a} / {b} / {b}:{a}) "
      f"| p50 / p99 latency us ({a}; {b}) | lost ({a}, {b}) |")
print("|---|---|---|---|---|")
for name in names:
    if name == "idle connections":
        continue
    rate = lambda r: r["delivered_per_second"]
    cpu = lambda r: r.get("broker_cpu_us_per_message")
    p50 = lambda r: r["latency_us"]["p50"]
    p99 = lambda r: r["latency_us"]["p99"]
    lost = lambda r: r["lost"]
    x, y = (lambda get: med(name, a, get)), (lambda get: med(name, b, get))
    print(f"| {name} | {fmt(x(rate))} / {fmt(y(rate))} | {fmt(x(cpu), 3)} / {fmt(y(cpu), 3)} / {ratio(y(cpu), x(cpu))} "
          f"| {fmt(x(p50))} / {fmt(x(p99))}; {fmt(y(p50))} / {fmt(y(p99))} | {fmt(x(lost))}, {fmt(y(lost))} |")
if "idle connections" in names:
    idle = lambda side: med("idle connections", side, lambda r: r.get("broker_bytes_per_connection"))
    print()
    print(f"Memory per idle connection: {a} {fmt(idle(a))} B, {b} {fmt(idle(b))} B, ratio {ratio(idle(b), idle(a))}.")
