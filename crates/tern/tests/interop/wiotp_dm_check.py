"""IBM's Watson IoT Platform Python SDK (PyPI wiotp-sdk 1.0.1, unmodified): the Device
Management Protocol against Tern, driven from both ends through the SDK only.

Usage: wiotp_dm_check.py ORG DOMAIN CAFILE TYPE DEVICE DEVICE_TOKEN API_KEY API_TOKEN
                         DEVICE2 DEVICE2_TOKEN GATEWAY_TYPE GATEWAY GATEWAY_TOKEN
(DEVICE2: a second device of TYPE that is never managed)
A ManagedDeviceClient connects to ORG.messaging.DOMAIN:8883 (TLS, trusting CAFILE) with a
persistent session (the SDK's cleanStart True); an ApplicationClient uses the REST API at
https://ORG.DOMAIN/api/v0002 (REQUESTS_CA_BUNDLE). Checks, in order: manage; location set
by the device and by an application; error codes and logs; reboot and factory reset with
the request listing/reading/deleting calls; firmware download (failed, done, refused by the
SDK) and update (done, refused); a custom action bundle and its actions; a reboot queued
for a disconnected device; refusal of an unmanaged device; unmanage. Prints each check
and "N passed, M failed"; exits 1 if any failed.

The SDK's device callbacks run on paho's network thread, and an exception there, or a
disconnect() from there (it joins that thread), stops the client for good: the callbacks
below only record what they saw and hand the work to a thread of their own.
"""
import copy
import datetime
import logging
import os
import sys
import threading
import time
import traceback

import wiotp.sdk.application
import wiotp.sdk.device
import wiotp.sdk.gateway
from wiotp.sdk.exceptions import ApiException

ORG, DOMAIN, CAFILE, TYPE, DEVICE, DEVICE_TOKEN, KEY, TOKEN, DEVICE2, DEVICE2_TOKEN = sys.argv[1:11]
GW_TYPE, GATEWAY, GW_TOKEN = sys.argv[11:14]
# How long to wait for something that must happen (a passing run never waits this long).
PATIENCE = 20.0
OPTIONS = {"domain": DOMAIN, "logLevel": logging.ERROR, "mqtt": {"port": 8883, "caFile": CAFILE}}
FIRMWARE = {"uri": "https://firmware.example/sensor-2.1.bin", "name": "sensor", "version": "2.1", "verifier": "abc123"}
# A firmware image the device fails to fetch (it reports updateStatus 6, invalid URI).
MISSING = "https://firmware.example/missing.bin"
BUNDLE = "tern-check-actions-v1"
results = []


def check(name, condition, detail=""):
    results.append(bool(condition))
    print(("ok      " if condition else "FAILED  ") + name + ("" if condition else f": {detail}"), flush=True)


def poll(read, done, patience=PATIENCE):
    """Calls read() until done(value) holds or patience runs out; (held, last value or
    the last ApiException)."""
    deadline = time.monotonic() + patience
    while True:
        try:
            last = read()
            if done(last):
                return True, last
        except ApiException as e:
            last = f"ApiException {e.response.status_code}: {e.response.text}"
        if time.monotonic() >= deadline:
            return False, last
        time.sleep(0.05)


def waited(event):
    """Whether an SDK call's Event was returned and set within PATIENCE (the SDK returns
    None instead of an Event when the device is not ready for device management)."""
    return event is not None and event.wait(PATIENCE)


def options(**mqtt):
    opts = copy.deepcopy(OPTIONS)  # the SDK's config classes fill defaults in place
    opts["mqtt"].update(mqtt)
    return opts


def device_config(device, token, **mqtt):
    identity = {"orgId": ORG, "typeId": TYPE, "deviceId": device}
    return {"identity": identity, "auth": {"token": token}, "options": options(**mqtt)}


