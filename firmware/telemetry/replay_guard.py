"""Replay guard for signed commands: each nonce once, and nothing older than what was already accepted.

Why not "remember nonces for N seconds of the device's clock": the device clock is not trustworthy (a Pi has
no RTC; NTP can be spoofed).  Pruning by it let a clock moved forward forget every nonce and a clock moved
back accept the old commands again, and a command stamped ahead of the device's clock outlived its nonce.
So every fact here is in *command time* (the signed ``ts``), which an attacker cannot change:

* each nonce is stored with its command's own ``ts``;
* a persisted **high-water mark** ``newest`` = the largest ``ts`` ever accepted; a command with
  ``ts < newest - max_age`` is refused, whatever the device's clock says;
* nonces are pruned only below ``newest - 2 * max_age``, and the persisted ``floor`` records the ``ts``
  below which nonces may be gone; a command with ``ts < floor`` is refused.  So a pruned nonce is always
  behind a refusal rule, and ``max_age`` may change between runs without opening a window.

The freshness check against the device's clock (``|now - ts| <= max_age``) stays in the verifier: it
bounds how far ahead or behind a command may be, the rules above make a replay impossible whichever way
the clock moves.  One SQLite transaction per accepted command, ``synchronous=FULL``: a crash or power loss
leaves the command either fully recorded (refused on replay) or not recorded (and it was not run, the
nonce is recorded before the command is handed to the lock).

Test hook: :func:`device_clock` adds ``$FACELOCK_TEST_CLOCK_OFFSET_S`` seconds to ``time.time()``.  It
exists so the replay tests can move a real daemon's clock (this machine's clock cannot be moved by a
test); anyone who can set the daemon's environment can also set the system clock, so it grants nothing.
"""

from __future__ import annotations

import math
import os
import sqlite3
import threading
import time
from pathlib import Path

from firmware.telemetry.errors import CommandRejected, TelemetryError

CLOCK_OFFSET_ENV = "FACELOCK_TEST_CLOCK_OFFSET_S"
KEEP_FACTOR = 2.0  # nonces are kept at least this many max ages past their command's ts

_SCHEMA = """
create table if not exists seen(nonce text primary key, ts real not null);
create index if not exists seen_ts on seen(ts);
create table if not exists mark(id integer primary key check (id = 1), newest real not null, floor real not null);
"""


def device_clock() -> float:
    """The device's wall clock as the command verifier sees it (plus the documented test offset)."""
    raw = os.environ.get(CLOCK_OFFSET_ENV)
    if not raw:
        return time.time()
    try:
        offset = float(raw)
    except ValueError:
        raise TelemetryError(f"${CLOCK_OFFSET_ENV} must be a number of seconds") from None
    if not math.isfinite(offset):
        raise TelemetryError(f"${CLOCK_OFFSET_ENV} must be finite")
    return time.time() + offset


class ReplayGuard:
    """``admit(nonce, ts, max_age_s)`` records a command or raises CommandRejected ("replay" / "stale").

    Persisted in SQLite (``path``, 0600), shared safely by threads of one process.  Opening a store
    written by the old nonce table (``nonces(nonce, ts)``, ts = the device's receive time) migrates it:
    its rows are kept and both marks start at their newest ts, so nothing it had pruned can come back.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(str(self.path), isolation_level=None, check_same_thread=False, timeout=30)
            self._db.execute("pragma journal_mode=wal")
            self._db.execute("pragma synchronous=FULL")
            self._db.executescript(_SCHEMA)
            self._db.execute("begin immediate")
            try:
                if self._db.execute("select count(*) from mark").fetchone()[0] == 0:
                    self._migrate_or_init()
                self._db.execute("commit")
            except BaseException:
                self._db.execute("rollback")
                raise
            os.chmod(self.path, 0o600)
        except (sqlite3.Error, OSError) as exc:
            raise TelemetryError(f"cannot open the command replay store {self.path}: {exc}") from None

    def _migrate_or_init(self) -> None:
        old = self._db.execute("select name from sqlite_master where type='table' and name='nonces'").fetchone()
        newest = 0.0
        if old:
            self._db.execute("insert or ignore into seen(nonce, ts) select nonce, ts from nonces")
            newest = float(self._db.execute("select coalesce(max(ts), 0) from nonces").fetchone()[0])
            self._db.execute("drop table nonces")
        # The old table pruned by the device's clock: below its newest row nothing is known to be complete.
        self._db.execute("insert into mark(id, newest, floor) values (1, ?, ?)", (newest, newest))

    def marks(self) -> tuple[float, float]:
        """(newest accepted ts, floor below which nonces may have been pruned)."""
        with self._lock:
            row = self._db.execute("select newest, floor from mark where id=1").fetchone()
        return float(row[0]), float(row[1])

    def admit(self, nonce: str, ts: float, max_age_s: float) -> None:
        """Accept the command (nonce, ts) once; raise CommandRejected when it must not run."""
        if not (math.isfinite(ts) and math.isfinite(max_age_s) and max_age_s > 0):
            raise CommandRejected("malformed", "timestamp or max age not finite")
        with self._lock:
            try:
                self._db.execute("begin immediate")
                try:
                    self._admit(nonce, float(ts), float(max_age_s))
                    self._db.execute("commit")
                except BaseException:
                    self._db.execute("rollback")
                    raise
            except sqlite3.Error as exc:
                # Fail closed: a command whose nonce cannot be recorded is not run.
                raise CommandRejected("replay_store", f"replay store unavailable: {exc.__class__.__name__}") from None

    def _admit(self, nonce: str, ts: float, max_age_s: float) -> None:
        newest, floor = self._db.execute("select newest, floor from mark where id=1").fetchone()
        if ts < newest - max_age_s:
            raise CommandRejected("stale", f"{newest - ts:.1f} s older than the newest accepted command "
                                           f"(limit {max_age_s:g} s)")
        if ts < floor:
            raise CommandRejected("stale", "older than the replay store's horizon")
        if self._db.execute("insert or ignore into seen(nonce, ts) values (?, ?)", (nonce, ts)).rowcount != 1:
            raise CommandRejected("replay", "nonce already used")
        newest = max(newest, ts)
        horizon = newest - KEEP_FACTOR * max_age_s
        if horizon > floor:
            self._db.execute("delete from seen where ts<?", (horizon,))
            floor = horizon
        self._db.execute("update mark set newest=?, floor=? where id=1", (newest, floor))

    def close(self) -> None:
        with self._lock:
            self._db.close()
