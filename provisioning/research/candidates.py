"""Candidate face embedders outside the shipped manifest, measured by the same harness as the default.

Only models whose licence allows commercial use may become the shipped default (models/README.md).
The InsightFace models under ``../shared/models-src/insightface-research-only`` are for
non-commercial research: they are measured here (what a stronger embedder would buy) and never
committed, never the default.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from firmware.vision.manifest import ModelSpec, sha256_file


@dataclass(frozen=True)
class Candidate:
    name: str
    relpath: str  # under the models-src folder
    sha256: str
    layout: str
    mean: float
    std: float
    dim: int
    license: str
    note: str


CANDIDATES = {
    "w600k_mbf": Candidate(
        "w600k_mbf", "insightface-research-only/w600k_mbf/w600k_mbf_dynamic.tflite",
        "d1e8fd20a1322b2b6071e031ee1e38eea6d0c8f18b4f3de7653218143bd6f37f", "NCHW", 127.5, 127.5, 512,
        "InsightFace pretrained models: non-commercial research only",
        "ArcFace MobileFaceNet trained on WebFace600K (buffalo_sc), third-party dynamic-range TFLite"),
}


def default_models_src() -> Path:
    """``$FACELOCK_SHARED/models-src``, else ``../shared/models-src`` beside the checkout."""
    import os

    env = os.environ.get("FACELOCK_SHARED")
    return (Path(env) if env else Path(__file__).resolve().parents[3] / "shared") / "models-src"


def candidate_embedder(name: str, models_src: Path | None = None, flip: bool = True, threads: int = 1):
    """An :class:`firmware.vision.embedder.Embedder` for a candidate, sha256-checked."""
    from firmware.vision.embedder import Embedder
    from firmware.vision.errors import ModelIntegrityError, ModelMissingError
    from firmware.vision.runtime import TFLiteModel

    c = CANDIDATES[name]
    path = (models_src or default_models_src()) / c.relpath
    if not path.is_file():
        raise ModelMissingError(f"candidate {name}: {path} not found")
    if sha256_file(path) != c.sha256:
        raise ModelIntegrityError(f"candidate {name}: {path} does not match its pinned sha256")
    spec = ModelSpec(name=name, role="embedder", file=str(path), sha256=c.sha256, bytes=path.stat().st_size,
                     input_size=(112, 112), color="RGB", norm_mean=c.mean, norm_std=c.std, output_size=c.dim,
                     quantization="dynamic-range (third party)", license=c.license, layout=c.layout)
    return Embedder(TFLiteModel(path, num_threads=threads), spec, flip=flip)
