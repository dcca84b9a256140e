"""Home Assistant MQTT discovery (pure: builds (topic, payload) pairs, publishes nothing).

Entities per device, all tied to `facelock/<device>/availability`:
  lock          state LOCKED/UNLOCKED/JAMMED/LOCKING/UNLOCKING from the retained state topic; commands
                LOCK/UNLOCK go to `facelock/<device>/ha/set` with retain=false.  The device itself never
                obeys that topic: Home Assistant cannot sign, so the monitor's HA bridge (holding the
                management key) turns LOCK/UNLOCK into signed, fresh, nonce-carrying commands.  That and
                the device refusing retained commands mean a retained UNLOCK can never open the door.
  binary_sensor door (device_class door) and tamper (device_class tamper)
  sensor        last event type
"""

from __future__ import annotations

import json

from firmware.telemetry import topics

LOCK_STATES = ("LOCKED", "UNLOCKED", "JAMMED", "LOCKING", "UNLOCKING")
DOOR_STATES = ("open", "closed", "unknown")


def _device_block(device: str) -> dict:
    return {
        "identifiers": [f"facelock_{device}"],
        "name": f"FaceLock {device}",
        "manufacturer": "FaceLock",
        "model": "FaceLock face-recognition lock",
    }


def _common(device: str, key: str) -> dict:
    return {
        "unique_id": f"facelock_{device}_{key}",
        "object_id": f"facelock_{device}_{key}",
        "availability_topic": topics.availability(device),
        "payload_available": "online",
        "payload_not_available": "offline",
        "state_topic": topics.state(device),
        "device": _device_block(device),
    }


def discovery_messages(device: str, prefix: str = "homeassistant") -> list[tuple[str, bytes]]:
    """Retained config messages for every entity of one device."""
    lock = {
        **_common(device, "lock"),
        "name": "Lock",
        "command_topic": topics.ha_set(device),
        "payload_lock": "LOCK",
        "payload_unlock": "UNLOCK",
        "retain": False,
        "optimistic": False,
        "qos": 1,
        "value_template": "{{ value_json.lock }}",
        "state_locked": "LOCKED",
        "state_unlocked": "UNLOCKED",
        "state_jammed": "JAMMED",
        "state_locking": "LOCKING",
        "state_unlocking": "UNLOCKING",
    }
    door = {
        **_common(device, "door"),
        "name": "Door",
        "device_class": "door",
        "value_template": "{{ 'ON' if value_json.door == 'open' else 'OFF' }}",
    }
    tamper = {
        **_common(device, "tamper"),
        "name": "Tamper",
        "device_class": "tamper",
        "value_template": "{{ 'ON' if value_json.tamper else 'OFF' }}",
    }
    last = {
        **_common(device, "last_event"),
        "name": "Last event",
        "icon": "mdi:shield-lock",
        "value_template": "{{ value_json.last_event }}",
    }
    entries = [("lock", "lock", lock), ("binary_sensor", "door", door), ("binary_sensor", "tamper", tamper),
               ("sensor", "last_event", last)]
    return [
        (f"{prefix}/{component}/{device}/{key}/config", json.dumps(cfg, separators=(",", ":")).encode())
        for component, key, cfg in entries
    ]
