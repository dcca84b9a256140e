"""Glue from the face pipeline's per-frame result to a LivenessFrame (the only place liveness meets it).

Keeps one detector/landmark/embedding implementation in the codebase: liveness consumes
``firmware.vision.pipeline.FacePipeline`` output and never runs a model of its own except the PAD score.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from firmware.vision.liveness.frame import LivenessFrame

if TYPE_CHECKING:  # pragma: no cover
    from firmware.vision.pipeline import FacePipeline, FrameResult


def frame_from_result(res: FrameResult, t: float = 0.0, led_on: bool | None = None, ir: bool = False,
                      pipeline: FacePipeline | None = None) -> LivenessFrame | None:
    """LivenessFrame of the primary face, or None when the frame has no face mesh.

    When the quality gates kept the embedding out (e.g. a slightly blurred frame) and ``pipeline`` is
    given, the aligned crop is embedded anyway: liveness needs the embedding's *stability*, not a
    match-grade embedding.
    """
    face = res.primary
    if face is None or face.mesh is None:
        return None
    emb = face.embedding
    if emb is None and pipeline is not None and face.aligned is not None:
        emb = pipeline.embed_aligned(face.aligned)
    return LivenessFrame(landmarks=face.mesh.points, embedding=emb, face=face.aligned, t=t, led_on=led_on, ir=ir)
