#!/usr/bin/env bash
# Memory per idle connection over TCP, TLS and WebSocket, Tern beside mosquitto (the same
# three listeners in each), and a crowd: every connection subscribed to one topic, then
# one message to all of them (time to the last delivery). A fresh broker per run; ROUNDS
# rounds, brokers interleaved; bench/idle_report.py prints the medians.
#
#   bench/idle.sh                        # 10,000 and 19,000 connections, 3 rounds
#   SIZES="5000" ROUNDS=1 bench/idle.sh
#
# Connections come from 127.0.0.1 and 127.0.0.2 (`tern bench --sources 2`). One process
# may hold at most `ulimit -Hn` descriptors (20,000 on the machines this project runs
# on, and no way to raise it there): the broker needs one per connection, so 19,000 is
# the most measured here; docs/benchmarks.md says what 100,000 would need.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
ROUNDS=${ROUNDS:-3}
SIZES=${SIZES:-10000 19000}
HOLD=${HOLD:-7}
if [ -z "${TERN:-}" ]; then
    cargo build --release -q -p tern
    TERN=$PWD/target/release/tern
fi
MOSQUITTO=$(command -v mosquitto || echo /usr/sbin/mosquitto)
work=$(mktemp -d)
trap 'pkill -P $$ 2>/dev/null || true; rm -rf "$work"' EXIT
ulimit -n "$(ulimit -Hn)"
: >"$work/results.jsonl"

# A CA and a certificate for 127.0.0.1, for both brokers' TLS listeners.
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=bench CA" \
    -keyout "$work/ca.key" -out "$work/ca.pem" 2>/dev/null
openssl req -newkey rsa:2048 -nodes -subj "/CN=127.0.0.1" \
    -keyout "$work/server.key" -out "$work/server.csr" 2>/dev/null
echo "subjectAltName=IP:127.0.0.1" >"$work/san.cnf"
openssl x509 -req -in "$work/server.csr" -CA "$work/ca.pem" -CAkey "$work/ca.key" -CAcreateserial \
    -days 2 -extfile "$work/san.cnf" -out "$work/server.pem" 2>/dev/null

# listeners BASE: TCP on BASE, TLS on BASE+1, WebSocket on BASE+2 (mosquitto.conf form,
# which both brokers read).
listeners() {
    cat <<CONF
listener $1 127.0.0.1
listener $(($1 + 1)) 127.0.0.1
certfile $work/server.pem
keyfile $work/server.key
listener $(($1 + 2)) 127.0.0.1
protocol websockets
allow_anonymous true
max_queued_messages 0
connection_messages false
CONF
}
listeners 18950 >"$work/tern.conf"
{ echo "user root"; listeners 18960; echo "log_dest none"; echo "set_tcp_nodelay true"; } >"$work/mosquitto.conf"

start() { # BROKER: prints its pid once its three listeners accept
    local base
    case $1 in
        tern) "$TERN" broker -c "$work/tern.conf" >"$work/tern.log" 2>&1 & base=18950 ;;
        mosquitto) "$MOSQUITTO" -c "$work/mosquitto.conf" >"$work/mosquitto.log" 2>&1 & base=18960 ;;
    esac
    local pid=$!
    ready "$pid" "$base" >/dev/null
    ready "$pid" $((base + 1)) >/dev/null
    ready "$pid" $((base + 2))
}

port() { # BROKER TRANSPORT
    local base=18950
    [ "$1" = mosquitto ] && base=18960
    case $2 in
        tcp) echo "$base" ;;
        tls) echo $((base + 1)) ;;
        ws) echo $((base + 2)) ;;
    esac
}

flags() { # TRANSPORT
    case $1 in
        tcp) ;;
        tls) echo "--tls --cafile $work/ca.pem" ;;
        ws) echo "--ws" ;;
    esac
}

for round in $(seq "$ROUNDS"); do
    echo "round $round of $ROUNDS" >&2
    for size in $SIZES; do
        for transport in tcp tls ws; do
            for broker in tern mosquitto; do
                pid=$(start "$broker")
                # shellcheck disable=SC2046
                bench_run "idle $transport $size" broker "$broker" "$pid" idle -p "$(port "$broker" "$transport")" \
                    $(flags "$transport") -c "$size" --concurrency 200 --hold "$HOLD" --sources 2
            done
        done
        for broker in tern mosquitto; do
            pid=$(start "$broker")
            bench_run "crowd $size" broker "$broker" "$pid" crowd -p "$(port "$broker" tcp)" \
                -c "$size" --concurrency 200 --hold "$HOLD" --sources 2
        done
    done
done
python3 bench/idle_report.py "$work/results.jsonl"
cp "$work/results.jsonl" "${RESULTS:-/tmp/idle-results.jsonl}"
