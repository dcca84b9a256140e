"""Per-frame inputs of one verification attempt.

Liveness never sees the camera: the face pipeline hands it, per frame, what it computed anyway (the
468-point mesh, the embedding, the aligned crop) so liveness stays pure, cheap and testable on synthetic
sequences.  Validation happens here, once, with typed errors, so the checks can assume clean arrays.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from firmware.vision.liveness.errors import LivenessInputError

MESH_POINTS = 468


@dataclass(frozen=True)
class LivenessFrame:
    """One frame of an attempt.

    landmarks: (468, 2|3) face mesh in frame pixels (MediaPipe order); required by every geometric check.
    embedding: (D,) face embedding (any scale; compared by cosine), optional.
    face: aligned face crop (H, W, 3) uint8 RGB for the single-frame PAD score, optional.
    pad_score: a PAD score already computed for this frame (skips ``face``), optional.
    fas_crops: (K, 80, 80, 3) uint8 BGR crops around the detector box for the learned PAD model
        (``fasnet.fas_crops``), optional; in memory only.
    fas_score: the learned PAD model's attack score already computed for this frame, optional.
    openness: the appearance eye openness (``eyes.eye_openness``) already computed from ``face``, optional.
    t: capture time in seconds (monotonic), used only for ordering and the LED challenge.
    led_on: whether the challenge LED was lit for this frame (None when no challenge runs).
    ir: whether the frame came from an IR camera (``require_ir``).
    """

    landmarks: np.ndarray
    embedding: np.ndarray | None = None
    face: np.ndarray | None = None
    pad_score: float | None = None
    fas_crops: np.ndarray | None = None
    fas_score: float | None = None
    openness: float | None = None
    t: float = 0.0
    led_on: bool | None = None
    ir: bool = False

    def __post_init__(self) -> None:
        lm = np.asarray(self.landmarks)
        if lm.ndim != 2 or lm.shape[0] != MESH_POINTS or lm.shape[1] not in (2, 3):
            raise LivenessInputError(f"landmarks must be ({MESH_POINTS}, 2|3), got shape {lm.shape}")
        if not np.issubdtype(lm.dtype, np.number) or not np.isfinite(lm).all():
            raise LivenessInputError("landmarks must be finite numbers")
        object.__setattr__(self, "landmarks", lm.astype(np.float64))
        if self.embedding is not None:
            e = np.asarray(self.embedding)
            if e.ndim != 1 or e.size < 2 or not np.issubdtype(e.dtype, np.number) or not np.isfinite(e).all():
                raise LivenessInputError(f"embedding must be a finite 1-D vector, got shape {e.shape}")
            if float(np.linalg.norm(e)) == 0.0:
                raise LivenessInputError("embedding is all zeros")
            object.__setattr__(self, "embedding", e.astype(np.float64))
        if self.face is not None:
            f = np.asarray(self.face)
            if f.ndim != 3 or f.shape[2] != 3 or f.dtype != np.uint8 or min(f.shape[:2]) < 32:
                raise LivenessInputError(
                    f"face must be an (H>=32, W>=32, 3) uint8 RGB crop, got shape {f.shape} dtype {f.dtype}")
            object.__setattr__(self, "face", f)
        for key in ("pad_score", "fas_score"):
            v = getattr(self, key)
            if v is None:
                continue
            try:
                p = float(v)
            except (TypeError, ValueError) as exc:
                raise LivenessInputError(f"{key} must be a number, got {v!r}") from exc
            if not np.isfinite(p):
                raise LivenessInputError(f"{key} must be finite")
            object.__setattr__(self, key, p)
        if self.openness is not None:  # NaN allowed: the eye fell outside the crop
            try:
                object.__setattr__(self, "openness", float(self.openness))
            except (TypeError, ValueError) as exc:
                raise LivenessInputError(f"openness must be a number, got {self.openness!r}") from exc
        if self.fas_crops is not None:
            c = np.asarray(self.fas_crops)
            if c.ndim != 4 or c.shape[1:] != (80, 80, 3) or c.dtype != np.uint8:
                raise LivenessInputError(f"fas_crops must be (K, 80, 80, 3) uint8, got {c.shape} {c.dtype}")
            object.__setattr__(self, "fas_crops", c)
        try:
            t = float(self.t)
        except (TypeError, ValueError) as exc:
            raise LivenessInputError(f"t must be a number of seconds, got {self.t!r}") from exc
        if not np.isfinite(t):
            raise LivenessInputError("t must be finite")
        object.__setattr__(self, "t", t)
