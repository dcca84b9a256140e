"""The enrolled-user store: ``<data_dir>/users.db`` (SQLite) with protected templates.

Per user: id, name, status (active | revoked), created/updated, an opaque
JSON ``policy`` (schedules; filled by the lock/provisioning side), and

* the embeddings, AEAD-encrypted (ChaCha20-Poly1305) under the keystore key
  ``templates`` -- the matcher needs them in the clear, so only the device's
  keystore can open them;
* the fuzzy-extractor helper data, encrypted the same way (it leaks the
  template's axis if public, see firmware/biokey/extractor.py);
* a per-user secret sealed in the keystore as ``user:<id>``.

The user's image key is HKDF(user secret || biometric key): it needs both
the device (keystore) and the user's live face (fuzzy extractor).  ``purge``
deletes the row, VACUUMs with secure_delete on so the pages are overwritten,
and deletes the sealed secret, so images sealed under that user's key become
undecryptable for good.

``rotate_keys`` moves everything to fresh key versions and destroys the old
ones without changing any user's image key (see its docstring for why, and
for why a crash at any step leaves every user working).

No raw embedding, image or unwrapped key is ever written: the only byte
streams that reach the disk are AEAD ciphertexts, names, ids, policies and
timestamps.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import sqlite3
import struct
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from firmware import boundedjson
from firmware.biokey import extractor
from firmware.biokey.errors import HelperDataError, InvalidEmbeddingError
from firmware.keystore.base import Keystore
from firmware.keystore.errors import KeyNotFoundError
from firmware.pseudonym import USER_SECRET_PREFIX, user_secret_id
from firmware.templates.errors import (
    FleetUserConflictError,
    InvalidNameError,
    InvalidPolicyError,
    TemplateStoreCorruptError,
    UserNotFoundError,
    UserRevokedError,
)

DB_NAME = "users.db"
SCHEMA_VERSION = 1
TEMPLATES_KEY_ID = "templates"
_NONCE = 12
_MAX_POLICY_BYTES = 64 * 1024
_NAME = re.compile(r"^[^\x00-\x1f\x7f]{1,128}$")
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS users (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('active', 'revoked')),
    created TEXT NOT NULL,
    updated TEXT NOT NULL,
    templates_key_version INTEGER NOT NULL,
    template BLOB NOT NULL,
    helper BLOB NOT NULL,
    policy TEXT NOT NULL DEFAULT '{}'
);
-- the change generation the lock loop polls (firmware.site.StoredUsers): every write to users bumps it
INSERT OR IGNORE INTO meta VALUES ('generation', '0');
CREATE TRIGGER IF NOT EXISTS users_generation_insert AFTER INSERT ON users BEGIN
    UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'generation'; END;
CREATE TRIGGER IF NOT EXISTS users_generation_update AFTER UPDATE ON users BEGIN
    UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'generation'; END;
CREATE TRIGGER IF NOT EXISTS users_generation_delete AFTER DELETE ON users BEGIN
    UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'generation'; END;
"""


@dataclass(frozen=True)
class UserRecord:
    """What the store tells about a user without decrypting anything."""

    user_id: str
    name: str
    status: str
    created: str
    updated: str
    policy: dict[str, Any]


@dataclass(frozen=True)
class Candidate:
    """An active user's decrypted embeddings, for the matcher (memory only)."""

    user_id: str
    name: str
    embeddings: np.ndarray = field(repr=False)  # (k, d) float32, L2-normalised; never in a log line


@dataclass(frozen=True)
class FleetPerson:
    """One person of the centre's bundle as the lock keeps them (firmware.fleet.lockhook)."""

    user_id: str
    embeddings: np.ndarray = field(repr=False)  # (k, d); never in a log line
    schedule: list[dict[str, Any]] | None = None  # windows as stored ({days, start, end}); None = any time


@dataclass(frozen=True)
class FleetSync:
    """What ``sync_fleet`` changed (ids and counts only)."""

    version: int
    added: int
    updated: int
    removed: int
    unchanged: int


