"""Glue from the face pipeline's per-frame result to a LivenessFrame (the only place liveness meets it).

Keeps one detector/landmark/embedding implementation in the codebase: liveness consumes
``firmware.vision.pipeline.FacePipeline`` output and never runs a model of its own except the PAD score.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from firmware.vision.liveness.fasnet import FAS_SCALES, fas_crops
from firmware.vision.liveness.frame import LivenessFrame

if TYPE_CHECKING:  # pragma: no cover
    from firmware.vision.pipeline import FacePipeline, FrameResult


def frame_from_result(res: FrameResult, t: float = 0.0, led_on: bool | None = None, ir: bool = False,
                      pipeline: FacePipeline | None = None, rgb: np.ndarray | None = None) -> LivenessFrame | None:
    """LivenessFrame of the primary face, or None when the frame has no face mesh.

    When the quality gates kept the embedding out (e.g. a slightly blurred frame) and ``pipeline`` is
    given, the aligned crop is embedded anyway: liveness needs the embedding's *stability*, not a
    match-grade embedding.  With the frame's ``rgb``, the learned PAD model's crops (2.7x and 4.0x the
    detector box, ``fasnet.FAS_SCALES``) are cut too; they are scored later, once, by the policy.
    """
    face = res.primary
    if face is None or face.mesh is None:
        return None
    emb = face.embedding
    if emb is None and pipeline is not None and face.aligned is not None:
        emb = pipeline.embed_aligned(face.aligned)
    crops = None
    if rgb is not None:
        crops = fas_crops(rgb, face.detection.box, FAS_SCALES)
    return LivenessFrame(landmarks=face.mesh.points, embedding=emb, face=face.aligned, fas_crops=crops, t=t,
                         led_on=led_on, ir=ir)
