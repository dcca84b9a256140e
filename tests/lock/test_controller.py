"""The lock loop end to end in one process: real face pipeline, replay camera, gpiozero mock pins, SQLite."""

from __future__ import annotations

import shutil
import sqlite3
from dataclasses import replace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from firmware.config import Config, LockConfig
from firmware.hw.camera.replay import write_replay_folder
from firmware.lock.decider import AttemptDecider
from firmware.lock.statemachine import Command, Event, Input, State
from firmware.site import ComponentUnavailableError, open_site
from provisioning import demofaces as df
from tests.support.decider import make_decider


def outbox_types(data_dir) -> list[str]:
    db = data_dir / "outbox.db"
    assert db.exists(), "the runtime wrote no event outbox"
    con = sqlite3.connect(db)
    try:
        rows = con.execute("SELECT * FROM sqlite_master WHERE type='table'").fetchall()
        table = next(r[1] for r in rows if "event" in r[1] or "outbox" in r[1])
        cols = [c[1] for c in con.execute(f"PRAGMA table_info({table})")]
        col = "type" if "type" in cols else None
        if col:
            return [r[0] for r in con.execute(f"SELECT {col} FROM {table}")]
        body = next(c for c in cols if c in ("payload", "body", "data", "json"))
        import json

        return [json.loads(r[0])["type"] for r in con.execute(f"SELECT {body} FROM {table}")]
    finally:
        con.close()


def relay_trace(h):
    """(state, pin level) after every step: the pin is read from the mock GPIO, not from the code."""
    trace = []
    h.ctl.on_step = lambda s, i: (h.steps.append((s, i)), trace.append((s.state, h.relay_pin_high())))
    return trace


def test_enrolled_face_unlocks_then_relocks(make_harness, pipeline, gallery, threshold):
    rng = __import__("numpy").random.default_rng(1)
    frames = [df.empty(rng=rng) for _ in range(6)] + df.live_sequence(df.astronaut(), 24, seed=2) + \
        [df.empty(rng=rng) for _ in range(90)]
    h = make_harness(frames, lambda: make_decider(pipeline, gallery, threshold,
                                                  pseudonyms={"astronaut": "0123456789abcdef"}))
    trace = relay_trace(h)
    assert not h.relay_pin_high()
    assert h.run_until(lambda: h.relay_pin_high(), timeout=15)
    assert h.ctl.snap.state is State.UNLOCKED and h.ctl.snap.user == "astronaut"
    granted = [r for r in h.audit.records() if r.kind == "granted"]
    # the audit log names the user by pseudonym only, never by id or name
    assert granted and granted[-1].data["user"] == "0123456789abcdef" and granted[-1].data["relay"] is True
    assert all(b"astronaut" not in f.read_bytes() for f in h.data_dir.glob("audit.db*"))  # db and WAL
    assert granted[-1].data["decision_ms"] > 0
    assert h.run_until(lambda: not h.relay_pin_high(), timeout=5)  # auto relock after unlock_s
    assert h.ctl.snap.state is not State.UNLOCKED
    assert all(pin == (state is State.UNLOCKED) for state, pin in trace)
    assert "access_granted" in outbox_types(h.data_dir)
    assert h.audit.verify().ok


def test_stranger_denied_then_lockout(make_harness, stages):
    frames = df.live_sequence(df.cameraman_face(), 60, seed=3, base_scale=df.STRANGER_SCALE)
    h = make_harness(frames, stages)
    trace = relay_trace(h)
    assert h.run_until(lambda: h.ctl.snap.state is State.LOCKOUT, timeout=40)
    rows = h.rows()
    assert rows.count("denied") == 4 and rows[-1] == "denied_lockout"
    assert not any(pin for _, pin in trace)
    assert h.ctl.snap.deadline is not None  # lockout ends by timer; no face is analyzed meanwhile
    analyzed = h.ctl.counters.analyzed
    h.run_until(lambda: False, timeout=0.5)
    assert h.ctl.counters.analyzed == analyzed
    types = outbox_types(h.data_dir)
    assert types.count("access_denied") == 5 and "lockout" in types


def test_camera_unplugged_faults_with_event_and_recovers(make_harness, stages, tmp_path):
    folder = write_replay_folder(tmp_path / "cam", [df.empty() for _ in range(5)])
    h = make_harness(str(folder), stages)
    trace = relay_trace(h)
    h.ctl.feed(Input(Event.EXIT_PRESSED))  # unlocked from inside when the camera goes
    assert h.relay_pin_high()
    shutil.move(str(folder), str(tmp_path / "gone"))
    assert h.run_until(lambda: h.ctl.snap.state is State.FAULT, timeout=5)
    assert not h.relay_pin_high() and h.io.led_pattern == "fault"
    assert "disappeared" in (h.ctl.fault_reason or "") or "does not exist" in (h.ctl.fault_reason or "")
    h.ctl.feed(Input(Event.EXIT_PRESSED))  # not even the exit button energizes the relay in FAULT
    assert not h.relay_pin_high()
    h.run_until(lambda: False, timeout=0.5)  # retries with backoff while the camera is away
    assert h.ctl.counters.faults >= 2 and h.ctl.snap.state is State.FAULT
    shutil.move(str(tmp_path / "gone"), str(folder))
    assert h.run_until(lambda: h.ctl.snap.state is State.IDLE, timeout=5)
    assert "fault" in outbox_types(h.data_dir)
    assert [r.kind for r in h.audit.records()].count("recovered") == 1
    assert not any(pin for state, pin in trace if state is State.FAULT)


