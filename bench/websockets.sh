#!/usr/bin/env bash
# Tern over WebSocket against Tern over TCP, measured in the same run: the broker's CPU
# per delivered message and its memory per idle connection, one listener of each kind
# on the same broker configuration, alternating (tcp ws tcp ws ...) for ROUNDS rounds.
#
#   bench/websockets.sh                      # 3 rounds of 5 s, 5,000 idle connections
#   ROUNDS=5 DURATION=10 IDLE=10000 bench/websockets.sh
#
# mosquitto is not in this table: the Debian package's WebSocket listener does not open
# on this machine ("Unable to start any listening sockets"), so only Tern's own ratio
# (goal: CPU per message over ws within 1.5x of TCP) is measured.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-5}
IDLE=${IDLE:-5000}

cargo build --release -q -p tern
TERN=$PWD/target/release/tern
work=$(mktemp -d)
trap 'pkill -P $$ 2>/dev/null || true; rm -rf "$work"' EXIT
ulimit -n 20000 2>/dev/null || true

cat > "$work/tern.conf" <<CONF
allow_anonymous true
max_queued_messages 0
max_inflight_messages 20
connection_messages false
listener 18883 127.0.0.1
listener 18885 127.0.0.1
protocol websockets
CONF

start() {
    "$TERN" broker -c "$work/tern.conf" >"$work/tern.log" 2>&1 &
    ready $! 18885
}

# measure NAME TRANSPORT ARGS...: one run on a fresh broker, appended to results.
measure() {
    local name=$1 transport=$2
    shift 2
    local flags=(-p 18883)
    [ "$transport" = ws ] && flags=(-p 18885 --ws)
    bench_run "$name" transport "$transport" "$(start)" "$@" "${flags[@]}"
}

D=$DURATION
for round in $(seq "$ROUNDS"); do
    echo "round $round of $ROUNDS" >&2
    for transport in tcp ws; do
        measure "QoS 0 1->1 at 20,000/s" "$transport" one-to-one -r 20000 -d "$D"
        measure "QoS 0 fan-out 20 at 2,000/s (40,000 deliveries/s)" "$transport" fan-out -S 20 -r 2000 -d "$D"
        measure "QoS 1 1->1 at 10,000/s" "$transport" one-to-one -q 1 --inflight 20 -r 10000 -d "$D"
        measure "QoS 0 1->1, max rate" "$transport" one-to-one -d "$D"
        measure "idle connections" "$transport" idle -c "$IDLE" --concurrency 200 --hold 2
    done
done

python3 bench/summarize.py "$work/results.jsonl" transport tcp ws
