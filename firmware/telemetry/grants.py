"""Scoped signing keys: a grant, signed by the management key, that lets another key sign a few commands.

Why: the Home Assistant bridge runs unattended on the monitor and must sign LOCK/UNLOCK.  Giving it the
management key (which also signs revoke-user, enroll-mode, lockdown... for every door) would turn a
compromise of the monitor, or a bridge bug, into every door.  Instead the operator signs, once and offline,
a grant naming the bridge's own Ed25519 public key, the devices and, per device, the commands it may sign
(never more than lock and unlock, whatever the grant says) until an expiry.  The bridge attaches the grant to
each command it signs; the device checks the grant with the management public key it already trusts, then
the command with the granted key, and refuses anything outside the grant.

Grant (version 1), JSON:

    {"body": {"v": 1, "kind": "facelock-grant", "id": "<hex>", "key": "<base64 raw Ed25519 public key>",
              "devices": {"door-1": ["lock", "unlock"], "shed": ["lock"]}, "not_after": 1700000000},
     "sig": "<base64 Ed25519 signature by the management key over the canonical JSON of body>"}
"""

from __future__ import annotations

import base64
import binascii
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from firmware.telemetry.errors import CommandRejected

GRANT_VERSION = 1
GRANT_KIND = "facelock-grant"
# The most a scoped key can ever sign, whatever a grant lists: a door can be locked or opened, nothing else.
SCOPED_COMMANDS = frozenset({"lock", "unlock"})
# A command carrying its grant must fit MAX_COMMAND_BYTES (4 KiB): about a hundred devices per grant.
MAX_GRANT_DEVICES = 100


def canonical_body(d: Mapping[str, Any]) -> bytes:
    return json.dumps(d, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False).encode()


def raw_public(pub: Ed25519PublicKey) -> bytes:
    return pub.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


@dataclass(frozen=True)
class Grant:
    id: str
    key: Ed25519PublicKey
    devices: Mapping[str, frozenset[str]]
    not_after: float

    def allows(self, device: str, name: str) -> bool:
        return name in SCOPED_COMMANDS and name in self.devices.get(device, frozenset())


def verify_grant(grant: object, management_pub: Ed25519PublicKey, now: float | None = None) -> Grant:
    """The checked grant, or CommandRejected("bad_grant" / "grant_expired")."""
    if not isinstance(grant, dict) or set(grant) != {"body", "sig"} or not isinstance(grant["body"], dict):
        raise CommandRejected("bad_grant", "grant must be {body, sig}")
    body, sig_text = grant["body"], grant["sig"]
    if set(body) != {"v", "kind", "id", "key", "devices", "not_after"} or body.get("v") != GRANT_VERSION \
            or body.get("kind") != GRANT_KIND:
        raise CommandRejected("bad_grant", "unknown grant format")
    try:
        sig = base64.b64decode(sig_text, validate=True) if isinstance(sig_text, str) else b""
        management_pub.verify(sig, canonical_body(body))
    except (InvalidSignature, binascii.Error, ValueError, TypeError):
        raise CommandRejected("bad_grant", "grant not signed by the management key") from None
    # Signed by the management key: the contents are trusted, but still type-checked.
    devices, not_after, key_text = body["devices"], body["not_after"], body["key"]
    if not isinstance(devices, dict) or len(devices) > MAX_GRANT_DEVICES or not isinstance(not_after, int | float) \
            or isinstance(not_after, bool) or not isinstance(key_text, str):
        raise CommandRejected("bad_grant", "malformed grant")
    try:
        key = Ed25519PublicKey.from_public_bytes(base64.b64decode(key_text, validate=True))
    except (binascii.Error, ValueError):
        raise CommandRejected("bad_grant", "grant key is not an Ed25519 public key") from None
    if (time.time() if now is None else now) > not_after:
        raise CommandRejected("grant_expired", "the grant has expired")
    scoped = {d: frozenset(n for n in names if isinstance(n, str)) & SCOPED_COMMANDS
              for d, names in devices.items() if isinstance(d, str) and isinstance(names, list)}
    return Grant(str(body["id"]), key, scoped, float(not_after))


def granted_signer(grant: object, management_pub: Ed25519PublicKey, device: str, name: str, now: float
                   ) -> Ed25519PublicKey:
    """The key that must have signed `name` for `device` under `grant` (the device's check)."""
    g = verify_grant(grant, management_pub, now)
    if not g.allows(device, name):
        raise CommandRejected("out_of_scope", f"the grant does not allow {name!r} on this device")
    return g.key


def load_grant(path: str) -> dict[str, Any]:
    from firmware.telemetry.errors import TelemetryError

    try:
        with open(path, "rb") as f:
            doc = json.loads(f.read(1 << 20))
    except (OSError, ValueError) as exc:
        raise TelemetryError(f"cannot read grant {path}: {exc.__class__.__name__}") from None
    if not isinstance(doc, dict):
        raise TelemetryError(f"{path} is not a grant")
    return doc
