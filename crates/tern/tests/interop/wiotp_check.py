"""IBM's Watson IoT Platform Python SDK (PyPI wiotp-sdk 1.0.1, unmodified) against Tern.

Usage: wiotp_check.py ORG DOMAIN CAFILE TYPE DEVICE DEVICE_TOKEN API_KEY API_TOKEN
The SDK connects to ORG.messaging.DOMAIN:8883 with TLS, trusting CAFILE. Checks: an
application sees the device's Connect status, receives its event, and its command reaches
the device; a device with a wrong token is refused. Prints each check and "N passed, M
failed"; exits 1 if any failed.
"""
import logging
import sys
import threading

import wiotp.sdk.application
import wiotp.sdk.device

ORG, DOMAIN, CAFILE, TYPE, DEVICE, DEVICE_TOKEN, KEY, TOKEN = sys.argv[1:9]
# How long to wait for something that must happen (a passing run never waits this long).
PATIENCE = 20.0
OPTIONS = {"domain": DOMAIN, "logLevel": logging.ERROR, "mqtt": {"port": 8883, "caFile": CAFILE}}
results = []


def check(name, condition, detail=""):
    results.append(condition)
    print(("ok      " if condition else "FAILED  ") + name + ("" if condition else f": {detail}"), flush=True)


def device_client(token):
    config = {
        "identity": {"orgId": ORG, "typeId": TYPE, "deviceId": DEVICE},
        "auth": {"token": token},
        "options": OPTIONS,
    }
    return wiotp.sdk.device.DeviceClient(config=config, logHandlers=None)


app = wiotp.sdk.application.ApplicationClient(
    config={"identity": {"appId": "tern-check"}, "auth": {"key": KEY, "token": TOKEN}, "options": OPTIONS},
    logHandlers=None,
)
events, statuses = [], []
got_event, got_status = threading.Event(), threading.Event()


def on_event(event):
    events.append(event)
    got_event.set()


def on_status(status):
    statuses.append(status)
    if status.action == "Connect":
        got_status.set()


app_subacks = []
two_subacks = threading.Event()


def on_app_suback(mid, granted):
    app_subacks.append(granted)
    if len(app_subacks) == 2:
        two_subacks.set()


app.deviceEventCallback = on_event
app.deviceStatusCallback = on_status
app.subscriptionCallback = on_app_suback
app.connect()
check("application connects", app.isConnected())
app.subscribeToDeviceStatus(typeId=TYPE, deviceId=DEVICE)
app.subscribeToDeviceEvents(typeId=TYPE, deviceId=DEVICE, eventId="+", msgFormat="+", qos=1)
check("the application's subscriptions are granted", two_subacks.wait(PATIENCE), app_subacks)

device = device_client(DEVICE_TOKEN)
commands = []
got_command = threading.Event()


def on_command(command):
    commands.append(command)
    got_command.set()


device.commandCallback = on_command
device.connect()
check("device connects", device.isConnected())
# The SDK subscribes the device to its commands on connect.
check("the device's command subscription is granted", device.subscriptionsAcknowledged.wait(PATIENCE))
check("the application sees the device's Connect status", got_status.wait(PATIENCE), statuses)

device.publishEvent("status", "json", {"temp": 21}, qos=1)
check("the device's event reaches the application", got_event.wait(PATIENCE))
if events:
    e = events[0]
    check(
        "the event arrives as published",
        (e.typeId, e.deviceId, e.eventId, e.format, e.data) == (TYPE, DEVICE, "status", "json", {"temp": 21}),
        vars(e),
    )

app.publishCommand(TYPE, DEVICE, "reboot", "json", {"delay": 5}, qos=1)
check("the application's command reaches the device", got_command.wait(PATIENCE))
if commands:
    c = commands[0]
    check("the command arrives as published", (c.commandId, c.format, c.data) == ("reboot", "json", {"delay": 5}), vars(c))

device.disconnect()
app.disconnect()

# A wrong token: the SDK raises its ConnectionException in paho's thread, so the CONNACK
# code is read from paho's callback, wrapped (the SDK itself is unchanged).
intruder = device_client("not-the-token-at-all")
refusal = []
answered = threading.Event()
sdk_on_connect = intruder.client.on_connect


def on_connect(*args):
    refusal.append(args[3])
    answered.set()
    sdk_on_connect(*args)


intruder.client.on_connect = on_connect
threading.Thread(target=intruder.connect, daemon=True).start()
check("a device with a wrong token is refused with CONNACK 4", answered.wait(PATIENCE) and refusal[0] == 4, refusal)
intruder.client.loop_stop()

failed = results.count(False)
print(f"{len(results) - failed} passed, {failed} failed")
sys.exit(1 if failed else 0)