#: users.db meta keys of the fleet: the centre's people on this lock, the bundle version they come from and
#: the lockdown that bundle carried (firmware.fleet.lockhook reads them back after a restart)
FLEET_PEOPLE, FLEET_VERSION, FLEET_LOCKDOWN = "fleet_people", "fleet_version", "fleet_lockdown"


@dataclass(frozen=True)
class RotationResult:
    """What ``rotate_keys`` did (ids and counts only, never key material)."""

    templates_version: int
    templates_reencrypted: int
    user_secrets_resealed: int
    destroyed: tuple[tuple[str, int], ...]  # (key id, version) of the old versions destroyed


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _check_name(name: str) -> str:
    if not isinstance(name, str) or not _NAME.match(name.strip()) or name != name.strip():
        raise InvalidNameError("a user name must be 1-128 printable characters without surrounding spaces")
    return name


def _pack_embeddings(embs: np.ndarray) -> bytes:
    return struct.pack(">HH", *embs.shape) + embs.astype("<f4").tobytes()


def _unpack_embeddings(raw: bytes) -> np.ndarray:
    k, d = struct.unpack_from(">HH", raw)
    return np.frombuffer(raw, "<f4", count=k * d, offset=4).reshape(k, d).astype(np.float32)


def normalise_embeddings(embeddings: Sequence[np.ndarray] | np.ndarray) -> np.ndarray:
    """(k, d) float32 of L2-normalised rows; typed error for anything else."""
    arr = np.asarray(embeddings, dtype=np.float64)
    if arr.ndim == 1:
        arr = arr[None]
    if arr.ndim != 2 or arr.shape[0] < 1 or arr.shape[0] > 64 or arr.shape[1] < 8 or arr.shape[1] > 4096:
        raise InvalidEmbeddingError(f"enroll needs 1..64 embeddings of 8..4096 values, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise InvalidEmbeddingError("an embedding has non-finite values")
    norms = np.linalg.norm(arr, axis=1, keepdims=True)
    if np.any(norms == 0):
        raise InvalidEmbeddingError("an embedding is all zeros")
    return (arr / norms).astype(np.float32)


class TemplateStore:
    """Enroll, list, rename, revoke, purge users; decrypt candidates; derive biometric and image keys."""

    def __init__(
        self, data_dir: Path | str, keystore: Keystore, params: extractor.BiokeyParams | None = None
    ) -> None:
        self.data_dir = Path(data_dir)
        self.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)  # an existing data dir keeps its mode
        self.path = self.data_dir / DB_NAME
        self.keystore = keystore
        self.params = params or extractor.BiokeyParams()
        self._aeads: dict[int, ChaCha20Poly1305] = {}
        try:
            # created 0600 before SQLite opens it (SQLite would create it with the umask's mode, and
            # its journal copies the database's mode): names are personal data from the first byte
            os.close(os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600))
        except OSError as exc:
            raise TemplateStoreCorruptError(f"{self.path}: cannot open ({exc.strerror})") from None
        try:
            self._db = sqlite3.connect(self.path, isolation_level=None, timeout=10)
            self._db.execute("PRAGMA secure_delete = ON")  # freed pages are zeroed, not left behind
            self._db.execute("PRAGMA journal_mode = DELETE")  # no WAL: old pages never linger in a -wal file
            self._db.execute("PRAGMA foreign_keys = ON")
            self._db.executescript(_SCHEMA)
            row = self._db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
            if row is None:
                self._db.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
            elif row[0] != str(SCHEMA_VERSION):
                raise TemplateStoreCorruptError(f"{self.path}: schema version {row[0]} unsupported")
        except sqlite3.DatabaseError as exc:
            raise TemplateStoreCorruptError(f"{self.path}: not a readable FaceLock user database ({exc})") from None
        with contextlib.suppress(OSError):
            self.path.chmod(0o600)

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> TemplateStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- helpers -------------------------------------------------------------------------------
    @contextlib.contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        try:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
        except sqlite3.DatabaseError as exc:
            raise TemplateStoreCorruptError(f"{self.path}: database error ({exc})") from None

    def _query(self, sql: str, args: tuple = ()) -> list[tuple]:
        try:
            return self._db.execute(sql, args).fetchall()
        except sqlite3.DatabaseError as exc:
            raise TemplateStoreCorruptError(f"{self.path}: database error ({exc})") from None

    def _aead(self, version: int | None = None) -> tuple[ChaCha20Poly1305, int]:
        """The templates AEAD (current version, or the one a row was sealed under); cached per version
        because a real TPM takes ~0.1 s per unseal and the matcher asks on every unlock attempt."""
        if version is None:
            self.keystore.ensure(TEMPLATES_KEY_ID)
            version = self.keystore.current_version(TEMPLATES_KEY_ID)
        if version not in self._aeads:
            self._aeads[version] = ChaCha20Poly1305(self.keystore.unseal(TEMPLATES_KEY_ID, version))
        return self._aeads[version], version

    @staticmethod
    def _aad(user_id: str, field: str) -> bytes:
        return f"facelock template v1|{user_id}|{field}".encode()

    def _seal(self, aead: ChaCha20Poly1305, user_id: str, field: str, data: bytes) -> bytes:
        nonce = secrets.token_bytes(_NONCE)
        return nonce + aead.encrypt(nonce, data, self._aad(user_id, field))

    def _open(self, aead: ChaCha20Poly1305, user_id: str, field: str, blob: bytes) -> bytes:
        try:
            return aead.decrypt(blob[:_NONCE], blob[_NONCE:], self._aad(user_id, field))
        except (InvalidTag, ValueError):
            raise TemplateStoreCorruptError(
                f"{self.path}: the {field} of user {user_id} fails authentication (altered, or another keystore)"
            ) from None

    def serialize(self) -> bytes:
        """A consistent copy of users.db as bytes (SQLite's online backup; the backup bundle carries it).

        The templates inside stay encrypted under the keystore: the copy is as protected as the file."""
        mem = sqlite3.connect(":memory:")
        try:
            self._db.backup(mem)
            return mem.serialize()
        finally:
            mem.close()

    def stored_ciphertexts(self, user_id: str) -> dict[str, bytes]:
        """The at-rest ciphertexts of one user (template, helper data), for erasure checks and audits.

        Nothing is decrypted; UserNotFoundError for an unknown id."""
        row = self._row(user_id)
        return {"template ciphertext": bytes(row[7]), "helper ciphertext": bytes(row[8])}

    def _row(self, user_id: str) -> tuple:
        rows = self._query(
            "SELECT id, name, status, created, updated, policy, templates_key_version, template, helper "
            "FROM users WHERE id = ?",
            (user_id,),
        )
        if not rows:
            raise UserNotFoundError(f"no enrolled user {user_id!r}")
        return rows[0]

    @staticmethod
    def _record(row: tuple) -> UserRecord:
        try:
            policy = boundedjson.loads(row[5])
        except ValueError as exc:  # JsonDepthError too: a crafted users.db must not crash the lock
            raise TemplateStoreCorruptError(f"policy of user {row[0]} is not usable JSON ({exc})") from None
        return UserRecord(row[0], row[1], row[2], row[3], row[4], policy)

    # ---- users ---------------------------------------------------------------------------------
    def enroll(self, name: str, embeddings: Sequence[np.ndarray] | np.ndarray, policy: dict | None = None) -> str:
        """Enroll a new user from one or more embeddings of their face; returns the new user id."""
        _check_name(name)
        embs = normalise_embeddings(embeddings)
        policy_text = self._policy_text(policy or {})
        mean = embs.mean(axis=0)
        _, helper = extractor.enroll(mean, self.params)
        user_id = secrets.token_hex(8)
        self.keystore.create(user_secret_id(user_id))  # sealed first: a crash leaves an orphan key, never a user without one
        aead, version = self._aead()
        now = _now()
        with self._tx() as db:
            db.execute(
                "INSERT INTO users (id, name, status, created, updated, templates_key_version, template, helper, "
                "policy) VALUES (?, ?, 'active', ?, ?, ?, ?, ?, ?)",
                (
                    user_id, name, now, now, version,
                    self._seal(aead, user_id, "template", _pack_embeddings(embs)),
                    self._seal(aead, user_id, "helper", helper.to_bytes()),
                    policy_text,
                ),
            )
        return user_id

    def reenroll(self, user_id: str, embeddings: Sequence[np.ndarray] | np.ndarray) -> None:
        """Renew a user's protected template: new embeddings, new projection, codeword and salt.

        The old helper data becomes useless, and so does the old biometric key, hence the old image key:
        re-seal the user's images (decrypt them first with a live probe) before renewing.
        """
        self._row(user_id)
        embs = normalise_embeddings(embeddings)
        _, helper = extractor.enroll(embs.mean(axis=0), self.params)
        aead, version = self._aead()
        with self._tx() as db:
            cur = db.execute(
                "UPDATE users SET template = ?, helper = ?, templates_key_version = ?, updated = ? WHERE id = ?",
                (
                    self._seal(aead, user_id, "template", _pack_embeddings(embs)),
                    self._seal(aead, user_id, "helper", helper.to_bytes()),
                    version, _now(), user_id,
                ),
            )
            if cur.rowcount == 0:
                raise UserNotFoundError(f"no enrolled user {user_id!r}")

    def list(self, include_revoked: bool = True) -> list[UserRecord]:
        sql = "SELECT id, name, status, created, updated, policy FROM users"
        if not include_revoked:
            sql += " WHERE status = 'active'"
        return [self._record(r) for r in self._query(sql + " ORDER BY created, id")]

    def get(self, user_id: str) -> UserRecord:
        return self._record(self._row(user_id))

    def _update(self, user_id: str, sql: str, args: tuple) -> None:
        with self._tx() as db:
            cur = db.execute(f"UPDATE users SET {sql}, updated = ? WHERE id = ?", (*args, _now(), user_id))
            if cur.rowcount == 0:
                raise UserNotFoundError(f"no enrolled user {user_id!r}")

    def rename(self, user_id: str, name: str) -> None:
        self._update(user_id, "name = ?", (_check_name(name),))

    def revoke(self, user_id: str) -> None:
        """The user can no longer unlock (not a match candidate); their data stays until purge."""
        self._update(user_id, "status = 'revoked'", ())

    def reactivate(self, user_id: str) -> None:
        self._update(user_id, "status = 'active'", ())

    @staticmethod
    def _policy_text(policy: dict) -> str:
        if not isinstance(policy, dict):
            raise InvalidPolicyError("a policy must be a JSON object")
        try:
            text = json.dumps(policy, sort_keys=True, separators=(",", ":"), allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise InvalidPolicyError(f"policy is not JSON-serialisable: {exc}") from None
        if len(text) > _MAX_POLICY_BYTES:
            raise InvalidPolicyError(f"policy is larger than {_MAX_POLICY_BYTES} bytes")
        return text

    def set_policy(self, user_id: str, policy: dict) -> None:
        """Store the opaque per-user policy (schedules); the lock/provisioning side owns its meaning."""
        self._update(user_id, "policy = ?", (self._policy_text(policy),))

    def purge(self, user_id: str) -> None:
        """Delete every trace of the user: row (template, helper), sealed secret; VACUUM the freed pages."""
        with self._tx() as db:
            if db.execute("DELETE FROM users WHERE id = ?", (user_id,)).rowcount == 0:
                raise UserNotFoundError(f"no enrolled user {user_id!r}")
        try:
            self._db.execute("VACUUM")
        except sqlite3.DatabaseError as exc:
            raise TemplateStoreCorruptError(f"{self.path}: VACUUM failed ({exc})") from None
        with contextlib.suppress(KeyNotFoundError):
            self.keystore.delete(user_secret_id(user_id))

    def purge_orphans(self) -> list[str]:
        """Delete sealed user secrets whose user row is gone (left by a crash mid-enroll/purge)."""
        ids = {r[0] for r in self._query("SELECT id FROM users")}
        gone = [k for k in self.keystore.list_ids() if k.startswith(USER_SECRET_PREFIX) and k[len(USER_SECRET_PREFIX):] not in ids]
        for k in gone:
            with contextlib.suppress(KeyNotFoundError):
                self.keystore.delete(k)
        return gone

    # ---- key rotation --------------------------------------------------------------------------
    def rotate_keys(self) -> RotationResult:
        """Re-wrap every user's protected template and sealed secret under fresh keystore versions.

        1. a new version of the ``templates`` key;
        2. each user's sealed secret re-sealed, *same value*, as a new version (new AEAD nonce / new
           TPM object): the image key HKDF(user secret || biometric key) does not change, so images
           sealed before the rotation still decrypt (changing it would orphan them, and re-sealing
           them needs each owner's live face);
        3. every row's embeddings and helper data re-encrypted under the new ``templates`` version
           in one SQLite transaction;
        4. ``prune_key_versions``: the old versions are destroyed.

        Crash-safe at every instant: steps 1-2 only add versions (each one atomic keystore write),
        a row always names the ``templates`` version it is sealed under and step 3 commits or not
        as a whole, and step 4 deletes only versions no row can need.  A rotation killed before
        step 4 leaves old versions behind; the next rotation (or prune_key_versions) removes them.
        """
        ks = self.keystore
        self.prune_key_versions()  # finish an earlier, interrupted rotation first
        ks.ensure(TEMPLATES_KEY_ID)
        new_version = ks.rotate(TEMPLATES_KEY_ID)
        new_aead, _ = self._aead(new_version)
        user_ids = [r[0] for r in self._query("SELECT id FROM users ORDER BY id")]
        resealed = 0
        for user_id in user_ids:
            sid = user_secret_id(user_id)
            try:
                secret = ks.unseal(sid)
            except KeyNotFoundError:
                continue  # a corrupt user (reported by user_image_key); nothing to re-seal
            ks.rotate(sid, secret=secret)
            resealed += 1
        with self._tx() as db:
            rows = db.execute(
                "SELECT id, templates_key_version, template, helper FROM users WHERE templates_key_version != ?",
                (new_version,),
            ).fetchall()
            for user_id, version, template, helper in rows:
                old = self._aead(version)[0]
                db.execute(
                    "UPDATE users SET templates_key_version = ?, template = ?, helper = ? WHERE id = ?",
                    (
                        new_version,
                        self._seal(new_aead, user_id, "template", self._open(old, user_id, "template", template)),
                        self._seal(new_aead, user_id, "helper", self._open(old, user_id, "helper", helper)),
                        user_id,
                    ),
                )
        destroyed = self.prune_key_versions()
        return RotationResult(new_version, len(rows), resealed, tuple(destroyed))

    def prune_key_versions(self) -> list[tuple[str, int]]:
        """Destroy the key versions nothing needs any more; returns the (key id, version) destroyed.

        ``templates``: every version but the current one and those a row is still sealed under.
        ``user:<id>``: every version but the current one (the image key uses only the current
        version, and a rotation re-seals the same value).
        """
        ks = self.keystore
        destroyed: list[tuple[str, int]] = []
        ids = set(ks.list_ids())
        if TEMPLATES_KEY_ID in ids:
            used = {int(r[0]) for r in self._query("SELECT DISTINCT templates_key_version FROM users")}
            current = ks.current_version(TEMPLATES_KEY_ID)
            for v in ks.versions(TEMPLATES_KEY_ID):
                if v != current and v not in used:
                    ks.delete_version(TEMPLATES_KEY_ID, v)
                    self._aeads.pop(v, None)
                    destroyed.append((TEMPLATES_KEY_ID, v))
        users = {r[0] for r in self._query("SELECT id FROM users")}
        for kid in sorted(ids):
            if not kid.startswith(USER_SECRET_PREFIX) or kid[len(USER_SECRET_PREFIX):] not in users:
                continue  # orphans are purge_orphans' business
            current = ks.current_version(kid)
            for v in ks.versions(kid):
                if v != current:
                    ks.delete_version(kid, v)
                    destroyed.append((kid, v))
        return destroyed

    # ---- the centre's people (firmware.fleet) -----------------------------------------------------
    def fleet_state(self) -> tuple[int, str | None, frozenset[str]]:
        """(bundle version, its lockdown, the ids of the centre's people) as last synced; (0, None, {}) before."""
        meta = dict(self._query("SELECT key, value FROM meta WHERE key IN (?, ?, ?)",
                                (FLEET_PEOPLE, FLEET_VERSION, FLEET_LOCKDOWN)))
        try:
            people = boundedjson.loads(meta.get(FLEET_PEOPLE, "[]"))
            version = int(meta.get(FLEET_VERSION, "0"))
        except ValueError as exc:
            raise TemplateStoreCorruptError(f"{self.path}: fleet state unreadable ({exc})") from None
        if not isinstance(people, list) or not all(isinstance(p, str) for p in people):
            raise TemplateStoreCorruptError(f"{self.path}: fleet people is not a list of ids")
        return version, meta.get(FLEET_LOCKDOWN), frozenset(people)

    def sync_fleet(self, version: int, people: Sequence[FleetPerson], lockdown: str) -> FleetSync:
        """Make the centre's people on this lock exactly ``people``, in one transaction.

        Each person is stored like a locally enrolled user (embeddings and helper data sealed under the
        keystore's ``templates`` key, a sealed user secret), under the centre's id, with the policy
        ``{"fleet": true, "schedule": [...]}``.  People of the previous bundle who are not in this one are
        purged (row deleted, freed pages zeroed and VACUUMed, sealed secret deleted).  A centre person revoked
        on the lock itself (``facelock users revoke``, a signed revoke-user) stays revoked until the lock's
        operator reactivates them: the lock's own refusal is kept.  Users enrolled on the lock itself are
        never touched, and a centre person with one of their ids is refused
        (FleetUserConflictError) before anything is written.  One transaction: the lock loop's reload sees
        the old people or the new ones, never a mixture; a person whose template and schedule did not change
        is not rewritten, so a bundle that only changes the lockdown does not reload the gallery.
        """
        _, _, before = self.fleet_state()
        ids = [p.user_id for p in people]
        if len(set(ids)) != len(ids):
            raise InvalidPolicyError("a person appears twice in the fleet people")
        local = {r[0] for r in self._query("SELECT id FROM users")} - before
        clash = sorted(set(ids) & local)
        if clash:
            raise FleetUserConflictError(f"a centre person has the id of a user enrolled on this lock ({clash[0][:16]}…)")
        prepared = []
        for p in people:
            embs = normalise_embeddings(p.embeddings)
            policy: dict[str, Any] = {"fleet": True}
            if p.schedule is not None:
                policy["schedule"] = p.schedule
            prepared.append((p.user_id, embs, self._policy_text(policy)))
        existing = {r[0]: r for r in self._query(
            "SELECT id, templates_key_version, template, policy FROM users")}
        aead, key_version = self._aead()
        added = updated = unchanged = 0
        writes = []
        for user_id, embs, policy_text in prepared:
            row = existing.get(user_id)
            if row is not None and row[3] == policy_text:
                old = _unpack_embeddings(self._open(self._aead(row[1])[0], user_id, "template", row[2]))
                if old.shape == embs.shape and np.array_equal(old, embs):
                    unchanged += 1
                    continue
            _, helper = extractor.enroll(embs.mean(axis=0), self.params)
            if row is None:
                self.keystore.create(user_secret_id(user_id))  # first: a crash leaves an orphan key, never a user without one
                added += 1
            else:
                updated += 1
            writes.append((row is None, user_id, embs, helper, policy_text))
        removed = sorted(before - set(ids))
        now = _now()
        with self._tx() as db:
            for new, user_id, embs, helper, policy_text in writes:
                tpl = self._seal(aead, user_id, "template", _pack_embeddings(embs))
                hlp = self._seal(aead, user_id, "helper", helper.to_bytes())
                if new:
                    db.execute("INSERT INTO users (id, name, status, created, updated, templates_key_version, "
                               "template, helper, policy) VALUES (?, ?, 'active', ?, ?, ?, ?, ?, ?)",
                               (user_id, f"centre {user_id[:8]}", now, now, key_version, tpl, hlp, policy_text))
                else:
                    db.execute("UPDATE users SET templates_key_version = ?, template = ?, "
                               "helper = ?, policy = ?, updated = ? WHERE id = ?",
                               (key_version, tpl, hlp, policy_text, now, user_id))
            for user_id in removed:
                db.execute("DELETE FROM users WHERE id = ?", (user_id,))
            for k, v in ((FLEET_PEOPLE, json.dumps(sorted(ids))), (FLEET_VERSION, str(int(version))),
                         (FLEET_LOCKDOWN, lockdown)):
                db.execute("INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = "
                           "excluded.value", (k, v))
        if removed:
            try:
                self._db.execute("VACUUM")
            except sqlite3.DatabaseError as exc:
                raise TemplateStoreCorruptError(f"{self.path}: VACUUM failed ({exc})") from None
            for user_id in removed:
                with contextlib.suppress(KeyNotFoundError):
                    self.keystore.delete(user_secret_id(user_id))
        return FleetSync(int(version), added, updated, len(removed), unchanged)

    def generation(self) -> int:
        """The change counter of users.db: every insert, update or delete of a user bumps it (triggers),
        whoever the writer is, so a running lock notices enrolments, revocations and policy changes."""
        row = self._query("SELECT value FROM meta WHERE key = 'generation'")
        return int(row[0][0]) if row else 0

    # ---- matching and keys ---------------------------------------------------------------------
    def candidates(self) -> list[Candidate]:
        """Active users with their decrypted embeddings (in memory only) for the matcher."""
        out = []
        rows = self._query(
            "SELECT id, name, templates_key_version, template FROM users WHERE status = 'active' ORDER BY id"
        )
        for user_id, name, version, blob in rows:
            aead = self._aead(version)[0]
            out.append(Candidate(user_id, name, _unpack_embeddings(self._open(aead, user_id, "template", blob))))
        return out

    def _helper(self, user_id: str, allow_revoked: bool) -> extractor.HelperData:
        row = self._row(user_id)
        if row[2] != "active" and not allow_revoked:
            raise UserRevokedError(f"user {user_id} is revoked")
        aead = self._aead(row[6])[0]
        try:
            return extractor.HelperData.from_bytes(self._open(aead, user_id, "helper", row[8]))
        except HelperDataError as exc:
            raise TemplateStoreCorruptError(f"helper data of user {user_id}: {exc}") from None

    def biometric_key(self, user_id: str, probe_embedding: np.ndarray, allow_revoked: bool = False) -> bytes:
        """Regenerate the user's biometric key from a live probe (WrongFaceError if it is not them)."""
        return extractor.reproduce(probe_embedding, self._helper(user_id, allow_revoked))

    def user_image_key(self, user_id: str, probe_embedding: np.ndarray, allow_revoked: bool = False) -> bytes:
        """32-byte key for the user's images = HKDF(sealed user secret || biometric key)."""
        bio = self.biometric_key(user_id, probe_embedding, allow_revoked)
        try:
            secret = self.keystore.unseal(user_secret_id(user_id))
        except KeyNotFoundError:
            raise TemplateStoreCorruptError(f"the sealed secret of user {user_id} is missing from the keystore") from None
        info = f"facelock image key v1|{user_id}".encode()
        return HKDF(hashes.SHA256(), 32, None, info).derive(secret + bio)
