"""Append-only audit log: SQLite in WAL mode, each record carrying the SHA-256 of the previous one.

Why a hash chain: the log lives on the device an intruder may hold.  Triggers make UPDATE and DELETE
fail for honest code; the chain makes any edit, deletion or reordering by someone who bypasses SQLite
detectable, and :func:`verify` names the first bad record.  (Cutting records off the *end* leaves a
valid shorter chain; pass ``expect_at_least`` from an outside anchor — the last sequence number
published in an event — to catch that too.)

Each append is one SQLite transaction with ``synchronous=FULL``: a SIGKILL or power loss leaves either
the whole record or none of it, so the chain still verifies after a crash.

Records hold who/what/why (the user's pseudonym from :mod:`firmware.pseudonym`, reason, scores), never a
name, a user id, a face image or an embedding: this log cannot forget, and a user must be erasable.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from firmware.errors import FaceLockError

GENESIS = "0" * 64
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

    def __str__(self) -> str:
        if self.ok:
            return f"audit chain OK: {self.checked} records, head {self.head[:16]}"
        return f"audit chain BROKEN at record {self.bad_seq}: {self.reason} ({self.checked} records read)"


def record_hash(seq: int, ts: float, kind: str, data_json: str, prev: str) -> str:
    """SHA-256 over a canonical encoding of the record and the previous record's hash."""
    body = json.dumps([seq, repr(float(ts)), kind, data_json, prev], separators=(",", ":"))
    return hashlib.sha256(body.encode("utf-8")).hexdigest()


def _canonical(data: dict[str, Any]) -> str:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)


class AuditLog:
    """``AuditLog(path).append(kind, **data)``; ``verify()``; ``records()``."""

    def __init__(self, path: str | Path, readonly: bool = False):
        self.path = Path(path)
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
                h = record_hash(seq, ts, kind, data_json, prev)
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

    def verify(self, expect_at_least: int = 0) -> VerifyResult:
        """Walk the chain from the start; report the first record that was edited, deleted or moved."""
        expected_seq, prev, n = 1, GENESIS, 0
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
                if record_hash(seq, ts, kind, data, rprev) != h:
                    return VerifyResult(False, n, seq, "content does not match its hash (record edited)", prev)
                prev, expected_seq = h, seq + 1
        except sqlite3.DatabaseError as exc:
            raise AuditError(f"cannot read audit log {self.path}: {exc}") from exc
        if expected_seq - 1 < expect_at_least:
            return VerifyResult(False, n, expected_seq,
                                f"log ends at record {expected_seq - 1}, expected at least {expect_at_least} "
                                "(records cut from the end)", prev)
        return VerifyResult(True, n, None, "", prev)
