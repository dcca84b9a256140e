"""Remote commands from the centre (lock, unlock, lockdown, reset-tamper ...): signed with the centre's
Ed25519 key in the lock's signed-command format (provisioning.signing), and recorded in the centre's
audit before they leave, with the operator, the door, the name, the arguments and the nonce, and then
their outcome (sent, broker unreachable, not acknowledged)."""

from __future__ import annotations

import json
import logging
import time

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from central import audit
from central.db import Database
from central.distributor import BrokerSettings
from central.errors import CentralError, DatabaseUnavailable
from central.keys import CentreKeys
from central.models import Device
from firmware.telemetry import topics
from firmware.telemetry.commands import COMMAND_NAMES
from firmware.telemetry.tls import client_context
from provisioning.signing import sign_command

log = logging.getLogger("facelock.central.commands")


def send_command(db: Database, keys: CentreKeys, broker: BrokerSettings, operator: str, door: str, name: str,
                 args: dict | None = None, timeout: float = 10.0) -> str:
    """Sign, audit and publish one command (QoS 1); returns its nonce.  Refused for unknown commands and
    for devices that are not active.

    Two audit entries: `command.<name>` is written before anything leaves (so no command reaches a door
    unrecorded, whatever happens next), then `command.<name>.result` says what became of it: `sent` (the
    broker acknowledged it), `broker unreachable` or `not acknowledged` (then CentralError is raised too)."""
    if name not in COMMAND_NAMES:
        raise CentralError(f"unknown command {name!r} (one of {', '.join(sorted(COMMAND_NAMES))})")
    payload = sign_command(keys.signing_key(), door, name, args or {})
    nonce = json.loads(payload)["nonce"]
    with db.session() as s:
        dev = s.get(Device, door)
        if dev is None or dev.status != "active":
            raise CentralError(f"{door!r} is not an active device")
        audit.record(s, operator, f"command.{name}", door, args=args or {}, nonce=nonce)
    failure = _publish(broker, topics.command(door, name), payload, timeout)
    try:
        with db.session() as s:
            audit.record(s, operator, f"command.{name}.result", door, nonce=nonce, outcome=failure or "sent")
    except DatabaseUnavailable:
        # The attempt is in the audit already; only its outcome could not be added.
        log.warning("the outcome of command %s to %s (%s) could not be audited: database unavailable",
                    name, door, failure or "sent")
    if failure == "broker unreachable":
        raise CentralError(f"broker {broker.host}:{broker.port} unreachable")
    if failure:
        raise CentralError("the broker did not acknowledge the command")
    return nonce


def _publish(broker: BrokerSettings, topic: str, payload: bytes, timeout: float) -> str | None:
    """Publish at QoS 1 on a short connection; None once the broker acknowledged, else what went wrong."""
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"{broker.client_id}-cmd-{time.monotonic_ns()}",
                    protocol=mqtt.MQTTv5)
    c.tls_set_context(client_context(broker.ca_file, broker.cert_file, broker.key_file))
    try:
        c.connect(broker.host, broker.port)
    except OSError:  # refused, unreachable, TLS handshake refused (ssl.SSLError is an OSError)
        return "broker unreachable"
    c.loop_start()
    try:
        info = c.publish(topic, payload, qos=1, retain=False)
        info.wait_for_publish(timeout)
        return None if info.is_published() else "not acknowledged"
    except (RuntimeError, ValueError):  # paho: the connection went away before the publish left
        return "not acknowledged"
    finally:
        c.disconnect()
        c.loop_stop()
