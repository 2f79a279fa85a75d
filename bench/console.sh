#!/usr/bin/env bash
# What open web consoles cost the broker: its CPU per delivered message under the same
# steady load (QoS 0, one publisher and one subscriber at RATE messages a second for
# DURATION s) with no console open, against
#   - "overview": N consoles on the overview page (N statistics streams,
#     /api/v1/stream/stats), and
#   - "topics": M consoles on the topics page (M statistics streams and M topic-tree
#     streams, /api/v1/stream/messages?filter=%23&messages=false, one of which also has
#     the subscribe panel open on '#', a message stream with messages),
# alternating (none overview topics none ...) for ROUNDS rounds, each run on a fresh
# broker. The streams are read with curl, as a browser would, and thrown away.
#
#   bench/console.sh                          # 3 rounds of 10 s at 5,000/s, N=32, M=4
#   ROUNDS=5 DURATION=20 RATE=20000 N=16 M=3 bench/console.sh
#
# Prints a table for each comparison (bench/summarize.py: medians; ratio = with / none).
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10}
RATE=${RATE:-5000}
N=${N:-32}
M=${M:-4}
MQTT_PORT=18893
HTTP_PORT=18890

cargo build --release -q -p tern
TERN=$PWD/target/release/tern
work=$(mktemp -d)
readers=()
cleanup() {
    for pid in "${readers[@]}"; do kill "$pid" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT

mkdir -p "$work/data"
key=$("$TERN" admin key create --data-dir "$work/data" --json | python3 -c 'import json,sys; k=json.load(sys.stdin); print(k["secret"])')
cat > "$work/tern.conf" <<CONF
allow_anonymous true
max_queued_messages 0
connection_messages false
persistence_location $work/data
listener $MQTT_PORT 127.0.0.1
listener $HTTP_PORT 127.0.0.1
protocol http
CONF

start() {
    "$TERN" broker -c "$work/tern.conf" >"$work/tern.log" 2>&1 &
    ready $! "$HTTP_PORT"
}

# open PATH: one stream read by curl in the background (until the stream's 60 s end).
open_stream() {
    curl -sN -H "Authorization: Bearer $key" "http://127.0.0.1:$HTTP_PORT$1" >/dev/null &
    readers+=($!)
}

# consoles KIND: opens the streams of that many consoles, and waits until the broker
# counts them (the first event of each arrives at once).
consoles() {
    case $1 in
    none) ;;
    overview)
        for _ in $(seq "$N"); do open_stream /api/v1/stream/stats; done ;;
    topics)
        for _ in $(seq "$M"); do
            open_stream /api/v1/stream/stats
            open_stream '/api/v1/stream/messages?filter=%23&messages=false'
        done
        open_stream '/api/v1/stream/messages?filter=%23' ;;
    esac
    sleep 1
}

close_consoles() {
    for pid in "${readers[@]}"; do kill "$pid" 2>/dev/null || true; done
    readers=()
}

D=$DURATION
name="QoS 0 1->1 at $RATE/s"
for round in $(seq "$ROUNDS"); do
    echo "round $round of $ROUNDS" >&2
    for kind in none overview topics; do
        pid=$(start)
        consoles "$kind"
        bench_run "$name" consoles "$kind" "$pid" one-to-one -r "$RATE" -d "$D" -p "$MQTT_PORT"
        close_consoles
    done
done

echo
echo "### $N consoles on the overview against none"
python3 bench/summarize.py "$work/results.jsonl" consoles none overview
echo
echo "### $M consoles on the topics page (one subscribed to #) against none"
python3 bench/summarize.py "$work/results.jsonl" consoles none topics
