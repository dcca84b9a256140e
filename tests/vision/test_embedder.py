"""Embeddings: unit norm, stable under transformations of one face, apart for another person; the
quantized embedder agrees with the float one."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from firmware.vision import FacePipeline, InvalidImageError
from tests.support.imagegeom import in_frame, rotate


def _variants(img):
    f = in_frame(img)
    grey = cv2.cvtColor(f, cv2.COLOR_RGB2GRAY)
    return {
        "frame": f,
        "smaller_shifted": in_frame(img, scale=0.75, dx=90, dy=30),
        "rotated_15": rotate(f, 15),
        "darker": (f * 0.6).astype(np.uint8),
        "grey": np.repeat(grey[:, :, None], 3, axis=2),
        "mirrored": np.ascontiguousarray(f[:, ::-1]),
        "jpeg_q30": cv2.imdecode(cv2.imencode(".jpg", f, [cv2.IMWRITE_JPEG_QUALITY, 30])[1], cv2.IMREAD_UNCHANGED),
    }


def test_unit_norm_and_dimension(pipeline, astronaut):
    e = pipeline.process(astronaut).embedding
    assert e.shape == (192,) and e.dtype == np.float32
    assert abs(float(np.linalg.norm(e)) - 1) < 1e-5


def test_same_face_scores_above_the_unlock_threshold_other_face_below(pipeline, astronaut, cameraman):
    thr = pipeline.threshold("unlock")
    ref = pipeline.process(astronaut).embedding
    for name, img in _variants(astronaut).items():
        res = pipeline.process(img)
        assert res.ok, (name, res.reason)
        assert float(ref @ res.embedding) > thr, name
    other = pipeline.process(cameraman)
    assert other.ok
    assert float(ref @ other.embedding) < thr


def test_quantized_matches_float(manifest, astronaut, cameraman):
    q = FacePipeline.from_manifest(manifest, embedder="embedder")
    f = FacePipeline.from_manifest(manifest, embedder="embedder_reference")
    assert q.embedder.spec.bytes < 0.4 * f.embedder.spec.bytes
    cos = []
    for img in [*_variants(astronaut).values(), cameraman]:
        r = q.process(img)
        cos.append(float(r.embedding @ f.embedder(r.primary.aligned)))
    assert np.median(cos) >= 0.98 and min(cos) > 0.95, cos


def test_embedder_refuses_wrong_crops(pipeline):
    with pytest.raises(InvalidImageError):
        pipeline.embedder(np.zeros((100, 100, 3), np.uint8))
    with pytest.raises(InvalidImageError):
        pipeline.embedder(np.zeros((112, 112, 3), np.float32))


def test_flip_augmentation_is_unit_and_mirror_symmetric(manifest, astronaut):
    p = FacePipeline.from_manifest(manifest, flip=True)
    crop = p.process(astronaut).primary.aligned
    a, b = p.embedder(crop), p.embedder(np.ascontiguousarray(crop[:, ::-1]))
    assert abs(float(np.linalg.norm(a)) - 1) < 1e-5
    assert float(a @ b) > 0.999
