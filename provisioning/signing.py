"""Management side of the signed-command format: build and sign one command for a device.

The lock only *verifies* (firmware.telemetry.commands); signing needs the management key, which never
lives on a lock, so it is not part of the device runtime.  The wire format (canonical JSON, version) is
defined once, in the verifier's module.
"""

from __future__ import annotations

import base64
import json
import secrets
import time
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from firmware.telemetry.commands import COMMAND_VERSION, canonical


def sign_command(
    key: Ed25519PrivateKey,
    device: str,
    name: str,
    args: dict[str, Any] | None = None,
    *,
    ts: float | None = None,
    nonce: str | None = None,
    grant: dict[str, Any] | None = None,
) -> bytes:
    """The signed wire payload of one command (used by the management side and by tests).

    With `grant` (provisioning.grants), `key` is the granted scoped key and the grant rides along, signed."""
    body = {
        "v": COMMAND_VERSION,
        "name": name,
        "device": device,
        "ts": time.time() if ts is None else ts,
        "nonce": nonce or secrets.token_hex(16),
        "args": dict(args or {}),
    }
    if grant is not None:
        body["grant"] = grant
    sig = key.sign(canonical(body))
    return json.dumps({**body, "sig": base64.b64encode(sig).decode()}, separators=(",", ":")).encode()
