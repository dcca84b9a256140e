"""``[vision]`` config section: runtime threads, model choice, operating point, quality-gate policy.

Model constants (files, sha256, normalisation, calibrated thresholds) live in models/manifest.json;
this section only chooses among them and sets device policy::

    [vision]
    num_threads = 2
    embedder = ""                 # "" = the manifest's default (mobilefacenet_dynamic); "w600k_mbf" = the
                                  # opt-in research-only one, after `facelock models install-research`
                                  # (then re-enrol: its templates are 512-d)
    operating_point = "unlock"    # unlock (FAR 1e-4 per comparison) | strict (1e-5), held out of sample
    # or state the door's promise, from which the threshold follows (1:N: each enrolled person is one
    # more chance for a stranger to match):
    # stranger_far = 1e-5         # a stranger opens the door at most once in 100,000 attempts ...
    # gallery_size = 20           # ... with at least this many people (the lock uses max(this, enrolled))
    min_face_px = 48
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any

from firmware.config_errors import ConfigError
from firmware.vision.quality import QualityConfig

_QUALITY_KEYS = tuple(f.name for f in fields(QualityConfig) if f.name != "enabled")
GATES = QualityConfig().enabled


@dataclass(frozen=True)
class VisionConfig:
    num_threads: int = 1
    runtime: str = ""  # "" = ai-edge-litert, then tflite-runtime
    manifest: str = ""  # "" = FACELOCK_MODELS_DIR or the installed models/manifest.json
    embedder: str = ""  # "" = the manifest's default embedder
    operating_point: str = "unlock"  # unlock | strict
    stranger_far: float | None = None  # per-attempt promise; the threshold then follows from the FAR curve
    gallery_size: int = 1  # people the stranger_far promise is made for; the lock uses max(this, enrolled)
    threshold: float | None = None  # override of the calibrated threshold (discouraged)
    margin: float | None = None  # 1:N margin; None = the manifest's calibrated margin (0.05 default)
    flip: bool | None = None  # mirror test-time augmentation; None = as calibrated in the manifest
    landmarks: bool = True  # 468-point mesh: face confirmation, 5-point alignment, liveness
    fallback_detector: bool = True  # full-range BlazeFace when the short-range finds no face
    gates: tuple[str, ...] = GATES
    min_eye_distance_px: float = 20.0
    min_face_px: float = 48.0
    second_face_ratio: float = 0.5
    max_outside_fraction: float = 0.15
    min_brightness: float = 40.0
    max_brightness: float = 220.0
    min_contrast: float = 12.0
    min_sharpness: float = 30.0
    max_yaw: float = 0.45
    max_roll_deg: float = 40.0
    max_pitch: float = 0.45

    def __post_init__(self) -> None:
        n = self.num_threads
        if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= 16:
            raise ConfigError(f"vision.num_threads: must be an integer 1..16, got {n!r}")
        if self.runtime not in ("", "ai-edge-litert", "tflite-runtime"):
            raise ConfigError(f"vision.runtime: must be ai-edge-litert or tflite-runtime, got {self.runtime!r}")
        for key in ("manifest", "embedder"):
            if not isinstance(getattr(self, key), str):
                raise ConfigError(f"vision.{key}: must be a string")
        if self.operating_point not in ("unlock", "strict"):
            raise ConfigError(f"vision.operating_point: must be unlock or strict, got {self.operating_point!r}")
        for key, lo, hi in (("threshold", -1.0, 1.0), ("margin", 0.0, 1.0)):
            v = getattr(self, key)
            if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or not lo <= v <= hi):
                raise ConfigError(f"vision.{key}: must be a number in [{lo}, {hi}], got {v!r}")
        sf = self.stranger_far
        if sf is not None:
            if isinstance(sf, bool) or not isinstance(sf, (int, float)) or not 0 < sf <= 0.1:
                raise ConfigError(f"vision.stranger_far: must be a number in (0, 0.1], got {sf!r}")
            if self.threshold is not None:
                raise ConfigError("vision.stranger_far and vision.threshold are exclusive: the threshold follows "
                                  "from stranger_far")
        g = self.gallery_size
        if isinstance(g, bool) or not isinstance(g, int) or not 1 <= g <= 100_000:
            raise ConfigError(f"vision.gallery_size: must be an integer 1..100000, got {g!r}")
        if self.flip is not None and not isinstance(self.flip, bool):
            raise ConfigError("vision.flip: must be true or false")
        for key in ("landmarks", "fallback_detector"):
            if not isinstance(getattr(self, key), bool):
                raise ConfigError(f"vision.{key}: must be true or false")
        gates = self.gates
        if isinstance(gates, str) or not all(isinstance(g, str) for g in gates):
            raise ConfigError("vision.gates: must be a list of gate names")
        unknown = [g for g in gates if g not in GATES]
        if unknown:
            raise ConfigError(f"vision.gates: unknown gate(s) {unknown}; known: {', '.join(GATES)}")
        object.__setattr__(self, "gates", tuple(gates))
        for key in _QUALITY_KEYS:
            v = getattr(self, key)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
                raise ConfigError(f"vision.{key}: must be a finite number >= 0, got {v!r}")

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> VisionConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError(f"vision: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        try:
            return cls(**d)
        except TypeError as exc:
            raise ConfigError(f"vision: {exc}") from exc

    def quality(self) -> QualityConfig:
        return QualityConfig(enabled=self.gates, **{k: float(getattr(self, k)) for k in _QUALITY_KEYS})
