"""Issue 11.11: a steady trickle of failures must lock out, and lockout cannot be configured away.

The attack: one failed attempt every few seconds, spaced so that ``max_failures`` never fall inside
``window_s`` (1 per 15 s with the defaults: 5,760 failures a day, backoff 0).  The fix is an hourly and a
daily failure budget over rolling windows, kept across restarts, and lower bounds on the lockout settings.

Real daemon (replay camera, mock GPIO, shipped models): a live stranger appears for a moment every
~8 s.  With ``max_failures = 5`` in ``window_s = 30`` the window never fills; the hourly budget of 3 must
lock the door out after the third failure, for about an hour.
"""

from __future__ import annotations

import signal
import subprocess
import sys

import numpy as np
import pytest

from firmware.audit import AuditLog
from firmware.hw.camera.replay import write_replay_folder
from provisioning import demofaces as df
from tests.support.daemon import REPO, daemon_env, env, start, wait_status, write_config

FPS = 10


def stranger_frames() -> list[np.ndarray]:
    from firmware.vision import FacePipeline

    pipe = FacePipeline.from_manifest(num_threads=1)
    base = df.near("grace_hopper")
    live = df.live_person(base, pipe.process(base).primary.mesh.points, 14, seed=3)
    rng = np.random.default_rng(5)
    return live + [df.empty(rng=rng) for _ in range(8 * FPS)]  # ~8 s between appearances


def test_slow_failures_spend_the_hourly_budget_and_lock_out(tmp_path):
    write_replay_folder(tmp_path / "frames", stranger_frames())
    policy = ("[policy]\nmax_failures = 5\nwindow_s = 30\nbase_lockout_s = 30\n"
              "max_failures_per_hour = 3\nmax_failures_per_day = 10\n")
    cfg = write_config(tmp_path, extra=policy)
    cfg.write_text(cfg.read_text().replace("fps = 30", f"fps = {FPS}"))
    data = tmp_path / "data"
    p = start(cfg, env=daemon_env(tmp_path))
    try:
        s = wait_status(data, p.pid, timeout=60)
        assert s["state"] == "IDLE", s["fault"]
        s = wait_status(data, p.pid, lambda s: s["lockout_remaining_s"] > 0, timeout=150)
    finally:
        p.send_signal(signal.SIGTERM)
        _, err = p.communicate(timeout=30)
    assert p.returncode == 0, err[-1500:]
    with AuditLog(data / "audit.db", readonly=True) as log:
        fails = [r for r in log.records() if r.kind in ("denied", "spoof_suspected", "lockout")]
    assert len(fails) == 3, [(r.kind, r.data.get("reason")) for r in fails]
    t = [r.ts for r in fails]
    assert min(b - a for a, b in zip(t, t[1:], strict=False)) > 30 / 5, "failures came faster than the window"
    assert fails[-1].kind == "lockout"  # the third failure, by the budget: the window never filled
    assert s["lockout_remaining_s"] > 3000  # until the first failure is an hour old
    # the budget survives a restart: the new process comes up in the lockout
    p = start(cfg, env=daemon_env(tmp_path))
    try:
        s2 = wait_status(data, p.pid, timeout=60)
        assert s2["lockout_remaining_s"] > 3000 and s2["state"] == "LOCKOUT", s2
    finally:
        p.send_signal(signal.SIGTERM)
        p.communicate(timeout=30)


@pytest.mark.parametrize(("setting", "key"), [
    ("window_s = 0.001", "policy.window_s"),
    ("base_lockout_s = 0", "policy.base_lockout_s"),
    ("max_failures = 100000", "policy.max_failures"),
    ("max_failures_per_hour = 0", "policy.max_failures_per_hour"),
])
def test_settings_that_disable_lockout_are_refused_by_the_daemon(tmp_path, setting, key):
    cfg = write_config(tmp_path, extra=f"[policy]\n{setting}\n")
    r = subprocess.run([sys.executable, "-m", "firmware", "--check-config", "-c", str(cfg)], cwd=REPO, env=env(),
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 78 and key in r.stderr, r.stderr[-800:]
