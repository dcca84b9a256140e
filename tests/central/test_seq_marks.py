"""The centre's per-device seq tracking (SqlMonitorStore.advance_seqs) on PostgreSQL (one set-based
statement; also inside store_batch, the one-transaction insert + advance the monitor calls) and SQLite
(the ORM walk): the same marks and gap clocks for the same batches."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from sqlalchemy import select

from central.app import Centre
from central.models import SeqMark
from firmware.telemetry.events import encode, make_event


@pytest.fixture(params=["postgresql", "sqlite", "postgresql-store_batch"])
def store_centre(request, tmp_path: Path):
    if request.param.startswith("postgresql"):
        c = request.getfixturevalue("centre")
        c.one_transaction = request.param.endswith("store_batch")  # what the monitor calls (one transaction)
        yield c
        return
    c = Centre(tmp_path / "sqlite-centre")
    c.init()
    try:
        yield c
    finally:
        c.close()


def _deliver(centre: Centre, batch: list[tuple[str, int]], now: float) -> None:
    items = []
    for device, seq in batch:
        e = make_event(device, "access_granted").with_seq(seq)
        items.append((e, encode(e)))
    firsts: dict[str, int] = {}
    for device, seq in batch:
        firsts[device] = min(firsts.get(device, seq), seq)
    if getattr(centre, "one_transaction", False):
        assert {e.id for e in centre.monitor.store_batch(items, firsts, now)} <= {e.id for e, _ in items}
        return
    centre.monitor.insert_events(items)
    centre.monitor.advance_seqs(firsts, now)


def _marks(centre: Centre) -> dict[str, tuple]:
    with centre.db.session() as s:
        return {m.device: (m.contiguous, m.gap_since, m.tries, m.alerted) for m in s.scalars(select(SeqMark))}


def test_marks_move_over_stored_seqs_and_gaps_keep_their_clock(store_centre: Centre) -> None:
    c = store_centre
    _deliver(c, [("d1", n) for n in range(1, 6)] + [("d2", 3), ("d2", 4)], 10.0)
    assert _marks(c) == {"d1": (5, None, 0, 0), "d2": (4, None, 0, 0)}
    _deliver(c, [("d1", 7), ("d1", 8)], 20.0)
    assert _marks(c)["d1"] == (5, 20.0, 0, 0)
    assert c.monitor.gaps_due(26.0, 5.0) == [("d1", [[6, 6]], 0)]
    assert c.monitor.claim_gap_alert("d1") and not c.monitor.claim_gap_alert("d1")
    c.monitor.gap_tried("d1", 26.0)
    _deliver(c, [("d1", 9)], 30.0)  # the same gap: its clock and tries stay
    assert _marks(c)["d1"] == (5, 26.0, 1, 1)
    _deliver(c, [("d1", 6), ("d2", 5)], 40.0)  # the hole filled: the mark walks to the end, gap cleared
    assert _marks(c) == {"d1": (9, None, 0, 0), "d2": (5, None, 0, 0)}
    _deliver(c, [("d1", 10), ("d1", 10), ("d1", 12)], 50.0)  # a seq stored twice (two ids) is still one step
    assert _marks(c)["d1"] == (10, 50.0, 0, 0)
    _deliver(c, [("d1", 14)], 60.0)  # a further hole past the first: same gap, still at 10
    assert _marks(c)["d1"] == (10, 50.0, 0, 0)
    _deliver(c, [("d1", 11)], 70.0)  # first hole filled, the next one remains: a new gap clock
    assert _marks(c)["d1"] == (12, 70.0, 0, 0)
    c.monitor.close_gap("d1")  # given up as lost: walks on over what is stored
    assert _marks(c)["d1"][:2] == (14, None)


def test_random_delivery_order_ends_at_the_contiguous_prefix(store_centre: Centre) -> None:
    rng = random.Random(7)
    c = store_centre
    sent = {f"d{i}": list(range(1, 41)) for i in range(12)}
    stream = [(d, s) for d, seqs in sent.items() for s in seqs]
    first = [(d, 1) for d in sent]
    rest = [x for x in stream if x[1] != 1]
    rng.shuffle(rest)
    dropped = set(rng.sample(rest, 15))
    t = 100.0
    _deliver(c, first, t)
    todo = [x for x in rest if x not in dropped]
    while todo:
        k = rng.randint(1, 40)
        batch, todo = todo[:k], todo[k:]
        t += 1
        _deliver(c, batch, t)
    delivered = {d: {1} for d in sent}
    for d, s in rest:
        if (d, s) not in dropped:
            delivered[d].add(s)
    marks = _marks(c)
    for d, got in delivered.items():
        expect = 0
        while expect + 1 in got:
            expect += 1
        assert marks[d][0] == expect
        assert (marks[d][1] is None) == (expect == max(got))
