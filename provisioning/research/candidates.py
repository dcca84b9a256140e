"""Candidate face embedders outside the shipped manifest, measured by the same harness as the default.

Only models whose licence allows commercial use may become the shipped default (models/README.md).
The InsightFace models under ``../shared/models-src/insightface-research-only`` are for
non-commercial research: they are measured here (what a stronger embedder would buy) and never
committed, never the default.
"""

from __future__ import annotations

from pathlib import Path

from firmware.vision.manifest import Manifest, ModelSpec, sha256_file

#: where each candidate's source file sits under the models-src folder; its facts (sha256, input,
#: layout, normalisation, size, licence) are pinned once, in models/research.json
SOURCES = {"w600k_mbf": "insightface-research-only/w600k_mbf/w600k_mbf_dynamic.tflite"}


def candidate_spec(name: str) -> ModelSpec:
    """The pinned research-only entry of a candidate (models/research.json)."""
    spec = Manifest.load().spec(name)
    if not spec.research_only:
        raise ValueError(f"{name} is a shipped model, not a research candidate")
    return spec


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

    spec = candidate_spec(name)
    path = (models_src or default_models_src()) / SOURCES[name]
    if not path.is_file():
        raise ModelMissingError(f"candidate {name}: {path} not found")
    if sha256_file(path) != spec.sha256:
        raise ModelIntegrityError(f"candidate {name}: {path} does not match its pinned sha256")
    return Embedder(TFLiteModel(path, num_threads=threads), spec, flip=flip)
