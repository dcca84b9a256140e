"""The single-frame PAD classifier: standardised features -> L2-regularised logistic regression.

Shipped as JSON of coefficients (models/liveness/pad_lbp_fft.json, sha256 in models/liveness/manifest.json)
so the device needs no ML library; trained by models/liveness/train_pad.py.  The fitting code lives here
(not in the script) so the evaluation can re-train per cross-subject fold with exactly the same code.

Score convention: ``score(face)`` is the probability-like attack score in [0, 1]; an attempt is an attack
when its (mean) score is >= ``threshold``.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from firmware.vision.liveness.errors import PadModelError
from firmware.vision.liveness.pad_features import FEATURE_DIM, FEATURE_VERSION, pad_features

MODEL_KIND = "facelock-pad-logreg"


@dataclass(frozen=True)
class PadModel:
    mean: np.ndarray
    std: np.ndarray
    weights: np.ndarray
    bias: float
    threshold: float
    meta: dict[str, Any]

    def score_features(self, features: np.ndarray) -> np.ndarray:
        x = (np.atleast_2d(np.asarray(features, dtype=np.float64)) - self.mean) / self.std
        z = np.clip(x @ self.weights + self.bias, -30, 30)
        return 1 / (1 + np.exp(-z))

    def score(self, face: np.ndarray) -> float:
        """Attack score in [0, 1] of one RGB uint8 face crop."""
        return float(self.score_features(pad_features(face))[0])

    def with_threshold(self, threshold: float) -> PadModel:
        return PadModel(self.mean, self.std, self.weights, self.bias, float(threshold), self.meta)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": MODEL_KIND, "feature_version": FEATURE_VERSION, "feature_dim": int(len(self.weights)),
                "mean": self.mean.tolist(), "std": self.std.tolist(), "weights": self.weights.tolist(),
                "bias": self.bias, "threshold": self.threshold, "meta": self.meta}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PadModel:
        try:
            if d["kind"] != MODEL_KIND:
                raise PadModelError(f"PAD model kind {d['kind']!r} != {MODEL_KIND!r}")
            if d["feature_version"] != FEATURE_VERSION:
                raise PadModelError(f"PAD model was trained on features {d['feature_version']!r}, "
                                    f"this firmware computes {FEATURE_VERSION!r}: retrain (train_pad.py)")
            arrs = [np.asarray(d[k], dtype=np.float64) for k in ("mean", "std", "weights")]
            if any(a.shape != (FEATURE_DIM,) for a in arrs):
                raise PadModelError(f"PAD model vectors must have {FEATURE_DIM} values")
            if not all(np.isfinite(a).all() for a in arrs) or (arrs[1] <= 0).any():
                raise PadModelError("PAD model has non-finite values or non-positive std")
            thr = float(d["threshold"])
            if not 0.0 < thr < 1.0:
                raise PadModelError(f"PAD threshold {thr} outside (0, 1)")
            return cls(arrs[0], arrs[1], arrs[2], float(d["bias"]), thr, dict(d.get("meta", {})))
        except (KeyError, TypeError, ValueError) as exc:
            raise PadModelError(f"PAD model file is malformed: {exc!r}") from exc


def default_liveness_dir() -> Path:
    """models/liveness/ under the one models directory (see firmware.vision.manifest.default_models_dir)."""
    from firmware.vision.manifest import default_models_dir

    return default_models_dir() / "liveness"


def load_verified_json(name: str, directory: Path | None = None) -> dict[str, Any]:
    """Load models/liveness/<file of entry `name`> after checking its sha256 against the liveness manifest."""
    directory = Path(directory) if directory is not None else default_liveness_dir()
    mpath = directory / "manifest.json"
    try:
        manifest = json.loads(mpath.read_text(encoding="utf-8"))
        entry = manifest["files"][name]
        path = directory / entry["file"]
        blob = path.read_bytes()
    except FileNotFoundError as exc:
        raise PadModelError(f"liveness model file missing: {exc.filename} (run models/liveness/train_pad.py)") from exc
    except (OSError, KeyError, TypeError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise PadModelError(f"liveness manifest {mpath} has no usable entry {name!r}: {exc!r}") from exc
    digest = hashlib.sha256(blob).hexdigest()
    if digest != str(entry.get("sha256", "")).lower():
        raise PadModelError(f"{path.name} fails its integrity check: sha256 {digest[:16]}… != manifest "
                            f"{str(entry.get('sha256'))[:16]}…; refusing to load an altered model")
    try:
        return json.loads(blob)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise PadModelError(f"{path.name} is not valid JSON: {exc}") from exc


def load_pad_model(directory: Path | None = None) -> PadModel:
    return PadModel.from_dict(load_verified_json("pad", directory))
