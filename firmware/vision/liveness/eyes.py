"""Appearance-based eye openness: how tall the dark part of the eye (iris, pupil, lash gap) is.

Why besides the EAR: the 468-point face-mesh model regresses eye contours with a strong face prior, so its
EAR moves only ~10 % when eyes close (measured on the astronaut photo with in-painted lids, see
tests/liveness), about as much as sensor noise moves it.  An open eye shows a dark iris as tall as the eye
opening; a closed one shows lid skin with a thin lash line.  So per eye: in the central half of the eye's
columns, the mean height of pixels darker than 0.6 x the surrounding skin, divided by the eye's width.
Measured on the aligned 112×112 crop, where the mesh's eye contours are mapped with the same similarity
transform the alignment used (a few hundred pixel reads per frame).
"""

from __future__ import annotations

import numpy as np

from firmware.vision.align import TEMPLATE_112, five_points_from_mesh, umeyama_similarity
from firmware.vision.imgops import rgb_to_gray
from firmware.vision.landmarks import LEFT_EYE_CONTOUR, RIGHT_EYE_CONTOUR

DARK_FRACTION = 0.6


def eye_openness(face: np.ndarray, landmarks: np.ndarray) -> float:
    """Mean over both eyes of (dark height in the eye's central columns) / eye width; NaN when an eye's
    neighbourhood falls outside the crop.  ``face`` is the aligned crop made from this ``landmarks`` mesh
    (112×112 template; other square sizes are scaled)."""
    size = face.shape[0]
    m = umeyama_similarity(five_points_from_mesh(landmarks), TEMPLATE_112) * (size / 112.0)
    g = rgb_to_gray(np.ascontiguousarray(face)).astype(np.float64)  # = cv2.cvtColor(RGB2GRAY), bit for bit
    vals = []
    for idx in (RIGHT_EYE_CONTOUR, LEFT_EYE_CONTOUR):
        p = landmarks[list(idx), :2] @ m[:, :2].T + m[:, 2]
        x0, y0 = p.min(0)
        x1, y1 = p.max(0)
        w, eh = x1 - x0, max(y1 - y0, 1.0)
        cy = (y0 + y1) / 2
        top, bottom = int(cy - 2.5 * eh), int(cy + 2.5 * eh) + 1
        if w < 2 or x0 < 0 or top < 0 or x1 >= size or bottom > size:
            return float("nan")
        box = g[int(cy - 1.2 * eh):int(np.ceil(cy + 1.2 * eh)) + 1, int(x0 + 0.25 * w):int(np.ceil(x1 - 0.25 * w)) + 1]
        ring = np.concatenate([g[top:int(cy - 1.2 * eh), int(x0):int(x1)].ravel(),
                               g[int(cy + 1.2 * eh) + 1:bottom, int(x0):int(x1)].ravel()])
        if box.size == 0 or ring.size == 0:
            return float("nan")
        dark = box < DARK_FRACTION * float(np.median(ring))
        vals.append(float(dark.sum(0).mean()) / w)
    return float(np.mean(vals))
