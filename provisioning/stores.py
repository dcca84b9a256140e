"""Adapters from the CLI to the device's stores: the keystore and the protected template store.

Kept in one module so the commands stay thin, and so that when an interface of
`firmware.keystore` / `firmware.templates` changes, one file follows it.

Keystore backend: resolved by firmware.site, as the daemon resolves it (the
``[keystore]`` table; else the TPM when this machine has one; else the file
backend).  The file keystore's optional passphrase comes from the
variable named by ``keystore.passphrase_env`` as the firmware does it (the
CLI's own passphrase protects the CA and backups, not the device keystore).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
import numpy as np

if TYPE_CHECKING:
    from provisioning.datadir import DataDir

def config_path() -> Path | None:
    """The --config of the running command (None outside a click context or when not given)."""
    ctx = click.get_current_context(silent=True)
    if ctx is None:
        return None
    return ctx.find_root().meta.get("facelock.config") or ctx.meta.get("facelock.config")


def site(dd: DataDir):
    """The lock's site (firmware.site.open_site) for this command's config and data dir: the same
    resolution the daemon makes, so the CLI and the lock always use the same keystore."""
    from firmware.config import Config
    from firmware.site import open_site
    from provisioning.options import load_config

    return open_site(load_config(config_path()) or Config(), data_dir=dd.root)


def keystore_config():
    """The site's keystore config: ``[keystore]``, else the TPM when there is one, else the file backend."""
    from firmware.config import Config
    from firmware.site import open_site
    from provisioning.options import load_config

    return open_site(load_config(config_path()) or Config()).keystore_config


def open_keystore(dd: DataDir):
    """The device keystore under DATA_DIR/keystore (created on first use)."""
    return site(dd).keystore()


# --------------------------------------------------------------------------------------- users
NAME_MAX = 128


def check_user_name(name: str) -> str:
    """Names are shown in tables and logs: printable, 1-128 characters, no surrounding spaces."""
    from provisioning.errors import ProvisioningError

    if (not isinstance(name, str) or not name or name != name.strip() or len(name) > NAME_MAX
            or any(ord(c) < 32 or ord(c) == 127 for c in name)):
        raise ProvisioningError(f"invalid user name {name!r}: use 1-{NAME_MAX} printable characters "
                                "without surrounding spaces")
    return name


@dataclass(frozen=True)
class User:
    user_id: str
    name: str
    revoked: bool
    created: str
    updated: str
    policy: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {"user_id": self.user_id, "name": self.name, "revoked": self.revoked, "created": self.created,
                "updated": self.updated, "policy": self.policy}


@dataclass(frozen=True)
class Match:
    user_id: str
    name: str
    score: float  # cosine of the probe to the user's enrolled embeddings (mean)


