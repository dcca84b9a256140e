"""Alignment: a similarity transform (rotation, uniform scale, translation) onto the embedder's template.

The template is the standard 5-point 112×112 face template MobileFaceNet/ArcFace-style embedders were
trained on (eye centres, nose tip, mouth corners; image-left first).  Points come from the 468-point
face mesh when it is available (more precise), else from BlazeFace's 6 keypoints (eyes, nose, mouth
centre: a 4-point fit).
"""

from __future__ import annotations

import numpy as np

from firmware.vision.errors import InvalidImageError

#: 112×112 template: image-left eye, image-right eye, nose tip, image-left mouth corner, image-right one.
TEMPLATE_112 = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]],
    dtype=np.float64,
)

#: Mesh indices (MediaPipe face mesh, 468 points) for the template's points.
MESH_RIGHT_EYE = (33, 133, 160, 159, 158, 144, 145, 153)  # subject's right eye: image left
MESH_LEFT_EYE = (362, 263, 385, 386, 387, 373, 374, 380)  # subject's left eye: image right
MESH_NOSE_TIP = 1  # pronasale; measured on LFW-a: index 1 aligns better than 4 (see models/README.md)
MESH_MOUTH_RIGHT = 61  # image-left mouth corner
MESH_MOUTH_LEFT = 291


def umeyama_similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity transform mapping src (N,2) onto dst (N,2); returns a 2×3 matrix."""
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    if src.shape != dst.shape or src.ndim != 2 or src.shape[1] != 2 or len(src) < 2:
        raise InvalidImageError(f"need matching (N>=2, 2) point sets, got {src.shape} and {dst.shape}")
    if not (np.isfinite(src).all() and np.isfinite(dst).all()):
        raise InvalidImageError("alignment points are not finite")
    mu_s, mu_d = src.mean(0), dst.mean(0)
    s, d = src - mu_s, dst - mu_d
    var_s = (s**2).sum() / len(src)
    if var_s < 1e-12:
        raise InvalidImageError("alignment points are degenerate (all at one place)")
    cov = d.T @ s / len(src)
    u, sig, vt = np.linalg.svd(cov)
    sign = np.ones(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        sign[1] = -1
    r = u @ np.diag(sign) @ vt
    scale = (sig * sign).sum() / var_s
    t = mu_d - scale * r @ mu_s
    return np.hstack([scale * r, t[:, None]])


def five_points_from_mesh(mesh: np.ndarray) -> np.ndarray:
    """Template-ordered 5 points (x, y) from a (468, 2|3) face mesh in image pixels."""
    m = np.asarray(mesh)[:, :2]
    return np.array([
        m[list(MESH_RIGHT_EYE)].mean(0),
        m[list(MESH_LEFT_EYE)].mean(0),
        m[MESH_NOSE_TIP],
        m[MESH_MOUTH_RIGHT],
        m[MESH_MOUTH_LEFT],
    ])


def four_points_from_keypoints(keypoints: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(src, dst) for a fit on BlazeFace's eyes, nose tip and mouth centre."""
    kp = np.asarray(keypoints, dtype=np.float64)
    dst = np.vstack([TEMPLATE_112[:3], TEMPLATE_112[3:].mean(0, keepdims=True)])
    return kp[:4], dst


def warp(rgb: np.ndarray, matrix: np.ndarray, size: int = 112, template_size: int = 112) -> np.ndarray:
    """Warp the frame with a 2×3 matrix (in template_size coordinates) into a size×size crop."""
    import cv2

    m = np.asarray(matrix, dtype=np.float64)
    if size != template_size:
        m = m * (size / template_size)
    return cv2.warpAffine(rgb, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def align_face(rgb: np.ndarray, keypoints: np.ndarray | None = None, mesh: np.ndarray | None = None,
               size: int = 112) -> tuple[np.ndarray, np.ndarray]:
    """Aligned size×size RGB crop and the 2×3 transform used. Prefers the mesh when given."""
    if mesh is not None:
        m = umeyama_similarity(five_points_from_mesh(mesh), TEMPLATE_112)
    elif keypoints is not None:
        src, dst = four_points_from_keypoints(keypoints)
        m = umeyama_similarity(src, dst)
    else:
        raise InvalidImageError("align_face needs keypoints or a mesh")
    return warp(rgb, m, size), m
