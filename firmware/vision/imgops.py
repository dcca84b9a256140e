"""Small image operations in numpy that give *bit-identical* results to the OpenCV calls they replace.

Why: OpenCV's module costs the lock daemon ~45 MB of resident memory, ~1-6 MB more for each function
first used (its code is spread over a 74 MB shared object), and a Pi Zero 2 W has 512 MB.  The daemon's
per-frame calls that are simple enough to reproduce exactly live here; ``tests/vision/test_imgops_exact.py``
holds each one to OpenCV on every one of the 2^24 RGB colours (colour conversions) or on random inputs,
so detection, alignment, liveness and accuracy figures are unchanged by construction.

- :func:`rgb_to_gray`  = ``cv2.cvtColor(rgb, COLOR_RGB2GRAY)`` (fixed point, 15-bit coefficients)
- :func:`rgb_to_ycrcb` = ``cv2.cvtColor(rgb, COLOR_RGB2YCrCb)`` (fixed point, 14-bit)
- :func:`rgb_to_hsv`   = ``cv2.cvtColor(rgb, COLOR_RGB2HSV)`` (8-bit: H in 0..179, OpenCV's division tables)
- :func:`pad_edge`     = ``cv2.copyMakeBorder(img, p, p, p, p, BORDER_REPLICATE)``
- :func:`invert_affine` = ``cv2.invertAffineTransform(m)``
"""

from __future__ import annotations

import numpy as np

_HSV_SHIFT = 12
_I = np.arange(1, 256, dtype=np.float64)
#: OpenCV's RGB2HSV_b tables: saturate_cast<int>((255 << 12) / i) and ((180 << 12) / (6 i)), round half even
_SDIV = np.concatenate([[0], np.rint((255 << _HSV_SHIFT) / _I)]).astype(np.int64)
_HDIV = np.concatenate([[0], np.rint((180 << _HSV_SHIFT) / (6.0 * _I))]).astype(np.int64)


def _channels(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    a = np.asarray(rgb)
    if a.ndim != 3 or a.shape[2] != 3 or a.dtype != np.uint8:
        raise ValueError(f"expected an HxWx3 uint8 RGB image, got {a.shape} {a.dtype}")
    x = a.astype(np.int32)
    return x[..., 0], x[..., 1], x[..., 2]


def rgb_to_gray(rgb: np.ndarray) -> np.ndarray:
    r, g, b = _channels(rgb)
    return ((r * 9798 + g * 19235 + b * 3735 + (1 << 14)) >> 15).astype(np.uint8)


def rgb_to_ycrcb(rgb: np.ndarray) -> np.ndarray:
    r, g, b = _channels(rgb)
    y = (r * 4899 + g * 9617 + b * 1868 + (1 << 13)) >> 14
    cr = ((r - y) * 11682 + (128 << 14) + (1 << 13)) >> 14
    cb = ((b - y) * 9241 + (128 << 14) + (1 << 13)) >> 14
    return np.stack([y, np.clip(cr, 0, 255), np.clip(cb, 0, 255)], axis=-1).astype(np.uint8)


def rgb_to_hsv(rgb: np.ndarray) -> np.ndarray:
    r, g, b = (c.astype(np.int64) for c in _channels(rgb))
    v = np.maximum(np.maximum(r, g), b)
    diff = v - np.minimum(np.minimum(r, g), b)
    s = (diff * _SDIV[v] + (1 << (_HSV_SHIFT - 1))) >> _HSV_SHIFT
    h = np.where(v == r, g - b, np.where(v == g, b - r + 2 * diff, r - g + 4 * diff))
    h = (h * _HDIV[diff] + (1 << (_HSV_SHIFT - 1))) >> _HSV_SHIFT
    h = np.where(h < 0, h + 180, h)
    return np.stack([h, s, v], axis=-1).astype(np.uint8)


def pad_edge(img: np.ndarray, p: int) -> np.ndarray:
    """``p`` pixels on every side, each a copy of the nearest edge pixel."""
    a = np.asarray(img)
    h, w = a.shape[:2]
    out = np.empty((h + 2 * p, w + 2 * p) + a.shape[2:], dtype=a.dtype)
    out[p:p + h, p:p + w] = a
    out[:p, p:p + w] = a[:1]  # rows above and below: the first / last row
    out[p + h:, p:p + w] = a[-1:]
    out[:, :p] = out[:, p:p + 1]  # then whole columns left and right (corners included)
    out[:, p + w:] = out[:, p + w - 1:p + w]
    return out


def invert_affine(m: np.ndarray) -> np.ndarray:
    """Inverse of a 2×3 affine matrix, computed in the same order as OpenCV (double precision)."""
    m = np.asarray(m, dtype=np.float64)
    a, b, c = m[0]
    d, e, f = m[1]
    det = a * e - b * d
    det = 1.0 / det if det != 0 else 0.0
    a11, a22, a12, a21 = e * det, a * det, -b * det, -d * det
    b1 = -a11 * c - a12 * f
    b2 = -a21 * c - a22 * f
    return np.array([[a11, a12, b1], [a21, a22, b2]], dtype=np.float64)
