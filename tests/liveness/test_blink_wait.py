"""Waiting for a blink, bounded in time (``[liveness] blink_wait_s``): the attempt decider over synthetic
sequences (a real face mesh held frozen, its eyes closed by hand on chosen frames; no threshold is fitted
here, the thresholds below are test values).

Why these tests: a live person standing still looks as frozen as a photo to static replay and blinks every
few seconds, not within the 30-frame window (1 s at 30 fps).  While the only thing missing is "frozen and no
blink yet" the attempt keeps gathering frames until they span ``blink_wait_s``; a blink in that time lets the
person in, no blink by then is the same spoof as before, and a check that FAILED for any other reason (the
learned PAD model) still refuses when the frame window is full.  The calibration's longest blink window
(``window_frames``) must be the longest window the decider really decides on.
"""

from __future__ import annotations

import numpy as np
import pytest

from firmware.config import config_from_dict
from firmware.config_errors import ConfigError
from firmware.lock.decider import Attempt, AttemptDecider, AttemptRules, Enrolled, Observation, Outcome, Why
from firmware.vision import Gallery
from firmware.vision.liveness import (
    LivenessConfig,
    LivenessFrame,
    LivenessPolicy,
    LivenessThresholds,
    Verdict,
)
from firmware.vision.liveness.blink import BlinkThresholds
from firmware.vision.liveness.motion import MotionThresholds
from firmware.vision.liveness.replay import StaticReplayThresholds
from provisioning.research.liveness_attempts import window_frames
from tests.liveness.test_liveness_checks import close_eye_landmarks

TH = LivenessThresholds(StaticReplayThresholds(0.02, 0.95, same_face_min_cosine=0.5, min_span_s=0.8),
                        BlinkThresholds(0.3, 0.3), MotionThresholds(0.01, 0.01))
MAX_FRAMES = 30


def _decider(wait_s: float = 2.0, **cfg) -> AttemptDecider:
    """The shipped rule (same face + learned PAD required; static replay or a blink) with test thresholds."""
    lc = LivenessConfig(blink_wait_s=wait_s, **cfg)
    return AttemptDecider(None, LivenessPolicy(lc, TH), Enrolled(Gallery(dim=8)), 0.5, 0.0,
                          rules=AttemptRules(frames_per_attempt=3, max_frames_per_attempt=MAX_FRAMES))


def _run(decider: AttemptDecider, mesh: np.ndarray, fps: float, n: int, closed: set[int] = frozenset(),
         fas: float = 0.05):
    """Feed n frames of a frozen face (eyes closed on the frames in ``closed``) one by one, as the runtime
    does; the decisions and the attempt."""
    att = Attempt(0.0, 0.0, 0)
    out = []
    for i in range(n):
        t = i / fps
        lm = close_eye_landmarks(mesh, 0.9) if i in closed else mesh
        lf = LivenessFrame(landmarks=lm, embedding=np.ones(8), fas_score=fas, t=t)
        att.observations.append(Observation(i, t, True, True, np.ones(8), "", lf))
        att.last_face_ts = t
        d = decider.liveness_step(att)
        out.append(d)
        if d is None or d.final:
            break
    return out, att


def test_a_frozen_face_that_blinks_after_the_frame_window_passes(astronaut_mesh):
    # 30 fps: the 30-frame window ends at 0.97 s; the blink comes at 1.5 s
    ds, att = _run(_decider(), astronaut_mesh, 30.0, 90, closed={45})
    assert ds[-1] is None, ds[-1]  # live: on to matching
    assert len(ds) == 47  # decided on the frame after the blink (eyes open again)
    waiting = ds[MAX_FRAMES - 1:-1]
    assert waiting and all(d.outcome is Outcome.PENDING and d.why is Why.LIVENESS_NEEDS_BLINK for d in waiting)
    assert att.waiting_for_blink and len(_decider().window(att)) == 47  # the window grew past 30 frames
    assert att.liveness_failures > 0  # static replay said "frozen" meanwhile: a face pulled away is a spoof


def test_without_the_wait_the_same_face_is_refused_when_the_frame_window_is_full(astronaut_mesh):
    ds, att = _run(_decider(wait_s=0.0), astronaut_mesh, 30.0, 90, closed={45})
    assert ds[-1] is not None and ds[-1].outcome is Outcome.SPOOF and len(ds) == MAX_FRAMES
    assert not att.waiting_for_blink


@pytest.mark.parametrize("fps", [30.0, 25.0, 15.0])
def test_a_frozen_face_that_never_blinks_is_a_spoof_once_its_frames_span_the_wait(astronaut_mesh, fps):
    ds, att = _run(_decider(), astronaut_mesh, fps, 200)
    last = ds[-1]
    assert last is not None and last.outcome is Outcome.SPOOF and "static_replay" in last.reason
    span = att.observations[-1].ts - att.observations[0].ts
    assert span == pytest.approx(2.0, abs=1e-6)  # not before 2.0 s of frames, not after
    assert len(ds) == max(MAX_FRAMES, int(round(2.0 * fps)) + 1)
    # the calibration's longest blink window is the window this attempt was decided on
    ts = [o.ts for o in att.observations]
    assert window_frames(ts, MAX_FRAMES, 2.0) == len(_decider().window(att)) == len(ds)


