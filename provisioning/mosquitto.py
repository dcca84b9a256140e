"""The FaceLock broker: mutual TLS, a per-identity ACL in mosquitto's dynamic-security plugin, a CRL.

The same config text is the reference for a production broker (`facelock broker config` writes it):
`require_certificate true`, `use_identity_as_username true` (the certificate CN is the MQTT user), TLS >= 1.2,
`crlfile` (certificates revoked by `facelock device revoke|renew`), and the dynamic-security plugin with
*default deny* for every action.  Why the plugin and not an `acl_file`: mosquitto's ACL file checks what a
client may *read* only when a message is delivered, never what it may *subscribe* to, so any device could
join the monitor's shared-subscription group (`$share/<group>/...`) and every event the broker handed to it
was lost to the monitor (issue 11, item 4).  The plugin checks SUBSCRIBE itself.  mosquitto 2.0's plugin has
no `%u` patterns, so every identity is a dynsec client with its own role, built from the device registry:

    device <id>          send  facelock/<id>/event/+, state, availability, cmd/result
                         and facelock/<id>/policy/ack
                         sub   facelock/<id>/cmd/+, facelock/<id>/receipt, facelock/<id>/policy
                               (nothing else: no $share, no ha/, no homeassistant/)
    facelock-monitor     sub   facelock/# and $share/+/facelock/# (the only identity that may share);
                         send  receipts, cmd/lock|unlock (scoped HA bridge commands), homeassistant/#
    facelock-admin       send  facelock/+/cmd/+;  sub cmd/result, state, homeassistant/#
    facelock-ha          send  facelock/+/ha/set (the only identity that may);  sub homeassistant/#, state,
                               availability
    facelock-central     sub   facelock/# and $share/+/facelock/#; send receipts, facelock/+/policy, cmd/#,
                               homeassistant/#
    facelock-broker-admin  the plugin's own control topic ($CONTROL/dynamic-security/#): adds and deletes
                         device clients on a running broker (`DynsecAdmin`)

An identity the plugin does not know gets nothing (all checks deny), so a certificate the CA signed is not
enough: the device must also be in the registry.
"""

from __future__ import annotations

import json
import os
import pwd
import signal
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from firmware.errors import FaceLockError
from firmware.telemetry import topics
from provisioning.pki import ClientFiles, LoopbackPki, write_loopback_pki

MONITOR_USER = topics.MONITOR_USER
ADMIN_USER = topics.ADMIN_USER
HA_USER = topics.HA_USER
BROKER_ADMIN_USER = topics.BROKER_ADMIN_USER
CENTRAL_USER = topics.CENTRAL_USER
SERVICE_USERS = (MONITOR_USER, ADMIN_USER, HA_USER, BROKER_ADMIN_USER, CENTRAL_USER)
DYNSEC_PLUGIN_CANDIDATES = (
    "/usr/lib/x86_64-linux-gnu/mosquitto_dynamic_security.so",
    "/usr/lib/aarch64-linux-gnu/mosquitto_dynamic_security.so",
    "/usr/lib/arm-linux-gnueabihf/mosquitto_dynamic_security.so",
    "/usr/lib/mosquitto_dynamic_security.so",
    "/usr/local/lib/mosquitto_dynamic_security.so",
)
CONTROL_TOPIC = "$CONTROL/dynamic-security/v1"


class BrokerError(FaceLockError):
    """mosquitto could not be started, or its dynamic-security plugin refused a change."""


def dynsec_plugin_path() -> str:
    """The dynamic-security plugin shipped with Debian's mosquitto (or $FACELOCK_DYNSEC_PLUGIN)."""
    env = os.environ.get("FACELOCK_DYNSEC_PLUGIN")
    for cand in ((env,) if env else ()) + DYNSEC_PLUGIN_CANDIDATES:
        if cand and Path(cand).is_file():
            return cand
    raise BrokerError("mosquitto's dynamic-security plugin (mosquitto_dynamic_security.so) is not installed; "
                      "Debian's `mosquitto` package ships it (set $FACELOCK_DYNSEC_PLUGIN if it lives elsewhere)")


def _acl(acltype: str, topic: str, allow: bool = True) -> dict[str, Any]:
    return {"acltype": acltype, "topic": topic, "priority": 0, "allow": allow}


