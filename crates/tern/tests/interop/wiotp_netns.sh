#!/usr/bin/env bash
# Runs IBM's Python SDK against Tern inside a network namespace of its own, where the
# platform's host names resolve to 127.0.0.1 and the broker can bind the ports the SDK
# insists on (8883). Started by tests/iot_wiotp.rs as
#   unshare --net --mount bash wiotp_netns.sh TERN CONF HOSTS LOG PYTHON SCRIPT ARGS...
# The hosts file is bind-mounted over /etc/hosts in this mount namespace only.
set -e
tern=$1 conf=$2 hosts=$3 log=$4 python=$5 script=$6
shift 6
ip link set lo up
mount --bind "$hosts" /etc/hosts
"$tern" broker -c "$conf" 2>"$log" &
broker=$!
ready=no
for _ in $(seq 200); do
    if (echo >/dev/tcp/127.0.0.1/8883) 2>/dev/null; then ready=yes; break; fi
    sleep 0.05
done
if [ "$ready" != yes ]; then
    echo "the broker did not listen on 8883" >&2
    kill "$broker" 2>/dev/null
    exit 2
fi
set +e
"$python" "$script" "$@"
status=$?
kill "$broker"
wait "$broker"
exit $status
