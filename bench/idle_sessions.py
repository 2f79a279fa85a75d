#!/usr/bin/env python3
"""Housekeeping cost with many idle sessions: starts a `tern broker` (persistence off, a
listener on 127.0.0.1), leaves N offline persistent sessions in it (3.1.1 CONNECT with
Clean Session 0 and a session expiry, then DISCONNECT) and measures the broker's CPU time
per second while nothing happens, from /proc/PID/stat. Usage:

    bench/idle_sessions.py [--tern PATH] [--sessions N] [--seconds S]
"""
import argparse, os, socket, subprocess, tempfile, time


def connect_packet(client_id: bytes) -> bytes:
    body = b"\x00\x04MQTT\x04\x00\x00\x3c" + len(client_id).to_bytes(2, "big") + client_id
    return b"\x10" + encode_length(len(body)) + body


def encode_length(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n % 128
        n //= 128
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def cpu_ticks(pid: int) -> int:
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


def rss_kib(pid: int) -> int:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tern", default="target/release/tern")
    ap.add_argument("--sessions", type=int, default=100_000)
    ap.add_argument("--seconds", type=int, default=10)
    args = ap.parse_args()
    work = tempfile.mkdtemp()
    conf = os.path.join(work, "idle.conf")
    with open(conf, "w") as f:
        f.write("listener 0 127.0.0.1\nallow_anonymous true\npersistent_client_expiration 1d\n"
                "connection_messages false\nsys_interval 1\n")
    broker = subprocess.Popen([args.tern, "broker", "-c", conf], cwd=work,
                              stderr=subprocess.PIPE, text=True)
    port = None
    for line in broker.stderr:
        if "listening on " in line:
            port = int(line.split("listening on ")[1].split()[0].rsplit(":", 1)[1])
            break
    try:
        start = time.time()
        for i in range(args.sessions):
            s = socket.create_connection(("127.0.0.1", port))
            s.sendall(connect_packet(b"idle-%d" % i))
            ack = s.recv(4)
            assert ack[:1] == b"\x20", ack
            s.sendall(b"\xe0\x00")
            s.close()
        made = time.time() - start
        time.sleep(2)  # let the last disconnects settle before sampling
        hz = os.sysconf("SC_CLK_TCK")
        before = cpu_ticks(broker.pid)
        time.sleep(args.seconds)
        used = (cpu_ticks(broker.pid) - before) / hz
        print(f"{args.sessions} idle sessions (made in {made:.0f} s): broker CPU "
              f"{1000 * used / args.seconds:.1f} ms per second idle, RSS {rss_kib(broker.pid) / 1024:.0f} MB")
    finally:
        broker.kill()
        broker.wait()


if __name__ == "__main__":
    main()
