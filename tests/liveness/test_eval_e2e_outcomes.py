"""``facelock eval-e2e`` counts only what the daemon did while the clip played: after the replay's end the
camera faults and the daemon's recovery re-opens the clip at its start, so a grant in the tail would be the
clip's first frames judged twice (it made ``screen_zubair_fake``, whose first 1.8 s show the real person,
look like 2 grants).  A real audit log (SQLite), written as the daemon writes it."""

from __future__ import annotations

from firmware.audit import AuditLog
from provisioning.commands.eval_e2e import read_outcomes


def test_records_after_the_end_of_replay_fault_are_not_the_clips(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    with AuditLog(data / "audit.db") as log:
        log.append("boot", state="IDLE")
        log.append("granted", state="UNLOCKED", decision_ms=400.0, face_frame=3)
        log.append("spoof_suspected", state="DENIED", reason="liveness:fasnet required: x")
        log.append("fault", state="FAULT", reason="camera: replay video /x.mp4 ended or became unreadable at frame 157")
        log.append("recovered", state="IDLE")
        log.append("granted", state="UNLOCKED", decision_ms=500.0, face_frame=0)
    out = read_outcomes(data, fps=15.0, k0=0)
    assert out["grants"] == 1 and out["spoof_refusals"] == 1
    assert out["first_face_to_unlock_s"] == 0.6  # 0.4 s + 3 frames at 15 fps
    assert out["after_clip_end"] == {"fault": 1, "recovered": 1, "granted": 1}


def test_another_fault_does_not_end_the_clip(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    with AuditLog(data / "audit.db") as log:
        log.append("fault", state="FAULT", reason="pipeline: VisionError: boom")
        log.append("recovered", state="IDLE")
        log.append("granted", state="UNLOCKED", decision_ms=500.0, face_frame=0)
    out = read_outcomes(data, fps=15.0, k0=0)
    assert out["grants"] == 1 and out["after_clip_end"] == {}
