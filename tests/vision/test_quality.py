"""Quality gates say why a frame is rejected: dark, bright, blurred, small, several faces, off-pose, cut off."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from firmware.vision import QualityConfig, Reason
from firmware.vision.detector import Detection
from firmware.vision.quality import assess, laplacian_variance, pose_measures
from tests.support.imagegeom import in_frame


def test_good_frame_passes(pipeline, astronaut):
    res = pipeline.process(in_frame(astronaut))
    assert res.ok and res.reason is Reason.OK and res.embedding is not None
    assert res.reason.describe() == "face usable"


def test_too_dark(pipeline, astronaut):
    dark = (in_frame(astronaut).astype(np.float32) * 0.12).astype(np.uint8)
    res = pipeline.process(dark)
    assert res.reason is Reason.TOO_DARK and res.embedding is None


def test_too_bright(pipeline, astronaut):
    f = in_frame(astronaut).astype(np.float32)
    bright = np.clip(f * 1.3 + 60, 0, 255).astype(np.uint8)  # overexposed, face still detected
    res = pipeline.process(bright)
    assert res.reason is Reason.TOO_BRIGHT and res.embedding is None


def test_blurred(pipeline, astronaut):
    res = pipeline.process(cv2.GaussianBlur(in_frame(astronaut), (0, 0), 4.0))
    assert res.reason is Reason.BLURRED, res.primary.quality.measures if res.primary else None


def test_face_too_small(pipeline, astronaut):
    res = pipeline.process(in_frame(astronaut, scale=0.45))  # found by the full-range model, ~38 px
    assert res.reason is Reason.FACE_TOO_SMALL, res.reason
    assert res.primary.detector == "blazeface_full_range" and res.embedding is None


def test_several_faces(pipeline, astronaut):
    half = in_frame(astronaut, width=320, height=480, scale=0.7)
    frame = np.ascontiguousarray(np.hstack([half, half]))
    res = pipeline.process(frame)
    assert res.reason is Reason.MULTIPLE_FACES and len(res.faces) >= 2 and res.embedding is None


def test_face_cut_off(pipeline, astronaut):
    frame = in_frame(astronaut, scale=1.5, dx=-430)
    res = pipeline.process(frame)
    assert res.reason in (Reason.FACE_CUT_OFF, Reason.NO_FACE), res.reason


def _det(kps) -> Detection:
    kps = np.asarray(kps, dtype=np.float32)
    x0, y0 = kps.min(0) - 30
    x1, y1 = kps.max(0) + 30
    return Detection(np.array([x0, y0, x1, y1], np.float32), 0.9, np.vstack([kps, kps[:2]]))


@pytest.mark.parametrize("kps,reason", [
    ([[100, 100], [160, 100], [130, 130], [130, 160]], Reason.OK),  # frontal
    ([[100, 100], [160, 100], [158, 130], [150, 160]], Reason.OFF_POSE),  # nose at the eye: yaw
    ([[100, 100], [160, 100], [130, 102], [130, 160]], Reason.OFF_POSE),  # nose at eye level: pitch
    ([[100, 100], [140, 150], [100, 150], [80, 180]], Reason.OFF_POSE),  # 51° roll
])
def test_pose_gate_on_keypoints(kps, reason):
    det = _det(kps)
    rep = assess((480, 640, 3), [det], 0, None, QualityConfig())
    assert rep.reason is reason, rep.measures


def test_pose_measures_of_a_frontal_face():
    m = pose_measures(np.array([[100, 100], [160, 100], [130, 130], [130, 160]], float))
    assert m["eye_distance"] == 60 and abs(m["yaw"]) < 1e-9 and abs(m["pitch"]) < 1e-9 and m["roll_deg"] == 0


def test_permissive_config_disables_gates_but_not_detection():
    det = _det([[100, 100], [160, 100], [158, 130], [150, 160]])
    assert assess((480, 640, 3), [det], 0, None, QualityConfig.permissive()).ok
    assert assess((480, 640, 3), [], 0, None, QualityConfig.permissive()).reason is Reason.NO_FACE


def test_laplacian_variance_orders_sharpness(astronaut):
    g = astronaut[..., 1]
    assert laplacian_variance(g) > laplacian_variance(cv2.GaussianBlur(g, (0, 0), 2)) * 5
    assert laplacian_variance(np.full((50, 50), 7, np.uint8)) == 0
