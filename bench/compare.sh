#!/usr/bin/env bash
# Tern against mosquitto on this machine, measured in the same run.
#
# Each scenario runs against a freshly started Tern and a freshly started mosquitto in
# turn (A B A B ...) for ROUNDS rounds; the table shows medians and the Tern/mosquitto
# ratio. Both brokers listen on loopback with equivalent settings: anonymous, no queue
# limit (max_queued_messages 0, so neither drops), 20 messages in flight, Nagle off.
#
#   bench/compare.sh                 # all scenarios, 3 rounds of 5 s
#   ROUNDS=5 DURATION=10 bench/compare.sh
#   ONLY=shared bench/compare.sh     # only scenarios whose name matches the regex
#
# QoS 1/2 publishers keep 20 messages unacknowledged (--inflight 20): mosquitto accepts
# no more than max_inflight_messages unreleased QoS 2 messages from a client.
#
# Needs: cargo, mosquitto (Debian package), python3; strace for the syscall count.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-5}
IDLE=${IDLE:-10000}

cargo build --release -q -p tern
TERN=$PWD/target/release/tern
MOSQUITTO=$(command -v mosquitto || echo /usr/sbin/mosquitto)
work=$(mktemp -d)
trap 'pkill -P $$ 2>/dev/null || true; rm -rf "$work"' EXIT
ulimit -n 20000 2>/dev/null || true

cat > "$work/tern.conf" <<CONF
listener 18883 127.0.0.1
allow_anonymous true
max_queued_messages 0
max_inflight_messages 20
connection_messages false
CONF
cat > "$work/mosquitto.conf" <<CONF
user root
listener 18884 127.0.0.1
allow_anonymous true
max_queued_messages 0
max_inflight_messages 20
set_tcp_nodelay true
connection_messages false
CONF

# start BROKER: starts it and prints its pid once it accepts connections.
start() {
    local port
    if [ "$1" = tern ]; then
        "$TERN" broker -c "$work/tern.conf" >"$work/tern.log" 2>&1 &
        port=18883
    else
        "$MOSQUITTO" -c "$work/mosquitto.conf" >"$work/mosquitto.log" 2>&1 &
        port=18884
    fi
    ready $! "$port"
}

port_of() { [ "$1" = tern ] && echo 18883 || echo 18884; }

# measure NAME BROKER ARGS...: one run, appended as a JSON line to results.
measure() {
    local name=$1 broker=$2
    shift 2
    [[ -z "${ONLY:-}" || "$name" =~ $ONLY ]] || return 0
    local pid
    pid=$(start "$broker")
    local json
    if ! json=$("$TERN" bench "$@" -p "$(port_of "$broker")" --broker-pid "$pid" --json 2>>"$work/bench.err"); then
        echo "  $name / $broker FAILED: $(tail -n 1 "$work/bench.err")" >&2
        stop "$pid"
        return
    fi
    stop "$pid"
    echo "{\"name\": \"$name\", \"broker\": \"$broker\", \"result\": $json}" >>"$work/results.jsonl"
    echo "  $name / $broker done" >&2
}

# syscalls NAME BROKER ARGS...: strace -c on the broker during a run.
syscalls() {
    command -v strace >/dev/null || { echo "  strace missing: syscall counts skipped" >&2; return; }
    local name=$1 broker=$2
    shift 2
    [[ -z "${ONLY:-}" || "$name" =~ $ONLY ]] || return 0
    local pid json
    pid=$(start "$broker")
    strace -f -c -o "$work/strace.txt" -p "$pid" 2>/dev/null &
    local tracer=$!
    sleep 0.5
    json=$("$TERN" bench "$@" -p "$(port_of "$broker")" --json 2>>"$work/bench.err") || json='{"delivered": 0}'
    kill -INT "$tracer"; wait "$tracer" 2>/dev/null || true
    stop "$pid"
    local calls
    calls=$(awk '$NF == "total" { print $(NF-2) }' "$work/strace.txt")
    echo "{\"name\": \"$name\", \"broker\": \"$broker\", \"syscalls\": ${calls:-0}, \"result\": $json}" >>"$work/results.jsonl"
    echo "  $name / $broker syscalls done" >&2
}

