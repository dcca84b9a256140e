"""468-point face mesh (MediaPipe face_landmark.tflite) on a rotated ROI around a BlazeFace detection.

Used for alignment and by liveness (eye landmarks for blink / EAR).  The mesh is returned in frame pixel
coordinates (x, y, z), z in the same scale as x relative to the face centre.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from firmware.vision.detector import Detection
from firmware.vision.errors import ModelLoadError
from firmware.vision.imgops import invert_affine
from firmware.vision.manifest import ModelSpec
from firmware.vision.runtime import TFLiteModel

ROI_SCALE = 1.5

#: Eye contours (subject's right = image left) in the mesh, 16 points each, in order around the eye,
#: and the 6 points per eye for the eye aspect ratio (p1..p6 of Soukupová & Čech).
RIGHT_EYE_CONTOUR = (33, 7, 163, 144, 145, 153, 154, 155, 133, 173, 157, 158, 159, 160, 161, 246)
LEFT_EYE_CONTOUR = (263, 249, 390, 373, 374, 380, 381, 382, 362, 398, 384, 385, 386, 387, 388, 466)
RIGHT_EYE_EAR = (33, 160, 158, 133, 153, 144)
LEFT_EYE_EAR = (362, 385, 387, 263, 373, 380)


@dataclass
class FaceMesh:
    points: np.ndarray  # (468, 3) float32, frame pixels
    presence: float  # face-presence probability from the model

    def eye(self, side: str) -> np.ndarray:
        """(16, 2) contour of the subject's "left" or "right" eye in frame pixels."""
        idx = {"right": RIGHT_EYE_CONTOUR, "left": LEFT_EYE_CONTOUR}[side]
        return self.points[list(idx), :2]

    def eye_aspect_ratio(self, side: str) -> float:
        """EAR = (|p2-p6| + |p3-p5|) / (2|p1-p4|): ~0.25-0.35 open, < ~0.15 closed."""
        p = self.points[list({"right": RIGHT_EYE_EAR, "left": LEFT_EYE_EAR}[side]), :2]
        h = np.linalg.norm(p[0] - p[3])
        return float((np.linalg.norm(p[1] - p[5]) + np.linalg.norm(p[2] - p[4])) / (2 * h)) if h > 0 else 0.0


def roi_transform(det: Detection, size: int) -> np.ndarray:
    """2×3 matrix mapping frame pixels into the landmark model's size×size ROI (rotated so eyes are level)."""
    cx, cy = (det.box[0] + det.box[2]) / 2, (det.box[1] + det.box[3]) / 2
    side = max(det.width, det.height) * ROI_SCALE
    re, le = det.keypoints[0], det.keypoints[1]
    angle = np.arctan2(le[1] - re[1], le[0] - re[0])  # roll of the eye line
    c, s = np.cos(-angle), np.sin(-angle)
    k = size / max(side, 1e-6)
    # rotate by -angle about the centre, scale, move the centre to the ROI centre
    m = np.array([[k * c, -k * s, 0.0], [k * s, k * c, 0.0]])
    m[:, 2] = np.array([size / 2, size / 2]) - m[:, :2] @ np.array([cx, cy])
    return m


class FaceLandmarker:
    """``landmarker(rgb, detection) -> FaceMesh | None`` (None when the model sees no face in the ROI)."""

    def __init__(self, model: TFLiteModel, spec: ModelSpec, min_presence: float = 0.5):
        self.model = model
        self.spec = spec
        self.size = spec.input_size[0]
        shapes = [o.shape for o in model.outputs]
        try:
            self._pts = next(i for i, s in enumerate(shapes) if int(np.prod(s)) == 1404)
            self._flag = next(i for i, s in enumerate(shapes) if int(np.prod(s)) == 1)
        except StopIteration as exc:
            raise ModelLoadError(f"{spec.name}: unexpected output shapes {shapes}") from exc
        self.min_presence = min_presence

    def __call__(self, rgb: np.ndarray, det: Detection) -> FaceMesh | None:
        import cv2

        m = roi_transform(det, self.size)
        roi = cv2.warpAffine(rgb, m, (self.size, self.size), flags=cv2.INTER_LINEAR,
                             borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0))
        x = (roi.astype(np.float32) - self.spec.norm_mean) / self.spec.norm_std
        outs = self.model(x[None])
        logit = float(np.clip(outs[self._flag].ravel()[0], -80, 80))
        presence = 1.0 / (1.0 + np.exp(-logit))
        if presence < self.min_presence:
            return None
        pts = outs[self._pts].reshape(468, 3).astype(np.float64)
        inv = invert_affine(m)  # = cv2.invertAffineTransform, bit for bit
        xy = pts[:, :2] @ inv[:, :2].T + inv[:, 2]
        z = pts[:, 2] * np.sqrt(abs(np.linalg.det(inv[:, :2])))
        return FaceMesh(np.column_stack([xy, z]).astype(np.float32), presence)
