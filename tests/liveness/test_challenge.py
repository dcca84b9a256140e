"""The optional LED challenge (``[liveness] challenge_on_inconclusive``): ask, don't refuse.

The attempt decider over synthetic sequences (a real face mesh with its eyes closed by hand; no threshold
is fitted here): a full window without evidence either way lights the LED instead of refusing; a blink
after the LED stands in for the missing evidence; no blink (or one only before the LED) stays
inconclusive; a check that FAILED is never outweighed by a blink; switched off, nothing changes.
"""

from __future__ import annotations

import numpy as np
import pytest

from firmware.lock.decider import Attempt, AttemptDecider, AttemptRules, Enrolled, Observation, Outcome, Why
from firmware.vision import Gallery
from firmware.vision.liveness import LivenessConfig, LivenessFrame, LivenessPolicy, LivenessThresholds
from firmware.vision.liveness.blink import BlinkThresholds
from firmware.vision.liveness.config import ConfigError
from firmware.vision.liveness.motion import MotionThresholds
from firmware.vision.liveness.replay import StaticReplayThresholds
from tests.liveness.test_liveness_checks import close_eye_landmarks

TH = LivenessThresholds(StaticReplayThresholds(0.02, 0.95, same_face_min_cosine=0.5),
                        BlinkThresholds(0.3, 0.3), MotionThresholds(0.01, 0.01))
DT = 0.1  # 10 fps


def _decider(challenge: bool) -> AttemptDecider:
    """The shipped-style rule (same face + the learned PAD model) with a 4-frame window, so the learned
    model (5 frames) never has enough: every attempt is inconclusive unless the challenge is answered."""
    cfg = LivenessConfig(required=("same_face", "fasnet"), any_of=(), challenge_on_inconclusive=challenge)
    return AttemptDecider(None, LivenessPolicy(cfg, TH), Enrolled(Gallery(dim=8)), 0.5, 0.0,
                          rules=AttemptRules(frames_per_attempt=3, max_frames_per_attempt=4))


def _run(decider: AttemptDecider, mesh: np.ndarray, closed: set[int], n: int, fas: float = 0.05):
    """Feed n frames (eyes closed on the indices in ``closed``) one by one; the decisions, and the attempt."""
    att = Attempt(0.0, 0.0, 0)
    out = []
    for i in range(n):
        lm = close_eye_landmarks(mesh, 0.9) if i in closed else mesh
        lf = LivenessFrame(landmarks=lm, embedding=np.ones(8), fas_score=fas, t=i * DT)
        att.observations.append(Observation(i, i * DT, True, True, np.ones(8), "", lf))
        d = decider.liveness_step(att)
        out.append(d)
        if d is None or d.final:
            break
    return out, att


def test_inconclusive_window_lights_the_led_and_a_blink_after_it_passes(astronaut_mesh):
    ds, att = _run(_decider(True), astronaut_mesh, closed={6}, n=12)
    assert ds[3].outcome is Outcome.PENDING and ds[3].why is Why.LIVENESS_CHALLENGE  # window full: ask
    assert att.challenge_from == pytest.approx(3 * DT)
    assert ds[-1] is None, ds  # live: on to matching
    assert len(ds) == 8  # the blink at frame 6, eyes open again at frame 7
    lit = [o.liveness.led_on for o in att.observations]
    assert lit[:4] == [None] * 4 and all(lit[4:])


def test_no_blink_after_the_led_stays_inconclusive_not_a_spoof(astronaut_mesh):
    ds, att = _run(_decider(True), astronaut_mesh, closed={1}, n=40)  # a blink, but before the LED
    last = ds[-1]
    assert last is not None and last.outcome is Outcome.INCONCLUSIVE and last.why is Why.LIVENESS_NEEDS_BLINK
    assert att.liveness_failures == 0 and "challenge" in last.reason
    assert att.observations[-1].ts >= att.challenge_from + 1.5  # asked for the whole challenge window


def test_a_failed_check_is_never_outweighed_by_a_blink(astronaut_mesh):
    d = _decider(True)
    d.rules = type(d.rules)(3, 6, 0.5)  # 6 frames: the learned model gets its 5 and says "attack"
    ds, att = _run(d, astronaut_mesh, closed={4}, n=12, fas=0.99)
    assert ds[-1] is not None and ds[-1].outcome is Outcome.SPOOF and len(ds) == 6
    assert att.challenge_from is None and att.liveness_failures >= 1


def test_switched_off_the_window_is_refused_as_inconclusive(astronaut_mesh):
    ds, att = _run(_decider(False), astronaut_mesh, closed={6}, n=12)
    assert ds[-1].outcome is Outcome.INCONCLUSIVE and len(ds) == 4 and att.challenge_from is None


def test_the_switch_is_validated():
    with pytest.raises(ConfigError, match="challenge_on_inconclusive"):
        LivenessConfig.from_dict({"challenge_on_inconclusive": "yes"})


def _strict() -> AttemptDecider:
    cfg = LivenessConfig(required=("same_face",), any_of=(), challenge=True, challenge_window_s=1.0)
    return AttemptDecider(None, LivenessPolicy(cfg, TH), Enrolled(Gallery(dim=8)), 0.5, 0.0,
                          rules=AttemptRules(frames_per_attempt=3, max_frames_per_attempt=10))


def test_challenge_true_lights_the_led_with_the_attempt_and_a_blink_after_it_passes(astronaut_mesh):
    """``challenge = true`` (the strict mode): before, nothing lit the LED, so every attempt failed the
    blink check ("no frame had the LED lit") and counted as a spoof; now the LED lights at the attempt's
    first liveness step and the person is asked (LIVENESS_CHALLENGE) until they blink."""
    ds, att = _run(_strict(), astronaut_mesh, closed={5}, n=10)
    assert att.challenge_from == pytest.approx(2 * DT)  # the 3rd frame: the first liveness step
    assert all(d.why is Why.LIVENESS_CHALLENGE for d in ds[2:-1] if d is not None)
    assert ds[-1] is None and len(ds) == 7  # blink at frame 5, open again at 6: live


def test_challenge_true_a_blink_before_the_led_is_a_spoof(astronaut_mesh):
    ds, att = _run(_strict(), astronaut_mesh, closed={1}, n=12)
    assert ds[-1] is not None and ds[-1].outcome is Outcome.SPOOF and len(ds) == 10
