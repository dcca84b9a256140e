"""Append-only audit log: SQLite in WAL mode, each record carrying a MAC over itself and the previous one.

Why a *keyed* chain: the log lives on the device an intruder may hold.  Triggers make UPDATE and DELETE
fail for honest code, but anyone with the file can drop them, and a plain hash chain can simply be
recomputed after an edit.  So each record's ``hash`` is HMAC-SHA256 under the keystore secret
``audit-chain`` (:data:`AUDIT_KEY_ID`, TPM-sealed where the keystore is): without that key, an edit, a
deletion, a reordering or a re-hashed history is caught and :meth:`AuditLog.verify` names the first bad
record.  Someone who *has* the key (a rooted lock) can rewrite the log consistently; for that the lock
publishes its chain head in heartbeat events (:meth:`AuditLog.heartbeat_fields`), the monitor keeps them
and alerts when a later heartbeat shows a different history, and ``verify(anchors=...)`` checks a log
against heads recorded off the device.  (Cutting records off the *end* leaves a valid shorter chain;
``expect_at_least`` or an anchor catches that.)

Logs written before the key existed (plain SHA-256 records) stay readable: the first keyed record is an
``audit_keyed`` marker that counts them and, through its ``prev``, seals their head; verifying with the
key refuses any unkeyed record after it, and a log with no marker at all when the key exists.

Each append is one SQLite transaction with ``synchronous=FULL``: a SIGKILL or power loss leaves either
the whole record or none of it, so the chain still verifies after a crash.

Records hold who/what/why (the user's pseudonym from :mod:`firmware.pseudonym`, reason, scores), never a
name, a user id, a face image or an embedding: this log cannot forget, and a user must be erasable.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from firmware.errors import FaceLockError

GENESIS = "0" * 64
AUDIT_KEY_ID = "audit-chain"
KEYED_MARKER = "audit_keyed"
_MAC_LABEL = b"facelock-audit-v2\0"
log = logging.getLogger("facelock.audit")
SCHEMA = """
CREATE TABLE IF NOT EXISTS audit (
    seq INTEGER PRIMARY KEY,
    ts REAL NOT NULL,
    kind TEXT NOT NULL,
    data TEXT NOT NULL,
    prev TEXT NOT NULL,
    hash TEXT NOT NULL
);
CREATE TRIGGER IF NOT EXISTS audit_no_update BEFORE UPDATE ON audit
BEGIN SELECT RAISE(ABORT, 'audit log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_no_delete BEFORE DELETE ON audit
BEGIN SELECT RAISE(ABORT, 'audit log is append-only'); END;
"""


class AuditError(FaceLockError):
    """The audit database cannot be opened or written."""


@dataclass(frozen=True)
class Record:
    seq: int
    ts: float
    kind: str
    data: dict[str, Any]
    prev: str
    hash: str


@dataclass(frozen=True)
class VerifyResult:
    ok: bool
    checked: int
    bad_seq: int | None = None
    reason: str = ""
    head: str = GENESIS
    #: every record after the legacy prefix was checked with the audit key
    authenticated: bool = False
    #: records written before the chain was keyed (plain SHA-256; their head is sealed by the marker)
    legacy: int = 0

    def __str__(self) -> str:
        if self.ok:
            how = ("keyed (HMAC), " if self.authenticated else
                   "UNAUTHENTICATED (links only, no audit key given), " if self.legacy < self.checked else
                   "unkeyed legacy chain, ")
            return f"audit chain OK: {self.checked} records, {how}head {self.head[:16]}"
        return f"audit chain BROKEN at record {self.bad_seq}: {self.reason} ({self.checked} records read)"


def record_hash(seq: int, ts: float, kind: str, data_json: str, prev: str) -> str:
    """SHA-256 over a canonical encoding of the record and the previous record's hash."""
    body = json.dumps([seq, repr(float(ts)), kind, data_json, prev], separators=(",", ":"))
    return hashlib.sha256(body.encode("utf-8")).hexdigest()


def record_mac(key: bytes, seq: int, ts: float, kind: str, data_json: str, prev: str) -> str:
    """HMAC-SHA256 under the audit key over the same canonical encoding (domain-separated)."""
    body = json.dumps([seq, repr(float(ts)), kind, data_json, prev], separators=(",", ":"))
    return hmac.new(key, _MAC_LABEL + body.encode("utf-8"), hashlib.sha256).hexdigest()


def _canonical(data: dict[str, Any]) -> str:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)


