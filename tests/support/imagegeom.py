"""Image helpers for the face-pipeline tests."""

from __future__ import annotations

import cv2
import numpy as np


def in_frame(img: np.ndarray, width: int = 640, height: int = 480, scale: float = 1.0, dx: int = 0,
             dy: int = 0, background: int = 90) -> np.ndarray:
    """Place a scaled copy of img in a width×height frame, its centre moved by (dx, dy)."""
    h, w = img.shape[:2]
    s = scale * min(height / h, width / w)
    m = np.array([[s, 0, width / 2 - s * w / 2 + dx], [0, s, height / 2 - s * h / 2 + dy]])
    return cv2.warpAffine(img, m, (width, height), flags=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=(background,) * 3)


def rotate(img: np.ndarray, degrees: float) -> np.ndarray:
    h, w = img.shape[:2]
    m = cv2.getRotationMatrix2D((w / 2, h / 2), degrees, 1.0)
    return cv2.warpAffine(img, m, (w, h), borderMode=cv2.BORDER_REFLECT)
