# Shared by the bench scripts (sourced): waiting for a broker to listen, stopping it.

# ready PID PORT: prints PID once something accepts connections on 127.0.0.1:PORT; fails
# the script if nothing does within 5 s.
ready() {
    for _ in $(seq 100); do
        if (echo >"/dev/tcp/127.0.0.1/$2") 2>/dev/null; then echo "$1"; return; fi
        sleep 0.05
    done
    echo "the broker did not start listening on port $2" >&2
    exit 1
}

# bench_run NAME KEY VALUE PID ARGS...: `tern bench ARGS --broker-pid PID --json` ($TERN)
# against the broker PID, which is stopped after; the result is appended to
# $work/results.jsonl as {"name": NAME, KEY: VALUE, "result": ...} for bench/summarize.py.
# A failed run is reported (the last line of $work/bench.err) and left out.
bench_run() {
    local name=$1 key=$2 value=$3 pid=$4 json
    shift 4
    if json=$("$TERN" bench "$@" --broker-pid "$pid" --json 2>>"$work/bench.err"); then
        echo "{\"name\": \"$name\", \"$key\": \"$value\", \"result\": $json}" >>"$work/results.jsonl"
        echo "  $name / $value done" >&2
    else
        echo "  $name / $value FAILED: $(tail -n 1 "$work/bench.err")" >&2
    fi
    stop "$pid"
}

# stop PID: SIGTERM, then wait until the process is gone (it is not our child).
stop() {
    kill "$1" 2>/dev/null || true
    for _ in $(seq 400); do
        kill -0 "$1" 2>/dev/null || return 0
        sleep 0.05
    done
    kill -9 "$1" 2>/dev/null || true
}

# platform_org DATA_DIR: registers organization `bench` (plain TCP allowed, no message
# quota), device type `sensor` and devices dev0..dev7 with token bench-device-token in
# DATA_DIR ($TERN iot), and prints `tern bench --iot`'s argument for them.
platform_org() {
    local org
    org=$("$TERN" iot org create bench --allow-plain true --device-messages-per-second 100000000 \
        --data-dir "$1" --json)
    "$TERN" iot type create bench sensor --data-dir "$1" >/dev/null
    for i in $(seq 0 7); do
        "$TERN" iot device create bench sensor "dev$i" --token bench-device-token --data-dir "$1" >/dev/null
    done
    python3 -c 'import json,sys; o=json.load(sys.stdin); print("bench:sensor:bench-device-token:" + o["apiKey"] + ":" + o["apiToken"])' <<<"$org"
}
