"""Issue 11.1: revocation reaches a running lock.

The attack (reproduced on the old code: 14 grants after ``users purge``, the last 37 s later): an
employee is revoked with the CLI while the daemon runs; they keep walking up to the door.  Now every
write to ``users.db`` bumps a generation counter that the lock loop polls every tick, a change reloads
the enrolled users, and a recognised user is re-checked in the store just before the relay.

Real components only: the ``facelock`` CLI in subprocesses (ca init, device init, enroll, revoke,
reactivate, policy set, purge) against the same config and data dir as the real daemon (replay camera
with the enrolled person live in front of it, mock GPIO, shipped models, liveness and thresholds).

Bar: no grant for the user once the CLI has returned, and the daemon reloads within 1 s of it; 20
trials (18 revoke, 1 out-of-schedule policy, 1 purge), the p100 latency printed.
"""

from __future__ import annotations

import datetime as dt
import json
import signal
import time

import numpy as np
import pytest

from firmware.audit import AuditLog
from firmware.hw.camera.replay import write_replay_folder
from provisioning import demofaces as df
from tests.support.cli import facelock
from tests.support.daemon import daemon_env, start, status, wait_status, write_config

TRIALS = 20
BAR_S = 1.0


def _save_pngs(folder, frames) -> None:
    from PIL import Image

    folder.mkdir(parents=True)
    for i, f in enumerate(frames):
        Image.fromarray(np.asarray(f, dtype=np.uint8)).save(folder / f"{i:02d}.png")


def _audit(data) -> list:
    with AuditLog(data / "audit.db", readonly=True) as log:
        return list(log.records())


def _wait(cond, timeout: float, what: str):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        got = cond()
        if got:
            return got
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.slow
def test_revoked_purged_or_out_of_schedule_user_is_refused_within_a_second(tmp_path):
    from firmware.vision import FacePipeline

    pipe = FacePipeline.from_manifest(num_threads=1)
    base = df.near("astronaut")
    live = df.live_person(base, pipe.process(base).primary.mesh.points, 40, seed=1)
    write_replay_folder(tmp_path / "frames", live)
    _save_pngs(tmp_path / "enroll", df.enrolled())
    del pipe
    cfg = write_config(tmp_path, unlock_s=0.4)
    data = tmp_path / "data"
    facelock(data, "ca", "init", config=cfg)
    facelock(data, "device", "init", "--id", "kill-test", config=cfg)
    uid = facelock(data, "enroll", "Eileen Collins", "--images", tmp_path / "enroll", config=cfg).stdout.strip()
    assert uid

    p = start(cfg, env=daemon_env(tmp_path))
    latencies: list[float] = []
    late_grants: list[tuple[str, float]] = []
    try:
        s = wait_status(data, p.pid, timeout=90)
        assert s["state"] == "IDLE", s["fault"]
        other_day = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"][(dt.datetime.now().weekday() + 3) % 7]
        for trial in range(TRIALS):
            kind = "purge" if trial == TRIALS - 1 else "schedule" if trial == TRIALS - 2 else "revoke"
            seen = len(_audit(data))
            # the user is let in (again) first: the trial starts from a lock that grants them
            _wait(lambda seen=seen: [r for r in _audit(data)[seen:] if r.kind == "granted"], 60, f"a grant before trial {trial}")
            if kind == "revoke":
                args = ("users", "revoke", uid)
            elif kind == "schedule":
                args = ("policy", "set", uid, "--days", other_day, "--from", "00:00", "--to", "23:59")
            else:
                args = ("users", "purge", uid, "--yes")
            t_start = time.time()
            facelock(data, *args, config=cfg)
            t_returned = time.time()
            reload = _wait(lambda t0=t_start: [r for r in _audit(data) if r.kind == "users_reloaded" and r.ts >= t0],
                           30, f"the daemon to reload after {kind}")[0]
            latencies.append(max(0.0, reload.ts - t_returned))  # 0: reloaded before the CLI even exited
            time.sleep(1.0)  # the person is still in front of the camera: watch for a grant
            late_grants += [(kind, r.ts - t_returned) for r in _audit(data)
                            if r.kind == "granted" and r.ts > t_returned]
            if kind == "revoke":
                facelock(data, "users", "reactivate", uid, config=cfg)
            elif kind == "schedule":
                facelock(data, "policy", "clear", uid, config=cfg)
        st = status(data)
        assert st["relay_energized"] is False
    finally:
        p.send_signal(signal.SIGTERM)
        _, err = p.communicate(timeout=30)
    lat = sorted(latencies)
    print(json.dumps({"revocation_latency_s": {"p50": round(lat[len(lat) // 2], 3), "p100": round(lat[-1], 3),
                                               "trials": len(lat)}}))
    assert not late_grants, f"granted after the CLI returned: {late_grants}"
    assert len(lat) == TRIALS and lat[-1] <= BAR_S, lat