def test_camera_stall_faults(make_harness, stages):
    h = make_harness([df.empty()] * 3, stages, fps=0.2)  # next frame 5 s away > stall timeout 0.5 s
    assert h.run_until(lambda: h.ctl.snap.state is State.FAULT, timeout=5)
    assert "no frame within" in h.ctl.fault_reason and not h.relay_pin_high()


@pytest.mark.parametrize("damage", ["missing", "altered"])
def test_model_missing_or_altered_is_a_fault_never_open(damage, make_harness, tmp_path, monkeypatch,
                                                        gallery, threshold):
    from firmware.vision.manifest import Manifest, default_models_dir

    src = default_models_dir()
    dst = tmp_path / "models"
    shutil.copytree(src, dst)
    m = Manifest.load(dst)
    victim = dst / m.spec("embedder").file
    if damage == "missing":
        victim.unlink()
    else:
        with open(victim, "r+b") as f:
            f.seek(victim.stat().st_size // 2)
            b = f.read(1)
            f.seek(-1, 1)
            f.write(bytes([b[0] ^ 0x01]))
    monkeypatch.setenv("FACELOCK_MODELS_DIR", str(dst))
    with pytest.raises(ComponentUnavailableError, match="missing" if damage == "missing" else "integrity"):
        open_site(Config()).pipeline()

    def factory():
        return make_decider(open_site(Config()).pipeline(), gallery, threshold)

    h = make_harness([df.astronaut()[:480]] * 3, factory)
    assert h.ctl.snap.state is State.FAULT and not h.relay_pin_high()
    assert ("missing" if damage == "missing" else "integrity") in h.ctl.fault_reason
    assert "fault" in outbox_types(h.data_dir)
    faults = [r for r in h.audit.records() if r.kind == "fault"]
    assert faults and faults[0].data["relay"] is False


def test_internal_error_in_a_stage_fails_secure(make_harness, stages):
    class Boom(AttemptDecider):
        def observe(self, frame):
            raise RuntimeError("bug in a stage")

    def boom():
        d = stages()
        return Boom(d.pipeline, d.liveness, d.enrolled, d.threshold, d.margin)

    h = make_harness([df.empty()] * 3, boom)
    h.ctl.feed(Input(Event.EXIT_PRESSED))
    assert h.relay_pin_high()
    h.ctl.feed(Input(Event.TIMER))  # relocked (door closed) -> IDLE, so frames are analyzed again
    h.ctl.feed(Input(Event.EXIT_PRESSED))
    h.ctl.feed(Input(Event.COMMAND, command=Command.LOCK))
    assert h.run_until(lambda: h.ctl.snap.state is State.FAULT, timeout=5)
    assert "internal error" in h.ctl.fault_reason and not h.relay_pin_high()


def test_switch_inputs_from_gpio_drive_the_machine(make_harness, stages):
    h = make_harness([df.empty()] * 3, stages, lock=LockConfig(unlock_s=30))
    h.io.simulate_exit_press()
    assert h.run_until(lambda: h.relay_pin_high(), timeout=2)
    h.io.simulate_door(True)
    h.io.simulate_door(False)  # door closed again -> relock at once
    assert h.run_until(lambda: h.ctl.snap.state is State.IDLE, timeout=2) and not h.relay_pin_high()
    h.io.simulate_door(True)  # opened while locked: forced
    assert h.run_until(lambda: h.ctl.snap.state is State.TAMPER, timeout=2)
    h.io.simulate_door(False)
    h.ctl.submit(Command.RESET)
    assert h.run_until(lambda: h.ctl.snap.state is State.IDLE, timeout=2)
    h.io.simulate_tamper(True)  # case opened
    assert h.run_until(lambda: h.ctl.snap.state is State.TAMPER, timeout=2)
    h.ctl.submit(Command.RESET)
    h.run_until(lambda: False, timeout=0.2)
    assert h.ctl.snap.state is State.TAMPER  # the case is still open: no reset
    h.io.simulate_tamper(False)
    h.ctl.submit(Command.RESET)
    assert h.run_until(lambda: h.ctl.snap.state is State.IDLE, timeout=2)
    kinds = [r.kind for r in h.audit.records()]
    assert {"exit_request", "relocked", "door_forced", "tamper", "tamper_reset"} <= set(kinds)


def test_remote_unlock_obeys_lockdown(make_harness, stages):
    from firmware.lock.policy import Lockdown, PolicyConfig

    cfg = replace(Config(), policy=PolicyConfig.from_dict({"admins": ["root"]}))
    h = make_harness([df.empty()] * 3, stages, cfg=cfg)
    assert not h.ctl.set_lockdown(Lockdown.NOBODY, "mallory")
    assert h.ctl.set_lockdown(Lockdown.NOBODY, "root")
    assert not h.ctl.submit(Command.UNLOCK, "root")
    assert h.ctl.set_lockdown(Lockdown.OFF, "root")
    assert h.ctl.submit(Command.UNLOCK, "bob")
    assert h.run_until(lambda: h.relay_pin_high(), timeout=2)


EVENTS = st.sampled_from([
    Input(Event.EXIT_PRESSED), Input(Event.DOOR_OPENED), Input(Event.DOOR_CLOSED), Input(Event.TAMPER),
    Input(Event.TAMPER_CLEARED), Input(Event.TIMER), Input(Event.FAULT, reason="x"), Input(Event.RECOVERED),
    Input(Event.FACE_SEEN), Input(Event.MATCH, user="astronaut"), Input(Event.NO_MATCH),
    Input(Event.NO_MATCH, lockout_s=5), Input(Event.SPOOF_SUSPECTED),
    Input(Event.COMMAND, command=Command.UNLOCK), Input(Event.COMMAND, command=Command.LOCK),
    Input(Event.COMMAND, command=Command.RESET), Input(Event.COMMAND, command=Command.ENROLL),
    Input(Event.COMMAND, command=Command.ENROLL_DONE),
])


@pytest.fixture
def fast_controller(mock_pins, tmp_path):
    """A controller without camera or stages (inputs are fed directly), its audit on tmpfs for speed."""
    import tempfile

    from firmware.audit import AuditLog
    from firmware.hw.gpio import LockIO
    from firmware.lock.runtime import LockRuntime

    shm = "/dev/shm" if __import__("os").path.isdir("/dev/shm") else None
    io = LockIO(Config().gpio, pin_factory=mock_pins)  # shared: pins cost a thread each to close
    made = []

    def make():
        d = tempfile.mkdtemp(dir=shm)
        io.set_relay(False)
        ctl = LockRuntime(Config(), io, lambda: None, lambda: None, AuditLog(f"{d}/audit.db"), None)
        made.append((ctl, d))
        return ctl, io

    yield make
    io.close()
    for ctl, d in made:
        ctl.audit.close()
        shutil.rmtree(d, ignore_errors=True)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(EVENTS, max_size=40))