def _sub(topic: str) -> list[dict[str, Any]]:
    """Subscribe to `topic` and receive what it delivers."""
    return [_acl("subscribePattern", topic), _acl("publishClientReceive", _strip_share(topic))]


def _strip_share(topic: str) -> str:
    parts = topic.split("/")
    return "/".join(parts[2:]) if parts[0] == "$share" else topic


def device_acls(device: str) -> list[dict[str, Any]]:
    """What one lock may do: publish its own events, state, availability and command results; hear its own
    commands and receipts.  Nothing under ha/ or homeassistant/, no shared subscription, no other device."""
    if not topics.valid_device_id(device) or topics.is_reserved(device):
        raise BrokerError(f"invalid device id {device!r}")
    root = topics.ROOT
    send = [topics.event(device, "+"), topics.state(device), topics.availability(device),
            topics.command_result(device), f"{root}/{device}/policy/ack"]
    return ([_acl("publishClientSend", t) for t in send]
            + _sub(topics.command_filter(device)) + _sub(topics.receipt(device))
            + _sub(f"{root}/{device}/policy"))  # the centre's signed bundle for this door (firmware/fleet)


def service_acls(user: str) -> list[dict[str, Any]]:
    root = topics.ROOT
    if user == MONITOR_USER:
        # Reads everything under facelock/ (shared or not) and the discovery it publishes.
        return (_sub(f"$share/+/{root}/#") + _sub(f"{root}/#") + _sub("homeassistant/#")
                + [_acl("publishClientSend", f"{root}/+/receipt"), _acl("publishClientSend", f"{root}/+/cmd/lock"),
                   _acl("publishClientSend", f"{root}/+/cmd/unlock"), _acl("publishClientSend", "homeassistant/#")])
    if user == ADMIN_USER:
        return ([_acl("publishClientSend", f"{root}/+/cmd/+")] + _sub(f"{root}/+/cmd/result")
                + _sub(f"{root}/+/state") + _sub("homeassistant/#"))
    if user == HA_USER:
        return ([_acl("publishClientSend", f"{root}/+/ha/set")] + _sub("homeassistant/#") + _sub(f"{root}/+/state")
                + _sub(f"{root}/+/availability"))
    if user == CENTRAL_USER:
        # The central management service (central/): reads the fleet, writes receipts, bundles, commands.
        return (_sub(f"$share/+/{root}/#") + _sub(f"{root}/#")
                + [_acl("publishClientSend", f"{root}/+/receipt"), _acl("publishClientSend", f"{root}/+/policy"),
                   _acl("publishClientSend", f"{root}/+/cmd/#"),
                   # it runs the monitor's ingest, which publishes HA discovery
                   _acl("publishClientSend", "homeassistant/#")])
    if user == BROKER_ADMIN_USER:
        return [_acl("publishClientSend", "$CONTROL/dynamic-security/#")] + _sub("$CONTROL/dynamic-security/#")
    raise BrokerError(f"unknown service identity {user!r}")


def _role(user: str) -> str:
    return f"facelock-service:{user}" if user in SERVICE_USERS else f"facelock-device:{user}"


def dynsec_config(devices: Iterable[str], services: Iterable[str] = SERVICE_USERS) -> dict[str, Any]:
    """The plugin's JSON config: default deny everywhere, one client and one role per identity."""
    clients, roles = [], []
    for user in list(services):
        roles.append({"rolename": _role(user), "acls": service_acls(user)})
        clients.append({"username": user, "roles": [{"rolename": _role(user)}]})
    for device in sorted(set(devices)):
        roles.append({"rolename": _role(device), "acls": device_acls(device)})
        clients.append({"username": device, "roles": [{"rolename": _role(device)}]})
    return {
        "defaultACLAccess": {"publishClientSend": False, "publishClientReceive": False, "subscribe": False,
                             "unsubscribe": True},
        "clients": clients,
        "groups": [],
        "roles": roles,
    }


def write_dynsec_config(path: str | Path, devices: Iterable[str]) -> None:
    from firmware import fsutil

    # 0600: the plugin rewrites it on every change; mosquitto (dropped to its own user) must own it.
    fsutil.atomic_write(path, json.dumps(dynsec_config(devices), indent=1).encode(), 0o600, make_parents=True)


