"""A user's pseudonym in the append-only audit log: HMAC-SHA256(the user's sealed secret, label), 16 hex.

Why: the audit log cannot forget, so it must never hold a name or a user id.  The pseudonym is stable
for one user (their records can be followed while they are enrolled), and once ``purge`` destroys the
user's sealed secret nobody, not even the device, can link the records to the person any more.  The
provisioning CLI (``facelock policy set`` …) and the lock daemon use this one function, so a user has
the same pseudonym in every record.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

LABEL = b"facelock audit pseudonym v1"
UNKNOWN = "unknown"


#: keystore ids of users' sealed secrets start with this (the one definition; firmware.templates uses it)
USER_SECRET_PREFIX = "user:"


def user_secret_id(user_id: str) -> str:
    """The keystore id of the user's sealed secret (as firmware.templates stores it)."""
    return f"{USER_SECRET_PREFIX}{user_id}"


def audit_pseudonym(keystore: Any, user_id: str) -> str:
    """16 hex digits; ``"unknown"`` when the user's secret is not in the keystore (purged, or never enrolled)."""
    from firmware.keystore.errors import KeyNotFoundError

    try:
        secret = keystore.unseal(user_secret_id(user_id))
    except KeyNotFoundError:
        return UNKNOWN
    return hmac.new(secret, LABEL, hashlib.sha256).hexdigest()[:16]
