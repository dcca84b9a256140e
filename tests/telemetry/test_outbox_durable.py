"""The SQLite outbox: committed before put returns, ordered, acked only explicitly, bounded with a
severity-aware eviction that is itself reported."""

from __future__ import annotations

import multiprocessing
import os
import signal
from pathlib import Path

import pytest

from firmware.telemetry.errors import EventValidationError, OutboxError
from firmware.telemetry.events import decode, make_event
from firmware.telemetry.outbox import Outbox


def test_put_assigns_seq_and_keeps_payload(tmp_path: Path) -> None:
    ob = Outbox(tmp_path / "o.db")
    a = ob.put(make_event("d1", "door_opened"))
    b = ob.put(make_event("d1", "door_closed"))
    assert (a.seq, b.seq) == (1, 2)
    rows = list(ob)
    assert [r.seq for r in rows] == [1, 2]
    assert decode(rows[0].payload) == a
    assert ob.ack(a.id) == 1 and ob.ack(a.id) == 0
    assert [r.id for r in ob] == [b.id]
    assert ob.ack_seq([(b.seq, "wrong-id")]) == 0  # both must match
    assert ob.ack_seq([(b.seq, b.id)]) == 1 and len(ob) == 0


def test_survives_reopen_and_keeps_ids_and_seq(tmp_path: Path) -> None:
    ob = Outbox(tmp_path / "o.db")
    ids = [ob.put(make_event("d1", "access_granted")).id for _ in range(5)]
    ob.ack(ids[0])
    ob.close()
    ob2 = Outbox(tmp_path / "o.db")
    assert [r.id for r in ob2] == ids[1:]
    assert ob2.put(make_event("d1", "tamper")).seq == 6  # never reuses a seq, even after deletes
    assert oct(os.stat(tmp_path / "o.db").st_mode & 0o777) == "0o600"


def _child_puts(path: str, n: int, ready) -> None:
    ob = Outbox(path)
    for i in range(n):
        ob.put(make_event("d1", "access_granted", i=i))
        if i == n // 2:
            ready.set()
    ready.set()
    while True:  # wait to be SIGKILLed mid-life
        ob.put(make_event("d1", "heartbeat"))


