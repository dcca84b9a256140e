"""What the console's pages rest on in the centre: the locks' retained state topic stored by the worker
(central.doorstate, real mosquitto with mutual TLS and real PostgreSQL, a real lock telemetry client
publishing), its parser on bad input, how the console merges it with the events, and the centre's
`stranger` alert rule."""

from __future__ import annotations

import json
import time

import pytest
from sqlalchemy import select

from central.alert_rules import CentreAlertRules, stranger
from central.console import doorstate as console_state
from central.doorstate import DoorStateIngest, DoorStateStore, ReportedState, StateError, parse_state
from central.models import DoorReportedState
from central.simdoor import SimDoor
from firmware.telemetry.client import TelemetryClient
from firmware.telemetry.events import make_event
from firmware.telemetry.outbox import Outbox
from tests.central.conftest import central_settings
from tests.support.mqtt_broker import wait_until

OP = "test-setup"
GOOD = {"lock": "LOCKED", "door": "closed", "tamper": False, "lockdown": False, "last_event": "idle", "v": 1,
        "ts": 1764662400.0}


def _payload(**kw) -> bytes:  # noqa: ANN003
    return json.dumps(GOOD | kw).encode()


def test_parse_state_takes_the_locks_schema_and_refuses_anything_else():
    st = parse_state("facelock/door-a/state", _payload())
    assert st == ReportedState("door-a", "LOCKED", "closed", False, False, "IDLE", 1764662400.0)
    assert parse_state("facelock/door-a/state", _payload(last_event=None)).machine is None
    bad = [("facelock/door-a/event/x", _payload()), ("facelock/+/state", _payload()),
           ("facelock/door-a/state", b"\xff"), ("facelock/door-a/state", b"[1]"),
           ("facelock/door-a/state", _payload(v=2)), ("facelock/door-a/state", _payload(lock="OPEN")),
           ("facelock/door-a/state", _payload(door="ajar")), ("facelock/door-a/state", _payload(tamper="no")),
           ("facelock/door-a/state", _payload(lockdown=1)), ("facelock/door-a/state", _payload(ts="now")),
           ("facelock/door-a/state", _payload(ts=True)), ("facelock/door-a/state", _payload(last_event="party")),
           ("facelock/door-a/state", _payload(pad="x" * 2000))]
    for topic, payload in bad:
        with pytest.raises(StateError):
            parse_state(topic, payload)


def test_merge_prefers_the_state_topic_and_keeps_what_only_events_say():
    events = [{"type": "state_changed", "ts": 10.0, "data": {"state": "UNLOCKED"}},
              {"type": "command_result", "reason": "lockdown", "ts": 20.0, "data": {"mode": "nobody"}}]
    derived = console_state.derive(events)
    assert (derived.lock, derived.machine, derived.source) == ("unlocked", "UNLOCKED", "events")
    topic = {"lock": "LOCKED", "door": "open", "tamper": True, "lockdown": True, "machine": "TAMPER", "ts": 30.0}
    m = console_state.merge(derived, topic)
    assert (m.lock, m.machine, m.door, m.tamper, m.source) == ("locked", "TAMPER", "open", True, "state topic")
    assert m.lockdown == "nobody"  # which lockdown: only the events say
    # a lockdown lifted after the topic was published: the newer (the event) wins
    lifted = console_state.derive([*events, {"type": "command_result", "reason": "lockdown", "ts": 40.0,
                                             "data": {"mode": "off"}}])
    assert console_state.merge(lifted, topic).lockdown == "off"
    assert console_state.merge(derived, topic | {"lockdown": False, "ts": 50.0}).lockdown == "off"
    assert console_state.merge(console_state.derive([]), None).source == "nothing yet"