D=$DURATION
for round in $(seq "$ROUNDS"); do
    echo "round $round of $ROUNDS" >&2
    for broker in tern mosquitto; do
        measure "QoS 0 1->1, max rate" "$broker" one-to-one -d "$D"
        measure "QoS 0 fan-out 20, max rate" "$broker" fan-out -S 20 -d "$D"
        measure "QoS 0 fan-in 8, max rate" "$broker" fan-in -P 8 -d "$D"
        measure "QoS 1 1->1, max rate" "$broker" one-to-one -q 1 --inflight 20 -d "$D"
        measure "QoS 2 1->1, max rate" "$broker" one-to-one -q 2 --inflight 20 -d "$D"
        measure "QoS 0 1->1 at 20,000/s" "$broker" one-to-one -r 20000 -d "$D"
        measure "QoS 0 fan-out 20 at 2,000/s (40,000 deliveries/s)" "$broker" fan-out -S 20 -r 2000 -d "$D"
        measure "QoS 1 1->1 at 10,000/s" "$broker" one-to-one -q 1 --inflight 20 -r 10000 -d "$D"
        measure "QoS 1 shared subscription, 4 members, max rate" "$broker" shared -S 4 -q 1 --inflight 20 -d "$D"
        measure "QoS 0 shared subscription, 4 members, at 20,000/s" "$broker" shared -S 4 -r 20000 -d "$D"
        measure "idle connections" "$broker" idle -c "$IDLE" --concurrency 200 --hold 2
    done
done
for broker in tern mosquitto; do
    syscalls "QoS 0 1->1 at 20,000/s" "$broker" one-to-one -r 20000 -d "$D"
    syscalls "QoS 0 fan-out 20 at 2,000/s (40,000 deliveries/s)" "$broker" fan-out -S 20 -r 2000 -d "$D"
done

python3 - "$work/results.jsonl" <<'PY'
import json, statistics, sys
rows = [json.loads(line) for line in open(sys.argv[1])]
names = list(dict.fromkeys(r["name"] for r in rows if "syscalls" not in r))

def med(name, broker, key):
    values = [key(r["result"]) for r in rows if r["name"] == name and r["broker"] == broker and "syscalls" not in r]
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None

def ratio(t, m):
    return f"{t / m:.2f}" if t is not None and m else "n/a"

def fmt(v, digits=0):
    return "n/a" if v is None else f"{v:,.{digits}f}"

print("| scenario | delivered msg/s (Tern / mosquitto / ratio) | broker CPU us per message (Tern / mosquitto / ratio) | p50 / p99 latency us, Tern | p50 / p99 latency us, mosquitto | lost / duplicates (Tern, mosquitto) |")
print("|---|---|---|---|---|---|")
for name in names:
    if name == "idle connections":
        continue
    t = lambda k: med(name, "tern", k)
    m = lambda k: med(name, "mosquitto", k)
    rate = lambda r: r["delivered_per_second"]
    cpu = lambda r: r.get("broker_cpu_us_per_message")
    p50 = lambda r: r["latency_us"]["p50"]
    p99 = lambda r: r["latency_us"]["p99"]
    lost = lambda r: r["lost"]
    dup = lambda r: r["duplicates"]
    print(f"| {name} | {fmt(t(rate))} / {fmt(m(rate))} / {ratio(t(rate), m(rate))} "
          f"| {fmt(t(cpu), 3)} / {fmt(m(cpu), 3)} / {ratio(t(cpu), m(cpu))} "
          f"| {fmt(t(p50))} / {fmt(t(p99))} | {fmt(m(p50))} / {fmt(m(p99))} "
          f"| {fmt(t(lost))}, {fmt(t(dup))} / {fmt(m(lost))}, {fmt(m(dup))} |")
idle_t = med("idle connections", "tern", lambda r: r.get("broker_bytes_per_connection"))
idle_m = med("idle connections", "mosquitto", lambda r: r.get("broker_bytes_per_connection"))
print()
print(f"Memory per idle connection: Tern {fmt(idle_t)} B, mosquitto {fmt(idle_m)} B, ratio {ratio(idle_t, idle_m)}.")
print()
for r in rows:
    if "syscalls" in r:
        delivered = r["result"]["delivered"] or 1
        print(f"Syscalls per delivered message, {r['name']}, {r['broker']}: {r['syscalls'] / delivered:.2f} ({r['syscalls']:,} calls, {delivered:,} messages)")
PY
