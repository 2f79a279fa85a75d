#!/usr/bin/env python3
"""Broker memory per retained message (docs/benchmarks.md, "Retained messages").

Starts `tern broker` (persistence off, 127.0.0.1, a port of its own choosing), stores COUNT
small retained messages (`dev/{i}/status`, payload `online`) and reports the growth of the
broker's VmRSS (/proc/PID/status) divided by COUNT, for two ways of publishing them:

- pipelined: one connection writes them all at QoS 0, many to a read, then a QoS 1
  PUBLISH whose PUBACK says every earlier one was handled;
- one per read: one connection publishes at QoS 1 and waits for each PUBACK, so each
  message arrives in a read of its own (as from devices that report now and then).

Each pattern runs against a fresh broker. Usage:

    bench/retained_rss.py [--tern target/debug/tern] [--count 100000]
"""

import argparse
import os
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time

TIMEOUT = 120  # seconds, for each pattern


def varint(n):
    out = bytearray()
    while True:
        byte = n % 128
        n //= 128
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def string(s):
    b = s.encode()
    return len(b).to_bytes(2, "big") + b


def packet(first, body):
    return bytes([first]) + varint(len(body)) + body


def connect(client_id):
    return packet(0x10, string("MQTT") + bytes([4, 0x02, 0, 60]) + string(client_id))


def publish(topic, payload, qos=0, retain=True, packet_id=0):
    body = string(topic) + (packet_id.to_bytes(2, "big") if qos else b"") + payload
    return packet(0x30 | (qos << 1) | int(retain), body)


def rss(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


def read_exactly(sock, n):
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise RuntimeError("broker closed the connection")
        data += chunk
    return data


class Broker:
    def __init__(self, tern):
        self.dir = tempfile.TemporaryDirectory()
        conf = os.path.join(self.dir.name, "tern.conf")
        with open(conf, "w") as f:
            f.write("listener 0 127.0.0.1\nallow_anonymous true\npersistence false\nconnection_messages false\n")
        env = dict(os.environ, TERN_LOG="info")
        self.proc = subprocess.Popen(
            [os.path.abspath(tern), "broker", "-c", conf], cwd=self.dir.name, env=env, stderr=subprocess.PIPE, text=True
        )
        for line in self.proc.stderr:
            m = re.search(r"listening on (\S+)", line)
            if m:
                host, port = m.group(1).rsplit(":", 1)
                self.addr = (host, int(port))
                break
        else:
            raise RuntimeError("broker did not start")
        # Keep reading its log, so that it never blocks on a full pipe.
        threading.Thread(target=lambda: [None for _ in self.proc.stderr], daemon=True).start()

    def client(self, client_id):
        sock = socket.create_connection(self.addr, timeout=TIMEOUT)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.sendall(connect(client_id))
        if read_exactly(sock, 4)[0] != 0x20:
            raise RuntimeError("no CONNACK")
        return sock

    def stop(self):
        self.proc.kill()
        self.proc.wait()
        self.dir.cleanup()


def barrier(sock, packet_id=1):
    """A QoS 1 PUBLISH (not retained): its PUBACK follows everything sent before it."""
    sock.sendall(publish("barrier", b"", qos=1, retain=False, packet_id=packet_id))
    if read_exactly(sock, 4)[0] != 0x40:
        raise RuntimeError("no PUBACK")


def pipelined(sock, count):
    batch = bytearray()
    for i in range(count):
        batch += publish(f"dev/{i}/status", b"online")
        if len(batch) >= 65536:
            sock.sendall(batch)
            batch.clear()
    sock.sendall(batch)
    barrier(sock)


def one_per_read(sock, count):
    for i in range(count):
        packet_id = i % 65535 + 1
        sock.sendall(publish(f"dev/{i}/status", b"online", qos=1, packet_id=packet_id))
        if read_exactly(sock, 4) != bytes([0x40, 2]) + packet_id.to_bytes(2, "big"):
            raise RuntimeError("unexpected answer")


def measure(tern, count, pattern):
    broker = Broker(tern)
    try:
        sock = broker.client("rss")
        barrier(sock)
        before = rss(broker.proc.pid)
        started = time.monotonic()
        pattern(sock, count)
        elapsed = time.monotonic() - started
        after = rss(broker.proc.pid)
        sock.close()
        return before, after, elapsed
    finally:
        broker.stop()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tern", default="target/debug/tern")
    parser.add_argument("--count", type=int, default=100_000)
    args = parser.parse_args()
    print(f"{args.count} retained messages, {args.tern}")
    for name, pattern in [("pipelined", pipelined), ("one per read", one_per_read)]:
        before, after, elapsed = measure(args.tern, args.count, pattern)
        per = (after - before) / args.count
        print(
            f"{name:>13}: VmRSS {before / 1e6:.1f} MB -> {after / 1e6:.1f} MB, "
            f"{per:,.0f} B per retained message ({elapsed:.1f} s)"
        )


if __name__ == "__main__":
    sys.exit(main())