def mosquitto_conf(port: int, pki: LoopbackPki, dynsec_file: Path, log_file: Path, user: str,
                   crl_file: Path | None = None, host: str = "127.0.0.1") -> str:
    crl = f"crlfile {crl_file}\n" if crl_file else ""
    return f"""# FaceLock broker (generated)
user {user}
per_listener_settings false
persistence false
log_dest file {log_file}
log_type error
log_type warning
log_type notice
log_type information
connection_messages true
allow_anonymous false
# Default deny; one client + role per identity (devices from the registry); checks SUBSCRIBE too.
plugin {dynsec_plugin_path()}
plugin_opt_config_file {dynsec_file}
# QoS 1 messages for a slow subscriber are queued, never dropped; in flight to each client: 200.
max_queued_messages 0
max_inflight_messages 200
listener {port} {host}
cafile {pki.ca}
certfile {pki.server_cert}
keyfile {pki.server_key}
{crl}require_certificate true
use_identity_as_username true
tls_version tlsv1.2
"""


class DynsecAdmin:
    """Changes the plugin's clients on a running broker through its control topic (as facelock-broker-admin).

    `add_device` makes a device's client and role; `remove_device` deletes them, which also disconnects a
    session that is up (what a CRL alone cannot do: mosquitto checks the CRL only at the handshake)."""

    def __init__(self, host: str, port: int, ca_file: str | Path, cert_file: str | Path, key_file: str | Path,
                 timeout: float = 10.0) -> None:
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        from firmware.telemetry.tls import client_context

        self.timeout = timeout
        self._responses: list[dict] = []
        self._cv = threading.Condition()
        self._ready = threading.Event()
        self._client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"{BROKER_ADMIN_USER}-{os.getpid()}-"
                                   f"{time.monotonic_ns()}", protocol=mqtt.MQTTv5)
        self._client.tls_set_context(client_context(str(ca_file), str(cert_file), str(key_file)))

        def on_connect(c, u, f, rc, p):
            if not rc.is_failure:
                c.subscribe(CONTROL_TOPIC + "/response", qos=1)

        def on_subscribe(c, u, mid, rcs, p):
            self._ready.set()

        def on_message(c, u, msg):
            try:
                doc = json.loads(msg.payload)
            except ValueError:
                return
            with self._cv:
                self._responses.extend(doc.get("responses", []) if isinstance(doc, dict) else [])
                self._cv.notify_all()

        self._client.on_connect = on_connect
        self._client.on_subscribe = on_subscribe
        self._client.on_message = on_message
        try:
            self._client.connect(host, port)
        except (OSError, ssl.SSLError) as exc:
            raise BrokerError(f"cannot reach the broker at {host}:{port}: {exc.__class__.__name__}") from None
        self._client.loop_start()
        if not self._ready.wait(timeout):
            self.close()
            raise BrokerError("the broker did not accept facelock-broker-admin on its control topic")

    def run(self, commands: list[dict[str, Any]], ok_errors: tuple[str, ...] = ()) -> list[dict]:
        with self._cv:
            start = len(self._responses)
        info = self._client.publish(CONTROL_TOPIC, json.dumps({"commands": commands}), qos=1)
        info.wait_for_publish(self.timeout)
        deadline = time.monotonic() + self.timeout
        with self._cv:
            while len(self._responses) - start < len(commands):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise BrokerError("no answer from the dynamic-security plugin")
                self._cv.wait(left)
            got = self._responses[start:start + len(commands)]
        for r in got:
            err = r.get("error")
            if err and not any(e in err for e in ok_errors):
                raise BrokerError(f"dynamic-security {r.get('command')}: {err}")
        return got

    def add_device(self, device: str) -> None:
        role = _role(device)
        cmds: list[dict[str, Any]] = [{"command": "createRole", "rolename": role}]
        cmds += [{"command": "addRoleACL", "rolename": role, **a} for a in device_acls(device)]
        cmds += [{"command": "createClient", "username": device},
                 {"command": "addClientRole", "username": device, "rolename": role, "priority": 0}]
        self.run(cmds, ok_errors=("already exists", "Role already in client"))

    def remove_device(self, device: str) -> None:
        self.run([{"command": "deleteClient", "username": device},
                  {"command": "deleteRole", "rolename": _role(device)}], ok_errors=("not found",))

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RegisteringPki:
    """A LoopbackPki whose `client(identity)` also registers the identity with the broker's plugin, so the
    many tests and benchmarks that mint a device certificate on the fly get a device the broker knows."""

    def __init__(self, pki: LoopbackPki, broker: LocalBroker) -> None:
        self._pki = pki
        self._broker = broker

    def __getattr__(self, name: str) -> Any:
        return getattr(self._pki, name)

    def client(self, identity: str, register: bool = True) -> ClientFiles:
        files = self._pki.client(identity)
        if register:
            self._broker.register(identity)
        return files


