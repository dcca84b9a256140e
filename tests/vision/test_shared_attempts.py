"""Attempt-level recognition on the real live clips (../shared/faces/extras/liveness_video/live).

Each clip is read at the device's 15 fps through the pipeline *with the device's quality gates*; the
person is enrolled from their first 5 usable frames and every later run of 3 usable frames (the lock's
``frames_per_attempt``), from 1 s after the enrollment on, is one attempt, decided by the lock's own
rule (fused mean embedding, :meth:`Gallery.match` with the shipped threshold and margin) against a
gallery of every clip's person.  Skipped with the reason when the clips are absent.
"""

from __future__ import annotations

import pytest

pytestmark = [pytest.mark.shared, pytest.mark.slow]


@pytest.fixture(scope="module")
def clips(shared_faces):
    from firmware.vision import FacePipeline
    from firmware.vision.config import VisionConfig
    from provisioning.research.attempts import read_clips

    folder = shared_faces / "extras" / "liveness_video" / "live"
    if not folder.is_dir():
        pytest.skip(f"needs the live clips at {folder}")
    return read_clips(folder, FacePipeline.from_config(VisionConfig()), 15.0, progress=False)


def test_live_attempts_are_accepted_and_never_as_someone_else(clips, pipeline):
    from firmware.lock.decider import AttemptRules
    from provisioning.research.attempts import clip_attempt_report

    frames = AttemptRules().frames_per_attempt
    rep = clip_attempt_report(clips, pipeline.threshold("unlock"), pipeline.margin(), frames=frames)
    r = rep["rules"]["mean"]
    assert len([c for c in rep["clips"].values() if c["enrolled"]]) == len(clips) >= 10
    assert r["attempts"] >= 400
    assert r["frr"] <= 0.03, r["per_clip"]
    assert r["wrong_person"] == 0 and r["cross_person_accepts"] == 0
