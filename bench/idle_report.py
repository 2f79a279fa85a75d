#!/usr/bin/env python3
"""The tables of bench/idle.sh: medians over its rounds, Tern beside mosquitto.

Usage: idle_report.py RESULTS.jsonl
"""
import json
import statistics
import sys


def medians(rows, name, broker, key):
    values = [key(r["result"]) for r in rows if r["name"] == name and r["broker"] == broker]
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def cell(value, digits=0):
    return "n/a" if value is None else f"{value:,.{digits}f}"


def main():
    rows = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
    names = list(dict.fromkeys(r["name"] for r in rows))
    per = lambda r: r.get("broker_bytes_per_connection")
    print("**Memory per idle connection, bytes (keep-alive 60; medians)**\n")
    print("| connections, transport | Tern | mosquitto | Tern / mosquitto |")
    print("|---|---|---|---|")
    for name in (n for n in names if n.startswith("idle")):
        tern, mosq = medians(rows, name, "tern", per), medians(rows, name, "mosquitto", per)
        ratio = f"{tern / mosq:.2f}" if tern and mosq else "n/a"
        _, transport, size = name.split()
        print(f"| {int(size):,} over {transport.upper()} | {cell(tern)} | {cell(mosq)} | {ratio} |")
    print()
    print("**Crowd: every connection subscribed to one topic, then one message to all (medians)**\n")
    print("| connections | broker | connects/s | bytes per subscribed connection | reached | time to the last delivery, ms |")
    print("|---|---|---|---|---|---|")
    for name in (n for n in names if n.startswith("crowd")):
        for broker in ("tern", "mosquitto"):
            rate = medians(rows, name, broker, lambda r: r.get("connects_per_second"))
            memory = medians(rows, name, broker, per)
            reached = medians(rows, name, broker, lambda r: r.get("delivered"))
            last = medians(rows, name, broker, lambda r: r.get("time_to_last_delivery_us"))
            last_ms = None if last is None else last / 1000
            print(f"| {int(name.split()[1]):,} | {broker} | {cell(rate)} | {cell(memory)} | {cell(reached)} | {cell(last_ms, 1)} |")
    print()


if __name__ == "__main__":
    main()
