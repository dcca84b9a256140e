"""Each liveness check on synthetic landmark sequences (pure logic; the mesh comes from the real model)."""

from __future__ import annotations

import numpy as np
import pytest

from firmware.vision.landmarks import LEFT_EYE_CONTOUR, RIGHT_EYE_CONTOUR
from firmware.vision.liveness import (
    BlinkThresholds,
    LivenessFrame,
    LivenessInputError,
    MotionThresholds,
    StaticReplayThresholds,
    Verdict,
    eye_aspect_ratio,
    find_blinks,
)
from firmware.vision.liveness.blink import check_blink
from firmware.vision.liveness.geometry import (
    fit_homography,
    homography_residual,
    inter_ocular,
    procrustes_residual,
)
from firmware.vision.liveness.motion import check_motion
from firmware.vision.liveness.replay import check_static_replay

STATIC = StaticReplayThresholds(max_shape_change=0.02, min_embedding_cosine=0.95)
MOTION = MotionThresholds(min_motion=0.01, min_nonplanar=0.01)
BLINK = BlinkThresholds(min_drop=0.3, min_drop_appearance=0.3)


def similarity(points: np.ndarray, angle_deg: float, scale: float, shift: tuple[float, float]) -> np.ndarray:
    a = np.deg2rad(angle_deg)
    r = scale * np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    out = points.copy()
    out[:, :2] = points[:, :2] @ r.T + np.asarray(shift)
    return out


def homography(points: np.ndarray, h: np.ndarray) -> np.ndarray:
    ph = np.column_stack([points[:, :2], np.ones(len(points))]) @ h.T
    out = points.copy()
    out[:, :2] = ph[:, :2] / ph[:, 2:3]
    return out


def rotate3d(points: np.ndarray, yaw_deg: float, pitch_deg: float = 0.0) -> np.ndarray:
    """Rigid 3-D rotation of the mesh about its centre, orthographic projection (x, y kept, z kept)."""
    c = points.mean(0)
    y, p = np.deg2rad(yaw_deg), np.deg2rad(pitch_deg)
    ry = np.array([[np.cos(y), 0, np.sin(y)], [0, 1, 0], [-np.sin(y), 0, np.cos(y)]])
    rx = np.array([[1, 0, 0], [0, np.cos(p), -np.sin(p)], [0, np.sin(p), np.cos(p)]])
    return (points - c) @ (rx @ ry).T + c


def close_eye_landmarks(points: np.ndarray, amount: float) -> np.ndarray:
    """Move each eye contour's points toward the eye's centre line by ``amount`` (1 = lids meet)."""
    out = points.copy()
    for idx in (RIGHT_EYE_CONTOUR, LEFT_EYE_CONTOUR):
        idx = list(idx)
        p = out[idx, :2]
        a, b = p[0], p[8]  # eye corners
        d = (b - a) / np.linalg.norm(b - a)
        n = np.array([-d[1], d[0]])
        off = (p - a) @ n
        out[idx, :2] = p - np.outer(off * amount, n)
    return out


def frames_of(meshes, embeddings=None, **kw):
    return [LivenessFrame(landmarks=m, embedding=None if embeddings is None else embeddings[i], t=0.1 * i, **kw)
            for i, m in enumerate(meshes)]


# ----------------------------------------------------------------------------------------------- geometry
def test_geometry_invariances(astronaut_mesh):
    m = astronaut_mesh
    moved = similarity(m, 7.0, 1.2, (13.0, -4.0))
    assert procrustes_residual(m, moved) < 1e-9
    h = np.array([[1.02, 0.05, 3.0], [-0.03, 0.97, -2.0], [2e-4, -1e-4, 1.0]])
    assert homography_residual(m, homography(m, h)) < 1e-6
    assert np.allclose(fit_homography(m, homography(m, h)), h, atol=1e-6)
    assert procrustes_residual(m, homography(m, h)) > 0.005  # perspective is not a similarity
    assert homography_residual(m, rotate3d(m, 15)) > 0.02  # a turning head is not a homography
    assert 10 < inter_ocular(m) < 200


