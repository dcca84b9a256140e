"""MQTT topics between the centre and a door (beside firmware.telemetry.topics, same root).

    facelock/<door>/policy        centre -> door, retained, QoS 1: the latest signed bundle
    facelock/<door>/policy/ack    door -> centre, QoS 1: {"v", "door", "version", "status", "reason"}

The ack is authenticated by the transport: the broker maps the door's certificate CN to the MQTT user and
its ACL lets a door publish only under its own id; the centre also checks that the payload names the
topic's door.  The bundle is authenticated by the centre's Ed25519 signature.
"""

from __future__ import annotations

from firmware.telemetry.topics import ROOT


def policy(door: str) -> str:
    return f"{ROOT}/{door}/policy"


def policy_ack(door: str) -> str:
    return f"{ROOT}/{door}/policy/ack"


POLICY_ACK_FILTER = f"{ROOT}/+/policy/ack"


def door_of_ack(topic: str) -> str | None:
    parts = topic.split("/")
    if len(parts) == 4 and parts[0] == ROOT and parts[2:] == ["policy", "ack"]:
        return parts[1]
    return None
