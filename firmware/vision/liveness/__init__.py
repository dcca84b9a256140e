"""Liveness: decide over the frames of one verification attempt whether a live face is in front of the lock.

Checks (each pure, each on per-frame inputs the face pipeline already computes):
- ``static_replay``: a still photo / frozen screen gives near-identical landmarks and embeddings;
- ``blink``: eye-aspect-ratio dip with open eyes around it (optionally in answer to an LED flash);
- ``motion``: landmarks moving as one homography = a flat picture (veto);
- ``pad``: single-frame texture/frequency presentation-attack score (LBP + FFT + logistic regression);
- ``ir``: frames come from an IR camera (``require_ir``).

Typical use::

    policy = LivenessPolicy.from_files(LivenessConfig.from_dict(cfg.get("liveness", {})))
    decision = policy.decide([LivenessFrame(landmarks=mesh, embedding=emb, face=crop, t=ts), ...])
    if not decision.live:
        emit(decision.to_event())      # type "spoof_suspected"; counts toward lockout
"""

from firmware.vision.liveness.blink import BlinkThresholds, eye_aspect_ratio, find_blinks
from firmware.vision.liveness.config import CHECKS, LivenessConfig
from firmware.vision.liveness.errors import LivenessError, LivenessInputError, PadModelError
from firmware.vision.liveness.frame import LivenessFrame
from firmware.vision.liveness.motion import MotionThresholds
from firmware.vision.liveness.pad_model import PadModel, load_pad_model
from firmware.vision.liveness.policy import LivenessPolicy, LivenessThresholds, load_thresholds
from firmware.vision.liveness.replay import StaticReplayThresholds
from firmware.vision.liveness.result import SPOOF_EVENT_TYPE, CheckResult, LivenessDecision, Verdict

__all__ = [
    "CHECKS", "SPOOF_EVENT_TYPE", "BlinkThresholds", "CheckResult", "LivenessConfig", "LivenessDecision",
    "LivenessError", "LivenessFrame", "LivenessInputError", "LivenessPolicy", "LivenessThresholds",
    "MotionThresholds", "PadModel", "PadModelError", "StaticReplayThresholds", "Verdict", "eye_aspect_ratio",
    "find_blinks", "load_pad_model", "load_thresholds",
]
