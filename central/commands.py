"""Remote commands from the centre (lock, unlock, lockdown, reset-tamper ...): signed with the centre's
Ed25519 key in the lock's signed-command format (provisioning.signing), and recorded in the centre's
audit before they leave, with the operator, the door, the name, the arguments and the nonce."""

from __future__ import annotations

import json
import time

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from central import audit
from central.db import Database
from central.distributor import BrokerSettings
from central.errors import CentralError
from central.keys import CentreKeys
from central.models import Device
from firmware.telemetry import topics
from firmware.telemetry.commands import COMMAND_NAMES
from firmware.telemetry.tls import client_context
from provisioning.signing import sign_command


def send_command(db: Database, keys: CentreKeys, broker: BrokerSettings, operator: str, door: str, name: str,
                 args: dict | None = None, timeout: float = 10.0) -> str:
    """Sign, audit and publish one command (QoS 1); returns its nonce.  Refused for unknown commands and
    for devices that are not active."""
    if name not in COMMAND_NAMES:
        raise CentralError(f"unknown command {name!r} (one of {', '.join(sorted(COMMAND_NAMES))})")
    payload = sign_command(keys.signing_key(), door, name, args or {})
    nonce = json.loads(payload)["nonce"]
    with db.session() as s:
        dev = s.get(Device, door)
        if dev is None or dev.status != "active":
            raise CentralError(f"{door!r} is not an active device")
        audit.record(s, operator, f"command.{name}", door, args=args or {}, nonce=nonce)
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"{broker.client_id}-cmd-{time.monotonic_ns()}",
                    protocol=mqtt.MQTTv5)
    c.tls_set_context(client_context(broker.ca_file, broker.cert_file, broker.key_file))
    try:
        c.connect(broker.host, broker.port)
    except OSError as exc:
        raise CentralError(f"broker {broker.host}:{broker.port} unreachable: {exc.__class__.__name__}") from None
    c.loop_start()
    try:
        info = c.publish(topics.command(door, name), payload, qos=1, retain=False)
        info.wait_for_publish(timeout)
        if not info.is_published():
            raise CentralError("the broker did not acknowledge the command")
    finally:
        c.disconnect()
        c.loop_stop()
    return nonce