class Device:
    """The managed device: records the actions it is asked for, accepts them, and acts
    them out (a reboot or factory reset is a disconnect and a new connection; a firmware
    download or update is the notifications a real device would send)."""

    def __init__(self, app):
        self.app = app
        config = device_config(DEVICE, DEVICE_TOKEN, cleanStart=True)  # a persistent session (sic)
        self.client = wiotp.sdk.device.ManagedDeviceClient(config=config, logHandlers=None)
        self.client.deviceActionCallback = self.on_action
        self.client.firmwereActionCallback = self.on_firmware  # the SDK's spelling
        self.client.dmeActionCallback = self.on_custom
        self.lock = threading.Condition()
        self.actions = []  # (reqId, action) in arrival order
        self.restarts = 0  # reconnections done after an action
        self.firmware = []  # (action, DeviceFirmware state) in arrival order
        self.firmware_done = 0  # firmware actions acted out
        self.custom = []  # (topic, payload) of custom actions
        self.mute = False  # when set, device actions are recorded but never answered
        self.errors = []

    def registry(self):
        return self.app.registry.devices[f"d:{ORG}:{TYPE}:{DEVICE}"]

    def on_action(self, req_id, action):
        with self.lock:
            self.actions.append((req_id, action))
            if self.mute:
                return
        self.client.respondDeviceAction(req_id, 202)
        threading.Thread(target=self.restart, name="restart", daemon=True).start()

    def restart(self):
        try:
            # The request's PUBACK goes out after on_action returns; an acknowledged
            # event proves the network thread is past it, so the disconnect cannot
            # overtake it (an unacknowledged request is delivered again).
            barrier = threading.Event()
            self.client.publishEvent("restarting", "json", {"at": time.time()}, qos=1, onPublish=barrier.set)
            if not barrier.wait(PATIENCE):
                raise RuntimeError("the restarting event was not acknowledged")
            self.client.disconnect()
            self.client.connect()
        except Exception:
            self.errors.append(traceback.format_exc())
        with self.lock:
            self.restarts += 1
            self.lock.notify_all()

    def wait_restarts(self, count):
        with self.lock:
            return self.lock.wait_for(lambda: self.restarts >= count, PATIENCE)

    def on_firmware(self, action, firmware):
        # Called also when the SDK has refused the action (400: a download when not
        # idle, an update when not downloaded); a device then does nothing.
        state = None if firmware is None else (firmware.state, firmware.updateStatus)
        with self.lock:
            self.firmware.append((action, state))
        acts = state is not None and (action, state[0]) in (("download", 0), ("update", 2))
        if acts:
            args = (action, firmware.url)  # the SDK keeps the wire's "uri" as .url
            threading.Thread(target=self.act_firmware, args=args, name="firmware", daemon=True).start()

    def act_firmware(self, action, uri):
        # Notifications carry no reqId and each is published from a thread of its own, so
        # two in a row may arrive in either order: wait until the first one is stored.
        try:
            if action == "download":
                self.client.setState(1)
                held, last = poll(self.read_firmware, lambda f: f.get("state") == 1)
                if not held:
                    raise RuntimeError(f"state 1 was not stored: {last}")
                if uri == MISSING:
                    self.client.setUpdateStatus(6)
                else:
                    self.client.setState(2)
            elif action == "update":
                self.client.setUpdateStatus(1)
                held, last = poll(self.read_firmware, lambda f: f.get("updateStatus") == 1)
                if not held:
                    raise RuntimeError(f"updateStatus 1 was not stored: {last}")
                self.client.setUpdateStatus(0)
        except Exception:
            self.errors.append(traceback.format_exc())
        with self.lock:
            self.firmware_done += 1
            self.lock.notify_all()

    def wait_firmware_done(self, count):
        with self.lock:
            return self.lock.wait_for(lambda: self.firmware_done >= count, PATIENCE)

    def on_custom(self, topic, payload, req_id):
        with self.lock:
            self.custom.append((topic, payload))
        return topic.endswith("/installPlugin")  # any other action fails (500)

    def read_firmware(self):
        mgmt = self.registry().getMgmt()
        return (mgmt or {}).get("firmware") or {}


def device_status(app, req_id, done):
    """Polls the device's status in request req_id until done(status) holds."""
    return poll(lambda: app.mgmt.requests.getStatus(req_id, TYPE, DEVICE), done)


def finished(status):
    return status.get("status") == 0 and status.get("complete") is True


def initiate(app, action, parameters=None, device=DEVICE):
    request = {"action": action, "devices": [{"typeId": TYPE, "deviceId": device}]}
    if parameters is not None:
        request["parameters"] = parameters
    return app.mgmt.requests.initiate(request)["reqId"]


