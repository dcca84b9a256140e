"""Failed attempts, backoff and a remote lockdown survive restarts: pure conversions, the file, the controller."""

from __future__ import annotations

import json
import time

import pytest

from firmware.lock.lockstate import Clock, LockStateFile, from_record, to_record
from firmware.lock.policy import Lockdown, LockoutConfig, LockoutState, lockout_remaining, register_failure
from firmware.lock.statemachine import State
from provisioning import demofaces as df

CFG = LockoutConfig(max_failures=5, window_s=60, base_lockout_s=30, factor=2, max_lockout_s=3600)


def failures(n: int, t0: float = 1000.0) -> LockoutState:
    st = LockoutState()
    for i in range(n):
        st, _ = register_failure(st, t0 + i, CFG)
    return st


def test_same_boot_keeps_exact_times():
    st = failures(3)
    rec = to_record(st, None, Clock(1010.0, 5_000.0, "boot-a"))
    back, lockdown = from_record(json.loads(json.dumps(rec)), Clock(1020.0, 9_999_999.0, "boot-a"), CFG)
    # the monotonic clock decides on the same boot (the wall clock jumped, and is ignored)
    assert back.failures == pytest.approx(st.failures) and back.level == 0 and lockdown is None


def test_after_a_reboot_the_wall_clock_counts_and_a_lockout_continues():
    st = failures(5)  # the fifth failure locks out for 30 s
    assert lockout_remaining(st, 1004.0) == pytest.approx(30.0)
    rec = to_record(st, Lockdown.NOBODY, Clock(1004.0, 50_000.0, "boot-a"))
    # rebooted 10 s later: the monotonic clock restarted near 0
    back, lockdown = from_record(rec, Clock(3.0, 50_010.0, "boot-b"), CFG)
    assert lockout_remaining(back, 3.0) == pytest.approx(20.0)
    assert back.level == 1 and lockdown is Lockdown.NOBODY
    # a further failure right after the reboot is judged with the backoff level kept: 60 s lockout at once
    _, lock_s = register_failure(back, 4.0, CFG)
    assert lock_s == pytest.approx(60.0)


def test_a_wall_clock_that_went_back_does_not_shorten_anything():
    rec = to_record(failures(5), None, Clock(1004.0, 50_000.0, "boot-a"))
    back, _ = from_record(rec, Clock(3.0, 10.0, "boot-b"), CFG)  # no RTC: the clock restarted at 1970
    assert lockout_remaining(back, 3.0) == pytest.approx(30.0)
    assert len(back.failures) == 0 and back.level == 1


def test_failures_within_the_window_still_count_after_a_reboot():
    rec = to_record(failures(4), None, Clock(1004.0, 50_000.0, "boot-a"))
    back, _ = from_record(rec, Clock(2.0, 50_005.0, "boot-b"), CFG)
    st, lock_s = register_failure(back, 2.5, CFG)  # the fifth one, ~6 s after the first
    assert lock_s == pytest.approx(30.0)


@pytest.mark.parametrize("content", [b"", b"{", b'{"v": 2}', b'{"v": 1, "mono": -1}', b"\xff\xfe"])
def test_a_damaged_file_means_a_lockout_not_fresh_attempts(tmp_path, content):
    p = tmp_path / "lockstate.json"
    p.write_bytes(content)
    st, lockdown, note = LockStateFile(p).load(CFG, Clock(100.0, 5000.0, "b"))
    assert note.startswith("damaged") and lockout_remaining(st, 100.0) == pytest.approx(CFG.base_lockout_s)


def test_file_roundtrip_and_mode(tmp_path):
    f = LockStateFile(tmp_path / "lockstate.json")
    assert f.load(CFG)[2] == "new"
    f.save(failures(2), Lockdown.ADMINS)
    st, lockdown, note = f.load(CFG)
    assert note == "" and len(st.failures) == 2 and lockdown is Lockdown.ADMINS
    assert (tmp_path / "lockstate.json").stat().st_mode & 0o777 == 0o600


def test_controller_restart_keeps_counting_failures(make_harness, stages, tmp_path):
    """Three failures, a crash (no shutdown), a new controller: two more failures lock out, not five."""
    from firmware.audit import AuditLog
    from firmware.lock.lockstate import LockStateFile
    from firmware.lock.runtime import LockRuntime
    from firmware.site import OutboxSink

    frames = df.live_sequence(df.cameraman_face(), 60, seed=3, base_scale=df.STRANGER_SCALE)
    h = make_harness(frames, stages)
    state_file = LockStateFile(tmp_path / "lockstate.json")
    h.ctl.lockstate = state_file
    assert h.run_until(lambda: h.rows().count("denied") == 3, timeout=30)
    saved = json.loads((tmp_path / "lockstate.json").read_text())
    assert len(saved["failures_age"]) == 3
    # "power cut": the controller is dropped without shutdown; a new one starts on the same files
    cfg, io = h.ctl.cfg, h.io
    h.ctl.camera.close()
    steps: list = []
    cams = []

    def camera():
        from firmware.hw.camera.replay import ReplayCamera

        cams.append(ReplayCamera(frames, fps=30.0))
        return cams[-1]

    audit2 = AuditLog(h.data_dir / "audit.db")
    ctl2 = LockRuntime(cfg, io, camera, stages, audit2, OutboxSink(h.data_dir / "outbox.db", "test-door"),
                       lockstate=state_file, on_step=lambda s, i: steps.append(s.row))
    try:
        boot = [r for r in audit2.records() if r.kind == "boot"][-1]
        assert boot.data["failures"] == 3 and boot.data["state"] == "IDLE"
        ctl2.bring_up()
        end = time.monotonic() + 30
        while ctl2.snap.state is not State.LOCKOUT and time.monotonic() < end:
            ctl2.tick()
        assert ctl2.snap.state is State.LOCKOUT
        assert [r for r in steps if r in ("denied", "denied_lockout")] == ["denied", "denied_lockout"]
        # and a third controller boots straight into the lockout, relay off
        ctl3 = LockRuntime(cfg, io, camera, stages, audit2, OutboxSink(h.data_dir / "outbox.db", "test-door"),
                           lockstate=state_file)
        assert ctl3.snap.state is State.LOCKOUT and not io.relay_energized
        assert ctl3.snap.deadline is not None
        ctl3.events.close()
    finally:
        for c in cams:
            c.close()
        ctl2.events.close()
        audit2.close()


def test_the_budgets_memory_and_a_budget_lockout_survive_a_restart(tmp_path):
    """A day's failures are saved with the state: a restart neither forgets them nor cuts the lockout."""
    cfg = LockoutConfig(max_failures_per_hour=3)
    st = LockoutState()
    for t in (1000.0, 1100.0, 1200.0):  # three slow failures: the hourly budget is spent
        st, lock = register_failure(st, t, cfg)
    assert lock == pytest.approx(1000 + 3600 - 1200)
    rec = to_record(st, None, Clock(1300.0, 5000.0, "boot-a"))
    st2, _ = from_record(json.loads(json.dumps(rec)), Clock(50.0, 5100.0, "boot-b"), cfg)  # rebooted
    assert len(st2.recent) == 3 and lockout_remaining(st2, 50.0) == pytest.approx(3600 - 300 - 100, abs=1e-3)
