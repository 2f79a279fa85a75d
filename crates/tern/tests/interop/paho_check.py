"""Interop check with paho-mqtt (Eclipse Paho, PyPI): a client nobody at Tern wrote.

Usage: paho_check.py HOST PORT {3.1.1|5} [ws|wss [CAFILE]]. With ws or wss the clients
use MQTT over WebSocket (path /mqtt; wss checks the broker against CAFILE). Exits 0 when every check passed, 1 otherwise,
printing what failed. Covers: connect, subscribe with wildcards, publish and receive at
QoS 0, 1 and 2, retained messages, the will of a dropped client, a persistent session
receiving QoS 1 messages queued while it was offline, shared subscriptions; under 5.0
also request/response and user properties, Message Expiry and Response Information.
"""
import sys
import threading
import time

import paho.mqtt.client as mqtt

HOST, PORT, VERSION = sys.argv[1], int(sys.argv[2]), sys.argv[3]
TRANSPORT = sys.argv[4] if len(sys.argv) > 4 else "tcp"
CAFILE = sys.argv[5] if len(sys.argv) > 5 else None
PROTOCOL = mqtt.MQTTv5 if VERSION == "5" else mqtt.MQTTv311
# How long to wait for something that must happen (generous: the suite runs on loaded
# machines; a passing run never waits this long).
PATIENCE = 20.0


def client(client_id, clean=True):
    kwargs = {"client_id": client_id, "protocol": PROTOCOL}
    if PROTOCOL != mqtt.MQTTv5:
        kwargs["clean_session"] = clean
    if TRANSPORT in ("ws", "wss"):
        kwargs["transport"] = "websockets"
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, **kwargs)
    if TRANSPORT in ("ws", "wss"):
        c.ws_set_options(path="/mqtt")
    if TRANSPORT == "wss":
        c.tls_set(ca_certs=CAFILE)
    c.received = []
    c.arrived = threading.Event()
    c.connected = threading.Event()
    c.subacks = set()
    c.disconnected = threading.Event()

    def on_message(_c, _u, msg):
        c.received.append((msg.topic, msg.payload, msg.qos, msg.retain))
        c.arrived.set()

    def on_connect(_c, _u, _flags, reason, _props):
        c.connect_reason = reason
        c.session_present = _flags.session_present
        c.connected.set()

    def on_subscribe(_c, _u, mid, _reasons, _props):
        c.subacks.add(mid)

    def on_disconnect(_c, _u, _flags, _reason, _props):
        c.disconnected.set()

    c.on_message = on_message
    c.on_connect = on_connect
    c.on_subscribe = on_subscribe
    c.on_disconnect = on_disconnect
    return c


def subscribe(c, *args):
    """Subscribes and returns once the SUBACK has arrived: from then on the broker
    delivers to the new subscription."""
    _result, mid = c.subscribe(*args)
    deadline = time.time() + PATIENCE
    while mid not in c.subacks:
        if time.time() > deadline:
            raise SystemExit("no SUBACK")
        time.sleep(0.01)


def start(c, clean=True):
    if PROTOCOL == mqtt.MQTTv5:
        props = mqtt.Properties(mqtt.PacketTypes.CONNECT)
        props.SessionExpiryInterval = 0 if clean else 3600
        c.connect(HOST, PORT, keepalive=30, clean_start=clean, properties=props)
    else:
        c.connect(HOST, PORT, keepalive=30)
    c.loop_start()
    if not c.connected.wait(PATIENCE):
        raise SystemExit("no CONNACK")
    return c


def wait_for(c, count, timeout=PATIENCE):
    deadline = time.time() + timeout
    while len(c.received) < count and time.time() < deadline:
        time.sleep(0.01)
    return c.received


failures = []
checks = []


def check(name, condition, detail=""):
    checks.append(name)
    print(("ok   " if condition else "FAIL ") + name + (": " + str(detail) if not condition else ""))
    if not condition:
        failures.append(name)


tag = "paho" + VERSION.replace(".", "")
sub = start(client(tag + "-sub"))
subscribe(sub, [("p/+/qos", 2), ("p/retained/#", 1)])
pub = start(client(tag + "-pub"))
for qos in (0, 1, 2):
    info = pub.publish("p/%d/qos" % qos, b"payload-%d" % qos, qos=qos)
    info.wait_for_publish(PATIENCE)
got = sorted(wait_for(sub, 3))
check("three QoS levels delivered", len(got) == 3, got)
check("QoS preserved", [m[2] for m in got] == [0, 1, 2], got)
check("payloads intact", [m[1] for m in got] == [b"payload-0", b"payload-1", b"payload-2"], got)

