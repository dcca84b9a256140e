"""Small geometry helpers on face-mesh landmarks (pure numpy).

Scale is always expressed in inter-ocular distances (IOD) so thresholds hold for any face size or camera.
"""

from __future__ import annotations

import numpy as np

from firmware.vision.landmarks import LEFT_EYE_CONTOUR, RIGHT_EYE_CONTOUR

_RIGHT = list(RIGHT_EYE_CONTOUR)
_LEFT = list(LEFT_EYE_CONTOUR)

#: Mesh points used for shape comparison: the face oval, eyes, brows, nose and lips are all in the first
#: 468 points; using all of them averages the landmark model's per-point jitter away.
ALL = slice(None)


def inter_ocular(lm: np.ndarray) -> float:
    """Distance between the two eye centres (mean of each eye contour), in the landmarks' units."""
    return float(np.linalg.norm(lm[_RIGHT, :2].mean(0) - lm[_LEFT, :2].mean(0)))


def procrustes_residual(a: np.ndarray, b: np.ndarray) -> float:
    """RMS distance between 2-D shapes a and b after the best similarity transform of b onto a, in IODs of a.

    Removes translation, rotation and scale: a still photo moved in the image plane, or a camera shaking,
    gives ~0; expression and out-of-plane pose change give > 0.
    """
    a2, b2 = a[:, :2], b[:, :2]
    ac, bc = a2 - a2.mean(0), b2 - b2.mean(0)
    # complex-number trick for 2-D similarity: b*z ≈ a, z = <b, a> / <b, b>
    za = ac[:, 0] + 1j * ac[:, 1]
    zb = bc[:, 0] + 1j * bc[:, 1]
    denom = float(np.vdot(zb, zb).real)
    if denom <= 0:
        return float("inf")
    z = np.vdot(zb, za) / denom
    r = za - z * zb
    iod = inter_ocular(a)
    return float(np.sqrt(np.mean(np.abs(r) ** 2)) / max(iod, 1e-9))


def _normalise_points(p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Hartley normalisation: centroid to 0, mean distance sqrt(2). Returns (homogeneous points, T)."""
    c = p.mean(0)
    d = np.sqrt(((p - c) ** 2).sum(1)).mean()
    s = np.sqrt(2) / max(d, 1e-12)
    t = np.array([[s, 0, -s * c[0]], [0, s, -s * c[1]], [0, 0, 1.0]])
    ph = np.column_stack([p, np.ones(len(p))]) @ t.T
    return ph, t


def fit_homography(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares (normalised DLT) homography mapping src (N,2) onto dst (N,2), N >= 4."""
    s, ts = _normalise_points(np.asarray(src, dtype=np.float64)[:, :2])
    d, td = _normalise_points(np.asarray(dst, dtype=np.float64)[:, :2])
    n = len(s)
    a = np.zeros((2 * n, 9))
    a[0::2, 0:3] = s
    a[0::2, 6:9] = -d[:, 0:1] * s
    a[1::2, 3:6] = s
    a[1::2, 6:9] = -d[:, 1:2] * s
    _, _, vt = np.linalg.svd(a, full_matrices=False)
    h = vt[-1].reshape(3, 3)
    h = np.linalg.inv(td) @ h @ ts
    return h / h[2, 2] if abs(h[2, 2]) > 1e-12 else h


def apply_homography(h: np.ndarray, p: np.ndarray) -> np.ndarray:
    ph = np.column_stack([p[:, :2], np.ones(len(p))]) @ h.T
    w = ph[:, 2:3]
    w = np.where(np.abs(w) < 1e-12, 1e-12, w)
    return ph[:, :2] / w


def homography_residual(src: np.ndarray, dst: np.ndarray) -> float:
    """RMS reprojection error (in IODs of dst) of the best homography src -> dst.

    A flat photo or screen moved in front of the camera moves its landmarks by one homography: ~0 residual.
    A real head turning shows parallax (nose against cheeks and ears) that no homography explains.
    """
    h = fit_homography(src, dst)
    r = apply_homography(h, src) - dst[:, :2]
    return float(np.sqrt(np.mean((r**2).sum(1))) / max(inter_ocular(dst), 1e-9))


def mean_displacement(src: np.ndarray, dst: np.ndarray) -> float:
    """Mean landmark displacement between two frames, in IODs of src: how much motion there is at all."""
    return float(np.linalg.norm(dst[:, :2] - src[:, :2], axis=1).mean() / max(inter_ocular(src), 1e-9))


def spread(items: list, k: int) -> list:
    """At most ``k`` items evenly spread over the sequence (first and last kept).

    Why: the pairwise checks cost O(n^2) model-free fits; an attempt may now span 30+ frames, and frames a
    few tens of milliseconds apart carry the same evidence, so comparing an even spread bounds the cost
    (and the decision latency) without losing the attempt's time span.
    """
    n = len(items)
    if n <= k:
        return list(items)
    idx = sorted({int(round(i)) for i in np.linspace(0, n - 1, k)})
    return [items[i] for i in idx]
