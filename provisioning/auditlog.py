"""Provisioning actions into the device's hash-chained audit log (firmware.audit, DATA_DIR/audit.db).

Records carry what happened and the user's audit pseudonym (`Users.audit_ref`:
an HMAC under the user's own sealed secret), never a user's name, id, face image
or embedding: the log is append-only, so anything put in it could not be erased
by `users purge`, and the pseudonym becomes unlinkable once the secret is gone.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from provisioning.datadir import DataDir

FORBIDDEN_KEYS = {"name", "user_id", "embedding", "image", "template"}


def record(dd: DataDir, kind: str, **data: Any) -> None:
    from firmware.audit import AuditLog, chain_key
    from provisioning import stores

    assert not FORBIDDEN_KEYS & set(data), "personal data must not enter the append-only audit log"
    # keyed like the daemon's records (HMAC under the keystore's audit-chain key), so the chain stays whole
    with AuditLog(dd.audit_db, key=chain_key(dd.root, stores.keystore_config())) as log:
        log.append(f"provisioning.{kind}", **data)


def refusal_kind(operation: str, exc: Exception) -> str:
    """"spoof_suspected" for a liveness failure (its own event type), else "<operation>_refused"."""
    from provisioning.errors import LivenessFailedError

    return "spoof_suspected" if isinstance(exc, LivenessFailedError) else f"{operation}_refused"