pub.publish("p/retained/x", b"kept", qos=1, retain=True).wait_for_publish(PATIENCE)
late = start(client(tag + "-late"))
subscribe(late, "p/retained/#", 1)
got = wait_for(late, 1)
check("retained message sent on subscribe", got[:1] == [("p/retained/x", b"kept", 1, True)], got)
pub.publish("p/retained/x", b"", qos=1, retain=True).wait_for_publish(PATIENCE)

# The will of a client whose socket drops.
watcher = start(client(tag + "-watch"))
subscribe(watcher, "p/will", 1)
doomed = client(tag + "-doomed")
doomed.will_set("p/will", b"bye", qos=1)
start(doomed)
doomed.loop_stop()
doomed.socket().close()
got = wait_for(watcher, 1)
check("will published on dropped connection", got[:1] == [("p/will", b"bye", 1, False)], got)

# A persistent session collects QoS 1 messages while offline.
durable = start(client(tag + "-durable", clean=False), clean=False)
subscribe(durable, "p/durable", 1)
durable.disconnect()
# Its socket closed: what is published next is queued for the session, not taken by it.
if not durable.disconnected.wait(PATIENCE):
    raise SystemExit("no disconnect")
durable.loop_stop()
pub.publish("p/durable", b"while-away", qos=1).wait_for_publish(PATIENCE)
back = start(client(tag + "-durable", clean=False), clean=False)
check("session present on resume", back.session_present, back.session_present)
got = wait_for(back, 1)
check("queued message delivered on resume", got[:1] == [("p/durable", b"while-away", 1, False)], got)

# Shared subscriptions: each message to one member of the group.
members = [start(client(tag + "-member%d" % i)) for i in range(2)]
for m in members:
    subscribe(m, "$share/pg/p/shared", 1)
for i in range(10):
    pub.publish("p/shared", b"job-%d" % i, qos=1).wait_for_publish(PATIENCE)
deadline = time.time() + PATIENCE
while sum(len(m.received) for m in members) < 10 and time.time() < deadline:
    time.sleep(0.01)
shared = [m.received for m in members]
payloads = sorted(p for r in shared for (_t, p, _q, _r) in r)
check("shared subscription: every message once", payloads == sorted(b"job-%d" % i for i in range(10)), shared)
check("shared subscription: both members used", all(len(r) == 5 for r in shared), [len(r) for r in shared])
extra = members

if PROTOCOL == mqtt.MQTTv5:
    # Request/response properties and user properties pass through unchanged.
    responder = start(client(tag + "-responder"))
    got = []
    responder.on_message = lambda _c, _u, msg: got.append(msg.properties)
    subscribe(responder, "p/request", 1)
    props = mqtt.Properties(mqtt.PacketTypes.PUBLISH)
    props.ResponseTopic = "p/reply"
    props.CorrelationData = b"\x01\x02"
    props.UserProperty = [("k", "v")]
    props.MessageExpiryInterval = 600
    pub.publish("p/request", b"?", qos=1, properties=props).wait_for_publish(PATIENCE)
    deadline = time.time() + PATIENCE
    while not got and time.time() < deadline:
        time.sleep(0.01)
    p5 = got[0] if got else None
    check("5.0 properties forwarded",
          p5 is not None and p5.ResponseTopic == "p/reply" and p5.CorrelationData == b"\x01\x02"
          and ("k", "v") in p5.UserProperty and 0 < p5.MessageExpiryInterval <= 600,
          p5)
    # Response Information on request.
    asker = client(tag + "-asker")
    seen = {}
    asker.on_connect = lambda _c, _u, _f, reason, props: (seen.update(p=props), asker.connected.set())
    cprops = mqtt.Properties(mqtt.PacketTypes.CONNECT)
    cprops.RequestResponseInformation = 1
    asker.connect(HOST, PORT, keepalive=30, properties=cprops)
    asker.loop_start()
    asker.connected.wait(PATIENCE)
    info = getattr(seen.get("p"), "ResponseInformation", None)
    check("Response Information given", info == "response/" + tag + "-asker", info)
    extra = extra + [responder, asker]

for c in extra:
    c.disconnect()
    c.loop_stop()
for c in (sub, pub, late, watcher, back):
    c.disconnect()
    c.loop_stop()
print("paho: %d passed, %d failed" % (len(checks) - len(failures), len(failures)))
sys.exit(1 if failures else 0)