def manage_checks(dev):
    dev.client.connect()
    check("the managed device connects", dev.client.isConnected())
    check("its manage is answered", dev.client.readyForDeviceMgmt.wait(PATIENCE))
    held, mgmt = poll(lambda: dev.registry().getMgmt(), lambda m: m is not None)
    check("the platform shows it managed", held, mgmt)
    if held:
        supports = mgmt.get("supports", {})
        check(
            "with device and firmware actions, not dormant, lifetime 3600",
            supports.get("deviceActions") is True
            and supports.get("firmwareActions") is True
            and mgmt.get("dormant") is False
            and mgmt.get("lifetime") == 3600,
            mgmt,
        )


def location_checks(dev):
    check("setLocation is answered", waited(dev.client.setLocation(longitude=4.9, latitude=52.37, elevation=2)))
    reg = dev.registry()
    held, loc = poll(reg.getLocation, lambda l: l is not None and l.latitude == 52.37)
    check("the location is read back", held, loc)
    if held:
        check(
            "with longitude, elevation and a measured time",
            loc.longitude == 4.9 and loc.get("elevation") == 2 and isinstance(loc.measuredDateTime, datetime.datetime),
            loc,
        )
    # An application's location is pushed to the device (iotdm-1/device/update): the SDK
    # must answer it and live on.
    put = reg.setLocation({"longitude": -0.12, "latitude": 51.5})
    check("an application sets the location", put.latitude == 51.5 and put.updatedDateTime is not None, put)
    check("and reads it back", reg.getLocation().latitude == 51.5, reg.getLocation())
    check("the device still answers after the push", waited(dev.client.setLocation(longitude=4.9, latitude=52.37)))
    held, loc = poll(reg.getLocation, lambda l: l is not None and l.latitude == 52.37)
    check("the device's location is the latest", held, loc)
    # As IBM's own SDK test does: out of range. The SDK only logs the answer's rc.
    check("an out-of-range location is answered", waited(dev.client.setLocation(longitude=200, latitude=278)))
    loc = reg.getLocation()
    check("and not stored", loc.latitude == 52.37, loc)


def diag_checks(dev):
    reg = dev.registry()
    check("setErrorCode is answered", waited(dev.client.setErrorCode(7)))
    held, n = poll(lambda: len(reg.diagErrorCodes), lambda n: n == 1)
    check("the error code is listed", held and reg.diagErrorCodes[0].errorCode == 7, n)
    now = datetime.datetime.now(datetime.timezone.utc)
    check("an application adds one", reg.diagErrorCodes.append(errorCode=9, timestamp=now))
    codes = [reg.diagErrorCodes[i].errorCode for i in range(len(reg.diagErrorCodes))]
    check("both are listed, oldest first", codes == [7, 9], codes)
    check("clearErrorCodes is answered", waited(dev.client.clearErrorCodes()))
    held, n = poll(lambda: len(reg.diagErrorCodes), lambda n: n == 0)
    check("the error codes are cleared", held, n)

    check("addLog is answered", waited(dev.client.addLog("boot", "", 1)))
    check("a second addLog is answered", waited(dev.client.addLog("warm", "x=1", 2)))
    held, logs = poll(lambda: list(reg.diagLogs), lambda l: len(l) == 2)
    check("the logs are listed", held, logs)
    if held:
        first = logs[0]
        check(
            "with message, severity, data and a time",
            (first.message, first.severity, first.data) == ("boot", 1, "")
            and isinstance(first.timestamp, datetime.datetime),
            first,
        )
        check("a log is read by its id", reg.diagLogs[first.id].message == "boot")
        del reg.diagLogs[0]
        left = [entry.message for entry in reg.diagLogs]
        check("an application deletes one", left == ["warm"], left)
    check("clearLog is answered", waited(dev.client.clearLog()))
    held, n = poll(lambda: len(reg.diagLogs), lambda n: n == 0)
    check("the logs are cleared", held, n)


