"""The durable event outbox: every event is committed to SQLite (WAL) before it may be published, and
leaves only when delivery is confirmed.

Life of a row: `put` (committed before return) -> published with QoS 1 -> PUBACK -> the monitor's receipt
-> `ack_seq` deletes it (with receipts turned off, the PUBACK alone deletes it).  Rows are read back in
`seq` order, so a reconnect resends in order, and the stored payload is the exact bytes sent the first
time, so an event keeps its id across resends and process restarts.

Several processes may share one outbox file (e.g. the lock controller puts, a telemetry process
publishes): the cached seq counter and row count are reloaded whenever `pragma data_version` says another
connection committed, and a seq taken meanwhile by another process makes the insert fail on the primary key
and be retried with fresh numbers, so the common put is one statement.

Durability: every `put` is a committed transaction before it returns, so a killed process never loses an
event.  Events of severity >= `fsync_severity` (default "warning": denied, spoof, tamper, lockout,
faults...) are also fsynced before `put` returns, so they survive a power cut too; lower-severity events
(access granted, door opened) skip that fsync (WAL, synchronous=NORMAL) and reach the disk with the next
fsync (any later important event, or a WAL checkpoint), which is what lets the outbox keep up with the
network: an SD-card fsync costs milliseconds.  `fsync_severity="debug"` fsyncs everything.

Bounded: when `max_events` rows are present, `put` first evicts the oldest row of the lowest severity
(debug before info before warning before critical; oldest first within one severity), counts it, and
`put_eviction_report` turns the count into an `outbox_evicted` event.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import NamedTuple

from firmware.telemetry.errors import OutboxError
from firmware.telemetry.events import SEVERITIES, SEVERITY_RANK, Event, encode, make_event

# No secondary index on purpose: each index costs a page write per commit, which halves the put rate.
# Receipts delete by (seq, id) through the primary key; eviction scans, but only when the outbox is full.
# No AUTOINCREMENT either: it rewrites sqlite_sequence on every insert (a second page per commit, ~20% of a
# put).  A seq is still never reused: every transaction that deletes rows first records the highest seq in
# meta('max_seq'), and the next seq is 1 + the larger of that and max(seq).  (Files made by earlier versions
# keep their AUTOINCREMENT table; sqlite_sequence is then read too.)
_SCHEMA = """
create table if not exists events(
    seq integer primary key,
    id text not null,
    type text not null,
    severity integer not null,
    created real not null,
    payload blob not null
);
create table if not exists meta(key text primary key, value integer not null);
"""
_INSERT = "insert into events(seq, id, type, severity, created, payload) values (?,?,?,?,?,?)"
_RECORD_MAX_SEQ = ("insert into meta(key, value) select 'max_seq', coalesce(max(seq), 0) from events where true "
                   "on conflict(key) do update set value=max(value, excluded.value)")


class OutboxRow(NamedTuple):
    """One stored event as the publisher needs it (a named tuple: one is built per put and per row read,
    and a frozen dataclass costs several times more to construct)."""

    seq: int
    id: str
    type: str
    severity: str
    payload: bytes


class Outbox:
    """A bounded, crash-safe FIFO of encoded events in one SQLite file (thread- and process-safe)."""

    def __init__(self, path: str | Path, max_events: int = 100_000, fsync_severity: str = "warning") -> None:
        if max_events < 2:
            raise OutboxError("max_events must be at least 2")
        if fsync_severity not in SEVERITY_RANK:
            raise OutboxError(f"fsync_severity must be one of {SEVERITIES}")
        self.path = Path(path)
        self.max_events = max_events
        self._fsync_rank = SEVERITY_RANK[fsync_severity]
        self._sync_full: bool | None = None
        self._lock = threading.RLock()
        self._listeners: list[Callable[[OutboxRow], None]] = []
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(str(self.path), isolation_level=None, check_same_thread=False, timeout=30)
            # Small pages: every commit appends whole pages to the WAL, and an event is ~250 bytes.
            self._db.execute("pragma page_size=1024")
            self._db.execute("pragma journal_mode=wal")
            self._db.executescript(_SCHEMA)
            self._has_sqlite_sequence = self._db.execute(
                "select 1 from sqlite_master where name='sqlite_sequence'").fetchone() is not None
            os.chmod(self.path, 0o600)
            self._data_version = -1
            self._checked_at = 0.0
            self._count = 0
            self._last_seq = 0
            self._refresh()
        except (sqlite3.Error, OSError) as exc:
            raise OutboxError(f"cannot open outbox {self.path}: {exc}") from exc
        self._set_sync(full=True)

    def _set_sync(self, full: bool) -> None:
        if full != self._sync_full:
            self._db.execute(f"pragma synchronous={'FULL' if full else 'NORMAL'}")
            self._sync_full = full

    # -- writing -------------------------------------------------------------------------------
    def put(self, event: Event) -> Event:
        """Assign the next seq, evict if full, commit; returns the stored event (with its seq)."""
        stored, row = self._insert(lambda seq, meta: event.with_seq(seq), event.severity, report=False)
        self._notify(row)
        return stored

    def put_eviction_report(self, device: str) -> Event | None:
        """If events were evicted since the last report, store one `outbox_evicted` event saying how many.

        One transaction makes room (counting that eviction too), inserts the report and resets the
        unreported counters, so a crash can neither lose the count nor report it twice.
        """
        with self._lock:
            if not self._meta().get("evicted_unreported", 0):
                return None

            def build(seq: int, meta: dict[str, int]) -> Event:
                by_sev = {s: meta.get(f"evicted_unreported_{s}", 0) for s in SEVERITIES}
                return make_event(
                    device, "outbox_evicted", reason="outbox_full",
                    evicted=meta.get("evicted_unreported", 0), evicted_total=meta.get("evicted_total", 0),
                    **{f"evicted_{s}": n for s, n in by_sev.items() if n},
                ).with_seq(seq)

            stored, row = self._insert(build, "warning", report=True)
        self._notify(row)
        return stored

    def _refresh(self, force: bool = False, max_age_s: float = 0.0) -> None:
        """Reload the cached count and last seq if another connection committed since we last looked.

        With `max_age_s`, skip even the check when it ran that recently: a seq taken by another process
        makes the insert fail on the primary key (and retry with force), and a stale count only matters
        near the bound, where the eviction path re-reads it inside its transaction."""
        now = time.monotonic()
        if not force and max_age_s and now - self._checked_at < max_age_s:
            return
        self._checked_at = now
        dv = self._db.execute("pragma data_version").fetchone()[0]
        if force or dv != self._data_version:
            self._count = self._db.execute("select count(*) from events").fetchone()[0]
            self._last_seq = self._highest_seq()
            self._data_version = dv

    def _highest_seq(self) -> int:
        """The highest seq ever stored: in the table, or recorded by a delete that removed it."""
        seq = self._db.execute(
            "select max(coalesce((select max(seq) from events), 0),"
            " coalesce((select value from meta where key='max_seq'), 0))").fetchone()[0]
        if self._has_sqlite_sequence:
            row = self._db.execute("select seq from sqlite_sequence where name='events'").fetchone()
            seq = max(seq, int(row[0]) if row else 0)
        return int(seq)

    def _insert(self, build: Callable[[int, dict[str, int]], Event], severity: str, *, report: bool
                ) -> tuple[Event, OutboxRow]:
        with self._lock:
            self._set_sync(full=report or SEVERITY_RANK[severity] >= self._fsync_rank)
            for _attempt in range(20):
                try:
                    self._refresh(force=_attempt > 0, max_age_s=0.5)
                    evicted = 0
                    if not report and self._count < self.max_events:
                        # Common case: one autocommit statement.  If another process took this seq in
                        # between, the primary key refuses it and we retry with fresh numbers.
                        seq = self._last_seq + 1
                        stored = build(seq, {})
                        payload = encode(stored)
                        self._db.execute(_INSERT, (seq, stored.id, stored.type, SEVERITY_RANK[stored.severity],
                                                   stored.ts, payload))
                    else:
                        self._db.execute("begin immediate")
                        try:
                            self._refresh(force=True)
                            if self._count >= self.max_events:
                                evicted = self._evict_one()
                            seq = self._last_seq + 1
                            stored = build(seq, self._meta() if report else {})
                            payload = encode(stored)
                            self._db.execute(_INSERT, (seq, stored.id, stored.type,
                                                       SEVERITY_RANK[stored.severity], stored.ts, payload))
                            if report:
                                self._db.execute("update meta set value=0 where key like 'evicted_unreported%'")
                            self._db.execute("commit")
                        except BaseException:
                            self._db.execute("rollback")
                            raise
                except sqlite3.IntegrityError:
                    self._data_version = -1
                    continue
                except sqlite3.Error as exc:
                    raise OutboxError(f"outbox write failed: {exc}") from exc
                self._last_seq = seq
                self._count += 1 - evicted
                return stored, OutboxRow(seq, stored.id, stored.type, stored.severity, payload)
            raise OutboxError("outbox write failed: could not get a free seq (heavy contention)")

    def _notify(self, row: OutboxRow) -> None:
        for listener in list(self._listeners):
            listener(row)

    def _evict_one(self) -> int:
        row = self._db.execute("select seq, severity from events order by severity, seq limit 1").fetchone()
        if row is None:
            return 0
        self._db.execute("delete from events where seq=?", (row[0],))
        sev = SEVERITIES[row[1]]
        for key in ("evicted_total", "evicted_unreported", f"evicted_unreported_{sev}"):
            self._db.execute(
                "insert into meta(key, value) values (?, 1) on conflict(key) do update set value=value+1", (key,)
            )
        return 1

    def ack(self, ids: str | Iterable[str]) -> int:
        """Delete delivered events by id; unknown ids are ignored (a late duplicate receipt).

        Returns the number of rows deleted.  (A scan per batch of 500; the client uses `ack_seq`.)
        """
        if isinstance(ids, str):
            ids = [ids]
        ids = list(ids)
        return sum(self._delete(f"delete from events where id in ({','.join('?' * len(chunk))})", [tuple(chunk)])
                   for chunk in (ids[i:i + 500] for i in range(0, len(ids), 500)))

    def ack_seq(self, entries: Iterable[tuple[int, str]]) -> int:
        """Delete delivered events by (seq, id), through the primary key; both must match."""
        return self._delete("delete from events where seq=? and id=?", [(int(s), i) for s, i in entries])

    def ack_seq_nowait(self, entries: list[tuple[int, str]], chunk: int = 256) -> int:
        """`ack_seq` for the network thread: one short transaction per `chunk` entries, and never a wait
        for the outbox, which a thread putting events may hold almost continuously (the lock is not
        fair, so a blocking delete could stall the network for as long as the burst lasts).  Returns how
        many leading entries were dealt with; the caller keeps the rest for its next try."""
        done = 0
        while done < len(entries):
            part = entries[done:done + chunk]
            if not self._lock.acquire(blocking=False):
                break
            try:
                self._delete_locked("delete from events where seq=? and id=?", [(int(s), i) for s, i in part])
            finally:
                self._lock.release()
            done += len(part)
        return done

    def _delete(self, sql: str, rows: list[tuple]) -> int:
        if not rows:
            return 0
        with self._lock:
            return self._delete_locked(sql, rows)

    def _delete_locked(self, sql: str, rows: list[tuple]) -> int:
        # Deletes need no fsync: losing one to a power cut only means a harmless resend (and the
        # high-water mark below is committed, or not, together with the deletes it covers).
        self._set_sync(full=False)
        try:
            self._db.execute("begin immediate")
            try:
                self._db.execute(_RECORD_MAX_SEQ)
                before = self._db.total_changes
                self._db.executemany(sql, rows)
                deleted = self._db.total_changes - before
                self._db.execute("commit")
            except BaseException:
                self._db.execute("rollback")
                raise
        except sqlite3.Error as exc:
            raise OutboxError(f"outbox write failed: {exc}") from exc
        self._count -= deleted
        return deleted

    # -- reading -------------------------------------------------------------------------------
    def pending(self, after_seq: int = 0, limit: int = 100) -> list[OutboxRow]:
        """Rows with seq > after_seq in seq order (not yet delivered, or delivered but not receipted)."""
        with self._lock:
            return self._pending_locked(after_seq, limit)

    def pending_nowait(self, after_seq: int = 0, limit: int = 100) -> list[OutboxRow] | None:
        """`pending`, or None at once if another thread of this process is using the outbox."""
        if not self._lock.acquire(blocking=False):
            return None
        try:
            return self._pending_locked(after_seq, limit)
        finally:
            self._lock.release()

    def _pending_locked(self, after_seq: int, limit: int) -> list[OutboxRow]:
        rows = self._db.execute(
            "select seq, id, type, severity, payload from events where seq>? order by seq limit ?",
            (after_seq, limit),
        ).fetchall()
        return [OutboxRow(r[0], r[1], r[2], SEVERITIES[r[3]], bytes(r[4])) for r in rows]

    def rows(self, ids: list[str]) -> list[OutboxRow]:
        """The rows of these ids that are still stored, in seq order."""
        out: list[OutboxRow] = []
        with self._lock:
            for i in range(0, len(ids), 500):
                chunk = ids[i:i + 500]
                out += [OutboxRow(r[0], r[1], r[2], SEVERITIES[r[3]], bytes(r[4])) for r in self._db.execute(
                    "select seq, id, type, severity, payload from events "
                    f"where id in ({','.join('?' * len(chunk))})", chunk)]
        return sorted(out, key=lambda r: r.seq)

    def rows_by_seq(self, seqs: list[int]) -> list[OutboxRow]:
        """The rows with these seqs that are still stored, in seq order (primary-key lookups)."""
        out: list[OutboxRow] = []
        with self._lock:
            for i in range(0, len(seqs), 500):
                chunk = seqs[i:i + 500]
                out += [OutboxRow(r[0], r[1], r[2], SEVERITIES[r[3]], bytes(r[4])) for r in self._db.execute(
                    "select seq, id, type, severity, payload from events "
                    f"where seq in ({','.join('?' * len(chunk))})", chunk)]
        return sorted(out, key=lambda r: r.seq)

    def __iter__(self) -> Iterator[OutboxRow]:
        after = 0
        while True:
            rows = self.pending(after, 500)
            if not rows:
                return
            yield from rows
            after = rows[-1].seq

    def __len__(self) -> int:
        with self._lock:
            self._refresh()
            return self._count

    def last_seq(self) -> int:
        """The seq of the newest event ever stored (== how many events were ever put)."""
        with self._lock:
            self._refresh()
            return self._last_seq

    def evicted_total(self) -> int:
        with self._lock:
            return self._meta().get("evicted_total", 0)

    def _meta(self) -> dict[str, int]:
        return dict(self._db.execute("select key, value from meta").fetchall())

    def add_listener(self, callback: Callable[[OutboxRow], None]) -> None:
        """`callback(row)` runs after every successful put in this process, with the committed row (the
        client hands it straight to its publisher instead of reading it back)."""
        self._listeners.append(callback)

    def close(self) -> None:
        with self._lock:
            self._db.close()
