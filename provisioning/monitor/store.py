"""The monitor's SQLite store: events de-duplicated by id, alerts, device availability, counters.

Several monitor processes (one shared-subscription group) may write the same file: WAL plus
`insert or ignore` on the event id make a resent or twice-delivered event land exactly once.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from firmware.telemetry.events import Event
from provisioning.monitor.gaps import SCAN_LIMIT, missing_ranges
from provisioning.monitor.rules import Alert

_SCHEMA = """
create table if not exists events(
    rowid integer primary key,
    id text not null unique,
    device text not null,
    type text not null,
    severity text not null,
    ts real not null,
    seq integer not null,
    stored_at real not null,
    payload text not null
);
create table if not exists alerts(
    aid integer primary key,
    rule text not null,
    device text not null,
    ts real not null,
    detail text not null,
    event_id text
);
create table if not exists devices(device text primary key, availability text, changed_at real);
create index if not exists events_device_seq on events(device, seq);
-- Per-device seq tracking: every seq <= contiguous is stored (or was given up as lost); gap_since is when
-- a later seq was first seen with a hole before it.
create table if not exists seqs(device text primary key, contiguous integer not null, gap_since real,
                                tries integer not null default 0, alerted integer not null default 0);
create table if not exists counters(name text primary key, value integer not null);
"""


class MonitorStore:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(self.path), isolation_level=None, check_same_thread=False, timeout=60)
        self._db.execute("pragma journal_mode=wal")
        self._db.execute("pragma synchronous=FULL")
        self._db.executescript(_SCHEMA)

    def insert_events(self, items: Iterable[tuple[Event, bytes]]) -> list[Event]:
        """Store a batch in one transaction; returns the events that were new (not seen by id before)."""
        items = list(items)
        if not items:
            return []
        now = time.time()
        with self._lock:
            self._db.execute("begin immediate")
            try:
                seen: set[str] = set()
                ids = [e.id for e, _ in items]
                for i in range(0, len(ids), 500):
                    chunk = ids[i:i + 500]
                    seen.update(r[0] for r in self._db.execute(
                        f"select id from events where id in ({','.join('?' * len(chunk))})", chunk))
                new: list[Event] = []
                rows = []
                for event, raw in items:
                    if event.id in seen:
                        continue
                    seen.add(event.id)  # a duplicate inside the batch too
                    new.append(event)
                    rows.append((event.id, event.device, event.type, event.severity, event.ts, event.seq, now,
                                 raw.decode()))
                self._db.executemany(
                    "insert into events(id, device, type, severity, ts, seq, stored_at, payload) "
                    "values (?,?,?,?,?,?,?,?)", rows)
                if len(items) > len(new):
                    self._bump("duplicates", len(items) - len(new))
                self._db.execute("commit")
            except BaseException:
                self._db.execute("rollback")
                raise
        return new

    def insert_alerts(self, alerts: list[Alert]) -> None:
        if not alerts:
            return
        with self._lock:
            self._db.execute("begin immediate")
            self._db.executemany("insert into alerts(rule, device, ts, detail, event_id) values (?,?,?,?,?)",
                                 [(a.rule, a.device, a.ts, a.detail, a.event_id) for a in alerts])
            self._db.execute("commit")

    def set_availability(self, device: str, status: str, now: float) -> None:
        with self._lock:
            self._db.execute("insert into devices(device, availability, changed_at) values (?,?,?) "
                             "on conflict(device) do update set availability=excluded.availability, "
                             "changed_at=excluded.changed_at", (device, status, now))

    # -- per-device seq gaps (issue 11 item 4) ----------------------------------------------------
    def known_devices(self) -> list[str]:
        with self._lock:
            return [r[0] for r in self._db.execute("select device from devices union select device from seqs")]

    def advance_seqs(self, firsts: dict[str, int], now: float) -> None:
        """After a batch: move each device's contiguous mark over what is stored; note when a gap opens.

        A device seen for the first time starts at its lowest seq in the batch (what came before was stored
        by an earlier monitor, or evicted and reported by the device)."""
        if not firsts:
            return
        with self._lock:
            self._db.execute("begin immediate")
            try:
                for device, first in firsts.items():
                    row = self._db.execute("select contiguous, gap_since from seqs where device=?", (device,)).fetchone()
                    if row is None:
                        self._db.execute("insert into seqs(device, contiguous) values (?, ?)", (device, first - 1))
                        row = (first - 1, None)
                    self._advance(device, row[0], row[1], now)
                self._db.execute("commit")
            except BaseException:
                self._db.execute("rollback")
                raise

    def _advance(self, device: str, contiguous: int, gap_since: float | None, now: float) -> None:
        c = contiguous
        while True:
            seqs = [r[0] for r in self._db.execute(
                "select seq from events where device=? and seq>? order by seq limit 2000", (device, c))]
            moved = False
            for seq in seqs:
                if seq != c + 1:
                    break
                c = seq
                moved = True
            if not moved or len(seqs) < 2000 or seqs[-1] != c:
                break
        later = self._db.execute("select 1 from events where device=? and seq>? limit 1", (device, c)).fetchone()
        if later is None:
            self._db.execute("update seqs set contiguous=?, gap_since=null, tries=0, alerted=0 where device=?",
                             (c, device))
        elif c != contiguous or gap_since is None:
            # A new (or a different) gap: its clock starts now.
            self._db.execute("update seqs set contiguous=?, gap_since=?, tries=0, alerted=0 where device=?",
                             (c, now, device))

    def _ranges(self, device: str, contiguous: int) -> list[list[int]]:
        return missing_ranges((r[0] for r in self._db.execute(
            "select seq from events where device=? and seq>? order by seq limit ?", (device, contiguous, SCAN_LIMIT))),
            contiguous)

    def gaps_due(self, now: float, grace_s: float) -> list[tuple[str, list[list[int]], int]]:
        """(device, missing seq ranges, resend tries so far) of gaps open for at least grace_s."""
        with self._lock:
            rows = self._db.execute("select device, contiguous, tries from seqs where gap_since is not null "
                                    "and gap_since<=?", (now - grace_s,)).fetchall()
            return [(d, self._ranges(d, c), t) for d, c, t in rows]

    def claim_gap_alert(self, device: str) -> bool:
        """True once per gap (several monitors may share this file: one of them alerts)."""
        with self._lock:
            return self._db.execute("update seqs set alerted=1 where device=? and alerted=0",
                                    (device,)).rowcount == 1

    def gap_tried(self, device: str, now: float) -> None:
        with self._lock:
            self._db.execute("update seqs set tries=tries+1, gap_since=? where device=?", (now, device))

    def close_gap(self, device: str) -> None:
        """Give the current gap up as lost: the mark jumps to the next stored seq and walks on."""
        with self._lock:
            self._db.execute("begin immediate")
            try:
                c = self._db.execute("select contiguous from seqs where device=?", (device,)).fetchone()[0]
                nxt = self._db.execute("select min(seq) from events where device=? and seq>?", (device, c)).fetchone()[0]
                if nxt is not None:
                    self._bump("events_lost", nxt - 1 - c)
                    self._db.execute("update seqs set contiguous=?, gap_since=null, tries=0, alerted=0 "
                                     "where device=?", (nxt - 1, device))
                    self._advance(device, nxt - 1, None, time.time())
                self._db.execute("commit")
            except BaseException:
                self._db.execute("rollback")
                raise

    def count_malformed(self, kind: str, n: int = 1) -> None:
        with self._lock:
            self._bump("malformed", n)
            self._bump(f"malformed_{kind}", n)

    def _bump(self, name: str, n: int) -> None:
        self._db.execute("insert into counters(name, value) values (?, ?) "
                         "on conflict(name) do update set value=value+excluded.value", (name, n))

    # -- reading ---------------------------------------------------------------------------------
    def event_count(self) -> int:
        with self._lock:
            return self._db.execute("select count(*) from events").fetchone()[0]

    def last_rowid(self) -> int:
        """The rowid of the newest stored event (0 when empty): a mark for `count_after`."""
        with self._lock:
            return self._db.execute("select coalesce(max(rowid), 0) from events").fetchone()[0]

    def count_after(self, rowid: int) -> int:
        """Events stored after the `last_rowid()` mark: reads only those rows, unlike `event_count`, whose
        full count would cost a polling benchmark more and more CPU as the store grows."""
        with self._lock:
            return self._db.execute("select count(*) from events where rowid > ?", (rowid,)).fetchone()[0]

    def counters(self) -> dict[str, int]:
        with self._lock:
            return dict(self._db.execute("select name, value from counters").fetchall())

    def events_after(self, rowid: int, limit: int = 200) -> list[tuple[int, dict[str, Any]]]:
        with self._lock:
            rows = self._db.execute(
                "select rowid, id, device, type, severity, ts, seq, stored_at from events where rowid>? "
                "order by rowid limit ?", (rowid, limit)).fetchall()
        keys = ("id", "device", "type", "severity", "ts", "seq", "stored_at")
        return [(r[0], dict(zip(keys, r[1:], strict=True))) for r in rows]

    def alerts_after(self, aid: int, limit: int = 200) -> list[tuple[int, dict[str, Any]]]:
        with self._lock:
            rows = self._db.execute("select aid, rule, device, ts, detail, event_id from alerts where aid>? "
                                    "order by aid limit ?", (aid, limit)).fetchall()
        keys = ("rule", "device", "ts", "detail", "event_id")
        return [(r[0], dict(zip(keys, r[1:], strict=True))) for r in rows]

    def heartbeat_data(self, device: str | None = None) -> list[tuple[str, dict[str, Any]]]:
        """(device, data) of every stored heartbeat, oldest first: the audit chain heads (audit_anchors)."""
        q, args = "select device, payload from events where type='heartbeat'", ()
        if device is not None:
            q, args = q + " and device=?", (device,)
        with self._lock:
            rows = self._db.execute(q + " order by rowid", args).fetchall()
        out = []
        for dev, payload in rows:
            try:
                data = json.loads(payload).get("data")
            except (ValueError, AttributeError):
                continue
            if isinstance(data, dict):
                out.append((dev, data))
        return out

    def alerts(self) -> list[dict[str, Any]]:
        return [a for _, a in self.alerts_after(0, 1_000_000)]

    def latencies(self) -> list[float]:
        """stored_at - ts of every event (seconds), for the benchmark."""
        with self._lock:
            return [r[0] for r in self._db.execute("select stored_at - ts from events")]

    def latencies_for(self, device: str) -> list[float]:
        with self._lock:
            return [r[0] for r in self._db.execute("select stored_at - ts from events where device=?", (device,))]

    def report(self) -> dict[str, Any]:
        with self._lock:
            per_device: dict[str, dict[str, int]] = {}
            for device, type_, n in self._db.execute(
                    "select device, type, count(*) from events group by device, type order by device, type"):
                per_device.setdefault(device, {})[type_] = n
            per_type = dict(self._db.execute("select type, count(*) from events group by type order by type"))
            alerts: dict[str, dict[str, int]] = {}
            for rule, device, n in self._db.execute(
                    "select rule, device, count(*) from alerts group by rule, device order by rule, device"):
                alerts.setdefault(rule, {})[device] = n
            availability = {d: {"availability": a, "changed_at": t}
                            for d, a, t in self._db.execute("select device, availability, changed_at from devices")}
            total = self._db.execute("select count(*) from events").fetchone()[0]
            counters = dict(self._db.execute("select name, value from counters").fetchall())
        return {
            "events_total": total,
            "events_per_device": {d: {"total": sum(t.values()), "by_type": t} for d, t in per_device.items()},
            "events_per_type": per_type,
            "alerts_per_rule": {r: {"total": sum(d.values()), "by_device": d} for r, d in alerts.items()},
            "alerts_total": sum(sum(d.values()) for d in alerts.values()),
            "devices": availability,
            "counters": counters,
        }

    def close(self) -> None:
        with self._lock:
            self._db.close()
