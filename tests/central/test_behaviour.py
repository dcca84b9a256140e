"""Behaviour rules on real PostgreSQL: unusual door / hour for a person, a burst of denials across doors,
a door that went silent; each finding stored once even with two analysers."""

from __future__ import annotations

import datetime as dt

from central.app import Centre
from central.behaviour import Analyzer, BehaviourConfig, denial_burst, unusual_access
from firmware.telemetry.events import encode, make_event

BASE = dt.datetime(2026, 11, 30, 9, 0, tzinfo=dt.timezone.utc).timestamp()  # a Monday, 09:00 UTC


def _ev(device: str, type_: str, ts: float, seq: int, user: str | None = None):
    e = make_event(device, type_, user_id=user, ts=ts).with_seq(seq)
    return e, encode(e)


def test_pure_decisions() -> None:
    hist = [("door-a", BASE + 86400 * i) for i in range(20)]
    assert unusual_access(hist[:5], "door-z", BASE, 20) is None  # too little history to judge
    assert unusual_access(hist, "door-a", BASE + 1800, 20) is None
    assert "first grant at door-b" in unusual_access(hist, "door-b", BASE, 20)
    assert "03h UTC" in unusual_access(hist, "door-a", BASE - 6 * 3600, 20)
    assert denial_burst([(1.0, "a"), (2.0, "b")], 3.0, 60, 3) is None
    assert denial_burst([(1.0, "a"), (2.0, "b"), (3.0, "c")], 3.0, 60, 3) == {"a", "b", "c"}
    assert denial_burst([(1.0, "a"), (2.0, "b"), (3.0, "c")], 100.0, 60, 3) is None


def test_behaviour_alerts_on_postgres_once_each(centre: Centre) -> None:
    store = centre.monitor
    seq = {"door-a": 0, "door-b": 0, "door-c": 0}

    def put(device, type_, ts, user=None, skip=0):
        seq[device] += 1 + skip
        store.insert_events([_ev(device, type_, ts, seq[device], user)])

    for day in range(25):  # Ann always at door-a around 09:00
        put("door-a", "access_granted", BASE + day * 86400, "ann")
    analysers = [Analyzer(centre.db, BehaviourConfig(silent_after_s=3600)) for _ in range(2)]
    now = BASE + 30 * 86400
    assert len(analysers[0].run(now)) == 0  # nothing unusual in a steady history
    put("door-b", "access_granted", now, "ann")                # a new door for Ann
    put("door-a", "access_granted", now - 6 * 3600, "ann")     # and 03:00
    for d in ("door-a", "door-b", "door-c"):                    # denials across three doors in a minute
        put(d, "access_denied", now + 10)
    assert len(analysers[0].run(now + 30)) == 3  # unusual x2, burst
    assert len(analysers[1].run(now + 30)) == 0 and len(analysers[0].run(now + 30)) == 0  # stored once
    rules = sorted(a["rule"] for a in store.alerts())
    assert rules == ["denial_burst", "unusual_access", "unusual_access"]
    # a door that stops reporting (it is a registered door)
    import tempfile
    from pathlib import Path

    from central.simdoor import SimDoor

    d = SimDoor(Path(tempfile.mkdtemp()) / "a", "door-a")
    d.install(centre.registry.submit(d.csr(), centre.registry.create_token("op")))
    centre.directory.add_door("door-a", "A", "op")
    assert len(analysers[1].run(now + 30 + 7200)) == 1
    assert len(analysers[0].run(now + 30 + 7300)) == 0
    assert [a["device"] for a in store.alerts() if a["rule"] == "silent_door"] == ["door-a"]
