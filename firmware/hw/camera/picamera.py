"""Raspberry Pi camera through picamera2, imported only when this backend is chosen (it exists only on a Pi)."""

from __future__ import annotations

from typing import Any

import numpy as np

from firmware.hw.camera.base import CameraUnavailableError, Frame
from firmware.hw.camera.threaded import GrabberThread


class PiCamera:
    def __init__(self, width: int = 640, height: int = 480, fps: float = 15.0):
        self.width, self.height, self.fps = width, height, fps
        self.name = "picamera2"
        self._cam: Any = None
        self._grabber: GrabberThread | None = None

    def start(self) -> None:
        try:
            from picamera2 import Picamera2  # type: ignore[import-not-found]
        except ImportError as exc:
            raise CameraUnavailableError(
                "the picamera2 backend needs the picamera2 package (on a Pi: apt install python3-picamera2, "
                "or pip install 'facelock[pi]'); choose camera.backend = \"opencv\" or \"replay\" elsewhere"
            ) from exc
        try:
            cam = Picamera2()
            cfg = cam.create_video_configuration(main={"size": (self.width, self.height), "format": "RGB888"},
                                                 controls={"FrameRate": float(self.fps)})
            cam.configure(cfg)
            cam.start()
        except (RuntimeError, IndexError, OSError) as exc:
            raise CameraUnavailableError(f"picamera2 could not start the camera: {exc}") from exc
        self._cam = cam
        self._grabber = GrabberThread(self._grab, self.name)
        self._grabber.start()

    def _grab(self) -> np.ndarray:
        arr = self._cam.capture_array("main")
        # picamera2's "RGB888" is BGR in memory order; flip to RGB
        return np.ascontiguousarray(arr[:, :, 2::-1])

    def read(self, timeout: float) -> Frame:
        if self._grabber is None:
            raise CameraUnavailableError("picamera2 not started")
        return self._grabber.read(timeout)

    def close(self) -> None:
        if self._grabber is not None:
            self._grabber.stop()
            self._grabber = None
        if self._cam is not None:
            try:
                self._cam.stop()
                self._cam.close()
            finally:
                self._cam = None
