"""BlazeFace decoding on real images: anchors, NMS, boxes and keypoints that follow the face."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from skimage import data

from firmware.vision.detector import generate_anchors, iou_one_to_many, weighted_nms
from tests.support.imagegeom import in_frame

# astronaut.png (512×512): the face spans about x 178-272, y 81-175; eyes at about (204,101) and (248,108)
ASTRO_BOX = np.array([178, 81, 272, 175], dtype=np.float32)


def test_anchor_counts_match_mediapipe():
    assert len(generate_anchors(128, [8, 16, 16, 16], 1.0)) == 896
    assert len(generate_anchors(192, [4], 0.0)) == 2304
    a = generate_anchors(128, [8, 16, 16, 16], 1.0)
    assert a.min() > 0 and a.max() < 1
    assert np.allclose(a[0], [0.5 / 16, 0.5 / 16]) and np.allclose(a[-1], [1 - 0.5 / 8, 1 - 0.5 / 8])


def test_weighted_nms_merges_overlaps_and_keeps_separate_faces():
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60]], dtype=np.float32)
    kps = np.zeros((3, 6, 2), np.float32)
    kps[1] += 1.0
    scores = np.array([0.9, 0.6, 0.8], np.float32)
    out = weighted_nms(boxes, kps, scores, 0.3, 10)
    assert len(out) == 2
    merged_box, merged_kp, s = out[0]
    assert s == pytest.approx(0.9)
    assert merged_box[0] == pytest.approx(0.6 / 1.5)  # score-weighted average of 0 and 1
    assert merged_kp[0, 0] == pytest.approx(0.6 / 1.5)
    assert np.allclose(out[1][0], boxes[2])


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(st.floats(0, 100), st.floats(0, 100), st.floats(1, 50), st.floats(1, 50)),
                min_size=1, max_size=8))
def test_iou_is_symmetric_and_bounded(raw):
    b = np.array([[x, y, x + w, y + h] for x, y, w, h in raw], dtype=np.float64)
    m = np.stack([iou_one_to_many(bi, b) for bi in b])
    assert np.allclose(m, m.T) and (m >= 0).all() and (m <= 1 + 1e-9).all()
    assert np.allclose(np.diag(m), 1)


def test_astronaut_face_box_and_keypoints(pipeline, astronaut):
    dets = pipeline.detector(astronaut)
    assert len(dets) == 1
    d = dets[0]
    assert d.score > 0.8
    assert np.abs(d.box - ASTRO_BOX).max() < 12
    re, le, nose, mouth = d.keypoints[:4]
    assert re[0] < nose[0] < le[0]  # subject's right eye on the image's left
    assert max(re[1], le[1]) < nose[1] < mouth[1]


@pytest.mark.parametrize("scale,dx,dy", [(1.0, 0, 0), (0.6, 150, 60), (0.8, -120, -40), (1.6, 0, 40),
                                          (0.4, -200, 100)])
def test_box_follows_the_face_in_a_640x480_frame(pipeline, astronaut, scale, dx, dy):
    frame = in_frame(astronaut, scale=scale, dx=dx, dy=dy)
    s = scale * 480 / 512
    expect = ASTRO_BOX * s + np.array([320 - s * 256 + dx, 240 - s * 256 + dy] * 2)
    faces, how = pipeline.find_faces(frame)  # short range, then the full-range model for small faces
    assert faces, "face not found"
    det, mesh = faces[0]
    assert mesh is not None and mesh.presence > 0.5
    size = float(ASTRO_BOX[2] - ASTRO_BOX[0]) * s
    assert np.abs(det.box - expect).max() < 0.25 * size, how
    assert np.all(det.box[:2] < det.keypoints.min(0) + 0.25 * size)


def test_short_range_model_alone_misses_small_faces(pipeline, astronaut):
    # why the pipeline falls back to the full-range model: a 40-px face in a 640×480 frame
    frame = in_frame(astronaut, scale=0.4, dx=-200, dy=100)
    assert pipeline.detector(frame) == []
    assert pipeline.fallback_detector(frame)


def test_mirrored_frame_mirrors_the_keypoints(pipeline, astronaut):
    d = pipeline.detector(astronaut)[0]
    m = pipeline.detector(np.ascontiguousarray(astronaut[:, ::-1]))[0]
    w = astronaut.shape[1]
    # the mirrored subject's right eye is the original left eye, reflected
    assert abs((w - m.keypoints[0, 0]) - d.keypoints[1, 0]) < 6
    assert abs(m.keypoints[0, 1] - d.keypoints[1, 1]) < 6


@pytest.mark.parametrize("name", ["coffee", "rocket", "horse"])
def test_no_face_in_face_less_photos(pipeline, name):
    img = getattr(data, name)()
    if img.dtype == bool:
        img = img.astype(np.uint8) * 255
    if img.ndim == 2:
        img = np.repeat(img[:, :, None], 3, axis=2)
    res = pipeline.process(np.ascontiguousarray(img[:, :, :3]))
    assert not res.ok and res.reason.value == "no_face" and res.embedding is None


def test_cat_face_is_not_a_human_face(pipeline):
    # BlazeFace scores Chelsea the cat's face at ~0.6; the mesh model's face-presence check rejects it
    res = pipeline.process(data.chelsea())
    assert res.reason.value == "no_face"


def test_blank_and_noise_frames(pipeline):
    assert pipeline.process(np.zeros((480, 640, 3), np.uint8)).reason.value == "no_face"
    noise = np.random.default_rng(0).integers(0, 256, (480, 640, 3), dtype=np.uint8)
    assert pipeline.process(noise).reason.value == "no_face"