class LocalBroker:
    """A mosquitto process on 127.0.0.1:<ephemeral port>; `kill()` is SIGKILL, `start()` restarts it.

    `pki.client(name)` issues a certificate and registers `name` (a device unless it is a service identity)
    with the dynamic-security plugin; `devices` pre-registers ids; `crl_file` makes the broker load a CRL."""

    def __init__(self, directory: str | Path, pki: LoopbackPki | None = None, port: int | None = None,
                 devices: Iterable[str] = (), crl_file: str | Path | None = None) -> None:
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.raw_pki = pki or write_loopback_pki(self.dir / "pki")
        self.pki = RegisteringPki(self.raw_pki, self)
        self.port = port or free_port()
        self.host = "127.0.0.1"
        self.log_file = self.dir / "mosquitto.log"
        self.dynsec_file = self.dir / "dynamic-security.json"
        self.conf_file = self.dir / "mosquitto.conf"
        self.crl_file = Path(crl_file) if crl_file else None
        self.devices: set[str] = set(devices)
        self._reg_lock = threading.Lock()
        write_dynsec_config(self.dynsec_file, self.devices)
        # Run as the current user: mosquitto started as root would otherwise drop to `mosquitto`, which
        # cannot read our 0600 keys.
        user = pwd.getpwuid(os.geteuid()).pw_name
        self.conf_file.write_text(mosquitto_conf(self.port, self.raw_pki, self.dynsec_file, self.log_file, user,
                                                 self.crl_file))
        self.proc: subprocess.Popen | None = None
        self.starts = 0

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def register(self, identity: str) -> None:
        """Make `identity` known to the plugin (devices get their own-topics role); idempotent."""
        if identity in SERVICE_USERS:
            return
        with self._reg_lock:
            if identity in self.devices:
                return
            if self.running():
                with self.admin() as admin:
                    admin.add_device(identity)
            else:
                self.devices.add(identity)
                write_dynsec_config(self.dynsec_file, self.devices)
                return
            self.devices.add(identity)

    def unregister(self, identity: str) -> None:
        """Delete a device from the running plugin (its session, if up, is disconnected at once)."""
        with self._reg_lock, self.admin() as admin:
            admin.remove_device(identity)
            self.devices.discard(identity)

    def admin(self) -> _AdminContext:
        files = self.raw_pki.client(BROKER_ADMIN_USER)
        return _AdminContext(self.host, self.port, self.raw_pki.ca, files.cert, files.key)

    def start(self, timeout: float = 10.0) -> None:
        if self.proc is not None and self.proc.poll() is None:
            return
        self.proc = subprocess.Popen(["mosquitto", "-c", str(self.conf_file)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode(errors="replace") if self.proc.stderr else ""
                raise BrokerError(f"mosquitto exited with {self.proc.returncode}: {err[-500:]} "
                                  f"{self.log_tail()}")
            try:
                with socket.create_connection((self.host, self.port), timeout=0.2):
                    self.starts += 1
                    return
            except OSError:
                time.sleep(0.02)
        self.stop()
        raise BrokerError(f"mosquitto did not listen on {self.host}:{self.port} within {timeout}s")

    def kill(self) -> None:
        """SIGKILL: no clean shutdown, no will cleanup, in-memory state lost."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if self.proc is not None and self.proc.stderr:
            self.proc.stderr.close()
        self.proc = None

    def log_tail(self, n: int = 4000) -> str:
        try:
            return self.log_file.read_text(errors="replace")[-n:]
        except OSError:
            return ""

    def __enter__(self) -> LocalBroker:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class _AdminContext:
    def __init__(self, host: str, port: int, ca: Path, cert: Path, key: Path) -> None:
        self.args = (host, port, ca, cert, key)
        self.admin: DynsecAdmin | None = None

    def __enter__(self) -> DynsecAdmin:
        self.admin = DynsecAdmin(*self.args)
        return self.admin

    def __exit__(self, *exc: object) -> None:
        if self.admin is not None:
            self.admin.close()
