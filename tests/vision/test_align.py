"""Alignment: the similarity fit is exact on exact data, and real faces land on the template."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from firmware.vision.align import TEMPLATE_112, align_face, five_points_from_mesh, umeyama_similarity
from firmware.vision.errors import InvalidImageError
from tests.support.imagegeom import in_frame, rotate


@settings(max_examples=100, deadline=None)
@given(st.floats(-np.pi, np.pi), st.floats(0.2, 5.0), st.floats(-300, 300), st.floats(-300, 300))
def test_umeyama_recovers_a_similarity(theta, scale, tx, ty):
    r = scale * np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    src = TEMPLATE_112
    dst = src @ r.T + [tx, ty]
    m = umeyama_similarity(src, dst)
    assert np.allclose(m[:, :2], r, atol=1e-6) and np.allclose(m[:, 2], [tx, ty], atol=1e-4)


def test_degenerate_points_are_refused():
    with pytest.raises(InvalidImageError):
        umeyama_similarity(np.ones((5, 2)), TEMPLATE_112)
    with pytest.raises(InvalidImageError):
        umeyama_similarity(np.full((5, 2), np.nan), TEMPLATE_112)
    with pytest.raises(InvalidImageError):
        umeyama_similarity(np.ones((3, 2)), TEMPLATE_112)


@pytest.mark.parametrize("angle", [0, 20, -25])
def test_aligned_face_lands_on_the_template(pipeline, astronaut, angle):
    frame = rotate(in_frame(astronaut, scale=0.9, dx=40), angle)
    res = pipeline.process(frame)
    assert res.ok, res.reason
    face = res.primary
    assert face.alignment == "mesh-5pt" and face.aligned.shape == (112, 112, 3)
    src = five_points_from_mesh(face.mesh.points)
    m = umeyama_similarity(src, TEMPLATE_112)
    mapped = src @ m[:, :2].T + m[:, 2]
    assert np.abs(mapped - TEMPLATE_112)[:2].max() < 5.0  # eyes on the template's eyes (least squares)
    # run the mesh again inside the aligned crop (scaled 4× in a frame): the face is where the transform
    # put it, whatever the rotation of the original frame
    again = pipeline.process(in_frame(face.aligned, width=448, height=448, scale=1.0))
    pts = five_points_from_mesh(again.primary.mesh.points) / 4.0
    assert np.abs(pts - mapped).max() < 3.0, np.abs(pts - mapped)


def test_four_point_fallback_alignment(pipeline, astronaut):
    det = pipeline.detector(astronaut)[0]
    crop, m = align_face(astronaut, keypoints=det.keypoints)
    assert crop.shape == (112, 112, 3) and crop.dtype == np.uint8
    eyes = det.keypoints[:2] @ m[:, :2].T + m[:, 2]
    assert np.abs(eyes - TEMPLATE_112[:2]).max() < 4
    with pytest.raises(InvalidImageError):
        align_face(astronaut)