def device_action_checks(app, dev, action, seen_as, parameters=None):
    """A reboot or factory reset: the device accepts, restarts, manages again."""
    before = dev.restarts
    req_id = initiate(app, action, parameters)
    check(f"{action} is initiated", isinstance(req_id, str) and req_id, req_id)
    check(f"the device restarts for {action}", dev.wait_restarts(before + 1), dev.errors)
    with dev.lock:
        asked = dev.actions[-1][1] if dev.actions else None
    check(f"the device was asked to {seen_as}", asked == seen_as, dev.actions)
    held, status = device_status(app, req_id, finished)
    check(f"{action} completes (status 0, complete)", held, status)
    every = app.mgmt.requests.getStatus(req_id)
    one = (every.get("results") or [{}])[0]
    check(
        "the request's device statuses say the same",
        len(every.get("results", [])) == 1
        and (one.get("typeId"), one.get("deviceId")) == (TYPE, DEVICE)
        and finished(one),
        every,
    )
    request = app.mgmt.requests.get(req_id)
    check("the request is read", request.get("action") == action and request.get("complete") is True, request)
    listed = [r.get("id") for r in app.mgmt.requests.list().get("results", [])]
    check("and listed", req_id in listed, listed)
    return req_id


def action_checks(app, dev):
    reboot = device_action_checks(app, dev, "device/reboot", "reboot")
    check("the device saw one reboot", [a for _, a in dev.actions] == ["reboot"], dev.actions)
    check("a request is deleted", app.mgmt.requests.delete(reboot) is True)
    try:
        app.mgmt.requests.get(reboot)
        check("a deleted request is gone", False, "still readable")
    except ApiException as e:
        check("a deleted request is gone", e.response.status_code == 404, e.response.status_code)
    # With the parameter IBM's own SDK tests send along (ignored).
    device_action_checks(app, dev, "device/factoryReset", "reset", [{"name": "action", "value": "reset"}])
    check("the device saw a factory reset", [a for _, a in dev.actions] == ["reboot", "reset"], dev.actions)

    dev.mute = True
    request = {"action": "device/reboot", "devices": [{"typeId": TYPE, "deviceId": DEVICE}], "timeout": 3}
    req_id = app.mgmt.requests.initiate(request)["reqId"]
    refused("a second request while one is in progress is refused (409)", lambda: initiate(app, "device/reboot"), 409)
    held, status = device_status(app, req_id, ended)
    check(
        "a reboot the device never answers times out (408)",
        held and status.get("status") == 408 and status.get("message"),
        status,
    )
    with dev.lock:
        dev.mute = False
    check("the device was asked", [a for _, a in dev.actions][-1:] == ["reboot"], dev.actions)


def asked_firmware(dev, action, state):
    """Whether the device's last firmware action was `action`, with its firmware state."""
    with dev.lock:
        last = dev.firmware[-1] if dev.firmware else None
    return last is not None and last[0] == action and last[1] is not None and last[1][0] == state


def ended(status):
    return status.get("complete") is True


def firmware_parameters(**changed):
    return [{"name": k, "value": v} for k, v in dict(FIRMWARE, **changed).items()]


def firmware_checks(app, dev):
    req_id = initiate(app, "firmware/download", firmware_parameters(uri=MISSING))
    held, status = device_status(app, req_id, ended)
    check(
        "a download the device reports failed (updateStatus 6) ends with status 500",
        held and status.get("status") == 500 and "6" in status.get("message", ""),
        status,
    )
    check("the device was asked to download, from idle", asked_firmware(dev, "download", 0), dev.firmware)
    dev.wait_firmware_done(1)
    held, fw = poll(dev.read_firmware, lambda f: f.get("updateStatus") == 6)
    check("the failure is stored (state 0, updateStatus 6)", held and fw.get("state") == 0, fw)

    req_id = initiate(app, "firmware/download", firmware_parameters())
    held, status = device_status(app, req_id, finished)
    check("a firmware download completes", held, status)
    check("the device was asked to download, from idle", asked_firmware(dev, "download", 0), dev.firmware)
    dev.wait_firmware_done(2)
    fw = dev.read_firmware()
    check(
        "the firmware is downloaded (state 2, uri, version)",
        fw.get("state") == 2 and fw.get("uri") == FIRMWARE["uri"] and fw.get("version") == FIRMWARE["version"],
        fw,
    )

    req_id = initiate(app, "firmware/download", firmware_parameters())
    held, status = device_status(app, req_id, ended)
    check(
        "a download the SDK refuses (not idle) ends with its 400 and message",
        held and status.get("status") == 400 and "idle" in status.get("message", ""),
        status,
    )
    check("the firmware is still downloaded", dev.read_firmware().get("state") == 2, dev.read_firmware())

    req_id = initiate(app, "firmware/update")
    held, status = device_status(app, req_id, finished)
    check("a firmware update completes", held, status)
    check("the device was asked to update, downloaded", asked_firmware(dev, "update", 2), dev.firmware)
    dev.wait_firmware_done(3)
    held, fw = poll(dev.read_firmware, lambda f: f.get("state") == 0 and f.get("updateStatus") == 0)
    check("the firmware is updated (state 0, updateStatus 0)", held, fw)
    info = dev.registry().deviceInfo
    check("the registry's fwVersion is the new version", info.fwVersion == FIRMWARE["version"], info)

    req_id = initiate(app, "firmware/update")
    held, status = device_status(app, req_id, ended)
    check(
        "an update the SDK refuses (nothing downloaded) ends with its 400 and message",
        held and status.get("status") == 400 and "downloaded" in status.get("message", ""),
        status,
    )