def test_the_stranger_rule_is_an_unrecognised_face_only():
    unknown = make_event("door-a", "access_denied", reason="below_threshold")
    known = make_event("door-a", "access_denied", user_id="u-1", reason="schedule")
    a = stranger(unknown)
    assert a is not None and (a.rule, a.device, a.event_id) == ("stranger", "door-a", unknown.id)
    assert "below_threshold" in a.detail
    assert stranger(known) is None and stranger(make_event("door-a", "access_granted", user_id="u-1")) is None
    rules = CentreAlertRules()  # the shipped thresholds: the third denial in 60 s is also a burst
    out = [[x.rule for x in rules.on_event(make_event("door-a", "access_denied", reason="unknown"))]
           for _ in range(3)]
    assert out == [["stranger"], ["stranger"], ["denied_burst", "stranger"]]
    assert [x.rule for x in rules.on_event(make_event("door-a", "tamper", reason="door_forced"))] == ["tamper"]


def test_worker_ingest_stores_the_retained_state_of_active_doors(centre, fleet_broker, tmp_path):  # noqa: ANN001
    door = SimDoor(tmp_path / "door-a", "door-a")
    door.install(centre.registry.submit(door.csr(), centre.registry.create_token(OP)))
    from central.broker import register_door

    register_door(fleet_broker, "door-a")
    client = TelemetryClient(door.mqtt_config(fleet_broker.host, fleet_broker.port), Outbox(tmp_path / "ob.db"))
    client.start()
    ingest = None
    try:
        assert client.wait_connected(15)
        client.publish_state(lock="LOCKED", door="closed", tamper=False, lockdown=False, last_event="idle")

        def stored() -> DoorReportedState | None:
            with centre.db.session() as s:
                r = s.get(DoorReportedState, "door-a")
                s.expunge_all()
                return r

        # started after the door published: the retained message is what it gets
        time.sleep(0.5)
        ingest = DoorStateIngest(centre.db, central_settings(fleet_broker))
        ingest.start()
        assert ingest.wait_connected(15)
        assert wait_until(lambda: stored() is not None, 10), ingest.stats
        r = stored()
        assert (r.lock, r.door, r.tamper, r.lockdown, r.machine) == ("LOCKED", "closed", False, False, "IDLE")
        client.publish_state(door="open", tamper=True, last_event="tamper")
        assert wait_until(lambda: (stored().machine, stored().door, stored().tamper) == ("TAMPER", "open", True), 10)
        newest = stored().ts
    finally:
        client.stop()
        if ingest is not None:
            ingest.stop()
    # several workers write: an older state never overwrites a newer one; unknown devices are dropped
    store = DoorStateStore(centre.db)
    assert store.write([ReportedState("door-a", "UNLOCKED", "closed", False, False, "UNLOCKED", newest - 5)], 0) == 0
    assert stored().lock == "LOCKED"
    assert store.write([ReportedState("door-z", "LOCKED", "closed", False, False, "IDLE", newest)], 0) == 0
    with centre.db.session() as s:
        assert s.scalars(select(DoorReportedState.device)).all() == ["door-a"]


def test_the_state_store_keeps_the_newest_on_sqlite_too(tmp_path):  # noqa: ANN001
    """The console also runs on the centre's SQLite: the same upsert (newest by the lock's clock wins)."""
    from central.app import Centre

    c = Centre(tmp_path / "centre", None)
    c.init()
    try:
        door = SimDoor(tmp_path / "door-a", "door-a")
        door.install(c.registry.submit(door.csr(), c.registry.create_token(OP)))
        store = DoorStateStore(c.db)
        assert not c.db.is_postgres
        st = ReportedState("door-a", "LOCKED", "closed", False, False, "IDLE", 100.0)
        assert store.write([st], 1.0) == 1
        assert store.write([ReportedState("door-a", "UNLOCKED", "open", False, False, "UNLOCKED", 99.0)], 2.0) == 0
        assert store.write([ReportedState("door-a", "LOCKED", "open", True, False, "TAMPER", 101.0)], 3.0) == 1
        with c.db.session() as s:
            r = s.get(DoorReportedState, "door-a")
            assert (r.machine, r.door, r.tamper, r.ts, r.received_at) == ("TAMPER", "open", True, 101.0, 3.0)
    finally:
        c.close()
