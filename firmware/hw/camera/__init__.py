"""Camera backends behind one interface: picamera2 (Pi), OpenCV (V4L2 device or video file), replay.

    cam = open_camera(cfg.camera)   # not started yet
    cam.start(); frame = cam.read(timeout=2.0); cam.close()
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from firmware.hw.camera.base import (  # noqa: F401
    Camera,
    CameraError,
    CameraGoneError,
    CameraStalledError,
    CameraUnavailableError,
    Frame,
)

if TYPE_CHECKING:
    from firmware.config import CameraConfig


def open_camera(cfg: CameraConfig) -> Camera:
    """Build (not start) the backend named by ``camera.backend``."""
    if cfg.backend == "replay":
        from firmware.hw.camera.replay import ReplayCamera

        return ReplayCamera(cfg.source, fps=cfg.fps, loop=cfg.loop, size=(cfg.width, cfg.height))
    if cfg.backend == "opencv":
        from firmware.hw.camera.opencv_camera import OpenCVCamera

        return OpenCVCamera(cfg.source or "0", cfg.width, cfg.height, cfg.fps)
    if cfg.backend == "picamera2":
        from firmware.hw.camera.picamera import PiCamera

        return PiCamera(cfg.width, cfg.height, cfg.fps)
    raise CameraUnavailableError(f"unknown camera backend {cfg.backend!r}")