def test_property_gpio_relay_pin_follows_the_state(fast_controller, seq):
    """Through the real GPIO layer: the relay *pin* is high only in UNLOCKED, and low after any fault."""
    ctl, io = fast_controller()
    relay_pin = io.factory.pin(ctl.cfg.gpio.relay_pin)
    for inp in seq:
        ctl.feed(inp)
        pin = bool(relay_pin.state)
        assert pin == (ctl.snap.state is State.UNLOCKED)
        if inp.event is Event.FAULT:
            assert not pin and ctl.snap.state is State.FAULT
        if ctl.snap.state is State.FAULT:
            assert not pin
    assert ctl.audit.verify().ok


def test_held_up_photo_of_the_enrolled_face_is_refused_by_liveness(make_harness, pipeline, gallery, threshold,
                                                                   liveness):
    frames = df.still_photo(df.astronaut(), 30, seed=4)
    h = make_harness(frames, lambda: make_decider(pipeline, gallery, threshold, liveness))
    trace = relay_trace(h)
    assert h.run_until(lambda: h.ctl.counters.spoof > 0 or h.relay_pin_high(), timeout=20)
    assert h.ctl.counters.spoof == 1 and not any(pin for _, pin in trace)
    assert h.rows()[-1] in ("spoof", "spoof_lockout")
    assert "spoof_suspected" in outbox_types(h.data_dir)


def test_attempt_is_abandoned_when_the_face_leaves(make_harness, stages):
    """A face seen for two frames, then nobody: the attempt ends (face_lost) instead of waiting for the
    verify timeout and later joining the next face's frames to these."""
    frames = df.live_sequence(df.astronaut(), 2, seed=2) + [df.empty() for _ in range(40)]
    h = make_harness(frames, stages, lock=LockConfig(verify_timeout_s=10.0, face_lost_s=0.3))
    assert h.run_until(lambda: "face_lost" in h.rows(), timeout=10)
    assert h.rows()[:2] == ["face_seen", "face_lost"] and not h.relay_pin_high()
    assert h.ctl.snap.state is State.IDLE and h.ctl.attempt is None
    assert h.ctl.lockout.failures == ()  # leaving is not a failed attempt
