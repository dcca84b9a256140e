"""Management side of scoped grants (firmware/telemetry/grants.py verifies them on the device).

`make_grant` needs the management key, which never lives on a lock nor on the monitor: `facelock ha grant`
unlocks it with the CA passphrase, signs the grant and forgets it.
"""

from __future__ import annotations

import base64
import secrets
from collections.abc import Mapping
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from firmware.telemetry.grants import (
    GRANT_KIND,
    GRANT_VERSION,
    MAX_GRANT_DEVICES,
    SCOPED_COMMANDS,
    canonical_body,
    raw_public,
)
from firmware.telemetry.topics import is_reserved, valid_device_id


def make_grant(management_key: Ed25519PrivateKey, scoped: Ed25519PublicKey, devices: Mapping[str, list[str]],
               not_after: float) -> dict[str, Any]:
    """A signed grant (the management side: `facelock ha grant`)."""
    if not devices or len(devices) > MAX_GRANT_DEVICES:
        raise ValueError(f"a grant names 1..{MAX_GRANT_DEVICES} devices")
    for device, names in devices.items():
        if not valid_device_id(device) or is_reserved(device):
            raise ValueError(f"not a device id: {device!r}")
        if not names or not set(names) <= SCOPED_COMMANDS:
            raise ValueError(f"{device}: a grant may name only {sorted(SCOPED_COMMANDS)}")
    body = {"v": GRANT_VERSION, "kind": GRANT_KIND, "id": secrets.token_hex(8),
            "key": base64.b64encode(raw_public(scoped)).decode(),
            "devices": {d: sorted(set(n)) for d, n in sorted(devices.items())}, "not_after": float(not_after)}
    return {"body": body, "sig": base64.b64encode(management_key.sign(canonical_body(body))).decode()}
