"""LivenessPolicy: run the checks over one attempt's frames and decide (pure: no I/O, no clock).

Rules: every ``required`` check must PASS; at least one ``any_of`` check must PASS; any ``veto`` check
that FAILs rejects.  ``challenge`` makes the blink a required answer to the LED; ``require_ir`` requires
every frame to come from an IR camera.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from firmware.vision.liveness.blink import BlinkThresholds, check_blink
from firmware.vision.liveness.config import LivenessConfig
from firmware.vision.liveness.errors import LivenessInputError, PadModelError
from firmware.vision.liveness.eyes import eye_openness
from firmware.vision.liveness.fasnet import FasNet
from firmware.vision.liveness.frame import LivenessFrame
from firmware.vision.liveness.motion import MotionThresholds, check_motion
from firmware.vision.liveness.pad_model import PadModel, load_pad_model, load_verified_json
from firmware.vision.liveness.replay import StaticReplayThresholds, check_same_face, check_static_replay
from firmware.vision.liveness.result import CheckResult, LivenessDecision, Verdict


@dataclass(frozen=True)
class FasnetThresholds:
    """The learned PAD model over an attempt: the median per-frame attack score of the last ``frames``
    scored frames must stay below ``max_attack`` (PASS), else FAIL; fewer frames = UNKNOWN."""

    max_attack: float = 0.5
    frames: int = 5


@dataclass(frozen=True)
class LivenessThresholds:
    static: StaticReplayThresholds
    blink: BlinkThresholds
    motion: MotionThresholds
    pad: float | None = None  # None: the PAD model's own calibrated threshold
    fasnet: FasnetThresholds = FasnetThresholds()

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LivenessThresholds:
        try:
            t = d["thresholds"]
            return cls(
                StaticReplayThresholds(float(t["static_max_shape_change"]), float(t["static_min_embedding_cosine"]),
                                       same_face_min_cosine=float(t["same_face_min_cosine"]),
                                       min_span_s=float(t.get("static_min_span_s", 0.0))),
                BlinkThresholds(float(t["blink_min_drop"]), float(t["blink_min_drop_appearance"]),
                                min_iod_px=float(t["blink_min_iod_px"])),
                MotionThresholds(float(t["motion_min_motion"]), float(t["motion_min_nonplanar"])),
                fasnet=FasnetThresholds(float(t.get("fasnet_max_attack", 0.5)), int(t.get("fasnet_frames", 5))),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise PadModelError(f"liveness thresholds file is malformed: {exc!r}") from exc

    def overridden(self, cfg: LivenessConfig) -> LivenessThresholds:
        s, b, m, p, f = self.static, self.blink, self.motion, self.pad, self.fasnet
        s = replace(s, min_frames=cfg.min_frames)
        if cfg.static_max_shape_change is not None:
            s = replace(s, max_shape_change=cfg.static_max_shape_change)
        if cfg.static_min_embedding_cosine is not None:
            s = replace(s, min_embedding_cosine=cfg.static_min_embedding_cosine)
        if cfg.blink_min_drop is not None:
            b = replace(b, min_drop=cfg.blink_min_drop)
        if cfg.motion_min_motion is not None:
            m = replace(m, min_motion=cfg.motion_min_motion)
        if cfg.motion_min_nonplanar is not None:
            m = replace(m, min_nonplanar=cfg.motion_min_nonplanar)
        if cfg.pad_threshold is not None:
            p = cfg.pad_threshold
        if cfg.fasnet_max_attack is not None:
            f = replace(f, max_attack=cfg.fasnet_max_attack)
        return LivenessThresholds(s, b, m, p, f)


def load_thresholds(directory: Path | None = None) -> LivenessThresholds:
    """Calibrated thresholds from models/liveness/thresholds.json (sha256-checked)."""
    return LivenessThresholds.from_dict(load_verified_json("thresholds", directory))


def check_pad(frames: Sequence[LivenessFrame], model: PadModel | None, threshold: float | None) -> CheckResult:
    """Mean attack score over the frames that have a face crop or a precomputed score."""
    if threshold is None:
        if model is None:
            return CheckResult("pad", Verdict.UNKNOWN, {}, "no PAD model and no PAD threshold configured")
        threshold = model.threshold
    scores = []
    for f in frames:
        if f.pad_score is not None:
            scores.append(f.pad_score)
        elif f.face is not None and model is not None:
            scores.append(model.score(f.face))
    if not scores:
        return CheckResult("pad", Verdict.UNKNOWN, {}, "no face crops (or no PAD model) to score")
    mean = float(np.mean(scores))
    s = {"attack_score": mean, "attack_score_max": float(np.max(scores)), "frames": float(len(scores)),
         "threshold": threshold}
    if mean >= threshold:
        return CheckResult("pad", Verdict.FAIL, s, f"presentation-attack score {mean:.3f} >= {threshold:.3f}")
    return CheckResult("pad", Verdict.PASS, s, f"presentation-attack score {mean:.3f} < {threshold:.3f}")


def check_fasnet(frames: Sequence[LivenessFrame], th: FasnetThresholds) -> CheckResult:
    """The learned PAD model (MiniFASNet pair) over the attempt's most recent frames.

    Why the median of the last few frames: one frame's score swings with motion blur and pose; the median
    of ``th.frames`` frames (about 1/3 s at 15 fps) neither lets one lucky frame of a photo through nor
    refuses a person for one bad frame, and a growing attempt is judged on its freshest evidence.
    """
    scores = [f.fas_score for f in frames if f.fas_score is not None]
    if len(scores) < th.frames:
        return CheckResult("fasnet", Verdict.UNKNOWN, {"frames": float(len(scores))},
                           f"learned PAD needs {th.frames} scored frames, got {len(scores)}")
    recent = scores[-th.frames:]
    med = float(np.median(recent))
    s = {"attack_score": med, "attack_score_max": float(np.max(recent)), "frames": float(len(recent)),
         "threshold": th.max_attack}
    if med >= th.max_attack:
        return CheckResult("fasnet", Verdict.FAIL, s, f"learned PAD attack score {med:.3f} >= {th.max_attack:.3f}")
    return CheckResult("fasnet", Verdict.PASS, s, f"learned PAD attack score {med:.3f} < {th.max_attack:.3f}")


def check_ir(frames: Sequence[LivenessFrame]) -> CheckResult:
    n_ir = sum(1 for f in frames if f.ir)
    s = {"ir_frames": float(n_ir), "frames": float(len(frames))}
    if frames and n_ir == len(frames):
        return CheckResult("ir", Verdict.PASS, s, "all frames from the IR camera")
    return CheckResult("ir", Verdict.FAIL, s, f"require_ir: only {n_ir} of {len(frames)} frames are IR")


class LivenessPolicy:
    """``policy.decide(frames) -> LivenessDecision`` for one verification attempt."""

    def __init__(self, config: LivenessConfig, thresholds: LivenessThresholds, pad_model: PadModel | None = None,
                 fasnet: FasNet | None = None):
        self.config = config
        self.thresholds = thresholds.overridden(config)
        self.pad_model = pad_model
        self.fasnet = fasnet
        req = list(config.required)
        if config.require_ir and "ir" not in req:
            req.append("ir")
        if config.challenge and "blink" not in req:
            req.append("blink")
        self.required = tuple(req)
        self.any_of = tuple(config.any_of)
        self.veto = tuple(config.veto)

    @classmethod
    def from_files(cls, config: LivenessConfig | None = None, directory: Path | None = None,
                   manifest: Path | None = None) -> LivenessPolicy:
        """Policy with the shipped calibrated thresholds, texture PAD model and (when a configured check uses
        it) the MiniFASNet models of models/manifest.json (all sha256-verified)."""
        cfg = config or LivenessConfig()
        fas = None
        if "fasnet" in cfg.required + cfg.any_of + cfg.veto:
            fas = FasNet.from_manifest(manifest)
        return cls(cfg, load_thresholds(directory), load_pad_model(directory), fas)

    def scored(self, frame: LivenessFrame, every_score: bool = False) -> LivenessFrame:
        """The frame with its per-frame scores computed once and its pixels dropped: a growing attempt is
        re-decided on every frame without re-running any model, and no face crop outlives the frame's
        analysis.  Only the scores the configured checks use are computed (a frame costs the door what its
        policy needs); ``every_score`` computes all of them (the evaluation caches one set for any policy)."""
        used = set(self.required + self.any_of + self.veto)
        kw: dict[str, Any] = {}
        if frame.pad_score is None and frame.face is not None and self.pad_model is not None \
                and (every_score or "pad" in used):
            kw["pad_score"] = float(self.pad_model.score(frame.face))
        if frame.fas_score is None and frame.fas_crops is not None and self.fasnet is not None \
                and (every_score or "fasnet" in used):
            kw["fas_score"] = self.fasnet.attack_score(frame.fas_crops)
        if frame.openness is None and frame.face is not None \
                and (every_score or "blink" in used or self.config.challenge_on_inconclusive):
            kw["openness"] = float(eye_openness(frame.face, frame.landmarks))
        return replace(frame, face=None, fas_crops=None, **kw)

    def _run(self, name: str, frames: Sequence[LivenessFrame]) -> CheckResult:
        th = self.thresholds
        if name == "static_replay":
            return check_static_replay(frames, th.static)
        if name == "same_face":
            return check_same_face(frames, th.static.same_face_min_cosine)
        if name == "blink":
            return check_blink(frames, th.blink, self.config.challenge_window_s if self.config.challenge else None)
        if name == "motion":
            return check_motion(frames, th.motion)
        if name == "pad":
            return check_pad(frames, self.pad_model, th.pad)
        if name == "fasnet":
            return check_fasnet(frames, th.fasnet)
        if name == "ir":
            return check_ir(frames)
        raise LivenessInputError(f"unknown liveness check {name!r}")  # unreachable: config validates names

    def challenge(self, frames: Sequence[LivenessFrame]) -> CheckResult:
        """The LED challenge over an attempt's frames (``led_on`` set on those captured after the LED lit):
        PASS on a blink within ``challenge_window_s`` of the first lit frame, FAIL otherwise (the caller
        waits for the window to elapse before taking a FAIL as final)."""
        frames = sorted(frames, key=lambda f: f.t)
        return replace(check_blink(frames, self.thresholds.blink, self.config.challenge_window_s), name="challenge")

    def decide(self, frames: Sequence[LivenessFrame]) -> LivenessDecision:
        frames = list(frames)
        if not all(isinstance(f, LivenessFrame) for f in frames):
            raise LivenessInputError("decide() takes a sequence of LivenessFrame")
        frames.sort(key=lambda f: f.t)
        names = dict.fromkeys(self.required + self.any_of + self.veto)
        checks = {n: self._run(n, frames) for n in names}
        reasons: list[str] = []
        if len(frames) < self.config.min_frames:
            reasons.append(f"too few frames: {len(frames)} < {self.config.min_frames}")
        for n in self.required:
            if checks[n].verdict is not Verdict.PASS:
                reasons.append(f"{n} required: {checks[n].reason}")
        if self.any_of and not any(checks[n].verdict is Verdict.PASS for n in self.any_of):
            reasons.append("none of " + "/".join(self.any_of) + " passed: "
                           + "; ".join(f"{n}: {checks[n].reason}" for n in self.any_of))
        for n in self.veto:
            if checks[n].verdict is Verdict.FAIL:
                reasons.append(f"{n} veto: {checks[n].reason}")
        # evidence of an attack = a check that counts here FAILED; otherwise a refusal is inconclusive
        counted = [n for n in names if n in self.required or n in self.veto or n in self.any_of]
        attack = any(checks[n].verdict is Verdict.FAIL for n in counted)
        waiting = [n for n in self.required if checks[n].verdict is Verdict.UNKNOWN]
        any_of_unmet = bool(self.any_of) and not any(checks[n].verdict is Verdict.PASS for n in self.any_of)
        if any_of_unmet:
            waiting += [n for n in self.any_of if checks[n].verdict is Verdict.UNKNOWN and n not in waiting]
        # the only unmet rule is the any_of group, and one of its checks can still pass (see LivenessDecision)
        alternative = (any_of_unmet and len(frames) >= self.config.min_frames
                       and all(checks[n].verdict is Verdict.PASS for n in self.required)
                       and not any(checks[n].verdict is Verdict.FAIL for n in self.veto)
                       and any(checks[n].verdict is Verdict.UNKNOWN for n in self.any_of))
        return LivenessDecision(live=not reasons, checks=checks, reasons=tuple(reasons), n_frames=len(frames),
                                attack_evidence=bool(reasons) and attack,
                                waiting_for=tuple(waiting) if reasons else (),
                                alternative_pending=bool(reasons) and alternative)


def thresholds_to_json(th: LivenessThresholds, calibration: dict[str, Any]) -> str:
    """Serialise calibrated thresholds (plus the figures they came from) for models/liveness/thresholds.json."""
    return json.dumps({
        "kind": "facelock-liveness-thresholds", "version": 1,
        "thresholds": {
            "static_max_shape_change": th.static.max_shape_change,
            "static_min_embedding_cosine": th.static.min_embedding_cosine,
            "static_min_span_s": th.static.min_span_s,
            "same_face_min_cosine": th.static.same_face_min_cosine,
            "blink_min_iod_px": th.blink.min_iod_px,
            "blink_min_drop": th.blink.min_drop,
            "blink_min_drop_appearance": th.blink.min_drop_appearance,
            "motion_min_motion": th.motion.min_motion,
            "motion_min_nonplanar": th.motion.min_nonplanar,
            "fasnet_max_attack": th.fasnet.max_attack,
            "fasnet_frames": th.fasnet.frames,
        },
        "calibration": calibration,
    }, indent=2, sort_keys=True) + "\n"