def test_killed_writer_loses_nothing_it_committed(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("spawn")
    ready = ctx.Event()
    p = ctx.Process(target=_child_puts, args=(str(tmp_path / "o.db"), 400, ready))
    p.start()
    assert ready.wait(30)
    os.kill(p.pid, signal.SIGKILL)
    p.join(10)
    ob = Outbox(tmp_path / "o.db")
    rows = list(ob)
    # Every committed row is intact and in order, and the seq counter matches what was stored.
    assert len(rows) >= 201
    assert [r.seq for r in rows] == list(range(1, len(rows) + 1))
    assert ob.last_seq() == len(rows)
    assert all(decode(r.payload).seq == r.seq for r in rows)


def test_eviction_drops_lowest_severity_oldest_first_and_reports(tmp_path: Path) -> None:
    ob = Outbox(tmp_path / "o.db", max_events=5)
    crit = ob.put(make_event("d1", "tamper"))            # critical
    info1 = ob.put(make_event("d1", "door_opened"))      # info
    warn = ob.put(make_event("d1", "access_denied"))     # warning
    info2 = ob.put(make_event("d1", "door_closed"))      # info
    dbg = ob.put(make_event("d1", "state_changed"))      # debug
    ob.put(make_event("d1", "access_granted"))           # full: evicts the debug one
    ob.put(make_event("d1", "access_granted"))           # then the oldest info
    left = {r.id for r in ob}
    assert dbg.id not in left and info1.id not in left
    assert {crit.id, warn.id, info2.id} <= left
    assert len(ob) == 5 and ob.evicted_total() == 2
    report = ob.put_eviction_report("d1")
    assert report is not None and report.type == "outbox_evicted"
    assert report.data["evicted_debug"] == 1
    assert report.data["evicted"] == 3 and report.data["evicted_info"] == 2  # its own room counted too
    assert ob.put_eviction_report("d1") is None
    assert any(r.type == "outbox_evicted" for r in ob)


def test_bad_event_is_refused_and_changes_nothing(tmp_path: Path) -> None:
    ob = Outbox(tmp_path / "o.db")
    with pytest.raises(EventValidationError):
        make_event("d1", "access_granted", image="....")
    ob.put(make_event("d1", "access_granted"))
    assert len(ob) == 1 and ob.last_seq() == 1


def test_unopenable_path_is_a_typed_error(tmp_path: Path) -> None:
    (tmp_path / "dir.db").mkdir()
    with pytest.raises(OutboxError):
        Outbox(tmp_path / "dir.db")


def test_two_connections_share_one_outbox(tmp_path: Path) -> None:
    """Like a controller process putting and a telemetry process acking: seqs stay unique and dense."""
    a, b = Outbox(tmp_path / "o.db"), Outbox(tmp_path / "o.db")
    seqs = []
    for i in range(50):
        seqs.append((a if i % 3 else b).put(make_event("d1", "access_granted")).seq)
    assert seqs == list(range(1, 51))
    rows = list(b)
    assert b.ack_seq([(r.seq, r.id) for r in rows[:10]]) == 10
    assert len(a) == 40 and len(b) == 40 and a.last_seq() == 50
    assert a.put(make_event("d1", "tamper")).seq == 51


def test_rows_by_seq_and_by_id(tmp_path: Path) -> None:
    ob = Outbox(tmp_path / "o.db")
    evs = [ob.put(make_event("d1", "door_opened")) for _ in range(5)]
    assert [r.id for r in ob.rows_by_seq([4, 2, 99])] == [evs[1].id, evs[3].id]
    assert [r.seq for r in ob.rows([evs[4].id, evs[0].id])] == [1, 5]


def test_nowait_reads_and_deletes_step_aside_while_another_thread_holds_the_outbox(tmp_path: Path) -> None:
    """The network thread must never queue behind a producer busy in put(): it skips and retries."""
    import threading

    ob = Outbox(tmp_path / "o.db")
    rows = [ob.put(make_event("d1", "access_granted")) for _ in range(600)]
    entries = [(e.seq, e.id) for e in rows]
    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        with ob._lock:  # what a put does while it commits
            held.set()
            release.wait(10)

    t = threading.Thread(target=hold)
    t.start()
    try:
        assert held.wait(10)
        assert ob.pending_nowait(0, 10) is None
        assert ob.ack_seq_nowait(entries) == 0
    finally:
        release.set()
        t.join()
    assert [r.seq for r in ob.pending_nowait(0, 3)] == [1, 2, 3]
    assert ob.ack_seq_nowait(entries[:500], chunk=128) == 500  # in short transactions
    assert [r.seq for r in ob] == list(range(501, 601))
    assert ob.ack_seq_nowait(entries) == 600 and len(ob) == 0  # already-deleted entries are harmless


def test_seq_is_never_reused_even_when_every_row_was_deleted(tmp_path: Path) -> None:
    ob = Outbox(tmp_path / "o.db")
    rows = [ob.put(make_event("d1", "access_granted")) for _ in range(3)]
    assert ob.ack_seq([(e.seq, e.id) for e in rows]) == 3 and len(ob) == 0
    assert ob.put(make_event("d1", "door_opened")).seq == 4
    last = list(ob)[0]
    ob.ack(last.id)
    ob.close()
    ob2 = Outbox(tmp_path / "o.db")  # a new process: nothing left in the table, the mark remains
    assert ob2.last_seq() == 4 and ob2.put(make_event("d1", "tamper")).seq == 5


def test_an_outbox_file_from_the_autoincrement_schema_keeps_counting(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "old.db"
    con = sqlite3.connect(path)
    con.executescript("""
        create table events(seq integer primary key autoincrement, id text not null, type text not null,
                            severity integer not null, created real not null, payload blob not null);
        create table meta(key text primary key, value integer not null);
    """)
    for i in range(1, 8):
        con.execute("insert into events(id, type, severity, created, payload) values (?,?,?,?,?)",
                    (f"id{i}", "heartbeat", 0, 1.0, b"{}"))
    con.execute("delete from events")
    con.commit()
    con.close()
    ob = Outbox(path)
    assert ob.put(make_event("d1", "tamper")).seq == 8
