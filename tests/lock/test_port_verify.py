"""LockPort.verify: one attempt decided for a caller (the Face Security API) by the door's own decider, on the
real face pipeline, replay camera and gpiozero mock pins.  The relay is never energised for it, a refusal
counts once toward the door's lockout, and the face it was decided on does not also become a door attempt."""

from __future__ import annotations

import threading

import numpy as np

from firmware.lock.decider import Outcome
from firmware.lock.port import LockPort
from firmware.lock.statemachine import State
from provisioning import demofaces as df
from tests.support.decider import make_decider


def verify_while_ticking(h, port: LockPort, timeout_s: float = 8.0):
    """port.verify on another thread (as the API's connection thread calls it) while this thread runs the loop."""
    out: dict = {}
    t = threading.Thread(target=lambda: out.update(v=port.verify("test", timeout_s)))
    t.start()
    pins: list[bool] = []
    assert h.run_until(lambda: pins.append(h.relay_pin_high()) or not t.is_alive(), timeout=timeout_s + 10)
    t.join(2)
    return out["v"], pins


def test_the_enrolled_face_is_granted_to_the_caller_without_the_relay(make_harness, pipeline, gallery, threshold):
    frames = df.live_sequence(df.astronaut(), 40, seed=2)  # she stays in view the whole time
    h = make_harness(frames, lambda: make_decider(pipeline, gallery, threshold))
    port = LockPort(h.ctl)
    v, pins = verify_while_ticking(h, port)
    assert v.decision.outcome is Outcome.GRANTED and v.decision.user_id == "astronaut", v
    assert not any(pins) and not h.relay_pin_high()
    assert "granted" not in h.rows()  # the state machine never saw the caller's attempt
    rec = [r for r in h.audit.records() if r.kind == "verify"]
    assert rec and rec[-1].data["attempt_id"] == v.attempt_id and rec[-1].data["outcome"] == "granted"
    # her face stays in view: it was the caller's, so the door does not unlock on it afterwards
    h.run_until(lambda: False, timeout=2.0)
    assert not h.relay_pin_high() and h.ctl.snap.state is State.IDLE and "face_seen" not in h.rows()
    # a second caller gets their own attempt on the same face
    v2, pins2 = verify_while_ticking(h, port)
    assert v2.decision.outcome is Outcome.GRANTED and v2.attempt_id != v.attempt_id and not any(pins2)
    assert port.summary().verify_run == 2


def test_a_stranger_refused_for_a_caller_counts_once_toward_the_lockout(make_harness, stages):
    frames = df.live_sequence(df.cameraman_face(), 60, seed=3, base_scale=df.STRANGER_SCALE)
    h = make_harness(frames, stages)
    port = LockPort(h.ctl)
    v, pins = verify_while_ticking(h, port)
    assert v.decision.outcome is Outcome.NO_MATCH and v.decision.user_id is None, v
    assert not any(pins)
    assert len(h.ctl.lockout.failures) == 1
    h.run_until(lambda: False, timeout=3.0)  # the stranger stays in view: the door does not count him again
    assert len(h.ctl.lockout.failures) == 1 and "denied" not in h.rows()
    assert port.summary().failures == 1


def test_the_door_takes_the_face_again_once_it_has_left(make_harness, pipeline, gallery, threshold):
    rng = np.random.default_rng(4)
    frames = df.live_sequence(df.astronaut(), 30, seed=2) + [df.empty(rng=rng) for _ in range(30)] + \
        df.live_sequence(df.astronaut(), 30, seed=5)
    h = make_harness(frames, lambda: make_decider(pipeline, gallery, threshold))
    v, _ = verify_while_ticking(h, LockPort(h.ctl))
    assert v.decision.outcome is Outcome.GRANTED
    assert h.run_until(lambda: h.relay_pin_high(), timeout=15)  # she came back: the door's own attempt


def test_nobody_in_view_times_out_and_the_request_is_dropped(make_harness, stages):
    rng = np.random.default_rng(5)
    h = make_harness([df.empty(rng=rng) for _ in range(10)], stages)
    port = LockPort(h.ctl)
    v, _ = verify_while_ticking(h, port, timeout_s=1.0)
    assert v.decision.outcome is Outcome.ABANDONED and v.decision.reason == "timeout"
    h.run_until(lambda: False, timeout=0.3)
    assert port.summary().verify_waiting == 0
