"""``[liveness]`` config section: which checks an attempt must pass, the challenge, IR, overrides.

Defaults (measured on real video through the daemon's attempts, ``facelock eval-liveness``): the learned PAD
model must pass (``fasnet``: MiniFASNet on the authors' crops), every frame must show the same face
(``same_face``: the other checks compare frames with each other), and the face must show that it is not a
still picture: either it is not frozen (``static_replay``, judged over ``static_min_span_s`` of frames: a
digital or very good photo fools a texture model, never the passage of time) or it blinks (``blink``).
Why blink as the alternative: a live person who stands very still looks as frozen as a photo to the static
check (on the real clips one attempt of ``liveportrait_d9``: shape change 0.0069 IOD, embedding cosine
0.977), but still blinks; on the real attack clips no window shows a blink, and the learned model still has
to pass.  Motion, the texture ``pad`` model and ``ir`` stay available; motion and the texture
model are off by default because on real footage they refused live people without catching an attack the
learned model missed (see models/liveness/README.md).  Threshold overrides default to None, meaning
"use the calibrated value from models/liveness/thresholds.json".
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any

from firmware.config_errors import ConfigError

CHECKS = ("static_replay", "same_face", "blink", "motion", "pad", "fasnet", "ir")
_THRESHOLD_KEYS = ("static_max_shape_change", "static_min_embedding_cosine", "blink_min_drop",
                   "motion_min_motion", "motion_min_nonplanar", "pad_threshold", "fasnet_max_attack")


@dataclass(frozen=True)
class LivenessConfig:
    required: tuple[str, ...] = ("same_face", "fasnet")
    any_of: tuple[str, ...] = ("static_replay", "blink")
    veto: tuple[str, ...] = ()
    min_frames: int = 3
    challenge: bool = False  # LED-flash blink challenge: the blink must follow the LED within the window
    challenge_window_s: float = 1.5
    #: ask, don't refuse: when a full window saw no evidence either way (inconclusive), light the LED and
    #: accept a blink within ``challenge_window_s`` in place of the evidence that did not come; a check that
    #: FAILED is never outweighed by it (see firmware.lock.decider, "challenge")
    challenge_on_inconclusive: bool = False
    #: seconds of frames (from the attempt's first face frame) a face is given to blink when the only thing
    #: missing is an ``any_of`` alternative and the blink is among them (default policy: static replay says
    #: "frozen", no blink seen yet): the attempt keeps gathering frames past ``[lock]
    #: max_frames_per_attempt`` until they span this long, then is refused as before.  Why: a live person
    #: standing still looks as frozen as a photo and blinks every few seconds, not within one second; a check
    #: that FAILED for any other reason still refuses when the frame window is full.  0 = no extension
    #: (the window is bounded in frames only).  Keep it below ``[lock] verify_timeout_s``.
    blink_wait_s: float = 2.0
    require_ir: bool = False
    static_max_shape_change: float | None = None
    static_min_embedding_cosine: float | None = None
    blink_min_drop: float | None = None
    motion_min_motion: float | None = None
    motion_min_nonplanar: float | None = None
    pad_threshold: float | None = None
    fasnet_max_attack: float | None = None

    def __post_init__(self) -> None:
        for key in ("required", "any_of", "veto"):
            val = getattr(self, key)
            if isinstance(val, str) or not all(isinstance(v, str) for v in val):
                raise ConfigError(f"liveness.{key}: must be a list of check names, got {val!r}")
            unknown = [v for v in val if v not in CHECKS]
            if unknown:
                raise ConfigError(f"liveness.{key}: unknown check(s) {unknown}; known: {', '.join(CHECKS)}")
            object.__setattr__(self, key, tuple(val))
        if not self.required and not self.any_of and not self.require_ir and not self.challenge:
            raise ConfigError("liveness.required/any_of: at least one check must be required")
        if isinstance(self.min_frames, bool) or not isinstance(self.min_frames, int) or not 2 <= self.min_frames <= 100:
            raise ConfigError(f"liveness.min_frames: must be an integer 2..100, got {self.min_frames!r}")
        for key in ("challenge", "require_ir", "challenge_on_inconclusive"):
            if not isinstance(getattr(self, key), bool):
                raise ConfigError(f"liveness.{key}: must be true or false, got {getattr(self, key)!r}")
        w = self.challenge_window_s
        if isinstance(w, bool) or not isinstance(w, (int, float)) or not (0 < w <= 10) or not math.isfinite(w):
            raise ConfigError(f"liveness.challenge_window_s: must be a number in (0, 10], got {w!r}")
        b = self.blink_wait_s
        if isinstance(b, bool) or not isinstance(b, (int, float)) or not (0 <= b <= 10) or not math.isfinite(b):
            raise ConfigError(f"liveness.blink_wait_s: must be a number in [0, 10], got {b!r}")
        for key in _THRESHOLD_KEYS:
            v = getattr(self, key)
            if v is None:
                continue
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
                raise ConfigError(f"liveness.{key}: must be a positive number, got {v!r}")
            if key in ("static_min_embedding_cosine", "blink_min_drop", "pad_threshold", "fasnet_max_attack") \
                    and v >= 1:
                raise ConfigError(f"liveness.{key}: must be < 1, got {v!r}")

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LivenessConfig:
        if not isinstance(d, dict):
            raise ConfigError(f"liveness: must be a table, got {type(d).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError(f"liveness: unknown key(s) {unknown}; known: {', '.join(sorted(known))}")
        kw = dict(d)
        for key in ("required", "any_of", "veto"):
            if key in kw:
                if not isinstance(kw[key], (list, tuple)):
                    raise ConfigError(f"liveness.{key}: must be a list of check names, got {kw[key]!r}")
                kw[key] = tuple(kw[key])
        return cls(**kw)