def custom_checks(app, dev):
    bundle = {
        "bundleId": BUNDLE,
        "displayName": {"en_US": "Tern check actions"},
        "version": "1.0",
        "actions": {
            "installPlugin": {
                "actionDisplayName": {"en_US": "Install plug-in"},
                "parameters": [{"name": "pluginURI", "required": True}],
            },
            "removePlugin": {"actionDisplayName": {"en_US": "Remove plug-in"}},
        },
    }
    made = app.mgmt.extensions.create(bundle)
    check("a custom action bundle is created", made.get("bundleId") == BUNDLE, made)
    check("and read", app.mgmt.extensions.get(BUNDLE).get("actions", {}).keys() == bundle["actions"].keys())
    listed = [b.get("bundleId") for b in app.mgmt.extensions.list().get("results", [])]
    check("and listed", listed == [BUNDLE], listed)

    install = f"{BUNDLE}/installPlugin"
    plugin = [{"name": "pluginURI", "value": "https://plugins.example/p1.zip"}]
    refused("a device not supporting the bundle is refused (403)", lambda: initiate(app, install, plugin))
    # The SDK manages once per SUBACK, each time replacing supports without the bundle;
    # those are long done by now, but an explicit manage is sent again if one came later.
    deadline = time.monotonic() + PATIENCE
    while True:
        answered = waited(dev.client.manage(3600, True, True, True, [BUNDLE]))
        mgmt = dev.registry().getMgmt() or {}
        if mgmt.get("supports", {}).get(BUNDLE) is True or time.monotonic() > deadline:
            break
    stored = mgmt.get("supports", {}).get(BUNDLE) is True
    check("a manage naming the bundle is answered and stored", answered and stored, mgmt)
    refused("a custom action without its required parameter is refused (400)", lambda: initiate(app, install), 400)
    req_id = initiate(app, install, plugin)
    held, status = device_status(app, req_id, finished)
    check("a custom action the device performs completes", held, status)
    with dev.lock:
        topic, payload = dev.custom[-1] if dev.custom else (None, {})
    check("the device got it on its topic", topic == f"iotdm-1/mgmt/custom/{install}", dev.custom)
    fields = payload.get("d", {}).get("fields")
    check("with the parameter as a field", fields == [{"field": "pluginURI", "value": plugin[0]["value"]}], payload)
    req_id = initiate(app, f"{BUNDLE}/removePlugin")
    held, status = device_status(app, req_id, ended)
    check("a custom action the device fails ends with its 500", held and status.get("status") == 500, status)
    check("a bundle is deleted", app.mgmt.extensions.delete(BUNDLE) is True)


def offline_checks(app, dev):
    dev.client.disconnect()
    before = dev.restarts
    req_id = initiate(app, "device/reboot")
    status = app.mgmt.requests.getStatus(req_id, TYPE, DEVICE)
    check(
        "a reboot for a disconnected device is in progress (status 1)",
        status.get("status") == 1 and status.get("complete") is False,
        status,
    )
    dev.client.connect()
    check("the queued reboot reaches the device when it is back", dev.wait_restarts(before + 1), dev.errors)
    with dev.lock:
        last = dev.actions[-1]
    check("as a reboot", last[1] == "reboot", dev.actions)
    held, status = device_status(app, req_id, finished)
    check("and completes", held, status)


def refused(name, call, code=403):
    try:
        call()
        check(name, False, "no exception")
    except ApiException as e:
        check(name, e.response.status_code == code, f"{e.response.status_code} {e.response.text}")


