"""Quality gates: say why a frame is not good enough to embed or enroll.

Each gate returns a :class:`Reason`; the first failing gate wins, in the order of QualityConfig.order.
The thresholds are device policy (defaults here; config may override), not model constants.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

import numpy as np


class Reason(str, Enum):
    OK = "ok"
    NO_FACE = "no_face"
    MULTIPLE_FACES = "multiple_faces"
    FACE_TOO_SMALL = "face_too_small"
    FACE_CUT_OFF = "face_cut_off"
    TOO_DARK = "too_dark"
    TOO_BRIGHT = "too_bright"
    LOW_CONTRAST = "low_contrast"
    BLURRED = "blurred"
    OFF_POSE = "off_pose"

    def describe(self) -> str:
        return _TEXT[self]


_TEXT = {
    Reason.OK: "face usable",
    Reason.NO_FACE: "no face found",
    Reason.MULTIPLE_FACES: "several faces in view: one person at a time",
    Reason.FACE_TOO_SMALL: "face too small: come closer",
    Reason.FACE_CUT_OFF: "face partly outside the frame",
    Reason.TOO_DARK: "too dark",
    Reason.TOO_BRIGHT: "too bright / overexposed",
    Reason.LOW_CONTRAST: "too little contrast",
    Reason.BLURRED: "image blurred: hold still",
    Reason.OFF_POSE: "face turned away: look at the camera",
}


@dataclass(frozen=True)
class QualityConfig:
    min_eye_distance_px: float = 20.0  # inter-ocular distance in the frame
    min_face_px: float = 48.0  # detection box side
    second_face_ratio: float = 0.5  # another face at least this fraction of the largest's width -> reject
    max_outside_fraction: float = 0.15  # fraction of the box outside the frame
    min_brightness: float = 40.0  # mean luma of the aligned crop, 0..255
    max_brightness: float = 220.0
    min_contrast: float = 12.0  # std of luma of the aligned crop
    min_sharpness: float = 30.0  # variance of the Laplacian of the aligned 112×112 luma
    max_yaw: float = 0.45  # |nose offset from the eye midline| / eye distance
    max_roll_deg: float = 40.0
    max_pitch: float = 0.45  # |vertical nose position - neutral| relative to eye-mouth distance
    enabled: tuple[str, ...] = field(default=(
        "multiple_faces", "face_too_small", "face_cut_off", "too_dark", "too_bright", "low_contrast",
        "blurred", "off_pose"))

    @classmethod
    def permissive(cls) -> QualityConfig:
        """Gates off except detection itself (for offline evaluation of still photo datasets)."""
        return cls(enabled=())


@dataclass
class QualityReport:
    reason: Reason
    measures: dict[str, float]

    @property
    def ok(self) -> bool:
        return self.reason is Reason.OK


def luma(rgb: np.ndarray) -> np.ndarray:
    x = rgb.astype(np.float32)
    return 0.299 * x[..., 0] + 0.587 * x[..., 1] + 0.114 * x[..., 2]


def laplacian_variance(grey: np.ndarray) -> float:
    g = grey.astype(np.float32)
    lap = g[1:-1, :-2] + g[1:-1, 2:] + g[:-2, 1:-1] + g[2:, 1:-1] - 4 * g[1:-1, 1:-1]
    return float(lap.var())


def pose_measures(keypoints: np.ndarray) -> dict[str, float]:
    """Yaw/pitch ratios and roll (degrees) from BlazeFace keypoints (eyes, nose, mouth centre)."""
    re, le, nose, mouth = (np.asarray(keypoints[i], dtype=np.float64) for i in range(4))
    eye_vec = le - re
    d = float(np.linalg.norm(eye_vec)) or 1e-6
    ux = eye_vec / d
    uy = np.array([-ux[1], ux[0]])
    mid = (re + le) / 2
    yaw = float((nose - mid) @ ux) / d
    em = float((mouth - mid) @ uy) or 1e-6
    pitch = float((nose - mid) @ uy) / em - 0.5  # nose about half-way from eyes to mouth when frontal
    roll = float(np.degrees(np.arctan2(eye_vec[1], eye_vec[0])))
    return {"eye_distance": d, "yaw": yaw, "pitch": pitch, "roll_deg": roll}


def assess(frame_shape: tuple[int, ...], detections: list, index: int, aligned: np.ndarray | None,
           cfg: QualityConfig) -> QualityReport:
    """Quality of detection ``index`` among ``detections`` in a frame; aligned = its 112×112 crop."""
    if not detections:
        return QualityReport(Reason.NO_FACE, {})
    det = detections[index]
    on = set(cfg.enabled)
    m: dict[str, float] = {"score": float(det.score), "face_px": float(max(det.width, det.height))}
    m.update(pose_measures(det.keypoints))
    h, w = frame_shape[:2]
    x0, y0, x1, y1 = (float(v) for v in det.box)
    inside = max(0.0, min(x1, w) - max(x0, 0)) * max(0.0, min(y1, h) - max(y0, 0))
    m["outside_fraction"] = 1.0 - inside / max(det.area, 1e-6)
    others = [d.width for i, d in enumerate(detections) if i != index]
    m["second_face_ratio"] = max(others) / max(det.width, 1e-6) if others else 0.0
    if aligned is not None:
        y = luma(aligned)
        core = y[16:100, 16:96]  # the face, not the background corners
        m["brightness"] = float(core.mean())
        m["contrast"] = float(core.std())
        m["sharpness"] = laplacian_variance(y)
    checks = [
        ("multiple_faces", m["second_face_ratio"] >= cfg.second_face_ratio, Reason.MULTIPLE_FACES),
        ("face_too_small", m["face_px"] < cfg.min_face_px or m["eye_distance"] < cfg.min_eye_distance_px,
         Reason.FACE_TOO_SMALL),
        ("face_cut_off", m["outside_fraction"] > cfg.max_outside_fraction, Reason.FACE_CUT_OFF),
        ("too_dark", m.get("brightness", 128.0) < cfg.min_brightness, Reason.TOO_DARK),
        ("too_bright", m.get("brightness", 128.0) > cfg.max_brightness, Reason.TOO_BRIGHT),
        ("low_contrast", m.get("contrast", 99.0) < cfg.min_contrast, Reason.LOW_CONTRAST),
        ("blurred", m.get("sharpness", 1e9) < cfg.min_sharpness, Reason.BLURRED),
        ("off_pose", abs(m["yaw"]) > cfg.max_yaw or abs(m["pitch"]) > cfg.max_pitch
         or abs(m["roll_deg"]) > cfg.max_roll_deg, Reason.OFF_POSE),
    ]
    for name, failed, reason in checks:
        if name in on and failed:
            return QualityReport(reason, m)
    return QualityReport(Reason.OK, m)
