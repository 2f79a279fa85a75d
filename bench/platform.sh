#!/usr/bin/env bash
# The IoT platform's cost: device -> application delivery through a `platform true`
# listener (identities checked, topics mapped into the organization's space and back)
# against the same traffic (topics as deep as the platform's) on a plain listener of the
# same broker, measured in the same
# run, alternating (plain platform plain platform ...) for ROUNDS rounds.
#
#   bench/platform.sh                      # 3 rounds of 5 s
#   ROUNDS=5 DURATION=10 bench/platform.sh
#
# The organization allows plain TCP and a high device message rate (the platform's
# default quota is 10 messages per second per device), so the figures are the broker's.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-5}

cargo build --release -q -p tern
TERN=$PWD/target/release/tern
work=$(mktemp -d)
trap 'pkill -P $$ 2>/dev/null || true; rm -rf "$work"' EXIT

iot=$(platform_org "$work/data")

cat > "$work/tern.conf" <<CONF
persistence true
persistence_location $work/data
platform_domain bench.test
max_queued_messages 0
max_inflight_messages 20
connection_messages false
listener 18883 127.0.0.1
allow_anonymous true
listener 18886 127.0.0.1
platform true
CONF

start() {
    "$TERN" broker -c "$work/tern.conf" >"$work/tern.log" 2>&1 &
    ready $! 18886
}

# measure NAME LISTENER ARGS...: one run on a fresh broker, appended to results.
measure() {
    local name=$1 listener=$2
    shift 2
    # The same depth on both: the platform routes $iot/<org>/iot-2/type/<t>/id/<d>/evt/<e>/fmt/<f>
    # ($iot/ itself is the platform's: plain clients may not use it).
    local flags=(-p 18883 --topic-prefix 'iot/bench/iot-2/type/sensor/id/dev/evt/x/fmt/')
    [ "$listener" = platform ] && flags=(-p 18886 --iot "$iot")
    bench_run "$name" listener "$listener" "$(start)" "$@" "${flags[@]}"
}

D=$DURATION
for round in $(seq "$ROUNDS"); do
    echo "round $round of $ROUNDS" >&2
    for listener in plain platform; do
        measure "QoS 0 1->1 at 20,000/s" "$listener" one-to-one -r 20000 -d "$D"
        measure "QoS 0 fan-in 8 at 2,500/s each" "$listener" fan-in -P 8 -r 2500 -d "$D"
        measure "QoS 1 1->1 at 10,000/s" "$listener" one-to-one -q 1 --inflight 20 -r 10000 -d "$D"
        measure "QoS 0 1->1, max rate" "$listener" one-to-one -d "$D"
    done
done

python3 bench/summarize.py "$work/results.jsonl" listener plain platform