class AuditLog:
    """``AuditLog(path, key=...).append(kind, **data)``; ``verify()``; ``records()``.

    ``key``: the audit chain key (:func:`chain_key`).  A writer with it appends HMAC records (and, on a
    legacy or empty log, first the ``audit_keyed`` marker); a writer without it appends plain SHA-256
    records, which verification with the key reports as unauthenticated.
    """

    def __init__(self, path: str | Path, readonly: bool = False, key: bytes | None = None):
        self.path = Path(path)
        self._key = key
        try:
            if readonly:
                if not self.path.exists():
                    raise AuditError(f"audit log {self.path} does not exist")
                self._db = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, isolation_level=None)
            else:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._db = sqlite3.connect(str(self.path), isolation_level=None, timeout=10)
                self._db.execute("PRAGMA journal_mode=WAL")
                self._db.execute("PRAGMA synchronous=FULL")
                self._db.executescript(SCHEMA)
                os.chmod(self.path, 0o600)  # user ids and times are personal data
        except sqlite3.DatabaseError as exc:
            raise AuditError(f"cannot open audit log {self.path}: {exc}") from exc
        if key is not None and not readonly:
            self._mark_keyed()

    def _mark_keyed(self) -> None:
        """Start the keyed part of the chain unless the last record is already keyed."""
        row = self._db.execute("SELECT seq, ts, kind, data, prev, hash FROM audit ORDER BY seq DESC LIMIT 1"
                               ).fetchone()
        if row is not None and hmac.compare_digest(record_mac(self._key, *row[:5]), row[5]):
            return
        if row is not None and self._db.execute("SELECT 1 FROM audit WHERE kind=? LIMIT 1",
                                                (KEYED_MARKER,)).fetchone():
            # Keyed before, and the tail is not: records were appended without the key (or forged).
            # Keep appending keyed; verify() names the unauthenticated records.
            log.error("audit log %s: records after the keyed marker are not keyed", self.path)
            return
        self.append(KEYED_MARKER, legacy_records=row[0] if row else 0)

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> AuditLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def append(self, kind: str, ts: float | None = None, **data: Any) -> Record:
        ts = time.time() if ts is None else float(ts)
        data_json = _canonical(data)
        try:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                row = self._db.execute("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1").fetchone()
                seq, prev = (row[0] + 1, row[1]) if row else (1, GENESIS)
                h = (record_mac(self._key, seq, ts, kind, data_json, prev) if self._key is not None
                     else record_hash(seq, ts, kind, data_json, prev))
                self._db.execute("INSERT INTO audit(seq, ts, kind, data, prev, hash) VALUES (?,?,?,?,?,?)",
                                 (seq, ts, kind, data_json, prev, h))
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        except sqlite3.DatabaseError as exc:
            raise AuditError(f"cannot append to audit log {self.path}: {exc}") from exc
        return Record(seq, ts, kind, data, prev, h)

    def records(self, since: int = 0, limit: int | None = None) -> Iterator[Record]:
        q = "SELECT seq, ts, kind, data, prev, hash FROM audit WHERE seq > ? ORDER BY seq"
        args: tuple[Any, ...] = (since,)
        if limit is not None:
            q += " LIMIT ?"
            args = (since, limit)
        for seq, ts, kind, data, prev, h in self._db.execute(q, args):
            try:
                parsed = json.loads(data)
            except json.JSONDecodeError:
                parsed = {"_unparseable": data}
            yield Record(seq, ts, kind, parsed, prev, h)

    def head(self) -> tuple[int, str]:
        row = self._db.execute("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1").fetchone()
        return (row[0], row[1]) if row else (0, GENESIS)

    def hash_at(self, seq: int) -> str | None:
        row = self._db.execute("SELECT hash FROM audit WHERE seq=?", (seq,)).fetchone()
        return row[0] if row else None

    def heartbeat_fields(self, anchor_seq: int | None) -> dict[str, Any]:
        """The chain head for a heartbeat event, and the head *now* at ``anchor_seq`` (the seq published
        in the previous heartbeat): the monitor compares it with what it stored then, so a history
        rewritten since (even with the key) shows up at the next heartbeat."""
        seq, head = self.head()
        fields: dict[str, Any] = {"audit_seq": seq, "audit_head": head}
        if anchor_seq is not None and 0 < anchor_seq <= seq:
            fields.update(audit_anchor_seq=anchor_seq, audit_anchor_head=self.hash_at(anchor_seq) or "missing")
        elif anchor_seq is not None and anchor_seq > seq:
            fields.update(audit_anchor_seq=anchor_seq, audit_anchor_head="missing")
        return fields

    def verify(self, expect_at_least: int = 0, key: bytes | None = None,
               anchors: dict[int, str] | None = None) -> VerifyResult:
        """Walk the chain from the start; report the first record that was edited, deleted, moved or
        re-hashed.  ``key`` (default: the log's own) authenticates every record after the legacy prefix;
        ``anchors`` {seq: head} recorded off the device (heartbeats) must all still match."""
        key = key if key is not None else self._key
        expected_seq, prev, n = 1, GENESIS, 0
        keyed_from: int | None = None  # seq of the audit_keyed marker
        legacy = 0
        try:
            rows = self._db.execute("SELECT seq, ts, kind, data, prev, hash FROM audit ORDER BY seq")
            for seq, ts, kind, data, rprev, h in rows:
                n += 1
                if seq != expected_seq:
                    return VerifyResult(False, n, expected_seq,
                                        f"record {expected_seq} is missing (deleted); next present is {seq}", prev)
                if rprev != prev:
                    return VerifyResult(False, n, seq, "previous-hash link broken (record deleted, inserted "
                                        "or reordered before it)", prev)
                if keyed_from is None:
                    if key is not None and hmac.compare_digest(record_mac(key, seq, ts, kind, data, rprev), h):
                        if kind != KEYED_MARKER or _legacy_count(data) != seq - 1:
                            return VerifyResult(False, n, seq, "keyed records do not start with the audit_keyed "
                                                "marker (history rewritten)", prev)
                        keyed_from = seq
                    elif key is None and kind == KEYED_MARKER and _legacy_count(data) == seq - 1:
                        keyed_from = seq  # cannot check it without the key: links only from here
                    elif record_hash(seq, ts, kind, data, rprev) == h:
                        legacy += 1
                    else:
                        return VerifyResult(False, n, seq, "content does not match its hash (record edited)", prev)
                elif key is not None and not hmac.compare_digest(record_mac(key, seq, ts, kind, data, rprev), h):
                    why = ("record not authenticated by the audit key (written or re-hashed without it)"
                           if record_hash(seq, ts, kind, data, rprev) == h else
                           "content does not match its MAC (record edited)")
                    return VerifyResult(False, n, seq, why, prev)
                if anchors and seq in anchors and not hmac.compare_digest(anchors[seq], h):
                    return VerifyResult(False, n, seq, "differs from the head published in a heartbeat "
                                        "(history rewritten)", prev)
                prev, expected_seq = h, seq + 1
        except sqlite3.DatabaseError as exc:
            raise AuditError(f"cannot read audit log {self.path}: {exc}") from exc
        last = expected_seq - 1
        if key is not None and keyed_from is None and n > 0:
            return VerifyResult(False, n, 1, "no record is authenticated by the audit key (history replaced, "
                                "or written without the key)", prev, legacy=legacy)
        beyond = [s for s in (anchors or {}) if s > last]
        want = max([expect_at_least, *beyond]) if beyond else expect_at_least
        if last < want:
            return VerifyResult(False, n, expected_seq,
                                f"log ends at record {last}, expected at least {want} "
                                "(records cut from the end)", prev, legacy=legacy)
        return VerifyResult(True, n, None, "", prev, authenticated=key is not None and keyed_from is not None,
                            legacy=legacy)


def _legacy_count(data_json: str) -> int | None:
    try:
        value = json.loads(data_json).get("legacy_records")
    except (ValueError, AttributeError):
        return None
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def chain_key(data_dir: str | Path, keystore_config: Any = None, *, create: bool = True) -> bytes | None:
    """The audit chain key from the device keystore (created on first use when ``create``); None when the
    keystore cannot be opened (logged: the lock keeps auditing, and verification will say so)."""
    from firmware.keystore import KeystoreConfig, open_keystore
    from firmware.keystore.errors import KeystoreError

    try:
        with open_keystore(keystore_config or KeystoreConfig(), data_dir) as ks:
            if create:
                return ks.ensure(AUDIT_KEY_ID)
            return ks.unseal(AUDIT_KEY_ID) if ks.exists(AUDIT_KEY_ID) else None
    except KeystoreError as exc:
        log.error("audit chain key unavailable (%s): records are not authenticated", exc)
        return None
