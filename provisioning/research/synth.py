"""Synthetic attack and live sequences from one still image (for calibration, evaluation and tests).

- ``replay_burst``: what a camera sees of a held-up photo or frozen screen: the same picture with sensor
  noise and small global shifts;
- ``planar_warps``: the photo tilted and moved in front of the camera (one homography per frame);
- ``close_eyes``: the eye regions squashed vertically around their centre line (a blink), used to build a
  live-like sequence with a blink from a still image;
- ``head_pose`` / ``live_head``: the face turned in 3-D (the mesh rotated with its depth, the image warped
  piecewise-affinely to it) and a blink: a live-like sequence with the parallax and shape change of a real
  head, which the static-replay and planar-motion checks look for (the demo and the runtime benchmark).
Deterministic for a given seed.
"""

from __future__ import annotations

import numpy as np

from firmware.vision.landmarks import LEFT_EYE_CONTOUR, RIGHT_EYE_CONTOUR


def _as_rgb(img: np.ndarray) -> np.ndarray:
    a = np.asarray(img)
    if a.ndim == 2:
        a = np.repeat(a[:, :, None], 3, axis=2)
    return np.ascontiguousarray(a[:, :, :3]).astype(np.uint8)


def replay_burst(img: np.ndarray, n: int = 10, noise_sigma: float = 3.0, max_shift: float = 3.0,
                 seed: int = 0) -> list[np.ndarray]:
    """n frames of a still picture: Gaussian sensor noise (sigma in grey levels) and sub-pixel global shifts."""
    import cv2

    rng = np.random.default_rng(seed)
    rgb = _as_rgb(img)
    h, w = rgb.shape[:2]
    out = []
    for _ in range(n):
        dx, dy = rng.uniform(-max_shift, max_shift, size=2)
        m = np.array([[1.0, 0.0, dx], [0.0, 1.0, dy]])
        f = cv2.warpAffine(rgb, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        f = f.astype(np.float32) + rng.normal(0.0, noise_sigma, f.shape).astype(np.float32)
        out.append(np.clip(np.rint(f), 0, 255).astype(np.uint8))
    return out


def random_homography(w: int, h: int, rng: np.random.Generator, tilt: float = 0.08, shift: float = 0.04,
                      rot_deg: float = 6.0, scale: float = 0.08) -> np.ndarray:
    """A plausible hand-held tilt/move of a flat picture: perspective corner jitter + rotation/scale/shift."""
    import cv2

    src = np.float32([[0, 0], [w, 0], [w, h], [0, h]])
    c = np.array([w / 2, h / 2])
    a = np.deg2rad(rng.uniform(-rot_deg, rot_deg))
    s = 1 + rng.uniform(-scale, scale)
    r = s * np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    dst = (src - c) @ r.T + c + rng.uniform(-shift, shift, 2) * [w, h]
    # perspective: pull one side in (a yaw or pitch tilt of the picture)
    side = rng.integers(4)
    k = rng.uniform(0.3, 1.0) * tilt
    pairs = ((0, 3), (1, 2), (0, 1), (3, 2))[side]
    for i in pairs:
        dst[i] += (c - dst[i]) * k
    return cv2.getPerspectiveTransform(src, np.float32(dst))


def planar_warps(img: np.ndarray, n: int = 6, seed: int = 0, noise_sigma: float = 2.0,
                 tilt: float = 0.08) -> list[np.ndarray]:
    """n frames of the picture held at different tilts and places (first frame unwarped)."""
    import cv2

    rng = np.random.default_rng(seed)
    rgb = _as_rgb(img)
    h, w = rgb.shape[:2]
    out = []
    for i in range(n):
        hm = np.eye(3) if i == 0 else random_homography(w, h, rng, tilt=tilt)
        f = cv2.warpPerspective(rgb, hm, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        f = f.astype(np.float32) + rng.normal(0.0, noise_sigma, f.shape).astype(np.float32)
        out.append(np.clip(np.rint(f), 0, 255).astype(np.uint8))
    return out


def close_eyes(img: np.ndarray, landmarks: np.ndarray, amount: float) -> np.ndarray:
    """Close both eyes by ``amount`` (0 = open, 1 = shut) using the mesh's eye contours (frame pixels).

    The shut eye is the eye opening in-painted with the surrounding lid skin plus a thin lash line along the
    lower lid, which is what a closed eye looks like at webcam resolution; intermediate amounts blend the
    open and shut images (a lid half-way down).
    """
    import cv2

    src = _as_rgb(img)
    if not 0.0 <= float(amount) <= 1.0:
        raise ValueError(f"amount must be in [0, 1], got {amount}")
    if amount == 0:
        return src.copy()
    lm = np.asarray(landmarks, dtype=np.float64)
    mask = np.zeros(src.shape[:2], np.uint8)
    eyes = [lm[list(idx), :2] for idx in (RIGHT_EYE_CONTOUR, LEFT_EYE_CONTOUR)]
    for p in eyes:
        cv2.fillPoly(mask, [np.int32(np.round(p))], 255)
    width = float(np.linalg.norm(eyes[0][0] - eyes[0][8]))
    grow = max(1, int(round(width / 10)))
    mask = cv2.dilate(mask, np.ones((3, 3), np.uint8), iterations=grow)
    shut = cv2.inpaint(src, mask, 5, cv2.INPAINT_TELEA)
    for p in eyes:  # contour order: corner, lower lid ..., other corner, upper lid ...
        cv2.polylines(shut, [np.int32(np.round(p[:9]))], False, (60, 45, 40), max(1, grow // 2), cv2.LINE_AA)
    out = (1 - amount) * src.astype(np.float32) + amount * shut.astype(np.float32)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def rotate_mesh(landmarks: np.ndarray, yaw_deg: float, pitch_deg: float = 0.0) -> np.ndarray:
    """The (468, 3) face mesh turned in 3-D about its centroid: yaw about the vertical axis, pitch about the
    horizontal one, then projected orthographically (x, y in frame pixels, z as the mesh gives it)."""
    m = np.asarray(landmarks, dtype=np.float64)
    if m.ndim != 2 or m.shape[1] != 3:
        raise ValueError(f"head pose needs a (N, 3) mesh with depth, got shape {m.shape}")
    c = m.mean(0)
    a, b = np.deg2rad(float(yaw_deg)), np.deg2rad(float(pitch_deg))
    ry = np.array([[np.cos(a), 0.0, np.sin(a)], [0.0, 1.0, 0.0], [-np.sin(a), 0.0, np.cos(a)]])
    rx = np.array([[1.0, 0.0, 0.0], [0.0, np.cos(b), -np.sin(b)], [0.0, np.sin(b), np.cos(b)]])
    return (m - c) @ (rx @ ry).T + c


def head_pose(img: np.ndarray, landmarks: np.ndarray, yaw_deg: float, pitch_deg: float = 0.0,
              ring: float = 1.8) -> tuple[np.ndarray, np.ndarray]:
    """The face of a still image turned in 3-D: returns (frame, the turned mesh in frame pixels).

    Why: a live head that turns shows parallax (the nose moves against the cheeks and the face outline), which
    no flat picture can; this is the motion the static-replay and planar-motion checks look for.  The mesh
    (with the landmark model's depth) is rotated about its centroid (:func:`rotate_mesh`) and the image is
    warped piecewise-affinely (a triangulation of the mesh points) from the old to the new positions.  A ring
    of fixed points at ``ring`` times the face's extent blends the warp into the untouched background, so hair
    and neck follow the head smoothly.  Occlusion is not modelled, so keep the angles moderate (|yaw| <= 30).
    """
    import cv2
    from scipy.interpolate import griddata

    src = _as_rgb(img)
    h, w = src.shape[:2]
    m = np.asarray(landmarks, dtype=np.float64)
    turned = rotate_mesh(m, yaw_deg, pitch_deg)
    c = m[:, :2].mean(0)
    ext = np.abs(m[:, :2] - c).max(0) * ring
    t = np.linspace(0.0, 2 * np.pi, 48, endpoint=False)
    anchors = c + np.column_stack([np.cos(t) * ext[0], np.sin(t) * ext[1]])
    corners = np.array([[0, 0], [w - 1, 0], [0, h - 1], [w - 1, h - 1]], dtype=np.float64)
    dst = np.vstack([turned[:, :2], anchors, corners])
    srcp = np.vstack([m[:, :2], anchors, corners])
    x0, y0 = np.floor(np.clip(anchors.min(0), 0, [w - 1, h - 1])).astype(int)
    x1, y1 = np.ceil(np.clip(anchors.max(0), 0, [w - 1, h - 1])).astype(int)
    map_x, map_y = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    gy, gx = np.mgrid[y0:y1 + 1, x0:x1 + 1]
    # inverse map: for each output pixel, where it comes from in the still image
    vals = griddata(dst, srcp, (gx, gy), method="linear")
    ok = np.isfinite(vals[..., 0])
    map_x[y0:y1 + 1, x0:x1 + 1][ok] = vals[..., 0][ok]
    map_y[y0:y1 + 1, x0:x1 + 1][ok] = vals[..., 1][ok]
    out = cv2.remap(src, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return out, turned


def live_head(img: np.ndarray, landmarks: np.ndarray, n: int, yaw_amp: float = 30.0, yaw_period: float = 10.0,
              pitch_amp: float = 15.0, pitch_period: float = 7.0, blink_every: int = 8, noise_sigma: float = 2.0,
              seed: int = 0, phase: float = 0.0) -> list[np.ndarray]:
    """n frames of a person shaking the head (3-D yaw and pitch, :func:`head_pose`) and blinking.

    Frame i has yaw ``yaw_amp * sin(2 pi i / yaw_period + phase)``, pitch likewise, the eyes closing over
    three frames (0.6, 1, 0.6) every ``blink_every`` frames (0 = never), and Gaussian sensor noise.
    """
    rng = np.random.default_rng(seed)
    shut = {1: 0.6, 2: 1.0, 3: 0.6}
    out = []
    for i in range(n):
        yaw = yaw_amp * np.sin(2 * np.pi * i / yaw_period + phase)
        pitch = pitch_amp * np.sin(2 * np.pi * i / pitch_period)
        f, mesh = head_pose(img, landmarks, yaw, pitch)
        amount = shut.get(i % blink_every, 0.0) if blink_every > 0 else 0.0
        if amount:
            f = close_eyes(f, mesh, amount)
        g = f.astype(np.float32) + rng.normal(0.0, noise_sigma, f.shape).astype(np.float32)
        out.append(np.clip(np.rint(g), 0, 255).astype(np.uint8))
    return out
