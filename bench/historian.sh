#!/usr/bin/env bash
# The historian's cost on the publish path: device -> application delivery through a
# `platform true` listener with the organization's historian off and on (storing every
# event in the embedded store), measured in the same run, alternating (off on off on ...)
# for ROUNDS rounds; then the time of queries over what the "on" runs stored.
# SIDES="off nostore on" adds a third side, the historian reading every event and
# storing none (its filter wants another event id): the event stream's and the
# consumer's share of the cost, apart from the store's.
#
#   bench/historian.sh                      # 3 rounds of 5 s
#   ROUNDS=5 DURATION=10 bench/historian.sh
#   NO_BUILD=1 bench/historian.sh          # with the release binary as it is
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-5}
SIDES=${SIDES:-off on}

[ -n "${NO_BUILD:-}" ] || cargo build --release -q -p tern
TERN=$PWD/target/release/tern
work=$(mktemp -d)
# Brokers are started in subshells (not our children): their pids are kept to stop them.
trap 'for p in $(cat "$work/pids" 2>/dev/null); do kill "$p" 2>/dev/null || true; done; pkill -P $$ 2>/dev/null || true; rm -rf "$work"' EXIT

iot=$(platform_org "$work/data")
key=${iot#bench:sensor:bench-device-token:}

cat > "$work/tern.conf" <<CONF
persistence true
persistence_location $work/data
platform_domain bench.test
max_queued_messages 0
max_inflight_messages 20
connection_messages false
listener 18996 127.0.0.1
platform true
listener 18997 127.0.0.1
protocol http
CONF

# historian on|off|nostore: the organization's settings file, read by the broker at start.
historian() {
    mkdir -p "$work/data/platform/historian"
    case $1 in
    on) settings='{"enabled": true, "retentionDays": 30}' ;;
    nostore) settings='{"enabled": true, "filter": {"eventIds": ["none"]}}' ;;
    *) settings='{"enabled": false}' ;;
    esac
    echo "$settings" >"$work/data/platform/historian/bench.json"
}

start() {
    "$TERN" broker -c "$work/tern.conf" >"$work/tern.log" 2>&1 &
    echo $! >>"$work/pids"
    ready $! 18996
}

# measure NAME SIDE ARGS...: one run on a fresh broker, appended to results.
measure() {
    local name=$1 side=$2
    shift 2
    local pid
    historian "$side"
    pid=$(start)
    # Where the last "on" run's events begin (queries below read them).
    [ "$side" = on ] && date +%s%3N >"$work/mark"
    bench_run "$name" historian "$side" "$pid" "$@" -p 18996 --iot "$iot"
}

D=$DURATION
for round in $(seq "$ROUNDS"); do
    echo "round $round of $ROUNDS" >&2
    for side in $SIDES; do
        measure "QoS 0 1->1 at 20,000/s" "$side" one-to-one -r 20000 -d "$D"
        measure "QoS 0 1->1, max rate" "$side" one-to-one -d "$D"
    done
done

python3 bench/summarize.py "$work/results.jsonl" historian off on
if [[ " $SIDES " == *" nostore "* ]]; then
    echo
    python3 bench/summarize.py "$work/results.jsonl" historian off nostore
fi
# Each round's max-rate figures, to see the spread.
echo
python3 - "$work/results.jsonl" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if "max rate" in l]
for side in dict.fromkeys(r["historian"] for r in rows):
    rates = [f'{r["result"]["delivered_per_second"]:,.0f}' for r in rows if r["historian"] == side]
    print(f"max rate, {side}, each round: {' '.join(rates)}")
PY

# Queries over what was stored: dev0's events, a page, and aggregates over the last
# "on" run's events (an aggregate reads at most 2,000,000 events).
pid=$(start)
ready "$pid" 18997 >/dev/null
base="http://127.0.0.1:18997/api/v0002/historian/types/sensor/devices/dev0/events/bench"
mark=$(cat "$work/mark")
time_query() {
    local what=$1 query=$2
    local t0 t1 out
    t0=$(date +%s%N)
    out=$(curl -s -u "$key" "$base?$query")
    t1=$(date +%s%N)
    echo "| $what | $(( (t1 - t0) / 1000000 )) ms | $(python3 -c 'import json,sys; d=json.load(sys.stdin); print(len(d["events"]) if "events" in d else (str(sum(p["value"] for p in d["points"])) + " events counted" if "points" in d else d))' <<<"$out") |"
}
day=$(date -u +%Y-%m-%d)
echo
echo "| query | time | answer |"
echo "|---|---|---|"
time_query "first page of 1000 events (all of today's)" "start=$day&limit=1000"
time_query "page of 1000 events from the middle of the last run" "start=$(( mark + 2500 ))&limit=1000"
# The first 2 s of the last "on" run (at full speed about a million events; an
# aggregate reads at most 2,000,000).
span="start=$mark&end=$((mark + 2000))"
time_query "count per minute over 2 s of the last run" "$span&agg=count&interval=1m"
time_query "count per day over 2 s of the last run" "$span&agg=count&interval=1d"
stop "$pid"

# Storing while queries run: dev0 publishing at 20,000/s with the historian on, while
# four clients ask for aggregates over 2 s of the last "on" run without pause (each reads
# all of those events). The bench's losses and the historian's lost counter say
# whether a query made anything drop.
historian on
pid=$(start)
ready "$pid" 18997 >/dev/null
: >"$work/queries"
for _ in 1 2 3 4; do
    (while [ ! -e "$work/queries-done" ]; do
        curl -s -o /dev/null -w '%{http_code} %{time_total}\n' -u "$key" \
            "$base?$span&agg=count&interval=1m" >>"$work/queries" 2>/dev/null || sleep 0.1
    done) &
done
from=$(date +%s%3N)
loaded=$("$TERN" bench one-to-one -r 20000 -d $((D * 2)) -p 18996 --iot "$iot" --broker-pid "$pid" --json 2>>"$work/bench.err" || echo '{}')
touch "$work/queries-done"
sleep 1 # the last batch (written 100 ms after its first event)
stored=$(curl -s -u "$key" "$base?start=$from&agg=count&interval=1d" |
    python3 -c 'import json,sys; print(int(sum(p["value"] for p in json.load(sys.stdin).get("points", []))))' || echo "?")
counters="$stored events of the run stored; the historian's log of losses: $(grep -h 'events lost' "$work/tern.log" | tail -n 1 | cut -c 1-160 || true)"
stop "$pid"
wait 2>/dev/null || true
echo
python3 - "$work/queries" "$loaded" "$counters" <<'PY'
import json, statistics, sys
answers = [l.split() for l in open(sys.argv[1]) if l.strip()]
ok = sorted(float(t) for code, t in answers if code == "200")
codes = {}
for code, _ in answers:
    codes[code] = codes.get(code, 0) + 1
r = json.loads(sys.argv[2] or "{}")
print(f"while storing {r.get('delivered_per_second', 0):,.0f} msg/s (offered 20,000/s, {r.get('sent')} sent, lost {r.get('lost')}), "
      f"{len(ok)} aggregates answered (of {len(answers)}), median {statistics.median(ok) if ok else 0:.2f} s, "
      f"max {max(ok) if ok else 0:.2f} s (answers by status: {codes}); {sys.argv[3].strip()}")
PY
