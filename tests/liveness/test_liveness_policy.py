"""LivenessConfig validation, LivenessPolicy rules and the shipped model files' integrity (pure, fast)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from firmware.config_errors import ConfigError
from firmware.vision.liveness import (
    BlinkThresholds,
    LivenessConfig,
    LivenessFrame,
    LivenessPolicy,
    LivenessThresholds,
    MotionThresholds,
    PadModel,
    PadModelError,
    StaticReplayThresholds,
    Verdict,
    load_pad_model,
    load_thresholds,
)
from firmware.vision.liveness.pad_features import FEATURE_DIM, pad_features
from firmware.vision.liveness.pad_model import default_liveness_dir
from provisioning.research.liveness_eval import apcer_bpcer, operating_points, threshold_at_bpcer
from provisioning.research.pad_training import fit_logistic, fit_pad_model

TH = LivenessThresholds(StaticReplayThresholds(0.02, 0.95), BlinkThresholds(0.3, 0.3), MotionThresholds(0.01, 0.01),
                        pad=0.5)


#: the rule engine's old default (every check in play): still a valid configuration
ALL_CHECKS = LivenessConfig(required=("static_replay", "same_face"), any_of=("blink", "pad"), veto=("motion",))


def test_config_defaults_are_the_measured_policy():
    c = LivenessConfig.from_dict({})
    assert c.required == ("same_face", "fasnet") and c.any_of == ("static_replay", "blink") and c.veto == ()
    assert not c.require_ir and not c.challenge


def _fas_frames(scores, dt=0.1, move=True):
    rng = np.random.default_rng(1)
    base = rng.uniform(0, 100, (468, 3))
    return [LivenessFrame(landmarks=base + (rng.normal(0, 3, base.shape) if move else 0),
                          embedding=np.ones(8) + (rng.normal(0, 0.05, 8) if move else 0), fas_score=s, t=i * dt)
            for i, s in enumerate(scores)]


def test_default_policy_fasnet_pass_fail_and_inconclusive():
    th = LivenessThresholds(StaticReplayThresholds(0.02, 0.95, min_span_s=1.0), BlinkThresholds(0.3, 0.3),
                            MotionThresholds(0.01, 0.01))
    pol = LivenessPolicy(LivenessConfig(), th)
    live = pol.decide(_fas_frames([0.05] * 11))  # 1.0 s of a moving face
    assert live.live and live.checks["fasnet"].verdict is Verdict.PASS
    assert live.checks["static_replay"].verdict is Verdict.PASS
    # the learned model passes after 5 frames, but "live" waits until static replay could judge (a digital
    # picture fools the texture model, not the passage of time): not yet live, and not a spoof either
    early = pol.decide(_fas_frames([0.05] * 5))
    assert not early.live and not early.attack_evidence and early.checks["static_replay"].verdict is Verdict.UNKNOWN
    # one lucky frame of an attack does not pass: the median of the last 5 decides
    attack = pol.decide(_fas_frames([0.9, 0.9, 0.01, 0.9, 0.9]))
    assert not attack.live and attack.attack_evidence and attack.checks["fasnet"].verdict is Verdict.FAIL
    # too few scored frames: refused, but inconclusive (no check failed) -> not a spoof toward lockout
    few = pol.decide(_fas_frames([0.05] * 3))
    assert not few.live and not few.attack_evidence and few.to_event()["attack_evidence"] is False
    # a frozen face that the learned model passes (a digital picture) is a spoof once 1 s of it is seen
    frozen = pol.decide(_fas_frames([0.05] * 13, dt=0.1, move=False))
    assert not frozen.live and frozen.attack_evidence and frozen.checks["static_replay"].verdict is Verdict.FAIL
    assert frozen.checks["fasnet"].verdict is Verdict.PASS


@pytest.mark.parametrize("d, key", [
    ({"requird": ["blink"]}, "requird"),
    ({"required": "blink"}, "required"),
    ({"required": ["telepathy"]}, "required"),
    ({"min_frames": 1}, "min_frames"),
    ({"min_frames": True}, "min_frames"),
    ({"challenge": "yes"}, "challenge"),
    ({"challenge_window_s": 0}, "challenge_window_s"),
    ({"pad_threshold": 1.5}, "pad_threshold"),
    ({"static_max_shape_change": -1}, "static_max_shape_change"),
    ({"required": [], "any_of": [], "veto": []}, "required"),
])
def test_config_refuses_bad_values_naming_the_key(d, key):
    with pytest.raises(ConfigError, match=key):
        LivenessConfig.from_dict(d)


def _frames(pad_scores, n=4, move=False):
    rng = np.random.default_rng(0)
    base = rng.uniform(0, 100, (468, 3))
    out = []
    for i in range(n):
        lm = base + (rng.normal(0, 3, base.shape) if move else 0)
        out.append(LivenessFrame(landmarks=lm, embedding=np.ones(8) + (rng.normal(0, 1, 8) if move else 0),
                                 pad_score=pad_scores[i % len(pad_scores)], t=i * 0.1))
    return out


def test_policy_rules_with_every_check():
    pol = LivenessPolicy(ALL_CHECKS, TH)
    live = pol.decide(_frames([0.1], move=True))
    assert live.live and live.reasons == () and live.checks["pad"].verdict is Verdict.PASS
    static = pol.decide(_frames([0.1], move=False))  # PAD says live, but the frames are frozen
    assert not static.live and static.checks["static_replay"].verdict is Verdict.FAIL
    attack = pol.decide(_frames([0.9], move=True))  # moving, but no blink and PAD says attack
    assert not attack.live and any("none of blink/pad" in r for r in attack.reasons)
    few = pol.decide(_frames([0.1], n=2, move=True))
    assert not few.live and any("too few frames" in r for r in few.reasons)
    ev = attack.to_event()
    assert ev["type"] == "spoof_suspected" and ev["checks"]["pad"]["scores"]["attack_score"] == pytest.approx(0.9)
    json.dumps(ev)  # JSON-serialisable, numbers only
    assert "pad.attack_score" in attack.scores


def test_policy_config_overrides_thresholds():
    from dataclasses import replace

    pol = LivenessPolicy(replace(ALL_CHECKS, pad_threshold=0.95), TH)
    assert pol.decide(_frames([0.9], move=True)).live


def test_decide_refuses_non_frames():
    from firmware.vision.liveness import LivenessInputError

    with pytest.raises(LivenessInputError):
        LivenessPolicy(LivenessConfig(), TH).decide([np.zeros((468, 3))])


def test_logistic_fit_separates_and_roundtrips():
    rng = np.random.default_rng(0)
    x = np.vstack([rng.normal(0, 1, (50, FEATURE_DIM)), rng.normal(0.8, 1, (50, FEATURE_DIM))])
    y = np.r_[np.zeros(50), np.ones(50)]
    w, b = fit_logistic(x, y, l2=1.0)
    assert ((x @ w + b > 0) == (y > 0.5)).mean() > 0.95
    m = fit_pad_model(x, y, l2=1.0, threshold=0.4)
    m2 = PadModel.from_dict(json.loads(json.dumps(m.to_dict())))
    assert np.allclose(m.score_features(x), m2.score_features(x))


def test_pad_features_are_deterministic_and_sized():
    rng = np.random.default_rng(1)
    face = rng.integers(0, 255, (112, 112, 3), dtype=np.uint8)
    f = pad_features(face)
    assert f.shape == (FEATURE_DIM,) and np.isfinite(f).all()
    assert np.array_equal(f, pad_features(face.copy()))
    assert pad_features(np.ascontiguousarray(np.repeat(np.repeat(face, 2, 0), 2, 1))).shape == (FEATURE_DIM,)


def test_shipped_files_load_and_tampering_is_refused(tmp_path):
    model = load_pad_model()
    assert 0 < model.threshold < 1 and model.meta["trainer"].endswith("train_pad.py")
    th = load_thresholds()
    assert th.static.max_shape_change > 0 and 0 < th.static.min_embedding_cosine < 1
    d = tmp_path / "liveness"
    shutil.copytree(default_liveness_dir(), d)
    data = json.loads((d / "pad_lbp_fft.json").read_text())
    data["bias"] += 1.0
    (d / "pad_lbp_fft.json").write_text(json.dumps(data))
    with pytest.raises(PadModelError, match="integrity"):
        load_pad_model(d)
    (d / "thresholds.json").unlink()
    with pytest.raises(PadModelError, match="missing"):
        load_thresholds(d)


def test_iso_metrics():
    bona = np.array([0.1, 0.2, 0.3, 0.4, 0.9])
    attack = np.array([0.35, 0.8, 0.95])
    t = threshold_at_bpcer(bona, 0.2)  # one of 5 bona fide may be rejected
    assert apcer_bpcer(attack, bona, t) == (pytest.approx(1 / 3), pytest.approx(0.2))
    ops = operating_points(attack, bona)
    assert 0 <= ops["eer"] <= 1 and ops["apcer_at_bpcer_0.1"] >= ops["apcer_at_bpcer_0.01"] - 1
