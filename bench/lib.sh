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

# stop PID: SIGTERM, then wait until the process is gone (it is not our child).
stop() {
    kill "$1" 2>/dev/null || true
    for _ in $(seq 400); do
        kill -0 "$1" 2>/dev/null || return 0
        sleep 0.05
    done
    kill -9 "$1" 2>/dev/null || true
}
