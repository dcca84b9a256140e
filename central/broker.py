"""What the broker must allow for the centre, on top of the fleet's dynamic-security config
(provisioning.mosquitto: default deny, one client and one role per identity).

    facelock-central   in: events and availability (shared subscriptions, several workers), bundle acks;
                       out: receipts, bundles (facelock/+/policy), signed commands (facelock/+/cmd/+)
    each door          its own bundle topic (subscribe) and its own ack topic (publish), added to its role

`fleet_broker()` builds a test/bench broker whose CA is the centre's, with its CRL; `register_door()`
adds an onboarded door to a broker (running or not).  A production broker gets the same grants from
these functions (`central_acls`, `door_acls`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from firmware import fsutil
from firmware.fleet import topics as fleet_topics
from firmware.telemetry import topics
from provisioning.mosquitto import LocalBroker
from provisioning.mosquitto import _role as device_role  # the plugin's role name for an identity

CENTRAL_USER = "facelock-central"
CENTRAL_ROLE = f"facelock-service:{CENTRAL_USER}"


def _acl(acltype: str, topic: str) -> dict[str, Any]:
    return {"acltype": acltype, "topic": topic, "priority": 0, "allow": True}


def _sub(topic: str) -> list[dict[str, Any]]:
    parts = topic.split("/")
    plain = "/".join(parts[2:]) if parts[0] == "$share" else topic
    return [_acl("subscribePattern", topic), _acl("publishClientReceive", plain)]


def central_acls() -> list[dict[str, Any]]:
    root = topics.ROOT
    return (_sub(f"$share/+/{root}/+/event/#") + _sub(f"$share/+/{root}/+/availability")
            + _sub(f"$share/+/{fleet_topics.POLICY_ACK_FILTER}") + _sub(f"{root}/+/event/#")
            + [_acl("publishClientSend", f"{root}/+/receipt"), _acl("publishClientSend", f"{root}/+/policy"),
               _acl("publishClientSend", f"{root}/+/cmd/+")])


def door_acls(device: str) -> list[dict[str, Any]]:
    return [_acl("publishClientSend", fleet_topics.policy_ack(device))] + _sub(fleet_topics.policy(device))


def _patch(dynsec_file: Path, doors: list[str]) -> None:
    cfg = json.loads(dynsec_file.read_text())
    roles = {r["rolename"]: r for r in cfg["roles"]}
    if CENTRAL_ROLE not in roles:
        cfg["roles"].append({"rolename": CENTRAL_ROLE, "acls": central_acls()})
        cfg["clients"].append({"username": CENTRAL_USER, "roles": [{"rolename": CENTRAL_ROLE}]})
    for d in doors:
        role = roles.get(device_role(d))
        if role is not None and not any(a["topic"] == fleet_topics.policy(d) for a in role["acls"]):
            role["acls"] += door_acls(d)
    fsutil.atomic_write(dynsec_file, json.dumps(cfg, indent=1).encode(), 0o600)


def fleet_broker(directory: str | Path, keys, doors: list[str] | tuple[str, ...] = ()) -> LocalBroker:
    """A broker (not started) trusting the centre's CA, checking its CRL, knowing the centre and `doors`."""
    d = Path(directory)
    b = LocalBroker(d, pki=keys.loopback_pki(d / "pki"), devices=doors, crl_file=keys.crl_path)
    _patch(b.dynsec_file, list(doors))
    return b


def register_door(broker: LocalBroker, device: str) -> None:
    """Make an onboarded door known to the broker, with its fleet topics (idempotent)."""
    broker.register(device)
    if broker.running():
        with broker.admin() as admin:
            admin.run([{"command": "addRoleACL", "rolename": device_role(device), **a} for a in door_acls(device)],
                      ok_errors=("already exists", "ACL with this topic already exists"))
    else:
        _patch(broker.dynsec_file, [device])


def central_files(broker: LocalBroker):
    """The centre's client certificate on this broker (not registered as a device)."""
    return broker.raw_pki.client(CENTRAL_USER)
