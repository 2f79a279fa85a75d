"""IBM's Watson IoT Platform Python SDK (PyPI wiotp-sdk 1.0.1, unmodified) against Tern.

Usage: wiotp_check.py ORG DOMAIN CAFILE TYPE DEVICE DEVICE_TOKEN API_KEY API_TOKEN
                      GATEWAY_TYPE GATEWAY GATEWAY_TOKEN SENSOR
(SENSOR: a device of TYPE registered behind the gateway)
The SDK connects to ORG.messaging.DOMAIN:8883 with TLS, trusting CAFILE. Checks: an
application sees the device's Connect status, receives its event, and its command reaches
the device; a gateway publishes for a device behind it and receives that device's command;
a device with a wrong token is refused. Prints each check and "N passed, M
failed"; exits 1 if any failed.
"""
import logging
import sys
import threading

import wiotp.sdk.application
import wiotp.sdk.device
import wiotp.sdk.gateway
import wiotp.sdk.gateway.messages

ORG, DOMAIN, CAFILE, TYPE, DEVICE, DEVICE_TOKEN, KEY, TOKEN = sys.argv[1:9]
GW_TYPE, GATEWAY, GW_TOKEN, SENSOR = sys.argv[9:13]
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
app.subscribeToDeviceEvents(typeId=TYPE, deviceId="+", eventId="+", msgFormat="+", qos=1)
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

# A gateway speaks for the devices behind it.
gateway = wiotp.sdk.gateway.GatewayClient(
    config={
        "identity": {"orgId": ORG, "typeId": GW_TYPE, "deviceId": GATEWAY},
        "auth": {"token": GW_TOKEN},
        "options": OPTIONS,
    },
    logHandlers=None,
)
gw_commands, gw_subacks = [], []
got_gw_command, gw_subscribed = threading.Event(), threading.Event()


def on_gw_command(command):
    gw_commands.append(command)
    got_gw_command.set()


def on_gw_suback(mid, granted):
    gw_subacks.append(granted)
    gw_subscribed.set()


# wiotp-sdk 1.0.1's GatewayClient parses the commands of its devices with the device
# client's Command class, which knows only iot-2/cmd/..., and drops them ("Invalid Event:
# Received command on invalid topic"). The check reads them from paho as they arrive and
# parses them with the SDK's own gateway Command class.
def on_gw_message(_client, _userdata, message):
    on_gw_command(wiotp.sdk.gateway.messages.Command(message, gateway._messageCodecs))


gateway.client.message_callback_add(f"iot-2/type/{TYPE}/id/{SENSOR}/cmd/+/fmt/+", on_gw_message)
gateway.subscriptionCallback = on_gw_suback
gateway.connect()
check("gateway connects", gateway.isConnected())
gw_subscribed.clear()
gateway.subscribeToDeviceCommands(TYPE, SENSOR, commandId="+", msgFormat="json", qos=1)
check("the gateway's subscription for its device is granted", gw_subscribed.wait(PATIENCE), gw_subacks)
got_event.clear()
events.clear()
gateway.publishDeviceEvent(TYPE, SENSOR, "status", "json", {"temp": 5}, qos=1)
check("an event the gateway publishes for its device reaches the application", got_event.wait(PATIENCE))
if events:
    e = events[0]
    check("it arrives as the device's event", (e.typeId, e.deviceId, e.data) == (TYPE, SENSOR, {"temp": 5}), vars(e))
app.publishCommand(TYPE, SENSOR, "reboot", "json", {"delay": 1}, qos=1)
check("a command for the device behind the gateway reaches the gateway", got_gw_command.wait(PATIENCE))
if gw_commands:
    c = gw_commands[0]
    check("it names the device", (c.typeId, c.deviceId, c.commandId) == (TYPE, SENSOR, "reboot"), vars(c))
gateway.disconnect()
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
