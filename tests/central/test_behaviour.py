"""Behaviour rules on real PostgreSQL: unusual door / hour for a person, a burst of denials across doors,
a door that went silent; each finding stored once even with two analysers."""

from __future__ import annotations

import datetime as dt
import time
import zoneinfo

import pytest

from central.app import Centre
from central.behaviour import (
    Analyzer,
    BehaviourConfig,
    Habits,
    denial_burst,
    hour_of,
    site_zone,
    unusual_access,
)
from central.errors import CentralError
from firmware.telemetry.events import encode, make_event

BASE = dt.datetime(2026, 11, 30, 9, 0, tzinfo=dt.timezone.utc).timestamp()  # a Monday, 09:00 UTC


def _ev(device: str, type_: str, ts: float, seq: int, user: str | None = None):
    e = make_event(device, type_, user_id=user, ts=ts).with_seq(seq)
    return e, encode(e)


UTC = dt.timezone.utc


def _habits(n: int, tz=UTC) -> Habits:
    h = Habits()
    for i in range(n):
        h.add("door-a", hour_of(BASE + 86400 * i, tz))
    return h


def test_pure_decisions() -> None:
    assert unusual_access(_habits(5), "door-z", 9, 20) is None  # too little history to judge
    assert unusual_access(_habits(20), "door-a", hour_of(BASE + 1800, UTC), 20) is None
    assert "first grant at door-b" in unusual_access(_habits(20), "door-b", 9, 20)
    assert "03h (UTC)" in unusual_access(_habits(20), "door-a", hour_of(BASE - 6 * 3600, UTC), 20, "UTC")
    assert denial_burst([(1.0, "a"), (2.0, "b")], 3.0, 60, 3) is None
    assert denial_burst([(1.0, "a"), (2.0, "b"), (3.0, "c")], 3.0, 60, 3) == {"a", "b", "c"}
    assert denial_burst([(1.0, "a"), (2.0, "b"), (3.0, "c")], 100.0, 60, 3) is None


def test_behaviour_alerts_on_postgres_once_each(centre: Centre) -> None:
    store = centre.monitor
    seq = {"door-a": 0, "door-b": 0, "door-c": 0}

    def put(device, type_, ts, user=None, skip=0):  # what the monitor does with a batch: store, move the mark
        seq[device] += 1 + skip
        store.insert_events([_ev(device, type_, ts, seq[device], user)])
        store.advance_seqs({device: seq[device]}, time.time())

    for day in range(25):  # Ann always at door-a around 09:00
        put("door-a", "access_granted", BASE + day * 86400, "ann")
    analysers = [Analyzer(centre.db, BehaviourConfig(silent_after_s=3600, tz=UTC)) for _ in range(2)]
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


def test_hours_are_the_sites_local_hours(centre: Centre) -> None:
    """Ann comes at 09:00 in New York (14:00 UTC) every day; the rule judges and reports New York hours,
    so a grant at 09:00 UTC is 04h there and unusual, and her usual 09:00 is not."""
    ny = zoneinfo.ZoneInfo("America/New_York")
    morning = dt.datetime(2026, 11, 2, 9, 0, tzinfo=ny).timestamp()
    for day in range(25):
        centre.monitor.insert_events([_ev("door-a", "access_granted", morning + day * 86400, day + 1, "ann")])
    an = Analyzer(centre.db, BehaviourConfig(tz=ny))
    now = morning + 30 * 86400
    assert an.run(now) == []
    centre.monitor.insert_events([_ev("door-a", "access_granted", now + 600, 26, "ann")])  # 09:10 local
    assert an.run(now + 700) == []
    at_9_utc = dt.datetime(2026, 12, 3, 9, 0, tzinfo=UTC).timestamp()
    centre.monitor.insert_events([_ev("door-a", "access_granted", at_9_utc, 27, "ann")])
    (alert,) = an.run(at_9_utc + 60)
    assert "04h (America/New_York)" in alert.detail


def test_the_time_zone_is_checked() -> None:
    assert site_zone("Europe/Paris") == zoneinfo.ZoneInfo("Europe/Paris")
    assert site_zone("") is not None  # the system's zone
    with pytest.raises(CentralError, match="unknown time zone"):
        site_zone("Mars/Olympus")
