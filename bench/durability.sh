#!/usr/bin/env bash
# QoS 1 throughput and latency with the store in each durability mode (docs/persistence.md).
#
# Subscribers hold persistent sessions (--persistent), so every message is written to the
# store: queued, given its packet id, removed on PUBACK. The same run also measures with
# persistence off. ROUNDS rounds of DURATION seconds; medians.
#
#   bench/durability.sh
#   ROUNDS=5 DURATION=10 bench/durability.sh
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-5}
cargo build --release -q -p tern
TERN=$PWD/target/release/tern
work=$(mktemp -d)
trap 'pkill -P $$ 2>/dev/null || true; rm -rf "$work"' EXIT

run() { # MODE SCENARIO ARGS...
    local mode=$1 name=$2
    shift 2
    rm -rf "$work/data"
    local persistence=true durability=$mode
    [ "$mode" = none ] && { persistence=false; durability=sync; }
    cat > "$work/tern.conf" <<CONF
listener 18885 127.0.0.1
allow_anonymous true
max_queued_messages 0
connection_messages false
persistence $persistence
persistence_location $work/data
durability $durability
CONF
    "$TERN" broker -c "$work/tern.conf" >"$work/broker.log" 2>&1 &
    local pid=$!
    for _ in $(seq 100); do (echo >/dev/tcp/127.0.0.1/18885) 2>/dev/null && break; sleep 0.05; done
    local json
    json=$("$TERN" bench "$@" -p 18885 --persistent --broker-pid "$pid" --json 2>/dev/null)
    kill "$pid"; wait "$pid" 2>/dev/null || true
    echo "{\"mode\": \"$mode\", \"name\": \"$name\", \"result\": $json}" >>"$work/results.jsonl"
}

for round in $(seq "$ROUNDS"); do
    echo "round $round of $ROUNDS" >&2
    for mode in none off periodic sync; do
        run "$mode" "QoS 1 1->1, max rate" one-to-one -q 1 --inflight 100 -d "$DURATION"
        run "$mode" "QoS 1 10 pairs, max rate" pairs -P 10 -q 1 --inflight 100 -d "$DURATION"
        run "$mode" "QoS 1 1->1 at 5,000/s" one-to-one -q 1 --inflight 100 -r 5000 -d "$DURATION"
    done
done
python3 - "$work/results.jsonl" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
names = list(dict.fromkeys(r["name"] for r in rows))
labels = {"none": "persistence false", "off": "durability off", "periodic": "periodic (100 ms)", "sync": "sync (group commit)"}
print("| scenario | mode | delivered msg/s | ratio to persistence false | p50 / p99 latency us | lost |")
print("|---|---|---|---|---|---|")
for name in names:
    base = None
    for mode in ["none", "off", "periodic", "sync"]:
        rs = [r["result"] for r in rows if r["name"] == name and r["mode"] == mode]
        if not rs:
            continue
        rate = statistics.median(r["delivered_per_second"] for r in rs)
        p50 = statistics.median(r["latency_us"]["p50"] for r in rs)
        p99 = statistics.median(r["latency_us"]["p99"] for r in rs)
        lost = max(r["lost"] for r in rs)
        base = base or rate
        print(f"| {name} | {labels[mode]} | {rate:,.0f} | {rate / base:.2f} | {p50:,.0f} / {p99:,.0f} | {lost} |")
PY