def refusal_checks(app):
    reboot2 = lambda: initiate(app, "device/reboot", device=DEVICE2)
    refused("a reboot for a device never connected is refused (403)", reboot2)
    plain = wiotp.sdk.device.DeviceClient(config=device_config(DEVICE2, DEVICE2_TOKEN), logHandlers=None)
    plain.connect()
    check("an unmanaged device connects", plain.isConnected())
    refused("a reboot for a connected, unmanaged device is refused (403)", reboot2)
    mgmt = app.registry.devices[f"d:{ORG}:{TYPE}:{DEVICE2}"].getMgmt()
    check("it has no management record", mgmt is None, mgmt)
    plain.disconnect()


def unmanage_checks(app, dev):
    check("unmanage is answered", waited(dev.client.unmanage()))
    held, mgmt = poll(lambda: dev.registry().getMgmt(), lambda m: m is None)
    check("the device is no longer managed", held, mgmt)
    refused("a reboot for it is refused (403)", lambda: initiate(app, "device/reboot"))


def gateway_checks(app):
    config = {
        "identity": {"orgId": ORG, "typeId": GW_TYPE, "deviceId": GATEWAY},
        "auth": {"token": GW_TOKEN},
        "options": options(),
    }
    gw = wiotp.sdk.gateway.ManagedGatewayClient(config=config, logHandlers=None)
    gw.connect()
    check("a managed gateway connects", gw.isConnected())
    reg = app.registry.devices[f"g:{ORG}:{GW_TYPE}:{GATEWAY}"]
    # The gateway client inherits the device client's manage-per-SUBACK with its own
    # defaults (lifetime 3600, no actions), which replace an explicit manage that came
    # first: manage again until the explicit one is the one stored. lifetime 0: with any
    # other, a manage from this thread starts a timer the SDK keeps no handle to.
    deadline = time.monotonic() + PATIENCE
    while True:
        answered = waited(gw.manage(0, True, False))
        mgmt = reg.getMgmt() or {}
        stored = mgmt.get("lifetime") == 0 and mgmt.get("supports", {}).get("deviceActions") is True
        if stored or time.monotonic() > deadline:
            break
    check("its manage (long form) is answered and stored (lifetime 0, device actions)", answered and stored, mgmt)
    # (ManagedGatewayClient.setLocation is broken in wiotp-sdk 1.0.1: it reads
    # self.config, which does not exist.)
    check("its error code is answered", waited(gw.setErrorCode(3)))
    codes = [reg.diagErrorCodes[i].errorCode for i in range(len(reg.diagErrorCodes))]
    check("and stored", codes == [3], codes)
    check("its clearErrorCodes is answered", waited(gw.clearErrorCodes()))
    check("and the codes are gone", len(reg.diagErrorCodes) == 0, len(reg.diagErrorCodes))
    check("its unmanage is answered", waited(gw.unmanage()))
    check("the gateway is no longer managed", reg.getMgmt() is None, reg.getMgmt())
    gw.disconnect()


def step(name, fn, *args):
    try:
        fn(*args)
    except Exception:
        check(f"{name} ran to the end", False, traceback.format_exc())


app = wiotp.sdk.application.ApplicationClient(
    config={"identity": {"appId": "dm-check"}, "auth": {"key": KEY, "token": TOKEN}, "options": options()},
    logHandlers=None,
)
dev = Device(app)
step("manage", manage_checks, dev)
step("location", location_checks, dev)
step("diagnostics", diag_checks, dev)
step("device actions", action_checks, app, dev)
step("firmware", firmware_checks, app, dev)
step("custom actions", custom_checks, app, dev)
step("offline", offline_checks, app, dev)
step("refusal", refusal_checks, app)
step("unmanage", unmanage_checks, app, dev)
step("gateway", gateway_checks, app)
check("the device's own threads raised nothing", not dev.errors, "\n".join(dev.errors))
if dev.client.manageTimer is not None:
    dev.client.manageTimer.cancel()
try:
    dev.client.disconnect()
except Exception:
    pass
passed = sum(results)
failed = len(results) - passed
print(f"{passed} passed, {failed} failed", flush=True)
# A thread the SDK left behind (its manage timer, a responder) must not keep the run alive.
os._exit(1 if failed else 0)