def test_a_slow_camera_is_not_given_more_than_its_frame_window(astronaut_mesh):
    # 10 fps: 30 frames already span 2.9 s > 2.0 s: refused when the frame window is full, as before
    ds, att = _run(_decider(), astronaut_mesh, 10.0, 100)
    assert ds[-1].outcome is Outcome.SPOOF and len(ds) == MAX_FRAMES and not att.waiting_for_blink
    assert window_frames([o.ts for o in att.observations], MAX_FRAMES, 2.0) == MAX_FRAMES


def test_a_failed_learned_pad_check_refuses_at_once_even_when_frozen(astronaut_mesh):
    # the learned model says "attack": not waiting for a blink (a replayed video blinks too)
    ds, att = _run(_decider(), astronaut_mesh, 30.0, 90, closed={45}, fas=0.99)
    assert ds[-1].outcome is Outcome.SPOOF and len(ds) == MAX_FRAMES and "fasnet" in ds[-1].reason
    assert not att.waiting_for_blink


def test_a_check_that_fails_while_waiting_ends_the_wait(astronaut_mesh):
    # frozen from the start; the learned model turns to "attack" at 1.2 s (median of its last 5 frames)
    d = _decider()
    att = Attempt(0.0, 0.0, 0)
    out = []
    for i in range(90):
        t = i / 30.0
        lf = LivenessFrame(landmarks=astronaut_mesh, embedding=np.ones(8), fas_score=0.99 if i >= 36 else 0.05, t=t)
        att.observations.append(Observation(i, t, True, True, np.ones(8), "", lf))
        out.append(d.liveness_step(att))
        if out[-1] is None or out[-1].final:
            break
    assert out[-1].outcome is Outcome.SPOOF and "fasnet" in out[-1].reason
    assert len(out) == 39  # the third attacking frame makes the median of 5 fail: refused on that frame


def test_policy_says_when_only_an_alternative_is_missing(astronaut_mesh):
    pol = LivenessPolicy(LivenessConfig(), TH)
    frozen = [LivenessFrame(landmarks=astronaut_mesh, embedding=np.ones(8), fas_score=0.05, t=i / 30) for i in range(30)]
    d = pol.decide(frozen)
    assert not d.live and d.attack_evidence and d.alternative_pending and "blink" in d.waiting_for
    assert d.checks["static_replay"].verdict is Verdict.FAIL and d.checks["blink"].verdict is Verdict.UNKNOWN
    attack = pol.decide([LivenessFrame(landmarks=f.landmarks, embedding=f.embedding, fas_score=0.99, t=f.t)
                         for f in frozen])
    assert not attack.live and not attack.alternative_pending  # a required check FAILED
    blinked = pol.decide([LivenessFrame(landmarks=close_eye_landmarks(astronaut_mesh, 0.9) if i == 15 else f.landmarks,
                                        embedding=f.embedding, fas_score=0.05, t=f.t) for i, f in enumerate(frozen)])
    assert blinked.live and not blinked.alternative_pending


def test_the_challenge_mode_does_not_wait(astronaut_mesh):
    # ``challenge = true`` requires the blink to answer the LED: no "alternative" to wait for
    ds, att = _run(_decider(challenge=True), astronaut_mesh, 30.0, 90)
    assert ds[-1] is not None and ds[-1].final and len(ds) == MAX_FRAMES and not att.waiting_for_blink


@pytest.mark.parametrize("v", [-0.1, 10.5, True, "2", float("nan")])
def test_blink_wait_s_is_validated(v):
    with pytest.raises(ConfigError, match="blink_wait_s"):
        LivenessConfig(blink_wait_s=v)


def test_blink_wait_s_must_end_before_the_verify_timeout():
    with pytest.raises(ConfigError, match="blink_wait_s"):
        config_from_dict({"lock": {"verify_timeout_s": 2.0}, "liveness": {"blink_wait_s": 2.0}})
    cfg = config_from_dict({"lock": {"verify_timeout_s": 3.0}, "liveness": {"blink_wait_s": 2.5}})
    assert cfg.sections["liveness"].blink_wait_s == 2.5
    assert LivenessConfig().blink_wait_s == 2.0  # the shipped default


def test_a_timeout_below_the_default_wait_is_refused_without_a_liveness_section():
    """The default wait (2.0 s) holds when [liveness] is absent: lowering only the timeout is caught too."""
    with pytest.raises(ConfigError, match="blink_wait_s"):
        config_from_dict({"lock": {"verify_timeout_s": 1.5}})
    config_from_dict({"lock": {"verify_timeout_s": 1.5, "liveness": "off"}})  # no liveness, no wait
    config_from_dict({"lock": {"verify_timeout_s": 1.5}, "liveness": {"blink_wait_s": 0}})  # wait switched off


def test_a_fleet_bundle_cannot_cut_the_blink_wait():
    """A bundle's verify_timeout_s at or below the wait is ignored with the reason; the lock keeps its own."""
    from firmware.fleet.settings import lock_settings

    base = config_from_dict({"lock": {"verify_timeout_s": 3.0}})
    s = lock_settings(base, {"verify_timeout_s": 2.0})
    assert s.config.lock.verify_timeout_s == 3.0
    assert [n for n, _ in s.ignored] == ["verify_timeout_s"] and "blink_wait_s" in s.ignored[0][1]
    assert lock_settings(base, {"verify_timeout_s": 2.5}).config.lock.verify_timeout_s == 2.5
    off = config_from_dict({"lock": {"verify_timeout_s": 1.5, "liveness": "off"}})
    s = lock_settings(off, {"liveness": "required"})
    assert s.config.lock.liveness == "off" and s.ignored[0][0] == "liveness"
