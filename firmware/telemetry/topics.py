"""MQTT topic names, in one place so the device, the monitor, the ACL and HA discovery agree.

    facelock/<device>/event/<type>     events (QoS 1, from the durable outbox)
    facelock/<device>/state            retained JSON state (lock, door, tamper, lockdown, last event)
    facelock/<device>/availability     retained "online"; the last will says "offline"
    facelock/<device>/cmd/<name>       signed commands to the device (never retained)
    facelock/<device>/cmd/result       command results from the device
    facelock/<device>/receipt          the monitor's end-to-end receipts (event ids it has stored)
    facelock/<device>/ha/set           Home Assistant's plain LOCK/UNLOCK (signed by the monitor's bridge)
"""

from __future__ import annotations

import re

ROOT = "facelock"
# Always used with fullmatch: `re.match` with `$` would accept a trailing newline ("door\n").
DEVICE_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")

# The service identities (certificate CN = MQTT user): a device named like one would get its rights.
MONITOR_USER = "facelock-monitor"
ADMIN_USER = "facelock-admin"
HA_USER = "facelock-ha"
BROKER_ADMIN_USER = "facelock-broker-admin"
CENTRAL_USER = "facelock-central"  # the central management service (central/broker.py names it too)
RESERVED_IDS: frozenset[str] = frozenset({MONITOR_USER, ADMIN_USER, HA_USER, BROKER_ADMIN_USER, CENTRAL_USER})


def valid_device_id(device: str) -> bool:
    """True when `device` is safe inside a topic level and as a TLS identity (no '/', '+', '#', no newline)."""
    return isinstance(device, str) and DEVICE_ID_RE.fullmatch(device) is not None


def is_reserved(device: str) -> bool:
    """True for the service identities' names (case-insensitive: a CN is compared as typed by people)."""
    return isinstance(device, str) and device.lower() in RESERVED_IDS


def event(device: str, type_: str) -> str:
    return f"{ROOT}/{device}/event/{type_}"


def state(device: str) -> str:
    return f"{ROOT}/{device}/state"


def availability(device: str) -> str:
    return f"{ROOT}/{device}/availability"


def command(device: str, name: str) -> str:
    return f"{ROOT}/{device}/cmd/{name}"


def command_filter(device: str) -> str:
    return f"{ROOT}/{device}/cmd/+"


def command_result(device: str) -> str:
    return f"{ROOT}/{device}/cmd/result"


def receipt(device: str) -> str:
    return f"{ROOT}/{device}/receipt"


def ha_set(device: str) -> str:
    return f"{ROOT}/{device}/ha/set"


def split(topic: str) -> list[str]:
    return topic.split("/")


def device_of(topic: str) -> str | None:
    """The device id a `facelock/<device>/...` topic names, or None for anything else."""
    parts = topic.split("/")
    if len(parts) >= 3 and parts[0] == ROOT and valid_device_id(parts[1]):
        return parts[1]
    return None