class Users:
    """The CLI's view of firmware.templates.TemplateStore: names or ids in, typed errors out."""

    def __init__(self, dd, store) -> None:
        self.dd = dd
        self.store = store

    @staticmethod
    def _user(rec) -> User:
        return User(rec.user_id, rec.name, rec.status != "active", rec.created, rec.updated, dict(rec.policy))

    def list(self) -> list[User]:
        return [self._user(r) for r in self.store.list(include_revoked=True)]

    def find(self, ref: str) -> User | None:
        """By user id, else by exact name."""
        users = self.list()
        for u in users:
            if u.user_id == ref:
                return u
        named = [u for u in users if u.name == ref]
        return named[0] if named else None

    def get(self, ref: str) -> User:
        from provisioning.errors import UnknownUserError

        u = self.find(ref)
        if u is None:
            raise UnknownUserError(f"no enrolled user named or with id {ref!r} (see `facelock users list`)")
        return u

    def enroll(self, name: str, embeddings: np.ndarray) -> User:
        return self.get(self.store.enroll(name, embeddings))

    def identify(self, embeddings: np.ndarray) -> Match | None:
        """An enrolled user (active or revoked) whose face this is, or None.

        "Is this face already enrolled" is asked of the fuzzy extractor, the same
        test that gates decryption: the user's biometric key regenerates from the
        new template.  The cosine score is reported for the operator.
        """
        from firmware.biokey.errors import WrongFaceError
        from firmware.vision import template_from

        probe = template_from(embeddings)
        scores = {c.user_id: float(np.max(c.embeddings @ probe)) for c in self.store.candidates()}
        for u in self.list():
            try:
                self.store.biometric_key(u.user_id, probe, allow_revoked=True)
            except WrongFaceError:
                continue
            return Match(u.user_id, u.name, scores.get(u.user_id, float("nan")))
        return None

    def rename(self, user_id: str, name: str) -> None:
        self.store.rename(user_id, name)

    def revoke(self, user_id: str) -> None:
        self.store.revoke(user_id)

    def reactivate(self, user_id: str) -> None:
        self.store.reactivate(user_id)

    def set_policy(self, user_id: str, policy: dict[str, Any]) -> None:
        self.store.set_policy(user_id, policy)

    def purge(self, user_id: str) -> list[str]:
        self.store.purge(user_id)
        return ["template", "helper data", "sealed user secret (image keys)", "policy"]

    def image_key(self, user_id: str, probe: np.ndarray) -> tuple[bytes, dict[str, Any]]:
        """The user's image key after their face regenerates their biometric key (FaceRefusedError if not)."""
        from firmware.biokey.errors import WrongFaceError
        from firmware.templates.errors import UserRevokedError
        from provisioning.errors import FaceRefusedError

        try:
            key = self.store.user_image_key(user_id, probe)
        except WrongFaceError:
            raise FaceRefusedError(f"the presented face is not that of user {user_id}: refused") from None
        except UserRevokedError:
            raise FaceRefusedError(f"user {user_id} is revoked") from None
        return key, {"key": "user-image-v1"}

    def audit_ref(self, user_id: str) -> str:
        """The user's pseudonym in the audit log: HMAC(their sealed secret, label), 16 hex digits.

        The append-only audit log cannot forget, so it never holds the user id
        itself: once `purge` destroys the sealed secret, nobody (holding the id
        from a file header, or the device) can link the records to the person.
        The lock daemon writes the same pseudonym (firmware.pseudonym).
        """
        from firmware.pseudonym import audit_pseudonym

        return audit_pseudonym(self.store.keystore, user_id)

    def rotate_keys(self) -> dict[str, str]:
        """Re-wrap every template and sealed user secret under fresh key versions; old versions destroyed.

        firmware.templates.TemplateStore.rotate_keys does the work (crash-safe at every step); image
        keys do not change, so files encrypted before the rotation still decrypt.
        """
        res = self.store.rotate_keys()
        return {
            "templates": f"{res.templates_reencrypted} template(s) re-encrypted under key version "
                         f"{res.templates_version}",
            "user_secrets": f"{res.user_secrets_resealed} sealed user secret(s) re-sealed (image keys unchanged)",
            "destroyed": f"{len(res.destroyed)} old key version(s) destroyed",
        }

    # ---- backup ------------------------------------------------------------------------------
    def export_entries(self) -> dict[str, bytes]:
        """A consistent copy of users.db (SQLite online backup), as bytes."""
        return {"users.db": self.store.serialize()}

    def import_entries(self, entries: dict[str, bytes]) -> None:
        from provisioning.atomicfile import write_atomic
        from provisioning.errors import BackupError

        raw = entries.get("users.db")
        if raw is None:
            raise BackupError("the backup bundle has no users.db")
        import sqlite3

        mem = sqlite3.connect(":memory:")
        try:
            mem.deserialize(raw)
            mem.execute("SELECT id, name, status, policy FROM users").fetchall()
        except sqlite3.DatabaseError as exc:
            raise BackupError(f"the users.db in the bundle is not a FaceLock user database ({exc})") from None
        finally:
            mem.close()
        self.store.close()
        write_atomic(self.dd.users_db, raw, 0o600)
        self.store = _open_template_store(self.dd)

    def stored_bytes_of(self, user_id: str) -> dict[str, bytes]:
        """The at-rest byte strings that belong to one user (for erasure tests and audits)."""
        from firmware.pseudonym import user_secret_id

        out = self.store.stored_ciphertexts(user_id)
        for v, blob in self.store.keystore.stored_blobs(user_secret_id(user_id)).items():
            out[f"sealed user secret v{v}"] = blob
        return out


def _open_template_store(dd: DataDir):
    from firmware.templates import TemplateStore

    return TemplateStore(dd.root, open_keystore(dd))


def users(dd: DataDir) -> Users:
    """The enrolled users of DATA_DIR (users.db, keys in DATA_DIR/keystore)."""
    return Users(dd, _open_template_store(dd))