# -------------------------------------------------------------------------------------------- static replay
def test_static_replay_rejects_a_still_picture_moved_and_noisy(astronaut_mesh):
    rng = np.random.default_rng(0)
    emb = rng.normal(size=192)
    meshes, embs = [], []
    for _ in range(6):
        m = similarity(astronaut_mesh, rng.uniform(-3, 3), 1 + rng.uniform(-0.05, 0.05), rng.uniform(-5, 5, 2))
        m[:, :2] += rng.normal(0, 0.05, (468, 2))  # landmark jitter from sensor noise
        meshes.append(m)
        embs.append(emb + rng.normal(0, 0.01, 192))
    r = check_static_replay(frames_of(meshes, embs), STATIC)
    assert r.verdict is Verdict.FAIL
    assert r.scores["shape_change"] < STATIC.max_shape_change
    assert r.scores["embedding_cosine"] > 0.99


def test_static_replay_passes_a_changing_face(astronaut_mesh):
    rng = np.random.default_rng(1)
    emb = rng.normal(size=192)
    meshes = [astronaut_mesh, rotate3d(astronaut_mesh, 6), close_eye_landmarks(astronaut_mesh, 0.8)]
    embs = [emb + rng.normal(0, 0.3, 192) for _ in meshes]
    r = check_static_replay(frames_of(meshes, embs), STATIC)
    assert r.verdict is Verdict.PASS
    # landmarks alone changing is enough even when embeddings stay identical
    assert check_static_replay(frames_of(meshes, [emb] * 3), STATIC).verdict is Verdict.PASS
    # and embeddings alone changing is enough too (a different face behind a still mesh)
    r2 = check_static_replay(frames_of([astronaut_mesh] * 3, [rng.normal(size=192) for _ in range(3)]), STATIC)
    assert r2.verdict is Verdict.PASS


def test_static_replay_needs_three_frames(astronaut_mesh):
    r = check_static_replay(frames_of([astronaut_mesh] * 2), STATIC)
    assert r.verdict is Verdict.UNKNOWN


# --------------------------------------------------------------------------------------------------- motion
def test_planar_warp_fails_motion_check(astronaut_mesh):
    rng = np.random.default_rng(2)
    seq = [astronaut_mesh]
    for _ in range(5):
        h = np.eye(3)
        h[:2, :2] += rng.uniform(-0.08, 0.08, (2, 2))
        h[:2, 2] = rng.uniform(-10, 10, 2)
        h[2, :2] = rng.uniform(-4e-4, 4e-4, 2)
        seq.append(homography(astronaut_mesh, h))
    r = check_motion(frames_of(seq), MOTION)
    assert r.verdict is Verdict.FAIL, r
    assert r.scores["motion"] >= MOTION.min_motion


def test_rigid_in_plane_motion_is_not_evidence_of_life(astronaut_mesh):
    seq = [similarity(astronaut_mesh, a, s, (a * 2, -a)) for a, s in ((0, 1), (5, 1.1), (-4, 0.9))]
    r = check_motion(frames_of(seq), MOTION)
    assert r.verdict is not Verdict.PASS  # a similarity is a homography: never 3-D evidence


def test_turning_head_passes_motion_check(astronaut_mesh):
    seq = [rotate3d(astronaut_mesh, yaw, pitch) for yaw, pitch in ((0, 0), (8, 0), (-6, 4), (3, -5))]
    r = check_motion(frames_of(seq), MOTION)
    assert r.verdict is Verdict.PASS, r


def test_still_face_is_unknown_for_motion(astronaut_mesh):
    assert check_motion(frames_of([astronaut_mesh] * 4), MOTION).verdict is Verdict.UNKNOWN


# ---------------------------------------------------------------------------------------------------- blink
def test_eye_closing_and_opening_passes_blink(astronaut_mesh):
    amounts = [0, 0, 0.5, 0.95, 0.5, 0, 0]
    seq = [close_eye_landmarks(astronaut_mesh, a) for a in amounts]
    ears = [eye_aspect_ratio(m) for m in seq]
    assert ears[3] < 0.5 * ears[0]
    assert find_blinks(ears, BLINK) == [3]
    r = check_blink(frames_of(seq), BLINK)
    assert r.verdict is Verdict.PASS and r.scores["blinks"] == 1


