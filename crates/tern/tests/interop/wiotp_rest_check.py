"""IBM's Watson IoT Platform Python SDK (PyPI wiotp-sdk 1.0.1, unmodified): its registry,
connection state and last event cache APIs against Tern's REST API.

Usage: wiotp_rest_check.py ORG DOMAIN CAFILE TYPE DEVICE DEVICE_TOKEN API_KEY API_TOKEN
The SDK calls https://ORG.DOMAIN/api/v0002 (port 443; requests trusts the test CA through
REQUESTS_CA_BUNDLE) and connects its device to ORG.messaging.DOMAIN:8883 (caFile). The
organization's last event cache must be enabled. Prints each check and "N passed, M
failed"; exits 1 if any failed.
"""
import base64
import json
import logging
import sys
import threading
import time

import wiotp.sdk.application
import wiotp.sdk.device
from wiotp.sdk.api.registry.devices import DeviceCreateRequest
from wiotp.sdk.exceptions import ApiException

ORG, DOMAIN, CAFILE, TYPE, DEVICE, DEVICE_TOKEN, KEY, TOKEN = sys.argv[1:9]
PATIENCE = 20.0
OPTIONS = {"domain": DOMAIN, "logLevel": logging.ERROR, "mqtt": {"port": 8883, "caFile": CAFILE}}
results = []


def check(name, condition, detail=""):
    results.append(bool(condition))
    print(("ok      " if condition else "FAILED  ") + name + ("" if condition else f": {detail}"), flush=True)


def application(token):
    config = {"identity": {"appId": "rest-check"}, "auth": {"key": KEY, "token": token}, "options": OPTIONS}
    return wiotp.sdk.application.ApplicationClient(config=config, logHandlers=None)


def registry_checks(reg):
    made = reg.devicetypes.create({"id": "sdktype", "description": "made by the SDK"})
    check("a device type is created", made.id == "sdktype" and made.classId == "Device", made)
    check("it is found", "sdktype" in reg.devicetypes)
    check("an unknown type is not", "nosuchtype" not in reg.devicetypes)
    ids = [t.id for t in reg.devicetypes]
    check("device types are listed", ids == sorted(ids) and {"sdktype", TYPE} <= set(ids), ids)
    changed = reg.devicetypes.update("sdktype", description="changed")
    check("a device type is updated", changed.description == "changed", changed)

    one = reg.devices.create(DeviceCreateRequest(typeId="sdktype", deviceId="d00"))
    check("a device is created, its token returned", one.success and len(one.authToken) >= 8, one)
    many = reg.devices.create([DeviceCreateRequest(typeId="sdktype", deviceId="d%02d" % i) for i in range(1, 61)])
    check("60 devices in one bulk add", len(many) == 60 and all(r.success for r in many), many[:2])
    listed = [d.deviceId for d in reg.devicetypes["sdktype"].devices]
    check("a type's 61 devices are listed over pages", listed == ["d%02d" % i for i in range(61)], listed)
    everyone = [d.clientId for d in reg.devices]
    check("every device is listed", len(everyone) == 62 and f"d:{ORG}:{TYPE}:{DEVICE}" in everyone, everyone)
    client_id = f"d:{ORG}:sdktype:d00"
    check("a device is read by its client id", reg.devices[client_id].deviceId == "d00")
    updated = reg.devices.update({"typeId": "sdktype", "deviceId": "d00"}, metadata={"room": 7})
    check("a device is updated", updated.metadata == {"room": 7}, updated)
    del reg.devices[client_id]
    check("a device is deleted", client_id not in reg.devices)
    removed = reg.devices.delete([{"typeId": "sdktype", "deviceId": "d%02d" % i} for i in range(1, 61)])
    check("60 devices in one bulk remove", len(removed) == 60 and all(r["success"] for r in removed), removed[:2])
    del reg.devicetypes["sdktype"]
    check("a device type is deleted", "sdktype" not in reg.devicetypes)


def device_checks(app):
    config = {
        "identity": {"orgId": ORG, "typeId": TYPE, "deviceId": DEVICE},
        "auth": {"token": DEVICE_TOKEN},
        "options": OPTIONS,
    }
    device = wiotp.sdk.device.DeviceClient(config=config, logHandlers=None)
    device.connect()
    check("the device connects", device.isConnected())
    published = threading.Event()
    device.publishEvent("status", "json", {"temp": 21}, qos=1, onPublish=published.set)
    check("the device's event is acknowledged", published.wait(PATIENCE))
    client_id = f"d:{ORG}:{TYPE}:{DEVICE}"
    state = app.registry.connectionStatus[client_id]
    check("the device is shown connected", state["connectionStatus"] == "connected", state)
    found = [s["id"] for s in app.registry.connectionStatus.find(typeId=TYPE, connectionStatus="connected")]
    check("and found among connected devices", found == [client_id], found)
    uid = {"typeId": TYPE, "deviceId": DEVICE}
    deadline = time.monotonic() + PATIENCE
    last = None
    while last is None and time.monotonic() < deadline:
        try:
            last = app.lec.get(uid, "status")
        except ApiException:
            time.sleep(0.05)
    check("the last event cache has the event", last is not None)
    if last is not None:
        data = json.loads(base64.b64decode(last.payload))
        check("with its payload, format and time", data == {"temp": 21} and last.format == "json" and last.timestamp, last)
    every = app.lec.getAll(uid)
    check("all of the device's cached events", [e.eventId for e in every] == ["status"], every)
    device.disconnect()


app = application(TOKEN)
registry_checks(app.registry)
device_checks(app)
try:
    "anything" in application("wrong-token-0000").registry.devicetypes
    check("a wrong token is refused", False, "no exception")
except ApiException as e:
    check("a wrong token is refused", e.response.status_code == 401, e.response.status_code)
passed = sum(results)
failed = len(results) - passed
print(f"{passed} passed, {failed} failed", flush=True)
sys.exit(1 if failed else 0)
