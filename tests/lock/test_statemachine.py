"""Every transition-table row, plus a hypothesis property test over random event sequences."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from firmware.lock import statemachine as sm
from firmware.lock.statemachine import Command, Event, Input, Snapshot, State

T = sm.Timing(unlock_s=5, verify_timeout_s=3, denied_s=2, held_open_alert_s=30, enroll_timeout_s=60)

#: For each row: (snapshot tweaks other than state, the input).  A row without a scenario fails the
#: coverage test below, so a new row cannot be added untested.
SCENARIOS: dict[str, tuple[dict, Input]] = {
    "fault": ({}, Input(Event.FAULT, reason="camera gone")),
    "fault_again": ({}, Input(Event.FAULT)),
    "fault_recovered": ({}, Input(Event.RECOVERED)),
    "fault_recovered_tampered": ({"tamper_active": True}, Input(Event.RECOVERED)),
    "tamper": ({}, Input(Event.TAMPER)),
    "tamper_during_fault": ({}, Input(Event.TAMPER)),
    "tamper_reset": ({}, Input(Event.COMMAND, Command.RESET)),
    "tamper_reset_local": ({}, Input(Event.EXIT_HELD)),
    "tamper_reset_local_refused": ({"door_open": True}, Input(Event.EXIT_HELD)),
    "face_seen": ({}, Input(Event.FACE_SEEN)),
    "granted": ({}, Input(Event.MATCH, user="alice")),
    "denied": ({}, Input(Event.NO_MATCH)),
    "denied_lockout": ({}, Input(Event.NO_MATCH, lockout_s=30)),
    "spoof": ({}, Input(Event.SPOOF_SUSPECTED)),
    "spoof_lockout": ({}, Input(Event.SPOOF_SUSPECTED, lockout_s=60)),
    "verify_timeout": ({}, Input(Event.TIMER)),
    "face_lost": ({}, Input(Event.FACE_LOST)),
    "denied_done": ({}, Input(Event.TIMER)),
    "lockout_over": ({}, Input(Event.TIMER)),
    "door_opened_unlocked": ({}, Input(Event.DOOR_OPENED)),
    "door_closed_relock": ({"door_open": True}, Input(Event.DOOR_CLOSED)),
    "auto_relock": ({}, Input(Event.TIMER)),
    "auto_relock_door_open": ({"door_open": True}, Input(Event.TIMER)),
    "remote_lock": ({}, Input(Event.COMMAND, Command.LOCK)),
    "remote_lock_door_open": ({"door_open": True}, Input(Event.COMMAND, Command.LOCK)),
    "relocking_door_closed": ({"door_open": True}, Input(Event.DOOR_CLOSED)),
    "door_held_open": ({"door_open": True}, Input(Event.TIMER)),
    "door_forced": ({}, Input(Event.DOOR_OPENED)),
    "exit": ({}, Input(Event.EXIT_PRESSED)),
    "remote_unlock": ({}, Input(Event.COMMAND, Command.UNLOCK)),
    "enroll_start": ({}, Input(Event.COMMAND, Command.ENROLL)),
    "enroll_done": ({}, Input(Event.COMMAND, Command.ENROLL_DONE)),
    "enroll_timeout": ({}, Input(Event.TIMER)),
}

CASES = [(row.name, src) for row in sm.TABLE for src in row.sources]


def test_every_row_has_a_scenario():
    assert set(SCENARIOS) == set(sm.ROWS_BY_NAME)


@pytest.mark.parametrize(("name", "source"), CASES, ids=[f"{n}-{s.value}" for n, s in CASES])
def test_row(name: str, source: State):
    row = sm.ROWS_BY_NAME[name]
    tweaks, inp = SCENARIOS[name]
    snap = replace(Snapshot(state=source, deadline=100.0), **tweaks)
    out = sm.step(snap, inp, now=10.0, timing=T)
    assert out.row == name
    assert out.state is row.target
    assert out.relay is (row.target is State.UNLOCKED)
    assert out.alerts == row.alerts
    assert out.audit == row.audit
    assert out.error is None
    if row.target is State.LOCKOUT:
        assert out.snapshot.deadline == pytest.approx(10.0 + inp.lockout_s)
    elif row.timer:
        assert out.snapshot.deadline == pytest.approx(10.0 + getattr(T, row.timer))
    elif row.keep_timer:
        assert out.snapshot.deadline == 100.0
    else:
        assert out.snapshot.deadline is None


def test_unhandled_event_is_ignored_and_keeps_everything():
    snap = Snapshot(state=State.LOCKOUT, deadline=50.0)
    out = sm.step(snap, Input(Event.FACE_SEEN), now=1.0, timing=T)
    assert out.row is None and out.snapshot == snap and not out.relay


def test_granted_records_user_and_relocks_after_timer():
    s = sm.step(Snapshot(), Input(Event.FACE_SEEN), 0.0, T).snapshot
    s = sm.step(s, Input(Event.MATCH, user="alice"), 0.5, T).snapshot
    assert s.state is State.UNLOCKED and s.user == "alice" and s.relay
    assert not sm.timer_due(s, 5.4) and sm.timer_due(s, 5.5)
    s = sm.step(s, Input(Event.TIMER), 5.5, T).snapshot
    assert s.state is State.IDLE and not s.relay and s.user is None


def test_door_open_then_relock_then_held_open_alert_once():
    s = Snapshot(state=State.UNLOCKED, deadline=5.0)
    s = sm.step(s, Input(Event.DOOR_OPENED), 1.0, T).snapshot
    out = sm.step(s, Input(Event.TIMER), 5.0, T)
    assert out.state is State.RELOCKING and not out.relay
    out = sm.step(out.snapshot, Input(Event.TIMER), 35.0, T)
    assert out.alerts == ("door_held_open",) and out.snapshot.deadline is None
    again = sm.step(out.snapshot, Input(Event.TIMER), 70.0, T)
    assert again.row is None  # alerted once, no timer left
    assert sm.step(again.snapshot, Input(Event.DOOR_CLOSED), 71.0, T).state is State.IDLE


def test_internal_error_fails_secure(monkeypatch):
    def boom(*_a, **_k):
        raise RuntimeError("bug")

    monkeypatch.setattr(sm, "find_row", boom)
    out = sm.step(Snapshot(state=State.UNLOCKED), Input(Event.TIMER), 1.0, T)
    assert out.state is State.FAULT and not out.relay and out.error and "fault" in out.alerts


def test_boot_is_locked():
    assert not sm.boot_snapshot().relay
    assert sm.boot_snapshot(tamper_active=True).state is State.TAMPER


inputs = st.builds(
    Input,
    event=st.sampled_from(list(Event)),
    command=st.one_of(st.none(), st.sampled_from(list(Command))),
    user=st.sampled_from([None, "alice", "bob"]),
    lockout_s=st.sampled_from([0.0, 0.0, 30.0]),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(inputs, st.floats(0, 40, allow_nan=False)), max_size=60),
       st.sampled_from(list(State)))
def test_property_relay_only_in_unlocked_and_off_after_fault(seq, start):
    snap = Snapshot(state=start)
    now = 0.0
    for inp, dt_ in seq:
        now += dt_
        if sm.timer_due(snap, now):
            snap = sm.step(snap, Input(Event.TIMER), now, T).snapshot
            assert snap.relay == (snap.state is State.UNLOCKED)
        out = sm.step(snap, inp, now, T)
        snap = out.snapshot
        assert out.relay == (snap.state is State.UNLOCKED)
        if snap.state is not State.UNLOCKED:
            assert not out.relay
        if inp.event is Event.FAULT:
            assert snap.state is State.FAULT and not out.relay
        if snap.state is State.FAULT:
            assert not out.relay