def test_no_blink_closed_only_or_never_reopened(astronaut_mesh):
    open_seq = [astronaut_mesh] * 6
    assert check_blink(frames_of(open_seq), BLINK).verdict is Verdict.UNKNOWN
    closing = [close_eye_landmarks(astronaut_mesh, a) for a in (0, 0, 0.5, 0.9, 0.95)]  # never reopens
    assert check_blink(frames_of(closing), BLINK).verdict is Verdict.UNKNOWN
    shut = [close_eye_landmarks(astronaut_mesh, 0.9)] * 5  # a photo of closed eyes
    assert check_blink(frames_of(shut), BLINK).verdict is Verdict.UNKNOWN


def test_led_challenge_requires_blink_after_the_flash(astronaut_mesh):
    amounts = [0, 0.9, 0, 0, 0, 0, 0, 0]  # the blink happens before the LED lights at frame 4
    seq = [close_eye_landmarks(astronaut_mesh, a) for a in amounts]
    frames = [LivenessFrame(landmarks=m, t=0.1 * i, led_on=i >= 4) for i, m in enumerate(seq)]
    r = check_blink(frames, BLINK, challenge_window_s=1.0)
    assert r.verdict is Verdict.FAIL
    amounts = [0, 0, 0, 0, 0, 0.9, 0, 0]  # blink 0.1 s after the flash
    seq = [close_eye_landmarks(astronaut_mesh, a) for a in amounts]
    frames = [LivenessFrame(landmarks=m, t=0.1 * i, led_on=i >= 4) for i, m in enumerate(seq)]
    assert check_blink(frames, BLINK, challenge_window_s=1.0).verdict is Verdict.PASS
    no_led = [LivenessFrame(landmarks=m, t=0.1 * i, led_on=False) for i, m in enumerate(seq)]
    assert check_blink(no_led, BLINK, challenge_window_s=1.0).verdict is Verdict.FAIL


# ---------------------------------------------------------------------------------------------- bad inputs
@pytest.mark.parametrize("kw", [
    {"landmarks": np.zeros((10, 3))},
    {"landmarks": np.full((468, 3), np.nan)},
    {"landmarks": np.zeros((468, 3)), "embedding": np.zeros(192)},
    {"landmarks": np.zeros((468, 3)), "embedding": np.ones((2, 96))},
    {"landmarks": np.zeros((468, 3)), "face": np.zeros((112, 112, 3), np.float32)},
    {"landmarks": np.zeros((468, 3)), "face": np.zeros((8, 8, 3), np.uint8)},
    {"landmarks": np.zeros((468, 3)), "pad_score": float("inf")},
    {"landmarks": np.zeros((468, 3)), "t": "soon"},
])
def test_bad_frame_inputs_raise_typed_errors(kw):
    with pytest.raises(LivenessInputError):
        LivenessFrame(**kw)


# ------------------------------------------------------------------------------------------------ same face
def test_same_face_refuses_an_identity_change(astronaut_mesh):
    from firmware.vision.liveness.replay import check_same_face

    rng = np.random.default_rng(3)
    a, b = rng.normal(size=192), rng.normal(size=192)
    one = frames_of([astronaut_mesh] * 3, [a + rng.normal(0, 0.2, 192) for _ in range(3)])
    assert check_same_face(one, 0.5).verdict is Verdict.PASS
    swapped = frames_of([astronaut_mesh] * 3, [a, a, b])
    r = check_same_face(swapped, 0.5)
    assert r.verdict is Verdict.FAIL and r.scores["embedding_min_cosine"] < 0.5
    assert check_same_face(frames_of([astronaut_mesh] * 3), 0.5).verdict is Verdict.UNKNOWN


def test_blink_is_unknown_on_faces_too_small_to_judge(astronaut_mesh):
    seq = [close_eye_landmarks(astronaut_mesh, a) for a in (0, 0, 0.9, 0, 0)]
    small = [LivenessFrame(landmarks=m * np.array([0.1, 0.1, 0.1]), t=0.1 * i) for i, m in enumerate(seq)]
    th = BlinkThresholds(min_drop=0.3, min_iod_px=20.0)
    assert check_blink(small, th).verdict is Verdict.UNKNOWN
    assert check_blink(frames_of(seq), th).verdict is Verdict.PASS
